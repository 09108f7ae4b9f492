"""Management firmware: the driver's bring-up, every mgmt opcode, gates, suspend, async events."""

from __future__ import annotations

import struct
from dataclasses import asdict

import pytest

from xdna_emu.chips import chip_names, load_chip
from xdna_emu.fw.image import build_image
from xdna_emu.fw.messages import (
    LAYOUTS,
    TILE_INFO_FIELDS,
    AsyncEventType,
    Opcode,
    PspCmd,
    Status,
)
from xdna_emu.fw.mgmt import ASYNC_EVENT_MAX
from xdna_emu.iommu import DMA_READ, DMA_WRITE
from xdna_emu.testing.pydriver import PyDriver, make_test_device

CHIPS = [c for c in ("npu4", "npu1") if c in chip_names()]


def _driver(chip: str, image: bytes | None = None, async_events: bool = False) -> tuple[PyDriver, dict]:
    d = PyDriver(make_test_device(chip))
    return d, d.bring_up(image, async_events=async_events)


@pytest.mark.parametrize("chip", CHIPS)
def test_bring_up_sequence(chip: str) -> None:
    d, out = _driver(chip, async_events=True)
    c = d.chip
    fw = d.device.fw
    assert out["fw_version"] == fw.image.version
    assert list(out["aie_version"]) == list(c.firmware.aie_version)
    tile = dict(zip(("status", "size", *TILE_INFO_FIELDS), out["tile"], strict=True))
    for key, val in asdict(c.tiles).items():
        assert tile[key] == val, key
    assert tile["size"] == 44
    # state the driver configured
    for ctype, value in c.runtime_config.init:
        if ctype not in c.runtime_config.clock_gating:
            assert fw.state.runtime_config[ctype] == value
    for ctype in c.runtime_config.clock_gating:
        assert fw.state.runtime_config[ctype] == 1
    assert not fw.state.suspended
    st = d.device.status()
    assert st["smu"]["dpm_level"] == len(c.dpm_levels) - 1
    assert len(st["pending_async_events"]) == out["cols"] == c.tiles.cols
    assert st["channels"][0]["state"] == "ok"
    assert st["counters"]["malformed_msgs"] == st["counters"]["internal_errors"] == 0
    assert st["firmware"]["protocol"] == c.firmware.protocol
    if "UPDATE_PROPERTY" in c.features:
        assert fw.state.time_quota_us == {0xFF: 30000}
    # the async-event registrations got no reply; everything else did
    assert d.unsolicited == []
    assert st["channels"][0]["msgs_in"] == st["channels"][0]["msgs_out"] + out["cols"]


def test_query_ops_npu4() -> None:
    d, _ = _driver("npu4")
    c = d.chip
    assert d.msg_ok(Opcode.GET_DEV_REVISION, 0)[1] == c.firmware.dev_revision
    assert d.msg_ok(Opcode.GET_PROTOCOL_VERSION, 0)[1:] == (6, 24)
    assert d.msg_ok(Opcode.GET_RUNTIME_CONFIG, 5) == (0, 1)
    assert d.msg_ok(Opcode.ASSIGN_MGMT_PASID, 7, 0)
    assert d.device.fw.state.mgmt_pasid == 7
    d.msg_ok(Opcode.CALIBRATE_TIME, 5_000_000)
    assert d.device.fw.state.time_offset_ns == 5_000_000 - d.td.clock.now_ns()


def test_runtime_config_errors() -> None:
    d, _ = _driver("npu4")
    assert d.msg(Opcode.SET_RUNTIME_CONFIG, 9, 1)[0] == Status.RTOS_INVALID_PARAM
    assert d.msg(Opcode.GET_RUNTIME_CONFIG, 0xFFFF) == (Status.RTOS_INVALID_PARAM, 0)
    d.msg_ok(Opcode.SET_RUNTIME_CONFIG, 6, 0x1_0000_0003)
    assert d.msg_ok(Opcode.GET_RUNTIME_CONFIG, 6)[1] == 0x1_0000_0003


def test_update_property_unknown_type() -> None:
    d, _ = _driver("npu4")
    assert d.msg(Opcode.UPDATE_PROPERTY, 1, 0, bytes(7), 5, 0)[0] == Status.RTOS_PROPERTY_UPDATE_FAILED


