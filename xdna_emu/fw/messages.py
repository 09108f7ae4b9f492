"""Numbers and layouts shared by the emulated AIE2 firmware blocks and the test driver.

Opcodes, status words and payload sizes follow the amdxdna driver (amdxdna-facts.md §2-§5);
they are interface facts restated here, not driver code. Values the driver never sees
(everything marked *emulator-defined*) are our own choice and documented in
docs/spec/firmware.md.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

# -- PSP ------------------------------------------------------------------------------


class PspCmd(IntEnum):
    """PSP commands written to the CMD register (aie_common.h command numbers)."""

    VALIDATE = 1
    START = 2
    RELEASE_TMR = 3


PSP_START_COPY_FW = 1  # START argument: copy the validated image into the firmware region
PSP_STATUS_READY = 1 << 31  # STATUS bit31: the command finished, RESP is valid


class PspStatus(IntEnum):
    """Values the PSP writes to RESP. Only OK, CANCEL and BAD_STATE are driver-visible facts;
    the rest are emulator-defined so each failure is distinguishable in tests and logs."""

    OK = 0
    CANCEL = 0xFFFF0002
    BAD_STATE = 0xFFFF0007
    # emulator-defined
    UNKNOWN_CMD = 0xFFFF0010
    BAD_ARG = 0xFFFF0011
    NO_POWER = 0xFFFF0012
    DMA_FAULT = 0xFFFF0013
    IMG_ALIGN = 0xFFFF0020
    IMG_SIZE = 0xFFFF0021
    IMG_MAGIC = 0xFFFF0022
    IMG_FORMAT = 0xFFFF0023
    IMG_TRUNCATED = 0xFFFF0024
    IMG_CHIP = 0xFFFF0025
    IMG_DIGEST = 0xFFFF0026
    IMG_SIGNATURE = 0xFFFF0027


# -- SMU ------------------------------------------------------------------------------


class SmuCmd(IntEnum):
    """SMU message numbers (aie_common.h)."""

    POWER_ON = 3
    POWER_OFF = 4
    SET_MPNPUCLK_FREQ = 5
    SET_HCLK_FREQ = 6
    SET_SOFT_DPMLEVEL = 7
    SET_HARD_DPMLEVEL = 8


class SmuResp(IntEnum):
    """SMU RESP values. OK=1 is the driver fact (SMU_RESULT_OK); the error values follow the
    general AMD SMU mailbox convention and are emulator-chosen for the NPU."""

    OK = 0x01
    FAIL = 0xFF
    UNKNOWN_CMD = 0xFE
    REJECTED_PREREQ = 0xFD


# -- mailbox --------------------------------------------------------------------------

TOMBSTONE = 0xDEADFACE  # ring wrap marker written where the next header would start
MSG_ID_MAGIC = 0x1D000000  # top byte of every message id
MSG_ID_MAGIC_MASK = 0xFF000000
MSG_PROTOCOL_VERSION = 1  # sz_ver bits 23:16
MSG_SIZE_MASK = 0x7FF  # sz_ver bits 10:0
MSG_HEADER = struct.Struct("<IIII")  # total_size, sz_ver, id, opcode
MAX_MSG_PAYLOAD = MSG_SIZE_MASK


def sz_ver(size: int) -> int:
    """The header's sz_ver word for a payload of ``size`` bytes."""
    return (size & MSG_SIZE_MASK) | (MSG_PROTOCOL_VERSION << 16)


#: mgmt_mbox_chann_info, 64 bytes of u32: x2i tail/head/buf/buf_sz, i2x tail/head/buf/buf_sz,
#: magic, msi_id, prot_major, prot_minor, rsvd[4]. Addresses are absolute device addresses.
MGMT_INFO = struct.Struct("<16I")
MGMT_INFO_MAGIC = 0x55504E5F  # "_NPU"

# -- mgmt firmware messages -----------------------------------------------------------


