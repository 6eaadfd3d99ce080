#!/usr/bin/env python3
"""Splits the Autobahn|Testsuite cases of a run into shards of about equal running time.

Usage: shard.py SPEC PROBE_LOG JOBS OUT

SPEC is the run's fuzzingclient spec; PROBE_LOG the output of `wstest -m fuzzingclient` with the
cases ["*"], whose line "Cases = [...]" lists all the case ids wstest knows. The spec's cases minus
its exclude-cases are resolved as wstest does it (a pattern with "*" is a regular expression, "*"
for ".*", that must match the start of an id; anything else is an exact id), except that an exact
id in the cases that wstest does not know is an error here (wstest would stop at it and wait for
ever); in the exclude-cases, a warning.

Writes OUT/cases.txt (the case ids, one a line) and, for K = 1..S with S = min(JOBS, cases),
OUT/fuzzingclient-K.json: SPEC with outdir OUT/reports-K, its cases an explicit list of ids and no
exclude-cases. The cases go to shards greedily, most expensive first, each to the shard with the
least estimated time so far (COST_S below). Each shard runs its cases against every server of
SPEC (ws:// and wss://), so a case costs its estimate times the number of servers. Prints the
plan to stderr and "S SECONDS" to stdout, SECONDS being the estimated time of the longest shard.
"""

import ast
import json
import os
import re
import sys

# Estimated seconds of one case against one server with wstest (Python 2 with wsaccel; its zlib
# and the server's compression are most of a 12.*/13.* case now), the mean of ws:// and wss://
# (within the machine's noise of each other), measured on a 2-core machine with two shards
# running beside other work (load average 5-7: all 517 cases x 2 servers, 1210 s); a case not
# listed costs DEFAULT_COST_S. Only the ratios matter for the balance; the longest shard's sum
# also sets autobahn.sh's default timeout.
DEFAULT_COST_S = 0.05
# 12.X.Y and 13.X.Y by Y (1..18: message size and auto-fragment size, see MSG_SIZES in
# autobahntestsuite/case/case12_x_x.py), for each payload: 12.X by X (json, lena512.bmp, Faust,
# html, a PDF) and 13.* (json, mean of 13.1-13.7). The binary payloads compress worse, so both
# ends have more to deflate and inflate.
DEFLATE_COST_S = {
    "12.1": [1.0, 0.6, 0.9, 0.9, 0.9, 1.4, 1.7, 2.0, 3.5, 6.3,
             1.3, 2.1, 2.6, 3.5, 7.0, 7.6, 5.9, 6.8],
    "12.2": [0.5, 0.5, 0.6, 1.0, 1.2, 1.5, 2.8, 5.0, 10.4, 19.4,
             2.6, 4.5, 7.6, 15.9, 42.1, 25.9, 22.4, 19.3],
    "12.3": [0.4, 0.5, 0.5, 0.5, 1.3, 2.2, 3.6, 7.0, 14.1, 30.7,
             3.0, 4.8, 12.1, 19.6, 36.4, 32.8, 32.2, 30.6],
    "12.4": [2.0, 1.9, 2.0, 1.8, 2.1, 2.7, 3.3, 3.4, 5.6, 9.7,
             2.7, 2.6, 4.6, 6.9, 10.5, 8.4, 8.1, 9.5],
    "12.5": [0.5, 0.8, 0.5, 0.8, 1.6, 1.4, 2.4, 4.0, 8.4, 14.0,
             2.8, 4.0, 7.3, 14.1, 29.1, 18.8, 17.7, 17.7],
    "13": [1.1, 1.3, 1.2, 1.2, 1.5, 1.7, 2.0, 2.8, 4.3, 7.1,
           1.7, 2.2, 3.1, 4.3, 7.4, 7.4, 7.0, 7.2],
}
# Other cases, by id or by the id's first two parts ("9.3" for 9.3.*).
COST_S = {
    "5.19": 1.0, "5.20": 1.0, "6.4": 1.0,
    "9.1.4": 0.17, "9.1.5": 0.3, "9.1.6": 0.64,
    "9.2.4": 0.13, "9.2.5": 0.35, "9.2.6": 0.72,
    "9.3": 0.1, "9.3.1": 1.42, "9.3.2": 0.46, "9.3.3": 0.25,
    "9.4": 0.06, "9.4.1": 1.77, "9.4.2": 0.46, "9.4.3": 0.16,
    "9.5": 0.14, "9.5.1": 2.03, "9.5.2": 0.96, "9.5.3": 0.51, "9.5.4": 0.25,
    "9.6": 0.15, "9.6.1": 2.42, "9.6.2": 1.31, "9.6.3": 0.61, "9.6.4": 0.32,
    "9.7": 0.3, "9.7.5": 0.49, "9.7.6": 0.75,
    "9.8": 0.4, "9.8.5": 0.48, "9.8.6": 0.84,
}


