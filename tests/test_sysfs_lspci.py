"""The generated sysfs tree, decoded by the real lspci."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from xdna_emu.chips import Chip, emulated_chip_names, load_chip
from xdna_emu.pci.config import PciConfigSpace
from xdna_emu.sysfs import update_config, write_sysfs, write_umockdev

LSPCI = shutil.which("lspci")
pytestmark = pytest.mark.skipif(LSPCI is None, reason="lspci (pciutils) is not installed")

AIE2 = emulated_chip_names()
BDF = "0000:c5:00.1"


def lspci_size(size: int) -> str:
    """lspci's size notation: the largest unit that divides the size exactly."""
    for unit, shift in (("G", 30), ("M", 20), ("K", 10)):
        if size % (1 << shift) == 0:
            return f"{size >> shift}{unit}"
    return str(size)


def make_tree(
    tmp: Path, chip: Chip, bdf: str = BDF
) -> tuple[PciConfigSpace, Path, dict[int, Path]]:
    cfg = PciConfigSpace(chip)
    bars = {}
    for idx, bar in chip.bars.items():
        path = tmp / f"bar{idx}"
        path.write_bytes(bytes(bar.size))
        bars[idx] = path
    sysroot = write_sysfs(tmp, chip, bdf, cfg, bars, tmp / "ctl.sock")
    return cfg, sysroot, bars


def lspci(*args: str) -> str:
    proc = subprocess.run([LSPCI, *args], capture_output=True, text=True, timeout=30)  # type: ignore[list-item]
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.parametrize("name", AIE2)
def test_lspci_decodes_tree(tmp_path: Path, name: str) -> None:
    chip = load_chip(name)
    if not chip.bars:
        pytest.skip(f"{name} has no BARs")
    cfg, sysroot, bars = make_tree(tmp_path, chip)
    opt = f"sysfs.path={sysroot}/bus/pci"
    p = chip.pci
    out = lspci("-vv", "-nn", "-k", "-O", opt)
    assert "c5:00.1 Signal processing controller [1180]: " in out
    rev = f" (rev {p.revision:02x})" if p.revision else "\n"  # lspci omits revision 0
    assert f"[{p.vendor:04x}:{p.device:04x}]{rev}" in out
    assert "Subsystem: " in out and f"[{p.subsystem_vendor:04x}:{p.subsystem_device:04x}]" in out
    regions = {
        idx: f"Region {idx}: Memory at {cfg.bar_addrs[idx]:x} ({bar.bits}-bit, non-prefetchable) "
        for idx, bar in chip.bars.items()
    }
    sizes = {idx: f"[size={lspci_size(bar.size)}]" for idx, bar in chip.bars.items()}
    for idx in chip.bars:  # memory decoding is still off
        assert regions[idx] + "[disabled] " + sizes[idx] in out, f"missing region {idx}"
    assert out.count("Region ") == len(chip.bars)
    assert "Express (v2) Endpoint" in out
    m = chip.msix
    assert f"MSI-X: Enable- Count={m.vectors} Masked-" in out
    assert f"Vector table: BAR={m.bar} offset={m.table_offset:08x}" in out
    assert f"PBA: BAR={m.bar} offset={m.pba_offset:08x}" in out
    assert "Kernel driver in use: amdxdna" in out
    assert "Control: I/O- Mem- BusMaster-" in out

    cfg.write(0x04, b"\x06\x00")
    cfg.write(cfg.msix_cap + 3, b"\x80")
    update_config(sysroot, BDF, cfg)
    out = lspci("-vv", "-O", opt)
    assert f"MSI-X: Enable+ Count={m.vectors} Masked-" in out
    assert "Control: I/O- Mem+ BusMaster+" in out
    for idx in chip.bars:
        assert regions[idx] + sizes[idx] in out, f"missing enabled region {idx}"

    # resourceN are links to the BAR files, and the tree has what libudev needs.
    dev = sysroot / "bus/pci/devices" / BDF
    for idx, path in bars.items():
        assert os.path.realpath(dev / f"resource{idx}") == str(path.resolve())
    assert (dev / "config").read_bytes() == bytes(cfg.data)
    assert os.path.basename(os.path.realpath(dev / "driver")) == "amdxdna"
    assert (sysroot / "class").is_dir()


def test_lspci_machine_readable_ids(tmp_path: Path) -> None:
    chip = load_chip("npu4")
    _, sysroot, _ = make_tree(tmp_path, chip)
    out = lspci("-n", "-mm", "-O", f"sysfs.path={sysroot}/bus/pci")
    assert out.split()[:4] == ["c5:00.1", '"1180"', '"1022"', '"17f0"']


def test_rewriting_tree_is_idempotent(tmp_path: Path) -> None:
    chip = load_chip("npu4")
    cfg, sysroot, bars = make_tree(tmp_path, chip)
    again = write_sysfs(tmp_path, chip, BDF, cfg, bars, tmp_path / "ctl.sock")
    assert again == sysroot
    assert len(list((sysroot / "bus/pci/devices").iterdir())) == 1


def test_lspci_reads_hex_dump(tmp_path: Path) -> None:
    """lspci -F decodes our config space with no sysfs at all (the libvfio-user check)."""
    chip = load_chip("npu4")
    cfg = PciConfigSpace(chip)
    cfg.write(cfg.msix_cap + 3, b"\x80")
    rows = [
        f"{o:03x}: " + " ".join(f"{b:02x}" for b in cfg.data[o : o + 16])
        for o in range(0, 4096, 16)
    ]
    dump = tmp_path / "config.dump"
    dump.write_text("c5:00.1 Signal processing controller\n" + "\n".join(rows) + "\n")
    out = lspci("-vv", "-nn", "-F", str(dump))
    assert "[1022:17f0] (rev 10)" in out
    assert f"MSI-X: Enable+ Count={chip.msix.vectors} Masked-" in out
    assert "Express (v2) Endpoint" in out
    assert "Device Serial Number" in out


def test_umockdev_description(tmp_path: Path) -> None:
    chip = load_chip("npu4")
    cfg, _, bars = make_tree(tmp_path, chip)
    desc = write_umockdev(tmp_path / "npu.umockdev", chip, BDF, cfg, bars, tmp_path / "ctl.sock")
    lines = desc.read_text().splitlines()
    assert lines[0] == f"P: /devices/pci0000:00/0000:00:08.2/{BDF}"
    assert "E: PCI_ID=1022:17F0" in lines and "E: DRIVER=amdxdna" in lines
    assert (
        f"E: XDNA_EMU_SOCKET={tmp_path / 'ctl.sock'}" in lines and "E: XDNA_EMU_CHIP=npu4" in lines
    )
    (hexline,) = [ln for ln in lines if ln.startswith("H: config=")]
    assert bytes.fromhex(hexline[len("H: config=") :]) == bytes(cfg.data)
    assert f"L: resource0={bars[0].resolve()}" in lines
