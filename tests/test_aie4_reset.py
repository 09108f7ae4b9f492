"""AIE4 context reset and function-level reset through the shim, in the deterministic
in-process mode so the firmware's context timeout fires at a virtual time the test does
not race (docs/spec/aie4.md §8)."""

from __future__ import annotations

import errno
from collections.abc import Iterator

import numpy as np
import pytest

from xdna_emu.fw.aie4.messages import CTX_ERROR_EVENT, CtxErrorType
from xdna_emu.pci.caps import EXP_DEVCAP, EXP_DEVCAP_FLR, EXP_DEVCTL, EXP_DEVCTL_BCR_FLR
from xdna_emu.runtime import Buffer, Context, Device, Run
from xdna_emu.shim import ShimError
from xdna_emu.testing.inproc import InProcess


@pytest.fixture
def ip() -> Iterator[InProcess]:
    with InProcess("npu3") as p:
        p.probe()
        yield p


def _fill(ctx: Context, a: Buffer, out: Buffer, sizes: tuple[int, ...]) -> list[Run]:
    """A hung job, then one submission per size (1: a single command, n: a chain of n)."""
    return [ctx.run("hang")] + [ctx.run("copy", a, out) if n == 1 else
                                ctx.chain([("copy", a, out)] * n) for n in sizes]


@pytest.mark.parametrize("sizes", [(1,) * 31, (11, 10, 10)], ids=["single", "chains"])
def test_submission_blocked_on_a_full_queue_is_released_by_the_reset(
        ip: InProcess, sizes: tuple[int, ...]) -> None:
    """A hung job and 31 single commands (or three chains) fill the 32-packet queue, every
    one a job in flight; the 33rd submission waits for room until the firmware's context
    timeout raises CTX_ERROR, whose reset releases it unpublished with EAGAIN. The hung job
    ends TIMEOUT, every job behind it ABORT, nothing is lost or left RUNNING and the context
    runs again."""
    dev = Device(ip.shim, "driver")
    ip.shim.set_timeout("mbox_rx", 600_000)  # the wait ends by the reset, not its deadline
    ctx = dev.context()
    a = dev.buffer(np.arange(64, dtype=np.int32))
    out = dev.buffer(np.zeros(64, dtype=np.int32))
    hung, *behind = _fill(ctx, a, out, sizes)
    info = ip.shim.hwctx_info(ctx.handle)
    assert info["pending"] == 1 + len(sizes) and info["timeouts"] == 0
    with pytest.raises(ShimError) as ei:
        ip.call(ctx.run, "copy", a, out)
    assert ei.value.errno == errno.EAGAIN and "reset" in ei.value.strerror
    assert hung.wait(timeout=30) == "timeout"
    assert [r.wait(timeout=30) for r in behind] == ["aborted"] * len(sizes)
    info = ip.shim.hwctx_info(ctx.handle)
    assert (info["timeouts"], info["aborts"], info["pending"]) == (1, len(sizes), 0)
    assert info["submitted"] == 1 + len(sizes)  # the released submission never reached it
    assert ip.shim.last_async_error()["count"] == 1  # the CTX_ERROR that reset the context
    rep = CTX_ERROR_EVENT.unpack(ip.shim.app_health(ctx.handle))  # its health report, kept
    assert rep["ctx_id"] == ip.daemon.device.ctx.contexts[0].id
    assert rep["error_type"] == CtxErrorType.UC_COMPLETION_TIMEOUT
    assert ctx.run("copy", a, out).wait(timeout=10) == "completed"
    assert np.array_equal(out.read(), np.arange(64))


def test_thirty_two_single_jobs_in_flight_complete(ip: InProcess) -> None:
    """Without a stalled consumer 32 single commands may be in flight at once (the queue's
    capacity, not AIE2's four slots) and every one completes."""
    dev = Device(ip.shim, "driver")
    ctx = dev.context()
    a = dev.buffer(np.arange(64, dtype=np.int32))
    outs = [dev.buffer(np.zeros(64, dtype=np.int32)) for _ in range(32)]
    runs = [ctx.run("copy", a, o) for o in outs]
    assert [r.wait(timeout=10) for r in runs] == ["completed"] * 32
    assert all(np.array_equal(o.read(), np.arange(64)) for o in outs)
    assert ip.shim.hwctx_info(ctx.handle)["completed"] == 32


