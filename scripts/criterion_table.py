#!/usr/bin/env python3
"""Prints a Markdown table from criterion's results under target/criterion.

One row per benchmark: group, function, input, mean time, throughput. For the `unmask` group it
adds each kernel's throughput as a ratio to memcpy of the same size, measured in the same run.

Usage: scripts/criterion_table.py [TARGET_DIR] [GROUP ...]
"""
import json
import os
import sys


def load(target_dir):
    root = os.path.join(target_dir, "criterion")
    rows = []
    for dirpath, _dirs, files in os.walk(root):
        if os.path.basename(dirpath) != "new" or "benchmark.json" not in files:
            continue
        with open(os.path.join(dirpath, "benchmark.json")) as f:
            bench = json.load(f)
        with open(os.path.join(dirpath, "estimates.json")) as f:
            est = json.load(f)
        mean_ns = est["mean"]["point_estimate"]
        throughput = bench.get("throughput") or {}
        rows.append(
            {
                "group": bench["group_id"],
                "function": bench.get("function_id") or "",
                "input": bench.get("value_str") or "",
                "mean_ns": mean_ns,
                "bytes": throughput.get("Bytes") or throughput.get("BytesDecimal"),
                "elements": throughput.get("Elements"),
            }
        )
    return rows


def fmt_time(ns):
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= scale:
            return f"{ns / scale:.2f} {unit}"
    return f"{ns:.2f} ns"


def fmt_rate(row):
    if row["bytes"]:
        gbps = row["bytes"] / row["mean_ns"]  # bytes per ns = GB/s
        return f"{gbps:.1f} GB/s"
    if row["elements"]:
        per_s = row["elements"] / row["mean_ns"] * 1e9
        return f"{per_s / 1e6:.2f} M/s"
    return ""


def main():
    target_dir = sys.argv[1] if len(sys.argv) > 1 else "target"
    groups = set(sys.argv[2:])
    rows = [r for r in load(target_dir) if not groups or r["group"] in groups]
    if not rows:
        print("no criterion results found", file=sys.stderr)
        return 1
    memcpy = {
        r["input"]: r["mean_ns"] for r in rows if r["group"] == "unmask" and r["function"] == "memcpy"
    }
    order = {"bytewise": 0, "kernel": 1, "kernel-baseline": 2, "memcpy": 3}

    def size_key(text):
        try:
            number, unit = text.split()[:2]
            return int(number) * {"B": 1, "KiB": 1024, "MiB": 1 << 20}.get(unit, 1)
        except ValueError:
            return text

    rows.sort(key=lambda r: (r["group"], str(size_key(r["input"])).zfill(12), order.get(r["function"], 9), r["function"]))
    print("| group | benchmark | input | mean time | throughput | vs memcpy |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        ratio = ""
        if r["group"] == "unmask" and r["input"] in memcpy:
            ratio = f"{memcpy[r['input']] / r['mean_ns']:.2f}x"
        print(
            f"| {r['group']} | {r['function']} | {r['input']} | {fmt_time(r['mean_ns'])} | {fmt_rate(r)} | {ratio} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
