#!/usr/bin/env bash
# A failover seen through Prometheus.
#
# Starts a 3-node leasetso cluster (default --lease-ms 3000) with
# `--metrics` on free loopback ports, a Prometheus server scraping it every
# second with alerts.yml loaded, loads the cluster with `get-ts` in a loop,
# lets Prometheus scrape for about a minute, kills the leader with
# `kill -9`, waits 40 s, then asks Prometheus's HTTP API who led when, how
# many timestamps per second were handed out, and which alerts are on, and
# prints a short report. Everything lives in a temporary directory and is
# stopped and removed on exit.
#
#   LEASETSO_BIN=path/to/leasetso contrib/prometheus/demo.sh
#
# Needs: leasetso (LEASETSO_BIN, else on PATH), prometheus (PROMETHEUS_BIN,
# else on PATH), curl, python3. About 2 minutes. SCRAPE_SECONDS and
# AFTER_KILL_SECONDS change the waits (60 and 40).
set -euo pipefail

BIN=${LEASETSO_BIN:-leasetso}
PROM=${PROMETHEUS_BIN:-prometheus}
SCRAPE_SECONDS=${SCRAPE_SECONDS:-60}
AFTER_KILL_SECONDS=${AFTER_KILL_SECONDS:-40}
HERE=$(cd "$(dirname "$0")" && pwd)

for tool in "$BIN" "$PROM" curl python3; do
    command -v "$tool" >/dev/null || { echo "demo: $tool not found" >&2; exit 1; }
done

TMP=$(mktemp -d "${TMPDIR:-/tmp}/leasetso-demo.XXXXXX")
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Ten free loopback ports: 3 peer, 3 client, 3 metrics, 1 Prometheus.
read -r -a PORTS < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(10)]
for s in socks: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))')
PEERS="1=127.0.0.1:${PORTS[0]},2=127.0.0.1:${PORTS[1]},3=127.0.0.1:${PORTS[2]}"
ADDRS="127.0.0.1:${PORTS[3]},127.0.0.1:${PORTS[4]},127.0.0.1:${PORTS[5]}"
METRICS=("127.0.0.1:${PORTS[6]}" "127.0.0.1:${PORTS[7]}" "127.0.0.1:${PORTS[8]}")
PROM_ADDR="127.0.0.1:${PORTS[9]}"
API="http://$PROM_ADDR/api/v1"

say() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }

# Prometheus: its own storage, scraping every second, with the alerts.
cat >"$TMP/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - $HERE/alerts.yml
scrape_configs:
  - job_name: leasetso
    static_configs:
      - targets: ['${METRICS[0]}', '${METRICS[1]}', '${METRICS[2]}']
EOF
"$PROM" --config.file="$TMP/prometheus.yml" --storage.tsdb.path="$TMP/prometheus" \
    --web.listen-address="$PROM_ADDR" >"$TMP/prometheus.log" 2>&1 &
PIDS+=($!)

# The cluster.
declare -A NODE_PID
for n in 1 2 3; do
    "$BIN" serve --id "$n" --peers "$PEERS" --listen "127.0.0.1:${PORTS[n + 2]}" \
        --data "$TMP/data$n" --metrics "${METRICS[n - 1]}" >"$TMP/node$n.log" 2>&1 &
    NODE_PID[$n]=$!
    PIDS+=($!)
done

for _ in $(seq 100); do
    curl -sf "http://$PROM_ADDR/-/ready" >/dev/null && break
    sleep 0.1
done
curl -sf "http://$PROM_ADDR/-/ready" >/dev/null || { echo "demo: Prometheus did not start" >&2; cat "$TMP/prometheus.log" >&2; exit 1; }
# A new cluster's nodes first wait for each other, then elect a leader.
for _ in $(seq 60); do
    "$BIN" get-ts --addr "$ADDRS" >/dev/null 2>&1 && break
    sleep 0.5
done
"$BIN" get-ts --addr "$ADDRS" >/dev/null \
    || { echo "demo: the cluster did not elect a leader" >&2; tail "$TMP"/node*.log >&2; exit 1; }
say "cluster up: nodes on $ADDRS, metrics on ${METRICS[*]}; Prometheus on $PROM_ADDR"

# Load: two loops taking 100 timestamps per call; each success is logged
# with the client's clock, to measure the longest gap clients saw.
for l in 1 2; do
    (
        trap 'kill "$child" 2>/dev/null; exit 0' TERM
        while :; do
            "$BIN" get-ts --addr "$ADDRS" --count 100 >/dev/null 2>&1 &
            child=$!
            if wait "$child"; then date +%s.%N; fi
        done >"$TMP/load$l.txt"
    ) &
    PIDS+=($!)
done
say "loading it with get-ts; letting Prometheus scrape for ${SCRAPE_SECONDS} s"
START=$(date +%s)
sleep "$SCRAPE_SECONDS"

# The leader, as Prometheus sees it.
query() { curl -sfG "$API/query" --data-urlencode "query=$1"; }
LEADER=$(query 'max(leasetso_leader_node and on (instance) leasetso_is_leader == 1)' \
    | python3 -c 'import json, sys; r = json.load(sys.stdin)["data"]["result"]; print(int(float(r[0]["value"][1])) if r else 0)')
