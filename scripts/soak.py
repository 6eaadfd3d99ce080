#!/usr/bin/env python3
"""A soak of examples/echo: churn and hostile peers beside clients that must keep being served.

For --duration seconds, from this process (loopback only), at once:
  steady     STEADY clients echo 64-byte messages one at a time; every round trip is timed;
  clean      connect, handshake, one echo, close handshake, close;
  reset      connect, handshake, one message, then a reset (SO_LINGER 0);
  fin        connect, handshake, one message, then end of stream without a close frame;
  half       connect, half a request head, wait a little, go away;
  trickle    a frame header, a byte every 200 ms, until the server closes (timeouts.message);
  hoard      send a 4 MiB message, never read its echo, leave after a few seconds.
Then every client leaves, and the script checks, from outside the server:
  - its open file descriptors are back to the count before the soak, exactly;
  - its RSS is within --rss-bound-mib of the count before the soak;
  - nothing panicked (lanes_handler_panics_total is 0, no "panicked" on its stderr) and it runs;
  - the steady clients were all served, with p99 under --p99-bound-ms.
Prints the figures; exits 1 when a check fails. Bounded: --duration plus at most 60 s.

    python3 scripts/soak.py --echo target/release/examples/echo --duration 60
"""

import argparse
import os
import random
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request

from loopback import free_port, open_fds, request_head, rss_kib, wait_for_port










