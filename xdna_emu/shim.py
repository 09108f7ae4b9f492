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
from pathlib import Path
from types import TracebackType
from typing import Any

from . import _shim  # type: ignore[attr-defined]

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


class ShimError(OSError):
    """A driver-shim call failed; ``errno`` is the driver's, ``strerror`` the shim's line."""


def _error(ctx: Any) -> ShimError:
    err = ffi.errno or errno.EIO
    msg = ffi.string(lib.xdna_shim_last_error(ctx)).decode(errors="replace")
    return ShimError(err, msg or os.strerror(err))


def _str(arr: Any) -> str:
    return ffi.string(arr).decode(errors="replace")


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
        ctx = lib.xdna_shim_open(path, int(timeout_ms))
        if ctx == ffi.NULL:
            raise _error(ffi.NULL)
        return cls(ctx, os.fspath(socket))

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
        self._check(lib.xdna_shim_probe(ctx, os.fsencode(os.fspath(firmware_path))))
        return self.info()

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
            "stages": [
                {"name": _str(i.stages[k].name), "ms": i.stages[k].ns / 1e6}
                for k in range(min(i.nstages, len(i.stages)))
            ],
        }  # fmt: skip
