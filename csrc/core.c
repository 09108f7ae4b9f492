/* The shim's core: errors, the clock and deterministic-mode hooks, register access and the
 * write log of trapped writes (docs/spec/protocol.md "The write log"). */
#include "shim_int.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Failures of xdna_shim_open happen before a context exists; they land here. */
static __thread char tls_error[XDNA_ERR_MAX];

int xdna_fail(struct xdna_shim_ctx *ctx, int err, const char *fmt, ...)
{
    char msg[sizeof(tls_error)];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (ctx)
        memcpy(ctx->last_error, msg, sizeof(msg));
    memcpy(tls_error, msg, sizeof(msg)); /* also visible through xdna_shim_last_error(NULL) */
    errno = err;
    return -1;
}

void xdna_set_tls_error(int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tls_error, sizeof(tls_error), fmt, ap);
    va_end(ap);
    errno = err;
}

void xdna_err_save(struct xdna_shim_ctx *ctx, struct xdna_err *e)
{
    e->err = errno;
    memcpy(e->msg, ctx->last_error, sizeof(e->msg));
}

int xdna_err_restore(struct xdna_shim_ctx *ctx, const struct xdna_err *e)
{
    memcpy(ctx->last_error, e->msg, sizeof(e->msg));
    errno = e->err;
    return -1;
}

const char *xdna_shim_last_error(struct xdna_shim_ctx *ctx)
{
    (void)ctx; /* per thread: with several threads on one ctx, ctx->last_error is shared */
    return tls_error;
}

/* Deterministic mode: per-thread hooks (a copy) */
static __thread struct xdna_shim_hooks tls_hooks;
static __thread bool tls_hooked;

const struct xdna_shim_hooks *xdna_hooks(void)
{
    return tls_hooked ? &tls_hooks : NULL;
}

int xdna_shim_set_hooks(struct xdna_shim_ctx *ctx, const struct xdna_shim_hooks *hooks)
{
    if (hooks && (!hooks->now_ns || !hooks->wait)) {
        xdna_set_tls_error(EINVAL, "set_hooks: now_ns and wait are both required");
        return -1;
    }
    if (ctx) {
        if (xdna_api_enter(ctx) < 0)
            return -1;
        if (ctx->s.mon_running)
            return xdna_api_leave(ctx, xdna_fail(ctx, EBUSY, "set_hooks: the monitor runs"));
        ctx->s.no_monitor = hooks != NULL;
        xdna_api_leave(ctx, 0);
    }
    tls_hooked = hooks != NULL;
    if (hooks)
        tls_hooks = *hooks;
    return 0;
}

