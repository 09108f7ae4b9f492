"""Python names for the AIE2 firmware interface, all derived from its one table.

Every number and layout is defined in ``xdna_emu/fw/iface/aie2.py`` (docs/spec/firmware.md
"The firmware interface table"); this module only gives the emulated firmware blocks and the
test driver their familiar names: ``IntEnum`` classes, constants and ``struct.Struct``
codecs whose flat value order is the table's field order.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .iface import aie2 as _T

_C = {c.name: c.value for c in _T.FAMILY.consts}

# -- PSP and SMU --------------------------------------------------------------------------

PspCmd = _T.PSP_CMD.py
PspStatus = _T.PSP_STATUS.py
SmuCmd = _T.SMU_CMD.py
SmuResp = _T.SMU_RESP.py
PSP_START_COPY_FW: int = _C["PSP_START_COPY_FW"]
PSP_STATUS_READY: int = _C["PSP_STATUS_READY"]
PSP_FW_ALIGN: int = _C["PSP_FW_ALIGN"]

# -- mailbox --------------------------------------------------------------------------------

TOMBSTONE: int = _C["TOMBSTONE"]
MSG_ID_MAGIC: int = _C["MSG_ID_MAGIC"]
MSG_ID_MAGIC_MASK: int = _C["MSG_ID_MAGIC_MASK"]
MSG_PROTOCOL_VERSION: int = _C["MSG_PROTOCOL_VERSION"]
MSG_SIZE_MASK: int = _C["MSG_SIZE_MASK"]
MSG_VERSION_SHIFT: int = _C["MSG_VERSION_SHIFT"]
MSG_HEADER = _T.MSG_HEADER.codec  # total_size, sz_ver, id, opcode
MAX_MSG_PAYLOAD = MSG_SIZE_MASK


def sz_ver(size: int) -> int:
    """The header's sz_ver word for a payload of ``size`` bytes."""
    return (size & MSG_SIZE_MASK) | (MSG_PROTOCOL_VERSION << MSG_VERSION_SHIFT)


MGMT_INFO = _T.MGMT_MBOX_CHANN_INFO.codec
MGMT_INFO_MAGIC: int = _C["MGMT_INFO_MAGIC"]

# -- firmware messages ------------------------------------------------------------------------

Opcode = _T.OPCODE.py
Status = _T.STATUS.py
AsyncEventType = _T.ASYNC_EVENT_TYPE.py
UPDATE_PROPERTY_TIME_QUOTA: int = _C["UPDATE_PROPERTY_TIME_QUOTA"]
ASYNC_EVENT_BUF_SIZE: int = _C["ASYNC_EVENT_BUF_SIZE"]


@dataclass(frozen=True)
class Layout:
    """Packed little-endian request and response formats of one opcode."""

    req: struct.Struct
    resp: struct.Struct


STATUS_ONLY = _T.STATUS_RESP.codec

#: Request and response codecs of every opcode the emulated firmware implements.
LAYOUTS: dict[Opcode, Layout] = {  # type: ignore[valid-type]
    Opcode[m.op]: Layout(m.req.codec, m.resp.codec) for m in _T.MESSAGES
}

#: The table's message of each opcode, for named access (``.req.offsets``, ``.req.pack(**f)``).
MESSAGES = {Opcode[m.op]: m for m in _T.MESSAGES}

#: The mgmt queries (the table's ``query`` flag): answers that read no request field and
#: depend only on the booted image and the chip (docs/spec/jobs.md §7 "Management queries").
MGMT_QUERIES: tuple[Opcode, ...] = tuple(Opcode[m.op] for m in _T.MESSAGES if m.query)  # type: ignore[valid-type]

#: Order of the u16 fields after {status, size} in the QUERY_AIE_TILE_INFO response.
TILE_INFO_FIELDS = _T.TILE_INFO_FIELDS

# -- hardware contexts and jobs (docs/spec/jobs.md) ----------------------------------------

