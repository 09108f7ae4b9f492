"""The AIE2 firmware interface: every opcode, status, magic number and layout, written once.

Numbers marked as driver facts are interface facts of the amdxdna driver restated here (not
driver code); ``emu(...)`` members and ``emulator=True`` constants are the emulator's own
choice, explained in docs/spec/firmware.md. The C header, the Python codecs
(``xdna_emu.fw.messages``) and docs/spec/messages.md are generated from this file.
"""

from __future__ import annotations

from . import U8, U16, U32, U64, Const, Enum, Family, Lookup, Message, Struct, emu, f, members, raw

# -- PSP and SMU (docs/spec/firmware.md §3, §4) ----------------------------------------------

PSP_CMD = Enum("PspCmd", "PSP_CMD", members(
    ("VALIDATE", 1, "check the image at ARG0/ARG1 (IOVA), ARG2 bytes"),
    ("START", 2, "boot the validated image"),
    ("RELEASE_TMR", 3, "stop the firmware"),
), "PSP commands written to the CMD register.")

PSP_STATUS = Enum("PspStatus", "PSP_STATUS", members(
    ("OK", 0),
    ("CANCEL", 0xFFFF0002),
    ("BAD_STATE", 0xFFFF0007, "START without a validated image, VALIDATE while running"),
    emu("UNKNOWN_CMD", 0xFFFF0010),
    emu("BAD_ARG", 0xFFFF0011, "START with ARG0 != 1"),
    emu("NO_POWER", 0xFFFF0012, "SMU POWER_ON not done"),
    emu("DMA_FAULT", 0xFFFF0013, "reading the image faulted"),
    emu("IMG_ALIGN", 0xFFFF0020),
    emu("IMG_SIZE", 0xFFFF0021),
    emu("IMG_MAGIC", 0xFFFF0022),
    emu("IMG_FORMAT", 0xFFFF0023),
    emu("IMG_TRUNCATED", 0xFFFF0024),
    emu("IMG_CHIP", 0xFFFF0025),
    emu("IMG_DIGEST", 0xFFFF0026),
    emu("IMG_SIGNATURE", 0xFFFF0027),
), "Values the PSP writes to RESP. Only OK, CANCEL and BAD_STATE are driver-visible facts; "
   "the rest are emulator-defined so each failure is distinguishable in tests and logs.")

SMU_CMD = Enum("SmuCmd", "SMU_CMD", members(
    ("POWER_ON", 3),
    ("POWER_OFF", 4),
    ("SET_MPNPUCLK_FREQ", 5, "MHz"),
    ("SET_HCLK_FREQ", 6, "MHz"),
    ("SET_SOFT_DPMLEVEL", 7, "DPM level"),
    ("SET_HARD_DPMLEVEL", 8, "DPM level"),
), "SMU message numbers.")

SMU_RESP = Enum("SmuResp", "SMU_RESP", members(
    ("OK", 0x01),
    emu("FAIL", 0xFF, "DPM level out of range"),
    emu("UNKNOWN_CMD", 0xFE),
    emu("REJECTED_PREREQ", 0xFD, "any command but POWER_ON/POWER_OFF while powered off"),
), "SMU RESP values. OK=1 is the driver fact; the error values follow the general AMD SMU "
   "mailbox convention and are emulator-chosen for the NPU.")

# -- mailbox (docs/spec/firmware.md §5, §6) ---------------------------------------------------

_CONFIG_CU_MAX = 32

