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
