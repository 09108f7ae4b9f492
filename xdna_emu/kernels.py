"""Reference kernels and the instruction-buffer format that names them.

Real AIE instruction streams cannot execute here. Instead a command's instruction buffer
holds a 48-byte descriptor naming one of a few reference kernels; the emulated firmware
runs it with numpy on the DMA-mapped argument buffers, so data really moves and errors and
hangs can be caused on purpose. The runtime encodes descriptors with :func:`encode`, the
firmware decodes them with :func:`decode` and runs them with :func:`run`.

Layout (little-endian, docs/spec/jobs.md §5)::

    u32 magic "XKNL"  u32 version  u32 kernel  u32 dtype  u32 count
    u32 m  u32 n  u32 k  f64 scalar  u32 error  u32 where

``where`` places the *fail* kernel's AIE error (0: the default tile): bits 7:0 column
within the context's partition, 15:8 tile row, 23:16 module (0 memory, 1 core, 2 PL),
31:24 event id.

Each kernel is one entry of :data:`KERNELS`: its id, buffer arguments, sizes, run function
and reference; the :class:`Kernel` ids and every per-kernel answer come from that table.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import IntEnum

import numpy as np

MAGIC = 0x4C4E4B58  # "XKNL"
VERSION = 1
DESC = struct.Struct("<IIIIIIIIdII")
#: the descriptor's fields in DESC order (the C job path's header is generated from these)
DESC_FIELDS = ("magic", "version", "kernel", "dtype", "count", "m", "n", "k", "scalar",
               "error", "where")
assert DESC.size == 48 and len(DESC_FIELDS) == len(DESC.format) - 1

AIE_ERR_INSTRUCTION = 0x1000006  # default error raised by the fail kernel (docs/spec/jobs.md §5)


class DType(IntEnum):
    INT8 = 0
    INT16 = 1
    INT32 = 2
    FLOAT32 = 3


NUMPY = {DType.INT8: np.int8, DType.INT16: np.int16, DType.INT32: np.int32,
         DType.FLOAT32: np.float32}


class KernelError(ValueError):
    """The descriptor or its buffers are invalid (APP ERT invalid instruction)."""


@dataclass(frozen=True)
class Desc:
    kernel: Kernel
    dtype: DType = DType.INT32
    count: int = 0
    m: int = 0
    n: int = 0
    k: int = 0
    scalar: float = 1.0
    error: int = AIE_ERR_INSTRUCTION
    where: int = 0  # fail: error placement (module docstring), 0 = default tile

    @property
    def spec(self) -> KernelSpec:
        return SPECS[self.kernel]

    @property
    def nargs(self) -> int:
        return self.spec.nargs

    @property
    def item(self) -> int:
        """Bytes per element of this descriptor's dtype."""
        return np.dtype(NUMPY[self.dtype]).itemsize

    def arg_sizes(self) -> list[int]:
        """Bytes each buffer argument must hold."""
        return self.spec.sizes(self) if self.spec.nargs else []


def encode(desc: Desc) -> bytes:
    return DESC.pack(MAGIC, VERSION, desc.kernel, desc.dtype, desc.count, desc.m, desc.n,
                     desc.k, float(desc.scalar), desc.error, desc.where)


#: Descriptors decoded so far, by their bytes (a Desc is immutable): the job path decodes the
#: same few programs over and over. Bounded: cleared when it reaches DECODED_MAX entries.
_DECODED: dict[bytes, Desc] = {}
DECODED_MAX = 1024


def decode(data: bytes | memoryview) -> Desc:
    """Parse a descriptor; raise KernelError for anything a firmware would reject."""
    if len(data) < DESC.size:
        raise KernelError(f"instruction buffer of {len(data)} bytes is shorter than {DESC.size}")
    key = bytes(data[: DESC.size])
    desc = _DECODED.get(key)
    if desc is not None:
        return desc
    magic, ver, kern, dtype, count, m, n, k, scalar, error, where = DESC.unpack_from(key)
    if magic != MAGIC or ver != VERSION:
        raise KernelError(f"bad instruction magic/version {magic:#x}/{ver}")
    try:
        desc = Desc(Kernel(kern), DType(dtype), count, m, n, k, scalar, error, where)
    except ValueError:
        raise KernelError(f"unknown kernel {kern} or dtype {dtype}") from None
    if len(_DECODED) >= DECODED_MAX:
        _DECODED.clear()
    _DECODED[key] = desc
    return desc


def place(col: int, row: int, module: int, event: int) -> int:
    """The ``where`` word of a fail descriptor: column within the partition, tile row,
    module (0 memory, 1 core, 2 PL) and event id, each a byte."""
    if not all(0 <= v <= 0xFF for v in (col, row, module, event)):
        raise ValueError("error placement fields are bytes")
    return col | row << 8 | module << 16 | event << 24


def by_name(name: str) -> Kernel:
    try:
        return Kernel[name.upper()]
    except KeyError:
        raise KernelError(f"unknown kernel {name!r} (known: {', '.join(k.name.lower() for k in Kernel)})") from None


#: How a kernel reaches buffer memory: (argument index, bytes) -> writable view.
Fetch = Callable[[int, int], memoryview]


def run(desc: Desc, fetch: Fetch) -> None:
    """Execute a data kernel. ``fetch`` raises (e.g. IommuFault) for unreachable memory."""
    spec = desc.spec
    sizes = desc.arg_sizes()
    if spec.run is None:  # nop, fail, hang: the firmware acts, no data moves
        return
    spec.run(desc, [fetch(i, size) for i, size in enumerate(sizes)])


