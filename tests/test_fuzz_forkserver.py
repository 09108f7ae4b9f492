"""The fork server (xdna_emu/fuzz/forkserver.py, docs/spec/fuzzing.md §9): a fork runs on
private copies of everything the parent shares (memfd maps, eventfds, socket pairs, epoll
sets) at the same addresses and fd numbers, and leaves the parent as it was (a listener
keeps its path, and nothing a fork left pending on it); the shim target run in forks gives
what it gives in process."""

from __future__ import annotations

import ctypes
import fcntl
import mmap
import os
import select
import socket
from pathlib import Path

import pytest

from xdna_emu.fuzz.forkserver import ForkError, ForkServer
from xdna_emu.fuzz.lang import Op

pytestmark = pytest.mark.skipif(not ForkServer.available(), reason="no fork/memfd/procfs here")


def _eventfd(count: int) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.eventfd(count, os.O_NONBLOCK | os.O_CLOEXEC)
    assert fd >= 0
    return fd


def _count(fd: int) -> int:
    with open(f"/proc/self/fdinfo/{fd}") as f:
        return next(int(line.split(":")[1], 16) for line in f if line.startswith("eventfd-count"))


def test_a_fork_works_on_private_copies_and_leaves_the_parent_alone(tmp_path: Path) -> None:
    fd = os.memfd_create("fs-test", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    os.ftruncate(fd, 3 * mmap.PAGESIZE)
    fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK)
    a, b = mmap.mmap(fd, 3 * mmap.PAGESIZE), mmap.mmap(fd, 3 * mmap.PAGESIZE)  # two views
    a[:5] = b"hello"
    ev = _eventfd(3)
    s1, s2 = socket.socketpair()
    lsock = socket.socket(socket.AF_UNIX)
    lsock.bind(str(tmp_path / "sock"))
    lsock.listen()
    ep = select.epoll()
    ep.register(ev, select.EPOLLIN)
    ep.register(s2.fileno(), select.EPOLLIN)
    try:
        server = ForkServer()

        def child() -> tuple:
            seals = fcntl.fcntl(fd, fcntl.F_GET_SEALS)
            a[:5] = b"HELLO"  # a store through one view ...
            seen = bytes(b[:5])  # ... is seen through the other (one file)
            ready = [f for f, _ in ep.poll(0)]  # the counter the parent left
            got = int.from_bytes(os.read(ev, 8), "little")
            s1.send(b"ping")
            ready += [f for f, _ in ep.poll(0)]
            c = socket.socket(socket.AF_UNIX)
            c.connect(str(tmp_path / "sock"))  # the parent's listener, shared
            conn, _ = lsock.accept()
            return seals, seen, got, s2.recv(4), ready, conn.fileno() > 0

        for _ in range(2):  # the second fork sees the parent's state, not the first's
            out = server.run(child, 30)
            assert out.ok, out.died
            assert out.value == (fcntl.F_SEAL_SHRINK, b"HELLO", 3, b"ping", [ev, s2.fileno()], True)
        assert bytes(a[:5]) == bytes(b[:5]) == b"hello" and os.pread(fd, 5, 0) == b"hello"
        assert _count(ev) == 3
        s2.setblocking(False)
        with pytest.raises(BlockingIOError):
            s2.recv(4)  # nothing the children sent is left in the parent's pair
        assert server.forks == 2

        def leaves_one() -> None:
            socket.socket(socket.AF_UNIX).connect(str(tmp_path / "sock"))  # never accepted

        assert server.run(leaves_one, 30).ok
        assert server.run(lambda: select.select([lsock], [], [], 0)[0], 30).value == []
        server.close()
    finally:
        for obj in (a, b, s1, s2, lsock, ep):
            obj.close()
        os.close(ev)
        os.close(fd)


def test_a_fork_that_dies_or_hangs_is_reported() -> None:
    server = ForkServer()
    out = server.run(os.abort, 30)
    assert not out.ok and out.died == "signal SIGABRT"
    out = server.run(lambda: 1 / 0, 30)
    assert not out.ok and out.died.startswith("raised ZeroDivisionError")
    out = server.run(lambda: select.select([], [], []), 0.2)  # answers never
    assert not out.ok and out.died.startswith("timed out")


def test_a_fork_server_refuses_a_threaded_process() -> None:
    import threading

    stop = threading.Event()
    t = threading.Thread(target=stop.wait)
    t.start()
    try:
        with pytest.raises(ForkError):
            ForkServer()
    finally:
        stop.set()
        t.join()


def test_shim_target_in_forks_matches_in_process() -> None:
    """The same seed gives the same examples, coverage, corpus and findings either way: a
    fork goes on from the probed device exactly as a replay from a fresh one would."""
    from xdna_emu.fuzz.shim_target import ShimFuzzer

    outs = []
    for fork in (False, True):
        fz = ShimFuzzer("npu4", 4, None, None, fork=fork)
        try:
            out = fz.fuzz(1e9, max_execs=60)
            outs.append(({k: out[k] for k in ("execs", "steps", "coverage", "corpus", "crashes",
                                               "hangs", "unique")}, sorted(fz.features)))
        finally:
            fz.close()
        if fork:
            assert out["forks"] == 60  # every example ran in a fork
    assert outs[0] == outs[1]


