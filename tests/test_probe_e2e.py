"""End to end: the C driver shim probes a real daemon, as the amdxdna driver would.

Each test starts ``xdna-emu run`` through :class:`xdna_emu.Emulator`, attaches the shim and
runs the driver bring-up (SMU, PSP firmware load over DMA, FW-alive handshake, management
channel, init messages, queries), then checks what the driver learnt against the chip file.
"""

from __future__ import annotations

import contextlib
import errno
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("xdna_emu.device")

from xdna_emu import Emulator  # noqa: E402
from xdna_emu.chips import emulated_chip_names, load_chip  # noqa: E402
from xdna_emu.fw.image import write_firmware  # noqa: E402
from xdna_emu.shim import Shim, ShimError  # noqa: E402

GET_FIRMWARE_VERSION = 0x108
AIE2_CHIPS = emulated_chip_names(family="aie2")


def _feature(chip, name: str, protocol: str) -> bool:  # noqa: ANN001
    need = chip.features.get(name)
    major, minor = (int(x) for x in protocol.split(".")[:2])
    return need is not None and (major, minor) >= need


@pytest.fixture
def fw_dir(xdna_firmware_dir: Path) -> Path:
    """The plugin's firmware images for every emulated chip (``xdna_firmware_dir``)."""
    return xdna_firmware_dir


@pytest.fixture
def attached(xdna_emulator: Emulator) -> Iterator[tuple[Emulator, Shim]]:
    """A shim attached to the plugin's emulator of ``xdna_chip``, not yet probed."""
    with Shim.open(xdna_emulator.socket) as shim:
        yield xdna_emulator, shim


@pytest.mark.parametrize("xdna_chip", AIE2_CHIPS)
def test_probe_reports_what_the_chip_file_says(attached, fw_dir: Path) -> None:  # noqa: ANN001
    emu, shim = attached
    chip = load_chip(emu.chip)
    info = shim.probe(fw_dir)
    fw = chip.firmware
    assert info["state"] == "probed"
    assert info["chip"] == chip.name
    assert info["bdf"] == emu.bdf
    assert (info["vendor"], info["device"], info["revision"]) == (
        chip.pci.vendor, chip.pci.device, chip.pci.revision)
    assert info["fw_version"] == fw.version
    assert info["protocol_version"] == ".".join(fw.protocol.split(".")[:2])
    assert info["aie_version"] == ".".join(str(x) for x in fw.aie_version)
    for key in ("cols", "rows", "core_rows", "mem_rows", "shim_rows", "core_row_start",
                "mem_row_start", "shim_row_start"):
        assert info["tiles"][key] == getattr(chip.tiles, key), key
    assert info["total_col"] == min(chip.tiles.cols, 128)
    assert info["msix_vectors"] == chip.msix.vectors
    assert 0 <= info["mgmt_msi_id"] < chip.msix.vectors
    assert info["dpm_levels"] == len(chip.dpm_levels)
    assert info["dpm_level"] == len(chip.dpm_levels) - 1
    assert info["async_pending"] == info["total_col"]
    want_rev = fw.dev_revision if _feature(chip, "GET_DEV_REVISION", fw.protocol) else 0
    assert info["dev_revision"] == want_rev
    names = [s["name"] for s in info["stages"]]
    assert names[:3] == ["smu", "psp", "fw_alive"]
    assert {"mgmt_init", "query"} <= set(names)
    assert all(s["ms"] > 0 for s in info["stages"])
    assert info["dropped_resps"] == 0


def test_many_messages_wrap_ids_and_the_ring(attached, fw_dir: Path) -> None:  # noqa: ANN001
    emu, shim = attached
    info = shim.probe(fw_dir)
    want = tuple(int(x) for x in info["fw_version"].split("."))
    for _ in range(320):  # > 256 ids, and 320 x 20 B requests wrap a 4 KiB ring
        resp = shim.mgmt_msg(GET_FIRMWARE_VERSION, bytes(4), 20)
        status, *ver = struct.unpack("<5I", resp)
        assert status == 0
        assert tuple(ver) == want
    assert shim.info()["dropped_resps"] == 0


