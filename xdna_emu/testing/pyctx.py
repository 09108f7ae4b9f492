"""In-process driver helpers for hardware contexts, buffers and jobs (docs/spec/jobs.md).

Built on :mod:`xdna_emu.testing.pydriver`. A :class:`PyClient` is one process: a PASID and
a DEV_HEAP (a ``bytearray`` DMA-mapped SVA at its VA) from which DEV BOs are sub-allocated
at device addresses ``0x4000000 + offset``. A :class:`PyContext` creates a firmware
context the way the driver does (CREATE_CONTEXT, user channel on cq_pair[0], MAP/ADD_HOST_
BUFFER per heap chunk, CONFIG_CU without waiting), writes cmd-list slots and sends chains.
A client can talk to the mgmt channel directly (the driver session) or through
``PciFunction.proxy`` (a client session).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import kernels
from ..fw.messages import (
    HEAP_DEV_ADDR,
    KERNEL_OP_TXN,
    LAYOUTS,
    SLOT_CF,
    SLOT_DPU,
    SLOT_NPU,
    Opcode,
    SlotType,
)
from ..iommu import DMA_READ, DMA_WRITE
from .pydriver import DriverChannel, DriverError, PyDriver, Response

HEAP_VA = 0x7F00_0000_0000  # where test heaps live in a client's address space
HEAP_CHUNK = 64 << 20  # the driver's MAP/ADD_HOST_BUFFER chunk
DEV_BO_ALIGN = 0x8000  # DEV BOs are 32 KiB aligned in the heap
CMD_LIST_SIZE = 0x1000
CMD_LISTS = 4  # CTX_MAX_CMDS


@dataclass
class Bo:
    """A buffer object: its device address and the host bytes behind it."""

    addr: int
    size: int
    view: memoryview

    def array(self, dtype: Any, count: int | None = None) -> np.ndarray:
        """A numpy view of the BO's memory (writes go straight to 'host memory')."""
        dt = np.dtype(dtype)
        n = self.size // dt.itemsize if count is None else count
        return np.frombuffer(self.view, dtype=dt, count=n)


@dataclass
class Cmd:
    """One START_NPU-style command: a kernel descriptor and its buffer arguments."""

    desc: kernels.Desc
    args: list[Bo | int] = field(default_factory=list)
    raw_words: list[int] | None = None  # override the argument words (for bad commands)
    inst: Bo | None = None  # use this instruction BO as is (default: one holding ``desc``)
    slot_type: int | None = None  # a CHAIN_EXEC_NPU slot type (default PARTIAL_ELF)
    cu: int = 0  # the slot's cu_idx (the firmware checks it against CONFIG_CU)


class PyClient:
    """One process with a PASID and a DEV_HEAP of ``heap_size`` bytes at ``heap_va``."""

    def __init__(self, drv: PyDriver, pasid: int, heap_size: int = HEAP_CHUNK,
                 heap_va: int = HEAP_VA, chunk: int = HEAP_CHUNK, proxied: bool = False,
                 heap: Any = None) -> None:
        self.drv, self.pasid, self.proxied = drv, pasid, proxied
        self.heap_va, self.heap_size, self.chunk = heap_va, heap_size, chunk
        #: ``heap``: zeroed memory of at least heap_size bytes the caller provides (a
        #: fuzzer's copy-on-write pages); a new bytearray otherwise
        self.heap = bytearray(heap_size) if heap is None else heap
        drv.fn.dma_map(pasid, heap_va, heap_size, DMA_READ | DMA_WRITE, None, mem=self.heap)
        self._off = 0
        self._shared: list[bytearray] = []

    def alloc(self, size: int) -> Bo:
        """A DEV BO sub-allocated in the heap."""
        off = self._off
        if off + size > self.heap_size:
            raise DriverError("ENOMEM", "heap exhausted")
        self._off = (off + size + DEV_BO_ALIGN - 1) // DEV_BO_ALIGN * DEV_BO_ALIGN
        return Bo(HEAP_DEV_ADDR + off, size, memoryview(self.heap)[off : off + size])

    def share(self, size: int, va: int, perm: int = DMA_READ | DMA_WRITE) -> Bo:
        """A SHARE BO: its own memory, DMA-mapped SVA at ``va`` (device address = VA)."""
        mem = bytearray(size)
        self.drv.fn.dma_map(self.pasid, va, size, perm, None, mem=mem)
        self._shared.append(mem)
        return Bo(va, size, memoryview(mem))

    def mgmt(self, opcode: Opcode, *fields: Any) -> tuple:
        """One mgmt op: on the mgmt ring (driver session) or proxied (client session)."""
        if not self.proxied:
            return self.drv.msg(opcode, *fields)
        lay = LAYOUTS[opcode]
        resp = self.drv.fn.proxy(self.pasid, opcode, lay.req.pack(*fields))
        if len(resp) != lay.resp.size:
            raise DriverError("EINVAL", f"response {len(resp)} B, expected {lay.resp.size}")
        return lay.resp.unpack(resp)


