"""The AIE4 firmware interface (npu3 family): opcodes, statuses, PSP numbers, mailbox_info,
the HSA user-mode queue and every message layout, written once.

Numbers marked as driver facts are interface facts of the amdxdna driver (protocol 5.24)
restated here; ``emu(...)`` members and ``emulator=True`` constants are the emulator's own
choice, and layouts the driver facts do not spell out are marked "inferred" in their doc.
docs/spec/aie4.md explains every such choice. The C header, the Python codecs
(``xdna_emu.fw.aie4.messages``) and the AIE4 section of docs/spec/messages.md come from here.
The 16-byte message header, its id magic and the ring tombstone are AIE2's (the mailbox is
shared), so they are imported, not retyped.
"""

from __future__ import annotations

from . import U8, U16, U32, U64, Const, Enum, Family, Message, Struct, emu, f, members, raw
from .aie2 import CONSTS as _AIE2_CONSTS
from .aie2 import MSG_HEADER, SMU_CMD, SMU_RESP
from .aie2 import PSP_STATUS as _AIE2_PSP_STATUS

MODULE = "xdna_emu.fw.aie4.messages"

# -- PSP (docs/spec/aie4.md §3) ---------------------------------------------------------------

PSP_CMD = Enum("PspCmd", "PSP_CMD", members(
    ("VALIDATE", 1, "check the npu image at ARG0/ARG1 (IOVA), size in the low 24 bits of ARG2"),
    ("START", 2, "boot the validated images"),
    ("RELEASE_TMR", 3, "stop the firmware"),
    ("VALIDATE_CERT", 4, "check the cert image at ARG0/ARG1, size in ARG2's low 24 bits"),
), "AIE4 PSP commands, carried in ARG2 bits 31:24.", MODULE)

PSP_STATUS = Enum("PspStatus", "PSP_STATUS", members(
    *_AIE2_PSP_STATUS.members,
    emu("CERT_ALIGN", 0xFFFF0030, "the cert buffer is not 32 KiB aligned"),
    emu("CERT_SIZE", 0xFFFF0031, "the cert image is empty or larger than CERT_MAX"),
    emu("CERT_INVALID", 0xFFFF0032, "the cert image is damaged (magic, digest or signature)"),
    emu("CERT_CHIP", 0xFFFF0033, "the cert image is for another device"),
    emu("NO_CERT", 0xFFFF0034, "START before VALIDATE_CERT succeeded"),
), "Values the AIE4 PSP writes to RESP: AIE2's, plus emulator-defined cert failures so a "
   "damaged cert is told apart from a damaged npu image.", MODULE)

# -- mailbox_info and the mgmt channel (docs/spec/aie4.md §4) ----------------------------------

_SHARED = {c.name: c for c in _AIE2_CONSTS}

#: micro-controllers per context (uC indices 0..5): indirect entries and CERT log slices
HSA_UCS = 6

