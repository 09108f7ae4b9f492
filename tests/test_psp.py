"""PSP: VALIDATE/START/RELEASE_TMR, the INTR edge, STATUS/RESP aliasing, every image error."""

from __future__ import annotations

import pytest

from xdna_emu.chips import chip_names, load_chip
from xdna_emu.fw.image import build_image
from xdna_emu.fw.messages import PSP_STATUS_READY, PspCmd, PspStatus, SmuCmd
from xdna_emu.fw.psp import IMAGE_MAX
from xdna_emu.iommu import DMA_READ
from xdna_emu.testing.pydriver import FW_IOVA, PyDriver, make_test_device

CHIPS = [c for c in ("npu4", "npu1") if c in chip_names()]


@pytest.fixture(params=CHIPS)
def drv(request) -> PyDriver:
    d = PyDriver(make_test_device(request.param))
    d.smu_start()
    return d


def _validate(d: PyDriver, image: bytes | None = None, size: int | None = None,
              addr: int = FW_IOVA) -> int:
    mapped = d.map_image(image if image is not None else build_image(d.chip))
    return d.psp_exec(PspCmd.VALIDATE, addr & 0xFFFFFFFF, addr >> 32,
                      mapped if size is None else size)


def test_psp_happy_path_boots_firmware(drv: PyDriver) -> None:
    assert drv.read_role("sram.fw_alive") == 0
    drv.psp_start()
    assert drv.read_role("psp.status") & PSP_STATUS_READY
    assert drv.read_role("psp.resp") == 0
    assert drv.device.psp.state == "running"
    assert drv.read_role("sram.fw_alive") == drv.chip.mailbox.mgmt_info
    info = drv.wait_fw_alive()
    assert info["prot_major"] == drv.chip.protocol_major
    assert drv.read_role("sram.fw_alive") == 0


def test_psp_cmd_write_clears_ready_until_done(drv: PyDriver) -> None:
    drv.psp_exec(PspCmd.RELEASE_TMR)
    assert drv.read_role("psp.status") & PSP_STATUS_READY
    drv.write_role("psp.cmd", PspCmd.RELEASE_TMR)
    assert drv.read_role("psp.status") == PspCmd.RELEASE_TMR  # bit31 cleared by the alias


def test_psp_intr_without_edge_does_nothing(drv: PyDriver) -> None:
    drv.psp_exec(PspCmd.RELEASE_TMR)
    n = drv.device.stats["psp_cmds"]
    drv.write_role("psp.cmd", PspCmd.RELEASE_TMR)
    drv.write_role("psp.intr", 1)  # INTR is still 1 from the last exec: no edge
    assert drv.device.stats["psp_cmds"] == n
    assert not drv.read_role("psp.status") & PSP_STATUS_READY
    drv.write_role("psp.intr", 0)
    drv.write_role("psp.intr", 1)
    assert drv.device.stats["psp_cmds"] == n + 1
    assert drv.read_role("psp.status") & PSP_STATUS_READY


def test_psp_start_before_validate_is_bad_state(drv: PyDriver) -> None:
    assert drv.psp_exec(PspCmd.START, 1) == PspStatus.BAD_STATE
    assert drv.read_role("sram.fw_alive") == 0


def test_psp_start_needs_copy_fw_argument(drv: PyDriver) -> None:
    assert _validate(drv) == 0
    assert drv.psp_exec(PspCmd.START, 0) == PspStatus.BAD_ARG
    assert drv.psp_exec(PspCmd.START, 1) == 0


def test_psp_unknown_command(drv: PyDriver) -> None:
    assert drv.psp_exec(0x77) == PspStatus.UNKNOWN_CMD


def test_psp_validate_while_running_is_bad_state(drv: PyDriver) -> None:
    drv.psp_start()
    assert _validate(drv) == PspStatus.BAD_STATE
    assert drv.device.psp.state == "running"


