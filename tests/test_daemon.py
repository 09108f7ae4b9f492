"""The real daemon process over its real socket, driven by the raw Python control client."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import socket
import stat
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from xdna_emu import daemon as daemon_mod
from xdna_emu import protocol as P
from xdna_emu.chips import emulated_chip_names, load_chip
from xdna_emu.control import ControlClient, ControlError, dma_memfd
from xdna_emu.emulator import Emulator, EmulatorError
from xdna_emu.testing.wait import wait_until


def test_ready_line_files_and_permissions(xdna_emulator_factory, xdna_runtime_dir: Path) -> None:
    emu = xdna_emulator_factory("npu4")
    assert set(emu.record) >= {"event", "chip", "bdf", "socket", "sysfs_root", "umockdev"}
    assert emu.record["chip"] == "npu4"
    assert emu.socket.parent == xdna_runtime_dir / emu.bdf
    assert stat.S_IMODE(emu.socket.stat().st_mode) == 0o600
    assert stat.S_IMODE(emu.socket.parent.stat().st_mode) == 0o700
    assert (emu.sysfs_root / "bus/pci/devices" / emu.bdf / "config").stat().st_size == 4096
    assert emu.umockdev.is_file()
    rec = json.loads((emu.socket.parent / "ready.json").read_text())
    assert rec["socket"] == str(emu.socket) and rec["pid"] == emu.pid


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_gives_clean_exit_and_removes_files(xdna_emulator_factory, sig: int) -> None:
    emu = xdna_emulator_factory("npu1")
    bar_files = [Path(os.readlink(p)) for p in
                 (emu.sysfs_root / "bus/pci/devices" / emu.bdf).glob("resource[0-9]")]
    assert bar_files and all(p.exists() for p in bar_files)
    emu.proc.send_signal(sig)
    assert emu.proc.wait(10) == 0
    assert not emu.socket.parent.exists()
    assert not any(p.exists() for p in bar_files)


def test_daemons_side_by_side_get_distinct_bdfs(xdna_emulator_factory) -> None:
    a = xdna_emulator_factory("npu4")
    b = xdna_emulator_factory("npu1")
    assert a.bdf != b.bdf and a.socket != b.socket
    with ControlClient(a.socket) as ca, ControlClient(b.socket) as cb:
        assert ca.version()["chip"] == "npu4"
        assert cb.version()["chip"] == "npu1"


def test_explicit_bdf_in_use_is_refused(xdna_emulator_factory, xdna_runtime_dir: Path) -> None:
    a = xdna_emulator_factory("npu4", bdf="0000:d1:00.1")
    assert a.bdf == "0000:d1:00.1"
    with pytest.raises(EmulatorError, match="already served"):
        Emulator("npu4", runtime_dir=xdna_runtime_dir, bdf="0000:d1:00.1").start()


def test_stale_dir_of_a_killed_daemon_is_reclaimed(xdna_emulator_factory) -> None:
    emu = xdna_emulator_factory("npu4", bdf="0000:d2:00.1")
    emu.kill()
    again = xdna_emulator_factory("npu4", bdf="0000:d2:00.1")
    with ControlClient(again.socket) as c:
        assert c.version()["bdf"] == "0000:d2:00.1"


@pytest.mark.parametrize("chip", [*emulated_chip_names(family="aie2"), "npu3", "npu3_pf", "npu3_vf", "npu7"])
def test_regions_irqs_and_config_match_the_chip(xdna_emulator_factory, chip: str) -> None:
    emu = xdna_emulator_factory(chip)
    c = load_chip(chip)
    with ControlClient(emu.socket) as cl:
        caps = cl.version()
        assert caps["bdf"] == emu.bdf and caps["pasid"] >= 1
        body, _ = cl.call(P.Cmd.DEVICE_GET_INFO)
        assert P.DEVICE_INFO.unpack(body)[2:] == (P.NUM_REGIONS, P.NUM_IRQS)
        for idx in range(6):
            flags, size, fd = cl.region_info(idx)
            if idx in c.bars:
                assert size == c.bars[idx].size and flags & P.REGION_MMAP and fd is not None
                assert os.fstat(fd).st_size == size
                os.close(fd)
            else:
                assert (flags, size, fd) == (0, 0, None)
        assert cl.region_info(P.REGION_CONFIG)[:2] == (P.REGION_READ | P.REGION_WRITE, 4096)
        vid, did = struct.unpack("<HH", cl.config_read(0, 4))
        assert (vid, did) == (c.pci.vendor, c.pci.device)
        assert cl.config_read(8, 1)[0] == c.pci.revision
        body, _ = cl.call(P.Cmd.GET_IRQ_INFO, P.IRQ_INFO.pack(16, 0, P.IRQ_MSIX, 0))
        assert P.IRQ_INFO.unpack(body)[3] == c.msix.vectors


def test_bad_commands_get_error_replies_and_the_session_survives(xdna_emulator) -> None:
    with ControlClient(xdna_emulator.socket) as cl:
        cl.version()
        with pytest.raises(ControlError) as e:
            cl.call(0x7777)
        assert e.value.errno == errno.ENOSYS
        with pytest.raises(ControlError) as e:
            cl.call(P.Cmd.REGION_READ, P.REGION_ACCESS.pack(4090, P.REGION_CONFIG, 16))
        assert e.value.errno == errno.EINVAL
        with pytest.raises(ControlError) as e:
            cl.call(P.Cmd.GET_REGION_INFO, b"short")
        assert e.value.errno == errno.EINVAL
        with pytest.raises(ControlError) as e:
            cl.call(P.Cmd.DMA_UNMAP, P.DMA_UNMAP.pack(32, 0, 0x10000, 0x1000, 0, 0))
        assert e.value.errno == errno.ENOENT
        assert cl.config_read(0, 2) == struct.pack("<H", 0x1022)


def test_dma_map_rejects_overlap_and_bad_ranges(xdna_emulator) -> None:
    fd = dma_memfd(0x20000)
    with ControlClient(xdna_emulator.socket) as cl:
        cl.version()
        mp = lambda addr, size, off=0: cl.call(  # noqa: E731
            P.Cmd.DMA_MAP, P.DMA_MAP.pack(40, P.DMA_READ | P.DMA_WRITE, off, addr, size, 0, 0), [fd])
        mp(0x100000, 0x10000)
        for args, err in [((0x108000, 0x10000), errno.EEXIST), ((0x200000, 0), errno.EINVAL),
                          ((0x300000, 0x10000, 0x18000), errno.EINVAL)]:
            with pytest.raises(ControlError) as e:
                mp(*args)
            assert e.value.errno == err
        cl.call(P.Cmd.DMA_UNMAP, P.DMA_UNMAP.pack(32, 0, 0x100000, 0x10000, 0, 0))
        mp(0x108000, 0x10000)
        # Memory a client could shrink under the daemon's mapping is refused.
        loose = os.memfd_create("loose")
        os.ftruncate(loose, 0x10000)
        with pytest.raises(ControlError) as e:
            cl.call(P.Cmd.DMA_MAP, P.DMA_MAP.pack(40, 1, 0, 0x400000, 0x10000, 0, 0), [loose])
        assert e.value.errno == errno.EINVAL
        os.close(loose)
    os.close(fd)


def test_dma_map_replace_swaps_a_mapping_in_one_step(xdna_emulator) -> None:
    """DMA_MAP with REPLACE puts a new mapping in place of the one that starts at the address
    in one step (a growing heap: docs/spec/protocol.md); nothing starts there ENOENT, an
    overlap with another mapping EEXIST with the old mapping kept, a bad range EINVAL."""
    fd = dma_memfd(0x40000)
    rw = P.DMA_READ | P.DMA_WRITE
    with ControlClient(xdna_emulator.socket) as cl:
        cl.version()
        mp = lambda addr, size, flags=rw: cl.call(  # noqa: E731
            P.Cmd.DMA_MAP, P.DMA_MAP.pack(40, flags, 0, addr, size, 0, 0), [fd])
        unmap = lambda addr, size: cl.call(  # noqa: E731
            P.Cmd.DMA_UNMAP, P.DMA_UNMAP.pack(32, 0, addr, size, 0, 0))
        mp(0x100000, 0x10000)
        mp(0x140000, 0x10000)
        for args, err in [((0x108000, 0x10000), errno.ENOENT), ((0x200000, 0x10000), errno.ENOENT),
                          ((0x100000, 0x50000), errno.EEXIST), ((0x100000, 0), errno.EINVAL)]:
            with pytest.raises(ControlError) as e:
                mp(*args, flags=rw | P.DMA_REPLACE)
            assert e.value.errno == err, args
        mp(0x100000, 0x20000, flags=rw | P.DMA_REPLACE)  # grown: 0x100000..0x120000
        with pytest.raises(ControlError) as e:
            unmap(0x100000, 0x10000)  # the old mapping is gone
        assert e.value.errno == errno.ENOENT
        unmap(0x100000, 0x20000)
        unmap(0x140000, 0x10000)  # refused replaces kept the other one as it was
    os.close(fd)


def test_bar_and_ctrl_memory_cannot_be_resized_by_a_client(xdna_emulator) -> None:
    with ControlClient(xdna_emulator.socket) as cl:
        cl.version()
        _, size, fd = cl.region_info(0)
        with pytest.raises(PermissionError):
            os.ftruncate(fd, size // 2)
        os.close(fd)
        _, fds = cl.call(P.Cmd.ATTACH_WRITE_LOG)
        with pytest.raises(PermissionError):
            os.ftruncate(fds[0], 4096)
        for f in fds:
            os.close(f)
        assert cl.config_read(0, 2) == struct.pack("<H", 0x1022)


def _assert_served(emu: Emulator) -> None:
    with ControlClient(emu.socket) as cl:
        assert cl.version()["chip"] == emu.chip


@pytest.mark.parametrize("junk", [
    b"\xff" * 64,                                        # size field out of range
    P.pack(1, P.Cmd.DEVICE_GET_INFO),                    # first message is not VERSION
    P.pack(1, P.Cmd.VERSION, b"\x01", flags=P.TYPE_REPLY),  # reply-typed message
    P.HEADER.pack(1, P.Cmd.VERSION, 100, 0, 0) + b"\x01\x00",  # truncated, then hang-up
    P.pack(1, P.Cmd.VERSION, P.VERSION_HDR.pack(9, 0) + b"{}\0"),  # wrong major
    os.urandom(3),                                       # less than a header, then hang-up
])  # fmt: skip
def test_garbage_drops_the_client_and_the_next_is_served(xdna_emulator, junk: bytes) -> None:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(str(xdna_emulator.socket))
        s.sendall(junk)
        s.shutdown(socket.SHUT_WR)
        while s.recv(4096):  # the daemon may answer an error, then must hang up
            pass
    _assert_served(xdna_emulator)


def test_trapped_writes_through_the_log_drive_the_smu(xdna_emulator) -> None:
    import mmap

    chip = load_chip(xdna_emulator.chip)
    with ControlClient(xdna_emulator.socket) as cl:
        cl.version()
        cl.enable_bus_master()
        cl.attach_write_log()
        bars = {}
        for idx in chip.bars:
            _, size, fd = cl.region_info(idx)
            bars[idx] = mmap.mmap(fd, size)
            os.close(fd)

        def wr(role: str, val: int) -> None:
            r = chip.reg(role)
            struct.pack_into("<I", bars[r.bar], r.offset, val)
            if r.access == "trap":
                cl.log_write(r.bar, r.offset, val)

        def rd(role: str) -> int:
            r = chip.reg(role)
            return struct.unpack_from("<I", bars[r.bar], r.offset)[0]

        for cmd in (4, 3):  # POWER_OFF, POWER_ON: the driver's SMU start
            wr("smu.resp", 0)
            wr("smu.arg", 0)
            wr("smu.cmd", cmd)
            wr("smu.intr", 0)
            wr("smu.intr", 1)
            cl.wait_applied()
            assert rd("smu.resp") == 1
        # A log entry outside every BAR is counted and ignored, never fatal.
        cl.log_write(3, 0x40, 1)
        cl.log_write(0, 0xFFFFFFF0, 1)
        cl.wait_applied()
        assert cl.config_read(0, 2) == struct.pack("<H", 0x1022)
        for m in bars.values():
            m.close()


def test_corrupt_write_log_drops_only_that_client(xdna_emulator) -> None:
    with ControlClient(xdna_emulator.socket) as cl:
        cl.version()
        cl.attach_write_log()
        struct.pack_into("<Q", cl.ctrl, P.CTRL_OFF_HEAD, 1 << 40)
        os.eventfd_write(cl.kick_fd, 1)
        with pytest.raises((EOFError, ConnectionResetError)):
            cl.recv()
    _assert_served(xdna_emulator)


KILLED_CLIENT = textwrap.dedent("""
    import mmap, os, signal, struct, sys
    from xdna_emu.chips import load_chip
    from xdna_emu.control import ControlClient, dma_memfd
    chip = load_chip(sys.argv[2])
    cl = ControlClient(sys.argv[1]); cl.version(); cl.enable_bus_master(); cl.attach_write_log()
    r = chip.reg("smu.intr")
    _, size, fd = cl.region_info(chip.reg("smu.cmd").bar)
    bar = mmap.mmap(fd, size)
    cmd = chip.reg("smu.cmd")
    struct.pack_into("<I", bar, cmd.offset, 3)
    cl.log_write(r.bar, r.offset, 0); cl.log_write(r.bar, r.offset, 1); cl.wait_applied()
    fdm = dma_memfd(65536)
    cl.call(2, struct.pack("<IIQQQII", 40, 1, 0, 0x10000, 65536, 0, 0), [fdm])
    print("mid-probe", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
""")


def test_client_killed_mid_probe_is_reclaimed(xdna_emulator) -> None:
    chip = load_chip(xdna_emulator.chip)
    out = subprocess.run([sys.executable, "-c", KILLED_CLIENT, str(xdna_emulator.socket), chip.name],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == -signal.SIGKILL and "mid-probe" in out.stdout
    # Its DMA mapping is gone (the same IOVA maps again) and the device was reset.
    with ControlClient(xdna_emulator.socket) as cl:
        cl.version()
        fd = dma_memfd(65536)
        for _ in range(50):  # the hang-up may be seen a moment after the kill
            try:
                cl.call(P.Cmd.DMA_MAP, P.DMA_MAP.pack(40, 1, 0, 0x10000, 65536, 0, 0), [fd])
                break
            except ControlError as exc:
                assert exc.errno == errno.EEXIST
                time.sleep(0.02)
        else:
            pytest.fail("the killed client's DMA mapping was never reclaimed")
        os.close(fd)
        import mmap

        r = chip.reg("smu.cmd")
        _, size, bfd = cl.region_info(r.bar)
        bar = mmap.mmap(bfd, size)
        os.close(bfd)
        assert struct.unpack_from("<I", bar, r.offset)[0] == 0  # reset cleared the SMU
        bar.close()


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to act as another uid")
def test_peer_with_another_uid_is_refused(tmp_path_factory) -> None:
    import tempfile

    top = Path(tempfile.mkdtemp(prefix="xdna-uid-"))
    emu = Emulator("npu4", runtime_dir=top).start()
    try:
        os.chmod(top, 0o711)  # let uid 65534 reach the socket: only SO_PEERCRED stops it
        os.chmod(emu.socket.parent, 0o711)
        os.chmod(emu.socket, 0o666)
        code = ("import os, socket, sys; os.setgid(65534); os.setuid(65534)\n"
                "s = socket.socket(socket.AF_UNIX); s.settimeout(5); s.connect(sys.argv[1])\n"
                "try:\n    s.sendall(bytes.fromhex(sys.argv[2]))\nexcept BrokenPipeError:\n    pass\n"
                "try:\n    data = s.recv(64)\nexcept ConnectionResetError:\n    data = b''\n"
                "print('closed' if data == b'' else 'served')")
        msg = P.pack(1, P.Cmd.VERSION, P.VERSION_HDR.pack(1, 0) + b"{}\0").hex()
        out = subprocess.run([sys.executable, "-c", code, str(emu.socket), msg],
                             capture_output=True, text=True, timeout=30)
        assert out.stdout.strip() == "closed", out.stderr
        _assert_served(emu)
    finally:
        emu.stop()
        os.rmdir(top)


def test_sysfs_resource_file_maps_the_live_bar(xdna_emulator) -> None:
    """A driver that mmaps /sys/.../resource0 shares the daemon's BAR pages."""
    import mmap

    chip = load_chip(xdna_emulator.chip)
    res = xdna_emulator.sysfs_root / "bus/pci/devices" / xdna_emulator.bdf / "resource0"
    with open(res, "r+b") as f:
        sysfs_map = mmap.mmap(f.fileno(), chip.bars[0].size)
    with ControlClient(xdna_emulator.socket) as cl:
        cl.version()
        _, size, fd = cl.region_info(0)
        sock_map = mmap.mmap(fd, size)
        os.close(fd)
        struct.pack_into("<I", sysfs_map, 0x40, 0xC0FFEE11)
        assert struct.unpack_from("<I", sock_map, 0x40)[0] == 0xC0FFEE11
        sock_map.close()
    sysfs_map.close()


def test_a_client_cannot_drive_the_smu_under_the_driver(xdna_emulator) -> None:
    """Only the driver session (the one that enabled bus mastering) may write PSP/SMU and
    mgmt-channel registers; another session's writes are counted and ignored."""
    import mmap

    chip = load_chip(xdna_emulator.chip)
    smu = {role: chip.reg(f"smu.{role}") for role in ("cmd", "resp", "intr")}
    with ControlClient(xdna_emulator.socket) as drv, ControlClient(xdna_emulator.socket) as other:
        drv.version()
        drv.enable_bus_master()
        other.version()
        other.attach_write_log()
        _, size, fd = other.region_info(smu["cmd"].bar)
        bar = mmap.mmap(fd, size)
        os.close(fd)
        struct.pack_into("<I", bar, smu["cmd"].offset, 3)  # POWER_ON
        struct.pack_into("<I", bar, smu["resp"].offset, 0)
        other.log_write(smu["intr"].bar, smu["intr"].offset, 0)
        other.log_write(smu["intr"].bar, smu["intr"].offset, 1)
        other.wait_applied()
        assert struct.unpack_from("<I", bar, smu["resp"].offset)[0] == 0  # never executed
        bar.close()


def test_backlogged_firmware_output_is_flushed_by_polling_unkicked_head_writes(tmp_path) -> None:
    """The shim logs i2x head writes without a kick (they only free ring space). While the
    firmware holds responses that did not fit, the daemon must look at the logs itself, or a
    driver that drained the ring would wait for ever."""
    import socket as socketmod

    from xdna_emu.daemon import Connection, Daemon
    from xdna_emu.fw.messages import Opcode
    from xdna_emu.testing.pydriver import InProcessDevice, PyDriver

    d = Daemon("npu4", tmp_path / "rt")
    try:
        d.fn.enable()  # memory + bus master: the PSP reads firmware by DMA
        td = InProcessDevice(d.fn)
        drv = PyDriver(td)
        drv.bring_up(async_events=False)
        a, b = socketmod.socketpair()
        sess = Connection(d, a, 99)
        d.sessions[sess.id] = sess
        sess.attach_write_log()
        ch = drv.mgmt
        for _ in range(200):  # more responses than the 4 KiB i2x ring holds
            ch.send(Opcode.GET_FIRMWARE_VERSION, bytes(4))
        assert d.device.backlogged()
        log_head = lambda: struct.unpack_from("<Q", sess.ctrl, P.CTRL_OFF_HEAD)[0]  # noqa: E731

        def lazy_head(addr: int, value: int) -> None:  # what the shim does for the i2x head
            bar, off = d.chip.dev_to_bar(addr)
            d.fn.regs.write(bar, off, value)
            h = log_head()
            P.LOG_ENTRY.pack_into(sess.ctrl, P.CTRL_OFF_ENTRY0 + (h % P.LOG_ENTRIES) * 16,
                                  bar, off, value, 0)
            struct.pack_into("<Q", sess.ctrl, P.CTRL_OFF_HEAD, h + 1)

        ch._write_reg = lazy_head  # type: ignore[method-assign]
        got = len(ch.drain())
        assert 0 < got < 200 and d.device.backlogged()
        assert d._timeout() is not None and d._timeout() <= 0.001  # the daemon will poll
        d._step(d._timeout())  # no kick arrives: only the backlog poll can make progress
        got += len(ch.drain())
        for _ in range(100):
            if not d.device.backlogged():
                break
            d._step(d._timeout())
            got += len(ch.drain())
        assert got == 200
        b.close()
    finally:
        d.cleanup()


def _gone_or_zombie(pid: int) -> bool:
    """The process has exited: no /proc entry, or one only its reaper still holds."""
    try:
        return "zombie" in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True


def test_emulator_of_a_killed_owner_does_not_linger(xdna_runtime_dir: Path) -> None:
    """A test runner killed with SIGKILL cannot stop its emulators; they notice the owner
    is gone (pidfd) and exit cleanly, removing their files."""
    code = ("import sys; from xdna_emu import Emulator\n"
            "e = Emulator('npu4', runtime_dir=sys.argv[1]).start()\n"
            "print(e.pid, e.socket, flush=True)\n"
            "import time; time.sleep(60)\n")
    owner = subprocess.Popen([sys.executable, "-c", code, str(xdna_runtime_dir)],
                             stdout=subprocess.PIPE, text=True)
    pid_s, sock = owner.stdout.readline().split()
    owner.kill()
    owner.wait(10)
    wait_until(lambda: _gone_or_zombie(int(pid_s)), timeout=10, interval=0.05,
               what=f"daemon {pid_s} to exit")
    assert not Path(sock).exists()


def _logged_session(tmp_path: Path) -> tuple[Any, Any, Any, Any]:
    """An in-process daemon with a brought-up firmware and one session whose mgmt-channel
    writes travel through its write log (what the shim does), owning the mgmt vector."""
    import socket as socketmod

    from xdna_emu.daemon import Connection, Daemon
    from xdna_emu.testing.pydriver import InProcessDevice, PyDriver

    d = Daemon("npu4", tmp_path / "rt")
    d.fn.enable()
    drv = PyDriver(InProcessDevice(d.fn))
    drv.bring_up(async_events=False)
    a, _b = socketmod.socketpair()
    sess = Connection(d, a, 99)
    d.sessions[sess.id] = sess
    sess.attach_write_log()
    vec = d.fn.device.fw.engine.channels[0].vector  # the mgmt channel's
    irq = os.eventfd(0, os.EFD_NONBLOCK)
    d.fn.msix.set_eventfds(vec, [irq])
    d.vector_owner[vec] = sess
    with contextlib.suppress(BlockingIOError):  # what bring-up left pending
        os.eventfd_read(irq)

    def logged(addr: int, value: int) -> None:
        bar, off = d.chip.dev_to_bar(addr)
        d.fn.regs.write(bar, off, value)
        h = struct.unpack_from("<Q", sess.ctrl, P.CTRL_OFF_HEAD)[0]
        P.LOG_ENTRY.pack_into(sess.ctrl, P.CTRL_OFF_ENTRY0 + (h % P.LOG_ENTRIES) * 16, bar, off,
                              value, 0)
        struct.pack_into("<Q", sess.ctrl, P.CTRL_OFF_HEAD, h + 1)
        os.eventfd_write(sess.kick_fd, 1)

    drv.mgmt._write_reg = logged  # type: ignore[method-assign]
    return d, sess, drv.mgmt, irq


def _ctrl_u32(sess: Any, off: int) -> int:
    return struct.unpack_from("<I", sess.ctrl, off)[0]


@pytest.mark.parametrize("irq_wakes", [0, 1])
def test_notify_is_left_out_only_for_a_session_woken_by_its_own_interrupt(tmp_path, irq_wakes: int) -> None:
    from xdna_emu.fw.messages import Opcode

    d, sess, ch, irq = _logged_session(tmp_path)
    try:
        struct.pack_into("<I", sess.ctrl, P.CTRL_OFF_IRQ_WAKES, irq_wakes)
        with contextlib.suppress(BlockingIOError):
            os.eventfd_read(sess.notify_fd)
        epoch = struct.unpack_from("<Q", sess.ctrl, P.CTRL_OFF_EPOCH)[0]
        ch.send(Opcode.GET_FIRMWARE_VERSION, bytes(4))
        d._step(0)
        assert [r.opcode for r in ch.drain()] == [Opcode.GET_FIRMWARE_VERSION]
        assert os.eventfd_read(irq) == 1  # one interrupt for the batch
        assert struct.unpack_from("<Q", sess.ctrl, P.CTRL_OFF_EPOCH)[0] == epoch + 1
        if irq_wakes:
            with pytest.raises(BlockingIOError):
                os.eventfd_read(sess.notify_fd)
        else:
            assert os.eventfd_read(sess.notify_fd) == 1
        assert _ctrl_u32(sess, P.CTRL_OFF_DRAINING) == 0  # clear whenever the daemon sleeps
    finally:
        os.close(irq)
        d.cleanup()


def test_a_lone_driver_gets_the_runqueue_words_of_nobody_else(tmp_path) -> None:
    """With the driver the only session, the shared words say: no other session asks,
    no client holds a context or wants a DPM level; the context generation is published
    (docs/spec/jobs.md §3a). Stale values are overwritten."""
    d, sess, _ch, irq = _logged_session(tmp_path)
    try:
        d.fn.driver = sess.id
        for off in (P.CTRL_OFF_RQ_ASKS, P.CTRL_OFF_FOREIGN_CTX, P.CTRL_OFF_FOREIGN_DPM):
            struct.pack_into("<I", sess.ctrl, off, 7)
        d.fn.device.stats["contexts_destroyed"] = 5
        d._publish_foreign_ctx()
        assert [_ctrl_u32(sess, o) for o in (P.CTRL_OFF_RQ_ASKS, P.CTRL_OFF_CTX_GEN,
                                              P.CTRL_OFF_FOREIGN_CTX, P.CTRL_OFF_FOREIGN_DPM)] == [0, 5, 0, 0]
    finally:
        os.close(irq)
        d.cleanup()


#: the words the daemon stores into a driver session's page (docs/spec/protocol.md)
_DAEMON_WORDS = (P.CTRL_OFF_RQ_ASKS, P.CTRL_OFF_CTX_GEN, P.CTRL_OFF_FW_BOOTS,
                 P.CTRL_OFF_FOREIGN_CTX, P.CTRL_OFF_FOREIGN_DPM, P.CTRL_OFF_PMF_POWER,
                 *range(P.CTRL_OFF_PMF_BUSY, P.CTRL_OFF_FW_BOOTS, 4))


def test_the_lone_driver_and_general_publish_store_the_same_words(tmp_path) -> None:
    """Both publish paths feed one writer: a driver alone gets every daemon-stored word
    the general path gives it beside an idle client (stale values overwritten both times),
    and the platform metrics are sampled again only when their inputs change."""
    import socket as socketmod

    from xdna_emu.daemon import Connection

    d, sess, _ch, irq = _logged_session(tmp_path)
    a, b = socketmod.socketpair()
    try:
        d.fn.driver = sess.id
        d.fn.device.stats["contexts_destroyed"] = 3

        def published() -> list[int]:
            for off in _DAEMON_WORDS:
                struct.pack_into("<I", sess.ctrl, off, 0xA5A5A5A5)
            d._publish_foreign_ctx()
            return [_ctrl_u32(sess, o) for o in _DAEMON_WORDS]

        alone = published()
        assert alone[:5] == [0, 3, d.fn.device.boots, 0, 0]
        assert alone[5] != 0xA5A5A5A5  # the metrics were rewritten
        m = d.fn.device.npu_metrics()
        assert d.fn.device.npu_metrics() is m  # same inputs: the same sample
        client = Connection(d, a, 100)
        d.sessions[client.id] = client
        client.attach_write_log()
        assert published() == alone
        assert _ctrl_u32(client, P.CTRL_OFF_DPM_NOW) == 1 + d.fn.device.dpm_level_now()
        d.fn.device.smu.npuclk += 100  # a new clock: a new sample, published to both
        d._publish_foreign_ctx()
        assert d.fn.device.npu_metrics() is not m
        for s in (sess, client):
            assert _ctrl_u32(s, P.CTRL_OFF_PMF_POWER) == d.fn.device.npu_metrics().power_mw
            assert _ctrl_u32(s, P.CTRL_OFF_PMF_SEQ) % 2 == 0
        client.close()
        d.sessions.pop(client.id)
    finally:
        b.close()
        os.close(irq)
        d.cleanup()


def test_a_control_command_that_only_looks_is_no_progress(tmp_path) -> None:
    """GET_IRQ_INFO and the like change no device state: no publish or notify follows them;
    a command that does (DEVICE_RESET) still counts as progress."""
    import socket as socketmod

    from xdna_emu.daemon import Connection

    d, _sess, _ch, irq = _logged_session(tmp_path)
    a, b = socketmod.socketpair()
    try:
        c = Connection(d, a, 100)
        c.versioned = True
        d.sessions[c.id] = c
        b.sendall(P.pack(1, P.Cmd.GET_IRQ_INFO, P.IRQ_INFO.pack(P.IRQ_INFO.size, 0, P.IRQ_MSIX, 0)))
        assert d._on_client(c) is False
        assert P.HEADER.unpack_from(b.recv(4096))[:2] == (1, P.Cmd.GET_IRQ_INFO)
        b.sendall(P.pack(2, P.Cmd.DEVICE_RESET))
        assert d._on_client(c) is True
        assert P.HEADER.unpack_from(b.recv(4096))[:2] == (2, P.Cmd.DEVICE_RESET)
    finally:
        b.close()
        os.close(irq)
        d.cleanup()


def _log_unkicked(ch: Any, sess: Any) -> None:
    """What a client does while it sees ``draining`` set: it logs without a kick (the test
    session's writes kick; the kick is taken back)."""
    from xdna_emu.fw.messages import Opcode

    ch.send(Opcode.GET_FIRMWARE_VERSION, bytes(4))
    os.eventfd_read(sess.kick_fd)


def test_a_log_that_moves_while_the_daemon_spins_is_drained_without_a_kick(tmp_path) -> None:
    """Spin, then block (protocol.md): while a client polls, the daemon's spin keeps each
    log's draining flag set, so the client does not kick; a log found moving is applied by
    the next step all the same, and the flag is clear once the daemon is done."""
    from xdna_emu.fw.messages import Opcode

    d, sess, ch, irq = _logged_session(tmp_path)
    try:
        struct.pack_into("<I", sess.ctrl, P.CTRL_OFF_POLLING, 1)
        _log_unkicked(ch, sess)
        d._spin(1)
        assert d._spun == [sess]
        from xdna_emu.daemon import DRAIN_FLAG

        assert _ctrl_u32(sess, P.CTRL_OFF_DRAINING) == DRAIN_FLAG  # left for its drain
        d._step(None)  # no kick, no event: the spin's find alone makes it return
        assert [r.opcode for r in ch.drain()] == [Opcode.GET_FIRMWARE_VERSION]
        assert _ctrl_u32(sess, P.CTRL_OFF_DRAINING) == 0
        d._spin(1)  # the answer's lazy i2x head write: found and applied the same way
        assert d._spun == [sess]
        d._step(None)
        d._spin(1)  # nothing moves: the spin ends with every flag clear
        assert d._spun == []
        assert _ctrl_u32(sess, P.CTRL_OFF_DRAINING) == 0
    finally:
        os.close(irq)
        d.cleanup()


def test_a_word_kick_consumed_by_the_spin_still_gets_its_step(tmp_path) -> None:
    """A client that stores one of its own ctrl words kicks without a log entry
    (protocol.md): the spin consuming that kick at its end must queue the session, so the
    next step publishes and notifies as a kicked step would."""
    d, sess, _ch, irq = _logged_session(tmp_path)
    try:
        struct.pack_into("<I", sess.ctrl, P.CTRL_OFF_POLLING, 1)
        struct.pack_into("<I", sess.ctrl, P.CTRL_OFF_HWCTX_LIVE, 1)
        os.eventfd_write(sess.kick_fd, 1)  # the word's kick, no entry behind it
        d._spin(1)
        assert d._spun == [sess]
        epoch = struct.unpack_from("<Q", sess.ctrl, P.CTRL_OFF_EPOCH)[0]
        d._step(None)  # returns at once: the spin's find is its event
        assert struct.unpack_from("<Q", sess.ctrl, P.CTRL_OFF_EPOCH)[0] > epoch
    finally:
        os.close(irq)
        d.cleanup()


def test_a_polling_session_gets_its_notify_before_the_daemon_sleeps(tmp_path) -> None:
    """A session with a thread spinning on a ring needs no wake-up for the answer it spins
    on: its epoch moves at once, its notify is owed, and it is written before the daemon
    blocks (at the latest NOTIFY_DEFER_NS later while it keeps spinning)."""
    from xdna_emu.fw.messages import Opcode

    d, sess, ch, irq = _logged_session(tmp_path)
    try:
        vec = d.fn.device.fw.engine.channels[0].vector
        del d.vector_owner[vec]  # the answer's interrupt wakes nobody of this session
        struct.pack_into("<I", sess.ctrl, P.CTRL_OFF_IRQ_WAKES, 1)
        struct.pack_into("<I", sess.ctrl, P.CTRL_OFF_POLLING, 1)
        with contextlib.suppress(BlockingIOError):
            os.eventfd_read(sess.notify_fd)
        epoch = struct.unpack_from("<Q", sess.ctrl, P.CTRL_OFF_EPOCH)[0]
        ch.send(Opcode.GET_FIRMWARE_VERSION, bytes(4))
        assert d._work([sess], False)  # a step's work and notifies, without its timed spin
        assert d._notify_sessions() == 1
        assert struct.unpack_from("<Q", sess.ctrl, P.CTRL_OFF_EPOCH)[0] == epoch + 1
        assert d._owed == [sess]
        with pytest.raises(BlockingIOError):
            os.eventfd_read(sess.notify_fd)
        d._step(0.001)  # about to block: the owed notify goes out first
        assert d._owed == []
        assert os.eventfd_read(sess.notify_fd) == 1
        assert [r.opcode for r in ch.drain()] == [Opcode.GET_FIRMWARE_VERSION]
        struct.pack_into("<I", sess.ctrl, P.CTRL_OFF_IRQ_WAKES, 0)  # it asks for notify
        ch.send(Opcode.GET_FIRMWARE_VERSION, bytes(4))
        assert d._work([sess], False)
        d._notify_sessions()
        assert d._owed == []
        assert os.eventfd_read(sess.notify_fd) == 1  # at once
    finally:
        os.close(irq)
        d.cleanup()


def test_entries_logged_while_draining_are_applied_without_a_kick(tmp_path) -> None:
    """A client that saw draining set does not kick: the daemon reads head again after it
    clears the flag, so the entry is applied in the same wake-up."""
    from xdna_emu.fw.messages import Opcode

    d, sess, ch, irq = _logged_session(tmp_path)
    try:
        engine = d.fn.device.fw.engine
        seen: list[int] = []
        mgmt = engine.channels[0]
        real = mgmt.handler

        def handler(chan: Any, msg: Any) -> None:
            seen.append(_ctrl_u32(sess, P.CTRL_OFF_DRAINING))
            real(chan, msg)
            if len(seen) == 1:  # a client logging its next message mid-drain: no kick
                ch.send(Opcode.GET_FIRMWARE_VERSION, bytes(4))
                os.eventfd_read(sess.kick_fd)

        mgmt.handler = handler
        ch.send(Opcode.GET_FIRMWARE_VERSION, bytes(4))
        d._step(0)
        with pytest.raises(BlockingIOError):  # no kick left over to wake the daemon again
            os.eventfd_read(sess.kick_fd)
        assert _ctrl_u32(sess, P.CTRL_OFF_DRAINING) == 0
        assert seen[0] == (1 if daemon_mod.DRAIN_FLAG else 0)
        assert len(ch.drain()) == 2
        assert os.eventfd_read(irq) == 1  # both answers, one interrupt
    finally:
        os.close(irq)


def test_the_drain_before_a_proxied_request_holds_interrupts(tmp_path) -> None:
    """MGMT_PROXY applies the session's logged writes first; like a step's drain it answers
    the batch with one interrupt per vector (docs/spec/device.md §3), so the C and the
    Python job paths deliver the same."""
    from xdna_emu.fw.messages import Opcode

    d, sess, ch, irq = _logged_session(tmp_path)
    try:
        for _ in range(3):
            _log_unkicked(ch, sess)
        d._h_mgmt_proxy(sess, P.MGMT_PROXY_HDR.pack(int(Opcode.GET_FIRMWARE_VERSION), 0) + bytes(4))
        assert len(ch.drain()) == 3
        assert os.eventfd_read(irq) == 1  # three answers, one interrupt
    finally:
        os.close(irq)
        d.cleanup()


@pytest.mark.parametrize("taker", [0, 1], ids=["same-session", "other-session"])
def test_a_proxied_destroy_follows_the_sessions_logged_ring_head_write(tmp_path, taker: int) -> None:
    """The shim logs an i2x head write without a kick. A client session's last job on a
    context, then DESTROY_CONTEXT by MGMT_PROXY: that write must land before the channel is
    freed, never on the channel the next CREATE_CONTEXT (the same session's or another's)
    gets, or its owner finds a ring head it never wrote ("mailbox bad state", EPIPE; it
    broke a program whose forked child opened the device after a TDR). docs/spec/jobs.md §1."""
    import socket as socketmod

    from xdna_emu.daemon import Connection, Daemon
    from xdna_emu.fw.messages import LAYOUTS, MESSAGES, Opcode
    from xdna_emu.testing.pydriver import InProcessDevice, PyDriver

    d = Daemon("npu4", tmp_path / "rt")
    socks: list[socketmod.socket] = []
    try:
        d.fn.enable()
        PyDriver(InProcessDevice(d.fn)).bring_up(async_events=False)
        sess = []
        for sid in (98, 99):
            a, b = socketmod.socketpair()
            socks += [a, b]
            s = Connection(d, a, sid)
            d.sessions[s.id] = s
            s.attach_write_log()
            sess.append(s)
        create = LAYOUTS[Opcode.CREATE_CONTEXT]

        def proxy(s: Connection, op: Opcode, req: bytes) -> bytes:
            resp, _ = d._h_mgmt_proxy(s, P.MGMT_PROXY_HDR.pack(int(op), 0) + req)
            return resp

        def new_context(s: Connection) -> tuple[int, int]:
            out = MESSAGES[Opcode.CREATE_CONTEXT].resp.unpack(proxy(
                s, Opcode.CREATE_CONTEXT, create.req.pack(1, 0, 1, 0, 0, 1, 0, 0, bytes(8), 0, 2)))
            assert out["status"] == 0, out
            return out["context_id"], out["cq_pair"][0]["i2x_q"]["head_addr"]

        cid, head_addr = new_context(sess[0])
        bar, off = d.chip.dev_to_bar(head_addr)
        # the last response consumed: the shim stores the head and logs it, with no kick
        d.fn.regs.write(bar, off, 0x30)
        h = struct.unpack_from("<Q", sess[0].ctrl, P.CTRL_OFF_HEAD)[0]
        P.LOG_ENTRY.pack_into(sess[0].ctrl, P.CTRL_OFF_ENTRY0 + (h % P.LOG_ENTRIES) * P.LOG_ENTRY.size,
                              bar, off, 0x30, 0)
        struct.pack_into("<Q", sess[0].ctrl, P.CTRL_OFF_HEAD, h + 1)
        assert struct.unpack_from("<I", proxy(sess[0], Opcode.DESTROY_CONTEXT,
                                              struct.pack("<I", cid)))[0] == 0
        _, head_again = new_context(sess[taker])
        assert head_again == head_addr  # the freed channel is the one the next context gets
        fresh = d.fn.regs.read(bar, off)
        for s in sess:  # whatever the sessions' logs still hold lands now
            d._drain(s)
        assert d.fn.regs.read(bar, off) == fresh == 0
    finally:
        for s in socks:
            s.close()
        d.cleanup()


def test_sysfs_config_follows_config_writes_in_place(tmp_path: Path) -> None:
    """The sysfs ``config`` file is rewritten in place after each config write that changes
    it, also after the daemon wrote its tree anew (an SR-IOV change does): the file it
    writes is then the new one (docs/spec/sysfs.md)."""
    d = daemon_mod.Daemon("npu4", tmp_path)
    try:
        path = d.sysfs_root / "bus/pci/devices" / d.bdf / "config"
        ino = path.stat().st_ino
        d.fn.config_write(4, b"\x06\x00", None)
        assert path.read_bytes() == bytes(d.fn.config.data)
        assert path.stat().st_ino == ino  # in place, not replaced
        d._write_discovery_files()  # noqa: SLF001 - the tree written anew (a new inode)
        assert path.stat().st_ino != ino
        d.fn.config_write(d.fn.config.msix_cap + 3, b"\x80", None)
        assert path.read_bytes() == bytes(d.fn.config.data)
        assert path.read_bytes()[d.fn.config.msix_cap + 3] & 0x80
    finally:
        d.cleanup()


def _stepping(d: Any) -> Any:
    """Step daemon ``d`` in a thread until the returned event is set."""
    import threading

    stop = threading.Event()
    t = threading.Thread(target=lambda: [d._step(0.005) for _ in iter(stop.is_set, True)])  # noqa: SLF001
    t.start()
    stop.thread = t  # type: ignore[attr-defined]
    return stop


def _raw_session(d: Any) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(str(d.socket_path))
    s.sendall(P.pack(0, P.Cmd.VERSION, P.VERSION_HDR.pack(P.PROTO_MAJOR, P.PROTO_MINOR) + b"{}\0"))
    hdr = s.recv(P.HEADER.size, socket.MSG_WAITALL)
    s.recv(P.parse_header(hdr)[2] - P.HEADER.size, socket.MSG_WAITALL)
    return s


def test_replies_wait_for_a_slow_reader_in_order(tmp_path: Path) -> None:
    """Replies go out without a poll first; one that finds the client's socket full waits
    for room (its rest, in order, behind the part that was sent), so a client that reads
    late gets every reply whole (docs/spec/protocol.md)."""
    d = daemon_mod.Daemon("npu4", tmp_path)
    stop = _stepping(d)
    try:
        s = _raw_session(d)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        n = 64  # 64 config reads of 4 KiB: more than the socket buffers hold
        for i in range(n):
            s.sendall(P.pack(1 + i, P.Cmd.REGION_READ, P.REGION_ACCESS.pack(0, P.REGION_CONFIG, 4096)))
        for i in range(n):
            hdr = s.recv(P.HEADER.size, socket.MSG_WAITALL)
            msg_id, cmd, size, flags, _ = P.parse_header(hdr)
            body = s.recv(size - P.HEADER.size, socket.MSG_WAITALL)
            assert (msg_id, cmd, flags) == (1 + i, P.Cmd.REGION_READ, P.TYPE_REPLY)
            assert body[P.REGION_ACCESS.size:] == bytes(d.fn.config.data)
        s.close()
    finally:
        stop.set()
        stop.thread.join(10)
        d.cleanup()


def test_a_client_that_stops_reading_is_dropped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A reply that finds no room for SEND_TIMEOUT_S drops the client (and only it): a
    client that stops reading cannot stall the device for the others."""
    monkeypatch.setattr(daemon_mod, "SEND_TIMEOUT_S", 0.05)
    d = daemon_mod.Daemon("npu4", tmp_path)
    stop = _stepping(d)
    try:
        s = _raw_session(d)
        other = _raw_session(d)
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # dropped already
            for i in range(256):
                s.sendall(P.pack(1 + i, P.Cmd.REGION_READ,
                                 P.REGION_ACCESS.pack(0, P.REGION_CONFIG, 4096)))
        wait_until(lambda: d.stats["dropped_clients"], lambda n: n == 1, timeout=30,
                   what="the stalled client dropped")
        other.sendall(P.pack(7, P.Cmd.DEVICE_GET_INFO))
        assert P.parse_header(other.recv(P.HEADER.size, socket.MSG_WAITALL))[:2] == (
            7, P.Cmd.DEVICE_GET_INFO)
        s.close()
        other.close()
    finally:
        stop.set()
        stop.thread.join(10)
        d.cleanup()


#: what a reader process does while the daemon republishes its words: each word it is told
#: about must always read as one of the values the daemon stored, in order (a counter never
#: goes back); it counts its reads in a page of its own and reports what it saw
_WORD_READER = textwrap.dedent("""
    import mmap, os, sys
    ctrl_fd, prog_fd, steady, rising = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
    page = memoryview(mmap.mmap(ctrl_fd, 0)).cast("I")
    prog = memoryview(mmap.mmap(prog_fd, 0)).cast("Q")
    steady = [(int(o) >> 2, page[int(o) >> 2]) for o in steady.split(",")]
    rising = [int(o) >> 2 for o in rising.split(",")]
    last = [page[i] for i in rising]
    bad = []
    while not prog[1] and len(bad) < 10:
        for _ in range(256):
            bad += [(i * 4, v) for i, want in steady if (v := page[i]) != want]
            for k, i in enumerate(rising):
                v = page[i]
                if v < last[k]:
                    bad.append((i * 4, v))
                last[k] = v
        prog[0] += 256
    print(bad)
""")


def test_republished_words_never_read_as_another_value(tmp_path) -> None:
    """A word the daemon stores into a session's ctrl page is one store: a reader in another
    process never sees it pass through another value, even for a moment (a client that saw
    ``fw_boots`` or ``drv_stops`` move for a moment forgot its firmware contexts without
    destroying them, and every session then waited for a partition that never came free:
    docs/spec/jobs.md §3a; a counter seen going back: ``ctx_gen``, the epoch)."""
    import mmap as mmapmod
    import socket as socketmod

    from xdna_emu.daemon import Connection

    d, drv, _ch, irq = _logged_session(tmp_path)
    a, b = socketmod.socketpair()
    prog_fd = os.memfd_create("reader-progress")
    os.ftruncate(prog_fd, 4096)
    prog = memoryview(mmapmod.mmap(prog_fd, 4096)).cast("Q")
    reader = None
    try:
        d.fn.driver = drv.id
        client = Connection(d, a, 100)
        d.sessions[client.id] = client
        client.attach_write_log()
        struct.pack_into("<II", drv.ctrl, P.CTRL_OFF_PM_DOWN, 1, 4)  # what the driver stores
        struct.pack_into("<I", client.ctrl, P.CTRL_OFF_HWCTX_LIVE, 3)
        d._publish_foreign_ctx()
        steady = (P.CTRL_OFF_FW_BOOTS, P.CTRL_OFF_PM_DOWN, P.CTRL_OFF_DRV_STOPS, P.CTRL_OFF_RQ_ASKS)
        assert [_ctrl_u32(client, o) for o in steady] == [d.fn.device.boots, 1, 4, 0]
        rising = (P.CTRL_OFF_CTX_GEN, P.CTRL_OFF_EPOCH)
        reader = subprocess.Popen(
            [sys.executable, "-c", _WORD_READER, str(client.ctrl_fd), str(prog_fd),
             ",".join(map(str, steady)), ",".join(map(str, rising))],
            pass_fds=(client.ctrl_fd, prog_fd), stdout=subprocess.PIPE, text=True)
        wait_until(lambda: prog[0], what="the reader to start reading")
        start = prog[0]
        for i in range(20_000_000):  # until the reader has read 300,000 times meanwhile
            if i % 64 == 0:
                if prog[0] - start >= 300_000 or reader.poll() is not None:
                    break
                d.fn.device.stats["contexts_destroyed"] += 1
                d._publish_foreign_ctx()  # every publish path
            client.notify(wake=False)
        assert prog[0] - start >= 300_000
        prog[1] = 1
        out, _ = reader.communicate(timeout=60)
        assert reader.returncode == 0 and out.strip() == "[]", out
        assert _ctrl_u32(client, P.CTRL_OFF_CTX_GEN) == d.fn.device.stats["contexts_destroyed"]
    finally:
        if reader is not None and reader.poll() is None:
            reader.kill()
            reader.wait()
        prog.release()
        os.close(prog_fd)
        b.close()
        os.close(irq)
        d.cleanup()


class _CountingSock:
    """A session's real socket, with its sendmsg calls counted."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.sends = 0

    def sendmsg(self, *args: Any) -> int:
        self.sends += 1
        return self.sock.sendmsg(*args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sock, name)


def _recv_reply(s: socket.socket) -> tuple[int, int, bytes, list[int]]:
    """One reply read as the shim reads it: its header, then its payload, and the fds that
    came with either."""
    fds: list[int] = []
    buf = b""
    need = P.HEADER.size
    while len(buf) < need:
        data, anc, _, _ = s.recvmsg(need - len(buf), socket.CMSG_SPACE(4 * P.MAX_MSG_FDS))
        assert data, "the daemon hung up"
        for _, _, cdata in anc:
            fds += struct.unpack(f"{len(cdata) // 4}i", cdata[: len(cdata) // 4 * 4])
        buf += data
        if len(buf) == P.HEADER.size:
            need = P.parse_header(buf)[2]
    msg_id, cmd, _, _, _ = P.parse_header(buf)
    return msg_id, cmd, buf[P.HEADER.size:], fds


def test_a_pipelined_batch_is_answered_in_one_send_per_run_of_fds(tmp_path: Path) -> None:
    """The replies to the commands of one socket read go out together: one sendmsg for the
    run up to the first reply with fds, then one per reply with fds and the fd-less replies
    behind it, each run's fds riding with its first reply (docs/spec/protocol.md,
    "Pipelining"): a pipelined attach wakes its client once per run, not once per reply,
    and every reply still gets exactly its own fds."""
    d = daemon_mod.Daemon("npu4", tmp_path)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(str(d.socket_path))
        d._step(0)  # the accept  # noqa: SLF001
        (sess,) = d.sessions.values()
        sess.sock = counting = _CountingSock(sess.sock)
        batch = [P.pack(1, P.Cmd.VERSION, P.VERSION_HDR.pack(P.PROTO_MAJOR, P.PROTO_MINOR) + b"{}\0"),
                 P.pack(2, P.Cmd.DEVICE_GET_INFO),
                 P.pack(3, P.Cmd.REGION_READ, P.REGION_ACCESS.pack(0, P.REGION_CONFIG, 64))]
        batch += [P.pack(4 + i, P.Cmd.GET_REGION_INFO, P.REGION_INFO.pack(P.REGION_INFO.size, 0, i, 0, 0, 0))
                  for i in range(6)]
        batch += [P.pack(10, P.Cmd.ATTACH_WRITE_LOG), P.pack(11, P.Cmd.DEVICE_GET_INFO)]
        s.sendall(b"".join(batch))
        d._step(0)  # noqa: SLF001
        replies = [_recv_reply(s) for _ in batch]
        assert [(i, c) for i, c, _, _ in replies] == [P.parse_header(m)[:2] for m in batch]
        with_fds = 0
        for msg_id, cmd, body, fds in replies:
            if cmd == P.Cmd.GET_REGION_INFO:
                _, flags, index, _, size, _ = P.REGION_INFO.unpack(body)
                assert index == msg_id - 4
                assert len(fds) == (1 if flags & P.REGION_MMAP and size else 0), index
                if fds:
                    assert os.fstat(fds[0]).st_size >= size
            elif cmd == P.Cmd.ATTACH_WRITE_LOG:
                assert len(fds) == 4  # ctrl page, kick, notify, doorbell (minor 2)
            else:
                assert fds == []
            with_fds += bool(fds)
            for fd in fds:
                os.close(fd)
        assert with_fds >= 2
        assert counting.sends == 1 + with_fds  # the fd-less run first, then one per run
    finally:
        s.close()
        d.cleanup()


def test_a_new_clients_first_commands_are_served_in_the_accepting_step(tmp_path: Path) -> None:
    """A client sends as soon as it connects: the step that accepts it also serves what it
    sent, so its first round trip costs the daemon one step, not two; a connection with
    nothing sent yet is accepted and waits for its data as before."""
    d = daemon_mod.Daemon("npu4", tmp_path)
    quiet = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        quiet.connect(str(d.socket_path))
        d._step(0)  # noqa: SLF001
        assert len(d.sessions) == 1  # accepted, nothing to serve
        s.connect(str(d.socket_path))
        s.sendall(P.pack(1, P.Cmd.VERSION, P.VERSION_HDR.pack(P.PROTO_MAJOR, P.PROTO_MINOR) + b"{}\0")
                  + P.pack(2, P.Cmd.DEVICE_GET_INFO))
        d._step(0)  # noqa: SLF001
        s.setblocking(False)
        assert _recv_reply(s)[:2] == (1, P.Cmd.VERSION)
        assert _recv_reply(s)[:2] == (2, P.Cmd.DEVICE_GET_INFO)
        assert len(d.sessions) == 2
        quiet.sendall(P.pack(3, P.Cmd.VERSION, P.VERSION_HDR.pack(P.PROTO_MAJOR, P.PROTO_MINOR) + b"{}\0"))
        d._step(0)  # noqa: SLF001
        quiet.setblocking(False)
        assert _recv_reply(quiet)[:2] == (3, P.Cmd.VERSION)
    finally:
        s.close()
        quiet.close()
        d.cleanup()
