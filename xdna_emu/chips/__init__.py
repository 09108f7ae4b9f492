"""Chip descriptions as data.

Each NPU generation is one TOML file beside this module. Behaviour code never holds an
offset: it asks a :class:`Chip` for a role (``psp.cmd``) and gets a register with its
absolute device address and its ``(bar, offset)``. :meth:`Chip.dev_to_bar` is the one
place where device addresses become BAR offsets, as ``DEFINE_BAR_OFFSET`` is in the driver.

Loading is strict: :func:`load_chip` builds the chip and runs :func:`validate_chip`, so a
chip file with overlapping registers, a mailbox block outside its BAR or a missing
provenance line fails loudly at load time instead of misbehaving later. Every table is a
frozen dataclass with typed fields: an unknown key, a missing one or a value of the wrong
type is an error naming the file, the table and the key, never a silent default.
"""

from __future__ import annotations

import re
import tomllib
import types
import typing
from dataclasses import MISSING, asdict, dataclass, field, fields
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
#: Families whose firmware the device model runs (xdna_emu/fw); chips of other families are
#: known by identity only (docs/spec/chips.md): the shim probes them to EOPNOTSUPP.
EMULATED_FAMILIES = ("aie2", "aie4")
#: Families that must describe an SRAM mailbox (management channel found via FW_ALIVE).
MAILBOX_FAMILIES = ("aie2",)
ACCESS_KINDS = ("rw", "ro", "trap")
#: PCI function kinds: a plain function, an SR-IOV physical function, a virtual function.
FUNCTION_KINDS = ("plain", "pf", "vf")

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
    function: str = "plain"  # one of FUNCTION_KINDS (the driver's device_type by id)
    total_vfs: int = 0  # a PF's SR-IOV TotalVFs (docs/spec/aie4.md §10); 0 elsewhere


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
class Limits:
    """[limits]: how many contexts the driver allows and where their columns start."""

    hwctx_limit: int
    first_col: int
    ctx_limit: int | None = None  # contexts per device the driver allows (npu4 family)
    temporal_only: bool = False  # contexts share columns in time (npu4 family)
    dev_heap_max: int = 64 << 20  # a client's DEV heap may grow to this (64 MiB chunks)


@dataclass(frozen=True)
class FirmwareDefaults:
    """[firmware]: what the emulated firmware reports (defaults of ``xdna-emu mkfw``)."""

    version: str
    protocol: str
    dev_revision: int = 0  # GET_DEV_REVISION answer
    raw_fuse: int | None = None  # fuse bits behind dev_revision (None: dev_revision itself)
    aie_version: tuple[int, int] = (0, 0)  # QUERY_AIE_VERSION answer (major, minor)
    cert_version: str = ""  # AIE4 cert firmware version M.m.hotfix.build (cert.dev.sbin)


@dataclass(frozen=True)
class Tiles:
    """[tiles]: the AIE array, in the field order of the QUERY_AIE_TILE_INFO response."""

    cols: int
    rows: int
    core_rows: int
    mem_rows: int
    shim_rows: int
    core_row_start: int
    mem_row_start: int
    shim_row_start: int
    core_dma_channels: int
    mem_dma_channels: int
    shim_dma_channels: int
    core_locks: int
    mem_locks: int
    shim_locks: int
    core_events: int
    mem_events: int
    shim_events: int


@dataclass(frozen=True)
class RuntimeConfig:
    """[runtime_config]: the SET_RUNTIME_CONFIG types the firmware knows and the driver's
    init sequence (type, value) and clock-gating types."""

    init: tuple[tuple[int, int], ...]
    clock_gating: tuple[int, ...]
    types: tuple[int, ...]
    fine_preempt: int | None = None  # the fine-grained preemption type, when there is one
    frame_boundary_preempt: int | None = None  # the frame-boundary preemption type, if any


@dataclass(frozen=True)
class Aie4Layout:
    """[aie4]: where the AIE4 firmware puts mailbox_info, its management channel and the
    doorbells, what it partitions, and where the cert image is (docs/spec/aie4.md §2)."""

    cert_path: str  # amdnpu/<dev>_<rev>/cert.dev.sbin beside the npu image
    mbox_info: int  # device address of mailbox_info (ring-buffer BAR offset 0, driver fact)
    mgmt_regs: int  # device address of the mgmt channel's x2i tail, x2i head, i2x tail, i2x head
    x2i_ring: int  # device address of the host-to-firmware ring
    i2x_ring: int  # device address of the firmware-to-host ring
    ring_size: int
    doorbells: int  # device address of context 0's doorbell page
    doorbell_stride: int  # one page per context, so each can be mapped alone
    partition_col_start: int  # CREATE_PARTITION columns the driver asks for
    partition_col_count: int

    # Register order of the mgmt channel block (no interrupt register on AIE4).
    X2I_TAIL = 0x0
    X2I_HEAD = 0x4
    I2X_TAIL = 0x8
    I2X_HEAD = 0xC
    REGS_SPAN = 0x10

    def doorbell(self, ctx: int) -> int:
        """Device address of context slot ``ctx``'s doorbell."""
        return self.doorbells + ctx * self.doorbell_stride


