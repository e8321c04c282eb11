#!/usr/bin/env bash
# Redis INCR (the sequence service many teams use) against leasetso's RESP
# door (TSO), side by side in one run, with the same redis-benchmark flags:
#
#   redis-benchmark -h 127.0.0.1 -p PORT -c C -P P -n N -q INCR counter   (Redis)
#   redis-benchmark -h 127.0.0.1 -p PORT -c C -P P -n N -q TSO            (leasetso)
#
# for (C, P) in (50, 16) and (1, 1), against
#   * redis-server without persistence (--save '' --appendonly no),
#   * redis-server with an AOF fsynced every second (--appendonly yes
#     --appendfsync everysec), in a temp dir,
#   * leasetso serve --resp (a single node: it holds its lease and persists
#     its window ahead, flushed, on sled).
# N is calibrated so that Redis without persistence runs about DURATION
# seconds, and is the same for all three. Each measurement is repeated
# ROUNDS times, interleaved, and the median is printed, with the ratios
# leasetso / Redis. Installs redis-server and redis-tools if missing
# (apt-get), builds leasetso (release), and stops everything it started.
#
# LEASETSO_BASE_BIN=PATH adds a column: that `leasetso` binary (an earlier
# commit's build) serving the same way, in the same interleaved rounds, and
# the ratio of this build's TSO rate to it.
#
# Usage: benches/compare-redis.sh          (env: DURATION=5 ROUNDS=3)
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-3}

if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-benchmark >/dev/null 2>&1; then
  echo "== apt-get redis-server redis-tools" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >&2 && apt-get install -y -q redis-server redis-tools >&2
fi

echo "== cargo build --release -p leasetso" >&2
cargo build --release -p leasetso >&2
bin=target/release/leasetso

tmp=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

