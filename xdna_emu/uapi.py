"""The UAPI path: run a program against an emulated ``/dev/accel/accelN`` and talk to it.

:func:`run_exec` is ``xdna-emu exec``: it finds or starts the daemons, plays the loaded
kernel driver (the probe happens here, once, as the module load does on a real machine),
puts the accel child of each PCI function into a umockdev testbed for ``/sys`` and our
interposer (``xdna_emu/_accel*.so``) first in ``LD_PRELOAD`` for ``/dev/accel``, and
returns the program's exit code (docs/spec/uapi.md §5).

:class:`AccelFile` is the same ioctls from Python (``os.open`` + ``fcntl.ioctl`` with the
codecs of :mod:`xdna_emu.uapi_table`); it works in any process started by ``exec``.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import importlib.machinery
import mmap
import os
import shlex
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import uapi_table as T
from .fw.messages import COL_STATUS, COL_STATUS_FIELDS, TelemetryType

ENV_SOCKET = "XDNA_EMU_ACCEL{}_SOCKET"  # accelN -> its daemon socket
ENV_STATE = "XDNA_EMU_ACCEL{}_STATE"  # accelN -> the file holding its cross-process tables
ENV_DRIVER = "XDNA_EMU_ACCEL{}_DRIVER"  # accelN -> the socket of exec's driver session
ENV_PRELOAD = "XDNA_EMU_PRELOAD"
DEFAULT_CHIP = "npu4"
# not `exec "$@"`: the shell stays the program's parent and exits 128 + N when signal N
# ends it (umockdev-run would report a bare N)
_WRAP = 'LD_PRELOAD="$XDNA_EMU_PRELOAD${LD_PRELOAD:+:$LD_PRELOAD}" "$@"'


class ExecError(RuntimeError):
    """``exec`` could not set the device up (the CLI turns it into one line)."""


def preload_library() -> Path:
    """The built interposer (``pip install -e .`` builds it beside the cffi shim)."""
    here = Path(__file__).resolve().parent
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        lib = here / f"_accel{suffix}"
        if lib.is_file():
            return lib
    raise ExecError(f"the accel interposer is not built in {here} (run `pip install -e .`)")


def shim_library() -> Path:
    """The shim's C API as a shared library (built beside the interposer)."""
    here = Path(__file__).resolve().parent
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        lib = here / f"_xdna_shim_c{suffix}"
        if lib.is_file():
            return lib
    raise ExecError(f"the shim library is not built in {here} (run `pip install -e .`)")


def include_dirs() -> list[Path]:
    """Where our UAPI header (amdxdna_accel.h) and the shim's public header (xdna_shim.h)
    are: the source tree's in a checkout (csrc/generated is what the build generated last),
    else the copies the build put in the package (``xdna_emu/include``, what a wheel has)."""
    here = Path(__file__).resolve().parent
    csrc = here.parent / "csrc"
    if (csrc / "generated" / "amdxdna_accel.h").is_file() and (csrc / "xdna_shim.h").is_file():
        return [csrc / "generated", csrc]
    inc = here / "include"
    if (inc / "amdxdna_accel.h").is_file() and (inc / "xdna_shim.h").is_file():
        return [inc]
    raise ExecError(f"the C headers are not in {inc} (run `pip install .`)")


def c_config() -> dict[str, str]:
    """Compiler and linker flags for a C program: our UAPI header and the shim's public
    header (:func:`include_dirs`), and the shim library with its rpath."""
    lib = shim_library()
    return {"cflags": " ".join(f"-I{d}" for d in include_dirs()),
            "libs": f"-L{lib.parent} -l:{lib.name} -Wl,-rpath,{lib.parent} -pthread",
            "preload": str(preload_library())}


def pkg_config_dir() -> Path:
    """The directory holding the installed ``xdna-emu.pc`` (paths relative to itself), for
    ``PKG_CONFIG_PATH``; the build writes it beside the shim library (setup.py)."""
    pc = shim_library().parent / "pkgconfig"
    if not (pc / "xdna-emu.pc").is_file():
        raise ExecError(f"xdna-emu.pc is not in {pc} (run `pip install .`)")
    return pc


def pkg_config() -> str:
    """A pkg-config file with the same flags as absolute paths (the installed one,
    :func:`pkg_config_dir`, has them relative to itself)."""
    from . import __version__

    c = c_config()
    return (f"Name: xdna-emu\nDescription: AMD XDNA NPU emulator: amdxdna UAPI header and "
            f"the driver shim's C API\nVersion: {__version__}\nCflags: {c['cflags']}\n"
            f"Libs: {c['libs']}\n")


def accel_description(path: Path, device_path: str, minor: int) -> Path:
    """A umockdev description of the accel class device below the PCI function: ``dev``
    261:N, so umockdev links ``/sys/class/accel/accelN`` and ``/sys/dev/char/261:N``, and
    its ``device`` link leads back to the function, as the kernel's tree does."""
    major = T.const("ACCEL_MAJOR")
    lines = [f"P: {device_path}/accel/accel{minor}", "E: SUBSYSTEM=accel",
             f"E: DEVNAME=/dev/accel/accel{minor}", f"E: MAJOR={major}", f"E: MINOR={minor}",
             f"A: dev={major}:{minor}", "L: device=../.."]
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass
class _Target:
    socket: str
    record: dict[str, Any] = field(default_factory=dict)


def _trace_file(trace: Path | None, i: int) -> Path | None:
    """The timeline file of the i-th daemon exec starts: FILE, then FILE.1.json, ..."""
    if trace is None or i == 0:
        return trace
    return trace.with_name(f"{trace.stem}.{i}{trace.suffix or '.json'}")


