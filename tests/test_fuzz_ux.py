"""``xdna-emu fuzz`` and ``xdna-emu trace minimize`` as a new user meets them: Ctrl-C stops
a campaign cleanly, a run leaves no litter, CI logs get progress records, and minimising
keeps the failure it was given."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from xdna_emu.fuzz import trace as tr
from xdna_emu.fuzz.cli import EXIT_INTERRUPTED
from xdna_emu.fuzz.shim_machine import shared


@pytest.fixture(autouse=True)
def _drop_tmpdir(tmp_path: Path):  # noqa: ANN202
    yield
    for link in tmp_path.rglob("tmpdir"):
        if link.is_symlink():
            shutil.rmtree(link.resolve(), ignore_errors=True)


def _tmpdir(tmp: Path) -> Path:
    """The run's own temp directory: a short path (daemon sockets live there, and a socket
    path has a length limit), linked from the test's directory."""
    link = tmp / "tmpdir"
    if not link.exists():
        link.symlink_to(tempfile.mkdtemp(prefix="xfz"))
    return link.resolve()


def _env(tmp: Path) -> dict[str, str]:
    """A temp dir and a cache of the test's own, so litter would be seen."""
    return {**os.environ, "TMPDIR": str(_tmpdir(tmp)), "XDG_CACHE_HOME": str(tmp / "cache")}


def _fuzz(tmp: Path, *args: str, cwd: Path | None = None, **kw: object) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "xdna_emu.cli", "fuzz", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_env(tmp), cwd=cwd or tmp, **kw)  # type: ignore[call-overload]


def _litter(tmp: Path) -> list[str]:
    return sorted(p.name for p in _tmpdir(tmp).iterdir() if p.name.startswith("xdna-fuzz-"))


def _wait_for(pred, what: str, limit_s: float = 120.0) -> None:  # noqa: ANN001
    """Poll for an event (a generous limit only against a wedged run: no timing is tested)."""
    end = time.monotonic() + limit_s
    while not pred():
        assert time.monotonic() < end, f"never saw {what}"
        time.sleep(0.1)


def _interrupt(tmp: Path, group: bool, inherit_ignored: bool = False) -> tuple[int, dict, str]:
    corpus = tmp / "corpus"
    # ``inherit_ignored``: started the way ``&`` in a shell script starts it, with SIGINT
    # ignored (that disposition survives fork and exec; this process ignores it only meanwhile)
    prev = signal.signal(signal.SIGINT, signal.SIG_IGN) if inherit_ignored else None
    try:
        p = _fuzz(tmp, "--target", "shim", "--seconds", "600", "--json", "--corpus", str(corpus),
                  start_new_session=True)
    finally:
        if prev is not None:
            signal.signal(signal.SIGINT, prev)
    _wait_for(lambda: any(corpus.glob("*.trace")) or p.poll() is not None, "a corpus entry")
    assert p.poll() is None, json.loads(p.communicate()[0])["errors"]
    if group:  # Ctrl-C on a terminal: the whole foreground group gets SIGINT
        os.killpg(p.pid, signal.SIGINT)
    else:  # kill -INT of the campaign alone: it passes the stop on to its workers
        p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=120)
    return p.returncode, json.loads(out), err


def test_ctrl_c_stops_cleanly_keeps_corpus_and_records_no_finding(tmp_path: Path) -> None:
    for group in (True, False):
        tmp = tmp_path / ("group" if group else "parent")
        tmp.mkdir()
        rc, out, err = _interrupt(tmp, group)
        assert rc == EXIT_INTERRUPTED, err[-2000:]
        assert out["interrupted"] is True
        assert out["crashes"] == out["hangs"] == 0 and out["artifacts"] == [], out
        assert out["errors"] == [] and out["execs"] > 0
        assert any((tmp / "corpus").glob("*.trace"))  # the corpus it grew is kept
        assert all(tr.replay(tr.load(p)).ok for p in sorted((tmp / "corpus").glob("*.trace"))[:2])
        assert "Traceback" not in err and not _litter(tmp)
        assert not (tmp / "cache").exists() and not (tmp / "fuzz-artifacts").exists()
    shared().close_shim()


