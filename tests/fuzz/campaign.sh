#!/usr/bin/env bash
# campaign.sh — the long fuzzing run behind the "≥ 10 million executions per target" claim.
#   tests/fuzz/campaign.sh [RUNS] [TARGET...]      (default 10000000 runs; all four targets)
# Builds the libFuzzer binaries (make fuzz FUZZ_SECONDS=1), then runs each target in chunks of
# one million executions (-runs, inputs up to FUZZ_MAX_LEN bytes, default 4096 as libFuzzer's own
# default: 3-5x more executions per second than make fuzz's 64 KiB inputs, which CI keeps
# exploring) on its growing corpus in build-fuzz/corpus/TARGET, adding every
# finished chunk's executed-unit count to build-fuzz/campaign/TARGET.runs. Stopping it loses at
# most the chunk in flight; starting it again carries on. Any crash, leak, timeout or sanitizer
# report stops the target with exit status 1 and leaves the reproducer (crash-*) in the cwd.
set -uo pipefail
cd "$(dirname "$0")/../.."
RUNS=${1:-10000000}
shift || true
TARGETS=${*:-request config tokenizer safetensors}
CHUNK=1000000
MAX_LEN=${FUZZ_MAX_LEN:-4096} # libFuzzer's default; make fuzz (CI) also tries inputs up to 64 KiB
mkdir -p build-fuzz/campaign
make -s fuzz FUZZ_SECONDS=1 >/dev/null || exit 1
status=0
for t in $TARGETS; do
    ledger=build-fuzz/campaign/$t.runs
    touch "$ledger"
    while :; do
        done_runs=$(awk '{s += $1} END {print s + 0}' "$ledger")
        [ "$done_runs" -ge "$RUNS" ] && break
        log=build-fuzz/campaign/$t.log
        build-fuzz/fuzz_$t -runs=$CHUNK -print_final_stats=1 -max_len=$MAX_LEN \
            -timeout=10 -rss_limit_mb=2048 \
            build-fuzz/corpus/$t tests/fuzz/corpus/$t >"$log" 2>&1
        rc=$?
        n=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
        if [ $rc -ne 0 ] || [ -z "$n" ]; then
            echo "fuzz $t: FAILED (exit $rc) after $done_runs runs; see $log" >&2
            grep -E "ERROR|SUMMARY|crash-|leak-|timeout-" "$log" >&2
            status=1
            continue 2
        fi
        echo "$n $(date -u +%FT%TZ)" >>"$ledger"
    done
    echo "fuzz $t: $(awk '{s += $1} END {print s + 0}' "$ledger") executions, no finding"
done
exit $status
