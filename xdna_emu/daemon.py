"""The emulator daemon: one emulated NPU behind a control socket.

The daemon is the transport only: the socket server, client sessions and their fds, the
write logs and the MSI-X eventfds. All device behaviour is the
:class:`~xdna_emu.pci.function.PciFunction` it serves (docs/spec/device.md), built on
sealed memfds for BARs and eventfd wires for MSI-X.

Single-threaded and event-driven (selectors): the listening socket, each client socket,
each session's write-log kick eventfd, a signal wake-up pipe and the device's own timers
are the only event sources. BAR memory is shared files mapped by both sides, so register
reads never reach this process; only trapped writes (via the write log) and control
messages do. See docs/spec/protocol.md.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import mmap
import os
import platform
import selectors
import shutil
import signal
import socket
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import protocol as P
from .chips import Chip, load_chip
from .clock import Clock
from .datapath import DataPath
from .device import NpuDevice
from .iommu import DMA_READ, DMA_WRITE, IommuFault
from .irq import EventfdWires
from .pci.function import PciFunction
from .rundir import pid_alive, prepare_runtime_dir

if TYPE_CHECKING:
    from .sysfs import ConfigFile

log = logging.getLogger("xdna_emu.daemon")

DEFAULT_BDFS = [f"0000:{bus:02x}:00.1" for bus in range(0xC5, 0x100)]
SO_PEERCRED_FMT = struct.Struct("3i")
BACKLOG_POLL_S = 0.0002
#: How long a reply may wait for room in a client's socket before the client is dropped
#: (a client that stops reading must not stall the device for everyone).
SEND_TIMEOUT_S = 2.0
_WAKES_POLLING = struct.Struct("<II")  # the client's irq_wakes and polling words, adjacent
assert P.CTRL_OFF_POLLING == P.CTRL_OFF_IRQ_WAKES + 4
#: The ``draining`` flag lets a client skip its kick (docs/spec/protocol.md, "Suppressed kicks
#: and notifies"). Clearing it and re-reading head needs a full barrier in between: here the
#: kick eventfd read, a locked read-modify-write in the kernel, which is one on x86-64 only.
#: Elsewhere the flag stays 0 and every write is kicked.
DRAIN_FLAG = platform.machine() in ("x86_64", "AMD64")
#: Spin-then-block (docs/spec/protocol.md): while a client spins on a ring (TURBO), or did
#: within POLL_RECENT_NS, the daemon looks at the write logs for up to SPIN_NS after each
#: step before it sleeps, so the next command needs no wake-up.
SPIN_NS = 100_000
POLL_RECENT_NS = 2_000_000
#: A notify to a session that polls waits while the daemon spins (its spinning thread sees
#: its answer on the ring; the monitor thread needs no wake-up for it), at most this long.
NOTIFY_DEFER_NS = 1_000_000


#: Control commands that change no device state: no publish or notify follows them (a
#: client opening a device asks a dozen of these in a row, docs/spec/protocol.md).
_LOOKS_ONLY = frozenset({P.Cmd.VERSION, P.Cmd.DEVICE_GET_INFO, P.Cmd.GET_REGION_INFO,
                         P.Cmd.GET_IRQ_INFO, P.Cmd.REGION_READ, P.Cmd.DEVICE_STATUS})


class DaemonError(RuntimeError):
    """The daemon cannot start (bad runtime dir, BDF in use...)."""


def sealed_memfd(name: str, size: int) -> int:
    """A memfd of fixed ``size`` that nobody can shrink or grow any more."""
    fd = os.memfd_create(name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    os.ftruncate(fd, size)
    fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL)
    return fd


def require_shrink_seal(fd: int) -> None:
    """DMA memory must be a memfd sealed against shrinking, or a client could truncate it
    under a live mapping and crash the daemon with SIGBUS on the next device access."""
    try:
        seals = fcntl.fcntl(fd, fcntl.F_GET_SEALS)
    except OSError:
        seals = 0
    if not seals & fcntl.F_SEAL_SHRINK:
        raise OSError(errno.EINVAL, "DMA memory must be a memfd sealed with F_SEAL_SHRINK")


def claim_bdf(runtime_dir: Path, bdf: str | None) -> tuple[str, Path]:
    """Atomically claim ``<runtime_dir>/<bdf>``; reclaim directories of dead daemons."""
    candidates = [bdf] if bdf else DEFAULT_BDFS
    for cand in candidates:
        d = runtime_dir / cand
        for _ in range(2):
            try:
                d.mkdir(mode=0o700)
                return cand, d
            except FileExistsError:
                if not _stale(d):
                    break
                shutil.rmtree(d, ignore_errors=True)
    if bdf:
        raise DaemonError(f"BDF {bdf} is already served by a running daemon in {runtime_dir}")
    raise DaemonError(f"no free BDF left in {runtime_dir}")


_IN_CLOSE_WRITE = 0x8
_IN_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len; then the name


def inotify_watch(directory: Path) -> int:
    """A non-blocking inotify fd watching ``directory`` for files closed after writing."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
    if fd < 0 or libc.inotify_add_watch(fd, str(directory).encode(), _IN_CLOSE_WRITE) < 0:
        err = ctypes.get_errno()
        if fd >= 0:
            os.close(fd)
        raise OSError(err, f"inotify on {directory}")
    return fd


def inotify_closed_writes(fd: int, name: str) -> bool:
    """Drain the inotify fd; True when file ``name`` was among those written."""
    hit = False
    while True:
        try:
            buf = os.read(fd, 4096)
        except BlockingIOError:
            return hit
        off = 0
        while off + _IN_EVENT.size <= len(buf):
            _, mask, _, ln = _IN_EVENT.unpack_from(buf, off)
            got = buf[off + _IN_EVENT.size : off + _IN_EVENT.size + ln].rstrip(b"\0").decode()
            hit |= bool(mask & _IN_CLOSE_WRITE) and got == name
            off += _IN_EVENT.size + ln


def vf_bdf(pf_bdf: str, index: int) -> str:
    """VF ``index``'s BDF: the PF's routing id + First VF Offset (1) + index x VF Stride (1)."""
    dom, bus, devfn = pf_bdf.split(":")
    dev, fn = devfn.split(".")
    rid = (int(bus, 16) << 8 | int(dev, 16) << 3 | int(fn, 16)) + 1 + index
    return f"{dom}:{rid >> 8:02x}:{(rid >> 3) & 0x1F:02x}.{rid & 7}"


def _stale(d: Path) -> bool:
    try:
        rec = json.loads((d / "ready.json").read_text())
        return not pid_alive(int(rec["pid"]))
    except FileNotFoundError:
        # A daemon between mkdir and ready, or a crashed one: trust the pid file if any.
        try:
            return not pid_alive(int((d / "pid").read_text()))
        except (OSError, ValueError):
            return True
    except (OSError, ValueError, KeyError, TypeError):
        return True


