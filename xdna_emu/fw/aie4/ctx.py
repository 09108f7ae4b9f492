"""AIE4 hardware contexts and their HSA user-mode queues (docs/spec/aie4.md §7).

CREATE_HW_CONTEXT names a queue in the client's memory (its PASID's IOMMU space) and gets a
context id, a doorbell (one page of the ring-buffer BAR per context) and a job-completion
MSI-X vector. A doorbell write makes the firmware read the queue header over DMA and run
every packet from ``read_index`` up to ``write_index``: an ``exec_buf`` (or up to six
indirect entries, each pointing at a per-uC exec_buf) whose control code is a reference
kernel descriptor (``xdna_emu.kernels``) and whose arguments are u64 buffer addresses. For
each packet it writes the command state into bits 3:0 of the word at ``completion_signal``,
advances ``read_index`` and raises the context's vector. A failing packet ends ERROR and the
packets after it in the same chain (chain_flag NOT_LAST) end ABORT. Bad input is that job's
error only: the queue and every other context keep going, and nothing raises.
"""

from __future__ import annotations

import errno
import logging
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ... import kernels
from ...iommu import DMA_READ, DMA_WRITE, IommuFault
from ..ctx import ARG_MAX, GEMM_WORK_MAX, ProxyChannel
from ..mailbox import Message
from .messages import (
    CERT_LOG_DESC,
    CERT_LOG_HEADER,
    CERT_LOG_MAGIC,
    CERT_LOG_RECORD,
    CERT_LOG_UCS,
    CMD_STATE_MASK,
    CTX_ERROR_EVENT,
    DESTROY_GRACEFUL,
    HSA_EXEC_BUF,
    HSA_INDIRECT_ADDR_HI_MASK,
    HSA_INDIRECT_ENTRY,
    HSA_INDIRECT_PER_SLOT,
    HSA_INDIRECT_UC_SHIFT,
    HSA_PKT,
    HSA_PKT_HEADER,
    HSA_QUEUE_BYTES,
    HSA_QUEUE_HEADER,
    HSA_QUEUE_SLOTS,
    MESSAGES,
    PASID_MASK,
    PASID_VALID,
    AsyncEventType,
    ChainFlag,
    CmdState,
    CtxErrorType,
    CtxProperty,
    HsaOpcode,
    Opcode,
    RuntimeConfigType,
    Status,
)
from .mgmt import RSP_STATUS, Aie4Firmware, error_resp

log = logging.getLogger(__name__)
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
READ_INDEX_OFF = HSA_QUEUE_HEADER.offsets["read_index"]

#: ``stats`` keys of the queue engine (docs/spec/aie4.md §7)
QUEUE_STATS = ("log_drops", "doorbells", "empty_doorbells", "stale_doorbells", "queue_overruns",
               "bad_packets", "bad_signals", "jobs_completed", "jobs_failed", "ctx_timeouts",
               "events_dropped")  # fmt: skip
#: the timer action a hang arms (docs/spec/aie4.md §7): (slot, context id, read index)
TIMEOUT_ACTION = "ctx_timeout"
#: ops a client session may run through MGMT_PROXY (docs/spec/aie4.md §12)
CTX_NAMED_OPS = frozenset({Opcode.CREATE_HW_CONTEXT, Opcode.DESTROY_HW_CONTEXT,
                           Opcode.CONFIGURE_HW_CONTEXT})
PROXY_OPS = CTX_NAMED_OPS | {Opcode.IDENTIFY, Opcode.QUERY_CERT_FIRMWARE_VERSION,
                             Opcode.AIE_VERSION_INFO, Opcode.AIE_TILE_INFO}
#: Schedule delayed work: (delay ns, action name, *plain-data args).
Schedule = Callable[..., None]


class QueueError(Exception):
    """A packet the firmware rejects: its job ends ERROR."""


@dataclass
class HwContext:
    id: int
    slot: int
    pasid: int
    partition_id: int
    hsa_addr: int
    msix: int
    priority_band: int
    dpm: int = 0
    hung: bool = False  # a hang kernel stalls the queue (its job stays RUNNING)
    submitted: int = 0
    completed: int = 0
    failed: int = 0
    #: the last packets' (read index, state) for status and tests
    history: list[tuple[int, int]] = field(default_factory=list)
    #: attached CERT log slices: (uC index, device address, size) (docs/spec/aie4.md §11)
    cert_log: tuple[tuple[int, int, int], ...] = ()


