"""``xdna-emu fuzz --target shim``: a seeded random loop of shim calls and firmware faults
in deterministic in-process mode. Each failure (an exception other than ShimError, a
livelock, or a call over its virtual-time budget) is written as a trace of ``call`` and
``fault`` lines to the artifacts directory."""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

from ..shim import ShimError
from .faults import ACT_FAULTS, MSG_FAULTS, FaultInjector

BUDGET_NS = 30 * 1_000_000_000
OPS = ("mgmt", "ctx", "destroy", "exec", "wait", "suspend", "stop", "fault", "act")


def run(seconds: float, seed: int = 1, chip: str = "npu4", artifacts: Path | None = None,
        steps: int = 30) -> dict[str, Any]:
    from .. import kernels as K
    from ..shim import BO_CMD, BO_DEV, ert_start_npu
    from ..testing.inproc import InProcess, Livelock, firmware_dir

    rng, fi = random.Random(seed), FaultInjector(seed)
    ip = InProcess(chip, fault=fi)
    execs = crashes = hangs = 0
    found: list[str] = []
    states: set[str] = set()
    t_end = time.monotonic() + seconds
    try:
        while time.monotonic() < t_end:
            ip.fresh()
            s = ip.open()
            trace = [f"# shim fuzz seed={seed} example={execs}", "call probe"]
            ctxs: list[int] = []
            jobs: list[tuple[int, int]] = []
            try:
                ip.call(s.probe, firmware_dir(chip))
                s.set_timeout("mbox_rx", 1000)
                for _ in range(steps):
                    op = rng.choice(OPS)
                    trace.append(f"call {op}")
                    try:
                        if op == "fault":
                            k = rng.choice(sorted(MSG_FAULTS))
                            fi.arm(k, chan=rng.choice([0, -1]))
                            trace[-1] = f"fault {k}"
                            continue
                        if op == "act":
                            k = rng.choice(sorted(ACT_FAULTS))
                            fi.act(k, 0)
                            trace[-1] = f"fault {k}"
                            continue
                        if op == "mgmt":
                            _, took = ip.call(s.mgmt_msg, 0x108, b"\0" * 4, 20, 1000)
                        elif op == "ctx" and len(ctxs) < 3:
                            h, took = ip.call(s.hwctx_create)
                            ctxs.append(h)
                        elif op == "destroy" and ctxs:
                            h = ctxs.pop(rng.randrange(len(ctxs)))
                            jobs = [j for j in jobs if j[0] != h]
                            _, took = ip.call(s.hwctx_destroy, h)
                        elif op == "exec" and ctxs:
                            instr, _ = ip.call(s.bo_create, BO_DEV, 64)
                            cmd, _ = ip.call(s.bo_create, BO_CMD, 4096)
                            kern = rng.choice([K.Kernel.NOP, K.Kernel.FAIL, K.Kernel.HANG])
                            s.bo_map(instr)[: K.DESC.size] = K.encode(K.Desc(kern))
                            d = ert_start_npu(s.bo_info(instr)["xdna_addr"], K.DESC.size)
                            s.bo_map(cmd)[: len(d)] = d
                            h = rng.choice(ctxs)
                            seq, took = ip.call(s.exec, h, cmd)
                            jobs.append((h, seq))
                        elif op == "wait" and jobs:
                            h, seq = jobs[0]
                            _, took = ip.call(s.wait, h, seq, rng.choice([0, 100, 5000]))
                        elif op == "suspend":
                            ip.call(s.suspend)
                            _, took = ip.call(s.resume)
                        elif op == "stop":
                            ip.call(s.stop)
                            ctxs.clear()
                            jobs.clear()
                            _, took = ip.call(s.probe, firmware_dir(chip))
                        else:
                            continue
                        states.add(f"{op}:ok")
                        if took > BUDGET_NS:
                            raise Livelock(f"{op} took {took / 1e9:.1f} s virtual")
                    except ShimError as e:
                        states.add(f"{op}:{e.errno}")
            except Livelock as e:
                hangs += 1
                found.append(_save(artifacts, trace, f"hang: {e}"))
            except ShimError:
                pass
            except Exception as e:  # noqa: BLE001 - every other escape is a finding
                crashes += 1
                found.append(_save(artifacts, trace, f"crash: {e!r}"))
            execs += 1
    finally:
        ip.close()
    return {"execs": execs, "crashes": crashes, "hangs": hangs, "coverage": len(states),
            "corpus_size": 0, "artifacts": [f for f in found if f]}


def _save(artifacts: Path | None, trace: list[str], why: str) -> str:
    if artifacts is None:
        return ""
    artifacts.mkdir(parents=True, exist_ok=True)
    p = artifacts / f"shim-{abs(hash(tuple(trace))) & 0xFFFFFFFF:08x}.trace"
    p.write_text(f"# {why}\n" + "\n".join(trace) + "\n")
    return str(p)
