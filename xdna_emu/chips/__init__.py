"""Chip descriptions as data.

Each NPU generation is one TOML file beside this module. Behaviour code never holds an
offset: it asks a :class:`Chip` for a role (``psp.cmd``) and gets a register with its
absolute device address and its ``(bar, offset)``. :meth:`Chip.dev_to_bar` is the one
place where device addresses become BAR offsets, as ``DEFINE_BAR_OFFSET`` is in the driver.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

CHIP_DIR = Path(__file__).resolve().parent

#: Roles every AIE2 chip must resolve (the driver's PSP/SMU/SRAM register enums).
AIE2_ROLES = (
    "psp.cmd", "psp.status", "psp.arg0", "psp.resp", "psp.arg1", "psp.arg2", "psp.intr",
    "psp.pwaitmode", "smu.cmd", "smu.arg", "smu.out", "smu.resp", "smu.intr",
    "sram.mbox_chann", "sram.fw_alive",
)  # fmt: skip
ACCESS_KINDS = ("rw", "ro", "trap")


class ChipError(ValueError):
    """A chip file is missing, malformed or inconsistent."""


@dataclass(frozen=True)
class PciIdentity:
    vendor: int
    device: int
    revision: int
    class_code: int
    subsystem_vendor: int
    subsystem_device: int


@dataclass(frozen=True)
class Bar:
    index: int
    aperture: str
    base: int  # device address of BAR offset 0
    size: int
    bits: int  # 32 or 64


@dataclass(frozen=True)
class Register:
    name: str
    addr: int
    access: str
    bar: int
    offset: int


@dataclass(frozen=True)
class MailboxLayout:
    """Where channel registers and SRAM ring slots live (the emulated firmware's layout)."""

    regs_base: int
    regs_stride: int
    channels: int
    slot_size: int
    ring_size: int
    slots: int
    reserved_slots: tuple[int, ...]
    mgmt_info: int

    # Register order inside one channel's block. intr must be i2x_head + 4 (driver fact).
    X2I_TAIL = 0x0
    X2I_HEAD = 0x4
    I2X_TAIL = 0x8
    I2X_HEAD = 0xC
    INTR = 0x10

    def chan_regs(self, chan: int) -> int:
        """Device address of channel ``chan``'s register block."""
        return self.regs_base + chan * self.regs_stride

    def free_slots(self) -> list[int]:
        return [s for s in range(self.slots) if s not in self.reserved_slots]


@dataclass(frozen=True)
class MsixLayout:
    bar: int
    table_offset: int
    pba_offset: int
    vectors: int


@dataclass(frozen=True)
class Chip:
    name: str
    family: str
    vbnv: str
    fw_path: str
    pci: PciIdentity
    apertures: dict[str, int]
    bars: dict[int, Bar]
    registers: dict[str, Register]
    roles: dict[str, str]
    mailbox: MailboxLayout | None
    msix: MsixLayout
    limits: dict[str, Any]
    protocol_major: int
    protocol_min_minor: int
    features: dict[str, tuple[int, int]]
    firmware: dict[str, Any]
    tiles: dict[str, int]
    dpm_levels: tuple[tuple[int, int], ...]
    runtime_config: dict[str, Any]
    smu: dict[str, Any] = field(default_factory=dict)
    inherits: str | None = None
    provenance: dict[str, str] = field(default_factory=dict)

    # -- address conversion: the only place device addresses become BAR offsets --------
    def dev_to_bar(self, addr: int, size: int = 4) -> tuple[int, int]:
        """Map a device address to ``(bar, offset)``; raise ChipError when no BAR holds it."""
        for bar in self.bars.values():
            if bar.base <= addr and addr + size <= bar.base + bar.size:
                return bar.index, addr - bar.base
        raise ChipError(f"{self.name}: device address {addr:#x} is in no BAR")

    def bar_to_dev(self, bar: int, offset: int) -> int:
        return self.bars[bar].base + offset

    def reg(self, role: str) -> Register:
        try:
            return self.registers[self.roles[role]]
        except KeyError:
            raise ChipError(f"{self.name}: role {role!r} is not defined") from None

    def has_feature(self, feature: str, protocol: tuple[int, int]) -> bool:
        """True when firmware speaking ``protocol`` offers ``feature`` (driver gate order)."""
        need = self.features.get(feature)
        return need is None or protocol >= need

    @property
    def pci_id(self) -> tuple[int, int]:
        return self.pci.device, self.pci.revision


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, val in over.items():
        if isinstance(val, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], val)
        else:
            out[key] = val
    return out


def _raw(name: str, seen: tuple[str, ...] = ()) -> dict[str, Any]:
    if name in seen:
        raise ChipError(f"inheritance cycle: {' -> '.join((*seen, name))}")
    path = CHIP_DIR / f"{name}.toml"
    if not path.is_file():
        raise ChipError(f"unknown chip {name!r} (known: {', '.join(chip_names())})")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ChipError(f"{path.name}: {exc}") from None
    parent = data.get("inherits")
    if parent:
        data = _merge(_raw(parent, (*seen, name)), data)
        data["inherits"] = parent
    return data


