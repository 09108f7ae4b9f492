"""The PCI function on its own (docs/spec/device.md): complete from a chip name, and
``save()``/``restore()`` exact. A function restored into a fresh object, with fresh host
memory, answers the same op sequence byte for byte like the original: BAR bytes, config
space, host memory, raised and delivered interrupts, proxied responses."""

from __future__ import annotations

import pickle
import random
import struct
from dataclasses import dataclass, field
from typing import Any

import pytest

from xdna_emu import kernels as K
from xdna_emu.chips import chip_names, load_chip
from xdna_emu.clock import VirtualClock
from xdna_emu.fuzz.faults import FaultInjector
from xdna_emu.fw.messages import (
    HEAP_DEV_ADDR,
    LAYOUTS,
    MSG_HEADER,
    MSG_ID_MAGIC,
    TOMBSTONE,
    Opcode,
    SmuCmd,
    sz_ver,
)
from xdna_emu.irq import CallbackWires
from xdna_emu.pci.caps import MSIX_ENTRY_CTRL, MSIX_ENTRY_SIZE, MSIX_FLAGS
from xdna_emu.pci.function import FunctionState, Observer, PciFunction
from xdna_emu.testing.pyctx import Cmd, PyClient, PyContext
from xdna_emu.testing.pydriver import InProcessDevice, PyDriver

CHIPS = [c for c in ("npu4", "npu1") if c in chip_names()]
MiB = 1 << 20


class Log(Observer):
    """Everything a driver could see happen, in order."""

    def __init__(self) -> None:
        self.events: list[Any] = []

    def irq(self, vector: int) -> None:
        self.events.append(("raised", vector))

    def after_entry(self, what: str) -> None:
        self.events.append(("entry", what))


@dataclass
class Rig:
    """A function with list wires, a virtual clock and a log."""

    fn: PciFunction
    delivered: list[int] = field(default_factory=list)
    log: Log = field(default_factory=Log)

    @classmethod
    def make(cls, chip: str) -> Rig:
        delivered: list[int] = []
        fn = PciFunction(chip, wires=CallbackWires(delivered.append), clock=VirtualClock())
        rig = cls(fn, delivered)
        fn.observe(rig.log)
        return rig


@dataclass
class Job:
    """What the op generator needs to know about the context brought up before the save."""

    user_tail: int  # the x2i tail register of the context's user channel
    chain_opcode: Opcode
    chain: tuple[int, int, int]  # cmd-list address, size, count (written before the save)
    dst_va: int
    ctx_id: int
    health_va: int
    pasid: int


def bring_up(chip: str) -> tuple[Rig, Job]:
    """The reference driver's bring-up, one client context, one job run, one job hung."""
    rig = Rig.make(chip)
    drv = PyDriver(InProcessDevice(rig.fn.enable()))
    drv.bring_up()
    client = PyClient(drv, 1, heap_size=2 * MiB, chunk=MiB, proxied=True)
    ctx = PyContext(client)
    src, dst = client.alloc(64), client.alloc(64)
    src.view[:] = bytes(range(64))
    copy = Cmd(K.Desc(K.Kernel.COPY, K.DType.INT32, count=16), [src, dst])
    assert ctx.run([copy])[0] == 0
    opcode = ctx.chain_opcode()
    data = ctx.slot(opcode, Cmd(K.Desc(K.Kernel.NOP))) + ctx.slot(opcode, copy)
    bo = ctx.cmd_lists[3]
    bo.view[: len(data)] = data
    health = client.alloc(0x1000)

    def va(addr: int) -> int:  # a heap BO's address in the client's own address space
        return client.heap_va + addr - HEAP_DEV_ADDR

    return rig, Job(ctx.chan.x2i_tail_reg, opcode, (bo.addr, len(data), 2), va(dst.addr),
                    ctx.id, va(health.addr), client.pasid)


# -- a host that acts from what it reads in BAR memory (so it needs no state of its own) ----
Op = tuple[Any, ...]


def post(fn: PciFunction, tail_reg: int, opcode: int, payload: bytes, mid: int) -> list[Op]:
    """A mailbox message the driver's way, found from the channel's registers."""
    ch = next(c for c in fn.device.mailbox.channels.values() if c.x2i_tail_reg == tail_reg)
    tail = fn.regs.read_dev(ch.x2i_tail_reg)
    head = fn.regs.read_dev(ch.x2i_head_reg)
    pkt = MSG_HEADER.pack(len(payload), sz_ver(len(payload)), MSG_ID_MAGIC | mid, opcode) + payload
    ops: list[Op] = []
    if tail >= head and tail + len(pkt) > ch.ring_size - 4:
        ops.append(("shm_dev", ch.x2i_buf + tail, struct.pack("<I", TOMBSTONE)))
        tail = 0
    ops.append(("shm_dev", ch.x2i_buf + tail, pkt))
    ops.append(("w32_dev", ch.x2i_tail_reg, tail + len(pkt)))
    return ops


