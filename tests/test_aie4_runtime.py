"""The runtime API unchanged on AIE4: Device.open, buffers, ctx.run and chains drive an
emulated npu3 through the shim's kernel-mode HSA queue submission (docs/spec/aie4.md §8)."""

from __future__ import annotations

import errno
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from xdna_emu import Emulator
from xdna_emu.runtime import Device
from xdna_emu.shim import BO_CMD, BO_DEV, BO_DEV_HEAP, ShimError, ert_start_npu

ROOT = Path(__file__).resolve().parent.parent
N = 4096


@pytest.fixture
def dev(xdna_emulator: Emulator, xdna_firmware_dir: Path):  # noqa: ANN201
    with Device.open(socket=xdna_emulator.socket, firmware_path=xdna_firmware_dir) as d:
        yield d


@pytest.mark.parametrize("xdna_chip", ["npu3", "npu3_vf", "npu7", "npu4"])
def test_vector_add_and_chain_same_on_aie2_and_aie4(dev) -> None:  # noqa: ANN001
    ctx = dev.context()
    a = dev.buffer(np.arange(N, dtype=np.int32))
    b = dev.buffer(np.full(N, 7, dtype=np.int32))
    out = dev.buffer(np.zeros(N, dtype=np.int32))
    assert ctx.run("add", a, b, out).wait(timeout=10) == "completed"
    assert (out.read() == np.arange(N) + 7).all()
    run = ctx.chain([ctx.command("scale", a, out, scalar=3.0), ctx.command("copy", b, a)])
    assert run.wait(timeout=10) == "completed"
    assert (out.read() == 3 * np.arange(N)).all() and (a.read() == 7).all()
    for _ in range(10):  # more jobs than the queue's 4 in flight, in order
        assert ctx.run("add", a, b, out).wait(timeout=10) == "completed"
    info = dev.shim.hwctx_info(ctx.handle)
    assert info["completed"] == 12 and info["errors"] == 0


@pytest.mark.parametrize("xdna_chip", ["npu3"])
def test_a_failing_command_is_that_job_only(dev) -> None:  # noqa: ANN001
    ctx = dev.context()
    a = dev.buffer(np.arange(N, dtype=np.int32))
    out = dev.buffer(np.zeros(N, dtype=np.int32))
    run = ctx.chain([ctx.command("copy", a, out), ctx.command("fail"), ctx.command("copy", a, out)])
    assert run.wait(timeout=10) == "error" and run.error_index == 1
    other = dev.context()
    assert other.run("copy", a, out).wait(timeout=10) == "completed"
    assert ctx.run("copy", a, out).wait(timeout=10) == "completed"


@pytest.mark.parametrize("xdna_chip", ["npu3"])
def test_aie4_commands_are_start_dpu_and_bos_have_no_heap(dev) -> None:  # noqa: ANN001
    shim = dev.shim
    ctx = dev.context()
    cmd = shim.bo_create(BO_CMD, 4096)
    body = ert_start_npu(0x1000, 48)  # the AIE2 command is refused on AIE4
    shim.bo_map(cmd)[: len(body)] = body
    with pytest.raises(ShimError) as ei:
        shim.exec(ctx.handle, cmd)
    assert ei.value.errno == errno.EINVAL and "START_DPU" in ei.value.strerror
    big = shim.bo_create(BO_DEV, 600 << 20)  # larger than AIE2's 512 MiB heap cap
    assert shim.bo_info(big)["xdna_addr"] != 0x4000000
    with pytest.raises(ShimError) as ei:
        shim.bo_create(BO_DEV_HEAP, 64 << 20)
    assert ei.value.errno == errno.EINVAL and "no DEV heap" in ei.value.strerror


@pytest.mark.parametrize("xdna_chip", ["npu3_pf"])
def test_pf_runs_no_contexts(dev) -> None:  # noqa: ANN001
    with pytest.raises(ShimError) as ei:
        dev.context()
    assert ei.value.errno == errno.EOPNOTSUPP


