"""``Emulator``: a daemon subprocess as a context manager, for tests and users."""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


class EmulatorError(RuntimeError):
    """The daemon did not start or did not say it was ready."""


class Emulator:
    """Start ``xdna-emu run`` and wait for its ready line.

    ``runtime_dir=None`` means the same default as the daemon and discovery
    (``$XDG_RUNTIME_DIR/xdna-emu``), so ``discover()`` finds the device; several emulators
    share it side by side under distinct BDFs. ``private=True`` uses a throwaway dir.
    """

    def __init__(self, chip: str = "npu4", runtime_dir: str | Path | None = None,
                 bdf: str | None = None, ready_timeout: float = 30.0,
                 env: dict[str, str] | None = None, private: bool = False,
                 trace: str | Path | None = None) -> None:
        from .discover import default_runtime_dir

        self.chip = chip
        self._own_dir: tempfile.TemporaryDirectory[str] | None = None
        if private:
            self._own_dir = tempfile.TemporaryDirectory(prefix="xdna-emu-")
            runtime_dir = self._own_dir.name
        elif runtime_dir is None:
            runtime_dir = default_runtime_dir()
        self.runtime_dir = Path(runtime_dir)
        self.bdf_request = bdf
        self.trace = trace  # `xdna-emu run --trace FILE`: written when the daemon stops
        self.ready_timeout = ready_timeout
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.record: dict[str, Any] = {}

    # Attributes from the ready line.
    @property
    def socket(self) -> Path:
        return Path(self.record["socket"])

    @property
    def bdf(self) -> str:
        return str(self.record["bdf"])

    @property
    def sysfs_root(self) -> Path:
        return Path(self.record["sysfs_root"])

    @property
    def umockdev(self) -> Path:
        return Path(self.record["umockdev"])

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> Emulator:
        cmd = [sys.executable, "-m", "xdna_emu", "run", "--chip", self.chip,
               "--runtime-dir", str(self.runtime_dir), "--exit-with-pid", str(os.getpid())]
        if self.bdf_request:
            cmd += ["--bdf", self.bdf_request]
        if self.trace is not None:
            cmd += ["--trace", os.fspath(self.trace)]
        env = dict(os.environ, **(self.env or {}))
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL, env=env)
        line = self._read_line(self.ready_timeout)
        try:
            rec = json.loads(line)
            if rec.get("event") != "ready":
                raise ValueError(line)
        except ValueError:
            err = self._stop_and_collect()
            raise EmulatorError(f"daemon for {self.chip} did not start: {err or line!r}") from None
        self.record = rec
        return self

    def _read_line(self, timeout: float) -> str:
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        buf = b""
        deadline = time.monotonic() + timeout
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            r, _, _ = select.select([fd], [], [], left)
            if not r:
                break
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            buf += chunk
        return buf.split(b"\n", 1)[0].decode(errors="replace")

    def _stop_and_collect(self) -> str:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        _, err = self.proc.communicate(timeout=10)
        lines = err.decode(errors="replace").strip().splitlines()
        return lines[-1] if lines else ""

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM the daemon and wait; returns its exit status."""
        if self.proc is None:
            return None
        rc = self.proc.poll()
        if rc is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                rc = self.proc.wait()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream:
                stream.close()
        self.proc = None
        if self._own_dir is not None:
            self._own_dir.cleanup()
            self._own_dir = None
        return rc

    def kill(self) -> None:
        """SIGKILL, as a crash would; files are left for the next daemon to reclaim."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"Emulator(chip={self.chip!r}, bdf={self.record.get('bdf')!r})"