CONSTS = (
    *(_SHARED[n] for n in ("TOMBSTONE", "MSG_ID_MAGIC", "MSG_ID_MAGIC_MASK",
                           "MSG_PROTOCOL_VERSION", "MSG_SIZE_MASK", "PSP_START_COPY_FW",
                           "PSP_STATUS_READY", "PSP_FW_ALIGN")),
    Const("PSP_NOTIFY_INTR", 0xD007BE11, "value written to the PSP INTR register to run a command"),
    Const("PSP_CMD_SHIFT", 24, "ARG2 bits 31:24 hold the command"),
    Const("PSP_ARG_MASK", 0xFFFFFF, "ARG2 bits 23:0 hold the command's argument (a size)"),
    Const("CERT_ALIGN", 0x8000, "the cert image buffer is 32 KiB aligned"),
    Const("CERT_MAX", 0x8100, "largest cert image: 32 KiB + 256 bytes"),
    Const("MBOX_INFO_VALID", 1, "mailbox_info.valid once the firmware's mgmt channel is up"),
    Const("WORK_BUFFER_SIZE", 0x400000, "DRAM_WORK_BUFFER size the driver gives (4 MiB)"),
    Const("CTX_SWITCH_HYSTERESIS_US", 1000, "the driver's CTX_SWITCH_HYSTERESIS value"),
    Const("CONTEXT_TIMEOUT_MS", 2000, "CONTEXT_TIMEOUT the driver sends: its default "
          "timeout_in_sec (2 s) * 1000"),
    Const("PASID_MASK", 0xFFFFF, "CREATE_HW_CONTEXT pasid bits 19:0"),
    Const("PASID_VALID", 1 << 31, "CREATE_HW_CONTEXT pasid bit31: the pasid field is used"),
    Const("DESTROY_GRACEFUL", 1, "DESTROY_HW_CONTEXT flags bit0: let queued jobs finish"),
    Const("INVALID_DOORBELL", 0xFFFFFFFF, "doorbell offset of no doorbell"),
    Const("ASYNC_EVENT_BUF_SIZE", 0x1000, "bytes per ASYNC_EVENT_MSG buffer the shim gives",
          emulator=True),
    # the HSA user-mode queue (docs/spec/aie4.md §7)
    Const("HSA_QUEUE_SLOTS", 32, "packets in one queue (capacity)"),
    Const("HSA_INDIRECT_PER_SLOT", 6, "indirect packets per queue slot"),
    Const("HSA_QUEUE_MAJOR", 1, "queue header major version the shim writes", emulator=True),
    Const("HSA_QUEUE_MINOR", 0, "queue header minor version the shim writes", emulator=True),
    Const("HSA_INDIRECT_ADDR_HI_MASK", 0x1FFFFFF, "indirect entry addr hi: bits 24:0"),
    Const("HSA_INDIRECT_UC_SHIFT", 25, "indirect entry: uC index in bits 31:25"),
    Const("CMD_STATE_MASK", 0xF, "the state bits (3:0) of the word at completion_signal"),
    Const("CERT_LOG_UCS", HSA_UCS, "micro-controllers whose CERT log one context may attach"),
    Const("CERT_LOG_MAGIC", 0x474F4C43, "cert_log_header.magic (\"CLOG\")", emulator=True),
)  # fmt: skip

MAILBOX_INFO = Struct("mailbox_info", (
    f("valid", U32, "MBOX_INFO_VALID once the mgmt channel is up"),
    f("protocol_major", U32),
    f("protocol_minor", U32),
    f("x2i_tail_offset", U32, "mailbox-register BAR offset of the x2i tail register"),
    f("x2i_head_offset", U32),
    f("x2i_buffer_addr", U32, "ring-buffer BAR offset of the x2i ring"),
    f("x2i_buffer_size", U32),
    f("i2x_tail_offset", U32),
    f("i2x_head_offset", U32),
    f("i2x_buffer_addr", U32),
    f("i2x_buffer_size", U32),
    f("i2x_msi_idx", U32, "MSI-X vector of the mgmt channel"),
    f("rsvd", U32, count=4),
), "What the firmware publishes at ring-buffer BAR offset 0. Values are BAR offsets already.")

# -- firmware messages ---------------------------------------------------------------------------

OPCODE = Enum("Opcode", "MSG", members(
    ("ECHO", 0x10001),
    ("IDENTIFY", 0x10002),
    ("SUSPEND", 0x10003),
    ("ASYNC_EVENT_MSG", 0x10004),
    ("RUN_SELFTEST", 0x10005),
    ("GET_TELEMETRY", 0x10006),
    ("SET_RUNTIME_CONFIG", 0x10007),
    ("GET_RUNTIME_CONFIG", 0x10008),
    ("CALIBRATE_CLOCK", 0x10009),
    ("START_EVENT_TRACE", 0x1000A),
    ("STOP_EVENT_TRACE", 0x1000B),
    ("SET_EVENT_TRACE_CATEGORIES", 0x1000C),
    ("DRAM_WORK_BUFFER", 0x1000D),
    ("RELEASE_DRAM_WORK_BUFFER", 0x1000E),
    ("QUERY_CERT_FIRMWARE_VERSION", 0x1000F),
    ("SETUP_SCHEDULING_PRIORITY_BANDS", 0x10010),
    ("CREATE_VFS", 0x20001),
    ("DESTROY_VFS", 0x20002),
    ("CONFIGURE_VF", 0x20003),
    ("DRAM_LOGGING_START", 0x20004),
    ("DRAM_LOGGING_STOP", 0x20005),
    ("CREATE_PARTITION", 0x30001),
    ("DESTROY_PARTITION", 0x30002),
    ("CREATE_HW_CONTEXT", 0x30003),
    ("DESTROY_HW_CONTEXT", 0x30004),
    ("CONFIGURE_HW_CONTEXT", 0x30005),
    ("AIE_TILE_INFO", 0x30006),
    ("AIE_VERSION_INFO", 0x30007),
    ("AIE_COLUMN_INFO", 0x30008),
    ("DEPRECATED_30009", 0x30009, "deprecated, never sent"),
    ("POWER_HINT", 0x3000A),
    ("POWER_OVERRIDE", 0x3000B),
    ("AIE_DEBUG_ACCESS", 0x3000E),
    ("GET_APP_HEALTH_STATUS", 0x3000F),
    ("AIE_COREDUMP", 0x30010),
    ("CONFIGURE_JOB_CMPL_MSIX", 0x30011),
    ("GET_DPM_FREQ_TABLE", 0x30012),
    ("GET_CURRENT_DPM_LEVEL", 0x30013),
), "AIE4 firmware message opcodes (protocol 5.24).", MODULE)

