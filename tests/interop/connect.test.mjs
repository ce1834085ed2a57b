// 1. Connect + handshake with the official clients.
import {describe, test, before} from 'node:test';
import assert from 'node:assert/strict';
import {
  useHarness, startServer, createClient, connectClient, rawUpgrade, VERSIONS, NEEDS_AUTO
} from './lib/harness.mjs';

useHarness();

for (const V of VERSIONS) {
  describe(`${V.name} client, protocol v${V.protocol}`, () => {
    let server;
    before(async () => {
      server = await startServer({'protocol-version': V.protocol, 'ping-timeout': 15000}, {keep: true});
    });

    test('connect event, socket id, open state, unauthenticated', {timeout: 15000}, async () => {
      let client = createClient(V, server);
      assert.equal(client.state, 'connecting');
      let status = await client.ready();
      assert.equal(client.state, 'open');
      assert.equal(typeof client.id, 'string');
      assert.ok(client.id.length > 0, 'socket id must be non-empty');
      assert.equal(status.id, client.id, 'connect status carries the same id');
      assert.equal(status.isAuthenticated, false);
      assert.equal(status.pingTimeout, 15000, 'pingTimeout from --ping-timeout is announced in the handshake');
      assert.equal(client.authState, 'unauthenticated');
      assert.equal(client.socket.pingTimeout, 15000, 'the client adopts the announced pingTimeout');
      // No error and no disconnect happened on the way.
      assert.deepEqual(client.events.all.filter((e) => ['error', 'disconnect', 'connectAbort'].includes(e.type)), []);
    });

    test('several clients get distinct ids', {timeout: 15000}, async () => {
      let clients = await Promise.all([1, 2, 3].map(() => connectClient(V, server)));
      let ids = new Set(clients.map((c) => c.id));
      assert.equal(ids.size, 3);
    });

    test('query parameters are accepted', {timeout: 15000}, async () => {
      let client = createClient(V, server, {query: {foo: 'bar', emoji: 'é ✓', empty: ''}});
      await client.ready();
      assert.equal(client.state, 'open');
      assert.deepEqual(await client.echo('with query'), 'with query');
    });

    test('query string form (with timestampRequests) is accepted', {timeout: 15000}, async () => {
      let client = createClient(V, server, {query: 'a=1&b=two', timestampRequests: true});
      await client.ready();
      assert.equal(await client.echo(7), 7);
    });

    test('the upgrade response is 101 on /socketcluster/, without permessage-deflate', {timeout: 15000}, async () => {
      // Offer permessage-deflate exactly like the Node clients do; the server must not accept it by default.
      let res = await rawUpgrade(server, {
        path: '/socketcluster/?x=1',
        headers: {'Sec-WebSocket-Extensions': 'permessage-deflate; client_max_window_bits'}
      });
      assert.equal(res.status, 101);
      assert.equal(String(res.headers.upgrade).toLowerCase(), 'websocket');
      assert.equal(res.headers['sec-websocket-accept'], 's3pPLMBiTxaQ9kYGzzhZRbK+xOo=');
      assert.equal(res.headers['sec-websocket-extensions'], undefined, 'no permessage-deflate unless configured');
    });
  });
}

describe('one server, both client versions (--protocol-version auto)', () => {
  test('v14 and v20 clients connect to the same server', {skip: NEEDS_AUTO, timeout: 15000}, async () => {
    let server = await startServer({'protocol-version': 'auto'});
    let [a, b] = await Promise.all([connectClient(14, server), connectClient(20, server)]);
    assert.equal(a.state, 'open');
    assert.equal(b.state, 'open');
    assert.notEqual(a.id, b.id);
    assert.equal(await a.echo('from v14'), 'from v14');
    assert.equal(await b.echo('from v20'), 'from v20');
  });
});
