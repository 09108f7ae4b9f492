"""SR-IOV on an AIE4 physical function (docs/spec/aie4.md §10): the PF driver's
sriov_configure sends CREATE_VFS / DESTROY_VFS to the PF's firmware and enables the VFs in
the PF's SR-IOV capability; each VF is a function of its own (BDF, socket, sysfs and
umockdev entry) served by the PF daemon, found by discovery and driven like a plain one."""

from __future__ import annotations

import errno
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from xdna_emu import Emulator
from xdna_emu.control import ControlClient
from xdna_emu.rundir import ready_records
from xdna_emu.runtime import Device
from xdna_emu.shim import Shim, ShimError

N = 1024
needs_umockdev = pytest.mark.skipif(shutil.which("umockdev-run") is None,
                                    reason="umockdev-run is not installed")


def _sysfs(rec: dict, name: str) -> str:
    dev = Path(rec["sysfs_root"]) / "bus/pci/devices" / rec["bdf"]
    return (dev / name).read_text().strip()


def _records(emu: Emulator) -> dict[str, dict]:
    return {r["bdf"]: r for r in ready_records(emu.runtime_dir)}


def _fw_vfs(emu: Emulator) -> int:
    """VFs the PF's firmware serves (CREATE_VFS), from the daemon's status."""
    with ControlClient(emu.socket) as c:
        c.version()
        return c.status()["device"]["firmware"]["num_vfs"]


@pytest.fixture
def pf(xdna_emulator_factory, xdna_firmware_dir: Path):  # noqa: ANN001, ANN201
    emu = xdna_emulator_factory("npu3_pf")
    with Device.open(socket=emu.socket, firmware_path=xdna_firmware_dir) as d:
        yield emu, d


def test_numvfs_creates_functions_driven_like_plain_ones(pf, xdna_firmware_dir: Path) -> None:  # noqa: ANN001
    emu, dev = pf
    recs = _records(emu)
    pf_rec = recs[next(iter(recs))]
    assert (_sysfs(pf_rec, "sriov_totalvfs"), _sysfs(pf_rec, "sriov_numvfs")) == ("4", "0")
    dev.shim.sriov_configure(2)
    assert _sysfs(pf_rec, "sriov_numvfs") == "2" and _fw_vfs(emu) == 2
    vfs = [r for b, r in sorted(_records(emu).items()) if b != pf_rec["bdf"]]
    assert [r["chip"] for r in vfs] == ["npu3_vf", "npu3_vf"]
    assert len({r["socket"] for r in vfs} | {pf_rec["socket"]}) == 3
    assert [r["bdf"][-1] for r in vfs] == ["2", "3"]  # PF .1, offset 1, stride 1
    pf_dev = Path(pf_rec["sysfs_root"]) / "bus/pci/devices" / pf_rec["bdf"]
    for i, r in enumerate(vfs):  # the PCI core's links between the functions
        vf_dev = Path(r["sysfs_root"]) / "bus/pci/devices" / r["bdf"]
        assert (pf_dev / f"virtfn{i}").resolve() == vf_dev.resolve()
        assert (vf_dev / "physfn").resolve() == pf_dev.resolve()
        assert (vf_dev / "vendor").read_text() == (pf_dev / f"virtfn{i}/vendor").read_text()
    for r in vfs:  # a VF probe: no PSP/SMU load, no work buffer; contexts and jobs as usual
        with Device.open(socket=r["socket"], firmware_path=xdna_firmware_dir) as vf:
            info = vf.shim.info()
            assert info["function"] == "vf" and info["partition_id"] != 0
            assert [s["name"] for s in info["stages"]] == ["mailbox_info", "query", "mgmt_init"]
            ctx = vf.context()
            a = vf.buffer(np.arange(N, dtype=np.int32))
            out = vf.buffer(np.zeros(N, dtype=np.int32))
            assert ctx.run("copy", a, out).wait(timeout=10) == "completed"
            assert (out.read() == np.arange(N)).all()
    dev.shim.sriov_configure(0)
    assert _fw_vfs(emu) == 0 and _sysfs(pf_rec, "sriov_numvfs") == "0"
    assert list(_records(emu)) == [pf_rec["bdf"]]
    assert not list(pf_dev.glob("virtfn*"))


@needs_umockdev
def test_vfs_are_found_by_discovery(pf) -> None:  # noqa: ANN001
    from xdna_emu.discover import discover

    emu, dev = pf
    dev.shim.sriov_configure(3)
    found = {d.bdf: d for d in discover(emu.runtime_dir)}
    vfs = [d for d in found.values() if d.chip == "npu3_vf"]
    assert len(vfs) == 3 and all(d.device == 0x17F3 for d in vfs)
    assert len({d.socket for d in found.values()}) == 4


