"""The XRT-like runtime API end to end: real daemon, real shim, real data through DMA."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from xdna_emu import Emulator
from xdna_emu.chips import emulated_chip_names
from xdna_emu.runtime import Device

AIE2_CHIPS = emulated_chip_names(family="aie2")
#: the same runtime API drives AIE2 and AIE4 (docs/spec/aie4.md §8)
BOTH = pytest.mark.parametrize("xdna_chip", ["npu4", "npu3"])


@pytest.mark.parametrize("xdna_chip", [*AIE2_CHIPS, "npu3"])
def test_readme_snippet(xdna_emulator, xdna_firmware_dir, monkeypatch) -> None:
    monkeypatch.setenv("XDNA_EMU_FIRMWARE_PATH", str(xdna_firmware_dir))
    with Device.open(socket=xdna_emulator.socket) as dev:
        ctx = dev.context()
        a = dev.buffer(np.arange(4096, dtype=np.int32))
        b = dev.buffer(np.full(4096, 7, dtype=np.int32))
        out = dev.buffer(np.zeros(4096, dtype=np.int32))
        run = ctx.run("add", a, b, out)
        assert run.wait(timeout=5) == "completed"
        assert (out.read() == np.arange(4096) + 7).all()


@pytest.fixture
def dev(xdna_emulator, xdna_firmware_dir):
    with Device.open(socket=xdna_emulator.socket, firmware_path=xdna_firmware_dir) as d:
        yield d


@BOTH
def test_every_data_kernel(dev) -> None:
    ctx = dev.context()
    rng = np.random.default_rng(7)
    x = rng.integers(-1000, 1000, 1024).astype(np.int32)
    src, dst = dev.buffer(x), dev.buffer(np.zeros_like(x))
    assert ctx.run("copy", src, dst).wait(5) == "completed"
    assert (dst.read() == x).all()
    assert ctx.run("scale", src, dst, scalar=3).wait(5) == "completed"
    assert (dst.read() == x * 3).all()
    f = rng.standard_normal(256).astype(np.float32)
    fs, fd = dev.buffer(f), dev.buffer(np.zeros_like(f))
    assert ctx.run("scale", fs, fd, scalar=0.5).wait(5) == "completed"
    assert np.allclose(fd.read(), f * np.float32(0.5))
    a = rng.integers(-8, 8, (6, 5)).astype(np.int32)
    b = rng.integers(-8, 8, (5, 4)).astype(np.int32)
    c = dev.buffer(np.zeros((6, 4), dtype=np.int32))
    assert ctx.run("gemm", dev.buffer(a), dev.buffer(b), c).wait(5) == "completed"
    assert (c.read() == a @ b).all()
    assert ctx.run("nop").wait(5) == "completed"


@BOTH
def test_chain_and_failed_command_in_the_middle(dev) -> None:
    ctx = dev.context()
    x = dev.buffer(np.arange(64, dtype=np.int32))
    y = dev.buffer(np.zeros(64, dtype=np.int32))
    run = ctx.chain([("copy", x, y), ("nop",), ("scale", x, y)])
    assert run.wait(5) == "completed"
    assert (y.read() == np.arange(64)).all()
    bad = ctx.chain([("nop",), ("fail",), ("copy", y, x)])
    assert bad.wait(5) == "error"
    assert bad.error_index == 1
    # The context stays usable after a failed command.
    assert ctx.run("nop").wait(5) == "completed"


@BOTH
def test_threads_share_a_device(dev) -> None:
    errors: list[BaseException] = []

    def worker(seed: int) -> None:
        try:
            ctx = dev.context()
            for i in range(10):
                v = np.full(256, seed * 100 + i, dtype=np.int32)
                a, o = dev.buffer(v), dev.buffer(np.zeros_like(v))
                assert ctx.run("scale", a, o, scalar=2).wait(5) == "completed"
                assert (o.read() == v * 2).all()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors


def test_info_reports_probe_facts_clocks_power_and_contexts(dev) -> None:
    dev.context()
    info = dev.info()
    assert info["chip"] == "npu4" and info["role"] == "driver"
    assert info["power"]["npuclk_mhz"] > 0 and info["power"]["hclk_mhz"] > 0
    assert info["power"]["tops"] > 0
    assert len(info["contexts"]) == 1


def test_iova_mode_moves_data_by_dma_addresses(xdna_emulator, xdna_firmware_dir) -> None:
    """The driver's iommu_mode=1: buffers are addressed by IOVAs the driver allocates, not by
    this process's virtual addresses, and jobs still read and write the right memory."""
    with Device.open(socket=xdna_emulator.socket, firmware_path=xdna_firmware_dir,
                     iommu="iova") as dev:
        ctx = dev.context()
        a = dev.buffer(np.arange(1024, dtype=np.int32))
        out = dev.buffer(np.zeros(1024, dtype=np.int32))
        info = dev.shim.bo_info(a.handle)
        assert info["xdna_addr"] != info["vaddr"]  # a DMA address, not the VA
        assert ctx.run("scale", a, out, scalar=4).wait(5) == "completed"
        assert (out.read() == np.arange(1024) * 4).all()


def test_iommu_mode_rules(xdna_emulator, xdna_firmware_dir) -> None:
    import errno as E

    from xdna_emu.shim import ShimError

    with Device.open(socket=xdna_emulator.socket, firmware_path=xdna_firmware_dir) as dev:
        with pytest.raises(ShimError) as exc:
            dev.shim.set_iommu_mode(7)
        assert exc.value.errno == E.EINVAL
        dev.buffer(np.zeros(16, dtype=np.int32))
        with pytest.raises(ShimError) as exc:
            dev.shim.set_iommu_mode("iova")
        assert exc.value.errno == E.EBUSY
        with pytest.raises(ShimError) as exc:  # a client may not use the kernel's addresses
            Device.open(socket=xdna_emulator.socket, iommu="iova")
        assert exc.value.errno == E.EPERM


def test_open_with_no_argument_uses_discovery(tmp_path, monkeypatch, xdna_firmware_dir) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))  # the default runtime dir lives here
    monkeypatch.setenv("XDNA_EMU_FIRMWARE_PATH", str(xdna_firmware_dir))
    with Emulator(chip="npu1") as emu:
        assert emu.runtime_dir == tmp_path / "xdna-emu"
        with Device.open() as dev:
            assert dev.info()["bdf"] == emu.bdf and dev.info()["chip"] == "npu1"
            ctx = dev.context()
            assert ctx.run("nop").wait(5) == "completed"


@BOTH
def test_many_runs_do_not_exhaust_buffer_objects(dev) -> None:
    """ctx.run() makes a command BO per call; waiting a run to its end gives it back, so
    more runs than the shim has BO handles (4096) go through."""
    ctx = dev.context()
    x = dev.buffer(np.arange(16, dtype=np.int32))
    y = dev.buffer(np.zeros(16, dtype=np.int32))
    for i in range(4200):
        run = ctx.run("scale", x, y, scalar=i % 7) if i % 50 == 0 else ctx.run("nop")
        assert run.wait(5) == "completed"
    assert (y.read() == np.arange(16) * (4150 % 7)).all()
    bad = ctx.chain([("nop",), ("fail",)])
    assert bad.wait(5) == "error" and bad.error_index == 1  # still answered after the free