class PyContext:
    """A firmware hardware context opened the driver's way (hwctx_start)."""

    def __init__(self, client: PyClient, start_col: int | None = None, num_col: int = 1,
                 priority: int = 2, config_cu: bool = True) -> None:
        self.client, self.drv = client, client.drv
        chip = self.drv.chip
        if start_col is None:
            start_col = chip.limits.first_col
        out = client.mgmt(Opcode.CREATE_CONTEXT, 1, start_col, num_col, 0, 0, 1, 0,
                          client.pasid & 0xFFFF, bytes(8), 0, priority)
        if out[0] != 0:
            raise CreateError(out[0])
        self.id, self.msix = out[1], out[2]
        xh, xt, xb, xs, ih, it, ib, isz = out[5:13]
        self.chan = DriverChannel(self.drv, (xt, xh, xb, xs), (it, ih, ib, isz))
        self.start_col, self.num_col = start_col, num_col
        for i in range(0, client.heap_size, client.chunk):
            op = Opcode.MAP_HOST_BUFFER if i == 0 else Opcode.ADD_HOST_BUFFER
            size = min(client.chunk, client.heap_size - i)
            st = client.mgmt(op, self.id, client.heap_va + i, size)[0]
            if st != 0:
                raise DriverError("EINVAL", f"{op.name} status {st:#x}")
        block = client.alloc(CMD_LISTS * CMD_LIST_SIZE)  # one allocation keeps test heaps small
        self.cmd_lists = [Bo(block.addr + i * CMD_LIST_SIZE, CMD_LIST_SIZE,
                             block.view[i * CMD_LIST_SIZE : (i + 1) * CMD_LIST_SIZE])
                          for i in range(CMD_LISTS)]
        self._next_list = 0
        self._inst: dict[bytes, Bo] = {}
        self.responses: dict[int, Response] = {}
        self.config_cu_id: int | None = None
        if config_cu:  # sent without waiting, as the driver does
            cfg = LAYOUTS[Opcode.CONFIG_CU].req.pack(1, (1 << 17) | 0, *([0] * 31))
            self.config_cu_id = self.chan.send(Opcode.CONFIG_CU, cfg)

    # -- commands ----------------------------------------------------------------------------
    def inst_bo(self, desc: kernels.Desc | bytes) -> Bo:
        """An instruction BO holding ``desc`` (one per distinct descriptor)."""
        data = desc if isinstance(desc, bytes) else kernels.encode(desc)
        bo = self._inst.get(data)
        if bo is None:
            bo = self.client.alloc(max(len(data), kernels.DESC.size))
            bo.view[: len(data)] = data
            self._inst[data] = bo
        return bo

    @staticmethod
    def arg_words(cmd: Cmd) -> list[int]:
        if cmd.raw_words is not None:
            return list(cmd.raw_words)
        out: list[int] = []
        for a in cmd.args:
            addr = a.addr if isinstance(a, Bo) else int(a)
            out += [addr & 0xFFFFFFFF, addr >> 32]
        return out

    def slot(self, opcode: Opcode, cmd: Cmd) -> bytes:
        inst = cmd.inst if cmd.inst is not None else self.inst_bo(cmd.desc)
        words = self.arg_words(cmd)
        stype = SlotType.PARTIAL_ELF if cmd.slot_type is None else cmd.slot_type
        if opcode == Opcode.CHAIN_EXEC_NPU and stype == SlotType.NON_ELF:  # START_CU: CU payload
            words = [inst.addr & 0xFFFFFFFF, inst.addr >> 32, *words]
            hdr = SLOT_NPU.pack(stype, 0, 0, 0, 0, 0, 0, 0, cmd.cu, len(words))
        elif opcode == Opcode.CHAIN_EXEC_NPU and stype == SlotType.ELF:
            # the addresses patched into the instruction buffer after the descriptor
            # (docs/spec/jobs.md §5); the slot carries only KERNEL_OP_TXN
            if cmd.inst is None:
                addrs = [a.addr if isinstance(a, Bo) else int(a) for a in cmd.args]
                inst = self.inst_bo(kernels.encode(cmd.desc) + struct.pack(f"<{len(addrs)}Q", *addrs))
            words = [KERNEL_OP_TXN]
            hdr = SLOT_NPU.pack(stype, inst.addr, 0, 0, inst.size, 0, 0, 0, 0, len(words))
        elif opcode == Opcode.CHAIN_EXEC_NPU:  # PARTIAL_ELF, PREEMPT (no save/restore) or raw
            hdr = SLOT_NPU.pack(stype, inst.addr, 0, 0, inst.size, 0, 0, 0, cmd.cu, len(words))
        elif opcode == Opcode.CHAIN_EXEC_DPU:
            hdr = SLOT_DPU.pack(inst.addr, inst.size, 0, cmd.cu, len(words))
        else:
            words = [inst.addr & 0xFFFFFFFF, inst.addr >> 32, *words]
            hdr = SLOT_CF.pack(cmd.cu, len(words))
        return hdr + struct.pack(f"<{len(words)}I", *words)

    def chain_opcode(self) -> Opcode:
        """CHAIN_EXEC_NPU when the firmware has NPU_COMMAND, else the legacy DPU chain."""
        return Opcode.CHAIN_EXEC_NPU if self.drv.has(Opcode.CHAIN_EXEC_NPU) and \
            self.drv.chip.has_feature("NPU_COMMAND", self.drv.protocol) else Opcode.CHAIN_EXEC_DPU

    def submit(self, cmds: list[Cmd], opcode: Opcode | None = None,
               raw: bytes | None = None) -> int:
        """Write the slots into the next cmd-list BO and send the chain; returns the msg id."""
        opcode = opcode or self.chain_opcode()
        data = raw if raw is not None else b"".join(self.slot(opcode, c) for c in cmds)
        bo = self.cmd_lists[self._next_list]
        self._next_list = (self._next_list + 1) % CMD_LISTS
        if len(data) > bo.size:
            raise DriverError("E2BIG", "chain does not fit the cmd-list buffer")
        bo.view[: len(data)] = data
        count = len(cmds)
        lay = LAYOUTS[opcode]
        if opcode == Opcode.CHAIN_EXEC_NPU:
            payload = lay.req.pack(0, 0, bo.addr, len(data), count)
        else:
            payload = lay.req.pack(bo.addr, len(data), count)
        return self.chan.send(opcode, payload)

    def debug_bo(self, bo: Bo | None, config: int) -> int:
        """CONFIG_DEBUG_BO on the context's channel: register (1) or unregister (0) ``bo``
        (its heap offset and size; docs/spec/jobs.md §4a); returns the msg id."""
        off, size = (bo.addr - HEAP_DEV_ADDR, bo.size) if bo is not None else (0, 0)
        return self.chan.send(Opcode.CONFIG_DEBUG_BO,
                              LAYOUTS[Opcode.CONFIG_DEBUG_BO].req.pack(off, size, config))

    def collect(self) -> dict[int, Response]:
        """Drain the user channel; every response is kept by id."""
        self.drv.fn.poll()
        for r in self.chan.drain():
            self.responses[r.id] = r
        return self.responses

    def result(self, msg_id: int) -> tuple[int, int, int] | None:
        """The chain response {status, fail_cmd_idx, fail_cmd_status} of ``msg_id``, if any."""
        r = self.collect().get(msg_id)
        if r is None:
            return None
        resp = LAYOUTS[Opcode.CHAIN_EXEC_NPU].resp  # every chain message answers alike
        if len(r.payload) != resp.size:
            raise DriverError("EINVAL", f"chain response of {len(r.payload)} B")
        return resp.unpack(r.payload)  # type: ignore[return-value]

    def run(self, cmds: list[Cmd], opcode: Opcode | None = None) -> tuple[int, int, int]:
        """Submit a chain and return its response (ETIME if it never answers)."""
        mid = self.submit(cmds, opcode)
        res = self.result(mid)
        if res is None:
            raise DriverError("ETIME", f"no response to chain {mid:#x}")
        return res

    def destroy(self) -> int:
        return self.client.mgmt(Opcode.DESTROY_CONTEXT, self.id)[0]

    def health(self, buf: Bo) -> tuple[int, ...]:
        """GET_APP_HEALTH into ``buf`` (the mgmt PASID's, or the client's when proxied)."""
        return self.client.mgmt(Opcode.GET_APP_HEALTH, self.id, buf.size, buf.addr)


class CreateError(DriverError):
    """CREATE_CONTEXT answered with a non-zero status (kept in ``status``)."""

    def __init__(self, status: int) -> None:
        super().__init__("EINVAL", f"CREATE_CONTEXT status {status:#x}")
        self.status = status
