"""The NPU's PCI function: one object that owns the whole emulated device and routes
every access to it (docs/spec/device.md).

It owns config space and capabilities, the BARs (memory the caller supplies: sealed memfds
in the daemon, anonymous memory in tests), the MSI-X table/PBA and the wires behind them,
the IOMMU and the device blocks (:class:`~xdna_emu.device.NpuDevice`: PSP, SMU, mailbox,
firmware). Whoever drives the device (the daemon for its clients, the reference driver,
the fuzzers, tests) calls the same methods: :meth:`mmio_write`, :meth:`config_write`,
:meth:`reset`, :meth:`dma_map`, :meth:`poll`, :meth:`proxy`. Observers (:class:`Observer`)
see every entry and interrupt; nothing is monkeypatched.

:meth:`save` returns the complete state as plain data (a :class:`FunctionState`) and
:meth:`restore` puts it back, into this object or a fresh one, in the manner of QEMU's
VMState: each block declares its fields and a version; behaviour (closures, handlers,
ops tables) is rebuilt from the saved data, never copied.
"""

from __future__ import annotations

import mmap
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..chips import Chip, load_chip
from ..clock import Clock, VirtualClock
from ..device import DeviceState, NpuDevice
from ..fw.aie4.device import Aie4Device, Aie4DeviceState
from ..fw.aie4.mgmt import Aie4FwState
from ..fw.aie4.psp import Aie4PspState
from ..fw.ctx import CtxFwState
from ..fw.mailbox import ChannelState, MailboxState
from ..fw.mgmt import MgmtFwState
from ..fw.psp import PspState
from ..fw.smu import SmuState
from ..iommu import Iommu, IommuFault
from ..iommu import Mapping as IommuMapping
from ..irq import MsixController, Wires
from ..regio import RegisterFile
from .caps import (
    MSIX_ENTRY_CTRL,
    MSIX_ENTRY_SIZE,
    MSIX_FLAGS,
    MSIX_FLAGS_ENABLE,
    MSIX_FLAGS_MASKALL,
)
from .config import CMD_MASTER, CMD_MEMORY, COMMAND, PciConfigSpace
from .observer import Observer

Buffer = bytearray | mmap.mmap | memoryview


@dataclass(frozen=True)
class MappingState:
    """One IOMMU mapping and the host bytes behind it at save time."""

    pasid: int
    address: int
    size: int
    perm: int
    owner: int
    #: None when the caller keeps the bytes itself (``save(keep=...)``)
    data: bytes | None


@dataclass(frozen=True)
class FunctionState:
    """Everything :meth:`PciFunction.save` records (docs/spec/device.md §4)."""

    VERSION: ClassVar[int] = 1
    chip: str
    #: block name -> its state version, checked by restore
    versions: tuple[tuple[str, int], ...]
    config: bytes
    bars: tuple[tuple[int, bytes], ...]
    driver: int | None
    stats: tuple[tuple[str, int], ...]
    msix_stats: tuple[tuple[str, int], ...]
    mappings: tuple[MappingState, ...]
    #: the last IOMMU faults: (pasid, address, size, why)
    faults: tuple[tuple[int, int, int, str], ...]
    clock_ns: int
    device: DeviceState | Aie4DeviceState


#: The state classes, by block: a restore refuses a state saved with other versions.
STATE_VERSIONS: tuple[tuple[str, int], ...] = tuple(
    (cls.__name__, cls.VERSION) for cls in (FunctionState, DeviceState, PspState, SmuState,
                                            MailboxState, ChannelState, MgmtFwState, CtxFwState,
                                            Aie4DeviceState, Aie4PspState, Aie4FwState))

#: Host memory for a restored mapping: given its saved state, a buffer of at least
#: ``size`` bytes (its first ``size`` bytes back the mapping; restore fills them).
HostMemory = Callable[[MappingState], Buffer]


def _ignore(token: Any) -> None:
    """No observer looks at writes."""


