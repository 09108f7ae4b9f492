"""The shim target's AIE4 vocabulary beyond §8: CERT log attach/detach predicted by the
contract model, its oracle on a planted bug, and fuzz-bench's per-chip rows
(docs/spec/fuzzing.md §7, §8, §11)."""

from __future__ import annotations

import errno
from pathlib import Path

from tests.planted import assert_findings, bench
from xdna_emu.fuzz import trace as tr
from xdna_emu.fuzz.shim_target import AIE4_SEED, ShimFuzzer
from xdna_emu.fuzz.shim_trace import ShimHarness

#: (call, the driver's answer) in order, every one predicted (docs/spec/aie4.md §11)
CERT_CASES = [
    ("ctx", "ok"), ("dbgbo 8192", None), ("certdetach 0", "EINVAL"),
    ("certlog 0 0 0:4096,1:4096", "ok"), ("certlog 0 0 0:64", "EINVAL"), ("certdetach 0", "ok"),
    ("certlog 0 0 6:64", "EINVAL"), ("certlog 0 0 1:64,1:64", "EINVAL"), ("certlog 0 0 0:47", "EINVAL"),
    ("certlog 0 0 -", "EINVAL"), ("certlog 0 0 0:64,1:64,2:64,3:64,4:64,5:64,6:64", "EINVAL"),
    ("certlog 0 -1 0:4096", "EINVAL"), ("certlog 0 0 0:65536", "EINVAL"), ("certlog 0 0 0:48", "ok"),
    ("exec 0 nop", {"ok"}), ("suspend", "ok"), ("resume", "ok"),
    ("certlog 0 0 0:48", "EINVAL"),  # the binding survived the resume
    ("certdetach 0", "ok"), ("destroy 0", "ok"), ("certlog 0 0 0:48", "EINVAL"),
]


def _name(a: str) -> str:
    return a if a == "ok" else errno.errorcode[getattr(errno, a)]


def test_cert_log_calls_follow_the_contract() -> None:
    h = ShimHarness("npu3")
    try:
        h.apply(tr.parse_line("call probe", "shim"))
        for line, answer in CERT_CASES:
            op = tr.parse_line(f"call {line}", "shim")
            want = h.model.expect(h, op.args[0], op.args[1:])
            if answer is not None:
                assert want == ({_name(a) for a in answer} if isinstance(answer, set) else _name(answer)), line
            h.apply(op)  # the model checks the errno
        h.finish()
    finally:
        h.close()


def test_cert_log_is_aie4_only() -> None:
    res = tr.replay(tr.parse("chip npu4\ntarget shim\ncall probe\ncall ctx\ncall dbgbo 4096\n"
                             "call certlog 0 0 0:4096\nexpect errno ENOTSUP\ncall certdetach 0\n"
                             "expect errno ENOTSUP\n"))
    assert res.ok, res.failure


def test_a_stopped_firmware_is_not_promised_to_run_user_packets() -> None:
    """A doorbell rung at a firmware a fault stopped: nothing runs the packet and the
    driver, which never saw it, cannot know (docs/spec/fuzzing.md §8)."""
    res = tr.replay(tr.parse("chip npu3\ntarget shim\ncall probe\ncall ctx\ncall umq 1\n"
                             "fault unload 0 1 0x1770\ncall ctx\ncall doorbell 2\n"))
    assert res.ok, res.failure


def test_the_aie4_seed_binds_a_cert_log() -> None:
    fz = ShimFuzzer("npu3", 1, None, None)
    try:
        fz.run_one(list(AIE4_SEED))
        assert fz.session.events["certlog:ok"] and fz.session.events["certdetach:ok"] and fz.session.events["cctx:ok"]
    finally:
        fz.close()


def test_fuzz_bench_runs_a_chip_mutant_on_its_chip() -> None:
    [patch] = bench.MUTANTS.glob("*-cert-log-uc-bound.patch")
    assert bench.header(patch)["chip"] == "npu3"
    assert bench.runs_on("shim", "npu3") and bench.runs_on("threads", None)
    assert not bench.runs_on("threads", "npu3")  # the threads target is AIE2's


def test_the_cert_log_oracle_fires_on_a_planted_bug(tmp_path: Path) -> None:
    """The shim takes a slice for uC 6; the firmware then refuses the descriptor (EIO)."""
    text = "chip npu3\ntarget shim\ncall probe\ncall ctx\ncall dbgbo 8192\ncall certlog 0 0 6:64\n"
    assert_findings(tmp_path, ("cert-log-uc-bound",), [(text, "model_errno")])


#: (call, the answer) of a client session beside the driver (docs/spec/aie4.md §12)
CLIENT_CASES = [
    ("cctx", "EINVAL"), ("client", "ok"), ("ctx", "ok"), ("cctx", "ok"), ("cmgmt query 0", "ok"),
    ("cmgmt driver 0", "EPERM"), ("cmgmt foreign 0", "ENOENT"), ("cctx", "ok"), ("cdestroy 0", "ok"),
    ("cdestroy 0", "EINVAL"), ("destroy 0", "ok"), ("cmgmt foreign 0", "ENOENT"), ("client", "ok"),
    ("cdestroy 0", "EINVAL"), ("cctx", "ok"),
]


def test_a_client_session_follows_the_contract() -> None:
    h = ShimHarness("npu3")
    try:
        h.apply(tr.parse_line("call probe", "shim"))
        for line, answer in CLIENT_CASES:
            op = tr.parse_line(f"call {line}", "shim")
            assert h.model.expect(h, op.args[0], op.args[1:]) == _name(answer), line
            h.apply(op)
        h.finish()
    finally:
        h.close()


def test_the_client_oracle_fires_on_a_planted_bug(tmp_path: Path) -> None:
    """The proxy lets a client destroy the driver's context: ok where the driver says ENOENT."""
    text = "chip npu3\ntarget shim\ncall probe\ncall ctx\ncall client\ncall cmgmt foreign 0\n"
    assert_findings(tmp_path, ("proxy-foreign-context",), [(text, "model_errno")], build=False)
