"""An executable model of the driver's contract, checked after every line of a shim trace.

The shim harness (:mod:`.shim_trace`) asks the model, for every call, which errno the
driver must give, and for every command which final state it must reach; a difference is
an :class:`~.invariants.InvariantViolation` named ``model_*`` (a finding, replayable as
the trace that led to it). What the model knows (docs/spec/jobs.md §3-§6,
docs/spec/fuzzing.md §5):

- device states *off* (before probe, after stop), *up* and *suspended*: off and suspended
  give ENODEV for every call that needs the firmware, suspend needs up, resume needs
  suspended (EINVAL), a second probe EALREADY, ``stop`` always succeeds;
- a destroyed context's handle gives EINVAL (or ENOENT); a wait on a seq its context never
  handed out (0, negative, or past the newest) gives EINVAL;
- a command's final state follows from what it runs: nop COMPLETED, a fail ERROR (a
  chain's ``error_index`` names its first failing sub-command), a hang TIMEOUT once TDR
  ends it as the head of its queue, a command queued behind a pending hang ABORT, and every
  command still pending when its context is destroyed or the device stopped or suspended
  ABORT; once final, a state never changes; TURBO needs no live context (EBUSY);
- the command forms and config calls (docs/spec/jobs.md §4, §4a, §5a, §6): a preempt form
  without the firmware's PREEMPT and NPU_COMMAND features gives EOPNOTSUPP, a CU index the
  context lacks (one CU unless CONFIG_CU set a table) EINVAL; CONFIG_CU of 0 or more than
  32 CUs, or a second one, EINVAL; a debug BO bound already or a context holding one
  EBUSY, smaller than DEBUG_BO_MIN EINVAL, removed from a context it is not bound to
  EINVAL; QoS whose requested GOPS overflow 32 bits or exceed the top level EINVAL.

Firmware faults make the firmware's side unpredictable: after the first fault (or a
management message the model does not know the answer of, which may leave the channel
bad) the model keeps only the promises the driver makes on its own (device states,
handles, seqs, aborts on destroy/stop, states never leaving final), until the next
fresh device. A command rewritten under a running ``exec`` is not predicted at all.
"""

from __future__ import annotations

import errno as errno_mod
from dataclasses import dataclass, field
from typing import Any

from ..chips import load_chip
from ..fw.aie4.messages import Opcode as A4Opcode
from ..fw.iface.aie2 import FAMILY as _FW
from ..fw.iface.aie4 import CERT_LOG_HEADER, CERT_LOG_RECORD
from ..fw.iface.aie4 import FAMILY as _FW4
from ..fw.messages import LAYOUTS, MSG_SIZE_MASK, TOMBSTONE, Opcode
from ..shim import ErtState, ShimError, chain_error_index
from .invariants import InvariantViolation
from .lang import TraceError

#: the shim harness (fuzz/shim_trace.py, which imports this module): its ``jobs``, ``ctxs``,
#: ``shim``, ``mgmt_bad``, ``raced`` and ``race_fired`` are what the model reads
ShimHarness = Any

FINAL = frozenset({ErtState.COMPLETED, ErtState.ERROR, ErtState.ABORT, ErtState.TIMEOUT})
#: the answer size ``call mgmt`` asks for (shim_trace.c_mgmt), the firmware's answer to an
#: opcode it does not offer (docs/spec/firmware.md §6) and the largest request the shim sends
MGMT_RESP, UNKNOWN_OP_RESP, MGMT_REQ_MAX = 20, 4, MSG_SIZE_MASK & ~3
TOMBSTONE_BYTES = TOMBSTONE.to_bytes(4, "little")
#: the AIE4 management message whose answer the model knows: IDENTIFY, 4-byte request
#: (docs/spec/aie4.md §5); the AIE2 ones are all predicted (:meth:`ShimModel._mgmt`)
KNOWN_MGMT_AIE4 = (int(A4Opcode.IDENTIFY), 4)
#: live contexts the model promises can be created (the firmware's limit is above it)
CTX_PROMISED = 6
#: calls that need the firmware up: ENODEV when off or suspended (app_health too, unless
#: TDR kept a report to answer with: not predicted there)
NEEDS_FW = frozenset({"mgmt", "ctx", "qctx", "exec", "chain", "power", "bulk"})
#: a client session's calls (another process attached to the probed device): each that
#: reaches the firmware takes a runtime-PM reference, resuming a device the driver holds
#: suspended (docs/spec/jobs.md §1); while one waits, the driver session's monitor works
CLIENT_CALLS = frozenset({"client", "cctx", "cdestroy", "cmgmt"})
EOPNOTSUPP = errno_mod.errorcode[errno_mod.EOPNOTSUPP]

EINVAL, ENODEV, EBUSY, EALREADY, EAGAIN, EOPNOTSUPP, EPIPE = (errno_mod.errorcode[e] for e in (
    errno_mod.EINVAL, errno_mod.ENODEV, errno_mod.EBUSY, errno_mod.EALREADY, errno_mod.EAGAIN,
    errno_mod.EOPNOTSUPP, errno_mod.EPIPE))
#: CU-table bound of CONFIG_CU and the debug BO's minimum size (docs/spec/jobs.md §4a, §5a)
CONFIG_CU_MAX = _FW.const("CONFIG_CU_MAX")
DEBUG_BO_MIN = _FW.const("DEBUG_BO_MIN")
#: CERT log slices per context and the smallest slice: its header and one record
#: (docs/spec/aie4.md §11)
CERT_LOG_UCS, CERT_LOG_MIN = _FW4.const("CERT_LOG_UCS"), CERT_LOG_HEADER.size + CERT_LOG_RECORD.size
#: commands outstanding per context (docs/spec/jobs.md §4)
SLOTS = 4
#: the runtime-PM autosuspend delay the shim harness sets on every fresh shim (ms; the
#: driver's default, docs/spec/jobs.md §6); ``call timeout autosuspend MS`` changes it
AUTOSUSPEND_MS = 5000
#: successful driver calls that surely took a runtime-PM reference (resuming a runtime-
#: suspended device, and restarting the autosuspend delay: docs/spec/jobs.md §6)
ACTIVATING = frozenset({"probe", "resume", "mgmt", "ctx", "qctx", "exec", "chain", "power", "bulk"})
#: what stop may report once the firmware misbehaved: its SUSPEND message failed
STOP_AFTER_FAULT = {"ok"} | {errno_mod.errorcode[e] for e in (
    errno_mod.EPIPE, errno_mod.ETIME, errno_mod.ETIMEDOUT, errno_mod.EIO)}