STATUS = Enum("Status", "STATUS", members(
    ("SUCCESS", 0),
    ("ERROR", 1),
    ("NOTSUPP", 2, "an opcode the firmware does not implement"),
    ("ASYNC_MSGS_FULL", 3, "no room for another ASYNC_EVENT_MSG"),
), "AIE4 firmware status words (word 0 of every response).", MODULE)

RUNTIME_CONFIG_TYPE = Enum("RuntimeConfigType", "RTCFG", members(
    ("CLOCK_POWER_OVERRIDE", 0),
    ("FORCE_PREEMPT", 1),
    ("L1MMU_PREFETCH", 2),
    ("KEEP_PARTITIONS", 3),
    ("DPM_OVERRIDE", 4),
    ("DYN_LOG_LEVEL", 5),
    ("CERT_TIMEOUT", 6),
    ("EVENT_TRACE_STATUS", 7),
    ("DPM_ENABLE", 8),
    ("UTL_ENABLE", 9),
    ("ERROR_HANDLING", 10),
    ("HWS_DEBUG", 11),
    ("CONTEXT_TIMEOUT", 12, "ms; the driver sends timeout_in_sec * 1000"),
    ("CTX_SWITCH_HYSTERESIS", 13, "us"),
), "SET/GET_RUNTIME_CONFIG types; each has its own payload struct (RUNTIME_CONFIG_PAYLOADS).",
   MODULE)

ASYNC_EVENT_TYPE = Enum("AsyncEventType", "ASYNC_EVENT", members(
    ("AIE_ERROR", 0),
    ("EXCEPTION", 1),
    ("CTX_ERROR", 2, "a context failed; the buffer holds ctx_error_event"),
), "The type word of an ASYNC_EVENT_MSG response.", MODULE)

CTX_ERROR_TYPE = Enum("CtxErrorType", "CTX_ERROR", members(
    emu("HWSCH", 0), emu("STOP", 1), emu("AIE", 2), emu("PREEMPT_TIMEOUT", 3),
    emu("NEW_PROCESS", 4), emu("UC_CRITICAL", 5),
    emu("UC_COMPLETION_TIMEOUT", 6, "a job ran past the context timeout"),
), "ctx_error_event.error_type. The names are the driver's; their numbers follow its "
   "listing order (inferred).", MODULE)

POWER_MODE = Enum("PowerMode", "POWER_MODE", members(
    ("DEFAULT", 0), ("LOW", 1), ("MEDIUM", 2), ("HIGH", 3), ("TURBO", 4),
), "POWER_OVERRIDE mode.", MODULE)

HSA_OPCODE = Enum("HsaOpcode", "HSA_OP", members(
    ("EXEC_BUF", 1, "run the exec_buf in the packet data (or its indirect entries)"),
), "HSA packet opcodes.", MODULE)

CHAIN_FLAG = Enum("ChainFlag", "HSA_CHAIN", members(
    ("LAST", 0, "the last packet of a job"),
    ("NOT_LAST", 1, "the job continues in the next slot"),
), "HSA packet chain_flag.", MODULE)

CMD_STATE = Enum("CmdState", "CMD_STATE", members(
    ("NEW", 1), ("QUEUED", 2), ("RUNNING", 3), ("COMPLETED", 4), ("ERROR", 5), ("ABORT", 6),
    ("SUBMITTED", 7), ("TIMEOUT", 8), ("NORESPONSE", 9),
), "Command states (the ERT states of a command BO header, bits 3:0) the firmware writes "
   "at a packet's completion_signal.", MODULE)

