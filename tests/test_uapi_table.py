"""The UAPI table (xdna_emu/uapi_table.py) against the ABI facts, its C header and its docs.

Sizes and offsets are hand-checked against the driver's layout facts (docs/spec/uapi.md
§2); the generated header is compiled and every size, offset and ioctl number in it is
read back from the compiler, so the table, the header and C's own layout rules agree.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from xdna_emu import uapi_table as T
from xdna_emu import uapigen

CC = shutil.which("gcc") or shutil.which("cc")


@pytest.mark.parametrize("layout,size", [
    (T.CREATE_BO, 32), (T.EXEC_CMD, 56), (T.GET_BO_INFO, 48), (T.WAIT_CMD, 16),
    (T.HWCTX_ENTRY, 160), (T.CREATE_HWCTX, 56), (T.DESTROY_HWCTX, 8), (T.CONFIG_HWCTX, 24),
    (T.SYNC_BO, 24), (T.GET_INFO, 16), (T.GET_ARRAY, 24), (T.SET_STATE, 16),
    (T.QUERY_AIE_METADATA, 64), (T.QUERY_CLOCK_METADATA, 48), (T.QUERY_SENSOR, 168),
    (T.QUERY_HWCTX, 64), (T.BO_USAGE, 32), (T.VA_TBL, 8), (T.CONFIG_CU, 8),
    (T.FW_BUFFER_METADATA, 16), (T.QOS_INFO, 32), (T.DRM_VERSION, 64), (T.DRM_GEM_CLOSE, 8),
    (T.DRM_PRIME_HANDLE, 12), (T.DRM_SYNCOBJ_TIMELINE_ARRAY, 24), (T.DRM_SYNCOBJ_TRANSFER, 32),
])  # fmt: skip
def test_known_sizes(layout: T.Layout, size: int) -> None:
    assert layout.size == size
    assert layout.codec.size == size


def test_padding_follows_natural_alignment() -> None:
    # u32 handle; u32 pad; u64 map_offset: no hole; the u16 counts of the tile metadata
    # start the nested struct at 16 (aligned 2) and the struct ends unpadded at 64
    assert T.GET_BO_INFO.offsets == {"ext": 0, "ext_flags": 8, "handle": 16, "pad": 20,
                                     "map_offset": 24, "vaddr": 32, "xdna_addr": 40}
    assert T.QUERY_AIE_METADATA.offsets["core"] == 16
    assert T.QUERY_AIE_METADATA.offsets["shim"] == 48
    assert T.HWCTX_ENTRY.offsets["pid"] == 16 and T.HWCTX_ENTRY.offsets["name"] == 144
    # drm_version: three ints then a hole of 4 before the first size_t
    assert T.DRM_VERSION.offsets["name_len"] == 16
    assert T.QUERY_SENSOR.offsets["unitm"] == 160


def test_ioctl_numbers() -> None:
    assert T.ioctl("AMDXDNA_CREATE_HWCTX").number == 0xC0386440
    assert T.ioctl("AMDXDNA_CREATE_BO").number == 0xC0206443
    assert T.ioctl("AMDXDNA_WAIT_CMD").number == 0xC0106449
    assert T.ioctl("AMDXDNA_GET_ARRAY").number == 0xC018644A
    assert T.ioctl("VERSION").number == 0xC0406400
    assert T.ioctl("GEM_CLOSE").number == 0x40086409
    assert [i.nr - 0x40 for i in T.AMDXDNA_IOCTLS] == list(range(11))


def test_codec_round_trip() -> None:
    raw = T.EXEC_CMD.pack(hwctx=3, type=0, cmd_handles=7, args=0x1000, cmd_count=1,
                          arg_count=2, seq=9)
    assert len(raw) == 56
    back = T.EXEC_CMD.unpack(raw)
    assert (back["hwctx"], back["cmd_handles"], back["arg_count"], back["seq"]) == (3, 7, 2, 9)
    ent = T.HWCTX_ENTRY.unpack(T.HWCTX_ENTRY.pack(pid=-5, name=b"prog"))
    assert ent["pid"] == -5 and ent["name"].rstrip(b"\0") == b"prog"
    md = T.QUERY_AIE_METADATA.unpack(T.QUERY_AIE_METADATA.pack(cols=5, core={"row_count": 4}))
    assert md["cols"] == 5 and md["core"]["row_count"] == 4
    with pytest.raises(KeyError):
        T.CREATE_BO.pack(nosuch=1)


def test_docs_are_current() -> None:
    text = uapigen.DOC.read_text()
    assert uapigen.docs_section() in text, "run `python3 -m xdna_emu.uapigen --docs`"


@pytest.mark.skipif(CC is None, reason="no C compiler")
def test_header_compiles_and_matches(tmp_path: Path) -> None:
    hdr = uapigen.write(tmp_path)
    lines = ['#include <stdio.h>', f'#include "{hdr}"', "int main(void) {"]
    for lay in T.all_layouts():
        lines.append(f'printf("{lay.name} %zu\\n", sizeof(struct {lay.name}));')
        for name in lay.offsets:
            lines.append(f'printf("{lay.name}.{name} %zu\\n", offsetof(struct {lay.name}, {name}));')
    for i in T.IOCTLS:
        lines.append(f'printf("ioctl.{i.name} %lu\\n", (unsigned long)DRM_IOCTL_{i.name});')
    lines += ["return 0;", "}"]
    src = tmp_path / "probe.c"
    src.write_text("\n".join(lines))
    exe = tmp_path / "probe"
    subprocess.run([CC, "-std=c11", "-Wall", "-Werror", "-o", str(exe), str(src)], check=True)
    got = dict(ln.rsplit(" ", 1) for ln in subprocess.run(
        [str(exe)], check=True, capture_output=True, text=True).stdout.splitlines())
    for lay in T.all_layouts():
        assert int(got[lay.name]) == lay.size, lay.name
        for name, off in lay.offsets.items():
            assert int(got[f"{lay.name}.{name}"]) == off, f"{lay.name}.{name}"
    for i in T.IOCTLS:
        assert int(got[f"ioctl.{i.name}"]) == i.number, i.name