def frame(opcode, payload, fin=True):
    """A client frame, masked with a random key."""
    key = os.urandom(4)
    n = len(payload)
    head = bytes([(0x80 if fin else 0) | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack(">H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack(">Q", n)
    if n > 65536:
        # Masking a large payload in Python is slow: the all-zero key leaves it as it is.
        return head + b"\0\0\0\0" + payload
    masked = bytes(b ^ key[i & 3] for i, b in enumerate(payload))
    return head + key + masked


class Conn:
    """A WebSocket client connection with a blocking socket."""

    def __init__(self, port, timeout=10.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""
        self.sock.sendall(request_head())
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            raise RuntimeError(head.split(b"\r\n")[0].decode())

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("end of stream")
        self.buf += chunk

    def recv(self):
        """The next frame: (opcode, payload)."""
        while True:
            if len(self.buf) >= 2:
                n = self.buf[1] & 0x7F
                at = 2
                if n == 126 and len(self.buf) >= 4:
                    n, at = struct.unpack(">H", self.buf[2:4])[0], 4
                elif n == 127 and len(self.buf) >= 10:
                    n, at = struct.unpack(">Q", self.buf[2:10])[0], 10
                if n < 126 or at > 2:
                    if len(self.buf) >= at + n:
                        opcode = self.buf[0] & 0x0F
                        payload = self.buf[at:at + n]
                        self.buf = self.buf[at + n:]
                        return opcode, payload
            self._fill()

    def close(self):
        self.sock.close()


class Soak:
    def __init__(self, port, deadline):
        self.port = port
        self.deadline = deadline
        self.lock = threading.Lock()
        self.counts = {}
        self.errors = {}
        self.rtts = []

    def running(self):
        return time.time() < self.deadline

    def count(self, what, errors=False):
        with self.lock:
            table = self.errors if errors else self.counts
            table[what] = table.get(what, 0) + 1

    def steady(self):
        try:
            conn = Conn(self.port)
            payload = b"s" * 64
            while self.running():
                start = time.perf_counter()
                conn.sock.sendall(frame(0x2, payload))
                opcode, got = conn.recv()
                rtt = time.perf_counter() - start
                if (opcode, got) != (0x2, payload):
                    self.count("steady: wrong echo", errors=True)
                with self.lock:
                    self.rtts.append(rtt)
                time.sleep(0.002)
            conn.sock.sendall(frame(0x8, struct.pack(">H", 1000)))
            conn.close()
        except Exception as e:  # noqa: BLE001 - any failure of a steady client is the finding
            self.count(f"steady: {type(e).__name__}: {e}", errors=True)

    def loop(self, name, body):
        while self.running():
            try:
                body()
                self.count(name)
            except Exception as e:  # noqa: BLE001
                self.count(f"{name}: {type(e).__name__}", errors=True)

    def clean(self):
        conn = Conn(self.port)
        conn.sock.sendall(frame(0x1, b"hello"))
        assert conn.recv() == (0x1, b"hello")
        conn.sock.sendall(frame(0x8, struct.pack(">H", 1000)))
        opcode, _ = conn.recv()
        assert opcode == 0x8
        conn.close()

    def reset(self):
        conn = Conn(self.port)
        conn.sock.sendall(frame(0x2, b"x" * 100))
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()

    def fin(self):
        conn = Conn(self.port)
        conn.sock.sendall(frame(0x2, b"y" * 100))
        conn.sock.shutdown(socket.SHUT_WR)
        conn.close()

    def half(self):
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        head = request_head()
        sock.sendall(head[: random.randint(1, len(head) - 1)])
        time.sleep(random.uniform(0, 0.5))
        sock.close()

    def trickle(self):
        conn = Conn(self.port)
        conn.sock.settimeout(0.2)
        data = frame(0x2, b"t" * 1000)
        for byte in data:
            if not self.running():
                break
            try:
                conn.sock.sendall(bytes([byte]))
            except OSError:
                break  # the server closed it
            try:
                if conn.sock.recv(1024, socket.MSG_PEEK) == b"":
                    break
                break  # its close frame
            except socket.timeout:
                pass
        conn.close()

    def hoard(self):
        conn = Conn(self.port)
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        conn.sock.settimeout(5)
        try:
            conn.sock.sendall(frame(0x2, bytes(4 << 20)))
        except OSError:
            pass
        end = min(self.deadline, time.time() + random.uniform(2, 5))
        while time.time() < end:
            time.sleep(0.1)
        conn.close()


def metric(port, name):
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    except OSError:
        return None
    total = 0.0
    found = False
    for line in text.splitlines():
        if line.startswith(name) and 'core="all"' in line:
            total += float(line.rsplit(" ", 1)[1])
            found = True
    return total if found else None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--echo", required=True, help="the echo server binary")
    ap.add_argument("--duration", type=float, default=60.0)
    ap.add_argument("--workers", default="1")
    ap.add_argument("--steady", type=int, default=4)
    ap.add_argument("--p99-bound-ms", type=float, default=100.0)
    ap.add_argument("--rss-bound-mib", type=float, default=16.0)
    ap.add_argument("--server-core", default="0")
    args = ap.parse_args()

    port, admin = free_port(), free_port()
    stderr_path = f"/tmp/lanes-soak-{os.getpid()}.log"
    with open(stderr_path, "w") as stderr:
        server = subprocess.Popen(
            ["taskset", "-c", args.server_core, args.echo, "--addr", f"127.0.0.1:{port}",
             "--cores", args.workers, "--no-pin", "--metrics-addr", f"127.0.0.1:{admin}"],
            stdout=subprocess.DEVNULL, stderr=stderr,
        )
    failures = []
    try:
        if not wait_for_port(port):
            raise RuntimeError("the echo server did not start")
        # A first round trip warms the worker; then the baseline.
        Conn(port).close()
        time.sleep(1.0)
        fds_before, rss_before = open_fds(server.pid), rss_kib(server.pid)

        soak = Soak(port, time.time() + args.duration)
        threads = [threading.Thread(target=soak.steady) for _ in range(args.steady)]
        for name, count in [("clean", 2), ("reset", 2), ("fin", 2), ("half", 2),
                            ("trickle", 2), ("hoard", 2)]:
            for _ in range(count):
                body = getattr(soak, name)
                threads.append(threading.Thread(target=soak.loop, args=(name, body)))
        peak = rss_before
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            peak = max(peak, rss_kib(server.pid))
            time.sleep(0.5)
            if time.time() > soak.deadline + 30:
                failures.append("clients did not finish 30 s after the end")
                break

        # Everyone has left: the server must be back where it started.
        fds_after = None
        settle_until = time.time() + 20
        while time.time() < settle_until:
            fds_after = open_fds(server.pid)
            if fds_after == fds_before:
                break
            time.sleep(0.2)
        time.sleep(1.0)
        rss_after = rss_kib(server.pid)
        panics = metric(admin, "lanes_handler_panics_total")
        with open(stderr_path) as f:
            log = f.read()

        rtts = sorted(soak.rtts)
        p = lambda q: rtts[min(len(rtts) - 1, int(q * len(rtts)))] * 1000 if rtts else float("nan")
        print(f"soak: {args.duration:.0f} s against {args.echo} ({args.workers} worker(s))")
        print("  churn: " + ", ".join(f"{k} {v}" for k, v in sorted(soak.counts.items())))
        print(f"  steady: {len(rtts)} round trips, p50 {p(0.5):.2f} ms, p99 {p(0.99):.2f} ms, "
              f"max {p(1.0):.2f} ms (bound p99 {args.p99_bound_ms:.0f} ms)")
        print(f"  fds: {fds_before} before, {fds_after} after")
        print(f"  RSS: {rss_before / 1024:.1f} MiB before, peak {peak / 1024:.1f} MiB, "
              f"{rss_after / 1024:.1f} MiB after (bound +{args.rss_bound_mib:.0f} MiB)")
        print(f"  handler panics: {panics}; client-side errors: {soak.errors or 'none'}")

        if server.poll() is not None:
            failures.append(f"the server exited ({server.returncode})")
        if fds_after != fds_before:
            failures.append(f"open descriptors {fds_before} -> {fds_after}")
        if rss_after > rss_before + args.rss_bound_mib * 1024:
            failures.append(f"RSS grew by {(rss_after - rss_before) / 1024:.1f} MiB")
        if panics != 0:
            failures.append(f"lanes_handler_panics_total = {panics}")
        if "panicked" in log:
            failures.append("the server's log says it panicked")
        if not rtts or p(0.99) > args.p99_bound_ms:
            failures.append(f"steady p99 {p(0.99):.1f} ms over {args.p99_bound_ms} ms")
        steady_errors = [k for k in soak.errors if k.startswith("steady")]
        if steady_errors:
            failures.append(f"steady clients failed: {steady_errors}")
    finally:
        server.terminate()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
    if failures:
        print("soak FAILED: " + "; ".join(failures))
        print(f"  server log: {stderr_path}")
        return 1
    os.unlink(stderr_path)
    print("soak ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
