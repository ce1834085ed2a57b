// 9. Byte-level checks with a raw WebSocket client (frames from the spec's test vectors), HTTP admission checks,
// and v1 server specifics.
import {describe, test, before} from 'node:test';
import assert from 'node:assert/strict';
import {
  useHarness, startServer, rawConnect, rawUpgrade, createClient, uniqueName, NEEDS_RAW_JSON, NEEDS_V1_SERVER
} from './lib/harness.mjs';

useHarness();

/** A handshaken raw connection that answers pings of either dialect, with a cid counter. */
async function session(server) {
  let raw = await rawConnect(server, {pong: 'any'});
  let handshake = await raw.handshake(1);
  raw.cid = 1;
  raw.nextCid = () => ++raw.cid;
  raw.handshakeText = handshake;
  return raw;
}

/** Subscribes a raw session to `channel` and waits for the exact `{"rid":n}` answer. */
async function rawSubscribe(raw, channel) {
  let cid = raw.nextCid();
  raw.send(`{"event":"#subscribe","data":{"channel":${JSON.stringify(channel)}},"cid":${cid}}`);
  await raw.waitFrame(`{"rid":${cid}}`);
}

function deliveryFrame(channel, dataJson) {
  return `{"event":"#publish","data":{"channel":${JSON.stringify(channel)},"data":${dataJson}}}`;
}

/** Publish-ordering barrier for a raw session: the server publishes a token to a private channel; wait for it. */
async function rawBarrier(raw) {
  if (!raw.barrierChannel) {
    raw.barrierChannel = uniqueName('rawbarrier');
    await rawSubscribe(raw, raw.barrierChannel);
  }
  let token = uniqueName('tok');
  raw.send(`{"event":"serverpublish","data":{"channel":"${raw.barrierChannel}","data":"${token}"}}`);
  await raw.waitFrame(deliveryFrame(raw.barrierChannel, `"${token}"`));
}

