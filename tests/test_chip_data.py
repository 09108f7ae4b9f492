"""Chip files: every real chip is consistent, and the validator rejects each kind of bad file.

The positive tests re-derive invariants independently of ``validate_chip`` (so a validator
bug that accepts everything still fails here); the negative tests mutate real chip data one
fact at a time and expect a ChipError naming the problem.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from xdna_emu.chips import (
    AIE2_ROLES,
    AIE4_ROLES,
    CHIP_DIR,
    EMULATED_FAMILIES,
    FAMILY_ROLES,
    MGMT_INFO_SIZE,
    Aie4Layout,
    Chip,
    ChipError,
    Limits,
    MailboxLayout,
    Tiles,
    _raw,
    chip_for_id,
    chip_from_dict,
    chip_ids,
    chip_names,
    load_chip,
    validate_chip,
)
from xdna_emu.chips.docgen import render

REPO = Path(__file__).resolve().parents[1]
NAMES = chip_names()


def _span_overlap(a: int, asz: int, b: int, bsz: int) -> bool:
    return a < b + bsz and b < a + asz


# -- the real chip files --------------------------------------------------------------------
def test_expected_chips_present() -> None:
    assert {"npu1", "npu3", "npu4", "npu5", "npu6"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_chip_validates(name: str) -> None:
    chip = load_chip(name)
    validate_chip(chip)  # idempotent on a loaded chip
    assert chip.name == name


@pytest.mark.parametrize("name", NAMES)
def test_family_roles_resolve_to_aligned_registers_in_their_bar(name: str) -> None:
    chip = load_chip(name)
    for role in FAMILY_ROLES[chip.family]:
        reg = chip.reg(role)
        bar = chip.bars[reg.bar]
        assert reg.addr % 4 == 0
        assert bar.base <= reg.addr and reg.addr + 4 <= bar.base + bar.size
        assert reg.offset == reg.addr - bar.base


@pytest.mark.parametrize("name", NAMES)
def test_registers_distinct_and_bars_sane(name: str) -> None:
    chip = load_chip(name)
    addrs = sorted(r.addr for r in chip.registers.values())
    assert all(b - a >= 4 for a, b in zip(addrs, addrs[1:], strict=False))
    used = set(chip.bars)
    for idx, bar in chip.bars.items():
        assert bar.size >= 0x1000 and bar.size & (bar.size - 1) == 0
        if bar.bits == 64:
            assert idx < 5 and idx + 1 not in used
    if {0, 2, 4, 5} <= used:
        assert chip.bars[4].bits == 32 and chip.bars[5].bits == 32
    spans = sorted((b.base, b.size) for b in chip.bars.values())
    assert all(a + s <= b for (a, s), (b, _) in zip(spans, spans[1:], strict=False))


@pytest.mark.parametrize("name", NAMES)
def test_msix_and_mailbox_blocks_fit_and_do_not_collide(name: str) -> None:
    chip = load_chip(name)
    m = chip.msix
    hw = chip.limits.hwctx_limit
    assert m.vectors >= 1 + hw
    size = chip.bars[m.bar].size
    blocks = [("table", m.bar, m.table_offset, m.vectors * 16), ("pba", m.bar, m.pba_offset, 8)]
    assert m.table_offset + m.vectors * 16 <= size and m.pba_offset + 8 <= size
    mb = chip.mailbox
    if chip.emulated:
        assert mb is not None or chip.aie4 is not None
    if mb is not None:
        assert mb.channels >= 1 + hw
        assert mb.ring_size & (mb.ring_size - 1) == 0 and mb.ring_size * 2 <= mb.slot_size
        assert len(mb.free_slots()) >= mb.channels
        rbar, roff = chip.dev_to_bar(mb.regs_base, mb.channels * mb.regs_stride)
        sbar, soff = chip.dev_to_bar(mb.slots_base, mb.slots * mb.slot_size)
        blocks += [("regs", rbar, roff, mb.channels * mb.regs_stride)]
        blocks += [("slots", sbar, soff, mb.slots * mb.slot_size)]
        assert mb.slot_addr(0) == chip.reg("sram.mbox_chann").addr
        alive = chip.reg("sram.fw_alive").addr
        assert (alive - mb.slots_base) // mb.slot_size in mb.reserved_slots
        assert (mb.mgmt_info - mb.slots_base) // mb.slot_size in mb.reserved_slots
        assert not _span_overlap(mb.mgmt_info, MGMT_INFO_SIZE, alive, 4)
        assert mb.regs_stride >= MailboxLayout.INTR + 4
    for i, (n0, b0, o0, s0) in enumerate(blocks):
        for n1, b1, o1, s1 in blocks[i + 1 :]:
            assert b0 != b1 or not _span_overlap(o0, s0, o1, s1), (n0, n1)
        for reg in chip.registers.values():
            if n0 == "slots" and reg.name in (
                chip.roles["sram.mbox_chann"],
                chip.roles["sram.fw_alive"],
            ):
                continue
            assert reg.bar != b0 or not _span_overlap(o0, s0, reg.offset, 4), (n0, reg.name)


@pytest.mark.parametrize("name", NAMES)
def test_every_table_has_provenance(name: str) -> None:
    chip = load_chip(name)
    assert chip.provenance["chip"].strip()
    for key in ("pci", "msix", "protocol", "limits", "roles"):
        assert chip.provenance[key].strip()
    for reg in chip.registers:
        assert chip.provenance[f"registers.{reg}"].strip()


def test_pci_ids_unique_and_lookup() -> None:
    ids = chip_ids()
    assert len(ids) == len(NAMES)
    assert ids[(0x1502, 0x00)] == "npu1"
    assert ids[(0x17F0, 0x10)] == "npu4"
    assert ids[(0x17F0, 0x11)] == "npu5"
    assert ids[(0x17F0, 0x20)] == "npu6"
    assert ids[(0x17F1, 0x10)] == "npu3"
    found = chip_for_id(0x17F0, 0x11)
    assert found is not None and found.name == "npu5"
    assert chip_for_id(0x17F0, 0x99) is None


def test_driver_facts_spot_check() -> None:
    """A few (bar, offset) pairs straight from the driver tables, per generation."""
    npu1, npu4, npu3 = load_chip("npu1"), load_chip("npu4"), load_chip("npu3")
    loc = [
        (npu1, "psp.cmd", 0, 0x100A0), (npu1, "psp.arg2", 0, 0x100BC),
        (npu1, "smu.resp", 0, 0x100B0), (npu1, "sram.fw_alive", 2, 0x3F000),
        (npu1, "sram.mbox_chann", 2, 0x20000), (npu1, "psp.pwaitmode", 0, 0x10034),
        (npu4, "psp.cmd", 4, 0xAEC), (npu4, "smu.cmd", 5, 0x900),
        (npu4, "sram.fw_alive", 2, 0x1E000),
        (npu3, "psp.arg0", 4, 0xB70), (npu3, "psp.arg2", 4, 0xAEC),
        (npu3, "smu.cmd", 5, 0x9EC), (npu3, "smu.out", 5, 0x9F4), (npu3, "smu.intr", 5, 0),
    ]  # fmt: skip
    for chip, role, bar, off in loc:
        r = chip.reg(role)
        assert (r.bar, r.offset) == (bar, off), (chip.name, role)
    assert npu1.limits.first_col == 1 and npu1.limits.hwctx_limit == 6
    assert npu1.dpm_levels[1] == (600, 1024) and len(npu1.dpm_levels) == 8
    assert npu1.smu.dpm_method == "clock" and npu4.smu.dpm_method == "level"
    assert "psp.pwaitmode" not in npu3.roles and npu3.mailbox is None
    assert set(AIE4_ROLES) < set(AIE2_ROLES)


def test_family_members_inherit_and_override() -> None:
    npu4, npu5, npu6 = load_chip("npu4"), load_chip("npu5"), load_chip("npu6")
    for chip in (npu5, npu6):
        assert chip.inherits == "npu4"
        assert chip.registers == npu4.registers and chip.mailbox == npu4.mailbox
        assert chip.protocol_major == 6 and chip.protocol_min_minor == 12
    assert npu5.fw_path == "amdnpu/17f0_11/npu.dev.sbin" and npu5.vbnv == "NPU Strix Halo"
    assert npu6.fw_path == "amdnpu/17f0_10/npu.dev.sbin" and npu6.vbnv == "NPU Krackan"
    assert npu6.firmware.dev_revision in (3, 4) and npu5.firmware.dev_revision == 5
    assert npu5.pci.subsystem_vendor == 0x1022  # untouched keys of an overridden table stay


def test_feature_gates() -> None:
    npu1, npu4 = load_chip("npu1"), load_chip("npu4")
    assert npu1.has_feature("CHAIN_EXEC_NPU", (5, 8))
    assert not npu1.has_feature("CHAIN_EXEC_NPU", (5, 7))
    assert not npu1.has_feature("UPDATE_PROPERTY", (5, 99))  # not in npu1's table: never
    assert npu4.has_feature("UPDATE_PROPERTY", (6, 15))
    assert not npu4.has_feature("AIE_RW_ACCESS", (6, 23))
    assert npu1.has_feature("SUSPEND", (5, 7))  # mandatory message, no gate


# -- address conversion ------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_dev_to_bar_round_trip(name: str) -> None:
    chip = load_chip(name)

    @given(st.data())
    def prop(data: st.DataObject) -> None:
        idx = data.draw(st.sampled_from(sorted(chip.bars)))
        off = data.draw(st.integers(0, chip.bars[idx].size - 4))
        assert chip.dev_to_bar(chip.bar_to_dev(idx, off)) == (idx, off)

    prop()


@pytest.mark.parametrize("name", NAMES)
def test_address_in_no_bar_raises(name: str) -> None:
    chip = load_chip(name)
    with pytest.raises(ChipError, match="in no BAR"):
        chip.dev_to_bar(0)
    bar = chip.bars[min(chip.bars)]
    with pytest.raises(ChipError):
        chip.dev_to_bar(bar.base + bar.size - 2)  # straddles the end
    with pytest.raises(ChipError):
        chip.reg("no.such_role")


# -- negative tests: one bad fact at a time ----------------------------------------------------
def _data(name: str = "npu4") -> dict[str, Any]:
    return copy.deepcopy(_raw(name))


def _bad(data: dict[str, Any], match: str) -> None:
    with pytest.raises(ChipError, match=match):
        chip_from_dict(data)


def test_unmodified_data_builds() -> None:
    for name in NAMES:
        assert isinstance(chip_from_dict(_data(name)), Chip)


def test_overlapping_registers() -> None:
    d = _data()
    d["registers"]["EXTRA"] = {"addr": 0x3010078, "access": "rw", "provenance": "x"}
    _bad(d, "registers MPNPU_PUB_SCRATCH3 and EXTRA overlap")
    d = _data()
    d["registers"]["EXTRA"] = {"addr": 0x301007A, "access": "rw", "provenance": "x"}
    _bad(d, "overlap")


def test_unaligned_register() -> None:
    d = _data("npu1")
    d["registers"]["MPNPU_PWAITMODE"]["addr"] = 0x3010036
    _bad(d, "MPNPU_PWAITMODE at 0x3010036 is not 4-byte aligned")


def test_register_outside_bar() -> None:
    d = _data()
    d["registers"]["MP1_C2PMSG_0"]["addr"] = 0x3B11000  # one page past the SMU BAR
    _bad(d, "MP1_C2PMSG_0 at 0x3b11000 lies in no BAR")


def test_unknown_role_target_and_missing_role() -> None:
    d = _data()
    d["roles"]["psp.cmd"] = "NO_SUCH_REG"
    _bad(d, "role psp.cmd names unknown register NO_SUCH_REG")
    d = _data()
    del d["roles"]["psp.pwaitmode"]
    _bad(d, r"role psp.pwaitmode \(aie2\) is not defined")
    d = _data()
    d["family"] = "aie9"
    _bad(d, "unknown family")


def test_64bit_bar_collides_with_next_bar() -> None:
    d = _data()
    d["bars"]["4"]["bits"] = 64
    _bad(d, "BAR4: 64-bit BAR takes slot 5")


def test_bar_size_rules() -> None:
    d = _data()
    d["bars"]["4"]["size"] = 0x1800
    _bad(d, "BAR4: size 0x1800 must be a power of two")
    d = _data()
    d["bars"]["5"]["size"] = 0x800
    _bad(d, "BAR5: size 0x800")


def test_too_few_msix_vectors() -> None:
    d = _data()
    d["msix"]["vectors"] = 16  # hwctx_limit 16 needs 17
    _bad(d, r"MSI-X vectors 16 must be >= 1 \+ hwctx_limit \(17\)")


def test_msix_table_collisions() -> None:
    d = _data()
    d["msix"]["table_offset"] = 0x20000  # on top of the mailbox register block
    _bad(d, "MSI-X table and mailbox register block overlap in BAR0")
    d = _data()
    d["msix"]["table_offset"] = 0x10000  # on top of the public registers
    _bad(d, "MSI-X table overlaps register")
    d = _data()
    d["msix"]["pba_offset"] = 0x80000
    _bad(d, "MSI-X PBA .* lies outside BAR0")


def test_missing_provenance() -> None:
    d = _data()
    del d["registers"]["MP0_C2PMSG_73"]["provenance"]
    _bad(d, "table registers.MP0_C2PMSG_73 has no provenance")
    d = _data()
    d["msix"]["provenance"] = " "
    _bad(d, "table msix has no provenance")
    d = _data("npu1")
    del d["provenance"]
    _bad(d, "table chip has no provenance")


def test_mailbox_rules() -> None:
    d = _data()
    d["mailbox"]["ring_size"] = 0x1800
    _bad(d, "ring_size 0x1800 is not a power of two")
    d = _data()
    d["mailbox"]["ring_size"] = 0x2000
    _bad(d, r"ring_size\*2 0x4000 > slot_size 0x2000")
    d = _data()
    d["mailbox"]["channels"] = 40
    _bad(d, "free slots for 40 channels")
    d = _data()
    d["mailbox"]["regs_base"] = 0x307FFF0  # runs off the end of BAR0
    _bad(d, "mailbox register block .* does not lie inside one BAR")
    d = _data("npu1")
    d["mailbox"]["mgmt_info"] = 0x30BEFE0  # 64 B crosses into FW_ALIVE's word
    _bad(d, "mgmt_info overlaps register MPNPU_SRAM_I2X_MAILBOX_15")
    d = _data("npu1")
    d["mailbox"]["reserved_slots"] = [14]  # FW_ALIVE's slot would carry a ring
    _bad(d, "sram.fw_alive 0x30bf000 is not inside a reserved mailbox slot")
    d = _data()
    del d["mailbox"]
    _bad(d, "family aie2 needs a .mailbox. table")
    d = _data()
    d["registers"]["MPNPU_PUB_SCRATCH9"]["addr"] = 0x3604000  # a non-SRAM register in slot 2
    _bad(d, "mailbox SRAM slots overlaps register MPNPU_PUB_SCRATCH9")


def test_firmware_default_must_pass_driver_check() -> None:
    d = _data()
    d["firmware"]["protocol"] = "6.11"
    _bad(d, "fails the driver check")


def test_malformed_data() -> None:
    d = _data()
    del d["pci"]
    _bad(d, "malformed chip file")


@pytest.mark.parametrize(("table", "key"), [
    ("limits", "hwctx_limt"), ("tiles", "colls"), ("firmware", "verison"), ("smu", "dpm"),
    ("runtime_config", "typs"), ("pci", "vendr"), ("msix", "vector"), ("mailbox", "slot"),
    ("protocol", "minor"), ("dpm", "level"),
])  # fmt: skip
def test_unknown_key_is_an_error_naming_file_table_and_key(table: str, key: str) -> None:
    """A typo never falls back to a default: the loader names the file, table and key."""
    d = _data()
    d[table][key] = 1
    _bad(d, rf"npu4\.toml: .*\[{table}\] has unknown key\(s\) '{key}'")
    d = _data()
    d["bars"]["0"]["bitz"] = 64
    _bad(d, r"\[bars\.0\] has unknown key\(s\) 'bitz'")
    d = _data()
    d["limitz"] = {}
    _bad(d, r"\[chip\] has unknown key\(s\) 'limitz'")


@pytest.mark.parametrize(("table", "key"), [
    ("limits", "hwctx_limit"), ("limits", "first_col"), ("tiles", "cols"), ("firmware", "version"),
    ("smu", "dpm_method"), ("runtime_config", "types"), ("msix", "vectors"), ("pci", "device"),
])  # fmt: skip
def test_missing_key_is_an_error(table: str, key: str) -> None:
    d = _data()
    del d[table][key]
    _bad(d, rf"npu4\.toml: .*\[{table}\] is missing key\(s\) '{key}'")


def test_wrong_value_type_is_an_error() -> None:
    d = _data()
    d["limits"]["hwctx_limit"] = "16"
    _bad(d, r"limits\.hwctx_limit = '16' is not int")
    d = _data()
    d["limits"]["temporal_only"] = 1
    _bad(d, r"limits\.temporal_only = 1 is not bool")
    d = _data()
    d["runtime_config"]["init"] = [[5, 1, 0]]
    _bad(d, r"runtime_config\.init\[0\] = \[5, 1, 0\] must have 2 elements")
    d = _data()
    d["smu"]["dpm_method"] = "clocks"
    _bad(d, "smu.dpm_method 'clocks' is not one of")


def test_inherited_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "npu4.toml").write_text((CHIP_DIR / "npu4.toml").read_text())
    _write(tmp_path, "npuz", 'name = "npuz"\ninherits = "npu4"\n[limits]\nfirst_colum = 1\n')
    with pytest.raises(ChipError, match=r"npuz\.toml \(inherits npu4\): .*'first_colum'"):
        load_chip("npuz", tmp_path)


def test_tables_are_typed_and_frozen() -> None:
    npu4, npu3 = load_chip("npu4"), load_chip("npu3")
    assert isinstance(npu4.limits, Limits) and npu4.limits.temporal_only is True
    assert npu4.limits.ctx_limit == 32 and npu3.limits.ctx_limit == 128
    assert isinstance(npu4.tiles, Tiles) and isinstance(npu3.tiles, Tiles) and npu3.cols == 3
    assert npu4.runtime_config is not None and npu4.runtime_config.init == ((5, 1), (10, 1), (14, 0))
    assert npu4.firmware.aie_version == (2, 1) and npu3.firmware.aie_version == (4, 0)
    assert isinstance(npu3.aie4, Aie4Layout) and npu4.aie4 is None
    with pytest.raises(AttributeError):
        npu4.limits.hwctx_limit = 3  # type: ignore[misc]


def test_emulated_is_the_one_answer() -> None:
    """Emulated chips are the families the device model runs; the rest are identity only."""
    for name in NAMES:
        chip = load_chip(name)
        assert chip.emulated == (chip.family in EMULATED_FAMILIES)
        # the firmware model needs a mailbox: AIE2's SRAM slots or AIE4's mailbox_info layout
        assert chip.emulated == (chip.mailbox is not None or chip.aie4 is not None)
    assert load_chip("npu4").emulated and load_chip("npu3").emulated


# -- file-level checks: inheritance and the id table ------------------------------------------
def _write(dir_: Path, name: str, text: str) -> None:
    (dir_ / f"{name}.toml").write_text(text)


def test_inheritance_cycle(tmp_path: Path) -> None:
    _write(tmp_path, "aaa", 'name = "aaa"\ninherits = "bbb"\n')
    _write(tmp_path, "bbb", 'name = "bbb"\ninherits = "aaa"\n')
    with pytest.raises(ChipError, match="inheritance cycle: aaa -> bbb -> aaa"):
        load_chip("aaa", tmp_path)


def test_self_inheritance(tmp_path: Path) -> None:
    _write(tmp_path, "aaa", 'name = "aaa"\ninherits = "aaa"\n')
    with pytest.raises(ChipError, match="inheritance cycle"):
        load_chip("aaa", tmp_path)


def test_duplicate_pci_id(tmp_path: Path) -> None:
    (tmp_path / "npu4.toml").write_text((CHIP_DIR / "npu4.toml").read_text())
    _write(tmp_path, "npux", 'name = "npux"\ninherits = "npu4"\nvbnv = "copy"\n')
    load_chip("npux", tmp_path)  # each file alone is fine
    with pytest.raises(ChipError, match="PCI id 17f0:10 already used by npu4"):
        chip_ids(tmp_path)


def test_name_must_match_file_and_unknown_chip(tmp_path: Path) -> None:
    (tmp_path / "npu4.toml").write_text((CHIP_DIR / "npu4.toml").read_text())
    _write(tmp_path, "npuy", 'inherits = "npu4"\n')  # forgot to override name
    with pytest.raises(ChipError, match="does not match the file name"):
        load_chip("npuy", tmp_path)
    with pytest.raises(ChipError, match="unknown chip 'nope'"):
        load_chip("nope", tmp_path)
    with pytest.raises(ChipError, match="bad chip name"):
        load_chip("../npu4", tmp_path)


def test_bad_toml_syntax(tmp_path: Path) -> None:
    _write(tmp_path, "broken", "name = \n")
    with pytest.raises(ChipError, match="broken.toml"):
        load_chip("broken", tmp_path)


# -- generated spec ------------------------------------------------------------------------------
def test_chips_doc_matches_generator() -> None:
    doc = REPO / "docs" / "spec" / "chips.md"
    assert doc.read_text() == render(), (
        "docs/spec/chips.md is stale: run python3 -m xdna_emu.chips.docgen > docs/spec/chips.md"
    )


def test_doc_mentions_every_chip_and_role() -> None:
    text = render()
    for name in NAMES:
        chip = load_chip(name)
        assert f"## {name}: {chip.vbnv}" in text
        for role in FAMILY_ROLES[chip.family]:
            assert f"`{role}`" in text


# -- AIE4: functions, npu7's SMU, the AIE4 layout -------------------------------------------------
AIE4_IDS = {
    "npu3": (0x17F1, 0x10), "npu7": (0x17F1, 0x11), "npu8": (0x17F1, 0x12),
    "npu9": (0x17F1, 0x13), "npu10": (0x17F1, 0x14), "npu3_1b0a": (0x1B0A, 0x00),
}  # fmt: skip


@pytest.mark.parametrize("base", sorted(AIE4_IDS))
def test_aie4_plain_pf_vf_functions(base: str) -> None:
    """Each AIE4 generation has a plain function and its PF (+1) and VF (+2) device ids."""
    dev, rev = AIE4_IDS[base]
    ids = chip_ids()
    for off, kind in ((0, "plain"), (1, "pf"), (2, "vf")):
        name = ids[(dev + off, rev)]
        chip = load_chip(name)
        assert chip.family == "aie4" and chip.function == kind
        assert chip.fw_path == f"amdnpu/{dev + off:04x}_{rev:02x}/npu.dev.sbin"
        assert chip.aie4 is not None and chip.aie4.cert_path == chip.fw_path.replace("npu.", "cert.")
        assert chip.vbnv.endswith("-pf") == (kind == "pf")
        assert chip.limits.hwctx_limit == 128 and chip.msix.vectors == 129


def test_aie4_bar_layout_and_smu_sets() -> None:
    """BAR0 mailbox registers, BAR2 mailbox_info at 0 + doorbells, BAR4 PSP, BAR5 SMU; npu7's
    SMU mailbox differs from npu3/8/9/10 and inherits none of theirs."""
    for name in ("npu3", "npu8", "npu9", "npu10", "npu7"):
        c = load_chip(name)
        a = c.aie4
        assert a is not None
        assert c.dev_to_bar(a.mbox_info, 64) == (2, 0)
        assert c.dev_to_bar(a.mgmt_regs, 16)[0] == 0
        assert c.dev_to_bar(a.doorbell(127), 4)[0] == 2
        assert c.dev_to_bar(a.x2i_ring, a.ring_size)[0] == 2
        assert c.reg("psp.intr").bar == 4 and c.reg("smu.intr").bar == 5
        want = (0x960, 0x964, 0x968) if name == "npu7" else (0x9EC, 0x9F0, 0x9F4)
        assert (c.reg("smu.cmd").offset, c.reg("smu.resp").offset, c.reg("smu.arg").offset) == want
        assert c.reg("smu.out") == c.reg("smu.arg")
    assert "MP1_C2PMSG_59" not in load_chip("npu7").registers
    assert "MP1_C2PMSG_59" not in load_chip("npu7_vf").registers


def _aie4_data() -> dict[str, Any]:
    return copy.deepcopy(_raw("npu3"))


def test_aie4_layout_rejects_bad_blocks() -> None:
    d = _aie4_data()
    d["aie4"]["doorbells"] = d["aie4"]["x2i_ring"]
    with pytest.raises(ChipError, match="overlap in BAR2"):
        chip_from_dict(d)
    d = _aie4_data()
    d["aie4"]["doorbell_stride"] = 0x800
    with pytest.raises(ChipError, match="not a whole number of pages"):
        chip_from_dict(d)
    d = _aie4_data()
    d["aie4"]["ring_size"] = 0x1800
    with pytest.raises(ChipError, match="not a power of two"):
        chip_from_dict(d)
    d = _aie4_data()
    d["aie4"]["partition_col_count"] = 4
    with pytest.raises(ChipError, match="do not fit the 3-column array"):
        chip_from_dict(d)
    d = _aie4_data()
    d["aie4"]["cert_path"] = "amdnpu/17f0_10/cert.dev.sbin"
    with pytest.raises(ChipError, match="not beside fw_path"):
        chip_from_dict(d)
    d = _aie4_data()
    del d["aie4"]
    with pytest.raises(ChipError, match=r"family aie4 needs an \[aie4\] table"):
        chip_from_dict(d)
    d = _aie4_data()
    d["aie4"]["mgmt_regs"] = 0x3000000 + 0x7E000  # on the MSI-X table
    with pytest.raises(ChipError, match="aie4 mgmt registers and MSI-X table overlap"):
        chip_from_dict(d)
    d = _aie4_data()
    d["pci"]["function"] = "sf"
    with pytest.raises(ChipError, match="pci.function 'sf'"):
        chip_from_dict(d)
    d = copy.deepcopy(_raw("npu4"))
    d["pci"]["function"] = "pf"
    with pytest.raises(ChipError, match="only AIE4 chips have PF/VF"):
        chip_from_dict(d)


def test_inherited_remove(tmp_path: Path) -> None:
    """``remove`` drops inherited entries; naming one the parent lacks is an error."""
    (tmp_path / "npu4.toml").write_text((CHIP_DIR / "npu4.toml").read_text())
    _write(tmp_path, "npuq", 'name = "npuq"\ninherits = "npu4"\nremove = ["features.PREEMPT"]\n')
    assert "PREEMPT" not in load_chip("npuq", tmp_path).features
    assert "PREEMPT" in load_chip("npu4", tmp_path).features
    _write(tmp_path, "npur", 'name = "npur"\ninherits = "npu4"\nremove = ["features.NOPE"]\n')
    with pytest.raises(ChipError, match="remove names 'features.NOPE'"):
        load_chip("npur", tmp_path)
