"""The device as the kernel would publish it: a sysfs tree and a umockdev description.

Both are generated from the same :class:`Chip` and live :class:`PciConfigSpace`, so lspci
(``-O sysfs.path=<sysfs_root>/bus/pci``) and pyudev (inside a umockdev testbed) see one and
the same function. ``resourceN`` are absolute links to the daemon's BAR files, so a driver
that opens and mmaps ``/sys/bus/pci/devices/<bdf>/resourceN`` shares the daemon's pages.
Layout facts (file names, formats, the ``driver`` and ``subsystem`` links) follow the
kernel's sysfs PCI ABI and what lspci's sysfs backend reads (docs/spec/sysfs.md).
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from .chips import Chip
from .pci.config import PciConfigSpace

DRIVER = "amdxdna"
_BDF = re.compile(r"^([0-9a-f]{4}):([0-9a-f]{2}):([0-1][0-9a-f])\.([0-7])$")


def parse_bdf(bdf: str) -> tuple[int, int, int, int]:
    """``"0000:c5:00.1"`` -> (domain, bus, device, function); ValueError when malformed."""
    m = _BDF.match(bdf)
    if not m or int(m.group(3), 16) > 0x1F:
        raise ValueError(f"malformed PCI address {bdf!r} (want DDDD:BB:DD.F, lower-case hex)")
    return int(m.group(1), 16), int(m.group(2), 16), int(m.group(3), 16), int(m.group(4))


def device_path(bdf: str) -> str:
    """The devpath below /sys: behind a root-port bridge 00:08.2 unless on bus 0 (as on Strix)."""
    domain, bus, _, _ = parse_bdf(bdf)
    root = f"/devices/pci{domain:04x}:00"
    if bus == 0:
        return f"{root}/{bdf}"
    return f"{root}/{domain:04x}:00:08.2/{bdf}"


def modalias(chip: Chip) -> str:
    p = chip.pci
    return (
        f"pci:v{p.vendor:08X}d{p.device:08X}sv{p.subsystem_vendor:08X}sd{p.subsystem_device:08X}"
        f"bc{p.class_code >> 16:02X}sc{(p.class_code >> 8) & 0xFF:02X}i{p.class_code & 0xFF:02X}"
    )


def udev_properties(chip: Chip, bdf: str, socket: Path) -> dict[str, str]:
    """What udev would hold for the device, plus our XDNA_EMU_* keys (how to reach the daemon)."""
    p = chip.pci
    return {
        "DRIVER": DRIVER,
        "PCI_CLASS": f"{p.class_code:X}",
        "PCI_ID": f"{p.vendor:04X}:{p.device:04X}",
        "PCI_SUBSYS_ID": f"{p.subsystem_vendor:04X}:{p.subsystem_device:04X}",
        "PCI_SLOT_NAME": bdf,
        "MODALIAS": modalias(chip),
        "XDNA_EMU_SOCKET": str(socket),
        "XDNA_EMU_CHIP": chip.name,
    }


def _text_attrs(chip: Chip, bdf: str, config: PciConfigSpace) -> dict[str, str]:
    p = chip.pci
    return {
        "vendor": f"0x{p.vendor:04x}\n",
        "device": f"0x{p.device:04x}\n",
        "class": f"0x{p.class_code:06x}\n",
        "revision": f"0x{p.revision:02x}\n",
        "subsystem_vendor": f"0x{p.subsystem_vendor:04x}\n",
        "subsystem_device": f"0x{p.subsystem_device:04x}\n",
        "irq": "0\n",
        "resource": config.resource_lines(),
        "enable": "1\n",
        "numa_node": "-1\n",
        "local_cpulist": f"0-{max(0, (os.cpu_count() or 1) - 1)}\n",
        "dma_mask_bits": "64\n",
        "consistent_dma_mask_bits": "64\n",
        "power_state": "D0\n",
        "reset_method": "flr\n",
        "modalias": modalias(chip) + "\n",
        **_sriov_attrs(chip, config),
    }


def _sriov_attrs(chip: Chip, config: PciConfigSpace) -> dict[str, str]:
    """A PF's SR-IOV attributes, read from its SR-IOV capability (docs/spec/aie4.md §10)."""
    if chip.pci.function != "pf":
        return {}
    from .pci.caps import SRIOV_CTRL, SRIOV_CTRL_VFE, SRIOV_NUM_VF, SRIOV_TOTAL_VF, SRIOV_VF_DID
    from .pci.config import SRIOV_CAP

    def u16(off: int) -> int:
        return int.from_bytes(config.data[SRIOV_CAP + off : SRIOV_CAP + off + 2], "little")

    num = u16(SRIOV_NUM_VF) if u16(SRIOV_CTRL) & SRIOV_CTRL_VFE else 0
    return {"sriov_totalvfs": f"{u16(SRIOV_TOTAL_VF)}\n", "sriov_numvfs": f"{num}\n",
            "sriov_offset": "1\n", "sriov_stride": "1\n",
            "sriov_vf_device": f"{u16(SRIOV_VF_DID):04x}\n"}


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _symlink(link: Path, target: str | Path) -> None:
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(target)


