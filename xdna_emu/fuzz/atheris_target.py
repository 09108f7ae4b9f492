"""Coverage-guided harnesses for the device model: ``TestOneInput(data)`` per target.

Targets:

- ``device``: the op-stream interpreter (:class:`xdna_emu.fuzz.ops.Interpreter`) on a
  device made fresh for every input (reset in place, no reallocation);
- ``parsers``: the Python-side parsers fed raw bytes: the firmware image
  (``fw.image.parse_image``), the kernel descriptor (``kernels.decode``) and the firmware
  side of the mailbox (one x2i ring consumed by ``MailboxChannel.on_x2i_tail``).

A finding (exception out of the device, invariant violation, hang in virtual ticks) is
not raised to libFuzzer: it is counted, and the first input of each signature is written
to the artifacts directory as ``<kind>-<name>-<hash>.trace`` (the executed ops; replay
with ``xdna-emu trace replay``) and ``.bin`` (the raw input). So one campaign reports
every distinct bug instead of stopping at the first.

Run directly (OSS-Fuzz/ClusterFuzzLite style, libFuzzer flags pass through)::

    python -m xdna_emu.fuzz.atheris_target --target device [--chip npu4] -- CORPUS -max_total_time=60

Without atheris, :func:`builtin_fuzz` is a mutational loop with the same accounting
(coverage = distinct (op, device state) pairs).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import random
import signal
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .ops import Interpreter

STATS_EVERY_S = 0.5
#: the longest input: the built-in mutator's cut and libFuzzer's -max_len
MAX_INPUT = 4096
#: this module's entries in the fuzz target registry (targets.py)
FUZZ_TARGETS = [
    {"name": "device", "help": "the device model under the op-stream interpreter",
     "worker": "xdna_emu.fuzz.atheris_target", "argv": ["--target", "device"],
     "builtin_argv": ["--builtin"], "engines": ["atheris", "builtin"],
     "seeds": "xdna_emu.fuzz.atheris_target:device_seeds", "bench": True, "order": 0},
    {"name": "parsers", "help": "the Python-side parsers fed raw bytes",
     "worker": "xdna_emu.fuzz.atheris_target", "argv": ["--target", "parsers"],
     "builtin_argv": ["--builtin"], "engines": ["atheris", "builtin"],
     "seeds": "xdna_emu.fuzz.atheris_target:parser_seeds", "order": 2},
]


def dictionary() -> list[bytes]:
    """libFuzzer dictionary tokens: the separator, magics, opcodes, commands."""
    from ..fw.image import MAGIC as IMAGE_MAGIC
    from ..fw.messages import MGMT_INFO_MAGIC, MSG_ID_MAGIC, TOMBSTONE, Opcode
    from ..kernels import MAGIC as KERNEL_MAGIC
    from .ops import SEPARATOR

    le = struct.Struct("<I").pack
    toks = [SEPARATOR, le(MSG_ID_MAGIC), le(TOMBSTONE), le(MGMT_INFO_MAGIC), le(KERNEL_MAGIC),
            IMAGE_MAGIC, le(0x1000), le(0x1004), le(0xFFC), le(0x80000000)]
    toks += [le(int(o)) for o in Opcode]
    return list(dict.fromkeys(toks))


def write_dictionary(path: Path) -> Path:
    esc = ["".join(f"\\x{b:02x}" for b in tok) for tok in dictionary()]
    lines = [f'kw{i}="{e}"' for i, e in enumerate(esc)]
    path.write_text("\n".join(lines) + "\n")
    return path


# -- seeds ---------------------------------------------------------------------------------
def device_seeds(chip: str = "npu4") -> dict[str, bytes]:
    """Interpreter inputs: short semantic programs plus every golden trace, encoded."""
    from .ops import SEPARATOR, Interpreter, encode_ops
    from .trace import GOLDEN_DIR, harness_for, load

    s = harness_for(chip)
    it = Interpreter(s)
    if s.chip.aie4 is not None:
        seeds = aie4_seeds(it)
        for path in sorted(GOLDEN_DIR.glob(f"*-{chip}.trace")):
            seeds[f"golden-{path.stem}"] = encode_ops(s, load(path).ops)
        return seeds
    sel = {name: bytes([it.selector(name)]) for name in
           ("_bring_up", "_msg", "_ctx", "_submit", "_destroy", "_reset", "_psp", "_smu",
            "_post", "_ack", "_tick", "_fault", "_proxy", "_fw_image")}
    J = SEPARATOR.join
    seeds = {
        "boot": J([sel["_bring_up"] + b"\x00"]),
        "bring-up": J([sel["_bring_up"] + b"\x81"]),
        "bring-up-msgs": J([sel["_bring_up"] + b"\x81", sel["_msg"] + b"\x05\x10",
                            sel["_msg"] + b"\x20\x04", sel["_post"] + b"\x00\x03\x00\x07\x00\x00\x00"]),
        "job": J([sel["_bring_up"] + b"\x00", sel["_ctx"] + b"\x00\x00\x01",
                  sel["_submit"] + b"\x00\x01\x01", sel["_submit"] + b"\x00\x02\x00",
                  sel["_submit"] + b"\x00\x03\x00", sel["_destroy"] + b"\x00"]),
        "proxy": J([sel["_bring_up"] + b"\x00", sel["_proxy"] + b"\x01\x01\x1c" + bytes(28)]),
        "psp-smu": J([sel["_smu"] + b"\x03\x00\x00", sel["_fw_image"] + b"\x00",
                      sel["_psp"] + b"\x01\x00", sel["_psp"] + b"\x02\x00", sel["_reset"]]),
        "malformed": J([sel["_bring_up"] + b"\x00", sel["_post"] + b"\x00\x05\x81\x01\x08\x00\x00",
                        sel["_post"] + b"\x00\x05\x90\x02\x00\x00\x00", sel["_ack"] + b"\x00",
                        sel["_tick"] + b"\xff\xff"]),
    }
    for path in sorted(GOLDEN_DIR.glob(f"*-{chip}.trace")):
        seeds[f"golden-{path.stem}"] = encode_ops(s, load(path).ops)
    return seeds


def aie4_seeds(it: Interpreter) -> dict[str, bytes]:
    """AIE4 programs: bring-up, a context, jobs of each packet kind, doorbells, timeouts."""
    from .ops import A4_KINDS, SEPARATOR

    sel = {name: bytes([it.selector(name)]) for name in
           ("_a4_bring_up", "_a4_ctx", "_a4_pkt", "_a4_publish", "_a4_ring", "_a4_submit",
            "_a4_destroy", "_a4_tick", "_reset", "_flr")}  # fmt: skip
    J = SEPARATOR.join
    up = [sel["_a4_bring_up"] + b"\x04", sel["_a4_ctx"]]
    return {
        "a4-bring-up": J(up[:1]),
        "a4-jobs": J(up + [sel["_a4_submit"] + bytes([0, k, 0])  # the hang last: it stalls the queue
                           for k in sorted(range(len(A4_KINDS)), key=lambda k: A4_KINDS[k] == "hang")]),
        "a4-timeout": J(up + [sel["_a4_submit"] + bytes([0, A4_KINDS.index("hang"), 2]),
                              sel["_a4_tick"] + b"\x08"]),
        "a4-queue": J(up + [sel["_a4_pkt"] + b"\x00\x00\x00", sel["_a4_publish"] + b"\x00\x28",
                            sel["_a4_ring"] + b"\x00", sel["_a4_publish"] + b"\x00\x00",
                            sel["_a4_ring"] + b"\x00",
                            sel["_a4_destroy"] + b"\x00", sel["_a4_ring"] + b"\x00"]),
        "a4-flr": J(up + [sel["_a4_submit"] + b"\x00\x03\x00", sel["_flr"]]),
    }


def parser_seeds(_chip: str = "npu4") -> dict[str, bytes]:
    from .. import kernels
    from ..fw.messages import MSG_HEADER, MSG_ID_MAGIC, Opcode, sz_ver

    out = {"image": b"\x00" + small_image()}
    for k in kernels.Kernel:
        out[f"kernel-{k.name.lower()}"] = b"\x01" + kernels.encode(kernels.Desc(k, count=4, m=2, n=2, k=2))
    msg = MSG_HEADER.pack(4, sz_ver(4), MSG_ID_MAGIC | 1, Opcode.GET_FIRMWARE_VERSION) + bytes(4)
    out["mailbox"] = b"\x02" + struct.pack("<H", len(msg) * 2) + msg * 2
    return out


def small_image(chip_name: str = "npu4", payload: bytes = bytes(range(32))) -> bytes:
    """A valid signed image with a tiny payload (the parser accepts any payload size)."""
    import hmac

    from ..chips import load_chip
    from ..fw import image as fwi

    chip = load_chip(chip_name)
    dev, rev = fwi.fw_target(chip)
    head = fwi._HDR.pack(fwi.MAGIC, fwi.FORMAT_VERSION, fwi.HEADER_SIZE, len(payload), dev, rev,
                         0, 1, 0, 0, 0, 6, 1, hashlib.sha256(payload).digest(), bytes(24))
    sig = hmac.new(fwi.TEST_KEY, head + payload, hashlib.sha256).digest()
    return head + sig + payload


# -- targets -------------------------------------------------------------------------------
class FindingLog:
    """What every campaign keeps of its findings (docs/spec/fuzzing.md): crash and hang
    counts, the seconds to the first, and one artifact per failure signature. The campaign
    sets ``artifacts``, ``crashes``, ``hangs``, ``signatures``, ``t0`` and
    ``first_finding_s``."""

    artifacts: Path | None
    crashes: int
    hangs: int
    signatures: dict[tuple[str, str], str]
    first_finding_s: float | None
    _t0 = 0.0
    _cpu0 = 0.0

    @property
    def t0(self) -> float:
        """When fuzzing started (monotonic seconds); setting it also marks the process's CPU
        time then, for the campaign's CPU rate (docs/spec/fuzzing.md §9)."""
        return self._t0

    @t0.setter
    def t0(self, when: float) -> None:
        self._t0, self._cpu0 = when, time.process_time()

    def count_finding(self, kind: str, name: str) -> Path | None:
        """Count one finding; return the (created) artifact directory when its signature is
        new and artifacts are kept, else None."""
        if self.first_finding_s is None:
            self.first_finding_s = round(time.monotonic() - self.t0, 2)
        if kind == "hang":
            self.hangs += 1
        else:
            self.crashes += 1
        if (kind, name) in self.signatures or self.artifacts is None:
            return None
        self.artifacts.mkdir(parents=True, exist_ok=True)
        return self.artifacts

    def finding_stats(self) -> dict[str, Any]:
        return {"crashes": self.crashes, "hangs": self.hangs,
                "unique": sorted(f"{k}:{n}" for k, n in self.signatures),
                "artifacts": sorted(self.signatures.values()),
                "first_finding_s": self.first_finding_s,
                # seconds spent fuzzing (from t0), so the campaign's rate leaves start-up out,
                # and the worker's CPU seconds in that time (its rate on a loaded machine)
                "fuzz_seconds": round(time.monotonic() - self.t0, 3),
                "cpu_seconds": round(time.process_time() - self._cpu0, 3)}


