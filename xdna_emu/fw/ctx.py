"""Hardware contexts, host buffers and jobs of the emulated AIE2 firmware (docs/spec/jobs.md).

A :class:`ContextFirmware` lives as long as one boot of the management firmware. It adds
the context opcodes to the mgmt table (CREATE/DESTROY_CONTEXT, MAP/ADD_HOST_BUFFER,
GET_APP_HEALTH), opens one user channel per context and runs the jobs sent there with the
reference kernels of :mod:`xdna_emu.kernels`.

Every device address a job names is resolved by :meth:`ContextFirmware.translate`: inside
the context's mapped heap chunks it is (context PASID, heap VA), otherwise an SVA address
in the context PASID; then ``Iommu.translate``. Jobs run synchronously when their message
is consumed. A context answers strictly in order: a *hang* command, a firmware suspend,
hold the message and everything queued behind it on that channel only; other contexts
keep running. A hung context is released by DESTROY_CONTEXT or a firmware stop.

Session hooks for the daemon (:meth:`proxy`, :meth:`release_pasid`, :meth:`context_count`)
run mgmt ops through the very same dispatch as the mgmt ring.
"""

from __future__ import annotations

import errno
import logging
import struct
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

from .. import kernels
from ..iommu import DMA_READ, DMA_WRITE, IommuFault
from .mailbox import MailboxChannel, Message
from .messages import (
    AIE_ERROR_ENTRY,
    APP_HEALTH,
    APP_HEALTH_SIZE,
    ASYNC_EVENT_HDR,
    CMD_LIST_MAX,
    COL_STATUS,
    CONFIG_CU_MAX,
    DEBUG_BO_MIN,
    DEBUG_MARKER,
    DEBUG_MARKER_MAGIC,
    FATAL_ERROR_INFO,
    HEAP_DEV_ADDR,
    KERNEL_OP_TXN,
    LAYOUTS,
    MESSAGES,
    NO_CONTEXT,
    SLOT_CF,
    SLOT_DPU,
    SLOT_NPU,
    STATUS_ONLY,
    TELEMETRY_CTX,
    TELEMETRY_HEALTH,
    TELEMETRY_VERSION,
    TXN_OP_NONE,
    AieModule,
    AsyncEventType,
    ColState,
    CoreStatus,
    FatalType,
    FwLogLevel,
    FwTraceCategory,
    FwTraceEvent,
    Opcode,
    SlotType,
    Status,
    TelemetryType,
)
from .mgmt import MgmtFirmware, status_resp

log = logging.getLogger(__name__)
_U32 = struct.Struct("<I")

PAGE = 0x1000
HEAP_MAX = 1 << 32  # emulator limit on a context's mapped heap (sum of chunks)
ARG_MAX = 1 << 32  # emulator limit on one kernel buffer argument (larger: invalid instruction)
GEMM_WORK_MAX = 1 << 30  # emulator limit on m*n*k: a daemon must not stall for minutes
APP_HEALTH_VERSION = (1, 0)  # emulator-chosen report version

#: Ops a client session may proxy (docs/spec/jobs.md §1); the rest are driver-only.
PROXY_OPS = frozenset({
    Opcode.CREATE_CONTEXT, Opcode.DESTROY_CONTEXT, Opcode.MAP_HOST_BUFFER,
    Opcode.ADD_HOST_BUFFER, Opcode.GET_APP_HEALTH, Opcode.GET_FIRMWARE_VERSION,
    Opcode.QUERY_AIE_VERSION, Opcode.QUERY_AIE_TILE_INFO, Opcode.GET_RUNTIME_CONFIG,
    Opcode.GET_PROTOCOL_VERSION, Opcode.QUERY_COL_STATUS, Opcode.GET_TELEMETRY,
})  # fmt: skip
#: Mgmt ops whose first request word is a context id (ownership checked by proxy()).
CTX_NAMED_OPS = frozenset({Opcode.DESTROY_CONTEXT, Opcode.MAP_HOST_BUFFER,
                           Opcode.ADD_HOST_BUFFER, Opcode.GET_APP_HEALTH})
CHAIN_OPS = frozenset({Opcode.CHAIN_EXEC_NPU, Opcode.CHAIN_EXEC_DPU, Opcode.CHAIN_EXEC_BUFFER_CF})
SINGLE_OPS = frozenset({Opcode.EXEC_NPU, Opcode.EXEC_DPU, Opcode.EXECUTE_BUFFER_CF})
EXEC_OPS = CHAIN_OPS | SINGLE_OPS
USER_OPS = EXEC_OPS | {Opcode.CONFIG_CU, Opcode.SYNC_BO, Opcode.CONFIG_DEBUG_BO}
#: Feature gate of each user op that has one (chip [features] names).
USER_GATES = {Opcode.EXEC_NPU: "NPU_COMMAND"}  # others are gated by their own name
#: Opcode by wire value (a dict lookup: the job path meets one per message)
_OPCODES: dict[int, Opcode] = {int(o): o for o in Opcode}
#: Slot header of each chain op (the CF chain's is SLOT_CF)
_SLOT_HDR = {Opcode.CHAIN_EXEC_NPU: SLOT_NPU, Opcode.CHAIN_EXEC_DPU: SLOT_DPU}
_INVALID = (Status.APP_ERT_INVALID_INSTRUCTION, Status.APP_ERT_INVALID_INSTRUCTION)
_WORD_STRUCTS: dict[int, struct.Struct] = {}


def _words(n: int) -> struct.Struct:
    """The compiled format of ``n`` argument words (host-chosen counts: kept while few)."""
    s = _WORD_STRUCTS.get(n)
    if s is None:
        s = struct.Struct(f"<{n}I")
        if len(_WORD_STRUCTS) < 256:
            _WORD_STRUCTS[n] = s
    return s
_DONE = (Status.SUCCESS, 0)

