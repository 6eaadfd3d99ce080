// End-to-end test of examples/chat in headless Chromium: alice and bob chat in a room, carol
// in another, each in a browser of their own.
//
//   node tests/browser/chat.mjs http://127.0.0.1:PORT
//
// (scripts/browser_test.sh builds and starts the chat server, then runs this.) Checks, each wait
// at most 10 s and the whole test at most 30 s:
//  - a plain GET / answers 200 with a text/html page;
//  - alice (one browser) and bob (another) load that page, join room e2e-<random> and both show
//    #status "connected"; alice sees "* bob joined";
//  - carol (a third browser) joins another room, "e2e-<random> other/ü" as "carol & ü" (so the
//    server must percent-decode the query: the page encodes both with encodeURIComponent);
//  - alice sends a line with Enter: both see "alice: <line>"; bob replies with the Send button:
//    both see "bob: <line>"; alice sends HTML-like, quoted, non-ASCII text: bob sees it verbatim;
//    carol says a line in her room and sees it under her decoded name; alice and bob see each of
//    their room's lines once, in the order sent, and none of carol's; carol sees none of theirs;
//  - bob leaves (his page navigates away): alice sees "* bob left";
//  - no page has an uncaught script error.
// Exit status: 0 when all pass, 1 on the first failure (with what was expected and what the
// pages showed), 2 for a wrong command line.

import { randomBytes } from 'node:crypto';
import { bounded, fail, launchBrowser, log, runTest, UsageError, watchedPage } from './lib.mjs';

const WAIT_MS = 10000;
const TOTAL_MS = 30000;

/** The messages' list of a page as "[class] text" lines, for failure reports. */
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
    const items = state.items.length ? state.items.map((i) => `\n    ${i}`).join('') : ' (none)';
    return `  ${who} (${state.url}): #status "${state.status}", #messages:${items}`;
  } catch (e) {
    return `  ${who}: page unreadable (${e.message.split('\n')[0]})`;
  }
}

/** Fails with `message`, followed by what every page shows and any script errors. */
async function failWithPages(message, pages) {
  const lines = [message];
  for (const [who, page] of Object.entries(pages)) {
    lines.push(await describe(page, who));
    lines.push(...page.errors.map((e) => `  ${e}`), ...page.consoleErrors.map((e) => `  ${e}`));
  }
  fail(lines.join('\n'));
}

/** Waits until the page's #status reads `expected`. */
async function waitStatus(pages, who, expected) {
  const page = pages[who];
  try {
    await page.waitForFunction(
      (want) => document.querySelector('#status')?.textContent === want,
      expected,
      { timeout: WAIT_MS, polling: 50 },
    );
  } catch (e) {
    await failWithPages(
      `${who}: #status is not "${expected}" after ${WAIT_MS / 1000} s ` +
        `(${e.message.split('\n')[0]})`,
      pages,
    );
  }
}

/** Waits until `who`'s #messages has an <li> of class `cls` whose text is exactly `text`. */
async function waitLine(pages, who, text, cls) {
  const page = pages[who];
  try {
    await page.waitForFunction(
      ([want, wantClass]) =>
        [...document.querySelectorAll('#messages li')].some(
          (li) => li.textContent === want && li.classList.contains(wantClass),
        ),
      [text, cls],
      { timeout: WAIT_MS, polling: 50 },
    );
  } catch (e) {
    await failWithPages(
      `${who} did not get the line ${JSON.stringify(text)} (class "${cls}") within ` +
        `${WAIT_MS / 1000} s (${e.message.split('\n')[0]})`,
      pages,
    );
  }
}

/** The texts of `who`'s <li class="message"> items, in page order. */
function messageLines(page) {
  return page.evaluate(() =>
    [...document.querySelectorAll('#messages li.message')].map((li) => li.textContent),
  );
}

/** Opens the chat page, checks its controls, and joins `room` as `name`. */
async function join(pages, who, base, name, room) {
  const page = pages[who];
  const response = await page.goto(`${base}/`, { timeout: WAIT_MS });
  if (!response || response.status() !== 200) {
    fail(
      `${who}: GET ${base}/ in the browser answered ${response ? response.status() : 'nothing'}`,
    );
  }
  const missing = await page.evaluate(() =>
    ['#name', '#room', '#join', '#status', '#text', '#send', '#messages'].filter(
      (sel) => !document.querySelector(sel),
    ),
  );
  if (missing.length) fail(`${who}: the chat page lacks ${missing.join(', ')}`);
  await page.fill('#name', name, { timeout: WAIT_MS });
  await page.fill('#room', room, { timeout: WAIT_MS });
  await page.click('#join', { timeout: WAIT_MS });
  await waitStatus(pages, who, 'connected');
  log(`${who} joined ${room}: connected`);
}

/** Types `text` into who's #text and sends it with Enter or the Send button; #text must empty. */
async function say(pages, who, text, how) {
  const page = pages[who];
  await page.fill('#text', text, { timeout: WAIT_MS });
  if (how === 'enter') {
    await page.press('#text', 'Enter', { timeout: WAIT_MS });
  } else {
    await page.click('#send', { timeout: WAIT_MS });
  }
  const left = await page.inputValue('#text', { timeout: WAIT_MS });
  if (left !== '') fail(`${who}: #text still holds ${JSON.stringify(left)} after sending`);
}

