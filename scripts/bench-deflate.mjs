#!/usr/bin/env node
// Fan-out with permessage-deflate on and off: C subscribers (the `ws` package, which offers the extension, as the
// official Node clients do) on one channel, one publisher publishing M JSON messages of about S bytes with at most
// W unacknowledged. For each setting a fresh server is started; reported per run: deliveries, deliveries per server
// CPU-second (utime+stime of the server process over the publishing phase) and server bytes written per delivery
// (`wchar` of /proc/PID/io: what the server handed to its sockets).
//
// Usage: node scripts/bench-deflate.mjs [SERVER_BINARY] [--subscribers C] [--messages M] [--size S] [--window W]
//   SERVER_BINARY default: target/release/examples/interop_fixture. Loopback only; every phase is bounded by 120 s.
import {spawn} from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import {createRequire} from 'node:module';
import {fileURLToPath} from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(path.join(ROOT, 'tests', 'interop', 'package.json'));
const WebSocket = require('ws');

const args = process.argv.slice(2);
const flag = (name, fallback) => {
  let i = args.indexOf(`--${name}`);
  return i === -1 ? fallback : Number(args[i + 1]);
};
const BINARY = args[0] && !args[0].startsWith('--') ? args[0] : path.join(ROOT, 'target/release/examples/interop_fixture');
const C = flag('subscribers', 100);
const M = flag('messages', 2000);
const SIZE = flag('size', 2048);
const WINDOW = flag('window', 32);
const LIMIT_MS = 120_000;

function bounded(promise, label) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`timed out: ${label}`)), LIMIT_MS); })
  ]).finally(() => clearTimeout(timer));
}

function startServer(deflate) {
  let child = spawn(BINARY, ['--port', '0', '--protocol-version', '1', '--per-message-deflate', String(deflate)],
    {stdio: ['ignore', 'pipe', 'inherit']});
  return bounded(new Promise((resolve, reject) => {
    child.on('exit', (code) => reject(new Error(`server exited (${code})`)));
    child.stdout.on('data', (chunk) => {
      let m = /LISTENING (\d+)/.exec(String(chunk));
      if (m) resolve({child, port: Number(m[1])});
    });
  }), 'server start');
}

function serverUsage(pid) {
  let stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  let fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  let cpuS = (Number(fields[11]) + Number(fields[12])) / 100; // utime + stime, in clock ticks (100 Hz)
  let io = fs.readFileSync(`/proc/${pid}/io`, 'utf8');
  let wchar = Number(/wchar: (\d+)/.exec(io)[1]);
  return {cpuS, wchar};
}

/** A raw SocketCluster v1 connection: handshake, answers #1 with #2, counts #publish deliveries. */
function connect(port, onPublish) {
  return bounded(new Promise((resolve, reject) => {
    let ws = new WebSocket(`ws://127.0.0.1:${port}/socketcluster/`, {perMessageDeflate: true});
    let acks = new Map();
    let cid = 1;
    ws.invoke = (event, data) => new Promise((res) => {
      let id = ++cid;
      acks.set(id, res);
      ws.send(JSON.stringify({event, data, cid: id}));
    });
    ws.on('error', reject);
    ws.on('open', () => ws.send(JSON.stringify({event: '#handshake', data: {authToken: null}, cid: 1})));
    ws.on('message', (raw) => {
      let text = raw.toString();
      if (text === '#1') return ws.send('#2');
      let packet = JSON.parse(text);
      if (packet.rid === 1) return resolve(ws);
      if (packet.rid != null && acks.has(packet.rid)) {
        acks.get(packet.rid)(packet);
        acks.delete(packet.rid);
      } else if (packet.event === '#publish') {
        onPublish();
      }
    });
  }), 'connect');
}

function payload(seq) {
  let rows = [];
  let body = {seq, kind: 'update', rows};
  while (JSON.stringify(body).length < SIZE) {
    rows.push({id: rows.length, name: `item ${rows.length % 17}`, price: 100 + (rows.length % 7), tags: ['a', 'b']});
  }
  return body;
}

async function run(deflate) {
  let {child, port} = await startServer(deflate);
  try {
    let delivered = 0;
    let allDelivered;
    let done = new Promise((resolve) => { allDelivered = resolve; });
    let onPublish = () => { if (++delivered === C * M) allDelivered(); };
    let subscribers = [];
    for (let i = 0; i < C; i++) subscribers.push(await connect(port, onPublish));
    await Promise.all(subscribers.map((s) => s.invoke('#subscribe', {channel: 'bench'})));
    let publisher = await connect(port, () => {});
    let negotiated = subscribers[0].extensions || 'none';
    let before = serverUsage(child.pid);
    let start = process.hrtime.bigint();
    let inFlight = [];
    for (let seq = 0; seq < M; seq++) {
      inFlight.push(publisher.invoke('#publish', {channel: 'bench', data: payload(seq)}));
      if (inFlight.length >= WINDOW) await inFlight.shift();
    }
    await bounded(Promise.all(inFlight), 'publish acks');
    await bounded(done, 'deliveries');
    let seconds = Number(process.hrtime.bigint() - start) / 1e9;
    let after = serverUsage(child.pid);
    let cpuS = after.cpuS - before.cpuS;
    let bytes = after.wchar - before.wchar;
    for (let ws of [...subscribers, publisher]) ws.terminate();
    return {
      perMessageDeflate: deflate, negotiated, deliveries: delivered, seconds: +seconds.toFixed(2),
      deliveriesPerS: Math.round(delivered / seconds), serverCpuS: +cpuS.toFixed(2),
      deliveriesPerServerCpuS: cpuS > 0 ? Math.round(delivered / cpuS) : null,
      serverBytesWritten: bytes, bytesPerDelivery: Math.round(bytes / delivered)
    };
  } finally {
    child.kill('SIGTERM');
  }
}

const uncompressed = JSON.stringify(payload(0)).length;
console.log(`fanout: ${C} subscribers, ${M} messages of ${uncompressed} bytes of JSON, window ${WINDOW}; server ${BINARY}`);
for (let deflate of [false, true]) {
  console.log(JSON.stringify(await run(deflate)));
}
process.exit(0);
