// 2.2 The sc-codec-min-bin codec: byte-exact frames (TV-29/TV-30), heartbeats, JSON and min-bin clients on one
// server (codec auto), malformed MessagePack.
import {describe, test, before} from 'node:test';
import assert from 'node:assert/strict';
import {
  useHarness, startServer, connectClient, rawConnect, withTimeout, uniqueName, USING_REFERENCE, MIN_BIN
} from './lib/harness.mjs';

useHarness();

const hex = (text) => Buffer.from(text, 'hex');
const isBytes = (want) => (f) => Buffer.isBuffer(f) && f.equals(want);

/** The server under test with min-bin: the Rust fixture decides per connection (auto), the reference is told. */
const MIN_BIN_FLAGS = {codec: USING_REFERENCE ? 'min-bin' : 'auto'};
const NEEDS_AUTO_CODEC = USING_REFERENCE ? 'needs codec auto (one server for JSON and min-bin clients)' : false;
const OURS = USING_REFERENCE ? 'the reference ignores undecodable frames (InvalidMessageError); we close' : false;

/** Sends the captured min-bin handshake (TV-29) and checks the response's bytes around the socket id. */
async function minBinHandshake(raw) {
  raw.send(hex('81a16593aa2368616e647368616b6581a961757468546f6b656ec001'));
  let response = await raw.waitFrame((f) => Buffer.isBuffer(f) && f[0] === 0x81, 5000, 'min-bin handshake response');
  // {"r":[1,null,{"id":<20 chars>,"pingTimeout":…,"isAuthenticated":false}]}
  assert.equal(response.subarray(0, 11).toString('hex'), '81a1729301c083a26964b4');
  assert.equal(response.subarray(31, 43).toString('hex'), 'ab70696e6754696d656f7574');
  assert.equal(response.subarray(-17).toString('hex'), 'af697341757468656e74696361746564c2');
  let decoded = MIN_BIN.decode(response);
  assert.equal(decoded.rid, 1);
  assert.equal(decoded.error, null);
  assert.equal(decoded.data.isAuthenticated, false);
  return decoded;
}

describe('min-bin frames, byte for byte (TV-29, TV-30)', () => {
  let server;
  before(async () => {
    server = await startServer({'protocol-version': '2', 'ping-timeout': 15000, ...MIN_BIN_FLAGS}, {keep: true});
  });

  test('handshake, echo, subscribe, publish and its delivery are the captured bytes', {timeout: 15000}, async () => {
    let raw = await rawConnect(server);
    await minBinHandshake(raw);
    raw.send(hex('81a16593a46563686f81a36d7367a2686902')); // {"e":["echo",{"msg":"hi"},2]}
    await raw.waitFrame(isBytes(hex('81a1729302c081a36d7367a26869')), 5000, '{"r":[2,null,{"msg":"hi"}]}');
    raw.send(hex('81a16593a46563686fa2686905')); // {"e":["echo","hi",5]}
    await raw.waitFrame(isBytes(hex('81a1729305c0a26869')), 5000, '{"r":[5,null,"hi"]}');
    raw.send(hex('81a16593aa2373756273637269626581a76368616e6e656ca46e65777303')); // #subscribe news, cid 3
    await raw.waitFrame(isBytes(hex('81a1729303c0c0')), 5000, '{"r":[3,null,null]}');
    raw.send(hex('81a17093a46e657773a568656c6c6f04')); // {"p":["news","hello",4]}
    await raw.waitFrame(isBytes(hex('81a17092a46e657773a568656c6c6f')), 5000, '{"p":["news","hello"]}');
    await raw.waitFrame(isBytes(hex('81a1729304c0c0')), 5000, '{"r":[4,null,null]}');
  });

  test('v2 heartbeats bypass the codec: empty text frames both ways', {timeout: 15000}, async () => {
    let fast = await startServer({'protocol-version': '2', 'ping-interval': 200, 'ping-timeout': 1000, ...MIN_BIN_FLAGS});
    let raw = await rawConnect(fast, {pong: 'v2'});
    await minBinHandshake(raw);
    for (let i = 0; i < 3; i++) assert.equal(await raw.heartbeats.next(3000, 'ping'), '');
    raw.send(hex('81a16593a46563686fa2686902'));
    await raw.waitFrame(isBytes(hex('81a1729302c0a26869')), 5000, 'echo after heartbeats');
    assert.equal(raw.closeInfo, null);
  });
});

