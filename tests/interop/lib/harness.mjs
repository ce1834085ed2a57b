// Test harness for the interop suite: server process control, official-client adapters (socketcluster-client
// 14.3.2 = protocol v1, 20.x = protocol v2), a frame-recording raw WebSocket client, bounded waits.
//
// Every wait in here is bounded; nothing a test awaits through these helpers can hang forever.

import {spawn} from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import {fileURLToPath} from 'node:url';
import {afterEach, after} from 'node:test';
import WebSocket from 'ws';
import sc14 from 'sc14';
import sc20 from 'sc20';
import minBin from 'sc-codec-min-bin';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const ROOT = path.resolve(HERE, '..');

// ---------------------------------------------------------------------------------------------------------------
// Environment / skip reasons
// ---------------------------------------------------------------------------------------------------------------

/** The server under test: `SC_SERVER_CMD` (e.g. the Rust `interop_fixture` binary) or the Node reference. */
export const SERVER_CMD = process.env.SC_SERVER_CMD || '';
export const USING_REFERENCE = SERVER_CMD === '';

/** Skip reason for tests that need one server speaking v1 and v2 at once (`--protocol-version auto`). */
export const NEEDS_AUTO = USING_REFERENCE ? 'needs auto protocol' : false;
/** Skip reason for tests that need the server to forward the JSON text of `data` byte-for-byte. */
export const NEEDS_RAW_JSON = USING_REFERENCE
  ? 'needs a server that forwards raw JSON text (the Node reference re-serialises data)'
  : false;
/** Skip reason for tests of v1 server semantics that socketcluster-server 20 (protocolVersion 1) does not have. */
export const NEEDS_V1_SERVER = USING_REFERENCE
  ? 'needs v14-server semantics in v1 mode (socketcluster-server 20 with protocolVersion 1 ignores them)'
  : false;

/**
 * The Rust boilerplate binary (`socketcluster`, which registers the boilerplate's login/whoami/private/readonly
 * tour) for the tests that need it: `SC_BOILERPLATE_CMD`, default `<repo>/target/debug/socketcluster`.
 * Those tests always run against it (also when `SC_SERVER_CMD` is unset) and fail if it is missing.
 */
export const BOILERPLATE_CMD = process.env.SC_BOILERPLATE_CMD ||
  path.resolve(ROOT, '..', '..', 'target', 'debug', 'socketcluster');

/** The Node reference fixture, whatever `SC_SERVER_CMD` says (for cross-implementation tests). */
export const NODE_FIXTURE_CMD = [process.execPath, path.join(ROOT, 'fixtures', 'node-server.js')];

export const DEFAULT_WAIT = 5000;

// ---------------------------------------------------------------------------------------------------------------
// Small async utilities
// ---------------------------------------------------------------------------------------------------------------

export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Resolves/rejects like `promise`, or rejects after `ms` with an error naming `label`. */
export function withTimeout(promise, ms = DEFAULT_WAIT, label = 'operation') {
  let timer;
  let timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`Timed out after ${ms} ms waiting for ${label}`)), ms);
  });
  return Promise.race([Promise.resolve(promise), timeout]).finally(() => clearTimeout(timer));
}

/** Resolves with the rejection reason of `promise` (bounded); fails if it resolves instead. */
export async function expectRejection(promise, ms = DEFAULT_WAIT, label = 'rejection') {
  let settled = await withTimeout(
    Promise.resolve(promise).then((value) => ({ok: true, value}), (error) => ({ok: false, error})),
    ms, label
  );
  if (settled.ok) {
    throw new Error(`Expected ${label} but it resolved with ${JSON.stringify(settled.value)}`);
  }
  return settled.error;
}

/**
 * An unbounded FIFO that tests can wait on. `waitFor(pred)` removes and returns the first (oldest) item matching
 * `pred`, waiting up to `ms`; items that do not match stay in the queue. `all` keeps everything ever pushed.
 */
export class Queue {
  constructor(name = 'queue') {
    this.name = name;
    this.items = [];
    this.all = [];
    this._waiters = [];
  }

  push(item) {
    this.all.push(item);
    for (let i = 0; i < this._waiters.length; i++) {
      let waiter = this._waiters[i];
      if (waiter.pred(item)) {
        this._waiters.splice(i, 1);
        clearTimeout(waiter.timer);
        waiter.resolve(item);
        return;
      }
    }
    this.items.push(item);
  }