async function checkPlainGet(base) {
  let response;
  try {
    response = await fetch(`${base}/`, { signal: AbortSignal.timeout(WAIT_MS) });
  } catch (e) {
    const why =
      e.name === 'TimeoutError'
        ? `no response within ${WAIT_MS / 1000} s`
        : e.cause?.message || e.message;
    fail(`GET ${base}/ failed: ${why}`);
  }
  const type = response.headers.get('content-type') || '';
  const body = await bounded(response.text(), WAIT_MS, `reading the body of GET ${base}/`);
  if (response.status !== 200) fail(`GET ${base}/ answered ${response.status}, expected 200`);
  if (!/^text\/html\s*(;|$)/i.test(type)) {
    fail(`GET ${base}/ has content-type ${JSON.stringify(type)}, expected text/html`);
  }
  if (!body.includes('id="messages"')) {
    fail(`GET ${base}/ is not the chat page (no id="messages" in its ${body.length} bytes)`);
  }
  log(`GET / : 200, ${type}, ${body.length} bytes`);
}

async function main() {
  const arg = process.argv[2];
  if (!arg || process.argv.length > 3 || !/^https?:\/\/[^/]+\/?$/.test(arg)) {
    throw new UsageError(
      "usage: node chat.mjs http://HOST:PORT  (the chat server's base URL; got " +
        `${JSON.stringify(process.argv.slice(2))})`,
    );
  }
  const base = arg.replace(/\/$/, '');
  const r = randomBytes(4).toString('hex');
  const room = `e2e-${r}`;

  await checkPlainGet(base);

  // A browser each: a second page of one browser would be a background tab, and slow.
  const users = ['alice', 'bob', 'carol'];
  const browsers = await Promise.all(users.map((who) => launchBrowser(who)));
  const pages = {};
  for (const [i, who] of users.entries()) pages[who] = await watchedPage(browsers[i], who);
  log(`3 x chromium ${browsers[0].browser()?.version() ?? ''} started`);

  await join(pages, 'alice', base, 'alice', room);
  await join(pages, 'bob', base, 'bob', room);
  await waitLine(pages, 'alice', '* bob joined', 'notice');
  const carolName = 'carol & ü';
  const carolRoom = `${room} other/ü`;
  await join(pages, 'carol', base, carolName, carolRoom);

  const fromAlice = `hello from alice ${r}`;
  await say(pages, 'alice', fromAlice, 'enter');
  await waitLine(pages, 'bob', `alice: ${fromAlice}`, 'message');
  await waitLine(pages, 'alice', `alice: ${fromAlice}`, 'message');
  log('alice -> bob: relayed');

  const fromCarol = `hello from carol ${r}`;
  await say(pages, 'carol', fromCarol, 'enter');
  await waitLine(pages, 'carol', `${carolName}: ${fromCarol}`, 'message');
  log(`carol in room ${JSON.stringify(carolRoom)}: got her own line, name decoded`);

  const fromBob = `hello alice, bob here ${r}`;
  await say(pages, 'bob', fromBob, 'button');
  await waitLine(pages, 'alice', `bob: ${fromBob}`, 'message');
  await waitLine(pages, 'bob', `bob: ${fromBob}`, 'message');
  log('bob -> alice: relayed');

  // Text the server must escape in its JSON and the page must not parse as HTML.
  const tricky = `<b>not bold</b> & "quoted" \\back\\slash\\ ünïcödé 😀 ${r}`;
  await say(pages, 'alice', tricky, 'button');
  await waitLine(pages, 'bob', `alice: ${tricky}`, 'message');
  await waitLine(pages, 'alice', `alice: ${tricky}`, 'message');
  if ((await pages.bob.locator('#messages b').count()) > 0) {
    fail('bob: a message was inserted as HTML (there is a <b> element in #messages)');
  }
  log('quotes, backslashes, HTML and non-ASCII text: relayed verbatim');

  const expected = [`alice: ${fromAlice}`, `bob: ${fromBob}`, `alice: ${tricky}`];
  for (const who of ['alice', 'bob']) {
    const lines = await messageLines(pages[who]);
    if (JSON.stringify(lines) !== JSON.stringify(expected)) {
      await failWithPages(
        `${who}: the chat lines are ${JSON.stringify(lines)}, expected each message once, in ` +
          `the order sent: ${JSON.stringify(expected)}`,
        pages,
      );
    }
  }
  const carolLines = await messageLines(pages.carol);
  const carolExpected = [`${carolName}: ${fromCarol}`];
  if (JSON.stringify(carolLines) !== JSON.stringify(carolExpected)) {
    await failWithPages(
      `carol (room ${JSON.stringify(carolRoom)}): the chat lines are ` +
        `${JSON.stringify(carolLines)}, ` +
        `expected only her own: ${JSON.stringify(carolExpected)}`,
      pages,
    );
  }
  log('each line once and in order; no line crossed between the two rooms');

  // Bob leaves: navigating away closes his socket.
  await pages.bob.goto('about:blank', { timeout: WAIT_MS });
  await waitLine(pages, 'alice', '* bob left', 'notice');
  log('bob left: alice saw the notice');

  const errors = Object.values(pages).flatMap((p) => p.errors);
  if (errors.length) fail(`script errors in the pages:\n  ${errors.join('\n  ')}`);
}

await runTest('chat.mjs', TOTAL_MS, main);
