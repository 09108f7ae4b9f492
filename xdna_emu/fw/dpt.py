"""The management firmware's log and trace rings (docs/spec/firmware.md §8a).

CONFIG_FW_LOG hands the firmware a DMA buffer for its log, START_FW_TRACE one for its
trace. The last DPT_FOOTER_PAGE bytes of each are a footer page whose ``tail`` counts the
bytes written so far (mod 2^32); the bytes before it are a ring the firmware fills with
records, wrapping, never waiting for a reader (the driver reads from its own offset and
starts over at the ring's start when it fell a whole ring behind). A log line is a
``fw_log_header`` and its NUL-terminated text, padded to FW_LOG_MSG_ALIGN; a trace record
is a ``fw_trace_record``. Nothing is raised towards the host: the emulated firmware reports
no MSI for either ring, so the driver polls the footer.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..iommu import Iommu, IommuFault
from .messages import DPT_CONSTS, DPT_FOOTER, FW_LOG_HEADER, FW_TRACE_RECORD

FOOTER_SIZE = DPT_CONSTS["DPT_FOOTER_PAGE"]
BUF_MIN, BUF_MAX = DPT_CONSTS["DPT_BUF_MIN"], DPT_CONSTS["DPT_BUF_MAX"]
ALIGN = DPT_CONSTS["FW_LOG_MSG_ALIGN"]
APP_MGMT = DPT_CONSTS["FW_LOG_APP_MGMT"]
KIND_LOG, KIND_TRACE = 0, 1
_PAYLOAD_VERSION = {KIND_LOG: DPT_CONSTS["FW_LOG_PAYLOAD_VERSION"],
                    KIND_TRACE: DPT_CONSTS["FW_TRACE_PAYLOAD_VERSION"]}
#: the longest text of one log line (argc is 8 bits of u32 words)
TEXT_MAX = 255 * 4 - 1


@dataclass
class DptRing:
    """One log or trace buffer the driver handed over: where, how large, for which PASID,
    and how many bytes the firmware wrote into it so far."""

    kind: int
    addr: int
    size: int
    pasid: int
    tail: int = 0

    @property
    def ring(self) -> int:
        return self.size - FOOTER_SIZE

    def footer(self) -> bytes:
        return DPT_FOOTER.pack(DPT_CONSTS["DPT_MINOR"], DPT_CONSTS["DPT_MAJOR"], self.kind, 0,
                               _PAYLOAD_VERSION[self.kind], bytes(56), self.tail & 0xFFFFFFFF)

    def start(self, iommu: Iommu) -> bool:
        """Take over the buffer: a footer of ours already there (the driver resubmits the
        same buffer after a resume) gives the tail to go on from; a zeroed one starts at 0.
        False if the buffer cannot be reached."""
        try:
            old = DPT_FOOTER.unpack(iommu.read(self.addr + self.ring, DPT_FOOTER.size, self.pasid))
            if old[1] == DPT_CONSTS["DPT_MAJOR"] and old[2] == self.kind:
                self.tail = old[-1]
            iommu.write(self.addr + self.ring, self.footer(), self.pasid)
        except IommuFault:
            return False
        return True

    def append(self, iommu: Iommu, record: bytes) -> bool:
        """Write one record at the tail, wrapping, then the new tail; False (nothing kept)
        when the buffer went away under the firmware."""
        pos = self.tail % self.ring
        first = record[: self.ring - pos]
        try:
            iommu.write(self.addr + pos, first, self.pasid)
            if len(first) < len(record):
                iommu.write(self.addr, record[len(first):], self.pasid)
            self.tail += len(record)
            iommu.write(self.addr + self.ring, self.footer(), self.pasid)
        except IommuFault:
            return False
        return True


def log_record(timestamp_ns: int, level: int, module: int, line: int, text: str) -> bytes:
    """One FULL-format log line of the management firmware."""
    body = text.encode()[:TEXT_MAX] + b"\0"
    argc = (len(body) + 3) // 4
    body = body.ljust(argc * 4, b"\0")
    flags = (level & 0x7) << 8 | APP_MGMT << 16 | argc << 24
    rec = FW_LOG_HEADER.pack(timestamp_ns, flags, line & 0xFFFF, module & 0xFFFF) + body
    return rec.ljust(-(-len(rec) // ALIGN) * ALIGN, b"\0")


def trace_record(timestamp_ns: int, category: int, event: int, context_id: int, arg: int) -> bytes:
    return FW_TRACE_RECORD.pack(timestamp_ns, category, event, context_id & 0xFFFFFFFF,
                                arg & 0xFFFFFFFF)
