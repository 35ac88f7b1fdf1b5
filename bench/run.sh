#!/usr/bin/env bash
# bench/run.sh — throughput and latency of repricer against the machine's ceiling.
#
#   bash bench/run.sh          main figures (about 3 minutes with the default DURATION=15)
#   bash bench/run.sh rss      RSS with RSS_PRODUCTS (1,000,000) distinct products (1-4 minutes)
#   bash bench/run.sh all      both
#
# Main stage, all in one run, release build, durability on (every 202 waits for its fsync):
#   * reprice events/s and latency at 1, 8 and 64 connections, with fsyncs/s and events per
#     fsync read from the service's /metrics (histograms repricer_fsync_duration_seconds and
#     repricer_commit_events, _count and _sum taken before and after each run);
#   * the same 64-connection reprice load against bench/noop_server.rs (an actix-web handler
#     that only parses the JSON body and answers 202): the ceiling of this machine;
#   * product price GET, query by product and unfiltered query page at 64 connections, against
#     a no-op GET of the same no-op server;
#   * ratios against the targets: reprice >= 50% of the no-op reprice, GETs >= 70% of the
#     no-op GET.
# Only 2xx answers count as throughput ("ok/s"); every other status is counted and shown.
#
# Environment (defaults in brackets):
#   DURATION [15]       seconds of measured load per stage
#   WARMUP [2]          seconds of unmeasured load before each stage
#   CONNS [64]          connections of the main comparisons
#   ROUNDS [1]          repeat each no-op/service comparison this many times, interleaved, and
#                       judge the median ratio (use 3 or more on a machine shared with other work)
#   PIN [shared]        shared: no pinning, server and wrk share every core (the whole machine,
#                       as the issue asks); split: server on the first half of the cores, wrk on
#                       the other half
#   SERVER_CPUS, WRK_CPUS   explicit taskset core lists (override PIN)
#   NICE [-20 as root, else 0]  priority of the servers and wrk (and of their scheduler autogroups)
#   WRK_THREADS         wrk threads [number of wrk cores]
#   REPRICE_POOL [100000]   distinct products the reprice load draws from
#   GET_POOL [10000]        products written before the GET and query stages
#   RSS_PRODUCTS [1000000]  distinct products of the rss stage
#   SERVER_ARGS         extra flags for `repricer serve` (e.g. "--http-workers 2")
#   LIMIT_ARGS          admission limits [--product-max-inflight CONNS --query-max-inflight CONNS]:
#                       at the default limit of 50, 14 of 64 connections would only measure how
#                       fast 503s come back
#   API_PORT, ADMIN_PORT, NOOP_PORT   [random free ports]
#   BENCH_DIR [target/bench]  where the temporary data directories go (must not be tmpfs)
#   KEEP_DATA [0]       1 keeps the data directories and server logs
#   WAIT_QUIET [0]      wait up to this many seconds for the machine to be < 10% busy first
#   SKIP_BUILD [0]      1 skips `cargo build --release`

set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

MODE=${1:-main}
case $MODE in main | rss | all) ;; -h | --help | help) sed -n '2,/^$/p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
*) echo "usage: bash bench/run.sh [main|rss|all]" >&2; exit 2 ;; esac

DURATION=${DURATION:-15}
WARMUP=${WARMUP:-2}
CONNS=${CONNS:-64}
ROUNDS=${ROUNDS:-1}
ROUND=1
PIN=${PIN:-shared}
REPRICE_POOL=${REPRICE_POOL:-100000}
GET_POOL=${GET_POOL:-10000}
RSS_PRODUCTS=${RSS_PRODUCTS:-1000000}
SERVER_ARGS=${SERVER_ARGS:-}
LIMIT_ARGS=${LIMIT_ARGS:---product-max-inflight $CONNS --query-max-inflight $CONNS}
BENCH_DIR=${BENCH_DIR:-target/bench}
KEEP_DATA=${KEEP_DATA:-0}
SKIP_BUILD=${SKIP_BUILD:-0}

REPRICER=target/release/repricer
NOOP_BIN=target/release/noop-server

