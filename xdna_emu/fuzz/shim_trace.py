"""Shim traces: what a test did to the real C shim and which firmware faults it met.

The same text format as device traces (:mod:`.trace`), with ``target shim`` after the
chip line. Each line is a shim call, a fault armed in the firmware (:mod:`.faults`), a
pause of virtual time or an expectation::

    chip npu4
    target shim
    call probe                 # probe with the emulator's firmware tree
    call timeout mbox_rx 1000  # xdna_shim_set_timeout (ms)
    call mgmt 0x108 00000000   # a management message: opcode, request bytes
    call ctx                   # create a hardware context; contexts are numbered 0, 1, ...
    call exec 0 hang           # submit a kernel (nop, fail, hang) on context 0; jobs 0, 1, ...
    call exec 0 nop cu@2       # ... in a command form (npu, cu, dpu, preempt, preempt_elf;
                               #   default npu), naming CU 2 (default 0) in its CU mask
    call qctx 10 30 0 2048     # create a context with QoS gops, fps, latency_ms, max_opc
    call cucfg 0 3             # CONFIG_CU: a CU table of 3 CUs on context 0
    call dbgbo 4096            # create a DEV BO of 4096 bytes for debugging: BOs 0, 1, ...
    call dbg 0 assign 1        # CONFIG_HWCTX ASSIGN_DBG_BUF (or remove) of BO 1 on context 0
    call syncwait 0 2          # wait on point 2 of context 0's hardware-queue handle
    call wait 0 3000           # wait for job 0, timeout in ms
    call info 0                # hwctx_info of context 0
    call destroy 0             # hwctx_destroy of context 0 (numbers are never reused)
    call suspend / resume / stop
    call tick 500              # let 500 ms of virtual time pass with the shim idle
    call chain 0 nop,hang,fail # a CMD_CHAIN of START_NPU commands on context 0 (one job)
    call waitseq 0 -1 100      # xdna_shim_wait on any seq of context 0 (never submitted ...)
    call health 0              # app_health of context 0
    call power low             # set_power_mode (default, low, medium, high, turbo)
    call bulk 0 300            # 300 nop jobs on context 0, each waited for (ids wrap)
    call rewrite 1 0x7ff000    # at the next wait inside the next call, store the value into
                               #   word 1 of the newest command BO (a racing user)
    call umq 0                 # AIE4: hand context 0's HSA queue to the application
    call doorbell 0            # AIE4: the application rings it (after one nop packet, if umq'd)
    call flr                   # AIE4: function-level reset (reset_prepare/reset_done)
    call certlog 0 1 0:4096,1:4096  # AIE4: CERT log attach of DEV BO 1 (``dbgbo``; -1: a
                               #   SHARE BO) to context 0, slices uC:bytes (``-``: none)
    call certdetach 0          # AIE4: CERT log detach
    call client                # AIE4: a second process's session attaches (a new one each time)
    call cctx                  # AIE4: the client creates a context (numbered 0, 1, ...)
    call cdestroy 0            # AIE4: the client destroys its context 0
    call cmgmt driver 0        # AIE4: the client sends a management message through the
                               #   daemon: query (IDENTIFY), driver (CREATE_VFS, driver-only)
                               #   or foreign (DESTROY_HW_CONTEXT of the driver's context 0)
    fault bad_id 0             # arm a message fault: kind, channel (0 mgmt, -1 any user
    fault late 0 1 6000        #   channel), count, argument
    fault unsolicited 0        # an action fault happens at once
    fault refuse_context       # from now on a deliberately wrong firmware (faults.VARIANTS)
    ioctl open                 # amdxdna ioctls on DRM files opened on the same daemon
    ioctl exec 0 0 hang        #   (:mod:`.uapi_trace`, docs/spec/fuzzing.md §12)
    expect errno EPIPE         # the last call's outcome (ok, or an errno name)
    expect state 0 completed   # the ERT state of job 0's command BO

Calls run in deterministic in-process mode (:mod:`xdna_emu.testing.inproc`), so a trace
replays exactly. After every call the shim's promises are checked:

- only ``ShimError`` comes out of a call, always with an errno, and the shim's wait hooks
  never fail;
- every call returns within :data:`CALL_BUDGET_NS` of virtual time, without livelock;
- a bad management channel stays bad: once a call gave EPIPE, management messages give
  EPIPE until the device is stopped, suspended or probed again;
- a handle used after its context was destroyed gives EINVAL or ENOENT;
- a successful wait leaves its command in a final state.

After the last line, every command that was submitted must reach a final state once TDR
had time (the driver aborts what it cannot finish).
"""

from __future__ import annotations

import errno as errno_mod
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..chips import load_chip
from ..shim import BO_CMD, BO_DEV, BO_SHARE, ErtState, ShimError, ert_start_dpu, ert_start_npu
from .cow import copy_one_level
from .faults import ACT_FAULTS, MSG_FAULTS, VARIANTS, FaultInjector
from .invariants import Failure, Hang, InvariantViolation
from .lang import Op, TraceError, typed_operands
from .model import AUTOSUSPEND_MS, CLIENT_CALLS, MGMT_RESP, ShimModel, parse_form
from .uapi_trace import IOCTL_SPECS, UapiModel, UapiRunner, parse_ioctl

if TYPE_CHECKING:
    from ..kernels import Kernel
    from ..shim import Shim
    from ..testing.inproc import InProcess

#: Longest one call may take in virtual time: TDR (2 s) a few times plus mailbox RX.
CALL_BUDGET_NS = 30 * 1_000_000_000
#: How long the end-of-trace check waits for each outstanding command (ms, virtual).
FINAL_WAIT_MS = 15_000
#: virtual time the device gets at the end to run user-mode packets that were rung (AIE4)
UMQ_SETTLE_NS = 100_000_000
#: The mailbox RX timeout a fresh session starts with (ms); ``call timeout`` changes it.
DEFAULT_RX_MS = 1000
KERNELS = ("nop", "fail", "hang")
FINAL = frozenset({ErtState.COMPLETED, ErtState.ERROR, ErtState.ABORT, ErtState.TIMEOUT})
#: operand kinds per call (i int, b bytes, s string); see :func:`xdna_emu.fuzz.lang.typed_operands`
CALL_SPECS = {"probe": "", "timeout": "si", "mgmt": "ib", "ctx": "", "destroy": "i",
              "exec": "is", "wait": "ii", "info": "i", "suspend": "", "resume": "", "stop": "",
              "tick": "i", "chain": "is", "waitseq": "iii", "health": "i", "power": "s",
              "bulk": "ii", "rewrite": "ii", "umq": "i", "doorbell": "i", "flr": "",
              "qctx": "iiii", "cucfg": "ii", "dbgbo": "i",
              "dbg": "isi", "syncwait": "ii", "certlog": "iis", "certdetach": "i",
              "client": "", "cctx": "", "cdestroy": "i", "cmgmt": "si",
              "sriov": "i", "vf": "is", "vfwait": "ii"}
