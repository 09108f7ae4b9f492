/* The device-level public API: a context's life (open, close), its lock, and the entry
 * points for probe/attach, stop, suspend/resume, power, settings and raw access. Each takes
 * the lock, refuses what a client session may not do (docs/spec/jobs.md §1), runs the
 * block's body and publishes a failure's message to the calling thread. Buffer and
 * context entry points live beside their blocks (bo.c, hwctx.c).
 */
#include "shim_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_TDR_MS 2000
#define DEFAULT_AUTOSUSPEND_MS 5000
#define BUSY_WAIT_MS 30000 /* bound on waiting for another thread's device sequence */

static const int default_timeouts[5] = {1000, 1000, 1000, 5000, 5000};

/* ---- context state and locking ----------------------------------------------------- */

int xdna_drv_state_init(struct xdna_shim_ctx *ctx)
{
    struct xdna_drv_state *s = &ctx->s;
    pthread_mutexattr_t ma;
    pthread_condattr_t ca;
    pthread_mutexattr_init(&ma);
    pthread_mutex_init(&s->lock, &ma);
    pthread_mutexattr_destroy(&ma);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cond, &ca);
    pthread_condattr_destroy(&ca);
    s->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    s->bos = calloc(XDNA_MAX_BOS, sizeof(*s->bos));
    s->health_buf.fd = -1;
    s->tdr_ms = DEFAULT_TDR_MS;
    s->autosuspend_ms = DEFAULT_AUTOSUSPEND_MS;
    s->clock_gating = true;
    s->power_mode = XDNA_SHIM_POWER_DEFAULT;
    s->no_monitor = xdna_hooks() != NULL; /* deterministic mode: no monitor thread */
    s->inited = true;
    if (s->wake_fd < 0 || !s->bos)
        return xdna_fail(ctx, ENOMEM, "open: out of resources");
    return 0;
}

void xdna_drv_state_fini(struct xdna_shim_ctx *ctx)
{
    struct xdna_drv_state *s = &ctx->s;
    if (!s->inited)
        return;
    xdna_dma_free(&s->health_buf);
    if (s->wake_fd >= 0)
        close(s->wake_fd);
    free(s->bos);
    free(s->vec_owned);
    pthread_cond_destroy(&s->cond);
    xdna_lockdep_forget(&s->lock);
    pthread_mutex_destroy(&s->lock);
    s->inited = false;
}

/* Every public call runs under the ctx lock: take it (EBADF on NULL)... */
int xdna_api_enter(struct xdna_shim_ctx *ctx)
{
    if (!ctx) {
        xdna_set_tls_error(EBADF, "no context");
        return -1;
    }
    xdna_lock(&ctx->s.lock);
    return 0;
}

/* ...and drop it, publishing a failure's message to this thread's last_error. */
int xdna_api_leave(struct xdna_shim_ctx *ctx, int rc)
{
    xdna_pm_publish(ctx, true); /* suspended, resumed or stopped: the clients learn it */
    return xdna_api_unlock(ctx, rc);
}

int xdna_api_unlock(struct xdna_shim_ctx *ctx, int rc)
{
    int err = errno;
    if (rc < 0)
        xdna_set_tls_error(err, "%s", ctx->last_error);
    xdna_unlock(&ctx->s.lock);
    errno = err;
    return rc;
}

int xdna_dev_begin(struct xdna_shim_ctx *ctx)
{
    uint64_t deadline = xdna_deadline(BUSY_WAIT_MS);
    while (ctx->s.dev_busy)
        if (xdna_cond_wait(ctx, deadline) < 0)
            return xdna_fail(ctx, EBUSY, "another thread's device sequence did not finish");
    ctx->s.dev_busy = true;
    return 0;
}

void xdna_dev_end(struct xdna_shim_ctx *ctx)
{
    ctx->s.dev_busy = false;
    ctx->s.last_active_ns = xdna_now_ns();
    xdna_wake_all(ctx);
}

static int client_refused(struct xdna_shim_ctx *ctx, const char *what)
{
    return xdna_fail(ctx, EPERM, "%s: only the driver session may do this", what);
}

/* ---- open / close ------------------------------------------------------------------ */

/* Free everything the context holds, the lock last. */
static void ctx_free(struct xdna_shim_ctx *ctx)
{
    xdna_pci_release(ctx);
    xdna_dma_free(&ctx->fw);
    xdna_dma_free(&ctx->async_buf);
    xdna_dma_free(&ctx->cert);
    xdna_dma_free(&ctx->work_buf);
    xdna_drv_state_fini(ctx);
    free(ctx);
}

