"""The emulated AIE2 management firmware (MERT): boot handshake and the mgmt opcodes.

Booted by PSP START. It publishes ``mgmt_mbox_chann_info`` in SRAM, opens the management
channel (channel 0, MSI-X vector 0) and writes the info's device address into FW_ALIVE.
Requests are served from :attr:`MgmtFirmware.ops`, a table keyed by opcode; later blocks
(hardware contexts) add their opcodes with :meth:`MgmtFirmware.register` and open
per-context user channels with :meth:`MgmtFirmware.attach_channel`.

Dispatch rules, in order:
1. opcode not in the table, or gated off by the running image's protocol version
   (``chip.has_feature(opcode name, protocol)``) -> 4-byte ``{RTOS_INVALID_OP}``;
2. firmware suspended and the op is not allowed then -> ``MGMT_ERT_BUSY``;
3. request payload of the wrong size -> ``RTOS_INVALID_INPUT_BUF``;
4. the handler. Error responses keep the op's normal response size (status, then zeros).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import ClassVar, NamedTuple

from ..chips import Chip
from ..clock import Clock
from ..iommu import Iommu, IommuFault
from ..regio import RegisterFile
from .dpt import BUF_MAX, BUF_MIN, KIND_LOG, KIND_TRACE, DptRing, log_record, trace_record
from .image import FirmwareImage
from .mailbox import MailboxChannel, MailboxEngine, Message
from .messages import (
    AIE_ERROR_ENTRY,
    ASYNC_EVENT_HDR,
    COL_STATUS,
    DPT_CONSTS,
    LAYOUTS,
    MGMT_INFO,
    MGMT_INFO_MAGIC,
    MGMT_QUERIES,
    MSG_ID_MAGIC,
    STATUS_ONLY,
    TILE_INFO_FIELDS,
    UPDATE_PROPERTY_TIME_QUOTA,
    AieModule,
    AsyncEventType,
    FwLogDest,
    FwLogLevel,
    FwTraceDest,
    Layout,
    Opcode,
    Status,
)

log = logging.getLogger(__name__)
#: each opcode's response packer and the SUCCESS status, looked up once (every answer)
_OK_PACK = {op: lay.resp.pack for op, lay in LAYOUTS.items()}
#: QUERY_AIE_TILE_INFO's answer per chip (by id, the chip kept beside it): the tile geometry
#: is the chip's and constant, and building the answer costs more than the rest of a message
_TILE_INFO: dict[int, tuple[Chip, bytes]] = {}
_SUCCESS = int(Status.SUCCESS)

MGMT_CHANNEL = 0
MGMT_MSI_ID = 0
ASYNC_EVENT_MAX = 16  # emulator-chosen limit of outstanding REGISTER_ASYNC_EVENT_MSG
ASYNC_POSTED_MAX = 16  # emulator-chosen: posted async events kept for status

#: A handler gets the channel, the message and the decoded request fields; it returns the
#: response payload (exactly ``layout.resp.size`` bytes) or None to answer later.
OpFn = Callable[[MailboxChannel, Message, tuple], "bytes | None"]


class Op(NamedTuple):
    """One mgmt opcode's handler (a tuple: a restore builds about twenty of them)."""

    layout: Layout
    fn: OpFn
    when_suspended: bool = False


@dataclass
class AsyncEvent:
    """A REGISTER_ASYNC_EVENT_MSG held until an event happens."""

    chan: MailboxChannel
    msg: Message
    buf_addr: int
    buf_size: int


@dataclass
class MgmtState:
    suspended: bool = False
    mgmt_pasid: int = 0
    runtime_config: dict[int, int] = field(default_factory=dict)
    time_quota_us: dict[int, int] = field(default_factory=dict)
    time_offset_ns: int = 0
    #: the log and trace rings (docs/spec/firmware.md §8a), None while not configured
    log: DptRing | None = None
    trace: DptRing | None = None
    trace_categories: int = 0


