"""Shim-side fuzzing: the C shim against a misbehaving firmware, deterministic."""

from __future__ import annotations

import errno
import os

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test

from xdna_emu.fuzz.faults import ACT_FAULTS, MSG_FAULTS
from xdna_emu.fuzz.shim_machine import VISITS, ShimConfigMachine, ShimMachine, shared
from xdna_emu.shim import ShimError

GET_FW_VERSION = 0x108


@pytest.fixture(autouse=True)
def _no_leaked_hooks():  # noqa: ANN202
    yield
    shared().close_shim()  # clears this thread's hooks even when a test failed


def errname(fn, *a) -> str:  # noqa: ANN001
    try:
        fn(*a)
    except ShimError as e:
        return errno.errorcode[e.errno]
    return "ok"


#: fault -> errnos the first mgmt call may give (driver semantics, docs/spec/fuzzing.md §2). As in the
#: driver's mailbox_get_resp, a response whose id lacks the magic, matches no pending
#: message (wrong, stale, zero, unsolicited) or has the wrong size puts the channel in bad
#: state (EPIPE, and it stays so); a response that never comes is a timeout (ETIME).
EXPECT = {
    "drop": {"ETIME"}, "late": {"ETIME"}, "dup": {"ok"}, "bad_id": {"EPIPE"},
    "stale_id": {"EPIPE"}, "zero_id": {"EPIPE"}, "nonmagic_id": {"EPIPE"},
    "noncontig_id": {"EPIPE"}, "bad_size": {"EPIPE"}, "tombstone": {"EPIPE"},
    "bad_tail": {"EPIPE"}, "no_irq": {"ok"}, "reset": {"EPIPE", "ETIME"},
    "unload": {"ETIME"}, "fw_fatal": {"ETIME"}, "unsolicited": {"EPIPE"}, "irq_empty": {"ok"},
}


@pytest.mark.parametrize("fault", sorted(MSG_FAULTS) + sorted(ACT_FAULTS))
def test_shim_survives_each_misbehaviour(fault: str) -> None:
    ip = shared()
    ip.fresh()
    shim = ip.open()
    ip.probe()
    shim.set_timeout("mbox_rx", 500)
    if fault in ACT_FAULTS:
        assert ip.fault.act(fault, 0)
    else:
        ip.fault.arm(fault, chan=0)
    t0 = ip.clock.now_ns()
    first = errname(shim.mgmt_msg, GET_FW_VERSION, b"\0" * 4, 20, 500)
    assert ip.clock.now_ns() - t0 <= 10 * 500_000_000  # bounded in virtual time
    assert first in EXPECT[fault], first
    if first == "EPIPE":  # a bad channel stays bad
        assert errname(shim.mgmt_msg, GET_FW_VERSION, b"\0" * 4, 20, 500) == "EPIPE"
    assert ip.fault.counts[fault] >= 1
    # the daemon and device stay usable: a new session probes
    ip.fresh()
    ip.open()
    assert ip.probe().info()["state"] == "probed"
    ip.close_shim()


def test_id_wrap_past_256_on_mgmt() -> None:
    ip = shared()
    ip.fresh()
    shim = ip.open()
    ip.probe()
    for _ in range(300):
        shim.mgmt_msg(GET_FW_VERSION, b"\0" * 4, 20, 500)
    ip.close_shim()


def test_deterministic_replay() -> None:
    """The same steps take the same virtual time, to the nanosecond, every run."""
    def run() -> list[int]:
        ip = shared()
        ip.fresh()
        ip.open()
        _, probe_ns = ip.call(ip.probe)
        ip.fault.arm("drop", chan=0)
        ip.shim.set_timeout("mbox_rx", 300)
        res, drop_ns = ip.call(errname, ip.shim.mgmt_msg, GET_FW_VERSION, b"\0" * 4, 20, 300)
        ip.close_shim()
        return [probe_ns, drop_ns, res]
    a, b = run(), run()
    assert a == b
    assert a[2] == "ETIME" and a[1] >= 300_000_000  # the timeout ran in virtual time


