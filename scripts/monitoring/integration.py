#!/usr/bin/env python3
"""Monitoring integration test: examples/echo and lanes-load against real Prometheus and InfluxDB.

Default mode (the real test):
  1. influxd (1.x) started by hand from a config in a temporary folder (data, meta and WAL there,
     HTTP and RPC bound to free loopback ports, no reporting, quiet logs); database `lanes`.
  2. prometheus started by hand (scrape_interval 1s; jobs `echo` = the server's admin address,
     `lanes-load` = lanes-load's --prometheus-port), TSDB in the temporary folder.
  3. examples/echo, one worker (pinned to core 0 with taskset when there are 2+ cores), serving
     /metrics on --metrics-addr and reporting to InfluxDB every second.
  4. lanes-load echo, bounded (warm-up 1 s + 3 s), pushing to InfluxDB every second and serving
     /metrics for the run; its JSON gives sent_total (every message written, warm-up included).
  5. Checks (polled until they all hold or a deadline passes, then reported one by one):
     Prometheus: lanes_messages_received_total{core="all"} == sent_total == the sum over the
     per-core series; lanes_messages_sent_total{core="all"} == sent_total; connections opened
     >= connections; lanes_loop_lag_seconds_count > 0 (and == its le="+Inf" bucket);
     lanes_load_messages_sent_total scraped during the run, last value in (0, sent_total].
     InfluxDB: last lanes_messages_received_total{core=all} == sent_total; counter fields are
     integers, histogram fields count (integer) / sum, p50, p90, p99, p999 (float); inside the
     measured window, the server's message rate (between its first and last point there)
     agrees within 25% with lanes-load's over the same span (its cumulative counter
     interpolated at those two instants), and lanes-load's rate (between its own first and
     last point there) agrees with its JSON messages_per_s within 25%.
  Every process is stopped (process groups: TERM, then KILL) and the folder deleted on exit.

--self-test: the same servers and the same checks, with a fake exporter in place of the binaries
(a Python thread counting messages at a steady rate, serving Prometheus text and writing line
protocol to InfluxDB itself). It runs a correct fake, which must pass every check, and a broken
one (off-by-one total, doubled InfluxDB counter, float counter field), which must fail exactly the
checks that cover those faults. Proves the harness before (or without) the Rust binaries.

Python 3.11 standard library only. Loopback only. Exit status 0 only when everything passed.
"""

import argparse
import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

WAIT_S = 30.0  # the longest any single wait (a server's start, a port) may take
CHECK_DEADLINE_S = 15.0  # after lanes-load exits: the longest wait for the checks to hold
RATE_TOLERANCE = 0.25
DB = "lanes"
ECHO_JOB = "echo"
LOAD_JOB = "lanes-load"


class Failure(Exception):
    """A step that cannot go on (a server that does not start, a binary that fails)."""


def log(msg):
    print(msg, flush=True)


# ---------------------------------------------------------------- processes and the temp folder


class Stack:
    """The temporary folder and every process started in it; stop() ends them all."""

    def __init__(self, keep=False):
        self.dir = tempfile.mkdtemp(prefix="lanes-monitoring-")
        self.keep = keep
        self.procs = []  # (name, Popen, log path)

    def path(self, *parts):
        return os.path.join(self.dir, *parts)

    def start(self, name, argv, stdout=None):
        log_path = self.path(f"{name}.log")
        log_file = open(log_path, "wb")
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=stdout if stdout is not None else log_file,
                stderr=log_file,
                cwd=self.dir,
                start_new_session=True,  # its own process group, killed as one
            )
        except OSError as e:
            raise Failure(f"cannot start {name} ({argv[0]}): {e}") from e
        finally:
            log_file.close()
        self.procs.append((name, proc, log_path))
        return proc

    def tail(self, name, lines=25):
        for n, _, log_path in self.procs:
            if n == name:
                try:
                    with open(log_path, "rb") as f:
                        text = f.read().decode("utf-8", "replace")
                except OSError:
                    return ""
                return "\n".join(text.splitlines()[-lines:])
        return ""

    def check_alive(self, name, proc):
        if proc.poll() is not None:
            raise Failure(
                f"{name} exited (status {proc.returncode}) while waiting for it; its log:\n"
                + self.tail(name)
            )

    def stop(self):
        for name, proc, _ in reversed(self.procs):
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for name, proc, _ in reversed(self.procs):
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                log(f"    {name} ignored SIGTERM for 10 s: SIGKILL")
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(timeout=10)
            # the group may hold children that outlived their leader (taskset execs, so
            # normally not)
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self.procs.clear()
        if self.keep:
            log(f"    kept {self.dir}")
        else:
            shutil.rmtree(self.dir, ignore_errors=True)