# fatal_error_info.fatal_type, emulator-defined (docs/spec/messages.md)
FATAL_NONE, FATAL_HANG, FATAL_CMD_ERROR, FATAL_FAULT = (
    int(t) for t in (FatalType.NONE, FatalType.HANG, FatalType.CMD_ERROR, FatalType.FAULT))


class _Invalid(Exception):
    """A command the firmware rejects as an invalid instruction."""


class _Hang(Exception):
    """The command never finishes."""


@dataclass
class HostChunk:
    """One MAP/ADD_HOST_BUFFER chunk: heap device range -> VA in the context PASID."""

    dev: int
    va: int
    size: int


@dataclass(slots=True)
class Command:
    """One command decoded from a slot or a single-exec message."""

    inst_addr: int
    inst_size: int
    words: list[int]  # buffer-argument words (lo, hi pairs)
    exact: bool = True  # arg word count must equal 2 * nargs (slots); else a prefix is used
    elf: bool = False  # ELF form: the buffer arguments follow the descriptor (jobs.md §5)
    slot_type: int = 0  # SlotType of a slot_npu, else 0
    save: tuple[int, int] = (0, 0)  # preempt slot: save buffer (address, size)
    restore: tuple[int, int] = (0, 0)  # preempt slot: restore buffer (address, size)
    cu: int = -1  # the cu_idx it names (-1: none, an ELF slot); checked against CONFIG_CU


@dataclass
class HwContext:
    id: int
    pasid: int
    priority: int
    start_col: int
    num_col: int
    msix: int
    chan: MailboxChannel | None = None
    chunks: list[HostChunk] = field(default_factory=list)
    cus: list[int] = field(default_factory=list)
    queue: deque[Message] = field(default_factory=deque)
    hung: bool = False
    submitted: int = 0
    completed: int = 0
    failed: int = 0
    cmds_done: int = 0
    cur_idx: int = 0  # index in its chain of the command running / last run
    cur_kernel: int = 0
    fatal: int = FATAL_NONE
    last_status: int = 0
    last_cmd_status: int = 0
    last_fail_idx: int = 0
    last_op: int = 0  # opcode of the last exec message
    last_slot: int = 0  # slot type of the last slot_npu run (0: other slot kinds)
    fault_kernel: int = 0  # kernel number of the command whose DMA faulted
    fault_addr: int = 0  # the device address that faulted
    dbg_addr: int = 0  # the registered debug BO (device address; 0: none)
    dbg_size: int = 0
    dbg_seq: int = 0  # markers written into it

    @property
    def heap_end(self) -> int:
        return HEAP_DEV_ADDR + sum(c.size for c in self.chunks)

    def status(self) -> dict:
        return {
            "id": self.id, "pasid": self.pasid, "priority": self.priority,
            "start_col": self.start_col, "num_col": self.num_col, "msix": self.msix,
            "channel": self.chan.index if self.chan else None,
            "state": "hung" if self.hung else "ok", "queued": len(self.queue),
            "heap": [{"dev": c.dev, "va": c.va, "size": c.size} for c in self.chunks],
            "submitted": self.submitted, "completed": self.completed, "failed": self.failed,
            "last_op": self.last_op, "last_slot": self.last_slot, "cus": len(self.cus),
        }  # fmt: skip


@dataclass(frozen=True)
class HwContextState:
    """Saved state of one context: every :class:`HwContext` field as plain data, its
    channel by index and its held messages as (opcode, id, payload)."""

    id: int
    pasid: int
    priority: int
    start_col: int
    num_col: int
    msix: int
    chan: int | None
    chunks: tuple[tuple[int, int, int], ...]
    cus: tuple[int, ...]
    queue: tuple[tuple[int, int, bytes], ...]
    hung: bool
    submitted: int
    completed: int
    failed: int
    cmds_done: int
    cur_idx: int
    cur_kernel: int
    fatal: int
    last_status: int
    last_cmd_status: int
    last_fail_idx: int
    last_op: int
    last_slot: int
    fault_kernel: int
    fault_addr: int
    dbg_addr: int
    dbg_size: int
    dbg_seq: int


@dataclass(frozen=True)
class CtxFwState:
    VERSION: ClassVar[int] = 1
    contexts: tuple[HwContextState, ...]


#: HwContext fields saved as they are (ints and bools)
_PLAIN_FIELDS = tuple(f.name for f in fields(HwContextState)
                      if f.name not in ("chan", "chunks", "cus", "queue"))


class ProxyChannel:
    """Stands in for the mgmt channel when a client session's op is proxied: it keeps the
    reply instead of writing it to a ring, and names the caller's PASID."""

    index = -1
    name = "proxy"

    def __init__(self, pasid: int) -> None:
        self.pasid = pasid
        self.resp: bytes | None = None

    def reply(self, msg: Message, payload: bytes) -> None:
        self.resp = payload

    @classmethod
    def answer(cls, fw: Any, pasid: int, opcode: int, payload: bytes) -> bytes:
        """Run one proxied op through ``fw``'s dispatcher and return its reply; an op the
        firmware would leave unanswered is EINVAL for the client (docs/spec/jobs.md §1)."""
        chan = cls(pasid)
        fw.dispatch(chan, Message(opcode, 0, payload))
        if chan.resp is None:
            raise OSError(errno.EINVAL, f"opcode {opcode:#x} would not be answered")
        return chan.resp