def test_wrong_request_size_keeps_response_size() -> None:
    d, _ = _driver("npu4")
    ch = d.mgmt
    ch.send(Opcode.GET_FIRMWARE_VERSION, b"\0" * 8)
    (resp,) = ch.drain()
    assert len(resp.payload) == LAYOUTS[Opcode.GET_FIRMWARE_VERSION].resp.size
    assert resp.payload == struct.pack("<I", Status.RTOS_INVALID_INPUT_BUF) + bytes(16)


def test_gated_ops_on_old_protocol() -> None:
    d, _ = _driver("npu4", build_image(load_chip("npu4"), protocol="6.12"))
    assert d.device.fw.protocol == (6, 12)
    ch = d.mgmt
    for op in (Opcode.GET_DEV_REVISION, Opcode.CALIBRATE_TIME, Opcode.UPDATE_PROPERTY):
        ch.send(op, b"\0" * LAYOUTS[op].req.size)
        (resp,) = ch.drain()
        assert resp.payload == struct.pack("<I", Status.RTOS_INVALID_OP), op.name
    # ungated ops still work
    assert d.msg_ok(Opcode.GET_FIRMWARE_VERSION, 0)


def test_offered_ops_follow_the_protocol_and_late_registrations() -> None:
    """supports() is decided once per opcode, and decided again when the protocol
    changes or a handler is registered."""
    d, _ = _driver("npu4")
    fw = d.device.fw
    assert fw.supports(Opcode.GET_DEV_REVISION)
    fw.protocol = (6, 12)  # an older image's protocol: the gated op is no longer offered
    assert not fw.supports(Opcode.GET_DEV_REVISION)
    assert fw.supports(Opcode.GET_FIRMWARE_VERSION)
    spare = 0x7FEE  # no opcode of the table
    assert not fw.supports(spare)
    fw.register(spare, LAYOUTS[Opcode.GET_FIRMWARE_VERSION], lambda ch, msg, req: None)
    assert fw.supports(spare)


def test_suspend_rejects_everything_but_resume() -> None:
    d, _ = _driver("npu4")
    d.msg_ok(Opcode.SUSPEND, 0)
    assert d.device.status()["firmware"]["suspended"]
    assert d.msg(Opcode.GET_FIRMWARE_VERSION, 0) == (Status.MGMT_ERT_BUSY, 0, 0, 0, 0)
    assert d.msg(Opcode.SET_RUNTIME_CONFIG, 1, 1)[0] == Status.MGMT_ERT_BUSY
    assert d.msg(Opcode.SUSPEND, 0)[0] == Status.MGMT_ERT_BUSY
    d.msg_ok(Opcode.RESUME, 0)
    d.msg_ok(Opcode.GET_FIRMWARE_VERSION, 0)


def test_async_events_held_then_full() -> None:
    d, _ = _driver("npu4")
    ch = d.mgmt
    lay = LAYOUTS[Opcode.REGISTER_ASYNC_EVENT_MSG]
    ids = [ch.send(Opcode.REGISTER_ASYNC_EVENT_MSG, lay.req.pack(0x5000_0000 + i * 0x2000, 0x2000))
           for i in range(ASYNC_EVENT_MAX)]
    assert ch.drain() == []
    extra = ch.send(Opcode.REGISTER_ASYNC_EVENT_MSG, lay.req.pack(0x6000_0000, 0x2000))
    (resp,) = ch.drain()
    assert resp.id == extra
    assert lay.resp.unpack(resp.payload) == (Status.RTOS_ASYNC_EVENT_MSGS_FULL, 0)
    assert [e["id"] for e in d.device.status()["pending_async_events"]] == ids


