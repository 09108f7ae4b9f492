"""``xdna-emu bench``: the emulator's figures next to the physical floors of the same run.

Every figure is reported with the floor it should be judged against (docs/spec/operator.md
§7; DESIGN rule: ratios to floors measured in the same run, never absolute timings in tests).
On a shared VM the floors move between runs (an eventfd round trip was measured at 2.5 µs
in one run and 75 µs in the next), so the run is split into rounds: each round samples every
floor, then every figure, and the report gives each value's minimum, median and spread
over all rounds.

Floors, from this process to a Python child process (the daemon's side is Python too):

- ``eventfd_rtt_us``: write an eventfd from C (the shim's ``xdna_shim_bench_eventfd``, as
  the shim kicks), the child reads it and writes another back, which C waits for as the
  shim waits for an interrupt (``detail.eventfd_py_rtt_us``: the same from Python);
- ``shm_spin_rtt_us``: bump a word in shared memory, the child spins until it sees it and
  bumps another; the cost of a polled ring with no system call;
- ``socket_rtt_us``: one byte each way over a UNIX socket pair (the control plane);
- ``memcpy_gbps``: ``numpy.copyto`` of 16 MiB (4 MiB with ``--quick``).

Figures (the emulated npu4 unless ``--chip``):

- ``mailbox_rtt_us``: GET_FIRMWARE_VERSION (IDENTIFY on AIE4) through the C shim, the mailbox rings, the write
  log and an MSI-X eventfd; on AIE2 a mgmt query, which the daemon's C path answers
  (docs/spec/jobs.md §7 "Management queries"); ``detail.mailbox_py_rtt_us``: the same for
  GET_RUNTIME_CONFIG, a message the Python firmware answers (AIE4: IDENTIFY again);
- ``job_latency_us`` / ``job_latency_poll_us``: one no-op command submitted and waited for,
  on the interrupt, and in TURBO mode, where the shim polls the context's ring;
- ``job_throughput_per_s``: no-op commands with 4 in flight on one context;
  ``job_throughput_8ctx_per_s`` / ``job_throughput_16ctx_per_s``: 4 in flight on each of 8
  and 16 contexts (as many as the chip allows);
- ``chain_throughput_per_s``: commands per second in chains of 64 no-ops, 4 chains in flight;
- ``probe_ms``: a full driver probe on a fresh attach; ``probe_msg_rtt_sum_ms``: what its
  message round trips cost at the round trips measured in the same round (each mailbox
  message the firmware answered at ``mailbox_rtt_us`` if the C path answered it
  (``detail.probe_msgs_fast``), else at ``detail.mailbox_py_rtt_us``, each PSP and SMU
  register command at
  ``eventfd_rtt_us``). The counts are read before the shim closes, so the stop's messages are
  not in them, and messages posted for a later answer (the async event buffers) are no round
  trip (``detail.probe_msgs_answered`` / ``probe_msgs_posted`` / ``probe_reg_cmds``);
- ``trapped_writes_per_s``: side-effect register writes through the write log, counted until
  the daemon has applied them;
- ``copy_gbps``: the reference ``copy`` kernel on 16 MiB (4 MiB) buffers;
- ``daemon_rss_mib``: the daemon's resident set, idle after a probe
  (``detail.daemon_rss_load_mib``: after the load figures).
"""

from __future__ import annotations

import argparse
import json
import mmap
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

FLOOR_KEYS = ("eventfd_rtt_us", "shm_spin_rtt_us", "socket_rtt_us", "memcpy_gbps")
RESULT_KEYS = ("mailbox_rtt_us", "job_latency_us", "job_latency_poll_us", "job_throughput_per_s",
               "job_throughput_16ctx_per_s", "chain_throughput_per_s", "probe_ms",
               "probe_msg_rtt_sum_ms", "trapped_writes_per_s", "copy_gbps", "daemon_rss_mib")
#: The issue's goals, as (figure, floor or None, comparison, bound): figure/floor <= bound
#: ("le"), or figure >= bound ("ge"; with a floor: figure/floor >= bound).
GOALS: tuple[tuple[str, str | None, str, float], ...] = (
    ("mailbox_rtt_us", "eventfd_rtt_us", "le", 2.5),
    ("job_latency_us", "eventfd_rtt_us", "le", 3.0),
    ("job_latency_poll_us", "shm_spin_rtt_us", "le", 20.0),
    ("job_throughput_per_s", None, "ge", 25_000),
    ("job_throughput_16ctx_per_s", None, "ge", 62_000),
    ("chain_throughput_per_s", None, "ge", 200_000),
    ("probe_ms", "probe_msg_rtt_sum_ms", "le", 2.0),
    ("copy_gbps", "memcpy_gbps", "ge", 0.5),
    ("daemon_rss_mib", None, "le", 80),
)

