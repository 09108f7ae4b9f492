"""CLI contract: operator mistakes give one line and exit 2, never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "xdna_emu", *args], capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("args, needle", [
    (["run", "--chip", "npu99"], "unknown chip"),
    (["run", "--chip", "npu4", "--bogus"], "unrecognized arguments"),
    (["run"], "required"),
    (["frobnicate"], "invalid choice"),
    (["run", "--chip", "npu4", "--bdf", "zz"], "bad BDF"),
    (["probe", "--socket", "/nonexistent/xdna.sock"], "does not exist"),
    (["probe"], "required"),
    (["probe", "--socket", "/x", "--bdf", "0000:c5:00.1"], "not allowed"),
    (["mkfw", "--chip", "npu4", "--out", "/tmp/x", "--version", "1.2"], "firmware version"),
    (["mkfw", "--chip", "nope", "--out", "/tmp/x"], "unknown chip"),
])  # fmt: skip
def test_usage_errors_are_one_line_exit_2(args: list[str], needle: str, tmp_path: Path) -> None:
    out = run_cli(*args, "--runtime-dir", str(tmp_path)) if args[0] == "probe" and "--bdf" in args else run_cli(*args)
    assert out.returncode == 2, out
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert needle in lines[0] and "Traceback" not in out.stderr
    assert lines[0].startswith("xdna-emu: ")


def test_probe_unknown_bdf_is_a_usage_error(tmp_path: Path) -> None:
    out = run_cli("probe", "--bdf", "0000:c5:00.1", "--runtime-dir", str(tmp_path))
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1
    assert "no running emulator" in out.stderr


def test_mkfw_writes_the_driver_path(tmp_path: Path) -> None:
    out = run_cli("mkfw", "--chip", "npu4", "--out", str(tmp_path), "--version", "1.2.3.4")
    assert out.returncode == 0, out.stderr
    path = Path(out.stdout.strip())
    assert path == tmp_path / "amdnpu/17f0_10/npu.dev.sbin" and path.stat().st_size > 0


def test_devices_json_empty_runtime_dir(tmp_path: Path) -> None:
    out = run_cli("devices", "--json", "--runtime-dir", str(tmp_path))
    assert out.returncode == 0 and json.loads(out.stdout) == []
