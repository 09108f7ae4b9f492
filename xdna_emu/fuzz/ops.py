"""The fuzzing session (one in-process device) and the op-stream interpreter.

Everything a fuzzer does to the device is an :class:`Op`, the in-memory form of one trace
line (:mod:`.trace`): ``w32`` (a trapped register write), ``r32``, ``shm`` (a plain store
into BAR memory: rings, untrapped registers), ``host``/``dma_map``/``dma_unmap`` (host
memory behind the IOMMU), ``tick`` (virtual time + poll), ``reset``, ``fault`` (host-side
faults) and ``call`` (semantic steps through the test driver: bring-up, a well-formed
mgmt message, contexts and jobs). :class:`DeviceHarness` applies ops with the invariants of
:mod:`.invariants` checked around every device entry and after every op.

:class:`Interpreter` is QEMU generic-fuzz's design in Python: the input is cut at the
separator ``FUZZ`` (so deleting a byte disturbs one op, not all later ones); inside a
chunk each op is one selector byte (modulo the op count) and fixed little-endian
operands, missing bytes read as zero. Semantic ops (post a valid header, run the PSP/SMU
bring-up, create a context, submit a chain) let the fuzzer get past magics and sizes.

:class:`Snapshot` makes repeated prefixes cheap: :func:`run_input` restores the state
after the longest input prefix that ran before (a bring-up, a context, a long op run)
instead of replaying it, and :meth:`DeviceHarness.start` does the same for a machine's start.
The device part is :meth:`PciFunction.save`/:meth:`~PciFunction.restore` (docs/spec/
device.md §4); the test driver's objects are recorded field by field. A restore is exact
(tests/test_fuzz_snapshot.py); the trace replayer does not use it.

The session sees the device only through the function's :class:`Observer` hook: every
write (the test driver's too), interrupt, poll, proxy and reset is checked as it happens.
"""

from __future__ import annotations

import inspect
import os
import struct
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from .. import kernels, regio
from ..chips import Chip, MailboxLayout, load_chip
from ..clock import VirtualClock
from ..fw.aie4.messages import HSA_EXEC_BUF, HSA_PKT, CmdState, HsaOpcode
from ..fw.aie4.messages import Opcode as Opcode4
from ..fw.aie4.messages import Status as Status4
from ..fw.image import build_image
from ..fw.messages import (
    LAYOUTS,
    MSG_HEADER,
    MSG_ID_MAGIC,
    TOMBSTONE,
    Opcode,
    PspCmd,
    SlotType,
    sz_ver,
)
from ..iommu import DMA_READ, DMA_WRITE
from ..pci.caps import EXP_DEVCTL, EXP_DEVCTL_BCR_FLR, EXP_DEVCTL_DEFAULT, MSIX_ENTRY_SIZE
from ..pci.config import CMD_MASTER, COMMAND, CONFIG_SIZE
from ..pci.function import FunctionState, MappingState, Observer
from ..testing.aie4driver import (
    CLIENT_IOVA,
    DOORBELL_BAR,
    Aie4PyDriver,
    Aie4Queue,
    exec_pkt,
    indirect_pkt,
)
from ..testing.pyctx import PyClient, PyContext
from ..testing.pydriver import (
    ALIGN,
    FW_IOVA,
    DriverChannel,
    DriverError,
    PyDriver,
    make_test_device,
)
from . import cow
from .cow import Arena
from .invariants import Checker, DeviceCrash, Failure, Hang
from .lang import Op, TraceError, check_expect

SEPARATOR = b"FUZZ"
MAX_WAIT_TICKS = 8  # virtual-time polls a bounded wait may take
TICK_NS = 1_000_000  # one wait tick: 1 ms of device time
MAX_OPS = 512  # ops per input
#: a semantic call (bring-up, boot, context create, submit...) runs a whole driver sequence,
#: a millisecond or more: it counts as this many ops, so one input holds at most 16 and
#: its cost stays bounded (libFuzzer otherwise grows inputs of hundreds of calls, 0.3 s each)
CALL_WEIGHT = 32
MAX_MAP = 4 << 20  # largest host mapping an op may create
CLIENT_HEAP = 2 << 20
COW_HEAPS = 3  # client heaps (PASIDs 0-2) kept in copy-on-write pages; others in bytearrays
#: copy-on-write pages for the other buffers the driver and the harness map (AIE4: the
#: firmware's work buffer and certificate, queue BOs, the client's memory), each given a
#: fixed span on first use (docs/spec/fuzzing.md §9); a buffer that does not fit is a bytearray
HOST_POOL = 8 << 20
CLIENT_VA = 0x7F00_0000_0000
ASYNC_BUF_IOVA = 0x2_0000_0000  # where bring-up registers its async-event buffers
_IMAGES: dict[str, bytes] = {}
#: semantic calls worth a snapshot as soon as an input prefix ends with one
SNAP_CALLS = frozenset({"fw_image", "boot", "bring_up", "client", "ctx_create", "submit",
                        "a4_bring_up", "a4_ctx"})
#: semantic calls dearer than a restore (0.3-2.5 ms against ~0.2 ms): run once per op path,
#: then restored from a snapshot wherever the same ops lead to them again
MEMO_CALLS = frozenset({"boot", "bring_up", "ctx_create", "a4_bring_up", "a4_ctx"})
#: the firmware's whole start (0.7-2.5 ms): an input run with a ``limit`` (a round's child)
#: stops before one that is not memoized, which parents and whole inputs run
BOOT_CALLS = frozenset({"boot", "bring_up", "a4_bring_up"})
#: Work past the last restore (in MAX_OPS budget units: an op 1, a semantic call CALL_WEIGHT)
#: that makes an early semantic call worth a snapshot. Counted, never timed, so the same
#: inputs take the same snapshots on a loaded machine as on an idle one.
SNAP_MIN_WORK = CALL_WEIGHT
SNAP_LONG_WORK = 3 * CALL_WEIGHT  # ... and that makes any prefix worth one, once a second input shares it
SNAP_MAX = 48  # snapshots kept per session (least recently used dropped first)
VERIFY_EVERY = 1024  # restores between two checks of the page tracking (fuzzing.md §9)
#: restores between two checks of the journal (the Python state a restore skipped, §9)
JOURNAL_VERIFY_EVERY = 1024
SNAP_STRADDLE = len(b"FUZZ") - 1  # a separator starting this close before a boundary moves it


class JournalMiss(Failure):
    """A change of the model's Python state that escaped the journal (docs/spec/fuzzing.md
    §9): an entry changed a block it did not mark, so a journaled restore would have left
    it. A bug of the harness or the model's marks, not of the device behaviour; ``data`` is
    an input whose replay shows it (:func:`replay_journal`, from a snapshot pinned at byte
    ``pin``), None if no recent input did alone, and ``ops`` what that input ran."""

    kind = "harness"

    def __init__(self, name: str, message: str, data: bytes | None = None,
                 ops: list[Op] | None = None, pin: int | None = None) -> None:
        super().__init__(name, message)
        self.data, self.ops, self.pin = data, ops or [], pin


def image_for(chip: Chip) -> bytes:
    """The chip's default signed firmware image, built once per process."""
    img = _IMAGES.get(chip.name)
    if img is None:
        img = _IMAGES[chip.name] = build_image(chip)
    return img


@dataclass(frozen=True)
class ChanLayout:
    """Static addresses of mailbox channel ``index`` (docs/spec/firmware.md §5)."""

    index: int
    x2i_tail: int
    x2i_head: int
    i2x_tail: int
    i2x_head: int
    intr: int
    x2i_buf: int
    i2x_buf: int
    size: int


def chan_layouts(chip: Chip) -> list[ChanLayout]:
    mb = chip.mailbox
    if mb is None:
        return []
    out = []
    slots = mb.free_slots()
    for i in range(min(mb.channels, len(slots))):
        base = mb.chan_regs(i)
        x2i = chip.reg("sram.mbox_chann").addr + slots[i] * mb.slot_size  # as MailboxEngine
        out.append(ChanLayout(i, base + MailboxLayout.X2I_TAIL, base + MailboxLayout.X2I_HEAD,
                              base + MailboxLayout.I2X_TAIL, base + MailboxLayout.I2X_HEAD,
                              base + MailboxLayout.INTR, x2i, x2i + mb.ring_size, mb.ring_size))
    return out


# -- snapshots ------------------------------------------------------------------------------
#: DeviceHarness attributes that are per-input state (everything else is fixed at construction)
STATE_ATTRS = ("drv", "clients", "contexts", "bos", "pending", "executed", "events", "polled",
               "steps", "irq_mark", "queues", "a4next", "read_marks")
#: the test driver's classes whose objects a snapshot records, field by field
HOST_TYPES = (PyDriver, DriverChannel, PyClient, PyContext)
_COPIED = (list, dict, Counter)


def _copy(v: Any) -> Any:
    """One level of copy: the containers a host object or the session mutates in place."""
    return cow.copy_one_level(v, _COPIED)


def _fields(d: dict[str, Any]) -> tuple[dict[str, Any], tuple[str, ...]]:
    """A host object's fields for a snapshot, and which of them are containers (a restore
    copies just those again; the rest are put back as they are)."""
    fields = {k: _copy(v) for k, v in d.items()}
    return fields, tuple(k for k, v in fields.items() if type(v) in _COPIED)


def _containers(attrs: dict[str, Any]) -> list[str]:
    """The keys of ``attrs`` whose values are containers (:data:`_COPIED`)."""
    return [k for k, v in attrs.items() if type(v) in _COPIED]


def op_kinds(ops: list[Op], first: int = 0) -> set[tuple[str, Any]]:
    """The coverage kinds of ``ops`` (the first at index ``first`` of an input's executed
    ops): a call's or fault's name, else the verb and its index capped at 8. A feature is
    a kind with the device state the input ended in (docs/spec/fuzzing.md §9)."""
    out = set()
    add = out.add
    for i, op in enumerate(ops, first):
        verb = op.verb
        add((verb, op.args[0] if verb == "call" or verb == "fault" else min(i, 8)))
    return out


