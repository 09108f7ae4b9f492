"""Hypothesis state machine over the in-process device (the CI workhorse of the fuzzing kit).

Each rule builds trace ops with :class:`xdna_emu.fuzz.ops.Builder` and applies them to a
:class:`~xdna_emu.fuzz.ops.DeviceHarness`, which checks every invariant after every op. So a
failure is always a replayable trace: it is written to ``$XDNA_FUZZ_ARTIFACTS`` (default
``$TMPDIR/xdna-fuzz``) as ``<chip>-machine.trace`` and named in the error's notes; the
last one written is the shrunk example Hypothesis reports.

Rare states (channel error, hung context, suspended firmware, held async events,
recovery after an error or reset, driver timeouts) are counted in :data:`VISITS` and
reported with ``hypothesis.event`` so a run shows that it reached them.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections import Counter
from pathlib import Path

from hypothesis import event
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from ..fw.messages import LAYOUTS
from ..testing import strategies as xs
from .invariants import Failure
from .lang import Op
from .ops import A4_KINDS, Builder
from .trace import Trace, harness_for

VISITS: Counter[str] = Counter()  # state -> steps spent in it, over every example
_PAYLOADS: dict[int, st.SearchStrategy[bytes]] = {}


def request_payload(opcode: int) -> st.SearchStrategy[bytes]:
    """``strategies.request_payload`` built once per layout: a strategy made inside a rule
    is validated again on every draw, which cost more than running the step."""
    key = opcode if opcode in LAYOUTS else -1  # every opcode without a layout draws alike
    strat = _PAYLOADS.get(key)
    if strat is None:
        strat = _PAYLOADS[key] = xs.request_payload(key)
    return strat


def artifact_dir() -> Path:
    return Path(os.environ.get("XDNA_FUZZ_ARTIFACTS") or Path(tempfile.gettempdir()) / "xdna-fuzz")


class DeviceMachine(RuleBasedStateMachine):
    """Raw and semantic driver actions against one device; subclass to pick the chip."""

    chip = "npu4"

    def __init__(self) -> None:
        super().__init__()
        logging.getLogger("xdna_emu").setLevel(logging.CRITICAL)
        self.s = harness_for(self.chip).fresh()
        self.b = Builder(self.s)
        self.had_error = False

    # -- plumbing ---------------------------------------------------------------------------
    def _do(self, ops: list[Op], start: bool = False) -> None:
        """Apply ops (or, with ``start``, begin the example with them, restored from a
        snapshot when it ran before); a failure gets its replayable trace saved and named."""
        try:
            if start:
                self.s.start(ops)
            else:
                for op in ops:
                    self.s.apply(op)
        except Failure as exc:
            path = self.save_trace(exc)
            exc.add_note(f"replayable trace: {path} (xdna-emu trace replay / minimize)")
            raise

    def save_trace(self, exc: Failure) -> Path:
        out = artifact_dir()
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"{self.chip}-machine.trace"
        trace = Trace(self.chip, list(self.s.executed),
                      [f"found by {type(self).__name__}: {exc}"])
        path.write_text(trace.to_text())
        return path

    @property
    def running(self) -> bool:
        return self.s.dev.fw is not None

    @property
    def has_mgmt(self) -> bool:
        return self.running and self.s.drv is not None and self.s.drv.mgmt is not None

    # -- start ------------------------------------------------------------------------------
    @initialize(how=st.sampled_from(["cold", "boot", "bring_up", "bring_up"]))
    def start(self, how: str) -> None:
        """The starts repeat in every example: after the first, a snapshot is restored."""
        ops = {"boot": [Op("call", ("boot",))], "bring_up": [Op("call", ("bring_up", 1))]}.get(how)
        if ops:
            self._do(ops, start=True)

    # -- raw register and memory traffic ---------------------------------------------------
    @rule(idx=xs.u8, value=xs.u32, trapped=st.booleans())
    def reg_write(self, idx: int, value: int, trapped: bool) -> None:
        self._do(self.b.reg_write(idx, value, trapped))

    @rule(bar=xs.u8, off=st.one_of(xs.u32, st.integers(0, 0x80010)), value=xs.u32)
    def raw_write(self, bar: int, off: int, value: int) -> None:
        self._do(self.b.raw_write(bar, off, value))

    @rule(idx=xs.u8)
    def reg_read(self, idx: int) -> None:
        self._do(self.b.raw_read(idx))

    @rule(chan=xs.small, off=xs.u16, data=st.binary(min_size=1, max_size=32), i2x=st.booleans())
    def ring_store(self, chan: int, off: int, data: bytes, i2x: bool) -> None:
        self._do(self.b.ring_store(chan, off, data, i2x))

    @rule(data=st.data(), chan=st.integers(0, 3), flags=xs.post_flags, mid=xs.u8,
          lie=xs.u16, opcode=st.one_of(xs.known_opcodes, xs.opcodes))
    def post(self, data: st.DataObject, chan: int, flags: int, mid: int, lie: int,
             opcode: int) -> None:
        payload = data.draw(request_payload(opcode))
        self._do(self.b.post(chan, opcode, payload, flags, mid, lie))

    @rule(chan=st.integers(0, 3), consume=st.booleans())
    def ack(self, chan: int, consume: bool) -> None:
        self._do(self.b.ack(chan, consume))

    @rule(ns=xs.ticks)
    def tick(self, ns: int) -> None:
        self._do([Op("tick", (ns,))])

    @rule()
    def reset(self) -> None:
        self._do([Op("reset")])

    @rule(on=st.booleans())
    def bus_master(self, on: bool) -> None:
        self._do([Op("fault", ("bus_master", int(on)))])

    # -- PSP / SMU ----------------------------------------------------------------------------
    @rule(cmd=xs.smu_cmds, arg=st.one_of(st.integers(0, 8), xs.u32))
    def smu(self, cmd: int, arg: int) -> None:
        self._do(self.b.smu(cmd, arg))

    @rule(cmd=xs.psp_cmds, a0=xs.u32, a1=xs.u32, a2=xs.u32, good=st.booleans())
    def psp(self, cmd: int, a0: int, a1: int, a2: int, good: bool) -> None:
        self._do(self.b.psp(cmd, a0, a1, a2, good))

    @rule(flip=st.one_of(st.just(-1), st.integers(0, 0x18100)))
    def fw_image(self, flip: int) -> None:
        self._do([Op("call", ("fw_image", 0x1_0000_0000, flip))])

    @rule(full=st.booleans())
    def bring_up(self, full: bool) -> None:
        self._do([Op("call", ("bring_up", 1) if full else ("boot",))])

    # -- well-formed driver calls ------------------------------------------------------------
    @precondition(lambda self: self.has_mgmt)
    @rule(data=st.data(), opcode=st.one_of(xs.known_opcodes, xs.opcodes), exact=st.booleans())
    def msg(self, data: st.DataObject, opcode: int, exact: bool) -> None:
        self._do(self.b.msg(opcode, data.draw(request_payload(opcode)), exact))

    @precondition(lambda self: self.has_mgmt)
    @rule(which=st.integers(0, 4))
    def drain(self, which: int) -> None:
        self._do([Op("call", ("drain", which))])

    @precondition(lambda self: self.running)
    @rule(pasid=st.integers(0, 2))
    def client(self, pasid: int) -> None:
        self._do([Op("call", ("client", pasid))])

    @precondition(lambda self: self.running)
    @rule(client=st.integers(0, 2), start=st.integers(-1, 6), num=st.integers(0, 3))
    def ctx_create(self, client: int, start: int, num: int) -> None:
        self._do([Op("call", ("ctx_create", client, start, num))])

    @precondition(lambda self: bool(self.s.contexts))
    @rule(which=st.integers(0, 3), kind=xs.kernel_kinds, count=st.integers(1, 3))
    def submit(self, which: int, kind: int, count: int) -> None:
        self._do([Op("call", ("submit", which, kind, count))])

    @precondition(lambda self: bool(self.s.contexts))
    @rule(which=st.integers(0, 3))
    def ctx_destroy(self, which: int) -> None:
        self._do([Op("call", ("ctx_destroy", which))])

    @precondition(lambda self: self.running)
    @rule(data=st.data(), pasid=st.integers(0, 3), opcode=xs.known_opcodes)
    def proxy(self, data: st.DataObject, pasid: int, opcode: int) -> None:
        self._do([Op("call", ("proxy", pasid, opcode, data.draw(request_payload(opcode))))])

    # -- state visits ---------------------------------------------------------------------------
    @invariant()
    def count_states(self) -> None:
        states = self.s.visit_states()
        if "channel_error" in states or "context_hung" in states:
            self.had_error = True
        elif self.had_error and self.running and self.s.dev.mailbox.channels:
            states.append("recovered")
            self.had_error = False
        for name in self.s.events:
            if name.startswith("driver_E") or name in ("reset", "job_failed", "msg_unanswered_ok"):
                states.append(name)
        self.s.events.clear()
        for name in states:
            VISITS[name] += 1
            event(name)


class Npu1Machine(DeviceMachine):
    chip = "npu1"


class Aie4Machine(RuleBasedStateMachine):
    """The AIE4 op vocabulary (docs/spec/fuzzing.md §8) as Hypothesis rules on npu3."""

    chip = "npu3"
    save_trace = DeviceMachine.save_trace
    _do = DeviceMachine._do

    def __init__(self) -> None:
        super().__init__()
        logging.getLogger("xdna_emu").setLevel(logging.CRITICAL)
        self.s = harness_for(self.chip).fresh()
        self.b = Builder(self.s)

    @initialize(timeout_ms=st.sampled_from([3, 20, 2000]))
    def start(self, timeout_ms: int) -> None:
        self._do([Op("call", ("a4_bring_up", timeout_ms)), Op("call", ("a4_ctx",))], start=True)

    @rule()
    def ctx(self) -> None:
        self._do([Op("call", ("a4_ctx",))])

    @rule(q=xs.small, kind=st.integers(0, len(A4_KINDS) - 1), n=st.integers(1, 4))
    def submit(self, q: int, kind: int, n: int) -> None:
        self._do([Op("call", ("a4_submit", q, kind, n))])

    @rule(q=xs.small, kind=st.integers(0, len(A4_KINDS) - 1), ahead=st.integers(0, 3),
          junk=st.binary(max_size=64))
    def packet(self, q: int, kind: int, ahead: int, junk: bytes) -> None:
        self._do([Op("call", ("a4_pkt", q, kind, ahead, junk))])

    @rule(q=xs.small, delta=st.one_of(st.integers(0, 4), st.integers(30, 48), st.integers(-4, -1)))
    def publish(self, q: int, delta: int) -> None:
        self._do([Op("call", ("a4_publish", q, delta))])

    @rule(q=xs.small)
    def ring(self, q: int) -> None:
        self._do([Op("call", ("a4_ring", q))])

    @rule(q=xs.small, forced=st.integers(0, 1))
    def destroy(self, q: int, forced: int) -> None:
        self._do([Op("call", ("a4_destroy", q, forced))])

    @rule(ms=st.integers(1, 64))
    def tick(self, ms: int) -> None:
        self._do([Op("tick", (ms * 1_000_000,))])

    @rule(idx=xs.u8, value=xs.u32)
    def reg_write(self, idx: int, value: int) -> None:
        self._do(self.b.reg_write(idx, value))

    @rule()
    def reset(self) -> None:
        self._do([Op("reset")])

    @invariant()
    def count_states(self) -> None:
        for name in ("ctx_timeouts", "stale_doorbells", "empty_doorbells", "queue_overruns",
                     "bad_packets", "jobs_completed"):
            if self.s.dev.stats.get(name):
                VISITS[f"a4_{name}"] += 1
                event(name)


DeviceTest = DeviceMachine.TestCase
Npu1Test = Npu1Machine.TestCase
