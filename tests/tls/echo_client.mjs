// wss:// echo check with the Node `ws` client, certificate verification on:
//
//   node tests/tls/echo_client.mjs wss://127.0.0.1:PORT CA.pem
//
// Connects with `ca` set to the test CA (rejectUnauthorized stays on: the chain and the host
// name 127.0.0.1 are checked), offering permessage-deflate (ws's default, so compressed frames
// cross TLS), and checks that a text and a binary message of 0 B, 125 B, 64 KiB and 1 MiB each
// come back byte for byte, then a clean close. Each wait at most 10 s, the whole run at most
// 60 s. Prints a PASS or FAIL line per check; exit status 0 when all pass, 1 otherwise, 2 for a
// wrong command line.

import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import WebSocket from 'ws';

const WAIT_MS = 10000;
const TOTAL_MS = 60000;
const SIZES = [0, 125, 64 << 10, 1 << 20];

let failures = 0;
function report(ok, what) {
  console.log(`${ok ? 'PASS' : 'FAIL'}: node ws: ${what}`);
  if (!ok) failures++;
}

/** Resolves with the next message ({ data, isBinary }) or rejects after WAIT_MS or on close. */
function nextMessage(ws) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`no message within ${WAIT_MS / 1000} s`));
    }, WAIT_MS);
    const onMessage = (data, isBinary) => {
      cleanup();
      resolve({ data, isBinary });
    };
    const onClose = (code) => {
      cleanup();
      reject(new Error(`the connection closed (code ${code})`));
    };
    const cleanup = () => {
      clearTimeout(timer);
      ws.off('message', onMessage);
      ws.off('close', onClose);
    };
    ws.on('message', onMessage);
    ws.on('close', onClose);
  });
}

/** `size` bytes of UTF-8 text: ASCII letters and two-byte letters. */
function textOf(size) {
  const bytes = randomBytes(size);
  let s = '';
  let left = size;
  for (let i = 0; left > 0; i++) {
    if (left >= 2 && bytes[i] < 64) {
      s += String.fromCharCode(0xe0 + (bytes[i] % 26));
      left -= 2;
    } else {
      s += String.fromCharCode(0x61 + (bytes[i] % 26));
      left -= 1;
    }
  }
  return s;
}

function firstDifference(a, b) {
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  return i;
}

async function main() {
  const [url, caFile] = process.argv.slice(2);
  if (process.argv.length !== 4 || !url.startsWith('wss://')) {
    console.error('usage: node echo_client.mjs wss://HOST:PORT CA.pem');
    process.exit(2);
  }
  const ws = new WebSocket(url, {
    ca: readFileSync(caFile),
    handshakeTimeout: WAIT_MS,
    maxPayload: 4 << 20,
  });
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  const socket = ws._socket;
  report(
    true,
    `connected to ${url} (${socket.getProtocol()}, ${socket.getCipher().name}, ` +
      `certificate verified: ${socket.authorized}, extensions "${ws.extensions}")`,
  );
  report(socket.authorized === true, 'the server certificate is authorized against the test CA');
  report(ws.extensions.startsWith('permessage-deflate'), 'permessage-deflate negotiated');

  for (const size of SIZES) {
    const text = textOf(size);
    const binary = randomBytes(size);
    for (const [kind, message] of [
      ['text', text],
      ['binary', binary],
    ]) {
      const start = performance.now();
      const answer = nextMessage(ws);
      ws.send(message, { binary: kind === 'binary' });
      const { data, isBinary } = await answer;
      const ms = (performance.now() - start).toFixed(1);
      const sent = kind === 'text' ? Buffer.from(message, 'utf8') : message;
      if (isBinary !== (kind === 'binary')) {
        report(false, `${kind} ${size} B: got a ${isBinary ? 'binary' : 'text'} message back`);
      } else if (Buffer.compare(data, sent) !== 0) {
        report(
          false,
          `${kind} ${size} B: got ${data.length} B back, first difference at byte ` +
            `${firstDifference(data, sent)}`,
        );
      } else {
        report(true, `${kind} ${size} B echoed intact (${ms} ms)`);
      }
    }
  }

  const closed = new Promise((resolve) => ws.once('close', (code) => resolve(code)));
  ws.close(1000, 'done');
  const code = await Promise.race([
    closed,
    new Promise((resolve) => setTimeout(() => resolve('none'), WAIT_MS)),
  ]);
  report(code === 1000, `closed with code ${code}`);
}

const deadline = setTimeout(() => {
  report(false, `the whole run took more than ${TOTAL_MS / 1000} s`);
  process.exit(1);
}, TOTAL_MS);
try {
  await main();
} catch (e) {
  report(false, `${e.message}`);
}
clearTimeout(deadline);
process.exit(failures ? 1 : 0);
