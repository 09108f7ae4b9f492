"""``ioctl`` lines of a shim trace: amdxdna ioctls on DRM files the fuzz target opens on its
own daemon, and the driver's UAPI contract they are checked against.

A DRM file here is what ``/dev/accel/accel0`` is under ``xdna-emu exec``: a client session
of the C shim served by the same decoder (csrc/uapi/accel.c), opened in the fuzzing process
with :meth:`xdna_emu.uapi.AccelFile.attach` (no interposer: ioctl and mmap call the decoder
directly, on the harness's thread, so in deterministic mode its waits step the daemon as the
driver session's do). The harness's own shim session stays the driver (it probes, stops,
suspends); the files are the programs (docs/spec/fuzzing.md §12)::

    ioctl open                   # a new DRM file: files are numbered 0, 1, ... (never reused)
    ioctl close 0                # release file 0 (its contexts and BOs go with it)
    ioctl heap 0                 # a 64 MiB DEV_HEAP chunk, mapped after the others
    ioctl bo 0 3 4096 0          # CREATE_BO type size flags; BOs numbered 0, 1, ... over all files
    ioctl boinfo 0 2 0           # GET_BO_INFO of BO 2 (any file's: foreign or stale), ext
    ioctl syncbo 0 2 1 0 64      # SYNC_BO of BO 2: direction, offset, size
    ioctl gemclose 0 2           # GEM_CLOSE of BO 2
    ioctl ctx 0 1 0              # CREATE_HWCTX of 1 column, ext; contexts numbered over all files
    ioctl destroy 0 1 0          # DESTROY_HWCTX of context 1, pad
    ioctl config 0 1 0 2         # CONFIG_HWCTX: param (0 CONFIG_CU with 2 CUs, 1/2 assign/
                                 #   remove debug BO number 2, 3 opcode timeout, other)
    ioctl exec 0 1 hang          # a START_NPU command BO running the kernel; EXEC_CMD EXEC_BUF;
                                 #   jobs numbered 0, 1, ... over all files
    ioctl execbad 0 1 ext        # EXEC_CMD with one bad field: ext, type, count, notcmd, argstale
    ioctl wait 0 3 0             # WAIT_CMD on job 3 (its context's handle in this file), ms (0: no limit)
    ioctl waitseq 0 1 -1         # WAIT_CMD on any seq of context 1 (100 ms)
    ioctl info 0 8 4             # GET_INFO param, a buffer of that many bytes (guarded)
    ioctl array 0 6 32 1         # GET_ARRAY param, element_size, num_element
    ioctl setstate 0 3 8 2       # SET_STATE param, buffer_size, first byte
    ioctl sobj 0 1               # SYNCOBJ_CREATE flags; syncobjs numbered over all files
    ioctl sobjdestroy 0 2 0      # SYNCOBJ_DESTROY, pad
    ioctl sobjsignal 0 2 5       # SYNCOBJ_SIGNAL (point 0) or TIMELINE_SIGNAL of a point
    ioctl sobjwait 0 2 5 1       # TIMELINE_WAIT of a point, flags (WAIT_FOR_SUBMIT: timeout 0,
                                 #   else no limit)
    ioctl depend 0 1 2 5         # EXEC_CMD DEPENDENCY on context 1: syncobj 2 at point 5
    ioctl signal 0 1 2 5         # EXEC_CMD SIGNAL
    ioctl raw 0 0x64 0x4b 24     # a zeroed buffer with any ioctl number (type, nr, size)

A number that names a BO, context, syncobj or job indexes the trace's list of them (modulo
its length), whichever file made it and whether it is still alive, so stale and foreign
handles come for free; a negative number is the raw handle ``-N - 1``. A file number that
names a closed file (or none) uses fd -1.
"""

from __future__ import annotations

import ctypes
import errno as errno_mod
import mmap
import os
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .. import uapi_table as T
from ..chips import load_chip
from ..fw.pmf import PMF_COLUMNS
from ..shim import ErtState, ShimError, ert_start_npu
from .invariants import InvariantViolation
from .lang import Op, TraceError, cumulative, typed_operands

if TYPE_CHECKING:
    from ..uapi import AccelFile
    from .model import ShimModel

#: operand kinds per ioctl op (i int, s string), as CALL_SPECS of the shim calls
IOCTL_SPECS = {"open": "", "close": "i", "heap": "i", "bo": "iiii", "boinfo": "iii",
               "syncbo": "iiiii", "gemclose": "ii", "ctx": "iii", "destroy": "iii",
               "config": "iiii", "exec": "iis", "execbad": "iis", "wait": "iii",
               "waitseq": "iii", "info": "iii", "array": "iiii", "setstate": "iiii",
               "sobj": "ii", "sobjdestroy": "iii", "sobjsignal": "iii", "sobjwait": "iiii",
               "depend": "iiii", "signal": "iiii", "raw": "iiii"}
#: generated programs: file, heap and context set-up often enough that jobs run
WEIGHTS = {"open": 6, "close": 1, "heap": 5, "bo": 3, "boinfo": 2, "syncbo": 1, "gemclose": 2,
           "ctx": 4, "destroy": 1, "config": 1, "exec": 6, "execbad": 1, "wait": 4,
           "waitseq": 1, "info": 3, "array": 2, "setstate": 1, "sobj": 2, "sobjdestroy": 1,
           "sobjsignal": 2, "sobjwait": 2, "depend": 1, "signal": 1, "raw": 1}
KERNELS = ("nop", "fail", "hang")
EXEC_BAD = ("ext", "type", "count", "notcmd", "argstale")
HEAP_CHUNK = 64 << 20
#: bytes past every GET_INFO/GET_ARRAY/raw buffer that the decoder must leave alone
GUARD, GUARD_BYTE = 64, 0xA5
#: GET_ARRAY buffers up to this size are bytearrays; larger ones (up to the argument limits,
#: 100 GiB) are anonymous mappings the kernel fills only where they are touched
ARRAY_HEAP_MAX = 1 << 16
#: Linux's MAP_NORESERVE (older Pythons' mmap module does not export it): no commit charge
#: for a mapping whose pages are never touched
_MAP_NORESERVE = getattr(mmap, "MAP_NORESERVE", 0x4000)
#: the wait a ``waitseq`` grants (ms) and the end-of-trace wait per job (ms, virtual)
WAITSEQ_MS, FINAL_WAIT_MS = 100, 15_000
#: shim BO size limit (csrc/bo.c) and the DEV BO alignment in the heap (docs/spec/uapi.md §6)
BO_MAX_SIZE, DEV_ALIGN = 1 << 40, 32 << 10
#: the DEV BOs a context takes from its client's heap (command lists, docs/spec/uapi.md §6)
CTX_HEAP_BOS = 4
#: live contexts the model promises can be created over every session (model.CTX_PROMISED)
CTX_PROMISED = 6
SLOTS = 4
#: ioctl ops whose call takes a runtime-PM reference in the shim (docs/spec/jobs.md §1): past
#: their argument checks they resume a device the driver holds suspended (``config`` only to
#: assign a debug BO)
NEEDS_DEVICE = frozenset({"ctx", "config", "exec"})
FINAL = frozenset({ErtState.COMPLETED, ErtState.ERROR, ErtState.ABORT, ErtState.TIMEOUT})
EINVAL, ENOENT, EBADF, ENOTTY, EBUSY, EAGAIN, EOPNOTSUPP, ETIME, EACCES, ENODEV, EPERM, ENOSPC, \
    EFAULT = (errno_mod.errorcode[e] for e in (
        errno_mod.EINVAL, errno_mod.ENOENT, errno_mod.EBADF, errno_mod.ENOTTY, errno_mod.EBUSY,
        errno_mod.EAGAIN, errno_mod.EOPNOTSUPP, errno_mod.ETIME, errno_mod.EACCES,
        errno_mod.ENODEV, errno_mod.EPERM, errno_mod.ENOSPC, errno_mod.EFAULT))
