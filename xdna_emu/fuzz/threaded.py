"""``xdna-emu fuzz --target threads``: real threads on the real C shim and a real daemon.

The deterministic shim target runs in one thread, so a lock held across a wait, two
threads racing on one context or a user rewriting a command buffer while ``exec`` waits
for a slot cannot happen there. Here each example is a :class:`Program`: a few threads,
each with its own list of shim calls (trace ops of :mod:`.shim_trace`'s vocabulary), run
at once against a daemon in its own process (real time, the shim's monitor thread on). A
seed gives the same programs again; the interleaving is the scheduler's, so a program is
replayable at the level of its call sequences (``--replay FILE`` runs it again, as often
as asked). docs/spec/fuzzing.md §10.

Checked: only ShimError comes out of a call, with an errno the call may give whatever the
other threads did (:data:`ALLOWED`); every thread ends (a stuck one ends the worker with
every thread's stack, and the example is the finding, as for the shim target); after the
threads, every job whose context still lives reaches a final state, the one its kernel
gives (``nop`` COMPLETED, ``fail`` ERROR) unless its command BO was rewritten under it;
and the shim closes. Built with the debug build's lock checker (``make shim-debug``) or
ThreadSanitizer (``make tsan``), a lock held across a wait, a lock-order inversion or a
data race aborts the worker in the offending call.
"""

from __future__ import annotations

import argparse
import errno as E
import faulthandler
import hashlib
import json
import logging
import os
import random
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..fw.messages import Opcode
from ..shim import ErtState, Shim, ShimError
from .atheris_target import FindingLog, StopFlag, write_stats
from .invariants import Failure, Hang, InvariantViolation
from .lang import Op, TraceError, format_operand, typed_operands
from .shim_trace import FINAL

#: this module's entry in the fuzz target registry (targets.py)
FUZZ_TARGETS = [
    {"name": "threads", "help": "real threads on the real shim and a daemon process",
     "worker": "xdna_emu.fuzz.threaded", "current": True, "bench": True, "aie4": False,
     "order": 3},
]
#: calls a thread draws, with weights: the racy ones (two threads on one context, a destroy
#: under a wait, a rewrite under an exec) often
WEIGHTS = {"exec": 8, "chain": 3, "wait": 6, "info": 2, "health": 1, "mgmt": 2, "ctx": 1,
           "destroy": 1, "rewrite": 2, "sleep": 2}
#: errnos each call may give under any interleaving (a context another thread destroyed:
#: EINVAL/ENOENT; slots or the runqueue taken: EAGAIN/EBUSY; columns spent: ENOSPC)
ALLOWED = {
    "exec": {E.EINVAL, E.ENOENT, E.EAGAIN, E.EBUSY, E.ETIME},
    "chain": {E.EINVAL, E.ENOENT, E.EAGAIN, E.EBUSY, E.ETIME},
    "wait": {E.EINVAL, E.ENOENT, E.ETIME},
    "info": {E.EINVAL, E.ENOENT},
    "health": {E.EINVAL, E.ENOENT, E.EOPNOTSUPP},
    "mgmt": set(),
    "ctx": {E.ENOSPC, E.EBUSY, E.EAGAIN, E.ENOMEM},
    "destroy": {E.EINVAL, E.ENOENT},
}
#: (word, value) stores into another thread's newest command BO (header count/opcode, a
#: chain's count, a sub-command handle)
REWRITES = [(0, 0), (1, 0), (1, 65), (1, 0xFFFFFFFF), (2, 0)]
KERNELS = ("nop", "fail")
CONTEXTS = 2  # made before the threads start; ``ctx`` adds more
WAIT_MS = 10_000  # a wait's timeout (real time): nop and fail end in milliseconds
FINAL_WAIT_MS = 15_000
EXAMPLE_WALL_S = 120  # a worker stuck this long in one example dumps every stack and exits
MAX_THREADS, MAX_CALLS = 4, 12
#: operand kinds per call (as shim_trace.CALL_SPECS)
SPECS = {"exec": "is", "chain": "is", "wait": "", "info": "i", "health": "i", "mgmt": "",
         "ctx": "", "destroy": "i", "rewrite": "ii", "sleep": "i"}