@pytest.mark.parametrize("sizes", [(1,) * 31, (11, 10, 10)], ids=["single", "chains"])
def test_a_full_queue_without_reset_waits_out_its_deadline(
        ip: InProcess, sizes: tuple[int, ...]) -> None:
    """With no context timeout to reset it, the blocked submission ends at the shim's
    deadline with EAGAIN of its own (no reset named) and the queued jobs stay pending."""
    dev = Device(ip.shim, "driver")
    ip.shim.set_timeout("mbox_rx", 500)  # shorter than the firmware's 2000 ms timeout
    ctx = dev.context()
    a = dev.buffer(np.arange(64, dtype=np.int32))
    out = dev.buffer(np.zeros(64, dtype=np.int32))
    _fill(ctx, a, out, sizes)
    with pytest.raises(ShimError) as ei:
        ip.call(ctx.run, "copy", a, out)
    assert ei.value.errno == errno.EAGAIN and "reset" not in ei.value.strerror
    assert ip.shim.hwctx_info(ctx.handle)["pending"] == 1 + len(sizes)


def test_aie2_keeps_four_jobs_in_flight() -> None:
    """AIE2's limit is unchanged: a fifth submission behind a hang waits for a slot."""
    with InProcess("npu4") as p:
        p.probe()
        dev = Device(p.shim, "driver")
        p.shim.set_timeout("mbox_rx", 500)
        ctx = dev.context()
        a = dev.buffer(np.arange(64, dtype=np.int32))
        out = dev.buffer(np.zeros(64, dtype=np.int32))
        _fill(ctx, a, out, (1, 1, 1))
        assert p.shim.hwctx_info(ctx.handle)["pending"] == 4
        with pytest.raises(ShimError) as ei:
            p.call(ctx.run, "copy", a, out)
        assert ei.value.errno == errno.EAGAIN


def test_flr_with_jobs_in_flight(ip: InProcess) -> None:
    """FLR with a hung job and one queued behind it: both end ABORT, the firmware boots
    again through the whole handshake and partition, and the same context handles run jobs
    on contexts the firmware created anew."""
    dev = Device(ip.shim, "driver")
    ctx, other = dev.context(), dev.context()
    a = dev.buffer(np.arange(64, dtype=np.int32))
    out = dev.buffer(np.zeros(64, dtype=np.int32))
    hung, behind = ctx.run("hang"), ctx.run("copy", a, out)
    fw = ip.daemon.device
    boots, old = fw.boots, list(fw.ctx.contexts.values())
    resumes = ip.shim.power()["resume_count"]
    info_at = fw.fw.layout.mbox_info
    valid: list[int] = []  # mailbox_info.valid at the shim's first wait: reset_prepare's
    ip.on_wait = lambda: valid or valid.append(int.from_bytes(fw.regs.span(info_at, 4), "little"))
    assert int.from_bytes(fw.regs.span(info_at, 4), "little") == 1
    ip.call(ip.shim.flr)
    ip.on_wait = None
    assert valid == [0] and int.from_bytes(fw.regs.span(info_at, 4), "little") == 1
    assert [hung.wait(timeout=10), behind.wait(timeout=10)] == ["aborted", "aborted"]
    info = ip.shim.hwctx_info(ctx.handle)
    assert (info["aborts"], info["pending"], info["timeouts"]) == (2, 0, 0)
    assert fw.boots == boots + 1 and ip.shim.power()["resume_count"] == resumes + 1
    assert ip.shim.info()["partition_id"] != 0
    new = list(fw.ctx.contexts.values())
    assert len(new) == 2 and not any(n is o for n in new for o in old)  # created anew
    for c in (ctx, other):
        out.write(np.zeros(64, dtype=np.int32))
        assert c.run("copy", a, out).wait(timeout=10) == "completed"
        assert np.array_equal(out.read(), np.arange(64))


def test_flr_refusals() -> None:
    """FLR needs a probed AIE4 function: AIE2 has no reset hooks, an unprobed device has
    nothing to reset."""
    with InProcess("npu4") as p:
        p.probe()
        with pytest.raises(ShimError) as ei:
            p.call(p.shim.flr)
        assert ei.value.errno == errno.EOPNOTSUPP
    with InProcess("npu3") as p:
        shim = p.open()
        with pytest.raises(ShimError) as ei:
            p.call(shim.flr)
        assert ei.value.errno == errno.EINVAL


