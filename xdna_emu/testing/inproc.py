"""Deterministic in-process mode: the daemon and the real C shim in one thread.

The shim's waits call back into :class:`InProcess`, which steps the daemon without blocking
and, when nothing progressed, moves a :class:`~xdna_emu.clock.VirtualClock` to the next
device timer or the shim's deadline. Sockets, eventfds, the write log and the shared BARs
stay real (DESIGN §4: deterministic mode sits on top of the real parts); only time and
scheduling are ours, so a run replays exactly from its seed.

A device per example is cheap: the daemon (and its sockets and shared memory) is kept and
only the device is reset between examples (:meth:`InProcess.fresh`).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..clock import VirtualClock
from ..daemon import Daemon
from ..shim import Shim, ffi, lib

#: Bound on hook calls within one shim call that do not advance virtual time: a shim that
#: spins without waiting for anything is a livelock, reported instead of hanging the test.
SPIN_LIMIT = 20_000
#: Bound on hook calls within one shim call in all: a shim that waits in ever smaller
#: steps of virtual time (so each step "advances") is stuck as surely as a spinning one.
#: A legitimate call needs far fewer: its waits end at device timers, TDR ticks or its
#: deadline, and a due duty that cannot run re-polls at 1 ms at the finest.
CALL_WAIT_LIMIT = 200_000


class Livelock(RuntimeError):
    """The shim kept waiting without anything happening and without time passing."""


_FW_DIRS: dict[str, Path] = {}


def firmware_dir(chip: str) -> Path:
    """A firmware tree for ``chip``, written once per process."""
    if chip not in _FW_DIRS:
        from ..fw.image import write_firmware

        out = Path(tempfile.mkdtemp(prefix=f"xdna-inproc-fw-{chip}-"))
        write_firmware(chip, out)
        _FW_DIRS[chip] = out
    return _FW_DIRS[chip]


class InProcess:
    """A daemon with a virtual clock, and the C shim driven from the same thread.

    ``fault`` (optional) is installed on the device with ``fault.install(device)`` after
    every reset; see :mod:`xdna_emu.fuzz.faults`.
    """

    def __init__(self, chip: str = "npu4", fault: Any = None) -> None:
        self.chip = chip
        self.clock = VirtualClock(start_ns=1_000_000_000)
        self._dir = Path(tempfile.mkdtemp(prefix="xdna-inproc-"))
        self.daemon = Daemon(chip, self._dir, clock=self.clock)
        self.daemon.announce()
        self.fault = fault
        self.spins = 0
        self.waits = 0
        self.call_waits = 0
        self.livelock = False
        self.hook_error: BaseException | None = None
        #: called at the start of every wait of the shim: a test's way to act inside the
        #: window where the shim has dropped its lock (client threads racing a call)
        self.on_wait: Callable[[], None] | None = None
        self._now_cb = ffi.callback("uint64_t(void *)", self._now_ns)
        self._wait_cb = ffi.callback("int(void *, uint64_t)", self._wait, onerror=self._onerror)
        self._hooks = ffi.new("struct xdna_shim_hooks *")
        self._hooks.now_ns = self._now_cb
        self._hooks.wait = self._wait_cb
        self._hooks.user = ffi.NULL
        self.shim: Shim | None = None
        if fault is not None:
            fault.install(self.daemon.device, self.clock)

    # -- hooks --------------------------------------------------------------------------
    def _now_ns(self, _user: Any) -> int:
        return self.clock.now_ns()

    def _onerror(self, exc: type[BaseException], val: BaseException, tb: Any) -> int:
        self.hook_error = val
        return -1

    def _wait(self, _user: Any, deadline: int) -> int:
        """Run the device once; with nothing to do, let virtual time pass."""
        self.waits += 1
        if self.on_wait is not None:
            self.on_wait()
        self.call_waits += 1
        if self.call_waits > CALL_WAIT_LIMIT:
            self.livelock = True
            return -1
        d = self.daemon
        now = self.clock.now_ns()
        nd = d.device.next_deadline_ns()
        due = nd is not None and nd <= now
        ready = d._step(0)  # its select() is the one that says whether anything was ready
        if ready or due:
            self.spins += 1
            if self.spins > SPIN_LIMIT:
                self.livelock = True
                return -1
            return 0
        self.spins = 0
        target = deadline if nd is None else min(deadline, nd)
        if target > now:
            self.clock.advance(target - now)
            d._step(0)
        return 0

    def _set(self, on: bool) -> None:
        lib.xdna_shim_set_hooks(ffi.NULL, self._hooks if on else ffi.NULL)

    def claim_hooks(self) -> None:
        """Make this thread's shim waits step this daemon: another InProcess on the thread
        may have taken or cleared the hooks since (they are per thread)."""
        self._set(True)

    # -- lifecycle ------------------------------------------------------------------------
    def open(self, timeout_ms: int = 5000) -> Shim:
        """Open the real shim on the daemon socket, monitor-less, hooks on this thread."""
        self._set(True)
        self.shim = Shim.open(self.daemon.socket_path, timeout_ms)
        return self.shim

    def probe(self) -> Shim:
        shim = self.shim or self.open()
        shim.probe(firmware_dir(self.chip))
        return shim

    def call(self, fn: Callable[..., Any], *args: Any, **kw: Any) -> tuple[Any, int]:
        """Run one shim call; returns (result, virtual ns it took). Livelocks raise."""
        self.spins = self.call_waits = 0
        self.claim_hooks()
        t0 = self.clock.now_ns()
        try:
            res = fn(*args, **kw)
        finally:
            if self.livelock:
                self.livelock = False
                what = (f"spun {SPIN_LIMIT} steps" if self.call_waits <= CALL_WAIT_LIMIT
                        else f"waited {CALL_WAIT_LIMIT} times")
                self.spins = self.call_waits = 0  # what runs next (a close, a fresh device) may wait
                raise Livelock(f"{getattr(fn, '__name__', fn)} {what}")
        return res, self.clock.now_ns() - t0

    def idle(self, ns: int) -> None:
        """Let ``ns`` of virtual time pass with the shim idle: the daemon runs every device
        timer due on the way (late responses, firmware work) at its own time."""
        d = self.daemon
        end = self.clock.now_ns() + ns
        while True:
            d._step(0)
            now = self.clock.now_ns()
            if now >= end:
                break
            nd = d.device.next_deadline_ns()
            self.clock.advance((end if nd is None else min(end, max(nd, now + 1))) - now)
        d._step(0)

    def close_shim(self) -> None:
        if self.shim is not None:
            self.claim_hooks()  # its stop waits on this daemon
            self.shim.close()
            self.shim = None
            for _ in range(8):  # let the daemon see the hang-up (none when nothing closed)
                self.daemon._step(0)
        self._set(False)  # hooks are per thread: never leak them to other shim users

    def fresh(self) -> None:
        """A device in power-on state and no shim, for the next example."""
        self.close_shim()
        for sess in list(self.daemon.sessions.values()):
            self.daemon.drop(sess, "fresh device")
        self.daemon.reset_device()  # stops the firmware: its delayed work goes too
        if self.fault is not None:
            self.fault.reset()
            self.fault.install(self.daemon.device, self.clock)

    def close(self) -> None:
        try:
            self.close_shim()
        finally:
            self._set(False)
            self.daemon.cleanup()
            shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> InProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
