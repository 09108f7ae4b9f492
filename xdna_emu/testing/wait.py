"""The one bounded poll tests use to wait for something a daemon or shim does on its own."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(probe: Callable[[], T], done: Callable[[T], object] = bool, *,
               timeout: float = 60.0, interval: float = 0.01, what: str = "") -> T:
    """Call ``probe`` until ``done(value)`` holds and return that value.

    The timeout is only an upper bound for a broken run: a passing test never waits for
    it. On timeout an AssertionError names ``what`` and the last value seen.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if done(value):
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for "
                                 f"{what or getattr(probe, '__name__', 'a condition')}; "
                                 f"last value {value!r}")  # fmt: skip
        time.sleep(interval)


def _running_threads(pid: int) -> list[str]:
    """The ids of ``pid``'s threads that are not stopped (or gone)."""
    out = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            continue
        if state not in ("T", "t", "Z", "X"):
            out.append(tid)
    return out


def stop_process(pid: int) -> None:
    """SIGSTOP ``pid`` and wait until every one of its threads stopped. kill() returns once
    the signal is queued: one thread takes it and then stops the others, which may run on
    meanwhile (the daemon's doorbell thread could still answer a message)."""
    os.kill(pid, signal.SIGSTOP)
    wait_until(lambda: _running_threads(pid), lambda r: not r, what=f"process {pid} to stop")
