#!/usr/bin/env bash
# Build the native libFuzzer harnesses (fuzz/native/fuzz_*.c + csrc/parse.c).
#
# The same script serves `make fuzz-native` and ClusterFuzzLite / OSS-Fuzz: it honours the
# OSS-Fuzz variables and falls back to a local clang + ASan + UBSan + libFuzzer build.
#   CC, CXX            compilers            (default clang / clang++)
#   CFLAGS             sanitizer flags      (default -g -O1 -fsanitize=address,undefined ...)
#   LIB_FUZZING_ENGINE fuzzing engine flags (default -fsanitize=fuzzer)
#   OUT                output directory     (default: $1, else build/fuzz/bin)
# Per harness it writes OUT/<name>, <name>.dict, <name>.options (max_len) and
# <name>_seed_corpus.zip, the file names OSS-Fuzz and ClusterFuzzLite look for.
set -euo pipefail
SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:-${OUT:-$SRC/build/fuzz/bin}}"
CC="${CC:-clang}"
CXX="${CXX:-$CC}"
CFLAGS="${CFLAGS:--g -O1 -fno-omit-frame-pointer -fsanitize=address,undefined,fuzzer-no-link -fno-sanitize-recover=undefined}"
LIB_FUZZING_ENGINE="${LIB_FUZZING_ENGINE:--fsanitize=fuzzer}"
mkdir -p "$OUT"
OBJ="$(mktemp -d)"
trap 'rm -rf "$OBJ"' EXIT

# the firmware interface header parse.h includes, and the UAPI header the decoder's argument
# checks include (the tables need only the standard library)
(cd "$SRC" && python3 -m xdna_emu.fw.iface.cgen "$SRC/csrc/generated" >/dev/null)
(cd "$SRC" && python3 -m xdna_emu.uapigen "$SRC/csrc/generated" >/dev/null)
# shellcheck disable=SC2086  # CFLAGS and LIB_FUZZING_ENGINE are word lists
$CC $CFLAGS -std=gnu11 -I"$SRC/csrc" -c "$SRC/csrc/parse.c" -o "$OBJ/parse.o"
# shellcheck disable=SC2086
$CC $CFLAGS -std=gnu11 -I"$SRC/csrc" -c "$SRC/csrc/uapi/argcheck.c" -o "$OBJ/argcheck.o"
SEEDS="$OBJ/seeds"
python3 "$SRC/fuzz/gen_seeds.py" "$SEEDS"
for h in "$SRC"/fuzz/native/fuzz_*.c; do
    name="$(basename "$h" .c)"
    # shellcheck disable=SC2086
    $CC $CFLAGS -std=gnu11 -I"$SRC/csrc" -c "$h" -o "$OBJ/$name.o"
    # shellcheck disable=SC2086
    $CXX $CFLAGS $LIB_FUZZING_ENGINE "$OBJ/$name.o" "$OBJ/parse.o" "$OBJ/argcheck.o" -o "$OUT/$name"
    case "$name" in
        fuzz_cmd_bo) cp "$SRC/fuzz/dict/ert.dict" "$OUT/$name.dict" ;;
        *) cp "$SRC/fuzz/dict/mailbox.dict" "$OUT/$name.dict" ;;
    esac
    # input size caps: a bit more than the structure (the ring and BO harnesses need more)
    case "$name" in
        fuzz_mgmt_info) max_len=72 ;;
        fuzz_create_resp) max_len=84 ;;
        fuzz_resp_id) max_len=64 ;;
        fuzz_x2i_tx) max_len=256 ;;
        fuzz_i2x_rx) max_len=4200 ;; # the golden-trace rings (9 + 4096 bytes) stay whole
        *) max_len=1024 ;;
    esac
    printf '[libfuzzer]\nmax_len = %s\n' "$max_len" >"$OUT/$name.options"
    if [ -d "$SEEDS/$name" ]; then
        python3 -c 'import sys, zipfile, pathlib
z = zipfile.ZipFile(sys.argv[1], "w")
for p in sorted(pathlib.Path(sys.argv[2]).iterdir()):
    z.write(p, p.name)' "$OUT/${name}_seed_corpus.zip" "$SEEDS/$name"
    fi
    echo "built $OUT/$name"
done
