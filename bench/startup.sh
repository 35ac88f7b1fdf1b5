#!/usr/bin/env bash
# Start-up time to ready (R9) on a synthetic history.
#   bash bench/startup.sh EVENTS [PRODUCTS]    (default 1000000 events over 100000 products)
# Generates the history with gen-history, then measures: a cold start with no checkpoint (full
# replay), a SIGTERM (which writes the checkpoint), and a start from the checkpoint.
set -euo pipefail
cd "$(dirname "$0")/.."
events=${1:-1000000}; products=${2:-100000}
cargo build --release --quiet --bin repricer --bin gen-history
data=${DATA:-$(mktemp -d -p "${TMPDIR:-/var/tmp}" repricer-startup.XXXX)}
[ -d "$data/results" ] || ./target/release/gen-history "$data" "$events" "$products" 10000
port=$((20000 + RANDOM % 20000)); admin=$((port + 1))

time_to_ready() {
  local t0 t1
  t0=$(date +%s.%N)
  ./target/release/repricer serve --listen 127.0.0.1:$port --admin-listen 127.0.0.1:$admin --data-dir "$data" >"$data.log" 2>&1 &
  pid=$!
  until curl -fs "http://127.0.0.1:$admin/healthz/ready" >/dev/null 2>&1; do sleep 0.01; done
  t1=$(date +%s.%N)
  echo "$1: ready after $(echo "$t1 - $t0" | bc) s; RSS $(awk '/VmRSS/ {print $2/1024 " MB"}' /proc/$pid/status)"
  grep -o 'recovery finished.*' "$data.log" | sed 's/\x1b\[[0-9;]*m//g' | head -1
  kill -TERM $pid; wait $pid
}

rm -f "$data/checkpoint.bin"
time_to_ready "no checkpoint (full replay of $events events)"
ls -la "$data/checkpoint.bin" | awk '{print "checkpoint.bin: " $5/1048576 " MB"}'
time_to_ready "from checkpoint"
time_to_ready "from checkpoint (again)"
echo "data dir: $data"
