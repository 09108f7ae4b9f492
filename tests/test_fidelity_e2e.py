"""End to end through the C shim: every command form the AIE2 driver sends, on npu1 and
npu4, with the firmware opcode and slot type the driver picks (docs/spec/jobs.md §4, §5)."""

from __future__ import annotations

import errno
import json
import struct
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("xdna_emu.device")

from xdna_emu import Emulator  # noqa: E402
from xdna_emu import kernels as K  # noqa: E402
from xdna_emu.control import ControlClient  # noqa: E402
from xdna_emu.fw.image import write_firmware  # noqa: E402
from xdna_emu.fw.messages import Opcode, SlotType  # noqa: E402
from xdna_emu.shim import (  # noqa: E402
    BO_CMD,
    BO_DEV,
    BO_SHARE,
    SYNC_FROM_DEVICE,
    ErtState,
    Shim,
    ShimError,
    ert_cmd_chain,
    ert_start_cu,
    ert_start_dpu,
    ert_start_npu,
    ert_start_preempt,
)

CHIPS = ["npu1", "npu4"]
#: firmware protocols without NPU_COMMAND (npu1 5.8, npu4 6.15 introduce it)
LEGACY = {"npu1": "5.7", "npu4": "6.12"}
N = 256


def errno_of(fn, *args, **kw) -> int:  # noqa: ANN001
    with pytest.raises(ShimError) as ei:
        fn(*args, **kw)
    return ei.value.errno


class Bufs:
    """An instruction BO holding a copy descriptor, a source and a destination BO."""

    def __init__(self, shim: Shim, inst: bytes | None = None, elf: bool = False) -> None:
        self.shim = shim
        self.src, self.dst = shim.bo_create(BO_SHARE, 4 * N), shim.bo_create(BO_SHARE, 4 * N)
        self.data = np.arange(N, dtype=np.int32) * 3 + 1
        np.frombuffer(shim.bo_map(self.src), np.int32)[:] = self.data
        self.inst = shim.bo_create(BO_DEV, 4096)
        body = K.encode(K.Desc(K.Kernel.COPY, K.DType.INT32, N)) if inst is None else inst
        if elf:  # ELF form: the buffer addresses follow the descriptor
            body += struct.pack("<2Q", self.addr(self.src), self.addr(self.dst))
        self.size = len(body)
        shim.bo_map(self.inst)[: len(body)] = body
        self.save = shim.bo_create(BO_DEV, 4096)

    def addr(self, bo: int) -> int:
        return self.shim.bo_info(bo)["xdna_addr"]

    @property
    def args(self) -> list[int]:
        return [self.addr(self.src), self.addr(self.dst)]

    def cmd(self, op: str, cu_mask: int = 1) -> bytes:
        ia = self.addr(self.inst)
        if op == "cu":
            words = [ia & 0xFFFFFFFF, ia >> 32]
            for a in self.args:
                words += [a & 0xFFFFFFFF, a >> 32]
            return ert_start_cu(words, cu_mask)
        if op == "dpu":
            return ert_start_dpu(ia, self.size, self.args, cu_mask)
        if op == "npu":
            return ert_start_npu(ia, self.size, self.args, props=[7, 8], cu_mask=cu_mask)
        sv = (self.addr(self.save), 4096)
        if op == "preempt":
            return ert_start_preempt(ia, self.size, sv, sv, self.args, props=[9], cu_mask=cu_mask)
        return ert_start_preempt(ia, self.size, sv, sv, cu_mask=cu_mask, elf=True)

    def copied(self) -> bool:
        self.shim.bo_sync(self.dst, SYNC_FROM_DEVICE)
        out = np.frombuffer(self.shim.bo_map(self.dst), np.int32)
        ok = bool((out == self.data).all())
        out[:] = 0
        return ok


def cmd_bo(shim: Shim, data: bytes) -> int:
    bo = shim.bo_create(BO_CMD, 4096)
    shim.bo_map(bo)[: len(data)] = data
    return bo


def run(shim: Shim, ctx: int, data: bytes) -> ErtState:
    bo = cmd_bo(shim, data)
    shim.wait(ctx, shim.exec(ctx, bo))
    return shim.cmd_state(bo)


def fw_ctx(emu: Emulator, shim: Shim, ctx: int) -> dict:
    """The firmware's view of a context (daemon status)."""
    fw_id = shim.hwctx_info(ctx)["fw_ctx_id"]
    with ControlClient(emu.socket) as cl:
        cl.version()
        st = cl.status()
    dev = st.get("device", st)
    return next(c for c in dev["contexts"] if c["id"] == fw_id)


#: command form -> slot type the driver fills into a CHAIN_EXEC_NPU cmd list
NPU_SLOTS = {"cu": SlotType.NON_ELF, "dpu": SlotType.PARTIAL_ELF, "npu": SlotType.PARTIAL_ELF,
             "preempt": SlotType.PREEMPT, "elf": SlotType.ELF}


@pytest.mark.parametrize("xdna_chip", CHIPS)
def test_every_command_form(xdna_chip: str, xdna_emulator: Emulator, xdna_shim: Shim) -> None:
    shim, emu = xdna_shim, xdna_emulator
    ctx = shim.hwctx_create()
    preempt = xdna_chip == "npu4"  # npu1 firmware has no PREEMPT feature
    for op, slot in NPU_SLOTS.items():
        b = Bufs(shim, elf=op == "elf")
        if op in ("preempt", "elf") and not preempt:
            assert errno_of(shim.exec, ctx, cmd_bo(shim, b.cmd(op))) == errno.EOPNOTSUPP
            continue
        assert run(shim, ctx, b.cmd(op)) == ErtState.COMPLETED, op
        assert b.copied(), op
        st = fw_ctx(emu, shim, ctx)
        assert (st["last_op"], st["last_slot"]) == (Opcode.CHAIN_EXEC_NPU, slot), op
    # a chain of legacy START_CU commands goes out as one CHAIN_EXEC_NPU of NON_ELF slots
    bs = [Bufs(shim) for _ in range(3)]
    chain = cmd_bo(shim, ert_cmd_chain([cmd_bo(shim, b.cmd("cu")) for b in bs]))
    shim.wait(ctx, shim.exec(ctx, chain))
    assert shim.cmd_state(chain) == ErtState.COMPLETED and all(b.copied() for b in bs)


