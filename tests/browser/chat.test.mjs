// Headless Chromium test of the boilerplate page's chat room (public/index.html, room/lobby) against the Rust
// boilerplate app, which keeps history and presence for room/*:
//
//   cd tests/browser && npm ci && node --test chat.test.mjs
//
// The server is $SC_BOILERPLATE_CMD, default <repo>/target/debug/socketcluster (build it first), started with
// `--port 0 --workers 1 --brokers 1` (the boilerplate's default cluster). Two pages (alice and bob) join; the last
// messages show on join, "Here" lists both login names, and a page that drops its connection while the other one
// talks shows every message exactly once after it reconnects.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { TIMEOUT, HERE, startServer, launchBrowser, newCheckedPage } from './harness.mjs';

const BOILERPLATE = process.env.SC_BOILERPLATE_CMD || resolve(HERE, '..', '..', 'target', 'debug', 'socketcluster');

let server;
let browser;

before(async () => {
  if (!process.env.SC_BOILERPLATE_CMD && !existsSync(BOILERPLATE)) {
    throw new Error(`${BOILERPLATE} does not exist: build it with \`cargo build -p socketcluster\``);
  }
  server = await startServer(BOILERPLATE, '--workers 1 --brokers 1 --host 127.0.0.1');
  browser = await launchBrowser();
});

after(async () => {
  if (browser) await browser.close();
  if (server) await server.stop();
});

async function join(name) {
  const { page, problems } = await newCheckedPage(browser.context);
  await page.goto(`http://127.0.0.1:${server.port}/`);
  await page.waitForFunction(() => document.getElementById('status')?.textContent.trim() === 'connected');
  await page.fill('#name', name);
  await page.click('#join button');
  await page.waitForFunction(() => !document.getElementById('room').hidden);
  await page.waitForFunction(() => window.chat.room()?.state === 'subscribed');
  return { page, problems };
}

async function say(page, text) {
  const before = await page.locator('#messages li').count();
  await page.fill('#text', text);
  await page.click('#say button');
  await page.waitForFunction((n) => document.querySelectorAll('#messages li').length > n, before);
}

const messages = async (page) => (await page.locator('#messages li').allTextContents()).map((t) => t.trim());
const people = async (page) => (await page.locator('#people li').allTextContents()).map((t) => t.trim());

test('chat: history on join, who is here, and no gap across a reconnect', { timeout: 8 * TIMEOUT }, async () => {
  const bob = await join('bob');
  const alice = { page: null, problems: [] };
  try {
    for (const text of ['one', 'two', 'three']) await say(bob.page, text);

    Object.assign(alice, await join('alice'));
    // The last messages arrive on join, oldest first.
    await alice.page.waitForFunction(() => document.querySelectorAll('#messages li').length >= 3);
    assert.deepEqual(await messages(alice.page), ['bob:one', 'bob:two', 'bob:three']);
    // Both see both names.
    for (const page of [alice.page, bob.page]) {
      await page.waitForFunction(() => document.getElementById('count').textContent === '2');
      assert.deepEqual(await people(page), ['alice', 'bob']);
    }

    // Alice's page loses its connection; bob talks meanwhile; alice reconnects and recovers.
    await alice.page.evaluate(() => window.chat.socket.disconnect());
    await bob.page.waitForFunction(() => document.getElementById('count').textContent === '1');
    for (const text of ['four', 'five']) await say(bob.page, text);
    await alice.page.evaluate(() => window.chat.socket.connect());
    await alice.page.waitForFunction(() => document.querySelectorAll('#messages li').length >= 5);
    await say(alice.page, 'back');
    await bob.page.waitForFunction(() => document.querySelectorAll('#messages li').length >= 6);
    await alice.page.waitForTimeout(200); // a duplicate (a bug) would show up by now
    const expected = ['bob:one', 'bob:two', 'bob:three', 'bob:four', 'bob:five', 'alice:back'];
    assert.deepEqual(await messages(alice.page), expected, 'every message once, in order');
    assert.deepEqual(await messages(bob.page), expected);
    assert.equal(await alice.page.locator('#notice').textContent(), '', 'nothing was missed');
    for (const page of [alice.page, bob.page]) {
      await page.waitForFunction(() => document.getElementById('count').textContent === '2');
      assert.deepEqual(await people(page), ['alice', 'bob']);
    }
    assert.deepEqual([...alice.problems, ...bob.problems], [], `server output:\n${server.output()}`);
  } finally {
    for (const { page } of [alice, bob]) if (page) await page.close().catch(() => {});
  }
});