CONSTS = (
    Const("PSP_START_COPY_FW", 1, "START argument: copy the validated image into the firmware region"),
    Const("PSP_STATUS_READY", 1 << 31, "STATUS bit31: the command finished, RESP is valid"),
    Const("PSP_PWAITMODE_READY", 1, "PWAITMODE bit0: the firmware is suspended"),
    Const("PSP_FW_ALIGN", 0x10000, "the firmware image buffer is 64 KiB aligned and sized"),
    Const("TOMBSTONE", 0xDEADFACE, "ring wrap marker written where the next header would start"),
    Const("MSG_ID_MAGIC", 0x1D000000, "top byte of every message id"),
    Const("MSG_ID_MAGIC_MASK", 0xFF000000, "the id bits the magic occupies"),
    Const("MSG_PROTOCOL_VERSION", 1, "sz_ver bits 23:16"),
    Const("MSG_VERSION_SHIFT", 16, "sz_ver = (size & MSG_SIZE_MASK) | MSG_PROTOCOL_VERSION << this"),
    Const("MSG_SIZE_MASK", 0x7FF, "sz_ver bits 10:0: payload bytes"),
    Const("MGMT_INFO_MAGIC", 0x55504E5F, 'mgmt_mbox_chann_info.magic ("_NPU")'),
    Const("UPDATE_PROPERTY_TIME_QUOTA", 0, "UPDATE_PROPERTY type: per-context time quota"),
    Const("UPDATE_PROPERTY_ALL_CONTEXTS", 0xFF, "UPDATE_PROPERTY context_id: every context"),
    Const("ASYNC_EVENT_BUF_SIZE", 0x2000, "bytes per REGISTER_ASYNC_EVENT_MSG buffer the driver registers"),
    Const("HEAP_DEV_ADDR", 0x4000000, "device address of a client's DEV_HEAP", ctype=U64),
    Const("CMD_LIST_MAX", 0x10000, "limit on a chain's cmd-list buffer (the driver uses 4 KiB)",
          emulator=True),
    Const("TXN_OP_NONE", 0xFFFFFFFF, "health txn_op_idx: no transaction op captured (an invalid "
          "access, nothing running)"),
    Const("CTX_HEALTH_V1", 1, "ctx_health_data.version the driver writes"),
    Const("NPU_GEN_AIE2", 0, "ctx_health_data.npu_gen of AIE2 devices"),
    Const("DEBUG_BO_MIN", 0x1000, "smallest debug BO CONFIG_DEBUG_BO accepts", emulator=True),
    Const("NO_CONTEXT", 0xFFFFFFFF, "col_status.context_id of a free column", emulator=True),
    Const("TELEMETRY_MAJOR", 1, "GET_TELEMETRY response major version", emulator=True),
    Const("TELEMETRY_MINOR", 0, "GET_TELEMETRY response minor version", emulator=True),
    Const("DEBUG_MARKER_MAGIC", 0x47424458, 'debug_marker.magic ("XDBG")', emulator=True),
    Const("CONFIG_CU_MAX", _CONFIG_CU_MAX, "CU configs one CONFIG_CU carries"),
    Const("CU_PDI_SHIFT", 15, "CONFIG_CU cfg bits 16:0 = PDI device address >> this"),
    Const("CU_FUNC_SHIFT", 17, "CONFIG_CU cfg bits 24:17 = the CU function"),
    Const("KERNEL_OP_TXN", 3, "the one argument word of an ELF slot: run the transaction stream"),
    Const("RT_LOG_LEVEL", 6, "npu4-family runtime config type: FwLogLevel"),
    Const("RT_LOG_FORMAT", 7, "npu4-family runtime config type: FwLogFormat"),
    Const("RT_LOG_DESTINATION", 8, "npu4-family runtime config type: FwLogDest"),
    Const("DPT_FOOTER_PAGE", 0x1000, "the last bytes of a log/trace buffer, the footer's"),
    Const("DPT_BUF_MIN", 0x2000, "smallest log/trace buffer the driver allocates"),
    Const("DPT_BUF_MAX", 0x400000, "largest (and default) log/trace buffer"),
    Const("FW_LOG_MSG_ALIGN", 8, "log records start at multiples of this"),
    Const("FW_LOG_APP_MGMT", 0xFF, "fw_log_header appn of the management firmware"),
    Const("FW_LOG_PAYLOAD_VERSION", 1, "dpt_footer.payload_version of the log", emulator=True),
    Const("FW_TRACE_PAYLOAD_VERSION", 1, "dpt_footer.payload_version of the trace", emulator=True),
    Const("DPT_MAJOR", 1, "dpt_footer.major", emulator=True),
    Const("DPT_MINOR", 0, "dpt_footer.minor", emulator=True),
)  # fmt: skip

MSG_HEADER = Struct("msg_header", (
    f("total_size", U32, "payload bytes after this header"),
    f("sz_ver", U32, "payload size (bits 10:0) | MSG_PROTOCOL_VERSION << 16"),
    f("id", U32, "MSG_ID_MAGIC | slot"),
    f("opcode", U32),
), "Header before every mailbox message on both rings.")

MGMT_MBOX_CHANN_INFO = Struct("mgmt_mbox_chann_info", (
    f("x2i_tail", U32, "device address of the x2i tail register"),
    f("x2i_head", U32),
    f("x2i_buf", U32, "device address of the x2i ring"),
    f("x2i_buf_sz", U32),
    f("i2x_tail", U32),
    f("i2x_head", U32),
    f("i2x_buf", U32),
    f("i2x_buf_sz", U32),
    f("magic", U32, "MGMT_INFO_MAGIC"),
    f("msi_id", U32),
    f("prot_major", U32),
    f("prot_minor", U32),
    f("rsvd", U32, count=4),
), "What the firmware publishes at FW_ALIVE: the management channel and the protocol.")

# -- mgmt firmware messages -------------------------------------------------------------------

OPCODE = Enum("Opcode", "MSG", members(
    ("REGISTER_PDI", 0x1),
    ("CREATE_CONTEXT", 0x2),
    ("DESTROY_CONTEXT", 0x3),
    ("GET_TELEMETRY", 0x4),
    ("SYNC_BO", 0x7),
    ("UNREGISTER_PDI", 0xA),
    ("LEGACY_CONFIG_CU", 0xB),
    ("EXECUTE_BUFFER_CF", 0xC),
    ("QUERY_COL_STATUS", 0xD),
    ("QUERY_AIE_TILE_INFO", 0xE),
    ("QUERY_AIE_VERSION", 0xF),
    ("EXEC_DPU", 0x10),
    ("CONFIG_CU", 0x11),
    ("CHAIN_EXEC_BUFFER_CF", 0x12),
    ("CHAIN_EXEC_DPU", 0x13),
    ("CONFIG_DEBUG_BO", 0x14),
    ("EXEC_DPU_PREEMPT", 0x15),
    ("EXEC_NPU", 0x17),
    ("CHAIN_EXEC_NPU", 0x18),
    ("SUSPEND", 0x101),
    ("RESUME", 0x102),
    ("ASSIGN_MGMT_PASID", 0x103),
    ("INVOKE_SELF_TEST", 0x104),
    ("MAP_HOST_BUFFER", 0x106),
    ("GET_FIRMWARE_VERSION", 0x108),
    ("SET_RUNTIME_CONFIG", 0x10A),
    ("GET_RUNTIME_CONFIG", 0x10B),
    ("REGISTER_ASYNC_EVENT_MSG", 0x10C),
    ("START_FW_TRACE", 0x10F),
    ("STOP_FW_TRACE", 0x110),
    ("SET_FW_TRACE_CATEGORIES", 0x111),
    ("UPDATE_PROPERTY", 0x113),
    ("GET_APP_HEALTH", 0x114),
    ("ADD_HOST_BUFFER", 0x115),
    ("CONFIG_FW_LOG", 0x116),
    ("GET_DEV_REVISION", 0x117),
    ("GET_COREDUMP", 0x119),
    ("CALIBRATE_TIME", 0x11C),
    ("AIE_RW_ACCESS", 0x203),
    ("GET_PROTOCOL_VERSION", 0x301),
), "AIE2 firmware message opcodes.")