CHAIN_LEN = 64
IN_FLIGHT = 4

# The child answers three kinds of ping: eventfd (a -> b), socket bytes, and a shared-memory
# spin that only runs between a "go" on eventfd c and the count it is told (so it never
# burns a core while other figures are measured).
CHILD = r"""
import mmap, os, select, socket, struct, sys
a, b, c, s, m = (int(x) for x in sys.argv[1:6])
sock = socket.socket(fileno=s)
shm = mmap.mmap(m, 4096)
words = memoryview(shm).cast("Q")
poll = select.poll()
for fd in (a, c, s):
    poll.register(fd, select.POLLIN)
while True:
    for fd, _ in poll.poll():
        if fd == a:
            if os.eventfd_read(a) > 1:
                sys.exit(0)
            os.eventfd_write(b, 1)
        elif fd == s:
            data = sock.recv(64)
            if not data:
                sys.exit(0)
            sock.send(data)
        else:
            for _ in range(os.eventfd_read(c)):
                while words[0] == words[1]:
                    pass
                words[1] = words[0]
"""


class Peer:
    """The child process the floors ping."""

    def __init__(self) -> None:
        self.a, self.b, self.c = os.eventfd(0), os.eventfd(0), os.eventfd(0)
        self.sock, child_sock = socket.socketpair()
        self.memfd = os.memfd_create("xdna-bench-shm")
        os.ftruncate(self.memfd, 4096)
        self.shm = mmap.mmap(self.memfd, 4096)
        self.words = memoryview(self.shm).cast("Q")
        fds = (self.a, self.b, self.c, child_sock.fileno(), self.memfd)
        self.proc = subprocess.Popen([sys.executable, "-c", CHILD, *map(str, fds)], pass_fds=fds)
        child_sock.close()

    def eventfd_c(self, n: int) -> list[float]:
        """Round trips timed in C (the shim's side of a kick and an interrupt)."""
        from .shim import bench_eventfd

        return bench_eventfd(self.a, self.b, n)

    def eventfd(self, n: int) -> list[float]:
        out, a, b, clock = [], self.a, self.b, time.perf_counter_ns
        for _ in range(n):
            t0 = clock()
            os.eventfd_write(a, 1)
            os.eventfd_read(b)
            out.append((clock() - t0) / 1e3)
        return out

    def socket(self, n: int) -> list[float]:
        out, s, clock = [], self.sock, time.perf_counter_ns
        for _ in range(n):
            t0 = clock()
            s.send(b"x")
            s.recv(64)
            out.append((clock() - t0) / 1e3)
        return out

    def shm_spin(self, n: int) -> list[float]:
        w, out, clock = self.words, [], time.perf_counter_ns
        os.eventfd_write(self.c, n)
        for _ in range(n):
            t0 = clock()
            v = w[0] + 1
            w[0] = v
            while w[1] != v:
                pass
            out.append((clock() - t0) / 1e3)
        return out

    def close(self) -> None:
        os.eventfd_write(self.a, 2)
        self.sock.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.words.release()
        self.shm.close()
        for fd in (self.a, self.b, self.c, self.memfd):
            os.close(fd)


def memcpy_gbps(src: Any, dst: Any, n: int) -> list[float]:
    import numpy as np

    out = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        np.copyto(dst, src)
        out.append(src.nbytes / (time.perf_counter_ns() - t0))  # bytes/ns == GB/s
    return out


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise OSError(f"no VmRSS for pid {pid}")


@dataclass
class Sizes:
    rounds: int
    floor_n: int
    msgs: int
    jobs: int
    chains: int
    probes: int
    writes: int
    copy_bytes: int
    copies: int

    @classmethod
    def for_mode(cls, quick: bool) -> Sizes:
        if quick:
            return cls(rounds=3, floor_n=200, msgs=150, jobs=600, chains=8, probes=2,
                       writes=3000, copy_bytes=4 << 20, copies=4)
        return cls(rounds=7, floor_n=1000, msgs=600, jobs=3000, chains=30, probes=5,
                   writes=20000, copy_bytes=16 << 20, copies=8)


