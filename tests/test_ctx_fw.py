"""Firmware side of hardware contexts, host buffers and jobs (docs/spec/jobs.md), in-process."""

from __future__ import annotations

import errno
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xdna_emu import kernels as K
from xdna_emu.chips import chip_names, load_chip
from xdna_emu.fw.image import build_image
from xdna_emu.fw.messages import (
    AIE_ERROR_ENTRY,
    APP_HEALTH,
    APP_HEALTH_SIZE,
    ASYNC_EVENT_HDR,
    COL_STATUS,
    COL_STATUS_FIELDS,
    FATAL_ERROR_INFO,
    HEAP_DEV_ADDR,
    LAYOUTS,
    NO_CONTEXT,
    SLOT_NPU,
    TELEMETRY_CTX,
    TELEMETRY_HEALTH,
    TELEMETRY_VERSION,
    TXN_OP_NONE,
    ColState,
    CoreStatus,
    Opcode,
    PspCmd,
    Status,
    TelemetryType,
)
from xdna_emu.iommu import DMA_READ, DMA_WRITE
from xdna_emu.testing.pyctx import Bo, Cmd, CreateError, PyClient, PyContext
from xdna_emu.testing.pydriver import PyDriver, make_test_device

CHIPS = [c for c in ("npu4", "npu1") if c in chip_names()]
MiB = 1 << 20
INV = Status.APP_ERT_INVALID_INSTRUCTION
FAULT = Status.AIE_ACCESS_ERROR


def _setup(chip: str, image: bytes | None = None, pasid: int = 1,
           heap: int = 2 * MiB, chunk: int = MiB) -> tuple[PyDriver, PyClient]:
    d = PyDriver(make_test_device(chip))
    d.bring_up(image, async_events=False)
    return d, PyClient(d, pasid, heap_size=heap, chunk=chunk)


def _counters(d: PyDriver) -> dict[str, int]:
    return d.device.status()["counters"]


def _fill(bo: Bo, dt: type, rng: np.random.Generator) -> np.ndarray:
    arr = bo.array(dt)
    if np.dtype(dt).kind == "f":
        arr[:] = rng.standard_normal(arr.size).astype(dt)
    else:
        info = np.iinfo(dt)
        arr[:] = rng.integers(info.min, info.max, arr.size, endpoint=True, dtype=np.int64).astype(dt)
    return arr.copy()


# -- contexts -----------------------------------------------------------------------------


@pytest.mark.parametrize("chip", CHIPS)
def test_create_destroy(chip: str) -> None:
    d, c = _setup(chip)
    first = d.chip.limits.first_col
    a = PyContext(c, start_col=first)
    b = PyContext(c, start_col=first + 1)
    assert (a.id, a.msix, b.id, b.msix) == (0, 1, 1, 2)
    chans = {ch["index"]: ch for ch in d.device.status()["channels"]}
    assert chans[1]["msix"] == 1 and chans[2]["msix"] == 2
    # cq_pair addresses are absolute: the ring buffers are the channel's SRAM slot
    fwch = d.device.mailbox.channels[1]
    assert a.chan.x2i_tail_reg == fwch.x2i_tail_reg and a.chan.i2x_head_reg == fwch.i2x_head_reg
    sram_bar = d.chip.dev_to_bar(d.chip.reg("sram.mbox_chann").addr)[0]
    assert d.chip.dev_to_bar(fwch.x2i_buf)[0] == d.chip.dev_to_bar(fwch.i2x_buf)[0] == sram_bar
    assert d.chip.dev_to_bar(fwch.x2i_head_reg)[0] != sram_bar
    assert a.collect()[a.config_cu_id].payload == b"\0" * 4  # CONFIG_CU answered
    ctxs = d.device.status()["contexts"]
    assert [(x["id"], x["pasid"], x["channel"], x["state"]) for x in ctxs] == [
        (0, 1, 1, "ok"), (1, 1, 2, "ok")]
    assert a.destroy() == 0
    assert 1 not in d.device.mailbox.channels and 2 in d.device.mailbox.channels
    assert a.destroy() == Status.MGMT_ERT_INVALID_PARAM
    again = PyContext(c, start_col=first + 2)  # the lowest free id is reused
    assert (again.id, again.msix) == (0, 1)
    assert d.device.context_count() == 2


def test_limit_npu4_temporal_columns_shared() -> None:
    d, c = _setup("npu4")
    limit = d.chip.limits.hwctx_limit
    ctxs = [PyContext(c, start_col=0, num_col=d.chip.tiles.cols) for _ in range(limit)]
    assert [x.id for x in ctxs] == list(range(limit))
    with pytest.raises(CreateError) as ei:
        PyContext(c)
    assert ei.value.status == Status.MGMT_ERT_NOAVAIL
    assert ctxs[3].destroy() == 0
    assert PyContext(c).id == 3


@pytest.mark.skipif("npu1" not in CHIPS, reason="no npu1 chip data")
def test_npu1_columns_disjoint() -> None:
    d, c = _setup("npu1")
    first, cols = d.chip.limits.first_col, d.chip.tiles.cols
    for bad in ((first - 1, 1), (first, 0), (cols - 1, 2)):
        with pytest.raises(CreateError) as ei:
            PyContext(c, *bad)
        assert ei.value.status == Status.MGMT_ERT_INVALID_PARAM, bad
    ctxs = [PyContext(c, start_col=col) for col in range(first, cols)]
    with pytest.raises(CreateError) as ei:
        PyContext(c, start_col=first + 1)
    assert ei.value.status == Status.MGMT_ERT_NOAVAIL
    ctxs[1].destroy()
    assert PyContext(c, start_col=first + 1).id == 1


def test_host_buffer_errors() -> None:
    d, c = _setup("npu4")
    ctx = PyContext(c)
    va = c.heap_va
    assert d.msg(Opcode.ADD_HOST_BUFFER, 9, va, MiB)[0] == Status.MGMT_ERT_INVALID_PARAM
    assert d.msg(Opcode.MAP_HOST_BUFFER, ctx.id, va + 1, MiB)[0] == Status.MGMT_ERT_INVALID_PARAM
    for size in (0, 0x1800, 1 << 33):
        assert d.msg(Opcode.MAP_HOST_BUFFER, ctx.id, va, size)[0] == \
            Status.MGMT_ERT_DRAM_BUFFER_SIZE_INVALID, size
    # a fresh context (no MAP yet) cannot ADD
    out = d.msg(Opcode.CREATE_CONTEXT, 1, 0, 1, 0, 0, 1, 0, 1, bytes(8), 0, 2)
    assert out[0] == 0
    assert d.msg(Opcode.ADD_HOST_BUFFER, out[1], va, MiB)[0] == Status.MGMT_ERT_INVALID_PARAM
    assert d.msg(Opcode.MAP_HOST_BUFFER, out[1], va, MiB)[0] == 0
    assert d.msg(Opcode.ADD_HOST_BUFFER, out[1], va + MiB, MiB)[0] == 0
    assert [x["heap"] for x in d.device.status()["contexts"]][1] == [
        {"dev": HEAP_DEV_ADDR, "va": va, "size": MiB},
        {"dev": HEAP_DEV_ADDR + MiB, "va": va + MiB, "size": MiB}]


