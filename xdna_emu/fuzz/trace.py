"""Replayable text traces of what a driver did to the device, a replayer and a minimiser.

One op per line, ``#`` starts a comment, integers are decimal or ``0x`` hex, byte strings
are bare hex (``-`` for none). The first non-comment line names the chip::

    chip npu4
    w32 5 0x900 0x3            # trapped write: bar, offset, value
    r32 4 0xaec                # read (no effect; kept for context)
    shm 2 0x0 100000000...     # plain store into BAR memory: bar, offset, bytes
    host 0 0x100000000 00ff    # store into host memory behind the IOMMU: pasid, addr, bytes
    dma_map 1 0x7f0000000000 0x100000 3   # pasid, addr, size, perm (1 read, 2 write)
    dma_unmap 1 0x7f0000000000 0x100000
    tick 1000000               # advance the virtual clock (ns), then poll
    reset                      # function-level reset
    fault bus_master 0         # a host-side fault
    call bring_up 1            # a semantic step through the test driver (xdna_emu.fuzz.ops)
    expect status psp.state running      # outcome lines (see lang.check_expect)

A ``target shim`` line after the chip line makes it a shim trace: shim calls and firmware
faults run against the real C shim in deterministic in-process mode
(:mod:`.shim_trace` documents its lines and promises). Replay and minimise work the same.

Replay runs the ops on a fresh in-process device with every invariant of
:mod:`.invariants` checked after every line. :func:`minimize` removes lines in shrinking
chunks (ddmin) and then simplifies operands, keeping the same failure signature.
``python -m xdna_emu.fuzz.trace record-golden`` regenerates ``fixtures/traces``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..fw.messages import HEAP_DEV_ADDR
from ..pci.function import Observer
from .invariants import Failure
from .lang import Op, TraceError, format_op, status_value, typed_operands
from .ops import DeviceHarness, image_for

#: operand kinds per verb: i int, b bytes, s string, * the rest as ints
SPECS = {"w32": "iii", "r32": "ii", "shm": "iib", "host": "iib", "dma_map": "iiii",
         "dma_unmap": "iii", "tick": "i", "reset": "", "cfg": "ib"}
CALL_SPECS = {"msg": "ib", "proxy": "iib"}
REPO = Path(__file__).resolve().parents[2]
GOLDEN_DIR = REPO / "fixtures" / "traces"
REGRESSION_DIR = REPO / "fixtures" / "regressions"


@dataclass
class Trace:
    chip: str
    ops: list[Op] = field(default_factory=list)
    header: list[str] = field(default_factory=list)  # leading comment lines, without '#'
    lines: list[int] = field(default_factory=list)  # source line of each op (parse only)
    target: str = "device"  # or "shim" (xdna_emu.fuzz.shim_trace)

    def to_text(self) -> str:
        out = [f"# {h}".rstrip() for h in self.header]
        out.append(f"chip {self.chip}")
        if self.target != "device":
            out.append(f"target {self.target}")
        out += [format_op(op) for op in self.ops]
        return "\n".join(out) + "\n"


TARGETS = ("device", "shim")


def parse_line(line: str, target: str = "device") -> Op | None:
    text = line.split("#", 1)[0].strip()
    if not text:
        return None
    verb, *toks = text.split()
    if target == "shim":
        if verb in ("call", "fault", "ioctl"):
            from .shim_trace import parse_op  # lazy: loads the C shim

            return parse_op(verb, toks)
        if verb == "expect":
            return Op(verb, tuple(toks))
        raise TraceError(f"verb {verb!r} is not used in shim traces (call, fault, ioctl, expect)")
    if verb in SPECS:
        if len(toks) != len(SPECS[verb]):
            raise TraceError(f"{verb} takes {len(SPECS[verb])} operands, got {len(toks)}")
        return Op(verb, typed_operands(SPECS[verb], toks))
    if verb in ("call", "fault"):
        if not toks:
            raise TraceError(f"{verb} needs a name")
        spec = CALL_SPECS.get(toks[0], "*") if verb == "call" else "*"
        return Op(verb, (toks[0], *typed_operands(spec, toks[1:])))
    if verb == "expect":
        return Op(verb, tuple(toks))
    raise TraceError(f"unknown verb {verb!r}")


def parse(text: str) -> Trace:
    header: list[str] = []
    chip: str | None = None
    ops: list[Op] = []
    lines: list[int] = []
    target = "device"
    for no, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if chip is None and stripped.startswith("#"):
            header.append(stripped[1:].strip())
            continue
        try:
            if chip is None:
                if not stripped:
                    continue
                parts = stripped.split("#", 1)[0].split()
                if len(parts) != 2 or parts[0] != "chip":
                    raise TraceError("the first line must be 'chip NAME'")
                chip = parts[1]
                continue
            parts = stripped.split("#", 1)[0].split()
            if parts[:1] == ["target"]:
                if ops or len(parts) != 2 or parts[1] not in TARGETS:
                    raise TraceError(f"'target {' | '.join(TARGETS)}' must come before the first op")
                target = parts[1]
                continue
            op = parse_line(line, target)
        except TraceError as exc:
            raise TraceError(f"line {no}: {exc}") from None
        if op is not None:
            ops.append(op)
            lines.append(no)
    if chip is None:
        raise TraceError("empty trace (no 'chip NAME' line)")
    return Trace(chip, ops, header, lines, target)


def load(path: str | Path) -> Trace:
    return parse(Path(path).read_text())


# -- expectations ---------------------------------------------------------------------------
# -- replay ---------------------------------------------------------------------------------
@dataclass
class ReplayResult:
    ok: bool
    steps: int
    failure: Failure | None = None
    step: int | None = None  # index of the failing op
    line: int | None = None  # its source line, when parsed from text

    @property
    def signature(self) -> tuple[str, str] | None:
        return self.failure.signature if self.failure else None

    def describe(self) -> str:
        if self.ok:
            return f"ok: {self.steps} ops replayed, all invariants held"
        where = f"line {self.line}" if self.line else f"op {self.step}"
        return f"FAIL at {where}: {self.failure}"


_HARNESSES: dict[tuple[str, str], Any] = {}


def harness_for(chip: str, target: str = "device") -> Any:
    """A reusable session per chip and target (made fresh by each replay): a device
    :class:`~.ops.DeviceHarness`, or a :class:`~.shim_trace.ShimHarness` (one daemon each)."""
    s = _HARNESSES.get((chip, target))
    if s is None:
        if target == "shim":
            from .shim_trace import ShimHarness  # lazy: loads the C shim

            s = ShimHarness(chip)
        else:
            s = DeviceHarness(chip)
        _HARNESSES[(chip, target)] = s
    return s


def replay(trace: Trace, session: Any = None) -> ReplayResult:
    """Run the trace on a fresh device. Failures are results; a malformed line raises
    TraceError. A session with end-of-trace checks (``finish``) runs them as one more step;
    one holding per-thread state (``release``) drops it afterwards."""
    s = (session or harness_for(trace.chip, trace.target)).fresh()
    try:
        return resume(s, trace.ops, 0, trace.lines)
    finally:
        release = getattr(s, "release", None)
        if release is not None:
            release()


def resume(s: Any, ops: list[Op], start: int = 0, lines: list[int] | None = None) -> ReplayResult:
    """Run ``ops[start:]`` on session ``s`` as it is, then its end-of-trace checks: the body
    of :func:`replay`, which the shim target's fork server also runs in a fork that goes on
    from a device the first ops already brought up (docs/spec/fuzzing.md §9)."""
    lines = lines or []
    for i in range(start, len(ops)):
        try:
            s.apply(ops[i])
        except Failure as exc:
            return ReplayResult(False, i + 1, exc, i, lines[i] if i < len(lines) else None)
    finish = getattr(s, "finish", None)
    if finish is not None:
        try:
            finish()
        except Failure as exc:
            return ReplayResult(False, len(ops), exc, len(ops))
    return ReplayResult(True, len(ops))


# -- minimiser ------------------------------------------------------------------------------
def minimize(trace: Trace, max_runs: int = 4000, log: Callable[[str], None] | None = None,
             any_failure: bool = False) -> Trace:
    """The smallest trace found that fails the same way: the same kind, name and message,
    so an ``expect`` that saw the wrong state does not shrink into one with nothing to look
    at (``any_failure``: any failure will do). ddmin on lines, then operand simplification:
    integers towards 0, byte strings halved and zeroed."""
    first = replay(trace)
    if first.ok or first.failure is None:
        raise ValueError("the trace does not fail; nothing to minimise")
    want = first.failure
    runs = 0

    def same(r: ReplayResult) -> bool:
        f = r.failure
        if f is None:
            return False
        return any_failure or (f.signature, f.message) == (want.signature, want.message)

    def fails(ops: list[Op]) -> int | None:
        """Index of the failing op when the candidate still shows the bug."""
        nonlocal runs
        runs += 1
        try:
            r = replay(Trace(trace.chip, ops, target=trace.target))
        except TraceError:
            return None
        return r.step if same(r) else None

    ops = list(trace.ops[: first.step + 1])  # type: ignore[operator]
    # (a shim trace failing its end-of-trace check has step == len(ops): all ops stay)
    n = max(1, len(ops) // 2)
    while n >= 1 and runs < max_runs:
        i, changed = 0, False
        while i < len(ops) and runs < max_runs:
            cand = ops[:i] + ops[i + n :]
            at = fails(cand) if cand else None
            if at is not None:
                ops, changed = cand[: at + 1], True
            else:
                i += n
        if log:
            log(f"chunk {n}: {len(ops)} ops ({runs} replays)")
        if not changed:
            n //= 2
    # operands
    for idx in range(len(ops)):
        args = list(ops[idx].args)
        for j, a in enumerate(args):
            for cand_v in _simpler(a):
                if runs >= max_runs:
                    break
                trial = [*args[:j], cand_v, *args[j + 1 :]]
                cand = [*ops[:idx], Op(ops[idx].verb, tuple(trial)), *ops[idx + 1 :]]
                at = fails(cand)
                if at is not None:
                    args, ops = trial, cand[: at + 1]
                    a = cand_v
        if idx >= len(ops):
            break
    if log:
        log(f"done: {len(trace.ops)} -> {len(ops)} ops in {runs} replays")
    return Trace(trace.chip, ops, list(trace.header), target=trace.target)


def _simpler(v: Any) -> list[Any]:
    if isinstance(v, bool) or isinstance(v, str):
        return []
    if isinstance(v, int):
        if v == 0:
            return []
        out = [0]
        if v > 0:
            out += [v & ~(1 << b) for b in range(v.bit_length() - 1, -1, -1) if v >> b & 1]
        return out
    if isinstance(v, bytes) and v:
        half = (len(v) // 2 + 3) & ~3
        out = [v[:half], bytes(len(v))] if half < len(v) else [bytes(len(v))]
        return [c for c in out if c != v]
    return []


# -- recording (golden traces) ----------------------------------------------------------------
def _runs(a: np.ndarray, b: np.ndarray, gap: int = 16) -> list[tuple[int, int]]:
    """(start, end) byte ranges where a and b differ, nearby differences merged, 4-aligned."""
    idx = np.flatnonzero(a != b)
    if idx.size == 0:
        return []
    out: list[tuple[int, int]] = []
    start = prev = int(idx[0])
    for i in idx[1:].tolist():
        if i - prev > gap:
            out.append((start, prev + 1))
            start = i
        prev = i
    out.append((start, prev + 1))
    return [(s & ~3, min(len(a), (e + 3) & ~3)) for s, e in out]


class Recorder(Observer):
    """Record what driver code does to a session's device as trace ops (an observer of
    the session's PCI function).

    Every trapped write becomes ``w32``, preceded by ``shm``/``host`` lines for the host's
    plain stores since the last write (found by diffing against shadows) and followed by
    ``expect bytes`` / ``expect irqs`` lines for what the device changed, so a golden trace
    pins the device's behaviour byte for byte.
    """

    def __init__(self, chip: str, expect_device: bool = True) -> None:
        self.s = DeviceHarness(chip)
        self.ops: list[Op] = []
        self.expect_device = expect_device
        self._shadow = {b: np.array(m, dtype=np.uint8) for b, m in self.s.regs.bytes.items()}
        self._host: list[tuple[int, int, Any, np.ndarray]] = []
        self.irq_mark = 0
        self.s.fn.observe(self)

    def _host_diffs(self) -> None:
        for pasid, addr, mem, shadow in self._host:
            cur = np.frombuffer(mem, dtype=np.uint8)
            for a, b in _runs(cur, shadow):
                self.ops.append(Op("host", (pasid, addr + a, bytes(cur[a:b]))))
            shadow[:] = cur

    def _bar_diffs(self, verb: str) -> None:
        for bar, mem in self.s.regs.bytes.items():
            cur = np.frombuffer(mem, dtype=np.uint8)
            shadow = self._shadow[bar]
            for a, b in _runs(cur, shadow):
                data = bytes(cur[a:b])
                if verb == "shm":
                    self.ops.append(Op("shm", (bar, a, data)))
                elif self.expect_device:
                    self.ops.append(Op("expect", ("bytes", str(bar), hex(a), data.hex())))
            shadow[:] = cur

    def before_write(self, bar: int, off: int, value: int) -> None:
        self._host_diffs()
        self._bar_diffs("shm")
        self.ops.append(Op("w32", (bar, off, value)))
        sh = self._shadow.get(bar)
        if sh is not None and 0 <= off and not off & 3 and off + 4 <= sh.size:
            sh[off : off + 4] = np.frombuffer(int(value & 0xFFFFFFFF).to_bytes(4, "little"), np.uint8)

    def after_write(self, token: None) -> None:
        self._bar_diffs("expect")
        irqs = self.s.td.irqs[self.irq_mark:]
        if irqs and self.expect_device:
            self.ops.append(Op("expect", ("irqs", ",".join(map(str, irqs)))))
        self.irq_mark = len(self.s.td.irqs)
        self.s.irq_mark = self.irq_mark

    def dma_mapped(self, pasid: int, address: int, size: int, perm: int, mem: Any) -> None:
        img = image_for(self.s.chip)
        data = bytes(mem) if mem is not None else b""
        if pasid == 0 and data[: len(img)] == img and not any(data[len(img):]):
            self.ops.append(Op("call", ("fw_image", address)))
            self._host.append((pasid, address, mem, np.frombuffer(data, dtype=np.uint8).copy()))
        else:
            self.ops.append(Op("dma_map", (pasid, address, size, perm)))
            if mem is not None:
                self._host.append((pasid, address, mem, np.zeros(size, dtype=np.uint8)))

    def dma_unmapped(self, pasid: int, address: int, size: int) -> None:
        self.ops.append(Op("dma_unmap", (pasid, address, size)))
        self._host = [h for h in self._host if (h[0], h[1]) != (pasid, address)]

    def expect_status(self, *paths: str) -> None:
        status = self.s.dev.status()
        for path in paths:
            v = status_value(status, path)
            tok = "null" if v is None else str(v).lower() if isinstance(v, bool) else str(v)
            self.ops.append(Op("expect", ("status", path, tok)))

    def trace(self, header: list[str]) -> Trace:
        return Trace(self.s.chip.name, list(self.ops), header)


GOLDEN_STATUS = ("smu.power", "psp.state", "firmware.suspended", "channels.0.state",
                 "channels.0.msgs_in", "channels.0.msgs_out", "counters.internal_errors",
                 "counters.malformed_msgs", "counters.bad_writes", "counters.irqs_raised")


def golden_chips() -> list[str]:
    from ..chips import emulated_chip_names

    return [*emulated_chip_names(family="aie2"), "npu3"]  # npu3: the AIE4 recorders


#: what a golden AIE4 trace pins of the device's status (docs/spec/aie4.md)
GOLDEN_STATUS_AIE4 = ("smu.power", "psp.state", "psp.cert", "channels.0.state",
                      "channels.0.msgs_in", "channels.0.msgs_out", "firmware.partitions.0.id",
                      "firmware.async_events_pending", "counters.internal_errors",
                      "counters.malformed_msgs", "counters.bad_writes", "counters.irqs_raised")


def record_probe_aie4(chip: str) -> Trace:
    from ..testing.aie4driver import Aie4PyDriver

    rec = Recorder(chip)
    Aie4PyDriver(rec.s.td).bring_up(image_for(rec.s.chip))
    rec.expect_status(*GOLDEN_STATUS_AIE4)
    return rec.trace([f"golden: AIE4 bring-up (probe) of {chip}, recorded from Aie4PyDriver.bring_up",
                      "regenerate with: python -m xdna_emu.fuzz.trace record-golden"])


def record_job_aie4(chip: str) -> Trace:
    from .. import kernels
    from ..iommu import DMA_READ, DMA_WRITE
    from ..testing.aie4driver import CLIENT_IOVA, Aie4PyDriver, exec_pkt

    rec = Recorder(chip)
    drv = Aie4PyDriver(rec.s.td)
    drv.bring_up(image_for(rec.s.chip))
    pasid, mem = 5, bytearray(0x10000)
    drv.fn.dma_map(pasid, CLIENT_IOVA, len(mem), DMA_READ | DMA_WRITE, None, mem=mem)
    q = drv.create_queue(pasid)
    desc = kernels.encode(kernels.Desc(kernels.Kernel.COPY, kernels.DType.INT32, count=16))
    src, dst, code, args, sig = (CLIENT_IOVA + o for o in (0x0, 0x100, 0x200, 0x300, 0x400))
    mem[0x0:0x40] = bytes(range(64))
    mem[0x200 : 0x200 + len(desc)] = desc
    mem[0x300:0x310] = src.to_bytes(8, "little") + dst.to_bytes(8, "little")
    q.submit(exec_pkt(sig, code, args, 16))
    if mem[0x100:0x140] != bytes(range(64)):
        raise RuntimeError(f"{chip}: golden AIE4 job failed")
    rec.ops.append(Op("expect", ("host", str(pasid), hex(dst), bytes(range(64)).hex())))
    rec.expect_status(*GOLDEN_STATUS_AIE4, "contexts.0.completed", "contexts.0.failed",
                      "counters.jobs_completed")
    return rec.trace([f"golden: one AIE4 context, one HSA packet (copy 16 x int32) on {chip}",
                      "recorded from Aie4PyDriver.create_queue + a doorbell; the dst buffer is checked",
                      "regenerate with: python -m xdna_emu.fuzz.trace record-golden"])


def record_probe(chip: str) -> Trace:
    from ..testing.pydriver import PyDriver

    rec = Recorder(chip)
    PyDriver(rec.s.td).bring_up(image_for(rec.s.chip))
    rec.expect_status(*GOLDEN_STATUS)
    return rec.trace([f"golden: bring-up (probe) of {chip}, recorded from PyDriver.bring_up",
                      "regenerate with: python -m xdna_emu.fuzz.trace record-golden"])


def record_job(chip: str) -> Trace:
    from .. import kernels
    from ..testing.pyctx import Cmd, PyClient, PyContext
    from ..testing.pydriver import PyDriver

    rec = Recorder(chip)
    drv = PyDriver(rec.s.td)
    drv.bring_up(image_for(rec.s.chip))
    client = PyClient(drv, 0, heap_size=1 << 20, chunk=1 << 20)
    ctx = PyContext(client)
    src, dst = client.alloc(64), client.alloc(64)
    src.view[:] = bytes(range(64))
    desc = kernels.Desc(kernels.Kernel.COPY, kernels.DType.INT32, count=16)
    status = ctx.run([Cmd(kernels.Desc(kernels.Kernel.NOP)), Cmd(desc, [src, dst])])
    if status[0] != 0:
        raise RuntimeError(f"{chip}: golden job failed: {status}")
    rec.ops.append(Op("expect", ("host", "0", hex(client.heap_va + (dst.addr - HEAP_DEV_ADDR)),
                                 bytes(range(64)).hex())))
    rec.expect_status(*GOLDEN_STATUS, "contexts.0.submitted", "contexts.0.completed",
                      "contexts.0.failed", "channels.1.state", "counters.jobs_completed")
    return rec.trace([f"golden: one context and a chain (nop, copy 16 x int32) on {chip}",
                      "recorded from pyctx (PyClient/PyContext.run); the dst buffer is checked",
                      "regenerate with: python -m xdna_emu.fuzz.trace record-golden"])


def record_golden(out_dir: Path = GOLDEN_DIR) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    from ..chips import load_chip

    for chip in golden_chips():
        aie4 = load_chip(chip).family == "aie4"
        for kind, fn in (("probe", record_probe_aie4 if aie4 else record_probe),
                         ("job", record_job_aie4 if aie4 else record_job)):
            trace = fn(chip)
            res = replay(trace)
            if not res.ok:
                raise RuntimeError(f"{kind}-{chip}: recorded trace does not replay: {res.describe()}")
            path = out_dir / f"{kind}-{chip}.trace"
            path.write_text(trace.to_text())
            written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m xdna_emu.fuzz.trace")
    sub = p.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("record-golden", help="regenerate fixtures/traces/*.trace")
    g.add_argument("--out", default=str(GOLDEN_DIR))
    r = sub.add_parser("replay")
    r.add_argument("file")
    args = p.parse_args(argv)
    if args.cmd == "record-golden":
        t0 = time.monotonic()
        for path in record_golden(Path(args.out)):
            print(path)
        print(f"done in {time.monotonic() - t0:.1f} s", file=sys.stderr)
        return 0
    res = replay(load(args.file))
    print(res.describe())
    return 0 if res.ok else 1


if __name__ == "__main__":
    sys.exit(main())
