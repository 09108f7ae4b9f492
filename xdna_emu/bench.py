"""Benchmarks, reported as ratios to floors measured in the same run (DESIGN §6).

``python -m xdna_emu.bench [--chip npu4] [--probes N] [--msgs N] [--json]``

- floor: a bare eventfd ping-pong between this process and a Python child process, the
  cheapest cross-process wake-up the daemon could ever answer with;
- mgmt message: one GET_FIRMWARE_VERSION round trip through the C shim, the mailbox rings,
  the write log and an MSI-X eventfd;
- probe: a whole driver probe (SMU, PSP, FW alive, mgmt init, queries) on a fresh attach;
- no-op job: one START_NPU "nop" command submitted and waited for through the runtime API
  (latency), and a stream keeping 4 commands in flight on one context (throughput). The
  real Strix NPU is quoted at about 127 us and 9,000 jobs/s for the same test.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Any

CHILD = """
import os, sys
a, b = int(sys.argv[1]), int(sys.argv[2])
while True:
    v = os.eventfd_read(a)
    if v > 1: break
    os.eventfd_write(b, 1)
"""


def eventfd_floor_us(rounds: int = 2000) -> float:
    """Median eventfd round trip to a child Python process, in microseconds."""
    import subprocess

    a, b = os.eventfd(0), os.eventfd(0)
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(a), str(b)], pass_fds=(a, b))
    samples = []
    for i in range(rounds + 200):
        t0 = time.perf_counter_ns()
        os.eventfd_write(a, 1)
        os.eventfd_read(b)
        if i >= 200:
            samples.append(time.perf_counter_ns() - t0)
    os.eventfd_write(a, 2)
    child.wait()
    os.close(a)
    os.close(b)
    return statistics.median(samples) / 1e3


def bench_jobs(chip: str, fw: Any, jobs: int) -> dict[str, Any]:
    """No-op job latency (one at a time) and throughput (4 in flight) via xdna_emu.runtime."""
    from .emulator import Emulator
    from .runtime import Device

    with Emulator(chip=chip, private=True) as emu, Device.open(emu.socket, firmware_path=fw) as dev:
        ctx = dev.context()
        cmds = [ctx.command("nop") for _ in range(4)]
        for c in cmds:  # warm-up
            ctx.submit(c).wait(5)
        lat = []
        for i in range(jobs):
            t0 = time.perf_counter_ns()
            ctx.submit(cmds[i % 4]).wait(5)
            lat.append(time.perf_counter_ns() - t0)
        t0 = time.perf_counter_ns()
        inflight = []
        for i in range(jobs):
            if len(inflight) == 4:
                inflight.pop(0).wait(5)
            inflight.append(ctx.submit(cmds[i % 4]))
        for r in inflight:
            r.wait(5)
        secs = (time.perf_counter_ns() - t0) / 1e9
    nop_us = statistics.median(lat) / 1e3
    return {"nop_job_latency_us": round(nop_us, 1), "nop_jobs_per_s": round(jobs / secs),
            "nop_job_p99_us": round(sorted(lat)[int(len(lat) * 0.99)] / 1e3, 1)}


def run(chip: str, probes: int, msgs: int, jobs: int = 2000) -> dict[str, Any]:
    from .emulator import Emulator
    from .fw.image import default_firmware_dir
    from .fw.messages import LAYOUTS, Opcode
    from .shim import Shim

    fw = default_firmware_dir()
    floor = eventfd_floor_us()
    out: dict[str, Any] = {"chip": chip, "eventfd_rt_us": round(floor, 2)}
    with Emulator(chip=chip, private=True) as emu:
        probe_ms = []
        stages: dict[str, list[float]] = {}
        for _ in range(probes):
            t0 = time.perf_counter_ns()
            with Shim.open(emu.socket) as shim:
                info = shim.probe(fw)
                probe_ms.append((time.perf_counter_ns() - t0) / 1e6)
                for st in info["stages"]:
                    stages.setdefault(st["name"], []).append(st["ms"])
        with Shim.open(emu.socket) as shim:
            shim.probe(fw)
            op = Opcode.GET_FIRMWARE_VERSION
            req, resp_size = bytes(LAYOUTS[op].req.size), LAYOUTS[op].resp.size
            lat = []
            for _ in range(msgs):
                t0 = time.perf_counter_ns()
                shim.mgmt_msg(int(op), req, resp_size)
                lat.append(time.perf_counter_ns() - t0)
    msg_us = statistics.median(lat) / 1e3
    out.update(bench_jobs(chip, fw, jobs))
    out["nop_job_vs_eventfd"] = round(out["nop_job_latency_us"] / floor, 2)
    out.update({
        "probe_ms_median": round(statistics.median(probe_ms), 3),
        "probe_ms_min": round(min(probe_ms), 3),
        "probe_stages_ms": {k: round(statistics.median(v), 3) for k, v in stages.items()},
        "mgmt_msg_rt_us": round(msg_us, 2),
        "mgmt_msg_per_s": round(1e6 / msg_us),
        "mgmt_msg_vs_eventfd": round(msg_us / floor, 2),
        "probe_vs_eventfd": round(statistics.median(probe_ms) * 1e3 / floor, 1),
    })  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m xdna_emu.bench")
    ap.add_argument("--chip", default="npu4")
    ap.add_argument("--probes", type=int, default=20)
    ap.add_argument("--msgs", type=int, default=2000)
    ap.add_argument("--jobs", type=int, default=2000)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    res = run(args.chip, args.probes, args.msgs, args.jobs)
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        for k, v in res.items():
            print(f"{k:22s} {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
