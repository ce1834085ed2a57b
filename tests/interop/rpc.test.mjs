// 2.–5. Events, RPCs, ack timeouts, error responses, binary data, server → client push and invoke.
import {describe, test, before} from 'node:test';
import assert from 'node:assert/strict';
import {
  useHarness, startServer, createClient, connectClient, expectRejection, withTimeout, VERSIONS, noData, sentBuffer
} from './lib/harness.mjs';

useHarness();

// Values that must survive a client → server → client round trip unchanged.
const ROUND_TRIP = [
  ['empty string', ''],
  ['ascii string', 'hello world'],
  ['zero', 0],
  ['positive integer', 42],
  ['negative integer', -7],
  ['fraction', 3.14159],
  ['negative fraction', -0.5],
  ['1e21', 1e21],
  ['tiny exponent', 1.5e-7],
  ['largest safe integer', Number.MAX_SAFE_INTEGER],
  ['big integer beyond 2^53', 2 ** 64],
  ['negative big integer', -(2 ** 60)],
  ['max double', Number.MAX_VALUE],
  ['min positive double', Number.MIN_VALUE],
  ['true', true],
  ['false', false],
  ['null', null],
  ['nested object', {a: {b: {c: [1, {d: 'e'}], empty: {}}, list: []}, z: 'last'}],
  ['array of mixed', [1, 'two', null, true, {x: [3, 4.5]}, [], [[[]]]]],
  ['unicode and emoji', 'héllo wörld — 日本語 — Ελληνικά — 🎉👍🏽👨‍👩‍👧'],
  ['escaped characters', 'quote " backslash \\ slash / newline \n cr \r tab \t bs \b ff \f ctrl \u0001\u001f del \u007f'],
  ['line/paragraph separators', 'a\u2028b\u2029c'],
  ['object with unicode keys', {'ключ': 'значение', '🔑': ['🚪'], 'with space': 1, '': 'empty key'}],
  ['strings that look like protocol', {event: '#publish', rid: 1, cid: 2, data: '#1', x: '#2'}],
  ['deeply nested (30 levels)', Array.from({length: 30}).reduce((acc) => ({n: acc}), 'bottom')],
  ['large string (200 KiB)', 'x'.repeat(200 * 1024)],
  ['many keys', Object.fromEntries(Array.from({length: 500}, (_, i) => [`k${i}`, i]))]
];

