"""Chat clients through HAProxy in front of three examples/chat nodes sharing rooms through a
broker (run by scripts/bridge_test.sh).

Checks, in order:
1. HAProxy's health checks see every node UP (each node's WebSocket port answers a plain
   GET /ws with 426 Upgrade Required, which the check expects);
2. CLIENTS clients connect to HAProxy's one address and land on every node (each node's own
   /metrics counts its open connections);
3. the chat works across nodes: every client says one line in the room, and every client
   receives every line exactly once (its own included), whatever node it is on;
4. a client in another room receives none of them (only its own join notice).

Exits non-zero with a message on the first failure.
"""

import argparse
import asyncio
import json
import socket
import sys
import urllib.request

import websockets

CLIENTS = 12
TIMEOUT = 20


def fail(message):
    print(f"FAIL: haproxy chat: {message}", file=sys.stderr)
    sys.exit(1)


def haproxy_status(sock_path):
    """Backend server name -> status, from HAProxy's stats socket."""
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(sock_path)
        s.sendall(b"show stat\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    lines = data.decode().splitlines()
    header = lines[0].lstrip("# ").split(",")
    status = {}
    for line in lines[1:]:
        row = dict(zip(header, line.split(",")))
        if row.get("pxname") == "lanes" and row.get("svname") not in ("BACKEND", None):
            status[row["svname"]] = row["status"]
    return status


def metric(port, prefix):
    """A sample of the node's own /metrics, by the start of its line."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(prefix):
                return int(float(line.split()[-1]))
    fail(f"node {port}: no {prefix} in /metrics")


def open_connections(port):
    """The node's open WebSocket connections."""
    return metric(port, 'lanes_connections_open{core="all"}')


def upstream(port):
    """The topics the node has subscribed at the broker."""
    return metric(port, "lanes_bridge_upstream_subscriptions")


async def recv_json(ws):
    return json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--front", required=True, help="HAProxy's address, HOST:PORT")
    parser.add_argument("--nodes", required=True, help="the nodes' ports, comma-separated")
    parser.add_argument("--stats-socket", required=True)
    args = parser.parse_args()
    nodes = [int(p) for p in args.nodes.split(",")]

    loop = asyncio.get_running_loop()
    deadline = loop.time() + TIMEOUT
    while True:
        status = haproxy_status(args.stats_socket)
        if len(status) == len(nodes) and all(s == "UP" for s in status.values()):
            break
        if loop.time() > deadline:
            fail(f"HAProxy's health checks: {status}")
        await asyncio.sleep(0.2)
    print(f"haproxy: every node UP by its health check ({status})")

    base = [open_connections(p) for p in nodes]
    clients = []
    for i in range(CLIENTS):
        ws = await websockets.connect(f"ws://{args.front}/ws?room=spread&name=c{i}")
        clients.append(ws)
    outsider = await websockets.connect(f"ws://{args.front}/ws?room=elsewhere&name=out")
    per_node = [open_connections(p) - b for p, b in zip(nodes, base)]
    print(f"clients per node: {per_node}")
    if sum(per_node) != CLIENTS + 1 or min(per_node) == 0:
        fail(f"the clients should land on every node: {per_node}")

    # Every node subscribes upstream to the room (and one node to the outsider's room) before
    # anyone speaks: what is published before a node's subscription reaches the broker is not
    # kept for it (pub/sub).
    while True:
        subscribed = [upstream(p) for p in nodes]
        if min(subscribed) >= 1 and sum(subscribed) == len(nodes) + 1:
            break
        if loop.time() > deadline + TIMEOUT:
            fail(f"upstream subscriptions per node: {subscribed}")
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)
    for i, ws in enumerate(clients):
        await ws.send(f"hello from c{i}")
    for i, ws in enumerate(clients):
        lines = []
        while len(lines) < CLIENTS:
            event = await recv_json(ws)
            if event["type"] == "message":
                if event["room"] != "spread":
                    fail(f"c{i} got a line of room {event['room']}")
                lines.append(event["text"])
        if sorted(lines) != sorted(f"hello from c{k}" for k in range(CLIENTS)):
            fail(f"c{i} got {lines}")
        try:
            while True:
                extra = json.loads(await asyncio.wait_for(ws.recv(), 0.3))
                if extra["type"] == "message":
                    fail(f"c{i} got a line twice or more: {extra}")
        except asyncio.TimeoutError:
            pass
    own_join = await recv_json(outsider)
    if own_join != {"type": "join", "room": "elsewhere", "name": "out"}:
        fail(f"the outsider's first event: {own_join}")
    try:
        extra = await asyncio.wait_for(outsider.recv(), 0.3)
        fail(f"the client in another room got {extra}")
    except asyncio.TimeoutError:
        pass
    for ws in clients + [outsider]:
        await ws.close()
    print(f"chat across {len(nodes)} nodes behind HAProxy: {CLIENTS} clients, every line once")


asyncio.run(main())
