"""Chip descriptions as data.

Each NPU generation is one TOML file beside this module. Behaviour code never holds an
offset: it asks a :class:`Chip` for a role (``psp.cmd``) and gets a register with its
absolute device address and its ``(bar, offset)``. :meth:`Chip.dev_to_bar` is the one
place where device addresses become BAR offsets, as ``DEFINE_BAR_OFFSET`` is in the driver.

Loading is strict: :func:`load_chip` builds the chip and runs :func:`validate_chip`, so a
chip file with overlapping registers, a mailbox block outside its BAR or a missing
provenance line fails loudly at load time instead of misbehaving later.
"""

from __future__ import annotations

import re
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
#: Roles every AIE4 chip must resolve: AIE4 has no PWAITMODE and no SRAM offsets (its
#: mailbox_info sits at a fixed offset of the ring-buffer BAR).
AIE4_ROLES = (
    "psp.cmd", "psp.status", "psp.arg0", "psp.resp", "psp.arg1", "psp.arg2", "psp.intr",
    "smu.cmd", "smu.arg", "smu.out", "smu.resp", "smu.intr",
)  # fmt: skip
FAMILY_ROLES = {"aie2": AIE2_ROLES, "aie4": AIE4_ROLES}
#: Families that must describe an SRAM mailbox (management channel found via FW_ALIVE).
MAILBOX_FAMILIES = ("aie2",)
ACCESS_KINDS = ("rw", "ro", "trap")

#: Firmware-gated messages/features known to the driver's optional tables. A gate listed
#: here but absent from a chip's [features] is *not offered* on that chip (the driver's
#: optional-message lookup fails closed); names outside this set are mandatory messages.
OPTIONAL_FEATURES = (
    "NPU_COMMAND", "PREEMPT", "CHAIN_EXEC_NPU", "UPDATE_PROPERTY", "GET_APP_HEALTH",
    "CONFIG_FW_LOG", "START_FW_TRACE", "STOP_FW_TRACE", "SET_FW_TRACE_CATEGORIES",
    "GET_COREDUMP", "CALIBRATE_TIME", "GET_DEV_REVISION", "AIE_RW_ACCESS",
)  # fmt: skip

REG_SIZE = 4
MIN_BAR_SIZE = 0x1000
MSIX_ENTRY_SIZE = 16
MGMT_INFO_SIZE = 64  # mgmt_mbox_chann_info is 16 u32 words
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")


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
    bar: int  # -1 only on an unvalidated chip whose register lies in no BAR
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
    slots_base: int = 0  # device address of slot 0 (= the sram.mbox_chann register on AIE2)

    # Register order inside one channel's block. intr must be i2x_head + 4 (driver fact).
    X2I_TAIL = 0x0
    X2I_HEAD = 0x4
    I2X_TAIL = 0x8
    I2X_HEAD = 0xC
    INTR = 0x10
    REGS_SPAN = 0x14  # bytes one channel's registers occupy

    def chan_regs(self, chan: int) -> int:
        """Device address of channel ``chan``'s register block."""
        return self.regs_base + chan * self.regs_stride

    def free_slots(self) -> list[int]:
        return [s for s in range(self.slots) if s not in self.reserved_slots]

    def slot_addr(self, slot: int) -> int:
        """Device address of SRAM slot ``slot`` (x2i ring first, i2x ring at +ring_size)."""
        return self.slots_base + slot * self.slot_size


@dataclass(frozen=True)
class MsixLayout:
    bar: int
    table_offset: int
    pba_offset: int
    vectors: int

    @property
    def table_size(self) -> int:
        return self.vectors * MSIX_ENTRY_SIZE

    @property
    def pba_size(self) -> int:
        """One pending bit per vector, in whole QWORDs (PCI spec)."""
        return (self.vectors + 63) // 64 * 8


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
    dpm_tops: str = ""  # the driver's TOPS formula for this chip, as text (documentation)

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
        """True when firmware speaking ``protocol`` offers ``feature`` (driver gate order).

        A gate from :data:`OPTIONAL_FEATURES` that this chip does not list is never offered
        (the driver's table lookup fails closed); any other name is a mandatory message.
        """
        need = self.features.get(feature)
        if need is None:
            return feature not in OPTIONAL_FEATURES
        return protocol >= need

    @property
    def pci_id(self) -> tuple[int, int]:
        return self.pci.device, self.pci.revision


