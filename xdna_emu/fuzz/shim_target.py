"""``xdna-emu fuzz --target shim``: the real C shim against a misbehaving firmware.

Each example is a shim trace (:mod:`.shim_trace`): shim calls and firmware faults drawn
from a seeded generator, run in deterministic in-process mode with every shim promise
checked after each line and at the end. The loop is mutational and coverage-guided: an
example that reaches a new (call, outcome) or (fault, outcome) pair joins the corpus
(``--corpus``, kept as ``.trace`` files), and later examples start from a corpus entry's
prefix, splice in another entry's ops or continue with fresh ones. A finding is written
to the artifacts directory as a replayable trace; ``xdna-emu trace minimize`` shrinks it.

Run as a worker (what ``xdna-emu fuzz --target shim --jobs N`` starts N of)::

    python -m xdna_emu.fuzz.shim_target --seconds 60 --seed 1 --corpus DIR --stats FILE

An example whose first line is ``call probe`` (every generated one) starts from a snapshot
of both sides as the first probe left them (``ShimHarness.save_bring_up``): it pays for no
fresh device, no probe and no hang-up (docs/spec/fuzzing.md §9; ``--no-snapshot`` or
``XDNA_FUZZ_SNAPSHOT=0`` turns it off). With ``--fork`` (or ``XDNA_FUZZ_FORK=1``) each
example runs in a fork of the probed process instead (:mod:`.forkserver`), where a crash
or hang in C is a finding instead of the worker's end.

With ``--atheris`` the examples come from libFuzzer instead: the input bytes drive the same
op generator (:class:`ByteRandom`), and the guidance is edge coverage of the C shim itself,
when the extension is built with ``-fsanitize=fuzzer-no-link`` (``make fuzz-shim``,
fuzz/shim_atheris.sh), plus the Python firmware model's.
"""

from __future__ import annotations

import argparse
import faulthandler
import hashlib
import importlib
import json
import logging
import os
import random
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from ..fw.aie4.messages import Opcode as A4Opcode
from ..fw.messages import Opcode
from ..shim import ShimError
from .atheris_target import FindingLog, StopFlag, write_stats
from .faults import ACT_FAULTS, MSG_FAULTS
from .forkserver import ForkError, ForkServer
from .invariants import Failure, Hang
from .lang import cumulative, format_op
from .model import FORMS
from .ops import Op, TraceError
from .shim_trace import KERNELS, POWER_MODES, PROBE, ShimCrash, ShimHarness
from .uapi_trace import random_ioctl, seed_ops

STATS_EVERY_S = 0.5
#: this module's entry in the fuzz target registry (targets.py)
FUZZ_TARGETS = [
    {"name": "shim", "help": "the real C shim against a misbehaving firmware, checked by the "
                             "driver's contract (libFuzzer-guided: make fuzz-shim)",
     "worker": "xdna_emu.fuzz.shim_target", "current": True,
     "bench": True, "order": 1},
]
MAX_OPS = 40
#: the comment line of the ``current`` file (the example a worker runs), which fuzz/cli.py
#: reads when the worker dies
CURRENT_HEADER = "the example a shim fuzz worker was running when it died"
#: op lines ``_save_current`` keeps formatted (an op's line is the same in every example)
LINE_CACHE_MAX = 1 << 14
#: set to 1 to run the examples of ``xdna-emu fuzz --target shim`` workers in forks
FORK_ENV = "XDNA_FUZZ_FORK"
#: set to 0 to start every example of the workers from a fresh device and a probe
SNAPSHOT_ENV = "XDNA_FUZZ_SNAPSHOT"
#: Wall-clock limit of one example. Virtual time bounds every wait, so an example that runs
#: this long is stuck in C; faulthandler then ends the worker with a traceback and the
#: example, saved beforehand to ``current``, becomes the finding (see fuzz/cli.py). In
#: process the watchdog may give it WATCHDOG_SLACK_S more (``ShimFuzzer._watch``).
EXAMPLE_WALL_S = 60
WATCHDOG_SLACK_S = 10
#: call name -> relative weight in generated programs (waits and execs often, so jobs end
#: in every final state; stop/suspend rarely, so contexts live long enough to matter)
WEIGHTS = {"mgmt": 6, "ctx": 4, "destroy": 2, "exec": 10, "wait": 10, "info": 2,
           "suspend": 1, "resume": 1, "stop": 1, "tick": 3, "fault": 6, "act": 2,
           "timeout": 1, "chain": 4, "waitseq": 3, "health": 1, "power": 1, "bulk": 1,
           "rewrite": 1, "qctx": 1, "cucfg": 1, "dbgbo": 1, "dbg": 2, "syncwait": 2,
           "ioctl": 14, "certlog": 1}
