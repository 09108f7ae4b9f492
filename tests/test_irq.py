"""MSI-X delivery over real eventfds, with masking and the PBA in BAR memory, on a whole
PciFunction (the daemon's setup: eventfd wires, config space, trapped table writes)."""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator

import pytest

from xdna_emu.chips import chip_names, load_chip
from xdna_emu.irq import EventfdWires
from xdna_emu.pci.function import PciFunction

CHIPS = [n for n in chip_names() if load_chip(n).bars]


class Rig:
    def __init__(self, name: str) -> None:
        self.chip = load_chip(name)
        self.fn = PciFunction(self.chip, wires=EventfdWires(self.chip.msix.vectors))
        self.cfg = self.fn.config
        self.bar = self.fn.region(self.chip.msix.bar)
        self.irq = self.fn.msix
        self.n = self.chip.msix.vectors
        self.fds = [os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC) for _ in range(self.n)]

    def give(self, fds: list[int]) -> list[int]:
        """Duplicates to hand over: the controller owns (and closes) what it is given."""
        return [os.dup(fd) for fd in fds]

    def close(self) -> None:
        self.irq.clear_eventfds()
        for fd in self.fds:
            try:
                os.close(fd)
            except OSError:
                pass

    def set_ctrl(self, enable: bool, mask: bool = False) -> None:
        hi = (0x80 if enable else 0) | (0x40 if mask else 0)
        self.cfg.write(self.cfg.msix_cap + 3, bytes([hi]))

    def ctrl_off(self, vec: int) -> int:
        return self.chip.msix.table_offset + 16 * vec + 12

    def host_write_ctrl(self, vec: int, value: int) -> None:
        """What the host does: a store into the shared table that is trapped (write log)."""
        self.fn.mmio_write(self.chip.msix.bar, self.ctrl_off(vec), value)

    def pba_bit(self, vec: int) -> bool:
        return bool(self.bar[self.chip.msix.pba_offset + vec // 8] >> (vec % 8) & 1)

    def count(self, vec: int) -> int:
        try:
            return os.eventfd_read(self.fds[vec])
        except BlockingIOError:
            return 0


@pytest.fixture(params=CHIPS)
def rig(request) -> Iterator[Rig]:
    r = Rig(request.param)
    yield r
    r.close()


def test_reset_state_in_bar_memory(rig: Rig) -> None:
    for vec in range(rig.n):
        assert struct.unpack_from("<I", rig.bar, rig.ctrl_off(vec))[0] == 1
        assert not rig.pba_bit(vec)
    rig.bar[rig.ctrl_off(0)] = 0
    rig.bar[rig.chip.msix.pba_offset] = 0xFF
    rig.irq.reset()
    assert rig.bar[rig.ctrl_off(0)] == 1 and rig.bar[rig.chip.msix.pba_offset] == 0


def test_delivery_when_enabled_and_unmasked(rig: Rig) -> None:
    rig.irq.set_eventfds(0, rig.give(rig.fds))
    rig.set_ctrl(enable=True)
    last = rig.n - 1
    for vec in (0, last):
        rig.host_write_ctrl(vec, 0)
        rig.irq.raise_vector(vec)
        rig.irq.raise_vector(vec)
        assert rig.count(vec) == 2
        assert not rig.pba_bit(vec)
    assert all(rig.count(v) == 0 for v in range(1, last))
    assert rig.irq.stats["delivered"] == 4 and rig.irq.stats["pended"] == 0


def test_masked_vector_pends_then_delivers_on_unmask(rig: Rig) -> None:
    rig.irq.set_eventfds(0, rig.give(rig.fds))
    rig.set_ctrl(enable=True)
    vec = rig.n - 1  # in the last PBA byte for every chip
    rig.irq.raise_vector(vec)
    assert rig.count(vec) == 0 and rig.pba_bit(vec)
    assert rig.irq.stats["pended"] == 1
    rig.host_write_ctrl(vec, 1)  # still masked: stays pending
    assert rig.count(vec) == 0 and rig.pba_bit(vec)
    rig.host_write_ctrl(vec, 0)
    assert rig.count(vec) == 1 and not rig.pba_bit(vec)
    rig.host_write_ctrl(vec, 0)  # no second delivery
    assert rig.count(vec) == 0


def test_function_mask_and_enable_via_config(rig: Rig) -> None:
    rig.irq.set_eventfds(0, rig.give(rig.fds))
    rig.host_write_ctrl(2, 0)
    rig.irq.raise_vector(2)  # MSI-X disabled: pending
    assert rig.pba_bit(2) and rig.count(2) == 0
    rig.set_ctrl(enable=True, mask=True)  # enabled but function-masked: still pending
    assert rig.pba_bit(2) and rig.count(2) == 0
    rig.irq.raise_vector(2)
    rig.set_ctrl(enable=True, mask=False)  # listener -> config_changed delivers once
    assert rig.count(2) == 1 and not rig.pba_bit(2)


def test_pending_until_eventfd_installed(rig: Rig) -> None:
    rig.set_ctrl(enable=True)
    rig.host_write_ctrl(1, 0)
    rig.irq.raise_vector(1)
    assert rig.pba_bit(1)
    rig.irq.set_eventfds(1, rig.give(rig.fds[1:3]))
    assert rig.count(1) == 1 and not rig.pba_bit(1)
    given = rig.irq.wires.fd(1)  # type: ignore[attr-defined]
    rig.irq.clear_eventfds()
    with pytest.raises(OSError):
        os.fstat(given)  # the controller closed what it owned
    rig.irq.raise_vector(1)
    assert rig.count(1) == 0 and rig.pba_bit(1)


def test_out_of_range_vectors_ignored(rig: Rig) -> None:
    rig.irq.set_eventfds(0, rig.give(rig.fds))
    rig.set_ctrl(enable=True)
    for vec in (-1, rig.n, 10**9, "3"):
        rig.irq.raise_vector(vec)  # type: ignore[arg-type]
    assert rig.irq.stats["dropped"] == 4 and rig.irq.stats["delivered"] == 0
    assert all(rig.count(v) == 0 for v in range(rig.n))
    p0 = rig.chip.msix.pba_offset
    assert rig.bar[p0 : p0 + 8] == bytes(8)


def test_set_eventfds_range_checked(rig: Rig) -> None:
    with pytest.raises(ValueError):
        rig.irq.set_eventfds(rig.n - 1, rig.fds[:2])
    with pytest.raises(ValueError):
        rig.irq.set_eventfds(-1, rig.fds[:1])


def test_closed_eventfd_counts_as_dropped(rig: Rig) -> None:
    fd = os.eventfd(0)
    rig.irq.set_eventfds(0, [fd])
    os.close(fd)  # closed behind the controller's back
    rig.set_ctrl(enable=True)
    rig.host_write_ctrl(0, 0)
    rig.irq.raise_vector(0)  # must not raise
    assert rig.irq.stats["dropped"] == 1


def test_is_table(rig: Rig) -> None:
    m = rig.chip.msix
    assert rig.irq.is_table(m.bar, m.table_offset)
    assert rig.irq.is_table(m.bar, m.table_offset + 16 * m.vectors - 1)
    assert not rig.irq.is_table(m.bar, m.table_offset + 16 * m.vectors) or (
        m.pba_offset == m.table_offset + 16 * m.vectors
    )
    assert rig.irq.is_table(m.bar, m.pba_offset)
    assert not rig.irq.is_table(m.bar, m.table_offset - 4)
    assert not rig.irq.is_table((m.bar + 2) % 6, m.table_offset)
