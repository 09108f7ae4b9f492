"""AIE4 user-mode submission: the application owns the HSA queue of its context, writes
packets itself, publishes write_index and rings the doorbell; the firmware runs them and
reports through completion_signal and read_index (docs/spec/aie4.md §8)."""

from __future__ import annotations

import errno
import struct
import time
from pathlib import Path

import numpy as np
import pytest

from xdna_emu import kernels
from xdna_emu.fw.aie4.messages import (
    HSA_EXEC_BUF,
    HSA_PKT,
    HSA_PKT_HEADER,
    HSA_QUEUE_HEADER,
    ChainFlag,
    CmdState,
    HsaOpcode,
)
from xdna_emu.shim import BO_CMD, BO_DEV, Shim, ShimError, ert_start_dpu

N = 256


@pytest.fixture
def shim(xdna_emulator, xdna_firmware_dir: Path):  # noqa: ANN001, ANN201
    with Shim.open(xdna_emulator.socket) as s:
        s.probe(xdna_firmware_dir)
        yield s


class App:
    """An application doing its own submission on one context's queue."""

    def __init__(self, shim: Shim) -> None:
        self.shim = shim
        self.ctx = shim.hwctx_create()
        self.umq = shim.umq(self.ctx)
        self.q = shim.bo_map(self.umq["queue_bo"])
        self.wr = 0

    def buf(self, data: bytes) -> tuple[int, memoryview]:
        h = self.shim.bo_create(BO_DEV, max(len(data), 64))
        view = self.shim.bo_map(h)
        view[: len(data)] = data
        return int(self.shim.bo_info(h)["xdna_addr"]), view

    def signal(self) -> tuple[int, memoryview]:
        h = self.shim.bo_create(BO_CMD, 4096)
        return int(self.shim.bo_info(h)["xdna_addr"]), self.shim.bo_map(h)

    def packet(self, signal: int, desc: kernels.Desc, bufs: list[int], opcode: int = HsaOpcode.EXEC_BUF) -> bytes:
        code, _ = self.buf(kernels.encode(desc))
        args, _ = self.buf(b"".join(struct.pack("<Q", b) for b in bufs))
        eb = HSA_EXEC_BUF.pack(ctrlcode_lo=code & 0xFFFFFFFF, ctrlcode_hi=code >> 32,
                               args_len=8 * len(bufs), args_lo=args & 0xFFFFFFFF, args_hi=args >> 32)
        hdr = HSA_PKT_HEADER.pack(opcode=opcode, chain_flag=ChainFlag.LAST, count=len(eb),
                                  completion_signal=signal)
        return (hdr + eb).ljust(HSA_PKT.size, b"\0")

    def submit(self, pkt: bytes) -> None:
        hdr = HSA_QUEUE_HEADER.unpack(self.q)
        off = hdr["data_address"] - self.umq["queue_addr"] + (self.wr % self.umq["capacity"]) * HSA_PKT.size
        self.q[off : off + len(pkt)] = pkt
        self.wr += 1
        w = HSA_QUEUE_HEADER.offsets["write_index"]
        self.q[w : w + 8] = self.wr.to_bytes(8, "little")
        self.shim.doorbell(self.ctx)

    def wait_read(self, index: int, timeout: float = 60.0) -> None:
        end = time.monotonic() + timeout
        while HSA_QUEUE_HEADER.unpack(self.q)["read_index"] < index:
            if time.monotonic() > end:
                raise TimeoutError(f"read_index never reached {index}")
            time.sleep(0.001)


@pytest.mark.parametrize("xdna_chip", ["npu3"])
def test_user_mode_job(shim: Shim) -> None:
    app = App(shim)
    a, _ = app.buf(np.arange(N, dtype=np.int32).tobytes())
    b, _ = app.buf(np.full(N, 3, dtype=np.int32).tobytes())
    out, view = app.buf(bytes(4 * N))
    sig, sview = app.signal()
    app.submit(app.packet(sig, kernels.Desc(kernels.Kernel.ADD, count=N), [a, b, out]))
    app.wait_read(1)
    assert struct.unpack_from("<I", sview)[0] & 0xF == CmdState.COMPLETED
    assert (np.frombuffer(view[: 4 * N], np.int32) == np.arange(N) + 3).all()


@pytest.mark.parametrize("xdna_chip", ["npu3"])
def test_user_mode_bad_packet_is_that_job_only(shim: Shim) -> None:
    app = App(shim)
    a, _ = app.buf(np.arange(N, dtype=np.int32).tobytes())
    out, view = app.buf(bytes(4 * N))
    sig, sview = app.signal()
    app.submit(app.packet(sig, kernels.Desc(kernels.Kernel.COPY, count=N), [a, out], opcode=9))
    app.wait_read(1)
    assert struct.unpack_from("<I", sview)[0] & 0xF == CmdState.ERROR
    shim.doorbell(app.ctx)  # nothing new: the firmware only counts it
    sig2, sview2 = app.signal()
    app.submit(app.packet(sig2, kernels.Desc(kernels.Kernel.COPY, count=N), [a, out]))
    app.wait_read(2)
    assert struct.unpack_from("<I", sview2)[0] & 0xF == CmdState.COMPLETED
    assert (np.frombuffer(view[: 4 * N], np.int32) == np.arange(N)).all()


@pytest.mark.parametrize("xdna_chip", ["npu3"])
def test_user_mode_context_takes_no_kernel_submission(shim: Shim) -> None:
    app = App(shim)
    code, _ = app.buf(kernels.encode(kernels.Desc(kernels.Kernel.NOP)))
    cmd = shim.bo_create(BO_CMD, 4096)
    body = ert_start_dpu(code, kernels.DESC.size)
    shim.bo_map(cmd)[: len(body)] = body
    with pytest.raises(ShimError) as ei:
        shim.exec(app.ctx, cmd)
    assert ei.value.errno == errno.EBUSY
    with pytest.raises(ShimError) as ei:
        shim.bo_free(app.umq["queue_bo"])  # the firmware still reads it
    assert ei.value.errno == errno.EBUSY
    shim.hwctx_destroy(app.ctx)
    with pytest.raises(ShimError) as ei:
        shim.doorbell(app.ctx)
    assert ei.value.errno == errno.EINVAL


@pytest.mark.parametrize("xdna_chip", ["npu4"])
def test_aie2_has_no_user_mode_queues(shim: Shim) -> None:
    ctx = shim.hwctx_create()
    with pytest.raises(ShimError) as ei:
        shim.umq(ctx)
    assert ei.value.errno == errno.EOPNOTSUPP