class Target(FindingLog):
    """One harness: ``one(data)`` returns a Failure-like finding or None."""

    def __init__(self, name: str, chip: str, artifacts: Path | None) -> None:
        logging.getLogger("xdna_emu").setLevel(logging.CRITICAL)
        self.name, self.chip, self.artifacts = name, chip, artifacts
        self.execs = self.crashes = self.hangs = 0
        self.signatures: dict[tuple[str, str], str] = {}
        self.features: set[Any] = set()
        self._state_ids: dict[tuple, int] = {}  # device states met, numbered (coverage_feature)
        self.t0 = time.monotonic()
        self.first_finding_s: float | None = None  # seconds from start to the first finding
        if name == "device":
            from .ops import DeviceHarness, run_input

            self.session = DeviceHarness(chip)
            self._run = lambda data, pin=None, hint=None, limit=None: run_input(
                self.session, data, pin, hint, limit)
        elif name == "parsers":
            self._parsers = ParserTarget(chip)
            self._run = lambda data, pin=None, hint=None, limit=None: self._parsers.one(data)
        else:
            raise ValueError(f"unknown target {name!r}")

    def __call__(self, data: bytes, pin: int | None = None, hint: bytes | None = None,
                 limit: int | None = None) -> bytes:
        """TestOneInput; ``pin``/``hint``/``limit`` as in
        :meth:`~xdna_emu.fuzz.ops.Interpreter.run_fresh` (device target only). Returns the
        part of ``data`` that ran (all of it unless ``limit`` stopped it)."""
        self.execs += 1
        data = bytes(data)
        found = self._run(data, pin, hint, limit)
        session = getattr(self, "session", None)
        if limit is not None and session is not None and session.ran_to < len(data):
            data = data[: session.ran_to]
        if found is not None:
            self.record(found, data)
        miss = session.journal_miss if session is not None else None
        if miss is not None:  # an earlier input's change escaped the journal (fuzzing.md §9)
            session.journal_miss = None
            self.record(miss, miss.data if miss.data is not None else b"")
        return data

    @property
    def pinned(self) -> bytes | None:
        """The prefix the last input pinned (device target), else None."""
        return getattr(getattr(self, "session", None), "pinned", None)

    def record(self, found: Any, data: bytes) -> None:
        kind = getattr(found, "kind", "crash")
        name = getattr(found, "name", type(found).__name__)
        where = self.count_finding(kind, name)
        if where is None:
            return
        stem = where / f"{kind}-{name}-{hashlib.sha1(data).hexdigest()[:10]}"
        stem.with_suffix(".bin").write_bytes(data)
        if self.name == "device":
            from .trace import Trace

            ops = list(getattr(found, "ops", None) or self.session.executed)
            notes = [f"found by the atheris device target: {found}", f"input: {stem.name}.bin"]
            if kind == "harness":  # a journal miss shows when the input runs twice, checked
                pin = "" if found.pin is None else f" --pin {found.pin}"
                notes.append("replay: python -m xdna_emu.fuzz.atheris_target "
                             f"--chip {self.chip} --replay-journal {stem.name}.bin{pin}")
            trace = Trace(self.chip, ops, notes)
            stem.with_suffix(".trace").write_text(trace.to_text())
        else:
            stem.with_suffix(".txt").write_text(f"{found!r}\n")
        self.signatures[(kind, name)] = str(stem)

    def coverage_feature(self, data: bytes) -> bool:
        """Fallback coverage: did this input reach a new (op kind, device state) pair?"""
        if self.name != "device":
            key = (data[:1], len(data) // 16)
            new = key not in self.features
            self.features.add(key)
            return new
        s = self.session
        # the state after the input, the same for every op's key: numbered once, so a
        # feature hashes a small int instead of the nested state tuple again per op
        state = s.state_key()
        ids = self._state_ids
        sid = ids.get(state)
        if sid is None:
            sid = ids[state] = len(ids)
        features, before = self.features, len(self.features)
        add = features.add
        # the kinds of the restored prefix's ops are worked out once per snapshot, and
        # added once per state it ends in (docs/spec/fuzzing.md §9)
        for kind in s.executed_kinds(sid):
            add((*kind, sid))
        return len(features) != before

    def stats(self) -> dict[str, Any]:
        session = getattr(self, "session", None)  # the device target's snapshot counters
        snaps = {} if session is None else {"snapshots_taken": session.snap_stats["taken"],
                                            "restored": session.snap_stats["restored"],
                                            "memo_hits": session.snap_stats["memo_hits"],
                                            "tracking_misses": session.snap_stats["tracking_misses"],
                                            "journal_misses": session.snap_stats["journal_misses"],
                                            "page_tracking": session.page_tracking}
        return {"execs": self.execs, **self.finding_stats(), **snaps}


class ParserTarget:
    """Raw bytes into the Python-side parsers; only their documented errors may escape."""

    def __init__(self, chip: str) -> None:
        from ..chips import load_chip
        from ..fw.mailbox import MailboxEngine
        from ..regio import RegisterFile

        self.chip = load_chip(chip)
        bars = {i: memoryview(bytearray(b.size)) for i, b in self.chip.bars.items()}
        self.regs = RegisterFile(self.chip, bars)
        self.stats: dict[str, int] = {}
        self.engine = MailboxEngine(self.chip, self.regs, lambda _v: None, self.stats)

    def one(self, data: bytes) -> Exception | None:
        from .. import kernels
        from ..fw.image import ImageError, parse_image
        from .invariants import InvariantViolation

        sel, body = (data[0] % 3, data[1:]) if data else (0, b"")
        try:
            if sel == 0:
                try:
                    img = parse_image(body, self.chip)
                except ImageError:
                    return None
                if img.payload_size + 128 > len(body):
                    return InvariantViolation("image_size", "accepted a truncated image")
            elif sel == 1:
                try:
                    desc = kernels.decode(body)
                except kernels.KernelError:
                    return None
                if any(s < 0 for s in desc.arg_sizes()) or desc.nargs != len(desc.arg_sizes()):
                    return InvariantViolation("kernel_args", f"{desc}: bad argument sizes")
            else:
                return self._mailbox(body)
        except Exception as exc:  # noqa: BLE001 - the finding
            exc.kind, exc.name = "crash", f"{('image', 'kernel', 'mailbox')[sel]}_{type(exc).__name__}"  # type: ignore[attr-defined]
            return exc
        return None

    def _mailbox(self, body: bytes) -> Exception | None:
        from .invariants import InvariantViolation

        eng = self.engine
        eng.close_all()
        for k in self.stats:
            self.stats[k] = 0
        ch = eng.open_channel(0, lambda c, m: c.reply(m, m.payload[:8] or bytes(4)), 0)
        tail = int.from_bytes(body[:2], "little")
        ring = body[2 : 2 + ch.ring_size]
        span = self.regs.span(ch.x2i_buf, ch.ring_size)
        span[:] = bytes(ch.ring_size)
        span[: len(ring)] = ring
        self.regs.write_dev(ch.x2i_tail_reg, tail)
        ch.on_x2i_tail()
        if ch.ok and ch.x2i_head != tail % (ch.ring_size + 1):
            if not (ch.x2i_head == 0 and tail == ch.ring_size):
                return InvariantViolation("mbox_head", f"consumed to {ch.x2i_head:#x}, tail {tail:#x}")
        if ch.msgs_out + len(ch.outq) > ch.msgs_in:
            return InvariantViolation("mbox_responses", "more responses than requests")
        self.regs.write_dev(ch.i2x_head_reg, int.from_bytes(body[-2:], "little") if len(body) > 3 else 0)
        ch.on_i2x_head()
        return None


# -- runners -------------------------------------------------------------------------------
class StopFlag:
    """Set by SIGINT or SIGTERM. A worker's loop checks it between examples, so Ctrl-C lets
    the running example finish, the final stats say ``interrupted`` and the worker exits 0:
    an interrupted example is never a finding (a KeyboardInterrupt raised inside a shim
    wait hook would look like a crash)."""

    def __init__(self) -> None:
        self.set = False

    def install(self) -> StopFlag:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._on)
        return self

    def _on(self, _signum: int, _frame: Any) -> None:
        self.set = True


