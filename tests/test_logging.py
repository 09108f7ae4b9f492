"""Logs an operator can use: -v/-vv/--log-level anywhere, one debug line per mailbox message,
PSP/SMU command and reset, and a firmware failure's reason in the client's error."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from xdna_emu.cli import build_parser
from xdna_emu.cmdline import log_level
from xdna_emu.fw.image import write_firmware
from xdna_emu.shim import Shim, ShimError


@pytest.mark.parametrize("argv, env, want", [
    (["status"], {}, logging.WARNING),
    (["-v", "status"], {}, logging.INFO),
    (["status", "-v"], {}, logging.INFO),
    (["-vv", "status"], {}, logging.DEBUG),
    (["status", "-vv"], {}, logging.DEBUG),
    (["-v", "status", "-v"], {}, logging.DEBUG),
    (["status", "--verbose", "--verbose"], {}, logging.DEBUG),
    (["-vv", "status", "--log-level", "error"], {}, logging.ERROR),
    (["--log-level", "info", "status"], {}, logging.INFO),
    (["status"], {"XDNA_EMU_LOG_LEVEL": "debug"}, logging.DEBUG),
    (["status"], {"XDNA_EMU_LOG_LEVEL": "bogus"}, logging.WARNING),
    (["status"], {"XDNA_EMU_DEBUG": "1"}, logging.DEBUG),
    (["-v", "status"], {"XDNA_EMU_LOG_LEVEL": "error"}, logging.INFO),
])  # fmt: skip
def test_log_level_from_anywhere(argv: list[str], env: dict[str, str], want: int) -> None:
    assert log_level(build_parser().parse_args(argv), env) == want


def test_bad_log_level_is_a_usage_error() -> None:
    out = subprocess.run([sys.executable, "-m", "xdna_emu", "status", "--log-level", "loud"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "invalid choice" in out.stderr and out.stderr.count("\n") == 1


@pytest.fixture
def debug_daemon(xdna_runtime_dir: Path, tmp_path: Path):  # noqa: ANN201
    """``xdna-emu run -vv`` with its stderr in a file; yields (ready record, log path)."""
    log_path = tmp_path / "daemon.log"
    with open(log_path, "wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "xdna_emu", "run", "--chip", "npu4",
                                 "-vv", "--runtime-dir", str(xdna_runtime_dir),
                                 "--exit-with-pid", str(os.getpid())],
                                stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        rec = json.loads(proc.stdout.readline())
        yield rec, log_path
    finally:
        proc.terminate()
        proc.wait(30)


def test_debug_lines_per_message_command_and_reset(debug_daemon, xdna_firmware_dir: Path) -> None:
    rec, log_path = debug_daemon
    with Shim.open(rec["socket"]) as shim:
        shim.probe(xdna_firmware_dir)
    text = log_path.read_text()
    rx = re.findall(r"mbox rx chan 0 \(mgmt\) id (0x1d[0-9a-f]{6}) ([A-Z_]+)\n", text)
    tx = re.findall(r"mbox tx chan 0 \(mgmt\) id (0x1d[0-9a-f]{6}) ([A-Z_]+) status ([A-Z_]+)\n",
                    text)
    assert ("QUERY_AIE_VERSION" in {op for _, op in rx}
            and ("QUERY_AIE_VERSION", "SUCCESS") in {(op, st) for _, op, st in tx})
    assert {i for i, _, _ in tx} <= {i for i, _ in rx}  # every reply answers a logged request
    assert re.search(r"PSP VALIDATE arg 0x[0-9a-f]+ 0x[0-9a-f]+ 0x[0-9a-f]+ -> OK\n", text)
    assert "PSP START arg 0x1" in text
    assert re.search(r"SMU POWER_ON arg 0x0 -> OK out 0x0\n", text)
    assert re.search(r"SMU SET_HARD_DPMLEVEL arg 0x[0-9a-f]+ -> OK", text)
    # the driver going away resets the function (FLR): the daemon logs it once it sees the
    # session close, so wait for the line rather than for a time
    for _ in range(1000):
        if "device reset (firmware" in log_path.read_text():
            break
        time.sleep(0.01)
    assert "device reset (firmware" in log_path.read_text()


def _bad_image(tmp_path: Path) -> Path:
    path = write_firmware("npu4", tmp_path)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # the payload no longer matches the header's digest
    path.write_bytes(bytes(data))
    return tmp_path


def test_firmware_failure_reason_reaches_the_client(xdna_emulator, tmp_path: Path) -> None:
    fw = _bad_image(tmp_path)
    with Shim.open(xdna_emulator.socket) as shim, pytest.raises(ShimError) as info:
        shim.probe(fw)
    assert "payload digest mismatch" in info.value.strerror
    assert "VALIDATE" in info.value.strerror and info.value.errno != 0


def test_probe_json_failure_is_an_error_object(xdna_emulator, tmp_path: Path) -> None:
    fw = _bad_image(tmp_path)
    out = subprocess.run([sys.executable, "-m", "xdna_emu", "probe", "--json", "--socket",
                          str(xdna_emulator.socket), "--firmware-path", str(fw)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    err = json.loads(out.stdout)
    assert err["kind"] == "failure" and "payload digest mismatch" in err["error"]
    assert isinstance(err["errno"], int) and err["errno"] > 0
    assert out.stderr.count("\n") == 1 and "payload digest mismatch" in out.stderr


def test_probe_json_usage_error_is_an_error_object(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "xdna_emu", "probe", "--json", "--socket",
                          str(tmp_path / "none.sock")], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    err = json.loads(out.stdout)
    assert err == {"error": f"socket {tmp_path / 'none.sock'} does not exist", "kind": "usage",
                   "errno": None}
