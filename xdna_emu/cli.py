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

from .cmdline import COMMAND_GROUP, EXIT_FAIL, EXIT_USAGE, AddSubcommands, Failure, UsageError
from .cmdline import Parser as _Parser

__all__ = ["EXIT_FAIL", "EXIT_USAGE", "Failure", "UsageError", "build_parser", "main"]

BDF_RE = re.compile(r"^[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-1][0-9a-fA-F]\.[0-7]$")
VERSION_RE = re.compile(r"^\d+\.\d+\.\d+\.\d+$")
PROTO_RE = re.compile(r"^\d+\.\d+$")


def _chip(name: str) -> str:
    from .chips import chip_names

    if name not in chip_names():
        raise argparse.ArgumentTypeError(f"unknown chip {name!r} (known: {', '.join(chip_names())})")
    return name


def _bdf(text: str) -> str:
    if not BDF_RE.match(text):
        raise argparse.ArgumentTypeError(f"bad BDF {text!r}, expected DDDD:BB:DD.F")
    return text.lower()


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
    """``(--socket S | --bdf B) [--runtime-dir DIR]``: which running emulator to talk to."""
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--socket")
    where.add_argument("--bdf", type=_bdf)
    p.add_argument("--runtime-dir")
    return p


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="xdna-emu", description="Emulator of AMD XDNA NPUs (Ryzen AI)")
    p.add_argument("-v", "--verbose", action="store_true", help="log to stderr")
    sub = p.add_subparsers(dest="cmd", required=True, parser_class=_Parser)

    run = sub.add_parser("run", help="run one emulated NPU in the foreground")
    run.add_argument("--chip", type=_chip, required=True)
    run.add_argument("--runtime-dir")
    run.add_argument("--bdf", type=_bdf)
    run.add_argument("--exit-with-pid", type=int, metavar="PID",
                     help="also stop when process PID exits (used by xdna_emu.Emulator)")

    dev = sub.add_parser("devices", help="list emulated NPUs found through pyudev")
    dev.add_argument("--runtime-dir")
    dev.add_argument("--json", action="store_true")

    probe = _add_target(sub.add_parser("probe", help="probe a running emulator with the C driver shim"))
    probe.add_argument("--firmware-path")
    probe.add_argument("--json", action="store_true")

    st = _add_target(sub.add_parser("status", help="show a running emulator's state"))
    st.add_argument("--json", action="store_true")

    mkfw = sub.add_parser("mkfw", help="write a signed emulator firmware image")
    mkfw.add_argument("--chip", type=_chip, required=True)
    mkfw.add_argument("--out", required=True)
    mkfw.add_argument("--version", type=_pattern(VERSION_RE, "firmware version (M.m.p.b)"))
    mkfw.add_argument("--protocol", type=_pattern(PROTO_RE, "protocol version (M.m)"))

    demo = sub.add_parser("demo", help="start an emulator, discover it, probe it, summarise")
    demo.add_argument("--chip", type=_chip, default="npu4")
    demo.add_argument("--runtime-dir")

    ex = sub.add_parser("exec", help="run a program against emulated /dev/accel devices")
    ex.add_argument("--chip", type=_chip, action="append", default=[])
    ex.add_argument("--bdf", type=_bdf, action="append", default=[])
    ex.add_argument("--socket", action="append", default=[])
    ex.add_argument("--runtime-dir")
    ex.add_argument("program", nargs=argparse.REMAINDER, help="-- PROGRAM [ARGS...]")
    cfg = sub.add_parser("config", help="C flags for the UAPI header and the shim library")
    for flag in ("--cflags", "--libs", "--preload", "--pkg-config"):
        cfg.add_argument(flag, action="store_true")

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

    daemon = Daemon(args.chip, _runtime_dir(args), args.bdf)

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


def _socket_for_bdf(args: argparse.Namespace) -> str:
    from .discover import ready_records

    for rec in ready_records(_runtime_dir(args)):
        if rec.get("bdf") == args.bdf:
            return str(rec["socket"])
    raise UsageError(f"no running emulator with BDF {args.bdf} in {_runtime_dir(args)}")


def probe_socket(socket_path: str, firmware_path: str | None) -> dict[str, Any]:
    from .shim import Shim

    with Shim.open(socket_path) as shim:
        return shim.probe(firmware_path)


def cmd_probe(args: argparse.Namespace) -> int:
    sock = args.socket or _socket_for_bdf(args)
    if not Path(sock).exists():
        raise UsageError(f"socket {sock} does not exist")
    if args.firmware_path and not Path(args.firmware_path).is_dir():
        raise UsageError(f"firmware path {args.firmware_path} is not a directory")
    try:
        info = probe_socket(sock, args.firmware_path)
    except OSError as exc:
        raise Failure(f"probe failed: {exc.strerror or exc}") from None
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

    sock = args.socket or _socket_for_bdf(args)
    if not Path(sock).exists():
        raise UsageError(f"socket {sock} does not exist")
    try:
        with ControlClient(sock) as cl:
            cl.version()
            st = cl.status()
    except (OSError, EOFError) as exc:
        raise Failure(f"status failed: {exc}") from None
    if args.json:
        print(json.dumps(st, indent=2))
        return 0
    dev = st.get("device", {})
    print(f"{st['bdf']}  {st['chip']}  pid {st['pid']}  sessions {st['sessions']}  "
          f"probed {st['probed']}  rss {st['rss_kib']} KiB")
    for key in ("power", "psp", "firmware"):
        if key in dev:
            print(f"  {key}: {dev[key]}")
    for ctx in dev.get("contexts", []):
        print(f"  context {ctx}")
    print(f"  stats: {st['stats']}")
    return 0


def cmd_mkfw(args: argparse.Namespace) -> int:
    from .fw.image import write_firmware

    try:
        path = write_firmware(args.chip, Path(args.out), version=args.version, protocol=args.protocol)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    print(path)
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
                        Path(args.runtime_dir) if args.runtime_dir else None)
    except ExecError as exc:
        raise UsageError(str(exc)) from None


def cmd_config(args: argparse.Namespace) -> int:
    from .uapi import ExecError, c_config, pkg_config

    want = [w for w in ("cflags", "libs", "preload") if getattr(args, w)]
    if not want and not args.pkg_config:
        raise UsageError("config: give --cflags, --libs, --preload or --pkg-config")
    try:
        if args.pkg_config:
            sys.stdout.write(pkg_config())
            return 0
        flags = c_config()
    except ExecError as exc:
        raise Failure(str(exc)) from None
    print(" ".join(flags[w] for w in want))
    return 0


COMMANDS = {"config": cmd_config, "exec": cmd_exec, "run": cmd_run, "devices": cmd_devices, "probe": cmd_probe, "mkfw": cmd_mkfw,
            "demo": cmd_demo, "status": cmd_status}


def _die(code: int, message: str) -> NoReturn:
    sys.stderr.write(f"xdna-emu: {message}\n")
    sys.exit(code)


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except UsageError as exc:
        _die(EXIT_USAGE, f"error: {exc}")
    if args.verbose or os.environ.get("XDNA_EMU_DEBUG"):
        logging.basicConfig(level=logging.DEBUG, format="%(name)s: %(message)s")
    try:
        return COMMANDS[args.cmd](args)
    except UsageError as exc:
        _die(EXIT_USAGE, f"error: {exc}")
    except Failure as exc:
        _die(EXIT_FAIL, str(exc))
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
