"""The AIE4 firmware interface table: the layouts the driver facts fix have their sizes, every
opcode and status is the driver's, and the Python names derive from the one table."""

from __future__ import annotations

import pickle

import pytest

from xdna_emu.fw.aie4 import messages as M
from xdna_emu.fw.iface import aie2, aie4, cgen


def test_fixed_layout_sizes() -> None:
    assert M.MAILBOX_INFO.size == 64 and M.MAILBOX_INFO.offsets["i2x_msi_idx"] == 44
    assert M.HSA_QUEUE_HEADER.size == 32
    assert M.HSA_QUEUE_HEADER.offsets == {"read_index": 0, "major": 8, "minor": 10, "capacity": 12,
                                          "write_index": 16, "data_address": 24}
    assert M.HSA_PKT.size == 64 and M.HSA_PKT_HEADER.size == 16
    assert M.HSA_PKT_HEADER.offsets["completion_signal"] == 8
    assert M.HSA_INDIRECT_ENTRY.size == 8 and M.HSA_INDIRECT_PKT.size == 32
    assert 6 * M.HSA_INDIRECT_ENTRY.size <= 48  # six entries fit in the packet data
    assert M.HSA_QUEUE_BYTES == 32 + 32 * 64 + 32 * 6 * 32
    resp = M.MESSAGES[M.Opcode.QUERY_CERT_FIRMWARE_VERSION].resp
    assert resp.size == 60
    create = M.MESSAGES[M.Opcode.CREATE_HW_CONTEXT]
    assert list(create.resp.offsets) == ["status", "hw_context_id", "doorbell_offset",
                                         "job_complete_msix_idx"]


def test_driver_numbers() -> None:
    assert M.PspCmd.VALIDATE_CERT == 4 and M.PSP_NOTIFY_INTR == 0xD007BE11
    assert M.CERT_MAX == 32 * 1024 + 256 and M.CERT_ALIGN == 32 * 1024
    assert M.WORK_BUFFER_SIZE == 4 << 20
    assert M.Status.NOTSUPP == 2 and M.Status.ASYNC_MSGS_FULL == 3
    assert M.Opcode.IDENTIFY == 0x10002 and M.Opcode.QUERY_CERT_FIRMWARE_VERSION == 0x1000F
    assert M.Opcode.CREATE_PARTITION == 0x30001 and M.Opcode.GET_CURRENT_DPM_LEVEL == 0x30013
    assert M.Opcode.CREATE_VFS == 0x20001 and M.AsyncEventType.CTX_ERROR == 2
    assert len(M.RuntimeConfigType) == 14 and M.RuntimeConfigType.CTX_SWITCH_HYSTERESIS == 13
    # AIE4's PSP statuses extend AIE2's without changing any shared value
    for m in aie2.PSP_STATUS.members:
        assert M.PspStatus[m.name] == m.value
    assert len({int(s) for s in M.PspStatus}) == len(M.PspStatus)


def test_runtime_config_payloads_are_per_type() -> None:
    sizes = {t: s.size for t, s in M.RUNTIME_CONFIG_PAYLOADS.items()}
    assert set(sizes) == set(M.RuntimeConfigType)
    assert len(set(sizes.values())) > 1  # the request size varies with the type
    assert M.RUNTIME_CONFIG_PAYLOADS[M.RuntimeConfigType.CONTEXT_TIMEOUT].offsets == {"timeout_ms": 0}


def test_enums_pickle_from_their_module() -> None:
    for cls in (M.Opcode, M.Status, M.PspStatus, M.RuntimeConfigType, M.CtxErrorType):
        member = next(iter(cls))
        assert pickle.loads(pickle.dumps(member)) is member
    assert M.Opcode is not aie2.OPCODE.py  # a sibling table, not AIE2's


@pytest.mark.parametrize("name", ["PSP_NOTIFY_INTR", "CERT_MAX", "WORK_BUFFER_SIZE"])
def test_header_defines_the_constants(name: str) -> None:
    text = cgen.render(aie4.FAMILY)
    assert f"#define XDNA_AIE4_{name} 0x{aie4.FAMILY.const(name):X}u" in text
    assert "XDNA_AIE4_MSG_CREATE_HW_CONTEXT_REQ_SIZE 24u" in text


def test_no_aie4_number_typed_in_csrc() -> None:
    """The shim takes AIE4 opcodes, statuses and magic numbers from the generated header."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    fam = aie4.FAMILY
    numbers = {m.value for m in aie4.OPCODE.members} | {
        m.value for m in aie4.PSP_STATUS.members if m.value} | {
        fam.const("PSP_NOTIFY_INTR"), fam.const("WORK_BUFFER_SIZE"), fam.const("CERT_MAX")}
    bad = []
    for path in sorted((root / "csrc").glob("*.[ch]")):
        for no, line in enumerate(path.read_text().splitlines(), 1):
            code = re.sub(r"/\*.*?(\*/|$)", "", line)
            for lit in re.findall(r"\b0x[0-9A-Fa-f]+", code):
                if int(lit, 16) in numbers:
                    bad.append(f"{path.name}:{no}: {line.strip()}")
    assert not bad, "AIE4 numbers typed by hand:\n" + "\n".join(bad)
