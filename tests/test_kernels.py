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


def test_the_kernel_table_is_whole() -> None:
    """Each kernel is one table entry: the enum, arg counts and sizes all come from it."""
    assert [k.name for k in K.KERNELS] == [k.name.lower() for k in K.Kernel]
    assert len({k.id for k in K.KERNELS}) == len(K.KERNELS)
    for spec in K.KERNELS:
        desc = K.Desc(K.Kernel(spec.id), K.DType.INT16, count=3, m=2, n=3, k=4)
        assert desc.spec is spec and desc.nargs == K.NARGS[desc.kernel] == spec.nargs
        assert len(desc.arg_sizes()) == spec.nargs
        assert (spec.run is None) == (spec.reference is None) == (spec.nargs == 0)


def test_jobs_spec_lists_every_kernel() -> None:
    """docs/spec/jobs.md §5 names each kernel's id and buffer arguments as the table does."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "spec" / "jobs.md").read_text()
    ids = ", ".join(f"{k.id} {k.name}" for k in K.KERNELS)
    assert f"kernel: {ids} |" in text, f"docs/spec/jobs.md §5 must list: kernel: {ids}"
    for spec in K.KERNELS:
        if spec.nargs:
            m = re.search(rf"\b{spec.name}\(([^)]*)\)", text)
            assert m and len(m.group(1).split(",")) == spec.nargs, spec.name