describe('min-bin v1 heartbeats', {skip: USING_REFERENCE ? 'the v20 reference sends v1 pings as raw text (§18)' : false}, () => {
  test('the ping is the binary string "#1" (a2 23 31); the binary "#2" answers it', {timeout: 15000}, async () => {
    let server = await startServer({'protocol-version': '1', 'ping-interval': 200, 'ping-timeout': 1000, ...MIN_BIN_FLAGS});
    let raw = await rawConnect(server);
    await minBinHandshake(raw);
    for (let i = 0; i < 6; i++) {
      await raw.waitFrame(isBytes(hex('a22331')), 3000, 'binary #1');
      raw.send(hex('a22332'));
    }
    raw.send(hex('81a16593a46563686fa2686902'));
    await raw.waitFrame(isBytes(hex('81a1729302c0a26869')), 5000, 'echo after 6 heartbeats');
    assert.equal(raw.closeInfo, null, 'pongs kept the connection open past the 1000 ms ping timeout');
  });
});

describe('JSON and min-bin clients on one server (codec auto)', {skip: NEEDS_AUTO_CODEC}, () => {
  test('every client gets the publication in its own codec', {timeout: 20000}, async () => {
    let server = await startServer({'protocol-version': 'auto'});
    let kinds = [
      {client: 14, codec: 'json'}, {client: 14, codec: 'min-bin'},
      {client: 20, codec: 'json'}, {client: 20, codec: 'min-bin'}
    ];
    let clients = await Promise.all(kinds.map((k) => connectClient(k, server)));
    let frames = clients.map((c) => c.frames());
    let channel = uniqueName('mixed');
    let handles = clients.map((c) => c.subscribe(channel));
    await Promise.all(handles.map((h) => h.waitSubscribed()));
    let payload = {text: 'héllo', n: 42, f: 1.5, big: 2 ** 40, list: [1, null, 'x'], nested: {ok: true}};
    await withTimeout(clients[1].invokePublish(channel, payload), 5000, 'publish from a min-bin client');
    for (let h of handles) assert.deepStrictEqual(await h.next(), payload);
    // The min-bin clients received binary frames, the JSON clients text.
    for (let [i, kind] of kinds.entries()) {
      let delivery = await frames[i].waitFor((f) => f && f.event === '#publish', 5000, `delivery to ${kind.codec}`);
      assert.deepStrictEqual(delivery.data, {channel, data: payload});
    }
    // Requests cross codecs too: a JSON client's publish reaches the min-bin clients.
    await withTimeout(clients[2].invokePublish(channel, 'from json'), 5000, 'publish from a JSON client');
    for (let h of handles) assert.equal(await h.next(), 'from json');
  });
});

describe('malformed MessagePack', {skip: OURS}, () => {
  let server;
  before(async () => {
    server = await startServer({'protocol-version': '2', 'ping-timeout': 15000}, {keep: true});
  });

  test('after the handshake: close 1007, other clients unaffected', {timeout: 15000}, async () => {
    let bystanders = await Promise.all([
      connectClient({client: 20, codec: 'min-bin'}, server),
      connectClient({client: 14, codec: 'min-bin'}, server),
      connectClient({client: 20, codec: 'json'}, server)
    ]);
    let raw = await rawConnect(server);
    await minBinHandshake(raw);
    raw.send(hex('81a16593a46563')); // truncated {"e":[…
    let close = await raw.waitClose(5000);
    assert.equal(close.code, 1007);
    for (let client of bystanders) {
      assert.equal(await client.echo('still here'), 'still here');
      assert.equal(client.state, 'open');
    }
  });

  test('as the first frame: close 4009 (strict handshake)', {timeout: 15000}, async () => {
    let raw = await rawConnect(server);
    raw.send(hex('81c1')); // a map whose key starts with the never-used marker 0xc1
    let close = await raw.waitClose(5000);
    assert.equal(close.code, 4009);
  });
});
