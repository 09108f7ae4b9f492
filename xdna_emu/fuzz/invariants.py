"""What must hold after every step of a fuzzed device, checked by :class:`Checker`.

The device model is our firmware, so the checks are the promises of docs/spec/firmware.md
that any driver may rely on, whatever it wrote before:

- nothing raises out of the device and ``internal_errors`` stays 0;
- a small reference model of the PSP and SMU state machines (power, idle/validated/
  running, INTR edges) predicts RESP/STATUS after every INTR edge and agrees with the
  device's own state; a successful START publishes FW_ALIVE and a valid mgmt info block;
- no interrupt without a response: a vector is raised only when a channel of that
  vector has sent something since its previous interrupt;
- accounting: per channel, responses sent + queued <= requests consumed; per context,
  completed + failed <= submitted; a hung context has something queued;
- cursors in range; no channel or context survives a firmware stop; reset clears the
  published registers and leaves no interrupt, ack or pending bit (PSP/SMU INTR, channel
  INTR, MSI-X PBA) and no delayed work; no delayed work is overdue after a poll;
- a reference model of every mailbox channel (:class:`MailboxModel`) parses the x2i ring
  itself on each tail write, by docs/spec/firmware.md §5: the firmware must consume
  exactly the messages it finds (each once, so a stale message is never run again), stop
  at the first malformed one with the channel in error, and leave its head where the
  model's is; every response it writes to the i2x ring must answer one consumed request
  that has no answer yet.

Waits (PSP STATUS, SMU RESP, mailbox replies) are bounded in virtual ticks by the
callers in :mod:`.ops`; running out of ticks where an answer was due is a :class:`Hang`.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any, Protocol

from ..chips import MailboxLayout
from ..fw.aie4.messages import HSA_QUEUE_SLOTS
from ..fw.messages import (
    MAX_MSG_PAYLOAD,
    MGMT_INFO,
    MGMT_INFO_MAGIC,
    MSG_HEADER,
    MSG_ID_MAGIC,
    MSG_ID_MAGIC_MASK,
    PSP_START_COPY_FW,
    PSP_STATUS_READY,
    TOMBSTONE,
    PspCmd,
    PspStatus,
    SmuCmd,
    SmuResp,
    sz_ver,
)

if TYPE_CHECKING:
    from ..chips import Chip
    from ..clock import Clock
    from ..device import NpuDevice
    from ..regio import RegisterFile

PSP_VALIDATE_RESULTS = frozenset({
    PspStatus.OK, PspStatus.BAD_STATE, PspStatus.DMA_FAULT, PspStatus.IMG_ALIGN,
    PspStatus.IMG_SIZE, PspStatus.IMG_MAGIC, PspStatus.IMG_FORMAT, PspStatus.IMG_TRUNCATED,
    PspStatus.IMG_CHIP, PspStatus.IMG_DIGEST, PspStatus.IMG_SIGNATURE,
})  # fmt: skip
SMU_CMDS = frozenset(int(c) for c in SmuCmd)


class Failure(Exception):
    """A fuzzing finding. ``kind`` is crash/invariant/hang/expect, ``name`` a short stable
    signature used to decide whether a minimised trace still shows the same bug."""

    kind = "failure"

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{self.kind} {name}: {message}")
        self.name = name
        self.message = message

    @property
    def signature(self) -> tuple[str, str]:
        return self.kind, self.name


class DeviceCrash(Failure):
    """An exception escaped from the device model."""

    kind = "crash"


class InvariantViolation(Failure):
    kind = "invariant"


class Hang(Failure):
    """A bounded wait ran out of virtual ticks where the device owed an answer."""

    kind = "hang"


class ExpectFailed(Failure):
    """An ``expect`` line of a trace did not hold."""

    kind = "expect"


class RefModel:
    """What the PSP and SMU must be doing, rebuilt only from the trapped writes."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.smu_on = False
        self.psp_state = "idle"
        self.psp_intr = 0
        self.smu_intr = 0

    def psp_predict(self, cmd: int, arg0: int) -> int | None:
        """Expected RESP of a PSP command (None: VALIDATE, whose result depends on memory)."""
        if not self.smu_on:
            return PspStatus.NO_POWER
        if cmd == PspCmd.VALIDATE:
            return PspStatus.BAD_STATE if self.psp_state == "running" else None
        if cmd == PspCmd.START:
            if self.psp_state != "validated":
                return PspStatus.BAD_STATE
            return PspStatus.OK if arg0 == PSP_START_COPY_FW else PspStatus.BAD_ARG
        if cmd == PspCmd.RELEASE_TMR:
            return PspStatus.OK
        return PspStatus.UNKNOWN_CMD

    def psp_apply(self, cmd: int, resp: int) -> None:
        if resp == PspStatus.NO_POWER:
            return
        if cmd == PspCmd.VALIDATE and self.psp_state != "running":
            self.psp_state = "validated" if resp == PspStatus.OK else "idle"
        elif cmd == PspCmd.START and resp == PspStatus.OK:
            self.psp_state = "running"
        elif cmd == PspCmd.RELEASE_TMR:
            self.psp_state = "idle"

    def smu_predict(self, cmd: int, arg: int, levels: int) -> int:
        if cmd == SmuCmd.POWER_ON:
            return SmuResp.OK
        if cmd not in SMU_CMDS:
            return SmuResp.UNKNOWN_CMD
        if not self.smu_on:
            return SmuResp.OK if cmd == SmuCmd.POWER_OFF else SmuResp.REJECTED_PREREQ
        if cmd in (SmuCmd.SET_SOFT_DPMLEVEL, SmuCmd.SET_HARD_DPMLEVEL) and arg >= levels:
            return SmuResp.FAIL
        return SmuResp.OK

    def smu_apply(self, cmd: int) -> None:
        if cmd == SmuCmd.POWER_ON:
            self.smu_on = True
        elif cmd == SmuCmd.POWER_OFF and self.smu_on:
            self.smu_on = False
            self.psp_state = "idle"


