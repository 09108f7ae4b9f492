"""Snapshot/restore of a fuzzing DeviceHarness is exact: a run that restores a snapshot ends
byte-for-byte where a run from scratch ends (executed ops, status(), BARs, host memory,
raised IRQs, counters, the checker's reference model, the clock)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from xdna_emu.fuzz import trace as tr
from xdna_emu.fuzz.atheris_target import _mutate, device_seeds, dictionary
from xdna_emu.fuzz.invariants import Failure
from xdna_emu.fuzz.ops import SEPARATOR, DeviceHarness, Interpreter, Op, run_input
from xdna_emu.testing.pydriver import PyDriver

GOLDEN = [p for p in sorted(tr.GOLDEN_DIR.glob("*.trace")) if tr.load(p).target == "device"]


def fingerprint(s: DeviceHarness) -> dict[str, Any]:
    """Everything a later op or an ``expect`` line could observe."""
    host = {}
    for pasid, space in sorted(s.iommu.spaces.items()):
        host[pasid] = [(m.address, m.size, m.perm, bytes(m.mem)) for m in space.maps]
    m = s.checker.model
    return {
        "executed": list(s.executed),
        "status": s.dev.status(),
        "bars": {i: bytes(b) for i, b in s.regs.bytes.items()},
        "host": host,
        "irqs": list(s.td.irqs),
        "irq_mark": s.irq_mark,
        "events": dict(s.events),
        "steps": s.steps,
        "clock": s.clock.now_ns(),
        "model": (m.smu_on, m.psp_state, m.psp_intr, m.smu_intr),
        "psp_smu": (s.dev.psp.intr, s.dev.smu.intr, s.dev.psp.image is not None),
        "timers": [t[0] for t in sorted(s.dev._timers)],
        "faults": [str(f) for f in s.iommu.faults],
        "bus_master": s.iommu.bus_master(),
        "driver": None if s.drv is None else (
            s.drv.info, [(r.opcode, r.id, r.payload) for r in s.drv.unsolicited],
            None if s.drv.mgmt is None else (s.drv.mgmt.x2i_tail, s.drv.mgmt.i2x_head,
                                             s.drv.mgmt.next_id)),
        "contexts": [(c.id, c.chan.x2i_tail, c.chan.i2x_head, c.chan.next_id, sorted(c.responses))
                     for c in s.contexts],
        "clients": [(c.pasid, c._off) for c in s.clients],
    }


def _run_ops(s: DeviceHarness, ops: list[Op]) -> Failure | None:
    try:
        s.run(ops)
    except Failure as exc:
        return exc
    return None


def _scramble(s: DeviceHarness, rng: random.Random) -> None:
    """Dirty every part of the state a snapshot must undo (and some it must not care about)."""
    if s.chip.aie4 is not None:
        s.apply(Op("call", ("a4_bring_up", 5)))
        s.apply(Op("call", ("a4_ctx",)))
        s.apply(Op("call", ("a4_submit", 0, 1, 2)))
        s.apply(Op("call", ("a4_submit", 0, 3, 1)))
    s.apply(Op("call", ("boot",)))
    s.apply(Op("call", ("ctx_create", 0, -1, 1)))
    s.apply(Op("call", ("submit", 0, 1, 2)))
    s.apply(Op("fault", ("bus_master", 0)))
    s.apply(Op("dma_map", (3, 0x5000_0000, 0x2000, 3)))
    s.apply(Op("tick", (rng.randrange(1, 10**9),)))
    for mem in s.regs.bytes.values():
        mem[rng.randrange(len(mem))] = 0x5A
    for space in s.iommu.spaces.values():
        for m in space.maps:
            m.mem[rng.randrange(m.size)] ^= 0xFF


@pytest.mark.parametrize("path", GOLDEN, ids=[p.stem for p in GOLDEN])
def test_golden_trace_from_any_snapshot_ends_like_from_scratch(path: Path) -> None:
    trace = tr.load(path)
    ref = DeviceHarness(trace.chip)
    ref.use_snapshots = False
    assert _run_ops(ref.fresh(), trace.ops) is None  # expect lines pin the device output
    want = fingerprint(ref)
    s = DeviceHarness(trace.chip)
    rng = random.Random(path.name)
    cuts = sorted({0, 1, len(trace.ops) // 2, len(trace.ops) - 1, *rng.sample(range(len(trace.ops)), 4)})
    for k in cuts:
        s.fresh()
        assert _run_ops(s, trace.ops[:k]) is None
        snap = s.snapshot()
        _scramble(s, rng)  # a different future, then back
        s.restore(snap)
        assert _run_ops(s, trace.ops[k:]) is None, f"cut at op {k}"
        got = fingerprint(s)
        assert got == want, f"cut at op {k}: {[key for key in want if got[key] != want[key]]} differ"
    # restoring twice from the same snapshot works too (the snapshot is not consumed)
    s.restore(snap)
    assert _run_ops(s, trace.ops[cuts[-1]:]) is None and fingerprint(s) == want


def _inputs(n: int, seed: int) -> list[bytes]:
    """Seeds plus mutants that share their prefixes (what a fuzzer runs)."""
    rng = random.Random(seed)
    seeds = list(device_seeds("npu4").values())
    toks = dictionary()
    out = list(seeds)
    for _ in range(n):
        parent = rng.choice(out)
        out.append(_mutate(parent, rng, out, toks))
    it = Interpreter(DeviceHarness("npu4"))
    sel = {name: bytes([it.selector(name)]) for name in ("_bring_up", "_ctx", "_submit", "_post", "_tick")}
    for _ in range(40):  # semantic prefixes followed by random tails
        head = SEPARATOR.join([sel["_bring_up"] + bytes([rng.choice((0, 0x81))]),
                               sel["_ctx"] + bytes([0, 0, 1])][: rng.randint(1, 2)])
        tail = bytes(rng.randrange(256) for _ in range(rng.randint(0, 60)))
        out.append(head + SEPARATOR + tail)
        out.append(head + SEPARATOR + tail[::-1])
    return out


def test_random_inputs_with_snapshots_behave_like_without() -> None:
    inputs = _inputs(300, seed=5)
    ref, fast = DeviceHarness("npu4"), DeviceHarness("npu4")
    ref.use_snapshots = False
    for _ in range(2):  # the second round restores prefixes the first one left behind
        for data in inputs:
            want_fail, got_fail = run_input(ref, data), run_input(fast, data)
            assert (type(got_fail), str(got_fail)) == (type(want_fail), str(want_fail)), data.hex()
            got, want = fingerprint(fast), fingerprint(ref)
            assert got == want, f"{data.hex()}: {[k for k in want if got[k] != want[k]]} differ"
    assert fast.snap_stats["restored"] > len(inputs) // 2, fast.snap_stats
    assert ref.snap_stats["restored"] == 0


def test_snapshot_skips_the_bring_up_of_a_repeated_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    s = DeviceHarness("npu4")
    it = Interpreter(s)
    data = bytes([it.selector("_bring_up"), 0x81]) + SEPARATOR + bytes([it.selector("_tick"), 1, 0])
    calls: list[int] = []
    real = PyDriver.bring_up
    monkeypatch.setattr(PyDriver, "bring_up",
                        lambda self, *a, **k: calls.append(1) or real(self, *a, **k))
    assert run_input(s, data) is None
    first = fingerprint(s)
    assert run_input(s, data) is None
    assert len(calls) == 1 and s.snap_stats["restored"] == 1
    assert fingerprint(s) == first and s.dev.fw is not None


def test_machine_start_is_restored(monkeypatch: pytest.MonkeyPatch) -> None:
    s = DeviceHarness("npu4")
    s.start([Op("call", ("bring_up", 1))])
    want = fingerprint(s)
    s.apply(Op("reset"))
    s.start([Op("call", ("bring_up", 1))])
    assert s.snap_stats["restored"] == 1 and fingerprint(s) == want
    # a changed device behaviour must not be served from a stale snapshot once dropped
    s.drop_snapshots()
    s.start([Op("call", ("boot",))])
    assert s.snap_stats["taken"] == 2


def test_held_work_and_queues_are_restored() -> None:
    """A hung context (held queue), held async events and a suspended firmware at the
    snapshot; the future in between drops them all; the tail must see them again."""
    head = [Op("call", ("bring_up", 1)), Op("call", ("ctx_create", 0, -1, 1)),
            Op("call", ("submit", 0, 3, 2)), Op("call", ("msg", 0x101, bytes(4)))]
    tail = [Op("tick", (5_000_000,)), Op("call", ("msg", 0x102, bytes(4))),
            Op("call", ("submit", 0, 1, 1)), Op("call", ("ctx_destroy", 0)),
            Op("call", ("ctx_create", 0, -1, 1)), Op("call", ("submit", 0, 1, 1))]
    ref = DeviceHarness("npu4")
    ref.use_snapshots = False
    assert _run_ops(ref.fresh(), head) is None
    held = ref.dev.status()
    assert held["contexts"][0]["queued"] and held["pending_async_events"]
    assert held["firmware"]["suspended"]
    assert _run_ops(ref, tail) is None
    s = DeviceHarness("npu4")
    assert _run_ops(s.fresh(), head) is None
    snap = s.snapshot()
    s.run([Op("call", ("msg", 0x102, bytes(4))), Op("call", ("ctx_destroy", 0))])
    assert not s.dev.ctx.contexts and snap_queue(snap)  # gone in this future, kept in the snapshot
    s.apply(Op("reset"))
    _scramble(s, random.Random(1))
    s.restore(snap)
    assert s.dev.status() == held
    assert _run_ops(s, tail) is None
    got, want = fingerprint(s), fingerprint(ref)
    assert got == want, [k for k in want if got[k] != want[k]]


def snap_queue(snap: Any) -> int:
    """Length of the queue of the hung context the snapshot recorded."""
    ctx = snap.fn.device.ctx
    live = [c for c in (ctx.contexts if ctx else ()) if c.hung]
    assert live
    return len(live[0].queue)