def write_stats(path: Path | None, info: dict[str, Any]) -> None:
    """A worker's stats file, replaced atomically (``xdna-emu fuzz`` polls it)."""
    if path is None:
        return
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(info))
    os.replace(tmp, path)


def _write_stats(path: Path | None, target: Target, extra: dict[str, Any]) -> None:
    write_stats(path, {**target.stats(), **extra})


class LibFuzzerRounds:
    """The incremental rounds of :func:`builtin_fuzz` under libFuzzer (docs/spec/fuzzing.md
    §9), as its custom mutator: at a round's start the input libFuzzer hands over is the
    parent, run once with a snapshot pinned at a cut (the largest of CUT_DRAWS draws); the
    next :data:`ROUND` calls return its prefix plus libFuzzer's own mutation (``mutate``,
    ``atheris.Mutate``) of the rest, and :meth:`one` runs each such child from the pinned
    snapshot within :data:`CHILD_WORK`. One round in 20 mutates the whole input instead.
    libFuzzer keeps choosing parents from its corpus and judging children by its coverage."""

    def __init__(self, target: Target, seed: int, mutate: Callable[[bytes, int], bytes]) -> None:
        self.target, self.rng, self.mutate = target, random.Random(seed), mutate
        self.parent = b""
        self.prefix: bytes | None = None
        self.left = 0

    def custom_mutator(self, data: bytes, max_size: int, _seed: int) -> bytes:
        if self.left <= 0:
            self.prefix = None
            if self.target.name == "device" and data and self.rng.random() >= WHOLE_INPUT:
                self.target(data, pin=max(self.rng.randrange(len(data)) for _ in range(CUT_DRAWS)))
                if self.target.pinned is not None:
                    self.parent, self.prefix, self.left = bytes(data), self.target.pinned, ROUND
            if self.prefix is None:
                return self.mutate(data, max_size)
        self.left -= 1
        prefix = self.prefix
        assert prefix is not None
        return prefix + self.mutate(self.parent[len(prefix):], max(1, max_size - len(prefix)))

    def one(self, data: bytes) -> None:
        """TestOneInput: a child of the running round starts from its pinned snapshot."""
        prefix = self.prefix
        if prefix is not None and data.startswith(prefix):
            self.target(data, hint=prefix, limit=CHILD_WORK)
        else:
            self.target(data)