def write_sysfs(
    root: Path,
    chip: Chip,
    bdf: str,
    config: PciConfigSpace,
    bar_files: dict[int, Path],
    socket: Path,
) -> Path:
    """Write (or refresh) ``root/sys`` for one device and return that sysfs root."""
    sysroot = Path(root) / "sys"
    rel = device_path(bdf).lstrip("/")
    dev = sysroot / rel
    depth = rel.count("/") + 1  # levels from dev up to sysroot
    up = "/".join([".."] * depth)
    for d in (
        dev,
        sysroot / "bus/pci/devices",
        sysroot / "bus/pci/drivers" / DRIVER,
        sysroot / "class",
    ):
        d.mkdir(parents=True, exist_ok=True)
    for name, text in _text_attrs(chip, bdf, config).items():
        _write_atomic(dev / name, text.encode())
    props = udev_properties(chip, bdf, socket)
    uevent = {
        k: props[k]
        for k in ("DRIVER", "PCI_CLASS", "PCI_ID", "PCI_SUBSYS_ID", "PCI_SLOT_NAME", "MODALIAS")
    }
    _write_atomic(dev / "uevent", "".join(f"{k}={v}\n" for k, v in uevent.items()).encode())
    _write_atomic(dev / "config", bytes(config.data))
    for idx in chip.bars:
        if idx in bar_files:
            _symlink(dev / f"resource{idx}", Path(bar_files[idx]).absolute())
    _symlink(dev / "driver", f"{up}/bus/pci/drivers/{DRIVER}")
    _symlink(dev / "subsystem", f"{up}/bus/pci")
    _symlink(sysroot / "bus/pci/devices" / bdf, f"../../../{rel}")
    _symlink(sysroot / "bus/pci/drivers" / DRIVER / bdf, f"../../../../{rel}")
    return sysroot


def link_vf(pf_root: Path, pf_bdf: str, vf_root: Path, vf_bdf: str, index: int) -> None:
    """The PF's ``virtfnN`` and the VF's ``physfn`` links, made as the PCI core makes them
    when it enables VFs (docs/spec/sysfs.md). Each function's tree is its own daemon's, so the
    links name the other tree by absolute path."""
    pf_dev = Path(pf_root) / device_path(pf_bdf).lstrip("/")
    vf_dev = Path(vf_root) / device_path(vf_bdf).lstrip("/")
    _symlink(pf_dev / f"virtfn{index}", vf_dev.absolute())
    _symlink(vf_dev / "physfn", pf_dev.absolute())


def unlink_vfs(pf_root: Path, pf_bdf: str) -> None:
    """Remove the PF's ``virtfnN`` links (its VFs were disabled)."""
    for link in (Path(pf_root) / device_path(pf_bdf).lstrip("/")).glob("virtfn*"):
        link.unlink(missing_ok=True)


class ConfigFile:
    """The device's sysfs ``config`` file, kept equal to the live config space: the path is
    worked out and the file opened once, and each change is one ``pwrite`` in place (a
    real sysfs ``config`` read is no snapshot either: the kernel reads it dword by dword;
    a replace-by-rename costs about half a millisecond on ext4, several times per probe).
    Whoever rewrites the tree (:func:`write_sysfs`) makes a new one."""

    def __init__(self, sysfs_root: Path, bdf: str) -> None:
        self.path = Path(sysfs_root) / device_path(bdf).lstrip("/") / "config"
        self._fd = -1

    def write(self, data: bytes) -> None:
        if self._fd < 0:
            try:
                self._fd = os.open(self.path, os.O_WRONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                _write_atomic(self.path, data)
                return
        os.pwrite(self._fd, data, 0)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def update_config(sysfs_root: Path, bdf: str, config: PciConfigSpace) -> None:
    """Rewrite the device's ``config`` file with the live config space, once."""
    f = ConfigFile(sysfs_root, bdf)
    try:
        f.write(bytes(config.data))
    finally:
        f.close()


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def write_umockdev(
    path: Path,
    chip: Chip,
    bdf: str,
    config: PciConfigSpace,
    bar_files: dict[int, Path],
    socket: Path,
) -> Path:
    """Write the umockdev text description of the device (for ``umockdev-run -d``)."""
    lines = [f"P: {device_path(bdf)}", "E: SUBSYSTEM=pci"]
    lines += [f"E: {k}={v}" for k, v in udev_properties(chip, bdf, socket).items()]
    lines += [
        f"A: {k}={_escape(v.rstrip(chr(10)))}" for k, v in _text_attrs(chip, bdf, config).items()
    ]
    lines.append(f"H: config={bytes(config.data).hex().upper()}")
    depth = device_path(bdf).count("/")
    lines.append(f"L: driver={'/'.join(['..'] * depth)}/bus/pci/drivers/{DRIVER}")
    for idx in sorted(chip.bars):
        if idx in bar_files:
            lines.append(f"L: resource{idx}={Path(bar_files[idx]).absolute()}")
    path = Path(path)
    _write_atomic(path, ("\n".join(lines) + "\n").encode())
    return path
