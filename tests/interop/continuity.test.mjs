// EXTENSIONS.md with the official clients 14.3.2 and 20.x and the helper public/sc-continuity.js, against the
// boilerplate app (history and presence on room/*): a subscriber behind a TCP proxy whose connections are cut
// mid-stream receives every acknowledged publication exactly once and in order; a server restarted empty is
// reported as recovered:false; history on join; presence with login names.
import {describe, test, before} from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import {createRequire} from 'node:module';
import {
  useHarness, startBoilerplate, createClient, connectClient, withTimeout, sleep, uniqueName, Queue, VERSIONS
} from './lib/harness.mjs';

const require = createRequire(import.meta.url);
const scContinuity = require('../../public/sc-continuity.js');

useHarness();

const STREAM = 300;

/** A TCP proxy to 127.0.0.1:`targetPort`: `cut()` drops every connection, `retarget(port)` moves new ones. */
async function startProxy(targetPort) {
  let sockets = new Set();
  let target = targetPort;
  let server = net.createServer((inbound) => {
    let outbound = net.connect(target, '127.0.0.1');
    for (let [a, b] of [[inbound, outbound], [outbound, inbound]]) {
      sockets.add(a);
      a.pipe(b);
      a.on('error', () => b.destroy());
      a.on('close', () => { sockets.delete(a); b.destroy(); });
    }
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: server.address().port,
    cut() { for (let s of sockets) s.destroy(); },
    retarget(port) { target = port; },
    close() { this.cut(); return new Promise((resolve) => server.close(resolve)); }
  };
}

/** Waits until `handle` received `count` messages (bounded). */
async function collect(handle, count, ms) {
  await withTimeout((async () => {
    while (handle.messages.all.length < count) await sleep(20);
  })(), ms, `${count} messages on ${handle.name} (have ${handle.messages.all.length})`);
  return handle.messages.all.slice();
}

for (const V of VERSIONS) {
  describe(`${V.name} client with sc-continuity.js`, () => {
    let server;
    before(async () => {
      server = await startBoilerplate({'protocol-version': V.protocol}, {keep: true});
    });

    test('connections cut mid-stream: every acknowledged publication exactly once, in order', {timeout: 60000}, async () => {
      let proxy = await startProxy(server.port);
      try {
        let subscriber = createClient(V.client, {port: proxy.port});
        let continuity = scContinuity.attach(subscriber.socket);
        let recoveries = new Queue('recoveries');
        continuity.on('recovery', (r) => recoveries.push(r));
        await subscriber.ready();
        let name = uniqueName('room/stream');
        let channel = subscriber.subscribe(name);
        await channel.waitSubscribed();
        assert.equal(continuity.position(name).offset, 0, 'the subscribe ack gives the position');

        let publisher = await connectClient(20, server);
        let acked = [];
        for (let n = 1; n <= STREAM; n++) {
          let ack = await withTimeout(publisher.invokePublish(name, n), 5000, `publish ${n}`);
          assert.equal(ack.offset, n, 'the publish ack carries the position');
          acked.push(n);
          if (n === 100 || n === 200) proxy.cut();
          await sleep(2);
        }
        let received = await collect(channel, STREAM, 20000);
        assert.deepStrictEqual(received, acked, 'no gap, no duplicate');
        let first = await recoveries.waitFor(() => true, 10000, 'a recovery');
        let second = await recoveries.waitFor(() => true, 10000, 'a second recovery');
        for (let r of [first, second]) {
          assert.equal(r.channel, name);
          assert.equal(r.recovered, true, JSON.stringify(r));
        }
        assert.equal(continuity.position(name).offset, STREAM);
        await sleep(200);
        assert.equal(channel.messages.all.length, STREAM, 'nothing more arrives');
      } finally {
        await proxy.close();
      }
    });

    test('a server restarted empty: recovered:false with a new epoch, then the new stream', {timeout: 60000}, async () => {
      let first = await startBoilerplate({'protocol-version': V.protocol});
      let proxy = await startProxy(first.port);
      try {
        let subscriber = createClient(V.client, {port: proxy.port});
        let continuity = scContinuity.attach(subscriber.socket);
        let recoveries = new Queue('recoveries');
        continuity.on('recovery', (r) => recoveries.push(r));
        await subscriber.ready();
        let name = uniqueName('room/restart');
        let channel = subscriber.subscribe(name);
        await channel.waitSubscribed();
        let publisher = await connectClient(20, first);
        for (let n = 1; n <= 3; n++) await withTimeout(publisher.invokePublish(name, n), 5000, 'publish');
        assert.deepStrictEqual(await collect(channel, 3, 5000), [1, 2, 3]);
        let before = continuity.position(name);
        assert.equal(before.offset, 3);

        await publisher.close();
        await first.stop();
        let second = await startBoilerplate({'protocol-version': V.protocol});
        proxy.retarget(second.port);
        proxy.cut();
        let recovery = await recoveries.waitFor(() => true, 15000, 'the recovery outcome');
        assert.equal(recovery.recovered, false);
        assert.deepStrictEqual(recovery.from, before);
        assert.notEqual(recovery.position.epoch, before.epoch);

        await channel.waitSubscribed(10000);
        let again = await connectClient(20, second);
        await withTimeout(again.invokePublish(name, 'fresh'), 5000, 'publish');
        assert.deepStrictEqual(await collect(channel, 4, 5000), [1, 2, 3, 'fresh']);
        assert.equal(continuity.position(name).epoch, recovery.position.epoch);
      } finally {
        await proxy.close();
      }
    });

    test('history on join, presence with login names, join and leave', {timeout: 30000}, async () => {
      let name = uniqueName('room/chat');
      let alice = await connectClient(V.client, server);
      let aliceHelper = scContinuity.attach(alice.socket);
      let presenceEvents = new Queue('presence');
      aliceHelper.on('presenceJoin', (e) => presenceEvents.push({type: 'join', ...e}));
      aliceHelper.on('presenceLeave', (e) => presenceEvents.push({type: 'leave', ...e}));
      await withTimeout(alice.invoke('login', {username: 'alice'}), 5000, 'login');
      let aliceRoom = alice.subscribe(name);
      await aliceRoom.waitSubscribed();
      for (let n = 1; n <= 5; n++) await withTimeout(alice.invokePublish(name, n), 5000, 'publish');

      let bob = createClient(V.client, server);
      let bobHelper = scContinuity.attach(bob.socket).history(name, 3);
      await bob.ready();
      await withTimeout(bob.invoke('login', {username: 'bob'}), 5000, 'login');
      let bobRoom = bob.subscribe(name);
      await bobRoom.waitSubscribed();
      assert.deepStrictEqual(await collect(bobRoom, 3, 5000), [3, 4, 5], 'the last three, oldest first');
      assert.equal(bobHelper.position(name).offset, 5);

      let join = await presenceEvents.waitFor((e) => e.type === 'join', 5000, 'bob joins');
      assert.equal(join.channel, name);
      assert.deepStrictEqual(join.client, {id: bob.id, user: 'bob'});
      let presence = await withTimeout(bobHelper.presence(name), 5000, 'presence');
      assert.equal(presence.count, 2);
      assert.deepStrictEqual(presence.clients.map((c) => c.user).sort(), ['alice', 'bob']);

      let refused = await bobHelper.presence(uniqueName('room/elsewhere')).then(() => null, (e) => e);
      assert.equal(refused && refused.name, 'PresenceError');

      bobRoom.unsubscribe();
      let leave = await presenceEvents.waitFor((e) => e.type === 'leave', 5000, 'bob leaves');
      assert.deepStrictEqual(leave.client, {id: join.client.id, user: 'bob'});
    });
  });
}
