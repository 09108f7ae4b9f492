# `make demo` and `make test` set up everything they need on a fresh machine.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
SYS_PKGS := umockdev libumockdev0 pciutils gcc libffi-dev python3-dev
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
BUILD_INPUTS := pyproject.toml setup.py $(wildcard csrc/*.c csrc/*.h csrc/uapi/*.c csrc/uapi/*.h csrc/datapath/*.c csrc/datapath/*.h) xdna_emu/uapi_table.py xdna_emu/uapigen.py xdna_emu/_shim_build.py xdna_emu/_datapath_build.py xdna_emu/_cbuild.py xdna_emu/genfile.py xdna_emu/kernelgen.py xdna_emu/kernels.py xdna_emu/chips/cgen.py $(wildcard xdna_emu/chips/*.toml) $(wildcard xdna_emu/fw/iface/*.py) xdna_emu/protocol.py xdna_emu/protogen.py

.PHONY: setup sysdeps demo test lint clean shim bench fuzz fuzz-native fuzz-shim fuzz-bench asan shim-debug tsan

setup: sysdeps .stamp-venv

# Install only the Debian packages that are missing; quick when all are present.
sysdeps:
	@missing=""; for p in $(SYS_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

$(VENV)/bin/activate:
	python3 -m venv $(VENV)

.stamp-venv: $(VENV)/bin/activate $(BUILD_INPUTS)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[test]'
	@touch $@

shim: setup

demo: setup
	$(VENV)/bin/xdna-emu demo $(if $(CHIP),--chip $(CHIP))

# tests/test_bench.py runs `xdna-emu bench --quick --json` as a schema check (never timings).
test: setup
	$(PY) -m pytest -q $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check xdna_emu tests fuzz examples

# Long campaigns live here, not in `make test`: FUZZ_SECONDS per target.
FUZZ_SECONDS ?= 600
fuzz: setup
	$(PIP) install -q -e '.[test,fuzz]'
	HYPOTHESIS_PROFILE=fuzz $(PY) -m pytest -q tests/test_fuzz_device.py tests/test_fuzz_shim.py
	$(VENV)/bin/xdna-emu fuzz --target device --seconds $(FUZZ_SECONDS) --json
	$(VENV)/bin/xdna-emu fuzz --target parsers --seconds $(FUZZ_SECONDS) --json
	$(VENV)/bin/xdna-emu fuzz --target shim --seconds $(FUZZ_SECONDS) --json
	$(VENV)/bin/xdna-emu fuzz --target threads --seconds $(FUZZ_SECONDS) --json

# The shim fuzz target guided by the C shim's own edge coverage: the extension built with
# clang -fsanitize=address,undefined,fuzzer-no-link and driven by atheris (fuzz/README.md).
fuzz-shim: setup
	@$(MAKE) --no-print-directory sysdeps SYS_PKGS="$(FUZZ_SYS_PKGS)"
	$(PIP) install -q -e '.[test,fuzz]'
	fuzz/shim_atheris.sh $(PY) $(FUZZ_SECONDS)

# Native libFuzzer targets on the shim's pure parsers (csrc/parse.c; fuzz/README.md).
# FUZZ_SECONDS per harness: 30 unless given on the command line or in the environment.
FUZZ_NATIVE_SECONDS := $(if $(filter command line environment,$(origin FUZZ_SECONDS)),$(FUZZ_SECONDS),30)
FUZZ_SYS_PKGS := clang libclang-rt-dev
fuzz-native:
	@$(MAKE) --no-print-directory sysdeps SYS_PKGS="$(FUZZ_SYS_PKGS)"
	fuzz/build.sh build/fuzz/bin
	fuzz/run_native.sh $(FUZZ_NATIVE_SECONDS) build/fuzz

# Seeded-bug benchmark: every fuzz/mutants/*.patch applied alone in a scratch copy (the
# shim's debug build), the shim, device and threads targets run FUZZ_BENCH_SECONDS each,
# time to first finding per mutant (README).
FUZZ_BENCH_SECONDS ?= 30
fuzz-bench: setup
	$(PY) fuzz/bench.py --seconds $(FUZZ_BENCH_SECONDS)

# The cffi extension built with ASan + UBSan into build/asan, then the shim's tests and a
# shim fuzz run (ASAN_FUZZ_SECONDS, default 60) against it with libasan preloaded (python
# itself is not instrumented).
asan: setup
	fuzz/asan.sh $(PY)

# The shim's debug build: the lock checker on (csrc/lockdep.c), into build/debug; run
# anything against it with PYTHONPATH=build/debug/pkg (fuzz/README.md).
shim-debug: setup
	fuzz/build_ext.sh $(abspath $(PY)) $(CURDIR)/build/debug "-DXDNA_LOCKDEP"

# ThreadSanitizer + lock checker build of the shim into build/tsan, then the shim's tests and
# the threads fuzz target (TSAN_FUZZ_SECONDS, default 60) against it (fuzz/tsan.sh).
TSAN_SYS_PKGS := libtsan2
tsan: setup
	@$(MAKE) --no-print-directory sysdeps SYS_PKGS="$(TSAN_SYS_PKGS)"
	fuzz/tsan.sh $(PY)

# Floors and figures from one run (docs/spec/operator.md §7); BENCH_ARGS="--quick --json" etc.
bench: setup
	$(VENV)/bin/xdna-emu bench $(BENCH_ARGS)

clean:
	rm -rf build *.egg-info .stamp-* xdna_emu/_shim.c xdna_emu/_shim*.so xdna_emu/_datapath.c xdna_emu/_datapath*.so xdna_emu/_accel*.so xdna_emu/_xdna_shim_c*.so csrc/generated .pytest_cache
	find . -name __pycache__ -prune -exec rm -rf {} +
