/* The monitor thread: it receives for the whole context (the event pump in event.c) and
 * runs the periodic duties between events: the TDR tick, async event re-registration and
 * runtime autosuspend (docs/spec/jobs.md §6). In deterministic mode there is no thread and
 * the same duties run inline in the hooked waits. */
#include "shim_int.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

/* The monitor polls every owned vector beside notify, and wakes every waiter after each
 * event: while it runs, an interrupt to one of our vectors wakes us as notify would, so
 * the daemon may leave notify out after a step that raised one (docs/spec/protocol.md,
 * "Suppressed kicks and notifies"). */
void xdna_set_irq_wakes(struct xdna_shim_ctx *ctx, bool on)
{
    if (ctx->ctrl)
        __atomic_store_n((uint32_t *)(ctx->ctrl + XDNA_PROTO_CTRL_OFF_IRQ_WAKES), on ? 1u : 0u,
                         __ATOMIC_SEQ_CST);
}

void xdna_wake_monitor(struct xdna_shim_ctx *ctx)
{
    uint64_t one = 1;
    if (ctx->s.wake_fd >= 0 && write(ctx->s.wake_fd, &one, sizeof(one)) < 0)
        (void)one;
}

/* When the monitor's periodic duties are next due: the TDR tick, and autosuspend only while
 * it can run. A due time already past (the duty ran, or could not) waits a monitor poll
 * interval, so neither the monitor thread nor a hooked wait spins on it. */
uint64_t xdna_monitor_due(struct xdna_shim_ctx *ctx, uint64_t now)
{
    const struct xdna_drv_state *s = &ctx->s;
    uint64_t due = s->next_tdr_ns;
    if (xdna_rpm_armed(ctx)) {
        uint64_t rpm = s->last_active_ns + (uint64_t)s->autosuspend_ms * 1000000u;
        if (rpm < due)
            due = rpm;
    }
    if (due <= now)
        due = now + XDNA_MONITOR_POLL_NS;
    return due;
}

/* The monitor's periodic duties, run by the thread or inline in deterministic mode: the
 * TDR tick (and the runqueue's idle disconnects), giving a partition to another session
 * that asked, re-posting async-event registrations, runtime autosuspend. Lock held. */
static void periodic_duties(struct xdna_shim_ctx *ctx)
{
    struct xdna_drv_state *s = &ctx->s;
    uint64_t now = xdna_now_ns();
    if (now >= s->next_tdr_ns) {
        s->next_tdr_ns = now + (uint64_t)s->tdr_ms * 1000000u;
        if (!s->dev_busy && !s->rpm_suspended)
            xdna_hwctx_tdr_tick(ctx);
    }
    if (!s->dev_busy && !s->rpm_suspended)
        xdna_hwctx_rq_yield(ctx); /* another session waits for a partition */
    xdna_pm_foreign_qos(ctx); /* driver: client sessions' QoS moves DPM too */
    if (!s->client && ctx->mgmt.active)
        for (unsigned i = 0; i < sizeof(s->async_repost); i++)
            if (s->async_repost[i] && xdna_async_post(ctx, i) == 0)
                s->async_repost[i] = 0;
    xdna_rpm_maybe_suspend(ctx);
    xdna_pm_client_asks(ctx); /* a client's call found the device suspended */
    xdna_pm_publish(ctx, false);
    xdna_aie4_reset_check(ctx);
    xdna_aie4_sriov_request(ctx);
}

/* TDR, async re-posts and autosuspend, as one monitor iteration does them. */
void xdna_monitor_housekeeping(struct xdna_shim_ctx *ctx)
{
    struct xdna_drv_state *s = &ctx->s;
    if (!s->mon_virtual || s->in_housekeeping || xdna_daemon_gone(ctx))
        return;
    s->in_housekeeping = true;
    periodic_duties(ctx);
    s->in_housekeeping = false;
}

int xdna_shim_monitor_step(struct xdna_shim_ctx *ctx)
{
    if (xdna_api_enter(ctx) < 0)
        return -1;
    int rc = xdna_pump_virtual(ctx); /* as the thread: receive, then the duties */
    xdna_monitor_housekeeping(ctx);
    return xdna_api_leave(ctx, rc);
}

/* ---- the thread -------------------------------------------------------------------- */

static void *monitor_main(void *arg)
{
    struct xdna_shim_ctx *ctx = arg;
    struct xdna_drv_state *s = &ctx->s;
    xdna_lock(&s->lock);
    s->next_tdr_ns = xdna_now_ns() + (uint64_t)s->tdr_ms * 1000000u;
    while (!s->mon_stop) {
        if (xdna_daemon_gone(ctx)) { /* nothing more will happen: sleep until close */
            xdna_aie4_removed(ctx);
            ctx->sock_dead = true;
            xdna_wake_all(ctx);
            xdna_cond_wait(ctx, UINT64_MAX);
            continue;
        }
        uint64_t now = xdna_now_ns();
        uint64_t deadline = xdna_monitor_due(ctx, now);
        if (deadline > now + 1000000000u)
            deadline = now + 1000000000u;
        xdna_pump_monitor(ctx, deadline);
        if (s->mon_stop)
            break;
        periodic_duties(ctx);
    }
    xdna_unlock(&s->lock);
    return NULL;
}

int xdna_monitor_start(struct xdna_shim_ctx *ctx)
{
    struct xdna_drv_state *s = &ctx->s;
    if (s->mon_running)
        return 0;
    s->mon_stop = false;
    s->last_active_ns = xdna_now_ns();
    if (s->no_monitor) { /* deterministic mode: its work runs inside the waits */
        s->mon_virtual = true;
        s->next_tdr_ns = s->last_active_ns + (uint64_t)s->tdr_ms * 1000000u;
        return 0;
    }
    int r = pthread_create(&s->mon, NULL, monitor_main, ctx);
    if (r != 0)
        return xdna_fail(ctx, r, "monitor thread: %s", strerror(r));
    s->mon_running = true;
    xdna_irq_wakes_sync(ctx);
    return 0;
}

void xdna_monitor_stop(struct xdna_shim_ctx *ctx)
{
    struct xdna_drv_state *s = &ctx->s;
    s->mon_virtual = false;
    if (!s->mon_running)
        return;
    s->mon_stop = true;
    xdna_irq_wakes_sync(ctx);
    xdna_wake_monitor(ctx);
    xdna_wake_all(ctx);
    pthread_t t = s->mon;
    xdna_unlock(&s->lock);
    pthread_join(t, NULL);
    xdna_lock(&s->lock);
    s->mon_running = false;
}