def case_key(case_id):
    """Sorts "1.1.10" after "1.1.9"."""
    return [int(part) if part.isdigit() else part for part in case_id.split(".")]


def cost(case_id):
    parts = case_id.split(".")
    if len(parts) == 3 and parts[0] in ("12", "13") and all(p.isdigit() for p in parts[1:]):
        row = DEFLATE_COST_S.get(parts[0] if parts[0] == "13" else ".".join(parts[:2]))
        y = int(parts[2])
        if row and 1 <= y <= len(row):
            return row[y - 1]
    if case_id in COST_S:
        return COST_S[case_id]
    return COST_S.get(".".join(parts[:2]), DEFAULT_COST_S)


def probe_cases(log):
    """The case list wstest printed ("Cases = ['1.1.1', ...]", Python 2 repr)."""
    with open(log) as f:
        for line in f:
            if line.startswith("Cases = "):
                return [str(c) for c in ast.literal_eval(line[len("Cases = "):].strip())]
    sys.exit("shard.py: no \"Cases = [...]\" line in %s" % log)


def resolve(patterns, known, what, strict):
    """The ids of known that patterns name (autobahntestsuite/caseset.py resolveCasePatternList)."""
    ids = set()
    unknown = []
    for p in patterns:
        if "*" in p:
            regex = re.compile(p.replace(".", "\\.").replace("*", ".*"))
            ids.update(c for c in known if regex.match(c))
        elif p in known:
            ids.add(p)
        else:
            unknown.append(p)
    if unknown:
        message = "shard.py: %s: no case %s (ids look like 1.1.1, patterns like 1.*)" % (
            what, ", ".join(unknown))
        if strict:
            sys.exit(message)
        print(message, file=sys.stderr)
    return ids


def main():
    if len(sys.argv) != 5:
        sys.exit(__doc__.strip())
    spec_path, log, jobs, out = sys.argv[1:]
    jobs = int(jobs)
    with open(spec_path) as f:
        spec = json.load(f)
    known = set(probe_cases(log))
    cases = sorted(resolve(spec["cases"], known, "cases", True)
                   - resolve(spec.get("exclude-cases", []), known, "exclude-cases", False),
                   key=case_key)
    with open(os.path.join(out, "cases.txt"), "w") as f:
        f.writelines(c + "\n" for c in cases)
    if not cases:
        print("0 0")
        return

    servers = max(1, len(spec.get("servers", [])))
    shards = [{"cases": [], "cost": 0.0} for _ in range(min(jobs, len(cases)))]
    for c in sorted(cases, key=lambda c: (-cost(c), case_key(c))):
        shard = min(shards, key=lambda s: s["cost"])
        shard["cases"].append(c)
        shard["cost"] += cost(c) * servers

    for k, shard in enumerate(shards, 1):
        shard_spec = dict(spec)
        shard_spec["outdir"] = os.path.join(out, "reports-%d" % k)
        shard_spec["cases"] = sorted(shard["cases"], key=case_key)
        shard_spec["exclude-cases"] = []
        with open(os.path.join(out, "fuzzingclient-%d.json" % k), "w") as f:
            json.dump(shard_spec, f, indent=2)
        print("shard %d: %d cases, about %.0f s" % (k, len(shard["cases"]), shard["cost"]),
              file=sys.stderr)
    print("%d %.0f" % (len(shards), max(s["cost"] for s in shards)))


if __name__ == "__main__":
    main()
