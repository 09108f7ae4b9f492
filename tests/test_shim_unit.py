"""The C driver shim against small scripted servers: attach, errors, write-log routing.

No firmware model is involved: a throwaway server speaks just enough of the control
protocol (docs/spec/protocol.md) to reach each failure the shim must turn into an errno.
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from xdna_emu import protocol as P
from xdna_emu.chips import load_chip

ROOT = Path(__file__).resolve().parents[1]


def _import_shim():  # noqa: ANN202
    try:
        from xdna_emu import shim
    except ImportError:
        subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace"], cwd=ROOT,
                       check=True, capture_output=True)
        from xdna_emu import shim
    return shim


shim = _import_shim()
Shim, ShimError = shim.Shim, shim.ShimError


# -- a scripted control-socket server ------------------------------------------------------

def recv_msg(conn: socket.socket) -> tuple[int, int, bytes, list[int]] | None:
    """One command (msg_id, cmd, payload, fds), or None at EOF."""
    data, fds = b"", []
    while len(data) < P.HEADER.size:
        chunk, anc, _, _ = conn.recvmsg(P.HEADER.size - len(data), socket.CMSG_SPACE(4 * 16))
        fds += _fds(anc)
        if not chunk:
            return None
        data += chunk
    msg_id, cmd, size, _flags, _ = P.parse_header(data)
    payload = b""
    while len(payload) < size - P.HEADER.size:
        chunk, anc, _, _ = conn.recvmsg(size - P.HEADER.size - len(payload), socket.CMSG_SPACE(4 * 16))
        fds += _fds(anc)
        if not chunk:
            return None
        payload += chunk
    return msg_id, cmd, payload, fds


def _fds(anc: list) -> list[int]:
    out: list[int] = []
    for level, typ, cdata in anc:
        if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
            out += list(struct.unpack(f"{len(cdata) // 4}i", cdata[: len(cdata) // 4 * 4]))
    return out


def reply(conn: socket.socket, msg_id: int, cmd: int, payload: bytes = b"",
          fds: list[int] | None = None, error: int = 0) -> None:
    flags = P.TYPE_REPLY | (P.FLAG_ERROR if error else 0)
    anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack(f"{len(fds)}i", *fds))] if fds else []
    conn.sendmsg([P.pack(msg_id, cmd, payload, flags, error)], anc)


def until_hangup(conn: socket.socket) -> None:
    """Read (and drop) what the shim still sends until it closes: the attach is pipelined,
    so a server that closed first would make the shim's next send fail EPIPE before it
    read the reply the test is about."""
    with contextlib.suppress(ConnectionResetError):
        while conn.recv(4096):
            pass


def version_reply(major: int = 1) -> bytes:
    return P.VERSION_HDR.pack(major, 0) + b'{"chip": "npu4", "bdf": "0000:c5:00.1", "pasid": 3, "max_msg_fds": 8}\0'


class FakeNpu:
    """Enough of a device for the shim's attach path: config space, BAR memfds, write log."""

    def __init__(self, chip: str = "npu4", vendor: int = 0x1022, device: int | None = None) -> None:
        self.chip = load_chip(chip)
        c = self.chip
        cfg = bytearray(P.CONFIG_SIZE)
        struct.pack_into("<HH", cfg, 0, vendor, c.pci.device if device is None else device)
        struct.pack_into("<H", cfg, 6, 0x10)  # capability list
        cfg[8] = c.pci.revision
        cfg[9:12] = c.pci.class_code.to_bytes(3, "little")
        cfg[0x34] = 0x40
        cfg[0x40], cfg[0x41] = 0x11, 0  # MSI-X, end of list
        struct.pack_into("<HII", cfg, 0x42, c.msix.vectors - 1, c.msix.table_offset | c.msix.bar,
                         c.msix.pba_offset | c.msix.bar)
        self.config = cfg
        self.bar_fds: dict[int, int] = {}
        self.bars: dict[int, mmap.mmap] = {}
        for idx, bar in c.bars.items():
            fd = os.memfd_create(f"bar{idx}")
            os.ftruncate(fd, bar.size)
            self.bar_fds[idx] = fd
            self.bars[idx] = mmap.mmap(fd, bar.size)
        for v in range(c.msix.vectors):  # vectors start masked
            struct.pack_into("<I", self.bars[c.msix.bar], c.msix.table_offset + 16 * v + 12, 1)
        self.ctrl_fd = os.memfd_create("ctrl")
        os.ftruncate(self.ctrl_fd, P.CTRL_SIZE)
        self.ctrl = mmap.mmap(self.ctrl_fd, P.CTRL_SIZE)
        struct.pack_into("<IIII", self.ctrl, 0, P.CTRL_MAGIC, P.CTRL_VERSION, P.LOG_ENTRIES,
                         P.LOG_ENTRY.size)
        struct.pack_into("<I", self.ctrl, P.CTRL_OFF_ALIVE, 1)
        self.kick = os.eventfd(0, os.EFD_NONBLOCK)
        self.notify = os.eventfd(0, os.EFD_NONBLOCK)
        self.irq_fds: dict[int, int] = {}
        self.config_writes: list[tuple[int, bytes]] = []
        #: how many fds ATTACH_WRITE_LOG answers with (a daemon of protocol minor 1)
        self.write_log_fds = P.WRITE_LOG_FDS

    def log(self) -> list[tuple[int, int, int]]:
        head = struct.unpack_from("<Q", self.ctrl, P.CTRL_OFF_HEAD)[0]
        out = []
        for i in range(head):
            bar, off, val, _ = P.LOG_ENTRY.unpack_from(self.ctrl, P.CTRL_OFF_ENTRY0 + 16 * (i % P.LOG_ENTRIES))
            out.append((bar, off, val))
        return out

    def handle(self, conn: socket.socket, msg_id: int, cmd: int, payload: bytes, fds: list[int]) -> None:
        if cmd == P.Cmd.VERSION:
            reply(conn, msg_id, cmd, version_reply())
        elif cmd == P.Cmd.DEVICE_GET_INFO:
            reply(conn, msg_id, cmd, P.DEVICE_INFO.pack(16, 3, 8, 5))
        elif cmd == P.Cmd.REGION_READ:
            off, region, count = P.REGION_ACCESS.unpack(payload)
            reply(conn, msg_id, cmd, payload + bytes(self.config[off : off + count]))
        elif cmd == P.Cmd.REGION_WRITE:
            off, region, count = P.REGION_ACCESS.unpack_from(payload)
            data = payload[16:]
            self.config_writes.append((off, data))
            self.config[off : off + count] = data
            reply(conn, msg_id, cmd, payload[:16])
        elif cmd == P.Cmd.GET_REGION_INFO:
            _, _, idx, _, _, _ = P.REGION_INFO.unpack(payload)
            if idx in self.bar_fds:
                body = P.REGION_INFO.pack(32, 7, idx, 0, self.chip.bars[idx].size, 0)
                reply(conn, msg_id, cmd, body, [self.bar_fds[idx]])
            else:
                reply(conn, msg_id, cmd, P.REGION_INFO.pack(32, 0, idx, 0, 0, 0))
        elif cmd == P.Cmd.ATTACH_WRITE_LOG:
            fds3 = [self.ctrl_fd, self.kick, self.notify]
            reply(conn, msg_id, cmd, P.WRITE_LOG_INFO.pack(P.LOG_ENTRIES, 0),
                  (fds3 * 2)[: self.write_log_fds])
        elif cmd == P.Cmd.GET_IRQ_INFO:
            _, _, idx, _ = P.IRQ_INFO.unpack(payload)
            count = self.chip.msix.vectors if idx == P.IRQ_MSIX else 0
            reply(conn, msg_id, cmd, P.IRQ_INFO.pack(16, 4, idx, count))
        elif cmd == P.Cmd.SET_IRQS:
            _, _, _, start, count = P.SET_IRQS.unpack(payload)
            assert len(fds) == count <= P.MAX_MSG_FDS
            for i, fd in enumerate(fds):
                self.irq_fds[start + i] = fd
            fds.clear()
            reply(conn, msg_id, cmd)
        else:
            reply(conn, msg_id, cmd, error=errno.ENOSYS)
        for fd in fds:
            os.close(fd)


