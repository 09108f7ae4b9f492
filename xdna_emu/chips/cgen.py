"""Generate the C chip tables the driver shim compiles in (csrc/generated/xdna_chips_gen.h).

The amdxdna driver compiles its per-chip register tables in (``npuN_regs.c``); the shim does
the same, but its tables are generated from the chip TOML files so the daemon and the shim
can never disagree about an offset. Every address is emitted as ``(bar, offset)`` already
resolved through :meth:`Chip.dev_to_bar`, plus the BAR aperture table so the shim's single
``dev_to_bar`` twin can convert the addresses firmware publishes at run time.

Run as ``python3 -m xdna_emu.chips.cgen [OUT_DIR]``.
"""

from __future__ import annotations

from pathlib import Path

from ..genfile import main, write_files
from . import AIE2_ROLES, Aie4Layout, Chip, MailboxLayout, chip_names, load_chip

#: Feature gates the shim consults by index; the order is the C enum order.
SHIM_FEATURES = ("NPU_COMMAND", "PREEMPT", "UPDATE_PROPERTY", "CALIBRATE_TIME", "GET_DEV_REVISION",
                 "CHAIN_EXEC_NPU", "GET_APP_HEALTH", "CONFIG_FW_LOG", "START_FW_TRACE")


def tops_per_level(chip: Chip) -> list[float]:
    """TOPS of each DPM level from the chip's formula text (names: cols, hclk, npuclk)."""
    formula = chip.dpm_tops.strip()
    if not formula:
        return [0.0] * len(chip.dpm_levels)
    code = compile(formula, f"{chip.name} dpm.tops", "eval")
    bad = set(code.co_names) - {"cols", "hclk", "npuclk"}
    if bad:
        raise ValueError(f"{chip.name}: dpm.tops uses unknown names {sorted(bad)}")
    cols = chip.cols
    return [float(eval(code, {"__builtins__": {}}, {"cols": cols, "hclk": h, "npuclk": n}))  # noqa: S307
            for n, h in chip.dpm_levels]


def role_enum(role: str) -> str:
    """``psp.cmd`` -> ``XDNA_ROLE_PSP_CMD``."""
    return "XDNA_ROLE_" + role.replace(".", "_").upper()


def feature_enum(name: str) -> str:
    return "XDNA_FEAT_" + name.upper()


def _cstr(text: str) -> str:
    out = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{out}"'


