"""The daemon's C job path: no-op jobs on AIE2 user channels answered in C (docs/spec/jobs.md §7).

The daemon's write-log drain hands each round of entries to :meth:`DataPath.apply`. It
calls ``xdp_drain`` (csrc/datapath/datapath.c) once; C applies the entries while each is a
ring-register write of a user channel armed here and answers that channel's all-zero and
nop jobs, single or chained. Where it stops (another register, a channel not armed, a
message the C path does not answer) the channels' state goes back into the Python objects
and the entry goes through :meth:`PciFunction.mmio_write`, the Python path, which then
handles every message after the last one C answered; C takes over again at the next entry.

The mgmt channel is armed the same way, with the replies the firmware publishes for the
mgmt queries (``MgmtFirmware.query_replies``): C answers those messages and nothing else
there (docs/spec/jobs.md §7 "Management queries").

Python stays authoritative: a channel is armed for one call only, from the Python state
(cursors, the context's CONFIG_CU count, host-buffer chunks, the IOMMU mappings of its
PASID), and C's counts are added to the Python counters before anything else runs, so
save/restore, resets, context destroy and suspend see the same state either way.

In a daemon that runs for real, a C thread (csrc/datapath/thread.c) also answers them
without waking the Python loop: the client rings a doorbell eventfd for the x2i tail of a
channel armed for the thread, the thread drains that session's log under the device lock
while it can, and hands the rest to Python through the kick eventfd. Python holds the lock
for each of its steps (:meth:`DataPath.enter`/:meth:`DataPath.leave`): it takes the
thread's counts and cursors back first and re-arms the channels from its live state last.

``XDNA_EMU_DATAPATH=python`` turns the C path off; ``c`` (the default) turns it on where
the extension is built and the chip has AIE2 user channels, with the thread; ``c-sync``
keeps the C path inside the Python drain only (no thread), for comparison.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import struct
from typing import TYPE_CHECKING, Any

from . import protocol as P
from .fw import mailbox as _mailbox
from .fw.ctx import HwContext
from .fw.mailbox import MailboxChannel
from .fw.messages import MGMT_QUERIES, MSG_HEADER, TOMBSTONE
from .fw.mgmt import MGMT_CHANNEL as _MGMT
from .iommu import AddressSpace
from .kernelgen import FAST_OPS
from .pci.caps import MSIX_ENTRY_CTRL_MASKBIT

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from .pci.function import PciFunction

log = logging.getLogger(__name__)
_QUERIES = frozenset(int(op) for op in MGMT_QUERIES)
_HDR = MSG_HEADER.size
_U32 = struct.Struct("<I")

#: The environment variable that picks the job path: ``c`` (default) or ``python``.
DATAPATH_ENV = "XDNA_EMU_DATAPATH"
MODES = ("c", "c-sync", "python")
#: The daemon's counters of this path (in ``xdna-emu status --json`` under ``stats``):
#: ``fast_thread`` counts the doorbell wake-ups the thread served, ``fast_handbacks`` the
#: logs it handed to Python at an entry it could not take, ``fast_notifies`` the notify
#: eventfd writes it made (docs/spec/protocol.md "Suppressed kicks and notifies").
STAT_KEYS = ("fast_jobs", "fast_cmds", "fast_chains", "fast_fallbacks", "fast_refused",
             "fast_thread", "fast_handbacks", "fast_notifies", "fast_queries")


#: doorbell threads running in this process: C threads that ``threading`` cannot see (the
#: fuzz kit's fork server asks, since a fork would copy none of them)
_threads = 0


def threads_running() -> int:
    """How many doorbell threads (:meth:`DataPath.start`) run in this process now."""
    return _threads


def mode() -> str:
    """The job path the environment asks for (an unknown value is an error, not a guess)."""
    value = os.environ.get(DATAPATH_ENV, "c").strip().lower() or "c"
    if value not in MODES:
        raise ValueError(f"{DATAPATH_ENV}={value!r}: expected one of {', '.join(MODES)}")
    return value


class DataPath:
    """The C job path of one PCI function (an AIE2 chip's user channels)."""

    @classmethod
    def create(cls, fn: PciFunction, stats: dict[str, int]) -> DataPath | None:
        """The C path for ``fn``, or None where the Python path does it all (asked for by
        :data:`DATAPATH_ENV`, no AIE2 mailbox, or the extension is not built)."""
        if mode() == "python" or fn.chip.mailbox is None:
            return None
        try:  # the compiled extension, not a module of the layer graph (docs/architecture.md)
            _datapath = importlib.import_module(f"{__package__}._datapath")
        except ImportError:
            log.warning("the C job path is not built: jobs run in Python")
            return None
        return cls(fn, stats, _datapath.ffi, _datapath.lib, threaded=mode() == "c")

    def __init__(self, fn: PciFunction, stats: dict[str, int], ffi: Any, lib: Any,
                 threaded: bool = False) -> None:
        self.fn, self.ffi, self.lib, self.stats = fn, ffi, lib, stats
        #: may :meth:`start` run the doorbell thread (``XDNA_EMU_DATAPATH=c``)
        self.threaded = threaded
        self._dev: Any = None  # the C device (lock, thread, sessions) while the thread runs
        self._tstats = ffi.new("struct xdp_tstats *")
        self._owner: Callable[[int], int] = lambda vector: -1
        #: the doorbells live now (bit i: channel i is armed for the thread)
        self.mask = 0
        #: the model's generations (:meth:`_generation`) the last arming for the thread saw
        self._gen: tuple[int, int, int, int, bool] | None = None
        #: during a step: the channels armed for the thread before it; C's flags are cleared
        #: only when the step's drain first calls C (``_flags_off``), so a step that never
        #: does (management traffic) pays nothing per channel
        self._parked: dict[int, tuple[MailboxChannel, HwContext, Any, Any]] = {}
        self._flags_off = False
        self._rearmed = False  # a channel was armed in this step (its tables may be new)
        for key in STAT_KEYS:
            stats.setdefault(key, 0)
        lay = fn.chip.mailbox
        assert lay is not None
        self._engine: Any = fn.device.mailbox  # the AIE2 engine: it lives as long as fn
        self.nchans = lay.channels
        self.chans = ffi.new("struct xdp_chan[]", self.nchans)
        self._why = ffi.new("uint32_t *")
        self._chan = ffi.new("int32_t *")
        self._got = ffi.new("uint32_t[3]")  # the entry C stopped at, as C read it
        self._seq = ffi.new("uint32_t *")  # numbers the armed channels' first replies
        #: BAR index -> the address of its bytes (the BARs live as long as the function)
        self._bars = {i: self._address(m) for i, m in fn.regs.bytes.items()}
        #: trapped (bar, offset) of each channel's x2i tail and i2x head -> its index;
        #: channel 0 is the mgmt channel, whose published queries C answers (:meth:`_arm_mgmt`)
        self._by_reg: dict[tuple[int, int], int] = {}
        for idx in range(self.nchans):
            base = lay.chan_regs(idx)
            for off in (lay.X2I_TAIL, lay.I2X_HEAD):
                self._by_reg[fn.chip.dev_to_bar(base + off)] = idx
        self.doorbells = self._doorbell_table()
        #: per channel index: the channel object its static fields were set for
        self._static: list[MailboxChannel | None] = [None] * self.nchans
        #: per channel index while armed: (channel, context, its chunk and map tables); the
        #: tables are held here because C reads them through raw pointers until ``_sync``
        self._armed: dict[int, tuple[MailboxChannel, HwContext, Any, Any]] = {}
        #: per channel index: (a copy of the chunk list, its C table, its row count, taken
        #: with the table: a list changed in place cannot make C read past it); per PASID:
        #: (space, gen, table, keep)
        self._chunks: dict[int, tuple[list, Any, int]] = {}
        self._maps: dict[int, tuple[AddressSpace | None, int, Any, list]] = {}
        self._ops: dict[tuple[int, int], int] = {}
        #: the mgmt queries' replies as published (MgmtFirmware.query_replies), their C table
        #: and the payload buffers it points into
        self._replies: tuple[tuple, Any, list] | None = None
        self._entry0 = P.CTRL_OFF_ENTRY0

    # -- the drain hook ---------------------------------------------------------------------
    def apply(self, ctrl: Any, tail: int, head: int,
              write: Callable[[int, int, int, int], None], sid: int) -> int:
        """Apply log entries ``tail..head`` (C where it can, ``write`` for the rest, in
        order); returns where it stopped: ``head``, or ``tail`` untouched when the device
        state rules the C path out (the caller's Python loop applies the rest)."""
        if not self._device_ok():  # all of it is Python's: skip the per-entry round trips
            self.stats["fast_refused"] += 1
            return tail
        refused: set[int] = set()
        # management traffic and other registers first: no C call (and no arming) for them
        tail = self._python_run(ctrl, tail, head, write, sid, refused)
        if tail >= head:
            return tail
        lib, chans, why, chan, got = self.lib, self.chans, self._why, self._chan, self._got
        by_reg = self._by_reg
        n, nch = P.LOG_ENTRIES, self.nchans
        armed_at = -1  # the entry an arming re-entered C for: once per entry, at most
        # an exception (a bad op name, a bad address) must not leave channels armed with
        # C's cursors and counts not given back: the next call would run from stale ones
        if self._parked and not self._flags_off:  # the synchronous path: none armed from before
            for idx in self._parked:
                chans[idx].armed = 0
            self._flags_off = True
        with self.ffi.from_buffer(ctrl) as buf, self._synced():
            entries = buf + self._entry0
            while tail < head:
                tail = lib.xdp_drain(chans, nch, entries, n, tail, head, why, chan, got, self._seq)
                if tail >= head:
                    break
                # the entry as C read it: the client shares the log and may rewrite it
                bar, off, val = got[0], got[1], got[2]
                if why[0] == lib.XDP_UNARMED:
                    idx = by_reg.get((bar, off))
                    if idx is not None and idx not in refused and armed_at != tail:
                        armed_at = tail
                        if self._arm(idx):
                            continue
                        refused.add(idx)
                        self.stats["fast_refused"] += 1
                        # the step end arms from the live state, not as before: a refusal
                        # never rides on the generations alone (docs/spec/jobs.md §7)
                        self._rearmed = True
                else:
                    self.stats["fast_fallbacks"] += 1
                self._sync()  # Python applies this entry, from the state C left
                write(bar, off, val, sid)
                tail = self._python_run(ctrl, tail + 1, head, write, sid, refused)
        return tail

    def _python_run(self, ctrl: Any, tail: int, head: int,
                    write: Callable[[int, int, int, int], None], sid: int,
                    refused: set[int]) -> int:
        """Apply the entries from ``tail`` on that name no channel C could take (another
        register, a refused channel) in Python, without a C round trip each; returns the
        first one C may take (it reads that entry itself), or ``head``."""
        by_reg, entry, n = self._by_reg, P.LOG_ENTRY, P.LOG_ENTRIES
        e0, esize = self._entry0, P.LOG_ENTRY.size
        while tail < head:
            bar, off, val, _ = entry.unpack_from(ctrl, e0 + (tail % n) * esize)
            idx = by_reg.get((bar, off))
            if idx is not None and idx not in refused and (idx != _MGMT or self._query_next()):
                break
            write(bar, off, val, sid)
            tail += 1
        return tail

    def _query_next(self) -> bool:
        """May C answer the mgmt channel's next message? False only when the message at
        the firmware's head is surely not a query: C would hand it straight back, so Python
        applies the entry without arming the channel for it."""
        ch = self._engine.channels.get(_MGMT)
        if ch is None:
            return False
        head, ring = ch.x2i_head, ch._x2i  # noqa: SLF001
        if head + _HDR > ch.ring_size or _U32.unpack_from(ring, head)[0] == TOMBSTONE:
            return True  # a wrap: C reads on
        return MSG_HEADER.unpack_from(ring, head)[3] in _QUERIES

    @contextlib.contextmanager
    def _synced(self) -> Iterator[None]:
        """Run a block, then :meth:`_sync` whatever it raised."""
        try:
            yield
        finally:
            self._sync()

    # -- arming: Python state -> C ------------------------------------------------------------
    def _device_ok(self) -> bool:
        """May the C path answer anything on this device now (docs/spec/jobs.md §7)?"""
        fn = self.fn
        dev = fn.device
        fw, ctxfw, engine = dev.fw, dev.ctx, getattr(dev, "mailbox", None)
        # an observer of writes must see each one (PciFunction.observe keeps their hook in
        # _before); observers of interrupts see them as the Python path raises them
        return not (fw is None or ctxfw is None or engine is None
                    or fn._before is not None  # noqa: SLF001
                    or engine.interposer is not None or fw.state.suspended
                    or fw.state.log is not None or fw.state.trace is not None
                    or not fn.config.bus_master or _mailbox.log.isEnabledFor(logging.DEBUG))

    def _arm(self, idx: int) -> bool:
        """Arm user channel ``idx`` for this call if the C path may answer its messages.
        An armed channel stays as it is: its cursors in C are ahead of Python's until
        :meth:`_sync`, and reloading them would answer its messages twice."""
        if idx in self._armed:
            return True
        if not self._device_ok():
            return False
        if idx == _MGMT:
            return self._arm_mgmt()
        dev = self.fn.device
        fw, ctxfw, engine = dev.fw, dev.ctx, dev.mailbox
        ch = engine.channels.get(idx)
        ctx = ctxfw.contexts.get(idx - 1)  # context i has channel 1 + i (docs/spec/jobs.md §1)
        if (ch is None or ctx is None or ctx.chan is not ch or not ch.ok or ch.outq
                or ctx.queue or ctx.hung):
            return False
        c = self.chans[idx]
        if self._static[idx] is not ch:
            self._set_static(c, ch)
            self._static[idx] = ch
        c.x2i_head, c.i2x_tail = ch.x2i_head, ch.i2x_tail
        key = (id(ctxfw), *fw.protocol)
        ops = self._ops.get(key)
        if ops is None:
            # an op's bit is its index in FAST_OPS, which also generates C's list
            ops = self._ops[key] = sum(1 << bit for bit, op in enumerate(FAST_OPS)
                                       if ctxfw._offered(op))
            if len(self._ops) > 64:
                self._ops.clear()
        c.ops = ops
        c.ncus = len(ctx.cus)
        chunks = self._chunks.get(idx)
        if chunks is None or chunks[0] != ctx.chunks:  # a copy: a change in place is seen
            rows = list(ctx.chunks)
            table = self.ffi.new("struct xdp_chunk[]", max(len(rows), 1))
            for i, h in enumerate(rows):
                table[i].dev, table[i].va, table[i].size = h.dev, h.va, h.size
            chunks = self._chunks[idx] = (rows, table, len(rows))
        c.chunks, c.nchunks = chunks[1], chunks[2]
        c.maps, c.nmaps = maps = self._map_table(ctx.pasid)
        c.armed = 1
        self._armed[idx] = (ch, ctx, chunks[1], maps[0])
        self._rearmed = True
        return True

    def _arm_mgmt(self) -> bool:
        """Arm the mgmt channel with the replies its firmware publishes for the mgmt queries
        (docs/spec/jobs.md §7 "Management queries"): C sends one of them for a query with a
        request of its length, everything else is Python's. Not armed while the channel is
        in error or has queued replies, or is not the running firmware's own."""
        fw = self.fn.device.fw
        ch = self._engine.channels.get(_MGMT)
        publish = getattr(fw, "query_replies", None)
        if (ch is None or publish is None or fw.mgmt is not ch or not ch.ok or ch.outq
                or ch.handler != fw.dispatch):
            return False
        rows = publish()
        if not rows:
            return False
        got = self._replies
        if got is None or got[0] is not rows:  # the firmware's tuple: a new one is new answers
            ffi = self.ffi
            bufs = [ffi.new("uint8_t[]", resp) for _, _, resp in rows]
            table = ffi.new("struct xdp_reply[]", len(rows))
            for t, (opcode, req_size, resp), buf in zip(table, rows, bufs, strict=True):
                t.opcode, t.req_size, t.resp_size, t.resp = opcode, req_size, len(resp), buf
            got = self._replies = (rows, table, bufs)
        c = self.chans[_MGMT]
        if self._static[_MGMT] is not ch:
            self._set_static(c, ch)
            self._static[_MGMT] = ch
        c.x2i_head, c.i2x_tail = ch.x2i_head, ch.i2x_tail
        c.replies, c.nreplies = got[1], len(rows)
        c.armed = 1
        self._armed[_MGMT] = (ch, None, got[1], got[2])  # type: ignore[assignment]
        self._rearmed = True
        return True

    def _set_static(self, c: Any, ch: MailboxChannel) -> None:
        """The fields of a channel that live as long as it: registers and rings."""
        chip, ffi = self.fn.chip, self.ffi

        def ptr(addr: int, ctype: str, size: int = 4) -> Any:
            bar, off = chip.dev_to_bar(addr, size)
            return ffi.cast(ctype, self._bars[bar] + off)  # type: ignore[operator]

        c.tail_bar, c.tail_off = chip.dev_to_bar(ch.x2i_tail_reg)
        c.head_bar, c.head_off = chip.dev_to_bar(ch.i2x_head_reg)
        c.x2i_tail_reg = ptr(ch.x2i_tail_reg, "uint32_t *")
        c.x2i_head_reg = ptr(ch.x2i_head_reg, "uint32_t *")
        c.i2x_tail_reg = ptr(ch.i2x_tail_reg, "uint32_t *")
        c.i2x_head_reg = ptr(ch.i2x_head_reg, "uint32_t *")
        c.intr_reg = ptr(ch.intr_reg, "uint32_t *") if ch.intr_reg is not None else ffi.NULL
        c.x2i = ptr(ch.x2i_buf, "uint8_t *", ch.ring_size)
        c.i2x = ptr(ch.i2x_buf, "uint8_t *", ch.ring_size)
        c.ring_size = ch.ring_size

    def _address(self, buf: Any) -> int:
        """The address of a buffer's bytes, without keeping it exported: a buffer exported
        for good could not be closed (an unmapped mmap) and breaks the garbage collector's
        clearing of a memoryview in a reference cycle. Every user re-checks that the
        buffer is current (BARs: the function's; mappings: :attr:`Iommu.gen`) first."""
        ffi = self.ffi
        with ffi.from_buffer(buf) as p:
            return int(ffi.cast("uintptr_t", p))

    def _map_table(self, pasid: int) -> tuple[Any, int]:
        """The IOMMU mappings of ``pasid`` as C's sorted table, rebuilt when any mapping
        changed (:attr:`Iommu.gen`)."""
        iommu = self.fn.iommu
        space = iommu.spaces.get(pasid)
        got = self._maps.get(pasid)
        if got is not None and got[0] is space and got[1] == iommu.gen:
            return got[2], len(got[3])
        maps = space.maps if space is not None else []
        ffi = self.ffi
        table = ffi.new("struct xdp_map[]", max(len(maps), 1))
        keep = list(maps)  # the table is used only while iommu.gen says it is current
        for i, m in enumerate(maps):
            t = table[i]
            t.addr, t.size, t.perm = m.address, m.size, m.perm
            t.mem = ffi.cast("uint8_t *", self._address(m.mem) + m.skew)  # type: ignore[attr-defined]
        self._maps[pasid] = (space, iommu.gen, table, keep)
        return table, len(keep)

    # -- syncing: C's counts -> Python state ------------------------------------------------------
    def _sync(self, keep: bool = False) -> None:
        """Give the armed channels' state back to Python and disarm them (with ``keep``,
        they stay armed: C's cursors and Python's are equal after it)."""
        if not self._armed:
            return
        if len(self._maps) > 256 and not keep:  # evicted only here: no table is in C's hands
            self._maps.clear()
        dev = self.fn.device
        engine, ctxfw = dev.mailbox, dev.ctx
        raised: list[tuple[int, int]] = []  # (C's number of the first reply, vector)
        for idx, (ch, ctx, _, _) in self._armed.items():
            c = self.chans[idx]
            if not keep:
                c.armed = 0
            elif not (c.writes or c.msgs_in):
                continue  # C did nothing with it: its state is Python's already
            ch.x2i_head, ch.i2x_tail = c.x2i_head, c.i2x_tail
            if c.writes:
                dev.stats["writes"] += c.writes
                c.writes = 0
            if c.t_irqs:  # the thread's interrupts: delivered, lost or pending
                msix = self.fn.msix.stats
                dev.stats["irqs_raised"] += c.t_irqs
                msix["delivered"] += c.t_delivered
                msix["dropped"] += c.t_dropped
                msix["pended"] += c.t_pended
                c.t_irqs = c.t_delivered = c.t_dropped = c.t_pended = 0
            if not c.msgs_in:
                continue
            ch.msgs_in += c.msgs_in
            ch.msgs_out += c.msgs_out
            engine.stats["mbox_msgs_in"] += c.msgs_in
            engine.stats["mbox_msgs_out"] += c.msgs_out
            if ctx is None:  # the mgmt channel: queries only
                self.stats["fast_queries"] += c.msgs_in
            else:
                self._fold_jobs(c, ctx, ctxfw)
            # the Python path raises the vector once per reply (each one counted); held
            # interrupts make that one delivery per batch either way (docs/spec/device.md §3)
            if c.irqs:  # 0: the thread raised them (above)
                dev.stats["irqs_raised"] += c.irqs - 1
                raised.append((c.first, ch.vector))
            c.msgs_in = c.msgs_out = c.irqs = c.jobs = c.cmds = c.chains = c.slot_set = 0
            c.first = 0
        if not keep:
            self._armed.clear()
        self._seq[0] = 0
        # in the order of the first replies, as the Python path raises them (it releases
        # held vectors in the order first raised), not in the order the channels were armed
        for _, vector in sorted(raised):
            engine.irq(vector)

    def _fold_jobs(self, c: Any, ctx: HwContext, ctxfw: Any) -> None:
        """A user channel's jobs C answered into its context and the counters."""
        jobs = c.jobs
        ctx.submitted += jobs
        ctx.completed += jobs
        ctx.cmds_done += c.cmds
        ctx.last_op, ctx.cur_idx, ctx.cur_kernel = c.last_op, c.cur_idx, c.cur_kernel
        if c.slot_set:
            ctx.last_slot = c.last_slot
        ctxfw.stats["jobs_completed"] += jobs
        self.stats["fast_jobs"] += jobs
        self.stats["fast_cmds"] += c.cmds
        self.stats["fast_chains"] += c.chains

    # -- the doorbell thread (docs/spec/jobs.md §7 "The doorbell thread") ---------------------
    def _doorbell_table(self) -> tuple[int, int, int, int]:
        """(bar, offset of channel 0's, stride, count) of the channels' x2i tail registers,
        the doorbells (docs/spec/protocol.md "Doorbells"); count 0 where they are not one
        evenly spaced run in one BAR, or there are more than the mask has bits."""
        lay = self.fn.chip.mailbox
        assert lay is not None
        regs = [self.fn.chip.dev_to_bar(lay.chan_regs(i) + lay.X2I_TAIL)
                for i in range(self.nchans)]
        bar, base = regs[0]
        stride = regs[1][1] - base if len(regs) > 1 else 0
        if (stride <= 0 or self.nchans > P.CTRL_DOORBELLS_MAX
                or any(r != (bar, base + i * stride) for i, r in enumerate(regs))):
            return (0, 0, 0, 0)
        return (bar, base, stride, self.nchans)

    @property
    def running(self) -> bool:
        """The doorbell thread serves this function (the daemon runs for real)."""
        return self._dev is not None

    def start(self, owner: Callable[[int], int], spin: tuple[int, int, int] = (0, 0, 0)) -> bool:
        """Start the doorbell thread (a daemon's :meth:`run`; never in-process, whose replay
        stays deterministic). ``owner`` maps a vector to its owner's session slot; ``spin``
        is (spin, recently polled, notify deferral) in ns, the daemon's spin-then-block
        constants (docs/spec/protocol.md "Spin, then block"), which the thread takes over."""
        if not self.threaded or self._dev is not None or not self.doorbells[3]:
            return False
        dev = self.lib.xdp_dev_new(self.chans, self.nchans, self._tstats)
        if dev == self.ffi.NULL:
            log.warning("the doorbell thread could not be set up: jobs wake the Python loop")
            return False
        err = self.lib.xdp_dev_start(dev, *spin)
        if err:
            self.lib.xdp_dev_free(dev)
            log.warning("the doorbell thread did not start (%s)", os.strerror(-err))
            return False
        global _threads
        _threads += 1
        self._owner = owner
        self._dev = dev
        return True

    def stop(self) -> None:
        """Stop and join the thread: every channel synced back, no session left in C."""
        global _threads
        dev, self._dev = self._dev, None
        if dev is None:
            return
        self.lib.xdp_dev_free(dev)
        _threads -= 1
        self._fold()
        self._sync()
        self.mask = self._engine.mirrored = 0

    def enter(self) -> None:
        """A daemon step begins: take the device lock (waiting while the thread drains; the
        GIL is released meanwhile), then take the thread's cursors and counts back."""
        self.lib.xdp_lock(self._dev)
        try:
            t = self._tstats
            if t.batches:  # else the thread changed nothing since the last step
                self._fold()
                self._sync(keep=True)
            elif t.notifies:  # deferred notifies it paid after its last batch
                self._fold()
            # parked, not armed: the step runs as the synchronous path does (a channel is
            # armed only from the state of the moment; :meth:`apply` clears C's flags before
            # its first call into C), and :meth:`leave` may arm them again
            self._parked, self._armed = self._armed, {}
            self._rearmed = self._flags_off = False
        except BaseException:  # never leave the lock held: the thread and stop() need it
            self.lib.xdp_unlock(self._dev)
            raise

    def leave(self) -> bool:
        """A daemon step ends: arm the channels the thread may answer from the live state,
        then release the lock. True when the live doorbells changed (the daemon publishes
        :attr:`mask`)."""
        try:
            return self._arm_thread()
        finally:
            self.lib.xdp_unlock(self._dev)

    def session_add(self, ctrl: Any, bell_fd: int, kick_fd: int, notify_fd: int) -> int:
        """Hand a session's log to the thread (the step's lock held); its slot, or -1."""
        if self._dev is None:
            return -1
        slot = self.lib.xdp_sess_add(self._dev, self.ffi.cast("uint8_t *", self._address(ctrl)),
                                     bell_fd, kick_fd, notify_fd)
        if slot < 0:
            log.warning("doorbell thread: session not added (%s)", os.strerror(-slot))
            return -1
        return slot

    def session_remove(self, slot: int) -> None:
        """Take a session's log from the thread (the step's lock held), before its ctrl page
        is unmapped and its eventfds closed."""
        if self._dev is not None and slot >= 0:
            self.lib.xdp_sess_remove(self._dev, slot)

    def _fold(self) -> None:
        """The thread's own counters into the daemon's."""
        t, stats = self._tstats, self.stats
        if t.batches or t.notifies:
            stats["fast_thread"] += t.batches
            stats["fast_handbacks"] += t.handbacks
            stats["fast_notifies"] += t.notifies
            t.batches = t.handbacks = t.notifies = 0

    def _arm_thread(self) -> bool:
        """Arm each user channel whose messages the thread may answer now: those the Python
        drain would arm (:meth:`_arm`), on a device no observer watches (they see interrupts
        as the Python path raises them). Its vector's eventfd goes with it when the function
        delivers it now (the MSI-X rule but for the vector's mask bit, which the thread
        reads in the table at each raise: docs/spec/device.md §3), else the thread sets the
        vector's PBA bit as MsixController.raise_vector does, and Python delivers it when
        the obstacle goes (every change of the table, MSI-X control or eventfds is a Python
        step). When no generation moved and the step armed nothing itself, the parked
        channels are armed again as they were. Returns whether :attr:`mask` changed."""
        gen = self._generation()
        parked, self._parked = self._parked, {}
        if (not self._armed and not self._rearmed and gen == self._gen
                and (parked or not self.mask) and self._mgmt_kept(parked)):
            if self._flags_off:  # nothing the arming depends on changed: armed as they were
                for idx in parked:
                    self.chans[idx].armed = 1
            self._armed = parked
            return False
        if not self._flags_off:  # the parked ones still flagged in C: arming starts from none
            for idx in parked:
                self.chans[idx].armed = 0
        self._sync()
        self._gen = gen
        mask = 0
        fn = self.fn
        if self._device_ok() and not fn.observers:
            msix, engine = fn.msix, self._engine
            fd_of = getattr(msix.wires, "fd", None)
            pba = msix.layout.pba_offset
            for idx, ch in engine.channels.items():
                if not 0 <= idx < self.nchans or fd_of is None:
                    continue
                vec = ch.vector
                if not 0 <= vec < msix.vectors or not self._arm(idx):
                    continue
                c = self.chans[idx]
                fd = fd_of(vec) if msix.function_delivers(vec) else None
                c.irq_fd = -1 if fd is None else fd
                c.owner = self._owner(vec)
                c.pba = self.ffi.cast("uint8_t *", self._bars[msix.layout.bar] + pba + vec // 8)
                c.pba_bit = 1 << (vec % 8)
                c.vec_ctrl = self.ffi.cast("uint8_t *", self._bars[msix.layout.bar]
                                           + msix._ctrl_off(vec))  # noqa: SLF001
                c.mask_bit = MSIX_ENTRY_CTRL_MASKBIT
                mask |= 1 << idx
        # a reply Python puts into their rings bumps the engine; not the mgmt channel's, whose
        # Python answers leave its arming as it was (:meth:`_mgmt_kept`)
        self._engine.mirrored = mask & ~(1 << _MGMT)
        changed = mask != self.mask
        self.mask = mask
        return changed

    def _generation(self) -> tuple[int, int, int, int, bool]:
        """Everything the thread's arming depends on, as the model counts its changes: the
        firmware side (channels, contexts, suspend, log and trace rings, the interposer:
        ``ChannelEngine.gen``), the function (observers, restores), MSI-X delivery (table,
        control, eventfds), the IOMMU's mappings; and whether debug logging of the mailbox
        is on (configuration, not the model). A handful of loads, whatever the contexts."""
        fn = self.fn
        return (self._engine.gen, fn.gen, fn.msix.gen, fn.iommu.gen,
                _mailbox.log.isEnabledFor(logging.DEBUG))

    def _mgmt_kept(self, parked: dict[int, tuple[MailboxChannel, HwContext, Any, Any]]) -> bool:
        """May a parked mgmt channel stay armed as it was? Its C table must be what the
        firmware publishes now; Python's answers in the step (every message that is not a
        query) moved its cursors, which C takes over, as an arming afresh would set them."""
        if _MGMT not in parked:
            return True
        if not self._replies_current():
            return False
        ch, c = parked[_MGMT][0], self.chans[_MGMT]
        c.x2i_head, c.i2x_tail = ch.x2i_head, ch.i2x_tail
        return True

    def _replies_current(self) -> bool:
        """The mgmt channel's C table is what its firmware publishes now."""
        got, publish = self._replies, getattr(self.fn.device.fw, "query_replies", None)
        return got is not None and publish is not None and publish() is got[0]


__all__ = ["DATAPATH_ENV", "MODES", "STAT_KEYS", "DataPath", "mode", "threads_running"]