class Server:
    """A UNIX socket served by ``script(conn)`` in a thread, for one connection."""

    def __init__(self, path: Path, script: Callable[[socket.socket], None]) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen(1)
        self.script = script
        self.error: BaseException | None = None
        #: set once the script ended and its connection is closed
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            conn, _ = self.sock.accept()
            with conn:
                self.script(conn)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc
        finally:
            self.done.set()

    def close(self) -> None:
        self.sock.close()
        self.thread.join(5)


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[[Callable[[socket.socket], None]], Server]]:
    servers: list[Server] = []

    def start(script: Callable[[socket.socket], None]) -> Server:
        srv = Server(tmp_path / f"s{len(servers)}.sock", script)
        servers.append(srv)
        return srv

    yield start
    for srv in servers:
        srv.close()


def serve_npu(npu: FakeNpu, done: threading.Event | None = None) -> Callable[[socket.socket], None]:
    def script(conn: socket.socket) -> None:
        while (msg := recv_msg(conn)) is not None:
            npu.handle(conn, *msg)
        if done:
            done.set()

    return script


class VirtualTime:
    """This thread's shim waits run on a virtual clock (the deterministic-mode hooks,
    docs/spec/protocol.md): a test reads how long a call waited, and for what, without a
    wall clock. Time moves only when the shim waits: the first wait, when ``peer`` is
    given, lets the peer finish for real (a hang guard, not a bound) and moves no time; every
    other wait jumps straight to the shim's deadline, so a call that waits out a timeout
    shows it as virtual time, however loaded the machine is."""

    START_NS = 1_000_000_000

    def __init__(self, peer: threading.Event | None = None) -> None:
        self.now = self.START_NS
        self.peer = peer
        self.deadlines: list[int] = []
        self.peer_stuck = False
        self._now_cb = shim.ffi.callback("uint64_t(void *)", lambda _u: self.now)
        self._wait_cb = shim.ffi.callback("int(void *, uint64_t)", self._wait)
        self._hooks = shim.ffi.new("struct xdna_shim_hooks *")
        self._hooks.now_ns, self._hooks.wait = self._now_cb, self._wait_cb
        self._hooks.user = shim.ffi.NULL

    def _wait(self, _user: object, deadline: int) -> int:
        self.deadlines.append(deadline)
        if self.peer is not None and len(self.deadlines) == 1:
            if not self.peer.wait(60):
                self.peer_stuck = True
                return -1
        else:
            self.now = max(self.now, deadline)
        return 0

    @property
    def elapsed_ns(self) -> int:
        return self.now - self.START_NS

    def __enter__(self) -> VirtualTime:
        shim.lib.xdna_shim_set_hooks(shim.ffi.NULL, self._hooks)
        return self

    def __exit__(self, *exc: object) -> None:
        shim.lib.xdna_shim_set_hooks(shim.ffi.NULL, shim.ffi.NULL)


