"""The shim fuzz target's runtime-PM predictions: when the driver's autosuspend fires, what
keeps the device awake, what it does to the power state and the suspend/resume counts, and
a client's call resuming a suspended device (docs/spec/fuzzing.md §10, §12;
docs/spec/jobs.md §1, §6)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.planted import assert_findings
from xdna_emu.fuzz import trace as tr
from xdna_emu.fuzz.invariants import InvariantViolation
from xdna_emu.fuzz.model import AUTOSUSPEND_MS, ShimModel
from xdna_emu.fuzz.shim_target import random_op
from xdna_emu.fuzz.shim_trace import ShimHarness


def _run(h: ShimHarness, *lines: str) -> None:
    for line in lines:
        h.apply(tr.parse_line(line, "shim"))


@pytest.fixture(scope="module")
def harness():  # noqa: ANN201
    h = ShimHarness("npu4")
    yield h
    h.close()


def test_an_idle_device_autosuspends_after_the_delay(harness: ShimHarness) -> None:
    h = harness.fresh()
    _run(h, "call probe", "call ctx", "call exec 0 nop", "call wait 0 3000", "call tick 2500")
    assert h.model is not None and h.model.rpm is False and not h.shim.power()["suspended"]
    _run(h, "call tick 2500", "call tick 10")  # 5 s since the last activity: the monitor suspends
    pw = h.shim.power()
    assert h.model.rpm is True and pw["suspended"] and pw["suspend_count"] == 1
    assert h.events["autosuspend"] == 1
    _run(h, "call exec 0 nop", "call wait 1 3000")  # the submission resumes it on the way
    pw = h.shim.power()
    assert h.model.rpm is False and not pw["suspended"] and pw["resume_count"] == 1
    _run(h, "call tick 6000", "call resume")  # a resume of a runtime-suspended device: ok
    assert h.last == "ok" and h.model.resumes == 2
    _run(h, "call tick 6000", "call suspend", "call resume")  # from runtime to system suspend
    assert h.shim.power()["suspend_count"] == 3 and h.model.suspends == 3
    h.finish()


def test_what_keeps_the_device_awake(harness: ShimHarness) -> None:
    """A pending command, a DRM file's live context and a zero delay keep it up; the model
    says so (a tick past the delay would otherwise be an autosuspend)."""
    h = harness.fresh()
    _run(h, "call probe", "call ctx", "call exec 0 hang", "call tick 1500")
    assert not h.shim.power()["suspended"]  # TDR's head, then idle: not yet 5 s of quiet
    h = harness.fresh()
    _run(h, "call probe", "ioctl open", "ioctl heap 0", "ioctl ctx 0 1 0", "call tick 6000")
    assert h.model is not None and h.model.rpm is False and not h.shim.power()["suspended"]
    _run(h, "ioctl destroy 0 0 0", "call tick 6000")  # its reference gone: it suspends
    assert h.model.rpm is True and h.shim.power()["suspended"]
    h = harness.fresh()
    _run(h, "call probe", "call timeout autosuspend 0", "call tick 6000", "call tick 6000")
    assert h.model is not None and h.model.rpm is False and not h.shim.power()["suspended"]
    _run(h, "call timeout autosuspend 300", "call tick 500")
    assert h.model.rpm is True and h.shim.power()["suspended"]


def test_a_file_resumes_a_runtime_suspended_device(harness: ShimHarness) -> None:
    h = harness.fresh()
    _run(h, "call probe", "ioctl open", "ioctl heap 0", "call tick 6000")
    assert h.model is not None and h.model.rpm is True
    _run(h, "ioctl ctx 0 1 0", "ioctl exec 0 0 nop", "ioctl wait 0 0 0")
    assert h.last == "ok" and h.model.rpm is False and not h.shim.power()["suspended"]
    assert h.model.resumes == h.shim.power()["resume_count"] == 1
    h.finish()


@pytest.mark.parametrize("chip", ["npu3", "npu4"])
def test_a_job_that_ends_during_a_tick_is_activity(chip: str) -> None:
    """Found by fuzz-bench's npu3 control row (shim target, seed 2): a hang ended TIMEOUT
    during a tick (the context timeout on AIE4, TDR on AIE2), and a tick ending past the
    delay from the exec, though not from the job's end, was said to autosuspend. The
    driver's runtime-PM put at a job's end marks the device busy, as the shim's
    ``last_active_ns`` does: a command that ended during a line moves the model's bounds
    on the last activity to that line (docs/spec/jobs.md §6). A tick past the delay from
    the job's end still surely suspends."""
    res = tr.replay(tr.parse(f"chip {chip}\ntarget shim\ncall probe\ncall ctx\ncall exec 0 hang\n"
                             "call tick 0x1760\ncall tick 8\ncall tick 0x1770\n"))
    assert res.ok, res.failure
    h = ShimHarness(chip).fresh()
    try:
        _run(h, "call probe", "call ctx", "call exec 0 hang", "call tick 0x1760", "call tick 8")
        assert not h.shim.power()["suspended"] and h.model is not None and h.model.rpm is False
        _run(h, "call tick 0x1770")
        assert h.shim.power()["suspended"] and h.model.rpm is True
    finally:
        h.close()


