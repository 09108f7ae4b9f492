/* Sessions: locking, the monitor thread (interrupts, TDR ticks, async events, runtime PM),
 * per-vector interrupt ownership, management requests for driver and client sessions, and
 * the power-mode and lifecycle entry points (docs/spec/jobs.md §1, §6).
 *
 * Threading model. Every public call takes ctx->s.lock. Once probe/attach succeeded a
 * monitor thread owns all receiving: it polls the notify eventfd, the owned MSI-X eventfds,
 * the control socket (hang-up only) and a wake eventfd, and after each wakeup drains every
 * channel that has data (with or without an interrupt: the ring drain the driver gained in
 * PR #1680), then broadcasts ctx->s.cond. A caller that waits (xdna_wait_step) sleeps on
 * that condition variable, which releases the lock; the monitor itself pumps events
 * directly when it has to wait inside TDR or runtime-PM work. Before the monitor runs
 * (during the first probe) waits are the original single-threaded poll() loop.
 */
#include "shim_int.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#define MSG_GET_APP_HEALTH 0x114
#define MSG_REGISTER_ASYNC_EVENT_MSG 0x10C
#define MSG_GET_PROTOCOL_VERSION 0x301
#define MSG_GET_FIRMWARE_VERSION 0x108
#define MSG_QUERY_AIE_VERSION 0xF
#define MSG_QUERY_AIE_TILE_INFO 0xE
#define DEFAULT_TDR_MS 2000
#define DEFAULT_AUTOSUSPEND_MS 5000
#define BUSY_WAIT_MS 30000 /* bound on waiting for another thread's device sequence */
#define PROXY_RESP_MAX 512

/* ---- init, locking, waits ----------------------------------------------------------- */

int xdna_sess_init(struct xdna_shim_ctx *ctx)
{
    struct xdna_sess *s = &ctx->s;
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
        return xdna_fail(ctx, ENOMEM, "session init: out of resources");
    return 0;
}

void xdna_sess_fini(struct xdna_shim_ctx *ctx)
{
    struct xdna_sess *s = &ctx->s;
    if (!s->inited)
        return;
    xdna_dma_free(&s->health_buf);
    if (s->wake_fd >= 0)
        close(s->wake_fd);
    free(s->bos);
    free(s->vec_owned);
    pthread_cond_destroy(&s->cond);
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
    pthread_mutex_lock(&ctx->s.lock);
    return 0;
}

/* ...and drop it, publishing a failure's message to this thread's last_error. */
int xdna_api_leave(struct xdna_shim_ctx *ctx, int rc)
{
    int err = errno;
    if (rc < 0)
        xdna_set_tls_error(err, "%s", ctx->last_error);
    pthread_mutex_unlock(&ctx->s.lock);
    errno = err;
    return rc;
}

static int enter(struct xdna_shim_ctx *ctx)
{
    return xdna_api_enter(ctx);
}

/* Unlock and return rc, keeping errno. */
static int leave(struct xdna_shim_ctx *ctx, int rc)
{
    int err = errno;
    pthread_mutex_unlock(&ctx->s.lock);
    errno = err;
    return rc;
}

static bool is_monitor(struct xdna_shim_ctx *ctx)
{
    return ctx->s.mon_running && pthread_equal(pthread_self(), ctx->s.mon);
}

void xdna_wake_monitor(struct xdna_shim_ctx *ctx)
{
    uint64_t one = 1;
    if (ctx->s.wake_fd >= 0 && write(ctx->s.wake_fd, &one, sizeof(one)) < 0)
        (void)one;
}

int xdna_cond_wait(struct xdna_shim_ctx *ctx, uint64_t deadline)
{
    if (ctx->s.no_monitor && xdna_hooks()) { /* no other thread will signal: run the device */
        int rc = xdna_hooked_step(ctx, -1, deadline, NULL, true);
        if (rc < 0 && errno != ETIME && xdna_now_ns() < deadline)
            return rc; /* EPIPE: callers treat any failure like a timeout */
        return rc;
    }
    if (deadline == UINT64_MAX) {
        pthread_cond_wait(&ctx->s.cond, &ctx->s.lock);
        return 0;
    }
    if (xdna_now_ns() >= deadline) {
        errno = ETIME;
        return -1;
    }
    struct timespec ts = {.tv_sec = (time_t)(deadline / 1000000000u),
                          .tv_nsec = (long)(deadline % 1000000000u)};
    int r = pthread_cond_timedwait(&ctx->s.cond, &ctx->s.lock, &ts);
    if (r == ETIMEDOUT && xdna_now_ns() >= deadline) {
        errno = ETIME;
        return -1;
    }
    return 0;
}

static bool daemon_gone(struct xdna_shim_ctx *ctx)
{
    if (ctx->sock_dead)
        return true;
    if (!ctx->ctrl)
        return false;
    return __atomic_load_n((const uint32_t *)(ctx->ctrl + XDNA_PROTO_CTRL_OFF_ALIVE),
                           __ATOMIC_ACQUIRE) == 0;
}

/* i2x has a message waiting (tail moved past our cached head). */
static bool ring_has_data(struct xdna_shim_ctx *ctx, struct xdna_mbox_chan *ch)
{
    if (!ch->active || ch->bad)
        return false;
    uint32_t tail = xdna_rd(ctx, ch->i2x_tail_reg), head = ch->i2x_head;
    return tail != head && !(head == ch->i2x_size && tail == 0);
}

