"""The shim target's bring-up snapshot (docs/spec/fuzzing.md §9): an example opening with
``call probe`` starts from a restore of the state ``fresh`` and the probe left (the C shim's
driver state, the device, the daemon's session, the eventfd counters, the harness), and
runs exactly as from a fresh device and a new probe."""

from __future__ import annotations

import errno
import os

import pytest

from xdna_emu.fuzz.lang import Op
from xdna_emu.fuzz.shim_target import ShimFuzzer
from xdna_emu.fuzz.shim_trace import PROBE, ShimHarness
from xdna_emu.fuzz.trace import Trace, replay, resume
from xdna_emu.shim import ShimError

#: an example that leaves contexts, jobs, BOs, a health buffer, a DRM file with its own
#: context and a management message behind, and changes timeouts
BUSY = [PROBE, Op("call", ("timeout", "mbox_rx", 7)), Op("call", ("ctx",)),
        Op("call", ("exec", 0, "nop")), Op("call", ("wait", 0, 1000)), Op("call", ("ctx",)),
        Op("call", ("exec", 1, "hang")), Op("call", ("health", 0)), Op("call", ("dbgbo", 4096)),
        Op("call", ("mgmt", 0x108, bytes(4))), Op("ioctl", ("open",)), Op("ioctl", ("heap", 0)), Op("ioctl", ("ctx", 0, 1, 0)),
        Op("ioctl", ("exec", 0, 0, "nop")),
        Op("call", ("power", "high"))]


class _Recorder(ShimFuzzer):
    """The campaign, with each example's own outcome: its ops, steps and every (call,
    outcome) it met, which a set of coverage keys seen before would hide."""

    def __init__(self, snapshot: bool) -> None:
        super().__init__("npu4", 4, None, None, snapshot=snapshot)
        self.outcomes: list[tuple] = []

    def run_one(self, ops: list[Op]) -> bool:
        steps = self.steps
        new = super().run_one(ops)
        self.outcomes.append((tuple(ops), self.steps - steps, sorted(self.session.events.items())))
        return new


def _fuzz(snapshot: bool, execs: int) -> tuple[dict, list[str], list[list[Op]], list[tuple], _Recorder]:
    fz = _Recorder(snapshot)
    try:
        out = fz.fuzz(1e9, max_execs=execs)
    finally:
        fz.close()
    keys = ("execs", "steps", "coverage", "corpus", "crashes", "hangs", "unique")
    return {k: out[k] for k in keys}, sorted(fz.features), fz.corpus, fz.outcomes, fz


def test_shim_target_from_the_bring_up_matches_fresh_probes() -> None:
    """The same seed gives the same examples, coverage, corpus and findings with the
    snapshot as with a fresh device and a probe per example (each example's own outcome
    too); every example but the first starts from a restore."""
    fresh = _fuzz(False, 150)
    snap = _fuzz(True, 150)
    assert snap[:3] == fresh[:3]
    for i, (a, b) in enumerate(zip(fresh[3], snap[3], strict=True)):
        assert a == b, f"example {i} differs"
    assert (snap[4].restored, snap[4].bring_ups) == (149, 1)
    assert fresh[4].restored == fresh[4].bring_ups == 0


def _outcome(h: ShimHarness, ops: list[Op]) -> tuple:
    res = resume(h, ops, 1)
    return res.ok, res.step, str(res.failure), dict(h.events), h.last, h.ip.clock.now_ns()


def test_a_restore_runs_an_example_as_a_fresh_device_does() -> None:
    """After a busy example, the restore leaves the device, the daemon's session and the
    harness as the bring-up left them, and the next example runs as after a fresh probe."""
    ref = ShimHarness("npu4")
    try:
        want = replay(Trace("npu4", BUSY, target="shim"), ref)
        assert want.ok, want.failure
        want_events = dict(ref.events)
    finally:
        ref.close()
    h = ShimHarness("npu4")
    try:
        b = h.save_bring_up()
        fds = len(os.listdir("/proc/self/fd"))
        first = _outcome(h, BUSY)
        assert h.restore_bring_up()
        assert h.ip.daemon.fn.save() == b.fn  # every block, mapping byte and the clock
        assert bytes(b.sess.ctrl) == b.ctrl
        assert list(h.ip.daemon.sessions.values()) == [b.sess]
        again = _outcome(h, BUSY)
        assert first == again
        assert first[3] == want_events  # as a replay from a fresh device counts them
        assert h.restore_bring_up()
        assert len(os.listdir("/proc/self/fd")) == fds  # nothing the example made is left
    finally:
        h.close()


