#!/usr/bin/env bash
# Run every native harness for SECONDS each (default 30) and print execs/s.
# usage: fuzz/run_native.sh [SECONDS] [BUILD_DIR]   (BUILD_DIR default build/fuzz)
# Corpora grow in BUILD_DIR/corpus/<name> (seeded from the harness's seed zip), crashes land
# in BUILD_DIR/artifacts/ as crash-*/timeout-*/leak-*; the exit code is non-zero on any crash.
# FUZZ_VALUE_PROFILE=1 adds -use_value_profile=1 (finds magic compares, ~2.5x fewer execs/s).
set -uo pipefail
SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SECONDS_EACH="${1:-30}"
B="${2:-$SRC/build/fuzz}"
mkdir -p "$B/artifacts" "$B/logs"
rc=0
printf '%-18s %12s %12s %6s %6s %s\n' target execs execs/s cov corpus result
for bin in "$B"/bin/fuzz_*; do
    case "$bin" in *.dict|*.zip|*.options) continue ;; esac
    name="$(basename "$bin")"
    corpus="$B/corpus/$name"
    if [ ! -d "$corpus" ]; then
        mkdir -p "$corpus"
        if [ -f "${bin}_seed_corpus.zip" ]; then
            python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' \
                "${bin}_seed_corpus.zip" "$corpus"
        fi
    fi
    log="$B/logs/$name.log"
    max_len="$(sed -n 's/^max_len *= *//p' "$bin.options" 2>/dev/null)"
    "$bin" -max_total_time="$SECONDS_EACH" -timeout=5 ${max_len:+-max_len=$max_len} \
        -use_value_profile="${FUZZ_VALUE_PROFILE:-0}" \
        -dict="$bin.dict" -artifact_prefix="$B/artifacts/$name-" -print_final_stats=1 \
        "$corpus" >"$log" 2>&1
    status=$?
    execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)"
    rate="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)"
    cov="$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)"
    ncorp="$(find "$corpus" -type f | wc -l)"
    if [ "$status" -eq 0 ]; then result=ok; else result="CRASH (see $log)"; rc=1; fi
    printf '%-18s %12s %12s %6s %6s %s\n' "$name" "${execs:-?}" "${rate:-?}" "${cov:-?}" "$ncorp" "$result"
done
exit $rc
