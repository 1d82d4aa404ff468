#!/usr/bin/env bash
# soak.sh — soak and overload test of the real ufbd (issue 7, item 4).
#
# Starts BUILD/ufbd on a free loopback port with a bounded queue, warms it up with the whole
# traffic pattern once, then runs DURATION seconds of wrk at saturation (CONNS connections,
# one input per request, never more than half the queue) plus, every BURST_EVERY seconds,
# a burst of BURST_CONNS connections for BURST_SECONDS that overflows the queue. Fails when:
#   - any response is not 200 or 429, or wrk sees a socket error (connect, read, write,
#     timeout), or the server counted a 5xx;
#   - a 429 happens outside a burst (checked on the server's counter between bursts: with
#     the burst's leftovers gone, the steady load alone cannot fill the queue);
#   - no burst got a 429 (the overload path was not exercised);
#   - VmRSS (sampled every second from /proc) grew 5% or more from the end of the warm-up to
#     the end of the run;
#   - a normal /classify afterwards does not give the same results as before the load;
#   - SIGTERM does not make it exit 0.
# Prints a summary (requests, req/s, p50/p99 of the steady load, 429s, RSS) and exits 0 when
# all held. Usage: tests/soak/soak.sh [--duration S] [--build DIR] [--model DIR] [--warmup S]
#                  [--conns N] [--queue N] [--burst-conns N] [--burst-seconds S]
#                  [--burst-every S]          (make soak SOAK_SECONDS=60)
# SOAK_KEEP=1 keeps the server log, the RSS samples and wrk's outputs (kept on failure).
set -u -o pipefail
cd "$(dirname "$0")/../.." || exit 2

DURATION=${SOAK_SECONDS:-600}
BUILD=build
MODEL=models/sst2-minilm-fff
WARMUP=20
CONNS=32
QUEUE=128
BURST_CONNS=512
BURST_SECONDS=3
BURST_EVERY=
while [ $# -gt 0 ]; do
    case "$1" in
    --duration) DURATION=$2 ;;
    --build) BUILD=$2 ;;
    --model) MODEL=$2 ;;
    --warmup) WARMUP=$2 ;;
    --conns) CONNS=$2 ;;
    --queue) QUEUE=$2 ;;
    --burst-conns) BURST_CONNS=$2 ;;
    --burst-seconds) BURST_SECONDS=$2 ;;
    --burst-every) BURST_EVERY=$2 ;;
    *) echo "usage: $0 [--duration S] [--build DIR] [--model DIR] [--warmup S] [--conns N]" \
        "[--queue N] [--burst-conns N] [--burst-seconds S] [--burst-every S]" >&2; exit 2 ;;
    esac
    shift 2
done
if [ -z "$BURST_EVERY" ]; then BURST_EVERY=$((DURATION / 4 < 30 ? DURATION / 4 : 30)); fi
[ "$BURST_EVERY" -gt "$BURST_SECONDS" ] || BURST_EVERY=$((BURST_SECONDS + 1))
[ $((2 * CONNS)) -le "$QUEUE" ] || { echo "soak: --conns must be at most half of --queue" >&2; exit 2; }
[ "$BURST_CONNS" -gt "$QUEUE" ] || { echo "soak: --burst-conns must exceed --queue" >&2; exit 2; }
command -v wrk >/dev/null || { echo "soak: wrk is not installed (make deps)" >&2; exit 2; }
[ -x "$BUILD/ufbd" ] || { echo "soak: $BUILD/ufbd is missing (make)" >&2; exit 2; }

