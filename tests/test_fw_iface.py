"""The firmware interface table and what is generated from it (docs/spec/firmware.md,
"The firmware interface table"): the C header agrees with Python on every size and offset,
the committed docs are not stale, and nothing outside the table retypes its numbers."""

from __future__ import annotations

import pickle
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from xdna_emu.fw import messages as M
from xdna_emu.fw.iface import U32, Struct, aie2, cgen, docgen, f

ROOT = Path(__file__).resolve().parent.parent
FAMILIES = cgen.FAMILIES


def test_messages_md_is_current() -> None:
    committed = (ROOT / "docs/spec/messages.md").read_text()
    assert committed == docgen.render(), (
        "docs/spec/messages.md is stale: run "
        "python3 -m xdna_emu.fw.iface.docgen > docs/spec/messages.md")


def test_built_header_is_current() -> None:
    """The header the installed shim was compiled against is the table's (a stale build
    would run old numbers)."""
    for fam in FAMILIES:
        built = ROOT / "csrc/generated" / cgen.header_name(fam)
        if not built.exists():
            pytest.skip("shim not built in this tree")
        assert built.read_text() == cgen.render(fam), f"{built} is stale: rebuild the shim"


def _probe_program(fam) -> tuple[str, list[tuple[str, int]]]:
    """A C program printing sizeof and every offsetof, and the values Python expects."""
    lines = [f'#include "{cgen.header_name(fam)}"', "#include <stdio.h>", "int main(void) {"]
    want: list[tuple[str, int]] = []
    p = f"XDNA_{fam.name.upper()}_"
    for s in fam.all_structs():
        tag = cgen.struct_tag(fam, s)
        lines.append(f'    printf("{s.name} %zu %u\\n", sizeof(struct {tag}), {p}{s.name.upper()}_SIZE);')
        want.append((s.name, s.size))
        for name, off in s.offsets.items():
            lines.append(f'    printf("{s.name}.{name} %zu\\n", offsetof(struct {tag}, {name}));')
            want.append((f"{s.name}.{name}", off))
    p = f"XDNA_{fam.name.upper()}_"
    for e in fam.all_enums:
        for m in e.members:
            lines.append(f'    printf("{e.cname}_{m.name} %llu\\n", (unsigned long long){p}{e.cname}_{m.name});')
            want.append((f"{e.cname}_{m.name}", m.value))
    for c in fam.consts:
        lines.append(f'    printf("{c.name} %llu\\n", (unsigned long long){p}{c.name});')
        want.append((c.name, c.value))
    for m in fam.messages:
        lo = f"xdna_{fam.name}_{m.op.lower()}"
        lines.append(f'    printf("{m.op}.req %zu %u\\n", sizeof({lo}_req_t), {p}{fam.opcodes.cname}_{m.op}_REQ_SIZE);')
        lines.append(f'    printf("{m.op}.resp %zu %u\\n", sizeof({lo}_resp_t), {p}{fam.opcodes.cname}_{m.op}_RESP_SIZE);')
        want += [(f"{m.op}.req", m.req.size), (f"{m.op}.resp", m.resp.size)]
    lines += ["    return 0;", "}"]
    return "\n".join(lines) + "\n", want


@pytest.mark.parametrize("fam", FAMILIES, ids=lambda fam: fam.name)
def test_c_header_matches_python(fam, tmp_path: Path) -> None:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler")
    cgen.write(tmp_path)
    src, want = _probe_program(fam)
    (tmp_path / "probe.c").write_text(src)
    exe = tmp_path / "probe"
    subprocess.run([cc, "-std=gnu11", "-Wall", "-Wextra", "-Werror", "-pedantic", "-I", str(tmp_path),
                    str(tmp_path / "probe.c"), "-o", str(exe)], check=True, capture_output=True)
    out = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout
    got: dict[str, list[int]] = {}
    for line in out.splitlines():
        key, *vals = line.split()
        got[key] = [int(v) for v in vals]
    for key, value in want:
        assert all(v == value for v in got[key]), (key, got[key], value)


def test_messages_module_derives_from_the_table() -> None:
    """fw/messages.py holds names, not numbers: every codec and enum is the table's."""
    assert M.MSG_HEADER is aie2.MSG_HEADER.codec
    assert M.MGMT_INFO is aie2.MGMT_MBOX_CHANN_INFO.codec
    assert M.Opcode is aie2.OPCODE.py and M.Status is aie2.STATUS.py
    assert {int(op) for op in M.LAYOUTS} == {int(M.Opcode[m.op]) for m in aie2.MESSAGES}
    for m in aie2.MESSAGES:
        lay = M.LAYOUTS[M.Opcode[m.op]]
        assert lay.req is m.req.codec and lay.resp is m.resp.codec
    # the generated enums pickle by name (fuzz snapshots and multiprocessing copy them)
    assert pickle.loads(pickle.dumps(M.Opcode.SUSPEND)) is M.Opcode.SUSPEND
    text = (ROOT / "xdna_emu/fw/messages.py").read_text()
    assert not re.findall(r"\b0x[0-9A-Fa-f]{2,}\b", text), "a number typed outside the table"
    assert "struct.Struct(" not in text


