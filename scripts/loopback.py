"""Helpers the measurement scripts share: a free loopback port, a server process's RSS and
open descriptors from /proc, and a WebSocket opening handshake's request head and the reading
of its answer."""

import base64
import os
import socket
import sys
import time


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on (as of now)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_for_port(port, seconds=10.0):
    """Waits until something accepts connections on 127.0.0.1:port; False on timeout."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def rss_kib(pid):
    """The process's resident set size, in KiB (VmRSS)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def open_fds(pid):
    """How many file descriptors the process has open."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def request_head(path="/"):
    """A WebSocket upgrade request head with a fresh key."""
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


def read_upgrade(s):
    """Reads the server's answer to an upgrade request on socket `s`; exits unless it is a 101."""
    response = b""
    while b"\r\n\r\n" not in response:
        chunk = s.recv(4096)
        if not chunk:
            sys.exit("server closed a connection during the handshake")
        response += chunk
    if not response.startswith(b"HTTP/1.1 101"):
        sys.exit(f"handshake refused: {response[:60]!r}")