_U32 = struct.Struct("<I")
_HDR = MSG_HEADER.size


def ref_x2i(ring: bytes, head: int, tail: int) -> tuple[list[int], int, str | None]:
    """What a firmware must consume from an x2i ring when the host moves the tail from the
    consumer at ``head`` to ``tail`` (docs/spec/firmware.md §5): the message ids in order,
    where the head ends, and why the ring is malformed (None if it is not). Written from
    the spec, apart from the firmware's own loop."""
    size = len(ring)
    ids: list[int] = []
    if tail > size or tail % 4:
        return ids, head, "tail"
    while head != tail:
        if head == size:  # a message ended exactly at the ring's end
            head = 0
            continue
        if len(ids) > size // _HDR:
            return ids, head, "endless"
        word = _U32.unpack_from(ring, head)[0]
        if word == TOMBSTONE:
            if head < tail:
                return ids, head, "tombstone ahead of tail"
            head = 0
            continue
        if head + _HDR > size:
            return ids, head, "header past the end"
        total, szv, mid, _op = MSG_HEADER.unpack_from(ring, head)
        room = size - head if head > tail else tail - head
        if not 0 < total <= MAX_MSG_PAYLOAD or total % 4 or _HDR + total > room:
            return ids, head, "total_size"
        if szv != sz_ver(total) or mid & MSG_ID_MAGIC_MASK != MSG_ID_MAGIC:
            return ids, head, "header"
        ids.append(mid)
        head += _HDR + total
    return ids, head, None


