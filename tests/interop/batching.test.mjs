// 5.5 Server-side batching (startBatching / stopBatching / cancelBatching, batchOnHandshake) as the official
// clients receive it, with either codec; and a handler's response that precedes its socket.disconnect().
import {describe, test, before} from 'node:test';
import assert from 'node:assert/strict';
import {useHarness, startServer, connectClient, withTimeout, sleep, uniqueName, VERSIONS} from './lib/harness.mjs';

useHarness();

const isBatch = (f) => Array.isArray(f);
const rids = (batch) => batch.filter((p) => p && p.rid != null).map((p) => p.rid);

for (const V of VERSIONS) {
  describe(`${V.name} client, protocol v${V.protocol}: server-side batching`, () => {
    let server;
    before(async () => {
      server = await startServer({'protocol-version': V.protocol, 'ping-timeout': 15000, 'batch-interval': 100},
        {keep: true});
    });

    test('startBatching: responses and deliveries arrive as one array; stopBatching ends it', {timeout: 15000},
      async () => {
        let client = await connectClient(V, server);
        let channel = uniqueName('bch');
        let handle = client.subscribe(channel);
        await handle.waitSubscribed();
        let frames = client.frames();
        await withTimeout(client.invoke('startbatch'), 5000, 'startbatch');
        let [a, b] = await withTimeout(Promise.all([
          client.invoke('echo', 'a'),
          client.invoke('echo', 'b'),
          client.invoke('serverpublish', {channel, data: 1})
        ]), 5000, 'batched answers');
        assert.deepStrictEqual([a, b], ['a', 'b']);
        assert.equal(await handle.next(), 1);
        let batch = await frames.waitFor((f) => isBatch(f) && rids(f).length >= 2, 5000, 'a batch with both echoes');
        assert.ok(batch.length >= 2, JSON.stringify(batch));
        await withTimeout(client.invoke('stopbatch'), 5000, 'stopbatch');
        frames.drain();
        assert.equal(await client.echo('single'), 'single');
        let single = await frames.waitFor((f) => !isBatch(f) && f.rid != null && f.data === 'single', 5000,
          'the echo as a frame of its own');
        assert.equal(single.data, 'single');
        assert.deepStrictEqual(frames.drain().filter(isBatch), []);
      });

    test('cancelBatching: the socket goes back to one packet per frame', {timeout: 15000}, async () => {
      let client = await connectClient(V, server);
      let frames = client.frames();
      await withTimeout(client.invoke('startbatch'), 5000, 'startbatch');
      await withTimeout(client.invoke('cancelbatch'), 5000, 'cancelbatch');
      frames.drain();
      assert.equal(await client.echo('after cancel'), 'after cancel');
      await frames.waitFor((f) => !isBatch(f) && f.data === 'after cancel', 5000, 'an unbatched echo');
    });
  });

  describe(`${V.name} client, protocol v${V.protocol}: batchOnHandshake`, () => {
    test('the first packets after the handshake arrive batched, later ones not', {timeout: 15000}, async () => {
      let server = await startServer({
        'protocol-version': V.protocol, 'batch-on-handshake': true, 'batch-on-handshake-duration': 1500,
        'batch-interval': 100
      });
      let client = await connectClient(V, server);
      let frames = client.frames();
      let answers = await withTimeout(Promise.all([client.invoke('echo', 1), client.invoke('echo', 2)]), 5000,
        'echoes during batchOnHandshake');
      assert.deepStrictEqual(answers, [1, 2]);
      await frames.waitFor((f) => isBatch(f) && rids(f).length >= 2, 5000, 'a batch of both echoes');
      await sleep(1700);
      frames.drain();
      assert.equal(await client.echo('later'), 'later');
      await frames.waitFor((f) => !isBatch(f) && f.data === 'later', 5000, 'an unbatched echo after the window');
    });
  });

  describe(`${V.name} client, protocol v${V.protocol}: response before disconnect`, () => {
    test('a handler that answers and disconnects: the invoke resolves, then the socket closes 4321',
      {timeout: 15000}, async () => {
        let server = await startServer({'protocol-version': V.protocol});
        let client = await connectClient(V, server);
        let answer = withTimeout(client.invoke('dropme'), 5000, 'dropme answer');
        await answer; // resolves: it is not failed with BadConnectionError
        let disconnect = await client.waitEvent('disconnect');
        assert.equal(disconnect.code, 4321);
      });
  });
}