def test_heap_chunks_resolve_to_their_own_va() -> None:
    """MAP + ADD with chunk 1 at an unrelated VA: heap device addresses follow the chunks."""
    d = PyDriver(make_test_device("npu4"))
    d.bring_up(async_events=False)
    c = PyClient(d, 3, heap_size=MiB, chunk=MiB)
    other = bytearray(MiB)
    d.iommu.map(3, 0x5555_0000_0000, MiB, DMA_READ | DMA_WRITE, None, mem=other)
    ctx = PyContext(c)
    assert d.msg(Opcode.ADD_HOST_BUFFER, ctx.id, 0x5555_0000_0000, MiB)[0] == 0
    src = c.alloc(256)
    src.array(np.int32)[:] = np.arange(64)
    dst = HEAP_DEV_ADDR + MiB + 0x100  # in the second chunk
    desc = K.Desc(K.Kernel.COPY, K.DType.INT32, count=64)
    assert ctx.run([Cmd(desc, [src, dst])]) == (0, 0, 0)
    assert np.array_equal(np.frombuffer(other, np.int32, 64, 0x100), np.arange(64))
    # a range that runs from chunk 0 into chunk 1 is not contiguous in VA, a range past the
    # end of the heap: each faults, and the job stalls (a fresh context for each)
    for bad in (HEAP_DEV_ADDR + MiB - 64, HEAP_DEV_ADDR + 2 * MiB - 64):
        before = _counters(d)["iommu_faults"]
        assert _stalls(ctx, [Cmd(desc, [src, bad])])
        assert _counters(d)["iommu_faults"] == before + 1
        assert ctx.destroy() == 0
        ctx = PyContext(c)
        assert d.msg(Opcode.ADD_HOST_BUFFER, ctx.id, 0x5555_0000_0000, MiB)[0] == 0


# -- jobs ---------------------------------------------------------------------------------


def _data_chain(c: PyClient, dt: K.DType) -> tuple[list[Cmd], list]:
    """nop, copy, add, scale, gemm with random inputs; returns commands and checks."""
    rng = np.random.default_rng(int(dt) + 7)
    npt = K.NUMPY[dt]
    n, m, k, nn = 100, 5, 7, 3
    item = np.dtype(npt).itemsize
    bos = {name: c.alloc(n * item) for name in ("x", "y", "copy", "add", "scale")}
    x, y = _fill(bos["x"], npt, rng), _fill(bos["y"], npt, rng)
    ga, gb = c.alloc(m * k * item), c.alloc(k * nn * item)
    gc = c.alloc(m * nn * (item if dt == K.DType.FLOAT32 else 4))
    a, b = _fill(ga, npt, rng), _fill(gb, npt, rng)
    dcopy = K.Desc(K.Kernel.COPY, dt, count=n)
    dadd = K.Desc(K.Kernel.ADD, dt, count=n)
    dscale = K.Desc(K.Kernel.SCALE, dt, count=n, scalar=3 if dt != K.DType.FLOAT32 else 0.5)
    dgemm = K.Desc(K.Kernel.GEMM, dt, m=m, n=nn, k=k)
    cmds = [Cmd(K.Desc(K.Kernel.NOP)), Cmd(dcopy, [bos["x"], bos["copy"]]),
            Cmd(dadd, [bos["x"], bos["y"], bos["add"]]), Cmd(dscale, [bos["x"], bos["scale"]]),
            Cmd(dgemm, [ga, gb, gc])]
    checks = [(bos["copy"], npt, K.reference(dcopy, [x])),
              (bos["add"], npt, K.reference(dadd, [x, y])),
              (bos["scale"], npt, K.reference(dscale, [x])),
              (gc, np.float32 if dt == K.DType.FLOAT32 else np.int32, K.reference(dgemm, [a, b]).ravel())]
    return cmds, checks


def _check(checks: list) -> None:
    for bo, npt, want in checks:
        got = bo.array(npt, want.size)
        if np.dtype(npt).kind == "f":
            assert np.allclose(got, want, rtol=1e-5, atol=1e-4)
        else:
            assert np.array_equal(got, want)


@pytest.mark.parametrize("chip", CHIPS)
@pytest.mark.parametrize("dt", list(K.DType))
def test_chain_of_data_kernels(chip: str, dt: K.DType) -> None:
    d, c = _setup(chip)
    ctx = PyContext(c)
    assert ctx.chain_opcode() == Opcode.CHAIN_EXEC_NPU
    cmds, checks = _data_chain(c, dt)
    assert ctx.run(cmds) == (0, 0, 0)
    _check(checks)
    st = d.device.status()
    assert st["contexts"][0]["completed"] == 1 and st["counters"]["jobs_completed"] == 1
    assert st["counters"]["internal_errors"] == 0


def test_old_protocol_uses_dpu_chain_and_rejects_npu_chain() -> None:
    d, c = _setup("npu4", build_image(load_chip("npu4"), protocol="6.12"))
    ctx = PyContext(c)
    assert ctx.chain_opcode() == Opcode.CHAIN_EXEC_DPU
    cmds, checks = _data_chain(c, K.DType.INT16)
    assert ctx.run(cmds) == (0, 0, 0)
    _check(checks)
    mid = ctx.submit(cmds, Opcode.CHAIN_EXEC_NPU)
    r = ctx.collect()[mid]
    assert r.payload == struct.pack("<I", Status.RTOS_INVALID_OP)
    mid = ctx.chan.send(Opcode.EXEC_NPU, bytes(160))
    assert ctx.collect()[mid].payload == struct.pack("<I", Status.RTOS_INVALID_OP)
    # the context still works afterwards, and CF chains too
    cmds2, checks2 = _data_chain(c, K.DType.INT32)
    assert ctx.run(cmds2, Opcode.CHAIN_EXEC_BUFFER_CF) == (0, 0, 0)
    _check(checks2)


def test_single_exec_messages() -> None:
    d, c = _setup("npu4")
    ctx = PyContext(c)
    src, dst = c.alloc(64), c.alloc(64)
    src.array(np.int32)[:] = np.arange(16) * 3
    desc = K.Desc(K.Kernel.COPY, K.DType.INT32, count=16)
    inst = ctx.inst_bo(desc)
    words = [src.addr, 0, dst.addr, 0]
    lay = LAYOUTS
    msgs = [
        (Opcode.EXEC_DPU, lay[Opcode.EXEC_DPU].req.pack(inst.addr, 48, 1, 0, 0xAA, *words, *[0] * 30)),
        (Opcode.EXEC_NPU, lay[Opcode.EXEC_NPU].req.pack(0, 1, inst.addr, 0, 0, 48, 0, 0, 0, 0, *words, *[0] * 23)),
        (Opcode.EXECUTE_BUFFER_CF, lay[Opcode.EXECUTE_BUFFER_CF].req.pack(0, inst.addr, 0, *words, *[0] * 13)),
        (Opcode.SYNC_BO, lay[Opcode.SYNC_BO].req.pack(src.addr, dst.addr, 64, 0x20)),
    ]
    for op, payload in msgs:
        dst.view[:] = bytes(64)
        mid = ctx.chan.send(op, payload)
        r = ctx.collect()[mid]
        assert r.payload == b"\0" * 4, op.name
        if op != Opcode.SYNC_BO:
            assert np.array_equal(dst.array(np.int32), np.arange(16) * 3), op.name
    bad = lay[Opcode.EXEC_DPU].req.pack(inst.addr, 48, 40, 0, *[0] * 35)  # props past payload
    mid = ctx.chan.send(Opcode.EXEC_DPU, bad)
    assert ctx.collect()[mid].payload == struct.pack("<I", INV)
    mid = ctx.chan.send(Opcode.CONFIG_CU, bytes(8))  # wrong size
    assert ctx.collect()[mid].payload == struct.pack("<I", Status.RTOS_INVALID_INPUT_BUF)
    mid = ctx.chan.send(Opcode.CONFIG_CU, lay[Opcode.CONFIG_CU].req.pack(33, *[0] * 32))
    assert ctx.collect()[mid].payload == struct.pack("<I", Status.MGMT_ERT_INVALID_PARAM)
    mid = ctx.chan.send(0x99, bytes(4))
    assert ctx.collect()[mid].payload == struct.pack("<I", Status.RTOS_INVALID_OP)
    mid = ctx.chan.send(Opcode.GET_FIRMWARE_VERSION, bytes(4))  # a mgmt op on a user channel
    assert ctx.collect()[mid].payload == struct.pack("<I", Status.RTOS_INVALID_OP)


def _register_event(d: PyDriver, addr: int = 0x5000_0000) -> tuple[int, bytearray]:
    buf = bytearray(0x2000)
    d.iommu.map(0, addr, len(buf), DMA_READ | DMA_WRITE, None, mem=buf)
    lay = LAYOUTS[Opcode.REGISTER_ASYNC_EVENT_MSG]
    return d.mgmt.send(Opcode.REGISTER_ASYNC_EVENT_MSG, lay.req.pack(addr, 0x2000)), buf


