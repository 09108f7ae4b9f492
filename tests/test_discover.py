"""Discovery of live daemons' devices through pyudev inside a umockdev testbed."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from xdna_emu.chips import chip_names, load_chip
from xdna_emu.discover import DiscoveryError, default_runtime_dir, discover, ready_records
from xdna_emu.pci.config import PciConfigSpace
from xdna_emu.sysfs import write_sysfs, write_umockdev

UMOCKDEV_RUN = shutil.which("umockdev-run")
needs_umockdev = pytest.mark.skipif(UMOCKDEV_RUN is None, reason="umockdev-run is not installed")
REPO = Path(__file__).resolve().parent.parent
SECOND = "npu1" if "npu1" in chip_names() else "npu4"


def make_device(runtime: Path, chip_name: str, bdf: str, pid: int) -> dict:
    """Lay out what a daemon leaves behind: BAR files, sysfs tree, umockdev file, ready.json."""
    chip = load_chip(chip_name)
    ddir = runtime / bdf
    ddir.mkdir(parents=True)
    cfg = PciConfigSpace(chip)
    bars = {}
    for idx, bar in chip.bars.items():
        bars[idx] = ddir / f"bar{idx}"
        bars[idx].write_bytes(bytes(bar.size))
    sock = ddir / "ctl.sock"
    sysroot = write_sysfs(ddir, chip, bdf, cfg, bars, sock)
    desc = write_umockdev(ddir / "device.umockdev", chip, bdf, cfg, bars, sock)
    rec = {
        "event": "ready", "chip": chip_name, "bdf": bdf, "socket": str(sock),
        "sysfs_root": str(sysroot), "umockdev": str(desc), "pid": pid,
    }  # fmt: skip
    (ddir / "ready.json").write_text(json.dumps(rec))
    return rec


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    return env


@needs_umockdev
def test_discover_two_live_devices(tmp_path: Path) -> None:
    a = make_device(tmp_path, "npu4", "0000:c5:00.1", os.getpid())
    b = make_device(tmp_path, SECOND, "0000:c6:00.1", os.getpid())
    make_device(tmp_path, "npu4", "0000:c7:00.1", dead_pid())
    (tmp_path / "0000:c8:00.1").mkdir()
    (tmp_path / "0000:c8:00.1" / "ready.json").write_text("{not json")

    assert [r["bdf"] for r in ready_records(tmp_path)] == [a["bdf"], b["bdf"]]
    found = discover(runtime_dir=tmp_path)
    assert [d.bdf for d in found] == [a["bdf"], b["bdf"]]
    for dev, rec in zip(found, (a, b), strict=True):
        chip = load_chip(rec["chip"])
        assert dev.chip == rec["chip"]
        assert (dev.vendor, dev.device, dev.revision) == (
            0x1022,
            chip.pci.device,
            chip.pci.revision,
        )
        assert dev.class_code == chip.pci.class_code
        assert (dev.subsystem_vendor, dev.subsystem_device) == (
            chip.pci.subsystem_vendor, chip.pci.subsystem_device,
        )  # fmt: skip
        assert dev.driver == "amdxdna"
        assert dev.socket == rec["socket"]
        assert Path(dev.sys_path, "config").read_bytes()[:2] == b"\x22\x10"
        assert dev.as_dict()["bdf"] == dev.bdf


def test_no_daemon_means_no_spawn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))  # umockdev-run cannot be found
    assert discover(runtime_dir=tmp_path) == []
    make_device(tmp_path, "npu4", "0000:c7:00.1", dead_pid())
    assert discover(runtime_dir=tmp_path) == []
    assert discover(runtime_dir=tmp_path / "missing") == []


def test_missing_umockdev_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_device(tmp_path, "npu4", "0000:c5:00.1", os.getpid())
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))
    monkeypatch.delenv("UMOCKDEV_DIR", raising=False)
    with pytest.raises(DiscoveryError, match="umockdev-run not found"):
        discover(runtime_dir=tmp_path)


def test_default_runtime_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    path = default_runtime_dir()
    assert path == tmp_path / "xdna-emu"
    assert stat.S_IMODE(path.stat().st_mode) == 0o700
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    monkeypatch.setenv("TMPDIR", str(tmp_path / "t"))
    (tmp_path / "t").mkdir()
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    assert default_runtime_dir() == tmp_path / "t" / f"xdna-emu-{os.getuid()}"


UDEV_PROBE = r"""
import json, os, pyudev
out = []
for d in pyudev.Context().list_devices(subsystem="pci"):
    res0 = os.path.join(d.sys_path, "resource0")
    with open(res0, "rb") as f:
        head = f.read(4)
    out.append({"name": d.sys_name, "driver": d.driver, "props": dict(d.properties),
                "config": len(open(os.path.join(d.sys_path, "config"), "rb").read()),
                "res0": os.path.realpath(res0), "head": head.hex()})
