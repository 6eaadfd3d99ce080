// Third-party WebSocket servers for the outbound-connection tests (scripts/outbound_test.sh):
// Node `ws` on three ports.
//
//   node tests/outbound/peer_server.mjs CERT.pem KEY.pem
//
// Prints one line of JSON with the ports once every server listens, then serves until killed:
//   ws      permessage-deflate with context takeover (threshold 0: every message compressed)
//   ws_nct  permessage-deflate without context takeover either way
//   wss     over TLS (CERT/KEY), deflate as `ws`
// Paths: /echo echoes every message; /proto echoes, choosing the subprotocol "v1" when offered;
// /headers sends the request's Authorization value, then echoes; /forbidden is refused with 403.

import { readFileSync } from 'node:fs';
import { createServer as createHttps } from 'node:https';
import { createServer as createHttp } from 'node:http';
import { createRequire } from 'node:module';

// The ws package tests/tls pins and installs (scripts/tls_test.sh, scripts/outbound_test.sh).
const { WebSocketServer } = createRequire(new URL('../tls/package.json', import.meta.url))('ws');

const [cert, key] = process.argv.slice(2);
const MAX = 16 * 1024 * 1024;

function serve(httpServer, perMessageDeflate) {
  const wss = new WebSocketServer({
    server: httpServer,
    maxPayload: MAX,
    perMessageDeflate,
    handleProtocols: (protocols) => (protocols.has('v1') ? 'v1' : false),
    verifyClient: (info, done) => {
      if (info.req.url.startsWith('/forbidden')) done(false, 403, 'Forbidden');
      else done(true);
    },
  });
  wss.on('connection', (ws, req) => {
    if (req.url.startsWith('/headers')) ws.send(req.headers.authorization ?? '<none>');
    ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  });
  return new Promise((resolve) => httpServer.listen(0, '127.0.0.1', () => resolve(httpServer.address().port)));
}

const takeover = { threshold: 0 };
const noTakeover = { threshold: 0, serverNoContextTakeover: true, clientNoContextTakeover: true };
const ports = {
  ws: await serve(createHttp(), takeover),
  ws_nct: await serve(createHttp(), noTakeover),
  wss: await serve(createHttps({ cert: readFileSync(cert), key: readFileSync(key) }), takeover),
};
console.log(JSON.stringify(ports));