[ "$LEADER" -ge 1 ] || { echo "demo: Prometheus sees no leader" >&2; exit 1; }
KILLED_AT=$(date +%s.%N)
{ kill -9 "${NODE_PID[$LEADER]}"; wait "${NODE_PID[$LEADER]}"; } 2>/dev/null || true
say "kill -9 of node $LEADER, the leader (pid ${NODE_PID[$LEADER]}); waiting ${AFTER_KILL_SECONDS} s"
sleep "$AFTER_KILL_SECONDS"
END=$(date +%s)

# What Prometheus recorded, at 1 s steps.
range() { curl -sfG "$API/query_range" --data-urlencode "query=$1" \
    --data-urlencode "start=$START" --data-urlencode "end=$END" --data-urlencode "step=1"; }
range 'max(leasetso_leader_node and on (instance) leasetso_is_leader == 1) or vector(0)' >"$TMP/leader.json"
range 'sum(leasetso_is_leader) or vector(0)' >"$TMP/serving.json"
range 'leasetso_leader_node * on (instance) group_left (node) leasetso_node_info' >"$TMP/seen.json"
range 'sum(rate(leasetso_tso_timestamps_total[5s]))' >"$TMP/rate.json"
curl -sf "$API/alerts" >"$TMP/alerts.json"
cat "$TMP"/load*.txt >"$TMP/load.txt"

say "report"
python3 - "$TMP" "$KILLED_AT" "$LEADER" <<'EOF'
import json, sys, time
tmp, killed_at, killed = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])

def series(name):
    return json.load(open(f"{tmp}/{name}.json"))["data"]["result"]

def clock(t):
    return time.strftime("%H:%M:%S", time.gmtime(t))

def rel(t):
    return f"{t - killed_at:+.1f} s"

print(f"  kill -9 of node {killed} at {clock(killed_at)} UTC (t = 0)")
print()
print("  Serving leader over time (max(leasetso_leader_node and on (instance) leasetso_is_leader == 1), 1 s steps):")
runs = []
for t, v in series("leader")[0]["values"]:
    t, v = float(t), int(float(v))
    if runs and runs[-1][2] == v:
        runs[-1][1] = t
    else:
        runs.append([t, t, v])
for a, b, v in runs:
    who = f"node {v}" if v else "none"
    print(f"    {clock(a)} to {clock(b)} UTC  ({rel(a)} to {rel(b)})  {who}")
after = [r for r in runs if r[2] and r[2] != killed and r[0] > killed_at]
if after:
    print(f"  New leader: node {after[0][2]}, first seen serving at {clock(after[0][0])} UTC, "
          f"{after[0][0] - killed_at:.1f} s after the kill.")
gaps = [r for r in runs if r[2] == 0 and r[1] >= killed_at]
if gaps:
    print(f"  Samples with no node serving: {gaps[0][0] - killed_at:+.1f} s to {gaps[0][1] - killed_at:+.1f} s.")
most = max(int(float(v)) for _, v in series("serving")[0]["values"])
print(f"  Most nodes serving at once in any sample: {most}.")
print()
print("  Leader each node knew (leasetso_leader_node), last sample:")
end = max(float(s["values"][-1][0]) for s in series("seen"))
for s in sorted(series("seen"), key=lambda s: s["metric"]["node"]):
    last_t, last_v = s["values"][-1]
    state = "" if float(last_t) >= end else f", at {rel(float(last_t))}: not scraped since"
    print(f"    node {s['metric']['node']} ({s['metric']['instance']}): node {int(float(last_v))}{state}")
print()
print("  Timestamps/s (sum(rate(leasetso_tso_timestamps_total[5s]))), around the kill:")
for t, v in series("rate")[0]["values"] if series("rate") else []:
    t = float(t)
    if -10 <= t - killed_at <= 20 and round(t - killed_at) % 2 == 0:
        print(f"    {rel(t):>8}  {float(v):10.0f}")
before = [float(v) for t, v in series("rate")[0]["values"] if -35 <= float(t) - killed_at < -5]
if before:
    print(f"  Mean from -35 s to -5 s: {sum(before) / len(before):.0f}/s")
print()
ok = sorted(float(l) for l in open(f"{tmp}/load.txt") if l.strip())
gap = max(((b - a), a) for a, b in zip(ok, ok[1:]))
print(f"  Clients (2 get-ts loops): {len(ok)} calls ok; longest wait between two successes "
      f"{gap[0]:.2f} s, from {rel(gap[1])}.")
print()
print("  Alerts now (GET /api/v1/alerts):")
alerts = json.load(open(f"{tmp}/alerts.json"))["data"]["alerts"]
for a in sorted(alerts, key=lambda a: (a["labels"]["alertname"], a["labels"].get("instance", ""))):
    l = a["labels"]
    print(f"    {a['state']:8} {l['alertname']} {l['severity']}: {a['annotations']['summary']}")
if not alerts:
    print("    none")
EOF