log() { printf '[bench %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---------------------------------------------------------------- preflight
command -v wrk >/dev/null || die "wrk is not installed; install it with: apt-get update && apt-get install -y wrk"
for tool in taskset curl awk getconf; do command -v $tool >/dev/null || die "$tool is required"; done

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# A random free port below the kernel's ephemeral range (where outgoing connections, e.g. wrk's,
# take their local ports), so that nothing else grabs it before the server binds it.
EPHEMERAL_LOW=$(awk '{ print $1 }' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
free_port() {
    local port
    while :; do
        port=$((10000 + RANDOM % (EPHEMERAL_LOW - 10000)))
        port_busy "$port" || { echo "$port"; return; }
    done
}
API_PORT=${API_PORT:-$(free_port)}
ADMIN_PORT=${ADMIN_PORT:-$(free_port)}
NOOP_PORT=${NOOP_PORT:-$(free_port)}
[[ $API_PORT != "$ADMIN_PORT" && $API_PORT != "$NOOP_PORT" && $ADMIN_PORT != "$NOOP_PORT" ]] ||
    die "API_PORT, ADMIN_PORT and NOOP_PORT must differ"
for port in $API_PORT $ADMIN_PORT $NOOP_PORT; do
    port_busy "$port" && die "port $port is in use (set API_PORT / ADMIN_PORT / NOOP_PORT)"
done

API=http://127.0.0.1:$API_PORT
ADMIN=http://127.0.0.1:$ADMIN_PORT
NOOP=http://127.0.0.1:$NOOP_PORT

mkdir -p "$BENCH_DIR"
RUN_DIR=$(mktemp -d "$(realpath "$BENCH_DIR")/run.XXXXXX")
fstype=$(stat -f -c %T "$RUN_DIR")
[[ $fstype == tmpfs || $fstype == ramfs ]] && die "$RUN_DIR is on $fstype: fsync would cost nothing; set BENCH_DIR to a real disk"

# Core pinning. On a 2-core machine "split" gives the server core 0 and wrk core 1: the server
# has one whole core that the load generator never steals, the same for repricer and for the
# no-op server, so the ratio compares the servers' own CPU cost per request (wrk needs well
# under one core at these rates; see the wrk% column). "shared" lets the servers' extra threads
# (segment writer, actors) use both cores but makes them compete with wrk.
expand_cpus() { # "0-2,5" -> "0 1 2 5"
    local part parts out=() i
    IFS=, read -ra parts <<<"$1"
    for part in "${parts[@]}"; do
        for ((i = ${part%-*}; i <= ${part#*-}; i++)); do out+=("$i"); done
    done
    echo "${out[*]}"
}
NCPU=$(nproc)
if [[ -n ${SERVER_CPUS:-} || -n ${WRK_CPUS:-} ]]; then
    : "${SERVER_CPUS:?set both SERVER_CPUS and WRK_CPUS}" "${WRK_CPUS:?set both SERVER_CPUS and WRK_CPUS}"
    PIN=custom
elif [[ $PIN == split && $NCPU -ge 2 ]]; then
    SERVER_CPUS="0-$((NCPU / 2 - 1))"
    WRK_CPUS="$((NCPU / 2))-$((NCPU - 1))"
elif [[ $PIN == split || $PIN == shared ]]; then
    PIN=shared
    SERVER_CPUS="0-$((NCPU - 1))"
    WRK_CPUS="0-$((NCPU - 1))"
else
    die "PIN must be split or shared, got '$PIN'"
fi
# Priority. This machine may be shared (other builds and tests): at equal priority a compiler
# on the server's core takes half of it and delays every wake-up by its time slice. With
# scheduler autogroups (/proc/sys/kernel/sched_autogroup_enabled) a process's nice only counts
# inside its session's group, so every server and wrk runs in a session of its own (setsid)
# whose autogroup, and the process, get nice NICE (-20 as root by default). The same for
# repricer and the no-op server. The oth% column shows what the rest of the machine still used.
if [[ -z ${NICE:-} ]]; then
    if [[ $(id -u) == 0 ]]; then NICE=-20; else NICE=0; fi
fi
# run_on CPUS CMD... as a command prefix (an array, so that `&` and $! give the real PID):
# setsid and `exec` keep the PID from the wrapper down to CMD.
RUN_ON=(setsid bash -c 'echo "$0" >/proc/self/autogroup 2>/dev/null; exec nice -n "$0" taskset -c "$1" "${@:2}"' "$NICE")
SERVER_PIN=("${RUN_ON[@]}" "$SERVER_CPUS")
WRK_PIN=("${RUN_ON[@]}" "$WRK_CPUS")
# How the commands are shown: what the prefix does, readable.
SERVER_PIN_SHOWN="nice -n $NICE taskset -c $SERVER_CPUS"
WRK_PIN_SHOWN="nice -n $NICE taskset -c $WRK_CPUS"
shown() { local s="$*"; s=${s/"${SERVER_PIN[*]}"/$SERVER_PIN_SHOWN}; echo "${s/"${WRK_PIN[*]}"/$WRK_PIN_SHOWN}"; }
count_cpus() { taskset -c "$1" nproc; }
WRK_THREADS=${WRK_THREADS:-$(count_cpus "$WRK_CPUS")}
SERVER_CORES=$(expand_cpus "$SERVER_CPUS")
WRK_SHARES_SERVER_CORES=0       # 1 when wrk runs on (some of) the server's cores
for c in $(expand_cpus "$WRK_CPUS"); do [[ " $SERVER_CORES " == *" $c "* ]] && WRK_SHARES_SERVER_CORES=1; done
CLK_TCK=$(getconf CLK_TCK)

# ---------------------------------------------------------------- bookkeeping and cleanup
RESULTS=$RUN_DIR/results.tsv   # one line per measured stage
COMMANDS=()                    # the exact command lines, printed at the end
STARTED_PIDS=()                # servers and wrk processes this script started

cleanup() {
    local pid
    for pid in "${STARTED_PIDS[@]}"; do
        kill -0 "$pid" 2>/dev/null && kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${STARTED_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [[ $KEEP_DATA == 1 ]]; then
        log "kept $RUN_DIR (data directories, server logs, wrk output)"
    else
        rm -rf "$RUN_DIR"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- servers
build() {
    if [[ $SKIP_BUILD == 1 ]]; then
        [[ -x $REPRICER && -x $NOOP_BIN ]] || die "SKIP_BUILD=1 but $REPRICER or $NOOP_BIN is missing"
        return
    fi
    log "cargo build --release --bin repricer --bin noop-server (may wait for the target/ lock)"
    cargo build --release --bin repricer --bin noop-server >&2
}

# start_repricer DATA_DIR LOG -> sets REPRICER_PID; waits until /healthz/ready answers 200.
start_repricer() {
    local data=$1 logf=$2 started=$SECONDS
    # shellcheck disable=SC2086  # SERVER_ARGS is a list of flags
    local cmd=("${SERVER_PIN[@]}" "$REPRICER" serve --listen "127.0.0.1:$API_PORT"
        --admin-listen "127.0.0.1:$ADMIN_PORT" --data-dir "$data" $LIMIT_ARGS $SERVER_ARGS)
    COMMANDS+=("$(shown "${cmd[@]}")")
    "${cmd[@]}" >"$logf" 2>&1 &
    REPRICER_PID=$!
    STARTED_PIDS+=("$REPRICER_PID")
    until [[ $(curl -s -o /dev/null -w '%{http_code}' "$ADMIN/healthz/ready") == 200 ]]; do
        kill -0 "$REPRICER_PID" 2>/dev/null || { tail -20 "$logf" >&2; die "repricer exited during start-up (log above)"; }
        ((SECONDS - started < 600)) || die "repricer not ready after 600 s"
        sleep 0.1
    done
    READY_SECONDS=$((SECONDS - started))
}

start_noop() {
    local cmd=("${SERVER_PIN[@]}" "$NOOP_BIN" "127.0.0.1:$NOOP_PORT")
    COMMANDS+=("$(shown "${cmd[@]}")")
    "${cmd[@]}" >"$RUN_DIR/noop.log" 2>&1 &
    NOOP_PID=$!
    STARTED_PIDS+=("$NOOP_PID")
    local tries=0
    until port_busy "$NOOP_PORT"; do
        ((++tries < 100)) || die "noop-server did not start"
        sleep 0.05
    done
}

# stop_server PID: SIGTERM (drain + seal), then SIGKILL after 60 s.
stop_server() {
    local pid=$1 i
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < 600; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && { log "pid $pid ignored SIGTERM for 60 s; SIGKILL"; kill -KILL "$pid"; }
    wait "$pid" 2>/dev/null || true
}

# ---------------------------------------------------------------- measurements
metric() { # metric NAME -> value of an unlabelled series on the admin port (0 if absent)
    curl -s "$ADMIN/metrics" | awk -v n="$1" '$1 == n { v = $2 } END { print (v == "" ? 0 : v) }'
}
cpu_ticks() { # user+system clock ticks of a process (all its threads)
    sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'
}
rss_kib() { awk -v k="${2:-VmRSS}:" '$1 == k { print $2 }' "/proc/$1/status"; }
field() { sed -n "s/.*[[:space:]]$1=\([^[:space:]]*\).*/\1/p" <<<"$2"; }
calc() { awk "BEGIN { printf \"%${2:-.1f}\", ($1) }"; } # calc EXPR [FORMAT]: awk arithmetic
busy_ticks() { # busy_ticks "CPU...": non-idle ticks (user nice system irq softirq steal) of those cores
    awk -v cpus=" $1 " '$1 ~ /^cpu[0-9]+$/ && index(cpus, " " substr($1, 4) " ") { t += $2 + $3 + $4 + $7 + $8 + $9 } END { print t + 0 }' /proc/stat
}

FSYNC_METRICS=(repricer_fsync_duration_seconds_count repricer_fsync_duration_seconds_sum
    repricer_commit_events_count repricer_commit_events_sum repricer_events_sequenced_total)
snapshot_fsync() { local m; for m in "${FSYNC_METRICS[@]}"; do metric "$m"; done | paste -sd' '; }

# bench STAGE SERVER_PID CONNECTIONS SCRIPT URL [SCRIPT ARGS...]
# Warm-up, then DURATION seconds of wrk; appends one line to $RESULTS:
#   stage conns ok_rps p50 p99 p999 max non2xx statuses errors server_cpu% wrk/other_cpu% fsyncs/s ev/fsync fsync_ms round
bench() {
    local stage=$1 pid=$2 conns=$3 script=$4 url=$5
    shift 5
    local threads=$((WRK_THREADS < conns ? WRK_THREADS : conns))
    local wrk=("${WRK_PIN[@]}" wrk -t"$threads" -c"$conns" --latency --timeout 10s -s "$script" "$url")
    local out=$RUN_DIR/wrk-${stage// /_}-c$conns.txt
    local is_repricer=0
    [[ $url == "$API" ]] && is_repricer=1

    if ((WARMUP > 0)); then "${wrk[@]}" -d"${WARMUP}s" -- "$@" >/dev/null; fi

    local before="" after="" t0 t1 b0 b1 times
    ((is_repricer)) && before=$(snapshot_fsync)
    t0=$(cpu_ticks "$pid")
    b0=$(busy_ticks "$SERVER_CORES")
    COMMANDS+=("$(shown "${wrk[@]}") -d${DURATION}s -- $*")
    log "$stage, $conns connections, ${DURATION}s (round $ROUND of $ROUNDS)"
    times=$( { TIMEFORMAT='%3U %3S %3R'; time "${wrk[@]}" -d"${DURATION}s" -- "$@" >"$out" 2>&1; } 2>&1 ) ||
        { cat "$out" >&2; die "wrk failed in stage $stage"; }
    t1=$(cpu_ticks "$pid")
    b1=$(busy_ticks "$SERVER_CORES")
    ((is_repricer)) && after=$(snapshot_fsync)

    local line
    line=$(grep '^BENCH ' "$out") || { cat "$out" >&2; die "no BENCH line from wrk in stage $stage"; }
    # CPU in % of one core: the server's, wrk's, and what everything else (other processes,
    # kernel threads, interrupts, VM steal) took from the server's cores in the same interval.
    local server_cpu wrk_cpu wrk_secs other_cpu
    server_cpu=$(calc "($t1 - $t0) / $CLK_TCK / $DURATION * 100" .0f)
    wrk_secs=$(awk -v t="$times" 'BEGIN { split(t, a, " "); print a[1] + a[2] }')
    wrk_cpu=$(calc "$wrk_secs / $DURATION * 100" .0f)
    other_cpu=$(calc "(($b1 - $b0 - $t1 + $t0) / $CLK_TCK - $WRK_SHARES_SERVER_CORES * $wrk_secs) / $DURATION * 100" .0f)
    ((other_cpu < 0)) && other_cpu=0

    local fsyncs=- per_fsync=- fsync_ms=- fc0 fs0 cc0 cs0 fc1 fs1 cc1 cs1
    if ((is_repricer)) && [[ $script == *reprice.lua ]]; then
        read -r fc0 fs0 cc0 cs0 _ <<<"$before"
        read -r fc1 fs1 cc1 cs1 _ <<<"$after"
        fsyncs=$(calc "($fc1 - $fc0) / $DURATION")
        per_fsync=$(calc "($cc1 - $cc0) > 0 ? ($cs1 - $cs0) / ($cc1 - $cc0) : 0")
        fsync_ms=$(calc "($fc1 - $fc0) > 0 ? ($fs1 - $fs0) / ($fc1 - $fc0) * 1000 : 0" .2f)
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
        "$stage" "$conns" "$(field ok_rps "$line")" "$(field p50_ms "$line")" "$(field p99_ms "$line")" \
        "$(field p999_ms "$line")" "$(field max_ms "$line")" "$(field non2xx "$line")" \
        "$(field statuses "$line")" "$(field errors "$line")" "$server_cpu" "$wrk_cpu/$other_cpu" \
        "$fsyncs" "$per_fsync" "$fsync_ms" "$ROUND" >>"$RESULTS"
    log "  -> $(field ok_rps "$line") ok/s, p99 $(field p99_ms "$line") ms, statuses $(field statuses "$line")"
}

# result STAGE CONNS COLUMN ROUND -> one figure of $RESULTS (columns as in bench()).
result() { awk -F'\t' -v s="$1" -v c="$2" -v k="$3" -v r="$4" '$1 == s && $2 == c && $16 == r { print $k }' "$RESULTS"; }
median() { # median of the numbers on stdin (space-separated), printed with FORMAT [%.1f]
    tr ' ' '\n' | grep . | sort -g | awk -v f="${1:-%.1f}" '{ v[NR] = $1 }
        END { printf f "\n", (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'
}

# load_products COUNT PREFIX: writes COUNT distinct products PREFIX0.. with bench/load.lua at
# CONNS connections; stops wrk when the service has sequenced COUNT more events.
load_products() {
    local count=$1 prefix=$2
    local threads=$((WRK_THREADS < CONNS ? WRK_THREADS : CONNS))
    local cmd=("${WRK_PIN[@]}" wrk -t"$threads" -c"$CONNS" -d3600s --timeout 10s -s bench/load.lua "$API" -- "$count" "$prefix" "$threads")
    local out=$RUN_DIR/load-$prefix.txt start end base now
    COMMANDS+=("$(shown "${cmd[@]}")    # interrupted once $count more events are sequenced")
    base=$(metric repricer_events_sequenced_total)
    start=$(date +%s.%N)
    "${cmd[@]}" >"$out" 2>&1 &
    local wrk_pid=$!
    STARTED_PIDS+=("$wrk_pid")
    while :; do
        sleep 0.25
        now=$(metric repricer_events_sequenced_total)
        (($(calc "$now - $base" .0f) >= count)) && break
        kill -0 "$wrk_pid" 2>/dev/null || { cat "$out" >&2; die "wrk stopped before $count products were written"; }
        kill -0 "$REPRICER_PID" 2>/dev/null || die "repricer exited during the load"
    done
    end=$(date +%s.%N)
    sleep 0.5                       # the last acknowledgements reach wrk
    kill -INT "$wrk_pid" 2>/dev/null || true
    wait "$wrk_pid" 2>/dev/null || true
    LOAD_SECONDS=$(calc "$end - $start" .1f)
    LOAD_LINE=$(grep '^BENCH ' "$out" || true)
    local non2xx
    non2xx=$(field non2xx "$LOAD_LINE")
    [[ ${non2xx:-0} == 0 ]] || log "WARNING: $non2xx non-2xx answers while loading ($(field statuses "$LOAD_LINE")): up to that many ids may be missing"
}

# check_products COUNT PREFIX SAMPLES: GETs the first, the last and SAMPLES random ids; all must be 200.
check_products() {
    local count=$1 prefix=$2 samples=$3 missing=0 n i
    for ((i = 0; i < samples + 2; i++)); do
        case $i in 0) n=0 ;; 1) n=$((count - 1)) ;; *) n=$(((RANDOM * 32768 + RANDOM) % count)) ;; esac
        [[ $(curl -s -o /dev/null -w '%{http_code}' "$API/api/product/$prefix$n/price") == 200 ]] || ((++missing))
    done
    echo "$missing"
}

machine_notes() {
    echo "Machine: $(nproc) cores ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)), $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) RAM"
    echo "Kernel: $(uname -r); data directory on $(df --output=source "$RUN_DIR" | tail -1) ($fstype), $RUN_DIR"
    echo "Pinning: PIN=$PIN, server (repricer and noop-server) on cores $SERVER_CPUS, wrk on cores $WRK_CPUS ($WRK_THREADS wrk threads);"
    echo "         each in its own session and scheduler autogroup at nice $NICE (autogroups enabled: $(cat /proc/sys/kernel/sched_autogroup_enabled 2>/dev/null || echo n/a))"
    echo "Machine busy before the start: ${BUSY_START}% of all cores (load average $(cut -d' ' -f1-3 /proc/loadavg) at the end)"
    echo "wrk $(wrk -v 2>&1 | head -1 | awk '{ print $2 }'), closed loop (each connection waits for its answer), latency per request, --timeout 10s"
}

# How busy the machine is without us: % of all cores over 2 s.
machine_busy() {
    local a b
    a=$(awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9, $5 + $6 }' /proc/stat)
    sleep 2
    b=$(awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9, $5 + $6 }' /proc/stat)
    awk -v a="$a" -v b="$b" 'BEGIN { split(a, x); split(b, y); busy = y[1] - x[1]; all = busy + y[2] - x[2];
        printf "%.0f", (all > 0 ? busy / all * 100 : 0) }'
}
# WAIT_QUIET=SECONDS waits (at most that long) for the machine to be under 10% busy first.
wait_quiet() {
    local waited=0
    BUSY_START=$(machine_busy)
    while ((BUSY_START >= 10 && waited < ${WAIT_QUIET:-0})); do
        log "machine ${BUSY_START}% busy; waiting for it to be quiet (WAIT_QUIET=$WAIT_QUIET, waited ${waited}s)"
        sleep 8
        waited=$((waited + 10))
        BUSY_START=$(machine_busy)
    done
    ((BUSY_START < 10)) || log "WARNING: the machine is ${BUSY_START}% busy without this benchmark: other work will skew the figures (see the oth% column)"
}

# ---------------------------------------------------------------- main stage
run_main() {
    mkdir -p "$RUN_DIR/main"
    start_noop
    start_repricer "$RUN_DIR/main/data" "$RUN_DIR/main/server.log"
    log "repricer pid $REPRICER_PID, noop-server pid $NOOP_PID; server cores $SERVER_CPUS, wrk cores $WRK_CPUS"

    # Reprice: latency at 1 and 8 connections, then ceiling and service at CONNS back to back
    # (adjacent in time, so background noise hits both alike).
    bench "reprice" "$REPRICER_PID" 1 bench/reprice.lua "$API" "$REPRICE_POOL" bench-
    bench "reprice" "$REPRICER_PID" 8 bench/reprice.lua "$API" "$REPRICE_POOL" bench-
    for ((ROUND = 1; ROUND <= ROUNDS; ROUND++)); do
        bench "noop reprice" "$NOOP_PID" "$CONNS" bench/reprice.lua "$NOOP" "$REPRICE_POOL" bench-
        bench "reprice" "$REPRICER_PID" "$CONNS" bench/reprice.lua "$API" "$REPRICE_POOL" bench-
    done

    # Products the GET and query stages read.
    log "writing $GET_POOL products get-0 .. get-$((GET_POOL - 1))"
    load_products "$GET_POOL" get-
    local missing
    missing=$(check_products "$GET_POOL" get- 50)
    ((missing == 0)) || log "WARNING: $missing of 52 sampled get- products are not readable"

    local total pages
    total=$(curl -s -D - -o /dev/null "$API/api/query?pagesize=25" | awk -F': ' 'tolower($1) == "x-total-count" { print $2 + 0 }')
    pages=$(((${total:-0} + 24) / 25))
    ((pages > 0)) || pages=1
    log "history holds ${total:-?} events: unfiltered query over $pages pages of 25"

    for ((ROUND = 1; ROUND <= ROUNDS; ROUND++)); do
        bench "noop GET" "$NOOP_PID" "$CONNS" bench/get.lua "$NOOP" "$GET_POOL" get-
        bench "product GET" "$REPRICER_PID" "$CONNS" bench/get.lua "$API" "$GET_POOL" get-
        bench "query by product" "$REPRICER_PID" "$CONNS" bench/query.lua "$API" product "$GET_POOL" get-
        bench "query page" "$REPRICER_PID" "$CONNS" bench/query.lua "$API" page "$pages"
    done

    MAIN_RSS=$(rss_kib "$REPRICER_PID")
    MAIN_HWM=$(rss_kib "$REPRICER_PID" VmHWM)
    MAIN_EVENTS=$total
    MAIN_REJECTIONS=$(curl -s "$ADMIN/metrics" | grep '^repricer_admission_rejections_total' | paste -sd' ' || true)
    stop_server "$REPRICER_PID"
    stop_server "$NOOP_PID"
    grep -E ' (WARN|ERROR) ' "$RUN_DIR/main/server.log" | head -5 >"$RUN_DIR/main/warnings" || true
}

print_main() {
    echo
    echo "== Figures (release build, durability on: every 202 waited for its group-commit fsync) =="
    printf '%-17s %5s %3s %10s %8s %8s %9s %8s %7s %5s %9s %8s %8s %8s  %s\n' \
        stage conns rnd ok/s p50_ms p99_ms p99.9_ms max_ms non2xx srv% wrk/oth% fsync/s ev/fsync fsync_ms statuses
    local IFS=$'\t' stage conns ok p50 p99 p999 max non2xx statuses errors scpu wcpu fs pf fm rnd
    while read -r stage conns ok p50 p99 p999 max non2xx statuses errors scpu wcpu fs pf fm rnd; do
        [[ $errors == connect:0,read:0,write:0,timeout:0 ]] && errors="" || errors=" socket errors $errors"
        printf '%-17s %5s %3s %10s %8s %8s %9s %8s %7s %5s %9s %8s %8s %8s  %s%s\n' \
            "$stage" "$conns" "$rnd" "$ok" "$p50" "$p99" "$p999" "$max" "$non2xx" "$scpu" "$wcpu" "$fs" "$pf" "$fm" "$statuses" "$errors"
    done <"$RESULTS"
    unset IFS
    if awk -F'\t' '{ split($12, c, "/"); if (c[2] + 0 > 20) bad = 1 } END { exit !bad }' "$RESULTS"; then
        echo "WARNING: other work took more than 20% of a core from the server's cores in some stages (oth%): those figures are noisy"
    fi
    echo "(ok/s counts 2xx answers only; srv% / wrk% = CPU of the server / of wrk; oth% = CPU that anything"
    echo " else (other processes, kernel threads, interrupts, VM steal) used on the server's cores $SERVER_CPUS; 100 = one core;"
    echo " fsync/s, ev/fsync, fsync_ms = group commits per second, events per commit, mean fdatasync time)"

    echo
    echo "== Against the ceilings ($CONNS connections; ok/s of the service / ok/s of the no-op server in the same round) =="
    # ratio_line LABEL STAGE CEILING_STAGE TARGET%: one line per round, then the median.
    ratio_line() {
        local r ok ceil pct pcts="" med verdict
        for ((r = 1; r <= ROUNDS; r++)); do
            ok=$(result "$2" "$CONNS" 3 "$r")
            ceil=$(result "$3" "$CONNS" 3 "$r")
            pct=$(calc "${ceil:-0} > 0 ? ${ok:-0} / $ceil * 100 : 0")
            pcts+=" $pct"
            ((ROUNDS == 1)) || printf '  %-36s round %d: %10s / %10s = %6s%%\n' "$1" "$r" "$ok" "$ceil" "$pct"
        done
        med=$(median <<<"$pcts")
        verdict=$(awk -v p="$med" -v t="$4" 'BEGIN { print (p >= t ? "PASS" : "FAIL") }')
        if ((ROUNDS == 1)); then
            printf '%-38s %10s / %10s = %6s%%   target >= %s%%  %s\n' "$1" "$ok" "$ceil" "$med" "$4" "$verdict"
        else
            printf '%-38s median of %d rounds      = %6s%%   target >= %s%%  %s\n' "$1" "$ROUNDS" "$med" "$4" "$verdict"
        fi
    }
    ratio_line "reprice vs no-op reprice" reprice "noop reprice" 50
    ratio_line "product GET vs no-op GET" "product GET" "noop GET" 70
    ratio_line "query by product vs no-op GET" "query by product" "noop GET" 70
    ratio_line "query page vs no-op GET" "query page" "noop GET" 70
    if ((ROUNDS > 1)); then
        echo
        echo "== Medians over $ROUNDS rounds =="
        printf '%-17s %5s %10s %8s\n' stage conns ok/s p99_ms
        local st
        for st in "noop reprice" reprice "noop GET" "product GET" "query by product" "query page"; do
            printf '%-17s %5s %10s %8s\n' "$st" "$CONNS" \
                "$(awk -F'\t' -v s="$st" -v c="$CONNS" '$1 == s && $2 == c { print $3 }' "$RESULTS" | paste -sd' ' | median)" \
                "$(awk -F'\t' -v s="$st" -v c="$CONNS" '$1 == s && $2 == c { print $5 }' "$RESULTS" | paste -sd' ' | median %.3f)"
        done
    fi
    echo
    echo "repricer after the main stage: VmRSS $(calc "$MAIN_RSS / 1024") MiB (peak VmHWM $(calc "$MAIN_HWM / 1024") MiB), ${MAIN_EVENTS:-?} events in history"
    [[ -n $MAIN_REJECTIONS ]] && echo "admission rejections: $MAIN_REJECTIONS"
    if [[ -s $RUN_DIR/main/warnings ]]; then
        echo "first warnings/errors in the server log:"
        sed 's/^/  /' "$RUN_DIR/main/warnings"
    fi
}

# ---------------------------------------------------------------- rss stage
run_rss() {
    mkdir -p "$RUN_DIR/rss"
    start_repricer "$RUN_DIR/rss/data" "$RUN_DIR/rss/server.log"
    RSS_EMPTY=$(rss_kib "$REPRICER_PID")
    log "writing $RSS_PRODUCTS distinct products rss-0 .. rss-$((RSS_PRODUCTS - 1)) at $CONNS connections"
    load_products "$RSS_PRODUCTS" rss-
    RSS_LOAD_SECONDS=$LOAD_SECONDS
    RSS_LOAD_LINE=$LOAD_LINE
    RSS_LOADED=$(rss_kib "$REPRICER_PID")
    sleep 5                         # the open window is sealed, queues drain
    RSS_SETTLED=$(rss_kib "$REPRICER_PID")
    RSS_HWM=$(rss_kib "$REPRICER_PID" VmHWM)
    RSS_MISSING=$(check_products "$RSS_PRODUCTS" rss- 200)
    RSS_EVENTS=$(metric repricer_events_sequenced_total)
    # Restart on the same data: what recovering 1M last-known prices costs.
    stop_server "$REPRICER_PID"
    start_repricer "$RUN_DIR/rss/data" "$RUN_DIR/rss/server-restart.log"
    RSS_READY=$READY_SECONDS
    RSS_RECOVERY=$(metric repricer_recovery_duration_seconds)
    RSS_RESTARTED=$(rss_kib "$REPRICER_PID")
    RSS_MISSING_AFTER=$(check_products "$RSS_PRODUCTS" rss- 200)
    RSS_DISK=$(du -sh "$RUN_DIR/rss/data" | cut -f1)
    stop_server "$REPRICER_PID"
}

print_rss() {
    local mb=$((RSS_SETTLED * 1024 / 1000000)) verdict
    verdict=$(awk -v m="$mb" 'BEGIN { print (m <= 400 ? "PASS" : "FAIL") }')
    echo
    echo "== RSS with $RSS_PRODUCTS distinct products =="
    echo "empty service:                 VmRSS $(calc "$RSS_EMPTY / 1024") MiB"
    echo "loaded in ${RSS_LOAD_SECONDS}s ($(calc "$RSS_PRODUCTS / $RSS_LOAD_SECONDS" .0f) products/s at $CONNS connections; $(field statuses "$RSS_LOAD_LINE"), $RSS_EVENTS events sequenced)"
    echo "right after the load:          VmRSS $(calc "$RSS_LOADED / 1024") MiB"
    echo "5 s later:                     VmRSS $(calc "$RSS_SETTLED / 1024") MiB = $mb MB   target <= 400 MB  $verdict"
    echo "peak (VmHWM):                  $(calc "$RSS_HWM / 1024") MiB"
    echo "after a restart (recovered):   VmRSS $(calc "$RSS_RESTARTED / 1024") MiB; ready in ${RSS_READY}s, recovery metric ${RSS_RECOVERY}s"
    echo "sampled products not readable: $RSS_MISSING of 202 before the restart, $RSS_MISSING_AFTER of 202 after; data on disk $RSS_DISK"
}

# ---------------------------------------------------------------- run
build
wait_quiet
log "run directory $RUN_DIR"
[[ $MODE == main || $MODE == all ]] && run_main
[[ $MODE == rss || $MODE == all ]] && run_rss

echo
echo "== Machine =="
machine_notes
[[ $MODE == main || $MODE == all ]] && print_main
[[ $MODE == rss || $MODE == all ]] && print_rss
echo
echo "== Commands (from the repository root) =="
echo "# each in a session of its own (setsid) whose scheduler autogroup is set to nice $NICE"
printf '%s\n' "${COMMANDS[@]}"
