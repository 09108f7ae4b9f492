"""The AIE4 device model driven by the Python reference driver: PSP with the cert image,
mailbox_info, the AIE4 init order, the mgmt opcodes and their bad inputs, save/restore."""

from __future__ import annotations

import struct

import pytest

from xdna_emu.fw.aie4.messages import (
    CERT_ALIGN,
    MAILBOX_INFO,
    MESSAGES,
    PSP_NOTIFY_INTR,
    PSP_STATUS_READY,
    RUNTIME_CONFIG_PAYLOADS,
    AsyncEventType,
    Opcode,
    PspCmd,
    PspStatus,
    RuntimeConfigType,
    Status,
)
from xdna_emu.fw.image import CERT_MAGIC, build_cert, build_image, parse_cert
from xdna_emu.fw.messages import SmuCmd
from xdna_emu.pci.function import PciFunction
from xdna_emu.testing.aie4driver import CERT_IOVA, Aie4PyDriver
from xdna_emu.testing.pydriver import FW_IOVA, DriverError, make_test_device


def _drv(chip: str = "npu3") -> Aie4PyDriver:
    return Aie4PyDriver(make_test_device(chip))


def test_psp_ready_at_reset_and_info_invalid() -> None:
    d = _drv()
    assert d.read_role("psp.status") & PSP_STATUS_READY
    assert d.regs.read_dev(d.chip.aie4.mbox_info) == 0
    with pytest.raises(DriverError, match="ETIME"):
        d.wait_mailbox_info()


@pytest.mark.parametrize("chip", ["npu3", "npu7", "npu10", "npu3_1b0a"])
def test_bring_up_plain(chip: str) -> None:
    d = _drv(chip)
    out = d.bring_up()
    assert d.info["valid"] == 1 and d.info["i2x_msi_idx"] == 0
    # mailbox_info values are BAR offsets: registers in BAR0, rings in BAR2
    lay = d.chip.aie4
    assert d.info["x2i_buffer_addr"] == lay.x2i_ring - d.chip.bars[2].base
    assert d.info["x2i_tail_offset"] == lay.mgmt_regs - d.chip.bars[0].base
    assert out["partition_id"] != 0
    ver = out["identify"]
    assert (ver["major"], ver["minor"], ver["patch"], ver["build"]) == (1, 0, 0, 0)
    cert = out["cert"]
    assert (cert["major"], cert["minor"], cert["hotfix"], cert["build"]) == (1, 0, 0, 1)
    assert out["tiles"]["cols"] == 3 and out["aie_version"]["major"] == 4
    fw = d.device.fw
    assert fw.work_buffer is not None and len(fw.async_events) == 3
    assert fw.runtime_value(RuntimeConfigType.CONTEXT_TIMEOUT, "timeout_ms") == 2000
    assert fw.runtime_value(RuntimeConfigType.CTX_SWITCH_HYSTERESIS, "hysteresis_us") == 1000
    assert d.device.smu.powered and d.device.psp.state == "running"
    assert not d.device.mailbox.channels[0].intr_reg  # AIE4 has no ack register
    d.stop()
    assert d.regs.read_dev(lay.mbox_info) == 0 and d.device.fw is None
    assert not d.device.smu.powered


def test_pf_and_vf_bring_up() -> None:
    pf = _drv("npu3_pf")
    assert pf.bring_up()["partition_id"] == 0  # a PF creates no partition
    vf = _drv("npu3_vf")
    info = vf.wait_mailbox_info()  # a VF's firmware is up from reset: no PSP, no SMU
    assert info["valid"] == 1 and not vf.device.smu.powered
    out = vf.bring_up()
    assert out["partition_id"] != 0 and vf.device.fw.work_buffer is None
    assert vf.device.psp.state == "idle"


def test_smu_npu7_registers() -> None:
    d = _drv("npu7")
    d.smu_ok(SmuCmd.POWER_ON)
    assert d.device.smu.powered and d.regs.loc("smu.cmd") == (5, 0x960)


# -- PSP and the cert image -----------------------------------------------------------------------
def _psp_to_validated(d: Aie4PyDriver) -> int:
    d.smu_start()
    size = d.map_image(build_image(d.chip))
    assert d.psp_exec(PspCmd.VALIDATE, FW_IOVA & 0xFFFFFFFF, FW_IOVA >> 32, size) == 0
    return size


def _cert_resp(d: Aie4PyDriver, cert: bytes, iova: int = CERT_IOVA) -> int:
    size = d.map_buffer(cert, CERT_IOVA, CERT_ALIGN)
    return d.psp_exec(PspCmd.VALIDATE_CERT, iova & 0xFFFFFFFF, iova >> 32, size)