STATUS = Enum("Status", "STATUS", members(
    ("SUCCESS", 0),
    ("AIE_SATURATION_ERROR", 0x1000001),
    ("AIE_FP_ERROR", 0x1000002),
    ("AIE_STREAM_ERROR", 0x1000003),
    ("AIE_ACCESS_ERROR", 0x1000004),
    ("AIE_BUS_ERROR", 0x1000005),
    ("AIE_INSTRUCTION_ERROR", 0x1000006),
    ("AIE_ECC_ERROR", 0x1000007),
    ("AIE_LOCK_ERROR", 0x1000008),
    ("AIE_DMA_ERROR", 0x1000009),
    ("AIE_MEM_PARITY_ERROR", 0x100000A),
    ("AIE_PWR_CFG_ERROR", 0x100000B),
    ("AIE_BACKTRACK_ERROR", 0x100000C),
    ("MGMT_ERT_SELF_TEST_FAILURE", 0x2000001),
    ("MGMT_ERT_HASH_MISMATCH", 0x2000002),
    ("MGMT_ERT_NOAVAIL", 0x2000003),
    ("MGMT_ERT_INVALID_PARAM", 0x2000004),
    ("MGMT_ERT_ENTER_SUSPEND_FAILURE", 0x2000005),
    ("MGMT_ERT_BUSY", 0x2000006),
    ("MGMT_ERT_APPLICATION_ACTIVE", 0x2000007),
    ("MGMT_ERT_DRAM_BUFFER_SIZE_INVALID", 0x2000008),
    ("APP_ERT_FIRST_ERROR", 0x3000001),
    ("APP_ERT_INVALID_INSTRUCTION", 0x3000002),
    ("APP_ERT_LOAD_PDI_FAILURE", 0x3000003),
    ("RTOS_INVALID_INPUT_BUF", 0x4000001),
    ("RTOS_INVALID_CMD", 0x4000002),
    ("RTOS_INVALID_PARAM", 0x4000003),
    ("RTOS_INVALID_OP", 0x4000006),
    ("RTOS_ASYNC_EVENT_MSGS_FULL", 0x4000007),
    ("RTOS_DEBUG_BO_CONFIG_FAILED", 0x4000008),
    ("RTOS_PROPERTY_UPDATE_FAILED", 0x400000A),
    ("RTOS_ACTIVE_APP", 0x400000B),
), "Firmware status words (word 0 of every response).")

ASYNC_EVENT_TYPE = Enum("AsyncEventType", "ASYNC_EVENT", members(
    ("AIE_ERROR", 0),
    ("EXCEPTION", 1),
), "The type word of a REGISTER_ASYNC_EVENT_MSG response.")

SLOT_TYPE = Enum("SlotType", "SLOT_TYPE", members(
    ("NON_ELF", 1),
    ("PARTIAL_ELF", 2),
    ("PREEMPT", 3),
    ("ELF", 4),
), "slot_npu ``type``.")

# Shared request/response shapes.
RSVD_REQ = Struct("rsvd_req", (f("rsvd", U32),), "The 4-byte reserved request of the query-style messages.")
STATUS_RESP = Struct("status_resp", (f("status", U32),), "A response that is only a status word.")
CONTEXT_REQ = Struct("context_req", (f("context_id", U32),), "A request naming one context.")
HOST_BUFFER_REQ = Struct("host_buffer_req", (
    f("context_id", U32),
    f("buf_addr", U64, "heap VA (SVA) or IOVA"),
    f("buf_size", U64),
), "MAP_HOST_BUFFER / ADD_HOST_BUFFER.")
CHAIN_RESP = Struct("chain_resp", (
    f("status", U32),
    f("fail_cmd_idx", U32, "index of the failing slot"),
    f("fail_cmd_status", U32),
), "Response of the chain-exec messages.")
CHAIN_REQ = Struct("chain_exec_req", (
    f("buf_addr", U64, "device address of the cmd list"),
    f("buf_size", U32),
    f("count", U32, "slots in the list"),
), "CHAIN_EXEC_BUFFER_CF / CHAIN_EXEC_DPU.")

CQ_INFO = Struct("cq_info", (
    f("head_addr", U32, "device address of the head register"),
    f("tail_addr", U32),
    f("buf_addr", U32, "device address of the ring"),
    f("buf_size", U32),
), "One ring of a context's channel.")
CQ_PAIR = Struct("cq_pair", (f("x2i_q", CQ_INFO), f("i2x_q", CQ_INFO)), "A context's channel.")

#: Field names of the QUERY_AIE_TILE_INFO metadata block, in order (all u16).
TILE_INFO_FIELDS = (
    "major", "minor", "cols", "rows", "core_rows", "mem_rows", "shim_rows",
    "core_row_start", "mem_row_start", "shim_row_start",
    "core_dma_channels", "mem_dma_channels", "shim_dma_channels",
    "core_locks", "mem_locks", "shim_locks", "core_events", "mem_events", "shim_events",
    "rsvd",
)  # fmt: skip


