"""Planted bugs for the oracle tests: patches of fuzz/mutants/ applied in a scratch copy of
the tree (one shim build), and traces replayed there with the CLI, so each test proves its
oracle fires on the bug it is for (docs/spec/fuzzing.md §11)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

from xdna_emu.fuzz import trace as tr

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("fuzz_bench", ROOT / "fuzz" / "bench.py")
bench = importlib.util.module_from_spec(_spec)  # type: ignore[arg-type]
_spec.loader.exec_module(bench)  # type: ignore[union-attr]


def assert_findings(tmp_path: Path, names: tuple[str, ...], cases: list[tuple[str, str]],
                    build: bool = True) -> None:
    """Plant the mutants ``names`` in one scratch tree; each case is (trace text, the finding
    it must give there). The real tree passes every trace first. ``build`` False for
    patches of Python alone (no shim build needed)."""
    tree = tmp_path / "tree"
    bench.copy_tree(tree)
    for name in names:
        [patch] = bench.MUTANTS.glob(f"*-{name}.patch")
        subprocess.run(["patch", "-p1", "-s", "-i", str(patch)], cwd=tree, check=True)
    if build:
        bench.build_shim(tree, sys.executable)
    for text, want in cases:
        assert tr.replay(tr.parse(text)).ok, text  # the real code passes
        path = tmp_path / "case.trace"
        path.write_text(text)
        r = subprocess.run([sys.executable, "-m", "xdna_emu.cli", "trace", "replay", str(path), "--json"],
                           capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(tree)},
                           cwd=tree, timeout=300)
        got = json.loads(r.stdout)
        assert not got["ok"] and got["name"] == want, (names, text, got)
