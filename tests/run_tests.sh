#!/usr/bin/env bash
# Run each test given on the command line (a binary, or a command line in one argument);
# print one summary line at the end: "tests: N passed, M failed". Exit non-zero on a failure.
set -u
pass=0
fail=0
failed=()
for t in "$@"; do
    echo "=== $t"
    if sh -c "$t"; then pass=$((pass + 1)); else fail=$((fail + 1)); failed+=("$t"); fi
done
[ ${#failed[@]} -gt 0 ] && echo "failed: ${failed[*]}"
echo "tests: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
