/*
 * socketcluster.js — a small, dependency-free SocketCluster browser client.
 *
 * Written from scratch for this project (see docs/protocol.md). Plain ES2018, no build step:
 *
 *   <script src="/socketcluster.js"></script>
 *   <script>
 *     const socket = socketClusterClient.create({ path: '/socketcluster/' });
 *     socket.on('connect', (status) => console.log('connected as', status.id));
 *     const channel = socket.subscribe('news');
 *     channel.watch((data) => console.log('news:', data));
 *     socket.emit('hello', { from: 'browser' });              // fire-and-forget (no cid)
 *     socket.invoke('echo', 42).then((answer) => ...);        // request/response (cid/rid)
 *   </script>
 *
 * Wire compatibility: JSON packets {event,data,cid} / {rid,error,data}, batch arrays, and both heartbeat
 * dialects — protocol v2 (server sends "", we answer "") and protocol v1 (server sends "#1", we answer "#2") —
 * so the same script talks to socketcluster-server >= 15 in either protocolVersion and to a v14 server.
 *
 * Local events (socket.on(name, fn) / socket.off(name, fn)); every listener receives one payload object:
 *   connecting {}            connect {id, pingTimeout, isAuthenticated, authError?, authToken}
 *   connectAbort/disconnect/close {code, reason}     error {error}       raw {message}
 *   subscribe/unsubscribe {channel}  subscribeFail {error, channel}  kickOut {channel, message}
 *   authenticate {signedAuthToken, authToken}  deauthenticate {oldSignedAuthToken, oldAuthToken}
 *   removeAuthToken {oldAuthToken}
 * Events sent by the server: socket.handle(name, fn) — fn(data) may return a value or a Promise; when the server
 * asked for an answer (cid) the result (or thrown error) is sent back.
 *
 * Continuity (EXTENSIONS.md: positions, recovery, history on join, presence):
 *   channel.watch((data, position) => ...)   position is {offset, epoch} on history channels, undefined otherwise
 *   channel.position                         the last position held ({offset, epoch} or null)
 *   socket.subscribe('room/1', { history: 50 })   replay the last 50 publications before the subscribe ack
 *   every resubscribe after a reconnect sends {"recover": position}: missed publications arrive first, in order;
 *   'recovery' {channel, recovered, from, position} (socket and channel) says whether that worked; recovered:false
 *   (also sent when a live delivery shows a new epoch) means: reload the channel's state another way.
 *   socket.presence('room/1') -> Promise<{count, clients: [{id, user}]}>
 *   'presenceJoin' / 'presenceLeave' {channel, client: {id, user}} (socket and channel)
 */
