// Headless Chromium test of the boilerplate page (public/index.html + public/socketcluster.js).
//
//   cd tests/browser && npm install && node --test
//
// The server under test is started from $SC_SERVER_CMD (a shell command line) with the extra arguments
// `--port 0`; it must print `LISTENING <port>` on stdout and serve public/ over HTTP on that port plus the
// SocketCluster endpoint on /socketcluster/. Default: the Node reference server (scripts/node-reference).
// Chromium: $CHROMIUM_PATH, default /usr/bin/chromium (Debian package; playwright-core downloads nothing).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const HERE = dirname(fileURLToPath(import.meta.url));
const TIMEOUT = 15_000;
const SERVER_CMD = process.env.SC_SERVER_CMD || 'node ../../scripts/node-reference/server.js';
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';

let server;        // child process
let serverOutput = '';
let port;
let browser;
let userDataDir;

/** Start the server command (in its own process group) and resolve with the port it prints. */
function startServer() {
  return new Promise((resolve, reject) => {
    const child = spawn(`${SERVER_CMD} --port 0`, {
      cwd: HERE, shell: true, detached: true, stdio: ['ignore', 'pipe', 'pipe']
    });
    server = child;
    const timer = setTimeout(() => reject(new Error(`server did not print LISTENING within ${TIMEOUT} ms:\n${serverOutput}`)), TIMEOUT);
    let stdout = '';
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stdout.on('data', (chunk) => {
      stdout += chunk;
      serverOutput += chunk;
      const m = /^LISTENING (\d+)\s*$/m.exec(stdout);
      if (m) { clearTimeout(timer); resolve(Number(m[1])); }
    });
    child.stderr.on('data', (chunk) => { serverOutput += chunk; });
    child.on('error', (err) => { clearTimeout(timer); reject(err); });
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`server exited early (code ${code}, signal ${signal}):\n${serverOutput}`));
    });
  });
}

/** Kill the whole process group of the server (the shell and whatever it started); wait briefly for the exit. */
async function stopServer() {
  if (!server || server.exitCode !== null || server.signalCode !== null) return;
  const exited = new Promise((resolve) => server.once('exit', resolve));
  try { process.kill(-server.pid, 'SIGTERM'); } catch { /* already gone */ }
  const timer = setTimeout(() => { try { process.kill(-server.pid, 'SIGKILL'); } catch { /* gone */ } }, 3000);
  await exited;
  clearTimeout(timer);
}

/** Race a promise against a timeout so that nothing in this test can hang. */
function within(ms, promise, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms); })
  ]).finally(() => clearTimeout(timer));
}

before(async () => {
  port = await startServer();
  userDataDir = mkdtempSync(join(tmpdir(), 'sc-browser-test-'));
  browser = await within(TIMEOUT, chromium.launch({
    executablePath: CHROMIUM,
    timeout: TIMEOUT,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      `--user-data-dir=${userDataDir}`
    ]
  }), 'launch chromium');
});

after(async () => {
  if (browser) await within(TIMEOUT, browser.close(), 'close chromium').catch(() => {});
  await stopServer();
  if (userDataDir) rmSync(userDataDir, { recursive: true, force: true });
});

test('boilerplate page connects, pings and receives consecutive pong counts', { timeout: 4 * TIMEOUT }, async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  page.setDefaultNavigationTimeout(TIMEOUT);

  const problems = [];
  page.on('pageerror', (err) => problems.push(`pageerror: ${err.message}`));
  page.on('console', (msg) => { if (msg.type() === 'error') problems.push(`console.error: ${msg.text()}`); });
  page.on('requestfailed', (req) => problems.push(`request failed: ${req.url()} ${req.failure()?.errorText}`));

  try {
    const response = await page.goto(`http://127.0.0.1:${port}/`);
    assert.equal(response.status(), 200);
    assert.equal(await page.title(), 'SocketCluster');

    await page.waitForFunction(() => document.getElementById('status')?.textContent.trim() === 'connected');

    const pongs = page.locator('#pongs li');
    await page.click('#ping');
    await page.waitForFunction(() => document.querySelectorAll('#pongs li').length >= 1);
    await page.click('#ping');
    await page.waitForFunction(() => document.querySelectorAll('#pongs li').length >= 2);
    // Give a stray third message (a bug) a moment to show up before counting.
    await page.waitForTimeout(200);

    const texts = (await pongs.allTextContents()).map((t) => t.trim());
    assert.equal(texts.length, 2, `expected 2 pongs, got ${JSON.stringify(texts)}`);
    const [newest, oldest] = texts.map(Number);
    assert.ok(Number.isInteger(oldest) && oldest >= 1, `first pong is not a positive integer: ${JSON.stringify(texts)}`);
    assert.equal(newest, oldest + 1, `second pong should be first + 1 (newest first): ${JSON.stringify(texts)}`);

    assert.equal(await page.locator('#status').textContent().then((t) => t.trim()), 'connected');
    assert.deepEqual(problems, []);
  } finally {
    await context.close().catch(() => {});
  }
});