static void drain_fd(int fd)
{
    uint64_t v;
    if (read(fd, &v, sizeof(v)) < 0)
        (void)v;
}

/* Process whatever the device did: every channel with data is drained. Lock held. */
static void service_channels(struct xdna_shim_ctx *ctx, const uint8_t *fired)
{
    if (ctx->mgmt.active && (ring_has_data(ctx, &ctx->mgmt) || (fired && fired[ctx->mgmt.msix])))
        xdna_mbox_rx(ctx, &ctx->mgmt);
    for (unsigned i = 0; i < XDNA_MAX_HWCTX; i++) {
        struct xdna_hwctx *hw = ctx->s.hw[i];
        if (!hw || !hw->chan.active)
            continue;
        if (ring_has_data(ctx, &hw->chan) || (fired && !hw->polled && fired[hw->msix]))
            xdna_mbox_rx(ctx, &hw->chan);
    }
}

/* One monitor step: poll every event source until one fires or the deadline passes (lock
 * released meanwhile), then service channels and wake the waiters. */
static int pump_once(struct xdna_shim_ctx *ctx, uint64_t deadline)
{
    struct xdna_sess *s = &ctx->s;
    if (daemon_gone(ctx))
        return xdna_fail(ctx, EPIPE, "the daemon ended this session");
    uint64_t now = xdna_now_ns();
    if (now >= deadline) {
        errno = ETIME;
        return -1;
    }
    unsigned nvec = ctx->nvec;
    struct pollfd p[3 + 128];
    unsigned vec_of[3 + 128];
    nfds_t n = 0;
    p[n++] = (struct pollfd){.fd = ctx->notify_fd, .events = POLLIN};
    p[n++] = (struct pollfd){.fd = s->wake_fd, .events = POLLIN};
    p[n++] = (struct pollfd){.fd = ctx->sock, .events = POLLRDHUP};
    for (unsigned v = 0; v < nvec && n < sizeof(p) / sizeof(p[0]); v++)
        if (s->vec_owned && s->vec_owned[v] && ctx->irq_fds[v] >= 0) {
            vec_of[n] = v;
            p[n++] = (struct pollfd){.fd = ctx->irq_fds[v], .events = POLLIN};
        }
    uint64_t left = deadline - now;
    struct timespec ts = {.tv_sec = (time_t)(left / 1000000000u),
                          .tv_nsec = (long)(left % 1000000000u)};
    pthread_mutex_unlock(&s->lock);
    int r = ppoll(p, n, &ts, NULL);
    int perr = errno;
    pthread_mutex_lock(&s->lock);
    if (r < 0 && perr != EINTR)
        return xdna_fail(ctx, perr, "poll: %s", strerror(perr));
    uint8_t fired[XDNA_MAX_VECTORS > 256 ? 256 : XDNA_MAX_VECTORS];
    memset(fired, 0, sizeof(fired));
    if (r > 0) {
        if (p[0].revents & POLLIN)
            drain_fd(ctx->notify_fd);
        if (p[1].revents & POLLIN)
            drain_fd(s->wake_fd);
        if (p[2].revents & (POLLHUP | POLLERR | POLLRDHUP | POLLNVAL))
            ctx->sock_dead = true;
        for (nfds_t i = 3; i < n; i++)
            if (p[i].revents & POLLIN) {
                drain_fd(p[i].fd);
                if (vec_of[i] < sizeof(fired))
                    fired[vec_of[i]] = 1;
            }
    }
    service_channels(ctx, fired);
    s->events++;
    pthread_cond_broadcast(&s->cond);
    if (ctx->sock_dead)
        return xdna_fail(ctx, EPIPE, "the daemon hung up");
    return 0;
}

int xdna_sess_wait(struct xdna_shim_ctx *ctx, uint64_t deadline)
{
    if (daemon_gone(ctx))
        return xdna_fail(ctx, EPIPE, "the daemon ended this session");
    if (is_monitor(ctx))
        return pump_once(ctx, deadline);
    if (xdna_cond_wait(ctx, deadline) < 0)
        return -1;
    if (daemon_gone(ctx))
        return xdna_fail(ctx, EPIPE, "the daemon ended this session");
    return 0;
}

int xdna_wait_log(struct xdna_shim_ctx *ctx, uint64_t deadline)
{
    if (ctx->s.no_monitor && xdna_hooks()) /* a message may be half written: no TDR here */
        return xdna_hooked_step(ctx, -1, deadline, NULL, false);
    if (!ctx->s.mon_running)
        return xdna_wait_step(ctx, -1, deadline, NULL);
    /* keep the lock (a message may be half written): short polls on notify */
    if (daemon_gone(ctx))
        return xdna_fail(ctx, EPIPE, "the daemon ended this session");
    if (xdna_now_ns() >= deadline) {
        errno = ETIME;
        return -1;
    }
    struct pollfd p = {.fd = ctx->notify_fd, .events = POLLIN};
    struct timespec ts = {.tv_sec = 0, .tv_nsec = 1000000};
    if (ppoll(&p, 1, &ts, NULL) > 0)
        drain_fd(ctx->notify_fd);
    return 0;
}

/* ---- interrupts --------------------------------------------------------------------- */