def _exp_devctl(ip: InProcess) -> int:
    """Config offset of the PCIe Device Control register (its high byte holds Initiate FLR)."""
    return ip.daemon.fn.config.exp_cap + EXP_DEVCTL


def test_flr_goes_through_config_space(ip: InProcess) -> None:
    """The shim resets the function as the PCI core's pcie_flr does: Device Control
    "Initiate FLR" in config space (the config space returns to power-on), then the command
    register and MSI-X enable restored; no DEVICE_RESET control command."""
    fn = ip.daemon.fn
    seen: list[tuple[int, bool]] = []  # (command, MSI-X enabled) right after the FLR
    fn.config.flr_listeners.append(lambda: seen.append((fn.config.command, fn.config.msix_enabled)))
    cmd, resets = fn.config.command, fn.resets
    ip.call(ip.shim.flr)
    assert seen == [(0, False)] and fn.resets == resets + 1
    assert fn.config.command == cmd and fn.config.msix_enabled
    assert ip.daemon.sessions[fn.driver].ctrl is not None


def test_device_initiated_flr_runs_the_reset_hooks(ip: InProcess) -> None:
    """An FLR the driver did not start (Initiate FLR written to config space from outside):
    the shim's monitor sees the function's reset count move and runs reset_prepare and
    reset_done on the already reset device. Jobs in flight end ABORT, nothing is lost, the
    config state comes back and the same contexts run jobs again."""
    dev = Device(ip.shim, "driver")
    ctx = dev.context()
    a = dev.buffer(np.arange(64, dtype=np.int32))
    out = dev.buffer(np.zeros(64, dtype=np.int32))
    hung, behind = ctx.run("hang"), ctx.run("copy", a, out)
    fw, fn = ip.daemon.device, ip.daemon.fn
    boots, resumes, cmd = fw.boots, ip.shim.power()["resume_count"], fn.config.command
    fn.config_write(_exp_devctl(ip) + 1, bytes([EXP_DEVCTL_BCR_FLR >> 8]))
    assert fn.config.command == 0 and not fn.config.msix_enabled  # the device reset under the driver
    assert [hung.wait(timeout=10), behind.wait(timeout=10)] == ["aborted", "aborted"]
    info = ip.shim.hwctx_info(ctx.handle)
    assert (info["aborts"], info["pending"], info["submitted"]) == (2, 0, 2)
    assert fw.boots == boots + 1 and ip.shim.power()["resume_count"] == resumes + 1
    assert fn.config.command == cmd and fn.config.msix_enabled
    assert ctx.run("copy", a, out).wait(timeout=10) == "completed"
    assert np.array_equal(out.read(), np.arange(64))


def test_device_initiated_flr_while_suspended_restores_config_only(ip: InProcess) -> None:
    """A reset of a suspended function has no firmware to bring back: resume finds the
    reset, restores the config state first and starts the firmware as usual."""
    fn = ip.daemon.fn
    dev = Device(ip.shim, "driver")
    ctx = dev.context()
    a = dev.buffer(np.arange(64, dtype=np.int32))
    out = dev.buffer(np.zeros(64, dtype=np.int32))
    ip.call(ip.shim.suspend)
    cmd, boots = fn.config.command, ip.daemon.device.boots
    fn.config_write(_exp_devctl(ip) + 1, bytes([EXP_DEVCTL_BCR_FLR >> 8]))
    assert ip.daemon.device.boots == boots  # nothing booted behind the suspended driver
    ip.call(ip.shim.resume)
    assert fn.config.command == cmd and fn.config.msix_enabled
    assert ip.daemon.device.boots == boots + 1
    assert ctx.run("copy", a, out).wait(timeout=10) == "completed"


def test_flr_refused_on_a_function_without_flr() -> None:
    """A function whose Device Capabilities lack FLR gets ENOTTY, before anything is torn
    down: its jobs and firmware stay as they were."""
    with InProcess("npu3") as p:
        fn = p.daemon.fn
        cap = fn.config.exp_cap + EXP_DEVCAP
        fn.config.data[cap: cap + 4] = (int.from_bytes(fn.config.data[cap: cap + 4], "little")
                                        & ~EXP_DEVCAP_FLR).to_bytes(4, "little")
        p.probe()
        boots = p.daemon.device.boots
        with pytest.raises(ShimError) as ei:
            p.call(p.shim.flr)
        assert ei.value.errno == errno.ENOTTY
        assert p.daemon.device.boots == boots and p.shim.info()["partition_id"] != 0
