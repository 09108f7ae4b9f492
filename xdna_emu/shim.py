"""Pythonic API over the C driver shim (the only module that touches ``_shim.lib``).

The C shim plays the amdxdna driver against a running daemon: :meth:`Shim.open` attaches
(PCI match, BARs, write log, MSI-X) and :meth:`Shim.probe` runs the driver's bring-up.
Every C failure comes back as :class:`ShimError`, an ``OSError`` that keeps the errno the
driver would have returned (``ETIME``, ``EPIPE``, ``EINVAL``...) and the shim's one-line
description of what went wrong.
"""

from __future__ import annotations

import errno
import os
import struct
from collections.abc import Sequence
from enum import IntEnum
from pathlib import Path
from types import TracebackType
from typing import Any

from . import _shim  # type: ignore[attr-defined]
from .fw.iface.aie2 import FAMILY as _FW
from .fw.messages import XRT_SHIFTS, XrtErrorClass, XrtErrorModule, XrtErrorNum, XrtErrorSeverity

ffi = _shim.ffi
lib = _shim.lib

STATES = {
    lib.XDNA_SHIM_STATE_ATTACHED: "attached",
    lib.XDNA_SHIM_STATE_PROBED: "probed",
    lib.XDNA_SHIM_STATE_STOPPED: "stopped",
    lib.XDNA_SHIM_STATE_SUSPENDED: "suspended",
    lib.XDNA_SHIM_STATE_FAILED: "failed",
}

#: Selectors for :meth:`Shim.set_timeout`.
TIMEOUTS = {
    "psp": lib.XDNA_SHIM_TIMEOUT_PSP,
    "smu": lib.XDNA_SHIM_TIMEOUT_SMU,
    "fw_alive": lib.XDNA_SHIM_TIMEOUT_FW_ALIVE,
    "mbox_rx": lib.XDNA_SHIM_TIMEOUT_MBOX_RX,
    "control": lib.XDNA_SHIM_TIMEOUT_CONTROL,
}


#: Buffer-object types (uapi amdxdna_bo_type).
BO_SHARE = lib.XDNA_SHIM_BO_SHARE
BO_DEV_HEAP = lib.XDNA_SHIM_BO_DEV_HEAP
BO_DEV = lib.XDNA_SHIM_BO_DEV
BO_CMD = lib.XDNA_SHIM_BO_CMD
SYNC_TO_DEVICE = lib.XDNA_SHIM_SYNC_TO_DEVICE
SYNC_FROM_DEVICE = lib.XDNA_SHIM_SYNC_FROM_DEVICE
HEAP_DEV_ADDR = _FW.const("HEAP_DEV_ADDR")  # device address of the session heap (docs/spec/jobs.md §2)


class ErtOpcode(IntEnum):
    """ERT command opcodes (command header bits 27:23)."""

    START_CU = lib.XDNA_SHIM_ERT_START_CU
    START_DPU = lib.XDNA_SHIM_ERT_START_DPU
    CMD_CHAIN = lib.XDNA_SHIM_ERT_CMD_CHAIN
    START_NPU = lib.XDNA_SHIM_ERT_START_NPU
    START_NPU_PREEMPT = lib.XDNA_SHIM_ERT_START_NPU_PREEMPT
    START_NPU_PREEMPT_ELF = lib.XDNA_SHIM_ERT_START_NPU_PREEMPT_ELF


class ErtState(IntEnum):
    """ERT command states (command header bits 3:0)."""

    NEW = lib.XDNA_SHIM_ERT_STATE_NEW
    QUEUED = lib.XDNA_SHIM_ERT_STATE_QUEUED
    RUNNING = lib.XDNA_SHIM_ERT_STATE_RUNNING
    COMPLETED = lib.XDNA_SHIM_ERT_STATE_COMPLETED
    ERROR = lib.XDNA_SHIM_ERT_STATE_ERROR
    ABORT = lib.XDNA_SHIM_ERT_STATE_ABORT
    SUBMITTED = lib.XDNA_SHIM_ERT_STATE_SUBMITTED
    TIMEOUT = lib.XDNA_SHIM_ERT_STATE_TIMEOUT
    NORESPONSE = lib.XDNA_SHIM_ERT_STATE_NORESPONSE


