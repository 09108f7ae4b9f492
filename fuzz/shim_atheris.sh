#!/usr/bin/env bash
# Coverage-guided fuzzing of the C shim itself: the cffi extension built with clang,
# -fsanitize=address,undefined,fuzzer-no-link, driven by atheris (libFuzzer) through the
# shim fuzz target (python -m xdna_emu.fuzz.shim_target --atheris): input bytes become shim
# calls and firmware faults, libFuzzer keeps the inputs that reach new C edges.
# usage: fuzz/shim_atheris.sh PYTHON SECONDS [libFuzzer args...]
# Findings: build/shimcov/artifacts/ (shim traces of invariant failures; libFuzzer crash-*
# inputs and current.trace for sanitizer aborts); corpus in build/shimcov/corpus/.
set -euo pipefail
SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="$1"
SECS="$2"
shift 2
case "$PY" in */*) PY="$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")" ;; esac
B="$SRC/build/shimcov"
SAN="-fsanitize=address,undefined,fuzzer-no-link -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
so="$(CC=clang "$SRC/fuzz/build_ext.sh" "$PY" "$B" "$SAN")"
# atheris ships ASan with libFuzzer linked in; it must be the first library loaded
PRELOAD="$("$PY" -c 'import atheris, os; print(os.path.join(atheris.path(), "asan_with_fuzzer.so"))')"
[ -f "$PRELOAD" ] || { echo "shim_atheris.sh: atheris has no asan_with_fuzzer.so" >&2; exit 1; }
echo "coverage-instrumented shim: $so (preload $PRELOAD)"
mkdir -p "$B/corpus" "$B/artifacts"
cd "$B"  # not the repo root: its uninstrumented xdna_emu must not shadow the overlay
export PYTHONPATH="$B/pkg${PYTHONPATH:+:$PYTHONPATH}"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:halt_on_error=1:${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:${UBSAN_OPTIONS:-}"
LD_PRELOAD="$PRELOAD" "$PY" -c 'import sys, xdna_emu._shim as s
sys.exit("/build/shimcov/" not in s.__file__)' ||
    { echo "shim_atheris.sh: the instrumented shim is not the one imported" >&2; exit 1; }
LD_PRELOAD="$PRELOAD" "$PY" -m xdna_emu.fuzz.shim_target --atheris --artifacts "$B/artifacts" \
    --stats "$B/stats.json" --current "$B/artifacts/current.trace" -- "$B/corpus" \
    -max_total_time="$SECS" -timeout=120 -rss_limit_mb=4096 -max_len=256 \
    -artifact_prefix="$B/artifacts/" -print_final_stats=1 "$@"
LD_PRELOAD="$PRELOAD" "$PY" -m xdna_emu.fuzz.shim_target --report "$B/stats.json"