@pytest.mark.parametrize("chip", CHIPS)
def test_failed_command_mid_chain(chip: str) -> None:
    d, c = _setup(chip)
    ev_id, evbuf = _register_event(d)
    first = d.chip.limits.first_col
    ctx = PyContext(c, start_col=first + 1)
    s1, d1, d2 = c.alloc(64), c.alloc(64), c.alloc(64)
    s1.array(np.int32)[:] = 7
    copy = K.Desc(K.Kernel.COPY, K.DType.INT32, count=16)
    fail = K.Desc(K.Kernel.FAIL, error=Status.AIE_DMA_ERROR)
    cmds = [Cmd(copy, [s1, d1]), Cmd(K.Desc(K.Kernel.NOP)), Cmd(fail), Cmd(copy, [s1, d2])]
    assert ctx.run(cmds) == (Status.APP_ERT_FIRST_ERROR, 2, Status.AIE_DMA_ERROR)
    assert (d1.array(np.int32) == 7).all() and (d2.array(np.int32) == 0).all()
    # the async event was answered with the AIE error
    (ev,) = d.mgmt.drain()
    assert ev.id == ev_id and LAYOUTS[Opcode.REGISTER_ASYNC_EVENT_MSG].resp.unpack(ev.payload) == (0, 0)
    assert ASYNC_EVENT_HDR.unpack_from(evbuf) == (1, 0, 0)
    row, col, _, mod, event_id, _ = AIE_ERROR_ENTRY.unpack_from(evbuf, ASYNC_EVENT_HDR.size)
    # the default tile: the partition's first core tile, core module (1), event = low byte
    assert (row, col, mod, event_id) == (d.chip.tiles.core_row_start, first + 1, 1, 0x09)
    # the context stays usable; a fail with no event registered still answers the chain
    assert ctx.run([Cmd(copy, [s1, d2])]) == (0, 0, 0)
    assert ctx.run([Cmd(K.Desc(K.Kernel.FAIL))]) == (Status.APP_ERT_FIRST_ERROR, 0, K.AIE_ERR_INSTRUCTION)
    st = d.device.status()
    assert st["contexts"][0]["failed"] == 2 and st["contexts"][0]["completed"] == 1
    assert st["counters"]["jobs_failed"] == 2


def test_invalid_commands() -> None:
    d, c = _setup("npu4")
    ctx = PyContext(c)
    s, o = c.alloc(64), c.alloc(64)
    copy = K.Desc(K.Kernel.COPY, K.DType.INT32, count=16)
    bad_magic = bytearray(K.encode(copy))
    bad_magic[0] ^= 1
    assert ctx.run([Cmd(K.Desc(K.Kernel.NOP)), Cmd(copy, [s])]) == (INV, 1, INV)  # arg count
    assert ctx.run([Cmd(copy, raw_words=[s.addr, 0, o.addr])]) == (INV, 0, INV)  # odd words
    mid = ctx.submit([], raw=b"")  # count 0
    assert ctx.result(mid) == (INV, 0, INV)
    huge = K.Desc(K.Kernel.COPY, K.DType.INT32, count=0xFFFFFFFF)
    assert ctx.run([Cmd(huge, [s, o])]) == (INV, 0, INV)
    big = K.Desc(K.Kernel.GEMM, K.DType.INT8, m=1 << 11, n=1 << 10, k=1 << 10)  # too much work
    assert ctx.run([Cmd(big, [s, s, o])]) == (INV, 0, INV)
    # a slot running past the buffer, an unsupported slot type, a bad descriptor
    inst = ctx.inst_bo(copy)
    slot = SLOT_NPU.pack(2, inst.addr, 0, 0, 48, 0, 0, 0, 0, 4) + struct.pack("<4I", s.addr, 0, o.addr, 0)
    elf = SLOT_NPU.pack(4, inst.addr, 0, 0, 48, 0, 0, 0, 0, 1) + struct.pack("<I", 3)
    for raw, count, idx in ((slot, 2, 1), (elf, 1, 0), (slot[:-4], 1, 0)):
        mid = ctx.submit([Cmd(copy)] * count, raw=raw)
        assert ctx.result(mid) == (INV, idx, INV)
    bad = ctx.inst_bo(bytes(bad_magic))
    raw = SLOT_NPU.pack(2, bad.addr, 0, 0, 48, 0, 0, 0, 0, 0)
    assert ctx.result(ctx.submit([Cmd(copy)], raw=raw)) == (INV, 0, INV)
    raw = SLOT_NPU.pack(2, inst.addr, 0, 0, 40, 0, 0, 0, 0, 0)  # instruction size < 48
    assert ctx.result(ctx.submit([Cmd(copy)], raw=raw)) == (INV, 0, INV)
    assert _counters(d)["internal_errors"] == 0


def test_hang_stalls_only_its_context() -> None:
    d, c = _setup("npu4")
    hung, other = PyContext(c), PyContext(c)
    s, o = c.alloc(64), c.alloc(64)
    s.array(np.int32)[:] = 5
    copy = K.Desc(K.Kernel.COPY, K.DType.INT32, count=16)
    h1 = hung.submit([Cmd(K.Desc(K.Kernel.NOP)), Cmd(K.Desc(K.Kernel.HANG)), Cmd(copy, [s, o])])
    h2 = hung.submit([Cmd(copy, [s, o])])
    h3 = hung.chan.send(Opcode.CONFIG_CU, LAYOUTS[Opcode.CONFIG_CU].req.pack(0, *[0] * 32))
    assert h1 not in hung.collect() and h2 not in hung.responses and h3 not in hung.responses
    assert (o.array(np.int32) == 0).all()
    assert other.run([Cmd(copy, [s, o])]) == (0, 0, 0)  # another context still completes
    assert (o.array(np.int32) == 5).all()
    st = {x["id"]: x for x in d.device.status()["contexts"]}
    assert st[hung.id]["state"] == "hung" and st[hung.id]["queued"] == 3
    assert st[other.id]["state"] == "ok"
    # health of the hung context (mgmt PASID buffer)
    hb = bytearray(0x1000)
    d.iommu.map(0, 0x6000_0000, len(hb), DMA_READ | DMA_WRITE, None, mem=hb)
    out = hung.health(Bo(0x6000_0000, len(hb), memoryview(hb)))
    assert out[:2] == (0, APP_HEALTH_SIZE)
    major, minor, size, cid, dpu_pc, txn, ctx_pc, fatal, run_list = APP_HEALTH.unpack_from(hb)
    assert (size, cid, dpu_pc, txn, ctx_pc) == (APP_HEALTH_SIZE, hung.id, 1, K.Kernel.HANG, 1)
    assert struct.unpack_from("<I", fatal)[0] == 1  # hang
    # destroy releases it; nothing is ever answered for the held messages
    assert hung.destroy() == 0
    assert hung.collect().keys() == {hung.config_cu_id}
    again = PyContext(c)
    assert again.id == hung.id and again.run([Cmd(K.Desc(K.Kernel.NOP))]) == (0, 0, 0)


def _stalls(ctx: PyContext, cmds: list[Cmd], raw: bytes | None = None) -> bool:
    """The chain is never answered and its context is hung (a fault is a hang)."""
    mid = ctx.submit(cmds, raw=raw)
    st_ = {x["id"]: x for x in ctx.drv.device.status()["contexts"]}[ctx.id]
    return ctx.result(mid) is None and st_["state"] == "hung"


def _health(d: PyDriver, ctx: PyContext) -> tuple:
    hb = bytearray(0x1000)
    d.iommu.map(0, 0x6000_0000, len(hb), DMA_READ | DMA_WRITE, None, mem=hb)
    try:
        assert d.msg(Opcode.GET_APP_HEALTH, ctx.id, 0x1000, 0x6000_0000)[0] == 0
        rep = APP_HEALTH.unpack_from(hb)
        return (*rep[4:7], *FATAL_ERROR_INFO.unpack_from(rep[7]))
    finally:
        d.iommu.unmap(0, 0x6000_0000, len(hb))