def _version(text: str) -> tuple[int, int]:
    major, minor = text.split(".")[:2]
    return int(major), int(minor)


def _prov(data: dict[str, Any]) -> dict[str, str]:
    out = {"chip": data.get("provenance", "")}
    for key, val in data.items():
        if isinstance(val, dict):
            if "provenance" in val:
                out[key] = val["provenance"]
            for sub, sval in val.items():
                if isinstance(sval, dict) and "provenance" in sval:
                    out[f"{key}.{sub}"] = sval["provenance"]
    return out


def _build(data: dict[str, Any]) -> Chip:
    try:
        name = data["name"]
        apertures = {k: int(v["base"]) for k, v in data["apertures"].items()}
        bars: dict[int, Bar] = {}
        for idx, b in data["bars"].items():
            ap = b["aperture"]
            if ap not in apertures:
                raise ChipError(f"{name}: BAR{idx} names unknown aperture {ap!r}")
            bars[int(idx)] = Bar(int(idx), ap, apertures[ap], int(b["size"]), int(b.get("bits", 64)))
        chip_stub = Chip(
            name=name, family=data["family"], vbnv=data["vbnv"], fw_path=data["fw_path"],
            pci=PciIdentity(
                data["pci"]["vendor"], data["pci"]["device"], data["pci"]["revision"],
                data["pci"]["class"], data["pci"]["subsystem_vendor"], data["pci"]["subsystem_device"],
            ),
            apertures=apertures, bars=bars, registers={}, roles={}, mailbox=None,
            msix=MsixLayout(**{k: v for k, v in data["msix"].items() if k != "provenance"}),
            limits={k: v for k, v in data.get("limits", {}).items() if k != "provenance"},
            protocol_major=data["protocol"]["major"],
            protocol_min_minor=data["protocol"]["min_minor"],
            features={k: _version(v) for k, v in data.get("features", {}).items() if k != "provenance"},
            firmware={k: v for k, v in data.get("firmware", {}).items() if k != "provenance"},
            tiles={k: v for k, v in data.get("tiles", {}).items() if k != "provenance"},
            dpm_levels=tuple(tuple(lv) for lv in data.get("dpm", {}).get("levels", [])),
            runtime_config={k: v for k, v in data.get("runtime_config", {}).items() if k != "provenance"},
            smu={k: v for k, v in data.get("smu", {}).items() if k != "provenance"},
            inherits=data.get("inherits"),
            provenance=_prov(data),
        )  # fmt: skip
        registers: dict[str, Register] = {}
        for rname, r in data.get("registers", {}).items():
            access = r.get("access", "rw")
            if access not in ACCESS_KINDS:
                raise ChipError(f"{name}: register {rname} has unknown access {access!r}")
            bar, off = chip_stub.dev_to_bar(int(r["addr"]))
            registers[rname] = Register(rname, int(r["addr"]), access, bar, off)
        roles = dict(data.get("roles", {}))
        for role, rname in roles.items():
            if rname not in registers:
                raise ChipError(f"{name}: role {role} names unknown register {rname}")
        mbox = data.get("mailbox")
        mailbox = None
        if mbox:
            mailbox = MailboxLayout(
                regs_base=mbox["regs_base"], regs_stride=mbox["regs_stride"],
                channels=mbox["channels"], slot_size=mbox["slot_size"],
                ring_size=mbox["ring_size"], slots=mbox["slots"],
                reserved_slots=tuple(mbox.get("reserved_slots", ())), mgmt_info=mbox["mgmt_info"],
            )  # fmt: skip
    except ChipError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise ChipError(f"{data.get('name', '?')}: malformed chip file: {exc!r}") from None
    return Chip(**{**chip_stub.__dict__, "registers": registers, "roles": roles, "mailbox": mailbox})


@cache
def load_chip(name: str) -> Chip:
    """Load, inherit and resolve one chip file by name (``npu4``)."""
    return _build(_raw(name))


def chip_names() -> list[str]:
    return sorted(p.stem for p in CHIP_DIR.glob("*.toml"))


@cache
def chip_ids() -> dict[tuple[int, int], str]:
    """The id table: ``(device, revision)`` -> chip name, as the driver matches it."""
    table: dict[tuple[int, int], str] = {}
    for name in chip_names():
        chip = load_chip(name)
        if chip.pci_id in table:
            raise ChipError(f"{name}: PCI id {chip.pci_id} already used by {table[chip.pci_id]}")
        table[chip.pci_id] = name
    return table


def chip_for_id(device: int, revision: int) -> Chip | None:
    name = chip_ids().get((device, revision))
    return load_chip(name) if name else None