class PciFunction:
    """One emulated NPU function, complete without a daemon: ``PciFunction("npu4")``."""

    def __init__(self, chip: str | Chip, bars: Mapping[int, Buffer] | None = None,
                 wires: Wires | None = None, clock: Clock | None = None) -> None:
        self.chip = load_chip(chip) if isinstance(chip, str) else chip
        if bars is None:
            bars = {i: bytearray(b.size) for i, b in self.chip.bars.items()}
        if set(bars) != set(self.chip.bars):
            raise ValueError(f"{self.chip.name}: BAR memory for {sorted(bars)}, "
                             f"chip has {sorted(self.chip.bars)}")
        self.clock = clock or Clock()
        self.regs = RegisterFile(self.chip, {i: memoryview(m) for i, m in bars.items()})
        self.config = PciConfigSpace(self.chip)
        self.msix = MsixController(self.chip, self.config, self.regs.bytes[self.chip.msix.bar],
                                   wires)
        self.iommu = Iommu()
        self.iommu.bus_master = lambda: self.config.bus_master
        # the AIE4 family has its own device blocks (docs/spec/aie4.md §2)
        device_cls = Aie4Device if self.chip.family == "aie4" else NpuDevice
        self.device = device_cls(self.chip, self.regs, self.iommu, self._raise_irq, self.clock)
        self.driver_regs = self._driver_only_regs()
        self._bar_size = {i: b.size for i, b in self.chip.bars.items()}
        #: the requester (a daemon session id) that enabled bus mastering first: the driver
        self.driver: int | None = None
        self.stats: dict[str, int] = {"bad_writes": 0, "foreign_writes": 0}
        #: function resets so far, however started (a driver learns of one it did not start)
        self.resets = 0
        #: the saved mappings the IOMMU was last restored to, and its generation then: a
        #: journaled restore of the very same tuple, nothing mapped or unmapped since,
        #: skips comparing them (docs/spec/device.md §4)
        self._mapped: tuple[tuple[MappingState, ...], int] | None = None
        self.observers: tuple[Observer, ...] = ()
        #: bumped when an observer comes or the function is restored: the daemon's C job
        #: path answers nothing an observer watches (docs/spec/jobs.md §7)
        self.gen = 0
        #: vectors raised while interrupts are held (:meth:`hold_irqs`), each once, in order
        self._held: list[int] | None = None
        self._before: Callable[[int, int, int], Any] | None = None
        self._after: Callable[[Any], None] = _ignore
        self.config.listeners.append(self.msix.config_changed)
        self.config.flr_listeners.append(self.reset)

    # -- setup ------------------------------------------------------------------------
    def _driver_only_regs(self) -> frozenset[tuple[int, int]]:
        """Trapped registers only the driver may write: PSP, SMU, the mgmt channel."""
        chip = self.chip
        locs = {(r.bar, r.offset) for role, r in ((n, chip.reg(n)) for n in chip.roles)
                if role.startswith(("psp.", "smu.")) and r.access == "trap"}
        lay = chip.mailbox
        if lay is not None:
            base = lay.chan_regs(0)
            for off in range(0, lay.REGS_SPAN, 4):
                locs.add(chip.dev_to_bar(base + off))
        if chip.aie4 is not None:  # the AIE4 mgmt channel (docs/spec/aie4.md §4)
            for off in range(0, chip.aie4.REGS_SPAN, 4):
                locs.add(chip.dev_to_bar(chip.aie4.mgmt_regs + off))
        return frozenset(locs)

    def observe(self, obs: Observer) -> None:
        """Add an observer; it sees every access from now on."""
        self.observers = (*self.observers, obs)
        self.gen += 1
        # the write path is hot: only observers that look at writes are called there
        hooks = [o for o in self.observers
                 if type(o).before_write is not Observer.before_write
                 or type(o).after_write is not Observer.after_write]
        if len(hooks) == 1:
            self._before, self._after = hooks[0].before_write, hooks[0].after_write
        elif hooks:
            befores = [o.before_write for o in hooks]
            afters = [o.after_write for o in hooks]

            def before(bar: int, offset: int, value: int) -> list[Any]:
                return [f(bar, offset, value) for f in befores]

            def after(tokens: list[Any]) -> None:
                for f, t in zip(afters, tokens, strict=True):
                    f(t)

            self._before, self._after = before, after

    def enable(self) -> PciFunction:
        """What the PCI core and the driver's interrupt setup do before a probe (memory
        decoding, bus mastering, MSI-X enabled with every vector unmasked), for in-process
        users that have neither; returns self."""
        cmd = self.config.command | CMD_MEMORY | CMD_MASTER
        self.config.write(COMMAND, cmd.to_bytes(2, "little"))
        flags = self.config.msix_cap + MSIX_FLAGS
        ctrl = self.config.msix_control & ~MSIX_FLAGS_MASKALL | MSIX_FLAGS_ENABLE
        m = self.chip.msix
        for vec in range(m.vectors):
            self.regs.write(m.bar, m.table_offset + vec * MSIX_ENTRY_SIZE + MSIX_ENTRY_CTRL, 0)
        self.config.write(flags, ctrl.to_bytes(2, "little"))
        return self

    # -- MMIO ---------------------------------------------------------------------------
    def region(self, index: int) -> memoryview:
        """The bytes of BAR ``index`` (what a client maps)."""
        return self.regs.bytes[index]

    def mmio_read(self, bar: int, offset: int) -> int:
        """A 32-bit BAR read; an absent register reads as all ones."""
        words = self.regs.words.get(bar)
        if words is None or offset < 0 or offset & 3 or offset >= len(words) * 4:
            return 0xFFFFFFFF
        return words[offset >> 2]

    def mmio_write(self, bar: int, offset: int, value: int, requester: int | None = None) -> None:
        """Apply one trapped 32-bit write (docs/spec/device.md §2). Outside the BARs it is
        counted and ignored, and so is a write by a requester other than the driver to a
        register that belongs to the driver (a second "probe" must not power the NPU off
        under the driver's feet). ``requester`` None is the in-process driver itself."""
        before = self._before
        token = before(bar, offset, value) if before is not None else None
        size = self._bar_size.get(bar)
        if size is None or type(offset) is not int or offset < 0 or offset & 3 or offset >= size:
            self.stats["bad_writes"] += 1
        elif (requester != self.driver and requester is not None and self.driver is not None
                and (bar, offset) in self.driver_regs):  # the driver's own writes: one test
            self.stats["foreign_writes"] += 1
        elif self.msix.is_table(bar, offset):
            self.regs.write(bar, offset, int(value))
            self.msix.table_written(offset)
        else:
            self.device.write_checked(bar, offset, value)
        if before is not None:
            self._after(token)

    # -- config space -----------------------------------------------------------------
    def config_read(self, offset: int, size: int) -> bytes:
        return self.config.read(offset, size)

    def config_write(self, offset: int, data: bytes, requester: int | None = None) -> None:
        """A config write; the first requester to enable bus mastering becomes the driver
        (docs/spec/protocol.md, Session lifetime). FLR and MSI-X enable/mask take effect
        through the config space's listeners."""
        was_master = self.config.bus_master
        self.config.write(offset, data)
        if self.config.bus_master and not was_master and self.driver is None:
            self.driver = requester

    # -- resets -------------------------------------------------------------------------
    def reset(self) -> None:
        """Device reset (DEVICE_RESET, FLR): the blocks to power-on state, MSI-X table and
        PBA reset. Config space is the caller's (FLR resets it before calling this)."""
        try:
            self.resets += 1
            self.device.reset()
            self.msix.reset()
        finally:
            self._entered("reset")

    def release(self, requester: int, pasid: int) -> None:
        """A requester went away: drop its DMA mappings and contexts; if it was the driver,
        reset the function as a PCI core would (FLR) so the next one probes a clean device."""
        self.iommu.unmap_owner(requester)
        if self.driver != requester or self.driver is None:
            self.device.release_pasid(pasid)
            return
        self.driver = None
        self.config.reset()
        self.reset()

    # -- DMA ----------------------------------------------------------------------------
    def dma_map(self, pasid: int, address: int, size: int, perm: int, fd: int | None = None,
                offset: int = 0, owner: int = 0, mem: Buffer | None = None) -> IommuMapping:
        """Map host memory (an fd's pages, or ``mem``) at ``address`` in ``pasid``'s space."""
        m = self.iommu.map(pasid, address, size, perm, fd, offset, owner, mem)  # type: ignore[arg-type]
        for o in self.observers:
            o.dma_mapped(pasid, address, size, perm, mem)
        return m

    def dma_remap(self, pasid: int, address: int, size: int, perm: int, fd: int,
                  offset: int = 0, owner: int = 0) -> IommuMapping:
        """Replace the mapping that starts at ``address`` in one step (observers see the
        unmap, then the map)."""
        m, old = self.iommu.replace(pasid, address, size, perm, fd, offset, owner)
        for o in self.observers:
            o.dma_unmapped(pasid, address, old)
            o.dma_mapped(pasid, address, size, perm, None)
        return m

    def dma_unmap(self, pasid: int, address: int, size: int) -> None:
        self.iommu.unmap(pasid, address, size)
        for o in self.observers:
            o.dma_unmapped(pasid, address, size)

    # -- time, firmware ops, interrupts -------------------------------------------------------
    def poll(self) -> None:
        """Run delayed device work that is due on the function's clock."""
        try:
            self.device.poll()
        finally:
            self._entered("poll")

    def next_deadline_ns(self) -> int | None:
        return self.device.next_deadline_ns()

    def backlogged(self) -> bool:
        return self.device.backlogged()

    def proxy(self, pasid: int, opcode: int, payload: bytes) -> bytes:
        """A client session's mgmt op (docs/spec/jobs.md §1)."""
        try:
            return self.device.proxy(pasid, opcode, payload)
        finally:
            self._entered("proxy")

    def _entered(self, what: str) -> None:
        for o in self.observers:
            o.after_entry(what)

    def _raise_irq(self, vector: int) -> None:
        held = self._held
        if held is not None:
            if vector not in held:
                held.append(vector)
            return
        for o in self.observers:
            o.irq(vector)
        self.msix.raise_vector(vector)

    def hold_irqs(self) -> None:
        """Collect raised vectors instead of delivering them, until :meth:`release_irqs`: a
        transport applying a batch of writes answers the batch with one interrupt per vector
        (docs/spec/device.md §3), as a device coalesces completions."""
        if self._held is None:
            self._held = []

    def release_irqs(self) -> None:
        """Deliver each vector raised while held, once, in the order first raised."""
        held, self._held = self._held, None
        if not held:
            return
        if self.observers:
            for vector in held:
                self._raise_irq(vector)
            return
        raise_vector = self.msix.raise_vector  # _raise_irq without observers, unheld
        for vector in held:
            raise_vector(vector)

    @property
    def probed(self) -> bool:
        """A driver owns the function and the firmware it started is running."""
        return self.driver is not None and self.device.fw is not None

    def status(self) -> dict[str, Any]:
        return self.device.status()

    # -- save / restore (docs/spec/device.md §4) -------------------------------------------
    def save(self, keep: Callable[[Any], bool] | None = None) -> FunctionState:
        """The complete state as plain data: config space, BAR bytes (registers, rings,
        MSI-X table and PBA), the driver, counters, IOMMU mappings with the host bytes
        behind them, the clock and the device blocks.

        ``keep`` (docs/spec/device.md §4): the caller saves memory itself (a fuzzer's
        copy-on-write pages); the BARs are left out, and so are the bytes of each mapping
        whose buffer ``keep(buffer)`` accepts."""
        mappings = []
        for pasid, space in sorted(self.iommu.spaces.items()):
            for m in space.maps:
                skew = getattr(m, "skew", 0)
                data = None if keep is not None and keep(m.mem) else \
                    bytes(memoryview(m.mem)[skew : skew + m.size])
                mappings.append(MappingState(pasid, m.address, m.size, m.perm, m.owner, data))
        return FunctionState(
            chip=self.chip.name, versions=STATE_VERSIONS, config=bytes(self.config.data),
            bars=() if keep is not None else
            tuple((i, a.tobytes()) for i, a in sorted(self.regs.arrays.items())),
            driver=self.driver, stats=tuple(self.stats.items()),
            msix_stats=tuple(self.msix.stats.items()), mappings=tuple(mappings),
            faults=tuple((f.pasid, f.addr, f.size, f.why) for f in self.iommu.faults),
            clock_ns=self.clock.now_ns(), device=self.device.save())

    def _same_mappings(self, saved: tuple[MappingState, ...], host_memory: HostMemory | None) -> bool:
        """Do the live mappings already match ``saved`` (same ranges, owners and host
        buffers, as when a fuzzer restores one snapshot after another)? Then only their
        saved bytes are put back, and the address spaces are kept."""
        if host_memory is None:
            return False
        spaces = self.iommu.spaces
        live = [(pasid, m) for pasid, space in sorted(spaces.items()) for m in space.maps]
        if len(live) != len(saved):
            return False
        for (pasid, m), ms in zip(live, saved, strict=True):
            if (pasid != ms.pasid or m.address != ms.address or m.size != ms.size
                    or m.perm != ms.perm or m.owner != ms.owner
                    or getattr(m, "skew", 0) or host_memory(ms) is not m.mem):
                return False
        for pasid in [p for p, space in spaces.items() if not space.maps]:
            del spaces[pasid]  # as a rebuild leaves them
        for (_, m), ms in zip(live, saved, strict=True):
            if ms.data is not None:
                memoryview(m.mem)[: ms.size] = ms.data
        return True

    @property
    def journal(self) -> bool:
        """Journaled restores (docs/spec/device.md §4): a restore of the state saved or
        restored last skips what no entry changed since. Off by default; the device fuzz
        target turns it on."""
        return self.device.journal

    @journal.setter
    def journal(self, on: bool) -> None:
        self.device.journal = on
        self.device.forget()
        self._mapped = None

    def restore(self, st: FunctionState, host_memory: HostMemory | None = None) -> PciFunction:
        """Put ``st`` back. Host memory for each mapping comes from ``host_memory`` (the
        caller's own buffers, refilled with the saved bytes), or is fresh anonymous memory.
        A virtual clock is set to the saved time. MSI-X wires are not state: they stay."""
        if st.chip != self.chip.name:
            raise ValueError(f"state of {st.chip} cannot be restored into {self.chip.name}")
        if st.versions != STATE_VERSIONS:
            raise ValueError(f"state versions {st.versions} differ from {STATE_VERSIONS}")
        self.gen += 1  # every block's state is new: the C job path arms afresh (jobs.md §7)
        self.config.data[:] = st.config
        for i, data in st.bars:
            self.regs.arrays[i][:] = np.frombuffer(data, dtype=np.uint8)
        self.driver = st.driver
        self.stats.clear()
        self.stats.update(st.stats)
        self.msix.stats.clear()
        self.msix.stats.update(st.msix_stats)
        mapped = self._mapped
        if (mapped is not None and mapped[0] is st.mappings and mapped[1] == self.iommu.gen
                and self.device.journal and host_memory is not None):
            for ms in st.mappings:  # the same buffers, mapped as saved: only their bytes
                if ms.data is not None:
                    memoryview(host_memory(ms))[: ms.size] = ms.data
        elif not self._same_mappings(st.mappings, host_memory):
            self.iommu.clear()
            for ms in st.mappings:
                mem = host_memory(ms) if host_memory is not None else bytearray(ms.size)
                if ms.data is not None:
                    memoryview(mem)[: ms.size] = ms.data
                self.iommu.map(ms.pasid, ms.address, ms.size, ms.perm, None, owner=ms.owner,
                               mem=mem)  # type: ignore[arg-type]
        self._mapped = (st.mappings, self.iommu.gen) if host_memory is not None else None
        self.iommu.faults[:] = [IommuFault(*f) for f in st.faults]
        if isinstance(self.clock, VirtualClock):
            self.clock.set(st.clock_ns)
        self.device.load(st.device)
        return self


__all__ = ["FunctionState", "MappingState", "Observer", "PciFunction"]