for (const protocol of ['1', '2']) {
  describe(`raw ws frames, protocol v${protocol}`, () => {
    let server;
    before(async () => {
      server = await startServer({'protocol-version': protocol, 'ping-timeout': 7000}, {keep: true});
    });

    test('handshake response: {"rid":1,"data":{"id","pingTimeout","isAuthenticated"}}', {timeout: 15000}, async () => {
      let raw = await session(server);
      let text = raw.handshakeText;
      let value = JSON.parse(text);
      assert.deepEqual(Object.keys(value), ['rid', 'data']);
      assert.equal(value.rid, 1);
      assert.deepEqual(Object.keys(value.data), ['id', 'pingTimeout', 'isAuthenticated']);
      assert.equal(typeof value.data.id, 'string');
      assert.ok(value.data.id.length > 0);
      assert.equal(value.data.pingTimeout, 7000);
      assert.equal(value.data.isAuthenticated, false);
      assert.equal(text, `{"rid":1,"data":{"id":${JSON.stringify(value.data.id)},"pingTimeout":7000,"isAuthenticated":false}}`);
    });

    test('handshake with missing data or {} is accepted', {timeout: 15000}, async () => {
      for (let frame of ['{"event":"#handshake","cid":1}', '{"event":"#handshake","data":{},"cid":1}']) {
        let raw = await rawConnect(server, {pong: 'any'});
        raw.send(frame);
        let {value} = await raw.waitJson((v) => v.rid === 1, 5000, `answer to ${frame}`);
        assert.equal(value.data.isAuthenticated, false);
        assert.equal(typeof value.data.id, 'string');
      }
    });

    test('echo: {"event":"echo","data":{"msg":"hi"},"cid":2} → exactly {"rid":2,"data":{"msg":"hi"}}', {timeout: 15000}, async () => {
      let raw = await session(server);
      raw.send('{"event":"echo","data":{"msg":"hi"},"cid":2}');
      assert.equal(await raw.next(), '{"rid":2,"data":{"msg":"hi"}}');
      raw.send('{"event":"echo","cid":3}');
      assert.equal(await raw.next(), '{"rid":3}', 'undefined data → no data key');
      raw.send('{"event":"echo","data":null,"cid":4}');
      assert.equal(await raw.next(), '{"rid":4,"data":null}');
    });

    test('a batch array in → one response frame per request, in order', {timeout: 15000}, async () => {
      let raw = await session(server);
      raw.send('[{"event":"echo","data":"a","cid":2},{"event":"echo","data":"b","cid":3},{"event":"fire","data":"c"}]');
      assert.equal(await raw.next(), '{"rid":2,"data":"a"}');
      assert.equal(await raw.next(), '{"rid":3,"data":"b"}');
      raw.send('{"event":"echo","data":"end","cid":4}');
      assert.equal(await raw.next(), '{"rid":4,"data":"end"}', 'fire produced no frame');
    });

    test('error responses: failme and failstring', {timeout: 15000}, async () => {
      let raw = await session(server);
      raw.send('{"event":"failme","data":123,"cid":3}');
      let {value} = await raw.waitJson((v) => v.rid === 3);
      assert.deepEqual(value.error, {message: 'Custom failure', name: 'CustomError', extra: 42});
      assert.equal(value.data, undefined);
      raw.send('{"event":"failstring","data":null,"cid":4}');
      assert.equal(await raw.waitFrame((f) => f.startsWith('{"rid":4')), '{"rid":4,"error":"plain string error"}');
    });

    test('binary marker: exactly the TV-8 response', {timeout: 15000}, async () => {
      let raw = await session(server);
      raw.send('{"event":"binary","data":{"base64":true,"data":"AQID"},"cid":14}');
      assert.equal(await raw.next(),
        '{"rid":14,"data":{"buf":{"base64":true,"data":"aGVsbG8="},"received":{"base64":true,"data":"AQID"}}}');
    });

    test('subscribe → {"rid":n}; publish delivery frame is exact; publisher receives its own publish', {timeout: 15000}, async () => {
      let raw = await session(server);
      let other = await session(server);
      await rawSubscribe(raw, 'news');
      await rawSubscribe(other, 'news');
      raw.send('{"event":"#publish","data":{"channel":"news","data":{"headline":"x"}},"cid":8}');
      let expected = '{"event":"#publish","data":{"channel":"news","data":{"headline":"x"}}}';
      await raw.waitFrame('{"rid":8}');
      await raw.waitFrame(expected);
      await other.waitFrame(expected);
      // Without a cid: delivery only, no response.
      raw.send('{"event":"#publish","data":{"channel":"news","data":"no callback"}}');
      await raw.waitFrame(deliveryFrame('news', '"no callback"'));
      await other.waitFrame(deliveryFrame('news', '"no callback"'));
      // Server-side publish: identical frames.
      raw.send('{"event":"serverpublish","data":{"channel":"news","data":"from server"}}');
      await raw.waitFrame(deliveryFrame('news', '"from server"'));
      await other.waitFrame(deliveryFrame('news', '"from server"'));
      await rawBarrier(raw);
      assert.deepEqual(raw.frames.drain(), [], 'nothing else was sent');
      await rawBarrier(other);
      assert.deepEqual(other.frames.drain(), []);
    });

    test('ping → ack {"rid":n} and the counter published to pong', {timeout: 15000}, async () => {
      let raw = await session(server);
      await rawSubscribe(raw, 'pong');
      raw.send('{"event":"ping","cid":3}');
      await raw.waitFrame('{"rid":3}');
      let first = await raw.waitFrame((f) => f.startsWith('{"event":"#publish","data":{"channel":"pong",'));
      let match = /^\{"event":"#publish","data":\{"channel":"pong","data":(\d+)\}\}$/.exec(first);
      assert.ok(match, first);
      raw.send('{"event":"ping"}');
      await raw.waitFrame(deliveryFrame('pong', String(Number(match[1]) + 1)));
    });

    test('#unsubscribe stops delivery at the server; with a cid it is acked', {timeout: 15000}, async () => {
      let raw = await session(server);
      let ch = uniqueName('rawunsub');
      await rawSubscribe(raw, ch);
      raw.send(`{"event":"#unsubscribe","data":"${ch}"}`);
      raw.send(`{"event":"serverpublish","data":{"channel":"${ch}","data":"must not arrive"}}`);
      await rawBarrier(raw);
      assert.deepEqual(raw.frames.drain(), []);
      // Subscribe again and unsubscribe with a cid.
      await rawSubscribe(raw, ch);
      let cid = raw.nextCid();
      raw.send(`{"event":"#unsubscribe","data":"${ch}","cid":${cid}}`);
      await raw.waitFrame(`{"rid":${cid}}`);
      raw.send(`{"event":"serverpublish","data":{"channel":"${ch}","data":"must not arrive"}}`);
      await rawBarrier(raw);
      assert.deepEqual(raw.frames.drain(), []);
    });

    test('kickme → #kickOut frame and no further deliveries', {timeout: 15000}, async () => {
      let raw = await session(server);
      let ch = uniqueName('rawkick');
      await rawSubscribe(raw, ch);
      raw.send(`{"event":"kickme","data":{"channel":"${ch}"}}`);
      let {text, value} = await raw.waitJson((v) => v.event === '#kickOut');
      assert.deepEqual(value, {event: '#kickOut', data: {channel: ch, message: 'you are kicked'}});
      if (protocol === '2') {
        assert.equal(text, `{"event":"#kickOut","data":{"channel":"${ch}","message":"you are kicked"}}`);
      }
      raw.send(`{"event":"serverpublish","data":{"channel":"${ch}","data":"must not arrive"}}`);
      await rawBarrier(raw);
      assert.deepEqual(raw.frames.drain().filter((f) => !f.startsWith('{"rid"')), [], 'no delivery after kickOut');
    });

    test('askme → serverPush, serverQuestion with a cid; the answer reaches the server', {timeout: 15000}, async () => {
      let raw = await session(server);
      await rawSubscribe(raw, 'answers');
      raw.send('{"event":"askme","cid":11}');
      await raw.waitFrame('{"rid":11}');
      await raw.waitFrame('{"event":"serverPush","data":{"hello":"world"}}');
      let {value: question} = await raw.waitJson((v) => v.event === 'serverQuestion');
      assert.deepEqual(question.data, {q: 'how?'});
      assert.equal(typeof question.cid, 'number');
      raw.send(`{"rid":${question.cid},"data":{"a":"like this"}}`);
      await raw.waitFrame(deliveryFrame('answers', '{"answer":{"a":"like this"}}'));
      // Error answer.
      raw.send('{"event":"askme","cid":12}');
      let {value: q2} = await raw.waitJson((v) => v.event === 'serverQuestion');
      assert.notEqual(q2.cid, question.cid, 'server cids increase per socket');
      raw.send(`{"rid":${q2.cid},"error":{"name":"ClientError","message":"I refuse"}}`);
      await raw.waitFrame(deliveryFrame('answers', '{"error":"I refuse"}'));
    });

    test('an event nobody handles gets no answer; unknown rids are ignored', {timeout: 15000}, async () => {
      let raw = await session(server);
      raw.send('{"event":"unknownProcedure","data":1,"cid":5}');
      raw.send('{"event":"noreply","data":1,"cid":6}');
      raw.send('{"rid":999,"data":"nobody asked"}');
      raw.send('{"event":"echo","data":"after","cid":7}');
      assert.equal(await raw.next(), '{"rid":7,"data":"after"}');
      assert.deepEqual(raw.frames.drain(), []);
    });

    test('raw (non-packet) frames after the handshake are ignored', {timeout: 15000}, async () => {
      let raw = await session(server);
      for (let frame of ['this is raw', '{"bad json', '123', '"a json string"', 'null', '#2x', '{}', '[]']) raw.send(frame);
      raw.send('{"event":"echo","data":"still open","cid":9}');
      assert.equal(await raw.next(), '{"rid":9,"data":"still open"}');
      assert.equal(raw.closeInfo, null);
    });

    test('raw JSON text of data is forwarded byte-for-byte (echo)', {skip: NEEDS_RAW_JSON, timeout: 15000}, async () => {
      let raw = await session(server);
      let data = '{"a" : 1.50, "b":[1 , 2e3,-0.0], "n":12345678901234567890123, "s":"\\u00e9\\/"}';
      raw.send(`{"event":"echo","data":${data},"cid":2}`);
      assert.equal(await raw.next(), `{"rid":2,"data":${data}}`);
    });

    test('raw JSON text of data is forwarded byte-for-byte (publish)', {skip: NEEDS_RAW_JSON, timeout: 15000}, async () => {
      let raw = await session(server);
      let ch = uniqueName('rawjson');
      await rawSubscribe(raw, ch);
      let data = '{"x" : 1.50, "big":12345678901234567890123, "arr":[ true ,null ]}';
      raw.send(`{"event":"#publish","data":{"channel":"${ch}","data":${data}}}`);
      assert.equal(await raw.next(), deliveryFrame(ch, data));
    });
  });
}