class Opcode(IntEnum):
    """AIE2 firmware message opcodes (aie2_msg_priv.h numbers)."""

    REGISTER_PDI = 0x1
    CREATE_CONTEXT = 0x2
    DESTROY_CONTEXT = 0x3
    GET_TELEMETRY = 0x4
    SYNC_BO = 0x7
    UNREGISTER_PDI = 0xA
    LEGACY_CONFIG_CU = 0xB
    EXECUTE_BUFFER_CF = 0xC
    QUERY_COL_STATUS = 0xD
    QUERY_AIE_TILE_INFO = 0xE
    QUERY_AIE_VERSION = 0xF
    EXEC_DPU = 0x10
    CONFIG_CU = 0x11
    CHAIN_EXEC_BUFFER_CF = 0x12
    CHAIN_EXEC_DPU = 0x13
    CONFIG_DEBUG_BO = 0x14
    EXEC_DPU_PREEMPT = 0x15
    EXEC_NPU = 0x17
    CHAIN_EXEC_NPU = 0x18
    SUSPEND = 0x101
    RESUME = 0x102
    ASSIGN_MGMT_PASID = 0x103
    INVOKE_SELF_TEST = 0x104
    MAP_HOST_BUFFER = 0x106
    GET_FIRMWARE_VERSION = 0x108
    SET_RUNTIME_CONFIG = 0x10A
    GET_RUNTIME_CONFIG = 0x10B
    REGISTER_ASYNC_EVENT_MSG = 0x10C
    START_FW_TRACE = 0x10F
    STOP_FW_TRACE = 0x110
    SET_FW_TRACE_CATEGORIES = 0x111
    UPDATE_PROPERTY = 0x113
    GET_APP_HEALTH = 0x114
    ADD_HOST_BUFFER = 0x115
    CONFIG_FW_LOG = 0x116
    GET_DEV_REVISION = 0x117
    GET_COREDUMP = 0x119
    CALIBRATE_TIME = 0x11C
    AIE_RW_ACCESS = 0x203
    GET_PROTOCOL_VERSION = 0x301


class Status(IntEnum):
    """Firmware status words (word 0 of every response)."""

    SUCCESS = 0
    AIE_SATURATION_ERROR = 0x1000001
    AIE_FP_ERROR = 0x1000002
    AIE_STREAM_ERROR = 0x1000003
    AIE_ACCESS_ERROR = 0x1000004
    AIE_BUS_ERROR = 0x1000005
    AIE_INSTRUCTION_ERROR = 0x1000006
    AIE_ECC_ERROR = 0x1000007
    AIE_LOCK_ERROR = 0x1000008
    AIE_DMA_ERROR = 0x1000009
    AIE_MEM_PARITY_ERROR = 0x100000A
    AIE_PWR_CFG_ERROR = 0x100000B
    AIE_BACKTRACK_ERROR = 0x100000C
    MGMT_ERT_SELF_TEST_FAILURE = 0x2000001
    MGMT_ERT_HASH_MISMATCH = 0x2000002
    MGMT_ERT_NOAVAIL = 0x2000003
    MGMT_ERT_INVALID_PARAM = 0x2000004
    MGMT_ERT_ENTER_SUSPEND_FAILURE = 0x2000005
    MGMT_ERT_BUSY = 0x2000006
    MGMT_ERT_APPLICATION_ACTIVE = 0x2000007
    MGMT_ERT_DRAM_BUFFER_SIZE_INVALID = 0x2000008
    APP_ERT_FIRST_ERROR = 0x3000001
    APP_ERT_INVALID_INSTRUCTION = 0x3000002
    APP_ERT_LOAD_PDI_FAILURE = 0x3000003
    RTOS_INVALID_INPUT_BUF = 0x4000001
    RTOS_INVALID_CMD = 0x4000002
    RTOS_INVALID_PARAM = 0x4000003
    RTOS_INVALID_OP = 0x4000006
    RTOS_ASYNC_EVENT_MSGS_FULL = 0x4000007
    RTOS_DEBUG_BO_CONFIG_FAILED = 0x4000008
    RTOS_PROPERTY_UPDATE_FAILED = 0x400000A
    RTOS_ACTIVE_APP = 0x400000B


class AsyncEventType(IntEnum):
    AIE_ERROR = 0
    EXCEPTION = 1


UPDATE_PROPERTY_TIME_QUOTA = 0
ASYNC_EVENT_BUF_SIZE = 0x2000  # what the driver registers (8 KiB)


@dataclass(frozen=True)
class Layout:
    """Packed little-endian request and response formats of one opcode."""

    req: struct.Struct
    resp: struct.Struct


def _l(req: str, resp: str) -> Layout:
    return Layout(struct.Struct("<" + req), struct.Struct("<" + resp))


_RSVD = "I"  # the 4-byte "u32 reserved" request of the query-style messages
STATUS_ONLY = struct.Struct("<I")

#: Layouts of the management opcodes this firmware implements. Sizes are the driver's
#: sizeof() of the packed structs (facts §5). GET_PROTOCOL_VERSION's request size is not
#: in the facts; we take the common 4-byte reserved request (inferred).
LAYOUTS: dict[Opcode, Layout] = {
    Opcode.SUSPEND: _l(_RSVD, "I"),
    Opcode.RESUME: _l(_RSVD, "I"),
    Opcode.ASSIGN_MGMT_PASID: _l("HH", "I"),
    Opcode.GET_FIRMWARE_VERSION: _l(_RSVD, "IIIII"),
    Opcode.SET_RUNTIME_CONFIG: _l("IQ", "I"),
    Opcode.GET_RUNTIME_CONFIG: _l("I", "IQ"),
    Opcode.REGISTER_ASYNC_EVENT_MSG: _l("QI", "II"),
    Opcode.UPDATE_PROPERTY: _l("IB7sII", "I"),
    Opcode.GET_DEV_REVISION: _l(_RSVD, "III"),
    Opcode.CALIBRATE_TIME: _l("Q", "I"),
    Opcode.QUERY_AIE_TILE_INFO: _l(_RSVD, "II20H"),
    Opcode.QUERY_AIE_VERSION: _l(_RSVD, "IHH"),
    Opcode.GET_PROTOCOL_VERSION: _l(_RSVD, "III"),
}

