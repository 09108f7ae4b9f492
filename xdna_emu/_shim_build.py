"""cffi build script for the driver shim (``xdna_emu._shim``).

The chip tables are generated from the TOML files first (as the driver compiles in its
``npuN_regs.c``), the firmware interface headers from the family tables in
``xdna_emu/fw/iface/`` and the control-protocol header from ``protocol.py``; then the C sources in ``csrc/`` are compiled against the public header,
whose CDEF section is the cffi declaration list, so the two cannot drift.
"""

from __future__ import annotations

import sys
from pathlib import Path

from cffi import FFI

ROOT = Path(__file__).resolve().parent.parent
CSRC = ROOT / "csrc"
HEADER = CSRC / "xdna_shim.h"
#: the accel DRM files (docs/spec/uapi.md §5): the fuzz target opens one in its own process
#: and issues ioctls through the decoder, as the interposer does (docs/spec/fuzzing.md §12)
ACCEL_HEADER = CSRC / "uapi" / "accel.h"
SOURCES = ("chips.c", "core.c", "event.c", "proto.c", "pci.c", "smu.c", "psp.c", "mailbox.c",
           "message.c", "async.c", "hw.c", "pm.c", "monitor.c", "bo.c", "hwctx.c", "parse.c",
           "api.c", "dpt.c", "aie4_psp.c", "aie4_hw.c", "aie4_ctx.c", "lockdep.c", "bench.c",
           "uapi/accel.c", "uapi/argcheck.c", "uapi/registry.c")


def _cdef_text() -> str:
    """The declarations between the CDEF markers of the public header and the accel one."""
    out = []
    for header in (HEADER, ACCEL_HEADER):
        text = header.read_text()
        try:
            out.append(text.split("/* CDEF-BEGIN */", 1)[1].split("/* CDEF-END */", 1)[0])
        except IndexError:
            raise RuntimeError(f"{header}: CDEF markers missing") from None
    return "\n".join(out)


def _generate() -> None:
    sys.path.insert(0, str(ROOT))
    try:
        from xdna_emu import protogen, uapigen
        from xdna_emu.chips import cgen
        from xdna_emu.fw.iface import cgen as fw_cgen
    finally:
        sys.path.pop(0)
    cgen.write(CSRC / "generated")
    fw_cgen.write(CSRC / "generated")
    protogen.write(CSRC / "generated")
    uapigen.write(CSRC / "generated")


_generate()

ffibuilder = FFI()
ffibuilder.cdef(_cdef_text())
ffibuilder.set_source(
    "xdna_emu._shim",
    '#include "xdna_shim.h"\n#include "uapi/accel.h"\n',
    sources=[str((CSRC / s).relative_to(ROOT)) for s in SOURCES],
    include_dirs=[str(CSRC)],
    define_macros=[("_GNU_SOURCE", "1")],
    extra_compile_args=["-std=gnu11", "-O2", "-Wall", "-Wextra",
                        "-Werror=implicit-function-declaration", "-pthread"],
    extra_link_args=["-pthread"],
)  # fmt: skip

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
