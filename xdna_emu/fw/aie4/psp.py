"""The emulated AIE4 PSP: the npu image and the cert image, AIE4 register protocol.

Protocol (docs/spec/aie4.md §3): STATUS bit31 (ready) is set from reset, and the driver polls
it before it writes. It writes ARG0, ARG1 and ARG2 = command << 24 | argument; ARG2 is the
same register as CMD and STATUS, so that write clears the ready bit. Then INTR=0 and INTR=
PSP_NOTIFY_INTR: that write runs the command, RESP (= ARG0) gets the status and STATUS bit31
is set again. States: ``idle`` -> VALIDATE -> ``validated`` -> VALIDATE_CERT -> ``certified``
-> START -> ``running``; RELEASE_TMR or SMU power-off go back to ``idle``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from ...chips import Chip
from ...iommu import Iommu, IommuFault
from ...regio import RegisterFile
from ..image import FirmwareImage, ImageError, parse_cert
from ..psp import PspBlock
from .messages import (
    CERT_ALIGN,
    PSP_ARG_MASK,
    PSP_CMD_SHIFT,
    PSP_NOTIFY_INTR,
    PSP_START_COPY_FW,
    PSP_STATUS_READY,
    PspCmd,
    PspStatus,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Aie4PspState:
    """Saved AIE4 PSP state (docs/spec/device.md §4)."""

    VERSION: ClassVar[int] = 1
    state: str
    image: FirmwareImage | None
    cert: FirmwareImage | None
    intr: int
    last_cmd: int | None
    last_resp: int | None


class Aie4PspBlock(PspBlock):
    """AIE2's PSP with the AIE4 register protocol and the VALIDATE_CERT step."""

    def __init__(self, chip: Chip, regs: RegisterFile, iommu: Iommu, stats: dict[str, int],
                 powered: Callable[[], bool],
                 start_fw: Callable[[FirmwareImage, FirmwareImage], int],
                 stop_fw: Callable[[], None]) -> None:
        self.cert: FirmwareImage | None = None
        super().__init__(chip, regs, iommu, stats, powered, lambda img: 0, stop_fw)
        self.start_both = start_fw

    def reset(self) -> None:
        super().reset()
        self.cert = None

    def ready(self) -> None:
        """Power-on register state: the PSP is ready for a command (the driver polls this)."""
        self.regs.write_role("psp.status", PSP_STATUS_READY)

    def save(self) -> Aie4PspState:  # type: ignore[override]
        return Aie4PspState(self.state, self.image, self.cert, self.intr, self.last_cmd,
                            self.last_resp)

    def load(self, st: Aie4PspState) -> None:  # type: ignore[override]
        self.state, self.image, self.cert, self.intr = st.state, st.image, st.cert, st.intr
        self.last_cmd, self.last_resp = st.last_cmd, st.last_resp

    def power_lost(self) -> None:
        super().power_lost()
        self.cert = None

    def on_intr(self, value: int) -> None:
        """INTR written: PSP_NOTIFY_INTR after anything else runs the command in ARG2."""
        edge = self.intr != PSP_NOTIFY_INTR and value == PSP_NOTIFY_INTR
        self.intr = value
        if not edge:
            return
        arg2 = self.regs.read_role("psp.arg2")
        cmd, arg = arg2 >> PSP_CMD_SHIFT, arg2 & PSP_ARG_MASK
        resp = self.execute(cmd, self.regs.read_role("psp.arg0"),
                            self.regs.read_role("psp.arg1"), arg)
        self.stats["psp_cmds"] += 1
        if resp != PspStatus.OK:
            self.stats["psp_errors"] += 1
        self.last_cmd, self.last_resp = cmd, int(resp)
        self.regs.write_role("psp.resp", int(resp))
        self.regs.write_role("psp.status", (cmd << PSP_CMD_SHIFT) | PSP_STATUS_READY)

    def execute(self, cmd: int, arg0: int, arg1: int, arg2: int) -> int:
        if not self.powered():
            return PspStatus.NO_POWER
        if cmd == PspCmd.VALIDATE:
            self.cert = None
            return self._validate(arg0 | arg1 << 32, arg2)
        if cmd == PspCmd.VALIDATE_CERT:
            return self._validate_cert(arg0 | arg1 << 32, arg2)
        if cmd == PspCmd.START:
            if self.state == "validated":
                return PspStatus.NO_CERT
            if self.state != "certified" or self.image is None or self.cert is None:
                return PspStatus.BAD_STATE
            if arg0 != PSP_START_COPY_FW:
                return PspStatus.BAD_ARG
            status = self.start_both(self.image, self.cert)
            if status == PspStatus.OK:
                self.state = "running"
            return status
        if cmd == PspCmd.RELEASE_TMR:
            if self.state == "running":
                self.stop_fw()
            self.state, self.image, self.cert = "idle", None, None
            return PspStatus.OK
        return PspStatus.UNKNOWN_CMD

    def _validate_cert(self, addr: int, size: int) -> int:
        if self.state != "validated" or self.image is None:
            return PspStatus.BAD_STATE
        if addr % CERT_ALIGN:
            return PspStatus.CERT_ALIGN
        try:
            data = self.iommu.read(addr, size, 0) if size else b""
        except IommuFault as exc:
            self.stats["iommu_faults"] += 1
            log.warning("PSP VALIDATE_CERT: %s", exc)
            return PspStatus.DMA_FAULT
        try:
            self.cert = parse_cert(data, self.chip)
        except ImageError as exc:
            log.warning("PSP VALIDATE_CERT: %s", exc)
            return exc.code
        self.state = "certified"
        return PspStatus.OK

    def status(self) -> dict:
        out = super().status()
        out["cert"] = self.cert.version_str if self.cert is not None else None
        return out
