#!/usr/bin/env python3
"""Prints the medians of a criterion group's last run, with their ratio to a
baseline of the same run.

    python3 benches/medians.py core_get_ts atomic_fetch_add
    python3 benches/medians.py server_get_ts tcp_ping_pong/1

For every benchmark of the group: the median time per iteration (criterion's
`median` estimate, the median of the samples' per-iteration times), the
throughput at that median in elements (timestamps) per second, and
`time / baseline time` (per iteration) and `rate / baseline rate` (timestamps/s
over the baseline's elements/s). The baseline is the benchmark of the same parameter
when one exists (core_get_ts: count 1 with count 1), else the one named
exactly (server_get_ts: the ping-pong at 1 caller for every caller count).
"""

import json
import os
import sys


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    group, baseline = sys.argv[1], sys.argv[2]
    root = os.environ.get("CRITERION_DIR", os.path.join(os.path.dirname(__file__), "..", "target", "criterion"))
    gdir = os.path.join(root, group)
    rows = {}
    for dirpath, _dirs, files in os.walk(gdir):
        if os.path.basename(dirpath) != "new" or "estimates.json" not in files:
            continue
        with open(os.path.join(dirpath, "benchmark.json")) as f:
            bench = json.load(f)
        with open(os.path.join(dirpath, "estimates.json")) as f:
            est = json.load(f)
        function = bench.get("function_id") or ""
        value = bench.get("value_str") or ""
        elements = (bench.get("throughput") or {}).get("Elements", 1)
        rows[(function, value)] = (est["median"]["point_estimate"], elements)

    def base_of(function, value):
        if "/" in baseline:
            return rows.get(tuple(baseline.split("/", 1)))
        return rows.get((baseline, value))

    def key(item):
        (function, value), _ = item
        return (function, int(value) if value.isdigit() else value)

    print(f"{'benchmark':<40} {'median/iter':>14} {'timestamps/s':>14} {'time ratio':>11} {'rate ratio':>11}")
    for (function, value), (median_ns, elements) in sorted(rows.items(), key=key):
        base = base_of(function, value)
        rate = elements / (median_ns * 1e-9)
        ratio = f"{median_ns / base[0]:.2f}" if base else "-"
        rate_ratio = f"{rate / (base[1] / (base[0] * 1e-9)):.2f}" if base else "-"
        name = f"{group}/{function}/{value}" if value else f"{group}/{function}"
        print(f"{name:<40} {median_ns:>11.2f} ns {rate:>14.4g} {ratio:>11} {rate_ratio:>11}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