def straddles(data: bytes, end: int) -> bool:
    """Does a separator start within SNAP_STRADDLE bytes before ``end``? Then the chunk, and
    the ops, before ``end`` differ from those of an input whose bytes stop (or go on
    otherwise) at ``end``. Without one, the ops up to a clean group boundary at ``end``
    depend on ``data[:end]`` alone, so the state after them is keyed by those bytes."""
    at = data.find(SEPARATOR, max(0, end - SNAP_STRADDLE), end + SNAP_STRADDLE)
    return 0 <= at < end


class Snapshot:
    """The complete state of a :class:`DeviceHarness` at one moment, restorable in place.

    ``fn`` is the device (:meth:`PciFunction.save`, plain data). ``memory`` names the host
    buffers behind the IOMMU mappings by (PASID, address), so a restore refills the very
    buffers the test driver's objects hold. ``host`` records the fields of each of those
    objects (:data:`HOST_TYPES`), ``attrs`` the session's own per-input state.
    """

    __slots__ = ("fn", "memory", "host", "attrs", "checker", "irqs", "pages", "n", "g", "end",
                 "path", "kinds", "covered")

    def __init__(self, fn: FunctionState, memory: dict[tuple[int, int], Any],
                 host: list[tuple[dict[str, Any], tuple[str, ...], Any]], attrs: dict[str, Any],
                 checker: dict[str, Any], irqs: list[int], pages: Any = None) -> None:
        self.fn, self.memory, self.host, self.attrs = fn, memory, host, attrs
        self.checker, self.irqs = checker, irqs
        self.pages = pages  # the copy-on-write arena's dirty pages (None: fn holds the bytes)
        self.n = self.g = self.end = 0  # interpreter position (budget, groups, byte offset)
        self.path = 0  # hash of the op groups from power-on to here (Interpreter.run_fresh)
        #: the coverage kinds of ``attrs["executed"]`` (:func:`op_kinds`), worked out on
        #: first use: an input restored from here adds only its own ops' kinds
        self.kinds: frozenset[tuple[str, Any]] | None = None
        #: the device states (coverage state numbers) whose features ``kinds`` already gave
        self.covered: set[int] = set()


class Guard(Observer):
    """The session's view of its function: the checker's invariants around every write,
    interrupt and entry, whoever makes them (ops or the test driver)."""

    def __init__(self, session: DeviceHarness) -> None:
        self.s = session
        self.checker = chk = session.checker
        # the write path is hot: the checker's own methods are the hooks
        self.before_write = chk.before_write  # type: ignore[method-assign]
        self.after_write = chk.after_write  # type: ignore[method-assign]
        self.irq = chk.on_irq  # type: ignore[method-assign]

    def before_write(self, bar: int, offset: int, value: int) -> Any:
        return self.checker.before_write(bar, offset, value)

    def after_write(self, token: Any) -> None:
        self.checker.after_write(token)

    def irq(self, vector: int) -> None:
        self.checker.on_irq(vector)

    def after_entry(self, what: str) -> None:
        self.checker.raise_pending()
        if what == "poll":
            self.s.polled = True