describe('HTTP admission', () => {
  let server;
  before(async () => {
    server = await startServer({'protocol-version': '2'}, {keep: true});
  });

  test('GET /socketcluster (no trailing slash) → 400 on upgrade', {timeout: 15000}, async () => {
    let res = await rawUpgrade(server, {path: '/socketcluster'});
    assert.equal(res.status, 400);
  });

  test('GET /socketcluster/?query → 101', {timeout: 15000}, async () => {
    let res = await rawUpgrade(server, {path: '/socketcluster/?foo=bar&arr=x&arr=y'});
    assert.equal(res.status, 101);
  });
});

describe('--origins allowed.com:443', () => {
  let server;
  before(async () => {
    server = await startServer({'protocol-version': '2', 'origins': 'allowed.com:443'}, {keep: true});
  });

  test('a foreign Origin → 403 Invalid origin', {timeout: 15000}, async () => {
    let res = await rawUpgrade(server, {headers: {Origin: 'http://evil.com'}});
    assert.equal(res.status, 403);
    assert.match(res.body, /Invalid origin: http:\/\/evil\.com/);
  });

  test('the allowed origin (https default port 443) → 101', {timeout: 15000}, async () => {
    let res = await rawUpgrade(server, {headers: {Origin: 'https://allowed.com'}});
    assert.equal(res.status, 101);
    let explicit = await rawUpgrade(server, {headers: {Origin: 'http://allowed.com:443'}});
    assert.equal(explicit.status, 101);
  });

  test('the right host on another port, or no Origin at all → 403', {timeout: 15000}, async () => {
    assert.equal((await rawUpgrade(server, {headers: {Origin: 'http://allowed.com'}})).status, 403);
    assert.equal((await rawUpgrade(server, {headers: {}})).status, 403);
  });

  test('an official client (sends no Origin) gets connectAbort 1006', {timeout: 15000}, async () => {
    let client = createClient(20, server);
    let abort = await client.waitEvent('connectAbort');
    assert.equal(abort.code, 1006);
    assert.notEqual(client.state, 'open');
  });
});

