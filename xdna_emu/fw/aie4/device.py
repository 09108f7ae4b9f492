"""Aie4Device: the AIE4 chip and its firmware, driven by trapped register writes.

The AIE4 twin of ``xdna_emu.device.NpuDevice`` with the same surface, so the PCI function,
the daemon and the fuzzers drive either (docs/spec/device.md, docs/spec/aie4.md §2). Its
blocks: the SMU (as AIE2's, on AIE4 registers), the AIE4 PSP (npu + cert image), the one
mgmt mailbox channel and the AIE4 management firmware. A VF has no PSP or SMU of its own
to load: its firmware runs from reset (the PF's firmware serves it). No input makes this
raise: bad writes are counted and an internal error is logged and counted.
"""

from __future__ import annotations

import errno
import heapq
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from ...chips import Chip, ChipError
from ...clock import Clock
from ...iommu import Iommu
from ...regio import RegisterFile
from ..devbase import DeviceBase, Timer
from ..image import FirmwareImage
from ..mailbox import ChannelState, MailboxState
from ..smu import SmuBlock, SmuState
from .ctx import TIMEOUT_ACTION, Aie4ContextFw
from .messages import PspStatus
from .mgmt import MGMT_CHANNEL, Aie4Firmware, Aie4FwState, Aie4Mailbox
from .psp import Aie4PspBlock, Aie4PspState

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Aie4DeviceState:
    """Saved state of the AIE4 device blocks (docs/spec/device.md §4)."""

    VERSION: ClassVar[int] = 1
    stats: tuple[tuple[str, int], ...]
    timers: tuple[Timer, ...]
    next_seq: int
    psp: Aie4PspState
    smu: SmuState
    mailbox: MailboxState
    fw: Aie4FwState | None
    ctx: tuple[tuple[Any, ...], ...] | None  # Aie4ContextFw.save()