# -- loading ----------------------------------------------------------------------------
def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, val in over.items():
        if isinstance(val, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], val)
        else:
            out[key] = val
    return out


def _raw(name: str, chip_dir: Path = CHIP_DIR, seen: tuple[str, ...] = ()) -> dict[str, Any]:
    """Read one chip file and merge its ``inherits`` chain (child keys win)."""
    if name in seen:
        raise ChipError(f"inheritance cycle: {' -> '.join((*seen, name))}")
    if not _NAME_RE.match(name):
        raise ChipError(f"bad chip name {name!r}")
    path = chip_dir / f"{name}.toml"
    if not path.is_file():
        raise ChipError(f"unknown chip {name!r} (known: {', '.join(chip_names(chip_dir))})")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ChipError(f"{path.name}: {exc}") from None
    parent = data.get("inherits")
    if parent:
        if not isinstance(parent, str):
            raise ChipError(f"{path.name}: inherits must be a chip name")
        data = _merge(_raw(parent, chip_dir, (*seen, name)), data)
        data["inherits"] = parent
    if data.get("name") != name:
        raise ChipError(f"{path.name}: name = {data.get('name')!r} does not match the file name")
    return data


def _version(text: str) -> tuple[int, int]:
    major, minor = str(text).split(".")[:2]
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