struct xdna_shim_ctx *xdna_shim_open(const char *socket_path, int timeout_ms)
{
    struct xdna_shim_ctx *ctx = calloc(1, sizeof(*ctx));
    if (!ctx) {
        xdna_set_tls_error(ENOMEM, "out of memory");
        return NULL;
    }
    ctx->sock = ctx->kick_fd = ctx->notify_fd = ctx->bell_fd = -1;
    ctx->fw.fd = ctx->async_buf.fd = ctx->cert.fd = ctx->work_buf.fd = -1;
    if (xdna_drv_state_init(ctx) < 0)
        goto free_ctx;
    memcpy(ctx->timeouts, default_timeouts, sizeof(default_timeouts));
    ctx->timeouts[XDNA_SHIM_TIMEOUT_CONTROL] = timeout_ms > 0 ? timeout_ms : 5000;
    ctx->max_msg_fds = XDNA_PROTO_MAX_MSG_FDS;
    ctx->iova_next = XDNA_IOVA_BASE;
    if (xdna_pci_attach(ctx, socket_path) < 0)
        goto free_ctx;
    return ctx;

free_ctx: { /* whatever init and attach got so far; the message is this thread's */
        int err = errno;
        xdna_set_tls_error(err, "%s", ctx->last_error);
        ctx_free(ctx);
        errno = err;
        return NULL;
    }
}

void xdna_shim_close(struct xdna_shim_ctx *ctx)
{
    if (!ctx)
        return;
    xdna_lock(&ctx->s.lock);
    xdna_monitor_stop(ctx);
    if (!xdna_daemon_gone(ctx))
        xdna_hwctx_destroy_all(ctx);
    xdna_bo_free_all(ctx);
    xdna_dpt_free(ctx);
    if (ctx->s.client)
        ctx->state = XDNA_SHIM_STATE_ATTACHED; /* never stop a device we did not probe */
    if (ctx->s.rpm_suspended)
        ctx->state = XDNA_SHIM_STATE_SUSPENDED;
    xdna_unlock(&ctx->s.lock);
    xdna_hw_close(ctx);
    ctx_free(ctx); /* destroys the lock (xdna_drv_state_fini) */
}

/* ---- lifecycle --------------------------------------------------------------------- */

int xdna_shim_probe(struct xdna_shim_ctx *ctx, const char *fw_search_path)
{
    if (xdna_api_enter(ctx) < 0)
        return -1;
    if (ctx->s.client)
        return xdna_api_leave(ctx, client_refused(ctx, "probe"));
    if (ctx->s.rpm_suspended)
        return xdna_api_leave(ctx, xdna_fail(ctx, EALREADY, "device is already probed"));
    if (ctx->s.bound && ctx->state == XDNA_SHIM_STATE_FAILED) /* bound: only stop unbinds */
        return xdna_api_leave(ctx, xdna_fail(ctx, EALREADY, "device is already probed (its "
                                             "resume or reset failed; stop it first)"));
    if (xdna_dev_begin(ctx) < 0)
        return xdna_api_leave(ctx, -1);
    int rc = xdna_probe_unlocked(ctx, fw_search_path);
    if (rc == 0) {
        ctx->s.bound = true;
        ctx->s.power_mode = XDNA_SHIM_POWER_DEFAULT;
        ctx->s.clock_gating = true;
        memset(&ctx->s.async, 0, sizeof(ctx->s.async));
        rc = xdna_monitor_start(ctx);
    }
    xdna_dev_end(ctx);
    return xdna_api_leave(ctx, rc);
}

int xdna_shim_stop(struct xdna_shim_ctx *ctx)
{
    if (xdna_api_enter(ctx) < 0)
        return -1;
    if (ctx->s.client)
        return xdna_api_leave(ctx, client_refused(ctx, "stop"));
    if (xdna_dev_begin(ctx) < 0)
        return xdna_api_leave(ctx, -1);
    xdna_hwctx_stop_all(ctx);
    int rc = xdna_stop_unlocked(ctx);
    ctx->s.rpm_suspended = false;
    ctx->s.bound = false;
    ctx->s.stops++; /* the client sessions' contexts end with this firmware (jobs.md §1) */
    xdna_dev_end(ctx);
    return xdna_api_leave(ctx, rc);
}

int xdna_shim_suspend(struct xdna_shim_ctx *ctx)
{
    if (xdna_api_enter(ctx) < 0)
        return -1;
    if (ctx->s.client)
        return xdna_api_leave(ctx, client_refused(ctx, "suspend"));
    if (ctx->s.rpm_suspended) /* already down: make it a system suspend */
        ctx->s.rpm_suspended = false;
    else {
        if (ctx->state != XDNA_SHIM_STATE_PROBED)
            return xdna_api_leave(ctx, xdna_fail(ctx, EINVAL, "suspend: device is not probed"));
        if (xdna_dev_begin(ctx) < 0)
            return xdna_api_leave(ctx, -1);
        xdna_hwctx_stop_all(ctx);
        int rc = xdna_suspend_unlocked(ctx);
        ctx->s.suspend_count++;
        xdna_dev_end(ctx);
        return xdna_api_leave(ctx, rc);
    }
    return xdna_api_leave(ctx, 0);
}

