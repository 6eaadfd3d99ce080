// Browser test of TLS (https:// and wss://) against the lanes examples, in headless Chromium:
//
//   node tests/browser/wss.mjs --spki BASE64 https://127.0.0.1:PORT   (examples/chat with TLS)
//   node tests/browser/wss.mjs --spki BASE64 wss://127.0.0.1:PORT     (examples/echo with TLS)
//
// The server's certificate is made at test time (tests/tls/make_certs.sh) and trusted through
// Chromium's --ignore-certificate-errors-spki-list=BASE64 (the base64 SHA-256 of the leaf's
// SubjectPublicKeyInfo), not by ignoring certificate errors: any other certificate still fails.
// (scripts/browser_test.sh makes the certificate, starts the servers and runs both.)
//
// https:// (chat), each wait at most 10 s, the whole test at most 40 s:
//  - a browser without the flag cannot load the page (a certificate error): the trust comes
//    from the flag alone;
//  - alice and bob (a browser each, with the flag) load the page over TLS (the response's
//    security details are logged), join room tls-<random>, and both show #status "connected"
//    over a wss:// socket (the page picks wss: from location.protocol); alice sees
//    "* bob joined";
//  - alice's line reaches bob and herself, bob's reply reaches alice and himself, exactly.
// wss:// (echo), from a blank page this script serves on http://127.0.0.1:
//  - the socket opens; a text message (non-ASCII) and a 64 KiB binary message (pseudo-random
//    bytes) come back identical; a close with 1000 completes cleanly.
// Exit status: 0 when all pass, 1 on the first failure, 2 for a wrong command line.

import { randomBytes } from 'node:crypto';
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
const TOTAL_MS = 40000;

/** Chromium's flag that trusts a certificate whose public key hashes to `spki`. */
function trustFlag(spki) {
  return [`--ignore-certificate-errors-spki-list=${spki}`];
}

/** What a page shows: #status and the chat lines, for failure reports. */
async function describe(page, who) {
  try {
    const state = await bounded(
      page.evaluate(() => ({
        url: location.href,
        status: document.querySelector('#status')?.textContent ?? '(no #status)',
        items: [...document.querySelectorAll('#messages li')].map(
          (li) => `[${li.className}] ${li.textContent}`,
        ),
      })),
      2000,
      'reading the page',
    );
    const items = JSON.stringify(state.items);
    return `  ${who} (${state.url}): #status "${state.status}", #messages: ${items}`;
  } catch (e) {
    return `  ${who}: page unreadable (${e.message.split('\n')[0]})`;
  }
}

/** Waits until `predicate(arg)` holds in `who`'s page, or fails with what the pages show. */
async function waitIn(pages, who, what, predicate, arg) {
  try {
    await pages[who].waitForFunction(predicate, arg, { timeout: WAIT_MS, polling: 50 });
  } catch (e) {
    const lines = [`${who}: ${what} not within ${WAIT_MS / 1000} s (${e.message.split('\n')[0]})`];
    for (const [name, page] of Object.entries(pages)) {
      lines.push(await describe(page, name), ...page.errors, ...page.consoleErrors);
    }
    fail(lines.join('\n'));
  }
}

function waitLine(pages, who, text, cls) {
  return waitIn(
    pages,
    who,
    `the line ${JSON.stringify(text)} (class "${cls}")`,
    ([want, wantClass]) =>
      [...document.querySelectorAll('#messages li')].some(
        (li) => li.textContent === want && li.classList.contains(wantClass),
      ),
    [text, cls],
  );
}

