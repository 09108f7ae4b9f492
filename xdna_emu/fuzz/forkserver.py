"""A fork server: run each example in a child forked from one brought-up process.

Deterministic in-process mode keeps the daemon, the device and the real C shim in one
process, so a process *is* a snapshot of all three, the C shim's memory included (which
nothing else can save: docs/spec/fuzzing.md §9). :class:`ForkServer` takes that snapshot
after a bring-up and runs every example in a fork of it; the parent never runs an example,
so its state stays the snapshot.

Copy-on-write covers the process's private memory only. What the parent and a child would
still share is made private in the child before the example runs, at the same addresses
and fd numbers, so every object holding an address or an fd keeps working (``_privatize``):

- memfds (BARs, the control page, firmware and DMA buffers): a new memfd with the same
  bytes, seals and file positions, mapped ``MAP_FIXED`` over every shared mapping of the old one and ``dup2``-ed onto
  every fd naming it;
- eventfds (write-log kicks, MSI-X vectors): a new one with the same counter and flags;
- connected UNIX sockets with both ends in the process (the shim and the daemon's session):
  a new socket pair;
- epoll sets: a new one with the same interest list (fd, events, 64-bit data), built last so
  it refers to the new objects.

A listening socket stays shared: its path is in the file system, which a fork cannot make
private, so a fork's connections queue on the parent's socket and the fork accepts them
itself; after each fork the parent drops what a fork left pending there (``_drain``).

The plan is read once, when the server is made, from ``/proc/self`` (fdinfo gives eventfd
counters and epoll interest lists; ``sock_diag`` gives a UNIX socket's peer). Other fds
(terminals, pipes, files) stay shared, as after any fork. The process must be
single-threaded when the server is made and at each fork: no Python thread but the main
one, and no doorbell thread of the daemon's C job path (a C thread ``threading`` cannot
see; the datapath module counts them). Threads the fork needs no copy of (faulthandler's
watchdog, a BLAS library's idle workers) are not counted, which is why the check does not
count ``/proc/self/task``.
"""

from __future__ import annotations

import ctypes
import fcntl
import gc
import os
import pickle
import select
import signal
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..datapath import threads_running

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                       ctypes.c_int, ctypes.c_long]
_libc.eventfd.argtypes = [ctypes.c_uint, ctypes.c_int]
_libc.epoll_create1.argtypes = [ctypes.c_int]
_libc.epoll_ctl.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_void_p]
MAP_SHARED, MAP_FIXED = 0x01, 0x10
PROT = {"r": 0x1, "w": 0x2, "x": 0x4}
EFD_SEMAPHORE, EFD_NONBLOCK, EFD_CLOEXEC = 0x1, os.O_NONBLOCK, os.O_CLOEXEC
EPOLL_CTL_ADD = 1
#: sock_diag (linux/sock_diag.h, linux/unix_diag.h)
NETLINK_SOCK_DIAG, SOCK_DIAG_BY_FAMILY, UDIAG_SHOW_PEER, UNIX_DIAG_PEER = 4, 20, 0x4, 2
NLM_F_REQUEST, NLM_F_DUMP, NLMSG_DONE, NLMSG_ERROR = 0x1, 0x300, 3, 2
TCP_LISTEN = 10


class _EpollEvent(ctypes.Structure):
    _pack_ = 1  # x86-64 packs struct epoll_event
    _fields_ = [("events", ctypes.c_uint32), ("data", ctypes.c_uint64)]


class ForkError(OSError):
    """The process cannot be served by forks (threads running, an fd it cannot copy)."""


def _check(ret: int, what: str) -> int:
    if ret == -1 or ret is None:
        e = ctypes.get_errno()
        raise OSError(e, f"{what}: {os.strerror(e)}")
    return ret


def _fdinfo(fd: int) -> dict[str, str]:
    out: dict[str, str] = {}
    with open(f"/proc/self/fdinfo/{fd}") as f:
        for line in f:
            k, _, v = line.partition(":")
            out.setdefault(k.strip(), v.strip())
    return out


def _epoll_items(fd: int) -> list[tuple[int, int, int]]:
    """(fd, events, data) of each entry of epoll ``fd``'s interest list."""
    items = []
    with open(f"/proc/self/fdinfo/{fd}") as f:
        for line in f:
            if line.startswith("tfd:"):
                t = line.split()
                items.append((int(t[1]), int(t[3], 16), int(t[5], 16)))
    return items


