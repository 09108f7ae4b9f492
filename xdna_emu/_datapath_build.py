"""cffi build script for the daemon's C job path (``xdna_emu._datapath``, docs/spec/jobs.md §7).

Its headers are generated first, from the same single sources as the shim's: the AIE2
firmware interface (``xdna_emu/fw/iface/``), the control protocol (``protocol.py``) and the
kernel descriptor (``kernels.py``, through :mod:`xdna_emu.kernelgen`). The declarations
between the CDEF markers of ``csrc/datapath/datapath.h`` are cffi's declaration list
(:mod:`xdna_emu._cbuild`, shared with the shim's build).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a file by cffi
try:
    from xdna_emu import _cbuild
finally:
    sys.path.pop(0)

_cbuild.generate("fw.iface.cgen", "protogen", "kernelgen")

ffibuilder = _cbuild.builder("xdna_emu._datapath", (_cbuild.CSRC / "datapath" / "datapath.h",),
                             ("datapath/datapath.c", "datapath/thread.c"), ("-pthread",),
                             extra_link_args=["-pthread"])

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
