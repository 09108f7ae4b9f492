"""xdna-emu: an open emulator of AMD XDNA NPUs (Ryzen AI) for driver and runtime testing."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
#: Kept equal to Requires-Python in pyproject.toml, which is what pip refuses on.
MIN_PYTHON = (3, 11)


def _check_python(version: tuple[int, ...] = tuple(sys.version_info)) -> None:
    """One clear line instead of a SyntaxError or missing-module traceback deep inside."""
    if tuple(version[:2]) < MIN_PYTHON:
        have = ".".join(str(v) for v in version[:3])
        raise ImportError(f"xdna-emu needs Python {MIN_PYTHON[0]}.{MIN_PYTHON[1]} or later; "
                          f"this is Python {have}")


_check_python()

if TYPE_CHECKING:
    from .chips import Chip, load_chip
    from .discover import DiscoveredDevice, discover
    from .emulator import Emulator, EmulatorError

# Lazy re-exports keep `import xdna_emu` cheap (the daemon start-up path imports little).
_EXPORTS = {
    "Emulator": ".emulator", "EmulatorError": ".emulator", "discover": ".discover",
    "DiscoveredDevice": ".discover", "load_chip": ".chips", "Chip": ".chips",
}  # fmt: skip


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(name)


__all__ = ["Chip", "DiscoveredDevice", "Emulator", "EmulatorError", "discover", "load_chip"]