def _msg(op: str, channel: str, req: Struct | tuple, resp: Struct | tuple, doc: str = "",
         query: bool = False) -> Message:
    """A message; tuple layouts become structs named after the opcode."""
    lo = op.lower()
    r = req if isinstance(req, Struct) else Struct(f"{lo}_req", req, f"{op} request.")
    s = resp if isinstance(resp, Struct) else Struct(f"{lo}_resp", resp, f"{op} response.")
    return Message(op, r, s, channel, doc, query)


MESSAGES = (
    # mgmt channel: boot-time and query messages (docs/spec/firmware.md §6)
    _msg("SUSPEND", "mgmt", RSVD_REQ, STATUS_RESP),
    _msg("RESUME", "mgmt", RSVD_REQ, STATUS_RESP),
    _msg("ASSIGN_MGMT_PASID", "mgmt", (f("pasid", U16), f("rsvd", U16)), STATUS_RESP),
    _msg("GET_FIRMWARE_VERSION", "mgmt", RSVD_REQ, (
        f("status", U32), f("major", U32), f("minor", U32), f("sub", U32), f("build", U32)),
         query=True),
    _msg("SET_RUNTIME_CONFIG", "mgmt", (f("type", U32), f("value", U64)), STATUS_RESP),
    _msg("GET_RUNTIME_CONFIG", "mgmt", (f("type", U32),), (f("status", U32), f("value", U64))),
    _msg("REGISTER_ASYNC_EVENT_MSG", "mgmt", (f("buf_addr", U64), f("buf_size", U32)),
         (f("status", U32), f("type", U32, "AsyncEventType")),
         "held until an event happens"),
    _msg("UPDATE_PROPERTY", "mgmt", (
        f("type", U32), f("context_id", U8), raw("rsvd", 7), f("time_quota_us", U32),
        f("resv", U32)), STATUS_RESP),
    _msg("GET_DEV_REVISION", "mgmt", RSVD_REQ, (f("status", U32), f("rev", U32), f("raw_fuse", U32)),
         query=True),
    _msg("CALIBRATE_TIME", "mgmt", (f("timestamp_ns", U64),), STATUS_RESP),
    _msg("QUERY_AIE_TILE_INFO", "mgmt", RSVD_REQ, (
        f("status", U32), f("size", U32, "bytes of metadata after the status word"),
        *(f(n, U16) for n in TILE_INFO_FIELDS)), query=True),
    _msg("QUERY_AIE_VERSION", "mgmt", RSVD_REQ, (f("status", U32), f("major", U16), f("minor", U16)),
         query=True),
    _msg("QUERY_COL_STATUS", "mgmt", (
        f("dump_addr", U64, "device address of the dump buffer"), f("dump_size", U32),
        f("num_cols", U32, "columns in aie_bitmap"), f("aie_bitmap", U32, "bit n: column n")), (
        f("status", U32), f("size", U32, "bytes dumped: num_cols col_status blocks")),
         "one col_status per column of the bitmap, lowest column first"),
    _msg("GET_TELEMETRY", "mgmt", (
        f("type", U32, "TelemetryType"), f("buf_addr", U64), f("buf_size", U32)), (
        f("status", U32), f("major", U32), f("minor", U32),
        f("size", U32, "bytes written to the buffer")),
         "layout emulator-chosen (status first, as every response); content docs/spec/firmware.md §8"),
    # mgmt channel: firmware log and trace rings (docs/spec/firmware.md §8a)
    _msg("CONFIG_FW_LOG", "mgmt", (
        f("buf_addr", U64, "DMA address of the log buffer (ring, then the dpt_footer page)"),
        f("buf_size", U32, "its bytes; 0 detaches the buffer"), f("rsvd", U32, count=5)), (
        f("status", U32), f("msi_idx", U32, "MSI-X vector raised on new data; 0: none, poll"),
        f("msi_address", U32, "mailbox-BAR offset the driver clears; 0: none"),
        f("rsvd", U32, count=5))),
    _msg("START_FW_TRACE", "mgmt", (
        f("categories", U32, "FwTraceCategory bits"), f("dest", U32, "FwTraceDest"),
        f("timestamp", U32, "FwTraceTimestamp"), f("buf_addr", U64), f("buf_size", U32)), (
        f("status", U32), f("msi_idx", U32), f("cur_ts", U64, "the firmware clock now"),
        f("msi_address", U32))),
    _msg("STOP_FW_TRACE", "mgmt", RSVD_REQ, STATUS_RESP),
    _msg("SET_FW_TRACE_CATEGORIES", "mgmt", (f("categories", U32, "FwTraceCategory bits"),),
         STATUS_RESP),
    _msg("GET_PROTOCOL_VERSION", "mgmt", RSVD_REQ, (f("status", U32), f("major", U32), f("minor", U32)),
         "request size inferred: the common 4-byte reserved request", query=True),
    # mgmt channel: contexts and host buffers (docs/spec/firmware.md §8)
    _msg("CREATE_CONTEXT", "mgmt", (
        f("aie_type", U32), f("start_col", U8), f("num_col", U8), f("num_unused_col", U8),
        f("rsvd", U8), f("num_cq_pairs_requested", U8), f("rsvd1", U8),
        f("pasid", U16, "0: DMA addresses"), raw("pad", 8), f("sec_comm_target_type", U32),
        f("context_priority", U32)), (
        f("status", U32), f("context_id", U32), f("msix_id", U16),
        f("num_cq_pairs_allocated", U8), f("rsvd", U8), f("cq_pair", CQ_PAIR, count=2))),
    _msg("DESTROY_CONTEXT", "mgmt", CONTEXT_REQ, STATUS_RESP),
    _msg("MAP_HOST_BUFFER", "mgmt", HOST_BUFFER_REQ, STATUS_RESP),
    _msg("ADD_HOST_BUFFER", "mgmt", HOST_BUFFER_REQ, STATUS_RESP),
    _msg("GET_APP_HEALTH", "mgmt", (
        f("context_id", U32), f("buf_size", U32), f("buf_addr", U64)), (
        f("status", U32), f("required_buffer_size", U32), f("rsvd", U32, count=7))),
    # user channels (docs/spec/firmware.md §8)
    _msg("CONFIG_CU", "user", (
        f("num_cus", U32), f("cfgs", U32, "PDI address >> 15 (bits 16:0) | function (bits 24:17)",
                             count=_CONFIG_CU_MAX)), STATUS_RESP),
    _msg("SYNC_BO", "user", (
        f("src_addr", U64), f("dst_addr", U64), f("size", U32), f("type", U32)), STATUS_RESP),
    _msg("CONFIG_DEBUG_BO", "user", (
        f("offset", U64, "the debug BO's offset in the heap"), f("size", U64),
        f("config", U32, "1 register, 0 unregister")), STATUS_RESP),
    _msg("EXECUTE_BUFFER_CF", "user", (f("cu_idx", U32), f("payload", U32, count=19)), STATUS_RESP),
    _msg("EXEC_DPU", "user", (
        f("inst_buf_addr", U64), f("inst_size", U32), f("inst_prop_cnt", U32), f("cu_idx", U32),
        f("payload", U32, count=35)), STATUS_RESP),
    _msg("EXEC_NPU", "user", (
        f("flags", U32), f("type", U32, "SlotType"), f("inst_addr", U64), f("save_addr", U64),
        f("restore_addr", U64), f("inst_size", U32), f("save_size", U32), f("restore_size", U32),
        f("inst_prop_cnt", U32), f("cu_idx", U32), f("payload", U32, count=27)), STATUS_RESP),
    _msg("CHAIN_EXEC_BUFFER_CF", "user", CHAIN_REQ, CHAIN_RESP),
    _msg("CHAIN_EXEC_DPU", "user", CHAIN_REQ, CHAIN_RESP),
    _msg("CHAIN_EXEC_NPU", "user", (
        f("flags", U32), f("rsvd", U32), f("buf_addr", U64), f("buf_size", U32), f("count", U32)),
        CHAIN_RESP),
)  # fmt: skip