def test_driver_sizes() -> None:
    """Sizes the driver's packed structs have (a typo in the table fails here)."""
    sizes = {name: s.size for name, s in (
        ("create_req", M.LAYOUTS[M.Opcode.CREATE_CONTEXT].req),
        ("create_resp", M.LAYOUTS[M.Opcode.CREATE_CONTEXT].resp),
        ("map", M.LAYOUTS[M.Opcode.MAP_HOST_BUFFER].req),
        ("config_cu", M.LAYOUTS[M.Opcode.CONFIG_CU].req),
        ("exec_dpu", M.LAYOUTS[M.Opcode.EXEC_DPU].req),
        ("exec_npu", M.LAYOUTS[M.Opcode.EXEC_NPU].req),
        ("chain_npu", M.LAYOUTS[M.Opcode.CHAIN_EXEC_NPU].req),
        ("tile_info", M.LAYOUTS[M.Opcode.QUERY_AIE_TILE_INFO].resp),
        ("slot_npu", M.SLOT_NPU), ("slot_dpu", M.SLOT_DPU), ("slot_cf", M.SLOT_CF),
        ("health", M.APP_HEALTH), ("mgmt_info", M.MGMT_INFO), ("aie_error", M.AIE_ERROR_ENTRY),
    )}  # fmt: skip
    assert sizes == {"create_req": 28, "create_resp": 76, "map": 20, "config_cu": 132,
                     "exec_dpu": 160, "exec_npu": 160, "chain_npu": 24, "tile_info": 48,
                     "slot_npu": 52, "slot_dpu": 24, "slot_cf": 8, "health": 560,
                     "mgmt_info": 64, "aie_error": 12}  # fmt: skip


def test_named_pack_unpack() -> None:
    req = aie2.MESSAGES[[m.op for m in aie2.MESSAGES].index("CREATE_CONTEXT")].resp
    cq = {"x2i_q": {"head_addr": 1, "tail_addr": 2, "buf_addr": 3, "buf_size": 4},
          "i2x_q": {"head_addr": 5, "tail_addr": 6, "buf_addr": 7, "buf_size": 8}}
    buf = req.pack(status=0, context_id=3, msix_id=4, num_cq_pairs_allocated=1, cq_pair=[cq])
    assert req.codec.unpack(buf) == (0, 3, 4, 1, 0, *range(1, 9), *([0] * 8))
    back = req.unpack(buf)
    assert back["cq_pair"][0] == cq and back["msix_id"] == 4
    assert back["cq_pair"][1]["i2x_q"]["buf_size"] == 0
    health = aie2.APP_HEALTH_REPORT
    assert health.unpack(health.pack(size=560, fatal_error_info=b"\x01"))["fatal_error_info"][:2] == b"\x01\0"
    with pytest.raises(KeyError):
        aie2.SLOT_EXECBUF_CF.pack(cu=1)


def test_duplicate_field_rejected() -> None:
    with pytest.raises(ValueError):
        Struct("bad", (f("a", U32), f("a", U32)))


def test_no_firmware_number_typed_in_csrc() -> None:
    """The shim takes every firmware opcode, status and magic number from the generated
    header: none is defined by hand in csrc/ (generated files excluded)."""
    fam = aie2.FAMILY
    magic = {fam.const(n) for n in ("TOMBSTONE", "MSG_ID_MAGIC", "MSG_ID_MAGIC_MASK",
                                    "MGMT_INFO_MAGIC", "HEAP_DEV_ADDR")}
    statuses = {m.value for m in aie2.STATUS.members if m.value} | {
        m.value for m in aie2.PSP_STATUS.members if m.value}
    bad = []
    for path in sorted((ROOT / "csrc").glob("*.[ch]")):
        for no, line in enumerate(path.read_text().splitlines(), 1):
            code = re.sub(r"/\*.*?(\*/|$)", "", line)
            if code.lstrip().startswith("*"):
                continue
            for lit in re.findall(r"\b0x[0-9A-Fa-f]+", code):
                if int(lit, 16) in magic | statuses:
                    bad.append(f"{path.name}:{no}: {line.strip()}")
            if re.match(r"\s*#define\s+(MSG|PSP|SMU|STATUS)_\w+\s", line):
                bad.append(f"{path.name}:{no}: {line.strip()}")
            if re.search(r"case 0x[0-9A-Fa-f]+: return \"", line):
                bad.append(f"{path.name}:{no}: {line.strip()}")
    assert not bad, "firmware numbers typed by hand:\n" + "\n".join(bad)


def test_fuzz_dictionary_tokens_match_the_table() -> None:
    """fuzz/dict/mailbox.dict is data for libFuzzer; its firmware tokens must be the table's."""
    fam = aie2.FAMILY
    tokens = {}
    for line in (ROOT / "fuzz/dict/mailbox.dict").read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            name, _, value = line.partition("=")
            tokens[name] = bytes(value.strip('"').encode().decode("unicode_escape"), "latin-1")
    le = fam.const
    assert tokens["id_magic"] == le("MSG_ID_MAGIC").to_bytes(4, "little")
    assert tokens["id_magic_slot1"] == (le("MSG_ID_MAGIC") | 1).to_bytes(4, "little")
    assert tokens["tombstone"] == le("TOMBSTONE").to_bytes(4, "little")
    assert tokens["mgmt_magic"] == le("MGMT_INFO_MAGIC").to_bytes(4, "little")
    assert tokens["szver"] == (4 | le("MSG_PROTOCOL_VERSION") << 16).to_bytes(4, "little")
