#!/usr/bin/env bash
# ASan + UBSan build of the cffi shim extension into build/asan; the shim's tests (unit,
# probe, contexts and jobs, shim fuzzing and every regression trace) run against it, then
# the shim fuzz target runs for ASAN_FUZZ_SECONDS (default 60; 0 skips it).
# usage: fuzz/asan.sh [PYTHON] [pytest args...]   (PYTHON default .venv/bin/python)
#
# python is not instrumented, so libasan is LD_PRELOADed (it must come first in the library
# list) and leak checking is off (CPython's arenas look like leaks). The instrumented
# extension is reached through the overlay package fuzz/build_ext.sh lays out,
# build/asan/pkg/xdna_emu; the daemon subprocesses inherit the overlay.
set -euo pipefail
SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${1:-$SRC/.venv/bin/python}"
shift || true
case "$PY" in */*) PY="$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")" ;; esac
B="$SRC/build/asan"
CC="${ASAN_CC:-gcc}"
SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
mkdir -p "$B/tmp"
so="$(CC="$CC" "$SRC/fuzz/build_ext.sh" "$PY" "$B" "$SAN")"
LIBASAN="$("$CC" -print-file-name=libasan.so)"
[ -f "$LIBASAN" ] || { echo "asan.sh: $CC has no libasan.so" >&2; exit 1; }
echo "ASan shim: $so (preload $LIBASAN)"

cd "$SRC/tests"
export PYTHONPATH="$B/pkg${PYTHONPATH:+:$PYTHONPATH}"
export LD_PRELOAD="$LIBASAN"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:halt_on_error=1:${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:${UBSAN_OPTIONS:-}"
export XDNA_EMU_ASAN=1
# a plugin that fails the session unless the tests really load the instrumented shim
cat >"$B/pkg/xdna_asan_check.py" <<'PY'
def pytest_sessionstart(session):
    import xdna_emu._shim as s

    assert "/build/asan/" in s.__file__, "not the ASan shim: " + s.__file__
    print("xdna_emu._shim:", s.__file__)
PY
# from tests/, so the repo root (and its uninstrumented xdna_emu) is not on sys.path
"$PY" -m pytest -q -s -p xdna_asan_check -p no:cacheprovider --rootdir "$SRC" \
    test_shim_unit.py test_probe_e2e.py test_hwctx_e2e.py test_fuzz_shim.py test_shim_trace.py \
    test_regressions.py "$@"
secs="${ASAN_FUZZ_SECONDS:-60}"
[ "$secs" != 0 ] || exit 0
"$PY" -c 'import xdna_emu._shim as s, sys; sys.exit("/build/asan/" not in s.__file__)' ||
    { echo "asan.sh: the fuzz run would not load the ASan shim" >&2; exit 1; }
rm -rf "$B/fuzz"
"$PY" -m xdna_emu.fuzz.shim_target --seconds "$secs" --seed 1 --artifacts "$B/fuzz/artifacts" \
    --corpus "$B/fuzz/corpus" --stats "$B/fuzz/stats.json"
"$PY" -m xdna_emu.fuzz.shim_target --report "$B/fuzz/stats.json"