# -- cmd-list slots, reports, async events (docs/spec/firmware.md §8) ------------------------

SLOT_NPU = Struct("slot_npu", (
    f("type", U32, "SlotType"), f("inst_addr", U64), f("save_addr", U64), f("restore_addr", U64),
    f("inst_size", U32), f("save_size", U32), f("restore_size", U32), f("inst_prop_cnt", U32),
    f("cu_idx", U32), f("arg_cnt", U32, "u32 arguments after this header"),
), "CHAIN_EXEC_NPU cmd-list slot header, followed by arg_cnt u32 words.")
SLOT_DPU = Struct("slot_dpu", (
    f("inst_buf_addr", U64), f("inst_size", U32), f("inst_prop_cnt", U32), f("cu_idx", U32),
    f("arg_cnt", U32),
), "CHAIN_EXEC_DPU cmd-list slot header, followed by arg_cnt u32 words.")
SLOT_EXECBUF_CF = Struct("slot_execbuf_cf", (f("cu_idx", U32), f("arg_cnt", U32)),
                         "CHAIN_EXEC_BUFFER_CF cmd-list slot header, followed by arg_cnt u32 words.")
APP_HEALTH_REPORT = Struct("app_health_report", (
    f("major", U16), f("minor", U16), f("size", U32, "bytes of the report"), f("context_id", U32),
    f("dpu_pc", U32), f("txn_op_id", U32), f("ctx_pc", U32), raw("fatal_error_info", 532),
    f("run_list_id", U32),
), "What GET_APP_HEALTH writes into the host buffer.")
FATAL_TYPE = Enum("FatalType", "FATAL", members(
    emu("NONE", 0),
    emu("HANG", 1, "a command never finished"),
    emu("CMD_ERROR", 2, "a command failed"),
    emu("FAULT", 3, "a command's DMA faulted: it stalls, as on silicon"),
), "fatal_error_info.fatal_type: the emulator's content of the driver-opaque block.")
FATAL_ERROR_INFO = Struct("fatal_error_info", (
    f("fatal_type", U32, "FatalType"),
    f("exception_type", U32, "emulator: the status of the failure (AIE_ACCESS_ERROR for a fault)"),
    f("exception_pc", U32, "emulator: low 32 bits of the faulting device address"),
    f("app_module", U32, "emulator: kernel number of the command that failed or stalled"),
    f("task_index", U32, "emulator: its index in its chain"),
    f("status", U32, "emulator: last failing status"),
    f("cmd_status", U32, "emulator: its fail_cmd_status"), f("cmd_idx", U32, "emulator: its fail_cmd_idx"),
), "Start of app_health_report.fatal_error_info: the driver reads the first four fields; "
   "their values and the rest are emulator-defined (the rest is zero).")
