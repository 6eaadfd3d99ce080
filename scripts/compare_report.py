#!/usr/bin/env python3
"""Turns scripts/compare.sh's results.json into results.md (tables) and chart.svg.

Rows are {"server", "scheme", "run"}: scheme "ws" (or none, as older files have) for the plain
section, "wss" for the TLS one, which gets a table of its own: server CPU per message and TLS
handshakes per server CPU-second, each with its median, the spread of the runs, and the peer's
CPU against lanes'.

Usage: compare_report.py RESULTS_JSON OUT_DIR MACHINE COMMIT DURATION WARMUP
"""
import json
import math
import os
import sys
from html import escape

COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"]


def size_label(size):
    if size >= 1 << 20:
        return f"{size >> 20} MiB"
    if size >= 1 << 10:
        return f"{size >> 10} KiB"
    return f"{size} B"


def load(path):
    rows = []
    with open(path) as f:
        for line in f:
            if line.strip():
                rows.append(json.loads(line))
    return rows


def median(values):
    """The middle value (the upper middle one for an even count), as for messages/s."""
    values = sorted(values)
    return values[len(values) // 2]


def wss_table(rows, lines):
    """The wss section: one row per load, one column per server (lanes first)."""
    servers = []
    for r in rows:
        if r["server"] not in servers:
            servers.append(r["server"])
    if "lanes" in servers:
        servers.remove("lanes")
        servers.insert(0, "lanes")
    by = {}
    failed_start = {r["server"] for r in rows if r["run"].get("mode") == "start"}
    loads = []
    for r in rows:
        run = r["run"]
        if run.get("mode") == "echo":
            key = ("echo", run["connections"], run["size"], run["depth"])
        elif run.get("mode") == "connect":
            key = ("connect", "resumed" if (run.get("tls") or {}).get("resume", True) else "full")
        else:
            continue
        if key not in loads:
            loads.append(key)
        by.setdefault((r["server"], key), []).append(run)

    def label(key):
        if key[0] == "echo":
            _, c, s, d = key
            return f"server CPU per message (µs), {c} conns × {size_label(s)} × depth {d}"
        return f"TLS handshakes per server CPU-second, one at a time, {key[1]}"

    # Per run: the CPU cost (µs of server CPU per message or per handshake), from which the
    # cell's figure, its spread and the ratio to lanes come.
    def costs(runs, key):
        field = "messages_per_server_cpu_s" if key[0] == "echo" else "handshakes_per_server_cpu_s"
        return [1e6 / x[field] for x in runs if not x.get("failed") and x.get(field)]

    def fmt(key, cost):
        # echo: µs per message; connect: handshakes per CPU-second.
        return f"{cost:.2f}" if key[0] == "echo" else f"{1e6 / cost:,.0f}"

    repeats = max((len(v) for v in by.values()), default=1)
    lines.append("## wss (TLS)")
    lines.append("")
    lines.append(
        "Every server in its TLS mode with its usual TLS stack: lanes (rustls 0.23, ring), "
        "tokio-tungstenite and fastwebsockets through tokio-rustls over the same rustls and ring, "
        "gorilla with Go's crypto/tls (http.ListenAndServeTLS), Node ws on https.createServer "
        "(OpenSSL); session tickets on as each stack has them by default (rustls: a Ticketer, as "
        "lanes sets). A throwaway CA and localhost certificate (ECDSA P-256) made for the run; "
        "lanes-load trusts the CA (--ca), offers TLS 1.2 and 1.3 and ALPN http/1.1; all settle on TLS "
        "1.3 with X25519, and each server picks its cipher suite (when this table was written: "
        "lanes and gorilla AES-128-GCM, their own preference; the others AES-256-GCM, the client's first). Cells: the "
        f"median of {repeats} run(s) [lowest – highest]; ×: the peer's server CPU per message "
        "(or per handshake) over lanes' (above 1: the peer spends more CPU than lanes), "
        "\"within spread\" when the two servers' ranges overlap. Resumed rows say so when fewer "
        "than all handshakes resumed (Node ws, with its defaults, sent two tickets after a full "
        "handshake and none after a resumed one, so one handshake in three was a full one).")
    lines.append("")
    lines.append("| wss load | " + " | ".join(servers) + " |")
    lines.append("|---|" + "---|" * len(servers))
    for key in loads:
        lanes_costs = costs(by.get(("lanes", key), []), key)
        cells = []
        for name in servers:
            runs = by.get((name, key), [])
            c = costs(runs, key)
            if name in failed_start or not c:
                cells.append("failed")
                continue
            lo, mid, hi = min(c), median(c), max(c)
            if key[0] == "connect":
                lo, hi = hi, lo  # handshakes per CPU-second: the costliest run is the lowest
            cell = f"{fmt(key, mid)} [{fmt(key, lo)} – {fmt(key, hi)}]"
            if name != "lanes" and lanes_costs:
                cell += f" ×{mid / median(lanes_costs):.2f}"
                if min(c) <= max(lanes_costs) and min(lanes_costs) <= max(c):
                    cell += " (within spread)"
            ok = [x for x in runs if not x.get("failed")]
            if len(ok) < len(runs):
                cell += f" ({len(runs) - len(ok)} of {len(runs)} runs failed)"
            errors = sum(x.get("errors", 0) for x in ok)
            if errors:
                cell += f" ({errors} errors)"
            if key == ("connect", "resumed"):
                done = sum(x.get("handshakes", 0) for x in ok)
                resumed = sum(x.get("tls_resumed") or 0 for x in ok)
                if done and resumed < done:
                    cell += f" ({100 * resumed / done:.0f}% resumed)"
            cells.append(cell)
        lines.append(f"| {label(key)} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("wss messages/s and handshakes/s (medians; the load generator's own limit in parentheses, "
                 "messages per client CPU-second: when messages/s comes close to it, the run "
                 "measured the client):")
    lines.append("")
    lines.append("| wss load | " + " | ".join(servers) + " |")
    lines.append("|---|" + "---|" * len(servers))
    for key in loads:
        cells = []
        for name in servers:
            ok = [x for x in by.get((name, key), []) if not x.get("failed")]
            if not ok:
                cells.append("failed")
            elif key[0] == "echo":
                rate = median(x.get("messages_per_s") or 0 for x in ok)
                client = [x["messages_per_client_cpu_s"] for x in ok if x.get("messages_per_client_cpu_s")]
                cells.append(f"{rate:,.0f}" + (f" ({median(client):,.0f})" if client else ""))
            else:
                cells.append(f"{median(x.get('handshakes_per_s') or 0 for x in ok):,.0f}")
        what = "messages/s" if key[0] == "echo" else "handshakes/s"
        name = label(key).split(", ", 1)[1]
        lines.append(f"| {what}, {name} | " + " | ".join(cells) + " |")
    lines.append("")


def main():
    path, out, machine, commit, duration, warmup = sys.argv[1:7]
    every = load(path)
    rows = [r for r in every if r.get("scheme", "ws") == "ws"]
    wss_rows = [r for r in every if r.get("scheme") == "wss"]
    servers = []
    for r in rows:
        if r["server"] not in servers:
            servers.append(r["server"])
    # Repeated runs of a configuration are reduced to their median (by messages/s; the CPU
    # figures are medians of their own).
    grouped = {}
    configs = []
    for r in rows:
        run = r["run"]
        if run.get("mode") != "echo":
            continue
        key = (run["connections"], run["size"], run["depth"])
        if key not in configs:
            configs.append(key)
        grouped.setdefault((r["server"], key), []).append(run)
    echo = {}
    for k, runs in grouped.items():
        ok = [x for x in runs if not x.get("failed")]
        if not ok:
            echo[k] = runs[0]
            continue
        ok.sort(key=lambda x: x.get("messages_per_s") or 0)
        median = dict(ok[len(ok) // 2])
        for field in ("messages_per_server_cpu_s", "messages_per_client_cpu_s"):
            values = sorted(x[field] for x in ok if x.get(field) is not None)
            if values:
                median[field] = values[len(values) // 2]
        median["errors"] = sum(x.get("errors", 0) for x in ok)
        median["runs"] = len(runs)
        echo[k] = median
    # Runs per cell, over both sections (a wss-only run has no ws cells).
    per_cell = {}
    for r in every:
        run = r["run"]
        key = (r["server"], r.get("scheme", "ws"), run.get("mode"), run.get("connections"),
               run.get("size"), run.get("depth"), (run.get("tls") or {}).get("resume"))
        per_cell[key] = per_cell.get(key, 0) + 1
    repeats = max(per_cell.values(), default=1)
    connect = {r["server"]: r["run"] for r in rows if r["run"].get("mode") == "connect"}
    idle = {r["server"]: r["run"] for r in rows if r["run"].get("mode") == "idle"}

    def cell(run, field):
        if run is None or run.get("failed"):
            return "failed"
        if run.get("errors"):
            return f"{run.get(field) or 0:,.0f} ({run['errors']} errors)"
        value = run.get(field)
        return "-" if value is None else f"{value:,.0f}"

    lines = []
    lines.append(f"Machine: {machine}. Commit: {commit}. Every server pinned to core 0 (one thread); "
                 f"lanes-load pinned to core 1; {duration} s measured after {warmup} s warm-up; "
                 f"binary messages; every echo checked in full; median of {repeats} run(s) per cell, "
                 "servers taking turns.")
    lines.append("")
    header = "| connections × payload × depth | " + " | ".join(servers) + " |"
    rule = "|---|" + "---|" * len(servers)
    def table(title, field):
        lines.append(title)
        lines.append("")
        lines.append(header)
        lines.append(rule)
        for key in configs:
            c, s, d = key
            cells = [cell(echo.get((name, key)), field) for name in servers]
            lines.append(f"| {c} × {size_label(s)} × {d} | " + " | ".join(cells) + " |")
        lines.append("")

    if rows:
        lines.append("## ws (plain TCP)")
        lines.append("")
        table("Messages per second:", "messages_per_s")
        table("Messages per server CPU-second (server CPU time from /proc over the measured window):",
              "messages_per_server_cpu_s")
        table("The load generator's own limit: messages per client CPU-second (one client thread; when "
              "messages/s comes close to it, the run measured the client, not the server):",
              "messages_per_client_cpu_s")
        lines.append("| | " + " | ".join(servers) + " |")
        lines.append(rule)
        lines.append("| handshakes/s (one at a time) | " + " | ".join(cell(connect.get(n), "handshakes_per_s") for n in servers) + " |")
        rss = []
        for name in servers:
            run = idle.get(name)
            if not run or not run.get("ok"):
                rss.append("failed")
            else:
                per = (run["rss_after_kib"] - run["rss_before_kib"]) * 1024 / run["connections"]
                rss.append(f"{per:,.0f} B")
        n = next((r["connections"] for r in idle.values()), 0)
        lines.append(f"| RSS per idle connection ({n:,} connections) | " + " | ".join(rss) + " |")
        lines.append("")
    if wss_rows:
        wss_table(wss_rows, lines)
    with open(f"{out}/results.md", "w") as f:
        f.write("\n".join(lines))
    if not configs:  # no ws section: no chart (and none left from an earlier run)
        if os.path.exists(f"{out}/chart.svg"):
            os.remove(f"{out}/chart.svg")
        return

    # Chart: one group of bars per configuration, one bar per server, log scale.
    bar_h, gap, left, width = 9, 10, 190, 560
    height = len(configs) * (len(servers) * bar_h + gap) + 80
    values = [run["messages_per_s"] for run in echo.values() if not run.get("failed") and run.get("messages_per_s")]
    top = max(values) if values else 1
    lo = 100
    scale = lambda v: 0 if v <= lo else width * (math.log10(v) - math.log10(lo)) / (math.log10(top * 1.2) - math.log10(lo))
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 40}" height="{height}" font-family="sans-serif" font-size="11">',
           f'<text x="10" y="18" font-size="13">Echo messages/s (log scale), one server core — {escape(commit)}</text>']
    for i, name in enumerate(servers):
        svg.append(f'<rect x="{10 + i * 130}" y="28" width="10" height="10" fill="{COLORS[i % len(COLORS)]}"/>'
                   f'<text x="{24 + i * 130}" y="37">{escape(name)}</text>')
    y = 55
    for key in configs:
        c, s, d = key
        svg.append(f'<text x="10" y="{y + len(servers) * bar_h / 2 + 4}">{c} × {size_label(s)} × {d}</text>')
        for i, name in enumerate(servers):
            run = echo.get((name, key))
            v = 0 if not run or run.get("failed") else run.get("messages_per_s", 0)
            w = scale(v)
            svg.append(f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{bar_h - 1}" fill="{COLORS[i % len(COLORS)]}"/>')
            if v:
                svg.append(f'<text x="{left + w + 3:.1f}" y="{y + bar_h - 1}" font-size="8">{v:,.0f}</text>')
            y += bar_h
        y += gap
    svg.append("</svg>")
    with open(f"{out}/chart.svg", "w") as f:
        f.write("\n".join(svg))


if __name__ == "__main__":
    main()
