"""Find emulated NPUs the way a real stack finds real ones: pyudev over sysfs.

Every running daemon leaves ``<runtime_dir>/<bdf>/ready.json`` pointing at its umockdev
description. :func:`discover` loads the descriptions of the live daemons into one umockdev
testbed and lets pyudev enumerate PCI devices there, keeping what the amdxdna driver would
bind: vendor 0x1022, class 0x1180xx, ``(device, revision)`` in the chip id table. libudev
ignores any sysfs-root override, hence the LD_PRELOAD testbed
(docs/spec/sysfs.md §2).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .chips import chip_ids
from .rundir import RuntimeDirError, default_runtime_dir, ready_records

__all__ = ["DiscoveredDevice", "DiscoveryError", "default_runtime_dir", "discover", "ready_records"]

AMD_VENDOR = 0x1022
NPU_CLASS = 0x1180  # class/subclass; the programming interface byte is ignored, as the driver does
UMOCKDEV_TIMEOUT = 60.0


class DiscoveryError(RuntimeDirError):
    """Discovery could not run (umockdev missing, testbed failure, bad output)."""


@dataclass(frozen=True)
class DiscoveredDevice:
    bdf: str
    chip: str
    vendor: int
    device: int
    revision: int
    class_code: int
    subsystem_vendor: int
    subsystem_device: int
    driver: str | None
    socket: str
    sys_path: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _int_attr(device: Any, name: str) -> int | None:
    try:
        return int(device.attributes.asstring(name).strip(), 16)
    except (KeyError, ValueError, UnicodeDecodeError, OSError):
        return None


def udev_scan() -> list[dict[str, Any]]:
    """Enumerate PCI devices with pyudev in *this* process and keep the NPUs the driver binds."""
    import pyudev

    ids = chip_ids()
    found: list[dict[str, Any]] = []
    for dev in pyudev.Context().list_devices(subsystem="pci"):
        vendor, cls = _int_attr(dev, "vendor"), _int_attr(dev, "class")
        if vendor != AMD_VENDOR or cls is None or cls >> 8 != NPU_CLASS:
            continue
        try:  # libudev cuts binary attributes at the first NUL: read the file itself
            with open(os.path.join(dev.sys_path, "config"), "rb") as f:
                cfg = f.read(64)
        except OSError:
            continue
        if len(cfg) < 0x30:
            continue
        device = int.from_bytes(cfg[2:4], "little")
        revision = cfg[8]
        chip = ids.get((device, revision))
        if chip is None or int.from_bytes(cfg[0:2], "little") != vendor:
            continue
        props = dev.properties
        found.append(
            DiscoveredDevice(
                bdf=dev.sys_name,
                chip=chip,
                vendor=vendor,
                device=device,
                revision=revision,
                class_code=cls,
                subsystem_vendor=int.from_bytes(cfg[0x2C:0x2E], "little"),
                subsystem_device=int.from_bytes(cfg[0x2E:0x30], "little"),
                driver=dev.driver,
                socket=props.get("XDNA_EMU_SOCKET", ""),
                sys_path=dev.sys_path,
            ).as_dict()
        )
    return sorted(found, key=lambda d: d["bdf"])


def under_umockdev() -> bool:
    """True when this process already runs inside a umockdev testbed."""
    return bool(os.environ.get("UMOCKDEV_DIR")) and "libumockdev-preload" in os.environ.get(
        "LD_PRELOAD", ""
    )


def _scan_in_testbed(descriptions: list[str]) -> list[dict[str, Any]]:
    exe = shutil.which("umockdev-run")
    if exe is None:
        raise DiscoveryError("umockdev-run not found: install the umockdev package")
    cmd = [exe]
    for desc in descriptions:
        cmd += ["-d", desc]
    cmd += ["--", sys.executable, "-m", "xdna_emu.discover", "--udev-json"]
    env = dict(os.environ)
    pkg_parent = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (pkg_parent, env.get("PYTHONPATH")) if p)
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, env=env, timeout=UMOCKDEV_TIMEOUT
        )
    except subprocess.TimeoutExpired:
        raise DiscoveryError(
            f"umockdev-run did not finish within {UMOCKDEV_TIMEOUT:.0f} s"
        ) from None
    except OSError as exc:
        raise DiscoveryError(f"cannot run umockdev-run: {exc.strerror}") from None
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and "libkmod" not in ln]
        why = lines[-1].strip() if lines else f"exit status {proc.returncode}"
        raise DiscoveryError(f"umockdev-run failed: {why}")
    try:
        data = json.loads(proc.stdout)
    except ValueError:
        raise DiscoveryError("udev scan under umockdev-run printed no JSON") from None
    if not isinstance(data, list):
        raise DiscoveryError("udev scan under umockdev-run printed unexpected JSON")
    return data


def discover(runtime_dir: Path | None = None) -> list[DiscoveredDevice]:
    """NPUs of the live daemons as pyudev sees them, sorted by bdf.

    ``sys_path`` is the device directory in the daemon's own sysfs tree (the testbed used
    for the scan is gone afterwards), or the ``/sys`` path when the caller already runs under
    umockdev and the scan happened in-process. Only devices whose socket belongs to a live
    daemon are returned.
    """
    records = ready_records(runtime_dir)
    by_socket = {str(r.get("socket")): r for r in records}
    descriptions = [
        str(r["umockdev"])
        for r in records
        if isinstance(r.get("umockdev"), str) and Path(r["umockdev"]).is_file()
    ]
    if not descriptions:
        return []
    in_process = under_umockdev()
    raw = udev_scan() if in_process else _scan_in_testbed(descriptions)
    out: list[DiscoveredDevice] = []
    for item in raw:
        try:
            dev = DiscoveredDevice(**item)
        except TypeError:
            raise DiscoveryError("udev scan returned a malformed device record") from None
        rec = by_socket.get(dev.socket)
        if rec is None:
            continue
        if not in_process and rec.get("sysfs_root"):
            real = Path(str(rec["sysfs_root"])) / "bus/pci/devices" / dev.bdf
            dev = DiscoveredDevice(**{**dev.as_dict(), "sys_path": os.path.realpath(real)})
        out.append(dev)
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m xdna_emu.discover --udev-json``: the scan half, run inside the testbed."""
    args = sys.argv[1:] if argv is None else argv
    if args != ["--udev-json"]:
        print("usage: python -m xdna_emu.discover --udev-json", file=sys.stderr)
        return 2
    try:
        found = udev_scan()
    except Exception as exc:  # one line, no traceback: the parent turns it into DiscoveryError
        print(f"udev scan failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    json.dump(found, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