WAIT_ALL = T.const("DRM_SYNCOBJ_WAIT_FLAGS_WAIT_ALL")
WAIT_FOR_SUBMIT = T.const("DRM_SYNCOBJ_WAIT_FLAGS_WAIT_FOR_SUBMIT")
WAIT_FLAGS = WAIT_ALL | WAIT_FOR_SUBMIT | T.const("DRM_SYNCOBJ_WAIT_FLAGS_WAIT_AVAILABLE") | \
    T.const("DRM_SYNCOBJ_WAIT_FLAGS_WAIT_DEADLINE")
INT64_MAX = (1 << 63) - 1
KNOWN_NRS = frozenset(io.nr for io in T.IOCTLS)
BO = {name: T.const(f"AMDXDNA_BO_{name}") for name in ("SHARE", "DEV_HEAP", "DEV", "CMD")}

# -- the generator ---------------------------------------------------------------------------
BO_TYPES = [0, 1, 1, 3, 3, 3, 4, 4, 2, 5, 0xFFFFFFFF]
BO_SIZES = [0, 1, 64, 4096, 12345, 1 << 20, 1 << 41]
BO_FLAGS = [0, 0, 0, 1, 0x100, 1 << 63]
HEAP_BAD_SIZES = [4096, 96 << 20, 1 << 40]
INFO_PARAMS = list(range(0x10)) + [0x10, 0xFFFF]
INFO_SIZES = [0, 1, 4, 8, 16, 47, 48, 64, 4096]
ARRAY_PARAMS = list(range(0x0C)) + [0x40]
ARRAY_ESIZES = [0, 1, 16, 24, 32, 160, 4096, 0x6400001]
ARRAY_NUMS = [0, 1, 2, 1024, 1025]
STATE_PARAMS = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0x20]
SOBJ_FLAGS = [0, 0, 1, 2, 0x80000000]
POINTS = [0, 1, 2, 3, 5, 1 << 40]
WAIT_FLAG_DRAWS = [0, WAIT_ALL, WAIT_FOR_SUBMIT, WAIT_ALL | WAIT_FOR_SUBMIT, 0x100]
SEQS = [0, -1, 1, 2, 3, 1 << 40]
RAW = [(0x64, 0x4B, 24), (0x64, 0x30, 8), (0x64, 0x40, 0x3FFF), (0x64, 0x00, 0), (0x41, 0x40, 56),
       (0x64, 0x43, 16), (0x64, 0x47, 4097), (0x00, 0x00, 0)]


#: WEIGHTS as random_ioctl draws from them
_DRAW_IOCTL = cumulative(WEIGHTS)


def random_ioctl(rng: random.Random) -> Op:
    """One ``ioctl`` line with operands a driver test (or a hostile program) would use."""
    name = rng.choices(_DRAW_IOCTL[0], cum_weights=_DRAW_IOCTL[1])[0]
    f, r = rng.choice([0, 0, 0, 1, 2]), lambda n: rng.randrange(n)  # noqa: E731
    if name == "open":
        return Op("ioctl", ("open",))
    if name in ("close", "heap"):
        return Op("ioctl", (name, f))
    if name == "bo":
        t = rng.choice(BO_TYPES)
        size = rng.choice(HEAP_BAD_SIZES if t == BO["DEV_HEAP"] else BO_SIZES)
        return Op("ioctl", ("bo", f, t, size, rng.choice(BO_FLAGS)))
    if name == "boinfo":
        return Op("ioctl", ("boinfo", f, _ref(rng), rng.choice([0, 0, 0, 1])))
    if name == "syncbo":
        return Op("ioctl", ("syncbo", f, _ref(rng), rng.choice([0, 1, 2]), rng.choice([0, 0, 64, 1 << 30]),
                            rng.choice([0, 64, 4096, 1 << 30])))
    if name == "gemclose":
        return Op("ioctl", ("gemclose", f, _ref(rng)))
    if name == "ctx":
        return Op("ioctl", ("ctx", f, rng.choice([1, 1, 1, 1, 0, 99]), rng.choice([0, 0, 0, 1])))
    if name == "destroy":
        return Op("ioctl", ("destroy", f, _ref(rng), rng.choice([0, 0, 0, 1])))
    if name == "config":
        return Op("ioctl", ("config", f, _ref(rng), rng.choice([0, 0, 1, 2, 3, 9]), rng.choice([0, 1, 2, 33])))
    if name == "exec":
        return Op("ioctl", ("exec", f, r(4), rng.choice(("nop", "nop", "fail", "hang"))))
    if name == "execbad":
        return Op("ioctl", ("execbad", f, r(4), rng.choice(EXEC_BAD)))
    if name == "wait":
        return Op("ioctl", ("wait", f, r(8), rng.choice([0, 0, 10, 3000])))
    if name == "waitseq":
        return Op("ioctl", ("waitseq", f, r(4), rng.choice(SEQS)))
    if name == "info":
        return Op("ioctl", ("info", f, rng.choice(INFO_PARAMS), rng.choice(INFO_SIZES)))
    if name == "array":
        return Op("ioctl", ("array", f, rng.choice(ARRAY_PARAMS), rng.choice(ARRAY_ESIZES),
                            rng.choice(ARRAY_NUMS)))
    if name == "setstate":
        return Op("ioctl", ("setstate", f, rng.choice(STATE_PARAMS), rng.choice([0, 1, 8, 16]),
                            rng.choice([0, 1, 2, 4, 5])))
    if name == "sobj":
        return Op("ioctl", ("sobj", f, rng.choice(SOBJ_FLAGS)))
    if name == "sobjdestroy":
        return Op("ioctl", ("sobjdestroy", f, _ref(rng), rng.choice([0, 0, 0, 1])))
    if name == "sobjsignal":
        return Op("ioctl", ("sobjsignal", f, _ref(rng), rng.choice(POINTS)))
    if name == "sobjwait":
        return Op("ioctl", ("sobjwait", f, _ref(rng), rng.choice(POINTS), rng.choice(WAIT_FLAG_DRAWS)))
    if name in ("depend", "signal"):
        return Op("ioctl", (name, f, r(4), _ref(rng), rng.choice(POINTS)))
    return Op("ioctl", ("raw", f, *rng.choice(RAW)))


def _ref(rng: random.Random) -> int:
    """A number naming a BO/context/syncobj of the trace, now and then a raw bad handle."""
    return rng.choice([0, 1, 2, 3, 4, 5, 6, -1, -4096])


#: the shim target's seed of a program's session (its corpus starts with it on AIE2): a
#: file, its heap, a context, jobs of every kernel and a fence, so mutations start where
#: jobs run rather than where a file must first be opened
SEED = """ioctl open
ioctl heap 0
ioctl ctx 0 1 0
ioctl exec 0 0 nop
ioctl exec 0 0 fail
ioctl sobj 0 0
ioctl signal 0 0 1 3
ioctl exec 0 0 hang
ioctl exec 0 0 nop
ioctl wait 0 0 0
ioctl sobjwait 0 0 2 0
ioctl open
ioctl heap 1
ioctl ctx 1 1 0
ioctl exec 1 1 nop"""


def seed_ops() -> list[Op]:
    """:data:`SEED` as ops, after a probe."""
    return [Op("call", ("probe",))] + [parse_ioctl(line.split()[1:]) for line in SEED.splitlines()]


