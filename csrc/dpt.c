/* Firmware log and trace: the DMA rings the management firmware fills (docs/spec/uapi.md §6
 * "Firmware log and trace", docs/spec/firmware.md §8a); the driver's amdxdna_dpt.c and its
 * AIE2 half. Both start off (the driver's default log level and categories are 0); a root
 * SET_FW_LOG_STATE / SET_FW_TRACE_STATE starts, changes or stops one. The firmware reports
 * no MSI for its rings, so readers poll the footer's tail, as the driver does then. */
#include "shim_int.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#define LOG_LEVEL_DEFAULT XDNA_AIE2_FW_LOG_LEVEL_ERROR /* an enable without a level */
#define TRACE_CATEGORIES_DEFAULT 0xFFFFFFFFu          /* an enable without categories */

static const enum xdna_feature FEATURE[2] = {XDNA_FEAT_CONFIG_FW_LOG, XDNA_FEAT_START_FW_TRACE};
static const char *const NAME[2] = {"xdna-fw-log", "xdna-fw-trace"};

static int log_level(struct xdna_shim_ctx *ctx, uint32_t level)
{
    return xdna_set_runtime_config(ctx, XDNA_AIE2_RT_LOG_LEVEL, level);
}

/* The firmware side of a start: CONFIG_FW_LOG with the log settings, or START_FW_TRACE. */
static int fw_start(struct xdna_shim_ctx *ctx, int which, struct xdna_dpt *d, uint32_t config)
{
    if (which == XDNA_SHIM_DPT_LOG) {
        xdna_aie2_config_fw_log_req_t req = {.buf_addr = d->buf.iova, .buf_size = (uint32_t)d->buf.size};
        xdna_aie2_config_fw_log_resp_t r;
        if (xdna_fw_req(ctx, XDNA_AIE2_MSG_CONFIG_FW_LOG, &req, sizeof(req), &r, sizeof(r)) < 0 ||
            log_level(ctx, config) < 0 ||
            xdna_set_runtime_config(ctx, XDNA_AIE2_RT_LOG_FORMAT, XDNA_AIE2_FW_LOG_FORMAT_FULL) < 0 ||
            xdna_set_runtime_config(ctx, XDNA_AIE2_RT_LOG_DESTINATION, XDNA_AIE2_FW_LOG_DEST_DRAM) < 0)
            return -1;
        return 0;
    }
    xdna_aie2_start_fw_trace_req_t req = {
        .categories = config, .dest = XDNA_AIE2_FW_TRACE_DEST_DRAM,
        .timestamp = XDNA_AIE2_FW_TRACE_TS_FW_CHRONO, .buf_addr = d->buf.iova,
        .buf_size = (uint32_t)d->buf.size};
    xdna_aie2_start_fw_trace_resp_t r;
    return xdna_fw_req(ctx, XDNA_AIE2_MSG_START_FW_TRACE, &req, sizeof(req), &r, sizeof(r));
}

static int fw_stop(struct xdna_shim_ctx *ctx, int which)
{
    if (which == XDNA_SHIM_DPT_LOG) {
        xdna_aie2_config_fw_log_req_t req = {0}; /* size 0: detach */
        xdna_aie2_config_fw_log_resp_t r;
        if (xdna_set_runtime_config(ctx, XDNA_AIE2_RT_LOG_DESTINATION, XDNA_AIE2_FW_LOG_DEST_FIXED) < 0)
            return -1;
        return xdna_fw_req(ctx, XDNA_AIE2_MSG_CONFIG_FW_LOG, &req, sizeof(req), &r, sizeof(r));
    }
    xdna_aie2_stop_fw_trace_req_t req = {0};
    return xdna_fw_req(ctx, XDNA_AIE2_MSG_STOP_FW_TRACE, &req, sizeof(req), NULL, 0);
}

static void dpt_release(struct xdna_shim_ctx *ctx, struct xdna_dpt *d)
{
    if (d->buf.mapped)
        xdna_dma_unmap(ctx, &d->buf);
    xdna_dma_free(&d->buf);
    d->buf.fd = -1;
    d->enabled = false;
}

