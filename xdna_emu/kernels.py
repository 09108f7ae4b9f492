"""Reference kernels and the instruction-buffer format that names them.

Real AIE instruction streams cannot execute here. Instead a command's instruction buffer
holds a 48-byte descriptor naming one of a few reference kernels; the emulated firmware
runs it with numpy on the DMA-mapped argument buffers, so data really moves and errors and
hangs can be caused on purpose. The runtime encodes descriptors with :func:`encode`, the
firmware decodes them with :func:`decode` and runs them with :func:`run`.

Layout (little-endian, docs/spec/jobs.md §5)::

    u32 magic "XKNL"  u32 version  u32 kernel  u32 dtype  u32 count
    u32 m  u32 n  u32 k  f64 scalar  u32 error  u32 rsvd

Buffer arguments: copy(src, dst), add(a, b, out), scale(in, out), gemm(a[m*k], b[k*n],
c[m*n]); nop, fail and hang take none.
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
assert DESC.size == 48

AIE_ERR_INSTRUCTION = 0x1000006  # default error raised by the fail kernel (facts §5)


class Kernel(IntEnum):
    NOP = 0
    COPY = 1
    ADD = 2
    SCALE = 3
    GEMM = 4
    FAIL = 5
    HANG = 6


class DType(IntEnum):
    INT8 = 0
    INT16 = 1
    INT32 = 2
    FLOAT32 = 3


NUMPY = {DType.INT8: np.int8, DType.INT16: np.int16, DType.INT32: np.int32,
         DType.FLOAT32: np.float32}
NARGS = {Kernel.NOP: 0, Kernel.COPY: 2, Kernel.ADD: 3, Kernel.SCALE: 2, Kernel.GEMM: 3,
         Kernel.FAIL: 0, Kernel.HANG: 0}


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

    @property
    def nargs(self) -> int:
        return NARGS[self.kernel]

    def arg_sizes(self) -> list[int]:
        """Bytes each buffer argument must hold."""
        item = np.dtype(NUMPY[self.dtype]).itemsize
        if self.kernel in (Kernel.COPY, Kernel.SCALE):
            return [self.count * item] * 2
        if self.kernel == Kernel.ADD:
            return [self.count * item] * 3
        if self.kernel == Kernel.GEMM:
            out = 4 if self.dtype != DType.FLOAT32 else item
            return [self.m * self.k * item, self.k * self.n * item, self.m * self.n * out]
        return []


def encode(desc: Desc) -> bytes:
    return DESC.pack(MAGIC, VERSION, desc.kernel, desc.dtype, desc.count, desc.m, desc.n,
                     desc.k, float(desc.scalar), desc.error, 0)


def decode(data: bytes | memoryview) -> Desc:
    """Parse a descriptor; raise KernelError for anything a firmware would reject."""
    if len(data) < DESC.size:
        raise KernelError(f"instruction buffer of {len(data)} bytes is shorter than {DESC.size}")
    magic, ver, kern, dtype, count, m, n, k, scalar, error, _ = DESC.unpack_from(data)
    if magic != MAGIC or ver != VERSION:
        raise KernelError(f"bad instruction magic/version {magic:#x}/{ver}")
    try:
        return Desc(Kernel(kern), DType(dtype), count, m, n, k, scalar, error)
    except ValueError:
        raise KernelError(f"unknown kernel {kern} or dtype {dtype}") from None


def by_name(name: str) -> Kernel:
    try:
        return Kernel[name.upper()]
    except KeyError:
        raise KernelError(f"unknown kernel {name!r} (known: {', '.join(k.name.lower() for k in Kernel)})") from None


#: How a kernel reaches buffer memory: (argument index, bytes) -> writable view.
Fetch = Callable[[int, int], memoryview]


def run(desc: Desc, fetch: Fetch) -> None:
    """Execute a data kernel. ``fetch`` raises (e.g. IommuFault) for unreachable memory."""
    sizes = desc.arg_sizes()
    if desc.kernel in (Kernel.NOP, Kernel.FAIL, Kernel.HANG):
        return
    dt = NUMPY[desc.dtype]
    bufs = [fetch(i, size) for i, size in enumerate(sizes)]
    if desc.kernel == Kernel.GEMM:
        a = np.frombuffer(bufs[0], dtype=dt).reshape(desc.m, desc.k)
        b = np.frombuffer(bufs[1], dtype=dt).reshape(desc.k, desc.n)
        acc = np.float32 if desc.dtype == DType.FLOAT32 else np.int32
        c = np.frombuffer(bufs[2], dtype=acc).reshape(desc.m, desc.n)
        np.matmul(a.astype(acc), b.astype(acc), out=c)
        return
    arrays = [np.frombuffer(b, dtype=dt) for b in bufs]
    if desc.kernel == Kernel.COPY:
        arrays[1][:] = arrays[0]
    elif desc.kernel == Kernel.ADD:
        np.add(arrays[0], arrays[1], out=arrays[2], casting="unsafe")
    elif desc.kernel == Kernel.SCALE:
        if desc.dtype == DType.FLOAT32:
            np.multiply(arrays[0], np.float32(desc.scalar), out=arrays[1])
        else:
            np.multiply(arrays[0], dt(int(desc.scalar)), out=arrays[1], casting="unsafe")


def reference(desc: Desc, inputs: Sequence[np.ndarray]) -> np.ndarray:
    """What a data kernel should produce, computed independently (for tests and checks)."""
    dt = NUMPY[desc.dtype]
    if desc.kernel == Kernel.COPY:
        return inputs[0].astype(dt)
    if desc.kernel == Kernel.ADD:
        return (inputs[0].astype(np.int64 if dt != np.float32 else dt)
                + inputs[1].astype(np.int64 if dt != np.float32 else dt)).astype(dt)
    if desc.kernel == Kernel.SCALE:
        return (inputs[0] * (desc.scalar if dt == np.float32 else int(desc.scalar))).astype(dt)
    if desc.kernel == Kernel.GEMM:
        acc = np.float32 if dt == np.float32 else np.int64
        out = inputs[0].astype(acc).reshape(desc.m, desc.k) @ inputs[1].astype(acc).reshape(desc.k, desc.n)
        return out.astype(np.float32 if dt == np.float32 else np.int32)
    raise KernelError(f"{desc.kernel.name.lower()} produces no data")
