"""The fuzzers' reference-model oracles: each one holds on the real code and fires on a
planted bug. The bugs are real code, never monkeypatches: a deliberately wrong firmware
variant (``fault <variant>`` in a shim trace), or a patch of ``fuzz/mutants/`` applied to
a scratch copy of the tree, which then replays a trace in a process of its own."""

from __future__ import annotations

import importlib.util
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from xdna_emu.fuzz import trace as tr
from xdna_emu.fuzz.invariants import InvariantViolation, ref_x2i
from xdna_emu.fuzz.ops import Builder, DeviceHarness, Op
from xdna_emu.fuzz.shim_machine import shared
from xdna_emu.fw.messages import MSG_HEADER, MSG_ID_MAGIC, TOMBSTONE, sz_ver

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("fuzz_bench", ROOT / "fuzz" / "bench.py")
bench = importlib.util.module_from_spec(_spec)  # type: ignore[arg-type]
_spec.loader.exec_module(bench)  # type: ignore[union-attr]


@pytest.fixture(autouse=True)
def _no_leaked_hooks():  # noqa: ANN202
    yield
    shared().close_shim()


def _shim(text: str) -> tr.ReplayResult:
    return tr.replay(tr.parse("chip npu4\ntarget shim\n" + text))


# -- the shim side: the driver's contract -----------------------------------------------------
CONTRACT = """call probe
call ctx
call waitseq 0 0 10
expect errno EINVAL
call waitseq 0 -1 10
expect errno EINVAL
call exec 0 nop
call waitseq 0 2 10
expect errno EINVAL
call wait 0 3000
call waitseq 0 1 10
expect errno ok
call chain 0 nop,nop,fail,hang
call chain 0 nop,hang,nop
call exec 0 nop
call tick 8000
expect state 1 error
expect state 2 timeout
expect state 3 abort
call power turbo
expect errno EBUSY
call timeout mbox_rx 200
fault drop 0
call mgmt 0x108 00000000
expect errno ETIME
call stop
expect errno ok
call mgmt 0x108 00000000
expect errno ENODEV
call ctx
expect errno ENODEV
"""


def test_the_contract_holds_on_the_real_shim() -> None:
    """Chains fail at their first failing sub-command, a hung head ends TIMEOUT and what is
    queued behind it ABORT, waits on seqs never handed out give EINVAL, stop after a
    management timeout succeeds and later management calls give ENODEV."""
    res = _shim(CONTRACT)
    assert res.ok, res.describe()


def test_every_management_reply_is_predicted() -> None:
    """An unsendable request EINVAL (the channel stays good); an opcode the firmware does not
    offer is answered in 4 bytes, a known one in its own size: any size but the asked one is
    EINVAL and leaves the channel bad (EPIPE) until a new one. The model predicts each
    without losing the firmware's side (a timed-out chain after it is still checked)."""
    h = tr.harness_for("npu4", "shim")
    res = _shim("call probe\ncall mgmt 0x108 -\nexpect errno EINVAL\ncall mgmt 0x108 000000\n"
                "expect errno EINVAL\ncall mgmt 0x108 0000000000000000\nexpect errno ok\n"
                "call ctx\ncall chain 0 nop,nop,hang\ncall tick 8000\nexpect state 0 timeout\n")
    assert res.ok, res.describe()
    assert h.model is not None and h.model.tainted is None
    for opcode in ("0x10b", "0x1", "0xffff"):
        res = _shim(f"call probe\ncall mgmt {opcode} 00000000\nexpect errno EINVAL\n"
                    "call mgmt 0x108 00000000\nexpect errno EPIPE\ncall mgmt 0x108 -\n"
                    "expect errno EPIPE\ncall stop\ncall probe\ncall mgmt 0x108 00000000\n"
                    "expect errno ok\n")
        assert res.ok, (opcode, res.describe())


def test_ids_wrap_inside_one_example() -> None:
    """A bulk op runs enough jobs to wrap the user channel's 8-bit message ids; a hang
    after the wrap still ends TIMEOUT, not ABORT."""
    res = _shim("call probe\ncall ctx\ncall bulk 0 300\ncall exec 0 hang\ncall tick 8000\n"
                "expect state 0 timeout\n")
    assert res.ok, res.describe()
    assert tr.harness_for("npu4", "shim").events["bulk completed"] == 300


