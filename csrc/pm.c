/* Power management: the DPM level and clock gating at bring-up, the power modes, and
 * runtime PM (resume on demand, autosuspend when idle) (docs/spec/jobs.md §6); the driver's
 * aie2_pm.c counterpart. */
#include "shim_int.h"

#include <errno.h>
#include <string.h>

int xdna_pm_init(struct xdna_shim_ctx *ctx)
{
    const struct xdna_chip_desc *c = ctx->chip;
    if (c->ndpm == 0 || c->ndpm > XDNA_MAX_DPM)
        return xdna_fail(ctx, EINVAL, "%s has %u DPM levels (1..%u)", c->name, c->ndpm,
                         XDNA_MAX_DPM);
    if (xdna_smu_set_dpm(ctx, c->ndpm - 1) < 0)
        return -1;
    bool counted = false;
    for (unsigned i = 0; i < c->ndpm; i++)
        counted |= ctx->s.dpm_cnt[i] != 0;
    if (!counted) /* no context yet: the default level is the top one */
        ctx->s.dft_dpm_level = c->ndpm - 1;
    ctx->pm_on = true;
    for (unsigned i = 0; i < c->nclock_gating; i++)
        if (xdna_set_runtime_config(ctx, c->clock_gating[i], 1) < 0)
            return -1;
    return 0;
}

int xdna_pm_apply_mode(struct xdna_shim_ctx *ctx, int mode)
{
    const struct xdna_chip_desc *c = ctx->chip;
    if (xdna_is_aie4(c)) { /* POWER_OVERRIDE, only on a change (docs/spec/aie4.md §6) */
        if (mode != ctx->s.power_mode) {
            xdna_aie4_power_override_req_t req = {.mode = (uint32_t)mode}; /* same numbering */
            if (xdna_fw_req(ctx, XDNA_AIE4_MSG_POWER_OVERRIDE, &req, sizeof(req), NULL, 0) < 0)
                return -1;
        }
        ctx->s.power_mode = mode;
        return 0;
    }
    if (c->ndpm == 0)
        return xdna_fail(ctx, EOPNOTSUPP, "%s has no DPM table", c->name);
    uint32_t top = c->ndpm - 1, level = top;
    bool gating = true;
    switch (mode) {
    case XDNA_SHIM_POWER_LOW: level = 0; break;
    case XDNA_SHIM_POWER_MEDIUM:
        level = top < XDNA_AIE2_POWER_MEDIUM_DPM_LEVEL ? top : XDNA_AIE2_POWER_MEDIUM_DPM_LEVEL;
        break;
    case XDNA_SHIM_POWER_HIGH: break;
    case XDNA_SHIM_POWER_TURBO: gating = false; break;
    default: level = ctx->s.dft_dpm_level < c->ndpm ? ctx->s.dft_dpm_level : top; break;
    }
    if (xdna_smu_set_dpm(ctx, level) < 0)
        return -1;
    if (gating != ctx->s.clock_gating) {
        for (unsigned i = 0; i < c->nclock_gating; i++)
            if (xdna_set_runtime_config(ctx, c->clock_gating[i], gating ? 1 : 0) < 0)
                return -1;
        ctx->s.clock_gating = gating;
    }
    ctx->s.power_mode = mode;
    return 0;
}

/* The driver's QoS math: requested GOPS = gops x max(fps, 1000 / latency) x efficiency;
 * the lowest level whose hclk gives max_opc x hclk / 1000 >= that, else the top level. A
 * LOW-priority context asks for level 0; one without QoS for the top level. */
int xdna_pm_ctx_level(struct xdna_shim_ctx *ctx, const struct xdna_shim_hwctx_params *p,
                      uint32_t *level)
{
    const struct xdna_chip_desc *c = ctx->chip;
    uint32_t top = c->ndpm ? c->ndpm - 1 : 0;
    bool low = p->priority == XDNA_SHIM_PRIO_LOW;
    if (!(p->gops > 0 && (p->fps > 0 || p->latency_ms > 0))) {
        *level = low ? 0 : top;
        return 0;
    }
    uint64_t rate = p->fps;
    if (p->latency_ms && XDNA_AIE2_QOS_MS_PER_S / p->latency_ms > rate)
        rate = XDNA_AIE2_QOS_MS_PER_S / p->latency_ms;
    uint64_t req = (uint64_t)p->gops * rate * XDNA_AIE2_QOS_SYS_EFF_FACTOR;
    uint64_t cap_top = c->ndpm ? (uint64_t)p->max_opc * c->dpm[top].hclk_mhz /
                                 XDNA_AIE2_QOS_OPC_PER_GOPS_MHZ : 0;
    if (req > UINT32_MAX || (p->max_opc && req > cap_top))
        return xdna_fail(ctx, EINVAL, "hwctx_create: QoS of %llu GOPS is out of range (%llu at"
                         " the top level)", (unsigned long long)req, (unsigned long long)cap_top);
    if (low) {
        *level = 0;
        return 0;
    }
    *level = top;
    for (uint32_t l = 0; l < c->ndpm; l++)
        if (req <= (uint64_t)p->max_opc * c->dpm[l].hclk_mhz / XDNA_AIE2_QOS_OPC_PER_GOPS_MHZ) {
            *level = l;
            break;
        }
    return 0;
}