class MailboxModel:
    """The firmware side of each mailbox channel, rebuilt only from ring bytes: its x2i
    consumer head, the requests consumed and not yet answered, and how far into the i2x
    ring the responses have been read. Keyed by (index, serial): a reopened channel is
    new. State is plain data (it is part of a fuzz snapshot)."""

    def __init__(self) -> None:
        self.heads: dict[tuple[int, int], int] = {}
        self.waiting: dict[tuple[int, int], list[int]] = {}
        self.read: dict[tuple[int, int], int] = {}

    def save(self) -> dict[str, Any]:
        return {"heads": dict(self.heads), "read": dict(self.read),
                "waiting": {k: list(v) for k, v in self.waiting.items()}}

    def load(self, st: dict[str, Any]) -> None:
        self.heads, self.read = dict(st["heads"]), dict(st["read"])
        self.waiting = {k: list(v) for k, v in st["waiting"].items()}

    def before_tail(self, ch: Any, tail: int) -> tuple:
        key = (ch.index, ch.serial)
        head = self.heads.setdefault(key, ch.x2i_head)
        if not ch.ok:
            return ("mbox", key, [], head, None, ch.msgs_in, False)
        ring = bytes(ch._x2i)
        ids, new_head, why = ref_x2i(ring, head, tail)
        return ("mbox", key, ids, new_head, why, ch.msgs_in, True)

    def after_tail(self, mb: Any, pred: tuple) -> None:
        _, key, ids, head, why, before, was_ok = pred
        ch = mb.channels.get(key[0]) if mb is not None else None
        if ch is None or ch.serial != key[1]:
            return  # the channel closed under the message (a reset or DESTROY): unchecked
        got = ch.msgs_in - before
        if ch.error is not None and ("i2x" in ch.error or "response" in ch.error):
            ids = ids[:got]  # answering failed half way (a bad i2x head): it stopped there
        if got != len(ids):
            raise InvariantViolation(
                "mbox_consumed", f"channel {key[0]} consumed {got} messages, the ring holds {len(ids)}"
                + (f" before a malformed one ({why})" if why else ""))
        self.waiting.setdefault(key, []).extend(ids)
        if not was_ok:
            return
        if why is not None:
            if ch.error is None:
                raise InvariantViolation("mbox_malformed", f"channel {key[0]} accepted a malformed ring ({why})")
            return
        if ch.error is not None:  # answering failed half way (a bad i2x head): dead channel
            if "i2x" not in ch.error and "response" not in ch.error:
                raise InvariantViolation("mbox_rejected", f"channel {key[0]} rejected a well-formed ring: {ch.error}")
            return
        if ch.x2i_head % len(ch._x2i) != head % len(ch._x2i):
            raise InvariantViolation("mbox_head", f"channel {key[0]} head at {ch.x2i_head:#x}, model at {head:#x}")
        self.heads[key] = head

    def check_responses(self, mb: Any) -> None:
        """Every response written since the last look answers one waiting request."""
        for ch in mb.channels.values():
            key = (ch.index, ch.serial)
            pos = self.read.get(key, 0)
            if pos == ch.i2x_tail:
                continue
            ring, size = ch._i2x, len(ch._i2x)
            waiting = self.waiting.setdefault(key, [])
            for _ in range(size // 4):
                if pos == ch.i2x_tail:
                    break
                if pos + 4 > size or _U32.unpack_from(ring, pos)[0] == TOMBSTONE:
                    pos = 0
                    continue
                total, _szv, mid, op = MSG_HEADER.unpack_from(ring, pos)
                if mid not in waiting:
                    raise InvariantViolation(
                        "mbox_unmatched", f"channel {ch.index} answered id {mid:#x} (opcode {op:#x}),"
                                          f" which no waiting request has")
                waiting.remove(mid)
                pos += _HDR + total
            self.read[key] = pos


class Watched(Protocol):
    """What :class:`Checker` reads from the device session it watches (``ops.DeviceHarness``,
    which builds the checker, so this module does not import it)."""

    chip: Chip
    regs: RegisterFile
    dev: NpuDevice
    td: Any  # the test device: its ``irqs`` list records raised vectors
    fn: Any  # the PciFunction (its MSI-X controller: pending bits)
    clock: Clock
    polled: bool


class Checker:
    """Runs the invariants for one :class:`~xdna_emu.fuzz.ops.DeviceHarness`."""

    def __init__(self, session: Watched) -> None:
        self.s = session
        self.model = RefModel()
        chip, regs = session.chip, session.regs
        self.psp_intr = regs.loc("psp.intr")
        self.smu_intr = regs.loc("smu.intr")
        # offsets of the two INTR registers: most writes hit neither, and one int compare
        # each is enough to say so before the exact (bar, offset) check
        self._intr_offs = (self.psp_intr[1], self.smu_intr[1])
        self.levels = len(chip.dpm_levels)
        self.vectors = chip.msix.vectors
        #: AIE4 (docs/spec/aie4.md): the AIE2 PSP/SMU model does not apply; the checks
        #: are the device's own state consistency and interrupt sources
        self.aie4 = chip.aie4 is not None
        lay = chip.mailbox
        #: (bar, offset) of each channel's x2i tail register -> channel index
        self._tails = {} if lay is None else {
            chip.dev_to_bar(lay.chan_regs(i) + MailboxLayout.X2I_TAIL): i for i in range(lay.channels)}
        self._tail_offs = frozenset(off for _, off in self._tails)
        self.mbox = MailboxModel()
        self.reset()

    def reset(self) -> None:
        self.model.reset()
        self.mbox = MailboxModel()
        self.pending: InvariantViolation | None = None
        #: per channel opening (index, serial): its msgs_out at its last interrupt
        self.irq_seen: dict[tuple[int, int], int] = {}
        self.fw_was = False  # AIE4: was the firmware running after the last op
        self._passed: Any = None  # dev.clean when the blocks' checks last passed (after_op)

    def save(self) -> dict[str, Any]:
        """The checker's state as plain data (for a session snapshot)."""
        return {"model": dict(vars(self.model)), "pending": self.pending,
                "irq_seen": dict(self.irq_seen), "mbox": self.mbox.save(), "fw_was": self.fw_was}

    def load(self, st: dict[str, Any]) -> None:
        vars(self.model).update(st["model"])
        self.mbox.load(st["mbox"])
        self.pending = st["pending"]
        self.irq_seen = dict(st["irq_seen"])
        self.fw_was = st["fw_was"]

    # -- around every device entry (mmio_write, poll, proxy, reset) ---------------------------
    def on_irq(self, vector: int) -> None:
        """Called by the device as it raises a vector. It runs inside the device, which
        would swallow an exception, so a violation is kept and raised after the entry."""
        mb = self.s.dev.mailbox
        why = None
        if not 0 <= vector < self.vectors:
            why = ("irq_range", f"vector {vector} raised, chip has {self.vectors}")
        else:
            seen = self.irq_seen
            fresh = [ch for ch in (mb.channels.values() if mb else ())
                     if ch.vector == vector and ch.msgs_out > seen.get((ch.index, ch.serial), 0)]
            ctxs = self.s.dev.ctx
            if (self.aie4 and ctxs is not None
                    and any(c.msix == vector for c in ctxs.contexts.values())):
                fresh = fresh or [None]  # an AIE4 context's job-completion vector
            if not fresh:
                why = ("irq_spurious", f"vector {vector} raised with no new response")
            for ch in fresh:
                if ch is not None:
                    seen[(ch.index, ch.serial)] = ch.msgs_out
        if why and self.pending is None:
            self.pending = InvariantViolation(*why)

    def raise_pending(self) -> None:
        if self.pending is not None:
            exc, self.pending = self.pending, None
            raise exc

    def before_write(self, bar: int, off: int, value: Any) -> tuple | None:
        """Mirror the INTR edge rule and predict the command's outcome."""
        if self.aie4:
            return None
        p_off, s_off = self._intr_offs
        if off != p_off and off != s_off:
            if off in self._tail_offs and isinstance(value, int):
                idx = self._tails.get((bar, off))
                mb = self.s.dev.mailbox
                ch = mb.channels.get(idx) if mb is not None and idx is not None else None
                if ch is not None:
                    return self.mbox.before_tail(ch, value & 0xFFFFFFFF)
            return None
        if not isinstance(value, int) or not isinstance(off, int):
            return None
        loc, v, m, rd = (bar, off), value & 0xFFFFFFFF, self.model, self.s.regs.read_role
        if loc == self.psp_intr:
            edge = m.psp_intr == 0 and v == 1
            m.psp_intr = v
            if edge:
                cmd, arg0 = rd("psp.cmd"), rd("psp.arg0")
                return ("psp", cmd, m.psp_predict(cmd, arg0))
        elif loc == self.smu_intr:
            edge = m.smu_intr == 0 and v == 1
            m.smu_intr = v
            if edge:
                cmd, arg = rd("smu.cmd"), rd("smu.arg")
                return ("smu", cmd, m.smu_predict(cmd, arg, self.levels))
        return None

    def after_write(self, pred: tuple | None) -> None:
        if self.pending is not None:
            self.raise_pending()
        if self.s.dev.stats.get("internal_errors", 0):
            raise DeviceCrash("internal_error", "the device logged an internal error")
        if pred is None:
            return
        if pred[0] == "mbox":
            self.mbox.after_tail(self.s.dev.mailbox, pred)
            return
        rd, m = self.s.regs.read_role, self.model
        block, cmd, want = pred
        if block == "psp":
            resp = rd("psp.resp")
            if not rd("psp.status") & PSP_STATUS_READY:
                raise Hang("psp_status", f"PSP command {cmd:#x}: STATUS bit31 not set after INTR")
            if want is None:
                if resp not in PSP_VALIDATE_RESULTS:
                    raise InvariantViolation("psp_resp", f"VALIDATE answered {resp:#x}")
            elif resp != want:
                raise InvariantViolation(
                    "psp_resp", f"PSP cmd {cmd:#x} in {m.psp_state}: RESP {resp:#x}, model says {want:#x}")
            m.psp_apply(cmd, resp)
            if cmd == PspCmd.START and resp == PspStatus.OK:
                self.check_fw_alive()
        else:
            resp = rd("smu.resp")
            if resp != want:
                raise InvariantViolation(
                    "smu_resp", f"SMU cmd {cmd:#x} (on={m.smu_on}): RESP {resp:#x}, model says {want:#x}")
            m.smu_apply(cmd)

    def check_fw_alive(self) -> None:
        s = self.s
        mb = s.chip.mailbox
        alive = s.regs.read_role("sram.fw_alive")
        if mb is None or alive != mb.mgmt_info:
            raise InvariantViolation("fw_alive", f"FW_ALIVE {alive:#x} after START")
        info = MGMT_INFO.unpack(bytes(s.regs.span(alive, MGMT_INFO.size)))
        size = info[3]
        if info[8] != MGMT_INFO_MAGIC or size == 0 or size & (size - 1) or info[7] != size:
            raise InvariantViolation("mgmt_info", f"bad mgmt_mbox_chann_info {info}")

    # -- after every op ---------------------------------------------------------------------
    def after_op(self) -> None:
        s, m = self.s, self.model
        dev = s.dev
        if dev.stats.get("internal_errors", 0):
            raise DeviceCrash("internal_error", "the device logged an internal error")
        if self.aie4:
            self._after_op_aie4()
        elif dev.psp.state != m.psp_state or dev.smu.powered != m.smu_on:
            raise InvariantViolation(
                "state", f"device psp={dev.psp.state} smu={dev.smu.powered}, model psp={m.psp_state} smu={m.smu_on}")
        running = dev.fw is not None
        if not self.aie4 and running != (m.psp_state == "running"):
            raise InvariantViolation("fw_state", f"firmware object {running} in PSP state {m.psp_state}")
        mb = dev.mailbox
        # the checks of the blocks' own fields below passed in the state ``dev.clean``
        # names and no entry changed a block since (docs/spec/device.md §4, journaled):
        # they would pass again, so they are skipped; the ring model always runs
        clean = dev.clean
        same = clean is not None and clean is self._passed and dev.journal
        if mb is not None:
            channels = mb.channels
            if not same and not running and (channels or dev.ctx is not None):
                raise InvariantViolation("stopped_channels", "channels or contexts left after the firmware stopped")
            for ch in () if same else channels.values():
                size = ch.ring_size
                if not (0 <= ch.x2i_head <= size and ch.x2i_head % 4 == 0
                        and 0 <= ch.i2x_tail <= size - 4 and ch.i2x_tail % 4 == 0):
                    raise InvariantViolation("cursor", f"channel {ch.index} cursors {ch.x2i_head:#x}/{ch.i2x_tail:#x}")
                if ch.msgs_out + len(ch.outq) > ch.msgs_in:
                    raise InvariantViolation(
                        "responses", f"channel {ch.index}: {ch.msgs_out} sent + {len(ch.outq)} queued > {ch.msgs_in} received")
            if not self.aie4:  # the model reads AIE2 ring registers (chip.mailbox)
                self.mbox.check_responses(mb)
        if not same and dev.ctx is not None and dev.ctx.contexts and not self.aie4:
            for ctx in dev.ctx.contexts.values():
                if ctx.completed + ctx.failed > ctx.submitted:
                    raise InvariantViolation(
                        "jobs", f"context {ctx.id}: {ctx.completed}+{ctx.failed} done > {ctx.submitted} submitted")
                if ctx.hung and not ctx.queue:
                    raise InvariantViolation("hung_empty", f"context {ctx.id} hung with nothing queued")
                if ctx.chan is None or mb is None or mb.channels.get(ctx.chan.index) is not ctx.chan:
                    raise InvariantViolation("ctx_channel", f"context {ctx.id} without its open channel")
        self._passed = clean
        if s.polled and (deadline := dev.next_deadline_ns()) is not None and deadline <= s.clock.now_ns():
            raise InvariantViolation("overdue", "delayed work overdue after a poll")

    def _after_op_aie4(self) -> None:
        """AIE4: the firmware runs iff the PSP started it (a VF's from reset), mailbox_info
        says so, and no context counts more jobs than its queue took."""
        dev = self.s.dev
        a = self.s.chip.aie4
        running = dev.fw is not None
        started = dev.psp.state == "running" or self.s.chip.function == "vf"
        if running != started:
            raise InvariantViolation("fw_state", f"firmware object {running} in PSP state {dev.psp.state}")
        # mailbox_info is SRAM the host can scribble on: checked as the firmware starts
        valid = self.s.regs.read_dev(a.mbox_info) if a is not None else 0
        if running and not self.fw_was and valid != 1:
            raise InvariantViolation("mbox_info", f"mailbox_info.valid {valid} as the firmware started")
        self.fw_was = running
        live = {c.id: c for c in dev.ctx.contexts.values()} if dev.ctx is not None else {}
        for ctx in live.values():
            if ctx.completed > ctx.submitted:
                raise InvariantViolation(
                    "jobs", f"context {ctx.id}: {ctx.completed} completed > {ctx.submitted} run")
        # the consumer's read_index (docs/spec/aie4.md §7): never backwards, at most a
        # queue's capacity per op whatever the producer published, and every packet it
        # passed ended exactly once (completed or failed: no job lost or left RUNNING)
        marks = getattr(self.s, "read_marks", None)
        for i, q in enumerate(getattr(self.s, "queues", ())):
            rd = q.index("read_index")
            last = marks.get(i, 0) if marks is not None else rd
            if rd < last or rd - last > HSA_QUEUE_SLOTS:
                raise InvariantViolation("read_index", f"queue {i}: read_index {last} -> {rd}")
            if marks is not None:
                marks[i] = rd
            ctx = live.get(q.ctx_id)
            if ctx is not None and ctx.completed + ctx.failed != rd:
                raise InvariantViolation(
                    "jobs", f"context {ctx.id}: {ctx.completed}+{ctx.failed} ended, read_index {rd}")

    def after_reset(self) -> None:
        """FLR: firmware stopped, published registers cleared, and nothing left to signal:
        no INTR, ack or pending bit, no queued response, no delayed work."""
        self.model.reset()
        self.mbox = MailboxModel()
        s = self.s
        rd = s.regs.read_role
        if self.aie4:  # the PSP is ready from reset; mailbox_info is clear (docs/spec/aie4.md §3)
            a = s.chip.aie4
            vf = s.chip.function == "vf"
            if rd("psp.status") != PSP_STATUS_READY or rd("psp.resp") or rd("smu.resp"):
                raise InvariantViolation("reset", "AIE4 PSP/SMU registers after reset")
            if a is not None and s.regs.read_dev(a.mbox_info) != (1 if vf else 0):
                raise InvariantViolation("reset", "mailbox_info.valid after reset")
            return
        for role in ("psp.status", "psp.resp", "smu.resp", "sram.fw_alive", "psp.pwaitmode",
                     "psp.intr", "smu.intr"):
            if rd(role):
                raise InvariantViolation("reset", f"{role} = {rd(role):#x} after reset")
        lay = s.chip.mailbox
        for i in range(lay.channels if lay is not None else 0):
            addr = lay.chan_regs(i) + MailboxLayout.INTR
            if s.regs.read_dev(addr):
                raise InvariantViolation("reset", f"channel {i} INTR = {s.regs.read_dev(addr):#x} after reset")
        msix = s.fn.msix
        pending = [v for v in range(self.vectors) if msix.pending(v)]
        if pending:
            raise InvariantViolation("reset", f"MSI-X vectors {pending} still pending after reset")
        mb = s.dev.mailbox
        if mb is not None and (mb.channels or any(ch.outq for ch in mb.channels.values())):
            raise InvariantViolation("reset", "mailbox channels left open after reset")
        if s.dev.next_deadline_ns() is not None:
            raise InvariantViolation("reset", "delayed work left after reset")