@dataclass
class Program:
    """One example: a call list per thread."""

    chip: str
    threads: list[list[Op]]
    header: tuple[str, ...] = ()

    def to_text(self) -> str:
        lines = [f"# {h}" for h in self.header] + [f"chip {self.chip}", "target threads"]
        for i, ops in enumerate(self.threads):
            lines.append(f"thread {i}")
            lines += ["  " + " ".join([op.verb, *map(format_operand, op.args)]) for op in ops]
        return "\n".join(lines) + "\n"

    @classmethod
    def parse(cls, text: str) -> Program:
        chip, threads = "", []
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith("#") or line == "target threads":
                continue
            word, *rest = line.split()
            if word == "chip":
                chip = rest[0]
            elif word == "thread":
                threads.append([])
            elif word == "call" and threads and rest and rest[0] in SPECS:
                threads[-1].append(Op("call", (rest[0], *typed_operands(SPECS[rest[0]], rest[1:]))))
            else:
                raise TraceError(f"not a threads program line: {raw!r}")
        if not chip or not threads:
            raise TraceError("a threads program needs a chip line and a thread")
        return cls(chip, threads)


#: Under ThreadSanitizer (fuzz/tsan.sh sets it) programs leave ``rewrite`` out: a user's
#: store into a command BO the driver reads is a race by design, which TSan would report
#: every time (the deterministic shim target plays it from inside the shim's wait).
NO_REWRITE_ENV = "XDNA_THREADS_NO_REWRITE"


def random_call(rng: random.Random) -> Op:
    w = {k: v for k, v in WEIGHTS.items() if k != "rewrite" or not os.environ.get(NO_REWRITE_ENV)}
    name = rng.choices(list(w), weights=list(w.values()))[0]
    if name in ("exec",):
        return Op("call", ("exec", rng.randrange(4), rng.choice(KERNELS)))
    if name == "chain":
        kinds = ",".join(rng.choice(KERNELS) for _ in range(rng.randint(1, 4)))
        return Op("call", ("chain", rng.randrange(4), kinds))
    if name in ("info", "health", "destroy"):
        return Op("call", (name, rng.randrange(4)))
    if name == "wait":
        return Op("call", ("wait",))
    if name == "rewrite":
        return Op("call", ("rewrite", *rng.choice(REWRITES)))
    if name == "sleep":
        return Op("call", ("sleep", rng.choice([0, 1, 5])))
    return Op("call", (name,))


def generate(rng: random.Random, chip: str) -> Program:
    """A program: 2-4 threads of 1-12 calls each."""
    n = rng.randint(2, MAX_THREADS)
    return Program(chip, [[random_call(rng) for _ in range(rng.randint(1, MAX_CALLS))]
                          for _ in range(n)])


class ShimCrash(Failure):
    kind = "crash"


@dataclass
class _Job:
    ctx: int
    handle: int
    seq: int
    cmd: int
    kernels: tuple[str, ...]


