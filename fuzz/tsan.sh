#!/usr/bin/env bash
# ThreadSanitizer build of the cffi shim extension, with the lock checker on
# (-DXDNA_LOCKDEP, csrc/lockdep.c), into build/tsan; the shim's tests run against it, then
# the threads fuzz target (real threads, a real daemon) for TSAN_FUZZ_SECONDS (default 60;
# 0 skips it). A data race, a lock held across a wait or a lock-order inversion aborts.
# usage: fuzz/tsan.sh [PYTHON] [pytest args...]   (PYTHON default .venv/bin/python)
#
# python is not instrumented, so libtsan is LD_PRELOADed; fuzz/tsan.supp silences glibc's
# TLS bookkeeping only. The instrumented extension is reached through the overlay package
# fuzz/build_ext.sh lays out, build/tsan/pkg/xdna_emu (the daemon subprocesses inherit it).
set -euo pipefail
SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${1:-$SRC/.venv/bin/python}"
shift || true
case "$PY" in */*) PY="$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")" ;; esac
B="$SRC/build/tsan"
CC="${TSAN_CC:-gcc}"
mkdir -p "$B"
so="$(CC="$CC" "$SRC/fuzz/build_ext.sh" "$PY" "$B" "-fsanitize=thread -DXDNA_LOCKDEP")"
LIBTSAN="$("$CC" -print-file-name=libtsan.so)"
[ -f "$LIBTSAN" ] || { echo "tsan.sh: $CC has no libtsan.so (apt-get install libtsan2)" >&2; exit 1; }
echo "TSan shim: $so (preload $LIBTSAN)"

cd "$SRC/tests"
export PYTHONPATH="$B/pkg${PYTHONPATH:+:$PYTHONPATH}"
export XDNA_THREADS_NO_REWRITE=1  # a user's store into a command BO races the driver by design
export TSAN_OPTIONS="halt_on_error=1:abort_on_error=1:second_deadlock_stack=1:suppressions=$SRC/fuzz/tsan.supp:${TSAN_OPTIONS:-}"
# a plugin that fails the session unless the tests really load the instrumented shim
cat >"$B/pkg/xdna_tsan_check.py" <<'PY'
def pytest_sessionstart(session):
    import xdna_emu._shim as s

    assert "/build/tsan/" in s.__file__, "not the TSan shim: " + s.__file__
    print("xdna_emu._shim:", s.__file__)
PY
# from tests/, so the repo root (and its uninstrumented xdna_emu) is not on sys.path
LD_PRELOAD="$LIBTSAN" "$PY" -m pytest -q -s -p xdna_tsan_check -p no:cacheprovider --rootdir "$SRC" \
    test_shim_unit.py test_probe_e2e.py test_hwctx_e2e.py test_fuzz_threads.py "$@"
secs="${TSAN_FUZZ_SECONDS:-60}"
[ "$secs" != 0 ] || exit 0
rm -rf "$B/fuzz" && mkdir -p "$B/fuzz"
LD_PRELOAD="$LIBTSAN" "$PY" -c 'import xdna_emu._shim as s, sys; sys.exit("/build/tsan/" not in s.__file__)' ||
    { echo "tsan.sh: the fuzz run would not load the TSan shim" >&2; exit 1; }
LD_PRELOAD="$LIBTSAN" "$PY" -m xdna_emu.fuzz.threaded --seconds "$secs" --seed 1 \
    --artifacts "$B/fuzz/artifacts" --stats "$B/fuzz/stats.json"
# the report imports the package, and with it the TSan shim, which needs libtsan loaded first
LD_PRELOAD="$LIBTSAN" "$PY" -m xdna_emu.fuzz.shim_target --report "$B/fuzz/stats.json"
