/* Async error events: one buffer per column registered with REGISTER_ASYNC_EVENT_MSG, each
 * reply decoded into the last async error and registered again (docs/spec/jobs.md §6); the
 * driver's aie2_error.c counterpart. */
#include "shim_int.h"

#include <string.h>
#include <time.h>

#define MSG_REGISTER_ASYNC_EVENT_MSG 0x10C

int xdna_async_events_start(struct xdna_shim_ctx *ctx)
{
    uint32_t n = ctx->info.total_col;
    if (ctx->async_buf.mapped)
        xdna_dma_unmap(ctx, &ctx->async_buf);
    xdna_dma_free(&ctx->async_buf);
    if (xdna_dma_alloc(ctx, &ctx->async_buf, (size_t)n * ASYNC_BUF_SIZE,
                       XDNA_PROTO_DMA_READ | XDNA_PROTO_DMA_WRITE, "xdna-async") < 0 ||
        xdna_dma_map(ctx, &ctx->async_buf) < 0)
        return -1;
    for (uint32_t i = 0; i < n; i++) {
        uint8_t req[12];
        uint64_t addr = ctx->async_buf.iova + (uint64_t)i * ASYNC_BUF_SIZE;
        uint32_t size = ASYNC_BUF_SIZE;
        memcpy(req, &addr, 8);
        memcpy(req + 8, &size, 4);
        (void)req;
        if (xdna_async_post(ctx, i) < 0) /* decoded and re-registered on each reply */
            return -1;
    }
    return 0;
}

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