async function chat(base, spki) {
  // Without the flag the certificate (from a CA Chromium does not know) must be refused.
  const untrusting = await watchedPage(await launchBrowser('untrusting'), 'untrusting');
  let refused = null;
  try {
    await untrusting.goto(`${base}/`, { timeout: WAIT_MS });
  } catch (e) {
    refused = e.message.split('\n')[0];
  }
  if (!refused || !/ERR_CERT/.test(refused)) {
    fail(
      `a browser without --ignore-certificate-errors-spki-list loaded ${base}/ ` +
        `(${refused ?? 'no error'}): expected a certificate error`,
    );
  }
  log(`without the flag: refused (${refused.replace(/^.*?(net::ERR_\w+).*$/, '$1')})`);
  await untrusting.context().close();

  const room = `tls-${randomBytes(4).toString('hex')}`;
  const users = ['alice', 'bob'];
  const browsers = await Promise.all(
    users.map((who) => launchBrowser(who, { args: trustFlag(spki) })),
  );
  const pages = {};
  const sockets = {};
  for (const [i, who] of users.entries()) {
    pages[who] = await watchedPage(browsers[i], who);
    sockets[who] = [];
    pages[who].on('websocket', (ws) => sockets[who].push(ws.url()));
  }

  for (const who of users) {
    const page = pages[who];
    const response = await page.goto(`${base}/`, { timeout: WAIT_MS });
    if (!response || response.status() !== 200) {
      fail(`${who}: GET ${base}/ answered ${response ? response.status() : 'nothing'}`);
    }
    const tls = await response.securityDetails();
    if (!tls || !tls.protocol) fail(`${who}: ${base}/ was not loaded over TLS`);
    if (who === 'alice') {
      log(
        `GET ${base}/ : 200 over ${tls.protocol}, certificate "${tls.subjectName}" ` +
          `from "${tls.issuer}"`,
      );
    }
    await page.fill('#name', who, { timeout: WAIT_MS });
    await page.fill('#room', room, { timeout: WAIT_MS });
    await page.click('#join', { timeout: WAIT_MS });
    await waitIn(
      pages,
      who,
      '#status "connected"',
      () => document.querySelector('#status')?.textContent === 'connected',
    );
    const url = sockets[who].at(-1) ?? '(none seen)';
    if (!url.startsWith('wss://')) fail(`${who}: the page's WebSocket is ${url}, expected wss://`);
    log(`${who} joined ${room} over ${url.split('?')[0]}: connected`);
  }
  await waitLine(pages, 'alice', '* bob joined', 'notice');

  const fromAlice = `hello over TLS from alice, ünïcödé ${room}`;
  await pages.alice.fill('#text', fromAlice, { timeout: WAIT_MS });
  await pages.alice.press('#text', 'Enter', { timeout: WAIT_MS });
  await waitLine(pages, 'bob', `alice: ${fromAlice}`, 'message');
  await waitLine(pages, 'alice', `alice: ${fromAlice}`, 'message');
  log('alice -> bob: relayed');

  const fromBob = `bob here, also over TLS ${room}`;
  await pages.bob.fill('#text', fromBob, { timeout: WAIT_MS });
  await pages.bob.click('#send', { timeout: WAIT_MS });
  await waitLine(pages, 'alice', `bob: ${fromBob}`, 'message');
  await waitLine(pages, 'bob', `bob: ${fromBob}`, 'message');
  log('bob -> alice: relayed');

  const expected = [`alice: ${fromAlice}`, `bob: ${fromBob}`];
  for (const who of users) {
    const lines = await pages[who].evaluate(() =>
      [...document.querySelectorAll('#messages li.message')].map((li) => li.textContent),
    );
    if (JSON.stringify(lines) !== JSON.stringify(expected)) {
      fail(
        `${who}: the chat lines are ${JSON.stringify(lines)}, ` +
          `expected ${JSON.stringify(expected)}`,
      );
    }
  }
  const errors = Object.values(pages).flatMap((p) => p.errors);
  if (errors.length) fail(`script errors in the pages:\n  ${errors.join('\n  ')}`);
}

