/* Waiting for the device: one event pump and the waits built on it.
 *
 * The pump polls a set of event sources (the write log's notify eventfd, the control
 * socket, the monitor's wake eventfd, a waiter's own MSI-X eventfd, the owned vectors),
 * drains what fired and services the mailbox channels. Each kind of wait is one policy of
 * which sources it watches, whether it services, whether it drops the lock and how long it
 * blocks:
 *   - before the monitor runs (the first probe), the caller is the only receiver: notify,
 *     socket and its own channel's vector, until the deadline;
 *   - the monitor thread (monitor.c) receives for everyone once probe/attach succeeded:
 *     every source, lock dropped while blocked, channels serviced, then ctx->s.cond
 *     broadcast; any other waiter sleeps on that condition variable;
 *   - deterministic mode: the wait hook advances virtual time, then one non-blocking look
 *     at every source, with the monitor's servicing and duties run inline;
 *   - a write-log wait that must keep the lock: short slices on notify;
 *   - a direct wait (docs/spec/protocol.md, "Direct waits"): a thread waiting for one
 *     channel's answer polls that channel's vector itself, lock dropped, and the monitor
 *     leaves the vector and the channel alone meanwhile.
 * Every public call holds ctx->s.lock; the monitor thread and direct waiters drop it while
 * they block.
 */
#include "shim_int.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* ---- the pump: one pollfd builder, one dispatcher ---------------------------------- */

/* What one pump step watches and what it does with what fired: the blocking policy of
 * each kind of wait (see the callers below). */
struct pump {
    int extra_fd;     /* a waiter's own channel eventfd: reported, never serviced; or -1 */
    bool wake;        /* the monitor's wake eventfd */
    bool sock_data;   /* data on the control socket is an error: no reply can be due */
    bool vectors;     /* every owned MSI-X vector */
    bool service;     /* afterwards drain every channel with work and wake the waiters */
    bool unlock;      /* the ctx lock is dropped while blocked (the monitor thread) */
    bool extra_ready; /* out: extra_fd fired (its counter is drained) */
};

/* Fixed slots first, then the owned vectors. An fd of -1 is a slot ppoll ignores. */
enum { SLOT_NOTIFY, SLOT_SOCK, SLOT_WAKE, SLOT_EXTRA, SLOT_VEC0 };
/* Owned vectors are the management channel's and one per context. */
#define PUMP_MAX_VECS 128
_Static_assert(PUMP_MAX_VECS >= XDNA_MAX_HWCTX + 1, "every owned vector fits one poll");
#define PUMP_FDS (SLOT_VEC0 + PUMP_MAX_VECS)
/* A write-log wait that must keep the lock re-checks the log this often. */
#define LOG_WAIT_SLICE_NS 1000000u

static void drain_fd(int fd)
{
    uint64_t v;
    if (read(fd, &v, sizeof(v)) < 0)
        (void)v;
}

static int direct_find(const struct xdna_drv_state *s, unsigned vec)
{
    for (unsigned i = 0; i < s->ndirect; i++)
        if (s->direct[i].vec == vec)
            return (int)i;
    return -1;
}

static bool direct_owned(const struct xdna_drv_state *s, unsigned vec)
{
    return s->ndirect && direct_find(s, vec) >= 0;
}