CTX_PROPERTY = Enum("CtxProperty", "CTX_PROP", members(
    emu("DPM", 1, "value = the DPM level the context runs at"),
    emu("CERT_LOG", 2, "value = device address of a cert_log_desc (0: detach the log)"),
), "CONFIGURE_HW_CONTEXT properties the emulator knows (the driver sends DPM, inferred number).",
   MODULE)

# -- the HSA user-mode queue (docs/spec/aie4.md §7) ----------------------------------------------

HSA_QUEUE_HEADER = Struct("hsa_queue_header", (
    f("read_index", U64, "advanced by the firmware as packets finish"),
    f("major", U16), f("minor", U16),
    f("capacity", U32, "HSA_QUEUE_SLOTS"),
    f("write_index", U64, "advanced by the producer before it rings the doorbell"),
    f("data_address", U64, "device address of packet 0"),
), "The 32-byte queue header at the start of the queue BO.")

HSA_PKT_HEADER = Struct("hsa_pkt_header", (
    f("rsvd", U16),
    f("opcode", U8, "HsaOpcode"),
    f("chain_flag", U8, "ChainFlag"),
    f("count", U16, "bytes of data used (exec_buf) or indirect entries"),
    f("distribute", U8),
    f("indirect", U8, "1: data holds indirect entries"),
    f("completion_signal", U64, "device address the command state is written to"),
), "First 16 bytes of every packet; 12 u32 data words follow.")

HSA_EXEC_BUF = Struct("hsa_exec_buf", (
    f("dtrace_lo", U32),
    f("ctrlcode_lo", U32, "device address of the control code (the kernel descriptor)"),
    f("ctrlcode_hi", U32),
    f("args_len", U16, "bytes of arguments"),
    f("dtrace_hi", U16),
    f("args_lo", U32, "device address of the argument block"),
    f("args_hi", U32),
), "An exec_buf: what one micro-controller runs.")

HSA_PKT = Struct("hsa_pkt", (
    f("hdr", HSA_PKT_HEADER),
    f("data", U32, "exec_buf or indirect entries", count=12),
), "One 64-byte queue packet.")

HSA_INDIRECT_ENTRY = Struct("hsa_indirect_entry", (
    f("addr_lo", U32),
    f("addr_hi_uc", U32, "addr hi (bits 24:0) | uC index (bits 31:25)"),
), "One indirect entry: where a per-uC exec_buf packet is.")

HSA_INDIRECT_PKT = Struct("hsa_indirect_pkt", (
    f("exec", HSA_EXEC_BUF),
    f("rsvd", U32, count=2),
), "One 32-byte indirect packet: an exec_buf padded to 32 bytes (layout inferred).")

# -- CERT log buffers (docs/spec/aie4.md §11) ---------------------------------------------

CERT_LOG_SLICE = Struct("cert_log_slice", (
    f("uc_index", U32, "the micro-controller (below CERT_LOG_UCS)"),
    f("size", U32, "bytes of its slice"),
    f("addr", U64, "device address of its slice (context PASID)"),
), "One micro-controller's slice of a log buffer.")

CERT_LOG_DESC = Struct("cert_log_desc", (
    f("num_ucs", U32, "1..CERT_LOG_UCS slices"),
    f("rsvd", U32),
    f("slice", CERT_LOG_SLICE, count=HSA_UCS),
), "What CONFIGURE_HW_CONTEXT CERT_LOG points at (layout emulator-defined).")

CERT_LOG_HEADER = Struct("cert_log_header", (
    f("magic", U32, "CERT_LOG_MAGIC once the firmware owns the slice"),
    f("records", U32, "records written since attach (the ring index is records % capacity)"),
    f("record_size", U32, "sizeof(cert_log_record)"),
    f("capacity", U32, "records the slice holds after this header"),
), "The head of each slice; records follow as a ring (layout emulator-defined).")

CERT_LOG_RECORD = Struct("cert_log_record", (
    f("seq", U32, "this slice's record number, from 0"),
    f("hw_context_id", U32),
    f("queue_index", U64, "the packet's queue index"),
    f("uc_index", U32),
    f("state", U32, "CmdState the uC's exec_buf ended with"),
    f("time_ns", U64, "the device clock"),
), "One log record: a micro-controller finished an exec_buf (layout emulator-defined).")

# -- async events ---------------------------------------------------------------------------