static int set_irqs(struct xdna_shim_ctx *ctx, uint32_t flags, unsigned start, unsigned count,
                    const int *fds)
{
    struct xdna_proto_set_irqs si = {.argsz = sizeof(si), .flags = flags,
                                     .index = XDNA_PROTO_IRQ_MSIX, .start = start,
                                     .count = count};
    size_t rl = 0;
    return xdna_ctl(ctx, XDNA_PROTO_CMD_SET_IRQS, &si, sizeof(si), fds, count, NULL, &rl, 0,
                    NULL, NULL);
}

int xdna_irq_own(struct xdna_shim_ctx *ctx, unsigned vec)
{
    if (vec >= ctx->nvec || !ctx->s.vec_owned)
        return xdna_fail(ctx, EINVAL, "MSI-X vector %u out of range (%u)", vec, ctx->nvec);
    if (ctx->s.vec_owned[vec])
        return 0;
    if (set_irqs(ctx, XDNA_PROTO_IRQ_DATA_EVENTFD | XDNA_PROTO_IRQ_ACTION_TRIGGER, vec, 1,
                 &ctx->irq_fds[vec]) < 0) {
        int err = errno;
        return xdna_fail(ctx, err, "SET_IRQS vector %u: %s", vec, strerror(err));
    }
    ctx->s.vec_owned[vec] = 1;
    xdna_wake_monitor(ctx);
    return 0;
}

/* The protocol removes a session's eventfds all at once; put back the ones still needed. */
int xdna_irq_release(struct xdna_shim_ctx *ctx, unsigned vec)
{
    if (vec >= ctx->nvec || !ctx->s.vec_owned || !ctx->s.vec_owned[vec])
        return 0;
    if (set_irqs(ctx, XDNA_PROTO_IRQ_DATA_NONE | XDNA_PROTO_IRQ_ACTION_TRIGGER, 0, 0, NULL) < 0)
        return -1;
    ctx->s.vec_owned[vec] = 0;
    int rc = 0;
    for (unsigned v = 0; v < ctx->nvec; v++) {
        if (!ctx->s.vec_owned[v])
            continue;
        ctx->s.vec_owned[v] = 0;
        if (xdna_irq_own(ctx, v) < 0)
            rc = -1;
    }
    xdna_wake_monitor(ctx);
    return rc;
}

/* ---- management requests ------------------------------------------------------------ */

bool xdna_has_feature(struct xdna_shim_ctx *ctx, enum xdna_feature f)
{
    return xdna_chip_has_feature(ctx->chip, f, ctx->info.protocol_major,
                                 ctx->info.protocol_minor);
}

int xdna_fw_call(struct xdna_shim_ctx *ctx, uint32_t opcode, const void *req, size_t req_len,
                 void *resp, size_t resp_len)
{
    if (!ctx->s.client) {
        if (!ctx->mgmt.active)
            return xdna_fail(ctx, ENODEV, "%s: management channel is not up",
                             xdna_opcode_name(opcode));
        return xdna_mbox_call(ctx, &ctx->mgmt, opcode, req, req_len, resp, resp_len, 0);
    }
    uint8_t buf[8 + 2048];
    if (req_len > sizeof(buf) - 8 || resp_len > PROXY_RESP_MAX)
        return xdna_fail(ctx, EINVAL, "MGMT_PROXY: request or response too large");
    uint32_t hdr[2] = {opcode, 0};
    memcpy(buf, hdr, 8);
    memcpy(buf + 8, req, req_len);
    uint8_t out[PROXY_RESP_MAX + 64];
    size_t len = sizeof(out);
    if (xdna_ctl(ctx, XDNA_PROTO_CMD_MGMT_PROXY, buf, 8 + req_len, NULL, 0, out, &len, 0, NULL,
                 NULL) < 0) {
        int err = errno;
        char msg[sizeof(ctx->last_error)];
        memcpy(msg, ctx->last_error, sizeof(msg));
        return xdna_fail(ctx, err, "%s via MGMT_PROXY: %.180s", xdna_opcode_name(opcode), msg);
    }
    if (len != resp_len)
        return xdna_fail(ctx, EINVAL, "%s via MGMT_PROXY: response of %zu bytes, expected %zu",
                         xdna_opcode_name(opcode), len, resp_len);
    memcpy(resp, out, resp_len);
    return 0;
}

/* ---- async events ------------------------------------------------------------------- */

static void async_cb(struct xdna_shim_ctx *ctx, void *arg, int err, const uint8_t *resp,
                     size_t len)
{
    unsigned idx = (unsigned)(uintptr_t)arg;
    if (err || !resp || len < 8)
        return; /* the channel went away (stop/suspend): nothing to re-register */
    uint32_t status, type;
    memcpy(&status, resp, 4);
    memcpy(&type, resp + 4, 4);
    struct xdna_shim_async_error *a = &ctx->s.async;
    const uint8_t *b = ctx->async_buf.va;
    if (status == 0 && b && (size_t)(idx + 1) * ASYNC_BUF_SIZE <= ctx->async_buf.size) {
        b += (size_t)idx * ASYNC_BUF_SIZE;
        uint32_t w[3];
        memcpy(w, b, sizeof(w));
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        a->count++;
        a->ts_ns = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
        a->type = type;
        a->err_cnt = w[0];
        a->ret_code = w[1];
        if (w[0] > 0 && w[0] <= (ASYNC_BUF_SIZE - 12) / 12) {
            const uint8_t *e = b + 12; /* {u8 row, u8 col, u16, u32 mod_type, u8 event_id} */
            a->row = e[0];
            a->col = e[1];
            memcpy(&a->mod_type, e + 4, 4);
            a->event_id = e[8];
        }
    }
    if (idx < sizeof(ctx->s.async_repost) && xdna_async_post(ctx, idx) < 0)
        ctx->s.async_repost[idx] = 1; /* retried from the monitor */
    pthread_cond_broadcast(&ctx->s.cond);
}

