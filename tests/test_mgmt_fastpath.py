"""The mgmt queries answered in C (docs/spec/jobs.md §7 "Management queries").

Each case runs three ways on fresh, identical in-process devices: the management
channel's ring-register writes go into a write log, which the C path applies inside the
Python drain (``c-sync``), the doorbell thread serves (``thread``), or the Python path
applies entry by entry. Replies, interrupts and the complete saved state (rings, registers,
counters) must be equal, and the C path must have answered (or given back) what the case
says.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable
from typing import Any

import pytest

from tests.test_datapath import LoggedDriver
from tests.test_doorbell import ThreadedDriver, _without
from xdna_emu.fw.image import build_image
from xdna_emu.fw.messages import (
    LAYOUTS,
    MGMT_QUERIES,
    MSG_HEADER,
    MSG_ID_MAGIC,
    Opcode,
    Status,
    sz_ver,
)
from xdna_emu.testing.pydriver import Response

pytest.importorskip("xdna_emu._datapath")

CHIPS = ("npu1", "npu4", "npu5", "npu6")  # the AIE2 chips: one mgmt channel format
WAYS = ("c-sync", "thread", "python")
QUERIES = tuple(MGMT_QUERIES)


class MgmtWorld:
    """A brought-up device whose mgmt ring writes are logged and applied one of three ways."""

    def __init__(self, way: str, chip: str) -> None:
        self.way = way
        self.d = d = ThreadedDriver(chip) if way == "thread" else LoggedDriver(way == "c-sync", chip)
        d.bring_up(async_events=False)
        if isinstance(d, ThreadedDriver):
            d.start()
        self.replies: list[Response] = []
        self.log_mgmt()

    def log_mgmt(self) -> None:
        """Log the writes of the mgmt channel's ring registers (after a bring-up)."""
        m = self.d.mgmt
        assert m is not None
        self.d.logged = {m.x2i_tail_reg, m.i2x_head_reg}

    def close(self) -> None:
        if isinstance(self.d, ThreadedDriver):
            self.d.stop()

    def send(self, op: int, payload: bytes | None = None) -> None:
        """One mgmt message (default: the op's request, zeroed) into the ring; its tail
        write is logged."""
        assert self.d.mgmt is not None
        self.d.mgmt.send(op, payload if payload is not None else bytes(LAYOUTS[op].req.size))

    def send_raw(self, pkt: bytes) -> None:
        """A packet as it is (no checks: the case decides what is malformed)."""
        m = self.d.mgmt
        assert m is not None
        m.x2i[m.x2i_tail : m.x2i_tail + len(pkt)] = pkt
        m.x2i_tail += len(pkt)
        m._write_reg(m.x2i_tail_reg, m.x2i_tail)  # noqa: SLF001

    def step(self, work: Callable[[], None]) -> None:
        """Python work as a daemon step (under the lock with the thread)."""
        if isinstance(self.d, ThreadedDriver):
            self.d.step(work)
        else:
            work()

    def drain(self) -> None:
        """Apply the log, read every reply (its i2x head writes logged too), apply again."""
        assert self.d.mgmt is not None
        self.d.flush()
        self.replies += self.d.mgmt.drain()
        self.d.flush()

    def outcome(self) -> tuple[Any, ...]:
        self.drain()
        d = self.d
        return ([(r.id, r.opcode, r.payload) for r in self.replies], tuple(d.td.delivered),
                d.fn.save())

    @property
    def stats(self) -> dict[str, int]:
        return self.d.stats


def _run(case: Callable[[MgmtWorld], None], chip: str) -> dict[str, tuple[Any, MgmtWorld]]:
    out = {}
    for way in WAYS:
        w = MgmtWorld(way, chip)
        try:
            case(w)
            out[way] = (w.outcome(), w)
        finally:
            w.close()
    return out


def _agree(out: dict[str, tuple[Any, MgmtWorld]]) -> None:
    """Equal replies, interrupts and saved states; where the thread handed a batch back,
    its part and Python's raise the vector once each, so MSI-X may deliver once more
    (docs/spec/jobs.md §7): then the vectors and everything but the MSI-X counts agree."""
    py = out["python"][0]
    assert py[0], "the case got no reply at all"
    for way in ("c-sync", "thread"):
        got, w = out[way]
        assert got[0] == py[0], f"{way}: replies differ"
        if way == "thread" and w.stats["fast_handbacks"]:
            assert set(got[1]) == set(py[1]) and len(got[1]) >= len(py[1]), f"{way}: interrupts differ"
            assert _without(got[2], "msix_stats") == _without(py[2], "msix_stats"), f"{way}: states differ"
        else:
            assert got[1] == py[1], f"{way}: interrupts differ"
            assert got[2] == py[2], f"{way}: saved states differ"