def open_fails(path: Path, timeout_ms: int = 2000) -> ShimError:
    """Shim.open on ``path`` must fail (real time: servers that answer several messages)."""
    with pytest.raises(ShimError) as ei:
        Shim.open(path, timeout_ms=timeout_ms)
    return ei.value


def open_fails_virtual(path: Path, timeout_ms: int = 2000,
                       peer: threading.Event | None = None) -> tuple[ShimError, VirtualTime]:
    """Shim.open on ``path`` must fail; with the virtual clock it ran on."""
    with VirtualTime(peer) as vt, pytest.raises(ShimError) as ei:
        Shim.open(path, timeout_ms=timeout_ms)
    assert not vt.peer_stuck, "the scripted peer never finished"
    return ei.value, vt


# -- connection failures ------------------------------------------------------------------

def test_open_missing_socket_fails_fast(tmp_path: Path) -> None:
    exc, vt = open_fails_virtual(tmp_path / "absent.sock")
    assert exc.errno == errno.ENOENT
    assert "absent.sock" in exc.strerror
    assert vt.deadlines == []  # refused at connect: no retry until the deadline


def test_open_socket_without_listener_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "stale.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    s.close()  # the file stays, nobody listens
    exc, vt = open_fails_virtual(path)
    assert exc.errno == errno.ECONNREFUSED
    assert vt.deadlines == []


def test_open_server_closes_immediately_is_epipe(serve) -> None:  # noqa: ANN001
    srv = serve(lambda conn: None)
    exc, vt = open_fails_virtual(srv.path, peer=srv.done)
    assert exc.errno == errno.EPIPE
    assert vt.elapsed_ns == 0  # the hang-up ended the wait, not its deadline


