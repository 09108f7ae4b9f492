"""The UAPI decoder's pure argument checks (csrc/uapi/argcheck.c, docs/spec/uapi.md §6) on
hand-picked cases and a seeded sweep against the driver's rules restated here; the same
functions the libFuzzer harness fuzz/native/fuzz_uapi_args.c fuzzes (it needs clang; this
needs only the C compiler the package builds with)."""

from __future__ import annotations

import errno
import importlib.util
import random
from pathlib import Path
from types import ModuleType

import pytest

from xdna_emu import uapi_table as T

ROOT = Path(__file__).resolve().parent.parent
CSRC = ROOT / "csrc"

CDEF = """
struct xdna_uapi_frame { unsigned in; unsigned out; unsigned ksize; ...; };
int xdna_uapi_frame(unsigned long req, unsigned drv_size, struct xdna_uapi_frame *fr);
int xdna_uapi_check_create_bo(const void *a);
int xdna_uapi_va_total(const void *e, uint32_t n, uint64_t *total);
int xdna_uapi_check_get_array(const void *a);
uint32_t xdna_uapi_elem_size(uint32_t element_size, uint32_t ours);
int xdna_uapi_check_syncobj_handle(const void *a, int export_);
int xdna_uapi_check_attr(const void *st);
"""
ARG_MAX, MAX_ENTRIES = 4096, 4096  # argcheck.h: XDNA_UAPI_ARG_MAX, XDNA_UAPI_UPTR_MAX_ENTRIES
SHARE, CMD = T.const("AMDXDNA_BO_SHARE"), T.const("AMDXDNA_BO_CMD")


@pytest.fixture(scope="module")
def ac(tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    """A test-only cffi module over csrc/uapi/argcheck.c (compiled once per run)."""
    from cffi import FFI

    from xdna_emu.uapigen import write

    gen = tmp_path_factory.mktemp("gen")
    write(gen / "generated")  # the UAPI header argcheck.h includes, from the table
    (gen / "uapi").mkdir()
    for name in ("argcheck.h", "argcheck.c"):
        (gen / "uapi" / name).write_text((CSRC / "uapi" / name).read_text())
    ffi = FFI()
    ffi.cdef(CDEF)
    ffi.set_source("_xdna_uapi_args_test", '#include "uapi/argcheck.h"\n',
                   sources=[str(gen / "uapi" / "argcheck.c")], include_dirs=[str(gen)],
                   extra_compile_args=["-std=gnu11", "-O1", "-D_GNU_SOURCE"])
    so = ffi.compile(tmpdir=str(tmp_path_factory.mktemp("ac")))
    spec = importlib.util.spec_from_file_location("_xdna_uapi_args_test", so)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _buf(ac: ModuleType, data: bytes):  # noqa: ANN202 - a cffi buffer
    return ac.ffi.from_buffer(bytearray(data))


def test_frame_is_drm_ioctls(ac: ModuleType) -> None:
    fr = ac.ffi.new("struct xdna_uapi_frame *")
    io = T.ioctl("AMDXDNA_CREATE_BO")
    assert ac.lib.xdna_uapi_frame(io.number, io.layout.size, fr) == 0
    assert (getattr(fr, "in"), fr.out, fr.ksize) == (io.layout.size,) * 3
    older = (io.number & ~(0x3FFF << 16)) | (16 << 16)  # a caller built against a 16-byte struct
    assert ac.lib.xdna_uapi_frame(older, io.layout.size, fr) == 0
    assert (getattr(fr, "in"), fr.out, fr.ksize) == (16, 16, io.layout.size)  # copy 16, zero the rest
    assert ac.lib.xdna_uapi_frame(io.number & ~0xFF00 | (ord("x") << 8), 32, fr) == -errno.ENOTTY
    assert ac.lib.xdna_uapi_frame(io.number, ARG_MAX + 1, fr) == -errno.EINVAL


def create_bo_rule(flags: int, vaddr: int, size: int, type_: int) -> int:
    if flags >> 8 or not SHARE <= type_ <= CMD or (vaddr and type_ != SHARE) or (not vaddr and not size):
        return -errno.EINVAL
    return 1 if vaddr else 0


def test_create_bo_and_va_tables(ac: ModuleType) -> None:
    rng = random.Random(11)
    for _ in range(3000):
        vals = {"flags": rng.choice([0, 1, 0xFF, 0x100, 1 << 63]), "vaddr": rng.choice([0, 0, 0x1000]),
                "size": rng.choice([0, 1, 4096]), "type": rng.randrange(6)}
        got = ac.lib.xdna_uapi_check_create_bo(_buf(ac, T.CREATE_BO.pack(**vals)))
        assert got == create_bo_rule(vals["flags"], vals["vaddr"], vals["size"], vals["type"]), vals
    total = ac.ffi.new("uint64_t *")

    def va(entries: list[tuple[int, int]], n: int | None = None) -> int:
        blob = b"".join(T.VA_ENTRY.pack(vaddr=a, len=b) for a, b in entries) or bytes(16)
        return ac.lib.xdna_uapi_va_total(_buf(ac, blob), len(entries) if n is None else n, total)

    assert va([(0x10000, 8192), (0x40000, 4096)]) == 0 and total[0] == 12288
    for bad in ([(0x10008, 4096)], [(0x10000, 100)], [(0x10000, 0)], [((1 << 64) - 4096, 8192)],
                [(0x1000, 1 << 63), (0x1000, 1 << 63)]):
        assert va(bad) == -errno.EINVAL, bad
    assert va([], 0) == -errno.EINVAL
    assert va([(0x1000, 4096)] * (MAX_ENTRIES + 1)) == -errno.EINVAL


def test_get_array_syncobj_and_attributes(ac: ModuleType) -> None:
    lim_size, lim_num = T.const("AMDXDNA_MAX_ELEMENT_SIZE"), T.const("AMDXDNA_MAX_NUM_ELEMENT")
    for es, ne, pad, ok in ((160, 8, 0, True), (0, 8, 0, False), (160, 0, 0, False),
                            (lim_size + 1, 1, 0, False), (1, lim_num + 1, 0, False), (8, 1, 1, False),
                            (lim_size, lim_num, 0, True)):
        blob = T.GET_ARRAY.pack(param=0, element_size=es, num_element=ne, pad=pad, buffer=0)
        assert ac.lib.xdna_uapi_check_get_array(_buf(ac, blob)) == (0 if ok else -errno.EINVAL)
    assert ac.lib.xdna_uapi_elem_size(8, 160) == 8 and ac.lib.xdna_uapi_elem_size(4096, 160) == 160
    for export in (1, 0):
        for flags, point, pad, want in ((0, 0, 0, 0), (0, 5, 0, -errno.EINVAL), (1, 0, 0, 1), (3, 5, 0, 1), (1, 5, 0, 1),
                                        (2, 0, 0, 0), (2, 5, 0, -errno.EINVAL), (4, 0, 0, -errno.EINVAL),
                                        (0, 0, 1, -errno.EINVAL)):
            blob = T.DRM_SYNCOBJ_HANDLE.pack(handle=1, flags=flags, point=point, pad=pad)
            assert ac.lib.xdna_uapi_check_syncobj_handle(_buf(ac, blob), export) == want, (flags, point)
    for state in range(4):
        blob = T.ATTRIBUTE_STATE.pack(state=state)
        assert ac.lib.xdna_uapi_check_attr(_buf(ac, blob)) == (0 if state <= 1 else -errno.EINVAL)
