// 6. Publish / subscribe with the official clients.
import {describe, test, before} from 'node:test';
import assert from 'node:assert/strict';
import {
  useHarness, startServer, connectClient, expectRejection, withTimeout, publishBarrier, uniqueName,
  VERSIONS, NEEDS_AUTO, noData
} from './lib/harness.mjs';

useHarness();

/** Subscribes every client to `name` and waits until all are subscribed. */
async function subscribeAll(clients, name, options) {
  let handles = clients.map((c) => c.subscribe(name, options));
  await Promise.all(handles.map((h) => h.waitSubscribed()));
  return handles;
}

for (const V of VERSIONS) {
  describe(`${V.name} client, protocol v${V.protocol}`, () => {
    let server;
    before(async () => {
      server = await startServer({'protocol-version': V.protocol}, {keep: true});
    });

    test('subscribe: channel becomes subscribed, subscribe event fires', {timeout: 15000}, async () => {
      let client = await connectClient(V, server);
      let name = uniqueName('sub');
      let channel = client.subscribe(name);
      assert.equal(channel.state, 'pending');
      let event = await channel.waitSubscribed();
      assert.equal(event.channel, name);
      assert.equal(channel.state, 'subscribed');
      assert.equal(client.socket.isSubscribed(name), true);
      // Subscribing again to the same channel is harmless.
      client.subscribe(name);
      assert.equal(channel.state, 'subscribed');
      assert.equal(await client.echo('ok'), 'ok');
    });

    test('ping: every subscriber receives the same incremented counter', {timeout: 15000}, async () => {
      let clients = await Promise.all([1, 2, 3].map(() => connectClient(V, server)));
      let channels = await subscribeAll(clients, 'pong');
      clients[0].transmit('ping');
      let first = await Promise.all(channels.map((c) => c.next()));
      assert.equal(typeof first[0], 'number');
      assert.ok(Number.isInteger(first[0]) && first[0] >= 1, `counter ${first[0]}`);
      assert.deepEqual(first, [first[0], first[0], first[0]]);
      // An invoked ping (with ack) from another client increments again.
      assert.equal(await withTimeout(clients[2].invoke('ping'), 5000, 'ping ack'), noData(V));
      let second = await Promise.all(channels.map((c) => c.next()));
      assert.deepEqual(second, [first[0] + 1, first[0] + 1, first[0] + 1]);
    });

    test('socket publish without and with ack reaches every subscriber incl. the publisher', {timeout: 15000}, async () => {
      let clients = await Promise.all([1, 2, 3].map(() => connectClient(V, server)));
      let name = uniqueName('news');
      let channels = await subscribeAll(clients, name);
      clients[0].publish(name, {headline: 'no ack'});
      let ackResult = await withTimeout(clients[1].invokePublish(name, {headline: 'with ack'}), 5000, 'publish ack');
      assert.equal(ackResult, noData(V), 'publish ack carries no data');
      for (let channel of channels) {
        let got = [await channel.next(), await channel.next()];
        got.sort((a, b) => a.headline.localeCompare(b.headline));
        assert.deepStrictEqual(got, [{headline: 'no ack'}, {headline: 'with ack'}]);
      }
    });

    test('channel.publish (v14) / channel.transmitPublish+invokePublish (v20)', {timeout: 15000}, async () => {
      let [a, b] = await Promise.all([connectClient(V, server), connectClient(V, server)]);
      let name = uniqueName('chpub');
      let [chA, chB] = await subscribeAll([a, b], name);
      chA.publish('via channel, no ack');
      await withTimeout(chA.invokePublish('via channel, with ack'), 5000, 'channel publish ack');
      for (let ch of [chA, chB]) {
        // Both publishes come from the same socket, so they are delivered in order.
        assert.equal(await ch.next(), 'via channel, no ack');
        assert.equal(await ch.next(), 'via channel, with ack');
      }
    });

    test('publishes from one client arrive in order with every JSON type', {timeout: 15000}, async () => {
      let [a, b] = await Promise.all([connectClient(V, server), connectClient(V, server)]);
      let name = uniqueName('order');
      let [, chB] = await subscribeAll([a, b], name);
      let values = [0, -0.5, 1e21, 'ünï 🎉', null, true, [1, [2]], {n: {m: 'x'}}, 'quote " \\ \n',
        ...Array.from({length: 50}, (_, i) => i)];
      for (let v of values) a.publish(name, v);
      let got = [];
      for (let i = 0; i < values.length; i++) got.push(await chB.next());
      assert.deepStrictEqual(got, values);
    });

    test('publishing to a channel without subscribers is acked', {timeout: 15000}, async () => {
      let client = await connectClient(V, server);
      assert.equal(await withTimeout(client.invokePublish(uniqueName('nobody'), 1), 5000, 'ack'), noData(V));
    });

    test('server-side publish (serverpublish) is delivered', {timeout: 15000}, async () => {
      let [a, b] = await Promise.all([connectClient(V, server), connectClient(V, server)]);
      let name = uniqueName('srv');
      let [chA, chB] = await subscribeAll([a, b], name);
      let ack = await withTimeout(a.invoke('serverpublish', {channel: name, data: {from: 'server'}}), 5000, 'ack');
      assert.equal(ack, noData(V));
      assert.deepStrictEqual(await chA.next(), {from: 'server'});
      assert.deepStrictEqual(await chB.next(), {from: 'server'});
    });

    test('unsubscribe stops delivery to that client only', {timeout: 15000}, async () => {
      let [a, b] = await Promise.all([connectClient(V, server), connectClient(V, server)]);
      let name = uniqueName('unsub');
      let [chA, chB] = await subscribeAll([a, b], name);
      b.publish(name, 'before');
      assert.equal(await chA.next(), 'before');
      assert.equal(await chB.next(), 'before');
      chA.unsubscribe();
      assert.equal(chA.state, 'unsubscribed');
      assert.equal(a.socket.isSubscribed(name, true), false);
      // Make sure the server handled the #unsubscribe before publishing (same socket, sequential processing).
      await withTimeout(a.invoke('serverpublish', {channel: name, data: 'after'}), 5000, 'ack');
      assert.equal(await chB.next(), 'after');
      await publishBarrier(a);
      assert.deepEqual(chA.messages.drain(), [], 'no delivery after unsubscribe');
      // Re-subscribing works.
      let again = a.subscribe(name);
      await again.waitSubscribed();
      b.publish(name, 'again');
      assert.equal(await again.next(), 'again');
    });

    if (V.client === 14) {
      test('v14 batch subscribe ({batch: true}) subscribes and delivers', {timeout: 15000}, async () => {
        let [a, b] = await Promise.all([connectClient(14, server), connectClient(14, server)]);
        let names = [uniqueName('batch'), uniqueName('batch'), uniqueName('batch')];
        let handles = names.map((n) => a.subscribe(n, {batch: true}));
        await Promise.all(handles.map((h) => h.waitSubscribed()));
        for (let h of handles) assert.equal(h.state, 'subscribed');
        for (let n of names) b.publish(n, `to ${n}`);
        for (let i = 0; i < names.length; i++) assert.equal(await handles[i].next(), `to ${names[i]}`);
        // Batched unsubscribe.
        handles[0].unsubscribe();
        await withTimeout(a.invoke('serverpublish', {channel: names[0], data: 'gone'}), 5000, 'ack');
        b.publish(names[1], 'still');
        assert.equal(await handles[1].next(), 'still');
        await publishBarrier(a);
        assert.deepEqual(handles[0].messages.drain(), []);
      });
    }

    if (V.client === 20) {
      test('v20 channels can be consumed with for-await', {timeout: 15000}, async () => {
        let client = await connectClient(20, server);
        let name = uniqueName('iter');
        let channel = client.socket.subscribe(name);
        await withTimeout(channel.listener('subscribe').once(), 5000, 'subscribe');
        let received = (async () => {
          let got = [];
          for await (let data of channel) {
            got.push(data);
            if (got.length === 3) break;
          }
          return got;
        })();
        for (let i = 1; i <= 3; i++) client.socket.transmitPublish(name, i);
        assert.deepEqual(await withTimeout(received, 5000, 'three messages'), [1, 2, 3]);
      });
    }

    test('kickOut: kickme removes the subscription and notifies the client', {timeout: 15000}, async () => {
      let [a, b] = await Promise.all([connectClient(V, server), connectClient(V, server)]);
      let name = uniqueName('kick');
      let [chA, chB] = await subscribeAll([a, b], name);
      a.transmit('kickme', {channel: name});
      let kick = await a.waitEvent('kickOut');
      assert.equal(kick.channel, name);
      assert.equal(kick.message, 'you are kicked');
      assert.equal(chA.state, 'unsubscribed');
      assert.equal(a.socket.isSubscribed(name, true), false);
      // The other subscriber is unaffected; the kicked one gets nothing more.
      await withTimeout(b.invoke('serverpublish', {channel: name, data: 'after kick'}), 5000, 'ack');
      assert.equal(await chB.next(), 'after kick');
      await publishBarrier(a);
      assert.deepEqual(chA.messages.drain(), []);
      // No kickOut for b, and a is still connected.
      assert.equal(b.events.all.some((e) => e.type === 'kickOut'), false);
      assert.equal(await a.echo('alive'), 'alive');
    });
  });

  describe(`${V.name} client, --allow-client-publish false`, () => {
    test('client publish is rejected with InvalidActionError; server publish still works', {timeout: 15000}, async () => {
      let server = await startServer({'protocol-version': V.protocol, 'allow-client-publish': 'false'});
      let [a, b] = await Promise.all([connectClient(V, server), connectClient(V, server)]);
      let name = uniqueName('nopub');
      let [, chB] = await subscribeAll([a, b], name);
      let err = await expectRejection(a.invokePublish(name, 'rejected'), 5000, 'publish rejection');
      assert.equal(err.name, 'InvalidActionError');
      assert.equal(err.message, 'Client publish feature is disabled');
      a.publish(name, 'also rejected, no ack');
      await withTimeout(a.invoke('serverpublish', {channel: name, data: 'from server'}), 5000, 'ack');
      assert.equal(await chB.next(), 'from server');
      await publishBarrier(b);
      assert.deepEqual(chB.messages.drain(), [], 'client publishes were not delivered');
      assert.equal(a.state, 'open');
    });
  });

  describe(`${V.name} client, --socket-channel-limit 3`, () => {
    test('the 4th subscription fails with BrokerError; the socket keeps working', {timeout: 15000}, async () => {
      let server = await startServer({'protocol-version': V.protocol, 'socket-channel-limit': 3});
      let client = await connectClient(V, server);
      let names = [1, 2, 3, 4].map(() => uniqueName('lim'));
      let handles = [];
      for (let n of names.slice(0, 3)) {
        let h = client.subscribe(n);
        await h.waitSubscribed();
        handles.push(h);
      }
      let fourth = client.subscribe(names[3]);
      let err = await fourth.waitSubscribeFail();
      assert.equal(err.name, 'BrokerError');
      assert.match(err.message, /tried to exceed the channel subscription limit of 3/);
      assert.match(err.message, new RegExp(`^Failed to subscribe socket to the ${names[3]} channel - `));
      assert.equal(fourth.state, 'unsubscribed');
      assert.equal(client.state, 'open');
      assert.equal(await client.echo('still works'), 'still works');
      // Earlier channels still deliver (published by the server).
      for (let i = 0; i < 3; i++) {
        await withTimeout(client.invoke('serverpublish', {channel: names[i], data: i}), 5000, 'ack');
        assert.equal(await handles[i].next(), i);
      }
      // After unsubscribing one channel there is room again.
      handles[0].unsubscribe();
      let retry = client.subscribe(names[3]);
      await retry.waitSubscribed();
      assert.equal(retry.state, 'subscribed');
    });
  });
}

