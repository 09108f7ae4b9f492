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

A :class:`TrackedArena` (:func:`make_arena` picks it where the kernel allows) knows more:
the pages written since its last look, from userfaultfd's asynchronous write-protection
(untouched pages included: ``WP_UNPOPULATED``) read back with the pagemap's
``PAGEMAP_SCAN`` ioctl, which protects them again in the same call. A restore copies back
only the pages an input wrote (plus those where two snapshots differ); no page is dropped,
so a page is copied in from the file once, not once per input. Its pages are locked in
memory (reclaim would lose the mark of a written page it swaps out); where that is refused
:func:`make_arena` gives the pagemap arena, and :meth:`TrackedArena.untrack` turns a
tracked arena into one in place when a check finds a write the tracking missed.
"""

from __future__ import annotations

import ctypes
import fcntl
import gc
import mmap
import os
import struct
import weakref
from collections import Counter
from collections.abc import Mapping
from typing import Any

import numpy as np


def copy_one_level(v: Any, kinds: tuple[type, ...]) -> Any:
    """A copy of ``v`` when its type is one of the containers ``kinds`` (a snapshot's
    objects mutate them in place), else ``v`` itself: one level deep, so the objects a
    restore puts back share nothing an example changes with the snapshot."""
    t = type(v)
    if t not in kinds:
        return v
    if t is Counter:  # Counter(v) counts v's items one by one
        c: Counter[Any] = Counter()
        dict.update(c, v)
        return c
    return t(v)

PAGE = mmap.PAGESIZE
_PRESENT, _SWAPPED, _FILE = np.uint64(1 << 63), np.uint64(1 << 62), np.uint64(1 << 61)


class Arena:
    """Page-aligned regions of one private file mapping; :meth:`region` hands them out."""

    _FLAGS = mmap.MAP_PRIVATE

    def __init__(self, sizes: list[int], name: str = "xdna-cow") -> None:
        offs, total = [], 0
        for size in sizes:
            offs.append(total)
            total += -(-size // PAGE) * PAGE
        self.size = max(total, PAGE)
        self.pages = self.size // PAGE
        self._fd = os.memfd_create(name, os.MFD_CLOEXEC)
        os.ftruncate(self._fd, self.size)
        self._map = mmap.mmap(self._fd, self.size, flags=self._FLAGS,
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
        self.revert_span(i, 0, len(self._views[i]))

    def revert_span(self, i: int, off: int, size: int) -> None:
        """The pages of region ``i`` from byte ``off`` (page-aligned) for ``size`` bytes
        back to the base."""
        self._map.madvise(mmap.MADV_DONTNEED, self._offs[i] + off, -(-size // PAGE) * PAGE)

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

    def verify(self, delta: tuple[np.ndarray, Any]) -> np.ndarray:
        """The pages whose bytes differ from the state ``delta`` describes (a debug check
        after a :meth:`load`: empty unless a write escaped the tracking)."""
        want = self._base_pages().copy()
        pages, data = delta
        if len(pages):
            want[pages] = np.asarray(data)
        return np.flatnonzero((want != self._by_page).any(axis=1))

    def _base_pages(self) -> np.ndarray:
        """The base, page by page (read from the file, which holds it)."""
        return np.frombuffer(os.pread(self._fd, self.size, 0), dtype=np.uint8).reshape(self.pages, PAGE)

    def close(self) -> None:
        for v in self._views:
            v.release()
        self._by_page = self.array = None  # type: ignore[assignment]
        try:
            self._map.close()
        except BufferError:  # a view is still held elsewhere; the mapping goes with it
            pass
        self._closer()


# userfaultfd, PAGEMAP_SCAN and mmap numbers: the kernel ABI, docs/spec/fuzzing.md §9
_NR_USERFAULTFD = {"x86_64": 323, "aarch64": 282}.get(os.uname().machine)
_UFFD_USER_MODE_ONLY = 1
_UFFD_API = 0xAA
_UFFD_FEATURE_WP_UNPOPULATED, _UFFD_FEATURE_WP_ASYNC = 1 << 13, 1 << 15
_UFFDIO_API, _UFFDIO_REGISTER, _UFFDIO_WRITEPROTECT = 0xC018AA3F, 0xC020AA00, 0xC018AA06
_UFFDIO_REGISTER_MODE_WP, _UFFDIO_WRITEPROTECT_MODE_WP = 1 << 1, 1 << 0
_PAGEMAP_SCAN = 0xC0606610  # _IOWR('f', 16, struct pm_scan_arg), 96 bytes
_PM_SCAN_WP_MATCHING, _PM_SCAN_CHECK_WPASYNC = 1 << 0, 1 << 1
_PAGE_IS_WRITTEN = 1 << 1
_SCAN_ARG = struct.Struct("<12Q")
_REGIONS = 256  # page_region entries per scan call
_MAP_FIXED = 0x10


class TrackingRefused(OSError):
    """The kernel refuses userfaultfd write-protection or ``PAGEMAP_SCAN``: no arena of
    this process will track writes."""


class LockRefused(OSError):
    """``mlock`` refused (``RLIMIT_MEMLOCK``): this arena cannot keep its pages resident,
    so it cannot track writes exactly; a later one may."""


class TrackedArena(Arena):
    """An arena that knows which pages were written since it last looked (userfaultfd's
    asynchronous write-protection, read and re-armed by ``PAGEMAP_SCAN``), so that a
    :meth:`load` rewrites only those pages: docs/spec/fuzzing.md §9.

    Two page sets carry what the scans told: ``_diff``, the pages that may differ from the
    base, and ``_since``, those written since the last :meth:`load`. The restore of the
    snapshot loaded last rewrites the ``_since`` pages alone; another snapshot's rewrites
    ``_diff`` and its own pages. The arena's own stores (the restore's copies) go through a
    second mapping of the same pages (both ``MAP_SHARED``; only the first is registered),
    so they neither fault nor count as an input's writes. The base is a private copy (the
    new file's zeros until :meth:`commit`)."""

    _FLAGS = mmap.MAP_SHARED  # a second mapping of the same pages stores past the tracking

    def __init__(self, sizes: list[int], name: str = "xdna-cow") -> None:
        super().__init__(sizes, name)
        self._uffd = -1
        self._raw_map: mmap.mmap | None = None
        try:
            self._raw_map = mmap.mmap(self._fd, self.size, flags=mmap.MAP_SHARED,
                                      prot=mmap.PROT_READ | mmap.PROT_WRITE)
            #: the restore's stores go here: the same pages, not write-protected, so they
            #: neither fault nor show as an input's writes in the next scan
            self._raw = np.frombuffer(self._raw_map, dtype=np.uint8).reshape(self.pages, PAGE)
            start = self.array.ctypes.data
            # resident for good: reclaim would zap the PTE of a written shmem page, and
            # the next scan would not report it (docs/spec/fuzzing.md §9)
            _mlock(start, self.size)
            try:
                self._uffd = _uffd_open()
                reg = bytearray(struct.pack("<4Q", start, self.size, _UFFDIO_REGISTER_MODE_WP, 0))
                fcntl.ioctl(self._uffd, _UFFDIO_REGISTER, reg, True)
                wp = bytearray(struct.pack("<3Q", start, self.size, _UFFDIO_WRITEPROTECT_MODE_WP))
                fcntl.ioctl(self._uffd, _UFFDIO_WRITEPROTECT, wp, True)
                self._start, self._end = start, start + self.size
                self._vec = (ctypes.c_uint64 * (3 * _REGIONS))()
                self._regions = np.frombuffer(self._vec, dtype=np.uint64).reshape(_REGIONS, 3)
                self._arg = bytearray(_SCAN_ARG.size)
                self._written()
            except OSError as e:
                raise TrackingRefused(e.errno, e.strerror or str(e)) from e
        except BaseException:
            if self._uffd >= 0:
                os.close(self._uffd)
            self._raw = None  # type: ignore[assignment]
            if self._raw_map is not None:
                self._raw_map.close()
            Arena.close(self)
            raise
        self._closer.detach()
        self._closer = weakref.finalize(self, _close_fds, self._fd, self._pagemap, self._uffd)
        self._base = np.zeros((self.pages, PAGE), dtype=np.uint8)  # the new file's zeros
        self._base_data: set[int] = set()  # the base's pages holding a non-zero byte
        self._diff: set[int] = set()
        self._since: set[int] = set()
        self._index: dict[int, int] = {}  # page -> its row in the delta loaded last
        self._rows: tuple[np.ndarray, ...] = ()  # that delta's rows
        self._loaded: object = None  # the delta loaded last (None: unknown)

    def _written(self) -> list[int]:
        """The pages written since the last call, write-protected again by the same call."""
        out: list[int] = []
        start, end, vec = self._start, self._end, ctypes.addressof(self._vec)
        while start < end:
            _SCAN_ARG.pack_into(self._arg, 0, _SCAN_ARG.size,
                                _PM_SCAN_WP_MATCHING | _PM_SCAN_CHECK_WPASYNC, start, end, 0,
                                vec, _REGIONS, 0, 0, _PAGE_IS_WRITTEN, 0, _PAGE_IS_WRITTEN)
            n = fcntl.ioctl(self._pagemap, _PAGEMAP_SCAN, self._arg, True)
            if n:
                base = self._start
                for s, e, _ in self._regions[:n].tolist():
                    out.extend(range((s - base) // PAGE, (e - base) // PAGE))
            if n < _REGIONS:
                break
            start = _SCAN_ARG.unpack_from(self._arg)[4]  # walk_end: where the scan stopped
        return out

    def _fold(self) -> None:
        w = self._written()
        if w:
            self._diff.update(w)
            self._since.update(w)

    def dirty(self) -> np.ndarray:
        """Indexes of the pages that differ from the base."""
        return self.delta()[0]

    def delta(self) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        """The pages that differ from the base and their bytes, one row per page; a page
        not written since the last :meth:`load` shares that delta's row (copy on write)."""
        self._fold()
        at, rows, since, bp, base = self._index, self._rows, self._since, self._by_page, self._base
        pages, out, same = [], [], []
        for p in sorted(self._diff):
            i = at.get(p)
            if i is not None and p not in since:
                row = rows[i]
            else:
                row = bp[p].copy()
                if (row == base[p]).all():
                    same.append(p)
                    continue
                row.flags.writeable = False
            pages.append(p)
            out.append(row)
        self._diff.difference_update(same)
        return np.array(pages, dtype=np.int64), tuple(out)

    def revert(self) -> None:
        self.load(_EMPTY)

    def revert_span(self, i: int, off: int, size: int) -> None:
        self._fold()
        first = (self._offs[i] + off) // PAGE
        last = first + -(-size // PAGE)
        pages = [p for p in self._diff if first <= p < last]
        if pages:
            self._raw[pages] = self._base[pages]
            self._diff.difference_update(pages)
            self._since.update(pages)  # changed since the load, though not by an input

    def load(self, delta: tuple[np.ndarray, Any]) -> None:
        """Put the state ``delta`` describes back, storing only to the pages written since
        the last load and those where the two deltas differ."""
        self._fold()
        raw, base, since = self._raw, self._base, self._since
        if delta is self._loaded:
            if since:
                at, rows = self._index, self._rows
                for p in since:
                    i = at.get(p)
                    raw[p] = base[p] if i is None else rows[i]
        else:
            pages, rows = delta
            old_at, old_rows = self._index, self._rows
            at = {p: i for i, p in enumerate(pages.tolist())}
            for p in self._diff:
                if p not in at:
                    raw[p] = base[p]
            for p, i in at.items():
                j = old_at.get(p)
                if j is None or p in since or old_rows[j] is not rows[i]:
                    raw[p] = rows[i]
            self._index, self._rows = at, rows
        self._diff = set(self._index)
        self._since = set()
        self._loaded = delta

    def commit(self) -> None:
        self._fold()
        for p in self._diff:  # the others hold the base already
            self._base[p] = self._by_page[p]
        self._diff, self._since, self._index, self._rows = set(), set(), {}, ()
        self._loaded = None
        self._base_data = set(np.flatnonzero(self._base.any(axis=1)).tolist())

    def maybe_data(self, regions: Mapping[int, int]) -> dict[int, np.ndarray]:
        """For each ``key: region index``, the pages of that region (indexes from its
        start) that may hold a non-zero byte: those that may differ from the base and those
        where the base is non-zero; every other page is known to be zero. Exact whoever
        stored: the fold's scan sees every store through a view, and the arena's own
        stores (``load``, ``revert_span``) keep ``_diff`` current themselves."""
        self._fold()
        maybe = sorted(self._diff | self._base_data)
        out = {}
        for key, i in regions.items():
            first = self._offs[i] // PAGE  # regions start on a page (Arena.__init__)
            last = first + -(-len(self._views[i]) // PAGE)
            out[key] = np.array([p - first for p in maybe if first <= p < last], dtype=np.int64)
        return out

    def _base_pages(self) -> np.ndarray:
        return self._base

    def verify(self, delta: tuple[np.ndarray, Any]) -> np.ndarray:
        """As :meth:`Arena.verify`, without copying the base: the sparse check a campaign
        runs by default (docs/spec/fuzzing.md §9) stays a small share of the restores."""
        words = PAGE // 8
        now = self.array.view(np.uint64).reshape(self.pages, words)
        bad = (now != self._base.reshape(-1).view(np.uint64).reshape(self.pages, words)).any(axis=1)
        pages, data = delta
        if len(pages):
            bad[pages] = (self._by_page[pages] != np.asarray(data)).any(axis=1)
        return np.flatnonzero(bad)

    def close(self) -> None:
        self._raw = None  # type: ignore[assignment]
        try:
            self._raw_map.close()
        except BufferError:
            pass
        super().close()

    def forget(self, pages: list[int] | None = None) -> None:
        """Lose the record of writes to ``pages`` (default: every page written since the
        last load): a planted tracking miss, for the tests of :meth:`verify`."""
        self._fold()
        if pages is None:
            pages = list(self._since)
        self._diff.difference_update(pages)
        self._since.difference_update(pages)


    def untrack(self, delta: tuple[np.ndarray, Any]) -> None:
        """Become a pagemap :class:`Arena` in place, holding the state ``delta`` describes:
        the file gets the base, the tracked mapping is replaced by a private one at the same
        address (every view stays valid), the userfaultfd goes. What a restore falls back
        to when :meth:`verify` finds a write the tracking missed (docs/spec/fuzzing.md §9)."""
        self._raw[:] = self._base  # the pagemap arena's file holds its base
        got = _libc().mmap(ctypes.c_void_p(self._start), ctypes.c_size_t(self.size),
                           mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_PRIVATE | _MAP_FIXED,
                           self._fd, ctypes.c_long(0))
        if got != self._start:
            err = ctypes.get_errno()
            raise OSError(err, f"mmap: {os.strerror(err)}")
        self._closer.detach()
        os.close(self._uffd)
        self._closer = weakref.finalize(self, _close_fds, self._fd, self._pagemap)
        self._raw = self._base = None  # type: ignore[assignment]
        try:
            self._raw_map.close()  # type: ignore[union-attr]
        except BufferError:
            pass
        self.__class__ = Arena  # type: ignore[assignment]
        self.load(delta)


_EMPTY: tuple[np.ndarray, tuple[np.ndarray, ...]] = (np.zeros(0, dtype=np.int64), ())


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    return libc


def _mlock(start: int, size: int) -> None:
    """Lock ``size`` bytes at ``start`` in memory, or :class:`LockRefused`."""
    if _libc().mlock(ctypes.c_void_p(start), ctypes.c_size_t(size)):
        err = ctypes.get_errno()
        raise LockRefused(err, f"mlock: {os.strerror(err)}")


def _uffd_open() -> int:
    """A userfaultfd with asynchronous write-protection, or OSError."""
    if _NR_USERFAULTFD is None:
        raise OSError("userfaultfd: unknown syscall number on this machine")
    fd = _libc().syscall(_NR_USERFAULTFD, os.O_CLOEXEC | _UFFD_USER_MODE_ONLY)
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"userfaultfd: {os.strerror(err)}")
    try:
        api = bytearray(struct.pack("<3Q", _UFFD_API,
                                    _UFFD_FEATURE_WP_ASYNC | _UFFD_FEATURE_WP_UNPOPULATED, 0))
        fcntl.ioctl(fd, _UFFDIO_API, api, True)
    except OSError:
        os.close(fd)
        raise
    return fd


def make_arena(sizes: list[int], name: str = "xdna-cow") -> Arena:
    """A :class:`TrackedArena` where the kernel offers one, else an :class:`Arena`;
    callers check :func:`available` first. Only a refusal of the tracking itself (the
    userfaultfd or ``PAGEMAP_SCAN`` probe) is remembered for the process: a refused
    ``mlock`` falls back for this arena alone, any other error is raised."""
    global _TRACKED
    if _TRACKED is not False:
        arena: TrackedArena | None = None
        try:
            try:
                arena = TrackedArena(sizes, name)
            except LockRefused:
                gc.collect()  # arenas of dropped harnesses (in cycles) hold locked pages
                arena = TrackedArena(sizes, name)
            if _TRACKED is None:
                try:
                    _TRACKED = _tracks(arena)
                except OSError:
                    _TRACKED = False
            if _TRACKED:
                arena, tracked_arena = None, arena
                return tracked_arena
        except TrackingRefused:
            _TRACKED = False
        except LockRefused:
            pass
        finally:
            if arena is not None:
                arena.close()
    return Arena(sizes, name)


def _tracks(arena: TrackedArena) -> bool:
    """Does a store show in the next scan, and only there?"""
    view = arena.region(0)
    view[0] = view[0]
    return arena._written() == [0] and not arena._written()


def tracked() -> bool | None:
    """Did :func:`make_arena` find write tracking (None: not tried yet)?"""
    return _TRACKED


_TRACKED: bool | None = None


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
