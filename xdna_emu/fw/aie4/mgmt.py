"""The emulated AIE4 management firmware: mailbox_info, the one mgmt channel and its opcodes.

Booted by PSP START (or from reset on a VF, whose firmware is the PF's). It opens the mgmt
channel on the chip's ``[aie4]`` rings and registers and then publishes ``mailbox_info`` at
ring-buffer BAR offset 0 with valid=1; every address in it is a BAR offset and it names
the mgmt MSI-X vector (``i2x_msi_idx``). AIE4 has no interrupt-ack register. Stopping clears
valid and closes the channel. docs/spec/aie4.md §4-§5.

Dispatch rules, in order: an opcode without a handler -> status-only ``NOTSUPP``; a request
of the wrong size (SET_RUNTIME_CONFIG: 4 + its type's payload) -> ``ERROR`` at the op's
normal response size; otherwise the handler.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from ...chips import Aie4Layout, Chip
from ...clock import Clock
from ...iommu import Iommu, IommuFault
from ...regio import RegisterFile
from ..iface import Message as TableMessage
from ..iface import Struct
from ..image import FirmwareImage
from ..mailbox import ChannelEngine, ChannelState, MailboxChannel, MailboxState, Message
from .messages import (
    MAILBOX_INFO,
    MBOX_INFO_VALID,
    MESSAGES,
    RUNTIME_CONFIG_PAYLOADS,
    TILE_INFO_FIELDS,
    WORK_BUFFER_SIZE,
    AsyncEventType,
    Opcode,
    PowerMode,
    Status,
)

log = logging.getLogger(__name__)

MGMT_CHANNEL = 0
MGMT_MSI_IDX = 0  # emulator-chosen: the mgmt channel uses MSI-X vector 0
RSP_STATUS = MESSAGES[Opcode.DRAM_WORK_BUFFER].resp  # a status-only response


# -- the mgmt channel on the AIE4 layout ----------------------------------------------------
class Aie4Channel(MailboxChannel):
    """The AIE2 ring engine on AIE4 geometry: registers and rings from ``[aie4]``, no
    interrupt register."""

    def __init__(self, engine: Aie4Mailbox, index: int, vector: int, handler: Any,
                 name: str, serial: int = 0) -> None:  # noqa: D107
        lay = engine.layout
        self.engine, self.index, self.slot, self.vector = engine, index, 0, vector  # type: ignore[assignment]
        self.handler, self.name, self.serial = handler, name, serial
        self.ring_size = lay.ring_size
        self.x2i_buf, self.i2x_buf = lay.x2i_ring, lay.i2x_ring
        self.x2i_tail_reg = lay.mgmt_regs + Aie4Layout.X2I_TAIL
        self.x2i_head_reg = lay.mgmt_regs + Aie4Layout.X2I_HEAD
        self.i2x_tail_reg = lay.mgmt_regs + Aie4Layout.I2X_TAIL
        self.i2x_head_reg = lay.mgmt_regs + Aie4Layout.I2X_HEAD
        self.intr_reg = None
        self._x2i = engine.regs.span(self.x2i_buf, self.ring_size)
        self._i2x = engine.regs.span(self.i2x_buf, self.ring_size)
        self.x2i_head = 0
        self.i2x_tail = 0
        self.outq: deque[bytes] = deque()
        self.open = True
        self.error: str | None = None
        self.msgs_in = 0
        self.msgs_out = 0


class Aie4Mailbox(ChannelEngine):
    """The AIE4 device's one mailbox channel and the routing of its trapped registers; the
    engine the AIE2 one shares (interposer, save, status), so fault injection and observers
    work unchanged."""

    def __init__(self, chip: Chip, regs: RegisterFile, irq: Callable[[int], None],
                 stats: dict[str, int]) -> None:
        if chip.aie4 is None:
            raise ValueError(f"{chip.name} has no AIE4 layout")
        super().__init__(chip, regs, irq, stats)
        self.layout: Aie4Layout = chip.aie4

    def traps(self) -> dict[tuple[int, int], Callable[[int], None]]:
        base = self.layout.mgmt_regs
        return {
            self.chip.dev_to_bar(base + Aie4Layout.X2I_TAIL): self._x2i_tail,
            self.chip.dev_to_bar(base + Aie4Layout.I2X_HEAD): self._i2x_head,
        }

    def _x2i_tail(self, value: int) -> None:
        ch = self.channels.get(MGMT_CHANNEL)
        if ch is not None:
            ch.on_x2i_tail(value)

    def _i2x_head(self, value: int) -> None:
        ch = self.channels.get(MGMT_CHANNEL)
        if ch is not None:
            ch.on_i2x_head(value)

    def open_channel(self, handler: Any, vector: int) -> MailboxChannel:
        if MGMT_CHANNEL in self.channels:
            raise ValueError("mgmt channel already open")
        ch = Aie4Channel(self, MGMT_CHANNEL, vector, handler, "mgmt", self.next_serial)
        self.next_serial += 1
        ch.init_registers()
        self.channels[MGMT_CHANNEL] = ch
        return ch

    def load(self, st: MailboxState, handler: Callable[[ChannelState], Any]) -> None:
        self.close_all()
        for cs in st.channels:
            ch = Aie4Channel(self, cs.index, cs.vector, handler(cs), cs.name, cs.serial)
            ch.load(cs)
            self.channels[cs.index] = ch
        self.next_serial = st.next_serial


# -- the firmware -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Aie4FwState:
    """Saved state of one AIE4 firmware boot (docs/spec/device.md §4)."""

    VERSION: ClassVar[int] = 1
    image: FirmwareImage | None
    cert: FirmwareImage | None
    time_base_ns: int | None
    work_buffer: tuple[int, int, int] | None  # addr, pasid, size
    runtime_config: tuple[tuple[int, bytes], ...]
    partitions: tuple[tuple[int, int, int], ...]  # id, col_start, col_count
    next_partition: int
    power_mode: int
    #: held ASYNC_EVENT_MSG: (message id, addr, pasid, size)
    async_events: tuple[tuple[int, int, int, int], ...]
    num_vfs: int = 0  # a PF's CREATE_VFS count


@dataclass
class HeldEvent:
    """An ASYNC_EVENT_MSG held until an event happens."""

    msg_id: int
    addr: int
    pasid: int
    size: int


#: A handler gets the message and its decoded request; it returns the response payload or
#: None to answer later.
OpFn = Callable[[Message, dict[str, Any]], "bytes | None"]


def error_resp(m: TableMessage, status: int) -> bytes:
    """An error of the op's normal response size: the status word, then zeros."""
    return RSP_STATUS.pack(status=status) + bytes(max(0, m.resp.size - RSP_STATUS.size))