#: (an example that changes what the probe set, one whose outcome depends on it)
PAIRS = [
    # the mailbox RX timeout: a response 300 ms late is ETIME at 7 ms, in time at 1000 ms
    ([PROBE, Op("call", ("timeout", "mbox_rx", 7))],
     [PROBE, Op("fault", ("late", 0, 1, 300)), Op("call", ("mgmt", 0x108, bytes(4)))]),
    # the autosuspend delay: 1 ms lets a tick put the device down before the message
    ([PROBE, Op("call", ("timeout", "autosuspend", 1))],
     [PROBE, Op("call", ("tick", 20)), Op("call", ("power", "high"))]),
    # a fault armed and not fired, a wrong firmware variant, a broken management channel
    ([PROBE, Op("fault", ("bad_id", 0, 3, 0)), Op("fault", ("refuse_context", 0, 0, 0))],
     [PROBE, Op("call", ("ctx",)), Op("call", ("mgmt", 0x108, bytes(4)))]),
    ([PROBE, Op("fault", ("bad_size", 0, 1, 0)), Op("call", ("mgmt", 0x108, bytes(4)))],
     [PROBE, Op("call", ("mgmt", 0x108, bytes(4))), Op("call", ("ctx",))]),
    # a stop, a suspend, a resume, an autosuspend: the async buffer freed and allocated anew
    ([PROBE, Op("call", ("ctx",)), Op("call", ("stop",))],
     [PROBE, Op("call", ("ctx",)), Op("call", ("exec", 0, "nop")), Op("call", ("wait", 0, 1000)),
      Op("call", ("mgmt", 0x108, bytes(4)))]),
    ([PROBE, Op("call", ("suspend",))], [PROBE, Op("call", ("ctx",)), Op("call", ("suspend",)),
                                         Op("call", ("resume",)), Op("call", ("info", 0))]),
    ([PROBE, Op("call", ("suspend",)), Op("call", ("resume",)), Op("call", ("ctx",))],
     [PROBE, Op("fault", ("unsolicited", 0)), Op("call", ("ctx",)),
      Op("call", ("exec", 0, "hang")), Op("call", ("wait", 0, 5000))]),
    ([PROBE, Op("call", ("tick", 10_000)), Op("call", ("mgmt", 0x108, bytes(4)))],
     [PROBE, Op("call", ("tick", 10_000)), Op("call", ("ctx",))]),
    # TURBO, a context's DPM vote, a context id allocation
    ([PROBE, Op("call", ("power", "turbo")), Op("call", ("qctx", 100, 0, 1, 0))],
     [PROBE, Op("call", ("ctx",)), Op("call", ("info", 0)), Op("call", ("exec", 0, "nop")),
      Op("call", ("wait", 0, 1000))]),
]


@pytest.mark.parametrize("first,then", PAIRS)
def test_an_example_after_a_restore_runs_as_from_a_fresh_probe(first: list[Op], then: list[Op]) -> None:
    """What one example changed of the probe's state (timeouts, faults, power, ids) is gone
    for the next: it runs as it does alone from a fresh device."""
    ref = ShimHarness("npu4")
    try:
        want = replay(Trace("npu4", then, target="shim"), ref)
        want_events = dict(ref.events)
    finally:
        ref.close()
    h = ShimHarness("npu4")
    try:
        h.save_bring_up()
        resume(h, first, 1)
        assert h.restore_bring_up()
        got = _outcome(h, then)
        assert (got[0], got[1], got[2]) == (want.ok, want.step, str(want.failure))
        assert got[3] == want_events
    finally:
        h.close()


def test_the_c_snapshot_refuses_what_it_cannot_hold() -> None:
    """save: EBUSY before a probe and with a context alive; restore: EINVAL without a
    snapshot, ESTALE and nothing changed for another context's snapshot (its socket, BARs
    and eventfds are not this one's)."""
    from xdna_emu.shim import ffi, lib

    a, b = ShimHarness("npu4"), ShimHarness("npu4")
    try:
        with pytest.raises(ShimError) as e:  # opened, not probed
            a.shim.snapshot_save()
        assert e.value.errno == errno.EBUSY
        a.apply(PROBE)
        b.apply(PROBE)
        snap = a.shim.snapshot_save()
        a.apply(Op("call", ("ctx",)))
        with pytest.raises(ShimError) as e:
            a.shim.snapshot_save()
        assert e.value.errno == errno.EBUSY
        assert lib.xdna_shim_snapshot_restore(a.shim._c(), ffi.NULL) == -1  # noqa: SLF001
        assert ffi.errno == errno.EINVAL
        b.apply(Op("call", ("ctx",)))
        with pytest.raises(ShimError) as e:
            b.shim.snapshot_restore(snap)
        assert e.value.errno == errno.ESTALE
        for h in (a, b):  # neither context changed: their contexts run jobs
            h.apply(Op("call", ("exec", 0, "nop")))
            h.apply(Op("call", ("wait", 0, 1000)))
            assert h.last == "ok"
    finally:
        a.close()
        b.close()


def test_a_lost_session_means_a_new_bring_up() -> None:
    """The daemon dropped the shim's session: nothing is restored, and the next bring-up
    (a fresh device and a probe) gives examples that run as from a fresh device."""
    h = ShimHarness("npu4")
    try:
        b = h.save_bring_up()
        h.ip.daemon.drop(b.sess, "test")
        assert not h.restore_bring_up()
        h.save_bring_up()
        assert _outcome(h, [PROBE, Op("call", ("ctx",))])[4] == "ok"
        assert h.restore_bring_up()
    finally:
        h.close()
