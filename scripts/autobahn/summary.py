#!/usr/bin/env python3
"""Summarises an Autobahn|Testsuite fuzzingclient report (its index.json).

Usage: summary.py REPORTS/index.json

Prints how many cases got each `behavior` and each `behaviorClose`, then every case that was not
OK in either. Exits 1 when a case FAILED or was NON-STRICT (in either field; for behaviorClose
also WRONG CODE and UNCLEAN, and any value this script does not know), or when no case ran.
INFORMATIONAL, UNIMPLEMENTED and FAILED BY CLIENT (the server left closing the TCP connection to
the client) are listed but do not fail the run.
"""

import json
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


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__.strip())
    with open(sys.argv[1]) as f:
        index = json.load(f)

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

    total = sum(len(cases) for cases in index.values())
    if total == 0:
        print("FAIL: no case ran")
        return 1
    if bad:
        print("FAIL: cases marked ! failed or were non-strict")
        return 1
    print("PASS: %d cases, none failed or non-strict" % total)
    return 0


if __name__ == "__main__":
    sys.exit(main())