def test_iommu_fault_stalls_and_writes_nothing() -> None:
    d, c = _setup("npu4", pasid=4, heap=4 * MiB)
    src, dst = c.alloc(64), c.alloc(64)
    src.array(np.int32)[:] = 9
    copy = K.Desc(K.Kernel.COPY, K.DType.INT32, count=16)
    before = _counters(d)["iommu_faults"]
    outside = 0x1234_0000_0000
    ctx = PyContext(c)
    # the second command faults: the first ran, the second stalls, nothing is written
    assert _stalls(ctx, [Cmd(copy, [src, dst]), Cmd(copy, [outside, dst])])
    assert _counters(d)["iommu_faults"] == before + 1
    assert (dst.array(np.int32) == 9).all()
    # health: dpu_pc = index 1, txn_op_id = TXN_OP_NONE, ctx_pc = 1 command done, fatal FAULT
    # with AIE_ACCESS_ERROR, the faulting address, the copy kernel and its index
    assert _health(d, ctx)[:8] == (1, TXN_OP_NONE, 1, 3, Status.AIE_ACCESS_ERROR,
                                   outside & 0xFFFFFFFF, K.Kernel.COPY, 1)
    # the next message on the hung context is held too; another context still runs
    other = PyContext(c)
    assert other.run([Cmd(copy, [src, dst])]) == (0, 0, 0)
    assert ctx.destroy() == 0
    dst.array(np.int32)[:] = 0
    # destination in a read-only SHARE BO: stalls, not written
    ctx = PyContext(c)
    ro = c.share(64, 0x6600_0000_0000, perm=DMA_READ)
    assert _stalls(ctx, [Cmd(copy, [src, ro])])
    assert bytes(ro.view) == bytes(64)
    assert ctx.destroy() == 0
    # a writable SHARE BO (SVA address) works; the same VA in another PASID does not
    ctx = PyContext(c)
    rw = c.share(64, 0x6700_0000_0000)
    assert ctx.run([Cmd(copy, [src, rw])]) == (0, 0, 0)
    assert (rw.array(np.int32) == 9).all()
    oc = PyClient(d, 5, heap_size=MiB, heap_va=0x7E00_0000_0000)
    octx = PyContext(oc)
    odst = oc.alloc(64)
    assert _stalls(octx, [Cmd(copy, [rw, odst])])
    assert bytes(odst.view) == bytes(64)
    # the cmd-list buffer itself unreachable: the chain stalls before its first slot
    mid = ctx.chan.send(Opcode.CHAIN_EXEC_NPU, LAYOUTS[Opcode.CHAIN_EXEC_NPU].req.pack(0, 0, outside, 64, 1))
    assert mid not in ctx.collect()
    assert _health(d, ctx)[:3] == (0, TXN_OP_NONE, 1)
    assert _counters(d)["iommu_faults"] == before + 4
    assert _counters(d)["internal_errors"] == 0


def test_responses_in_order_across_ring_wraps() -> None:
    d, c = _setup("npu4")
    ctx = PyContext(c)
    s, o = c.alloc(64), c.alloc(64)
    copy = K.Desc(K.Kernel.COPY, K.DType.INT32, count=16)
    fail = K.Desc(K.Kernel.FAIL)
    ids, want = [], []
    for i in range(200):  # more than fit the rings (ids stay < 256): both wrap
        cmds = [Cmd(fail)] if i % 7 == 3 else [Cmd(copy, [s, o])]
        ids.append(ctx.submit(cmds))
        want.append(Status.APP_ERT_FIRST_ERROR if i % 7 == 3 else 0)
        if i % 3 == 2:
            ctx.collect()
    got = [r for r in ctx.chan.drain()]
    order = [r.id for r in ctx.responses.values()] + [r.id for r in got]
    assert order[1:] == ids  # [0] is CONFIG_CU
    for r in got:
        ctx.responses[r.id] = r
    assert [struct.unpack_from("<I", ctx.responses[i].payload)[0] for i in ids] == want
    assert ctx.chan.tx_wraps and ctx.chan.rx_wraps


# -- power and firmware lifecycle -------------------------------------------------------------


def test_suspend_holds_jobs_until_resume_and_stop_drops_contexts() -> None:
    d, c = _setup("npu4")
    ctx = PyContext(c)
    d.msg_ok(Opcode.SUSPEND, 0)  # allowed with a live context
    mid = ctx.submit([Cmd(K.Desc(K.Kernel.NOP))])
    assert ctx.result(mid) is None
    d.msg_ok(Opcode.RESUME, 0)
    assert ctx.result(mid) == (0, 0, 0)
    assert d.device.context_count() == 1
    assert d.psp_exec(PspCmd.RELEASE_TMR) == 0
    assert d.device.context_count() == 0 and d.device.status()["contexts"] == []
    with pytest.raises(OSError) as ei:
        d.device.proxy(1, Opcode.GET_FIRMWARE_VERSION, bytes(4))
    assert ei.value.errno == errno.ENODEV


# -- session hooks --------------------------------------------------------------------------


def test_proxy_permissions_and_ownership() -> None:
    d, c = _setup("npu4", pasid=1)
    dev = d.device
    mine = PyContext(c)
    client = PyClient(d, 7, heap_size=MiB, heap_va=0x7E00_0000_0000, proxied=True)
    theirs = PyContext(client)
    assert {x["id"]: x["pasid"] for x in dev.status()["contexts"]} == {mine.id: 1, theirs.id: 7}
    # CREATE_CONTEXT's pasid is overwritten with the session's
    lay = LAYOUTS[Opcode.CREATE_CONTEXT]
    resp = dev.proxy(7, Opcode.CREATE_CONTEXT, lay.req.pack(1, 0, 1, 0, 0, 1, 0, 1, bytes(8), 0, 2))
    cid = lay.resp.unpack(resp)[1]
    assert dev.ctx.contexts[cid].pasid == 7
    for op in (Opcode.SUSPEND, Opcode.REGISTER_ASYNC_EVENT_MSG, Opcode.SET_RUNTIME_CONFIG,
               Opcode.CHAIN_EXEC_NPU, 0xDEAD):
        with pytest.raises(OSError) as ei:
            dev.proxy(7, op, bytes(4))
        assert ei.value.errno == errno.EPERM
    for op, payload in ((Opcode.DESTROY_CONTEXT, struct.pack("<I", mine.id)),
                        (Opcode.DESTROY_CONTEXT, struct.pack("<I", 12)),
                        (Opcode.MAP_HOST_BUFFER, struct.pack("<IQQ", mine.id, 0, MiB)),
                        (Opcode.GET_APP_HEALTH, struct.pack("<IIQ", mine.id, 4096, 0))):
        with pytest.raises(OSError) as ei:
            dev.proxy(7, op, payload)
        assert ei.value.errno == errno.ENOENT, op
    # allowed query ops answer like the ring; a wrong size gets the firmware's status
    assert dev.proxy(7, Opcode.GET_FIRMWARE_VERSION, bytes(4)) == \
        LAYOUTS[Opcode.GET_FIRMWARE_VERSION].resp.pack(0, *dev.fw.image.version)
    assert dev.proxy(7, Opcode.DESTROY_CONTEXT, bytes(8))[:4] == \
        struct.pack("<I", Status.RTOS_INVALID_INPUT_BUF)
    # an op that would be held is EINVAL (force one: a handler that never answers)
    dev.fw.register(Opcode.QUERY_AIE_VERSION, LAYOUTS[Opcode.QUERY_AIE_VERSION],
                    lambda ch, m, r: None)
    with pytest.raises(OSError) as ei:
        dev.proxy(7, Opcode.QUERY_AIE_VERSION, bytes(4))
    assert ei.value.errno == errno.EINVAL
    # the client's own context runs jobs and can be destroyed by it
    s, o = client.alloc(64), client.alloc(64)
    s.array(np.int8)[:] = 3
    assert theirs.run([Cmd(K.Desc(K.Kernel.COPY, K.DType.INT8, count=64), [s, o])]) == (0, 0, 0)
    assert (o.array(np.int8) == 3).all()
    assert theirs.destroy() == 0
    assert dev.context_count() == 2 and dev.context_count(exclude_pasid=1) == 1


