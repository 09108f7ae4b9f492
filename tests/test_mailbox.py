"""Mailbox engine: wrap with TOMBSTONE both ways, id wrap, back-pressure, malformed rings."""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xdna_emu.chips import MailboxLayout, chip_names, load_chip
from xdna_emu.fw.messages import (
    LAYOUTS,
    MSG_HEADER,
    MSG_ID_MAGIC,
    TOMBSTONE,
    Opcode,
    Status,
    sz_ver,
)
from xdna_emu.testing.pydriver import DriverChannel, PyDriver, make_test_device

CHIPS = [c for c in ("npu4", "npu1") if c in chip_names()]
FW_VER = LAYOUTS[Opcode.GET_FIRMWARE_VERSION]


@pytest.fixture(params=CHIPS)
def drv(request) -> PyDriver:
    d = PyDriver(make_test_device(request.param))
    d.smu_start()
    d.psp_start()
    d.wait_fw_alive()
    return d


def _chan(d: PyDriver) -> DriverChannel:
    assert d.mgmt is not None
    return d.mgmt


def _fw_chan(d: PyDriver):
    return d.device.mailbox.channels[0]


def test_mgmt_info_layout(drv: PyDriver) -> None:
    lay = drv.chip.mailbox
    base = lay.chan_regs(0)
    slot = lay.free_slots()[0]
    sram = drv.chip.reg("sram.mbox_chann").addr
    i = drv.info
    assert (i["x2i_tail"], i["x2i_head"]) == (base + MailboxLayout.X2I_TAIL, base + MailboxLayout.X2I_HEAD)
    assert (i["i2x_tail"], i["i2x_head"]) == (base + MailboxLayout.I2X_TAIL, base + MailboxLayout.I2X_HEAD)
    assert i["x2i_buf"] == sram + slot * lay.slot_size
    assert i["i2x_buf"] == i["x2i_buf"] + lay.ring_size
    assert i["x2i_buf_sz"] == i["i2x_buf_sz"] == lay.ring_size
    assert i["msi_id"] == 0


def test_request_raises_irq_and_sets_intr(drv: PyDriver) -> None:
    ch = _chan(drv)
    ch.send(Opcode.GET_FIRMWARE_VERSION, FW_VER.req.pack(0))
    assert drv.td.irqs == [0]
    assert drv.regs.read_dev(ch.intr_reg) == 1
    (resp,) = ch.drain()
    assert drv.regs.read_dev(ch.intr_reg) == 0
    assert resp.opcode == Opcode.GET_FIRMWARE_VERSION and resp.id == MSG_ID_MAGIC
    assert FW_VER.resp.unpack(resp.payload)[0] == 0
    assert drv.regs.read_dev(ch.x2i_head_reg) == ch.x2i_tail


def test_ring_wrap_both_directions_and_id_wrap(drv: PyDriver) -> None:
    ch = _chan(drv)
    ids = []
    for _ in range(600):
        ids.append(ch.send(Opcode.GET_FIRMWARE_VERSION, FW_VER.req.pack(0)))
        (resp,) = ch.drain()
        assert resp.id == ids[-1]
        assert FW_VER.resp.unpack(resp.payload)[1:] == drv.device.fw.image.version
    assert ch.tx_wraps >= 2 and ch.rx_wraps >= 5
    assert ids[255] == MSG_ID_MAGIC | 0xFF and ids[256] == MSG_ID_MAGIC
    assert _fw_chan(drv).error is None
    st_ = drv.device.status()["channels"][0]
    assert st_["msgs_in"] == st_["msgs_out"] == 600 and st_["state"] == "ok"


def test_responses_queue_when_i2x_full(drv: PyDriver) -> None:
    ch = _chan(drv)
    sent = [ch.send(Opcode.GET_FIRMWARE_VERSION, FW_VER.req.pack(0)) for _ in range(200)]
    fw = _fw_chan(drv)
    queued = len(fw.outq)
    assert queued > 0 and fw.msgs_out + queued == 200
    tail_before = drv.regs.read_dev(ch.i2x_tail_reg)
    assert drv.device.status()["channels"][0]["queued"] == queued
    got = ch.drain()  # each head write frees room and flushes more
    assert [r.id for r in got] == sent
    assert not fw.outq and fw.msgs_out == 200
    assert drv.regs.read_dev(ch.i2x_tail_reg) != tail_before


def test_unknown_opcode_gets_invalid_op(drv: PyDriver) -> None:
    ch = _chan(drv)
    ch.send(0x7777, b"\0" * 8)
    (resp,) = ch.drain()
    assert resp.payload == struct.pack("<I", Status.RTOS_INVALID_OP)
    assert resp.opcode == 0x7777


