"""The threads fuzz target (real threads, the real shim, a daemon in its own process) and
the lock checker of the shim's debug build (docs/spec/fuzzing.md §10)."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from pathlib import Path

import pytest

from xdna_emu.fuzz import threaded as T
from xdna_emu.fuzz.lang import Op, TraceError

ROOT = Path(__file__).resolve().parent.parent


def test_a_seed_gives_the_same_call_sequences() -> None:
    a = [T.generate(random.Random(9), "npu4").to_text() for _ in range(3)]
    b = [T.generate(random.Random(9), "npu4").to_text() for _ in range(3)]
    assert a == b
    assert T.generate(random.Random(10), "npu4").to_text() != a[0]


def test_program_text_round_trips_and_bad_lines_are_refused() -> None:
    prog = T.generate(random.Random(4), "npu4")
    again = T.Program.parse(prog.to_text())
    assert (again.chip, again.threads) == (prog.chip, prog.threads)
    for bad in ("chip npu4\ncall exec 0 nop\n",  # a call outside a thread
                "chip npu4\nthread 0\n  call frobnicate 1\n",
                "chip npu4\nthread 0\n  call exec zero nop\n",
                "thread 0\n  call wait\n"):  # no chip
        with pytest.raises(TraceError):
            T.Program.parse(bad)


@pytest.fixture(scope="module")
def harness() -> T.ThreadedHarness:
    h = T.ThreadedHarness("npu4")
    yield h
    h.close()


def test_programs_on_the_real_daemon_hold_every_promise(harness: T.ThreadedHarness) -> None:
    rng = random.Random(1)
    events: set[str] = set()
    for _ in range(12):
        found, ev = harness.run(T.generate(rng, "npu4"))
        assert found is None, found
        events |= ev
    assert {"exec:ok", "wait:ok", "mgmt:ok", "destroy:ok"} <= events, events


def test_two_threads_on_one_context_and_a_destroy_under_them(harness: T.ThreadedHarness) -> None:
    call = lambda *a: Op("call", a)  # noqa: E731
    prog = T.Program("npu4", [
        [call("exec", 0, "nop"), call("exec", 0, "fail"), call("wait"), call("wait")],
        [call("chain", 0, "nop,fail,nop"), call("destroy", 0), call("info", 0), call("exec", 0, "nop")],
        [call("exec", 1, "nop"), call("rewrite", 1, 0), call("wait"), call("health", 1)],
    ])
    if os.environ.get(T.NO_REWRITE_ENV):  # under TSan: the user's store is a race by design
        prog.threads[2].remove(call("rewrite", 1, 0))
    for _ in range(3):  # interleavings differ; the promises hold in each
        found, _ = harness.run(prog)
        assert found is None, found


def test_an_errno_outside_the_allowed_set_is_a_finding(harness: T.ThreadedHarness,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Planted: the oracle told that info never fails; a destroyed context's info does."""
    monkeypatch.setitem(T.ALLOWED, "info", set())
    call = lambda *a: Op("call", a)  # noqa: E731
    found, _ = harness.run(T.Program("npu4", [[call("destroy", 0), call("info", 0)], [call("sleep", 0)]]))
    assert found is not None and found.name == "info_errno", found


def test_a_job_in_the_wrong_final_state_is_a_finding(harness: T.ThreadedHarness,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Planted: a firmware that fails every command (its kernels all run as ``fail``)."""
    from xdna_emu import kernels as K
    from xdna_emu.fuzz import shim_trace

    real = shim_trace.npu_command
    monkeypatch.setattr(shim_trace, "npu_command",
                        lambda s, k, form="npu", cu=0: real(s, K.Kernel.FAIL, form, cu))
    call = lambda *a: Op("call", a)  # noqa: E731
    found, _ = harness.run(T.Program("npu4", [[call("exec", 0, "nop")], [call("exec", 1, "nop")]]))
    assert found is not None and found.name == "job_state", found


def test_fuzzer_records_a_replayable_program(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(T.ALLOWED, "destroy", set())  # planted: a second destroy is a finding
    monkeypatch.setattr(T, "WEIGHTS", {"destroy": 2, "info": 1})  # programs of destroys
    fz = T.ThreadedFuzzer("npu4", 3, tmp_path)
    try:
        out = fz.fuzz(1e9, max_execs=10)
    finally:
        fz.close()
    assert out["crashes"] >= 1 and out["artifacts"], out
    path = Path(out["artifacts"][0])
    assert path.suffix == ".threads" and "destroy_errno" in path.name
    prog = T.Program.parse(path.read_text())
    assert prog.chip == "npu4" and prog.threads
    monkeypatch.setitem(T.ALLOWED, "destroy", {T.E.EINVAL, T.E.ENOENT})
    assert T.replay(path, times=2) is None  # with the real rule, it holds


@pytest.mark.skipif(shutil.which("gcc") is None, reason="no C compiler")
@pytest.mark.parametrize(("case", "line"), [
    ("ok", None), ("twice", "lock taken twice"), ("inversion", "lock-order inversion"),
    ("across-wait", "lock held across a wait"), ("blocking", "lock held across a blocking poll"),
    ("foreign-unlock", "unlock of a lock this thread does not hold")])
def test_lock_checker_aborts_on_each_misuse(case: str, line: str | None, tmp_path: Path) -> None:
    exe = tmp_path / "lockdep_test"
    subprocess.run(["gcc", "-std=gnu11", "-D_GNU_SOURCE", "-DXDNA_LOCKDEP", "-pthread",
                    f"-I{ROOT / 'csrc'}", str(ROOT / "tests/c/lockdep_test.c"),
                    str(ROOT / "csrc/lockdep.c"), "-o", str(exe)], check=True)
    r = subprocess.run([str(exe), case], capture_output=True, text=True, timeout=30)
    if line is None:
        assert r.returncode == 0 and r.stdout.strip() == "ok"
    else:
        assert r.returncode < 0 and line in r.stderr, (r.returncode, r.stderr)


def test_campaign_runs_the_threads_target_and_cleans_up(tmp_path: Path) -> None:
    import json
    import sys

    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    r = subprocess.run([sys.executable, "-m", "xdna_emu.cli", "fuzz", "--target", "threads",
                        "--seconds", "2", "--json"], capture_output=True, text=True, env=env,
                       cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout)
    assert out["target"] == "threads" and out["execs"] > 0 and out["execs_per_s"] > 0
    assert out["crashes"] == out["hangs"] == 0 and out["errors"] == []
    assert [p.name for p in tmp.iterdir() if p.name.startswith(("xdna-fuzz-", "xdna-threads-"))] == []
