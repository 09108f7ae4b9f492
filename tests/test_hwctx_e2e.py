"""End to end: buffers, hardware contexts, jobs, TDR, async errors and power management.

The C driver shim (``xdna_emu.shim``) probes a real daemon, creates contexts and runs the
reference kernels of :mod:`xdna_emu.kernels` through command BOs (docs/spec/jobs.md).
"""

from __future__ import annotations

import errno
import importlib.util
import threading
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("xdna_emu.device")

from xdna_emu import Emulator  # noqa: E402
from xdna_emu import kernels as K  # noqa: E402
from xdna_emu.chips import load_chip  # noqa: E402
from xdna_emu.datapath import DATAPATH_ENV  # noqa: E402
from xdna_emu.fw.image import write_firmware  # noqa: E402
from xdna_emu.shim import (  # noqa: E402
    BO_CMD,
    BO_DEV,
    BO_DEV_HEAP,
    BO_SHARE,
    HEAP_DEV_ADDR,
    SYNC_FROM_DEVICE,
    ErtState,
    Shim,
    ShimError,
    chain_error_index,
    ert_cmd_chain,
    ert_start_npu,
)
from xdna_emu.testing.inproc import InProcess  # noqa: E402
from xdna_emu.testing.wait import stop_process, wait_until  # noqa: E402

# contexts, jobs, chains and TDR on both daemon job paths (docs/spec/jobs.md §7); without
# the extension a "c" daemon would run the Python path and prove nothing about C
_NO_C_PATH = importlib.util.find_spec("xdna_emu._datapath") is None
pytestmark = pytest.mark.parametrize("xdna_datapath", [
    pytest.param("c", marks=pytest.mark.skipif(_NO_C_PATH, reason="the C job path is not built")),
    "python",
])

MiB = 1 << 20


@pytest.fixture(scope="module")
def legacy_fw_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("legacy")
    write_firmware("npu4", out, protocol="6.12")  # no NPU_COMMAND: CHAIN_EXEC_DPU
    return out


@pytest.fixture
def emu(xdna_emulator: Emulator) -> Emulator:
    """The plugin's npu4 emulator (``xdna_emulator``), under this module's short name."""
    return xdna_emulator


@pytest.fixture
def shim(xdna_shim: Shim) -> Shim:
    """The plugin's probed shim on ``emu`` (``xdna_shim``), under this module's short name."""
    return xdna_shim


def errno_of(fn, *args, **kw) -> int:  # noqa: ANN001
    with pytest.raises(ShimError) as ei:
        fn(*args, **kw)
    return ei.value.errno


class Job:
    """One START_NPU command: instruction BO + argument BOs + its CMD BO."""

    def __init__(self, shim: Shim, desc: K.Desc, bo_type: int = BO_SHARE,
                 inputs: list[np.ndarray] | None = None) -> None:
        self.shim, self.desc = shim, desc
        self.instr = shim.bo_create(BO_DEV, 64)
        shim.bo_map(self.instr)[: K.DESC.size] = K.encode(desc)
        self.args = [shim.bo_create(bo_type, max(n, 4)) for n in desc.arg_sizes()]
        for bo, arr in zip(self.args, inputs or [], strict=False):
            self.view(bo, arr.dtype)[:] = arr
        self.cmd = shim.bo_create(BO_CMD, 4096)
        self.write_cmd()

    def addr(self, bo: int) -> int:
        return self.shim.bo_info(bo)["xdna_addr"]

    def write_cmd(self) -> None:
        data = ert_start_npu(self.addr(self.instr), K.DESC.size, [self.addr(b) for b in self.args])
        self.shim.bo_map(self.cmd)[: len(data)] = data

    def view(self, bo: int, dtype: np.dtype | type) -> np.ndarray:
        return np.frombuffer(self.shim.bo_map(bo), dtype=dtype)

    def output(self) -> np.ndarray:
        out_dt = np.int32 if self.desc.kernel == K.Kernel.GEMM else K.NUMPY[self.desc.dtype]
        n = self.desc.arg_sizes()[-1] // np.dtype(out_dt).itemsize
        self.shim.bo_sync(self.args[-1], SYNC_FROM_DEVICE)
        return self.view(self.args[-1], out_dt)[:n]

    def run(self, ctx: int, timeout_ms: int = 5000) -> ErtState:
        seq = self.shim.exec(ctx, self.cmd)
        self.shim.wait(ctx, seq, timeout_ms)
        return self.shim.cmd_state(self.cmd)


