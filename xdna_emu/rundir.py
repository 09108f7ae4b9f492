"""The runtime directory shared by daemons, discovery and the CLI.

Each daemon owns ``<runtime_dir>/<bdf>/`` (socket, ready.json, sysfs tree, umockdev
description). The directory is private (0700) and must belong to the caller, because the
sockets in it give full control of the emulated device.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

#: Points daemons, discovery, ``Device.open()`` and the CLI at one runtime dir; the pytest
#: fixtures set it, so ``xdna-emu status`` run from a test finds the test's daemon.
RUNTIME_DIR_ENV = "XDNA_EMU_RUNTIME_DIR"


class RuntimeDirError(RuntimeError):
    """The runtime dir cannot be created or is not safely ours."""


def default_runtime_dir() -> Path:
    """``$XDNA_EMU_RUNTIME_DIR``, else ``$XDG_RUNTIME_DIR/xdna-emu``, else
    ``<tmp>/xdna-emu-<uid>``; private (0700) and ours."""
    explicit = os.environ.get(RUNTIME_DIR_ENV)
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if explicit:
        base = Path(explicit)
    elif xdg:
        base = Path(xdg) / "xdna-emu"
    else:
        base = Path(tempfile.gettempdir()) / f"xdna-emu-{os.getuid()}"
    return prepare_runtime_dir(base)


def prepare_runtime_dir(path: Path) -> Path:
    """Create ``path`` 0700, or check an existing one: a directory (not a symlink) owned by
    this uid, writable, and closed to other users. An existing directory's mode is never
    changed: widening it was the user's choice, so we refuse and say how to fix it."""
    path = Path(path)
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = path.lstat()
    except OSError as exc:
        raise RuntimeDirError(f"cannot create runtime dir {path}: {exc.strerror}") from None
    if not path.is_dir() or path.is_symlink() or st.st_uid != os.getuid():
        raise RuntimeDirError(f"runtime dir {path} is not a directory owned by uid {os.getuid()}")
    if st.st_mode & 0o077:
        raise RuntimeDirError(f"runtime dir {path} is open to other users (mode "
                              f"{st.st_mode & 0o777:04o}); run `chmod 700 {path}` or choose "
                              f"another with --runtime-dir or ${RUNTIME_DIR_ENV}")
    if not os.access(path, os.W_OK | os.X_OK):
        raise RuntimeDirError(f"runtime dir {path} is not writable")
    return path


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OSError, OverflowError):
        return False
    return True


def ready_records(runtime_dir: Path | None = None) -> list[dict[str, Any]]:
    """The ready records of live daemons, sorted by bdf; unreadable or stale ones are skipped."""
    root = Path(runtime_dir) if runtime_dir is not None else default_runtime_dir()
    out: list[dict[str, Any]] = []
    if not root.is_dir():
        return out
    for ready in sorted(root.glob("*/ready.json")):
        try:
            rec = json.loads(ready.read_text())
        except (OSError, ValueError):
            continue
        pid = rec.get("pid") if isinstance(rec, dict) else None
        if isinstance(pid, int) and not isinstance(pid, bool) and pid > 0 and pid_alive(pid):
            out.append(rec)
    return sorted(out, key=lambda r: str(r.get("bdf", "")))
