"""`xdna-emu status`: right after a probe, during jobs, after a failed probe; the stable
JSON schema (docs/spec/operator.md §6) and the readable tables."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from xdna_emu.cli import format_status, status_view
from xdna_emu.fw.image import write_firmware

SCHEMA_KEYS = {"schema", "chip", "bdf", "pid", "socket", "rss_kib", "probed", "power",
               "firmware", "last_driver", "channels", "contexts", "async_event_ids",
               "async_errors", "async_errors_posted", "iommu_faults", "clients", "msix",
               "counters"}
CHANNEL_KEYS = {"index", "name", "msix", "x2i_head", "x2i_tail", "i2x_head", "i2x_tail",
                "msgs_in", "msgs_out", "pending_ids", "state", "error"}
CONTEXT_KEYS = {"id", "pasid", "priority", "start_col", "num_col", "msix", "channel", "state",
                "queued", "submitted", "completed", "errors"}


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "xdna_emu", *args], capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL)


def status(emu: Any) -> dict[str, Any]:
    out = cli("status", "--socket", str(emu.socket), "--json")
    assert out.returncode == 0, out.stderr
    st = json.loads(out.stdout)
    assert set(st) == SCHEMA_KEYS
    return st


def test_status_right_after_a_probe_says_it_worked(xdna_emulator, xdna_firmware_dir: Path) -> None:
    out = cli("probe", "--socket", str(xdna_emulator.socket), "--firmware-path",
              str(xdna_firmware_dir))
    assert out.returncode == 0, out.stderr
    st = status(xdna_emulator)
    last = st["last_driver"]
    assert last["probed"] is True and last["why"] == "closed"
    assert (last["fw_version"], last["protocol"]) == ("1.1.2.64", "6.24")
    assert last["psp_error"] is None and last["pid"] > 0
    text = cli("status", "--socket", str(xdna_emulator.socket)).stdout
    assert "probed firmware 1.1.2.64 protocol 6.24" in text


def test_status_after_a_failed_probe_says_why(xdna_emulator, tmp_path: Path) -> None:
    path = write_firmware("npu4", tmp_path)
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    assert cli("probe", "--socket", str(xdna_emulator.socket), "--firmware-path",
               str(tmp_path)).returncode == 1
    last = status(xdna_emulator)["last_driver"]
    assert last["probed"] is False and "payload digest mismatch" in last["psp_error"]


def test_status_while_jobs_run(xdna_emulator, xdna_firmware_dir: Path) -> None:
    from xdna_emu.runtime import Device

    with Device.open(xdna_emulator.socket, firmware_path=xdna_firmware_dir) as dev:
        a, b = dev.context(), dev.context()
        assert a.run("nop").wait(5) == "completed"
        assert a.run("nop").wait(5) == "completed"
        assert b.run("fail").wait(5) == "error"
        st = status(xdna_emulator)
        text = cli("status", "--socket", str(xdna_emulator.socket)).stdout
    assert st["probed"] is True
    assert st["power"]["state"] == "on" and st["power"]["dpm_level"] is not None
    assert st["power"]["npuclk_mhz"] > 0 and st["power"]["hclk_mhz"] > 0
    assert st["firmware"] == {"psp_state": "running", "version": "1.1.2.64", "protocol": "6.24",
                              "last_error": None}
    assert [c["name"] for c in st["channels"]][0] == "mgmt"
    assert all(set(c) == CHANNEL_KEYS for c in st["channels"])
    ctxs = sorted(st["contexts"], key=lambda c: c["id"])
    assert all(set(c) == CONTEXT_KEYS for c in ctxs)
    assert [(c["submitted"], c["completed"], c["errors"]) for c in ctxs] == [(2, 2, 0), (1, 0, 1)]
    assert [c["role"] for c in st["clients"]].count("driver") == 1
    assert len(st["async_event_ids"]) > 0 and all(i >> 24 == 0x1D for i in st["async_event_ids"])
    assert st["counters"]["jobs_failed"] == 1
    (err,) = st["async_errors"]  # the fail command's AIE error, carried to the driver
    assert st["async_errors_posted"] == 1
    assert err["type"] == "AIE_ERROR" and err["delivered"] and err["status"] == "SUCCESS"
    assert err["answered_id"] >> 24 == 0x1D and err["answered_id"] not in st["async_event_ids"]
    assert [(e["col"], e["module"]) for e in err["errors"]] == [(ctxs[1]["start_col"], "CORE")]
    for needle in ("probed     yes", "power      on", "channels", "contexts", "clients",
                   "driver", "jobs_failed 1", f"{st['async_event_ids'][0]:#x}",
                   "async errors posted 1, the last 1:", f"{err['answered_id']:#x}"):
        assert needle in text, needle


RAW: dict[str, Any] = {
    "chip": "npu4", "bdf": "0000:c5:00.1", "pid": 7, "socket": "/s", "rss_kib": 2048,
    "probed": True, "sessions": 1, "stats": {"dropped_clients": 2}, "msix": {"delivered": 3},
    "iommu_faults": ["pasid 1: read of 0x1000+64 unmapped"],
    "clients": [{"session": 1, "pid": 9, "pasid": 1, "since": 0.0, "role": "driver"}],
    "last_driver": None,
    "device": {
        "smu": {"power": "on", "dpm_level": 3, "hard_dpm_level": 7, "npuclk_mhz": 800,
                "hclk_mhz": 1200},
        "psp": {"state": "running", "last_cmd": 2, "last_resp": 0, "last_error": None},
        "firmware": {"version": "1.1.2.64", "protocol": "6.24", "suspended": True,
                     "async_posted_total": 5, "async_posted": [
                         {"time_ns": 2_500_000, "type": "AIE_ERROR", "answered_id": 0x1D000011,
                          "delivered": True, "status": "SUCCESS",
                          "errors": [{"row": 2, "col": 3, "module": "CORE", "event": 0x41}]},
                         {"time_ns": 3_000_000, "type": "EXCEPTION", "answered_id": None,
                          "delivered": False, "status": "SUCCESS", "errors": []}]},
        "channels": [{"index": 1, "name": "ctx0", "slot": 1, "msix": 1,
                      "x2i": {"buf": 0, "head": 0x40, "tail": 0x80},
                      "i2x": {"buf": 0, "head": 0x10, "tail": 0x20}, "msgs_in": 4,
                      "msgs_out": 3, "queued": 1, "queued_ids": [0x1D000005],
                      "state": "error", "error": "x2i tail 0x3 out of range or unaligned"}],
        "pending_async_events": [{"id": 0x1D000010, "buf_addr": 0, "buf_size": 8192}],
        "contexts": [{"id": 0x11, "pasid": 1, "priority": 3, "start_col": 2, "num_col": 4,
                      "msix": 1, "channel": 1, "state": "ok", "queued": 0, "submitted": 5,
                      "completed": 4, "failed": 1}],
        "counters": {"iommu_faults": 1, "malformed_msgs": 1, "writes": 10},
    },
}  # fmt: skip


def test_status_view_and_tables_from_a_raw_status() -> None:
    v = status_view(RAW)
    assert set(v) == SCHEMA_KEYS and v["power"]["state"] == "suspended"
    assert v["channels"][0]["pending_ids"] == [0x1D000005]
    text = format_status(v)
    for needle in ("power      suspended  DPM level 3 (hard 7)  NPU clock 800 MHz",
                   "0x40/0x80", "0x10/0x20", "0x1d000005", "error: x2i tail 0x3",
                   "0x11", "2-5", "IOMMU faults 1", "pasid 1: read of 0x1000+64 unmapped",
                   "dropped_clients 2", "malformed_msgs 1", "async events armed 1 (ids 0x1d000010",
                   "async errors posted 5, the last 2:", "0x1d000011", "3,2 CORE 0x41",
                   "lost: none armed"):
        assert needle in text, needle
    assert v["async_errors_posted"] == 5 and v["async_errors"][1]["answered_id"] is None
    assert "writes" not in text.split("errors", 1)[1].split("\n", 1)[0].replace("_writes", "")


def test_status_view_of_a_device_without_firmware() -> None:
    v = status_view({"chip": "npu4", "bdf": "x", "pid": 1, "rss_kib": 1024, "device": {}})
    assert v["firmware"]["version"] is None and v["channels"] == [] and v["power"]["state"] == "off"
    assert "version -" in format_status(v)
    assert v["async_errors"] == [] and v["async_errors_posted"] == 0
    assert "async errors posted 0" in format_status(v)


def test_status_view_of_an_aie4_device_that_counts_its_armed_events() -> None:
    v = status_view({"chip": "npu3", "bdf": "x", "pid": 1, "rss_kib": 1024,
                     "device": {"pending_async_events": 2, "firmware": {"version": "1"}}})
    assert v["async_event_ids"] == [] and v["async_errors"] == []