def run_atheris(target_name: str, chip: str, artifacts: Path, stats: Path | None,
                libfuzzer_args: list[str], seed: int = 0) -> None:
    """Instrument the package, then hand control to libFuzzer (never returns)."""
    import atheris

    # coverage of the device model only: the harness (ops, pydriver) is imported after,
    # uninstrumented, so its bookkeeping does not count as new behaviour or cost time
    with atheris.instrument_imports(include=["xdna_emu"]):
        from .. import device, kernels  # noqa: F401 - instrumented for coverage
        from ..fw import ctx, image, mailbox, mgmt, psp, smu  # noqa: F401
    target = Target(target_name, chip, artifacts)
    # looked up at each call: Fuzz() rebinds atheris.Mutate to the loaded libFuzzer's
    rounds = LibFuzzerRounds(target, seed, lambda data, size: atheris.Mutate(data, size))
    last = [0.0]

    def one(data: bytes) -> None:
        rounds.one(data)
        now = time.monotonic()
        if now - last[0] > STATS_EVERY_S:
            last[0] = now
            _write_stats(stats, target, {})

    import atexit

    atexit.register(lambda: _write_stats(stats, target, {"final": True}))
    atheris.Setup([sys.argv[0], *libfuzzer_args], one,
                  custom_mutator=rounds.custom_mutator if target_name == "device" else None)
    atheris.Fuzz()