@dataclass(frozen=True)
class PostedEvent:
    """An async event the firmware posted: which held REGISTER_ASYNC_EVENT_MSG it answered
    (None: none was held and the event was lost, as on silicon) with what status."""

    time_ns: int
    event_type: int
    answered_id: int | None
    status: int
    data: bytes

    def status_dict(self) -> dict:
        """For ``status`` (docs/spec/operator.md §6): names, and an AIE error's entries."""
        errors = []
        if self.event_type == AsyncEventType.AIE_ERROR and len(self.data) >= ASYNC_EVENT_HDR.size:
            count = ASYNC_EVENT_HDR.unpack_from(self.data)[0]
            for off in range(ASYNC_EVENT_HDR.size, len(self.data) - AIE_ERROR_ENTRY.size + 1,
                             AIE_ERROR_ENTRY.size)[:count]:
                row, col, _, module, event, _ = AIE_ERROR_ENTRY.unpack_from(self.data, off)
                errors.append({"row": row, "col": col, "module": _name(AieModule, module),
                               "event": event})
        return {"time_ns": self.time_ns, "type": _name(AsyncEventType, self.event_type),
                "answered_id": self.answered_id, "delivered": self.answered_id is not None,
                "status": _name(Status, self.status), "errors": errors}


def _name(table: type, value: int) -> str:
    try:
        return str(table(value).name)
    except ValueError:
        return f"{value:#x}"


@dataclass(frozen=True)
class MgmtFwState:
    """Saved state of one firmware boot (docs/spec/device.md §4). Held async events name
    their channel by index; the ops table is rebuilt by booting the same image."""

    VERSION: ClassVar[int] = 1
    image: FirmwareImage
    suspended: bool
    mgmt_pasid: int
    runtime_config: tuple[tuple[int, int], ...]
    time_quota_us: tuple[tuple[int, int], ...]
    time_offset_ns: int
    #: (channel index, opcode, message id, payload, buffer address, buffer size)
    async_events: tuple[tuple[int, int, int, bytes, int, int], ...]
    #: the async events posted in this boot (the last ASYNC_POSTED_MAX) and their count
    posted: tuple[PostedEvent, ...] = ()
    posted_total: int = 0
    #: (kind, addr, size, pasid, tail) of the log and trace rings, and the trace categories
    rings: tuple[tuple[int, int, int, int, int], ...] = ()
    trace_categories: int = 0


def status_resp(layout: Layout, status: int) -> bytes:
    """An error response of the op's normal size: the status word then zeros."""
    return STATUS_ONLY.pack(status) + bytes(layout.resp.size - 4)


