/*
 * sc-continuity.js — stream positions, recovery, history on join and presence (EXTENSIONS.md) for the official
 * socketcluster-client 14.x (protocol v1) and 15+/20.x (protocol v2). Plain script, no build step, no dependency:
 *
 *   Node:     const scContinuity = require('./sc-continuity.js');
 *   Browser:  <script src="/sc-continuity.js"></script>   (defines window.scContinuity)
 *
 *   const socket = socketClusterClient.create({ port: 8000 });
 *   const continuity = scContinuity.attach(socket, { history: { 'room/lobby': 50 } });
 *   continuity.on('recovery', ({ channel, recovered, from, position }) => { if (!recovered) reloadState(channel); });
 *   continuity.on('publish', ({ channel, data, offset, epoch }) => ...);   // every delivery on a history channel
 *   continuity.on('presenceJoin', ({ channel, client }) => ...);            // and 'presenceLeave'
 *   continuity.presence('room/lobby').then(({ count, clients }) => ...);
 *   continuity.position('room/lobby');                                      // {offset, epoch} or null
 *
 * How: the helper wraps the socket's codec (`socket.codec`, and the current transport's), which both client
 * generations call synchronously for every frame they send and receive — the same frames a 'message' listener
 * sees, but before the client acts on them and already decoded (so it works with any codec, min-bin included).
 *   - Inbound `#publish` with `offset`/`epoch` and `#subscribe` acknowledgements update each channel's position.
 *   - Outbound `#subscribe` gets `"recover": position` merged into its `data` (the client's own automatic
 *     resubscribe after a reconnect therefore recovers), or `"history": {limit}` on a first join.
 *   - An acknowledgement's `recovered`, or a live delivery with a new epoch, is reported as 'recovery'.
 *   - `#unsubscribe` forgets the channel's position.
 *   - A #subscribe refused with BrokerError (the channel's store is down, E6) is subscribed again after a second
 *     (the official clients would give up on the channel); `retryBrokerErrors: false` turns that off.
 * Subscribe `data` that the application gave as a non-object (a string, an array) is left alone: no recovery then.
 */