for (const V of VERSIONS) {
  describe(`${V.name} client, protocol v${V.protocol}`, () => {
    let server;
    before(async () => {
      server = await startServer({'protocol-version': V.protocol}, {keep: true});
    });

    test('invoke/emit-with-callback round-trips every kind of JSON value unchanged', {timeout: 20000}, async () => {
      let client = await connectClient(V, server);
      for (let [label, value] of ROUND_TRIP) {
        let echoed = await withTimeout(client.invoke('echo', value), 5000, `echo of ${label}`);
        assert.deepStrictEqual(echoed, value, `echo of ${label}`);
      }
    });

    test('echo preserves object key order', {timeout: 15000}, async () => {
      let client = await connectClient(V, server);
      let value = {zeta: 1, alpha: 2, mid: {y: 1, b: 2, a: 3}, '10': 'numeric-looking key', last: [3, 2, 1]};
      let echoed = await client.echo(value);
      assert.equal(JSON.stringify(echoed), JSON.stringify(value));
    });

    test('many concurrent invokes are each answered with their own data', {timeout: 15000}, async () => {
      let client = await connectClient(V, server);
      let values = Array.from({length: 200}, (_, i) => ({i, s: `v${i}`}));
      let results = await withTimeout(Promise.all(values.map((v) => client.invoke('echo', v))), 10000, '200 echoes');
      assert.deepStrictEqual(results, values);
    });

    test('emit/transmit without ack does not disturb the connection', {timeout: 15000}, async () => {
      let client = await connectClient(V, server);
      // Fire-and-forget to a receiver, to a procedure-only event and to an unknown event.
      client.transmit('fire', {x: 1});
      client.transmit('echo', 'no cid, so no answer');
      client.transmit('noreply', 1);
      client.transmit('doesNotExist', [1, 2, 3]);
      assert.equal(await client.echo('still here'), 'still here');
      assert.deepEqual(client.events.all.filter((e) => e.type === 'error' || e.type === 'disconnect'), []);
    });

    test('invoking an event with no data answers with no data', {timeout: 15000}, async () => {
      let client = await connectClient(V, server);
      let result = await withTimeout(client.invoke('echo'), 5000, 'echo without data');
      assert.equal(result, noData(V));
      let pingAck = await withTimeout(client.invoke('ping'), 5000, 'ping ack');
      assert.equal(pingAck, noData(V), 'ping is acked without data');
    });

    if (V.client === 14) {
      test('v14 socket.emit(event, data, callback) gets (null, data)', {timeout: 15000}, async () => {
        let client = await connectClient(14, server);
        let args = await withTimeout(new Promise((resolve) => {
          client.socket.emit('echo', {msg: 'hi'}, (...cbArgs) => resolve(cbArgs));
        }), 5000, 'emit callback');
        assert.equal(args[0], null);
        assert.deepStrictEqual(args[1], {msg: 'hi'});
      });
    } else {
      test('v20 invoke resolves with data; transmit sends without a cid', {timeout: 15000}, async () => {
        let client = await connectClient(20, server);
        assert.deepStrictEqual(await client.socket.invoke('echo', {msg: 'hi'}), {msg: 'hi'});
        client.socket.transmit('fire', {x: 1});
        assert.deepStrictEqual(await client.socket.invoke('echo', [1, 2]), [1, 2]);
      });
    }

    test('ackTimeout: noreply and an unknown event give TimeoutError', {timeout: 15000}, async () => {
      let client;
      let invokeShort;
      if (V.client === 14) {
        client = await connectClient(14, server, {ackTimeout: 300});
        invokeShort = (event, data) => client.invoke(event, data);
      } else {
        client = await connectClient(20, server);
        invokeShort = (event, data) => client.socket.invoke(event, data, {ackTimeout: 300});
      }
      for (let event of ['noreply', 'unknownProcedure']) {
        let started = Date.now();
        let err = await expectRejection(invokeShort(event, 1), 5000, `${event} to time out`);
        let elapsed = Date.now() - started;
        assert.equal(err.name, 'TimeoutError', `${event}: ${err && err.message}`);
        assert.match(err.message, /timed out/);
        assert.match(err.message, new RegExp(event));
        assert.ok(elapsed >= 250, `${event} timed out after ${elapsed} ms, expected about 300`);
      }
      // A late answer never arrives and the socket is still fine.
      assert.equal(await client.echo('after timeouts'), 'after timeouts');
      assert.equal(client.state, 'open');
    });

    test('failme → error with name, message and extra fields', {timeout: 15000}, async () => {
      let client = await connectClient(V, server);
      let err = await expectRejection(client.invoke('failme', 123), 5000, 'failme error');
      assert.ok(err instanceof Error, 'error objects are hydrated into Error instances');
      assert.equal(err.name, 'CustomError');
      assert.equal(err.message, 'Custom failure');
      assert.equal(err.extra, 42);
      assert.equal(await client.echo('after error'), 'after error');
    });

    test('failstring → the plain string as the error', {timeout: 15000}, async () => {
      let client = await connectClient(V, server);
      let err = await expectRejection(client.invoke('failstring', null), 5000, 'failstring error');
      assert.equal(err, 'plain string error');
    });

    test('binary: Buffers travel as {base64:true,data} markers', {timeout: 15000}, async () => {
      let client = await connectClient(V, server);
      let result = await withTimeout(client.invoke('binary', Buffer.from([1, 2, 3])), 5000, 'binary');
      assert.deepStrictEqual(result, {
        buf: {base64: true, data: 'aGVsbG8='},
        received: sentBuffer(V, Buffer.from([1, 2, 3]))
      });
      assert.equal(Buffer.from(result.buf.data, 'base64').toString(), 'hello');
      // Nested binary inside an object, and an ArrayBuffer.
      let nested = await client.invoke('binary', {file: Buffer.from('héllo'), ab: new Uint8Array([255, 0]).buffer});
      assert.deepStrictEqual(nested.received, {
        file: sentBuffer(V, Buffer.from('héllo')),
        ab: {base64: true, data: '/wA='}
      });
    });

    test('askme: ack, server push, server invoke answered by the client', {timeout: 15000}, async () => {
      let client = await connectClient(V, server);
      let answers = client.subscribe('answers');
      await answers.waitSubscribed();
      let pushes = client.receive('serverPush');
      let questions = [];
      client.answer('serverQuestion', (data) => {
        questions.push(data);
        return {a: 'like this'};
      });
      let ack = await withTimeout(client.invoke('askme'), 5000, 'askme ack');
      assert.equal(ack, noData(V));
      assert.deepStrictEqual(await pushes.next(), {hello: 'world'});
      assert.deepStrictEqual(await answers.next(), {answer: {a: 'like this'}});
      assert.deepStrictEqual(questions, [{q: 'how?'}]);
    });

    test('askme: a client error answer reaches the server', {timeout: 15000}, async () => {
      let client = await connectClient(V, server);
      let answers = client.subscribe('answers');
      await answers.waitSubscribed();
      client.answer('serverQuestion', () => {
        let err = new Error('I refuse');
        err.name = 'ClientError';
        throw err;
      });
      client.transmit('askme');
      assert.deepStrictEqual(await answers.next(), {error: 'I refuse'});
    });
  });

  describe(`${V.name} client, server --ack-timeout`, () => {
    test('server-side invoke times out when the client never answers', {timeout: 15000}, async () => {
      let server = await startServer({'protocol-version': V.protocol, 'ack-timeout': 300});
      let client = await connectClient(V, server);
      let answers = client.subscribe('answers');
      await answers.waitSubscribed();
      let pushes = client.receive('serverPush');
      // Nobody answers serverQuestion.
      client.transmit('askme');
      assert.deepStrictEqual(await pushes.next(), {hello: 'world'});
      let started = Date.now();
      let result = await answers.next(5000);
      assert.equal(typeof result.error, 'string', JSON.stringify(result));
      assert.match(result.error, /timed out/i);
      assert.ok(Date.now() - started < 4000);
      assert.equal(client.state, 'open');
    });
  });
}

