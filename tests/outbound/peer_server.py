"""Third-party WebSocket servers for the outbound-connection tests (scripts/outbound_test.sh):
Python `websockets` on three ports, and raw sockets that answer an upgrade wrong.

    python3 tests/outbound/peer_server.py CERT.pem KEY.pem

Prints one line of JSON with the ports once every server listens, then serves until killed:
  ws        websockets, permessage-deflate with context takeover (its default)
  ws_nct    websockets, permessage-deflate without context takeover either way
  wss       websockets over TLS (CERT/KEY), deflate as `ws`
  silent    accepts, reads the request, never answers
  drop      accepts, reads the request, closes the connection
  bad_accept  answers 101 with a wrong Sec-WebSocket-Accept
Paths on the websockets ports: /echo echoes every message; /proto echoes, choosing the
subprotocol "v1" when offered; /headers sends the request's Authorization value, then echoes;
/forbidden is refused with 403.
"""

import asyncio
import json
import ssl
import sys

from websockets.asyncio.server import serve
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.http11 import Response
from websockets.datastructures import Headers

MAX = 16 * 1024 * 1024


async def handler(ws):
    path = ws.request.path
    if path.startswith("/headers"):
        await ws.send(ws.request.headers.get("Authorization", "<none>"))
    async for message in ws:
        await ws.send(message)


def process_request(connection, request):
    if request.path.startswith("/forbidden"):
        return Response(403, "Forbidden", Headers([("Content-Length", "0")]), b"")
    return None


def select_subprotocol(connection, subprotocols):
    return "v1" if "v1" in subprotocols else None


async def raw(mode, reader, writer):
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = await reader.read(4096)
        if not chunk:
            break
        head += chunk
    if mode == "silent":
        await asyncio.sleep(3600)
    elif mode == "bad_accept":
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: bm90IHRoZSByaWdodCBhY2NlcHQ=\r\n\r\n"
        )
        await writer.drain()
        await asyncio.sleep(5)
    writer.close()


async def main(cert, key):
    common = dict(
        process_request=process_request,
        select_subprotocol=select_subprotocol,
        max_size=MAX,
        compression="deflate",
    )
    ports = {}
    ws = await serve(handler, "127.0.0.1", 0, **common)
    nct = dict(common)
    del nct["compression"]
    ws_nct = await serve(
        handler,
        "127.0.0.1",
        0,
        extensions=[
            ServerPerMessageDeflateFactory(
                server_no_context_takeover=True, client_no_context_takeover=True
            )
        ],
        compression=None,
        **nct,
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    wss = await serve(handler, "127.0.0.1", 0, ssl=context, **common)
    for name, server in (("ws", ws), ("ws_nct", ws_nct), ("wss", wss)):
        ports[name] = server.sockets[0].getsockname()[1]
    for mode in ("silent", "drop", "bad_accept"):
        server = await asyncio.start_server(
            lambda r, w, mode=mode: raw(mode, r, w), "127.0.0.1", 0
        )
        ports[mode] = server.sockets[0].getsockname()[1]
    print(json.dumps(ports), flush=True)
    await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
