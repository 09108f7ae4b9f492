"""PCI capability structures placed into a config space, with their write masks.

Config space is three parallel byte arrays (the QEMU ``config``/``wmask``/``w1cmask`` idea):
``data`` is what a read returns, ``wmask`` marks the bits a write may set or clear, and
``w1cmask`` marks the bits a write of 1 clears (status bits). A capability is "placed" by
filling its bytes and masks and linking it into the chain; nothing else is needed to make
it behave, because :meth:`xdna_emu.pci.config.PciConfigSpace.write` applies the masks.

Register values below follow the PCI Local Bus 3.0, PCI PM 1.2 and PCIe Base specifications
(structure layouts only). Link speed/width and device capabilities are emulator-chosen: the
NPU is an on-die function and the driver reads none of them.
"""

from __future__ import annotations

import struct
from enum import IntEnum

from ..chips import MsixLayout

CONFIG_SIZE = 4096
LEGACY_SIZE = 256
CAP_PTR = 0x34
STATUS = 0x06
STATUS_CAP_LIST = 0x0010


class PciCapId(IntEnum):
    PM = 0x01
    MSI = 0x05
    VNDR = 0x09
    EXP = 0x10
    MSIX = 0x11


class PciExtCapId(IntEnum):
    DSN = 0x0003
    VNDR = 0x000B
    SRIOV = 0x0010


# -- SR-IOV extended capability registers (PCIe Base, offsets from the capability) ------
SRIOV_CTRL = 0x08
SRIOV_CTRL_VFE = 0x0001  # VF Enable
SRIOV_CTRL_MSE = 0x0008  # VF Memory Space Enable
SRIOV_INITIAL_VF = 0x0C
SRIOV_TOTAL_VF = 0x0E
SRIOV_NUM_VF = 0x10
SRIOV_VF_OFFSET = 0x14
SRIOV_VF_STRIDE = 0x16
SRIOV_VF_DID = 0x1A
SRIOV_SUP_PGSIZE = 0x1C
SRIOV_SYS_PGSIZE = 0x20
SRIOV_SIZE = 0x40


# -- MSI-X capability registers (offsets from the capability) --------------------------
MSIX_FLAGS = 2
MSIX_TABLE = 4
MSIX_PBA = 8
MSIX_SIZE = 12
MSIX_FLAGS_QSIZE = 0x07FF
MSIX_FLAGS_MASKALL = 0x4000
MSIX_FLAGS_ENABLE = 0x8000
MSIX_ENTRY_SIZE = 16
MSIX_ENTRY_CTRL = 12
MSIX_ENTRY_CTRL_MASKBIT = 0x1

# -- PCI Express capability registers ---------------------------------------------------
EXP_FLAGS = 0x02
EXP_DEVCAP = 0x04
EXP_DEVCTL = 0x08
EXP_DEVSTA = 0x0A
EXP_LNKCAP = 0x0C
EXP_LNKCTL = 0x10
EXP_LNKSTA = 0x12
EXP_DEVCAP2 = 0x24
EXP_DEVCTL2 = 0x28
EXP_LNKCAP2 = 0x2C
EXP_LNKCTL2 = 0x30
EXP_SIZE_V2 = 0x3C
EXP_DEVCAP_FLR = 1 << 28
EXP_DEVCTL_BCR_FLR = 0x8000
EXP_DEVCTL_DEFAULT = 0x2810  # relaxed ordering, no-snoop enable, MRRS 512 B (spec reset values)

# -- Power management capability ----------------------------------------------------------
PM_CTRL = 4
PM_SIZE = 8
PM_CTRL_STATE_MASK = 0x0003
PM_CTRL_NO_SOFT_RESET = 0x0008


