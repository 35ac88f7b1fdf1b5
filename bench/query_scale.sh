#!/usr/bin/env bash
# QueryPlanner at scale (issue 4): page latency must not grow with history.
#   bash bench/query_scale.sh DATA_DIR [EVENTS_PER_SEGMENT]
# DATA_DIR holds a history written by gen-history (ids product-0000000.., 1 s windows from
# 2023-11-14T22:13:20Z). For page 1 and the last page of: unfiltered, one product, a one-minute
# window: p50/p99 at 1 connection (latency) and req/s at 50 connections.
set -euo pipefail
cd "$(dirname "$0")/.."
data=$1
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk"; exit 1; }
cargo build --release --quiet --bin repricer
port=$((20000 + RANDOM % 20000)); admin=$((port + 1))
./target/release/repricer serve --listen 127.0.0.1:$port --admin-listen 127.0.0.1:$admin --data-dir "$data" \
  --query-max-inflight 1000 >"$data.query.log" 2>&1 &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null' EXIT
until curl -fs "http://127.0.0.1:$admin/healthz/ready" >/dev/null 2>&1; do sleep 0.05; done
base="http://127.0.0.1:$port/api/query"
total() { curl -fs -D - -o /dev/null "$1" | tr -d "\r" | awk -F': ' 'tolower($1)=="x-total-count" {print $2+0}'; }
# One-minute window starting 5 s into the history.
from=1700000005; to=1700000065
declare -A urls
urls[unfiltered]="$base?pagesize=25"
urls[product]="$base?productId=product-0000042&pagesize=25"
urls[minute]="$base?from=$from&to=$to&pagesize=25"
printf "%-12s %-6s %12s %10s %10s %10s\n" filter page total p50_ms p99_ms req/s@50
for f in unfiltered product minute; do
  u=${urls[$f]}
  n=$(total "$u"); last=$(( (n + 24) / 25 )); [ "$last" -ge 1 ] || last=1
  for page in 1 "$last"; do
    url="$u&pageNumber=$page"
    curl -fs "$url" >/dev/null   # warm the segment cache like a steady consumer would
    lat=$(wrk -t1 -c1 -d${DURATION:-5}s --latency "$url" | awk '/^ +50%/ {p50=$2} /^ +99%/ {p99=$2} END {print p50, p99}')
    rps=$(wrk -t2 -c50 -d${DURATION:-5}s "$url" | awk '/Requests\/sec/ {print $2}')
    to_ms() { case $1 in *us) echo "scale=3; ${1%us}/1000" | bc;; *ms) echo "${1%ms}";; *s) echo "scale=1; ${1%s}*1000" | bc;; esac; }
    printf "%-12s %-6s %12s %10s %10s %10s\n" "$f" "$page" "$n" "$(to_ms ${lat% *})" "$(to_ms ${lat#* })" "$rps"
  done
done
echo "segments opened by queries: $(curl -fs http://127.0.0.1:$admin/metrics | awk '/^repricer_query_segments_opened_total/ {print $2}')"