def _resolve(chips: Sequence[str], bdfs: Sequence[str], sockets: Sequence[str],
             runtime_dir: Path | None, stack: contextlib.ExitStack,
             trace: Path | None = None) -> list[_Target]:
    from .emulator import Emulator
    from .rundir import ready_records

    records = ready_records(runtime_dir)
    targets: list[_Target] = []
    for i, chip in enumerate(chips):  # private daemons: one PCI bus each, so their BDFs differ
        emu = stack.enter_context(Emulator(chip=chip, private=True, bdf=f"0000:{0xC5 + i:02x}:00.1",
                                           trace=_trace_file(trace, i)))
        targets.append(_Target(str(emu.socket), dict(emu.record)))
    for bdf in bdfs:
        rec = next((r for r in records if r.get("bdf") == bdf), None)
        if rec is None:
            raise ExecError(f"no running emulator with BDF {bdf}")
        targets.append(_Target(str(rec["socket"]), rec))
    for sock in sockets:
        if not Path(sock).exists():
            raise ExecError(f"socket {sock} does not exist")
        rec = next((r for r in records if str(r.get("socket")) == sock), {})
        targets.append(_Target(sock, rec))
    return targets


def _load_driver(sock: str, stack: contextlib.ExitStack,
                 service: Path) -> tuple[dict[str, Any], bool]:
    """Probe the device unless a driver session exists (else attach to read it); keep the
    session for the run, and when it is ours serve the driver's calls at ``service``.
    Returns the device facts the driver publishes in sysfs, and whether it serves."""
    from .shim import Shim

    shim = Shim.open(sock)
    stack.callback(shim.close)
    if shim.caps.get("probed"):
        shim.attach()
        return shim.info(), False
    shim.probe(None)
    # the programs' sessions are not this session's activity: with autosuspend it would
    # stop the firmware under them after its idle delay (docs/spec/uapi.md §7)
    shim.set_autosuspend_ms(0)
    stack.callback(DriverService(shim, service).close)
    return shim.info(), True


#: The attributes the driver adds at the PCI device (amdxdna sysfs), from the probe facts:
#: name -> value line. device_type is the UAPI's KMQ (AIE2) or UMQ (AIE4).
def driver_attrs(info: dict[str, Any]) -> dict[str, str]:
    dev_type = T.const("AMDXDNA_DEV_TYPE_UMQ" if info.get("family") == "aie4"
                       else "AMDXDNA_DEV_TYPE_KMQ")
    return {"vbnv": f"{info.get('vbnv', '')}\n", "device_type": f"{dev_type}\n",
            "fw_version": f"{info['fw_version']}\n"}


def _attr_script(devices: list[tuple[str, dict[str, str]]]) -> str:
    """Shell lines that write the driver's attributes into the testbed (umockdev has no way
    to add attributes to a device another description made)."""
    lines = []
    for devpath, attrs in devices:
        for name, value in attrs.items():
            target = shlex.quote(f"/sys{devpath}/{name}")
            lines.append(f'printf %s {shlex.quote(value)} > "$UMOCKDEV_DIR"{target}')
    return "; ".join(lines)


def run_exec(argv: Sequence[str], chips: Sequence[str] = (), bdfs: Sequence[str] = (),
             sockets: Sequence[str] = (), runtime_dir: Path | None = None,
             trace: Path | None = None) -> int:
    """Run ``argv`` with the devices visible; returns its exit code (128 + N on signal N).
    ``trace`` writes each daemon exec starts a Perfetto timeline (docs/tracing.md)."""
    from .sysfs import device_path

    if not argv:
        raise ExecError("no program given (usage: xdna-emu exec [TARGET] -- PROGRAM [ARGS])")
    if trace is not None and not chips and (bdfs or sockets):
        raise ExecError("--trace needs a daemon that exec starts (--chip); for a running one, "
                        "start it with xdna-emu run --trace")
    if shutil.which(argv[0]) is None:
        raise ExecError(f"program {argv[0]!r} not found")
    lib = preload_library()
    with contextlib.ExitStack() as stack:
        targets = _resolve(chips or ([] if bdfs or sockets else [DEFAULT_CHIP]), bdfs, sockets,
                           runtime_dir, stack, trace)
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="xdna-exec-")))
        descs: list[str] = []
        attrs: list[tuple[str, dict[str, str]]] = []
        env = dict(os.environ)
        for minor, t in enumerate(targets):
            service = tmp / f"accel{minor}.driver"
            info, serving = _load_driver(t.socket, stack, service)
            if serving:
                env[ENV_DRIVER.format(minor)] = str(service)
            desc, bdf = t.record.get("umockdev"), t.record.get("bdf")
            if isinstance(desc, str) and Path(desc).is_file() and isinstance(bdf, str):
                descs += [desc, str(accel_description(tmp / f"accel{minor}.umockdev",
                                                      device_path(bdf), minor))]
                attrs.append((device_path(bdf), driver_attrs(info)))
        env.update({ENV_SOCKET.format(n): t.socket for n, t in enumerate(targets)})
        for n in range(len(targets)):  # the kernel's device-wide tables: contexts, BO usage
            state = tmp / f"accel{n}.state"
            state.touch(mode=0o600)
            env[ENV_STATE.format(n)] = str(state)
        env[ENV_PRELOAD] = str(lib)
        cmd = ["/bin/sh", "-c", _WRAP, "sh", *argv]
        umockdev = shutil.which("umockdev-run")
        if umockdev and descs:
            cmd = [umockdev, *(a for d in descs for a in ("-d", d)), "--", "/bin/sh", "-c",
                   f"{_attr_script(attrs)}; {_WRAP}", "sh", *argv]
        rc = subprocess.run(cmd, env=env).returncode
        return 128 - rc if rc < 0 else rc