Mutator = Callable[[bytes, random.Random], bytes]


def _mutate(data: bytes, rng: random.Random, corpus: list[bytes], dict_toks: list[bytes]) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        r = rng.random()
        pos = rng.randint(0, len(buf))
        if r < 0.25 and buf:
            buf[rng.randrange(len(buf))] ^= 1 << rng.randrange(8)
        elif r < 0.45 and buf:
            buf[rng.randrange(len(buf))] = rng.randrange(256)
        elif r < 0.6:
            buf[pos:pos] = rng.choice(dict_toks)
        elif r < 0.75:
            buf[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 12)))
        elif r < 0.85 and len(buf) > 1:
            a = rng.randrange(len(buf))
            del buf[a : a + rng.randint(1, 8)]
        else:
            other = rng.choice(corpus)
            cut = rng.randint(0, len(other))
            buf[pos:] = b"FUZZ" + other[cut:]
    return bytes(buf[:MAX_INPUT])


#: inputs per incremental round (docs/spec/fuzzing.md §9): they share the parent's prefix up
#: to a pinned snapshot and differ only after it
ROUND = 64
#: the most a child may spend past its parent's pinned snapshot (ops.MAX_OPS units: one
#: semantic call and 16 ops): a child is the cut's neighbourhood, not a whole new tail, so
#: it costs a restore and a few ops; deeper tails come from later cuts and whole inputs
CHILD_WORK = 48
#: share of rounds that mutate anywhere in the input instead (no pinned prefix)
WHOLE_INPUT = 0.05
CUT_DRAWS = 3