/* The default level: the highest level a live context asks for, the driver counting its
 * own and the client sessions' (their ctrl page's DPM_WANT, through the daemon's
 * FOREIGN_DPM; docs/spec/jobs.md §6); 0 with none. A client session publishes its own
 * highest level instead: device power is the driver session's. */
static int pm_update(struct xdna_shim_ctx *ctx)
{
    const struct xdna_chip_desc *c = ctx->chip;
    uint32_t l = c->ndpm - 1;
    while (l > 0 && !ctx->s.dpm_cnt[l])
        l--;
    if (ctx->s.client) {
        xdna_ctrl_set(ctx, XDNA_PROTO_CTRL_OFF_DPM_WANT, ctx->s.dpm_cnt[l] ? l + 1 : 0);
        return 0;
    }
    uint32_t f = ctx->s.foreign_dpm;
    if (f > l + 1)
        l = f - 1 < c->ndpm ? f - 1 : c->ndpm - 1;
    ctx->s.dft_dpm_level = l;
    if (ctx->s.power_mode == XDNA_SHIM_POWER_DEFAULT && ctx->state == XDNA_SHIM_STATE_PROBED &&
        !ctx->s.rpm_suspended && ctx->info.dpm_level != l)
        return xdna_smu_set_dpm(ctx, l);
    return 0;
}

int xdna_pm_count_level(struct xdna_shim_ctx *ctx, uint32_t level, bool add)
{
    const struct xdna_chip_desc *c = ctx->chip;
    if (c->ndpm == 0)
        return 0;
    if (level >= c->ndpm)
        level = c->ndpm - 1;
    if (add)
        ctx->s.dpm_cnt[level]++;
    else if (ctx->s.dpm_cnt[level])
        ctx->s.dpm_cnt[level]--;
    return pm_update(ctx);
}

void xdna_pm_foreign_qos(struct xdna_shim_ctx *ctx)
{
    struct xdna_drv_state *s = &ctx->s;
    if (s->client || ctx->chip->ndpm == 0 || xdna_is_aie4(ctx->chip))
        return;
    uint32_t f = xdna_ctrl_get(ctx, XDNA_PROTO_CTRL_OFF_FOREIGN_DPM);
    if (f == s->foreign_dpm || s->dev_busy || s->rpm_suspended ||
        ctx->state != XDNA_SHIM_STATE_PROBED)
        return; /* unchanged, or looked at again once the device is free */
    s->foreign_dpm = f;
    s->dev_busy = true;
    (void)pm_update(ctx); /* best effort, as a context's own count */
    s->dev_busy = false;
    xdna_wake_all(ctx);
}

/* Resume (system or runtime): the full hw_start handshake, the power mode back, then every
 * context re-created in firmware. Caller holds the device (xdna_dev_begin). The first
 * failure is returned; the contexts are restarted even after a power-mode failure. */
int xdna_pm_resume(struct xdna_shim_ctx *ctx)
{
    int mode = ctx->s.power_mode;
    if (xdna_resume_unlocked(ctx) < 0)
        return -1;
    ctx->s.resume_count++;
    if (!xdna_is_aie4(ctx->chip))
        xdna_dpt_resume(ctx);
    ctx->s.clock_gating = true; /* pm_init turned gating on at max level */
    /* DEFAULT: the level the contexts ask for (AIE2); a fresh AIE4 firmware starts in DEFAULT
     * and hears POWER_OVERRIDE only for another mode */
    bool aie4 = xdna_is_aie4(ctx->chip);
    if (aie4)
        ctx->s.power_mode = XDNA_SHIM_POWER_DEFAULT;
    int rc = !aie4 || mode != XDNA_SHIM_POWER_DEFAULT ? xdna_pm_apply_mode(ctx, mode) : 0;
    int r2 = xdna_hwctx_restart_all(ctx);
    return rc < 0 ? rc : r2;
}