class MgmtFirmware:
    """One boot of the management firmware (created by PSP START, dropped by stop())."""

    def __init__(self, chip: Chip, regs: RegisterFile, engine: MailboxEngine, iommu: Iommu,
                 clock: Clock, image: FirmwareImage, stats: dict[str, int]) -> None:
        self.chip, self.regs, self.engine, self.iommu = chip, regs, engine, iommu
        self.clock, self.image, self.stats = clock, image, stats
        self.protocol = image.protocol
        self.state = MgmtState()
        self.async_events: list[AsyncEvent] = []
        self.posted: deque[PostedEvent] = deque(maxlen=ASYNC_POSTED_MAX)
        self.posted_total = 0
        self.mgmt: MailboxChannel | None = None
        self.ops: dict[int, Op] = {}
        #: (protocol, the published query replies) while current (:meth:`query_replies`)
        self._queries: tuple[tuple[int, int], tuple[tuple[int, int, bytes], ...]] | None = None
        # supports() per opcode, for the protocol it was decided under: a message costs
        # a dict lookup, not an enum and a feature-table walk
        self._offered: dict[int, bool] = {}
        self._offered_for = self.protocol
        for opcode, fn, susp in (
            (Opcode.SUSPEND, self._suspend, False),
            (Opcode.RESUME, self._resume, True),
            (Opcode.ASSIGN_MGMT_PASID, self._assign_pasid, False),
            (Opcode.GET_FIRMWARE_VERSION, self._fw_version, False),
            (Opcode.SET_RUNTIME_CONFIG, self._set_runtime_config, False),
            (Opcode.GET_RUNTIME_CONFIG, self._get_runtime_config, False),
            (Opcode.REGISTER_ASYNC_EVENT_MSG, self._register_async_event, False),
            (Opcode.UPDATE_PROPERTY, self._update_property, False),
            (Opcode.GET_DEV_REVISION, self._dev_revision, False),
            (Opcode.CALIBRATE_TIME, self._calibrate_time, False),
            (Opcode.QUERY_AIE_TILE_INFO, self._tile_info, False),
            (Opcode.QUERY_AIE_VERSION, self._aie_version, False),
            (Opcode.GET_PROTOCOL_VERSION, self._protocol_version, False),
            (Opcode.CONFIG_FW_LOG, self._config_fw_log, False),
            (Opcode.START_FW_TRACE, self._start_fw_trace, False),
            (Opcode.STOP_FW_TRACE, self._stop_fw_trace, False),
            (Opcode.SET_FW_TRACE_CATEGORIES, self._set_trace_categories, False),
        ):
            self.register(opcode, LAYOUTS[opcode], fn, susp)

    # -- extension points ----------------------------------------------------------------
    def register(self, opcode: int, layout: Layout, fn: OpFn, when_suspended: bool = False) -> None:
        """Add or replace the handler of one mgmt opcode."""
        self.ops[int(opcode)] = Op(layout, fn, when_suspended)
        self._offered.clear()
        self._queries = None

    def attach_channel(self, index: int, handler: Callable[[MailboxChannel, Message], None],
                       vector: int, slot: int | None = None, name: str = "") -> MailboxChannel:
        """Open a further channel (a hardware context's user channel) with its own handler."""
        return self.engine.open_channel(index, handler, vector, slot, name)

    def supports(self, opcode: int) -> bool:
        """Is the opcode implemented and offered by this image's protocol version?"""
        if self._offered_for != self.protocol:
            self._offered.clear()
            self._offered_for = self.protocol
        hit = self._offered.get(opcode)
        if hit is None:
            hit = self._offered[opcode] = self._decide(opcode)
        return hit

    def query_replies(self) -> tuple[tuple[int, int, bytes], ...]:
        """(opcode, request size, reply payload) of each mgmt query (``MGMT_QUERIES``) this
        boot answers with SUCCESS while it runs, for the daemon's C path to send as they are
        (docs/spec/jobs.md §7 "Management queries"). Each is the op's own handler's answer
        to a zeroed request, so Python stays the one definition; an op this image does not
        offer, or whose handler another block replaced, is left out (its messages stay
        Python's). Kept while the protocol and the ops table are unchanged."""
        got, chan = self._queries, self.mgmt
        if chan is None:  # not booted
            return ()
        if got is not None and got[0] == self.protocol:
            return got[1]
        rows = []
        for opcode in MGMT_QUERIES:
            op = self.ops.get(opcode)
            if (op is None or not self.supports(opcode)
                    or getattr(op.fn, "__self__", None) is not self):
                continue
            req = bytes(op.layout.req.size)
            resp = op.fn(chan, Message(opcode, MSG_ID_MAGIC, req), op.layout.req.unpack(req))
            if (resp is not None and len(resp) == op.layout.resp.size
                    and STATUS_ONLY.unpack_from(resp)[0] == _SUCCESS):
                rows.append((int(opcode), len(req), bytes(resp)))
        self._queries = (self.protocol, tuple(rows))
        return self._queries[1]

    def _decide(self, opcode: int) -> bool:
        if opcode not in self.ops:
            return False
        try:
            name = Opcode(opcode).name
        except ValueError:
            return True
        return self.chip.has_feature(name, self.protocol)

    # -- lifecycle ------------------------------------------------------------------------
    def boot(self) -> None:
        """Publish the channel info, open the mgmt channel, then signal FW_ALIVE."""
        ch = self.engine.open_channel(MGMT_CHANNEL, self.dispatch, MGMT_MSI_ID, name="mgmt")
        self.mgmt = ch
        size = ch.ring_size
        info = MGMT_INFO.pack(
            ch.x2i_tail_reg, ch.x2i_head_reg, ch.x2i_buf, size,
            ch.i2x_tail_reg, ch.i2x_head_reg, ch.i2x_buf, size,
            MGMT_INFO_MAGIC, MGMT_MSI_ID, self.protocol[0], self.protocol[1], 0, 0, 0, 0,
        )  # fmt: skip
        addr = self.chip.mailbox.mgmt_info  # type: ignore[union-attr]
        self.regs.span(addr, MGMT_INFO.size)[:] = info
        self.regs.write_role("psp.pwaitmode", 0)
        self.regs.write_role("sram.fw_alive", addr)

    def stop(self) -> None:
        """Firmware stops: every channel and held event goes away."""
        self.engine.close_all()
        self.async_events.clear()
        self.mgmt = None
        self.state.suspended = False
        self.regs.write_role("psp.pwaitmode", 0)

    # -- state (docs/spec/device.md §4) -------------------------------------------------------
    def save(self) -> MgmtFwState:
        st = self.state
        return MgmtFwState(
            self.image, st.suspended, st.mgmt_pasid, tuple(st.runtime_config.items()),
            tuple(st.time_quota_us.items()), st.time_offset_ns,
            tuple((ev.chan.index, ev.msg.opcode, ev.msg.id, ev.msg.payload, ev.buf_addr,
                   ev.buf_size) for ev in self.async_events), tuple(self.posted), self.posted_total,
            tuple((r.kind, r.addr, r.size, r.pasid, r.tail) for r in (st.log, st.trace) if r is not None),
            st.trace_categories)

    def load(self, st: MgmtFwState) -> None:
        """Take the saved boot state; the engine's channels are already restored."""
        self.state = MgmtState(st.suspended, st.mgmt_pasid, dict(st.runtime_config),
                               dict(st.time_quota_us), st.time_offset_ns,
                               trace_categories=st.trace_categories)
        for kind, addr, size, pasid, tail in st.rings:
            ring = DptRing(kind, addr, size, pasid, tail)
            if kind == KIND_LOG:
                self.state.log = ring
            else:
                self.state.trace = ring
        self.mgmt = self.engine.channels.get(MGMT_CHANNEL)
        self.posted = deque(st.posted, maxlen=ASYNC_POSTED_MAX)
        self.posted_total = st.posted_total
        self.async_events = []
        for index, opcode, mid, payload, addr, size in st.async_events:
            chan = self.engine.channels.get(index)
            if chan is not None:
                self.async_events.append(AsyncEvent(chan, Message(opcode, mid, payload), addr, size))

    def _set_log(self, ring: DptRing | None) -> None:
        """The firmware log ring comes or goes: while one runs, C answers no job (each is
        logged; docs/spec/jobs.md §7)."""
        self.state.log = ring
        self.engine.gen += 1

    def _set_trace(self, ring: DptRing | None) -> None:
        """The trace ring comes or goes (as :meth:`_set_log`)."""
        self.state.trace = ring
        self.engine.gen += 1

    # -- dispatch -------------------------------------------------------------------------
    def dispatch(self, chan: MailboxChannel, msg: Message) -> None:
        op = self.ops.get(msg.opcode)
        if op is None or not self.supports(msg.opcode):
            self.stats["unknown_ops"] = self.stats.get("unknown_ops", 0) + 1
            chan.reply(msg, STATUS_ONLY.pack(Status.RTOS_INVALID_OP))
            return
        if self.state.suspended and not op.when_suspended:
            chan.reply(msg, status_resp(op.layout, Status.MGMT_ERT_BUSY))
            return
        if len(msg.payload) != op.layout.req.size:
            chan.reply(msg, status_resp(op.layout, Status.RTOS_INVALID_INPUT_BUF))
            return
        resp = op.fn(chan, msg, op.layout.req.unpack(msg.payload))
        if resp is not None:
            chan.reply(msg, resp)

    def _ok(self, opcode: Opcode, *fields: int) -> bytes:
        return _OK_PACK[opcode](_SUCCESS, *fields)

    # -- handlers -------------------------------------------------------------------------
    def _suspend(self, chan: MailboxChannel, msg: Message, req: tuple) -> bytes:
        self.state.suspended = True
        self.engine.gen += 1  # C answers nothing while suspended (docs/spec/jobs.md §7)
        self.regs.write_role("psp.pwaitmode", 1)
        return self._ok(Opcode.SUSPEND)

    def _resume(self, chan: MailboxChannel, msg: Message, req: tuple) -> bytes:
        self.state.suspended = False
        self.engine.gen += 1
        self.regs.write_role("psp.pwaitmode", 0)
        return self._ok(Opcode.RESUME)

    def _assign_pasid(self, chan: MailboxChannel, msg: Message, req: tuple) -> bytes:
        self.state.mgmt_pasid = req[0]
        return self._ok(Opcode.ASSIGN_MGMT_PASID)

    def _fw_version(self, chan: MailboxChannel, msg: Message, req: tuple) -> bytes:
        return self._ok(Opcode.GET_FIRMWARE_VERSION, *self.image.version)

    def _set_runtime_config(self, chan: MailboxChannel, msg: Message, req: tuple) -> bytes:
        ctype, value = req
        if ctype not in self.chip.runtime_types:
            return status_resp(LAYOUTS[Opcode.SET_RUNTIME_CONFIG], Status.RTOS_INVALID_PARAM)
        self.state.runtime_config[ctype] = value
        return self._ok(Opcode.SET_RUNTIME_CONFIG)

    def _get_runtime_config(self, chan: MailboxChannel, msg: Message, req: tuple) -> bytes:
        (ctype,) = req
        if ctype not in self.chip.runtime_types:
            return status_resp(LAYOUTS[Opcode.GET_RUNTIME_CONFIG], Status.RTOS_INVALID_PARAM)
        return self._ok(Opcode.GET_RUNTIME_CONFIG, self.state.runtime_config.get(ctype, 0))

    def _update_property(self, chan: MailboxChannel, msg: Message, req: tuple) -> bytes:
        ptype, ctx_id, _rsvd, quota, _resv = req
        if ptype != UPDATE_PROPERTY_TIME_QUOTA:
            return status_resp(LAYOUTS[Opcode.UPDATE_PROPERTY], Status.RTOS_PROPERTY_UPDATE_FAILED)
        self.state.time_quota_us[ctx_id] = quota
        return self._ok(Opcode.UPDATE_PROPERTY)

    def _dev_revision(self, chan: MailboxChannel, msg: Message, req: tuple) -> bytes:
        rev = self.chip.firmware.dev_revision
        fuse = self.chip.firmware.raw_fuse if self.chip.firmware.raw_fuse is not None else rev
        return self._ok(Opcode.GET_DEV_REVISION, rev, fuse)

    def _calibrate_time(self, chan: MailboxChannel, msg: Message, req: tuple) -> bytes:
        self.state.time_offset_ns = req[0] - self.clock.now_ns()
        return self._ok(Opcode.CALIBRATE_TIME)

    def _aie_version(self, chan: MailboxChannel, msg: Message, req: tuple) -> bytes:
        major, minor = self.chip.firmware.aie_version
        return self._ok(Opcode.QUERY_AIE_VERSION, major, minor)

    def _tile_info(self, chan: MailboxChannel, msg: Message, req: tuple) -> bytes:
        chip = self.chip
        hit = _TILE_INFO.get(id(chip))
        if hit is None or hit[0] is not chip:
            major, minor = chip.firmware.aie_version
            tiles = asdict(chip.tiles) if chip.tiles is not None else {}
            vals = {**tiles, "major": major, "minor": minor, "rsvd": 0}
            layout = LAYOUTS[Opcode.QUERY_AIE_TILE_INFO]
            size = COL_STATUS.size  # the driver's col_size: one column of QUERY_COL_STATUS
            if len(_TILE_INFO) >= 64:  # chips made on the fly (tests): keep it bounded
                _TILE_INFO.clear()
            hit = _TILE_INFO[id(chip)] = (chip, layout.resp.pack(
                Status.SUCCESS, size, *(int(vals.get(f, 0)) for f in TILE_INFO_FIELDS)))
        return hit[1]

    def _protocol_version(self, chan: MailboxChannel, msg: Message, req: tuple) -> bytes:
        return self._ok(Opcode.GET_PROTOCOL_VERSION, *self.protocol)

    def _register_async_event(self, chan: MailboxChannel, msg: Message, req: tuple) -> bytes | None:
        buf_addr, buf_size = req
        if len(self.async_events) >= max(ASYNC_EVENT_MAX, self.chip.cols):
            return status_resp(LAYOUTS[Opcode.REGISTER_ASYNC_EVENT_MSG],
                               Status.RTOS_ASYNC_EVENT_MSGS_FULL)
        self.async_events.append(AsyncEvent(chan, msg, buf_addr, buf_size))
        return None  # answered only when an event happens

    # -- log and trace rings (docs/spec/firmware.md §8a) --------------------------------------
    def _ring(self, kind: int, addr: int, size: int) -> tuple[int, DptRing | None]:
        """A ring the driver hands over, checked: a status and the ring (None on error)."""
        if not BUF_MIN <= size <= BUF_MAX:
            return Status.MGMT_ERT_DRAM_BUFFER_SIZE_INVALID, None
        ring = DptRing(kind, addr, size, self.state.mgmt_pasid)
        if not ring.start(self.iommu):
            self.stats["iommu_faults"] += 1
            return Status.RTOS_INVALID_INPUT_BUF, None
        return Status.SUCCESS, ring

    def _config_fw_log(self, chan: MailboxChannel, msg: Message, req: tuple) -> bytes:
        addr, size = req[0], req[1]
        lay = LAYOUTS[Opcode.CONFIG_FW_LOG]
        if size == 0:  # detach
            self._set_log(None)
            return lay.resp.pack(Status.SUCCESS, 0, 0, *(0,) * 5)
        status, ring = self._ring(KIND_LOG, addr, size)
        if ring is None:
            return status_resp(lay, status)
        self._set_log(ring)
        self.fw_log(FwLogLevel.INFO, f"fw log: {ring.ring >> 10} KiB ring at {addr:#x}")
        return lay.resp.pack(Status.SUCCESS, 0, 0, *(0,) * 5)  # no MSI: the driver polls

    def _start_fw_trace(self, chan: MailboxChannel, msg: Message, req: tuple) -> bytes:
        categories, dest, _ts, addr, size = req
        lay = LAYOUTS[Opcode.START_FW_TRACE]
        if dest not in (FwTraceDest.DEBUG_BUS, FwTraceDest.DRAM):
            return status_resp(lay, Status.MGMT_ERT_INVALID_PARAM)
        status, ring = self._ring(KIND_TRACE, addr, size)
        if ring is None:
            return status_resp(lay, status)
        self._set_trace(ring if dest == FwTraceDest.DRAM else None)
        self.state.trace_categories = categories
        return lay.resp.pack(Status.SUCCESS, 0, self.now_ns(), 0)

    def _stop_fw_trace(self, chan: MailboxChannel, msg: Message, req: tuple) -> bytes:
        self._set_trace(None)
        self.state.trace_categories = 0
        return self._ok(Opcode.STOP_FW_TRACE)

    def _set_trace_categories(self, chan: MailboxChannel, msg: Message, req: tuple) -> bytes:
        if self.state.trace is None:
            return status_resp(LAYOUTS[Opcode.SET_FW_TRACE_CATEGORIES], Status.RTOS_INVALID_OP)
        self.state.trace_categories = req[0]
        return self._ok(Opcode.SET_FW_TRACE_CATEGORIES)

    def now_ns(self) -> int:
        """The firmware clock: the host's after CALIBRATE_TIME, else time since power-on."""
        return max(0, self.clock.now_ns() + self.state.time_offset_ns)

    def fw_log(self, level: int, text: str, module: int = 0, line: int = 0) -> None:
        """One line into the log ring when one is configured, the destination is DRAM (the
        driver sets it with the ring; unset counts as DRAM) and ``level`` is within the
        runtime-config level (unset: ERROR, the driver's default)."""
        ring = self.state.log
        if ring is None:
            return
        cfg = self.state.runtime_config
        if cfg.get(DPT_CONSTS["RT_LOG_DESTINATION"], FwLogDest.DRAM) != FwLogDest.DRAM:
            return
        if not 0 < level <= cfg.get(DPT_CONSTS["RT_LOG_LEVEL"], FwLogLevel.ERROR):
            return
        if not ring.append(self.iommu, log_record(self.now_ns(), level, module, line, text)):
            self.stats["iommu_faults"] += 1
            self._set_log(None)

    def fw_trace(self, category: int, event: int, context_id: int, arg: int) -> None:
        """One record into the trace ring when one runs and ``category`` is enabled."""
        ring = self.state.trace
        if ring is None or not self.state.trace_categories & category:
            return
        if not ring.append(self.iommu, trace_record(self.now_ns(), category, event, context_id, arg)):
            self.stats["iommu_faults"] += 1
            self._set_trace(None)

    # -- async events -----------------------------------------------------------------------
    def post_async_event(self, event_type: int, data: bytes) -> bool:
        """Report an event through the oldest held REGISTER_ASYNC_EVENT_MSG.

        ``data`` goes into the registered host buffer (mgmt PASID); an IOMMU fault or a
        too-small buffer is answered with RTOS_INVALID_INPUT_BUF. False if none is held.
        """
        self.posted_total += 1
        if not self.async_events:
            self.posted.append(PostedEvent(self.clock.now_ns(), event_type, None, 0, bytes(data)))
            return False
        ev = self.async_events.pop(0)
        layout = LAYOUTS[Opcode.REGISTER_ASYNC_EVENT_MSG]
        status = Status.SUCCESS
        if len(data) > ev.buf_size:
            status = Status.RTOS_INVALID_INPUT_BUF
        else:
            try:
                self.iommu.write(ev.buf_addr, data, self.state.mgmt_pasid)
            except IommuFault as exc:
                self.stats["iommu_faults"] = self.stats.get("iommu_faults", 0) + 1
                log.warning("async event buffer: %s", exc)
                status = Status.RTOS_INVALID_INPUT_BUF
        self.posted.append(PostedEvent(self.clock.now_ns(), event_type, ev.msg.id, status,
                                       bytes(data)))
        ev.chan.reply(ev.msg, layout.resp.pack(status, event_type))
        return True

    def status(self) -> dict:
        return {
            "version": self.image.version_str,
            "protocol": f"{self.protocol[0]}.{self.protocol[1]}",
            "suspended": self.state.suspended,
            "mgmt_pasid": self.state.mgmt_pasid,
            "runtime_config": {str(k): v for k, v in sorted(self.state.runtime_config.items())},
            "async_events_pending": [
                {"id": ev.msg.id, "buf_addr": ev.buf_addr, "buf_size": ev.buf_size}
                for ev in self.async_events
            ],
            "async_posted": [ev.status_dict() for ev in self.posted],
            "async_posted_total": self.posted_total,
        }