def _unix_sockets() -> dict[int, tuple[int, int]]:
    """inode -> (peer inode or 0, state) of every UNIX socket on the host (sock_diag)."""
    nl = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_SOCK_DIAG)
    try:
        req = struct.pack("=BBHIIIII", socket.AF_UNIX, 0, 0, 0xFFFFFFFF, 0, UDIAG_SHOW_PEER, 0, 0)
        nl.send(struct.pack("=IHHII", 16 + len(req), SOCK_DIAG_BY_FAMILY,
                            NLM_F_REQUEST | NLM_F_DUMP, 1, 0) + req)
        out: dict[int, tuple[int, int]] = {}
        while True:
            buf = nl.recv(1 << 16)
            off = 0
            while off + 16 <= len(buf):
                ln, typ = struct.unpack_from("=IH", buf, off)
                if typ == NLMSG_DONE:
                    return out
                if typ == NLMSG_ERROR:
                    raise ForkError("sock_diag refused the dump")
                _fam, _typ, state, _pad, ino = struct.unpack_from("=BBBBI", buf, off + 16)
                peer, a = 0, off + 16 + 16
                while a + 4 <= off + ln:
                    alen, atype = struct.unpack_from("=HH", buf, a)
                    if atype == UNIX_DIAG_PEER:
                        peer = struct.unpack_from("=I", buf, a + 4)[0]
                    a += (alen + 3) & ~3
                out[ino] = (peer, state)
                off += (ln + 3) & ~3
    finally:
        nl.close()


@dataclass
class _Memfd:
    name: str
    size: int
    seals: int = 0  # F_GET_SEALS (the daemon refuses DMA memory not sealed against shrinking)
    fds: list[tuple[int, bool, int]] = field(default_factory=list)  # (fd, cloexec, position)
    maps: list[tuple[int, int, int, int]] = field(default_factory=list)  # start, len, prot, off


@dataclass
class _Plan:
    memfds: dict[int, _Memfd] = field(default_factory=dict)  # by inode
    eventfds: dict[str, tuple[int, int, list[int]]] = field(default_factory=dict)  # id -> count, flags, fds
    pairs: list[tuple[int, int, int, int, int]] = field(default_factory=list)  # fd a, fd b, type, fl a, fl b
    listeners: list[int] = field(default_factory=list)  # fds
    epolls: list[tuple[int, int, list[tuple[int, int, int]]]] = field(default_factory=list)


def _scan() -> _Plan:
    """What the process shares with a fork of it, and how to make each one private."""
    plan = _Plan()
    socks: dict[int, tuple[int, int]] = {}  # inode -> (fd, file flags)
    for name in sorted(os.listdir("/proc/self/fd"), key=int):
        fd = int(name)
        try:
            link = os.readlink(f"/proc/self/fd/{fd}")
            info = _fdinfo(fd)
        except OSError:
            continue  # the listing's own fd
        flags = int(info.get("flags", "0"), 8)
        if link.startswith("/memfd:"):
            st = os.fstat(fd)
            m = plan.memfds.setdefault(st.st_ino, _Memfd(link[7:].removesuffix(" (deleted)"), st.st_size,
                                                         fcntl.fcntl(fd, fcntl.F_GET_SEALS)))
            m.fds.append((fd, bool(flags & os.O_CLOEXEC), int(info.get("pos", "0"))))
        elif link == "anon_inode:[eventfd]":
            sem = int(info.get("eventfd-semaphore", "0"))
            key = info.get("eventfd-id", f"fd{fd}")
            count = int(info["eventfd-count"], 16)  # printed in hex
            ev = plan.eventfds.setdefault(key, (count, (flags & (EFD_NONBLOCK | EFD_CLOEXEC))
                                                | (EFD_SEMAPHORE if sem else 0), []))
            ev[2].append(fd)
        elif link == "anon_inode:[eventpoll]":
            plan.epolls.append((fd, flags & os.O_CLOEXEC, _epoll_items(fd)))
        elif link.startswith("socket:["):
            s = socket.socket(fileno=os.dup(fd))
            try:
                if s.family == socket.AF_UNIX and s.type in (socket.SOCK_STREAM, socket.SOCK_SEQPACKET):
                    socks[int(link[8:-1])] = (fd, flags)
            finally:
                s.close()
    if socks:
        diag = _unix_sockets()
        for ino, (fd, flags) in sorted(socks.items()):
            peer, state = diag.get(ino, (0, 0))
            if state == TCP_LISTEN:
                plan.listeners.append(fd)
            elif peer in socks and ino < peer:
                s = socket.socket(fileno=os.dup(fd))
                typ = s.type
                s.close()
                plan.pairs.append((fd, socks[peer][0], typ, flags, socks[peer][1]))
    with open("/proc/self/maps") as f:
        for line in f:
            t = line.split()
            if len(t) < 6 or t[1][3] != "s" or not t[5].startswith("/memfd:"):
                continue
            ino = int(t[4])
            if ino not in plan.memfds:
                st_name = " ".join(t[5:]).removesuffix(" (deleted)")[7:]
                plan.memfds[ino] = _Memfd(st_name, 0)
            a, b = (int(x, 16) for x in t[0].split("-"))
            prot = sum(PROT[c] for c in t[1][:3] if c in PROT)
            plan.memfds[ino].maps.append((a, b - a, prot, int(t[2], 16)))
    for m in plan.memfds.values():
        if not m.fds and m.maps:  # mapped, its fd closed: read it through the mapping
            m.size = max(off + ln for _, ln, _, off in m.maps)
    return plan