describe('mixed client versions on one server (--protocol-version auto)', () => {
  test('ping reaches v14 and v20 subscribers; publishes cross versions', {skip: NEEDS_AUTO, timeout: 20000}, async () => {
    let server = await startServer({'protocol-version': 'auto'});
    let clients = await Promise.all([
      connectClient(14, server), connectClient(20, server), connectClient(14, server), connectClient(20, server)
    ]);
    let channels = await subscribeAll(clients, 'pong');
    clients[0].transmit('ping');
    let first = await Promise.all(channels.map((c) => c.next()));
    assert.ok(Number.isInteger(first[0]));
    assert.deepEqual(first, [first[0], first[0], first[0], first[0]]);
    clients[1].transmit('ping');
    let second = await Promise.all(channels.map((c) => c.next()));
    assert.deepEqual(second, Array(4).fill(first[0] + 1));

    let name = uniqueName('mixed');
    let chs = await subscribeAll(clients, name);
    clients[0].publish(name, {from: 'v14', emoji: '🎉'});
    for (let ch of chs) assert.deepStrictEqual(await ch.next(), {from: 'v14', emoji: '🎉'});
    await withTimeout(clients[1].invokePublish(name, {from: 'v20'}), 5000, 'ack');
    for (let ch of chs) assert.deepStrictEqual(await ch.next(), {from: 'v20'});

    // kickOut is understood by both client versions.
    for (let c of clients.slice(0, 2)) {
      c.transmit('kickme', {channel: name});
      let kick = await c.waitEvent('kickOut');
      assert.equal(kick.channel, name);
      assert.equal(kick.message, 'you are kicked');
    }
    assert.equal(chs[0].state, 'unsubscribed');
    assert.equal(chs[1].state, 'unsubscribed');
  });
});
