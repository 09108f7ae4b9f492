"""The trace format: round trips, parse errors, replay and the minimiser."""

from __future__ import annotations

from pathlib import Path

import pytest

from xdna_emu import cli
from xdna_emu.fuzz import trace as tr
from xdna_emu.fuzz.ops import Builder, DeviceHarness, Op, TraceError
from xdna_emu.fw.smu import SmuBlock


def test_record_to_text_to_replay_round_trip() -> None:
    recorded = tr.record_probe("npu4")
    text = recorded.to_text()
    parsed = tr.parse(text)
    assert parsed.chip == "npu4" and parsed.ops == recorded.ops
    assert parsed.to_text() == text
    res = tr.replay(parsed)
    assert res.ok, res.describe()
    kinds = {op.verb for op in parsed.ops}
    assert {"w32", "shm", "call", "expect"} <= kinds


def test_every_verb_formats_and_parses_back() -> None:
    ops = [Op("w32", (5, 0x900, 0xFFFFFFFF)), Op("r32", (4, 0xAEC)),
           Op("shm", (2, 0, bytes([0x1D, 0, 0xFF]))), Op("shm", (2, 4, b"")),
           Op("host", (0, 0x1_0000_0000, b"\x01")), Op("dma_map", (1, 0x7F0000000000, 0x1000, 3)),
           Op("dma_unmap", (1, 0x7F0000000000, 0x1000)), Op("tick", (1_000_000,)), Op("reset"),
           Op("fault", ("bus_master", 0)), Op("call", ("msg", 0x108, bytes(4))),
           Op("call", ("fw_image", 0x1_0000_0000, -1)), Op("call", ("proxy", 1, 0xE, b"")),
           Op("expect", ("irqs", "-"))]
    text = tr.Trace("npu4", ops, ["a comment"]).to_text()
    assert text.startswith("# a comment\nchip npu4\n")
    assert tr.parse(text).ops == ops


@pytest.mark.parametrize("text, where", [
    ("w32 0 0 0\n", "chip"), ("chip npu4\npoke 1\n", "line 2"), ("chip npu4\nw32 0 0\n", "line 2"),
    ("chip npu4\nshm 2 0 zz\n", "line 2"), ("chip npu4\n\n# c\nr32 0 x1\n", "line 4"), ("", "empty"),
])
def test_parse_errors_name_the_line(text: str, where: str) -> None:
    with pytest.raises(TraceError, match=where):
        tr.parse(text)


def test_comments_and_blank_lines_are_ignored() -> None:
    t = tr.parse("# head\n\nchip npu1   # the chip\n\n  reset  # again\n# tail\n")
    assert t.chip == "npu1" and t.ops == [Op("reset")] and t.header == ["head"] and t.lines == [5]


def _planted(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug: SET_HARD_DPMLEVEL 3 answers FAIL although level 3 exists."""
    real = SmuBlock.execute
    monkeypatch.setattr(SmuBlock, "execute",
                        lambda self, cmd, arg: (0xFF, 0) if (cmd, arg) == (8, 3) else real(self, cmd, arg))


def _buggy_trace() -> tr.Trace:
    base = tr.load(tr.GOLDEN_DIR / "probe-npu4.trace")
    s = DeviceHarness("npu4")
    b = Builder(s)
    noise = [*b.reg_write(7, 0x1234), *b.ring_store(1, 0x40, b"\x01\x02\x03\x04"), Op("tick", (5,))]
    ops = [op for op in base.ops if op.verb != "expect"] + noise + b.smu(8, 3) + noise
    return tr.Trace("npu4", ops, ["planted"])


def test_minimizer_shrinks_a_planted_failure_to_its_essential_lines(
        monkeypatch: pytest.MonkeyPatch) -> None:
    _planted(monkeypatch)
    trace = _buggy_trace()
    res = tr.replay(trace)
    assert res.failure is not None and res.failure.name == "smu_resp"
    small = tr.minimize(trace)
    again = tr.replay(small)
    assert again.signature == res.signature and again.failure.message == res.failure.message
    # the same message ("on=True") keeps the power-on: POWER_ON, then the buggy command
    loc = DeviceHarness("npu4").regs.loc
    cmds = [op.args[2] for op in small.ops if op.args[:2] == loc("smu.cmd")]
    assert cmds == [3, 8] and len(small.ops) <= 6, small.to_text()
    # any failure will do: the essence is ARG=3, CMD=SET_HARD_DPMLEVEL, an INTR 0->1 edge
    # (the model expects "rejected" while off, the bug answers "fail")
    loose = tr.minimize(trace, any_failure=True)
    assert [op.args for op in loose.ops] == [(*loc("smu.arg"), 3), (*loc("smu.cmd"), 8),
                                             (*loc("smu.intr"), 1)], loose.to_text()


def test_minimize_refuses_a_passing_trace() -> None:
    with pytest.raises(ValueError):
        tr.minimize(tr.load(tr.GOLDEN_DIR / "probe-npu1.trace"))


def test_cli_minimize_writes_the_smaller_trace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    _planted(monkeypatch)
    src, out = tmp_path / "bug.trace", tmp_path / "bug.min.trace"
    src.write_text(_buggy_trace().to_text())
    assert cli.main(["trace", "minimize", str(src), "-o", str(out)]) == 0
    small = tr.load(out)
    assert len(small.ops) <= 6 and any("minimised from bug.trace" in h for h in small.header)
    assert cli.main(["trace", "replay", str(out)]) == 1
    assert "FAIL" in capsys.readouterr().out