# ---- the driver's side of device-wide calls ---------------------------------------------
#: ex_err_code of an AIE error: its column in bits 7:0, its row in bits 15:8 (the driver's
#: encoding, docs/spec/uapi.md §6)
EXTRA_ERR_ROW_SHIFT = 8
_REQ = struct.Struct("<II")  # request: DRM command number, GET_INFO/GET_ARRAY/SET_STATE param
_REPLY = struct.Struct("<i")  # reply: 0 or the driver's errno, then the answer's bytes


class DriverService:
    """The calls a program's DRM file cannot serve from its own client session, because the
    state is the driver's (power mode, the last async error, the firmware log and trace):
    served by the driver session
    ``exec`` keeps, over a SOCK_SEQPACKET socket the decoder finds in
    ``XDNA_EMU_ACCEL<N>_DRIVER`` (docs/spec/uapi.md §6). One request and one reply per
    connection: the request's first word is the DRM command number, the second its param,
    then the argument's bytes; the reply's first word is 0 or an errno, then the answer."""

    def __init__(self, shim: Any, path: Path) -> None:
        self.shim = shim
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        self.sock.bind(str(path))
        self.sock.listen(16)
        self.thread = threading.Thread(target=self._serve, name="xdna-driver-service",
                                       daemon=True)
        self.thread.start()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.thread.join(timeout=5)

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return  # closed
            with conn:
                with contextlib.suppress(OSError):
                    reply = self.answer(conn.recv(4096), conn)
                    if reply:  # empty: answered already (with an fd)
                        conn.send(reply)

    def _dpt(self, conn: socket.socket | None, nr: int, which: int, body: bytes) -> bytes:
        """The firmware log's or trace's driver state (docs/spec/uapi.md §6 "Firmware log
        and trace"): SET_STATE sets it; GET_ARRAY of its config answers get_dpt_state; of
        its data, the ring's size with the ring's memfd, which the caller maps and reads."""
        if nr == T.ioctl("AMDXDNA_SET_STATE").nr:
            st = T.SET_DPT_STATE.unpack(body.ljust(T.SET_DPT_STATE.size, b"\0"))
            self.shim.dpt_set(which >> 1, st["action"], st["config"])
            return _REPLY.pack(0)
        d = self.shim.dpt_get(which >> 1)
        if not which & 1:  # the config
            return _REPLY.pack(0) + T.GET_DPT_STATE.pack(
                version=d["payload_version"], status=d["enabled"], config=d["config"], reserved=0)
        if not d["enabled"] or conn is None:
            return _REPLY.pack(errno.ESHUTDOWN)  # the driver's answer while it is off
        socket.send_fds(conn, [_REPLY.pack(0) + struct.pack("<I", d["size"])], [d["fd"]])
        return b""

    def answer(self, req: bytes, conn: socket.socket | None = None) -> bytes:
        """One request's reply (errno 0 with the answer, or the driver's errno)."""
        from .shim import ShimError

        if len(req) < _REQ.size:
            return _REPLY.pack(errno.EINVAL)
        nr, param = _REQ.unpack_from(req)
        body = req[_REQ.size:]
        try:
            if nr == T.ioctl("AMDXDNA_SET_STATE").nr and param == T.const("DRM_AMDXDNA_SET_POWER_MODE"):
                mode = T.SET_POWER_MODE.unpack(body.ljust(T.SET_POWER_MODE.size, b"\0"))["power_mode"]
                self.shim.set_power_mode(int(mode))
                return _REPLY.pack(0)
            if nr == T.ioctl("AMDXDNA_GET_INFO").nr and param == T.const("DRM_AMDXDNA_GET_POWER_MODE"):
                from .shim import PowerMode

                mode = PowerMode[str(self.shim.power()["mode"]).upper()]
                return _REPLY.pack(0) + T.GET_POWER_MODE.pack(power_mode=int(mode))
            dpt = _DPT.get((nr, param))
            if dpt is not None:
                return self._dpt(conn, nr, dpt, body)
            if nr == T.ioctl("AMDXDNA_GET_ARRAY").nr and param == T.const("DRM_AMDXDNA_HW_LAST_ASYNC_ERR"):
                e = self.shim.last_async_error()
                if not e["count"]:
                    return _REPLY.pack(0)  # none cached: no element
                return _REPLY.pack(0) + T.ASYNC_ERROR.pack(
                    err_code=e["err_code"], ts_us=e["ts_ns"] // 1000,
                    ex_err_code=e["row"] << EXTRA_ERR_ROW_SHIFT | e["col"])
        except ShimError as exc:
            return _REPLY.pack(exc.errno or errno.EIO)
        return _REPLY.pack(errno.EOPNOTSUPP)


#: (DRM command number, param) of the firmware log/trace calls -> which << 1 | data
_DPT = {
    (T.ioctl("AMDXDNA_SET_STATE").nr, T.const("DRM_AMDXDNA_SET_FW_LOG_STATE")): 0 << 1,
    (T.ioctl("AMDXDNA_SET_STATE").nr, T.const("DRM_AMDXDNA_SET_FW_TRACE_STATE")): 1 << 1,
    (T.ioctl("AMDXDNA_GET_ARRAY").nr, T.const("DRM_AMDXDNA_FW_LOG_CONFIG")): 0 << 1,
    (T.ioctl("AMDXDNA_GET_ARRAY").nr, T.const("DRM_AMDXDNA_FW_TRACE_CONFIG")): 1 << 1,
    (T.ioctl("AMDXDNA_GET_ARRAY").nr, T.const("DRM_AMDXDNA_FW_LOG")): 0 << 1 | 1,
    (T.ioctl("AMDXDNA_GET_ARRAY").nr, T.const("DRM_AMDXDNA_FW_TRACE")): 1 << 1 | 1,
}


