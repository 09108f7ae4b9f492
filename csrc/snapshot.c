/* A snapshot of a probed driver context, for the shim fuzz target (docs/spec/fuzzing.md §9).
 *
 * In deterministic mode the daemon, the device and this context share one process, and an
 * example of the fuzz target starts with a probe. Instead of a fresh device and a new probe
 * per example, the target saves the context once after the probe and restores it before
 * each example, while it restores the device (PciFunction.restore), the daemon's session and
 * the eventfd counters itself. What a probe sets lives in plain fields of the context (the
 * management channel's cursors and ids, the control-socket message id, firmware version and
 * info, timeouts, PM and TDR state), so the snapshot is a copy of the context; what an
 * example adds (contexts, BOs, the heap, firmware-log rings, the health buffer) is freed
 * here without a word to the daemon: the device's restore drops their mappings. The
 * probe's DMA buffers (firmware image, async events, AIE4 cert and work buffers) a stop or
 * suspend frees and a resume allocates anew: the snapshot keeps a descriptor on each one's
 * memfd, and the restore frees the new one and maps the old one again (the caller keeps the
 * daemon's view of it and maps it for the device again, at its IOVA). What the probe
 * made and no example replaces (the socket, BAR and ctrl mappings, MSI-X eventfds) must
 * still be the snapshot's, else the restore refuses (ESTALE) and the caller starts from a
 * fresh device.
 */
#include "shim_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

struct xdna_shim_snapshot {
    struct xdna_shim_ctx c; /* every field as the probe left it */
    int *irq_fds;           /* the vector eventfds then (c.nvec of them) ... */
    uint8_t *vec_owned;     /* ... and which vectors the session owned */
    /* the counters of every eventfd the context holds: wake-up, kick, notify, doorbell,
     * then one per vector (the daemon's descriptors share the same files) */
    eventfd_t *counts;
    /* the probe's DMA buffers: a descriptor of the snapshot's own on each memfd (-1: none),
     * and the one the context holds now (a restore may have mapped it again) */
    int buf_fd[4], live_fd[4];
    void *live_va[4];
};

static struct xdna_dma_buf *probe_buf(struct xdna_shim_ctx *ctx, unsigned i)
{
    struct xdna_dma_buf *bufs[4] = {&ctx->fw, &ctx->async_buf, &ctx->cert, &ctx->work_buf};
    return bufs[i];
}

#define SNAP_FIXED_FDS 4

static int count_fd(const struct xdna_shim_ctx *ctx, unsigned i)
{
    switch (i) {
    case 0: return ctx->s.wake_fd;
    case 1: return ctx->kick_fd;
    case 2: return ctx->notify_fd;
    case 3: return ctx->bell_fd;
    default: return ctx->irq_fds[i - SNAP_FIXED_FDS];
    }
}

/* An eventfd's counter, taken (it reads as 0 afterwards; EFD_NONBLOCK: 0 when none). */
static eventfd_t take_count(int fd)
{
    eventfd_t v = 0;
    if (fd >= 0 && eventfd_read(fd, &v) < 0)
        v = 0;
    return v;
}

static bool same_buf(const struct xdna_dma_buf *a, const struct xdna_dma_buf *b)
{
    return a->fd == b->fd && a->va == b->va && a->size == b->size && a->iova == b->iova &&
           a->flags == b->flags && a->mapped == b->mapped;
}

/* Nothing an example adds is alive: the snapshot then needs no copy of such objects. */
static int check_bare(struct xdna_shim_ctx *ctx)
{
    const struct xdna_drv_state *s = &ctx->s;
    if (!s->no_monitor || s->mon_running || s->client || ctx->state != XDNA_SHIM_STATE_PROBED)
        return xdna_fail(ctx, EBUSY, "snapshot: not a probed driver session in deterministic mode");
    if (s->dev_busy || s->in_housekeeping || ctx->sock_dead)
        return xdna_fail(ctx, EBUSY, "snapshot: a device sequence is in flight");
    /* the posted async-event messages stay pending (their callbacks, ids and responses live
     * in the context, their buffers in the async buffer, which a restore puts back); a
     * caller's wait must not */
    for (unsigned i = 0; i < MBOX_MAX_IDS; i++)
        if (ctx->mgmt.pend[i].in_use && !ctx->mgmt.pend[i].async)
            return xdna_fail(ctx, EBUSY, "snapshot: management message %u is awaited", i);
    if (xdna_hwctx_live(ctx) || s->nheap || s->heap_base || s->health_buf.fd >= 0 ||
        ctx->dpt[0].enabled || ctx->dpt[1].enabled)
        return xdna_fail(ctx, EBUSY, "snapshot: contexts, a heap or debug buffers exist");
    for (unsigned i = 0; i < XDNA_MAX_HWCTX; i++)
        if (s->hw[i])
            return xdna_fail(ctx, EBUSY, "snapshot: context %u exists", s->hw[i]->handle);
    for (unsigned i = 0; i < XDNA_MAX_BOS; i++)
        if (s->bos[i])
            return xdna_fail(ctx, EBUSY, "snapshot: BO %u exists", i + 1);
    return 0;
}