def parse_ioctl(toks: list[str]) -> Op:
    """One ``ioctl`` trace line (after the verb)."""
    if not toks or toks[0] not in IOCTL_SPECS:
        raise TraceError(f"unknown ioctl op {toks[0] if toks else ''!r} (known: {', '.join(IOCTL_SPECS)})")
    spec = IOCTL_SPECS[toks[0]]
    if len(toks) - 1 != len(spec):
        raise TraceError(f"ioctl {toks[0]} takes {len(spec)} operands, got {len(toks) - 1}")
    return Op("ioctl", (toks[0], *typed_operands(spec, toks[1:])))


# -- what the trace made ---------------------------------------------------------------------
@dataclass
class UFile:
    acc: AccelFile | None  # None once closed
    num: int
    known: bool = True  # its contexts and jobs are predicted (no device event since it opened)


@dataclass
class UBo:
    file: int
    handle: int
    type: int
    size: int
    alive: bool = True
    vaddr: int = 0


@dataclass
class UCtx:
    file: int
    handle: int
    sync: int  # its timeline syncobj's handle in its file
    alive: bool = True
    next_seq: int = 1
    failed_execs: int = 0
    hangs: list[int] = field(default_factory=list)  # job numbers of submitted hangs
    cu_set: bool = False


@dataclass
class USync:
    file: int
    handle: int
    ctx: int | None = None  # a context's timeline: the context's number
    alive: bool = True
    value: int = 0
    submitted: bool = False


@dataclass
class UJob:
    file: int
    ctx: int  # context number
    seq: int
    cmd: int  # BO number of its command BO
    instr: int  # BO number of its instruction BO
    kernel: str
    allowed: set[ErtState] = field(default_factory=set)
    seen: ErtState | None = None


def _errname(e: int) -> str:
    return errno_mod.errorcode.get(e, str(e))


def _buf_addr(buf: bytearray | mmap.mmap) -> int:
    return ctypes.addressof((ctypes.c_char * len(buf)).from_buffer(buf)) if buf else 0


