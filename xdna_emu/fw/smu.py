"""The emulated SMU (MP1): NPU power and clocks.

Driver protocol (docs/spec/firmware.md §4): RESP=0, ARG, CMD are written, then INTR=0, INTR=1. On the 0->1
edge of INTR we latch CMD and ARG, execute, write OUT (which aliases ARG) and then RESP
(1 = OK). While the NPU is powered off only POWER_ON is accepted; POWER_OFF also stops the
firmware. npu1 sets clocks in MHz (SET_MPNPUCLK_FREQ / SET_HCLK_FREQ; OUT = the clock
chosen from the DPM table), the npu4 family sets DPM levels; both kinds are accepted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from ..chips import Chip
from ..regio import RegisterFile
from .messages import SmuCmd, SmuResp

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SmuState:
    """Saved SMU state (docs/spec/device.md §4)."""

    VERSION: ClassVar[int] = 1
    powered: bool
    intr: int
    hard_level: int
    soft_level: int
    npuclk: int
    hclk: int


class SmuBlock:
    def __init__(self, chip: Chip, regs: RegisterFile, stats: dict[str, int],
                 on_power_off: Callable[[], None]) -> None:
        self.chip, self.regs, self.stats, self.on_power_off = chip, regs, stats, on_power_off
        self.levels = chip.dpm_levels or ((0, 0),)
        for key in ("smu_cmds", "smu_errors"):
            stats.setdefault(key, 0)
        self.reset()

    def reset(self) -> None:
        self.powered = False
        self.intr = 0
        self.hard_level = 0
        self.soft_level = 0
        self.npuclk, self.hclk = self.levels[0]

    def save(self) -> SmuState:
        return SmuState(self.powered, self.intr, self.hard_level, self.soft_level,
                        self.npuclk, self.hclk)

    def load(self, st: SmuState) -> None:
        self.powered, self.intr = st.powered, st.intr
        self.hard_level, self.soft_level, self.npuclk, self.hclk = (
            st.hard_level, st.soft_level, st.npuclk, st.hclk)

    def on_intr(self, value: int) -> None:
        edge = self.intr == 0 and value == 1
        self.intr = value
        if not edge:
            return
        cmd = self.regs.read_role("smu.cmd")
        arg = self.regs.read_role("smu.arg")
        t0 = time.monotonic_ns()
        resp, out = self.execute(cmd, arg)
        if log.isEnabledFor(logging.DEBUG):
            name, rname = _name(SmuCmd, cmd), _name(SmuResp, resp)
            power = {"powered": int(self.powered), "dpm_level": self.soft_level,
                     "npuclk_mhz": self.npuclk, "hclk_mhz": self.hclk}
            log.debug("SMU %s arg %#x -> %s out %#x", name, arg, rname, out,
                      extra={"trace": {"kind": "smu", "cmd": name, "t0_ns": t0, "resp": rname,
                                       "arg": f"{arg:#x}", "out": f"{out:#x}", "power": power}})
        self.stats["smu_cmds"] += 1
        if resp != SmuResp.OK:
            self.stats["smu_errors"] += 1
        self.regs.write_role("smu.out", out)
        self.regs.write_role("smu.resp", int(resp))

    def execute(self, cmd: int, arg: int) -> tuple[int, int]:
        """Run one command; return (RESP, OUT)."""
        if cmd == SmuCmd.POWER_ON:
            self.powered = True
            return SmuResp.OK, 0
        if cmd not in SmuCmd.__members__.values():
            return SmuResp.UNKNOWN_CMD, 0
        if not self.powered:
            if cmd == SmuCmd.POWER_OFF:
                return SmuResp.OK, 0
            return SmuResp.REJECTED_PREREQ, 0
        if cmd == SmuCmd.POWER_OFF:
            self.powered = False
            self.on_power_off()
            return SmuResp.OK, 0
        if cmd in (SmuCmd.SET_MPNPUCLK_FREQ, SmuCmd.SET_HCLK_FREQ):
            col = 0 if cmd == SmuCmd.SET_MPNPUCLK_FREQ else 1
            clocks = sorted({lv[col] for lv in self.levels})
            below = [c for c in clocks if c <= arg]
            mhz = below[-1] if below else clocks[0]
            if col == 0:
                self.npuclk = mhz
            else:
                self.hclk = mhz
            self.soft_level = self.hard_level = self._level_of_clocks()
            return SmuResp.OK, mhz
        # SET_SOFT_DPMLEVEL / SET_HARD_DPMLEVEL
        if arg >= len(self.chip.dpm_levels):
            return SmuResp.FAIL, 0
        if cmd == SmuCmd.SET_HARD_DPMLEVEL:
            self.hard_level = arg
        else:
            self.soft_level = arg
        self.npuclk, self.hclk = self.levels[arg]
        return SmuResp.OK, arg

    def _level_of_clocks(self) -> int:
        """The highest DPM level whose clocks do not exceed the current ones."""
        best = 0
        for i, (npu, h) in enumerate(self.levels):
            if npu <= self.npuclk and h <= self.hclk:
                best = i
        return best

    def status(self) -> dict:
        return {
            "power": "on" if self.powered else "off",
            "dpm_level": self.soft_level, "hard_dpm_level": self.hard_level,
            "npuclk_mhz": self.npuclk, "hclk_mhz": self.hclk,
        }  # fmt: skip


def _name(table: type, value: int) -> str:
    """A command or response by its table name (docs/spec/firmware.md §4), else in hex."""
    try:
        return str(table(value).name)
    except ValueError:
        return f"{value:#x}"
