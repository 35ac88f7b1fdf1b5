#!/usr/bin/env bash
# Cost of tracing (issue 5): reprice throughput and p99 at 64 connections with the SDK disabled,
# with 10% sampling and with 100% sampling, exporting OTLP/HTTP to a local sink.
#   bash bench/tracing.sh          (DURATION=10 by default)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk"; exit 1; }
cargo build --release --quiet --bin repricer
d=${DURATION:-10}
sink_port=$((20000 + RANDOM % 20000))
python3 bench/otlp_sink.py "$sink_port" & sink=$!
trap 'kill $sink 2>/dev/null' EXIT
run() {
  local label=$1; shift
  local data; data=$(mktemp -d -p "${TMPDIR:-/var/tmp}")
  local port=$((20000 + RANDOM % 20000))
  env "$@" ./target/release/repricer serve --listen 127.0.0.1:$port --admin-listen 127.0.0.1:$((port + 1)) \
    --data-dir "$data" >"$data.log" 2>&1 & local pid=$!
  until curl -fs "http://127.0.0.1:$((port + 1))/healthz/ready" >/dev/null 2>&1; do sleep 0.05; done
  local out; out=$(wrk -t2 -c64 -d${d}s --latency -s bench/reprice.lua "http://127.0.0.1:$port")
  local rps p99 non2xx
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p99=$(awk '/^ +99%/ {print $2}' <<<"$out")
  non2xx=$(awk '/Non-2xx/ {print $5}' <<<"$out")
  printf "%-28s %10s req/s   p99 %8s   non-2xx %s\n" "$label" "$rps" "$p99" "${non2xx:-0}"
  kill -TERM $pid; wait $pid || true
  rm -rf "$data" "$data.log"
}
ep="OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$sink_port"
run "OTEL_SDK_DISABLED=true" OTEL_SDK_DISABLED=true
run "10% sampling" "$ep" OTEL_TRACES_SAMPLER=traceidratio OTEL_TRACES_SAMPLER_ARG=0.1
run "100% sampling" "$ep" OTEL_TRACES_SAMPLER=always_on