/** In the page: opens `url`, echoes a text and a binary message, closes; returns a report. */
async function echoInPage({ url, waitMs }) {
  const ws = new WebSocket(url);
  ws.binaryType = 'arraybuffer';
  const inbox = [];
  const waiters = [];
  let closed = null;
  const timeout = (what) =>
    new Promise((_, reject) =>
      setTimeout(() => reject(new Error(`${what}: nothing within ${waitMs / 1000} s`)), waitMs),
    );
  ws.onmessage = (e) => (waiters.length ? waiters.shift()(e.data) : inbox.push(e.data));
  const closeEvent = new Promise((resolve) => {
    ws.onclose = (e) => {
      closed = { code: e.code, reason: e.reason, wasClean: e.wasClean };
      resolve(closed);
    };
  });
  const next = (what) =>
    Promise.race([
      inbox.length ? Promise.resolve(inbox.shift()) : new Promise((r) => waiters.push(r)),
      closeEvent.then((c) => {
        throw new Error(`${what}: the socket closed (code ${c.code}, clean ${c.wasClean})`);
      }),
      timeout(what),
    ]);
  try {
    await Promise.race([
      new Promise((resolve) => (ws.onopen = resolve)),
      closeEvent.then((c) => {
        throw new Error(`closed before opening: code ${c.code}`);
      }),
      timeout('opening'),
    ]);
    const text = `echo over wss://: ünïcödé 😀 ${'x'.repeat(1000)}`;
    ws.send(text);
    const textBack = await next('text');
    if (textBack !== text) {
      return { error: `text: sent ${text.length} units, got ${String(textBack).length}` };
    }
    const bytes = new Uint8Array(65536);
    let x = 0x2545f491;
    for (let i = 0; i < bytes.length; i++) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      bytes[i] = x & 0xff;
    }
    ws.send(bytes);
    const back = await next('binary');
    if (!(back instanceof ArrayBuffer)) return { error: `binary: got ${typeof back}` };
    const got = new Uint8Array(back);
    let i = 0;
    while (i < bytes.length && got[i] === bytes[i]) i++;
    if (i !== bytes.length || got.length !== bytes.length) {
      return {
        error: `binary: sent ${bytes.length} bytes, got ${got.length}; first difference at ${i}`,
      };
    }
    ws.close(1000, 'done');
    const c = await Promise.race([closeEvent, timeout('closing')]);
    return { textLen: text.length, binaryLen: bytes.length, close: c };
  } catch (e) {
    return { error: e.message };
  }
}

async function echo(url, spki) {
  const [blank, context] = await Promise.all([
    blankPageServer(),
    launchBrowser('echo', { args: trustFlag(spki) }),
  ]);
  const page = await watchedPage(context, 'echo');
  await page.goto(blank, { timeout: WAIT_MS });
  const result = await bounded(
    page.evaluate(echoInPage, { url, waitMs: WAIT_MS }),
    3 * WAIT_MS + 2000,
    `echo over ${url}`,
  );
  if (result.error) fail([`${url}: ${result.error}`, ...page.consoleErrors].join('\n  '));
  log(`${url}: a text message (${result.textLen} UTF-16 units) echoed intact`);
  log(`${url}: a ${result.binaryLen} B binary message echoed intact`);
  const c = result.close;
  if (c.code !== 1000 || !c.wasClean) {
    fail(`close(1000): code ${c.code}, reason "${c.reason}", clean ${c.wasClean}`);
  }
  log('closed cleanly with 1000');
  if (page.errors.length) fail(`script errors in the page:\n  ${page.errors.join('\n  ')}`);
}

async function main() {
  const [flag, spki, url] = process.argv.slice(2);
  if (
    process.argv.length !== 5 ||
    flag !== '--spki' ||
    !/^[A-Za-z0-9+/]{43}=$/.test(spki) ||
    !/^(https|wss):\/\/[^/]+\/?$/.test(url)
  ) {
    throw new UsageError(
      'usage: node wss.mjs --spki BASE64-SHA256 https://HOST:PORT | wss://HOST:PORT ' +
        `(got ${JSON.stringify(process.argv.slice(2))})`,
    );
  }
  if (url.startsWith('https:')) await chat(url.replace(/\/$/, ''), spki);
  else await echo(url, spki);
}

await runTest('wss.mjs', TOTAL_MS, main);
