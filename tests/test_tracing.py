"""`xdna-emu run --trace FILE`: one Perfetto-loadable timeline of the device and its
clients' shim calls (docs/tracing.md). The test parses the file and checks the events and
how they nest, across the two processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from xdna_emu.control import ControlClient
from xdna_emu.runtime import Device


def _wait_for_driver_gone(sock: str) -> None:
    """Until the daemon has handled our driver session's close (bounded, not timed)."""
    for _ in range(1000):
        with ControlClient(sock) as cl:
            cl.version()
            if cl.status().get("last_driver"):
                return
        time.sleep(0.01)
    pytest.fail("the daemon never saw the driver leave")


@pytest.fixture
def traced_run(xdna_runtime_dir: Path, xdna_firmware_dir: Path, tmp_path: Path) -> dict[str, Any]:
    """A traced daemon that served one probe, an add job, a chain and a hung job (TDR)."""
    trace = tmp_path / "trace.json"
    proc = subprocess.Popen([sys.executable, "-m", "xdna_emu", "run", "--chip", "npu4",
                             "--runtime-dir", str(xdna_runtime_dir), "--trace", str(trace),
                             "--exit-with-pid", str(os.getpid())],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        rec = json.loads(proc.stdout.readline())
        with Device.open(rec["socket"], firmware_path=xdna_firmware_dir) as dev:
            dev.shim.set_tdr_ms(200)
            ctx = dev.context()
            a = dev.buffer(np.arange(1024, dtype=np.int32))
            b = dev.buffer(np.full(1024, 7, dtype=np.int32))
            out = dev.buffer(np.zeros(1024, dtype=np.int32))
            assert ctx.run("add", a, b, out).wait(5) == "completed"
            assert ctx.chain([("nop",), ("nop",)]).wait(5) == "completed"
            assert ctx.run("hang").wait(5) in ("timeout", "aborted")
        _wait_for_driver_gone(rec["socket"])
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    # tracing lowers the model's log level, but the console keeps warnings only
    text = err.decode()
    assert "Traceback" not in text and "mbox rx" not in text and "PSP" not in text
    assert text.strip().splitlines() == ["xdna_emu.fw.ctx: context 0 hung on message 0x1d000003"]
    doc = json.loads(trace.read_text())
    return {"doc": doc, "daemon_pid": rec["socket"] and proc.pid, "events": doc["traceEvents"]}


def test_trace_holds_every_kind_of_event(traced_run: dict[str, Any]) -> None:
    ev, dpid = traced_run["events"], traced_run["daemon_pid"]
    kinds = Counter((e["ph"], e.get("cat")) for e in ev)
    for kind in [("b", "job"), ("e", "job"), ("b", "mailbox"), ("e", "mailbox"), ("i", "mmio"),
                 ("i", "irq"), ("X", "psp"), ("X", "smu"), ("C", "power"), ("i", "device"),
                 ("i", "tdr"), ("X", "shim"), ("M", None)]:
        assert kinds[kind] > 0, kind
    names = {e["name"] for e in ev}
    assert {"PSP VALIDATE", "PSP START", "SMU POWER_ON", "device reset"} <= names
    assert {"GET_FIRMWARE_VERSION", "CREATE_CONTEXT", "CHAIN_EXEC_NPU"} & names
    assert any(e["name"].startswith("chan") and e["cat"] == "mmio" for e in ev)
    assert all(isinstance(e["ts"], int | float) for e in ev if e["ph"] != "M")
    # the daemon's events and the client's shim calls, each process named
    procs = {e["pid"]: e["args"]["name"] for e in ev if e["name"] == "process_name"}
    assert procs[dpid].startswith("xdna-emu daemon npu4") and procs[os.getpid()].startswith("client")
    shim = {e["name"] for e in ev if e.get("cat") == "shim"}
    assert {"open", "probe", "hwctx_create", "exec", "wait", "close"} <= shim
    assert all(e["pid"] == os.getpid() for e in ev if e.get("cat") == "shim")
    # power counter: on, at the highest DPM level the probe asked for
    power = [e["args"] for e in ev if e["ph"] == "C"]
    assert any(p["powered"] == 1 for p in power) and power[-1]["powered"] == 0


def _spans(ev: list[dict[str, Any]], cat: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    # process-scoped ids: a plain "id" would put the span in Perfetto's global group
    assert not any("id" in e for e in ev if e["ph"] in "be")
    ids = [(e["id2"]["local"], e["name"]) for e in ev if e["ph"] == "b" and e["cat"] == cat]
    assert len(ids) == len(set(ids))  # an async span id is never reused
    begins = {(e["id2"]["local"], e["name"]): e for e in ev if e["ph"] == "b" and e["cat"] == cat}
    out = []
    for e in ev:
        if e["ph"] == "e" and e["cat"] == cat:
            b = begins.pop((e["id2"]["local"], e["name"]))  # every end has its begin
            assert e["tid"] == b["tid"] and e["ts"] >= b["ts"]
            out.append((b, e))
    return out


def test_spans_nest_across_processes(traced_run: dict[str, Any]) -> None:
    ev = traced_run["events"]
    jobs = _spans(ev, "job")
    assert len(jobs) >= 2  # the add job and the chain; the hung one never ends
    execs = [e for e in ev if e.get("cat") == "shim" and e["name"] == "exec"]
    waits = [e for e in ev if e.get("cat") == "shim" and e["name"] == "wait"]
    for b, e in jobs:
        assert b["name"] in ("EXECUTE_BUFFER_CF", "CHAIN_EXEC_NPU", "EXEC_DPU")
        # the firmware saw the job after the client started submitting it, and finished it
        # before the client's wait for it returned: one clock for both processes
        x = max((x for x in execs if x["ts"] <= b["ts"]), key=lambda x: x["ts"])
        w = min((w for w in waits if w["ts"] >= x["ts"]), key=lambda w: w["ts"])
        assert e["ts"] <= w["ts"] + w["dur"]
    mailbox = _spans(ev, "mailbox")
    assert {b["name"] for b, _ in mailbox} >= {"CREATE_CONTEXT", "CONFIG_CU"}
    for _, e in mailbox:
        assert e["args"]["status"]
    # the PSP loads and starts the firmware inside the client's probe call
    probe = next(e for e in ev if e.get("cat") == "shim" and e["name"] == "probe")
    for x in (e for e in ev if e["name"] in ("PSP VALIDATE", "PSP START")):
        assert probe["ts"] <= x["ts"] <= x["ts"] + x["dur"] <= probe["ts"] + probe["dur"]
    # the hang: the firmware reports it after the client submitted the job and before the
    # client's wait for it (ended by the driver's TDR) returned
    tdr = next(e for e in ev if e.get("cat") == "tdr")
    assert "hung" in tdr["name"]
    x = max((x for x in execs if x["ts"] <= tdr["ts"]), key=lambda x: x["ts"])
    w = min((w for w in waits if w["ts"] >= x["ts"]), key=lambda w: w["ts"])
    assert tdr["ts"] <= w["ts"] + w["dur"] and x is execs[-1]


def test_trace_into_a_missing_directory_is_a_usage_error(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "xdna_emu", "run", "--chip", "npu4",
                          "--runtime-dir", str(tmp_path / "rt"), "--trace",
                          str(tmp_path / "no" / "t.json")], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 2 and "does not exist" in out.stderr and out.stderr.count("\n") == 1


def test_untraced_daemon_offers_no_client_trace(xdna_emulator) -> None:
    assert not (Path(xdna_emulator.socket).parent / "trace").exists()
