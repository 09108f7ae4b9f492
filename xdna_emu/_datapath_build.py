"""cffi build script for the daemon's C job path (``xdna_emu._datapath``, docs/spec/jobs.md §7).

Its headers are generated first, from the same single sources as the shim's: the AIE2
firmware interface (``xdna_emu/fw/iface/``), the control protocol (``protocol.py``) and the
kernel descriptor (``kernels.py``, through :mod:`xdna_emu.kernelgen`). The declarations
between the CDEF markers of ``csrc/datapath/datapath.h`` are cffi's declaration list.
"""

from __future__ import annotations

import sys
from pathlib import Path

from cffi import FFI

ROOT = Path(__file__).resolve().parent.parent
CSRC = ROOT / "csrc"
HEADER = CSRC / "datapath" / "datapath.h"
SOURCES = ("datapath/datapath.c", "datapath/thread.c")


def _generate() -> None:
    sys.path.insert(0, str(ROOT))
    try:
        from xdna_emu import kernelgen, protogen
        from xdna_emu.fw.iface import cgen as fw_cgen
    finally:
        sys.path.pop(0)
    fw_cgen.write(CSRC / "generated")
    protogen.write(CSRC / "generated")
    kernelgen.write(CSRC / "generated")


_generate()

ffibuilder = FFI()
ffibuilder.cdef(HEADER.read_text().split("/* CDEF-BEGIN */", 1)[1].split("/* CDEF-END */", 1)[0])
ffibuilder.set_source(
    "xdna_emu._datapath",
    '#include "datapath/datapath.h"\n',
    sources=[str((CSRC / s).relative_to(ROOT)) for s in SOURCES],
    include_dirs=[str(CSRC)],
    extra_compile_args=["-std=gnu11", "-O2", "-Wall", "-Wextra",
                        "-Werror=implicit-function-declaration", "-pthread"],
    extra_link_args=["-pthread"],
)  # fmt: skip

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
