"""Copy-on-write snapshots of the device target (docs/spec/fuzzing.md §9): the arena's
dirty-page tracking, snapshots that hold only written pages, pinned incremental rounds that
behave like runs from scratch, and the full-copy fallback."""

from __future__ import annotations

import errno
import gc
import os
import random
import re
from collections import Counter, deque
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_fuzz_snapshot import fingerprint

from xdna_emu.fuzz import cow
from xdna_emu.fuzz.atheris_target import Target, _mutate, builtin_fuzz, device_seeds, dictionary
from xdna_emu.fuzz.atheris_target import main as atheris_main
from xdna_emu.fuzz.invariants import InvariantViolation
from xdna_emu.fuzz.ops import (
    A4_PASID,
    A4_QUEUE_SLOTS,
    JOURNAL_VERIFY_EVERY,
    SEPARATOR,
    VERIFY_EVERY,
    DeviceHarness,
    Interpreter,
    Op,
    op_kinds,
    replay_journal,
    run_input,
)
from xdna_emu.fw.smu import SmuBlock
from xdna_emu.testing.aie4driver import QUEUE_IOVA
from xdna_emu.testing.pydriver import PyDriver

pytestmark = pytest.mark.skipif(not cow.available(), reason="no memfd/pagemap dirty tracking here")
P = cow.PAGE


def test_arena_tracks_written_pages_and_reverts_them() -> None:
    a = cow.Arena([3 * P, 100, 2 * P])
    try:
        r0, r1, r2 = a.region(0), a.region(1), a.region(2)
        assert (len(r0), len(r1), len(r2)) == (3 * P, 100, 2 * P)
        assert not len(a.dirty())
        _ = bytes(r0)  # reading dirties nothing
        assert not len(a.dirty())
        r0[P + 1] = 1
        r2[2 * P - 1] = 2  # the last byte of the last region
        assert list(a.dirty()) == [1, 5]
        state = a.delta()
        a.revert()
        assert r0[P + 1] == 0 and r2[2 * P - 1] == 0 and not len(a.dirty())
        a.load(state)
        assert r0[P + 1] == 1 and r2[2 * P - 1] == 2
        a.commit()  # the current contents become the base
        assert not len(a.dirty()) and r0[P + 1] == 1
        r1[5] = 9
        a.revert_region(1)
        assert r1[5] == 0 and r0[P + 1] == 1
    finally:
        a.close()


@pytest.fixture(scope="session")
def tracking() -> None:
    """Skips where :func:`cow.make_arena` gives no tracked arena (probed once, closed)."""
    a = cow.make_arena([P])
    try:
        found = isinstance(a, cow.TrackedArena)
    finally:
        a.close()
    if not found:
        pytest.skip("no userfaultfd write-protection / PAGEMAP_SCAN here")


tracked = pytest.mark.usefixtures("tracking")


@tracked
def test_tracked_arena_rewrites_only_what_changed() -> None:
    a = cow.make_arena([3 * P, 100, 2 * P])
    assert isinstance(a, cow.TrackedArena)
    try:
        r0, r1, r2 = a.region(0), a.region(1), a.region(2)
        _ = bytes(r0)  # reading dirties nothing
        assert not len(a.dirty())
        r0[P + 1] = 1
        r2[2 * P - 1] = 2
        assert list(a.dirty()) == [1, 5]
        first = a.delta()
        a.revert()
        assert r0[P + 1] == 0 and r2[2 * P - 1] == 0 and not len(a.dirty())
        a.load(first)
        assert r0[P + 1] == 1 and r2[2 * P - 1] == 2 and not len(a.verify(first))
        r0[5] = 3  # a write, then the same delta again: only page 0 is rewritten
        r1[0] = 4
        a.load(first)
        assert r0[5] == 0 and r1[0] == 0 and not len(a.verify(first))
        r0[P + 1] = 0  # back to its base value: not in the delta
        second = a.delta()
        assert list(second[0]) == [5]
        assert second[1][0] is first[1][1]  # an unwritten page is shared, not copied
        a.load(second)
        assert r0[P + 1] == 0 and r2[2 * P - 1] == 2 and not len(a.verify(second))
        r2[0] = 1  # a write to the next page does not change the shared one
        assert a.delta()[1][1] is first[1][1]
        a.commit()  # the current contents become the base
        assert not len(a.dirty()) and r2[0] == 1
        r1[5] = 9
        a.revert_region(1)
        assert r1[5] == 0 and r2[0] == 1 and not len(a.dirty())
    finally:
        a.close()


@tracked
def test_a_write_the_tracking_misses_is_caught_by_the_debug_check() -> None:
    """A planted miss (the arena forgets a written page) leaves that page as the input
    wrote it after a restore; ``verify`` names it, and the harness's debug mode raises."""
    a = cow.make_arena([4 * P])
    try:
        snap = a.delta()
        a.region(0)[2 * P + 8] = 1
        a.forget([2])
        a.load(snap)
        assert list(a.verify(snap)) == [2]
    finally:
        a.close()
    s = DeviceHarness("npu4")
    s.verify_every, s.verify_raises = 1, True  # as $XDNA_FUZZ_VERIFY=1 sets them
    s.fresh()
    s.run([Op("call", ("boot",))])
    snap = s.snapshot()
    s.run([Op("call", ("ctx_create", 0, -1, 1))])
    s.restore(snap)  # tracked: exact
    s.run([Op("call", ("ctx_create", 0, -1, 1))])
    s.arena.forget()
    with pytest.raises(RuntimeError, match="escaped the page tracking"):
        s.restore(snap)


