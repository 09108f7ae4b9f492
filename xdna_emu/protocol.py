"""Wire format of the control socket (see docs/spec/protocol.md).

One module holds every constant and layout so the daemon, Python clients and the C mirror
(csrc/xdna_proto.h) cannot drift; tests compare the two.
"""

from __future__ import annotations

import struct
from enum import IntEnum

PROTO_MAJOR = 1
PROTO_MINOR = 1
MAX_MSG_SIZE = 1 << 20
MAX_MSG_FDS = 8

HEADER = struct.Struct("<HHIII")  # msg_id, command, msg_size, flags, error
assert HEADER.size == 16

FLAG_TYPE_MASK = 0xF
TYPE_COMMAND = 0
TYPE_REPLY = 1
FLAG_NO_REPLY = 1 << 4
FLAG_ERROR = 1 << 5


class Cmd(IntEnum):
    VERSION = 1
    DMA_MAP = 2
    DMA_UNMAP = 3
    DEVICE_GET_INFO = 4
    GET_REGION_INFO = 5
    GET_IRQ_INFO = 7
    SET_IRQS = 8
    REGION_READ = 9
    REGION_WRITE = 10
    DEVICE_RESET = 13
    ATTACH_WRITE_LOG = 0x100
    MGMT_PROXY = 0x101  # protocol 1.1: a client session's management request (docs/spec/jobs.md §1)
    DEVICE_STATUS = 0x102  # protocol 1.1: the daemon's status as JSON (operators, tests)


# Region indices (vfio-user PCI layout).
REGION_CONFIG = 7
NUM_REGIONS = 8
REGION_READ = 1
REGION_WRITE = 2
REGION_MMAP = 4
CONFIG_SIZE = 4096

# IRQ indices.
IRQ_INTX, IRQ_MSI, IRQ_MSIX, IRQ_ERR, IRQ_REQ = range(5)
NUM_IRQS = 5
IRQ_DATA_NONE = 1
IRQ_DATA_BOOL = 2
IRQ_DATA_EVENTFD = 4
IRQ_ACTION_MASK = 0x8
IRQ_ACTION_UNMASK = 0x10
IRQ_ACTION_TRIGGER = 0x20

DEVICE_FLAG_RESET = 1
DEVICE_FLAG_PCI = 2

DMA_READ = 1
DMA_WRITE = 2
DMA_SVA = 4

VERSION_HDR = struct.Struct("<HH")
DEVICE_INFO = struct.Struct("<IIII")  # argsz, flags, num_regions, num_irqs
REGION_INFO = struct.Struct("<IIIIQQ")  # argsz, flags, index, cap_offset, size, offset
IRQ_INFO = struct.Struct("<IIII")  # argsz, flags, index, count
SET_IRQS = struct.Struct("<IIIII")  # argsz, flags, index, start, count
REGION_ACCESS = struct.Struct("<QII")  # offset, region, count
DMA_MAP = struct.Struct("<IIQQQII")  # argsz, flags, offset, address, size, pasid, rsvd
DMA_UNMAP = struct.Struct("<IIQQII")  # argsz, flags, address, size, pasid, rsvd
WRITE_LOG_INFO = struct.Struct("<II")  # entries, rsvd
MGMT_PROXY_HDR = struct.Struct("<II")  # opcode, rsvd; the request payload follows

# The ctrl page shared per session.
CTRL_SIZE = 65536
CTRL_MAGIC = 0x474C4458  # "XDLG"
CTRL_VERSION = 1
CTRL_OFF_MAGIC = 0x00
CTRL_OFF_VERSION = 0x04
CTRL_OFF_ENTRIES = 0x08
CTRL_OFF_ENTRY_SIZE = 0x0C
CTRL_OFF_HEAD = 0x10
CTRL_OFF_TAIL = 0x18
CTRL_OFF_EPOCH = 0x20
CTRL_OFF_ALIVE = 0x28
CTRL_OFF_FOREIGN_CTX = 0x2C  # driver session: live contexts owned by client sessions
CTRL_OFF_ENTRY0 = 0x40
LOG_ENTRY = struct.Struct("<IIII")  # bar, offset, value, rsvd
LOG_ENTRIES = (CTRL_SIZE - CTRL_OFF_ENTRY0) // LOG_ENTRY.size
assert LOG_ENTRIES == 4092


class ProtocolError(Exception):
    """The peer broke the protocol; the connection must be dropped."""


def pack(msg_id: int, cmd: int, payload: bytes = b"", flags: int = TYPE_COMMAND, error: int = 0) -> bytes:
    return HEADER.pack(msg_id, cmd, HEADER.size + len(payload), flags, error) + payload


def parse_header(buf: bytes) -> tuple[int, int, int, int, int]:
    """Decode and range-check a header; raise ProtocolError when the stream is garbage."""
    msg_id, cmd, size, flags, error = HEADER.unpack_from(buf)
    if not HEADER.size <= size <= MAX_MSG_SIZE:
        raise ProtocolError(f"message size {size} out of range")
    return msg_id, cmd, size, flags, error