def test_open_server_sends_garbage(serve) -> None:  # noqa: ANN001
    sent = threading.Event()

    def script(conn: socket.socket) -> None:
        recv_msg(conn)
        conn.sendall(b"\xff" * 64)  # msg_size 0xffffffff: out of range
        sent.set()
        until_hangup(conn)

    srv = serve(script)
    exc, vt = open_fails_virtual(srv.path, peer=sent)
    assert exc.errno == errno.EPROTO
    assert vt.elapsed_ns == 0


def test_open_reply_for_another_message_is_a_protocol_error(serve) -> None:  # noqa: ANN001
    def script(conn: socket.socket) -> None:
        msg_id, cmd, _, _ = recv_msg(conn)
        reply(conn, msg_id + 1, cmd, version_reply())
        until_hangup(conn)

    exc = open_fails(serve(script).path)
    assert exc.errno == errno.EPROTO


def test_open_silent_server_times_out_at_the_deadline(serve) -> None:  # noqa: ANN001
    gate = threading.Event()
    srv = serve(lambda conn: gate.wait(10))
    exc, vt = open_fails_virtual(srv.path, timeout_ms=300)
    gate.set()
    assert exc.errno == errno.ETIME
    assert vt.elapsed_ns == 300_000_000  # exactly its own deadline, not the default's
    assert set(vt.deadlines) == {VirtualTime.START_NS + 300_000_000}


def test_open_wrong_protocol_major_is_refused(serve) -> None:  # noqa: ANN001
    def script(conn: socket.socket) -> None:
        msg_id, cmd, payload, _ = recv_msg(conn)
        assert P.VERSION_HDR.unpack_from(payload) == (P.PROTO_MAJOR, P.PROTO_MINOR)
        assert payload.endswith(b"\0")
        reply(conn, msg_id, cmd, version_reply(major=2))
        until_hangup(conn)

    exc = open_fails(serve(script).path)
    assert exc.errno == errno.EPROTO
    assert "major" in exc.strerror


def test_open_error_reply_keeps_the_daemon_errno(serve) -> None:  # noqa: ANN001
    def script(conn: socket.socket) -> None:
        msg_id, cmd, _, _ = recv_msg(conn)
        reply(conn, msg_id, cmd, version_reply())
        msg_id, cmd, _, _ = recv_msg(conn)
        reply(conn, msg_id, cmd, error=errno.EACCES)
        until_hangup(conn)

    exc = open_fails(serve(script).path)
    assert exc.errno == errno.EACCES
    assert "DEVICE_GET_INFO" in exc.strerror


# -- id-table match -----------------------------------------------------------------------

@pytest.mark.parametrize(("vendor", "device"), [(0x8086, None), (0x1022, 0x1234)])
def test_open_rejects_devices_outside_the_id_table(serve, vendor: int, device: int | None) -> None:  # noqa: ANN001
    npu = FakeNpu(vendor=vendor, device=device)
    exc = open_fails(serve(serve_npu(npu)).path)
    assert exc.errno == errno.ENODEV
    assert not npu.config_writes  # nothing enabled on a device we do not drive


def test_open_rejects_a_device_with_another_class(serve) -> None:  # noqa: ANN001
    npu = FakeNpu()
    npu.config[9:12] = (0x030000).to_bytes(3, "little")  # a display controller
    exc = open_fails(serve(serve_npu(npu)).path)
    assert exc.errno == errno.ENODEV


def test_open_rejects_missing_msix(serve) -> None:  # noqa: ANN001
    npu = FakeNpu()
    npu.config[0x40] = 0x10  # PCIe capability instead of MSI-X
    exc = open_fails(serve(serve_npu(npu)).path)
    assert exc.errno == errno.ENODEV
    assert "MSI-X" in exc.strerror


def test_open_rejects_a_bad_write_log(serve) -> None:  # noqa: ANN001
    npu = FakeNpu()
    struct.pack_into("<I", npu.ctrl, 0, 0xBAD)
    exc = open_fails(serve(serve_npu(npu)).path)
    assert exc.errno == errno.EPROTO
    assert "write log" in exc.strerror


@pytest.mark.parametrize("nfd", [P.WRITE_LOG_FDS - 1, P.WRITE_LOG_FDS_DOORBELL + 1])
def test_open_rejects_a_write_log_with_the_wrong_fd_count(serve, nfd: int) -> None:  # noqa: ANN001
    """ATTACH_WRITE_LOG answers with the ctrl page, kick and notify eventfds, and from
    protocol minor DOORBELL_MINOR on the doorbell eventfd: any other count is refused."""
    npu = FakeNpu()
    npu.write_log_fds = nfd
    exc = open_fails(serve(serve_npu(npu)).path)
    assert exc.errno == errno.EPROTO
    assert "ATTACH_WRITE_LOG" in exc.strerror or "fds" in exc.strerror


