"""The AIE4 half of the Python reference driver: PSP with the cert image, the mailbox_info
handshake and the AIE4 init order (docs/spec/aie4.md §3-§5), over an in-process PciFunction.

It follows the driver's algorithms: the PSP's ready bit is polled before a command, the
command goes in ARG2's top byte and INTR gets PSP_NOTIFY_INTR; mailbox_info is polled for
valid=1 and its values are BAR offsets (mailbox registers in BAR0, rings in BAR2); there is
no interrupt-ack register.
"""

from __future__ import annotations

from typing import Any

from ..fw.aie4.messages import (
    ASYNC_EVENT_BUF_SIZE,
    CERT_ALIGN,
    MAILBOX_INFO,
    MBOX_INFO_VALID,
    MESSAGES,
    PSP_CMD_SHIFT,
    PSP_NOTIFY_INTR,
    PSP_START_COPY_FW,
    PSP_STATUS_READY,
    RUNTIME_CONFIG_PAYLOADS,
    WORK_BUFFER_SIZE,
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
        buf = bytearray(size)
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
        """The AIE4 init order (docs/spec/aie4.md §5); a VF skips PSP, SMU and work buffer,
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

    def stop(self) -> None:
        """The AIE4 stop: release the work buffer, RELEASE_TMR, SMU off."""
        if self.chip.function != "vf":
            self.call_ok(Opcode.RELEASE_DRAM_WORK_BUFFER)
            if self.psp_exec(PspCmd.RELEASE_TMR) != 0:
                raise DriverError("EINVAL", "RELEASE_TMR failed")
            self.smu_ok(SmuCmd.POWER_OFF)
        self.mgmt = None
