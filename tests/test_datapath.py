"""The daemon's C job path (docs/spec/jobs.md §7) against the Python path.

Each case runs twice on fresh, identical in-process devices: the context's ring-register
writes go into a write log, as the shim's do, and the log is applied once by
:meth:`DataPath.apply` (C where it can) and once entry by entry through ``mmio_write`` (the
Python path), with interrupts held as the daemon holds them. The replies, the interrupts
and the complete saved state of the two functions (BARs, rings, counters, contexts, IOMMU
memory) must be equal, and the C path must have answered (or given back) what the case
says. Then the daemon: the switch, and the ``fast_*`` counters in its status.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import struct
import weakref
from collections.abc import Callable
from typing import Any

import pytest

from xdna_emu import kernels as K
from xdna_emu import protocol as P
from xdna_emu.datapath import DATAPATH_ENV, STAT_KEYS, DataPath, mode
from xdna_emu.fw.mailbox import MailboxChannel
from xdna_emu.fw.messages import (
    CMD_LIST_MAX,
    HEAP_DEV_ADDR,
    LAYOUTS,
    MSG_HEADER,
    MSG_ID_MAGIC,
    TOMBSTONE,
    Opcode,
    SlotType,
    Status,
    sz_ver,
)
from xdna_emu.iommu import DMA_READ, DMA_WRITE
from xdna_emu.pci.observer import Observer
from xdna_emu.testing.pyctx import CMD_LISTS, Bo, Cmd, PyClient, PyContext
from xdna_emu.testing.pydriver import PyDriver, make_test_device

_datapath = pytest.importorskip("xdna_emu._datapath")

MiB = 1 << 20
NOP = K.Desc(K.Kernel.NOP)
COPY = K.Desc(K.Kernel.COPY, K.DType.INT32, count=16)
HANG = K.Desc(K.Kernel.HANG)
FAIL = K.Desc(K.Kernel.FAIL)


class LoggedDriver(PyDriver):
    """The reference driver, with the writes to chosen registers logged instead of applied
    (the shim's write log) until :meth:`flush`."""

    def __init__(self, fast: bool, chip: str = "npu4") -> None:
        super().__init__(make_test_device(chip))
        self.stats: dict[str, int] = {}
        self.dp = DataPath(self.fn, self.stats, _datapath.ffi, _datapath.lib) if fast else None
        self.logged: set[int] = set()
        self.log: list[tuple[int, int, int]] = []

    def write_dev(self, addr: int, value: int) -> None:
        if addr in self.logged:
            self.log.append((*self.chip.dev_to_bar(addr), value))
        else:
            super().write_dev(addr, value)

    def flush(self) -> None:
        """Apply the log as the daemon's drain does: one batch, interrupts held."""
        ctrl = bytearray(P.CTRL_SIZE)
        for i, (bar, off, val) in enumerate(self.log):
            P.LOG_ENTRY.pack_into(ctrl, P.CTRL_OFF_ENTRY0 + i * P.LOG_ENTRY.size, bar, off, val, 0)
        n, self.log = len(self.log), []
        fn = self.fn
        fn.hold_irqs()
        try:
            tail = 0
            if self.dp is not None:
                tail = self.dp.apply(ctrl, 0, n, fn.mmio_write, None)  # type: ignore[arg-type]
            for i in range(tail, n):
                bar, off, val, _ = P.LOG_ENTRY.unpack_from(ctrl, P.CTRL_OFF_ENTRY0 + i * P.LOG_ENTRY.size)
                fn.mmio_write(bar, off, val, None)
        finally:
            fn.release_irqs()


class World:
    """One device, a client with a heap and a context whose ring writes are logged."""

    def __init__(self, fast: bool) -> None:
        self.d = d = LoggedDriver(fast)
        d.bring_up(async_events=False)
        self.c = PyClient(d, 1, heap_size=2 * MiB, chunk=MiB)
        self.ctx = PyContext(self.c)
        self.ctx.collect()  # the CONFIG_CU answer
        ch = self.ctx.chan
        d.logged = {ch.x2i_tail_reg, ch.i2x_head_reg}
        self.replies: list[tuple[int, int, bytes]] = []
        self.sent = 0
        #: more contexts whose ring writes are logged (and replies read) as the first's
        self.others: list[PyContext] = []

    def another(self, client: PyClient | None = None) -> PyContext:
        """A further context (of ``client``, default the first) logged like the first."""
        ctx = PyContext(client or self.c)
        ctx.collect()
        self.d.logged |= {ctx.chan.x2i_tail_reg, ctx.chan.i2x_head_reg}
        self.others.append(ctx)
        return ctx

    def drain(self) -> None:
        """Apply the log, read every reply (its i2x head write is logged too)."""
        self.d.flush()
        for ctx in (self.ctx, *self.others):
            for r in ctx.chan.drain():
                self.replies.append((r.id, r.opcode, r.payload))

    @property
    def chan(self) -> MailboxChannel:
        return self.d.device.mailbox.channels[1 + self.ctx.id]  # docs/spec/jobs.md §1

    def send_raw(self, pkt: bytes, tail_value: int | None = None) -> None:
        """Write ``pkt`` at the host's x2i tail and log the tail write (no checks: the
        case decides what is malformed)."""
        hc = self.ctx.chan
        tail = hc.x2i_tail
        if tail + len(pkt) > hc.x2i_size - 4:
            struct.pack_into("<I", hc.x2i, tail, TOMBSTONE)
            tail = 0
        hc.x2i[tail : tail + len(pkt)] = pkt
        hc.x2i_tail = tail + len(pkt)
        hc._write_reg(hc.x2i_tail_reg, hc.x2i_tail if tail_value is None else tail_value)  # noqa: SLF001

    def exec_msg(self, op: Opcode, inst: Bo, cu: int = 0, props: int = 0,
                 words: tuple[int, ...] = (), ctx: PyContext | None = None) -> int:
        """A single-exec message naming ``inst``, on ``ctx`` (default the first context)."""
        lay = LAYOUTS[op]
        if op == Opcode.EXEC_NPU:
            fields = [0, SlotType.PARTIAL_ELF, inst.addr, 0, 0, inst.size, 0, 0, props, cu]
        elif op == Opcode.EXEC_DPU:
            fields = [inst.addr, inst.size, props, cu]
        else:  # EXECUTE_BUFFER_CF: cu, then the instruction address words
            fields = [cu, inst.addr & 0xFFFFFFFF, inst.addr >> 32]
        n = len(lay.req.unpack(bytes(lay.req.size))) - len(fields)
        pad = list(words) + [0] * (n - len(words))
        return (ctx or self.ctx).chan.send(op, lay.req.pack(*fields, *pad[:n]))

    def outcome(self) -> tuple[Any, ...]:
        """Everything the two paths must agree on."""
        self.drain()
        self.d.flush()
        return self.replies, tuple(self.d.td.irqs), tuple(self.d.td.delivered), self.d.fn.save()


def _zero_inst(w: World) -> Bo:
    bo = w.c.alloc(256)
    return bo


def _chain(w: World, cmds: list[Cmd], op: Opcode | None = None) -> int:
    """Send a chain; every CMD_LISTS chains the log is applied (the cmd-list BOs are reused
    round robin, as the driver's are)."""
    w.sent += 1
    if w.sent % CMD_LISTS == 0:
        w.d.flush()
    return w.ctx.submit(cmds, op)


# -- the cases: (name, action, what the C path does: "fast", "fallback" or "refused") ------------
def nop_singles(w: World) -> None:
    for op in (Opcode.EXEC_NPU, Opcode.EXEC_DPU, Opcode.EXECUTE_BUFFER_CF):
        w.exec_msg(op, w.ctx.inst_bo(NOP))
        w.exec_msg(op, _zero_inst(w))


def nop_chains(w: World) -> None:
    zero = _zero_inst(w)
    _chain(w, [Cmd(NOP)] * 5)
    _chain(w, [Cmd(NOP, inst=zero), Cmd(NOP)])
    for stype in (SlotType.PARTIAL_ELF, SlotType.ELF, SlotType.NON_ELF, SlotType.PREEMPT):
        _chain(w, [Cmd(NOP, slot_type=stype)] * 2, Opcode.CHAIN_EXEC_NPU)
    _chain(w, [Cmd(NOP)] * 3, Opcode.CHAIN_EXEC_DPU)
    _chain(w, [Cmd(NOP)] * 3, Opcode.CHAIN_EXEC_BUFFER_CF)


def nops_then_i2x_heads(w: World) -> None:
    """Jobs, replies consumed, more jobs: i2x head writes interleave in the log."""
    for _ in range(3):
        for _ in range(4):
            _chain(w, [Cmd(NOP)])
        w.drain()


def ring_wraps(w: World) -> None:
    """Enough jobs, consumed as they go, that both rings wrap (TOMBSTONEs)."""
    for _ in range(300):
        _chain(w, [Cmd(NOP)])
        w.drain()
    assert w.ctx.chan.tx_wraps and w.ctx.chan.rx_wraps


def other_kernel(w: World) -> None:
    src, dst = w.c.alloc(64), w.c.alloc(64)
    _chain(w, [Cmd(NOP)])
    _chain(w, [Cmd(NOP), Cmd(COPY, [src, dst]), Cmd(NOP)])
    _chain(w, [Cmd(NOP)])


def hang_then_more(w: World) -> None:
    _chain(w, [Cmd(NOP)])
    _chain(w, [Cmd(HANG)])
    _chain(w, [Cmd(NOP)])  # held behind the hang


def unmapped_program(w: World) -> None:
    _chain(w, [Cmd(NOP)])
    _chain(w, [Cmd(NOP, inst=Bo(0x1234_0000_0000, 64, memoryview(bytearray(64))))])


def heap_past_the_end(w: World) -> None:
    end = HEAP_DEV_ADDR + w.c.heap_size
    _chain(w, [Cmd(NOP)])
    _chain(w, [Cmd(NOP, inst=Bo(end - 16, 64, memoryview(bytearray(64))))])


def program_write_only(w: World) -> None:
    """A program in a SHARE BO the device may not read: an IOMMU permission fault."""
    bo = w.c.share(4096, 0x5000_0000, perm=DMA_WRITE)
    bo.view[: K.DESC.size] = K.encode(NOP)
    _chain(w, [Cmd(NOP)])
    _chain(w, [Cmd(NOP, inst=bo)])


def no_such_cu(w: World) -> None:
    _chain(w, [Cmd(NOP, cu=3)])
    w.exec_msg(Opcode.EXEC_DPU, w.ctx.inst_bo(NOP), cu=9)


def nop_with_arguments(w: World) -> None:
    _chain(w, [Cmd(NOP, raw_words=[1, 2])])


def bad_descriptors(w: World) -> None:
    good = K.encode(NOP)
    for bad in (b"\x01" + good[1:], good[:4] + b"\x09" + good[5:],
                good[:12] + b"\x63" + good[13:], good[:8] + b"\x05" + good[9:]):
        _chain(w, [Cmd(NOP, inst=w.ctx.inst_bo(bad))])


def bad_slots(w: World) -> None:
    _chain(w, [Cmd(NOP, slot_type=9)], Opcode.CHAIN_EXEC_NPU)
    _chain(w, [Cmd(NOP, slot_type=SlotType.ELF, raw_words=[7])], Opcode.CHAIN_EXEC_NPU)
    w.ctx.submit([Cmd(NOP)] * 2, raw=w.ctx.slot(w.ctx.chain_opcode(), Cmd(NOP)))  # count past the list


def bad_chain_requests(w: World) -> None:
    lay = LAYOUTS[Opcode.CHAIN_EXEC_NPU]
    bo = w.ctx.cmd_lists[0]
    for addr, size, count in ((bo.addr, 64, 0), (bo.addr, 0, 1), (bo.addr, CMD_LIST_MAX + 4, 1),
                              (0x99_0000_0000, 64, 1)):
        w.ctx.chan.send(Opcode.CHAIN_EXEC_NPU, lay.req.pack(0, 0, addr, size, count))


def _pkt(op: int, payload: bytes, mid: int = MSG_ID_MAGIC | 7, total: int | None = None,
         szv: int | None = None) -> bytes:
    total = len(payload) if total is None else total
    return MSG_HEADER.pack(total, sz_ver(total) if szv is None else szv, mid, op) + payload


def _chain_payload(w: World) -> bytes:
    bo = w.ctx.cmd_lists[1]
    slot = w.ctx.slot(Opcode.CHAIN_EXEC_NPU, Cmd(NOP))
    bo.view[: len(slot)] = slot
    return LAYOUTS[Opcode.CHAIN_EXEC_NPU].req.pack(0, 0, bo.addr, len(slot), 1)


def malformed_id(w: World) -> None:
    _chain(w, [Cmd(NOP)])
    w.send_raw(_pkt(Opcode.CHAIN_EXEC_NPU, _chain_payload(w), mid=0x2200_0001))


def malformed_sz_ver(w: World) -> None:
    _chain(w, [Cmd(NOP)])
    p = _chain_payload(w)
    w.send_raw(_pkt(Opcode.CHAIN_EXEC_NPU, p, szv=sz_ver(len(p)) + 4))


def malformed_total(w: World) -> None:
    _chain(w, [Cmd(NOP)])
    p = _chain_payload(w)
    w.send_raw(_pkt(Opcode.CHAIN_EXEC_NPU, p + b"\0\0", total=len(p) + 2))


def malformed_tail(w: World) -> None:
    _chain(w, [Cmd(NOP)])
    w.send_raw(_pkt(Opcode.CHAIN_EXEC_NPU, _chain_payload(w)), tail_value=0x7FFFF)


def wrong_length(w: World) -> None:
    p = _chain_payload(w)
    w.send_raw(_pkt(Opcode.CHAIN_EXEC_NPU, p + bytes(4)))
    w.send_raw(_pkt(Opcode.EXEC_NPU, bytes(16)))


def other_opcodes(w: World) -> None:
    _chain(w, [Cmd(NOP)])
    w.send_raw(_pkt(0x7777, bytes(8)))
    w.send_raw(_pkt(Opcode.SYNC_BO, bytes(LAYOUTS[Opcode.SYNC_BO].req.size)))
    _chain(w, [Cmd(NOP)])


def bad_i2x_head(w: World) -> None:
    _chain(w, [Cmd(NOP)])
    w.ctx.chan._write_reg(w.ctx.chan.i2x_head_reg, 6)  # noqa: SLF001 - unaligned
    _chain(w, [Cmd(NOP)])


def i2x_full(w: World) -> None:
    """Jobs answered faster than the host reads: replies queue in the firmware."""
    for _ in range(400):
        _chain(w, [Cmd(NOP)])
        w.d.flush()
    assert w.chan.outq


def suspended(w: World) -> None:
    w.d.msg_ok(Opcode.SUSPEND, 0)
    _chain(w, [Cmd(NOP)])
    w.d.flush()
    w.d.msg_ok(Opcode.RESUME, 0)
    _chain(w, [Cmd(NOP)])


def armed_then_suspended(w: World) -> None:
    """The channel was armed (a job ran) before the firmware suspends: the arming follows."""
    _chain(w, [Cmd(NOP)])
    w.d.flush()
    suspended(w)


def armed_then_observed(w: World) -> None:
    """The channel was armed before an observer came: the observer sees every write."""
    _chain(w, [Cmd(NOP)])
    w.d.flush()
    observed(w)


def destroyed(w: World) -> None:
    _chain(w, [Cmd(NOP)])
    w.d.flush()
    assert w.ctx.destroy() == Status.SUCCESS
    _chain(w, [Cmd(NOP)])


def destroyed_in_the_same_log(w: World) -> None:
    """A DESTROY_CONTEXT and then a job of that context in one drain's log (the channel was
    armed before it): the job meets no channel armed from older state. Its channel is gone
    when its entry is applied, so neither path answers it."""
    _chain(w, [Cmd(NOP)])
    w.drain()
    d, mgmt = w.d, w.d.mgmt
    assert mgmt is not None
    d.logged.add(mgmt.x2i_tail_reg)
    mgmt.send(Opcode.DESTROY_CONTEXT, LAYOUTS[Opcode.DESTROY_CONTEXT].req.pack(w.ctx.id))
    w.ctx.submit([Cmd(NOP)])
    assert [e[1] for e in d.log][-2:] == [d.chip.dev_to_bar(mgmt.x2i_tail_reg)[1],
                                     d.chip.dev_to_bar(w.ctx.chan.x2i_tail_reg)[1]]
    d.flush()
    d.logged.discard(mgmt.x2i_tail_reg)
    got = mgmt.recv_one()
    assert got is not None and got.payload[:4] == bytes(4)  # SUCCESS
    assert w.ctx.id not in d.device.ctx.contexts


def fw_log_on(w: World) -> None:
    ring = bytearray(0x4000)
    w.d.iommu.map(0, 0x7000_0000, len(ring), DMA_READ | DMA_WRITE, None, mem=ring)
    w.d.msg_ok(Opcode.CONFIG_FW_LOG, 0x7000_0000, len(ring), *(0,) * 5)
    _chain(w, [Cmd(NOP)])


def fw_trace_on(w: World) -> None:
    ring = bytearray(0x4000)
    w.d.iommu.map(0, 0x7100_0000, len(ring), DMA_READ | DMA_WRITE, None, mem=ring)
    w.d.msg_ok(Opcode.START_FW_TRACE, 0xFFFFFFFF, 1, 0, 0x7100_0000, len(ring))
    _chain(w, [Cmd(NOP)])


class _PassOn:
    """A fault interposer that changes nothing (docs/spec/device.md §5)."""

    def send(self, ch: MailboxChannel, msg_id: int, opcode: int, payload: bytes) -> None:
        ch.transmit(msg_id, opcode, payload)

    def allow_irq(self, vector: int) -> bool:
        return True


def interposed(w: World) -> None:
    w.d.device.mailbox.interposer = _PassOn()
    _chain(w, [Cmd(NOP)])


class _Writes(Observer):
    def __init__(self) -> None:
        self.n = 0

    def before_write(self, bar: int, offset: int, value: int) -> Any:
        self.n += 1


def observed(w: World) -> None:
    w.d.fn.observe(_Writes())
    _chain(w, [Cmd(NOP)])


def unmapped_between(w: World) -> None:
    """A mapping goes away between batches: C's copy of the IOMMU follows."""
    bo = w.c.share(4096, 0x5000_0000)
    bo.view[: K.DESC.size] = K.encode(NOP)
    _chain(w, [Cmd(NOP, inst=bo)])
    w.d.flush()
    w.d.fn.dma_unmap(1, 0x5000_0000, 4096)
    _chain(w, [Cmd(NOP, inst=bo)])


def restored(w: World) -> None:
    """A snapshot put back between batches (new channel and context objects, new IOMMU
    mappings over the same heap): the C path follows the restored state."""
    _chain(w, [Cmd(NOP)] * 2)
    w.drain()
    heap, pasid, va = w.c.heap, w.c.pasid, w.c.heap_va
    w.d.fn.restore(w.d.fn.save(), lambda ms: heap if (ms.pasid, ms.address) == (pasid, va)
                   else bytearray(ms.size))
    _chain(w, [Cmd(NOP)] * 2)


def two_pasids_past_the_map_cache(w: World) -> None:
    """Two channels of two PASIDs in one round while the map cache is over its bound: the
    second arming must not free the table of the first, still armed."""
    ctx2 = w.another(PyClient(w.d, 2, heap_size=2 * MiB, chunk=MiB))
    if w.d.dp is not None:
        for i in range(256):  # the first arming fills it, the second is past the bound
            w.d.dp._maps[10_000 + i] = (None, -1, None, [])  # noqa: SLF001
    w.ctx.submit([Cmd(NOP)])
    ctx2.submit([Cmd(NOP)])
    w.ctx.submit([Cmd(NOP)])


def chunks_changed_in_place(w: World) -> None:
    """The context's chunk list changed in place between batches (its heap now at an
    unmapped VA): C must translate through the new chunks, not a cached table."""
    _chain(w, [Cmd(NOP)])
    w.drain()
    chunks = w.d.device.ctx.contexts[w.ctx.id].chunks
    chunks[0] = dataclasses.replace(chunks[0], va=chunks[0].va + (1 << 44))
    # a change by hand says so as the model's own do (the doorbell thread's arming follows
    # the engine's generation, docs/spec/jobs.md §7); the drain's cache compares the chunks
    w.d.device.mailbox.gen += 1
    _chain(w, [Cmd(NOP)])


def two_channels_first_reply_order(w: World) -> None:
    """One round [channel 1's i2x head, a job on channel 2, a job on channel 1]: the
    vectors are raised in the order of the first replies (2, then 1), not of arming."""
    ctx2 = w.another()
    w.ctx.submit([Cmd(NOP)])
    w.drain()  # its i2x head write is logged, not applied
    ctx2.submit([Cmd(NOP)])
    w.ctx.submit([Cmd(NOP)])


CASES: list[tuple[Callable[[World], None], str]] = [
    (nop_singles, "fast"), (nop_chains, "fast"), (nops_then_i2x_heads, "fast"),
    (ring_wraps, "fast"), (other_kernel, "fallback"), (hang_then_more, "fallback"),
    (unmapped_program, "fallback"), (heap_past_the_end, "fallback"),
    (program_write_only, "fallback"), (no_such_cu, "fallback"),
    (nop_with_arguments, "fallback"), (bad_descriptors, "fallback"), (bad_slots, "fallback"),
    (bad_chain_requests, "fallback"), (malformed_id, "fallback"),
    (malformed_sz_ver, "fallback"), (malformed_total, "fallback"),
    (malformed_tail, "fallback"), (wrong_length, "fallback"), (other_opcodes, "fallback"),
    (bad_i2x_head, "fallback"), (i2x_full, "fallback"), (suspended, "refused"),
    (destroyed, "refused"), (destroyed_in_the_same_log, "refused"), (fw_log_on, "refused"), (fw_trace_on, "refused"), (interposed, "refused"),
    (observed, "refused"), (armed_then_suspended, "refused"), (armed_then_observed, "refused"),
    (unmapped_between, "fallback"), (restored, "fast"),
    (two_pasids_past_the_map_cache, "fast"), (chunks_changed_in_place, "fallback"),
    (two_channels_first_reply_order, "fast"),
]  # fmt: skip


def _assert_same(c_out: tuple[Any, ...], py_out: tuple[Any, ...]) -> None:
    """The two paths' :meth:`World.outcome` are equal, and there was something to compare."""
    assert c_out[0] == py_out[0], "replies differ"
    assert c_out[1:3] == py_out[1:3], "interrupts differ"
    assert c_out[3] == py_out[3], "saved states differ"
    assert c_out[0], "no reply at all"


@pytest.mark.parametrize(("case", "kind"), CASES, ids=[c.__name__ for c, _ in CASES])
def test_c_and_python_paths_agree(case: Callable[[World], None], kind: str) -> None:
    runs = []
    for fast in (True, False):
        w = World(fast)
        case(w)
        runs.append((w.outcome(), w.d.stats))
    (c_out, st), (py_out, _) = runs
    _assert_same(c_out, py_out)
    if kind == "fast":
        assert st["fast_jobs"] == len(c_out[0]) and not st["fast_fallbacks"]
    elif kind == "fallback":  # C looked at a message and gave it back
        assert st["fast_fallbacks"]
    else:
        assert st["fast_refused"]


def _watch_tables(dp: DataPath) -> None:
    """Weak references to every map table the C path is handed; ``xdp_drain`` asserts
    that those of the armed channels are alive when it is called."""
    refs: dict[int, weakref.ref] = {}
    real_map, lib = dp._map_table, dp.lib  # noqa: SLF001

    def map_table(pasid: int) -> tuple[Any, int]:
        table, n = real_map(pasid)
        refs[pasid] = weakref.ref(table)
        return table, n

    class Lib:
        def __getattr__(self, name: str) -> Any:
            return getattr(lib, name)

        def xdp_drain(self, *args: Any) -> int:
            for armed in dp._armed.values():  # noqa: SLF001
                assert refs[armed[1].pasid]() is not None, "an armed table was freed"
            return lib.xdp_drain(*args)

    dp._map_table = map_table  # type: ignore[method-assign]  # noqa: SLF001
    dp.lib = Lib()


def test_an_armed_channels_map_table_outlives_the_cache_eviction() -> None:
    """C reads an armed channel's IOMMU table through a raw pointer: evicting the cache
    while it is armed must not free it (a use-after-free otherwise)."""
    w = World(True)
    assert w.d.dp is not None
    _watch_tables(w.d.dp)
    two_pasids_past_the_map_cache(w)
    out = w.outcome()
    assert len(out[0]) == 3 and w.d.stats["fast_jobs"] == 3


def _entry_flipped_after_c_read_it(w: World) -> None:
    """Log [tail write (job 1), x2i head register write, tail write (job 2)]; in the C world
    a racing client rewrites entry 1 into a copy of entry 0 right after C stopped at it."""
    w.ctx.submit([Cmd(NOP)])
    tail_entry = w.d.log[0]
    w.d.log.append((*w.d.chip.dev_to_bar(w.chan.x2i_head_reg), 0))
    w.ctx.submit([Cmd(NOP)])
    dp = w.d.dp
    if dp is None:
        return
    lib, ffi = dp.lib, dp.ffi

    class Lib:
        def __getattr__(self, name: str) -> Any:
            return getattr(lib, name)

        def xdp_drain(self, *args: Any) -> int:
            tail = lib.xdp_drain(*args)
            if tail == 1:
                entry = args[2] + (tail % args[3]) * P.LOG_ENTRY.size
                ffi.buffer(entry, P.LOG_ENTRY.size)[:] = P.LOG_ENTRY.pack(*tail_entry, 0)
            return tail

    dp.lib = Lib()


def test_an_entry_rewritten_after_c_read_it_is_applied_as_c_read_it() -> None:
    """Python applies the copy of the entry C stopped at, not a second read of the shared
    log, and never re-arms an armed channel: each message is answered once."""
    outs = []
    for fast in (True, False):
        w = World(fast)
        _entry_flipped_after_c_read_it(w)
        outs.append((w.outcome(), w.d.device.ctx.contexts[w.ctx.id].submitted))
    (c_out, c_sub), (py_out, py_sub) = outs
    assert len(c_out[0]) == 2 and c_sub == py_sub == 2
    assert c_out[0] == py_out[0] and c_out[1:3] == py_out[1:3] and c_out[3] == py_out[3]


def test_an_exception_in_the_drain_gives_the_armed_channels_back() -> None:
    """An exception inside the C loop (here: arming a second channel) still syncs the
    armed ones: cursors and counts are back in Python, nothing stays armed."""
    w = World(True)
    dp = w.d.dp
    assert dp is not None
    ctx2 = w.another()
    w.ctx.submit([Cmd(NOP)])
    ctx2.submit([Cmd(NOP)])
    real = dp._arm  # noqa: SLF001

    def arm(idx: int) -> bool:
        if dp._armed:  # noqa: SLF001
            raise RuntimeError("arming failed")
        return real(idx)

    dp._arm = arm  # type: ignore[method-assign]  # noqa: SLF001
    with pytest.raises(RuntimeError, match="arming failed"):
        w.d.flush()
    assert not dp._armed and not any(c.armed for c in dp.chans)  # noqa: SLF001
    assert w.d.stats["fast_jobs"] == 1 and w.chan.x2i_head == w.ctx.chan.x2i_tail


def test_debug_logging_turns_the_c_path_off(caplog: pytest.LogCaptureFixture) -> None:
    """The per-message debug lines (and the trace recorder fed by them) need Python."""
    w = World(True)
    with caplog.at_level(logging.DEBUG, logger="xdna_emu.fw.mailbox"):
        _chain(w, [Cmd(NOP)])
        out = w.outcome()
    assert len(out[0]) == 1 and w.d.stats["fast_refused"] and not w.d.stats["fast_jobs"]
    assert any("mbox rx" in r.getMessage() for r in caplog.records)


def test_the_ops_c_answers_are_generated_from_the_firmwares_op_sets() -> None:
    """C's list of ops (and each one's bit and chain flag) comes from the Python sets."""
    from xdna_emu import kernelgen
    from xdna_emu.fw.ctx import CHAIN_OPS, SINGLE_OPS

    assert set(kernelgen.FAST_OPS) == CHAIN_OPS | SINGLE_OPS
    text = kernelgen.render()
    for bit, op in enumerate(kernelgen.FAST_OPS):
        assert f"X({op.name}, {bit}, {int(op in CHAIN_OPS)})" in text


def test_mode_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DATAPATH_ENV, raising=False)
    assert mode() == "c"
    monkeypatch.setenv(DATAPATH_ENV, "python")
    assert mode() == "python"
    monkeypatch.setenv(DATAPATH_ENV, "rust")
    with pytest.raises(ValueError, match=DATAPATH_ENV):
        mode()


