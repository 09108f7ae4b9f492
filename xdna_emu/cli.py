"""The ``xdna-emu`` command line.

Operator mistakes (a wrong flag, an unknown chip, a missing socket) print one line and exit
with status 2, never a traceback; a failed probe prints one line and exits 1.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import time
from functools import cache
from pathlib import Path
from typing import Any, NoReturn

from .cmdline import (
    COMMAND_GROUP,
    EXIT_FAIL,
    EXIT_USAGE,
    AddSubcommands,
    Failure,
    UsageError,
    add_logging_options,
    log_level,
)
from .cmdline import Parser as _Parser
from .rundir import RUNTIME_DIR_ENV

__all__ = ["EXIT_FAIL", "EXIT_USAGE", "Failure", "UsageError", "build_parser", "main"]

BDF_RE = re.compile(r"^(?:([0-9a-fA-F]{4}):)?([0-9a-fA-F]{2}):([0-1][0-9a-fA-F])\.([0-7])$")
VERSION_RE = re.compile(r"^\d+\.\d+\.\d+\.\d+$")
PROTO_RE = re.compile(r"^\d+\.\d+$")
RUNTIME_DIR_HELP = (f"directory of the running emulators' sockets and sysfs trees (default: "
                    f"${RUNTIME_DIR_ENV}, else $XDG_RUNTIME_DIR/xdna-emu, else /tmp/xdna-emu-UID)")


def _chip(name: str) -> str:
    from .chips import chip_names

    if name not in chip_names():
        raise argparse.ArgumentTypeError(f"unknown chip {name!r} (known: {', '.join(chip_names())})")
    return name


def _chip_list() -> str:
    from .chips import chip_names

    return ", ".join(chip_names())


def _bdf(text: str) -> str:
    """``DDDD:BB:DD.F`` or lspci's short ``BB:DD.F`` (domain 0000), lower case."""
    m = BDF_RE.match(text)
    if not m:
        raise argparse.ArgumentTypeError(f"bad BDF {text!r}, expected DDDD:BB:DD.F or BB:DD.F")
    domain, bus, dev, fn = m.groups()
    return f"{domain or '0000'}:{bus}:{dev}.{fn}".lower()


def _pattern(regex: re.Pattern[str], what: str):  # noqa: ANN202
    def check(text: str) -> str:
        if not regex.match(text):
            raise argparse.ArgumentTypeError(f"bad {what} {text!r}")
        return text

    return check


def _runtime_dir(args: argparse.Namespace) -> Path:
    from .discover import default_runtime_dir

    return Path(args.runtime_dir) if args.runtime_dir else default_runtime_dir()


