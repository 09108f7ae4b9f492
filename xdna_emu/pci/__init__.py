"""The NPU's PCI function: config space and capabilities."""

from .caps import PciCapId, PciExtCapId, find_cap, walk_caps, walk_ext_caps
from .config import PciConfigSpace

__all__ = ["PciCapId", "PciConfigSpace", "PciExtCapId", "find_cap", "walk_caps", "walk_ext_caps"]