CTX_ERROR_EVENT = Struct("ctx_error_event", (
    f("ctx_id", U32),
    f("error_type", U32, "CtxErrorType"),
    f("uc_index", U32, "health report: the micro-controller flagged"),
    f("read_index", U32, "health report: the queue's read index when it failed"),
    f("ctx_pc", U32, "health report: emulator-defined program counter (packet slot)"),
    f("rsvd", U32, count=3),
), "The ASYNC_EVENT_MSG buffer of a CTX_ERROR (health report layout emulator-defined).")

# -- message layouts ----------------------------------------------------------------------------

RSVD_REQ = Struct("rsvd_req", (f("rsvd", U32),), "The 4-byte reserved request of query messages (inferred).")
STATUS_RESP = Struct("status_resp", (f("status", U32),), "A response that is only a status word.")
RTCFG_REQ = Struct("runtime_config_req", (f("type", U32, "RuntimeConfigType"),),
                   "SET_RUNTIME_CONFIG / GET_RUNTIME_CONFIG head; the type's payload follows a SET.")

#: Payload of each SET_RUNTIME_CONFIG type (a GET answers status then the same payload).
#: Their sizes are the emulator's (docs/spec/aie4.md §5): the driver facts fix only that each
#: type has its own struct, so a request is 4 + sizeof(payload) bytes.
RUNTIME_CONFIG_PAYLOADS: dict[str, Struct] = {
    "CLOCK_POWER_OVERRIDE": Struct("rtcfg_clock_power_override", (
        f("clock_mhz", U32), f("power_mode", U32)), "type 0 payload"),
    "FORCE_PREEMPT": Struct("rtcfg_force_preempt", (f("enable", U32),), "type 1 payload"),
    "L1MMU_PREFETCH": Struct("rtcfg_l1mmu_prefetch", (f("enable", U32),), "type 2 payload"),
    "KEEP_PARTITIONS": Struct("rtcfg_keep_partitions", (f("enable", U32),), "type 3 payload"),
    "DPM_OVERRIDE": Struct("rtcfg_dpm_override", (
        f("min_level", U32), f("max_level", U32)), "type 4 payload"),
    "DYN_LOG_LEVEL": Struct("rtcfg_dyn_log_level", (f("level", U32),), "type 5 payload"),
    "CERT_TIMEOUT": Struct("rtcfg_cert_timeout", (f("timeout_ms", U32),), "type 6 payload"),
    "EVENT_TRACE_STATUS": Struct("rtcfg_event_trace_status", (f("enable", U32),), "type 7 payload"),
    "DPM_ENABLE": Struct("rtcfg_dpm_enable", (f("enable", U32),), "type 8 payload"),
    "UTL_ENABLE": Struct("rtcfg_utl_enable", (f("enable", U32),), "type 9 payload"),
    "ERROR_HANDLING": Struct("rtcfg_error_handling", (
        f("mode", U32), f("flags", U32), f("rsvd", U32, count=2)), "type 10 payload"),
    "HWS_DEBUG": Struct("rtcfg_hws_debug", (f("flags", U64),), "type 11 payload"),
    "CONTEXT_TIMEOUT": Struct("rtcfg_context_timeout", (f("timeout_ms", U32),), "type 12 payload"),
    "CTX_SWITCH_HYSTERESIS": Struct("rtcfg_ctx_switch_hysteresis", (f("hysteresis_us", U32),),
                                    "type 13 payload"),
}  # fmt: skip
assert set(RUNTIME_CONFIG_PAYLOADS) == {m.name for m in RUNTIME_CONFIG_TYPE.members}

#: Field names of the AIE_TILE_INFO metadata block, in order (all u16), as AIE2's.
TILE_INFO_FIELDS = (
    "major", "minor", "cols", "rows", "core_rows", "mem_rows", "shim_rows",
    "core_row_start", "mem_row_start", "shim_row_start",
    "core_dma_channels", "mem_dma_channels", "shim_dma_channels",
    "core_locks", "mem_locks", "shim_locks", "core_events", "mem_events", "shim_events",
    "rsvd",
)  # fmt: skip


def _msg(op: str, req: Struct | tuple, resp: Struct | tuple, doc: str = "") -> Message:
    """A mgmt-channel message (AIE4 has no other); tuples become structs named after it."""
    lo = op.lower()
    r = req if isinstance(req, Struct) else Struct(f"{lo}_req", req, f"{op} request.")
    s = resp if isinstance(resp, Struct) else Struct(f"{lo}_resp", resp, f"{op} response.")
    return Message(op, r, s, "mgmt", doc)


