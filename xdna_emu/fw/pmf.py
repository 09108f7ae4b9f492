"""The platform management firmware's NPU metrics (PMF, docs/spec/uapi.md §6 "Sensors").

On a real machine the AIE2 driver reads the NPU's power and per-column utilisation from
the PMF driver, which takes them from the platform firmware's metrics table. Here the
metrics come from the device's own state each time they are sampled: the clocks the SMU
runs at and the columns whose contexts have work in the firmware. The figures are an
emulator-defined model (documented in docs/spec/uapi.md §6), so they move with the device
as the real ones do, without claiming a real chip's watts.
"""

from __future__ import annotations

from dataclasses import dataclass

#: columns the metrics table carries (its npu_busy array); a larger array reports the first
PMF_COLUMNS = 8
#: the model: milliwatts per MHz of the two clocks while the NPU is powered, divided by this
IDLE_MW_DIV = 4
#: and per busy column, milliwatts per MHz of the H clock divided by this
BUSY_MW_DIV = 4
BUSY_PERCENT = 100
U16_MAX = 0xFFFF


@dataclass(frozen=True)
class NpuMetrics:
    """One sample of the metrics table: mW, busy % per column, clocks in MHz."""

    power_mw: int
    busy: tuple[int, ...]
    npuclk_mhz: int
    hclk_mhz: int


def sample(powered: bool, npuclk_mhz: int, hclk_mhz: int, cols: int,
           busy_cols: set[int]) -> NpuMetrics:
    """The metrics of a device whose SMU is ``powered`` at those clocks, with work on
    ``busy_cols``: a powered-off NPU draws 0 mW and is idle; a powered one draws
    (npuclk + hclk) / 4 mW plus hclk / 4 mW per busy column, and a column is 100 % busy
    while one of its contexts has work queued or is stalled on a hang, else 0 %."""
    n = min(cols, PMF_COLUMNS)
    if not powered:
        return NpuMetrics(0, (0,) * n, 0, 0)
    busy = tuple(BUSY_PERCENT if c in busy_cols else 0 for c in range(n))
    mw = (npuclk_mhz + hclk_mhz) // IDLE_MW_DIV + len(busy_cols & set(range(cols))) * hclk_mhz // BUSY_MW_DIV
    return NpuMetrics(min(mw, U16_MAX), busy, npuclk_mhz, hclk_mhz)