struct xdna_shim_snapshot *xdna_shim_snapshot_save(struct xdna_shim_ctx *ctx)
{
    if (xdna_api_enter(ctx) < 0)
        return NULL;
    struct xdna_shim_snapshot *snap = NULL;
    if (check_bare(ctx) < 0)
        goto fail;
    snap = calloc(1, sizeof(*snap));
    if (!snap) {
        xdna_fail(ctx, ENOMEM, "snapshot: out of memory");
        goto fail;
    }
    for (unsigned i = 0; i < 4; i++)
        snap->buf_fd[i] = -1;
    snap->c = *ctx;
    unsigned n = ctx->nvec ? ctx->nvec : 1;
    snap->irq_fds = calloc(n, sizeof(int));
    snap->vec_owned = calloc(n, 1);
    snap->counts = calloc(SNAP_FIXED_FDS + ctx->nvec, sizeof(eventfd_t));
    if (!snap->irq_fds || !snap->vec_owned || !snap->counts) {
        xdna_fail(ctx, ENOMEM, "snapshot: out of memory");
        goto free_snap;
    }
    if (ctx->nvec) {
        memcpy(snap->irq_fds, ctx->irq_fds, ctx->nvec * sizeof(int));
        if (ctx->s.vec_owned)
            memcpy(snap->vec_owned, ctx->s.vec_owned, ctx->nvec);
    }
    for (unsigned i = 0; i < 4; i++) {
        const struct xdna_dma_buf *b = probe_buf(ctx, i);
        snap->live_fd[i] = b->fd;
        snap->live_va[i] = b->va;
        snap->buf_fd[i] = b->fd >= 0 ? fcntl(b->fd, F_DUPFD_CLOEXEC, 0) : -1;
        if (b->fd >= 0 && snap->buf_fd[i] < 0) {
            xdna_fail(ctx, errno, "snapshot: dup of a DMA buffer: %s", strerror(errno));
            goto free_snap;
        }
    }
    for (unsigned i = 0; i < SNAP_FIXED_FDS + ctx->nvec; i++) { /* read, and put back */
        int fd = count_fd(ctx, i);
        snap->counts[i] = take_count(fd);
        if (snap->counts[i])
            eventfd_write(fd, snap->counts[i]);
    }
    xdna_unlock(&ctx->s.lock);
    return snap;

free_snap: /* the failure is recorded: keep its errno over the frees */
    {
        int err = errno;
        xdna_shim_snapshot_free(snap);
        errno = err;
    }
fail:
    xdna_api_unlock(ctx, -1);
    return NULL;
}

/* Is the transport the probe set up still the one the snapshot names? */
static bool same_transport(const struct xdna_shim_ctx *ctx, const struct xdna_shim_snapshot *snap)
{
    const struct xdna_shim_ctx *c = &snap->c;
    if (ctx->sock != c->sock || ctx->sock_dead || ctx->ctrl != c->ctrl ||
        ctx->kick_fd != c->kick_fd || ctx->notify_fd != c->notify_fd ||
        ctx->bell_fd != c->bell_fd || ctx->chip != c->chip || ctx->s.client ||
        ctx->nvec != c->nvec || ctx->irq_fds != c->irq_fds ||
        (ctx->nvec && (!ctx->s.vec_owned ||
                       memcmp(ctx->irq_fds, snap->irq_fds, ctx->nvec * sizeof(int)))) ||
        ctx->s.vec_owned != c->s.vec_owned || ctx->s.bos != c->s.bos ||
        ctx->s.wake_fd != c->s.wake_fd)
        return false;
    for (unsigned i = 0; i < XDNA_NUM_BARS; i++)
        if (ctx->bars[i].va != c->bars[i].va || ctx->bars[i].size != c->bars[i].size)
            return false;
    return true;
}