def test_vector_add_example_runs_on_npu3() -> None:
    out = subprocess.run([sys.executable, str(ROOT / "examples/vector_add.py"), "--chip", "npu3"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "npu3: add of 4096 int32 -> completed, result correct" in out.stdout


@pytest.mark.parametrize("xdna_chip", ["npu3"])
def test_hung_job_times_out_and_the_queue_behind_it_aborts(dev) -> None:  # noqa: ANN001
    """The firmware's context timeout (2000 ms, the driver's default) ends the hung job
    TIMEOUT and the job queued behind it ABORT; nothing is left RUNNING and the context
    runs jobs again (docs/spec/aie4.md §7)."""
    ctx = dev.context()
    a = dev.buffer(np.arange(64, dtype=np.int32))
    out = dev.buffer(np.zeros(64, dtype=np.int32))
    hung, behind = ctx.run("hang"), ctx.run("copy", a, out)
    assert hung.wait(timeout=30) == "timeout" and behind.wait(timeout=30) == "aborted"
    assert ctx.run("copy", a, out).wait(timeout=10) == "completed"
    info = dev.shim.hwctx_info(ctx.handle)
    assert (info["timeouts"], info["aborts"], info["pending"]) == (1, 1, 0)
    assert dev.shim.last_async_error()["count"] == 1  # the CTX_ERROR event reached the shim


@pytest.mark.parametrize("xdna_chip", ["npu3"])
def test_flr_from_another_process_is_survived(dev, xdna_emulator: Emulator) -> None:  # noqa: ANN001
    """A separate process writes Device Control "Initiate FLR" (as `setpci` would) under a
    live driver: the shim's monitor thread runs the reset hooks on its own, the firmware
    boots again and the context runs jobs (docs/spec/aie4.md §8)."""
    from xdna_emu.control import ControlClient
    from xdna_emu.pci.caps import EXP_DEVCTL, EXP_DEVCTL_BCR_FLR
    from xdna_emu.pci.config import EXP_CAP

    ctx = dev.context()
    a = dev.buffer(np.arange(N, dtype=np.int32))
    out = dev.buffer(np.zeros(N, dtype=np.int32))
    resumes = dev.shim.power()["resume_count"]
    with ControlClient(xdna_emulator.socket) as c:
        c.version()
        c.config_write(EXP_CAP + EXP_DEVCTL + 1, bytes([EXP_DEVCTL_BCR_FLR >> 8]))
    deadline = time.monotonic() + 30
    while dev.shim.power()["resume_count"] == resumes:  # the monitor's reset_done
        assert time.monotonic() < deadline, "the driver never handled the reset"
        time.sleep(0.01)
    assert ctx.run("copy", a, out).wait(timeout=10) == "completed"
    assert (out.read() == np.arange(N)).all()


@pytest.mark.parametrize("xdna_chip", ["npu3", "npu3_vf"])
def test_attached_client_runs_aie4_contexts(dev, xdna_emulator: Emulator) -> None:  # noqa: ANN001
    """A second process attaches (docs/spec/aie4.md §12): its queries, contexts and jobs go
    through MGMT_PROXY and its own queues and doorbells; driver-only ops are EPERM and the
    driver's contexts are not its to name (ENOENT)."""
    from xdna_emu.fw.aie4.messages import MESSAGES, Opcode

    drv_ctx = dev.context()
    with Device.open(socket=xdna_emulator.socket) as cl:
        assert cl.role == "client"
        info = cl.shim.info()
        assert info["fw_version"] == dev.shim.info()["fw_version"] and info["tiles"]["cols"] == 3
        ctx = cl.context()
        a = cl.buffer(np.arange(N, dtype=np.int32))
        b = cl.buffer(np.full(N, 2, dtype=np.int32))
        out = cl.buffer(np.zeros(N, dtype=np.int32))
        assert ctx.run("add", a, b, out).wait(timeout=10) == "completed"
        assert (out.read() == np.arange(N) + 2).all()
        run = ctx.chain([ctx.command("copy", a, out), ctx.command("fail")])
        assert run.wait(timeout=10) == "error" and run.error_index == 1
        m = MESSAGES[Opcode.DESTROY_HW_CONTEXT]
        fw_id = dev.shim.hwctx_info(drv_ctx.handle)["fw_ctx_id"]
        with pytest.raises(ShimError) as ei:  # the driver's context
            cl.shim.mgmt_msg(Opcode.DESTROY_HW_CONTEXT, m.req.pack(hw_context_id=fw_id), m.resp.size)
        assert ei.value.errno == errno.ENOENT
        p = MESSAGES[Opcode.CREATE_PARTITION]
        with pytest.raises(ShimError) as ei:
            cl.shim.mgmt_msg(Opcode.CREATE_PARTITION, p.req.pack(col_start=0, col_count=1),
                             p.resp.size)
        assert ei.value.errno == errno.EPERM
    c2 = dev.context()  # the driver goes on; the client's contexts went with its session
    out = dev.buffer(np.zeros(N, dtype=np.int32))
    assert c2.run("copy", dev.buffer(np.arange(N, dtype=np.int32)), out).wait(timeout=10) == "completed"


@pytest.mark.parametrize(("xdna_chip", "how"), [("npu3", "autosuspend"), ("npu3", "suspend"),
                                                ("npu3_pf", "suspend"), ("npu4", "suspend")])
def test_client_attach_resumes_a_suspended_device(dev, xdna_emulator: Emulator,  # noqa: ANN001
                                                  how: str) -> None:
    """A new process attaching while the driver session holds the device suspended (its
    monitor's autosuspend, or a suspend call) takes a runtime-PM reference as its open does:
    it asks through the ctrl page (PM_ASK), the driver's monitor resumes the device, and
    the client's queries, context and job run (docs/spec/jobs.md §1, one mechanism for
    both generations; the ask is made before the client's monitor runs, so its wait receives
    the daemon's notify itself). A PF is never autosuspended."""
    from xdna_emu.testing.wait import wait_until

    if how == "autosuspend":
        dev.shim.set_autosuspend_ms(1)
        wait_until(lambda: dev.shim.power()["suspended"], what="the autosuspend")
        dev.shim.set_autosuspend_ms(600_000)  # no second autosuspend while the client works
    else:
        dev.shim.suspend()
    resumes = dev.shim.power()["resume_count"]
    assert dev.shim.power()["suspended"]
    with Device.open(socket=xdna_emulator.socket) as cl:
        assert cl.role == "client"
        assert not dev.shim.power()["suspended"]
        assert dev.shim.power()["resume_count"] == resumes + 1
        assert cl.shim.info()["fw_version"] == dev.shim.info()["fw_version"]
        if cl.shim.info().get("function") == "pf":
            return  # a PF runs no contexts (docs/spec/aie4.md §10)
        ctx = cl.context()
        out = cl.buffer(np.zeros(N, dtype=np.int32))
        assert ctx.run("copy", cl.buffer(np.arange(N, dtype=np.int32)), out).wait(timeout=10) == "completed"
        assert (out.read() == np.arange(N)).all()
    c2 = dev.context()
    out = dev.buffer(np.zeros(N, dtype=np.int32))
    assert c2.run("copy", dev.buffer(np.arange(N, dtype=np.int32)), out).wait(timeout=10) == "completed"


@pytest.mark.parametrize("chip", ["npu3", "npu3_pf", "npu4"])
def test_a_session_not_yet_attached_keeps_the_drivers_pm_words(chip: str) -> None:
    """Regression: a session that had opened but neither attached nor probed published PM
    words of its own on its first call (the caps Device.open reads), as only the driver
    session may: its ctrl page said PM_DOWN 0 until a later step of the daemon copied the
    driver's 1 back, and an attach that read it first sent its queries to the suspended
    firmware without asking (ENODEV). Deterministic mode forces that order: the daemon gets
    no turn during the caps call, as on a loaded machine (docs/spec/jobs.md §1)."""
    from xdna_emu import protocol as P
    from xdna_emu.shim import Shim, ffi, lib
    from xdna_emu.testing.inproc import InProcess

    with InProcess(chip) as ip:
        drv = ip.probe()
        ip.call(drv.suspend)
        resumes = drv.power()["resume_count"]
        cl, _ = ip.call(Shim.open, ip.daemon.socket_path)
        try:
            page = next(s.w32 for s in ip.daemon.sessions.values() if s is not ip.daemon.driver)
            words = (P.CTRL_OFF_PM_DOWN >> 2, P.CTRL_OFF_DRV_STOPS >> 2)
            copied = [page[w] for w in words]
            assert copied[0] == 1  # the driver's, copied when the session attached its log

            def starved(_user: object, deadline: int) -> int:  # time passes, nothing is served
                ip.clock.advance(max(0, deadline - ip.clock.now_ns()))
                return 0

            now_cb = ffi.callback("uint64_t(void *)", lambda _user: ip.clock.now_ns())
            wait_cb = ffi.callback("int(void *, uint64_t)", starved)
            hooks = ffi.new("struct xdna_shim_hooks *", {"now_ns": now_cb, "wait": wait_cb})
            lib.xdna_shim_set_hooks(ffi.NULL, hooks)
            try:
                assert cl.caps["probed"]  # Device.open's look before it attaches
            finally:
                ip.claim_hooks()
            assert [page[w] for w in words] == copied
            busy: list[bool] = []

            def monitor() -> None:  # the driver's monitor thread, while the client's call waits
                if not busy:
                    busy.append(True)
                    try:
                        drv.monitor_step()
                    finally:
                        busy.clear()

            ip.on_wait = monitor
            ip.call(cl.attach)
            ip.on_wait = None
            assert not drv.power()["suspended"]
            assert drv.power()["resume_count"] == resumes + 1
            assert ip.call(cl.info)[0]["fw_version"] == drv.info()["fw_version"]
        finally:
            ip.on_wait = None
            ip.claim_hooks()
            cl.close()
