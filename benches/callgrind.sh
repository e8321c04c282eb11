#!/usr/bin/env bash
# The core's GetTS against an AtomicU64::fetch_add, in instructions executed
# under valgrind --tool=callgrind (benches/callgrind_get_ts.rs): counts that
# the machine's noise cannot move, where the criterion time ratio of the same
# two operations moved from 0.36x to 1.8x between runs.
#
# For each COUNT (timestamps per call) and each mode (node, fetch_add, empty)
# it counts in two independent ways, which must agree:
#   * whole program at N and 2N calls: per call = (I(2N) - I(N)) / N, so the
#     setup (process start, the node's sync) cancels out;
#   * only inside the measured loop (--collect-atstart=no
#     --toggle-collect='*callgrind_get_ts::run*') at N calls: per call =
#     I / N, and, for the node, the share of it spent in
#     leasetso_core::node::Node::get_ts itself (callgrind_annotate --inclusive).
# Then it prints node / fetch_add, per loop iteration (both loops are the same
# generic `run` with the operation inlined) and for Node::get_ts alone.
#
# Usage: benches/callgrind.sh            (env: N=1000000 COUNTS="1 100 1000")
# Installs valgrind with apt-get if missing; builds the bench binary with
# `cargo bench --no-run` (the bench profile, release).
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-1000000}
COUNTS=${COUNTS:-"1 100 1000"}

if ! command -v valgrind >/dev/null 2>&1; then
  echo "== apt-get valgrind" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >&2 && apt-get install -y -q valgrind >&2
fi

echo "== cargo bench -p leasetso-benches --bench callgrind_get_ts --no-run" >&2
bin=$(cargo bench -p leasetso-benches --bench callgrind_get_ts --no-run --message-format=json 2>/dev/null |
  python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "callgrind_get_ts" and m.get("executable"):
        print(m["executable"])
')
if [ -z "$bin" ]; then
  echo "the callgrind_get_ts bench did not build" >&2
  exit 1
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

# Instructions collected by one callgrind run: "==PID== Collected : 12345".
collected() {
  awk '/Collected :/ { print $NF }' "$1"
}

echo "valgrind: $(valgrind --version); binary: $bin; N=$N; commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-6s %-10s %14s %14s %12s %12s %16s\n' count mode 'I(N)' 'I(2N)' 'whole/call' 'loop/call' 'Node::get_ts/call'
results="$tmp/results"
: >"$results"
for count in $COUNTS; do
  for mode in node fetch_add empty; do
    valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" "$mode" "$N" "$count" \
      >/dev/null 2>"$tmp/n.err"
    valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" "$mode" "$((2 * N))" "$count" \
      >/dev/null 2>"$tmp/2n.err"
    valgrind --tool=callgrind --collect-atstart=no '--toggle-collect=*callgrind_get_ts::run*' \
      --callgrind-out-file="$tmp/loop.out" "$bin" "$mode" "$N" "$count" \
      >/dev/null 2>"$tmp/loop.err"
    i1=$(collected "$tmp/n.err")
    i2=$(collected "$tmp/2n.err")
    il=$(collected "$tmp/loop.err")
    # Node::get_ts's inclusive count inside the loop (0 where it is not called).
    ig=$(callgrind_annotate --inclusive=yes "$tmp/loop.out" 2>/dev/null |
      awk '/leasetso_core::node::Node::get_ts / { gsub(",", "", $1); print $1; exit }')
    ig=${ig:-0}
    python3 - "$count" "$mode" "$N" "$i1" "$i2" "$il" "$ig" >>"$results" <<'EOF'
import sys
count, mode, n, i1, i2, il, ig = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:])
print(count, mode, i1, i2, (i2 - i1) / n, il / n, ig / n)
EOF
    tail -n 1 "$results" | awk '{ printf "%-6s %-10s %14d %14d %12.3f %12.3f %16.3f\n", $1, $2, $3, $4, $5, $6, $7 }'
  done
done

echo
echo "ratios, node / fetch_add (instructions per call):"
python3 - "$results" <<'EOF'
import sys
rows = {}
for line in open(sys.argv[1]):
    count, mode, i1, i2, whole, loop, get_ts = line.split()
    rows[(count, mode)] = (float(whole), float(loop), float(get_ts))
for count in dict.fromkeys(c for c, _ in rows):
    node, fa, empty = rows[(count, "node")], rows[(count, "fetch_add")], rows[(count, "empty")]
    print(f"count {count:>5}: per loop iteration {node[1]:.1f} / {fa[1]:.1f} = {node[1] / fa[1]:.2f}x"
          f" (whole-program method {node[0] / fa[0]:.2f}x);"
          f" Node::get_ts alone {node[2]:.1f} / {fa[1]:.1f} = {node[2] / fa[1]:.2f}x;"
          f" empty loop {empty[1]:.1f}")
EOF
