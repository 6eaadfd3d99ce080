#!/usr/bin/env python3
"""Turns scripts/compare.sh's results.json into results.md (tables) and chart.svg.

Usage: compare_report.py RESULTS_JSON OUT_DIR MACHINE COMMIT DURATION WARMUP
"""
import json
import math
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


def main():
    path, out, machine, commit, duration, warmup = sys.argv[1:7]
    rows = load(path)
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
    repeats = max((len(v) for v in grouped.values()), default=1)
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
    with open(f"{out}/results.md", "w") as f:
        f.write("\n".join(lines))

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
