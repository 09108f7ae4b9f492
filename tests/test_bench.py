"""`xdna-emu bench --quick --json`: checked for its schema only, never for its timings
(timings on a shared machine are not a test; docs/spec/operator.md §7)."""

from __future__ import annotations

import json
import subprocess
import sys

from xdna_emu.bench import FLOOR_KEYS, RESULT_KEYS, check_schema, format_report


def test_quick_json_has_the_documented_schema() -> None:
    out = subprocess.run([sys.executable, "-m", "xdna_emu", "bench", "--quick", "--json"],
                         capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""  # no progress bar when stderr is not a terminal
    rep = json.loads(out.stdout)
    assert check_schema(rep) == []
    assert rep["chip"] == "npu4" and rep["quick"] is True
    for key in (*FLOOR_KEYS, *RESULT_KEYS):
        d = rep["detail"][key]
        assert d["min"] <= d["median"] <= d["max"] and d["n"] >= 1
    # the counts behind probe_msg_rtt_sum_ms: the same every probe of one daemon
    probe = {k: rep["detail"][k] for k in ("probe_msgs_answered", "probe_msgs_posted",
                                           "probe_reg_cmds")}
    assert all(d["min"] == d["max"] for d in probe.values())
    assert probe["probe_msgs_answered"]["min"] >= 1 and probe["probe_reg_cmds"]["min"] >= 1
    assert probe["probe_msgs_posted"]["min"] >= 0
    assert {g["figure"] for g in rep["goals"]} >= {"mailbox_rtt_us", "job_latency_us",
                                                   "copy_gbps", "daemon_rss_mib"}
    assert all(isinstance(g["met"], bool) for g in rep["goals"])
    text = format_report(rep)
    assert all(k in text for k in (*FLOOR_KEYS, *RESULT_KEYS)) and "goals" in text


def test_schema_check_finds_what_is_wrong() -> None:
    good = {"floors": dict.fromkeys(FLOOR_KEYS, 1.0), "results": dict.fromkeys(RESULT_KEYS, 2)}
    assert check_schema(good) == []
    assert check_schema([]) == ["not an object"]
    bad = json.loads(json.dumps(good))
    del bad["floors"]["memcpy_gbps"]
    bad["results"]["probe_ms"] = None
    bad["results"]["extra"] = 1
    errs = check_schema(bad)
    assert any("floors: keys" in e for e in errs) and any("memcpy_gbps" in e for e in errs)
    assert any("results.probe_ms" in e for e in errs) and any("results: keys" in e for e in errs)
    assert check_schema({"floors": good["floors"]}) == ["results: missing"]


def test_bad_chip_is_a_usage_error() -> None:
    out = subprocess.run([sys.executable, "-m", "xdna_emu", "bench", "--chip", "npu99"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "invalid choice" in out.stderr


def test_the_eventfd_floor_is_timed_in_c_against_a_python_process() -> None:
    from xdna_emu.bench import Peer

    peer = Peer()
    try:
        got = peer.eventfd_c(50)
        assert len(got) == 50 and all(v > 0 for v in got)
        assert len(peer.eventfd(5)) == 5  # the Python floor still answers on the same pair
    finally:
        peer.close()


def test_the_c_eventfd_floor_refuses_bad_arguments_and_a_silent_peer() -> None:
    import errno
    import os

    import pytest

    from xdna_emu.shim import bench_eventfd

    with pytest.raises(OSError) as e:
        bench_eventfd(-1, -1, 1)
    assert e.value.errno == errno.EINVAL
    tx, rx = os.eventfd(0), os.eventfd(0)
    try:
        with pytest.raises(OSError) as e:
            bench_eventfd(tx, rx, 1, timeout_ms=20)  # nobody answers
        assert e.value.errno == errno.ETIME
        assert bench_eventfd(tx, rx, 0) == []
    finally:
        os.close(tx)
        os.close(rx)