class ConfigRegs:
    """The three byte arrays of a config space, with little-endian field helpers."""

    def __init__(self, size: int = CONFIG_SIZE) -> None:
        self.data = bytearray(size)
        self.wmask = bytearray(size)
        self.w1cmask = bytearray(size)

    @staticmethod
    def _put(buf: bytearray, off: int, size: int, val: int) -> None:
        buf[off : off + size] = (val & ((1 << (8 * size)) - 1)).to_bytes(size, "little")

    def get(self, off: int, size: int) -> int:
        return int.from_bytes(self.data[off : off + size], "little")

    def set(self, off: int, size: int, val: int, wmask: int = 0, w1c: int = 0) -> None:
        """Set a field's value and its masks at once (masks default to read-only)."""
        self._put(self.data, off, size, val)
        self._put(self.wmask, off, size, wmask)
        self._put(self.w1cmask, off, size, w1c)


def link_cap(regs: ConfigRegs, offset: int, cap_id: int) -> None:
    """Append a standard capability header at ``offset`` to the end of the chain."""
    regs.set(offset, 1, cap_id)
    regs.set(offset + 1, 1, 0)
    regs.data[STATUS] |= STATUS_CAP_LIST
    ptr_at = CAP_PTR
    seen = 0
    while regs.data[ptr_at] and seen < 48:
        ptr_at = regs.data[ptr_at] + 1
        seen += 1
    regs.data[ptr_at] = offset


def add_pm(regs: ConfigRegs, offset: int) -> None:
    """PM capability v3: D0/D3hot only, no PME, No_Soft_Reset set (state kept across D3hot)."""
    link_cap(regs, offset, PciCapId.PM)
    regs.set(offset + 2, 2, 0x0003)  # version 3, nothing else supported
    regs.set(offset + PM_CTRL, 2, PM_CTRL_NO_SOFT_RESET, wmask=PM_CTRL_STATE_MASK)
    regs.set(offset + 6, 2, 0)


def add_pcie(regs: ConfigRegs, offset: int) -> None:
    """PCIe capability v2, device/port type Endpoint, FLR capable."""
    link_cap(regs, offset, PciCapId.EXP)
    for off in range(offset + 2, offset + EXP_SIZE_V2):
        regs.set(off, 1, 0)
    regs.set(offset + EXP_FLAGS, 2, 0x0002)  # version 2, type 0 = PCI Express Endpoint
    # MPS 256 B, phantom/ext tag off, L0s/L1 latency unlimited, role-based errors, FLR.
    regs.set(offset + EXP_DEVCAP, 4, 0x1 | (7 << 6) | (7 << 9) | (1 << 15) | EXP_DEVCAP_FLR)
    # Error-reporting enables, relaxed ordering, MPS, ext tag, no-snoop, MRRS writable;
    # bit 15 (initiate FLR) is a command that always reads 0 (handled by the config space).
    regs.set(offset + EXP_DEVCTL, 2, EXP_DEVCTL_DEFAULT, wmask=0x79FF)
    regs.set(offset + EXP_DEVSTA, 2, 0, w1c=0x000F)
    # Port 0, max speed 16 GT/s (4), width x16, ASPM not supported.
    regs.set(offset + EXP_LNKCAP, 4, 0x4 | (16 << 4))
    regs.set(offset + EXP_LNKCTL, 2, 0, wmask=0x01C3)
    regs.set(offset + EXP_LNKSTA, 2, 0x4 | (16 << 4))
    # Completion timeout ranges A-D, disable supported; 10-bit tags off.
    regs.set(offset + EXP_DEVCAP2, 4, 0x1F)
    regs.set(offset + EXP_DEVCTL2, 2, 0, wmask=0x001F)
    regs.set(offset + EXP_LNKCAP2, 4, 0x1E)  # 2.5/5/8/16 GT/s supported
    regs.set(offset + EXP_LNKCTL2, 2, 0x4, wmask=0x000F)