#: trailing operands a call may leave out (kinds as in CALL_SPECS)
CALL_OPTIONAL = {"exec": "s"}
#: the wait a ``syncwait`` grants (ms, virtual)
SYNCWAIT_MS = 1000
#: largest DEV BO ``dbgbo`` creates, and most CUs ``cucfg`` asks for (past the 32 allowed)
DBGBO_MAX, CUCFG_MAX = 1 << 16, 40
#: most jobs one ``bulk`` call runs (enough to wrap the 8-bit message id a few times)
BULK_MAX = 1024
POWER_MODES = ("default", "low", "medium", "high", "turbo")
#: a firmware context id no context has (``cmgmt foreign`` with no live driver context)
FW_ID_NONE = 0xFFFF
#: the non-DEV BO a ``certlog`` with a negative BO number names (refused: docs/spec/aie4.md §11)
LOG_SHARE_SIZE = 1 << 16
FAULT_SPEC = "iii"
#: faults after which the firmware runs nothing more (faults.py): rung user-mode packets
#: are then not promised to run
FW_STOPPING = frozenset({"unload", "fw_fatal", "reset"})
#: driver-session calls that end or re-create every session's contexts and jobs
DEVICE_EVENTS = frozenset({"stop", "suspend", "resume", "probe", "flr"})


#: the first line of a generated example: the probe the bring-up snapshot stands for
PROBE = Op("call", ("probe",))
#: containers a snapshot copies one level deep (the objects mutate them in place)
_COPIED = (list, dict, Counter, set, bytearray)


def _copied(v: Any) -> Any:
    return copy_one_level(v, _COPIED)


def _fields(obj: Any) -> tuple[Any, dict[str, Any], tuple[str, ...]]:
    """(obj, its fields, which of them are containers): a restore puts the fields back and
    copies the containers again (the objects an example makes are its own)."""
    d = {k: _copied(v) for k, v in vars(obj).items()}
    return obj, d, tuple(k for k, v in d.items() if type(v) in _COPIED)


def _put_back(saved: tuple[Any, dict[str, Any], tuple[str, ...]]) -> None:
    obj, d, containers = saved
    live = vars(obj)
    live.clear()
    live.update(d)
    for k in containers:
        live[k] = _copied(d[k])


@dataclass
class BringUp:
    """Both sides as ``fresh`` and ``call probe`` left them (docs/spec/fuzzing.md §9): the C
    shim's driver state, the device, the daemon's session, the eventfd counters and the
    harness's own objects. ``ShimHarness.restore_bring_up`` puts them back."""

    shim: Shim
    c: Any  # the C snapshot (xdna_shim_snapshot_save)
    fn: Any  # PciFunction.save()
    #: the host buffers behind the device's mappings, by (PASID, address), each kept open
    #: by a view of ours (an unmap closes a buffer no view holds): a stop or suspend unmaps
    #: the async buffer, and the restore maps it for the device again (docs/spec/fuzzing.md §9)
    mem: dict[tuple[int, int], Any]
    views: list[memoryview]
    sess: Any  # the daemon's Connection of the shim
    ctrl: bytes  # its ctrl page
    objects: list[tuple[Any, dict[str, Any], tuple[str, ...]]]
    fi_rng: Any
    #: MSI-X wires: per vector a descriptor of our own on its eventfd (the shim's: the C
    #: snapshot keeps its counter), None when not wired
    wires: list[int | None]
    fired: set[int] | None

    def close(self) -> None:
        for fd in self.wires:
            if fd is not None:
                os.close(fd)
        self.wires = []
        for v in self.views:
            v.release()
        self.views = []


def _show_state(st: object) -> str:
    return getattr(st, "name", str(st))


class ShimCrash(Failure):
    """Something other than ShimError came out of a shim call (or out of its wait hook)."""

    kind = "crash"


@dataclass
class _Job:
    ctx: int  # context number in the trace
    seq: int
    cmd: int  # command BO handle
    kernels: tuple[str, ...] = ("nop",)  # one per sub-command (a chain has several)
    chain: bool = False


def errname(e: int | None) -> str:
    return errno_mod.errorcode.get(e or 0, str(e))


def chain_command(shim: Shim, kernels: list[Kernel], form: str = "npu") -> int:
    """A CMD BO holding a CMD_CHAIN of one ``form`` command BO per kernel (START_NPU; on
    AIE4 START_DPU)."""
    from ..shim import ert_cmd_chain

    subs = [npu_command(shim, k, form) for k in kernels]
    cmd = shim.bo_create(BO_CMD, 4096)
    d = ert_cmd_chain(subs)
    shim.bo_map(cmd)[: len(d)] = d
    return cmd


def npu_command(shim: Shim, kernel: Kernel, form: str = "npu", cu: int = 0) -> int:
    """A CMD BO holding one command of ``form`` (docs/spec/jobs.md §4) that runs ``kernel``
    (its descriptor in a DEV BO of its own) on CU ``cu``; returns the CMD BO's handle."""
    from .. import kernels as K
    from ..shim import ert_start_cu, ert_start_preempt

    instr, cmd = shim.bo_create(BO_DEV, 64), shim.bo_create(BO_CMD, 4096)
    shim.bo_map(instr)[: K.DESC.size] = K.encode(K.Desc(kernel))
    addr, mask = shim.bo_info(instr)["xdna_addr"], 1 << cu
    if form == "cu":
        d = ert_start_cu([addr & 0xFFFFFFFF, addr >> 32], cu_mask=mask)
    elif form == "dpu":
        d = ert_start_dpu(addr, K.DESC.size, cu_mask=mask)
    elif form in ("preempt", "preempt_elf"):
        d = ert_start_preempt(addr, K.DESC.size, cu_mask=mask, elf=form == "preempt_elf")
    else:
        d = ert_start_npu(addr, K.DESC.size, cu_mask=mask)
    shim.bo_map(cmd)[: len(d)] = d
    return cmd