def _published(w: MgmtWorld) -> list[int]:
    """The queries the booted image offers (those C answers)."""
    return [op for op, _, _ in w.d.device.fw.query_replies()]


@pytest.mark.parametrize("chip", CHIPS)
def test_every_query_is_answered_in_c_as_python_answers_it(chip: str) -> None:
    """Each mgmt query, one per batch and then all in one batch, with a nonzero reserved
    word: C answers every one, byte for byte Python's reply, interrupts and state."""

    def case(w: MgmtWorld) -> None:
        for op in _published(w):
            w.send(op, struct.pack("<I", 0xA5A5A5A5))
            w.drain()
        for op in _published(w):
            w.send(op)
        w.drain()

    out = _run(case, chip)
    _agree(out)
    n = len(_published(out["python"][1]))
    assert n >= 4
    for way in ("c-sync", "thread"):
        st = out[way][1].stats
        assert st["fast_queries"] == 2 * n, way
        assert not st["fast_fallbacks"] and not st["fast_handbacks"], way
    assert out["thread"][1].stats["fast_thread"]


@pytest.mark.parametrize("chip", ("npu1", "npu4"))
def test_answers_are_published_again_after_a_reset_and_a_suspend(chip: str) -> None:
    """A reset and a boot of an image of another version and protocol minor: C answers the
    new version (the published replies follow the firmware); a suspended firmware's queries
    are Python's (MGMT_ERT_BUSY), and C answers again after the resume."""

    def case(w: MgmtWorld) -> None:
        for op in _published(w):
            w.send(op)
        w.drain()
        d = w.d
        fw = d.device.fw
        major, minor = fw.protocol

        def reboot() -> None:
            d.logged = set()
            d.fn.reset()
            d.bring_up(build_image(d.chip, version="9.8.7.6", protocol=f"{major}.{minor + 1}"),
                       async_events=False)

        w.step(reboot)
        w.log_mgmt()
        assert d.device.fw is not fw and d.device.fw.image.version == (9, 8, 7, 6)
        for op in _published(w):
            w.send(op)
        w.drain()
        w.send(Opcode.SUSPEND)
        w.send(Opcode.GET_FIRMWARE_VERSION)
        w.send(Opcode.RESUME)
        w.drain()
        w.send(Opcode.GET_FIRMWARE_VERSION)
        w.send(Opcode.GET_PROTOCOL_VERSION)
        w.drain()

    out = _run(case, chip)
    _agree(out)
    replies = out["python"][0][0]
    fw_ver = LAYOUTS[Opcode.GET_FIRMWARE_VERSION].resp
    versions = [fw_ver.unpack(p) for _, op, p in replies if op == Opcode.GET_FIRMWARE_VERSION]
    assert versions[1] == (Status.SUCCESS, 9, 8, 7, 6)  # after the reboot
    assert versions[2][0] == Status.MGMT_ERT_BUSY and versions[3] == (Status.SUCCESS, 9, 8, 7, 6)
    n = len(_published(out["python"][1]))
    for way in ("c-sync", "thread"):
        assert out[way][1].stats["fast_queries"] == 2 * n + 2, way


