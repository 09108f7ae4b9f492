"""A raw Python client of the control socket: ``xdna-emu status``, protocol tests, fuzzing.

It speaks exactly docs/spec/protocol.md with struct-packed messages and SCM_RIGHTS, the way
libvfio-user's Python tests drive their server, so the daemon is tested without the C shim.
"""

from __future__ import annotations

import errno
import json
import mmap
import os
import socket
import struct
from pathlib import Path
from typing import Any

from . import protocol as P


def dma_memfd(size: int, name: str = "xdna-dma") -> int:
    """Client memory the daemon accepts for DMA_MAP: a memfd sealed against shrinking."""
    import fcntl

    fd = os.memfd_create(name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    os.ftruncate(fd, size)
    fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK)
    return fd


class ControlError(OSError):
    """The daemon answered a command with an error reply."""


class ControlClient:
    def __init__(self, path: str | Path, timeout: float = 5.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(str(path))
        self.msg_id = 0
        self.caps: dict[str, Any] = {}
        self.ctrl: mmap.mmap | None = None
        self._w64: memoryview | None = None
        self.kick_fd = self.notify_fd = -1

    # -- framing ----------------------------------------------------------------------
    def send(self, cmd: int, payload: bytes = b"", fds: list[int] | None = None,
             flags: int = P.TYPE_COMMAND) -> int:
        self.msg_id = (self.msg_id + 1) & 0xFFFF
        anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack(f"{len(fds)}i", *fds))] if fds else []
        self.sock.sendmsg([P.pack(self.msg_id, cmd, payload, flags)], anc)
        return self.msg_id

    def recv(self) -> tuple[int, int, bytes, list[int]]:
        """One reply: (command, error, payload, fds). Raises EOFError when the daemon hung up."""
        buf = b""
        fds: list[int] = []
        need = P.HEADER.size
        while len(buf) < need:
            data, anc, _, _ = self.sock.recvmsg(need - len(buf), socket.CMSG_SPACE(4 * P.MAX_MSG_FDS))
            for level, typ, cdata in anc:
                if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
                    fds += struct.unpack(f"{len(cdata) // 4}i", cdata[: len(cdata) // 4 * 4])
            if not data:
                raise EOFError("daemon closed the connection")
            buf += data
            if len(buf) >= P.HEADER.size:
                need = P.HEADER.unpack_from(buf)[2]
        _, cmd, _, flags, err = P.HEADER.unpack_from(buf)
        return cmd, (err if flags & P.FLAG_ERROR else 0), buf[P.HEADER.size :], fds

    def call(self, cmd: int, payload: bytes = b"", fds: list[int] | None = None) -> tuple[bytes, list[int]]:
        self.send(cmd, payload, fds)
        rcmd, err, body, rfds = self.recv()
        if rcmd != cmd:
            raise AssertionError(f"reply to {rcmd:#x}, expected {cmd:#x}")
        if err:
            name = P.Cmd(cmd).name if cmd in P.Cmd._value2member_map_ else f"{cmd:#x}"
            raise ControlError(err, f"{name}: {os.strerror(err)}")
        return body, rfds

    # -- commands ---------------------------------------------------------------------
    def version(self, major: int = P.PROTO_MAJOR, minor: int = P.PROTO_MINOR) -> dict[str, Any]:
        body, _ = self.call(P.Cmd.VERSION, P.VERSION_HDR.pack(major, minor) + b"{}\0")
        self.caps = json.loads(body[P.VERSION_HDR.size :].rstrip(b"\0"))
        return self.caps

    def region_info(self, index: int) -> tuple[int, int, int | None]:
        body, fds = self.call(P.Cmd.GET_REGION_INFO, P.REGION_INFO.pack(P.REGION_INFO.size, 0, index, 0, 0, 0))
        _, flags, _, _, size, _ = P.REGION_INFO.unpack(body)
        return flags, size, (fds[0] if fds else None)

    def status(self) -> dict[str, Any]:
        """The daemon's status (sessions, counters, device model state) as a dict."""
        body, _ = self.call(P.Cmd.DEVICE_STATUS)
        return json.loads(body)

    def config_read(self, offset: int, count: int) -> bytes:
        body, _ = self.call(P.Cmd.REGION_READ, P.REGION_ACCESS.pack(offset, P.REGION_CONFIG, count))
        return body[P.REGION_ACCESS.size :]

    def config_write(self, offset: int, data: bytes) -> None:
        self.call(P.Cmd.REGION_WRITE, P.REGION_ACCESS.pack(offset, P.REGION_CONFIG, len(data)) + data)

    def bar_write(self, bar: int, offset: int, value: int) -> None:
        self.call(P.Cmd.REGION_WRITE, P.REGION_ACCESS.pack(offset, bar, 4) + struct.pack("<I", value))

    def enable_bus_master(self) -> None:
        cmd = int.from_bytes(self.config_read(4, 2), "little")
        self.config_write(4, (cmd | 0x6).to_bytes(2, "little"))

    def attach_write_log(self) -> None:
        _, fds = self.call(P.Cmd.ATTACH_WRITE_LOG)
        ctrl_fd, self.kick_fd, self.notify_fd, *bell = fds
        for fd in bell:  # the doorbell eventfd (protocol 1.2): this client kicks every write
            os.close(fd)
        self.ctrl = mmap.mmap(ctrl_fd, P.CTRL_SIZE)
        os.close(ctrl_fd)
        self._w64 = P.ctrl_words(self.ctrl)[1]  # HEAD is one store: the daemon reads it meanwhile

    def log_write(self, bar: int, offset: int, value: int) -> None:
        """Append one trapped write to the log and kick, as the shim does."""
        assert self.ctrl is not None
        w64 = self._w64
        assert w64 is not None
        head = w64[P.CTRL_OFF_HEAD >> 3]
        slot = P.CTRL_OFF_ENTRY0 + (head % P.LOG_ENTRIES) * P.LOG_ENTRY.size
        P.LOG_ENTRY.pack_into(self.ctrl, slot, bar, offset, value, 0)
        w64[P.CTRL_OFF_HEAD >> 3] = head + 1
        os.eventfd_write(self.kick_fd, 1)

    def wait_applied(self, timeout: float = 5.0) -> None:
        """Block on notify until the daemon has applied everything logged so far."""
        import select

        assert self.ctrl is not None
        while True:
            head, tail = struct.unpack_from("<QQ", self.ctrl, P.CTRL_OFF_HEAD)
            if tail >= head:
                return
            r, _, _ = select.select([self.notify_fd], [], [], timeout)
            if not r:
                raise TimeoutError(errno.ETIME, "write log not drained")
            os.eventfd_read(self.notify_fd)

    def close(self) -> None:
        if self.ctrl is not None:
            if self._w64 is not None:
                self._w64.release()
                self._w64 = None
            self.ctrl.close()
            self.ctrl = None
        for fd in (self.kick_fd, self.notify_fd):
            if fd >= 0:
                os.close(fd)
        self.kick_fd = self.notify_fd = -1
        self.sock.close()

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