uint64_t xdna_now_ns(void)
{
    if (tls_hooked)
        return tls_hooks.now_ns(tls_hooks.user);
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t xdna_deadline(int ms)
{
    if (ms <= 0)
        ms = 1;
    return xdna_now_ns() + (uint64_t)ms * 1000000u;
}

/* ---- register access -------------------------------------------------------------- */

bool xdna_loc_ok(struct xdna_shim_ctx *ctx, struct xdna_loc loc, uint32_t len)
{
    if (loc.bar >= XDNA_NUM_BARS || !ctx->bars[loc.bar].va || (loc.off & 3))
        return false;
    uint64_t size = ctx->bars[loc.bar].size;
    return len <= size && loc.off <= size - len;
}

uint32_t xdna_rd(struct xdna_shim_ctx *ctx, struct xdna_loc loc)
{
    if (!xdna_loc_ok(ctx, loc, 4))
        return 0xFFFFFFFFu; /* like a read from an absent PCI BAR; callers range-check */
    return *(volatile uint32_t *)(ctx->bars[loc.bar].va + loc.off);
}

void xdna_wr(struct xdna_shim_ctx *ctx, struct xdna_loc loc, uint32_t val)
{
    if (!xdna_loc_ok(ctx, loc, 4))
        return;
    *(volatile uint32_t *)(ctx->bars[loc.bar].va + loc.off) = val;
}

struct xdna_loc xdna_role(struct xdna_shim_ctx *ctx, enum xdna_role role)
{
    const struct xdna_bar_off *r = &ctx->chip->roles[role];
    return (struct xdna_loc){.bar = r->valid ? r->bar : XDNA_NUM_BARS, .off = r->off};
}

int xdna_dev_loc(struct xdna_shim_ctx *ctx, uint64_t addr, uint32_t size, struct xdna_loc *loc,
                 const char *what)
{
    unsigned bar;
    uint32_t off;
    if (xdna_dev_to_bar(ctx->chip, addr, size, &bar, &off) < 0)
        return xdna_fail(ctx, EINVAL, "%s: device address %#llx (+%u) is in no BAR", what,
                         (unsigned long long)addr, size);
    struct xdna_loc l = {.bar = bar, .off = off};
    if (bar >= XDNA_NUM_BARS || !ctx->bars[bar].va || size > ctx->bars[bar].size ||
        off > ctx->bars[bar].size - size)
        return xdna_fail(ctx, EINVAL, "%s: device address %#llx is outside mapped BAR%u", what,
                         (unsigned long long)addr, bar);
    *loc = l;
    return 0;
}

static uint64_t ctrl_load64(struct xdna_shim_ctx *ctx, unsigned off)
{
    return __atomic_load_n((const uint64_t *)(ctx->ctrl + off), __ATOMIC_ACQUIRE);
}

uint32_t xdna_ctrl_get(struct xdna_shim_ctx *ctx, unsigned off)
{
    return ctx->ctrl ? __atomic_load_n((const uint32_t *)(ctx->ctrl + off), __ATOMIC_ACQUIRE) : 0;
}

/* A word of ours the daemon does not publish from (docs/spec/protocol.md, the ctrl page):
 * stored without the kick that makes the daemon take a step for it. */
void xdna_ctrl_store(struct xdna_shim_ctx *ctx, unsigned off, uint32_t val)
{
    if (ctx->ctrl)
        __atomic_store_n((uint32_t *)(ctx->ctrl + off), val, __ATOMIC_RELEASE);
}

void xdna_ctrl_set(struct xdna_shim_ctx *ctx, unsigned off, uint32_t val)
{
    if (!ctx->ctrl)
        return;
    __atomic_store_n((uint32_t *)(ctx->ctrl + off), val, __ATOMIC_RELEASE);
    uint64_t one = 1;
    if (write(ctx->kick_fd, &one, sizeof(one)) < 0)
        (void)one; /* a full or closed eventfd: the daemon looks at the page anyway */
}

int xdna_wr_trap(struct xdna_shim_ctx *ctx, struct xdna_loc loc, uint32_t val)
{
    if (!xdna_loc_ok(ctx, loc, 4))
        return xdna_fail(ctx, EINVAL, "trapped write outside BAR%u (+%#x)", loc.bar, loc.off);
    *(volatile uint32_t *)(ctx->bars[loc.bar].va + loc.off) = val;
    return xdna_wr_log(ctx, loc, val);
}

/* The daemon stores each logged value before running the side effect, and the mailbox
 * firmware re-reads a ring pointer register in its handler: a direct store of a newer x2i
 * tail could be consumed early and then be overwritten by an older logged value (the ring
 * pointer going backwards). Ring pointers therefore travel through the log only. */
/* How a logged write is kicked: not at all, through the eventfd its register picks (the
 * doorbell for a live doorbell), or always the daemon's Python loop. */
enum kick { KICK_NONE, KICK_AUTO, KICK_LOOP };

static int log_append(struct xdna_shim_ctx *ctx, struct xdna_loc loc, uint32_t val, enum kick kick);

int xdna_wr_log(struct xdna_shim_ctx *ctx, struct xdna_loc loc, uint32_t val)
{
    return log_append(ctx, loc, val, KICK_AUTO);
}

/* Logged, and kicked to the Python loop even for a live doorbell register: a message the
 * doorbell thread would only hand back (docs/spec/protocol.md "Doorbells"). */
int xdna_wr_log_loop(struct xdna_shim_ctx *ctx, struct xdna_loc loc, uint32_t val)
{
    return log_append(ctx, loc, val, KICK_LOOP);
}

/* Logged, not kicked: one of a batch whose last write kicks (the async event registrations,
 * docs/spec/protocol.md "Suppressed kicks and notifies"). A batch cut short by an error
 * kicks with xdna_log_kick, so no entry waits for a later kick. */
int xdna_wr_log_held(struct xdna_shim_ctx *ctx, struct xdna_loc loc, uint32_t val)
{
    return log_append(ctx, loc, val, KICK_NONE);
}

/* A trapped write whose side effect is not urgent (the i2x head: it only frees ring space,
 * and the firmware re-reads the head register when it has output to place): it is stored
 * and logged but not kicked. The daemon applies it with the next kick, and polls the logs
 * itself while any firmware output is waiting for space, so nothing stalls. */
int xdna_wr_trap_lazy(struct xdna_shim_ctx *ctx, struct xdna_loc loc, uint32_t val)
{
    if (!xdna_loc_ok(ctx, loc, 4))
        return xdna_fail(ctx, EINVAL, "trapped write outside BAR%u (+%#x)", loc.bar, loc.off);
    *(volatile uint32_t *)(ctx->bars[loc.bar].va + loc.off) = val;
    return log_append(ctx, loc, val, KICK_NONE);
}

/* The eventfd that kicks a logged write of loc: the doorbell eventfd for a live doorbell
 * register, whose write the daemon's C thread answers, else the kick eventfd that wakes the
 * daemon's Python loop (docs/spec/protocol.md "Doorbells"). */
static int kick_for(struct xdna_shim_ctx *ctx, struct xdna_loc loc)
{
    if (!ctx->bell_count || loc.bar != ctx->bell_bar || loc.off < ctx->bell_base)
        return ctx->kick_fd;
    uint32_t rel = loc.off - ctx->bell_base, i = rel / ctx->bell_stride;
    if (rel % ctx->bell_stride || i >= ctx->bell_count)
        return ctx->kick_fd;
    uint32_t live = __atomic_load_n((const uint32_t *)(ctx->ctrl + XDNA_PROTO_CTRL_OFF_DOORBELL_MASK),
                                    __ATOMIC_RELAXED);
    return live >> i & 1 ? ctx->bell_fd : ctx->kick_fd;
}

/* Kick the daemon through fd for the entries logged so far, unless it is still applying
 * the log: it reads head again before it sleeps (docs/spec/protocol.md, "Suppressed kicks
 * and notifies"). The fence orders the head store before the flag load, as the daemon
 * orders its flag clear before its head load. */
static int kick_through(struct xdna_shim_ctx *ctx, int fd)
{
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    if (__atomic_load_n((const uint32_t *)(ctx->ctrl + XDNA_PROTO_CTRL_OFF_DRAINING),
                        __ATOMIC_RELAXED) != 0) {
        ctx->info.kicks_saved++;
        return 0;
    }
    uint64_t one = 1;
    if (write(fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
        return xdna_fail(ctx, errno, "write log kick: %s", strerror(errno));
    return 0;
}

static int log_append(struct xdna_shim_ctx *ctx, struct xdna_loc loc, uint32_t val, enum kick kick)
{
    if (!xdna_loc_ok(ctx, loc, 4))
        return xdna_fail(ctx, EINVAL, "trapped write outside BAR%u (+%#x)", loc.bar, loc.off);
    if (!ctx->ctrl)
        return xdna_fail(ctx, ENODEV, "no write log attached");

    const uint32_t n = ctx->log_entries;
    uint64_t head = ctrl_load64(ctx, XDNA_PROTO_CTRL_OFF_HEAD);
    uint64_t deadline = 0;
    for (;;) {
        uint64_t tail = ctrl_load64(ctx, XDNA_PROTO_CTRL_OFF_TAIL);
        if (tail > head)
            return xdna_fail(ctx, EPROTO, "write log: daemon tail %llu is past head %llu",
                             (unsigned long long)tail, (unsigned long long)head);
        if (head - tail < n)
            break;
        /* log full: kick and block on notify until the daemon applies entries */
        uint64_t one = 1;
        if (write(ctx->kick_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
            return xdna_fail(ctx, errno, "write log kick: %s", strerror(errno));
        if (!deadline)
            deadline = xdna_deadline(ctx->timeouts[XDNA_SHIM_TIMEOUT_CONTROL]);
        if (xdna_wait_log(ctx, deadline) < 0) {
            if (errno == ETIME)
                return xdna_fail(ctx, ETIME, "write log stayed full");
            return -1;
        }
    }
    struct xdna_proto_log_entry *e =
        (struct xdna_proto_log_entry *)(ctx->ctrl + XDNA_PROTO_CTRL_OFF_ENTRY0 +
                                        (head % n) * XDNA_PROTO_LOG_ENTRY_SIZE);
    e->bar = loc.bar;
    e->offset = loc.off;
    e->value = val;
    e->rsvd = 0;
    __atomic_store_n((uint64_t *)(ctx->ctrl + XDNA_PROTO_CTRL_OFF_HEAD), head + 1,
                     __ATOMIC_RELEASE);
    ctx->info.trapped_writes++;
    if (kick == KICK_NONE)
        return 0;
    return kick_through(ctx, kick == KICK_LOOP ? ctx->kick_fd : kick_for(ctx, loc));
}

int xdna_log_kick(struct xdna_shim_ctx *ctx)
{
    if (!ctx->ctrl)
        return xdna_fail(ctx, ENODEV, "no write log attached");
    return kick_through(ctx, ctx->kick_fd);
}

static bool is_trapped(struct xdna_shim_ctx *ctx, struct xdna_loc loc)
{
    const struct xdna_chip_desc *c = ctx->chip;
    for (unsigned i = 0; i < c->ntraps; i++)
        if (c->traps[i].bar == loc.bar && c->traps[i].off == loc.off)
            return true;
    if (c->mbox.present && loc.bar == c->mbox.bar && loc.off >= c->mbox.base_off) {
        uint64_t rel = loc.off - c->mbox.base_off;
        if (c->mbox.stride && rel / c->mbox.stride < c->mbox.channels) {
            uint32_t f = (uint32_t)(rel % c->mbox.stride);
            if (f == c->mbox.x2i_tail || f == c->mbox.i2x_head)
                return true;
        }
    }
    const struct xdna_bar_off *db = &c->doorbells; /* AIE4 doorbell pages */
    if (db->valid && loc.bar == db->bar && loc.off >= db->off && c->doorbell_stride &&
        (loc.off - db->off) % c->doorbell_stride == 0 &&
        (loc.off - db->off) / c->doorbell_stride < c->ndoorbells)
        return true;
    if (ctx->nvec && loc.bar == ctx->msix_table.bar && loc.off >= ctx->msix_table.off &&
        (uint64_t)loc.off < (uint64_t)ctx->msix_table.off + 16ull * ctx->nvec)
        return true;
    return false;
}

int xdna_wr_auto(struct xdna_shim_ctx *ctx, struct xdna_loc loc, uint32_t val)
{
    if (is_trapped(ctx, loc))
        return xdna_wr_trap(ctx, loc, val);
    if (!xdna_loc_ok(ctx, loc, 4))
        return xdna_fail(ctx, EINVAL, "write outside BAR%u (+%#x)", loc.bar, loc.off);
    xdna_wr(ctx, loc, val);
    return 0;
}

int xdna_wr_auto_lazy(struct xdna_shim_ctx *ctx, struct xdna_loc loc, uint32_t val)
{
    if (is_trapped(ctx, loc))
        return xdna_wr_trap_lazy(ctx, loc, val);
    return xdna_wr_auto(ctx, loc, val);
}

/* ---- public register API ----------------------------------------------------------- */

static int check_ctx(struct xdna_shim_ctx *ctx)
{
    if (!ctx) {
        xdna_set_tls_error(EBADF, "no context");
        return -1;
    }
    return 0;
}

int xdna_readl_unlocked(struct xdna_shim_ctx *ctx, unsigned bar, uint32_t off, uint32_t *val)
{
    if (check_ctx(ctx) < 0)
        return -1;
    struct xdna_loc loc = {.bar = bar, .off = off};
    if (!val || !xdna_loc_ok(ctx, loc, 4))
        return xdna_fail(ctx, EINVAL, "readl: BAR%u+%#x is not a mapped, aligned word", bar, off);
    *val = xdna_rd(ctx, loc);
    return 0;
}

int xdna_writel_unlocked(struct xdna_shim_ctx *ctx, unsigned bar, uint32_t off, uint32_t val)
{
    if (check_ctx(ctx) < 0)
        return -1;
    struct xdna_loc loc = {.bar = bar, .off = off};
    if (!xdna_loc_ok(ctx, loc, 4))
        return xdna_fail(ctx, EINVAL, "writel: BAR%u+%#x is not a mapped, aligned word", bar, off);
    return xdna_wr_auto(ctx, loc, val);
}

int xdna_set_timeout_unlocked(struct xdna_shim_ctx *ctx, int which, int ms)
{
    if (check_ctx(ctx) < 0)
        return -1;
    if (which < 0 || which > XDNA_SHIM_TIMEOUT_CONTROL || ms <= 0)
        return xdna_fail(ctx, EINVAL, "set_timeout: bad selector %d or value %d", which, ms);
    ctx->timeouts[which] = ms;
    return 0;
}

int xdna_get_info_unlocked(struct xdna_shim_ctx *ctx, struct xdna_shim_info *info)
{
    if (check_ctx(ctx) < 0)
        return -1;
    if (!info)
        return xdna_fail(ctx, EINVAL, "get_info: NULL info");
    ctx->info.state = ctx->state;
    ctx->info.async_pending = 0;
    if (ctx->mgmt.active)
        for (unsigned i = 0; i < MBOX_MAX_IDS; i++)
            if (ctx->mgmt.pend[i].in_use && ctx->mgmt.pend[i].async)
                ctx->info.async_pending++;
    *info = ctx->info;
    return 0;
}