def _add_target(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``[--socket S | --bdf B] [--runtime-dir DIR]``: which running emulator to talk to;
    with neither, the only one running in the runtime dir."""
    where = p.add_mutually_exclusive_group()
    where.add_argument("--socket", metavar="PATH",
                       help="control socket of the emulator (from its ready line)")
    where.add_argument("--bdf", type=_bdf,
                       help="PCI address of the emulator, DDDD:BB:DD.F or BB:DD.F "
                            "(default: the only one running)")
    p.add_argument("--runtime-dir", metavar="DIR", help=RUNTIME_DIR_HELP)
    return p


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    p = _Parser(prog="xdna-emu", description="Emulator of AMD XDNA NPUs (Ryzen AI)")
    p.add_argument("--version", action="version", version=f"xdna-emu {__version__}",
                   help="print the version and exit")
    add_logging_options(p)
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    chips = _chip_list()

    run = sub.add_parser("run", help="run one emulated NPU in the foreground",
                         description="Serve one emulated NPU until SIGTERM or SIGINT; prints "
                                     "one JSON ready line (socket, sysfs root, BDF).")
    run.add_argument("--chip", type=_chip, required=True, metavar="NAME",
                     help=f"chip to emulate: {chips}")
    run.add_argument("--runtime-dir", metavar="DIR", help=RUNTIME_DIR_HELP)
    run.add_argument("--bdf", type=_bdf,
                     help="PCI address to take, DDDD:BB:DD.F or BB:DD.F (default: the first free "
                          "of 0000:c5:00.1, 0000:c6:00.1, ...)")
    run.add_argument("--exit-with-pid", type=int, metavar="PID",
                     help="also stop when process PID exits (used by xdna_emu.Emulator)")
    run.add_argument("--trace", metavar="FILE",
                     help="write a Perfetto-loadable timeline (Chrome trace-event JSON) of the "
                          "device and its clients' shim calls to FILE on exit (docs/tracing.md)")

    dev = sub.add_parser("devices", help="list emulated NPUs found through pyudev")
    dev.add_argument("--runtime-dir", metavar="DIR", help=RUNTIME_DIR_HELP)
    dev.add_argument("--json", action="store_true", help="print a JSON list instead of a table")

    probe = _add_target(sub.add_parser("probe", help="probe a running emulator with the C driver shim"))
    probe.add_argument("--firmware-path", metavar="DIR",
                       help="firmware search path holding amdnpu/<dev>_<rev>/npu.dev.sbin "
                            "(default: images built on the fly)")
    probe.add_argument("--json", action="store_true",
                       help="print a JSON object (an {\"error\": ...} object on failure)")

    st = _add_target(sub.add_parser("status", help="show a running emulator's state"))
    st.add_argument("--json", action="store_true", help="print the JSON status (docs/spec/status.md)")

    mkfw = sub.add_parser("mkfw", help="write a signed emulator firmware image")
    mkfw.add_argument("--chip", type=_chip, required=True, metavar="NAME",
                      help=f"chip the image is for: {chips}")
    mkfw.add_argument("--out", required=True, metavar="DIR",
                      help="firmware root; the image goes to DIR/amdnpu/<dev>_<rev>/npu.dev.sbin")
    mkfw.add_argument("--version", type=_pattern(VERSION_RE, "firmware version (M.m.p.b)"),
                      metavar="M.m.p.b", help="firmware version (default: the chip's)")
    mkfw.add_argument("--protocol", type=_pattern(PROTO_RE, "protocol version (M.m)"),
                      metavar="M.m", help="firmware protocol version (default: the chip's)")

    demo = sub.add_parser("demo", help="start an emulator, discover it, probe it, summarise")
    demo.add_argument("--chip", type=_chip, default="npu4", metavar="NAME",
                      help=f"chip to emulate: {chips}")
    demo.add_argument("--runtime-dir", metavar="DIR", help=RUNTIME_DIR_HELP)

    from .bench import add_arguments as add_bench_arguments

    bench = sub.add_parser("bench", help="measure the emulator against the physical floors",
                           description="Floors (eventfd, shared-memory spin, UNIX socket, "
                                       "memcpy) and figures (mailbox, jobs, chains, probe, "
                                       "trapped writes, copy, RSS) from one run, with ratios "
                                       "to the goals (docs/spec/operator.md §7).")
    add_bench_arguments(bench)

    ex = sub.add_parser("exec", help="run a program against emulated /dev/accel devices",
                        description="Run an unmodified program (and its children) with "
                                    "/dev/accel/accelN served by the C shim in its own process "
                                    "(docs/spec/uapi.md). With no target, a daemon for the "
                                    "default chip is started and stopped around the program. "
                                    "The exit code is the program's.")
    ex.add_argument("--chip", type=_chip, action="append", default=[], metavar="NAME",
                    help=f"start a private daemon for this chip (repeat for accel1, ...): {chips}")
    ex.add_argument("--bdf", type=_bdf, action="append", default=[],
                    help="use the running emulator at this PCI address (repeatable)")
    ex.add_argument("--socket", action="append", default=[], metavar="PATH",
                    help="use the running emulator behind this control socket (repeatable)")
    ex.add_argument("--runtime-dir", metavar="DIR", help=RUNTIME_DIR_HELP)
    ex.add_argument("--trace", metavar="FILE",
                    help="write a Perfetto-loadable timeline of each daemon exec starts "
                         "(FILE, FILE.1.json, ...; docs/tracing.md)")
    ex.add_argument("program", nargs=argparse.REMAINDER, metavar="-- PROGRAM [ARGS...]",
                    help="the program to run and its arguments")
    cfg = sub.add_parser("config", help="C flags for the UAPI header and the shim library",
                         description="Print compiler and linker flags for C programs using "
                                     "the amdxdna UAPI header or the shim library "
                                     "(docs/spec/uapi.md §4).")
    for flag, what in (("--cflags", "the -I flags of the generated headers"),
                       ("--libs", "the -L/-l flags of the shim's C library"),
                       ("--preload", "the interposer library exec puts in LD_PRELOAD"),
                       ("--pkg-config", "a pkg-config .pc file for the shim library"),
                       ("--pkg-config-path", "the directory of the installed xdna-emu.pc, "
                                             "for PKG_CONFIG_PATH")):
        cfg.add_argument(flag, action="store_true", help=f"print {what}")

    for add_subcommands in _kit_subcommands():
        COMMANDS.update(add_subcommands(sub))
    return p


@cache
def _kit_subcommands() -> tuple[AddSubcommands, ...]:
    """Subcommands that kits register (``fuzz`` and ``trace`` from the fuzzing kit).

    The shipped CLI does not import the test kits: a kit names its ``add_subcommands`` in
    the :data:`~xdna_emu.cmdline.COMMAND_GROUP` entry-point group of pyproject.toml, and the
    CLI loads whatever is installed (docs/architecture.md, Layers).
    """
    from importlib.metadata import entry_points

    return tuple(ep.load() for ep in sorted(entry_points(group=COMMAND_GROUP), key=lambda e: e.name))


# -- commands ---------------------------------------------------------------------------
def cmd_run(args: argparse.Namespace) -> int:
    from .daemon import Daemon

    trace = Path(args.trace) if args.trace else None
    if trace is not None and not trace.parent.is_dir():
        raise UsageError(f"trace file {trace}: directory {trace.parent} does not exist")
    daemon = Daemon(args.chip, _runtime_dir(args), args.bdf)
    if trace is not None:
        from .tracing import attach

        attach(daemon, trace)

    def ready(rec: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(rec) + "\n")
        sys.stdout.flush()

    daemon.run(on_ready=ready, exit_with_pid=args.exit_with_pid)
    return 0


def cmd_devices(args: argparse.Namespace) -> int:
    from .discover import discover

    devs = discover(_runtime_dir(args))
    if args.json:
        print(json.dumps([d.as_dict() for d in devs], indent=2))
        return 0
    if not devs:
        print("no emulated NPU found")
        return 0
    for d in devs:
        print(f"{d.bdf}  {d.vendor:04x}:{d.device:04x} rev {d.revision:02x}  {d.chip:5s}  "
              f"driver={d.driver or '-'}  socket={d.socket}")
    return 0


def _target_socket(args: argparse.Namespace) -> str:
    """The socket named by ``--socket``, found by ``--bdf``, or of the only running emulator."""
    from .discover import ready_records

    if args.socket:
        sock = args.socket
    else:
        root = _runtime_dir(args)
        recs = ready_records(root)
        if args.bdf:
            recs = [r for r in recs if r.get("bdf") == args.bdf]
            if not recs:
                raise UsageError(f"no running emulator with BDF {args.bdf} in {root}")
        elif not recs:
            raise UsageError(f"no running emulator in {root} (start one with `xdna-emu run "
                             f"--chip npu4`, or give --socket, --bdf or --runtime-dir)")
        elif len(recs) > 1:
            bdfs = ", ".join(str(r.get("bdf")) for r in recs)
            raise UsageError(f"{len(recs)} emulators run in {root} ({bdfs}): pick one with --bdf")
        sock = str(recs[0]["socket"])
    if not Path(sock).exists():
        raise UsageError(f"socket {sock} does not exist")
    return sock


def probe_socket(socket_path: str, firmware_path: str | None) -> dict[str, Any]:
    from .shim import Shim

    with Shim.open(socket_path) as shim:
        return shim.probe(firmware_path)


def cmd_probe(args: argparse.Namespace) -> int:
    try:
        sock = _target_socket(args)
        if args.firmware_path and not Path(args.firmware_path).is_dir():
            raise UsageError(f"firmware path {args.firmware_path} is not a directory")
        try:
            info = probe_socket(sock, args.firmware_path)
        except OSError as exc:
            raise Failure(f"probe failed: {exc.strerror or exc}",
                          exc.errno if isinstance(exc.errno, int) else None) from None
    except (UsageError, Failure) as exc:
        if not args.json:
            raise
        # docs/spec/operator.md §5: a script reading --json gets an object either way
        usage = isinstance(exc, UsageError)
        err = {"error": str(exc), "kind": "usage" if usage else "failure",
               "errno": None if usage else exc.args[1] if len(exc.args) > 1 else None}
        print(json.dumps(err, indent=2))
        sys.stderr.write(f"xdna-emu: {'error: ' if usage else ''}{exc.args[0]}\n")
        return EXIT_USAGE if usage else EXIT_FAIL
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        print(format_probe(info))
    return 0


def format_probe(info: dict[str, Any]) -> str:
    t = info["tiles"]
    stages = ", ".join(f"{s['name']} {s['ms']:.2f} ms" for s in info["stages"])
    total = sum(s["ms"] for s in info["stages"])
    return "\n".join([
        f"{info['bdf']}  {info['vendor']:#06x}:{info['device']:#06x} rev {info['revision']:#04x}  "
        f"{info['chip']} \"{info['vbnv']}\"",
        f"  firmware {info['fw_version']}  protocol {info['protocol_version']}  "
        f"AIE {info['aie_version']}",
        f"  tiles {t['cols']} cols x {t['rows']} rows (core {t['core_rows']}, mem {t['mem_rows']}, "
        f"shim {t['shim_rows']})  MSI-X {info['msix_vectors']}  DPM levels {info['dpm_levels']}",
        f"  probe {total:.2f} ms: {stages}",
    ])  # fmt: skip


def cmd_status(args: argparse.Namespace) -> int:
    from .control import ControlClient

    sock = _target_socket(args)
    try:
        with ControlClient(sock) as cl:
            cl.version()
            raw = cl.status()
    except (OSError, EOFError) as exc:
        raise Failure(f"status failed: {exc}") from None
    view = status_view(raw)
    print(json.dumps(view, indent=2) if args.json else format_status(view))
    return 0


STATUS_SCHEMA = 1


def status_view(raw: dict[str, Any]) -> dict[str, Any]:
    """The daemon's raw status as the stable ``status --json`` schema (docs/spec/operator.md
    §6): the daemon's internals may move, this shape only grows."""
    dev = raw.get("device") or {}
    smu, psp, fw = dev.get("smu") or {}, dev.get("psp") or {}, dev.get("firmware")
    counters = {**(raw.get("stats") or {}), **(dev.get("counters") or {})}
    if smu.get("power") != "on":
        power = "off"
    elif fw and fw.get("suspended"):
        power = "suspended"
    else:
        power = "on"
    last = raw.get("last_driver")
    armed = dev.get("pending_async_events") or []  # a count, not a list, on AIE4
    return {
        "schema": STATUS_SCHEMA,
        "chip": raw.get("chip"), "bdf": raw.get("bdf"), "pid": raw.get("pid"),
        "socket": raw.get("socket"), "rss_kib": raw.get("rss_kib"),
        "probed": bool(raw.get("probed")),
        "power": {"state": power, "dpm_level": smu.get("dpm_level"),
                  "hard_dpm_level": smu.get("hard_dpm_level"),
                  "npuclk_mhz": smu.get("npuclk_mhz"), "hclk_mhz": smu.get("hclk_mhz")},
        "firmware": {"psp_state": psp.get("state"),
                     "version": fw.get("version") if fw else None,
                     "protocol": fw.get("protocol") if fw else None,
                     "last_error": psp.get("last_error")},
        "last_driver": None if last is None else {
            k: last.get(k) for k in ("session", "pid", "probed", "fw_version", "protocol",
                                     "psp_error", "ended", "why")},
        "channels": [{
            "index": c["index"], "name": c["name"], "msix": c["msix"],
            "x2i_head": c["x2i"]["head"], "x2i_tail": c["x2i"]["tail"],
            "i2x_head": c["i2x"]["head"], "i2x_tail": c["i2x"]["tail"],
            "msgs_in": c["msgs_in"], "msgs_out": c["msgs_out"],
            "pending_ids": list(c.get("queued_ids", [])), "state": c["state"], "error": c["error"],
        } for c in dev.get("channels", [])],
        "contexts": [{
            "id": c["id"], "pasid": c["pasid"], "priority": c["priority"],
            "start_col": c["start_col"], "num_col": c["num_col"], "msix": c["msix"],
            "channel": c["channel"], "state": c["state"], "queued": c["queued"],
            "submitted": c["submitted"], "completed": c["completed"], "errors": c["failed"],
        } for c in dev.get("contexts", [])],
        "async_event_ids": [e["id"] for e in armed] if isinstance(armed, list) else [],
        "async_errors": [{k: e.get(k) for k in ("time_ns", "type", "delivered", "answered_id",
                                                "status", "errors")}
                         for e in (fw or {}).get("async_posted", [])],
        "async_errors_posted": int((fw or {}).get("async_posted_total", 0)),
        "iommu_faults": list(raw.get("iommu_faults", [])),
        "clients": [{k: c.get(k) for k in ("session", "pid", "pasid", "role")}
                    for c in raw.get("clients", [])],
        "msix": dict(raw.get("msix") or {}),
        "counters": counters,
    }  # fmt: skip