def _raw_put(d: PyDriver, data: bytes, at: int | None = None, tail: int | None = None) -> None:
    """Write raw bytes into the x2i ring and move the tail register (a misbehaving host)."""
    ch = _chan(d)
    at = ch.x2i_tail if at is None else at
    ch.x2i[at : at + len(data)] = data
    new_tail = at + len(data) if tail is None else tail
    d.write_dev(ch.x2i_tail_reg, new_tail)


def _hdr(total: int, mid: int = MSG_ID_MAGIC, opcode: int = Opcode.GET_FIRMWARE_VERSION,
         szv: int | None = None) -> bytes:
    return MSG_HEADER.pack(total, sz_ver(total) if szv is None else szv, mid, opcode)


@pytest.mark.parametrize("case", [
    "lying_total_size", "zero_total_size", "unaligned_total_size", "bad_magic",
    "sz_ver_mismatch", "tombstone_ahead_of_tail", "unaligned_tail", "tail_out_of_range",
])
def test_malformed_x2i_puts_channel_in_error(drv: PyDriver, case: str) -> None:
    size = _chan(drv).x2i_size
    if case == "lying_total_size":
        _raw_put(drv, _hdr(64) + b"\0" * 4)
    elif case == "zero_total_size":
        _raw_put(drv, _hdr(0) + b"\0" * 4)
    elif case == "unaligned_total_size":
        _raw_put(drv, _hdr(6) + b"\0" * 8)
    elif case == "bad_magic":
        _raw_put(drv, _hdr(4, mid=0x2E000001) + b"\0" * 4)
    elif case == "sz_ver_mismatch":
        _raw_put(drv, _hdr(4, szv=8) + b"\0" * 4)
    elif case == "tombstone_ahead_of_tail":
        _raw_put(drv, struct.pack("<I", TOMBSTONE) + _hdr(4) + b"\0" * 4)
    elif case == "unaligned_tail":
        _raw_put(drv, _hdr(4) + b"\0" * 4, tail=22)
    elif case == "tail_out_of_range":
        _raw_put(drv, _hdr(4) + b"\0" * 4, tail=size + 4)
    fw = _fw_chan(drv)
    assert fw.error is not None
    assert drv.device.stats["malformed_msgs"] == 1
    assert drv.device.stats["internal_errors"] == 0
    assert drv.device.status()["channels"][0]["state"] == "error"
    assert drv.td.irqs == []
    # the channel stays dead: a good message now gets no answer
    ch = _chan(drv)
    ch.x2i_tail = 0
    drv.write_dev(ch.x2i_head_reg, 0)
    ch.send(Opcode.GET_FIRMWARE_VERSION, FW_VER.req.pack(0))
    assert ch.drain() == [] and drv.device.stats["malformed_msgs"] == 1


@pytest.mark.parametrize("good_before", [0, 1, 3, 7])
def test_tombstone_ahead_of_tail_at_any_offset(drv: PyDriver, good_before: int) -> None:
    """A TOMBSTONE the firmware meets with the tail still ahead of it is malformed wherever
    it sits, not only at offset 0 (where the head-wrap loop bound would hide a missing
    check; docs/spec/firmware.md §5)."""
    ch = _chan(drv)
    for _ in range(good_before):
        ch.send(Opcode.GET_FIRMWARE_VERSION, FW_VER.req.pack(0))
    assert len(ch.drain()) == good_before
    at = ch.x2i_tail
    assert (at == 0) == (good_before == 0)
    _raw_put(drv, struct.pack("<I", TOMBSTONE) + _hdr(4) + b"\0" * 4)
    fw = _fw_chan(drv)
    assert fw.error is not None and "TOMBSTONE" in fw.error and f"{at:#x}" in fw.error
    assert drv.device.stats["malformed_msgs"] == 1
    assert fw.msgs_in == good_before  # nothing behind the TOMBSTONE was consumed


def test_bad_i2x_head_write_is_an_error(drv: PyDriver) -> None:
    ch = _chan(drv)
    drv.write_dev(ch.i2x_head_reg, 6)
    assert _fw_chan(drv).error is not None


