// The browser client's side of EXTENSIONS.md on the wire (public/socketcluster.js), run in Node against a scripted
// WebSocket: positions from acks and deliveries, duplicates dropped, `recover` on the resubscribe after a reconnect,
// `recovery` events (recovered:false from the ack and from a new epoch on a live delivery), history on join,
// presence. No browser and no server needed: `node --test continuity-wire.test.mjs`.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

/** A scripted WebSocket: records what the client sends; the test plays the server. */
class FakeWebSocket {
  static sockets = [];
  constructor(url) {
    this.url = url;
    this.readyState = 0;
    this.sent = [];
    FakeWebSocket.sockets.push(this);
  }
  send(text) { this.sent.push(text); }
  close() { this.readyState = 3; }
  open() { this.readyState = 1; this.onopen(); }
  receive(object) { this.onmessage({ data: JSON.stringify(object) }); }
  drop() { this.readyState = 3; this.onclose({ code: 1006, reason: '' }); }
  /** The next packet the client sent (parsed), skipping heartbeats. */
  next() {
    const text = this.sent.shift();
    assert.ok(text !== undefined, 'the client sent nothing');
    return JSON.parse(text);
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function openSocket(client) {
  await sleep(20);
  const ws = FakeWebSocket.sockets.at(-1);
  ws.open();
  const handshake = ws.next();
  assert.equal(handshake.event, '#handshake');
  ws.receive({ rid: handshake.cid, data: { id: 'id' + FakeWebSocket.sockets.length, pingTimeout: 20000 } });
  await sleep(5); // responses resolve promises: let them run
  assert.equal(client.state, 'open');
  return ws;
}

test('positions, recovery and presence on the wire', async () => {
  globalThis.WebSocket = FakeWebSocket;
  require('../../public/socketcluster.js');
  const client = globalThis.socketClusterClient.create({
    hostname: '127.0.0.1', port: 1, autoReconnectOptions: { initialDelay: 10, randomness: 0 }
  });
  try {
    let ws = await openSocket(client);
    const channel = client.subscribe('room/1', { history: 2, data: { app: 1 } });
    const got = [];
    const recoveries = [];
    const presence = [];
    channel.watch((data, position) => got.push([data, position]));
    client.on('recovery', (r) => recoveries.push(r));
    channel.on('presenceJoin', (e) => presence.push(e));

    let subscribe = ws.next();
    assert.deepEqual(subscribe.data, { channel: 'room/1', data: { app: 1, history: { limit: 2 } } });
    ws.receive({ event: '#publish', data: { channel: 'room/1', data: 'a', offset: 4, epoch: 'E' } });
    ws.receive({ event: '#publish', data: { channel: 'room/1', data: 'b', offset: 5, epoch: 'E' } });
    ws.receive({ rid: subscribe.cid, data: { offset: 5, epoch: 'E' } });
    await sleep(5);
    assert.equal(channel.state, 'subscribed');
    ws.receive({ event: '#publish', data: { channel: 'room/1', data: 'b', offset: 5, epoch: 'E' } }); // duplicate
    ws.receive({ event: '#publish', data: { channel: 'room/1', data: 'c', offset: 6, epoch: 'E' } });
    assert.deepEqual(got, [['a', { offset: 4, epoch: 'E' }], ['b', { offset: 5, epoch: 'E' }], ['c', { offset: 6, epoch: 'E' }]]);
    assert.deepEqual(channel.position, { offset: 6, epoch: 'E' });

    // A reconnect resubscribes with `recover` (no history); the server replays and says recovered.
    ws.drop();
    ws = await openSocket(client);
    subscribe = ws.next();
    assert.deepEqual(subscribe.data, { channel: 'room/1', data: { app: 1, recover: { offset: 6, epoch: 'E' } } });
    ws.receive({ event: '#publish', data: { channel: 'room/1', data: 'd', offset: 7, epoch: 'E' } });
    ws.receive({ rid: subscribe.cid, data: { recovered: true, offset: 7, epoch: 'E' } });
    await sleep(5);
    assert.deepEqual(got.at(-1), ['d', { offset: 7, epoch: 'E' }]);
    assert.deepEqual(recoveries, [{ channel: 'room/1', recovered: true, from: { offset: 6, epoch: 'E' }, position: { offset: 7, epoch: 'E' } }]);

    // Next reconnect: a new epoch, `recovered: false`.
    ws.drop();
    ws = await openSocket(client);
    subscribe = ws.next();
    assert.deepEqual(subscribe.data.data.recover, { offset: 7, epoch: 'E' });
    ws.receive({ rid: subscribe.cid, data: { recovered: false, offset: 0, epoch: 'F' } });
    await sleep(5);
    assert.deepEqual(recoveries.at(-1), { channel: 'room/1', recovered: false, from: { offset: 7, epoch: 'E' }, position: { offset: 0, epoch: 'F' } });

    // A live delivery with another epoch: the history was lost under the subscription.
    ws.receive({ event: '#publish', data: { channel: 'room/1', data: 'x', offset: 1, epoch: 'G' } });
    assert.deepEqual(recoveries.at(-1), { channel: 'room/1', recovered: false, from: { offset: 0, epoch: 'F' }, position: { offset: 1, epoch: 'G' } });
    assert.equal(recoveries.length, 3);

    // Presence: the query and the join event.
    const asked = client.presence('room/1');
    const query = ws.next();
    assert.equal(query.event, '#presence');
    assert.deepEqual(query.data, { channel: 'room/1' });
    ws.receive({ rid: query.cid, data: { count: 1, clients: [{ id: 'id3', user: 'alice' }] } });
    assert.deepEqual(await asked, { count: 1, clients: [{ id: 'id3', user: 'alice' }] });
    ws.receive({ event: '#presenceJoin', data: { channel: 'room/1', client: { id: 'o', user: null } } });
    assert.deepEqual(presence, [{ channel: 'room/1', client: { id: 'o', user: null } }]);

    // A subscribe refused with BrokerError stays pending and is sent again.
    const other = client.subscribe('room/2');
    subscribe = ws.next();
    ws.receive({ rid: subscribe.cid, error: { name: 'BrokerError', message: 'engine down' } });
    await sleep(5);
    assert.equal(other.state, 'pending');
    await sleep(1100);
    assert.equal(ws.next().data.channel, 'room/2', 'retried');
  } finally {
    client.disconnect();
  }
});
