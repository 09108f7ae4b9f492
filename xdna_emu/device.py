"""NpuDevice: the AIE2 chip and its firmware, driven by trapped register writes.

The daemon (or a test, in-process) calls :meth:`NpuDevice.mmio_write` once per trapped
write, in order. The write is stored into BAR memory first, then its side effect runs:
PSP INTR edge, SMU INTR edge, a mailbox x2i tail (consume requests) or i2x head (room for
queued responses). Host memory is reached only through the Iommu. No input can make this
raise: bad writes are counted, malformed messages put their channel in an error state,
and an unexpected internal error is logged and counted as ``internal_errors``.
"""

from __future__ import annotations

import errno
import heapq
import itertools
import logging
from collections.abc import Callable
from typing import Any

from .chips import Chip, ChipError
from .clock import Clock
from .fw.ctx import ContextFirmware
from .fw.image import FirmwareImage
from .fw.mailbox import MailboxEngine
from .fw.messages import PspStatus
from .fw.mgmt import MgmtFirmware
from .fw.psp import PspBlock
from .fw.smu import SmuBlock
from .iommu import Iommu
from .regio import RegisterFile

log = logging.getLogger(__name__)

STAT_KEYS = ("writes", "bad_writes", "internal_errors", "irqs_raised", "iommu_faults",
             "malformed_msgs", "mbox_msgs_in", "mbox_msgs_out", "psp_cmds", "psp_errors",
             "smu_cmds", "smu_errors", "unknown_ops", "jobs_completed", "jobs_failed")  # fmt: skip


class NpuDevice:
    """One emulated AIE2 NPU: PSP, SMU, mailbox engine and management firmware."""

    def __init__(self, chip: Chip, regs: RegisterFile, iommu: Iommu,
                 raise_irq: Callable[[int], None], clock: Clock) -> None:
        self.chip, self.regs, self.iommu, self.clock = chip, regs, iommu, clock
        self._raise_irq = raise_irq
        self.msix_vectors = chip.msix.vectors
        self.stats: dict[str, int] = dict.fromkeys(STAT_KEYS, 0)
        self.fw: MgmtFirmware | None = None
        self.ctx: ContextFirmware | None = None  # contexts/jobs of the running firmware
        self._timers: list[tuple[int, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self.smu = SmuBlock(chip, regs, self.stats, self._power_off)
        self.psp = PspBlock(chip, regs, iommu, self.stats, lambda: self.smu.powered,
                            self._start_fw, self._stop_fw)
        self.mailbox = MailboxEngine(chip, regs, self.irq, self.stats) if chip.mailbox else None
        self._traps: dict[tuple[int, int], Callable[[int], None]] = {}
        for role, fn in (("psp.intr", self.psp.on_intr), ("smu.intr", self.smu.on_intr)):
            try:
                self._traps[regs.loc(role)] = fn
            except ChipError:
                log.warning("%s: no %s register; that block is inert", chip.name, role)
        if self.mailbox is not None:
            self._traps.update(self.mailbox.traps())

    # -- register writes ------------------------------------------------------------------
    def mmio_write(self, bar: int, offset: int, value: int) -> None:
        """Store one trapped 32-bit write and run its side effect. Never raises."""
        try:
            self.stats["writes"] += 1
            b = self.chip.bars.get(bar)
            if (b is None or bar not in self.regs.words or not isinstance(offset, int)
                    or offset < 0 or offset & 3 or offset + 4 > b.size):
                self.stats["bad_writes"] += 1
                return
            value = int(value) & 0xFFFFFFFF
            self.regs.write(bar, offset, value)
            fn = self._traps.get((bar, offset))
            if fn is not None:
                fn(value)
        except Exception:
            self.stats["internal_errors"] += 1
            log.exception("internal error on write bar%s+%#x=%#x", bar, offset, value)

    def irq(self, vector: int) -> None:
        """Raise an MSI-X vector (the daemon's controller applies masking)."""
        if 0 <= vector < self.msix_vectors:
            self.stats["irqs_raised"] += 1
            self._raise_irq(vector)

    # -- firmware lifecycle (PSP/SMU callbacks) ------------------------------------------
    def _start_fw(self, image: FirmwareImage) -> int:
        if self.mailbox is None:
            return PspStatus.BAD_STATE
        self._stop_fw()
        self.fw = MgmtFirmware(self.chip, self.regs, self.mailbox, self.iommu, self.clock,
                               image, self.stats)
        self.ctx = ContextFirmware(self.fw)
        self.fw.boot()
        return PspStatus.OK

    def _stop_fw(self) -> None:
        if self.fw is not None:
            self.fw.stop()
            self.fw = None
        self.ctx = None
        self._timers.clear()

    def _power_off(self) -> None:
        self.psp.power_lost()
        self._stop_fw()

    # -- reset and time ---------------------------------------------------------------------
    def reset(self) -> None:
        """Power-on state (FLR). The MSI-X table/PBA are kept: the daemon's controller owns them."""
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

    def schedule(self, delay_ns: int, fn: Callable[[], None]) -> None:
        """Run ``fn`` from :meth:`poll` once ``delay_ns`` has passed (delayed firmware work)."""
        heapq.heappush(self._timers, (self.clock.now_ns() + max(0, delay_ns), next(self._seq), fn))

    def poll(self) -> None:
        now = self.clock.now_ns()
        while self._timers and self._timers[0][0] <= now:
            _, _, fn = heapq.heappop(self._timers)
            try:
                fn()
            except Exception:
                self.stats["internal_errors"] += 1
                log.exception("internal error in delayed work")

    def backlogged(self) -> bool:
        """Some channel holds responses the host has not made room for yet."""
        return self.mailbox is not None and any(ch.outq for ch in self.mailbox.channels.values())

    def next_deadline_ns(self) -> int | None:
        return self._timers[0][0] if self._timers else None

    # -- session hooks (docs/spec/jobs.md §1) --------------------------------------------
    def proxy(self, pasid: int, opcode: int, payload: bytes) -> bytes:
        """Run a client session's mgmt op synchronously; returns the response payload.

        Raises OSError: EPERM (driver-only op), ENODEV (firmware not running), ENOENT (a
        context the PASID does not own), EINVAL (the op would get no reply).
        """
        if self.ctx is None:
            raise OSError(errno.ENODEV, "firmware not running")
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
        return self.ctx.release_pasid(pasid) if self.ctx is not None else 0

    def context_count(self, exclude_pasid: int | None = None) -> int:
        """Live contexts, optionally not counting those of one PASID."""
        return self.ctx.context_count(exclude_pasid) if self.ctx is not None else 0

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
