"""A small vocabulary for writing down one firmware family's interface once.

A family table (``aie2.py``; a later family is a sibling file) lists its enums (opcodes,
statuses, PSP/SMU numbers), constants (magic numbers, masks) and packed little-endian
structs (message requests and responses, ring headers, cmd-list slots, reports). From that
one table come the Python codecs (``Struct.codec``, ``Enum.py``), the C header the shim
compiles (``cgen``) and the message tables in docs/spec/messages.md (``docgen``); see
docs/spec/firmware.md "The firmware interface table".

Nothing here imports the rest of the package, so the build script can load it before the
extension exists.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from enum import IntEnum
from functools import cached_property
from typing import Any


@dataclass(frozen=True)
class Scalar:
    """A little-endian unsigned integer type."""

    name: str
    fmt: str  # struct module code
    size: int
    ctype: str


U8 = Scalar("u8", "B", 1, "uint8_t")
U16 = Scalar("u16", "H", 2, "uint16_t")
U32 = Scalar("u32", "I", 4, "uint32_t")
U64 = Scalar("u64", "Q", 8, "uint64_t")


@dataclass(frozen=True)
class Field:
    """One member of a struct: a scalar, a nested struct, or an array of either.

    ``raw`` byte arrays pack as a single ``bytes`` value (``Ns``); other arrays pack as
    ``count`` separate values, so a struct's flat value order is the field order.
    """

    name: str
    type: Scalar | Struct
    count: int = 1
    doc: str = ""
    raw: bool = False
    array: bool = False  # declared as an array in C even when count == 1

    @property
    def size(self) -> int:
        return self.type.size * self.count

    @property
    def fmt(self) -> str:
        if self.raw:
            return f"{self.count}s"
        if isinstance(self.type, Struct):
            return self.type.fmt * self.count
        return f"{self.count}{self.type.fmt}" if self.count > 1 else self.type.fmt

    @property
    def nvalues(self) -> int:
        """How many flat values this field packs into."""
        if self.raw:
            return 1
        inner = self.type.nvalues if isinstance(self.type, Struct) else 1
        return inner * self.count

    @property
    def type_name(self) -> str:
        base = f"struct {self.type.name}" if isinstance(self.type, Struct) else self.type.name
        if self.raw:
            return f"u8[{self.count}]"
        return f"{base}[{self.count}]" if self.count > 1 or self.array else base


def f(name: str, type_: Scalar | Struct, doc: str = "", count: int = 1) -> Field:
    """A field; ``count`` > 1 makes it an array."""
    return Field(name, type_, count, doc, array=count > 1)


def raw(name: str, count: int, doc: str = "") -> Field:
    """An opaque byte array, packed as one ``bytes`` value."""
    return Field(name, U8, count, doc, raw=True, array=True)


@dataclass(frozen=True)
class Struct:
    """A packed little-endian layout. ``codec`` is its ``struct.Struct``; the C header gets a
    packed struct with the same name and a ``_Static_assert`` per size and offset."""

    name: str
    fields: tuple[Field, ...]
    doc: str = ""

    def __post_init__(self) -> None:
        names = [fl.name for fl in self.fields]
        if len(set(names)) != len(names):
            raise ValueError(f"{self.name}: duplicate field names")

    @cached_property
    def fmt(self) -> str:
        return "".join(fl.fmt for fl in self.fields)

    @cached_property
    def codec(self) -> struct.Struct:
        return struct.Struct("<" + self.fmt)

    @property
    def size(self) -> int:
        return self.codec.size

    @property
    def nvalues(self) -> int:
        return sum(fl.nvalues for fl in self.fields)

    @cached_property
    def offsets(self) -> dict[str, int]:
        """Byte offset of each top-level field."""
        out, off = {}, 0
        for fl in self.fields:
            out[fl.name] = off
            off += fl.size
        return out

    def pack(self, **values: Any) -> bytes:
        """Pack by field name; a missing field is zero, an array takes a sequence, a nested
        struct a mapping (or a sequence of mappings for an array of structs)."""
        unknown = set(values) - set(self.offsets)
        if unknown:
            raise KeyError(f"{self.name}: no field {sorted(unknown)}")
        return self.codec.pack(*self._flat(values))

    def _flat(self, values: Mapping[str, Any]) -> list[Any]:
        out: list[Any] = []
        for fl in self.fields:
            v = values.get(fl.name)
            if fl.raw:
                out.append(bytes(v or b"").ljust(fl.count, b"\0"))
            elif isinstance(fl.type, Struct):
                items = [v] if fl.count == 1 and not fl.array else list(v or ())
                items += [{}] * (fl.count - len(items))
                for item in items:
                    out += fl.type._flat(item or {})
            elif fl.count > 1 or fl.array:
                seq = list(v or ())
                out += seq + [0] * (fl.count - len(seq))
            else:
                out.append(v or 0)
        return out

    def unpack(self, buf: bytes | bytearray | memoryview, offset: int = 0) -> dict[str, Any]:
        """The named fields of the struct at ``buf[offset:]`` (arrays as lists, nested
        structs as dicts)."""
        vals = iter(self.codec.unpack_from(buf, offset))
        return self._named(vals)

    def _named(self, vals: Iterator[Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for fl in self.fields:
            if fl.raw:
                out[fl.name] = next(vals)
            elif isinstance(fl.type, Struct):
                items = [fl.type._named(vals) for _ in range(fl.count)]
                out[fl.name] = items if fl.count > 1 or fl.array else items[0]
            elif fl.count > 1 or fl.array:
                out[fl.name] = [next(vals) for _ in range(fl.count)]
            else:
                out[fl.name] = next(vals)
        return out

    def nested(self) -> Iterator[Struct]:
        """Structs this one contains, innermost first."""
        for fl in self.fields:
            if isinstance(fl.type, Struct):
                yield from fl.type.nested()
                yield fl.type


@dataclass(frozen=True)
class Member:
    name: str
    value: int
    doc: str = ""
    emulator: bool = False  # emulator-defined: the driver never sees it


@dataclass(frozen=True)
class Enum:
    """Named numbers. ``py`` is the Python ``IntEnum``; C gets one ``#define`` per member,
    ``XDNA_<FAMILY>_<cname>_<member>``, and a name lookup function."""

    name: str  # Python class name
    cname: str  # C prefix after the family's
    members: tuple[Member, ...]
    doc: str = ""
    module: str = "xdna_emu.fw.messages"  # where the class is importable by name (pickling)

    @cached_property
    def py(self) -> type[IntEnum]:
        cls = IntEnum(self.name, [(m.name, m.value) for m in self.members])  # type: ignore[misc]
        cls.__doc__ = self.doc
        cls.__module__ = self.module
        return cls


def members(*items: tuple[str, int] | tuple[str, int, str] | Member) -> tuple[Member, ...]:
    """``("NAME", value[, doc])`` tuples (or Members) -> Members."""
    return tuple(i if isinstance(i, Member) else Member(*i) for i in items)


def emu(name: str, value: int, doc: str = "") -> Member:
    """An emulator-defined member (docs/spec/firmware.md explains each)."""
    return Member(name, value, doc, emulator=True)


@dataclass(frozen=True)
class Const:
    """A named number: magic, mask, limit. ``emulator`` marks values the driver never sees."""

    name: str
    value: int
    doc: str = ""
    emulator: bool = False
    ctype: Scalar = U32


@dataclass(frozen=True)
class Lookup:
    """A number-to-number table (e.g. an AIE event id to its error category): Python gets
    ``mapping``, C a ``static inline uint32_t xdna_<family>_<name>(uint32_t key, uint32_t
    dflt)`` switch."""

    name: str
    rows: tuple[tuple[int, int], ...]
    doc: str = ""

    def __post_init__(self) -> None:
        keys = [k for k, _ in self.rows]
        if len(set(keys)) != len(keys):
            raise ValueError(f"{self.name}: duplicate keys")

    @property
    def mapping(self) -> dict[int, int]:
        return dict(self.rows)


@dataclass(frozen=True)
class Message:
    """One opcode's request and response layouts and the channel it travels on."""

    op: str  # member name of the family's opcode enum
    req: Struct
    resp: Struct
    channel: str  # "mgmt" or "user"
    doc: str = ""
    #: a mgmt query: its answer reads no request field and depends only on the booted image
    #: and the chip, so the daemon's C path may send the reply Python published for it
    #: (docs/spec/jobs.md §7 "Management queries")
    query: bool = False


