"""xdna-emu: an open emulator of AMD XDNA NPUs (Ryzen AI) for driver and runtime testing."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

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
