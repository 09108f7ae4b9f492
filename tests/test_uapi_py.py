"""The UAPI from Python under `xdna-emu exec` (docs/spec/uapi.md §4): a job end to end
through xdna_emu.uapi.AccelFile's helpers, and a second process reading the first one's
contexts and BO usage and importing its exported BO (tests/uapi/py_job.py), per chip."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXEC = [sys.executable, "-m", "xdna_emu", "exec"]
pytestmark = pytest.mark.skipif(not shutil.which("umockdev-run"), reason="needs umockdev")


@pytest.mark.parametrize("chip", ["npu1", "npu4"])
def test_python_job_and_second_process(chip: str) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([*EXEC, "--chip", chip, "--", sys.executable,
                           str(ROOT / "tests" / "uapi" / "py_job.py"), "run"],
                          capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0 and "py_job ok" in proc.stdout, proc.stdout + proc.stderr