class PowerMode(IntEnum):
    DEFAULT = lib.XDNA_SHIM_POWER_DEFAULT
    LOW = lib.XDNA_SHIM_POWER_LOW
    MEDIUM = lib.XDNA_SHIM_POWER_MEDIUM
    HIGH = lib.XDNA_SHIM_POWER_HIGH
    TURBO = lib.XDNA_SHIM_POWER_TURBO


#: uapi QoS priorities accepted by :meth:`Shim.hwctx_create`.
PRIORITIES = {"realtime": lib.XDNA_SHIM_PRIO_REALTIME, "high": lib.XDNA_SHIM_PRIO_HIGH,
              "normal": lib.XDNA_SHIM_PRIO_NORMAL, "low": lib.XDNA_SHIM_PRIO_LOW}
HWCTX_STATES = {lib.XDNA_SHIM_HWCTX_ACTIVE: "active", lib.XDNA_SHIM_HWCTX_IDLE: "idle",
                lib.XDNA_SHIM_HWCTX_BROKEN: "broken"}


HWCTX_CONFIG_CU = lib.XDNA_SHIM_HWCTX_CONFIG_CU
HWCTX_ASSIGN_DBG_BUF = lib.XDNA_SHIM_HWCTX_ASSIGN_DBG_BUF
HWCTX_REMOVE_DBG_BUF = lib.XDNA_SHIM_HWCTX_REMOVE_DBG_BUF


def ert_header(opcode: int, payload_words: int, extra_cu_masks: int = 0,
               state: int = ErtState.NEW) -> int:
    """An ERT command header word; ``count`` covers the CU masks (none for CMD_CHAIN, as
    the driver's amdxdna_cmd_get_payload) and the payload."""
    masks = 0 if opcode == ErtOpcode.CMD_CHAIN else 1 + extra_cu_masks
    count = masks + payload_words
    if not 0 <= extra_cu_masks <= 3 or count > 0x7FF:
        raise ValueError("ERT command too large or too many CU masks")
    return (state & 0xF) | (extra_cu_masks & 3) << 10 | count << 12 | (opcode & 0x1F) << 23


def ert_start_npu(instr_addr: int, instr_size: int, args: Sequence[int] = (),
                  props: Sequence[int] = (), cu_mask: int = 1,
                  opcode: int = ErtOpcode.START_NPU) -> bytes:
    """A START_NPU command: {u64 instr, u32 size, u32 prop_count, props, args as lo/hi}."""
    words = [instr_addr & 0xFFFFFFFF, instr_addr >> 32, instr_size, len(props), *props]
    for a in args:
        words += [a & 0xFFFFFFFF, a >> 32]
    hdr = ert_header(opcode, len(words))
    return struct.pack(f"<II{len(words)}I", hdr, cu_mask, *words)


def _words(args: Sequence[int]) -> list[int]:
    out: list[int] = []
    for a in args:
        out += [a & 0xFFFFFFFF, a >> 32]
    return out


def ert_start_cu(payload: Sequence[int], cu_mask: int = 1) -> bytes:
    """A legacy START_CU command: the CU's payload words (for the reference kernels: the
    instruction buffer address lo/hi, then buffer arguments lo/hi; docs/spec/jobs.md §5)."""
    hdr = ert_header(ErtOpcode.START_CU, len(payload))
    return struct.pack(f"<II{len(payload)}I", hdr, cu_mask, *payload)


def ert_start_dpu(instr_addr: int, instr_size: int, args: Sequence[int] = (),
                  cu_mask: int = 1) -> bytes:
    """A START_DPU command: {u64 instr, u32 size, u32 chained = 0, args as lo/hi}."""
    words = [instr_addr & 0xFFFFFFFF, instr_addr >> 32, instr_size, 0, *_words(args)]
    hdr = ert_header(ErtOpcode.START_DPU, len(words))
    return struct.pack(f"<II{len(words)}I", hdr, cu_mask, *words)


