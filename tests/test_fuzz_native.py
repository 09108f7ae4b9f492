"""The shim's pure parsers (csrc/parse.c) on hand-picked cases, and a libFuzzer smoke run.

The parsers are what the shim runs on every ring pointer, message header, channel layout and
command BO the firmware or a client hands it; they are compiled here into a small test-only
cffi module (the public shim API stays as it is). The smoke run builds the native harnesses
of fuzz/native/ with clang and runs each briefly, and replays fixtures/regressions/native/.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CSRC = ROOT / "csrc"
REGRESSIONS = ROOT / "fixtures" / "regressions" / "native"
TOMB = 0xDEADFACE

CDEF = """
enum xdna_parse_reason {
    XDNA_PARSE_OK, XDNA_PARSE_BAD_RING, XDNA_PARSE_BAD_TAIL, XDNA_PARSE_BAD_HEAD, XDNA_PARSE_BAD_TOMBSTONE,
    XDNA_PARSE_BAD_SIZE, XDNA_PARSE_PAST_TAIL, XDNA_PARSE_BAD_LEN, XDNA_PARSE_NOSPC, XDNA_PARSE_BAD_MAGIC,
    XDNA_PARSE_BAD_SLOT, XDNA_PARSE_NONCONTIG, XDNA_PARSE_SHORT, XDNA_PARSE_BAD_INFO_MAGIC,
    XDNA_PARSE_BAD_PROTO_MAJOR, XDNA_PARSE_OLD_PROTO_MINOR, XDNA_PARSE_BAD_MSIX, XDNA_PARSE_UNALIGNED,
    XDNA_PARSE_NO_BAR, XDNA_PARSE_WRONG_BAR, XDNA_PARSE_RING_SIZE, XDNA_PARSE_STATUS_BUSY,
    XDNA_PARSE_STATUS_INVAL, XDNA_PARSE_STATUS_FAIL, XDNA_PARSE_NO_CQ, XDNA_PARSE_CMD_COUNT,
    XDNA_PARSE_CMD_OPCODE, XDNA_PARSE_CMD_SHORT, XDNA_PARSE_CHAIN_COUNT, XDNA_PARSE_CHAIN_ENTRY, ...
};
enum xdna_parse_rx_kind { XDNA_PARSE_RX_EMPTY, XDNA_PARSE_RX_READ, XDNA_PARSE_RX_WRAP, XDNA_PARSE_RX_MSG,
                       XDNA_PARSE_RX_BAD, ... };
enum xdna_parse_tx_kind { XDNA_PARSE_TX_WRITE, XDNA_PARSE_TX_WRAP, XDNA_PARSE_TX_NOSPC, XDNA_PARSE_TX_BAD,
                       ... };
enum xdna_parse_chan_field { XDNA_PARSE_F_X2I_TAIL, XDNA_PARSE_F_X2I_HEAD, XDNA_PARSE_F_I2X_TAIL,
    XDNA_PARSE_F_I2X_HEAD, XDNA_PARSE_F_INTR, XDNA_PARSE_F_X2I_RING, XDNA_PARSE_F_I2X_RING, XDNA_PARSE_F_MSIX,
    ... };
const char *xdna_parse_reason_str(int reason);
struct xdna_parse_rx { int kind, reason; uint32_t off, total, next, id, opcode; ...; };
void xdna_parse_i2x_step(const uint8_t *ring, uint32_t size, uint32_t head, uint32_t tail,
                      struct xdna_parse_rx *rx);
struct xdna_parse_tx { int kind, reason; uint32_t pos, tomb; int tomb_ok; uint32_t new_tail; ...; };
void xdna_parse_x2i_space(uint32_t head, uint32_t tail, uint32_t size, uint32_t len,
                       struct xdna_parse_tx *tx);
int xdna_parse_resp_slot(uint32_t id, uint32_t nslots);
int xdna_parse_resp_contig(uint32_t id, uint32_t last_id);
struct xdna_parse_aperture { int bar; uint64_t base; uint64_t size; };
struct xdna_parse_layout { struct xdna_parse_aperture ap[8]; unsigned nap; uint64_t bar_size[6];
                        int mbox_bar; int sram_bar; unsigned nvec; ...; };