# ---- the ioctls from Python ----------------------------------------------------------
HEAP_CHUNK = 64 << 20  # the DEV_HEAP granule a runtime grows the heap by (docs/spec/uapi.md §6)
HEAP_RESERVE = 1 << 30  # VA a file reserves for its heap: above every chip's maximum

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                       ctypes.c_int, ctypes.c_long]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_MAP_FAILED = ctypes.c_void_p(-1).value
_MAP_FIXED, _MAP_NORESERVE = 0x10, 0x4000  # Linux <sys/mman.h>; the mmap module lacks them


def _mmap(addr: int, size: int, prot: int, flags: int, fd: int, off: int) -> int:
    """libc mmap (so the interposer serves an accel fd) at a chosen address."""
    p = _libc.mmap(addr or None, size, prot, flags, fd, off)
    if p is None or p == _MAP_FAILED:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return int(p)


class AccelFile:
    """One DRM file on ``/dev/accel/accelN`` (under ``xdna-emu exec``). Every method is one
    ioctl; a failure raises ``OSError`` with the driver's errno.

    :meth:`attach` opens one on a daemon socket instead, in a process not under ``exec``:
    the same decoder (csrc/uapi/accel.c) serves it, called directly rather than through the
    interposer's libc hooks, on the calling thread (so in deterministic in-process mode its
    waits step the daemon like the shim's own: docs/spec/fuzzing.md §12)."""

    def __init__(self, path: str = "/dev/accel/accel0") -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        self.direct = False  # ioctl and mmap go to the decoder itself (attach)
        self.heap_va = 0  # the heap's VA range (chunks mapped one after the other), 0: none
        self.heap_len = 0

    @classmethod
    def attach(cls, socket: str | Path, minor: int = 0) -> AccelFile:
        """A DRM file on the daemon at ``socket``, opened in this process; ``minor`` names
        its registry and driver service (``XDNA_EMU_ACCEL<minor>_*``) as for accelN."""
        from .shim import ffi, lib

        fd = lib.xdna_accel_attach(minor, os.fsencode(str(socket)), os.O_CLOEXEC)
        if fd < 0:
            raise OSError(ffi.errno, os.strerror(ffi.errno))
        self = cls.__new__(cls)
        self.fd, self.direct, self.heap_va, self.heap_len = fd, True, 0, 0
        return self

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            if self.direct:  # what the interposer's close hook does after the real close
                from .shim import lib

                lib.xdna_accel_forget(self.fd)
            self.fd = -1
        if self.heap_va:
            _libc.munmap(self.heap_va, HEAP_RESERVE)
            self.heap_va = self.heap_len = 0

    def __enter__(self) -> AccelFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def ioctl(self, name: str, /, **values: Any) -> dict[str, Any]:
        """Issue ``DRM_IOCTL_<name>`` with the struct packed from ``values``; the struct as
        the driver left it."""
        io = T.ioctl(name)
        buf = bytearray(io.layout.pack(**values))
        self.ioctl_raw(io.number, buf)
        return io.layout.unpack(buf)

    def ioctl_raw(self, number: int, buf: bytearray) -> None:
        """ioctl(2) with request ``number`` on ``buf`` (any size: the decoder copies what
        the number's size field names); ``OSError`` with the errno."""
        if not self.direct:
            fcntl.ioctl(self.fd, number, buf, True)
            return
        from .shim import ffi, lib

        if lib.xdna_accel_ioctl(self.fd, number, ffi.from_buffer(buf)) < 0:
            raise OSError(ffi.errno, os.strerror(ffi.errno))

    def mmap_at(self, addr: int, size: int, prot: int, flags: int, off: int) -> int:
        """mmap(2) of this file at ``off`` (a BO's ``map_offset``); the address."""
        if not self.direct:
            return _mmap(addr, size, prot, flags, self.fd, off)
        from .shim import ffi, lib

        p = lib.xdna_accel_mmap(ffi.cast("void *", addr), size, prot, flags, self.fd, off)
        if int(ffi.cast("intptr_t", p)) == -1:
            raise OSError(ffi.errno, os.strerror(ffi.errno))
        return int(ffi.cast("uintptr_t", p))

    def version(self) -> dict[str, Any]:
        """DRM VERSION: the struct, with the driver's name (``"amdxdna"``) as ``name_str``."""
        name = bytearray(32)
        addr = _addr(name)
        out = self.ioctl("VERSION", name_len=len(name), name=addr)
        out["name_str"] = bytes(name[: out["name_len"]]).decode()
        return out

    def create_bo(self, type_: int, size: int) -> int:
        """CREATE_BO of ``type_`` (``T.const("AMDXDNA_BO_*")``); its handle. A DEV BO needs
        the heap first (:meth:`dev_bo` grows it as a runtime does)."""
        return int(self.ioctl("AMDXDNA_CREATE_BO", type=type_, size=size)["handle"])

    def bo_info(self, handle: int) -> dict[str, Any]:
        """GET_BO_INFO: ``map_offset`` (for mmap), ``vaddr`` and ``xdna_addr`` (the device's)."""
        return self.ioctl("AMDXDNA_GET_BO_INFO", handle=handle)

    def map_bo(self, handle: int, size: int) -> mmap.mmap:
        """A shared read-write mmap of the BO's first ``size`` bytes at its ``map_offset``."""
        off = self.bo_info(handle)["map_offset"]
        return mmap.mmap(self.fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE,
                         offset=off)

    def add_heap_chunk(self, size: int = HEAP_CHUNK) -> int:
        """A DEV_HEAP chunk, mapped right after the ones before it as a runtime does (the
        driver wants a DEV BO's chunks contiguous in the program); its handle."""
        h = self.create_bo(T.const("AMDXDNA_BO_DEV_HEAP"), size)
        try:
            if not self.heap_va:
                self.heap_va = _mmap(0, HEAP_RESERVE, 0,  # PROT_NONE
                                     mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | _MAP_NORESERVE,
                                     -1, 0)
            at = self.heap_va + self.heap_len
            self.mmap_at(at, size, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED | _MAP_FIXED,
                         self.bo_info(h)["map_offset"])
        except OSError:
            self.close_bo(h)
            raise
        self.heap_len += size
        return h

    def dev_bo(self, size: int) -> int:
        """A DEV BO in the heap. As a runtime does, a DEV BO that does not fit (EAGAIN) makes
        the heap grow by a chunk and is tried again; EBUSY when the heap is at its maximum."""
        if not self.heap_len:
            self.add_heap_chunk()
        while True:
            try:
                return self.create_bo(T.const("AMDXDNA_BO_DEV"), size)
            except OSError as e:
                if e.errno != errno.EAGAIN:
                    raise
            self.add_heap_chunk()

    def userptr_bo(self, ranges: Sequence[tuple[int, int]]) -> int:
        """A user-pointer BO over the program's own pages: page-aligned (address, length)
        ranges, in order (docs/spec/uapi.md §6); its handle."""
        tbl = bytearray(T.VA_TBL.pack(udma_fd=-1, num_entries=len(ranges)))
        for va, length in ranges:
            tbl += T.VA_ENTRY.pack(vaddr=va, len=length)
        return int(self.ioctl("AMDXDNA_CREATE_BO", type=T.const("AMDXDNA_BO_SHARE"),
                              vaddr=_addr(tbl))["handle"])

    def close_bo(self, handle: int) -> None:
        self.ioctl("GEM_CLOSE", handle=handle)

    def sync_bo(self, handle: int, size: int, offset: int = 0, to_device: bool = True) -> None:
        """SYNC_BO of ``size`` bytes from ``offset``: the cache flush (to the device) or
        invalidate (from it) a runtime issues around a job (docs/spec/uapi.md §6)."""
        direction = T.const("SYNC_DIRECT_TO_DEVICE" if to_device else "SYNC_DIRECT_FROM_DEVICE")
        self.ioctl("AMDXDNA_SYNC_BO", handle=handle, direction=direction, offset=offset,
                   size=size)

    def prime_export(self, handle: int, cloexec: bool = True) -> int:
        """PRIME_HANDLE_TO_FD of a SHARE BO: an fd another DRM file, of this or any process
        (passed over fork, exec or a socket), imports with :meth:`prime_import`; the memory
        lives while any fd, handle or mapping holds it (docs/spec/uapi.md §6-7)."""
        flags = T.const("DRM_RDWR") | (T.const("DRM_CLOEXEC") if cloexec else 0)
        return int(self.ioctl("PRIME_HANDLE_TO_FD", handle=handle, flags=flags)["fd"])

    def prime_import(self, fd: int) -> int:
        """PRIME_FD_TO_HANDLE: this file's handle of the BO ``fd`` names (the exporting
        file gets its own handle back)."""
        return int(self.ioctl("PRIME_FD_TO_HANDLE", fd=fd)["handle"])

    # -- contexts and jobs ------------------------------------------------------------
    def create_hwctx(self, num_tiles: int = 0, max_opc: int = 2048,
                     **qos: int) -> dict[str, Any]:
        """CREATE_HWCTX over the heap (make one first: :meth:`dev_bo` or
        :meth:`add_heap_chunk`): ``num_tiles`` core tiles (0: one column, the metadata's core
        row count) and the QoS members given (``gops``, ``fps``, ...; priority NORMAL unless
        given). The struct as the driver left it: ``handle`` names the context in every
        other call, ``syncobj_handle`` its timeline (point N signals when job N ends)."""
        if not num_tiles:
            num_tiles = int(self.get_info("QUERY_AIE_METADATA", T.QUERY_AIE_METADATA)
                            ["core"]["row_count"])
        qos.setdefault("priority", T.const("AMDXDNA_QOS_NORMAL_PRIORITY"))
        info = bytearray(T.QOS_INFO.pack(**qos))
        return self.ioctl("AMDXDNA_CREATE_HWCTX", qos_p=_addr(info), max_opc=max_opc,
                          num_tiles=num_tiles)

    def destroy_hwctx(self, handle: int) -> None:
        """DESTROY_HWCTX: the context's jobs end (ABORT if still running) and it is gone."""
        self.ioctl("AMDXDNA_DESTROY_HWCTX", handle=handle)

    def config_hwctx(self, handle: int, param: str, value: int = 0, size: int = 0) -> None:
        """CONFIG_HWCTX ``DRM_AMDXDNA_HWCTX_<param>`` with ``param_val`` ``value`` (a
        pointer or a BO handle, as the param wants) of ``size`` bytes."""
        self.ioctl("AMDXDNA_CONFIG_HWCTX", handle=handle,
                   param_type=T.const(f"DRM_AMDXDNA_HWCTX_{param}"), param_val=value,
                   param_val_size=size)

    def config_cu(self, handle: int, cus: Sequence[tuple[int, int]]) -> None:
        """CONFIG_HWCTX CONFIG_CU: the context's CU table, one ``(cu_bo, cu_func)`` per CU
        (the CU BO a DEV BO); a command's CU mask indexes it (docs/spec/jobs.md §4)."""
        table = bytearray(T.CONFIG_CU.pack(num_cus=len(cus)))
        for bo, func in cus:
            table += T.CU_CONFIG.pack(cu_bo=bo, cu_func=func)
        self.config_hwctx(handle, "CONFIG_CU", _addr(table), len(table))

    def exec_cmd(self, hwctx: int, cmd: int, args: Sequence[int] = ()) -> int:
        """EXEC_CMD EXEC_BUF of the CMD BO ``cmd`` (an ERT packet: ``xdna_emu.shim.ert_*``)
        with the BOs its job uses; the job's sequence number, its point on the context's
        timeline."""
        arr = bytearray(struct.pack(f"<{len(args)}I", *args)) or bytearray(4)
        return int(self.ioctl("AMDXDNA_EXEC_CMD", hwctx=hwctx,
                              type=T.const("AMDXDNA_CMD_SUBMIT_EXEC_BUF"), cmd_handles=cmd,
                              args=_addr(arr), cmd_count=1, arg_count=len(args))["seq"])

    def _fences(self, hwctx: int, kind: str, fences: Sequence[tuple[int, int]]) -> None:
        handles = bytearray(struct.pack(f"<{len(fences)}I", *(h for h, _ in fences)) or b"\0" * 4)
        points = bytearray(struct.pack(f"<{len(fences)}Q", *(p for _, p in fences)) or b"\0" * 8)
        self.ioctl("AMDXDNA_EXEC_CMD", hwctx=hwctx, type=T.const(f"AMDXDNA_CMD_SUBMIT_{kind}"),
                   cmd_handles=_addr(handles), args=_addr(points), cmd_count=len(fences),
                   arg_count=len(fences))

    def exec_dependency(self, hwctx: int, fences: Sequence[tuple[int, int]]) -> None:
        """EXEC_CMD DEPENDENCY: the context's later jobs wait for each ``(syncobj, point)``
        (point 0: the binary state); the call returns once they have signalled (§7)."""
        self._fences(hwctx, "DEPENDENCY", fences)

    def exec_signal(self, hwctx: int, fences: Sequence[tuple[int, int]]) -> None:
        """EXEC_CMD SIGNAL: each ``(syncobj, point)`` signals when the context's last
        submitted job ends."""
        self._fences(hwctx, "SIGNAL", fences)

    def wait_cmd(self, hwctx: int, seq: int, timeout_ms: int = 0) -> None:
        """WAIT_CMD: until job ``seq`` of the context ends (``timeout_ms`` 0: no limit);
        ETIME when it does not in time. The job's own state is in its CMD BO's header."""
        self.ioctl("AMDXDNA_WAIT_CMD", hwctx=hwctx, seq=seq, timeout=timeout_ms)

    # -- device-wide tables (any process under the same exec reads them) -------------
    def hw_contexts(self, room: int = T.const("AMDXDNA_MAX_NUM_ELEMENT")) -> list[dict[str, Any]]:
        """GET_ARRAY HW_CONTEXT_ALL with room for ``room`` entries: one ``hwctx_entry`` per
        context of every process on the device (``context_id`` the owner's handle,
        ``hwctx_id`` the firmware's id), ``name`` as str (docs/spec/uapi.md §6)."""
        buf = bytearray(room * T.HWCTX_ENTRY.size)
        out = self.ioctl("AMDXDNA_GET_ARRAY", param=T.const("DRM_AMDXDNA_HW_CONTEXT_ALL"),
                         element_size=T.HWCTX_ENTRY.size, num_element=room, buffer=_addr(buf))
        return [_hwctx_entry(buf, i * out["element_size"]) for i in range(out["num_element"])]

    def hw_context(self, pid: int, context_id: int) -> dict[str, Any]:
        """GET_ARRAY HW_CONTEXT_BY_ID: the entry of context ``context_id`` (the owner's
        handle) of process ``pid``."""
        buf = bytearray(T.HWCTX_ENTRY.pack(pid=pid, context_id=context_id))
        self.ioctl("AMDXDNA_GET_ARRAY", param=T.const("DRM_AMDXDNA_HW_CONTEXT_BY_ID"),
                   element_size=len(buf), num_element=1, buffer=_addr(buf))
        return _hwctx_entry(buf, 0)

    def bo_usage(self, pid: int | None = None) -> dict[str, Any]:
        """GET_ARRAY BO_USAGE of ``pid`` (None: this process) over all its DRM files:
        ``total_usage`` every shmem-backed BO, ``internal_usage`` DEV_HEAP and CMD BOs,
        ``heap_usage`` DEV BOs (docs/spec/uapi.md §6)."""
        buf = bytearray(T.BO_USAGE.pack(pid=os.getpid() if pid is None else pid))
        self.ioctl("AMDXDNA_GET_ARRAY", param=T.const("DRM_AMDXDNA_BO_USAGE"),
                   element_size=len(buf), num_element=1, buffer=_addr(buf))
        return T.BO_USAGE.unpack(buf)

    def get_info(self, param: str, layout: T.Layout) -> dict[str, Any]:
        buf = bytearray(layout.size)
        self.ioctl("AMDXDNA_GET_INFO", param=T.const(f"DRM_AMDXDNA_{param}"),
                   buffer_size=len(buf), buffer=_addr(buf))
        return layout.unpack(buf)

    def aie_status(self) -> tuple[int, list[dict[str, Any]]]:
        """GET_INFO AIE_STATUS with a buffer of ``cols * col_size`` bytes: the column bitmap
        of the device's contexts (``cols_filled``) and the firmware's ``col_status`` of each
        of those columns, lowest first (docs/spec/uapi.md §6, docs/spec/firmware.md §8)."""
        md = self.get_info("QUERY_AIE_METADATA", T.QUERY_AIE_METADATA)
        dump = bytearray(md["cols"] * md["col_size"])
        st = bytearray(T.QUERY_AIE_STATUS.pack(buffer=_addr(dump), buffer_size=len(dump),
                                               cols_filled=0))
        self.ioctl("AMDXDNA_GET_INFO", param=T.const("DRM_AMDXDNA_QUERY_AIE_STATUS"),
                   buffer_size=len(st), buffer=_addr(st))
        filled = int(T.QUERY_AIE_STATUS.unpack(st)["cols_filled"])
        cols = [dict(zip(COL_STATUS_FIELDS, COL_STATUS.unpack_from(dump, i * md["col_size"]),
                         strict=True)) for i in range(filled.bit_count())]
        return filled, cols

    def sensors(self, count: int = 16) -> list[dict[str, Any]]:
        """GET_INFO SENSORS with room for ``count`` entries: the driver's entries (power,
        then one utilisation per column), ``label``/``units`` as str (docs/spec/uapi.md §6)."""
        buf = bytearray(count * T.QUERY_SENSOR.size)
        out = self.ioctl("AMDXDNA_GET_INFO", param=T.const("DRM_AMDXDNA_QUERY_SENSORS"),
                         buffer_size=len(buf), buffer=_addr(buf))
        entries = []
        for i in range(out["buffer_size"] // T.QUERY_SENSOR.size):
            e = T.QUERY_SENSOR.unpack(buf[i * T.QUERY_SENSOR.size:(i + 1) * T.QUERY_SENSOR.size])
            for k in ("label", "units", "status"):
                e[k] = bytes(e[k]).split(b"\0", 1)[0].decode()
            entries.append(e)
        return entries

    def set_dpt(self, kind: str, action: int, config: int = 0) -> None:
        """SET_STATE SET_FW_<kind>_STATE (kind "LOG" or "TRACE"; root only)."""
        self.set_state(f"SET_FW_{kind}_STATE", T.SET_DPT_STATE, action=action, config=config,
                       reserved=0)

    def dpt_config(self, kind: str) -> dict[str, Any]:
        """GET_ARRAY FW_<kind>_CONFIG: ``{version, status, config}``."""
        buf = bytearray(T.GET_DPT_STATE.size)
        self.ioctl("AMDXDNA_GET_ARRAY", param=T.const(f"DRM_AMDXDNA_FW_{kind}_CONFIG"),
                   element_size=len(buf), num_element=1, buffer=_addr(buf))
        return T.GET_DPT_STATE.unpack(buf)

    def dpt_read(self, kind: str, offset: int = 0, room: int = 65536,
                 watch: bool = False) -> tuple[bytes, int]:
        """GET_ARRAY FW_<kind> from ``offset`` (the running byte count a previous read
        returned; 0 at first) with ``room`` bytes for data: the bytes and the next offset
        (docs/spec/uapi.md §6 "Firmware log and trace")."""
        md = T.DPT_METADATA
        buf = bytearray(room) + bytearray(md.pack(offset=offset, size=0, watch=int(watch),
                                                  reserved=bytes(3)))
        self.ioctl("AMDXDNA_GET_ARRAY", param=T.const(f"DRM_AMDXDNA_FW_{kind}"),
                   element_size=len(buf), num_element=1, buffer=_addr(buf))
        out = md.unpack(buf[room:])
        return bytes(buf[:out["size"]]), int(out["offset"])

    def telemetry(self, kind: int = int(TelemetryType.HEALTH), data: int = 4096,
                  ) -> tuple[dict[str, Any], list[int], bytes]:
        """GET_INFO TELEMETRY of ``kind`` with ``data`` bytes after the header and its map
        (one u32 per context the device allows): the header, the map and the firmware's
        data (docs/spec/uapi.md §6; HEALTH's layout: docs/spec/firmware.md §8)."""
        limit = int(self.get_info("QUERY_RESOURCE_INFO", T.GET_RESOURCE_INFO)["npu_task_max"])
        hsz = T.QUERY_TELEMETRY_HEADER.size + 4 * limit
        buf = bytearray(hsz + data)
        buf[:T.QUERY_TELEMETRY_HEADER.size] = T.QUERY_TELEMETRY_HEADER.pack(type=kind)
        self.ioctl("AMDXDNA_GET_INFO", param=T.const("DRM_AMDXDNA_QUERY_TELEMETRY"),
                   buffer_size=len(buf), buffer=_addr(buf))
        hdr = T.QUERY_TELEMETRY_HEADER.unpack(buf)
        return hdr, list(struct.unpack_from(f"<{limit}I", buf, T.QUERY_TELEMETRY_HEADER.size)), bytes(buf[hsz:])

    def syncobj_create(self, signaled: bool = False) -> int:
        """SYNCOBJ_CREATE: a binary-or-timeline syncobj of this file; its handle."""
        flags = T.const("DRM_SYNCOBJ_CREATE_SIGNALED") if signaled else 0
        return int(self.ioctl("SYNCOBJ_CREATE", flags=flags)["handle"])

    def syncobj_destroy(self, handle: int) -> None:
        self.ioctl("SYNCOBJ_DESTROY", handle=handle)

    def syncobj_signal(self, handle: int, point: int = 0) -> None:
        """SYNCOBJ_SIGNAL (point 0: the binary state) or TIMELINE_SIGNAL of ``point``."""
        h = bytearray(struct.pack("<I", handle))
        if not point:
            self.ioctl("SYNCOBJ_SIGNAL", handles=_addr(h), count_handles=1)
            return
        p = bytearray(struct.pack("<Q", point))
        self.ioctl("SYNCOBJ_TIMELINE_SIGNAL", handles=_addr(h), points=_addr(p), count_handles=1)

    def syncobj_wait(self, handle: int, point: int = 0, timeout_s: float = 0.0,
                     for_submit: bool = False) -> None:
        """TIMELINE_WAIT of ``point`` (0: SYNCOBJ_WAIT of the binary state) up to
        ``timeout_s`` from now; ``for_submit`` waits for the fence to appear too. ETIME
        when it does not signal in time (docs/spec/uapi.md §6)."""
        h = bytearray(struct.pack("<I", handle))
        until = time.monotonic_ns() + int(timeout_s * 1e9)
        flags = T.const("DRM_SYNCOBJ_WAIT_FLAGS_WAIT_FOR_SUBMIT") if for_submit else 0
        if not point:
            self.ioctl("SYNCOBJ_WAIT", handles=_addr(h), count_handles=1, flags=flags,
                       timeout_nsec=until)
            return
        p = bytearray(struct.pack("<Q", point))
        self.ioctl("SYNCOBJ_TIMELINE_WAIT", handles=_addr(h), points=_addr(p), count_handles=1,
                   flags=flags, timeout_nsec=until)

    def syncobj_query(self, handle: int, last_submitted: bool = False) -> int:
        """SYNCOBJ_QUERY: the highest signalled point (a context's: its last ended job, or
        with ``last_submitted`` its last submitted one)."""
        h, p = bytearray(struct.pack("<I", handle)), bytearray(8)
        flags = T.const("DRM_SYNCOBJ_QUERY_FLAGS_LAST_SUBMITTED") if last_submitted else 0
        self.ioctl("SYNCOBJ_QUERY", handles=_addr(h), points=_addr(p), count_handles=1,
                   flags=flags)
        return int(struct.unpack("<Q", p)[0])

    def syncobj_to_fd(self, handle: int) -> int:
        """SYNCOBJ_HANDLE_TO_FD: an fd naming the syncobj, for any DRM file of any process
        (passed over fork, exec or a socket; docs/spec/uapi.md §6)."""
        return int(self.ioctl("SYNCOBJ_HANDLE_TO_FD", handle=handle)["fd"])

    def fd_to_syncobj(self, fd: int) -> int:
        """SYNCOBJ_FD_TO_HANDLE: this file's handle of the syncobj ``fd`` names."""
        return int(self.ioctl("SYNCOBJ_FD_TO_HANDLE", fd=fd)["handle"])

    def export_sync_file(self, handle: int, point: int | None = None) -> int:
        """SYNCOBJ_HANDLE_TO_FD EXPORT_SYNC_FILE: a sync file of the syncobj's fence at
        ``point`` (None: its current fence), readable (POLLIN) once that signals."""
        flags = T.const("DRM_SYNCOBJ_HANDLE_TO_FD_FLAGS_EXPORT_SYNC_FILE")
        if point is not None:
            flags |= T.const("DRM_SYNCOBJ_HANDLE_TO_FD_FLAGS_TIMELINE")
        return int(self.ioctl("SYNCOBJ_HANDLE_TO_FD", handle=handle, flags=flags,
                              point=point or 0)["fd"])

    def import_sync_file(self, handle: int, fd: int, point: int | None = None) -> None:
        """SYNCOBJ_FD_TO_HANDLE IMPORT_SYNC_FILE: the sync file's fence into the syncobj
        (at ``point``; None: its binary state), once it has signalled (docs/spec/uapi.md §7)."""
        flags = T.const("DRM_SYNCOBJ_FD_TO_HANDLE_FLAGS_IMPORT_SYNC_FILE")
        if point is not None:
            flags |= T.const("DRM_SYNCOBJ_FD_TO_HANDLE_FLAGS_TIMELINE")
        self.ioctl("SYNCOBJ_FD_TO_HANDLE", handle=handle, fd=fd, flags=flags, point=point or 0)

    def set_state(self, param: str, layout: T.Layout, /, **values: Any) -> None:
        """SET_STATE ``DRM_AMDXDNA_<param>`` with ``layout`` packed from ``values`` (root
        only: EACCES otherwise)."""
        buf = bytearray(layout.pack(**values))
        self.ioctl("AMDXDNA_SET_STATE", param=T.const(f"DRM_AMDXDNA_{param}"),
                   buffer_size=len(buf), buffer=_addr(buf))


def _hwctx_entry(buf: bytearray, offset: int) -> dict[str, Any]:
    """One ``hwctx_entry`` with its process name as str."""
    e = T.HWCTX_ENTRY.unpack(buf, offset)
    e["name"] = bytes(e["name"]).split(b"\0", 1)[0].decode(errors="replace")
    return e


def _addr(buf: bytearray) -> int:
    """The address of a bytearray's storage (kept alive by the caller)."""
    import ctypes

    return ctypes.addressof((ctypes.c_char * len(buf)).from_buffer(buf))


__all__ = ["AccelFile", "ExecError", "accel_description", "c_config", "include_dirs",
           "pkg_config", "pkg_config_dir", "preload_library", "run_exec", "shim_library"]