def test_psp_image_errors(drv: PyDriver) -> None:
    img = bytearray(build_image(drv.chip))
    img[5000] ^= 1
    assert _validate(drv, bytes(img)) == PspStatus.IMG_DIGEST
    img = bytearray(build_image(drv.chip))
    img[0x20] ^= 1  # build number in the header
    assert _validate(drv, bytes(img)) == PspStatus.IMG_SIGNATURE
    other = "npu1" if drv.chip.name != "npu1" else "npu4"
    assert _validate(drv, build_image(load_chip(other))) == PspStatus.IMG_CHIP
    assert _validate(drv, b"\0" * 200) == PspStatus.IMG_MAGIC
    # short: a 64 KiB window cannot hold the 96 KiB payload
    assert _validate(drv, size=0x10000) == PspStatus.IMG_TRUNCATED
    assert _validate(drv, size=0) == PspStatus.IMG_SIZE
    assert _validate(drv, size=0x18000) == PspStatus.IMG_SIZE
    assert _validate(drv, size=IMAGE_MAX + 0x10000) == PspStatus.IMG_SIZE
    assert _validate(drv, addr=FW_IOVA + 0x1000) == PspStatus.IMG_ALIGN
    assert drv.device.psp.state == "idle"
    # a failed VALIDATE leaves nothing to START
    assert drv.psp_exec(PspCmd.START, 1) == PspStatus.BAD_STATE


def test_psp_dma_fault(drv: PyDriver) -> None:
    assert _validate(drv, addr=FW_IOVA + 0x100000) == PspStatus.DMA_FAULT
    assert drv.device.stats["iommu_faults"] == 1
    drv.iommu.bus_master = lambda: False
    assert _validate(drv) == PspStatus.DMA_FAULT


def test_psp_dma_needs_read_permission() -> None:
    d = PyDriver(make_test_device("npu4"))
    d.smu_start()
    img = build_image(d.chip)
    buf = bytearray(0x20000)
    buf[: len(img)] = img
    d.iommu.map(0, FW_IOVA, len(buf), 2, None, mem=buf)  # write-only
    assert d.psp_exec(PspCmd.VALIDATE, FW_IOVA & 0xFFFFFFFF, FW_IOVA >> 32, len(buf)) == PspStatus.DMA_FAULT
    d.iommu.unmap(0, FW_IOVA, len(buf))
    d.iommu.map(0, FW_IOVA, len(buf), DMA_READ, None, mem=buf)
    assert d.psp_exec(PspCmd.VALIDATE, FW_IOVA & 0xFFFFFFFF, FW_IOVA >> 32, len(buf)) == 0


def test_psp_needs_power() -> None:
    d = PyDriver(make_test_device("npu4"))
    assert d.psp_exec(PspCmd.VALIDATE) == PspStatus.NO_POWER
    d.smu_start()
    d.psp_start()
    d.smu_exec(SmuCmd.POWER_OFF)
    assert d.device.psp.state == "idle" and d.device.fw is None
    assert d.psp_exec(PspCmd.START, 1) == PspStatus.NO_POWER


def test_psp_release_tmr_stops_firmware(drv: PyDriver) -> None:
    drv.psp_start()
    drv.wait_fw_alive()
    assert drv.device.mailbox.channels
    assert drv.psp_exec(PspCmd.RELEASE_TMR) == 0
    assert drv.device.psp.state == "idle" and not drv.device.mailbox.channels
    assert drv.device.status()["firmware"] is None
    # and it can be started again
    drv.psp_start()
    assert drv.read_role("sram.fw_alive") != 0


def test_pwaitmode_tracks_suspend(drv: PyDriver) -> None:
    drv.bring_up(async_events=False)
    from xdna_emu.fw.messages import Opcode

    assert drv.read_role("psp.pwaitmode") & 1 == 0
    drv.msg_ok(Opcode.SUSPEND, 0)
    assert drv.read_role("psp.pwaitmode") & 1 == 1
    drv.msg_ok(Opcode.RESUME, 0)
    assert drv.read_role("psp.pwaitmode") & 1 == 0