@pytest.mark.parametrize(("variant", "text", "name"), [
    ("refuse_context", "call probe\ncall ctx\ncall exec 0 nop\n", "model_errno"),
    ("fail_index_off_by_one", "call probe\ncall ctx\ncall chain 0 nop,fail,nop\ncall tick 100\n",
     "model_error_index"),
    ("error_as_success", "call probe\ncall ctx\ncall exec 0 fail\ncall wait 0 1000\n", "model_state"),
    ("accept_debug_bo", "call probe\ncall ctx\ncall dbgbo 64\ncall dbg 0 assign 0\n", "model_errno"),
    ("invalid_op_full_size", "call probe\ncall mgmt 0xffff 00000000\n", "model_errno"),
])
def test_a_lying_firmware_is_caught_by_the_model(variant: str, text: str, name: str) -> None:
    assert _shim(text).ok  # the truth passes ...
    res = _shim(f"fault {variant}\n{text}")  # ... the lie does not
    assert isinstance(res.failure, InvariantViolation) and res.failure.name == name, res.describe()


FORMS_AND_CONFIG = """call probe
call ctx
call exec 0 nop cu
call exec 0 nop dpu
call exec 0 fail preempt
call exec 0 nop preempt_elf@9
call exec 0 nop cu@1
expect errno EINVAL
call cucfg 0 3
call exec 0 nop npu@2
call cucfg 0 2
expect errno EINVAL
call cucfg 0 33
expect errno EINVAL
call cucfg 0 0
expect errno EINVAL
call dbgbo 64
call dbgbo 4096
call dbg 0 assign 0
expect errno EINVAL
call dbg 0 assign 1
call dbg 0 assign 1
expect errno EBUSY
call ctx
call dbg 1 assign 1
expect errno EBUSY
call dbg 1 remove 1
expect errno EINVAL
call dbg 0 remove 1
call dbg 1 assign 1
call destroy 1
call dbg 1 remove 1
expect errno EINVAL
call dbg 0 assign 1
call syncwait 0 1
call syncwait 0 0
expect errno EINVAL
call syncwait 0 99
expect errno EINVAL
call syncwait 1 1
expect errno EINVAL
call qctx 10 30 0 2048
call qctx 4000000000 30 0 0
expect errno EINVAL
call qctx 1000 1000 0 1
expect errno EINVAL
call tick 8000
expect state 0 completed
expect state 2 error
expect state 3 completed
expect state 4 completed
"""


def test_command_forms_and_config_calls_follow_the_contract() -> None:
    """Every command form runs its kernel; a CU the context lacks, a second or bad CU
    table, a small, doubly bound or foreign debug BO, a never-handed-out queue point and
    out-of-range QoS give the driver's errors (docs/spec/jobs.md §4-§6)."""
    res = _shim(FORMS_AND_CONFIG)
    assert res.ok, res.describe()
    assert tr.harness_for("npu4", "shim").events["dbg:EBUSY"] == 2


def test_preempt_forms_need_the_firmware_feature() -> None:
    """npu1's firmware has no PREEMPT feature: both preempt forms are EOPNOTSUPP (ENOTSUP
    is the same errno), the legacy START_CU form still runs."""
    res = tr.replay(tr.parse("chip npu1\ntarget shim\ncall probe\ncall ctx\n"
                             "call exec 0 nop preempt\nexpect errno ENOTSUP\n"
                             "call exec 0 nop preempt_elf\nexpect errno ENOTSUP\n"
                             "call exec 0 nop cu\ncall tick 100\nexpect state 0 completed\n"))
    assert res.ok, res.describe()


def test_the_debug_bo_minimum_is_exact() -> None:
    """The model's verdict is binding: an expectation the shim does not meet (a debug BO
    of exactly DEBUG_BO_MIN is fine, one byte less is not) fails where it should."""
    ok = _shim("call probe\ncall ctx\ncall dbgbo 4096\ncall dbg 0 assign 0\nexpect errno ok\n")
    assert ok.ok, ok.describe()
    bad = _shim("call probe\ncall ctx\ncall dbgbo 4095\ncall dbg 0 assign 0\nexpect errno ok\n")
    assert not bad.ok and "EINVAL" in bad.describe()


def test_a_fault_stops_the_firmware_predictions_but_not_the_drivers() -> None:
    """After a fault the firmware's answers are not predicted, the driver's own rules are:
    a wait on a seq never handed out still must give EINVAL."""
    res = _shim("call probe\ncall ctx\nfault dup -1\ncall exec 0 nop\ncall waitseq 0 5 10\n"
                "expect errno EINVAL\n")
    assert res.ok, res.describe()


# -- the device side: a reference model of each mailbox channel --------------------------------
def _hdr(total: int, mid: int) -> bytes:
    return MSG_HEADER.pack(total, sz_ver(total), mid, 0x108)