class Aie4Device(DeviceBase):
    """One emulated AIE4 NPU function: PSP, SMU, mgmt mailbox and management firmware."""

    def __init__(self, chip: Chip, regs: RegisterFile, iommu: Iommu,
                 raise_irq: Callable[[int], None], clock: Clock) -> None:
        super().__init__(chip, regs, iommu, raise_irq, clock)
        self.fw: Aie4Firmware | None = None
        self.ctx: Aie4ContextFw | None = None  # contexts and their HSA queues
        self.actions[TIMEOUT_ACTION] = self._ctx_timeout
        self.smu = SmuBlock(chip, regs, self.stats, self._power_off)
        self.psp = Aie4PspBlock(chip, regs, iommu, self.stats, lambda: self.smu.powered,
                                self._start_fw, self._stop_fw)
        self.mailbox = Aie4Mailbox(chip, regs, self.irq, self.stats)
        for role, fn in (("psp.intr", self.psp.on_intr), ("smu.intr", self.smu.on_intr)):
            try:
                self._traps[regs.loc(role)] = fn
            except ChipError:
                log.warning("%s: no %s register; that block is inert", chip.name, role)
        self._traps.update(self.mailbox.traps())
        a = chip.aie4
        assert a is not None
        for slot in range(chip.limits.hwctx_limit):  # one doorbell page per context slot
            self._traps[chip.dev_to_bar(a.doorbell(slot))] = (
                lambda v, s=slot: self._doorbell(s, v))  # type: ignore[misc]
        self._power_on_state()

    @property
    def is_vf(self) -> bool:
        return self.chip.function == "vf"

    def _power_on_state(self) -> None:
        """Register state after reset: PSP ready; a VF's firmware is already up."""
        self.psp.ready()
        if self.is_vf:
            self._boot(None, None)

    def _ctx_timeout(self, slot: int, ctx_id: int, index: int) -> None:
        if self.ctx is not None:
            self.ctx.timeout(slot, ctx_id, index)

    def _doorbell(self, slot: int, value: int) -> None:
        if self.ctx is not None:
            self.ctx.doorbell(slot, value)
        else:
            self.stats["stale_doorbells"] = self.stats.get("stale_doorbells", 0) + 1

    # -- firmware lifecycle ---------------------------------------------------------------------
    def _boot(self, image: FirmwareImage | None, cert: FirmwareImage | None) -> None:
        self.fw = Aie4Firmware(self.chip, self.regs, self.mailbox, self.iommu, self.clock,
                               image, cert, self.stats)
        self.ctx = Aie4ContextFw(self.fw, self.irq, self.schedule)
        self.fw.boot()
        self._booted(self.fw.status())

    def _start_fw(self, image: FirmwareImage, cert: FirmwareImage) -> int:
        self._stop_fw()
        self._boot(image, cert)
        return PspStatus.OK

    def reset(self) -> None:
        """Power-on state (FLR): mailbox_info.valid cleared, blocks reset; MSI-X kept."""
        try:
            self._stop_fw()
            self.mailbox.close_all()
            self.psp.reset()
            self.smu.reset()
            m = self.chip.msix
            self.regs.clear(keep={m.bar: [(m.table_offset, m.table_size), (m.pba_offset, m.pba_size)]})
            self._power_on_state()
        except Exception:
            self.stats["internal_errors"] += 1
            log.exception("internal error on reset")

    # -- time ---------------------------------------------------------------------------------
    def backlogged(self) -> bool:
        return any(ch.outq for ch in self.mailbox.channels.values())

    # -- state ------------------------------------------------------------------------------
    def save(self) -> Aie4DeviceState:
        return Aie4DeviceState(
            tuple(self.stats.items()), tuple(self._timers), self._seq, self.psp.save(),
            self.smu.save(), self.mailbox.save(),
            self.fw.save() if self.fw is not None else None,
            self.ctx.save() if self.ctx is not None else None)

    def load(self, st: Aie4DeviceState) -> None:
        self.stats.clear()
        self.stats.update(st.stats)
        self._timers = list(st.timers)
        heapq.heapify(self._timers)
        self._seq = st.next_seq
        self.psp.load(st.psp)
        self.smu.load(st.smu)
        self.fw = self.ctx = None
        if st.fw is not None:
            self.fw = Aie4Firmware(self.chip, self.regs, self.mailbox, self.iommu, self.clock,
                                   st.fw.image, st.fw.cert, self.stats)
            self.ctx = Aie4ContextFw(self.fw, self.irq, self.schedule)
            if st.ctx is not None:
                self.ctx.load(st.ctx)
        fw = self.fw

        def handler(cs: ChannelState) -> Any:
            if cs.index == MGMT_CHANNEL and fw is not None:
                return fw.dispatch
            return _no_handler

        self.mailbox.load(st.mailbox, handler)
        if fw is not None and st.fw is not None:
            fw.load(st.fw)

    # -- session hooks ------------------------------------------------------------------------
    def proxy(self, pasid: int, opcode: int, payload: bytes) -> bytes:
        """A client session's mgmt op (docs/spec/aie4.md §12), run through the firmware's
        dispatch as the driver's kernel half would for that process."""
        if self.fw is None or self.ctx is None:
            raise OSError(errno.ENODEV, "firmware not running")
        return self.ctx.proxy(pasid, opcode, payload)

    def release_pasid(self, pasid: int) -> int:
        return self.ctx.release_pasid(pasid) if self.ctx is not None else 0

    def context_count(self, exclude_pasid: int | None = None) -> int:
        if self.ctx is None:
            return 0
        return sum(1 for c in self.ctx.contexts.values() if c.pasid != exclude_pasid)

    def status(self) -> dict[str, Any]:
        fw = self.fw.status() if self.fw is not None else None
        return {
            "chip": self.chip.name,
            "function": self.chip.function,
            "smu": self.smu.status(),
            "psp": self.psp.status(),
            "firmware": fw,
            "channels": self.mailbox.status(),
            "pending_async_events": fw["async_events_pending"] if fw else [],
            "contexts": self.ctx.status() if self.ctx is not None else [],
            "timers": len(self._timers),
            "counters": dict(self.stats),
        }


def _no_handler(chan: Any, msg: Any) -> None:
    log.warning("channel %s: message %#x with no firmware behind it", chan.index, msg.id)