TELEMETRY_TYPE = Enum("TelemetryType", "TELEMETRY_TYPE", members(
    emu("DISABLED", 0),
    emu("HEALTH", 1, "telemetry_health, then one telemetry_ctx per context"),
    emu("ERROR_INFO", 2),
    emu("PROFILING", 3),
    emu("DEBUG", 4),
), "GET_TELEMETRY ``type``, the UAPI header's ``type`` passed on; the emulated firmware "
   "fills HEALTH only (docs/spec/firmware.md §8).")
TELEMETRY_HEALTH = Struct("telemetry_health", (
    f("contexts", U32, "live firmware contexts"), f("jobs_completed", U32),
    f("jobs_failed", U32), f("iommu_faults", U32), f("contexts_destroyed", U32),
    f("unknown_ops", U32), f("hung", U32, "contexts hung now"),
    f("ctx_size", U32, "bytes of each telemetry_ctx that follows"),
), "HEALTH telemetry: the firmware's own counters since boot (emulator-defined).")
TELEMETRY_CTX = Struct("telemetry_ctx", (
    f("context_id", U32), f("pasid", U32), f("start_col", U32), f("num_col", U32),
    f("submitted", U32), f("completed", U32), f("failed", U32), f("queued", U32),
), "One context of HEALTH telemetry, by id (emulator-defined).")
FW_LOG_LEVEL = Enum("FwLogLevel", "FW_LOG_LEVEL", members(
    ("NONE", 0), ("ERROR", 1), ("WARN", 2), ("INFO", 3), ("DEBUG", 4),
), "Firmware log verbosity (runtime config LOG_LEVEL, the UAPI's FW log ``config``): the "
   "firmware writes a line whose level is at most this.")
FW_LOG_FORMAT = Enum("FwLogFormat", "FW_LOG_FORMAT", members(("FULL", 0), ("CONCISE", 1)),
                     "Runtime config LOG_FORMAT; the emulated firmware writes FULL records.")
FW_LOG_DEST = Enum("FwLogDest", "FW_LOG_DEST", members(
    ("UTL", 0), ("FIXED", 1), ("REGS", 2), ("STB", 3), ("DRAM", 4, "the CONFIG_FW_LOG ring"),
), "Runtime config LOG_DESTINATION; lines reach the ring only with DRAM.")
FW_TRACE_DEST = Enum("FwTraceDest", "FW_TRACE_DEST", members(("DEBUG_BUS", 0), ("DRAM", 1)),
                     "START_FW_TRACE ``dest``; records reach the ring only with DRAM.")
FW_TRACE_TIMESTAMP = Enum("FwTraceTimestamp", "FW_TRACE_TS", members(
    ("FW_CHRONO", 0), ("CPU_CCOUNT", 1)), "START_FW_TRACE ``timestamp`` source.")
FW_TRACE_CATEGORY = Enum("FwTraceCategory", "FW_TRACE_CAT", members(
    emu("CONTEXT", 0x1, "context created or destroyed"),
    emu("JOB", 0x2, "a job (one exec message) ended"),
    emu("ERROR", 0x4, "a fault, a hang or a failed command"),
), "START_FW_TRACE / SET_FW_TRACE_CATEGORIES bits (emulator-defined meaning; the driver "
   "passes the UAPI's ``config`` through, all ones by default).")
FW_TRACE_EVENT = Enum("FwTraceEvent", "FW_TRACE_EV", members(
    emu("CTX_CREATE", 1), emu("CTX_DESTROY", 2), emu("JOB_END", 3), emu("FAULT", 4),
    emu("HANG", 5),
), "fw_trace_record.event (emulator-defined).")
DPT_FOOTER = Struct("dpt_footer", (
    f("minor", U8), f("major", U8), f("type", U8, "0 log, 1 trace (emulator)"), f("rsvd1", U8),
    f("payload_version", U32, "the records' format version"), raw("rsvd2", 56),
    f("tail", U32, "bytes written since CONFIG_FW_LOG/START_FW_TRACE, mod 2^32"),
), "At buf_size - DPT_FOOTER_PAGE of a log or trace buffer; the ring is the bytes before it.")
FW_LOG_HEADER = Struct("fw_log_header", (
    f("timestamp", U64, "the firmware clock, ns"),
    f("flags", U32, "format bit 0 (0 FULL), level bits 10:8, appn bits 23:16 (0xFF mgmt), "
      "argc bits 31:24 (u32 words of text that follow)"),
    f("line", U16), f("module", U16),
), "One log record: this header, argc u32 words of NUL-terminated text, the whole padded to "
   "FW_LOG_MSG_ALIGN.")
FW_TRACE_RECORD = Struct("fw_trace_record", (
    f("timestamp", U64, "the firmware clock, ns"), f("category", U32, "FwTraceCategory bit"),
    f("event", U32, "FwTraceEvent"), f("context_id", U32), f("arg", U32, "event-specific: "
      "JOB_END the status, FAULT the low address bits, CTX_* the PASID"),
), "One trace record (emulator-defined format).")
COL_STATE = Enum("ColState", "COL_STATE", members(
    emu("FREE", 0, "no firmware context holds the column"),
    emu("IDLE", 1, "contexts hold it, nothing is held back on their channels"),
    emu("BUSY", 2, "a context on it holds messages (suspended firmware)"),
    emu("HUNG", 3, "a context on it is hung"),
), "col_status.state (emulator-defined, docs/spec/firmware.md §8).")
CORE_STATUS = Enum("CoreStatus", "CORE_STATUS", members(
    emu("ENABLE", 0x1, "the column's cores belong to a context"),
    emu("ERROR", 0x2, "a context on it recorded a fatal error (its health report's)"),
    emu("STALLED", 0x4, "a context on it is hung"),
), "col_status.core_status bits (emulator-defined).")
COL_STATUS = Struct("col_status", (
    f("col", U32), f("state", U32, "ColState"),
    f("contexts", U32, "firmware contexts whose partition covers the column"),
    f("context_id", U32, "the lowest of their ids; NO_CONTEXT when none"),
    f("priority", U32, "that context's priority (0 when none)"),
    f("submitted", U32, "jobs submitted, over the column's contexts"),
    f("completed", U32), f("failed", U32),
    f("queued", U32, "messages held on their channels"),
    f("core_status", U32, "CoreStatus bits"),
    f("last_status", U32, "the lowest-id context's last failing status"),
), "One column of the QUERY_COL_STATUS dump; its size is QUERY_AIE_TILE_INFO's ``size`` "
   "(the driver's col_size). The content is emulator-defined (docs/spec/firmware.md §8).")
