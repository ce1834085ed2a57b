// permessage-deflate (RFC 7692) with the official clients: socketcluster-client 14.3.2 and 20.x run on the `ws`
// package, which offers the extension by default. With the server's perMessageDeflate on, it is negotiated and
// large messages travel compressed both ways (the `ws` client compresses from 1 KiB up, so does the server);
// with it off, or with a client that does not offer it, nothing changes.
import {describe, test, before} from 'node:test';
import assert from 'node:assert/strict';
import {useHarness, startServer, connectClient, uniqueName, withTimeout, VERSIONS} from './lib/harness.mjs';

useHarness();

/** The extension names the client's `ws` socket negotiated ('' when none). */
function negotiated(client) {
  return client.socket.transport.socket.extensions;
}

/** The permessage-deflate parameters the client's `ws` socket accepted (its `params`). */
function deflateParams(client) {
  let deflate = client.socket.transport.socket._extensions['permessage-deflate'];
  return deflate && deflate.params;
}

/** Client options that keep `ws` from offering the extension (v14 passes its options to `ws`, v20 `wsOptions`). */
function noDeflate(version) {
  return version === 14 ? {perMessageDeflate: false} : {wsOptions: {perMessageDeflate: false}};
}

// Repetitive JSON, as real payloads are: about 120 KiB that deflate to a few KiB.
const BIG = {rows: Array.from({length: 2000}, (_, i) => ({id: i, name: `row ${i % 50}`, tags: ['a', 'b', 'c']}))};
const SMALL = {hello: 'world'};

for (const V of VERSIONS) {
  describe(`permessage-deflate (${V.name})`, () => {
    let server;
    before(async () => {
      server = await startServer({'protocol-version': V.protocol, 'per-message-deflate': true}, {keep: true});
    });

    test('negotiated without context takeover; large and small messages both ways', {timeout: 20000}, async () => {
      let client = await connectClient(V.client, server);
      let extensions = negotiated(client);
      assert.match(extensions, /permessage-deflate/);
      if (!process.env.SC_SERVER_CMD) return; // the Node reference negotiates its own parameters
      let params = deflateParams(client);
      assert.equal(params.server_no_context_takeover, true, JSON.stringify(params));
      assert.equal(params.client_no_context_takeover, true, JSON.stringify(params));
      for (let data of [SMALL, BIG, SMALL, BIG]) {
        assert.deepStrictEqual(await client.echo(data, 10000), data);
      }
    });

    test('a compressed publication reaches every subscriber intact', {timeout: 20000}, async () => {
      let [a, b, plain] = await Promise.all([
        connectClient(V.client, server),
        connectClient(V.client, server),
        connectClient(V.client, server, noDeflate(V.client))
      ]);
      assert.equal(negotiated(plain), '', 'a client that does not offer it gets none');
      let name = uniqueName('zip');
      let channels = [a, b, plain].map((c) => c.subscribe(name));
      await Promise.all(channels.map((ch) => ch.waitSubscribed()));
      await withTimeout(a.invokePublish(name, BIG), 10000, 'publish ack');
      b.publish(name, SMALL);
      for (let channel of channels) {
        let got = [await channel.next(10000), await channel.next(10000)];
        got.sort((x, y) => JSON.stringify(x).length - JSON.stringify(y).length);
        assert.deepStrictEqual(got, [SMALL, BIG]);
      }
    });
  });

  describe(`permessage-deflate off (${V.name})`, () => {
    test('the default server declines the offer and serves the client as before', {timeout: 15000}, async () => {
      let server = await startServer({'protocol-version': V.protocol});
      let client = await connectClient(V.client, server);
      assert.equal(negotiated(client), '');
      assert.deepStrictEqual(await client.echo(BIG, 10000), BIG);
    });
  });
}
