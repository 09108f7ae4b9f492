"""Timeline traces in the Chrome trace-event JSON format, which Perfetto and chrome://tracing
open (docs/tracing.md).

Daemon side, :class:`TraceRecorder` sees the device through two doors that already exist:

- the PCI function's observer hooks (docs/spec/device.md §3): every trapped register write
  and every raised MSI-X vector;
- the device model's log records: a record that carries ``extra={"trace": {...}}`` becomes a
  structured event (mailbox messages, PSP and SMU commands, resets); any other record at info
  level or above (contexts created and destroyed, a context hung, a session dropped) becomes
  an instant, so TDR and other firmware-side events land on the timeline with their words.

Client side, :func:`client_tracer` makes a :class:`~xdna_emu.shim.Shim` log each of its calls
(begin, duration, thread) to ``<daemon dir>/trace/client-<pid>.jsonl`` when that directory
exists, that is, when the daemon it talks to is tracing. The recorder merges those files at
stop. Both sides stamp events with ``CLOCK_MONOTONIC``, one clock for the whole machine, so
the merged timeline is ordered across processes.

A future command that starts its own daemon (``xdna-emu exec --trace FILE``) reuses this by
passing ``--trace FILE`` to the daemon, or by calling :func:`attach` on a ``Daemon`` it runs
in-process; its client side is traced by the same Shim hook.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .pci.observer import Observer

__all__ = ["CLIENT_DIR", "TraceRecorder", "attach", "client_tracer", "now_us"]

#: Name of the directory, inside the daemon's own ``<runtime_dir>/<bdf>/``, whose existence
#: tells clients to log their shim calls there.
CLIENT_DIR = "trace"

# Thread ids of the daemon's tracks; mailbox channel n is CHANNEL_TID + n.
TID_DEVICE, TID_MMIO, TID_IRQ, TID_PSP, TID_SMU, TID_LOG = 1, 2, 3, 4, 5, 6
CHANNEL_TID = 100
TRACKS = {TID_DEVICE: "device (resets, power)", TID_MMIO: "trapped register writes",
          TID_IRQ: "MSI-X interrupts", TID_PSP: "PSP commands", TID_SMU: "SMU commands",
          TID_LOG: "firmware log"}


def now_us() -> float:
    """Microseconds on CLOCK_MONOTONIC, the trace's one time axis."""
    return time.monotonic_ns() / 1e3


class _LogToTrace(logging.Handler):
    def __init__(self, rec: TraceRecorder) -> None:
        super().__init__(logging.DEBUG)
        self.rec = rec

    def emit(self, record: logging.LogRecord) -> None:
        ev = getattr(record, "trace", None)
        if ev is not None:
            self.rec.structured(ev, record.created)
        elif record.levelno >= logging.INFO:
            self.rec.log_instant(record)