def test_aie4_has_no_c_path() -> None:
    from xdna_emu.pci.function import PciFunction

    assert DataPath.create(PciFunction("npu3"), {}) is None


@pytest.mark.parametrize("xdna_datapath", ["c", "python"])
def test_daemon_status_counts_the_c_path(xdna_datapath: str, xdna_emulator: Any,
                                         xdna_firmware_dir: Any) -> None:
    """The daemon takes the C path only when asked to, and says so in its status."""
    from xdna_emu.control import ControlClient
    from xdna_emu.runtime import Device

    with Device.open(xdna_emulator.socket, firmware_path=xdna_firmware_dir) as dev:
        ctx = dev.context()
        cmds = [ctx.command("nop") for _ in range(3)]
        for c in cmds:
            ctx.submit(c).wait(5)
        ctx.chain(cmds).wait(5)
        with ControlClient(xdna_emulator.socket) as cc:
            cc.version()
            stats = cc.status()["stats"]
    if xdna_datapath == "c":
        assert stats["fast_jobs"] >= 4 and stats["fast_cmds"] >= 6
    else:
        assert not any(k in stats for k in STAT_KEYS)


@pytest.mark.parametrize("seed", range(16))
def test_random_ring_bytes_give_the_same_outcome_both_ways(seed: int) -> None:
    """Random single execs (nop or all-zero programs, odd CU indexes and property counts),
    some with random bytes of their header or payload overwritten in the ring before the
    drain, applied in random batches: both paths end in the same replies, interrupts and
    saved state (a differential check beyond the hand-written cases)."""
    outs, stats = [], {}
    for fast in (True, False):
        rng = random.Random(seed)
        w = World(fast)
        progs = [_zero_inst(w), w.ctx.inst_bo(NOP)]
        for _ in range(rng.randrange(5, 40)):
            hc = w.ctx.chan
            start = hc.x2i_tail
            op = rng.choice([Opcode.EXEC_NPU, Opcode.EXEC_DPU, Opcode.EXECUTE_BUFFER_CF])
            try:
                w.exec_msg(op, rng.choice(progs), cu=rng.choice([0, 0, 0, 1, 7]),
                           props=rng.choice([0, 0, 1, 9]))
            except Exception as exc:  # noqa: BLE001 - a full or broken ring: the same both ways
                outs.append(type(exc).__name__)
                break
            end = hc.x2i_tail
            if end > start and rng.random() < 0.4:
                for _ in range(rng.randrange(1, 4)):
                    hc.x2i[rng.randrange(start, end)] = rng.randrange(256)
            if rng.random() < 0.3:
                w.drain()
        outs.append(w.outcome())
        if fast:
            stats = dict(w.d.stats)
    half = len(outs) // 2
    assert outs[:half] == outs[half:]
    assert stats.get("fast_jobs", 0) + stats.get("fast_fallbacks", 0) > 0, stats