@pytest.mark.parametrize("chip", CHIPS)
def test_legacy_firmware_picks_cf_and_dpu_chains(
        chip: str, xdna_emulator_factory, tmp_path: Path) -> None:  # noqa: ANN001
    emu = xdna_emulator_factory(chip)
    write_firmware(chip, tmp_path, protocol=LEGACY[chip])
    with Shim.open(emu.socket) as shim:
        shim.probe(tmp_path)
        ctx = shim.hwctx_create()
        for op, want in (("cu", Opcode.CHAIN_EXEC_BUFFER_CF), ("npu", Opcode.CHAIN_EXEC_DPU),
                         ("dpu", Opcode.CHAIN_EXEC_DPU)):
            b = Bufs(shim)
            assert run(shim, ctx, b.cmd(op)) == ErtState.COMPLETED and b.copied(), op
            assert fw_ctx(emu, shim, ctx)["last_op"] == want
        b = Bufs(shim, elf=True)
        for op in ("preempt", "elf"):  # the legacy message set has no preempt slots
            assert errno_of(shim.exec, ctx, cmd_bo(shim, b.cmd(op))) == errno.EOPNOTSUPP


@pytest.mark.parametrize("xdna_chip", CHIPS)
def test_empty_program_on_one_cu_completes(xdna_chip: str, xdna_shim: Shim) -> None:
    """What a program written for the real driver sends first: an all-zero instruction
    buffer on a context with one CU."""
    shim = xdna_shim
    ctx = shim.hwctx_create()
    inst = shim.bo_create(BO_DEV, 8192)  # fresh BOs are zero
    addr = shim.bo_info(inst)["xdna_addr"]
    for data in (ert_start_npu(addr, 8192), ert_start_dpu(addr, 64),
                 ert_start_cu([addr & 0xFFFFFFFF, addr >> 32])):
        assert run(shim, ctx, data) == ErtState.COMPLETED
    assert shim.hwctx_info(ctx)["completed"] == 3


@pytest.mark.parametrize("xdna_chip", CHIPS)
def test_bad_command_forms(xdna_chip: str, xdna_shim: Shim) -> None:
    shim = xdna_shim
    ctx = shim.hwctx_create()
    b = Bufs(shim)
    for op in ("cu", "npu", "dpu"):
        # CU 1 (the context has only CU 0), or no CU at all: the driver's EINVAL
        assert errno_of(shim.exec, ctx, cmd_bo(shim, b.cmd(op, cu_mask=2))) == errno.EINVAL
        assert errno_of(shim.exec, ctx, cmd_bo(shim, b.cmd(op, cu_mask=0))) == errno.EINVAL
    # a chain mixing START_CU and START_NPU
    mixed = ert_cmd_chain([cmd_bo(shim, b.cmd("cu")), cmd_bo(shim, b.cmd("npu"))])
    assert errno_of(shim.exec, ctx, cmd_bo(shim, mixed)) == errno.EINVAL
    # START_DPU with chained (multi-column) entries
    dpu = bytearray(b.cmd("dpu"))
    dpu[4 * 5 : 4 * 6] = struct.pack("<I", 1)
    assert errno_of(shim.exec, ctx, cmd_bo(shim, bytes(dpu))) == errno.EINVAL
    # nothing was sent; the context still runs
    assert run(shim, ctx, b.cmd("npu")) == ErtState.COMPLETED and b.copied()
    assert shim.hwctx_info(ctx)["submitted"] == 1


# -- a fault is a hang; TIMEOUT carries the health record (docs/spec/jobs.md §2, §6) ------

HEALTH = struct.Struct("<8I")  # ctx_health_data, AIE2 layout
FORGED = 0x7FF0_1234_5000  # nothing is mapped there


def health_of(shim: Shim, bo: int) -> tuple[int, ...]:
    """The health record in a command BO's payload (after its one CU mask word)."""
    return HEALTH.unpack_from(bytes(shim.bo_map(bo)[8 : 8 + HEALTH.size]))


def counters(emu: Emulator) -> dict:
    with ControlClient(emu.socket) as cl:
        cl.version()
        st = cl.status()
    return st.get("device", st)["counters"]


def expected(chip: str, txn: int, ctx_pc: int, fatal: tuple[int, int, int, int]) -> tuple:
    """npu4 firmware answers GET_APP_HEALTH (>= 6.18); npu1's cannot, so the driver writes
    its "not captured" defaults."""
    if chip == "npu1":
        return (1, 0, 0xFFFFFFFF, 0, 0, 0, 0, 0)
    return (1, 0, txn, ctx_pc, *fatal)


@pytest.mark.parametrize("xdna_chip", CHIPS)
def test_fault_stalls_until_tdr_and_reports_health(xdna_chip: str, xdna_emulator: Emulator,
                                                   xdna_shim: Shim) -> None:
    shim, emu = xdna_shim, xdna_emulator
    shim.set_tdr_ms(200)
    ctx = shim.hwctx_create()
    b = Bufs(shim)
    before = counters(emu)["iommu_faults"]
    bad = cmd_bo(shim, ert_start_npu(b.addr(b.inst), b.size, [b.addr(b.src), FORGED]))
    seq = shim.exec(ctx, bad)
    assert errno_of(shim.wait, ctx, seq, 50) == errno.ETIME  # it stalls, no ERROR
    shim.wait(ctx, seq, 20000)
    assert shim.cmd_state(bad) == ErtState.TIMEOUT
    # txn op NONE (invalid access), nothing completed, FAULT / access error / address / copy
    assert health_of(shim, bad) == expected(
        xdna_chip, 0xFFFFFFFF, 0, (3, 0x1000004, FORGED & 0xFFFFFFFF, K.Kernel.COPY))
    assert counters(emu)["iommu_faults"] == before + 1
    assert not b.copied()  # nothing touched
    info = shim.hwctx_info(ctx)
    assert (info["timeouts"], info["state"]) == (1, "active")
    assert run(shim, ctx, b.cmd("npu")) == ErtState.COMPLETED and b.copied()  # recovered