def test_open_rejects_a_bar_fd_shorter_than_its_region_used_to_sigbus(serve) -> None:  # noqa: ANN001
    """A BAR whose fd is smaller than GET_REGION_INFO's size would fault (SIGBUS) on the
    first read past the file end (here: the MSI-X table); it must be refused up front."""
    npu = FakeNpu()
    npu.bars[npu.chip.msix.bar].close()
    os.ftruncate(npu.bar_fds[npu.chip.msix.bar], 0)
    exc = open_fails(serve(serve_npu(npu)).path)
    assert exc.errno == errno.EPROTO
    assert f"BAR{npu.chip.msix.bar}" in exc.strerror


def test_open_rejects_a_short_write_log_page_used_to_sigbus(serve) -> None:  # noqa: ANN001
    npu = FakeNpu()
    npu.ctrl.close()
    os.ftruncate(npu.ctrl_fd, 0)
    exc = open_fails(serve(serve_npu(npu)).path)
    assert exc.errno == errno.EPROTO
    assert "write log" in exc.strerror


# -- the pipelined attach (docs/spec/protocol.md, "Pipelining") ----------------------------

def serve_region_batch(npu: FakeNpu, answer: Callable[[int, int, int], tuple[bytes, list[int]]]
                       ) -> Callable[[socket.socket], None]:
    """A device that answers no GET_REGION_INFO until it has all six: a shim that waited
    for each answer before asking the next would time out. ``answer(n, msg_id, idx)`` gives
    the n-th reply's payload and fds."""

    def script(conn: socket.socket) -> None:
        held: list[tuple[int, int]] = []
        while (msg := recv_msg(conn)) is not None:
            msg_id, cmd, payload, fds = msg
            if cmd != P.Cmd.GET_REGION_INFO:
                npu.handle(conn, *msg)
                continue
            held.append((msg_id, P.REGION_INFO.unpack(payload)[2]))
            if len(held) == 6:
                for n, (mid, idx) in enumerate(held):
                    body, rfds = answer(n, mid, idx)
                    reply(conn, mid, cmd, body, rfds)

    return script


def test_open_sends_every_region_info_before_reading_an_answer(serve) -> None:  # noqa: ANN001
    npu = FakeNpu()

    def answer(n: int, msg_id: int, idx: int) -> tuple[bytes, list[int]]:
        assert idx == n
        if idx in npu.bar_fds:
            return P.REGION_INFO.pack(32, 7, idx, 0, npu.chip.bars[idx].size, 0), [npu.bar_fds[idx]]
        return P.REGION_INFO.pack(32, 0, idx, 0, 0, 0), []

    with Shim.open(serve(serve_region_batch(npu, answer)).path, timeout_ms=2000) as s:
        assert s.info()["msix_vectors"] == npu.chip.msix.vectors


def test_open_sends_the_attach_batches_before_reading_an_answer(serve) -> None:  # noqa: ANN001
    """The attach is two round trips: VERSION, DEVICE_GET_INFO and the config read; after
    the id check, the enable, every query and the MSI-X enable, in the order of a
    one-at-a-time attach. The server answers a batch only once its last command is in: a
    shim that waited for an answer inside a batch would time out."""
    npu = FakeNpu()
    seen: list[int] = []

    def script(conn: socket.socket) -> None:
        held: list[tuple[int, int, bytes, list[int]]] = []
        while (msg := recv_msg(conn)) is not None:
            seen.append(msg[1])
            held.append(msg)
            if msg[1] == P.Cmd.REGION_READ or len(seen) >= 13:
                for m in held:
                    npu.handle(conn, *m)
                held.clear()

    with Shim.open(serve(script).path, timeout_ms=2000):
        pass
    assert seen[:3] == [P.Cmd.VERSION, P.Cmd.DEVICE_GET_INFO, P.Cmd.REGION_READ]
    assert seen[3:13] == [P.Cmd.REGION_WRITE, *[P.Cmd.GET_REGION_INFO] * 6,
                          P.Cmd.ATTACH_WRITE_LOG, P.Cmd.GET_IRQ_INFO, P.Cmd.REGION_WRITE]
    assert [off for off, _ in npu.config_writes][:2] == [4, 0x42]  # command, then MSI-X


