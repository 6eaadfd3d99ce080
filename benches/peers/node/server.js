// Echo server for the lanes comparison, written the way ws's own README echo example is: a
// WebSocketServer on a port, and every message sent back with its type (`isBinary`); ws
// answers pings and closes by itself. Differences: the host and port from argv, an explicit
// maxPayload, and no logging. Node runs JavaScript on one thread.
//
// With CERT KEY (PEM files) it serves wss the way ws's README "external HTTP/S server"
// example does: an https.createServer with the certificate and key, Node's defaults kept
// (OpenSSL, TLS 1.2 and 1.3, session tickets on), and the WebSocketServer on it.
//
// Usage: node server.js PORT [CERT KEY]
'use strict';

const fs = require('fs');
const https = require('https');
const { WebSocketServer } = require('ws');

const port = Number(process.argv[2] || 8080);
const [cert, key] = process.argv.slice(3);
const maxPayload = 64 * 1024 * 1024;

let wss;
if (cert && key) {
  const server = https.createServer({ cert: fs.readFileSync(cert), key: fs.readFileSync(key) });
  wss = new WebSocketServer({ server, maxPayload });
  server.listen(port, '127.0.0.1', () => {
    console.log(`node-ws listening on 127.0.0.1:${port} (wss)`);
  });
} else {
  wss = new WebSocketServer({ host: '127.0.0.1', port, maxPayload });
  wss.on('listening', () => {
    console.log(`node-ws listening on 127.0.0.1:${port}`);
  });
}

wss.on('connection', (ws) => {
  ws.on('error', () => {});
  ws.on('message', (data, isBinary) => {
    ws.send(data, { binary: isBinary });
  });
});
