"""The AIE4 half of the Python reference driver: PSP with the cert image, the mailbox_info
handshake and the AIE4 init order (docs/spec/aie4.md §3-§5), over an in-process PciFunction.

It follows the driver's algorithms: the PSP's ready bit is polled before a command, the
command goes in ARG2's top byte and INTR gets PSP_NOTIFY_INTR; mailbox_info is polled for
valid=1 and its values are BAR offsets (mailbox registers in BAR0, rings in BAR2); there is
no interrupt-ack register.
"""

from __future__ import annotations

import struct
from typing import Any

from ..fw.aie4.messages import (
    ASYNC_EVENT_BUF_SIZE,
    CERT_ALIGN,
    HSA_EXEC_BUF,
    HSA_INDIRECT_ENTRY,
    HSA_INDIRECT_UC_SHIFT,
    HSA_PKT,
    HSA_PKT_HEADER,
    HSA_QUEUE_HEADER,
    HSA_QUEUE_SLOTS,
    MAILBOX_INFO,
    MBOX_INFO_VALID,
    MESSAGES,
    PASID_VALID,
    PSP_CMD_SHIFT,
    PSP_NOTIFY_INTR,
    PSP_START_COPY_FW,
    PSP_STATUS_READY,
    RUNTIME_CONFIG_PAYLOADS,
    WORK_BUFFER_SIZE,
    HsaOpcode,
    Opcode,
    PspCmd,
    RuntimeConfigType,
    Status,
)
from ..fw.iface.aie4 import FAMILY
from ..fw.image import build_cert, build_image
from ..fw.messages import SmuCmd
from ..iommu import DMA_READ, DMA_WRITE
from .pydriver import FW_IOVA, DriverChannel, DriverError, InProcessDevice, PyDriver, Response

_U64 = struct.Struct("<Q")

CERT_IOVA = 0x1_8000_0000  # where test cert images are DMA-mapped (pasid 0), 32 KiB aligned
WORK_IOVA = 0x2_0000_0000  # the DRAM work buffer
EVENT_IOVA = 0x2_1000_0000  # async event buffers, one per column
MBOX_REG_BAR, MBOX_BUF_BAR = 0, 2  # where mailbox_info's offsets point (driver fact)


class Aie4DriverChannel(DriverChannel):
    """The mgmt channel without an interrupt register: the RX worker only drains."""

    def drain(self) -> list[Response]:
        out: list[Response] = []
        while (r := self.recv_one()) is not None:
            out.append(r)
        return out


