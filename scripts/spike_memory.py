#!/usr/bin/env python3
"""Measures whether the echo server gives memory back after connection spikes.

Starts the echo server (target/release/examples/echo unless --bin is given) pinned to core 0
(taskset), pins this process to core 1, then K times: opens N WebSocket connections (each
completes the opening handshake), closes them all, waits until the server has closed every
descriptor of them, lets it settle (--settle: a worker reclaims memory 1 s after its
connection table last shrank), and reads the server's VmRSS from /proc. Prints the RSS before
the first spike, at each spike's peak (all N open) and after each spike, and the ratio of the
last figure to the first. Loopback only; bounded in time (--timeout, default 1800 s).

How the clients close (--close):
  fin   close the socket (end of stream); the server removes the connection on reading it.
  ws    send a close frame, read the server's echo of it and its end of stream, then close:
        the close handshake, so the connections pass through the server's closing phases.
  rst   close with SO_LINGER 0 (a reset).

With --keep M, M connections are opened before the first spike and held to the end (a steady
population beside the spikes; a thread answers the server's keepalive pings on them); they are
open when "before" is measured.

Usage: scripts/spike_memory.py [N] [--spikes K] [--settle S] [--close fin|ws|rst] [--keep M]
                               [--cores C] [--bin PATH] [--timeout S] [--server-core X]
                               [--client-core Y]
       (defaults: N=19900, K=16, S=2.0, fin, M=0, C=1, core 0 for the server and 1 for this
       script)
"""
import argparse
import os
import resource
import socket
import selectors
import struct
import subprocess
import sys
import threading
import time

from loopback import open_fds, read_upgrade, request_head, rss_kib






def parse_args():
    p = argparse.ArgumentParser(description="server RSS across connection spikes")
    p.add_argument("n", nargs="?", type=int, default=19900, help="connections per spike")
    p.add_argument("--spikes", type=int, default=16)
    p.add_argument("--settle", type=float, default=2.0, help="seconds after the last close")
    p.add_argument("--close", choices=["fin", "ws", "rst"], default="fin")
    p.add_argument("--keep", type=int, default=0, help="connections held through all spikes")
    p.add_argument("--cores", type=int, default=1, help="server workers")
    p.add_argument("--bin", default="target/release/examples/echo")
    p.add_argument("--timeout", type=float, default=1800.0, help="whole run, seconds")
    p.add_argument("--server-core", default="0")
    p.add_argument("--client-core", type=int, default=1)
    return p.parse_args()


def answer_pings(conns):
    """Answers the server's pings on `conns` (kept connections) until the process ends."""
    sel = selectors.DefaultSelector()
    pending = {}
    for s in conns:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
        pending[s] = b""
    mask = b"\x05\x06\x07\x08"
    while True:
        for key, _ in sel.select(timeout=1.0):
            s = key.fileobj
            try:
                data = s.recv(4096)
            except BlockingIOError:
                continue
            if not data:
                sel.unregister(s)
                continue
            buf = pending[s] + data
            # Server frames are unmasked; control frames have payloads under 126 bytes.
            while len(buf) >= 2 and len(buf) >= 2 + (buf[1] & 0x7F):
                opcode, n = buf[0] & 0x0F, buf[1] & 0x7F
                payload, buf = buf[2 : 2 + n], buf[2 + n :]
                if opcode == 0x9:
                    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
                    s.sendall(bytes([0x8A, 0x80 | n]) + mask + masked)
            pending[s] = buf


class Run:
    def __init__(self, args, port):
        self.args = args
        self.port = port
        self.deadline = time.time() + args.timeout
        self.request = request_head()

    def check_time(self):
        if time.time() > self.deadline:
            sys.exit(f"took longer than {self.args.timeout} s")

    def open(self, n):
        conns = []
        batch = 200
        for start in range(0, n, batch):
            group = []
            for _ in range(min(batch, n - start)):
                s = socket.create_connection(("127.0.0.1", self.port), timeout=10)
                s.sendall(self.request)
                group.append(s)
            for s in group:
                read_upgrade(s)
            conns.extend(group)
            self.check_time()
        return conns

    def close(self, conns):
        mode = self.args.close
        if mode == "ws":
            # A masked close frame with code 1000 and no reason.
            mask = b"\x01\x02\x03\x04"
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(struct.pack("!H", 1000)))
            frame = b"\x88\x82" + mask + payload
            batch = 500
            for start in range(0, len(conns), batch):
                group = conns[start : start + batch]
                for s in group:
                    s.sendall(frame)
                for s in group:
                    # The echoed close frame, then the server's end of stream.
                    while s.recv(4096):
                        pass
                    s.close()
                self.check_time()
            return
        for s in conns:
            if mode == "rst":
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()

    def wait_closed(self, pid, fds_idle):
        """Waits until the server holds no more descriptors than when idle (every connection
        removed)."""
        limit = time.time() + 30
        while open_fds(pid) > fds_idle:
            if time.time() > limit:
                print(f"  (server still holds {open_fds(pid) - fds_idle} connection descriptors)")
                return
            time.sleep(0.05)


def main():
    args = parse_args()
    n = args.n
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if n + args.keep + 64 > hard:
        sys.exit(f"need {n + args.keep + 64} descriptors, the limit is {hard}")
    if not os.path.exists(args.bin):
        subprocess.run(["cargo", "build", "--release", "--example", "echo"], check=True)
    port = 20000 + os.getpid() % 1000
    server = subprocess.Popen(
        ["taskset", "-c", args.server_core, args.bin, "--addr", f"127.0.0.1:{port}",
         "--cores", str(args.cores), "--no-pin"],
        stderr=subprocess.DEVNULL,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard)),
    )
    os.sched_setaffinity(0, {args.client_core})
    run = Run(args, port)
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
        kept = run.open(args.keep)
        threading.Thread(target=answer_pings, args=(kept,), daemon=True).start()
        time.sleep(0.5)
        fds_idle = open_fds(server.pid)
        before = rss_kib(server.pid)
        print(f"server: {args.bin}, {args.cores} worker(s); {n} connections per spike, "
              f"close: {args.close}, settle {args.settle} s, {args.keep} held throughout")
        print(f"RSS before the first spike: {before} KiB")
        after = before
        started = time.time()
        for spike in range(1, args.spikes + 1):
            conns = run.open(n)
            peak = rss_kib(server.pid)
            run.close(conns)
            del conns
            run.wait_closed(server.pid, fds_idle)
            time.sleep(args.settle)
            after = rss_kib(server.pid)
            print(f"spike {spike:2}: peak {peak} KiB, after {after} KiB "
                  f"({(after - before) / 1024:+.1f} MiB)  [{time.time() - started:.0f} s]",
                  flush=True)
        print(f"RSS after {args.spikes} spikes / before: {after} / {before} KiB = "
              f"{after / before:.2f}")
        del kept
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