class Run:
    """One program on one open, probed shim: the shared contexts, jobs and findings."""

    def __init__(self, shim: Shim, aie4: bool) -> None:
        self.shim, self.aie4 = shim, aie4
        self.lock = threading.Lock()  # the lists below only, never around a shim call
        self.ctxs: list[int] = []
        self.dead: set[int] = set()
        self.jobs: list[_Job] = []
        #: contexts with a command BO another thread stored into: a broken command may hang
        #: and TDR then ends the jobs queued behind it too (TIMEOUT, ABORT)
        self.raced: set[int] = set()
        self.newest = (0, -1)  # the last command BO made and its context, for ``rewrite``
        self.failures: list[Failure] = []
        self.events: set[str] = set()

    def thread(self, tid: int, ops: list[Op], start: threading.Barrier) -> None:
        mine: list[_Job] = []
        try:
            start.wait(30)
        except threading.BrokenBarrierError:
            return
        for op in ops:
            name, args = op.args[0], op.args[1:]
            try:
                out = self.call(name, args, mine)
                self.events.add(f"{name}:{out}")
            except Failure as f:
                self.failures.append(f)
                return
            except Exception as exc:  # noqa: BLE001 - anything escaping is the finding
                self.failures.append(ShimCrash(type(exc).__name__, f"thread {tid} {name}: {exc!r}"))
                return

    def _ctx(self, i: int) -> tuple[int, int]:
        with self.lock:
            n = i % len(self.ctxs)
            return n, self.ctxs[n]

    def call(self, name: str, args: tuple[Any, ...], mine: list[_Job]) -> str:
        """One call; returns "ok" or the errno's name."""
        from .. import kernels as K
        from .shim_trace import chain_command, npu_command

        s = self.shim
        if name == "sleep":
            time.sleep(args[0] / 1000)
            return "ok"
        if name == "rewrite":
            with self.lock:
                cmd, n = self.newest
                if cmd:
                    self.raced.add(n)
            if cmd:
                word, value = args
                s.bo_map(cmd)[4 * word : 4 * word + 4] = (value & 0xFFFFFFFF).to_bytes(4, "little")
            return "ok"
        if name not in ALLOWED:
            raise TraceError(f"unknown threads call {name!r}")
        try:
            if name in ("exec", "chain"):
                n, h = self._ctx(args[0])
                form = "dpu" if self.aie4 else "npu"
                names = tuple(args[1].split(","))
                if name == "exec":
                    cmd = npu_command(s, K.Kernel[names[0].upper()], form)
                else:
                    cmd = chain_command(s, [K.Kernel[k.upper()] for k in names], form)
                with self.lock:
                    self.newest = (cmd, n)
                seq = s.exec(h, cmd)
                job = _Job(n, h, seq, cmd, names)
                mine.append(job)
                with self.lock:
                    self.jobs.append(job)
            elif name == "wait":
                if not mine:
                    return "none"
                job = mine.pop(0)
                s.wait(job.handle, job.seq, WAIT_MS)
            elif name in ("info", "health", "destroy"):
                n, h = self._ctx(args[0])
                if name == "info":
                    s.hwctx_info(h)
                elif name == "health":
                    s.app_health(h)
                else:
                    with self.lock:
                        self.dead.add(n)  # before the call: a job of it may then end ABORT
                    s.hwctx_destroy(h)
            elif name == "mgmt":
                s.mgmt_msg(int(Opcode.GET_FIRMWARE_VERSION), bytes(4), 20, WAIT_MS)
            elif name == "ctx":
                h = s.hwctx_create()
                with self.lock:
                    self.ctxs.append(h)
        except ShimError as e:
            if not e.errno:
                raise InvariantViolation("no_errno", f"{name} failed without an errno: {e}") from e
            if e.errno not in ALLOWED[name]:
                raise InvariantViolation(f"{name}_errno",
                                         f"{name} {args} gave {E.errorcode.get(e.errno, e.errno)}") from e
            return E.errorcode.get(e.errno, str(e.errno))
        return "ok"

    def final_check(self) -> None:
        """Every job of a live context ends, in its kernel's state unless raced."""
        want = {"nop": ErtState.COMPLETED, "fail": ErtState.ERROR}
        for job in self.jobs:
            if job.ctx in self.dead:
                continue
            try:
                self.shim.wait(job.handle, job.seq, FINAL_WAIT_MS)
            except ShimError as e:
                if e.errno != E.ETIME:
                    continue  # its context went (another thread's destroy raced this one)
            if job.ctx in self.raced:  # the user's stores may have hit the state word too
                continue
            st = self.shim.cmd_state(job.cmd)
            if st not in FINAL:
                raise Hang("job_never_ended", f"job seq {job.seq} of context {job.ctx} is "
                                              f"{getattr(st, 'name', st)}")
            first_bad = next((k for k in job.kernels if k != "nop"), None)
            expected = want[first_bad or "nop"]
            if st != expected:
                raise InvariantViolation("job_state", f"job seq {job.seq} ({','.join(job.kernels)}) "
                                                      f"ended {st.name}, expected {expected.name}")