int xdna_async_post(struct xdna_shim_ctx *ctx, unsigned idx)
{
    uint8_t req[12];
    uint64_t addr = ctx->async_buf.iova + (uint64_t)idx * ASYNC_BUF_SIZE;
    uint32_t size = ASYNC_BUF_SIZE;
    memcpy(req, &addr, 8);
    memcpy(req + 8, &size, 4);
    return xdna_mbox_post_cb(ctx, &ctx->mgmt, MSG_REGISTER_ASYNC_EVENT_MSG, req, sizeof(req), 8,
                             false, async_cb, (void *)(uintptr_t)idx);
}

/* ---- device-wide exclusive sequences ------------------------------------------------ */

static int dev_begin(struct xdna_shim_ctx *ctx)
{
    uint64_t deadline = xdna_deadline(BUSY_WAIT_MS);
    while (ctx->s.dev_busy)
        if (xdna_cond_wait(ctx, deadline) < 0)
            return xdna_fail(ctx, EBUSY, "another thread's device sequence did not finish");
    ctx->s.dev_busy = true;
    return 0;
}

static void dev_end(struct xdna_shim_ctx *ctx)
{
    ctx->s.dev_busy = false;
    ctx->s.last_active_ns = xdna_now_ns();
    pthread_cond_broadcast(&ctx->s.cond);
}

static int apply_power_mode(struct xdna_shim_ctx *ctx, int mode)
{
    const struct xdna_chip_desc *c = ctx->chip;
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
    if (xdna_pm_set_dpm(ctx, level) < 0)
        return -1;
    if (gating != ctx->s.clock_gating) {
        for (unsigned i = 0; i < c->nclock_gating; i++)
            if (xdna_pm_runtime_config(ctx, c->clock_gating[i], gating ? 1 : 0) < 0)
                return -1;
        ctx->s.clock_gating = gating;
    }
    ctx->s.power_mode = mode;
    return 0;
}

int xdna_rpm_get(struct xdna_shim_ctx *ctx)
{
    ctx->s.last_active_ns = xdna_now_ns();
    if (!ctx->s.rpm_suspended)
        return 0;
    if (dev_begin(ctx) < 0)
        return -1;
    int rc = 0;
    if (ctx->s.rpm_suspended) {
        int mode = ctx->s.power_mode;
        rc = xdna_resume_unlocked(ctx);
        if (rc == 0) {
            ctx->s.rpm_suspended = false;
            ctx->s.resume_count++;
            ctx->s.clock_gating = true; /* pm_init turned gating on at max level */
            if (mode != XDNA_SHIM_POWER_DEFAULT)
                rc = apply_power_mode(ctx, mode);
            ctx->s.power_mode = mode;
            int r2 = xdna_hwctx_restart_all(ctx);
            if (rc == 0)
                rc = r2;
        }
    }
    dev_end(ctx);
    return rc;
}

/* Could autosuspend run now, time aside? (Not while another operation holds the device.) */
static bool rpm_armed(struct xdna_shim_ctx *ctx)
{
    const struct xdna_sess *s = &ctx->s;
    return !s->client && s->autosuspend_ms > 0 && !s->rpm_suspended && !s->dev_busy &&
           ctx->state == XDNA_SHIM_STATE_PROBED && !ctx->sock_dead;
}

/* When the monitor's periodic duties are next due: the TDR tick, and autosuspend only while
 * it can run. A due time already past (the duty ran, or could not) waits a monitor poll
 * interval, so neither the monitor thread nor a hooked wait spins on it. */
static uint64_t duties_due(struct xdna_shim_ctx *ctx, uint64_t now)
{
    const struct xdna_sess *s = &ctx->s;
    uint64_t due = s->next_tdr_ns;
    if (rpm_armed(ctx)) {
        uint64_t rpm = s->last_active_ns + (uint64_t)s->autosuspend_ms * 1000000u;
        if (rpm < due)
            due = rpm;
    }
    if (due <= now)
        due = now + XDNA_MONITOR_POLL_NS;
    return due;
}

/* Autosuspend: destroy firmware contexts (shim state kept), then the driver stop order. */
static void rpm_maybe_suspend(struct xdna_shim_ctx *ctx)
{
    struct xdna_sess *s = &ctx->s;
    if (!rpm_armed(ctx))
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
    dev_end(ctx);
}

/* ---- deterministic mode: the monitor's work, inline ---------------------------------- */

/* The monitor's periodic duties, run by the thread or inline in deterministic mode: the
 * TDR tick, re-posting async-event registrations, runtime autosuspend. Lock held. */
static void periodic_duties(struct xdna_shim_ctx *ctx)
{
    struct xdna_sess *s = &ctx->s;
    uint64_t now = xdna_now_ns();
    if (now >= s->next_tdr_ns) {
        s->next_tdr_ns = now + (uint64_t)s->tdr_ms * 1000000u;
        if (!s->dev_busy && !s->rpm_suspended)
            xdna_hwctx_tdr_tick(ctx);
    }
    if (!s->client && ctx->mgmt.active)
        for (unsigned i = 0; i < sizeof(s->async_repost); i++)
            if (s->async_repost[i] && xdna_async_post(ctx, i) == 0)
                s->async_repost[i] = 0;
    rpm_maybe_suspend(ctx);
}