WORK=$(mktemp -d /tmp/ufbd-soak.XXXXXX)
LUA=tests/soak/classify.lua
SRV_PID='' SAMPLER_PID='' STEADY_PID=''
failures=()
fail() { failures+=("$*"); echo "soak: FAIL: $*" >&2; }
cleanup() {
    for p in $STEADY_PID $SAMPLER_PID $SRV_PID; do kill "$p" 2>/dev/null; done
    if [ ${#failures[@]} -eq 0 ] && [ "${SOAK_KEEP:-0}" != 1 ]; then
        rm -rf "$WORK"
    else
        echo "soak: logs kept in $WORK" >&2
    fi
}
trap cleanup EXIT

# ---- server ----
# the log without the (many) lines of answered /classify requests
"$BUILD/ufbd" --host 127.0.0.1 --port 0 --model "$MODEL" --queue-size "$QUEUE" \
    2> >(grep --line-buffered -v -E ' POST /classify (200|429) ' >"$WORK/server.log") &
SRV_PID=$!
for _ in $(seq 1200); do
    grep -q "ufbd: ready" "$WORK/server.log" && break
    kill -0 "$SRV_PID" 2>/dev/null || break
    sleep 0.1
done
if ! grep -q "ufbd: ready" "$WORK/server.log"; then
    failures+=("start")
    echo "soak: ufbd did not start:" >&2
    cat "$WORK/server.log" >&2
    exit 1
fi
PORT=$(sed -n 's|.*ufbd: listening on http://[^:]*:\([0-9]*\).*|\1|p' "$WORK/server.log")
URL="http://127.0.0.1:$PORT"

metric() { # the value of one series, 0 when absent
    curl -s "$URL/metrics" | awk -v s="$1" '$1 == s { v = $2 } END { print v + 0 }'
}

server_5xx() {
    curl -s "$URL/metrics" | awk '/^ufbd_requests_total\{.*status="5[0-9][0-9]"/ { n += $2 }
                                  END { print n + 0 }'
}

rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$SRV_PID/status"; }

PROBE='{"inputs": "a gorgeous, witty, seductive movie .", "raw_scores": true,
        "return_stats": false}'
probe_results() { # the results of the probe request, as canonical JSON
    curl -s -H 'Content-Type: application/json' -d "$PROBE" "$URL/classify" |
        python3 -c 'import json, sys; print(json.dumps(json.load(sys.stdin)["results"], sort_keys=True))'
}

# Wait until the burst's leftovers are answered: in flight at most the steady connections
# (plus the scrape). From then on the queue holds at most 2 x CONNS <= QUEUE inputs.
settle() {
    for _ in $(seq 600); do
        [ "$(metric ufbd_in_flight_requests)" -le $((CONNS + 1)) ] && return 0
        sleep 0.1
    done
    fail "in-flight requests did not come back to the steady load after a burst"
}

# wrk with the counting script; $1 name, $2 connections, $3 seconds, then extra wrk flags.
run_wrk() {
    local name=$1 conns=$2 secs=$3
    shift 3
    wrk -t1 -c"$conns" -d"${secs}s" --timeout 30s "$@" -s "$LUA" "$URL" >"$WORK/$name.out" 2>&1
}

# Check one wrk run: only 200/429, no socket errors. Adds to the totals.
TOTAL_REQ=0 TOTAL_429=0 BURST_429=0
check_wrk() {
    local name=$1 f="$WORK/$1.out"
    if ! grep -q "^SOAK requests" "$f"; then fail "$name: wrk did not finish"; cat "$f" >&2; return; fi
    local bad
    bad=$(awk '$1 == "SOAK" && $2 == "status" && $3 != 200 && $3 != 429 { print $3 "x" $4 }' "$f")
    [ -z "$bad" ] || fail "$name: unexpected statuses: $bad"
    grep -q "^SOAK errors connect=0 read=0 write=0 timeout=0$" "$f" ||
        fail "$name: socket errors: $(grep '^SOAK errors' "$f")"
    local n n429
    n=$(awk '$1 == "SOAK" && $2 == "requests" { print $3 }' "$f")
    n429=$(awk '$1 == "SOAK" && $2 == "status" && $3 == 429 { print $4 }' "$f")
    TOTAL_REQ=$((TOTAL_REQ + n)) TOTAL_429=$((TOTAL_429 + ${n429:-0}))
    case $name in burst*) BURST_429=$((BURST_429 + ${n429:-0})) ;; esac
}

# ---- RSS sampler: one line per second, "seconds kB" ----
(
    t=0
    while kill -0 "$SRV_PID" 2>/dev/null; do
        echo "$t $(awk '/^VmRSS:/ { print $2 }' "/proc/$SRV_PID/status" 2>/dev/null)"
        sleep 1
        t=$((t + 1))
    done
) >"$WORK/rss.txt" &
SAMPLER_PID=$!

BEFORE=$(probe_results)
[ -n "$BEFORE" ] || fail "the probe /classify failed before the load"

# ---- warm-up: the whole pattern once (steady load and one burst) ----
echo "soak: ufbd pid $SRV_PID on port $PORT, model $MODEL, queue $QUEUE;" \
    "warm-up ${WARMUP}s, then ${DURATION}s of $CONNS connections + bursts of $BURST_CONNS" \
    "every ${BURST_EVERY}s"
run_wrk warmup "$CONNS" "$WARMUP" &
STEADY_PID=$!
sleep $((WARMUP / 3))
run_wrk burst-warmup "$BURST_CONNS" "$BURST_SECONDS"
wait "$STEADY_PID"
STEADY_PID=
check_wrk warmup
check_wrk burst-warmup
settle
TOTAL_REQ=0 TOTAL_429=0 BURST_429=0 # counted only for the main run
RSS_WARM=$(rss_kb)
OVERLOAD_0=$(metric 'ufbd_errors_total{type="Overloaded"}')

