// Protocol tests of our browser client (public/socketcluster.js) running in headless Chromium.
//
//   cd tests/browser && npm install && node --test client.test.mjs
//
// * "boilerplate" suite: against $SC_SERVER_CMD (default: the Node reference server) — only uses what every
//   boilerplate server offers (echo, ping/pong, client publish).
// * "reference v1" / "reference v2" suites: against the Node reference server (socketcluster-server 20) started with
//   --test-procedures and fast heartbeats, in both protocol versions — heartbeats, auth, kick-out, close codes,
//   reconnect and re-subscription, errors, server-to-client invokes.
//
// The test page wraps window.WebSocket to record every frame and to optionally hide heartbeats from the client.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  TIMEOUT, SERVER_CMD, REFERENCE_SERVER_CMD, startServer, launchBrowser, newCheckedPage
} from './harness.mjs';

// Installed with page.addInitScript() before anything else runs: frame recorder + helpers for page.evaluate().
function installHarness() {
  window.__frames = [];             // [direction, text] for every frame of every socket
  window.__swallowPings = false;    // when true the wrapper answers heartbeats itself and hides them from the client
  const NativeWebSocket = window.WebSocket;
  window.WebSocket = class RecordingWebSocket extends NativeWebSocket {
    send(data) { window.__frames.push(['out', data]); super.send(data); }
    set onmessage(fn) {
      super.onmessage = fn && ((ev) => {
        window.__frames.push(['in', ev.data]);
        if (window.__swallowPings && (ev.data === '' || ev.data === '#1')) {
          super.send(ev.data === '' ? '' : '#2');
          return;
        }
        fn(ev);
      });
    }
    get onmessage() { return super.onmessage; }
  };
  window.__waitFor = (emitter, name, ms, predicate) => new Promise((resolve, reject) => {
    const handler = (payload) => {
      if (predicate && !predicate(payload)) return;
      clearTimeout(timer);
      emitter.off(name, handler);
      resolve(payload);
    };
    const timer = setTimeout(() => { emitter.off(name, handler); reject(new Error('timed out waiting for ' + name)); }, ms || 5000);
    emitter.on(name, handler);
  });
  window.__sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
}

let browser;
before(async () => { browser = await launchBrowser(); });
after(async () => { if (browser) await browser.close(); });

/**
 * A page on the server's origin with the client script loaded but no socket yet. The document is the script file
 * itself (any page served by the server would do). It must really come from 127.0.0.1: Chromium's Local Network
 * Access checks block WebSockets to loopback from documents that Playwright fulfils itself (page.route).
 */
async function openHarness(port) {
  const { page, problems } = await newCheckedPage(browser.context);
  await page.addInitScript(installHarness);
  // The script document would make Chromium ask for /favicon.ico, a 404 on servers without one.
  await page.route('**/favicon.ico', (route) => route.fulfill({ status: 204 }));
  await page.goto(`http://127.0.0.1:${port}/socketcluster.js`);
  await page.addScriptTag({ url: '/socketcluster.js' });
  return { page, problems };
}

/** Run one test body on a fresh harness page, then check that the page reported no errors. */
function pageTest(name, getPort, body) {
  test(name, { timeout: 4 * TIMEOUT }, async () => {
    const { page, problems } = await openHarness(getPort());
    try {
      await body(page);
      assert.deepEqual(problems, []);
    } finally {
      await page.close().catch(() => {});
    }
  });
}

// ------------------------------------------------------------------------------------------------- boilerplate