def _rss_kib() -> int:
    """Resident memory of this process, for leak checks."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


_PMF_BODY = struct.Struct(f"<I{P.CTRL_PMF_COLUMNS}H")
_PMF_END = P.CTRL_OFF_PMF_POWER + _PMF_BODY.size


def pmf_body(m: Any) -> bytes:
    """One sample of the platform firmware's metrics (an ``NpuMetrics``) as the ctrl page
    holds it: power, then the busy % of each column."""
    busy = m.busy[: P.CTRL_PMF_COLUMNS]
    return _PMF_BODY.pack(m.power_mw, *busy, *(0,) * (P.CTRL_PMF_COLUMNS - len(busy)))


_PMF_WORDS = slice(P.CTRL_OFF_PMF_POWER >> 2, _PMF_END >> 2)


def _publish_pmf(w: memoryview, body: bytes) -> None:
    """The platform firmware's metrics into one session's ctrl page (protocol.py: SEQ odd
    while written, so a reader retries a torn read); unchanged metrics are not rewritten."""
    if w[_PMF_WORDS].tobytes() == body:
        return
    seq = w[P.CTRL_OFF_PMF_SEQ >> 2]
    w[P.CTRL_OFF_PMF_SEQ >> 2] = (seq | 1) & 0xFFFFFFFF
    w[_PMF_WORDS] = memoryview(body).cast("I")
    w[P.CTRL_OFF_PMF_SEQ >> 2] = ((seq | 1) + 1) & 0xFFFFFFFF


def store_words(w: memoryview, rq_asks: int, gen: int, boots: int, pmf: bytes | None,
                client: tuple[int, int, int] | None = None,
                foreign: tuple[int, int, int, int] | None = None) -> None:
    """The one writer of the words the daemon stores into a session's ctrl page
    (docs/spec/protocol.md, the ctrl page table), given as its ``ctrl_words`` 32-bit
    view: every publish path computes its values and hands them here, so no path can leave
    a word out, and each word is one store. ``client`` (DPM level now, the driver's
    pm_down and drv_stops) is for client sessions, ``foreign`` (contexts, DPM want,
    runtime-PM asks, proxied messages served) for the driver's."""
    w[P.CTRL_OFF_RQ_ASKS >> 2] = rq_asks & 0xFFFFFFFF
    w[P.CTRL_OFF_CTX_GEN >> 2] = gen
    w[P.CTRL_OFF_FW_BOOTS >> 2] = boots
    if client is not None:
        w[P.CTRL_OFF_DPM_NOW >> 2] = client[0]
        w[P.CTRL_OFF_PM_DOWN >> 2] = client[1]
        w[P.CTRL_OFF_DRV_STOPS >> 2] = client[2]
    if foreign is not None:
        w[P.CTRL_OFF_FOREIGN_CTX >> 2] = foreign[0]
        w[P.CTRL_OFF_FOREIGN_DPM >> 2] = foreign[1]
        w[P.CTRL_OFF_PM_ASKS >> 2] = foreign[2] & 0xFFFFFFFF
        w[P.CTRL_OFF_CLIENT_OPS >> 2] = foreign[3] & 0xFFFFFFFF
    if pmf is not None:
        _publish_pmf(w, pmf)


class Connection:
    """One control-socket connection: a driver or client session (docs/spec/protocol.md,
    Session lifetime) with its socket, write log, PASID and what it owns."""

    def __init__(self, daemon: Daemon, sock: socket.socket, sid: int) -> None:
        self.daemon = daemon
        self.sock = sock
        self.id = sid
        self.pasid = sid  # each client process gets its own SVA address space
        self.rx = bytearray()
        self.fds: list[int] = []
        self.versioned = False
        self.ctrl: mmap.mmap | None = None
        #: the ctrl page's words, for every load and store another process may race
        #: (:func:`protocol.ctrl_words`)
        self.w32: memoryview | None = None
        self.w64: memoryview | None = None
        self.ctrl_fd = -1
        #: The runqueue asks made before this session came (docs/spec/jobs.md §3a): its
        #: ``RQ_ASKS`` counts only those after, so it owes nothing for older ones.
        self.rq_base = 0
        #: ... and the runtime-PM asks made before it (docs/spec/jobs.md §1), likewise
        self.pm_base = 0
        #: ... and the client sessions' proxied messages served before it (CLIENT_OPS)
        self.ops_base = 0
        self.kick_fd = -1
        self.notify_fd = -1
        #: the protocol minor VERSION agreed on; from DOORBELL_MINOR on the session gets a
        #: doorbell eventfd, served by the C job path's thread (docs/spec/protocol.md)
        self.minor = 0
        self.bell_fd = -1
        self.bell_slot = -1  # its slot in the doorbell thread, -1: not served there
        #: when one of its threads was last seen spinning on a ring (the polling word)
        self.polled_ns = 0
        #: since when a notify is owed to it, 0 for none (deferred while it polls: see
        #: Daemon._notify_sessions)
        self.owed_ns = 0
        self.closed = False
        #: replies held while the daemon serves one read of its socket, sent together at
        #: its end: runs of (messages, fds of the run's first message) (Daemon._reply)
        self.held: list[tuple[list[bytes], list[Any]]] | None = None
        self.peer_pid = 0  # from SO_PEERCRED, for status
        self.since = time.time()
        self.boots_at_start = daemon.fn.device.boots if hasattr(daemon, "fn") else 0

    # -- write log --------------------------------------------------------------------
    def attach_write_log(self) -> list[int]:
        if self.ctrl is not None:
            raise OSError(errno.EBUSY, "write log already attached")
        self.ctrl_fd = sealed_memfd(f"xdna-emu-ctrl-{self.id}", P.CTRL_SIZE)
        self.ctrl = mmap.mmap(self.ctrl_fd, P.CTRL_SIZE)
        self.w32, self.w64 = P.ctrl_words(self.ctrl)
        struct.pack_into("<IIII", self.ctrl, 0, P.CTRL_MAGIC, P.CTRL_VERSION, P.LOG_ENTRIES,
                         P.LOG_ENTRY.size)
        struct.pack_into("<I", self.ctrl, P.CTRL_OFF_ALIVE, 1)
        struct.pack_into("<I", self.ctrl, P.CTRL_OFF_RESETS, self.daemon.fn.resets)
        struct.pack_into("<I", self.ctrl, P.CTRL_OFF_FW_BOOTS, self.daemon.fn.device.boots)
        drv = self.daemon.driver
        if drv is not None and drv.ctrl is not None:  # the driver's PM words, as published
            self.ctrl[P.CTRL_OFF_PM_DOWN : P.CTRL_OFF_PM_DOWN + 8] = \
                drv.ctrl[P.CTRL_OFF_PM_DOWN : P.CTRL_OFF_PM_DOWN + 8]
        self.kick_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self.notify_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self.daemon.sel.register(self.kick_fd, selectors.EVENT_READ, ("kick", self))
        if self.minor < P.DOORBELL_MINOR:
            return [self.ctrl_fd, self.kick_fd, self.notify_fd]
        self.bell_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        dp = self.daemon.datapath
        if dp is not None and dp.running:
            self.bell_slot = dp.session_add(self.ctrl, self.bell_fd, self.kick_fd, self.notify_fd)
            if self.bell_slot >= 0:  # the doorbells, and which are live now; with no slot
                # none (their count stays 0): every write then kicks the loop, which serves it
                struct.pack_into("<5I", self.ctrl, P.CTRL_OFF_DOORBELL_BAR, *dp.doorbells,
                                 dp.mask)
        return [self.ctrl_fd, self.kick_fd, self.notify_fd, self.bell_fd]

    def drain_write_log(self) -> bool:
        """Apply every logged write in order until the log stays empty (entries the client
        adds meanwhile too, without a kick while ``draining`` is set); False when the client
        corrupted the log. The caller holds interrupts: one per vector per wake-up."""
        ctrl, kick, w32, w64 = self.ctrl, self.kick_fd, self.w32, self.w64
        assert ctrl is not None and w32 is not None and w64 is not None
        entry = P.LOG_ENTRY
        esize, n, entry0 = entry.size, P.LOG_ENTRIES, P.CTRL_OFF_ENTRY0
        write = self.daemon.fn.mmio_write
        fast = self.daemon.datapath
        sid = self.id
        flag = DRAIN_FLAG
        if flag:
            w32[P.CTRL_OFF_DRAINING >> 2] = 1
        settled = False
        for _ in range(P.DRAIN_ROUNDS):
            head, tail = w64[P.CTRL_OFF_HEAD >> 3], w64[P.CTRL_OFF_TAIL >> 3]
            if head == tail:
                if settled:
                    return True
                # clear the flag, consume the kicks (that eventfd read is also the full
                # barrier between the flag store and the next head load), look once more
                if flag:
                    w32[P.CTRL_OFF_DRAINING >> 2] = 0
                    flag = False
                try:
                    os.eventfd_read(kick)
                except BlockingIOError:  # a backlog poll: nobody kicked
                    pass
                settled = True
                continue
            if head < tail or head - tail > n:
                log.warning("session %d: write log head %d tail %d is corrupt", self.id, head, tail)
                if flag:
                    w32[P.CTRL_OFF_DRAINING >> 2] = 0
                return False
            if fast is not None:  # the C job path (docs/spec/jobs.md §7); this loop does the rest
                tail = fast.apply(ctrl, tail, head, write, sid)
            while tail < head:
                bar, off, val, _ = entry.unpack_from(ctrl, entry0 + (tail % n) * esize)
                write(bar, off, val, sid)
                tail += 1
            w64[P.CTRL_OFF_TAIL >> 3] = tail
        # the others' turn: come back through the event loop, kicked by ourselves
        if flag:
            w32[P.CTRL_OFF_DRAINING >> 2] = 0
        os.eventfd_write(kick, 1)
        return True

    def notify(self, wake: bool = True) -> None:
        """Bump the epoch and, if ``wake``, write the notify eventfd."""
        w64 = self.w64
        if w64 is None:
            return
        w64[P.CTRL_OFF_EPOCH >> 3] += 1
        if wake:
            with contextlib.suppress(OSError):
                os.eventfd_write(self.notify_fd, 1)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        sel = self.daemon.sel
        for fd in (self.sock.fileno(), self.kick_fd):
            if fd >= 0:
                with contextlib.suppress(KeyError, ValueError):
                    sel.unregister(fd)
        if self.bell_slot >= 0:  # out of the thread's hands before its page and fds go
            dp = self.daemon.datapath
            assert dp is not None
            dp.session_remove(self.bell_slot)
            self.bell_slot = -1
        if self.ctrl is not None and self.w32 is not None and self.w64 is not None:
            self.w32[P.CTRL_OFF_ALIVE >> 2] = 0
            with contextlib.suppress(OSError):
                os.eventfd_write(self.notify_fd, 1)
            self.w32.release()
            self.w64.release()
            self.ctrl.close()
        for fd in (self.ctrl_fd, self.kick_fd, self.notify_fd, self.bell_fd, *self.fds):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.fds.clear()
        with contextlib.suppress(OSError):
            self.sock.close()


