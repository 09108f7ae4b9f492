"""NpuDevice: the AIE2 chip and its firmware, driven by trapped register writes.

The PCI function (:class:`~xdna_emu.pci.function.PciFunction`) calls
:meth:`NpuDevice.mmio_write` once per trapped write, in order. The write is stored into
BAR memory first, then its side effect runs: PSP INTR edge, SMU INTR edge, a mailbox x2i
tail (consume requests) or i2x head (room for queued responses). :meth:`NpuDevice.save`
and :meth:`NpuDevice.load` hold the blocks' state as plain data (docs/spec/device.md §4). Host memory is reached only through the Iommu. No input can make this
raise: bad writes are counted, malformed messages put their channel in an error state,
and an unexpected internal error is logged and counted as ``internal_errors``.
"""

from __future__ import annotations

import errno
import heapq
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from .chips import Chip, ChipError
from .clock import Clock
from .fw.ctx import ContextFirmware, CtxFwState
from .fw.devbase import DeviceBase, Timer
from .fw.image import FirmwareImage
from .fw.mailbox import ChannelState, Handler, MailboxEngine, MailboxState
from .fw.messages import PspStatus
from .fw.mgmt import MGMT_CHANNEL, MgmtFirmware, MgmtFwState
from .fw.pmf import NpuMetrics
from .fw.pmf import sample as pmf_sample
from .fw.psp import PspBlock, PspState
from .fw.smu import SmuBlock, SmuState
from .iommu import Iommu
from .regio import RegisterFile

log = logging.getLogger(__name__)
_NO_COLUMNS: frozenset[int] = frozenset()


@dataclass(frozen=True)
class DeviceState:
    """Saved state of the device blocks (docs/spec/device.md §4)."""

    VERSION: ClassVar[int] = 1
    stats: tuple[tuple[str, int], ...]
    timers: tuple[Timer, ...]
    next_seq: int
    psp: PspState
    smu: SmuState
    mailbox: MailboxState | None
    fw: MgmtFwState | None
    ctx: CtxFwState | None


