#!/usr/bin/env python3
"""Measures the echo server's resident memory per idle WebSocket connection.

Starts target/release/examples/echo pinned to one core (taskset), opens N connections from this
process (each completes the opening handshake, then stays idle), and reads the server's VmRSS
from /proc before and after (before: once three connections went through the handshake and
left, so that the code every handshake runs is resident already). Prints the growth per
connection. Loopback only; bounded in time.

Usage: scripts/idle_memory.py [N] [--cores K] [--binary PATH]
    (default N=10000, K=1, PATH=target/release/examples/echo: another build's echo server, to
    compare side by side)
"""
import base64
import os
import resource
import selectors
import socket
import subprocess
import sys
import time

from loopback import read_upgrade

def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")

def main():
    args = sys.argv[1:]
    n = int(args[0]) if args and not args[0].startswith("--") else 10000
    cores = 1
    if "--cores" in args:
        cores = int(args[args.index("--cores") + 1])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if n + 100 > hard:
        sys.exit(f"need {n + 100} descriptors, the limit is {hard}")
    port = 19000 + os.getpid() % 1000
    binary = "target/release/examples/echo"
    if "--binary" in args:
        binary = args[args.index("--binary") + 1]
    elif not os.path.exists(binary):
        subprocess.run(["cargo", "build", "--release", "--example", "echo"], check=True)
    server = subprocess.Popen(
        ["taskset", "-c", "0", binary, "--addr", f"127.0.0.1:{port}", "--cores", str(cores), "--no-pin"],
        stderr=subprocess.DEVNULL,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard)),
    )
    try:
        deadline = time.time() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline:
                    sys.exit("server did not start")
                time.sleep(0.05)
        key = base64.b64encode(b"0123456789abcdef").decode()
        request = (
            f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
        # A few connections through the handshake first, so that the code and buffers every
        # handshake uses are resident before "before": a fixed cost, not a per-connection one.
        for _ in range(3):
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            s.sendall(request)
            read_upgrade(s)
            s.close()
        time.sleep(0.3)
        before = rss_kib(server.pid)
        conns = []
        sel = selectors.DefaultSelector()
        started = time.time()
        batch = 200
        for start in range(0, n, batch):
            group = []
            for _ in range(min(batch, n - start)):
                s = socket.create_connection(("127.0.0.1", port), timeout=10)
                s.sendall(request)
                group.append(s)
            for s in group:
                read_upgrade(s)
            conns.extend(group)
            if time.time() - started > 120:
                sys.exit("took too long")
        time.sleep(1.0)
        after = rss_kib(server.pid)
        growth = (after - before) * 1024
        print(f"connections: {len(conns)}")
        print(f"server RSS before: {before} KiB, after: {after} KiB")
        print(f"growth per idle connection: {growth / len(conns):.0f} bytes")
        for s in conns:
            s.close()
    finally:
        server.terminate()
        server.wait(timeout=10)

if __name__ == "__main__":
    main()