/* TDR, async re-posts and autosuspend, as one monitor iteration does them. */
static void housekeeping(struct xdna_shim_ctx *ctx)
{
    struct xdna_sess *s = &ctx->s;
    if (!s->mon_virtual || s->in_housekeeping || daemon_gone(ctx))
        return;
    s->in_housekeeping = true;
    periodic_duties(ctx);
    s->in_housekeeping = false;
}

int xdna_hooked_step(struct xdna_shim_ctx *ctx, int extra_fd, uint64_t deadline,
                     bool *extra_ready, bool hk)
{
    struct xdna_sess *s = &ctx->s;
    const struct xdna_shim_hooks *h = xdna_hooks();
    if (extra_ready)
        *extra_ready = false;
    if (daemon_gone(ctx))
        return xdna_fail(ctx, EPIPE, "the daemon ended this session");
    uint64_t now = xdna_now_ns();
    if (now >= deadline) {
        errno = ETIME;
        return -1;
    }
    /* wake no later than the monitor would (TDR tick, autosuspend) */
    uint64_t wake = deadline;
    hk = hk && s->mon_virtual && !s->in_housekeeping;
    if (hk) {
        uint64_t due = duties_due(ctx, now);
        if (due < wake)
            wake = due;
    }
    if (h->wait(h->user, wake) < 0)
        return xdna_fail(ctx, EPIPE, "the wait hook gave up");
    struct pollfd p[4 + 128];
    unsigned vec_of[4 + 128];
    nfds_t n = 0;
    p[n++] = (struct pollfd){.fd = ctx->notify_fd, .events = POLLIN};
    p[n++] = (struct pollfd){.fd = ctx->sock, .events = POLLIN | POLLRDHUP};
    p[n++] = (struct pollfd){.fd = extra_fd, .events = POLLIN}; /* fd -1 is ignored */
    for (unsigned v = 0; s->mon_virtual && v < ctx->nvec && n < sizeof(p) / sizeof(p[0]); v++)
        if (s->vec_owned && s->vec_owned[v] && ctx->irq_fds[v] >= 0 && ctx->irq_fds[v] != extra_fd) {
            vec_of[n] = v;
            p[n++] = (struct pollfd){.fd = ctx->irq_fds[v], .events = POLLIN};
        }
    struct timespec zero = {0, 0};
    int r = ppoll(p, n, &zero, NULL);
    uint8_t fired[XDNA_MAX_VECTORS > 256 ? 256 : XDNA_MAX_VECTORS];
    memset(fired, 0, sizeof(fired));
    if (r > 0) {
        if (p[0].revents & POLLIN)
            drain_fd(ctx->notify_fd);
        if (p[1].revents & (POLLHUP | POLLERR | POLLRDHUP | POLLNVAL)) {
            ctx->sock_dead = true;
            return xdna_fail(ctx, EPIPE, "the daemon hung up");
        }
        if (p[1].revents & POLLIN) {
            ctx->sock_dead = true;
            return xdna_fail(ctx, EPROTO, "unsolicited data on the control socket");
        }
        if (extra_fd >= 0 && (p[2].revents & POLLIN)) {
            drain_fd(extra_fd);
            if (extra_ready)
                *extra_ready = true;
            for (unsigned v = 0; v < ctx->nvec && v < sizeof(fired); v++)
                if (ctx->irq_fds[v] == extra_fd)
                    fired[v] = 1;
        }
        for (nfds_t i = 3; i < n; i++)
            if (p[i].revents & POLLIN) {
                drain_fd(p[i].fd);
                if (vec_of[i] < sizeof(fired))
                    fired[vec_of[i]] = 1;
            }
    }
    if (s->mon_virtual && !s->in_housekeeping) {
        /* the caller's own channel (extra_fd) is drained by the caller */
        if (extra_fd >= 0 && extra_ready && *extra_ready)
            for (unsigned v = 0; v < ctx->nvec && v < sizeof(fired); v++)
                if (ctx->irq_fds[v] == extra_fd)
                    fired[v] = 0;
        service_channels(ctx, fired);
        s->events++;
    }
    if (hk)
        housekeeping(ctx);
    return 0;
}

/* ---- the monitor thread ------------------------------------------------------------- */

