// 7. Reconnect after a server-initiated close; 10. close codes as the clients see them.
import {describe, test, before} from 'node:test';
import assert from 'node:assert/strict';
import {
  useHarness, startServer, createClient, connectClient, expectRejection, withTimeout, sleep, uniqueName,
  FAST_RECONNECT, VERSIONS
} from './lib/harness.mjs';

useHarness();

// Longest possible first reconnect delay with FAST_RECONNECT, plus slack.
const NO_RECONNECT_WINDOW = FAST_RECONNECT.initialDelay + FAST_RECONNECT.randomness + 250;

for (const V of VERSIONS) {
  describe(`${V.name} client, protocol v${V.protocol}`, () => {
    let server;
    before(async () => {
      server = await startServer({'protocol-version': V.protocol}, {keep: true});
    });

    test('dropme: close 4321 with reason, automatic reconnect and re-subscription', {timeout: 20000}, async () => {
      let client = await connectClient(V, server);
      let other = await connectClient(V, server);
      let firstId = client.id;
      let names = [uniqueName('re'), uniqueName('re')];
      let channels = names.map((n) => client.subscribe(n));
      await Promise.all(channels.map((c) => c.waitSubscribed()));

      client.transmit('dropme');
      let disconnect = await client.waitEvent('disconnect');
      assert.equal(disconnect.code, 4321);
      assert.equal(disconnect.reason, 'dropped by server');
      // While disconnected the channels are pending, not lost.
      for (let c of channels) assert.equal(c.state, 'pending');
      // 4321 < 4500 → the client reconnects by itself.
      let status = await client.ready(5000);
      assert.equal(client.state, 'open');
      assert.notEqual(status.id, firstId, 'a new connection gets a new socket id');
      // Channels are re-subscribed automatically...
      await Promise.all(channels.map((c) => c.waitSubscribed()));
      for (let c of channels) assert.equal(c.state, 'subscribed');
      // ...and receive publishes again, from other clients and from the server.
      other.publish(names[0], 'after reconnect');
      assert.equal(await channels[0].next(), 'after reconnect');
      await withTimeout(other.invoke('serverpublish', {channel: names[1], data: {n: 2}}), 5000, 'ack');
      assert.deepStrictEqual(await channels[1].next(), {n: 2});
      assert.equal(await client.echo('works'), 'works');
      assert.equal(other.events.all.some((e) => e.type === 'disconnect'), false, 'other client unaffected');
    });

    test('dropme while a request is pending → the request fails with BadConnectionError', {timeout: 15000}, async () => {
      let client = await connectClient(V, server);
      let pending = client.invoke('noreply', 1);
      client.transmit('dropme');
      let err = await expectRejection(pending, 5000, 'pending noreply to be aborted');
      assert.equal(err.name, 'BadConnectionError');
      assert.equal(err.type, 'disconnect');
      await client.ready(5000);
    });

    test('client disconnect(4500, reason) closes permanently: no reconnect', {timeout: 15000}, async () => {
      let client = await connectClient(V, server);
      client.disconnect(4500, 'bye');
      let disconnect = await client.waitEvent('disconnect');
      assert.equal(disconnect.code, 4500);
      assert.equal(client.state, 'closed');
      assert.equal(client.pendingReconnect, false);
      await sleep(NO_RECONNECT_WINDOW);
      assert.equal(client.events.all.some((e) => e.type === 'connecting'), false, 'no reconnect attempt');
      assert.equal(client.state, 'closed');
    });

    test('client disconnect() (1000) closes without reconnect', {timeout: 15000}, async () => {
      let client = await connectClient(V, server);
      client.disconnect();
      let disconnect = await client.waitEvent('disconnect');
      assert.equal(disconnect.code, 1000);
      assert.equal(client.pendingReconnect, false);
      await sleep(NO_RECONNECT_WINDOW);
      assert.equal(client.events.all.some((e) => e.type === 'connecting'), false);
      // An explicit connect() works afterwards.
      client.socket.connect();
      await client.ready();
      assert.equal(await client.echo('back'), 'back');
    });

    test('client disconnect(4100) (< 4500) reconnects', {timeout: 15000}, async () => {
      let client = await connectClient(V, server);
      client.disconnect(4100, 'temporary');
      let disconnect = await client.waitEvent('disconnect');
      assert.equal(disconnect.code, 4100);
      await client.ready(5000);
      assert.equal(await client.echo('again'), 'again');
    });

    test('server stop → disconnect (1006), channels pending, the client keeps retrying', {timeout: 20000}, async () => {
      let own = await startServer({'protocol-version': V.protocol});
      let client = await connectClient(V, own);
      let channel = client.subscribe(uniqueName('persist'));
      await channel.waitSubscribed();
      await own.stop();
      let disconnect = await client.waitEvent('disconnect');
      assert.ok([1006, 1001, 1005].includes(disconnect.code), `close code ${disconnect.code}`);
      assert.equal(channel.state, 'pending');
      // Connection attempts against the dead port are aborted (1006) and retried.
      let abort = await client.waitEvent('connectAbort', () => true, 5000);
      assert.equal(abort.code, 1006);
    });
  });

  describe(`${V.name} client, --max-payload 1024`, () => {
    test('an oversized message makes the server close with 1009; the client reconnects', {timeout: 15000}, async () => {
      let server = await startServer({'protocol-version': V.protocol, 'max-payload': 1024});
      let client = await connectClient(V, server);
      assert.equal(await client.echo('x'.repeat(900)), 'x'.repeat(900), 'below the limit works');
      let pending = client.invoke('echo', 'y'.repeat(2000));
      let disconnect = await client.waitEvent('disconnect');
      assert.equal(disconnect.code, 1009);
      let err = await expectRejection(pending, 5000, 'oversized echo to fail');
      assert.equal(err.name, 'BadConnectionError');
      await client.ready(5000);
      assert.equal(await client.echo('small again'), 'small again');
    });
  });
}

describe('v14 client specifics (protocol v1)', () => {
  test('v14 disconnect(4500, "bye"): code and reason seen locally, no reconnect, others still served', {timeout: 15000}, async () => {
    let server = await startServer({'protocol-version': '1'});
    let watcher = await connectClient(14, server);
    let client = await connectClient(14, server);
    let name = uniqueName('v14close');
    let channel = client.subscribe(name);
    await channel.waitSubscribed();
    let watcherCh = watcher.subscribe(name);
    await watcherCh.waitSubscribed();
    client.disconnect(4500, 'bye');
    let disconnect = await client.waitEvent('disconnect');
    assert.equal(disconnect.code, 4500);
    assert.equal(disconnect.reason, 'bye');
    assert.equal(client.pendingReconnect, false);
    // The server keeps serving everybody else.
    watcher.publish(name, 'still serving');
    assert.equal(await watcherCh.next(), 'still serving');
    assert.equal(client.state, 'closed');
  });

  test('v14 close codes: 4321 → SocketProtocolError + reconnect; 4999 → no reconnect', {timeout: 15000}, async () => {
    let server = await startServer({'protocol-version': '1'});
    let client = createClient(14, server);
    await client.ready();
    client.transmit('dropme');
    assert.equal((await client.waitEvent('disconnect')).code, 4321);
    let protocolError = await client.waitEvent('error', (e) => e.error && e.error.name === 'SocketProtocolError');
    assert.equal(protocolError.error.code, 4321);
    await client.ready(5000);
    client.disconnect(4999, 'permanent');
    assert.equal((await client.waitEvent('disconnect')).code, 4999);
    assert.equal(client.pendingReconnect, false);
  });
});
