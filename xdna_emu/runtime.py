"""An XRT-like application API over the driver shim: device, buffers, contexts, runs.

::

    with Emulator(chip="npu4") as emu, Device.open(socket=emu.socket) as dev:
        ctx = dev.context()
        a = dev.buffer(np.arange(4096, dtype=np.int32))
        out = dev.buffer(np.zeros(4096, dtype=np.int32))
        run = ctx.run("scale", a, out, scalar=3)
        assert run.wait(timeout=5) == "completed"

The first process to open a device probes it and plays the driver; later processes attach
as clients (docs/spec/jobs.md §1). A command names a reference kernel (xdna_emu.kernels)
and its buffers; the emulated NPU runs it on the DMA-mapped memory. The API is
thread-safe: threads may share a Device, each with its own contexts.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import struct
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import kernels as K
from .fw.messages import CONFIG_CU_MAX, CTX_HEALTH_DATA, CTX_HEALTH_FIELDS
from .shim import (
    BO_CMD,
    BO_DEV,
    BO_SHARE,
    SYNC_FROM_DEVICE,
    SYNC_TO_DEVICE,
    ErtState,
    Shim,
    ShimError,
    chain_error_index,
    ert_cmd_chain,
    ert_start_dpu,
    ert_start_npu,
)

#: Final command states by the names ``Run.wait`` returns.
STATE_NAMES = {ErtState.COMPLETED: "completed", ErtState.ERROR: "error",
               ErtState.ABORT: "aborted", ErtState.TIMEOUT: "timeout",
               ErtState.NORESPONSE: "timeout"}
CMD_BO_SIZE = 4096
MAX_CHAIN = 64
INSTR_CACHE_MAX = 64  # distinct instruction descriptors kept per context


class UsageError(ValueError):
    """A runtime-level misuse (wrong buffer count, unsupported dtype...)."""


BUNDLE_FORMAT = "xdna-emu-bundle"
BUNDLE_VERSION = 1


@dataclass(frozen=True)
class Cu:
    """One compute unit of a bundle: its name, function and the reference kernel it runs."""

    name: str
    function: int
    kernel: K.Kernel


@dataclass(frozen=True)
class Bundle:
    """The emulator's stand-in for an xclbin (docs/spec/jobs.md §5a): a partition size and a
    CU table. ``Bundle.load`` takes a path to its JSON, the JSON text or the parsed dict."""

    columns: int
    cus: tuple[Cu, ...]

    @classmethod
    def load(cls, src: str | Path | dict) -> Bundle:
        if isinstance(src, dict):
            doc = src
        else:
            text = str(src)
            if isinstance(src, Path) or not text.lstrip().startswith("{"):
                text = Path(src).read_text()
            try:
                doc = json.loads(text)
            except json.JSONDecodeError as exc:
                raise UsageError(f"bundle is not JSON: {exc}") from None
        if doc.get("format") != BUNDLE_FORMAT or doc.get("version") != BUNDLE_VERSION:
            raise UsageError(f"not a {BUNDLE_FORMAT} version {BUNDLE_VERSION} document")
        cols = doc.get("partition", {}).get("columns", 0)
        table = doc.get("cus")
        if not isinstance(cols, int) or cols < 0 or not isinstance(table, list) \
                or not 1 <= len(table) <= CONFIG_CU_MAX:
            raise UsageError(f"a bundle has a partition size and 1..{CONFIG_CU_MAX} CUs")
        cus: list[Cu] = []
        for e in table:
            name, func = e.get("name"), e.get("function", 0)
            if not isinstance(name, str) or not name or any(c.name == name for c in cus):
                raise UsageError(f"bundle CU name {name!r} is empty or not unique")
            if not isinstance(func, int) or not 0 <= func <= 0xFF:
                raise UsageError(f"CU {name}: function {func!r} is not 0..255")
            try:
                kern = K.by_name(str(e.get("kernel")))
            except (KeyError, ValueError):
                raise UsageError(f"CU {name}: unknown kernel {e.get('kernel')!r}") from None
            cus.append(Cu(name, func, kern))
        return cls(cols, tuple(cus))

    def index(self, name: str) -> int:
        for i, cu in enumerate(self.cus):
            if cu.name == name:
                return i
        raise UsageError(f"the bundle has no CU {name!r}")


class Buffer:
    """A SHARE buffer object the device reads and writes in place (SVA)."""

    def __init__(self, dev: Device, nbytes: int, dtype: np.dtype, shape: tuple[int, ...]) -> None:
        self.dev = dev
        self.dtype = np.dtype(dtype)
        self.shape = shape
        self.nbytes = nbytes
        self.handle = dev.shim.bo_create(BO_SHARE, max(nbytes, 1))
        self.xdna_addr = int(dev.shim.bo_info(self.handle)["xdna_addr"])
        self._mem = dev.shim.bo_map(self.handle)

    @property
    def array(self) -> np.ndarray:
        """A live numpy view of the buffer memory (no sync)."""
        return np.frombuffer(self._mem, dtype=self.dtype, count=int(np.prod(self.shape))).reshape(self.shape)

    def write(self, data: np.ndarray) -> None:
        arr = np.ascontiguousarray(data, dtype=self.dtype)
        if arr.nbytes != self.nbytes:
            raise ValueError(f"{arr.nbytes} bytes do not fit a {self.nbytes}-byte buffer")
        self._mem[: self.nbytes] = arr.tobytes()
        self.dev.shim.bo_sync(self.handle, SYNC_TO_DEVICE, 0, self.nbytes)

    def read(self) -> np.ndarray:
        """Sync from the device and return a copy of the contents."""
        self.dev.shim.bo_sync(self.handle, SYNC_FROM_DEVICE, 0, self.nbytes)
        return self.array.copy()

    def free(self) -> None:
        if self.handle is not None:
            self._mem = None  # type: ignore[assignment]
            self.dev.shim.bo_free(self.handle)
            self.handle = None  # type: ignore[assignment]


@dataclass
class Command:
    """One prepared START_NPU command: its instruction BO and its cmd BO."""

    ctx: Context
    cmd_bo: int
    instr_bo: int
    view: memoryview
    owns_instr: bool = False  # an instruction BO of its own (the context cache was full)
    body: bytes = b""  # the packet as prepared: a TIMEOUT overwrites its payload

    def state(self) -> int:
        return struct.unpack_from("<I", self.view, 0)[0] & 0xF

    def refill(self) -> None:
        """Write the prepared packet back with state NEW (before every submission)."""
        if self.body:
            self.view[: len(self.body)] = self.body
        hdr = struct.unpack_from("<I", self.view, 0)[0]
        struct.pack_into("<I", self.view, 0, (hdr & ~0xF) | ErtState.NEW)

    def health(self) -> dict[str, int] | None:
        """After TIMEOUT: the context health record the driver wrote into the payload
        (docs/spec/jobs.md §6), else None."""
        if self.state() != ErtState.TIMEOUT:
            return None
        rec = CTX_HEALTH_DATA.unpack_from(self.view, 4 * 2)  # after the header and CU mask
        return dict(zip(CTX_HEALTH_FIELDS, rec, strict=True))

    def free(self) -> None:
        """Release the command's buffer objects (it must not be in flight)."""
        if self.cmd_bo:
            shim = self.ctx.dev.shim
            self.view = memoryview(b"\0" * 4)
            shim.bo_free(self.cmd_bo)
            if self.owns_instr:
                shim.bo_free(self.instr_bo)
            self.cmd_bo = 0