def free_ports(n):
    """n distinct free loopback ports (all bound at once, then released)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def wait_until(what, predicate, timeout=WAIT_S, alive=None, interval=0.1):
    """Poll predicate() (truthy = done) until timeout; alive() raises when a process died."""
    deadline = time.monotonic() + timeout
    last_error = None
    while True:
        if alive is not None:
            alive()
        try:
            result = predicate()
            if result:
                return result
        except (OSError, ValueError, KeyError) as e:
            last_error = e
        if time.monotonic() >= deadline:
            raise Failure(
                f"timed out after {timeout:.0f} s waiting for {what}"
                + (f" (last error: {last_error})" if last_error else "")
            )
        time.sleep(interval)


def port_accepts(port):
    with socket.create_connection(("127.0.0.1", port), timeout=1):
        return True


# ---------------------------------------------------------------- HTTP


def request(method, url, body=None, timeout=5.0, headers=None):
    """(status, body bytes); HTTP errors are returned, connection errors raise OSError."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except urllib.error.URLError as e:
        raise OSError(str(e.reason)) from e


# ---------------------------------------------------------------- InfluxDB 1.x


def influx_config(stack, http_port, rpc_port):
    d = stack.path("influxdb")
    # Debian's influxd 1.6 reads `reporting-enabled` (patched); upstream 1.x reads
    # `reporting-disabled`. Unknown keys are ignored, so both are written.
    return f"""\
reporting-disabled = true
reporting-enabled = false
bind-address = "127.0.0.1:{rpc_port}"

[meta]
  dir = "{d}/meta"
  retention-autocreate = true
  logging-enabled = false

[data]
  dir = "{d}/data"
  wal-dir = "{d}/wal"
  wal-fsync-delay = "0s"
  index-version = "inmem"
  query-log-enabled = false

[monitor]
  store-enabled = false

[http]
  enabled = true
  bind-address = "127.0.0.1:{http_port}"
  auth-enabled = false
  log-enabled = false
  suppress-write-log = true
  pprof-enabled = false
  unix-socket-enabled = false

[logging]
  level = "warn"
  suppress-logo = true

[continuous_queries]
  enabled = false
  log-enabled = false

[subscriber]
  enabled = false
"""