describe('boilerplate server ($SC_SERVER_CMD)', () => {
  let server;
  before(async () => { server = await startServer(SERVER_CMD); });
  after(async () => { if (server) await server.stop(); });
  const port = () => server.port;

  pageTest('handshake, echo of JSON values, fire-and-forget without cid', port, async (page) => {
    const result = await page.evaluate(async () => {
      const socket = socketClusterClient.create({ autoReconnect: false });
      const status = await __waitFor(socket, 'connect');
      const values = [{ a: 1, b: [true, null, 'x'] }, [1, 2, 3], 'text', 42, 1.5, null, 'ünïcødé ✓', ''];
      const echoed = [];
      for (const v of values) echoed.push(await socket.invoke('echo', v));
      socket.emit('echo', 'no answer expected');
      await __sleep(100);
      socket.disconnect();
      return { status, values, echoed, frames: __frames };
    });
    assert.equal(typeof result.status.id, 'string');
    assert.equal(typeof result.status.pingTimeout, 'number');
    assert.equal(result.status.isAuthenticated, false);
    assert.deepEqual(result.echoed, result.values);
    const out = result.frames.filter(([dir]) => dir === 'out').map(([, text]) => text);
    assert.equal(out[0], '{"event":"#handshake","data":{"authToken":null},"cid":1}');
    assert.equal(out[1], '{"event":"echo","data":{"a":1,"b":[true,null,"x"]},"cid":2}');
    assert.ok(out.includes('{"event":"echo","data":"no answer expected"}'), JSON.stringify(out));
  });

  pageTest('subscribe, ping -> pong count, client publish round trip, unsubscribe', port, async (page) => {
    const result = await page.evaluate(async () => {
      const socket = socketClusterClient.create({ autoReconnect: false });
      await __waitFor(socket, 'connect');
      const pong = socket.subscribe('pong');
      const news = socket.subscribe('news');
      const states = [pong.state];
      await Promise.all([__waitFor(pong, 'subscribe'), __waitFor(news, 'subscribe')]);
      states.push(pong.state);
      const pongs = [];
      pong.watch((n) => pongs.push(n));
      socket.emit('ping');
      socket.emit('ping');
      const got = [];
      news.watch((d) => got.push(d));
      await news.publish({ headline: 'x' });
      socket.transmitPublish('news', 'second');
      for (let i = 0; i < 50 && (pongs.length < 2 || got.length < 2); i++) await __sleep(20);
      news.unsubscribe();
      states.push(news.state);
      await __sleep(50);
      socket.transmitPublish('news', 'after unsubscribe');
      await __sleep(200);
      const subscriptions = socket.subscriptions();
      socket.disconnect();
      return { states, pongs, got, subscriptions, frames: __frames };
    });
    assert.deepEqual(result.states, ['pending', 'subscribed', 'unsubscribed']);
    assert.equal(result.pongs.length, 2);
    assert.equal(result.pongs[1], result.pongs[0] + 1);
    assert.deepEqual(result.got, [{ headline: 'x' }, 'second']);
    assert.deepEqual(result.subscriptions, ['pong']);
    const out = result.frames.filter(([dir]) => dir === 'out').map(([, text]) => text);
    assert.ok(out.includes('{"event":"#unsubscribe","data":"news"}'), JSON.stringify(out));
    assert.ok(out.some((t) => /^\{"event":"#subscribe","data":\{"channel":"pong"\},"cid":\d+\}$/.test(t)));
  });

  pageTest('unknown procedure times out locally with ackTimeout', port, async (page) => {
    const result = await page.evaluate(async () => {
      const socket = socketClusterClient.create({ autoReconnect: false });
      await __waitFor(socket, 'connect');
      const t0 = Date.now();
      const error = await socket.invoke('no-such-procedure', 1, { ackTimeout: 300 }).then(() => null, (e) => e);
      const elapsed = Date.now() - t0;
      const stillOpen = socket.state;
      socket.disconnect();
      return { name: error && error.name, elapsed, stillOpen };
    });
    assert.equal(result.name, 'TimeoutError');
    assert.ok(result.elapsed >= 250 && result.elapsed < 2000, `elapsed ${result.elapsed}`);
    assert.equal(result.stillOpen, 'open');
  });

  pageTest('inbound batch frame is processed packet by packet', port, async (page) => {
    const got = await page.evaluate(async () => {
      const socket = socketClusterClient.create({ autoReconnect: false });
      await __waitFor(socket, 'connect');
      const channel = socket.subscribe('batched');
      await __waitFor(channel, 'subscribe');
      const got = [];
      channel.watch((d) => got.push(d));
      // Simulate a server batch (§3.3) by handing a frame to the client's message handler.
      socket._onMessage('[{"event":"#publish","data":{"channel":"batched","data":1}},' +
        '{"event":"#publish","data":{"channel":"batched","data":2}}]');
      socket.disconnect();
      return got;
    });
    assert.deepEqual(got, [1, 2]);
  });
});

// ------------------------------------------------------------------------------------------------- reference