#: AIE4 (docs/spec/fuzzing.md §8): firmware faults on its mgmt channel and AIE4 mgmt
#: opcodes, no START_NPU rewrites or AIE2 config calls (they know the AIE2 forms);
#: user-mode queues, FLR, the CERT log on DEV BOs; ioctl lines less often (fuzzing.md §12)
WEIGHTS_AIE4 = {**{k: v for k, v in WEIGHTS.items()
                   if k not in ("rewrite", "qctx", "cucfg", "dbgbo", "dbg", "ioctl")}, "ioctl": 8,
                "umq": 2, "doorbell": 4, "flr": 1, "dbgbo": 3, "certlog": 4, "certdetach": 1,
                "client": 2, "cctx": 2, "cdestroy": 1, "cmgmt": 3,
                "sriov": 2, "vf": 3, "vfwait": 1}  # SR-IOV: a PF's VFs (fuzzing.md §8)
#: CU indexes an exec names: the default, ones a CU table has, and past every table
EXEC_CUS = [0, 0, 0, 1, 2, 7, 31]
#: QoS (gops, fps, latency_ms, max_opc): none, in range, at the 32-bit edge, past the top
#: level (docs/spec/jobs.md §6)
QOS = [(0, 0, 0, 0), (10, 30, 0, 2048), (100, 0, 1, 0), (4294967, 1000, 0, 0),
       (4294968, 1000, 0, 0), (1000, 1000, 0, 1), (1, 0, 0, 1)]
#: CU-table sizes (0 and 33 are refused) and debug-BO sizes (DEBUG_BO_MIN is 4 KiB)
CU_COUNTS, DBG_SIZES = [0, 1, 2, 8, 14, 32, 33], [64, 4095, 4096, 8192]
#: CERT log slices (uC:bytes) a ``certlog`` names: good ones, none, seven, a uC past the
#: last or named twice, one too small for a record (48 bytes is the least), past the BO
CERT_SLICES = ["0:4096", "0:48", "0:4096,1:4096", "5:64,0:64", "-", ",".join(f"{i}:64" for i in range(7)),
               "6:64", "0:64,6:64", "7:64", "1:64,1:64", "0:47", "0:65536,1:65536"]
#: seqs a ``waitseq`` names besides real ones: never submitted, negative, huge
ODD_SEQS = [0, -1, -(1 << 63), 1 << 62, 0xFFFFFFFF]
#: (word, value) rewrites of a command BO under a running exec: the header's count or
#: opcode, a chain's count, a sub-command handle, a START_NPU instruction address
REWRITES = [(0, 0), (0, 0x7FF000), (1, 0), (1, 65), (1, 0xFFFFFFFF), (7, 0x1234), (2, 0)]
#: Management opcodes a generated program sends: two the firmware answers (the version query
#: twice as often), one it does not implement, and one no firmware knows.
MGMT_OPCODES = [int(o) for o in (Opcode.GET_FIRMWARE_VERSION, Opcode.GET_FIRMWARE_VERSION,
                                 Opcode.GET_RUNTIME_CONFIG, Opcode.REGISTER_PDI)] + [0xFFFF]
