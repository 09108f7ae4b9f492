"""Hypothesis state machine: the real C shim against a misbehaving firmware.

Every rule is one shim-trace op (two are short scenarios: a management answer lost, the
recovery after TDR) (:mod:`xdna_emu.fuzz.shim_trace`) applied to a shared
:class:`~xdna_emu.fuzz.shim_trace.ShimHarness`: deterministic in-process mode, one thread,
a virtual clock, one daemon reused across examples (only the device is reset). The session
checks the shim's promises after every op (only ``ShimError`` escapes, with an errno; every
call within its virtual deadline; a bad management channel stays bad; stale handles give
EINVAL; a successful wait leaves a final command), and teardown checks that every submitted
command ended in a final state. A failure is written as a replayable shim trace to
``$XDNA_FUZZ_ARTIFACTS`` (``npu4-shim-machine.trace``) and named in the error's notes.

Outcomes (``exec: EPIPE``, ``final abort``, ``fault late``...) are reported with
``hypothesis.event`` and counted in :data:`VISITS`, so a run shows it reached the rare ones.

:class:`ShimConfigMachine` is a second machine over the same harness that also draws the
driver's newer calls (every command form, QoS contexts, CU tables, debug BOs, waits on a
queue handle). It is split off rather than weighted in, so the first machine's rule mix,
and with it the outcomes its test must reach, stay as they are.
"""

from __future__ import annotations

from collections import Counter

from hypothesis import event
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule

from ..testing.inproc import InProcess
from .faults import ACT_FAULTS, MSG_FAULTS
from .invariants import Failure
from .lang import Op
from .machines import artifact_dir
from .model import FORMS
from .shim_target import CU_COUNTS, DBG_SIZES, MGMT_OPCODES, QOS
from .shim_trace import KERNELS, ShimHarness
from .trace import Trace, harness_for

VISITS: Counter[str] = Counter()


def session() -> ShimHarness:
    """One daemon per process (the one trace replay uses too): a fresh device per example
    costs a reset, not a daemon."""
    return harness_for("npu4", "shim")


def shared() -> InProcess:
    """The shared session's in-process daemon (tests drive it directly too)."""
    return session().ip


class ShimMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.s = session().fresh()

    def _do(self, *op: Op) -> None:
        for o in op:
            try:
                self.s.apply(o)
            except Failure as exc:
                exc.add_note(f"replayable trace: {self._save(exc)} (xdna-emu trace replay / minimize)")
                raise
        self._count()

    def _save(self, exc: Failure) -> str:
        out = artifact_dir()
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"{self.s.chip}-shim-machine.trace"
        trace = Trace(self.s.chip, list(self.s.executed), [f"ShimMachine: {exc}"], target="shim")
        path.write_text(trace.to_text())
        return str(path)

    def _count(self) -> None:
        for name, n in self.s.events.items():
            VISITS[name] += n
            event(name)
        self.s.events.clear()

    @property
    def has_jobs(self) -> bool:
        return bool(self.s.jobs)

    @initialize()
    def probe(self) -> None:
        self._do(Op("call", ("probe",)))

    @rule(fault=st.sampled_from(sorted(MSG_FAULTS)), chan=st.sampled_from([0, -1]),
          count=st.sampled_from([1, 1, 2]), arg=st.sampled_from([0, 1, 2, 300, 6000]))
    def arm(self, fault: str, chan: int, count: int, arg: int) -> None:
        self._do(Op("fault", (fault, chan, count, arg)))

    @rule(fault=st.sampled_from(sorted(ACT_FAULTS)), chan=st.sampled_from([0, -1]))
    def act(self, fault: str, chan: int) -> None:
        self._do(Op("fault", (fault, chan)))

    @rule(opcode=st.sampled_from(list(dict.fromkeys(MGMT_OPCODES))),
          req=st.sampled_from([bytes(4), bytes(8), b""]))
    def mgmt(self, opcode: int, req: bytes) -> None:
        self._do(Op("call", ("mgmt", opcode, req)))

    @precondition(lambda self: len(self.s.ctxs) - len(self.s.dead) < 3)
    @rule()
    def ctx(self) -> None:
        self._do(Op("call", ("ctx",)))

    @precondition(lambda self: self.s.ctxs)
    @rule(i=st.integers(0, 3))
    def destroy(self, i: int) -> None:
        self._do(Op("call", ("destroy", i)))

    @precondition(lambda self: self.s.ctxs)
    @rule(i=st.integers(0, 3), kernel=st.sampled_from(KERNELS), wait=st.booleans(),
          timeout=st.sampled_from([100, 3000, 10000]))
    def exec(self, i: int, kernel: str, wait: bool, timeout: int) -> None:
        """Submit, and often wait at once, so every final state is reached in few steps."""
        self._do(Op("call", ("exec", i, kernel)))
        if wait and self.s.last == "ok":
            self._do(Op("call", ("wait", len(self.s.jobs) - 1, timeout)))

    @rule(opcode=st.sampled_from(list(dict.fromkeys(MGMT_OPCODES))))
    def mgmt_lost(self, opcode: int) -> None:
        """A management message whose answer the firmware drops: the mailbox timeout (in
        virtual time), and what the driver does with the channel afterwards."""
        self._do(Op("fault", ("drop", 0, 1, 0)), Op("call", ("mgmt", opcode, bytes(4))))

    @precondition(lambda self: self.s.ctxs)
    @rule(i=st.integers(0, 3))
    def tdr_recovery(self, i: int) -> None:
        """The driver's recovery (docs/spec/jobs.md §3): a hang at the head with a job
        queued behind it, waited out by TDR, then the same context used again by a nop and
        a failing job (whatever faults are armed, each outcome stays the model's to judge)."""
        self._do(Op("call", ("exec", i, "hang")))
        if self.s.last != "ok":
            return
        head = len(self.s.jobs) - 1
        self._do(Op("call", ("exec", i, "nop")), Op("call", ("wait", head, 10000)))
        for kernel in ("nop", "fail"):
            self._do(Op("call", ("exec", i, kernel)))
            if self.s.last == "ok":
                self._do(Op("call", ("wait", len(self.s.jobs) - 1, 3000)))

    @precondition(lambda self: self.has_jobs)
    @rule(j=st.integers(0, 7), timeout=st.sampled_from([0, 100, 3000, 10000]))
    def wait(self, j: int, timeout: int) -> None:
        self._do(Op("call", ("wait", j, timeout)))

    @precondition(lambda self: self.s.ctxs)
    @rule(i=st.integers(0, 3))
    def info(self, i: int) -> None:
        self._do(Op("call", ("info", i)))

    @rule()
    def suspend_resume(self) -> None:
        self._do(Op("call", ("suspend",)), Op("call", ("resume",)))

    @rule()
    def stop_probe(self) -> None:
        self._do(Op("call", ("stop",)), Op("call", ("probe",)))

    @rule(ms=st.sampled_from([10, 500, 2500, 6000]))
    def tick(self, ms: int) -> None:
        self._do(Op("call", ("tick", ms)))

    @rule(ms=st.sampled_from([5000, 5000, 0, 300]))
    def autosuspend(self, ms: int) -> None:
        """The runtime-PM delay: 0 never, 300 ms within most ticks (docs/spec/jobs.md §6)."""
        self._do(Op("call", ("timeout", "autosuspend", ms)))

    def teardown(self) -> None:
        try:
            self.s.finish()
        except Failure as exc:
            exc.add_note(f"replayable trace: {self._save(exc)} (the end-of-trace check failed)")
            raise
        finally:
            self._count()
            self.s.ip.close_shim()