#: How the driver sets a DPM level: SMU clock commands in MHz, or hard/soft level commands.
DPM_METHODS = ("clock", "level")


@dataclass(frozen=True)
class SmuInfo:
    """[smu]: how the driver talks to this chip's SMU."""

    dpm_method: str  # one of DPM_METHODS


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
    limits: Limits
    protocol_major: int
    protocol_min_minor: int
    features: dict[str, tuple[int, int]]
    firmware: FirmwareDefaults
    tiles: Tiles | None
    dpm_levels: tuple[tuple[int, int], ...]
    runtime_config: RuntimeConfig | None
    smu: SmuInfo
    aie4: Aie4Layout | None = None
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
    def function(self) -> str:
        """The PCI function kind: ``plain``, ``pf`` (SR-IOV physical) or ``vf``."""
        return self.pci.function

    def vf_chip(self) -> Chip:
        """A physical function's virtual function chip (``<plain>_vf``)."""
        if self.pci.function != "pf":
            raise ChipError(f"{self.name} is not an SR-IOV physical function")
        return load_chip(self.name.removesuffix("_pf") + "_vf")

    @property
    def pci_id(self) -> tuple[int, int]:
        return self.pci.device, self.pci.revision

    @property
    def emulated(self) -> bool:
        """True when the device model runs this chip's firmware; False for a chip known by
        identity only (its PCI function exists, probing it gives EOPNOTSUPP)."""
        return self.family in EMULATED_FAMILIES

    @property
    def runtime_types(self) -> tuple[int, ...]:
        """SET_RUNTIME_CONFIG types the firmware accepts (none without [runtime_config])."""
        return self.runtime_config.types if self.runtime_config is not None else ()

    @property
    def cols(self) -> int:
        """AIE array columns (0 for a chip without a [tiles] table)."""
        return self.tiles.cols if self.tiles is not None else 0


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
        drop = data.pop("remove", [])
        base = _raw(parent, chip_dir, (*seen, name))
        if not isinstance(drop, list) or not all(isinstance(d, str) for d in drop):
            raise ChipError(f"{path.name}: remove must be a list of 'table.key' names")
        for dotted in drop:  # inherited entries a child does not have (npu7's SMU registers)
            table, _, key = dotted.partition(".")
            if key not in base.get(table, {}):
                raise ChipError(f"{path.name}: remove names {dotted!r}, which {parent} does not have")
            base[table] = {k: v for k, v in base[table].items() if k != key}
        data = _merge(base, data)
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


#: Keys a chip file may hold at its top level; every table's own keys come from its dataclass.
TOP_KEYS = ("name", "family", "vbnv", "fw_path", "provenance", "inherits", "pci", "apertures",
            "bars", "registers", "roles", "mailbox", "msix", "limits", "protocol", "features",
            "firmware", "tiles", "dpm", "runtime_config", "smu", "aie4")  # fmt: skip
_REQUIRED_TOP = ("name", "family", "vbnv", "fw_path", "pci", "apertures", "bars", "msix",
                 "limits", "protocol", "firmware", "smu")  # fmt: skip


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