class Run:
    """A submitted command (or chain). ``wait`` returns its final state by name."""

    def __init__(self, ctx: Context, seq: int, head: Command, parts: list[Command],
                 owned: list[Command] | None = None) -> None:
        self.ctx, self.seq, self.head, self.parts = ctx, seq, head, parts
        self._owned = owned or []  # commands this run made itself: freed once it is final
        self._final: str | None = None

    @property
    def state(self) -> str:
        return self._final or STATE_NAMES.get(self.head.state(), "running")

    @property
    def error_index(self) -> int | None:
        """For a failed or timed-out chain: the index of the command that failed or hung."""
        if self._final is not None:
            return self._error_index
        if len(self.parts) <= 1 or self.head.state() not in (ErtState.ERROR, ErtState.TIMEOUT):
            return None
        return chain_error_index(self.head.view)

    def wait(self, timeout: float | None = None) -> str:
        """Block until the command is final; returns "completed", "error", "timeout" or
        "aborted". A wait that runs out before then raises TimeoutError."""
        ms = 0 if timeout is None else max(1, int(timeout * 1000))
        try:
            self.ctx.dev.shim.wait(self.ctx.handle, self.seq, ms)
        except ShimError as exc:
            if exc.errno in (errno.ETIME, errno.ETIMEDOUT):  # still running
                raise TimeoutError(f"command {self.seq} still running after {timeout} s") from None
            raise
        if self._final is None and self._owned:
            # Keep what callers may still ask, then give the BOs back: a loop of ctx.run()
            # must not run out of buffer-object handles.
            self._error_index = self.error_index
            self._final = self.state
            for cmd in self._owned:
                cmd.free()
        return self.state