@tracked
def test_a_missed_write_drops_the_harness_to_the_pagemap_arena() -> None:
    """By default a tracked harness checks every VERIFY_EVERY-th restore; a miss (planted)
    turns its arena into the pagemap one in place, the restore still ends exact, the miss
    is counted, the snapshots (which may hold the missed write) go, and later pinned
    children end as runs from scratch."""
    s, ref = DeviceHarness("npu4"), DeviceHarness("npu4")
    assert s.verify_every == VERIFY_EVERY and not s.verify_raises
    ref.use_snapshots = False
    data = device_seeds("npu4")["job"]
    run_input(s, data, pin=len(data) // 2)
    assert s.pinned is not None and s.snaps
    snap = s.snaps[s.pinned]
    s.restore(snap)
    full = _full_state(s)
    s.run([Op("call", ("ctx_create", 0, -1, 1))])
    s.arena.forget()  # the tracking loses every write of that call
    s.verify_every = 1
    s.restore(snap)
    assert s.snap_stats["tracking_misses"] == 1 and s.page_tracking == "pagemap"
    assert type(s.arena) is cow.Arena and not s.snaps and s.verify_every == 0
    assert _full_state(s) == full and not len(s.arena.verify(snap.pages))
    for tail in (b"\x06\x10\x00", b"\x06\x01\x00"):
        run_input(s, data, pin=len(data) // 2)
        assert s.pinned is not None
        child = s.pinned + tail
        assert run_input(s, child, hint=s.pinned) is None and run_input(ref, child) is None
        assert fingerprint(s) == fingerprint(ref)


def _fds(collect: bool = False) -> int:
    """Open descriptors (``collect``: once dropped objects are collected, as make_arena
    does on a refused mlock)."""
    if collect:
        gc.collect()
    return len(os.listdir("/proc/self/fd"))


@tracked
def _pinned_child_runs_like_scratch(s: DeviceHarness) -> bytes:
    """Pin half of the job seed on ``s``, then run a child of that prefix on ``s`` (restored
    from the pin) and from scratch on a harness without snapshots: both end the same.
    Returns the pinned prefix."""
    ref = DeviceHarness("npu4")
    ref.use_snapshots = False
    data = device_seeds("npu4")["job"]
    run_input(s, data, pin=len(data) // 2)
    assert s.pinned is not None
    pin = s.pinned
    child = pin + b"\x06\x10\x00"
    assert run_input(s, child, hint=pin) is None and run_input(ref, child) is None
    assert fingerprint(s) == fingerprint(ref)
    return pin


def test_a_refused_mlock_falls_back_for_that_arena_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where RLIMIT_MEMLOCK refuses to keep the arena resident (a swapped-out written page
    would escape the scan), the harness gets the pagemap arena and says so in
    ``page_tracking``; the failed arena leaves no descriptor behind, and tracking is not
    given up for the process."""
    def refused(start: int, size: int) -> None:
        raise cow.LockRefused(errno.ENOMEM, "mlock: Cannot allocate memory")

    monkeypatch.setattr(cow, "_mlock", refused)
    before = _fds(collect=True)
    a = cow.make_arena([4 * P])
    assert type(a) is cow.Arena and cow.tracked() is True
    a.close()
    assert _fds() == before
    s = DeviceHarness("npu4")
    assert s.page_tracking == "pagemap" and s.verify_every == 0
    _pinned_child_runs_like_scratch(s)
    monkeypatch.undo()
    a = cow.make_arena([P])
    assert isinstance(a, cow.TrackedArena)
    a.close()


def test_a_transient_error_is_raised_not_taken_for_a_refusal(monkeypatch: pytest.MonkeyPatch) -> None:
    """Out of descriptors while the first arena is built: make_arena raises, and does not
    decide that this process cannot track."""
    real = os.memfd_create

    def exhausted(name: str, flags: int = 0) -> int:
        monkeypatch.setattr(os, "memfd_create", real)
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(cow, "_TRACKED", None)
    monkeypatch.setattr(os, "memfd_create", exhausted)
    with pytest.raises(OSError, match="Too many open files"):
        cow.make_arena([P])
    assert cow.tracked() is None
    a = cow.make_arena([P])
    a.close()
    assert cow.tracked() is not None


def _full_state(s: DeviceHarness) -> tuple:
    """Everything a full restore puts back, as bytes: the function's save() with the BARs
    (registers, rings, MSI-X table and PBA) and every host mapping's bytes, config space,
    the model's state, the checker's and the harness's own. The device's journal is left
    as it was (a save marks the state it saved as the one the blocks hold)."""
    dev = s.dev
    kept = dev.held, set(dev.marks)
    out = (s.fn.save(), fingerprint(s), s.checker.save())
    dev.held, dev.marks = kept
    return out


@tracked
@pytest.mark.parametrize("chip", ["npu4", "npu3"])
def test_tracked_restores_equal_full_restores_for_random_inputs(chip: str) -> None:
    """For random inputs after random prefixes: the tracked restore (only the pages each
    input wrote) leaves the function byte for byte as a full restore does (on AIE4 the
    driver's buffers and the client's memory are pool spans of the arena)."""
    rng = random.Random(7)
    toks = dictionary()
    seeds = list(device_seeds(chip).values())
    s = DeviceHarness(chip)
    assert isinstance(s.arena, cow.TrackedArena)
    s.verify_every = 1
    it = Interpreter(s)
    checked = 0
    for parent in seeds[:8]:
        s.fresh()
        it.run(parent)
        full = _full_state(s)
        snap = s.snapshot()
        for _ in range(5):
            child = _mutate(parent, rng, seeds, toks)
            try:
                it.run(child)
            except Exception:  # noqa: BLE001 - a finding or a bad op: the restore must still hold
                pass
            s.restore(snap)
            assert _full_state(s) == full
            checked += 1
    assert checked == 5 * len(seeds[:8])


def test_an_aie4_snapshot_copies_no_mapping_the_driver_or_the_client_made() -> None:
    """AIE4's driver maps its work buffer, certificate and queue BOs, and the harness the
    client's memory (5 MB in all): each is a span of the arena's pool, so a snapshot holds
    none of their bytes, only the pages written, and a restore copies none back."""
    s = DeviceHarness("npu3")
    s.fresh()
    s.run([Op("call", ("a4_bring_up", 2000)), Op("call", ("a4_ctx",)),
           Op("call", ("a4_submit", 0, 1, 2))])
    snap = s.snapshot()
    assert snap.fn.mappings and all(m.data is None for m in snap.fn.mappings), \
        [(hex(m.address), m.size) for m in snap.fn.mappings if m.data is not None]
    assert sum(m.size for m in snap.fn.mappings) > 5 << 20
    assert 0 < len(snap.pages[0]) < 200, len(snap.pages[0])
    s.run([Op("call", ("a4_submit", 0, 2, 1))])
    s.restore(snap)
    live = {(pasid, m.address): m.mem for pasid, sp in s.iommu.spaces.items() for m in sp.maps}
    assert all(live[k] is mem for k, mem in snap.memory.items())  # the very buffers, kept
    assert s.arena.verify(snap.pages).size == 0


def test_a_queue_index_read_alone_is_the_headers() -> None:
    """``Aie4Queue.index`` (what the checker reads after every op) is the header's field."""
    s = DeviceHarness("npu3")
    s.fresh()
    s.run([Op("call", ("a4_bring_up", 2000)), Op("call", ("a4_ctx",)),
           Op("call", ("a4_submit", 0, 0, 3)), Op("call", ("a4_publish", 0, 7))])
    q = s.queues[0]
    hdr = q.header
    assert hdr["read_index"] == 3 and hdr["write_index"] == 10
    assert (q.index("read_index"), q.index("write_index")) == (hdr["read_index"], hdr["write_index"])


def test_a_pool_span_is_handed_out_zeroed_and_never_to_two_live_mappings() -> None:
    """A key's span is zeroed each time it is handed out again (a driver remapping it),
    and a key whose span a live mapping holds gets a new bytearray instead."""
    s = DeviceHarness("npu3")
    buf = s.host_buffer("k", 3 * cow.PAGE + 5)
    buf[0] = buf[-1] = 7
    again = s.host_buffer("k", 3 * cow.PAGE + 5)
    assert again is buf and buf[0] == 0 and buf[-1] == 0
    s.fn.dma_map(9, 0x1_0000_0000, len(buf), 3, None, mem=buf)
    buf[1] = 9
    other = s.host_buffer("k", len(buf))
    assert type(other) is bytearray and buf[1] == 9  # the live mapping's bytes are kept
    assert type(s.host_buffer("k", 64)) is bytearray  # another size: not the span
    assert type(s.host_buffer("huge", 64 << 20)) is bytearray  # past the pool


def test_a_destroyed_queue_keeps_its_pool_span_from_a_later_queue() -> None:
    """A queue BO unmapped while the harness keeps its destroyed queue (stale doorbells,
    the checker's read marks) is not handed to the next queue of that slot: the two would
    share memory, and the checker would see the old queue's read index fall."""
    s = DeviceHarness("npu3")
    s.fresh()
    s.run([Op("call", ("a4_bring_up", 2000)), Op("call", ("a4_ctx",)),
           Op("call", ("a4_submit", 0, 0, 3)),
           Op("dma_unmap", (A4_PASID, QUEUE_IOVA, 0x10000))])
    s.run([Op("call", ("a4_ctx",))] * A4_QUEUE_SLOTS)  # the last one takes queue 0's slot
    assert len(s.queues) == A4_QUEUE_SLOTS + 1
    assert s.queues[0].mem is not s.queues[-1].mem
    assert s.queues[0].index("read_index") == 3


def test_a_snapshot_holds_only_the_pages_written_since_power_on() -> None:
    s = DeviceHarness("npu4")
    assert s.arena is not None
    s.fresh()
    s.run([Op("call", ("boot",)), Op("call", ("ctx_create", 0, -1, 1)), Op("call", ("submit", 0, 1, 2))])
    snap = s.snapshot()
    pages, data = snap.pages
    assert snap.fn.bars == ()  # the BARs are in the arena, not copied
    assert 0 < len(pages) < s.arena.pages // 16, len(pages)  # a few pages of ~1,700
    heap = [m for m in snap.fn.mappings if m.pasid == 0 and m.size == 2 << 20]
    assert heap and heap[0].data is None  # the client heap is in the arena too
    assert len(data) == len(pages) and {len(row) for row in data} == {cow.PAGE}


def test_pinned_rounds_behave_like_runs_from_scratch() -> None:
    """A parent pinned at a cut, then children that keep its prefix, restored from the pin:
    each ends exactly as the same input run from power-on without snapshots."""
    rng = random.Random(3)
    toks = dictionary()
    seeds = list(device_seeds("npu4").values())
    ref, fast = DeviceHarness("npu4"), DeviceHarness("npu4")
    ref.use_snapshots = False
    pinned = 0
    for parent in seeds:
        run_input(fast, parent, pin=rng.randrange(len(parent)))
        prefix = fast.pinned
        if prefix is None:
            continue
        pinned += 1
        assert parent.startswith(prefix)
        for _ in range(6):
            child = prefix + _mutate(parent[len(prefix):], rng, seeds, toks)
            before = fast.snap_stats["restored"]
            got_fail, want_fail = run_input(fast, child, hint=prefix), run_input(ref, child)
            assert fast.snap_stats["restored"] == before + 1
            assert (type(got_fail), str(got_fail)) == (type(want_fail), str(want_fail)), child.hex()
            got, want = fingerprint(fast), fingerprint(ref)
            assert got == want, f"{child.hex()}: {[k for k in want if got[k] != want[k]]} differ"
    assert pinned >= len(seeds) // 2


def test_without_dirty_tracking_snapshots_copy_everything(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cow, "_AVAILABLE", False)
    s = DeviceHarness("npu4")
    assert s.arena is None
    pin = _pinned_child_runs_like_scratch(s)
    assert s.snaps[pin].pages is None
    assert s.snaps[pin].fn.bars  # the full copy


def test_without_write_tracking_the_arena_drops_and_rewrites_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where userfaultfd is refused (a seccomp filter, an old kernel), the arena is the
    pagemap one, and pinned children still end as runs from scratch."""
    def refused() -> int:
        raise OSError(1, "userfaultfd: Operation not permitted")

    monkeypatch.setattr(cow, "_TRACKED", None)
    monkeypatch.setattr(cow, "_uffd_open", refused)
    before = _fds(collect=True)
    cow.make_arena([P]).close()  # the refused arena's memfd and mappings are closed
    assert _fds() == before and cow.tracked() is False
    s = DeviceHarness("npu4")
    assert type(s.arena) is cow.Arena and s.page_tracking == "pagemap" and cow.tracked() is False
    _pinned_child_runs_like_scratch(s)


def test_builtin_loop_runs_incremental_rounds_by_work() -> None:
    """Bounded by executions, not time: rounds restore their pinned prefix."""
    t = Target("device", "npu4", None)
    out = builtin_fuzz(t, 1e9, None, device_seeds("npu4"), seed=2, max_execs=300)
    assert t.execs >= 300 and out["corpus_size"] >= len(device_seeds("npu4"))
    assert t.session.snap_stats["restored"] > 200, t.session.snap_stats


def test_coverage_kinds_of_a_restored_prefix_are_those_of_every_op_executed() -> None:
    """The coverage of an input restored from a snapshot takes the prefix's kinds from the
    snapshot (worked out once, counted once per end state) and its own ops' from the ops:
    the features are exactly those of a walk of every op executed since power-on, for
    parents, children and memo hits alike."""
    t = Target("device", "npu4", None)
    s = t.session
    checked: Counter[str] = Counter()
    real = t.coverage_feature
    walked: set[tuple] = set()  # the features of a walk of every op executed

    def coverage(data: bytes) -> bool:
        assert s.executed_kinds() == op_kinds(s.executed)
        checked["from_snapshot" if s.executed_from is not None else "fresh"] += 1
        if s.executed_from is not None and len(s.executed_from.attrs["executed"]) > 8:
            checked["long_prefix"] += 1
        new = real(data)
        sid = t._state_ids[s.state_key()]
        fresh = {(*k, sid) for k in op_kinds(s.executed)} - walked
        walked.update(fresh)
        assert new == bool(fresh) and t.features == walked
        return new

    t.coverage_feature = coverage  # type: ignore[method-assign]
    builtin_fuzz(t, 1e9, None, device_seeds("npu4"), seed=5, max_execs=400)
    assert checked["from_snapshot"] > 300 and checked["fresh"] and checked["long_prefix"], checked


def test_builtin_loop_writes_every_new_corpus_entry_by_its_end(tmp_path: Path) -> None:
    """New corpus entries are written in batches (with the progress records and at the
    end): every entry the loop kept is on disk when it returns, named by its SHA-1."""
    import hashlib

    t = Target("device", "npu4", None)
    seeds = device_seeds("npu4")
    out = builtin_fuzz(t, 1e9, tmp_path / "corpus", seeds, seed=2, max_execs=300)
    files = {p.name: p.read_bytes() for p in (tmp_path / "corpus").iterdir()}
    assert len(files) == out["corpus_size"] - len(seeds) > 0
    assert all(hashlib.sha1(data).hexdigest() == name for name, data in files.items())


def test_builtin_loop_writes_its_new_corpus_entries_when_an_exception_ends_it(
        tmp_path: Path) -> None:
    """An exception out of the loop (a harness bug, not a finding) still writes the entries
    found before it, which are often the ones that led there."""
    import hashlib

    class Breaks(Target):
        kept: list[bytes] = []

        def coverage_feature(self, data: bytes) -> bool:
            if len(self.kept) == 3:
                raise RuntimeError("planted")
            new = super().coverage_feature(data)
            if new and self.execs > len(seeds):
                self.kept.append(data)
            return new

    seeds = device_seeds("npu4")
    with pytest.raises(RuntimeError, match="planted"):
        builtin_fuzz(Breaks("device", "npu4", None), 1e9, tmp_path / "corpus", seeds, seed=2,
                     max_execs=10_000)
    names = {p.name for p in (tmp_path / "corpus").iterdir()}
    assert names == {hashlib.sha1(d).hexdigest() for d in Breaks.kept}


def _bars_cleared(s: DeviceHarness) -> bool:
    """Every BAR byte is zero but the MSI-X table and PBA (what a reset leaves)."""
    m = s.chip.msix
    for bar, arr in s.regs.arrays.items():
        data = arr.copy()
        if bar == m.bar:
            data[m.table_offset : m.table_offset + m.table_size] = 0
            data[m.pba_offset : m.pba_offset + m.pba_size] = 0
        if data.any():
            return False
    return True


@pytest.mark.parametrize("chip", ["npu4", "npu3"])
def test_a_reset_looks_only_at_the_pages_that_may_hold_data_and_clears_them_all(chip: str) -> None:
    """With write tracking the register file's clear asks the arena which BAR pages may
    hold data (written since the base, or non-zero in it) and stores only to those that
    do: after random inputs a reset leaves every BAR zero but MSI-X (also when the
    input's stores were not scanned yet: the clear's own scan sees them), and the pages it
    stored to are among those that held data."""
    s = DeviceHarness(chip)
    assert isinstance(s.arena, cow.TrackedArena) and s.regs.blocks is not None
    hints, ask = [], s.regs.blocks

    def blocks() -> Any:  # what each clear was told to look at
        hints.append(ask())
        return hints[-1]

    s.regs.blocks = blocks
    rng = random.Random(7)
    seeds = list(device_seeds(chip).values())
    m = s.chip.msix
    keep = [(m.table_offset, m.table_size), (m.pba_offset, m.pba_size)]
    resets = 0
    for i in range(60):
        data = _mutate(rng.choice(seeds), rng, seeds, dictionary())
        if run_input(s, data) is not None:
            continue
        held = {bar: set(np.flatnonzero(arr.reshape(-1, cow.PAGE).any(axis=1)).tolist())
                for bar, arr in s.regs.arrays.items()}
        if i % 2:
            s.regs.clear(keep={m.bar: keep})
            assert _bars_cleared(s)
            continue
        s.arena._fold()  # the input's stores scanned: the next scan shows the clear's alone
        s.regs.clear(keep={m.bar: keep})
        assert _bars_cleared(s)
        written = s.arena._written()
        for k, bar in enumerate(sorted(s.chip.bars)):
            first = s.arena._offs[k] // cow.PAGE
            pages = {p - first for p in written if first <= p < first + len(s.regs.arrays[bar]) // cow.PAGE}
            if bar == m.bar:  # the kept ranges are stored back
                pages -= {p for off, size in keep for p in range(off // cow.PAGE, -(-(off + size) // cow.PAGE))}
            assert pages <= held[bar]
        s.arena._diff.update(written)  # the arena's own record of them, as _fold keeps it
        s.arena._since.update(written)
        resets += 1
    assert resets > 15
    total = sum(len(arr) // cow.PAGE for arr in s.regs.arrays.values())
    assert None not in hints  # known every time: never the full scan
    looked = [sum(len(b) for b in h.values()) for h in hints]
    assert len(looked) >= resets and max(looked) < total // 4, (max(looked), total)


def test_a_reset_clears_a_page_the_base_holds_data_in() -> None:
    """A BAR page that is non-zero in the arena's base (and never written since) is one
    the clear must look at too."""
    s = DeviceHarness("npu4")
    bar = sorted(s.chip.bars)[0]
    arr = s.regs.arrays[bar]
    off = len(arr) - 64  # far from every register the model writes
    arr[off] = 0x5A
    s.arena.commit()  # now part of the base, and no write since
    s.v_reset()
    assert arr[off] == 0 and _bars_cleared(s)


def _count_bring_ups(monkeypatch: pytest.MonkeyPatch, plant: bool = False) -> list[int]:
    calls: list[int] = []
    real = PyDriver.bring_up

    def bring_up(self: PyDriver, *a: object, **k: object) -> None:
        calls.append(1)
        if plant:
            raise InvariantViolation("planted", "a bring-up that is a finding")
        real(self, *a, **k)

    monkeypatch.setattr(PyDriver, "bring_up", bring_up)
    return calls


def test_a_costly_call_runs_once_per_op_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Other bytes that decode to the same ops (a selector past the table, another operand
    byte) reach the bring-up by the same op path: its state is restored, not rebuilt, and
    the run ends as one from scratch."""
    calls = _count_bring_ups(monkeypatch)
    s, ref = DeviceHarness("npu4"), DeviceHarness("npu4")
    ref.use_snapshots = False
    it = Interpreter(s)
    bu, tick = it.selector("_bring_up"), it.selector("_tick")
    a = bytes([bu, 0x81]) + SEPARATOR + bytes([tick, 1, 0])
    b = bytes([bu + len(it.table), 0x83]) + SEPARATOR + bytes([tick, 2, 0])
    for data in (a, b):
        assert run_input(s, data) is None and run_input(ref, data) is None
        assert fingerprint(s) == fingerprint(ref)
    assert s.snap_stats["memo_hits"] == 1 and len(calls) == 3  # ref twice, s once


def test_a_call_that_is_a_finding_is_never_memoized(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _count_bring_ups(monkeypatch, plant=True)
    s = DeviceHarness("npu4")
    data = bytes([Interpreter(s).selector("_bring_up"), 0x81])
    for _ in range(3):
        found = run_input(s, data)
        assert isinstance(found, InvariantViolation) and found.name == "planted"
    assert len(calls) == 3 and not s.snap_stats["memo_hits"]


def test_a_child_stops_at_its_budget_and_names_what_ran() -> None:
    """``limit`` bounds the work past the starting state; ``ran_to`` cuts the input to the
    ops that ran, which replay to the same state."""
    s, ref = DeviceHarness("npu4"), DeviceHarness("npu4")
    ref.use_snapshots = False
    tick = bytes([Interpreter(s).selector("_tick"), 1, 0])
    data = SEPARATOR.join([tick] * 40)
    assert run_input(s, data, limit=10) is None
    assert len(s.executed) == 10 and s.ran_to < len(data)
    assert run_input(ref, data[: s.ran_to]) is None and fingerprint(ref) == fingerprint(s)
    t = Target("device", "npu4", None)
    assert t(data, limit=10) == data[: t.session.ran_to] and t(data) == data


def test_libfuzzer_rounds_pin_a_parent_and_mutate_only_its_suffix() -> None:
    """The atheris engine's custom mutator (LibFuzzerRounds): the input libFuzzer hands
    over is pinned at a cut; the round's children are its prefix plus libFuzzer's mutation
    of the rest, each run from the pinned snapshot; then a new round starts."""
    from xdna_emu.fuzz.atheris_target import ROUND, LibFuzzerRounds

    t = Target("device", "npu4", None)
    seen: list[bytes] = []

    def mutate(data: bytes, max_size: int) -> bytes:  # stands in for atheris.Mutate
        seen.append(data)
        return (data + b"\x06\x01\x00")[:max_size]

    r = LibFuzzerRounds(t, 1, mutate)
    seeds = device_seeds("npu4")
    parent = seeds["job"]
    children = [r.custom_mutator(parent, 4096, 0) for _ in range(ROUND)]
    prefix = r.prefix
    assert prefix and parent.startswith(prefix) and len(prefix) < len(parent)
    assert seen == [parent[len(prefix):]] * ROUND
    assert all(c == prefix + parent[len(prefix):] + b"\x06\x01\x00" for c in children)
    before = t.session.snap_stats["restored"]
    for c in children[:5]:
        r.one(c)
    assert t.session.snap_stats["restored"] == before + 5
    other = seeds["psp-smu"]
    r.custom_mutator(other, 4096, 0)  # the round is spent: the next input is a new parent
    assert r.prefix is None or other.startswith(r.prefix)


def test_a_child_stops_before_a_boot_that_would_have_to_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """With a ``limit`` (a round's child) a bring-up not memoized for its op path is left
    to parents and whole inputs; once one ran, children reach it through the memo."""
    calls = _count_bring_ups(monkeypatch)
    s = DeviceHarness("npu4")
    it = Interpreter(s)
    tick, bu = bytes([it.selector("_tick"), 1, 0]), bytes([it.selector("_bring_up"), 0x81])
    data = SEPARATOR.join([tick, bu, tick])
    assert run_input(s, data, limit=100) is None
    assert not calls and s.ran_to == len(tick) and len(s.executed) == 1
    assert run_input(s, data) is None and len(calls) == 1  # a whole input runs it
    assert run_input(s, data, limit=100) is None
    assert len(calls) == 1 and s.ran_to == len(data) and s.dev.fw is not None


def _plain(v: object) -> object:
    """A field as plain data: containers by content, other objects by type (two harnesses'
    objects are never the same ones)."""
    if v is None or isinstance(v, (int, float, str, bytes)):
        return v
    if isinstance(v, (list, tuple, deque)):
        return tuple(_plain(x) for x in v)
    if isinstance(v, dict):
        return tuple((_plain(k), _plain(x)) for k, x in v.items())
    return type(v).__name__


def _host_fields(s: DeviceHarness) -> list[object]:
    """Every test-driver object's fields (what a journaled restore may skip)."""
    return [_plain(vars(o)) for o in s._host_objects()]


def test_journaled_restores_equal_full_restores_for_random_inputs() -> None:
    """For random children of the seeds, a journaled restore (the device's firmware blocks,
    IOMMU and test-driver objects loaded only when an entry or call may have changed them)
    leaves everything as a harness restoring in full does; both kinds of skip happen."""
    rng = random.Random(11)
    toks = dictionary()
    seeds = list(device_seeds("npu4").values())
    s, ref = DeviceHarness("npu4"), DeviceHarness("npu4")
    ref.journal = ref.fn.journal = False
    skipped = {"device": 0, "host": 0, "partial": 0}
    for parent in seeds[:8]:
        for h in (s, ref):
            h.fresh()
            Interpreter(h).run(parent)
        snaps = (s.snapshot(), ref.snapshot())
        for k in range(24):  # whole mutated inputs, and short tails of a few ops
            child = _mutate(parent, rng, seeds, toks) if k % 2 else rng.randbytes(rng.randint(1, 16))
            for h in (s, ref):
                try:
                    Interpreter(h).run(child)
                except Exception:  # noqa: BLE001 - a finding or a bad op: the restore must still hold
                    pass
            skipped["device"] += s.dev.clean is snaps[0].fn.device
            skipped["partial"] += s.dev.held is snaps[0].fn.device and bool(s.dev.marks)
            skipped["host"] += s._host_clean is snaps[0].host
            s.restore(snaps[0])
            ref.restore(snaps[1])
            assert _full_state(s) == _full_state(ref)
            assert _host_fields(s) == _host_fields(ref)
    assert skipped["device"] and skipped["host"] and skipped["partial"], skipped


def _block_child(rng: random.Random, s: DeviceHarness) -> list[Op]:
    """1-4 ops aimed at the journal's blocks: trapped writes of the PSP, the SMU and each
    channel's registers (values near the live cursors, edges and noise), the SMU and PSP
    command words, and messages that reach a handler (mgmt, context create/destroy)."""
    regs, traps = s.regs, sorted(s.dev._traps)
    ops: list[Op] = []
    for _ in range(rng.randint(1, 4)):
        pick = rng.random()
        if pick < 0.5:
            bar, off = rng.choice(traps)
            live = s.fn.mmio_read(bar, off)
            value = rng.choice([0, 1, 4, live, live + 4, live + 8, 0x2000, rng.getrandbits(32),
                                rng.randrange(0, 0x400, 4)])
            ops.append(Op("w32", (bar, off, value)))
        elif pick < 0.65:
            bar, off = regs.loc(rng.choice(["smu.cmd", "smu.arg", "psp.cmd", "psp.arg0"]))
            ops.append(Op("w32", (bar, off, rng.randrange(0, 12))))
        elif pick < 0.8:
            ops.append(Op("call", ("msg", rng.randrange(1, 0x20), rng.randbytes(rng.choice([0, 4, 8])))))
        elif pick < 0.9:
            ops.append(Op("call", ("ctx_create", 0, -1, 1)))
        else:
            ops.append(Op("call", ("ctx_destroy", rng.randrange(2))))
    return ops


def test_journaled_restores_of_single_blocks_equal_full_restores() -> None:
    """Children that change one block each (a PSP, SMU or channel register's side effect,
    or a message a handler serves): the journaled restore, which loads only the blocks the
    entries marked (docs/spec/device.md §4), leaves everything as a full restore does, and
    each kind of mark is met by a restore that loaded that block alone."""
    rng = random.Random(5)
    seeds = device_seeds("npu4")
    s, ref = DeviceHarness("npu4"), DeviceHarness("npu4")
    ref.journal = ref.fn.journal = False
    marked: Counter[str] = Counter()
    for name in ("job", "bring-up-msgs", "psp-smu", "golden-job-npu4"):
        if name not in seeds:
            continue
        for h in (s, ref):
            h.fresh()
            Interpreter(h).run(seeds[name])
        snaps = (s.snapshot(), ref.snapshot())
        for _ in range(80):
            child = _block_child(rng, s)
            for h in (s, ref):
                try:
                    h.run(child)
                except Exception:  # noqa: BLE001 - a finding or a bad op: the restore must still hold
                    pass
            if s.dev.held is snaps[0].fn.device:
                for mark in s.dev.marks:
                    marked[mark if type(mark) is str else "chan"] += 1
            else:
                marked["all"] += 1
            s.restore(snaps[0])
            ref.restore(snaps[1])
            assert _full_state(s) == _full_state(ref), child
            assert _host_fields(s) == _host_fields(ref), child
    assert all(marked[k] for k in ("psp", "smu", "chan", "all")), marked


def test_a_block_the_journal_did_not_mark_is_caught_by_the_check() -> None:
    """While a channel is marked, a planted change of another channel, of the management
    firmware or of the PSP (no entry marked them, so the journaled restore loads the marked
    channel alone) is named by the journal's check."""
    s = DeviceHarness("npu4")
    s.verify_raises, s.journal_every = True, 1
    s.run([Op("call", ("bring_up",)), Op("call", ("ctx_create", 0, -1, 1))])
    snap = s.snapshot()
    mb = s.dev.mailbox
    user = next(i for i in mb.channels if i != 0)
    head = s.chip.dev_to_bar(s.chans[0].i2x_head)
    for plant in (lambda: setattr(mb.channels[user], "msgs_out", mb.channels[user].msgs_out + 1),
                  lambda: setattr(s.dev.fw.state, "time_offset_ns", s.dev.fw.state.time_offset_ns + 1),
                  lambda: setattr(s.dev.psp, "last_error", 7)):
        s.restore(snap)
        s.fn.mmio_write(*head, s.fn.mmio_read(*head))  # channel 0's i2x head: marks channel 0
        assert s.dev.held is snap.fn.device and s.dev.marks == {("chan", 0)}
        plant()
        with pytest.raises(RuntimeError, match="the device's device unlike the snapshot"):
            s.restore(snap)
        s.dev.forget()
        s.restore(snap)
    s.fn.mmio_write(*head, s.fn.mmio_read(*head))
    mb.channels[0].msgs_out += 1  # the marked channel itself: loaded, so nothing escapes
    s.restore(snap)


def test_a_python_change_the_journal_misses_is_caught_by_the_check() -> None:
    """A planted change of the model's Python state that no entry marked (so a journaled
    restore skips the block holding it) is named by the check: it raises in debug mode;
    by default journaling is turned off, counted, the snapshot restored in full and the
    snapshots dropped. A planted change of a test-driver object is caught the same way."""
    s = DeviceHarness("npu4")
    s.verify_raises, s.journal_every = True, 1  # as $XDNA_FUZZ_VERIFY=1 sets them
    s.run([Op("call", ("boot",)), Op("call", ("ctx_create", 0, -1, 1))])
    snap = s.snapshot()
    s.restore(snap)  # nothing changed: the journal skips and the check passes
    assert s.dev.clean is snap.fn.device
    s.dev.fw.state.time_offset_ns += 1  # not through any entry: the journal misses it
    with pytest.raises(RuntimeError, match="the device's device unlike the snapshot: a change escaped the journal"):
        s.restore(snap)
    s.dev.forget()  # so the next restore loads the blocks again
    s.restore(snap)
    s.contexts[0].chan.next_id += 5  # a test-driver object changed outside any call
    with pytest.raises(RuntimeError, match="the test driver's DriverChannel"):
        s.restore(snap)

    s = DeviceHarness("npu4")
    assert s.journal and s.journal_every == JOURNAL_VERIFY_EVERY and not s.verify_raises
    data = device_seeds("npu4")["job"]
    run_input(s, data, pin=len(data) // 2)
    assert s.pinned is not None and s.snaps
    snap = s.snaps[s.pinned]
    s.restore(snap)
    full, host = _full_state(s), _host_fields(s)
    s.restore(snap)  # (the save above marked its own state as the one the blocks hold)
    assert s.dev.clean is snap.fn.device
    s.dev.fw.state.time_offset_ns += 1
    s.journal_every = 1
    s.restore(snap)
    assert s.snap_stats["journal_misses"] == 1 and not s.journal and not s.fn.journal
    assert not s.snaps and _full_state(s) == full and _host_fields(s) == host
    # a finding; the change was planted by no input, so none replays it
    assert s.journal_miss is not None and s.journal_miss.data is None
    assert "no input since the last check shows it alone" in s.journal_miss.message
    s.dev.fw.state.time_offset_ns += 1  # journaling is off: every restore loads in full
    s.restore(snap)
    assert _full_state(s) == full and s.snap_stats["journal_misses"] == 1


def test_a_journal_miss_in_a_campaign_is_a_finding_with_a_replayable_input(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A planted unmarked change (the SMU's side effect also moves the management
    firmware's clock, while the journal marks only the SMU) met by the sparse check during
    a campaign is recorded as a finding: its signature, an input whose replay (run twice,
    every restore checked) shows the miss, and a trace naming the replay; without the
    plant the same input replays clean and the same campaign finds nothing."""
    seeds = device_seeds("npu4")

    def campaign() -> Target:
        t = Target("device", "npu4", tmp_path / "artifacts")
        t.session.journal_every = 8
        builtin_fuzz(t, 1e9, None, seeds, seed=3, max_execs=600)
        return t

    assert campaign().signatures == {}
    on_intr = SmuBlock.on_intr

    def leaky(self: SmuBlock, value: int) -> None:
        on_intr(self, value)
        fw = self.on_power_off.__self__.fw  # type: ignore[attr-defined]  # the SMU's device
        if fw is not None:
            fw.state.time_offset_ns += 1  # no mark for the firmware: the journal misses it

    monkeypatch.setattr(SmuBlock, "on_intr", leaky)
    t = Target("device", "npu4", tmp_path / "found")
    t.session.journal_every = 8
    builtin_fuzz(t, 1e9, None, seeds, seed=3, max_execs=600)
    assert ("harness", "journal_miss") in t.signatures, t.signatures
    assert t.session.snap_stats["journal_misses"] == 1 and not t.session.journal
    stem = Path(t.signatures[("harness", "journal_miss")])
    data = stem.with_suffix(".bin").read_bytes()
    note = re.search(r"--replay-journal \S+\.bin(?: --pin (\d+))?", stem.with_suffix(".trace").read_text())
    assert data and note is not None
    pin = int(note[1]) if note[1] else None
    h = DeviceHarness("npu4")
    miss = replay_journal(data, h, pin)
    assert miss is not None and "the device's device unlike the snapshot" in miss.message
    argv = ["--replay-journal", str(stem.with_suffix(".bin"))] + (["--pin", str(pin)] if pin is not None else [])
    assert atheris_main(argv) == 1
    monkeypatch.setattr(SmuBlock, "on_intr", on_intr)
    assert replay_journal(data, "npu4", pin) is None  # a new harness: its traps unplanted
    assert atheris_main(argv) == 0


def test_a_journaled_function_restore_skips_only_what_no_entry_changed() -> None:
    """PciFunction with journaling on: restoring the state saved last skips the firmware
    blocks while only plain stores ran; a trapped write, delayed work, a proxied op or a
    reset marks them changed, and the restore then loads them (docs/spec/device.md §4)."""
    s = DeviceHarness("npu4")
    s.run([Op("call", ("boot",))])
    fn, dev = s.fn, s.dev
    memory = s.snapshot().memory
    st = fn.save(keep=s._in_arena)
    assert dev.clean is st.device
    fn.mmio_write(0, 0, 1)  # no side effect: still clean
    assert dev.clean is st.device
    for change in (lambda: fn.mmio_write(*s.regs.loc("smu.intr"), 0), lambda: fn.reset(),
                   lambda: dev.schedule(0, "mailbox_send", 9, 9, 0, 0, b"") or fn.poll()):
        fn.restore(st, lambda ms: memory[(ms.pasid, ms.address)])
        assert dev.clean is st.device
        change()
        assert dev.clean is None


def test_the_checker_skips_the_blocks_checks_only_while_no_entry_ran() -> None:
    """After an op that entered no block since the blocks' checks last passed (the device's
    journal still names the state they passed in), the checker does not walk the channels
    and contexts again; once an entry ran it does, and a broken cursor is a finding."""
    s = DeviceHarness("npu4")
    s.run([Op("call", ("bring_up",)), Op("call", ("ctx_create", 0, -1, 1))])
    snap = s.snapshot()
    s.restore(snap)
    s.run([Op("r32", (0, 0))])  # the checks pass in the restored state
    assert s.checker._passed is s.dev.clean is snap.fn.device
    ch = s.dev.mailbox.channels[0]
    ch.x2i_head += 2  # unaligned, planted without an entry: the skipped checks miss it
    s.run([Op("r32", (0, 0))])
    s.dev.forget()  # as an entry that may change any block does
    with pytest.raises(InvariantViolation, match="cursors"):
        s.run([Op("r32", (0, 0))])