def _table(headers: list[str], rows: list[list[Any]]) -> list[str]:
    cells = [[str(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    out = ["  " + "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    out += ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
            for r in cells]
    return out


def _hex(v: Any) -> str:
    return f"{v:#x}" if isinstance(v, int) else "-"


#: the C job path's counters in the status table (docs/spec/jobs.md §7), label and key
_FAST = (("jobs", "fast_jobs"), ("commands", "fast_cmds"), ("chains", "fast_chains"),
         ("fallbacks", "fast_fallbacks"), ("refused", "fast_refused"))
_THREAD = (("wake-ups", "fast_thread"), ("hand-backs", "fast_handbacks"),
           ("notifies", "fast_notifies"))


def format_status(v: dict[str, Any]) -> str:
    """``status`` for people: one block per concern, ids in hex as the driver prints them."""
    pw, fw = v["power"], v["firmware"]
    lines = [f"{v['bdf']}  {v['chip']}  daemon pid {v['pid']}  rss {v['rss_kib'] / 1024:.1f} MiB",
             f"  probed     {'yes' if v['probed'] else 'no'}",
             f"  power      {pw['state']}  DPM level {pw['dpm_level']} (hard {pw['hard_dpm_level']})"
             f"  NPU clock {pw['npuclk_mhz']} MHz  H clock {pw['hclk_mhz']} MHz",
             f"  firmware   PSP {fw['psp_state']}  version {fw['version'] or '-'}"
             f"  protocol {fw['protocol'] or '-'}"]
    if fw["last_error"]:
        lines.append(f"  last error {fw['last_error']}")
    last = v["last_driver"]
    if last and not v["probed"]:
        what = (f"probed firmware {last['fw_version']} protocol {last['protocol']}"
                if last["probed"] else f"did not finish probing ({last['psp_error'] or 'no error'})")
        lines.append(f"  last driver session {last['session']} (pid {last['pid']}) {what}; "
                     f"it {last['why']} and the function was reset")
    if v["channels"]:
        lines.append("channels")
        lines += _table(
            ["chan", "name", "msix", "x2i head/tail", "i2x head/tail", "in", "out", "pending ids",
             "state"],
            [[c["index"], c["name"], c["msix"], f"{c['x2i_head']:#x}/{c['x2i_tail']:#x}",
              f"{c['i2x_head']:#x}/{c['i2x_tail']:#x}", c["msgs_in"], c["msgs_out"],
              ",".join(_hex(i) for i in c["pending_ids"]) or "-",
              c["state"] if not c["error"] else f"error: {c['error']}"] for c in v["channels"]])
    if v["contexts"]:
        lines.append("contexts")
        lines += _table(
            ["ctx", "pasid", "prio", "cols", "msix", "chan", "state", "queued", "submitted",
             "completed", "errors"],
            [[_hex(c["id"]), c["pasid"], c["priority"],
              f"{c['start_col']}-{c['start_col'] + c['num_col'] - 1}", c["msix"], c["channel"],
              c["state"], c["queued"], c["submitted"], c["completed"], c["errors"]]
             for c in v["contexts"]])
    if v["clients"]:
        lines.append("clients")
        lines += _table(["session", "pid", "pasid", "role"],
                        [[c["session"], c["pid"], c["pasid"], c["role"]] for c in v["clients"]])
    ids = v["async_event_ids"]
    lines.append(f"async events armed {len(ids)}" + (f" (ids {_hex(ids[0])}..{_hex(ids[-1])})"
                                                     if ids else ""))
    posted = v["async_errors"]
    lines.append(f"async errors posted {v['async_errors_posted']}"
                 + (f", the last {len(posted)}:" if posted else ""))
    if posted:
        lines += _table(
            ["time ms", "type", "answered", "status", "errors (col,row module event)"],
            [[f"{e['time_ns'] / 1e6:.3f}", e["type"],
              _hex(e["answered_id"]) if e["delivered"] else "lost: none armed", e["status"],
              "; ".join(f"{x['col']},{x['row']} {x['module']} {_hex(x['event'])}"
                        for x in e["errors"]) or "-"] for e in posted])
    errs = {k: n for k, n in v["counters"].items()
            if n and k.endswith(("errors", "faults", "failed", "malformed_msgs", "unknown_ops",
                                 "writes", "dropped_clients")) and k != "writes"}
    lines.append("errors     " + (", ".join(f"{k} {n}" for k, n in sorted(errs.items())) or "none"))
    c = v["counters"]
    if "fast_jobs" in c:  # the daemon's C job path and its doorbell thread (jobs.md §7)
        lines.append("C job path " + "  ".join(f"{label} {c.get(k, 0)}" for label, k in _FAST))
        lines.append("doorbell thread " + "  ".join(f"{label} {c.get(k, 0)}" for label, k in _THREAD))
    lines.append(f"IOMMU faults {len(v['iommu_faults'])}")
    lines += [f"  {f}" for f in v["iommu_faults"]]
    return "\n".join(lines)


def cmd_bench(args: argparse.Namespace) -> int:
    from .bench import main_args

    return main_args(args)


def cmd_mkfw(args: argparse.Namespace) -> int:
    from .fw.image import write_firmware

    try:
        path = write_firmware(args.chip, Path(args.out), version=args.version, protocol=args.protocol)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    print(path)
    from .chips import load_chip

    chip = load_chip(args.chip)
    if chip.aie4 is not None:  # AIE4 loads a cert image beside it (docs/spec/aie4.md §3)
        print(Path(args.out) / chip.aie4.cert_path)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .discover import discover
    from .emulator import Emulator

    print(f"== starting an emulated {args.chip} daemon")
    t0 = time.monotonic()
    with Emulator(chip=args.chip, runtime_dir=args.runtime_dir) as emu:
        print(f"   ready in {(time.monotonic() - t0) * 1e3:.0f} ms: bdf {emu.bdf}, socket {emu.socket}")
        print("== discovering through pyudev (umockdev testbed)")
        devs = [d for d in discover(Path(emu.runtime_dir)) if d.socket == str(emu.socket)]
        if not devs:
            raise Failure("the emulated NPU was not discovered")
        d = devs[0]
        print(f"   found {d.bdf} {d.vendor:04x}:{d.device:04x} rev {d.revision:02x} "
              f"class {d.class_code:06x} driver {d.driver} -> {d.chip}")
        _demo_lspci(emu.sysfs_root, emu.bdf)
        print("== probing with the C driver shim (SMU, PSP, FW alive, mgmt init, queries)")
        import numpy as np

        from .runtime import Device

        try:
            dev = Device.open(socket=d.socket)
        except OSError as exc:
            raise Failure(f"probe failed: {exc.strerror or exc}") from None
        with dev:
            info = dev.shim.info()
            print(format_probe(info))
            print("== running a job: out = a + b on 4096 int32 through a hardware context")
            ctx = dev.context()
            a = dev.buffer(np.arange(4096, dtype=np.int32))
            b = dev.buffer(np.full(4096, 7, dtype=np.int32))
            out = dev.buffer(np.zeros(4096, dtype=np.int32))
            t1 = time.monotonic()
            state = ctx.run("add", a, b, out).wait(timeout=5)
            job_ms = (time.monotonic() - t1) * 1e3
            ok = state == "completed" and bool((out.read() == np.arange(4096) + 7).all())
            hw = dev.shim.hwctx_info(ctx.handle)
            print(f"   context {hw['fw_ctx_id']} (MSI-X {hw['msix']}): {state} in {job_ms:.2f} ms, "
                  f"result {'correct' if ok else 'WRONG'}")
            if not ok:
                raise Failure(f"the demo job ended {state} with a wrong result")
        print("== summary")
        print(f"   {info['chip']} discovered, probed in "
              f"{sum(s['ms'] for s in info['stages']):.1f} ms, ran a checked job; "
              "daemon stopped cleanly")
    return 0


def _demo_lspci(sysfs_root: Path, bdf: str) -> None:
    """Show what the real lspci decodes from the emulated config space."""
    import shutil
    import subprocess

    if not shutil.which("lspci"):
        print("   (lspci not installed: skipping the config-space decode)")
        return
    out = subprocess.run(["lspci", "-vv", "-nn", "-O", f"sysfs.path={sysfs_root}/bus/pci", "-s", bdf],
                         capture_output=True, text=True, timeout=30)
    keep = ("Region", "Express (v2)", "MSI-X:", "Vector table", "PBA:")
    lines = out.stdout.splitlines()
    print(f"== lspci -vv -O sysfs.path={sysfs_root}/bus/pci")
    for i, line in enumerate(lines):
        if i == 0 or any(k in line for k in keep):
            print(f"   {line.strip()}")


def cmd_exec(args: argparse.Namespace) -> int:
    from .uapi import ExecError, run_exec

    argv = args.program[1:] if args.program[:1] == ["--"] else args.program
    try:
        return run_exec(argv, args.chip, args.bdf, args.socket,
                        Path(args.runtime_dir) if args.runtime_dir else None,
                        Path(args.trace) if args.trace else None)
    except ExecError as exc:
        raise UsageError(str(exc)) from None


def cmd_config(args: argparse.Namespace) -> int:
    from .uapi import ExecError, c_config, pkg_config, pkg_config_dir

    want = [w for w in ("cflags", "libs", "preload") if getattr(args, w)]
    if not want and not args.pkg_config and not args.pkg_config_path:
        raise UsageError("config: give --cflags, --libs, --preload, --pkg-config or "
                         "--pkg-config-path")
    try:
        if args.pkg_config:
            sys.stdout.write(pkg_config())
            return 0
        if args.pkg_config_path:
            print(pkg_config_dir())
            return 0
        flags = c_config()
    except ExecError as exc:
        raise Failure(str(exc)) from None
    print(" ".join(flags[w] for w in want))
    return 0


COMMANDS = {"run": cmd_run, "devices": cmd_devices, "probe": cmd_probe, "mkfw": cmd_mkfw,
            "demo": cmd_demo, "status": cmd_status, "bench": cmd_bench, "exec": cmd_exec,
            "config": cmd_config}


def _die(code: int, message: str) -> NoReturn:
    sys.stderr.write(f"xdna-emu: {message}\n")
    sys.exit(code)


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except UsageError as exc:
        _die(EXIT_USAGE, f"error: {exc}")
    level = log_level(args, dict(os.environ))
    logging.basicConfig(level=level, format="%(name)s: %(message)s")
    for handler in logging.getLogger().handlers:  # a trace may lower a logger's level: the
        handler.setLevel(level)                   # console keeps the level asked for
    try:
        return COMMANDS[args.command](args)
    except UsageError as exc:
        _die(EXIT_USAGE, f"error: {exc}")
    except Failure as exc:
        _die(EXIT_FAIL, str(exc.args[0]) if exc.args else "failed")
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # noqa: BLE001 - the CLI promises one line, never a traceback
        from .chips import ChipError
        from .daemon import DaemonError
        from .discover import DiscoveryError
        from .rundir import RuntimeDirError

        if os.environ.get("XDNA_EMU_DEBUG"):
            raise
        if isinstance(exc, DiscoveryError):
            _die(EXIT_FAIL, f"discovery failed: {exc}")
        if isinstance(exc, ChipError | DaemonError | RuntimeDirError | FileNotFoundError
                      | PermissionError | NotADirectoryError):
            _die(EXIT_USAGE, f"error: {exc}")
        _die(EXIT_FAIL, f"{type(exc).__name__}: {exc}")

if __name__ == "__main__":
    sys.exit(main())
