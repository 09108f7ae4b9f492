"""Every bug the fuzzers (or reviews) found, as a minimised trace in fixtures/regressions/.

One test per file, named after it. Each trace's header says what it used to trigger; each
was replayed against the code before its fix and failed there, and must pass now. Device
traces replay on the in-process device model, shim traces (``target shim``) against the
real C shim in deterministic mode. Native inputs live in fixtures/regressions/native/
(tests/test_fuzz_native.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from xdna_emu.fuzz import trace as tr

REGRESSIONS = sorted(tr.REGRESSION_DIR.glob("*.trace"))


@pytest.mark.parametrize("path", REGRESSIONS, ids=[p.stem for p in REGRESSIONS])
def test_regression(path: Path) -> None:
    trace = tr.load(path)
    assert any("used to trigger" in h.lower() for h in trace.header), \
        f"{path.name}: the header must say what it used to trigger"
    res = tr.replay(trace)  # a shim replay releases its shim and this thread's hooks itself
    assert res.ok, f"{path.name}: {res.describe()}"


def test_regressions_are_present() -> None:
    assert tr.REGRESSION_DIR.is_dir()
    assert len(REGRESSIONS) >= 3