class _Reader:
    """Reads one merged chip file strictly; every error names the file, table and key."""

    def __init__(self, src: str) -> None:
        self.src = src

    def fail(self, what: str) -> ChipError:
        return ChipError(f"{self.src}: malformed chip file: {what}")

    def keys(self, table: Any, where: str, required: tuple[str, ...] | list[str],
             optional: tuple[str, ...] | list[str] = ()) -> dict[str, Any]:  # fmt: skip
        if not isinstance(table, dict):
            raise self.fail(f"[{where}] must be a table, not {table!r}")
        extra = sorted(set(table) - set(required) - set(optional) - {"provenance"})
        if extra:
            raise self.fail(f"[{where}] has unknown key(s) {', '.join(map(repr, extra))} "
                            f"(known: {', '.join([*required, *optional])})")  # fmt: skip
        missing = [k for k in required if k not in table]
        if missing:
            raise self.fail(f"[{where}] is missing key(s) {', '.join(map(repr, missing))}")
        return {k: v for k, v in table.items() if k != "provenance"}

    def value(self, v: Any, hint: Any, where: str) -> Any:
        """``v`` checked against a field's type; TOML arrays become tuples."""
        origin, args = typing.get_origin(hint), typing.get_args(hint)
        if origin in (types.UnionType, typing.Union):  # X | None: TOML has no None
            return self.value(v, next(a for a in args if a is not type(None)), where)
        if origin is tuple:
            if not isinstance(v, list | tuple):
                raise self.fail(f"{where} = {v!r} is not an array")
            if len(args) == 2 and args[1] is Ellipsis:
                return tuple(self.value(x, args[0], f"{where}[{i}]") for i, x in enumerate(v))
            if len(v) != len(args):
                raise self.fail(f"{where} = {v!r} must have {len(args)} elements")
            return tuple(self.value(x, a, f"{where}[{i}]")
                         for i, (x, a) in enumerate(zip(v, args, strict=True)))  # fmt: skip
        ok = isinstance(v, bool) if hint is bool else (
            isinstance(v, hint) and not (hint is int and isinstance(v, bool)))
        if not ok:
            raise self.fail(f"{where} = {v!r} is not {_type_name(hint)}")
        return v

    def typed(self, cls: type, table: Any, where: str, **extra: Any) -> Any:
        """Build dataclass ``cls`` from a table whose keys are exactly its fields (those
        with a default may be left out); ``extra`` fills fields the table does not hold."""
        hints = typing.get_type_hints(cls)
        names = [f.name for f in fields(cls) if f.name not in extra]
        required = [f.name for f in fields(cls) if f.name in names
                    and f.default is MISSING and f.default_factory is MISSING]  # fmt: skip
        data = self.keys(table, where, required, [n for n in names if n not in required])
        return cls(**extra, **{k: self.value(v, hints[k], f"{where}.{k}") for k, v in data.items()})

    def optional(self, cls: type, data: dict[str, Any], key: str) -> Any:
        return self.typed(cls, data[key], key) if key in data else None


def _build(data: dict[str, Any], src: str | None = None) -> Chip:
    """Turn merged TOML data into a :class:`Chip`; structure only, no consistency checks."""
    name = data.get("name", "?")
    if src is None:
        src = f"{name}.toml" + (f" (inherits {data['inherits']})" if data.get("inherits") else "")
    rd = _Reader(src)
    rd.keys(data, "chip", _REQUIRED_TOP, [k for k in TOP_KEYS if k not in _REQUIRED_TOP])
    try:
        apertures = {k: rd.value(rd.keys(v, f"apertures.{k}", ("base",))["base"], int,
                                 f"apertures.{k}.base")
                     for k, v in rd.keys(data["apertures"], "apertures", (), list(data["apertures"])).items()}  # fmt: skip
        bars: dict[int, Bar] = {}
        for idx, b in rd.keys(data["bars"], "bars", (), list(data["bars"])).items():
            b = rd.keys(b, f"bars.{idx}", ("aperture", "size"), ("bits",))
            ap = b["aperture"]
            if ap not in apertures:
                raise ChipError(f"{name}: BAR{idx} names unknown aperture {ap!r}")
            bars[int(idx)] = Bar(int(idx), ap, apertures[ap], rd.value(b["size"], int, f"bars.{idx}.size"),
                                 rd.value(b.get("bits", 64), int, f"bars.{idx}.bits"))  # fmt: skip
        pci = {("class_code" if k == "class" else k): v for k, v in data["pci"].items()}
        proto = rd.keys(data["protocol"], "protocol", ("major", "min_minor"))
        dpm = rd.keys(data.get("dpm", {}), "dpm", (), ("levels", "tops"))
        features = rd.keys(data.get("features", {}), "features", (), list(data.get("features", {})))
        chip = Chip(
            name=name, family=rd.value(data["family"], str, "family"),
            vbnv=rd.value(data["vbnv"], str, "vbnv"), fw_path=rd.value(data["fw_path"], str, "fw_path"),
            pci=rd.typed(PciIdentity, pci, "pci"),
            apertures=apertures, bars=bars, registers={}, roles={}, mailbox=None,
            msix=rd.typed(MsixLayout, data["msix"], "msix"),
            limits=rd.typed(Limits, data["limits"], "limits"),
            protocol_major=rd.value(proto["major"], int, "protocol.major"),
            protocol_min_minor=rd.value(proto["min_minor"], int, "protocol.min_minor"),
            features={k: _version(v) for k, v in features.items()},
            firmware=rd.typed(FirmwareDefaults, data["firmware"], "firmware"),
            tiles=rd.optional(Tiles, data, "tiles"),
            dpm_levels=rd.value(dpm.get("levels", []), tuple[tuple[int, int], ...], "dpm.levels"),
            runtime_config=rd.optional(RuntimeConfig, data, "runtime_config"),
            smu=rd.typed(SmuInfo, data["smu"], "smu"),
            aie4=rd.optional(Aie4Layout, data, "aie4"),
            dpm_tops=rd.value(dpm.get("tops", ""), str, "dpm.tops"),
            inherits=data.get("inherits"),
            provenance=_prov(data),
        )  # fmt: skip
        registers: dict[str, Register] = {}
        for rname, r in rd.keys(data.get("registers", {}), "registers", (),
                                list(data.get("registers", {}))).items():  # fmt: skip
            r = rd.keys(r, f"registers.{rname}", ("addr",), ("access",))
            addr = rd.value(r["addr"], int, f"registers.{rname}.addr")
            try:
                bar, off = chip.dev_to_bar(addr)
            except ChipError:
                bar, off = -1, addr  # reported by validate_chip with the register's name
            registers[rname] = Register(rname, addr, r.get("access", "rw"), bar, off)
        roles = {str(k): rd.value(v, str, f"roles.{k}")
                 for k, v in rd.keys(data.get("roles", {}), "roles", (), list(data.get("roles", {}))).items()}  # fmt: skip
        mailbox = None
        if "mailbox" in data:
            mailbox = rd.typed(MailboxLayout, data["mailbox"], "mailbox")
            if "slots_base" not in data["mailbox"]:  # slot 0 is the sram.mbox_chann register
                target = registers.get(roles.get("sram.mbox_chann", ""))
                mailbox = MailboxLayout(**{**asdict(mailbox), "slots_base": target.addr if target else 0})
    except ChipError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise rd.fail(repr(exc)) from None
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
    hwctx = chip.limits.hwctx_limit
    if hwctx < 1:
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