@pytest.mark.parametrize("chip", ("npu1", "npu4"))
def test_queries_behind_another_op_are_answered_in_order(chip: str) -> None:
    """[SET_RUNTIME_CONFIG, query, query] in one tail write, then [query] [ASSIGN_MGMT_PASID]
    [query] as three: Python answers the message C cannot and every message after it in
    that write; C takes the next query write again. Replies in the order sent."""

    def case(w: MgmtWorld) -> None:
        ctype = next(iter(w.d.chip.runtime_types))
        w.send(Opcode.SET_RUNTIME_CONFIG, LAYOUTS[Opcode.SET_RUNTIME_CONFIG].req.pack(ctype, 1))
        w.send(Opcode.GET_FIRMWARE_VERSION)
        w.send(Opcode.QUERY_AIE_VERSION)
        w.d.log = w.d.log[-1:]  # one tail write for all three
        w.drain()
        w.send(Opcode.GET_DEV_REVISION)
        w.send(Opcode.ASSIGN_MGMT_PASID)
        w.send(Opcode.QUERY_AIE_TILE_INFO)
        w.drain()

    out = _run(case, chip)
    _agree(out)
    ops = [op for _, op, _ in out["python"][0][0]]
    assert ops == [Opcode.SET_RUNTIME_CONFIG, Opcode.GET_FIRMWARE_VERSION, Opcode.QUERY_AIE_VERSION,
                   Opcode.GET_DEV_REVISION, Opcode.ASSIGN_MGMT_PASID, Opcode.QUERY_AIE_TILE_INFO]
    fast = {Opcode.GET_DEV_REVISION, Opcode.QUERY_AIE_TILE_INFO} & set(_published(out["python"][1]))
    for way in ("c-sync", "thread"):
        assert out[way][1].stats["fast_queries"] == len(fast) >= 1, way
    assert out["thread"][1].stats["fast_handbacks"] >= 2


def _bad_sz_ver(w: MgmtWorld) -> None:
    req = bytes(LAYOUTS[Opcode.GET_FIRMWARE_VERSION].req.size)
    w.send(Opcode.GET_FIRMWARE_VERSION)
    w.send_raw(MSG_HEADER.pack(len(req), sz_ver(len(req)) ^ 1 << 16, MSG_ID_MAGIC | 0x77,
                               Opcode.GET_FIRMWARE_VERSION) + req)


def _bad_magic(w: MgmtWorld) -> None:
    req = bytes(LAYOUTS[Opcode.QUERY_AIE_VERSION].req.size)
    w.send(Opcode.QUERY_AIE_VERSION)
    w.send_raw(MSG_HEADER.pack(len(req), sz_ver(len(req)), 0x77, Opcode.QUERY_AIE_VERSION) + req)


def _wrong_length(w: MgmtWorld) -> None:
    w.send(Opcode.GET_FIRMWARE_VERSION, bytes(8))  # RTOS_INVALID_INPUT_BUF, Python's
    w.send(Opcode.GET_FIRMWARE_VERSION)


def _unknown_op(w: MgmtWorld) -> None:
    w.send(0x7F7F, bytes(4))  # RTOS_INVALID_OP, Python's
    w.send(Opcode.GET_PROTOCOL_VERSION)


@pytest.mark.parametrize("case", (_bad_sz_ver, _bad_magic, _wrong_length, _unknown_op),
                         ids=lambda c: c.__name__.strip("_"))
def test_what_c_cannot_answer_is_pythons(case: Callable[[MgmtWorld], None]) -> None:
    """A malformed header (the channel's error, Python's), a query's request of the wrong
    length and an unknown op (Python's documented statuses) go back to Python, after C
    answered the query before it; the result is the Python path's."""
    out = _run(case, "npu4")
    _agree(out)
    py = out["python"][1]
    replies = out["python"][0][0]
    if case in (_bad_sz_ver, _bad_magic):
        assert py.d.device.mailbox.channels[0].error is not None and len(replies) == 1
    else:
        assert Status(struct.unpack_from("<I", replies[0][2])[0]) in (
            Status.RTOS_INVALID_INPUT_BUF, Status.RTOS_INVALID_OP)
        assert len(replies) == 2
    for way in ("c-sync", "thread"):
        st = out[way][1].stats
        assert st["fast_queries"] == 1, way  # the query before (or after) it
        # a query's message C saw and gave back (an unknown op at the head is Python's
        # without a C call on the synchronous path)
        assert case is _unknown_op or st["fast_fallbacks"] + st["fast_handbacks"] >= 1, way


def test_the_c_table_is_the_flagged_queries_only() -> None:
    """What the firmware publishes is exactly the flagged queries its image offers, each
    its handler's SUCCESS answer; a boot that offers fewer publishes fewer."""
    w = MgmtWorld("python", "npu4")
    fw = w.d.device.fw
    rows = fw.query_replies()
    assert {op for op, _, _ in rows} == {int(op) for op in QUERIES if fw.supports(op)}
    for op, req_size, resp in rows:
        assert req_size == LAYOUTS[Opcode(op)].req.size
        assert len(resp) == LAYOUTS[Opcode(op)].resp.size and resp[:4] == bytes(4)
    assert fw.query_replies() is rows  # kept while nothing changed
    fw.register(Opcode.GET_FIRMWARE_VERSION, LAYOUTS[Opcode.GET_FIRMWARE_VERSION],
                lambda chan, msg, req: None)  # another block's handler: Python's
    assert Opcode.GET_FIRMWARE_VERSION not in {op for op, _, _ in fw.query_replies()}