class Daemon:
    """Serves one PCI function to its clients: shared memory, files, sessions. A physical
    function's daemon also serves its enabled virtual functions, each a Daemon of its own
    (own BDF, socket, files) on the PF's event loop (docs/spec/aie4.md §10)."""

    def __init__(self, chip: str | Chip, runtime_dir: Path, bdf: str | None = None,
                 clock: Clock | None = None, sel: selectors.BaseSelector | None = None) -> None:
        self.chip = load_chip(chip) if isinstance(chip, str) else chip
        self._pf = self.chip.function == "pf"
        self.runtime_dir = prepare_runtime_dir(Path(runtime_dir))
        self.bdf, self.dir = claim_bdf(self.runtime_dir, bdf)
        (self.dir / "pid").write_text(str(os.getpid()))
        self.sel = sel if sel is not None else selectors.DefaultSelector()
        #: the enabled VFs, in routing-id order (a PF only)
        self.vfs: list[Daemon] = []
        self.sessions: dict[int, Connection] = {}
        #: The runqueue asks of sessions that have gone (docs/spec/jobs.md §3a): the asks a
        #: session sees only ever grow, so one leaving does not look like a new ask.
        self.rq_asks_gone = 0
        self.pm_asks_gone = 0  # the runtime-PM asks of client sessions gone (jobs.md §1)
        #: the client sessions' management messages proxied so far (MGMT_PROXY): each is
        #: the driver's runtime-PM activity, published as the driver's CLIENT_OPS (jobs.md §1)
        self.client_ops = 0
        self.next_sid = 1
        self.vector_owner: dict[int, Connection] = {}
        self.running = False
        self.polled_ns = 0  # when a client was last seen spinning on a ring
        #: sessions whose log head moved while the daemon spun: drained by the next step
        self._spun: list[Connection] = []
        #: sessions owed a deferred notify (written before the daemon sleeps)
        self._owed: list[Connection] = []
        self.last_driver: dict[str, Any] | None = None
        #: run first at cleanup, while the daemon's files still exist (the trace recorder)
        self.stop_hooks: list[Callable[[], None]] = []
        self.stats = {"dropped_clients": 0, "sessions": 0}
        self.bar_files: dict[int, Path] = {}
        self.bar_maps: dict[int, mmap.mmap] = {}
        self.bar_fds: dict[int, int] = {}
        self._config_published = b""  # what the sysfs config file holds
        self._config_file: ConfigFile | None = None  # that file, open (_write_discovery_files)
        self._pmf_sample: Any = None  # the last platform-metrics sample, and its ctrl bytes
        self._pmf_bytes = b""
        try:
            self._create_bars()
            self.wires = EventfdWires(self.chip.msix.vectors, record=True)
            self.fn = PciFunction(self.chip, self.bar_maps, self.wires, clock or Clock())
            self.datapath = DataPath.create(self.fn, self.stats)
            self.socket_path = self.dir / "sock"
            self._listen()
            self._write_discovery_files()
            self._config_published = bytes(self.fn.config.data)
            self.fn.config.listeners.append(self._publish_config)
            self.fn.config.flr_listeners.append(self._publish_resets)
            if self.chip.function == "pf":
                self.fn.config.listeners.append(self._sriov_changed)
                self._watch_numvfs()
        except BaseException:
            self.cleanup()
            raise

    # -- setup ------------------------------------------------------------------------
    def _create_bars(self) -> None:
        """BARs are sealed memfds: a client gets a writable mapping but can never resize
        the memory under the daemon (which would turn our next access into SIGBUS). The
        sysfs ``resourceN`` links point at ``/proc/<pid>/fd/<n>``, like a real BAR file."""
        for idx, bar in sorted(self.chip.bars.items()):
            fd = sealed_memfd(f"xdna-emu-{self.bdf}-bar{idx}", bar.size)
            self.bar_fds[idx] = fd
            self.bar_files[idx] = Path(f"/proc/{os.getpid()}/fd/{fd}")
            self.bar_maps[idx] = mmap.mmap(fd, bar.size)

    def _listen(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        old = os.umask(0o177)
        try:
            sock.bind(str(self.socket_path))
        finally:
            os.umask(old)
        os.chmod(self.socket_path, 0o600)
        sock.listen(16)
        sock.setblocking(False)
        self.listener = sock
        self.sel.register(sock, selectors.EVENT_READ, ("accept", self))

    def _write_discovery_files(self) -> None:
        from .sysfs import ConfigFile, write_sysfs, write_umockdev

        self.sysfs_root = write_sysfs(self.dir, self.chip, self.bdf, self.fn.config,
                                      self.bar_files, self.socket_path)
        if self._config_file is not None:
            self._config_file.close()  # the tree was written anew: a new file
        self._config_file = ConfigFile(self.sysfs_root, self.bdf)
        self.umockdev = write_umockdev(self.dir / "device.umockdev", self.chip, self.bdf,
                                       self.fn.config, self.bar_files, self.socket_path)

    def ready_record(self) -> dict[str, Any]:
        return {
            "event": "ready", "chip": self.chip.name, "bdf": self.bdf,
            "socket": str(self.socket_path), "sysfs_root": str(self.sysfs_root),
            "umockdev": str(self.umockdev), "pid": os.getpid(),
        }  # fmt: skip

    def announce(self) -> dict[str, Any]:
        """Publish ready.json (discovery reads it) and return the ready record."""
        rec = self.ready_record()
        tmp = self.dir / "ready.json.tmp"
        tmp.write_text(json.dumps(rec))
        os.replace(tmp, self.dir / "ready.json")
        return rec

    @property
    def device(self) -> NpuDevice:
        """The function's device blocks (for tools and tests that inspect firmware state)."""
        return self.fn.device

    @property
    def driver(self) -> Connection | None:
        """The session that owns the function (enabled bus mastering first), if any."""
        return self.sessions.get(self.fn.driver) if self.fn.driver is not None else None

    @property
    def probed(self) -> bool:
        """A driver session exists and the firmware it started is running, or it holds the
        device suspended (its ctrl page's PM_DOWN): a new process attaches, and its first
        query asks the driver to resume (docs/spec/jobs.md §1)."""
        drv = self.driver
        if drv is None:
            return False
        return self.fn.probed or (drv.w32 is not None and drv.w32[P.CTRL_OFF_PM_DOWN >> 2] != 0)

    def _asks_total(self, off: int, gone: int) -> int:
        """Every ask so far in the client word at ``off`` (RQ_ASK: the runqueue's, jobs.md
        §3a; PM_ASK: runtime PM's, §1): the live sessions' and ``gone``, those of sessions
        that left."""
        return gone + sum(s.w32[off >> 2] for s in self.sessions.values() if s.w32 is not None)

    def _pmf(self) -> bytes | None:
        """The device's platform metrics as ctrl-page bytes, packed again only when the
        sample changed (the device keeps its sample while its inputs stay the same)."""
        m = self.fn.device.npu_metrics()
        if m is None:
            return None
        if m is not self._pmf_sample:
            self._pmf_sample, self._pmf_bytes = m, pmf_body(m)
        return self._pmf_bytes

    def _publish_foreign_ctx(self) -> None:
        """Tell the driver how many contexts clients hold (their runtime-PM references), and
        every session the shared runqueue's state: the other sessions' asks for a partition
        and how many firmware contexts went away (docs/spec/jobs.md §3a); the driver the
        highest DPM level client contexts ask for, and the clients the level the SMU runs
        at (§6); the driver the clients' asks to resume the device, and the clients whether
        the driver holds it suspended and how often it stopped it (§1). Both cases below
        feed :func:`store_words`."""
        dev = self.fn.device
        gen = dev.stats.get("contexts_destroyed", 0) & 0xFFFFFFFF
        boots = dev.boots & 0xFFFFFFFF
        owner = self.fn.driver
        drv = self.sessions.get(owner) if owner is not None else None  # self.driver, inlined
        pmf = self._pmf()
        if len(self.sessions) == 1 and drv is not None and drv.w32 is not None:
            # the driver alone, as after every step of a single-process run: nobody else
            # asks, holds or wants anything (the general case below, without its lists)
            store_words(drv.w32, self.rq_asks_gone - drv.rq_base, gen, boots, pmf,
                        foreign=(dev.context_count(exclude_pasid=drv.pasid), 0,
                                 self.pm_asks_gone - drv.pm_base,
                                 self.client_ops - drv.ops_base))
            return
        live = [(s, s.w32) for s in self.sessions.values() if s.w32 is not None]
        asks = [c[P.CTRL_OFF_RQ_ASK >> 2] for _, c in live]
        total = sum(asks) + self.rq_asks_gone
        dw = drv.w32 if drv is not None else None
        level = dev.dpm_level_now()
        if level is not None:  # the SMU's own state: current even before the driver notes it
            now = 1 + level
        else:
            now = dw[P.CTRL_OFF_DPM_NOW >> 2] if dw is not None else 0
        held = want = pm_asks = 0
        down, stops = ((dw[P.CTRL_OFF_PM_DOWN >> 2], dw[P.CTRL_OFF_DRV_STOPS >> 2])
                       if dw is not None else (0, 0))
        for s, c in live:
            if s is not drv:
                held += c[P.CTRL_OFF_HWCTX_LIVE >> 2]
                want = max(want, c[P.CTRL_OFF_DPM_WANT >> 2])
                pm_asks += c[P.CTRL_OFF_PM_ASK >> 2]
        for (s, c), ask in zip(live, asks, strict=True):
            if s is drv:
                store_words(c, total - ask - s.rq_base, gen, boots, pmf,
                            foreign=(max(dev.context_count(exclude_pasid=s.pasid), held), want,
                                     pm_asks + self.pm_asks_gone - s.pm_base,
                                     self.client_ops - s.ops_base))
            else:
                store_words(c, total - ask - s.rq_base, gen, boots, pmf,
                            client=(now, down, stops))

    def _publish_config(self) -> None:
        """Config space changed: keep the sysfs ``config`` file true (rewritten only when its
        bytes differ, before the reply to the write that changed them)."""
        data = bytes(self.fn.config.data)
        if data == self._config_published:
            return
        with contextlib.suppress(OSError):
            self._config_file.write(data)
            self._config_published = data

    # -- SR-IOV (a PF; docs/spec/aie4.md §10) -----------------------------------------
    def _sriov_changed(self) -> None:
        """The PF's SR-IOV capability: VF Enable with NumVFs in 1..TotalVFs creates the VF
        functions, clearing it removes them (as the hardware's VFs appear and vanish)."""
        from .pci.caps import SRIOV_CTRL, SRIOV_CTRL_VFE, SRIOV_NUM_VF
        from .pci.config import SRIOV_CAP

        data = self.fn.config.data
        ctrl = int.from_bytes(data[SRIOV_CAP + SRIOV_CTRL : SRIOV_CAP + SRIOV_CTRL + 2], "little")
        num = int.from_bytes(data[SRIOV_CAP + SRIOV_NUM_VF : SRIOV_CAP + SRIOV_NUM_VF + 2], "little")
        want = num if ctrl & SRIOV_CTRL_VFE and 1 <= num <= self.chip.pci.total_vfs else 0
        if want == len(self.vfs):
            return
        from .sysfs import link_vf

        self.remove_vfs()
        if want:
            vf_chip = self.chip.vf_chip()
            for i in range(want):
                vf = Daemon(vf_chip, self.runtime_dir, vf_bdf(self.bdf, i), self.fn.clock, self.sel)
                vf.announce()
                self.vfs.append(vf)
                link_vf(self.sysfs_root, self.bdf, vf.sysfs_root, vf.bdf, i)
        self._write_discovery_files()

    def _watch_numvfs(self) -> None:
        """Watch the PF's sysfs directory for a write of ``sriov_numvfs`` (inotify: the file
        is the daemon's own, in the tree its ready record names)."""
        from .sysfs import device_path

        self._sysfs_dev = self.sysfs_root / device_path(self.bdf).lstrip("/")
        self._numvfs_req: Connection | None = None
        self._inotify = inotify_watch(self._sysfs_dev)
        self.sel.register(self._inotify, selectors.EVENT_READ, ("numvfs", self))

    def _numvfs_written(self) -> bool:
        """A write of N to ``sriov_numvfs`` is the driver's to carry out (its sriov_configure,
        docs/spec/aie4.md §10): the driver session's ctrl page gets N + 1 and a notify. Once
        the driver took it, the file shows the enabled count again (:meth:`_numvfs_taken`)."""
        if not inotify_closed_writes(self._inotify, "sriov_numvfs"):
            return False
        path = self._sysfs_dev / "sriov_numvfs"
        try:
            n = int(path.read_text().strip() or "x", 0)
        except (OSError, ValueError):
            n = -1
        drv = self.driver
        if n < 0 or drv is None or drv.w32 is None:
            log.warning("sriov_numvfs: %s", "not a number" if n < 0 else "no driver bound")
            self._write_discovery_files()
            return False
        drv.w32[P.CTRL_OFF_SRIOV_REQ >> 2] = n + 1
        self._numvfs_req = drv
        return True

    def _numvfs_taken(self) -> None:
        """The driver took the request (its ctrl word is 0 again): show the enabled count."""
        drv = self._numvfs_req
        if drv is not None and (drv.closed or drv.w32 is None or
                                not drv.w32[P.CTRL_OFF_SRIOV_REQ >> 2]):
            self._numvfs_req = None
            self._write_discovery_files()

    def remove_vfs(self) -> None:
        """Remove every VF: its sessions learn the function is gone (``removed`` in their
        ctrl page, then the hang-up), its device resets, its files go."""
        for vf in reversed(self.vfs):
            for s in list(vf.sessions.values()):
                if s.w32 is not None and not s.closed:
                    s.w32[P.CTRL_OFF_REMOVED >> 2] = 1
            vf.fn.reset()
            vf.cleanup()
        if self.vfs:
            from .sysfs import unlink_vfs

            unlink_vfs(self.sysfs_root, self.bdf)
        self.vfs.clear()

    def _publish_resets(self) -> None:
        """A function reset: every session sees the count at once, before any reply, so a
        driver tells its own reset from one it did not start (docs/spec/aie4.md §8)."""
        for s in list(self.sessions.values()):
            if s.w32 is not None and not s.closed:
                s.w32[P.CTRL_OFF_RESETS >> 2] = self.fn.resets

    def reset_device(self) -> None:
        """DEVICE_RESET: the function's device reset."""
        self.fn.reset()
        self._publish_resets()

    # -- event loop -------------------------------------------------------------------
    def run(self, on_ready: Callable[[dict[str, Any]], None] | None = None,
            exit_with_pid: int | None = None) -> None:
        """Serve until SIGTERM/SIGINT, or until process ``exit_with_pid`` ends (a test runner
        that was killed must not leave its emulators behind)."""
        rfd, wfd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        old_wakeup = signal.set_wakeup_fd(wfd)
        handlers = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        self.sel.register(rfd, selectors.EVENT_READ, ("signal", None))
        pidfd = -1
        if exit_with_pid is not None:
            try:
                pidfd = os.pidfd_open(exit_with_pid)
            except ProcessLookupError:
                raise DaemonError(f"process {exit_with_pid} is already gone") from None
            self.sel.register(pidfd, selectors.EVENT_READ, ("parent", None))
        self.running = True
        dp = self.datapath
        try:
            if dp is not None:  # the doorbell thread: only a daemon that runs for real
                dp.start(self._vector_slot, (SPIN_NS, POLL_RECENT_NS, NOTIFY_DEFER_NS))
            rec = self.announce()
            if on_ready:
                on_ready(rec)
            while self.running:
                self._step(self._timeout())
        finally:
            signal.set_wakeup_fd(old_wakeup)
            for s, h in handlers.items():
                signal.signal(s, h)
            self.sel.unregister(rfd)
            os.close(rfd)
            os.close(wfd)
            if pidfd >= 0:
                self.sel.unregister(pidfd)
                os.close(pidfd)
            if dp is not None:
                dp.stop()  # before the sessions' pages and fds go
            self.cleanup()

    def _vector_slot(self, vector: int) -> int:
        """The doorbell-thread slot of the session that owns ``vector``, -1 for none."""
        owner = self.vector_owner.get(vector)
        return owner.bell_slot if owner is not None else -1

    def _publish_doorbells(self, mask: int) -> None:
        """The live doorbells changed: every session that has them sees it."""
        for s in self.sessions.values():
            if s.bell_slot >= 0 and s.w32 is not None and not s.closed:
                s.w32[P.CTRL_OFF_DOORBELL_MASK >> 2] = mask

    def _on_signal(self, signum: int, frame: object) -> None:
        self.running = False

    def _timeout(self) -> float | None:
        if not self.vfs:  # one function: the loop below without its tuple
            fn = self.fn
            deadline = fn.next_deadline_ns()
            timeout = None if deadline is None else max(0.0, (deadline - fn.clock.now_ns()) / 1e9)
            if fn.backlogged():  # as below
                timeout = BACKLOG_POLL_S if timeout is None else min(timeout, BACKLOG_POLL_S)
            return timeout
        timeout = None
        for d in (self, *self.vfs):
            fn = d.fn
            deadline = fn.next_deadline_ns()
            if deadline is not None:
                t = max(0.0, (deadline - fn.clock.now_ns()) / 1e9)
                timeout = t if timeout is None else min(timeout, t)
            if fn.backlogged():
                # Ring-space updates (i2x head) are logged without a kick: while firmware
                # output waits for space, look at the logs ourselves every BACKLOG_POLL_S.
                timeout = BACKLOG_POLL_S if timeout is None else min(timeout, BACKLOG_POLL_S)
        return timeout

    def _step(self, timeout: float | None) -> bool:
        """One turn of the loop; True when select() found events (the in-process wait hook
        asks: something was ready, so the shim spins instead of letting time pass)."""
        self.wires.fired.clear()
        for d in self.vfs:  # a PF serves its VFs on this loop (aie4.md §10)
            d.wires.fired.clear()
        spun, self._spun = self._spun, []
        if spun:  # logs the spin found moving: their clients did not kick
            timeout = 0
        if self._owed and timeout != 0:  # never sleep owing a notify
            self._pay_notifies(0)
        events = self.sel.select(timeout)
        dp = self.datapath
        if dp is not None and dp.running:  # the whole step holds the device lock
            dp.enter()
            try:
                polling = self._serve(events, spun)
            finally:
                if dp.leave():
                    self._publish_doorbells(dp.mask)
            if polling is not None:  # the doorbell thread spins (it serves the logs)
                self._pay_notifies(0)
                self.polled_ns = 0
        else:
            polling = self._serve(events, spun)
            if polling is not None:
                self._spin(polling)
        return bool(events)

    def _serve(self, events: list[tuple[selectors.SelectorKey, int]],
               spun: list[Connection]) -> int | None:
        """One step's work on the events select() found; the polling words to spin for
        (None: no spin)."""
        progressed = False
        kicked: list[Connection] = spun
        for key, _ in events:
            kind, sess = key.data
            if kind == "kick":  # the common event first
                if sess not in kicked:
                    kicked.append(sess)
            elif kind == "accept":
                new = sess._accept()  # the Daemon (PF or VF) whose socket it is
                if new is not None:  # a client sends as it connects: its first commands
                    # are served in this step, not the next (none there yet: no progress)
                    progressed |= sess._on_client(new)
            elif kind == "signal":
                with contextlib.suppress(OSError):
                    os.read(key.fd, 64)
            elif kind == "parent":
                log.info("the process we serve has exited: stopping")
                self.running = False
            elif kind == "numvfs":
                progressed |= self._numvfs_written()
            elif kind == "client":
                progressed |= sess.daemon._on_client(sess)
        if not self.vfs:  # one function: the loops below, without their lists
            if not events and not spun and self.fn.backlogged():
                kicked = list(self.sessions.values())
            progressed = self._work(kicked, progressed)
        else:
            # a client's call may have enabled or removed VFs, and so may a drained write:
            # each function is looked up when its turn comes
            for d in (self, *self.vfs):
                if d is not self and d not in self.vfs:
                    continue
                mine = [s for s in kicked if s.daemon is d]
                if not events and not spun and d.fn.backlogged():
                    mine = list(d.sessions.values())
                progressed |= d._work(mine, progressed)
        if self._pf:
            self._numvfs_taken()
        if progressed:
            if not self.vfs:
                polling = self._notify_sessions()
            else:
                polling = 0
                for d in (self, *self.vfs):
                    polling |= d._notify_sessions()
                    if d is not self and d._owed:  # this loop pays what its VFs owe
                        self._owed += d._owed
                        d._owed = []
            if polling or self.polled_ns:
                return polling
        return None

    def _work(self, kicked: list[Connection], progressed: bool) -> bool:
        """Every log that is ready and the timers that are due, answered with one interrupt
        per vector (device.md §3), delivered last: a woken client may take this CPU."""
        fn = self.fn
        fn.hold_irqs()
        try:
            for sess in kicked:
                progressed |= self._drain(sess)
            deadline = fn.next_deadline_ns()
            if deadline is not None and deadline <= fn.clock.now_ns():
                fn.poll()
                progressed = True
            if progressed:
                self._publish_foreign_ctx()
        finally:
            fn.release_irqs()
        return progressed

    def _notify_sessions(self) -> int:
        """Notify this function's sessions after a step that progressed; a session woken by
        one of its interrupts needs no notify, and one that polls (a thread spinning on a
        ring now or within POLL_RECENT_NS) with ``irq_wakes`` set gets its notify deferred
        while the daemon spins (protocol.md, "Spin, then block"). Returns the clients'
        polling words, ORed."""
        fired = self.wires.fired
        owner = self.vector_owner
        woken = {owner.get(v) for v in fired} if fired else ()
        polling = 0
        now = 0
        for s in self.sessions.values():  # notify() neither adds nor drops sessions
            ctrl = s.ctrl
            if ctrl is None:
                continue
            wakes, polls = _WAKES_POLLING.unpack_from(ctrl, P.CTRL_OFF_IRQ_WAKES)
            wake = not wakes or s not in woken
            if wake and wakes and (polls or s.polled_ns):  # irq_wakes 0 asks for notify
                now = now or time.perf_counter_ns()
                if polls:
                    s.polled_ns = now
                if now - s.polled_ns <= POLL_RECENT_NS:
                    s.notify(False)  # the epoch moves now; the wake-up waits (_pay_notifies)
                    if not s.owed_ns:
                        s.owed_ns = now
                        self._owed.append(s)
                    polling |= polls
                    continue
                s.polled_ns = 0
            s.notify(wake)
            polling |= polls
        return polling

    def _pay_notifies(self, age_ns: int) -> None:
        """Write the deferred notifies owed for longer than ``age_ns`` (0: all of them)."""
        now = time.perf_counter_ns() if age_ns else 0
        keep = []
        for s in self._owed:
            if age_ns and now - s.owed_ns < age_ns and not s.closed:
                keep.append(s)
                continue
            s.owed_ns = 0
            if not s.closed and s.ctrl is not None:
                with contextlib.suppress(OSError):
                    os.eventfd_write(s.notify_fd, 1)
        self._owed = keep

    def _spin(self, polling: int) -> None:
        """Watch the write logs for up to SPIN_NS while a client polls (spin-then-block).
        The logs' ``draining`` flags stay set meanwhile, so their clients do not kick; a log
        whose head moved is drained by the next step without a wake-up (protocol.md)."""
        now = time.perf_counter_ns
        t = now()
        if polling:
            self.polled_ns = t
        elif t - self.polled_ns > POLL_RECENT_NS:
            self.polled_ns = 0
            return
        logs = [(s, s.w32, s.w64) for d in (self, *self.vfs) for s in d.sessions.values()
                if s.w32 is not None and s.w64 is not None]
        draining, head_at, tail_at = P.CTRL_OFF_DRAINING >> 2, P.CTRL_OFF_HEAD >> 3, P.CTRL_OFF_TAIL >> 3
        flag = DRAIN_FLAG
        if flag:
            for _, w32, _ in logs:
                w32[draining] = 1
        moved = self._spun
        end = t + SPIN_NS
        while not moved and now() < end:
            for s, _, w64 in logs:
                if w64[head_at] != w64[tail_at]:
                    moved.append(s)
            if self._owed:
                self._pay_notifies(NOTIFY_DEFER_NS)
            if not moved:
                os.sched_yield()  # a polite spin: the client may be waiting for this CPU
        if flag:  # as at the end of a drain: clear, consume the kicks (a barrier), look again
            for s, w32, w64 in logs:
                if s in moved:
                    continue  # its drain clears the flag after it applied the log
                w32[draining] = 0
                try:
                    kicks = os.eventfd_read(s.kick_fd)
                except OSError:  # BlockingIOError: nobody kicked
                    kicks = 0
                head, tail = w64[head_at], w64[tail_at]
                # a kick with no entry behind it is a client word that changed (protocol.md
                # "Suppressed kicks and notifies"): the step that drains it also publishes
                if kicks or head != tail:
                    moved.append(s)

    def _drain(self, sess: Connection) -> bool:
        """Apply a session's write log (a kick, or a backlog poll)."""
        if sess.closed or sess.ctrl is None:
            return False
        if not sess.drain_write_log():
            self.drop(sess, "corrupt write log")
        return True

    def _accept(self) -> Connection | None:
        """A new session for a waiting connection (None: none, or refused)."""
        try:
            conn, _ = self.listener.accept()
        except BlockingIOError:
            return None
        # non-blocking: a reply is one sendmsg (no poll before it, as a socket timeout
        # costs); only one that finds no room waits, up to SEND_TIMEOUT_S (_send_rest)
        conn.setblocking(False)
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, SO_PEERCRED_FMT.size)
        peer_pid, uid, _ = SO_PEERCRED_FMT.unpack(creds)
        if uid != os.getuid():
            log.warning("refusing peer with uid %d", uid)
            conn.close()
            return None
        sess = Connection(self, conn, self.next_sid)
        sess.peer_pid = peer_pid
        self.next_sid += 1
        sess.rq_base = self._asks_total(P.CTRL_OFF_RQ_ASK, self.rq_asks_gone)
        sess.pm_base = self._asks_total(P.CTRL_OFF_PM_ASK, self.pm_asks_gone)
        sess.ops_base = self.client_ops
        self.sessions[sess.id] = sess
        self.stats["sessions"] += 1
        self.sel.register(conn, selectors.EVENT_READ, ("client", sess))
        return sess

    def drop(self, sess: Connection, why: str) -> None:
        """Disconnect a client and reclaim everything it owned."""
        if sess.closed:
            return
        log.info("session %d closed: %s", sess.id, why)
        if why != "closed":
            self.stats["dropped_clients"] += 1
        was_driver = self.fn.driver == sess.id
        if was_driver:
            self.last_driver = self._driver_record(sess, why)
        self.sessions.pop(sess.id, None)
        if sess.w32 is not None:  # its asks stay counted: a departure is not a new ask
            self.rq_asks_gone += sess.w32[P.CTRL_OFF_RQ_ASK >> 2]
            self.pm_asks_gone += sess.w32[P.CTRL_OFF_PM_ASK >> 2]
        sess.close()
        self._release_vectors(sess)
        # The driver gone, the function resets as after FLR, so the next client probes a
        # clean device and becomes the driver when it enables mastering.
        self.fn.release(sess.id, sess.pasid)
        if was_driver:  # a function reset: the other sessions see it as any other
            self._publish_resets()
            self._publish_config()

    def _on_client(self, sess: Connection) -> bool:
        try:
            data, anc, _flags, _ = sess.sock.recvmsg(65536, socket.CMSG_SPACE(4 * P.MAX_MSG_FDS))
        except BlockingIOError:  # readable a moment ago, nothing there now: nothing to do
            return False
        except (OSError, TimeoutError) as exc:
            self.drop(sess, f"recv failed: {exc}")
            return True  # the others' shared ctrl words change (docs/spec/jobs.md §3a)
        for level, typ, cdata in anc:
            if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
                n = len(cdata) // 4
                sess.fds.extend(struct.unpack(f"{n}i", cdata[: n * 4]))
        if not data:
            self.drop(sess, "closed" if not sess.rx else "truncated message")
            return True
        sess.rx += data
        progressed = False
        sess.held = []  # the replies to this read's commands go out together (_reply)
        try:
            try:
                while len(sess.rx) >= P.HEADER.size and not sess.closed:
                    msg_id, cmd, size, flags, _ = P.parse_header(sess.rx)
                    if flags & P.FLAG_TYPE_MASK != P.TYPE_COMMAND:
                        raise P.ProtocolError("reply-typed message from a client")
                    if not sess.versioned and cmd != P.Cmd.VERSION:
                        raise P.ProtocolError("first message is not VERSION")
                    if len(sess.rx) < size:
                        break
                    payload = bytes(sess.rx[P.HEADER.size : size])
                    del sess.rx[:size]
                    self._dispatch(sess, msg_id, cmd, flags, payload)
                    progressed |= cmd not in _LOOKS_ONLY
                if sess.fds and not sess.rx:
                    raise P.ProtocolError("more fds than the commands take")
            finally:  # also before a drop: what was answered is sent first, as it was
                held, sess.held = sess.held, None
                if held and not sess.closed:
                    self._send_held(sess, held)
        except P.ProtocolError as exc:
            self.drop(sess, f"protocol error: {exc}")
            progressed = True  # as for a hang-up: the others' shared words change
        except (OSError, TimeoutError) as exc:
            self.drop(sess, f"send failed: {exc}")
            progressed = True
        return progressed

    def _take_fds(self, sess: Connection, n: int) -> list[int]:
        if len(sess.fds) < n:
            raise OSError(errno.EINVAL, f"expected {n} fds")
        fds, sess.fds[:] = sess.fds[:n], sess.fds[n:]
        return fds

    def _reply(self, sess: Connection, msg_id: int, cmd: int, payload: bytes = b"",
               fds: list[int] | None = None, error: int = 0) -> None:
        """Send one reply, or hold it while the commands of one socket read are served:
        they go out together, one sendmsg per run that starts at a reply with fds (the fds
        ride with their reply's first byte, protocol.md "Pipelining"), so a pipelined
        batch wakes its client once, not once per reply. ``fds`` are packed by number now
        and sent at the end of the read, so they must stay open until then: every handler's
        are long-lived (the BARs', the session's ctrl page and eventfds)."""
        flags = P.TYPE_REPLY | (P.FLAG_ERROR if error else 0)
        msg = P.pack(msg_id, cmd, b"" if error else payload, flags, error)
        anc = []
        if fds and not error:
            anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack(f"{len(fds)}i", *fds))]
        held = sess.held
        if held is not None:
            if anc or not held:
                held.append(([msg], anc))
            else:
                held[-1][0].append(msg)
            return
        self._send(sess, msg, anc)

    def _send_held(self, sess: Connection, held: list[tuple[list[bytes], list[Any]]]) -> None:
        for parts, anc in held:
            self._send(sess, parts[0] if len(parts) == 1 else b"".join(parts), anc)

    def _send(self, sess: Connection, msg: bytes, anc: list[Any]) -> None:
        try:
            sent = sess.sock.sendmsg([msg], anc)
        except BlockingIOError:
            sent = 0
        if sent < len(msg):
            self._send_rest(sess, msg, sent, anc)

    @staticmethod
    def _send_rest(sess: Connection, msg: bytes, sent: int, anc: list[Any]) -> None:
        """The rest of a reply the client's socket had no room for: wait for room, up to
        SEND_TIMEOUT_S in all, then TimeoutError (the caller drops the client). The fds go
        with the first byte that is sent."""
        import select

        deadline = time.monotonic() + SEND_TIMEOUT_S
        poll = select.poll()
        poll.register(sess.sock.fileno(), select.POLLOUT)
        view = memoryview(msg)
        while sent < len(msg):
            left = deadline - time.monotonic()
            if left <= 0 or not poll.poll(left * 1000):
                raise TimeoutError(f"reply of {len(msg)} bytes: no room for {SEND_TIMEOUT_S} s")
            try:
                sent += sess.sock.sendmsg([view[sent:]], anc if sent == 0 else [])
            except BlockingIOError:
                continue

    def _dispatch(self, sess: Connection, msg_id: int, cmd: int, flags: int, payload: bytes) -> None:
        handler = self._handlers.get(cmd)
        reply: tuple[bytes, list[int]] | None
        try:
            if handler is None:
                raise OSError(errno.ENOSYS, f"unknown command {cmd:#x}")
            reply = handler(self, sess, payload)
        except OSError as exc:
            if cmd == P.Cmd.VERSION:
                raise P.ProtocolError(f"VERSION refused: {exc}") from None
            if not flags & P.FLAG_NO_REPLY:
                self._reply(sess, msg_id, cmd, error=exc.errno or errno.EIO)
            return
        except (struct.error, ValueError) as exc:
            if cmd == P.Cmd.VERSION:
                raise P.ProtocolError(f"bad VERSION: {exc}") from None
            if not flags & P.FLAG_NO_REPLY:
                self._reply(sess, msg_id, cmd, error=errno.EINVAL)
            return
        if not flags & P.FLAG_NO_REPLY:
            body, fds = reply or (b"", [])
            self._reply(sess, msg_id, cmd, body, fds)

    # -- command handlers -------------------------------------------------------------
    def _h_version(self, sess: Connection, payload: bytes) -> tuple[bytes, list[int]]:
        major, minor = P.VERSION_HDR.unpack_from(payload)
        if major != P.PROTO_MAJOR:
            raise OSError(errno.EPROTONOSUPPORT, f"major {major} unsupported")
        sess.versioned = True
        sess.minor = min(minor, P.PROTO_MINOR)
        caps = {"chip": self.chip.name, "bdf": self.bdf, "pasid": sess.pasid,
                "max_msg_fds": P.MAX_MSG_FDS, "probed": self.probed}
        body = P.VERSION_HDR.pack(P.PROTO_MAJOR, min(minor, P.PROTO_MINOR))
        return body + json.dumps(caps).encode() + b"\0", []

    def _h_device_info(self, sess: Connection, payload: bytes) -> tuple[bytes, list[int]]:
        flags = P.DEVICE_FLAG_RESET | P.DEVICE_FLAG_PCI
        return P.DEVICE_INFO.pack(P.DEVICE_INFO.size, flags, P.NUM_REGIONS, P.NUM_IRQS), []

    def _h_region_info(self, sess: Connection, payload: bytes) -> tuple[bytes, list[int]]:
        _, _, index, _, _, _ = P.REGION_INFO.unpack(payload)
        if index >= P.NUM_REGIONS:
            raise OSError(errno.EINVAL, "no such region")
        if index == P.REGION_CONFIG:
            flags = P.REGION_READ | P.REGION_WRITE
            return P.REGION_INFO.pack(P.REGION_INFO.size, flags, index, 0, P.CONFIG_SIZE, 0), []
        bar = self.chip.bars.get(index)
        if bar is None:
            return P.REGION_INFO.pack(P.REGION_INFO.size, 0, index, 0, 0, 0), []
        flags = P.REGION_READ | P.REGION_WRITE | P.REGION_MMAP
        body = P.REGION_INFO.pack(P.REGION_INFO.size, flags, index, 0, bar.size, 0)
        return body, [self.bar_fds[index]]

    def _h_irq_info(self, sess: Connection, payload: bytes) -> tuple[bytes, list[int]]:
        _, _, index, _ = P.IRQ_INFO.unpack(payload)
        if index >= P.NUM_IRQS:
            raise OSError(errno.EINVAL, "no such irq index")
        count = self.chip.msix.vectors if index == P.IRQ_MSIX else 0
        flags = P.IRQ_DATA_EVENTFD if count else 0
        return P.IRQ_INFO.pack(P.IRQ_INFO.size, flags, index, count), []

    def _release_vectors(self, sess: Connection) -> None:
        mine = [v for v, owner in self.vector_owner.items() if owner is sess]
        self.fn.msix.clear_eventfds(mine)
        for v in mine:
            del self.vector_owner[v]

    def _stale_vector(self, vector: int, owner: Connection) -> bool:
        """A client session's vector whose context the running firmware does not have: it
        was made on a firmware the driver session stopped since (docs/spec/protocol.md, ctrl
        page fw_boots), so the next context the firmware gives that vector may take it."""
        fw = self.fn.device.ctx
        if owner is self.driver:
            return False
        return fw is None or not any(c.pasid == owner.pasid and c.msix == vector
                                     for c in fw.contexts.values())

    def _h_set_irqs(self, sess: Connection, payload: bytes) -> None:
        """Install MSI-X eventfds. Ownership is per vector: the mgmt vector belongs to the
        driver session, a context's vector to the session that created the context."""
        _, flags, index, start, count = P.SET_IRQS.unpack(payload)
        if index != P.IRQ_MSIX:
            raise OSError(errno.EINVAL, "only MSI-X is supported")
        if flags & P.IRQ_DATA_NONE and count == 0:
            self._release_vectors(sess)
            return None
        if not flags & P.IRQ_DATA_EVENTFD or not flags & P.IRQ_ACTION_TRIGGER:
            raise OSError(errno.EINVAL, "unsupported SET_IRQS flags")
        fds = self._take_fds(sess, count)
        vecs = range(start, start + count)
        try:
            if start + count > self.chip.msix.vectors:
                raise OSError(errno.EINVAL, "vector out of range")
            taken = [v for v in vecs if self.vector_owner.get(v, sess) is not sess
                     and not self._stale_vector(v, self.vector_owner[v])]
            if taken:
                raise OSError(errno.EBUSY, f"vector {taken[0]} belongs to another session")
            self.fn.msix.set_eventfds(start, fds)  # the wires own them from here on
        except OSError:
            for fd in fds:
                os.close(fd)
            raise
        for v in vecs:
            self.vector_owner[v] = sess
        return None

    def _region_size(self, region: int) -> int:
        if region == P.REGION_CONFIG:
            return P.CONFIG_SIZE
        if region in self.chip.bars:
            return self.chip.bars[region].size
        raise OSError(errno.EINVAL, "no such region")

    def _h_region_read(self, sess: Connection, payload: bytes) -> tuple[bytes, list[int]]:
        offset, region, count = P.REGION_ACCESS.unpack(payload)
        if count == 0 or offset + count > self._region_size(region):
            raise OSError(errno.EINVAL, "access outside the region")
        if region == P.REGION_CONFIG:
            data = self.fn.config_read(offset, count)
        else:
            data = bytes(self.fn.region(region)[offset : offset + count])
        return payload + data, []

    def _h_region_write(self, sess: Connection, payload: bytes) -> tuple[bytes, list[int]]:
        offset, region, count = P.REGION_ACCESS.unpack_from(payload)
        data = payload[P.REGION_ACCESS.size :]
        if count == 0 or len(data) != count or offset + count > self._region_size(region):
            raise OSError(errno.EINVAL, "access outside the region")
        if region == P.REGION_CONFIG:
            self.fn.config_write(offset, data, sess.id)
        else:
            if count != 4 or offset & 3:
                raise OSError(errno.EINVAL, "BAR writes are 32-bit and aligned")
            self.fn.mmio_write(region, offset, int.from_bytes(data, "little"), sess.id)
        return payload[: P.REGION_ACCESS.size], []

    def _h_dma_map(self, sess: Connection, payload: bytes) -> None:
        _, flags, offset, address, size, pasid, _ = P.DMA_MAP.unpack(payload)
        (fd,) = self._take_fds(sess, 1)
        try:
            require_shrink_seal(fd)
            perm = (DMA_READ if flags & P.DMA_READ else 0) | (DMA_WRITE if flags & P.DMA_WRITE else 0)
            space = sess.pasid if flags & P.DMA_SVA else 0
            if flags & P.DMA_REPLACE:
                self.fn.dma_remap(space, address, size, perm, fd, offset, owner=sess.id)
            else:
                self.fn.dma_map(space, address, size, perm, fd, offset, owner=sess.id)
        except FileNotFoundError:
            raise OSError(errno.ENOENT, "no mapping to replace") from None
        except FileExistsError:
            raise OSError(errno.EEXIST, "overlapping mapping") from None
        except ValueError as exc:
            raise OSError(errno.EINVAL, str(exc)) from None
        finally:
            os.close(fd)
        return None

    def _h_dma_unmap(self, sess: Connection, payload: bytes) -> None:
        _, flags, address, size, _pasid, _ = P.DMA_UNMAP.unpack(payload)
        space = sess.pasid if flags & P.DMA_SVA else 0
        try:
            self.fn.dma_unmap(space, address, size)
        except FileNotFoundError:
            raise OSError(errno.ENOENT, "no such mapping") from None
        return None

    def _h_reset(self, sess: Connection, payload: bytes) -> None:
        self.reset_device()
        return None

    def _h_mgmt_proxy(self, sess: Connection, payload: bytes) -> tuple[bytes, list[int]]:
        opcode, _ = P.MGMT_PROXY_HDR.unpack_from(payload)
        if sess.id != self.fn.driver:  # an ioctl through the driver: its activity for
            self.client_ops += 1  # runtime PM, published after this step (jobs.md §1)
        # the session's logged writes come first: a lazy ring-head write of a channel it is
        # giving up must not reach the channel another session gets next (protocol.md)
        self.fn.hold_irqs()  # one interrupt per vector for the batch, as in _work
        try:
            self._drain(sess)
        finally:
            self.fn.release_irqs()
        return self.fn.proxy(sess.pasid, opcode, payload[P.MGMT_PROXY_HDR.size :]), []

    def _h_status(self, sess: Connection, payload: bytes) -> tuple[bytes, list[int]]:
        return json.dumps(self.status(), default=str).encode(), []

    def _h_write_log(self, sess: Connection, payload: bytes) -> tuple[bytes, list[int]]:
        return P.WRITE_LOG_INFO.pack(P.LOG_ENTRIES, 0), sess.attach_write_log()

    _handlers: dict[int, Callable[..., Any]] = {
        P.Cmd.VERSION: _h_version,
        P.Cmd.DEVICE_GET_INFO: _h_device_info,
        P.Cmd.GET_REGION_INFO: _h_region_info,
        P.Cmd.GET_IRQ_INFO: _h_irq_info,
        P.Cmd.SET_IRQS: _h_set_irqs,
        P.Cmd.REGION_READ: _h_region_read,
        P.Cmd.REGION_WRITE: _h_region_write,
        P.Cmd.DMA_MAP: _h_dma_map,
        P.Cmd.DMA_UNMAP: _h_dma_unmap,
        P.Cmd.DEVICE_RESET: _h_reset,
        P.Cmd.ATTACH_WRITE_LOG: _h_write_log,
        P.Cmd.MGMT_PROXY: _h_mgmt_proxy,
        P.Cmd.DEVICE_STATUS: _h_status,
    }

    # -- status and teardown ----------------------------------------------------------
    def _driver_record(self, sess: Connection, why: str) -> dict[str, Any]:
        """What the last driver session achieved, kept after it leaves (and the function
        resets), so ``status`` right after ``xdna-emu probe`` says the probe worked."""
        dev = self.fn.device
        booted = dev.boots > sess.boots_at_start and dev.last_boot is not None
        fw = dev.last_boot if booted else None
        return {
            "session": sess.id, "pid": sess.peer_pid, "since": sess.since, "ended": time.time(),
            "why": why, "probed": booted,
            "fw_version": fw["version"] if fw else None, "protocol": fw["protocol"] if fw else None,
            "psp_error": dev.psp.status().get("last_error"),
        }  # fmt: skip

    def status(self) -> dict[str, Any]:
        drv = self.driver
        return {
            **self.ready_record(), "sessions": len(self.sessions),
            "clients": [{"session": c.id, "pid": c.peer_pid, "pasid": c.pasid, "since": c.since,
                         "role": "driver" if drv is c else "client"}
                        for c in self.sessions.values()],
            "last_driver": self.last_driver,
            "driver_session": self.driver.id if self.driver else None, "probed": self.probed,
            "stats": {**self.fn.stats, **self.stats}, "msix": dict(self.fn.msix.stats),
            "rss_kib": _rss_kib(), "open_fds": len(os.listdir("/proc/self/fd")),
            "iommu_faults": [str(f) for f in self.fn.iommu.faults[-8:]],
            "device": self.fn.status(),
        }  # fmt: skip

    def cleanup(self) -> None:
        if getattr(self, "vfs", None):
            self.remove_vfs()
        for hook in getattr(self, "stop_hooks", ()):
            try:
                hook()
            except Exception:  # noqa: BLE001 - cleanup goes on whatever a hook does
                log.exception("stop hook failed")
        for sess in list(getattr(self, "sessions", {}).values()):
            sess.close()
        if hasattr(self, "fn"):
            self.fn.iommu.clear()
        if hasattr(self, "wires"):
            self.wires.clear()
        if getattr(self, "_config_file", None) is not None:  # a partly made daemon too
            self._config_file.close()
        if getattr(self, "_inotify", -1) >= 0:
            with contextlib.suppress(KeyError, ValueError):
                self.sel.unregister(self._inotify)
            os.close(self._inotify)
            self._inotify = -1
        if hasattr(self, "listener"):
            with contextlib.suppress(KeyError, ValueError):
                self.sel.unregister(self.listener)  # the selector may be its PF's
            self.listener.close()
        for m in self.bar_maps.values():
            with contextlib.suppress(BufferError):
                m.close()
        for fd in self.bar_fds.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        if hasattr(self, "dir"):
            shutil.rmtree(self.dir, ignore_errors=True)


__all__ = ["Daemon", "DaemonError", "IommuFault", "claim_bdf", "prepare_runtime_dir"]