class ThreadedHarness:
    """A daemon in its own process and firmware for the chip; :meth:`run` runs a program."""

    def __init__(self, chip: str = "npu4") -> None:
        import tempfile

        from ..chips import load_chip
        from ..emulator import Emulator
        from ..testing.inproc import firmware_dir

        self.chip = chip
        self.aie4 = load_chip(chip).aie4 is not None
        self._rt = Path(tempfile.mkdtemp(prefix="xdna-threads-"))
        self._rt.chmod(0o700)
        self.emu = Emulator(chip=chip, runtime_dir=self._rt).start()
        self.fw = firmware_dir(chip)

    def close(self) -> None:
        import shutil

        self.emu.stop()
        shutil.rmtree(self._rt, ignore_errors=True)

    def run(self, prog: Program) -> tuple[Failure | None, set[str]]:
        shim = Shim.open(self.emu.socket)
        try:
            shim.probe(self.fw)
            run = Run(shim, self.aie4)
            for _ in range(CONTEXTS):
                run.ctxs.append(shim.hwctx_create())
            start = threading.Barrier(len(prog.threads))
            threads = [threading.Thread(target=run.thread, args=(i, ops, start), daemon=True,
                                        name=f"fuzz-thread-{i}")
                       for i, ops in enumerate(prog.threads)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            if run.failures:
                return run.failures[0], run.events
            try:
                run.final_check()
            except Failure as f:
                return f, run.events
            return None, run.events
        finally:
            shim.close()


class ThreadedFuzzer(FindingLog):
    """Programs from a seed, run one after another; findings written as programs."""

    def __init__(self, chip: str, seed: int, artifacts: Path | None,
                 current: Path | None = None) -> None:
        logging.getLogger("xdna_emu").setLevel(logging.CRITICAL)
        self.chip, self.rng = chip, random.Random(seed)
        self.artifacts, self.current = artifacts, current
        self.h = ThreadedHarness(chip)
        self.execs = self.crashes = self.hangs = 0
        self.features: set[str] = set()
        self.signatures: dict[tuple[str, str], str] = {}
        self.t0 = time.monotonic()
        self.first_finding_s: float | None = None

    def close(self) -> None:
        self.h.close()

    def run_one(self, prog: Program) -> Failure | None:
        self.execs += 1
        if self.current is not None:
            self.current.write_text(prog.to_text())
        faulthandler.dump_traceback_later(EXAMPLE_WALL_S, exit=True)
        try:
            found, events = self.h.run(prog)
        finally:
            faulthandler.cancel_dump_traceback_later()
        self.features |= events
        if found is not None:
            self.record(found, prog)
        return found

    def record(self, failure: Failure, prog: Program) -> None:
        where = self.count_finding(failure.kind, failure.name)
        if where is None:
            return
        prog = Program(prog.chip, prog.threads, (f"found by the threads fuzz target: {failure}",
                                                 "run again: python -m xdna_emu.fuzz.threaded --replay FILE"))
        text = prog.to_text()
        path = where / f"{failure.kind}-{failure.name}-{hashlib.sha1(text.encode()).hexdigest()[:10]}.threads"
        path.write_text(text)
        self.signatures[failure.signature] = str(path)

    def stats(self) -> dict[str, Any]:
        return {"execs": self.execs, **self.finding_stats(), "coverage": len(self.features),
                "corpus": 0}

    def fuzz(self, seconds: float, stats: Path | None = None, max_execs: int | None = None,
             stop: StopFlag | None = None) -> dict[str, Any]:
        stop = stop or StopFlag()
        t0 = last = self.t0 = time.monotonic()
        while (time.monotonic() - t0 < seconds and not stop.set
               and (max_execs is None or self.execs < max_execs)):
            self.run_one(generate(self.rng, self.chip))
            if time.monotonic() - last > 0.5:
                last = time.monotonic()
                write_stats(stats, self.stats())
        out = {**self.stats(), "interrupted": stop.set}
        write_stats(stats, {**out, "final": True})
        return out


def replay(path: Path, times: int = 1) -> Failure | None:
    """Run a saved program ``times`` times (interleavings differ); the first finding."""
    prog = Program.parse(path.read_text())
    h = ThreadedHarness(prog.chip)
    try:
        for _ in range(times):
            found, _ = h.run(prog)
            if found is not None:
                return found
    finally:
        h.close()
    return None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m xdna_emu.fuzz.threaded")
    p.add_argument("--chip", default="npu4")
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--max-execs", type=int)
    p.add_argument("--artifacts", default="fuzz-artifacts")
    p.add_argument("--stats")
    p.add_argument("--current", help="file holding the program being run (for wall-clock hangs)")
    p.add_argument("--corpus", help="accepted for the campaign runner; programs keep no corpus")
    p.add_argument("--replay", metavar="FILE", help="run a saved program (--times N)")
    p.add_argument("--times", type=int, default=20)
    args = p.parse_args(argv)
    if args.replay:
        found = replay(Path(args.replay), args.times)
        print(json.dumps({"ok": found is None, "failure": str(found) if found else None}))
        return 1 if found else 0
    fz = ThreadedFuzzer(args.chip, args.seed, Path(args.artifacts),
                        Path(args.current) if args.current else None)
    try:
        fz.fuzz(args.seconds, Path(args.stats) if args.stats else None, args.max_execs,
                StopFlag().install())
    finally:
        fz.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