def test_ctrl_c_interrupts_a_campaign_that_inherited_sigint_ignored(tmp_path: Path) -> None:
    """Its workers stop on SIGINT whatever they inherited, so the campaign must count the
    stop as an interruption (130, corpus kept), not as a run that ended by itself (0)."""
    for group in (True, False):
        tmp = tmp_path / ("group" if group else "parent")
        tmp.mkdir()
        rc, out, err = _interrupt(tmp, group, inherit_ignored=True)
        assert rc == EXIT_INTERRUPTED, err[-2000:]
        assert out["interrupted"] is True and out["errors"] == [], out
        assert out["crashes"] == out["hangs"] == 0 and out["artifacts"] == [], out
        assert any((tmp / "corpus").glob("*.trace")) and not _litter(tmp)
    shared().close_shim()


def test_a_run_leaves_no_litter_unless_asked(tmp_path: Path) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    p = _fuzz(tmp_path, "--target", "device", "--engine", "builtin", "--seconds", "1", "--json",
              cwd=cwd)
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err[-2000:]
    summary = json.loads(out)
    assert summary["interrupted"] is False and summary["corpus"] is None
    assert list(cwd.iterdir()) == [] and not _litter(tmp_path)
    # no finding: the default artifacts directory (in the cache) is not even created
    assert summary["artifacts_dir"] == str(tmp_path / "cache" / "xdna-emu" / "fuzz-artifacts")
    assert not (tmp_path / "cache").exists()
    p = _fuzz(tmp_path, "--target", "device", "--engine", "builtin", "--seconds", "1", "--json",
              "--keep", cwd=cwd)
    out, err = p.communicate(timeout=300)
    kept = json.loads(out)["work_dir"]
    assert p.returncode == 0 and _litter(tmp_path) == [Path(kept).name]
    assert any((Path(kept) / "corpus").iterdir())


def test_progress_records_without_a_terminal(tmp_path: Path) -> None:
    p = _fuzz(tmp_path, "--target", "device", "--engine", "builtin", "--seconds", "3",
              "--progress-every", "0.5")
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err[-2000:]
    recs = [line for line in err.splitlines() if line.startswith("[fuzz device]")]
    assert recs and "\r" not in err and "\x1b" not in err  # plain lines, no terminal codes
    for field in ("execs", "/s)", "cov", "corpus", "findings"):
        assert field in recs[-1], recs[-1]
    assert out.startswith("fuzz device")  # the summary stays on stdout


MINIMIZE = """chip npu4
target shim
call probe
call ctx
call info 0
call exec 0 nop
call mgmt 0x108 00000000
call wait 0 3000
call tick 10
expect state 0 error
"""


def test_minimize_keeps_the_failure_signature(tmp_path: Path) -> None:
    src = tmp_path / "bad.trace"
    src.write_text(MINIMIZE)
    want = tr.replay(tr.parse(MINIMIZE)).failure
    assert want is not None and "COMPLETED, expected error" in want.message
    small, loose = tmp_path / "small.trace", tmp_path / "loose.trace"
    for dest, extra in ((small, []), (loose, ["--any-failure"])):
        r = subprocess.run([sys.executable, "-m", "xdna_emu.cli", "trace", "minimize", str(src),
                            "-o", str(dest), *extra], capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
    got = tr.replay(tr.load(small)).failure
    assert got is not None and (got.signature, got.message) == (want.signature, want.message)
    assert any(op.args[:1] == ("exec",) for op in tr.load(small).ops)
    assert len(tr.load(small).ops) < len(tr.parse(MINIMIZE).ops)
    # with --any-failure it may become another failure: here, nothing was ever submitted
    other = tr.replay(tr.load(loose)).failure
    assert other is not None and other.message != want.message
    assert len(tr.load(loose).ops) < len(tr.load(small).ops)
    shared().close_shim()