DEBUG_MARKER = Struct("debug_marker", (
    f("magic", U32, "DEBUG_MARKER_MAGIC"), f("seq", U32, "markers the context wrote before"),
    f("value", U32, "the debug kernel's count field"), f("context_id", U32),
), "What the debug kernel writes into the bound debug BO at (seq mod slots) x 16 "
   "(emulator-defined, docs/spec/jobs.md §5).")
CTX_HEALTH_DATA = Struct("ctx_health_data", (
    f("version", U32, "CTX_HEALTH_V1"), f("npu_gen", U32, "NPU_GEN_AIE2"),
    f("txn_op_idx", U32, "health report txn_op_id; TXN_OP_NONE if not captured"),
    f("ctx_pc", U32, "health report ctx_pc"),
    f("fatal_error_type", U32), f("fatal_error_exception_type", U32),
    f("fatal_error_exception_pc", U32), f("fatal_error_app_module", U32),
), "What the driver writes into a TIMEOUT command's payload (AIE2 layout; docs/spec/jobs.md §6).")
ASYNC_EVENT_HDR = Struct("async_event_hdr", (
    f("err_cnt", U32, "aie_error entries that follow"), f("ret_code", U32), f("rsvd", U32),
), "Start of an AIE-error async event buffer.")
AIE_ERROR = Struct("aie_error", (
    f("row", U8), f("col", U8), f("rsvd", U16), f("mod_type", U32), f("event_id", U8),
    raw("rsvd1", 3),
), "One entry of an AIE-error async event.")

# -- AIE async errors as the driver decodes them (docs/spec/jobs.md §6) -----------------------

AIE_MODULE = Enum("AieModule", "AIE_MOD", members(
    ("MEM", 0, "memory module (of a core tile; row 1: the memory tile)"),
    ("CORE", 1),
    ("PL", 2, "the shim tile (row 0)"),
), "aie_error.mod_type.")

AIE_ERROR_CATEGORY = Enum("AieErrorCategory", "AIE_ERR_CAT", members(
    ("SATURATION", 0), ("FP", 1), ("STREAM", 2), ("ACCESS", 3), ("BUS", 4),
    ("INSTRUCTION", 5), ("ECC", 6), ("LOCK", 7), ("DMA", 8), ("MEM_PARITY", 9),
    ("UNKNOWN", 10, "an event no table names"),
), "What the driver makes of an AIE error event (AIE-ML event tables).")

_C = {m.name: m.value for m in AIE_ERROR_CATEGORY.members}


def _events(*rows: tuple[int, str]) -> tuple[tuple[int, int], ...]:
    return tuple((ev, _C[cat]) for ev, cat in rows)


AIE_EVENT_LOOKUPS = (
    Lookup("core_event_category", _events(
        (55, "ACCESS"), (56, "STREAM"), (57, "STREAM"), (58, "BUS"), (59, "INSTRUCTION"),
        (60, "ACCESS"), (62, "ECC"), (64, "ECC"), (65, "ACCESS"), (66, "ACCESS"), (67, "LOCK"),
        (70, "INSTRUCTION"), (71, "STREAM"), (72, "BUS")),
        "core module event id -> AieErrorCategory"),
    Lookup("mem_event_category", _events(
        (88, "ECC"), (90, "ECC"), (91, "MEM_PARITY"), (92, "MEM_PARITY"), (93, "MEM_PARITY"),
        (94, "MEM_PARITY"), (95, "MEM_PARITY"), (96, "MEM_PARITY"), (97, "DMA"), (98, "DMA"),
        (99, "DMA"), (100, "DMA"), (101, "LOCK")),
        "core-tile memory module event id -> AieErrorCategory"),
    Lookup("mem_tile_event_category", _events(
        (130, "ECC"), (132, "ECC"), (133, "DMA"), (134, "DMA"), (135, "STREAM"), (136, "STREAM"),
        (137, "STREAM"), (138, "BUS"), (139, "LOCK")),
        "memory tile (row 1, module MEM) event id -> AieErrorCategory"),
    Lookup("shim_event_category", _events(
        (64, "BUS"), (65, "STREAM"), (66, "STREAM"), (67, "BUS"), (68, "BUS"), (69, "BUS"),
        (70, "BUS"), (71, "BUS"), (72, "DMA"), (73, "DMA"), (74, "LOCK")),
        "shim tile (module PL) event id -> AieErrorCategory"),
)

