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
least estimated time so far (COST_S below). Prints the plan to stderr and "S SECONDS" to stdout,
SECONDS being the estimated time of the longest shard.
"""

import ast
import json
import os
import re
import sys

# Estimated seconds of one case with wstest (Python 2, CPU bound: the server under test is much
# faster), measured on a 2-core machine with two shards running (all 517 cases: 1150 s); a case
# not listed costs DEFAULT_COST_S. Only the ratios matter for the balance; the longest shard's sum
# also sets autobahn.sh's default timeout.
DEFAULT_COST_S = 0.05
# 12.X.Y and 13.X.Y by Y (1..18: message size and auto-fragment size, see MSG_SIZES in
# autobahntestsuite/case/case12_x_x.py), for the json_data1 payload (12.1 and all of 13.*).
DEFLATE_COST_S = [0.2, 0.2, 0.2, 0.3, 0.6, 1.1, 1.95, 3.7, 7.2, 14.1,
                  1.1, 1.95, 3.7, 7.3, 14.3, 14.1, 14.0, 14.0]
# 12.X by X (the payload: json, lena512.bmp, Faust, html, a PDF): factor on DEFLATE_COST_S.
DEFLATE_PAYLOAD_FACTOR = {1: 1.0, 2: 0.85, 3: 0.7, 4: 1.0, 5: 0.72}
# Other cases, by id or by the id's first two parts ("9.3" for 9.3.*).
COST_S = {
    "5.19": 1.0, "5.20": 1.0, "6.4": 1.0,
    "9.1.3": 0.16, "9.1.4": 0.64, "9.1.5": 1.27, "9.1.6": 2.55,
    "9.2.3": 0.06, "9.2.4": 0.27, "9.2.5": 0.5, "9.2.6": 1.06,
    "9.3": 0.7, "9.4": 0.29, "9.5": 0.27, "9.6": 0.17, "9.7": 0.21, "9.8": 0.11,
}


def case_key(case_id):
    """Sorts "1.1.10" after "1.1.9"."""
    return [int(part) if part.isdigit() else part for part in case_id.split(".")]


def cost(case_id):
    parts = case_id.split(".")
    if len(parts) == 3 and parts[0] in ("12", "13") and all(p.isdigit() for p in parts[1:]):
        y = int(parts[2])
        if 1 <= y <= len(DEFLATE_COST_S):
            factor = DEFLATE_PAYLOAD_FACTOR.get(int(parts[1]), 1.0) if parts[0] == "12" else 1.0
            return DEFLATE_COST_S[y - 1] * factor
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

    shards = [{"cases": [], "cost": 0.0} for _ in range(min(jobs, len(cases)))]
    for c in sorted(cases, key=lambda c: (-cost(c), case_key(c))):
        shard = min(shards, key=lambda s: s["cost"])
        shard["cases"].append(c)
        shard["cost"] += cost(c)

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