class Context:
    """A hardware context: up to 4 commands in flight, completed in order."""

    def __init__(self, dev: Device, priority: str = "normal", cols: int = 0,
                 bundle: Bundle | None = None) -> None:
        self.dev, self.bundle = dev, bundle
        self.handle = dev.shim.hwctx_create(priority=priority,
                                            num_cols=bundle.columns if bundle else cols)
        self._instr: dict[bytes, int] = {}
        # AIE4 runs ERT_START_DPU commands, AIE2 START_NPU (docs/spec/aie4.md §8)
        self._start = ert_start_dpu if dev.shim.info()["family"] == "aie4" else ert_start_npu
        self._cu_bos: list[int] = []
        if bundle is not None:  # each CU's "PDI": a DEV BO holding its kernel's descriptor
            try:
                for cu in bundle.cus:
                    bo = dev.shim.bo_create(BO_DEV, 4096)
                    self._cu_bos.append(bo)
                    dev.shim.bo_map(bo)[: K.DESC.size] = K.encode(K.Desc(cu.kernel))
                dev.shim.config_cu(self.handle, [(bo, cu.function) for bo, cu in
                                                 zip(self._cu_bos, bundle.cus, strict=True)])
            except BaseException:
                self.close()
                raise

    def command(self, kernel: str, *buffers: Buffer, scalar: float = 1.0,
                m: int | None = None, n: int | None = None, k: int | None = None,
                error: int = K.AIE_ERR_INSTRUCTION,
                at: tuple[int, int, int, int] | None = None) -> Command:
        """Prepare (but do not submit) one command running ``kernel`` on ``buffers``; in a
        context made from a bundle, ``kernel`` names a CU (its kernel runs, its index goes
        in the CU mask). ``at`` = (column within the context, row, module, event) places a
        fail kernel's AIE error (docs/spec/jobs.md §5)."""
        cu_mask = 1
        if self.bundle is not None:
            idx = self.bundle.index(kernel)
            kern, cu_mask = self.bundle.cus[idx].kernel, 1 << idx
        else:
            kern = K.by_name(kernel)
        desc = self._describe(kern, buffers, scalar, m, n, k, error)
        if at is not None:
            desc = dataclasses.replace(desc, where=K.place(*at))
        instr, owns_instr = self._instr_bo(K.encode(desc))
        shim = self.dev.shim
        cmd = shim.bo_create(BO_CMD, CMD_BO_SIZE)
        view = shim.bo_map(cmd)
        instr_addr = int(shim.bo_info(instr)["xdna_addr"])
        body = self._start(instr_addr, K.DESC.size, [b.xdna_addr for b in buffers],
                           cu_mask=cu_mask)
        view[: len(body)] = body
        return Command(self, cmd, instr, view, owns_instr, body)

    def _describe(self, kern: K.Kernel, bufs: Sequence[Buffer], scalar: float, m: int | None,
                  n: int | None, k: int | None, error: int) -> K.Desc:
        if len(bufs) != K.NARGS[kern]:
            raise UsageError(f"{kern.name.lower()} takes {K.NARGS[kern]} buffers, got {len(bufs)}")
        if not bufs:
            return K.Desc(kern, error=error)
        dt = bufs[0].dtype
        dtype = {np.dtype(v): d for d, v in K.NUMPY.items()}.get(dt)
        if dtype is None:
            raise UsageError(f"dtype {dt} is not supported by the reference kernels")
        if kern == K.Kernel.GEMM:
            a, b = bufs[0].shape, bufs[1].shape
            m = m or (a[0] if len(a) == 2 else 0)
            k = k or (a[1] if len(a) == 2 else 0)
            n = n or (b[1] if len(b) == 2 else 0)
            desc = K.Desc(kern, dtype, 0, m, n, k)
        else:
            desc = K.Desc(kern, dtype, bufs[0].nbytes // dt.itemsize, scalar=scalar)
        for buf, need in zip(bufs, desc.arg_sizes(), strict=True):
            if buf.nbytes < need:
                raise UsageError(f"a {buf.nbytes}-byte buffer is too small ({need} needed)")
        return desc

    def _instr_bo(self, desc: bytes) -> tuple[int, bool]:
        """The instruction BO for ``desc`` and whether the command owns it: descriptors are
        shared through a bounded per-context cache; past it, each command has its own."""
        bo = self._instr.get(desc)
        if bo is not None:
            return bo, False
        shim = self.dev.shim
        bo = shim.bo_create(BO_DEV, 4096)
        shim.bo_map(bo)[: len(desc)] = desc
        shim.bo_sync(bo, SYNC_TO_DEVICE, 0, len(desc))
        if len(self._instr) < INSTR_CACHE_MAX:
            self._instr[desc] = bo
            return bo, False
        return bo, True

    def submit(self, cmd: Command) -> Run:
        """Submit a prepared command (again); its packet goes back to NEW first."""
        cmd.refill()
        return Run(self, self.dev.shim.exec(self.handle, cmd.cmd_bo), cmd, [cmd])

    def run(self, kernel: str, *buffers: Buffer, **params: Any) -> Run:
        """Submit one command and return its Run (its BOs are freed once it is waited for
        to a final state)."""
        cmd = self.command(kernel, *buffers, **params)
        run = self.submit(cmd)
        run._owned.append(cmd)
        return run

    def chain(self, commands: Sequence[Command | tuple]) -> Run:
        """Submit several commands as one CMD_CHAIN; they run in order and the chain stops
        at the first failure (``Run.error_index``)."""
        made = [not isinstance(c, Command) for c in commands]
        cmds = [c if isinstance(c, Command) else self.command(*c) for c in commands]
        if not 1 <= len(cmds) <= MAX_CHAIN:
            raise UsageError(f"a chain holds 1..{MAX_CHAIN} commands")
        for c in cmds:
            c.refill()
        shim = self.dev.shim
        head_bo = shim.bo_create(BO_CMD, CMD_BO_SIZE)
        view = shim.bo_map(head_bo)
        body = ert_cmd_chain([c.cmd_bo for c in cmds])
        view[: len(body)] = body
        head = Command(self, head_bo, 0, view)
        owned = [head] + [c for c, mine in zip(cmds, made, strict=True) if mine]
        return Run(self, shim.exec(self.handle, head_bo), head, cmds, owned)

    def close(self) -> None:
        if self.handle is not None:
            self.dev.shim.hwctx_destroy(self.handle)
            self.handle = None  # type: ignore[assignment]
        for bo in self._cu_bos:
            self.dev.shim.bo_free(bo)
        self._cu_bos = []


class Device:
    """One emulated NPU, opened through the driver shim."""

    def __init__(self, shim: Shim, role: str) -> None:
        self.shim = shim
        self.role = role  # "driver" (probed it) or "client" (attached)
        self._lock = threading.Lock()
        self._contexts: list[Context] = []

    @classmethod
    def open(cls, socket: str | Path | None = None, *, firmware_path: str | Path | None = None,
             runtime_dir: str | Path | None = None, iommu: str = "sva") -> Device:
        """Open the device at ``socket``, or the first one discovery finds. ``iommu="iova"``
        makes the device see DMA addresses instead of SVA (driver session only)."""
        if socket is None:
            from .discover import discover

            found = discover(Path(runtime_dir) if runtime_dir else None)
            if not found:
                raise FileNotFoundError("no emulated NPU found (is `xdna-emu run` running?)")
            socket = found[0].socket
        shim = Shim.open(socket)
        try:
            if shim.caps.get("probed"):
                shim.attach()
                if iommu != "sva":
                    shim.set_iommu_mode(iommu)  # EPERM: DMA addresses are the driver's
                return cls(shim, "client")
            shim.probe(firmware_path)
            if iommu != "sva":
                shim.set_iommu_mode(iommu)
            return cls(shim, "driver")
        except BaseException:
            shim.close()
            raise

    def context(self, priority: str = "normal", cols: int = 0,
                bundle: Bundle | str | Path | dict | None = None) -> Context:
        """A hardware context; ``bundle`` (a :class:`Bundle` or what ``Bundle.load`` takes)
        gives it its partition size and CU table."""
        if bundle is not None and not isinstance(bundle, Bundle):
            bundle = Bundle.load(bundle)
        ctx = Context(self, priority, cols, bundle)
        with self._lock:
            self._contexts.append(ctx)
        return ctx

    def buffer(self, data: np.ndarray | int, dtype: Any = np.uint8) -> Buffer:
        """A device buffer holding a copy of ``data`` (or ``data`` zeroed bytes)."""
        if isinstance(data, int):
            buf = Buffer(self, data, np.dtype(dtype), (data // np.dtype(dtype).itemsize,))
            return buf
        arr = np.ascontiguousarray(data)
        buf = Buffer(self, arr.nbytes, arr.dtype, arr.shape)
        buf.write(arr)
        return buf

    def set_power_mode(self, mode: str) -> None:
        """"default", "low", "medium", "high" or "turbo"."""
        self.shim.set_power_mode(mode)

    def last_async_error(self) -> dict[str, Any]:
        return self.shim.last_async_error()

    def info(self) -> dict[str, Any]:
        """Probe facts, clocks, power mode and contexts."""
        info = dict(self.shim.info())
        info["role"] = self.role
        info["power"] = self.shim.power()
        with self._lock:
            ctxs = [c for c in self._contexts if c.handle is not None]
        info["contexts"] = [self.shim.hwctx_info(c.handle) for c in ctxs]
        return info

    def close(self) -> None:
        with self._lock:
            ctxs, self._contexts = self._contexts, []
        for c in ctxs:
            try:
                c.close()
            except ShimError:
                pass
        self.shim.close()

    def __enter__(self) -> Device:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["Buffer", "Command", "Context", "Device", "Run"]
