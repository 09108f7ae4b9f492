"""The NPU function's 4 KiB PCI configuration space.

A type-0 header built from ``chip.pci`` and ``chip.bars``, followed by the capability list
PM (0x50) -> PCI Express v2 Endpoint (0x64) -> MSI-X (0xA0), and a Device Serial Number
extended capability at 0x100. Writes follow PCI semantics through per-byte write masks
(``wmask``: bits a write stores; ``w1cmask``: bits a written 1 clears), so any offset and
size inside the 4 KiB is accepted and read-only bits stay read-only whatever is written.
BAR sizing falls out of the masks: writing all ones reads back ``~(size-1) | type bits``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from ..chips import Chip
from .caps import (
    CONFIG_SIZE,
    EXP_DEVCTL,
    EXP_DEVCTL_BCR_FLR,
    MSIX_FLAGS,
    MSIX_FLAGS_ENABLE,
    MSIX_FLAGS_MASKALL,
    PM_CTRL,
    PM_CTRL_STATE_MASK,
    ConfigRegs,
    add_dsn,
    add_msix,
    add_pcie,
    add_pm,
)

log = logging.getLogger(__name__)

VENDOR_ID = 0x00
DEVICE_ID = 0x02
COMMAND = 0x04
STATUS = 0x06
REVISION_ID = 0x08
CLASS_PROG = 0x09
CACHE_LINE_SIZE = 0x0C
HEADER_TYPE = 0x0E
BAR0 = 0x10
SUBSYSTEM_VENDOR_ID = 0x2C
SUBSYSTEM_ID = 0x2E
ROM_ADDRESS = 0x30
INTERRUPT_LINE = 0x3C
INTERRUPT_PIN = 0x3D

CMD_IO = 0x0001
CMD_MEMORY = 0x0002
CMD_MASTER = 0x0004
CMD_PARITY = 0x0040
CMD_SERR = 0x0100
CMD_INTX_DISABLE = 0x0400
CMD_WMASK = CMD_IO | CMD_MEMORY | CMD_MASTER | CMD_PARITY | CMD_SERR | CMD_INTX_DISABLE
STATUS_W1C = 0xF900  # parity, target/master aborts, SERR, detected parity error

BAR_MEM_TYPE_64 = 0x4
BAR_MEM_PREFETCH = 0x8

# Kernel resource flags as the sysfs `resource` file prints them (include/linux/ioport.h).
IORESOURCE_MEM = 0x00000200
IORESOURCE_SIZEALIGN = 0x00040000
IORESOURCE_MEM_64 = 0x00100000
RESOURCE_LINES = 13  # BAR0-5, ROM, 6 SR-IOV BARs: what a CONFIG_PCI_IOV kernel prints

PM_CAP = 0x50
EXP_CAP = 0x64
MSIX_CAP = 0xA0
DSN_CAP = 0x100

DEFAULT_BAR_BASE = 0xDC000000


def _default_bar_addrs(chip: Chip) -> dict[int, int]:
    """Naturally aligned, ascending fake bus addresses from 0xdc000000 (below 4 GiB)."""
    addrs: dict[int, int] = {}
    cursor = DEFAULT_BAR_BASE
    for idx in sorted(chip.bars):
        size = chip.bars[idx].size
        cursor = (cursor + size - 1) & ~(size - 1)
        addrs[idx] = cursor
        cursor += size
    return addrs


class PciConfigSpace:
    """Live config space of one function; ``data`` is what a config read returns."""

    def __init__(self, chip: Chip, bar_addrs: dict[int, int] | None = None) -> None:
        self.chip = chip
        self.bar_addrs = dict(bar_addrs) if bar_addrs is not None else _default_bar_addrs(chip)
        self._check_bars()
        self.msix_cap = MSIX_CAP
        self.exp_cap = EXP_CAP
        self.pm_cap = PM_CAP
        self._regs = self._build()
        self._power_on = bytes(self._regs.data)  # what every FLR returns to
        self.data = self._regs.data
        self.wmask = self._regs.wmask
        self.w1cmask = self._regs.w1cmask
        #: Called after every write (or reset) that changed ``data``.
        self.listeners: list[Callable[[], None]] = []
        #: Called after a write of PCIe Device Control "Initiate FLR" reset the config
        #: space; the device model resets everything else (BAR contents, MSI-X table).
        self.flr_listeners: list[Callable[[], None]] = []

    # -- construction --------------------------------------------------------------------
    def _check_bars(self) -> None:
        used: dict[int, int] = {}
        for idx, bar in self.chip.bars.items():
            slots = [idx, idx + 1] if bar.bits == 64 else [idx]
            if bar.bits not in (32, 64) or slots[-1] > 5:
                raise ValueError(
                    f"{self.chip.name}: BAR{idx} ({bar.bits}-bit) does not fit slots 0-5"
                )
            for slot in slots:
                if slot in used:
                    raise ValueError(f"{self.chip.name}: BAR{idx} overlaps BAR{used[slot]}")
                used[slot] = idx
            if bar.size < 16 or bar.size & (bar.size - 1):
                raise ValueError(
                    f"{self.chip.name}: BAR{idx} size {bar.size:#x} is not a power of two"
                )
            addr = self.bar_addrs.get(idx)
            if addr is None or addr % bar.size or (bar.bits == 32 and addr + bar.size > 1 << 32):
                raise ValueError(
                    f"{self.chip.name}: BAR{idx} address {addr!r} not aligned/in range"
                )

    def _build(self) -> ConfigRegs:
        chip, pci = self.chip, self.chip.pci
        regs = ConfigRegs(CONFIG_SIZE)
        regs.set(VENDOR_ID, 2, pci.vendor)
        regs.set(DEVICE_ID, 2, pci.device)
        regs.set(COMMAND, 2, 0, wmask=CMD_WMASK)
        regs.set(STATUS, 2, 0, w1c=STATUS_W1C)
        regs.set(REVISION_ID, 1, pci.revision)
        regs.set(CLASS_PROG, 3, pci.class_code)
        regs.set(CACHE_LINE_SIZE, 1, 0, wmask=0xFF)
        regs.set(HEADER_TYPE, 1, 0x00)
        for idx, bar in chip.bars.items():
            addr = self.bar_addrs[idx]
            mask = ~(bar.size - 1) & 0xFFFFFFFFFFFFFFF0
            off = BAR0 + 4 * idx
            if bar.bits == 64:
                regs.set(off, 4, (addr & 0xFFFFFFF0) | BAR_MEM_TYPE_64, wmask=mask & 0xFFFFFFFF)
                regs.set(off + 4, 4, addr >> 32, wmask=mask >> 32)
            else:
                regs.set(off, 4, addr & 0xFFFFFFF0, wmask=mask & 0xFFFFFFFF)
        regs.set(SUBSYSTEM_VENDOR_ID, 2, pci.subsystem_vendor)
        regs.set(SUBSYSTEM_ID, 2, pci.subsystem_device)
        regs.set(ROM_ADDRESS, 4, 0)  # no expansion ROM: sizing reads back 0
        regs.set(INTERRUPT_LINE, 1, 0, wmask=0xFF)
        regs.set(INTERRUPT_PIN, 1, 1)  # INTA#
        add_pm(regs, PM_CAP)
        add_pcie(regs, EXP_CAP)
        add_msix(regs, MSIX_CAP, chip.msix)
        add_dsn(regs, DSN_CAP, (pci.vendor << 48) | (pci.device << 32) | (pci.revision << 16))
        return regs

    # -- access --------------------------------------------------------------------------
    @staticmethod
    def _check(offset: int, size: int) -> None:
        if size < 0 or offset < 0 or offset + size > CONFIG_SIZE:
            raise ValueError(f"config access {offset:#x}+{size} outside 0..{CONFIG_SIZE:#x}")

    def read(self, offset: int, size: int) -> bytes:
        self._check(offset, size)
        return bytes(self.data[offset : offset + size])

    def write(self, offset: int, data: bytes) -> None:
        """Apply a config write byte by byte through the write masks."""
        self._check(offset, len(data))
        before = bytes(self.data)
        d, wm, w1c = self.data, self.wmask, self.w1cmask
        for i, val in enumerate(data):
            o = offset + i
            d[o] = ((d[o] & ~wm[o]) | (val & wm[o])) & ~(val & w1c[o]) & 0xFF
        self._fixups(before, offset, data)
        if self._flr_requested(offset, data):
            self._reset()
            self._notify(self.flr_listeners)
        if bytes(self.data) != before:
            self._notify(self.listeners)

    def _fixups(self, before: bytes, offset: int, data: bytes) -> None:
        # D1/D2 are not supported: a write asking for them leaves the power state alone.
        pm = self.pm_cap + PM_CTRL
        if offset <= pm < offset + len(data) and data[pm - offset] & PM_CTRL_STATE_MASK in (1, 2):
            self.data[pm] = (self.data[pm] & ~PM_CTRL_STATE_MASK) | (
                before[pm] & PM_CTRL_STATE_MASK
            )

    def _flr_requested(self, offset: int, data: bytes) -> bool:
        hi = self.exp_cap + EXP_DEVCTL + 1
        return offset <= hi < offset + len(data) and bool(
            data[hi - offset] & (EXP_DEVCTL_BCR_FLR >> 8)
        )

    def _notify(self, callbacks: list[Callable[[], None]]) -> None:
        for cb in list(callbacks):
            try:
                cb()
            except Exception:  # a listener must not turn a config write into an error
                log.exception("config-space listener %r failed", cb)

    def reset(self) -> None:
        """Function Level Reset of the config space.

        Everything returns to its power-on value: the whole command register (I/O, memory,
        bus master, INTx disable ... all cleared), status error bits, PM state D0, PCIe
        control registers, and MSI-X Enable/Function Mask. Kept: the BAR registers, cache
        line size and interrupt line, i.e. what the PCI core restores after an FLR anyway,
        so the addresses in sysfs ``resource`` stay true. The PCI core role (shim/daemon)
        re-enables memory and bus mastering afterwards, as ``pci_restore_state`` does.
        """
        before = bytes(self.data)
        self._reset()
        if bytes(self.data) != before:
            self._notify(self.listeners)

    def _reset(self) -> None:
        keep = {
            BAR0: self.data[BAR0 : BAR0 + 24],
            CACHE_LINE_SIZE: self.data[CACHE_LINE_SIZE : CACHE_LINE_SIZE + 1],
            INTERRUPT_LINE: self.data[INTERRUPT_LINE : INTERRUPT_LINE + 1],
        }
        self.data[:] = self._power_on
        for off, val in keep.items():
            self.data[off : off + len(val)] = val

    # -- decoded state -------------------------------------------------------------------
    def _word(self, off: int) -> int:
        return self.data[off] | self.data[off + 1] << 8

    @property
    def command(self) -> int:
        return self._word(COMMAND)

    @property
    def memory_enabled(self) -> bool:
        return bool(self.command & CMD_MEMORY)

    @property
    def bus_master(self) -> bool:
        return bool(self.data[COMMAND] & CMD_MASTER)  # the low byte holds it: every DMA asks

    @property
    def msix_control(self) -> int:
        return self._word(self.msix_cap + MSIX_FLAGS)

    @property
    def msix_enabled(self) -> bool:
        return bool(self.msix_control & MSIX_FLAGS_ENABLE)

    @property
    def msix_function_masked(self) -> bool:
        return bool(self.msix_control & MSIX_FLAGS_MASKALL)

    def bar_address(self, index: int) -> int:
        """The live address programmed in BAR ``index`` (type bits stripped)."""
        bar = self.chip.bars[index]
        off = BAR0 + 4 * index
        addr = int.from_bytes(self.data[off : off + 4], "little") & 0xFFFFFFF0
        if bar.bits == 64:
            addr |= int.from_bytes(self.data[off + 4 : off + 8], "little") << 32
        return addr

    def resource_lines(self) -> str:
        """sysfs ``resource``: start, end, flags per BAR slot, ROM and IOV slots, as assigned."""
        lines = []
        for slot in range(RESOURCE_LINES):
            bar = self.chip.bars.get(slot) if slot < 6 else None
            if bar is None:
                lines.append(f"0x{0:016x} 0x{0:016x} 0x{0:016x}")
                continue
            start = self.bar_addrs[slot]
            flags = IORESOURCE_MEM | IORESOURCE_SIZEALIGN
            if bar.bits == 64:
                flags |= IORESOURCE_MEM_64 | BAR_MEM_TYPE_64
            lines.append(f"0x{start:016x} 0x{start + bar.size - 1:016x} 0x{flags:016x}")
        return "\n".join(lines) + "\n"