struct xdna_parse_loc { unsigned bar; uint32_t off; };
struct xdna_parse_chan_addrs { uint32_t x2i_tail, x2i_head, x2i_buf, x2i_buf_sz, i2x_tail,
                            i2x_head, i2x_buf, i2x_buf_sz, msi_id; };
struct xdna_parse_chan { int reason; int field; uint32_t value; struct xdna_parse_loc reg[5];
                      struct xdna_parse_loc ring[2]; uint32_t ring_size[2]; uint32_t msix; ...; };
struct xdna_parse_mgmt_info { struct xdna_parse_chan_addrs a; uint32_t magic, prot_major,
                           prot_minor; ...; };
int xdna_parse_mgmt_info(const uint8_t *buf, size_t len, uint32_t major, uint32_t min_minor,
                      const struct xdna_parse_layout *lay, struct xdna_parse_mgmt_info *out,
                      struct xdna_parse_chan *ch);
struct xdna_parse_create_resp { uint32_t status, ctx_id; uint16_t msix; uint8_t ncq;
                             struct xdna_parse_chan_addrs a; int fw_live; ...; };
int xdna_parse_create_resp_full(const uint8_t *buf, size_t len, const struct xdna_parse_layout *lay,
                             struct xdna_parse_create_resp *out, struct xdna_parse_chan *ch);
struct xdna_parse_cmd { uint32_t opcode, cu_idx, pay, npay; ...; };
int xdna_parse_cmd_hdr(const uint8_t *bo, uint64_t bo_size, struct xdna_parse_cmd *out);
struct xdna_parse_npu { uint32_t opcode; uint64_t inst, save, restore; uint32_t inst_size,
                         save_size, restore_size, props, cu_idx, pargs, args, nargs; ...; };
int xdna_parse_npu(const uint8_t *bo, uint64_t bo_size, struct xdna_parse_npu *out);
struct xdna_parse_chain { uint32_t n; uint64_t handle[64]; ...; };
int xdna_parse_chain(const uint8_t *bo, uint64_t bo_size, uint32_t self, uint32_t max_handle,
                  struct xdna_parse_chain *out);