def test_reference_x2i_parser() -> None:
    ring = bytearray(64)
    ring[0:20] = _hdr(4, MSG_ID_MAGIC | 1) + bytes(4)
    assert ref_x2i(bytes(ring), 0, 20) == ([MSG_ID_MAGIC | 1], 20, None)
    ring[20:24] = struct.pack("<I", TOMBSTONE)
    assert ref_x2i(bytes(ring), 20, 24)[2] == "tombstone ahead of tail"
    assert ref_x2i(bytes(ring), 20, 0) == ([], 0, None)  # behind the tail: a wrap
    assert ref_x2i(bytes(ring), 0, 22)[2] == "tail"
    ring[0:16] = _hdr(4, 1)  # no magic
    assert ref_x2i(bytes(ring), 0, 20)[2] == "header"


def _device_trace(kind: str) -> str:
    """A device trace for one mailbox or reset oracle, built against the real layout."""
    s = DeviceHarness("npu4")
    s.use_snapshots = False
    b = Builder(s)
    ops = [Op("call", ("bring_up", 1))] + [Op("call", ("msg", 0x108, bytes(4)))] * 2
    s.fresh()
    s.run(ops)
    c = s.chans[0]
    if kind == "tombstone":  # TOMBSTONE at the tail, then the tail moved past it
        tail = s.regs.read_dev(c.x2i_tail)
        ops += b.ring_store(0, tail, struct.pack("<I", TOMBSTONE) + _hdr(4, MSG_ID_MAGIC | 7) + bytes(4))
        ops += [Op("w32", (*b.loc(c.x2i_tail), tail + 24))]
    elif kind == "reset":  # a response while its vector is masked leaves a pending bit
        m = s.chip.msix
        ops += [Op("w32", (m.bar, m.table_offset + 12, 1)), Op("call", ("msg", 0x108, bytes(4))),
                Op("reset", ())]
    return tr.Trace("npu4", ops, [f"planted-bug check: {kind}"]).to_text()


def _replay_in(tree: Path | None, text: str, tmp: Path) -> dict:
    path = tmp / "case.trace"
    path.write_text(text)
    env = {**os.environ, **({"PYTHONPATH": str(tree)} if tree else {})}
    r = subprocess.run([sys.executable, "-m", "xdna_emu.cli", "trace", "replay", str(path), "--json"],
                       capture_output=True, text=True, env=env, cwd=tree or ROOT, timeout=300)
    return json.loads(r.stdout)


def _mutant_tree(tmp: Path, name: str) -> Path:
    """A scratch copy of the tree with one mutant applied (the shim rebuilt for C)."""
    tree = tmp / "tree"
    bench.copy_tree(tree)
    [patch] = bench.MUTANTS.glob(f"*-{name}.patch")
    subprocess.run(["patch", "-p1", "-s", "-i", str(patch)], cwd=tree, check=True)
    if "csrc/" in patch.read_text():
        bench.build_shim(tree, sys.executable)
    return tree


@pytest.mark.parametrize(("mutant", "case", "name"), [
    ("fw-tombstone-ahead", "tombstone", "mbox_consumed"),
    ("fw-i2x-dup", "plain", "mbox_unmatched"),
    ("reset-keeps-pba", "reset", "reset"),
])
def test_device_oracle_fires_on_a_planted_bug(tmp_path: Path, mutant: str, case: str, name: str) -> None:
    text = _device_trace(case)
    assert tr.replay(tr.parse(text)).ok  # the real firmware passes
    got = _replay_in(_mutant_tree(tmp_path, mutant), text, tmp_path)
    assert not got["ok"] and got["name"] == name, got


@pytest.mark.parametrize(("mutant", "text", "name"), [
    ("stop-enodev-after-timeout", "call probe\ncall timeout mbox_rx 200\nfault drop 0\n"
     "call mgmt 0x108 00000000\ncall stop\n", "model_errno"),
    ("wait-future-seq", "call probe\ncall ctx\ncall exec 0 nop\ncall wait 0 1000\n"
     "call waitseq 0 2 10\n", "model_errno"),
    ("tdr-head-abort", "call probe\ncall ctx\ncall exec 0 hang\ncall tick 8000\n", "model_state"),
    ("tdr-chain-hung-index", "call probe\ncall ctx\ncall chain 0 nop,hang,nop\ncall tick 8000\n",
     "model_error_index"),
])
def test_shim_oracle_fires_on_a_planted_bug(tmp_path: Path, mutant: str, text: str, name: str) -> None:
    """The driver's own rules (no firmware lie can plant these): the shim itself mutated."""
    full = "chip npu4\ntarget shim\n" + text
    assert tr.replay(tr.parse(full)).ok
    got = _replay_in(_mutant_tree(tmp_path, mutant), full, tmp_path)
    assert not got["ok"] and got["name"] == name, got
