/* Power management: the DPM level and clock gating at bring-up, the power modes, and
 * runtime PM (resume on demand, autosuspend when idle) (docs/spec/jobs.md §6); the driver's
 * aie2_pm.c counterpart. */
#include "shim_int.h"

#include <errno.h>

int xdna_pm_init(struct xdna_shim_ctx *ctx)
{
    const struct xdna_chip_desc *c = ctx->chip;
    if (c->ndpm == 0)
        return xdna_fail(ctx, EINVAL, "%s has no DPM table", c->name);
    if (xdna_smu_set_dpm(ctx, c->ndpm - 1) < 0)
        return -1;
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
    uint32_t level = c->ndpm - 1;
    bool gating = true;
    switch (mode) {
    case XDNA_SHIM_POWER_LOW: level = 0; break;
    case XDNA_SHIM_POWER_MEDIUM: level = c->ndpm / 2; break;
    case XDNA_SHIM_POWER_HIGH:
    case XDNA_SHIM_POWER_TURBO: gating = false; break;
    default: break;
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

/* Resume (system or runtime): the full hw_start handshake, the power mode back, then every
 * context re-created in firmware. Caller holds the device (xdna_dev_begin). The first
 * failure is returned; the contexts are restarted even after a power-mode failure. */
int xdna_pm_resume(struct xdna_shim_ctx *ctx)
{
    int mode = ctx->s.power_mode;
    if (xdna_resume_unlocked(ctx) < 0)
        return -1;
    ctx->s.resume_count++;
    ctx->s.clock_gating = true; /* pm_init turned gating on at max level */
    if (xdna_is_aie4(ctx->chip))
        ctx->s.power_mode = XDNA_SHIM_POWER_DEFAULT; /* a fresh AIE4 firmware starts there */
    int rc = mode != XDNA_SHIM_POWER_DEFAULT ? xdna_pm_apply_mode(ctx, mode) : 0;
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

/* Could autosuspend run now, time aside? (Not while another operation holds the device.) */
bool xdna_rpm_armed(struct xdna_shim_ctx *ctx)
{
    const struct xdna_drv_state *s = &ctx->s;
    return !s->client && s->autosuspend_ms > 0 && !s->rpm_suspended && !s->dev_busy &&
           ctx->state == XDNA_SHIM_STATE_PROBED && !ctx->sock_dead;
}

/* Autosuspend: destroy firmware contexts (shim state kept), then the driver stop order. */
void xdna_rpm_maybe_suspend(struct xdna_shim_ctx *ctx)
{
    struct xdna_drv_state *s = &ctx->s;
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
