// Headless Chromium test of the live admin page (/admin) of our server.
//
//   cd tests/browser && npm ci && SC_SERVER_CMD=../../target/debug/socketcluster node --test admin.test.mjs
//
// The admin page exists only in our server (not in the Node reference), so this test needs $SC_SERVER_CMD or a
// built ../../target/debug/socketcluster. It starts the server with `--admin-token`, opens /admin, types the token
// and watches the connection count follow other pages connecting and leaving. With $SC_ADMIN_SCREENSHOT set to a
// path, it saves a screenshot of the live page there (docs/admin.png is made this way).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { HERE, TIMEOUT, startServer, launchBrowser, newCheckedPage } from './harness.mjs';

const OURS = process.env.SC_SERVER_CMD || join(HERE, '../../target/debug/socketcluster');
const TOKEN = 'test-admin-token';

let server;
let browser;

before(async () => {
  assert.ok(process.env.SC_SERVER_CMD || existsSync(OURS), `build the server first (cargo build -p socketcluster): ${OURS}`);
  server = await startServer(OURS, `--workers 2 --admin-token ${TOKEN}`);
  browser = await launchBrowser();
});

after(async () => {
  if (browser) await browser.close();
  if (server) await server.stop();
});

async function count(page) {
  return Number((await page.locator('#connections-total').textContent()).trim());
}

test('admin page asks for the token, then shows connections change live', { timeout: 6 * TIMEOUT }, async () => {
  const { page, problems } = await newCheckedPage(browser.context);
  const others = [];
  try {
    const response = await page.goto(`http://127.0.0.1:${server.port}/admin`);
    assert.equal(response.status(), 200);
    assert.equal(await page.title(), 'SocketCluster admin');
    assert.equal(await page.locator('#dash').isHidden(), true, 'nothing shown before the token');

    // A wrong token is refused.
    await page.fill('#token', 'wrong');
    await page.click('button[type=submit]');
    await page.waitForFunction(() => document.getElementById('error').textContent.includes('wrong admin token'));
    assert.equal(await page.locator('#dash').isHidden(), true);

    await page.fill('#token', TOKEN);
    await page.click('button[type=submit]');
    await page.waitForFunction(() => !document.getElementById('dash').hidden);
    // The admin page's own socket.
    await page.waitForFunction(() => Number(document.getElementById('connections-total').textContent) === 1);
    const base = await count(page);

    // Three boilerplate pages connect: the count follows.
    for (let i = 0; i < 3; i++) {
      const other = await browser.context.newPage();
      await other.goto(`http://127.0.0.1:${server.port}/`);
      await other.waitForFunction(() => document.getElementById('status')?.textContent.trim() === 'connected');
      for (let p = 0; p < 3; p++) await other.click('#ping');
      others.push(other);
    }
    await page.waitForFunction((n) => Number(document.getElementById('connections-total').textContent) === n, base + 3);
    // Both workers are listed, and the pong channel shows up among the top channels.
    await page.waitForFunction(() => document.querySelectorAll('#workers tr').length === 2);
    await page.waitForFunction(() => document.getElementById('channels').textContent.includes('pong'));
    if (process.env.SC_ADMIN_SCREENSHOT) {
      await page.waitForTimeout(2500); // a few chart points
      await page.screenshot({ path: process.env.SC_ADMIN_SCREENSHOT, fullPage: true });
    }

    // They leave: the count goes back.
    for (const other of others.splice(0)) await other.close();
    await page.waitForFunction((n) => Number(document.getElementById('connections-total').textContent) === n, base);

    const unexpected = problems.filter((p) => !p.includes('wrong admin token'));
    assert.deepEqual(unexpected, [], `server output:\n${server.output()}`);
  } finally {
    for (const other of others) await other.close().catch(() => {});
    await page.close().catch(() => {});
  }
});

test('without --admin-token the page does not exist', { timeout: 3 * TIMEOUT }, async () => {
  const plain = await startServer(OURS, '');
  try {
    const res = await fetch(`http://127.0.0.1:${plain.port}/admin`);
    assert.equal(res.status, 404);
  } finally {
    await plain.stop();
  }
});
