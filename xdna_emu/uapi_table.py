"""The amdxdna UAPI written down once: ioctl numbers, constants and struct layouts.

A program built against the driver's ``amdxdna_accel.h`` must run here unmodified, so the
layouts below are the C ABI exactly: natural alignment, padding where C puts it, a
trailing flexible array adding nothing to the size (docs/spec/uapi.md §2). From this one
table come the C header the interposer and the C tests compile against
(``csrc/generated/amdxdna_accel.h``, by :mod:`xdna_emu.uapigen`), the Python codecs
(``Layout.pack``/``unpack``) and the tables of docs/spec/uapi.md. The generic DRM ioctls a
client issues on the same fd (``drm.h``, a stable Linux ABI) are here too.

Nothing here imports the rest of the package except the scalar types of the firmware
interface vocabulary, so the build script can load it before the extension exists.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from .fw.iface import U8, U16, U32, U64, Scalar

S8 = Scalar("s8", "b", 1, "int8_t")
S32 = Scalar("s32", "i", 4, "int32_t")
S64 = Scalar("s64", "q", 8, "int64_t")
CHAR = Scalar("char", "B", 1, "char")


@dataclass(frozen=True)
class Member:
    """One struct member: a scalar or a nested layout, ``count`` > 1 an array, ``count`` 0
    a flexible array (no size, but its alignment counts)."""

    name: str
    type: Scalar | Layout
    count: int = 1
    doc: str = ""

    @property
    def align(self) -> int:
        return self.type.align if isinstance(self.type, Layout) else self.type.size

    @property
    def size(self) -> int:
        return self.type.size * self.count


def m(name: str, type_: Scalar | Layout, doc: str = "", count: int = 1) -> Member:
    return Member(name, type_, count, doc)


def flex(name: str, type_: Scalar | Layout, doc: str = "") -> Member:
    return Member(name, type_, 0, doc)


@dataclass(frozen=True)
class Layout:
    """A C struct with natural alignment (not packed)."""

    name: str
    members: tuple[Member, ...]
    doc: str = ""

    @cached_property
    def align(self) -> int:
        return max(mb.align for mb in self.members)

    @cached_property
    def _layout(self) -> tuple[dict[str, int], int, str]:
        off, offsets, fmt = 0, {}, ""
        for mb in self.members:
            pad = -off % mb.align
            fmt += "x" * pad
            off += pad
            offsets[mb.name] = off
            if mb.count:
                inner = mb.type.fmt if isinstance(mb.type, Layout) else mb.type.fmt
                fmt += inner * mb.count
                off += mb.size
        tail = -off % self.align
        return offsets, off + tail, fmt + "x" * tail

    @property
    def offsets(self) -> dict[str, int]:
        return self._layout[0]

    @property
    def size(self) -> int:
        return self._layout[1]

    @property
    def fmt(self) -> str:
        return self._layout[2]

    @cached_property
    def codec(self) -> struct.Struct:
        c = struct.Struct("<" + self.fmt)
        assert c.size == self.size, self.name
        return c

    def pack(self, **values: Any) -> bytes:
        """Pack by member name (missing ones zero; arrays take sequences, raw char/u8
        arrays also bytes, nested layouts mappings). Flexible arrays are not packed."""
        unknown = set(values) - set(self.offsets)
        if unknown:
            raise KeyError(f"{self.name}: no member {sorted(unknown)}")
        return self.codec.pack(*self._flat(values))

    def _flat(self, values: dict[str, Any]) -> list[Any]:
        out: list[Any] = []
        for mb in self.members:
            if not mb.count:
                continue
            v = values.get(mb.name)
            items = [v] if mb.count == 1 else list(v or b"" if isinstance(v, bytes) else v or ())
            items += [None] * (mb.count - len(items))
            for item in items[: mb.count]:
                if isinstance(mb.type, Layout):
                    out += mb.type._flat(item or {})
                else:
                    out.append(item or 0)
        return out

    def unpack(self, buf: bytes | bytearray | memoryview, offset: int = 0) -> dict[str, Any]:
        vals = iter(self.codec.unpack_from(buf, offset))
        return self._named(vals)

    def _named(self, vals: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for mb in self.members:
            if not mb.count:
                continue
            items = [mb.type._named(vals) if isinstance(mb.type, Layout) else next(vals)
                     for _ in range(mb.count)]
            if mb.count == 1:
                out[mb.name] = items[0]
            elif mb.type in (CHAR, U8):
                out[mb.name] = bytes(items)
            else:
                out[mb.name] = items
        return out

    def nested(self) -> list[Layout]:
        out: list[Layout] = []
        for mb in self.members:
            if isinstance(mb.type, Layout):
                out += [*mb.type.nested(), mb.type]
        return out


@dataclass(frozen=True)
class Const:
    name: str  # the C macro name
    value: int
    doc: str = ""
    group: str = ""


@dataclass(frozen=True)
class Ioctl:
    """``DRM_IOWR('d', nr, layout)`` (or ``IOW``) and what it is."""

    name: str  # DRM_IOCTL_<name>
    nr: int
    layout: Layout
    dir: str = "rw"  # "rw" (IOWR) or "w" (IOW)
    doc: str = ""
    amdxdna: bool = True

    @property
    def number(self) -> int:
        return ioc(self.dir, self.nr, self.layout.size)


IOC_WRITE, IOC_READ = 1, 2
DRM_IOCTL_BASE = ord("d")
DRM_COMMAND_BASE = 0x40


def ioc(direction: str, nr: int, size: int) -> int:
    """The Linux ``_IOC`` encoding: dir 31:30, size 29:16, type 15:8, nr 7:0."""
    d = {"rw": IOC_READ | IOC_WRITE, "w": IOC_WRITE, "r": IOC_READ, "": 0}[direction]
    return (d << 30) | (size << 16) | (DRM_IOCTL_BASE << 8) | nr


# ---- amdxdna structs (docs/spec/uapi.md §2) -----------------------------------------
QOS_INFO = Layout("amdxdna_qos_info", (
    m("gops", U32), m("fps", U32), m("dma_bandwidth", U32), m("latency", U32),
    m("frame_exec_time", U32), m("priority", U32), m("user_start_col", U32), m("reserved", U32)))
CREATE_HWCTX = Layout("amdxdna_drm_create_hwctx", (
    m("ext", U64, "MBZ"), m("ext_flags", U64, "MBZ"), m("qos_p", U64, "user pointer to amdxdna_qos_info"),
    m("umq_bo", U32), m("log_buf_bo", U32), m("max_opc", U32), m("num_tiles", U32),
    m("mem_size", U32), m("umq_doorbell", U32, "out"), m("handle", U32, "out"),
    m("syncobj_handle", U32, "out")))
DESTROY_HWCTX = Layout("amdxdna_drm_destroy_hwctx", (m("handle", U32), m("pad", U32, "MBZ")))
CU_CONFIG = Layout("amdxdna_cu_config", (m("cu_bo", U32), m("cu_func", U8), m("pad", U8, count=3)))
CONFIG_CU = Layout("amdxdna_hwctx_param_config_cu", (
    m("num_cus", U16), m("pad", U16, count=3), flex("cu_configs", CU_CONFIG)))
UC_INFO_ENTRY = Layout("amdxdna_uc_info_entry", (m("index", U32), m("size", U32)))
FW_BUFFER_METADATA = Layout("amdxdna_fw_buffer_metadata", (
    m("buf_type", U8), m("num_ucs", U8), m("pad", U8, count=2), m("bo_handle", U32),
    m("command_id", U64), flex("uc_info", UC_INFO_ENTRY)))
CONFIG_HWCTX = Layout("amdxdna_drm_config_hwctx", (
    m("handle", U32), m("param_type", U32), m("param_val", U64), m("param_val_size", U32),
    m("pad", U32, "MBZ")))
VA_ENTRY = Layout("amdxdna_drm_va_entry", (m("vaddr", U64), m("len", U64)))
VA_TBL = Layout("amdxdna_drm_va_tbl", (
    m("udma_fd", S32), m("num_entries", U32), flex("va_entries", VA_ENTRY)))
CREATE_BO = Layout("amdxdna_drm_create_bo", (
    m("flags", U64, "bits 7:0 memory region, 63:8 MBZ"), m("vaddr", U64, "user-pointer BO: va table"),
    m("size", U64), m("type", U32), m("handle", U32, "out")))
GET_BO_INFO = Layout("amdxdna_drm_get_bo_info", (
    m("ext", U64, "MBZ"), m("ext_flags", U64, "MBZ"), m("handle", U32), m("pad", U32, "MBZ"),
    m("map_offset", U64, "out"), m("vaddr", U64, "out"), m("xdna_addr", U64, "out")))
SYNC_BO = Layout("amdxdna_drm_sync_bo", (
    m("handle", U32), m("direction", U32), m("offset", U64), m("size", U64)))
EXEC_CMD = Layout("amdxdna_drm_exec_cmd", (
    m("ext", U64, "MBZ"), m("ext_flags", U64, "MBZ"), m("hwctx", U32), m("type", U32),
    m("cmd_handles", U64, "the handle itself when cmd_count is 1"), m("args", U64, "user pointer to u32 BO handles"),
    m("cmd_count", U32), m("arg_count", U32), m("seq", U64, "out")))
WAIT_CMD = Layout("amdxdna_drm_wait_cmd", (
    m("hwctx", U32), m("timeout", U32, "ms, 0 = no limit"), m("seq", U64)))
QUERY_AIE_STATUS = Layout("amdxdna_drm_query_aie_status", (
    m("buffer", U64), m("buffer_size", U32), m("cols_filled", U32)))
QUERY_AIE_VERSION = Layout("amdxdna_drm_query_aie_version", (m("major", U32), m("minor", U32)))
QUERY_AIE_TILE_METADATA = Layout("amdxdna_drm_query_aie_tile_metadata", (
    m("row_count", U16), m("row_start", U16), m("dma_channel_count", U16), m("lock_count", U16),
    m("event_reg_count", U16), m("pad", U16, count=3)))
QUERY_AIE_METADATA = Layout("amdxdna_drm_query_aie_metadata", (
    m("col_size", U32), m("cols", U16), m("rows", U16), m("version", QUERY_AIE_VERSION),
    m("core", QUERY_AIE_TILE_METADATA), m("mem", QUERY_AIE_TILE_METADATA),
    m("shim", QUERY_AIE_TILE_METADATA)))
QUERY_CLOCK = Layout("amdxdna_drm_query_clock", (
    m("name", U8, count=16), m("freq_mhz", U32), m("pad", U32)))
QUERY_CLOCK_METADATA = Layout("amdxdna_drm_query_clock_metadata", (
    m("mp_npu_clock", QUERY_CLOCK), m("h_clock", QUERY_CLOCK)))
QUERY_SENSOR = Layout("amdxdna_drm_query_sensor", (
    m("label", U8, count=64), m("input", U32), m("max", U32), m("average", U32),
    m("highest", U32), m("status", U8, count=64), m("units", U8, count=16), m("unitm", S8),
    m("type", U8), m("pad", U8, count=6)))
QUERY_HWCTX = Layout("amdxdna_drm_query_hwctx", (
    m("context_id", U32), m("start_col", U32), m("num_col", U32), m("pad", U32), m("pid", S64),
    m("command_submissions", U64), m("command_completions", U64), m("migrations", U64),
    m("preemptions", U64), m("errors", U64)))
AIE_MEM = Layout("amdxdna_drm_aie_mem", (
    m("col", U32), m("row", U32), m("addr", U32), m("size", U32), m("buf_p", U64)))
AIE_REG = Layout("amdxdna_drm_aie_reg", (m("col", U32), m("row", U32), m("addr", U32), m("val", U32)))
GET_POWER_MODE = Layout("amdxdna_drm_get_power_mode", (m("power_mode", U8), m("pad", U8, count=7)))
QUERY_FIRMWARE_VERSION = Layout("amdxdna_drm_query_firmware_version", (
    m("major", U32), m("minor", U32), m("patch", U32), m("build", U32)))
GET_RESOURCE_INFO = Layout("amdxdna_drm_get_resource_info", (
    m("npu_clk_max", U64), m("npu_tops_max", U64), m("npu_task_max", U64),
    m("npu_tops_curr", U64), m("npu_task_curr", U64)))
ATTRIBUTE_STATE = Layout("amdxdna_drm_attribute_state", (m("state", U8), m("pad", U8, count=7)))
QUERY_TELEMETRY_HEADER = Layout("amdxdna_drm_query_telemetry_header", (
    m("major", U32), m("minor", U32), m("type", U32), m("map_num_elements", U32), flex("map", U32)))
GET_INFO = Layout("amdxdna_drm_get_info", (m("param", U32), m("buffer_size", U32), m("buffer", U64)))
HWCTX_PROC_NAME_LEN = 16
HWCTX_ENTRY = Layout("amdxdna_drm_hwctx_entry", (
    m("context_id", U32), m("start_col", U32), m("num_col", U32), m("hwctx_id", U32),
    m("pid", S64), m("command_submissions", U64), m("command_completions", U64),
    m("migrations", U64), m("preemptions", U64), m("errors", U64), m("priority", U64),
    m("heap_usage", U64), m("suspensions", U64), m("state", U32), m("pasid", U32),
    m("gops", U32), m("fps", U32), m("dma_bandwidth", U32), m("latency", U32),
    m("frame_exec_time", U32), m("txn_op_idx", U32), m("ctx_pc", U32),
    m("fatal_error_type", U32), m("fatal_error_exception_type", U32),
    m("fatal_error_exception_pc", U32), m("fatal_error_app_module", U32), m("pad", U32),
    m("name", CHAR, count=HWCTX_PROC_NAME_LEN)))
ASYNC_ERROR = Layout("amdxdna_async_error", (m("err_code", U64), m("ts_us", U64), m("ex_err_code", U64)))
DPT_METADATA = Layout("amdxdna_dpt_metadata", (
    m("offset", U64), m("size", U32), m("watch", U8), m("reserved", U8, count=3)))
SET_DPT_STATE = Layout("amdxdna_drm_set_dpt_state", (m("action", U32), m("config", U32), m("reserved", U64)))
GET_DPT_STATE = Layout("amdxdna_drm_get_dpt_state", (
    m("version", U32), m("status", U32), m("config", U32), m("reserved", U32)))
AIE_TILE_ACCESS = Layout("amdxdna_drm_aie_tile_access", (
    m("pid", U64), m("context_id", U32), m("col", U32), m("row", U32), m("addr", U32),
    m("size", U32), m("type", U8), m("pad", U8, count=3)))
AIE_COREDUMP = Layout("amdxdna_drm_aie_coredump", (m("pid", U64), m("context_id", U32), m("pad", U32)))
BO_USAGE = Layout("amdxdna_drm_bo_usage", (
    m("pid", S64), m("total_usage", U64), m("internal_usage", U64), m("heap_usage", U64)))
GET_ARRAY = Layout("amdxdna_drm_get_array", (
    m("param", U32), m("element_size", U32), m("num_element", U32), m("pad", U32), m("buffer", U64)))
SET_POWER_MODE = Layout("amdxdna_drm_set_power_mode", (m("power_mode", U8), m("pad", U8, count=7)))
SET_STATE = Layout("amdxdna_drm_set_state", (m("param", U32), m("buffer_size", U32), m("buffer", U64)))

# ---- generic DRM structs (drm.h, stable ABI; docs/spec/uapi.md §3) ------------------
DRM_VERSION = Layout("drm_version", (
    m("version_major", S32), m("version_minor", S32), m("version_patchlevel", S32),
    m("name_len", U64, "in: buffer size, out: full length"), m("name", U64, "user pointer"),
    m("date_len", U64), m("date", U64), m("desc_len", U64), m("desc", U64)))
DRM_GEM_CLOSE = Layout("drm_gem_close", (m("handle", U32), m("pad", U32)))
DRM_PRIME_HANDLE = Layout("drm_prime_handle", (m("handle", U32), m("flags", U32), m("fd", S32)))
DRM_SYNCOBJ_CREATE = Layout("drm_syncobj_create", (m("handle", U32), m("flags", U32)))
DRM_SYNCOBJ_DESTROY = Layout("drm_syncobj_destroy", (m("handle", U32), m("pad", U32)))
DRM_SYNCOBJ_HANDLE = Layout("drm_syncobj_handle", (
    m("handle", U32), m("flags", U32), m("fd", S32), m("pad", U32), m("point", U64)))
DRM_SYNCOBJ_TRANSFER = Layout("drm_syncobj_transfer", (
    m("src_handle", U32), m("dst_handle", U32), m("src_point", U64), m("dst_point", U64),
    m("flags", U32), m("pad", U32)))
DRM_SYNCOBJ_WAIT = Layout("drm_syncobj_wait", (
    m("handles", U64), m("timeout_nsec", S64), m("count_handles", U32), m("flags", U32),
    m("first_signaled", U32), m("pad", U32), m("deadline_nsec", U64)))
DRM_SYNCOBJ_TIMELINE_WAIT = Layout("drm_syncobj_timeline_wait", (
    m("handles", U64), m("points", U64), m("timeout_nsec", S64), m("count_handles", U32),
    m("flags", U32), m("first_signaled", U32), m("pad", U32), m("deadline_nsec", U64)))
DRM_SYNCOBJ_ARRAY = Layout("drm_syncobj_array", (m("handles", U64), m("count_handles", U32), m("pad", U32)))
DRM_SYNCOBJ_TIMELINE_ARRAY = Layout("drm_syncobj_timeline_array", (
    m("handles", U64), m("points", U64), m("count_handles", U32), m("flags", U32)))
DRM_SET_CLIENT_NAME = Layout("drm_set_client_name", (m("name_len", U64), m("name", U64)))
DRM_GET_CAP = Layout("drm_get_cap", (m("capability", U64), m("value", U64, "out")))

LAYOUTS: tuple[Layout, ...] = (
    QOS_INFO, CREATE_HWCTX, DESTROY_HWCTX, CU_CONFIG, CONFIG_CU, UC_INFO_ENTRY,
    FW_BUFFER_METADATA, CONFIG_HWCTX, VA_ENTRY, VA_TBL, CREATE_BO, GET_BO_INFO, SYNC_BO,
    EXEC_CMD, WAIT_CMD, QUERY_AIE_STATUS, QUERY_AIE_VERSION, QUERY_AIE_TILE_METADATA,
    QUERY_AIE_METADATA, QUERY_CLOCK, QUERY_CLOCK_METADATA, QUERY_SENSOR, QUERY_HWCTX, AIE_MEM,
    AIE_REG, GET_POWER_MODE, QUERY_FIRMWARE_VERSION, GET_RESOURCE_INFO, ATTRIBUTE_STATE,
    QUERY_TELEMETRY_HEADER, GET_INFO, HWCTX_ENTRY, ASYNC_ERROR, DPT_METADATA, SET_DPT_STATE,
    GET_DPT_STATE, AIE_TILE_ACCESS, AIE_COREDUMP, BO_USAGE, GET_ARRAY, SET_POWER_MODE,
    SET_STATE,
    DRM_VERSION, DRM_GEM_CLOSE, DRM_PRIME_HANDLE, DRM_SYNCOBJ_CREATE, DRM_SYNCOBJ_DESTROY,
    DRM_SYNCOBJ_HANDLE, DRM_SYNCOBJ_TRANSFER, DRM_SYNCOBJ_WAIT, DRM_SYNCOBJ_TIMELINE_WAIT,
    DRM_SYNCOBJ_ARRAY, DRM_SYNCOBJ_TIMELINE_ARRAY, DRM_SET_CLIENT_NAME, DRM_GET_CAP,
)

# ---- ioctls ------------------------------------------------------------------------
_AMDXDNA = (
    ("CREATE_HWCTX", CREATE_HWCTX), ("DESTROY_HWCTX", DESTROY_HWCTX),
    ("CONFIG_HWCTX", CONFIG_HWCTX), ("CREATE_BO", CREATE_BO), ("GET_BO_INFO", GET_BO_INFO),
    ("SYNC_BO", SYNC_BO), ("EXEC_CMD", EXEC_CMD), ("GET_INFO", GET_INFO),
    ("SET_STATE", SET_STATE), ("WAIT_CMD", WAIT_CMD), ("GET_ARRAY", GET_ARRAY),
)
AMDXDNA_IOCTLS: tuple[Ioctl, ...] = tuple(
    Ioctl(f"AMDXDNA_{name}", DRM_COMMAND_BASE + n, lay) for n, (name, lay) in enumerate(_AMDXDNA))
DRM_IOCTLS: tuple[Ioctl, ...] = (
    Ioctl("VERSION", 0x00, DRM_VERSION, amdxdna=False),
    Ioctl("GEM_CLOSE", 0x09, DRM_GEM_CLOSE, "w", amdxdna=False),
    Ioctl("GET_CAP", 0x0C, DRM_GET_CAP, amdxdna=False),
    Ioctl("PRIME_HANDLE_TO_FD", 0x2D, DRM_PRIME_HANDLE, amdxdna=False),
    Ioctl("PRIME_FD_TO_HANDLE", 0x2E, DRM_PRIME_HANDLE, amdxdna=False),
    Ioctl("SYNCOBJ_CREATE", 0xBF, DRM_SYNCOBJ_CREATE, amdxdna=False),
    Ioctl("SYNCOBJ_DESTROY", 0xC0, DRM_SYNCOBJ_DESTROY, amdxdna=False),
    Ioctl("SYNCOBJ_HANDLE_TO_FD", 0xC1, DRM_SYNCOBJ_HANDLE, amdxdna=False),
    Ioctl("SYNCOBJ_FD_TO_HANDLE", 0xC2, DRM_SYNCOBJ_HANDLE, amdxdna=False),
    Ioctl("SYNCOBJ_WAIT", 0xC3, DRM_SYNCOBJ_WAIT, amdxdna=False),
    Ioctl("SYNCOBJ_RESET", 0xC4, DRM_SYNCOBJ_ARRAY, amdxdna=False),
    Ioctl("SYNCOBJ_SIGNAL", 0xC5, DRM_SYNCOBJ_ARRAY, amdxdna=False),
    Ioctl("SYNCOBJ_TIMELINE_WAIT", 0xCA, DRM_SYNCOBJ_TIMELINE_WAIT, amdxdna=False),
    Ioctl("SYNCOBJ_QUERY", 0xCB, DRM_SYNCOBJ_TIMELINE_ARRAY, amdxdna=False),
    Ioctl("SYNCOBJ_TRANSFER", 0xCC, DRM_SYNCOBJ_TRANSFER, amdxdna=False),
    Ioctl("SYNCOBJ_TIMELINE_SIGNAL", 0xCD, DRM_SYNCOBJ_TIMELINE_ARRAY, amdxdna=False),
    Ioctl("SET_CLIENT_NAME", 0xD1, DRM_SET_CLIENT_NAME, amdxdna=False),
)
IOCTLS = AMDXDNA_IOCTLS + DRM_IOCTLS


def _consts(group: str, doc: str, *items: tuple[str, int] | tuple[str, int, str]) -> list[Const]:
    return [Const(i[0], i[1], i[2] if len(i) > 2 else "", group or doc) for i in items]


CONSTS: tuple[Const, ...] = tuple(
    _consts("version", "driver version", ("AMDXDNA_DRIVER_MAJOR", 1), ("AMDXDNA_DRIVER_MINOR", 0))
    + _consts("invalid", "invalid handles and addresses",
              ("AMDXDNA_INVALID_CTX_HANDLE", 0), ("AMDXDNA_INVALID_BO_HANDLE", 0),
              ("AMDXDNA_INVALID_FENCE_HANDLE", 0), ("AMDXDNA_INVALID_ADDR", (1 << 64) - 1),
              ("AMDXDNA_INVALID_DOORBELL_OFFSET", (1 << 32) - 1))
    + _consts("dev_type", "device types", ("AMDXDNA_DEV_TYPE_KMQ", 0, "AIE2"),
              ("AMDXDNA_DEV_TYPE_UMQ", 1, "AIE4"), ("AMDXDNA_DEV_TYPE_PF", 2))
    + _consts("power", "power modes", ("POWER_MODE_DEFAULT", 0), ("POWER_MODE_LOW", 1),
              ("POWER_MODE_MEDIUM", 2), ("POWER_MODE_HIGH", 3), ("POWER_MODE_TURBO", 4))
    + _consts("qos", "QoS priorities", ("AMDXDNA_QOS_REALTIME_PRIORITY", 0x100),
              ("AMDXDNA_QOS_HIGH_PRIORITY", 0x180), ("AMDXDNA_QOS_NORMAL_PRIORITY", 0x200),
              ("AMDXDNA_QOS_LOW_PRIORITY", 0x280), ("AMDXDNA_QOS_USER_START_COL_ANY", 0xFF,
                                                   "user_start_col: not requested"))
    + _consts("hwctx_param", "config_hwctx param_type", ("DRM_AMDXDNA_HWCTX_CONFIG_CU", 0),
              ("DRM_AMDXDNA_HWCTX_ASSIGN_DBG_BUF", 1), ("DRM_AMDXDNA_HWCTX_REMOVE_DBG_BUF", 2),
              ("DRM_AMDXDNA_HWCTX_CONFIG_OPCODE_TIMEOUT", 3))
    + _consts("fw_buf", "fw_buffer_metadata buf_type", ("AMDXDNA_FW_BUF_DEBUG", 0),
              ("AMDXDNA_FW_BUF_TRACE", 1), ("AMDXDNA_FW_BUF_DBG_Q", 2), ("AMDXDNA_FW_BUF_LOG", 3))
    + _consts("bo", "BO types", ("AMDXDNA_BO_INVALID", 0), ("AMDXDNA_BO_SHARE", 1),
              ("AMDXDNA_BO_DEV_HEAP", 2), ("AMDXDNA_BO_DEV", 3), ("AMDXDNA_BO_CMD", 4))
    + _consts("bo_flags", "create_bo flags", ("AMDXDNA_BO_FLAGS_REGION_MASK", 0xFF,
                                               "bits 7:0 memory region; 63:8 MBZ"))
    + _consts("sync", "sync_bo direction", ("SYNC_DIRECT_TO_DEVICE", 0), ("SYNC_DIRECT_FROM_DEVICE", 1))
    + _consts("submit", "exec_cmd type", ("AMDXDNA_CMD_SUBMIT_EXEC_BUF", 0),
              ("AMDXDNA_CMD_SUBMIT_DEPENDENCY", 1), ("AMDXDNA_CMD_SUBMIT_SIGNAL", 2))
    + _consts("get_info", "GET_INFO params", ("DRM_AMDXDNA_QUERY_AIE_STATUS", 0),
              ("DRM_AMDXDNA_QUERY_AIE_METADATA", 1), ("DRM_AMDXDNA_QUERY_AIE_VERSION", 2),
              ("DRM_AMDXDNA_QUERY_CLOCK_METADATA", 3), ("DRM_AMDXDNA_QUERY_SENSORS", 4),
              ("DRM_AMDXDNA_QUERY_HW_CONTEXTS", 5), ("DRM_AMDXDNA_READ_AIE_MEM", 6),
              ("DRM_AMDXDNA_READ_AIE_REG", 7), ("DRM_AMDXDNA_QUERY_FIRMWARE_VERSION", 8),
              ("DRM_AMDXDNA_GET_POWER_MODE", 9), ("DRM_AMDXDNA_QUERY_TELEMETRY", 10),
              ("DRM_AMDXDNA_GET_FORCE_PREEMPT_STATE", 11), ("DRM_AMDXDNA_QUERY_RESOURCE_INFO", 12),
              ("DRM_AMDXDNA_GET_FRAME_BOUNDARY_PREEMPT_STATE", 13),
              ("DRM_AMDXDNA_QUERY_CERT_FIRMWARE_VERSION", 14), ("DRM_AMDXDNA_GET_AUTO_COREDUMP", 15))
    + _consts("get_array", "GET_ARRAY params", ("DRM_AMDXDNA_HW_CONTEXT_ALL", 0),
              ("DRM_AMDXDNA_HW_CONTEXT_BY_ID", 1), ("DRM_AMDXDNA_HW_LAST_ASYNC_ERR", 2),
              ("DRM_AMDXDNA_FW_LOG", 3), ("DRM_AMDXDNA_FW_TRACE", 4), ("DRM_AMDXDNA_AIE_COREDUMP", 5),
              ("DRM_AMDXDNA_BO_USAGE", 6), ("DRM_AMDXDNA_FW_LOG_CONFIG", 7),
              ("DRM_AMDXDNA_FW_TRACE_CONFIG", 8), ("DRM_AMDXDNA_AIE_TILE_READ", 9),
              ("DRM_AMDXDNA_HWCTX_AIE_PART_FD", 10), ("DRM_AMDXDNA_HWCTX_MEM_BITMAP", 11),
              ("AMDXDNA_MAX_ELEMENT_SIZE", 100 << 20, "element_size limit"),
              ("AMDXDNA_MAX_NUM_ELEMENT", 1024, "num_element limit"))
    + _consts("set_state", "SET_STATE params (root only)", ("DRM_AMDXDNA_SET_POWER_MODE", 0),
              ("DRM_AMDXDNA_WRITE_AIE_MEM", 1), ("DRM_AMDXDNA_WRITE_AIE_REG", 2),
              ("DRM_AMDXDNA_SET_FORCE_PREEMPT", 3), ("DRM_AMDXDNA_SET_FRAME_BOUNDARY_PREEMPT", 4),
              ("DRM_AMDXDNA_SET_FW_LOG_STATE", 5), ("DRM_AMDXDNA_SET_FW_TRACE_STATE", 6),
              ("DRM_AMDXDNA_AIE_TILE_WRITE", 7), ("DRM_AMDXDNA_SET_CLOCK_FREQ", 8),
              ("DRM_AMDXDNA_SET_AUTO_COREDUMP", 9))
    + _consts("hwctx_state", "hwctx entry state", ("AMDXDNA_HWCTX_STATE_IDLE", 0),
              ("AMDXDNA_HWCTX_STATE_ACTIVE", 1), ("AMDXDNA_HWCTX_PROC_NAME_LEN", HWCTX_PROC_NAME_LEN))
    + _consts("sensor", "sensor types", ("AMDXDNA_SENSOR_TYPE_POWER", 0),
              ("AMDXDNA_SENSOR_TYPE_COLUMN_UTILIZATION", 1), ("AMDXDNA_SENSOR_TYPE_TEMPERATURE", 2))
    + _consts("drm", "generic DRM (drm.h)", ("DRM_IOCTL_BASE", DRM_IOCTL_BASE),
              ("DRM_COMMAND_BASE", DRM_COMMAND_BASE), ("DRM_CLOEXEC", 0o2000000, "O_CLOEXEC"),
              ("DRM_RDWR", 0o2, "O_RDWR"), ("DRM_SYNCOBJ_CREATE_SIGNALED", 1),
              ("DRM_SYNCOBJ_FD_TO_HANDLE_FLAGS_IMPORT_SYNC_FILE", 1),
              ("DRM_SYNCOBJ_FD_TO_HANDLE_FLAGS_TIMELINE", 2),
              ("DRM_SYNCOBJ_HANDLE_TO_FD_FLAGS_EXPORT_SYNC_FILE", 1),
              ("DRM_SYNCOBJ_HANDLE_TO_FD_FLAGS_TIMELINE", 2),
              ("DRM_SYNCOBJ_WAIT_FLAGS_WAIT_ALL", 1), ("DRM_SYNCOBJ_WAIT_FLAGS_WAIT_FOR_SUBMIT", 2),
              ("DRM_SYNCOBJ_WAIT_FLAGS_WAIT_AVAILABLE", 4), ("DRM_SYNCOBJ_WAIT_FLAGS_WAIT_DEADLINE", 8),
              ("DRM_SYNCOBJ_QUERY_FLAGS_LAST_SUBMITTED", 1),
              ("DRM_CLIENT_NAME_MAX_LEN", 64),
              ("DRM_CAP_DUMB_BUFFER", 0x1, "GET_CAP: a KMS cap (EOPNOTSUPP here)"),
              ("DRM_CAP_PRIME", 0x5), ("DRM_PRIME_CAP_IMPORT", 0x1), ("DRM_PRIME_CAP_EXPORT", 0x2),
              ("DRM_CAP_TIMESTAMP_MONOTONIC", 0x6), ("DRM_CAP_SYNCOBJ", 0x13),
              ("DRM_CAP_SYNCOBJ_TIMELINE", 0x14), ("ACCEL_MAJOR", 261, "char major of /dev/accel/accelN"))
)

_BY_NAME = {c.name: c.value for c in CONSTS}


def const(name: str) -> int:
    return _BY_NAME[name]


def ioctl(name: str) -> Ioctl:
    """``"AMDXDNA_CREATE_BO"`` or ``"GEM_CLOSE"`` -> its :class:`Ioctl`."""
    for i in IOCTLS:
        if i.name == name:
            return i
    raise KeyError(name)


def all_layouts() -> list[Layout]:
    """Every layout once, nested ones before their users."""
    seen: dict[str, Layout] = {}
    for top in LAYOUTS:
        for lay in (*top.nested(), top):
            seen.setdefault(lay.name, lay)
    return list(seen.values())