def _chip_block(idx: int, chip: Chip) -> tuple[list[str], str]:
    """Return (static arrays, struct initializer) for one chip."""
    pre: list[str] = []
    p = f"chip{idx}"
    supported = chip.emulated
    fields: list[str] = [
        f".name = {_cstr(chip.name)}",
        f".family = {_cstr(chip.family)}",
        f".vbnv = {_cstr(chip.vbnv)}",
        f".fw_path = {_cstr(chip.fw_path)}",
        f".vendor = {chip.pci.vendor:#x}",
        f".device = {chip.pci.device:#x}",
        f".revision = {chip.pci.revision:#x}",
        f".class_code = {chip.pci.class_code:#x}",
        f".supported = {1 if supported else 0}",
        f".protocol_major = {chip.protocol_major}",
        f".protocol_min_minor = {chip.protocol_min_minor}",
    ]
    # Driver feature gates: as in the driver's optional-message table, a gate the chip file
    # does not list means the chip does not offer the feature (npu1 has no UPDATE_PROPERTY).
    feats = []
    for name in SHIM_FEATURES:
        need = chip.features.get(name)
        if need is None:
            feats.append(f"[{feature_enum(name)}] = {{ .present = 0 }}")
        else:
            feats.append(f"[{feature_enum(name)}] = {{ .present = 1, .major = {need[0]}, .minor = {need[1]} }}")
    fields.append(".features = { " + ", ".join(feats) + " }")

    bars = [f"{{ .bar = {b.index}, .base = {b.base:#x}, .size = {b.size:#x} }}" for b in chip.bars.values()]
    pre.append(f"static const struct xdna_aperture {p}_bars[] = {{ {', '.join(bars)} }};")
    fields += [f".bars = {p}_bars", f".nbars = {len(bars)}"]

    fields.append(f".msix = {{ .bar = {chip.msix.bar}, .table_off = {chip.msix.table_offset:#x}, "
                  f".pba_off = {chip.msix.pba_offset:#x}, .vectors = {chip.msix.vectors} }}")
    if not supported:
        return pre, "{ " + ", ".join(fields) + " }"

    roles = []
    for role in AIE2_ROLES:
        if role not in chip.roles:  # AIE4 has no PWAITMODE and no SRAM offsets
            continue
        reg = chip.reg(role)
        roles.append(f"[{role_enum(role)}] = {{ .valid = 1, .bar = {reg.bar}, .off = {reg.offset:#x} }}")
    fields.append(".roles = { " + ", ".join(roles) + " }")
    if chip.aie4 is not None:
        fields += _aie4_fields(chip, chip.aie4)
    else:
        fields.append(f".sram_bar = {chip.reg('sram.mbox_chann').bar}")
    if chip.mailbox is not None:
        ibar, ioff = chip.dev_to_bar(chip.mailbox.mgmt_info, 64)
        fields.append(f".mgmt_info = {{ .valid = 1, .bar = {ibar}, .off = {ioff:#x} }}")

    mb = chip.mailbox
    if mb is not None:
        mbar, moff = chip.dev_to_bar(mb.regs_base, mb.regs_stride * mb.channels)
        fields.append(
            f".mbox = {{ .present = 1, .bar = {mbar}, .base_off = {moff:#x}, .stride = {mb.regs_stride:#x}, "
            f".channels = {mb.channels}, .x2i_tail = {MailboxLayout.X2I_TAIL:#x}, "
            f".x2i_head = {MailboxLayout.X2I_HEAD:#x}, .i2x_tail = {MailboxLayout.I2X_TAIL:#x}, "
            f".i2x_head = {MailboxLayout.I2X_HEAD:#x}, .intr = {MailboxLayout.INTR:#x} }}"
        )

    traps = [f"{{ .valid = 1, .bar = {r.bar}, .off = {r.offset:#x} }}"
             for r in chip.registers.values() if r.access == "trap"]
    if traps:
        pre.append(f"static const struct xdna_bar_off {p}_traps[] = {{ {', '.join(traps)} }};")
        fields += [f".traps = {p}_traps", f".ntraps = {len(traps)}"]

    if chip.dpm_levels:
        dpm = [f"{{ {a}, {b} }}" for a, b in chip.dpm_levels]
        pre.append(f"static const struct xdna_dpm_level {p}_dpm[] = {{ {', '.join(dpm)} }};")
        fields += [f".dpm = {p}_dpm", f".ndpm = {len(dpm)}"]
        tops = [repr(v) for v in tops_per_level(chip)]
        pre.append(f"static const double {p}_tops[] = {{ {', '.join(tops)} }};")
        fields.append(f".tops = {p}_tops")

    rc = chip.runtime_config
    init = [f"{{ {t}, {v}ULL }}" for t, v in (rc.init if rc else ())]
    if init:
        pre.append(f"static const struct xdna_rtcfg {p}_rt_init[] = {{ {', '.join(init)} }};")
        fields += [f".rt_init = {p}_rt_init", f".nrt_init = {len(init)}"]
    cg = [str(t) for t in (rc.clock_gating if rc else ())]
    if cg:
        pre.append(f"static const uint32_t {p}_clkgate[] = {{ {', '.join(cg)} }};")
        fields += [f".clock_gating = {p}_clkgate", f".nclock_gating = {len(cg)}"]
    fine = rc.fine_preempt if rc is not None else None
    fields.append(f".fine_preempt_type = {fine if fine is not None else -1}")
    fb = rc.frame_boundary_preempt if rc is not None else None
    fields.append(f".frame_boundary_type = {fb if fb is not None else -1}")

    fields.append(f".first_col = {chip.limits.first_col}")
    fields.append(f".hwctx_limit = {chip.limits.hwctx_limit}")
    fields.append(f".temporal_only = {1 if chip.limits.temporal_only else 0}")
    fields.append(f".dev_heap_max = {chip.limits.dev_heap_max:#x}ull")
    method = chip.smu.dpm_method
    if method not in ("level", "clock"):
        raise ValueError(f"{chip.name}: unknown smu.dpm_method {method!r}")
    fields.append(f".dpm_method = {'XDNA_DPM_CLOCK' if method == 'clock' else 'XDNA_DPM_LEVEL'}")
    return pre, "{ " + ",\n      ".join(fields) + " }"