def test_async_event_delivery_writes_buffer() -> None:
    d, _ = _driver("npu4")
    buf = bytearray(0x2000)
    d.iommu.map(0, 0x7000_0000, len(buf), DMA_READ | DMA_WRITE, None, mem=buf)
    lay = LAYOUTS[Opcode.REGISTER_ASYNC_EVENT_MSG]
    mid = d.mgmt.send(Opcode.REGISTER_ASYNC_EVENT_MSG, lay.req.pack(0x7000_0000, 0x2000))
    mid2 = d.mgmt.send(Opcode.REGISTER_ASYNC_EVENT_MSG, lay.req.pack(0x7100_0000, 0x2000))
    assert d.device.fw.post_async_event(AsyncEventType.AIE_ERROR, b"\1\0\0\0\2\0\0\0")
    (resp,) = d.mgmt.drain()
    assert resp.id == mid and lay.resp.unpack(resp.payload) == (0, AsyncEventType.AIE_ERROR)
    assert buf[:8] == b"\1\0\0\0\2\0\0\0"
    # unmapped buffer: answered with an error status, fault counted
    assert d.device.fw.post_async_event(AsyncEventType.EXCEPTION, b"x" * 4)
    (resp,) = d.mgmt.drain()
    assert resp.id == mid2 and lay.resp.unpack(resp.payload)[0] == Status.RTOS_INVALID_INPUT_BUF
    assert d.device.stats["iommu_faults"] == 1
    assert not d.device.fw.post_async_event(AsyncEventType.AIE_ERROR, b"")


def test_posted_async_events_are_kept_for_status_with_their_fate() -> None:
    from xdna_emu.fw.messages import AIE_ERROR_ENTRY, ASYNC_EVENT_HDR, AieModule
    from xdna_emu.fw.mgmt import ASYNC_POSTED_MAX

    d, _ = _driver("npu4")
    buf = bytearray(0x2000)
    d.iommu.map(0, 0x7000_0000, len(buf), DMA_READ | DMA_WRITE, None, mem=buf)
    lay = LAYOUTS[Opcode.REGISTER_ASYNC_EVENT_MSG]
    mid = d.mgmt.send(Opcode.REGISTER_ASYNC_EVENT_MSG, lay.req.pack(0x7000_0000, 0x2000))
    small = d.mgmt.send(Opcode.REGISTER_ASYNC_EVENT_MSG, lay.req.pack(0x7000_0000, 8))
    aie = ASYNC_EVENT_HDR.pack(2, 0, 0) + AIE_ERROR_ENTRY.pack(2, 5, 0, AieModule.CORE, 0x41,
                                                                bytes(3)) \
        + AIE_ERROR_ENTRY.pack(1, 6, 0, AieModule.MEM, 0x12, bytes(3))
    assert d.device.fw.post_async_event(AsyncEventType.AIE_ERROR, aie)
    assert d.device.fw.post_async_event(AsyncEventType.AIE_ERROR, aie)  # buffer too small
    assert not d.device.fw.post_async_event(AsyncEventType.EXCEPTION, b"")  # none held: lost
    assert len(d.mgmt.drain()) == 2
    st = d.device.status()["firmware"]
    assert st["async_posted_total"] == 3
    first, second, lost = st["async_posted"]
    assert first["type"] == "AIE_ERROR" and first["delivered"] and first["answered_id"] == mid
    assert first["status"] == "SUCCESS"
    assert first["errors"] == [{"row": 2, "col": 5, "module": "CORE", "event": 0x41},
                               {"row": 1, "col": 6, "module": "MEM", "event": 0x12}]
    assert second["answered_id"] == small and second["status"] == "RTOS_INVALID_INPUT_BUF"
    assert lost == {"time_ns": lost["time_ns"], "type": "EXCEPTION", "answered_id": None,
                    "delivered": False, "status": "SUCCESS", "errors": []}
    # a header claiming more entries than the data holds names only those present
    d.device.fw.post_async_event(AsyncEventType.AIE_ERROR, ASYNC_EVENT_HDR.pack(9, 0, 0))
    assert d.device.status()["firmware"]["async_posted"][-1]["errors"] == []
    for _ in range(ASYNC_POSTED_MAX + 3):
        d.device.fw.post_async_event(AsyncEventType.EXCEPTION, b"")
    st = d.device.status()["firmware"]
    assert len(st["async_posted"]) == ASYNC_POSTED_MAX
    assert st["async_posted_total"] == ASYNC_POSTED_MAX + 7
    # saved and restored with the firmware
    saved = d.device.fw.save()
    assert len(saved.posted) == ASYNC_POSTED_MAX and saved.posted_total == ASYNC_POSTED_MAX + 7


def test_release_tmr_drops_pending_events() -> None:
    d, _ = _driver("npu4", async_events=True)
    assert d.device.status()["pending_async_events"]
    assert d.psp_exec(PspCmd.RELEASE_TMR) == 0
    assert d.device.status()["pending_async_events"] == []


