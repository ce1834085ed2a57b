// 8. Heartbeat (server pings, client pongs), handshake timeout and strict handshake.
import {describe, test} from 'node:test';
import assert from 'node:assert/strict';
import {
  useHarness, startServer, connectClient, rawConnect, sleep, withTimeout, VERSIONS, NEEDS_AUTO, MIN_BIN
} from './lib/harness.mjs';

useHarness();

const FAST_PINGS = {'ping-interval': 300, 'ping-timeout': 1000};
const STAY_MS = 3000;

/** Counts heartbeat frames the official client receives (`message` events carry every frame). */
function countPings(client) {
  let counter = {pings: 0};
  let isPing = (m) => {
    // A min-bin v1 ping is the binary MessagePack string "#1" (a2 23 31); v2 pings are empty text frames.
    if (typeof m !== 'string' && client.codec === 'min-bin') {
      try {
        m = MIN_BIN.decode(m);
      } catch (e) {
        return false;
      }
    }
    return m === '#1' || m === '';
  };
  if (client.version === 14) {
    client.socket.on('message', (m) => {
      if (isPing(m)) counter.pings++;
    });
  } else {
    (async () => {
      for await (let {message} of client.socket.listener('message')) {
        if (isPing(message)) counter.pings++;
      }
    })();
  }
  return counter;
}

function assertNoTrouble(client) {
  let bad = client.events.all.filter((e) => ['disconnect', 'connectAbort', 'close', 'error'].includes(e.type));
  assert.deepEqual(bad.map((e) => ({type: e.type, code: e.code, error: e.error && e.error.message})), []);
}

async function staysConnected(clients) {
  let ids = clients.map((c) => c.id);
  let counters = clients.map(countPings);
  await sleep(STAY_MS);
  clients.forEach((client, i) => {
    assertNoTrouble(client);
    assert.equal(client.state, 'open');
    assert.equal(client.id, ids[i], 'same connection all along');
    // 300 ms interval over 3 s: about 10 pings; require a clear majority so slow machines still pass.
    assert.ok(counters[i].pings >= 5, `v${client.version} client saw ${counters[i].pings} pings in ${STAY_MS} ms`);
  });
  for (let client of clients) assert.equal(await client.echo('after heartbeat'), 'after heartbeat');
}

for (const V of VERSIONS) {
  describe(`${V.name} client, protocol v${V.protocol}, --ping-interval 300 --ping-timeout 1000`, () => {
    test(`stays connected for ${STAY_MS} ms without disconnect or error`, {timeout: 15000}, async () => {
      let server = await startServer({'protocol-version': V.protocol, ...FAST_PINGS});
      let client = await connectClient(V, server);
      assert.equal(client.socket.pingTimeout, 1000);
      await staysConnected([client]);
    });
  });
}

describe('v20 client with {protocolVersion: 1}, --protocol-version 1 --ping-interval 300 --ping-timeout 1000', () => {
  test(`stays connected for ${STAY_MS} ms (v1 heartbeats from a v20 client)`, {timeout: 15000}, async () => {
    let server = await startServer({'protocol-version': '1', ...FAST_PINGS});
    let client = await connectClient(20, server, {protocolVersion: 1});
    await staysConnected([client]);
  });
});

describe('both client versions, --protocol-version auto', () => {
  test(`v14 and v20 clients both stay connected for ${STAY_MS} ms`, {skip: NEEDS_AUTO, timeout: 15000}, async () => {
    let server = await startServer({'protocol-version': 'auto', ...FAST_PINGS});
    let clients = await Promise.all([connectClient(14, server), connectClient(20, server)]);
    await staysConnected(clients);
  });

  for (const [dialect, ping] of [['v1', '#1'], ['v2', '']]) {
    test(`raw client answering only ${dialect} pings stays connected`, {skip: NEEDS_AUTO, timeout: 15000}, async () => {
      let server = await startServer({'protocol-version': 'auto', ...FAST_PINGS});
      let raw = await rawConnect(server, {pong: dialect});
      await raw.handshake();
      await withTimeout(raw.heartbeats.waitFor((h) => h === ping, 3000, `a ${JSON.stringify(ping)} ping`), 3500);
      await sleep(2000);
      assert.equal(raw.closeInfo, null, `closed: ${JSON.stringify(raw.closeInfo)}`);
      raw.send('{"event":"echo","data":"ok","cid":2}');
      await raw.waitFrame('{"rid":2,"data":"ok"}');
    });
  }
});

