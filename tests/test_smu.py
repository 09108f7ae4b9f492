"""SMU: power, DPM levels, clock requests, edge semantics and error responses."""

from __future__ import annotations

import pytest

from xdna_emu.chips import chip_names
from xdna_emu.fw.messages import SmuCmd, SmuResp
from xdna_emu.testing.pydriver import PyDriver, make_test_device

CHIPS = [c for c in ("npu4", "npu1") if c in chip_names()]


@pytest.fixture(params=CHIPS)
def drv(request) -> PyDriver:
    return PyDriver(make_test_device(request.param))


def test_smu_power_sequence(drv: PyDriver) -> None:
    assert not drv.device.smu.powered
    assert drv.smu_exec(SmuCmd.POWER_OFF) == (SmuResp.OK, 0)
    assert drv.smu_exec(SmuCmd.POWER_ON) == (SmuResp.OK, 0)
    assert drv.device.status()["smu"]["power"] == "on"
    assert drv.smu_exec(SmuCmd.POWER_ON)[0] == SmuResp.OK
    assert drv.smu_exec(SmuCmd.POWER_OFF)[0] == SmuResp.OK
    assert drv.device.status()["smu"]["power"] == "off"


@pytest.mark.parametrize("cmd", [SmuCmd.SET_MPNPUCLK_FREQ, SmuCmd.SET_HCLK_FREQ,
                                 SmuCmd.SET_SOFT_DPMLEVEL, SmuCmd.SET_HARD_DPMLEVEL])
def test_smu_rejects_commands_while_off(drv: PyDriver, cmd: SmuCmd) -> None:
    assert drv.smu_exec(cmd, 0)[0] == SmuResp.REJECTED_PREREQ


def test_smu_unknown_command(drv: PyDriver) -> None:
    assert drv.smu_exec(0x42)[0] == SmuResp.UNKNOWN_CMD
    drv.smu_start()
    assert drv.smu_exec(0)[0] == SmuResp.UNKNOWN_CMD
    assert drv.device.stats["smu_errors"] == 2


def test_smu_dpm_levels(drv: PyDriver) -> None:
    drv.smu_start()
    levels = drv.chip.dpm_levels
    for lv in range(len(levels)):
        assert drv.smu_exec(SmuCmd.SET_HARD_DPMLEVEL, lv)[0] == SmuResp.OK
        assert drv.smu_exec(SmuCmd.SET_SOFT_DPMLEVEL, lv)[0] == SmuResp.OK
        st = drv.device.status()["smu"]
        assert (st["npuclk_mhz"], st["hclk_mhz"]) == levels[lv]
        assert st["dpm_level"] == lv == st["hard_dpm_level"]
    assert drv.smu_exec(SmuCmd.SET_SOFT_DPMLEVEL, len(levels))[0] == SmuResp.FAIL
    assert drv.smu_exec(SmuCmd.SET_HARD_DPMLEVEL, 0xFFFFFFFF)[0] == SmuResp.FAIL
    assert drv.device.status()["smu"]["dpm_level"] == len(levels) - 1


def test_smu_clock_requests_pick_from_table(drv: PyDriver) -> None:
    drv.smu_start()
    npu_clocks = sorted({lv[0] for lv in drv.chip.dpm_levels})
    h_clocks = sorted({lv[1] for lv in drv.chip.dpm_levels})
    assert drv.smu_exec(SmuCmd.SET_MPNPUCLK_FREQ, npu_clocks[1]) == (SmuResp.OK, npu_clocks[1])
    assert drv.smu_exec(SmuCmd.SET_MPNPUCLK_FREQ, npu_clocks[1] + 1) == (SmuResp.OK, npu_clocks[1])
    assert drv.smu_exec(SmuCmd.SET_MPNPUCLK_FREQ, 1) == (SmuResp.OK, npu_clocks[0])
    assert drv.smu_exec(SmuCmd.SET_MPNPUCLK_FREQ, 99999) == (SmuResp.OK, npu_clocks[-1])
    assert drv.smu_exec(SmuCmd.SET_HCLK_FREQ, 99999) == (SmuResp.OK, h_clocks[-1])
    st = drv.device.status()["smu"]
    assert (st["npuclk_mhz"], st["hclk_mhz"]) == (npu_clocks[-1], h_clocks[-1])
    assert st["dpm_level"] == len(drv.chip.dpm_levels) - 1


def test_smu_set_dpm_driver_method(drv: PyDriver) -> None:
    drv.smu_start()
    drv.set_dpm(0)
    st = drv.device.status()["smu"]
    assert (st["npuclk_mhz"], st["hclk_mhz"]) == drv.chip.dpm_levels[0]


def test_smu_needs_intr_edge(drv: PyDriver) -> None:
    drv.smu_start()
    n = drv.device.stats["smu_cmds"]
    drv.write_role("smu.resp", 0)
    drv.write_role("smu.cmd", SmuCmd.POWER_OFF)
    drv.write_role("smu.intr", 1)  # still 1 from the last exec
    assert drv.read_role("smu.resp") == 0 and drv.device.smu.powered
    drv.write_role("smu.intr", 0)
    drv.write_role("smu.intr", 1)
    assert drv.read_role("smu.resp") == SmuResp.OK and not drv.device.smu.powered
    assert drv.device.stats["smu_cmds"] == n + 1


def test_smu_power_off_stops_firmware(drv: PyDriver) -> None:
    drv.bring_up(async_events=False)
    assert drv.device.fw is not None
    drv.smu_ok(SmuCmd.POWER_OFF)
    assert drv.device.fw is None and not drv.device.mailbox.channels
    assert drv.device.psp.state == "idle"


def test_pmf_metrics_follow_power_clocks_and_busy_columns() -> None:
    """The platform firmware's model (docs/spec/uapi.md §6 "Sensors"): nothing while powered
    off, the clocks' share while idle, each busy column's share on top, 8 columns at most."""
    from xdna_emu.fw.pmf import PMF_COLUMNS, sample

    off = sample(False, 1267, 1800, 8, {0, 1})
    assert (off.power_mw, off.busy) == (0, (0,) * 8)
    idle = sample(True, 1267, 1800, 8, set())
    assert idle.power_mw == (1267 + 1800) // 4 and idle.busy == (0,) * 8
    two = sample(True, 1267, 1800, 8, {2, 3})
    assert two.power_mw == idle.power_mw + 2 * 1800 // 4
    assert two.busy == (0, 0, 100, 100, 0, 0, 0, 0)
    assert len(sample(True, 400, 400, 12, {11}).busy) == PMF_COLUMNS
    assert sample(True, 65535, 65535, 8, set(range(8))).power_mw == 0xFFFF
