// Browser test of permessage-deflate (RFC 7692) against an echo server, in headless Chromium:
//
//   node tests/browser/echo_deflate.mjs ws://127.0.0.1:PORT[/path]
//
// From a blank page served by this script on 127.0.0.1 (Chromium's Local Network Access checks
// keep a page at about:blank from connecting to loopback or private addresses:
// net::ERR_BLOCKED_BY_LOCAL_NETWORK_ACCESS_CHECKS), it opens a WebSocket to the URL and checks,
// each wait at most 10 s and the whole test at most 30 s:
//  - the handshake negotiated permessage-deflate (WebSocket.extensions);
//  - a 10 KiB repetitive JSON text message (with non-ASCII text) comes back identical;
//  - a 64 KiB binary message (half repetitive, half pseudo-random bytes) comes back identical;
//  - 50 small text messages sent back to back come back identical and in order (the compression
//    context carried from message to message);
//  - a close with code 1000 completes cleanly.
// Exit status: 0 when all pass, 1 on the first failure, 2 for a wrong command line.

import {
  blankPageServer,
  bounded,
  fail,
  launchBrowser,
  log,
  runTest,
  UsageError,
  watchedPage,
} from './lib.mjs';

const WAIT_MS = 10000;
const TOTAL_MS = 30000;

/** In the page: opens the socket and installs window.__echo (an inbox and next()). */
function openSocket({ url, waitMs }) {
  return new Promise((resolve) => {
    const state = { inbox: [], waiters: [], closed: null, error: false };
    let ws;
    try {
      ws = new WebSocket(url);
    } catch (e) {
      resolve({ error: `new WebSocket(${url}) threw ${e}` });
      return;
    }
    ws.binaryType = 'arraybuffer';
    state.ws = ws;
    window.__echo = state;
    const timer = setTimeout(() => resolve({ error: `not open after ${waitMs / 1000} s` }), waitMs);
    ws.onopen = () => {
      clearTimeout(timer);
      resolve({ extensions: ws.extensions, protocol: ws.protocol });
    };
    ws.onerror = () => {
      state.error = true;
    };
    ws.onmessage = (e) => {
      const waiter = state.waiters.shift();
      if (waiter) waiter.resolve(e.data);
      else state.inbox.push(e.data);
    };
    ws.onclose = (e) => {
      clearTimeout(timer);
      state.closed = { code: e.code, reason: e.reason, wasClean: e.wasClean };
      for (const waiter of state.waiters.splice(0)) waiter.reject(state.closed);
      resolve({
        error: `closed before opening: code ${e.code}${e.reason ? ` (${e.reason})` : ''}`,
      });
    };
    // The next message, or an Error after waitMs or when the socket closes.
    window.__next = (ms) =>
      new Promise((resolveNext, rejectNext) => {
        if (state.inbox.length) return resolveNext(state.inbox.shift());
        const closedError = (c) =>
          new Error(
            `the socket closed (code ${c.code}, reason "${c.reason}", clean ${c.wasClean})`,
          );
        if (state.closed) return rejectNext(closedError(state.closed));
        const waiter = {};
        const t = setTimeout(() => {
          state.waiters.splice(state.waiters.indexOf(waiter), 1);
          rejectNext(new Error(`no message within ${ms / 1000} s`));
        }, ms);
        waiter.resolve = (data) => {
          clearTimeout(t);
          resolveNext(data);
        };
        waiter.reject = (c) => {
          clearTimeout(t);
          rejectNext(closedError(c));
        };
        state.waiters.push(waiter);
      });
  });
}

/** In the page: sends 10 KiB of repetitive JSON, returns where the echo differs (or null). */
async function roundTripText({ waitMs }) {
  const items = [];
  let text = '';
  for (let i = 0; text.length < 10240; i++) {
    const greeting = 'hello, ünïcödé world 😀';
    items.push({ id: i, user: 'alice', room: 'lobby', text: greeting, ok: true });
    text = JSON.stringify(items);
  }
  window.__echo.ws.send(text);
  const back = await window.__next(waitMs);
  if (typeof back !== 'string') return `sent text, got ${Object.prototype.toString.call(back)}`;
  if (back === text) return null;
  let i = 0;
  while (i < text.length && back[i] === text[i]) i++;
  return `sent ${text.length} UTF-16 units, got ${back.length}; first difference at ${i}`;
}

