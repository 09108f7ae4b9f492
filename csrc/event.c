/* Waiting for the device: the event pump and every blocking wait built on it.
 *
 * Every public call takes ctx->s.lock. Once probe/attach succeeded the monitor thread
 * (monitor.c) owns all receiving: it polls the notify eventfd, the owned MSI-X eventfds,
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
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static void drain_fd(int fd)
{
    uint64_t v;
    if (read(fd, &v, sizeof(v)) < 0)
        (void)v;
}

bool xdna_daemon_gone(struct xdna_shim_ctx *ctx)
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

/* ---- the monitor's pump ------------------------------------------------------------ */

static bool is_monitor(struct xdna_shim_ctx *ctx)
{
    return ctx->s.mon_running && pthread_equal(pthread_self(), ctx->s.mon);
}

/* One monitor step: poll every event source until one fires or the deadline passes (lock
 * released meanwhile), then service channels and wake the waiters. */
int xdna_pump_once(struct xdna_shim_ctx *ctx, uint64_t deadline)
{
    struct xdna_sess *s = &ctx->s;
    if (xdna_daemon_gone(ctx))
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
    if (xdna_daemon_gone(ctx))
        return xdna_fail(ctx, EPIPE, "the daemon ended this session");
    if (is_monitor(ctx))
        return xdna_pump_once(ctx, deadline);
    if (xdna_cond_wait(ctx, deadline) < 0)
        return -1;
    if (xdna_daemon_gone(ctx))
        return xdna_fail(ctx, EPIPE, "the daemon ended this session");
    return 0;
}

/* ---- deterministic mode: the monitor's work, inline -------------------------------- */

int xdna_hooked_step(struct xdna_shim_ctx *ctx, int extra_fd, uint64_t deadline,
                     bool *extra_ready, bool hk)
{
    struct xdna_sess *s = &ctx->s;
    const struct xdna_shim_hooks *h = xdna_hooks();
    if (extra_ready)
        *extra_ready = false;
    if (xdna_daemon_gone(ctx))
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
        uint64_t due = xdna_monitor_due(ctx, now);
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
        xdna_monitor_housekeeping(ctx);
    return 0;
}

/* ---- waits ------------------------------------------------------------------------- */

static bool daemon_alive(struct xdna_shim_ctx *ctx)
{
    if (!ctx->ctrl)
        return true;
    uint32_t alive = __atomic_load_n((const uint32_t *)(ctx->ctrl + XDNA_PROTO_CTRL_OFF_ALIVE),
                                     __ATOMIC_ACQUIRE);
    return alive != 0;
}

int xdna_wait_step(struct xdna_shim_ctx *ctx, int extra_fd, uint64_t deadline, bool *extra_ready)
{
    if (extra_ready)
        *extra_ready = false;
    if (ctx->s.mon_running) /* the monitor thread receives; wait for its next event */
        return xdna_sess_wait(ctx, deadline);
    if (ctx->s.no_monitor && xdna_hooks())
        return xdna_hooked_step(ctx, extra_fd, deadline, extra_ready, true);
    for (;;) {
        if (ctx->sock_dead || !daemon_alive(ctx))
            return xdna_fail(ctx, EPIPE, "the daemon ended this session");
        uint64_t now = xdna_now_ns();
        if (now >= deadline) {
            errno = ETIME;
            return -1;
        }
        uint64_t left = deadline - now;
        struct timespec ts = {.tv_sec = (time_t)(left / 1000000000u),
                              .tv_nsec = (long)(left % 1000000000u)};
        struct pollfd p[3];
        nfds_t n = 0;
        p[n++] = (struct pollfd){.fd = ctx->notify_fd, .events = POLLIN};
        p[n++] = (struct pollfd){.fd = ctx->sock, .events = POLLIN};
        if (extra_fd >= 0)
            p[n++] = (struct pollfd){.fd = extra_fd, .events = POLLIN};
        int r = ppoll(p, n, &ts, NULL);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return xdna_fail(ctx, errno, "poll: %s", strerror(errno));
        }
        if (r == 0)
            continue; /* re-check the deadline */
        if (p[1].revents & (POLLHUP | POLLERR | POLLNVAL)) {
            ctx->sock_dead = true;
            return xdna_fail(ctx, EPIPE, "the daemon hung up");
        }
        if (p[1].revents & POLLIN) {
            char c;
            ssize_t k = recv(ctx->sock, &c, 1, MSG_PEEK | MSG_DONTWAIT);
            ctx->sock_dead = true;
            if (k == 0)
                return xdna_fail(ctx, EPIPE, "the daemon closed the connection");
            return xdna_fail(ctx, EPROTO, "unsolicited data on the control socket");
        }
        if (p[0].revents & POLLIN)
            drain_fd(ctx->notify_fd);
        if (extra_fd >= 0 && (p[2].revents & POLLIN)) {
            drain_fd(extra_fd);
            if (extra_ready)
                *extra_ready = true;
        }
        return 0;
    }
}

int xdna_poll_reg(struct xdna_shim_ctx *ctx, struct xdna_loc loc, uint32_t mask, int timeout_ms,
                  uint32_t *val, const char *what)
{
    uint64_t deadline = xdna_deadline(timeout_ms);
    for (;;) {
        uint32_t v = xdna_rd(ctx, loc);
        if (v & mask) {
            if (val)
                *val = v;
            return 0;
        }
        if (xdna_wait_step(ctx, -1, deadline, NULL) < 0) {
            if (errno != ETIME)
                return -1;
            v = xdna_rd(ctx, loc); /* one last look at the deadline */
            if (v & mask) {
                if (val)
                    *val = v;
                return 0;
            }
            return xdna_fail(ctx, ETIME, "%s: timed out after %d ms (reg %#x = %#x)", what,
                             timeout_ms, loc.off, v);
        }
    }
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

int xdna_wait_log(struct xdna_shim_ctx *ctx, uint64_t deadline)
{
    if (ctx->s.no_monitor && xdna_hooks()) /* a message may be half written: no TDR here */
        return xdna_hooked_step(ctx, -1, deadline, NULL, false);
    if (!ctx->s.mon_running)
        return xdna_wait_step(ctx, -1, deadline, NULL);
    /* keep the lock (a message may be half written): short polls on notify */
    if (xdna_daemon_gone(ctx))
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