def test_corrupt_cert_fails_validate_cert_distinctly() -> None:
    d = _drv()
    _psp_to_validated(d)
    cert = bytearray(build_cert(d.chip))
    cert[-1] ^= 0xFF  # payload damage: digest mismatch
    assert _cert_resp(d, bytes(cert)) == PspStatus.CERT_INVALID
    # START without a valid cert is refused, with its own status
    assert d.psp_exec(PspCmd.START, 1) == PspStatus.NO_CERT
    assert d.device.fw is None


def test_cert_rules() -> None:
    d = _drv()
    _psp_to_validated(d)
    assert _cert_resp(d, build_cert(d.chip), CERT_IOVA + 0x100) == PspStatus.CERT_ALIGN
    assert _cert_resp(d, build_image(d.chip)) == PspStatus.CERT_SIZE  # too large for a cert
    wrong = build_cert(PciFunction("npu7").chip)
    assert _cert_resp(d, wrong) == PspStatus.CERT_CHIP
    assert _cert_resp(d, build_cert(d.chip)) == PspStatus.OK
    assert d.psp_exec(PspCmd.START, 0) == PspStatus.BAD_ARG
    assert d.psp_exec(PspCmd.START, 1) == PspStatus.OK
    assert d.device.fw is not None and d.device.psp.state == "running"


def test_cert_before_npu_image_and_parse() -> None:
    d = _drv()
    d.smu_start()
    assert _cert_resp(d, build_cert(d.chip)) == PspStatus.BAD_STATE
    cert = build_cert(d.chip)
    assert cert.startswith(CERT_MAGIC) and len(cert) <= 32 * 1024 + 256
    assert parse_cert(cert, d.chip).version == (1, 0, 0, 1)


def test_psp_needs_notify_value() -> None:
    """INTR=1 (the AIE2 trigger) does nothing on AIE4; only PSP_NOTIFY_INTR runs a command."""
    d = _drv()
    d.smu_start()
    d.write_role("psp.arg2", PspCmd.RELEASE_TMR << 24)
    d.write_role("psp.intr", 0)
    d.write_role("psp.intr", 1)
    assert d.device.stats["psp_cmds"] == 0 and not d.read_role("psp.status") & PSP_STATUS_READY
    d.write_role("psp.intr", PSP_NOTIFY_INTR)
    assert d.device.stats["psp_cmds"] == 1 and d.read_role("psp.status") & PSP_STATUS_READY


# -- mgmt opcodes and their bad inputs -------------------------------------------------------------
@pytest.fixture
def up() -> Aie4PyDriver:
    d = _drv()
    d.bring_up()
    return d


def test_unknown_opcode_is_notsupp(up: Aie4PyDriver) -> None:
    for op in (0x12345, int(Opcode.GET_TELEMETRY)):
        raw = up.mgmt.request(op, bytes(4), 4)
        assert struct.unpack("<I", raw)[0] == Status.NOTSUPP
    assert up.device.stats["unknown_ops"] == 2


def test_wrong_request_size_is_error(up: Aie4PyDriver) -> None:
    m = MESSAGES[Opcode.IDENTIFY]
    raw = up.mgmt.request(Opcode.IDENTIFY, bytes(8), m.resp.size)
    assert m.resp.unpack(raw)["status"] == Status.ERROR


def test_runtime_config_sizes_per_type(up: Aie4PyDriver) -> None:
    kind = RuntimeConfigType.DPM_OVERRIDE
    up.set_runtime_config(kind, min_level=1, max_level=5)
    body = RUNTIME_CONFIG_PAYLOADS[kind]
    got = up.call_ok(Opcode.GET_RUNTIME_CONFIG, resp_extra=body.size, type=kind)
    assert body.unpack(got["_raw"][4:]) == {"min_level": 1, "max_level": 5}
    # a payload of another type's size is refused
    assert up.call(Opcode.SET_RUNTIME_CONFIG, bytes(4), type=kind)["status"] == Status.ERROR
    assert up.call(Opcode.SET_RUNTIME_CONFIG, bytes(4), type=99)["status"] == Status.NOTSUPP


def test_partitions(up: Aie4PyDriver) -> None:
    first = up.partition_id
    assert up.call(Opcode.CREATE_PARTITION, col_start=0, col_count=1)["status"] == Status.ERROR
    assert up.call(Opcode.CREATE_PARTITION, col_start=2, col_count=5)["status"] == Status.ERROR
    assert up.call(Opcode.CREATE_PARTITION, col_start=0, col_count=0)["status"] == Status.ERROR
    up.call_ok(Opcode.DESTROY_PARTITION, partition_id=first)
    assert up.call(Opcode.DESTROY_PARTITION, partition_id=first)["status"] == Status.ERROR
    again = up.call_ok(Opcode.CREATE_PARTITION, col_start=0, col_count=3)["partition_id"]
    assert again not in (0, first)


