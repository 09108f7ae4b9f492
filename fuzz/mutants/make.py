#!/usr/bin/env python3
"""Regenerate fuzz/mutants/NN-name.patch from the edits below (standard library only).

Each mutant is one (file, exact old text, new text) edit; the patch is made against the
working tree as it is, so after the code moves, fix the old text of an edit that no longer
matches and run this again (``python fuzz/mutants/make.py``). Refuses an edit whose old
text is not found exactly once.
"""
import difflib
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[2]
M = [
# --- the shim (C) ---
("tdr-head-abort", "shim", "TDR ends the hung head ABORT instead of TIMEOUT (wrong state)",
 "csrc/hwctx.c", "    end_jobs(ctx, hw, XDNA_SHIM_ERT_STATE_TIMEOUT);\n", "    end_jobs(ctx, hw, XDNA_SHIM_ERT_STATE_ABORT);\n"),
("tdr-order-swapped", "shim", "end_jobs gives the queued commands TIMEOUT and the head ABORT (swapped order)",
 "csrc/hwctx.c", "xdna_job_finish(ctx, hw, j, first ? first_state : XDNA_SHIM_ERT_STATE_ABORT, 0);",
 "xdna_job_finish(ctx, hw, j, first ? XDNA_SHIM_ERT_STATE_ABORT : first_state, 0);"),
("tdr-no-recreate", "shim", "TDR destroys the hung context but does not re-create it (dropped step)",
 "csrc/hwctx.c", "    fw_stop(ctx, hw, true);\n    if (fw_start(ctx, hw) < 0)\n        hw->state = XDNA_SHIM_HWCTX_BROKEN;\n",
 "    fw_stop(ctx, hw, true);\n"),
("id-wrap-noncontig", "shim", "after the message id wraps (255 -> 0) a user channel's response counts as out of order (dropped check)",
 "csrc/parse.c", "    if (low == 0 || low == ((last_id & 0xFFFFFFu) + 1))", "    if (low == ((last_id & 0xFFFFFFu) + 1))"),
("stop-enodev-after-timeout", "shim", "stop sends SUSPEND on a management channel a timeout destroyed, and returns ENODEV",
 "csrc/hw.c", "    if (ctx->mgmt.active) {\n        if (send_suspend)", "    if (ctx->mgmt.active || send_suspend) {\n        if (send_suspend)"),
("chain-error-index-off-by-one", "shim", "a failed chain's error_index names the sub-command after the failing one (off by one)",
 "csrc/hwctx.c", "payload[2] = fail_idx < count ? fail_idx : 0;", "payload[2] = fail_idx + 1 < count ? fail_idx + 1 : 0;"),
("wait-future-seq", "shim", "a wait on the next, never submitted seq is accepted (off-by-one bound)",
 "csrc/hwctx.c", "    if (seq == 0 || seq >= hw->next_seq)\n        return xdna_api_leave(ctx, xdna_fail(ctx, EINVAL, \"wait:",
 "    if (seq == 0 || seq > hw->next_seq)\n        return xdna_api_leave(ctx, xdna_fail(ctx, EINVAL, \"wait:"),
("wait-seq-zero", "shim", "a wait on seq 0 is accepted (dropped check)",
 "csrc/hwctx.c", "    if (seq == 0 || seq >= hw->next_seq)\n        return xdna_api_leave(ctx, xdna_fail(ctx, EINVAL, \"wait:",
 "    if (seq >= hw->next_seq)\n        return xdna_api_leave(ctx, xdna_fail(ctx, EINVAL, \"wait:"),
("seq-off-by-one", "shim", "exec hands out the seq after the one it submits (off by one)",
 "csrc/hwctx.c", "    uint64_t s = hw->next_seq;\n", "    uint64_t s = hw->next_seq + 1;\n"),
("power-unprobed", "shim", "set_power_mode runs on a device that is not probed (dropped check)",
 "csrc/api.c", "    if (ctx->state != XDNA_SHIM_STATE_PROBED && !ctx->s.rpm_suspended)\n        return xdna_api_leave(ctx, xdna_fail(ctx, ENODEV, \"set_power_mode: not probed\"));\n", ""),
("turbo-with-contexts", "shim", "TURBO is granted with live contexts (dropped check)",
 "csrc/api.c", "    if (mode == XDNA_SHIM_POWER_TURBO && (xdna_hwctx_live(ctx) || foreign))",
 "    if (mode == XDNA_SHIM_POWER_TURBO && foreign)"),
("fail-as-abort", "shim", "a command the firmware failed is ended ABORT instead of ERROR (wrong state)",
 "csrc/hwctx.c", "    xdna_job_finish(ctx, hw, j, r.status == 0 ? XDNA_SHIM_ERT_STATE_COMPLETED : XDNA_SHIM_ERT_STATE_ERROR,",
 "    xdna_job_finish(ctx, hw, j, r.status == 0 ? XDNA_SHIM_ERT_STATE_COMPLETED : XDNA_SHIM_ERT_STATE_ABORT,"),
("slot-limit-off-by-one", "shim", "five commands may be outstanding on a context of four slots (off-by-one bound)",
 "csrc/hwctx.c", "    while (hw->njobs >= max_jobs ||", "    while (hw->njobs > max_jobs ||"),
("resume-unchecked", "shim", "resume runs without a suspend before it (dropped state check)",
 "csrc/hw.c", "    if (ctx->state != XDNA_SHIM_STATE_SUSPENDED)\n        return xdna_fail(ctx, EINVAL, \"resume: device is not suspended\");\n",
 ""),
# --- the device model (Python firmware) ---
("fw-tombstone-ahead", "device", "the firmware follows a TOMBSTONE ahead of the tail and re-runs stale messages (dropped check)",
 "xdna_emu/fw/mailbox.py", "                if head < tail:\n                    self.fail(f\"TOMBSTONE at {head:#x} ahead of tail {tail:#x}\")\n                    return\n", ""),
("fw-szver-unchecked", "device", "the firmware accepts a header whose sz_ver disagrees with total_size (dropped check)",
 "xdna_emu/fw/mailbox.py", "            if szv != sz_ver(total):", "            if False and szv != sz_ver(total):"),
("fw-magic-unchecked", "device", "the firmware runs a message whose id lacks the 0x1D magic (dropped check)",
 "xdna_emu/fw/mailbox.py", "            if mid & MSG_ID_MAGIC_MASK != MSG_ID_MAGIC:", "            if False:"),
("fw-msg-past-tail", "device", "a message running past the tail is consumed (off-by-one bound)",
 "xdna_emu/fw/mailbox.py", "or (head < tail and msg_size > tail - head)):", "or (head < tail and msg_size > tail - head + 4)):"),
("fw-i2x-dup", "device", "the firmware writes each response twice (one response, two answers)",
 "xdna_emu/fw/mailbox.py", "        elif self.error is None and self._put(pkt):  # nothing waits: no queue\n            self._sent(1)",
 "        elif self.error is None and self._put(pkt):  # nothing waits: no queue\n            self._put(pkt)\n            self._sent(1)"),
("psp-start-unvalidated", "device", "PSP START runs from idle, without a validated image (wrong state)",
 "xdna_emu/fw/psp.py", "            if self.state != \"validated\" or self.image is None:", "            if self.image is None:"),
("smu-dpm-bound", "device", "SMU accepts a DPM level one past the table (off-by-one bound)",
 "xdna_emu/fw/smu.py", "        if arg >= len(self.chip.dpm_levels):", "        if arg > len(self.chip.dpm_levels):"),
("reset-keeps-pba", "device", "FLR leaves MSI-X pending bits set (dropped step)",
 "xdna_emu/irq.py", "            p0 = self.layout.pba_offset\n            self.mem[p0 : p0 + self.pba_size] = bytes(self.pba_size)\n", ""),
("ctx-fail-index", "shim", "the context firmware reports the chain sub-command after the failing one (off by one)",
 "xdna_emu/fw/ctx.py", "                return self._note_fail(ctx, res[0], idx, res[1])", "                return self._note_fail(ctx, res[0], idx + 1, res[1])"),
("tdr-chain-hung-index", "shim", "TDR's error_index of a timed-out chain names the sub-command after the one that hung (off by one)",
 "csrc/hwctx.c", "    return r.dpu_pc < count ? r.dpu_pc : 0;\n", "    return r.dpu_pc + 1 < count ? r.dpu_pc + 1 : 0;\n"),
# --- the shim's locking (found with the debug build's lock checker, csrc/lockdep.c) ---
("lock-held-across-poll", "shim", "the event pump sleeps in its poll with the context lock held (lock held too long, across a wait)",
 "csrc/event.c", "    if (pp->unlock) {\n        xdna_unlock(&s->lock);\n        xdna_lockdep_blocking(); /* the pump sleeps with no lock held (lockdep.c) */\n    }\n    int r = ppoll(p, n, &ts, NULL);\n    int perr = errno;\n    if (pp->unlock)\n        xdna_lock(&s->lock);\n",
 "    if (pp->unlock)\n        xdna_lockdep_blocking(); /* the pump sleeps with no lock held (lockdep.c) */\n    int r = ppoll(p, n, &ts, NULL);\n    int perr = errno;\n"),
# --- the UAPI decoder (csrc/uapi/, found through the shim target's ioctl lines) ---
("uapi-array-count-bound", "shim", "GET_ARRAY refuses num_element 1024, the limit itself (off-by-one bound)",
 "csrc/uapi/argcheck.c", "a->num_element > AMDXDNA_MAX_NUM_ELEMENT)", "a->num_element >= AMDXDNA_MAX_NUM_ELEMENT)"),
("uapi-info-overrun", "shim", "GET_INFO copies its whole answer whatever buffer_size says (dropped bound)",
 "csrc/uapi/accel.c", "    return uwrite(a->buffer, val, a->buffer_size < size ? a->buffer_size : size);\n",
 "    return uwrite(a->buffer, val, size);\n"),
# --- AIE4 (the shim target on npu3) ---
("cert-log-uc-bound", "shim", "CERT log attach takes a slice for uC 6, one past the last (off-by-one bound)",
 "csrc/aie4_ctx.c", "        if (uc >= XDNA_AIE4_CERT_LOG_UCS || (seen >> uc & 1u))",
 "        if (uc > XDNA_AIE4_CERT_LOG_UCS || (seen >> uc & 1u))", "npu3"),
("proxy-foreign-context", "shim", "a client session may destroy another session's context through the proxy (dropped check)",
 "xdna_emu/fw/aie4/ctx.py", "            if ctx is None or ctx.pasid != pasid:\n", "            if ctx is None:\n", "npu3"),
# --- runtime PM (the shim target's autosuspend predictions and client resume asks) ---
("autosuspend-ignores-clients", "shim", "autosuspend runs while a client session holds a context (dropped check)",
 "csrc/pm.c", "    if (ctx->ctrl && __atomic_load_n((const uint32_t *)(ctx->ctrl + XDNA_PROTO_CTRL_OFF_FOREIGN_CTX),\n"
 "                                     __ATOMIC_ACQUIRE) != 0)\n        return;\n", ""),
("autosuspend-delay-units", "shim", "the autosuspend delay is taken in microseconds, not milliseconds (wrong unit)",
 "csrc/pm.c", "(uint64_t)s->autosuspend_ms * 1000000u)\n        return;", "(uint64_t)s->autosuspend_ms * 1000u)\n        return;"),
("client-resume-ask-dropped", "shim", "the driver takes a client's resume ask but does not resume the device (dropped step)",
 "csrc/pm.c", "    (void)xdna_pm_resume(ctx); /* a failure leaves the device FAILED: PM_DOWN clears */\n", ""),
# --- SR-IOV (the shim target on a PF: sriov / vf lines) ---
("sriov-enable-over-enabled", "shim", "sriov_configure enables VFs while others are enabled (dropped check)",
 "csrc/aie4_hw.c", "    if (num_vfs && cur)\n        return xdna_fail(ctx, EBUSY,",
 "    if (num_vfs && cur && num_vfs > total)\n        return xdna_fail(ctx, EBUSY,", "npu3_pf"),
("vf-removal-keeps-jobs", "shim", "a removed VF's driver leaves its jobs in flight (dropped step)",
 "csrc/aie4_hw.c", "    ctx->removed = ctx->sock_dead = true; /* first, so nothing below talks to the daemon */\n"
 "    xdna_hwctx_drop_all(ctx);\n",
 "    ctx->removed = ctx->sock_dead = true; /* first, so nothing below talks to the daemon */\n", "npu3_pf"),
]
out = ROOT / "fuzz" / "mutants"
for f in out.glob("*.patch"):
    f.unlink()
for i, (name, target, what, path, old, new, *chip) in enumerate(M, 1):  # chip: the targets' --chip
    src = (ROOT / path).read_text()
    if src.count(old) != 1:
        raise SystemExit(f"{name}: its old text occurs {src.count(old)} times in {path}")
    mut = src.replace(old, new)
    diff = difflib.unified_diff(src.splitlines(True), mut.splitlines(True), f"a/{path}", f"b/{path}", n=3)
    meta = f"# target: {target}\n# what: {what}\n" + "".join(f"# chip: {c}\n" for c in chip)
    (out / f"{i:02d}-{name}.patch").write_text(meta + "".join(diff))
print(f"{len(M)} mutants written to {out}")