  waitFor(pred = () => true, ms = DEFAULT_WAIT, label) {
    let index = this.items.findIndex(pred);
    if (index !== -1) {
      return Promise.resolve(this.items.splice(index, 1)[0]);
    }
    return new Promise((resolve, reject) => {
      let waiter = {pred, resolve};
      waiter.timer = setTimeout(() => {
        let i = this._waiters.indexOf(waiter);
        if (i !== -1) this._waiters.splice(i, 1);
        let seen = this.items.slice(-10).map(describeItem).join(' | ');
        reject(new Error(`Timed out after ${ms} ms waiting for ${label || 'an item'} on ${this.name}` +
          ` (unconsumed, last 10: ${seen || 'none'})`));
      }, ms);
      this._waiters.push(waiter);
    });
  }

  next(ms = DEFAULT_WAIT, label) {
    return this.waitFor(() => true, ms, label || 'the next item');
  }

  /** Removes and returns everything currently queued. */
  drain() {
    let items = this.items;
    this.items = [];
    return items;
  }

  cancelWaiters() {
    for (let waiter of this._waiters) clearTimeout(waiter.timer);
    this._waiters = [];
  }
}

function describeItem(item) {
  if (typeof item === 'string') return JSON.stringify(item.length > 200 ? item.slice(0, 200) + '…' : item);
  try {
    let text = JSON.stringify(item, (k, v) => (v instanceof Error ? {name: v.name, message: v.message} : v));
    return text && text.length > 200 ? text.slice(0, 200) + '…' : text;
  } catch (e) {
    return String(item);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Resource tracking: everything a test opens is closed in afterEach; `keep` servers at the end of the file.
// ---------------------------------------------------------------------------------------------------------------

const testResources = new Set();
const fileResources = new Set();
let hooksInstalled = false;

/** Installs the cleanup hooks. Call once at the top level of every test file. */
export function useHarness() {
  if (hooksInstalled) return;
  hooksInstalled = true;
  afterEach(async () => {
    await closeAll(testResources);
  });
  after(async () => {
    await closeAll(testResources);
    await closeAll(fileResources);
  });
}

async function closeAll(set) {
  let items = [...set].reverse();
  set.clear();
  // Clients first, then servers (servers were usually created first).
  items.sort((a, b) => (a.kind === 'server') - (b.kind === 'server'));
  for (let item of items) {
    try {
      await withTimeout(item.close(), 5000, `closing ${item.kind}`);
    } catch (err) {
      process.stderr.write(`harness: cleanup of ${item.kind} failed: ${err.message}\n`);
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Server process
// ---------------------------------------------------------------------------------------------------------------

/** Splits a command line on whitespace, honouring simple single/double quotes. */
export function splitCommand(commandLine) {
  let words = [];
  let re = /"([^"]*)"|'([^']*)'|(\S+)/g;
  let match;
  while ((match = re.exec(commandLine))) {
    words.push(match[1] ?? match[2] ?? match[3]);
  }
  return words;
}

function flagsToArgs(flags) {
  if (Array.isArray(flags)) return flags.map(String);
  let args = [];
  for (let [name, value] of Object.entries(flags || {})) {
    if (value === undefined || value === null) continue;
    args.push(`--${name}`, String(value));
  }
  return args;
}

/**
 * Starts the server under test with `flags` (array of strings or `{name: value}` object) plus `--port 0`.
 * Resolves `{port, url, stop(), output}` once the server printed `LISTENING <port>`.
 * Options: `keep: true` → lives until the end of the test file (use in `before`), otherwise stopped after the test.
 */
export async function startServer(flags = {}, options = {}) {
  let [command, ...baseArgs] = SERVER_CMD ? splitCommand(SERVER_CMD) : NODE_FIXTURE_CMD;
  return startProcess(command, baseArgs, flags, options);
}

/** Starts the Node reference fixture (`fixtures/node-server.js`) regardless of `SC_SERVER_CMD`. */
export async function startNodeFixture(flags = {}, options = {}) {
  let [command, ...baseArgs] = NODE_FIXTURE_CMD;
  return startProcess(command, baseArgs, flags, options);
}

/**
 * Starts the Rust boilerplate app (`SC_BOILERPLATE_CMD`, see {@link BOILERPLATE_CMD}) as a cluster of one worker
 * and one broker on 127.0.0.1, with `flags` (e.g. `{'auth-key': 'k', 'protocol-version': '1'}`) plus
 * `--port 0`. Fails with a clear message when the binary does not exist.
 */
export async function startBoilerplate(flags = {}, options = {}) {
  let [command, ...baseArgs] = splitCommand(BOILERPLATE_CMD);
  if (command.includes('/') && !fs.existsSync(command)) {
    throw new Error(`The boilerplate binary ${command} does not exist: build it with \`cargo build -p socketcluster\` ` +
      'or point SC_BOILERPLATE_CMD at it');
  }
  let defaults = {workers: 1, brokers: 1, host: '127.0.0.1'};
  let args = Array.isArray(flags) ? [...flagsToArgs(defaults), ...flags] : {...defaults, ...flags};
  return startProcess(command, baseArgs, args, options);
}

async function startProcess(command, baseArgs, flags, {keep = false, startTimeout = 20000} = {}) {
  let args = [...baseArgs, ...flagsToArgs(flags), '--port', '0'];
  let child = spawn(command, args, {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true // own process group, so stop() also ends helpers a wrapper script may have started
  });
  liveChildren.add(child);
  let output = {stdout: '', stderr: ''};
  let exited = new Promise((resolve) => {
    child.once('exit', () => liveChildren.delete(child));
    child.once('exit', (code, signal) => resolve({code, signal}));
    child.once('error', (error) => resolve({code: null, signal: null, error}));
  });
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk) => {
    output.stderr += chunk;
    if (process.env.SC_INTEROP_DEBUG) process.stderr.write(`[server] ${chunk}`);
  });
  child.stdout.setEncoding('utf8');
  let port = await withTimeout(new Promise((resolve, reject) => {
    child.stdout.on('data', (chunk) => {
      output.stdout += chunk;
      let match = /^LISTENING (\d+)\s*$/m.exec(output.stdout);
      if (match) resolve(Number(match[1]));
    });
    exited.then(({code, signal, error}) => reject(new Error(
      `Server ${JSON.stringify([command, ...args].join(' '))} exited before LISTENING (code ${code}, signal ${signal}` +
      `${error ? ', ' + error.message : ''}); stderr:\n${output.stderr}`
    )));
  }), startTimeout, `server ${command} to print LISTENING`).catch((err) => {
    killGroup(child, 'SIGKILL');
    throw err;
  });

  let stopped = false;
  let server = {
    kind: 'server',
    port,
    host: '127.0.0.1',
    url: `ws://127.0.0.1:${port}/socketcluster/`,
    args,
    output,
    child,
    exited,
    async stop() {
      if (stopped) return exited;
      stopped = true;
      testResources.delete(server);
      fileResources.delete(server);
      killGroup(child, 'SIGTERM');
      let result = await Promise.race([exited, sleep(3000).then(() => null)]);
      if (!result) {
        killGroup(child, 'SIGKILL');
        result = await Promise.race([exited, sleep(2000).then(() => ({code: null, signal: 'timeout'}))]);
      }
      return result;
    },
    close() {
      return server.stop();
    }
  };
  (keep ? fileResources : testResources).add(server);
  return server;
}

// Last resort if a test file exits without its hooks running: no server process outlives the test process.
const liveChildren = new Set();
process.on('exit', () => {
  for (let child of liveChildren) killGroup(child, 'SIGKILL');
});

function killGroup(child, signal) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, signal);
  } catch (err) {
    try {
      child.kill(signal);
    } catch (e) {
      // already gone
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Official clients behind one small interface
// ---------------------------------------------------------------------------------------------------------------

export const FAST_RECONNECT = {initialDelay: 100, randomness: 50};

/**
 * The client/protocol/codec combinations every single-protocol test runs for: each official client with the
 * default JSON codec and with `sc-codec-min-bin` (the Rust servers run with `codec auto`, so one server takes both;
 * the Node reference fixture speaks one codec per process, so against it only the JSON rows run).
 * Pass the whole entry to {@link createClient}/{@link connectClient} so that the client gets its codec.
 */
export const VERSIONS = [
  {name: 'v14', client: 14, protocol: '1', codec: 'json'},
  {name: 'v20', client: 20, protocol: '2', codec: 'json'},
  ...(USING_REFERENCE ? [] : [
    {name: 'v14+min-bin', client: 14, protocol: '1', codec: 'min-bin'},
    {name: 'v20+min-bin', client: 20, protocol: '2', codec: 'min-bin'}
  ])
];

/**
 * What a client sees for "no data" in a response or event: `undefined` with JSON; `null` with min-bin, whose
 * packets always carry their `data` slot (a MessagePack nil, docs/protocol.md §2.2).
 */
export function noData(V) {
  return V && V.codec === 'min-bin' ? null : undefined;
}

/** A Node `Buffer` as a client sends it: `{base64:true,data}` with JSON, a map of its bytes' indices with min-bin. */
export function sentBuffer(V, buffer) {
  if (V && V.codec === 'min-bin') return Object.fromEntries([...buffer].map((b, i) => [String(i), b]));
  return {base64: true, data: buffer.toString('base64')};
}

/** The `sc-codec-min-bin` package, for `codecEngine`. */
export const MIN_BIN = minBin;

/**
 * Creates an official client (14 → socketcluster-client 14.3.2, 20 → socketcluster-client 20.x) connected to
 * `server`, wrapped in a {@link Client}. Does not wait for the connection; use `await client.ready()`.
 * `version` is 14, 20, or a {@link VERSIONS} entry (whose `codec: 'min-bin'` sets the client's `codecEngine`).
 */
export function createClient(version, server, options = {}) {
  let codec = 'json';
  if (typeof version === 'object') {
    codec = version.codec || 'json';
    version = version.client;
  }
  let base = {
    hostname: '127.0.0.1',
    port: server.port,
    autoReconnectOptions: {...FAST_RECONNECT},
    ...(codec === 'min-bin' ? {codecEngine: minBin} : {}),
    ...options
  };
  let socket;
  if (version === 14) {
    socket = sc14.create({multiplex: false, ...base});
  } else if (version === 20) {
    socket = sc20.create(base);
  } else {
    throw new Error(`unknown client version ${version}`);
  }
  let client = version === 14 ? new Client14(socket) : new Client20(socket);
  client.codec = codec;
  testResources.add(client);
  return client;
}

/** Creates a client and waits for its first `connect` event. */
export async function connectClient(version, server, options = {}) {
  let client = createClient(version, server, options);
  await client.ready();
  return client;
}

class ClientBase {
  constructor(version, socket) {
    this.kind = `v${version} client`;
    this.version = version;
    this.socket = socket;
    /** Local events as plain objects: {type: 'connect'|'disconnect'|'close'|'connectAbort'|'kickOut'|...}. */
    this.events = new Queue(`v${version} client events`);
    this._closed = false;
  }

  /** Waits for the next `connect` event (consumes it). Resolves with the handshake status. */
  async ready(ms = DEFAULT_WAIT) {
    let event = await this.events.waitFor((e) => e.type === 'connect', ms, 'connect');
    return event.status;
  }

  waitEvent(type, pred = () => true, ms = DEFAULT_WAIT) {
    return this.events.waitFor((e) => e.type === type && pred(e), ms, `local event ${type}`);
  }

  get id() {
    return this.socket.id;
  }

  get state() {
    return this.socket.state;
  }

  get authState() {
    return this.socket.authState;
  }

  get pendingReconnect() {
    return this.socket.pendingReconnect;
  }

  /**
   * Every frame this client receives from now on, decoded with its codec (JSON text parsed, min-bin decoded; the
   * packet objects of a batch stay in their array; heartbeats are skipped). For checking what travelled as a batch.
   */
  frames() {
    let queue = new Queue(`decoded frames (v${this.version})`);
    let decode = (m) => {
      if (m === '' || m === '#1') return undefined;
      try {
        if (typeof m !== 'string') return this.codec === 'min-bin' ? minBin.decode(m) : JSON.parse(Buffer.from(m).toString());
        return JSON.parse(m);
      } catch (e) {
        return undefined;
      }
    };
    let push = (m) => {
      let value = decode(m);
      if (value !== undefined && value !== '#1') queue.push(value);
    };
    if (this.version === 14) {
      this.socket.on('message', push);
    } else {
      (async () => {
        for await (let {message} of this.socket.listener('message')) push(message);
      })();
    }
    return queue;
  }

  /** Round-trips an `echo`; resolves when answered. */
  async echo(data, ms = DEFAULT_WAIT) {
    return withTimeout(this.invoke('echo', data), ms, 'echo');
  }

  async close() {
    if (this._closed) return;
    this._closed = true;
    this._shutdown();
    this.events.cancelWaiters();
  }
}

class ChannelHandle {
  constructor(client, name, channel) {
    this.client = client;
    this.name = name;
    this.channel = channel;
    this.messages = new Queue(`channel ${name} (v${client.version})`);
  }

  get state() {
    return this.channel.state;
  }

  /** Waits for this channel's next `subscribe` (resolves) or `subscribeFail` (rejects with the error). */
  async waitSubscribed(ms = DEFAULT_WAIT) {
    let event = await this.client.events.waitFor(
      (e) => (e.type === 'subscribe' || e.type === 'subscribeFail') && e.channel === this.name,
      ms, `subscribe/subscribeFail of ${this.name}`
    );
    if (event.type === 'subscribeFail') throw event.error;
    return event;
  }

  /** Waits for this channel's next `subscribeFail`; resolves with its error. */
  async waitSubscribeFail(ms = DEFAULT_WAIT) {
    let event = await this.client.events.waitFor(
      (e) => (e.type === 'subscribe' || e.type === 'subscribeFail') && e.channel === this.name,
      ms, `subscribeFail of ${this.name}`
    );
    if (event.type === 'subscribe') throw new Error(`channel ${this.name} was subscribed, expected a failure`);
    return event.error;
  }

  next(ms = DEFAULT_WAIT) {
    return this.messages.next(ms, `a message on ${this.name}`);
  }

  waitMessage(pred, ms = DEFAULT_WAIT) {
    return this.messages.waitFor(pred, ms, `a matching message on ${this.name}`);
  }
}

/** socketcluster-client 14.3.2 (protocol v1): Emitter API, callbacks. */
class Client14 extends ClientBase {
  constructor(socket) {
    super(14, socket);
    let ev = this.events;
    // v14 throws 'error' events that have no listener: always listen.
    socket.on('error', (error) => ev.push({type: 'error', error}));
    socket.on('connecting', () => ev.push({type: 'connecting'}));
    socket.on('connect', (status) => ev.push({type: 'connect', status}));
    socket.on('connectAbort', (code, reason) => ev.push({type: 'connectAbort', code, reason}));
    socket.on('disconnect', (code, reason) => ev.push({type: 'disconnect', code, reason}));
    socket.on('close', (code, reason) => ev.push({type: 'close', code, reason}));
    socket.on('kickOut', (message, channel) => ev.push({type: 'kickOut', channel, message}));
    socket.on('subscribe', (channel, subscriptionOptions) => ev.push({type: 'subscribe', channel, subscriptionOptions}));
    socket.on('subscribeFail', (error, channel) => ev.push({type: 'subscribeFail', channel, error}));
    socket.on('unsubscribe', (channel) => ev.push({type: 'unsubscribe', channel}));
    socket.on('raw', (message) => ev.push({type: 'raw', message}));
    socket.on('authenticate', (signedAuthToken) => ev.push({type: 'authenticate', signedAuthToken}));
    socket.on('deauthenticate', (oldSignedAuthToken) => ev.push({type: 'deauthenticate', oldSignedAuthToken}));
    socket.on('removeAuthToken', (oldSignedAuthToken) => ev.push({type: 'removeAuthToken', oldSignedAuthToken}));
    socket.on('authStateChange', ({oldState, newState}) =>
      ev.push({type: 'authStateChange', oldState, newState}));
  }

  /** `socket.authenticate(token, callback)` as a promise: resolves the auth status, or rejects with the error
   * (the status the client reported alongside is on `error.authStatus`). */
  authenticate(signedAuthToken) {
    return new Promise((resolve, reject) => {
      this.socket.authenticate(signedAuthToken, (err, authStatus) => {
        if (err) {
          if (err && typeof err === 'object') err.authStatus = authStatus;
          reject(err);
        } else {
          resolve(authStatus);
        }
      });
    });
  }

  deauthenticate() {
    this.socket.deauthenticate();
  }

  get signedAuthToken() {
    return this.socket.getSignedAuthToken();
  }

  get authToken() {
    return this.socket.getAuthToken();
  }

  /** `socket.emit(event, data, callback)` as a promise. */
  invoke(event, data) {
    return new Promise((resolve, reject) => {
      this.socket.emit(event, data, (err, response) => (err ? reject(err) : resolve(response)));
    });
  }

  /** `socket.emit(event, data)` without callback. */
  transmit(event, data) {
    this.socket.emit(event, data);
  }

  subscribe(name, options) {
    let channel = this.socket.subscribe(name, options);
    let handle = new ChannelHandle(this, name, channel);
    channel.watch((data) => handle.messages.push(data));
    handle.unsubscribe = () => channel.unsubscribe();
    handle.publish = (data) => channel.publish(data);
    handle.invokePublish = (data) => new Promise((resolve, reject) => {
      channel.publish(data, (err, response) => (err ? reject(err) : resolve(response)));
    });
    return handle;
  }

  unsubscribe(name) {
    this.socket.unsubscribe(name);
  }

  /** `socket.publish(channel, data)` without callback. */
  publish(channel, data) {
    this.socket.publish(channel, data);
  }

  /** `socket.publish(channel, data, callback)` as a promise. */
  invokePublish(channel, data) {
    return new Promise((resolve, reject) => {
      this.socket.publish(channel, data, (err, response) => (err ? reject(err) : resolve(response)));
    });
  }

  /** Server → client events named `name` (transmits and invokes), as a Queue of `data`. */
  receive(name) {
    let queue = new Queue(`v14 receiver ${name}`);
    this.socket.on(name, (data) => queue.push(data));
    return queue;
  }

  /** Answers server invokes of `name` with `handler(data)` (a throw becomes an error response). */
  answer(name, handler) {
    this.socket.on(name, (data, respond) => {
      let result;
      try {
        result = handler(data);
      } catch (err) {
        respond(err);
        return;
      }
      respond(null, result);
    });
  }

  disconnect(code, reason) {
    this.socket.disconnect(code, reason);
  }

  _shutdown() {
    try {
      this.socket.destroy();
    } catch (err) {
      // ignore
    }
    // Keep the error listener: late SocketProtocolErrors are thrown when nobody listens.
    let ev = this.events;
    this.socket.off();
    this.socket.on('error', () => {});
    ev.cancelWaiters();
  }
}

/** socketcluster-client 20.x (protocol v2): async iterables, promises. */
class Client20 extends ClientBase {
  constructor(socket) {
    super(20, socket);
    let ev = this.events;
    let listen = (name, map) => {
      (async () => {
        for await (let payload of socket.listener(name)) ev.push(map(payload));
      })();
    };
    listen('error', ({error}) => ({type: 'error', error}));
    listen('connecting', () => ({type: 'connecting'}));
    listen('connect', (status) => ({type: 'connect', status}));
    listen('connectAbort', ({code, reason}) => ({type: 'connectAbort', code, reason}));
    listen('disconnect', ({code, reason}) => ({type: 'disconnect', code, reason}));
    listen('close', ({code, reason}) => ({type: 'close', code, reason}));
    listen('kickOut', ({channel, message}) => ({type: 'kickOut', channel, message}));
    listen('subscribe', ({channel, subscriptionOptions}) => ({type: 'subscribe', channel, subscriptionOptions}));
    listen('subscribeFail', ({channel, error}) => ({type: 'subscribeFail', channel, error}));
    listen('unsubscribe', ({channel}) => ({type: 'unsubscribe', channel}));
    listen('raw', ({message}) => ({type: 'raw', message}));
    listen('authenticate', ({signedAuthToken}) => ({type: 'authenticate', signedAuthToken}));
    listen('deauthenticate', ({oldSignedAuthToken}) => ({type: 'deauthenticate', oldSignedAuthToken}));
    listen('removeAuthToken', ({oldAuthToken}) => ({type: 'removeAuthToken', oldSignedAuthToken: oldAuthToken}));
    listen('authStateChange', ({oldAuthState, newAuthState}) =>
      ({type: 'authStateChange', oldState: oldAuthState, newState: newAuthState}));
  }

  /** `await socket.authenticate(token)`: resolves the auth status or rejects with the error. */
  authenticate(signedAuthToken) {
    return this.socket.authenticate(signedAuthToken);
  }

  deauthenticate() {
    return this.socket.deauthenticate();
  }

  get signedAuthToken() {
    return this.socket.signedAuthToken;
  }

  get authToken() {
    return this.socket.authToken;
  }

  /** `await socket.invoke(event, data, options)`. */
  invoke(event, data, options) {
    return this.socket.invoke(event, data, options);
  }

  /** `socket.transmit(event, data)`. */
  transmit(event, data) {
    this.socket.transmit(event, data);
  }

  subscribe(name, options) {
    let channel = this.socket.subscribe(name, options);
    let handle = new ChannelHandle(this, name, channel);
    (async () => {
      for await (let data of channel) handle.messages.push(data);
    })();
    handle.unsubscribe = () => channel.unsubscribe();
    handle.publish = (data) => channel.transmitPublish(data);
    handle.invokePublish = (data) => channel.invokePublish(data);
    return handle;
  }

  unsubscribe(name) {
    this.socket.unsubscribe(name);
  }

  /** `socket.transmitPublish(channel, data)`. */
  publish(channel, data) {
    this.socket.transmitPublish(channel, data);
  }

  /** `socket.invokePublish(channel, data)`. */
  invokePublish(channel, data) {
    return this.socket.invokePublish(channel, data);
  }

  /** Server → client transmits named `name` (`socket.receiver(name)`), as a Queue of `data`. */
  receive(name) {
    let queue = new Queue(`v20 receiver ${name}`);
    (async () => {
      for await (let data of this.socket.receiver(name)) queue.push(data);
    })();
    return queue;
  }

  /** Answers server invokes of `name` (`socket.procedure(name)`) with `handler(data)`. */
  answer(name, handler) {
    (async () => {
      for await (let request of this.socket.procedure(name)) {
        let result;
        try {
          result = handler(request.data);
        } catch (err) {
          request.error(err);
          continue;
        }
        request.end(result);
      }
    })();
  }

  disconnect(code, reason) {
    this.socket.disconnect(code, reason);
  }

  _shutdown() {
    let socket = this.socket;
    try {
      socket.disconnect();
    } catch (err) {
      // ignore
    }
    socket.killAllListeners();
    socket.killAllReceivers();
    socket.killAllProcedures();
    socket.killAllChannels();
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Auth token storage shared by client instances
// ---------------------------------------------------------------------------------------------------------------

/**
 * An auth token store to pass as the client option `authEngine` (both client versions accept it: v14 calls it with
 * callbacks, v20 awaits the promises). Several clients given the same store share one token, as browser tabs share
 * localStorage; `token` may be set by the test to seed what the next handshake sends. Token names are ignored.
 */
export class TokenStore {
  constructor(token = null) {
    this.token = token;
    /** Every operation, in order: {op: 'save'|'remove'|'load', token}. */
    this.log = [];
  }

  saveToken(name, token, options, callback) {
    this.token = token;
    this.log.push({op: 'save', token});
    if (typeof callback === 'function') callback(null, token);
    return Promise.resolve(token);
  }

  removeToken(name, callback) {
    let old = this.token;
    this.token = null;
    this.log.push({op: 'remove', token: old});
    if (typeof callback === 'function') callback(null, old);
    return Promise.resolve(old);
  }

  loadToken(name, callback) {
    let token = this.token;
    this.log.push({op: 'load', token});
    if (typeof callback === 'function') callback(null, token);
    return Promise.resolve(token);
  }
}

/** An error as a plain object: `message`, then every own enumerable field except `stack` (strings stay strings). */
export function errorObject(error) {
  if (error === null || typeof error !== 'object') return error;
  let plain = {message: error.message};
  for (let [key, value] of Object.entries(error)) {
    if (key !== 'stack' && key !== 'authStatus') plain[key] = value;
  }
  if (plain.name === undefined && error.name !== 'Error') plain.name = error.name;
  return plain;
}

// ---------------------------------------------------------------------------------------------------------------
// Raw WebSocket client that records frames
// ---------------------------------------------------------------------------------------------------------------

export const HANDSHAKE = '{"event":"#handshake","data":{"authToken":null},"cid":1}';

/**
 * Opens a plain `ws` WebSocket to the server's SocketCluster path.
 * Options: `path` (default '/socketcluster/'), `query` (string without '?'), `headers`, `origin`,
 * `pong` ('v1' answers `#1` with `#2`, 'v2' answers '' with '', 'any' both, false = never answer).
 * Heartbeat frames (`#1` / `''`) go to `heartbeats`, every other inbound frame to `frames` (text as string,
 * binary as Buffer). `log` has every frame in both directions with timestamps.
 */
export async function rawConnect(server, {path: wsPath = '/socketcluster/', query = '', headers = {}, origin, pong = false} = {}) {
  let url = `ws://127.0.0.1:${server.port}${wsPath}${query ? '?' + query : ''}`;
  let ws = new WebSocket(url, {headers, origin, perMessageDeflate: false});
  let raw = new RawClient(ws, pong);
  testResources.add(raw);
  await withTimeout(new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
    ws.once('unexpected-response', (req, res) => reject(new Error(`upgrade refused with HTTP ${res.statusCode}`)));
  }), DEFAULT_WAIT, `WebSocket open on ${url}`);
  return raw;
}

class RawClient {
  constructor(ws, pong) {
    this.kind = 'raw client';
    this.ws = ws;
    this.pong = pong;
    this.t0 = Date.now();
    this.frames = new Queue('raw frames');
    this.heartbeats = new Queue('raw heartbeats');
    this.log = [];
    this.closeInfo = null;
    this.closed = new Promise((resolve) => {
      ws.on('close', (code, reason) => {
        this.closeInfo = {code, reason: reason.toString()};
        this.log.push({dir: 'close', t: Date.now() - this.t0, ...this.closeInfo});
        resolve(this.closeInfo);
      });
    });
    ws.on('error', () => {});
    ws.on('message', (data, isBinary) => {
      let frame = isBinary ? Buffer.from(data) : data.toString('utf8');
      this.log.push({dir: 'in', t: Date.now() - this.t0, frame});
      if (!isBinary && (frame === '#1' || frame === '')) {
        this.heartbeats.push(frame);
        if ((frame === '#1' && (pong === 'v1' || pong === 'any')) || (frame === '' && (pong === 'v2' || pong === 'any'))) {
          this.send(frame === '#1' ? '#2' : '');
        }
        return;
      }
      this.frames.push(frame);
    });
  }

  send(text) {
    this.log.push({dir: 'out', t: Date.now() - this.t0, frame: text});
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(text);
  }

  sendJson(value) {
    this.send(JSON.stringify(value));
  }

  /** Sends the standard token-less handshake with `cid` and resolves with the exact response frame text. */
  async handshake(cid = 1, ms = DEFAULT_WAIT) {
    this.send(`{"event":"#handshake","data":{"authToken":null},"cid":${cid}}`);
    return this.waitFrame((f) => typeof f === 'string' && f.startsWith(`{"rid":${cid},`), ms, `handshake response rid ${cid}`);
  }

  next(ms = DEFAULT_WAIT) {
    return this.frames.next(ms, 'the next frame');
  }

  /** Waits for (and removes) the first frame matching `pred` (a function or an exact string). */
  waitFrame(pred, ms = DEFAULT_WAIT, label) {
    if (typeof pred === 'string') {
      let exact = pred;
      return this.frames.waitFor((f) => f === exact, ms, label || `frame ${exact}`);
    }
    return this.frames.waitFor(pred, ms, label || 'a matching frame');
  }

  /** Waits for the first JSON frame whose parsed value matches `pred`; resolves with {text, value}. */
  async waitJson(pred, ms = DEFAULT_WAIT, label) {
    let text = await this.frames.waitFor((f) => {
      if (typeof f !== 'string') return false;
      try {
        return pred(JSON.parse(f));
      } catch (e) {
        return false;
      }
    }, ms, label || 'a matching JSON frame');
    return {text, value: JSON.parse(text)};
  }

  waitClose(ms = DEFAULT_WAIT) {
    return withTimeout(this.closed, ms, 'the server to close the connection');
  }

  close() {
    this.frames.cancelWaiters();
    this.heartbeats.cancelWaiters();
    if (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING) {
      try {
        this.ws.terminate();
      } catch (e) {
        // ignore
      }
    }
    return Promise.resolve();
  }
}

/**
 * Sends a WebSocket upgrade request by hand and reports how the server answered:
 * `{status, headers, body}` (for 101, body is '' and the socket is destroyed right away).
 */
export function rawUpgrade(server, {path: reqPath = '/socketcluster/', headers = {}} = {}) {
  return withTimeout(new Promise((resolve, reject) => {
    let req = http.request({
      host: '127.0.0.1',
      port: server.port,
      path: reqPath,
      method: 'GET',
      headers: {
        'Connection': 'Upgrade',
        'Upgrade': 'websocket',
        'Sec-WebSocket-Version': '13',
        'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==',
        ...headers
      }
    });
    req.on('upgrade', (res, socket) => {
      socket.destroy();
      resolve({status: res.statusCode, headers: res.headers, body: ''});
    });
    req.on('response', (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk) => (body += chunk));
      res.on('end', () => resolve({status: res.statusCode, headers: res.headers, body}));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  }), DEFAULT_WAIT, `HTTP upgrade response for ${reqPath}`);
}

// ---------------------------------------------------------------------------------------------------------------
// Helpers shared by test files
// ---------------------------------------------------------------------------------------------------------------

let uniqueCounter = 0;
/** A channel name unique within this test process. */
export function uniqueName(prefix = 'ch') {
  uniqueCounter++;
  return `${prefix}-${process.pid}-${uniqueCounter}`;
}

/**
 * Ordering barrier for publish deliveries to `client`: subscribes (once) to a private channel, asks the server to
 * publish a fresh token to it (`serverpublish`), and waits until the token arrives. Publishes that the server handled
 * before the barrier have then been delivered (or will never be).
 */
export async function publishBarrier(client, ms = DEFAULT_WAIT) {
  if (!client._barrier) {
    client._barrier = client.subscribe(uniqueName('barrier'));
    await client._barrier.waitSubscribed(ms);
  }
  let token = uniqueName('token');
  client.transmit('serverpublish', {channel: client._barrier.name, data: token});
  await client._barrier.waitMessage((m) => m === token, ms);
}
