"""The doorbell thread of the daemon's C job path (docs/spec/jobs.md §7 "The doorbell thread").

First in process, with the real thread: each case of ``test_datapath.py`` runs on a device
whose logged ring writes go into a write log that the thread serves (a doorbell ring, the
thread drains what it can and hands the rest back through the kick eventfd, Python applies
the rest under the device lock, as the daemon's step does), and once on the Python path;
replies and saved states must be equal. Then real daemons: the shim's jobs answered by the
thread, counters exact, a masked vector, quiesce while jobs flow, a client killed while the
thread serves it.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import logging
import mmap
import os
import select
import struct
import types
from collections.abc import Callable
from typing import Any

import pytest

from tests.test_datapath import CASES, HANG, NOP, LoggedDriver, World, _PassOn, _Writes
from xdna_emu import protocol as P
from xdna_emu.cli import format_status, status_view
from xdna_emu.fw.mailbox import Message
from xdna_emu.fw.messages import LAYOUTS, TOMBSTONE, Opcode
from xdna_emu.iommu import DMA_READ, DMA_WRITE
from xdna_emu.irq import CallbackWires, EventfdWires
from xdna_emu.pci.caps import MSIX_ENTRY_CTRL_MASKBIT, MSIX_FLAGS, MSIX_FLAGS_MASKALL
from xdna_emu.pci.config import CMD_MASTER, COMMAND
from xdna_emu.testing.pyctx import Cmd
from xdna_emu.testing.pydriver import _RaisedLog

_datapath = pytest.importorskip("xdna_emu._datapath")

#: a generous bound for one thread round trip: a liveness guard, never a timing check
LIVENESS_S = 10.0


class FdWires(CallbackWires):
    """Every vector wired to the callback (the Python path's raises) and to an eventfd of
    its own (the thread's), as the daemon's EventfdWires give the thread one."""

    def __init__(self, out: list[int], vectors: int) -> None:
        super().__init__(out.append)
        self.fds = [os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC) for _ in range(vectors)]

    def fd(self, vec: int) -> int:
        return self.fds[vec]

    def take(self) -> list[int]:
        """The vectors the thread raised since the last look, each as often as raised."""
        got = []
        for vec, fd in enumerate(self.fds):
            try:
                got += [vec] * os.eventfd_read(fd)
            except BlockingIOError:
                pass
        return got

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)


class ThreadedDriver(LoggedDriver):
    """The reference driver whose logged writes the doorbell thread serves: :meth:`flush`
    is one doorbell ring and whatever the thread hands back, applied as the daemon's step."""

    def __init__(self, chip: str = "npu4") -> None:
        super().__init__(True, chip)
        fn = self.fn
        assert self.dp is not None
        self.dp.threaded = True
        # the thread raises vectors itself: no observer may watch them (jobs.md §7)
        fn.observers = tuple(o for o in fn.observers if not isinstance(o, _RaisedLog))
        self.wires = FdWires(self.td.delivered, fn.chip.msix.vectors)
        fn.msix.wires = self.wires
        self.ctrl = mmap.mmap(-1, P.CTRL_SIZE)
        self.bell, self.kick, self.notify = (os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
                                             for _ in range(3))
        self.head = 0
        self.handbacks = 0
        self.slot = -1

    def start(self) -> None:
        dp = self.dp
        assert dp is not None and dp.start(lambda vec: self.slot)
        dp.enter()
        self.slot = dp.session_add(self.ctrl, self.bell, self.kick, self.notify)
        dp.leave()
        assert self.slot >= 0

    def stop(self) -> None:
        dp = self.dp
        assert dp is not None
        dp.enter()
        dp.session_remove(self.slot)
        dp.leave()
        dp.stop()
        for fd in (self.bell, self.kick, self.notify):
            os.close(fd)
        self.wires.close()
        self.ctrl.close()

    def step(self, work: Callable[[], None] = lambda: None) -> None:
        """One daemon step: the lock, the sync, ``work``, the re-arm."""
        dp = self.dp
        assert dp is not None
        dp.enter()
        try:
            work()
        finally:
            dp.leave()

    def flush(self) -> None:
        dp, ctrl = self.dp, self.ctrl
        assert dp is not None
        if not dp.running:
            super().flush()
            return
        self.step()  # whatever the case changed since is armed from the live state
        if not self.log:
            return
        for bar, off, val in self.log:
            at = P.CTRL_OFF_ENTRY0 + (self.head % P.LOG_ENTRIES) * P.LOG_ENTRY.size
            P.LOG_ENTRY.pack_into(ctrl, at, bar, off, val, 0)
            self.head += 1
        self.log = []
        struct.pack_into("<Q", ctrl, P.CTRL_OFF_HEAD, self.head)
        os.eventfd_write(self.bell, 1)
        # the thread is done when the log is empty and it notified, or it handed back
        while True:
            r, _, _ = select.select([self.kick, self.notify], [], [], LIVENESS_S)
            assert r, "the doorbell thread neither answered nor handed back"
            if self.kick in r:
                os.eventfd_read(self.kick)
                self.handbacks += 1
                break
            os.eventfd_read(self.notify)
            if struct.unpack_from("<Q", ctrl, P.CTRL_OFF_TAIL)[0] == self.head:
                break
        self.step(self._apply_rest)
        self.td.delivered += self.wires.take()

    def _apply_rest(self) -> None:
        """The daemon's drain of what the thread handed back (Connection.drain_write_log)."""
        dp, ctrl, fn = self.dp, self.ctrl, self.fn
        assert dp is not None
        tail = struct.unpack_from("<Q", ctrl, P.CTRL_OFF_TAIL)[0]
        fn.hold_irqs()
        try:
            tail = dp.apply(ctrl, tail, self.head, fn.mmio_write, None)  # type: ignore[arg-type]
            while tail < self.head:
                at = P.CTRL_OFF_ENTRY0 + (tail % P.LOG_ENTRIES) * P.LOG_ENTRY.size
                bar, off, val, _ = P.LOG_ENTRY.unpack_from(ctrl, at)
                fn.mmio_write(bar, off, val, None)
                tail += 1
        finally:
            fn.release_irqs()
        struct.pack_into("<Q", ctrl, P.CTRL_OFF_TAIL, tail)


class ThreadedWorld(World):
    """test_datapath's world, its log served by the doorbell thread."""

    def __init__(self) -> None:  # noqa: D107 - World's, with the threaded driver
        real = LoggedDriver
        import tests.test_datapath as td

        td.LoggedDriver = lambda fast: ThreadedDriver()  # type: ignore[assignment,misc]
        try:
            super().__init__(True)
        finally:
            td.LoggedDriver = real  # type: ignore[misc]
        assert isinstance(self.d, ThreadedDriver)
        self.d.start()


def _without(state: Any, *names: str) -> Any:
    return dataclasses.replace(state, **{n: () for n in names})


@pytest.mark.parametrize(("case", "kind"), CASES, ids=[c.__name__ for c, _ in CASES])
def test_thread_and_python_paths_agree(case: Callable[[World], None], kind: str) -> None:
    """Every C-path case: the thread's answers, then Python's for what it handed back, end
    in the replies and state of the Python path."""
    t = ThreadedWorld()
    try:
        case(t)
        t_out = t.outcome()
    finally:
        t.d.stop()
    p = World(False)
    case(p)
    p_out = p.outcome()
    assert t_out[0] == p_out[0], "replies differ"
    assert t_out[0], "the case got no reply at all"
    st, d = t.d.stats, t.d
    assert isinstance(d, ThreadedDriver)
    if kind == "fast":  # the thread answered every job: one interrupt per batch each way
        assert st["fast_jobs"] == len(t_out[0]) and st["fast_thread"] and not d.handbacks
        assert collections.Counter(t_out[2]) == collections.Counter(p_out[2]), "interrupts differ"
        assert t_out[3] == p_out[3], "saved states differ"
    else:
        # a hand-back splits a batch: the thread's part and Python's raise the vector once
        # each, so MSI-X's delivery count may be one higher; everything else is equal
        assert _without(t_out[3], "msix_stats") == _without(p_out[3], "msix_stats")
    if kind == "fallback":
        assert d.handbacks or st["fast_fallbacks"]


@pytest.mark.parametrize("masked_first", [False, True], ids=["mask_stored", "unmask_stored"])
def test_a_mask_bit_stored_before_its_log_entry_rules_the_next_raise(masked_first: bool) -> None:
    """A client stores a table write into BAR memory before it appends the write-log entry
    (docs/spec/protocol.md "The write log"). A reply in between is raised by the mask bit
    in the table, on the thread as in Python's raise, which reads it from the BAR: a mask
    stored pends the vector, an unmask stored (the vector masked through the log when the
    thread was armed) delivers it."""
    outs = []
    for w in (ThreadedWorld(), World(False)):
        try:
            msix = w.d.fn.msix
            ctrl = msix._ctrl_off(w.chan.vector)  # noqa: SLF001
            if masked_first:  # through the write log, as a client masks it
                w.d.log.append((msix.layout.bar, ctrl, MSIX_ENTRY_CTRL_MASKBIT))
            w.ctx.submit([Cmd(NOP)])
            w.drain()
            assert msix.pending(w.chan.vector) == masked_first
            msix.mem[ctrl] ^= MSIX_ENTRY_CTRL_MASKBIT
            before = dict(msix.stats)
            w.ctx.submit([Cmd(NOP)])
            outs.append(w.outcome())
            raised = {k: msix.stats[k] - before[k] for k in ("delivered", "pended")}
            assert raised == ({"delivered": 1, "pended": 0} if masked_first
                              else {"delivered": 0, "pended": 1})
        finally:
            if isinstance(w.d, ThreadedDriver):
                w.d.stop()
    assert outs[0][2:] == outs[1][2:] and len(outs[0][0]) == len(outs[1][0]) == 2


def test_a_doorbell_entry_then_a_mgmt_entry_in_one_log() -> None:
    """[job, mgmt-channel write, job] in one ring of the doorbell: the thread answers the
    first job, hands the log back at the mgmt entry (its interrupt register: never C's),
    Python applies it and the second job, in order; every job answered once."""
    t = ThreadedWorld()
    p = World(False)
    try:
        for w in (t, p):
            w.ctx.submit([Cmd(NOP)])
            mgmt = w.d.device.mailbox.channels[0].intr_reg  # its value again: no change
            w.d.log.append((*w.d.chip.dev_to_bar(mgmt), w.d.fn.regs.read_dev(mgmt)))
            w.ctx.submit([Cmd(NOP)])
            w.drain()
        d = t.d
        assert isinstance(d, ThreadedDriver)
        assert d.handbacks == 1 and t.d.stats["fast_handbacks"] == 1
        t_out, p_out = t.outcome(), p.outcome()
        assert len(t_out[0]) == 2 and t_out[0] == p_out[0]
        assert t.d.stats["fast_jobs"] == 2  # C answered the second job too, inside Python's drain
        assert _without(t_out[3], "msix_stats") == _without(p_out[3], "msix_stats")
    finally:
        t.d.stop()


def test_a_masked_vector_pends_while_the_thread_answers() -> None:
    """The thread answers a job whose vector is masked: it sets the vector's PBA bit (as
    MsixController.raise_vector does) instead of writing its eventfd; the unmask, a Python
    step, delivers it. The MSI-X counts end as on the Python path."""
    t = ThreadedWorld()
    p = World(False)
    try:
        for w in (t, p):
            msix = w.d.fn.msix
            vec = w.chan.vector
            ctrl_off = msix._ctrl_off(vec)  # noqa: SLF001
            fn, step = w.d.fn, w.d.step if isinstance(w.d, ThreadedDriver) else (lambda f: f())
            step(functools.partial(fn.mmio_write, msix.layout.bar, ctrl_off, 1, None))  # masked
            before = len(w.d.td.delivered)
            w.ctx.submit([Cmd(NOP)])
            w.d.flush()
            assert msix.pending(vec) and len(w.d.td.delivered) == before
            step(functools.partial(fn.mmio_write, msix.layout.bar, ctrl_off, 0, None))  # unmasked
            assert not msix.pending(vec) and w.d.td.delivered[before:] == [vec]
            w.drain()
            assert len(w.replies) == 1
        d = t.d
        assert isinstance(d, ThreadedDriver) and d.dp is not None
        assert not d.handbacks and d.stats["fast_thread"] and d.dp.mask >> t.chan.index & 1
        assert t.outcome()[3] == p.outcome()[3]
    finally:
        t.d.stop()


def test_counters_fold_exactly_and_a_removed_session_is_never_served() -> None:
    """The thread's counts reach the Python counters at the next step; a session removed
    from the thread is not served even when its doorbell still rings."""
    t = ThreadedWorld()
    p = World(False)
    try:
        for w in (t, p):
            for _ in range(5):
                w.ctx.submit([Cmd(NOP)])
                w.drain()
        d = t.d
        assert isinstance(d, ThreadedDriver) and d.dp is not None
        assert d.stats["fast_jobs"] == 5 and d.stats["fast_thread"] >= 5
        # one session touched per batch, its irq_wakes clear: one notify each, folded too
        assert d.stats["fast_notifies"] == d.stats["fast_thread"]
        ts, ps = t.d.fn.save(), p.d.fn.save()
        assert ts.stats == ps.stats and ts.device == ps.device
        # a sentinel session, in a slot of its own: its log's one entry (a register the
        # thread never takes) is handed back through its kick once the thread served it
        sent = mmap.mmap(-1, P.CTRL_SIZE)
        sfds = [os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC) for _ in range(3)]
        sslot = -1

        def add_sentinel() -> None:
            nonlocal sslot
            sslot = d.dp.session_add(sent, *sfds)  # type: ignore[union-attr]

        d.step(add_sentinel)
        assert sslot >= 0 and sslot != d.slot
        try:
            d.step(lambda: d.dp.session_remove(d.slot))  # type: ignore[union-attr]
            t.ctx.submit([Cmd(NOP)])
            for bar, off, val in d.log:  # into the log, and ring: nobody may answer
                at = P.CTRL_OFF_ENTRY0 + (d.head % P.LOG_ENTRIES) * P.LOG_ENTRY.size
                P.LOG_ENTRY.pack_into(d.ctrl, at, bar, off, val, 0)
                d.head += 1
            d.log = []
            struct.pack_into("<Q", d.ctrl, P.CTRL_OFF_HEAD, d.head)
            os.eventfd_write(d.bell, 1)
            # then the sentinel rings: once it is handed back, the thread has taken every
            # event that was ready before (epoll reports them in the order they came)
            P.LOG_ENTRY.pack_into(sent, P.CTRL_OFF_ENTRY0, d.dp.doorbells[0], 0, 0, 0)
            struct.pack_into("<Q", sent, P.CTRL_OFF_HEAD, 1)
            os.eventfd_write(sfds[0], 1)
            r, _, _ = select.select([sfds[1]], [], [], LIVENESS_S)
            assert r, "the doorbell thread never served the sentinel session"
            d.step()
            assert struct.unpack_from("<Q", d.ctrl, P.CTRL_OFF_TAIL)[0] < d.head
            d.slot = d.dp.session_add(d.ctrl, d.bell, d.kick, d.notify)  # for stop()
        finally:
            d.step(lambda: d.dp.session_remove(sslot))  # type: ignore[union-attr]
            for fd in sfds:
                os.close(fd)
            sent.close()
    finally:
        t.d.stop()


# -- real daemons ----------------------------------------------------------------------------
def _status(emu: Any) -> dict[str, Any]:
    from xdna_emu.control import ControlClient

    with ControlClient(emu.socket) as cc:
        cc.version()
        return cc.status()


def _nop_jobs(emu: Any, fw: Any, n: int) -> dict[str, Any]:
    """``n`` nop jobs and a chain on a fresh context of a new driver session; the daemon's
    status while the session is still open."""
    from xdna_emu.runtime import Device

    with Device.open(emu.socket, firmware_path=fw) as dev:
        ctx = dev.context()
        cmds = [ctx.command("nop") for _ in range(3)]
        for i in range(n):
            ctx.submit(cmds[i % 3]).wait(5)
        ctx.chain(cmds).wait(5)
        return _status(emu)


@pytest.mark.parametrize("xdna_datapath", ["c"])
def test_daemon_thread_counts_match_the_python_path(xdna_emulator_factory: Any,
                                                   xdna_firmware_dir: Any) -> None:
    """The same jobs on a threaded daemon and a Python one: every device counter, channel
    count and MSI-X count in the status is the same; the thread answered the jobs."""
    from xdna_emu.datapath import DATAPATH_ENV

    got = {}
    for path in ("c", "python"):
        emu = xdna_emulator_factory(env={DATAPATH_ENV: path})
        got[path] = _nop_jobs(emu, xdna_firmware_dir, 20)
    c, py = got["c"], got["python"]
    assert c["stats"]["fast_jobs"] == 21 and c["stats"]["fast_thread"] >= 20
    # the thread's notifies are folded too (a waiter with irq_wakes needs none: a bound)
    assert 0 <= c["stats"]["fast_notifies"] <= c["stats"]["fast_thread"]
    text = format_status(status_view(c))
    assert f"doorbell thread wake-ups {c['stats']['fast_thread']}  hand-backs" in text
    assert f"notifies {c['stats']['fast_notifies']}" in text and "C job path jobs 21" in text
    assert "doorbell thread" not in format_status(status_view(py))
    assert c["device"]["counters"] == py["device"]["counters"]
    assert c["device"]["counters"]["jobs_completed"] == 21
    # deliveries are one per batch, and where a batch ends depends on who was faster:
    # the counts of what was raised (above) are exact, deliveries only bounded
    assert c["msix"]["delivered"] >= 21 and not c["msix"]["dropped"] and not c["msix"]["pended"]

    def chans(st: dict[str, Any]) -> list[Any]:
        return [(ch["index"], ch["msgs_in"], ch["msgs_out"]) for ch in st["device"]["channels"]]

    assert chans(c) == chans(py) and len(chans(c)) == 2
    ctxs = [(x["submitted"], x["completed"]) for x in c["device"]["contexts"]]
    assert ctxs == [(21, 21)]


def _nop_job(shim: Any) -> Any:
    from tests.test_hwctx_e2e import Job
    from xdna_emu import kernels as K

    return Job(shim, K.Desc(K.Kernel.NOP))


@pytest.mark.parametrize("xdna_datapath", ["c"])
def test_daemon_quiesces_the_thread_while_jobs_flow(xdna_emulator: Any, xdna_shim: Any) -> None:
    """Jobs flow on one context (answered by the thread) while the driver creates and
    destroys other contexts, changes and reads the power state and asks for the status
    (each a Python step that takes the device lock, syncs and re-arms): every job
    completes and the counts are exact. Suspend and resume between flows, then a function
    reset under flowing jobs: the daemon serves on, the thread answers the next jobs."""
    import threading

    from xdna_emu.shim import ErtState, Shim, ShimError

    shim = xdna_shim
    ctx = shim.hwctx_create()
    job = _nop_job(shim)
    done: list[ErtState] = []
    stop = threading.Event()
    errors: list[BaseException] = []

    def flow() -> None:
        try:
            while not stop.is_set():
                done.append(job.run(ctx))
        except ShimError as exc:  # only the reset may end a job
            errors.append(exc)

    def flowing(work: Callable[[], None]) -> None:
        stop.clear()
        t = threading.Thread(target=flow)
        t.start()
        try:
            work()
        finally:
            stop.set()
            t.join()

    def churn() -> None:
        for level in ("low", "default", "high", "default"):
            other = shim.hwctx_create()
            shim.hwctx_destroy(other)
            shim.set_power_mode(level)
            assert shim.power()["mode"] == level
            assert _status(xdna_emulator)["stats"]["fast_thread"] > 0

    jobs0 = _status(xdna_emulator)["device"]["counters"]["jobs_completed"]
    flowing(churn)
    shim.suspend()
    shim.resume()
    flowing(churn)
    assert not errors and done and set(done) == {ErtState.COMPLETED}
    st = _status(xdna_emulator)
    assert st["device"]["counters"]["jobs_completed"] == jobs0 + len(done)
    mine = st["device"]["contexts"]
    assert len(mine) == 1 and mine[0]["submitted"] == mine[0]["completed"]
    assert st["stats"]["fast_jobs"] >= len(done) - 2  # at most a job per resume on Python
    def reset() -> None:  # DEVICE_RESET from another session (docs/spec/protocol.md)
        from xdna_emu.control import ControlClient

        with ControlClient(xdna_emulator.socket) as cc:
            cc.version()
            cc.call(P.Cmd.DEVICE_RESET)

    flowing(reset)  # the jobs end with an error or not; the daemon goes on
    shim.close()
    before = _status(xdna_emulator)["stats"]["fast_jobs"]
    with Shim.open(xdna_emulator.socket) as again:
        again.probe()
        ctx = again.hwctx_create()
        assert _nop_job(again).run(ctx) == ErtState.COMPLETED
        assert _status(xdna_emulator)["stats"]["fast_jobs"] == before + 1


_CLIENT = """
import sys
sys.path.insert(0, sys.argv[2])
from tests.test_doorbell import _nop_job
from xdna_emu.shim import Shim
s = Shim.open(sys.argv[1])
s.attach()
ctx = s.hwctx_create()
job = _nop_job(s)
job.run(ctx)
print("go", flush=True)
while True:
    job.run(ctx)
"""


@pytest.mark.parametrize("xdna_datapath", ["c"])
def test_a_client_killed_while_the_thread_serves_it(xdna_emulator: Any, xdna_shim: Any) -> None:
    """A client process running jobs as fast as the thread answers them is killed, three
    times: the daemon drops each session (its log leaves the thread under the lock before
    its page and eventfds go) and serves the driver's jobs on, through the thread."""
    import signal
    import subprocess
    import sys
    from pathlib import Path

    from xdna_emu.shim import ErtState

    root = str(Path(__file__).resolve().parent.parent)
    xdna_shim.set_autosuspend_ms(0)  # the driver keeps the device awake for the clients
    ctx = xdna_shim.hwctx_create()
    for _ in range(3):
        p = subprocess.Popen([sys.executable, "-c", _CLIENT, str(xdna_emulator.socket), root],
                             stdout=subprocess.PIPE, text=True)
        try:
            assert p.stdout is not None and p.stdout.readline().strip() == "go"
        finally:
            p.send_signal(signal.SIGKILL)
            p.wait()
    before = _status(xdna_emulator)["stats"]
    assert _nop_job(xdna_shim).run(ctx) == ErtState.COMPLETED
    after = _status(xdna_emulator)
    assert after["stats"]["fast_jobs"] == before["fast_jobs"] + 1
    assert after["sessions"] == 2  # the driver and this status client: the killed are gone


def test_a_step_arms_again_only_when_the_arming_inputs_changed() -> None:
    """A step that changed nothing the arming reads leaves the channels armed as they were;
    a new context (a mgmt message) arms afresh, its channel's doorbell included."""
    t = ThreadedWorld()
    try:
        d = t.d
        assert isinstance(d, ThreadedDriver) and d.dp is not None
        t.ctx.submit([Cmd(NOP)])
        t.drain()
        armed = dict(d.dp._armed)  # noqa: SLF001
        assert armed and d.dp.mask >> t.chan.index & 1
        d.step()
        assert not d.dp._rearmed and d.dp._armed == armed  # noqa: SLF001
        ctx2 = t.another()
        d.step()
        assert d.dp._rearmed  # noqa: SLF001
        assert d.dp.mask >> (1 + ctx2.id) & 1  # context i has channel 1 + i (jobs.md §1)
        ctx2.submit([Cmd(NOP)])
        t.drain()
        assert len(t.replies) == 2 and d.stats["fast_jobs"] == 2 and not d.handbacks
    finally:
        t.d.stop()


@pytest.mark.parametrize("xdna_datapath", ["c"])
def test_daemon_thread_answers_a_polled_contexts_jobs(xdna_emulator: Any, xdna_shim: Any) -> None:
    """A TURBO context polls its ring and has no interrupt eventfd: the thread answers its
    jobs all the same (setting the vector's PBA bit, as the MSI-X model does), and the
    Python loop is never handed one."""
    from xdna_emu.shim import ErtState

    shim = xdna_shim
    shim.set_power_mode("turbo")
    ctx = shim.hwctx_create()
    assert shim.hwctx_info(ctx)["polled"]
    job = _nop_job(shim)
    assert job.run(ctx) == ErtState.COMPLETED
    before = _status(xdna_emulator)
    for _ in range(20):
        assert job.run(ctx) == ErtState.COMPLETED
    after = _status(xdna_emulator)
    b, a = before["stats"], after["stats"]
    assert a["fast_jobs"] - b["fast_jobs"] == 20 and a["fast_thread"] > b["fast_thread"]
    assert a["fast_handbacks"] == b["fast_handbacks"]
    assert after["msix"]["pended"] > before["msix"]["pended"]
    assert after["device"]["counters"]["jobs_completed"] - \
        before["device"]["counters"]["jobs_completed"] == 20


# -- the thread's limits ---------------------------------------------------------------------
def _fill_slots(dp: Any) -> list[tuple[int, mmap.mmap, int]]:
    """Take every session slot of the thread with dummy logs (the step's lock held)."""
    held = []
    dp.enter()
    try:
        while True:
            m = mmap.mmap(-1, P.CTRL_SIZE)
            fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
            slot = dp.session_add(m, fd, fd, fd)
            if slot < 0:
                os.close(fd)
                m.close()
                return held
            held.append((slot, m, fd))
    finally:
        dp.leave()


def test_a_session_the_thread_cannot_take_kicks_every_write_to_the_loop() -> None:
    """With every slot of the thread taken, a new session is told of no doorbell (its count
    stays 0), so its job's writes kick the Python loop, which answers them; a live doorbell
    published to it would ring an eventfd nobody watches and the job would never run."""
    from tests.test_hwctx_e2e import Job
    from xdna_emu import kernels as K
    from xdna_emu.daemon import NOTIFY_DEFER_NS, POLL_RECENT_NS, SPIN_NS
    from xdna_emu.shim import ErtState
    from xdna_emu.testing.inproc import InProcess

    with InProcess("npu4") as ip:
        d = ip.daemon
        dp = d.datapath
        assert dp is not None
        assert dp.start(d._vector_slot, (SPIN_NS, POLL_RECENT_NS, NOTIFY_DEFER_NS))  # noqa: SLF001
        held = _fill_slots(dp)
        try:
            shim = ip.probe()
            (sess,) = [s for s in d.sessions.values() if s.w32 is not None]
            assert sess.bell_slot == -1
            assert sess.w32[P.CTRL_OFF_DOORBELL_COUNT >> 2] == 0
            assert sess.w32[P.CTRL_OFF_DOORBELL_MASK >> 2] == 0
            ctx = shim.hwctx_create()
            job = Job(shim, K.Desc(K.Kernel.NOP))
            assert sess.w32[P.CTRL_OFF_DOORBELL_MASK >> 2] == 0  # nor once a channel is live
            ip.call(shim.wait, ctx, shim.exec(ctx, job.cmd), 2000)
            assert shim.cmd_state(job.cmd) == ErtState.COMPLETED
        finally:
            dp.enter()
            for slot, _m, _fd in held:
                dp.session_remove(slot)
            dp.leave()
            dp.stop()
            for _slot, m, fd in held:
                os.close(fd)
                m.close()


def test_a_step_that_fails_to_begin_leaves_the_device_lock_free() -> None:
    """An error while a step takes the thread's state back releases the device lock, so the
    thread, the next step and the daemon's stop can still take it."""
    import threading

    t = ThreadedWorld()
    d = t.d
    assert isinstance(d, ThreadedDriver) and d.dp is not None
    try:
        t.ctx.submit([Cmd(NOP)])
        t.drain()
        dp = d.dp

        def broken() -> None:
            raise RuntimeError("planted")

        tstats = dp._tstats  # noqa: SLF001
        dp._tstats = types.SimpleNamespace(batches=1)  # as if the thread ran: enter() folds  # noqa: SLF001
        dp._fold = broken  # type: ignore[method-assign]  # noqa: SLF001
        try:
            with pytest.raises(RuntimeError, match="planted"):
                dp.enter()
        finally:
            del dp._fold  # noqa: SLF001
            dp._tstats = tstats  # noqa: SLF001
        took = threading.Event()

        def step() -> None:
            dp.enter()
            dp.leave()
            took.set()

        th = threading.Thread(target=step, daemon=True)
        th.start()
        th.join(LIVENESS_S)
        held = not took.is_set()
        if held:  # free it for the thread and stop(), then fail
            dp.lib.xdp_unlock(dp._dev)  # noqa: SLF001
            th.join(LIVENESS_S)
        assert not held, "the device lock stayed held after a failed enter()"
    finally:
        t.d.stop()


# -- the arming's inputs, each pinned (docs/spec/jobs.md §7 "Quiesce") ------------------------
def _held_by_a_hang(t: ThreadedWorld) -> None:
    """A job hangs: its message stays queued (the engine's hold bump)."""
    t.ctx.submit([Cmd(HANG)])
    d = t.d
    log, d.log = d.log, []
    d.step(lambda: [d.fn.mmio_write(b, o, v, None) for b, o, v in log])  # the model's own path


def _a_reply_waits_then_goes(t: ThreadedWorld) -> None:
    """A reply cannot go out (the host's ring is full): it waits, C may not answer behind
    it; in a later step the host frees the ring and the reply goes: the channel is armed
    again (the bump when the last waiting reply leaves)."""
    d, ch = t.d, t.chan
    regs = d.device.regs
    head = regs.read_dev(ch.i2x_head_reg)
    d.step(lambda: (regs.write_dev(ch.i2x_head_reg, ch.i2x_tail + 4),
                    ch.transmit(0x1D00_0F00, Opcode.CONFIG_CU, bytes(4))))
    assert ch.outq and not d.dp.mask >> ch.index & 1  # type: ignore[union-attr]
    d.step(lambda: (regs.write_dev(ch.i2x_head_reg, head), ch.on_i2x_head(head)))
    assert not ch.outq


def _a_delayed_reply(t: ThreadedWorld) -> None:
    """A delayed send (the fault interposer's timers) puts a reply into a ring the thread's
    C copy serves: Python moved a cursor C holds (the mirrored-channel bump)."""
    d, ch = t.d, t.chan
    dev = d.device
    d.step(lambda: (dev.schedule(0, "mailbox_send", ch.index, ch.serial, 0x1D00_0F00,
                                 int(Opcode.CONFIG_CU), bytes(4)), dev.poll()))


def _a_wrap_applied_by_python(t: ThreadedWorld) -> None:
    """The client wraps its x2i ring with a TOMBSTONE and nothing else, and the step applies
    that tail write in Python (a REGION_WRITE does): Python's head moves to 0 while C's copy
    of it does not (the consumed-cursor bump)."""
    d, ch, hc = t.d, t.chan, t.ctx.chan
    struct.pack_into("<I", hc.x2i, hc.x2i_tail, TOMBSTONE)
    hc.x2i_tail = 0
    bar, off = d.fn.chip.dev_to_bar(ch.x2i_tail_reg)
    d.step(lambda: d.fn.mmio_write(bar, off, 0, None))


def _cu_table(t: ThreadedWorld) -> None:
    lay = LAYOUTS[Opcode.CONFIG_CU]
    n = len(lay.req.unpack(bytes(lay.req.size)))
    ctxfw, ctx = t.d.device.ctx, t.d.device.ctx.contexts[t.ctx.id]
    req = Message(int(Opcode.CONFIG_CU), 0x1D00_0F00,
                  lay.req.pack(*([len(ctx.cus) + 1, *ctx.cus, ctx.cus[0]] + [0] * n)[:n]))
    t.d.step(lambda: ctxfw._user_op(ctx, req))  # noqa: SLF001


def _heap_grows(t: ThreadedWorld) -> None:
    ctxfw = t.d.device.ctx
    t.d.step(lambda: ctxfw._host_buffer(Opcode.ADD_HOST_BUFFER,  # noqa: SLF001
                                        (t.ctx.id, 0x6000_0000, 0x1000), False))


def _suspended_then_resumed(t: ThreadedWorld) -> None:
    fw = t.d.device.fw
    t.d.step(lambda: fw._suspend(fw.mgmt, None, ()))  # noqa: SLF001
    assert not t.d.dp.mask  # type: ignore[union-attr]
    t.d.step(lambda: fw._resume(fw.mgmt, None, ()))  # noqa: SLF001


def _fw_ring_on_then_off(t: ThreadedWorld, on: Opcode, off: Opcode, addr: int) -> None:
    """The firmware log or trace ring starts (C answers no job: each is logged), then
    stops (C may answer again)."""
    ring = bytearray(0x4000)
    d = t.d
    d.iommu.map(0, addr, len(ring), DMA_READ | DMA_WRITE, None, mem=ring)
    if on == Opcode.CONFIG_FW_LOG:
        d.msg_ok(on, addr, len(ring), *(0,) * 5)
    else:
        d.msg_ok(on, 0xFFFFFFFF, 1, 0, addr, len(ring))
    d.step()
    assert not d.dp.mask  # type: ignore[union-attr]
    if off == Opcode.CONFIG_FW_LOG:
        d.msg_ok(off, 0, 0, *(0,) * 5)
    else:
        d.msg_ok(off, 0)
    d.step()


def _function_masked(t: ThreadedWorld) -> None:
    fn = t.d.fn
    off = fn.config.msix_cap + MSIX_FLAGS
    ctrl = fn.config.msix_control | MSIX_FLAGS_MASKALL
    t.d.step(lambda: fn.config_write(off, ctrl.to_bytes(2, "little")))


def _bus_master_off(t: ThreadedWorld) -> None:
    fn = t.d.fn
    cmd = fn.config.command & ~CMD_MASTER
    t.d.step(lambda: fn.config_write(COMMAND, cmd.to_bytes(2, "little")))


def _eventfd_replaced(t: ThreadedWorld) -> None:
    """SET_IRQS gives the vector a new eventfd: the thread must write the new one."""
    msix = t.d.fn.msix
    new = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
    t.d.step(lambda: msix.set_eventfds(t.chan.vector, [new]))


def _eventfd_cleared(t: ThreadedWorld) -> None:
    msix = t.d.fn.msix
    t.d.step(lambda: msix.clear_eventfds([t.chan.vector]))


def _restored(t: ThreadedWorld) -> None:
    """A snapshot of this very state put back (the function's bump alone: the channel and
    context objects and the mappings are kept, as a fuzzer's restore keeps them)."""
    fn = t.d.fn
    live = {(pasid, m.address): m.mem for pasid, space in fn.iommu.spaces.items()
            for m in space.maps}
    st = fn.save()
    t.d.step(lambda: fn.restore(st, lambda ms: live[ms.pasid, ms.address]))
    assert fn.iommu.gen == t.d.dp._gen[3]  # noqa: SLF001 - the mappings were kept


def _debug_logging(t: ThreadedWorld) -> None:
    log = logging.getLogger("xdna_emu.fw.mailbox")
    old = log.level
    t.d.step(lambda: log.setLevel(logging.DEBUG))
    log.setLevel(old)


def _created(t: ThreadedWorld) -> None:
    """A second context (CREATE_CONTEXT alone: no CONFIG_CU, no heap) gets channel 2."""
    ctxfw, ctx = t.d.device.ctx, t.d.device.ctx.contexts[t.ctx.id]
    lay = LAYOUTS[Opcode.CREATE_CONTEXT]
    req = list(lay.req.unpack(bytes(lay.req.size)))  # (aie, start_col, num_col, _, _, ncq, ...)
    req[1], req[2], req[5], req[7], req[10] = (ctx.start_col + ctx.num_col, 1, 1, ctx.pasid,
                                               ctx.priority)
    t.d.step(lambda: ctxfw._create(t.d.device.fw.mgmt, None, tuple(req)))  # noqa: SLF001
    assert 1 in ctxfw.contexts and not ctxfw.contexts[1].cus


def _off(t: ThreadedWorld) -> bool:
    """The channel is not armed for the thread: its doorbell is dead, C's flag clear."""
    dp = t.d.dp
    assert dp is not None
    return not dp.mask >> t.chan.index & 1 and not dp.chans[t.chan.index].armed


def _channel_gone(t: ThreadedWorld) -> bool:
    """The destroyed context's channel is not armed for the thread (the mgmt channel may be)."""
    dp, idx = t.d.dp, 1 + t.ctx.id  # context i has channel 1 + i (docs/spec/jobs.md §1)
    assert dp is not None
    return not dp.mask >> idx & 1 and not dp.chans[idx].armed


def _fresh(t: ThreadedWorld) -> bool:
    """The step armed the channel afresh from the live state: armed, C's copy equal."""
    dp, ch = t.d.dp, t.chan
    assert dp is not None
    c = dp.chans[ch.index]
    ctx = t.d.device.ctx.contexts[t.ctx.id]
    return bool(dp._rearmed and dp.mask >> ch.index & 1 and c.armed  # noqa: SLF001
                and (c.x2i_head, c.i2x_tail, c.ncus, c.nchunks)
                == (ch.x2i_head, ch.i2x_tail, len(ctx.cus), len(ctx.chunks)))


def _irq_fd(t: ThreadedWorld) -> int:
    assert t.d.dp is not None
    return int(t.d.dp.chans[t.chan.index].irq_fd)


#: (name, the change, what the step after it must leave): each changes one input of the
#: thread's arming through the model's own code and nothing else, so each fails when the
#: one generation bump at its point of change is removed
INPUTS: list[tuple[str, Callable[[ThreadedWorld], None], Callable[[ThreadedWorld], bool]]] = [
    ("context_destroyed", lambda t: t.d.step(lambda: t.d.device.ctx.drop(
        t.d.device.ctx.contexts[t.ctx.id])), _channel_gone),
    ("context_created", _created, lambda t: bool(t.d.dp.mask >> 2 & 1)),  # type: ignore[union-attr]
    ("channel_failed", lambda t: t.d.step(lambda: t.chan.fail("planted")), _off),
    ("hung", _held_by_a_hang, _off),
    ("reply_waits_then_goes", _a_reply_waits_then_goes, _fresh),
    ("delayed_reply", _a_delayed_reply, _fresh),
    ("wrap_applied_by_python", _a_wrap_applied_by_python, _fresh),
    ("interposer", lambda t: t.d.step(lambda: setattr(t.d.device.mailbox, "interposer",
                                                      _PassOn())), _off),
    ("cu_table", _cu_table, _fresh),
    ("heap_grows", _heap_grows, _fresh),
    ("suspended", lambda t: t.d.step(lambda: t.d.device.fw._suspend(  # noqa: SLF001
        t.d.device.fw.mgmt, None, ())), _off),
    ("suspended_then_resumed", _suspended_then_resumed, _fresh),
    ("fw_log", lambda t: _fw_ring_on_then_off(t, Opcode.CONFIG_FW_LOG, Opcode.CONFIG_FW_LOG,
                                             0x7000_0000), _fresh),
    ("fw_trace", lambda t: _fw_ring_on_then_off(t, Opcode.START_FW_TRACE, Opcode.STOP_FW_TRACE,
                                               0x7100_0000), _fresh),
    ("observer", lambda t: t.d.step(lambda: t.d.fn.observe(_Writes())), _off),
    ("restored", _restored, _fresh),
    ("function_masked", _function_masked, lambda t: _irq_fd(t) == -1),
    ("bus_master_off", _bus_master_off, _off),
    ("eventfd_replaced", _eventfd_replaced,
     lambda t: _irq_fd(t) == t.d.fn.msix.wires.fd(t.chan.vector)),  # type: ignore[attr-defined]
    ("eventfd_cleared", _eventfd_cleared, lambda t: _irq_fd(t) == -1),
    ("mapping_added", lambda t: t.d.step(lambda: t.d.fn.dma_map(
        t.c.pasid, 0x6100_0000, 4096, DMA_READ, mem=bytearray(4096))), _fresh),
    ("debug_logging", _debug_logging, _off),
]


@pytest.mark.parametrize(("change", "after"), [i[1:] for i in INPUTS], ids=[i[0] for i in INPUTS])
def test_each_input_of_the_arming_arms_afresh(change: Callable[[ThreadedWorld], None],
                                             after: Callable[[ThreadedWorld], bool]) -> None:
    """A step that keeps the arming leaves C's copy as it was; a change of any one thing the
    arming reads makes the next step's end arm from the live state (docs/spec/jobs.md §7):
    the model bumps a generation at the point of change, the step compares a few integers."""
    t = ThreadedWorld()
    fn = t.d.fn
    ew = EventfdWires(fn.chip.msix.vectors)  # real eventfd wires: SET_IRQS can replace one
    fn.msix.wires = ew
    fn.msix.set_eventfds(0, [os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
                             for _ in range(fn.chip.msix.vectors)])
    try:
        d = t.d
        assert isinstance(d, ThreadedDriver) and d.dp is not None
        t.ctx.submit([Cmd(NOP)])
        t.drain()
        assert d.dp.mask >> t.chan.index & 1 and d.stats["fast_thread"] == 1
        d.step()
        assert not d.dp._rearmed and d.dp.chans[t.chan.index].armed  # noqa: SLF001 - kept
        change(t)
        assert after(t)
    finally:
        t.d.stop()
        ew.clear()