for (const version of [1, 2]) {
  describe(`reference server, protocol v${version}`, () => {
    const PING = version === 1 ? '#1' : '';
    const PONG = version === 1 ? '#2' : '';
    let server;
    before(async () => {
      server = await startServer(REFERENCE_SERVER_CMD,
        `--test-procedures --protocol-version ${version} --ping-interval 250 --ping-timeout 1500`);
    });
    after(async () => { if (server) await server.stop(); });
    const port = () => server.port;

    pageTest('heartbeats are answered in the right dialect and keep the connection up', port, async (page) => {
      const result = await page.evaluate(async () => {
        const socket = socketClusterClient.create({ autoReconnect: false });
        const disconnects = [];
        socket.on('disconnect', (e) => disconnects.push(e));
        const status = await __waitFor(socket, 'connect');
        await __sleep(1800); // > pingTimeout: would have been closed without correct pongs
        const state = socket.state;
        const before = disconnects.slice();
        socket.disconnect();
        return { status, state, disconnects: before, frames: __frames };
      });
      assert.equal(result.status.pingTimeout, 1500);
      assert.equal(result.state, 'open');
      assert.deepEqual(result.disconnects, []);
      const pings = result.frames.filter(([d, t]) => d === 'in' && t === PING).length;
      const pongs = result.frames.filter(([d, t]) => d === 'out' && t === PONG).length;
      assert.ok(pings >= 4, `only ${pings} pings`);
      assert.equal(pongs, pings);
      const wrongPongs = result.frames.filter(([d, t]) => d === 'out' && (t === '' || t === '#2') && t !== PONG);
      assert.deepEqual(wrongPongs, []);
    });

    pageTest('errors are hydrated with name, message and extra fields', port, async (page) => {
      const err = await page.evaluate(async () => {
        const socket = socketClusterClient.create({ autoReconnect: false });
        await __waitFor(socket, 'connect');
        const e = await socket.invoke('test.fail', { message: 'boom', name: 'CustomError', extra: 42 }).catch((e) => e);
        socket.disconnect();
        return { isError: e instanceof Error, name: e.name, message: e.message, extra: e.extra };
      });
      assert.deepEqual(err, { isError: true, name: 'CustomError', message: 'boom', extra: 42 });
    });

    pageTest('server-initiated invoke is answered (data and error)', port, async (page) => {
      const result = await page.evaluate(async () => {
        const socket = socketClusterClient.create({ autoReconnect: false });
        await __waitFor(socket, 'connect');
        socket.handle('question', (n) => {
          if (n < 0) throw Object.assign(new Error('negative'), { name: 'ClientError' });
          return n * 2;
        });
        const ok = await socket.invoke('test.ask', 21);
        const failed = await socket.invoke('test.ask', -1);
        socket.disconnect();
        return { ok, failed };
      });
      assert.deepEqual(result.ok, { answer: 42 });
      assert.deepEqual(result.failed, { error: { name: 'ClientError', message: 'negative' } });
    });

    pageTest('auth token: set by server, stored, replayed after reconnect with re-subscription, removed', port, async (page) => {
      const result = await page.evaluate(async () => {
        localStorage.clear();
        const socket = socketClusterClient.create({ autoReconnectOptions: { initialDelay: 100, randomness: 50 } });
        const key = 'socketcluster.authToken.' + location.hostname + ':' + location.port;
        await __waitFor(socket, 'connect');
        const news = socket.subscribe('news');
        await __waitFor(news, 'subscribe');

        const authenticated = __waitFor(socket, 'authenticate');
        await socket.invoke('test.login', { user: 'alice' });
        const auth = await authenticated;
        const stored = localStorage.getItem(key);
        const serverView = await socket.invoke('test.whoami');

        // Server-initiated close with an application code: backoff reconnect, token in the new handshake.
        const disconnected = __waitFor(socket, 'disconnect');
        const reconnected = __waitFor(socket, 'connect', 5000);
        const resubscribed = __waitFor(news, 'subscribe', 5000);
        await socket.invoke('test.disconnect', { code: 4321, reason: 'dropped by test' });
        const close = await disconnected;
        const stateAfterClose = news.state;
        const status = await reconnected;
        await resubscribed;
        const got = [];
        news.watch((d) => got.push(d));
        await socket.invoke('test.publish', { channel: 'news', data: 'after reconnect' });
        await __sleep(100);

        const deauthenticated = __waitFor(socket, 'deauthenticate');
        await socket.invoke('test.logout');
        await deauthenticated;
        const storedAfterLogout = localStorage.getItem(key);

        // Client-side login with a token and client-side logout.
        const loginAgain = __waitFor(socket, 'authenticate');
        await socket.invoke('test.login', { user: 'bob' });
        await loginAgain;
        socket.deauthenticate();
        await __sleep(50);
        const afterClientLogout = await socket.invoke('test.whoami');
        const authViaAuthenticate = await socket.authenticate(stored);
        const whoAfterAuthenticate = await socket.invoke('test.whoami');
        socket.disconnect();
        return {
          key, auth, stored, serverView, close, stateAfterClose, status, got, storedAfterLogout,
          afterClientLogout, authViaAuthenticate, whoAfterAuthenticate, frames: __frames
        };
      });
      assert.equal(result.auth.authToken.user, 'alice');
      assert.equal(result.auth.signedAuthToken, result.stored);
      assert.match(result.stored, /^[\w-]+\.[\w-]+\.[\w-]+$/);
      assert.equal(result.serverView.authState, 'authenticated');
      assert.equal(result.close.code, 4321);
      assert.equal(result.close.reason, 'dropped by test');
      assert.equal(result.stateAfterClose, 'pending');
      assert.equal(result.status.isAuthenticated, true);
      assert.equal(result.status.authToken.user, 'alice');
      assert.deepEqual(result.got, ['after reconnect']);
      assert.equal(result.storedAfterLogout, null);
      assert.equal(result.afterClientLogout.authState, 'unauthenticated');
      assert.equal(result.authViaAuthenticate.isAuthenticated, true);
      assert.equal(result.whoAfterAuthenticate.authToken.user, 'alice');
      const out = result.frames.filter(([d]) => d === 'out').map(([, t]) => t);
      const handshakes = out.filter((t) => t.startsWith('{"event":"#handshake"'));
      assert.equal(handshakes.length, 2);
      assert.equal(handshakes[1], JSON.stringify({ event: '#handshake', data: { authToken: result.stored }, cid: JSON.parse(handshakes[1]).cid }));
      assert.ok(out.includes('{"event":"#removeAuthToken"}'));
      // cids keep increasing across the reconnect
      const cids = out.filter((t) => t.startsWith('{')).map((t) => JSON.parse(t).cid).filter((c) => c != null);
      assert.deepEqual(cids, [...cids].sort((a, b) => a - b));
      assert.equal(new Set(cids).size, cids.length);
    });

    pageTest('kickOut removes the channel and stops deliveries', port, async (page) => {
      const result = await page.evaluate(async () => {
        const socket = socketClusterClient.create({ autoReconnect: false });
        await __waitFor(socket, 'connect');
        const ch = socket.subscribe('kickme');
        await __waitFor(ch, 'subscribe');
        const got = [];
        ch.watch((d) => got.push(d));
        const kicked = __waitFor(socket, 'kickOut');
        await socket.invoke('test.kickOut', 'kickme');
        const kick = await kicked;
        await socket.invoke('test.publish', { channel: 'kickme', data: 'not delivered' });
        await __sleep(100);
        socket.disconnect();
        return { kick, state: ch.state, got, subscriptions: socket.subscriptions(true) };
      });
      assert.deepEqual(result.kick, { channel: 'kickme', message: 'kicked by test' });
      assert.equal(result.state, 'unsubscribed');
      assert.deepEqual(result.got, []);
      assert.deepEqual(result.subscriptions, []);
    });

    pageTest('close codes: 4500 and client disconnect() do not reconnect', port, async (page) => {
      const result = await page.evaluate(async () => {
        const socket = socketClusterClient.create({ autoReconnectOptions: { initialDelay: 50, randomness: 0 } });
        await __waitFor(socket, 'connect');
        const closed = __waitFor(socket, 'disconnect');
        await socket.invoke('test.disconnect', { code: 4500, reason: 'permanent' });
        const first = await closed;
        await __sleep(400);
        const stateAfter4500 = socket.state;

        socket.connect();
        await __waitFor(socket, 'connect');
        const closedByClient = __waitFor(socket, 'disconnect');
        socket.disconnect();
        const second = await closedByClient;
        await __sleep(400);
        return { first, stateAfter4500, second, stateAfterDisconnect: socket.state };
      });
      assert.equal(result.first.code, 4500);
      assert.equal(result.stateAfter4500, 'closed');
      assert.equal(result.second.code, 1000);
      assert.equal(result.stateAfterDisconnect, 'closed');
    });

    pageTest('missing pings: client closes with 4000 and reconnects immediately', port, async (page) => {
      const result = await page.evaluate(async () => {
        // Default backoff (10-20 s): only the immediate path for 4000 can reconnect within the wait below.
        const socket = socketClusterClient.create({});
        await __waitFor(socket, 'connect');
        const closed = __waitFor(socket, 'disconnect', 5000);
        const t0 = Date.now();
        __swallowPings = true;     // the wrapper still answers the server, the client no longer sees pings
        const close = await closed;
        const closedAfter = Date.now() - t0;
        __swallowPings = false;
        await __waitFor(socket, 'connect', 3000);
        socket.disconnect();
        return { close, closedAfter };
      });
      assert.equal(result.close.code, 4000);
      assert.equal(result.close.reason, 'Server ping timed out');
      assert.ok(result.closedAfter >= 1000 && result.closedAfter < 3000, `closed after ${result.closedAfter} ms`);
    });
  });
}