class UapiRunner:
    """The DRM files of one shim trace and the ioctls on them, with the contract checked.

    ``h`` is the :class:`~.shim_trace.ShimHarness` (its ``ip``, ``model``, ``jobs``)."""

    def __init__(self, h: Any) -> None:
        self.h = h
        chip = load_chip(h.chip)
        self.chip = chip
        self.files: list[UFile] = []
        self.bos: list[UBo] = []
        self.ctxs: list[UCtx] = []
        self.syncs: list[USync] = []
        self.jobs: list[UJob] = []
        self.heap: dict[int, list[int]] = {}  # file -> BO numbers of its chunks, in order
        self.dbg_touched: set[int] = set()  # files whose debug-BO bindings are not predicted
        self.euid = os.geteuid()

    # -- lifecycle -----------------------------------------------------------------------------
    def close(self) -> None:
        for f in self.files:
            if f.acc is not None:
                f.acc.close()
                f.acc = None

    def live_contexts(self) -> int:
        return sum(c.alive and self.files[c.file].acc is not None for c in self.ctxs)

    def busy(self, but: int | None = None) -> bool:
        """A client context other than ``but`` has a job pending (the runqueue, jobs.md §3a)."""
        now = self.observe()
        return any(j.ctx != but and now.get(i) not in FINAL and self._observable(j)
                   for i, j in enumerate(self.jobs))

    def device_event(self, name: str, prior: dict[int, ErtState]) -> None:
        """The driver session stopped, suspended, resumed, re-probed or reset the device: the
        client sessions' pending jobs may end ABORT, and the open files' contexts are no
        longer predicted (docs/spec/fuzzing.md §12), except across a suspend and resume on
        AIE2, which keep them (docs/spec/jobs.md §1)."""
        for i, st in prior.items():
            if st not in FINAL:
                self.jobs[i].allowed.add(ErtState.ABORT)
        if name in ("suspend", "resume") and self.chip.aie4 is None:
            return
        for f in self.files:
            f.known = False

    # -- references ------------------------------------------------------------------------------
    def _file(self, n: int) -> tuple[UFile | None, int]:
        if not self.files:
            return None, -1
        f = self.files[n % len(self.files)]
        return (f, f.num) if f.acc is not None else (None, f.num)

    @staticmethod
    def _pick(items: list[Any], n: int) -> Any | None:
        return items[n % len(items)] if n >= 0 and items else None

    def _bo_handle(self, n: int) -> int:
        b = self._pick(self.bos, n)
        return b.handle if b is not None else (-n - 1 if n < 0 else 0) & 0xFFFFFFFF

    def _ctx_handle(self, n: int) -> int:
        c = self._pick(self.ctxs, n)
        return c.handle if c is not None else (-n - 1 if n < 0 else 0) & 0xFFFFFFFF

    def _sync_handle(self, n: int) -> int:
        s = self._pick(self.syncs, n)
        return s.handle if s is not None else (-n - 1 if n < 0 else 0) & 0xFFFFFFFF

    def _file_bo(self, fnum: int, handle: int) -> UBo | None:
        """The live user BO ``handle`` names in file ``fnum`` (handles are per file)."""
        return next((b for b in self.bos if b.file == fnum and b.alive and b.handle == handle), None)

    def _file_ctx(self, fnum: int, handle: int) -> UCtx | None:
        return next((c for c in self.ctxs if c.file == fnum and c.alive and c.handle == handle), None)

    def _file_sync(self, fnum: int, handle: int) -> USync | None:
        return next((s for s in self.syncs if s.file == fnum and s.alive and s.handle == handle), None)

    # -- the jobs' states ------------------------------------------------------------------------
    def _observable(self, j: UJob) -> bool:
        """Its command BO is still mapped (its file open, the BO not closed)."""
        return self.files[j.file].acc is not None and self.bos[j.cmd].alive

    def observe(self) -> dict[int, ErtState]:
        out: dict[int, ErtState] = {}
        for i, j in enumerate(self.jobs):
            if self._observable(j):
                out[i] = ErtState(ctypes.c_uint32.from_address(self.bos[j.cmd].vaddr).value & 0xF)
        return out

    def check(self) -> None:
        """Every job: final only in an allowed state, and final for good."""
        model = self.h.model
        for i, st in self.observe().items():
            j = self.jobs[i]
            if j.seen is not None:
                if st != j.seen:
                    raise InvariantViolation("model_state", f"ioctl job {i} went from {j.seen.name} to {st.name}")
                continue
            if st not in FINAL:
                continue
            j.seen = st
            if model is not None and model.tainted is None and st not in j.allowed:
                want = "/".join(sorted(s.name for s in j.allowed))
                raise InvariantViolation("model_state", f"ioctl job {i} ({j.kernel}) ended {st.name}, "
                                                        f"the driver ends it {want}")

    def finish(self) -> None:
        """Every job of a live context ends once TDR had time; then the states are checked."""
        for i, j in enumerate(self.jobs):
            c = self.ctxs[j.ctx]
            if not self._observable(j) or not c.alive:
                continue
            acc = self.files[j.file].acc
            assert acc is not None
            try:
                self._io(acc, "AMDXDNA_WAIT_CMD", hwctx=c.handle, seq=j.seq, timeout=FINAL_WAIT_MS)
            except OSError:
                pass
            st = self.observe()[i]
            if st not in FINAL:
                raise InvariantViolation("not_final", f"ioctl job {i} on context {j.ctx} is {st.name}")
            self.h.events[f"ioctl final {st.name.lower()}"] += 1
        self.check()

    # -- one op ----------------------------------------------------------------------------------
    def run(self, name: str, args: tuple[Any, ...]) -> None:
        """Run one ioctl op; an errno comes out as ShimError (as a shim call's does)."""
        fn = getattr(self, "i_" + name)
        try:
            fn(*args)
        except OSError as e:
            raise ShimError(e.errno or errno_mod.EIO, f"ioctl {name}: {e.strerror}") from e

    def _io(self, acc: AccelFile, name: str, **values: Any) -> dict[str, Any]:
        """One ioctl through the harness (its waits counted, livelocks caught)."""
        def ioctl() -> dict[str, Any]:
            return acc.ioctl(name, **values)

        ioctl.__name__ = name  # what a livelock report names
        return self.h._run(ioctl)

    def _acc(self, n: int) -> tuple[AccelFile, int]:
        f, num = self._file(n)
        if f is None or f.acc is None:
            raise OSError(errno_mod.EBADF, "not an open DRM file")
        return f.acc, num

    def i_open(self) -> None:
        from ..uapi import AccelFile

        acc = self.h._run(AccelFile.attach, self.h.ip.daemon.socket_path, -1)
        self.files.append(UFile(acc, len(self.files)))

    def i_close(self, n: int) -> None:
        f, num = self._file(n)
        if f is None or f.acc is None:
            raise OSError(errno_mod.EBADF, "not an open DRM file")
        acc, f.acc = f.acc, None
        self.h._run(acc.close)
        for c in self.ctxs:
            c.alive = c.alive and c.file != num
        for b in self.bos:
            b.alive = b.alive and b.file != num
        for s in self.syncs:
            s.alive = s.alive and s.file != num

    def _create_bo(self, acc: AccelFile, num: int, type_: int, size: int, flags: int = 0) -> int:
        h = int(self._io(acc, "AMDXDNA_CREATE_BO", type=type_, size=size, flags=flags)["handle"])
        info = self.h._run(acc.bo_info, h)
        self.bos.append(UBo(num, h, type_, size, vaddr=int(info["vaddr"])))
        return len(self.bos) - 1

    def i_heap(self, n: int) -> None:
        acc, num = self._acc(n)
        h = self.h._run(acc.add_heap_chunk, HEAP_CHUNK)
        info = acc.bo_info(h)
        self.bos.append(UBo(num, h, BO["DEV_HEAP"], HEAP_CHUNK, vaddr=int(info["vaddr"])))
        self.heap.setdefault(num, []).append(len(self.bos) - 1)

    def i_bo(self, n: int, type_: int, size: int, flags: int) -> None:
        acc, num = self._acc(n)
        self._create_bo(acc, num, type_ & 0xFFFFFFFF, size & (1 << 64) - 1, flags & (1 << 64) - 1)

    def i_boinfo(self, n: int, b: int, ext: int) -> None:
        acc, _ = self._acc(n)
        self._io(acc, "AMDXDNA_GET_BO_INFO", handle=self._bo_handle(b), ext=ext & (1 << 64) - 1)

    def i_syncbo(self, n: int, b: int, direction: int, off: int, size: int) -> None:
        acc, _ = self._acc(n)
        self._io(acc, "AMDXDNA_SYNC_BO", handle=self._bo_handle(b), direction=direction & 0xFFFFFFFF,
                    offset=off & (1 << 64) - 1, size=size & (1 << 64) - 1)

    def i_gemclose(self, n: int, b: int) -> None:
        acc, num = self._acc(n)
        handle = self._bo_handle(b)
        self.h._run(acc.close_bo, handle)
        bo = self._file_bo(num, handle)
        if bo is not None:
            bo.alive = False
            chunks = self.heap.get(num, [])
            if bo.type == BO["DEV_HEAP"] and chunks and self.bos[chunks[-1]] is bo:
                chunks.pop()  # the program's mapping of it goes too: the next chunk maps there
                acc.heap_len -= HEAP_CHUNK

    def i_ctx(self, n: int, cols: int, ext: int) -> None:
        acc, num = self._acc(n)
        qos = bytearray(T.QOS_INFO.size)
        out = self._io(acc, "AMDXDNA_CREATE_HWCTX", ext=ext & (1 << 64) - 1, qos_p=_buf_addr(qos),
                          num_tiles=(cols & 0xFFFF) * self.chip.tiles.core_rows)
        c = len(self.ctxs)
        self.ctxs.append(UCtx(num, int(out["handle"]), int(out["syncobj_handle"])))
        self.syncs.append(USync(num, int(out["syncobj_handle"]), ctx=c))

    def i_destroy(self, n: int, c: int, pad: int) -> None:
        acc, num = self._acc(n)
        handle = self._ctx_handle(c)
        self._io(acc, "AMDXDNA_DESTROY_HWCTX", handle=handle, pad=pad & 0xFFFFFFFF)
        ctx = self._file_ctx(num, handle)
        if ctx is not None:
            ctx.alive = False
            for s in self.syncs:
                if s.file == num and s.ctx is not None and self.ctxs[s.ctx] is ctx:
                    s.alive = False

    def i_config(self, n: int, c: int, param: int, x: int) -> None:
        acc, num = self._acc(n)
        handle = self._ctx_handle(c)
        if param == T.const("DRM_AMDXDNA_HWCTX_CONFIG_CU"):
            mine = [b for b in self.bos if b.file == num and b.alive]
            cu = mine[-1].handle if mine else 0
            buf = bytearray(T.CONFIG_CU.pack(num_cus=x & 0xFFFF))
            for i in range(x & 0xFFFF):
                buf += T.CU_CONFIG.pack(cu_bo=cu, cu_func=i & 0xFF)
            self._io(acc, "AMDXDNA_CONFIG_HWCTX", handle=handle, param_type=param,
                        param_val=_buf_addr(buf), param_val_size=len(buf))
        else:
            self._io(acc, "AMDXDNA_CONFIG_HWCTX", handle=handle, param_type=param & 0xFFFFFFFF,
                        param_val=self._bo_handle(x), param_val_size=0)

    def _command(self, acc: AccelFile, num: int, kernel: str) -> tuple[int, int]:
        """A DEV BO holding the kernel's descriptor and a CMD BO holding a START_NPU of it
        (written through the BOs' own addresses, as a program does); their BO numbers."""
        from .. import kernels as K

        instr = self._create_bo(acc, num, BO["DEV"], 64)
        desc = K.encode(K.Desc(K.Kernel[kernel.upper()]))
        ctypes.memmove(self.bos[instr].vaddr, desc, len(desc))
        addr = int(acc.bo_info(self.bos[instr].handle)["xdna_addr"])
        cmd = self._create_bo(acc, num, BO["CMD"], 4096)
        d = ert_start_npu(addr, K.DESC.size)
        ctypes.memmove(self.bos[cmd].vaddr, d, len(d))
        return instr, cmd

    def i_exec(self, n: int, c: int, kernel: str) -> None:
        if kernel not in KERNELS:
            raise TraceError(f"kernel {kernel!r} is not one of {', '.join(KERNELS)}")
        acc, num = self._acc(n)
        instr, cmd = self._command(acc, num, kernel)
        handle = self._ctx_handle(c)
        out = self._io(acc, "AMDXDNA_EXEC_CMD", hwctx=handle, cmd_count=1,
                          type=T.const("AMDXDNA_CMD_SUBMIT_EXEC_BUF"), cmd_handles=self.bos[cmd].handle)
        ctx = self._file_ctx(num, handle)
        if ctx is None:  # the model's EINVAL says so first when it is on
            raise InvariantViolation("exec_foreign", f"EXEC_CMD on context {handle}, which file {num} "
                                                     "does not have, succeeded")
        self.jobs.append(UJob(num, self.ctxs.index(ctx), int(out["seq"]), cmd, instr, kernel))

    def i_execbad(self, n: int, c: int, how: str) -> None:
        if how not in EXEC_BAD:
            raise TraceError(f"execbad {how!r}: one of {', '.join(EXEC_BAD)}")
        acc, num = self._acc(n)
        mine = [b for b in self.bos if b.file == num and b.alive]
        cmds = [b for b in mine if b.type == BO["CMD"]]
        others = [b for b in mine if b.type != BO["CMD"]]
        vals: dict[str, Any] = {"hwctx": self._ctx_handle(c), "type": T.const("AMDXDNA_CMD_SUBMIT_EXEC_BUF"),
                                "cmd_handles": cmds[-1].handle if cmds else 0, "cmd_count": 1}
        args = bytearray(4)
        if how == "ext":
            vals["ext"] = 1
        elif how == "type":
            vals["type"] = 7
        elif how == "count":
            vals["cmd_count"] = 2
        elif how == "notcmd":
            vals["cmd_handles"] = others[-1].handle if others else 0
        else:
            args[:] = (0xFFFF).to_bytes(4, "little")
            vals.update(args=_buf_addr(args), arg_count=1)
        self._io(acc, "AMDXDNA_EXEC_CMD", **vals)

    def i_wait(self, n: int, j: int, timeout_ms: int) -> None:
        acc, _ = self._acc(n)
        job = self._pick(self.jobs, j)
        if job is None:
            raise OSError(errno_mod.EINVAL, "no job submitted yet")
        self._io(acc, "AMDXDNA_WAIT_CMD", hwctx=self.ctxs[job.ctx].handle, seq=job.seq,
                    timeout=timeout_ms & 0xFFFFFFFF)

    def i_waitseq(self, n: int, c: int, seq: int) -> None:
        acc, _ = self._acc(n)
        self._io(acc, "AMDXDNA_WAIT_CMD", hwctx=self._ctx_handle(c), seq=seq & (1 << 64) - 1,
                    timeout=WAITSEQ_MS)

    def _guarded(self, size: int) -> bytearray:
        return bytearray([GUARD_BYTE]) * (max(size, T.QUERY_AIE_STATUS.size) + GUARD)

    def _check_guard(self, what: str, buf: bytearray | mmap.mmap, size: int) -> None:
        if any(b != GUARD_BYTE for b in buf[size:]):
            raise InvariantViolation("model_overrun", f"{what} wrote past its {size}-byte buffer")

    def i_info(self, n: int, param: int, size: int) -> None:
        acc, _ = self._acc(n)
        size = max(0, min(size, 1 << 16))
        buf = self._guarded(size)
        if param == T.const("DRM_AMDXDNA_QUERY_TELEMETRY") and size >= T.QUERY_TELEMETRY_HEADER.size:
            buf[: T.QUERY_TELEMETRY_HEADER.size] = T.QUERY_TELEMETRY_HEADER.pack()
        # AIE_STATUS's buffer holds its own struct, read and written whole whatever
        # buffer_size says, as the driver does (docs/spec/uapi.md §6)
        room = max(size, T.QUERY_AIE_STATUS.size) if param == T.const("DRM_AMDXDNA_QUERY_AIE_STATUS") else size
        try:
            self._io(acc, "AMDXDNA_GET_INFO", param=param & 0xFFFFFFFF, buffer_size=size,
                     buffer=_buf_addr(buf))
        finally:
            self._check_guard(f"GET_INFO param {param}", buf, room)

    def i_array(self, n: int, param: int, esize: int, num: int) -> None:
        """The buffer backs every byte the call names within the argument limits: the
        decoder reads FW_LOG/FW_TRACE's metadata at its end (docs/spec/fuzzing.md §12)."""
        acc, _ = self._acc(n)
        esize, num = esize & 0xFFFFFFFF, num & 0xFFFFFFFF  # what the decoder reads
        size = esize * num if esize <= T.const("AMDXDNA_MAX_ELEMENT_SIZE") and \
            num <= T.const("AMDXDNA_MAX_NUM_ELEMENT") else ARRAY_HEAP_MAX  # else: EINVAL first
        # zeros: a BY_ID key of pid 0, a BO_USAGE of pid 0, a log reader at offset 0
        buf: bytearray | mmap.mmap = bytearray(size + GUARD) if size <= ARRAY_HEAP_MAX else \
            mmap.mmap(-1, size + GUARD, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | _MAP_NORESERVE)
        buf[size:] = bytes([GUARD_BYTE]) * GUARD
        try:
            self._io(acc, "AMDXDNA_GET_ARRAY", param=param & 0xFFFFFFFF, element_size=esize,
                        num_element=num, buffer=_buf_addr(buf))
        finally:
            self._check_guard(f"GET_ARRAY param {param}", buf, size)
            if isinstance(buf, mmap.mmap):
                buf.close()

    def i_setstate(self, n: int, param: int, size: int, value: int) -> None:
        acc, _ = self._acc(n)
        size = max(0, min(size, 4096))
        buf = bytearray(max(size, 1))
        buf[0] = value & 0xFF
        self._io(acc, "AMDXDNA_SET_STATE", param=param & 0xFFFFFFFF, buffer_size=size,
                    buffer=_buf_addr(buf))

    def i_sobj(self, n: int, flags: int) -> None:
        acc, num = self._acc(n)
        out = self._io(acc, "SYNCOBJ_CREATE", flags=flags & 0xFFFFFFFF)
        signaled = bool(flags & T.const("DRM_SYNCOBJ_CREATE_SIGNALED"))
        self.syncs.append(USync(num, int(out["handle"]), value=int(signaled), submitted=signaled))

    def i_sobjdestroy(self, n: int, s: int, pad: int) -> None:
        acc, num = self._acc(n)
        handle = self._sync_handle(s)
        self._io(acc, "SYNCOBJ_DESTROY", handle=handle, pad=pad & 0xFFFFFFFF)
        so = self._file_sync(num, handle)
        if so is not None:
            so.alive = False

    def _arrays(self, handle: int, point: int) -> tuple[bytearray, bytearray]:
        return bytearray(handle.to_bytes(4, "little")), bytearray((point & (1 << 64) - 1).to_bytes(8, "little"))

    def i_sobjsignal(self, n: int, s: int, point: int) -> None:
        acc, num = self._acc(n)
        handle = self._sync_handle(s)
        hs, ps = self._arrays(handle, point)
        if point == 0:
            self._io(acc, "SYNCOBJ_SIGNAL", handles=_buf_addr(hs), count_handles=1)
        else:
            self._io(acc, "SYNCOBJ_TIMELINE_SIGNAL", handles=_buf_addr(hs), points=_buf_addr(ps),
                        count_handles=1)
        so = self._file_sync(num, handle)
        if so is not None:
            so.value, so.submitted = max(so.value, point or 1), True

    def i_sobjwait(self, n: int, s: int, point: int, flags: int) -> None:
        acc, _ = self._acc(n)
        hs, ps = self._arrays(self._sync_handle(s), point)
        # a wait for a submission nobody makes in this thread would never end: it polls
        timeout = 0 if flags & WAIT_FOR_SUBMIT else INT64_MAX
        self._io(acc, "SYNCOBJ_TIMELINE_WAIT", handles=_buf_addr(hs), points=_buf_addr(ps),
                    count_handles=1, flags=flags & 0xFFFFFFFF, timeout_nsec=timeout)

    def _fence(self, kind: str, n: int, c: int, s: int, point: int) -> None:
        acc, num = self._acc(n)
        handle = self._sync_handle(s)
        hs, ps = self._arrays(handle, point)
        self._io(acc, "AMDXDNA_EXEC_CMD", hwctx=self._ctx_handle(c),
                    type=T.const(f"AMDXDNA_CMD_SUBMIT_{kind}"), cmd_handles=_buf_addr(hs), args=_buf_addr(ps),
                    cmd_count=1, arg_count=1)
        so = self._file_sync(num, handle)
        if kind == "SIGNAL" and so is not None:
            so.value, so.submitted = max(so.value, point), True

    def i_depend(self, n: int, c: int, s: int, point: int) -> None:
        self._fence("DEPENDENCY", n, c, s, point)

    def i_signal(self, n: int, c: int, s: int, point: int) -> None:
        self._fence("SIGNAL", n, c, s, point)

    def i_raw(self, n: int, type_: int, nr: int, size: int) -> None:
        acc, _ = self._acc(n)
        size = max(0, min(size, 0x3FFF))
        number = (T.ioc("rw", nr & 0xFF, size) & ~0xFF00) | (type_ & 0xFF) << 8
        buf = self._guarded(size)
        buf[:size] = bytes(size)
        try:
            self.h._run(acc.ioctl_raw, number, buf)
        finally:
            self._check_guard(f"ioctl {number:#x}", buf, size)

