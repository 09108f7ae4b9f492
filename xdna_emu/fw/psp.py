"""The emulated PSP (MP0) of AIE2 chips: firmware image validation and start.

Driver protocol (docs/spec/firmware.md §3): CMD, ARG0..2 are written, then INTR=0, INTR=1. On the 0->1 edge
of INTR we run the command, write RESP (which aliases ARG0) and set STATUS bit31 (STATUS
aliases CMD, so the driver's CMD write cleared it). Repeated INTR=1 writes are no edge.
States: ``idle`` -> VALIDATE -> ``validated`` -> START -> ``running``; RELEASE_TMR or SMU
power-off go back to ``idle``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from ..chips import Chip
from ..iommu import Iommu, IommuFault
from ..regio import RegisterFile
from .image import FirmwareImage, ImageError, parse_image
from .messages import PSP_FW_ALIGN, PSP_START_COPY_FW, PSP_STATUS_READY, PspCmd, PspStatus

log = logging.getLogger(__name__)

IMAGE_ALIGN = PSP_FW_ALIGN
IMAGE_MAX = 16 << 20  # emulator-chosen upper bound for VALIDATE


@dataclass(frozen=True)
class PspState:
    """Saved PSP state (docs/spec/device.md §4); the validated image is plain data."""

    VERSION: ClassVar[int] = 2
    state: str
    image: FirmwareImage | None
    intr: int
    last_cmd: int | None
    last_resp: int | None
    #: why the last failed command failed, in words (reaches the client's error)
    last_error: str | None = None


class PspBlock:
    def __init__(self, chip: Chip, regs: RegisterFile, iommu: Iommu, stats: dict[str, int],
                 powered: Callable[[], bool], start_fw: Callable[[FirmwareImage], int],
                 stop_fw: Callable[[], None]) -> None:
        self.chip, self.regs, self.iommu, self.stats = chip, regs, iommu, stats
        self.powered, self.start_fw, self.stop_fw = powered, start_fw, stop_fw
        for key in ("psp_cmds", "psp_errors", "iommu_faults"):
            stats.setdefault(key, 0)
        self.reset()

    def reset(self) -> None:
        self.state = "idle"
        self.image: FirmwareImage | None = None
        self.intr = 0
        self.last_cmd: int | None = None
        self.last_resp: int | None = None
        self.last_error: str | None = None
        self._why: str | None = None  # the detail behind the status execute() returns

    def save(self) -> PspState:
        return PspState(self.state, self.image, self.intr, self.last_cmd, self.last_resp,
                        self.last_error)

    def load(self, st: PspState) -> None:
        self.state, self.image, self.intr = st.state, st.image, st.intr
        self.last_cmd, self.last_resp, self.last_error = st.last_cmd, st.last_resp, st.last_error

    def power_lost(self) -> None:
        """The NPU lost power: the validated image in its memory is gone."""
        if self.state == "running":
            self.stop_fw()
        self.state, self.image = "idle", None

    def on_intr(self, value: int) -> None:
        edge = self.intr == 0 and value == 1
        self.intr = value
        if not edge:
            return
        cmd = self.regs.read_role("psp.cmd")
        args = [self.regs.read_role(r) for r in ("psp.arg0", "psp.arg1", "psp.arg2")]
        self._why = None
        t0 = time.monotonic_ns()
        resp = self.execute(cmd, *args)
        self.stats["psp_cmds"] += 1
        if resp != PspStatus.OK:
            self.stats["psp_errors"] += 1
            self.last_error = f"PSP {_name(PspCmd, cmd)}: {_name(PspStatus, resp)}" + (
                f": {self._why}" if self._why else "")
        if log.isEnabledFor(logging.DEBUG):
            name, rname = _name(PspCmd, cmd), _name(PspStatus, resp)
            log.debug("PSP %s arg %#x %#x %#x -> %s%s", name, *args, rname,
                      f" ({self._why})" if self._why else "",
                      extra={"trace": {"kind": "psp", "cmd": name, "t0_ns": t0, "resp": rname,
                                       "args": [f"{a:#x}" for a in args], "why": self._why}})
        self.last_cmd, self.last_resp = cmd, int(resp)
        self.regs.write_role("psp.resp", int(resp))
        self.regs.write_role("psp.status", self.regs.read_role("psp.status") | PSP_STATUS_READY)

    def execute(self, cmd: int, arg0: int, arg1: int, arg2: int) -> int:
        if not self.powered():
            return PspStatus.NO_POWER
        if cmd == PspCmd.VALIDATE:
            return self._validate(arg0 | arg1 << 32, arg2)
        if cmd == PspCmd.START:
            if self.state != "validated" or self.image is None:
                return PspStatus.BAD_STATE
            if arg0 != PSP_START_COPY_FW:
                return PspStatus.BAD_ARG
            status = self.start_fw(self.image)
            if status == PspStatus.OK:
                self.state = "running"
            return status
        if cmd == PspCmd.RELEASE_TMR:
            if self.state == "running":
                self.stop_fw()
            self.state, self.image = "idle", None
            return PspStatus.OK
        return PspStatus.UNKNOWN_CMD

    def _validate(self, addr: int, size: int) -> int:
        if self.state == "running":
            return PspStatus.BAD_STATE
        self.state, self.image = "idle", None
        if addr % IMAGE_ALIGN:
            return PspStatus.IMG_ALIGN
        if size == 0 or size % IMAGE_ALIGN or size > IMAGE_MAX:
            return PspStatus.IMG_SIZE
        try:
            data = self.iommu.read(addr, size, 0)
        except IommuFault as exc:
            self.stats["iommu_faults"] += 1
            log.warning("PSP VALIDATE: %s", exc)
            self._why = str(exc)
            return PspStatus.DMA_FAULT
        try:
            self.image = parse_image(data, self.chip)
        except ImageError as exc:
            log.warning("PSP VALIDATE: %s", exc)
            self._why = str(exc)
            return exc.code
        self.state = "validated"
        return PspStatus.OK

    def status(self) -> dict:
        return {"state": self.state, "last_cmd": self.last_cmd, "last_resp": self.last_resp,
                "last_error": self.last_error}


def _name(table: type, value: int) -> str:
    """A command or status by its table name (docs/spec/firmware.md §3), else in hex."""
    try:
        return str(table(value).name)
    except ValueError:
        return f"{value:#x}"
