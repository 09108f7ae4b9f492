"""The reference kernels against an independent numpy reference, and descriptor checks."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xdna_emu import kernels as K


def _run(desc: K.Desc, inputs: list[np.ndarray]) -> np.ndarray:
    sizes = desc.arg_sizes()
    bufs = [bytearray(s) for s in sizes]
    for b, arr in zip(bufs, inputs, strict=False):
        b[:] = arr.tobytes()
    K.run(K.decode(K.encode(desc)), lambda i, n: memoryview(bufs[i])[:n])
    out_dt = np.int32 if desc.kernel == K.Kernel.GEMM and desc.dtype != K.DType.FLOAT32 else K.NUMPY[desc.dtype]
    return np.frombuffer(bytes(bufs[-1]), dtype=out_dt)


@settings(max_examples=60, deadline=None)
@given(kernel=st.sampled_from([K.Kernel.COPY, K.Kernel.ADD, K.Kernel.SCALE]),
       dtype=st.sampled_from(list(K.DType)), count=st.integers(1, 300),
       scalar=st.integers(-5, 5), seed=st.integers(0, 2**32 - 1))
def test_elementwise_kernels_match_reference(kernel, dtype, count, scalar, seed) -> None:
    rng = np.random.default_rng(seed)
    dt = K.NUMPY[dtype]
    mk = (lambda: rng.integers(-100, 100, count).astype(dt)) if dtype != K.DType.FLOAT32 \
        else (lambda: rng.standard_normal(count).astype(dt))
    desc = K.Desc(kernel, dtype, count, scalar=scalar)
    inputs = [mk() for _ in range(desc.nargs - 1)]
    got = _run(desc, inputs)
    want = K.reference(desc, inputs).ravel()
    if dtype == K.DType.FLOAT32:
        assert np.allclose(got, want, rtol=1e-6)
    else:
        assert (got == want).all()


@pytest.mark.parametrize("dtype", list(K.DType))
def test_gemm_matches_reference(dtype: K.DType) -> None:
    rng = np.random.default_rng(1)
    m, n, k = 5, 7, 3
    dt = K.NUMPY[dtype]
    a = rng.integers(-9, 9, m * k).astype(dt)
    b = rng.integers(-9, 9, k * n).astype(dt)
    desc = K.Desc(K.Kernel.GEMM, dtype, m=m, n=n, k=k)
    assert np.allclose(_run(desc, [a, b]), K.reference(desc, [a, b]).ravel())


def test_bad_descriptors_are_kernel_errors() -> None:
    good = K.encode(K.Desc(K.Kernel.NOP))
    with pytest.raises(K.KernelError):
        K.decode(good[:20])
    with pytest.raises(K.KernelError):
        K.decode(b"\0" * 4 + good[4:])
    with pytest.raises(K.KernelError):
        K.decode(K.DESC.pack(K.MAGIC, 1, 99, 0, 0, 0, 0, 0, 0.0, 0, 0))
    with pytest.raises(K.KernelError):
        K.by_name("fft")
    assert K.by_name("GEMM") == K.Kernel.GEMM
