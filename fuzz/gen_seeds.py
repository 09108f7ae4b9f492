#!/usr/bin/env python3
"""Seed corpora for the native parser harnesses (fuzz/native/fuzz_*.c).

Seeds come from the golden traces in fixtures/traces (real mailbox messages, the management
channel info the firmware published, CREATE_CONTEXT responses) plus hand-written edge cases
(TOMBSTONE wrap, a message ending exactly at the ring end, chains). Without seeds libFuzzer
stalls on the 0x1D id magic and the 0x55504E5F info magic (docs/spec/fuzzing.md §3).

Usage: gen_seeds.py OUTDIR  ->  OUTDIR/<harness>/seed-NNN
Needs only the standard library, so ClusterFuzzLite's base-builder can run it.
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the firmware interface table is plain Python (stdlib only)
import xdna_emu.uapi_table as uapi  # noqa: E402
from xdna_emu.fw.iface import aie2  # noqa: E402

TRACES = ROOT / "fixtures" / "traces"
TOMBSTONE = aie2.FAMILY.const("TOMBSTONE")
MAGIC = aie2.FAMILY.const("MGMT_INFO_MAGIC")
SRAM_BAR = 2
RING = 0x1000  # ring size in the golden traces (size selector 6 = 64 << 6)


def _trace_writes(path: Path) -> tuple[str, list[tuple[int, bytes]]]:
    """(chip, [(sram offset, bytes)]) from the shm and expect-bytes lines of one trace."""
    chip, out = "", []
    for line in path.read_text().splitlines():
        f = line.split()
        if f[:1] == ["chip"]:
            chip = f[1]
        elif f[:1] == ["shm"] and len(f) == 4 and int(f[1]) == SRAM_BAR:
            out.append((int(f[2], 0), bytes.fromhex(f[3])))
        elif f[:2] == ["expect", "bytes"] and len(f) == 5 and int(f[2]) == SRAM_BAR:
            out.append((int(f[3], 0), bytes.fromhex(f[4])))
    return chip, out


def _is_msg(b: bytes) -> bool:
    if len(b) < 16:
        return False
    total, szver, mid, _op = struct.unpack_from("<4I", b)
    return total == szver & 0x7FF and mid >> 24 == 0x1D and total % 4 == 0


def _seeds() -> dict[str, list[bytes]]:
    s: dict[str, list[bytes]] = {k: [] for k in
                                 ("i2x_rx", "x2i_tx", "resp_id", "mgmt_info", "create_resp",
                                  "cmd_bo", "uapi_args")}  # fmt: skip
    for path in sorted(TRACES.glob("*.trace")):
        chip, writes = _trace_writes(path)
        sel = 0 if chip == "npu1" else 1
        pages: dict[int, bytearray] = {}
        ends: dict[int, int] = {}
        for off, data in writes:
            if MAGIC.to_bytes(4, "little") in data and len(data) <= 64:
                s["mgmt_info"].append(bytes([sel]) + data.ljust(64, b"\0"))
                s["mgmt_info"].append(bytes([sel | 0x80]) + data.ljust(64, b"\0"))
                continue
            if not _is_msg(data):
                continue
            total, _, mid, op = struct.unpack_from("<4I", data)
            page, in_page = off & ~(RING - 1), off & (RING - 1)
            ring = pages.setdefault(page, bytearray(RING))
            ring[in_page:in_page + len(data)] = data[:RING - in_page]
            ends[page] = max(ends.get(page, 0), min(RING, in_page + 16 + total))
            s["resp_id"].append(struct.pack("<II", mid, mid - 1))
            if op == 0x2 and total == 76:  # CREATE_CONTEXT response (cq_pair[0] is recorded)
                s["create_resp"].append(bytes([sel]) + data[16:].ljust(76, b"\0")[:76])
        for page, ring in pages.items():
            tail = ends[page]
            s["i2x_rx"].append(struct.pack("<BII", 6, 0, tail) + bytes(ring))
            # the same messages moved to the ring end, a TOMBSTONE after them and the first
            # one again at 0: the consumer drains, wraps, reads one more
            start = RING - tail - 4
            if start >= 16 + 4:
                first = 16 + struct.unpack_from("<I", ring)[0]
                wrapped = bytearray(RING)
                wrapped[start:start + tail] = ring[:tail]
                wrapped[start + tail:start + tail + 4] = TOMBSTONE.to_bytes(4, "little")
                wrapped[:first] = ring[:first]
                s["i2x_rx"].append(struct.pack("<BII", 6, start, first) + bytes(wrapped))

    # hand-written i2x edge cases on a 64-byte ring (selector 0)
    ver = aie2.FAMILY.const("MSG_PROTOCOL_VERSION") << 16
    msg = aie2.MSG_HEADER.pack(total_size=32, sz_ver=32 | ver, id=aie2.FAMILY.const("MSG_ID_MAGIC") | 5,
                               opcode=aie2.OPCODE.py.SET_RUNTIME_CONFIG) + bytes(32)  # 48 bytes
    end_at_ring_end = bytes(16) + msg  # message at 16 ending exactly at 64
    s["i2x_rx"].append(struct.pack("<BII", 0x80, 16, 0) + end_at_ring_end)
    tomb = TOMBSTONE.to_bytes(4, "little")
    s["i2x_rx"].append(struct.pack("<BII", 0x80, 48, 0) + msg[:48] + tomb + bytes(12))
    s["i2x_rx"].append(struct.pack("<BII", 0x80, 0, 8) + tomb + bytes(60))  # bad TOMBSTONE

    # x2i op streams: sends of assorted sizes interleaved with consumes
    s["x2i_tx"] += [bytes([0, 0, 0, 0, 0]) + bytes([1, 3, 5, 2, 7, 9, 4, 11, 6]),
                    bytes([1, 28, 0, 0, 0]) + bytes([15, 2, 15, 2, 15, 14, 15]),
                    b"\xff" + struct.pack("<4I", 64, 16, 48, 16)]

    # ERT command BOs: START_NPU {inst lo, hi, size, props=1, prop, arg pairs}
    def hdr(op: int, count: int, extra_masks: int = 0) -> int:
        return 1 | extra_masks << 10 | count << 12 | op << 23

    payload = [0x1000, 0x1, 64, 1, 0xAB, 0x2000, 0x0, 0x3000, 0x0]
    s["cmd_bo"].append(struct.pack(f"<II{len(payload)}I", hdr(20, 1 + len(payload)), 1, *payload))
    s["cmd_bo"].append(struct.pack("<IIII4I", hdr(20, 7, 2), 0, 0, 4, 0x1000, 0, 16, 0))
    chain = [2, 0, 0, 0, 0, 0, 3, 0, 4, 0]
    s["cmd_bo"].append(struct.pack(f"<I{len(chain)}I", hdr(19, len(chain)), *chain))

    # UAPI decoder arguments: selector byte (fuzz_uapi_args.c), then the struct's bytes:
    # every real ioctl number, a SHARE and a user-pointer CREATE_BO, a two-range va table,
    # a GET_ARRAY of hwctx entries, syncobj handles with and without flags
    u = s["uapi_args"]
    for io in uapi.IOCTLS:
        u.append(b"\x00" + struct.pack("<QH", io.number, io.layout.size))
    u.append(b"\x01" + uapi.CREATE_BO.pack(size=4096, type=uapi.const("AMDXDNA_BO_SHARE")))
    u.append(b"\x01" + uapi.CREATE_BO.pack(vaddr=0x7F0000001000, type=uapi.const("AMDXDNA_BO_SHARE")))
    u.append(b"\x02" + struct.pack(">H", 2) + uapi.VA_ENTRY.pack(vaddr=0x7F0000000000, len=8192)
             + uapi.VA_ENTRY.pack(vaddr=0x7F0000010000, len=4096))
    u.append(b"\x03" + uapi.GET_ARRAY.pack(param=0, element_size=160, num_element=8, buffer=0x1000))
    u.append(b"\x04" + uapi.DRM_SYNCOBJ_HANDLE.pack(handle=1))
    u.append(b"\x05" + uapi.DRM_SYNCOBJ_HANDLE.pack(fd=3, flags=1))
    return s


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[-2], file=sys.stderr)
        return 2
    out = Path(argv[1])
    for name, seeds in _seeds().items():
        d = out / f"fuzz_{name}"
        d.mkdir(parents=True, exist_ok=True)
        for i, blob in enumerate(dict.fromkeys(seeds)):
            (d / f"seed-{i:03d}").write_bytes(blob)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