/* Start: a zeroed ring of the driver's default size, mapped for the device, handed over. */
static int dpt_start(struct xdna_shim_ctx *ctx, int which, uint32_t config)
{
    struct xdna_dpt *d = &ctx->dpt[which];
    if (!xdna_has_feature(ctx, FEATURE[which]))
        return 0; /* the driver's silent failure on a firmware without it: stays off */
    if (xdna_dma_alloc(ctx, &d->buf, XDNA_AIE2_DPT_BUF_MAX, XDNA_PROTO_DMA_READ | XDNA_PROTO_DMA_WRITE,
                       NAME[which]) < 0)
        return -1;
    if (xdna_dma_map(ctx, &d->buf) < 0)
        goto free_buf;
    if (fw_start(ctx, which, d, config) < 0)
        goto free_buf;
    d->enabled = true;
    d->config = config;
    return 0;

free_buf: {
        struct xdna_err e;
        xdna_err_save(ctx, &e);
        dpt_release(ctx, d);
        return xdna_err_restore(ctx, &e);
    }
}

static int dpt_set(struct xdna_shim_ctx *ctx, int which, uint32_t action, uint32_t config)
{
    struct xdna_dpt *d = &ctx->dpt[which];
    if (!action) {
        int rc = d->enabled ? fw_stop(ctx, which) : 0;
        if (d->enabled)
            dpt_release(ctx, d);
        d->config = 0;
        return rc;
    }
    if (!config)
        config = which == XDNA_SHIM_DPT_LOG ? LOG_LEVEL_DEFAULT : TRACE_CATEGORIES_DEFAULT;
    if (!d->enabled)
        return dpt_start(ctx, which, config);
    if (config == d->config)
        return 0;
    int rc;
    if (which == XDNA_SHIM_DPT_LOG) {
        rc = log_level(ctx, config);
    } else {
        xdna_aie2_set_fw_trace_categories_req_t req = {.categories = config};
        rc = xdna_fw_req(ctx, XDNA_AIE2_MSG_SET_FW_TRACE_CATEGORIES, &req, sizeof(req), NULL, 0);
    }
    if (rc == 0)
        d->config = config;
    return rc;
}

int xdna_shim_dpt_set(struct xdna_shim_ctx *ctx, int which, uint32_t action, uint32_t config)
{
    if (xdna_api_enter(ctx) < 0)
        return -1;
    if (ctx->s.client)
        return xdna_api_leave(ctx, xdna_fail(ctx, EPERM, "dpt_set: the driver session's"));
    if (which != XDNA_SHIM_DPT_LOG && which != XDNA_SHIM_DPT_TRACE)
        return xdna_api_leave(ctx, xdna_fail(ctx, EINVAL, "dpt_set: which %d", which));
    if (xdna_is_aie4(ctx->chip))
        return xdna_api_leave(ctx, xdna_fail(ctx, EOPNOTSUPP, "dpt_set: AIE4's rings are not modelled"));
    if (ctx->state != XDNA_SHIM_STATE_PROBED && !ctx->s.rpm_suspended)
        return xdna_api_leave(ctx, xdna_fail(ctx, ENODEV, "dpt_set: not probed"));
    if (xdna_rpm_get(ctx) < 0 || xdna_dev_begin(ctx) < 0)
        return xdna_api_leave(ctx, -1);
    int rc = dpt_set(ctx, which, action, config);
    xdna_dev_end(ctx);
    return xdna_api_leave(ctx, rc);
}

int xdna_shim_dpt_get(struct xdna_shim_ctx *ctx, int which, struct xdna_shim_dpt *out)
{
    if (xdna_api_enter(ctx) < 0)
        return -1;
    if (!out || (which != XDNA_SHIM_DPT_LOG && which != XDNA_SHIM_DPT_TRACE))
        return xdna_api_leave(ctx, xdna_fail(ctx, EINVAL, "dpt_get: bad arguments"));
    const struct xdna_dpt *d = &ctx->dpt[which];
    memset(out, 0, sizeof(*out));
    out->fd = -1;
    out->config = d->config;
    if (d->enabled) {
        struct xdna_aie2_dpt_footer f;
        memcpy(&f, (const uint8_t *)d->buf.va + d->buf.size - XDNA_AIE2_DPT_FOOTER_PAGE, sizeof(f));
        out->enabled = 1;
        out->payload_version = f.payload_version;
        out->size = (uint32_t)d->buf.size;
        out->fd = d->buf.fd;
    }
    return xdna_api_leave(ctx, 0);
}

void xdna_dpt_resume(struct xdna_shim_ctx *ctx)
{
    for (int which = 0; which < 2; which++) {
        struct xdna_dpt *d = &ctx->dpt[which];
        if (d->enabled && fw_start(ctx, which, d, d->config) < 0)
            dpt_release(ctx, d); /* the driver warns and goes on without it */
    }
}

void xdna_dpt_free(struct xdna_shim_ctx *ctx)
{
    for (int which = 0; which < 2; which++)
        if (ctx->dpt[which].enabled)
            dpt_release(ctx, &ctx->dpt[which]);
}