#: The same on AIE4: IDENTIFY (answered, 20 bytes) twice as often, a query answered at
#: another size, a PF-only message (NOTSUPP elsewhere) and an opcode no firmware knows.
MGMT_OPCODES_AIE4 = [int(o) for o in (A4Opcode.IDENTIFY, A4Opcode.IDENTIFY,
                                      A4Opcode.QUERY_CERT_FIRMWARE_VERSION,
                                      A4Opcode.CREATE_VFS)] + [0x3FFFF]


#: the shim target's second AIE2 seed, the driver session's own recovery: a hang at the head
#: with a job queued behind it, waited out (TDR: TIMEOUT, then ABORT), then the same context
#: used again by a job and a chain, as the driver re-creates it (docs/spec/jobs.md §3); a
#: mutation then starts where a context's life after TDR is checked
TDR_SEED = [Op("call", ("probe",)), Op("call", ("ctx",)), Op("call", ("exec", 0, "hang")),
            Op("call", ("exec", 0, "nop")), Op("call", ("wait", 0, 10000)),
            Op("call", ("exec", 0, "nop")), Op("call", ("chain", 0, "nop,fail")),
            Op("call", ("wait", 3, 3000))]

#: the shim target's AIE4 seed: two contexts, DEV BOs, one bound as context 0's CERT log, a
#: job, a client session with a context, the log detached; on a PF two VFs with jobs, a
#: hang pending as they go, one VF again (docs/spec/fuzzing.md §8)
AIE4_SEED = [Op("call", ("probe",)), Op("call", ("ctx",)), Op("call", ("ctx",)),
             Op("call", ("dbgbo", 4096)), Op("call", ("dbgbo", 8192)),
             Op("call", ("certlog", 0, 0, "0:4096")), Op("call", ("exec", 0, "nop")),
             Op("call", ("wait", 0, 3000)), Op("call", ("client",)), Op("call", ("cctx",)),
             Op("call", ("certdetach", 0)), Op("call", ("sriov", 2)), Op("call", ("vf", 0, "nop")),
             Op("call", ("vf", 1, "hang")), Op("call", ("sriov", 0)), Op("call", ("sriov", 1)),
             Op("call", ("vf", 0, "nop")), Op("call", ("vfwait", 0, 3000))]


#: WEIGHTS and WEIGHTS_AIE4 as random_op draws from them
_DRAW = {False: cumulative(WEIGHTS), True: cumulative(WEIGHTS_AIE4)}


