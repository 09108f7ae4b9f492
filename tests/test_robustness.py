"""End to end: the real daemon, the real C shim, real discovery and the real lspci together,
including the misbehaviours a driver must survive."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from xdna_emu.shim import Shim, ShimError
from xdna_emu.testing.wait import stop_process

TIMEOUT_PSP = 0  # xdna_shim_set_timeout "which" values, mirrored from csrc/xdna_shim.h
#: Only a hung shim outlives this join: a guard against hanging the suite, never a bound on
#: how fast a call must be (the errno and message say which path ended it).
HANG_GUARD_S = 120


def _lspci(emu, *extra: str) -> str:
    out = subprocess.run(["lspci", "-vv", "-nn", *extra, "-O",
                          f"sysfs.path={emu.sysfs_root}/bus/pci", "-s", emu.bdf],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.mark.skipif(shutil.which("lspci") is None, reason="pciutils not installed")
def test_lspci_sees_live_msix_enable_after_probe(xdna_emulator, xdna_firmware_dir: Path) -> None:
    before = _lspci(xdna_emulator)
    assert "[1022:17f0] (rev 10)" in before and "MSI-X: Enable- Count=17" in before
    with Shim.open(xdna_emulator.socket) as shim:
        shim.probe(xdna_firmware_dir)
        after = _lspci(xdna_emulator)
        assert "MSI-X: Enable+ Count=17" in after
        assert "BusMaster+" in after


def test_corrupt_firmware_fails_then_good_firmware_probes(xdna_emulator, xdna_firmware_dir: Path,
                                                          tmp_path: Path) -> None:
    good = xdna_firmware_dir / "amdnpu/17f0_10/npu.dev.sbin"
    bad = tmp_path / "amdnpu/17f0_10/npu.dev.sbin"
    bad.parent.mkdir(parents=True)
    data = bytearray(good.read_bytes())
    data[len(data) // 2] ^= 0x01  # one flipped byte in the payload
    bad.write_bytes(bytes(data))
    with Shim.open(xdna_emulator.socket) as shim, pytest.raises(ShimError) as exc:
        shim.probe(tmp_path)
    assert "psp" in str(exc.value).lower()
    assert xdna_emulator.proc.poll() is None  # the daemon stays up
    with Shim.open(xdna_emulator.socket) as shim:
        assert shim.probe(xdna_firmware_dir)["fw_version"]


def test_missing_firmware_is_a_clear_error(xdna_emulator, tmp_path: Path) -> None:
    with Shim.open(xdna_emulator.socket) as shim, pytest.raises(ShimError) as exc:
        shim.probe(tmp_path)
    assert exc.value.errno == errno.ENOENT and "npu.dev.sbin" in str(exc.value)


def test_daemon_killed_under_a_shim_gives_an_error_not_a_hang(xdna_emulator,
                                                              xdna_firmware_dir: Path) -> None:
    shim = Shim.open(xdna_emulator.socket)
    try:
        shim.probe(xdna_firmware_dir)
        xdna_emulator.kill()  # returns once the process is reaped: its sockets are closed
        # a wait that missed the hang-up ends only at this long deadline, and then ETIME: the
        # errno and the message tell the hang-up path from a timeout, no clock needed
        with pytest.raises(ShimError) as exc:
            shim.mgmt_msg(0x108, b"\0" * 4, 20, timeout_ms=60_000)
        assert exc.value.errno == errno.EPIPE
        assert any(w in exc.value.strerror for w in ("hung up", "closed", "ended this session"))
        with pytest.raises(ShimError) as exc:  # and every later call knows at once
            shim.mgmt_msg(0x108, b"\0" * 4, 20, timeout_ms=60_000)
        assert exc.value.errno == errno.EPIPE
    finally:
        shim.close()


def _probe_in_thread(shim: Shim, fw_dir: Path, meanwhile: Callable[[], None]) -> BaseException | None:
    """Run ``shim.probe`` in a thread while ``meanwhile`` runs here; what the probe raised.
    The join is only a guard against hanging the suite (:data:`HANG_GUARD_S`)."""
    result: dict[str, BaseException | None] = {}

    def probe() -> None:
        try:
            shim.probe(fw_dir)
            result["exc"] = None
        except BaseException as e:  # noqa: BLE001 - returned to the test
            result["exc"] = e

    t = threading.Thread(target=probe)
    t.start()
    meanwhile()
    t.join(HANG_GUARD_S)
    assert not t.is_alive(), "the shim hung"
    return result["exc"]


def test_killed_during_probe_returns_within_the_deadline(xdna_emulator,
                                                         xdna_firmware_dir: Path) -> None:
    """SIGKILL the daemon while a probe is in flight (it is frozen first, so the probe is
    certainly waiting on it): the shim notices the hang-up and returns an error. Its deadlines
    are long, so only the hang-up ends the probe with EPIPE (a timeout would be ETIME)."""
    shim = Shim.open(xdna_emulator.socket)
    for which in range(3):
        shim.set_timeout(which, 60_000)
    stop_process(xdna_emulator.pid)

    def kill() -> None:
        time.sleep(0.2)  # let the probe block on the frozen device; not a protocol sleep
        os.kill(xdna_emulator.pid, signal.SIGKILL)

    exc = _probe_in_thread(shim, xdna_firmware_dir, kill)
    assert isinstance(exc, ShimError) and exc.errno == errno.EPIPE, exc
    shim.close()


def test_hung_daemon_times_out_at_the_deadline(xdna_emulator, xdna_firmware_dir: Path) -> None:
    shim = Shim.open(xdna_emulator.socket)
    try:
        for which in range(3):
            shim.set_timeout(which, 300)
        stop_process(xdna_emulator.pid)
        exc = _probe_in_thread(shim, xdna_firmware_dir, lambda: None)
        assert isinstance(exc, ShimError) and exc.errno == errno.ETIME, exc
        assert "timed out after 300 ms" in exc.strerror  # the deadline set above ended it
    finally:
        os.kill(xdna_emulator.pid, signal.SIGCONT)
        shim.close()