@dataclass
class JobModel:
    """What one command must end as: the allowed final states and a chain's error_index."""

    allowed: set[ErtState]
    error_index: int | None = None
    seen: ErtState | None = None  # the final state once observed
    raced: bool = False


@dataclass
class CtxModel:
    alive: bool = True
    next_seq: int = 1  # the seq the next accepted exec gets
    failed_execs: int = 0  # execs that failed after the context existed (may spend a seq)
    hangs: list[int] = field(default_factory=list)  # job indexes of submitted hangs
    umq: bool = False  # AIE4: handed to the application (user-mode submission)
    cus: int | None = 1  # CUs the context has (one until CONFIG_CU sets a table; None: unknown)
    cu_user: bool | None = False  # CONFIG_CU took a table (a second one is EINVAL; None: unknown)
    dbg: int | None = None  # the ``dbgbo`` number bound to it
    log: bool | None = False  # AIE4: a CERT log attached (None: not known)


#: command forms of ``call exec`` (docs/spec/jobs.md §4)
FORMS = ("npu", "cu", "dpu", "preempt", "preempt_elf")


def parse_form(form: str) -> tuple[str, int]:
    """``FORM[@CU]`` of ``call exec`` as (form, CU index 0..31)."""
    name, _, cu = form.partition("@")
    if name not in FORMS or (cu and not cu.isdigit()) or int(cu or 0) > 31:
        raise TraceError(f"command form {form!r}: one of {', '.join(FORMS)}, optionally @CU (0..31)")
    return name, int(cu or 0)


