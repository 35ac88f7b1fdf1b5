#!/usr/bin/env bash
# Reprices while queries run (issue 4): reprice throughput alone, then with a concurrent query
# load of 50 connections paging random products and random unfiltered pages.
#   bash bench/mixed.sh           (DURATION=10 by default; no core pinning)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk"; exit 1; }
cargo build --release --quiet --bin repricer
d=${DURATION:-10}
data=$(mktemp -d -p "${TMPDIR:-/var/tmp}")
port=$((20000 + RANDOM % 20000)); admin=$((port + 1))
./target/release/repricer serve --listen 127.0.0.1:$port --admin-listen 127.0.0.1:$admin --data-dir "$data" >"$data.log" 2>&1 &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$data" "$data.log"' EXIT
until curl -fs "http://127.0.0.1:$admin/healthz/ready" >/dev/null 2>&1; do sleep 0.05; done
api="http://127.0.0.1:$port"
# History for the queries: 10,000 products.
wrk -t1 -c32 -d5s -s bench/reprice.lua "$api" -- 10000 bench- >/dev/null
rps() { awk '/Requests\/sec/ {print $2}'; }
alone=$(wrk -t1 -c64 -d${d}s -s bench/reprice.lua "$api" -- 10000 bench- | rps)
wrk -t1 -c25 -d$((d + 2))s -s bench/query.lua "$api" -- product 10000 bench- >"$data.q1" &
wrk -t1 -c25 -d$((d + 2))s -s bench/query.lua "$api" -- page 1000 >"$data.q2" &
sleep 1
mixed=$(wrk -t1 -c64 -d${d}s -s bench/reprice.lua "$api" -- 10000 bench- | rps)
wait %2 %3 2>/dev/null || true
q1=$(rps <"$data.q1"); q2=$(rps <"$data.q2")
echo "reprice alone:             $alone req/s"
echo "reprice with query load:   $mixed req/s ($(echo "scale=1; 100 * $mixed / $alone" | bc)% of alone; target >= 80%)"
echo "queries meanwhile:         by product $q1 req/s, unfiltered pages $q2 req/s (503s not counted separately)"
