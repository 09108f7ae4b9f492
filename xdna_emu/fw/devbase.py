"""What every generation's device shares (docs/spec/device.md): trapped register writes
with their side effects, MSI-X raising, delayed firmware work kept as data, and the record
of firmware boots. ``NpuDevice`` (AIE2) and ``Aie4Device`` add their own blocks on top.

No input makes these raise: bad writes are counted, and an internal error in a side
effect or in delayed work is logged and counted as ``internal_errors``.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Callable
from typing import Any

from ..chips import Chip
from ..clock import Clock
from ..iommu import Iommu
from ..regio import RegisterFile
from .pmf import NpuMetrics

log = logging.getLogger("xdna_emu.device")

STAT_KEYS = ("writes", "bad_writes", "internal_errors", "irqs_raised", "iommu_faults",
             "malformed_msgs", "mbox_msgs_in", "mbox_msgs_out", "psp_cmds", "psp_errors",
             "smu_cmds", "smu_errors", "unknown_ops", "jobs_completed", "jobs_failed")  # fmt: skip

#: One delayed piece of firmware work: (deadline ns, sequence number, action name, args).
#: It is data, so it can be saved; the action names a method in ``DeviceBase.actions``.
Timer = tuple[int, int, str, tuple[Any, ...]]


class DeviceBase:
    """Register-write routing, interrupts, timers and boot records of one device."""

    def __init__(self, chip: Chip, regs: RegisterFile, iommu: Iommu,
                 raise_irq: Callable[[int], None], clock: Clock) -> None:
        self.chip, self.regs, self.iommu, self.clock = chip, regs, iommu, clock
        self._raise_irq = raise_irq
        self.msix_vectors = chip.msix.vectors
        self.stats: dict[str, int] = dict.fromkeys(STAT_KEYS, 0)
        #: firmware boots so far and what the last one ran (status after the driver left)
        self.boots = 0
        self.last_boot: dict[str, str] | None = None
        self._timers: list[Timer] = []
        self._seq = 0
        #: what a timer may do, by name (docs/spec/device.md §4: timers are data)
        self.actions: dict[str, Callable[..., None]] = {"mailbox_send": self._timer_send}
        #: side effects of trapped registers, by (bar, offset)
        self._traps: dict[tuple[int, int], Callable[[int], None]] = {}
        #: the running firmware and its contexts; each generation sets its own blocks
        self.fw: Any = None
        self.ctx: Any = None
        self.psp: Any = None
        #: journaled restores (docs/spec/device.md §4), opt-in: a load of the very state
        #: ``held`` names loads only the blocks ``marks`` names, which entries changed since
        self.journal = False
        #: the state saved or loaded last, while every entry since said which blocks it may
        #: have changed (``marks``: ``"psp"``, ``"smu"``, ``("chan", index)``); None once
        #: one could have changed any (a message handled, firmware started or stopped,
        #: delayed work, a proxied op, a reset)
        self.held: Any = None
        self.marks: set[Any] = set()
        #: the journal's mark of each trapped register's side effect (docs/spec/device.md
        #: §4): the one block it changes unless it calls :meth:`forget`; a trap without
        #: a mark forgets the whole state
        self._trap_marks: dict[tuple[int, int], Any] = {}

    # -- register writes ------------------------------------------------------------------
    def mmio_write(self, bar: int, offset: int, value: int) -> None:
        """Store one trapped 32-bit write and run its side effect. Never raises."""
        b = self.chip.bars.get(bar)
        if (b is None or bar not in self.regs.words or not isinstance(offset, int)
                or offset < 0 or offset & 3 or offset + 4 > b.size):
            self.stats["writes"] += 1
            self.stats["bad_writes"] += 1
            return
        self.write_checked(bar, offset, value)

    def write_checked(self, bar: int, offset: int, value: int) -> None:
        """:meth:`mmio_write` of a write whose BAR and offset the caller (the PCI function,
        docs/spec/device.md §2.1) has checked already. Never raises."""
        try:
            self.stats["writes"] += 1
            value = int(value) & 0xFFFFFFFF
            self.regs.words[bar][offset >> 2] = value
            fn = self._traps.get((bar, offset))
            if fn is not None:
                mark = self._trap_marks.get((bar, offset))  # the block it changes (§4)
                if mark is None:
                    self.held = None
                else:
                    self.marks.add(mark)
                fn(value)
        except Exception:
            self.stats["internal_errors"] += 1
            log.exception("internal error on write bar%s+%#x=%#x", bar, offset, value)

    def forget(self) -> None:
        """The journal (docs/spec/device.md §4): an entry may have changed any block, so
        the next load loads them all."""
        self.held = None

    @property
    def clean(self) -> Any:
        """The state saved or loaded last, while no entry changed any block's Python state
        since (``held`` with no ``marks``; docs/spec/device.md §4), else None."""
        return None if self.marks else self.held

    def _timer_send(self, index: int, serial: int, msg_id: int, opcode: int, payload: bytes) -> None:
        """A delayed message, sent past any interposer, if its channel is still open."""
        mb = getattr(self, "mailbox", None)
        ch = mb.channel(index, serial) if mb is not None else None
        if ch is not None:
            ch.transmit(msg_id, opcode, payload)

    def irq(self, vector: int) -> None:
        """Raise an MSI-X vector (the PCI function's MSI-X controller applies masking)."""
        if 0 <= vector < self.msix_vectors:
            self.stats["irqs_raised"] += 1
            self._raise_irq(vector)

    def _booted(self, status: dict[str, Any]) -> None:
        """Count a firmware boot and keep what it runs (``status()`` of the firmware)."""
        self.boots += 1
        self.last_boot = {"version": status["version"], "protocol": status["protocol"]}

    # -- firmware lifecycle (PSP/SMU callbacks) ----------------------------------------------
    def _stop_fw(self) -> None:
        self.forget()  # channels, firmware and contexts go (§4)
        if self.fw is not None:
            self.fw.stop()
            self.fw = None
        self.ctx = None
        self._timers.clear()

    def _power_off(self) -> None:
        self.forget()  # the PSP and the firmware go too (§4)
        self.psp.power_lost()
        self._stop_fw()

    # -- what the platform reads of the device ----------------------------------------------
    def npu_metrics(self) -> NpuMetrics | None:
        """The platform firmware's sample of this NPU, None where it reports none
        (docs/spec/uapi.md §6 "Sensors")."""
        return None

    def dpm_level_now(self) -> int | None:
        """The DPM level the SMU runs at, None where the SMU does not set the clocks a
        client reports (docs/spec/jobs.md §6)."""
        return None

    # -- time -----------------------------------------------------------------------------
    def schedule(self, delay_ns: int, action: str, *args: Any) -> None:
        """Run ``actions[action](*args)`` from :meth:`poll` once ``delay_ns`` has passed
        (delayed firmware work). ``args`` must be plain data."""
        if action not in self.actions:
            raise ValueError(f"unknown timer action {action!r}")
        seq, self._seq = self._seq, self._seq + 1
        heapq.heappush(self._timers, (self.clock.now_ns() + max(0, delay_ns), seq, action, args))

    def poll(self) -> None:
        now = self.clock.now_ns()
        while self._timers and self._timers[0][0] <= now:
            self.forget()
            _, _, action, args = heapq.heappop(self._timers)
            try:
                self.actions[action](*args)
            except Exception:
                self.stats["internal_errors"] += 1
                log.exception("internal error in delayed work")

    def next_deadline_ns(self) -> int | None:
        return self._timers[0][0] if self._timers else None
