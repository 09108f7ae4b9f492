"""The one bounded poll tests use to wait for something a daemon or shim does on its own."""

from __future__ import annotations

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