def random_op(rng: random.Random, aie4: bool = False) -> Op:
    """One shim-trace op with operands a driver test would plausibly use."""
    names, cum = _DRAW[bool(aie4)]
    name = rng.choices(names, cum_weights=cum)[0]
    if name == "ioctl":  # amdxdna ioctls on DRM files (uapi_trace, docs/spec/fuzzing.md §12)
        return random_ioctl(rng)
    if name == "fault":
        kind = rng.choice(sorted(MSG_FAULTS))
        return Op("fault", (kind, rng.choice([0, -1]), rng.choice([1, 1, 1, 2, 3]),
                            rng.choice([0, 0, 1, 2, 300, 6000])))
    if name == "act":
        return Op("fault", (rng.choice(sorted(ACT_FAULTS)), rng.choice([0, -1])))
    if name == "mgmt":
        return Op("call", ("mgmt", rng.choice(MGMT_OPCODES_AIE4 if aie4 else MGMT_OPCODES),
                           rng.choice([bytes(4), bytes(8), b""])))
    if name in ("destroy", "info", "umq", "doorbell"):
        return Op("call", (name, rng.randrange(4)))
    if name == "exec":
        op = ("exec", rng.randrange(4), rng.choice(KERNELS))
        if not aie4 and rng.random() < 0.5:  # another command form (docs/spec/jobs.md §4)
            cu = rng.choice(EXEC_CUS)
            op += (rng.choice(FORMS) + (f"@{cu}" if cu else ""),)
        return Op("call", op)
    if name == "qctx":
        return Op("call", ("qctx", *rng.choice(QOS)))
    if name == "cucfg":
        return Op("call", ("cucfg", rng.randrange(4), rng.choice(CU_COUNTS)))
    if name == "dbgbo":
        return Op("call", ("dbgbo", rng.choice(DBG_SIZES)))
    if name == "certlog":
        return Op("call", ("certlog", rng.randrange(4), rng.choice([0, 1, 2, -1]), rng.choice(CERT_SLICES)))
    if name == "certdetach":
        return Op("call", ("certdetach", rng.randrange(4)))
    if name == "cdestroy":
        return Op("call", ("cdestroy", rng.randrange(4)))
    if name == "sriov":  # none, some, all four, past TotalVFs
        return Op("call", ("sriov", rng.choice([0, 0, 1, 2, 4, 5])))
    if name == "vf":
        return Op("call", ("vf", rng.randrange(4), rng.choice(("nop", "nop", "hang"))))
    if name == "vfwait":
        return Op("call", ("vfwait", rng.randrange(8), rng.choice([0, 100, 3000])))
    if name == "cmgmt":
        return Op("call", ("cmgmt", rng.choice(("query", "driver", "foreign")), rng.randrange(4)))
    if name == "dbg":
        return Op("call", ("dbg", rng.randrange(4), rng.choice(("assign", "remove")), rng.randrange(3)))
    if name == "syncwait":
        return Op("call", ("syncwait", rng.randrange(4), rng.choice(ODD_SEQS + [1, 2, 3])))
    if name == "wait":
        return Op("call", ("wait", rng.randrange(8), rng.choice([0, 100, 3000, 10000])))
    if name == "tick":
        return Op("call", ("tick", rng.choice([10, 500, 2500, 6000])))
    if name == "chain":
        kinds = [rng.choice(("nop", "nop", "fail", "hang")) for _ in range(rng.randint(1, 5))]
        return Op("call", ("chain", rng.randrange(4), ",".join(kinds)))
    if name == "waitseq":
        seq = rng.choice(ODD_SEQS + [1, 2, 3, 5, 300])
        return Op("call", ("waitseq", rng.randrange(4), seq, rng.choice([0, 10, 3000])))
    if name == "health":
        return Op("call", ("health", rng.randrange(4)))
    if name == "power":
        return Op("call", ("power", rng.choice(POWER_MODES)))
    if name == "bulk":
        return Op("call", ("bulk", rng.randrange(4), rng.choice([5, 100, 260, 600])))
    if name == "rewrite":
        return Op("call", ("rewrite", *rng.choice(REWRITES)))
    if name == "timeout":  # a third of them the autosuspend delay (docs/spec/fuzzing.md §10)
        if rng.randrange(3) == 0:
            return Op("call", ("timeout", "autosuspend", rng.choice([0, 300, 5000])))
        return Op("call", ("timeout", "mbox_rx", rng.choice([100, 1000, 5000])))
    return Op("call", (name,))


class ByteRandom(random.Random):
    """A Random whose every draw comes from the fuzzer's input bytes (zeros once they run
    out), so :func:`random_op` turns libFuzzer's byte mutations into op mutations."""

    def __init__(self, data: bytes) -> None:
        self._data, self._pos = data, 0
        super().__init__(0)

    def more(self) -> bool:
        return self._pos < len(self._data)

    def getrandbits(self, k: int) -> int:
        n = (k + 7) // 8
        chunk = self._data[self._pos : self._pos + n]
        self._pos += n
        return int.from_bytes(chunk.ljust(n, b"\0"), "little") & ((1 << k) - 1)

    def random(self) -> float:
        return self.getrandbits(53) / (1 << 53)


def decode(data: bytes, aie4: bool = False) -> list[Op]:
    """libFuzzer input -> a shim trace: probe, then ops drawn from the bytes."""
    rng = ByteRandom(data)
    ops = [Op("call", ("probe",))]
    while rng.more() and len(ops) < MAX_OPS:
        ops.append(random_op(rng, aie4))
    return ops