@dataclass
class Samples:
    """Every sample of every floor and figure, by key, over all rounds."""

    values: dict[str, list[float]] = field(default_factory=dict)

    def add(self, key: str, vals: float | list[float]) -> None:
        self.values.setdefault(key, []).extend(vals if isinstance(vals, list) else [vals])

    def median(self, key: str) -> float:
        return statistics.median(self.values[key])

    def summary(self, key: str) -> dict[str, float]:
        v = sorted(self.values[key])
        med = statistics.median(v)
        p10, p90 = v[int(0.1 * (len(v) - 1))], v[int(0.9 * (len(v) - 1))]
        return {"min": v[0], "median": med, "max": v[-1], "p10": p10, "p90": p90,
                "spread": (p90 - p10) / med if med else 0.0, "n": len(v)}


class Progress:
    """A one-line bar on stderr, only when stderr is a terminal."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.done, self.enabled = total, 0, enabled

    def step(self, what: str) -> None:
        self.done += 1
        if self.enabled:
            width = 30
            fill = width * self.done // self.total
            sys.stderr.write(f"\r[{'#' * fill}{'.' * (width - fill)}] {self.done}/{self.total} "
                             f"{what:<28}")
            sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\r" + " " * 72 + "\r")
            sys.stderr.flush()


def _rate(n: int, t0: int) -> float:
    return n / ((time.perf_counter_ns() - t0) / 1e9)


def _stream(ctxs: list[Any], cmds: list[list[Any]], jobs: int) -> float:
    """Jobs per second with IN_FLIGHT commands outstanding on each context, round robin."""
    queues: list[list[Any]] = [[] for _ in ctxs]
    t0 = time.perf_counter_ns()
    for i in range(jobs):
        k = i % len(ctxs)
        q = queues[k]
        if len(q) == IN_FLIGHT:
            q.pop(0).wait(5)
        q.append(ctxs[k].submit(cmds[k][i // len(ctxs) % IN_FLIGHT]))
    for q in queues:
        for r in q:
            r.wait(5)
    return _rate(jobs, t0)


@contextmanager
def _devices(chip: str) -> Iterator[dict[str, Any]]:
    """Three daemons: one whose device this process drives (jobs, messages, copies), one in
    TURBO mode (polled rings) and one left unprobed for probe timing and trapped writes."""
    from .emulator import Emulator
    from .fw.image import default_firmware_dir
    from .runtime import Device

    fw = default_firmware_dir()
    with ExitStack() as stack:
        main = stack.enter_context(Emulator(chip=chip, private=True))
        poll = stack.enter_context(Emulator(chip=chip, private=True))
        bare = stack.enter_context(Emulator(chip=chip, private=True))
        dev = stack.enter_context(Device.open(main.socket, firmware_path=fw))
        pdev = stack.enter_context(Device.open(poll.socket, firmware_path=fw))
        pdev.set_power_mode("turbo")
        yield {"main": main, "poll": poll, "bare": bare, "dev": dev, "pdev": pdev, "fw": fw}


def _probe_counts(sock: Any) -> dict[str, int]:
    from .control import ControlClient

    with ControlClient(sock) as cl:
        cl.version()
        st = cl.status()
    c, fast = st["device"]["counters"], st["stats"].get("fast_queries", 0)
    return {"fast_queries": int(fast), **{k: int(c.get(k, 0)) for k in (
        "mbox_msgs_in", "mbox_msgs_out", "psp_cmds", "smu_cmds", "writes")}}


def _wait_writes(sock: Any, target: int) -> None:
    """Until the daemon has applied ``target`` trapped writes in all (bounded: 30 s)."""
    deadline = time.monotonic() + 30
    while _probe_counts(sock)["writes"] < target:
        if time.monotonic() > deadline:
            raise TimeoutError("the daemon did not apply the trapped writes")


def _version_query(family: str) -> tuple[int, bytes, int]:
    """The family's firmware-version message as (opcode, request, response size): the
    mailbox round trip every generation answers (GET_FIRMWARE_VERSION, IDENTIFY)."""
    if family == "aie4":
        from .fw.aie4.messages import MESSAGES
        from .fw.aie4.messages import Opcode as Aie4Opcode

        msg = MESSAGES[Aie4Opcode.IDENTIFY]
        return int(Aie4Opcode.IDENTIFY), bytes(msg.req.size), msg.resp.size
    from .fw.messages import LAYOUTS, Opcode

    op = Opcode.GET_FIRMWARE_VERSION
    return int(op), bytes(LAYOUTS[op].req.size), LAYOUTS[op].resp.size


def _mgmt_rtts(shim: Any, msg: tuple[int, bytes, int], n: int) -> list[float]:
    """``n`` round trips of one mgmt message (opcode, request, response size), in µs."""
    lat = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        shim.mgmt_msg(*msg)
        lat.append((time.perf_counter_ns() - t0) / 1e3)
    return lat


def _python_query(chip: Any) -> tuple[int, bytes, int]:
    """A mgmt message the Python firmware answers (the C path answers only the queries):
    GET_RUNTIME_CONFIG of the chip's first runtime type on AIE2; IDENTIFY on AIE4."""
    if chip.family == "aie4" or not chip.runtime_types:
        return _version_query(chip.family)
    from .fw.messages import LAYOUTS, Opcode

    lay = LAYOUTS[Opcode.GET_RUNTIME_CONFIG]
    return int(Opcode.GET_RUNTIME_CONFIG), lay.req.pack(min(chip.runtime_types)), lay.resp.size