def _copy_data(src: int, dst: int, size: int) -> None:
    """The data extents of memfd ``src`` into ``dst``: a heap is a sparse 512 MiB file, and
    copying its holes would take longer than the example. A description of its own (the
    fd's is shared with the parent) walks the extents."""
    rd = os.open(f"/proc/self/fd/{src}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        off = 0
        while off < size:
            try:
                start = os.lseek(rd, off, os.SEEK_DATA)
            except OSError:  # ENXIO: no data past off
                return
            end = min(os.lseek(rd, start, os.SEEK_HOLE), size)
            while start < end:
                n = os.copy_file_range(rd, dst, end - start, start, start)
                if n <= 0:
                    raise ForkError(f"copy_file_range stopped at {start:#x}")
                start += n
            off = end
    finally:
        os.close(rd)


def _privatize(plan: _Plan) -> None:
    """In the child: every object of the plan replaced by a private copy (module docstring)."""
    for m in plan.memfds.values():
        new = os.memfd_create(m.name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        os.ftruncate(new, m.size)
        if m.fds:
            _copy_data(m.fds[0][0], new, m.size)
        else:  # copy from the live mapping, which covers what anyone can reach
            for start, ln, _prot, off in m.maps:
                os.pwrite(new, ctypes.string_at(start, ln), off)
        for start, ln, prot, off in m.maps:
            _check(_libc.mmap(start, ln, prot, MAP_SHARED | MAP_FIXED, new, off), "mmap")
        if m.seals:
            fcntl.fcntl(new, fcntl.F_ADD_SEALS, m.seals)
        for fd, cloexec, pos in m.fds:
            os.dup2(new, fd, inheritable=not cloexec)
            os.lseek(fd, pos, os.SEEK_SET)
        os.close(new)
    for count, flags, fds in plan.eventfds.values():
        new = _check(_libc.eventfd(count, flags), "eventfd")
        for fd in fds:
            os.dup2(new, fd, inheritable=not flags & EFD_CLOEXEC)
        os.close(new)
    for a, b, typ, fla, flb in plan.pairs:
        sa, sb = socket.socketpair(socket.AF_UNIX, typ)
        for s, fd, fl in ((sa, a, fla), (sb, b, flb)):
            os.dup2(s.fileno(), fd, inheritable=not fl & os.O_CLOEXEC)
            os.set_blocking(fd, not fl & os.O_NONBLOCK)
            s.close()
    for fd, cloexec, items in plan.epolls:
        new = _check(_libc.epoll_create1(os.O_CLOEXEC if cloexec else 0), "epoll_create1")
        for tfd, events, data in items:
            ev = _EpollEvent(events, data)
            _check(_libc.epoll_ctl(new, EPOLL_CTL_ADD, tfd, ctypes.byref(ev)), "epoll_ctl")
        os.dup2(new, fd, inheritable=not cloexec)
        os.close(new)


def _drain(listeners: list[int]) -> None:
    """In the parent, after a fork: close the connections a fork left pending on a shared
    listening socket (one it made and never accepted), so the next fork starts clean."""
    while listeners:
        ready, _, _ = select.select(listeners, [], [], 0)
        if not ready:
            return
        for fd in ready:
            s = socket.socket(fileno=os.dup(fd))
            try:
                conn, _ = s.accept()
                conn.close()
            finally:
                s.close()


@dataclass
class Outcome:
    """What one forked run gave: its value, or how the child ended without one."""

    value: Any = None
    ok: bool = True
    died: str = ""  # "signal SIGSEGV", "exit 3", "timed out after 60 s", "raised ..."


def _threaded() -> str:
    """The threads a fork would lose (module docstring), named; empty when there are none."""
    py, c = threading.active_count() - 1, threads_running()
    return ", ".join(s for s in (f"{py} Python thread(s)" if py else "",
                                 f"{c} doorbell thread(s)" if c else "") if s)


class ForkServer:
    """Runs functions in forks of this process as it is now (module docstring)."""

    def __init__(self) -> None:
        if threads := _threaded():
            raise ForkError(f"a fork server needs a single-threaded process ({threads})")
        self.plan = _scan()
        self.forks = 0
        self._exiting: list[int] = []  # forks that answered and are being torn down

    def _reap(self, block: bool = False) -> None:
        for pid in list(self._exiting):
            if os.waitpid(pid, 0 if block else os.WNOHANG)[0]:
                self._exiting.remove(pid)

    def close(self) -> None:
        """Wait for the forks still exiting."""
        self._reap(block=True)

    @staticmethod
    def available() -> bool:
        """Linux with memfd, sock_diag and the fdinfo fields the plan reads."""
        return (hasattr(os, "fork") and hasattr(os, "memfd_create")
                and os.path.isdir("/proc/self/fdinfo"))

    def run(self, fn: Callable[[], Any], timeout_s: float) -> Outcome:
        """``fn()`` in a fork; its return value comes back pickled. The child that does not
        answer within ``timeout_s`` of wall time is killed."""
        if threads := _threaded():
            raise ForkError(f"a thread started after the fork server was made ({threads})")
        self._reap()
        rfd, wfd = os.pipe()
        gc.freeze()  # the child's collections never touch (so never copy) the parent's objects
        pid = os.fork()
        if pid == 0:  # the child: never returns
            code = 0
            try:
                os.close(rfd)
                gc.disable()
                signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
                _privatize(self.plan)
                try:
                    out = (True, fn())
                except BaseException as e:  # noqa: BLE001 - reported to the parent
                    out = (False, f"raised {e!r}")
                data = pickle.dumps(out)
                view = memoryview(data)
                while view:
                    view = view[os.write(wfd, view):]
                os.close(wfd)  # the parent goes on while this process is torn down
            except BaseException:  # noqa: BLE001 - no way to report: the exit code says it
                code = 3
            os._exit(code)
        self.forks += 1
        os.close(wfd)
        chunks, deadline, timed_out = [], time.monotonic() + timeout_s, False
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    timed_out = True
                    break
                r, _, _ = select.select([rfd], [], [], left)
                if not r:
                    continue
                chunk = os.read(rfd, 1 << 16)
                if not chunk:
                    break
                chunks.append(chunk)
        finally:
            os.close(rfd)
            if timed_out:
                os.kill(pid, signal.SIGKILL)
            if chunks and not timed_out:  # it answered: reaped later, while we go on
                self._exiting.append(pid)
            else:
                _, status = os.waitpid(pid, 0)
            _drain(self.plan.listeners)
        if timed_out:
            return Outcome(ok=False, died=f"timed out after {timeout_s:g} s")
        if chunks:
            ok, value = pickle.loads(b"".join(chunks))
            return Outcome(value=value) if ok else Outcome(ok=False, died=value)
        if os.WIFSIGNALED(status):
            return Outcome(ok=False, died=f"signal {signal.Signals(os.WTERMSIG(status)).name}")
        return Outcome(ok=False, died=f"exit {os.waitstatus_to_exitcode(status)}")
