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
    (["probe", "--runtime-dir", "/nonexistent/xdna-rt"], "no running emulator"),
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


PROBE_KEYS = {"chip", "bdf", "vendor", "device", "revision", "vbnv", "fw_version",
              "protocol_version", "aie_version", "tiles", "msix_vectors", "dpm_levels", "stages"}


def test_probe_json_by_socket_and_by_bdf(xdna_emulator, xdna_firmware_dir: Path) -> None:
    emu = xdna_emulator
    out = run_cli("probe", "--socket", str(emu.socket), "--firmware-path",
                  str(xdna_firmware_dir), "--json")
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert PROBE_KEYS <= set(info)
    assert (info["chip"], info["bdf"], info["vendor"], info["device"], info["revision"]) == (
        "npu4", emu.bdf, 0x1022, 0x17F0, 0x10)
    assert set(info["tiles"]) >= {"cols", "rows", "core_rows", "mem_rows", "shim_rows"}
    assert {"smu", "psp", "fw_alive", "mgmt_init", "query"} <= {s["name"] for s in info["stages"]}
    assert info["fw_version"].count(".") == 3 and info["protocol_version"].count(".") == 1
    out = run_cli("probe", "--bdf", emu.bdf, "--runtime-dir", str(emu.runtime_dir),
                  "--firmware-path", str(xdna_firmware_dir))
    assert out.returncode == 0, out.stderr
    assert "NPU Strix" in out.stdout and "probe" in out.stdout


def test_probe_failure_is_one_line_nonzero(xdna_emulator, tmp_path: Path) -> None:
    out = run_cli("probe", "--socket", str(xdna_emulator.socket), "--firmware-path", str(tmp_path))
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "probe failed" in lines[0] and "npu.dev.sbin" in lines[0]


def test_devices_lists_running_daemons(xdna_emulator_factory, xdna_runtime_dir: Path) -> None:
    a = xdna_emulator_factory("npu4")
    b = xdna_emulator_factory("npu1")
    out = run_cli("devices", "--json", "--runtime-dir", str(xdna_runtime_dir))
    assert out.returncode == 0, out.stderr
    devs = {d["bdf"]: d for d in json.loads(out.stdout)}
    assert set(devs) == {a.bdf, b.bdf}
    assert devs[a.bdf]["chip"] == "npu4" and devs[a.bdf]["device"] == 0x17F0
    assert devs[b.bdf]["chip"] == "npu1" and devs[b.bdf]["driver"] == "amdxdna"
    assert devs[a.bdf]["socket"] == str(a.socket)
    text = run_cli("devices", "--runtime-dir", str(xdna_runtime_dir)).stdout
    assert a.bdf in text and "1022:1502" in text


def test_status_shows_the_daemon_state(xdna_emulator) -> None:
    out = run_cli("status", "--socket", str(xdna_emulator.socket), "--json")
    assert out.returncode == 0, out.stderr
    st = json.loads(out.stdout)
    assert st["schema"] == 1 and st["chip"] == "npu4" and st["bdf"] == xdna_emulator.bdf
    assert st["probed"] is False and st["last_driver"] is None
    assert st["rss_kib"] > 0 and st["power"]["state"] == "off"
    assert [c["role"] for c in st["clients"]] == ["client"]
    text = run_cli("status", "--bdf", xdna_emulator.bdf, "--runtime-dir",
                   str(xdna_emulator.runtime_dir)).stdout
    assert xdna_emulator.bdf in text and "probed     no" in text and "errors     none" in text


def test_demo_discovers_probes_and_runs_a_checked_job(tmp_path: Path) -> None:
    out = run_cli("demo", "--runtime-dir", str(tmp_path), timeout=120)
    assert out.returncode == 0, out.stderr
    for needle in ("found 0000:", "-> npu4", "MSI-X: Enable- Count=17", "firmware 1.1.2.64",
                   "completed", "result correct", "daemon stopped cleanly"):
        assert needle in out.stdout, needle
    assert not any(tmp_path.iterdir())  # the daemon removed its files
