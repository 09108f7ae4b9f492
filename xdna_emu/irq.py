"""MSI-X interrupt delivery: the vector table and PBA in BAR memory, and the wires behind them.

The table (16 bytes per vector: address, data, vector control) and the Pending Bit Array
live in the shared BAR pages, so the host side reads and writes them directly; a write to
the table is trapped (write log) and reported here through :meth:`table_written`. A vector
is delivered through the controller's *wires*: :class:`EventfdWires` write 1 to the
vector's eventfd, as vfio-user SET_IRQS does (the daemon); :class:`CallbackWires` call a
function (in-process tests and fuzzers). When delivery is not possible (MSI-X disabled,
function masked, vector masked, or the vector's wire not connected) the vector's PBA bit
is set, and it is delivered as soon as the obstacle goes away.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from typing import Protocol

from .chips import Chip
from .pci.caps import (
    MSIX_ENTRY_CTRL,
    MSIX_ENTRY_CTRL_MASKBIT,
    MSIX_ENTRY_SIZE,
    MSIX_FLAGS,
    MSIX_FLAGS_ENABLE,
    MSIX_FLAGS_MASKALL,
)
from .pci.config import PciConfigSpace

log = logging.getLogger(__name__)
#: MSI-X Enable set and Function Mask clear, as the high byte of Message Control shows them
_FLAGS_HI_MASK = (MSIX_FLAGS_ENABLE | MSIX_FLAGS_MASKALL) >> 8
_FLAGS_HI_ON = MSIX_FLAGS_ENABLE >> 8


class Wires(Protocol):
    """Where delivered vectors go (docs/spec/device.md §3)."""

    def connected(self, vec: int) -> bool: ...

    def fire(self, vec: int) -> bool: ...


class EventfdWires:
    """One eventfd per vector, installed by SET_IRQS; owned (closed) by this object."""

    def __init__(self, vectors: int, record: bool = False) -> None:
        self._fds: list[int | None] = [None] * vectors
        self.lock = threading.RLock()
        #: with ``record``, the vectors fired since the owner last cleared it (the daemon: a
        #: session woken by its own interrupt needs no notify, docs/spec/protocol.md)
        self.fired: set[int] | None = set() if record else None

    def set(self, start: int, fds: Sequence[int]) -> None:
        """Install eventfds for vectors ``start..start+len(fds)-1``.

        The wires take ownership: an eventfd is closed when it is replaced or cleared, so a
        client that vanishes cannot leak descriptors in the daemon.
        """
        n = len(self._fds)
        if start < 0 or start + len(fds) > n:
            raise ValueError(f"vectors {start}..{start + len(fds) - 1} outside 0..{n - 1}")
        with self.lock:
            for i, fd in enumerate(fds):
                old = self._fds[start + i]
                if old is not None and old != fd:
                    _close_quietly(old)
                self._fds[start + i] = fd

    def clear(self, vectors: Sequence[int] | None = None) -> None:
        """Remove (and close) the eventfds of ``vectors``, or of every vector."""
        with self.lock:
            for vec in range(len(self._fds)) if vectors is None else vectors:
                fd = self._fds[vec] if 0 <= vec < len(self._fds) else None
                if fd is not None:
                    _close_quietly(fd)
                    self._fds[vec] = None

    def fd(self, vec: int) -> int | None:
        return self._fds[vec]

    def connected(self, vec: int) -> bool:
        return self._fds[vec] is not None

    def fire(self, vec: int) -> bool:
        fd = self._fds[vec]
        assert fd is not None
        try:
            os.eventfd_write(fd, 1)
        except OSError as exc:  # closed fd or counter overflow: the interrupt is lost
            log.warning("MSI-X vector %d: eventfd %d write failed: %s", vec, fd, exc)
            return False
        if self.fired is not None:
            self.fired.add(vec)
        return True


class CallbackWires:
    """Every vector wired to one function (e.g. ``list.append``): always connected."""

    def __init__(self, fn: Callable[[int], None]) -> None:
        self.fn = fn

    def connected(self, vec: int) -> bool:
        return True

    def fire(self, vec: int) -> bool:
        self.fn(vec)
        return True


class MsixController:
    """Raise, mask and pend MSI-X vectors of one function."""

    def __init__(self, chip: Chip, config: PciConfigSpace, bar_mem: memoryview,
                 wires: Wires | None = None) -> None:
        self.chip = chip
        self.config = config
        self.layout = chip.msix
        self.vectors = chip.msix.vectors
        mem = memoryview(bar_mem)
        self.mem = mem if mem.format == "B" and mem.ndim == 1 else mem.cast("B")
        self.table_size = self.vectors * MSIX_ENTRY_SIZE
        self.pba_size = (self.vectors + 63) // 64 * 8
        if max(
            self.layout.table_offset + self.table_size, self.layout.pba_offset + self.pba_size
        ) > len(self.mem):
            raise ValueError(f"{chip.name}: MSI-X table/PBA do not fit in BAR{self.layout.bar}")
        self.wires: Wires = wires if wires is not None else EventfdWires(self.vectors)
        self._lock = threading.RLock()
        self.stats: dict[str, int] = {"delivered": 0, "pended": 0, "dropped": 0}
        #: bumped by every change of :meth:`function_delivers` (a config write (MSI-X
        #: control, bus mastering), eventfds set or cleared): the daemon's C job path raises
        #: vectors from a copy of it, and reads each vector's mask bit in the table itself
        #: (docs/spec/jobs.md §7)
        self.gen = 0
        # where raise_vector looks: the high byte of Message Control, each vector's control word
        self._flags_hi = config.msix_cap + MSIX_FLAGS + 1
        self._ctrl_offs = [self._ctrl_off(v) for v in range(self.vectors)]
        self.reset()

    # -- eventfds (the daemon's wires) ---------------------------------------------------
    def _eventfds(self) -> EventfdWires:
        if not isinstance(self.wires, EventfdWires):
            raise TypeError("this function's vectors are not wired to eventfds")
        return self.wires

    def set_eventfds(self, start: int, fds: Sequence[int]) -> None:
        """Install eventfds for vectors ``start..start+len(fds)-1`` (ownership passes to
        the wires) and deliver what was pending on them."""
        with self._lock:
            self._eventfds().set(start, fds)
            self.gen += 1
            self._flush_pending()

    def clear_eventfds(self, vectors: Sequence[int] | None = None) -> None:
        """Remove (and close) the eventfds of ``vectors``, or of every vector."""
        with self._lock:
            self._eventfds().clear(vectors)
            self.gen += 1

    # -- table/PBA access ----------------------------------------------------------------
    def _ctrl_off(self, vec: int) -> int:
        return self.layout.table_offset + vec * MSIX_ENTRY_SIZE + MSIX_ENTRY_CTRL

    def vector_masked(self, vec: int) -> bool:
        return bool(self.mem[self._ctrl_off(vec)] & MSIX_ENTRY_CTRL_MASKBIT)

    def pending(self, vec: int) -> bool:
        return bool(self.mem[self.layout.pba_offset + vec // 8] & (1 << (vec % 8)))

    def _set_pending(self, vec: int, on: bool) -> None:
        off = self.layout.pba_offset + vec // 8
        bit = 1 << (vec % 8)
        self.mem[off] = (self.mem[off] | bit) if on else (self.mem[off] & ~bit & 0xFF)

    def function_delivers(self, vec: int) -> bool:
        """MSI-X Enable set, Function Mask clear (one config byte) and a wire to fire: the
        rule but for the vector's own mask bit, which a client stores into BAR memory before
        its write-log entry is applied, so the daemon's C path reads it at each raise."""
        return (self.config.data[self._flags_hi] & _FLAGS_HI_MASK == _FLAGS_HI_ON
                and self.wires.connected(vec))

    def _deliverable(self, vec: int) -> bool:
        """:meth:`function_delivers` and the vector's mask bit clear (at a precomputed
        offset): the one rule every path uses."""
        return (not self.mem[self._ctrl_offs[vec]] & MSIX_ENTRY_CTRL_MASKBIT
                and self.function_delivers(vec))

    def _deliver(self, vec: int) -> bool:
        if not self.wires.fire(vec):
            self.stats["dropped"] += 1
            return False
        self.stats["delivered"] += 1
        return True

    def _flush_pending(self) -> None:
        p0 = self.layout.pba_offset
        pba = self.mem[p0 : p0 + self.pba_size]
        if not any(pba):  # nothing pends (the common case: every table write of a probe)
            return
        for vec in range(self.vectors):
            if pba[vec >> 3] & (1 << (vec & 7)) and self._deliverable(vec):
                self._set_pending(vec, False)
                self._deliver(vec)

    # -- events --------------------------------------------------------------------------
    def raise_vector(self, vec: int) -> None:
        """Signal vector ``vec`` now, or mark it pending; never raises."""
        with self._lock:
            if not isinstance(vec, int) or not 0 <= vec < self.vectors:
                log.warning("MSI-X vector %r out of range 0..%d: dropped", vec, self.vectors - 1)
                self.stats["dropped"] += 1
                return
            if self._deliverable(vec):
                self.stats["delivered" if self.wires.fire(vec) else "dropped"] += 1
            else:
                self._set_pending(vec, True)
                self.stats["pended"] += 1

    def table_written(self, offset: int) -> None:
        """A trapped host write landed at BAR ``offset``: an unmask may release a pending vector."""
        t0 = self.layout.table_offset
        if t0 <= offset < t0 + self.table_size:
            with self._lock:
                self._flush_pending()

    def config_changed(self) -> None:
        """MSI-X Enable or Function Mask may have changed: deliver what became deliverable."""
        with self._lock:
            self.gen += 1
            self._flush_pending()

    def reset(self) -> None:
        """Reset state: every vector masked, addresses and data zero, nothing pending."""
        with self._lock:
            t0 = self.layout.table_offset
            self.mem[t0 : t0 + self.table_size] = bytes(self.table_size)
            for vec in range(self.vectors):
                self.mem[self._ctrl_off(vec)] = MSIX_ENTRY_CTRL_MASKBIT
            p0 = self.layout.pba_offset
            self.mem[p0 : p0 + self.pba_size] = bytes(self.pba_size)

    def is_table(self, bar: int, offset: int) -> bool:
        """True when ``(bar, offset)`` lies in the MSI-X table or the PBA."""
        if bar != self.layout.bar:
            return False
        t0, p0 = self.layout.table_offset, self.layout.pba_offset
        return t0 <= offset < t0 + self.table_size or p0 <= offset < p0 + self.pba_size


def _close_quietly(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass
