"""Firmware fault injector: the misbehaviours of docs/spec/fuzzing.md §2, for shim-side fuzzing.

It is the mailbox engine's interposer (docs/spec/device.md §5): every response and async
message a channel sends, and every channel interrupt, pass through it. A fault is
armed for the next ``count`` messages (``arm``) or drawn at random from a seed (``rate``),
so runs replay exactly. Every injected fault is logged as a trace-style line
(``fault <kind> chan=<i> id=<id>``) in :attr:`FaultInjector.log`.
"""

from __future__ import annotations

import random
import struct
from collections import Counter
from dataclasses import dataclass
from typing import Any

from ..fw.aie4 import messages as A4
from ..fw.mailbox import TOMBSTONE, MailboxChannel
from ..fw.messages import (
    LAYOUTS,
    MSG_HEADER,
    MSG_ID_MAGIC,
    STATUS_ONLY,
    AsyncEventType,
    Opcode,
    Status,
    sz_ver,
)
from .model import MGMT_RESP

MAGIC = MSG_ID_MAGIC

#: Message faults (applied in ``send``), by docs/spec/fuzzing.md §2 number.
MSG_FAULTS = {
    "drop": 1, "late": 2, "dup": 3, "bad_id": 4, "stale_id": 4, "zero_id": 4,
    "nonmagic_id": 4, "noncontig_id": 5, "bad_size": 6, "tombstone": 7, "bad_tail": 8,
    "no_irq": 11, "reset": 13, "unload": 13, "fw_fatal": 14,
}
#: Action faults (done at once by :meth:`FaultInjector.act`).
ACT_FAULTS = {"unsolicited": 9, "irq_empty": 10}
ALL_FAULTS = tuple(MSG_FAULTS) + tuple(ACT_FAULTS)
#: Deliberately wrong firmware: well-formed answers that lie about what ran. The driver
#: cannot tell them from the truth, the contract model (fuzz/model.py) can; tests use them
#: to prove its oracles fire (docs/spec/fuzzing.md §5). The fuzz targets never draw them.
VARIANTS = {
    "fail_index_off_by_one": "a failed chain's fail_cmd_idx names the sub-command after the failing one",
    "error_as_success": "a failed command's response says status 0",
    "refuse_context": "CREATE_CONTEXT answers MGMT_ERT_NOAVAIL with contexts free",
    "accept_debug_bo": "CONFIG_DEBUG_BO answers success when it refused the BO",
    "invalid_op_full_size": "an opcode it does not offer is answered at the size the driver asked for",
}
#: the answer size of ``call mgmt`` (its invalid-op answer padded to it by the lie)
_MGMT_RESP = MGMT_RESP
_CHAIN_EXEC = frozenset({Opcode.CHAIN_EXEC_NPU, Opcode.CHAIN_EXEC_DPU, Opcode.CHAIN_EXEC_BUFFER_CF})


@dataclass
class _Armed:
    kind: str
    count: int
    chan: int | None  # None: any channel; 0: mgmt; -1: any user channel
    arg: int


class FaultInjector:
    """Arms and applies firmware misbehaviours on one device model."""

    def __init__(self, seed: int = 0, rate: float = 0.0,
                 kinds: tuple[str, ...] = tuple(MSG_FAULTS)) -> None:
        self.rng = random.Random(seed)
        self.rate, self.kinds = rate, kinds
        self.armed: list[_Armed] = []
        self.log: list[str] = []
        self.counts: Counter[str] = Counter()
        self.device: Any = None
        self._last_id: dict[int, int] = {}
        self._no_irq = 0
        self.variant: str | None = None  # one of VARIANTS (cleared by reset)

    # -- setup ---------------------------------------------------------------------------
    def install(self, device: Any, clock: Any = None) -> None:
        """Interpose on ``device``'s mailbox engine (idempotent across device resets)."""
        self.device = device
        if device.mailbox is not None:
            device.mailbox.interposer = self

    def allow_irq(self, vector: int) -> bool:
        if self._no_irq > 0:
            self._no_irq -= 1
            return False
        return True

    def reset(self) -> None:
        self.variant = None
        self.armed.clear()
        self._last_id.clear()
        self._no_irq = 0
        self.log.clear()  # what fired belongs to the device the reset ended

    def arm(self, kind: str, count: int = 1, chan: int | None = None, arg: int = 0) -> None:
        if kind not in MSG_FAULTS:
            raise ValueError(f"unknown message fault {kind!r}")
        self.armed.append(_Armed(kind, count, chan, arg))

    # -- actions -----------------------------------------------------------------------------
    def act(self, kind: str, chan: int = 0) -> bool:
        """Do an action fault now on channel ``chan``; False if that channel is not open."""
        eng = self.device.mailbox if self.device is not None else None
        ch = eng.channels.get(chan) if eng is not None else None
        if ch is None:
            return False
        self._note(kind, ch, 0)
        if kind == "unsolicited":  # an async-event answer nobody asked for
            if self.device.chip.family == "aie4":
                op4 = A4.Opcode.ASYNC_EVENT_MSG
                ch.transmit(0, op4, A4.MESSAGES[op4].resp.pack(
                    status=A4.Status.SUCCESS, type=A4.AsyncEventType.AIE_ERROR))
            else:
                op = Opcode.REGISTER_ASYNC_EVENT_MSG
                ch.transmit(0, op, LAYOUTS[op].resp.pack(Status.SUCCESS, AsyncEventType.AIE_ERROR))
        elif kind == "irq_empty":
            eng.raw_irq(ch.vector)
        else:
            raise ValueError(f"unknown action fault {kind!r}")
        return True

    # -- the send wrapper ---------------------------------------------------------------------
    def _pick(self, ch: MailboxChannel) -> _Armed | None:
        for a in self.armed:
            if a.chan is None or a.chan == ch.index or (a.chan == -1 and ch.index != 0):
                a.count -= 1
                if a.count <= 0:
                    self.armed.remove(a)
                return a
        if self.rate and self.rng.random() < self.rate:
            return _Armed(self.rng.choice(self.kinds), 1, None, self.rng.randrange(1 << 16))
        return None

    def _lie(self, op: int, payload: bytes) -> bytes:
        """The payload as the wrong firmware variant sends it."""
        v = self.variant
        if op in _CHAIN_EXEC and len(payload) >= 12:
            status, idx, fail_status = struct.unpack_from("<III", payload)
            if status and v == "fail_index_off_by_one":
                return struct.pack("<III", status, idx + 1, fail_status) + payload[12:]
            if status and v == "error_as_success":
                return bytes(12) + payload[12:]
        if op == Opcode.CREATE_CONTEXT and v == "refuse_context" and len(payload) >= 4:
            return struct.pack("<I", Status.MGMT_ERT_NOAVAIL) + payload[4:]
        if op == Opcode.CONFIG_DEBUG_BO and v == "accept_debug_bo" and len(payload) >= 4:
            return struct.pack("<I", Status.SUCCESS) + payload[4:]
        if v == "invalid_op_full_size" and payload == STATUS_ONLY.pack(Status.RTOS_INVALID_OP):
            return payload + bytes(_MGMT_RESP - len(payload))
        return payload

    def _note(self, kind: str, ch: MailboxChannel, mid: int) -> None:
        self.counts[kind] += 1
        self.log.append(f"fault {kind} chan={ch.index} id={mid:#x}")

    def _raw(self, ch: MailboxChannel, pkt: bytes) -> None:
        ch.outq.append(pkt)
        ch.flush()

    def send(self, ch: MailboxChannel, mid: int, op: int, payload: bytes) -> None:
        """The interposer hook: every message a channel sends comes here first."""
        base = ch.transmit
        if self.variant is not None:
            payload = self._lie(op, payload)
        a = self._pick(ch) if ch.open else None
        stale = self._last_id.get(ch.index, MAGIC | 0xFF)
        if mid:
            self._last_id[ch.index] = mid
        if a is None:
            base(mid, op, payload)
            return
        k = a.kind
        self._note(k, ch, mid)
        n = len(payload)
        if k == "drop":
            return
        if k == "late":
            delay = (a.arg or 6000) * 1_000_000  # default: past RX_TIMEOUT (5 s)
            self.device.schedule(delay, "mailbox_send", ch.index, ch.serial, mid, op, payload)
        elif k == "dup":
            base(mid, op, payload)
            base(mid, op, payload)
        elif k == "bad_id":
            base(MAGIC | ((mid + 0x80) & 0xFF), op, payload)
        elif k == "stale_id":
            base(stale, op, payload)
        elif k == "zero_id":
            base(0, op, payload)
        elif k == "nonmagic_id":
            base(mid & 0x00FFFFFF, op, payload)
        elif k == "noncontig_id":
            base(MAGIC | ((mid + 2) & 0xFF), op, payload)
        elif k == "bad_size":
            sizes = (0, n + 2, 0x10000, n + 64)
            total = sizes[a.arg % len(sizes)]
            self._raw(ch, MSG_HEADER.pack(total, sz_ver(n), mid, op) + payload)
        elif k == "tombstone":
            if ch.i2x_tail + 4 < ch.ring_size - 64:
                struct.pack_into("<I", ch._i2x, ch.i2x_tail, TOMBSTONE)
                ch.i2x_tail += 4
            base(mid, op, payload)
        elif k == "bad_tail":
            base(mid, op, payload)
            bad = (ch.ring_size + 8, ch.i2x_tail + 2, 0xFFFFFFFC)[a.arg % 3]
            ch._wr(ch.i2x_tail_reg, bad)
        elif k == "no_irq":
            self._no_irq += 1
            base(mid, op, payload)
        elif k == "reset":
            self.device.reset()
        elif k in ("unload", "fw_fatal"):
            self.device._stop_fw()
