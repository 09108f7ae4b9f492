"""A small pure-Python stand-in for the amdxdna driver, talking to an in-process PciFunction.

It follows the driver's algorithms (docs/spec/firmware.md §3-§6, §9): psp_exec, smu_exec, the
mailbox send (TOMBSTONE wrap, ENOSPC rules) and receive (tail checks, TOMBSTONE, size
checks) with cyclic 0..255 ids tagged 0x1D, and the AIE2 bring-up order. Tests use it to
drive the firmware model exactly as the real driver would, without the daemon or the shim.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..chips import Chip
from ..clock import Clock, VirtualClock
from ..device import NpuDevice
from ..fw.image import build_image
from ..fw.messages import (
    LAYOUTS,
    MGMT_INFO,
    MGMT_INFO_MAGIC,
    MSG_HEADER,
    MSG_ID_MAGIC,
    MSG_ID_MAGIC_MASK,
    PSP_START_COPY_FW,
    PSP_STATUS_READY,
    TOMBSTONE,
    Opcode,
    PspCmd,
    SmuCmd,
    SmuResp,
    sz_ver,
)
from ..iommu import DMA_READ, DMA_WRITE, Iommu
from ..irq import CallbackWires
from ..pci.function import Observer, PciFunction
from ..regio import RegisterFile

_U32 = struct.Struct("<I")
FW_IOVA = 0x1_0000_0000  # where test images are DMA-mapped (pasid 0), 64 KiB aligned
ALIGN = 0x10000


class DriverError(Exception):
    """What the driver would turn into an errno (``errno`` name kept for asserts)."""

    def __init__(self, errno: str, message: str) -> None:
        super().__init__(f"{errno}: {message}")
        self.errno = errno


class _RaisedLog(Observer):
    def __init__(self, out: list[int]) -> None:
        self.out = out

    def irq(self, vector: int) -> None:
        self.out.append(vector)


@dataclass
class InProcessDevice:
    """A PCI function driven in-process, with a log of the vectors its device raised
    (``irqs``, before MSI-X masking) and of those MSI-X delivered (``delivered``)."""

    fn: PciFunction
    irqs: list[int] = field(default_factory=list)
    delivered: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.fn.observe(_RaisedLog(self.irqs))

    @property
    def chip(self) -> Chip:
        return self.fn.chip

    @property
    def device(self) -> NpuDevice:
        return self.fn.device

    @property
    def iommu(self) -> Iommu:
        return self.fn.iommu

    @property
    def regs(self) -> RegisterFile:
        return self.fn.regs

    @property
    def clock(self) -> Clock:
        return self.fn.clock


def make_test_device(chip: str | Chip, clock: Clock | None = None,
                     bars: Mapping[int, Any] | None = None) -> InProcessDevice:
    """A complete function on anonymous memory (or the caller's ``bars``) and a virtual
    clock, enabled as the PCI core would before probing (memory decoding, bus mastering)."""
    delivered: list[int] = []
    fn = PciFunction(chip, bars=bars, wires=CallbackWires(delivered.append),
                     clock=clock or VirtualClock())
    return InProcessDevice(fn.enable(), delivered=delivered)


@dataclass
class Response:
    opcode: int
    id: int
    payload: bytes


class DriverChannel:
    """Host side of one mailbox channel, given the firmware-published addresses."""

    def __init__(self, drv: PyDriver, x2i: tuple[int, int, int, int],
                 i2x: tuple[int, int, int, int]) -> None:
        # each tuple: (tail reg, head reg, buf dev addr, buf size)
        self.drv = drv
        chip = drv.chip
        self.x2i_tail_reg, self.x2i_head_reg, x2i_buf, self.x2i_size = x2i
        self.i2x_tail_reg, self.i2x_head_reg, i2x_buf, self.i2x_size = i2x
        for sz in (self.x2i_size, self.i2x_size):
            if sz == 0 or sz & (sz - 1):
                raise DriverError("EINVAL", f"ring size {sz:#x} is not a power of two")
        self.intr_reg = self.i2x_head_reg + 4
        self.x2i = drv.regs.span(x2i_buf, self.x2i_size)
        self.i2x = drv.regs.span(i2x_buf, self.i2x_size)
        for reg in (self.x2i_tail_reg, self.x2i_head_reg, self.i2x_tail_reg,
                    self.i2x_head_reg, self.intr_reg):
            chip.dev_to_bar(reg)  # must resolve
        self.x2i_tail = drv.regs.read_dev(self.x2i_tail_reg)
        self.i2x_head = drv.regs.read_dev(self.i2x_head_reg)
        self.next_id = 0
        self.bad_state = False
        self.tx_wraps = 0  # TOMBSTONEs written on x2i
        self.rx_wraps = 0  # TOMBSTONEs followed on i2x

    def _write_reg(self, addr: int, value: int) -> None:
        self.drv.write_dev(addr, value)

    # -- send (x2i) --------------------------------------------------------------------
    def send(self, opcode: int, payload: bytes, msg_id: int | None = None) -> int:
        if len(payload) & 3 or not payload:
            raise DriverError("EINVAL", "payload must be a non-empty multiple of 4 bytes")
        if msg_id is None:
            msg_id = MSG_ID_MAGIC | self.next_id
            self.next_id = (self.next_id + 1) & 0xFF
        pkt = MSG_HEADER.pack(len(payload), sz_ver(len(payload)), msg_id, opcode) + payload
        head = self.drv.regs.read_dev(self.x2i_head_reg)
        tail, size, n = self.x2i_tail, self.x2i_size, len(pkt)
        if tail < head and tail + n >= head:
            raise DriverError("ENOSPC", "x2i ring full")
        if tail >= head and tail + n > size - 4:
            if n >= head:
                raise DriverError("ENOSPC", "x2i ring full (wrap)")
            _U32.pack_into(self.x2i, tail, TOMBSTONE)
            tail = 0
            self.tx_wraps += 1
        self.x2i[tail : tail + n] = pkt
        self.x2i_tail = tail + n
        self._write_reg(self.x2i_tail_reg, self.x2i_tail)
        return msg_id

    # -- receive (i2x) -----------------------------------------------------------------
    def recv_one(self) -> Response | None:
        """One step of the driver's receive loop; None when the ring is empty."""
        tail = self.drv.regs.read_dev(self.i2x_tail_reg)
        head, size = self.i2x_head, self.i2x_size
        if tail > size or tail & 3:
            self.bad_state = True
            raise DriverError("EINVAL", f"i2x tail {tail:#x} invalid")
        if head == tail:
            return None
        if head == size:
            head = 0
        word = _U32.unpack_from(self.i2x, head)[0]
        if word == TOMBSTONE:
            if head < tail:
                self.bad_state = True
                raise DriverError("EINVAL", "TOMBSTONE ahead of tail")
            self.i2x_head = 0
            self.rx_wraps += 1
            self._write_reg(self.i2x_head_reg, 0)
            return self.recv_one()
        total, szv, mid, opcode = MSG_HEADER.unpack_from(self.i2x, head)
        msg_size = MSG_HEADER.size + total
        if not total or total & 3 or msg_size > size - head or (head < tail and msg_size > tail - head):
            self.bad_state = True
            raise DriverError("EINVAL", f"bad i2x message size {total:#x}")
        if mid & MSG_ID_MAGIC_MASK != MSG_ID_MAGIC:
            self.bad_state = True
            raise DriverError("EINVAL", f"bad response id {mid:#x}")
        payload = bytes(self.i2x[head + MSG_HEADER.size : head + msg_size])
        self.i2x_head = head + msg_size
        self._write_reg(self.i2x_head_reg, self.i2x_head)
        return Response(opcode, mid, payload)

    def drain(self) -> list[Response]:
        """The RX worker: ack the interrupt, drain, repeat while it is set again."""
        out: list[Response] = []
        while True:
            self._write_reg(self.intr_reg, 0)
            while (r := self.recv_one()) is not None:
                out.append(r)
            if self.drv.regs.read_dev(self.intr_reg) == 0:
                return out

    def request(self, opcode: int, payload: bytes, resp_size: int) -> bytes:
        """Send and wait for the reply with our id; check its size like the driver."""
        mid = self.send(opcode, payload)
        self.drv.fn.poll()
        found: bytes | None = None
        for r in self.drain():
            if r.id != mid:
                self.drv.unsolicited.append(r)
            elif len(r.payload) != resp_size:
                raise DriverError("EINVAL", f"response {len(r.payload)} B, expected {resp_size}")
            else:
                found = r.payload
        if found is not None:
            return found
        raise DriverError("ETIME", f"no response to opcode {opcode:#x} id {mid:#x}")


class PyDriver:
    """Driver-side helpers over an in-process PciFunction."""

    def __init__(self, td: InProcessDevice) -> None:
        self.td = td
        self.fn = td.fn
        self.chip, self.device, self.regs, self.iommu = td.chip, td.device, td.regs, td.iommu
        self.mgmt: DriverChannel | None = None
        self.info: dict[str, int] = {}
        self.unsolicited: list[Response] = []

    # -- registers -----------------------------------------------------------------------
    def write_role(self, role: str, value: int) -> None:
        self.fn.mmio_write(*self.regs.loc(role), value)

    def read_role(self, role: str) -> int:
        return self.regs.read_role(role)

    def write_dev(self, addr: int, value: int) -> None:
        self.fn.mmio_write(*self.chip.dev_to_bar(addr), value)

    # -- PSP / SMU -----------------------------------------------------------------------
    def psp_exec(self, cmd: int, arg0: int = 0, arg1: int = 0, arg2: int = 0) -> int:
        """CMD, ARG0..2, INTR=0, INTR=1, then STATUS bit31; returns RESP."""
        for role, val in (("psp.cmd", cmd), ("psp.arg0", arg0), ("psp.arg1", arg1),
                          ("psp.arg2", arg2), ("psp.intr", 0), ("psp.intr", 1)):
            self.write_role(role, val)
        self.fn.poll()
        if not self.read_role("psp.status") & PSP_STATUS_READY:
            raise DriverError("ETIME", f"PSP command {cmd} not ready")
        return self.read_role("psp.resp")

    def smu_exec(self, cmd: int, arg: int = 0) -> tuple[int, int]:
        """RESP=0, ARG, CMD, INTR=0, INTR=1, then RESP != 0; returns (RESP, OUT)."""
        for role, val in (("smu.resp", 0), ("smu.arg", arg), ("smu.cmd", cmd),
                          ("smu.intr", 0), ("smu.intr", 1)):
            self.write_role(role, val)
        self.fn.poll()
        resp = self.read_role("smu.resp")
        if resp == 0:
            raise DriverError("ETIME", f"SMU command {cmd} no response")
        return resp, self.read_role("smu.out")

    def smu_ok(self, cmd: int, arg: int = 0) -> int:
        resp, out = self.smu_exec(cmd, arg)
        if resp != SmuResp.OK:
            raise DriverError("EINVAL", f"SMU command {cmd} failed: {resp:#x}")
        return out

    # -- firmware ------------------------------------------------------------------------
    #: zeroed host memory of ``size`` bytes for an image (a fuzzer's tracked pages)
    image_buffer: Callable[[int], Any] = bytearray
    #: zeroed host memory of ``size`` bytes for another buffer the driver maps at
    #: (pasid, iova) (a fuzzer's tracked pages: docs/spec/fuzzing.md §9)
    host_buffer: Callable[[int, int, int], Any] = staticmethod(
        lambda pasid, iova, size: bytearray(size))

    def map_image(self, image: bytes, iova: int = FW_IOVA) -> int:
        """Copy the image into a 64 KiB-rounded DMA buffer (pasid 0); return its size."""
        size = (len(image) + ALIGN - 1) // ALIGN * ALIGN
        space = self.iommu.spaces.get(0)
        old = space.find(iova) if space else None
        if old is not None:  # reuse the slot (a previous load, maybe by another PyDriver)
            self.fn.dma_unmap(0, old.address, old.size)
        buf = self.image_buffer(size)
        buf[: len(image)] = image
        self.fn.dma_map(0, iova, size, DMA_READ | DMA_WRITE, None, mem=buf)
        return size

    def psp_start(self, image: bytes | None = None) -> None:
        image = image if image is not None else build_image(self.chip)
        size = self.map_image(image)
        for cmd, args in ((PspCmd.VALIDATE, (FW_IOVA & 0xFFFFFFFF, FW_IOVA >> 32, size)),
                          (PspCmd.START, (PSP_START_COPY_FW, 0, 0))):
            resp = self.psp_exec(cmd, *args)
            if resp != 0:
                raise DriverError("EINVAL", f"PSP {cmd.name} failed: {resp:#x}")

    def smu_start(self) -> None:
        self.smu_ok(SmuCmd.POWER_OFF)
        self.smu_ok(SmuCmd.POWER_ON)

    def set_dpm(self, level: int) -> None:
        if self.chip.smu.dpm_method == "clock":
            npu, h = self.chip.dpm_levels[level]
            self.smu_ok(SmuCmd.SET_MPNPUCLK_FREQ, npu)
            self.smu_ok(SmuCmd.SET_HCLK_FREQ, h)
        else:
            self.smu_ok(SmuCmd.SET_HARD_DPMLEVEL, level)
            self.smu_ok(SmuCmd.SET_SOFT_DPMLEVEL, level)

    def wait_fw_alive(self) -> dict[str, int]:
        """Read FW_ALIVE, parse mgmt_mbox_chann_info, clear FW_ALIVE, open the mgmt channel."""
        addr = self.read_role("sram.fw_alive")
        if addr == 0:
            raise DriverError("ETIME", "firmware never came alive")
        vals = MGMT_INFO.unpack(bytes(self.regs.span(addr, MGMT_INFO.size)))
        keys = ("x2i_tail", "x2i_head", "x2i_buf", "x2i_buf_sz", "i2x_tail", "i2x_head",
                "i2x_buf", "i2x_buf_sz", "magic", "msi_id", "prot_major", "prot_minor")
        info = dict(zip(keys, vals, strict=False))
        if info["magic"] != MGMT_INFO_MAGIC:
            raise DriverError("EINVAL", f"bad mgmt info magic {info['magic']:#x}")
        self.write_role("sram.fw_alive", 0)
        major, minor = info["prot_major"], info["prot_minor"]
        if major != self.chip.protocol_major or minor < self.chip.protocol_min_minor:
            raise DriverError("EINVAL", f"unsupported firmware protocol {major}.{minor}")
        self.info = info
        self.mgmt = DriverChannel(
            self, (info["x2i_tail"], info["x2i_head"], info["x2i_buf"], info["x2i_buf_sz"]),
            (info["i2x_tail"], info["i2x_head"], info["i2x_buf"], info["i2x_buf_sz"]))
        return info

    @property
    def protocol(self) -> tuple[int, int]:
        return self.info["prot_major"], self.info["prot_minor"]

    def has(self, op: Opcode) -> bool:
        return self.chip.has_feature(op.name, self.protocol)

    # -- mgmt messages -------------------------------------------------------------------
    def msg(self, opcode: Opcode, *fields: Any) -> tuple:
        """Send one mgmt message with its layout; return the decoded response fields."""
        lay = LAYOUTS[opcode]
        assert self.mgmt is not None
        resp = self.mgmt.request(opcode, lay.req.pack(*fields), lay.resp.size)
        return lay.resp.unpack(resp)

    def msg_ok(self, opcode: Opcode, *fields: Any) -> tuple:
        out = self.msg(opcode, *fields)
        if out[0] != 0:
            raise DriverError("EINVAL", f"{opcode.name} status {out[0]:#x}")
        return out

    def bring_up(self, image: bytes | None = None, async_events: bool = True) -> dict[str, Any]:
        """The driver's bring-up order (docs/spec/firmware.md §9); returns what it learned."""
        self.smu_start()
        self.psp_start(image)
        self.wait_fw_alive()
        rc = self.chip.runtime_config
        for ctype, value in rc.init if rc else ():
            self.msg_ok(Opcode.SET_RUNTIME_CONFIG, ctype, value)
        if rc and rc.fine_preempt is not None and self.chip.has_feature("PREEMPT", self.protocol):
            self.msg_ok(Opcode.SET_RUNTIME_CONFIG, rc.fine_preempt, 1)
        self.msg_ok(Opcode.ASSIGN_MGMT_PASID, 0, 0)
        if self.has(Opcode.UPDATE_PROPERTY) and "UPDATE_PROPERTY" in self.chip.features:
            self.msg_ok(Opcode.UPDATE_PROPERTY, 0, 0xFF, bytes(7), 30000, 0)
        self.msg_ok(Opcode.SUSPEND, 0)
        if not self.read_role("psp.pwaitmode") & 1:
            raise DriverError("ETIME", "PWAITMODE not set after SUSPEND")
        self.msg_ok(Opcode.RESUME, 0)
        if self.has(Opcode.CALIBRATE_TIME) and "CALIBRATE_TIME" in self.chip.features:
            self.msg_ok(Opcode.CALIBRATE_TIME, 1_700_000_000_000_000_000)
        self.set_dpm(len(self.chip.dpm_levels) - 1)
        for ctype in rc.clock_gating if rc else ():
            self.msg_ok(Opcode.SET_RUNTIME_CONFIG, ctype, 1)
        fw_version = self.msg_ok(Opcode.GET_FIRMWARE_VERSION, 0)[1:]
        aie_version = self.msg_ok(Opcode.QUERY_AIE_VERSION, 0)[1:]
        tile = self.msg_ok(Opcode.QUERY_AIE_TILE_INFO, 0)
        cols = tile[4]
        if async_events:
            assert self.mgmt is not None
            for i in range(cols):
                self.mgmt.send(Opcode.REGISTER_ASYNC_EVENT_MSG,
                               LAYOUTS[Opcode.REGISTER_ASYNC_EVENT_MSG].req.pack(0x2_0000_0000 + i * 0x2000, 0x2000))
            self.msg_ok(Opcode.GET_FIRMWARE_VERSION, 0)
        return {"fw_version": fw_version, "aie_version": aie_version, "tile": tile, "cols": cols}