# A free loopback port: nobody answers on it.
free_port() {
  local port
  for _ in $(seq 1 200); do
    port=$((20000 + RANDOM % 20000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return
    fi
  done
  echo "no free port found" >&2
  exit 1
}

wait_ping() {
  local port=$1
  for _ in $(seq 1 200); do
    if [ "$(redis-cli -h 127.0.0.1 -p "$port" PING 2>/dev/null)" = PONG ]; then
      return
    fi
    sleep 0.05
  done
  echo "nothing answers PING on port $port" >&2
  exit 1
}

start_redis() {
  local name=$1 port=$2
  shift 2
  mkdir -p "$tmp/$name"
  redis-server --bind 127.0.0.1 --port "$port" --dir "$tmp/$name" --save '' "$@" \
    >"$tmp/$name.log" 2>&1 &
  pids+=($!)
  wait_ping "$port"
}

redis_plain=$(free_port)
start_redis redis-plain "$redis_plain" --appendonly no
redis_aof=$(free_port)
start_redis redis-aof "$redis_aof" --appendonly yes --appendfsync everysec

"$bin" serve --listen 127.0.0.1:0 --data "$tmp/leasetso" --resp 127.0.0.1:0 2>"$tmp/leasetso.log" &
pids+=($!)
for _ in $(seq 1 200); do
  grep -q "serving on" "$tmp/leasetso.log" && break
  sleep 0.05
done
leasetso=$(sed -n 's/^leasetso: RESP on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$tmp/leasetso.log")
if [ -z "$leasetso" ] || ! grep -q "serving on" "$tmp/leasetso.log"; then
  echo "leasetso did not start:" >&2
  cat "$tmp/leasetso.log" >&2
  exit 1
fi
wait_ping "$leasetso"

# The baseline build's door, when asked for: started the same way.
base=""
if [ -n "${LEASETSO_BASE_BIN:-}" ]; then
  "$LEASETSO_BASE_BIN" serve --listen 127.0.0.1:0 --data "$tmp/base-data" --resp 127.0.0.1:0 2>"$tmp/base.log" &
  pids+=($!)
  for _ in $(seq 1 200); do
    grep -q "serving on" "$tmp/base.log" && break
    sleep 0.05
  done
  base=$(sed -n 's/^leasetso: RESP on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$tmp/base.log")
  [ -n "$base" ] || { echo "the baseline leasetso did not start:" >&2; cat "$tmp/base.log" >&2; exit 1; }
  wait_ping "$base"
  printf 'baseline: %s (%s)\n' "$("$LEASETSO_BASE_BIN" --version)" "$LEASETSO_BASE_BIN"
fi

# One redis-benchmark run: prints "RATE P50_MS".
bench() {
  local port=$1 c=$2 p=$3 n=$4
  shift 4
  redis-benchmark -h 127.0.0.1 -p "$port" -c "$c" -P "$p" -n "$n" -q "$@" 2>&1 |
    tr '\r' '\n' |
    sed -n 's/.*: \([0-9.]*\) requests per second, p50=\([0-9.]*\) msec.*/\1 \2/p' |
    tail -n 1
}

median() {
  sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else print v[int((NR + 1) / 2)] }'
}

ratio() {
  awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "nan" }'
}

printf 'redis: %s\n' "$(redis-server --version)"
printf 'leasetso: %s (%s)\n' "$("$bin" --version)" "$(git rev-parse --short HEAD 2>/dev/null || echo '?')"
printf 'machine: %s cores, %s\n' "$(nproc)" "$(uname -sr)"
printf 'each figure: the median of %s runs, interleaved\n\n' "$ROUNDS"
printf '%-12s %10s %14s %14s %14s %10s %10s\n' flags n "redis INCR" "redis AOF" "leasetso TSO" "vs plain" "vs AOF"

for flags in "50 16" "1 1"; do
  read -r c p <<<"$flags"
  # Calibrate: a short run of Redis without persistence, then N for DURATION seconds.
  probe_n=$((c * p * 250 + 20000))
  probe=$(bench "$redis_plain" "$c" "$p" "$probe_n" INCR counter | awk '{print $1}')
  n=$(awk -v r="$probe" -v d="$DURATION" 'BEGIN { n = int(r * d / 1000) * 1000; if (n < 10000) n = 10000; print n }')
  : >"$tmp/plain" && : >"$tmp/aof" && : >"$tmp/tso" && : >"$tmp/base"
  : >"$tmp/plain.p50" && : >"$tmp/aof.p50" && : >"$tmp/tso.p50"
  for _ in $(seq 1 "$ROUNDS"); do
    read -r rate p50 < <(bench "$redis_plain" "$c" "$p" "$n" INCR counter)
    echo "$rate" >>"$tmp/plain" && echo "$p50" >>"$tmp/plain.p50"
    read -r rate p50 < <(bench "$redis_aof" "$c" "$p" "$n" INCR counter)
    echo "$rate" >>"$tmp/aof" && echo "$p50" >>"$tmp/aof.p50"
    read -r rate p50 < <(bench "$leasetso" "$c" "$p" "$n" TSO)
    echo "$rate" >>"$tmp/tso" && echo "$p50" >>"$tmp/tso.p50"
    if [ -n "$base" ]; then
      read -r rate _ < <(bench "$base" "$c" "$p" "$n" TSO)
      echo "$rate" >>"$tmp/base"
    fi
  done
  plain=$(median <"$tmp/plain")
  aof=$(median <"$tmp/aof")
  tso=$(median <"$tmp/tso")
  printf '%-12s %10s %12.0f/s %12.0f/s %12.0f/s %10s %10s\n' "-c $c -P $p" "$n" "$plain" "$aof" "$tso" \
    "$(ratio "$tso" "$plain")" "$(ratio "$tso" "$aof")"
  printf '%-12s %10s %11s ms %11s ms %11s ms   (p50 latency)\n' "" "" \
    "$(median <"$tmp/plain.p50")" "$(median <"$tmp/aof.p50")" "$(median <"$tmp/tso.p50")"
  printf '%-12s %10s %s\n' "" "" "runs: INCR $(paste -sd' ' "$tmp/plain") | AOF $(paste -sd' ' "$tmp/aof") | TSO $(paste -sd' ' "$tmp/tso")"
  if [ -n "$base" ]; then
    b=$(median <"$tmp/base")
    printf '%-12s %10s baseline TSO %.0f/s; this build / baseline %s (runs: %s)\n' "" "" "$b" \
      "$(ratio "$tso" "$b")" "$(paste -sd' ' "$tmp/base")"
  fi
done

# The door answered every TSO with a timestamp: none was an error.
stats=$(redis-cli -h 127.0.0.1 -p "$leasetso" TSO)
case "$stats" in
  '' | *[!0-9]*) echo "leasetso's last TSO answered: $stats" >&2; exit 1 ;;
esac