def _overwrite(rng: random.Random, ring: Any, start: int, end: int) -> None:
    """A few random bytes of the message just written at [start, end) of an x2i ring."""
    if end > start:
        for _ in range(rng.randrange(1, 4)):
            ring[rng.randrange(start, end)] = rng.randrange(256)


def _random_traffic(w: World, rng: random.Random) -> None:
    """Random single execs and chains on two or three contexts (docs/spec/jobs.md §7)."""
    ctxs = [w.ctx] + [w.another() for _ in range(rng.randrange(1, 3))]
    zero = _zero_inst(w)
    src, dst = w.c.alloc(64), w.c.alloc(64)
    kinds = [Cmd(NOP)] * 4 + [Cmd(NOP, inst=zero)] * 2 + [Cmd(COPY, [src, dst]),
                                                          Cmd(NOP, raw_words=[1, 2])]
    pending = 0  # chains since the log was last applied: a cmd-list BO is not reused before
    for _ in range(rng.randrange(10, 40)):
        ctx = rng.choice(ctxs)
        hc = ctx.chan
        start = hc.x2i_tail
        if rng.random() < 0.3:
            op = rng.choice([Opcode.EXEC_NPU, Opcode.EXEC_DPU, Opcode.EXECUTE_BUFFER_CF])
            prog = rng.choice([zero, ctx.inst_bo(NOP), ctx.inst_bo(NOP), ctx.inst_bo(FAIL)])
            w.exec_msg(op, prog, cu=rng.choice([0, 0, 0, 1]), props=rng.choice([0, 0, 1]),
                       ctx=ctx)
        else:
            cmds = [rng.choice(kinds) for _ in range(rng.randrange(1, 6))]
            if rng.random() < 0.3:  # a failing command at a random position
                cmds[rng.randrange(len(cmds))] = Cmd(FAIL)
            if pending == CMD_LISTS - 1:
                w.d.flush()
                pending = 0
            ctx.submit(cmds, rng.choice([None, None, Opcode.CHAIN_EXEC_NPU,
                                         Opcode.CHAIN_EXEC_DPU, Opcode.CHAIN_EXEC_BUFFER_CF]))
            pending += 1
        if hc.x2i_tail > start and rng.random() < 0.1:
            _overwrite(rng, hc.x2i, start, hc.x2i_tail)
        if rng.random() < 0.3:
            w.drain()
            pending = 0


@pytest.mark.parametrize("seed", range(20))
def test_random_chains_on_several_channels_give_the_same_outcome_both_ways(seed: int) -> None:
    """Random mixes of single execs and chains (nop, all-zero, copy, argument-carrying and
    failing commands, a failing one at a random position) on two or three channels, some
    messages with ring bytes overwritten before the drain, applied in random batches: both
    paths end in the same replies, interrupts and saved state."""
    outs, stats = [], {}
    for fast in (True, False):
        w = World(fast)
        _random_traffic(w, random.Random(seed))
        outs.append(w.outcome())
        if fast:
            stats = dict(w.d.stats)
    _assert_same(*outs)
    assert stats["fast_jobs"] and stats["fast_fallbacks"], stats  # C answered and gave back