def _save_corpus(corpus_dir: Path | None, unsaved: list[bytes]) -> None:
    """Write the corpus entries found since the last call (named by their SHA-1)."""
    if corpus_dir is None or not unsaved:
        return
    corpus_dir.mkdir(parents=True, exist_ok=True)
    where = str(corpus_dir)
    for data in unsaved:  # os-level: Path.write_bytes costs about twice as much a file
        fd = os.open(os.path.join(where, hashlib.sha1(data).hexdigest()),
                     os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
    unsaved.clear()


def builtin_fuzz(target: Target, seconds: float, corpus_dir: Path | None, seeds: dict[str, bytes],
                 seed: int = 0, progress: Callable[[dict[str, Any]], None] | None = None,
                 stats: Path | None = None, stop: StopFlag | None = None,
                 max_execs: int | None = None) -> dict[str, Any]:
    """A mutational loop with (op, state) coverage feedback, for when atheris is absent.
    ``stop`` ends it early (between two inputs); ``max_execs`` bounds it by work.

    Incremental rounds (Nyx-Net's incremental snapshots): a parent from the corpus runs once
    with a snapshot pinned at a random cut, then :data:`ROUND` children keep the bytes
    before the cut and mutate only what follows, each restored from that snapshot, so a
    child pays for its own suffix only. A share of inputs mutates the whole input."""
    stop = stop or StopFlag()
    target.t0 = time.monotonic()  # fuzzing starts here: the harness is built, seeds are inputs
    rng = random.Random(seed)
    corpus = list(seeds.values()) or [b""]
    if corpus_dir is not None and corpus_dir.is_dir():
        corpus += [p.read_bytes() for p in sorted(corpus_dir.iterdir()) if p.is_file()]
    toks = dictionary()
    for data in list(corpus):
        target(data)
        target.coverage_feature(data)
    t0 = last = time.monotonic()
    queue: list[tuple[bytes, bytes | None]] = []  # (input, pinned prefix) still to run
    # new corpus entries are written with each progress record and at the end (also when
    # an exception ends the loop), not one file per entry as found (docs/spec/fuzzing.md §9)
    unsaved: list[bytes] = []
    try:
        while (time.monotonic() - t0 < seconds and not stop.set
               and (max_execs is None or target.execs < max_execs)):
            if not queue:
                parent = rng.choice(corpus)
                if target.name == "device" and rng.random() >= WHOLE_INPUT and parent:
                    # the cut leans to the end (the largest of CUT_DRAWS draws): short suffixes
                    # are cheap children, and the deep states a long prefix reached get fuzzed
                    target(parent, pin=max(rng.randrange(len(parent)) for _ in range(CUT_DRAWS)))
                    prefix = target.pinned
                    if prefix is not None:
                        rest = parent[len(prefix):]
                        queue = [((prefix + _mutate(rest, rng, corpus, toks))[:MAX_INPUT], prefix)
                                 for _ in range(ROUND)]
                        continue
                queue = [(_mutate(parent, rng, corpus, toks), None)]
            data, hint = queue.pop()
            data = target(data, hint=hint, limit=CHILD_WORK if hint is not None else None)
            if target.coverage_feature(data):
                corpus.append(data)
                if corpus_dir is not None:
                    unsaved.append(data)
            now = time.monotonic()
            if now - last > STATS_EVERY_S:
                last = now
                _save_corpus(corpus_dir, unsaved)
                info = {"execs": target.execs, "coverage": len(target.features), "corpus": len(corpus),
                        "crashes": target.crashes, "hangs": target.hangs, "elapsed": now - t0}
                if progress:
                    progress(info)
                _write_stats(stats, target, {"coverage": len(target.features), "corpus": len(corpus)})
    finally:
        _save_corpus(corpus_dir, unsaved)
    _write_stats(stats, target, {"coverage": len(target.features), "corpus": len(corpus),
                                 "final": True, "interrupted": stop.set})
    return {"coverage": len(target.features), "corpus_size": len(corpus)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m xdna_emu.fuzz.atheris_target")
    p.add_argument("--target", choices=["device", "parsers"], default="device")
    p.add_argument("--chip", default="npu4")
    p.add_argument("--artifacts", default="fuzz-artifacts")
    p.add_argument("--stats")
    p.add_argument("--builtin", action="store_true", help="no atheris: the built-in loop")
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--corpus")
    p.add_argument("--replay-journal", metavar="INPUT",
                   help="run a journal-miss finding's input twice with every restore checked")
    p.add_argument("--pin", type=int, help="with --replay-journal: the byte its snapshot is pinned at")
    p.add_argument("libfuzzer", nargs="*", help="libFuzzer arguments (after --)")
    args = p.parse_args(argv)
    if args.replay_journal:
        from .ops import replay_journal

        miss = replay_journal(Path(args.replay_journal).read_bytes(), args.chip, args.pin)
        print(miss if miss is not None else "no change escaped the journal")
        return 1 if miss is not None else 0
    stats = Path(args.stats) if args.stats else None
    if args.builtin:
        target = Target(args.target, args.chip, Path(args.artifacts))
        seeds = device_seeds(args.chip) if args.target == "device" else parser_seeds()
        builtin_fuzz(target, args.seconds, Path(args.corpus) if args.corpus else None, seeds,
                     args.seed, stats=stats, stop=StopFlag().install())
        return 0
    run_atheris(args.target, args.chip, Path(args.artifacts), stats, args.libfuzzer, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