# -- real daemons ----------------------------------------------------------------------------
def _mgmt_traffic(emu: Any, fw_dir: Any, n: int) -> tuple[list[bytes], dict[str, Any]]:
    """A probe, then ``n`` rounds of every query and a GET_RUNTIME_CONFIG through the shim;
    the replies and the daemon's status while the session is open."""
    from tests.test_doorbell import _status
    from xdna_emu.chips import load_chip
    from xdna_emu.shim import Shim

    with Shim.open(emu.socket) as shim:
        shim.probe(fw_dir)
        ctype = min(load_chip("npu4").runtime_types)  # the factory's chip
        get_rc = LAYOUTS[Opcode.GET_RUNTIME_CONFIG]
        before = _status(emu)["stats"]
        replies = []
        for _ in range(n):
            for op in (*QUERIES, Opcode.GET_RUNTIME_CONFIG):
                req = get_rc.req.pack(ctype) if op == Opcode.GET_RUNTIME_CONFIG else bytes(4)
                replies.append(shim.mgmt_msg(op, req, LAYOUTS[op].resp.size))
        st = _status(emu)
        st["during"] = {k: v - before.get(k, 0) for k, v in st["stats"].items()
                        if k.startswith("fast_")}
        return replies, st


@pytest.mark.parametrize("path", ["c", "c-sync"])
def test_daemon_queries_through_the_shim_match_the_python_daemon(
        path: str, xdna_emulator_factory: Any, xdna_firmware_dir: Any) -> None:
    """The shim's queries on a daemon with the C path (the thread, or c-sync) and on a
    Python daemon: the same replies, device counters and channel counts; C answered the
    queries, and on the thread's daemon a message that is not a query went straight to the
    Python loop (the shim rings the doorbell only for queries): no hand-back."""
    from xdna_emu.datapath import DATAPATH_ENV

    got = {}
    for p in (path, "python"):
        emu = xdna_emulator_factory(env={DATAPATH_ENV: p})
        got[p] = _mgmt_traffic(emu, xdna_firmware_dir, 10)
    (c_replies, c), (py_replies, py) = got[path], got["python"]
    assert c_replies == py_replies
    assert c["device"]["counters"] == py["device"]["counters"]

    def chans(st: dict[str, Any]) -> list[Any]:
        return [(ch["index"], ch["msgs_in"], ch["msgs_out"]) for ch in st["device"]["channels"]]

    assert chans(c) == chans(py)
    offered = sum(1 for r in c_replies[: len(QUERIES)] if r[:4] == bytes(4))
    assert c["during"]["fast_queries"] == 10 * offered >= 40
    assert not py["stats"].get("fast_queries")
    if path == "c":  # after the probe: every query the thread's, nothing handed back
        assert c["during"]["fast_thread"] >= 10 * offered and not c["during"]["fast_handbacks"]


@pytest.mark.parametrize("way", ["c-sync", "thread"])
def test_debug_logging_leaves_the_queries_to_python(way: str, caplog: pytest.LogCaptureFixture) -> None:
    """With the mailbox's per-message debug lines on (-vv, --trace), C answers no query:
    each one is logged by the Python path, received and answered."""
    w = MgmtWorld(way, "npu4")
    try:
        with caplog.at_level(logging.DEBUG, logger="xdna_emu.fw.mailbox"):
            w.send(Opcode.GET_FIRMWARE_VERSION)
            w.drain()
        assert len(w.replies) == 1 and not w.stats["fast_queries"]
        lines = [r.getMessage() for r in caplog.records]
        assert any("mbox rx chan 0" in m and "GET_FIRMWARE_VERSION" in m for m in lines)
        assert any("mbox tx chan 0" in m and "GET_FIRMWARE_VERSION" in m for m in lines)
        w.send(Opcode.GET_FIRMWARE_VERSION)  # logging off again: C's
        w.drain()
        assert w.stats["fast_queries"] == 1
    finally:
        w.close()
