"""AIE4 CERT log buffers (docs/spec/aie4.md §11): a uC LOG BO (a DEV BO, AIE4's carveout
stand-in) bound to a context and split into one slice per micro-controller; the firmware
writes a record into a uC's slice each time that uC finishes an exec_buf, and the test reads
the records back from the BO. The attach rules are the driver's, each a test."""

from __future__ import annotations

import errno
import struct
from collections.abc import Iterator

import numpy as np
import pytest

from xdna_emu import kernels
from xdna_emu.fw.aie4.messages import (
    CERT_LOG_HEADER,
    CERT_LOG_MAGIC,
    CERT_LOG_RECORD,
    CERT_LOG_UCS,
    HSA_EXEC_BUF,
    CmdState,
)
from xdna_emu.runtime import Device
from xdna_emu.shim import BO_CMD, BO_DEV, BO_SHARE, Shim, ShimError
from xdna_emu.testing.aie4driver import indirect_pkt
from xdna_emu.testing.inproc import InProcess

N = 64
SLICE = CERT_LOG_HEADER.size + 4 * CERT_LOG_RECORD.size  # room for four records


@pytest.fixture
def ip() -> Iterator[InProcess]:
    with InProcess("npu3") as p:
        p.probe()
        yield p


def _records(view: memoryview, off: int) -> tuple[dict, list[dict]]:
    """A slice's header and the records it holds, oldest first."""
    h = CERT_LOG_HEADER.unpack(view, off)
    n = min(h["records"], h["capacity"])
    first = h["records"] - n
    recs = [CERT_LOG_RECORD.unpack(view, off + CERT_LOG_HEADER.size
                                   + (i % h["capacity"]) * CERT_LOG_RECORD.size)
            for i in range(first, h["records"])]
    return h, recs


def _log_bo(shim: Shim, size: int) -> tuple[int, memoryview]:
    bo = shim.bo_create(BO_DEV, size)
    return bo, shim.bo_map(bo)


@pytest.mark.parametrize("n", [1, 3, CERT_LOG_UCS])
def test_each_uc_logs_into_its_slice(ip: InProcess, n: int) -> None:
    """Slices for uCs n-1..0 (in that order in the BO); one indirect packet runs an
    exec_buf on every uC: each slice gets exactly its uC's record."""
    shim = ip.shim
    ctx = shim.hwctx_create()
    bo, view = _log_bo(shim, n * SLICE)
    ucs = list(range(n))[::-1]
    shim.cert_log_attach(ctx, bo, [(uc, SLICE) for uc in ucs])
    umq = shim.umq(ctx)
    q = shim.bo_map(umq["queue_bo"])
    data = shim.bo_create(BO_DEV, 8192)
    dv, daddr = shim.bo_map(data), shim.bo_info(data)["xdna_addr"]
    src, dst = daddr + 4096, daddr + 6144
    dv[4096:4096 + 4 * N] = np.arange(N, dtype=np.int32).tobytes()
    code = kernels.encode(kernels.Desc(kernels.Kernel.COPY, count=N))
    dv[0:len(code)] = code
    dv[512:528] = struct.pack("<QQ", src, dst)
    eb = HSA_EXEC_BUF.pack(ctrlcode_lo=daddr & 0xFFFFFFFF, ctrlcode_hi=daddr >> 32, args_len=16,
                           args_lo=(daddr + 512) & 0xFFFFFFFF, args_hi=(daddr + 512) >> 32)
    entries = []
    for uc in range(n):  # one exec_buf packet per uC
        dv[1024 + 64 * uc:1024 + 64 * uc + len(eb)] = eb
        entries.append((daddr + 1024 + 64 * uc, uc))
    sig = shim.bo_create(BO_CMD, 4096)
    _write_packet(shim, ctx, umq, q, indirect_pkt(shim.bo_info(sig)["xdna_addr"], entries))
    ip.idle(1_000_000)
    assert struct.unpack_from("<Q", q, 0)[0] == 1  # read_index: the packet ran
    fw_id = ip.daemon.device.ctx.contexts[0].id
    for i, uc in enumerate(ucs):
        h, recs = _records(view, i * SLICE)
        assert (h["magic"], h["record_size"], h["capacity"]) == (CERT_LOG_MAGIC, 32, 4)
        assert [(r["uc_index"], r["hw_context_id"], r["queue_index"], r["state"], r["seq"])
                for r in recs] == [(uc, fw_id, 0, CmdState.COMPLETED, 0)]


def _write_packet(shim: Shim, ctx: int, umq: dict, q: memoryview, pkt: bytes) -> None:
    from xdna_emu.fw.aie4.messages import HSA_PKT, HSA_QUEUE_HEADER

    hdr = HSA_QUEUE_HEADER.unpack(q)
    wr = hdr["write_index"]
    off = hdr["data_address"] - umq["queue_addr"] + (wr % umq["capacity"]) * HSA_PKT.size
    q[off:off + len(pkt)] = pkt
    w = HSA_QUEUE_HEADER.offsets["write_index"]
    q[w:w + 8] = (wr + 1).to_bytes(8, "little")
    shim.doorbell(ctx)