class ShimConfigMachine(ShimMachine):
    """:class:`ShimMachine` plus the configuration calls and every command form."""

    @precondition(lambda self: self.s.ctxs)
    @rule(i=st.integers(0, 3), kernel=st.sampled_from(KERNELS), wait=st.booleans(),
          timeout=st.sampled_from([100, 3000, 10000]),
          form=st.sampled_from(list(FORMS) + ["cu@1", "npu@2"]))
    def exec_form(self, i: int, kernel: str, wait: bool, timeout: int, form: str) -> None:
        """Submit in any command form (``@n``: on CU n), often waiting at once."""
        self._do(Op("call", ("exec", i, kernel, form)))
        if wait and self.s.last == "ok":
            self._do(Op("call", ("wait", len(self.s.jobs) - 1, timeout)))

    @rule(qos=st.sampled_from(QOS))
    def qctx(self, qos: tuple[int, int, int, int]) -> None:
        """A context with QoS (valid, out of range or without any)."""
        self._do(Op("call", ("qctx", *qos)))

    @precondition(lambda self: self.s.ctxs)
    @rule(i=st.integers(0, 3), count=st.sampled_from(CU_COUNTS))
    def cucfg(self, i: int, count: int) -> None:
        self._do(Op("call", ("cucfg", i, count)))

    @precondition(lambda self: self.s.ctxs)
    @rule(i=st.integers(0, 3), size=st.sampled_from([*DBG_SIZES, 4096, 8192]), new=st.booleans(),
          how=st.sampled_from(["assign", "assign", "remove"]), b=st.integers(0, 2))
    def dbg(self, i: int, size: int, new: bool, how: str, b: int) -> None:
        """Bind or unbind a debug BO (made first when asked or when there is none)."""
        if new or not self.s.dbg_bos:
            self._do(Op("call", ("dbgbo", size)))
        self._do(Op("call", ("dbg", i, how, b)))

    @precondition(lambda self: self.s.ctxs)
    @rule(i=st.integers(0, 3), seq=st.sampled_from([0, 1, 1, 2, 5, -1]))
    def syncwait(self, i: int, seq: int) -> None:
        self._do(Op("call", ("syncwait", i, seq)))