/* Is the context's buffer i the snapshot's, as it holds it now? */
static bool buf_kept(struct xdna_shim_ctx *ctx, const struct xdna_shim_snapshot *snap, unsigned i)
{
    struct xdna_dma_buf want = *probe_buf((struct xdna_shim_ctx *)&snap->c, i);
    want.fd = snap->live_fd[i];
    want.va = snap->live_va[i];
    return same_buf(probe_buf(ctx, i), &want);
}

/* Buffer i as the snapshot has it: the context's own (a resume's) freed, the snapshot's
 * memfd mapped again (anywhere: the context reads its address from the buffer each time,
 * and the device knows it by its IOVA, which is the snapshot's); -1 when that fails (the
 * buffer is then gone from the context). */
static int buf_back(struct xdna_shim_ctx *ctx, struct xdna_shim_snapshot *snap, unsigned i)
{
    struct xdna_dma_buf *b = probe_buf(ctx, i);
    const struct xdna_dma_buf *want = probe_buf(&snap->c, i);
    if (buf_kept(ctx, snap, i))
        return 0;
    xdna_dma_free(b);
    if (snap->buf_fd[i] < 0)
        return 0;
    int fd = fcntl(snap->buf_fd[i], F_DUPFD_CLOEXEC, 0);
    if (fd < 0)
        return xdna_fail(ctx, errno, "snapshot_restore: dup: %s", strerror(errno));
    void *va = mmap(NULL, want->size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (va == MAP_FAILED) {
        int err = errno;
        close(fd);
        return xdna_fail(ctx, ESTALE, "snapshot_restore: mmap of a DMA buffer: %s", strerror(err));
    }
    *b = *want;
    b->fd = snap->live_fd[i] = fd;
    b->va = snap->live_va[i] = va;
    return 0;
}

int xdna_shim_snapshot_restore(struct xdna_shim_ctx *ctx, struct xdna_shim_snapshot *snap)
{
    if (xdna_api_enter(ctx) < 0)
        return -1;
    int rc = 0;
    if (!snap) {
        rc = xdna_fail(ctx, EINVAL, "snapshot_restore: no snapshot");
        goto out;
    }
    if (!same_transport(ctx, snap) || ctx->s.dev_busy || ctx->s.in_housekeeping) {
        rc = xdna_fail(ctx, ESTALE, "snapshot_restore: the transport changed since the snapshot");
        goto out;
    }
    /* what the example added goes without a message: the device's restore drops the
     * daemon's side of it (mappings, firmware contexts) */
    ctx->sock_dead = true;
    xdna_hwctx_forget_all(ctx);
    xdna_bo_free_all(ctx);
    xdna_dpt_free(ctx);
    xdna_dma_free(&ctx->s.health_buf);
    struct xdna_dma_buf bufs[4];
    for (unsigned i = 0; i < 4; i++) {
        if (buf_back(ctx, snap, i) < 0) { /* fit only for close: a fresh device follows */
            rc = -1;
            goto out;
        }
        bufs[i] = *probe_buf(ctx, i);
    }
    /* every field back, but the lock, the condition and the tables the context allocated
     * (the same objects: their contents are the snapshot's again) */
    struct xdna_drv_state live = ctx->s;
    *ctx = snap->c;
    ctx->s.lock = live.lock;
    ctx->s.cond = live.cond;
    ctx->s.mon = live.mon;
    for (unsigned i = 0; i < 4; i++) /* the snapshot's, maybe on another descriptor */
        *probe_buf(ctx, i) = bufs[i];
    if (ctx->nvec && ctx->s.vec_owned)
        memcpy(ctx->s.vec_owned, snap->vec_owned, ctx->nvec);
    for (unsigned i = 0; i < SNAP_FIXED_FDS + ctx->nvec; i++) {
        int fd = count_fd(ctx, i);
        take_count(fd); /* what an example left goes, the snapshot's count is back */
        if (snap->counts[i])
            eventfd_write(fd, snap->counts[i]);
    }
out: /* no PM publish (xdna_api_leave): the caller puts the ctrl page back */
    return xdna_api_unlock(ctx, rc);
}

void xdna_shim_snapshot_free(struct xdna_shim_snapshot *snap)
{
    if (!snap)
        return;
    free(snap->irq_fds);
    free(snap->vec_owned);
    free(snap->counts);
    for (unsigned i = 0; i < 4; i++)
        if (snap->buf_fd[i] >= 0)
            close(snap->buf_fd[i]);
    free(snap);
}