#: Order of the u16 fields after {status, size} in the QUERY_AIE_TILE_INFO response.
TILE_INFO_FIELDS = (
    "major", "minor", "cols", "rows", "core_rows", "mem_rows", "shim_rows",
    "core_row_start", "mem_row_start", "shim_row_start",
    "core_dma_channels", "mem_dma_channels", "shim_dma_channels",
    "core_locks", "mem_locks", "shim_locks", "core_events", "mem_events", "shim_events",
    "rsvd",
)  # fmt: skip

# -- hardware contexts and jobs (facts §5, §7, §9; docs/spec/jobs.md) ---------------------

HEAP_DEV_ADDR = 0x4000000  # device address of a client's DEV_HEAP (facts §9)
CMD_LIST_MAX = 0x10000  # emulator limit on a chain's cmd-list buffer (the driver uses 4 KiB)
APP_HEALTH_SIZE = 560  # sizeof(app_health_report)
#: app_health_report: u16 major, u16 minor, u32 size, context_id, dpu_pc, txn_op_id, ctx_pc,
#: fatal_error_info (532 B), run_list_id.
APP_HEALTH = struct.Struct("<HHIIIII532sI")
assert APP_HEALTH.size == APP_HEALTH_SIZE


class SlotType(IntEnum):
    """slot_npu ``type`` (facts §5)."""

    NON_ELF = 1
    PARTIAL_ELF = 2
    PREEMPT = 3
    ELF = 4


#: Packed cmd-list slot headers, each followed by ``arg_cnt`` u32 words (facts §5).
#: slot_npu: type, inst/save/restore addr (u64), inst/save/restore size, prop_cnt, cu_idx, arg_cnt.
SLOT_NPU = struct.Struct("<IQQQIIIIII")
#: slot_dpu: inst_buf_addr (u64), inst_size, prop_cnt, cu_idx, arg_cnt.
SLOT_DPU = struct.Struct("<QIIII")
#: slot_execbuf_cf: cu_idx, arg_cnt.
SLOT_CF = struct.Struct("<II")
assert (SLOT_NPU.size, SLOT_DPU.size, SLOT_CF.size) == (52, 24, 8)
#: aie_error entry of an AIE-error async event: row, col, rsvd, mod_type, event_id, rsvd[3].
AIE_ERROR_ENTRY = struct.Struct("<BBHIB3s")
ASYNC_EVENT_HDR = struct.Struct("<III")  # err_cnt, ret_code, rsvd

LAYOUTS.update({
    # mgmt channel
    Opcode.CREATE_CONTEXT: _l("IBBBBBBH8sII", "IIHBB16I"),
    Opcode.DESTROY_CONTEXT: _l("I", "I"),
    Opcode.MAP_HOST_BUFFER: _l("IQQ", "I"),
    Opcode.ADD_HOST_BUFFER: _l("IQQ", "I"),
    Opcode.GET_APP_HEALTH: _l("IIQ", "II7I"),
    # user channels
    Opcode.CONFIG_CU: _l("I32I", "I"),
    Opcode.SYNC_BO: _l("QQII", "I"),
    Opcode.EXECUTE_BUFFER_CF: _l("I19I", "I"),
    Opcode.EXEC_DPU: _l("QIII35I", "I"),
    Opcode.EXEC_NPU: _l("II3Q3III27I", "I"),
    Opcode.CHAIN_EXEC_BUFFER_CF: _l("QII", "III"),
    Opcode.CHAIN_EXEC_DPU: _l("QII", "III"),
    Opcode.CHAIN_EXEC_NPU: _l("IIQII", "III"),
})
assert [LAYOUTS[o].req.size for o in (Opcode.CREATE_CONTEXT, Opcode.MAP_HOST_BUFFER,
                                      Opcode.CONFIG_CU, Opcode.EXEC_DPU, Opcode.EXEC_NPU,
                                      Opcode.CHAIN_EXEC_NPU)] == [28, 20, 132, 160, 160, 24]
assert LAYOUTS[Opcode.CREATE_CONTEXT].resp.size == 76