@dataclass(frozen=True)
class Family:
    """Everything one firmware family's interface defines."""

    name: str
    doc: str
    opcodes: Enum
    enums: tuple[Enum, ...]
    consts: tuple[Const, ...]
    structs: tuple[Struct, ...]  # layouts that are not a message's request or response
    messages: tuple[Message, ...]
    source: str = ""  # the table's file, named in generated output
    lookups: tuple[Lookup, ...] = ()  # number-to-number tables

    def __post_init__(self) -> None:
        ops = {m.name for m in self.opcodes.members}
        for msg in self.messages:
            if msg.op not in ops:
                raise ValueError(f"{self.name}: message {msg.op} has no opcode")

    @property
    def all_enums(self) -> tuple[Enum, ...]:
        return (self.opcodes, *self.enums)

    def all_structs(self) -> list[Struct]:
        """Every struct once, nested ones before their users, in table order."""
        seen: dict[str, Struct] = {}
        tops: Iterable[Struct] = [*self.structs, *(s for m in self.messages for s in (m.req, m.resp))]
        for top in tops:
            for s in (*top.nested(), top):
                prev = seen.get(s.name)
                if prev is not None and prev != s:
                    raise ValueError(f"{self.name}: two different structs named {s.name}")
                seen.setdefault(s.name, s)
        return list(seen.values())

    def const(self, name: str) -> int:
        for c in self.consts:
            if c.name == name:
                return c.value
        raise KeyError(name)