int xdna_shim_resume(struct xdna_shim_ctx *ctx)
{
    if (xdna_api_enter(ctx) < 0)
        return -1;
    if (ctx->s.client)
        return xdna_api_leave(ctx, client_refused(ctx, "resume"));
    if (ctx->s.rpm_suspended)
        return xdna_api_leave(ctx, xdna_rpm_get(ctx));
    if (xdna_dev_begin(ctx) < 0)
        return xdna_api_leave(ctx, -1);
    int rc = xdna_pm_resume(ctx);
    xdna_dev_end(ctx);
    return xdna_api_leave(ctx, rc);
}

int xdna_shim_attach(struct xdna_shim_ctx *ctx)
{
    if (xdna_api_enter(ctx) < 0)
        return -1;
    /* a driver still bound (its resume or reset failed) is refused as a probe is: it would
     * become a client that cannot stop, the one way to unbind (docs/spec/jobs.md §6) */
    if (ctx->s.client || ctx->state == XDNA_SHIM_STATE_PROBED || ctx->s.rpm_suspended ||
        ctx->s.bound)
        return xdna_api_leave(ctx, xdna_fail(ctx, EALREADY, "attach: already %s",
                                                  ctx->s.client ? "attached"
                                                  : ctx->state == XDNA_SHIM_STATE_FAILED
                                                  ? "probed (its resume or reset failed; stop it first)"
                                                  : "probed"));
    if (!ctx->chip->supported)
        return xdna_api_leave(ctx, xdna_fail(ctx, EOPNOTSUPP, "%s is known by id only",
                                                  ctx->chip->name));
    if (!ctx->s.caps_probed)
        return xdna_api_leave(ctx, xdna_fail(ctx, ENODEV,
                                                  "attach: no driver session has probed the device"));
    ctx->s.client = true;
    /* IOVA space is shared by sessions: keep ours apart from the driver's */
    ctx->iova_next = XDNA_IOVA_BASE + ((uint64_t)(ctx->info.pasid & 0xFFFF) << 36);
    if (xdna_client_query(ctx) < 0) {
        ctx->s.client = false;
        return xdna_api_leave(ctx, -1);
    }
    return xdna_api_leave(ctx, xdna_monitor_start(ctx));
}

/* ---- management messages, info, raw access, settings ------------------------------- */

int xdna_shim_mgmt_msg(struct xdna_shim_ctx *ctx, uint32_t opcode, const void *req,
                       size_t req_len, void *resp, size_t resp_len, int timeout_ms)
{
    if (xdna_api_enter(ctx) < 0)
        return -1;
    if (ctx->s.client)
        return xdna_api_leave(ctx, xdna_fw_call(ctx, opcode, req, req_len, resp, resp_len));
    if (xdna_rpm_get(ctx) < 0)
        return xdna_api_leave(ctx, -1);
    return xdna_api_leave(ctx, xdna_mgmt_msg_unlocked(ctx, opcode, req, req_len, resp,
                                                           resp_len, timeout_ms));
}

int xdna_shim_get_info(struct xdna_shim_ctx *ctx, struct xdna_shim_info *info)
{
    if (xdna_api_enter(ctx) < 0)
        return -1;
    int rc = xdna_get_info_unlocked(ctx, info);
    if (rc == 0) {
        info->caps_probed = ctx->s.caps_probed;
        info->client = ctx->s.client;
        if (ctx->s.rpm_suspended)
            info->state = XDNA_SHIM_STATE_SUSPENDED;
    }
    return xdna_api_leave(ctx, rc);
}

int xdna_shim_readl(struct xdna_shim_ctx *ctx, unsigned bar, uint32_t off, uint32_t *val)
{
    if (xdna_api_enter(ctx) < 0)
        return -1;
    return xdna_api_leave(ctx, xdna_readl_unlocked(ctx, bar, off, val));
}

int xdna_shim_writel(struct xdna_shim_ctx *ctx, unsigned bar, uint32_t off, uint32_t val)
{
    if (xdna_api_enter(ctx) < 0)
        return -1;
    return xdna_api_leave(ctx, xdna_writel_unlocked(ctx, bar, off, val));
}

int xdna_shim_set_timeout(struct xdna_shim_ctx *ctx, int which, int ms)
{
    if (xdna_api_enter(ctx) < 0)
        return -1;
    return xdna_api_leave(ctx, xdna_set_timeout_unlocked(ctx, which, ms));
}

