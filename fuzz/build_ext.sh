#!/usr/bin/env bash
# Build the shim's cffi extension with sanitizer flags into OUT, and lay out an overlay
# package OUT/pkg/xdna_emu (symlinks to xdna_emu/, except _shim*.so which is the new build),
# so PYTHONPATH=OUT/pkg runs the package against the instrumented shim.
# usage: fuzz/build_ext.sh PYTHON OUT "SANITIZER FLAGS"   (env CC, default gcc)
# Uses the package's own ffibuilder (cffi's compile step honours CC/CFLAGS/LDFLAGS/LDSHARED),
# so the build is the one `pip install` makes, with only the flags changed.
set -euo pipefail
SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="$1"
OUT="$2"
SAN="$3"
CC="${CC:-gcc}"
rm -rf "$OUT/lib" "$OUT/pkg"
mkdir -p "$OUT/lib/csrc"
# cffi compiles from inside tmpdir with the source paths relative to the repo: mirror csrc
# there as symlinks so the objects stay in OUT
for f in "$SRC"/csrc/*; do ln -sfn "$f" "$OUT/lib/csrc/$(basename "$f")"; done
(cd "$SRC" && CC="$CC" CFLAGS="$SAN -g -O1" LDFLAGS="$SAN" LDSHARED="$CC -shared" \
    "$PY" -c 'import sys; sys.path.insert(0, sys.argv[2])
from xdna_emu._shim_build import ffibuilder
print(ffibuilder.compile(tmpdir=sys.argv[1]))' "$OUT/lib" "$SRC" >"$OUT/build.log" 2>&1) ||
    { cat "$OUT/build.log" >&2; exit 1; }
so="$(ls "$OUT"/lib/xdna_emu/_shim*.so)"
mkdir -p "$OUT/pkg/xdna_emu"
for e in "$SRC"/xdna_emu/* "$SRC"/xdna_emu/.[!.]*; do
    [ -e "$e" ] || continue
    case "$(basename "$e")" in _shim*.so|__pycache__) continue ;; esac
    ln -s "$e" "$OUT/pkg/xdna_emu/$(basename "$e")"
done
ln -s "$so" "$OUT/pkg/xdna_emu/$(basename "$so")"
echo "$so"
