#!/usr/bin/env python3
"""wss:// echo check with the Python `websockets` client, certificate verification on.

    python3 tests/tls/echo_client.py wss://127.0.0.1:PORT CA.pem

Connects with ssl.create_default_context(cafile=CA.pem) (so the chain and the host name
127.0.0.1 are checked against the test CA, never skipped), without permessage-deflate (the
frames cross TLS as they are), and checks that a text and a binary message of 0 B, 125 B,
64 KiB and 1 MiB each come back byte for byte. Then it checks that verification is really on: a
client trusting only the system's CAs must fail the handshake with a certificate error.
Each wait is at most 10 s. Prints a PASS or FAIL line per check; exit status 0 when all pass,
1 otherwise, 2 for a wrong command line.
"""

import random
import ssl
import sys
import time

from websockets.exceptions import WebSocketException
from websockets.sync.client import connect

WAIT_S = 10
SIZES = [0, 125, 64 << 10, 1 << 20]


def payloads(size, rng):
    """A text message of `size` UTF-8 bytes (ASCII and two-byte letters) and `size` random bytes."""
    letters = []
    left = size
    while left > 0:
        if left >= 2 and rng.random() < 0.25:
            letters.append(chr(0xE0 + rng.randrange(26)))  # 2 bytes in UTF-8
            left -= 2
        else:
            letters.append(chr(0x61 + rng.randrange(26)))
            left -= 1
    text = "".join(letters)
    assert len(text.encode()) == size
    return text, rng.randbytes(size)


def first_difference(a, b):
    i = 0
    for x, y in zip(a, b):
        if x != y:
            break
        i += 1
    return i


def main():
    if len(sys.argv) != 3 or not sys.argv[1].startswith("wss://"):
        print("usage: echo_client.py wss://HOST:PORT CA.pem", file=sys.stderr)
        return 2
    url, cafile = sys.argv[1], sys.argv[2]
    failures = 0

    def report(ok, what):
        nonlocal failures
        print(f"{'PASS' if ok else 'FAIL'}: python websockets: {what}", flush=True)
        failures += not ok

    context = ssl.create_default_context(cafile=cafile)
    rng = random.Random(6455)
    try:
        with connect(
            url,
            ssl=context,
            compression=None,
            max_size=4 << 20,
            open_timeout=WAIT_S,
            close_timeout=WAIT_S,
        ) as ws:
            tls = ws.socket
            report(
                True,
                f"connected to {url} ({tls.version()}, {tls.cipher()[0]}, certificate verified)",
            )
            for size in SIZES:
                text, binary = payloads(size, rng)
                for kind, message in (("text", text), ("binary", binary)):
                    start = time.monotonic()
                    ws.send(message)
                    back = ws.recv(timeout=WAIT_S)
                    ms = (time.monotonic() - start) * 1000
                    if type(back) is not type(message):
                        report(False, f"{kind} {size} B: got {type(back).__name__} back")
                    elif back != message:
                        got = back.encode() if kind == "text" else back
                        sent = message.encode() if kind == "text" else message
                        report(
                            False,
                            f"{kind} {size} B: got {len(got)} B back, first difference at byte "
                            f"{first_difference(got, sent)}",
                        )
                    else:
                        report(True, f"{kind} {size} B echoed intact ({ms:.1f} ms)")
            ws.close()
            report(ws.close_code == 1000, f"closed with code {ws.close_code}")
    except (OSError, WebSocketException, TimeoutError) as e:
        report(False, f"{url}: {type(e).__name__}: {e}")

    # Verification is on: without the test CA the handshake must fail on the certificate.
    try:
        with connect(url, ssl=ssl.create_default_context(), open_timeout=WAIT_S):
            report(False, "a client without the test CA connected: verification is not in effect")
    except ssl.SSLCertVerificationError as e:
        report(True, f"a client without the test CA is refused: {e.verify_message}")
    except (OSError, WebSocketException, TimeoutError) as e:
        report(
            False,
            "a client without the test CA: expected a certificate error, got "
            f"{type(e).__name__}: {e}",
        )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