int xdna_rpm_get(struct xdna_shim_ctx *ctx)
{
    ctx->s.last_active_ns = xdna_now_ns();
    if (!ctx->s.rpm_suspended)
        return 0;
    if (xdna_dev_begin(ctx) < 0)
        return -1;
    int rc = 0;
    if (ctx->s.rpm_suspended) { /* another thread may have resumed it meanwhile */
        rc = xdna_pm_resume(ctx);
        if (ctx->state == XDNA_SHIM_STATE_PROBED)
            ctx->s.rpm_suspended = false;
    }
    xdna_dev_end(ctx);
    return rc;
}

/* Could autosuspend run now, time aside? (Not while another operation holds the device;
 * never on an SR-IOV PF, whose runtime PM the driver disables: docs/spec/aie4.md §10.) */
bool xdna_rpm_armed(struct xdna_shim_ctx *ctx)
{
    const struct xdna_drv_state *s = &ctx->s;
    return !s->client && s->autosuspend_ms > 0 && !s->rpm_suspended && !s->dev_busy &&
           ctx->chip->function != XDNA_FUNC_PF &&
           ctx->state == XDNA_SHIM_STATE_PROBED && !ctx->sock_dead;
}

/* Autosuspend: destroy firmware contexts (shim state kept), then the driver stop order. */
void xdna_rpm_maybe_suspend(struct xdna_shim_ctx *ctx)
{
    struct xdna_drv_state *s = &ctx->s;
    xdna_pm_client_busy(ctx); /* a client's proxied message restarts the delay */
    if (!xdna_rpm_armed(ctx))
        return;
    if (xdna_hwctx_pending(ctx))
        return;
    if (ctx->ctrl && __atomic_load_n((const uint32_t *)(ctx->ctrl + XDNA_PROTO_CTRL_OFF_FOREIGN_CTX),
                                     __ATOMIC_ACQUIRE) != 0)
        return;
    if (xdna_now_ns() < s->last_active_ns + (uint64_t)s->autosuspend_ms * 1000000u)
        return;
    s->dev_busy = true;
    xdna_hwctx_stop_all(ctx);
    xdna_suspend_unlocked(ctx);
    s->rpm_suspended = true;
    s->suspend_count++;
    xdna_dev_end(ctx);
}

/* The driver session's runtime-PM words for the client sessions (docs/spec/jobs.md §1): whether
 * it holds the device suspended (PM_DOWN) and how often it stopped it (DRV_STOPS); the daemon
 * copies both into every client's ctrl page. Stored (and kicked) only when they change; with
 * sync (a driver call returning: suspend, resume, stop, probe) the call returns once the
 * daemon stepped past them (the epoch moved), so a client's next call sees them. */
void xdna_pm_publish(struct xdna_shim_ctx *ctx, bool sync)
{
    /* only the driver session's: a session that has neither probed nor attached yet (the
     * caps a runtime reads before attaching) holds the driver's words the daemon copied */
    if (ctx->s.client || !ctx->ctrl || ctx->state == XDNA_SHIM_STATE_ATTACHED)
        return;
    const uint64_t *epoch = (const uint64_t *)(ctx->ctrl + XDNA_PROTO_CTRL_OFF_EPOCH);
    uint64_t e0 = __atomic_load_n(epoch, __ATOMIC_ACQUIRE);
    uint32_t down = ctx->state == XDNA_SHIM_STATE_SUSPENDED;
    bool moved = false;
    if (xdna_ctrl_get(ctx, XDNA_PROTO_CTRL_OFF_PM_DOWN) != down) {
        xdna_ctrl_set(ctx, XDNA_PROTO_CTRL_OFF_PM_DOWN, down);
        moved = true;
    }
    if (xdna_ctrl_get(ctx, XDNA_PROTO_CTRL_OFF_DRV_STOPS) != ctx->s.stops) {
        xdna_ctrl_set(ctx, XDNA_PROTO_CTRL_OFF_DRV_STOPS, ctx->s.stops);
        moved = true;
    }
    if (!moved || !sync || ctx->s.in_housekeeping)
        return;
    struct xdna_err e;
    xdna_err_save(ctx, &e); /* the caller's outcome stands whatever the wait meets */
    uint64_t deadline = xdna_deadline(ctx->timeouts[XDNA_SHIM_TIMEOUT_MBOX_RX]);
    while (__atomic_load_n(epoch, __ATOMIC_ACQUIRE) == e0 && !ctx->sock_dead)
        if (xdna_wait_step(ctx, -1, deadline, NULL) < 0)
            break; /* best effort: the daemon publishes on its next step anyway */
    xdna_err_restore(ctx, &e);
}

