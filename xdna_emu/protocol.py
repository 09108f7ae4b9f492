"""Wire format of the control socket (see docs/spec/protocol.md).

One module holds every constant and layout so the daemon, Python clients and the C shim
cannot drift: the shim's header (csrc/generated/xdna_proto.h) is generated from this module
by ``xdna_emu.protogen`` at build time.
"""

from __future__ import annotations

import mmap
import struct
from enum import IntEnum

from .fw.iface import U16, U32, U64, Struct, f
from .fw.pmf import PMF_COLUMNS

#: Python name -> named layout; each ``NAME`` below is ``LAYOUTS["NAME"].codec`` and C gets
#: ``struct xdna_proto_<layout>`` and ``XDNA_PROTO_<NAME>_SIZE``.
LAYOUTS: dict[str, Struct] = {}


def _layout(name: str, s: Struct) -> struct.Struct:
    LAYOUTS[name] = s
    return s.codec


PROTO_MAJOR = 1
PROTO_MINOR = 2  # 1.2: the doorbell eventfd and table (docs/spec/protocol.md, "Doorbells")
MAX_MSG_SIZE = 1 << 20
MAX_MSG_FDS = 8

HEADER = _layout("HEADER", Struct("hdr", (
    f("msg_id", U16), f("command", U16), f("msg_size", U32), f("flags", U32), f("error", U32))))
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
#: DMA_MAP: replace the mapping that starts at ``address`` in one step (a heap that grows)
DMA_REPLACE = 8


def _u32s(*names: str) -> tuple:
    return tuple(f(n, U32) for n in names)


VERSION_HDR = _layout("VERSION_HDR", Struct("version_hdr", (f("major", U16), f("minor", U16))))
DEVICE_INFO = _layout("DEVICE_INFO", Struct("device_info", _u32s("argsz", "flags", "num_regions", "num_irqs")))
REGION_INFO = _layout("REGION_INFO", Struct("region_info", (
    *_u32s("argsz", "flags", "index", "cap_offset"), f("size", U64), f("offset", U64))))
IRQ_INFO = _layout("IRQ_INFO", Struct("irq_info", _u32s("argsz", "flags", "index", "count")))
SET_IRQS = _layout("SET_IRQS", Struct("set_irqs", _u32s("argsz", "flags", "index", "start", "count")))
REGION_ACCESS = _layout("REGION_ACCESS", Struct("region_access", (
    f("offset", U64), f("region", U32), f("count", U32))))
DMA_MAP = _layout("DMA_MAP", Struct("dma_map", (
    *_u32s("argsz", "flags"), f("offset", U64), f("address", U64), f("size", U64),
    *_u32s("pasid", "rsvd"))))
DMA_UNMAP = _layout("DMA_UNMAP", Struct("dma_unmap", (
    *_u32s("argsz", "flags"), f("address", U64), f("size", U64), *_u32s("pasid", "rsvd"))))