/** In the page: sends 64 KiB of binary data, returns where the echo differs (or null). */
async function roundTripBinary({ waitMs }) {
  const bytes = new Uint8Array(65536);
  let x = 0x2545f491;
  for (let i = 0; i < bytes.length; i++) {
    if (i < bytes.length / 2) {
      bytes[i] = i % 251; // repetitive: compresses well
    } else {
      x ^= x << 13; // xorshift32: barely compresses
      x ^= x >>> 17;
      x ^= x << 5;
      bytes[i] = x & 0xff;
    }
  }
  window.__echo.ws.send(bytes);
  const back = await window.__next(waitMs);
  if (!(back instanceof ArrayBuffer)) {
    return `sent binary, got ${typeof back === 'string' ? 'text' : typeof back}`;
  }
  const got = new Uint8Array(back);
  let i = 0;
  while (i < bytes.length && got[i] === bytes[i]) i++;
  if (i === bytes.length && got.length === bytes.length) return null;
  return `sent ${bytes.length} bytes, got ${got.length}; first difference at byte ${i}`;
}

/** In the page: 50 small messages back to back; returns the first mismatch (or null). */
async function roundTripMany({ waitMs }) {
  const sent = [];
  for (let i = 0; i < 50; i++) {
    const m = `{"seq":${i},"text":"${'again '.repeat(i % 7)}"}`;
    sent.push(m);
    window.__echo.ws.send(m);
  }
  for (let i = 0; i < sent.length; i++) {
    const back = await window.__next(waitMs);
    if (back !== sent[i]) {
      return `message ${i}: sent ${JSON.stringify(sent[i])}, got ${JSON.stringify(back)}`;
    }
  }
  return null;
}

/** In the page: closes with 1000 and returns the close event's fields. */
function closeSocket({ waitMs }) {
  const state = window.__echo;
  return new Promise((resolve) => {
    if (state.closed) return resolve({ ...state.closed, before: true });
    const timer = setTimeout(() => resolve(null), waitMs);
    state.ws.addEventListener('close', (e) => {
      clearTimeout(timer);
      resolve({ code: e.code, reason: e.reason, wasClean: e.wasClean });
    });
    state.ws.close(1000, 'done');
  });
}

/** Runs `fn` in the page, at most WAIT_MS (plus a margin) long. */
function inPage(page, fn, what) {
  return bounded(page.evaluate(fn, { waitMs: WAIT_MS }), WAIT_MS + 2000, what).catch((e) =>
    fail(`${what}: ${e.message.split('\n')[0]}`),
  );
}

async function main() {
  const url = process.argv[2];
  if (!url || process.argv.length > 3 || !/^wss?:\/\/[^/]+/.test(url)) {
    throw new UsageError(
      'usage: node echo_deflate.mjs ws://HOST:PORT[/path]  (an echo server; got ' +
        `${JSON.stringify(process.argv.slice(2))})`,
    );
  }

  const [blank, context] = await Promise.all([blankPageServer(), launchBrowser('echo')]);
  const page = await watchedPage(context, 'echo');
  await page.goto(blank, { timeout: WAIT_MS });

  const opened = await bounded(
    page.evaluate(openSocket, { url, waitMs: WAIT_MS }),
    WAIT_MS + 2000,
    `opening ${url}`,
  );
  if (opened.error) {
    fail([`${url}: ${opened.error}`, ...page.consoleErrors].join('\n  '));
  }
  log(`open: extensions ${JSON.stringify(opened.extensions)}`);
  const extensions = opened.extensions.split(',').map((e) => e.split(';')[0].trim());
  if (!extensions.includes('permessage-deflate')) {
    fail(
      `permessage-deflate was not negotiated: the server's Sec-WebSocket-Extensions was ` +
        `${JSON.stringify(opened.extensions)} ` +
        '(Chromium offers "permessage-deflate; client_max_window_bits")',
    );
  }

  const text = await inPage(page, roundTripText, 'text round trip');
  if (text) fail(`10 KiB text message: ${text}`);
  log('10 KiB text message: echoed intact');

  const binary = await inPage(page, roundTripBinary, 'binary round trip');
  if (binary) fail(`64 KiB binary message: ${binary}`);
  log('64 KiB binary message: echoed intact');

  const many = await inPage(page, roundTripMany, '50 messages back to back');
  if (many) fail(`50 messages back to back: ${many}`);
  log('50 small messages: echoed intact and in order');

  const closed = await inPage(page, closeSocket, 'closing');
  if (!closed) fail(`close(1000): no close event within ${WAIT_MS / 1000} s`);
  if (closed.before || !closed.wasClean || closed.code !== 1000) {
    fail(
      `close(1000): ${closed.before ? 'the socket had already closed, ' : ''}` +
        `code ${closed.code}, ` +
        `reason "${closed.reason}", clean ${closed.wasClean}; expected a clean 1000`,
    );
  }
  log('closed cleanly with 1000');

  if (page.errors.length) fail(`script errors in the page:\n  ${page.errors.join('\n  ')}`);
}

await runTest('echo_deflate.mjs', TOTAL_MS, main);