@pytest.mark.parametrize("xdna_chip", CHIPS)
def test_chain_timeout_names_the_hung_command(xdna_chip: str, xdna_shim: Shim) -> None:
    shim = xdna_shim
    shim.set_tdr_ms(200)
    ctx = shim.hwctx_create()
    b = Bufs(shim)
    hang = Bufs(shim, inst=K.encode(K.Desc(K.Kernel.HANG)))
    subs = [cmd_bo(shim, b.cmd("npu")), cmd_bo(shim, b.cmd("npu")),
            cmd_bo(shim, ert_start_npu(hang.addr(hang.inst), hang.size))]
    chain = cmd_bo(shim, ert_cmd_chain(subs))
    shim.wait(ctx, shim.exec(ctx, chain), 20000)
    assert shim.cmd_state(chain) == ErtState.TIMEOUT
    idx = 2 if xdna_chip == "npu4" else 0  # without a report the driver cannot tell
    assert struct.unpack_from("<I", bytes(shim.bo_map(chain)), 4 * 3)[0] == idx  # error_index
    assert shim.cmd_state(subs[idx]) == ErtState.TIMEOUT
    # txn op = the hang kernel, 2 commands completed, fatal HANG in the hang kernel
    assert health_of(shim, subs[idx]) == expected(xdna_chip, K.Kernel.HANG, 2,
                                                  (1, 0, 0, K.Kernel.HANG))


# -- decoded async errors (docs/spec/jobs.md §5, §6) --------------------------------------


def fail_cmd(shim: Shim, where: int, error: int = 0x1000005) -> bytes:
    b = Bufs(shim, inst=K.encode(K.Desc(K.Kernel.FAIL, error=error, where=where)))
    return ert_start_npu(b.addr(b.inst), b.size)


def xrt_code(num: int, module: int) -> int:
    """XRT_ERROR_CODE_BUILD(num, DRIVER_AIE 4, SEVERITY_CRITICAL 3, module, CLASS_AIE 2)."""
    return num | 4 << 16 | 3 << 24 | module << 32 | 2 << 40


@pytest.mark.parametrize("xdna_chip", CHIPS)
def test_async_errors_are_decoded_and_sticky(xdna_chip: str, xdna_shim: Shim) -> None:
    from xdna_emu.chips import load_chip
    from xdna_emu.testing.wait import wait_until

    shim = xdna_shim
    t = load_chip(xdna_chip).tiles
    first = shim.hwctx_info(ctx := shim.hwctx_create(num_cols=2))["start_col"]
    cases = [  # (col, row, module, event) -> (num, module, names)
        ((1, t.shim_row_start, 2, 64), (7, 7, ("AIE_BUS", "AIE_PL"))),  # shim-tile bus error
        ((0, t.core_row_start, 1, 59), (8, 3, ("AIE_INSTRUCTION", "AIE_CORE"))),
        ((1, t.mem_row_start, 0, 133), (11, 4, ("AIE_DMA", "AIE_MEMORY"))),  # memory tile
        ((0, t.core_row_start + 1, 0, 91), (12, 4, ("AIE_MEM_PARITY", "AIE_MEMORY"))),
        ((0, t.core_row_start, 1, 1), (15, 3, ("UNKNOWN", "AIE_CORE"))),  # no table entry
    ]
    last_ts = 0
    for n, (place, (num, mod, names)) in enumerate(cases, 1):
        assert run(shim, ctx, fail_cmd(shim, K.place(*place))) == ErtState.ERROR
        e = wait_until(shim.last_async_error, lambda e, n=n: e["count"] >= n, what="the error")
        assert (e["col"], e["row"], e["mod_type"], e["event_id"]) == (first + place[0], *place[1:])
        assert e["err_code"] == xrt_code(num, mod)
        assert (e["err_num"], e["err_module"], e["err_severity"], e["err_class"], e["err_driver"]) == (
            *names, "CRITICAL", "AIE", 4)
        assert e["ts_ns"] > last_ts
        last_ts = e["ts_ns"]
    # sticky: jobs that raise nothing leave the record alone
    b = Bufs(shim)
    assert run(shim, ctx, b.cmd("npu")) == ErtState.COMPLETED
    e = shim.last_async_error()
    assert (e["count"], e["ts_ns"], e["err_num"]) == (len(cases), last_ts, "UNKNOWN")


@pytest.mark.parametrize("xdna_chip", CHIPS)
def test_error_placement_outside_the_partition(xdna_chip: str, xdna_shim: Shim) -> None:
    from xdna_emu.chips import load_chip

    shim = xdna_shim
    t = load_chip(xdna_chip).tiles
    ctx, other = shim.hwctx_create(num_cols=1), shim.hwctx_create(num_cols=1)
    for place in ((1, t.core_row_start, 1, 59), (0, t.rows, 1, 59), (0, t.core_row_start, 2, 64),
                  (0, t.shim_row_start, 1, 59)):
        assert run(shim, ctx, fail_cmd(shim, K.place(*place))) == ErtState.ERROR
    assert shim.last_async_error()["count"] == 0  # rejected: nothing was raised
    b = Bufs(shim)
    assert run(shim, other, b.cmd("npu")) == ErtState.COMPLETED and b.copied()
    assert run(shim, ctx, b.cmd("npu")) == ErtState.COMPLETED and b.copied()


# -- QoS drives DPM (docs/spec/jobs.md §6) --------------------------------------------------