def add_msix(regs: ConfigRegs, offset: int, msix: MsixLayout) -> None:
    """MSI-X: table size, BIRs and offsets from the chip; only Enable and Function Mask write."""
    if not 1 <= msix.vectors <= 2048:
        raise ValueError(f"MSI-X vector count {msix.vectors} outside 1..2048")
    if msix.table_offset & 7 or msix.pba_offset & 7 or not 0 <= msix.bar <= 5:
        raise ValueError("MSI-X table/PBA offsets must be 8-byte aligned in BAR 0..5")
    link_cap(regs, offset, PciCapId.MSIX)
    regs.set(offset + MSIX_FLAGS, 2, msix.vectors - 1, wmask=MSIX_FLAGS_ENABLE | MSIX_FLAGS_MASKALL)
    regs.set(offset + MSIX_TABLE, 4, msix.table_offset | msix.bar)
    regs.set(offset + MSIX_PBA, 4, msix.pba_offset | msix.bar)


def add_dsn(regs: ConfigRegs, offset: int, serial: int, next_cap: int = 0) -> None:
    """Device Serial Number extended capability (the first extended capability)."""
    regs.set(offset, 4, PciExtCapId.DSN | (1 << 16) | (next_cap << 20))  # version 1
    regs.set(offset + 4, 8, serial)


def add_sriov(regs: ConfigRegs, offset: int, total_vfs: int, vf_device: int) -> None:
    """SR-IOV extended capability of a physical function (docs/spec/aie4.md §10): TotalVFs
    VFs at routing id offset 1, stride 1; NumVFs and VF Enable/MSE writable. The VF BAR
    registers read 0: each VF is its own emulated function with its own BARs."""
    regs.set(offset, 4, PciExtCapId.SRIOV | (1 << 16))  # version 1, last
    regs.set(offset + SRIOV_CTRL, 2, 0, wmask=SRIOV_CTRL_VFE | SRIOV_CTRL_MSE)
    regs.set(offset + SRIOV_INITIAL_VF, 2, total_vfs)
    regs.set(offset + SRIOV_TOTAL_VF, 2, total_vfs)
    regs.set(offset + SRIOV_NUM_VF, 2, 0, wmask=0xFFFF)
    regs.set(offset + SRIOV_VF_OFFSET, 2, 1)
    regs.set(offset + SRIOV_VF_STRIDE, 2, 1)
    regs.set(offset + SRIOV_VF_DID, 2, vf_device)
    regs.set(offset + SRIOV_SUP_PGSIZE, 4, 1)  # 4 KiB pages
    regs.set(offset + SRIOV_SYS_PGSIZE, 4, 1, wmask=0xFFFFFFFF)


def walk_caps(data: bytes | bytearray) -> list[tuple[int, int]]:
    """``(cap_id, offset)`` along the standard chain; stops at loops or bad pointers."""
    out: list[tuple[int, int]] = []
    if not struct.unpack_from("<H", data, STATUS)[0] & STATUS_CAP_LIST:
        return out
    ptr = data[CAP_PTR] & 0xFC
    seen: set[int] = set()
    while 0x40 <= ptr < LEGACY_SIZE and ptr not in seen:
        seen.add(ptr)
        out.append((data[ptr], ptr))
        ptr = data[ptr + 1] & 0xFC
    return out


def walk_ext_caps(data: bytes | bytearray) -> list[tuple[int, int]]:
    """``(ext_cap_id, offset)`` along the extended chain from 0x100."""
    out: list[tuple[int, int]] = []
    if len(data) < CONFIG_SIZE:
        return out
    ptr = LEGACY_SIZE
    seen: set[int] = set()
    while LEGACY_SIZE <= ptr < CONFIG_SIZE and ptr not in seen:
        header = struct.unpack_from("<I", data, ptr)[0]
        if header in (0, 0xFFFFFFFF):
            break
        seen.add(ptr)
        out.append((header & 0xFFFF, ptr))
        ptr = (header >> 20) & 0xFFC
    return out


def find_cap(data: bytes | bytearray, cap_id: int) -> int | None:
    for cid, off in walk_caps(data):
        if cid == cap_id:
            return off
    return None