#: outcomes every ShimMachine run must reach: each final state, a bad channel, a timeout
MUST_VISIT = {"final completed", "final error", "final abort", "final timeout", "mgmt:EPIPE",
              "mgmt:ETIME", "exec:ok", "wait:ok", "autosuspend"}


def test_shim_state_machine(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    """The active profile (ci under CI=true) sets the size; derandomised except in the
    ``fuzz`` profile, so the reached-states check is reproducible."""
    monkeypatch.setenv("XDNA_FUZZ_ARTIFACTS", str(tmp_path))
    VISITS.clear()
    run_state_machine_as_test(ShimMachine, settings=settings(
        deadline=None, derandomize=os.environ.get("HYPOTHESIS_PROFILE") != "fuzz",
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]))
    missing = MUST_VISIT - set(VISITS)
    assert not missing, f"outcomes never reached: {missing} (visits {dict(VISITS)})"


#: what the configuration machine must reach: each new call succeeding, the driver's
#: refusals of bad ones, and a command in a legacy form running
MUST_VISIT_CONFIG = {"qctx:ok", "qctx:EINVAL", "cucfg:ok", "cucfg:EINVAL", "dbg:ok",
                     "dbg:EINVAL", "syncwait:ok", "exec:ok", "exec:EINVAL", "final completed"}


def test_shim_config_machine(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    """The second machine (the configuration calls and every command form), as above."""
    monkeypatch.setenv("XDNA_FUZZ_ARTIFACTS", str(tmp_path))
    VISITS.clear()
    run_state_machine_as_test(ShimConfigMachine, settings=settings(
        deadline=None, derandomize=os.environ.get("HYPOTHESIS_PROFILE") != "fuzz",
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]))
    missing = MUST_VISIT_CONFIG - set(VISITS)
    assert not missing, f"outcomes never reached: {missing} (visits {dict(VISITS)})"


def test_exec_rechecks_a_command_bo_rewritten_while_it_waited_for_a_slot() -> None:
    """Regression (found in review): exec parses the command BO, then may drop its lock to
    wait for a free slot (four commands per context). It used to fill the slot from a
    fresh, unchecked parse, so a client thread that rewrote the BO in that window got
    whatever the new bytes said submitted. Now the second parse is checked: EINVAL, nothing
    submitted, and the context stays usable."""
    from xdna_emu import kernels as K
    from xdna_emu.fuzz.shim_trace import npu_command
    from xdna_emu.shim import ErtState

    ip = shared()
    ip.fresh()
    shim = ip.open()
    ip.probe()
    h = shim.hwctx_create()

    hung = [npu_command(shim, K.Kernel.HANG) for _ in range(4)]
    for cmd in hung:
        shim.exec(h, cmd)
    late = npu_command(shim, K.Kernel.NOP)
    view = shim.bo_map(late)  # mapped beforehand: the hook runs with the shim's lock held
    waits = []

    def rewrite() -> None:  # a client thread scribbling over the BO mid-submission
        waits.append(1)
        view[:4] = b"\xff\xff\xff\xff"
        ip.on_wait = None

    ip.on_wait = rewrite
    try:
        with pytest.raises(ShimError) as err:
            shim.exec(h, late)
    finally:
        ip.on_wait = None
    assert waits, "exec never waited for a slot: the race window was not exercised"
    assert err.value.errno == errno.EINVAL and "changed" in str(err.value)
    assert shim.cmd_state(late) not in (ErtState.SUBMITTED, ErtState.RUNNING)
    assert shim.hwctx_info(h)["submitted"] == 4
    # the hung commands were timed out by TDR meanwhile, and the context still runs jobs
    good = npu_command(shim, K.Kernel.NOP)
    seq = shim.exec(h, good)
    shim.wait(h, seq, 5000)
    assert shim.cmd_state(good) == ErtState.COMPLETED
    ip.close_shim()


