"""AIE4 context reset and function-level reset through the shim, in the deterministic
in-process mode so the firmware's context timeout fires at a virtual time the test does
not race (docs/spec/aie4.md §8)."""

from __future__ import annotations

import errno
from collections.abc import Iterator

import numpy as np
import pytest

from xdna_emu.fw.aie4.messages import CTX_ERROR_EVENT, CtxErrorType
from xdna_emu.runtime import Device
from xdna_emu.shim import ShimError
from xdna_emu.testing.inproc import InProcess


@pytest.fixture
def ip() -> Iterator[InProcess]:
    with InProcess("npu3") as p:
        p.probe()
        yield p


def test_submission_blocked_on_a_full_queue_is_released_by_the_reset(ip: InProcess) -> None:
    """A hung job and three chains fill the 32-packet queue; the 33rd packet's submission
    waits for room until the firmware's context timeout raises CTX_ERROR, whose reset
    releases it unpublished with EAGAIN. The hung job ends TIMEOUT, every job behind it
    ABORT, nothing is lost or left RUNNING and the context runs again."""
    dev = Device(ip.shim, "driver")
    ip.shim.set_timeout("mbox_rx", 600_000)  # the wait ends by the reset, not its deadline
    ctx = dev.context()
    a = dev.buffer(np.arange(64, dtype=np.int32))
    out = dev.buffer(np.zeros(64, dtype=np.int32))
    hung = ctx.run("hang")
    behind = [ctx.chain([("copy", a, out)] * n) for n in (11, 10, 10)]  # 32 packets in all
    info = ip.shim.hwctx_info(ctx.handle)
    assert info["pending"] == 4 and info["timeouts"] == 0
    with pytest.raises(ShimError) as ei:
        ip.call(ctx.run, "copy", a, out)
    assert ei.value.errno == errno.EAGAIN and "reset" in ei.value.strerror
    assert hung.wait(timeout=30) == "timeout"
    assert [r.wait(timeout=30) for r in behind] == ["aborted"] * 3
    info = ip.shim.hwctx_info(ctx.handle)
    assert (info["timeouts"], info["aborts"], info["pending"]) == (1, 3, 0)
    assert ip.shim.last_async_error()["count"] == 1  # the CTX_ERROR that reset the context
    rep = CTX_ERROR_EVENT.unpack(ip.shim.app_health(ctx.handle))  # its health report, kept
    assert rep["ctx_id"] == ip.daemon.device.ctx.contexts[0].id
    assert rep["error_type"] == CtxErrorType.UC_COMPLETION_TIMEOUT
    assert ctx.run("copy", a, out).wait(timeout=10) == "completed"
    assert np.array_equal(out.read(), np.arange(64))


def test_a_full_queue_without_reset_waits_out_its_deadline(ip: InProcess) -> None:
    """With no context timeout to reset it, the blocked submission ends at the shim's
    deadline with EAGAIN of its own (no reset named) and the queued jobs stay pending."""
    dev = Device(ip.shim, "driver")
    ip.shim.set_timeout("mbox_rx", 500)  # shorter than the firmware's 2000 ms timeout
    ctx = dev.context()
    a = dev.buffer(np.arange(64, dtype=np.int32))
    out = dev.buffer(np.zeros(64, dtype=np.int32))
    ctx.run("hang")
    for n in (11, 10, 10):
        ctx.chain([("copy", a, out)] * n)
    with pytest.raises(ShimError) as ei:
        ip.call(ctx.run, "copy", a, out)
    assert ei.value.errno == errno.EAGAIN and "reset" not in ei.value.strerror
    assert ip.shim.hwctx_info(ctx.handle)["pending"] == 4


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