def test_each_attach_batch_goes_out_in_one_send(serve) -> None:  # noqa: ANN001
    """Each batch of the attach is gathered and sent with one sendmsg when its first answer
    is awaited, so the daemon reads the whole batch at once and answers it in one step
    (docs/spec/protocol.md, "Pipelining"); the server still sees every command, in order."""
    npu = FakeNpu()
    seen: list[int] = []

    def script(conn: socket.socket) -> None:
        while (msg := recv_msg(conn)) is not None:
            seen.append(msg[1])
            npu.handle(conn, *msg)

    with Shim.open(serve(script).path, timeout_ms=2000) as s:
        assert s.info()["ctl_sends"] == 2
    assert seen[:13] == [P.Cmd.VERSION, P.Cmd.DEVICE_GET_INFO, P.Cmd.REGION_READ,
                         P.Cmd.REGION_WRITE, *[P.Cmd.GET_REGION_INFO] * 6,
                         P.Cmd.ATTACH_WRITE_LOG, P.Cmd.GET_IRQ_INFO, P.Cmd.REGION_WRITE]


def test_open_irq_count_short_of_the_msix_table_is_eproto(serve) -> None:  # noqa: ANN001
    """GET_IRQ_INFO is checked against the capability even though the MSI-X enable went out
    behind it in the same batch: fewer vectors than the table has fail the attach."""
    npu = FakeNpu()
    handle = npu.handle

    def short(conn: socket.socket, msg_id: int, cmd: int, payload: bytes, fds: list[int]) -> None:
        if cmd == P.Cmd.GET_IRQ_INFO:
            reply(conn, msg_id, cmd, P.IRQ_INFO.pack(16, 4, P.IRQ_MSIX, npu.chip.msix.vectors - 1))
            return
        handle(conn, msg_id, cmd, payload, fds)

    npu.handle = short  # type: ignore[method-assign]
    exc = open_fails(serve(serve_npu(npu)).path)
    assert exc.errno == errno.EPROTO
    assert "GET_IRQ_INFO" in exc.strerror


def test_open_region_info_answer_for_another_bar_is_eproto(serve) -> None:  # noqa: ANN001
    npu = FakeNpu()

    def answer(n: int, msg_id: int, idx: int) -> tuple[bytes, list[int]]:
        return P.REGION_INFO.pack(32, 0, 5 - idx, 0, 0, 0), []  # answers in reverse order

    exc = open_fails(serve(serve_region_batch(npu, answer)).path)
    assert exc.errno == errno.EPROTO
    assert "GET_REGION_INFO" in exc.strerror and "BAR0" in exc.strerror


def test_open_short_region_info_answer_is_eproto(serve) -> None:  # noqa: ANN001
    npu = FakeNpu()

    def answer(n: int, msg_id: int, idx: int) -> tuple[bytes, list[int]]:
        return P.REGION_INFO.pack(32, 0, idx, 0, 0, 0)[:16], []

    exc = open_fails(serve(serve_region_batch(npu, answer)).path)
    assert exc.errno == errno.EPROTO
    assert "GET_REGION_INFO" in exc.strerror


# -- a successful attach ------------------------------------------------------------------

@pytest.fixture
def attached(serve) -> Iterator[tuple[FakeNpu, Shim]]:  # noqa: ANN001
    npu = FakeNpu()
    srv = serve(serve_npu(npu))
    s = Shim.open(srv.path)
    try:
        yield npu, s
    finally:
        s.close()


def test_attach_enables_the_function_and_msix(attached) -> None:  # noqa: ANN001
    npu, s = attached
    chip = npu.chip
    cmd = struct.unpack_from("<H", npu.config, 4)[0]
    assert cmd & 0x6 == 0x6  # memory space + bus master
    msgctl = struct.unpack_from("<H", npu.config, 0x42)[0]
    assert msgctl & 0x8000 and not msgctl & 0x4000
    # Eventfds are installed per vector as the firmware names them (mgmt after FW alive, one
    # per context), so a client session can own its contexts' vectors: none at open...
    assert list(npu.irq_fds) == []
    # ...but every vector is unmasked in the table, as the driver's MSI-X setup does.
    unmask = [(b, o, v) for b, o, v in npu.log() if o >= chip.msix.table_offset]
    assert unmask == [(chip.msix.bar, chip.msix.table_offset + 16 * v + 12, 0)
                      for v in range(chip.msix.vectors)]
    # ...logged together behind one kick (docs/spec/protocol.md, "Pipelining")
    assert os.eventfd_read(npu.kick) == 1
    info = s.info()
    assert info["chip"] == "npu4" and info["state"] == "attached"
    assert info["bdf"] == "0000:c5:00.1" and info["pasid"] == 3
    assert (info["vendor"], info["device"], info["revision"]) == (0x1022, 0x17F0, 0x10)
    assert info["msix_vectors"] == chip.msix.vectors
    assert info["dpm_levels"] == len(chip.dpm_levels)
    assert info["vbnv"] == chip.vbnv