static nfds_t pump_fds(struct xdna_shim_ctx *ctx, const struct pump *pp, struct pollfd *p,
                       unsigned *vec_of)
{
    const struct xdna_drv_state *s = &ctx->s;
    p[SLOT_NOTIFY] = (struct pollfd){.fd = ctx->notify_fd, .events = POLLIN};
    p[SLOT_SOCK] = (struct pollfd){.fd = ctx->sock,
                                   .events = POLLRDHUP | (pp->sock_data ? POLLIN : 0)};
    p[SLOT_WAKE] = (struct pollfd){.fd = pp->wake ? s->wake_fd : -1, .events = POLLIN};
    p[SLOT_EXTRA] = (struct pollfd){.fd = pp->extra_fd, .events = POLLIN};
    nfds_t n = SLOT_VEC0;
    for (unsigned v = 0; pp->vectors && s->vec_owned && v < ctx->nvec && n < PUMP_FDS; v++)
        if (s->vec_owned[v] && ctx->irq_fds[v] >= 0 && ctx->irq_fds[v] != pp->extra_fd &&
            !direct_owned(s, v)) {
            vec_of[n] = v;
            p[n++] = (struct pollfd){.fd = ctx->irq_fds[v], .events = POLLIN};
        }
    return n;
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

/* Process whatever the device did: every channel with data, or whose vector fired, is
 * drained (with or without an interrupt, as the driver's RX worker re-checks its ring). */
static void service_channels(struct xdna_shim_ctx *ctx, const uint8_t *fired)
{
    const struct xdna_drv_state *s = &ctx->s;
    xdna_hwctx_client_boot_check(ctx); /* a client's rings may be another firmware's now */
    if (ctx->mgmt.active && !direct_owned(s, ctx->mgmt.msix) &&
        (ring_has_data(ctx, &ctx->mgmt) || fired[ctx->mgmt.msix]))
        xdna_mbox_rx(ctx, &ctx->mgmt);
    for (unsigned i = 0; i < XDNA_MAX_HWCTX; i++) {
        struct xdna_hwctx *hw = ctx->s.hw[i];
        if (hw && hw->umq_bo && hw->njobs) { /* AIE4: the queue's read_index, no channel */
            xdna_aie4_reap(ctx, hw);
            continue;
        }
        if (!hw || !hw->chan.active || (!hw->polled && direct_owned(s, hw->msix)))
            continue; /* a direct waiter services its own channel */
        if (ring_has_data(ctx, &hw->chan) || (!hw->polled && fired[hw->msix]))
            xdna_mbox_rx(ctx, &hw->chan);
    }
}

/* Every wait starts here: a gone daemon and a passed deadline end it. */
static int pump_due(struct xdna_shim_ctx *ctx, uint64_t deadline, uint64_t *now)
{
    if (xdna_daemon_gone(ctx)) {
        if (xdna_aie4_removed(ctx))
            return xdna_fail(ctx, ENODEV, "the function was removed");
        return xdna_fail(ctx, EPIPE, "the daemon ended this session");
    }
    *now = xdna_now_ns();
    if (*now >= deadline) {
        errno = ETIME;
        return -1;
    }
    return 0;
}

/* The dispatcher's verdict on the control socket: 0, or why the session is over. */
static int sock_verdict(struct xdna_shim_ctx *ctx, short revents)
{
    if (revents & (POLLHUP | POLLERR | POLLRDHUP | POLLNVAL)) {
        ctx->sock_dead = true;
        return xdna_fail(ctx, EPIPE, "the daemon hung up");
    }
    if (revents & POLLIN) {
        char c;
        ssize_t k = recv(ctx->sock, &c, 1, MSG_PEEK | MSG_DONTWAIT);
        ctx->sock_dead = true;
        if (k == 0)
            return xdna_fail(ctx, EPIPE, "the daemon closed the connection");
        return xdna_fail(ctx, EPROTO, "unsolicited data on the control socket");
    }
    return 0;
}

/* One pump step: poll what pp names for up to `timeout_ns` (lock dropped if pp->unlock),
 * drain every eventfd that fired, then service the channels if pp->service. A hung-up or
 * misbehaving daemon fails the step after the channels got what was already there.
 * Returns 0 also when nothing fired: every caller re-checks its condition and deadline. */
static int pump_step(struct xdna_shim_ctx *ctx, struct pump *pp, uint64_t timeout_ns)
{
    struct xdna_drv_state *s = &ctx->s;
    struct pollfd p[PUMP_FDS];
    unsigned vec_of[PUMP_FDS];
    nfds_t n = pump_fds(ctx, pp, p, vec_of);
    struct timespec ts = {.tv_sec = (time_t)(timeout_ns / 1000000000u),
                          .tv_nsec = (long)(timeout_ns % 1000000000u)};
    if (pp->vectors && pp->unlock) { /* the monitor: what this poll leaves to direct waiters */
        s->nmon_skip = 0;
        for (unsigned i = 0; i < s->ndirect; i++)
            s->mon_skip[s->nmon_skip++] = s->direct[i].vec;
        xdna_irq_wakes_sync(ctx);
    }
    if (pp->unlock) {
        xdna_unlock(&s->lock);
        xdna_lockdep_blocking(); /* the pump sleeps with no lock held (lockdep.c) */
    }
    int r = ppoll(p, n, &ts, NULL);
    int perr = errno;
    if (pp->unlock)
        xdna_lock(&s->lock);
    if (r < 0 && perr != EINTR)
        return xdna_fail(ctx, perr, "poll: %s", strerror(perr));
    uint8_t fired[XDNA_MAX_VECTORS];
    memset(fired, 0, sizeof(fired));
    int rc = 0;
    if (r > 0) {
        if (p[SLOT_NOTIFY].revents & POLLIN)
            drain_fd(ctx->notify_fd);
        if (p[SLOT_WAKE].revents & POLLIN)
            drain_fd(s->wake_fd);
        if (p[SLOT_EXTRA].revents & POLLIN) {
            drain_fd(pp->extra_fd);
            pp->extra_ready = true;
        }
        for (nfds_t i = SLOT_VEC0; i < n; i++)
            if ((p[i].revents & POLLIN) && !direct_owned(s, vec_of[i])) {
                /* a vector a direct waiter claimed while we slept is its wake-up: kept */
                drain_fd(p[i].fd);
                fired[vec_of[i]] = 1;
            }
        rc = sock_verdict(ctx, p[SLOT_SOCK].revents);
    }
    if (pp->service) {
        struct xdna_err e;
        xdna_err_save(ctx, &e);
        service_channels(ctx, fired);
        s->events++;
        xdna_wake_all(ctx);
        if (rc < 0) /* the daemon's failure, not whatever servicing ran into */
            return xdna_err_restore(ctx, &e);
    }
    return rc;
}

static uint64_t left_ns(uint64_t now, uint64_t deadline)
{
    return deadline > now ? deadline - now : 0;
}

/* ---- the waits built on it ----------------------------------------------------------- */

static bool is_monitor(struct xdna_shim_ctx *ctx)
{
    return ctx->s.mon_running && pthread_equal(pthread_self(), ctx->s.mon);
}

/* The monitor thread's step: every event source, the lock dropped while blocked, then the
 * channels serviced and the waiters woken. */
int xdna_pump_monitor(struct xdna_shim_ctx *ctx, uint64_t deadline)
{
    uint64_t now;
    if (pump_due(ctx, deadline, &now) < 0)
        return -1;
    struct pump pp = {.extra_fd = -1, .wake = true, .vectors = true, .service = true,
                      .unlock = true};
    return pump_step(ctx, &pp, left_ns(now, deadline));
}

/* What the monitor thread would have received while this session made no call: a job's
 * completion the firmware signalled meanwhile retires the job (its runtime-PM reference
 * goes, so autosuspend may follow: docs/spec/jobs.md §6). */
int xdna_pump_virtual(struct xdna_shim_ctx *ctx)
{
    const struct xdna_drv_state *s = &ctx->s;
    if (!s->mon_virtual || s->in_housekeeping || xdna_daemon_gone(ctx))
        return 0;
    struct pump pp = {.extra_fd = -1, .sock_data = true, .vectors = true, .service = true};
    return pump_step(ctx, &pp, 0);
}

/* While the monitor runs it receives for everyone: a waiter sleeps until its next event
 * (the monitor itself pumps, when it waits inside TDR or runtime-PM work). */
static int monitor_wait(struct xdna_shim_ctx *ctx, uint64_t deadline)
{
    if (xdna_daemon_gone(ctx))
        return xdna_fail(ctx, EPIPE, "the daemon ended this session");
    if (is_monitor(ctx))
        return xdna_pump_monitor(ctx, deadline);
    if (xdna_cond_wait(ctx, deadline) < 0)
        return -1;
    if (xdna_daemon_gone(ctx))
        return xdna_fail(ctx, EPIPE, "the daemon ended this session");
    return 0;
}

/* Deterministic mode: the hook advances virtual time to the wake-up (no later than the
 * monitor's next duty), then one look at every source without blocking. The monitor's
 * work runs inline: its channel servicing here, its duties with hk. */
int xdna_hooked_step(struct xdna_shim_ctx *ctx, int extra_fd, uint64_t deadline,
                     bool *extra_ready, bool hk)
{
    struct xdna_drv_state *s = &ctx->s;
    const struct xdna_shim_hooks *h = xdna_hooks();
    uint64_t now;
    if (extra_ready)
        *extra_ready = false;
    if (pump_due(ctx, deadline, &now) < 0)
        return -1;
    uint64_t wake = deadline;
    hk = hk && s->mon_virtual && !s->in_housekeeping;
    if (hk) {
        uint64_t due = xdna_monitor_due(ctx, now);
        if (due < wake)
            wake = due;
    }
    if (h->wait(h->user, wake) < 0)
        return xdna_fail(ctx, EPIPE, "the wait hook gave up");
    struct pump pp = {.extra_fd = extra_fd, .sock_data = true, .vectors = s->mon_virtual,
                      .service = s->mon_virtual && !s->in_housekeeping};
    int rc = pump_step(ctx, &pp, 0);
    if (extra_ready)
        *extra_ready = pp.extra_ready;
    if (rc < 0)
        return -1;
    if (hk)
        xdna_monitor_housekeeping(ctx);
    return 0;
}

int xdna_wait_step(struct xdna_shim_ctx *ctx, int extra_fd, uint64_t deadline, bool *extra_ready)
{
    if (extra_ready)
        *extra_ready = false;
    if (ctx->s.mon_running)
        return monitor_wait(ctx, deadline);
    if (ctx->s.no_monitor && xdna_hooks())
        return xdna_hooked_step(ctx, extra_fd, deadline, extra_ready, true);
    /* before the monitor (the first probe): the caller is the only receiver */
    uint64_t now;
    if (pump_due(ctx, deadline, &now) < 0)
        return -1;
    struct pump pp = {.extra_fd = extra_fd, .sock_data = true};
    int rc = pump_step(ctx, &pp, left_ns(now, deadline));
    if (extra_ready)
        *extra_ready = pp.extra_ready;
    return rc;
}

int xdna_wait_log(struct xdna_shim_ctx *ctx, uint64_t deadline)
{
    if (ctx->s.no_monitor && xdna_hooks()) /* a message may be half written: no TDR here */
        return xdna_hooked_step(ctx, -1, deadline, NULL, false);
    if (!ctx->s.mon_running)
        return xdna_wait_step(ctx, -1, deadline, NULL);
    /* keep the lock (a message may be half written): short polls on notify, which the
     * daemon must then write even after a step that raised one of our vectors */
    uint64_t now;
    if (pump_due(ctx, deadline, &now) < 0)
        return -1;
    struct pump pp = {.extra_fd = -1};
    ctx->s.log_wait = true;
    xdna_irq_wakes_sync(ctx);
    int rc = pump_step(ctx, &pp, LOG_WAIT_SLICE_NS);
    ctx->s.log_wait = false;
    xdna_irq_wakes_sync(ctx);
    return rc;
}

int xdna_cond_wait(struct xdna_shim_ctx *ctx, uint64_t deadline)
{
    if (ctx->s.no_monitor && xdna_hooks()) /* no other thread will signal: run the device */
        return xdna_hooked_step(ctx, -1, deadline, NULL, true);
    if (deadline == UINT64_MAX) {
        xdna_cond_wait_raw(&ctx->s.cond, &ctx->s.lock);
        return 0;
    }
    if (xdna_now_ns() >= deadline) {
        errno = ETIME;
        return -1;
    }
    struct timespec ts = {.tv_sec = (time_t)(deadline / 1000000000u),
                          .tv_nsec = (long)(deadline % 1000000000u)};
    int r = xdna_cond_timedwait_raw(&ctx->s.cond, &ctx->s.lock, &ts);
    if (r == ETIMEDOUT && xdna_now_ns() >= deadline) {
        errno = ETIME;
        return -1;
    }
    return 0;
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

/* ---- direct waits (docs/spec/protocol.md, "Direct waits") ----------------------------- */

/* The channels whose answers raise vector vec, into out (at most 1 + XDNA_MAX_HWCTX): the
 * management channel and interrupt-driven user channels may share one, as the firmware
 * picks a context's vector by its id. Polled user channels raise none. */
static unsigned chans_of_vec(struct xdna_shim_ctx *ctx, unsigned vec, struct xdna_mbox_chan **out)
{
    unsigned n = 0;
    if (ctx->mgmt.active && ctx->mgmt.msix == vec)
        out[n++] = &ctx->mgmt;
    for (unsigned i = 0; i < XDNA_MAX_HWCTX; i++) {
        struct xdna_hwctx *hw = ctx->s.hw[i];
        if (hw && hw->chan.active && !hw->polled && !hw->umq_bo && hw->msix == vec)
            out[n++] = &hw->chan;
    }
    return n;
}

void xdna_direct_service(struct xdna_shim_ctx *ctx, unsigned vec, struct xdna_mbox_chan *done)
{
    xdna_hwctx_client_boot_check(ctx); /* a client's rings may be another firmware's now */
    struct xdna_mbox_chan *chs[1 + XDNA_MAX_HWCTX];
    unsigned n = chans_of_vec(ctx, vec, chs);
    for (unsigned i = 0; i < n; i++)
        if (chs[i] != done && ring_has_data(ctx, chs[i]))
            xdna_mbox_rx(ctx, chs[i]);
}

/* Some vector the monitor's current poll left out for a direct waiter has none now, and
 * an answer may still come there (its channel has messages pending, or it is not known):
 * that interrupt would wake nobody. A channel with nothing pending gets no answer until
 * it sends, and the send looks again (xdna_irq_wakes_sync in the mailbox's slot
 * allocation), before the request is published. */
static bool monitor_blind(struct xdna_shim_ctx *ctx)
{
    const struct xdna_drv_state *s = &ctx->s;
    for (unsigned i = 0; i < s->nmon_skip; i++) {
        unsigned v = s->mon_skip[i];
        if (direct_owned(s, v) || !s->vec_owned || v >= ctx->nvec || !s->vec_owned[v])
            continue;
        struct xdna_mbox_chan *chs[1 + XDNA_MAX_HWCTX];
        unsigned n = chans_of_vec(ctx, v, chs);
        if (n == 0)
            return true; /* not known: counted as waiting */
        for (unsigned k = 0; k < n; k++)
            if (chs[k]->npending)
                return true;
    }
    return false;
}

void xdna_irq_wakes_sync(struct xdna_shim_ctx *ctx)
{
    const struct xdna_drv_state *s = &ctx->s;
    xdna_set_irq_wakes(ctx, s->mon_running && !s->mon_stop && !s->log_wait && !monitor_blind(ctx));
}

void xdna_wake_all(struct xdna_shim_ctx *ctx)
{
    struct xdna_drv_state *s = &ctx->s;
    pthread_cond_broadcast(&s->cond);
    const pthread_t me = pthread_self();
    const uint64_t one = 1;
    for (unsigned i = 0; i < s->ndirect; i++) /* the shim may signal its own vectors too */
        if (!pthread_equal(s->direct[i].tid, me) &&
            write(ctx->irq_fds[s->direct[i].vec], &one, sizeof(one)) < 0)
            (void)one;
}

bool xdna_direct_claim(struct xdna_shim_ctx *ctx, unsigned vec)
{
    struct xdna_drv_state *s = &ctx->s;
#if defined(__x86_64__)
    if (!s->mon_running || s->mon_stop || is_monitor(ctx) || !ctx->ctrl || vec >= ctx->nvec ||
        !s->vec_owned || !s->vec_owned[vec] || ctx->irq_fds[vec] < 0 ||
        s->ndirect == XDNA_DIRECT_MAX || direct_owned(s, vec))
        return false;
    s->direct[s->ndirect].vec = vec;
    s->direct[s->ndirect].tid = pthread_self();
    s->ndirect++;
    ctx->info.direct_waits++;
    xdna_irq_wakes_sync(ctx); /* before the request goes out: its answer needs no notify */
    return true;
#else
    /* the release's handshake needs the daemon's eventfd write to be a full barrier,
     * which holds on x86-64 only (as for kick suppression) */
    (void)s;
    (void)vec;
    return false;
#endif
}

int xdna_direct_wait(struct xdna_shim_ctx *ctx, unsigned vec, uint64_t deadline)
{
    struct xdna_drv_state *s = &ctx->s;
    uint64_t now;
    if (pump_due(ctx, deadline, &now) < 0)
        return -1;
    uint64_t left = left_ns(now, deadline);
    /* Notify is the monitor's: what it announces for this channel (an answer on a masked
     * vector) reaches us through the monitor, which signals every direct waiter's vector
     * after each event (xdna_wake_all). Without a monitor, notify is polled here. */
    struct pollfd p[3] = {
        {.fd = ctx->irq_fds[vec], .events = POLLIN},
        {.fd = ctx->sock, .events = POLLRDHUP},
        {.fd = s->mon_running ? -1 : ctx->notify_fd, .events = POLLIN},
    };
    struct timespec ts = {.tv_sec = (time_t)(left / 1000000000u),
                          .tv_nsec = (long)(left % 1000000000u)};
    xdna_unlock(&s->lock);
    xdna_lockdep_blocking(); /* the waiter sleeps with no lock held (lockdep.c) */
    int r = ppoll(p, 3, &ts, NULL);
    int perr = errno;
    xdna_lock(&s->lock);
    if (r < 0 && perr != EINTR)
        return xdna_fail(ctx, perr, "poll: %s", strerror(perr));
    if (r <= 0)
        return 0;
    if (p[0].revents & POLLIN)
        drain_fd(p[0].fd);
    if (p[2].revents & POLLIN)
        drain_fd(p[2].fd);
    return sock_verdict(ctx, p[1].revents);
}

void xdna_direct_release(struct xdna_shim_ctx *ctx, unsigned vec)
{
    struct xdna_drv_state *s = &ctx->s;
    int i = direct_find(s, vec);
    if (i < 0)
        return;
    s->direct[i] = s->direct[--s->ndirect];
    /* The handshake with the daemon, which raises vectors, then reads irq_wakes to decide
     * on notify: we store irq_wakes (a full barrier), then look at the ring. Either the
     * daemon saw 0 and writes notify for the monitor, or we see the answer here. */
    xdna_irq_wakes_sync(ctx);
    if (monitor_blind(ctx)) {
        struct xdna_err e; /* the caller's result stands: a bad ring shows on the next call */
        xdna_err_save(ctx, &e);
        xdna_direct_service(ctx, vec, NULL);
        xdna_wake_all(ctx);
        xdna_err_restore(ctx, &e);
    }
}
