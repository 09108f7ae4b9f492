"""The IOMMU model: every device access to host memory goes through :meth:`Iommu.translate`.

Two address spaces exist, as on the real platform: the IOVA space (PASID 0, kernel-style
DMA addresses such as the firmware image buffer) and one SVA space per client PASID, where
device addresses are the client's virtual addresses. An access that is not wholly inside
one mapping with the needed permission is an :class:`IommuFault`: it is rejected, logged by
the caller, and never touches other memory.
"""

from __future__ import annotations

import bisect
import mmap
import os
from dataclasses import dataclass, field

DMA_READ = 1
DMA_WRITE = 2


class IommuFault(Exception):
    def __init__(self, pasid: int, addr: int, size: int, why: str) -> None:
        super().__init__(f"IOMMU fault pasid={pasid} addr={addr:#x} size={size:#x}: {why}")
        self.pasid, self.addr, self.size, self.why = pasid, addr, size, why


@dataclass
class Mapping:
    address: int
    size: int
    perm: int
    mem: mmap.mmap | bytearray
    owner: int = 0  # session id that created it

    @property
    def end(self) -> int:
        return self.address + self.size


@dataclass
class AddressSpace:
    starts: list[int] = field(default_factory=list)
    maps: list[Mapping] = field(default_factory=list)

    def find(self, addr: int) -> Mapping | None:
        i = bisect.bisect_right(self.starts, addr) - 1
        if i >= 0:
            m = self.maps[i]
            if m.address <= addr < m.address + m.size:
                return m
        return None

    def overlaps(self, addr: int, size: int) -> bool:
        i = bisect.bisect_right(self.starts, addr + size - 1) - 1
        return i >= 0 and self.maps[i].end > addr

    def insert(self, m: Mapping) -> None:
        i = bisect.bisect_right(self.starts, m.address)
        self.starts.insert(i, m.address)
        self.maps.insert(i, m)

    def remove(self, m: Mapping) -> None:
        i = self.maps.index(m)
        del self.starts[i], self.maps[i]


class Iommu:
    """Mappings per PASID; translate() is the only way the device reaches host memory."""

    def __init__(self) -> None:
        self.spaces: dict[int, AddressSpace] = {}
        self.faults: list[IommuFault] = []
        self.bus_master = lambda: True  # replaced by the PCI function's command register
        #: bumped by every change of any mapping: the daemon's C job path rebuilds its copy
        #: of a PASID's mappings when it moved (docs/spec/jobs.md §7)
        self.gen = 0

    def map(self, pasid: int, address: int, size: int, perm: int, fd: int | None,
            offset: int = 0, owner: int = 0, mem: bytearray | None = None) -> Mapping:
        if size <= 0 or address < 0 or address + size > 1 << 64:
            raise ValueError("bad mapping range")
        space = self.spaces.setdefault(pasid, AddressSpace())
        if space.overlaps(address, size):
            raise FileExistsError("mapping overlaps an existing one")
        if mem is None:
            if fd is None:
                raise ValueError("a mapping needs memory")
            if offset < 0 or offset + size > os.fstat(fd).st_size:
                raise ValueError("offset/size past the end of the fd")
            page = mmap.ALLOCATIONGRANULARITY
            base = offset - offset % page
            mm = mmap.mmap(fd, size + (offset - base), mmap.MAP_SHARED,
                           mmap.PROT_READ | mmap.PROT_WRITE, offset=base)
            m = Mapping(address, size, perm, mm, owner)
            m.skew = offset - base  # type: ignore[attr-defined]
        else:
            m = Mapping(address, size, perm, mem, owner)
            m.skew = 0  # type: ignore[attr-defined]
        space.insert(m)
        self.gen += 1
        return m

    def replace(self, pasid: int, address: int, size: int, perm: int, fd: int | None,
                offset: int = 0, owner: int = 0) -> tuple[Mapping, int]:
        """Replace the mapping that starts at ``address`` by a new one in one step, so no
        translate between the two finds the range unmapped (docs/spec/protocol.md, DMA_MAP
        REPLACE). The old mapping stays when the new one is refused. Returns the new
        mapping and the old one's size."""
        space = self.spaces.get(pasid)
        old = space.find(address) if space else None
        if old is None or old.address != address:
            raise FileNotFoundError("no mapping starts there")
        space.remove(old)  # type: ignore[union-attr]
        try:
            m = self.map(pasid, address, size, perm, fd, offset, owner)
        except BaseException:
            space.insert(old)  # type: ignore[union-attr]
            raise
        _close(old)
        return m, old.size

    def unmap(self, pasid: int, address: int, size: int) -> None:
        space = self.spaces.get(pasid)
        m = space.find(address) if space else None
        if m is None or m.address != address or m.size != size:
            raise FileNotFoundError("no such mapping")
        space.remove(m)  # type: ignore[union-attr]
        self.gen += 1
        _close(m)

    def unmap_owner(self, owner: int) -> int:
        """Drop every mapping a session made (its client went away)."""
        n = 0
        for space in self.spaces.values():
            for m in [m for m in space.maps if m.owner == owner]:
                space.remove(m)
                _close(m)
                n += 1
        self.gen += 1
        return n

    def translate(self, addr: int, size: int, pasid: int = 0, perm: int = DMA_READ) -> memoryview:
        """Return a view of ``size`` bytes at device address ``addr`` or raise IommuFault."""
        if not self.bus_master():
            raise self._fault(pasid, addr, size, "bus mastering disabled")
        space = self.spaces.get(pasid)
        m = space.find(addr) if space else None
        if m is None:
            raise self._fault(pasid, addr, size, "no mapping")
        start = addr - m.address
        if size < 0 or start + size > m.size:
            raise self._fault(pasid, addr, size, "crosses the end of a mapping")
        if m.perm & perm != perm:
            raise self._fault(pasid, addr, size, "permission")
        start += m.skew  # type: ignore[attr-defined]
        return memoryview(m.mem)[start : start + size]

    def read(self, addr: int, size: int, pasid: int = 0) -> bytes:
        return bytes(self.translate(addr, size, pasid, DMA_READ))

    def write(self, addr: int, data: bytes, pasid: int = 0) -> None:
        self.translate(addr, len(data), pasid, DMA_WRITE)[:] = data

    def _fault(self, pasid: int, addr: int, size: int, why: str) -> IommuFault:
        fault = IommuFault(pasid, addr, size, why)
        self.faults.append(fault)
        del self.faults[:-64]
        return fault

    def clear(self) -> None:
        for space in self.spaces.values():
            for m in space.maps:
                _close(m)
        self.spaces.clear()
        self.gen += 1


def _close(m: Mapping) -> None:
    if isinstance(m.mem, mmap.mmap):
        try:
            m.mem.close()
        except BufferError:
            pass  # a view is still alive; the mapping goes when it does
