"""The hook through which a fuzzer's checker, a trace recorder or a test sees a PCI function
(docs/spec/device.md §3). Its own module, free of the device model, so that importing it
(the trace recorder does, and every client that traces its shim calls imports that) costs
nothing."""

from __future__ import annotations

from typing import Any

__all__ = ["Observer"]


class Observer:
    """Sees what happens to a function (a fuzzer's checker, a trace recorder, a raised-
    vector log). Methods may raise: the exception leaves the entry that called them."""

    def before_write(self, bar: int, offset: int, value: int) -> Any:
        """A BAR write is about to be applied; the return value goes to after_write."""
        return None

    def after_write(self, token: Any) -> None:
        """The write is applied, its side effects (and interrupts) done."""

    def irq(self, vector: int) -> None:
        """The device raised ``vector`` (before MSI-X masking decides on delivery)."""

    def after_entry(self, what: str) -> None:
        """A ``poll``, ``proxy`` or ``reset`` returned (or raised)."""

    def dma_mapped(self, pasid: int, address: int, size: int, perm: int, mem: Any) -> None:
        """A host buffer was mapped (``mem`` is None for an fd-backed mapping)."""

    def dma_unmapped(self, pasid: int, address: int, size: int) -> None:
        """A mapping went away through :meth:`PciFunction.dma_unmap`."""
