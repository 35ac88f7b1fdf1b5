#!/usr/bin/env bash
# Cost of tracing (issue 5): reprice throughput and p99 at 64 connections with the SDK disabled,
# with 10% sampling and with 100% sampling, exporting OTLP/HTTP to a local sink.
#   bash bench/tracing.sh          (DURATION=10 seconds per run, ROUNDS=3 interleaved rounds)
# Throughput with fsync on moves with the disk's fsync latency from minute to minute on a
# virtual machine, so the three settings run interleaved, ROUNDS times, and the medians are
# compared.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk"; exit 1; }
cargo build --release --quiet --bin repricer
d=${DURATION:-10}
rounds=${ROUNDS:-3}
sink_port=$((20000 + RANDOM % 20000))
python3 bench/otlp_sink.py "$sink_port" & sink=$!
trap 'kill $sink 2>/dev/null' EXIT
declare -A rps_of p99_of
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
  # What the exporter did with the spans (a full queue drops spans rather than slow requests).
  local spans; spans=$(curl -fs "http://127.0.0.1:$((port + 1))/metrics" | awk '
    /^repricer_otel_spans_exported_total / { e = $2 } /^repricer_otel_spans_dropped_total/ { d += $2 }
    END { printf "spans exported %d dropped %d", e, d }')
  printf "round %d  %-24s %10s req/s   p99 %8s   non-2xx %s   %s\n" "$round" "$label" "$rps" "$p99" "${non2xx:-0}" "$spans"
  rps_of[$label]+="$rps "
  p99_of[$label]+="$p99 "
  kill -TERM $pid; wait $pid || true
  rm -rf "$data" "$data.log"
}
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
ep="OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$sink_port"
labels=("OTEL_SDK_DISABLED=true" "10% sampling" "100% sampling")
for ((round = 1; round <= rounds; round++)); do
  run "${labels[0]}" OTEL_SDK_DISABLED=true
  run "${labels[1]}" "$ep" OTEL_TRACES_SAMPLER=traceidratio OTEL_TRACES_SAMPLER_ARG=0.1
  run "${labels[2]}" "$ep" OTEL_TRACES_SAMPLER=always_on
done
echo
echo "medians of $rounds rounds (${d}s each):"
base=$(median <<<"${rps_of[${labels[0]}]}")
for label in "${labels[@]}"; do
  rps=$(median <<<"${rps_of[$label]}")
  printf "  %-24s %10s req/s   p99 %8s   %5.1f%% of disabled\n" "$label" "$rps" "$(median <<<"${p99_of[$label]}" )" "$(awk -v a="$rps" -v b="$base" 'BEGIN { print 100 * a / b }')"
done
echo "targets: 10% sampling >= 85%, 100% sampling >= 60% of disabled"