def consume(fn: PciFunction, tail_reg: int) -> list[Op]:
    """Ack the channel interrupt and take every response."""
    ch = next(c for c in fn.device.mailbox.channels.values() if c.x2i_tail_reg == tail_reg)
    return [("w32_dev", ch.intr_reg, 0), ("w32_dev", ch.i2x_head_reg, fn.regs.read_dev(ch.i2x_tail_reg))]


def next_ops(fn: PciFunction, job: Job, rng: random.Random, mgmt_tail: int) -> list[Op]:
    """One step of traffic, chosen by ``rng`` from what the function shows now."""
    kind = rng.randrange(10)
    mid = rng.randrange(256)
    if kind == 0:
        return post(fn, mgmt_tail, Opcode.GET_FIRMWARE_VERSION, bytes(4), mid)
    if kind == 1:
        lay = LAYOUTS[job.chain_opcode]
        addr, size, count = job.chain
        payload = (lay.req.pack(0, 0, addr, size, count) if job.chain_opcode == Opcode.CHAIN_EXEC_NPU
                   else lay.req.pack(addr, size, count))
        return post(fn, job.user_tail, job.chain_opcode, payload, mid)
    if kind == 2:
        return consume(fn, rng.choice((mgmt_tail, job.user_tail)))
    if kind == 3:
        return [("tick", rng.randrange(1, 10**7))]
    if kind == 4:
        lay = LAYOUTS[Opcode.GET_APP_HEALTH]
        return [("proxy", job.pasid, Opcode.GET_APP_HEALTH,
                 lay.req.pack(job.ctx_id, 0x1000, job.health_va))]
    if kind == 5:
        m = fn.chip.msix
        vec = rng.randrange(m.vectors)
        return [("w32", m.bar, m.table_offset + vec * MSIX_ENTRY_SIZE + MSIX_ENTRY_CTRL,
                 rng.randrange(2))]
    if kind == 6:
        hi = rng.choice((0x80, 0xC0))  # MSI-X enabled, function mask off or on
        return [("config", fn.config.msix_cap + MSIX_FLAGS + 1, bytes([hi]))]
    if kind == 7:
        return [("host", job.pasid, job.dst_va + 4 * rng.randrange(16), rng.randbytes(4))]
    if kind == 8:
        bar = rng.choice(sorted(fn.chip.bars))
        return [("w32", bar, rng.randrange(fn.chip.bars[bar].size + 64), rng.randrange(1 << 32))]
    return [("smu", rng.randrange(len(fn.chip.dpm_levels)))]


def apply(rig: Rig, op: Op) -> Any:
    fn = rig.fn
    verb, *a = op
    if verb == "w32":
        fn.mmio_write(*a)
    elif verb == "w32_dev":
        fn.mmio_write(*fn.chip.dev_to_bar(a[0]), a[1])
    elif verb == "shm_dev":
        fn.regs.span(a[0], len(a[1]))[:] = a[1]
    elif verb == "tick":
        fn.clock.advance(a[0])  # type: ignore[attr-defined]
        fn.poll()
    elif verb == "proxy":
        return fn.proxy(*a)
    elif verb == "config":
        fn.config_write(*a)
    elif verb == "host":
        pasid, addr, data = a
        m = fn.iommu.spaces[pasid].find(addr)
        memoryview(m.mem)[addr - m.address : addr - m.address + len(data)] = data  # type: ignore[union-attr]
    elif verb == "smu":
        for role, val in (("smu.resp", 0), ("smu.arg", a[0]), ("smu.cmd", SmuCmd.SET_SOFT_DPMLEVEL),
                          ("smu.intr", 0), ("smu.intr", 1)):
            fn.mmio_write(*fn.regs.loc(role), val)
    return None


def observe(rig: Rig) -> dict[str, Any]:
    fn = rig.fn
    return {
        "bars": {i: bytes(b) for i, b in fn.regs.bytes.items()},
        "config": bytes(fn.config.data),
        "host": {(p, m.address): bytes(m.mem) for p, s in fn.iommu.spaces.items() for m in s.maps},
        "delivered": list(rig.delivered),
        "events": list(rig.log.events),
        "status": fn.status(),
        "stats": (dict(fn.stats), dict(fn.msix.stats)),
        "clock": fn.clock.now_ns(),
    }


def run(rig: Rig, ops: list[Op]) -> list[Any]:
    return [apply(rig, op) for op in ops]