class Influx:
    def __init__(self, port):
        self.base = f"http://127.0.0.1:{port}"

    def ping(self):
        status, _ = request("GET", self.base + "/ping", timeout=1)
        return status == 204

    def post_query(self, q):
        body = urllib.parse.urlencode({"q": q}).encode()
        status, data = request(
            "POST",
            self.base + "/query",
            body,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        if status != 200:
            raise Failure(f"InfluxDB {q!r}: HTTP {status} {data[:300]!r}")
        doc = json.loads(data)
        for r in doc.get("results", []):
            if "error" in r:
                raise Failure(f"InfluxDB {q!r}: {r['error']}")

    def query(self, q):
        """Rows of the first series of the first result as dicts (time in ns); [] when none."""
        url = self.base + "/query?" + urllib.parse.urlencode({"db": DB, "epoch": "ns", "q": q})
        status, data = request("GET", url)
        if status != 200:
            raise ValueError(f"InfluxDB query HTTP {status}: {data[:300]!r}")
        doc = json.loads(data)
        result = doc["results"][0]
        if "error" in result:
            raise ValueError(f"InfluxDB query error: {result['error']}")
        series = result.get("series") or []
        if not series:
            return []
        cols = series[0]["columns"]
        return [dict(zip(cols, row)) for row in series[0]["values"]]

    def field_types(self, measurement):
        rows = self.query(f'SHOW FIELD KEYS FROM "{measurement}"')
        return {r["fieldKey"]: r["fieldType"] for r in rows}

    def write(self, lines):
        url = self.base + "/write?" + urllib.parse.urlencode({"db": DB, "precision": "ns"})
        status, data = request("POST", url, "\n".join(lines).encode())
        if status != 204:
            raise OSError(f"InfluxDB write HTTP {status}: {data[:300]!r}")


def start_influx(stack, http_port, rpc_port):
    conf = stack.path("influxdb.conf")
    with open(conf, "w") as f:
        f.write(influx_config(stack, http_port, rpc_port))
    proc = stack.start("influxd", ["influxd", "run", "-config", conf])
    influx = Influx(http_port)
    wait_until(
        f"influxd /ping on 127.0.0.1:{http_port}",
        influx.ping,
        alive=lambda: stack.check_alive("influxd", proc),
    )
    influx.post_query(f"CREATE DATABASE {DB}")
    return influx


# ---------------------------------------------------------------- Prometheus 2.x


def prometheus_config(targets):
    lines = [
        "global:",
        "  scrape_interval: 1s",
        "  scrape_timeout: 1s",  # must not exceed the interval (default 10s > 1s)
        "  evaluation_interval: 1s",
        "scrape_configs:",
    ]
    for job, addr in targets.items():
        lines += [
            f"  - job_name: {json.dumps(job)}",
            "    metrics_path: /metrics",
            "    static_configs:",
            f"      - targets: [{json.dumps(addr)}]",
        ]
    return "\n".join(lines) + "\n"


class Prometheus:
    def __init__(self, port):
        self.base = f"http://127.0.0.1:{port}"

    def ready(self):
        status, _ = request("GET", self.base + "/-/ready", timeout=1)
        return status == 200

    def query(self, q):
        """Instant query: [(labels, float value)]."""
        url = self.base + "/api/v1/query?" + urllib.parse.urlencode({"query": q})
        status, data = request("GET", url)
        doc = json.loads(data)
        if status != 200 or doc.get("status") != "success":
            raise ValueError(f"Prometheus {q!r}: HTTP {status} {doc.get('error', data[:300])}")
        result = doc["data"]["result"]
        if doc["data"]["resultType"] != "vector":
            raise ValueError(f"Prometheus {q!r}: {doc['data']['resultType']} result")
        return [(r["metric"], float(r["value"][1])) for r in result]

    def one(self, q):
        """The single value of q, or None when it has no series; several series is an error."""
        result = self.query(q)
        if not result:
            return None
        if len(result) > 1:
            raise ValueError(f"{q} has {len(result)} series: {[m for m, _ in result]}")
        return result[0][1]


def start_prometheus(stack, port, targets):
    conf = stack.path("prometheus.yml")
    with open(conf, "w") as f:
        f.write(prometheus_config(targets))
    proc = stack.start(
        "prometheus",
        [
            "prometheus",
            f"--config.file={conf}",
            f"--storage.tsdb.path={stack.path('prometheus-data')}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
    )
    prom = Prometheus(port)
    wait_until(
        f"prometheus /-/ready on 127.0.0.1:{port}",
        prom.ready,
        alive=lambda: stack.check_alive("prometheus", proc),
    )
    return prom


# ---------------------------------------------------------------- the checks


def fmt(v):
    if v is None:
        return "none"
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() else f"{v:.6g}"
    return str(v)


def in_window(points, lo_ns, hi_ns):
    """The (time ns, value) points inside [lo, hi], by time."""
    return sorted((t, v) for t, v in points if lo_ns <= t <= hi_ns and v is not None)


def mean_rate(pts):
    """Rate (per s) of a cumulative counter between its first and last point."""
    if len(pts) < 2 or pts[-1][0] <= pts[0][0]:
        return None
    return (pts[-1][1] - pts[0][1]) / ((pts[-1][0] - pts[0][0]) / 1e9)


def step_rates(pts):
    """Rates between consecutive points (shown, not checked)."""
    return [
        (v1 - v0) / ((t1 - t0) / 1e9) for (t0, v0), (t1, v1) in zip(pts, pts[1:]) if t1 > t0
    ]


def interpolate(pts, t):
    """A cumulative counter's value at t, linear between the points around t; None outside."""
    for (t0, v0), (t1, v1) in zip(pts, pts[1:]):
        if t0 <= t <= t1:
            return v0 if t1 == t0 else v0 + (v1 - v0) * (t - t0) / (t1 - t0)
    return None


def within(a, b, tol=RATE_TOLERANCE):
    return a is not None and b is not None and b > 0 and abs(a - b) <= tol * b


def evaluate(prom, influx, run):
    """One pass over every check: [(name, ok, detail)]. run: sent_total, messages_per_s,
    connections, t_launch_ns, t_exit_ns."""
    sent = run["sent_total"]
    out = []

    def check(name, fn):
        try:
            ok, detail = fn()
        except (OSError, ValueError, KeyError, IndexError, TypeError) as e:
            ok, detail = False, f"error: {e}"
        out.append((name, bool(ok), detail))

    # --- Prometheus, the echo server's admin address
    def p_received():
        v = prom.one(f'lanes_messages_received_total{{job="{ECHO_JOB}",core="all"}}')
        return v == sent, f'lanes_messages_received_total{{core="all"}} = {fmt(v)}, sent_total = {sent}'

    def p_received_sum():
        total = prom.one(f'lanes_messages_received_total{{job="{ECHO_JOB}",core="all"}}')
        per_core = prom.query(f'lanes_messages_received_total{{job="{ECHO_JOB}",core!="all"}}')
        s = sum(v for _, v in per_core)
        cores = ",".join(sorted(m.get("core", "?") for m, _ in per_core))
        ok = bool(per_core) and s == total == sent
        return ok, f'sum over core!="all" (cores: {cores or "no series"}) = {fmt(s)}, core="all" = {fmt(total)}'

    def p_sent():
        v = prom.one(f'lanes_messages_sent_total{{job="{ECHO_JOB}",core="all"}}')
        return v == sent, f'lanes_messages_sent_total{{core="all"}} = {fmt(v)}, sent_total = {sent}'

    def p_opened():
        v = prom.one(f'lanes_connections_opened_total{{job="{ECHO_JOB}",core="all"}}')
        n = run["connections"]
        return v is not None and v >= n, f'lanes_connections_opened_total{{core="all"}} = {fmt(v)} (>= {n})'

    def p_lag():
        count = prom.one(f'lanes_loop_lag_seconds_count{{job="{ECHO_JOB}",core="all"}}')
        inf = prom.one(f'lanes_loop_lag_seconds_bucket{{job="{ECHO_JOB}",core="all",le="+Inf"}}')
        ok = count is not None and count > 0 and inf == count
        return ok, f'lanes_loop_lag_seconds_count{{core="all"}} = {fmt(count)} (> 0), bucket le="+Inf" = {fmt(inf)}'

    def p_load():
        # lanes-load has exited: its series are stale (an instant query returns nothing), so
        # look back over the range, which skips staleness markers
        sel = f'lanes_load_messages_sent_total{{job="{LOAD_JOB}"}}'
        last = prom.one(f"last_over_time({sel}[5m])")
        scrapes = prom.one(f"count_over_time({sel}[5m])")
        ok = last is not None and 0 < last <= sent and scrapes is not None and scrapes >= 2
        return ok, (
            f"lanes_load_messages_sent_total last = {fmt(last)} (in (0, {sent}]), "
            f"scraped {fmt(scrapes)} times during the run (>= 2)"
        )

    check("prometheus: messages received == sent_total", p_received)
    check("prometheus: per-core sum == core=all", p_received_sum)
    check("prometheus: messages sent (echoed) == sent_total", p_sent)
    check("prometheus: connections opened", p_opened)
    check("prometheus: loop lag histogram", p_lag)
    check("prometheus: lanes-load scraped", p_load)

    # --- InfluxDB
    def i_last():
        rows = influx.query(
            'SELECT last("value") FROM "lanes_messages_received_total" WHERE "core" = \'all\''
        )
        v = rows[0]["last"] if rows else None
        return v == sent, f'last lanes_messages_received_total{{core=all}} = {fmt(v)}, sent_total = {sent}'

    def i_types():
        want = {
            "lanes_messages_received_total": {"value": "integer"},
            "lanes_load_messages_sent_total": {"value": "integer"},
            "lanes_loop_lag_seconds": {
                "count": "integer",
                "sum": "float",
                "p50": "float",
                "p90": "float",
                "p99": "float",
                "p999": "float",
            },
        }
        bad = []
        for m, fields in want.items():
            got = influx.field_types(m)
            for k, t in fields.items():
                if got.get(k) != t:
                    bad.append(f"{m}.{k} is {got.get(k, 'missing')}, not {t}")
        return not bad, "; ".join(bad) or "counters integer, histogram count integer, sum/p50/p90/p99/p999 float"

    # The measured window, as seen from here: it starts `warmup` after lanes-load's start and
    # lasts `duration`; lanes-load starts a little after t_launch, hence the slack at the end.
    # Points are written at different instants (lanes-load's every second from its start, the
    # server's every second from its own), so each rate is taken between two points of the
    # same series: lanes-load's from its first to its last point in the window; the server's
    # from its first to its last point in the window (and between lanes-load's points),
    # against lanes-load's counter interpolated at the same two instants (the same span of
    # time, so a wrong count or a wrong timestamp shows, while neither series' timing has to
    # line up with the other's).
    lo = run["t_launch_ns"] + int(run["warmup_s"] * 1e9)
    hi = min(lo + int((run["duration_s"] + 0.25) * 1e9), run["t_exit_ns"])
    rates = {}

    def i_rates():
        since = run["t_launch_ns"] - 5_000_000_000
        load_rows = influx.query(
            f'SELECT "value" FROM "lanes_load_messages_sent_total" WHERE time >= {since}'
        )
        srv_rows = influx.query(
            'SELECT "value" FROM "lanes_messages_received_total" WHERE "core" = \'all\' '
            f"AND time >= {since}"
        )
        load_all = in_window([(r["time"], r["value"]) for r in load_rows], 0, 2**63)
        load_pts = in_window(load_all, lo, hi)
        # the server's points where lanes-load's counter is known on both sides
        srv_lo = max(lo, load_all[0][0]) if load_all else lo
        srv_hi = min(hi, load_all[-1][0]) if load_all else hi
        srv_pts = in_window([(r["time"], r["value"]) for r in srv_rows], srv_lo, srv_hi)
        rates["load"] = mean_rate(load_pts)
        rates["server"] = mean_rate(srv_pts)
        if len(srv_pts) >= 2:
            a = interpolate(load_all, srv_pts[0][0])
            b = interpolate(load_all, srv_pts[-1][0])
            if a is not None and b is not None:
                rates["load_at_server"] = (b - a) / ((srv_pts[-1][0] - srv_pts[0][0]) / 1e9)
        span = lambda pts: (pts[-1][0] - pts[0][0]) / 1e9 if len(pts) >= 2 else 0.0
        detail = (
            f"window {(hi - lo) / 1e9:.2f} s: lanes-load {len(load_pts)} points over "
            f"{span(load_pts):.2f} s, steps [{', '.join(f'{r:.0f}' for r in step_rates(load_pts))}]/s; "
            f"server {len(srv_pts)} points over {span(srv_pts):.2f} s, "
            f"steps [{', '.join(f'{r:.0f}' for r in step_rates(srv_pts))}]/s"
        )
        ok = len(load_pts) >= 3 and len(srv_pts) >= 2 and "load_at_server" in rates
        return ok, detail + ("" if ok else " (want >= 3 lanes-load points, >= 2 server points)")

    def i_rate_server_vs_load():
        s, l = rates.get("server"), rates.get("load_at_server")
        return within(s, l), (
            f"server {fmt(s and round(s))}/s vs lanes-load {fmt(l and round(l))}/s "
            f"between the server's first and last point in the window (within {RATE_TOLERANCE:.0%})"
        )

    def i_rate_load_vs_json():
        l, j = rates.get("load"), run["messages_per_s"]
        return within(l, j), (
            f"lanes-load {fmt(l and round(l))}/s between its first and last point in the window "
            f"vs JSON messages_per_s {j:.0f} (within {RATE_TOLERANCE:.0%})"
        )

    check("influxdb: last messages received == sent_total", i_last)
    check("influxdb: field types", i_types)
    check("influxdb: points in the run", i_rates)
    check("influxdb: server rate ~ lanes-load rate", i_rate_server_vs_load)
    check("influxdb: lanes-load rate ~ its messages_per_s", i_rate_load_vs_json)
    return out


def run_checks(prom, influx, run, deadline_s=CHECK_DEADLINE_S):
    """Poll every check until all hold or the deadline; print the last pass; True when all hold."""
    t0 = time.monotonic()
    while True:
        results = evaluate(prom, influx, run)
        if all(ok for _, ok, _ in results) or time.monotonic() - t0 >= deadline_s:
            break
        time.sleep(1.0)
    log(f"    (checks settled {time.monotonic() - t0:.1f} s after lanes-load exited)")
    for name, ok, detail in results:
        log(f"{'PASS' if ok else 'FAIL'}: {name}: {detail}")
    return results


# ---------------------------------------------------------------- the real test


def pin(core):
    """taskset prefix for core, when taskset exists and this process may use 2+ cores."""
    if shutil.which("taskset") and len(os.sched_getaffinity(0)) >= 2:
        return ["taskset", "-c", str(sorted(os.sched_getaffinity(0))[core])]
    return []


def help_text(binary, *args):
    try:
        p = subprocess.run(
            [binary, *args, "--help"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise Failure(f"{binary} --help: {e}") from e
    return p.stdout + p.stderr


def real(args):
    target = os.path.abspath(args.target_dir)
    echo = os.path.join(target, "release", "examples", "echo")
    load = os.path.join(target, "release", "lanes-load")
    for b in (echo, load):
        if not os.access(b, os.X_OK):
            raise Failure(f"{b} is missing (cargo build --release --locked --example echo -p lanes; -p lanes-load)")
    missing = [f for f in ("--metrics-addr", "--influx", "--influx-interval") if f not in help_text(echo)]
    missing += [
        f"lanes-load {f}" for f in ("--influx", "--influx-db", "--prometheus-port") if f not in help_text(load)
    ]
    if missing:
        raise Failure(f"the binaries lack {', '.join(missing)} (monitoring not built in?)")

    influx_port, rpc_port, prom_port, ws_port, admin_port, load_port = free_ports(6)
    stack = Stack(keep=args.keep)
    try:
        log(f"==> influxd on 127.0.0.1:{influx_port} (RPC {rpc_port}), folder {stack.dir}")
        influx = start_influx(stack, influx_port, rpc_port)
        log(f"==> prometheus on 127.0.0.1:{prom_port}")
        prom = start_prometheus(
            stack,
            prom_port,
            {ECHO_JOB: f"127.0.0.1:{admin_port}", LOAD_JOB: f"127.0.0.1:{load_port}"},
        )
        influx_url = f"http://127.0.0.1:{influx_port}"
        echo_argv = pin(0) + [
            echo,
            "--addr", f"127.0.0.1:{ws_port}",
            "--cores", "1",
            "--metrics-addr", f"127.0.0.1:{admin_port}",
            "--influx", influx_url,
            "--influx-db", DB,
            "--influx-interval", "1",
        ]
        log("==> " + " ".join(echo_argv))
        server = stack.start("echo", echo_argv)
        alive = lambda: stack.check_alive("echo", server)
        wait_until(f"echo on 127.0.0.1:{ws_port}", lambda: port_accepts(ws_port), alive=alive)
        wait_until(
            f"echo /metrics on 127.0.0.1:{admin_port}",
            lambda: request("GET", f"http://127.0.0.1:{admin_port}/metrics", timeout=1)[0] == 200,
            alive=alive,
        )
        wait_until(
            'Prometheus scraping echo (up{job="echo"} == 1)',
            lambda: prom.one(f'up{{job="{ECHO_JOB}"}}') == 1,
            alive=alive,
            interval=0.25,
        )

        connections = 10
        load_argv = pin(1) + [
            load,
            "--addr", f"127.0.0.1:{ws_port}",
            "--duration", str(args.duration),
            "--warmup", str(args.warmup),
            "--influx", influx_url,
            "--influx-db", DB,
            "--prometheus-port", str(load_port),
            "--json",
            "--quiet",
            "echo", "-c", str(connections), "-d", "4", "-s", "64",
        ]
        log("==> " + " ".join(load_argv))
        out_path = stack.path("lanes-load.json")
        with open(out_path, "wb") as out:
            t_launch = time.time_ns()
            proc = stack.start("lanes-load", load_argv, stdout=out)
            try:
                proc.wait(timeout=args.warmup + args.duration + WAIT_S)
            except subprocess.TimeoutExpired:
                raise Failure("lanes-load did not finish in time; its log:\n" + stack.tail("lanes-load"))
            t_exit = time.time_ns()
        with open(out_path, encoding="utf-8", errors="replace") as f:
            stdout = f.read()
        if proc.returncode != 0:
            raise Failure(
                f"lanes-load exited with {proc.returncode}; stdout: {stdout[-2000:]}\nstderr:\n"
                + stack.tail("lanes-load")
            )
        doc = None
        for line in reversed(stdout.splitlines()):
            line = line.strip()
            if line.startswith("{"):
                doc = json.loads(line)
                break
        if doc is None:
            raise Failure(f"no JSON object in lanes-load's output: {stdout[-2000:]!r}")
        for key in ("sent_total", "messages", "messages_per_s"):
            if not isinstance(doc.get(key), (int, float)):
                raise Failure(f"lanes-load JSON lacks a number {key!r}: {json.dumps(doc)[:2000]}")
        log(
            f"    lanes-load: sent_total {doc['sent_total']}, messages {doc['messages']}, "
            f"messages_per_s {doc['messages_per_s']:.0f}, errors {doc.get('errors')}, "
            f"{(t_exit - t_launch) / 1e9:.2f} s from launch to exit"
        )
        if doc.get("errors"):
            log(f"FAIL: lanes-load reported errors: {doc.get('first_error')}")
            return False
        stack.check_alive("echo", server)
        run = {
            "sent_total": int(doc["sent_total"]),
            "messages_per_s": float(doc["messages_per_s"]),
            "connections": connections,
            "t_launch_ns": t_launch,
            "t_exit_ns": t_exit,
            "warmup_s": args.warmup,
            "duration_s": args.duration,
        }
        results = run_checks(prom, influx, run)
        ok = all(ok for _, ok, _ in results)
        if not ok:
            for name in ("echo", "influxd", "prometheus", "lanes-load"):
                tail = stack.tail(name, 15)
                if tail:
                    log(f"---- {name} log (tail)\n{tail}")
        return ok
    finally:
        stack.stop()


# ---------------------------------------------------------------- self-test: a fake exporter


class FakeRun:
    """Counts messages at `rate`/s for warmup + duration seconds, like lanes-load echo against
    examples/echo; serves both sides' /metrics and writes both sides' line protocol every second.
    broken=True: Prometheus total off by one, InfluxDB server counter doubled, lanes-load's
    InfluxDB counter written as a float."""

    def __init__(self, influx, admin_port, load_port, rate, warmup, duration, broken):
        self.influx, self.rate, self.broken = influx, rate, broken
        self.warmup, self.duration = warmup, duration
        self.t0 = None
        self.t_end = None
        self.lock = threading.Lock()
        self.stop_evt = threading.Event()
        self.errors = []
        self.admin = self._serve(admin_port, self.server_text)
        self.load = None
        self.load_port = load_port
        self.threads = [threading.Thread(target=self._server_reporter, daemon=True)]
        self.threads[0].start()

    def count(self):
        with self.lock:
            if self.t0 is None:
                return 0
            t = min(time.monotonic(), self.t_end) if self.t_end else time.monotonic()
            return int(self.rate * (t - self.t0))

    def _serve(self, port, text_fn):
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path != "/metrics":
                    self.send_error(404)
                    return
                body = text_fn().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        return srv

    def server_text(self):
        n = self.count()
        total = n + 1 if self.broken else n
        opened = 10 if self.t0 is not None else 0
        lag = n // 100 + 1
        return f"""\
# TYPE lanes_messages_received_total counter
lanes_messages_received_total{{core="0"}} {n}
lanes_messages_received_total{{core="all"}} {total}
# TYPE lanes_messages_sent_total counter
lanes_messages_sent_total{{core="0"}} {n}
lanes_messages_sent_total{{core="all"}} {n}
# TYPE lanes_connections_opened_total counter
lanes_connections_opened_total{{core="0"}} {opened}
lanes_connections_opened_total{{core="all"}} {opened}
# TYPE lanes_loop_lag_seconds histogram
lanes_loop_lag_seconds_bucket{{core="all",le="0.000001"}} 0
lanes_loop_lag_seconds_bucket{{core="all",le="+Inf"}} {lag}
lanes_loop_lag_seconds_sum{{core="all"}} 0.001
lanes_loop_lag_seconds_count{{core="all"}} {lag}
"""

    def load_text(self):
        return f"# TYPE lanes_load_messages_sent_total counter\nlanes_load_messages_sent_total {self.count()}\n"

    def _write(self, lines):
        try:
            self.influx.write(lines)
        except OSError as e:
            self.errors.append(str(e))

    def _server_reporter(self):
        # like the server's reporter: a point every second whether or not there is traffic
        while not self.stop_evt.wait(1.0):
            n = self.count()
            ts = time.time_ns()
            v = 2 * n if self.broken else n
            self._write(
                [
                    f"lanes_messages_received_total,core=0 value={v}i {ts}",
                    f"lanes_messages_received_total,core=all value={v}i {ts}",
                    f"lanes_loop_lag_seconds,core=all count={n // 100 + 1}i,sum=0.001,"
                    f"p50=0.000002,p90=0.000004,p99=0.000008,p999=0.000016 {ts}",
                ]
            )

    def run(self):
        """The 'lanes-load' run: /metrics served and pushes every second; returns its JSON."""
        self.load = self._serve(self.load_port, self.load_text)
        with self.lock:
            self.t0 = time.monotonic()
        t_measure = self.t0 + self.warmup
        end = t_measure + self.duration
        suffix = "" if self.broken else "i"
        while True:
            now = time.monotonic()
            if now >= end:
                break
            time.sleep(min(1.0, end - now))
            self._write([f"lanes_load_messages_sent_total value={self.count()}{suffix} {time.time_ns()}"])
        with self.lock:
            self.t_end = end
        self.load.shutdown()
        self.load.server_close()
        n = self.count()
        measured = int(self.rate * self.duration)
        return {"sent_total": n, "messages": measured, "messages_per_s": measured / self.duration}

    def close(self):
        self.stop_evt.set()
        self.admin.shutdown()
        self.admin.server_close()


def self_test_one(broken, args):
    influx_port, rpc_port, prom_port, admin_port, load_port = free_ports(5)
    stack = Stack(keep=args.keep)
    fake = None
    try:
        log(f"==> influxd on 127.0.0.1:{influx_port} (RPC {rpc_port}), folder {stack.dir}")
        t = time.monotonic()
        influx = start_influx(stack, influx_port, rpc_port)
        log(f"    ready in {time.monotonic() - t:.1f} s; prometheus on 127.0.0.1:{prom_port}")
        t = time.monotonic()
        prom = start_prometheus(
            stack,
            prom_port,
            {ECHO_JOB: f"127.0.0.1:{admin_port}", LOAD_JOB: f"127.0.0.1:{load_port}"},
        )
        log(f"    ready in {time.monotonic() - t:.1f} s; fake exporter on {admin_port} and {load_port}")
        fake = FakeRun(influx, admin_port, load_port, 2000, args.warmup, args.duration, broken)
        wait_until(
            'Prometheus scraping the fake server (up{job="echo"} == 1)',
            lambda: prom.one(f'up{{job="{ECHO_JOB}"}}') == 1,
            interval=0.25,
        )
        t_launch = time.time_ns()
        doc = fake.run()
        t_exit = time.time_ns()
        log(f"    fake run: {doc}")
        run = dict(
            doc,
            connections=10,
            t_launch_ns=t_launch,
            t_exit_ns=t_exit,
            warmup_s=args.warmup,
            duration_s=args.duration,
        )
        results = run_checks(prom, influx, run, deadline_s=8.0 if broken else CHECK_DEADLINE_S)
        if fake.errors:
            log(f"FAIL: the fake's InfluxDB writes failed: {fake.errors[:3]}")
            return None
        return results
    finally:
        if fake is not None:
            fake.close()
        stack.stop()


def self_test(args):
    log("==> self-test 1/2: a correct fake exporter (every check must pass)")
    good = self_test_one(False, args)
    ok_good = good is not None and all(ok for _, ok, _ in good)
    log(f"{'PASS' if ok_good else 'FAIL'}: self-test, correct fake: every check passed" if ok_good
        else "FAIL: self-test, correct fake: some check failed")

    log("==> self-test 2/2: a broken fake (off by one, doubled InfluxDB counter, float field)")
    bad = self_test_one(True, args)
    expected_failures = {
        "prometheus: messages received == sent_total",
        "prometheus: per-core sum == core=all",
        "influxdb: last messages received == sent_total",
        "influxdb: field types",
        "influxdb: server rate ~ lanes-load rate",
    }
    if bad is None:
        ok_bad = False
        log("FAIL: self-test, broken fake: did not run")
    else:
        failed = {name for name, ok, _ in bad if not ok}
        ok_bad = failed == expected_failures
        log(
            f"{'PASS' if ok_bad else 'FAIL'}: self-test, broken fake: the checks failed "
            f"{'exactly as expected' if ok_bad else 'differently'} "
            f"(failed: {sorted(failed)}; expected: {sorted(expected_failures)})"
        )
    return ok_good and ok_bad


# ---------------------------------------------------------------- main


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    repo = os.path.dirname(os.path.dirname(here))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--self-test", action="store_true", help="fake exporter instead of the binaries")
    ap.add_argument("--target-dir", default=os.environ.get("CARGO_TARGET_DIR", os.path.join(repo, "target")))
    ap.add_argument("--duration", type=float, default=3)
    ap.add_argument("--warmup", type=float, default=1)
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, data)")
    args = ap.parse_args()
    for tool in ("influxd", "prometheus"):
        if not shutil.which(tool):
            log(f"FAIL: {tool} is not on PATH (scripts/monitoring_test.sh installs it)")
            return 1

    # SIGTERM/SIGHUP become SystemExit, so the finally blocks stop every process
    def on_signal(signum, _frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    t0 = time.monotonic()
    try:
        ok = self_test(args) if args.self_test else real(args)
    except Failure as e:
        log(f"FAIL: {e}")
        ok = False
    except KeyboardInterrupt:
        log("FAIL: interrupted (everything started was stopped)")
        return 130
    except SystemExit as e:
        log("FAIL: stopped by a signal (everything started was stopped)")
        raise
    log(f"{'PASS' if ok else 'FAIL'}: monitoring integration{' self-test' if args.self_test else ''} "
        f"({time.monotonic() - t0:.1f} s)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
