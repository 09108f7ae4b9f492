#!/bin/bash -eu
# ClusterFuzzLite / OSS-Fuzz entry point: the harnesses build exactly as `make fuzz-native`
# builds them, with the engine's $CC $CFLAGS $LIB_FUZZING_ENGINE, into $OUT (each with its
# .dict and _seed_corpus.zip).
"$SRC/xdna-emu/fuzz/build.sh" "$OUT"
