"""Config space: identity, BAR sizing, write masks, capabilities, MSI-X control, FLR."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xdna_emu.chips import chip_names, load_chip
from xdna_emu.pci.config import PciConfigSpace

CHIPS = [n for n in chip_names() if load_chip(n).bars]


def u16(cfg: PciConfigSpace, off: int) -> int:
    return struct.unpack("<H", cfg.read(off, 2))[0]


def u32(cfg: PciConfigSpace, off: int) -> int:
    return struct.unpack("<I", cfg.read(off, 4))[0]


def caps_of(data: bytes) -> dict[int, int]:
    """Walk the standard capability chain independently of the module under test."""
    found: dict[int, int] = {}
    ptr = data[0x34]
    while ptr and len(found) < 48:
        found[data[ptr]] = ptr
        ptr = data[ptr + 1]
    return found


@pytest.fixture(params=CHIPS)
def chip(request):
    return load_chip(request.param)


def test_identity_and_header(chip) -> None:
    cfg = PciConfigSpace(chip)
    assert len(cfg.data) == 4096
    assert u16(cfg, 0x00) == chip.pci.vendor == 0x1022
    assert u16(cfg, 0x02) == chip.pci.device
    assert cfg.read(0x08, 1)[0] == chip.pci.revision
    assert int.from_bytes(cfg.read(0x09, 3), "little") == chip.pci.class_code == 0x118000
    assert cfg.read(0x0E, 1)[0] == 0x00  # type-0 header, single function
    assert u16(cfg, 0x2C) == chip.pci.subsystem_vendor
    assert u16(cfg, 0x2E) == chip.pci.subsystem_device
    assert u16(cfg, 0x06) & 0x10  # capability list present
    assert cfg.read(0x3D, 1)[0] == 1  # INTA#
    assert not cfg.memory_enabled and not cfg.bus_master and not cfg.msix_enabled


def test_command_register_writable_bits(chip) -> None:
    cfg = PciConfigSpace(chip)
    cfg.write(0x04, b"\xff\xff")
    assert u16(cfg, 0x04) == 0x0547  # IO, MEM, BM, PER, SERR, INTx disable
    assert cfg.memory_enabled and cfg.bus_master
    cfg.write(0x04, b"\x00\x00")
    assert u16(cfg, 0x04) == 0


def lspci_size_mask(size: int) -> int:
    return ~(size - 1) & 0xFFFFFFFFFFFFFFF0


def test_bar_sizing(chip) -> None:
    cfg = PciConfigSpace(chip)
    for idx, bar in chip.bars.items():
        off = 0x10 + 4 * idx
        addr = cfg.bar_addrs[idx]
        assert addr % bar.size == 0
        assert cfg.bar_address(idx) == addr
        if bar.bits == 64:
            assert u32(cfg, off) & 0xF == 0x4
            cfg.write(off, b"\xff" * 8)
            got = u32(cfg, off) | u32(cfg, off + 4) << 32
            assert got == lspci_size_mask(bar.size) | 0x4
            cfg.write(off, struct.pack("<Q", addr))
        else:
            assert u32(cfg, off) & 0xF == 0x0
            cfg.write(off, b"\xff" * 4)
            assert u32(cfg, off) == lspci_size_mask(bar.size) & 0xFFFFFFFF
            cfg.write(off, struct.pack("<I", addr))
        assert cfg.bar_address(idx) == addr
    used = set()
    for idx, bar in chip.bars.items():
        used |= {idx, idx + 1} if bar.bits == 64 else {idx}
    for slot in set(range(6)) - used:
        cfg.write(0x10 + 4 * slot, b"\xff" * 4)
        assert u32(cfg, 0x10 + 4 * slot) == 0, f"unused BAR slot {slot} must read 0"
    cfg.write(0x30, b"\xff" * 4)
    assert u32(cfg, 0x30) == 0  # no expansion ROM


def test_bar_addresses_validated() -> None:
    chip = load_chip("npu4")
    addrs = PciConfigSpace(chip).bar_addrs
    PciConfigSpace(chip, {**addrs, 0: 0xE0000000})
    with pytest.raises(ValueError):
        PciConfigSpace(chip, {**addrs, 0: 0xE0001000})  # not aligned to the 512 KiB BAR
    with pytest.raises(ValueError):
        PciConfigSpace(chip, {k: v for k, v in addrs.items() if k != 2})


def test_capability_chain(chip) -> None:
    cfg = PciConfigSpace(chip)
    data = bytes(cfg.data)
    caps = caps_of(data)
    assert set(caps) == {0x01, 0x10, 0x11}
    exp = caps[0x10]
    flags = u16(cfg, exp + 2)
    assert flags & 0xF == 2 and (flags >> 4) & 0xF == 0  # v2, Endpoint
    assert u32(cfg, exp + 4) & (1 << 28)  # FLR capable
    msix = caps[0x11]
    assert msix == cfg.msix_cap
    ctrl = u16(cfg, msix + 2)
    assert ctrl & 0x7FF == chip.msix.vectors - 1
    table, pba = u32(cfg, msix + 4), u32(cfg, msix + 8)
    assert table & 7 == chip.msix.bar and table & ~7 == chip.msix.table_offset
    assert pba & 7 == chip.msix.bar and pba & ~7 == chip.msix.pba_offset
    header = u32(cfg, 0x100)
    if chip.pci.function != "pf":
        assert header & 0xFFFF == 0x0003 and header >> 20 == 0  # DSN, last extended capability
        return
    assert header & 0xFFFF == 0x0003 and header >> 20 == 0x110  # DSN, then SR-IOV
    sriov = u32(cfg, 0x110)
    assert sriov & 0xFFFF == 0x0010 and sriov >> 20 == 0  # SR-IOV, last
    assert u16(cfg, 0x110 + 0x0E) == chip.pci.total_vfs  # TotalVFs
    assert u16(cfg, 0x110 + 0x1A) == chip.vf_chip().pci.device  # VF Device ID


def test_msix_control_bits(chip) -> None:
    cfg = PciConfigSpace(chip)
    ctrl = cfg.msix_cap + 2
    cfg.write(ctrl, b"\xff\xff")
    assert u16(cfg, ctrl) == 0xC000 | (chip.msix.vectors - 1)
    assert cfg.msix_enabled and cfg.msix_function_masked
    cfg.write(ctrl + 1, b"\x80")  # byte write: enable only
    assert cfg.msix_enabled and not cfg.msix_function_masked
    cfg.write(ctrl, b"\x00\x00")
    assert u16(cfg, ctrl) == chip.msix.vectors - 1
    cfg.write(cfg.msix_cap + 4, b"\xff" * 8)  # table and PBA registers are read-only
    assert u32(cfg, cfg.msix_cap + 4) == chip.msix.table_offset | chip.msix.bar


def test_status_w1c_and_listeners() -> None:
    cfg = PciConfigSpace(load_chip("npu4"))
    calls: list[int] = []
    cfg.listeners.append(lambda: calls.append(1))
    cfg.write(0x06, b"\xff\xff")  # W1C of clear bits: no change, CAP_LIST stays
    assert u16(cfg, 0x06) == 0x0010 and calls == []
    cfg.data[0x07] |= 0x20  # the device model reports a received master abort
    cfg.write(0x07, b"\x20")
    assert u16(cfg, 0x06) == 0x0010 and calls == [1]
    cfg.write(0x3C, b"\x0b")
    assert calls == [1, 1]


def test_listener_failure_does_not_escape() -> None:
    cfg = PciConfigSpace(load_chip("npu4"))

    def boom() -> None:
        raise RuntimeError("listener bug")

    cfg.listeners.append(boom)
    cfg.write(0x04, b"\x02\x00")
    assert cfg.memory_enabled


def test_out_of_range_access() -> None:
    cfg = PciConfigSpace(load_chip("npu4"))
    for off, size in ((4095, 2), (-1, 1), (4096, 1), (0, 4097)):
        with pytest.raises(ValueError):
            cfg.read(off, size)
        with pytest.raises(ValueError):
            cfg.write(off, b"\0" * size)
    assert cfg.read(4095, 1) == b"\0"


def test_reset_and_flr() -> None:
    chip = load_chip("npu4")
    cfg = PciConfigSpace(chip)
    pristine = bytes(cfg.data)
    cfg.write(0x04, b"\x06\x04")
    cfg.write(0x3C, b"\x0b")
    cfg.write(cfg.msix_cap + 3, b"\xc0")
    cfg.write(0x50 + 4, b"\x03")  # D3hot
    cfg.reset()
    assert u16(cfg, 0x04) == 0
    assert not cfg.msix_enabled and not cfg.msix_function_masked
    assert cfg.data[0x50 + 4] & 3 == 0
    assert cfg.data[0x3C] == 0x0B  # interrupt line kept
    assert cfg.read(0x10, 24) == pristine[0x10:0x28]  # BARs kept
    # Initiate FLR through PCIe Device Control bit 15.
    flr: list[int] = []
    cfg.flr_listeners.append(lambda: flr.append(1))
    cfg.write(0x04, b"\x06\x00")
    cfg.write(cfg.msix_cap + 3, b"\x80")
    devctl = 0x64 + 8
    cfg.write(devctl + 1, bytes([cfg.data[devctl + 1] | 0x80]))
    assert flr == [1]
    assert u16(cfg, 0x04) == 0 and not cfg.msix_enabled
    assert not u16(cfg, devctl) & 0x8000  # the FLR bit always reads 0


def test_pm_state_d1_d2_ignored() -> None:
    cfg = PciConfigSpace(load_chip("npu4"))
    pmcsr = 0x50 + 4
    cfg.write(pmcsr, b"\x03")
    assert cfg.data[pmcsr] & 3 == 3
    cfg.write(pmcsr, b"\x01")
    assert cfg.data[pmcsr] & 3 == 3
    cfg.write(pmcsr, b"\x00")
    assert cfg.data[pmcsr] & 3 == 0


def test_resource_lines(chip) -> None:
    cfg = PciConfigSpace(chip)
    lines = cfg.resource_lines().splitlines()
    assert len(lines) >= 7
    for idx, line in enumerate(lines):
        start, end, flags = (int(x, 16) for x in line.split())
        bar = chip.bars.get(idx) if idx < 6 else None
        if bar is None:
            assert (start, end, flags) == (0, 0, 0)
            continue
        assert start == cfg.bar_addrs[idx] and end == start + bar.size - 1
        assert flags & 0x200  # IORESOURCE_MEM
        assert bool(flags & 0x100000) == (bar.bits == 64) and flags & 0xF == (
            4 if bar.bits == 64 else 0
        )


# Fields that no write may ever change: (offset, size).
RO_FIELDS = [(0x00, 4), (0x08, 4), (0x0E, 2), (0x2C, 4), (0x30, 4), (0x34, 1), (0x3D, 1)]


@settings(max_examples=300, deadline=None)
@given(
    writes=st.lists(
        st.tuples(st.integers(0, 4095), st.binary(min_size=1, max_size=8)), min_size=1, max_size=20
    ),
    name=st.sampled_from(CHIPS),
)
def test_read_only_bits_survive_random_writes(writes, name) -> None:
    chip = load_chip(name)
    cfg = PciConfigSpace(chip)
    ref = PciConfigSpace(chip)
    ro = bytes(~(w | c) & 0xFF for w, c in zip(cfg.wmask, cfg.w1cmask, strict=True))
    for off, data in writes:
        data = data[: 4096 - off]
        cfg.write(off, data)
        changed = [i for i in range(4096) if (cfg.data[i] ^ ref.data[i]) & ro[i]]
        assert changed == [], f"read-only bits changed at {changed[:4]} after write {off:#x}"
    for off, size in RO_FIELDS:
        assert cfg.read(off, size) == ref.read(off, size)
    assert caps_of(bytes(cfg.data)) == caps_of(bytes(ref.data))
    m = cfg.msix_cap
    assert u16(cfg, m + 2) & 0x3FFF == chip.msix.vectors - 1
    assert cfg.read(m + 4, 8) == ref.read(m + 4, 8)
    assert u32(cfg, 0x100) == u32(ref, 0x100)
    for idx, bar in chip.bars.items():  # BAR type bits and size never change
        low = u32(cfg, 0x10 + 4 * idx)
        assert low & 0xF == (4 if bar.bits == 64 else 0)
        assert low & (bar.size - 1) & ~0xF == 0
