"""Interrupts held for a batch of writes: one per vector, in order, delivered at release
(docs/spec/device.md §3); the daemon answers a batch of completions with one interrupt."""

from __future__ import annotations

from xdna_emu.clock import VirtualClock
from xdna_emu.irq import CallbackWires
from xdna_emu.pci.function import Observer, PciFunction


class Raised(Observer):
    def __init__(self) -> None:
        self.vectors: list[int] = []

    def irq(self, vector: int) -> None:
        self.vectors.append(vector)


def _fn() -> tuple[PciFunction, list[int], Raised]:
    delivered: list[int] = []
    fn = PciFunction("npu4", wires=CallbackWires(delivered.append), clock=VirtualClock()).enable()
    seen = Raised()
    fn.observe(seen)
    delivered.clear()
    return fn, delivered, seen


def test_held_vectors_are_delivered_once_each_in_order_at_release() -> None:
    fn, delivered, seen = _fn()
    fn.hold_irqs()
    for v in (3, 1, 3, 3, 2, 1):
        fn._raise_irq(v)  # noqa: SLF001 - what the device's blocks call
    assert delivered == [] and seen.vectors == []
    fn.hold_irqs()  # holding twice is one hold
    fn.release_irqs()
    assert delivered == [3, 1, 2] and seen.vectors == [3, 1, 2]
    fn._raise_irq(1)  # noqa: SLF001
    assert delivered == [3, 1, 2, 1]  # released: straight through again
    fn.release_irqs()  # nothing held: nothing happens
    assert delivered == [3, 1, 2, 1]


def test_daemon_answers_a_batch_with_one_interrupt(xdna_emulator, xdna_firmware_dir) -> None:  # noqa: ANN001
    """Four jobs queued before the daemon wakes complete with fewer interrupts than jobs."""
    import os

    from xdna_emu.control import ControlClient
    from xdna_emu.runtime import Device
    from xdna_emu.testing.wait import stop_process

    def delivered() -> int:
        with ControlClient(xdna_emulator.socket) as cl:
            cl.version()
            return int(cl.status()["msix"]["delivered"])

    with Device.open(xdna_emulator.socket, firmware_path=xdna_firmware_dir) as dev:
        ctx = dev.context()
        cmds = [ctx.command("nop") for _ in range(4)]
        for c in cmds:
            ctx.submit(c).wait(5)
        before = delivered()
        stop_process(xdna_emulator.pid)  # the four submissions pile up in the log
        try:
            runs = [ctx.submit(c) for c in cmds]
        finally:
            os.kill(xdna_emulator.pid, 18)  # SIGCONT
        assert [r.wait(5) for r in runs] == ["completed"] * 4
        after = delivered()
    assert after - before < 4
