#!/usr/bin/env python3
"""Server memory under clients that send large messages and never read (issue 13, point 5).

Starts the echo server (one worker, pinned to core 0) and opens CLIENTS connections from this
process (pin it to core 1 with taskset). Each client completes the handshake, then sends
MESSAGES binary messages of SIZE bytes as fast as the server takes them and never reads: the
server echoes the first into a backlog it cannot write, stops reading at its backpressure
limit, and holds whatever it has read of the rest. The script prints the server's RSS before,
at its peak while the clients push, and SETTLE seconds after every client has left, and how
many clients the server closed on its own; ROUNDS times (the clients come and go).

    taskset -c 1 python3 scripts/hostile_memory.py --echo target/release/examples/echo

Loopback only; bounded in time (--push-seconds, --settle).
"""

import argparse
import socket
import struct
import subprocess
import sys
import time

from loopback import free_port, request_head, rss_kib, wait_for_port






def handshake(port):
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(request_head())
    answer = b""
    while b"\r\n\r\n" not in answer:
        chunk = sock.recv(4096)
        if not chunk:
            raise RuntimeError("no handshake answer")
        answer += chunk
    if not answer.startswith(b"HTTP/1.1 101"):
        raise RuntimeError(answer.split(b"\r\n")[0].decode())
    # Small receive buffer: the server's output piles up on its side.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    return sock


def frame_header(size):
    # FIN + binary, masked with the all-zero key (the payload goes as it is).
    return bytes([0x82, 0x80 | 127]) + struct.pack(">Q", size) + b"\0\0\0\0"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--echo", required=True, help="the echo server binary")
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--size", type=int, default=16 << 20)
    ap.add_argument("--messages", type=int, default=2)
    ap.add_argument("--push-seconds", type=float, default=10.0)
    ap.add_argument("--settle", type=float, default=10.0)
    ap.add_argument("--rounds", type=int, default=3, help="times the clients come and go")
    ap.add_argument("--server-core", default="0")
    ap.add_argument("--workers", default="1", help="echo --cores")
    ap.add_argument("server_args", nargs="*", help="extra echo arguments (after --)")
    args = ap.parse_args()

    port = free_port()
    server = subprocess.Popen(
        ["taskset", "-c", args.server_core, args.echo, "--addr", f"127.0.0.1:{port}",
         "--cores", args.workers, "--no-pin", *args.server_args],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        if not wait_for_port(port):
            raise RuntimeError("the echo server did not start")
        time.sleep(0.5)
        before = rss_kib(server.pid)
        print(f"server RSS before: {before / 1024:.1f} MiB")
        for round_ in range(1, args.rounds + 1):
            print(f"round {round_}:")
            clients = [handshake(port) for _ in range(args.clients)]
            payload = bytes(args.size)
            header = frame_header(args.size)
            todo = [memoryview((header + payload) * args.messages) for _ in clients]
            done = [0] * len(clients)
            closed = {}
            peak = before
            deadline = time.time() + args.push_seconds
            while time.time() < deadline:
                progress = False
                for i, sock in enumerate(clients):
                    if i in closed:
                        continue
                    if done[i] < len(todo[i]):
                        try:
                            n = sock.send(todo[i][done[i]:done[i] + (1 << 20)])
                            done[i] += n
                            progress = progress or n > 0
                        except BlockingIOError:
                            pass
                        except OSError as e:
                            closed[i] = f"reset ({e.errno})"
                    # Look for the server giving up on us (a close frame, end of stream, a reset)
                    # without reading the echo we are not reading: peek at the first bytes only.
                    try:
                        head = sock.recv(16, socket.MSG_PEEK)
                        if head == b"":
                            closed[i] = "end of stream"
                    except BlockingIOError:
                        pass
                    except OSError as e:
                        closed[i] = f"reset ({e.errno})"
                peak = max(peak, rss_kib(server.pid))
                if not progress:
                    time.sleep(0.05)
            pushed = sum(done) / (1 << 20)
            for sock in clients:
                sock.close()
            time.sleep(args.settle)
            after = rss_kib(server.pid)
            print(f"  clients: {args.clients} x {args.messages} messages of {args.size} bytes, "
                  f"{pushed:.0f} MiB taken by the server in {args.push_seconds:.0f} s")
            print(f"  server RSS: peak {peak / 1024:.1f} MiB, "
                  f"{args.settle:.0f} s after the clients left {after / 1024:.1f} MiB")
            print(f"  clients the server gave up on while pushing: {len(closed)} "
                  f"({', '.join(sorted(set(closed.values()))) or '-'})")
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