# ---- main run ----
START=$(date +%s)
run_wrk steady "$CONNS" "$DURATION" --latency &
STEADY_PID=$!
n_bursts=0
c429=$(metric 'ufbd_errors_total{type="Overloaded"}')
while :; do
    next=$((START + (n_bursts + 1) * BURST_EVERY))
    [ $((next + BURST_SECONDS + 5)) -le $((START + DURATION)) ] || break
    sleep $((next - $(date +%s) > 0 ? next - $(date +%s) : 0))
    now=$(metric 'ufbd_errors_total{type="Overloaded"}')
    [ "$now" = "$c429" ] || fail "$((now - c429)) requests got 429 outside a burst (before burst $((n_bursts + 1)))"
    n_bursts=$((n_bursts + 1))
    run_wrk "burst$n_bursts" "$BURST_CONNS" "$BURST_SECONDS"
    check_wrk "burst$n_bursts"
    settle
    c429=$(metric 'ufbd_errors_total{type="Overloaded"}')
done
wait "$STEADY_PID"
STEADY_PID=
now=$(metric 'ufbd_errors_total{type="Overloaded"}')
[ "$now" = "$c429" ] || fail "$((now - c429)) requests got 429 after the last burst"
check_wrk steady
settle
RSS_END=$(rss_kb)
OVERLOAD=$(($(metric 'ufbd_errors_total{type="Overloaded"}') - OVERLOAD_0))
GONE=$(metric ufbd_client_disconnects_total) # bursts end with requests in flight
N5XX=$(server_5xx)
[ "$N5XX" -eq 0 ] || fail "the server answered $N5XX requests with a 5xx"
[ "$n_bursts" -eq 0 ] || [ "$BURST_429" -gt 0 ] || fail "no burst got a 429: the queue never overflowed"

AFTER=$(probe_results)
if [ -z "$AFTER" ] || [ "$AFTER" != "$BEFORE" ]; then
    fail "/classify after the load: '$AFTER', before: '$BEFORE'"
fi

kill -TERM "$SRV_PID"
wait "$SRV_PID"
rc=$?
SRV_PID=
[ "$rc" -eq 0 ] || fail "SIGTERM: exit status $rc"

# ---- summary ----
GROWTH=$(awk -v a="$RSS_WARM" -v b="$RSS_END" 'BEGIN { printf "%.2f", (b - a) * 100 / a }')
awk -v g="$GROWTH" 'BEGIN { exit !(g < 5) }' || fail "RSS grew ${GROWTH}% (limit 5%)"
RSS_MAX=$(awk '$2 > m { m = $2 } END { print m + 0 }' "$WORK/rss.txt")
lat=$(grep '^SOAK latency_us' "$WORK/steady.out")
p50=$(echo "$lat" | sed -n 's/.*p50=\([0-9]*\).*/\1/p')
p99=$(echo "$lat" | sed -n 's/.*p99=\([0-9]*\).*/\1/p')
steady_n=$(awk '$1 == "SOAK" && $2 == "requests" { print $3 }' "$WORK/steady.out")
n200=$(cat "$WORK"/steady.out "$WORK"/burst[0-9]*.out 2>/dev/null |
    awk '$1 == "SOAK" && $2 == "status" && $3 == 200 { n += $4 } END { print n + 0 }')
echo "soak summary (${DURATION}s, $CONNS connections + $n_bursts bursts of $BURST_CONNS, queue $QUEUE):"
awk -v n="$TOTAL_REQ" -v ok="$n200" -v s="$steady_n" -v d="$DURATION" -v p50="$p50" \
    -v p99="$p99" -v q="$TOTAL_429" -v qb="$BURST_429" -v o="$OVERLOAD" -v gone="$GONE" \
    -v w="$RSS_WARM" -v e="$RSS_END" -v m="$RSS_MAX" -v g="$GROWTH" 'BEGIN {
    printf "  requests   %d answered (%.0f/s), %d of them 200 (%.0f/s); steady load: %d\n", n, n / d, ok, ok / d, s
    printf "  latency    p50 %.2f ms, p99 %.2f ms (steady load, bursts included)\n", p50 / 1e3, p99 / 1e3
    printf "  429        %d seen by clients (%d in bursts); server: %d Overloaded; no other error\n", q, qb, o
    printf "  gone       %d clients closed before their computed answer (ends of bursts, warm-up included)\n", gone
    printf "  RSS        %.1f MiB after warm-up, %.1f MiB at the end (%+.2f%%), max %.1f MiB\n", w / 1024, e / 1024, g, m / 1024
}'
echo "  after      /classify gives the same results; SIGTERM exit $rc"
if [ ${#failures[@]} -gt 0 ]; then
    echo "soak: FAILED (${#failures[@]}): ${failures[*]}"
    exit 1
fi
echo "soak: passed"
