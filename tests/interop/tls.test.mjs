// TLS on the same port: the official 14.x and 20.x clients connect with `secure: true` to the Rust boilerplate
// started with --tls-cert/--tls-key (a self-signed certificate made at test time with the openssl command; the
// clients are told to trust it with `ca`). Always runs against the Rust binary (see BOILERPLATE_CMD).

import {test, before, after} from 'node:test';
import assert from 'node:assert/strict';
import {execFileSync} from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import https from 'node:https';
import {useHarness, startBoilerplate, connectClient, uniqueName, withTimeout} from './lib/harness.mjs';

useHarness();

let dir;
let cert;
let key;

before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sc-tls-'));
  cert = path.join(dir, 'cert.pem');
  key = path.join(dir, 'key.pem');
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2',
    '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
    '-keyout', key, '-out', cert
  ], {stdio: 'ignore'});
});

after(() => {
  if (dir) fs.rmSync(dir, {recursive: true, force: true});
});

function httpsGet(port, pathName, ca) {
  return new Promise((resolve, reject) => {
    https.get({host: '127.0.0.1', port, path: pathName, ca, servername: 'localhost'}, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => { body += c; });
      res.on('end', () => resolve({status: res.statusCode, body}));
    }).on('error', reject);
  });
}

test('official clients connect with secure: true, emit, and get publications over WSS', {timeout: 30000}, async () => {
  let server = await startBoilerplate({workers: 2, 'tls-cert': cert, 'tls-key': key});
  let ca = fs.readFileSync(cert);
  let health = await withTimeout(httpsGet(server.port, '/health', ca), 5000, 'GET /health over HTTPS');
  assert.equal(health.status, 200);
  assert.equal(JSON.parse(health.body).status, 'ok');

  let channel = uniqueName('tls');
  let clients = [];
  for (let version of [14, 20]) {
    // 14.x hands its options to `ws`; 20.x takes them as `wsOptions`.
    let client = await connectClient(version, server, {secure: true, hostname: 'localhost', ca, wsOptions: {ca}});
    assert.equal(client.state, 'open');
    assert.deepEqual(await client.echo({over: 'wss', version}), {over: 'wss', version});
    clients.push(client);
  }
  let handles = [];
  for (let client of clients) {
    let handle = client.subscribe(channel);
    await handle.waitSubscribed();
    handles.push(handle);
  }
  await clients[0].invokePublish(channel, 'hello over TLS');
  for (let handle of handles) {
    assert.equal(await handle.next(), 'hello over TLS');
  }
});

test('a plain ws:// client cannot talk to the TLS port', {timeout: 30000}, async () => {
  let server = await startBoilerplate({'tls-cert': cert, 'tls-key': key});
  await assert.rejects(
    withTimeout(connectClient(20, server, {autoReconnect: false}), 5000, 'plain connect'),
    'a client without secure: true must not connect'
  );
});