def test_a_client_attach_defers_autosuspend_npu3() -> None:
    """Regression, found by fuzz-bench's npu3 control row (shim target, seed 2): after the
    hang ended TIMEOUT inside the first tick, a client attached; the model took the attach
    as the driver's runtime-PM activity and said the second tick, ending within the delay
    from it, cannot have suspended the device, while the shim did (its last activity was
    the job's end). The attach's queries are ioctls through the driver, which marks the
    device busy for each: the daemon counts them into the driver's CLIENT_OPS and the
    driver's monitor restarts the delay (docs/spec/jobs.md §1, fuzzing.md §12)."""
    res = tr.replay(tr.parse("chip npu3\ntarget shim\ncall probe\ncall ctx\ncall exec 0 hang\n"
                             "call tick 0x1740\ncall client\ncall tick 0x9c0\n"))
    assert res.ok, res.failure


def _client_ops(h: ShimHarness) -> int:
    from xdna_emu import protocol as P

    drv = h.ip.daemon.driver
    assert drv is not None and drv.w32 is not None
    return drv.w32[P.CTRL_OFF_CLIENT_OPS >> 2]


@pytest.mark.parametrize("chip", ["npu3", "npu4"])
def test_a_clients_proxied_messages_defer_the_drivers_autosuspend(chip: str) -> None:
    """A client session's proxied management messages (its attach's queries, and on AIE4
    a query of its own) are the driver's runtime-PM activity: the daemon counts them into
    the driver's page (CLIENT_OPS) and the driver's monitor, seeing the count move, restarts
    its autosuspend delay (docs/spec/jobs.md §1). Without them the same idle time suspends."""
    h = ShimHarness(chip)
    try:
        _run(h, "call probe", "call tick 4000")
        assert _client_ops(h) == 0  # the driver's own calls are not counted
        _run(h, "call client")
        attach = _client_ops(h)
        assert attach > 0
        _run(h, "call tick 4000")  # 8 s after the probe, 4 s after the attach's queries
        assert not h.shim.power()["suspended"]
        if chip == "npu3":  # AIE4's cmgmt: one more proxied query, one more count
            _run(h, "call tick 500", "call cmgmt query 0")
            assert _client_ops(h) == attach + 1
            _run(h, "call cmgmt driver 0")  # refused (driver-only), yet served: counted too
            assert h.last == "EPERM" and _client_ops(h) == attach + 2
            _run(h, "call tick 4000")  # 5.5 s after the attach, 4 s after the query
            assert not h.shim.power()["suspended"]
        _run(h, "call tick 1500")  # the delay passed since the last proxied message
        pw = h.shim.power()
        assert pw["suspended"] and pw["suspend_count"] == 1
    finally:
        h.close()


@pytest.mark.parametrize("chip", ["npu3", "npu4"])
def test_without_a_clients_messages_the_same_idle_time_suspends(chip: str) -> None:
    """The control of the test above: no client, the same ticks: the delay from the probe
    passes and the driver suspends the device (CLIENT_OPS never moved)."""
    h = ShimHarness(chip)
    try:
        _run(h, "call probe", "call tick 4000")
        assert not h.shim.power()["suspended"]
        _run(h, "call tick 4000")
        assert h.shim.power()["suspended"] and _client_ops(h) == 0
    finally:
        h.close()


def test_the_power_oracle_fires_on_a_wrong_state() -> None:
    """The model's power check against a shim that disagrees: a finding."""
    h = ShimHarness("npu4")
    try:
        _run(h, "call probe", "call tick 6000")
        assert h.model is not None and h.model.rpm is True
        h.model.rpm = False  # as if the delay had not passed
        with pytest.raises(InvariantViolation) as e:
            h.model._check_power(h, "tick")
        assert e.value.name == "model_power"
    finally:
        h.close()


def test_generated_programs_set_the_autosuspend_delay() -> None:
    import random

    rng = random.Random(2)
    ops = [random_op(rng) for _ in range(3000)]
    assert any(o.args[:2] == ("timeout", "autosuspend") for o in ops if o.verb == "call")
    assert ShimModel().autosuspend_ms == AUTOSUSPEND_MS


#: the planted runtime-PM bugs and a trace that shows each (fuzz/mutants/); 30 and 31 touch
#: neighbouring lines of csrc/pm.c, so they are built in two trees
PM_MUTANTS = [
    (("autosuspend-ignores-clients", "client-resume-ask-dropped"), [
        ("call probe\nioctl open\nioctl heap 0\nioctl ctx 0 1 0\ncall tick 6000\n", "model_power"),
        ("call probe\nioctl open\nioctl heap 0\nioctl ctx 0 1 0\ncall suspend\n"
         "ioctl exec 0 0 nop\n", "model_errno"),
    ]),
    (("autosuspend-delay-units",), [("call probe\ncall ctx\ncall tick 500\n", "model_power")]),
]


@pytest.mark.parametrize(("names", "cases"), PM_MUTANTS, ids=["clients+ask", "units"])
def test_the_runtime_pm_oracles_fire_on_planted_bugs(tmp_path: Path, names, cases) -> None:  # noqa: ANN001
    assert_findings(tmp_path, names, [(f"chip npu4\ntarget shim\n{body}", want) for body, want in cases])
