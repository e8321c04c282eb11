#!/usr/bin/env bash
# leasetso and tsoracle side by side, on loopback, in one command.
#
#   benches/peers/run.sh [harness options]     e.g. --seconds 5 --rounds 3
#
# 1. installs tsoracle 2.3.3 into $TSORACLE_ROOT (default /tmp/tsoracle-root)
#    unless its binary is there, with its `file` driver only (the one
#    `serve file` runs; the openraft and paxos drivers would add RocksDB's
#    C++ build, by far the longest part); needs Debian
#    protobuf-compiler and libclang-dev, installed here if missing;
# 2. builds leasetso and this harness in release;
# 3. starts `tsoracle serve file` and `leasetso serve` on 127.0.0.1 (free
#    ports, temp data dirs), and `leasetso serve --runtime smol` when the
#    binary has it, all stopped and removed on exit;
# 4. runs the harness (src/main.rs) against both and prints the machine, the
#    rates of both and their ratio, and the latency at one caller.
# Harness options (see src/main.rs): --seconds S --warmup S --rounds R
# --callers 1,8,64,256,1024 --batch 64 --batch-callers 1,8.
# A TLS server (`--certs-dir`, certificates from `leasetso cert`) is always
# started too: column smol-tls, and the cost of a connection's set-up; and a
# server with `--metrics`, scraped every second: column smol-metrics; and the
# std server's PD door (`--pd`), through the project's PD-style batching
# client: column pd-grpc, gRPC against tsoracle's gRPC.
# Columns smol-1t and tso-wait0-1t run each async client's callers on an
# executor of one thread (the others use one thread per core).
# `--only smol,smol-metrics` measures only the columns named.
# LEASETSO_BASE_BIN=PATH also starts that `leasetso` binary (an earlier
# commit's build) as a std server, measured with the same async client in
# the same rounds (column smol-base): a change against its baseline.
# LEASETSO_HARNESS=PATH runs a harness binary built from another commit (a
# client change against its baseline, on the same servers), and
# LEASETSO_IN_FLIGHT=N gives the async client N requests in flight (a
# diagnostic; unset, its default). Every row is followed by the CPU time per
# timestamp of the client (the harness) and of the server it drives.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
TSORACLE_ROOT="${TSORACLE_ROOT:-/tmp/tsoracle-root}"
TSORACLE_VERSION=2.3.3
tsoracle="$TSORACLE_ROOT/bin/tsoracle"

# Debian packages: protoc builds tsoracle's protobuf code (its server and its
# client crate, which the harness links); libclang was needed for RocksDB's
# bindgen in the full server, and the file-only build was only tried with it
# installed.
missing=()
command -v protoc >/dev/null 2>&1 || missing+=(protobuf-compiler)
if [ ! -x "$tsoracle" ] && ! dpkg -s libclang-dev >/dev/null 2>&1; then
  missing+=(libclang-dev)
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "== apt-get install ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -q
  $sudo apt-get install -y -q "${missing[@]}"
fi

if [ ! -x "$tsoracle" ]; then
  echo "== cargo install tsoracle@$TSORACLE_VERSION into $TSORACLE_ROOT (takes a while)"
  cargo install --locked --root "$TSORACLE_ROOT" --no-default-features --features file \
    "tsoracle@$TSORACLE_VERSION"
fi

echo "== build leasetso and the harness (release)"
(cd "$root" && cargo build --release --locked -p leasetso --bin leasetso)
cargo build --release --locked --manifest-path "$here/Cargo.toml"
leasetso="$root/target/release/leasetso"
# LEASETSO_HARNESS=PATH runs that harness binary instead (one built from an
# earlier commit: a client change against its baseline, on the same servers).
harness="${LEASETSO_HARNESS:-$here/target/release/leasetso-peers}"

tmp="$(mktemp -d -t leasetso-peers.XXXXXX)"
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
trap cleanup EXIT
trap 'exit 130' INT TERM

# Waits for "PATTERN ADDR" in FILE (up to 30 s) and prints ADDR.
wait_addr() {
  local file="$1" pattern="$2" pid="$3" line
  for _ in $(seq 300); do
    line="$(grep -m1 -o "$pattern [0-9.:]*" "$file" 2>/dev/null || true)"
    if [ -n "$line" ]; then
      echo "${line##* }"
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "server exited; its output:" >&2
      cat "$file" >&2
      return 1
    fi
    sleep 0.1
  done
  echo "no '$pattern' in $file after 30 s" >&2
  return 1
}

echo "== start the servers"
# tsoracle prints "serving on ADDR" on stdout once it listens; --no-metrics
# keeps it off the fixed Prometheus port (a no-op in builds without metrics).
"$tsoracle" serve file --listen 127.0.0.1:0 --state-dir "$tmp/tsoracle" --no-metrics \
  >"$tmp/tsoracle.log" 2>&1 &
pids+=($!)
tso_pid=$!
tso_addr="$(wait_addr "$tmp/tsoracle.log" "serving on" "${pids[-1]}")"
# leasetso prints "leasetso: serving on ADDR" on stderr once it serves; its
# PD door (gRPC, column pd-grpc) "leasetso: PD on ADDR" before that.
# Its Redis door (column resp, a connection per caller) "leasetso: RESP on
# ADDR".
pd_args=()
if "$leasetso" serve --help 2>/dev/null | grep -q -- "--pd"; then
  pd_args=(--pd 127.0.0.1:0)