def qos_ok(chip: str, gops: int, fps: int, latency_ms: int, max_opc: int) -> bool:
    """The driver's QoS sanity check (docs/spec/jobs.md §6): requested GOPS fit 32 bits and,
    with a max_opc, what the top DPM level gives."""
    if not (gops and (fps or latency_ms)):
        return True
    ms = _FW.const("QOS_MS_PER_S")
    rate = max(fps, ms // latency_ms if latency_ms else 0)
    req = gops * rate * _FW.const("QOS_SYS_EFF_FACTOR")
    levels = load_chip(chip).dpm_levels
    top = max_opc * levels[-1][1] // _FW.const("QOS_OPC_PER_GOPS_MHZ") if levels else 0
    return req <= 0xFFFFFFFF and not (max_opc and req > top)


def outcome(kernels: tuple[str, ...]) -> tuple[ErtState, int | None]:
    """The final state a command running ``kernels`` in order earns by itself, and a
    chain's error_index: the first fail or hang decides (the chain stops there); a hang's
    TIMEOUT names the sub-command that hung (docs/spec/jobs.md §3, health record)."""
    for i, k in enumerate(kernels):
        if k == "fail":
            return ErtState.ERROR, i
        if k == "hang":
            return ErtState.TIMEOUT, i
    return ErtState.COMPLETED, None


class ShimModel:
    """The driver's contract for one shim trace; :meth:`ShimHarness.fresh` makes a new one."""

    def __init__(self, aie4: bool = False, chip: str | None = None) -> None:
        #: AIE4 (docs/spec/fuzzing.md §8): app_health ok or EOPNOTSUPP, no known mgmt
        #: message; a user-mode context refuses exec; umq, doorbell and flr are predicted
        #: only on a destroyed context (EINVAL/ENOENT) and flr aborts what was in flight
        self.aie4 = aie4
        self.dev = "off"
        self.tainted: str | None = None  # why the firmware's side is no longer predicted
        self.ctxs: list[CtxModel] = []
        self.jobs: list[JobModel] = []
        self.bulk_behind_hang = False
        self.preempt: bool | None = None  # the probed firmware serves the preempt forms
        self.health = True  # ... and GET_APP_HEALTH
        self.dbg_known = True  # debug bindings predicted (not after stop/suspend/faults)
        self.protocol: tuple[int, int] | None = None  # the probed firmware's protocol version
        self.mgmt_broken = False  # a wrong-size management response broke the channel
        #: the DRM files' side (uapi_trace.UapiRunner): their contexts share the device's
        #: columns and runqueue with the driver session's
        self.peer: Any = None
        #: AIE4 client session (``client``): open, its live contexts, predicted (no device
        #: event since it attached)
        self.client: bool = False
        self.cctxs: list[bool] = []
        self.client_known = False
        #: runtime PM (docs/spec/jobs.md §6): the device runtime-suspended by the driver's
        #: autosuspend (None: not known), the delay, and the virtual times bounding the
        #: driver's last activity: the start of the last activating call (lower bound) and
        #: the end of the last line that may have been active (upper bound)
        self.rpm: bool | None = False
        self.autosuspend_ms = AUTOSUSPEND_MS
        self.active_lo = self.active_hi = 0
        self.pending_at_start = False  # a command of the driver was pending as the line began
        self.pf = False  # an SR-IOV PF: the driver never autosuspends it
        #: the shim's suspend and resume counts as the model expects them (None: not known)
        self.suspends: int | None = 0
        self.resumes: int | None = 0
        #: SR-IOV (docs/spec/aie4.md §10): the VFs enabled (None: not known), the PF's
        #: TotalVFs, the VF jobs and which VF each ran on, hangs pending per VF
        self.vfs: int | None = 0
        self.total_vfs = 0
        self.vfjobs: list[JobModel] = []
        self.vfjob_vf: list[int] = []
        self.vf_gen = 0  # bumped when the VFs go: a VF number then names a new function
        if chip is not None:
            pci = load_chip(chip).pci
            self.pf, self.total_vfs = pci.function == "pf", pci.total_vfs if pci.function == "pf" else 0

    # -- helpers --------------------------------------------------------------------------
    def taint(self, why: str) -> None:
        if self.tainted is None:
            self.tainted = why

    @staticmethod
    def _fail(what: str, msg: str) -> InvariantViolation:
        return InvariantViolation(f"model_{what}", msg)

    def _want(self, name: str, args: tuple, got: str, want: str | set[str] | None) -> None:
        """The call's errno is the one the driver gives (the call's text only for a finding)."""
        if want is None:
            return
        ok = got in want if isinstance(want, set) else got == want
        if not ok:
            shown = "/".join(sorted(want)) if isinstance(want, set) else want
            call = f"{name} {' '.join(map(_show, args))}".strip()
            raise self._fail("errno", f"{call} gave {got}, the driver gives {shown}"
                                      f"{'' if self.tainted is None else f' (even after {self.tainted})'}")

    # -- before and after each call -------------------------------------------------------
    def expect(self, h: ShimHarness, name: str, args: tuple) -> str | set[str] | None:
        """The errno name (or set of names; None: unknown) the call must give."""
        clean = self.tainted is None
        if name in ("certlog", "certdetach"):
            return self._certlog(h, name, args)
        if name in CLIENT_CALLS:
            return self._client(h, name, args)
        if name in ("sriov", "vf", "vfwait"):
            return self._sriov(h, name, args)
        dead = self._dead(h, name, args)
        if dead is not None:
            return dead
        if name == "exec" and len(args) > 2:  # checked as the command is parsed, before the
            form, cu = parse_form(args[2])  # device state (docs/spec/jobs.md §4)
            if form.startswith("preempt") and self.preempt is False:
                return EOPNOTSUPP
            cus = self.ctxs[args[0] % len(h.ctxs)].cus
            if form != "preempt_elf" and cu and cus is None:
                return None  # a CU table that may or may not have been set
            if form != "preempt_elf" and cus is not None and cu >= cus:
                return EINVAL
        if name == "stop":  # tears down whatever happens; a failed SUSPEND on the way is
            return "ok" if clean else STOP_AFTER_FAULT  # reported, never ENODEV
        if name in ("waitseq", "syncwait"):
            return self._waitseq(h, args)
        if name == "cucfg" and not 1 <= args[1] <= CONFIG_CU_MAX:
            return EINVAL  # checked before the context and the device
        if self.dev == "unknown":  # a probe, suspend or resume failed half way
            return None
        if name == "probe":
            if self.dev == "suspended":
                return EBUSY
            return EALREADY if self.dev == "up" else ("ok" if clean else None)
        if name == "suspend":
            return EINVAL if self.dev != "up" else ("ok" if clean else None)
        if name == "resume":
            if self.dev == "up" and self.rpm is not False:  # runtime-suspended: resumes
                return ("ok" if self.rpm else {"ok", EINVAL}) if clean else None
            return EINVAL if self.dev != "suspended" else ("ok" if clean else None)
        if name in NEEDS_FW and self.dev != "up":
            return ENODEV
        if name == "mgmt" and self.mgmt_broken:  # a wrong-size answer broke the channel
            return EPIPE
        if not clean:
            return None
        if self.aie4 and name in ("umq", "doorbell", "flr"):
            return None  # see __init__
        if self.aie4 and name == "health":  # a report only after a context timeout
            return {"ok", EOPNOTSUPP} if self.dev == "up" else None
        if self.aie4 and name in ("exec", "chain", "bulk") and self.ctxs[args[0] % len(h.ctxs)].umq:
            return EBUSY  # the application owns the queue
        if name == "mgmt":
            if self.aie4:
                return "ok" if (args[0], len(args[1])) == KNOWN_MGMT_AIE4 and not h.mgmt_bad else None
            return self._mgmt(h, args)
        if name in ("ctx", "qctx") and self.pf:
            return EOPNOTSUPP  # a PF has no partition for contexts (docs/spec/aie4.md §6)
        if name in ("ctx", "qctx"):
            if name == "qctx" and not qos_ok(h.chip, *(a & 0xFFFFFFFF for a in args)):
                return EINVAL
            files = (self.peer.live_contexts() if self.peer is not None else 0) + sum(self.cctxs)
            return "ok" if sum(c.alive for c in self.ctxs) + files < CTX_PROMISED else None
        if name == "cucfg":
            cu_user = self.ctxs[args[0] % len(h.ctxs)].cu_user
            return None if cu_user is None else (EINVAL if cu_user else "ok")
        if name == "dbg":
            return self._dbg(h, args)
        if name == "power":  # TURBO needs no live context on the device, any session's
            files = (self.peer.live_contexts() if self.peer is not None else 0) + sum(self.cctxs)
            return EBUSY if args[0] == "turbo" and (any(c.alive for c in self.ctxs) or files) else "ok"
        if name == "bulk":
            n = args[0] % len(h.ctxs)
            self.bulk_behind_hang = self._pending_hang(h, n)
            if self.bulk_behind_hang:
                return None  # behind a hang: TDR decides
            return {"ok", EBUSY} if self._others_busy(h, n, self.observe(h)) else "ok"
        if name == "health":
            return ("ok" if self.health else EOPNOTSUPP) if self.dev == "up" else None
        if name in ("exec", "chain"):
            n = args[0] % len(h.ctxs)
            now = self.observe(h)
            pending = sum(1 for i, j in enumerate(h.jobs[: len(self.jobs)])
                          if j.ctx == n and now.get(i) not in FINAL)
            want = {"ok"} if pending < SLOTS else {"ok", EAGAIN}  # full: waits, may give up
            return want | {EBUSY} if self._others_busy(h, n, now) else want
        if name in ("info", "destroy"):
            return "ok"
        return None

    @staticmethod
    def _mgmt_sent(req: bytes) -> bool:
        """Does the shim send this request at all? Not when empty, not a multiple of 4
        bytes, or starting with TOMBSTONE: EINVAL before the ring (csrc/mailbox.c)."""
        return bool(req) and not len(req) % 4 and req[:4] != TOMBSTONE_BYTES \
            and len(req) <= MGMT_REQ_MAX

    def _mgmt(self, h: ShimHarness, args: tuple) -> str | None:
        """A raw management message asking for a MGMT_RESP-byte answer: EINVAL if unsent;
        otherwise the firmware answers in the opcode's normal response size (an error keeps
        it), or 4 bytes for an opcode it does not know or its protocol does not offer
        (docs/spec/firmware.md §6, dispatch); a size other than MGMT_RESP is EINVAL and
        leaves the channel in bad state."""
        opcode, req = args
        if h.mgmt_bad:
            return None  # the harness holds its own EPIPE rule
        if not self._mgmt_sent(req):
            return EINVAL
        if self.protocol is None:
            return None
        try:
            op = Opcode(opcode)
        except ValueError:
            op = None
        lay = LAYOUTS.get(op) if op is not None else None  # type: ignore[call-overload]
        offered = lay is not None and load_chip(h.chip).has_feature(op.name, self.protocol)
        size = lay.resp.size if offered else UNKNOWN_OP_RESP
        return "ok" if size == MGMT_RESP else EINVAL

    def _dbg(self, h: ShimHarness, args: tuple) -> str | set[str] | None:
        """CONFIG_HWCTX ASSIGN/REMOVE_DBG_BUF (docs/spec/jobs.md §4a), in the shim's order."""
        if not h.dbg_bos:
            return EINVAL
        n, b = args[0] % len(h.ctxs), args[2] % len(h.dbg_bos)
        if not self.dbg_known:
            return None
        c = self.ctxs[n]
        if args[1] == "remove":  # unbinds at once; then waits for the firmware's status
            if c.dbg != b:
                return EINVAL
            return "ok" if self.dev == "up" and not self._pending_hang(h, n) else None
        if c.dbg is not None or any(o.dbg == b for o in self.ctxs):
            return EBUSY
        if self.dev != "up":
            return ENODEV
        if self._pending_hang(h, n):
            return None  # the config waits behind the hang: TDR or its timeout decides
        if h.dbg_bos[b][1] < DEBUG_BO_MIN:
            return EINVAL  # the firmware refuses it: nothing stays bound
        if sum(o.alive for o in self.ctxs) > CTX_PROMISED:
            return None
        return {"ok", EBUSY} if self._others_busy(h, n, self.observe(h)) else "ok"

    def _certlog(self, h: ShimHarness, name: str, args: tuple) -> str | None:
        """CERT log attach/detach (docs/spec/aie4.md §11), in the shim's order: AIE2
        EOPNOTSUPP; a context not live on the firmware EINVAL; a log attached already (detach:
        none) EINVAL; 0 or more than CERT_LOG_UCS slices, a BO that is not DEV, a uC index
        past the last or named twice, a slice without room for a record, slices past the BO:
        EINVAL; else the firmware's CONFIGURE_HW_CONTEXT answers (ok when it is predicted)."""
        if not h.ctxs:
            return EINVAL
        if not self.aie4:
            return EOPNOTSUPP
        c = self.ctxs[args[0] % len(h.ctxs)]
        if not c.alive:
            return EINVAL
        if self.tainted is not None or self.dev != "up" or c.log is None:
            return None  # every refusal is EINVAL, but so is a context not live on the firmware
        if name == "certdetach":
            return "ok" if c.log else EINVAL
        if c.log:
            return EINVAL
        dev, size = h.log_target(args[1])
        ucs = [] if args[2] == "-" else [tuple(int(x, 0) for x in sl.split(":")) for sl in args[2].split(",")]
        if not 1 <= len(ucs) <= CERT_LOG_UCS or not dev:
            return EINVAL
        seen: set[int] = set()
        for uc, sz in ucs:
            if uc >= CERT_LOG_UCS or uc in seen or sz < CERT_LOG_MIN:
                return EINVAL
            seen.add(uc)
        return EINVAL if sum(sz for _, sz in ucs) > size else "ok"

    def _certlog_after(self, c: CtxModel, name: str, got: str) -> None:
        """A CERT log binding after attach/detach (docs/spec/aie4.md §11): attached only by a
        success; a detach that reached the context unbinds whatever the firmware answered,
        but one refused for want of a context live on the firmware (the device suspended
        or off) changes nothing, and the binding survives the resume."""
        if got == "ok":
            c.log = name == "certlog"
        elif name == "certdetach" and self.dev == "up" and self.tainted is None:
            c.log = False  # no log to detach, or unbound before the firmware refused
        elif name == "certdetach" and self.dev not in ("suspended", "off"):
            c.log = None  # refused on the way or unbound: not known

    def _client(self, h: ShimHarness, name: str, args: tuple) -> str | None:
        """A client session (docs/spec/aie4.md §12): a driver-only message EPERM, another
        session's context ENOENT (the daemon's proxy), a query ok; its own contexts as the
        driver's. Predicted on AIE4 with the device up and the firmware unfaulted; an attach
        also while the driver holds the device suspended (it resumes it: docs/spec/jobs.md §1)."""
        if name != "client" and not self.client:
            return EINVAL  # the harness has no client to use
        if name == "cdestroy" and not any(True for _ in self.cctxs):
            return EINVAL
        if name == "cdestroy" and not self.cctxs[args[0] % len(self.cctxs)]:
            return EINVAL  # its own destroyed context
        if not self.aie4 or self.tainted is not None or self.dev not in ("up", "suspended"):
            return None
        if name == "client":  # the driver resumes a device it holds suspended for it
            return "ok"
        if self.dev != "up":
            return None
        if not self.client_known:
            return None
        if name == "cmgmt":
            return {"query": "ok", "driver": errno_mod.errorcode[errno_mod.EPERM],
                    "foreign": errno_mod.errorcode[errno_mod.ENOENT]}.get(args[0])
        if name == "cctx" and self.pf:
            return EOPNOTSUPP  # a PF has no partition for contexts (docs/spec/aie4.md §6)
        if name == "cctx":
            files = self.peer.live_contexts() if self.peer is not None else 0
            live = sum(c.alive for c in self.ctxs) + sum(self.cctxs) + files
            return "ok" if live < CTX_PROMISED else None
        return "ok"

    def _sriov(self, h: ShimHarness, name: str, args: tuple) -> str | set[str] | None:
        """SR-IOV (docs/spec/aie4.md §10): ``sriov N`` is the PCI core's checks then the
        driver's sriov_configure (not an AIE4 PF EOPNOTSUPP, not probed EINVAL, N past
        TotalVFs ERANGE, N enabled already ok, N with others enabled EBUSY); ``vf`` with no VF
        enabled EINVAL (the harness has none to name), else ok (a VF's firmware is up from
        reset, its probe, context and submission succeed); ``vfwait`` on a job ok."""
        clean = self.tainted is None
        if name == "sriov":
            n = args[0] & 0xFFFFFFFF
            if not self.aie4 or not self.pf:
                return EOPNOTSUPP
            if self.dev != "up":
                return EINVAL if self.dev in ("off", "suspended") else None
            if n > self.total_vfs:
                return errno_mod.errorcode[errno_mod.ERANGE]
            if self.vfs is None:
                return None
            if n == self.vfs:
                return "ok"
            if n and self.vfs:
                return EBUSY
            return "ok" if clean else None
        if name == "vf":
            if self.vfs is None:
                return None
            if not self.vfs:
                return EINVAL
            if not clean or self.dev != "up":
                return None
            vf, now = (self.vf_gen, args[0] % self.vfs), self.vf_observe(h)
            pending = sum(1 for i, k in enumerate(self.vfjob_vf) if k == vf and now.get(i) not in FINAL)
            return "ok" if pending < SLOTS else {"ok", EAGAIN}  # four slots per context
        return None if self.vfjobs else EINVAL  # a wait on a hang may time out first

    def _sriov_after(self, h: ShimHarness, name: str, args: tuple, got: str) -> None:
        if name == "sriov" and got == "ok":
            n = args[0] & 0xFFFFFFFF
            if n != self.vfs:
                now = self.vf_observe(h)  # the VFs go: their drivers end every job ABORT
                for i, m in enumerate(self.vfjobs):  # (or as the firmware had ended it)
                    if now.get(i) not in FINAL:
                        m.allowed.add(ErtState.ABORT)
                self.vf_gen += 1
            self.vfs = n
        elif name == "sriov" and got != "ok" and self.tainted is not None:
            self.vfs = None  # the firmware's refusal may come after the VFs went, and on a
            if args[0] & 0xFFFFFFFF == 0:  # disable their drivers ended every job ABORT first
                now = self.vf_observe(h)  # (docs/spec/aie4.md §10)
                for i, m in enumerate(self.vfjobs):
                    if now.get(i) not in FINAL:
                        m.allowed.add(ErtState.ABORT)
        elif name == "vf" and got == "ok":
            vf = (self.vf_gen, args[0] % max(1, self.vfs or 1))
            state, _ = outcome((args[1],))
            m = JobModel({state})
            now = self.vf_observe(h)
            if any(now.get(i) not in FINAL and self.vfjob_vf[i] == vf and ErtState.TIMEOUT in j.allowed
                   for i, j in enumerate(self.vfjobs)):
                m.allowed = {ErtState.ABORT, state}  # behind a hang: its timeout may end it
            if self.tainted is not None or self.vfs is None:
                m.allowed = set(FINAL)
            self.vfjobs.append(m)
            self.vfjob_vf.append(vf)
        if name in ("stop", "suspend", "resume", "probe", "flr"):
            for m in self.vfjobs:  # what the PF's events do to its VFs: not predicted
                m.allowed = set(FINAL)
            self.vfs = None if name in ("probe", "flr") else self.vfs

    def vf_observe(self, h: ShimHarness) -> dict[int, ErtState]:
        out = {}
        for j in range(len(self.vfjobs)):
            st = h.vf_state(j)
            if st is not None:
                out[j] = st
        return out

    def _newly_final(self, m: JobModel, st: ErtState, what: str) -> bool:
        """Whether ``st`` is the job's first final state (recorded now); a job seen final
        that shows another state is a finding."""
        if m.seen is not None:
            if st != m.seen:
                raise self._fail("state", f"{what} went from {m.seen.name} to {_name(st)}")
            return False
        if st not in FINAL:
            return False
        m.seen = st
        return True

    def _vf_check(self, h: ShimHarness) -> None:
        """Every VF job: final only in an allowed state, and final for good."""
        for i, st in self.vf_observe(h).items():
            m = self.vfjobs[i]
            if not self._newly_final(m, st, f"VF job {i}"):
                continue
            if st not in m.allowed:
                want = "/".join(sorted(s.name for s in m.allowed))
                raise self._fail("state", f"VF job {i} ({h.vfjobs[i][4]}) ended {_name(st)}, "
                                          f"the driver ends it {want}")

    def _others_busy(self, h: ShimHarness, n: int, now: dict[int, ErtState]) -> bool:
        """Another live context has work pending: it cannot be swapped out, so a
        disconnected context's submission may wait out the mailbox timeout and give EBUSY
        (docs/spec/jobs.md §3a)."""
        return any(j.ctx != n and self.ctxs[j.ctx].alive and now.get(i) not in FINAL
                   for i, j in enumerate(h.jobs[: len(self.jobs)])) or \
            (self.peer is not None and self.peer.busy())

    def _pending_hang(self, h: ShimHarness, n: int) -> bool:
        now = self.observe(h)
        return any(now.get(i) not in FINAL for i in self.ctxs[n].hangs)

    def _dead(self, h: ShimHarness, name: str, args: tuple) -> str | set[str] | None:
        """EINVAL (or ENOENT) for a call on a destroyed context, whatever else holds."""
        if name not in ("exec", "chain", "health", "info", "destroy", "bulk", "waitseq", "umq",
                        "doorbell", "syncwait", "cucfg", "dbg"):
            return None
        if not h.ctxs:
            return EINVAL  # the harness has no context to name
        n = args[0] % len(h.ctxs)
        if not self.ctxs[n].alive:
            return {EINVAL, errno_mod.errorcode[errno_mod.ENOENT]}
        return None

    def _waitseq(self, h: ShimHarness, args: tuple) -> str | set[str] | None:
        c = self.ctxs[args[0] % len(h.ctxs)]
        seq = args[1] & (1 << 64) - 1
        if seq == 0 or seq >= c.next_seq + c.failed_execs:
            return EINVAL  # never submitted: 0, negative (huge as u64) or in the future
        for j, job in zip(h.jobs, self.jobs, strict=True):
            if h.ctxs[j.ctx] == h.ctxs[args[0] % len(h.ctxs)] and j.seq == seq and job.seen:
                return "ok"  # stale: long final, the wait returns at once
        return None

    def before(self, h: ShimHarness, name: str, args: tuple) -> dict[int, ErtState]:
        """States of the jobs before a call that may abort them or queue behind them."""
        if name in ("stop", "suspend", "destroy", "exec", "chain", "flr", "dbg"):
            return {i: st for i, st in self.observe(h).items()}
        return {}

    def after(self, h: ShimHarness, name: str, args: tuple, got: str,
              prior: dict[int, ErtState], want: str | set[str] | None) -> None:
        """Check the call's errno, then move the model on by what the call did."""
        if h.race_fired:  # the user rewrote the command under exec: any verdict may do
            want = None
        self._want(name, args, got, want)
        self._rpm_call(name, got)
        self._sriov_after(h, name, args, got)
        if name == "mgmt" and (want is None or (self.aie4 and
                                                (args[0], len(args[1])) != KNOWN_MGMT_AIE4)):
            self.taint(f"mgmt {args[0]:#x} of {len(args[1])} bytes")
        if name == "mgmt" and got != "ok" and self.dev == "up" and got != want:
            self.taint(f"mgmt gave {got}")
        if name == "mgmt" and got == EINVAL and want == EINVAL and self._mgmt_sent(args[1]):
            self.mgmt_broken = True  # a response of the wrong size puts the channel in bad
            self.taint("the management channel is in bad state")  # state: later messages EPIPE
        if name in ("stop", "suspend", "resume", "probe", "flr"):
            self.mgmt_broken = False  # a new channel (as ShimHarness._new_channel_state)
        if name == "client":  # a new session replaces the last (its contexts end with it)
            self.client, self.cctxs, self.client_known = got == "ok", [], got == "ok"
        elif name == "cctx" and got == "ok":
            self.cctxs.append(True)
        elif name == "cdestroy" and self.cctxs and got in ("ok", EINVAL):
            self.cctxs[args[0] % len(self.cctxs)] = False  # gone (or never there)
        if name in ("stop", "suspend", "resume", "probe", "flr"):
            self.client_known = False  # the client's contexts after a device event: not modelled
        if name in ("certlog", "certdetach") and self.aie4 and h.ctxs:
            self._certlog_after(self.ctxs[args[0] % len(h.ctxs)], name, got)
        if name == "dbg" and args[1] == "remove" and h.dbg_bos and h.ctxs:
            c = self.ctxs[args[0] % len(h.ctxs)]
            if c.dbg == args[2] % len(h.dbg_bos):
                c.dbg = None  # unbound whatever the firmware answers
        if name in ("stop", "suspend") or (self.tainted is not None and got != "ok") or \
                (name == "dbg" and want is None and got != "ok"):
            self.dbg_known = False  # the firmware may hold a registration the shim does not
        if name == "stop":  # the device is off whatever stop reported
            self.dev = "off"
            self._abort_pending(prior, lambda j: True)
        if got != "ok":
            if self.tainted is not None and want is None and self.dev == "up":
                self.dev = "unknown"  # a firmware failure may have stopped or runtime-
                # suspended the device on the way (its long wait let autosuspend run)
            if name == "suspend" and got != EINVAL:  # down anyway, the failure reported
                self.dev = "suspended"
                self._abort_pending(prior, lambda j: True)
                self.taint(f"suspend gave {got}")
            if name in ("exec", "chain") and h.ctxs:
                c = self.ctxs[args[0] % len(h.ctxs)]
                c.failed_execs += c.alive
            if name == "cucfg" and h.ctxs and got != want:  # a table may be set all the same
                c = self.ctxs[args[0] % len(h.ctxs)]
                c.cus, c.cu_user = None, c.cu_user or None
            if name in ("probe", "resume") and got not in (EINVAL, EALREADY, EBUSY):
                self.taint(f"{name} gave {got}")
                self.dev = "unknown"
            self.check(h)
            return
        if name == "flr":  # jobs in flight end ABORT (docs/spec/aie4.md §8)
            self._abort_pending(prior, lambda j: True)
        elif name == "umq":
            self.ctxs[args[0] % len(h.ctxs)].umq = True
        elif name == "probe":
            self.dev = "up"
            self._probed(h)
        elif name == "suspend":
            self.dev = "suspended"
            self._abort_pending(prior, lambda j: True)
        elif name == "resume":
            self.dev = "up"
        elif name in ("ctx", "qctx"):
            self.ctxs.append(CtxModel())
        elif name == "cucfg":
            c = self.ctxs[args[0] % len(h.ctxs)]
            c.cus, c.cu_user = args[1], True
        elif name == "dbg" and args[1] == "assign":
            self.ctxs[args[0] % len(h.ctxs)].dbg = args[2] % len(h.dbg_bos)
        elif name == "destroy":
            n = args[0] % len(h.ctxs)
            self.ctxs[n].alive = False
            self.ctxs[n].dbg = None  # the firmware forgets it with the context
            self._abort_pending(prior, lambda j: h.jobs[j].ctx == n)
        elif name in ("exec", "chain"):
            self._submitted(h, prior)
        self.check(h)

    # -- runtime PM (docs/spec/jobs.md §6) ---------------------------------------------------
    def _rpm_call(self, name: str, got: str) -> None:
        """What a driver call did to runtime PM and the suspend/resume counts: a suspend
        from up counts one (from runtime-suspended it only becomes a system suspend), every
        resume one, and an activating call on a runtime-suspended device resumes it."""
        was = self.rpm
        if name == "suspend" and got == "ok" and self.dev == "up":
            if was is not True:
                self.suspends = None if was is None or self.suspends is None else self.suspends + 1
            self.rpm = False
        elif name == "resume":
            if got == "ok" and self.resumes is not None:
                self.resumes += 1
            if got in ("ok", EINVAL):
                self.rpm = False
        elif name in ("stop", "probe") and got == "ok":
            self.rpm = False
        elif name in ACTIVATING and self.dev == "up" and was is not False:
            if got == "ok":  # the call resumed it on the way
                self.resumes = self.resumes + 1 if was and self.resumes is not None else None
                self.rpm = False
            else:  # before or after resuming: not known
                self.rpm = self.resumes = None
        elif name not in ("tick", "timeout") and self.dev == "up" and was is not False:
            # others may take the reference too (health without a kept report, a debug-BO
            # assign, AIE4's queue calls): read back from the shim after the line
            self.rpm = self.resumes = None

    def client_resumed(self, known: bool = True) -> None:
        """A client's call resumed the device the driver held suspended (docs/spec/jobs.md
        §1): one more resume (``known``: it surely was down), and the driver's autosuspend
        delay starts again."""
        self.resumes = self.resumes + 1 if known and self.resumes is not None else None
        self.rpm = False
        self.active_lo = self.line_t0

    def _armed(self, h: ShimHarness, pending: bool | None = None) -> bool:
        """Could the driver's autosuspend run now, time aside: the device up and not
        runtime-suspended, a delay set, not an SR-IOV PF, no command of the driver pending
        (``pending``, when the caller observed it already), and no other session holding a
        context (their runtime-PM references: the DRM files' and an AIE4 client's,
        docs/spec/jobs.md §1, §6)."""
        if self.dev != "up" or self.rpm is not False or self.autosuspend_ms <= 0 or self.pf:
            return False
        if self._pending(h) if pending is None else pending:
            return False
        return not sum(self.cctxs) and not (self.peer is not None and self.peer.live_contexts())

    def _pending(self, h: ShimHarness) -> bool:
        """Is a command of the driver session on a live context not final yet?"""
        now = self.observe(h)
        return any(now.get(i) not in FINAL for i, j in enumerate(h.jobs[: len(self.jobs)])
                   if self.ctxs[j.ctx].alive)

    def rpm_before(self, h: ShimHarness) -> None:
        """At the start of every line of the trace (a call or an ioctl)."""
        self.line_t0 = h.ip.clock.now_ns()
        self.pending_at_start = self._pending(h)
        self.armed_at_start = self._armed(h, self.pending_at_start)

    def rpm_after(self, h: ShimHarness, name: str, ioctl: bool) -> None:
        """At the end of every line: did the driver's autosuspend fire during it? The
        monitor runs its duties in the driver's waits, in a DRM file's waits and at the end
        of a ``tick``; it suspends once the delay passed since its last activity, which lies
        between ``active_lo`` and ``active_hi``. A ``tick`` armed at both ends and past the
        delay from ``active_hi`` surely suspended; any line ending past the delay from
        ``active_lo`` may have. Then the power state and the counts are checked."""
        t0, t1 = self.line_t0, h.ip.clock.now_ns()
        tick = name == "tick" and not ioctl
        if not ioctl and name in ACTIVATING and h.last == "ok":
            self.active_lo = max(self.active_lo, t0)
        pending_end = self._pending(h) if self.pending_at_start else None
        ended = self.pending_at_start and not pending_end
        if ended:  # a command ended during the line (a TDR or a context timeout in a tick):
            self.active_lo = max(self.active_lo, t0)  # its end is activity, as the driver's
            self.active_hi = max(self.active_hi, t1)  # put marks the device busy (jobs.md §6)
        delay = self.autosuspend_ms * 1_000_000
        armed_end = self._armed(h, pending_end)
        if self.rpm is False and self.dev == "up" and (armed_end or self.armed_at_start):
            if tick and armed_end and self.armed_at_start and self.tainted is None \
                    and t1 >= self.active_hi + delay:
                self.rpm = True
                if self.suspends is not None:
                    self.suspends += 1
            elif t1 >= self.active_lo + delay:
                self.rpm = self.suspends = None
            if self.rpm is not False:  # the suspend ends the mgmt channel (a resume makes a
                self.mgmt_broken = False  # new one) and the firmware's debug-BO bindings
                self.dbg_known = False
        if not tick:
            self.active_hi = t1
        if ioctl and name not in ("open", "ctx", "exec", "config") and not self.aie4 and \
                (self.dev == "suspended" or (self.dev == "up" and self.rpm)):
            self._client_may_have_resumed(h)  # its queries to the firmware take a PM reference
        if ioctl and self.aie4 and (self.dev == "suspended" or (self.dev == "up" and self.rpm)):
            self._client_may_have_resumed(h)  # an AIE4 file's attach and queries ask too
        if not ioctl and name in CLIENT_CALLS and \
                (self.dev == "suspended" or (self.dev == "up" and self.rpm is not False)):
            if name == "client" and h.last == "ok" and (self.dev == "suspended" or self.rpm):
                self.client_resumed()  # attach's queries need the firmware: surely resumed
                self.dev, self.mgmt_broken = "up", False
                h._new_channel_state()
            else:  # the others ask before their own checks (a refused call may have resumed
                # it too) and reach the firmware only for a connected context
                self._client_may_have_resumed(h)
        self._check_power(h, f"{'ioctl ' if ioctl else ''}{name}")

    def _client_may_have_resumed(self, h: ShimHarness) -> None:
        """A DRM file's ioctl whose firmware queries the model does not follow (GET_INFO,
        GET_ARRAY, ...) found the device suspended: each such query resumes it (docs/spec/
        jobs.md §1), so the device is up if the shim says it is no longer suspended and
        probed; a resume that failed leaves it failed (still bound, docs/spec/jobs.md §6),
        which the model does not follow."""
        try:
            down = h.shim.power()["suspended"]
            state = h.shim.info()["state"] if not down else "suspended"
        except ShimError:
            return
        if not down:
            self.client_resumed()
            self.dev, self.mgmt_broken = ("up" if state == "probed" else "unknown"), False
            if self.dev == "unknown":
                self.taint("a client's resume failed")
            h._new_channel_state()

    def _check_power(self, h: ShimHarness, after: str) -> None:
        """The shim's power state and suspend/resume counts are the model's (finding
        ``model_power``); an unknown count is taken from the shim."""
        if self.dev not in ("up", "suspended"):
            return
        try:
            pw = h.shim.power()
        except ShimError:
            return
        if self.tainted is None:
            want = True if self.dev == "suspended" else self.rpm
            if want is not None and pw["suspended"] != want:
                raise self._fail("power", f"after {after} the device is "
                                          f"{'' if pw['suspended'] else 'not '}suspended; the driver's "
                                          f"{'autosuspend' if self.dev == 'up' else 'suspend'} says "
                                          f"{'' if want else 'not '}suspended")
            for what in () if self.aie4 else ("suspends", "resumes"):  # AIE4: its own resets count too
                n, got = getattr(self, what), pw[f"{what[:-1]}_count"]
                if n is not None and got != n:
                    raise self._fail("power", f"after {after} the shim counts {got} {what}, "
                                              f"the driver {n}")
        self.suspends, self.resumes = pw["suspend_count"], pw["resume_count"]
        if self.rpm is None and self.dev == "up":
            self.rpm = pw["suspended"]  # known again (a later suspend is predicted anew)

    def _probed(self, h: ShimHarness) -> None:
        """Which command forms the probed firmware serves (docs/spec/jobs.md §4)."""

        major, minor = (int(x) for x in h.shim.info()["protocol_version"].split("."))
        self.protocol = (major, minor)
        chip = load_chip(h.chip)
        self.preempt = all(chip.has_feature(f, (major, minor)) for f in ("PREEMPT", "NPU_COMMAND"))
        self.health = chip.has_feature("GET_APP_HEALTH", (major, minor))

    def _abort_pending(self, prior: dict[int, ErtState], which) -> None:  # noqa: ANN001
        """Commands still pending when their context or the device goes end ABORT (or as
        they would have, when their answer came in while the driver was tearing down)."""
        for i, st in prior.items():
            if st not in FINAL and which(i):
                self.jobs[i].allowed.add(ErtState.ABORT)

    def _submitted(self, h: ShimHarness, prior: dict[int, ErtState]) -> None:
        job = h.jobs[-1]
        n = job.ctx
        c = self.ctxs[n]
        if job.seq != c.next_seq and not c.failed_execs:
            raise self._fail("seq", f"exec on context {n} got seq {job.seq}, expected {c.next_seq}")
        if job.seq < c.next_seq:
            raise self._fail("seq", f"exec on context {n} got seq {job.seq} again")
        c.next_seq = job.seq + 1
        state, index = outcome(job.kernels)
        # the hung sub-command is named from the firmware's health report: not on AIE4 (no
        # health record) nor without GET_APP_HEALTH (npu1's firmware)
        named = job.chain and not (state == ErtState.TIMEOUT and (self.aie4 or not self.health))
        m = JobModel({state}, index if named else None, raced=job.cmd in h.raced)
        pending_hang = [i for i in c.hangs if prior.get(i) not in FINAL]
        if pending_hang:  # queued behind a hang: TDR aborts it, unless TDR ran during exec
            now = self.observe(h)
            m.allowed = {ErtState.ABORT}
            if any(now.get(i) in FINAL for i in pending_hang):
                m.allowed |= {state}
        if state == ErtState.TIMEOUT:
            c.hangs.append(len(self.jobs))
        self.jobs.append(m)

    # -- the jobs' states -------------------------------------------------------------------
    def observe(self, h: ShimHarness) -> dict[int, ErtState]:
        out = {}
        for i, j in enumerate(h.jobs[: len(self.jobs)]):
            try:
                out[i] = h.shim.cmd_state(j.cmd)
            except ShimError:
                continue
        return out

    def check(self, h: ShimHarness) -> None:
        """Every job: final only in an allowed state, final for good, chains name their
        failing sub-command."""
        if self.vfjobs:
            self._vf_check(h)
        for i, st in self.observe(h).items():
            m = self.jobs[i]
            if not self._newly_final(m, st, f"job {i}"):
                continue
            if m.raced or self.tainted is not None:
                continue
            if st not in m.allowed:
                want = "/".join(sorted(s.name for s in m.allowed))
                raise self._fail("state", f"job {i} ({'+'.join(h.jobs[i].kernels)}) ended "
                                          f"{_name(st)}, the driver ends it {want}")
            if st in (ErtState.ERROR, ErtState.TIMEOUT) and m.error_index is not None \
                    and outcome(h.jobs[i].kernels)[0] == st:
                got = chain_error_index(h.shim.bo_map(h.jobs[i].cmd))
                if got != m.error_index:
                    raise self._fail("error_index", f"chain job {i} ended {st.name} at sub-command "
                                                    f"{m.error_index}, error_index says {got}")

    def bulk_exec(self, n: int, seq: int) -> None:
        """A ``bulk`` call on context ``n`` submitted one more nop job."""
        c = self.ctxs[n]
        if seq != c.next_seq and not c.failed_execs:
            raise self._fail("seq", f"bulk exec on context {n} got seq {seq}, expected {c.next_seq}")
        c.next_seq = seq + 1

    def bulk_job(self, seq: int, st: ErtState) -> None:
        """... and the wait for it returned."""
        if self.tainted is None and not self.bulk_behind_hang and st != ErtState.COMPLETED:
            raise self._fail("state", f"bulk nop job {seq} ended {_name(st)}, the driver ends it COMPLETED")


def _name(st: object) -> str:
    return getattr(st, "name", str(st))


def _show(a: object) -> str:
    return a.hex() if isinstance(a, bytes) else (hex(a) if isinstance(a, int) and a > 255 else str(a))