def test_work_buffer_rules(up: Aie4PyDriver) -> None:
    assert up.call(Opcode.DRAM_WORK_BUFFER, addr=0x9_0000_0000, pasid=0,
                   size=4 << 20)["status"] == Status.ERROR  # one at a time
    up.call_ok(Opcode.RELEASE_DRAM_WORK_BUFFER)
    assert up.call(Opcode.DRAM_WORK_BUFFER, addr=0x9_0000_0000, pasid=0,
                   size=4 << 20)["status"] == Status.ERROR  # not mapped
    assert up.call(Opcode.RELEASE_DRAM_WORK_BUFFER)["status"] == Status.ERROR


def test_async_events_held_and_full(up: Aie4PyDriver) -> None:
    m = MESSAGES[Opcode.ASYNC_EVENT_MSG]
    raw = up.mgmt.request(Opcode.ASYNC_EVENT_MSG, m.req.pack(addr=0x2_1000_0000, pasid=0, size=64),
                          m.resp.size)
    assert m.resp.unpack(raw)["status"] == Status.ASYNC_MSGS_FULL
    assert up.device.fw.raise_event(AsyncEventType.CTX_ERROR, b"\x07" * 8)
    resp = up.mgmt.drain()
    assert len(resp) == 1 and m.resp.unpack(resp[0].payload)["type"] == AsyncEventType.CTX_ERROR
    assert up.iommu.read(0x2_1000_0000, 8, 0) == b"\x07" * 8


def test_power_override(up: Aie4PyDriver) -> None:
    up.call_ok(Opcode.POWER_OVERRIDE, mode=4)
    assert up.device.fw.power_mode == 4
    assert up.call(Opcode.POWER_OVERRIDE, mode=9)["status"] == Status.ERROR


def test_flr_clears_mailbox_info(up: Aie4PyDriver) -> None:
    up.fn.reset()
    assert MAILBOX_INFO.unpack(up.regs.span(up.chip.aie4.mbox_info, 64))["valid"] == 0
    assert up.read_role("psp.status") & PSP_STATUS_READY and up.device.fw is None
    d = Aie4PyDriver(up.td)
    assert d.bring_up()["partition_id"] == 1  # a fresh firmware boot


def test_save_restore_round_trip(up: Aie4PyDriver) -> None:
    st = up.fn.save()
    td = make_test_device("npu3")
    td.fn.restore(st)
    assert td.fn.device.fw.partitions == up.device.fw.partitions
    assert td.fn.save() == st
    # the restored firmware keeps serving: IDENTIFY through the restored rings
    d = Aie4PyDriver(td)
    d.wait_mailbox_info()
    d.mgmt.x2i_tail = up.mgmt.x2i_tail
    d.mgmt.i2x_head = up.mgmt.i2x_head
    d.mgmt.next_id = up.mgmt.next_id
    assert d.call_ok(Opcode.IDENTIFY)["major"] == 1


def test_create_and_destroy_vfs_on_the_pf() -> None:
    """CREATE_VFS takes 1..TotalVFs while none exist; DESTROY_VFS needs some; the count
    survives save/restore (docs/spec/aie4.md §10)."""
    pf = _drv("npu3_pf")
    pf.bring_up()
    total = pf.chip.pci.total_vfs
    for bad in (0, total + 1):
        assert pf.call(Opcode.CREATE_VFS, num_vfs=bad)["status"] == Status.ERROR
    assert pf.call(Opcode.DESTROY_VFS)["status"] == Status.ERROR  # none yet
    pf.call_ok(Opcode.CREATE_VFS, num_vfs=total)
    assert pf.device.fw.num_vfs == total
    assert pf.call(Opcode.CREATE_VFS, num_vfs=1)["status"] == Status.ERROR  # already some
    td = make_test_device("npu3_pf")
    td.fn.restore(pf.fn.save())
    assert td.fn.device.fw.num_vfs == total
    pf.call_ok(Opcode.DESTROY_VFS)
    assert pf.device.fw.num_vfs == 0


@pytest.mark.parametrize("chip", ["npu3", "npu3_vf"])
def test_vf_messages_are_notsupp_off_a_pf(chip: str) -> None:
    d = _drv(chip)
    d.bring_up()
    raw = d.mgmt.request(Opcode.CREATE_VFS, struct.pack("<I", 1), 4)
    assert struct.unpack("<I", raw)[0] == Status.NOTSUPP