int xdna_shim_set_tdr_ms(struct xdna_shim_ctx *ctx, int ms)
{
    if (xdna_api_enter(ctx) < 0)
        return -1;
    if (ms <= 0)
        return xdna_api_leave(ctx, xdna_fail(ctx, EINVAL, "TDR period must be > 0"));
    ctx->s.tdr_ms = ms;
    ctx->s.next_tdr_ns = xdna_now_ns() + (uint64_t)ms * 1000000u;
    xdna_wake_monitor(ctx);
    return xdna_api_leave(ctx, 0);
}

int xdna_shim_set_autosuspend_ms(struct xdna_shim_ctx *ctx, int ms)
{
    if (xdna_api_enter(ctx) < 0)
        return -1;
    if (ms < 0)
        return xdna_api_leave(ctx, xdna_fail(ctx, EINVAL, "autosuspend delay must be >= 0"));
    ctx->s.autosuspend_ms = ms;
    ctx->s.last_active_ns = xdna_now_ns();
    xdna_wake_monitor(ctx);
    return xdna_api_leave(ctx, 0);
}

int xdna_shim_last_async_error(struct xdna_shim_ctx *ctx, struct xdna_shim_async_error *err)
{
    if (xdna_api_enter(ctx) < 0)
        return -1;
    if (!err)
        return xdna_api_leave(ctx, xdna_fail(ctx, EINVAL, "last_async_error: NULL"));
    *err = ctx->s.async;
    return xdna_api_leave(ctx, 0);
}

/* ---- power ------------------------------------------------------------------------- */

int xdna_shim_set_power_mode(struct xdna_shim_ctx *ctx, int mode)
{
    if (xdna_api_enter(ctx) < 0)
        return -1;
    if (ctx->s.client)
        return xdna_api_leave(ctx, client_refused(ctx, "set_power_mode"));
    if (mode < XDNA_SHIM_POWER_DEFAULT || mode > XDNA_SHIM_POWER_TURBO)
        return xdna_api_leave(ctx, xdna_fail(ctx, EINVAL, "power mode %d is unknown", mode));
    if (ctx->state != XDNA_SHIM_STATE_PROBED && !ctx->s.rpm_suspended)
        return xdna_api_leave(ctx, xdna_fail(ctx, ENODEV, "set_power_mode: not probed"));
    uint32_t foreign = ctx->ctrl ? __atomic_load_n((const uint32_t *)(ctx->ctrl +
                                                   XDNA_PROTO_CTRL_OFF_FOREIGN_CTX), __ATOMIC_ACQUIRE)
                                 : 0;
    if (mode == XDNA_SHIM_POWER_TURBO && (xdna_hwctx_live(ctx) || foreign))
        return xdna_api_leave(ctx, xdna_fail(ctx, EBUSY,
                                                  "TURBO needs a device without active contexts"));
    if (xdna_rpm_get(ctx) < 0 || xdna_dev_begin(ctx) < 0)
        return xdna_api_leave(ctx, -1);
    int rc = xdna_pm_apply_mode(ctx, mode);
    xdna_dev_end(ctx);
    return xdna_api_leave(ctx, rc);
}

int xdna_shim_get_power(struct xdna_shim_ctx *ctx, struct xdna_shim_power *pw)
{
    if (xdna_api_enter(ctx) < 0)
        return -1;
    if (!pw)
        return xdna_api_leave(ctx, xdna_fail(ctx, EINVAL, "get_power: NULL"));
    memset(pw, 0, sizeof(*pw));
    const struct xdna_chip_desc *c = ctx->chip;
    pw->mode = ctx->s.power_mode;
    pw->dpm_level = ctx->info.dpm_level;
    uint32_t now = xdna_ctrl_get(ctx, XDNA_PROTO_CTRL_OFF_DPM_NOW);
    if (ctx->s.client && now) /* what the SMU runs at: the driver session sets it (§6) */
        pw->dpm_level = now - 1;
    if (c->ndpm && pw->dpm_level < c->ndpm) {
        pw->npuclk_mhz = c->dpm[pw->dpm_level].npuclk_mhz;
        pw->hclk_mhz = c->dpm[pw->dpm_level].hclk_mhz;
        if (c->tops)
            pw->tops = c->tops[pw->dpm_level];
    }
    pw->clock_gating = ctx->s.clock_gating;
    pw->suspended = ctx->s.rpm_suspended || ctx->state == XDNA_SHIM_STATE_SUSPENDED;
    pw->suspend_count = ctx->s.suspend_count;
    pw->resume_count = ctx->s.resume_count;
    return xdna_api_leave(ctx, 0);
}