print(json.dumps(out))
"""


@needs_umockdev
def test_pyudev_sees_device_under_umockdev(tmp_path: Path) -> None:
    rec = make_device(tmp_path, "npu4", "0000:c5:00.1", os.getpid())
    bar0 = Path(rec["sysfs_root"]).parent / "bar0"
    with open(bar0, "r+b") as f:  # the daemon's side writes; the probe reads through /sys
        f.write(b"\xef\xbe\xad\xde")
    proc = subprocess.run(
        [UMOCKDEV_RUN, "-d", rec["umockdev"], "--", sys.executable, "-c", UDEV_PROBE],
        capture_output=True, text=True, timeout=60, env=child_env(),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (dev,) = json.loads(proc.stdout)
    assert dev["name"] == "0000:c5:00.1" and dev["driver"] == "amdxdna"
    props = dev["props"]
    assert props["PCI_ID"] == "1022:17F0"
    assert props["PCI_CLASS"] == "118000"
    assert props["MODALIAS"] == "pci:v00001022d000017F0sv00001022sd000017F0bc11sc80i00"
    assert props["XDNA_EMU_SOCKET"] == rec["socket"] and props["XDNA_EMU_CHIP"] == "npu4"
    assert dev["config"] == 4096
    assert dev["res0"] == str(bar0.resolve()) and dev["head"] == "efbeadde"


@needs_umockdev
def test_discover_in_process_under_umockdev(tmp_path: Path) -> None:
    """A caller already inside a testbed enumerates in-process (no nested umockdev-run)."""
    rec = make_device(tmp_path, "npu4", "0000:c5:00.1", os.getpid())
    script = (
        "import json, sys\n"
        "from xdna_emu.discover import discover, under_umockdev\n"
        "assert under_umockdev()\n"
        f"print(json.dumps([d.as_dict() for d in discover({str(tmp_path)!r})]))\n"
    )
    proc = subprocess.run(
        [UMOCKDEV_RUN, "-d", rec["umockdev"], "--", sys.executable, "-c", script],
        capture_output=True, text=True, timeout=60, env=child_env(),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (dev,) = json.loads(proc.stdout)
    assert dev["chip"] == "npu4" and dev["socket"] == rec["socket"]
    assert dev["sys_path"] == "/sys/devices/pci0000:00/0000:00:08.2/0000:c5:00.1"


@needs_umockdev
def test_lspci_under_umockdev(tmp_path: Path) -> None:
    if shutil.which("lspci") is None:
        pytest.skip("lspci (pciutils) is not installed")
    rec = make_device(tmp_path, SECOND, "0000:c5:00.1", os.getpid())
    proc = subprocess.run(
        [UMOCKDEV_RUN, "-d", rec["umockdev"], "--", "lspci", "-nn", "-vv"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    chip = load_chip(SECOND)
    assert f"[1022:{chip.pci.device:04x}]" in proc.stdout
    assert f"MSI-X: Enable- Count={chip.msix.vectors}" in proc.stdout
