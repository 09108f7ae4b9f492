"""AIE4 context reset and function-level reset through the shim, in the deterministic
in-process mode so the firmware's context timeout fires at a virtual time the test does
not race (docs/spec/aie4.md §8)."""

from __future__ import annotations

import errno
from collections.abc import Iterator

import numpy as np
import pytest

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
