"""Nothing is lost: mixed loads from several client processes, killed clients, IOMMU faults."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap

import numpy as np

from xdna_emu.control import ControlClient
from xdna_emu.runtime import Device
from xdna_emu.testing.wait import wait_until

CLIENT = textwrap.dedent("""
    import json, random, sys
    import numpy as np
    from xdna_emu.runtime import Device
    # a fixed number of rounds, not a duration: what runs is the seed's, however loaded the machine
    sock, seed, rounds, tdr = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    rnd = random.Random(seed)
    counts = {"submitted": 0, "completed": 0, "error": 0, "timeout": 0, "aborted": 0}
    with Device.open(socket=sock) as dev:
        assert dev.role == "client", dev.role
        dev.shim.set_tdr_ms(tdr)
        ctxs = [dev.context() for _ in range(2)]
        cmds = {c: {k: [c.command(k) for _ in range(4)] for k in ("nop", "fail", "hang")} for c in ctxs}
        inflight = {c: [] for c in ctxs}
        print("ready", flush=True)
        for _ in range(rounds):
            for c in ctxs:
                if len(inflight[c]) == 4:
                    r = inflight[c].pop(0)
                    counts[r.wait(60)] += 1
                kind = rnd.choices(["nop", "fail", "hang"], [90, 8, 2])[0]
                busy = {id(r.head) for r in inflight[c]}
                free = [x for x in cmds[c][kind] if id(x) not in busy]
                if not free:
                    continue
                inflight[c].append(c.submit(free[0]))
                counts["submitted"] += 1
        for c in ctxs:
            for r in inflight[c]:
                counts[r.wait(60)] += 1
    print(json.dumps(counts), flush=True)
""")


def _status(emu) -> dict:
    with ControlClient(emu.socket) as cl:
        cl.version()
        return cl.status()


def test_mixed_load_from_several_clients_loses_nothing(xdna_emulator, xdna_firmware_dir) -> None:
    with Device.open(socket=xdna_emulator.socket, firmware_path=xdna_firmware_dir) as drv:
        assert drv.role == "driver"
        rss0 = _status(xdna_emulator)["rss_kib"]
        procs = [subprocess.Popen([sys.executable, "-c", CLIENT, str(xdna_emulator.socket),
                                   str(seed), "150", "300"], stdout=subprocess.PIPE, text=True)
                 for seed in range(3)]
        results = []
        for p in procs:
            out, _ = p.communicate(timeout=120)
            assert p.returncode == 0, out
            results.append(json.loads(out.strip().splitlines()[-1]))
        for r in results:
            final = r["completed"] + r["error"] + r["timeout"] + r["aborted"]
            assert final == r["submitted"] > 0, r
            assert r["error"] > 0 and r["timeout"] > 0, r  # the rare paths were reached
        st = _status(xdna_emulator)
        assert st["device"]["contexts"] == [] or all(
            c["pasid"] == st["driver_session"] for c in st["device"]["contexts"])
        assert st["rss_kib"] - rss0 < 20 * 1024, (rss0, st["rss_kib"])
        # The driver's own context still works after all that.
        ctx = drv.context()
        assert ctx.run("nop").wait(5) == "completed"


def test_killed_client_is_reclaimed_and_others_go_on(xdna_emulator, xdna_firmware_dir) -> None:
    with Device.open(socket=xdna_emulator.socket, firmware_path=xdna_firmware_dir) as drv:
        fds0 = _status(xdna_emulator)["open_fds"]
        victim = subprocess.Popen([sys.executable, "-c", CLIENT, str(xdna_emulator.socket), "9",
                                   "1000000", "60000"], stdout=subprocess.PIPE, text=True)
        assert victim.stdout.readline().strip() == "ready"
        ctx = drv.context()
        x = drv.buffer(np.arange(1024, dtype=np.int32))
        y = drv.buffer(np.zeros(1024, dtype=np.int32))
        # the victim has commands going through the firmware when it dies
        wait_until(lambda: _status(xdna_emulator)["device"]["contexts"],
                   lambda cs: sum(c["completed"] for c in cs) >= 10,
                   timeout=30, interval=0.05, what="the victim's jobs to run")
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        # everything it held comes back: its session, contexts and descriptors (sessions:
        # driver + this query; fds are counted once the daemon has closed them all)
        wait_until(lambda: _status(xdna_emulator),
                   lambda st: st["sessions"] == 2 and not st["device"]["contexts"]
                   and st["open_fds"] <= fds0 + 2,
                   interval=0.05, what="the killed client to be reclaimed")
        assert ctx.run("scale", x, y, scalar=5).wait(5) == "completed"
        assert (y.read() == np.arange(1024) * 5).all()


def test_job_arguments_outside_client_memory_stall_and_touch_nothing(xdna_emulator,
                                                                     xdna_firmware_dir) -> None:
    from xdna_emu.runtime import Buffer

    with Device.open(socket=xdna_emulator.socket, firmware_path=xdna_firmware_dir) as dev:
        ctx = dev.context()
        src = dev.buffer(np.arange(256, dtype=np.int32))
        dst = dev.buffer(np.zeros(256, dtype=np.int32))
        victim = dev.buffer(np.full(256, 42, dtype=np.int32))
        forged = Buffer.__new__(Buffer)
        forged.__dict__.update(dst.__dict__)
        forged.xdna_addr = 0x7FF0_0000_0000  # nothing is mapped there
        dev.shim.set_tdr_ms(200)
        run = ctx.run("copy", src, forged)
        assert run.wait(10) == "timeout"  # a fault is a hang: TDR ends it
        assert (victim.read() == 42).all() and (dst.read() == 0).all()
        st = _status(xdna_emulator)
        assert st["device"]["counters"]["iommu_faults"] >= 1 and st["iommu_faults"]
        assert ctx.run("copy", src, dst).wait(5) == "completed"