describe('--max-payload 1024', () => {
  test('a frame over the limit → close 1009; at the limit is fine', {timeout: 15000}, async () => {
    let server = await startServer({'protocol-version': '2', 'max-payload': 1024});
    let raw = await session(server);
    let prefix = '{"event":"echo","data":"';
    let suffix = '","cid":2}';
    let fits = prefix + 'a'.repeat(1024 - prefix.length - suffix.length) + suffix;
    assert.equal(fits.length, 1024);
    raw.send(fits);
    await raw.waitFrame((f) => f.startsWith('{"rid":2,'));
    raw.send('{"event":"echo","data":"' + 'b'.repeat(1100) + '","cid":3}');
    let {code} = await raw.waitClose(5000);
    assert.equal(code, 1009);
  });
});

describe('protocol v1 server specifics', () => {
  test('a client #disconnect event makes the server close with that code', {skip: NEEDS_V1_SERVER, timeout: 15000}, async () => {
    let server = await startServer({'protocol-version': '1'});
    let raw = await session(server);
    raw.send('{"event":"#disconnect","data":{"code":4100,"data":"bye via event"}}');
    let {code} = await raw.waitClose(5000);
    assert.equal(code, 4100);
  });

  test('v1 #subscribe with batch:true is answered (as a batch array or a single frame)', {timeout: 15000}, async () => {
    let server = await startServer({'protocol-version': '1'});
    let raw = await session(server);
    raw.send('[{"event":"#subscribe","data":{"channel":"batched","batch":true},"cid":5}]');
    let frame = await raw.next();
    assert.ok(frame === '[{"rid":5}]' || frame === '{"rid":5}', frame);
    raw.send('{"event":"#publish","data":{"channel":"batched","data":1}}');
    let {value} = await raw.waitJson((v) => (Array.isArray(v) ? v[0] : v).event === '#publish');
    let delivery = Array.isArray(value) ? value[0] : value;
    assert.deepEqual(delivery, {event: '#publish', data: {channel: 'batched', data: 1}});
    raw.send('[{"event":"#unsubscribe","data":"batched"}]');
    raw.send('{"event":"serverpublish","data":{"channel":"batched","data":"gone"}}');
    await rawBarrier(raw);
    assert.deepEqual(raw.frames.drain(), []);
  });
});