def test_wrong_response_size_is_einval_and_the_channel_goes_bad(attached, fw_dir: Path) -> None:  # noqa: ANN001
    """The driver's response callback rejects a size mismatch with -EINVAL, and its RX
    worker then marks the channel bad: later messages fail with EPIPE, and a new probe
    (a fresh driver) recovers."""
    emu, shim = attached
    shim.probe(fw_dir)
    with pytest.raises(ShimError) as ei:
        shim.mgmt_msg(GET_FIRMWARE_VERSION, bytes(4), 8)
    assert ei.value.errno == errno.EINVAL
    with pytest.raises(ShimError) as ei:
        shim.mgmt_msg(GET_FIRMWARE_VERSION, bytes(4), 20)
    assert ei.value.errno == errno.EPIPE and "bad state" in str(ei.value)
    shim.close()
    with Shim.open(emu.socket) as again:
        info = again.probe(fw_dir)
        assert info["state"] == "probed"


def test_corrupted_firmware_fails_in_psp_then_a_good_image_probes(attached, fw_dir: Path,
                                                                   tmp_path: Path) -> None:  # noqa: ANN001
    emu, shim = attached
    chip = load_chip(emu.chip)
    bad = write_firmware(chip.name, tmp_path)
    data = bytearray(bad.read_bytes())
    data[len(data) // 2] ^= 0x01
    bad.write_bytes(bytes(data))
    with pytest.raises(ShimError) as ei:
        shim.probe(tmp_path)
    assert ei.value.errno == errno.EIO
    assert "psp" in ei.value.strerror
    assert shim.info()["state"] == "failed"
    info = shim.probe(fw_dir)
    assert info["state"] == "probed"


@pytest.mark.parametrize("xdna_chip", ["npu4", "npu3"])  # the same on AIE2 and AIE4
def test_missing_firmware_is_enoent(attached, tmp_path: Path) -> None:  # noqa: ANN001
    _, shim = attached
    with pytest.raises(ShimError) as ei:
        shim.probe(tmp_path)
    assert ei.value.errno == errno.ENOENT


def test_stop_then_probe_again(attached, fw_dir: Path) -> None:  # noqa: ANN001
    _, shim = attached
    shim.probe(fw_dir)
    shim.stop()
    assert shim.info()["state"] == "stopped"
    with pytest.raises(ShimError) as ei:
        shim.mgmt_msg(GET_FIRMWARE_VERSION, bytes(4), 20)
    assert ei.value.errno == errno.ENODEV
    assert shim.probe(fw_dir)["state"] == "probed"
    with pytest.raises(ShimError) as ei:
        shim.probe(fw_dir)
    assert ei.value.errno == errno.EALREADY


def test_suspend_resume_restarts_the_firmware(attached, fw_dir: Path) -> None:  # noqa: ANN001
    _, shim = attached
    shim.probe(fw_dir)
    shim.suspend()
    assert shim.info()["state"] == "suspended"
    with pytest.raises(ShimError) as ei:
        shim.mgmt_msg(GET_FIRMWARE_VERSION, bytes(4), 20)
    assert ei.value.errno == errno.ENODEV
    shim.resume()
    info = shim.info()
    assert info["state"] == "probed"
    assert [s["name"] for s in info["stages"]][:3] == ["smu", "psp", "fw_alive"]
    assert struct.unpack("<I", shim.mgmt_msg(GET_FIRMWARE_VERSION, bytes(4), 20)[:4]) == (0,)


@pytest.mark.parametrize("xdna_chip", ["npu4", "npu3"])
def test_a_second_probe_after_close_finds_a_clean_device(xdna_emulator: Emulator,
                                                          fw_dir: Path) -> None:
    with Shim.open(xdna_emulator.socket) as shim:
        shim.probe(fw_dir)
    with Shim.open(xdna_emulator.socket) as shim:
        assert shim.probe(fw_dir)["state"] == "probed"


def test_mgmt_timeout_destroys_the_channel(attached, fw_dir: Path) -> None:  # noqa: ANN001
    """Firmware that stops answering (its i2x head register was corrupted) -> ETIME, then
    ENODEV for every later management message, as the driver does."""
    emu, shim = attached
    chip = load_chip(emu.chip)
    shim.probe(fw_dir)
    shim.set_timeout("mbox_rx", 200)
    mb = chip.mailbox
    bar, base = chip.dev_to_bar(mb.regs_base)
    for ch in range(mb.channels):  # unaligned head: the firmware puts its channel in error
        shim.writel(bar, base + ch * mb.regs_stride + mb.I2X_HEAD, 0x3)
    with pytest.raises(ShimError) as ei:
        shim.mgmt_msg(GET_FIRMWARE_VERSION, bytes(4), 20, timeout_ms=200)
    assert ei.value.errno == errno.ETIME
    with pytest.raises(ShimError) as ei:
        shim.mgmt_msg(GET_FIRMWARE_VERSION, bytes(4), 20)
    assert ei.value.errno == errno.ENODEV


def test_daemon_death_gives_epipe_not_a_hang(attached, fw_dir: Path) -> None:  # noqa: ANN001
    import os
    import signal

    emu, shim = attached
    shim.probe(fw_dir)
    os.kill(emu.pid, signal.SIGKILL)
    emu.proc.wait(10)
    # A wait that missed the hang-up ends only at this long deadline, and then ETIME: the
    # errno and the message tell the hang-up path from the timeout path, no clock needed.
    with pytest.raises(ShimError) as ei:
        shim.mgmt_msg(GET_FIRMWARE_VERSION, bytes(4), 20, timeout_ms=60_000)
    assert ei.value.errno == errno.EPIPE
    assert any(w in ei.value.strerror for w in ("hung up", "closed", "ended this session"))
    shim.close()


# -- an in-process daemon whose firmware a test may bend ----------------------------------

@pytest.fixture
def inproc(tmp_path: Path) -> Iterator:
    """A Daemon served from a thread of this process, so a test can patch its device model
    (monkeypatch the firmware classes) before the shim probes it."""
    import threading

    from xdna_emu.daemon import Daemon

    d = Daemon("npu4", tmp_path / "rt")
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            d._step(0.02)

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    try:
        yield d
    finally:
        stop.set()
        t.join(5)
        d.cleanup()


def test_i2x_message_ending_at_the_ring_end_used_to_reread_stale_messages(
        inproc, fw_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    """Firmware may fill the i2x ring to its last byte: then head == tail == size means
    "empty". The shim used to wrap head to 0 before that check and re-read old responses."""
    from xdna_emu.fw.mailbox import MailboxChannel
    from xdna_emu.fw.messages import TOMBSTONE

    hit_end = []

    def put_up_to_the_end(self: MailboxChannel, pkt: bytes) -> bool:
        size, n, tail = self.ring_size, len(pkt), self.i2x_tail
        head = self._rd(self.i2x_head_reg)
        if tail < head and tail + n >= head:
            return False
        if tail >= head and tail + n > size:  # wrap only when the message does not fit
            if n >= head:
                return False
            if tail + 4 <= size:
                struct.pack_into("<I", self._i2x, tail, TOMBSTONE)
            tail = 0
        self._i2x[tail : tail + n] = pkt
        self.i2x_tail = tail + n
        if self.i2x_tail == size:
            hit_end.append(tail)
        self._wr(self.i2x_tail_reg, self.i2x_tail)
        return True

    monkeypatch.setattr(MailboxChannel, "_put", put_up_to_the_end)
    # the patched ring rule is the Python model's: the C path, which answers this query
    # itself (docs/spec/jobs.md §7 "Management queries"), keeps the real one
    monkeypatch.setattr(inproc, "datapath", None)
    with Shim.open(inproc.socket_path) as shim:
        shim.probe(fw_dir)
        for _ in range(200):  # 64-byte responses: some end exactly at the 4 KiB ring end
            assert struct.unpack_from("<I", shim.mgmt_msg(0xE, bytes(4), 48)) == (0,)
        assert hit_end
        assert shim.info()["dropped_resps"] == 0


def test_failed_psp_start_is_not_followed_by_release_tmr(
        inproc, fw_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    """The driver unwinds a failed PSP START by powering the SMU off, without RELEASE_TMR
    (the shim used to send it)."""
    from xdna_emu.fw.messages import PspCmd, PspStatus
    from xdna_emu.fw.psp import PspBlock

    seen: list[int] = []
    real = PspBlock.execute

    def execute(self: PspBlock, cmd: int, *args: int) -> int:
        seen.append(cmd)
        return PspStatus.CANCEL if cmd == PspCmd.START else real(self, cmd, *args)

    monkeypatch.setattr(PspBlock, "execute", execute)
    with Shim.open(inproc.socket_path) as shim:
        with pytest.raises(ShimError) as ei:
            shim.probe(fw_dir)
        assert ei.value.errno == errno.EIO
        assert shim.info()["state"] == "failed"
    assert seen == [PspCmd.VALIDATE, PspCmd.START]
    assert inproc.device.smu.status()["power"] == "off"


def test_resume_does_not_repeat_the_probe_tail(
        inproc, fw_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    """GET_DEV_REVISION belongs to PCI probe, not hw_start: resume used to send it again."""
    from xdna_emu.fw.mgmt import MgmtFirmware

    calls = []
    real = MgmtFirmware._dev_revision

    def dev_revision(self: MgmtFirmware, *args):  # noqa: ANN002, ANN202
        calls.append(1)
        return real(self, *args)

    monkeypatch.setattr(MgmtFirmware, "_dev_revision", dev_revision)
    # one handler call per message: on the Python path (the C path sends the reply the
    # firmware published, docs/spec/jobs.md §7 "Management queries")
    monkeypatch.setattr(inproc, "datapath", None)
    with Shim.open(inproc.socket_path) as shim:
        rev = shim.probe(fw_dir)["dev_revision"]
        shim.suspend()
        shim.resume()
        assert shim.info()["dev_revision"] == rev
    assert len(calls) == 1


def test_threads_sharing_one_shim(attached, fw_dir: Path) -> None:  # noqa: ANN001
    """Threads may share one context: concurrent management messages used to race
    on the unlocked mailbox state (lost responses, ETIME); each must get its own answer."""
    from concurrent.futures import ThreadPoolExecutor

    _, shim = attached
    shim.probe(fw_dir)

    def hammer(_: int) -> int:
        ok = 0
        for _ in range(100):
            ok += struct.unpack_from("<I", shim.mgmt_msg(GET_FIRMWARE_VERSION, bytes(4), 20)) == (0,)
            shim.info()
        return ok

    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(hammer, range(4))) == [100] * 4
    assert shim.info()["dropped_resps"] == 0


def test_fw_log_ring_survives_suspend_and_resume(attached, fw_dir: Path) -> None:  # noqa: ANN001
    """The driver hands its log ring to the resumed firmware again, which goes on from the
    footer's tail (docs/spec/uapi.md §6 "Firmware log and trace", firmware.md §8a)."""
    import mmap

    from xdna_emu.fw.messages import DPT_CONSTS, DPT_FOOTER

    _, shim = attached
    shim.probe(fw_dir)
    shim.dpt_set(0, 1, 3)  # the log at INFO

    def tail() -> int:
        d = shim.dpt_get(0)
        assert d["enabled"] == 1 and d["config"] == 3, d
        with mmap.mmap(d["fd"], d["size"], prot=mmap.PROT_READ) as m:  # mmap keeps its own dup
            return DPT_FOOTER.unpack_from(m, d["size"] - DPT_CONSTS["DPT_FOOTER_PAGE"])[-1]

    shim.hwctx_destroy(shim.hwctx_create())
    before = tail()
    assert before > 0
    shim.suspend()
    shim.resume()
    assert tail() >= before  # handed over again, not restarted
    shim.hwctx_destroy(shim.hwctx_create())
    assert tail() > before
    shim.dpt_set(0, 0, 0)
    assert shim.dpt_get(0) == {"enabled": 0, "config": 0, "payload_version": 0, "size": 0, "fd": -1}



@contextlib.contextmanager
def _daemon_thread(tmp_path: Path) -> Iterator[Any]:
    """A daemon stepping in a thread of this process, so a test can look into it while the
    shim (whose calls release the GIL) drives it over its real socket."""
    import threading

    from xdna_emu.daemon import Daemon

    d = Daemon("npu4", tmp_path)
    stop = threading.Event()
    loop = threading.Thread(target=lambda: [d._step(0.005) for _ in iter(stop.is_set, True)])  # noqa: SLF001
    loop.start()
    try:
        yield d
    finally:
        stop.set()
        loop.join(10)
        d.cleanup()


def _spy_writes(d: Any, regs: set[tuple[int, int]],
                seen: list[tuple[int, int, int, Any]], what: Callable[[Any, int], Any]) -> None:
    """Record ``(bar, offset, value, what(daemon, requester))`` of each write to ``regs`` as
    the daemon applies it."""
    write = d.fn.mmio_write

    def spy(bar: int, off: int, val: int, requester: int | None = None) -> None:
        if (bar, off) in regs and requester in d.sessions:
            seen.append((bar, off, val, what(d, requester)))
        write(bar, off, val, requester)

    d.fn.mmio_write = spy


def test_first_probe_messages_are_woken_by_their_interrupt(tmp_path: Path, fw_dir: Path) -> None:
    """Before the monitor runs (a first probe) a management message's sender waits on the
    channel's vector, the only one it owns, and says so in ``irq_wakes`` before the request
    goes out: the daemon then leaves out the notify of the step that answers it, and the
    sender wakes once per message (docs/spec/protocol.md, "Suppressed kicks and notifies")."""
    from xdna_emu import protocol as P
    from xdna_emu.chips import MailboxLayout

    seen: list[tuple[int, int, int, Any]] = []
    with _daemon_thread(tmp_path) as d:
        lay = d.chip.mailbox
        x2i_tail = d.chip.dev_to_bar(lay.chan_regs(0) + MailboxLayout.X2I_TAIL)
        _spy_writes(d, {x2i_tail}, seen, lambda d, sid: struct.unpack_from(
            "<I", d.sessions[sid].ctrl, P.CTRL_OFF_IRQ_WAKES)[0])
        with Shim.open(d.socket_path) as shim:
            shim.probe(fw_dir)
            calls = len(seen)
            posted = len(d.device.fw.async_events)  # registrations: answered by an event
    # each call's own request is applied while its sender waits: irq_wakes is 1 then (a
    # posted registration's may find 0 or the next call's 1)
    assert calls > posted > 0
    assert [w for *_, w in seen[:calls]].count(1) >= calls - posted


def test_psp_and_smu_commands_are_applied_on_one_kick(tmp_path: Path, fw_dir: Path) -> None:
    """A PSP or SMU command's INTR 0 goes into the write log without a kick; the INTR 1
    behind it kicks, so the daemon applies both in the same drain (docs/spec/firmware.md
    §3, §4): the daemon wakes once per command."""
    from xdna_emu.daemon import Connection

    drains = [0]
    seen: list[tuple[int, int, int, Any]] = []
    with _daemon_thread(tmp_path) as d:
        regs = d.device.regs
        intr = {regs.loc("psp.intr"), regs.loc("smu.intr")}
        drain = Connection.drain_write_log

        def counted(self: Connection) -> bool:
            drains[0] += 1
            return drain(self)

        Connection.drain_write_log = counted  # type: ignore[method-assign]
        try:
            _spy_writes(d, intr, seen, lambda d, sid: drains[0])
            with Shim.open(d.socket_path) as shim:
                shim.probe(fw_dir)
        finally:
            Connection.drain_write_log = drain  # type: ignore[method-assign]
    pairs = list(zip(seen[::2], seen[1::2], strict=True))
    assert len(pairs) >= 6  # SMU power cycle and DPM, PSP VALIDATE and START
    for (b0, o0, v0, n0), (b1, o1, v1, n1) in pairs:
        assert (b0, o0, v0, v1) == (b1, o1, 0, 1)
        assert n0 == n1  # one drain


def test_async_event_registrations_are_kicked_once() -> None:
    """The async event registrations (one per column) are logged in order, each tail
    write as the driver makes it, but only the last one kicks: the daemon applies the batch
    in one step, not one wake-up per column (docs/spec/protocol.md, "Suppressed kicks and
    notifies"). Deterministic mode: no step runs between the shim's waits, so the kicks
    pending at the wait behind the batch are the ones its writes made."""

    from xdna_emu import protocol as P
    from xdna_emu.chips import MailboxLayout
    from xdna_emu.testing.inproc import InProcess

    seen: list[tuple[int, int]] = []  # (mgmt x2i tail writes pending, kicks pending) per wait
    with InProcess("npu4") as p:
        d = p.daemon
        tail_reg = d.chip.dev_to_bar(d.chip.mailbox.chan_regs(0) + MailboxLayout.X2I_TAIL)

        def look() -> None:
            drv = d.driver
            if drv is None or drv.w64 is None or drv.ctrl is None:
                return
            head, tail = drv.w64[P.CTRL_OFF_HEAD >> 3], drv.w64[P.CTRL_OFF_TAIL >> 3]
            sends = 0
            for i in range(tail, head):
                bar, off, _, _ = P.LOG_ENTRY.unpack_from(
                    drv.ctrl, P.CTRL_OFF_ENTRY0 + (i % P.LOG_ENTRIES) * P.LOG_ENTRY.size)
                sends += (bar, off) == tail_reg
            seen.append((sends, _kicks_pending(drv.kick_fd)))

        p.on_wait = look
        p.probe()
        p.on_wait = None
        posted = len(d.device.fw.async_events)
    assert posted > 1  # one per column
    # the wait behind the batch: every registration and the query after it unapplied
    assert max(seen)[0] == posted + 1
    assert [k for n, k in seen if n == posted + 1] == [2]  # the batch's last one, the query
    assert all(n <= 1 for n, _ in seen if n != posted + 1)  # other messages: one at a time


def _kicks_pending(fd: int) -> int:
    """The kick eventfd's count, left as found (the daemon's next step reads it)."""
    import os

    try:
        kicks = os.eventfd_read(fd)
    except BlockingIOError:
        return 0
    os.eventfd_write(fd, kicks)
    return kicks


def _probe_waits(chip: str) -> list[tuple[int, int]]:
    """Deterministic mode: at each wait of a probe, the driver's log entries not yet
    applied and the kicks pending for them (no step runs between the shim's waits, so the
    kicks are the ones the writes since the last wait made)."""

    from xdna_emu import protocol as P
    from xdna_emu.testing.inproc import InProcess

    seen: list[tuple[int, int]] = []
    with InProcess(chip) as p:
        d = p.daemon

        def look() -> None:
            drv = d.driver
            if drv is None or drv.w64 is None:
                return
            pending = drv.w64[P.CTRL_OFF_HEAD >> 3] - drv.w64[P.CTRL_OFF_TAIL >> 3]
            seen.append((pending, _kicks_pending(drv.kick_fd)))

        p.on_wait = look
        p.probe()
        p.on_wait = None
    return seen


@pytest.mark.parametrize("chip", AIE2_CHIPS)
def test_an_aie2_probe_kicks_no_more_than_it_logs(chip: str) -> None:
    """Every kick of a probe carries log entries: the DPM level the driver notes in its
    ctrl page after the SMU accepted it is stored without a kick, since the daemon
    publishes the SMU model's own level to every session at the SMU command's step
    (docs/spec/protocol.md, the ctrl page's dpm_now); a kick for it would cost the daemon
    a step for nothing."""
    seen = _probe_waits(chip)
    assert len(seen) > 10
    assert [(n, k) for n, k in seen if k > n] == []


@pytest.mark.parametrize("chip", ["npu4", "npu3"])
def test_a_session_opened_under_another_driver_probes_once_it_left(chip: str) -> None:
    """A session that attached while another was the driver finds, once that driver went
    away, a function reset as after FLR (bus mastering off, MSI-X off and masked). Its
    probe puts back what it set at attach, as the driver's probe enables the device and
    sets bus mastering, so the firmware's DMA works and it becomes the driver
    (docs/spec/device.md §2.2); the departure counts as a reset on every ctrl page."""
    from xdna_emu import protocol as P
    from xdna_emu.testing.inproc import InProcess, firmware_dir

    with InProcess(chip) as p:
        d = p.daemon
        p.probe()
        resets = d.fn.resets
        later = Shim.open(d.socket_path)
        try:
            p.close_shim()
            p.idle(1_000_000_000)
            p.claim_hooks()
            assert d.fn.resets == resets + 1 and d.driver is None
            sess = next(s for s in d.sessions.values() if not s.closed)
            assert sess.w32 is not None and sess.w32[P.CTRL_OFF_RESETS >> 2] == resets + 1
            later.probe(firmware_dir(chip))
            assert d.driver is sess and d.fn.config.bus_master
            ctx = later.hwctx_create()
            later.hwctx_destroy(ctx)
        finally:
            later.close()