def _chain_len(family: str) -> int:
    """Commands per chain: CHAIN_LEN, or on AIE4 what one HSA queue holds (a chain's
    packets must all fit the queue)."""
    if family == "aie4":
        from .fw.aie4.messages import HSA_QUEUE_SLOTS

        return min(CHAIN_LEN, HSA_QUEUE_SLOTS)
    return CHAIN_LEN


def run(chip: str = "npu4", quick: bool = False, progress: bool = False) -> dict[str, Any]:
    """Measure every floor and figure in interleaved rounds; returns the JSON object."""
    import numpy as np

    from .chips import MailboxLayout, load_chip
    from .shim import Shim

    sz = Sizes.for_mode(quick)
    chip_data = load_chip(chip)
    s = Samples()
    blocks = 14
    bar = Progress(sz.rounds * blocks + 2, progress)
    src = np.ones(sz.copy_bytes // 4, dtype=np.int32)
    dst = np.empty_like(src)
    peer = Peer()
    try:
        with _devices(chip) as d:
            dev, pdev, shim = d["dev"], d["pdev"], d["dev"].shim
            idle_rss = rss_mib(d["main"].pid)
            s.add("daemon_rss_mib", idle_rss)
            query, python_msg = _version_query(chip_data.family), _python_query(chip_data)
            limit = chip_data.limits.hwctx_limit
            ctxs = [dev.context() for _ in range(min(16, limit))]
            cmds = [[c.command("nop") for _ in range(IN_FLIGHT)] for c in ctxs]
            pctx = pdev.context()
            pcmd = pctx.command("nop")
            a, out = dev.buffer(src), dev.buffer(sz.copy_bytes)
            copy_cmd = ctxs[0].command("copy", a, out)
            chain_len = _chain_len(chip_data.family)
            # one set of sub-commands per chain in flight: a command BO is its completion
            # signal, so it must not be submitted again before it ends
            chain_cmds = [[ctxs[0].command("nop") for _ in range(chain_len)]
                          for _ in range(IN_FLIGHT)]
            lay = chip_data.mailbox
            trap = chip_data.dev_to_bar(lay.chan_regs(1) + MailboxLayout.X2I_TAIL) if lay else None
            for c, cc in zip(ctxs, cmds, strict=True):  # warm every path once
                for cmd in cc:
                    c.submit(cmd).wait(5)
            bar.step("warm-up")
            for _ in range(sz.rounds):
                s.add("eventfd_rtt_us", peer.eventfd_c(sz.floor_n))
                s.add("eventfd_py_rtt_us", peer.eventfd(sz.floor_n))
                bar.step("eventfd floor")
                s.add("shm_spin_rtt_us", peer.shm_spin(sz.floor_n))
                bar.step("shared-memory floor")
                s.add("socket_rtt_us", peer.socket(sz.floor_n))
                bar.step("socket floor")
                s.add("memcpy_gbps", memcpy_gbps(src, dst, sz.copies))
                bar.step("memcpy floor")

                s.add("mailbox_rtt_us", _mgmt_rtts(shim, query, sz.msgs))
                s.add("mailbox_py_rtt_us", _mgmt_rtts(shim, python_msg, sz.msgs))
                bar.step("mailbox round trip")

                lat = []
                for i in range(sz.msgs):
                    t0 = time.perf_counter_ns()
                    ctxs[0].submit(cmds[0][i % IN_FLIGHT]).wait(5)
                    lat.append((time.perf_counter_ns() - t0) / 1e3)
                s.add("job_latency_us", lat)
                bar.step("job latency")

                lat = []
                for _ in range(sz.msgs):
                    t0 = time.perf_counter_ns()
                    pctx.submit(pcmd).wait(5)
                    lat.append((time.perf_counter_ns() - t0) / 1e3)
                s.add("job_latency_poll_us", lat)
                bar.step("job latency, polled")

                s.add("job_throughput_per_s", _stream(ctxs[:1], cmds[:1], sz.jobs))
                bar.step("throughput, 1 context")
                s.add("job_throughput_8ctx_per_s", _stream(ctxs[:8], cmds[:8], sz.jobs))
                s.add("job_throughput_16ctx_per_s", _stream(ctxs, cmds, sz.jobs))
                bar.step("throughput, 8 and 16 contexts")

                t0 = time.perf_counter_ns()
                runs: list[Any] = []
                for i in range(sz.chains):
                    if len(runs) == IN_FLIGHT:
                        runs.pop(0).wait(5)
                    runs.append(ctxs[0].chain(chain_cmds[i % IN_FLIGHT]))
                for r in runs:
                    r.wait(5)
                s.add("chain_throughput_per_s", _rate(sz.chains * chain_len, t0))
                bar.step("chained commands")

                t0 = time.perf_counter_ns()
                for _ in range(sz.copies):
                    ctxs[0].submit(copy_cmd).wait(10)
                s.add("copy_gbps", sz.copy_bytes * sz.copies / (time.perf_counter_ns() - t0))
                bar.step("copy kernel")
                s.add("daemon_rss_load_mib", rss_mib(d["main"].pid))

                mbox_us, floor_us = s.median("mailbox_rtt_us"), s.median("eventfd_rtt_us")
                py_us = s.median("mailbox_py_rtt_us")
                for _ in range(sz.probes):
                    before = _probe_counts(d["bare"].socket)
                    t0 = time.perf_counter_ns()
                    with Shim.open(d["bare"].socket) as ps:
                        ps.probe(d["fw"])
                        s.add("probe_ms", (time.perf_counter_ns() - t0) / 1e6)
                        after = _probe_counts(d["bare"].socket)  # before the close's stop
                    delta = {k: after[k] - before[k] for k in after}
                    msgs = delta["mbox_msgs_out"]  # answered: a round trip each
                    regs = delta["psp_cmds"] + delta["smu_cmds"]
                    s.add("probe_msgs_answered", msgs)
                    fast = min(delta["fast_queries"], msgs)  # answered by the C path
                    s.add("probe_msgs_posted", delta["mbox_msgs_in"] - msgs)
                    s.add("probe_msgs_fast", fast)
                    s.add("probe_reg_cmds", regs)
                    s.add("probe_msg_rtt_sum_ms",
                          (fast * mbox_us + (msgs - fast) * py_us + regs * floor_us) / 1e3)
                bar.step("probe")

                if trap is not None:  # channel 1 of a probed device with no context: inert
                    with Shim.open(d["bare"].socket) as ws:
                        ws.probe(d["fw"])
                        start = _probe_counts(d["bare"].socket)["writes"]
                        t0 = time.perf_counter_ns()
                        for _ in range(sz.writes):
                            ws.writel(trap[0], trap[1], 0)
                        _wait_writes(d["bare"].socket, start + sz.writes)
                        s.add("trapped_writes_per_s", _rate(sz.writes, t0))
                bar.step("trapped writes")
    finally:
        peer.close()
        bar.close()
    return report(chip, quick, s)


def report(chip: str, quick: bool, s: Samples) -> dict[str, Any]:
    """The JSON object: medians in ``floors`` and ``results``, every distribution in
    ``detail``, and each goal of the issue as a ratio from this run in ``goals``."""
    def val(key: str) -> float | None:
        return round(s.median(key), 3) if s.values.get(key) else None

    floors = {k: val(k) for k in FLOOR_KEYS}
    results = {k: val(k) for k in RESULT_KEYS}
    detail = {k: {n: round(v, 3) for n, v in s.summary(k).items()}
              for k in sorted(s.values) if s.values[k]}
    goals = []
    for fig, floor, cmp, bound in GOALS:
        num = results.get(fig)
        den = (floors.get(floor) if floor in floors else results.get(floor)) if floor else None
        if num is None or (floor and not den):
            goals.append({"figure": fig, "floor": floor, "ratio": None, "ratio_best": None,
                          "goal": bound, "met": None})
            continue
        ratio = num / den if floor and den else num
        met = ratio <= bound if cmp == "le" else ratio >= bound
        # best case: each value at its best sample (a floor's best is its quick mode)
        bnum, bden = _best(s, fig), _best(s, floor) if floor else None
        best = bnum / bden if floor and bden else bnum
        goals.append({"figure": fig, "floor": floor, "ratio": round(ratio, 3),
                      "ratio_best": round(best, 3),
                      "goal": f"{'<=' if cmp == 'le' else '>='} {bound:g}", "met": met})
    return {"chip": chip, "quick": quick, "floors": floors, "results": results,
            "detail": detail, "goals": goals}


def _best(s: Samples, key: str) -> float:
    """A key's best sample: the least time or size, the highest rate."""
    v = s.values[key]
    return min(v) if key.endswith(("_us", "_ms", "_mib")) else max(v)


UNITS = {"us": "µs", "ms": "ms", "gbps": "GB/s", "per_s": "/s", "mib": "MiB"}


def _unit(key: str) -> str:
    for suffix, unit in UNITS.items():
        if key.endswith(suffix):
            return unit
    return ""


def format_report(rep: dict[str, Any]) -> str:
    """The table: each floor and figure with min, median and spread; then the goals."""
    lines = [f"xdna-emu bench  chip {rep['chip']}{'  (quick)' if rep['quick'] else ''}",
             f"  {'':32s} {'min':>12s} {'median':>12s} {'spread':>8s}  unit"]
    for title, keys in (("floors", FLOOR_KEYS), ("figures", RESULT_KEYS + (
            "eventfd_py_rtt_us", "job_throughput_8ctx_per_s", "daemon_rss_load_mib"))):
        lines.append(title)
        for k in keys:
            d = rep["detail"].get(k)
            if d is None:
                lines.append(f"  {k:32s} {'-':>12s}")
                continue
            lines.append(f"  {k:32s} {d['min']:12,.2f} {d['median']:12,.2f} "
                         f"{d['spread'] * 100:7.0f}%  {_unit(k)}")
    lines.append(f"goals (ratios from this run){'':19s} {'of medians':>11s} {'of bests':>11s}")
    for g in rep["goals"]:
        what = f"{g['figure']} / {g['floor']}" if g["floor"] else g["figure"]
        ratio = "-" if g["ratio"] is None else f"{g['ratio']:,.2f}"
        best = "-" if g.get("ratio_best") is None else f"{g['ratio_best']:,.2f}"
        met = {True: "met", False: "MISSED", None: "n/a"}[g["met"]]
        lines.append(f"  {what:46s} {ratio:>11s} {best:>11s}  goal {g['goal']!s:>10s}  {met}")
    return "\n".join(lines)


def check_schema(rep: Any) -> list[str]:
    """What is wrong with a bench JSON object's shape (never its timings)."""
    errs: list[str] = []
    if not isinstance(rep, dict):
        return ["not an object"]
    for part, keys in (("floors", FLOOR_KEYS), ("results", RESULT_KEYS)):
        obj = rep.get(part)
        if not isinstance(obj, dict):
            errs.append(f"{part}: missing")
            continue
        if set(obj) != set(keys):
            errs.append(f"{part}: keys {sorted(obj)} != {sorted(keys)}")
        for k in keys:
            v = obj.get(k)
            if isinstance(v, bool) or not isinstance(v, int | float) or v <= 0:
                errs.append(f"{part}.{k}: {v!r} is not a positive number")
    return errs


def add_arguments(p: argparse.ArgumentParser) -> None:
    from .chips import emulated_chip_names

    p.add_argument("--chip", default="npu4", choices=emulated_chip_names(), metavar="NAME",
                   help=f"chip to emulate: {', '.join(emulated_chip_names())}")
    p.add_argument("--quick", action="store_true",
                   help="fewer rounds and samples: under a minute, for smoke tests")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object {floors, results, detail, goals}")


def main_args(args: argparse.Namespace) -> int:
    progress = sys.stderr.isatty() and not args.json
    rep = run(args.chip, args.quick, progress)
    print(json.dumps(rep, indent=2) if args.json else format_report(rep))
    return 0


def main(argv: list[str] | None = None) -> int:
    from .cmdline import Parser

    ap = Parser(prog="python -m xdna_emu.bench", description=__doc__.split("\n")[0])
    add_arguments(ap)
    return main_args(ap.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
