#!/usr/bin/env python3
"""Summarises Autobahn|Testsuite fuzzingclient reports (their index.json).

Usage: summary.py [--expect CASES.txt] [--agents A,B] [--merge-to MERGED.json] REPORTS/index.json...

Several index.json (those of wstest runs that shared out the cases) are merged first; a case in
more than one of them is an error. --merge-to writes the merged index there, each case's
"reportfile" made relative to that file's folder. --expect names a file of case ids, one a line:
the cases that should have run; one missing from the reports fails the run. --agents names the
agents (servers of the spec, e.g. lanes for ws:// and lanes-wss for wss://) that each should have
run every expected case; without it, those found in the reports.

Prints how many cases got each `behavior` and each `behaviorClose`, then every case that was not
OK in either. Exits 1 when a case FAILED or was NON-STRICT (in either field; for behaviorClose
also WRONG CODE and UNCLEAN, and any value this script does not know), when an expected case is
missing, or when no case ran.
INFORMATIONAL, UNIMPLEMENTED and FAILED BY CLIENT (the server left closing the TCP connection to
the client) are listed but do not fail the run.
"""

import json
import os
import sys
from collections import Counter

# Outcomes that do not fail the run; everything else does (unknown values included).
ACCEPTED_BEHAVIOR = {"OK", "INFORMATIONAL", "UNIMPLEMENTED"}
ACCEPTED_CLOSE = {"OK", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED BY CLIENT"}
# Printed first, in this order; other values follow alphabetically.
ORDER = ["OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED"]


def case_key(case_id):
    """Sorts "1.1.10" after "1.1.9"."""
    return [int(part) if part.isdigit() else part for part in case_id.split(".")]


def counts_line(name, counter):
    values = [v for v in ORDER if v in counter] + sorted(v for v in counter if v not in ORDER)
    return "%-14s %s" % (name + ":", ", ".join("%s %d" % (v, counter[v]) for v in values))


def merge(paths, merged_path):
    """The agents' cases of all index.json files; reportfile relative to merged_path's folder."""
    index = {}
    for path in paths:
        with open(path) as f:
            part = json.load(f)
        for agent, cases in part.items():
            into = index.setdefault(agent, {})
            for case_id, c in cases.items():
                if case_id in into:
                    sys.exit("summary.py: case %s of agent %s is in more than one report"
                             % (case_id, agent))
                if merged_path and c.get("reportfile"):
                    c = dict(c)
                    c["reportfile"] = os.path.relpath(
                        os.path.join(os.path.dirname(os.path.abspath(path)), c["reportfile"]),
                        os.path.dirname(os.path.abspath(merged_path)))
                into[case_id] = c
    return index


def main():
    args = sys.argv[1:]
    expect_path = merged_path = None
    agents = None
    while len(args) >= 2 and args[0] in ("--expect", "--agents", "--merge-to"):
        if args[0] == "--expect":
            expect_path = args[1]
        elif args[0] == "--agents":
            agents = [a for a in args[1].split(",") if a]
        else:
            merged_path = args[1]
        args = args[2:]
    if not args or any(a.startswith("-") for a in args):
        sys.exit(__doc__.strip())

    index = merge(args, merged_path)
    if merged_path:
        os.makedirs(os.path.dirname(os.path.abspath(merged_path)), exist_ok=True)
        with open(merged_path, "w") as f:
            json.dump(index, f, indent=3, sort_keys=True)

    bad = False
    for agent, cases in sorted(index.items()):
        behavior = Counter(c.get("behavior", "?") for c in cases.values())
        close = Counter(c.get("behaviorClose", "?") for c in cases.values())
        print("agent %s: %d cases" % (agent, len(cases)))
        print(counts_line("behavior", behavior))
        print(counts_line("behaviorClose", close))

        not_ok = [
            (case_id, c) for case_id, c in sorted(cases.items(), key=lambda kv: case_key(kv[0]))
            if c.get("behavior") != "OK" or c.get("behaviorClose") != "OK"
        ]
        if not_ok:
            print("not OK (case, behavior, behaviorClose, remote close code):")
        for case_id, c in not_ok:
            fatal = (c.get("behavior") not in ACCEPTED_BEHAVIOR
                     or c.get("behaviorClose") not in ACCEPTED_CLOSE)
            bad = bad or fatal
            print("  %s %-9s %-14s %-17s %s" % (
                "!" if fatal else " ", case_id, c.get("behavior"), c.get("behaviorClose"),
                c.get("remoteCloseCode")))

    missing = []
    if expect_path:
        with open(expect_path) as f:
            expected = [line.strip() for line in f if line.strip()]
        for agent in agents or sorted(index) or ["?"]:
            cases = index.get(agent, {})
            missing += ["%s (agent %s)" % (c, agent) for c in expected if c not in cases]
        if missing:
            print("missing from the reports: %s" % ", ".join(missing))
    unexpected = sorted(set(index) - set(agents)) if agents else []
    if unexpected:
        print("agents not asked for in the reports: %s" % ", ".join(unexpected))

    total = sum(len(cases) for cases in index.values())
    if total == 0:
        print("FAIL: no case ran")
        return 1
    if bad or missing or unexpected:
        print("FAIL: %s" % " and ".join(
            ([] if not bad else ["cases marked ! failed or were non-strict"])
            + ([] if not missing else ["%d expected cases did not run" % len(missing)])
            + ([] if not unexpected else ["unexpected agents"])))
        return 1
    print("PASS: %d cases (%s), none failed or non-strict" % (
        total, ", ".join("%s %d" % (a, len(c)) for a, c in sorted(index.items()))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