class TraceRecorder(Observer):
    """Collects the daemon's events in memory and writes the merged trace at :meth:`close`."""

    def __init__(self, path: str | Path, chip: Any, label: str) -> None:
        self.path = Path(path)
        self.pid = os.getpid()
        self.events: list[dict[str, Any]] = []
        self.open_msgs: dict[tuple[int, int, int], str] = {}
        self.channel_names: dict[int, str] = {}
        self.reg_names = _register_names(chip)
        self.label = label
        self.client_dir: Path | None = None
        self._handler = _LogToTrace(self)
        self._logger = logging.getLogger("xdna_emu")
        self._old_level = self._logger.level
        self._lock = threading.Lock()
        self.closed = False

    # -- setup --------------------------------------------------------------------------
    def start(self, client_dir: Path | None) -> None:
        """Listen to the model's log records; offer ``client_dir`` to clients."""
        if client_dir is not None:
            client_dir.mkdir(mode=0o700, exist_ok=True)
            self.client_dir = client_dir
        self._logger.addHandler(self._handler)
        if self._logger.getEffectiveLevel() > logging.DEBUG:
            self._logger.setLevel(logging.DEBUG)

    def _add(self, ev: dict[str, Any]) -> None:
        ev.setdefault("pid", self.pid)
        with self._lock:
            self.events.append(ev)

    # -- observer hooks (docs/spec/device.md §3) -------------------------------------------
    def before_write(self, bar: int, offset: int, value: int) -> Any:
        name = self.reg_names.get((bar, offset), f"bar{bar}+{offset:#x}")
        self._add({"ph": "i", "s": "t", "cat": "mmio", "name": name, "ts": now_us(),
                   "tid": TID_MMIO, "args": {"bar": bar, "offset": f"{offset:#x}",
                                             "value": f"{value:#x}"}})
        return None

    def irq(self, vector: int) -> None:
        self._add({"ph": "i", "s": "t", "cat": "irq", "name": f"MSI-X {vector}", "ts": now_us(),
                   "tid": TID_IRQ, "args": {"vector": vector}})

    # -- log records --------------------------------------------------------------------
    def structured(self, ev: dict[str, Any], created: float) -> None:
        kind, ts = ev.get("kind"), now_us()
        if kind in ("mbox_rx", "mbox_tx"):
            chan, mid, name = ev["chan"], ev["id"], ev["opcode"]
            self.channel_names.setdefault(chan, ev["name"])
            tid = CHANNEL_TID + chan
            cat = "job" if name in _job_opcodes() else "mailbox"
            # ids restart when a channel is reopened (a context re-created after TDR): the
            # channel's opening serial keeps each span's id unique. A "local" id2 scopes the
            # span to the daemon's process: Perfetto files a plain "id" under its global
            # "legacy events" group instead (docs/tracing.md).
            key = (chan, ev.get("serial", 0), mid)
            span = {"cat": cat, "name": name, "id2": {"local": f"{chan}.{key[1]}:{mid:#x}"},
                    "ts": ts, "tid": tid}
            if kind == "mbox_rx":
                self.open_msgs[key] = name
                self._add({**span, "ph": "b", "args": {"channel": ev["name"], "id": f"{mid:#x}"}})
            elif self.open_msgs.pop(key, None) == name:
                self._add({**span, "ph": "e", "args": {"status": ev.get("status")}})
            else:  # a reply with no request seen (traced from mid-flight): an instant
                self._add({**span, "ph": "i", "s": "t", "name": f"{name} reply",
                           "args": {"status": ev.get("status")}})
        elif kind in ("psp", "smu"):
            t0 = ev["t0_ns"] / 1e3
            self._add({"ph": "X", "cat": kind, "name": f"{kind.upper()} {ev['cmd']}", "ts": t0,
                       "dur": max(ts - t0, 0.001), "tid": TID_PSP if kind == "psp" else TID_SMU,
                       "args": {k: v for k, v in ev.items() if k not in ("kind", "t0_ns", "cmd")}})
            if kind == "smu" and "power" in ev:
                self._add({"ph": "C", "cat": "power", "name": "power", "ts": ts,
                           "tid": TID_DEVICE, "args": ev["power"]})
        elif kind == "reset":
            self._add({"ph": "i", "s": "p", "cat": "device", "name": "device reset", "ts": ts,
                       "tid": TID_DEVICE, "args": {"firmware": ev.get("firmware")}})

    def log_instant(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        cat = "tdr" if "hung" in msg or "timed out" in msg or "TDR" in msg else "log"
        self._add({"ph": "i", "s": "t", "cat": cat, "name": msg[:80], "ts": now_us(),
                   "tid": TID_LOG, "args": {"logger": record.name, "level": record.levelname,
                                            "message": msg}})

    # -- output -------------------------------------------------------------------------
    def _metadata(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = [{"ph": "M", "name": "process_name", "pid": self.pid,
                                      "args": {"name": f"xdna-emu daemon {self.label}"}}]
        tracks = dict(TRACKS)
        for chan, name in self.channel_names.items():
            tracks[CHANNEL_TID + chan] = f"mailbox chan {chan} ({name})"
        for tid, name in sorted(tracks.items()):
            out.append({"ph": "M", "name": "thread_name", "pid": self.pid, "tid": tid,
                        "args": {"name": name}})
            out.append({"ph": "M", "name": "thread_sort_index", "pid": self.pid, "tid": tid,
                        "args": {"sort_index": tid}})
        return out

    def _client_events(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if self.client_dir is None:
            return out
        for f in sorted(self.client_dir.glob("client-*.jsonl")):
            try:
                lines = f.read_text().splitlines()
            except OSError:
                continue
            pid = None
            for line in lines:
                try:
                    ev = json.loads(line)
                except ValueError:
                    continue  # a client killed mid-line
                if isinstance(ev, dict) and {"ph", "ts", "pid"} <= set(ev):
                    out.append(ev)
                    pid = ev["pid"]
            if pid is not None:
                out.append({"ph": "M", "name": "process_name", "pid": pid,
                            "args": {"name": f"client pid {pid} (driver shim calls)"}})
        return out

    def close(self) -> None:
        """Stop listening and write the merged trace (atomically)."""
        if self.closed:
            return
        self.closed = True
        self._logger.removeHandler(self._handler)
        self._logger.setLevel(self._old_level)
        with self._lock:
            events = list(self.events)
        events += self._client_events()
        events.sort(key=lambda e: (e.get("ph") != "M", e.get("ts", 0)))
        doc = {"traceEvents": self._metadata() + events, "displayTimeUnit": "ns",
               "otherData": {"generator": "xdna-emu", "device": self.label,
                             "clock": "CLOCK_MONOTONIC, microseconds"}}
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(doc, separators=(",", ":")))
        os.replace(tmp, self.path)


def _job_opcodes() -> frozenset[str]:
    """Names of the opcodes that carry a job (docs/spec/jobs.md): their spans are jobs."""
    global _JOB_OPS
    if _JOB_OPS is None:
        from .fw.ctx import EXEC_OPS

        _JOB_OPS = frozenset(op.name for op in EXEC_OPS)
    return _JOB_OPS


_JOB_OPS: frozenset[str] | None = None


def _register_names(chip: Any) -> dict[tuple[int, int], str]:
    """(bar, offset) -> a readable name: the chip's register roles, mailbox channel regs."""
    from .chips import MailboxLayout

    names: dict[tuple[int, int], str] = {}
    for role in chip.roles:
        r = chip.reg(role)
        names.setdefault((r.bar, r.offset), role)
    lay = chip.mailbox
    if lay is not None:
        for chan in range(lay.channels):
            base = lay.chan_regs(chan)
            for what in ("X2I_TAIL", "X2I_HEAD", "I2X_TAIL", "I2X_HEAD", "INTR"):
                off = getattr(MailboxLayout, what, None)
                if off is not None:
                    names.setdefault(chip.dev_to_bar(base + off), f"chan{chan}.{what.lower()}")
    return names


def attach(daemon: Any, path: str | Path) -> TraceRecorder:
    """Trace ``daemon`` (a :class:`~xdna_emu.daemon.Daemon` not yet running) into ``path``;
    the trace is written when the daemon stops."""
    rec = TraceRecorder(path, daemon.chip, f"{daemon.chip.name} {daemon.bdf}")
    daemon.fn.observe(rec)
    rec.start(Path(daemon.dir) / CLIENT_DIR)
    daemon.stop_hooks.append(rec.close)
    return rec


# -- client side --------------------------------------------------------------------------
_client_lock = threading.Lock()


def client_tracer(socket_path: str | Path) -> Callable[[str, float, float, dict[str, Any]],
                                                       None] | None:
    """A function recording one shim call, if the daemon at ``socket_path`` is tracing
    (its directory holds :data:`CLIENT_DIR`); else None, at the cost of one stat."""
    d = Path(os.fspath(socket_path)).parent / CLIENT_DIR
    if not d.is_dir():
        return None
    pid = os.getpid()
    path = d / f"client-{pid}.jsonl"

    def record(name: str, t0: float, t1: float, args: dict[str, Any]) -> None:
        ev = {"ph": "X", "cat": "shim", "name": name, "ts": t0, "dur": max(t1 - t0, 0.001),
              "pid": pid, "tid": threading.get_native_id(), "args": args}
        line = json.dumps(ev, separators=(",", ":"), default=str) + "\n"
        with _client_lock:
            try:
                with open(path, "a") as f:
                    f.write(line)
            except OSError:
                pass  # the daemon went away with its directory: nothing left to trace into

    return record