(function (root, factory) {
  if (typeof module === 'object' && module.exports) module.exports = factory();
  else root.scContinuity = factory();
})(typeof self !== 'undefined' ? self : this, function () {
  'use strict';

  function isPosition(offset, epoch) {
    return Number.isSafeInteger(offset) && offset >= 0 && typeof epoch === 'string' && epoch !== '';
  }

  function isPlainObject(value) {
    return value != null && typeof value === 'object' && !Array.isArray(value);
  }

  function Continuity(socket, options) {
    options = options || {};
    this.socket = socket;
    this._listeners = {};
    this._channels = {};        // name -> {position, recoveringFrom, epochChangedInFlight}
    this._subscribes = {};      // cid of a #subscribe in flight -> {channel, recoveringFrom}
    this._history = Object.assign({}, options.history || {});
    this._retryBrokerErrors = options.retryBrokerErrors !== false;
    this._original = socket.codec;
    const self = this;
    const original = this._original;
    this._codec = {
      encode: function (object) { return original.encode(self._outbound(object)); },
      decode: function (message) {
        const decoded = original.decode(message);
        try { self._inbound(decoded); } catch (e) { setTimeout(function () { throw e; }, 0); }
        return decoded;
      }
    };
    this._install(this._codec);
  }

  Continuity.prototype._install = function (codec) {
    this.socket.codec = codec;
    if (this.socket.transport) this.socket.transport.codec = codec;
  };

  /** Stop watching: the socket's codec is restored (positions are kept in this object). */
  Continuity.prototype.detach = function () {
    if (this.socket.codec === this._codec) this._install(this._original);
  };

  Continuity.prototype.on = function (name, fn) {
    (this._listeners[name] = this._listeners[name] || []).push(fn);
    return this;
  };

  Continuity.prototype.off = function (name, fn) {
    const list = this._listeners[name] || [];
    this._listeners[name] = fn ? list.filter(function (f) { return f !== fn; }) : [];
    return this;
  };

  Continuity.prototype._fire = function (name, payload) {
    const list = (this._listeners[name] || []).slice();
    for (let i = 0; i < list.length; i++) {
      try { list[i](payload); } catch (e) { setTimeout(function () { throw e; }, 0); }
    }
  };

  /** The last position held for a channel ({offset, epoch}), or null. */
  Continuity.prototype.position = function (channel) {
    const state = this._channels[channel];
    return state && state.position ? { offset: state.position.offset, epoch: state.position.epoch } : null;
  };

  /** Every position held, by channel name (e.g. to save them and restore with setPosition after a page reload). */
  Continuity.prototype.positions = function () {
    const out = {};
    for (const name of Object.keys(this._channels)) {
      if (this._channels[name].position) out[name] = this.position(name);
    }
    return out;
  };

  /** Start a channel from a known position: its next #subscribe asks to recover from there. */
  Continuity.prototype.setPosition = function (channel, position) {
    if (!position || !isPosition(position.offset, position.epoch)) throw new TypeError('position must be {offset, epoch}');
    this._state(channel).position = { offset: position.offset, epoch: position.epoch };
    return this;
  };

  /** Ask for the last `limit` publications on the channel's first #subscribe (EXTENSIONS.md E4). */
  Continuity.prototype.history = function (channel, limit) {
    this._history[channel] = limit;
    return this;
  };

  /** Who is subscribed to a presence channel: resolves with {count, clients: [{id, user}]}. */
  Continuity.prototype.presence = function (channel) {
    const socket = this.socket;
    const data = { channel: channel };
    if (typeof socket.invoke === 'function') return socket.invoke('#presence', data); // v15+
    return new Promise(function (resolve, reject) {                                     // v14
      socket.emit('#presence', data, function (error, answer) {
        if (error) reject(error); else resolve(answer);
      });
    });
  };

  Continuity.prototype._state = function (channel) {
    return this._channels[channel] || (this._channels[channel] = { position: null, epochChangedInFlight: false });
  };

  // ------------------------------------------------------------------------------------------------- outbound

  Continuity.prototype._outbound = function (object) {
    if (Array.isArray(object)) return object.map(this._outbound, this);
    if (!isPlainObject(object)) return object;
    if (object.event === '#subscribe' && isPlainObject(object.data) && typeof object.data.channel === 'string') {
      return this._subscribe(object);
    }
    if (object.event === '#unsubscribe' && typeof object.data === 'string') {
      delete this._channels[object.data];
    }
    return object;
  };

  Continuity.prototype._subscribe = function (packet) {
    const name = packet.data.channel;
    const state = this._channels[name];
    const position = state && state.position;
    const limit = this._history[name];
    let extra = null;
    if (position) extra = { recover: { offset: position.offset, epoch: position.epoch } };
    else if (Number.isSafeInteger(limit) && limit >= 0) extra = { history: { limit: limit } };
    const appData = packet.data.data;
    const merge = extra && (appData == null || appData === false || appData === '' || appData === 0 || isPlainObject(appData));
    if (typeof packet.cid === 'number') {
      // A #subscribe for this channel that is still listed was lost with its connection.
      for (const cid of Object.keys(this._subscribes)) {
        if (this._subscribes[cid].channel === name) delete this._subscribes[cid];
      }
      this._subscribes[packet.cid] = {
        channel: name,
        recoveringFrom: merge && position ? position : null,
        options: { waitForAuth: !!packet.data.waitForAuth, data: appData }
      };
      if (state) state.epochChangedInFlight = false;
    }
    if (!merge) return packet;
    const data = Object.assign({}, packet.data, { data: Object.assign({}, isPlainObject(appData) ? appData : {}, extra) });
    return Object.assign({}, packet, { data: data });
  };

  // -------------------------------------------------------------------------------------------------- inbound

  Continuity.prototype._inbound = function (packet) {
    if (Array.isArray(packet)) {
      for (let i = 0; i < packet.length; i++) this._inbound(packet[i]);
      return;
    }
    if (!isPlainObject(packet)) return;
    if (typeof packet.event === 'string') {
      const data = packet.data;
      if (packet.event === '#publish' && isPlainObject(data) && typeof data.channel === 'string') {
        this._publish(data);
      } else if (packet.event === '#presenceJoin' || packet.event === '#presenceLeave') {
        if (isPlainObject(data)) {
          this._fire(packet.event === '#presenceJoin' ? 'presenceJoin' : 'presenceLeave',
            { channel: data.channel, client: data.client });
        }
      }
    } else if (typeof packet.rid === 'number' && this._subscribes[packet.rid]) {
      const request = this._subscribes[packet.rid];
      delete this._subscribes[packet.rid];
      if (packet.error == null) this._ack(request, packet.data);
      else if (this._retryBrokerErrors && isPlainObject(packet.error) && packet.error.name === 'BrokerError') {
        const socket = this.socket;
        const options = request.options;
        setTimeout(function () {
          try { socket.subscribe(request.channel, options); } catch (e) { /* the socket was destroyed */ }
        }, 1000);
      }
    }
  };

  Continuity.prototype._publish = function (data) {
    if (!isPosition(data.offset, data.epoch)) return;
    const state = this._state(data.channel);
    const held = state.position;
    const position = { offset: data.offset, epoch: data.epoch };
    let lostFrom = null;
    if (held && held.epoch === data.epoch) {
      if (data.offset > held.offset) state.position = position;
    } else {
      state.position = position;
      if (held) {
        if (this._recovering(data.channel)) state.epochChangedInFlight = true;
        else lostFrom = held;
      }
    }
    this._fire('publish', { channel: data.channel, data: data.data, offset: data.offset, epoch: data.epoch });
    if (lostFrom) {
      this._fire('recovery', { channel: data.channel, recovered: false, from: lostFrom, position: this.position(data.channel) });
    }
  };

  Continuity.prototype._recovering = function (channel) {
    for (const cid of Object.keys(this._subscribes)) {
      const request = this._subscribes[cid];
      if (request.channel === channel && request.recoveringFrom) return true;
    }
    return false;
  };

  Continuity.prototype._ack = function (request, ack) {
    const state = this._state(request.channel);
    const changed = state.epochChangedInFlight;
    state.epochChangedInFlight = false;
    if (!isPlainObject(ack) || !isPosition(ack.offset, ack.epoch)) {
      if (request.recoveringFrom) state.position = null; // the channel no longer keeps history
      return;
    }
    if (state.position && state.position.epoch === ack.epoch) {
      if (ack.offset > state.position.offset) state.position = { offset: ack.offset, epoch: ack.epoch };
    } else {
      state.position = { offset: ack.offset, epoch: ack.epoch };
    }
    const from = request.recoveringFrom;
    if (from) {
      const recovered = ack.recovered === true && !changed && from.epoch === state.position.epoch;
      this._fire('recovery', { channel: request.channel, recovered: recovered, from: from, position: this.position(request.channel) });
    }
  };

  return {
    /** Watch a socket of socketcluster-client 14.x or 15+; returns the helper (see the file's header). */
    attach: function (socket, options) { return new Continuity(socket, options); },
    Continuity: Continuity
  };
});
