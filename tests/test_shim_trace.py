"""Shim traces: the text form, replay and minimise through the CLI, the promises
each checks, and the shim fuzz target's seed and corpus."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from xdna_emu.fuzz import trace as tr
from xdna_emu.fuzz.invariants import Hang, InvariantViolation
from xdna_emu.fuzz.ops import Op, TraceError
from xdna_emu.fuzz.shim_machine import shared
from xdna_emu.fuzz.shim_target import ShimFuzzer
from xdna_emu.shim import ErtState, Shim, ShimError

ROOT = Path(__file__).resolve().parents[1]
SMOKE = """# a job, a stale handle and a bad management channel
chip npu4
target shim
call probe
call ctx
call exec 0 nop
call wait 0 3000
expect state 0 completed
call destroy 0
call info 0
expect errno EINVAL
fault bad_id 0
call mgmt 0x108 00000000
expect errno EPIPE
call tick 100
"""


@pytest.fixture(autouse=True)
def _no_leaked_hooks():  # noqa: ANN202
    yield
    shared().close_shim()  # the replay session's daemon: its shim and this thread's hooks


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "xdna_emu.cli", *args], capture_output=True,
                          text=True, timeout=120)


# -- text form ------------------------------------------------------------------------------
def test_text_round_trip() -> None:
    t = tr.parse(SMOKE)
    assert t.target == "shim" and t.chip == "npu4"
    assert t.ops[0] == Op("call", ("probe",))
    assert t.ops[5] == Op("call", ("destroy", 0))
    assert t.ops[8] == Op("fault", ("bad_id", 0))
    assert t.ops[9] == Op("call", ("mgmt", 0x108, bytes(4)))
    again = tr.parse(t.to_text())
    assert again.ops == t.ops and again.target == "shim"


@pytest.mark.parametrize("line, why", [
    ("call launch", "unknown shim call"),
    ("call exec 0", "takes 2 operands"),
    ("call exec 0 nop cu 1", "takes 3 operands"),
    ("call dbg 0 assign", "takes 3 operands"),
    ("call qctx 1 2 3", "takes 4 operands"),
    ("call wait x 10", "expected an integer"),
    ("fault meteor 0", "unknown fault"),
    ("fault drop 0 1 2 3", "at most 3"),
    ("w32 0 0 0", "not used in shim traces"),
])
def test_malformed_lines_are_trace_errors(line: str, why: str) -> None:
    with pytest.raises(TraceError, match=why):
        tr.parse(f"chip npu4\ntarget shim\n{line}\n")


def test_target_must_come_first() -> None:
    with pytest.raises(TraceError, match="before the first op"):
        tr.parse("chip npu4\ncall probe\ntarget shim\n")


def test_new_calls_round_trip() -> None:
    """The optional command form of exec and the config calls survive text and back."""
    t = tr.parse("chip npu4\ntarget shim\ncall exec 0 nop cu@2\ncall exec 1 hang\n"
                 "call dbg 0 remove 3\ncall qctx 10 30 0 2048\ncall syncwait 0 -1\n")
    assert t.ops[0] == Op("call", ("exec", 0, "nop", "cu@2"))
    assert t.ops[1] == Op("call", ("exec", 1, "hang"))
    assert t.ops[2] == Op("call", ("dbg", 0, "remove", 3))
    assert tr.parse(t.to_text()).ops == t.ops


@pytest.mark.parametrize("line, why", [("call exec 0 gemm9", "kernel"),
                                       ("call exec 0 nop elf", "command form"),
                                       ("call exec 0 nop cu@32", "command form"),
                                       ("call exec 0 nop cu@x", "command form"),
                                       ("call dbg 0 bind 0", "assign or remove"),
                                       ("call timeout frobnicate 10", "unknown timeout")])
def test_bad_operands_are_trace_errors_at_replay(line: str, why: str) -> None:
    with pytest.raises(TraceError, match=why):
        tr.replay(tr.parse(f"chip npu4\ntarget shim\ncall probe\ncall ctx\n{line}\n"))


# -- CLI ------------------------------------------------------------------------------------
def test_cli_replays_and_minimises_a_shim_trace(tmp_path: Path) -> None:
    good = tmp_path / "good.trace"
    good.write_text(SMOKE)
    r = _cli("trace", "replay", str(good), "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["ok"] is True
    bad = tmp_path / "bad.trace"
    bad.write_text(SMOKE.replace("expect errno EINVAL", "expect errno ENOENT"))
    r = _cli("trace", "replay", str(bad))
    assert r.returncode == 1 and "expected ENOENT" in r.stdout
    small = tmp_path / "small.trace"
    r = _cli("trace", "minimize", str(bad), "-o", str(small))
    assert r.returncode == 0, r.stderr
    t = tr.load(small)
    assert t.target == "shim" and len(t.ops) < len(tr.parse(SMOKE).ops)
    assert not tr.replay(t).ok


# -- the promises are checked (each check can fail) ------------------------------------------
def _run(text: str) -> tr.ReplayResult:
    return tr.replay(tr.parse("chip npu4\ntarget shim\n" + text))


def test_a_stale_handle_that_works_is_a_finding(monkeypatch: pytest.MonkeyPatch) -> None:
    real = Shim.hwctx_info
    monkeypatch.setattr(Shim, "hwctx_info", lambda self, h: real(self, 2))  # always a live one
    res = _run("call probe\ncall ctx\ncall ctx\ncall destroy 0\ncall info 0\n")
    assert isinstance(res.failure, InvariantViolation) and res.failure.name == "use_after_destroy"


def test_a_command_left_running_is_a_finding(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Shim, "cmd_state", lambda self, bo: ErtState.RUNNING)
    res = _run("call probe\ncall ctx\ncall exec 0 nop\n")
    assert isinstance(res.failure, InvariantViolation) and res.failure.name == "not_final"


def test_a_bad_channel_that_recovers_silently_is_a_finding(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = Shim.mgmt_msg

    def flaky(self, *a):  # noqa: ANN001, ANN202
        calls.append(1)
        if len(calls) == 1:
            raise ShimError(32, "bad channel")  # EPIPE
        return real(self, *a)
    monkeypatch.setattr(Shim, "mgmt_msg", flaky)
    # (a fault first: the firmware is no longer predicted, so only this promise can fire)
    res = _run("call probe\nfault irq_empty 0\ncall mgmt 0x108 00000000\ncall mgmt 0x108 00000000\n")
    assert isinstance(res.failure, InvariantViolation) and res.failure.name == "bad_channel"


def test_an_escaping_exception_is_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Shim, "hwctx_create", lambda self: {}["boom"])
    res = _run("call probe\ncall ctx\n")
    assert res.failure is not None and res.failure.kind == "crash" and res.failure.name == "KeyError"


def test_a_call_over_its_virtual_budget_is_a_hang(monkeypatch: pytest.MonkeyPatch) -> None:
    from xdna_emu.fuzz import shim_trace

    monkeypatch.setattr(shim_trace, "CALL_BUDGET_NS", 1_000_000_000)  # 1 s instead of 30 s
    res = _run("call probe\ncall timeout mbox_rx 3000\nfault drop 0\ncall mgmt 0x108 00000000\n")
    assert isinstance(res.failure, Hang) and res.failure.name == "deadline"
    assert res.step == 3


def test_tick_runs_tdr_on_a_hung_job() -> None:
    """``call tick`` lets the driver's monitor run: a hung head is aborted by TDR during the
    idle time (ending TIMEOUT), not left SUBMITTED until some later wait."""
    res = _run("call probe\ncall ctx\ncall exec 0 hang\ncall exec 0 nop\ncall tick 8000\n"
               "expect state 0 timeout\nexpect state 1 abort\n")
    assert res.ok, res.describe()
    short = _run("call probe\ncall ctx\ncall exec 0 hang\ncall tick 10\nexpect state 0 new\n")
    assert not short.ok and "expected new" in short.describe()  # too short for TDR: still running


# -- the fuzz target ----------------------------------------------------------------------------
def test_same_seed_same_campaign(tmp_path: Path) -> None:
    def campaign(seed: int, corpus: Path) -> tuple[dict, list[str]]:
        fz = ShimFuzzer("npu4", seed, tmp_path / "art", corpus)
        try:
            out = fz.fuzz(60, max_execs=25)
        finally:
            fz.close()
        return out, sorted(fz.features)
    a, fa = campaign(7, tmp_path / "c1")
    b, fb = campaign(7, tmp_path / "c2")
    assert a["execs"] == b["execs"] == 25  # the regression traces seed the corpus first
    assert (a["steps"], fa) == (b["steps"], fb)
    assert sorted(p.read_text() for p in (tmp_path / "c1").iterdir()) == \
        sorted(p.read_text() for p in (tmp_path / "c2").iterdir())
    # the corpus is made of replayable shim traces, and a new run starts from them
    entries = sorted((tmp_path / "c1").glob("*.trace"))
    assert entries and all(tr.replay(tr.load(p)).ok for p in entries[:3])
    fz = ShimFuzzer("npu4", 8, None, tmp_path / "c1")
    try:
        fz.load_corpus()
        assert len(fz.corpus) >= len(entries)
    finally:
        fz.close()


def test_cli_shim_target_summary(tmp_path: Path) -> None:
    r = _cli("fuzz", "--target", "shim", "--seconds", "3", "--json", "--seed", "3",
             "--artifacts", str(tmp_path / "art"), "--corpus", str(tmp_path / "corpus"))
    out = json.loads(r.stdout)
    for key in ("target", "seconds", "execs", "execs_per_s", "crashes", "hangs", "coverage",
                "corpus_size"):
        assert key in out
    assert out["target"] == "shim" and out["execs"] > 0 and out["coverage"] > 5
    assert out["steps"] > out["execs"]  # trace lines run, over all examples
    # the rates: execs over the worker's fuzzing time (bring-up and the corpus's first run
    # included, imports left out), and over the campaign's wall time
    assert out["execs_per_s"] >= out["wall_execs_per_s"] > 0
    assert abs(out["wall_execs_per_s"] - out["execs"] / out["seconds"]) < 0.1 + out["execs"] / 1e3
    assert any((tmp_path / "corpus").glob("*.trace"))
    # how far 3 s of fuzzing gets depends on the machine, so a run may meet an open finding
    # (docs/spec/fuzzing.md §12): then it exits 1 and keeps a replayable trace of it
    findings = out["crashes"] + out["hangs"]
    assert r.returncode == (1 if findings else 0), r.stderr
    assert bool(findings) == any((tmp_path / "art").glob("*.trace"))


def test_cli_refuses_atheris_for_the_shim_target() -> None:
    r = _cli("fuzz", "--target", "shim", "--engine", "atheris", "--seconds", "1")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1


# -- libFuzzer-driven shim target ---------------------------------------------------------------
def test_fuzzer_bytes_decode_to_a_stable_shim_trace() -> None:
    """The atheris mode maps input bytes to ops deterministically, always probing first and
    never past MAX_OPS, so libFuzzer's mutations and its corpus stay meaningful."""
    from xdna_emu.fuzz.shim_target import MAX_OPS, decode

    data = bytes(range(7, 250, 3))
    ops = decode(data)
    assert ops == decode(data) and ops[0] == Op("call", ("probe",)) and len(ops) > 5
    assert decode(b"") == [Op("call", ("probe",))]
    assert len(decode(bytes(range(256)) * 40)) == MAX_OPS
    text = tr.Trace("npu4", ops, target="shim").to_text()
    assert tr.parse(text).ops == ops  # every decoded op can be written and read back
    assert decode(data[: len(data) // 2]) != ops  # the bytes, not only the first ones, matter


@pytest.mark.skipif(not shutil.which("clang"), reason="needs clang (make fuzz-shim installs it)")
def test_shim_atheris_campaign_runs(tmp_path: Path) -> None:
    """fuzz/shim_atheris.sh: the clang fuzzer-no-link build of the shim under atheris."""
    venv_py = ROOT / ".venv" / "bin" / "python"
    py = str(venv_py) if venv_py.exists() else sys.executable
    if subprocess.run([py, "-c", "import atheris"], capture_output=True).returncode != 0:
        pytest.skip("atheris is not installed (pip install -e .[fuzz])")
    r = subprocess.run(["bash", str(ROOT / "fuzz" / "shim_atheris.sh"), py, "8"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:] + r.stdout[-2000:]
    m = re.search(r"Loaded \d+ modules? +\((\d+) inline 8-bit counters", r.stderr)
    assert m and int(m.group(1)) > 1000, r.stderr[-2000:]  # the C shim's edges guide it
    assert '"crashes": 0' in r.stdout


def test_a_worker_stuck_in_c_leaves_its_example_as_a_hang(tmp_path: Path) -> None:
    """A shim worker ended by its faulthandler watchdog (an example stuck in C) counts as a
    hang, and the example it was running is kept as a replayable trace."""
    import argparse

    from xdna_emu.fuzz.cli import _summary, _Worker

    current = tmp_path / "current-0.trace"
    stuck = "chip npu4\ntarget shim\ncall probe\ncall resume\n"
    script = ("import sys, pathlib; pathlib.Path(sys.argv[2]).write_text(sys.argv[3]); "
              "sys.stderr.write('Timeout (0:01:00)!\\nThread 0x1 (most recent call first):\\n');"
              " sys.exit(1)")
    w = _Worker([sys.executable, "-c", script, "--current", str(current), stuck],
                tmp_path / "stats-0.json", current)
    w.proc.wait(30)
    w.reader.join(5)
    args = argparse.Namespace(target="shim", chip="npu4", jobs=1)
    out = _summary(args, "builtin", [w], 1.0, tmp_path, tmp_path, 0)
    assert out["hangs"] == 1 and out["crashes"] == 0
    [found] = [p for p in out["artifacts"] if "hang-wallclock" in p]
    assert tr.load(found).ops == tr.parse(stuck).ops


def test_report_of_a_worker_stats_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """What fuzz/asan.sh and fuzz/shim_atheris.sh print and exit with after a run."""
    from xdna_emu.fuzz.shim_target import main

    stats = tmp_path / "stats.json"
    stats.write_text(json.dumps({"execs": 5, "steps": 40, "coverage": 9, "crashes": 0,
                                 "hangs": 0, "artifacts": []}))
    assert main(["--report", str(stats)]) == 0
    assert '"execs": 5' in capsys.readouterr().out
    stats.write_text(json.dumps({"execs": 5, "crashes": 0, "hangs": 1, "artifacts": ["x"]}))
    assert main(["--report", str(stats)]) == 1


def test_a_command_rewritten_under_exec() -> None:
    """``rewrite`` stores into the command BO from inside exec's wait for a free slot (a
    racing user thread): the shim must neither crash nor run garbage, whatever it decides."""
    h = tr.harness_for("npu4", "shim")
    for word, value in ((1, 65), (0, 0x7FF000), (7, 0x1234)):
        kind = "chain 0 nop,nop" if word == 1 else "exec 0 nop"
        res = _run("call probe\ncall timeout mbox_rx 6000\ncall ctx\n" + "call exec 0 hang\n" * 4
                   + f"call rewrite {word} {value}\ncall {kind}\ncall tick 9000\n")
        assert res.ok, res.describe()
        assert h.raced, "the rewrite never ran inside exec"