def test_shim_target_in_forks_records_findings(tmp_path: Path) -> None:
    """A model finding in a fork is recorded as in process (cut at its step), and a fork
    that dies is a finding on the whole example."""
    from xdna_emu.fuzz.shim_target import ShimFuzzer
    from xdna_emu.fuzz.trace import load

    ops = [Op("call", ("probe",)), Op("fault", ("error_as_success",)), Op("call", ("ctx",)),
           Op("call", ("exec", 0, "fail")), Op("call", ("wait", 0, 3000)), Op("call", ("info", 0))]
    fz = ShimFuzzer("npu4", 1, tmp_path, None, fork=True)
    try:
        fz.run_one(ops)
        assert fz.crashes == 1 and fz.signatures
        (path,) = fz.signatures.values()
        assert load(Path(path)).ops == ops[:5]  # the lie shows at the wait
        fz.session.apply = lambda op: os.abort()  # noqa: ARG005 - what a segfault in C does
        fz.run_one(ops[:2])
        assert ("crash", "fork") in fz.signatures and fz.crashes == 2
    finally:
        fz.close()


def test_cli_shim_target_in_forks_reports_them(tmp_path: Path) -> None:
    """``XDNA_FUZZ_FORK=1`` puts the workers of ``xdna-emu fuzz --target shim`` in fork mode;
    the summary counts the forks beside the rates (every example is one)."""
    import json
    import subprocess
    import sys

    from xdna_emu.fuzz.shim_target import FORK_ENV

    r = subprocess.run([sys.executable, "-m", "xdna_emu.cli", "fuzz", "--target", "shim",
                        "--seconds", "3", "--json", "--seed", "3", "--artifacts", str(tmp_path)],
                       capture_output=True, text=True, timeout=120, env={**os.environ, FORK_ENV: "1"})
    out = json.loads(r.stdout)
    assert out["execs"] > 0 and out["forks"] == out["execs"]
    assert out["execs_per_s"] >= out["wall_execs_per_s"] > 0


def test_in_process_watchdog_is_armed_once_not_per_example(monkeypatch: pytest.MonkeyPatch) -> None:
    """Re-arming faulthandler's watchdog joins its thread (ms on a loaded machine), so the
    in-process loop arms it when its deadline comes within EXAMPLE_WALL_S, not per example,
    and disarms it when the campaign ends; every example still gets EXAMPLE_WALL_S."""
    from xdna_emu.fuzz import shim_target as st

    now = [1000.0]
    arms: list[float] = []
    cancels: list[float] = []
    monkeypatch.setattr(st.time, "monotonic", lambda: now[0])
    monkeypatch.setattr(st.faulthandler, "dump_traceback_later",
                        lambda timeout, exit=False: arms.append(timeout))  # noqa: A002, ARG005
    monkeypatch.setattr(st.faulthandler, "cancel_dump_traceback_later", lambda: cancels.append(now[0]))
    fz = st.ShimFuzzer("npu4", 1, None, None)
    try:
        ops = [Op("call", ("probe",)), Op("call", ("ctx",))]
        for _ in range(4):
            fz.run_one(ops)
            now[0] += 3  # examples 3 s apart: the first arm covers them
        assert arms == [st.EXAMPLE_WALL_S + st.WATCHDOG_SLACK_S]
        now[0] += st.WATCHDOG_SLACK_S  # the armed deadline is now closer than EXAMPLE_WALL_S
        fz.run_one(ops)
        assert len(arms) == 2 and fz._watch_until == now[0] + arms[-1]
    finally:
        fz.close()
    assert cancels == [now[0]] and fz._watch_until == 0.0


def test_shim_target_runs_in_process_when_it_cannot_fork() -> None:
    """A thread running when the first example comes: the fork server refuses, and the
    examples run in process instead."""
    import threading

    from xdna_emu.fuzz.shim_target import ShimFuzzer

    fz = ShimFuzzer("npu4", 1, None, None, fork=True)
    stop = threading.Event()
    t = threading.Thread(target=stop.wait)
    t.start()
    try:
        fz.run_one([Op("call", ("probe",)), Op("call", ("ctx",))])
        assert not fz.fork and fz.execs == 1 and "ctx:ok" in fz.features
    finally:
        stop.set()
        t.join()
        fz.close()


def test_a_fork_server_sees_the_doorbell_thread_but_not_faulthandlers_watchdog() -> None:
    """The daemon's doorbell thread is a C thread (``threading`` does not list it): a fork
    server is refused while one runs, before and after it is made; faulthandler's watchdog
    thread (armed by pytest and the in-process fuzz loop) is no reason to refuse."""
    import faulthandler

    _datapath = pytest.importorskip("xdna_emu._datapath")
    from xdna_emu.datapath import DataPath
    from xdna_emu.pci.function import PciFunction

    dp = DataPath(PciFunction("npu4"), {}, _datapath.ffi, _datapath.lib, threaded=True)
    faulthandler.dump_traceback_later(3600)
    try:
        server = ForkServer()  # the watchdog's thread runs: not counted
        assert dp.start(lambda vec: -1)
        with pytest.raises(ForkError, match="1 doorbell thread"):
            ForkServer()
        with pytest.raises(ForkError, match="1 doorbell thread"):
            server.run(lambda: 1, 30)
        dp.stop()
        assert server.run(lambda: 1, 30).value == 1
        server.close()
    finally:
        dp.stop()
        faulthandler.cancel_dump_traceback_later()
