"""What the shim fuzz target's examples cost (docs/spec/fuzzing.md §9): work done per
example, not per op or per slice of virtual time, with the outcomes unchanged."""

from __future__ import annotations

from xdna_emu.fuzz.lang import Op
from xdna_emu.fuzz.shim_trace import PROBE, ShimHarness
from xdna_emu.shim import ErtState


def _timed(h: ShimHarness, op: Op) -> tuple[str, int, int]:
    """(outcome, wait-hook calls, virtual ns) of one op."""
    waits, t0 = h.ip.waits, h.ip.clock.now_ns()
    h.apply(op)
    return h.last, h.ip.waits - waits, h.ip.clock.now_ns() - t0


def test_a_polled_wait_in_deterministic_mode_sleeps_to_its_deadline() -> None:
    """A TURBO context's wait looks at its ring after every daemon step; in deterministic
    mode nothing else can change it, so the wait lets virtual time pass to its deadline in
    one hook call, not in 200 µs slices (15,000 hook calls for a 3 s wait). It ends at the
    same virtual time, with the same outcome."""
    h = ShimHarness("npu4")
    try:
        for op in [PROBE, Op("call", ("power", "turbo")), Op("call", ("ctx",)),
                   Op("call", ("exec", 0, "nop")), Op("call", ("exec", 0, "hang"))]:
            h.apply(op)
            assert h.last == "ok", op
        assert h.shim.hwctx_info(h.ctxs[0])["polled"]
        assert _timed(h, Op("call", ("wait", 0, 3000)))[0] == "ok"
        assert h.shim.cmd_state(h.jobs[0].cmd) == ErtState.COMPLETED
        for ms in (100, 3000):
            got, hooks, ns = _timed(h, Op("call", ("wait", 1, ms)))
            assert (got, ns) == ("ETIME", ms * 1_000_000)
            assert hooks <= 4, f"a {ms} ms polled wait made {hooks} hook calls"
    finally:
        h.close()


def test_a_polled_wait_ends_at_a_completion_in_the_middle() -> None:
    """A reply the firmware sends 50 ms late ends a polled 3 s wait at 50 ms of virtual
    time: sleeping to the deadline does not pass over the daemon step that brings it."""
    h = ShimHarness("npu4")
    try:
        for op in [PROBE, Op("call", ("power", "turbo")), Op("call", ("ctx",)),
                   Op("fault", ("late", -1, 3, 50)), Op("call", ("exec", 0, "nop"))]:
            h.apply(op)
            assert h.last == "ok", op
        got, hooks, ns = _timed(h, Op("call", ("wait", 0, 3000)))
        assert (got, ns) == ("ok", 50_000_000) and hooks <= 4
        assert h.shim.cmd_state(h.jobs[0].cmd) == ErtState.COMPLETED
    finally:
        h.close()


def test_the_current_file_holds_each_example_as_its_trace(tmp_path) -> None:  # noqa: ANN001
    """The worker's ``current`` file (what a campaign reads when the worker dies) is the
    example's ``Trace.to_text`` after every example, a shorter one after a longer one
    included, though each op's line is formatted once and the file stays open."""
    from xdna_emu.fuzz.shim_target import CURRENT_HEADER, ShimFuzzer
    from xdna_emu.fuzz.trace import Trace, load

    cur = tmp_path / "current"
    fz = ShimFuzzer("npu4", 1, None, None, current=cur)
    try:
        long = [PROBE, Op("call", ("ctx",)), Op("call", ("mgmt", 0x108, bytes(4))),
                Op("fault", ("bad_id", 0, 1, 0)), Op("ioctl", ("open",)), Op("call", ("exec", 0, "nop"))]
        for ops in (long, long[:2], long[:1] + long[3:], long):
            fz.run_one(ops)
            want = Trace("npu4", ops, [CURRENT_HEADER], target="shim").to_text()
            assert cur.read_text() == want
            assert load(cur).ops == ops
    finally:
        fz.close()
    assert fz._current_fd is None


def test_random_op_draws_as_choices_with_the_weights() -> None:
    """The cumulative weights random_op and random_ioctl keep give the draws
    ``choices(weights=...)`` gives, so a seed's examples are the same as before."""
    import random

    from xdna_emu.fuzz import uapi_trace
    from xdna_emu.fuzz.shim_target import _DRAW, WEIGHTS, WEIGHTS_AIE4

    for (names, cum), w in ((_DRAW[False], WEIGHTS), (_DRAW[True], WEIGHTS_AIE4),
                            (uapi_trace._DRAW_IOCTL, uapi_trace.WEIGHTS)):  # noqa: SLF001
        a, b = random.Random(7), random.Random(7)
        assert [a.choices(list(w), weights=list(w.values()))[0] for _ in range(2000)] == \
               [b.choices(names, cum_weights=cum)[0] for _ in range(2000)]