FUNCTION_ENUM = {"plain": "XDNA_FUNC_PLAIN", "pf": "XDNA_FUNC_PF", "vf": "XDNA_FUNC_VF"}


def _aie4_fields(chip: Chip, a: Aie4Layout) -> list[str]:
    """The AIE4 layout: mailbox_info, the mgmt channel block (its rings are in sram_bar), the
    cert file, the function kind and the partition (docs/spec/aie4.md §2)."""
    ibar, ioff = chip.dev_to_bar(a.mbox_info, 64)
    rbar, roff = chip.dev_to_bar(a.mgmt_regs, Aie4Layout.REGS_SPAN)
    return [
        f".sram_bar = {chip.dev_to_bar(a.x2i_ring, a.ring_size)[0]}",
        f".mbox = {{ .present = 1, .bar = {rbar}, .base_off = {roff:#x}, "
        f".stride = {Aie4Layout.REGS_SPAN:#x}, .channels = 1, .x2i_tail = {Aie4Layout.X2I_TAIL:#x}, "
        f".x2i_head = {Aie4Layout.X2I_HEAD:#x}, .i2x_tail = {Aie4Layout.I2X_TAIL:#x}, "
        f".i2x_head = {Aie4Layout.I2X_HEAD:#x}, .intr = {Aie4Layout.REGS_SPAN:#x} }}",
        f".cert_path = {_cstr(a.cert_path)}",
        f".function = {FUNCTION_ENUM[chip.function]}",
        f".mbox_info = {{ .valid = 1, .bar = {ibar}, .off = {ioff:#x} }}",
        f".part_col_start = {a.partition_col_start}",
        f".part_col_count = {a.partition_col_count}",
        ".doorbells = {{ .valid = 1, .bar = {}, .off = {:#x} }}".format(*chip.dev_to_bar(a.doorbells)),
        f".doorbell_stride = {a.doorbell_stride:#x}",
        f".ndoorbells = {chip.limits.hwctx_limit}",
    ]


def generate() -> str:
    """The whole header text, deterministic for a given set of chip files."""
    lines = [
        "/* Generated by xdna_emu/chips/cgen.py from the chip TOML files. Do not edit. */",
        "#ifndef XDNA_CHIPS_GEN_H",
        "#define XDNA_CHIPS_GEN_H",
        '#include "xdna_chips.h"',
        "",
    ]
    inits: list[str] = []
    for idx, name in enumerate(chip_names()):
        chip = load_chip(name)
        if chip.family not in ("aie2", "aie4"):
            continue
        pre, init = _chip_block(idx, chip)
        lines += pre
        inits.append(f"    /* {chip.name} */\n    {init}")
    lines.append("static const struct xdna_chip_desc xdna_chip_table[] = {")
    lines.append(",\n".join(inits))
    lines.append("};")
    lines.append("#define XDNA_CHIP_TABLE_LEN (sizeof(xdna_chip_table) / sizeof(xdna_chip_table[0]))")
    lines.append("#endif")
    return "\n".join(lines) + "\n"


def role_header() -> str:
    """The role and feature enums (shared by every chip, from AIE2_ROLES / SHIM_FEATURES)."""
    out = ["/* Generated by xdna_emu/chips/cgen.py. Do not edit. */",
           "#ifndef XDNA_ROLES_GEN_H", "#define XDNA_ROLES_GEN_H", "enum xdna_role {"]
    out += [f"    {role_enum(r)}," for r in AIE2_ROLES]
    out += ["    XDNA_ROLE_MAX /* keep this last */", "};", "enum xdna_feature {"]
    out += [f"    {feature_enum(f)}," for f in SHIM_FEATURES]
    out += ["    XDNA_FEAT_MAX /* keep this last */", "};", "#endif", ""]
    return "\n".join(out)


def write(out_dir: Path) -> list[Path]:
    """Write both generated headers into ``out_dir`` (only when their text changed)."""
    return write_files(out_dir, [("xdna_roles_gen.h", role_header()),
                                 ("xdna_chips_gen.h", generate())])


if __name__ == "__main__":
    raise SystemExit(main(write))
