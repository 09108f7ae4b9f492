"""The firmware side of the AIE2 mailbox: ring channels in SRAM with head/tail registers.

A channel is an x2i ring (host -> firmware) and an i2x ring (firmware -> host). The host
produces into x2i and moves the x2i tail register; the firmware consumes from its own
head cursor and publishes the x2i head register. For i2x the roles swap. Register values
are byte offsets from the ring start. The wrap rule on both sides is the driver's: a
message that would pass ``size - 4`` is preceded by a TOMBSTONE word at the tail and
written at offset 0 instead.

Everything read from the rings and registers is host-controlled, so it is checked. A
malformed x2i ring (tail out of range or unaligned, TOMBSTONE ahead of the tail, a header
whose sizes are impossible or disagree, an id without the 0x1D magic) or a bad i2x head
write puts the channel into the *error* state: it stops consuming and sending, the
reason is kept for ``status()`` and the ``malformed_msgs`` counter goes up. Only a reset
or a firmware restart clears it.
"""

from __future__ import annotations

import logging
import struct
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import ClassVar, NamedTuple, Protocol

from ..chips import Chip, MailboxLayout
from ..regio import RegisterFile
from .messages import (
    MAX_MSG_PAYLOAD,
    MSG_HEADER,
    MSG_ID_MAGIC,
    MSG_ID_MAGIC_MASK,
    TOMBSTONE,
    Opcode,
    Status,
    sz_ver,
)

log = logging.getLogger(__name__)
_U32 = struct.Struct("<I")
HDR = MSG_HEADER.size


class Message(NamedTuple):
    """One message as the firmware sees it (immutable; a tuple, the cheapest to build)."""

    opcode: int
    id: int
    payload: bytes


Handler = Callable[["MailboxChannel", Message], None]


class Interposer(Protocol):
    """Stands between the firmware and the wire (fault injection, docs/spec/device.md §5):
    it may pass, alter, delay or drop each message and interrupt."""

    def send(self, ch: MailboxChannel, msg_id: int, opcode: int, payload: bytes) -> None: ...

    def allow_irq(self, vector: int) -> bool: ...


@dataclass(frozen=True)
class ChannelState:
    """Saved state of one open channel (docs/spec/device.md §4)."""

    VERSION: ClassVar[int] = 1
    index: int
    slot: int
    vector: int
    name: str
    serial: int
    x2i_head: int
    i2x_tail: int
    outq: tuple[bytes, ...]
    error: str | None
    msgs_in: int
    msgs_out: int


@dataclass(frozen=True)
class MailboxState:
    VERSION: ClassVar[int] = 1
    next_serial: int
    channels: tuple[ChannelState, ...]