class ShimHarness:
    """The real shim on a fresh device, driven by trace ops with every promise checked."""

    def __init__(self, chip: str = "npu4") -> None:
        from ..testing.inproc import InProcess

        self.chip = chip
        #: AIE4: START_DPU commands through the HSA queue, umq/doorbell/flr (docs/spec/fuzzing.md §8)
        self.aie4 = load_chip(chip).aie4 is not None
        self.fi = FaultInjector()
        self.ip: InProcess = InProcess(chip, fault=self.fi)
        self.events: Counter[str] = Counter()
        self.use_model = True  # check every call against the driver's contract (model.py)
        self.calls: dict[str, Callable[..., Any]] = {
            name: getattr(self, "c_" + name) for name in CALL_SPECS}
        self.bring_up: BringUp | None = None  # save_bring_up (docs/spec/fuzzing.md §9)
        self.fresh()

    # -- lifecycle ----------------------------------------------------------------------
    def fresh(self) -> ShimHarness:
        """Power-on device, a newly opened shim, no faults armed."""
        if getattr(self, "uapi", None) is not None:
            self.uapi.close()  # the DRM files' sessions go before the daemon drops them
        self._close_vfs()  # the VFs' sessions too (the reset removes the VFs)
        self.ip.fresh()
        self.shim = self.ip.open()
        self.shim.set_timeout("mbox_rx", DEFAULT_RX_MS)
        self.shim.set_autosuspend_ms(AUTOSUSPEND_MS)
        self.ctxs: list[int] = []  # handle per context number, in creation order
        self.dead: set[int] = set()  # numbers of destroyed contexts
        self.jobs: list[_Job] = []
        self.executed: list[Op] = []
        self.last = "ok"
        self.mgmt_bad = False
        self.steps = 0
        self._in_monitor = False  # the driver's duties are running inside a file's wait
        self.rewrite: tuple[int, int] | None = None  # armed by ``call rewrite``
        self.raced: set[int] = set()  # command BOs rewritten under a running exec
        self.race_fired = False  # a rewrite happened inside the call running now
        self.umqs: dict[int, UserQueue] = {}  # AIE4: context number -> its user-mode queue
        self.syncobjs: dict[int, int] = {}  # hardware-queue handle per context number, once read
        self.dbg_bos: list[tuple[int, int]] = []  # (handle, size) per ``dbgbo`` number
        if getattr(self, "client", None) is not None:
            self.client.close()
        self.client: Shim | None = None  # ``client``: another process's session (AIE4)
        #: SR-IOV (docs/spec/aie4.md §10): a driver session per enabled VF (opened and
        #: probed by its first ``vf``, with one context), every VF session ever opened, and
        #: the VF jobs: (session, context, command BO, seq, kernel)
        self.vf_shims: dict[int, tuple[Shim, int]] = {}
        self.vf_all: list[Shim] = []
        self.vfjobs: list[tuple[Shim, int, int, int, str]] = []
        self.cctxs: list[int] = []  # its context handles, by number
        self.model: ShimModel | None = ShimModel(self.aie4, self.chip) if self.use_model else None
        #: the DRM files of ``ioctl`` lines: client sessions, the programs beside this driver
        self.uapi = UapiRunner(self)
        self.umodel = UapiModel(self.uapi, self.model) if self.model is not None else None
        if self.model is not None:
            self.model.peer = self.uapi
        self.events.clear()
        return self

    # -- the bring-up snapshot (docs/spec/fuzzing.md §9) ------------------------------------
    def save_bring_up(self) -> BringUp:
        """``fresh`` and ``call probe`` as an example's first line runs them, then a snapshot
        of both sides: :meth:`restore_bring_up` starts the next example from it. Raises the
        probe's finding, or ShimError when the probe did not leave a bare probed session."""
        if self.bring_up is not None:  # first: its descriptors must not look live below
            self.bring_up.close()
            self.bring_up = None
        self.fresh()
        self.apply(PROBE)
        if self.last != "ok":
            raise ShimError(errno_mod.EAGAIN, f"the probe gave {self.last}")
        d, shim = self.ip.daemon, self.shim
        sess = d.driver
        if sess is None or len(d.sessions) != 1 or d.vfs or self.client is not None:
            raise ShimError(errno_mod.EBUSY, "the probe left other sessions")
        c = shim.snapshot_save()
        fn = d.fn
        mem = {(pasid, m.address): m.mem for pasid, space in fn.iommu.spaces.items()
               for m in space.maps}
        wires = [None if d.wires.fd(v) is None else os.dup(d.wires.fd(v))  # type: ignore[arg-type]
                 for v in range(d.chip.msix.vectors)]
        objects = [_fields(o) for o in (self, self.ip, self.fi, self.model, self.umodel,
                                        self.uapi, d, sess) if o is not None]
        self.bring_up = BringUp(
            shim=shim, c=c, fn=fn.save(), mem=mem, views=[memoryview(m) for m in mem.values()],
            sess=sess, ctrl=bytes(sess.ctrl),
            objects=objects, fi_rng=self.fi.rng.getstate(), wires=wires,
            fired=None if d.wires.fired is None else set(d.wires.fired))
        return self.bring_up

    def restore_bring_up(self) -> bool:
        """Put both sides back as :meth:`save_bring_up` left them, without a fresh device or a
        probe; False (``fresh`` is due) when the example changed what the snapshot cannot
        restore: it reset the function or enabled VFs, or the session or the shim's
        transport is gone."""
        b = self.bring_up
        d = self.ip.daemon
        if (b is None or self.shim is not b.shim or d.vfs or b.sess.closed
                or d.sessions.get(b.sess.id) is not b.sess):
            return False
        fn = d.fn
        self.ip.claim_hooks()  # the other sessions' closes wait on this daemon
        self.uapi.close()  # the DRM files, a client session, the VFs' sessions: as release
        if self.client is not None:
            self.client.close()
            self.client = None
        self._close_vfs()
        try:
            self.shim.snapshot_restore(b.c)
        except ShimError:
            return False
        for sess in [s for s in d.sessions.values() if s is not b.sess]:
            d.drop(sess, "closed")  # the closes above may not have reached the daemon yet
        live = [(pasid, m) for pasid, space in fn.iommu.spaces.items() for m in space.maps]
        for pasid, m in live:  # the example's own mappings go, so the restore keeps the
            if b.mem.get((pasid, m.address)) is not m.mem:  # bring-up's where they are
                fn.dma_unmap(pasid, m.address, m.size)
        fn.restore(b.fn, host_memory=lambda ms: b.mem[(ms.pasid, ms.address)])
        for saved in b.objects:
            _put_back(saved)
        self.bring_up = b  # the harness's fields were taken before it existed
        b.sess.ctrl[:] = b.ctrl
        self.fi.rng.setstate(b.fi_rng)
        self.fi.install(fn.device, self.ip.clock)
        d._publish_config()  # noqa: SLF001 - the sysfs config file follows config space
        wires = d.wires
        for v, fd in enumerate(b.wires):
            if fd is None:
                if wires.fd(v) is not None:
                    wires.clear([v])
            elif wires.fd(v) is None:  # the shim's own eventfd of the vector, again
                wires.set(v, [os.dup(fd)])
        if b.fired is not None and wires.fired is not None:
            wires.fired.clear()
            wires.fired.update(b.fired)
        return True

    def _close_vfs(self) -> None:
        for s in getattr(self, "vf_all", []):
            s.close()
        self.vf_all = []

    def close(self) -> None:
        if self.bring_up is not None:
            self.bring_up.close()
            self.bring_up = None
        self.ip.claim_hooks()  # the files' and shims' closes wait on this daemon
        self.uapi.close()
        if self.client is not None:
            self.client.close()
            self.client = None
        self._close_vfs()
        self.ip.close()

    def release(self) -> None:
        """Close the shim and clear this thread's wait hooks (other shim users may follow)."""
        self.ip.claim_hooks()
        self.uapi.close()
        if self.client is not None:
            self.client.close()
            self.client = None
        self._close_vfs()
        self.ip.close_shim()

    # -- running ops ---------------------------------------------------------------------
    def apply(self, op: Op) -> None:
        """Run one op; raises Failure (a finding) or TraceError (a malformed op)."""
        self.executed.append(op)
        self.steps += 1
        if op.verb == "call":
            self._sync_resets()
            self._call(op.args[0], op.args[1:])
        elif op.verb == "ioctl":
            self._sync_resets()
            self._call(op.args[0], op.args[1:], ioctl=True)
        elif op.verb == "fault":
            self._fault(*op.args)
        elif op.verb == "expect":
            self._expect(op.args)
        else:
            raise TraceError(f"verb {op.verb!r} is not used in shim traces")
        if self.ip.hook_error is not None:
            err, self.ip.hook_error = self.ip.hook_error, None
            raise ShimCrash("hook", f"the wait hook raised {err!r}")

    def _call(self, name: str, args: tuple[Any, ...], ioctl: bool = False) -> None:
        """One shim call (or, with ``ioctl``, one ioctl op on a DRM file), checked."""
        from ..testing.inproc import Livelock

        specs = IOCTL_SPECS if ioctl else CALL_SPECS
        fn = (lambda *a: self.uapi.run(name, a)) if ioctl and name in specs else self.calls.get(name)
        if fn is None or name not in specs:
            raise TraceError(f"unknown {'ioctl op' if ioctl else 'shim call'} {name!r} "
                             f"(known: {', '.join(specs)})")
        n_opt = 0 if ioctl else len(CALL_OPTIONAL.get(name, ""))
        if not len(specs[name]) <= len(args) <= len(specs[name]) + n_opt:
            raise TraceError(f"{'ioctl' if ioctl else 'call'} {name} takes {len(specs[name])} operands")
        model: ShimModel | UapiModel | None = self.umodel if ioctl else self.model
        self.race_fired = False
        if self.model is not None:
            self.model.rpm_before(self)
        if model is not None:
            want = model.expect(self, name, args)
            prior = model.before(self, name, args)
            # the driver stopping, suspending, resetting the device: the files' jobs end too
            dev_prior = self.uapi.observe() if not ioctl and name in DEVICE_EVENTS else None
        t0 = self.ip.clock.now_ns()
        # a file's or a client session's call waits: the driver session's monitor works meanwhile
        monitored = ioctl or name in CLIENT_CALLS
        if monitored:
            self.ip.on_wait = self._driver_monitor
        try:
            fn(*args)
            self.last = "ok"
        except ShimError as e:
            if not e.errno:
                raise InvariantViolation("no_errno", f"{name} failed without an errno: {e}") from e
            self.last = errname(e.errno)
        except Livelock as e:
            raise Hang("livelock", f"{name}: {e}") from e
        except (Failure, TraceError):
            raise
        except Exception as e:  # noqa: BLE001 - anything else escaping the shim is the finding
            raise ShimCrash(type(e).__name__, f"{name}: {e!r}") from e
        finally:
            if monitored:
                self.ip.on_wait = None
        took = self.ip.clock.now_ns() - t0
        if name == "tick" and not ioctl:  # the time it was asked to let pass is not the call's
            took -= max(0, min(args[0], 60_000)) * 1_000_000
        if took > CALL_BUDGET_NS:
            raise Hang("deadline", f"{name} took {took / 1e9:.1f} s of virtual time")
        self.events[f"{'ioctl ' if ioctl else ''}{name}:{self.last}"] += 1
        if not ioctl and name in DEVICE_EVENTS:  # the daemon runs before the next call: the
            self.ip.idle(0)  # driver's PM words reach the clients' pages (docs/spec/jobs.md §1)
        if model is not None:
            model.after(self, name, args, self.last, prior, want)
            if dev_prior is not None:
                self.uapi.device_event(name, dev_prior)
            self.uapi.check()
        if self.model is not None:
            self.model.rpm_after(self, name, ioctl)

    def _driver_monitor(self) -> None:
        """While a DRM file's or a client session's call waits, the driver session's monitor
        runs its duties, as its thread would (deterministic mode has none): it takes a
        client's ask to resume the suspended device (docs/spec/jobs.md §1). Not from inside
        the driver's own waits."""
        if self._in_monitor or self.shim is None:
            return
        self._in_monitor = True
        try:
            self.shim.monitor_step()
        except ShimError:
            pass
        finally:
            self._in_monitor = False

    def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        res, _ = self.ip.call(fn, *args)
        return res

    def _ctx(self, i: int) -> tuple[int, int, bool]:
        """(number, handle, alive) of context number ``i`` (wrapping). Raises ShimError
        EINVAL when no context was ever created (there is nothing to name)."""
        if not self.ctxs:
            raise ShimError(errno_mod.EINVAL, "no context created yet")
        n = i % len(self.ctxs)
        return n, self.ctxs[n], n not in self.dead

    def _dead_use(self, what: str, n: int, fn: Callable[..., Any], *args: Any) -> None:
        """A call on a destroyed context's old handle must fail with EINVAL/ENOENT."""
        try:
            self._run(fn, *args)
        except ShimError as e:
            if e.errno not in (errno_mod.EINVAL, errno_mod.ENOENT):
                raise InvariantViolation("use_after_destroy",
                                         f"{what} on destroyed context {n} gave {errname(e.errno)}") from e
            raise
        raise InvariantViolation("use_after_destroy", f"{what} on destroyed context {n} succeeded")

    # -- calls --------------------------------------------------------------------------------
    def _new_channel_state(self) -> None:
        self.mgmt_bad = False
        for q in self.umqs.values():  # AIE4: the queues come back empty; a packet rung
            q.reset()  # just before is not promised to run (docs/spec/aie4.md §8)

    def _sync_resets(self) -> None:
        """A reset the shim did on its own (the AIE4 TDR backstop, a reset it did not start:
        docs/spec/aie4.md §8) re-created the mgmt channel and the queues, as a resume does."""
        if not self.aie4 or self.shim is None:
            return
        try:
            n = self.shim.power()["resume_count"]
        except ShimError:
            return
        if n != getattr(self, "_resumes_seen", n):
            self._new_channel_state()
        self._resumes_seen = n

    def c_probe(self) -> None:
        from ..testing.inproc import firmware_dir

        self._new_channel_state()
        self._run(self.shim.probe, firmware_dir(self.chip))

    def c_timeout(self, which: str, ms: int) -> None:
        if which == "autosuspend":  # the runtime-PM delay (docs/spec/jobs.md §6)
            self._run(self.shim.set_autosuspend_ms, ms)
            if self.model is not None and ms >= 0:
                self.model.autosuspend_ms = ms
            return
        try:
            self.shim.set_timeout(which, ms)
        except ValueError as e:  # an unknown timeout name: the trace is malformed
            raise TraceError(str(e)) from None

    def c_mgmt(self, opcode: int, req: bytes) -> None:
        try:
            self._run(self.shim.mgmt_msg, opcode, req, MGMT_RESP, 0)  # 0: the RX timeout (call timeout)
        except ShimError as e:
            if e.errno == errno_mod.EPIPE:
                self.mgmt_bad = True
            elif self.mgmt_bad and e.errno in (errno_mod.ETIME, errno_mod.ETIMEDOUT):
                raise InvariantViolation("bad_channel",
                                         f"mgmt on a bad channel gave {errname(e.errno)}, not EPIPE") from e
            raise
        if self.mgmt_bad:
            raise InvariantViolation("bad_channel", "a mgmt message succeeded on a bad channel")

    def c_ctx(self) -> None:
        self._new_ctx(self._run(self.shim.hwctx_create))

    def c_qctx(self, gops: int, fps: int, latency_ms: int, max_opc: int) -> None:
        """A context with QoS (docs/spec/jobs.md §6: QoS drives DPM); values are u32."""
        m = 0xFFFFFFFF
        self._new_ctx(self._run(self.shim.hwctx_create, 0, 0, -1, gops & m, fps & m,
                                latency_ms & m, max_opc & m))

    def _new_ctx(self, h: int) -> None:
        self.ctxs.append(h)

    def _syncobj(self, n: int) -> int:
        """Context ``n``'s hardware-queue handle (hwctx_info, no firmware); 0, which no
        context holds, when it cannot be read."""
        if n not in self.syncobjs:
            try:
                self.syncobjs[n] = self.shim.hwctx_info(self.ctxs[n])["syncobj"]
            except ShimError:
                return 0
        return self.syncobjs[n]

    def c_cucfg(self, i: int, count: int) -> None:
        """CONFIG_CU with ``count`` CUs, each a DEV BO of its own (function = its index)."""
        n, h, alive = self._ctx(i)
        k = max(0, min(count, CUCFG_MAX))
        bos = [self._run(self.shim.bo_create, BO_DEV, 64) for _ in range(k)]
        self._run(self.shim.config_cu, h, [(bo, f) for f, bo in enumerate(bos)])

    def c_dbgbo(self, size: int) -> None:
        size = max(1, min(size, DBGBO_MAX))
        self.dbg_bos.append((self._run(self.shim.bo_create, BO_DEV, size), size))

    def c_dbg(self, i: int, how: str, b: int) -> None:
        """CONFIG_HWCTX ASSIGN_DBG_BUF / REMOVE_DBG_BUF of debug BO number ``b``."""
        if how not in ("assign", "remove"):
            raise TraceError(f"dbg {how!r}: assign or remove")
        n, h, alive = self._ctx(i)
        if not self.dbg_bos:
            raise ShimError(errno_mod.EINVAL, "no debug BO created yet")
        bo = self.dbg_bos[b % len(self.dbg_bos)][0]
        fn = self.shim.assign_debug_bo if how == "assign" else self.shim.remove_debug_bo
        if not alive:
            return self._dead_use(f"dbg {how}", n, fn, h, bo)
        self._run(fn, h, bo)
        return None

    def log_target(self, b: int) -> tuple[bool, int]:
        """(a DEV BO?, its size) of the BO ``certlog`` names: ``dbgbo`` number ``b``, or for a
        negative ``b`` (or none made yet) a SHARE BO of LOG_SHARE_SIZE made for the call."""
        if b >= 0 and self.dbg_bos:
            return True, self.dbg_bos[b % len(self.dbg_bos)][1]
        return False, LOG_SHARE_SIZE

    def c_certlog(self, i: int, b: int, slices: str) -> None:
        """CERT log attach (docs/spec/aie4.md §11): slices ``uC:bytes,...`` in BO order."""
        try:
            ucs = [] if slices == "-" else [tuple(int(x, 0) for x in sl.split(":")) for sl in slices.split(",")]
        except ValueError:
            raise TraceError(f"certlog slices {slices!r}: uC:bytes,... or -") from None
        if any(len(u) != 2 or not 0 <= u[0] < 1 << 32 or not 0 <= u[1] < 1 << 32 for u in ucs):
            raise TraceError(f"certlog slices {slices!r}: uC:bytes,... (u32 each)")
        n, h, alive = self._ctx(i)
        if b >= 0 and self.dbg_bos:
            bo = self.dbg_bos[b % len(self.dbg_bos)][0]
        else:
            bo = self._run(self.shim.bo_create, BO_SHARE, LOG_SHARE_SIZE)
        if not alive and self.aie4:
            return self._dead_use("certlog", n, self.shim.cert_log_attach, h, bo, ucs)
        self._run(self.shim.cert_log_attach, h, bo, ucs)
        return None

    def c_certdetach(self, i: int) -> None:
        n, h, alive = self._ctx(i)
        if not alive and self.aie4:
            return self._dead_use("certdetach", n, self.shim.cert_log_detach, h)
        self._run(self.shim.cert_log_detach, h)
        return None

    def c_client(self) -> None:
        """Another process attaches to the probed function: a client session (its management
        messages go through the daemon's proxy; docs/spec/aie4.md §12). A new one replaces
        the last, whose contexts end with it."""
        from ..shim import Shim

        if self.client is not None:
            self.client.close()
            self.client, self.cctxs = None, []
        c = self._run(Shim.open, self.ip.daemon.socket_path)
        try:
            self._run(c.attach)
        except ShimError:
            c.close()
            raise
        self.client = c

    def _the_client(self) -> Shim:
        if self.client is None:
            raise ShimError(errno_mod.EINVAL, "no client session")
        return self.client

    def c_cctx(self) -> None:
        c = self._the_client()
        self.cctxs.append(self._run(c.hwctx_create))

    def c_cdestroy(self, i: int) -> None:
        c = self._the_client()
        if not self.cctxs:
            raise ShimError(errno_mod.EINVAL, "the client has no context")
        self._run(c.hwctx_destroy, self.cctxs[i % len(self.cctxs)])

    def client_message(self, kind: str, i: int) -> tuple[int, bytes]:
        """(opcode, request) of a ``cmgmt``: IDENTIFY; CREATE_VFS, the driver's alone;
        DESTROY_HW_CONTEXT of the driver's context ``i`` (a live one's firmware id, else
        one no context has)."""
        from ..fw.aie4.messages import Opcode as A4

        if kind == "query":
            return int(A4.IDENTIFY), bytes(4)
        if kind == "driver":
            return int(A4.CREATE_VFS), bytes(4)
        if kind != "foreign":
            raise TraceError(f"cmgmt {kind!r}: query, driver or foreign")
        live = [n for n in range(len(self.ctxs)) if n not in self.dead]
        fw = FW_ID_NONE
        if live:
            try:
                fw = self.shim.hwctx_info(self.ctxs[live[i % len(live)]])["fw_ctx_id"]
            except ShimError:
                pass
        return int(A4.DESTROY_HW_CONTEXT), fw.to_bytes(4, "little") + bytes(4)

    def c_cmgmt(self, kind: str, i: int) -> None:
        opcode, req = self.client_message(kind, i)
        c = self._the_client()
        self._run(c.mgmt_msg, opcode, req, MGMT_RESP if kind == "query" else 4, 0)

    # -- SR-IOV (docs/spec/aie4.md §10) ------------------------------------------------------
    def c_sriov(self, n: int) -> None:
        """``sriov N``: the driver's sriov_configure, as a write of N to sriov_numvfs."""
        before = len(self.ip.daemon.vfs)
        self._run(self.shim.sriov_configure, n & 0xFFFFFFFF)
        if len(self.ip.daemon.vfs) != before:  # the VFs went (or came): new sessions later
            self.vf_shims = {}

    def c_vf(self, i: int, kernel: str) -> None:
        """``vf I KERNEL``: on enabled VF I (modulo), its driver session (probed on first
        use, one context) submits one START_DPU command running KERNEL."""
        from .. import kernels as K
        from ..shim import Shim
        from ..testing.inproc import firmware_dir

        if kernel not in KERNELS:
            raise TraceError(f"kernel {kernel!r} is not one of {', '.join(KERNELS)}")
        vfs = self.ip.daemon.vfs
        if not vfs:
            raise ShimError(errno_mod.EINVAL, "no VF is enabled")
        n = i % len(vfs)
        if n not in self.vf_shims:
            s = self._run(Shim.open, vfs[n].socket_path)
            self.vf_all.append(s)
            self._run(s.probe, firmware_dir(self.chip))
            self.vf_shims[n] = (s, self._run(s.hwctx_create))
        s, ctx = self.vf_shims[n]
        cmd = self._run(npu_command, s, K.Kernel[kernel.upper()], "dpu", 0)
        self.vfjobs.append((s, ctx, cmd, self._run(s.exec, ctx, cmd), kernel))

    def c_vfwait(self, j: int, timeout_ms: int) -> None:
        if not self.vfjobs:
            raise ShimError(errno_mod.EINVAL, "no VF job submitted yet")
        s, ctx, _, seq, _ = self.vfjobs[j % len(self.vfjobs)]
        self._run(s.wait, ctx, seq, max(0, timeout_ms))

    def vf_state(self, j: int) -> ErtState | None:
        s, _, cmd, _, _ = self.vfjobs[j]
        try:
            return s.cmd_state(cmd)
        except ShimError:
            return None

    def c_syncwait(self, i: int, seq: int) -> None:
        n, h, alive = self._ctx(i)
        self._run(self.shim.syncobj_wait, self._syncobj(n) if alive else self.syncobjs.get(n, 0), seq & (1 << 64) - 1, SYNCWAIT_MS)

    def c_destroy(self, i: int) -> None:
        n, h, alive = self._ctx(i)
        if not alive:
            return self._dead_use("destroy", n, self.shim.hwctx_destroy, h)
        self._syncobj(n)  # its old queue handle, for ``syncwait`` after the destroy
        self.dead.add(n)
        self._run(self.shim.hwctx_destroy, h)
        return None

    def _form(self) -> str:
        """The command form a context runs by default: START_NPU, on AIE4 START_DPU (the
        only one it runs; docs/spec/aie4.md §8)."""
        return "dpu" if self.aie4 else "npu"

    def c_exec(self, i: int, kernel: str, form: str = "") -> None:
        from .. import kernels as K

        if kernel not in KERNELS:
            raise TraceError(f"kernel {kernel!r} is not one of {', '.join(KERNELS)}")
        name, cu = parse_form(form or self._form())
        if self.aie4 and name != "dpu":
            raise TraceError(f"command form {form!r}: AIE4 runs only dpu (START_DPU)")
        n, h, alive = self._ctx(i)
        s = self.shim
        cmd = self._run(npu_command, s, K.Kernel[kernel.upper()], name, cu)
        if not alive:
            return self._dead_use("exec", n, s.exec, h, cmd)
        seq = self._racing_exec(h, cmd)
        self.jobs.append(_Job(n, seq, cmd, (kernel,)))
        return None

    def c_wait(self, j: int, timeout_ms: int) -> None:
        if not self.jobs:
            raise ShimError(errno_mod.EINVAL, "no job submitted yet")
        job = self.jobs[j % len(self.jobs)]
        h = self.ctxs[job.ctx]
        if job.ctx in self.dead:
            return self._dead_use("wait", job.ctx, self.shim.wait, h, job.seq, timeout_ms)
        self._run(self.shim.wait, h, job.seq, timeout_ms)
        st = self.shim.cmd_state(job.cmd)
        if st not in FINAL:
            raise InvariantViolation("wait_not_final", f"wait on job {j} returned with {st.name}")
        return None

    def c_chain(self, i: int, kernels: str) -> None:
        from .. import kernels as K

        names = tuple(kernels.split(","))
        if not names or any(k not in KERNELS for k in names):
            raise TraceError(f"chain kernels {kernels!r}: each one of {', '.join(KERNELS)}")
        n, h, alive = self._ctx(i)
        s = self.shim
        cmd = self._run(chain_command, s, [K.Kernel[k.upper()] for k in names], self._form())
        if not alive:
            return self._dead_use("exec", n, s.exec, h, cmd)
        seq = self._racing_exec(h, cmd)
        self.jobs.append(_Job(n, seq, cmd, names, chain=True))
        return None

    def _racing_exec(self, h: int, cmd: int) -> int:
        """exec, with an armed ``rewrite`` done from inside its first wait (the window where
        a real driver has dropped its lock and another thread of the user may write)."""
        if self.rewrite is None:
            return self._run(self.shim.exec, h, cmd)
        word, value = self.rewrite
        view = self.shim.bo_map(cmd)

        def race() -> None:
            self.ip.on_wait = None
            self.rewrite = None
            self.race_fired = True
            self.raced.add(cmd)
            if 0 <= word * 4 <= len(view) - 4:
                view[word * 4 : word * 4 + 4] = (value & 0xFFFFFFFF).to_bytes(4, "little")
        self.ip.on_wait = race
        try:
            return self._run(self.shim.exec, h, cmd)
        finally:
            self.ip.on_wait = None

    def c_rewrite(self, word: int, value: int) -> None:
        """Arm a rewrite of the next submitted command BO, done while exec waits."""
        self.rewrite = (word, value)

    def c_waitseq(self, i: int, seq: int, timeout_ms: int) -> None:
        n, h, alive = self._ctx(i)
        self._run(self.shim.wait, h, seq & (1 << 64) - 1, timeout_ms)

    def c_health(self, i: int) -> None:
        n, h, alive = self._ctx(i)
        if not alive:
            return self._dead_use("health", n, self.shim.app_health, h)
        self._run(self.shim.app_health, h)
        return None

    def c_power(self, mode: str) -> None:
        if mode not in POWER_MODES:
            raise TraceError(f"power mode {mode!r} is not one of {', '.join(POWER_MODES)}")
        self._run(self.shim.set_power_mode, mode)

    def c_bulk(self, i: int, count: int) -> None:
        """``count`` nop jobs on one context, one at a time, each waited for: enough of
        them wraps the channel's message ids inside one example."""
        from .. import kernels as K

        n, h, alive = self._ctx(i)
        s = self.shim
        cmd = self._run(npu_command, s, K.Kernel.NOP, self._form())
        if not alive:
            return self._dead_use("exec", n, s.exec, h, cmd)
        view = s.bo_map(cmd)
        first = int.from_bytes(view[:4], "little")
        for _ in range(max(1, min(count, BULK_MAX))):
            view[:4] = ((first & ~0xF) | ErtState.NEW).to_bytes(4, "little")
            seq = self._run(s.exec, h, cmd)
            if self.model is not None:
                self.model.bulk_exec(n, seq)
            self._run(s.wait, h, seq, 3000)
            st = s.cmd_state(cmd)
            self.events[f"bulk {st.name.lower()}"] += 1
            if st not in FINAL:
                raise InvariantViolation("wait_not_final", f"bulk job {seq} returned with {st.name}")
            if self.model is not None:
                self.model.bulk_job(seq, st)
        return None

    def c_info(self, i: int) -> None:
        n, h, alive = self._ctx(i)
        if not alive:
            return self._dead_use("info", n, self.shim.hwctx_info, h)
        self._run(self.shim.hwctx_info, h)
        return None

    def c_umq(self, i: int) -> None:
        """AIE4 user-mode submission: the context's queue handed to the application."""
        n, h, alive = self._ctx(i)
        if not alive:
            return self._dead_use("umq", n, self.shim.umq, h)
        self.umqs[n] = UserQueue(self.shim, self._run(self.shim.umq, h))
        return None

    def c_doorbell(self, i: int) -> None:
        """The application's doorbell; on a user-mode context after one nop packet."""
        n, h, alive = self._ctx(i)
        q = self.umqs.get(n)
        if alive and q is not None:
            q.put_nop()
        if not alive:
            return self._dead_use("doorbell", n, self.shim.doorbell, h)
        self._run(self.shim.doorbell, h)
        if q is not None:
            q.rung = q.written
        return None

    def c_flr(self) -> None:
        self._new_channel_state()
        self._run(self.shim.flr)

    def c_suspend(self) -> None:
        self._new_channel_state()
        self._run(self.shim.suspend)

    def c_resume(self) -> None:
        self._new_channel_state()
        self._run(self.shim.resume)

    def c_stop(self) -> None:
        self._new_channel_state()
        self._run(self.shim.stop)

    def c_tick(self, ms: int) -> None:
        """Virtual time passes with the application idle: late responses arrive, and the
        driver's monitor runs its duties (receiving, TDR) as its thread would. In
        deterministic mode that work runs only inside the shim's waits (docs/spec/jobs.md
        §6), so it first receives what came since the last wait; while a job is
        outstanding the time is spent in a wait on the oldest one (what a sleeping
        application's monitor thread does meanwhile); once none is, the
        device alone runs, and the monitor runs its duties at the end (autosuspend, once
        the device was idle for the delay)."""
        end = self.ip.clock.now_ns() + max(0, min(ms, 60_000)) * 1_000_000
        # what arrived since the last wait is received now, as the monitor thread would have
        # when it came (a completion reaped only at the end would count as activity then)
        self._driver_monitor()
        while (left := end - self.ip.clock.now_ns()) > 0:
            job = self._outstanding()
            if job is None:
                self.ip.idle(left)
                break
            try:
                self._run(self.shim.wait, self.ctxs[job.ctx], job.seq, max(1, -(-left // 1_000_000)))
            except ShimError:
                pass
            if self._outstanding() is job:  # timed out, or the wait could not wait: time is up
                self.ip.idle(max(0, end - self.ip.clock.now_ns()))
                break
        suspends = self._suspends()
        self._driver_monitor()  # its duties at the end of the idle time: autosuspend
        if self._suspends() != suspends:  # the queues go with the firmware's contexts
            self.events["autosuspend"] += 1
            self._new_channel_state()

    def _suspends(self) -> int:
        try:
            return self.shim.power()["suspend_count"]
        except ShimError:
            return -1

    def _outstanding(self) -> _Job | None:
        """The oldest job on a live context whose command is not final yet."""
        try:
            for job in self.jobs:
                if job.ctx not in self.dead and self.shim.cmd_state(job.cmd) not in FINAL:
                    return job
        except ShimError:
            pass
        return None

    # -- faults and expectations --------------------------------------------------------------
    def _fault(self, kind: str, chan: int = 0, count: int = 1, arg: int = 0) -> None:
        if kind in VARIANTS:  # a lying firmware: the driver's contract still holds, so the
            self.fi.variant = kind  # model goes on predicting (and should catch the lie)
            self.events[f"variant {kind}"] += 1
            return
        if self.model is not None:
            self.model.taint(f"fault {kind}")
        if kind in ACT_FAULTS:
            ok = self.fi.act(kind, chan if chan >= 0 else self._a_user_channel())
            self.events[f"fault {kind}{'' if ok else ' (no channel)'}"] += 1
        elif kind in MSG_FAULTS:
            self.fi.arm(kind, count=max(1, count), chan=chan if chan >= -1 else None, arg=arg)
            self.events[f"fault {kind}"] += 1
        else:
            raise TraceError(f"unknown fault {kind!r}")

    def _a_user_channel(self) -> int:
        eng = self.ip.daemon.device.mailbox
        users = sorted(i for i in (eng.channels if eng else {}) if i)
        return users[0] if users else 0

    def _expect(self, args: tuple[Any, ...]) -> None:
        from .invariants import ExpectFailed

        if len(args) == 2 and args[0] == "errno":
            if self.last != args[1]:
                raise ExpectFailed("errno", f"last call gave {self.last}, expected {args[1]}")
        elif len(args) == 3 and args[0] == "state":
            if not self.jobs:
                raise ExpectFailed("state", "no job submitted")
            job = self.jobs[int(args[1], 0) % len(self.jobs)]
            st = self.shim.cmd_state(job.cmd)
            if st.name.lower() != args[2].lower():
                raise ExpectFailed("state", f"job {args[1]} is {st.name}, expected {args[2]}")
        else:
            raise TraceError(f"bad expect line for a shim trace: expect {' '.join(map(str, args))}")

    # -- the end of a trace -------------------------------------------------------------------
    def finish(self) -> None:
        """Every submitted command must end in a final state once TDR had time."""
        stopped = False  # the firmware was stopped under the application's queues
        for line in self.fi.log:  # which faults really fired, and where
            kind, chan = line.split()[1:3]
            self.events[f"fired {kind} {'mgmt' if chan == 'chan=0' else 'user'}"] += 1
            stopped |= kind in FW_STOPPING
        self.fi.log.clear()
        for n, job in enumerate(self.jobs):
            alive = job.ctx not in self.dead
            if alive:
                try:
                    self._run(self.shim.wait, self.ctxs[job.ctx], job.seq, FINAL_WAIT_MS)
                except ShimError:
                    pass
            try:
                st = self.shim.cmd_state(job.cmd)
            except ShimError as e:
                raise InvariantViolation("not_final", f"job {n}: cmd_state gave {errname(e.errno)}") from e
            if st not in FINAL:
                where = f"context {job.ctx}" + ("" if alive else " (destroyed)")
                raise InvariantViolation("not_final", f"job {n} on {where} is {st.name}")
            self.events[f"final {st.name.lower()}"] += 1
        if self.umqs:  # the device runs rung packets on its own time: let some pass
            self.ip.idle(UMQ_SETTLE_NS)
        for n, q in self.umqs.items():  # user-mode packets: each published one ran (a
            # stopped firmware runs none, and the driver, which never saw them, cannot know)
            if n not in self.dead and not q.drained() and not stopped:
                raise InvariantViolation("umq_not_run", f"context {n}: read_index {q.read_index} "
                                                        f"< {q.rung} packets rung")
        for j, (s, ctx, _cmd, seq, kernel) in enumerate(self.vfjobs):  # VF jobs end too
            try:
                self._run(s.wait, ctx, seq, FINAL_WAIT_MS)
            except ShimError:
                pass
            st = self.vf_state(j)
            if st not in FINAL:
                raise InvariantViolation("not_final", f"VF job {j} ({kernel}) is {_show_state(st)}")
        if self.model is not None:
            self.model.check(self)
        self.uapi.finish()


class UserQueue:
    """The application's side of a user-mode HSA queue (docs/spec/aie4.md §8): it writes
    nop packets with a completion signal, publishes write_index and rings."""

    def __init__(self, shim: Shim, umq: dict[str, int]) -> None:
        self.shim, self.umq = shim, umq
        self.q = shim.bo_map(umq["queue_bo"])
        self.written = 0
        self.rung = 0  # packets published before the last doorbell that went through

    @property
    def read_index(self) -> int:
        from ..fw.aie4.messages import HSA_QUEUE_HEADER

        return int(HSA_QUEUE_HEADER.unpack(self.q)["read_index"])

    def drained(self) -> bool:
        return self.read_index >= self.rung

    def reset(self) -> None:
        self.written = self.rung = 0

    def put_nop(self) -> None:
        from .. import kernels as K
        from ..fw.aie4.messages import HSA_PKT, HSA_QUEUE_HEADER
        from ..testing.aie4driver import exec_pkt

        s = self.shim
        code, sig = s.bo_create(BO_DEV, 64), s.bo_create(BO_CMD, 4096)
        s.bo_map(code)[: K.DESC.size] = K.encode(K.Desc(K.Kernel.NOP))
        args = s.bo_create(BO_DEV, 64)
        addr = lambda bo: int(s.bo_info(bo)["xdna_addr"])  # noqa: E731
        hdr = HSA_QUEUE_HEADER.unpack(self.q)
        cap = self.umq["capacity"]
        if self.written - hdr["read_index"] >= cap:
            return  # full: a well-behaved application waits
        off = hdr["data_address"] - self.umq["queue_addr"] + (self.written % cap) * HSA_PKT.size
        pkt = exec_pkt(addr(sig), addr(code), addr(args), 0)
        self.q[off : off + len(pkt)] = pkt
        self.written += 1
        w = HSA_QUEUE_HEADER.offsets["write_index"]
        self.q[w : w + 8] = self.written.to_bytes(8, "little")


# -- parsing and replay ------------------------------------------------------------------------
def parse_op(verb: str, toks: list[str]) -> Op:
    """One shim-trace line (``call``/``fault``/``ioctl``; ``expect`` is generic)."""
    if not toks:
        raise TraceError(f"{verb} needs a name")
    if verb == "ioctl":
        return parse_ioctl(toks)
    if verb == "call":
        spec = CALL_SPECS.get(toks[0])
        if spec is None:
            raise TraceError(f"unknown shim call {toks[0]!r}")
        if len(toks) - 1 > len(spec):
            spec += CALL_OPTIONAL.get(toks[0], "")
        if len(toks) - 1 != len(spec):
            raise TraceError(f"call {toks[0]} takes {len(spec)} operands, got {len(toks) - 1}")
        return Op(verb, (toks[0], *typed_operands(spec, toks[1:])))
    if toks[0] not in MSG_FAULTS and toks[0] not in ACT_FAULTS and toks[0] not in VARIANTS:
        raise TraceError(f"unknown fault {toks[0]!r}")
    if len(toks) > 1 + len(FAULT_SPEC):
        raise TraceError(f"fault takes at most {len(FAULT_SPEC)} operands")
    return Op(verb, (toks[0], *typed_operands(FAULT_SPEC, toks[1:])))