fi
"$leasetso" serve --listen 127.0.0.1:0 --data "$tmp/leasetso" "${pd_args[@]}" --resp 127.0.0.1:0 \
  >"$tmp/leasetso.log" 2>&1 &
pids+=($!)
lts_pid=$!
lts_addr="$(wait_addr "$tmp/leasetso.log" "serving on" "${pids[-1]}")"
echo "tsoracle $TSORACLE_VERSION on $tso_addr, leasetso (std server) on $lts_addr"
harness_pd=()
if [ ${#pd_args[@]} -gt 0 ]; then
  pd_addr="$(wait_addr "$tmp/leasetso.log" "PD on" "${pids[-1]}")"
  harness_pd=(--leasetso-pd "http://$pd_addr")
  echo "leasetso's PD door (gRPC) on $pd_addr"
fi
resp_addr="$(wait_addr "$tmp/leasetso.log" "RESP on" "${pids[-1]}")"
harness_pd+=(--leasetso-resp "$resp_addr")
echo "leasetso's Redis door on $resp_addr"
# The smol server too, when this leasetso has it (`serve --runtime smol`).
smol_args=()
if "$leasetso" serve --help 2>/dev/null | grep -q -- "--runtime"; then
  "$leasetso" serve --runtime smol --listen 127.0.0.1:0 --data "$tmp/leasetso-smol" \
    >"$tmp/leasetso-smol.log" 2>&1 &
  pids+=($!)
  smol_pid=$!
  smol_addr="$(wait_addr "$tmp/leasetso-smol.log" "serving on" "${pids[-1]}")"
  smol_args=(--leasetso-smol "$smol_addr")
  echo "leasetso (smol server) on $smol_addr"
fi

# A std server with TLS (certificates from this leasetso), for the smol-tls
# column and the connection set-up comparison.
"$leasetso" cert create-ca --certs-dir "$tmp/certs" --cluster-id 1 >/dev/null
"$leasetso" cert create-node --certs-dir "$tmp/certs" --id 1 --host 127.0.0.1 >/dev/null
"$leasetso" cert create-client --certs-dir "$tmp/certs" --name root --admin >/dev/null
"$leasetso" serve --listen 127.0.0.1:0 --data "$tmp/leasetso-tls" --certs-dir "$tmp/certs" \
  >"$tmp/leasetso-tls.log" 2>&1 &
pids+=($!)
tls_pid=$!
tls_addr="$(wait_addr "$tmp/leasetso-tls.log" "serving on" "${pids[-1]}")"
smol_args+=(--leasetso-tls "$tls_addr" --certs "$tmp/certs")
echo "leasetso (std server, TLS) on $tls_addr"

# A std server with the metrics listener, scraped every second (fifteen
# times Prometheus' default rate) for as long as the run lasts: column
# smol-metrics, against the std server without it (column smol).
"$leasetso" serve --listen 127.0.0.1:0 --data "$tmp/leasetso-metrics" --metrics 127.0.0.1:0 \
  >"$tmp/leasetso-metrics.log" 2>&1 &
pids+=($!)
metrics_pid="${pids[-1]}"
metrics_srv="$(wait_addr "$tmp/leasetso-metrics.log" "serving on" "$metrics_pid")"
metrics_http="$(wait_addr "$tmp/leasetso-metrics.log" "metrics on" "$metrics_pid")"
( while kill -0 "$metrics_pid" 2>/dev/null; do
    curl -s -o /dev/null "http://$metrics_http/metrics" || true
    sleep 1
  done ) &
pids+=($!)
smol_args+=(--leasetso-metrics "$metrics_srv")
echo "leasetso (std server, --metrics on $metrics_http, scraped every 1 s) on $metrics_srv"

if [ -n "${LEASETSO_BASE_BIN:-}" ]; then
  "$LEASETSO_BASE_BIN" serve --listen 127.0.0.1:0 --data "$tmp/leasetso-base" >"$tmp/leasetso-base.log" 2>&1 &
  pids+=($!)
  base_pid=$!
  base_addr="$(wait_addr "$tmp/leasetso-base.log" "serving on" "${pids[-1]}")"
  smol_args+=(--leasetso-base "$base_addr")
  echo "baseline leasetso ($LEASETSO_BASE_BIN, std server) on $base_addr"
fi

echo "== machine"
echo "cores: $(nproc)  arch: $(uname -m)  kernel: $(uname -r)"
echo "$(rustc --version)"
echo "leasetso: $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)  tsoracle: $("$tsoracle" --version 2>/dev/null || echo "$TSORACLE_VERSION")"
echo

# Every server's pid by its address: the harness reports the CPU time per
# timestamp of the client (itself) and of the server a column drives.
server_pids="$tso_addr=$tso_pid,$lts_addr=$lts_pid"
[ -n "${smol_pid:-}" ] && server_pids+=",$smol_addr=$smol_pid"
server_pids+=",$tls_addr=$tls_pid,$metrics_srv=$metrics_pid"
[ -n "${base_pid:-}" ] && server_pids+=",$base_addr=$base_pid"

"$harness" --pids "$server_pids" --leasetso "$lts_addr" "${smol_args[@]}" "${harness_pd[@]}" --tsoracle "http://$tso_addr" "$@"
