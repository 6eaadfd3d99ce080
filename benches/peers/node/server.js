// Echo server for the lanes comparison, written the way ws's own README echo example is: a
// WebSocketServer on a port, and every message sent back with its type (`isBinary`); ws
// answers pings and closes by itself. Differences: the host and port from argv, an explicit
// maxPayload, and no logging. Node runs JavaScript on one thread.
//
// Usage: node server.js PORT
'use strict';

const { WebSocketServer } = require('ws');

const port = Number(process.argv[2] || 8080);
const wss = new WebSocketServer({ host: '127.0.0.1', port, maxPayload: 64 * 1024 * 1024 });

wss.on('connection', (ws) => {
  ws.on('error', () => {});
  ws.on('message', (data, isBinary) => {
    ws.send(data, { binary: isBinary });
  });
});

wss.on('listening', () => {
  console.log(`node-ws listening on 127.0.0.1:${port}`);
});