#: fault on a user channel -> (wait for the job, its ERT state then, the next exec). A reply
#: the shim cannot match (bad/stale/zero/non-magic/out-of-order id, wrong size, misplaced
#: TOMBSTONE, bad tail, a duplicate, an unsolicited message, a reset under it) puts the
#: context's channel in bad state: the job is aborted and later submissions give EPIPE. A
#: reply that never comes (dropped, late, firmware gone) leaves the job to TDR.
USER_EXPECT = {
    "bad_id": ("ok", "ABORT", "EPIPE"), "bad_size": ("ok", "ABORT", "EPIPE"),
    "bad_tail": ("ok", "ABORT", "EPIPE"), "drop": ("ETIME", "SUBMITTED", "ok"),
    "dup": ("ok", "COMPLETED", "EPIPE"), "fw_fatal": ("ETIME", "SUBMITTED", "ok"),
    "late": ("ETIME", "SUBMITTED", "ok"), "no_irq": ("ok", "COMPLETED", "ok"),
    "noncontig_id": ("ok", "ABORT", "EPIPE"), "nonmagic_id": ("ok", "ABORT", "EPIPE"),
    "reset": ("ok", "ABORT", "EPIPE"), "stale_id": ("ok", "ABORT", "EPIPE"),
    "tombstone": ("ok", "ABORT", "EPIPE"), "unload": ("ETIME", "SUBMITTED", "ok"),
    "zero_id": ("ok", "ABORT", "EPIPE"), "irq_empty": ("ok", "COMPLETED", "ok"),
    "unsolicited": ("ok", "ABORT", "EPIPE"),
}


@pytest.mark.parametrize("fault", sorted(USER_EXPECT))
def test_user_channel_fault_outcomes(fault: str) -> None:
    """Each misbehaviour on a context's own channel, then the end-of-trace check: every
    command still reaches a final state (TDR times out what never got a reply)."""
    from xdna_emu.fuzz.trace import harness_for, parse

    assert set(USER_EXPECT) == set(MSG_FAULTS) | set(ACT_FAULTS)
    s = harness_for("npu4", "shim").fresh()
    try:
        ops = parse("chip npu4\ntarget shim\ncall probe\ncall ctx\ncall exec 0 nop\n"
                    f"call wait 0 3000\nfault {fault} -1\ncall exec 0 nop\ncall wait 1 3000\n"
                    "call exec 0 nop\n").ops
        outcomes = []
        for op in ops:
            s.apply(op)
            outcomes.append(s.last)
        wait, state, nxt = USER_EXPECT[fault]
        assert outcomes[-2] == wait
        assert outcomes[-1] == nxt
        assert s.fi.counts[fault] >= 1
        assert s.shim.cmd_state(s.jobs[1].cmd).name == state
        s.finish()  # raises if any command is left without a final state
    finally:
        s.ip.close_shim()


def test_id_wrap_past_256_on_a_user_channel() -> None:
    """300 jobs on one context: the user channel's message ids wrap past 255 and every job
    still completes in order."""
    from xdna_emu.fuzz.trace import harness_for, parse

    s = harness_for("npu4", "shim").fresh()
    try:
        body = "".join(f"call exec 0 nop\ncall wait {i} 3000\nexpect state {i} completed\n"
                       for i in range(300))
        for op in parse(f"chip npu4\ntarget shim\ncall probe\ncall ctx\n{body}").ops:
            s.apply(op)
            assert s.last == "ok"
        assert s.shim.hwctx_info(s.ctxs[0])["completed"] == 300
        chan = s.ip.daemon.device.mailbox.channels
        assert max(c.msgs_in for i, c in chan.items() if i) >= 300
    finally:
        s.ip.close_shim()


# -- AIE4 (docs/spec/fuzzing.md §8) ----------------------------------------------------------------
AIE4_TRACE = """chip npu3
target shim
call probe
call ctx
call exec 0 nop
call wait 0 3000
expect state 0 completed
call chain 0 nop,fail
call wait 1 3000
expect state 1 error
call ctx
call umq 1
call doorbell 1
call doorbell 1
call exec 1 nop
expect errno EBUSY
call exec 0 hang
call flr
expect errno ok
expect state 2 abort
call destroy 0
call doorbell 0
expect errno EINVAL
call umq 0
expect errno EINVAL
call exec 1 nop
expect errno EBUSY
call stop
"""


