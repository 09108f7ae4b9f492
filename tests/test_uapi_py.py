"""The UAPI from Python under `xdna-emu exec` (docs/spec/uapi.md §4): a job end to end
through xdna_emu.uapi.AccelFile's helpers, and a second process reading the first one's
contexts and BO usage and importing its exported BO (tests/uapi/py_job.py), per chip."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.test_uapi_c import EXEC, ROOT, run_python

pytestmark = pytest.mark.skipif(not shutil.which("umockdev-run"), reason="needs umockdev")


@pytest.mark.parametrize("chip", ["npu1", "npu4"])
def test_python_job_and_second_process(chip: str) -> None:
    run_python(chip, "py_job ok", str(ROOT / "tests" / "uapi" / "py_job.py"), "run")


def test_runtime_beside_accel_file() -> None:
    """docs/spec/uapi.md §8: under exec a runtime Device attaches to the same daemon as a
    client beside an AccelFile; its contexts are not a DRM file's, so they are not in
    HW_CONTEXT_ALL, and its jobs run."""
    prog = textwrap.dedent("""
        import os
        import numpy as np
        from xdna_emu.runtime import Device
        from xdna_emu.uapi import AccelFile
        with AccelFile() as f, Device.open(socket=os.environ["XDNA_EMU_ACCEL0_SOCKET"]) as dev:
            assert dev.role == "client", dev.role
            ctx = dev.context()
            a = dev.buffer(np.arange(256, dtype=np.int32))
            out = dev.buffer(np.zeros(256, dtype=np.int32))
            assert ctx.run("scale", a, out, scalar=3).wait(timeout=30) == "completed"
            assert np.array_equal(out.read(), 3 * np.arange(256))
            assert f.hw_contexts() == []
            f.dev_bo(4096)  # the heap a context needs
            mine = f.create_hwctx()["handle"]
            assert [e["context_id"] for e in f.hw_contexts()] == [mine]
        print("both ok")
    """)
    run_python("npu4", "both ok", "-c", prog)


@pytest.mark.skipif(not shutil.which("pkg-config") or not (shutil.which("gcc") or shutil.which("cc")),
                    reason="needs pkg-config and a C compiler")
def test_installed_pkg_config_file_builds_a_c_user(tmp_path: Path) -> None:
    """The xdna-emu.pc the build installs (docs/spec/uapi.md §4), found through
    `xdna-emu config --pkg-config-path`, builds a program on both headers and the shim
    library; the opt-in wheel test does the same from a wheel in a fresh venv."""
    from xdna_emu import uapi_table as T

    pcdir = subprocess.run([sys.executable, "-m", "xdna_emu", "config", "--pkg-config-path"],
                           check=True, capture_output=True, text=True).stdout.strip()
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "xdna-emu"], check=True,
                           capture_output=True, text=True,
                           env=dict(os.environ, PKG_CONFIG_PATH=pcdir)).stdout.split()
    src = tmp_path / "user.c"
    src.write_text('#include <stdio.h>\n#include "amdxdna_accel.h"\n#include "xdna_shim.h"\n'
                   'int main(void) { printf("%lu %d\\n", (unsigned long)DRM_IOCTL_AMDXDNA_EXEC_CMD,'
                   ' xdna_shim_open("/nonexistent.sock", 10) == NULL); return 0; }\n')
    exe = tmp_path / "user"
    subprocess.run([shutil.which("gcc") or "cc", "-std=gnu11", "-Wall", "-Werror", "-o", str(exe),
                    str(src), *flags], check=True)
    out = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.split() == [str(T.ioctl("AMDXDNA_EXEC_CMD").number), "1"], out.stdout


_OPEN_AND_VERSION = textwrap.dedent("""
    import json, os, sys
    from xdna_emu import uapi_table as T
    from xdna_emu.uapi import AccelFile
    with AccelFile("/dev/accel/accel0") as f:
        assert f.version()["name_str"] == "amdxdna"
        cols = f.get_info("QUERY_AIE_METADATA", T.QUERY_AIE_METADATA)["cols"]
    device = open("/sys/class/accel/accel0/device/device").read().strip()
    sock = os.environ["XDNA_EMU_ACCEL0_SOCKET"]
    ready = os.path.join(os.path.dirname(sock), "ready.json")
    print(json.dumps({"cols": cols, "device": device, "socket": sock,
                      "pid": json.load(open(ready))["pid"],
                      "state": os.environ["XDNA_EMU_ACCEL0_STATE"]}))
""")


def _exec(args: list[str], code: str = _OPEN_AND_VERSION) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([*EXEC, *args, "--", sys.executable, "-c", code], capture_output=True,
                          text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_exec_on_a_running_emulator_by_socket_and_bdf(xdna_emulator_factory: Any,
                                                       xdna_runtime_dir: Path) -> None:
    """--socket and --bdf name a running daemon (docs/spec/uapi.md §5): the program's
    accel0 is that device, and exec leaves the daemon running for the next one."""
    from xdna_emu.chips import load_chip

    emu = xdna_emulator_factory("npu1")
    chip = load_chip("npu1")
    for args in (["--socket", str(emu.socket)],
                 ["--bdf", emu.bdf, "--runtime-dir", str(xdna_runtime_dir)],
                 ["--socket", str(emu.socket)]):  # once more: the daemon outlived the runs
        got = _exec(args)
        assert got["socket"] == str(emu.socket), (args, got)
        assert got["pid"] == emu.record["pid"], (args, got)
        assert int(got["device"], 16) == chip.pci.device, got
        assert got["cols"] == chip.cols, got
        assert emu.proc.poll() is None  # still running
        assert not Path(got["state"]).parent.exists()  # exec's own files are gone


def test_exec_without_a_target_leaves_nothing_behind() -> None:
    """No target: exec starts a daemon for npu4, the program's /dev/accel/accel0 works
    (DRM VERSION), and once it exits neither the daemon nor its runtime dir nor exec's own
    files remain (docs/spec/uapi.md §5)."""
    from xdna_emu.chips import load_chip

    got = _exec([])
    assert int(got["device"], 16) == load_chip("npu4").pci.device, got
    pid = int(got["pid"])
    assert pid != os.getpid()
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        pass
    else:  # exec waited for its daemon, so the pid is gone, not a zombie
        raise AssertionError(f"daemon {pid} still running: {Path(f'/proc/{pid}/cmdline').read_bytes()!r}")
    sock = Path(got["socket"])
    assert not sock.exists() and not sock.parent.parent.exists(), sock  # the private runtime dir
    assert not Path(got["state"]).parent.exists(), got["state"]