def test_readl_sees_bar_memory_and_plain_writes_are_not_logged(attached) -> None:  # noqa: ANN001
    npu, s = attached
    reg = npu.chip.reg("psp.arg1")  # rw register
    struct.pack_into("<I", npu.bars[reg.bar], reg.offset, 0xA5A5_1234)
    assert s.readl(reg.bar, reg.offset) == 0xA5A5_1234
    before = len(npu.log())
    s.writel(reg.bar, reg.offset, 7)
    assert struct.unpack_from("<I", npu.bars[reg.bar], reg.offset)[0] == 7
    assert len(npu.log()) == before


def test_trapped_writes_go_through_the_log_in_order(attached) -> None:  # noqa: ANN001
    npu, s = attached
    intr = npu.chip.reg("psp.intr")
    mb = npu.chip.mailbox
    mbar, mbase = npu.chip.dev_to_bar(mb.regs_base)
    os.eventfd_read(npu.kick)  # kicks from attach
    s.writel(intr.bar, intr.offset, 0)
    s.writel(intr.bar, intr.offset, 1)
    s.writel(mbar, mbase + 3 * mb.regs_stride + mb.X2I_TAIL, 0x40)  # channel 3 x2i tail
    s.writel(mbar, mbase + mb.X2I_HEAD, 0x40)  # firmware-owned: not trapped
    assert npu.log()[-3:] == [(intr.bar, intr.offset, 0), (intr.bar, intr.offset, 1),
                              (mbar, mbase + 3 * mb.regs_stride, 0x40)]
    assert os.eventfd_read(npu.kick) >= 3
    assert struct.unpack_from("<I", npu.bars[intr.bar], intr.offset)[0] == 1
    assert s.info()["trapped_writes"] == len(npu.log())


def test_no_kick_while_the_daemon_is_draining(attached) -> None:  # noqa: ANN001
    """docs/spec/protocol.md, "Suppressed kicks and notifies": the entry is logged either
    way, the kick only when the daemon's draining flag is clear."""
    npu, s = attached
    intr = npu.chip.reg("psp.intr")
    with contextlib.suppress(BlockingIOError):
        os.eventfd_read(npu.kick)
    saved = s.info()["kicks_saved"]
    struct.pack_into("<I", npu.ctrl, P.CTRL_OFF_DRAINING, 1)
    s.writel(intr.bar, intr.offset, 1)
    assert npu.log()[-1] == (intr.bar, intr.offset, 1)
    with pytest.raises(BlockingIOError):
        os.eventfd_read(npu.kick)
    assert s.info()["kicks_saved"] == saved + 1
    struct.pack_into("<I", npu.ctrl, P.CTRL_OFF_DRAINING, 0)
    s.writel(intr.bar, intr.offset, 0)
    assert os.eventfd_read(npu.kick) == 1
    assert s.info()["kicks_saved"] == saved + 1


def test_register_access_is_bounds_checked(attached) -> None:  # noqa: ANN001
    npu, s = attached
    size = npu.chip.bars[0].size
    for bar, off in [(0, size), (0, size - 2), (0, 2), (1, 0), (3, 0), (6, 0), (0, 0xFFFFFFFF)]:
        with pytest.raises(ShimError) as ei:
            s.readl(bar, off)
        assert ei.value.errno == errno.EINVAL
        with pytest.raises(ShimError):
            s.writel(bar, off, 1)
    assert s.readl(0, size - 4) == 0


def test_probe_needs_firmware_on_the_search_path(attached, tmp_path: Path) -> None:  # noqa: ANN001
    _, s = attached
    with pytest.raises(ShimError) as ei:
        s.probe(f"{tmp_path / 'a'}:{tmp_path / 'b'}")
    assert ei.value.errno == errno.ENOENT
    assert "17f0_10/npu.dev.sbin" in ei.value.strerror
    assert s.info()["state"] == "attached"


