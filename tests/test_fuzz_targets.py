"""The fuzz target registry (docs/spec/fuzzing.md §11): targets declared by the module that
runs them, read without importing anything."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from xdna_emu.fuzz.targets import FuzzTarget, RegistryError, discover, registry


def test_the_package_declares_its_targets() -> None:
    reg = registry()
    assert list(reg) == ["device", "shim", "parsers", "threads"]
    assert {t.name for t in reg.values() if t.bench} == {"device", "shim", "threads"}
    assert reg["device"].engines == ("atheris", "builtin") and reg["shim"].engines == ("builtin",)
    assert reg["device"].load_seeds("npu4") and reg["parsers"].load_seeds("npu4")
    assert reg["threads"].load_seeds("npu4") == {}


def test_a_new_target_is_one_file(tmp_path: Path) -> None:
    (tmp_path / "mine.py").write_text(
        '"""A target of my own."""\nimport nothing_that_exists  # never imported by the registry\n'
        'FUZZ_TARGETS = [{"name": "mine", "help": "my target", "worker": "my.worker",\n'
        '                 "current": True, "order": 7}]\n')
    (tmp_path / "other.py").write_text("X = 1\n")
    assert discover(tmp_path) == {"mine": FuzzTarget("mine", "my target", "my.worker",
                                                     current=True, order=7)}


@pytest.mark.parametrize("decl", [
    "FUZZ_TARGETS = [{'name': 'x', 'help': 'h', 'worker': f()}]",  # not a literal
    "FUZZ_TARGETS = {'name': 'x'}",  # not a list
    "FUZZ_TARGETS = [{'name': 'x', 'help': 'h'}]",  # no worker
    "FUZZ_TARGETS = [{'name': 'x', 'help': 'h', 'worker': 'w', 'speed': 9}]",  # unknown key
    "FUZZ_TARGETS = [{'name': 'x', 'help': 'h', 'worker': 'w'}, {'name': 'x', 'help': 'h', 'worker': 'v'}]",
])
def test_a_malformed_declaration_is_refused(tmp_path: Path, decl: str) -> None:
    (tmp_path / "bad.py").write_text(decl + "\n")
    with pytest.raises(RegistryError):
        discover(tmp_path)


def test_the_cli_offers_every_registered_target() -> None:
    r = subprocess.run([sys.executable, "-m", "xdna_emu.cli", "fuzz", "--help"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0
    for name in registry():
        assert name in r.stdout
    r = subprocess.run([sys.executable, "-m", "xdna_emu.cli", "fuzz", "--target", "nope"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "nope" in r.stderr