def reference(desc: Desc, inputs: Sequence[np.ndarray]) -> np.ndarray:
    """What a data kernel should produce, computed independently (for tests and checks)."""
    if desc.spec.reference is None:
        raise KernelError(f"{desc.spec.name} produces no data")
    return desc.spec.reference(desc, inputs)


# -- the kernels ---------------------------------------------------------------------------------
def _views(desc: Desc, bufs: list[memoryview]) -> list[np.ndarray]:
    dt = NUMPY[desc.dtype]
    return [np.frombuffer(b, dtype=dt) for b in bufs]


def _wide(dt: type) -> type:
    """Reference arithmetic type: exact for ints (wrapped on the way out), float32 as is."""
    return dt if dt == np.float32 else np.int64


def _elementwise(n: int) -> Callable[[Desc], list[int]]:
    return lambda d: [d.count * d.item] * n


def _run_copy(d: Desc, bufs: list[memoryview]) -> None:
    a = _views(d, bufs)
    a[1][:] = a[0]


def _run_add(d: Desc, bufs: list[memoryview]) -> None:
    a = _views(d, bufs)
    np.add(a[0], a[1], out=a[2], casting="unsafe")


def _run_scale(d: Desc, bufs: list[memoryview]) -> None:
    a = _views(d, bufs)
    if d.dtype == DType.FLOAT32:
        np.multiply(a[0], np.float32(d.scalar), out=a[1])
    else:
        np.multiply(a[0], NUMPY[d.dtype](int(d.scalar)), out=a[1], casting="unsafe")


def _gemm_acc(d: Desc) -> type:
    """gemm accumulates and stores int types in int32, floats in float32 (docs/spec/jobs.md §5)."""
    return np.float32 if d.dtype == DType.FLOAT32 else np.int32


def _gemm_sizes(d: Desc) -> list[int]:
    out = np.dtype(_gemm_acc(d)).itemsize
    return [d.m * d.k * d.item, d.k * d.n * d.item, d.m * d.n * out]


def _run_gemm(d: Desc, bufs: list[memoryview]) -> None:
    dt, acc = NUMPY[d.dtype], _gemm_acc(d)
    a = np.frombuffer(bufs[0], dtype=dt).reshape(d.m, d.k)
    b = np.frombuffer(bufs[1], dtype=dt).reshape(d.k, d.n)
    c = np.frombuffer(bufs[2], dtype=acc).reshape(d.m, d.n)
    np.matmul(a.astype(acc), b.astype(acc), out=c)


def _ref_copy(d: Desc, x: Sequence[np.ndarray]) -> np.ndarray:
    return x[0].astype(NUMPY[d.dtype])


def _ref_add(d: Desc, x: Sequence[np.ndarray]) -> np.ndarray:
    dt = NUMPY[d.dtype]
    return (x[0].astype(_wide(dt)) + x[1].astype(_wide(dt))).astype(dt)


def _ref_scale(d: Desc, x: Sequence[np.ndarray]) -> np.ndarray:
    dt = NUMPY[d.dtype]
    return (x[0] * (d.scalar if dt == np.float32 else int(d.scalar))).astype(dt)


def _ref_gemm(d: Desc, x: Sequence[np.ndarray]) -> np.ndarray:
    wide = _wide(NUMPY[d.dtype])
    out = x[0].astype(wide).reshape(d.m, d.k) @ x[1].astype(wide).reshape(d.k, d.n)
    return out.astype(_gemm_acc(d))


@dataclass(frozen=True)
class KernelSpec:
    """One reference kernel: its wire id, buffer arguments, sizes, run and reference.

    Adding a kernel is adding one entry to :data:`KERNELS` (and its row in
    docs/spec/jobs.md §5, which tests/test_kernels.py checks against this table)."""

    name: str
    id: int  # the descriptor's kernel field
    args: tuple[str, ...]  # buffer arguments in order; their count is what a command passes
    doc: str
    sizes: Callable[[Desc], list[int]] | None = None  # bytes per argument
    run: Callable[[Desc, list[memoryview]], None] | None = None  # None: moves no data
    reference: Callable[[Desc, Sequence[np.ndarray]], np.ndarray] | None = None

    @property
    def nargs(self) -> int:
        return len(self.args)


KERNELS: tuple[KernelSpec, ...] = (
    KernelSpec("nop", 0, (), "completes at once"),
    KernelSpec("copy", 1, ("src", "dst"), "dst = src, count elements",
               _elementwise(2), _run_copy, _ref_copy),
    KernelSpec("add", 2, ("a", "b", "out"), "out = a + b, count elements, integers wrap",
               _elementwise(3), _run_add, _ref_add),
    KernelSpec("scale", 3, ("in", "out"), "out = in * scalar, count elements",
               _elementwise(2), _run_scale, _ref_scale),
    KernelSpec("gemm", 4, ("a", "b", "c"), "c[m*n] = a[m*k] @ b[k*n]",
               _gemm_sizes, _run_gemm, _ref_gemm),
    KernelSpec("fail", 5, (), "ends the command with the AIE error in the error field"),
    KernelSpec("hang", 6, (), "never completes: the context stalls until TDR or destroy"),
    KernelSpec("debug", 7, (), "writes a marker (value = count) into the context's debug BO"),
)  # fmt: skip

#: Kernel ids by name, made from :data:`KERNELS` (``Kernel.GEMM == 4``).
Kernel = IntEnum("Kernel", [(k.name.upper(), k.id) for k in KERNELS])  # type: ignore[misc]
SPECS: dict[Kernel, KernelSpec] = {Kernel(k.id): k for k in KERNELS}
NARGS: dict[Kernel, int] = {kern: spec.nargs for kern, spec in SPECS.items()}