def test_aie4_shim_trace_kernel_and_user_mode_flr() -> None:
    from xdna_emu.fuzz import trace as tr
    from xdna_emu.fuzz.shim_trace import ShimHarness

    res = tr.replay(tr.parse(AIE4_TRACE))
    assert res.ok, res.describe()
    h = ShimHarness("npu3")  # the user-mode packets ran: read_index passed both
    try:
        for op in tr.parse(AIE4_TRACE).ops[:12]:
            h.apply(op)
        h.ip.idle(10_000_000)
        assert h.umqs[1].rung == 2 and h.umqs[1].read_index == 2
    finally:
        h.release()
        h.close()


def test_aie4_user_mode_packet_never_run_is_a_finding(monkeypatch: pytest.MonkeyPatch) -> None:
    from xdna_emu.fuzz import trace as tr
    from xdna_emu.shim import Shim

    monkeypatch.setattr(Shim, "doorbell", lambda self, handle: None)  # the store never lands
    res = tr.replay(tr.parse("chip npu3\ntarget shim\ncall probe\ncall ctx\ncall umq 0\n"
                             "call doorbell 0\n"))
    assert res.failure is not None and res.failure.name == "umq_not_run"


def test_aie4_model_predicts_user_mode_exec_refusal() -> None:
    from xdna_emu.fuzz import trace as tr
    from xdna_emu.fuzz.model import ShimModel

    assert ShimModel(aie4=True).aie4 and not ShimModel().aie4
    # a shim that let exec through on a user-mode context would break the model
    res = tr.replay(tr.parse("chip npu3\ntarget shim\ncall probe\ncall ctx\ncall umq 0\n"
                             "call exec 0 nop\nexpect errno EBUSY\n"))
    assert res.ok, res.describe()


def test_aie4_seeded_shim_examples_find_nothing(tmp_path) -> None:  # noqa: ANN001
    from xdna_emu.fuzz.shim_target import ShimFuzzer

    fz = ShimFuzzer("npu3", 3, tmp_path, None)
    try:
        for _ in range(25):
            fz.run_one(fz.generate())
        assert fz.crashes == fz.hangs == 0 and not list(tmp_path.iterdir()), fz.stats()
        assert any(k.startswith("doorbell:") for k in fz.features)
        assert any(k.startswith(("fault", "mgmt")) for k in fz.features)  # AIE4 draws them too
    finally:
        fz.close()


def test_aie4_vocabulary_has_faults_and_aie4_mgmt_opcodes() -> None:
    import random

    from xdna_emu.fuzz.shim_target import MGMT_OPCODES_AIE4, random_op

    rng = random.Random(5)
    ops = [random_op(rng, aie4=True) for _ in range(3000)]
    assert {o.args[0] for o in ops if o.verb == "fault"} >= {"drop", "late", "unsolicited"}
    opcodes = {o.args[1] for o in ops if o.verb == "call" and o.args[0] == "mgmt"}
    assert opcodes == set(MGMT_OPCODES_AIE4)
    assert not any(o.verb == "call" and o.args[0] in ("rewrite", "qctx", "cucfg", "dbg")
                   for o in ops)


AIE4_FAULTS = """chip npu3
target shim
call probe
call ctx
call mgmt 0x10002 00000000
expect errno ok
fault unsolicited 0
fault late 0 1 300
call mgmt 0x10002 00000000
call exec 0 nop
call wait 0 3000
call exec 0 hang
fault fw_fatal 0 1
call mgmt 0x10002 00000000
call tick 2500
expect state 1 timeout
call exec 0 nop
call wait 2 3000
expect state 2 abort
call exec 0 nop
call wait 3 3000
expect state 3 completed
fault drop 0 1
call mgmt 0x3ffff 00000000
"""


