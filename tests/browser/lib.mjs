// What the browser tests share: launching Debian's Chromium through playwright-core (no browser is
// ever downloaded), time limits, failures with a clear message, and cleanup that always runs.

import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

/** The browser: Debian's package `chromium` (LANES_CHROMIUM overrides the path). */
export const CHROMIUM = process.env.LANES_CHROMIUM || '/usr/bin/chromium';

/**
 * Chromium's flags. The network here is closed: without the background-networking flags Chromium
 * keeps trying to reach Google's services. `--user-data-dir` is not among them: each browser gets
 * a fresh temporary profile from launchBrowser.
 */
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** A failed check: its message is the whole report (no stack trace is printed). */
export class Failure extends Error {}

/** Throws a Failure with this message. */
export function fail(message) {
  throw new Failure(message);
}

const started = Date.now();
let scriptName = 'browser test';

/** Prints one progress line with the time since the start. */
export function log(message) {
  console.log(`${scriptName}: [${((Date.now() - started) / 1000).toFixed(1)} s] ${message}`);
}

const cleanups = [];

/** Runs the cleanups (last registered first), each at most `ms` milliseconds; never throws. */
async function cleanUp(ms = 5000) {
  while (cleanups.length > 0) {
    const cleanup = cleanups.pop();
    try {
      await bounded(cleanup(), ms, 'cleanup');
    } catch (e) {
      console.error(`${scriptName}: cleanup: ${e.message}`);
    }
  }
}

/** Resolves like `promise`, or rejects with a Failure after `ms` milliseconds. */
export function bounded(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Failure(`${what}: no result after ${ms / 1000} s`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Runs `main` as the whole test: exit status 0 when it resolves, 1 when it throws (a Failure's
 * message, or any other error with its stack) or takes more than `totalMs`, 2 for a usage error,
 * 128 + the signal's number on SIGINT, SIGTERM or SIGHUP. The cleanups (browsers, temporary
 * folders, servers) run in every case.
 */
export async function runTest(name, totalMs, main) {
  scriptName = name;
  let interrupted = false;
  for (const [signal, status] of [
    ['SIGINT', 130],
    ['SIGTERM', 143],
    ['SIGHUP', 129],
  ]) {
    process.on(signal, () => {
      if (interrupted) return;
      interrupted = true;
      console.error(`${name}: interrupted by ${signal}`);
      // Exiting also kills any browser left (playwright's exit handler).
      cleanUp(3000).finally(() => process.exit(status));
    });
  }
  let timer;
  const deadline = new Promise((_, reject) => {
    timer = setTimeout(
      () => reject(new Failure(`the whole test took more than ${totalMs / 1000} s`)),
      totalMs,
    );
  });
  let status = 0;
  try {
    await Promise.race([main(), deadline]);
  } catch (e) {
    status = e instanceof UsageError ? 2 : 1;
    const message = e instanceof Failure || e instanceof UsageError ? e.message : e.stack || e;
    if (!interrupted) console.error(`${name}: FAILED: ${message}`);
  } finally {
    clearTimeout(timer);
  }
  // After a signal, its handler cleans up and exits.
  if (interrupted) return;
  await cleanUp();
  if (status === 0) log('ok');
  // Exit at once: a page or socket that is still open must not keep the process alive.
  process.exit(status);
}

/** A wrong command line: exit status 2. */
export class UsageError extends Error {}

/**
 * Starts a Chromium of its own with a fresh temporary profile (removed on cleanup) and returns its
 * one browser context (playwright's persistent context). `who` names it in messages; `args` are
 * flags added to CHROMIUM_ARGS (e.g. --ignore-certificate-errors-spki-list=... for wss.mjs).
 */
export async function launchBrowser(who, { args = [] } = {}) {
  const profile = await mkdtemp(join(tmpdir(), `lanes-chromium-${who}-`));
  cleanups.push(() => rm(profile, { recursive: true, force: true }));
  let context;
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: [...CHROMIUM_ARGS, ...args],
      timeout: 15000,
      // runTest handles the signals: it closes the browsers and removes their profiles.
      handleSIGINT: false,
      handleSIGTERM: false,
      handleSIGHUP: false,
    });
  } catch (e) {
    fail(`${who}: cannot start ${CHROMIUM}: ${e.message}`);
  }
  cleanups.push(() => context.close());
  return context;
}

/**
 * The first page of a browser context, with uncaught page errors collected in `errors` and the
 * console's errors in `consoleErrors` (for the failure report).
 */
export async function watchedPage(context, who) {
  const page = context.pages()[0] || (await context.newPage());
  page.errors = [];
  page.consoleErrors = [];
  page.on('pageerror', (e) => page.errors.push(`${who}: uncaught ${e.name}: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') page.consoleErrors.push(`${who}: console: ${m.text()}`);
  });
  return page;
}

/**
 * Serves an empty HTML page on 127.0.0.1 (closed on cleanup) and returns its URL. A page loaded
 * from loopback may open WebSockets to loopback and private addresses; one at about:blank may not
 * (Chromium's Local Network Access checks: net::ERR_BLOCKED_BY_LOCAL_NETWORK_ACCESS_CHECKS).
 */
export async function blankPageServer() {
  const server = createServer((req, res) => {
    res.writeHead(req.url === '/' ? 200 : 404, { 'content-type': 'text/html; charset=utf-8' });
    res.end('<!doctype html><title>blank</title><link rel="icon" href="data:,">');
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  cleanups.push(
    () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  return `http://127.0.0.1:${server.address().port}/`;
}