@pytest.mark.parametrize("chip", CHIPS)
def test_function_from_a_chip_name_is_a_complete_device(chip: str) -> None:
    rig = Rig.make(chip)
    PyDriver(InProcessDevice(rig.fn.enable())).bring_up()
    assert rig.fn.status()["firmware"] is not None
    # MSI-X is on after enable(): the mgmt vector was delivered through the wires
    assert 0 in rig.delivered and ("raised", 0) in rig.log.events


@pytest.mark.parametrize("chip", CHIPS)
@pytest.mark.parametrize("seed", [1, 2])
def test_restored_function_behaves_byte_for_byte_like_the_original(chip: str, seed: int) -> None:
    orig, job = bring_up(chip)
    mgmt_tail = orig.fn.device.mailbox.channels[0].x2i_tail_reg
    # a late response (delayed work as data) and a hung job are part of the saved state
    inj = FaultInjector()
    inj.install(orig.fn.device)
    inj.arm("late", chan=0, arg=3)
    run(orig, post(orig.fn, mgmt_tail, Opcode.GET_FIRMWARE_VERSION, bytes(4), 7))
    inj.device.mailbox.interposer = None
    assert orig.fn.next_deadline_ns() is not None
    run(orig, consume(orig.fn, mgmt_tail))
    for i in range(150):  # more responses than the i2x ring holds: a backlog in the firmware
        run(orig, post(orig.fn, mgmt_tail, Opcode.GET_FIRMWARE_VERSION, bytes(4), i))
    assert orig.fn.backlogged()
    state = orig.fn.save()
    state = pickle.loads(pickle.dumps(state))  # plain data: no closures, no live objects
    orig.delivered.clear()
    orig.log.events.clear()

    rng = random.Random(seed)
    ops: list[Op] = []
    results = []
    for _ in range(150):
        step = next_ops(orig.fn, job, rng, mgmt_tail)
        ops += step
        results += run(orig, step)
    want = observe(orig)

    copy = Rig.make(chip)
    copy.fn.restore(state)
    got_results = run(copy, ops)
    got = observe(copy)
    assert got_results == results
    assert got == want, [k for k in want if got[k] != want[k]]
    assert copy.fn.save() == orig.fn.save()
    assert any(e == ("raised", 0) for e in want["events"])  # the run did reach the firmware
    assert want["status"]["counters"]["jobs_completed"] > 1


def test_restore_in_place_undoes_a_different_future() -> None:
    rig, job = bring_up("npu4")
    state = rig.fn.save()
    rig.fn.reset()
    rig.fn.config.reset()
    rig.fn.regs.bytes[2][:16] = b"\xff" * 16
    rig.fn.restore(state)
    assert rig.fn.save() == state
    assert rig.fn.device.ctx is not None and job.ctx_id in rig.fn.device.ctx.contexts


def test_restore_refuses_another_chip_or_version() -> None:
    state = Rig.make("npu4").fn.save()
    other = next((c for c in CHIPS if c != "npu4"), None)
    if other is not None:
        with pytest.raises(ValueError, match="cannot be restored"):
            Rig.make(other).fn.restore(state)
    old = FunctionState(**{**vars(state), "versions": (("FunctionState", 0),)})
    with pytest.raises(ValueError, match="versions"):
        Rig.make("npu4").fn.restore(old)


def test_driver_only_registers_refuse_other_requesters() -> None:
    fn = PciFunction("npu4")
    fn.config_write(4, b"\x06\x00", requester=1)  # requester 1 enables mastering: the driver
    assert fn.driver == 1
    bar, off = fn.regs.loc("smu.intr")  # a trapped register of the driver's
    fn.mmio_write(bar, off, 1, requester=2)
    assert fn.regs.read(bar, off) == 0 and fn.stats["foreign_writes"] == 1
    fn.mmio_write(bar, off, 1, requester=1)
    assert fn.regs.read(bar, off) == 1
    fn.mmio_write(99, 0, 1)
    assert fn.stats["bad_writes"] == 1
    fn.release(1, 1)  # the driver went away: FLR, nobody owns the function
    assert fn.driver is None and not fn.config.bus_master and fn.regs.read(bar, off) == 0


def test_bars_may_be_supplied_by_the_caller() -> None:
    chip = load_chip("npu4")
    mem = {i: bytearray(b.size) for i, b in chip.bars.items()}
    fn = PciFunction(chip, bars=mem)
    bar, off = fn.regs.loc("smu.arg")
    fn.mmio_write(bar, off, 0x1234)
    assert struct.unpack_from("<I", mem[bar], off)[0] == 0x1234
    with pytest.raises(ValueError):
        PciFunction(chip, bars={0: bytearray(16)})
