/* Async error events: one buffer per column registered with REGISTER_ASYNC_EVENT_MSG, each
 * reply decoded into the last async error and registered again (docs/spec/jobs.md §6); the
 * driver's aie2_error.c counterpart. */
#include "shim_int.h"

#include <string.h>
#include <time.h>

#define EVENT_BUF XDNA_AIE2_ASYNC_EVENT_BUF_SIZE

/* The category of one AIE error: the module's event table (memory-module events of the
 * memory-tile row use the memory-tile table). */
uint32_t xdna_aie_error_category(uint32_t row, uint32_t event_id, uint32_t mod_type)
{
    const uint32_t unknown = XDNA_AIE2_AIE_ERR_CAT_UNKNOWN;
    switch (mod_type) {
    case XDNA_AIE2_AIE_MOD_PL: return xdna_aie2_shim_event_category(event_id, unknown);
    case XDNA_AIE2_AIE_MOD_CORE: return xdna_aie2_core_event_category(event_id, unknown);
    case XDNA_AIE2_AIE_MOD_MEM:
        return row == XDNA_AIE2_AIE_MEM_TILE_ROW ? xdna_aie2_mem_tile_event_category(event_id, unknown)
                                                 : xdna_aie2_mem_event_category(event_id, unknown);
    default: return unknown;
    }
}

/* The driver's cached error code: the category's number, driver AIE, CRITICAL, the
 * module's XRT module, class AIE. */
uint64_t xdna_aie_error_code(uint32_t category, uint32_t mod_type)
{
    uint64_t num = xdna_aie2_category_xrt_num(category, XDNA_AIE2_XRT_NUM_UNKNOWN);
    uint64_t mod = xdna_aie2_module_xrt_module(mod_type, XDNA_AIE2_XRT_MOD_UNKNOWN);
    return (num & 0xFFFF) << XDNA_AIE2_XRT_NUM_SHIFT |
           (uint64_t)(XDNA_AIE2_XRT_DRIVER_AIE & 0xF) << XDNA_AIE2_XRT_DRIVER_SHIFT |
           (uint64_t)(XDNA_AIE2_XRT_SEV_CRITICAL & 0xF) << XDNA_AIE2_XRT_SEVERITY_SHIFT |
           (mod & 0xF) << XDNA_AIE2_XRT_MODULE_SHIFT |
           (uint64_t)(XDNA_AIE2_XRT_CLASS_AIE & 0xF) << XDNA_AIE2_XRT_CLASS_SHIFT;
}

int xdna_async_bufs_start(struct xdna_shim_ctx *ctx, size_t event_buf,
                          int (*post)(struct xdna_shim_ctx *ctx, unsigned idx))
{
    uint32_t n = ctx->info.total_col;
    if (ctx->async_buf.mapped)
        xdna_dma_unmap(ctx, &ctx->async_buf);
    xdna_dma_free(&ctx->async_buf);
    if (n == 0)
        return 0;
    if (xdna_dma_alloc(ctx, &ctx->async_buf, (size_t)n * event_buf,
                       XDNA_PROTO_DMA_READ | XDNA_PROTO_DMA_WRITE, "xdna-async") < 0 ||
        xdna_dma_map(ctx, &ctx->async_buf) < 0)
        return -1;
    /* Each registration's tail write is logged in order, as the driver writes it, and only
     * the last one kicks: the daemon applies the batch in one step, not one per column
     * (docs/spec/protocol.md, "Suppressed kicks and notifies"). A batch cut short kicks for
     * what it logged. Each reply is decoded and registered again (the family's callback). */
    int rc = 0;
    for (uint32_t i = 0; i < n && rc == 0; i++) {
        ctx->mgmt.hold_kicks = i + 1 < n;
        rc = post(ctx, i);
    }
    ctx->mgmt.hold_kicks = false;
    if (rc < 0 && ctx->ctrl) {
        struct xdna_err e;
        xdna_err_save(ctx, &e);
        xdna_log_kick(ctx);
        return xdna_err_restore(ctx, &e);
    }
    return rc;
}

int xdna_async_events_start(struct xdna_shim_ctx *ctx)
{
    return xdna_async_bufs_start(ctx, EVENT_BUF, xdna_async_post);
}

static void async_cb(struct xdna_shim_ctx *ctx, void *arg, int err, const uint8_t *resp,
                     size_t len)
{
    unsigned idx = (unsigned)(uintptr_t)arg;
    xdna_aie2_register_async_event_msg_resp_t r;
    if (err || !resp || len < sizeof(r))
        return; /* the channel went away (stop/suspend): nothing to re-register */
    memcpy(&r, resp, sizeof(r));
    struct xdna_shim_async_error *a = &ctx->s.async;
    const uint8_t *b = ctx->async_buf.va;
    if (r.status == 0 && b && (size_t)(idx + 1) * EVENT_BUF <= ctx->async_buf.size) {
        b += (size_t)idx * EVENT_BUF;
        struct xdna_aie2_async_event_hdr h;
        memcpy(&h, b, sizeof(h));
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        a->count++;
        a->ts_ns = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
        a->type = r.type;
        a->err_cnt = h.err_cnt;
        a->ret_code = h.ret_code;
        if (h.err_cnt > 0 &&
            h.err_cnt <= (EVENT_BUF - sizeof(h)) / sizeof(struct xdna_aie2_aie_error)) {
            struct xdna_aie2_aie_error e; /* the last entry, as the driver caches it */
            memcpy(&e, b + sizeof(h) + (size_t)(h.err_cnt - 1) * sizeof(e), sizeof(e));
            a->row = e.row;
            a->col = e.col;
            a->mod_type = e.mod_type;
            a->event_id = e.event_id;
            a->category = xdna_aie_error_category(e.row, e.event_id, e.mod_type);
            a->err_code = xdna_aie_error_code(a->category, e.mod_type);
        }
    }
    if (idx < sizeof(ctx->s.async_repost) && xdna_async_post(ctx, idx) < 0)
        ctx->s.async_repost[idx] = 1; /* retried from the monitor */
    xdna_wake_all(ctx);
}

int xdna_async_post(struct xdna_shim_ctx *ctx, unsigned idx)
{
    xdna_aie2_register_async_event_msg_req_t req = {
        .buf_addr = ctx->async_buf.iova + (uint64_t)idx * EVENT_BUF,
        .buf_size = EVENT_BUF,
    };
    return xdna_mbox_post_cb(ctx, &ctx->mgmt, XDNA_AIE2_MSG_REGISTER_ASYNC_EVENT_MSG, &req,
                             sizeof(req), XDNA_AIE2_MSG_REGISTER_ASYNC_EVENT_MSG_RESP_SIZE, false,
                             async_cb, (void *)(uintptr_t)idx);
}
