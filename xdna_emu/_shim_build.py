"""cffi build script for the driver shim (``xdna_emu._shim``).

The chip tables are generated from the TOML files first (as the driver compiles in its
``npuN_regs.c``), the firmware interface headers from the family tables in
``xdna_emu/fw/iface/``, the control-protocol header from ``protocol.py`` and the UAPI
header from ``uapi_table.py``; then the C sources in ``csrc/`` are compiled against the
public header, whose CDEF section is the cffi declaration list, so the two cannot drift
(:mod:`xdna_emu._cbuild`, shared with the C job path's build).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a file by cffi
try:
    from xdna_emu import _cbuild
finally:
    sys.path.pop(0)

HEADER = _cbuild.CSRC / "xdna_shim.h"
#: the accel DRM files (docs/spec/uapi.md §5): the fuzz target opens one in its own process
#: and issues ioctls through the decoder, as the interposer does (docs/spec/fuzzing.md §12)
ACCEL_HEADER = _cbuild.CSRC / "uapi" / "accel.h"
SOURCES = ("chips.c", "core.c", "event.c", "proto.c", "pci.c", "smu.c", "psp.c", "mailbox.c",
           "message.c", "async.c", "hw.c", "pm.c", "monitor.c", "bo.c", "hwctx.c", "parse.c",
           "api.c", "dpt.c", "aie4_psp.c", "aie4_hw.c", "aie4_ctx.c", "lockdep.c", "bench.c",
           "snapshot.c", "uapi/accel.c", "uapi/argcheck.c", "uapi/registry.c")

_cbuild.generate("chips.cgen", "fw.iface.cgen", "protogen", "uapigen")

ffibuilder = _cbuild.builder("xdna_emu._shim", (HEADER, ACCEL_HEADER), SOURCES, ("-pthread",),
                             define_macros=[("_GNU_SOURCE", "1")], extra_link_args=["-pthread"])

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