class Aie4PyDriver(PyDriver):
    """Driver-side helpers for an AIE4 function."""

    def __init__(self, td: InProcessDevice) -> None:
        super().__init__(td)
        self.partition_id = 0
        self.fw_version: tuple[int, ...] = ()
        self.cert_version: dict[str, Any] = {}

    # -- PSP -----------------------------------------------------------------------------
    def psp_exec(self, cmd: int, arg0: int = 0, arg1: int = 0, arg2: int = 0) -> int:
        """Poll ready, write ARG0, ARG1, ARG2 = cmd << 24 | arg, INTR=0, INTR=NOTIFY; poll ready."""
        if not self.read_role("psp.status") & PSP_STATUS_READY:
            raise DriverError("EBUSY", "PSP not ready")
        for role, val in (("psp.arg0", arg0), ("psp.arg1", arg1),
                          ("psp.arg2", (cmd << PSP_CMD_SHIFT) | arg2), ("psp.intr", 0),
                          ("psp.intr", PSP_NOTIFY_INTR)):  # fmt: skip
            self.write_role(role, val)
        self.fn.poll()
        if not self.read_role("psp.status") & PSP_STATUS_READY:
            raise DriverError("ETIME", f"PSP command {cmd} not ready")
        return self.read_role("psp.resp")

    def map_buffer(self, data: bytes, iova: int, align: int) -> int:
        size = (len(data) + align - 1) // align * align
        space = self.iommu.spaces.get(0)
        old = space.find(iova) if space else None
        if old is not None:
            self.fn.dma_unmap(0, old.address, old.size)
        buf = self.host_buffer(0, iova, size)
        buf[: len(data)] = data
        self.fn.dma_map(0, iova, size, DMA_READ | DMA_WRITE, None, mem=buf)
        return size

    def psp_start(self, image: bytes | None = None, cert: bytes | None = None) -> None:  # type: ignore[override]
        """VALIDATE the npu image, VALIDATE_CERT the cert image, START."""
        image = image if image is not None else build_image(self.chip)
        cert = cert if cert is not None else build_cert(self.chip)
        size = self.map_image(image)
        csize = self.map_buffer(cert, CERT_IOVA, CERT_ALIGN)
        for cmd, args in ((PspCmd.VALIDATE, (FW_IOVA & 0xFFFFFFFF, FW_IOVA >> 32, size)),
                          (PspCmd.VALIDATE_CERT, (CERT_IOVA & 0xFFFFFFFF, CERT_IOVA >> 32, csize)),
                          (PspCmd.START, (PSP_START_COPY_FW, 0, 0))):  # fmt: skip
            resp = self.psp_exec(cmd, *args)
            if resp != 0:
                raise DriverError("EINVAL", f"PSP {PspCmd(cmd).name} failed: {resp:#x}")

    def smu_start(self) -> None:
        """AIE4 only powers on (no POWER_OFF first)."""
        self.smu_ok(SmuCmd.POWER_ON)

    # -- handshake ---------------------------------------------------------------------
    def wait_mailbox_info(self) -> dict[str, int]:
        assert self.chip.aie4 is not None
        self.fn.poll()
        info = MAILBOX_INFO.unpack(self.regs.span(self.chip.aie4.mbox_info, MAILBOX_INFO.size))
        if info["valid"] != MBOX_INFO_VALID:
            raise DriverError("ETIME", "mailbox_info.valid never became 1")
        reg = lambda off: self.chip.bar_to_dev(MBOX_REG_BAR, off)  # noqa: E731
        buf = lambda off: self.chip.bar_to_dev(MBOX_BUF_BAR, off)  # noqa: E731
        self.mgmt = Aie4DriverChannel(
            self,
            (reg(info["x2i_tail_offset"]), reg(info["x2i_head_offset"]),
             buf(info["x2i_buffer_addr"]), info["x2i_buffer_size"]),
            (reg(info["i2x_tail_offset"]), reg(info["i2x_head_offset"]),
             buf(info["i2x_buffer_addr"]), info["i2x_buffer_size"]))  # fmt: skip
        self.info = info
        return info

    # -- messages ----------------------------------------------------------------------
    def call(self, op: Opcode, tail: bytes = b"", resp_extra: int = 0, **fields: Any) -> dict[str, Any]:
        """Send ``op`` with its request fields (+ ``tail`` bytes); the decoded response."""
        if self.mgmt is None:
            raise DriverError("ENODEV", "no mgmt channel")
        m = MESSAGES[op]
        raw = self.mgmt.request(op, m.req.pack(**fields) + tail, m.resp.size + resp_extra)
        out = m.resp.unpack(raw)
        out["_raw"] = raw
        return out

    def call_ok(self, op: Opcode, tail: bytes = b"", resp_extra: int = 0, **fields: Any) -> dict[str, Any]:
        out = self.call(op, tail, resp_extra, **fields)
        if out["status"] != Status.SUCCESS:
            raise DriverError("EINVAL", f"{op.name} failed: status {out['status']}")
        return out

    def set_runtime_config(self, kind: RuntimeConfigType, **fields: Any) -> None:
        body = RUNTIME_CONFIG_PAYLOADS[kind].pack(**fields)
        self.call_ok(Opcode.SET_RUNTIME_CONFIG, body, type=kind)

    def bring_up(self, image: bytes | None = None, cert: bytes | None = None,  # type: ignore[override]
                 timeout_ms: int = 2000) -> dict[str, Any]:
        """The AIE4 init order (docs/spec/aie4.md §6); a VF skips PSP, SMU and work buffer,
        a PF skips AIE version/tile info and the partition."""
        func = self.chip.function
        if func != "vf":
            self.smu_start()
            self.psp_start(image, cert)
        self.wait_mailbox_info()
        out: dict[str, Any] = {"identify": self.call_ok(Opcode.IDENTIFY)}
        out["cert"] = self.call_ok(Opcode.QUERY_CERT_FIRMWARE_VERSION)
        if func != "pf":
            out["aie_version"] = self.call_ok(Opcode.AIE_VERSION_INFO)
            out["tiles"] = self.call_ok(Opcode.AIE_TILE_INFO)
        self.call_ok(Opcode.CALIBRATE_CLOCK, time_base_ns=self.fn.clock.now_ns())
        if func != "vf":
            self.map_buffer(bytes(WORK_BUFFER_SIZE), WORK_IOVA, WORK_BUFFER_SIZE)
            self.call_ok(Opcode.DRAM_WORK_BUFFER, addr=WORK_IOVA, pasid=0, size=WORK_BUFFER_SIZE)
        self.set_runtime_config(RuntimeConfigType.CTX_SWITCH_HYSTERESIS,
                                hysteresis_us=FAMILY.const("CTX_SWITCH_HYSTERESIS_US"))
        self.set_runtime_config(RuntimeConfigType.CONTEXT_TIMEOUT, timeout_ms=timeout_ms)
        if func != "pf":
            lay = self.chip.aie4
            assert lay is not None
            part = self.call_ok(Opcode.CREATE_PARTITION, col_start=lay.partition_col_start,
                                col_count=lay.partition_col_count)
            if part["partition_id"] == 0:
                raise DriverError("EINVAL", "CREATE_PARTITION returned partition id 0")
            self.partition_id = part["partition_id"]
        size = ASYNC_EVENT_BUF_SIZE
        self.map_buffer(bytes(size * max(1, self.chip.cols)), EVENT_IOVA, size)
        for col in range(self.chip.cols):
            self.mgmt.send(Opcode.ASYNC_EVENT_MSG,  # type: ignore[union-attr]
                           MESSAGES[Opcode.ASYNC_EVENT_MSG].req.pack(
                               addr=EVENT_IOVA + col * size, pasid=0, size=size))
        self.fn.poll()
        out["partition_id"] = self.partition_id
        return out

    def create_queue(self, pasid: int = 0, slot: int = 0) -> Aie4Queue:
        """Map a queue BO in ``pasid``'s space and CREATE_HW_CONTEXT on it."""
        iova = QUEUE_IOVA + slot * 0x10000
        size = 0x10000
        mem = self.host_buffer(pasid, iova, size)
        mem[: HSA_QUEUE_HEADER.size] = HSA_QUEUE_HEADER.pack(
            major=FAMILY.const("HSA_QUEUE_MAJOR"), minor=FAMILY.const("HSA_QUEUE_MINOR"),
            capacity=HSA_QUEUE_SLOTS, data_address=iova + HSA_QUEUE_HEADER.size)
        self.fn.dma_map(pasid, iova, size, DMA_READ | DMA_WRITE, None, mem=mem)
        r = self.call_ok(Opcode.CREATE_HW_CONTEXT, partition_id=self.partition_id, num_tiles=4,
                         hsa_addr_hi=iova >> 32, hsa_addr_lo=iova & 0xFFFFFFFF,
                         pasid=pasid | PASID_VALID if pasid else 0, priority_band=0)
        return Aie4Queue(self, pasid, iova, r["hw_context_id"], r["doorbell_offset"],
                         r["job_complete_msix_idx"], mem)

    def stop(self) -> None:
        """The AIE4 stop: release the work buffer, RELEASE_TMR, SMU off."""
        if self.chip.function != "vf":
            self.call_ok(Opcode.RELEASE_DRAM_WORK_BUFFER)
            if self.psp_exec(PspCmd.RELEASE_TMR) != 0:
                raise DriverError("EINVAL", "RELEASE_TMR failed")
            self.smu_ok(SmuCmd.POWER_OFF)
        self.mgmt = None


