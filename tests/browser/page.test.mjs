// Headless Chromium test of the boilerplate page (public/index.html + public/socketcluster.js).
//
//   cd tests/browser && npm install && node --test page.test.mjs
//
// The server under test is started from $SC_SERVER_CMD (a shell command line, run in tests/browser) with the
// extra arguments `--port 0`; it must print `LISTENING <port>` on stdout and serve public/ over HTTP on that port
// plus the SocketCluster boilerplate on /socketcluster/. Default: the Node reference server
// (scripts/node-reference/server.js). Chromium: $CHROMIUM_PATH, default /usr/bin/chromium.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { TIMEOUT, startServer, launchBrowser, newCheckedPage } from './harness.mjs';

let server;
let browser;

before(async () => {
  server = await startServer();
  browser = await launchBrowser();
});

after(async () => {
  if (browser) await browser.close();
  if (server) await server.stop();
});

test('boilerplate page connects, pings and receives consecutive pong counts', { timeout: 4 * TIMEOUT }, async () => {
  const { page, problems } = await newCheckedPage(browser.context);
  try {
    const response = await page.goto(`http://127.0.0.1:${server.port}/`);
    assert.equal(response.status(), 200);
    assert.equal(await page.title(), 'SocketCluster');

    await page.waitForFunction(() => document.getElementById('status')?.textContent.trim() === 'connected');

    await page.click('#ping');
    await page.waitForFunction(() => document.querySelectorAll('#pongs li').length >= 1);
    await page.click('#ping');
    await page.waitForFunction(() => document.querySelectorAll('#pongs li').length >= 2);
    // Give a stray third message (a bug) a moment to show up before counting.
    await page.waitForTimeout(200);

    const texts = (await page.locator('#pongs li').allTextContents()).map((t) => t.trim());
    assert.equal(texts.length, 2, `expected 2 pongs, got ${JSON.stringify(texts)}`);
    const [newest, oldest] = texts.map(Number);
    assert.ok(Number.isInteger(oldest) && oldest >= 1, `first pong is not a positive integer: ${JSON.stringify(texts)}`);
    assert.equal(newest, oldest + 1, `second pong should be first + 1 (newest first): ${JSON.stringify(texts)}`);

    assert.equal((await page.locator('#status').textContent()).trim(), 'connected');
    assert.deepEqual(problems, [], `server output:\n${server.output()}`);
  } finally {
    await page.close().catch(() => {});
  }
});