def test_kernel_mode_jobs_log_on_uc0_and_the_ring_wraps(ip: InProcess) -> None:
    """Kernel-mode jobs are direct packets (uC 0): a failing job logs ERROR; six records in
    a four-record slice keep the last four; detach stops the records and frees the BO."""
    dev = Device(ip.shim, "driver")
    ctx = dev.context()
    bo, view = _log_bo(ip.shim, SLICE)
    ip.shim.cert_log_attach(ctx.handle, bo, [(0, SLICE)])
    a = dev.buffer(np.arange(N, dtype=np.int32))
    out = dev.buffer(np.zeros(N, dtype=np.int32))
    assert ctx.run("fail").wait(timeout=10) == "error"
    for _ in range(5):
        assert ctx.run("copy", a, out).wait(timeout=10) == "completed"
    h, recs = _records(view, 0)
    assert h["records"] == 6 and [r["seq"] for r in recs] == [2, 3, 4, 5]
    assert [r["queue_index"] for r in recs] == [2, 3, 4, 5]
    assert all(r["state"] == CmdState.COMPLETED for r in recs)
    times = [r["time_ns"] for r in recs]
    assert times == sorted(times)
    with pytest.raises(ShimError) as ei:  # bound to the context: not freed under the firmware
        ip.shim.bo_free(bo)
    assert ei.value.errno == errno.EBUSY
    ip.shim.cert_log_detach(ctx.handle)
    assert ctx.run("copy", a, out).wait(timeout=10) == "completed"
    assert CERT_LOG_HEADER.unpack(view)["records"] == 6  # detached: no more records
    ip.shim.bo_free(bo)


def test_fail_is_logged_error(ip: InProcess) -> None:
    dev = Device(ip.shim, "driver")
    ctx = dev.context()
    bo, view = _log_bo(ip.shim, SLICE)
    ip.shim.cert_log_attach(ctx.handle, bo, [(0, SLICE)])
    assert ctx.run("fail").wait(timeout=10) == "error"
    _, recs = _records(view, 0)
    assert [r["state"] for r in recs] == [CmdState.ERROR]


def test_log_survives_flr(ip: InProcess) -> None:
    """FLR re-creates the context in firmware, and its log with it (header written anew)."""
    dev = Device(ip.shim, "driver")
    ctx = dev.context()
    bo, view = _log_bo(ip.shim, SLICE)
    ip.shim.cert_log_attach(ctx.handle, bo, [(0, SLICE)])
    a = dev.buffer(np.arange(N, dtype=np.int32))
    out = dev.buffer(np.zeros(N, dtype=np.int32))
    assert ctx.run("copy", a, out).wait(timeout=10) == "completed"
    ip.call(ip.shim.flr)
    assert ctx.run("copy", a, out).wait(timeout=10) == "completed"
    h, recs = _records(view, 0)
    assert h["records"] == 1 and recs[0]["hw_context_id"] == ip.daemon.device.ctx.contexts[0].id


@pytest.mark.parametrize("slices, why", [
    ([(i, SLICE) for i in range(CERT_LOG_UCS + 1)], "seven slices"),
    ([], "no slice"),
    ([(CERT_LOG_UCS, SLICE)], "uC index 6"),
    ([(0, SLICE), (0, SLICE)], "a uC named twice"),
    ([(0, SLICE), (1, SLICE), (2, SLICE)], "slices exceed the BO"),
    ([(0, CERT_LOG_HEADER.size)], "a slice with no room for a record"),
])
def test_attach_rejections(ip: InProcess, slices: list[tuple[int, int]], why: str) -> None:
    shim = ip.shim
    ctx = shim.hwctx_create()
    bo, _ = _log_bo(shim, 2 * SLICE)
    with pytest.raises(ShimError) as ei:
        shim.cert_log_attach(ctx, bo, slices)
    assert ei.value.errno == errno.EINVAL, why
    shim.cert_log_attach(ctx, bo, [(5, SLICE), (0, SLICE)])  # the context still takes a log
    assert ip.daemon.device.ctx.status()[0]["cert_log_ucs"] == [5, 0]


def test_attach_detach_refusals(ip: InProcess) -> None:
    """Not a DEV BO, a second attach, a detach with none: EINVAL."""
    shim = ip.shim
    ctx = shim.hwctx_create()
    share = shim.bo_create(BO_SHARE, SLICE)
    for bad in (share, 9999):
        with pytest.raises(ShimError) as ei:
            shim.cert_log_attach(ctx, bad, [(0, SLICE)])
        assert ei.value.errno == errno.EINVAL
    with pytest.raises(ShimError) as ei:
        shim.cert_log_detach(ctx)
    assert ei.value.errno == errno.EINVAL
    bo, _ = _log_bo(shim, SLICE)
    shim.cert_log_attach(ctx, bo, [(0, SLICE)])
    with pytest.raises(ShimError) as ei:
        shim.cert_log_attach(ctx, bo, [(1, SLICE)])
    assert ei.value.errno == errno.EINVAL
    shim.cert_log_detach(ctx)
    assert ip.daemon.device.ctx.status()[0]["cert_log_ucs"] == []


def test_aie2_has_no_cert_log() -> None:
    with InProcess("npu4") as p:
        p.probe()
        c = p.shim.hwctx_create()
        b = p.shim.bo_create(BO_DEV, SLICE)
        with pytest.raises(ShimError) as ei:
            p.shim.cert_log_attach(c, b, [(0, SLICE)])
        assert ei.value.errno == errno.EOPNOTSUPP