#: hclk (MHz) after each step: create A (gops 100, 10 fps), B (100 GOPS, 25 fps), C (30 GOPS,
#: 10 ms latency), all with max_opc 2048; then destroy C, B, A. The driver's math:
#: level = lowest with 2048 * hclk / 1000 >= gops * max(fps, 1000 / latency).
QOS_HCLK = {"npu1": [800, 1309, 1600, 1309, 800, 800], "npu4": [792, 1267, 1584, 1267, 792, 792]}
QOS_LEVELS = {"npu1": [0, 5, 7], "npu4": [0, 3, 6]}


def smu_status(emu: Emulator) -> dict:
    with ControlClient(emu.socket) as cl:
        cl.version()
        st = cl.status()
    return st.get("device", st)["smu"]


@pytest.mark.parametrize("xdna_chip", CHIPS)
def test_qos_drives_dpm(xdna_chip: str, xdna_emulator: Emulator, xdna_shim: Shim) -> None:
    shim, emu = xdna_shim, xdna_emulator
    qos = [dict(gops=100, fps=10), dict(gops=100, fps=25), dict(gops=30, latency_ms=10)]
    seen, ctxs = [], []
    for q, want in zip(qos, QOS_LEVELS[xdna_chip], strict=True):
        ctxs.append(shim.hwctx_create(num_cols=1, max_opc=2048, **q))
        assert shim.hwctx_info(ctxs[-1])["dpm_level"] == want
        seen.append(shim.power()["hclk_mhz"])
    for c in reversed(ctxs):
        shim.hwctx_destroy(c)
        seen.append(shim.power()["hclk_mhz"])
    assert seen == QOS_HCLK[xdna_chip]
    p, smu = shim.power(), smu_status(emu)  # the clock query is what the SMU model runs at
    assert (p["npuclk_mhz"], p["hclk_mhz"]) == (smu["npuclk_mhz"], smu["hclk_mhz"])


@pytest.mark.parametrize("xdna_chip", CHIPS)
def test_client_sessions_qos_drives_dpm(xdna_chip: str, xdna_emulator: Emulator,
                                        xdna_shim: Shim) -> None:
    """QoS of client sessions' contexts counts with the driver's own: the H-clock is that of
    the highest level any session asks for, and falls back as their contexts (or the
    sessions) go. A client's clock query reports what the SMU runs at (docs/spec/jobs.md §6)."""
    from xdna_emu.testing.wait import wait_until

    drv, emu = xdna_shim, xdna_emulator
    low, mid, top = QOS_HCLK[xdna_chip][:3]  # the levels QOS_LEVELS names
    qos = [dict(gops=100, fps=10), dict(gops=100, fps=25), dict(gops=30, latency_ms=10)]

    def hclk_is(want: int, *shims: Shim) -> None:
        for sh in (drv, *shims):
            wait_until(lambda sh=sh: sh.power()["hclk_mhz"], lambda h: h == want,
                       what=f"H-clock {want} MHz ({sh is drv})")
        assert smu_status(emu)["hclk_mhz"] == want

    mine = drv.hwctx_create(num_cols=1, max_opc=2048, **qos[0])
    hclk_is(low)
    with Shim.open(emu.socket) as a, Shim.open(emu.socket) as b:
        a.attach()
        b.attach()
        ca = a.hwctx_create(num_cols=1, max_opc=2048, **qos[1])
        assert a.hwctx_info(ca)["dpm_level"] == QOS_LEVELS[xdna_chip][1]
        hclk_is(mid, a, b)
        # out of range: refused, nothing counted
        assert errno_of(b.hwctx_create, num_cols=1, max_opc=1, gops=100, latency_ms=10) == errno.EINVAL
        cb = b.hwctx_create(num_cols=1, max_opc=2048, **qos[2])
        hclk_is(top, a, b)
        b.hwctx_destroy(cb)
        hclk_is(mid, a, b)
        cb = b.hwctx_create(num_cols=1, max_opc=2048, **qos[2])
        hclk_is(top, a, b)
        b.close()  # the session's contexts go with it
        hclk_is(mid, a)
        a.hwctx_destroy(ca)
        hclk_is(low, a)
    drv.hwctx_destroy(mine)
    hclk_is(low)  # no context: level 0


@pytest.mark.parametrize("xdna_chip", CHIPS)
def test_power_modes_over_qos(xdna_chip: str, xdna_emulator: Emulator, xdna_shim: Shim) -> None:
    shim, emu = xdna_shim, xdna_emulator
    top_hclk, low_hclk, med_hclk = {"npu1": (1600, 800, 1024), "npu4": (1800, 792, 1267)}[xdna_chip]
    ctx = shim.hwctx_create(num_cols=1, gops=100, fps=10, max_opc=2048)  # asks for level 0
    assert shim.power()["hclk_mhz"] == low_hclk
    for mode, hclk, gating in (("turbo", None, None), ("high", top_hclk, True),
                               ("low", low_hclk, True), ("medium", med_hclk, True),
                               ("default", low_hclk, True)):
        if hclk is None:  # TURBO only without contexts
            assert errno_of(shim.set_power_mode, mode) == errno.EBUSY
            continue
        shim.set_power_mode(mode)
        p = shim.power()
        assert (p["hclk_mhz"], p["clock_gating"]) == (hclk, gating), mode
        assert smu_status(emu)["hclk_mhz"] == hclk
    # a context without QoS asks for the top level; a LOW-priority one for level 0
    big = shim.hwctx_create(num_cols=1)
    assert shim.power()["hclk_mhz"] == top_hclk
    shim.hwctx_destroy(big)
    low = shim.hwctx_create(num_cols=1, priority="low")
    assert shim.hwctx_info(low)["dpm_level"] == 0 and shim.power()["hclk_mhz"] == low_hclk
    # in LOW mode the contexts' requests are counted but the clock stays
    shim.set_power_mode("low")
    big = shim.hwctx_create(num_cols=1)
    assert shim.power()["hclk_mhz"] == low_hclk
    shim.set_power_mode("default")
    assert shim.power()["hclk_mhz"] == top_hclk
    for c in (big, low, ctx):
        shim.hwctx_destroy(c)