"""


@pytest.fixture(scope="module")
def pz(tmp_path_factory):
    """A test-only cffi module over csrc/parse.c (compiled once per run)."""
    from cffi import FFI

    ffi = FFI()
    ffi.cdef(CDEF)
    ffi.set_source("_xdna_parse_test", '#include "parse.h"\n', sources=[str(CSRC / "parse.c")],
                   include_dirs=[str(CSRC)], extra_compile_args=["-std=gnu11", "-O1"])
    d = tmp_path_factory.mktemp("pz")
    so = ffi.compile(tmpdir=str(d))
    spec = importlib.util.spec_from_file_location("_xdna_parse_test", so)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def words(*w: int) -> bytes:
    return struct.pack(f"<{len(w)}I", *w)


def msg(total: int, mid: int = 0x1D000001, opcode: int = 0x10A) -> bytes:
    return words(total, total | 1 << 16, mid, opcode) + bytes(total)


def ring_of(size: int, *parts: tuple[int, bytes]) -> bytes:
    r = bytearray(size)
    for off, data in parts:
        r[off:off + len(data)] = data
    return bytes(r)


# ---- (a) i2x receive ------------------------------------------------------------------------

def rx(pz, ring: bytes, head: int, tail: int):
    out = pz.ffi.new("struct xdna_parse_rx *")
    pz.lib.xdna_parse_i2x_step(ring, len(ring), head, tail, out)
    return out


def test_i2x_message_happy_path(pz):
    r = rx(pz, ring_of(64, (0, msg(8, 0x1D000007, 0x2))), 0, 24)
    assert (r.kind, r.off, r.total, r.next, r.id, r.opcode) == (
        pz.lib.XDNA_PARSE_RX_MSG, 0, 8, 24, 0x1D000007, 0x2)


def test_i2x_message_ending_exactly_at_ring_end(pz):
    ring = ring_of(64, (16, msg(32)))
    r = rx(pz, ring, 16, 0)
    assert r.kind == pz.lib.XDNA_PARSE_RX_MSG and r.next == 64
    # head == size afterwards: with tail 0 the ring is empty; a stale read from 0 would be a bug
    assert rx(pz, ring, 64, 0).kind == pz.lib.XDNA_PARSE_RX_EMPTY
    # head == tail == size: empty before the head wraps
    assert rx(pz, ring, 64, 64).kind == pz.lib.XDNA_PARSE_RX_EMPTY
    # new message at 0 after the end-of-ring one: the head wraps from size to 0 and reads it
    r = rx(pz, ring_of(64, (0, msg(4)), (16, msg(32))), 64, 20)
    assert (r.kind, r.off, r.next) == (pz.lib.XDNA_PARSE_RX_MSG, 0, 20)


def test_i2x_tombstone_wraps_only_with_tail_behind(pz):
    ring = ring_of(64, (0, msg(4)), (48, words(TOMB)))
    r = rx(pz, ring, 48, 20)
    assert (r.kind, r.next) == (pz.lib.XDNA_PARSE_RX_WRAP, 0)
    r = rx(pz, ring_of(64, (48, words(TOMB))), 48, 48)
    assert r.kind == pz.lib.XDNA_PARSE_RX_EMPTY  # tail == head: nothing to read at all


@pytest.mark.parametrize("head", [0, 4, 16, 40, 56])
def test_i2x_tombstone_ahead_of_tail_at_any_offset(pz, head):
    """TOMBSTONE at the head with the tail ahead of it is malformed at every offset, not
    only at 0 where a loop bound would hide a missing check."""
    for tail in sorted({t for t in (head + 4, head + 8, 64) if t <= 64}):
        r = rx(pz, ring_of(64, (head, words(TOMB))), head, tail)
        assert (r.kind, r.reason) == (pz.lib.XDNA_PARSE_RX_BAD, pz.lib.XDNA_PARSE_BAD_TOMBSTONE), (head, tail)


@pytest.mark.parametrize("tail", [68, 6, 0xFFFFFFFC])
def test_i2x_bad_tail(pz, tail):
    r = rx(pz, ring_of(64, (0, msg(4))), 0, tail)
    assert (r.kind, r.reason) == (pz.lib.XDNA_PARSE_RX_BAD, pz.lib.XDNA_PARSE_BAD_TAIL)


@pytest.mark.parametrize("total", [0, 6, 64, 52, 0xFFFFFFF0])
def test_i2x_bad_total_size(pz, total):
    # 52 at head 0 would need 68 bytes of a 64-byte ring; 0xFFFFFFF0 would wrap 32-bit sums
    r = rx(pz, ring_of(64, (0, words(total, total, 0x1D000001, 1))), 0, 32)
    assert (r.kind, r.reason) == (pz.lib.XDNA_PARSE_RX_BAD, pz.lib.XDNA_PARSE_BAD_SIZE)


def test_i2x_message_past_tail(pz):
    r = rx(pz, ring_of(64, (0, msg(16))), 0, 20)
    assert (r.kind, r.reason) == (pz.lib.XDNA_PARSE_RX_BAD, pz.lib.XDNA_PARSE_PAST_TAIL)


@pytest.mark.parametrize("head", [2, 62, 0xFFFFFFFC, 68])
def test_i2x_head_the_shim_cannot_hold_is_rejected(pz, head):
    r = rx(pz, ring_of(64), head, 0)
    assert (r.kind, r.reason) == (pz.lib.XDNA_PARSE_RX_BAD, pz.lib.XDNA_PARSE_BAD_HEAD)


def test_i2x_bad_ring_size(pz):
    r = rx(pz, bytes(48), 0, 16)
    assert (r.kind, r.reason) == (pz.lib.XDNA_PARSE_RX_BAD, pz.lib.XDNA_PARSE_BAD_RING)


# ---- (b) x2i send ---------------------------------------------------------------------------

def tx(pz, head: int, tail: int, size: int, length: int):
    out = pz.ffi.new("struct xdna_parse_tx *")
    pz.lib.xdna_parse_x2i_space(head, tail, size, length, out)
    return out


def test_x2i_write_at_tail(pz):
    t = tx(pz, 0, 16, 64, 44)  # ends exactly at size - 4: no wrap yet
    assert (t.kind, t.pos, t.new_tail) == (pz.lib.XDNA_PARSE_TX_WRITE, 16, 60)


def test_x2i_wrap_with_tombstone(pz):
    t = tx(pz, 32, 48, 64, 20)
    assert (t.kind, t.tomb, t.tomb_ok, t.pos, t.new_tail) == (pz.lib.XDNA_PARSE_TX_WRAP, 48, 1, 0, 20)
    t = tx(pz, 32, 64, 64, 20)  # tail at the very end: no room for the TOMBSTONE word
    assert (t.kind, t.tomb_ok, t.pos) == (pz.lib.XDNA_PARSE_TX_WRAP, 0, 0)


@pytest.mark.parametrize(("head", "tail", "length"), [
    (32, 16, 16),  # tail + len == head would make a full ring look empty
    (32, 16, 20),
    (20, 48, 20),  # wrap needs len < head
    (0, 48, 20),
])
def test_x2i_no_space(pz, head, tail, length):
    t = tx(pz, head, tail, 64, length)
    assert (t.kind, t.reason) == (pz.lib.XDNA_PARSE_TX_NOSPC, pz.lib.XDNA_PARSE_NOSPC)


@pytest.mark.parametrize(("head", "tail", "length", "reason"), [
    (68, 0, 16, "BAD_HEAD"), (2, 0, 16, "BAD_HEAD"), (0, 68, 16, "BAD_TAIL"),
    (0, 0, 0, "BAD_LEN"), (0, 0, 18, "BAD_LEN"), (0, 0, 64, "BAD_LEN"),
    (0, 0, 0xFFFFFFFC, "BAD_LEN"),
])
def test_x2i_bad_operands(pz, head, tail, length, reason):
    t = tx(pz, head, tail, 64, length)
    assert (t.kind, t.reason) == (pz.lib.XDNA_PARSE_TX_BAD, getattr(pz.lib, f"XDNA_PARSE_{reason}"))


# ---- (c) response ids -----------------------------------------------------------------------

def test_resp_slot(pz):
    assert pz.lib.xdna_parse_resp_slot(0x1D000005, 256) == 5
    assert pz.lib.xdna_parse_resp_slot(0x1D0000FF, 256) == 255
    assert pz.lib.xdna_parse_resp_slot(0x1C000005, 256) == -pz.lib.XDNA_PARSE_BAD_MAGIC
    assert pz.lib.xdna_parse_resp_slot(0x00000000, 256) == -pz.lib.XDNA_PARSE_BAD_MAGIC
    assert pz.lib.xdna_parse_resp_slot(0x1D000100, 256) == -pz.lib.XDNA_PARSE_BAD_SLOT


def test_resp_contiguity(pz):
    assert pz.lib.xdna_parse_resp_contig(0x1D000006, 0x1D000005) == 0
    assert pz.lib.xdna_parse_resp_contig(0x1D000000, 0x1D0000FF) == 0  # low part 0 restarts
    assert pz.lib.xdna_parse_resp_contig(0x1D000007, 0x1D000005) == pz.lib.XDNA_PARSE_NONCONTIG
    assert pz.lib.xdna_parse_resp_contig(0x1D000005, 0x1D000005) == pz.lib.XDNA_PARSE_NONCONTIG


# ---- (d) mgmt_mbox_chann_info ---------------------------------------------------------------

MBOX, SRAM = 0x3000000, 0x3600000  # npu4 apertures (BAR0 mailbox block at +0x20000, BAR2 SRAM)
GOLDEN_INFO = [0x3020000, 0x3020004, SRAM, 0x1000, 0x3020008, 0x302000C, SRAM + 0x1000, 0x1000,
               0x55504E5F, 0, 6, 0x18]  # from fixtures/traces/probe-npu4.trace


def npu4_layout(pz, **kw):
    lay = pz.ffi.new("struct xdna_parse_layout *")
    for i, (bar, base, size) in enumerate([(0, MBOX, 0x80000), (2, SRAM, 0x40000),
                                           (4, 0x3810000, 0x1000), (5, 0x3B10000, 0x1000)]):
        lay.ap[i] = {"bar": bar, "base": base, "size": size}
        lay.bar_size[bar] = size
    lay.nap, lay.mbox_bar, lay.sram_bar, lay.nvec = 4, 0, 2, 17
    for k, v in kw.items():
        if k == "bar_size":
            for bar, size in v.items():
                lay.bar_size[bar] = size
        else:
            setattr(lay, k, v)
    return lay


def mgmt(pz, info: list[int], lay=None, length: int = 64):
    out = pz.ffi.new("struct xdna_parse_mgmt_info *")
    ch = pz.ffi.new("struct xdna_parse_chan *")
    buf = words(*info).ljust(64, b"\0")[:length]
    r = pz.lib.xdna_parse_mgmt_info(buf, len(buf), 6, 12, lay or npu4_layout(pz), out, ch)
    assert r == ch.reason
    return r, ch


def test_mgmt_info_golden_converts_inside_bars(pz):
    r, ch = mgmt(pz, GOLDEN_INFO)
    assert r == 0
    assert [(ch.reg[i].bar, ch.reg[i].off) for i in range(5)] == [
        (0, 0x20000), (0, 0x20004), (0, 0x20008), (0, 0x2000C), (0, 0x20010)]
    assert [(ch.ring[i].bar, ch.ring[i].off, ch.ring_size[i]) for i in range(2)] == [
        (2, 0, 0x1000), (2, 0x1000, 0x1000)]


def patched(i: int, v: int) -> list[int]:
    w = list(GOLDEN_INFO)
    w[i] = v
    return w


@pytest.mark.parametrize(("info", "reason", "field"), [
    (patched(8, 0x55504E5E), "BAD_INFO_MAGIC", None),
    (patched(10, 5), "BAD_PROTO_MAJOR", None),
    (patched(11, 11), "OLD_PROTO_MINOR", None),
    (patched(9, 17), "BAD_MSIX", "MSIX"),
    (patched(0, 0x3020002), "UNALIGNED", "X2I_TAIL"),
    (patched(1, SRAM + 0x10), "WRONG_BAR", "X2I_HEAD"),  # a register in SRAM
    (patched(4, 0x1000), "NO_BAR", "I2X_TAIL"),  # in no aperture at all
    (patched(5, 0xFFFFFFFC), "NO_BAR", "I2X_HEAD"),
    (patched(5, MBOX + 0x7FFFC), "NO_BAR", "INTR"),  # interrupt = head + 4 past the BAR
    (patched(3, 0x1800), "RING_SIZE", "X2I_RING"),
    (patched(3, 32), "RING_SIZE", "X2I_RING"),
    (patched(6, SRAM + 0x1002), "UNALIGNED", "I2X_RING"),
    (patched(6, MBOX), "WRONG_BAR", "I2X_RING"),  # ring in the mailbox BAR
    (patched(6, SRAM + 0x3F800), "NO_BAR", "I2X_RING"),  # ring runs off the SRAM end
])
def test_mgmt_info_rejections(pz, info, reason, field):
    r, ch = mgmt(pz, info)
    assert r == getattr(pz.lib, f"XDNA_PARSE_{reason}"), pz.ffi.string(pz.lib.xdna_parse_reason_str(r))
    if field:
        assert ch.field == getattr(pz.lib, f"XDNA_PARSE_F_{field}")


def test_mgmt_info_short_and_unmapped(pz):
    assert mgmt(pz, GOLDEN_INFO, length=60)[0] == pz.lib.XDNA_PARSE_SHORT
    # the aperture exists but this session mapped only half of SRAM: the i2x ring is beyond it
    lay = npu4_layout(pz, bar_size={2: 0x1000})
    r, ch = mgmt(pz, GOLDEN_INFO, lay)
    assert (r, ch.field) == (pz.lib.XDNA_PARSE_NO_BAR, pz.lib.XDNA_PARSE_F_I2X_RING)
    lay = npu4_layout(pz, mbox_bar=-1)  # a chip without a mailbox block
    assert mgmt(pz, GOLDEN_INFO, lay)[0] == pz.lib.XDNA_PARSE_WRONG_BAR


# ---- (e) CREATE_CONTEXT response ------------------------------------------------------------

GOLDEN_CREATE = [0, 0, 0x10001, 0x3020024, 0x3020020, SRAM + 0x2000, 0x1000, 0x302002C,
                 0x3020028, SRAM + 0x3000, 0x1000]  # from fixtures/traces/job-npu4.trace


def create(pz, w: list[int], length: int = 76, **kw):
    out = pz.ffi.new("struct xdna_parse_create_resp *")
    ch = pz.ffi.new("struct xdna_parse_chan *")
    buf = words(*w).ljust(76, b"\0")[:length]
    r = pz.lib.xdna_parse_create_resp_full(buf, len(buf), npu4_layout(pz, **kw), out, ch)
    return r, out, ch


def test_create_resp_golden(pz):
    r, out, ch = create(pz, GOLDEN_CREATE)
    assert (r, out.fw_live, out.msix, out.ncq) == (0, 1, 1, 1)
    assert (ch.ring[0].off, ch.ring[1].off, ch.reg[0].off) == (0x2000, 0x3000, 0x20020)


@pytest.mark.parametrize(("status", "reason"), [
    (0x2000003, "STATUS_BUSY"), (0x2000004, "STATUS_INVAL"), (1, "STATUS_FAIL")])
def test_create_resp_status(pz, status, reason):
    r, out, _ = create(pz, [status, *GOLDEN_CREATE[1:]])
    assert (r, out.fw_live) == (getattr(pz.lib, f"XDNA_PARSE_{reason}"), 0)


def test_create_resp_rejections(pz):
    assert create(pz, GOLDEN_CREATE, length=72)[0] == pz.lib.XDNA_PARSE_SHORT
    r, out, _ = create(pz, patched_c(2, 0x00001))  # no cq pair allocated
    assert (r, out.fw_live) == (pz.lib.XDNA_PARSE_NO_CQ, 1)  # the firmware knows it: destroy later
    assert create(pz, patched_c(2, 0x10011))[0] == pz.lib.XDNA_PARSE_BAD_MSIX  # vector 17 of 17
    assert create(pz, patched_c(6, 0x1001))[0] == pz.lib.XDNA_PARSE_RING_SIZE
    assert create(pz, patched_c(9, MBOX + 0x1000))[0] == pz.lib.XDNA_PARSE_WRONG_BAR


def patched_c(i: int, v: int) -> list[int]:
    w = list(GOLDEN_CREATE)
    w[i] = v
    return w


# ---- (f) ERT command BOs --------------------------------------------------------------------

def ert(op: int, count: int, extra: int = 0) -> int:
    return 1 | extra << 10 | count << 12 | op << 23


def npu(pz, bo: bytes, size: int | None = None):
    out = pz.ffi.new("struct xdna_parse_npu *")
    return pz.lib.xdna_parse_npu(bo, len(bo) if size is None else size, out), out


def test_start_npu_happy_path(pz):
    # mask 0b100 (cu 2), inst 0x1_00001000 size 64, 1 property, 2 args
    bo = words(ert(20, 8), 0b100, 0x1000, 1, 64, 1, 0xAB, 0x2000, 0)
    r, c = npu(pz, bo)
    assert r == 0
    assert (c.inst, c.inst_size, c.props, c.cu_idx, c.args, c.nargs) == (
        0x100001000, 64, 1, 2, 7, 2)


def test_start_npu_extra_cu_masks(pz):
    bo = words(ert(20, 7, 2), 0, 0, 0b1000, 0x1000, 0, 16, 0)
    r, c = npu(pz, bo)
    # the lowest bit of the first non-zero mask word, its index within that word (the driver's)
    assert (r, c.cu_idx, c.args, c.nargs) == (0, 3, 8, 0)
    bo = words(ert(20, 7, 2), 0, 0, 0, 0x1000, 0, 16, 0)
    assert npu(pz, bo)[1].cu_idx == 0xFFFFFFFF  # no CU named: XDNA_SHIM_ERT_INVALID_CU


def test_every_runnable_form(pz):
    # START_CU: the whole payload is arguments
    r, c = npu(pz, words(ert(0, 5), 1, 0x1000, 0, 0x2000, 0))
    assert (r, c.opcode, c.inst, c.pargs, c.args, c.nargs) == (0, 0, 0, 2, 2, 4)
    # START_DPU: {inst, size, chained = 0}, then args
    r, c = npu(pz, words(ert(18, 7), 1, 0x1000, 0, 64, 0, 0x2000, 0))
    assert (r, c.inst, c.inst_size, c.props, c.args, c.nargs) == (0, 0x1000, 64, 0, 6, 2)
    # START_NPU_PREEMPT(_ELF): {inst, save, restore, sizes x3, props}, props, args
    for op in (21, 22):
        r, c = npu(pz, words(ert(op, 14), 2, 0x1000, 0, 0x3000, 0, 0x4000, 0, 64, 16, 32, 1, 0xAB,
                             0x2000, 0))
        assert (r, c.opcode, c.cu_idx, c.save, c.restore, c.save_size, c.restore_size) == (
            0, op, 1, 0x3000, 0x4000, 16, 32)
        assert (c.inst_size, c.props, c.pargs, c.args, c.nargs) == (64, 1, 12, 13, 2)


@pytest.mark.parametrize(("bo", "size", "reason"), [
    (words(ert(20, 8), 1, 0, 0, 0, 0, 0, 0), None, "CMD_COUNT"),  # count runs past the BO
    (words(ert(20, 2, 3), 1, 0), None, "CMD_COUNT"),  # count < 4 masks
    (words(ert(20, 5)), 2, "CMD_COUNT"),  # BO smaller than its header word
    (words(ert(17, 5), 1, 0, 0, 0, 0), None, "CMD_OPCODE"),
    (words(ert(18, 5), 1, 0, 0, 0, 1), None, "CMD_SHORT"),  # START_DPU chained entries
    (words(ert(21, 10), 1, 0, 0, 0, 0, 0, 0, 0, 0, 0), None, "CMD_SHORT"),  # 9 < 10 words
    (words(ert(20, 4), 1, 0, 0, 0), None, "CMD_SHORT"),  # 3 payload words < 4
    (words(ert(20, 5), 1, 0, 0, 0, 1), None, "CMD_SHORT"),  # 1 property, none present
    (words(ert(20, 5), 1, 0, 0, 0, 0xFFFFFFFF), None, "CMD_SHORT"),
])
def test_start_npu_rejections(pz, bo, size, reason):
    assert npu(pz, bo, size)[0] == getattr(pz.lib, f"XDNA_PARSE_{reason}")


def chain(pz, bo: bytes, self_handle: int = 9):
    out = pz.ffi.new("struct xdna_parse_chain *")
    return pz.lib.xdna_parse_chain(bo, len(bo), self_handle, 4096, out), out


def chain_bo(handles: list[int], n: int | None = None) -> bytes:
    pay = [len(handles) if n is None else n, 0, 0, 0, 0, 0]
    for h in handles:
        pay += [h & 0xFFFFFFFF, h >> 32]
    return words(ert(19, len(pay)), *pay)


def test_chain_happy_path_and_max(pz):
    r, c = chain(pz, chain_bo([3, 4]))
    assert (r, c.n, c.handle[0], c.handle[1]) == (0, 2, 3, 4)
    r, c = chain(pz, chain_bo(list(range(10, 74))))
    assert (r, c.n) == (0, 64)


@pytest.mark.parametrize(("bo", "reason"), [
    (chain_bo([]), "CHAIN_COUNT"),
    (chain_bo(list(range(10, 75))), "CHAIN_COUNT"),  # 65 > 64
    (chain_bo([3], n=2), "CHAIN_COUNT"),  # count says 2, one handle present
    (chain_bo([0]), "CHAIN_ENTRY"),
    (chain_bo([4097]), "CHAIN_ENTRY"),
    (chain_bo([1 << 32 | 3]), "CHAIN_ENTRY"),  # a 64-bit handle must not truncate to 3
    (chain_bo([9]), "CHAIN_ENTRY"),  # the chain itself
    (words(ert(19, 5), 1, 0, 0, 0, 0), "CMD_SHORT"),
    (words(ert(20, 8), 1, 0, 0, 0, 0, 0, 0, 0), "CMD_OPCODE"),
])
def test_chain_rejections(pz, bo, reason):
    assert chain(pz, bo)[0] == getattr(pz.lib, f"XDNA_PARSE_{reason}")


def test_chain_entry_rejection_names_the_entry(pz):
    r, c = chain(pz, chain_bo([3, 4, 0, 5]))
    assert (r, c.n, c.handle[2]) == (pz.lib.XDNA_PARSE_CHAIN_ENTRY, 3, 0)


def test_cmd_hdr_chain_has_no_cu_mask(pz):
    out = pz.ffi.new("struct xdna_parse_cmd *")
    bo = chain_bo([3])
    assert pz.lib.xdna_parse_cmd_hdr(bo, len(bo), out) == 0
    assert (out.opcode, out.pay, out.npay, out.cu_idx) == (19, 1, 8, 0)


# ---- (b) libFuzzer smoke run and native regressions -----------------------------------------

CLANG = shutil.which("clang")


@pytest.fixture(scope="module")
def harnesses(tmp_path_factory):
    if not CLANG:
        pytest.skip("clang is not installed (`make fuzz-native` installs it)")
    out = tmp_path_factory.mktemp("fuzzbin")
    env = dict(os.environ, CC=CLANG)
    env.pop("CFLAGS", None)
    env.pop("LIB_FUZZING_ENGINE", None)
    env.pop("CXX", None)
    p = subprocess.run(["bash", str(ROOT / "fuzz" / "build.sh"), str(out)], env=env,
                       capture_output=True, text=True, timeout=180)
    if p.returncode != 0 and "fuzzer" in p.stderr and "cannot find" in p.stderr:
        pytest.skip("clang has no libFuzzer runtime (install libclang-rt-dev)")
    assert p.returncode == 0, p.stderr[-2000:]
    return out


HARNESSES = sorted(p.stem for p in (ROOT / "fuzz" / "native").glob("fuzz_*.c"))


@pytest.mark.parametrize("name", HARNESSES)
def test_libfuzzer_smoke(harnesses, tmp_path, name):
    """A short run from the seed corpus: no crash, no invariant failure."""
    import zipfile

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    seeds = harnesses / f"{name}_seed_corpus.zip"
    if seeds.exists():
        zipfile.ZipFile(seeds).extractall(corpus)
    p = subprocess.run([str(harnesses / name), "-runs=20000", "-seed=1", "-timeout=5",
                        f"-dict={harnesses / name}.dict", f"-artifact_prefix={tmp_path}/",
                        str(corpus)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr[-3000:]
    # libFuzzer may count the input it stops on: 20000 or one more, never fewer
    done = re.search(r"Done (\d+) runs", p.stderr)
    assert done is not None and int(done.group(1)) >= 20000, p.stderr[-3000:]


REGRESSION_INPUTS = sorted(p for p in REGRESSIONS.glob("fuzz_*/*") if p.is_file())


@pytest.mark.parametrize("path", REGRESSION_INPUTS or [None],
                         ids=lambda p: f"{p.parent.name}/{p.name}" if p else "none")
def test_native_regressions_replay(harnesses, path):
    """Every input that once crashed a harness (fixtures/regressions/native/<harness>/) stays
    fixed: it is run through that harness, invariants included."""
    if path is None:
        pytest.skip("no native regressions recorded: no harness has crashed so far")
    p = subprocess.run([str(harnesses / path.parent.name), str(path)], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0, p.stderr[-3000:]


def test_seed_generator_is_stdlib_only(tmp_path):
    """ClusterFuzzLite's builder runs gen_seeds.py with a bare python3."""
    src = (ROOT / "fuzz" / "gen_seeds.py").read_text()
    imports = {ln.split()[1] for ln in src.splitlines() if ln.startswith(("import ", "from "))}
    # the firmware interface and UAPI tables are the package imports: they need only the
    # stdlib too
    assert {m.split(".")[0] for m in imports - {"xdna_emu.fw.iface", "xdna_emu.uapi_table"}} <= (
        set(sys.stdlib_module_names) | {"__future__"})
    out = tmp_path / "seeds"
    subprocess.run([sys.executable, "-I", "-S", str(ROOT / "fuzz" / "gen_seeds.py"), str(out)],
                   check=True, capture_output=True)
    assert any(out.iterdir())
