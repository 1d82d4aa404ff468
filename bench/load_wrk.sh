#!/usr/bin/env bash
# Load figure: wrk with 64 connections on short sentences against a real ufbd, then the same
# sentences through `ufb classify` in one process (no HTTP) for the server-overhead ratio.
#   bench/load_wrk.sh [MODEL_DIR] [SECONDS]      (needs wrk: apt-get install wrk)
set -eu
MODEL=${1:-models/sst2-minilm-fff}
SECS=${2:-30}
BUILD=${BUILD:-build}
DEV=../shared/data/SST-2/dev.tsv
[ -f "$MODEL/config.json" ] || { echo "no model at $MODEL" >&2; exit 2; }
command -v wrk >/dev/null || { echo "wrk not installed (apt-get install wrk)" >&2; exit 2; }
texts=$(mktemp)
if [ -f "$DEV" ]; then tail -n +2 "$DEV" | head -200 | cut -f1 > "$texts"; fi
log=$(mktemp)
"$BUILD/ufbd" --model "$MODEL" --port 0 2>"$log" &
pid=$!
trap 'kill $pid 2>/dev/null; rm -f "$texts" "$log"' EXIT
for _ in $(seq 600); do grep -q "ufbd: ready" "$log" && break; sleep 0.1; done
port=$(sed -n 's/.*listening on http:\/\/[^:]*:\([0-9]*\).*/\1/p' "$log")
echo "server: $MODEL on port $port ($(grep -o '[0-9]* workers' "$log"))"
UFBD_TEXTS=$([ -s "$texts" ] && echo "$texts" || true) \
    wrk -t2 -c64 -d"${SECS}s" --latency -s bench/wrk_classify.lua "http://127.0.0.1:$port" \
    | grep -E "requests|Latency|Req/Sec"
# the same sentences, in one process, 20x over
rep=$(mktemp)
for _ in $(seq 20); do cat "$texts" >> "$rep"; done
n=$(wc -l < "$rep")
t0=$(date +%s.%N)
workers=$(grep -o '[0-9]* workers' "$log" | cut -d' ' -f1)
"$BUILD/ufb" classify --threads "${workers:-1}" --model "$MODEL" < "$rep" > /dev/null
t1=$(date +%s.%N)
rm -f "$rep"
awk -v n="$n" -v a="$t0" -v b="$t1" 'BEGIN { printf "ufb classify (one process, same thread count, batches of 32): %d sentences in %.2f s = %.1f sentences/s\n", n, b - a, n / (b - a) }'