class ShimFuzzer(FindingLog):
    """The mutational loop, with the same accounting as the device targets."""

    def __init__(self, chip: str, seed: int, artifacts: Path | None,
                 corpus_dir: Path | None, current: Path | None = None, fork: bool = False,
                 snapshot: bool = True) -> None:
        logging.getLogger("xdna_emu").setLevel(logging.CRITICAL)
        self.chip, self.rng = chip, random.Random(seed)
        self.artifacts, self.corpus_dir, self.current = artifacts, corpus_dir, current
        self.session = ShimHarness(chip)
        #: run each example in a fork of the brought-up process (docs/spec/fuzzing.md §9;
        #: never under libFuzzer, whose coverage counters must see the example run)
        self.fork = fork and ForkServer.available()
        self._fork_server: ForkServer | None = None
        #: start each example opening with ``call probe`` from the bring-up snapshot instead
        #: of a fresh device and a probe (docs/spec/fuzzing.md §9)
        self.snapshot = snapshot
        self.restored = self.bring_ups = 0  # examples from the snapshot, and re-probes
        self._watch_until = 0.0  # when the armed wall-clock watchdog fires (0: not armed)
        self.execs = self.crashes = self.hangs = self.steps = 0
        self.t0 = time.monotonic()
        self.first_finding_s: float | None = None  # seconds from start to the first finding
        self.features: set[str] = set()
        self.signatures: dict[tuple[str, str], str] = {}
        self.corpus: list[list[Op]] = []
        self._current_fd: int | None = None  # the ``current`` file, open (_save_current)
        self._current_head = ""
        self._lines: dict[Op, str] = {}  # each op's trace line, formatted once

    def close(self) -> None:
        self._unwatch()
        if self._current_fd is not None:
            os.close(self._current_fd)
            self._current_fd = None
        if self._fork_server is not None:
            self._fork_server.close()
        self.session.close()

    # -- one example -------------------------------------------------------------------------
    def run_one(self, ops: list[Op]) -> bool:
        """Run ``ops`` as from a fresh device; True when new coverage was reached. An example
        opening with ``call probe`` starts from the bring-up snapshot (``_from_bring_up``),
        or with the fork server on in a fork of the brought-up process (``_forked``)."""
        from .trace import Trace, replay

        self.execs += 1
        if self.current is not None:
            self._save_current(ops)
        if self.fork and self._server() is None:
            self.fork = False  # this process cannot be forked from: examples run in it
        if self.fork:
            steps, events, failure, step = self._forked(ops)
        elif self.snapshot and ops and ops[0] == PROBE:
            self._watch()
            steps, events, failure, step = self._from_bring_up(ops)
        else:
            self._watch()
            res = replay(Trace(self.chip, ops, target="shim"), self.session)
            steps, events, step = res.steps, self.session.events, res.step
            failure = None if res.ok else res.failure
        self.steps += steps
        new = False
        for key in events:
            if key not in self.features:
                self.features.add(key)
                new = True
        if failure is not None:
            self.record(failure, ops[: (step or 0) + 1])
        return new

    def _save_current(self, ops: list[Op]) -> None:
        """Write ``ops`` to the ``current`` file as the trace a dead worker's campaign reads
        (fuzz/cli.py): the text of ``Trace.to_text``, from each op's line formatted once
        (the examples reuse their parents' ops) and stored through one open descriptor."""
        from .trace import Trace

        if self._current_fd is None:
            assert self.current is not None
            self._current_fd = os.open(self.current, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
            self._current_head = Trace(self.chip, [], [CURRENT_HEADER], target="shim").to_text()
        lines = self._lines
        if len(lines) > LINE_CACHE_MAX:
            lines.clear()
        out = [self._current_head]
        for op in ops:
            text = lines.get(op)
            if text is None:
                text = lines[op] = format_op(op) + "\n"
            out.append(text)
        data = "".join(out).encode()
        os.pwrite(self._current_fd, data, 0)
        os.ftruncate(self._current_fd, len(data))

    def _from_bring_up(self, ops: list[Op]) -> tuple[int, Counter[str], Failure | None, int | None]:
        """(steps, coverage events, finding, index of the failing op) of ``ops``, whose first
        line is ``call probe``, run on from the bring-up snapshot (docs/spec/fuzzing.md §9):
        the last example's state is restored to the one ``fresh`` and the probe left, or,
        where that cannot be (the example stopped, suspended or reset the device), a fresh
        device is probed and saved again. A probe that fails runs as the example's own."""
        from .trace import Trace, replay, resume

        s = self.session
        if s.restore_bring_up():
            self.restored += 1
        else:
            self.bring_ups += 1
            try:
                s.save_bring_up()
            except (Failure, ShimError):
                res = replay(Trace(self.chip, ops, target="shim"), s)
                return res.steps, s.events, None if res.ok else res.failure, res.step
        res = resume(s, ops, 1)
        return res.steps, s.events, None if res.ok else res.failure, res.step

    def _watch(self) -> None:
        """Arm faulthandler's wall-clock watchdog to fire no sooner than EXAMPLE_WALL_S from
        now. Arming stops and starts its thread, and waiting for that thread to end took
        2-9 ms on a loaded machine, as long as half an example: so it is re-armed (with
        WATCHDOG_SLACK_S to spare) only when the armed deadline comes too close, and an
        example is called stuck after 60-70 s."""
        now = time.monotonic()
        if now + EXAMPLE_WALL_S > self._watch_until:
            faulthandler.dump_traceback_later(EXAMPLE_WALL_S + WATCHDOG_SLACK_S, exit=True)
            self._watch_until = now + EXAMPLE_WALL_S + WATCHDOG_SLACK_S

    def _unwatch(self) -> None:
        if self._watch_until:
            faulthandler.cancel_dump_traceback_later()
            self._watch_until = 0.0

    # -- the fork server (docs/spec/fuzzing.md §9) ------------------------------------------
    def _server(self) -> ForkServer | None:
        """The brought-up process every example forks from: a fresh device probed, as the
        first line of an example does it (the same path replay takes). None when the
        process cannot be served by forks (a thread runs)."""
        if self._fork_server is None:
            self.session.fresh()
            self.session.apply(PROBE)
            try:
                self._fork_server = ForkServer()
            except ForkError as e:
                print(f"shim fuzz: no fork server ({e}); examples run in process", file=sys.stderr)
        return self._fork_server

    def _forked(self, ops: list[Op]) -> tuple[int, Counter[str], Failure | None, int | None]:
        """(steps, coverage events, finding, index of the failing op) of ``ops`` run in a fork of the brought-up
        process: an example opening with ``call probe`` goes on from the probed device; any
        other starts from a fresh device inside its fork. A fork that dies, raises or runs
        past EXAMPLE_WALL_S is a finding on the whole example."""
        from .trace import Trace, replay, resume

        server, s = self._fork_server, self.session
        assert server is not None
        probed = bool(ops) and ops[0] == PROBE

        def child() -> tuple[int, dict[str, int], tuple[str, str, str, str] | None, int | None]:
            if probed:
                res = resume(s, ops, 1)
            else:
                res = replay(Trace(self.chip, ops, target="shim"), s)
            f = res.failure if not res.ok else None
            sig = None if f is None else (type(f).__module__, type(f).__qualname__, f.name, f.message)
            return res.steps, dict(s.events), sig, res.step

        out = server.run(child, EXAMPLE_WALL_S)
        if not out.ok:
            kind = Hang if out.died.startswith("timed out") else ShimCrash
            return len(ops), Counter(), kind("fork", f"the example's process {out.died}"), len(ops)
        steps, events, sig, step = out.value
        failure = None
        if sig is not None:
            failure = getattr(importlib.import_module(sig[0]), sig[1])(sig[2], sig[3])
        return steps, Counter(events), failure, step

    def generate(self) -> list[Op]:
        rng = self.rng
        base: list[Op] = [Op("call", ("probe",))]
        if self.corpus and rng.random() < 0.7:
            parent = rng.choice(self.corpus)
            base = list(parent[: rng.randint(1, len(parent))])
            if rng.random() < 0.3 and len(self.corpus) > 1:  # splice another entry's tail
                other = rng.choice(self.corpus)
                base += other[rng.randrange(len(other)):]
            for _ in range(rng.randint(0, 2)):  # point mutations
                if len(base) > 1 and rng.random() < 0.5:
                    del base[rng.randrange(1, len(base))]
                else:
                    base.insert(rng.randint(1, len(base)), random_op(rng, self.session.aie4))
        while len(base) < MAX_OPS and rng.random() < 0.93:
            base.append(random_op(rng, self.session.aie4))
        return base[:MAX_OPS]

    def add_corpus(self, ops: list[Op]) -> None:
        from .trace import Trace

        self.corpus.append(ops)
        if self.corpus_dir is not None:
            text = Trace(self.chip, ops, ["shim fuzz corpus entry"], target="shim").to_text()
            digest = hashlib.sha1(text.encode()).hexdigest()[:16]
            self.corpus_dir.mkdir(parents=True, exist_ok=True)
            (self.corpus_dir / f"{digest}.trace").write_text(text)

    def load_corpus(self) -> None:
        """Traces already in the corpus directory, plus the shim regression traces."""
        from .trace import REGRESSION_DIR, load

        paths = sorted(REGRESSION_DIR.glob("shim-*.trace"))
        if self.corpus_dir is not None and self.corpus_dir.is_dir():
            paths += sorted(self.corpus_dir.glob("*.trace"))
        for p in paths:
            try:
                t = load(p)
            except (TraceError, OSError):
                continue
            if t.target == "shim" and t.chip == self.chip and t.ops:
                ops = [op for op in t.ops if op.verb != "expect"]
                self.run_one(ops)
                self.corpus.append(ops)
        # AIE2: a program's DRM session (docs/spec/fuzzing.md §12) and the driver's recovery
        # after TDR; AIE4: a context with a CERT log bound (§8), so mutations start where
        # those calls mean something
        for seed in [AIE4_SEED] if self.session.aie4 else [seed_ops(), TDR_SEED]:
            self.run_one(seed)
            self.corpus.append(seed)

    def record(self, failure: Failure, ops: list[Op]) -> None:
        from .trace import Trace

        where = self.count_finding(failure.kind, failure.name)
        if where is None:
            return
        trace = Trace(self.chip, ops, [f"found by the shim fuzz target: {failure}",
                                       "minimise with: xdna-emu trace minimize FILE"], target="shim")
        text = trace.to_text()
        path = where / f"{failure.kind}-{failure.name}-{hashlib.sha1(text.encode()).hexdigest()[:10]}.trace"
        path.write_text(text)
        self.signatures[failure.signature] = str(path)

    def stats(self) -> dict[str, Any]:
        forks = {"forks": self._fork_server.forks} if self._fork_server is not None else {}
        return {"execs": self.execs, "steps": self.steps, **self.finding_stats(),
                "coverage": len(self.features), "corpus": len(self.corpus),
                "restored": self.restored, "bring_ups": self.bring_ups, **forks}

    # -- the loop ---------------------------------------------------------------------------
    def fuzz(self, seconds: float, stats: Path | None = None,
             max_execs: int | None = None, stop: StopFlag | None = None) -> dict[str, Any]:
        """Run for ``seconds`` (or ``max_execs`` examples: the same seed then gives the same
        examples, findings and coverage, to the byte); ``stop`` ends it between examples."""
        stop = stop or StopFlag()
        t0 = last = self.t0 = time.monotonic()
        self.load_corpus()
        while (time.monotonic() - t0 < seconds and not stop.set
               and (max_execs is None or self.execs < max_execs)):
            ops = self.generate()
            if self.run_one(ops):
                self.add_corpus(ops)
            now = time.monotonic()
            if now - last > STATS_EVERY_S:
                last = now
                write_stats(stats, self.stats())
        self._unwatch()
        out = {**self.stats(), "interrupted": stop.set}
        write_stats(stats, {**out, "final": True})
        return out


def run(seconds: float, seed: int = 1, chip: str = "npu4", artifacts: Path | None = None,
        corpus: Path | None = None, stats: Path | None = None,
        current: Path | None = None, stop: StopFlag | None = None, fork: bool = False,
        snapshot: bool = True) -> dict[str, Any]:
    """One in-process campaign; returns the worker's stats."""
    fz = ShimFuzzer(chip, seed, artifacts, corpus, current, fork=fork, snapshot=snapshot)
    try:
        return fz.fuzz(seconds, stats, stop=stop)
    finally:
        fz.close()


def run_atheris(chip: str, artifacts: Path, stats: Path | None, current: Path | None,
                libfuzzer_args: list[str]) -> None:
    """Hand the loop to libFuzzer (never returns). Findings are recorded as traces and the
    run goes on; a sanitizer report aborts it, and ``current`` holds the example."""
    import atheris

    with atheris.instrument_imports(include=["xdna_emu.fw", "xdna_emu.device"]):
        from .. import device  # noqa: F401 - instrumented for coverage
        from ..fw import ctx, mailbox, mgmt, psp, smu  # noqa: F401
    fz = ShimFuzzer(chip, 0, artifacts, None, current, fork=False)
    last = [0.0]

    def one(data: bytes) -> None:
        fz.run_one(decode(data, fz.session.aie4))
        now = time.monotonic()
        if now - last[0] > STATS_EVERY_S:
            last[0] = now
            write_stats(stats, fz.stats())

    import atexit

    atexit.register(lambda: write_stats(stats, {**fz.stats(), "final": True}))
    atheris.Setup([sys.argv[0], *libfuzzer_args], one)
    atheris.Fuzz()


def report(stats: Path) -> int:
    """One summary line of a worker's stats file (for the fuzz/ scripts); 1 on findings."""
    info = json.loads(stats.read_text())
    keys = ("execs", "steps", "coverage", "crashes", "hangs", "artifacts")
    print("shim fuzz:", json.dumps({k: info.get(k) for k in keys}))
    return 1 if info.get("crashes") or info.get("hangs") else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m xdna_emu.fuzz.shim_target")
    p.add_argument("--chip", default="npu4")
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--corpus")
    p.add_argument("--artifacts", default="fuzz-artifacts")
    p.add_argument("--stats")
    p.add_argument("--current", help="file holding the example being run (for wall-clock hangs)")
    p.add_argument("--fork", action="store_true", default=os.environ.get(FORK_ENV, "") == "1",
                   help=f"run each example in a fork of the probed process (also {FORK_ENV}=1)")
    p.add_argument("--no-snapshot", dest="snapshot", action="store_false",
                   default=os.environ.get(SNAPSHOT_ENV, "") != "0",
                   help="start every example from a fresh device and a probe, not from the "
                        f"bring-up snapshot (also {SNAPSHOT_ENV}=0)")
    p.add_argument("--atheris", action="store_true",
                   help="libFuzzer drives the examples (arguments after -- go to libFuzzer)")
    p.add_argument("--report", metavar="STATS",
                   help="print a finished worker's stats file; exit 1 if it found anything")
    p.add_argument("libfuzzer", nargs="*", help="libFuzzer arguments (after --)")
    args = p.parse_args(argv)
    if args.report:
        return report(Path(args.report))
    if args.atheris:
        run_atheris(args.chip, Path(args.artifacts), Path(args.stats) if args.stats else None,
                    Path(args.current) if args.current else None, args.libfuzzer)
        return 0
    opt = [Path(v) if v else None for v in (args.corpus, args.stats, args.current)]
    run(args.seconds, args.seed, args.chip, Path(args.artifacts), *opt, stop=StopFlag().install(),
        fork=args.fork, snapshot=args.snapshot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
