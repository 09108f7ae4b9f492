"""Shim-side fuzzing (issue 5): the C shim against a misbehaving firmware, deterministic."""

from __future__ import annotations

import errno

import pytest
from hypothesis import settings

from xdna_emu.fuzz.faults import ACT_FAULTS, MSG_FAULTS
from xdna_emu.shim import ShimError
from xdna_emu.testing.shim_machine import ShimMachine, shared

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


#: fault -> errnos the first mgmt call may give (driver semantics, fuzzing.md §5). As in the
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


TestShimMachine = ShimMachine.TestCase  # the active profile (ci under CI=true) sets its size
