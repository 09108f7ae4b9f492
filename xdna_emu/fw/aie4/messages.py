"""Python names for the AIE4 firmware interface, all derived from its one table
(``xdna_emu/fw/iface/aie4.py``; docs/spec/firmware.md "The firmware interface table")."""

from __future__ import annotations

from ..iface import Struct
from ..iface import aie4 as _T

_C = {c.name: c.value for c in _T.CONSTS}

PspCmd = _T.PSP_CMD.py
PspStatus = _T.PSP_STATUS.py
Opcode = _T.OPCODE.py
Status = _T.STATUS.py
RuntimeConfigType = _T.RUNTIME_CONFIG_TYPE.py
AsyncEventType = _T.ASYNC_EVENT_TYPE.py
CtxErrorType = _T.CTX_ERROR_TYPE.py
PowerMode = _T.POWER_MODE.py
HsaOpcode = _T.HSA_OPCODE.py
ChainFlag = _T.CHAIN_FLAG.py
CtxProperty = _T.CTX_PROPERTY.py
CmdState = _T.CMD_STATE.py

PSP_NOTIFY_INTR: int = _C["PSP_NOTIFY_INTR"]
PSP_CMD_SHIFT: int = _C["PSP_CMD_SHIFT"]
PSP_ARG_MASK: int = _C["PSP_ARG_MASK"]
PSP_STATUS_READY: int = _C["PSP_STATUS_READY"]
PSP_START_COPY_FW: int = _C["PSP_START_COPY_FW"]
PSP_FW_ALIGN: int = _C["PSP_FW_ALIGN"]
CERT_ALIGN: int = _C["CERT_ALIGN"]
CERT_MAX: int = _C["CERT_MAX"]
MBOX_INFO_VALID: int = _C["MBOX_INFO_VALID"]
WORK_BUFFER_SIZE: int = _C["WORK_BUFFER_SIZE"]
PASID_MASK: int = _C["PASID_MASK"]
PASID_VALID: int = _C["PASID_VALID"]
DESTROY_GRACEFUL: int = _C["DESTROY_GRACEFUL"]
ASYNC_EVENT_BUF_SIZE: int = _C["ASYNC_EVENT_BUF_SIZE"]
HSA_QUEUE_SLOTS: int = _C["HSA_QUEUE_SLOTS"]
HSA_INDIRECT_PER_SLOT: int = _C["HSA_INDIRECT_PER_SLOT"]
HSA_INDIRECT_ADDR_HI_MASK: int = _C["HSA_INDIRECT_ADDR_HI_MASK"]
HSA_INDIRECT_UC_SHIFT: int = _C["HSA_INDIRECT_UC_SHIFT"]
CMD_STATE_MASK: int = _C["CMD_STATE_MASK"]
CERT_LOG_UCS: int = _C["CERT_LOG_UCS"]
CERT_LOG_MAGIC: int = _C["CERT_LOG_MAGIC"]

MAILBOX_INFO = _T.MAILBOX_INFO
HSA_QUEUE_HEADER = _T.HSA_QUEUE_HEADER
HSA_PKT = _T.HSA_PKT
HSA_PKT_HEADER = _T.HSA_PKT_HEADER
HSA_EXEC_BUF = _T.HSA_EXEC_BUF
HSA_INDIRECT_ENTRY = _T.HSA_INDIRECT_ENTRY
HSA_INDIRECT_PKT = _T.HSA_INDIRECT_PKT
CTX_ERROR_EVENT = _T.CTX_ERROR_EVENT
CERT_LOG_SLICE = _T.CERT_LOG_SLICE
CERT_LOG_DESC = _T.CERT_LOG_DESC
CERT_LOG_HEADER = _T.CERT_LOG_HEADER
CERT_LOG_RECORD = _T.CERT_LOG_RECORD
TILE_INFO_FIELDS = _T.TILE_INFO_FIELDS

HSA_PKT_SIZE = HSA_PKT.size
HSA_INDIRECT_SIZE = HSA_INDIRECT_PKT.size

#: Byte offsets inside a queue BO: header, 32 packets, then 32 x 6 indirect packets.
HSA_PKTS_OFF = HSA_QUEUE_HEADER.size
HSA_INDIRECT_OFF = HSA_PKTS_OFF + HSA_QUEUE_SLOTS * HSA_PKT_SIZE
HSA_QUEUE_BYTES = HSA_INDIRECT_OFF + HSA_QUEUE_SLOTS * HSA_INDIRECT_PER_SLOT * HSA_INDIRECT_SIZE

#: The table's message of each opcode (``.req``/``.resp`` structs).
MESSAGES = {Opcode[m.op]: m for m in _T.MESSAGES}

#: SET/GET_RUNTIME_CONFIG payload of each type.
RUNTIME_CONFIG_PAYLOADS: dict[int, Struct] = {
    RuntimeConfigType[name]: s for name, s in _T.RUNTIME_CONFIG_PAYLOADS.items()
}