class UapiModel:
    """The driver's UAPI contract (docs/spec/uapi.md §6) for the ioctl lines of one shim
    trace: the errno each ioctl must give, and the final state each job must reach.

    It predicts the argument checks the decoder makes before touching the device always,
    and the rest while the device is up, the firmware unfaulted (the shim model's
    ``tainted``) and the driver session has not stopped, suspended or reset it since the
    files' contexts were made (``UapiRunner.known``); otherwise it says nothing."""

    def __init__(self, runner: UapiRunner, shim_model: ShimModel) -> None:
        self.r = runner
        self.sm = shim_model
        chip = runner.chip
        self.aie4 = chip.aie4 is not None
        self.heap_max = chip.limits.dev_heap_max
        #: the columns the session reports: none on an SR-IOV PF (docs/spec/aie4.md §6)
        self.pf = chip.pci.function == "pf"
        self.cols = 0 if self.pf else chip.tiles.cols
        self.hwctx_limit = chip.limits.hwctx_limit
        rc = chip.runtime_config
        self.frame_boundary = rc is not None and rc.frame_boundary_preempt is not None

    # -- helpers ---------------------------------------------------------------------------------
    def _up(self, num: int, resumes: bool = False) -> bool:
        """Everything past file ``num``'s argument checks is predicted: the device up and not
        runtime-suspended, or (``resumes``: a call that takes a runtime-PM reference, AIE2)
        suspended by the driver, which resumes it for the call (docs/spec/jobs.md §1)."""
        sm = self.sm
        dev = sm.dev == "up" and sm.rpm is False
        if resumes and not self.aie4:
            dev = dev or sm.dev == "suspended" or (sm.dev == "up" and sm.rpm is True)
        return dev and sm.tainted is None and self.r.files[num].known

    def _want(self, name: str, args: tuple[Any, ...], got: str, want: str | set[str] | None) -> None:
        """The ioctl's errno is the one the driver gives (its text only for a finding)."""
        from .lang import format_operand

        if want is None:
            return
        if not (got in want if isinstance(want, set) else got == want):
            shown = "/".join(sorted(want)) if isinstance(want, set) else want
            call = " ".join([name, *(format_operand(a) for a in args)])
            raise InvariantViolation("model_errno", f"ioctl {call} gave {got}, the driver gives {shown}")

    def _shim_busy(self) -> bool:
        """The driver session has work pending on a live context (the runqueue, jobs.md §3a)."""
        h = self.r.h
        now = self.sm.observe(h)
        return any(self.sm.ctxs[j.ctx].alive and now.get(i) not in FINAL
                   for i, j in enumerate(h.jobs[: len(self.sm.jobs)]))

    # -- the harness's interface (as ShimModel's) --------------------------------------------------
    def before(self, h: Any, name: str, args: tuple[Any, ...]) -> dict[int, ErtState]:
        return self.r.observe() if name in ("exec", "destroy", "close") else {}

    def after(self, h: Any, name: str, args: tuple[Any, ...], got: str,
              prior: dict[int, ErtState], want: str | set[str] | None) -> None:
        """Check the errno, then move on by what the call did."""
        self._want(name, args, got, want)
        r = self.r
        f, num = r._file(args[0]) if args else (None, -1)
        if name == "exec" and f is not None:
            if got == "ok":
                self._submitted(r.jobs[-1], prior)
            else:
                ctx = r._file_ctx(num, r._ctx_handle(args[1]))
                if ctx is not None:
                    ctx.failed_execs += 1
        if name == "destroy" and got == "ok":
            gone = [i for i, c in enumerate(r.ctxs) if not c.alive]
            for i, st in prior.items():
                if st not in FINAL and r.jobs[i].ctx in gone:
                    r.jobs[i].allowed.add(ErtState.ABORT)
        if name == "config" and got == "ok" and args[2] == T.const("DRM_AMDXDNA_HWCTX_CONFIG_CU"):
            ctx = r._file_ctx(num, r._ctx_handle(args[1]))
            if ctx is not None:
                ctx.cu_set = True
        if (name == "open" or (name in NEEDS_DEVICE and f is not None and (
                name != "config" or args[2] == T.const("DRM_AMDXDNA_HWCTX_ASSIGN_DBG_BUF")))) \
                and (self.sm.dev == "suspended" or (self.sm.dev == "up" and self.sm.rpm is not False)) \
                and not self.aie4:
            self._resumed_for_client(got, want)
        r.check()

    def _resumed_for_client(self, got: str, want: str | set[str] | None) -> None:
        """A file's call that needs the device found the driver holding it suspended: the
        driver resumed it for the call (a runtime-PM get, docs/spec/jobs.md §1), so it is up
        again; a failure the model did not predict (one past the argument checks) may have
        come before or after the resume."""
        if got == "ok":
            self.sm.client_resumed(known=self.sm.rpm is not None)  # None: maybe up already
            self.sm.dev = "up"
            self.sm.mgmt_broken = False  # the resume's new management channel
            self.r.h._new_channel_state()
        elif want is None and self.sm.dev == "suspended":
            self.sm.dev = "unknown"
        elif want is None:  # runtime-suspended (or maybe): resumed or not
            self.sm.rpm = self.sm.resumes = None

    def _heap_mapped(self, fnum: int) -> bool:
        return any(self.r.bos[b].alive for b in self.r.heap.get(fnum, []))

    def _heap_room(self, fnum: int, size: int) -> bool:
        """A DEV BO of ``size`` surely fits the file's heap (with a context's command lists
        and 32 KiB alignment counted generously)."""
        chunks = sum(self.r.bos[b].alive for b in self.r.heap.get(fnum, []))
        used = sum(max(b.size, DEV_ALIGN) + DEV_ALIGN for b in self.r.bos
                   if b.file == fnum and b.alive and b.type == BO["DEV"])
        used += sum(c.file == fnum and c.alive for c in self.r.ctxs) * CTX_HEAP_BOS * DEV_ALIGN * 2
        return used + size + DEV_ALIGN < chunks * HEAP_CHUNK // 2

    # -- per op ----------------------------------------------------------------------------------
    def expect(self, h: Any, name: str, args: tuple[Any, ...]) -> str | set[str] | None:
        """The errno name (or names; None: not predicted) the ioctl op must give."""
        r = self.r
        if name == "open":  # its queries to the firmware resume a suspended device (AIE2)
            sm = self.sm
            up = sm.dev == "up" and (sm.rpm is False or (sm.rpm is not None and not self.aie4))
            return "ok" if sm.tainted is None and (up or (sm.dev == "suspended" and not self.aie4)) else None
        f, num = r._file(args[0])
        if f is None:
            return EBADF
        return getattr(self, "e_" + name)(num, *args[1:])

    def e_close(self, num: int) -> str:
        return "ok"

    def e_heap(self, num: int) -> str | None:
        if self.aie4:
            return EINVAL
        chunks = sum(self.r.bos[b].alive for b in self.r.heap.get(num, []))
        if chunks and (chunks + 1) * HEAP_CHUNK > self.heap_max:
            return EBUSY
        return "ok"

    def e_bo(self, num: int, type_: int, size: int, flags: int) -> str | None:
        type_, size, flags = type_ & 0xFFFFFFFF, size & (1 << 64) - 1, flags & (1 << 64) - 1
        if flags & ~T.const("AMDXDNA_BO_FLAGS_REGION_MASK"):
            return EINVAL
        if not BO["SHARE"] <= type_ <= BO["CMD"] or size == 0:
            return EINVAL
        if type_ == BO["DEV_HEAP"]:
            return EINVAL if size % HEAP_CHUNK or size > self.heap_max or self.aie4 else None
        if type_ == BO["DEV"] and not self.aie4:
            if not self._heap_mapped(num):
                return EINVAL
            if size > self.heap_max:
                return EINVAL
            return "ok" if self._heap_room(num, size) else None
        return EINVAL if size > BO_MAX_SIZE else "ok"

    def e_boinfo(self, num: int, b: int, ext: int) -> str:
        if ext:
            return EINVAL
        return "ok" if self.r._file_bo(num, self.r._bo_handle(b)) else ENOENT

    def e_syncbo(self, num: int, b: int, direction: int, off: int, size: int) -> str:
        bo = self.r._file_bo(num, self.r._bo_handle(b))
        if bo is None:
            return ENOENT
        if direction not in (0, 1) or off > bo.size or (size and size > bo.size - off):
            return EINVAL
        return "ok"

    def e_gemclose(self, num: int, b: int) -> str | None:
        r = self.r
        bo = r._file_bo(num, r._bo_handle(b))
        if bo is None:
            return EINVAL
        i = r.bos.index(bo)
        now = r.observe()
        if any(i in (j.cmd, j.instr) and now.get(n) not in FINAL for n, j in enumerate(r.jobs)) \
                or num in r.dbg_touched:
            return None  # a pending command's, or maybe a debug BO: EBUSY or freed
        if bo.type == BO["DEV_HEAP"]:
            chunks = [c for c in r.heap.get(num, []) if r.bos[c].alive]
            uses = any(x.file == num and x.alive and x.type == BO["DEV"] for x in r.bos) or \
                any(c.file == num and c.alive for c in r.ctxs)
            return EBUSY if uses or chunks[-1:] != [i] else "ok"
        return "ok"

    def e_ctx(self, num: int, cols: int, ext: int) -> str | None:
        if ext:
            return EINVAL
        if self.aie4:  # a context needs the file's DEV heap, which AIE4 has none of
            return EINVAL if not 1 <= (cols & 0xFFFF) <= self.cols else ENOENT  # (uapi.md §6)
        if not self._up(num, resumes=True):
            return None
        if not 1 <= (cols & 0xFFFF) <= self.cols:
            return EINVAL
        if not self.aie4 and not any(self.r.bos[b].alive for b in self.r.heap.get(num, [])):
            return ENOENT
        total = self.r.live_contexts() + sum(c.alive for c in self.sm.ctxs)
        return "ok" if (cols & 0xFFFF) == 1 and total < CTX_PROMISED else None

    def e_destroy(self, num: int, c: int, pad: int) -> str | None:
        if pad or not self.r._file_ctx(num, self.r._ctx_handle(c)):
            return EINVAL
        return "ok" if self._up(num) else None

    def e_config(self, num: int, c: int, param: int, x: int) -> str | None:
        if not self.r._file_ctx(num, self.r._ctx_handle(c)):
            return EINVAL
        if param == T.const("DRM_AMDXDNA_HWCTX_CONFIG_CU"):
            ctx = self.r._file_ctx(num, self.r._ctx_handle(c))
            mine = [b for b in self.r.bos if b.file == num and b.alive]
            if not x or not mine or (ctx is not None and ctx.cu_set):
                return EINVAL
            return "ok"
        if param == T.const("DRM_AMDXDNA_HWCTX_CONFIG_OPCODE_TIMEOUT"):
            return EOPNOTSUPP
        if param in (T.const("DRM_AMDXDNA_HWCTX_ASSIGN_DBG_BUF"), T.const("DRM_AMDXDNA_HWCTX_REMOVE_DBG_BUF")):
            self.r.dbg_touched.add(num)
            return None  # the firmware's part (docs/spec/jobs.md §4a): the shim model's
        return EINVAL

    def e_exec(self, num: int, c: int, kernel: str) -> str | set[str] | None:
        """The command's DEV BO needs the heap; then EXEC_CMD EXEC_BUF of a good command."""
        if self.aie4:
            return None
        if not self._heap_mapped(num):
            return EINVAL
        if not self._heap_room(num, 64):
            return None
        now = self.r.observe()
        ctx = self.r._file_ctx(num, self.r._ctx_handle(c))
        if ctx is None:
            return EINVAL
        if not self._up(num, resumes=True):
            return None
        n = self.r.ctxs.index(ctx)
        pending = sum(1 for i, j in enumerate(self.r.jobs) if j.ctx == n and now.get(i) not in FINAL)
        if any(now.get(i) not in FINAL for i in ctx.hangs):
            return None  # behind a hang: TDR decides when the slot frees
        want = {"ok"} if pending < SLOTS else {"ok", EAGAIN}
        if self.r.busy(but=n) or self._shim_busy():
            want |= {EBUSY}
        return want

    def _submitted(self, job: UJob, prior: dict[int, ErtState]) -> None:
        """A job was accepted: its seq is the next of its context; its final state follows
        from its kernel, or ABORT when queued behind a pending hang (docs/spec/jobs.md §3)."""
        from .model import outcome

        ctx = self.r.ctxs[job.ctx]
        if job.seq != ctx.next_seq and not ctx.failed_execs:
            raise InvariantViolation("model_seq", f"EXEC_CMD on context {ctx.handle} got seq {job.seq}, "
                                                  f"expected {ctx.next_seq}")
        if job.seq < ctx.next_seq:
            raise InvariantViolation("model_seq", f"EXEC_CMD on context {ctx.handle} got seq {job.seq} again")
        ctx.next_seq = job.seq + 1
        state, _ = outcome((job.kernel,))
        job.allowed = {state}
        pending_hang = [i for i in ctx.hangs if prior.get(i) not in FINAL]
        if pending_hang:
            now = self.r.observe()
            job.allowed = {ErtState.ABORT} | ({state} if any(now.get(i) in FINAL for i in pending_hang) else set())
        if not self._up(job.file):
            job.allowed |= {ErtState.ABORT}
        if state == ErtState.TIMEOUT:
            ctx.hangs.append(len(self.r.jobs) - 1)

    def e_execbad(self, num: int, c: int, how: str) -> str:
        if how == "argstale":
            return ENOENT
        return EINVAL

    def _seq(self, num: int, handle: int, seq: int, timeout_ms: int) -> str | None:
        ctx = self.r._file_ctx(num, handle)
        if ctx is None:
            return EINVAL
        seq &= (1 << 64) - 1
        if seq == 0 or seq >= ctx.next_seq + ctx.failed_execs:
            return EINVAL  # never submitted
        now = self.r.observe()
        n = self.r.ctxs.index(ctx)
        job = next((i for i, j in enumerate(self.r.jobs) if j.ctx == n and j.seq == seq), None)
        if job is not None and now.get(job) in FINAL:
            return "ok"
        return "ok" if timeout_ms == 0 and self._up(num) and job is not None else None

    def e_wait(self, num: int, j: int, timeout_ms: int) -> str | None:
        job = self.r._pick(self.r.jobs, j)
        if job is None:
            return EINVAL
        return self._seq(num, self.r.ctxs[job.ctx].handle, job.seq, timeout_ms & 0xFFFFFFFF)

    def e_waitseq(self, num: int, c: int, seq: int) -> str | None:
        return self._seq(num, self.r._ctx_handle(c), seq, WAITSEQ_MS)

    def e_info(self, num: int, param: int, size: int) -> str | None:
        if not self._up(num):
            return None
        p = {name: T.const(f"DRM_AMDXDNA_{name}") for name in (
            "QUERY_AIE_STATUS", "QUERY_AIE_METADATA", "QUERY_TELEMETRY", "QUERY_SENSORS",
            "READ_AIE_MEM", "READ_AIE_REG",
            "QUERY_CERT_FIRMWARE_VERSION", "GET_AUTO_COREDUMP", "GET_FRAME_BOUNDARY_PREEMPT_STATE")}
        if param == p["QUERY_AIE_STATUS"]:
            return None  # its own struct at the buffer: the firmware's dump
        if param == p["QUERY_TELEMETRY"]:
            if self.r.euid != 0:
                return EPERM  # the driver's admin check
            return EINVAL if size <= T.QUERY_TELEMETRY_HEADER.size + 4 * self.hwctx_limit else None
        if param == p["QUERY_SENSORS"]:  # the power entry and one per column, all or EINVAL
            return EINVAL if size < (1 + min(self.cols, PMF_COLUMNS)) * T.QUERY_SENSOR.size else "ok"
        if param in (p["READ_AIE_MEM"], p["READ_AIE_REG"],
                     p["QUERY_CERT_FIRMWARE_VERSION"], p["GET_AUTO_COREDUMP"]):
            return EOPNOTSUPP
        if param == p["QUERY_AIE_METADATA"] and self.pf:
            return EOPNOTSUPP  # a management function has no AIE array (docs/spec/uapi.md §6)
        if param == p["GET_FRAME_BOUNDARY_PREEMPT_STATE"]:
            return "ok" if self.frame_boundary else EOPNOTSUPP
        return "ok" if 0 <= param <= T.const("DRM_AMDXDNA_GET_AUTO_COREDUMP") else EOPNOTSUPP

    def e_array(self, num: int, param: int, esize: int, count: int) -> str:
        """Pure: no registry and no driver service outside ``exec`` (docs/spec/fuzzing.md §12)."""
        if not esize or not count or esize > T.const("AMDXDNA_MAX_ELEMENT_SIZE") or \
                count > T.const("AMDXDNA_MAX_NUM_ELEMENT"):
            return EINVAL
        if param == T.const("DRM_AMDXDNA_HW_CONTEXT_ALL"):
            return "ok"  # no device-wide table: no element
        if param == T.const("DRM_AMDXDNA_HW_CONTEXT_BY_ID"):
            return EINVAL  # the zeroed key names pid 0 (and no context matches anyway)
        if param == T.const("DRM_AMDXDNA_BO_USAGE"):
            return EINVAL if esize < T.BO_USAGE.size else "ok"
        if param in (T.const("DRM_AMDXDNA_FW_LOG"), T.const("DRM_AMDXDNA_FW_TRACE")) and not self.aie4:
            if self.r.euid != 0:
                return EPERM  # the driver's admin check
            if esize * count < T.DPT_METADATA.size:  # it reads the metadata at the buffer's
                return EFAULT  # end first, before it asks whether logging runs (uapi.md §6)
        if param in (T.const("DRM_AMDXDNA_FW_LOG_CONFIG"), T.const("DRM_AMDXDNA_FW_TRACE_CONFIG")) and \
                not self.aie4 and esize * count < T.GET_DPT_STATE.size:
            return ENOSPC  # no room for one get_dpt_state (docs/spec/uapi.md §6)
        # not served, the driver service's (the last async error, the log and trace), or a
        # parameter the driver does not serve
        return EOPNOTSUPP

    def e_setstate(self, num: int, param: int, size: int, value: int) -> str | None:
        if self.r.euid != 0:  # SET_STATE is root's (DRM_ROOT_ONLY)
            return EACCES
        value = value & 0xFF if size else 0
        if param == T.const("DRM_AMDXDNA_SET_FORCE_PREEMPT"):
            return EINVAL if value > 1 else "ok"
        if param == T.const("DRM_AMDXDNA_SET_POWER_MODE"):
            return EINVAL if value > T.const("POWER_MODE_TURBO") else EOPNOTSUPP  # no driver service
        if param == T.const("DRM_AMDXDNA_SET_FRAME_BOUNDARY_PREEMPT"):
            if size != T.ATTRIBUTE_STATE.size or value > 1:
                return EINVAL
            if not self.frame_boundary:
                return EOPNOTSUPP
            return "ok" if self._up(num) else None
        if param in (T.const("DRM_AMDXDNA_SET_FW_LOG_STATE"), T.const("DRM_AMDXDNA_SET_FW_TRACE_STATE")):
            if self.aie4:
                return EOPNOTSUPP  # AIE4's rings are not modelled
            return EINVAL if size != T.SET_DPT_STATE.size else EOPNOTSUPP  # no driver service
        return EOPNOTSUPP

    def e_sobj(self, num: int, flags: int) -> str:
        return EINVAL if flags & ~T.const("DRM_SYNCOBJ_CREATE_SIGNALED") else "ok"

    def e_sobjdestroy(self, num: int, s: int, pad: int) -> str:
        return EINVAL if pad or not self.r._file_sync(num, self.r._sync_handle(s)) else "ok"

    def e_sobjsignal(self, num: int, s: int, point: int) -> str:
        so = self.r._file_sync(num, self.r._sync_handle(s))
        return ENOENT if so is None else EINVAL if so.ctx is not None else "ok"

    def _signalled(self, so: USync, point: int) -> bool | None:
        """Point ``point`` of ``so`` signalled (True), pending with a fence (False), or no
        fence for it yet (None)."""
        if so.ctx is None:
            ok = so.submitted and (so.value >= point if point else so.value != 0)
            return True if ok else None
        ctx = self.r.ctxs[so.ctx]
        if not point or point >= ctx.next_seq + ctx.failed_execs:
            return None
        job = next((i for i, j in enumerate(self.r.jobs) if j.ctx == so.ctx and j.seq == point), None)
        if job is None:
            return False if ctx.failed_execs else None
        return self.r.observe().get(job) in FINAL

    def e_sobjwait(self, num: int, s: int, point: int, flags: int) -> str | None:
        if flags & ~WAIT_FLAGS:
            return EINVAL
        so = self.r._file_sync(num, self.r._sync_handle(s))
        if so is None:
            return ENOENT
        sig = self._signalled(so, point & (1 << 64) - 1)
        if so.ctx is not None and sig is not True and not self._up(num):
            return None
        if sig is True:
            return "ok"
        if flags & WAIT_FOR_SUBMIT:
            return ETIME  # polled: nothing signalled yet
        return EINVAL if sig is None else "ok"  # no fence; or a job that will end

    def e_depend(self, num: int, c: int, s: int, point: int) -> str | None:
        if not self.r._file_ctx(num, self.r._ctx_handle(c)):
            return EINVAL
        so = self.r._file_sync(num, self.r._sync_handle(s))
        if so is None:
            return ENOENT
        sig = self._signalled(so, point & (1 << 64) - 1)
        if so.ctx is not None and sig is not True and not self._up(num):
            return None
        return EINVAL if sig is None else "ok"

    def e_signal(self, num: int, c: int, s: int, point: int) -> str | None:
        if not self.r._file_ctx(num, self.r._ctx_handle(c)):
            return EINVAL
        so = self.r._file_sync(num, self.r._sync_handle(s))
        if so is None:
            return ENOENT
        if so.ctx is not None:
            return EINVAL
        return "ok" if self._up(num) else None

    def e_raw(self, num: int, type_: int, nr: int, size: int) -> str | None:
        if type_ & 0xFF != T.DRM_IOCTL_BASE:
            return ENOTTY
        if nr & 0xFF not in KNOWN_NRS:
            return EINVAL
        return None  # a known command with a zeroed argument: its own rules