class DeviceHarness:
    """One fuzzed device, its host memory and driver helpers; :meth:`fresh` makes it new."""

    def __init__(self, chip: str | Chip = "npu4") -> None:
        self.chip = load_chip(chip) if isinstance(chip, str) else chip
        if not self.chip.emulated:
            raise TraceError(f"{self.chip.name}: only emulated chips can be fuzzed")
        #: BARs and client heaps in copy-on-write pages when the kernel allows: a snapshot
        #: is the pages written since power-on, a restore drops the rest (§9 of fuzzing.md)
        self.arena: Arena | None = None
        self._image_region: int | None = None
        self._pool_region: int | None = None
        self._pool: dict[Any, tuple[memoryview, int]] = {}  # a buffer's key -> (view, offset)
        self._pool_next = 0  # the pool's first span not given to a key yet
        bars = None
        if cow.available():
            sizes = [self.chip.bars[i].size for i in sorted(self.chip.bars)]
            # AIE4's driver buffers go to a pool; AIE2 maps heaps and the image only
            pool = [HOST_POOL] if self.chip.aie4 is not None else []
            self.arena = cow.make_arena(sizes + [CLIENT_HEAP] * COW_HEAPS + [self._image_size()]
                                        + pool, f"xdna-fuzz-{self.chip.name}")
            bars = {i: self.arena.region(k) for k, i in enumerate(sorted(self.chip.bars))}
            self._heap_ids = {id(self.arena.region(len(sizes) + k)): len(sizes) + k
                              for k in range(COW_HEAPS)}
            self._arena_ids = frozenset(self._heap_ids)
            if isinstance(self.arena, cow.TrackedArena):
                # the image buffer too where pages are tracked: a restore then copies none
                # of its 128 KiB unless an input wrote it; untracked, every snapshot would
                # hold it
                self._image_region = len(sizes) + COW_HEAPS
                self._arena_ids |= {id(self.arena.region(self._image_region))}
            if pool:
                self._pool_region = len(sizes) + COW_HEAPS + 1
        self.td = make_test_device(self.chip, VirtualClock(), bars=bars)
        self.fn = self.td.fn
        self.dev, self.regs, self.iommu = self.fn.device, self.fn.regs, self.fn.iommu
        # a reset looks only at the BAR pages that may hold data
        if bars is not None and cow.PAGE == regio.BLOCK:
            self._bar_region = {i: k for k, i in enumerate(sorted(self.chip.bars))}
            self.regs.blocks = self._bar_blocks
        self.clock: VirtualClock = self.fn.clock  # type: ignore[assignment]
        self._arity: dict[str, tuple[Callable[..., Any], int, float]] = {}
        self.checker = Checker(self)
        # every entry into the device, from any caller (the test driver too), is checked
        self.fn.observe(Guard(self))
        self.chans = chan_layouts(self.chip)
        self.targets = self._targets()
        self.events: Counter[str] = Counter()
        self.calls: dict[str, Callable[..., None]] = {
            "fw_image": self.c_fw_image, "boot": self.c_boot, "bring_up": self.c_bring_up, "fw_alive": self.c_fw_alive,
            "msg": self.c_msg, "drain": self.c_drain, "client": self.c_client,
            "ctx_create": self.c_ctx_create, "submit": self.c_submit,
            "ctx_destroy": self.c_ctx_destroy, "proxy": self.c_proxy,
            # AIE4 (docs/spec/fuzzing.md §8): the init order, HSA queues and doorbells
            "a4_bring_up": self.c_a4_bring_up, "a4_ctx": self.c_a4_ctx, "a4_pkt": self.c_a4_pkt,
            "a4_publish": self.c_a4_publish, "a4_ring": self.c_a4_ring,
            "a4_submit": self.c_a4_submit, "a4_destroy": self.c_a4_destroy,
        }
        self.faults: dict[str, Callable[..., None]] = {"bus_master": self.f_bus_master}
        # snapshots of input prefixes (bytes keys) and of machine starts (("ops", ops) keys)
        self.use_snapshots = True
        self.pinned: bytes | None = None  # the prefix run_input pinned last (run_fresh)
        self.ran_to = 0  # where the last input stopped (run_fresh's ``limit``)
        self.snaps: OrderedDict[Any, Snapshot] = OrderedDict()
        self.snap_stats: Counter[str] = Counter()
        self._seen_prefixes: set[bytes] = set()
        #: every Nth restore compares the whole arena with the snapshot's pages, so a write
        #: the page tracking missed is caught (docs/spec/fuzzing.md §9): by default every
        #: VERIFY_EVERY-th with userfaultfd tracking (a miss drops to the pagemap arena),
        #: ``$XDNA_FUZZ_VERIFY=N`` (0 never) sets N and makes a miss raise instead
        env = os.environ.get("XDNA_FUZZ_VERIFY")
        self.verify_every = int(env) if env else VERIFY_EVERY if self.page_tracking == "userfaultfd" else 0
        self.verify_raises = bool(env)
        self._loads = 0
        #: journaled restores (docs/spec/fuzzing.md §9): the model's firmware blocks and
        #: IOMMU (docs/spec/device.md §4) and the test driver's objects are loaded only
        #: when something may have changed them since the snapshot was taken or restored;
        #: every ``journal_every``-th restore compares the whole Python state with the
        #: snapshot (``$XDNA_FUZZ_VERIFY=N`` sets N too); a miss turns journaling off
        self.journal = True
        self.journal_every = int(env) if env else JOURNAL_VERIFY_EVERY
        self._restores = 0
        self._host_clean: Any = None  # the snapshot's host fields the objects hold still
        #: the inputs run since the journal's last check (run_input: each with the byte its
        #: snapshot was pinned at or restored from), where a miss's culprit is looked for,
        #: and the miss found last (a finding the campaign records)
        self.recent: deque[tuple[bytes, int | None]] = deque(
            maxlen=self.journal_every or JOURNAL_VERIFY_EVERY)
        self.journal_miss: JournalMiss | None = None
        self.fn.journal = True
        self.fresh()
        if self.arena is not None:
            self.arena.commit()  # power-on state is the base every snapshot is a delta of

    # -- lifecycle ------------------------------------------------------------------------
    def fresh(self) -> DeviceHarness:
        """Power-on state without reallocating: FLR of config space and device, counters
        cleared, no DMA, time 0, then enabled as the PCI core would."""
        fn = self.fn
        self._host_clean = None
        if self.arena is not None:
            self.arena.revert()
        self.checker.reset()  # nothing pending from an earlier input may fire in the reset
        fn.driver = None
        fn.config.reset()
        fn.reset()
        for counters in (self.dev.stats, fn.stats, fn.msix.stats):
            for key in counters:
                counters[key] = 0
        self.iommu.clear()
        self.iommu.faults.clear()
        fn.enable()
        self.td.irqs.clear()
        self.td.delivered.clear()
        self.clock.set(0)
        self.checker.reset()
        self.drv: PyDriver | None = None
        self.clients: list[Any] = []
        self.contexts: list[Any] = []
        self.bos: dict[Any, tuple[Any, Any]] = {}  # context -> its (src, dst) buffers
        self.pending: list[tuple[Any, int, int]] = []  # (context, msg id, kernel kind)
        self.executed: list[Op] = []
        self.executed_from: Snapshot | None = None  # the snapshot ``executed`` starts with
        self.events.clear()
        self.polled = False
        self.steps = 0
        self.irq_mark = 0  # for ``expect irqs``
        self.queues: list[Aie4Queue] = []  # AIE4 host queues, destroyed ones kept (stale doorbells)
        self.a4next = 0  # AIE4 client memory: next free offset (wraps)
        self.read_marks: dict[int, int] = {}  # AIE4 queue -> read_index seen last (checker)
        return self

    def _host_objects(self) -> list[Any]:
        """The test driver's live objects: the driver, its channels, clients, contexts."""
        objs: list[Any] = []
        if self.drv is not None:
            objs.append(self.drv)
            if self.drv.mgmt is not None:
                objs.append(self.drv.mgmt)
        objs.extend(self.clients)
        for ctx in self.contexts:
            objs += [ctx, ctx.chan]
        return objs

    def snapshot(self) -> Snapshot:
        """Everything a later op could observe or change: the function (device, BARs,
        IOMMU, host memory, clock), the driver helpers, the checker and the counters."""
        memory = {(pasid, m.address): m.mem
                  for pasid, space in self.iommu.spaces.items() for m in space.maps}
        host = [_fields(vars(o)) + (o,) for o in self._host_objects()]
        self._host_clean = host  # the objects hold just these fields until a call runs
        attrs = {k: _copy(self.__dict__[k]) for k in STATE_ATTRS}
        if self.arena is None:
            return Snapshot(self.fn.save(), memory, host, attrs, self.checker.save(),
                            list(self.td.irqs))
        return Snapshot(self.fn.save(keep=self._in_arena), memory, host, attrs,
                        self.checker.save(), list(self.td.irqs), self.arena.delta())

    def executed_kinds(self, state: int | None = None) -> set[tuple[str, Any]] | frozenset[tuple[str, Any]]:
        """The coverage kinds (:func:`op_kinds`) of every op executed since power-on: those
        of the snapshot the session was restored from last (kept on it, so each prefix is
        worked out once) and of the ops run since. With ``state`` (the number of the state
        the input ended in), the snapshot's kinds are left out when an earlier input from
        the same snapshot ended in that state (its features were counted then)."""
        snap, executed = self.executed_from, self.executed
        if snap is None:
            return op_kinds(executed)
        done = snap.attrs["executed"]
        if snap.kinds is None:
            snap.kinds = frozenset(op_kinds(done))
        own = op_kinds(executed[len(done):], len(done))
        if state is not None:
            if state in snap.covered:
                return own
            snap.covered.add(state)
        return snap.kinds | own if own else snap.kinds

    def snapshot_at(self, end: int, n: int, g: int, path: int, here: Snapshot | None = None) -> Snapshot:
        """A snapshot of the state now, at interpreter position (``end``, ``n``, ``g``) and
        op path ``path``; ``here`` is one already taken of this very state (a memoized
        call's), shared instead of taken again."""
        snap = self.snapshot() if here is None else Snapshot(
            here.fn, here.memory, here.host, here.attrs, here.checker, here.irqs, here.pages)
        snap.end, snap.n, snap.g, snap.path = end, n, g, path
        return snap

    @property
    def page_tracking(self) -> str:
        """How snapshots hold memory (docs/spec/fuzzing.md §9): ``userfaultfd`` (a restore
        rewrites the pages the input wrote), ``pagemap`` (it drops every written page and
        rewrites the snapshot's) or ``copies`` (every BAR and heap copied)."""
        if self.arena is None:
            return "copies"
        return "userfaultfd" if isinstance(self.arena, cow.TrackedArena) else "pagemap"

    def _bar_blocks(self) -> Any:
        """The blocks of each BAR that may hold data (``RegisterFile.blocks``): known while
        the arena tracks writes (docs/spec/fuzzing.md §9), else None (every block looked at)."""
        arena = self.arena
        if not isinstance(arena, cow.TrackedArena):
            return None
        return arena.maybe_data(self._bar_region)

    def _in_arena(self, mem: Any) -> bool:
        return id(mem) in self._arena_ids

    def restore(self, snap: Snapshot, count: str = "restored") -> DeviceHarness:
        """Put the session back exactly as it was when ``snap`` was taken (no reallocation
        of BARs or host buffers: the driver's views into them stay valid). ``count``: the
        ``snap_stats`` counter it adds to."""

        def memory(ms: MappingState) -> Any:
            return snap.memory[(ms.pasid, ms.address)]

        if snap.pages is not None:
            self.arena.load(snap.pages)  # type: ignore[union-attr]
            self._loads += 1
            if self.verify_every and self._loads % self.verify_every == 0:
                self._verify(snap)
        self.fn.restore(snap.fn, memory)
        if snap.host is not self._host_clean or not self.journal:
            # journaled: only a call changes the test driver's objects (docs/spec/fuzzing.md §9)
            for fields, containers, obj in snap.host:
                d = obj.__dict__
                d.update(fields)
                for k in containers:  # the containers get a copy of their own again
                    d[k] = _copy(fields[k])
            self._host_clean = snap.host
        attrs = snap.attrs
        d = self.__dict__
        d.update(attrs)
        for k in _containers(attrs):  # the containers get a copy of their own again
            d[k] = _copy(attrs[k])
        self.checker.load(snap.checker)
        self.td.irqs[:] = snap.irqs
        self.executed_from = snap
        self.snap_stats[count] += 1
        self._restores += 1
        if self.journal and self.journal_every and self._restores % self.journal_every == 0:
            self._verify_journal(snap, count)
        return self

    def _verify_journal(self, snap: Snapshot, count: str) -> None:
        """The check of journaled restores (docs/spec/fuzzing.md §9): the function's whole
        saved state and every test-driver object's fields equal the snapshot's. A change
        that escaped the journal (an entry that did not mark the blocks it changed) would
        make the next input start from a state no input led to: on a miss journaling is
        turned off, the snapshot restored in full and the snapshots dropped (they may hold
        the escaped change), or with ``verify_raises`` the miss raises."""
        dev = self.dev
        held, marks = dev.held, set(dev.marks)
        now = self.fn.save(keep=self._in_arena) if self.arena is not None else self.fn.save()
        dev.held, dev.marks = held, marks  # what the restore left (a save marks what it saved)
        bad = [f"the device's {name}" for name in ("config", "bars", "driver", "stats",
                                                    "msix_stats", "mappings", "faults",
                                                    "clock_ns", "device")
               if getattr(now, name) != getattr(snap.fn, name)]
        bad += [f"the test driver's {type(o).__name__}" for fields, _, o in snap.host
                if vars(o) != fields]
        recent = list(self.recent)
        self.recent.clear()
        if not bad:
            return
        why = f"restore left {', '.join(bad)} unlike the snapshot: a change escaped the journal"
        if self.verify_raises:
            raise RuntimeError(why)
        self.journal = self.fn.journal = False
        self.snap_stats["journal_misses"] += 1
        self.restore(snap, count)
        self.snap_stats[count] -= 1  # the same restore, done in full
        self.drop_snapshots()
        # a finding (a harness bug is a bug): the input that shows it replayed alone
        self.journal_miss = find_journal_culprit(self.chip.name, recent, why)

    def _verify(self, snap: Snapshot) -> None:
        """The debug check of the page tracking: after a load, every page of the arena holds
        what the snapshot says (a restore that left a page as an input wrote it would make
        the next input start from a state no input led to)."""
        bad = self.arena.verify(snap.pages)  # type: ignore[union-attr]
        if len(bad) and isinstance(self.arena, cow.TrackedArena) and not self.verify_raises:
            # the pagemap arena needs no tracking; the snapshots may hold the missed
            # write's effects, so they go too
            self.arena.untrack(snap.pages)
            self.snap_stats["tracking_misses"] += 1
            self.verify_every = 0
            self.drop_snapshots()
            return
        if len(bad):
            raise RuntimeError(f"restore left {len(bad)} arena pages unlike the snapshot "
                               f"(first: page {int(bad[0])}): a write escaped the page tracking")

    def drop_snapshots(self) -> None:
        """Forget every snapshot (call after changing device behaviour, e.g. a monkeypatch)."""
        self.snaps.clear()
        self._seen_prefixes.clear()

    def keep_snapshot(self, key: Any, snap: Snapshot) -> None:
        self.snaps[key] = snap
        self.snap_stats["taken"] += 1
        while len(self.snaps) > SNAP_MAX:
            self.snaps.popitem(last=False)

    def start(self, ops: list[Op]) -> DeviceHarness:
        """:meth:`fresh`, then ``ops``; restored from a snapshot when this start ran before.
        A failing start raises as usual and is not kept."""
        key = ("ops", tuple(ops))
        snap = self.snaps.get(key) if self.use_snapshots else None
        if snap is not None:
            self.snaps.move_to_end(key)
            return self.restore(snap)
        self.fresh()
        self.run(ops)
        if self.use_snapshots:
            self.keep_snapshot(key, self.snapshot())
        return self

    def find_prefix(self, data: bytes) -> Snapshot | None:
        """The snapshot of the longest input prefix of ``data`` that ran before."""
        best: Snapshot | None = None
        best_key = b""
        for key in self.snaps:
            if type(key) is bytes and len(key) > len(best_key) and data.startswith(key) \
                    and not straddles(data, len(key)):
                best_key = key
        if best_key:
            best = self.snaps[best_key]
            self.snaps.move_to_end(best_key)
        return best

    def _targets(self) -> list[tuple[int, int, str]]:
        """Registers the fuzzer aims at: the chip map, every channel's block, MSI-X."""
        out = [(r.bar, r.offset, r.name) for r in self.chip.registers.values() if r.bar >= 0]
        for c in self.chans:
            for name in ("x2i_tail", "x2i_head", "i2x_tail", "i2x_head", "intr"):
                bar, off = self.chip.dev_to_bar(getattr(c, name))
                out.append((bar, off, f"chan{c.index}.{name}"))
        m = self.chip.msix
        out += [(m.bar, m.table_offset + 12, "msix0.ctrl"), (m.bar, m.pba_offset, "msix.pba")]
        return sorted(set(out))

    # -- device entries (the Guard observer checks each one) ------------------------------------
    def _guarded(self, what: str, fn: Callable[..., Any], *args: Any) -> Any:
        """Call a function entry; an exception escaping the device (not a finding of the
        observers, not an errno) is a crash."""
        try:
            return fn(*args)
        except (Failure, OSError):
            raise
        except Exception as exc:  # noqa: BLE001 - anything escaping is the finding
            raise DeviceCrash(type(exc).__name__, f"{what}: {exc!r}") from exc

    def poll(self) -> None:
        self._guarded("poll", self.fn.poll)

    # -- applying ops -----------------------------------------------------------------------
    def apply(self, op: Op) -> None:
        """Run one op and check every invariant; raises Failure or TraceError."""
        self.executed.append(op)
        self.steps += 1
        self.polled = False
        entry = self._arity.get(op.verb)
        if entry is None:
            entry = self._verb(op.verb)
        fn, least, most = entry
        if not least <= len(op.args) <= most:
            raise TraceError(f"bad operands for {op.verb}: {op.args!r}")
        fn(*op.args)
        self.checker.after_op()

    def _verb(self, verb: str) -> tuple[Callable[..., Any], int, float]:
        """The handler of ``verb`` and how many positional operands it takes (the only way
        ops pass operands), worked out once per verb."""
        fn = getattr(self, "v_" + verb, None)
        if fn is None:
            raise TraceError(f"unknown verb {verb!r}")
        params = inspect.signature(fn).parameters.values()
        pos = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        least = sum(1 for p in pos if p.default is p.empty)
        most = float("inf") if any(p.kind == p.VAR_POSITIONAL for p in params) else len(pos)
        entry = self._arity[verb] = (fn, least, most)
        return entry

    def run(self, ops: list[Op]) -> None:
        for op in ops:
            self.apply(op)

    def v_w32(self, bar: int, off: int, value: int) -> None:
        try:
            self.fn.mmio_write(bar, off, value)
        except Failure:
            raise
        except Exception as exc:  # noqa: BLE001 - anything escaping the device is the finding
            raise DeviceCrash(type(exc).__name__, f"mmio_write({bar}, {off:#x}): {exc!r}") from exc

    def v_r32(self, bar: int, off: int) -> int:
        return self.fn.mmio_read(bar, off)

    def v_shm(self, bar: int, off: int, data: bytes) -> None:
        mem = self.regs.bytes.get(bar)
        if mem is not None and 0 <= off and off + len(data) <= len(mem):
            mem[off : off + len(data)] = data

    def v_host(self, pasid: int, addr: int, data: bytes) -> None:
        space = self.iommu.spaces.get(pasid)
        m = space.find(addr) if space else None
        if m is not None and addr + len(data) <= m.end:
            start = addr - m.address + m.skew  # type: ignore[attr-defined]
            memoryview(m.mem)[start : start + len(data)] = data

    def v_dma_map(self, pasid: int, addr: int, size: int, perm: int) -> None:
        if 0 < size <= MAX_MAP:
            try:
                self.fn.dma_map(pasid, addr, size, perm & 3, None, mem=bytearray(size))
            except (ValueError, FileExistsError):
                self.events["dma_map_refused"] += 1

    def v_dma_unmap(self, pasid: int, addr: int, size: int) -> None:
        try:
            self.fn.dma_unmap(pasid, addr, size)
        except FileNotFoundError:
            pass

    def v_tick(self, ns: int) -> None:
        self.clock.advance(max(0, ns))
        self.poll()

    def v_reset(self) -> None:
        self._guarded("reset", self.fn.reset)
        self._after_reset()

    def _after_reset(self) -> None:
        self.drv, self.clients, self.contexts, self.pending = None, [], [], []
        self.queues, self.read_marks = [], {}
        self.checker.after_reset()
        self.events["reset"] += 1

    def v_cfg(self, off: int, data: bytes) -> None:
        """A raw config-space write (command register, BARs, MSI-X control, PCIe Device
        Control "Initiate FLR" ...), with PCI semantics (docs/spec/device.md §2.2)."""
        if not 0 <= off <= CONFIG_SIZE - len(data):  # what a PCI core never passes on
            self.events["cfg_refused"] += 1
            return
        flr = self.fn.config._flr_requested(off, data)
        self._guarded("config_write", self.fn.config_write, off, data)
        if flr:
            self._after_reset()
            self.events["flr"] += 1

    def v_fault(self, name: str, *args: Any) -> None:
        fn = self.faults.get(name)
        if fn is None:
            raise TraceError(f"unknown fault {name!r} (known: {', '.join(sorted(self.faults))})")
        fn(*args)

    def v_call(self, name: str, *args: Any) -> None:
        fn = self.calls.get(name)
        if fn is None:
            raise TraceError(f"unknown call {name!r} (known: {', '.join(sorted(self.calls))})")
        self._host_clean = None  # a call may change any test-driver object (§9)
        try:
            fn(*args)
        except DriverError as exc:  # what a driver would turn into an errno: fine
            self.events[f"driver_{exc.errno}"] += 1
        except OSError as exc:  # PciFunction.proxy refusals
            self.events[f"proxy_{exc.errno}"] += 1

    def v_expect(self, *args: Any) -> None:
        check_expect(self, args)

    # -- faults -----------------------------------------------------------------------------
    def f_bus_master(self, on: int) -> None:
        """The host clears/sets bus mastering in config space: every DMA faults while off."""
        cmd = self.fn.config.command & ~CMD_MASTER | (CMD_MASTER if on else 0)
        self.fn.config_write(COMMAND, cmd.to_bytes(2, "little"))

    # -- semantic calls -------------------------------------------------------------------
    def _driver(self) -> PyDriver:
        if self.drv is None:
            self.drv = Aie4PyDriver(self.td) if self.chip.aie4 is not None else PyDriver(self.td)
            if self.arena is not None and self._image_region is not None:
                self.drv.image_buffer = self._image_buffer
            if self._pool_region is not None:
                self.drv.host_buffer = self._driver_buffer
        return self.drv

    def _driver_buffer(self, pasid: int, iova: int, size: int) -> Any:
        return self.host_buffer(("driver", pasid, iova), size)

    def host_buffer(self, key: Any, size: int) -> Any:
        """Zeroed host memory of ``size`` bytes for the buffer ``key`` names (a driver's
        mapping by PASID and address, the client's memory): the span of the arena's pool
        that key got on first use (docs/spec/fuzzing.md §9), so a snapshot holds and a
        restore rewrites only its pages written, as for heaps. A new bytearray where there
        is no pool, it is full, the key asks for another size, or a live mapping holds the
        span (two holders never share memory: :meth:`_held`)."""
        if self._pool_region is None or self.arena is None:
            return bytearray(size)
        got = self._pool.get(key)
        if got is None:
            span = -(-size // cow.PAGE) * cow.PAGE
            if self._pool_next + span > HOST_POOL:
                return bytearray(size)
            off = self._pool_next
            self._pool_next += span
            got = self._pool[key] = (self.arena.region(self._pool_region)[off : off + size], off)
            self._arena_ids |= {id(got[0])}
        view, off = got
        if len(view) != size or self._held(view):
            return bytearray(size)
        self.arena.revert_span(self._pool_region, off, size)
        return view

    def _held(self, view: Any) -> bool:
        """Does a live mapping or a queue of the harness hold ``view``? A destroyed queue
        holds its memory still: its stale doorbells and the checker's read marks read it."""
        return (any(m.mem is view for space in self.iommu.spaces.values() for m in space.maps)
                or any(q.mem is view for q in self.queues))

    def _image_size(self) -> int:
        return -(-len(image_for(self.chip)) // ALIGN) * ALIGN

    def _image_buffer(self, size: int) -> Any:
        """The arena's image region (zeroed) for the chip's image when nothing holds it,
        else a new buffer (:meth:`_held`)."""
        region = self.arena.region(self._image_region)  # type: ignore[union-attr,arg-type]
        if size != len(region) or self._held(region):
            return bytearray(size)
        self.arena.revert_region(self._image_region)  # type: ignore[union-attr,arg-type]
        return region

    def _aie2(self) -> PyDriver:
        """The driver for an AIE2 call; on an AIE4 chip the call is refused like an errno."""
        if self.chip.aie4 is not None:
            raise DriverError("EOPNOTSUPP", "an AIE2 call on an AIE4 chip")
        return self._driver()

    def c_fw_image(self, iova: int = FW_IOVA, flip: int = -1) -> None:
        """Map the chip's signed image at ``iova`` (PASID 0); ``flip``: corrupt one byte."""
        img = bytearray(image_for(self.chip))
        if flip >= 0:
            img[flip % len(img)] ^= 0xFF
        self._driver().map_image(bytes(img), iova & ~0xFFFF)  # the npu image, AIE4's too

    def c_bring_up(self, async_events: int = 1) -> None:
        drv = self._aie2()
        drv.bring_up(image_for(self.chip), async_events=bool(async_events))
        self.events["bring_up_ok"] += 1

    def c_boot(self) -> None:
        """The short bring-up: SMU power cycle, PSP VALIDATE + START, FW_ALIVE."""
        drv = self._aie2()
        drv.smu_start()
        drv.psp_start(image_for(self.chip))
        drv.wait_fw_alive()
        self.events["boot_ok"] += 1

    def c_fw_alive(self) -> None:
        self._aie2().wait_fw_alive()
        self.events["fw_alive_ok"] += 1

    def c_drain(self, which: int = 0) -> None:
        """The RX worker of the mgmt channel (0) or of context ``which - 1``."""
        chan = self._chan(which)
        if chan is not None:
            try:
                chan.drain()
            except DriverError:
                self.events["rx_bad_state"] += 1
                raise

    def _chan(self, which: int) -> DriverChannel | None:
        if which == 0 or not self.contexts:
            return self.drv.mgmt if self.drv is not None else None
        return self.contexts[(which - 1) % len(self.contexts)].chan

    def c_msg(self, opcode: int, payload: bytes = b"") -> None:
        """A well-formed mgmt request and a bounded wait for its reply."""
        drv = self.drv
        if drv is None or drv.mgmt is None:
            raise DriverError("ENODEV", "no mgmt channel")
        chan = drv.mgmt
        dch = self.dev.mailbox.channels.get(0) if self.dev.mailbox else None
        before_in = dch.msgs_in if dch is not None else 0
        mid = chan.send(opcode, payload)
        for _ in range(MAX_WAIT_TICKS):
            self.poll()
            for r in chan.drain():
                if r.id == mid:
                    self.events["msg_answered"] += 1
                    return
                drv.unsolicited.append(r)
            self.clock.advance(TICK_NS)
        # No reply. Fine if the firmware legitimately holds or never saw it.
        dch = self.dev.mailbox.channels.get(0) if self.dev.mailbox else None
        if (dch is None or not dch.ok or dch is not self.dev.mailbox.channels.get(0)
                or opcode == Opcode.REGISTER_ASYNC_EVENT_MSG or dch.outq
                or dch.msgs_in != before_in + 1 or dch.x2i_head != chan.x2i_tail):
            self.events["msg_unanswered_ok"] += 1
            return
        raise Hang("mgmt_reply", f"opcode {opcode:#x} id {mid:#x} consumed but never answered")

    def c_client(self, pasid: int = 1) -> None:
        drv = self._aie2()
        pasid &= 0xFFFF
        va = CLIENT_VA + (pasid << 24)
        space = self.iommu.spaces.get(pasid)
        if space is not None and space.overlaps(va, CLIENT_HEAP):
            raise DriverError("EEXIST", "client heap already mapped")
        heap = None
        if self.arena is not None and pasid < COW_HEAPS:  # zeroed: its base is
            region = len(self.chip.bars) + pasid
            self.arena.revert_region(region)
            heap = self.arena.region(region)
        self.clients.append(PyClient(drv, pasid, heap_size=CLIENT_HEAP, heap_va=va,
                                     chunk=CLIENT_HEAP, proxied=bool(pasid), heap=heap))

    def c_ctx_create(self, client: int = 0, start_col: int = -1, num_col: int = 1) -> None:
        if not self.clients:
            self.c_client(0)
        cl = self.clients[client % len(self.clients)]
        if not cl.proxied and (self.drv is None or self.drv.mgmt is None):
            raise DriverError("ENODEV", "no mgmt channel")
        # the context's buffers first: a spent heap (ENOMEM) must not leave a context
        # without them (c_submit looks them up)
        src, dst = cl.alloc(64), cl.alloc(64)
        ctx = PyContext(cl, None if start_col < 0 else start_col, max(1, num_col))
        self.contexts.append(ctx)
        self.bos[ctx] = (src, dst)
        self.events["ctx_created"] += 1

    def c_ctx_destroy(self, which: int = 0) -> None:
        if not self.contexts:
            raise DriverError("ENOENT", "no context")
        ctx = self.contexts.pop(which % len(self.contexts))
        self.bos.pop(ctx, None)
        self.pending = [p for p in self.pending if p[0] is not ctx]
        ctx.destroy()

    def c_submit(self, which: int = 0, kind: int = 0, count: int = 1) -> None:
        """A chain of ``count`` commands of one kind on a context: nop, copy, fail, hang,
        bad argument count, bad descriptor; then a bounded wait for the answer."""
        from ..testing.pyctx import Cmd

        if not self.contexts:
            raise DriverError("ENOENT", "no context")
        ctx = self.contexts[which % len(self.contexts)]
        src, dst = self.bos[ctx]
        K = kernels.Kernel
        form, kind = kind // 6 % len(SUBMIT_FORMS), kind % 6
        desc = [kernels.Desc(K.NOP), kernels.Desc(K.COPY, count=16), kernels.Desc(K.FAIL),
                kernels.Desc(K.HANG), kernels.Desc(K.COPY, count=16), kernels.Desc(K.NOP)][kind]
        if SUBMIT_FORMS[form] == "debug_bo":  # count: register a 4 KiB BO, a small one,
            bo = [None, ctx.client.alloc(4096), src, None, dst][count % 5]  # none, unregister
            mid = ctx.debug_bo(bo, int(count % 5 not in (0, 3)))
            self.events[f"debug_bo_{count % 5}"] += 1
            for _ in range(MAX_WAIT_TICKS):  # a status-only response
                r = ctx.collect().get(mid)
                if r is not None:
                    ok = r.payload[:4] == bytes(4)
                    self.events["debug_bo_ok" if ok else "debug_bo_refused"] += 1
                    return
                self.clock.advance(TICK_NS)
            self.events["debug_bo_unanswered"] += 1
            return
        else:
            cmd = Cmd(desc, [src, dst] if kind == 1 else [], slot_type=SUBMIT_FORMS[form])
            if kind == 4:
                cmd.raw_words = [1, 2, 3]
            if kind == 5:
                cmd.inst = src  # 64 bytes of data, not a descriptor
            mid = ctx.submit([cmd] * max(1, min(count, 8)))
            self.events[f"submit_{kind}" + (f"_slot{form}" if form else "")] += 1
        for _ in range(MAX_WAIT_TICKS):
            res = ctx.result(mid)
            if res is not None:
                self.events["job_ok" if res[0] == 0 else "job_failed"] += 1
                return
            self.clock.advance(TICK_NS)
        self.events["job_unanswered"] += 1

    def c_proxy(self, pasid: int, opcode: int, payload: bytes = b"") -> None:
        self._guarded("proxy", self.fn.proxy, pasid, opcode, payload)
        self.events["proxy_ok"] += 1

    # -- AIE4 semantic calls (docs/spec/aie4.md §6-§7, docs/spec/fuzzing.md §8) ---------
    def _a4(self) -> Aie4PyDriver:
        drv = self._driver()
        if not isinstance(drv, Aie4PyDriver):
            raise TraceError(f"{self.chip.name}: AIE4 calls need an AIE4 chip")
        return drv

    def c_a4_bring_up(self, timeout_ms: int = 2000) -> None:
        """The AIE4 init order with a context timeout of ``timeout_ms`` (0: none)."""
        self._a4().bring_up(timeout_ms=timeout_ms & 0xFFFF)
        self.events["bring_up_ok"] += 1

    def _client_alloc(self, data: bytes) -> int:
        """``data`` in the client's memory (mapped on first use, PASID A4_PASID); its address."""
        space = self.iommu.spaces.get(A4_PASID)
        if space is None or space.find(CLIENT_IOVA) is None:
            self.fn.dma_map(A4_PASID, CLIENT_IOVA, A4_CLIENT_SIZE, DMA_READ | DMA_WRITE, None,
                            mem=self.host_buffer("client", A4_CLIENT_SIZE))
        size = (len(data) + 63) // 64 * 64
        if self.a4next + size > A4_CLIENT_SIZE:
            self.a4next = 0
        addr = CLIENT_IOVA + self.a4next
        self.a4next += size
        # a CPU store into the client's memory, not the device's DMA: bus mastering off
        # (a config write) does not stop it, nor log an IOMMU fault
        self.v_host(A4_PASID, addr, data)
        return addr

    def c_a4_ctx(self) -> None:
        """CREATE_HW_CONTEXT on a fresh queue in the client's memory."""
        drv = self._a4()
        if drv.mgmt is None:
            raise DriverError("ENODEV", "no mgmt channel")
        self._client_alloc(b"")  # the client's memory exists before its queue
        q = drv.create_queue(A4_PASID, slot=len(self.queues) % A4_QUEUE_SLOTS)
        self.queues.append(q)
        self.events["ctx_created"] += 1

    def _queue(self, which: int) -> Aie4Queue:
        if not self.queues:
            raise DriverError("ENOENT", "no AIE4 queue")
        return self.queues[which % len(self.queues)]

    def a4_packet(self, kind: int, junk: bytes = b"") -> bytes:
        """One HSA packet of ``kind`` (A4_KINDS), its buffers placed in client memory."""
        name = A4_KINDS[kind % len(A4_KINDS)]
        if name == "junk":
            return junk.ljust(HSA_PKT.size, b"\0")[: HSA_PKT.size]
        sig = self._client_alloc(struct.pack("<I", CmdState.NEW))
        if name == "signal_outside":
            sig = 0xDEAD_0000_0000
        code = self._client_alloc(A4_CODES.get(name, A4_CODES["nop"]))
        bufs = [self._client_alloc(bytes(64)), self._client_alloc(bytes(64))] if name == "copy" else []
        args = self._client_alloc(b"".join(struct.pack("<Q", b) for b in bufs) or bytes(8))
        n = 8 * len(bufs)
        if name in ("indirect", "indirect_bad_count"):
            ebs = [(self._client_alloc(HSA_EXEC_BUF.pack(ctrlcode_lo=code & 0xFFFFFFFF,
                                                         ctrlcode_hi=code >> 32, args_len=n,
                                                         args_lo=args & 0xFFFFFFFF,
                                                         args_hi=args >> 32)), uc)
                   for uc in range(2)]  # fmt: skip
            return indirect_pkt(sig, ebs, count=7 if name == "indirect_bad_count" else None)
        return exec_pkt(sig, CLIENT_IOVA + A4_CLIENT_SIZE * 8 if name == "unmapped_code" else code,
                        args, n + 8 if name == "bad_args_len" else n,
                        chain=1 if name == "chain" else 0, opcode=9 if name == "bad_opcode" else HsaOpcode.EXEC_BUF)

    def c_a4_pkt(self, which: int, kind: int, ahead: int = 0, junk: bytes = b"") -> None:
        """Write a packet at write_index + ``ahead`` of a queue, without publishing it."""
        q = self._queue(which)
        q.put(q.index("write_index") + ahead, self.a4_packet(kind, junk))
        self.events[f"a4_pkt_{A4_KINDS[kind % len(A4_KINDS)]}"] += 1

    def c_a4_publish(self, which: int, delta: int) -> None:
        """Move write_index by ``delta`` from read_index (past capacity, or behind it, too)."""
        q = self._queue(which)
        q.publish(max(0, q.index("read_index") + delta) & 0xFFFF_FFFF_FFFF_FFFF)

    def c_a4_ring(self, which: int) -> None:
        """The doorbell, also of a destroyed context or with nothing new."""
        q = self._queue(which)
        self._guarded("doorbell", self.fn.mmio_write, DOORBELL_BAR, q.doorbell_off, 0)
        self.events["doorbell"] += 1

    def c_a4_submit(self, which: int, kind: int, count: int = 1) -> None:
        """The well-behaved producer: ``count`` packets at write_index, publish, ring."""
        q = self._queue(which)
        pkts = [self.a4_packet(kind) for _ in range(max(1, min(count, 4)))]
        self._guarded("doorbell", q.submit, *pkts)
        self.events[f"a4_submit_{A4_KINDS[kind % len(A4_KINDS)]}"] += 1

    def c_a4_destroy(self, which: int, flags: int = 0) -> None:
        """DESTROY_HW_CONTEXT (the queue stays listed: its doorbell can still be rung)."""
        q = self._queue(which)
        st = self._a4().call(Opcode4.DESTROY_HW_CONTEXT, hw_context_id=q.ctx_id, flags=flags & 1)
        self.events["a4_destroy_ok" if st["status"] == Status4.SUCCESS else "a4_destroy_refused"] += 1

    # -- state summary (coverage proxy and Hypothesis events) ------------------------------
    def state_key(self) -> tuple:
        dev = self.dev
        chans = tuple(sorted((i, ch.error is None) for i, ch in dev.mailbox.channels.items())) \
            if dev.mailbox else ()
        ctxs = tuple(sorted((c.id, c.hung) for c in dev.ctx.contexts.values())) if dev.ctx else ()
        susp = bool(dev.fw and getattr(dev.fw, "state", None) and dev.fw.state.suspended)
        return (dev.smu.powered, dev.psp.state, susp, chans, ctxs)

    def visit_states(self) -> list[str]:
        """Names of the rare states the device is in now (for event counting)."""
        dev = self.dev
        out = [f"psp_{dev.psp.state}"]
        if dev.mailbox and any(ch.error for ch in dev.mailbox.channels.values()):
            out.append("channel_error")
        if dev.fw and getattr(dev.fw, "state", None) and dev.fw.state.suspended:  # AIE2 only
            out.append("suspended")
        if dev.ctx:
            if dev.ctx.contexts:
                out.append("context_live")
            if any(c.hung for c in dev.ctx.contexts.values()):
                out.append("context_hung")
        if dev.fw and getattr(dev.fw, "async_events", None):
            out.append("async_held")
        return out


# -- the byte-stream interpreter ------------------------------------------------------------
_U16_FROM = struct.Struct("<H").unpack_from
_U32_FROM = struct.Struct("<I").unpack_from


class Reader:
    """Little-endian operands from one chunk; bytes past the end read as zero.

    Every op decodes several operands, so the common case (all bytes present) is one
    ``unpack_from`` with no slicing or padding; only the tail of a chunk pays for that.
    """

    __slots__ = ("data", "pos", "size")

    def __init__(self, data: bytes) -> None:
        self.data, self.pos, self.size = data, 0, len(data)

    def more(self) -> bool:
        return self.pos < self.size

    def take(self, n: int) -> bytes:
        pos = self.pos
        self.pos = pos + n
        out = self.data[pos : pos + n]
        return out if len(out) == n else out + bytes(n - len(out))

    def u8(self) -> int:
        pos = self.pos
        self.pos = pos + 1
        return self.data[pos] if pos < self.size else 0

    def u16(self) -> int:
        pos = self.pos
        self.pos = pos + 2
        if pos + 2 <= self.size:
            return _U16_FROM(self.data, pos)[0]
        return int.from_bytes(self.data[pos : pos + 2], "little")  # missing high bytes: zero

    def u32(self) -> int:
        pos = self.pos
        self.pos = pos + 4
        if pos + 4 <= self.size:
            return _U32_FROM(self.data, pos)[0]
        return int.from_bytes(self.data[pos : pos + 4], "little")


OPCODES = sorted(int(o) for o in Opcode)
#: AIE4 packet kinds of ``a4_pkt``/``a4_submit``: well formed, failing, hanging and each
#: malformation of docs/spec/aie4.md §7
A4_KINDS = ("nop", "copy", "fail", "hang", "chain", "indirect", "bad_args_len", "unmapped_code",
            "bad_opcode", "indirect_bad_count", "signal_outside", "junk")
#: the kernel each AIE4 packet kind runs, encoded once (a packet is built per op)
A4_CODES = {name: kernels.encode(desc) for name, desc in (
    ("nop", kernels.Desc(kernels.Kernel.NOP)), ("fail", kernels.Desc(kernels.Kernel.FAIL)),
    ("hang", kernels.Desc(kernels.Kernel.HANG)), ("copy", kernels.Desc(kernels.Kernel.COPY, count=16)))}
A4_PASID = 7  # the fuzzed AIE4 client's PASID
A4_CLIENT_SIZE = 1 << 20
A4_QUEUE_SLOTS = 8  # queue BOs the driver helper places 64 KiB apart

#: what ``submit KIND`` sends by KIND // 6: the chain's default slot (None), each
#: CHAIN_EXEC_NPU slot type, or a CONFIG_DEBUG_BO (docs/spec/jobs.md §4, §4a)
SUBMIT_FORMS: tuple[int | str | None, ...] = (
    None, int(SlotType.NON_ELF), int(SlotType.PARTIAL_ELF), int(SlotType.PREEMPT),
    int(SlotType.ELF), "debug_bo")
# malformation flags of a posted message
LIE_SIZE, BAD_MAGIC, BAD_SZVER, UNALIGNED_TAIL, TOMB_AHEAD, TAIL_PAST, ZERO_SIZE, NO_KICK = (
    1 << i for i in range(8))


class Builder:
    """Turns operand values into ops for one session (shared by bytes and Hypothesis)."""

    def __init__(self, s: DeviceHarness) -> None:
        self.s = s
        self.bars = sorted(s.chip.bars)  # the chip's BAR numbers, which ops name by index
        self._locs: dict[int, tuple[int, int]] = {}  # device address -> (bar, offset)

    def loc(self, addr: int) -> tuple[int, int]:
        """The BAR and offset of a device address: the chip's map is fixed, and posts and
        acks ask for the same few channel registers on every op decoded."""
        loc = self._locs.get(addr)
        if loc is None:
            loc = self._locs[addr] = self.s.chip.dev_to_bar(addr)
        return loc

    def reg_write(self, idx: int, value: int, trapped: bool = True) -> list[Op]:
        bar, off, _ = self.s.targets[idx % len(self.s.targets)]
        if trapped:
            return [Op("w32", (bar, off, value))]
        return [Op("shm", (bar, off, struct.pack("<I", value)))]

    def raw_write(self, bar: int, off: int, value: int) -> list[Op]:
        """Anywhere, including absent BARs, unaligned and past-the-end offsets."""
        bars = self.bars
        b = bars[bar % len(bars)] if bar < 0x80 else bar % 8
        size = self.s.chip.bars[b].size if b in self.s.chip.bars else 0x1000
        return [Op("w32", (b, off % (size + 16), value))]

    def raw_read(self, idx: int) -> list[Op]:
        bar, off, _ = self.s.targets[idx % len(self.s.targets)]
        return [Op("r32", (bar, off))]

    def ring_store(self, chan: int, off: int, data: bytes, i2x: bool = False) -> list[Op]:
        c = self.s.chans[chan % len(self.s.chans)]
        bar, base = self.loc(c.i2x_buf if i2x else c.x2i_buf)
        off = (off % c.size) & ~3
        data = data[: c.size - off]
        return [Op("shm", (bar, base + off, data))] if data else []

    def post(self, chan: int, opcode: int, payload: bytes, flags: int = 0, mid: int = 0,
             lie: int = 0) -> list[Op]:
        """A message at the host's x2i tail the way the driver writes it, optionally
        malformed (flags), then the trapped tail write."""
        s, c = self.s, self.s.chans[chan % len(self.s.chans)]
        rd = s.regs.read_dev
        payload = payload[: 0x7FC]
        payload += bytes(-len(payload) % 4) if not flags & LIE_SIZE else b""
        total = len(payload)
        if flags & LIE_SIZE:
            total = (total + lie) & 0xFFFFFFFF
        if flags & ZERO_SIZE:
            total = 0
        szv = sz_ver(total) ^ (1 << 17 if flags & BAD_SZVER else 0)
        ident = (mid & 0xFF) | (0 if flags & BAD_MAGIC else MSG_ID_MAGIC)
        pkt = MSG_HEADER.pack(total, szv, ident, opcode) + payload
        tail, head, size = rd(c.x2i_tail), rd(c.x2i_head), c.size
        if tail > size or tail & 3 or head > size or head & 3:
            tail = head = 0
        ops: list[Op] = []
        bar, base = self.loc(c.x2i_buf)
        if flags & TOMB_AHEAD:
            ops.append(Op("shm", (bar, base + tail, struct.pack("<I", TOMBSTONE))))
            tail += 4
        elif tail + len(pkt) > size - 4:
            if tail + 4 <= size:
                ops.append(Op("shm", (bar, base + tail, struct.pack("<I", TOMBSTONE))))
            tail = 0
        pkt = pkt[: size - tail]
        ops.append(Op("shm", (bar, base + tail, pkt)))
        new_tail = tail + len(pkt)
        if flags & UNALIGNED_TAIL:
            new_tail += 2
        if flags & TAIL_PAST:
            new_tail = size + 4
        if not flags & NO_KICK:
            ops.append(Op("w32", (*self.loc(c.x2i_tail), new_tail & 0xFFFFFFFF)))
        return ops

    def ack(self, chan: int, consume: bool = True) -> list[Op]:
        """Interrupt ack (intr = 0), and consume every response (i2x head = i2x tail)."""
        c = self.s.chans[chan % len(self.s.chans)]
        ops = [Op("w32", (*self.loc(c.intr), 0))]
        if consume:
            ops.append(Op("w32", (*self.loc(c.i2x_head), self.s.regs.read_dev(c.i2x_tail))))
        return ops

    def psp(self, cmd: int, arg0: int, arg1: int, arg2: int, good_image: bool) -> list[Op]:
        rr = self.s.regs.loc
        if good_image and cmd == PspCmd.VALIDATE:
            arg0, arg1 = FW_IOVA & 0xFFFFFFFF, FW_IOVA >> 32
            arg2 = (len(image_for(self.s.chip)) + 0xFFFF) & ~0xFFFF
        if good_image and cmd == PspCmd.START:
            arg0 = 1
        return [Op("w32", (*rr(role), v)) for role, v in (
            ("psp.cmd", cmd), ("psp.arg0", arg0), ("psp.arg1", arg1), ("psp.arg2", arg2),
            ("psp.intr", 0), ("psp.intr", 1))]

    def smu(self, cmd: int, arg: int) -> list[Op]:
        rr = self.s.regs.loc
        return [Op("w32", (*rr(role), v)) for role, v in (
            ("smu.resp", 0), ("smu.arg", arg), ("smu.cmd", cmd), ("smu.intr", 0), ("smu.intr", 1))]

    def msg(self, opcode: int, payload: bytes, exact: bool) -> list[Op]:
        lay = LAYOUTS.get(opcode)  # type: ignore[call-overload]
        if exact and lay is not None:
            payload = (payload + bytes(lay.req.size))[: lay.req.size]
        payload = (payload + bytes(-len(payload) % 4)) or bytes(4)
        return [Op("call", ("msg", opcode, payload))]


class Interpreter:
    """Decode fuzz bytes into ops and run them on a session, one op at a time."""

    def __init__(self, session: DeviceHarness) -> None:
        self.s = session
        self.b = Builder(session)
        self.table: list[Callable[[Reader], list[Op]]] = [
            self._w_reg, self._w_raw, self._st_reg, self._ring, self._post, self._post,
            self._tick, self._ack, self._reset, self._smu, self._psp, self._fw_image,
            self._bring_up, self._msg, self._msg, self._ctx, self._submit, self._destroy,
            self._fault, self._proxy, self._read, self._shm_raw, self._host,
            self._cfg, self._msix, self._flr,
        ]
        if session.chip.aie4 is not None:  # no AIE2 mailbox, PSP or message vocabulary
            self.table = [
                self._w_reg, self._w_raw, self._st_reg, self._tick, self._reset, self._read,
                self._shm_raw, self._cfg, self._msix, self._flr, self._a4_bring_up,
                self._a4_ctx, self._a4_pkt, self._a4_pkt, self._a4_publish, self._a4_ring,
                self._a4_submit, self._a4_submit, self._a4_destroy, self._a4_tick, self._fw_image,
            ]

    def selector(self, method: str) -> int:
        """The selector byte of the op decoded by ``method`` (e.g. ``"_post"``)."""
        return self.table.index(getattr(self, method))

    def ops(self, data: bytes) -> Iterator[list[Op]]:
        for group, *_ in self.groups(data):
            yield group

    def groups(self, data: bytes, start: int = 0, n: int = 0,
               g: int = 0) -> Iterator[tuple[list[Op], int, bool, int, int]]:
        """Op groups from byte offset ``start`` (a group boundary) with ``g`` groups done
        and ``n`` spent of the MAX_OPS budget (a semantic call costs CALL_WEIGHT), each with
        the offset where it ended, whether it stayed inside its chunk (then the state after it
        depends on ``data[:end]`` only, see :func:`straddles`), the budget spent and its
        index."""
        base = 0
        table, count, sep = self.table, len(self.table), len(SEPARATOR)
        for chunk in data.split(SEPARATOR):
            size = len(chunk)
            end = base + size
            if end >= start:
                r = Reader(chunk)
                if start > base:
                    r.pos = start - base
                while r.pos < size:
                    n += 1
                    if n > MAX_OPS:
                        return
                    sel = chunk[r.pos]
                    r.pos += 1
                    group = table[sel % count](r)
                    if self._costly(group):
                        n += CALL_WEIGHT - 1
                        if n > MAX_OPS:
                            return
                    g += 1
                    pos = r.pos
                    yield group, base + pos, pos <= size, n, g
            base = end + sep

    def run(self, data: bytes) -> None:
        """Run every op of ``data`` on the session as it is."""
        for group in self.ops(data):
            for op in group:
                self.s.apply(op)

    def run_fresh(self, data: bytes, pin: int | None = None, hint: bytes | None = None,
                  limit: int | None = None) -> bytes | None:
        """Fresh device, then ``data``; with snapshots on, the longest prefix that ran before
        is restored instead of replayed, and new prefixes worth keeping are snapshotted.

        ``pin``: also snapshot at the first clean group boundary at or after byte ``pin``
        and return that prefix (None if the input ended or failed first): the incremental
        rounds of :func:`~xdna_emu.fuzz.atheris_target.builtin_fuzz` run many inputs that
        keep it. ``hint``: a prefix snapshotted before, tried ahead of the search.
        ``limit``: stop once this much budget (MAX_OPS units) is spent past the state the
        input started from, or before a boot (BOOT_CALLS) not memoized for its op path;
        ``session.ran_to`` is then the byte offset where it stopped (else ``len(data)``),
        so the input that really ran is ``data[:ran_to]``."""
        s = self.s
        s.ran_to = len(data)
        if not s.use_snapshots:
            s.fresh()
            self.run(data)
            return None
        snap = None
        if hint is not None and data.startswith(hint) and not straddles(data, len(hint)):
            snap = s.snaps.get(hint)
            if snap is not None:
                s.snaps.move_to_end(hint)
        if snap is None:
            snap = s.find_prefix(data)
        start = done = ngroups = 0
        if snap is None:
            s.fresh()
        else:
            s.restore(snap)
            start, done, ngroups = snap.end, snap.n, snap.g
        apply = s.apply
        since = done
        stop = done + limit if limit is not None else MAX_OPS
        pinned = data[:start] if pin is not None and 0 < start and start >= pin else None
        ended = start
        path = snap.path if snap is not None else 0
        for group, end, clean, n, g in self.groups(data, start, done, ngroups):
            ops = tuple(group)
            if n > stop or (limit is not None and self._boots(ops)
                            and ("path", path, ops) not in s.snaps):
                s.ran_to = ended  # spent, or a boot that would have to run: a parent's work
                break
            ended = end
            here = None  # a snapshot of the state right now, if one exists
            if self._memoized(ops):
                path, here = self._memo_call(path, ops, g)
            else:
                for op in ops:
                    apply(op)
                path = hash((path, ops))
            if clean:
                if pinned is None and pin is not None and end >= pin:
                    pinned = key = data[:end]
                    if key not in s.snaps:
                        s.keep_snapshot(key, s.snapshot_at(end, n, g, path, here))
                    since = n
                    continue
                spent = n - since
                if spent >= SNAP_MIN_WORK and self._snapshot_at(data, end, n, g, group, spent, path, here):
                    since = n
        return pinned

    @staticmethod
    def _boots(ops: tuple[Op, ...]) -> bool:
        return len(ops) == 1 and ops[0].verb == "call" and ops[0].args[0] in BOOT_CALLS

    @staticmethod
    def _memoized(ops: tuple[Op, ...]) -> bool:
        return len(ops) == 1 and ops[0].verb == "call" and ops[0].args[0] in MEMO_CALLS

    def _memo_call(self, path: int, ops: tuple[Op, ...], g: int) -> tuple[int, Snapshot | None]:
        """Apply one costly semantic call, or restore the state it led to when it ran
        before from the same op path (docs/spec/fuzzing.md §9): the ops since power-on
        decide the state, whatever bytes they were decoded from. Returns the new path and
        the snapshot of the state after the call, if there is one. A call that raised (a
        finding) is never memoized, so it runs again every time."""
        s = self.s
        key = ("path", path, ops)
        hit = s.snaps.get(key)
        if hit is not None:
            s.snaps.move_to_end(key)
            s.restore(hit, "memo_hits")
            return hit.path, hit
        s.apply(ops[0])
        new = hash(key)
        if g <= 4 or key in s._seen_prefixes:  # an early call, or one met a second time
            snap = s.snapshot()
            snap.path = new
            s.keep_snapshot(key, snap)
            return new, snap
        s._seen_prefixes.add(key)
        return new, None

    @staticmethod
    def _costly(group: list[Op]) -> bool:
        for op in group:  # a loop, not any(): every group decoded asks
            if op.verb == "call" and op.args[0] in SNAP_CALLS:
                return True
        return False

    def _snapshot_at(self, data: bytes, end: int, n: int, g: int, group: list[Op],
                     spent: int, path: int = 0, here: Snapshot | None = None) -> bool:
        """Snapshot the state after ``data[:end]``, which took ``spent`` units of work to reach,
        when that pays: at once after an early semantic call (bring-up & co., which most
        inputs start with), or after a long prefix that a second input shares. A snapshot
        costs about a millisecond, a restore a tenth of that; cheap prefixes are replayed."""
        s = self.s
        key = data[:end]
        if key in s.snaps:
            return False
        if not (g <= 4 and self._costly(group)):
            if spent < SNAP_LONG_WORK:
                return False
            if key not in s._seen_prefixes:
                if len(s._seen_prefixes) > 1 << 14:
                    s._seen_prefixes.clear()
                s._seen_prefixes.add(key)
                return False
        s.keep_snapshot(key, s.snapshot_at(end, n, g, path, here))
        return True

    # one decoder per op kind ----------------------------------------------------------
    def _w_reg(self, r: Reader) -> list[Op]:
        return self.b.reg_write(r.u8(), r.u32())

    def _st_reg(self, r: Reader) -> list[Op]:
        return self.b.reg_write(r.u8(), r.u32(), trapped=False)

    def _w_raw(self, r: Reader) -> list[Op]:
        return self.b.raw_write(r.u8(), r.u32(), r.u32())

    def _read(self, r: Reader) -> list[Op]:
        return self.b.raw_read(r.u8())

    def _ring(self, r: Reader) -> list[Op]:
        chan, off, n = r.u8(), r.u16(), r.u8() % 64
        return self.b.ring_store(chan & 0x7F, off, r.take(n), i2x=bool(chan & 0x80))

    def _post(self, r: Reader) -> list[Op]:
        """A message at the x2i tail: half well formed; of the others, with flags bit 6 set
        one malformation alone (so each check is met without another one in front), else
        a mix. A size lie with bit 15 set is aimed at the edge of the tail (a word or two
        past it, or one short), where an off-by-one bound would show."""
        chan, opi, flags, mid, lie, n = r.u8(), r.u8(), r.u8(), r.u8(), r.u16(), r.u8()
        if lie & 0x8000:
            lie = (4, 8, -4, 12)[lie & 3]
        opcode = OPCODES[opi % len(OPCODES)] if opi < 0xF0 else r.u32()
        lay = LAYOUTS.get(opcode)  # type: ignore[call-overload]
        size = lay.req.size if lay is not None and n < 0x80 else n % 64 * 4
        if not flags & 0x80:  # half the posts are well formed
            flags = 0
        else:
            flags = 1 << (flags & 7) if flags & 0x40 else flags & 0x3F
        return self.b.post(chan % 4, opcode, r.take(size), flags, mid, lie)

    def _tick(self, r: Reader) -> list[Op]:
        return [Op("tick", (r.u16() * 1000,))]

    def _ack(self, r: Reader) -> list[Op]:
        v = r.u8()
        return self.b.ack(v % 4, consume=not v & 0x80)

    def _reset(self, r: Reader) -> list[Op]:
        return [Op("reset")]

    def _smu(self, r: Reader) -> list[Op]:
        """An SMU command; an argument with bit 15 set is aimed at the end of the DPM table
        (its last two levels and the first two past it), where off-by-one bounds live."""
        cmd, arg = r.u8() % 10, r.u16()
        if arg & 0x8000:
            arg = max(0, len(self.s.chip.dpm_levels) - 2 + (arg & 3))
        return self.b.smu(cmd, arg)

    def _psp(self, r: Reader) -> list[Op]:
        cmd, good = r.u8(), r.u8()
        return self.b.psp(cmd % 5, r.u32(), r.u32(), r.u32(), good_image=good < 0xC0)

    def _fw_image(self, r: Reader) -> list[Op]:
        v = r.u8()
        return [Op("call", ("fw_image", FW_IOVA, -1 if v < 0xE0 else r.u32()))]

    def _bring_up(self, r: Reader) -> list[Op]:
        v = r.u8()
        return [Op("call", ("bring_up", v & 1))] if v & 0x80 else [Op("call", ("boot",))]

    def _msg(self, r: Reader) -> list[Op]:
        opi, n = r.u8(), r.u8()
        return self.b.msg(OPCODES[opi % len(OPCODES)], r.take(n % 200), exact=n < 0xC0)

    def _ctx(self, r: Reader) -> list[Op]:
        cl, col, num = r.u8(), r.u8(), r.u8()
        return [Op("call", ("ctx_create", cl % 3, col % 8 - 1, num % 4))]

    def _submit(self, r: Reader) -> list[Op]:
        return [Op("call", ("submit", r.u8() % 4, r.u8() % (6 * len(SUBMIT_FORMS)), 1 + r.u8() % 4))]

    def _destroy(self, r: Reader) -> list[Op]:
        return [Op("call", ("ctx_destroy", r.u8() % 4))]

    def _fault(self, r: Reader) -> list[Op]:
        return [Op("fault", ("bus_master", r.u8() & 1))]

    def _proxy(self, r: Reader) -> list[Op]:
        pasid, opi, n = r.u8() % 3, r.u8(), r.u8()
        return [Op("call", ("proxy", pasid, OPCODES[opi % len(OPCODES)], r.take(n % 64)))]

    def _shm_raw(self, r: Reader) -> list[Op]:
        bar, off, n = r.u8(), r.u32(), r.u8() % 32
        bars = self.b.bars
        b = bars[bar % len(bars)]
        return [Op("shm", (b, off % self.s.chip.bars[b].size, r.take(n)))]

    def _cfg(self, r: Reader) -> list[Op]:
        """A config-space write of 1, 2 or 4 bytes anywhere in the 4 KiB space."""
        off, size = r.u16() % 0x1000, (1, 2, 4)[r.u8() % 3]
        return [Op("cfg", (off, r.take(size).ljust(size, b"\0")))]

    def _msix(self, r: Reader) -> list[Op]:
        """A write to any word of the MSI-X table (mask, address, data) or the PBA."""
        m = self.s.chip.msix
        sel, value = r.u8(), r.u32()
        if sel & 0x80:
            off = m.pba_offset + 4 * (sel % max(1, (m.vectors + 31) // 32))
        else:
            off = m.table_offset + (sel % m.vectors) * MSIX_ENTRY_SIZE + 4 * (r.u8() % 4)
        return [Op("w32", (m.bar, off, value))]

    def _flr(self, r: Reader) -> list[Op]:
        """Function-level reset through PCIe Device Control, as the PCI core does it."""
        off = self.s.fn.config.exp_cap + EXP_DEVCTL
        return [Op("cfg", (off, struct.pack("<H", EXP_DEVCTL_DEFAULT | EXP_DEVCTL_BCR_FLR)))]

    # AIE4 (docs/spec/fuzzing.md §8) -----------------------------------------------------
    def _a4_bring_up(self, r: Reader) -> list[Op]:
        v = r.u8()  # a short context timeout half the time, so ticks reach it
        return [Op("call", ("a4_bring_up", 2000 if v & 0x80 else 1 + v % 32))]

    def _a4_ctx(self, r: Reader) -> list[Op]:
        return [Op("call", ("a4_ctx",))]

    def _a4_pkt(self, r: Reader) -> list[Op]:
        which, kind, ahead = r.u8() % 4, r.u8(), r.u8() % 4
        junk = r.take(r.u8() % 64) if kind % len(A4_KINDS) == A4_KINDS.index("junk") else b""
        return [Op("call", ("a4_pkt", which, kind % len(A4_KINDS), ahead, junk))]

    def _a4_publish(self, r: Reader) -> list[Op]:
        """write_index = read_index + delta: 0 (empty), 1-4, past capacity, or behind."""
        which, d = r.u8() % 4, r.u8()
        return [Op("call", ("a4_publish", which, d % 48 if d < 0xF0 else d - 0x100))]

    def _a4_ring(self, r: Reader) -> list[Op]:
        return [Op("call", ("a4_ring", r.u8() % 4))]

    def _a4_submit(self, r: Reader) -> list[Op]:
        return [Op("call", ("a4_submit", r.u8() % 4, r.u8() % len(A4_KINDS), 1 + r.u8() % 4))]

    def _a4_destroy(self, r: Reader) -> list[Op]:
        v = r.u8()
        return [Op("call", ("a4_destroy", v % 4, v >> 7))]

    def _a4_tick(self, r: Reader) -> list[Op]:
        """A long tick (up to 64 ms per unit): what a context timeout needs."""
        return [Op("tick", ((1 + r.u8() % 64) * 1_000_000,))]

    def _host(self, r: Reader) -> list[Op]:
        """A host-memory store into the image buffer (TOCTOU on the firmware image)."""
        off, n = r.u32() % 0x20000, r.u8() % 16
        return [Op("host", (0, FW_IOVA + off, r.take(n)))]


def run_input(session: DeviceHarness, data: bytes, pin: int | None = None,
              hint: bytes | None = None, limit: int | None = None) -> Failure | None:
    """Fresh device, run the input; the finding (if any) with ``session.executed`` set.
    ``pin``/``hint``/``limit`` as in :meth:`Interpreter.run_fresh`; the pinned prefix is
    left in ``session.pinned``."""
    interp = session.__dict__.get("_interp")
    if interp is None:
        interp = session.__dict__.setdefault("_interp", Interpreter(session))
    session.pinned = None
    try:
        session.pinned = interp.run_fresh(data, pin, hint, limit)
    except Failure as exc:
        return exc
    finally:
        if session.journal:  # where a journal miss's culprit is looked for: what ran
            session.recent.append((data[: session.ran_to] if limit is not None else data,
                                   len(hint) if hint is not None else pin))
    return None



def replay_journal(data: bytes, session: DeviceHarness | str = "npu4",
                   pin: int | None = None) -> JournalMiss | None:
    """Replay a journal miss (docs/spec/fuzzing.md §9): ``data`` run twice in a harness that
    checks the journal at every restore, the first time from power-on with a snapshot
    pinned at byte ``pin`` (as a round's parent), the second from that snapshot (as its
    child), so the second run's restore finds any change the first left unmarked.
    ``session``: a harness to use (its snapshots are dropped) or a chip name."""
    h = DeviceHarness(session) if isinstance(session, str) else session
    h.verify_raises, h.journal_every, h.verify_every = True, 1, 0
    h.journal = h.fn.journal = True
    h.drop_snapshots()
    h.fresh()
    try:
        run_input(h, data, pin=pin)
        run_input(h, data, hint=h.pinned)
    except RuntimeError as exc:
        if "escaped the journal" not in str(exc):
            raise
        return JournalMiss("journal_miss", str(exc), data, list(h.executed), pin)
    finally:
        h.recent.clear()
    return None


def find_journal_culprit(chip: str, inputs: list[tuple[bytes, int | None]], why: str) -> JournalMiss:
    """The finding of a journal miss the sparse check met (``why``): the newest of
    ``inputs`` (those run since the last check, each with its pin) whose replay alone shows
    a miss, or, if none does, the miss without an input."""
    h = DeviceHarness(chip)
    for data, pin in reversed(inputs):
        found = replay_journal(data, h, pin)
        if found is not None:
            return found
    return JournalMiss("journal_miss", f"{why} (no input since the last check shows it alone)")


def encode_ops(session: DeviceHarness, ops: list[Op]) -> bytes:
    """Interpreter bytes that replay the low-level part of ``ops`` (w32, shm, tick, reset,
    fw_image/boot/bring_up calls): how golden traces seed a fuzzing corpus."""
    it = Interpreter(session)
    bars = sorted(session.chip.bars)
    pk = struct.pack
    out: list[bytes] = []
    for op in ops:
        v, a = op.verb, op.args
        if v == "w32":
            bar = bars.index(a[0]) if a[0] in bars else 0x80 + a[0] % 8
            out.append(bytes([it.selector("_w_raw"), bar]) + pk("<II", a[1] & 0xFFFFFFFF, a[2] & 0xFFFFFFFF))
        elif v == "shm" and a[0] in bars:
            for i in range(0, len(a[2]), 28):
                chunk = a[2][i : i + 28]
                out.append(bytes([it.selector("_shm_raw"), bars.index(a[0])])
                           + pk("<IB", a[1] + i, len(chunk)) + chunk)
        elif v == "tick":
            out.append(bytes([it.selector("_tick")]) + pk("<H", min(a[0] // 1000, 0xFFFF)))
        elif v == "reset":
            out.append(bytes([it.selector("_reset")]))
        elif v == "call" and session.chip.aie4 is not None and a[0] != "fw_image":
            continue  # AIE2 bring-up calls have no AIE4 decoder
        elif v == "call" and a[0] == "fw_image":
            out.append(bytes([it.selector("_fw_image"), 0]))
        elif v == "call" and a[0] in ("boot", "bring_up"):
            out.append(bytes([it.selector("_bring_up"), 0x81 if a[0] == "bring_up" else 0]))
    return SEPARATOR.join(out)