static void *monitor_main(void *arg)
{
    struct xdna_shim_ctx *ctx = arg;
    struct xdna_sess *s = &ctx->s;
    pthread_mutex_lock(&s->lock);
    s->next_tdr_ns = xdna_now_ns() + (uint64_t)s->tdr_ms * 1000000u;
    while (!s->mon_stop) {
        if (daemon_gone(ctx)) { /* nothing more will happen: sleep until close */
            ctx->sock_dead = true;
            pthread_cond_broadcast(&s->cond);
            xdna_cond_wait(ctx, UINT64_MAX);
            continue;
        }
        uint64_t now = xdna_now_ns();
        uint64_t deadline = duties_due(ctx, now);
        if (deadline > now + 1000000000u)
            deadline = now + 1000000000u;
        pump_once(ctx, deadline);
        if (s->mon_stop)
            break;
        periodic_duties(ctx);
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

static int monitor_start(struct xdna_shim_ctx *ctx)
{
    struct xdna_sess *s = &ctx->s;
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
    return 0;
}

static void monitor_stop(struct xdna_shim_ctx *ctx)
{
    struct xdna_sess *s = &ctx->s;
    s->mon_virtual = false;
    if (!s->mon_running)
        return;
    s->mon_stop = true;
    xdna_wake_monitor(ctx);
    pthread_cond_broadcast(&s->cond);
    pthread_t t = s->mon;
    pthread_mutex_unlock(&s->lock);
    pthread_join(t, NULL);
    pthread_mutex_lock(&s->lock);
    s->mon_running = false;
}

/* ---- public: lifecycle wrappers ----------------------------------------------------- */

/* A failure's message is also this thread's (xdna_shim_last_error is per thread). */
static int keep_msg(struct xdna_shim_ctx *ctx, int rc)
{
    if (rc < 0) {
        int err = errno;
        xdna_set_tls_error(err, "%s", ctx->last_error);
        errno = err;
    }
    return rc;
}

static int client_refused(struct xdna_shim_ctx *ctx, const char *what)
{
    return xdna_fail(ctx, EPERM, "%s: only the driver session may do this", what);
}

int xdna_shim_probe(struct xdna_shim_ctx *ctx, const char *fw_search_path)
{
    if (enter(ctx) < 0)
        return -1;
    if (ctx->s.client)
        return leave(ctx, client_refused(ctx, "probe"));
    if (ctx->s.rpm_suspended)
        return leave(ctx, xdna_fail(ctx, EALREADY, "device is already probed"));
    if (dev_begin(ctx) < 0)
        return leave(ctx, -1);
    int rc = keep_msg(ctx, xdna_probe_unlocked(ctx, fw_search_path));
    if (rc == 0) {
        ctx->s.power_mode = XDNA_SHIM_POWER_DEFAULT;
        ctx->s.clock_gating = true;
        memset(&ctx->s.async, 0, sizeof(ctx->s.async));
        rc = keep_msg(ctx, monitor_start(ctx));
    }
    dev_end(ctx);
    return leave(ctx, rc);
}

int xdna_shim_stop(struct xdna_shim_ctx *ctx)
{
    if (enter(ctx) < 0)
        return -1;
    if (ctx->s.client)
        return leave(ctx, client_refused(ctx, "stop"));
    if (dev_begin(ctx) < 0)
        return leave(ctx, -1);
    xdna_hwctx_stop_all(ctx);
    int rc = keep_msg(ctx, xdna_stop_unlocked(ctx));
    ctx->s.rpm_suspended = false;
    dev_end(ctx);
    return leave(ctx, rc);
}

int xdna_shim_suspend(struct xdna_shim_ctx *ctx)
{
    if (enter(ctx) < 0)
        return -1;
    if (ctx->s.client)
        return leave(ctx, client_refused(ctx, "suspend"));
    if (ctx->s.rpm_suspended) /* already down: make it a system suspend */
        ctx->s.rpm_suspended = false;
    else {
        if (ctx->state != XDNA_SHIM_STATE_PROBED)
            return leave(ctx, keep_msg(ctx, xdna_fail(ctx, EINVAL, "suspend: device is not probed")));
        if (dev_begin(ctx) < 0)
            return leave(ctx, -1);
        xdna_hwctx_stop_all(ctx);
        int rc = keep_msg(ctx, xdna_suspend_unlocked(ctx));
        ctx->s.suspend_count++;
        dev_end(ctx);
        return leave(ctx, rc);
    }
    return leave(ctx, 0);
}

int xdna_shim_resume(struct xdna_shim_ctx *ctx)
{
    if (enter(ctx) < 0)
        return -1;
    if (ctx->s.client)
        return leave(ctx, client_refused(ctx, "resume"));
    if (ctx->s.rpm_suspended)
        return leave(ctx, keep_msg(ctx, xdna_rpm_get(ctx)));
    if (dev_begin(ctx) < 0)
        return leave(ctx, -1);
    int mode = ctx->s.power_mode;
    int rc = keep_msg(ctx, xdna_resume_unlocked(ctx));
    if (rc == 0) {
        ctx->s.resume_count++;
        ctx->s.clock_gating = true;
        if (mode != XDNA_SHIM_POWER_DEFAULT)
            rc = keep_msg(ctx, apply_power_mode(ctx, mode));
        int r2 = keep_msg(ctx, xdna_hwctx_restart_all(ctx));
        if (rc == 0)
            rc = r2;
    }
    dev_end(ctx);
    return leave(ctx, rc);
}

int xdna_shim_mgmt_msg(struct xdna_shim_ctx *ctx, uint32_t opcode, const void *req,
                       size_t req_len, void *resp, size_t resp_len, int timeout_ms)
{
    if (enter(ctx) < 0)
        return -1;
    if (ctx->s.client)
        return leave(ctx, keep_msg(ctx, xdna_fw_call(ctx, opcode, req, req_len, resp, resp_len)));
    if (xdna_rpm_get(ctx) < 0)
        return leave(ctx, keep_msg(ctx, -1));
    return leave(ctx, keep_msg(ctx, xdna_mgmt_msg_unlocked(ctx, opcode, req, req_len, resp,
                                                           resp_len, timeout_ms)));
}

int xdna_shim_get_info(struct xdna_shim_ctx *ctx, struct xdna_shim_info *info)
{
    if (enter(ctx) < 0)
        return -1;
    int rc = keep_msg(ctx, xdna_get_info_unlocked(ctx, info));
    if (rc == 0) {
        info->caps_probed = ctx->s.caps_probed;
        info->client = ctx->s.client;
        if (ctx->s.rpm_suspended)
            info->state = XDNA_SHIM_STATE_SUSPENDED;
    }
    return leave(ctx, rc);
}

int xdna_shim_readl(struct xdna_shim_ctx *ctx, unsigned bar, uint32_t off, uint32_t *val)
{
    if (enter(ctx) < 0)
        return -1;
    return leave(ctx, keep_msg(ctx, xdna_readl_unlocked(ctx, bar, off, val)));
}

int xdna_shim_writel(struct xdna_shim_ctx *ctx, unsigned bar, uint32_t off, uint32_t val)
{
    if (enter(ctx) < 0)
        return -1;
    return leave(ctx, keep_msg(ctx, xdna_writel_unlocked(ctx, bar, off, val)));
}

int xdna_shim_set_timeout(struct xdna_shim_ctx *ctx, int which, int ms)
{
    if (enter(ctx) < 0)
        return -1;
    return leave(ctx, keep_msg(ctx, xdna_set_timeout_unlocked(ctx, which, ms)));
}

void xdna_shim_close(struct xdna_shim_ctx *ctx)
{
    if (!ctx)
        return;
    pthread_mutex_lock(&ctx->s.lock);
    monitor_stop(ctx);
    if (!daemon_gone(ctx))
        xdna_hwctx_destroy_all(ctx);
    xdna_bo_free_all(ctx);
    if (ctx->s.client)
        ctx->state = XDNA_SHIM_STATE_ATTACHED; /* never stop a device we did not probe */
    if (ctx->s.rpm_suspended)
        ctx->state = XDNA_SHIM_STATE_SUSPENDED;
    pthread_mutex_unlock(&ctx->s.lock);
    xdna_close_unlocked(ctx); /* destroys the lock (release -> xdna_sess_fini) */
}

/* ---- public: client sessions -------------------------------------------------------- */

static int fw_u32(struct xdna_shim_ctx *ctx, uint32_t op, void *resp, size_t len)
{
    uint32_t rsvd = 0, status;
    if (xdna_fw_call(ctx, op, &rsvd, sizeof(rsvd), resp, len) < 0)
        return -1;
    memcpy(&status, resp, 4);
    if (status != 0)
        return xdna_fail(ctx, EIO, "%s failed, status %#x", xdna_opcode_name(op), status);
    return 0;
}

/* The protocol version gates features (NPU_COMMAND). Only the driver reads the mgmt
 * channel info; a client asks GET_PROTOCOL_VERSION through the proxy, and when the
 * daemon refuses that, reads the info block the firmware published in SRAM (emulator
 * shortcut: the real driver shares this knowledge inside the kernel). */
static int client_protocol(struct xdna_shim_ctx *ctx)
{
    uint32_t r[3];
    if (fw_u32(ctx, MSG_GET_PROTOCOL_VERSION, r, sizeof(r)) == 0) {
        ctx->info.protocol_major = r[1];
        ctx->info.protocol_minor = r[2];
        return 0;
    }
    const struct xdna_chip_desc *c = ctx->chip;
    if (c->mgmt_info.valid) {
        struct xdna_loc l = {.bar = c->mgmt_info.bar, .off = c->mgmt_info.off};
        uint32_t w[MGMT_INFO_SIZE / 4];
        for (unsigned i = 0; i < MGMT_INFO_SIZE / 4; i++)
            w[i] = xdna_rd(ctx, (struct xdna_loc){.bar = l.bar, .off = l.off + 4 * i});
        struct xdna_mbox_chann_info ci;
        memcpy(&ci, w, sizeof(ci));
        if (ci.magic == MGMT_INFO_MAGIC && ci.prot_major == c->protocol_major) {
            ctx->info.protocol_major = ci.prot_major;
            ctx->info.protocol_minor = ci.prot_minor;
            return 0;
        }
    }
    return xdna_fail(ctx, EPROTO, "attach: cannot learn the firmware protocol version");
}

int xdna_shim_attach(struct xdna_shim_ctx *ctx)
{
    if (enter(ctx) < 0)
        return -1;
    if (ctx->s.client || ctx->state == XDNA_SHIM_STATE_PROBED || ctx->s.rpm_suspended)
        return leave(ctx, keep_msg(ctx, xdna_fail(ctx, EALREADY, "attach: already %s",
                                                  ctx->s.client ? "attached" : "probed")));
    if (!ctx->chip->supported)
        return leave(ctx, keep_msg(ctx, xdna_fail(ctx, EOPNOTSUPP, "%s is known by id only",
                                                  ctx->chip->name)));
    if (!ctx->s.caps_probed)
        return leave(ctx, keep_msg(ctx, xdna_fail(ctx, ENODEV,
                                                  "attach: no driver session has probed the device")));
    ctx->s.client = true;
    /* IOVA space is shared by sessions: keep ours apart from the driver's */
    ctx->iova_next = XDNA_IOVA_BASE + ((uint64_t)(ctx->info.pasid & 0xFFFF) << 36);
    uint32_t fv[5];
    uint8_t av[8], ti[48];
    if (fw_u32(ctx, MSG_GET_FIRMWARE_VERSION, fv, sizeof(fv)) < 0 ||
        fw_u32(ctx, MSG_QUERY_AIE_VERSION, av, sizeof(av)) < 0 ||
        fw_u32(ctx, MSG_QUERY_AIE_TILE_INFO, ti, sizeof(ti)) < 0 || client_protocol(ctx) < 0) {
        ctx->s.client = false;
        return leave(ctx, keep_msg(ctx, -1));
    }
    struct xdna_shim_info *in = &ctx->info;
    in->fw_major = fv[1];
    in->fw_minor = fv[2];
    in->fw_sub = fv[3];
    in->fw_build = fv[4];
    if (xdna_decode_aie_info(ctx, av, ti) < 0) {
        ctx->s.client = false;
        return leave(ctx, keep_msg(ctx, -1));
    }
    return leave(ctx, keep_msg(ctx, monitor_start(ctx)));
}

/* ---- public: settings, async errors, power ------------------------------------------ */

int xdna_shim_set_tdr_ms(struct xdna_shim_ctx *ctx, int ms)
{
    if (enter(ctx) < 0)
        return -1;
    if (ms <= 0)
        return leave(ctx, keep_msg(ctx, xdna_fail(ctx, EINVAL, "TDR period must be > 0")));
    ctx->s.tdr_ms = ms;
    ctx->s.next_tdr_ns = xdna_now_ns() + (uint64_t)ms * 1000000u;
    xdna_wake_monitor(ctx);
    return leave(ctx, 0);
}

int xdna_shim_set_autosuspend_ms(struct xdna_shim_ctx *ctx, int ms)
{
    if (enter(ctx) < 0)
        return -1;
    if (ms < 0)
        return leave(ctx, keep_msg(ctx, xdna_fail(ctx, EINVAL, "autosuspend delay must be >= 0")));
    ctx->s.autosuspend_ms = ms;
    ctx->s.last_active_ns = xdna_now_ns();
    xdna_wake_monitor(ctx);
    return leave(ctx, 0);
}

int xdna_shim_last_async_error(struct xdna_shim_ctx *ctx, struct xdna_shim_async_error *err)
{
    if (enter(ctx) < 0)
        return -1;
    if (!err)
        return leave(ctx, keep_msg(ctx, xdna_fail(ctx, EINVAL, "last_async_error: NULL")));
    *err = ctx->s.async;
    return leave(ctx, 0);
}

int xdna_shim_set_power_mode(struct xdna_shim_ctx *ctx, int mode)
{
    if (enter(ctx) < 0)
        return -1;
    if (ctx->s.client)
        return leave(ctx, keep_msg(ctx, client_refused(ctx, "set_power_mode")));
    if (mode < XDNA_SHIM_POWER_DEFAULT || mode > XDNA_SHIM_POWER_TURBO)
        return leave(ctx, keep_msg(ctx, xdna_fail(ctx, EINVAL, "power mode %d is unknown", mode)));
    if (ctx->state != XDNA_SHIM_STATE_PROBED && !ctx->s.rpm_suspended)
        return leave(ctx, keep_msg(ctx, xdna_fail(ctx, ENODEV, "set_power_mode: not probed")));
    uint32_t foreign = ctx->ctrl ? __atomic_load_n((const uint32_t *)(ctx->ctrl +
                                                   XDNA_PROTO_CTRL_OFF_FOREIGN_CTX), __ATOMIC_ACQUIRE)
                                 : 0;
    if (mode == XDNA_SHIM_POWER_TURBO && (xdna_hwctx_live(ctx) || foreign))
        return leave(ctx, keep_msg(ctx, xdna_fail(ctx, EBUSY,
                                                  "TURBO needs a device without active contexts")));
    if (xdna_rpm_get(ctx) < 0 || dev_begin(ctx) < 0)
        return leave(ctx, keep_msg(ctx, -1));
    int rc = keep_msg(ctx, apply_power_mode(ctx, mode));
    dev_end(ctx);
    return leave(ctx, rc);
}

int xdna_shim_get_power(struct xdna_shim_ctx *ctx, struct xdna_shim_power *pw)
{
    if (enter(ctx) < 0)
        return -1;
    if (!pw)
        return leave(ctx, keep_msg(ctx, xdna_fail(ctx, EINVAL, "get_power: NULL")));
    memset(pw, 0, sizeof(*pw));
    const struct xdna_chip_desc *c = ctx->chip;
    pw->mode = ctx->s.power_mode;
    pw->dpm_level = ctx->info.dpm_level;
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
    return leave(ctx, 0);
}

/* GET_APP_HEALTH target buffer, allocated on first use. */
int xdna_health_buf(struct xdna_shim_ctx *ctx, uint64_t *addr, uint8_t **va)
{
    struct xdna_dma_buf *b = &ctx->s.health_buf;
    if (!b->va) {
        if (xdna_dma_alloc(ctx, b, 0x2000, XDNA_PROTO_DMA_READ | XDNA_PROTO_DMA_WRITE,
                           "xdna-health") < 0)
            return -1;
        int rc = ctx->s.client ? xdna_sva_map(ctx, b->fd, b->va, b->size) : xdna_dma_map(ctx, b);
        if (rc < 0) {
            xdna_dma_free(b);
            return -1;
        }
        if (ctx->s.client)
            b->iova = (uint64_t)(uintptr_t)b->va;
    }
    *addr = b->iova;
    *va = b->va;
    return 0;
}