def test_aie4_firmware_faults_on_the_mgmt_channel() -> None:
    """Faults on the AIE4 mgmt channel keep every invariant: an unsolicited async answer
    makes the channel bad (EPIPE after it); the hang's context timeout ends it TIMEOUT and
    its CTX_ERROR report is the message the fatal fault kills the firmware on; a job then
    submitted to the dead firmware ends ABORT by the TDR backstop's reset; the function
    runs again and its new mgmt channel times out a dropped reply (ETIME, not EPIPE)."""
    from xdna_emu.fuzz import trace as tr

    res = tr.replay(tr.parse(AIE4_FAULTS))
    assert res.ok, res.describe()


def _client(ip):  # noqa: ANN001, ANN202
    """A second session on the daemon, attached as another process would be."""
    from xdna_emu.shim import Shim

    c = Shim.open(ip.daemon.socket_path)
    c.attach()
    return c


def _nop(shim, h: int) -> int:  # noqa: ANN001
    from xdna_emu import kernels as K
    from xdna_emu.fuzz.shim_trace import npu_command

    cmd = npu_command(shim, K.Kernel.NOP)
    shim.wait(h, shim.exec(h, cmd), 5000)
    return cmd


def test_a_stopped_driver_context_leaves_its_vector_to_the_next_session() -> None:
    """Regression (shim fuzz target, docs/spec/fuzzing.md §12): the driver's context kept its
    MSI-X vector across stop and probe, so a client's context that the new firmware gave
    that vector could not take it; its exec re-created the context for ever (livelock). Stop
    gives the vector back, as a disconnection does (docs/spec/jobs.md §3a)."""
    from xdna_emu.shim import ErtState

    ip = shared()
    ip.fresh()
    shim = ip.open()
    ip.probe()
    shim.hwctx_create()
    shim.stop()
    ip.probe()
    c = _client(ip)
    try:
        h = c.hwctx_create()
        assert c.cmd_state(_nop(c, h)) == ErtState.COMPLETED
    finally:
        c.close()
    ip.close_shim()


def test_a_client_context_is_gone_after_the_driver_restarts_the_firmware() -> None:
    """Regression (shim fuzz target, docs/spec/fuzzing.md §12): a client's context outlived
    the firmware the driver stopped, holding its vector, and the driver's next context spun.
    The daemon lets the new firmware's context take a vector no live context holds, and the
    client's old context is gone: exec ENODEV, destroy works, a new context runs
    (docs/spec/protocol.md, ctrl page fw_boots; docs/spec/jobs.md §1)."""
    from xdna_emu.shim import ErtState

    ip = shared()
    ip.fresh()
    shim = ip.open()
    ip.probe()
    c = _client(ip)
    try:
        old = c.hwctx_create()
        shim.stop()
        ip.probe()
        h = shim.hwctx_create()
        assert shim.cmd_state(_nop(shim, h)) == ErtState.COMPLETED
        assert errname(_nop, c, old) == "ENODEV"
        c.hwctx_destroy(old)
        shim.hwctx_destroy(h)
        new = c.hwctx_create()
        assert c.cmd_state(_nop(c, new)) == ErtState.COMPLETED
    finally:
        c.close()
    ip.close_shim()


def test_two_in_process_devices_on_one_thread_keep_their_own_hooks() -> None:
    """The wait hooks are per thread: closing one in-process device must not leave another's
    calls and stop running without their daemon (each would wait for an answer nobody
    makes, then time out, and leave its device powered)."""
    from xdna_emu import bench
    from xdna_emu.testing.inproc import InProcess

    op, req, size = bench._version_query("aie2")
    with InProcess("npu4") as a:
        a.probe()
        with InProcess("npu4") as b:
            b.probe()
        resp, _ = a.call(a.shim.mgmt_msg, op, req, size, 500)  # answered by a's daemon
        assert len(resp) == size
        a.close_shim()  # the driver's stop powers the NPU off through a's daemon
        assert not a.daemon.device.smu.powered

