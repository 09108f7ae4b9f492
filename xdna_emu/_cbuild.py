"""What the two cffi build scripts share (``_shim_build.py``, ``_datapath_build.py``).

Each extension's headers are generated first from their single Python sources (the
generators' ``write``, docs/spec/firmware.md §10); its cffi declaration list is the text
between the CDEF markers of its public headers, so declarations and headers cannot drift;
and both compile with the same C dialect and warnings.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from cffi import FFI

ROOT = Path(__file__).resolve().parent.parent
CSRC = ROOT / "csrc"
#: Compile flags of every C extension (a build script adds its own, e.g. ``-pthread``).
CFLAGS = ("-std=gnu11", "-O2", "-Wall", "-Wextra", "-Werror=implicit-function-declaration")


def generate(*generators: str) -> None:
    """Run each generator module's ``write`` (``"protogen"``, ``"chips.cgen"``, ...) into
    ``csrc/generated``."""
    for name in generators:
        importlib.import_module(f"{__package__}.{name}").write(CSRC / "generated")


def cdef_text(*headers: Path) -> str:
    """The declarations between the CDEF markers of ``headers``, in order."""
    out = []
    for header in headers:
        try:
            out.append(header.read_text().split("/* CDEF-BEGIN */", 1)[1]
                       .split("/* CDEF-END */", 1)[0])
        except IndexError:
            raise RuntimeError(f"{header}: CDEF markers missing") from None
    return "\n".join(out)


def builder(module: str, headers: tuple[Path, ...], sources: tuple[str, ...],
            cflags: tuple[str, ...] = (), **kw: object) -> FFI:
    """The cffi builder of ``module``: declarations from ``headers``, which it includes, and
    ``sources`` (paths under ``csrc/``) compiled with :data:`CFLAGS` plus ``cflags``."""
    ffi = FFI()
    ffi.cdef(cdef_text(*headers))
    ffi.set_source(
        module,
        "".join(f'#include "{h.relative_to(CSRC)}"\n' for h in headers),
        sources=[str((CSRC / s).relative_to(ROOT)) for s in sources],
        include_dirs=[str(CSRC)],
        extra_compile_args=[*CFLAGS, *cflags],
        **kw,
    )  # fmt: skip
    return ffi