class Aie4Firmware:
    """One boot of the AIE4 management firmware (PSP START, or reset on a VF)."""

    def __init__(self, chip: Chip, regs: RegisterFile, engine: Aie4Mailbox, iommu: Iommu,
                 clock: Clock, image: FirmwareImage | None, cert: FirmwareImage | None,
                 stats: dict[str, int]) -> None:
        self.chip, self.regs, self.engine, self.iommu = chip, regs, engine, iommu
        self.clock, self.image, self.cert, self.stats = clock, image, cert, stats
        assert chip.aie4 is not None
        self.layout = chip.aie4
        self.time_base_ns: int | None = None
        self.work_buffer: tuple[int, int, int] | None = None
        self.runtime_config: dict[int, bytes] = {}
        self.partitions: dict[int, tuple[int, int]] = {}
        self.next_partition = 1
        self.power_mode = int(PowerMode.DEFAULT)
        self.async_events: list[HeldEvent] = []
        self.mgmt: MailboxChannel | None = None
        stats.setdefault("unknown_ops", 0)
        self.ops: dict[int, OpFn] = {
            Opcode.ECHO: self._echo,
            Opcode.IDENTIFY: self._identify,
            Opcode.QUERY_CERT_FIRMWARE_VERSION: self._cert_version,
            Opcode.AIE_VERSION_INFO: self._aie_version,
            Opcode.AIE_TILE_INFO: self._tile_info,
            Opcode.CALIBRATE_CLOCK: self._calibrate,
            Opcode.DRAM_WORK_BUFFER: self._work_buffer,
            Opcode.RELEASE_DRAM_WORK_BUFFER: self._release_work_buffer,
            Opcode.SET_RUNTIME_CONFIG: self._set_runtime_config,
            Opcode.GET_RUNTIME_CONFIG: self._get_runtime_config,
            Opcode.CREATE_PARTITION: self._create_partition,
            Opcode.DESTROY_PARTITION: self._destroy_partition,
            Opcode.ASYNC_EVENT_MSG: self._async_event,
            Opcode.POWER_OVERRIDE: self._power_override,
        }
        self.num_vfs = 0  # VFs the PF's firmware serves (docs/spec/aie4.md §10)
        if chip.function == "pf":
            self.ops[Opcode.CREATE_VFS] = self._create_vfs
            self.ops[Opcode.DESTROY_VFS] = self._destroy_vfs

    # -- lifecycle ------------------------------------------------------------------------
    def boot(self) -> None:
        """Open the mgmt channel, then publish mailbox_info with valid=1 (the driver polls it)."""
        self.mgmt = self.engine.open_channel(self.dispatch, MGMT_MSI_IDX)
        self.publish()

    def publish(self) -> None:
        """Write mailbox_info: BAR offsets of the channel, protocol and mgmt vector."""
        lay, chip = self.layout, self.chip
        proto = self.image.protocol if self.image is not None else self._chip_protocol()

        def off(addr: int, size: int = 4) -> int:
            return chip.dev_to_bar(addr, size)[1]

        info = MAILBOX_INFO.pack(
            valid=MBOX_INFO_VALID, protocol_major=proto[0], protocol_minor=proto[1],
            x2i_tail_offset=off(lay.mgmt_regs + Aie4Layout.X2I_TAIL),
            x2i_head_offset=off(lay.mgmt_regs + Aie4Layout.X2I_HEAD),
            x2i_buffer_addr=off(lay.x2i_ring, lay.ring_size), x2i_buffer_size=lay.ring_size,
            i2x_tail_offset=off(lay.mgmt_regs + Aie4Layout.I2X_TAIL),
            i2x_head_offset=off(lay.mgmt_regs + Aie4Layout.I2X_HEAD),
            i2x_buffer_addr=off(lay.i2x_ring, lay.ring_size), i2x_buffer_size=lay.ring_size,
            i2x_msi_idx=MGMT_MSI_IDX)  # fmt: skip
        self.regs.span(lay.mbox_info, MAILBOX_INFO.size)[:] = info

    def _chip_protocol(self) -> tuple[int, int]:
        major, minor = self.chip.firmware.protocol.split(".")
        return int(major), int(minor)

    def stop(self) -> None:
        """Clear mailbox_info.valid and close the channel (RELEASE_TMR, power-off, FLR)."""
        self.regs.write_dev(self.layout.mbox_info, 0)
        self.engine.close_all()
        self.mgmt = None
        self.async_events.clear()

    # -- dispatch ------------------------------------------------------------------------
    def dispatch(self, chan: MailboxChannel, msg: Message) -> None:
        try:
            op = Opcode(msg.opcode)
        except ValueError:
            op = None
        fn = self.ops.get(op) if op is not None else None
        if op is None or fn is None:
            self.stats["unknown_ops"] += 1
            chan.reply(msg, RSP_STATUS.pack(status=Status.NOTSUPP))
            return
        m = MESSAGES[op]
        if not self._size_ok(op, m, msg.payload):
            chan.reply(msg, error_resp(m, Status.ERROR))
            return
        req = m.req.unpack(msg.payload)
        resp = fn(msg, req)
        if resp is not None:
            chan.reply(msg, resp)

    def _size_ok(self, op: int, m: TableMessage, payload: bytes) -> bool:
        if op == Opcode.SET_RUNTIME_CONFIG:
            if len(payload) < m.req.size:
                return False
            kind = m.req.unpack(payload)["type"]
            body = RUNTIME_CONFIG_PAYLOADS.get(kind)
            # an unknown type is the handler's NOTSUPP; only a known type has a size
            return body is None or len(payload) == m.req.size + body.size
        return len(payload) == m.req.size

    def _resp(self, op: int, **fields: Any) -> bytes:
        return MESSAGES[op].resp.pack(**fields)

    # -- query handlers --------------------------------------------------------------------
    def _echo(self, msg: Message, req: dict[str, Any]) -> bytes:
        return self._resp(Opcode.ECHO, status=Status.SUCCESS, data=req["data"])

    def _identify(self, msg: Message, req: dict[str, Any]) -> bytes:
        ver = self.image.version if self.image is not None else _ints(self.chip.firmware.version)
        return self._resp(Opcode.IDENTIFY, status=Status.SUCCESS, major=ver[0], minor=ver[1],
                          patch=ver[2], build=ver[3])

    def _cert_version(self, msg: Message, req: dict[str, Any]) -> bytes:
        ver = (self.cert.version if self.cert is not None
               else _ints(self.chip.firmware.cert_version))
        digest = self.cert.digest.hex() if self.cert is not None else "0" * 40
        return self._resp(Opcode.QUERY_CERT_FIRMWARE_VERSION, status=Status.SUCCESS,
                          major=ver[0], minor=ver[1], git_hash=digest[:40].encode(),
                          date=b"2026-01-01", hotfix=ver[2], build=ver[3])

    def _aie_version(self, msg: Message, req: dict[str, Any]) -> bytes:
        major, minor = self.chip.firmware.aie_version
        return self._resp(Opcode.AIE_VERSION_INFO, status=Status.SUCCESS, major=major, minor=minor)

    def _tile_info(self, msg: Message, req: dict[str, Any]) -> bytes:
        m = MESSAGES[Opcode.AIE_TILE_INFO]
        tiles = self.chip.tiles
        if tiles is None:
            return error_resp(m, Status.ERROR)
        major, minor = self.chip.firmware.aie_version
        vals = {n: getattr(tiles, n) for n in TILE_INFO_FIELDS if hasattr(tiles, n)}
        return m.resp.pack(status=Status.SUCCESS, size=m.resp.size - 4, major=major,
                           minor=minor, **vals)

    # -- setup handlers ----------------------------------------------------------------------
    def _calibrate(self, msg: Message, req: dict[str, Any]) -> bytes:
        self.time_base_ns = req["time_base_ns"]
        return RSP_STATUS.pack(status=Status.SUCCESS)

    def _mapped(self, addr: int, size: int, pasid: int) -> bool:
        """The host buffer [addr, addr+size) is mapped for DMA in ``pasid``'s space."""
        try:
            self.iommu.translate(addr, 1, pasid)
            self.iommu.translate(addr + size - 1, 1, pasid)
        except IommuFault as exc:
            self.stats["iommu_faults"] = self.stats.get("iommu_faults", 0) + 1
            log.warning("AIE4 firmware: %s", exc)
            return False
        return True

    def _work_buffer(self, msg: Message, req: dict[str, Any]) -> bytes:
        addr, pasid, size = req["addr"], req["pasid"], req["size"]
        if (self.work_buffer is not None or size != WORK_BUFFER_SIZE
                or not self._mapped(addr, size, pasid)):
            return RSP_STATUS.pack(status=Status.ERROR)
        self.work_buffer = (addr, pasid, size)
        return RSP_STATUS.pack(status=Status.SUCCESS)

    def _release_work_buffer(self, msg: Message, req: dict[str, Any]) -> bytes:
        if self.work_buffer is None:
            return RSP_STATUS.pack(status=Status.ERROR)
        self.work_buffer = None
        return RSP_STATUS.pack(status=Status.SUCCESS)

    def _set_runtime_config(self, msg: Message, req: dict[str, Any]) -> bytes:
        kind = req["type"]
        if kind not in RUNTIME_CONFIG_PAYLOADS:
            return RSP_STATUS.pack(status=Status.NOTSUPP)
        self.runtime_config[kind] = bytes(msg.payload[MESSAGES[Opcode.SET_RUNTIME_CONFIG].req.size:])
        return RSP_STATUS.pack(status=Status.SUCCESS)

    def _get_runtime_config(self, msg: Message, req: dict[str, Any]) -> bytes:
        body: Struct | None = RUNTIME_CONFIG_PAYLOADS.get(req["type"])
        if body is None:
            return RSP_STATUS.pack(status=Status.NOTSUPP)
        data = self.runtime_config.get(req["type"], bytes(body.size))
        return RSP_STATUS.pack(status=Status.SUCCESS) + data

    def runtime_value(self, kind: int, field: str) -> int | None:
        """A field of the runtime config last set for ``kind`` (None: never set)."""
        data = self.runtime_config.get(kind)
        return RUNTIME_CONFIG_PAYLOADS[kind].unpack(data)[field] if data is not None else None

    def _create_partition(self, msg: Message, req: dict[str, Any]) -> bytes:
        start, count = req["col_start"], req["col_count"]
        m = MESSAGES[Opcode.CREATE_PARTITION]
        cols = set(range(start, start + count))
        used = {c for s, n in self.partitions.values() for c in range(s, s + n)}
        if count == 0 or start + count > self.chip.cols or cols & used:
            return error_resp(m, Status.ERROR)
        pid = self.next_partition
        self.next_partition += 1
        self.partitions[pid] = (start, count)
        return m.resp.pack(status=Status.SUCCESS, partition_id=pid)

    def _destroy_partition(self, msg: Message, req: dict[str, Any]) -> bytes:
        if self.partitions.pop(req["partition_id"], None) is None:
            return RSP_STATUS.pack(status=Status.ERROR)
        return RSP_STATUS.pack(status=Status.SUCCESS)

    def _async_event(self, msg: Message, req: dict[str, Any]) -> bytes | None:
        m = MESSAGES[Opcode.ASYNC_EVENT_MSG]
        if len(self.async_events) >= max(1, self.chip.cols):
            return error_resp(m, Status.ASYNC_MSGS_FULL)
        if req["size"] == 0 or not self._mapped(req["addr"], req["size"], req["pasid"]):
            return error_resp(m, Status.ERROR)
        self.async_events.append(HeldEvent(msg.id, req["addr"], req["pasid"], req["size"]))
        return None  # held until an event happens

    def raise_event(self, kind: AsyncEventType, data: bytes) -> bool:
        """Complete one held ASYNC_EVENT_MSG with ``data`` in its buffer; False if none."""
        if not self.async_events or self.mgmt is None:
            return False
        ev = self.async_events.pop(0)
        try:
            self.iommu.write(ev.addr, data[: ev.size], ev.pasid)
        except IommuFault as exc:
            log.warning("AIE4 async event: %s", exc)
        self.mgmt.send(ev.msg_id, Opcode.ASYNC_EVENT_MSG,
                       self._resp(Opcode.ASYNC_EVENT_MSG, status=Status.SUCCESS, type=kind))
        return True

    def _power_override(self, msg: Message, req: dict[str, Any]) -> bytes:
        try:
            self.power_mode = int(PowerMode(req["mode"]))
        except ValueError:
            return RSP_STATUS.pack(status=Status.ERROR)
        return RSP_STATUS.pack(status=Status.SUCCESS)

    def _create_vfs(self, msg: Message, req: dict[str, Any]) -> bytes:
        """1..TotalVFs VFs, and only while none exist."""
        n = req["num_vfs"]
        if self.num_vfs or not 1 <= n <= self.chip.pci.total_vfs:
            return RSP_STATUS.pack(status=Status.ERROR)
        self.num_vfs = n
        return RSP_STATUS.pack(status=Status.SUCCESS)

    def _destroy_vfs(self, msg: Message, req: dict[str, Any]) -> bytes:
        if not self.num_vfs:
            return RSP_STATUS.pack(status=Status.ERROR)
        self.num_vfs = 0
        return RSP_STATUS.pack(status=Status.SUCCESS)

    # -- state ----------------------------------------------------------------------------
    def save(self) -> Aie4FwState:
        return Aie4FwState(
            self.image, self.cert, self.time_base_ns, self.work_buffer,
            tuple(sorted(self.runtime_config.items())),
            tuple((pid, s, n) for pid, (s, n) in sorted(self.partitions.items())),
            self.next_partition, self.power_mode,
            tuple((e.msg_id, e.addr, e.pasid, e.size) for e in self.async_events),
            self.num_vfs)

    def load(self, st: Aie4FwState) -> None:
        self.time_base_ns, self.work_buffer = st.time_base_ns, st.work_buffer
        self.runtime_config = dict(st.runtime_config)
        self.partitions = {pid: (s, n) for pid, s, n in st.partitions}
        self.next_partition, self.power_mode = st.next_partition, st.power_mode
        self.async_events = [HeldEvent(*e) for e in st.async_events]
        self.num_vfs = st.num_vfs
        self.mgmt = self.engine.channels.get(MGMT_CHANNEL)

    def status(self) -> dict[str, Any]:
        return {
            "version": self.image.version_str if self.image is not None else None,
            "cert_version": self.cert.version_str if self.cert is not None else None,
            "protocol": ".".join(map(str, self.image.protocol)) if self.image else None,
            "work_buffer": self.work_buffer is not None,
            "partitions": [{"id": pid, "col_start": s, "col_count": n}
                           for pid, (s, n) in sorted(self.partitions.items())],
            "power_mode": self.power_mode,
            "runtime_config": {int(k): v.hex() for k, v in sorted(self.runtime_config.items())},
            "async_events_pending": len(self.async_events),
            "num_vfs": self.num_vfs,
        }  # fmt: skip


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split("."))