HEAP_DEV_ADDR: int = _C["HEAP_DEV_ADDR"]
CMD_LIST_MAX: int = _C["CMD_LIST_MAX"]
KERNEL_OP_TXN: int = _C["KERNEL_OP_TXN"]
CONFIG_CU_MAX: int = _C["CONFIG_CU_MAX"]
CU_PDI_SHIFT: int = _C["CU_PDI_SHIFT"]
CU_FUNC_SHIFT: int = _C["CU_FUNC_SHIFT"]
APP_HEALTH = _T.APP_HEALTH_REPORT.codec
APP_HEALTH_SIZE = APP_HEALTH.size
SlotType = _T.SLOT_TYPE.py
#: cmd-list slot headers, each followed by ``arg_cnt`` u32 words.
SLOT_NPU = _T.SLOT_NPU.codec
SLOT_DPU = _T.SLOT_DPU.codec
SLOT_CF = _T.SLOT_EXECBUF_CF.codec
FatalType = _T.FATAL_TYPE.py
FATAL_ERROR_INFO = _T.FATAL_ERROR_INFO.codec  # emulator-defined values
CTX_HEALTH_DATA = _T.CTX_HEALTH_DATA.codec
CTX_HEALTH_FIELDS = tuple(fl.name for fl in _T.CTX_HEALTH_DATA.fields)
TXN_OP_NONE: int = _C["TXN_OP_NONE"]
DEBUG_MARKER = _T.DEBUG_MARKER.codec  # emulator-defined
COL_STATUS = _T.COL_STATUS.codec  # emulator-defined: one column of QUERY_COL_STATUS
COL_STATUS_FIELDS = tuple(fl.name for fl in _T.COL_STATUS.fields)
ColState = _T.COL_STATE.py
CoreStatus = _T.CORE_STATUS.py
NO_CONTEXT: int = _C["NO_CONTEXT"]
TelemetryType = _T.TELEMETRY_TYPE.py
TELEMETRY_HEALTH = _T.TELEMETRY_HEALTH.codec  # emulator-defined
TELEMETRY_CTX = _T.TELEMETRY_CTX.codec
TELEMETRY_VERSION = (_C["TELEMETRY_MAJOR"], _C["TELEMETRY_MINOR"])
DEBUG_MARKER_MAGIC: int = _C["DEBUG_MARKER_MAGIC"]
DEBUG_BO_MIN: int = _C["DEBUG_BO_MIN"]
AIE_ERROR_ENTRY = _T.AIE_ERROR.codec
ASYNC_EVENT_HDR = _T.ASYNC_EVENT_HDR.codec
# firmware log and trace rings (docs/spec/firmware.md §8a)
FwLogLevel = _T.FW_LOG_LEVEL.py
FwLogDest = _T.FW_LOG_DEST.py
FwTraceDest = _T.FW_TRACE_DEST.py
FwTraceCategory = _T.FW_TRACE_CATEGORY.py
FwTraceEvent = _T.FW_TRACE_EVENT.py
DPT_FOOTER = _T.DPT_FOOTER.codec
FW_LOG_HEADER = _T.FW_LOG_HEADER.codec
FW_TRACE_RECORD = _T.FW_TRACE_RECORD.codec
DPT_CONSTS = {k: _C[k] for k in (
    "RT_LOG_LEVEL", "RT_LOG_FORMAT", "RT_LOG_DESTINATION", "DPT_FOOTER_PAGE", "DPT_BUF_MIN",
    "DPT_BUF_MAX", "FW_LOG_MSG_ALIGN", "FW_LOG_APP_MGMT", "FW_LOG_PAYLOAD_VERSION",
    "FW_TRACE_PAYLOAD_VERSION", "DPT_MAJOR", "DPT_MINOR")}

# -- AIE async errors (docs/spec/jobs.md §6) -------------------------------------------------

AieModule = _T.AIE_MODULE.py
AieErrorCategory = _T.AIE_ERROR_CATEGORY.py
XrtErrorNum = _T.XRT_ERROR_NUM.py
XrtErrorModule = _T.XRT_ERROR_MODULE.py
XrtErrorSeverity = _T.XRT_ERROR_SEVERITY.py
XrtErrorClass = _T.XRT_ERROR_CLASS.py
XRT_DRIVER_AIE: int = _C["XRT_DRIVER_AIE"]
XRT_SHIFTS = {k: _C[f"XRT_{k.upper()}_SHIFT"] for k in ("num", "driver", "severity", "module", "class")}
#: Every number-to-number table by name (AIE event -> category, category -> xrtErrorNum, ...).
LOOKUPS: dict[str, dict[int, int]] = {t.name: t.mapping for t in _T.FAMILY.lookups}
