"""SR-IOV in the shim fuzz target (docs/spec/fuzzing.md §8, docs/spec/aie4.md §10): enabling
and disabling a PF's VFs through the driver's sriov_configure, jobs on the VFs' own driver
sessions, and the VF jobs ending when the VFs go, each step predicted by the model."""

from __future__ import annotations

import random
from pathlib import Path

from tests.planted import assert_findings
from xdna_emu.fuzz import trace as tr
from xdna_emu.fuzz.shim_target import random_op
from xdna_emu.fuzz.shim_trace import ShimHarness
from xdna_emu.shim import ErtState

#: every sriov_configure rule and a VF's life: refusals, enable, jobs, disable with a hang
#: pending, a VF number after the VFs went, enable again
LIFE = [("call sriov 1", "EINVAL"), ("call probe", "ok"), ("call ctx", "EOPNOTSUPP"),
        ("call sriov 9", "ERANGE"), ("call vf 0 nop", "EINVAL"), ("call sriov 2", "ok"),
        ("call sriov 2", "ok"), ("call vf 0 nop", "ok"), ("call vf 1 nop", "ok"),
        ("call vfwait 0 3000", "ok"), ("call vf 1 hang", "ok"), ("call vf 1 nop", "ok"),
        ("call sriov 1", "EBUSY"), ("call sriov 0", "ok"), ("call vf 0 nop", "EINVAL"),
        ("call sriov 3", "ok"), ("call vf 2 nop", "ok"), ("call vfwait 4 3000", "ok")]


def test_a_pfs_vfs_come_run_and_go_as_the_model_predicts() -> None:
    h = ShimHarness("npu3_pf")
    try:
        for line, want in LIFE:
            h.apply(tr.parse_line(line, "shim"))  # the model checks each errno
            assert h.last == want.replace("EOPNOTSUPP", "ENOTSUP"), line
        h.finish()
        states = [h.vf_state(j) for j in range(len(h.vfjobs))]
        assert states == [ErtState.COMPLETED, ErtState.COMPLETED, ErtState.ABORT, ErtState.ABORT,
                          ErtState.COMPLETED]  # the hang and the job behind it end with the VF
    finally:
        h.close()


def test_sriov_is_refused_off_a_pf() -> None:
    res = tr.replay(tr.parse("chip npu3\ntarget shim\ncall probe\ncall sriov 1\nexpect errno "
                             "ENOTSUP\ncall vf 0 nop\nexpect errno EINVAL\n"))
    assert res.ok, res.failure


def test_generated_aie4_programs_draw_sriov_lines() -> None:
    rng = random.Random(3)
    names = {o.args[0] for o in (random_op(rng, aie4=True) for _ in range(3000)) if o.verb == "call"}
    assert {"sriov", "vf", "vfwait"} <= names
    assert not {"sriov", "vf"} & {o.args[0] for o in (random_op(rng) for _ in range(3000))
                                  if o.verb == "call"}


def test_the_sriov_oracles_fire_on_planted_bugs(tmp_path: Path) -> None:
    """Both SR-IOV mutants in one scratch tree: enabling over enabled VFs is an errno
    finding, a removed VF that leaves its jobs in flight a job that never ends."""
    cases = [("call sriov 2\ncall sriov 1\n", "model_errno"),
             ("call sriov 1\ncall vf 0 hang\ncall sriov 0\n", "not_final")]
    assert_findings(tmp_path, ("sriov-enable-over-enabled", "vf-removal-keeps-jobs"),
                    [(f"chip npu3_pf\ntarget shim\ncall probe\n{body}", want) for body, want in cases])