(function (global) {
  'use strict';

  // ---------------------------------------------------------------------------------------------------------------
  // Small helpers
  // ---------------------------------------------------------------------------------------------------------------

  /** Texts of the sc-errors close-code table (§10), used in SocketProtocolError messages. */
  const CLOSE_CODE_TEXT = {
    1001: 'Socket was disconnected', 1002: 'A WebSocket protocol error was encountered',
    1003: 'Server terminated socket because it received invalid data',
    1005: 'Socket closed without status code', 1006: 'Socket hung up',
    1007: 'Message format was incorrect', 1008: 'Encountered a policy violation',
    1009: 'Message was too big to process', 1011: 'Server encountered an unexpected fatal condition',
    4000: 'Server ping timed out', 4001: 'Client pong timed out', 4002: 'Server failed to sign auth token',
    4003: 'Failed to complete handshake', 4005: 'Did not receive #handshake from client before timeout',
    4007: 'Client connection establishment timed out', 4008: 'Server rejected handshake from client',
    4009: 'Server received a message before the client handshake'
  };

  /** Create an Error whose `name` (and optional extra fields) are own properties, like sc-errors does. */
  function makeError(name, message, extra) {
    const err = new Error(message);
    err.name = name;
    return Object.assign(err, extra);
  }

  /** Turn a dehydrated wire error (§9.2) back into an Error; strings and other scalars stay as they are. */
  function hydrateError(value) {
    if (value == null) return null;
    if (typeof value !== 'object') return value;
    const err = new Error(typeof value.message === 'string' ? value.message : 'Invalid error message format');
    for (const key of Object.keys(value)) {
      if (key !== 'message') err[key] = value[key];
    }
    return err;
  }

  /** Serialise an Error for an error response: {message, ...own enumerable fields}. */
  function dehydrateError(err) {
    if (err == null || typeof err !== 'object') return err;
    const out = { message: err.message };
    if (err.name && err.name !== 'Error') out.name = err.name;
    for (const key of Object.keys(err)) {
      if (key !== 'message' && key !== 'stack') out[key] = err[key];
    }
    return out;
  }

  /** Decode the payload segment of a JWT (no verification — the client only exposes it). */
  function decodeTokenPayload(token) {
    if (typeof token !== 'string') return null;
    const part = token.split('.')[1];
    if (!part) return null;
    try {
      const b64 = part.replace(/-/g, '+').replace(/_/g, '/');
      const bytes = Uint8Array.from(atob(b64 + '==='.slice((b64.length + 3) % 4)), (c) => c.charCodeAt(0));
      const text = new TextDecoder().decode(bytes);
      try { return JSON.parse(text); } catch (e) { return text; }
    } catch (e) {
      return null;
    }
  }

  /** Token store: localStorage when usable (probed once), otherwise an in-memory map private to the client. */
  function createTokenStore() {
    let storage = null;
    try {
      const probe = '__socketcluster_probe__';
      global.localStorage.setItem(probe, '1');
      global.localStorage.removeItem(probe);
      storage = global.localStorage;
    } catch (e) { /* private mode, sandboxed iframe, ... */ }
    const memory = new Map();
    return {
      load: (key) => (storage ? storage.getItem(key) : (memory.has(key) ? memory.get(key) : null)),
      save: (key, token) => (storage ? storage.setItem(key, token) : memory.set(key, token)),
      remove: (key) => (storage ? storage.removeItem(key) : memory.delete(key))
    };
  }

  /** Minimal event emitter: on / off / _fire. Listener exceptions are reported, never break the client. */
  class Emitter {
    constructor() { this._listeners = new Map(); }
    on(name, fn) {
      if (!this._listeners.has(name)) this._listeners.set(name, new Set());
      this._listeners.get(name).add(fn);
      return this;
    }
    off(name, fn) {
      if (!name) this._listeners.clear();
      else if (!fn) this._listeners.delete(name);
      else if (this._listeners.has(name)) this._listeners.get(name).delete(fn);
      return this;
    }
    /** Dispatch a local event (named _fire so that SCClientSocket#emit can mean "send to the server"). */
    _fire(name, payload) {
      const set = this._listeners.get(name);
      if (!set) return;
      for (const fn of Array.from(set)) {
        try { fn(payload); } catch (e) { setTimeout(() => { throw e; }, 0); }
      }
    }
  }

  // ---------------------------------------------------------------------------------------------------------------
  // Channel (§7.6): states 'pending' -> 'subscribed'; removed from the client when unsubscribed or kicked out
  // ---------------------------------------------------------------------------------------------------------------

  class SCChannel extends Emitter {
    constructor(client, name, options) {
      super();
      this.client = client;
      this.name = name;
      this.state = 'pending';
      this.options = options || {};
      this._watchers = new Set();
      this._subscribing = false; // one #subscribe in flight per channel
      /** Last position held on a history channel ({offset, epoch}), or null. */
      this.position = this.options.recover ? { offset: this.options.recover.offset, epoch: this.options.recover.epoch } : null;
      this._delivered = 0;          // highest offset delivered in position.epoch (duplicates are dropped)
      this._recoveringFrom = null;  // the position sent as `recover` in the #subscribe in flight
      this._epochChangedInFlight = false;
    }
    /** Call handler(data, position) for every message published to this channel. */
    watch(handler) { this._watchers.add(handler); return this; }
    /** Stop one handler, or every handler when called without argument. */
    unwatch(handler) {
      if (handler) this._watchers.delete(handler); else this._watchers.clear();
      return this;
    }
    publish(data) { return this.client.publish(this.name, data); }
    unsubscribe() { this.client.unsubscribe(this.name); }
    isSubscribed(includePending) { return this.state === 'subscribed' || (!!includePending && this.state === 'pending'); }
    /** Who is subscribed to this presence channel. */
    presence() { return this.client.presence(this.name); }
    _deliver(data, position) {
      for (const fn of Array.from(this._watchers)) {
        try { fn(data, position); } catch (e) { setTimeout(() => { throw e; }, 0); }
      }
    }
    /** Track a delivery's position; returns false for a duplicate, or {from} when the epoch changed. */
    _track(offset, epoch) {
      const held = this.position;
      if (held && held.epoch === epoch) {
        if (offset <= this._delivered) return false;
        this._delivered = offset;
        if (offset > held.offset) this.position = { offset: offset, epoch: epoch };
        return true;
      }
      this.position = { offset: offset, epoch: epoch };
      this._delivered = offset;
      if (!held) return true;
      if (this._recoveringFrom) { this._epochChangedInFlight = true; return true; }
      return { from: held };
    }
    /** Track a #subscribe ack; returns the recovery outcome to report, if the subscribe asked to recover. */
    _onAck(ack, from) {
      const changed = this._epochChangedInFlight;
      this._epochChangedInFlight = false;
      const hasPosition = ack && typeof ack === 'object' && Number.isSafeInteger(ack.offset) &&
        typeof ack.epoch === 'string' && ack.epoch !== '';
      if (!hasPosition) {
        if (from) { this.position = null; this._delivered = 0; }
        return null;
      }
      if (this.position && this.position.epoch === ack.epoch) {
        if (ack.offset > this.position.offset) this.position = { offset: ack.offset, epoch: ack.epoch };
      } else {
        this.position = { offset: ack.offset, epoch: ack.epoch };
        this._delivered = 0;
      }
      if (!from) return null;
      const recovered = ack.recovered === true && !changed && from.epoch === this.position.epoch;
      return { channel: this.name, recovered: recovered, from: from, position: this.position };
    }
  }

  // ---------------------------------------------------------------------------------------------------------------
  // Client socket
  // ---------------------------------------------------------------------------------------------------------------

  const DEFAULT_OPTIONS = {
    path: '/socketcluster/',
    query: null,
    autoConnect: true,
    autoReconnect: true,
    autoReconnectOptions: { initialDelay: 10000, randomness: 10000, multiplier: 1.5, maxDelay: 60000 },
    connectTimeout: 20000,
    ackTimeout: 10000,
    pingTimeoutDisabled: false,
    authTokenName: null
  };

  class SCClientSocket extends Emitter {
    constructor(options) {
      super();
      const loc = global.location || {};
      const opts = Object.assign({}, DEFAULT_OPTIONS, options);
      if (opts.secure == null) opts.secure = loc.protocol === 'https:';
      if (opts.hostname == null) opts.hostname = loc.hostname || 'localhost';
      if (opts.port == null) opts.port = loc.port ? Number(loc.port) : (opts.secure ? 443 : 80);
      opts.autoReconnectOptions = Object.assign({}, DEFAULT_OPTIONS.autoReconnectOptions, opts.autoReconnectOptions);
      if (!opts.authTokenName) opts.authTokenName = 'socketcluster.authToken.' + opts.hostname + ':' + opts.port;
      this.options = opts;

      this.state = 'closed';            // 'closed' | 'connecting' | 'open'
      this.authState = 'unauthenticated';
      this.id = null;
      this.signedAuthToken = null;
      this.authToken = null;
      this.pingTimeout = opts.connectTimeout;
      this.connectAttempts = 0;

      this._ws = null;
      this._cid = 0;                    // call ids survive reconnects (§3.1)
      this._pending = new Map();        // cid -> {resolve, reject, timer}
      this._queue = [];                 // outbound events waiting for the handshake (§15.4)
      this._channels = new Map();       // name -> SCChannel
      this._handlers = new Map();       // server event name -> fn(data)
      this._timers = { connect: null, ping: null, reconnect: null };
      this._tokens = createTokenStore();

      if (opts.autoConnect) this.connect();
    }

    /** WebSocket URL from the options: scheme, host, port (omitted when default), path, query. */
    url() {
      const o = this.options;
      const scheme = o.secure ? 'wss' : 'ws';
      const defaultPort = o.secure ? 443 : 80;
      const host = o.hostname.indexOf(':') >= 0 && o.hostname[0] !== '[' ? '[' + o.hostname + ']' : o.hostname;
      let query = '';
      if (o.query) {
        query = typeof o.query === 'string' ? o.query : new URLSearchParams(o.query).toString();
        if (query && query[0] !== '?') query = '?' + query;
      }
      return scheme + '://' + host + (Number(o.port) === defaultPort ? '' : ':' + o.port) + o.path + query;
    }

    // ------------------------------------------------------------------------------------------ connection

    connect() {
      if (this.state !== 'closed') return;
      clearTimeout(this._timers.reconnect);
      this.state = 'connecting';
      this._fire('connecting', {});
      let ws;
      try {
        ws = new WebSocket(this.url());
      } catch (error) {
        this._fire('error', { error });
        this._onClose(1006, String(error && error.message));
        return;
      }
      ws.binaryType = 'arraybuffer';
      this._ws = ws;
      // Connection establishment timeout (4007) and initial ping timeout (connectTimeout, §15.2).
      this._timers.connect = setTimeout(() => this._close(4007), this.options.connectTimeout);
      ws.onopen = () => this._onOpen();
      ws.onclose = (ev) => this._onClose(ev.code, ev.reason);
      ws.onmessage = (ev) => this._onMessage(ev.data);
      ws.onerror = () => { /* always followed by onclose, which carries the code */ };
    }

    /** Close the connection (default 1000: no auto-reconnect); also cancels a scheduled reconnect. */
    disconnect(code, reason) {
      code = code || 1000;
      if (this.state === 'closed') {
        clearTimeout(this._timers.reconnect);
        return;
      }
      this._close(code, reason);
    }

    /** Client-initiated close: tell the browser, then handle the close locally right away. */
    _close(code, reason) {
      const ws = this._ws;
      if (ws) {
        ws.onopen = ws.onclose = ws.onmessage = ws.onerror = null;
        try {
          // Browsers only allow 1000 and 3000-4999 as close codes.
          if (code === 1000 || (code >= 3000 && code <= 4999)) ws.close(code, reason || '');
          else ws.close();
        } catch (e) { /* already closing */ }
      }
      this._onClose(code, reason || '');
    }

    _onOpen() {
      clearTimeout(this._timers.connect);
      this._resetPingTimer(this.options.connectTimeout);
      const authToken = this._tokens.load(this.options.authTokenName);
      this._sendRequest('#handshake', { authToken: authToken }, this.options.ackTimeout)
        .then((status) => this._onHandshake(status || {}, authToken))
        .catch((error) => {
          if (error && error.name === 'BadConnectionError') return; // the close is already being handled
          this._close(error && error.statusCode ? error.statusCode : 4003);
        });
    }

    _onHandshake(status, authToken) {
      if (this.state !== 'connecting') return;
      this.id = status.id;
      this.pingTimeout = status.pingTimeout || this.pingTimeout;
      this.state = 'open';
      this.connectAttempts = 0;
      this._resetPingTimer(this.pingTimeout);
      if (status.isAuthenticated) this._changeToAuthenticated(authToken);
      else this._changeToUnauthenticated();
      this._fire('connect', Object.assign({}, status, { authError: hydrateError(status.authError) || undefined, authToken: this.authToken }));
      this._processPendingSubscriptions();
      this._flushQueue();
    }

    _onClose(code, reason) {
      if (this.state === 'closed') return;
      const wasOpen = this.state === 'open';
      this.state = 'closed';
      this._ws = null;
      clearTimeout(this._timers.connect);
      clearTimeout(this._timers.ping);
      reason = reason || CLOSE_CODE_TEXT[code] || '';

      // Fail everything in flight (queued events are kept until their ackTimeout; §5.2).
      const abort = makeError('BadConnectionError', 'Event was aborted due to a bad connection',
        { type: wasOpen ? 'disconnect' : 'connectAbort', code: code, reason: reason });
      const pending = Array.from(this._pending.values());
      this._pending.clear();
      for (const p of pending) { clearTimeout(p.timer); p.reject(abort); }

      // Every channel becomes pending so it is re-subscribed after the next handshake (§7.6).
      for (const channel of this._channels.values()) {
        const was = channel.state;
        channel.state = 'pending';
        channel._subscribing = false;
        if (was === 'subscribed') {
          channel._fire('unsubscribe', { channel: channel.name });
          this._fire('unsubscribe', { channel: channel.name });
        }
      }

      if (code !== 1000 && code !== 1001) {
        const text = CLOSE_CODE_TEXT[code] ||
          ('Socket connection closed with status code ' + code + (reason ? ' and reason: ' + reason : ''));
        this._fire('error', { error: makeError('SocketProtocolError', text, { code: code }) });
      }
      this._fire(wasOpen ? 'disconnect' : 'connectAbort', { code: code, reason: reason });
      this._fire('close', { code: code, reason: reason });

      // Auto-reconnect rule of §15.1.
      if (!this.options.autoReconnect) return;
      if (code === 4000 || code === 4001 || code === 1005) this._tryReconnect(0);
      else if (code !== 1000 && code < 4500) this._tryReconnect();
    }

    _tryReconnect(initialDelay) {
      const o = this.options.autoReconnectOptions;
      const exponent = this.connectAttempts++;
      let timeout;
      if (initialDelay == null || exponent > 0) {
        const base = Math.round(o.initialDelay + (o.randomness || 0) * Math.random());
        timeout = Math.round(base * Math.pow(o.multiplier, exponent));
      } else {
        timeout = initialDelay;
      }
      timeout = Math.min(timeout, o.maxDelay);
      clearTimeout(this._timers.reconnect);
      this._timers.reconnect = setTimeout(() => this.connect(), timeout);
    }

    /** The server must ping within pingTimeout, otherwise we close with 4000 (§6). */
    _resetPingTimer(ms) {
      clearTimeout(this._timers.ping);
      if (this.options.pingTimeoutDisabled) return;
      this._timers.ping = setTimeout(() => this._close(4000), ms);
    }

    // ------------------------------------------------------------------------------------------ inbound

    _onMessage(message) {
      // Heartbeats: v2 ping "" -> pong "", v1 ping "#1" -> pong "#2". Answered at once, never decoded.
      if (message === '' || message === '#1') {
        this._resetPingTimer(this.pingTimeout);
        this._sendFrame(message === '' ? '' : '#2');
        return;
      }
      // sc-formatter decode rule (§2.1): only text starting with { or [ is JSON; anything else is raw.
      let packet = message;
      if (typeof message === 'string' && /^[ \n\r\t]*[{[]/.test(message)) {
        try { packet = JSON.parse(message); } catch (e) { packet = message; }
      }
      if (Array.isArray(packet)) {
        for (const p of packet) this._onPacket(p, message);   // batch frame (§3.3)
      } else {
        this._onPacket(packet, message);
      }
    }

    _onPacket(packet, rawMessage) {
      if (packet && typeof packet === 'object' && typeof packet.event === 'string') {
        this._onEvent(packet.event, packet.data, packet.cid);
      } else if (packet && typeof packet === 'object' && typeof packet.rid === 'number') {
        const p = this._pending.get(packet.rid);
        if (!p) return; // late or unknown response: ignored
        this._pending.delete(packet.rid);
        clearTimeout(p.timer);
        if (packet.error != null) p.reject(hydrateError(packet.error));
        else p.resolve(packet.data);
      } else {
        this._fire('raw', { message: rawMessage });
      }
    }

    _onEvent(event, data, cid) {
      const respond = (error, result) => {
        if (typeof cid !== 'number') return;
        const res = { rid: cid };
        if (error != null) res.error = dehydrateError(error); else if (result !== undefined) res.data = result;
        this._sendFrame(JSON.stringify(res));
      };
      switch (event) {
        case '#publish': {
          const channel = data && typeof data.channel === 'string' ? this._channels.get(data.channel) : null;
          if (!channel || !channel.isSubscribed(true)) return;
          if (Number.isSafeInteger(data.offset) && typeof data.epoch === 'string' && data.epoch !== '') {
            const tracked = channel._track(data.offset, data.epoch);
            if (tracked === false) return; // duplicate
            channel._deliver(data.data, { offset: data.offset, epoch: data.epoch });
            if (tracked !== true) {
              this._fireRecovery(channel, { channel: channel.name, recovered: false, from: tracked.from, position: channel.position });
            }
          } else {
            channel._deliver(data.data);
          }
          return;
        }
        case '#presenceJoin':
        case '#presenceLeave': {
          const name = event === '#presenceJoin' ? 'presenceJoin' : 'presenceLeave';
          const payload = { channel: data && data.channel, client: data && data.client };
          const channel = payload.channel != null ? this._channels.get(payload.channel) : null;
          if (channel) channel._fire(name, payload);
          this._fire(name, payload);
          const handler = this._handlers.get(event);
          if (handler) Promise.resolve().then(() => handler(data)).catch(() => {});
          return;
        }
        case '#kickOut': {
          const channel = data && this._channels.get(data.channel);
          if (channel) {
            this._channels.delete(channel.name);
            channel.state = 'unsubscribed';
            channel._fire('kickOut', { channel: channel.name, message: data.message });
            this._fire('kickOut', { channel: channel.name, message: data.message });
          }
          return;
        }
        case '#setAuthToken': {
          if (!data || typeof data.token !== 'string') {
            respond(makeError('InvalidMessageError', 'No token data provided by #setAuthToken event'));
            return;
          }
          this._tokens.save(this.options.authTokenName, data.token);
          this._changeToAuthenticated(data.token);
          respond();
          this._processPendingSubscriptions(); // waitForAuth channels may now go
          return;
        }
        case '#removeAuthToken': {
          const oldAuthToken = this.authToken;
          this._tokens.remove(this.options.authTokenName);
          this._fire('removeAuthToken', { oldAuthToken: oldAuthToken });
          this._changeToUnauthenticated();
          respond();
          return;
        }
        case '#disconnect':
          return; // v14 servers announce the close; the close frame itself follows
        default: {
          const handler = this._handlers.get(event);
          if (!handler) return; // no handler: no response, like the reference client
          Promise.resolve().then(() => handler(data)).then((result) => respond(null, result), (err) => respond(err || makeError('Error', 'Handler failed')));
        }
      }
    }

    // ------------------------------------------------------------------------------------------ outbound

    _sendFrame(text) {
      if (this._ws && this._ws.readyState === 1) this._ws.send(text);
    }

    /** Send an event that expects a response now (socket must be connecting/open). Used by the handshake and
     *  by channel subscriptions, which bypass the outbound queue. timeout 0 = wait until answered or closed. */
    _sendRequest(event, data, timeout) {
      return new Promise((resolve, reject) => {
        const cid = ++this._cid;
        const p = { resolve: resolve, reject: reject, timer: null };
        if (timeout) {
          p.timer = setTimeout(() => {
            this._pending.delete(cid);
            reject(makeError('TimeoutError', 'Event response for ' + event + ' event timed out'));
          }, timeout);
        }
        this._pending.set(cid, p);
        const packet = { event: event, data: data, cid: cid };
        this._sendFrame(JSON.stringify(packet));
      });
    }

    /** Queue an event; flushed immediately when open, after the next handshake otherwise (§15.4). */
    _enqueue(event, data, expectResponse, ackTimeout) {
      return new Promise((resolve, reject) => {
        const item = { event: event, data: data, expectResponse: expectResponse, resolve: resolve, reject: reject };
        const timeout = ackTimeout == null ? this.options.ackTimeout : ackTimeout;
        item.timer = setTimeout(() => {
          const idx = this._queue.indexOf(item);
          if (idx >= 0) this._queue.splice(idx, 1);
          if (item.cid != null) this._pending.delete(item.cid);
          reject(makeError('TimeoutError', 'Event response for ' + event + ' event timed out'));
        }, timeout);
        this._queue.push(item);
        if (this.state === 'open') this._flushQueue();
        else if (this.state === 'closed') this.connect();
      });
    }

    _flushQueue() {
      const items = this._queue;
      this._queue = [];
      for (const item of items) {
        const packet = { event: item.event, data: item.data };
        if (item.expectResponse) {
          item.cid = packet.cid = ++this._cid;
          this._pending.set(item.cid, item); // the queue timer keeps running as the ack timer
        } else {
          clearTimeout(item.timer);
          item.resolve();
        }
        this._sendFrame(JSON.stringify(packet));
      }
    }

    /** Fire-and-forget event (no cid). Failures (ackTimeout while offline) are reported as 'error' events. */
    emit(event, data) {
      this.transmit(event, data).catch((error) => this._fire('error', { error: error }));
    }

    /** Like emit, but returns a Promise: resolved once sent, rejected if still unsent after ackTimeout. */
    transmit(event, data) { return this._enqueue(event, data, false); }

    /** Request/response; resolves with the server's answer, rejects with a hydrated error (§9.2). */
    invoke(event, data, options) {
      return this._enqueue(event, data, true, options && options.ackTimeout);
    }

    /** Register a handler for an event sent by the server (optionally answered when the server passed a cid). */
    handle(event, fn) {
      if (fn) this._handlers.set(event, fn); else this._handlers.delete(event);
      return this;
    }

    // ------------------------------------------------------------------------------------------ pub/sub

    subscribe(name, options) {
      let channel = this._channels.get(name);
      if (!channel) {
        channel = new SCChannel(this, name, options);
        this._channels.set(name, channel);
      }
      this._trySubscribe(channel);
      return channel;
    }

    channel(name) { return this._channels.get(name) || null; }

    subscriptions(includePending) {
      return Array.from(this._channels.values()).filter((c) => c.isSubscribed(includePending)).map((c) => c.name);
    }

    _trySubscribe(channel) {
      if (this.state !== 'open' || channel.state !== 'pending' || channel._subscribing) return;
      if (channel.options.waitForAuth && this.authState !== 'authenticated') return;
      const data = { channel: channel.name };
      if (channel.options.waitForAuth) data.waitForAuth = true;
      if (channel.options.data) data.data = channel.options.data;
      // Continuity: recover from the position held, or ask for history on the first join. Merged into the
      // application's data when that is a plain object; data of another kind is sent as it is.
      const limit = channel.options.history != null && typeof channel.options.history === 'object'
        ? channel.options.history.limit : channel.options.history;
      const extra = channel.position ? { recover: { offset: channel.position.offset, epoch: channel.position.epoch } }
        : (Number.isSafeInteger(limit) && limit >= 0 ? { history: { limit: limit } } : null);
      channel._recoveringFrom = null;
      channel._epochChangedInFlight = false;
      if (extra && (data.data == null || (typeof data.data === 'object' && !Array.isArray(data.data)))) {
        data.data = Object.assign({}, data.data || {}, extra);
        if (extra.recover) channel._recoveringFrom = channel.position;
      }
      channel._subscribing = true;
      this._sendRequest('#subscribe', data, 0).then((ack) => {
        if (this._channels.get(channel.name) !== channel || !channel._subscribing) return; // unsubscribed meanwhile
        channel._subscribing = false;
        const recovery = channel._onAck(ack, channel._recoveringFrom);
        channel._recoveringFrom = null;
        if (recovery) this._fireRecovery(channel, recovery);
        channel.state = 'subscribed';
        channel._fire('subscribe', { channel: channel.name });
        this._fire('subscribe', { channel: channel.name });
      }, (error) => {
        channel._subscribing = false;
        if (error && error.name === 'BadConnectionError') return; // stays pending, retried after reconnect
        if (error && error.name === 'BrokerError') {
          // The channel's store is unavailable (an engine outage, EXTENSIONS.md E6): stay pending, try again.
          setTimeout(() => { if (this._channels.get(channel.name) === channel) this._trySubscribe(channel); }, 1000);
          return;
        }
        if (channel.options.waitForAuth && this.authState !== 'authenticated') return;
        if (this._channels.get(channel.name) !== channel) return;
        this._channels.delete(channel.name);
        channel.state = 'unsubscribed';
        channel._fire('subscribeFail', { error: error, channel: channel.name });
        this._fire('subscribeFail', { error: error, channel: channel.name });
      });
    }

    /** Re-subscribe every pending channel, highest options.priority first (§7.6). */
    _processPendingSubscriptions() {
      const pending = Array.from(this._channels.values()).filter((c) => c.state === 'pending');
      pending.sort((a, b) => (b.options.priority || 0) - (a.options.priority || 0));
      for (const channel of pending) this._trySubscribe(channel);
    }

    unsubscribe(name) {
      const channel = this._channels.get(name);
      if (!channel) return;
      const was = channel.state;
      this._channels.delete(name);
      channel.state = 'unsubscribed';
      channel._subscribing = false;
      if (this.state === 'open') this._sendFrame(JSON.stringify({ event: '#unsubscribe', data: name }));
      if (was === 'subscribed') {
        channel._fire('unsubscribe', { channel: name });
        this._fire('unsubscribe', { channel: name });
      }
    }

    _fireRecovery(channel, recovery) {
      channel._fire('recovery', recovery);
      this._fire('recovery', recovery);
    }

    /** Who is subscribed to a presence channel: resolves with {count, clients: [{id, user}]}; rejects with a
     *  PresenceError unless this socket is subscribed to that presence channel. */
    presence(channel) { return this.invoke('#presence', { channel: channel }); }

    /** Publish with acknowledgement; resolves when the server accepted the publish (on a history channel with
     *  the publication's position {offset, epoch}). */
    publish(channel, data) { return this.invoke('#publish', { channel: channel, data: data }); }

    transmitPublish(channel, data) { return this.transmit('#publish', { channel: channel, data: data }); }

    // ------------------------------------------------------------------------------------------ auth (§8)

    /** Log in with an already signed token: the server verifies it, we store it on success. */
    authenticate(signedAuthToken) {
      return this.invoke('#authenticate', signedAuthToken).then((status) => {
        this._tokens.save(this.options.authTokenName, signedAuthToken);
        if (status && status.isAuthenticated) this._changeToAuthenticated(signedAuthToken);
        else this._changeToUnauthenticated();
        this._processPendingSubscriptions();
        return status;
      }, (error) => {
        if (error.name !== 'BadConnectionError' && error.name !== 'TimeoutError') this._changeToUnauthenticated();
        throw error;
      });
    }

    /** Log out: forget the stored token and tell the server (never acknowledged). */
    deauthenticate() {
      this._tokens.remove(this.options.authTokenName);
      if (this.state !== 'closed') this._sendFrame(JSON.stringify({ event: '#removeAuthToken' }));
      this._changeToUnauthenticated();
    }

    _changeToAuthenticated(signedAuthToken) {
      this.signedAuthToken = signedAuthToken;
      this.authToken = decodeTokenPayload(signedAuthToken);
      this.authState = 'authenticated';
      this._fire('authenticate', { signedAuthToken: signedAuthToken, authToken: this.authToken });
    }

    _changeToUnauthenticated() {
      const oldSignedAuthToken = this.signedAuthToken;
      const oldAuthToken = this.authToken;
      const wasAuthenticated = this.authState === 'authenticated';
      this.signedAuthToken = null;
      this.authToken = null;
      this.authState = 'unauthenticated';
      if (wasAuthenticated) this._fire('deauthenticate', { oldSignedAuthToken: oldSignedAuthToken, oldAuthToken: oldAuthToken });
    }
  }

  const api = {
    create: (options) => new SCClientSocket(options),
    SCClientSocket: SCClientSocket,
    SCChannel: SCChannel,
    hydrateError: hydrateError,
    dehydrateError: dehydrateError,
    version: '1.0.0'
  };
  global.socketClusterClient = api;
  if (!global.SC) global.SC = api;
})(typeof window !== 'undefined' ? window : globalThis);