class NpuDevice(DeviceBase):
    """One emulated AIE2 NPU: PSP, SMU, mailbox engine and management firmware."""

    def __init__(self, chip: Chip, regs: RegisterFile, iommu: Iommu,
                 raise_irq: Callable[[int], None], clock: Clock) -> None:
        super().__init__(chip, regs, iommu, raise_irq, clock)
        self.fw: MgmtFirmware | None = None
        self.ctx: ContextFirmware | None = None  # contexts/jobs of the running firmware
        #: firmware objects a restore may reuse for a state of an equal image (§4 of
        #: docs/spec/device.md): never running while they sit here unless they are fw/ctx
        self._spare: tuple[MgmtFirmware, ContextFirmware] | None = None
        self._pmf_key: tuple[Any, ...] | None = None  # what the last metrics sample was taken of
        self._pmf: NpuMetrics | None = None
        self.smu = SmuBlock(chip, regs, self.stats, self._power_off)
        self.psp = PspBlock(chip, regs, iommu, self.stats, lambda: self.smu.powered,
                            self._start_fw, self._stop_fw)
        self.mailbox = MailboxEngine(chip, regs, self.irq, self.stats) if chip.mailbox else None
        for role, fn, mark in (("psp.intr", self.psp.on_intr, "psp"),
                               ("smu.intr", self.smu.on_intr, "smu")):
            try:
                self._traps[regs.loc(role)] = fn
                self._trap_marks[regs.loc(role)] = mark
            except ChipError:
                log.warning("%s: no %s register; that block is inert", chip.name, role)
        if self.mailbox is not None:
            traps = self.mailbox.traps()
            self._traps.update(traps)
            # a channel's register changes that channel, unless a message reaches its
            # handler (the engine's ``served`` forgets all then: docs/spec/device.md §4)
            self._trap_marks.update({key: ("chan", fn.args[0]) for key, fn in traps.items()})
            self.mailbox.served = self.forget

    # -- firmware lifecycle (PSP/SMU callbacks) ------------------------------------------
    def _start_fw(self, image: FirmwareImage) -> int:
        if self.mailbox is None:
            return PspStatus.BAD_STATE
        self._stop_fw()
        self.fw = MgmtFirmware(self.chip, self.regs, self.mailbox, self.iommu, self.clock,
                               image, self.stats)
        self.ctx = ContextFirmware(self.fw)
        self.fw.boot()
        self._booted(self.fw.status())
        return PspStatus.OK

    # -- reset and time ---------------------------------------------------------------------
    def reset(self) -> None:
        """Power-on state (FLR). The MSI-X table/PBA are kept: the PCI function's MSI-X
        controller owns them."""
        self.forget()
        fw = "running" if self.fw is not None else "stopped"
        log.debug("device reset (firmware %s)", fw,
                  extra={"trace": {"kind": "reset", "firmware": fw}})
        try:
            self._stop_fw()
            if self.mailbox is not None:
                self.mailbox.close_all()
            self.psp.reset()
            self.smu.reset()
            m = self.chip.msix
            self.regs.clear(keep={m.bar: [(m.table_offset, m.table_size), (m.pba_offset, m.pba_size)]})
        except Exception:
            self.stats["internal_errors"] += 1
            log.exception("internal error on reset")

    def backlogged(self) -> bool:
        """Some channel holds responses the host has not made room for yet."""
        if self.mailbox is not None:  # a loop, not any(): the daemon asks after every step
            for ch in self.mailbox.channels.values():
                if ch.outq:
                    return True
        return False

    # -- state (docs/spec/device.md §4) -------------------------------------------------------
    def save(self) -> DeviceState:
        """The blocks' state as plain data (BAR bytes are saved by the PCI function)."""
        st = DeviceState(
            tuple(self.stats.items()), tuple(self._timers), self._seq, self.psp.save(),
            self.smu.save(), self.mailbox.save() if self.mailbox is not None else None,
            self.fw.save() if self.fw is not None else None,
            self.ctx.save() if self.ctx is not None else None)
        self._loaded(st)  # the blocks hold just this until an entry runs (§4)
        return st

    def load(self, st: DeviceState) -> None:
        """Put the blocks back as saved; the firmware objects and channel handlers are
        rebuilt from the saved image and context table, never copied (the objects of the
        boot the state came from are reused while it still runs: docs/spec/device.md §4)."""
        self.stats.clear()
        self.stats.update(st.stats)
        self._timers = list(st.timers)
        heapq.heapify(self._timers)
        self._seq = st.next_seq
        if self.journal and st is self.held and self._load_marked(st):
            # journaled (docs/spec/device.md §4): since this very state was saved or
            # loaded, every entry named the blocks it changed, and only those were loaded;
            # the counters and timers above (which plain stores and timer pops change) are
            # put back always
            return
        self.psp.load(st.psp)
        self.smu.load(st.smu)
        # the boot the state was saved from is still running (a fuzzer restoring one
        # snapshot again and again), or one of an equal image: its objects hold nothing
        # but what the loads below replace and what the image decides, so they are kept
        # instead of rebuilt with their handler tables
        same_boot = (st.fw is not None and self.fw is not None and self.ctx is not None
                     and (self.fw.image is st.fw.image or self.fw.image == st.fw.image))
        if not same_boot:
            if self.fw is not None and self.ctx is not None:
                self._spare = (self.fw, self.ctx)
            self.fw = self.ctx = None
        if self.mailbox is None:
            self._loaded(st)
            return
        by_chan = {}
        if st.fw is not None:
            if not same_boot:
                # the objects of an earlier boot of an equal image (stopped since, by a
                # reset or power-off) serve as well: the loads below replace all they hold
                spare = self._spare
                if spare is not None and spare[0].image == st.fw.image:
                    self.fw, self.ctx = spare
                else:
                    self.fw = MgmtFirmware(self.chip, self.regs, self.mailbox, self.iommu,
                                           self.clock, st.fw.image, self.stats)
                    self.ctx = ContextFirmware(self.fw)
                    self._spare = (self.fw, self.ctx)
            if st.ctx is not None:
                by_chan = self.ctx.load(st.ctx)
        fw, ctx = self.fw, self.ctx

        def handler(cs: ChannelState) -> Handler:
            if cs.index in by_chan and ctx is not None:
                return ctx.user_handler(by_chan[cs.index])
            if cs.index == MGMT_CHANNEL and fw is not None:
                return fw.dispatch
            return _no_handler

        if st.mailbox is not None:
            self.mailbox.load(st.mailbox, handler)
        if fw is not None and st.fw is not None:
            fw.load(st.fw)
        if ctx is not None:
            ctx.bind_channels(by_chan)
        self._loaded(st)

    def _loaded(self, st: DeviceState) -> None:
        """The blocks hold ``st`` (the journal's start, docs/spec/device.md §4)."""
        self.held = st
        self.marks.clear()

    def _load_marked(self, st: DeviceState) -> bool:
        """The journaled load (docs/spec/device.md §4) of ``st``, the state the blocks held
        before the entries that made ``marks``: the PSP, the SMU and the channels marked
        are loaded, nothing else (the channels open are the state's: opening or closing
        one forgets the state). False, having loaded nothing, if a marked channel is not
        the state's (the caller loads everything then)."""
        marks = self.marks
        if marks:
            chans = []
            for mark in marks:
                if type(mark) is tuple:
                    ch = self.mailbox.channels.get(mark[1]) if self.mailbox is not None else None
                    saved = st.mailbox.channels if st.mailbox is not None else ()
                    cs = next((c for c in saved if c.index == mark[1]), None)
                    if (ch is None) != (cs is None) or (ch is not None and ch.serial != cs.serial):
                        return False
                    if ch is not None:
                        chans.append((ch, cs))
            if "psp" in marks:
                self.psp.load(st.psp)
            if "smu" in marks:
                self.smu.load(st.smu)
            for ch, cs in chans:
                ch.load(cs)
        self._loaded(st)
        return True

    # -- session hooks (docs/spec/jobs.md §1) --------------------------------------------
    def proxy(self, pasid: int, opcode: int, payload: bytes) -> bytes:
        """Run a client session's mgmt op synchronously; returns the response payload.

        Raises OSError: EPERM (driver-only op), ENODEV (firmware not running), ENOENT (a
        context the PASID does not own), EINVAL (the op would get no reply).
        """
        if self.ctx is None:
            raise OSError(errno.ENODEV, "firmware not running")
        self.forget()  # a proxied op may change any block (§4)
        try:
            return self.ctx.proxy(pasid, opcode, payload)
        except OSError:
            raise
        except Exception:
            self.stats["internal_errors"] += 1
            log.exception("internal error in proxied op %#x", opcode)
            raise OSError(errno.EIO, "internal firmware error") from None

    def release_pasid(self, pasid: int) -> int:
        """Destroy every context of ``pasid`` (its session ended); returns how many."""
        self.forget()
        return self.ctx.release_pasid(pasid) if self.ctx is not None else 0

    def context_count(self, exclude_pasid: int | None = None) -> int:
        """Live contexts, optionally not counting those of one PASID."""
        return self.ctx.context_count(exclude_pasid) if self.ctx is not None else 0

    def npu_metrics(self) -> NpuMetrics:
        """The platform firmware's sample of this NPU (docs/spec/uapi.md §6 "Sensors"): the
        same object while its inputs (power, clocks, busy columns) stay the same, so a
        publisher that asks after every step redoes nothing unless they changed."""
        busy = self.ctx.busy_columns() if self.ctx is not None else _NO_COLUMNS
        smu = self.smu
        key = (smu.powered, smu.npuclk, smu.hclk, busy)
        if key != self._pmf_key:
            self._pmf_key = key
            self._pmf = pmf_sample(smu.powered, smu.npuclk, smu.hclk, self.chip.cols, busy)
        return self._pmf

    def dpm_level_now(self) -> int | None:
        """The level the SMU runs at while powered (its clocks are what every session's
        clock query reports, docs/spec/jobs.md §6)."""
        return self.smu.soft_level if self.smu.powered and self.chip.dpm_levels else None

    # -- introspection ----------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        fw = self.fw.status() if self.fw is not None else None
        return {
            "chip": self.chip.name,
            "smu": self.smu.status(),
            "psp": self.psp.status(),
            "firmware": fw,
            "channels": self.mailbox.status() if self.mailbox is not None else [],
            "pending_async_events": fw["async_events_pending"] if fw else [],
            "contexts": self.ctx.status() if self.ctx is not None else [],
            "timers": len(self._timers),
            "counters": dict(self.stats),
        }


def _no_handler(chan: Any, msg: Any) -> None:
    """A channel the saved firmware no longer serves (cannot happen in a consistent save)."""
    log.warning("channel %s: message %#x with no firmware behind it", chan.index, msg.id)