class ContextFirmware:
    """The context/job half of one firmware boot."""

    def __init__(self, fw: MgmtFirmware) -> None:
        self.fw, self.chip, self.iommu, self.stats = fw, fw.chip, fw.iommu, fw.stats
        for key in ("jobs_completed", "jobs_failed", "iommu_faults", "unknown_ops",
                    "contexts_destroyed"):
            self.stats.setdefault(key, 0)
        self.contexts: dict[int, HwContext] = {}
        lim = self.chip.limits
        self.hwctx_limit = lim.hwctx_limit
        self.first_col = lim.first_col
        self.temporal_only = lim.temporal_only
        self.cols = self.chip.cols
        #: (opcode, protocol) -> offered: the feature gate of each user op, decided once
        self._gates: dict[tuple[Opcode, tuple[int, int]], bool] = {}
        for opcode, fn in ((Opcode.CREATE_CONTEXT, self._create),
                           (Opcode.DESTROY_CONTEXT, self._destroy),
                           (Opcode.MAP_HOST_BUFFER, self._map_host),
                           (Opcode.ADD_HOST_BUFFER, self._add_host),
                           (Opcode.GET_APP_HEALTH, self._app_health),
                           (Opcode.QUERY_COL_STATUS, self._col_status),
                           (Opcode.GET_TELEMETRY, self._telemetry)):
            fw.register(opcode, LAYOUTS[opcode], fn)
        resume = fw.ops.get(Opcode.RESUME)
        if resume is not None:  # held user-channel work restarts after RESUME
            fw.register(Opcode.RESUME, resume.layout, self._wrap_resume(resume.fn),
                        resume.when_suspended)

    # -- address translation ---------------------------------------------------------------
    def resolve(self, ctx: HwContext, addr: int, size: int) -> tuple[int, int]:
        """A job's device address -> (PASID, address) for the IOMMU; heap first, else SVA."""
        if ctx.chunks and HEAP_DEV_ADDR <= addr:  # the chunks tile [HEAP_DEV_ADDR, heap_end)
            end = addr + max(size, 0)
            for i, c in enumerate(ctx.chunks):
                if c.dev <= addr < c.dev + c.size:
                    va = c.va + (addr - c.dev)
                    if end <= c.dev + c.size:  # inside this chunk: the common case
                        return ctx.pasid, va
                    nxt = c
                    for d in ctx.chunks[i + 1:]:  # the range may run into later chunks
                        if end <= nxt.dev + nxt.size:
                            break
                        if d.va != nxt.va + nxt.size:
                            raise IommuFault(ctx.pasid, addr, size, "heap range not contiguous in VA")
                        nxt = d
                    if end > nxt.dev + nxt.size:
                        raise IommuFault(ctx.pasid, addr, size, "crosses the end of the heap")
                    return ctx.pasid, va
        return ctx.pasid, addr

    def translate(self, ctx: HwContext, addr: int, size: int, perm: int = DMA_READ) -> memoryview:
        """The one way a job reaches memory; raises IommuFault."""
        pasid, a = self.resolve(ctx, addr, size)
        return self.iommu.translate(a, size, pasid, perm)

    def _fault(self, ctx: HwContext, exc: IommuFault) -> None:
        self.stats["iommu_faults"] += 1
        log.warning("context %d: %s", ctx.id, exc)
        self.fw.fw_log(FwLogLevel.ERROR, f"context {ctx.id}: DMA fault at {exc.addr:#x} ({exc.why})")
        self.fw.fw_trace(FwTraceCategory.ERROR, FwTraceEvent.FAULT, ctx.id, exc.addr)

    def _stall(self, ctx: HwContext, exc: IommuFault) -> None:
        """A job's DMA faulted: logged and counted, nothing touched, and the job stalls as
        on silicon (the caller returns None: a hang TDR ends); docs/spec/jobs.md §2."""
        self._fault(ctx, exc)
        ctx.fatal, ctx.fault_addr = FATAL_FAULT, exc.addr
        ctx.fault_kernel, ctx.cur_kernel = ctx.cur_kernel, TXN_OP_NONE

    # -- mgmt handlers ---------------------------------------------------------------------
    def _err(self, opcode: Opcode, status: int) -> bytes:
        return status_resp(LAYOUTS[opcode], status)

    def _create(self, chan: MailboxChannel, msg: Message, req: tuple) -> bytes:
        _aie, start_col, num_col, _unused, _r, ncq, _r1, pasid, _pad, _sec, prio = req
        if ncq < 1 or num_col < 1 or start_col < self.first_col or start_col + num_col > self.cols:
            return self._err(Opcode.CREATE_CONTEXT, Status.MGMT_ERT_INVALID_PARAM)
        mb, vectors = self.chip.mailbox, self.chip.msix.vectors
        free = [i for i in range(self.hwctx_limit) if i not in self.contexts
                and 1 + i < mb.channels and 1 + i < vectors  # type: ignore[union-attr]
                and 1 + i not in self.fw.engine.channels]
        if not free:
            return self._err(Opcode.CREATE_CONTEXT, Status.MGMT_ERT_NOAVAIL)
        if not self.temporal_only:
            want = set(range(start_col, start_col + num_col))
            for other in self.contexts.values():
                if want & set(range(other.start_col, other.start_col + other.num_col)):
                    return self._err(Opcode.CREATE_CONTEXT, Status.MGMT_ERT_NOAVAIL)
        cid = free[0]
        ctx = HwContext(cid, pasid, prio, start_col, num_col, 1 + cid)
        ctx.chan = self.fw.attach_channel(1 + cid, self.user_handler(ctx), ctx.msix,
                                          name=f"ctx{cid}")
        self.contexts[cid] = ctx
        ch = ctx.chan
        size = ch.ring_size
        pair = (ch.x2i_head_reg, ch.x2i_tail_reg, ch.x2i_buf, size,
                ch.i2x_head_reg, ch.i2x_tail_reg, ch.i2x_buf, size)
        log.info("context %d created: pasid %d cols %d+%d", cid, pasid, start_col, num_col)
        self.fw.fw_log(FwLogLevel.INFO, f"context {cid} created: pasid {pasid} cols {start_col}+{num_col}")
        self.fw.fw_trace(FwTraceCategory.CONTEXT, FwTraceEvent.CTX_CREATE, cid, pasid)
        return LAYOUTS[Opcode.CREATE_CONTEXT].resp.pack(Status.SUCCESS, cid, ctx.msix, 1, 0,
                                                        *pair, *([0] * 8))

    def _destroy(self, chan: MailboxChannel, msg: Message, req: tuple) -> bytes:
        ctx = self.contexts.get(req[0])
        if ctx is None:
            return self._err(Opcode.DESTROY_CONTEXT, Status.MGMT_ERT_INVALID_PARAM)
        self.drop(ctx)
        return LAYOUTS[Opcode.DESTROY_CONTEXT].resp.pack(Status.SUCCESS)

    def drop(self, ctx: HwContext) -> None:
        """Destroy a context: its channel closes and pending/held work gets no response."""
        self.contexts.pop(ctx.id, None)
        if ctx.chan is not None:
            self.fw.engine.close_channel(ctx.chan.index)
        ctx.queue.clear()
        self.stats["contexts_destroyed"] += 1  # the runqueue's generation (docs/spec/jobs.md §3a)
        log.info("context %d destroyed", ctx.id)
        self.fw.fw_log(FwLogLevel.INFO, f"context {ctx.id} destroyed")
        self.fw.fw_trace(FwTraceCategory.CONTEXT, FwTraceEvent.CTX_DESTROY, ctx.id, ctx.pasid)

    def _host_buffer(self, opcode: Opcode, req: tuple, first: bool) -> bytes:
        cid, addr, size = req
        ctx = self.contexts.get(cid)
        if ctx is None or addr % PAGE or (not first and not ctx.chunks):
            return self._err(opcode, Status.MGMT_ERT_INVALID_PARAM)
        base = [] if first else ctx.chunks
        total = sum(c.size for c in base) + size
        if size == 0 or size % PAGE or total > HEAP_MAX:
            return self._err(opcode, Status.MGMT_ERT_DRAM_BUFFER_SIZE_INVALID)
        chunk = HostChunk(HEAP_DEV_ADDR + total - size, addr, size)
        ctx.chunks = [chunk] if first else [*ctx.chunks, chunk]
        self.fw.engine.gen += 1  # C translates through the chunks (docs/spec/jobs.md §7)
        return LAYOUTS[opcode].resp.pack(Status.SUCCESS)

    def _map_host(self, chan: MailboxChannel, msg: Message, req: tuple) -> bytes:
        return self._host_buffer(Opcode.MAP_HOST_BUFFER, req, True)

    def _add_host(self, chan: MailboxChannel, msg: Message, req: tuple) -> bytes:
        return self._host_buffer(Opcode.ADD_HOST_BUFFER, req, False)

    def health_report(self, ctx: HwContext) -> bytes:
        """The 560-byte app_health_report (fatal_error_info values are emulator-defined,
        docs/spec/firmware.md §8)."""
        if ctx.fatal == FATAL_FAULT:
            exc, pc, module = Status.AIE_ACCESS_ERROR, ctx.fault_addr & 0xFFFFFFFF, ctx.fault_kernel
        elif ctx.fatal == FATAL_CMD_ERROR:
            exc, pc, module = ctx.last_status, 0, ctx.cur_kernel
        else:
            exc, pc, module = 0, 0, ctx.cur_kernel
        fatal = FATAL_ERROR_INFO.pack(ctx.fatal, exc, pc, module, ctx.cur_idx, ctx.last_status,
                                      ctx.last_cmd_status, ctx.last_fail_idx)
        return APP_HEALTH.pack(*APP_HEALTH_VERSION, APP_HEALTH_SIZE, ctx.id, ctx.cur_idx,
                               ctx.cur_kernel, ctx.cmds_done, fatal, 0)

    def _app_health(self, chan: MailboxChannel, msg: Message, req: tuple) -> bytes:
        cid, buf_size, buf_addr = req
        lay = LAYOUTS[Opcode.GET_APP_HEALTH]
        ctx = self.contexts.get(cid)
        if ctx is None:
            return lay.resp.pack(Status.MGMT_ERT_INVALID_PARAM, APP_HEALTH_SIZE, *([0] * 7))
        if buf_size < APP_HEALTH_SIZE:
            return lay.resp.pack(Status.RTOS_INVALID_INPUT_BUF, APP_HEALTH_SIZE, *([0] * 7))
        # the driver's mgmt DMA buffer is in the mgmt PASID; a proxied client's in its own
        pasid = chan.pasid if isinstance(chan, ProxyChannel) else self.fw.state.mgmt_pasid
        try:
            self.iommu.write(buf_addr, self.health_report(ctx), pasid)
        except IommuFault as exc:
            self._fault(ctx, exc)
            return lay.resp.pack(Status.RTOS_INVALID_INPUT_BUF, APP_HEALTH_SIZE, *([0] * 7))
        return lay.resp.pack(Status.SUCCESS, APP_HEALTH_SIZE, *([0] * 7))

    def column_status(self, col: int) -> bytes:
        """One col_status block: what the firmware knows of the contexts whose partition
        covers the column (emulator-defined content, docs/spec/firmware.md §8)."""
        on = [c for _, c in sorted(self.contexts.items())
              if c.start_col <= col < c.start_col + c.num_col]
        queued = sum(len(c.queue) for c in on)
        hung = any(c.hung for c in on)
        state = (ColState.FREE if not on else ColState.HUNG if hung
                 else ColState.BUSY if queued else ColState.IDLE)
        core = ((CoreStatus.ENABLE if on else 0)
                | (CoreStatus.ERROR if any(c.fatal != FATAL_NONE for c in on) else 0)
                | (CoreStatus.STALLED if hung else 0))
        first = on[0] if on else None
        return COL_STATUS.pack(
            col, state, len(on), first.id if first else NO_CONTEXT,
            first.priority if first else 0,
            sum(c.submitted for c in on) & 0xFFFFFFFF, sum(c.completed for c in on) & 0xFFFFFFFF,
            sum(c.failed for c in on) & 0xFFFFFFFF, queued, core,
            first.last_status if first else 0)

    def _col_status(self, chan: MailboxChannel, msg: Message, req: tuple) -> bytes:
        addr, size, num_cols, bitmap = req
        lay = LAYOUTS[Opcode.QUERY_COL_STATUS]
        cols = [c for c in range(32) if bitmap >> c & 1]
        if bitmap >> self.cols or num_cols != len(cols):
            return lay.resp.pack(Status.MGMT_ERT_INVALID_PARAM, 0)
        need = len(cols) * COL_STATUS.size
        if size < need:
            return lay.resp.pack(Status.MGMT_ERT_DRAM_BUFFER_SIZE_INVALID, need)
        if not cols:
            return lay.resp.pack(Status.SUCCESS, 0)
        pasid = chan.pasid if isinstance(chan, ProxyChannel) else self.fw.state.mgmt_pasid
        try:
            self.iommu.write(addr, b"".join(self.column_status(c) for c in cols), pasid)
        except IommuFault:
            self.stats["iommu_faults"] += 1
            return lay.resp.pack(Status.RTOS_INVALID_INPUT_BUF, 0)
        return lay.resp.pack(Status.SUCCESS, need)

    def telemetry(self) -> bytes:
        """HEALTH telemetry: the firmware's counters, then each context by id (emulator-
        defined content, docs/spec/firmware.md §8)."""
        st, ctxs = self.stats, [c for _, c in sorted(self.contexts.items())]
        m32 = 0xFFFFFFFF
        out = TELEMETRY_HEALTH.pack(
            len(ctxs), st["jobs_completed"] & m32, st["jobs_failed"] & m32,
            st["iommu_faults"] & m32, st["contexts_destroyed"] & m32, st["unknown_ops"] & m32,
            sum(1 for c in ctxs if c.hung), TELEMETRY_CTX.size)
        return out + b"".join(TELEMETRY_CTX.pack(
            c.id, c.pasid, c.start_col, c.num_col, c.submitted & m32, c.completed & m32,
            c.failed & m32, len(c.queue)) for c in ctxs)

    def _telemetry(self, chan: MailboxChannel, msg: Message, req: tuple) -> bytes:
        kind, addr, size = req
        lay = LAYOUTS[Opcode.GET_TELEMETRY]
        if kind != TelemetryType.HEALTH:  # the only kind the emulated firmware keeps
            return lay.resp.pack(Status.MGMT_ERT_INVALID_PARAM, *TELEMETRY_VERSION, 0)
        data = self.telemetry()
        if size < len(data):
            return lay.resp.pack(Status.MGMT_ERT_DRAM_BUFFER_SIZE_INVALID, *TELEMETRY_VERSION,
                                 len(data))
        pasid = chan.pasid if isinstance(chan, ProxyChannel) else self.fw.state.mgmt_pasid
        try:
            self.iommu.write(addr, data, pasid)
        except IommuFault:
            self.stats["iommu_faults"] += 1
            return lay.resp.pack(Status.RTOS_INVALID_INPUT_BUF, *TELEMETRY_VERSION, 0)
        return lay.resp.pack(Status.SUCCESS, *TELEMETRY_VERSION, len(data))

    def _wrap_resume(self, fn: Callable) -> Callable:
        def resume(chan: MailboxChannel, msg: Message, req: tuple) -> bytes | None:
            out = fn(chan, msg, req)
            for ctx in list(self.contexts.values()):
                self._pump(ctx)
            return out
        return resume

    # -- state (docs/spec/device.md §4) -------------------------------------------------------
    def save(self) -> CtxFwState:
        out = []
        for _, c in sorted(self.contexts.items()):
            plain = {name: getattr(c, name) for name in _PLAIN_FIELDS}
            out.append(HwContextState(
                chan=c.chan.index if c.chan is not None else None,
                chunks=tuple((h.dev, h.va, h.size) for h in c.chunks), cus=tuple(c.cus),
                queue=tuple((m.opcode, m.id, m.payload) for m in c.queue), **plain))
        return CtxFwState(tuple(out))

    def load(self, st: CtxFwState) -> dict[int, HwContext]:
        """Rebuild the contexts, still without channels; returns them by channel index so
        the engine restore can hand each user channel its context's handler."""
        old, self.contexts = self.contexts, {}
        by_chan = {}
        for cs in st.contexts:
            ctx = old.get(cs.id)
            if ctx is not None and type(ctx) is HwContext:
                # its fields, all loaded here: the plain ones by name in one update (the
                # saved fields are the context's), the four below replaced after it
                ctx.__dict__.update(vars(cs))
                ctx.chan = None
            else:
                ctx = HwContext(**{name: getattr(cs, name) for name in _PLAIN_FIELDS})
            ctx.chunks = [HostChunk(*h) for h in cs.chunks]
            ctx.cus = list(cs.cus)
            ctx.queue = deque(Message(*m) for m in cs.queue)
            self.contexts[ctx.id] = ctx
            if cs.chan is not None:
                by_chan[cs.chan] = ctx
        return by_chan

    def bind_channels(self, by_chan: dict[int, HwContext]) -> None:
        """After the engine restore: each context gets its reopened channel back."""
        for index, ctx in by_chan.items():
            ctx.chan = self.fw.engine.channels.get(index)

    def user_handler(self, ctx: HwContext) -> Callable[[MailboxChannel, Message], None]:
        """The firmware behind a context's user channel."""
        return lambda _ch, m: self._on_user(ctx, m)

    # -- user channels ---------------------------------------------------------------------
    def _on_user(self, ctx: HwContext, msg: Message) -> None:
        if msg.opcode in EXEC_OPS:
            ctx.submitted += 1
            ctx.last_op = msg.opcode
        ctx.queue.append(msg)
        self._pump(ctx)
        if ctx.queue:  # held (a hang, or the firmware suspended): C may not answer behind it
            self.fw.engine.gen += 1  # (docs/spec/jobs.md §7); only RESUME runs it again

    def _pump(self, ctx: HwContext) -> None:
        """Answer queued messages in order until one hangs or the firmware is suspended."""
        while (ctx.queue and not ctx.hung and not self.fw.state.suspended
               and self.contexts.get(ctx.id) is ctx and ctx.chan is not None):
            msg = ctx.queue[0]
            resp = self._user_op(ctx, msg)
            if resp is None:
                ctx.hung = True
                if ctx.fatal != FATAL_FAULT:
                    ctx.fatal = FATAL_HANG
                log.warning("context %d hung on message %#x", ctx.id, msg.id)
                self.fw.fw_log(FwLogLevel.ERROR, f"context {ctx.id} hung on message {msg.id:#x}")
                self.fw.fw_trace(FwTraceCategory.ERROR, FwTraceEvent.HANG, ctx.id, msg.id)
                return
            ctx.queue.popleft()
            if msg.opcode in EXEC_OPS:
                ok = _U32.unpack_from(resp)[0] == Status.SUCCESS
                ctx.completed += ok
                ctx.failed += not ok
                self.stats["jobs_completed" if ok else "jobs_failed"] += 1
                if self.fw.state.log is not None or self.fw.state.trace is not None:
                    self._job_logged(ctx, msg, _U32.unpack_from(resp)[0])
            ctx.chan.reply(msg, resp)

    def _job_logged(self, ctx: HwContext, msg: Message, status: int) -> None:
        """A job's end in the firmware's log (DEBUG; a failure WARN) and trace (docs/spec/
        firmware.md §8a): what the real firmware's own lines report of it."""
        level = FwLogLevel.DEBUG if status == Status.SUCCESS else FwLogLevel.WARN
        self.fw.fw_log(level, f"context {ctx.id} job {msg.id:#x} opcode {msg.opcode:#x} status {status:#x}")
        self.fw.fw_trace(FwTraceCategory.JOB, FwTraceEvent.JOB_END, ctx.id, status)

    def _user_op(self, ctx: HwContext, msg: Message) -> bytes | None:
        """One user-channel message -> its response, or None if it never finishes."""
        op = _OPCODES.get(msg.opcode)
        if op not in USER_OPS or not self._offered(op):
            self.stats["unknown_ops"] += 1
            return STATUS_ONLY.pack(Status.RTOS_INVALID_OP)
        lay = LAYOUTS[op]
        if len(msg.payload) != lay.req.size:
            return status_resp(lay, Status.RTOS_INVALID_INPUT_BUF)
        req = lay.req.unpack(msg.payload)
        if op == Opcode.CONFIG_CU:
            if req[0] > CONFIG_CU_MAX:
                return lay.resp.pack(Status.MGMT_ERT_INVALID_PARAM)
            ctx.cus = list(req[1 : 1 + req[0]])
            self.fw.engine.gen += 1  # C checks a command's CU index (docs/spec/jobs.md §7)
            return lay.resp.pack(Status.SUCCESS)
        if op == Opcode.SYNC_BO:
            return lay.resp.pack(Status.SUCCESS)  # host memory is coherent here
        if op == Opcode.CONFIG_DEBUG_BO:
            return lay.resp.pack(self._debug_bo(ctx, *req))
        if op in CHAIN_OPS:
            out = self._chain(ctx, op, req)
            return None if out is None else lay.resp.pack(*out)
        try:
            cmd = self._single(op, req)
        except _Invalid:
            res: tuple[int, int] | None = (Status.APP_ERT_INVALID_INSTRUCTION,
                                           Status.APP_ERT_INVALID_INSTRUCTION)
        else:
            ctx.cur_idx = 0
            res = self._run(ctx, cmd)
        if res is None:
            return None
        if res[0] != Status.SUCCESS:
            self._note_fail(ctx, res[0], 0, res[1])
        return lay.resp.pack(res[0])

    def _offered(self, op: Opcode) -> bool:
        """Does the running image offer user op ``op`` (its feature gate)?"""
        key = (op, self.fw.protocol)
        ok = self._gates.get(key)
        if ok is None:
            ok = self._gates[key] = self.chip.has_feature(USER_GATES.get(op, op.name), key[1])
        return ok

    def _debug_bo(self, ctx: HwContext, offset: int, size: int, config: int) -> int:
        """CONFIG_DEBUG_BO: register (1) or unregister (0) the context's debug BO, a heap
        range; docs/spec/jobs.md §4."""
        addr = HEAP_DEV_ADDR + offset
        if config == 0:
            if not ctx.dbg_size or ctx.dbg_addr != addr:
                return Status.RTOS_DEBUG_BO_CONFIG_FAILED
            ctx.dbg_addr = ctx.dbg_size = 0
            return Status.SUCCESS
        if config != 1 or ctx.dbg_size or size < DEBUG_BO_MIN or size >= ARG_MAX \
                or not ctx.chunks or addr + size > ctx.heap_end:
            return Status.RTOS_DEBUG_BO_CONFIG_FAILED
        try:
            self.translate(ctx, addr, size, DMA_WRITE)
        except IommuFault as exc:
            self._fault(ctx, exc)
            return Status.RTOS_DEBUG_BO_CONFIG_FAILED
        ctx.dbg_addr, ctx.dbg_size, ctx.dbg_seq = addr, size, 0
        return Status.SUCCESS

    def _debug_marker(self, ctx: HwContext, value: int) -> None:
        """The debug kernel: one marker into the bound debug BO (dropped without one)."""
        if not ctx.dbg_size:
            return
        slots = ctx.dbg_size // DEBUG_MARKER.size
        off = ctx.dbg_seq % slots * DEBUG_MARKER.size
        try:
            mem = self.translate(ctx, ctx.dbg_addr + off, DEBUG_MARKER.size, DMA_WRITE)
        except IommuFault as exc:  # its memory went away under the registration
            self._fault(ctx, exc)
            return
        mem[:] = DEBUG_MARKER.pack(DEBUG_MARKER_MAGIC, ctx.dbg_seq, value & 0xFFFFFFFF, ctx.id)
        ctx.dbg_seq += 1

    @staticmethod
    def _single(op: Opcode, req: tuple) -> Command:
        """A single-exec message: payload = props, then buffer-argument words."""
        if op == Opcode.EXECUTE_BUFFER_CF:
            cmd = ContextFirmware._cf_command(list(req[1:]))
            cmd.exact, cmd.cu = False, req[0]
            return cmd
        if op == Opcode.EXEC_DPU:
            inst, size, props, cu, *words = req
        else:  # EXEC_NPU
            _flags, _type, inst, _save, _restore, size, _ss, _rs, props, cu, *words = req
        if props > len(words):
            raise _Invalid("property count past the payload")
        return Command(inst, size, words[props:], exact=False, cu=cu)

    def _chain(self, ctx: HwContext, op: Opcode, req: tuple) -> tuple[int, int, int] | None:
        if op == Opcode.CHAIN_EXEC_NPU:
            _flags, _rsvd, buf_addr, buf_size, count = req
        else:
            buf_addr, buf_size, count = req
        inv = Status.APP_ERT_INVALID_INSTRUCTION
        if count == 0 or buf_size == 0 or buf_size > CMD_LIST_MAX:
            return self._note_fail(ctx, inv, 0, inv)
        try:  # snapshot: the host cannot change slots under a running chain
            buf = bytes(self.translate(ctx, buf_addr, buf_size, DMA_READ))
        except IommuFault as exc:
            ctx.cur_idx = 0
            self._stall(ctx, exc)
            return None
        off = 0
        for idx in range(count):
            ctx.cur_idx = idx
            try:
                cmd, off = self._slot(op, buf, off)
            except _Invalid as exc:
                log.info("context %d slot %d: %s", ctx.id, idx, exc)
                return self._note_fail(ctx, inv, idx, inv)
            ctx.last_slot = cmd.slot_type
            res = self._run(ctx, cmd)
            if res is None:
                return None
            if res[0] != Status.SUCCESS:
                return self._note_fail(ctx, res[0], idx, res[1])
        return Status.SUCCESS, 0, 0

    @staticmethod
    def _slot(op: Opcode, buf: bytes, off: int) -> tuple[Command, int]:
        """Decode the slot at ``off``; returns it and the offset of the next one."""
        hdr = _SLOT_HDR.get(op, SLOT_CF)
        if off + hdr.size > len(buf):
            raise _Invalid(f"slot header at {off:#x} past the cmd-list buffer")
        f = hdr.unpack_from(buf, off)
        arg_cnt = f[-1]
        end = off + hdr.size + 4 * arg_cnt
        if end > len(buf):
            raise _Invalid(f"{arg_cnt} argument words past the cmd-list buffer")
        words = list(_words(arg_cnt).unpack_from(buf, off + hdr.size)) if arg_cnt else []
        if op == Opcode.CHAIN_EXEC_NPU:
            stype, inst, save, restore, size, save_size, restore_size, props = f[:8]
            if stype == SlotType.NON_ELF:  # START_CU: the CU payload, as a CF slot
                cmd = ContextFirmware._cf_command(words)
                cmd.slot_type, cmd.cu = stype, f[8]
                return cmd, end
            if stype == SlotType.ELF:
                if words != [KERNEL_OP_TXN]:
                    raise _Invalid(f"ELF slot arguments {words[:2]} are not [KERNEL_OP_TXN]")
                return Command(inst, size, [], elf=True, slot_type=stype), end
            if stype not in (SlotType.PARTIAL_ELF, SlotType.PREEMPT):
                raise _Invalid(f"slot type {stype} not supported")
            if props > arg_cnt:
                raise _Invalid("property count past the slot arguments")
            cmd = Command(inst, size, words[props:], slot_type=stype, cu=f[8])
            if stype == SlotType.PREEMPT:
                cmd.save, cmd.restore = (save, save_size), (restore, restore_size)
            return cmd, end
        if op == Opcode.CHAIN_EXEC_DPU:
            if f[2] > arg_cnt:
                raise _Invalid("property count past the slot arguments")
            return Command(f[0], f[1], words[f[2]:], cu=f[3]), end
        cmd = ContextFirmware._cf_command(words)
        cmd.cu = f[0]
        return cmd, end

    @staticmethod
    def _cf_command(words: list[int]) -> Command:
        """A control-flow (START_CU) payload: words 0/1 name the instruction buffer, the
        rest are buffer arguments (emulator convention, docs/spec/jobs.md §5)."""
        if len(words) < 2:
            raise _Invalid("control-flow slot without an instruction address")
        return Command(words[0] | words[1] << 32, kernels.DESC.size, words[2:])

    def _note_fail(self, ctx: HwContext, status: int, idx: int, cmd_status: int) -> tuple[int, int, int]:
        ctx.fatal = FATAL_CMD_ERROR
        ctx.last_status, ctx.last_fail_idx, ctx.last_cmd_status = status, idx, cmd_status
        return status, idx, cmd_status

    def _run(self, ctx: HwContext, cmd: Command) -> tuple[int, int] | None:
        """Run one command: (status, command status), or None for a hang."""
        inv = _INVALID
        ctx.cur_kernel = TXN_OP_NONE  # until the program is decoded
        if cmd.cu >= len(ctx.cus):  # no such CU in its CONFIG_CU table: no PDI to load
            return Status.APP_ERT_LOAD_PDI_FAILURE, Status.APP_ERT_LOAD_PDI_FAILURE
        if cmd.inst_size >= ARG_MAX:
            return inv
        try:
            inst = bytes(self.translate(ctx, cmd.inst_addr, cmd.inst_size, DMA_READ)) \
                if cmd.inst_size else b""
            if cmd.save[1] or cmd.restore[1]:  # preempt buffers must be reachable
                for addr, size in (cmd.save, cmd.restore):
                    if size:
                        self.translate(ctx, addr, size, DMA_READ | DMA_WRITE)
        except IommuFault as exc:
            self._stall(ctx, exc)
            return None
        if inst.count(0) == len(inst):  # an all-zero (or empty) program: nothing to do
            ctx.cur_kernel = TXN_OP_NONE
            ctx.cmds_done += 1
            return _DONE
        try:
            desc = kernels.decode(inst)  # it reads the first DESC.size bytes
        except kernels.KernelError:
            return inv
        ctx.cur_kernel = int(desc.kernel)
        nargs = kernels.NARGS[desc.kernel]
        need = 2 * nargs
        words = cmd.words
        if cmd.elf:  # the buffer arguments are patched into the program after the descriptor
            if len(inst) < kernels.DESC.size + 8 * desc.nargs:
                return inv
            words = list(struct.unpack_from(f"<{need}I", inst, kernels.DESC.size))
        if len(words) < need or (cmd.exact and len(words) != need):
            return inv
        if desc.kernel == kernels.Kernel.NOP:  # no buffers, no firmware action
            ctx.cmds_done += 1
            return _DONE
        args = [words[2 * i] | words[2 * i + 1] << 32 for i in range(nargs)]
        if desc.kernel == kernels.Kernel.HANG:
            return None
        if desc.kernel == kernels.Kernel.DEBUG:
            self._debug_marker(ctx, desc.count)
            ctx.cmds_done += 1
            return Status.SUCCESS, 0
        if desc.kernel == kernels.Kernel.FAIL:
            entry = self._aie_error_entry(ctx, desc)
            if entry is None:
                return inv
            self.fw.post_async_event(AsyncEventType.AIE_ERROR, ASYNC_EVENT_HDR.pack(1, 0, 0) + entry)
            return Status.APP_ERT_FIRST_ERROR, desc.error
        try:
            if (any(s >= ARG_MAX for s in desc.arg_sizes())
                    or (desc.kernel == kernels.Kernel.GEMM and desc.m * desc.n * desc.k > GEMM_WORK_MAX)):
                return inv
            last = desc.nargs - 1

            def fetch(i: int, size: int) -> memoryview:
                return self.translate(ctx, args[i], size, DMA_WRITE if i == last else DMA_READ)

            kernels.run(desc, fetch)
        except IommuFault as exc:
            self._stall(ctx, exc)
            return None
        except (kernels.KernelError, ValueError, TypeError, ArithmeticError) as exc:
            log.info("context %d: kernel rejected: %s", ctx.id, exc)
            return inv
        ctx.cmds_done += 1
        return Status.SUCCESS, 0

    def _aie_error_entry(self, ctx: HwContext, desc: kernels.Desc) -> bytes | None:
        """The aie_error a fail command raises (docs/spec/jobs.md §5), or None if its
        placement is outside the context's partition or names no such module there."""
        t = self.chip.tiles
        core_row = t.core_row_start if t is not None else 0
        if desc.where == 0:  # the default tile: the partition's first core tile
            return AIE_ERROR_ENTRY.pack(core_row & 0xFF, ctx.start_col & 0xFF, 0, AieModule.CORE,
                                        desc.error & 0xFF, bytes(3))
        col, row = desc.where & 0xFF, desc.where >> 8 & 0xFF
        module, event = desc.where >> 16 & 0xFF, desc.where >> 24
        if t is None or col >= ctx.num_col or row >= t.rows:
            return None
        core = t.core_row_start <= row < t.core_row_start + t.core_rows
        mem = t.mem_row_start <= row < t.mem_row_start + t.mem_rows
        shim = t.shim_row_start <= row < t.shim_row_start + t.shim_rows
        if not {AieModule.CORE: core, AieModule.MEM: core or mem, AieModule.PL: shim}.get(module):
            return None
        return AIE_ERROR_ENTRY.pack(row, ctx.start_col + col, 0, module, event, bytes(3))

    # -- session hooks -----------------------------------------------------------------------
    def proxy(self, pasid: int, opcode: int, payload: bytes) -> bytes:
        """A client session's mgmt op, run synchronously through the mgmt dispatch."""
        if opcode not in PROXY_OPS and not self._client_setting(opcode, payload):
            raise OSError(errno.EPERM, f"opcode {opcode:#x} is driver-only")
        payload = bytes(payload)
        lay = LAYOUTS[Opcode(opcode)]
        if opcode == Opcode.CREATE_CONTEXT and len(payload) == lay.req.size:
            if not 0 <= pasid <= 0xFFFF:
                raise OSError(errno.EINVAL, f"PASID {pasid} does not fit CREATE_CONTEXT")
            req = MESSAGES[Opcode.CREATE_CONTEXT].req
            payload = req.pack(**{**req.unpack(payload), "pasid": pasid})
        if opcode in CTX_NAMED_OPS and len(payload) == lay.req.size:
            ctx = self.contexts.get(_U32.unpack_from(payload)[0])
            if ctx is None or ctx.pasid != pasid:
                raise OSError(errno.ENOENT, "no such context for this session")
        return ProxyChannel.answer(self.fw, pasid, opcode, payload)

    def _client_setting(self, opcode: int, payload: bytes) -> bool:
        """The one runtime setting a client sets: frame-boundary preemption, which a root
        UAPI client changes with SET_STATE (docs/spec/uapi.md §6)."""
        rc = self.chip.runtime_config
        fb = rc.frame_boundary_preempt if rc is not None else None
        return (opcode == Opcode.SET_RUNTIME_CONFIG and fb is not None and len(payload) >= 4
                and _U32.unpack_from(payload)[0] == fb)

    def release_pasid(self, pasid: int) -> int:
        """Destroy every context of a PASID (its session went away)."""
        gone = [c for c in self.contexts.values() if c.pasid == pasid]
        for ctx in gone:
            self.drop(ctx)
        return len(gone)

    def context_count(self, exclude_pasid: int | None = None) -> int:
        return sum(1 for c in self.contexts.values() if c.pasid != exclude_pasid)

    def busy_columns(self) -> set[int]:
        """Columns whose contexts have work queued or are stalled on a hang (what the
        platform firmware counts as busy, docs/spec/uapi.md §6 "Sensors")."""
        return {col for c in self.contexts.values() if c.queue or c.hung
                for col in range(c.start_col, c.start_col + c.num_col)}

    def status(self) -> list[dict]:
        return [c.status() for _, c in sorted(self.contexts.items())]