def copy_job(shim: Shim, n: int = 1024, bo_type: int = BO_SHARE, seed: int = 0) -> tuple[Job, np.ndarray]:
    src = np.random.default_rng(seed).integers(-1000, 1000, n, dtype=np.int32)
    return Job(shim, K.Desc(K.Kernel.COPY, K.DType.INT32, n), bo_type, [src]), src


def chain_cmd(shim: Shim, jobs: list[Job]) -> int:
    cmd = shim.bo_create(BO_CMD, 4096)
    data = ert_cmd_chain([j.cmd for j in jobs])
    shim.bo_map(cmd)[: len(data)] = data
    return cmd


# -- contexts and buffers ----------------------------------------------------------------

def test_context_create_destroy(shim: Shim) -> None:
    ctx = shim.hwctx_create(priority="high")
    info = shim.hwctx_info(ctx)
    assert info["state"] == "active" and info["priority"] == 2
    assert info["msix"] == 1 + info["fw_ctx_id"]
    assert info["num_cols"] == shim.info()["total_col"]
    shim.hwctx_destroy(ctx)
    assert errno_of(shim.hwctx_info, ctx) == errno.EINVAL
    assert errno_of(shim.hwctx_destroy, ctx) == errno.EINVAL
    assert errno_of(shim.hwctx_create, priority=0x123) == errno.EINVAL
    again = shim.hwctx_create()
    assert shim.hwctx_info(again)["fw_ctx_id"] == info["fw_ctx_id"]  # the id was freed


def test_context_limit_then_one_more_is_ebusy(shim: Shim) -> None:
    limit = load_chip("npu4").limits.hwctx_limit
    ctxs = [shim.hwctx_create() for _ in range(limit)]
    assert len({shim.hwctx_info(c)["fw_ctx_id"] for c in ctxs}) == limit
    assert errno_of(shim.hwctx_create) == errno.EBUSY
    shim.hwctx_destroy(ctxs[3])
    ctx = shim.hwctx_create()
    job, src = copy_job(shim)
    assert job.run(ctx) == ErtState.COMPLETED
    assert np.array_equal(job.output(), src)


def test_invalid_buffer_objects(shim: Shim) -> None:
    assert errno_of(shim.bo_create, 9, 4096) == errno.EINVAL
    assert errno_of(shim.bo_create, BO_SHARE, 0) == errno.EINVAL
    assert errno_of(shim.bo_create, BO_DEV_HEAP, 3 * MiB) == errno.EINVAL
    heap = shim.bo_create(BO_DEV_HEAP, 128 * MiB)
    assert shim.bo_info(heap)["xdna_addr"] == HEAP_DEV_ADDR
    # npu4's heap grows by chunks up to 512 MiB (docs/spec/uapi.md §6)
    more = shim.bo_create(BO_DEV_HEAP, 64 * MiB)
    assert shim.bo_info(more)["xdna_addr"] == HEAP_DEV_ADDR + 128 * MiB
    assert errno_of(shim.bo_create, BO_DEV_HEAP, 384 * MiB) == errno.EBUSY  # past 512 MiB
    assert errno_of(shim.bo_create, BO_DEV_HEAP, 576 * MiB) == errno.EINVAL  # no heap that big
    dev = shim.bo_create(BO_DEV, 100)
    dev2 = shim.bo_create(BO_DEV, 100)
    a, b = shim.bo_info(dev)["xdna_addr"], shim.bo_info(dev2)["xdna_addr"]
    assert a % (32 << 10) == 0 and b % (32 << 10) == 0 and a != b
    assert errno_of(shim.bo_create, BO_DEV, 200 * MiB) == errno.ENOMEM  # not in 192 MiB now
    assert errno_of(shim.bo_create, BO_DEV, 576 * MiB) == errno.EINVAL  # never fits
    assert errno_of(shim.bo_free, more) == errno.EBUSY  # DEV BOs live in the heap
    for bad in (0, 12345):
        assert errno_of(shim.bo_info, bad) == errno.EINVAL
        assert errno_of(shim.bo_free, bad) == errno.EINVAL
    share = shim.bo_create(BO_SHARE, 5000)
    info = shim.bo_info(share)
    assert info["xdna_addr"] == info["vaddr"] and info["size"] == 5000
    shim.bo_free(share)
    assert errno_of(shim.bo_info, share) == errno.EINVAL
    shim.bo_free(dev)
    shim.bo_free(dev2)
    assert errno_of(shim.bo_free, heap) == errno.EBUSY  # a later chunk follows it
    shim.bo_free(more)
    shim.bo_free(heap)