PAGE_SIZE = 0x1000
#: VFs at routing id offset 1, stride 1 from a PF at function 1 stay inside one device (.2-.7)
SRIOV_MAX_VFS = 6
AIE4_INFO_SIZE = 64  # mailbox_info is 16 u32 words


def _check_aie4(chip: Chip, err: list[str]) -> None:
    """The AIE4 layout: blocks inside BARs and apart, doorbells one page per context."""
    if chip.pci.function not in FUNCTION_KINDS:
        err.append(f"pci.function {chip.pci.function!r} is not one of {FUNCTION_KINDS}")
    if chip.pci.function != "plain" and chip.family != "aie4":
        err.append(f"pci.function {chip.pci.function!r}: only AIE4 chips have PF/VF functions")
    if (chip.pci.function == "pf") != (1 <= chip.pci.total_vfs <= SRIOV_MAX_VFS):
        err.append(f"pci.total_vfs {chip.pci.total_vfs}: a PF has 1..{SRIOV_MAX_VFS} VFs,"
                   " any other function none")
    a = chip.aie4
    if a is None:
        if chip.family == "aie4":
            err.append("family aie4 needs an [aie4] table")
        return
    if chip.family != "aie4":
        err.append(f"[aie4] on a {chip.family} chip")
    if not _pow2(a.ring_size):
        err.append(f"aie4 ring_size {a.ring_size:#x} is not a power of two")
    if a.doorbell_stride < PAGE_SIZE or a.doorbell_stride % PAGE_SIZE:
        err.append(f"aie4 doorbell_stride {a.doorbell_stride:#x} is not a whole number of pages")
    if a.doorbells % PAGE_SIZE:
        err.append(f"aie4 doorbells {a.doorbells:#x} is not page aligned")
    if a.cert_path.rsplit("/", 1)[0] != chip.fw_path.rsplit("/", 1)[0]:
        err.append(f"aie4 cert_path {a.cert_path!r} is not beside fw_path {chip.fw_path!r}")
    cols = chip.cols
    if a.partition_col_count < 1 or a.partition_col_start + a.partition_col_count > cols:
        err.append(f"aie4 partition columns {a.partition_col_start}+{a.partition_col_count} "
                   f"do not fit the {cols}-column array")  # fmt: skip
    regions: list[tuple[int, int, int, str]] = []
    for what, addr, size in (
        ("mailbox_info", a.mbox_info, AIE4_INFO_SIZE),
        ("aie4 mgmt registers", a.mgmt_regs, Aie4Layout.REGS_SPAN),
        ("aie4 x2i ring", a.x2i_ring, a.ring_size),
        ("aie4 i2x ring", a.i2x_ring, a.ring_size),
        ("aie4 doorbells", a.doorbells, a.doorbell_stride * chip.limits.hwctx_limit),
    ):
        if addr % 4:
            err.append(f"{what} {addr:#x} is not 4-byte aligned")
        if (reg := _region(chip, what, addr, size, err)) is not None:
            regions.append(reg)
    m = chip.msix
    regions += [(m.bar, m.table_offset, m.table_size, "MSI-X table"),
                (m.bar, m.pba_offset, m.pba_size, "MSI-X PBA")]  # fmt: skip
    for i, x in enumerate(regions):
        for y in regions[i + 1 :]:
            if x[0] == y[0] and _overlap(x[1:3], y[1:3]):
                err.append(f"{x[3]} and {y[3]} overlap in BAR{x[0]}")
        for r in chip.registers.values():
            if r.bar == x[0] and _overlap(x[1:3], (r.offset, REG_SIZE)):
                err.append(f"{x[3]} overlaps register {r.name}")


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
    if chip.smu.dpm_method not in DPM_METHODS:
        err.append(f"smu.dpm_method {chip.smu.dpm_method!r} is not one of {DPM_METHODS}")
    try:
        ver = _version(chip.firmware.protocol)
    except (ValueError, TypeError):
        err.append(f"firmware.protocol {chip.firmware.protocol!r} is not 'M.m'")
    else:
        if ver[0] != chip.protocol_major or ver[1] < chip.protocol_min_minor:
            err.append(f"firmware.protocol {ver} fails the driver check "
                       f"{chip.protocol_major}.{chip.protocol_min_minor}+")  # fmt: skip
    for lv in chip.dpm_levels:
        if len(lv) != 2 or not all(isinstance(x, int) and x > 0 for x in lv):
            err.append(f"dpm level {lv} is not [npuclk, hclk] in MHz")