def _plain(table: dict[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (table or {}).items() if k != "provenance"}


def _build(data: dict[str, Any]) -> Chip:
    """Turn merged TOML data into a :class:`Chip`; structure only, no consistency checks."""
    name = data.get("name", "?")
    try:
        apertures = {k: int(v["base"]) for k, v in data["apertures"].items()}
        bars: dict[int, Bar] = {}
        for idx, b in data["bars"].items():
            ap = b["aperture"]
            if ap not in apertures:
                raise ChipError(f"{name}: BAR{idx} names unknown aperture {ap!r}")
            bars[int(idx)] = Bar(
                int(idx), ap, apertures[ap], int(b["size"]), int(b.get("bits", 64))
            )
        pci = data["pci"]
        chip = Chip(
            name=name, family=data["family"], vbnv=data["vbnv"], fw_path=data["fw_path"],
            pci=PciIdentity(
                pci["vendor"], pci["device"], pci["revision"],
                pci["class"], pci["subsystem_vendor"], pci["subsystem_device"],
            ),
            apertures=apertures, bars=bars, registers={}, roles={}, mailbox=None,
            msix=MsixLayout(**_plain(data["msix"])),
            limits=_plain(data.get("limits")),
            protocol_major=data["protocol"]["major"],
            protocol_min_minor=data["protocol"]["min_minor"],
            features={k: _version(v) for k, v in _plain(data.get("features")).items()},
            firmware=_plain(data.get("firmware")),
            tiles=_plain(data.get("tiles")),
            dpm_levels=tuple(tuple(lv) for lv in data.get("dpm", {}).get("levels", [])),
            runtime_config=_plain(data.get("runtime_config")),
            smu=_plain(data.get("smu")),
            dpm_tops=str(data.get("dpm", {}).get("tops", "")),
            inherits=data.get("inherits"),
            provenance=_prov(data),
        )  # fmt: skip
        registers: dict[str, Register] = {}
        for rname, r in data.get("registers", {}).items():
            addr = int(r["addr"])
            try:
                bar, off = chip.dev_to_bar(addr)
            except ChipError:
                bar, off = -1, addr  # reported by validate_chip with the register's name
            registers[rname] = Register(rname, addr, r.get("access", "rw"), bar, off)
        roles = {str(k): str(v) for k, v in _plain(data.get("roles")).items()}
        mailbox = None
        if mbox := data.get("mailbox"):
            slots_base = mbox.get("slots_base")
            if slots_base is None:
                target = registers.get(roles.get("sram.mbox_chann", ""))
                slots_base = target.addr if target else 0
            mailbox = MailboxLayout(
                regs_base=mbox["regs_base"], regs_stride=mbox["regs_stride"],
                channels=mbox["channels"], slot_size=mbox["slot_size"],
                ring_size=mbox["ring_size"], slots=mbox["slots"],
                reserved_slots=tuple(mbox.get("reserved_slots", ())), mgmt_info=mbox["mgmt_info"],
                slots_base=int(slots_base),
            )  # fmt: skip
    except ChipError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ChipError(f"{name}: malformed chip file: {exc!r}") from None
    return Chip(**{**chip.__dict__, "registers": registers, "roles": roles, "mailbox": mailbox})


# -- validation ---------------------------------------------------------------------------
def _pow2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def _overlap(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] < b[0] + b[1] and b[0] < a[0] + a[1]


def _check_bars(chip: Chip, err: list[str]) -> None:
    for idx, bar in sorted(chip.bars.items()):
        if not 0 <= idx <= 5:
            err.append(f"BAR{idx}: index must be 0..5")
        if bar.bits not in (32, 64):
            err.append(f"BAR{idx}: bits must be 32 or 64, not {bar.bits}")
        if not _pow2(bar.size) or bar.size < MIN_BAR_SIZE:
            err.append(f"BAR{idx}: size {bar.size:#x} must be a power of two >= {MIN_BAR_SIZE:#x}")
        # A 64-bit BAR n also occupies BAR register n+1 (PCI spec).
        if bar.bits == 64 and (idx == 5 or idx + 1 in chip.bars):
            err.append(f"BAR{idx}: 64-bit BAR takes slot {idx + 1}, which is in use or absent")
    spans = sorted((b.base, b.size, i) for i, b in chip.bars.items())
    for (b0, s0, i0), (b1, _, i1) in zip(spans, spans[1:], strict=False):
        if b0 + s0 > b1:
            err.append(f"BAR{i0} and BAR{i1} overlap in device address space")


def _check_registers(chip: Chip, err: list[str]) -> None:
    by_addr: dict[int, str] = {}
    for r in chip.registers.values():
        if r.access not in ACCESS_KINDS:
            err.append(f"register {r.name}: unknown access {r.access!r}")
        if r.addr % REG_SIZE:
            err.append(f"register {r.name} at {r.addr:#x} is not 4-byte aligned")
        elif r.bar < 0:
            err.append(f"register {r.name} at {r.addr:#x} lies in no BAR")
        if r.addr in by_addr:  # registers are 4-byte words, so overlap == same address
            err.append(f"registers {by_addr[r.addr]} and {r.name} overlap at {r.addr:#x}")
        by_addr.setdefault(r.addr, r.name)
    # An unaligned address can still overlap a neighbour: check exact byte ranges too.
    spans = sorted((r.addr, r.name) for r in chip.registers.values())
    for (a0, n0), (a1, n1) in zip(spans, spans[1:], strict=False):
        if a0 != a1 and a0 + REG_SIZE > a1:
            err.append(f"registers {n0} and {n1} overlap at {a1:#x}")


def _check_roles(chip: Chip, err: list[str]) -> None:
    need = FAMILY_ROLES.get(chip.family)
    if need is None:
        err.append(f"unknown family {chip.family!r} (known: {', '.join(FAMILY_ROLES)})")
        need = ()
    for role in need:
        if role not in chip.roles:
            err.append(f"role {role} ({chip.family}) is not defined")
    for role, rname in chip.roles.items():
        if rname not in chip.registers:
            err.append(f"role {role} names unknown register {rname}")


def _region(chip: Chip, what: str, addr: int, size: int, err: list[str]) -> tuple | None:
    """(bar, offset, size, what) of a device-address block, or None (error noted)."""
    try:
        bar, off = chip.dev_to_bar(addr, size)
    except ChipError:
        err.append(f"{what} [{addr:#x}, +{size:#x}) does not lie inside one BAR")
        return None
    return bar, off, size, what


def _check_layout(chip: Chip, err: list[str]) -> None:
    regions: list[tuple[int, int, int, str]] = []
    hwctx = chip.limits.get("hwctx_limit")
    if not isinstance(hwctx, int) or hwctx < 1:
        err.append("limits.hwctx_limit must be a positive integer")
        hwctx = 0

    msix = chip.msix
    if msix.bar not in chip.bars:
        err.append(f"MSI-X BAR{msix.bar} is not a BAR of this chip")
    else:
        if msix.vectors < 1 + hwctx or msix.vectors > 2048:
            err.append(
                f"MSI-X vectors {msix.vectors} must be >= 1 + hwctx_limit ({1 + hwctx}) and <= 2048"
            )
        size = chip.bars[msix.bar].size
        for what, off, sz in (("MSI-X table", msix.table_offset, msix.table_size),
                              ("MSI-X PBA", msix.pba_offset, msix.pba_size)):  # fmt: skip
            if off % 8:
                err.append(f"{what} offset {off:#x} is not 8-byte aligned")
            if off < 0 or off + sz > size:
                err.append(f"{what} [{off:#x}, +{sz:#x}) lies outside BAR{msix.bar}")
            else:
                regions.append((msix.bar, off, sz, what))

    mb = chip.mailbox
    sram_roles: dict[str, str] = {}
    if mb is None:
        if chip.family in MAILBOX_FAMILIES:
            err.append(f"family {chip.family} needs a [mailbox] table")
    else:
        if mb.regs_stride < MailboxLayout.REGS_SPAN or mb.regs_stride % 4 or mb.regs_base % 4:
            err.append(f"mailbox regs base/stride {mb.regs_base:#x}/{mb.regs_stride:#x}: "
                       f"4-byte aligned, stride >= {MailboxLayout.REGS_SPAN:#x}")  # fmt: skip
        if mb.channels < 1 + hwctx:
            err.append(f"mailbox channels {mb.channels} < 1 + hwctx_limit ({1 + hwctx})")
        if not _pow2(mb.ring_size):
            err.append(f"mailbox ring_size {mb.ring_size:#x} is not a power of two")
        if mb.ring_size * 2 > mb.slot_size:
            err.append(f"mailbox ring_size*2 {mb.ring_size * 2:#x} > slot_size {mb.slot_size:#x}")
        if mb.slot_size % 4 or mb.slots_base % 4:
            err.append("mailbox slot_size and slots_base must be 4-byte aligned")
        bad = [s for s in mb.reserved_slots if not 0 <= s < mb.slots]
        if bad:
            err.append(f"mailbox reserved slots {bad} out of range 0..{mb.slots - 1}")
        if len(mb.free_slots()) < mb.channels:
            err.append(f"mailbox has {len(mb.free_slots())} free slots for {mb.channels} channels")
        for what, addr, size in (
            ("mailbox register block", mb.regs_base, mb.channels * mb.regs_stride),
            ("mailbox SRAM slots", mb.slots_base, mb.slots * mb.slot_size),
        ):
            if (reg := _region(chip, what, addr, size, err)) is not None:
                regions.append(reg)
        # SRAM-offset registers live inside the slot area by design: slot 0 starts at
        # MBOX_CHANN_OFF and FW_ALIVE sits in a reserved slot. Anything else may not.
        sram_roles = {
            chip.roles[r]: r for r in ("sram.mbox_chann", "sram.fw_alive") if r in chip.roles
        }
        chann = chip.registers.get(chip.roles.get("sram.mbox_chann", ""))
        if chann is not None and chann.addr != mb.slots_base:
            err.append(f"mailbox slots_base {mb.slots_base:#x} != sram.mbox_chann {chann.addr:#x}")

        def reserved_slot_of(addr: int, size: int) -> int | None:
            slot, rest = divmod(addr - mb.slots_base, mb.slot_size)
            ok = addr >= mb.slots_base and slot in mb.reserved_slots and rest + size <= mb.slot_size
            return slot if ok else None

        alive = chip.registers.get(chip.roles.get("sram.fw_alive", ""))
        if alive and reserved_slot_of(alive.addr, REG_SIZE) is None:
            err.append(f"sram.fw_alive {alive.addr:#x} is not inside a reserved mailbox slot")
        if mb.mgmt_info % 4 or reserved_slot_of(mb.mgmt_info, MGMT_INFO_SIZE) is None:
            err.append(f"mailbox mgmt_info {mb.mgmt_info:#x} (+{MGMT_INFO_SIZE}) must be 4-byte "
                       "aligned and inside a reserved slot")  # fmt: skip
        for r in chip.registers.values():
            if _overlap((mb.mgmt_info, MGMT_INFO_SIZE), (r.addr, REG_SIZE)):
                err.append(f"mailbox mgmt_info overlaps register {r.name}")

    for i, a in enumerate(regions):
        for b in regions[i + 1 :]:
            if a[0] == b[0] and _overlap(a[1:3], b[1:3]):
                err.append(f"{a[3]} and {b[3]} overlap in BAR{a[0]}")
        for r in chip.registers.values():
            if r.bar != a[0] or not _overlap(a[1:3], (r.offset, REG_SIZE)):
                continue
            if a[3] == "mailbox SRAM slots" and r.name in sram_roles:
                continue
            err.append(f"{a[3]} overlaps register {r.name}")


def _check_misc(chip: Chip, err: list[str]) -> None:
    p = chip.pci
    if p.vendor != 0x1022:
        err.append(f"PCI vendor {p.vendor:#x} is not AMD (0x1022)")
    if p.class_code >> 8 != 0x1180:
        err.append(f"PCI class {p.class_code:#x} is not 0x1180xx (the driver binds that class)")
    if not (0 <= p.device <= 0xFFFF and 0 <= p.revision <= 0xFF):
        err.append("PCI device/revision out of range")
    for feat in chip.features:
        if feat not in OPTIONAL_FEATURES:
            err.append(f"unknown feature gate {feat!r} (add it to OPTIONAL_FEATURES)")
    if "protocol" in chip.firmware:
        try:
            ver = _version(chip.firmware["protocol"])
        except (ValueError, TypeError):
            err.append(f"firmware.protocol {chip.firmware['protocol']!r} is not 'M.m'")
        else:
            if ver[0] != chip.protocol_major or ver[1] < chip.protocol_min_minor:
                err.append(f"firmware.protocol {ver} fails the driver check "
                           f"{chip.protocol_major}.{chip.protocol_min_minor}+")  # fmt: skip
    for lv in chip.dpm_levels:
        if len(lv) != 2 or not all(isinstance(x, int) and x > 0 for x in lv):
            err.append(f"dpm level {lv} is not [npuclk, hclk] in MHz")


def _check_provenance(chip: Chip, err: list[str]) -> None:
    need = ["chip", "pci", "msix", "protocol", "limits"]
    need += [f"apertures.{k}" for k in chip.apertures]
    need += [f"bars.{i}" for i in chip.bars]
    need += [f"registers.{r}" for r in chip.registers]
    optional = {
        "roles": chip.roles, "mailbox": chip.mailbox, "features": chip.features,
        "firmware": chip.firmware, "tiles": chip.tiles, "dpm": chip.dpm_levels,
        "runtime_config": chip.runtime_config, "smu": chip.smu,
    }  # fmt: skip
    need += [k for k, v in optional.items() if v]
    for key in need:
        prov = chip.provenance.get(key)
        if not isinstance(prov, str) or not prov.strip():
            err.append(f"table {key} has no provenance string")


def validate_chip(chip: Chip) -> None:
    """Raise ChipError listing every inconsistency in ``chip`` (None when it is sound)."""
    err: list[str] = []
    for check in (_check_bars, _check_registers, _check_roles, _check_layout, _check_misc,
                  _check_provenance):  # fmt: skip
        check(chip, err)
    if err:
        raise ChipError(f"{chip.name}: " + "; ".join(err))


def chip_from_dict(data: dict[str, Any]) -> Chip:
    """Build and validate a chip from already-merged data (tests, generated chips)."""
    chip = _build(data)
    validate_chip(chip)
    return chip


@cache
def load_chip(name: str, chip_dir: Path | None = None) -> Chip:
    """Load, inherit, resolve and validate one chip file by name (``npu4``)."""
    return chip_from_dict(_raw(name, chip_dir or CHIP_DIR))


def chip_names(chip_dir: Path | None = None) -> list[str]:
    return sorted(p.stem for p in (chip_dir or CHIP_DIR).glob("*.toml"))


@cache
def chip_ids(chip_dir: Path | None = None) -> dict[tuple[int, int], str]:
    """The id table: ``(device, revision)`` -> chip name, as the driver matches it."""
    table: dict[tuple[int, int], str] = {}
    for name in chip_names(chip_dir):
        chip = load_chip(name, chip_dir)
        if chip.pci_id in table:
            raise ChipError(f"{name}: PCI id {chip.pci_id[0]:04x}:{chip.pci_id[1]:02x} "
                            f"already used by {table[chip.pci_id]}")  # fmt: skip
        table[chip.pci_id] = name
    return table


def chip_for_id(device: int, revision: int) -> Chip | None:
    name = chip_ids().get((device, revision))
    return load_chip(name) if name else None