MESSAGES = (
    _msg("ECHO", (f("data", U32),), (f("status", U32), f("data", U32)), "layout inferred"),
    _msg("IDENTIFY", RSVD_REQ, (
        f("status", U32), f("major", U32), f("minor", U32), f("patch", U32), f("build", U32))),
    _msg("QUERY_CERT_FIRMWARE_VERSION", RSVD_REQ, (
        f("status", U32), f("major", U8), f("minor", U8), raw("git_hash", 41, "NUL-terminated"),
        raw("date", 11, "NUL-terminated"), f("hotfix", U8), f("build", U8)),
        "the 60-byte response"),
    _msg("AIE_VERSION_INFO", RSVD_REQ, (f("status", U32), f("major", U32), f("minor", U32)),
         "layout inferred"),
    _msg("AIE_TILE_INFO", RSVD_REQ, (
        f("status", U32), f("size", U32, "bytes of metadata after the status word"),
        *(f(n, U16) for n in TILE_INFO_FIELDS)), "layout inferred: AIE2's tile info"),
    _msg("CALIBRATE_CLOCK", (f("time_base_ns", U64),), STATUS_RESP),
    _msg("DRAM_WORK_BUFFER", (f("addr", U64), f("pasid", U32), f("size", U32)), STATUS_RESP),
    _msg("RELEASE_DRAM_WORK_BUFFER", RSVD_REQ, STATUS_RESP),
    _msg("SET_RUNTIME_CONFIG", RTCFG_REQ, STATUS_RESP, "variable size: 4 + the type's payload"),
    _msg("GET_RUNTIME_CONFIG", RTCFG_REQ, STATUS_RESP,
         "variable size: the response is the status word then the type's payload"),
    _msg("CREATE_PARTITION", (f("col_start", U32), f("col_count", U32)),
         (f("status", U32), f("partition_id", U32, "never 0"))),
    _msg("DESTROY_PARTITION", (f("partition_id", U32),), STATUS_RESP),
    _msg("ASYNC_EVENT_MSG", (f("addr", U64), f("pasid", U32), f("size", U32)),
         (f("status", U32), f("type", U32, "AsyncEventType")), "held until an event happens"),
    _msg("POWER_OVERRIDE", (f("mode", U32, "PowerMode"),), STATUS_RESP),
    _msg("CREATE_HW_CONTEXT", (
        f("partition_id", U32), f("num_tiles", U32), f("hsa_addr_hi", U32),
        f("hsa_addr_lo", U32), f("pasid", U32, "bits 19:0 | PASID_VALID"),
        f("priority_band", U32)), (
        f("status", U32), f("hw_context_id", U32), f("doorbell_offset", U32),
        f("job_complete_msix_idx", U32))),
    _msg("DESTROY_HW_CONTEXT", (f("hw_context_id", U32), f("flags", U32, "DESTROY_GRACEFUL")),
         STATUS_RESP),
    _msg("CONFIGURE_HW_CONTEXT", (
        f("hw_context_id", U32), f("property", U32, "CtxProperty"), f("value", U64)), STATUS_RESP),
    _msg("CREATE_VFS", (f("num_vfs", U32),), STATUS_RESP, "layout inferred"),
    _msg("DESTROY_VFS", RSVD_REQ, STATUS_RESP, "layout inferred"),
)  # fmt: skip

FAMILY = Family(
    name="aie4",
    doc="AIE4 (npu3 and npu7..npu10, plain, PF and VF functions)",
    opcodes=OPCODE,
    enums=(STATUS, PSP_CMD, PSP_STATUS, SMU_CMD, SMU_RESP, RUNTIME_CONFIG_TYPE, ASYNC_EVENT_TYPE,
           CTX_ERROR_TYPE, POWER_MODE, HSA_OPCODE, CHAIN_FLAG, CMD_STATE, CTX_PROPERTY),
    consts=CONSTS,
    structs=(MSG_HEADER, MAILBOX_INFO, HSA_QUEUE_HEADER, HSA_PKT, HSA_INDIRECT_ENTRY,
             HSA_INDIRECT_PKT, CTX_ERROR_EVENT, CERT_LOG_SLICE, CERT_LOG_DESC, CERT_LOG_HEADER,
             CERT_LOG_RECORD, *RUNTIME_CONFIG_PAYLOADS.values()),
    messages=MESSAGES,
    source="xdna_emu/fw/iface/aie4.py",
)  # fmt: skip