def ert_start_preempt(instr_addr: int, instr_size: int, save: tuple[int, int] = (0, 0),
                      restore: tuple[int, int] = (0, 0), args: Sequence[int] = (),
                      props: Sequence[int] = (), cu_mask: int = 1, elf: bool = False) -> bytes:
    """A START_NPU_PREEMPT(_ELF) command: {u64 inst, save, restore, u32 inst/save/restore
    size, prop_count, props, args}; save/restore are (address, size)."""
    words = [*_words([instr_addr, save[0], restore[0]]), instr_size, save[1], restore[1],
             len(props), *props, *_words(args)]
    op = ErtOpcode.START_NPU_PREEMPT_ELF if elf else ErtOpcode.START_NPU_PREEMPT
    hdr = ert_header(op, len(words))
    return struct.pack(f"<II{len(words)}I", hdr, cu_mask, *words)


def decode_error_code(code: int) -> dict[str, Any]:
    """An xrtErrorCode split the way XRT reads it: number, driver, severity, module and class
    (names where the AIE2 interface table knows the value)."""
    def field(key: str) -> int:
        return code >> XRT_SHIFTS[key] & (0xFFFF if key == "num" else 0xF)

    def name(enum: Any, v: int) -> str | int:
        return enum(v).name if v in enum._value2member_map_ else v

    return {"err_num": name(XrtErrorNum, field("num")), "err_driver": field("driver"),
            "err_severity": name(XrtErrorSeverity, field("severity")),
            "err_module": name(XrtErrorModule, field("module")),
            "err_class": name(XrtErrorClass, field("class"))}


def ert_cmd_chain(handles: Sequence[int]) -> bytes:
    """A CMD_CHAIN command (no CU mask): {count, submit_index, error_index, rsvd[3], u64
    handles[]}."""
    words = [len(handles), 0, 0, 0, 0, 0]
    for h in handles:
        words += [h & 0xFFFFFFFF, h >> 32]
    hdr = ert_header(ErtOpcode.CMD_CHAIN, len(words))
    return struct.pack(f"<I{len(words)}I", hdr, *words)


def chain_error_index(cmd: bytes | memoryview) -> int:
    """The error_index a failed CMD_CHAIN reports (payload word 2)."""
    return struct.unpack_from("<I", cmd, 4 * (1 + 2))[0]


class ShimError(OSError):
    """A driver-shim call failed; ``errno`` is the driver's, ``strerror`` the shim's line."""


def _error(ctx: Any) -> ShimError:
    err = ffi.errno or errno.EIO
    msg = ffi.string(lib.xdna_shim_last_error(ctx)).decode(errors="replace")
    return ShimError(err, msg or os.strerror(err))


def _str(arr: Any) -> str:
    return ffi.string(arr).decode(errors="replace")


def bench_eventfd(tx_fd: int, rx_fd: int, n: int, timeout_ms: int = 5000) -> list[float]:
    """``n`` eventfd round trips timed in C (``xdna_shim_bench_eventfd``): the floor under
    every kick and interrupt the shim exchanges with the daemon, in microseconds."""
    out = ffi.new("double[]", max(n, 1))
    if lib.xdna_shim_bench_eventfd(tx_fd, rx_fd, n, timeout_ms, out) < 0:
        err = ffi.errno or errno.EIO
        raise OSError(err, f"eventfd round trip: {os.strerror(err)}")
    return list(out[0:n])


def _default_firmware_dir() -> Path:
    from .fw.image import default_firmware_dir  # lazy: only probing needs firmware

    return Path(default_firmware_dir())


