"""Copy-on-write memory with kernel dirty-page tracking, for cheap device snapshots.

An :class:`Arena` is one memfd mapped ``MAP_PRIVATE``: the file holds a *base* (the
power-on state), and every page written since is a private copy the kernel made on the
first store, whoever stored (numpy, a memoryview, the device model, the test driver).
``/proc/self/pagemap`` tells those pages apart (present and not file-backed, or swapped),
so the arena knows its dirty pages without a hook on any write path, and
``madvise(MADV_DONTNEED)`` drops them, which puts the base back in O(dirty pages).

A snapshot is then the dirty pages only (:meth:`Arena.delta`), and a restore is a revert
plus those pages written back (:meth:`Arena.load`): docs/spec/fuzzing.md §9. Where the
kernel does not offer this (no memfd, no pagemap), :func:`available` is False and callers
keep full copies.
"""

from __future__ import annotations

import mmap
import os
import weakref

import numpy as np

PAGE = mmap.PAGESIZE
_PRESENT, _SWAPPED, _FILE = np.uint64(1 << 63), np.uint64(1 << 62), np.uint64(1 << 61)


class Arena:
    """Page-aligned regions of one private file mapping; :meth:`region` hands them out."""

    def __init__(self, sizes: list[int], name: str = "xdna-cow") -> None:
        offs, total = [], 0
        for size in sizes:
            offs.append(total)
            total += -(-size // PAGE) * PAGE
        self.size = max(total, PAGE)
        self.pages = self.size // PAGE
        self._fd = os.memfd_create(name, os.MFD_CLOEXEC)
        os.ftruncate(self._fd, self.size)
        self._map = mmap.mmap(self._fd, self.size, flags=mmap.MAP_PRIVATE,
                              prot=mmap.PROT_READ | mmap.PROT_WRITE)
        self.array = np.frombuffer(self._map, dtype=np.uint8)
        self._by_page = self.array.reshape(self.pages, PAGE)
        self._pagemap = os.open("/proc/self/pagemap", os.O_RDONLY | os.O_CLOEXEC)
        self._pm_off = self.array.ctypes.data // PAGE * 8
        self._views = [memoryview(self._map)[o : o + s] for o, s in zip(offs, sizes, strict=True)]
        self._offs = offs
        # harnesses come and go (one per state-machine run): their descriptors go with them
        self._closer = weakref.finalize(self, _close_fds, self._fd, self._pagemap)

    def region(self, i: int) -> memoryview:
        """Region ``i`` (in the order of the sizes given), a writable byte view."""
        return self._views[i]

    def dirty(self) -> np.ndarray:
        """Indexes of the pages written since the base (or the last :meth:`revert`)."""
        pm = np.frombuffer(os.pread(self._pagemap, 8 * self.pages, self._pm_off), dtype=np.uint64)
        private = ((pm & _PRESENT) != 0) & ((pm & _FILE) == 0)
        return np.flatnonzero(private | ((pm & _SWAPPED) != 0))

    def delta(self) -> tuple[np.ndarray, np.ndarray]:
        """The dirty pages and a copy of their bytes: the state, given the base."""
        pages = self.dirty()
        return pages, self._by_page[pages]

    def revert(self) -> None:
        """Every page back to the base (its private copies dropped)."""
        self._map.madvise(mmap.MADV_DONTNEED)

    def revert_region(self, i: int) -> None:
        """Region ``i`` alone back to the base."""
        start = self._offs[i]
        self._map.madvise(mmap.MADV_DONTNEED, start, -(-len(self._views[i]) // PAGE) * PAGE)

    def load(self, delta: tuple[np.ndarray, np.ndarray]) -> None:
        """Put the state ``delta`` describes back: base plus its pages."""
        self.revert()
        pages, data = delta
        if len(pages):
            self._by_page[pages] = data

    def commit(self) -> None:
        """Make the current contents the base (written into the file), then drop the
        private copies: from here on nothing is dirty."""
        for p in self.dirty():
            os.pwrite(self._fd, self._by_page[p].tobytes(), int(p) * PAGE)
        self.revert()

    def close(self) -> None:
        for v in self._views:
            v.release()
        self._by_page = self.array = None  # type: ignore[assignment]
        try:
            self._map.close()
        except BufferError:  # a view is still held elsewhere; the mapping goes with it
            pass
        self._closer()


def _close_fds(*fds: int) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


def available() -> bool:
    """Does this kernel give memfds, private file mappings and a pagemap that shows a
    written page as dirty, and drop it on MADV_DONTNEED? Checked once, on a probe arena."""
    global _AVAILABLE
    if _AVAILABLE is None:
        try:
            a = Arena([2 * PAGE], "xdna-cow-probe")
            try:
                a.region(0)[PAGE + 3] = 7
                seen = list(a.dirty())
                a.revert()
                _AVAILABLE = seen == [1] and a.region(0)[PAGE + 3] == 0 and not len(a.dirty())
            finally:
                a.close()
        except (OSError, AttributeError, ValueError):
            _AVAILABLE = False
    return _AVAILABLE


_AVAILABLE: bool | None = None