# -- contexts and HSA queues (docs/spec/aie4.md §7) -----------------------------------------------
QUEUE_IOVA = 0x3_0000_0000  # per-context queue BOs, 64 KiB apart
CLIENT_IOVA = 0x4_0000_0000  # client buffers


class Aie4Queue:
    """Host side of one context's HSA queue: the producer of packets and the doorbell."""

    def __init__(self, drv: Aie4PyDriver, pasid: int, iova: int, ctx_id: int,
                 doorbell: int, msix: int, mem: bytearray) -> None:
        self.drv, self.pasid, self.iova, self.ctx_id = drv, pasid, iova, ctx_id
        self.doorbell_off, self.msix, self.mem = doorbell, msix, mem

    @property
    def header(self) -> dict[str, Any]:
        return HSA_QUEUE_HEADER.unpack(self.mem)

    def index(self, name: str) -> int:
        """One 64-bit field of the header (``read_index``, ``write_index``) read alone: a
        fuzz checker reads the read index after every op, and the whole header's named
        unpack costs ten times as much."""
        return _U64.unpack_from(self.mem, HSA_QUEUE_HEADER.offsets[name])[0]

    def put(self, index: int, pkt: bytes) -> None:
        off = HSA_QUEUE_HEADER.size + (index % HSA_QUEUE_SLOTS) * HSA_PKT.size
        self.mem[off : off + len(pkt)] = pkt

    def publish(self, write_index: int) -> None:
        off = HSA_QUEUE_HEADER.offsets["write_index"]
        self.mem[off : off + 8] = write_index.to_bytes(8, "little")

    def ring(self) -> None:
        """Write the doorbell (any value) at the offset CREATE_HW_CONTEXT returned."""
        self.drv.fn.mmio_write(DOORBELL_BAR, self.doorbell_off, 0)

    def submit(self, *pkts: bytes) -> int:
        """Write packets at write_index, publish, ring; returns the new write index."""
        wr = self.index("write_index")
        for i, pkt in enumerate(pkts):
            self.put(wr + i, pkt)
        self.publish(wr + len(pkts))
        self.ring()
        return wr + len(pkts)


