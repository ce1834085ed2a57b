// Several instances of the Rust boilerplate cluster linked by a real engine (the machine's Redis on
// 127.0.0.1:6379 and NATS on 127.0.0.1:4222, which the test command starts when none answers): the official
// 14.3.2 and 20.x clients spread across three instances see every publication exactly once, in order per
// publisher.

import {test} from 'node:test';
import assert from 'node:assert/strict';
import {useHarness, startBoilerplate, connectClient, uniqueName, withTimeout} from './lib/harness.mjs';

useHarness();

const ENGINES = [
  {name: 'redis', url: 'redis://127.0.0.1:6379'},
  {name: 'nats', url: 'nats://127.0.0.1:4222'}
];
const PER_PUBLISHER = 30;

for (let engine of ENGINES) {
  test(`${engine.name}: official clients on three instances get every publication once, in order`, async () => {
    let instances = [];
    for (let i = 0; i < 3; i++) {
      instances.push(await startBoilerplate({engine: engine.url}));
    }
    let channel = uniqueName(`engine-${engine.name}`);
    // One v14 and one v20 client per instance.
    let clients = [];
    for (let instance of instances) {
      for (let version of [14, 20]) {
        clients.push(await connectClient(version, instance));
      }
    }
    let channels = [];
    for (let client of clients) {
      let handle = client.subscribe(channel);
      await handle.waitSubscribed();
      channels.push(handle);
    }
    // Every client publishes; every subscriber must see every message once, each publisher's in order.
    for (let n = 0; n < PER_PUBLISHER; n++) {
      await Promise.all(clients.map((client, from) => client.invokePublish(channel, {from, n})));
    }
    for (let handle of channels) {
      let next = new Array(clients.length).fill(0);
      for (let i = 0; i < PER_PUBLISHER * clients.length; i++) {
        let message = await handle.next(10000);
        assert.equal(message.n, next[message.from], `publisher ${message.from}: in order, none lost or repeated`);
        next[message.from]++;
      }
      assert.deepEqual(next, new Array(clients.length).fill(PER_PUBLISHER));
    }
    // The server's own publishes (`ping` → `pong`) cross instances too.
    let pong = clients[5].subscribe('pong');
    await pong.waitSubscribed();
    await withTimeout(clients[0].invoke('ping', null), 5000, 'ping');
    let count = await pong.next(10000);
    assert.equal(typeof count, 'number');
  });
}