def test_destroying_vfs_aborts_their_jobs(pf, xdna_firmware_dir: Path) -> None:  # noqa: ANN001
    """Disabling the VFs while a job hangs on one: the VF is removed, its driver ends every
    job ABORT (nothing lost, nothing left RUNNING) and later calls fail ENODEV."""
    emu, dev = pf
    dev.shim.sriov_configure(1)
    vf_rec = next(r for r in ready_records(emu.runtime_dir) if r["chip"] == "npu3_vf")
    with Device.open(socket=vf_rec["socket"], firmware_path=xdna_firmware_dir) as vf:
        ctx = vf.context()
        a = vf.buffer(np.arange(N, dtype=np.int32))
        out = vf.buffer(np.zeros(N, dtype=np.int32))
        runs = [ctx.run("hang"), ctx.run("copy", a, out)]
        dev.shim.sriov_configure(0)
        assert [r.wait(timeout=10) for r in runs] == ["aborted", "aborted"]
        info = vf.shim.hwctx_info(ctx.handle)
        assert (info["aborts"], info["pending"], info["submitted"]) == (2, 0, 2)
        with pytest.raises(ShimError) as ei:
            ctx.run("copy", a, out).wait(timeout=10)
        assert ei.value.errno in (errno.ENODEV, errno.EPIPE)
    assert _fw_vfs(emu) == 0


def test_sriov_configure_refusals(pf, xdna_emulator_factory, xdna_firmware_dir: Path) -> None:  # noqa: ANN001
    """Above TotalVFs ERANGE; a new count while VFs are enabled EBUSY (disable first); the
    same count is a no-op; an unprobed session EINVAL; a plain function EOPNOTSUPP."""
    emu, dev = pf
    with pytest.raises(ShimError) as ei:
        dev.shim.sriov_configure(5)
    assert ei.value.errno == errno.ERANGE and _fw_vfs(emu) == 0
    dev.shim.sriov_configure(0)  # nothing enabled: nothing to do, no DESTROY_VFS
    dev.shim.sriov_configure(2)
    with pytest.raises(ShimError) as ei:
        dev.shim.sriov_configure(1)
    assert ei.value.errno == errno.EBUSY and _fw_vfs(emu) == 2
    dev.shim.sriov_configure(2)
    other = Shim.open(emu.socket)  # a second session that did not probe
    try:
        with pytest.raises(ShimError) as ei:
            other.sriov_configure(0)
        assert ei.value.errno == errno.EINVAL
    finally:
        other.close()
    assert _fw_vfs(emu) == 2
    plain = xdna_emulator_factory("npu3")
    with Device.open(socket=plain.socket, firmware_path=xdna_firmware_dir) as d:
        with pytest.raises(ShimError) as ei:
            d.shim.sriov_configure(1)
        assert ei.value.errno == errno.EOPNOTSUPP


def test_writing_sriov_numvfs_runs_the_drivers_sriov_configure(pf) -> None:  # noqa: ANN001
    """A write of N to the PF's sysfs ``sriov_numvfs`` (the daemon's own tree) reaches the
    driver session, whose monitor runs sriov_configure: N VFs appear; a write of 0 removes
    them; a count above TotalVFs changes nothing."""
    emu, dev = pf
    rec = next(iter(_records(emu).values()))
    attr = Path(rec["sysfs_root"]) / "bus/pci/devices" / rec["bdf"] / "sriov_numvfs"

    def settle(want: int) -> None:  # the driver's monitor thread carries the write out
        deadline = time.monotonic() + 30
        while len(_records(emu)) != want + 1 or _fw_vfs(emu) != want:
            assert time.monotonic() < deadline, f"never reached {want} VFs"
            time.sleep(0.01)

    attr.write_text("2\n")
    settle(2)
    assert attr.read_text().strip() == "2"
    attr.write_text("9\n")  # above TotalVFs: refused, nothing changes
    deadline = time.monotonic() + 30
    while attr.read_text().strip() != "2":  # the file shows the enabled count again
        assert time.monotonic() < deadline, "sriov_numvfs never showed the count again"
        time.sleep(0.01)
    assert _fw_vfs(emu) == 2 and len(_records(emu)) == 3
    attr.write_text("0\n")
    settle(0)
    assert attr.read_text().strip() == "0"