def test_reset_returns_to_power_on_state() -> None:
    d, _ = _driver("npu4", async_events=True)
    m = d.chip.msix
    bar = d.regs.bytes[m.bar]
    bar[m.table_offset : m.table_offset + 4] = b"\x11\x22\x33\x44"
    d.device.reset()
    st = d.device.status()
    assert st["firmware"] is None and st["channels"] == [] and st["smu"]["power"] == "off"
    assert st["psp"]["state"] == "idle"
    assert d.read_role("sram.fw_alive") == 0
    assert bytes(bar[m.table_offset : m.table_offset + 4]) == b"\x11\x22\x33\x44"
    assert not any(d.regs.bytes[2])
    # bring-up works again from scratch on fresh rings
    d2 = PyDriver(d.td)
    d2.bring_up(async_events=False)
    assert d2.device.status()["pending_async_events"] == []
    assert d2.msg_ok(Opcode.GET_FIRMWARE_VERSION, 0)[1:] == d2.device.fw.image.version
    assert d2.device.stats["malformed_msgs"] == 0


def test_extension_point_for_user_channels() -> None:
    d, _ = _driver("npu4")
    fw = d.device.fw
    seen = []

    def handler(chan, msg) -> None:
        seen.append(msg.opcode)
        chan.reply(msg, struct.pack("<I", 0))

    ch = fw.attach_channel(1, handler, vector=3, name="ctx0")
    from xdna_emu.testing.pydriver import DriverChannel

    size = ch.ring_size
    host = DriverChannel(d, (ch.x2i_tail_reg, ch.x2i_head_reg, ch.x2i_buf, size),
                         (ch.i2x_tail_reg, ch.i2x_head_reg, ch.i2x_buf, size))
    host.send(Opcode.CONFIG_CU, b"\0" * 132)
    (resp,) = host.drain()
    assert seen == [Opcode.CONFIG_CU] and resp.payload == b"\0" * 4
    assert 3 in d.td.irqs
    assert ch.x2i_buf != d.device.mailbox.channels[0].x2i_buf