def test_release_pasid() -> None:
    d, c = _setup("npu4", pasid=1)
    dev = d.device
    a = PyClient(d, 7, heap_size=MiB, heap_va=0x7E00_0000_0000, proxied=True)
    ctxs = [PyContext(a), PyContext(a)]
    hang = ctxs[1].submit([Cmd(K.Desc(K.Kernel.HANG))])
    PyContext(c)
    assert dev.context_count() == 3 and dev.context_count(exclude_pasid=1) == 2
    assert dev.release_pasid(7) == 2
    assert dev.release_pasid(7) == 0
    assert dev.context_count() == 1 and dev.context_count(exclude_pasid=1) == 0
    assert sorted(dev.mailbox.channels) == [0, 3]
    assert hang not in ctxs[1].collect()
    assert PyContext(a).id == 0  # ids are free again


def test_app_health() -> None:
    d, c = _setup("npu4", pasid=6)
    ctx = PyContext(c)
    fail = K.Desc(K.Kernel.FAIL, error=Status.AIE_LOCK_ERROR)
    nop = K.Desc(K.Kernel.NOP)
    assert ctx.run([Cmd(nop), Cmd(nop), Cmd(fail)]) == (Status.APP_ERT_FIRST_ERROR, 2, Status.AIE_LOCK_ERROR)
    hb = bytearray(0x1000)
    d.iommu.map(0, 0x6000_0000, len(hb), DMA_READ | DMA_WRITE, None, mem=hb)
    assert d.msg(Opcode.GET_APP_HEALTH, ctx.id, 0x1000, 0x6000_0000)[:2] == (0, APP_HEALTH_SIZE)
    major, minor, size, cid, dpu_pc, txn, ctx_pc, fatal, _ = APP_HEALTH.unpack_from(hb)
    assert (major, minor, size, cid, dpu_pc, txn, ctx_pc) == (1, 0, 560, ctx.id, 2, K.Kernel.FAIL, 2)
    # fatal_type, exception_type, exception_pc, app_module, task_index, status, cmd_status, idx
    assert FATAL_ERROR_INFO.unpack_from(fatal) == (
        2, Status.APP_ERT_FIRST_ERROR, 0, K.Kernel.FAIL, 2, Status.APP_ERT_FIRST_ERROR,
        Status.AIE_LOCK_ERROR, 2)
    assert d.msg(Opcode.GET_APP_HEALTH, ctx.id, 100, 0x6000_0000)[:2] == \
        (Status.RTOS_INVALID_INPUT_BUF, APP_HEALTH_SIZE)
    assert d.msg(Opcode.GET_APP_HEALTH, 9, 0x1000, 0x6000_0000)[0] == Status.MGMT_ERT_INVALID_PARAM
    before = _counters(d)["iommu_faults"]
    assert d.msg(Opcode.GET_APP_HEALTH, ctx.id, 0x1000, 0x9000_0000)[0] == Status.RTOS_INVALID_INPUT_BUF
    assert _counters(d)["iommu_faults"] == before + 1
    # proxied: the buffer is in the caller's PASID
    cl = PyClient(d, 9, heap_size=MiB, heap_va=0x7E00_0000_0000, proxied=True)
    cctx = PyContext(cl)
    hbo = cl.alloc(APP_HEALTH_SIZE)
    assert cctx.health(Bo(c.heap_va + 0, 0, hbo.view))[0] == Status.RTOS_INVALID_INPUT_BUF  # size 0
    assert cctx.health(Bo(0x7E00_0000_0000 + (hbo.addr - HEAP_DEV_ADDR), hbo.size, hbo.view))[0] == 0
    assert APP_HEALTH.unpack_from(hbo.view)[3] == cctx.id


def test_col_status() -> None:
    """QUERY_COL_STATUS dumps one col_status per bitmap column from the firmware's own
    contexts (docs/spec/firmware.md §8)."""
    d, c = _setup("npu4")
    first = d.chip.limits.first_col
    a = PyContext(c, start_col=first, num_col=2)
    b = PyContext(c, start_col=first + 1)
    fail = K.Desc(K.Kernel.FAIL, error=Status.AIE_LOCK_ERROR)
    nop = K.Desc(K.Kernel.NOP)
    assert a.run([Cmd(nop)]) == (0, 0, 0)
    assert a.run([Cmd(fail)])[0] == Status.APP_ERT_FIRST_ERROR
    b.submit([Cmd(K.Desc(K.Kernel.HANG))])
    st = {x["id"]: x for x in d.device.status()["contexts"]}
    size = COL_STATUS.size
    buf = bytearray(b"\xee" * 0x1000)
    d.iommu.map(0, 0x6000_0000, len(buf), DMA_READ | DMA_WRITE, None, mem=buf)
    cols = (first, first + 1, first + 2)
    bitmap = sum(1 << col for col in cols)
    assert d.msg(Opcode.QUERY_COL_STATUS, 0x6000_0000, len(buf), 3, bitmap) == (0, 3 * size)
    assert buf[3 * size:] == b"\xee" * (len(buf) - 3 * size)
    got = [dict(zip(COL_STATUS_FIELDS, COL_STATUS.unpack_from(buf, i * size), strict=True))
           for i in range(3)]
    sa = st[a.id]
    assert got[0] == {"col": first, "state": ColState.IDLE, "contexts": 1, "context_id": a.id,
                      "priority": sa["priority"], "submitted": sa["submitted"],
                      "completed": sa["completed"], "failed": sa["failed"], "queued": 0,
                      "core_status": CoreStatus.ENABLE | CoreStatus.ERROR,
                      "last_status": Status.APP_ERT_FIRST_ERROR}
    assert sa["failed"] == 1 and sa["completed"] >= 1
    shared = got[1]  # a and b share it (npu4 shares columns in time); b is hung
    assert (shared["state"], shared["contexts"], shared["context_id"]) == (ColState.HUNG, 2, a.id)
    assert shared["queued"] == st[b.id]["queued"] >= 1
    assert shared["core_status"] == CoreStatus.ENABLE | CoreStatus.ERROR | CoreStatus.STALLED
    assert shared["submitted"] == sa["submitted"] + st[b.id]["submitted"]
    assert got[2] == {"col": first + 2, "state": ColState.FREE, "contexts": 0,
                      "context_id": NO_CONTEXT, "priority": 0, "submitted": 0, "completed": 0,
                      "failed": 0, "queued": 0, "core_status": 0, "last_status": 0}
    # bad requests: count and bitmap disagree, a column past the array, a short buffer,
    # an unmapped buffer; no columns is an empty dump
    bad = Status.MGMT_ERT_INVALID_PARAM
    assert d.msg(Opcode.QUERY_COL_STATUS, 0x6000_0000, len(buf), 2, bitmap)[0] == bad
    assert d.msg(Opcode.QUERY_COL_STATUS, 0x6000_0000, len(buf), 1, 1 << d.chip.cols)[0] == bad
    assert d.msg(Opcode.QUERY_COL_STATUS, 0x6000_0000, 3 * size - 1, 3, bitmap) == (
        Status.MGMT_ERT_DRAM_BUFFER_SIZE_INVALID, 3 * size)
    before = _counters(d)["iommu_faults"]
    assert d.msg(Opcode.QUERY_COL_STATUS, 0x9000_0000, len(buf), 3, bitmap)[0] == \
        Status.RTOS_INVALID_INPUT_BUF
    assert _counters(d)["iommu_faults"] == before + 1
    assert d.msg(Opcode.QUERY_COL_STATUS, 0x6000_0000, len(buf), 0, 0) == (0, 0)
    # tile info's size is the driver's col_size
    assert d.msg(Opcode.QUERY_AIE_TILE_INFO, 0)[1] == size