DOORBELL_BAR = MBOX_BUF_BAR  # doorbells share the ring-buffer BAR from offset 0 (driver fact)


def exec_pkt(signal: int, ctrlcode: int, args: int, args_len: int, *, chain: int = 0,
             opcode: int = HsaOpcode.EXEC_BUF) -> bytes:
    """A direct exec_buf packet."""
    eb = HSA_EXEC_BUF.pack(ctrlcode_lo=ctrlcode & 0xFFFFFFFF, ctrlcode_hi=ctrlcode >> 32,
                           args_len=args_len, args_lo=args & 0xFFFFFFFF, args_hi=args >> 32)
    hdr = HSA_PKT_HEADER.pack(opcode=opcode, chain_flag=chain, count=len(eb),
                              completion_signal=signal)
    return (hdr + eb).ljust(HSA_PKT.size, b"\0")


def indirect_pkt(signal: int, entries: list[tuple[int, int]], count: int | None = None) -> bytes:
    """An indirect packet: (exec_buf address, uC index) entries."""
    data = b"".join(HSA_INDIRECT_ENTRY.pack(addr_lo=a & 0xFFFFFFFF,
                                            addr_hi_uc=(a >> 32) | uc << HSA_INDIRECT_UC_SHIFT)
                    for a, uc in entries)
    hdr = HSA_PKT_HEADER.pack(opcode=HsaOpcode.EXEC_BUF, indirect=1,
                              count=len(entries) if count is None else count,
                              completion_signal=signal)
    return (hdr + data).ljust(HSA_PKT.size, b"\0")