@pytest.mark.parametrize("xdna_chip", CHIPS)
def test_qos_out_of_range(xdna_chip: str, xdna_shim: Shim) -> None:
    shim = xdna_shim
    other = shim.hwctx_create(num_cols=1)
    # 100 GOPS x 1000/s (1 ms latency) needs 100000 > 2048 x top hclk / 1000
    assert errno_of(shim.hwctx_create, num_cols=1, gops=100, latency_ms=1, max_opc=2048) == errno.EINVAL
    assert errno_of(shim.hwctx_create, num_cols=1, gops=1 << 20, fps=1 << 16) == errno.EINVAL  # overflow
    assert errno_of(shim.hwctx_create, priority=0x123) == errno.EINVAL  # unknown priority
    b = Bufs(shim)
    assert run(shim, other, b.cmd("npu")) == ErtState.COMPLETED and b.copied()  # others run on


# -- context debug BOs (docs/spec/jobs.md §4a) ----------------------------------------------

MARKER = struct.Struct("<4I")  # debug_marker: magic, seq, value, context id
XDBG = 0x47424458


def debug_cmd(shim: Shim, value: int) -> bytes:
    b = Bufs(shim, inst=K.encode(K.Desc(K.Kernel.DEBUG, count=value)))
    return ert_start_npu(b.addr(b.inst), b.size)


@pytest.mark.parametrize("xdna_chip", CHIPS)
def test_debug_bo_markers_and_teardown(xdna_chip: str, xdna_shim: Shim) -> None:
    shim = xdna_shim
    ctx = shim.hwctx_create(num_cols=1)
    fw_id = shim.hwctx_info(ctx)["fw_ctx_id"]
    dbg = shim.bo_create(BO_DEV, 0x1000)
    shim.assign_debug_bo(ctx, dbg)
    for v in (11, 22, 33):
        assert run(shim, ctx, debug_cmd(shim, v)) == ErtState.COMPLETED
    shim.bo_sync(dbg, SYNC_FROM_DEVICE)
    view = bytes(shim.bo_map(dbg))
    assert [MARKER.unpack_from(view, 16 * i) for i in range(4)] == [
        (XDBG, 0, 11, fw_id), (XDBG, 1, 22, fw_id), (XDBG, 2, 33, fw_id), (0, 0, 0, 0)]
    shim.remove_debug_bo(ctx, dbg)
    assert run(shim, ctx, debug_cmd(shim, 44)) == ErtState.COMPLETED  # dropped
    assert MARKER.unpack_from(bytes(shim.bo_map(dbg)), 48) == (0, 0, 0, 0)
    # teardown, context first: the BO is free again and can be bound elsewhere
    shim.assign_debug_bo(ctx, dbg)
    shim.hwctx_destroy(ctx)
    ctx2 = shim.hwctx_create(num_cols=1)
    shim.assign_debug_bo(ctx2, dbg)
    # teardown, BO first: the context goes on without it
    shim.bo_free(dbg)
    assert run(shim, ctx2, debug_cmd(shim, 55)) == ErtState.COMPLETED
    dbg2 = shim.bo_create(BO_DEV, 0x2000)
    shim.assign_debug_bo(ctx2, dbg2)  # the slot is free again
    assert run(shim, ctx2, debug_cmd(shim, 66)) == ErtState.COMPLETED
    shim.bo_sync(dbg2, SYNC_FROM_DEVICE)
    assert MARKER.unpack_from(bytes(shim.bo_map(dbg2)), 0)[:3] == (XDBG, 0, 66)
    shim.hwctx_destroy(ctx2)
    shim.bo_free(dbg2)


@pytest.mark.parametrize("xdna_chip", CHIPS)
def test_debug_bo_bad_input(xdna_chip: str, xdna_shim: Shim) -> None:
    shim = xdna_shim
    ctx, other = shim.hwctx_create(num_cols=1), shim.hwctx_create(num_cols=1)
    small = shim.bo_create(BO_DEV, 0x800)
    assert errno_of(shim.assign_debug_bo, ctx, small) == errno.EINVAL  # too small (< 4 KiB)
    share = shim.bo_create(BO_SHARE, 0x1000)
    assert errno_of(shim.assign_debug_bo, ctx, share) == errno.EINVAL  # not a DEV BO
    dbg = shim.bo_create(BO_DEV, 0x1000)
    shim.assign_debug_bo(ctx, dbg)
    assert errno_of(shim.assign_debug_bo, ctx, dbg) == errno.EBUSY  # already bound
    assert errno_of(shim.assign_debug_bo, other, dbg) == errno.EBUSY  # bound to another
    dbg2 = shim.bo_create(BO_DEV, 0x1000)
    assert errno_of(shim.assign_debug_bo, ctx, dbg2) == errno.EBUSY  # ctx has one
    assert errno_of(shim.remove_debug_bo, other, dbg) == errno.EINVAL  # not other's
    assert errno_of(shim.hwctx_config, ctx, 0, dbg) == errno.EINVAL  # CONFIG_CU needs its table
    b = Bufs(shim)
    assert run(shim, other, b.cmd("npu")) == ErtState.COMPLETED and b.copied()  # others run on
    shim.remove_debug_bo(ctx, dbg)
    shim.assign_debug_bo(other, dbg)


# -- the context runqueue: more contexts than partitions (docs/spec/jobs.md §3a) ------------

#: thousands of jobs per thread, each thread on its own context (the driver's own stress)
JOBS_PER_THREAD = 2000