@pytest.mark.parametrize("chip", CHIPS)
def test_telemetry(chip: str) -> None:
    """GET_TELEMETRY HEALTH: the firmware's counters and its contexts, from its own state
    (docs/spec/firmware.md §8); other kinds, short and unmapped buffers are refused."""
    d, c = _setup(chip)
    first = d.chip.limits.first_col
    a, b = PyContext(c, start_col=first), PyContext(c, start_col=first + 1)
    nop, fail = K.Desc(K.Kernel.NOP), K.Desc(K.Kernel.FAIL, error=Status.AIE_LOCK_ERROR)
    assert a.run([Cmd(nop)]) == (0, 0, 0)
    assert b.run([Cmd(fail)])[0] == Status.APP_ERT_FIRST_ERROR
    b.submit([Cmd(K.Desc(K.Kernel.HANG))])
    buf = bytearray(b"\xee" * 0x1000)
    d.iommu.map(0, 0x6000_0000, len(buf), DMA_READ | DMA_WRITE, None, mem=buf)
    need = TELEMETRY_HEALTH.size + 2 * TELEMETRY_CTX.size
    health = TelemetryType.HEALTH
    assert d.msg(Opcode.GET_TELEMETRY, health, 0x6000_0000, len(buf)) == (0, *TELEMETRY_VERSION, need)
    assert buf[need:] == b"\xee" * (len(buf) - need)
    cnt = _counters(d)
    assert TELEMETRY_HEALTH.unpack_from(buf) == (
        2, cnt["jobs_completed"], cnt["jobs_failed"], cnt["iommu_faults"],
        cnt["contexts_destroyed"], cnt["unknown_ops"], 1, TELEMETRY_CTX.size)
    assert cnt["jobs_failed"] >= 1 and cnt["jobs_completed"] >= 1
    st = {x["id"]: x for x in d.device.status()["contexts"]}
    for i, ctx in enumerate((a, b)):
        row = TELEMETRY_CTX.unpack_from(buf, TELEMETRY_HEALTH.size + i * TELEMETRY_CTX.size)
        s_ = st[ctx.id]
        assert row == (ctx.id, s_["pasid"], ctx.start_col, 1, s_["submitted"], s_["completed"],
                       s_["failed"], s_["queued"])
    assert st[b.id]["queued"] >= 1 and st[b.id]["failed"] == 1
    bad = Status.MGMT_ERT_INVALID_PARAM
    for kind in (TelemetryType.DISABLED, TelemetryType.PROFILING, 99):
        assert d.msg(Opcode.GET_TELEMETRY, kind, 0x6000_0000, len(buf))[0] == bad
    assert d.msg(Opcode.GET_TELEMETRY, health, 0x6000_0000, need - 1) == (
        Status.MGMT_ERT_DRAM_BUFFER_SIZE_INVALID, *TELEMETRY_VERSION, need)
    assert d.msg(Opcode.GET_TELEMETRY, health, 0x9000_0000, len(buf))[0] == Status.RTOS_INVALID_INPUT_BUF


@pytest.mark.parametrize("image", [("npu4", "6.12"), ("npu1", None)])
def test_app_health_gated(image: tuple[str, str | None]) -> None:
    chip, prot = image
    if chip not in CHIPS:
        pytest.skip("no chip data")
    d, c = _setup(chip, build_image(load_chip(chip), protocol=prot) if prot else None)
    ctx = PyContext(c)
    d.mgmt.send(Opcode.GET_APP_HEALTH, struct.pack("<IIQ", ctx.id, 4096, 0))
    (r,) = d.mgmt.drain()
    assert r.payload == struct.pack("<I", Status.RTOS_INVALID_OP)


# -- robustness -----------------------------------------------------------------------------

def _robust_env() -> tuple[PyDriver, PyClient, list[Bo], PyContext]:
    """A fresh device, client, buffers and context per example (a few ms): an example that
    hangs or faults leaves nothing behind, so every example replays alike (shared state
    made a failure unreproducible, a Hypothesis FlakyFailure)."""
    d, c = _setup("npu4", heap=8 * MiB, chunk=4 * MiB)
    bos = [c.alloc(4096) for _ in range(5)] + [c.alloc(0x10000) for _ in range(3)]
    return d, c, bos, PyContext(c)


_desc = st.builds(
    K.Desc, st.sampled_from(list(K.Kernel)), st.sampled_from(list(K.DType)),
    st.integers(0, 2048), st.integers(0, 40), st.integers(0, 40), st.integers(0, 40),
    st.floats(allow_nan=True, allow_infinity=True, width=64), st.integers(0, 0xFFFFFFFF))
_word = st.one_of(st.integers(0, 0xFFFFFFFF), st.sampled_from([HEAP_DEV_ADDR, HEAP_DEV_ADDR + 0x8000, 0]))


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(op=st.sampled_from([Opcode.CHAIN_EXEC_NPU, Opcode.CHAIN_EXEC_DPU, Opcode.CHAIN_EXEC_BUFFER_CF,
                           Opcode.EXEC_NPU, Opcode.EXEC_DPU, Opcode.EXECUTE_BUFFER_CF]),
       descs=st.lists(_desc, min_size=1, max_size=4),
       words=st.lists(st.lists(_word, max_size=8), min_size=1, max_size=4),
       junk=st.binary(max_size=256), use_junk=st.booleans(),
       count=st.integers(0, 70), buf_size=st.sampled_from([0, 4, 64, 4096, 0x20000, 0xFFFFFFFF]),
       payload=st.binary(max_size=200), valid=st.booleans())