def _check_provenance(chip: Chip, err: list[str]) -> None:
    need = ["chip", "pci", "msix", "protocol", "limits", "firmware", "smu"]
    need += [f"apertures.{k}" for k in chip.apertures]
    need += [f"bars.{i}" for i in chip.bars]
    need += [f"registers.{r}" for r in chip.registers]
    optional = {
        "roles": chip.roles, "mailbox": chip.mailbox, "features": chip.features,
        "tiles": chip.tiles, "dpm": chip.dpm_levels, "runtime_config": chip.runtime_config,
        "aie4": chip.aie4,
    }  # fmt: skip
    need += [k for k, v in optional.items() if v]
    for key in need:
        prov = chip.provenance.get(key)
        if not isinstance(prov, str) or not prov.strip():
            err.append(f"table {key} has no provenance string")


def validate_chip(chip: Chip) -> None:
    """Raise ChipError listing every inconsistency in ``chip`` (None when it is sound)."""
    err: list[str] = []
    for check in (_check_bars, _check_registers, _check_roles, _check_layout, _check_aie4,
                  _check_misc, _check_provenance):  # fmt: skip
        check(chip, err)
    if err:
        raise ChipError(f"{chip.name}: " + "; ".join(err))


def chip_from_dict(data: dict[str, Any], src: str | None = None) -> Chip:
    """Build and validate a chip from already-merged data (tests, generated chips)."""
    chip = _build(data, src)
    validate_chip(chip)
    return chip


@cache
def load_chip(name: str, chip_dir: Path | None = None) -> Chip:
    """Load, inherit, resolve and validate one chip file by name (``npu4``)."""
    return chip_from_dict(_raw(name, chip_dir or CHIP_DIR))


def chip_names(chip_dir: Path | None = None) -> list[str]:
    return sorted(p.stem for p in (chip_dir or CHIP_DIR).glob("*.toml"))


def emulated_chip_names(chip_dir: Path | None = None, family: str | None = None) -> list[str]:
    """Chips whose firmware the device model runs (:attr:`Chip.emulated`), sorted; only
    those of ``family`` when given (AIE2 and AIE4 behave differently past the probe)."""
    return [n for n in chip_names(chip_dir)
            if (c := load_chip(n, chip_dir)).emulated and family in (None, c.family)]


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
