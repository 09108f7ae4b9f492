"""cffi_modules is not a [project] key, so the shim extension is declared here.

The wheel is tagged abi3 (cp311) because cffi builds the extension against the limited API,
and it carries the shim's public C header as ``xdna_emu/include/xdna_shim.h`` so C code can
be compiled against the same declarations the Python wrapper uses.
"""

import shutil
import sys
from pathlib import Path

if sys.version_info < (3, 11):  # noqa: UP036 - pip refuses through Requires-Python; this catches direct builds
    sys.exit(f"xdna-emu needs Python 3.11 or later; this is {sys.version.split()[0]}")

from setuptools import setup  # noqa: E402
from setuptools.command.build_py import build_py  # noqa: E402

HEADER = Path("csrc/xdna_shim.h")


class BuildPyWithHeader(build_py):
    """Copies the public header into the package so the wheel ships it."""

    def run(self) -> None:
        super().run()
        if not self.editable_mode:
            dest = Path(self.build_lib) / "xdna_emu" / "include"
            dest.mkdir(parents=True, exist_ok=True)
            shutil.copy2(HEADER, dest / HEADER.name)


setup(
    cffi_modules=["xdna_emu/_shim_build.py:ffibuilder"],
    cmdclass={"build_py": BuildPyWithHeader},
    options={"bdist_wheel": {"py_limited_api": "cp311"}},
)