def test_random_jobs_never_raise(op: Opcode, descs: list, words: list, junk: bytes, use_junk: bool,
                                 count: int, buf_size: int, payload: bytes, valid: bool) -> None:
    d, c, bos, ctx = _robust_env()
    dev = d.device
    inst, data_bos = bos[1:5], bos[5:]
    if valid:  # well-formed chains over real buffers, so kernels really run
        use_junk = False
        words = [[w for j in range(descs[i % len(descs)].nargs) for w in (data_bos[j].addr, 0)]
                 for i in range(len(words))]
        count = len(words)
    for bo, x in zip(inst, descs, strict=False):
        bo.view[: K.DESC.size] = K.encode(x)
    if use_junk:
        data = junk
    else:
        cmds = [Cmd(descs[i % len(descs)], raw_words=[w & 0xFFFFFFFF for w in words[i]],
                    inst=inst[i % len(descs)]) for i in range(len(words))]
        opc = op if op in (Opcode.CHAIN_EXEC_NPU, Opcode.CHAIN_EXEC_DPU, Opcode.CHAIN_EXEC_BUFFER_CF) \
            else Opcode.CHAIN_EXEC_NPU
        data = b"".join(ctx.slot(opc, x) for x in cmds)
    bos[0].view[: len(data)] = data
    lay = LAYOUTS[op]
    if op == Opcode.CHAIN_EXEC_NPU:
        req = lay.req.pack(0, 0, bos[0].addr, buf_size if use_junk else len(data), count)
    elif op in (Opcode.CHAIN_EXEC_DPU, Opcode.CHAIN_EXEC_BUFFER_CF):
        req = lay.req.pack(bos[0].addr, buf_size, count)
    else:
        raw = (struct.pack("<QI", inst[0].addr, 48) + payload).ljust(lay.req.size, b"\0")
        req = raw[: lay.req.size] if not use_junk else payload[: (len(payload) // 4) * 4] or b"\0" * 4
    ctx.chan.send(op, req)
    ctx.collect()
    st_ = dev.status()
    assert st_["counters"]["internal_errors"] == 0
    assert all(ch["state"] == "ok" for ch in st_["channels"])


# -- the CU table (docs/spec/jobs.md §5a, firmware.md §8) -----------------------------------


@pytest.mark.parametrize("chip", CHIPS)
def test_cu_idx_outside_the_cu_table(chip: str) -> None:
    """A slot (or single exec) naming a CU its context's CONFIG_CU table lacks fails with
    APP ERT load-PDI failure in that slot; the context and the others run on."""
    from xdna_emu.fw.messages import SlotType

    load = Status.APP_ERT_LOAD_PDI_FAILURE
    d, c = _setup(chip)
    first = d.chip.limits.first_col
    a, b = PyContext(c, start_col=first), PyContext(c, start_col=first + 1)
    src, dst = c.alloc(64), c.alloc(64)
    src.array(np.int32)[:] = np.arange(16) + 5
    desc = K.Desc(K.Kernel.COPY, K.DType.INT32, count=16)

    def cmd(cu: int, slot: int | None = SlotType.NON_ELF) -> Cmd:
        return Cmd(desc, [src, dst], slot_type=slot, cu=cu)

    def copied() -> bool:
        ok = bool((dst.array(np.int32) == np.arange(16) + 5).all())
        dst.view[:] = bytes(64)
        return ok

    # the legacy START_CU: a NON_ELF slot, or the CF chain of a firmware without NPU_COMMAND
    for op in (Opcode.CHAIN_EXEC_NPU, Opcode.CHAIN_EXEC_BUFFER_CF):
        assert a.run([cmd(0), cmd(1), cmd(0)], op) == (load, 1, load)
        assert copied()  # slot 0 ran, nothing after the failing one
        assert b.run([cmd(0)], op) == (0, 0, 0) and copied()  # the other context is unaffected
        assert a.run([cmd(0)], op) == (0, 0, 0) and copied()  # ... and so is this one
    assert a.run([cmd(1, SlotType.PARTIAL_ELF)]) == (load, 0, load)
    assert a.run([cmd(7, None)], Opcode.CHAIN_EXEC_DPU) == (load, 0, load)
    lay = LAYOUTS[Opcode.EXECUTE_BUFFER_CF]
    inst = a.inst_bo(desc)
    for cu, want in ((1, load), (0, 0)):
        mid = a.chan.send(Opcode.EXECUTE_BUFFER_CF, lay.req.pack(
            cu, inst.addr & 0xFFFFFFFF, inst.addr >> 32, src.addr, 0, dst.addr, 0, *[0] * 13))
        assert a.collect()[mid].payload == struct.pack("<I", want)
    assert copied()
    # a table of three CUs: CU 2 runs, CU 3 does not
    mid = a.chan.send(Opcode.CONFIG_CU, LAYOUTS[Opcode.CONFIG_CU].req.pack(3, *[1 << 17] * 3,
                                                                          *[0] * 29))
    assert a.collect()[mid].payload == b"\0" * 4
    assert a.run([cmd(2)]) == (0, 0, 0) and copied()
    assert a.run([cmd(3)]) == (load, 0, load) and not copied()
    # without any CONFIG_CU a context has no CU at all
    bare = PyContext(c, start_col=first + 2, config_cu=False)
    assert bare.run([cmd(0)]) == (load, 0, load)
    assert d.device.status()["counters"]["internal_errors"] == 0


# -- every slot type the driver fills (docs/spec/jobs.md §4, §5) ---------------------------


@pytest.mark.parametrize("chip", CHIPS)
def test_slot_types(chip: str) -> None:
    from xdna_emu.fw.messages import KERNEL_OP_TXN, SLOT_CF, SLOT_DPU, SlotType

    d, c = _setup(chip)
    ctx = PyContext(c)
    s, o = c.alloc(64), c.alloc(64)
    s.array(np.int32)[:] = np.arange(16)
    copy = K.Desc(K.Kernel.COPY, K.DType.INT32, count=16)
    inst = ctx.inst_bo(copy)
    args = struct.pack("<4I", s.addr, 0, o.addr, 0)
    props = struct.pack("<2I", 0xAA, 0xBB)

    def run(raw: bytes, count: int = 1, op: Opcode = Opcode.CHAIN_EXEC_NPU) -> tuple[int, int, int]:
        res = ctx.result(ctx.submit([Cmd(copy)] * count, op, raw=raw))
        assert res is not None
        return res

    def done() -> bool:
        ok = (o.array(np.int32) == np.arange(16)).all()
        o.array(np.int32)[:] = 0
        return bool(ok)

    # PARTIAL_ELF (START_NPU): the properties come first and are skipped
    assert run(SLOT_NPU.pack(SlotType.PARTIAL_ELF, inst.addr, 0, 0, 48, 0, 0, 2, 0, 6) + props + args) == (0, 0, 0)
    assert done()
    # NON_ELF (START_CU): the CU payload, words 0/1 naming the instruction buffer
    cf = struct.pack("<2I", inst.addr & 0xFFFFFFFF, inst.addr >> 32) + args
    assert run(SLOT_NPU.pack(SlotType.NON_ELF, 0, 0, 0, 0, 0, 0, 0, 0, 6) + cf) == (0, 0, 0)
    assert done()
    # PREEMPT: save/restore buffers must be reachable, nothing else changes
    save = c.alloc(4096)
    pre = SLOT_NPU.pack(SlotType.PREEMPT, inst.addr, save.addr, save.addr, 48, 4096, 4096, 0, 0, 4)
    assert run(pre + args) == (0, 0, 0)
    assert done()
    # ELF: one argument KERNEL_OP_TXN; the buffer addresses follow the descriptor
    elf_inst = ctx.inst_bo(K.encode(copy) + struct.pack("<2Q", s.addr, o.addr))
    elf = SLOT_NPU.pack(SlotType.ELF, elf_inst.addr, 0, 0, 64, 0, 0, 0, 0, 1)
    assert run(elf + struct.pack("<I", KERNEL_OP_TXN)) == (0, 0, 0)
    assert done()
    assert run(elf + struct.pack("<I", 1)) == (INV, 0, INV)  # not KERNEL_OP_TXN
    # the legacy chains: DPU slot (props skipped) and execbuf_cf slot
    dpu = SLOT_DPU.pack(inst.addr, 48, 2, 0, 6) + props + args
    assert run(dpu, op=Opcode.CHAIN_EXEC_DPU) == (0, 0, 0) and done()
    assert run(SLOT_CF.pack(0, 6) + cf, op=Opcode.CHAIN_EXEC_BUFFER_CF) == (0, 0, 0) and done()
    # bad input: props past the arguments, an unknown slot type
    assert run(SLOT_NPU.pack(SlotType.PARTIAL_ELF, inst.addr, 0, 0, 48, 0, 0, 5, 0, 4) + args) == (INV, 0, INV)
    assert run(SLOT_NPU.pack(5, inst.addr, 0, 0, 48, 0, 0, 0, 0, 4) + args) == (INV, 0, INV)


@pytest.mark.parametrize("chip", CHIPS)
def test_empty_program_completes(chip: str) -> None:
    """An all-zero instruction buffer is an empty program, whatever its size or arguments."""
    from xdna_emu.fw.messages import SlotType

    d, c = _setup(chip)
    ctx = PyContext(c)
    zero, o = c.alloc(4096), c.alloc(64)
    for size, nargs in ((4096, 0), (16, 0), (0, 0), (48, 2)):
        raw = SLOT_NPU.pack(SlotType.PARTIAL_ELF, zero.addr, 0, 0, size, 0, 0, 0, 0, 2 * nargs)
        raw += struct.pack(f"<{2 * nargs}I", *[o.addr, 0] * nargs)
        assert ctx.result(ctx.submit([Cmd(K.Desc(K.Kernel.NOP))], raw=raw)) == (0, 0, 0)
    assert (o.array(np.uint8) == 0).all()
    st = d.device.status()["contexts"][0]
    assert st["completed"] == 4 and st["failed"] == 0
    # one non-zero byte makes it a (bad) descriptor again
    zero.view[100] = 1
    raw = SLOT_NPU.pack(SlotType.PARTIAL_ELF, zero.addr, 0, 0, 4096, 0, 0, 0, 0, 0)
    assert ctx.result(ctx.submit([Cmd(K.Desc(K.Kernel.NOP))], raw=raw)) == (INV, 0, INV)


@pytest.mark.parametrize("chip", CHIPS)
def test_fail_places_its_error(chip: str) -> None:
    """A fail descriptor chooses column (within the partition), row, module and event."""
    d = PyDriver(make_test_device(chip))
    d.bring_up(async_events=False)
    c = PyClient(d, 1, heap_size=2 * MiB, chunk=MiB)
    t, first = d.chip.tiles, d.chip.limits.first_col
    ctx = PyContext(c, start_col=first, num_col=2)
    evbuf = bytearray(0x2000)
    d.iommu.map(0, 0x7000_0000, len(evbuf), DMA_READ | DMA_WRITE, None, mem=evbuf)
    ok = [(1, t.shim_row_start, 2, 64), (0, t.core_row_start + 1, 1, 59), (1, t.mem_row_start, 0, 138),
          (0, t.core_row_start, 0, 97)]
    for col, row, mod, ev in ok:
        ev_id = d.mgmt.send(Opcode.REGISTER_ASYNC_EVENT_MSG, struct.pack("<QI", 0x7000_0000, 0x2000))
        fail = K.Desc(K.Kernel.FAIL, error=Status.AIE_BUS_ERROR, where=K.place(col, row, mod, ev))
        assert ctx.run([Cmd(fail)]) == (Status.APP_ERT_FIRST_ERROR, 0, Status.AIE_BUS_ERROR)
        (r,) = d.mgmt.drain()
        assert r.id == ev_id
        e = AIE_ERROR_ENTRY.unpack_from(evbuf, ASYNC_EVENT_HDR.size)
        assert (e[0], e[1], e[3], e[4]) == (row, first + col, mod, ev)
    # bad placements: a column past the partition, a row past the array, a module the row
    # has not (PL off the shim row, core on the shim row, memory on the shim row)
    bad = [(2, t.core_row_start, 1, 59), (0, t.rows, 1, 59), (0, t.core_row_start, 2, 64),
           (0, t.shim_row_start, 1, 59), (0, t.shim_row_start, 0, 97), (0, t.core_row_start, 7, 1)]
    for col, row, mod, ev in bad:
        fail = K.Desc(K.Kernel.FAIL, where=K.place(col, row, mod, ev))
        assert ctx.run([Cmd(fail)]) == (INV, 0, INV), (col, row, mod, ev)
    assert d.mgmt.drain() == []  # no event for them
    assert ctx.run([Cmd(K.Desc(K.Kernel.NOP))]) == (0, 0, 0)


@pytest.mark.parametrize("chip", CHIPS)
def test_debug_bo_markers(chip: str) -> None:
    from xdna_emu.fw.messages import DEBUG_MARKER, DEBUG_MARKER_MAGIC

    d, c = _setup(chip, heap=16 * MiB, chunk=16 * MiB)
    ctx = PyContext(c)
    dbg = c.alloc(0x1000)
    off = dbg.addr - HEAP_DEV_ADDR
    lay = LAYOUTS[Opcode.CONFIG_DEBUG_BO]

    def cfg(offset: int, size: int, config: int) -> int:
        mid = ctx.chan.send(Opcode.CONFIG_DEBUG_BO, lay.req.pack(offset, size, config))
        return lay.resp.unpack(ctx.collect()[mid].payload)[0]

    bad = Status.RTOS_DEBUG_BO_CONFIG_FAILED
    assert cfg(off, 0x800, 1) == bad  # smaller than DEBUG_BO_MIN
    assert cfg(off, 0x1000, 0) == bad  # nothing registered
    assert cfg(16 * MiB, 0x1000, 1) == bad  # outside the heap
    assert ctx.run([Cmd(K.Desc(K.Kernel.DEBUG, count=1))]) == (0, 0, 0)  # dropped: no BO
    assert cfg(off, 0x1000, 1) == 0
    assert cfg(off, 0x1000, 1) == bad  # already registered
    n = 0x1000 // DEBUG_MARKER.size + 2  # wraps
    for b in range(0, n, 50):
        batch = [Cmd(K.Desc(K.Kernel.DEBUG, count=100 + i)) for i in range(b, min(n, b + 50))]
        assert ctx.run(batch) == (0, 0, 0)
    recs = [DEBUG_MARKER.unpack_from(dbg.view, i * DEBUG_MARKER.size) for i in range(3)]
    slots = 0x1000 // DEBUG_MARKER.size
    assert recs == [(DEBUG_MARKER_MAGIC, slots, 100 + slots, ctx.id),
                    (DEBUG_MARKER_MAGIC, slots + 1, 100 + slots + 1, ctx.id),
                    (DEBUG_MARKER_MAGIC, 2, 102, ctx.id)]
    assert cfg(off, 0x1000, 0) == 0
    assert ctx.run([Cmd(K.Desc(K.Kernel.DEBUG, count=7))]) == (0, 0, 0)
    assert DEBUG_MARKER.unpack_from(dbg.view, 0)[2] == 100 + slots  # untouched once removed


def test_fw_log_has_job_ends_faults_and_hangs() -> None:
    """With a log ring at DEBUG the firmware writes each job's end (DEBUG), a DMA fault and a
    hang (ERROR), and the trace ring gets JOB_END and FAULT records (docs/spec/firmware.md §8a)."""
    from xdna_emu.fw.messages import (
        DPT_CONSTS,
        DPT_FOOTER,
        FW_LOG_HEADER,
        FW_TRACE_RECORD,
        FwTraceEvent,
    )

    d, c = _setup("npu4", pasid=4, heap=4 * MiB)
    log, trace = bytearray(0x4000), bytearray(0x4000)
    d.iommu.map(0, 0x7000_0000, len(log), DMA_READ | DMA_WRITE, None, mem=log)
    d.iommu.map(0, 0x7100_0000, len(trace), DMA_READ | DMA_WRITE, None, mem=trace)
    d.msg_ok(Opcode.CONFIG_FW_LOG, 0x7000_0000, len(log), *(0,) * 5)
    d.msg_ok(Opcode.SET_RUNTIME_CONFIG, DPT_CONSTS["RT_LOG_LEVEL"], 4)  # DEBUG
    d.msg_ok(Opcode.START_FW_TRACE, 0xFFFFFFFF, 1, 0, 0x7100_0000, len(trace))
    src, dst = c.alloc(64), c.alloc(64)
    copy = K.Desc(K.Kernel.COPY, K.DType.INT32, count=16)
    ok = PyContext(c)
    assert ok.run([Cmd(copy, [src, dst])]) == (0, 0, 0)
    faulty = PyContext(c)
    assert _stalls(faulty, [Cmd(copy, [0x1234_0000_0000, dst])])
    hung = PyContext(c)
    hung.submit([Cmd(K.Desc(K.Kernel.HANG))])
    hung.collect()
    page = DPT_CONSTS["DPT_FOOTER_PAGE"]
    tail = DPT_FOOTER.unpack_from(log, len(log) - page)[-1]
    texts, off = [], 0
    while off < tail:
        _ts, flags, _l, _m = FW_LOG_HEADER.unpack_from(log, off)
        argc = flags >> 24
        texts.append((flags >> 8 & 7, bytes(log[off + 16:off + 16 + 4 * argc]).split(b"\0")[0].decode()))
        off += -(-(16 + 4 * argc) // 8) * 8
    assert any(lv == 4 and f"context {ok.id} job" in t and "status 0x0" in t for lv, t in texts), texts
    assert any(lv == 1 and f"context {faulty.id}: DMA fault" in t for lv, t in texts), texts
    assert any(lv == 1 and f"context {hung.id} hung" in t for lv, t in texts), texts
    ttail = DPT_FOOTER.unpack_from(trace, len(trace) - page)[-1]
    events = {FW_TRACE_RECORD.unpack_from(trace, o)[2] for o in range(0, ttail, FW_TRACE_RECORD.size)}
    assert {FwTraceEvent.CTX_CREATE, FwTraceEvent.JOB_END, FwTraceEvent.FAULT, FwTraceEvent.HANG} <= events