def test_mgmt_msg_before_probe_is_enodev(attached) -> None:  # noqa: ANN001
    _, s = attached
    with pytest.raises(ShimError) as ei:
        s.mgmt_msg(0x108, bytes(4), 20)
    assert ei.value.errno == errno.ENODEV


def test_lifecycle_calls_in_the_wrong_state(attached) -> None:  # noqa: ANN001
    _, s = attached
    with pytest.raises(ShimError) as ei:
        s.resume()
    assert ei.value.errno == errno.EINVAL
    with pytest.raises(ShimError):
        s.suspend()
    s.stop()  # nothing to stop: harmless
    with pytest.raises(ValueError):
        s.set_timeout("nope", 5)
    with pytest.raises(ShimError) as ei:
        s.set_timeout("psp", 0)
    assert ei.value.errno == errno.EINVAL
    s.set_timeout("psp", 50)


def test_close_twice_and_use_after_close(attached) -> None:  # noqa: ANN001
    _, s = attached
    s.close()
    s.close()
    assert s.closed
    for call in (lambda: s.readl(0, 0), lambda: s.info(), lambda: s.probe("/tmp"), s.stop):
        with pytest.raises(ShimError) as ei:
            call()
        assert ei.value.errno == errno.EBADF


def test_daemon_hangup_ends_waits_with_epipe(serve, tmp_path: Path) -> None:  # noqa: ANN001
    """A peer that goes away while the shim polls the SMU must not leave it hanging."""
    npu = FakeNpu()
    fw_dir = tmp_path / "fw"
    fw = fw_dir / npu.chip.fw_path
    fw.parent.mkdir(parents=True)
    fw.write_bytes(b"x" * 100)
    conn_box: list[socket.socket] = []

    def script(conn: socket.socket) -> None:
        conn_box.append(conn)
        while (msg := recv_msg(conn)) is not None:
            npu.handle(conn, *msg)
            if npu.config_writes and npu.config_writes[-1][0] == 0x42:  # MSI-X enable: attached
                break
        # attach done: wait for the SMU INTR kick, then hang up without answering
        while not any(o == npu.chip.reg("smu.intr").offset and b == npu.chip.reg("smu.intr").bar
                      for b, o, _ in npu.log()):
            time.sleep(0.01)

    srv = serve(script)
    s = Shim.open(srv.path)
    s.set_timeout("smu", 60_000)  # a wait that missed the hang-up would end ETIME, not EPIPE
    with pytest.raises(ShimError) as ei:
        s.probe(fw_dir)
    assert ei.value.errno == errno.EPIPE
    assert "hung up" in ei.value.strerror or "closed" in ei.value.strerror
    assert s.info()["state"] == "failed"
    s.close()


def test_smu_timeout_is_etime_and_leaves_state_failed(attached, tmp_path: Path) -> None:  # noqa: ANN001
    npu, s = attached
    fw = tmp_path / npu.chip.fw_path
    fw.parent.mkdir(parents=True)
    fw.write_bytes(b"x" * 100)
    s.set_timeout("smu", 100)
    with pytest.raises(ShimError) as ei:
        s.probe(tmp_path)
    assert ei.value.errno == errno.ETIME
    assert "smu" in ei.value.strerror
    assert "timed out after 100 ms" in ei.value.strerror  # its own timeout, not a default
    assert s.info()["state"] == "failed"


def test_smu_that_never_powered_on_is_not_unwound(attached, tmp_path: Path) -> None:  # noqa: ANN001
    """Used to send set_dpm(0) and POWER_OFF to an SMU whose POWER_OFF had just timed out
    (three timeouts instead of one); the driver does not unwind an SMU it never started."""
    npu, s = attached
    fw = tmp_path / npu.chip.fw_path
    fw.parent.mkdir(parents=True)
    fw.write_bytes(b"x" * 100)
    s.set_timeout("smu", 100)
    intr = npu.chip.reg("smu.intr")
    with pytest.raises(ShimError) as ei:
        s.probe(tmp_path)
    assert ei.value.errno == errno.ETIME
    kicks = [v for b, o, v in npu.log() if (b, o) == (intr.bar, intr.offset)]
    assert kicks == [0, 1]  # POWER_OFF only