class Aie4ContextFw:
    """The context half of the AIE4 firmware: CREATE/DESTROY/CONFIGURE_HW_CONTEXT, doorbells."""

    def __init__(self, fw: Aie4Firmware, irq: Callable[[int], None],
                 schedule: Schedule | None = None) -> None:
        self.fw, self.chip, self.iommu, self.irq = fw, fw.chip, fw.iommu, irq
        self.schedule = schedule
        self.stats = fw.stats
        for key in QUEUE_STATS:
            self.stats.setdefault(key, 0)
        self.contexts: dict[int, HwContext] = {}  # by slot
        self.next_id = 1
        fw.ops.update({
            Opcode.CREATE_HW_CONTEXT: self._create,
            Opcode.DESTROY_HW_CONTEXT: self._destroy,
            Opcode.CONFIGURE_HW_CONTEXT: self._configure,
        })  # fmt: skip

    # -- mgmt ops ---------------------------------------------------------------------------
    def _create(self, msg: Message, req: dict[str, Any]) -> bytes:
        m = MESSAGES[Opcode.CREATE_HW_CONTEXT]
        pasid = req["pasid"] & PASID_MASK if req["pasid"] & PASID_VALID else 0
        hsa = req["hsa_addr_hi"] << 32 | req["hsa_addr_lo"]
        free = [s for s in range(self.chip.limits.hwctx_limit) if s not in self.contexts]
        if req["partition_id"] not in self.fw.partitions or not free:
            return error_resp(m, Status.ERROR)
        try:
            hdr = HSA_QUEUE_HEADER.unpack(self.iommu.translate(hsa, HSA_QUEUE_BYTES, pasid,
                                                               DMA_READ | DMA_WRITE))
        except IommuFault as exc:
            log.warning("CREATE_HW_CONTEXT: queue %s", exc)
            return error_resp(m, Status.ERROR)
        if hdr["capacity"] != HSA_QUEUE_SLOTS:
            return error_resp(m, Status.ERROR)
        slot = free[0]
        ctx = HwContext(self.next_id, slot, pasid, req["partition_id"], hsa, 1 + slot,
                        req["priority_band"])
        self.next_id += 1
        self.contexts[slot] = ctx
        a = self.chip.aie4
        assert a is not None
        bar, off = self.chip.dev_to_bar(a.doorbell(slot))
        doorbell = off - self.chip.dev_to_bar(a.mbox_info)[1]  # from the doorbell region start
        assert bar == self.chip.dev_to_bar(a.mbox_info)[0]
        return m.resp.pack(status=Status.SUCCESS, hw_context_id=ctx.id, doorbell_offset=doorbell,
                           job_complete_msix_idx=ctx.msix)

    def by_id(self, ctx_id: int) -> HwContext | None:
        return next((c for c in self.contexts.values() if c.id == ctx_id), None)

    def _destroy(self, msg: Message, req: dict[str, Any]) -> bytes:
        ctx = self.by_id(req["hw_context_id"])
        if ctx is None:
            return RSP_STATUS.pack(status=Status.ERROR)
        if req["flags"] & DESTROY_GRACEFUL and not ctx.hung:
            self._drain(ctx)  # let what is already published finish
        del self.contexts[ctx.slot]
        return RSP_STATUS.pack(status=Status.SUCCESS)

    def _configure(self, msg: Message, req: dict[str, Any]) -> bytes:
        ctx = self.by_id(req["hw_context_id"])
        if ctx is not None and req["property"] == CtxProperty.CERT_LOG:
            return RSP_STATUS.pack(status=self._cert_log(ctx, req["value"]))
        if ctx is None or req["property"] != CtxProperty.DPM:
            return RSP_STATUS.pack(status=Status.ERROR)
        if req["value"] >= max(1, len(self.chip.dpm_levels)):
            return RSP_STATUS.pack(status=Status.ERROR)
        ctx.dpm = req["value"]
        return RSP_STATUS.pack(status=Status.SUCCESS)

    def _cert_log(self, ctx: HwContext, addr: int) -> int:
        """Attach the CERT log slices a cert_log_desc at ``addr`` names (0: detach). Each
        slice: a uC below CERT_LOG_UCS named once, room for its header and one record,
        mapped writable; then its header is written (docs/spec/aie4.md §11)."""
        if addr == 0:
            ctx.cert_log = ()
            return Status.SUCCESS
        try:
            desc = CERT_LOG_DESC.unpack(self._read(ctx, addr, CERT_LOG_DESC.size))
            n = desc["num_ucs"]
            if not 1 <= n <= CERT_LOG_UCS:
                return Status.ERROR
            slices = tuple((s["uc_index"], s["addr"], s["size"]) for s in desc["slice"][:n])
            if len({uc for uc, _, _ in slices}) != n or any(
                    uc >= CERT_LOG_UCS or size < CERT_LOG_HEADER.size + CERT_LOG_RECORD.size
                    for uc, _, size in slices):
                return Status.ERROR
            views = [self.iommu.translate(a, size, ctx.pasid, DMA_READ | DMA_WRITE)
                     for _, a, size in slices]
        except IommuFault as exc:
            log.info("context %d: CERT log %s", ctx.id, exc)
            return Status.ERROR
        for (_, _, size), view in zip(slices, views, strict=True):
            view[: CERT_LOG_HEADER.size] = CERT_LOG_HEADER.pack(
                magic=CERT_LOG_MAGIC, records=0, record_size=CERT_LOG_RECORD.size,
                capacity=(size - CERT_LOG_HEADER.size) // CERT_LOG_RECORD.size)
        ctx.cert_log = slices
        return Status.SUCCESS

    def _log(self, ctx: HwContext, uc: int, index: int, state: int) -> None:
        """uC ``uc`` finished an exec_buf: one record in its slice's ring, if it has one."""
        for s_uc, addr, size in ctx.cert_log:
            if s_uc != uc:
                continue
            try:
                view = self.iommu.translate(addr, size, ctx.pasid, DMA_READ | DMA_WRITE)
            except IommuFault as exc:  # the client unmapped it: the record is lost
                log.info("context %d: CERT log %s", ctx.id, exc)
                self.stats["log_drops"] += 1
                return
            h = CERT_LOG_HEADER.unpack(view)
            cap = (size - CERT_LOG_HEADER.size) // CERT_LOG_RECORD.size
            off = CERT_LOG_HEADER.size + (h["records"] % cap) * CERT_LOG_RECORD.size
            view[off : off + CERT_LOG_RECORD.size] = CERT_LOG_RECORD.pack(
                seq=h["records"] & 0xFFFFFFFF, hw_context_id=ctx.id, queue_index=index,
                uc_index=uc, state=int(state), time_ns=self.fw.clock.now_ns())
            _U32.pack_into(view, CERT_LOG_HEADER.offsets["records"], (h["records"] + 1) & 0xFFFFFFFF)
            return

    # -- doorbells and the queue ---------------------------------------------------------------
    def doorbell(self, slot: int, value: int) -> None:
        """A doorbell page was written: run the context's new packets. Never raises."""
        self.stats["doorbells"] += 1
        ctx = self.contexts.get(slot)
        if ctx is None:  # destroyed or never created: nothing to run
            self.stats["stale_doorbells"] += 1
            return
        self._drain(ctx)

    def _drain(self, ctx: HwContext) -> None:
        """Run the context's published packets. A queue out of the device's reach (unmapped,
        or bus mastering off) runs nothing and counts a bad packet (docs/spec/aie4.md §8).
        Never raises."""
        try:
            self._run_queue(ctx)
        except IommuFault as exc:  # the queue itself went away under us
            log.warning("context %d: queue %s", ctx.id, exc)
            self.stats["bad_packets"] += 1

    def _queue(self, ctx: HwContext) -> memoryview:
        return self.iommu.translate(ctx.hsa_addr, HSA_QUEUE_BYTES, ctx.pasid, DMA_READ | DMA_WRITE)

    def _run_queue(self, ctx: HwContext) -> None:
        if ctx.hung:
            return
        q = self._queue(ctx)
        hdr = HSA_QUEUE_HEADER.unpack(q)
        rd, wr = hdr["read_index"], hdr["write_index"]
        if wr == rd:
            self.stats["empty_doorbells"] += 1
            return
        raised = False
        if wr < rd or wr - rd > HSA_QUEUE_SLOTS:
            # a write index past read index + capacity: the packet at read_index is not one
            # the producer may have written; that job ends ERROR, the queue goes on
            self.stats["queue_overruns"] += 1
            self._finish(ctx, q, rd, self._signal_of(ctx, q, rd), CmdState.ERROR)
            self._irq(ctx)
            return
        aborting = False
        while rd < wr and not ctx.hung:
            state = CmdState.ABORT if aborting else None
            hdr_pkt = self._packet_header(ctx, q, rd)
            if state is None:
                try:
                    state = self._run_packet(ctx, q, rd, hdr_pkt)
                except QueueError as exc:
                    log.info("context %d packet %d: %s", ctx.id, rd, exc)
                    self.stats["bad_packets"] += 1
                    state = CmdState.ERROR
            if state is None:  # a hang: the job stays RUNNING, the queue stalls here
                ctx.hung = True
                self._arm_timeout(ctx, rd)
                break
            last = hdr_pkt is None or hdr_pkt["chain_flag"] != ChainFlag.NOT_LAST
            aborting = False if last else state != CmdState.COMPLETED
            self._finish(ctx, q, rd, hdr_pkt["completion_signal"] if hdr_pkt else 0, state)
            rd += 1
            raised = True
        if raised:
            self._irq(ctx)

    def _slot_off(self, ctx: HwContext, q: memoryview, index: int) -> int:
        data = HSA_QUEUE_HEADER.unpack(q)["data_address"]
        base = data - ctx.hsa_addr
        return base + (index % HSA_QUEUE_SLOTS) * HSA_PKT.size

    def _packet_header(self, ctx: HwContext, q: memoryview, index: int) -> dict[str, Any] | None:
        off = self._slot_off(ctx, q, index)
        if off < 0 or off + HSA_PKT.size > len(q):
            return None
        return HSA_PKT_HEADER.unpack(q, off)

    def _signal_of(self, ctx: HwContext, q: memoryview, index: int) -> int:
        hdr = self._packet_header(ctx, q, index)
        return hdr["completion_signal"] if hdr is not None else 0

    def _run_packet(self, ctx: HwContext, q: memoryview, index: int,
                    hdr: dict[str, Any] | None) -> int | None:
        """Run one packet: its final state, or None for a hang; QueueError when malformed."""
        ctx.submitted += 1
        if hdr is None:
            raise QueueError("data_address puts the packet outside the queue")
        if hdr["opcode"] != HsaOpcode.EXEC_BUF:
            raise QueueError(f"unknown packet opcode {hdr['opcode']}")
        if hdr["chain_flag"] not in (ChainFlag.LAST, ChainFlag.NOT_LAST):
            raise QueueError(f"chain_flag {hdr['chain_flag']}")
        data = bytes(q[self._slot_off(ctx, q, index) + HSA_PKT_HEADER.size:][: HSA_PKT.size - HSA_PKT_HEADER.size])
        if hdr["indirect"] == 0:  # a direct packet runs on uC 0
            state = self._run_exec(ctx, HSA_EXEC_BUF.unpack(data))
            if state is not None:
                self._log(ctx, 0, index, state)
            return state
        if hdr["indirect"] != 1 or not 1 <= hdr["count"] <= HSA_INDIRECT_PER_SLOT:
            raise QueueError(f"indirect {hdr['indirect']} with {hdr['count']} entries")
        state: int | None = CmdState.COMPLETED
        for i in range(hdr["count"]):
            e = HSA_INDIRECT_ENTRY.unpack(data, i * HSA_INDIRECT_ENTRY.size)
            addr = e["addr_lo"] | (e["addr_hi_uc"] & HSA_INDIRECT_ADDR_HI_MASK) << 32
            uc = e["addr_hi_uc"] >> HSA_INDIRECT_UC_SHIFT
            if uc >= HSA_INDIRECT_PER_SLOT:
                raise QueueError(f"indirect entry {i}: uC {uc}")
            try:
                exec_buf = HSA_EXEC_BUF.unpack(self._read(ctx, addr, HSA_EXEC_BUF.size))
            except IommuFault as exc:
                raise QueueError(f"indirect entry {i}: {exc}") from None
            state = self._run_exec(ctx, exec_buf)
            if state is not None:
                self._log(ctx, uc, index, state)
            if state != CmdState.COMPLETED:
                return state
        return state

    def _read(self, ctx: HwContext, addr: int, size: int) -> bytes:
        return bytes(self.iommu.translate(addr, size, ctx.pasid, DMA_READ))

    def _run_exec(self, ctx: HwContext, eb: dict[str, Any]) -> int | None:
        """Run one exec_buf's reference kernel."""
        code = eb["ctrlcode_lo"] | eb["ctrlcode_hi"] << 32
        args = eb["args_lo"] | eb["args_hi"] << 32
        try:
            desc = kernels.decode(self._read(ctx, code, kernels.DESC.size))
        except (IommuFault, kernels.KernelError) as exc:
            raise QueueError(f"control code: {exc}") from None
        if eb["args_len"] != 8 * desc.nargs:
            raise QueueError(f"args_len {eb['args_len']} for {desc.nargs} buffers")
        try:
            raw = self._read(ctx, args, eb["args_len"]) if desc.nargs else b""
        except IommuFault as exc:
            raise QueueError(f"arguments: {exc}") from None
        addrs = [_U64.unpack_from(raw, 8 * i)[0] for i in range(desc.nargs)]
        if desc.kernel == kernels.Kernel.HANG:
            return None
        if desc.kernel == kernels.Kernel.FAIL:
            return CmdState.ERROR
        if (any(s >= ARG_MAX for s in desc.arg_sizes())
                or (desc.kernel == kernels.Kernel.GEMM and desc.m * desc.n * desc.k > GEMM_WORK_MAX)):
            raise QueueError("kernel too large")
        last = desc.nargs - 1

        def fetch(i: int, size: int) -> memoryview:
            return self.iommu.translate(addrs[i], size, ctx.pasid, DMA_WRITE if i == last else DMA_READ)

        try:
            kernels.run(desc, fetch)
        except IommuFault as exc:
            raise QueueError(f"buffer: {exc}") from None
        except (kernels.KernelError, ValueError, TypeError, ArithmeticError) as exc:
            raise QueueError(f"kernel: {exc}") from None
        return CmdState.COMPLETED

    def _finish(self, ctx: HwContext, q: memoryview, index: int, signal: int, state: int) -> None:
        """Write the state at completion_signal (bits 3:0), advance read_index."""
        if state == CmdState.COMPLETED:
            ctx.completed += 1
            self.stats["jobs_completed"] += 1
        else:
            ctx.failed += 1
            self.stats["jobs_failed"] += 1
        if signal:
            try:
                word = self.iommu.translate(signal, 4, ctx.pasid, DMA_READ | DMA_WRITE)
                old = _U32.unpack(word)[0]
                word[:] = _U32.pack(old & ~CMD_STATE_MASK | int(state))
            except IommuFault as exc:  # outside client memory: the state cannot be reported
                log.info("context %d: completion_signal %s", ctx.id, exc)
                self.stats["bad_signals"] += 1
        else:
            self.stats["bad_signals"] += 1
        # one 64-bit store: the host polls it while we write (``pack_into`` zero-fills first)
        q[READ_INDEX_OFF : READ_INDEX_OFF + 8].cast("Q")[0] = index + 1
        ctx.history = [*ctx.history[-15:], (index, int(state))]

    def _irq(self, ctx: HwContext) -> None:
        self.irq(ctx.msix)

    # -- context timeout (docs/spec/aie4.md §7) ------------------------------------------------
    def _arm_timeout(self, ctx: HwContext, index: int) -> None:
        """A job hangs: when CONTEXT_TIMEOUT is set, reset the context once it expires."""
        ms = self.fw.runtime_value(RuntimeConfigType.CONTEXT_TIMEOUT, "timeout_ms")
        if ms and self.schedule is not None:
            self.schedule(ms * 1_000_000, TIMEOUT_ACTION, ctx.slot, ctx.id, index)

    def timeout(self, slot: int, ctx_id: int, index: int) -> None:
        """The context timeout expired: if the same job still hangs, report CTX_ERROR with a
        health report, end the hung job TIMEOUT and every published job behind it ABORT,
        and leave the context reset (usable again)."""
        ctx = self.contexts.get(slot)
        if ctx is None or ctx.id != ctx_id or not ctx.hung:
            return
        try:
            q = self._queue(ctx)
        except IommuFault as exc:
            log.warning("context %d: timeout: queue %s", ctx.id, exc)
            return
        hdr = HSA_QUEUE_HEADER.unpack(q)
        if hdr["read_index"] != index:
            return
        self.stats["ctx_timeouts"] += 1
        report = CTX_ERROR_EVENT.pack(ctx_id=ctx.id, error_type=CtxErrorType.UC_COMPLETION_TIMEOUT,
                                      uc_index=0, read_index=index & 0xFFFFFFFF,
                                      ctx_pc=index % HSA_QUEUE_SLOTS)
        if not self.fw.raise_event(AsyncEventType.CTX_ERROR, report):
            self.stats["events_dropped"] += 1
        ctx.hung = False
        self._finish(ctx, q, index, self._signal_of(ctx, q, index), CmdState.TIMEOUT)
        wr = hdr["write_index"]
        end = wr if index < wr <= index + HSA_QUEUE_SLOTS else index + 1
        for i in range(index + 1, end):
            self._finish(ctx, q, i, self._signal_of(ctx, q, i), CmdState.ABORT)
        self._irq(ctx)

    # -- client sessions (docs/spec/aie4.md §12) ---------------------------------------------
    def proxy(self, pasid: int, opcode: int, payload: bytes) -> bytes:
        """A client session's op: the queries, and its own contexts. CREATE_HW_CONTEXT gets
        the session's PASID (valid bit set) and, when it names partition 0, the partition
        the driver created; the other context ops must name a context of this PASID."""
        if opcode not in PROXY_OPS:
            raise OSError(errno.EPERM, f"opcode {opcode:#x} is driver-only")
        payload = bytes(payload)
        req = MESSAGES[Opcode(opcode)].req
        if len(payload) == req.size and opcode == Opcode.CREATE_HW_CONTEXT:
            fields = req.unpack(payload)
            if not fields["partition_id"] and self.fw.partitions:
                fields["partition_id"] = min(self.fw.partitions)
            fields["pasid"] = pasid & PASID_MASK | PASID_VALID
            payload = req.pack(**fields)
        elif len(payload) == req.size and opcode != Opcode.CREATE_HW_CONTEXT and \
                opcode in CTX_NAMED_OPS:
            ctx = self.by_id(req.unpack(payload)["hw_context_id"])
            if ctx is None or ctx.pasid != pasid:
                raise OSError(errno.ENOENT, "no such context for this session")
        return ProxyChannel.answer(self.fw, pasid, opcode, payload)

    # -- state and status ------------------------------------------------------------------
    def save(self) -> tuple[tuple[Any, ...], ...]:
        return tuple((c.id, c.slot, c.pasid, c.partition_id, c.hsa_addr, c.msix, c.priority_band,
                      c.dpm, c.hung, c.submitted, c.completed, c.failed, tuple(c.history),
                      c.cert_log)
                     for c in self.contexts.values()) + ((self.next_id,),)  # fmt: skip

    def load(self, st: tuple[tuple[Any, ...], ...]) -> None:
        *ctxs, (self.next_id,) = st
        self.contexts = {}
        for c in ctxs:
            hc = HwContext(*c[:12], history=list(c[12]),
                           cert_log=tuple(tuple(s) for s in c[13]) if len(c) > 13 else ())
            self.contexts[hc.slot] = hc

    def release_pasid(self, pasid: int) -> int:
        gone = [s for s, c in self.contexts.items() if c.pasid == pasid]
        for s in gone:
            del self.contexts[s]
        return len(gone)

    def status(self) -> list[dict[str, Any]]:
        return [{"id": c.id, "slot": c.slot, "pasid": c.pasid, "msix": c.msix, "dpm": c.dpm,
                 "hung": c.hung, "submitted": c.submitted, "completed": c.completed,
                 "failed": c.failed, "cert_log_ucs": [s[0] for s in c.cert_log]} for c in sorted(self.contexts.values(), key=lambda c: c.id)]  # fmt: skip