def test_tombstone_wrap_from_host_is_honoured(drv: PyDriver) -> None:
    """A host that wraps early (TOMBSTONE at its tail) is followed back to offset 0."""
    ch = _chan(drv)
    for _ in range(3):
        ch.send(Opcode.GET_FIRMWARE_VERSION, FW_VER.req.pack(0))
    ch.drain()
    at = ch.x2i_tail
    assert at > 20
    msg = _hdr(4, mid=MSG_ID_MAGIC | 9) + FW_VER.req.pack(0)
    ch.x2i[at : at + 4] = struct.pack("<I", TOMBSTONE)
    ch.x2i[0 : len(msg)] = msg
    drv.write_dev(ch.x2i_tail_reg, len(msg))
    (resp,) = ch.drain()
    assert resp.id == MSG_ID_MAGIC | 9 and _fw_chan(drv).error is None
    assert drv.regs.read_dev(ch.x2i_head_reg) == len(msg)


def test_writes_to_closed_channels_are_plain_stores(drv: PyDriver) -> None:
    lay = drv.chip.mailbox
    reg = lay.chan_regs(lay.channels - 1) + MailboxLayout.X2I_TAIL
    drv.write_dev(reg, 0x44)
    assert drv.regs.read_dev(reg) == 0x44
    assert drv.device.stats["malformed_msgs"] == 0


# -- robustness ------------------------------------------------------------------------

def _interesting_offsets(chip_name: str) -> list[tuple[int, int]]:
    chip = load_chip(chip_name)
    out = []
    for role in ("psp.cmd", "psp.arg0", "psp.arg1", "psp.arg2", "psp.intr", "smu.cmd",
                 "smu.arg", "smu.resp", "smu.intr", "sram.fw_alive"):
        out.append(chip.dev_to_bar(chip.reg(role).addr))
    lay = chip.mailbox
    for idx in range(2):
        for off in range(0, 0x14, 4):
            out.append(chip.dev_to_bar(lay.chan_regs(idx) + off))
    sram = chip.reg("sram.mbox_chann").addr + lay.free_slots()[0] * lay.slot_size
    for off in range(0, 64, 4):
        out.append(chip.dev_to_bar(sram + off))
    return out


WRITE = st.tuples(st.integers(-1, 6), st.integers(-8, 0x90000), st.integers(-1, 1 << 33))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), chip=st.sampled_from(CHIPS), booted=st.booleans())
def test_random_mmio_writes_never_raise(data, chip: str, booted: bool) -> None:
    d = PyDriver(make_test_device(chip))
    if booted:
        d.smu_start()
        d.psp_start()
        d.wait_fw_alive()
    hot = _interesting_offsets(chip)
    values = st.one_of(st.integers(0, 0xFFFFFFFF), st.sampled_from(
        [0, 1, 2, 3, 4, 5, 7, 8, 16, 20, 0x1000, TOMBSTONE, MSG_ID_MAGIC, 0x80000000,
         sz_ver(4), 0x108]))
    ops = data.draw(st.lists(st.one_of(
        st.tuples(st.sampled_from(hot), values).map(lambda t: (t[0][0], t[0][1], t[1])),
        WRITE), max_size=60))
    for bar, off, val in ops:
        d.device.mmio_write(bar, off, val)
    d.device.poll()
    status = d.device.status()
    assert status["counters"]["internal_errors"] == 0
    d.device.reset()
    assert d.device.status()["counters"]["internal_errors"] == 0


def test_logged_tail_is_consumed_even_when_the_register_already_holds_a_newer_one(
        drv: PyDriver) -> None:
    """Regression: the firmware used to re-read the x2i tail register in its trap handler.
    A shim thread that stored a newer tail before the daemon replayed an older logged one
    made the firmware parse past the older message into half-written bytes ("impossible
    total_size 0") and put the mgmt channel in error. The logged value is what counts."""
    ch = _chan(drv)
    real_write = ch._write_reg
    logged: list[int] = []
    ch._write_reg = lambda addr, value: logged.append(value)  # type: ignore[method-assign]
    ch.send(Opcode.GET_FIRMWARE_VERSION, bytes(4))
    ch.send(Opcode.GET_FIRMWARE_VERSION, bytes(4))
    ch._write_reg = real_write  # type: ignore[method-assign]
    bar, off = drv.chip.dev_to_bar(ch.x2i_tail_reg)
    drv.device.regs.write(bar, off, logged[1])  # the direct store of the newer tail...
    drv.device.mmio_write(bar, off, logged[0])  # ...then the older logged write is replayed
    assert _fw_chan(drv).ok and _fw_chan(drv).x2i_head == logged[0]
    drv.device.mmio_write(bar, off, logged[1])
    assert _fw_chan(drv).ok and _fw_chan(drv).x2i_head == logged[1]
    assert len(ch.drain()) == 2