# The 64-bit error code the driver caches for the last async error, as XRT reads it:
# num bits 15:0, driver 19:16, severity 27:24, module 35:32, class 43:40.
XRT_ERROR_NUM = Enum("XrtErrorNum", "XRT_NUM", members(
    ("AIE_SATURATION", 3), ("AIE_FP", 4), ("AIE_STREAM", 5), ("AIE_ACCESS", 6), ("AIE_BUS", 7),
    ("AIE_INSTRUCTION", 8), ("AIE_ECC", 9), ("AIE_LOCK", 10), ("AIE_DMA", 11),
    ("AIE_MEM_PARITY", 12), ("UNKNOWN", 15),
), "xrtErrorNum values an AIE error decodes to.")
XRT_ERROR_MODULE = Enum("XrtErrorModule", "XRT_MOD", members(
    ("AIE_CORE", 3), ("AIE_MEMORY", 4), ("AIE_SHIM", 5), ("AIE_NOC", 6), ("AIE_PL", 7),
    ("UNKNOWN", 8),
), "xrtErrorModule values.")
XRT_ERROR_SEVERITY = Enum("XrtErrorSeverity", "XRT_SEV", members(
    ("EMERGENCY", 1), ("ALERT", 2), ("CRITICAL", 3), ("ERROR", 4), ("WARNING", 5),
    ("NOTICE", 6), ("INFO", 7), ("DEBUG", 8), ("UNKNOWN", 9),
), "xrtErrorSeverity values (AIE async errors are CRITICAL).")
XRT_ERROR_CLASS = Enum("XrtErrorClass", "XRT_CLASS", members(
    ("SYSTEM", 1), ("AIE", 2), ("HARDWARE", 3), ("UNKNOWN", 4),
), "xrtErrorClass values.")
XRT_ERROR_CONSTS = (
    Const("XRT_DRIVER_AIE", 4, "xrtErrorDriver of AIE async errors"),
    Const("XRT_NUM_SHIFT", 0, "error code bits 15:0: xrtErrorNum"),
    Const("XRT_DRIVER_SHIFT", 16, "bits 19:16: xrtErrorDriver"),
    Const("XRT_SEVERITY_SHIFT", 24, "bits 27:24: xrtErrorSeverity"),
    Const("XRT_MODULE_SHIFT", 32, "bits 35:32: xrtErrorModule"),
    Const("XRT_CLASS_SHIFT", 40, "bits 43:40: xrtErrorClass"),
    Const("AIE_MEM_TILE_ROW", 1, "the row whose MEM-module events use the memory-tile table"),
)
# The driver's QoS -> DPM math and power-mode levels (docs/spec/jobs.md §6).
PM_CONSTS = (
    Const("QOS_SYS_EFF_FACTOR", 1, "system efficiency factor in the requested-GOPS product"),
    Const("QOS_MS_PER_S", 1000, "latency (ms) -> rate: 1000 / latency"),
    Const("QOS_OPC_PER_GOPS_MHZ", 1000, "capable GOPS = max_opc * hclk_mhz / 1000"),
    Const("POWER_MEDIUM_DPM_LEVEL", 3, "MEDIUM runs at min(max level, this)"),
)
_N = {m.name: m.value for m in XRT_ERROR_NUM.members}
_M = {m.name: m.value for m in XRT_ERROR_MODULE.members}
XRT_LOOKUPS = (
    Lookup("category_xrt_num", tuple(
        (_C[c], _N["AIE_" + c]) for c in ("SATURATION", "FP", "STREAM", "ACCESS", "BUS",
                                        "INSTRUCTION", "ECC", "LOCK", "DMA", "MEM_PARITY")),
        "AieErrorCategory -> XrtErrorNum (others: UNKNOWN)"),
    Lookup("module_xrt_module", ((0, _M["AIE_MEMORY"]), (1, _M["AIE_CORE"]), (2, _M["AIE_PL"])),
           "AieModule -> XrtErrorModule (others: UNKNOWN)"),
)

FAMILY = Family(
    name="aie2",
    doc="AIE2 (npu1, npu4 and their derivatives)",
    opcodes=OPCODE,
    enums=(STATUS, PSP_CMD, PSP_STATUS, SMU_CMD, SMU_RESP, ASYNC_EVENT_TYPE, SLOT_TYPE, FATAL_TYPE,
           AIE_MODULE, AIE_ERROR_CATEGORY, XRT_ERROR_NUM, XRT_ERROR_MODULE, XRT_ERROR_SEVERITY,
           XRT_ERROR_CLASS, COL_STATE, CORE_STATUS, TELEMETRY_TYPE, FW_LOG_LEVEL, FW_LOG_FORMAT,
           FW_LOG_DEST, FW_TRACE_DEST, FW_TRACE_TIMESTAMP, FW_TRACE_CATEGORY, FW_TRACE_EVENT),
    consts=(*CONSTS, *XRT_ERROR_CONSTS, *PM_CONSTS),
    structs=(MSG_HEADER, MGMT_MBOX_CHANN_INFO, SLOT_NPU, SLOT_DPU, SLOT_EXECBUF_CF,
             APP_HEALTH_REPORT, FATAL_ERROR_INFO, CTX_HEALTH_DATA, DEBUG_MARKER, ASYNC_EVENT_HDR, AIE_ERROR,
             COL_STATUS, TELEMETRY_HEALTH, TELEMETRY_CTX, DPT_FOOTER, FW_LOG_HEADER, FW_TRACE_RECORD),
    messages=MESSAGES,
    source="xdna_emu/fw/iface/aie2.py",
    lookups=(*AIE_EVENT_LOOKUPS, *XRT_LOOKUPS),
)  # fmt: skip