WRITE_LOG_INFO = _layout("WRITE_LOG_INFO", Struct("write_log_info", _u32s("entries", "rsvd")))
#: the request payload follows
MGMT_PROXY_HDR = _layout("MGMT_PROXY_HDR", Struct("mgmt_proxy_hdr", _u32s("opcode", "rsvd")))

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
# the context runqueue shared by every session (docs/spec/jobs.md §3a)
CTRL_OFF_HWCTX_LIVE = 0x30  # client stores: its live user contexts (runtime-PM references)
CTRL_OFF_RQ_ASK = 0x34  # client stores: bumped each time one of its contexts found no partition
CTRL_OFF_RQ_ASKS = 0x38  # daemon stores: the sum of the other sessions' RQ_ASK
CTRL_OFF_CTX_GEN = 0x3C  # daemon stores: firmware contexts destroyed so far (device-wide)
# QoS of every session drives DPM (docs/spec/jobs.md §6)
CTRL_OFF_DPM_WANT = 0x40  # client stores: 1 + the highest DPM level its contexts ask, 0 none
CTRL_OFF_FOREIGN_DPM = 0x44  # daemon stores (driver's page): the highest client DPM_WANT
CTRL_OFF_DPM_NOW = 0x48  # driver stores 1 + the level the SMU accepted; copied to clients
# Notification suppression (docs/spec/protocol.md, "Suppressed kicks and notifies"):
CTRL_OFF_DRAINING = 0x4C  # u32, daemon: nonzero while it applies this log; a kick is optional
CTRL_OFF_IRQ_WAKES = 0x50  # u32, client: nonzero when an interrupt to its vectors wakes it as notify does
CTRL_OFF_POLLING = 0x54  # u32, client: threads spinning on a ring now; the daemon spins before it sleeps
# Function resets and SR-IOV (docs/spec/aie4.md §8, §10)
CTRL_OFF_RESETS = 0x58  # function resets so far (FLR however started, DEVICE_RESET)
CTRL_OFF_REMOVED = 0x5C  # 1: the function was removed (its VF disabled), set before alive 0
CTRL_OFF_SRIOV_REQ = 0x60  # driver session of a PF: N + 1 after a write of N to sriov_numvfs
# The platform firmware's NPU metrics (docs/spec/uapi.md §6 "Sensors"), daemon stores
# after each step that progressed: SEQ odd while it writes, even after (a reader retries)
CTRL_OFF_PMF_SEQ = 0x64  # u32
CTRL_OFF_PMF_POWER = 0x68  # u32, mW
CTRL_OFF_PMF_BUSY = 0x6C  # u16 per column, busy %, PMF_COLUMNS of them
CTRL_PMF_COLUMNS = PMF_COLUMNS
CTRL_OFF_FW_BOOTS = 0x7C  # u32, daemon stores: firmware boots so far (a client's contexts end with theirs)
# Runtime PM across sessions (docs/spec/jobs.md §1): a client's call that needs the device
# while the driver session holds it suspended asks the driver to resume it
CTRL_OFF_PM_ASK = 0x80  # u32, client stores: bumped each time a call of its found the device suspended
CTRL_OFF_PM_ASKS = 0x84  # u32, daemon stores (driver's page): every client PM_ASK so far
CTRL_OFF_PM_DOWN = 0x88  # u32, driver stores 1 while it holds the device suspended; copied to clients
CTRL_OFF_DRV_STOPS = 0x8C  # u32, driver stores its stops so far; copied to clients (their contexts end)
# Doorbells (protocol 1.2, docs/spec/protocol.md "Doorbells"): registers whose logged write
# the client kicks through the doorbell eventfd instead of the kick eventfd; doorbell i is
# BAR DOORBELL_BAR at DOORBELL_BASE + i * DOORBELL_STRIDE, for i < DOORBELL_COUNT (the
# daemon stores these four once, at attach), and is live while bit i of DOORBELL_MASK is set
CTRL_OFF_DOORBELL_BAR = 0x90  # u32
CTRL_OFF_DOORBELL_BASE = 0x94  # u32, BAR offset of doorbell 0
CTRL_OFF_DOORBELL_STRIDE = 0x98  # u32, bytes between doorbells
CTRL_OFF_DOORBELL_COUNT = 0x9C  # u32, 0: none (the session's protocol minor is below 2)
CTRL_OFF_DOORBELL_MASK = 0xA0  # u32, daemon stores: the live doorbells
CTRL_DOORBELLS_MAX = 32  # the mask's bits
# Runtime PM across sessions again (docs/spec/jobs.md §1): a client's proxied management
# message is an ioctl through the driver, whose runtime-PM get marks the device busy
CTRL_OFF_CLIENT_OPS = 0xA4  # u32, daemon stores (driver's page): client MGMT_PROXY messages served
#: Rounds one session's log is applied in a row (by the loop or the doorbell thread) before
#: the other logs get their turn ("Suppressed kicks and notifies").
DRAIN_ROUNDS = 64
#: ATTACH_WRITE_LOG's fds: ctrl page, kick, notify, and from minor 2 on the doorbell eventfd
DOORBELL_MINOR = 2
WRITE_LOG_FDS = 3  # ctrl page, kick and notify eventfds
WRITE_LOG_FDS_DOORBELL = 4  # and the doorbell eventfd (a session of DOORBELL_MINOR or later)
CTRL_OFF_ENTRY0 = 0xC0


def ctrl_words(ctrl: mmap.mmap) -> tuple[memoryview, memoryview]:
    """A ctrl page's 32- and 64-bit words (native order: the page's little-endian on every
    host the shim runs on). Another process reads a word while this one writes it, so every
    load and store of one is a single access through these views: ``struct``'s
    ``pack_into`` zero-fills its field before it packs (a client saw ``fw_boots`` 0 for a
    moment), and its "<" formats read and write byte by byte. Release both before closing
    the mapping."""
    return memoryview(ctrl).cast("I"), memoryview(ctrl).cast("Q")
LOG_ENTRY = _layout("LOG_ENTRY", Struct("log_entry", _u32s("bar", "offset", "value", "rsvd")))
LOG_ENTRIES = (CTRL_SIZE - CTRL_OFF_ENTRY0) // LOG_ENTRY.size
assert LOG_ENTRIES == 4084


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
