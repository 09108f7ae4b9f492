"""The trace language: an op, the text form of its operands, and the ``expect`` forms.

It sits below every op runner (:mod:`.ops` for the device, :mod:`.shim_trace` for the
shim) and below :mod:`.trace`, which parses whole files, so each of them can read and
write operands without importing the others.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from .invariants import ExpectFailed


class TraceError(ValueError):
    """A malformed op or trace line (not a device finding)."""


@dataclass(frozen=True)
class Op:
    """One trace line: a verb and its operands (ints, strings, or bytes for hex data)."""

    verb: str
    args: tuple[Any, ...] = ()


# -- operands ------------------------------------------------------------------------------
def format_operand(v: Any) -> str:
    if isinstance(v, bool):
        return str(int(v))
    if isinstance(v, int):
        return str(v) if -10 < v < 10 else (hex(v) if v > 0 else str(v))
    if isinstance(v, bytes | bytearray | memoryview):
        return bytes(v).hex() or "-"
    text = str(v)
    if not text or any(c.isspace() for c in text) or "#" in text:
        raise TraceError(f"operand {text!r} cannot be written in a trace")
    return text


def format_op(op: Op) -> str:
    return " ".join([op.verb, *(format_operand(a) for a in op.args)])


def int_operand(tok: str) -> int:
    try:
        return int(tok, 0)
    except ValueError:
        raise TraceError(f"expected an integer, got {tok!r}") from None


def bytes_operand(tok: str) -> bytes:
    if tok == "-":
        return b""
    try:
        return bytes.fromhex(tok)
    except ValueError:
        raise TraceError(f"expected hex bytes, got {tok!r}") from None


def typed_operands(spec: str, toks: list[str]) -> tuple[Any, ...]:
    out: list[Any] = []
    for i, tok in enumerate(toks):
        kind = spec[i] if i < len(spec) else ("*" if spec.endswith("*") or not spec else "!")
        if kind == "!":
            raise TraceError(f"too many operands: {' '.join(toks)}")
        out.append(bytes_operand(tok) if kind == "b" else tok if kind == "s" else int_operand(tok))
    return tuple(out)


def status_value(status: Any, path: str) -> Any:
    cur = status
    for part in path.split("."):
        if isinstance(cur, list):
            idx = int_operand(part)
            if not 0 <= idx < len(cur):
                raise ExpectFailed("status", f"{path}: index {idx} out of range ({len(cur)})")
            cur = cur[idx]
        elif isinstance(cur, dict) and part in cur:
            cur = cur[part]
        else:
            raise ExpectFailed("status", f"{path}: no {part!r}")
    return cur


def _same(value: Any, tok: str) -> bool:
    if value is None:
        return tok in ("null", "none", "-")
    if isinstance(value, bool):
        return tok == str(value).lower() or tok == str(int(value))
    if isinstance(value, int):
        try:
            return value == int(tok, 0)
        except ValueError:
            return False
    return str(value) == tok


def check_expect(s: Any, args: tuple[Any, ...]) -> None:
    """Check one ``expect`` line against a device :class:`~.ops.DeviceHarness` ``s``.

    Forms: ``bytes BAR OFF HEX``, ``r32 BAR OFF VALUE``, ``host PASID ADDR HEX``, ``irqs
    V,V|-`` (vectors raised since the last ``irqs`` line), ``status PATH VALUE`` (dotted
    path into ``NpuDevice.status()``)."""
    if not args:
        raise TraceError("expect needs a kind")
    kind, rest = args[0], list(args[1:])
    if kind == "bytes" and len(rest) == 3:
        bar, off, want = int_operand(rest[0]), int_operand(rest[1]), bytes_operand(rest[2])
        mem = s.regs.bytes.get(bar)
        got = bytes(mem[off : off + len(want)]) if mem is not None else b""
        if got != want:
            raise ExpectFailed("bytes", f"bar{bar}+{off:#x}: {got.hex()} != {want.hex()}")
    elif kind == "r32" and len(rest) == 3:
        got = s.v_r32(int_operand(rest[0]), int_operand(rest[1]))
        if got != int_operand(rest[2]):
            raise ExpectFailed("r32", f"bar{rest[0]}+{rest[1]} = {got:#x}, expected {rest[2]}")
    elif kind == "host" and len(rest) == 3:
        pasid, addr, want = int_operand(rest[0]), int_operand(rest[1]), bytes_operand(rest[2])
        space = s.iommu.spaces.get(pasid)
        m = space.find(addr) if space else None
        got = b""
        if m is not None and addr + len(want) <= m.end:
            start = addr - m.address + m.skew  # type: ignore[attr-defined]
            got = bytes(memoryview(m.mem)[start : start + len(want)])
        if got != want:
            raise ExpectFailed("host", f"pasid {pasid} {addr:#x}: {got.hex()} != {want.hex()}")
    elif kind == "irqs" and len(rest) == 1:
        got = s.td.irqs[s.irq_mark:]
        s.irq_mark = len(s.td.irqs)
        want = [] if rest[0] == "-" else [int_operand(v) for v in rest[0].split(",")]
        if got != want:
            raise ExpectFailed("irqs", f"raised {got}, expected {want}")
    elif kind == "status" and len(rest) == 2:
        value = status_value(s.dev.status(), rest[0])
        if not _same(value, rest[1]):
            raise ExpectFailed("status", f"{rest[0]} = {value!r}, expected {rest[1]}")
    else:
        raise TraceError(f"bad expect line: expect {' '.join(map(str, args))}")


def cumulative(weights: dict[str, int]) -> tuple[list[str], list[int]]:
    """(names, cumulative weights) for ``Random.choices``: what it computes from
    ``weights`` on every call, computed once (the same draws)."""
    return list(weights), list(itertools.accumulate(weights.values()))