def test_heap_grows_under_a_live_context(shim: Shim) -> None:
    """A chunk added after the context connected reaches the firmware before the next job, and
    a DEV BO spanning the two chunks is read and written by the device (docs/spec/uapi.md §6)."""
    shim.bo_create(BO_DEV_HEAP, 64 * MiB)
    ctx = shim.hwctx_create()
    first, src = copy_job(shim, bo_type=BO_DEV)
    assert first.run(ctx) == ErtState.COMPLETED  # connected with one 64 MiB chunk
    bos = [first.instr, *first.args]
    top = max(first.addr(b) + -(-shim.bo_info(b)["size"] // (32 << 10)) * (32 << 10) for b in bos)
    tail = HEAP_DEV_ADDR + 64 * MiB - top
    shim.bo_create(BO_DEV, tail - (64 << 10))  # leaves 64 KiB at the end of chunk 0
    assert errno_of(shim.bo_create, BO_DEV, 1 * MiB) == errno.ENOMEM  # EAGAIN at the UAPI
    shim.bo_create(BO_DEV_HEAP, 64 * MiB)
    job, src = copy_job(shim, n=64 << 10, bo_type=BO_DEV, seed=3)
    a = job.addr(job.args[0])
    assert a < HEAP_DEV_ADDR + 64 * MiB < a + (256 << 10)  # the input spans both chunks
    assert job.run(ctx) == ErtState.COMPLETED
    assert np.array_equal(job.output(), src)


def test_sync_checks_offset_and_size(shim: Shim) -> None:
    bo = shim.bo_create(BO_SHARE, 8192)
    shim.bo_sync(bo, 0, 4096, 4096)
    shim.bo_sync(bo, SYNC_FROM_DEVICE, 100, 0)  # size 0: to the end
    assert errno_of(shim.bo_sync, bo, 0, 4096, 4097) == errno.EINVAL
    assert errno_of(shim.bo_sync, bo, 0, 8193, 0) == errno.EINVAL
    assert errno_of(shim.bo_sync, bo, 7, 0, 16) == errno.EINVAL


# -- jobs --------------------------------------------------------------------------------

def test_one_command_then_three_outstanding(shim: Shim) -> None:
    ctx = shim.hwctx_create()
    job, src = copy_job(shim, bo_type=BO_DEV)
    assert job.run(ctx) == ErtState.COMPLETED
    assert np.array_equal(job.output(), src)
    a = np.arange(512, dtype=np.int16)
    b = np.full(512, 7, dtype=np.int16)
    jobs = [
        Job(shim, K.Desc(K.Kernel.ADD, K.DType.INT16, 512), BO_SHARE, [a, b]),
        Job(shim, K.Desc(K.Kernel.SCALE, K.DType.FLOAT32, 256, scalar=2.5), BO_SHARE,
            [np.linspace(0, 1, 256, dtype=np.float32)]),
        Job(shim, K.Desc(K.Kernel.GEMM, K.DType.INT8, m=4, n=5, k=6), BO_DEV,
            [np.ones(24, np.int8), np.arange(30, dtype=np.int8)]),
    ]
    seqs = [shim.exec(ctx, j.cmd) for j in jobs]
    assert seqs == sorted(seqs) and len(set(seqs)) == 3
    for j in jobs:  # a freshly submitted command reads SUBMITTED or already COMPLETED
        assert shim.cmd_state(j.cmd) in (ErtState.SUBMITTED, ErtState.COMPLETED)
    shim.wait(ctx, seqs[-1])
    for s in seqs:
        shim.wait(ctx, s, 0)
    assert [shim.cmd_state(j.cmd) for j in jobs] == [ErtState.COMPLETED] * 3
    assert np.array_equal(jobs[0].output(), a + b)
    assert np.allclose(jobs[1].output(), np.linspace(0, 1, 256, dtype=np.float32) * 2.5)
    want = np.ones((4, 6), np.int32) @ np.arange(30, dtype=np.int32).reshape(6, 5)
    assert np.array_equal(jobs[2].output().reshape(4, 5), want)
    assert shim.hwctx_info(ctx)["completed"] == 4
    assert errno_of(shim.wait, ctx, 99) == errno.EINVAL


def test_bad_commands_are_einval(shim: Shim) -> None:
    ctx = shim.hwctx_create()
    job, _ = copy_job(shim)
    share = shim.bo_create(BO_SHARE, 4096)
    assert errno_of(shim.exec, ctx, share) == errno.EINVAL  # not a CMD BO
    assert errno_of(shim.exec, 77, job.cmd) == errno.EINVAL
    cmd = shim.bo_create(BO_CMD, 4096)
    view = shim.bo_map(cmd)
    view[:8] = (0 | 1 << 12 | 5 << 23).to_bytes(4, "little") + b"\1\0\0\0"  # opcode 5
    assert errno_of(shim.exec, ctx, cmd) == errno.EINVAL
    view[:4] = (0x7FF << 12 | 20 << 23).to_bytes(4, "little")  # count past the BO
    assert errno_of(shim.exec, ctx, cmd) == errno.EINVAL
    bad_chain = ert_cmd_chain([share])
    view[: len(bad_chain)] = bad_chain
    assert errno_of(shim.exec, ctx, cmd) == errno.EINVAL
    assert errno_of(shim.cmd_state, share) == errno.EINVAL
    assert job.run(ctx) == ErtState.COMPLETED  # the context is unharmed


def test_chain_runs_every_command(shim: Shim) -> None:
    ctx = shim.hwctx_create()
    jobs = [copy_job(shim, 256 * (i + 1), seed=i) for i in range(5)]
    cmd = chain_cmd(shim, [j for j, _ in jobs])
    seq = shim.exec(ctx, cmd)
    shim.wait(ctx, seq)
    assert shim.cmd_state(cmd) == ErtState.COMPLETED
    for j, src in jobs:
        assert np.array_equal(j.output(), src)


def test_failed_command_in_a_chain_sets_error_index(shim: Shim) -> None:
    ctx = shim.hwctx_create()
    good, src = copy_job(shim)
    fail = Job(shim, K.Desc(K.Kernel.FAIL))
    after, _ = copy_job(shim, seed=3)
    cmd = chain_cmd(shim, [good, good, fail, after])
    seq = shim.exec(ctx, cmd)
    shim.wait(ctx, seq)
    assert shim.cmd_state(cmd) == ErtState.ERROR
    assert chain_error_index(shim.bo_map(cmd)) == 2
    assert np.array_equal(good.output(), src)
    assert not after.output().any()  # never ran
    assert after.run(ctx) == ErtState.COMPLETED  # the context stays usable
    err = wait_until(shim.last_async_error, lambda e: e["count"] >= 1, what="the AIE error")
    assert err["count"] == 1 and err["type"] == 0
    assert err["event_id"] == K.AIE_ERR_INSTRUCTION & 0xFF
    assert err["row"] == load_chip("npu4").tiles.core_row_start
    assert err["col"] == shim.hwctx_info(ctx)["start_col"]


def test_busy_buffers_cannot_be_freed(shim: Shim) -> None:
    ctx = shim.hwctx_create()
    shim.set_tdr_ms(300)
    hang = Job(shim, K.Desc(K.Kernel.HANG))
    job, _ = copy_job(shim)
    seq_h = shim.exec(ctx, hang.cmd)
    seq_j = shim.exec(ctx, job.cmd)
    assert errno_of(shim.bo_free, hang.cmd) == errno.EBUSY
    assert errno_of(shim.bo_free, job.args[1]) == errno.EBUSY  # pinned as an argument
    shim.wait(ctx, seq_j, 5000)
    shim.wait(ctx, seq_h, 0)
    shim.bo_free(job.args[1])
    shim.bo_free(hang.cmd)


def test_contexts_in_parallel_threads(shim: Shim) -> None:
    ctxs = [shim.hwctx_create() for _ in range(4)]
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            for r in range(10):
                job, src = copy_job(shim, 128 + r, seed=i * 100 + r)
                assert job.run(ctxs[i]) == ErtState.COMPLETED
                assert np.array_equal(job.output(), src)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert all(shim.hwctx_info(c)["completed"] == 10 for c in ctxs)


# -- TDR, async errors, health -----------------------------------------------------------

def test_hung_job_times_out_queued_ones_abort_and_the_context_recovers(shim: Shim) -> None:
    shim.set_tdr_ms(300)
    ctx = shim.hwctx_create()
    other = shim.hwctx_create()
    hang = Job(shim, K.Desc(K.Kernel.HANG))
    queued = [copy_job(shim, seed=i)[0] for i in range(3)]
    seqs = [shim.exec(ctx, hang.cmd)] + [shim.exec(ctx, j.cmd) for j in queued]
    ok, src = copy_job(shim, seed=9)
    assert ok.run(other) == ErtState.COMPLETED  # other contexts keep running
    assert errno_of(shim.wait, ctx, seqs[0], 100) == errno.ETIME
    shim.wait(ctx, seqs[-1], 5000)  # TDR ended them (ETIME had it not); when: the test below
    assert shim.cmd_state(hang.cmd) == ErtState.TIMEOUT
    assert [shim.cmd_state(j.cmd) for j in queued] == [ErtState.ABORT] * 3
    info = shim.hwctx_info(ctx)
    assert (info["timeouts"], info["aborts"], info["state"]) == (1, 3, "active")
    report = shim.app_health(ctx)
    assert len(report) == 560
    assert int.from_bytes(report[8:12], "little") == 0  # context id 0 hung
    fresh, src = copy_job(shim, seed=5)
    assert fresh.run(ctx) == ErtState.COMPLETED
    assert np.array_equal(fresh.output(), src)


def test_tdr_recovers_within_two_periods_of_virtual_time(xdna_datapath: str | None,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """When TDR fires, on the deterministic clock: a hang is declared at the second tick after
    its submission, so between one and two TDR periods later (docs/spec/jobs.md §6); a TDR
    that kept the default period or waited for the waiter's deadline shows up as more."""
    if xdna_datapath is not None:
        monkeypatch.setenv(DATAPATH_ENV, xdna_datapath)
    tdr_ms = 300
    with InProcess("npu4") as ip:
        shim = ip.probe()
        shim.set_tdr_ms(tdr_ms)
        ctx = shim.hwctx_create()
        hang = Job(shim, K.Desc(K.Kernel.HANG))
        queued = [copy_job(shim, seed=i)[0] for i in range(2)]
        t_submit = ip.clock.now_ns()
        seqs = [shim.exec(ctx, hang.cmd)] + [shim.exec(ctx, j.cmd) for j in queued]
        _, waited_ns = ip.call(shim.wait, ctx, seqs[-1], 60_000)
        took_ms = (ip.clock.now_ns() - t_submit) / 1e6
        assert tdr_ms <= took_ms <= 2 * tdr_ms, took_ms
        assert waited_ns < 60_000 * 1_000_000
        assert shim.cmd_state(hang.cmd) == ErtState.TIMEOUT
        assert [shim.cmd_state(j.cmd) for j in queued] == [ErtState.ABORT] * 2
        assert shim.hwctx_info(ctx)["timeouts"] == 1


def test_app_health_query_without_a_hang(shim: Shim) -> None:
    ctx = shim.hwctx_create()
    job, _ = copy_job(shim)
    assert job.run(ctx) == ErtState.COMPLETED
    report = shim.app_health(ctx)
    assert len(report) == 560
    assert int.from_bytes(report[4:8], "little") == 560


def test_async_errors_from_several_threads(shim: Shim) -> None:
    ctxs = [shim.hwctx_create() for _ in range(4)]
    # an AIE error that finds no registered event buffer reaches nobody (docs/spec/firmware.md,
    # "Async events"; one buffer per column): with no more errors than buffers none is lost,
    # whoever runs first (more would race the driver's re-registration against the next jobs)
    per_thread = shim.info()["total_col"] // len(ctxs)
    states: list[ErtState] = []
    lock = threading.Lock()

    def worker(i: int) -> None:
        fail = Job(shim, K.Desc(K.Kernel.FAIL, error=0x1000004))
        for _ in range(per_thread):
            st = fail.run(ctxs[i])
            with lock:
                states.append(st)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert states == [ErtState.ERROR] * (4 * per_thread)
    want = 4 * per_thread
    err = wait_until(shim.last_async_error, lambda e: e["count"] >= want, what="every AIE error")
    assert err["count"] == want
    assert err["event_id"] == 0x04
    assert shim.info()["async_pending"] == shim.info()["total_col"]  # re-registered


# -- power --------------------------------------------------------------------------------

def test_power_modes(shim: Shim) -> None:
    chip = load_chip("npu4")
    top = len(chip.dpm_levels) - 1
    p = shim.power()
    assert (p["mode"], p["dpm_level"], p["clock_gating"]) == ("default", top, True)
    assert p["hclk_mhz"] == chip.dpm_levels[top][1]
    assert p["tops"] == pytest.approx(4096 * chip.tiles.cols * chip.dpm_levels[top][1] / 1e6)
    shim.set_power_mode("low")
    p = shim.power()
    assert (p["mode"], p["dpm_level"], p["npuclk_mhz"]) == ("low", 0, chip.dpm_levels[0][0])
    shim.set_power_mode("medium")
    assert shim.power()["dpm_level"] == 3  # min(top, 3), as the driver
    shim.set_power_mode("high")
    p = shim.power()
    assert (p["dpm_level"], p["clock_gating"]) == (top, True)  # HIGH keeps gating on
    ctx = shim.hwctx_create()
    assert errno_of(shim.set_power_mode, "turbo") == errno.EBUSY
    assert errno_of(shim.set_power_mode, 9) == errno.EINVAL
    shim.hwctx_destroy(ctx)
    shim.set_power_mode("turbo")
    ctx = shim.hwctx_create()
    assert shim.hwctx_info(ctx)["polled"]
    job, src = copy_job(shim)
    assert job.run(ctx) == ErtState.COMPLETED
    assert np.array_equal(job.output(), src)
    assert shim.power()["clock_gating"] is False  # TURBO turns gating off
    shim.hwctx_destroy(ctx)
    shim.set_power_mode("default")
    p = shim.power()  # DEFAULT follows the contexts' QoS: none left, so level 0
    assert (p["mode"], p["dpm_level"], p["clock_gating"]) == ("default", 0, True)


def test_autosuspend_with_live_contexts_then_a_job_resumes(shim: Shim) -> None:
    ctx = shim.hwctx_create()
    job, src = copy_job(shim)
    assert job.run(ctx) == ErtState.COMPLETED
    shim.set_autosuspend_ms(200)
    p = wait_until(shim.power, lambda p: p["suspended"], what="autosuspend")
    assert p["suspend_count"] == 1
    assert shim.info()["state"] == "suspended"
    assert shim.hwctx_info(ctx)["state"] == "idle"
    shim.set_autosuspend_ms(0)
    job2, src2 = copy_job(shim, seed=7)
    assert job2.run(ctx) == ErtState.COMPLETED  # resumes: hw_start + contexts re-created
    assert np.array_equal(job2.output(), src2)
    p = shim.power()
    assert not p["suspended"] and p["resume_count"] == 1
    assert shim.info()["state"] == "probed"
    assert shim.hwctx_info(ctx)["state"] == "active"


def test_explicit_suspend_resume_keeps_contexts(shim: Shim) -> None:
    ctx = shim.hwctx_create()
    shim.suspend()
    shim.resume()
    job, src = copy_job(shim)
    assert job.run(ctx) == ErtState.COMPLETED
    assert np.array_equal(job.output(), src)


# -- legacy firmware, client sessions -----------------------------------------------------

def test_legacy_firmware_uses_chain_exec_dpu(emu: Emulator, legacy_fw_dir: Path) -> None:
    with Shim.open(emu.socket) as shim:
        info = shim.probe(legacy_fw_dir)
        assert info["protocol_version"] == "6.12"
        ctx = shim.hwctx_create()
        job, src = copy_job(shim, bo_type=BO_DEV)
        assert job.run(ctx) == ErtState.COMPLETED
        assert np.array_equal(job.output(), src)
        jobs = [copy_job(shim, seed=i)[0] for i in range(3)]
        cmd = chain_cmd(shim, jobs)
        shim.wait(ctx, shim.exec(ctx, cmd))
        assert shim.cmd_state(cmd) == ErtState.COMPLETED
        assert errno_of(shim.app_health, ctx) == errno.EOPNOTSUPP  # GET_APP_HEALTH >= 6.18


def test_client_session_attaches_and_runs_its_own_context(emu: Emulator, shim: Shim) -> None:
    drv_ctx = shim.hwctx_create()
    with Shim.open(emu.socket) as early:
        client = early.attach()
        assert client["fw_version"] == shim.info()["fw_version"]
        assert client["protocol_version"] == shim.info()["protocol_version"]
        assert client["pasid"] != shim.info()["pasid"]
        ctx = early.hwctx_create()
        assert early.hwctx_info(ctx)["fw_ctx_id"] != shim.hwctx_info(drv_ctx)["fw_ctx_id"]
        job, src = copy_job(early, bo_type=BO_DEV)
        assert job.run(ctx) == ErtState.COMPLETED
        assert np.array_equal(job.output(), src)
        assert errno_of(early.set_power_mode, "low") == errno.EPERM
        assert errno_of(early.attach) == errno.EALREADY
        shim.hwctx_destroy(drv_ctx)
        # the client's live context holds a runtime-PM reference (ctrl foreign_ctx)
        assert errno_of(shim.set_power_mode, "turbo") == errno.EBUSY
    drv_ctx = shim.hwctx_create()
    job, src = copy_job(shim)
    assert job.run(drv_ctx) == ErtState.COMPLETED


def test_client_job_resumes_a_device_the_driver_suspended(emu: Emulator, shim: Shim) -> None:
    """A client's submission takes a runtime-PM reference: with the driver session holding
    the device suspended it asks the driver (ctrl page PM_ASK), whose monitor resumes it; the
    client's context reconnects and its job runs; a stop ends the client's context for good
    (docs/spec/jobs.md §1)."""
    drv_ctx = shim.hwctx_create()
    with Shim.open(emu.socket) as client:
        client.attach()
        ctx = client.hwctx_create()
        shim.suspend()
        assert shim.power()["suspended"]
        job, src = copy_job(client, bo_type=BO_DEV)
        assert job.run(ctx) == ErtState.COMPLETED
        assert np.array_equal(job.output(), src)
        assert not shim.power()["suspended"]
        assert errno_of(shim.resume) == errno.EINVAL  # the driver resumed it already
        job2, _ = copy_job(shim)
        assert job2.run(drv_ctx) == ErtState.COMPLETED  # the driver's context restarted too
        shim.stop()
        job3, _ = copy_job(client, bo_type=BO_DEV, seed=1)
        assert errno_of(job3.run, ctx) == errno.ENODEV


def test_a_client_waiting_on_a_hang_never_reads_the_next_firmwares_ring(
        emu: Emulator, shim: Shim) -> None:
    """A client thread waits on a hang, its vector claimed (a direct wait), while the driver
    stops and probes again and its new context, which the new firmware gives the client's
    old id, ring and vector, runs jobs. The client looks whether its firmware went before
    every receive, its event pump's and the waiter's own, so the hang ends ABORT and no new
    answer is taken for its own (docs/spec/jobs.md §1). Which of the two threads looks
    first is a race: the outcome must hold either way."""
    shim.set_tdr_ms(60_000)
    with Shim.open(emu.socket) as client:
        client.attach()
        ctx = client.hwctx_create()
        hang = Job(client, K.Desc(K.Kernel.HANG))
        seq = client.exec(ctx, hang.cmd)
        before = client.info()["direct_waits"]
        errors: list[BaseException] = []

        def waiter() -> None:
            try:
                client.wait(ctx, seq, 30_000)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        t = threading.Thread(target=waiter)
        t.start()
        wait_until(lambda: client.info()["direct_waits"], lambda n: n == before + 1,
                   what="the client's direct wait")
        shim.stop()
        shim.probe()
        drv_ctx = shim.hwctx_create()
        for i in range(4):
            job, _ = copy_job(shim, seed=i)
            assert job.run(drv_ctx) == ErtState.COMPLETED
        t.join(40)
        assert not t.is_alive() and not errors, errors
        assert client.cmd_state(hang.cmd) == ErtState.ABORT


def test_attach_needs_a_probed_device(emu: Emulator) -> None:
    with Shim.open(emu.socket) as s:
        assert errno_of(s.attach) == errno.ENODEV


# -- direct waits (docs/spec/protocol.md, "Direct waits") --------------------------------

def _fw_version(shim: Shim) -> bytes:
    from xdna_emu.fw.messages import LAYOUTS, Opcode

    op = Opcode.GET_FIRMWARE_VERSION
    return shim.mgmt_msg(int(op), bytes(LAYOUTS[op].req.size), LAYOUTS[op].resp.size)


def test_a_message_waits_on_its_own_vector(shim: Shim) -> None:
    """With the monitor running, each management message's caller sleeps on the channel's
    vector itself, once per call."""
    first = _fw_version(shim)
    before = shim.info()["direct_waits"]
    for _ in range(20):
        assert _fw_version(shim) == first
    assert shim.info()["direct_waits"] == before + 20


def test_a_direct_job_wait_times_out_then_another_thread_ends_it(shim: Shim) -> None:
    """A job wait on a hung command claims the context's vector, gives it back at its
    timeout, and a later direct wait is ended by another thread destroying the context,
    long before its own timeout."""
    shim.set_tdr_ms(60_000)
    ctx = shim.hwctx_create()
    hang = Job(shim, K.Desc(K.Kernel.HANG))
    seq = shim.exec(ctx, hang.cmd)
    before = shim.info()["direct_waits"]
    assert errno_of(shim.wait, ctx, seq, 50) == errno.ETIME
    assert shim.info()["direct_waits"] == before + 1
    done = threading.Event()
    errors: list[BaseException] = []

    def waiter() -> None:
        try:
            shim.wait(ctx, seq, 60_000)  # the context goes: the wait ends (ABORT)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        done.set()

    t = threading.Thread(target=waiter)
    t.start()
    wait_until(lambda: shim.info()["direct_waits"], lambda n: n == before + 2,
               what="the second direct wait")
    shim.hwctx_destroy(ctx)
    assert done.wait(30), "the direct waiter was not woken by the destroy"
    t.join(5)
    assert not errors, errors
    other = shim.hwctx_create()  # the vector works for the next context
    job, src = copy_job(shim, seed=3)
    assert job.run(other) == ErtState.COMPLETED


def test_messages_and_jobs_from_many_threads_share_the_vectors(shim: Shim) -> None:
    """One thread owns a vector at a time; the others wait on the monitor's broadcasts."""
    first = _fw_version(shim)
    before = shim.info()["direct_waits"]
    ctxs = [shim.hwctx_create() for _ in range(2)]
    errors: list[BaseException] = []

    def talker() -> None:
        try:
            for _ in range(40):
                assert _fw_version(shim) == first
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def worker(i: int) -> None:
        try:
            for r in range(10):
                job, src = copy_job(shim, 64 + r, seed=i * 10 + r)
                assert job.run(ctxs[i % 2]) == ErtState.COMPLETED
                assert np.array_equal(job.output(), src)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=talker) for _ in range(3)]
    threads += [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert not any(t.is_alive() for t in threads)
    assert 1 <= shim.info()["direct_waits"] - before <= 3 * 40 + 4 * 10


def test_a_direct_waiter_is_woken_by_another_threads_failure(emu: Emulator, shim: Shim) -> None:
    """With the daemon stopped, only the shim can end a waiting message: another thread's
    send finds the ring broken, fails every pending message, and signals the waiter's
    vector (the waiter's own timeout is 30 s)."""
    import os
    import signal

    from xdna_emu.chips import MailboxLayout
    from xdna_emu.fw.messages import LAYOUTS, Opcode

    chip = load_chip(shim.info()["chip"])
    bar, off = chip.dev_to_bar(chip.mailbox.chan_regs(0) + MailboxLayout.X2I_HEAD)  # mgmt
    op = Opcode.GET_FIRMWARE_VERSION
    req, size = bytes(LAYOUTS[op].req.size), LAYOUTS[op].resp.size
    before = shim.info()["direct_waits"]
    got: list[BaseException] = []
    done = threading.Event()

    def waiter() -> None:
        try:
            shim.mgmt_msg(int(op), req, size, timeout_ms=30_000)
        except BaseException as exc:  # noqa: BLE001 - checked below
            got.append(exc)
        done.set()

    stop_process(emu.pid)
    try:
        t = threading.Thread(target=waiter)
        t.start()
        wait_until(lambda: shim.info()["direct_waits"], lambda n: n == before + 1,
                   what="the direct wait")
        shim.writel(bar, off, 0xFFFF_FFF0)  # a firmware-owned register: stored as is
        assert errno_of(shim.mgmt_msg, int(op), req, size) == errno.EPIPE
        assert done.wait(20), "the direct waiter was not woken"
        t.join(5)
    finally:
        os.kill(emu.pid, signal.SIGCONT)
    assert len(got) == 1 and isinstance(got[0], ShimError) and got[0].errno == errno.EPIPE


def test_a_direct_waiter_gets_an_answer_on_a_masked_vector(shim: Shim) -> None:
    """A masked vector pends (docs/spec/device.md §3) and the daemon notifies instead: the
    monitor takes the notify and signals the direct waiter, which finds its answer."""
    chip = load_chip(shim.info()["chip"])
    ctrl = chip.msix.table_offset + 16 * shim.info()["mgmt_msi_id"] + 12
    first = _fw_version(shim)
    before = shim.info()["direct_waits"]
    shim.writel(chip.msix.bar, ctrl, 1)  # vector control: masked
    try:
        for _ in range(5):
            assert _fw_version(shim) == first
    finally:
        shim.writel(chip.msix.bar, ctrl, 0)
    assert shim.info()["direct_waits"] == before + 5
    assert _fw_version(shim) == first