/* The driver session marks the device busy for the client sessions' proxied management
 * messages (the daemon's CLIENT_OPS moved): each is an ioctl through the driver, whose
 * runtime-PM get marks the device busy, so it restarts the autosuspend delay as the
 * driver's own calls do (docs/spec/jobs.md §1). Looked at before every autosuspend
 * decision and wherever PM_ASKS is. Lock held. */
void xdna_pm_client_busy(struct xdna_shim_ctx *ctx)
{
    struct xdna_drv_state *s = &ctx->s;
    if (s->client || !ctx->ctrl)
        return;
    uint32_t ops = xdna_ctrl_get(ctx, XDNA_PROTO_CTRL_OFF_CLIENT_OPS);
    if (ops == s->client_ops_seen)
        return;
    s->client_ops_seen = ops;
    s->last_active_ns = xdna_now_ns();
}

/* A monitor duty of the driver session: a client's call found the device suspended and asked
 * (the daemon's PM_ASKS moved): resume it as a runtime-PM get does, whether the monitor or a
 * suspend call put it down, since the client's process runs on (docs/spec/jobs.md §1). An
 * ask is taken once no other device sequence runs. Lock held. */
void xdna_pm_client_asks(struct xdna_shim_ctx *ctx)
{
    struct xdna_drv_state *s = &ctx->s;
    xdna_pm_client_busy(ctx);
    if (s->client || !ctx->ctrl || s->dev_busy)
        return;
    uint32_t asks = xdna_ctrl_get(ctx, XDNA_PROTO_CTRL_OFF_PM_ASKS);
    if (asks == s->pm_asks_seen)
        return;
    s->pm_asks_seen = asks;
    if (ctx->state != XDNA_SHIM_STATE_SUSPENDED || ctx->sock_dead)
        return;
    s->dev_busy = true;
    (void)xdna_pm_resume(ctx); /* a failure leaves the device FAILED: PM_DOWN clears */
    s->rpm_suspended = false;
    xdna_dev_end(ctx);
    xdna_pm_publish(ctx, false);
}

/* A client session's runtime-PM get (docs/spec/jobs.md §1), before a call that needs the
 * device and before every message it proxies: while the driver session holds the device
 * suspended (PM_DOWN), ask it to resume (PM_ASK) and wait until it did, within the mailbox
 * timeout. Both generations: one mechanism. Lock held. */
int xdna_pm_client_get(struct xdna_shim_ctx *ctx)
{
    if (!ctx->s.client || !ctx->ctrl || !xdna_ctrl_get(ctx, XDNA_PROTO_CTRL_OFF_PM_DOWN))
        return 0;
    uint64_t deadline = xdna_deadline(ctx->timeouts[XDNA_SHIM_TIMEOUT_MBOX_RX]);
    xdna_ctrl_set(ctx, XDNA_PROTO_CTRL_OFF_PM_ASK, xdna_ctrl_get(ctx, XDNA_PROTO_CTRL_OFF_PM_ASK) + 1);
    /* a wait step, not a condition wait: attach asks before its monitor runs, so the
     * caller may be the only one to receive the daemon's notify */
    while (xdna_ctrl_get(ctx, XDNA_PROTO_CTRL_OFF_PM_DOWN))
        if (xdna_wait_step(ctx, -1, deadline, NULL) < 0)
            return errno == ETIME ? xdna_fail(ctx, ETIMEDOUT, "the driver did not resume the"
                                              " suspended device") : -1;
    return 0;
}

int xdna_pm_npu_metrics(struct xdna_shim_ctx *ctx, uint32_t *power_mw,
                        uint16_t busy[XDNA_PROTO_CTRL_PMF_COLUMNS])
{
    if (!ctx->ctrl || xdna_is_aie4(ctx->chip)) {
        errno = EOPNOTSUPP; /* as a driver built without the PMF interface */
        return -1;
    }
    const uint8_t *page = (const uint8_t *)ctx->ctrl;
    for (;;) { /* the daemon's SEQ is odd while it writes: retry a torn read */
        uint32_t seq = __atomic_load_n((const uint32_t *)(page + XDNA_PROTO_CTRL_OFF_PMF_SEQ),
                                       __ATOMIC_ACQUIRE);
        if (seq & 1)
            continue;
        memcpy(power_mw, page + XDNA_PROTO_CTRL_OFF_PMF_POWER, sizeof(*power_mw));
        memcpy(busy, page + XDNA_PROTO_CTRL_OFF_PMF_BUSY, XDNA_PROTO_CTRL_PMF_COLUMNS * sizeof(busy[0]));
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        if (__atomic_load_n((const uint32_t *)(page + XDNA_PROTO_CTRL_OFF_PMF_SEQ),
                            __ATOMIC_RELAXED) == seq)
            return 0;
    }
}
