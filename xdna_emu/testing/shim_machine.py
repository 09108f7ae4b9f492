"""Hypothesis state machine: the real C shim against a misbehaving firmware (issue 5).

Runs in deterministic in-process mode (:mod:`xdna_emu.testing.inproc`): one thread, a
virtual clock, one daemon reused across examples (only the device is reset). Rules are
shim calls and fault switches (:mod:`xdna_emu.fuzz.faults`); invariants: nothing raises
but ``ShimError``, every call returns within its deadline in virtual time, calls on
destroyed handles give EINVAL, and every submitted command is final once TDR had time.
"""

from __future__ import annotations

import errno

from hypothesis import event
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from .. import kernels as K
from ..fuzz.faults import ACT_FAULTS, MSG_FAULTS, FaultInjector
from ..shim import BO_CMD, BO_DEV, ErtState, ShimError, ert_start_npu
from .inproc import InProcess, firmware_dir

FINAL = {ErtState.COMPLETED, ErtState.ERROR, ErtState.ABORT, ErtState.TIMEOUT}
#: Longest a single call may take in virtual time: TDR (2 s) x a few + mailbox RX (1 s).
CALL_BUDGET_NS = 30 * 1_000_000_000
KERNELS = {"nop": K.Kernel.NOP, "fail": K.Kernel.FAIL, "hang": K.Kernel.HANG}

_IP: InProcess | None = None
_FI = FaultInjector()


def shared() -> InProcess:
    """One daemon per process: a fresh device per example costs a reset, not a daemon."""
    global _IP
    if _IP is None:
        _IP = InProcess("npu4", fault=_FI)
    return _IP


class ShimMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.ip = shared()
        self.ip.fresh()
        self.fi = _FI
        self.shim = self.ip.open()
        self.shim.set_timeout("mbox_rx", 1000)
        self.probed = False
        self.ctxs: list[int] = []
        self.dead_ctxs: list[int] = []
        self.jobs: list[tuple[int, int, int]] = []  # (ctx, seq, cmd bo)

    def call(self, name: str, fn, *args, ok=(), **kw):  # noqa: ANN001, ANN202
        """Run a shim call; only ShimError may come out, within the virtual budget."""
        try:
            res, took = self.ip.call(fn, *args, **kw)
        except ShimError as e:
            event(f"{name}: {errno.errorcode.get(e.errno, e.errno)}")
            if e.errno == errno.EPIPE:
                event("state: bad channel / EPIPE")
            assert e.errno not in (0, None), f"{name} failed without errno"
            return None
        assert took <= CALL_BUDGET_NS, f"{name} took {took / 1e9:.1f} s virtual"
        event(f"{name}: ok")
        return res

    @initialize()
    def probe(self) -> None:
        self.probed = self.call("probe", self.ip.probe) is not None

    @rule(fault=st.sampled_from(sorted(MSG_FAULTS)), chan=st.sampled_from([0, -1]))
    def arm(self, fault: str, chan: int) -> None:
        self.fi.arm(fault, chan=chan)
        event(f"fault {fault} chan={'mgmt' if chan == 0 else 'user'}")

    @rule(fault=st.sampled_from(sorted(ACT_FAULTS)))
    def act(self, fault: str) -> None:
        self.fi.act(fault, 0)

    @rule()
    def mgmt_msg(self) -> None:
        self.call("mgmt_msg", self.shim.mgmt_msg, 0x108, b"\0" * 4, 20, 1000)

    @precondition(lambda self: len(self.ctxs) < 3)
    @rule()
    def hwctx_create(self) -> None:
        h = self.call("hwctx_create", self.shim.hwctx_create)
        if h is not None:
            self.ctxs.append(h)

    @precondition(lambda self: self.ctxs)
    @rule(i=st.integers(0, 2))
    def hwctx_destroy(self, i: int) -> None:
        h = self.ctxs.pop(i % len(self.ctxs))
        self.call("hwctx_destroy", self.shim.hwctx_destroy, h)
        self.dead_ctxs.append(h)
        self.jobs = [j for j in self.jobs if j[0] != h]

    @precondition(lambda self: self.ctxs)
    @rule(i=st.integers(0, 2), kernel=st.sampled_from(sorted(KERNELS)))
    def exec(self, i: int, kernel: str) -> None:
        s, h = self.shim, self.ctxs[i % len(self.ctxs)]
        instr = self.call("bo_create", s.bo_create, BO_DEV, 64)
        cmd = self.call("bo_create", s.bo_create, BO_CMD, 4096)
        if instr is None or cmd is None:
            return
        s.bo_map(instr)[: K.DESC.size] = K.encode(K.Desc(KERNELS[kernel]))
        d = ert_start_npu(s.bo_info(instr)["xdna_addr"], K.DESC.size)
        s.bo_map(cmd)[: len(d)] = d
        seq = self.call(f"exec {kernel}", s.exec, h, cmd)
        if seq is not None:
            self.jobs.append((h, seq, cmd))

    @precondition(lambda self: self.jobs)
    @rule(timeout=st.sampled_from([0, 100, 3000, 10000]))
    def wait(self, timeout: int) -> None:
        h, seq, cmd = self.jobs[0]
        self.call("wait", self.shim.wait, h, seq, timeout)

    @precondition(lambda self: self.dead_ctxs)
    @rule()
    def use_after_destroy(self) -> None:
        h = self.dead_ctxs[-1]
        if h in self.ctxs:
            return
        try:
            self.shim.hwctx_info(h)
        except ShimError as e:
            assert e.errno in (errno.EINVAL, errno.ENOENT), e
        else:
            raise AssertionError(f"hwctx_info on destroyed context {h} succeeded")

    @rule()
    def suspend_resume(self) -> None:
        if self.call("suspend", self.shim.suspend) is not None or True:
            self.call("resume", self.shim.resume)

    @rule()
    def stop_probe(self) -> None:
        self.call("stop", self.shim.stop)
        self.ctxs.clear()
        self.jobs.clear()
        self.probed = self.call("probe", self.shim.probe, firmware_dir("npu4")) is not None

    @invariant()
    def no_hook_error(self) -> None:
        assert self.ip.hook_error is None, self.ip.hook_error

    def teardown(self) -> None:
        # every submitted command reaches a final state once TDR has had time
        for h, seq, cmd in list(self.jobs):
            if h not in self.ctxs:
                continue
            self.call("final wait", self.shim.wait, h, seq, 15000)
            st_ = self.shim.cmd_state(cmd)
            event(f"final state {st_.name}")
            info = self.call("hwctx_info", self.shim.hwctx_info, h)
            if info is not None and self.shim.info()["state"] == "probed":
                assert st_ in FINAL or info["state"] != 0, f"cmd {seq} of ctx {h} is {st_.name}"
        self.ip.close_shim()