class MailboxChannel:
    """One channel's firmware-side state machine."""

    def __init__(self, engine: MailboxEngine, index: int, slot: int, vector: int,
                 handler: Handler, name: str, serial: int = 0) -> None:
        lay = engine.layout
        self.engine, self.index, self.slot, self.vector = engine, index, slot, vector
        self.handler, self.name = handler, name
        #: which opening of channel ``index`` this is (unique per engine): a delayed send
        #: or an observer names a channel by (index, serial), never by object
        self.serial = serial
        self.ring_size = lay.ring_size
        self.x2i_buf = engine.slot_addr(slot)
        self.i2x_buf = self.x2i_buf + lay.ring_size
        base = lay.chan_regs(index)
        self.x2i_tail_reg = base + MailboxLayout.X2I_TAIL
        self.x2i_head_reg = base + MailboxLayout.X2I_HEAD
        self.i2x_tail_reg = base + MailboxLayout.I2X_TAIL
        self.i2x_head_reg = base + MailboxLayout.I2X_HEAD
        self.intr_reg: int | None = base + MailboxLayout.INTR  # None: no ack register (AIE4)
        regs = engine.regs
        self._x2i = regs.span(self.x2i_buf, self.ring_size)
        self._i2x = regs.span(self.i2x_buf, self.ring_size)
        self.x2i_head = 0  # firmware's consume cursor
        self.i2x_tail = 0  # firmware's produce cursor
        self.outq: deque[bytes] = deque()
        self.open = True
        self.error: str | None = None
        self.msgs_in = 0
        self.msgs_out = 0

    # -- registers ---------------------------------------------------------------------
    def _rd(self, addr: int) -> int:
        return self.engine.regs.read_dev(addr)

    def _wr(self, addr: int, value: int) -> None:
        self.engine.regs.write_dev(addr, value)

    def init_registers(self) -> None:
        for reg in (self.x2i_tail_reg, self.x2i_head_reg, self.i2x_tail_reg,
                    self.i2x_head_reg, self.intr_reg):
            if reg is not None:
                self._wr(reg, 0)

    def fail(self, why: str) -> None:
        if self.error is None:
            self.error = why
            self.engine.gen += 1  # a channel in error is Python's alone (docs/spec/jobs.md §7)
            self.engine.stats["malformed_msgs"] += 1
            log.warning("mailbox channel %d (%s) error: %s", self.index, self.name, why)

    @property
    def ok(self) -> bool:
        return self.open and self.error is None

    # -- x2i: host -> firmware ---------------------------------------------------------
    def on_x2i_tail(self, tail: int | None = None) -> None:
        """The host moved the x2i tail to ``tail`` (the value of the trapped write, applied in
        log order: the register itself may already hold a newer one): consume every complete
        message up to it."""
        if not self.open or self.error is not None:  # not self.ok, inlined (hot)
            return
        size, ring = self.ring_size, self._x2i
        if tail is None:
            tail = self._rd(self.x2i_tail_reg)
        if tail > size or tail & 3:
            self.fail(f"x2i tail {tail:#x} out of range or unaligned")
            return
        engine = self.engine
        if engine.mirrored >> self.index & 1 and self.x2i_head != tail:
            engine.gen += 1  # Python moves a cursor C holds a copy of (docs/spec/jobs.md §7)
        stats = engine.stats
        for _ in range(size // 4 + 2):  # each pass consumes >= 4 bytes or ends
            if not self.open or self.error is not None or self.x2i_head == tail:
                return
            head = self.x2i_head
            if head >= size:
                self.x2i_head = head = 0
                if head == tail:
                    return
            word = _U32.unpack_from(ring, head)[0]
            if word == TOMBSTONE:
                if head < tail:
                    self.fail(f"TOMBSTONE at {head:#x} ahead of tail {tail:#x}")
                    return
                self.x2i_head = 0
                self._wr(self.x2i_head_reg, 0)
                continue
            if head + HDR > size:
                self.fail(f"header at {head:#x} crosses the ring end")
                return
            total, szv, mid, opcode = MSG_HEADER.unpack_from(ring, head)
            msg_size = HDR + total
            if (total == 0 or total & 3 or total > MAX_MSG_PAYLOAD or msg_size > size - head
                    or (head < tail and msg_size > tail - head)):
                self.fail(f"impossible total_size {total:#x} at {head:#x} (tail {tail:#x})")
                return
            if szv != sz_ver(total):
                self.fail(f"sz_ver {szv:#x} disagrees with total_size {total:#x}")
                return
            if mid & MSG_ID_MAGIC_MASK != MSG_ID_MAGIC:
                self.fail(f"message id {mid:#x} lacks the 0x1D magic")
                return
            payload = bytes(ring[head + HDR : head + msg_size])
            self.x2i_head = head + msg_size
            self.msgs_in += 1
            stats["mbox_msgs_in"] += 1
            if log.isEnabledFor(logging.DEBUG):
                op = _name(Opcode, opcode)
                log.debug("mbox rx chan %d (%s) id %#x %s", self.index, self.name, mid, op,
                          extra={"trace": {"kind": "mbox_rx", "chan": self.index, "serial": self.serial,
                                           "name": self.name, "id": mid, "opcode": op}})
            self.engine.served()
            self.handler(self, Message(opcode, mid, payload))
            if self.open:
                self._wr(self.x2i_head_reg, self.x2i_head)
        self.fail("x2i ring does not terminate")

    # -- i2x: firmware -> host ---------------------------------------------------------
    def send(self, msg_id: int, opcode: int, payload: bytes) -> None:
        """Send a message to the host, through the engine's interposer if one is set."""
        ip = self.engine.interposer
        if ip is not None:
            ip.send(self, msg_id, opcode, payload)
        else:
            self.transmit(msg_id, opcode, payload)

    def transmit(self, msg_id: int, opcode: int, payload: bytes) -> None:
        """Put a message into the i2x ring, or queue it behind those waiting for space (and
        push out as many as fit, in order)."""
        if not self.open:
            return
        pkt = MSG_HEADER.pack(len(payload), sz_ver(len(payload)), msg_id, opcode) + payload
        if self.outq:
            self.outq.append(pkt)
            self.flush()
        elif self.error is None and self._put(pkt):  # nothing waits: no queue
            self._sent(1)
        else:  # the ring is full or the channel in error
            self.outq.append(pkt)
            self.engine.gen += 1  # a reply waits: C may not answer behind it (jobs.md §7)

    def reply(self, msg: Message, payload: bytes) -> None:
        if log.isEnabledFor(logging.DEBUG):
            status = _name(Status, _U32.unpack_from(payload)[0]) if len(payload) >= 4 else "-"
            op = _name(Opcode, msg.opcode)
            log.debug("mbox tx chan %d (%s) id %#x %s status %s", self.index, self.name, msg.id,
                      op, status, extra={"trace": {"kind": "mbox_tx", "chan": self.index, "serial": self.serial,
                                                   "name": self.name, "id": msg.id,
                                                   "opcode": op, "status": status}})
        self.send(msg.id, msg.opcode, payload)

    def on_i2x_head(self, head: int | None = None) -> None:
        """The host consumed responses up to ``head``: space may have opened for queued ones."""
        if self.ok:
            if head is None:
                head = self._rd(self.i2x_head_reg)
            if head > self.ring_size or head & 3:
                self.fail(f"i2x head {head:#x} out of range or unaligned")
                return
            self.flush()

    def flush(self) -> None:
        sent = 0
        while self.outq and self.ok and self._put(self.outq[0]):
            self.outq.popleft()
            sent += 1
        if sent:
            if not self.outq:
                self.engine.gen += 1  # the last waiting reply went out (jobs.md §7)
            self._sent(sent)

    def _sent(self, sent: int) -> None:
        """``sent`` replies went into the ring: count them and raise the vector."""
        self.msgs_out += sent
        self.engine.stats["mbox_msgs_out"] += sent
        if self.intr_reg is not None:
            self._wr(self.intr_reg, 1)
        self.engine.irq(self.vector)

    def _put(self, pkt: bytes) -> bool:
        size, n = self.ring_size, len(pkt)
        head = self._rd(self.i2x_head_reg)
        if head > size or head & 3:
            self.fail(f"i2x head {head:#x} out of range or unaligned")
            return False
        tail = self.i2x_tail
        if n > size - 4:
            self.fail(f"response of {n} bytes cannot fit the ring")
            return False
        if tail < head and tail + n >= head:
            return False
        if tail >= head and tail + n > size - 4:
            if n >= head:
                return False
            _U32.pack_into(self._i2x, tail, TOMBSTONE)
            tail = 0
        self._i2x[tail : tail + n] = pkt
        self.i2x_tail = tail + n
        engine = self.engine
        if engine.mirrored >> self.index & 1:  # C holds a copy of this cursor (jobs.md §7)
            engine.gen += 1
        self._wr(self.i2x_tail_reg, self.i2x_tail)
        return True

    # -- state (docs/spec/device.md §4) -------------------------------------------------------
    def save(self) -> ChannelState:
        return ChannelState(self.index, self.slot, self.vector, self.name, self.serial,
                            self.x2i_head, self.i2x_tail, tuple(self.outq), self.error,
                            self.msgs_in, self.msgs_out)

    def load(self, st: ChannelState) -> None:
        self.x2i_head, self.i2x_tail = st.x2i_head, st.i2x_tail
        self.outq = deque(st.outq)
        self.error, self.msgs_in, self.msgs_out = st.error, st.msgs_in, st.msgs_out

    def status(self) -> dict:
        rd = self._rd
        return {
            "index": self.index, "name": self.name, "slot": self.slot, "msix": self.vector,
            "x2i": {"buf": self.x2i_buf, "head": rd(self.x2i_head_reg), "tail": rd(self.x2i_tail_reg)},
            "i2x": {"buf": self.i2x_buf, "head": rd(self.i2x_head_reg), "tail": rd(self.i2x_tail_reg)},
            "msgs_in": self.msgs_in, "msgs_out": self.msgs_out, "queued": len(self.outq),
            "queued_ids": [MSG_HEADER.unpack_from(pkt)[2] for pkt in self.outq],
            "state": "ok" if self.error is None else "error", "error": self.error,
        }  # fmt: skip


def _nothing() -> None:
    pass


def _name(table: type, value: int) -> str:
    """An opcode or status by its name in the firmware table (docs/spec/messages.md)."""
    try:
        return str(table(value).name)
    except ValueError:
        return f"{value:#x}"


class ChannelEngine:
    """The channels of a device, the vectors they raise (through the fault interposer) and
    their saved state; each generation adds its register layout (AIE2 :class:`MailboxEngine`,
    AIE4 ``Aie4Mailbox``)."""

    def __init__(self, chip: Chip, regs: RegisterFile, irq: Callable[[int], None],
                 stats: dict[str, int]) -> None:
        self.chip, self.regs, self._raise, self.stats = chip, regs, irq, stats
        self.channels: dict[int, MailboxChannel] = {}
        self.next_serial = 1
        self._interposer: Interposer | None = None
        #: called before a message reaches its handler, which may change any block (the
        #: device's journal forgets its state: docs/spec/device.md §4)
        self.served: Callable[[], None] = _nothing
        #: The generation of what decides whether a channel's messages may be answered
        #: outside this model, by the daemon's C job path (docs/spec/jobs.md §7): bumped where
        #: a channel opens, closes or fails, a reply starts or stops waiting for ring space,
        #: the interposer changes, a context holds a message (a hang) or changes its CU table
        #: or heap, the firmware suspends or resumes, or its log or trace ring comes or goes.
        #: Compared for equality only (a function restore bumps its own, device.md §4).
        self.gen = 0
        #: the channels whose cursors the C job path holds a copy of (bit i: channel i): a
        #: reply this model puts into one of their rings bumps :attr:`gen`
        self.mirrored = 0
        for key in ("malformed_msgs", "mbox_msgs_in", "mbox_msgs_out"):
            stats.setdefault(key, 0)

    @property
    def interposer(self) -> Interposer | None:
        """The fault interposer (docs/spec/device.md §5) every response and vector passes."""
        return self._interposer

    @interposer.setter
    def interposer(self, ip: Interposer | None) -> None:
        self._interposer = ip
        self.gen += 1

    def irq(self, vector: int) -> None:
        """Raise a channel's vector (unless the interposer swallows it)."""
        ip = self._interposer
        if ip is None or ip.allow_irq(vector):
            self._raise(vector)

    def raw_irq(self, vector: int) -> None:
        """Raise a vector past the interposer (an injected interrupt)."""
        self._raise(vector)

    def channel(self, index: int, serial: int) -> MailboxChannel | None:
        """Channel ``index`` if it is still the opening ``serial``."""
        ch = self.channels.get(index)
        return ch if ch is not None and ch.serial == serial else None

    def close_channel(self, index: int) -> None:
        ch = self.channels.pop(index, None)
        if ch is not None:
            ch.open = False
            ch.outq.clear()
            self.gen += 1

    def close_all(self) -> None:
        for idx in list(self.channels):
            self.close_channel(idx)

    # -- state (docs/spec/device.md §4) -------------------------------------------------------
    def save(self) -> MailboxState:
        return MailboxState(self.next_serial,
                            tuple(ch.save() for _, ch in sorted(self.channels.items())))

    def status(self) -> list[dict]:
        return [ch.status() for _, ch in sorted(self.channels.items())]


class MailboxEngine(ChannelEngine):
    """All AIE2 channels of a device and the routing of their trapped register writes."""

    def __init__(self, chip: Chip, regs: RegisterFile, irq: Callable[[int], None],
                 stats: dict[str, int]) -> None:
        if chip.mailbox is None:
            raise ValueError(f"{chip.name} has no AIE2 mailbox layout")
        super().__init__(chip, regs, irq, stats)
        self.layout = chip.mailbox
        self.sram_base = chip.reg("sram.mbox_chann").addr

    def slot_addr(self, slot: int) -> int:
        """Device address of SRAM ring slot ``slot``."""
        return self.sram_base + slot * self.layout.slot_size

    def traps(self) -> dict[tuple[int, int], Callable[[int], None]]:
        """(bar, offset) -> side effect, for the registers the host writes to signal us;
        each a partial whose one argument is the channel's index, the one channel it
        changes unless a message reaches a handler (the device's journal marks it:
        docs/spec/device.md §4)."""
        out: dict[tuple[int, int], Callable[[int], None]] = {}
        for idx in range(self.layout.channels):
            base = self.layout.chan_regs(idx)
            for off, fn in ((MailboxLayout.X2I_TAIL, self._x2i_tail),
                            (MailboxLayout.I2X_HEAD, self._i2x_head)):
                # a partial, not a lambda: one Python frame less on every message
                out[self.chip.dev_to_bar(base + off)] = partial(fn, idx)
        return out

    def _x2i_tail(self, idx: int, value: int) -> None:
        ch = self.channels.get(idx)
        if ch is not None:
            ch.on_x2i_tail(value)

    def _i2x_head(self, idx: int, value: int) -> None:
        ch = self.channels.get(idx)
        if ch is not None:
            ch.on_i2x_head(value)

    def open_channel(self, index: int, handler: Handler, vector: int, slot: int | None = None,
                     name: str = "") -> MailboxChannel:
        """Create channel ``index`` in ``slot`` (default: the index-th free slot), zero its
        registers and start serving it."""
        if not 0 <= index < self.layout.channels or index in self.channels:
            raise ValueError(f"channel {index} unavailable")
        if slot is None:
            slot = self.layout.free_slots()[index]
        ch = MailboxChannel(self, index, slot, vector, handler, name or f"chan{index}",
                            self.next_serial)
        self.next_serial += 1
        ch.init_registers()
        self.channels[index] = ch
        self.gen += 1
        return ch

    def load(self, st: MailboxState, handler: Callable[[ChannelState], Handler]) -> None:
        """Reopen the saved channels (registers and rings are in the restored BARs);
        ``handler`` names the firmware behaviour behind each one."""
        old, self.channels = self.channels, {}
        for cs in st.channels:
            ch = old.pop(cs.index, None)
            if (ch is not None and type(ch) is MailboxChannel and ch.serial == cs.serial
                    and (ch.slot, ch.vector, ch.name) == (cs.slot, cs.vector, cs.name)):
                # the same opening (serial) of the channel: its addresses and views hold,
                # only its data is loaded (a fuzzer restoring one snapshot after another)
                ch.open, ch.handler = True, handler(cs)
            else:
                if ch is not None:
                    ch.open = False
                ch = MailboxChannel(self, cs.index, cs.slot, cs.vector, handler(cs), cs.name,
                                    cs.serial)
            ch.load(cs)
            self.channels[cs.index] = ch
        for ch in old.values():
            ch.open = False
        self.next_serial = st.next_serial
