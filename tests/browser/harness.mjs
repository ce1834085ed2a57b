// Shared helpers of the browser tests: start a server command, launch Debian's Chromium through playwright-core,
// bound every wait. Nothing here downloads anything.

import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const HERE = dirname(fileURLToPath(import.meta.url));
export const TIMEOUT = 15_000;
export const REFERENCE_SERVER_CMD = 'node ../../scripts/node-reference/server.js';
export const SERVER_CMD = process.env.SC_SERVER_CMD || REFERENCE_SERVER_CMD;
export const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';

/** Race a promise against a timeout so that nothing in these tests can hang. */
export function within(ms, promise, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms); })
  ]).finally(() => clearTimeout(timer));
}

/**
 * Start `${cmd} --port 0 ${extraArgs}` through the shell (cwd = tests/browser), in its own process group, and
 * wait for its `LISTENING <port>` line. Returns {port, output(), stop()}; stop() kills the whole group.
 */
export function startServer(cmd = SERVER_CMD, extraArgs = '') {
  const child = spawn(`${cmd} --port 0 ${extraArgs}`.trim(), {
    cwd: HERE, shell: true, detached: true, stdio: ['ignore', 'pipe', 'pipe']
  });
  let output = '';
  const handle = {
    port: null,
    output: () => output,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      try { process.kill(-child.pid, 'SIGTERM'); } catch { /* already gone */ }
      const timer = setTimeout(() => { try { process.kill(-child.pid, 'SIGKILL'); } catch { /* gone */ } }, 3000);
      await exited;
      clearTimeout(timer);
    }
  };
  const ready = new Promise((resolve, reject) => {
    let stdout = '';
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stdout.on('data', (chunk) => {
      stdout += chunk;
      output += chunk;
      const m = /^LISTENING (\d+)\s*$/m.exec(stdout);
      if (m) { handle.port = Number(m[1]); resolve(handle); }
    });
    child.stderr.on('data', (chunk) => { output += chunk; });
    child.on('error', reject);
    child.on('exit', (code, signal) => reject(new Error(`server exited early (code ${code}, signal ${signal}):\n${output}`)));
  });
  return within(TIMEOUT, ready, `server "${cmd}" printing LISTENING`).catch(async (err) => {
    await handle.stop();
    throw new Error(`${err.message}\n${output}`);
  });
}

/**
 * Launch Chromium headless with a fresh temporary profile. Playwright refuses `--user-data-dir` in
 * `chromium.launch({args})` and asks for launchPersistentContext(userDataDir, ...) instead, which starts the same
 * browser with that profile directory. Returns {context, close()}.
 */
export async function launchBrowser() {
  const userDataDir = mkdtempSync(join(tmpdir(), 'sc-browser-test-'));
  let context;
  try {
    context = await within(TIMEOUT, chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM,
      headless: true,
      timeout: TIMEOUT,
      args: [
        '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync'
      ]
    }), 'launch chromium');
  } catch (err) {
    rmSync(userDataDir, { recursive: true, force: true });
    throw err;
  }
  return {
    context,
    async close() {
      await within(TIMEOUT, context.close(), 'close chromium').catch(() => {});
      rmSync(userDataDir, { recursive: true, force: true });
    }
  };
}

/** A new page with bounded default timeouts that records page errors, console errors and HTTP errors. */
export async function newCheckedPage(context) {
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  page.setDefaultNavigationTimeout(TIMEOUT);
  const problems = [];
  page.on('pageerror', (err) => problems.push(`pageerror: ${err.message}`));
  page.on('console', (msg) => { if (msg.type() === 'error') problems.push(`console.error: ${msg.text()}`); });
  page.on('response', (res) => { if (res.status() >= 400) problems.push(`HTTP ${res.status()}: ${res.url()}`); });
  page.on('requestfailed', (req) => problems.push(`request failed: ${req.url()} ${req.failure()?.errorText}`));
  return { page, problems };
}