class Shim:
    """One attached device. Use as a context manager; closing twice is harmless."""

    def __init__(self, ctx: Any, socket: str) -> None:
        self._ctx = ctx
        self.socket = socket

    @classmethod
    def open(cls, socket: str | Path, timeout_ms: int = 5000) -> Shim:
        """Attach to the daemon at ``socket`` (no firmware traffic yet)."""
        path = os.fsencode(os.fspath(socket))
        ffi.errno = 0
        from .tracing import client_tracer, now_us

        tracer = client_tracer(socket)
        t0 = now_us()
        ctx = lib.xdna_shim_open(path, int(timeout_ms))
        if ctx == ffi.NULL:
            raise _error(ffi.NULL)
        shim = cls(ctx, os.fspath(socket))
        if tracer is not None:
            tracer("open", t0, now_us(), {"socket": os.fspath(socket)})
            shim._trace_calls(tracer)
        return shim

    #: The calls a traced shim logs (docs/tracing.md): the driver operations, not the
    #: register accessors the trapped-write track already shows from the device side.
    TRACED = ("probe", "stop", "suspend", "resume", "mgmt_msg", "attach", "bo_create", "bo_sync",
              "bo_free", "hwctx_create", "hwctx_destroy", "exec", "wait", "set_power_mode",
              "set_iommu_mode", "close")

    def _trace_calls(self, record: Any) -> None:
        """Shadow each traced method with one that logs its span into the daemon's trace."""
        from .tracing import now_us

        def wrap(name: str, fn: Any) -> Any:
            def traced(*args: Any, **kw: Any) -> Any:
                t0 = now_us()
                err = None
                try:
                    return fn(*args, **kw)
                except OSError as exc:
                    err = exc.strerror or str(exc)
                    raise
                finally:
                    info = {f"a{i}": a for i, a in enumerate(args)
                            if isinstance(a, int | str) and not isinstance(a, bool)}
                    if err:
                        info["error"] = err
                    record(name, t0, now_us(), info)

            return traced

        for name in self.TRACED:
            setattr(self, name, wrap(name, getattr(self, name)))

    # -- lifecycle ---------------------------------------------------------------------
    def _c(self) -> Any:
        if self._ctx is None:
            raise ShimError(errno.EBADF, "the shim is closed")
        return self._ctx

    def _check(self, rc: int) -> None:
        if rc != 0:
            raise _error(self._ctx)

    def close(self) -> None:
        """Stop the device if probed, then release every mapping and fd."""
        ctx, self._ctx = self._ctx, None
        if ctx is not None:
            lib.xdna_shim_close(ctx)

    def __enter__(self) -> Shim:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - never raise from a finalizer
            pass

    @property
    def closed(self) -> bool:
        return self._ctx is None

    # -- driver operations ----------------------------------------------------------------
    def probe(self, firmware_path: str | Path | None = None) -> dict[str, Any]:
        """Run the driver bring-up; ``firmware_path`` is a directory or a colon-joined list."""
        ctx = self._c()
        if firmware_path is None:
            firmware_path = _default_firmware_dir()
        if lib.xdna_shim_probe(ctx, os.fsencode(os.fspath(firmware_path))) != 0:
            exc = _error(ctx)
            # only the PSP refusing an image has more to say than its status code
            why = (self.device_error() if exc.errno == errno.EIO and exc.strerror.startswith("psp")
                   else None)
            if why and why not in exc.strerror:
                exc = ShimError(exc.errno, f"{exc.strerror} ({why})")
            raise exc
        return self.info()

    def device_error(self) -> str | None:
        """The device's own words for its last firmware failure (the PSP's ``last_error``,
        e.g. "payload digest mismatch"), asked over a second control session so that a
        failed probe says why and not only which status came back; None if unknown."""
        from .control import ControlClient

        try:
            with ControlClient(self.socket, timeout=0.5) as cl:
                cl.version()
                dev = cl.status().get("device") or {}
        except (OSError, EOFError, ValueError):
            return None
        psp = dev.get("psp") if isinstance(dev, dict) else None
        why = psp.get("last_error") if isinstance(psp, dict) else None
        return why if isinstance(why, str) else None

    def stop(self) -> None:
        self._check(lib.xdna_shim_stop(self._c()))

    def suspend(self) -> None:
        self._check(lib.xdna_shim_suspend(self._c()))

    def resume(self) -> None:
        self._check(lib.xdna_shim_resume(self._c()))

    def set_timeout(self, which: str | int, ms: int) -> None:
        """Change a deadline: ``psp``, ``smu``, ``fw_alive``, ``mbox_rx``, ``control`` (or the
        C selector number)."""
        if isinstance(which, str):
            if which not in TIMEOUTS:
                raise ValueError(f"unknown timeout {which!r} (known: {', '.join(TIMEOUTS)})")
            which = TIMEOUTS[which]
        self._check(lib.xdna_shim_set_timeout(self._c(), int(which), int(ms)))

    def mgmt_msg(self, opcode: int, req: bytes, resp_size: int, timeout_ms: int = 5000) -> bytes:
        """Send one raw management message; the response must be exactly ``resp_size`` bytes."""
        ctx = self._c()
        resp = ffi.new("uint8_t[]", max(int(resp_size), 1))
        self._check(lib.xdna_shim_mgmt_msg(ctx, int(opcode), req, len(req), resp, int(resp_size),
                                           int(timeout_ms)))
        return bytes(ffi.buffer(resp, int(resp_size)))

    def readl(self, bar: int, off: int) -> int:
        val = ffi.new("uint32_t *")
        self._check(lib.xdna_shim_readl(self._c(), int(bar), int(off), val))
        return int(val[0])

    def writel(self, bar: int, off: int, val: int) -> None:
        self._check(lib.xdna_shim_writel(self._c(), int(bar), int(off), int(val) & 0xFFFFFFFF))

    @property
    def last_error(self) -> str:
        return ffi.string(lib.xdna_shim_last_error(self._c())).decode(errors="replace")

    # -- information ------------------------------------------------------------------------
    def raw_info(self) -> Any:
        """The C ``struct xdna_shim_info`` (a cffi object)."""
        info = ffi.new("struct xdna_shim_info *")
        self._check(lib.xdna_shim_get_info(self._c(), info))
        return info

    def info(self) -> dict[str, Any]:
        """What ``xdna-emu probe --json`` prints."""
        i = self.raw_info()
        return {
            "chip": _str(i.chip),
            "family": _str(i.family),
            "bdf": _str(i.bdf),
            "vendor": i.vendor,
            "device": i.device,
            "revision": i.revision,
            "class": i.class_code,
            "vbnv": _str(i.vbnv),
            "state": STATES.get(i.state, str(i.state)),
            "fw_version": f"{i.fw_major}.{i.fw_minor}.{i.fw_sub}.{i.fw_build}",
            "protocol_version": f"{i.protocol_major}.{i.protocol_minor}",
            "aie_version": f"{i.aie_major}.{i.aie_minor}",
            "tiles": {
                "cols": i.cols, "rows": i.rows, "core_rows": i.core_rows,
                "mem_rows": i.mem_rows, "shim_rows": i.shim_rows,
                "core_row_start": i.core_row_start, "mem_row_start": i.mem_row_start,
                "shim_row_start": i.shim_row_start,
            },
            "total_col": i.total_col,
            "first_col": i.first_col,
            "msix_vectors": i.msix_vectors,
            "mgmt_msi_id": i.mgmt_msi_id,
            "dpm_levels": i.dpm_levels,
            "dpm_level": i.dpm_level,
            "dev_revision": i.dev_revision,
            "hwctx_limit": i.hwctx_limit,
            "pasid": i.pasid,
            "async_pending": i.async_pending,
            "async_events": i.async_events,
            "dropped_resps": i.dropped_resps,
            "trapped_writes": i.trapped_writes,
            "kicks_saved": i.kicks_saved,
            "direct_waits": i.direct_waits,
            "ctl_sends": i.ctl_sends,
            "session": "client" if i.client else "driver",
            "stages": [
                {"name": _str(i.stages[k].name), "ms": i.stages[k].ns / 1e6}
                for k in range(min(i.nstages, len(i.stages)))
            ],
            **self._aie4_info(i),
        }  # fmt: skip

    @staticmethod
    def _aie4_info(i: Any) -> dict[str, Any]:
        """What an AIE4 probe adds (docs/spec/aie4.md §6): the cert firmware version, the
        partition and the PCI function kind."""
        if _str(i.family) != "aie4":
            return {}
        return {
            "cert_fw_version": f"{i.cert_major}.{i.cert_minor}.{i.cert_hotfix}.{i.cert_build}",
            "partition_id": i.partition_id,
            "function": _str(i.function),
        }

    # -- sessions, buffers, contexts, commands (docs/spec/jobs.md) ---------------------------
    @property
    def caps(self) -> dict[str, Any]:
        """What the daemon's VERSION caps said at open (``probed``: attach, don't probe)."""
        i = self.raw_info()
        return {"probed": bool(i.caps_probed), "pasid": i.pasid, "bdf": _str(i.bdf)}

    def attach(self) -> dict[str, Any]:
        """Become a client session of a device another session probed."""
        self._check(lib.xdna_shim_attach(self._c()))
        return self.info()

    def bo_create(self, type: int, size: int) -> int:  # noqa: A002 - uapi name
        """Create a buffer object of ``type`` (BO_SHARE/BO_DEV_HEAP/BO_DEV/BO_CMD); returns its
        handle."""
        h = ffi.new("uint32_t *")
        self._check(lib.xdna_shim_bo_create(self._c(), int(type), int(size), h))
        return int(h[0])

    def bo_info(self, handle: int) -> dict[str, int]:
        i = ffi.new("struct xdna_shim_bo_info *")
        self._check(lib.xdna_shim_bo_info(self._c(), int(handle), i))
        return {"type": i.type, "handle": i.handle, "size": i.size, "vaddr": i.vaddr,
                "xdna_addr": i.xdna_addr, "map_offset": i.map_offset}

    def bo_map(self, handle: int) -> memoryview:
        """A writable view of the BO's memory (``numpy.frombuffer`` works on it). The view is
        only valid until the BO is freed or the shim closed."""
        i = self.bo_info(handle)
        return memoryview(ffi.buffer(ffi.cast("char *", i["vaddr"]), i["size"]))

    def bo_sync(self, handle: int, direction: int = SYNC_TO_DEVICE, offset: int = 0,
                size: int = 0) -> None:
        """Checked fence over [offset, offset+size) (size 0: to the end of the BO)."""
        self._check(lib.xdna_shim_bo_sync(self._c(), int(handle), int(direction), int(offset),
                                          int(size)))

    def bo_free(self, handle: int) -> None:
        self._check(lib.xdna_shim_bo_free(self._c(), int(handle)))

    def hwctx_create(self, priority: int | str = 0, num_cols: int = 0, start_col: int = -1,
                     gops: int = 0, fps: int = 0, latency_ms: int = 0, max_opc: int = 0) -> int:
        """Create a hardware context (CREATE_CONTEXT, user channel, host buffers, CONFIG_CU);
        its QoS (gops, fps, latency, max_opc) picks the DPM level it asks for."""
        if isinstance(priority, str):
            priority = PRIORITIES[priority]
        p = ffi.new("struct xdna_shim_hwctx_params *")
        p.priority, p.num_cols, p.start_col = int(priority), int(num_cols), int(start_col)
        p.gops, p.fps, p.latency_ms, p.max_opc = int(gops), int(fps), int(latency_ms), int(max_opc)
        h = ffi.new("uint32_t *")
        self._check(lib.xdna_shim_hwctx_create(self._c(), p, h))
        return int(h[0])

    def umq(self, handle: int) -> dict[str, int]:
        """AIE4 user-mode submission: hand the context's HSA queue to the caller
        (docs/spec/aie4.md §8); returns the queue BO, doorbell, vector and capacity."""
        out = ffi.new("struct xdna_shim_umq *")
        self._check(lib.xdna_shim_umq(self._c(), int(handle), out))
        return {"queue_bo": out.queue_bo, "doorbell": out.doorbell, "msix": out.msix,
                "capacity": out.capacity, "queue_addr": out.queue_addr}

    def doorbell(self, handle: int) -> None:
        """Ring an AIE4 context's doorbell (the application's store to its doorbell page)."""
        self._check(lib.xdna_shim_doorbell(self._c(), int(handle)))

    def flr(self) -> None:
        """Function-level reset of an AIE4 function with the driver's reset_prepare and
        reset_done around it: jobs in flight end ABORT, contexts come back (handles kept)."""
        self._check(lib.xdna_shim_flr(self._c()))

    def cert_log_attach(self, handle: int, bo: int, slices: list[tuple[int, int]]) -> None:
        """Bind DEV BO ``bo`` to context ``handle`` as its CERT log: ``slices`` are
        (uC index, bytes), laid out in order from offset 0 (docs/spec/aie4.md §11)."""
        arr = ffi.new("struct xdna_shim_uc_log[]", max(1, len(slices)))
        for i, (uc, size) in enumerate(slices):
            arr[i].uc_index, arr[i].size = int(uc), int(size)
        self._check(lib.xdna_shim_cert_log_attach(self._c(), int(handle), int(bo), arr,
                                                  len(slices)))

    def cert_log_detach(self, handle: int) -> None:
        self._check(lib.xdna_shim_cert_log_detach(self._c(), int(handle)))

    def sriov_configure(self, num_vfs: int) -> None:
        """The PF driver's sriov_configure (a write of sysfs ``sriov_numvfs``): CREATE_VFS
        and ``num_vfs`` VF functions, or 0: the VFs removed and DESTROY_VFS
        (docs/spec/aie4.md §10)."""
        self._check(lib.xdna_shim_sriov_configure(self._c(), int(num_vfs)))

    def hwctx_config(self, handle: int, type: int, value: int) -> None:  # noqa: A002 - uapi name
        """CONFIG_HWCTX: ``type`` HWCTX_ASSIGN_DBG_BUF / HWCTX_REMOVE_DBG_BUF, ``value`` a DEV BO
        handle (docs/spec/jobs.md §4a)."""
        self._check(lib.xdna_shim_hwctx_config(self._c(), int(handle), int(type), int(value)))

    def config_cu(self, handle: int, cus: Sequence[tuple[int, int]]) -> None:
        """CONFIG_HWCTX CONFIG_CU: the context's CU table as (DEV BO handle, function)."""
        arr = ffi.new("struct xdna_shim_cu_config[]", max(len(cus), 1))
        for i, (bo, func) in enumerate(cus):
            arr[i].cu_bo, arr[i].cu_func = int(bo), int(func)
        self._check(lib.xdna_shim_hwctx_config_cu(self._c(), int(handle), arr, len(cus)))

    def assign_debug_bo(self, handle: int, bo: int) -> None:
        self.hwctx_config(handle, HWCTX_ASSIGN_DBG_BUF, bo)

    def remove_debug_bo(self, handle: int, bo: int) -> None:
        self.hwctx_config(handle, HWCTX_REMOVE_DBG_BUF, bo)

    def hwctx_destroy(self, handle: int) -> None:
        self._check(lib.xdna_shim_hwctx_destroy(self._c(), int(handle)))

    def hwctx_info(self, handle: int) -> dict[str, Any]:
        i = ffi.new("struct xdna_shim_hwctx_info *")
        self._check(lib.xdna_shim_hwctx_info(self._c(), int(handle), i))
        return {"handle": i.handle, "fw_ctx_id": i.fw_ctx_id, "msix": i.msix,
                "start_col": i.start_col, "num_cols": i.num_cols, "priority": i.priority,
                "state": HWCTX_STATES.get(i.state, str(i.state)), "polled": bool(i.polled),
                "cu_status": i.cu_status, "pending": i.pending, "submitted": i.submitted,
                "completed": i.completed, "errors": i.errors, "timeouts": i.timeouts,
                "aborts": i.aborts, "dpm_level": i.dpm_level, "connects": i.connects,
                "swaps": i.swaps, "syncobj": i.syncobj, "umq_doorbell": i.umq_doorbell,
                "idle_outs": i.idle_outs}

    def exec(self, hwctx: int, cmd_bo: int) -> int:
        """Submit the command in ``cmd_bo``; returns its sequence number."""
        seq = ffi.new("uint64_t *")
        self._check(lib.xdna_shim_exec(self._c(), int(hwctx), int(cmd_bo), seq))
        return int(seq[0])

    def wait(self, hwctx: int, seq: int, timeout_ms: int = 5000) -> None:
        """Wait until command ``seq`` is final (ShimError ETIME otherwise)."""
        self._check(lib.xdna_shim_wait(self._c(), int(hwctx), int(seq), int(timeout_ms)))

    def syncobj_wait(self, syncobj: int, seq: int, timeout_ms: int = 5000) -> None:
        """Wait on point ``seq`` of a context's hardware-queue handle (``hwctx_info``)."""
        self._check(lib.xdna_shim_syncobj_wait(self._c(), int(syncobj), int(seq), int(timeout_ms)))

    def cmd_state(self, cmd_bo: int) -> ErtState:
        s = ffi.new("uint32_t *")
        self._check(lib.xdna_shim_cmd_state(self._c(), int(cmd_bo), s))
        try:
            return ErtState(int(s[0]))
        except ValueError:
            return int(s[0])  # type: ignore[return-value]

    def set_tdr_ms(self, ms: int) -> None:
        self._check(lib.xdna_shim_set_tdr_ms(self._c(), int(ms)))

    def set_autosuspend_ms(self, ms: int) -> None:
        self._check(lib.xdna_shim_set_autosuspend_ms(self._c(), int(ms)))

    def monitor_step(self) -> None:
        """Deterministic mode: one monitor iteration, as its thread would run it while
        another session's call waits (never from inside this shim's own call): receive
        what came in without blocking, then the duties (docs/spec/fuzzing.md §10)."""
        self._check(lib.xdna_shim_monitor_step(self._c()))

    def snapshot_save(self) -> Any:
        """Deterministic mode, the fuzz target's bring-up (docs/spec/fuzzing.md §9): the
        driver state the probe left, restorable with :meth:`snapshot_restore` (freed with
        the returned object). ShimError EBUSY unless the session is probed and bare."""
        snap = lib.xdna_shim_snapshot_save(self._c())
        if snap == ffi.NULL:
            raise _error(self._ctx)
        return ffi.gc(snap, lib.xdna_shim_snapshot_free)

    def snapshot_restore(self, snap: Any) -> None:
        """Free what was added since ``snap`` without telling the daemon and put its fields
        back; ShimError ESTALE (nothing changed) when the transport is no longer its own."""
        self._check(lib.xdna_shim_snapshot_restore(self._c(), snap))

    def last_async_error(self) -> dict[str, int]:
        e = ffi.new("struct xdna_shim_async_error *")
        self._check(lib.xdna_shim_last_async_error(self._c(), e))
        return {"count": e.count, "ts_ns": e.ts_ns, "type": e.type, "err_cnt": e.err_cnt,
                "ret_code": e.ret_code, "event_id": e.event_id, "row": e.row, "col": e.col,
                "mod_type": e.mod_type, "category": e.category, "err_code": e.err_code,
                **decode_error_code(e.err_code)}

    def app_health(self, hwctx: int, size: int = 1024) -> bytes:
        """The context's last health report (kept by TDR), or a fresh GET_APP_HEALTH."""
        buf = ffi.new("uint8_t[]", max(int(size), 1))
        n = lib.xdna_shim_app_health(self._c(), int(hwctx), buf, int(size))
        if n < 0:
            raise _error(self._ctx)
        return bytes(ffi.buffer(buf, n))

    def set_iommu_mode(self, mode: int | str) -> None:
        """"sva" (default: VAs tagged by PASID) or "iova" (DMA addresses, iommu_mode=1)."""
        if isinstance(mode, str):
            mode = {"sva": lib.XDNA_SHIM_IOMMU_SVA, "iova": lib.XDNA_SHIM_IOMMU_IOVA}[mode]
        self._check(lib.xdna_shim_set_iommu_mode(self._c(), int(mode)))

    def set_power_mode(self, mode: int | str) -> None:
        if isinstance(mode, str):
            mode = PowerMode[mode.upper()]
        self._check(lib.xdna_shim_set_power_mode(self._c(), int(mode)))

    def dpt_set(self, which: int, action: int, config: int) -> None:
        """Start (action != 0, with a log level or trace categories; 0: the driver's
        default), change or stop (action 0) the firmware log (which 0) or trace (1)."""
        self._check(lib.xdna_shim_dpt_set(self._c(), int(which), int(action), int(config)))

    def dpt_get(self, which: int) -> dict[str, int]:
        """The log's or trace's state: enabled, config, payload_version, and its ring's size
        and memfd (owned by the session; -1 while off)."""
        d = ffi.new("struct xdna_shim_dpt *")
        self._check(lib.xdna_shim_dpt_get(self._c(), int(which), d))
        return {"enabled": d.enabled, "config": d.config, "payload_version": d.payload_version,
                "size": d.size, "fd": d.fd}

    def power(self) -> dict[str, Any]:
        p = ffi.new("struct xdna_shim_power *")
        self._check(lib.xdna_shim_get_power(self._c(), p))
        try:
            mode: Any = PowerMode(p.mode).name.lower()
        except ValueError:
            mode = p.mode
        return {"mode": mode, "dpm_level": p.dpm_level, "npuclk_mhz": p.npuclk_mhz,
                "hclk_mhz": p.hclk_mhz, "tops": p.tops, "clock_gating": bool(p.clock_gating),
                "suspended": bool(p.suspended), "suspend_count": p.suspend_count,
                "resume_count": p.resume_count}