const PING_FRAME = {'1': '#1', '2': ''};
const PONG_FRAME = {'1': '#2', '2': ''};

for (const protocol of ['1', '2']) {
  describe(`raw ws, protocol v${protocol}`, () => {
    test(`server pings with ${JSON.stringify(PING_FRAME[protocol])} and accepts ${JSON.stringify(PONG_FRAME[protocol])} pongs`, {timeout: 15000}, async () => {
      let server = await startServer({'protocol-version': protocol, ...FAST_PINGS});
      let raw = await rawConnect(server, {pong: protocol === '1' ? 'v1' : 'v2'});
      await raw.handshake();
      let first = await raw.heartbeats.next(2000, 'first ping');
      assert.equal(first, PING_FRAME[protocol]);
      // Stay well past pingTimeout while answering every ping.
      await sleep(1700);
      assert.equal(raw.closeInfo, null, `closed: ${JSON.stringify(raw.closeInfo)}`);
      let pings = raw.heartbeats.drain();
      assert.ok(pings.length >= 3, `got ${pings.length} more pings`);
      assert.ok(pings.every((p) => p === PING_FRAME[protocol]));
      raw.send('{"event":"echo","data":"alive","cid":2}');
      await raw.waitFrame('{"rid":2,"data":"alive"}');
    });

    test('no pongs → the server closes with 4001 after about pingTimeout', {timeout: 15000}, async () => {
      let server = await startServer({'protocol-version': protocol, ...FAST_PINGS});
      let raw = await rawConnect(server, {pong: false});
      await raw.handshake();
      let started = Date.now();
      let {code} = await raw.waitClose(5000);
      let elapsed = Date.now() - started;
      assert.equal(code, 4001);
      assert.ok(elapsed >= 600 && elapsed <= 3000, `closed after ${elapsed} ms, pingTimeout is 1000`);
      assert.ok(raw.heartbeats.all.length >= 1, 'pings were sent before giving up');
    });

    test('no #handshake within --handshake-timeout 500 → close 4005', {timeout: 15000}, async () => {
      let server = await startServer({'protocol-version': protocol, 'handshake-timeout': 500});
      let raw = await rawConnect(server);
      let started = Date.now();
      let {code} = await raw.waitClose(5000);
      let elapsed = Date.now() - started;
      assert.equal(code, 4005);
      assert.ok(elapsed >= 350 && elapsed <= 3000, `closed after ${elapsed} ms`);
    });

    test('handshake in time → no 4005 later', {timeout: 15000}, async () => {
      let server = await startServer({'protocol-version': protocol, 'handshake-timeout': 500});
      let raw = await rawConnect(server, {pong: 'any'});
      await raw.handshake();
      await sleep(900);
      assert.equal(raw.closeInfo, null);
    });

    test('an event before the handshake → close 4009', {timeout: 15000}, async () => {
      let server = await startServer({'protocol-version': protocol});
      let raw = await rawConnect(server);
      raw.send('{"event":"echo","data":"too early","cid":1}');
      let {code} = await raw.waitClose(5000);
      assert.equal(code, 4009);
      assert.equal(raw.frames.all.some((f) => typeof f === 'string' && f.includes('"rid"')), false, 'no response');
    });

    test('a raw / undecodable frame before the handshake → close 4009', {timeout: 15000}, async () => {
      let server = await startServer({'protocol-version': protocol});
      for (let frame of ['this is raw', '{not json']) {
        let raw = await rawConnect(server);
        raw.send(frame);
        let {code} = await raw.waitClose(5000);
        assert.equal(code, 4009, `after ${JSON.stringify(frame)}`);
      }
    });
  });
}

describe('raw ws, protocol v2 strictness', () => {
  test('a pong before the handshake → close 4009', {timeout: 15000}, async () => {
    let server = await startServer({'protocol-version': '2'});
    let raw = await rawConnect(server);
    raw.send('');
    let {code} = await raw.waitClose(5000);
    assert.equal(code, 4009);
  });

  test('#handshake without a cid → close 4008', {timeout: 15000}, async () => {
    let server = await startServer({'protocol-version': '2'});
    let raw = await rawConnect(server);
    raw.send('{"event":"#handshake","data":{}}');
    let {code} = await raw.waitClose(5000);
    assert.equal(code, 4008);
  });
});