def _ring_records(buf: bytearray, footer_page: int) -> tuple[dict, list[tuple[int, str]]]:
    """The footer and the (level, text) of every log line in a buffer (docs/spec/firmware.md §8a)."""
    from xdna_emu.fw.messages import DPT_FOOTER, FW_LOG_HEADER

    foot = dict(zip(("minor", "major", "type", "rsvd1", "payload_version", "rsvd2", "tail"),
                    DPT_FOOTER.unpack_from(buf, len(buf) - footer_page), strict=True))
    lines, off = [], 0
    while off < foot["tail"]:
        _ts, flags, _line, _mod = FW_LOG_HEADER.unpack_from(buf, off)
        argc = flags >> 24
        text = bytes(buf[off + 16:off + 16 + argc * 4]).split(b"\0", 1)[0].decode()
        lines.append((flags >> 8 & 7, text))
        assert flags >> 16 & 0xFF == 0xFF and flags & 1 == 0  # the mgmt app, FULL format
        off += -(-(16 + argc * 4) // 8) * 8
    return foot, lines


def test_fw_log_ring_takes_the_firmwares_lines_at_its_level() -> None:
    """CONFIG_FW_LOG hands over a ring; the firmware writes its own lines (context create and
    destroy at INFO, a job's end at DEBUG) up to the runtime-config level, a detach stops it;
    bad sizes and buffers are refused; the gate is the npu4 family's protocol 6.19."""
    from xdna_emu.fw.messages import DPT_CONSTS

    d, _ = _driver("npu4")
    page = DPT_CONSTS["DPT_FOOTER_PAGE"]
    buf = bytearray(0x4000)
    d.iommu.map(0, 0x7000_0000, len(buf), DMA_READ | DMA_WRITE, None, mem=buf)
    cfg = LAYOUTS[Opcode.CONFIG_FW_LOG]
    assert d.msg(Opcode.CONFIG_FW_LOG, 0x7000_0000, 0x1000, *(0,) * 5)[0] == Status.MGMT_ERT_DRAM_BUFFER_SIZE_INVALID
    assert d.msg(Opcode.CONFIG_FW_LOG, 0x7800_0000, 0x4000, *(0,) * 5)[0] == Status.RTOS_INVALID_INPUT_BUF
    d.msg_ok(Opcode.SET_RUNTIME_CONFIG, DPT_CONSTS["RT_LOG_LEVEL"], 3)  # INFO
    assert d.msg_ok(Opcode.CONFIG_FW_LOG, 0x7000_0000, len(buf), *(0,) * 5) == (0, 0, 0, *(0,) * 5)
    assert cfg.resp.size == 32
    ctx = d.msg_ok(Opcode.CREATE_CONTEXT, 1, 0, 1, 0, 0, 1, 0, 0, bytes(8), 0, 2)[1]
    d.msg_ok(Opcode.DESTROY_CONTEXT, ctx)
    foot, lines = _ring_records(buf, page)
    assert (foot["major"], foot["type"]) == (1, 0) and foot["tail"] > 0
    assert [lv for lv, _ in lines] == [3, 3, 3]
    assert lines[1][1].startswith(f"context {ctx} created") and lines[2][1] == f"context {ctx} destroyed"
    d.msg_ok(Opcode.SET_RUNTIME_CONFIG, DPT_CONSTS["RT_LOG_LEVEL"], 1)  # ERROR: INFO lines dropped
    ctx = d.msg_ok(Opcode.CREATE_CONTEXT, 1, 0, 1, 0, 0, 1, 0, 0, bytes(8), 0, 2)[1]
    assert _ring_records(buf, page)[0]["tail"] == foot["tail"]
    d.msg_ok(Opcode.CONFIG_FW_LOG, 0, 0, *(0,) * 5)  # detach
    assert d.device.fw.state.log is None
    for chip, protocol in (("npu4", "6.18"), ("npu1", None)):  # the gate: npu4 family from 6.19
        d2, _ = _driver(chip, build_image(load_chip(chip), protocol=protocol) if protocol else None)
        for op in (Opcode.CONFIG_FW_LOG, Opcode.START_FW_TRACE, Opcode.STOP_FW_TRACE,
                   Opcode.SET_FW_TRACE_CATEGORIES):
            d2.mgmt.send(op, b"\0" * LAYOUTS[op].req.size)
            (resp,) = d2.mgmt.drain()
            assert resp.payload == struct.pack("<I", Status.RTOS_INVALID_OP), (chip, op.name)


def test_fw_trace_ring_records_enabled_categories() -> None:
    from xdna_emu.fw.messages import (
        DPT_CONSTS,
        DPT_FOOTER,
        FW_TRACE_RECORD,
        FwTraceCategory,
        FwTraceEvent,
    )

    d, _ = _driver("npu4")
    buf = bytearray(0x2000)
    d.iommu.map(0, 0x7000_0000, len(buf), DMA_READ | DMA_WRITE, None, mem=buf)
    assert d.msg(Opcode.SET_FW_TRACE_CATEGORIES, 1)[0] == Status.RTOS_INVALID_OP  # none running
    resp = d.msg_ok(Opcode.START_FW_TRACE, FwTraceCategory.CONTEXT, 1, 0, 0x7000_0000, len(buf))
    assert resp[1] == 0 and resp[3] == 0  # no MSI: the driver polls
    ctx = d.msg_ok(Opcode.CREATE_CONTEXT, 1, 0, 1, 0, 0, 1, 0, 0, bytes(8), 7, 2)[1]
    d.msg_ok(Opcode.SET_FW_TRACE_CATEGORIES, FwTraceCategory.JOB)
    d.msg_ok(Opcode.DESTROY_CONTEXT, ctx)  # CONTEXT no longer enabled: not recorded
    tail = DPT_FOOTER.unpack_from(buf, len(buf) - DPT_CONSTS["DPT_FOOTER_PAGE"])[-1]
    assert tail == FW_TRACE_RECORD.size
    _ts, cat, ev, cid, arg = FW_TRACE_RECORD.unpack_from(buf, 0)
    assert (cat, ev, cid, arg) == (FwTraceCategory.CONTEXT, FwTraceEvent.CTX_CREATE, ctx, 0)
    d.msg_ok(Opcode.STOP_FW_TRACE, 0)
    assert d.device.fw.state.trace is None
    assert d.msg(Opcode.START_FW_TRACE, 1, 9, 0, 0x7000_0000, len(buf))[0] == Status.MGMT_ERT_INVALID_PARAM