@pytest.mark.parametrize(("xdna_chip", "cols", "jobs"), [
    ("npu1", 1, JOBS_PER_THREAD), ("npu1", 0, JOBS_PER_THREAD // 2), ("npu4", 0, JOBS_PER_THREAD)])
def test_more_contexts_than_columns(xdna_chip: str, cols: int, jobs: int, xdna_shim: Shim) -> None:
    """Six threads, each running thousands of jobs on its own context, all complete: on npu1
    six one-column contexts share 4 columns (cols 1), or each wants every usable column
    so one runs at a time (cols 0: every job a swap, so fewer jobs); the runqueue swaps
    them (docs/spec/jobs.md §3a)."""
    import threading

    shim = xdna_shim
    limit = shim.info()["hwctx_limit"]
    assert limit == {"npu1": 6, "npu4": 16}[xdna_chip]
    ctxs = [shim.hwctx_create(num_cols=cols) for _ in range(6)]
    errors: list[BaseException] = []

    def worker(ctx: int, seed: int) -> None:
        try:
            b = Bufs(shim)
            cmd = cmd_bo(shim, b.cmd("npu"))
            src = np.frombuffer(shim.bo_map(b.src), np.int32)
            dst = np.frombuffer(shim.bo_map(b.dst), np.int32)
            for i in range(jobs):
                src[0] = i  # each job's result is its own
                src[1] = seed
                shim.wait(ctx, shim.exec(ctx, cmd), 30000)
                assert shim.cmd_state(cmd) == ErtState.COMPLETED, i
                shim.bo_sync(b.dst, SYNC_FROM_DEVICE)
                assert dst[0] == i and dst[1] == seed, (i, dst[:2])
            assert (dst[2:] == b.data[2:]).all()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(c, i)) for i, c in enumerate(ctxs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors, errors[:1]
    infos = [shim.hwctx_info(c) for c in ctxs]
    assert all(i["completed"] == jobs and i["errors"] == 0 for i in infos)
    if xdna_chip == "npu1":  # firmware contexts came and went: CREATE/DESTROY repeated
        assert sum(i["connects"] for i in infos) > len(ctxs) and sum(i["swaps"] for i in infos) > 0
    extra = [shim.hwctx_create() for _ in range(limit - len(ctxs))]
    assert errno_of(shim.hwctx_create) == errno.EBUSY  # hwctx_limit + 1
    for c in ctxs + extra:
        shim.hwctx_destroy(c)


@pytest.mark.parametrize("xdna_chip", ["npu1"])
def test_sessions_share_columns_under_load(xdna_chip: str, xdna_emulator: Emulator,
                                          xdna_shim: Shim) -> None:
    """Three threads of the driver session and three of a client session, each with its own
    context wanting every usable column: one runqueue serves both sessions and every job
    completes (docs/spec/jobs.md §3a)."""
    import threading

    errors: list[BaseException] = []
    jobs = JOBS_PER_THREAD // 4

    def worker(shim: Shim, ctx: int, seed: int) -> None:
        try:
            b = Bufs(shim)
            cmd = cmd_bo(shim, b.cmd("npu"))
            src = np.frombuffer(shim.bo_map(b.src), np.int32)
            dst = np.frombuffer(shim.bo_map(b.dst), np.int32)
            for i in range(jobs):
                src[0], src[1] = i, seed
                shim.wait(ctx, shim.exec(ctx, cmd), 30000)
                assert shim.cmd_state(cmd) == ErtState.COMPLETED, i
                shim.bo_sync(b.dst, SYNC_FROM_DEVICE)
                assert dst[0] == i and dst[1] == seed, (i, dst[:2])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    with Shim.open(xdna_emulator.socket) as cl:
        cl.attach()
        owners = [xdna_shim] * 3 + [cl] * 3
        ctxs = [sh.hwctx_create() for sh in owners]
        threads = [threading.Thread(target=worker, args=(sh, c, i))
                   for i, (sh, c) in enumerate(zip(owners, ctxs, strict=True))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        assert not errors, errors[:1]
        infos = [sh.hwctx_info(c) for sh, c in zip(owners, ctxs, strict=True)]
        assert all(i["completed"] == jobs and i["errors"] == 0 for i in infos)
        # each session gave partitions to the other
        assert sum(i["swaps"] for i in infos[:3]) > 0 and sum(i["swaps"] for i in infos[3:]) > 0
        for c in ctxs[3:]:
            cl.hwctx_destroy(c)
    for c in ctxs[:3]:
        xdna_shim.hwctx_destroy(c)


#: idle TDR ticks after which the runqueue disconnects a context (docs/spec/jobs.md §3a)
IDLE_TICKS = 3


def fw_contexts(emu: Emulator) -> tuple[list[dict], int]:
    """The firmware's live contexts and how many it destroyed so far (daemon status)."""
    with ControlClient(emu.socket) as cl:
        cl.version()
        dev = cl.status()
    dev = dev.get("device", dev)
    return dev["contexts"], dev["counters"]["contexts_destroyed"]


@pytest.mark.parametrize("xdna_chip", CHIPS)
def test_idle_context_is_disconnected_and_reconnects(
        xdna_chip: str, xdna_emulator_factory, xdna_firmware_dir: Path, tmp_path: Path) -> None:  # noqa: ANN001
    from xdna_emu.testing.wait import wait_until

    trace = tmp_path / "trace.json"
    emu = xdna_emulator_factory(xdna_chip, trace=trace)
    with Shim.open(emu.socket) as shim:
        shim.probe(xdna_firmware_dir)
        shim.set_tdr_ms(20)
        ctx = shim.hwctx_create()
        b = Bufs(shim)
        assert run(shim, ctx, b.cmd("npu")) == ErtState.COMPLETED and b.copied()
        # nothing to do for IDLE_TICKS ticks: disconnected without any contention
        info = wait_until(lambda: shim.hwctx_info(ctx), lambda i: i["idle_outs"] == 1,
                          what="the idle disconnect")
        assert info["state"] == "idle" and info["swaps"] == 0 and info["connects"] == 1
        live, destroyed = fw_contexts(emu)
        assert live == [] and destroyed == 1  # DESTROY_CONTEXT reached the firmware
        shim.set_tdr_ms(600_000)  # no further idle ticks while the rest runs
        assert run(shim, ctx, b.cmd("npu")) == ErtState.COMPLETED and b.copied()
        info = shim.hwctx_info(ctx)
        assert info["state"] == "active" and info["connects"] == 2 and info["completed"] == 2
        if xdna_chip == "npu4":  # a health query of a disconnected context connects it too
            shim.hwctx_destroy(ctx)
            ctx = shim.hwctx_create()
            shim.set_tdr_ms(20)
            wait_until(lambda: shim.hwctx_info(ctx)["idle_outs"], what="the idle disconnect")
            shim.set_tdr_ms(600_000)
            assert len(shim.app_health(ctx)) > 0
            assert shim.hwctx_info(ctx)["state"] == "active"
        assert [c["id"] for c in fw_contexts(emu)[0]] == [info["fw_ctx_id"]]
        shim.hwctx_destroy(ctx)
    emu.stop()
    # the firmware messages: CREATE/DESTROY_CONTEXT repeat for the one user context
    ev = json.loads(trace.read_text())["traceEvents"]
    ops = [e["name"] for e in ev if e.get("cat") == "mailbox" and e["ph"] == "b"
           and e["name"] in ("CREATE_CONTEXT", "DESTROY_CONTEXT")]
    assert ops == ["CREATE_CONTEXT", "DESTROY_CONTEXT"] * {"npu1": 2, "npu4": 4}[xdna_chip]


@pytest.mark.parametrize("xdna_chip", CHIPS)
def test_busy_context_is_not_idle_disconnected(xdna_chip: str, xdna_shim: Shim) -> None:
    """A context whose job hangs is TDR's (TIMEOUT, re-created), never an idle disconnect."""
    from xdna_emu.testing.wait import wait_until

    shim = xdna_shim
    shim.set_tdr_ms(20)
    ctx = shim.hwctx_create()
    hang = cmd_bo(shim, ert_start_npu(*inst_of(shim, K.Kernel.HANG)))
    shim.exec(ctx, hang)
    wait_until(lambda: shim.cmd_state(hang), lambda s: s == ErtState.TIMEOUT, what="TDR")
    info = wait_until(lambda: shim.hwctx_info(ctx), lambda i: i["connects"] == 2,
                      what="the re-creation")  # TDR writes TIMEOUT first, then re-creates
    assert info["timeouts"] == 1
    # idle afterwards: disconnected only after its idle ticks
    info = wait_until(lambda: shim.hwctx_info(ctx), lambda i: i["idle_outs"] == 1,
                      what="the idle disconnect")
    assert info["connects"] == 2 and info["state"] == "idle"
    shim.hwctx_destroy(ctx)


def test_disconnected_client_context_still_holds_the_device(xdna_emulator: Emulator,
                                                           xdna_shim: Shim) -> None:
    """A client's context keeps its runtime-PM reference while the runqueue has it
    disconnected (ctrl HWCTX_LIVE): the driver still sees an active context."""
    from xdna_emu.testing.wait import wait_until

    with Shim.open(xdna_emulator.socket) as cl:
        cl.attach()
        cl.set_tdr_ms(20)
        ctx = cl.hwctx_create()
        b = Bufs(cl)
        assert run(cl, ctx, b.cmd("npu")) == ErtState.COMPLETED
        wait_until(lambda: cl.hwctx_info(ctx)["idle_outs"], what="the idle disconnect")
        assert fw_contexts(xdna_emulator)[0] == []
        assert errno_of(xdna_shim.set_power_mode, "turbo") == errno.EBUSY
        assert run(cl, ctx, b.cmd("npu")) == ErtState.COMPLETED and b.copied()
        cl.hwctx_destroy(ctx)
    wait_until(lambda: not fw_contexts(xdna_emulator)[0], what="the client gone")


def inst_of(shim: Shim, kernel: K.Kernel) -> tuple[int, int]:
    """A DEV BO holding ``kernel``'s descriptor: (device address, size)."""
    bo = shim.bo_create(BO_DEV, 4096)
    shim.bo_map(bo)[: K.DESC.size] = K.encode(K.Desc(kernel))
    return shim.bo_info(bo)["xdna_addr"], K.DESC.size


@pytest.mark.parametrize("xdna_chip", CHIPS)
def test_runqueue_swaps_across_sessions(xdna_chip: str, xdna_emulator: Emulator,
                                        xdna_shim: Shim) -> None:
    """Contexts of the driver session and of a client session share the partitions: a job of
    a disconnected client context makes the driver disconnect an idle context of its own,
    and back (docs/spec/jobs.md §3a)."""
    drv = xdna_shim
    limit = drv.info()["hwctx_limit"]
    # npu1: each context wants every usable column (one fits at a time); npu4: all firmware
    # contexts are taken by the driver session
    mine = [drv.hwctx_create() for _ in range(1 if xdna_chip == "npu1" else limit)]
    drv.set_tdr_ms(600_000)  # no idle disconnects: only swaps free a partition here
    bd = Bufs(drv)
    for c in mine:
        assert run(drv, c, bd.cmd("npu")) == ErtState.COMPLETED
    with Shim.open(xdna_emulator.socket) as cl:
        cl.attach()
        cl.set_tdr_ms(600_000)
        theirs = cl.hwctx_create()
        assert cl.hwctx_info(theirs)["state"] == "idle"  # NOAVAIL: created disconnected
        bc = Bufs(cl)
        assert run(cl, theirs, bc.cmd("npu")) == ErtState.COMPLETED and bc.copied()
        assert cl.hwctx_info(theirs)["connects"] == 1
        if xdna_chip == "npu1":  # the firmware holds the client's context, not the driver's
            assert [c["pasid"] for c in fw_contexts(xdna_emulator)[0]] == [cl.info()["pasid"]]
        out = [drv.hwctx_info(c) for c in mine]
        assert sum(i["swaps"] for i in out) == 1  # the least recently active one
        assert out[0]["swaps"] == 1 and out[0]["state"] == "idle"
        # the driver's context wants a partition back: the least recently active idle
        # context goes; on npu1 that is the client's (the driver has no other), on npu4 one
        # of the driver's own
        assert run(drv, mine[0], bd.cmd("npu")) == ErtState.COMPLETED and bd.copied()
        assert drv.hwctx_info(mine[0])["connects"] == 2
        info = cl.hwctx_info(theirs)
        if xdna_chip == "npu1":
            assert info["swaps"] == 1 and info["state"] == "idle"
            # and again: CREATE/DESTROY_CONTEXT repeat for one user context of each session
            assert run(cl, theirs, bc.cmd("npu")) == ErtState.COMPLETED and bc.copied()
            assert cl.hwctx_info(theirs)["connects"] == 2
            assert drv.hwctx_info(mine[0])["swaps"] == 2
        else:
            assert info["swaps"] == 0 and info["state"] == "active"
            assert drv.hwctx_info(mine[1])["swaps"] == 1
        cl.hwctx_destroy(theirs)
    # the client gone, its asks stay counted: its departure is no new ask, so the driver
    # owes nothing and swaps none of its contexts out for it
    swapped = sum(drv.hwctx_info(c)["swaps"] for c in mine)
    for c in mine:
        assert run(drv, c, bd.cmd("npu")) == ErtState.COMPLETED
    assert sum(drv.hwctx_info(c)["swaps"] for c in mine) == swapped
    for c in mine:
        drv.hwctx_destroy(c)


# -- CU bundles (docs/spec/jobs.md §5a) ------------------------------------------------------

#: CUs per context as real binaries have them
NCUS = {"npu1": 8, "npu4": 14}


def bundle_doc(n: int, cols: int = 1) -> dict:
    kinds = ["copy", "scale", "add", "nop"]
    return {"format": "xdna-emu-bundle", "version": 1, "partition": {"columns": cols},
            "cus": [{"name": f"cu{i}-{kinds[i % 4]}", "function": i, "kernel": kinds[i % 4]}
                    for i in range(n)]}


@pytest.mark.parametrize("xdna_chip", CHIPS)
def test_cu_bundle_context(xdna_chip: str, xdna_emulator: Emulator, xdna_firmware_dir: Path) -> None:
    from xdna_emu.runtime import Device, UsageError

    n = NCUS[xdna_chip]
    with Device.open(socket=xdna_emulator.socket, firmware_path=xdna_firmware_dir) as dev:
        ctx = dev.context(bundle=json.dumps(bundle_doc(n)))
        assert len(ctx.bundle.cus) == n and shim_info(dev, ctx)["num_cols"] == 1
        x = dev.buffer(np.arange(64, dtype=np.int32))
        y = dev.buffer(np.zeros(64, dtype=np.int32))
        last = f"cu{max(i for i in range(n) if i % 4 == 3)}-nop"  # a high CU index
        for name, args, want in (("cu0-copy", (x, y), np.arange(64)),
                                 ("cu1-scale", (x, y), np.arange(64) * 3),
                                 (last, (), None)):
            run_ = ctx.run(name, *args, **({"scalar": 3} if "scale" in name else {}))
            assert run_.wait(10) == "completed", name
            # CONFIG_CU is posted without a wait (as the driver does); a job behind it on the
            # same channel has its answer, so the firmware has the CUs by now
            assert fw_ctx(xdna_emulator, dev.shim, ctx.handle)["cus"] == n
            if want is not None:
                assert (y.read() == want).all()
        # bad input: an unknown CU name; duplicate names; an unknown kernel
        with pytest.raises(UsageError):
            ctx.run("no-such-cu")
        dup = bundle_doc(2)
        dup["cus"][1]["name"] = dup["cus"][0]["name"]
        with pytest.raises(UsageError):
            dev.context(bundle=dup)
        bad = bundle_doc(2)
        bad["cus"][0]["kernel"] = "warp-drive"
        with pytest.raises(UsageError):
            dev.context(bundle=bad)
        with pytest.raises(UsageError):
            dev.context(bundle=bundle_doc(33))  # CONFIG_CU carries at most 32
        # the shim side: a second CU table, or a CU BO that is no DEV BO
        bo = dev.shim.bo_create(BO_DEV, 4096)
        assert errno_of(dev.shim.config_cu, ctx.handle, [(bo, 0)]) == errno.EINVAL
        plain = dev.context()
        share = dev.shim.bo_create(BO_SHARE, 4096)
        assert errno_of(dev.shim.config_cu, plain.handle, [(share, 0)]) == errno.EINVAL
        assert errno_of(dev.shim.config_cu, plain.handle, []) == errno.EINVAL
        assert ctx.run("cu0-copy", x, y).wait(10) == "completed"  # still running


def shim_info(dev, ctx) -> dict:  # noqa: ANN001
    return dev.shim.hwctx_info(ctx.handle)


# -- hardware-queue handles (docs/spec/jobs.md §3b) -----------------------------------------


@pytest.mark.parametrize("xdna_chip", CHIPS)
def test_hw_queue_handles(xdna_chip: str, xdna_shim: Shim) -> None:
    shim = xdna_shim
    a, b = shim.hwctx_create(num_cols=1), shim.hwctx_create(num_cols=1)
    qa, qb = shim.hwctx_info(a), shim.hwctx_info(b)
    assert qa["syncobj"] and qb["syncobj"] and qa["syncobj"] != qb["syncobj"]
    assert qa["umq_doorbell"] == qb["umq_doorbell"] == 0  # AIE2: kernel-mode queues
    bufs = Bufs(shim)
    cmd = cmd_bo(shim, bufs.cmd("npu"))
    seq = shim.exec(a, cmd)
    shim.syncobj_wait(qa["syncobj"], seq, 10000)  # the point is the command's seq
    assert shim.cmd_state(cmd) == ErtState.COMPLETED and bufs.copied()
    assert errno_of(shim.syncobj_wait, qb["syncobj"], seq) == errno.EINVAL  # never submitted
    assert errno_of(shim.syncobj_wait, 0xFFFF, 1) == errno.EINVAL  # no such queue
    shim.hwctx_destroy(a)
    assert errno_of(shim.syncobj_wait, qa["syncobj"], seq) == errno.EINVAL  # gone with it
    c = shim.hwctx_create(num_cols=1)
    assert shim.hwctx_info(c)["syncobj"] not in (qb["syncobj"],)
