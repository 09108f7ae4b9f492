"""One time source for all firmware timing (TDR, response delays, suspend).

The daemon uses real monotonic time; deterministic mode uses a virtual clock that only
moves when told to, so runs replay exactly.
"""

from __future__ import annotations

import time


class Clock:
    """Real monotonic time in nanoseconds."""

    def now_ns(self) -> int:
        return time.monotonic_ns()


class VirtualClock(Clock):
    """Time that advances only through :meth:`advance`."""

    def __init__(self, start_ns: int = 0) -> None:
        self._now = start_ns

    def now_ns(self) -> int:
        return self._now

    def set(self, ns: int) -> None:
        """Jump to ``ns`` (a restored snapshot's time; docs/spec/device.md §4)."""
        self._now = ns

    def advance(self, ns: int) -> None:
        if ns < 0:
            raise ValueError("time cannot go backwards")
        self._now += ns
