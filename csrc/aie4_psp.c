/* The AIE4 PSP: the npu and cert images VALIDATEd and STARTed with the AIE4 register
 * protocol (docs/spec/aie4.md §3): wait for STATUS ready before a command, ARG2 carries the
 * command in its top byte, INTR gets PSP_NOTIFY_INTR; RELEASE_TMR on stop. The driver's
 * aie4_psp.c counterpart. */
#include "shim_int.h"

#include <errno.h>
#include <stdio.h>

static const char *psp_name(uint32_t cmd)
{
    const char *name = xdna_aie4_psp_cmd_name(cmd);
    return name ? name : "CMD";
}

static int psp_ready(struct xdna_shim_ctx *ctx, const char *what)
{
    return xdna_poll_reg(ctx, xdna_role(ctx, XDNA_ROLE_PSP_STATUS), XDNA_AIE4_PSP_STATUS_READY,
                         ctx->timeouts[XDNA_SHIM_TIMEOUT_PSP], NULL, what);
}

static int psp_exec(struct xdna_shim_ctx *ctx, uint32_t cmd, uint32_t a0, uint32_t a1, uint32_t arg)
{
    char what[48];
    snprintf(what, sizeof(what), "psp: ready for %s", psp_name(cmd));
    if (arg & ~XDNA_AIE4_PSP_ARG_MASK)
        return xdna_fail(ctx, EINVAL, "psp: %s argument %#x does not fit 24 bits", psp_name(cmd), arg);
    if (psp_ready(ctx, what) < 0)
        return -1;
    if (xdna_wr_auto(ctx, xdna_role(ctx, XDNA_ROLE_PSP_ARG0), a0) < 0 ||
        xdna_wr_auto(ctx, xdna_role(ctx, XDNA_ROLE_PSP_ARG1), a1) < 0 ||
        xdna_wr_auto(ctx, xdna_role(ctx, XDNA_ROLE_PSP_ARG2),
                     cmd << XDNA_AIE4_PSP_CMD_SHIFT | arg) < 0 ||
        xdna_wr_auto_lazy(ctx, xdna_role(ctx, XDNA_ROLE_PSP_INTR), 0) < 0 ||
        xdna_wr_auto(ctx, xdna_role(ctx, XDNA_ROLE_PSP_INTR), XDNA_AIE4_PSP_NOTIFY_INTR) < 0)
        return -1;
    snprintf(what, sizeof(what), "psp: %s", psp_name(cmd));
    if (psp_ready(ctx, what) < 0)
        return -1;
    uint32_t resp = xdna_rd(ctx, xdna_role(ctx, XDNA_ROLE_PSP_RESP));
    if (resp != 0) {
        const char *why = xdna_aie4_psp_status_name(resp);
        return xdna_fail(ctx, EIO, "psp: %s failed, resp %#010x (%s)", psp_name(cmd), resp,
                         why ? why : "?");
    }
    return 0;
}

static int map_image(struct xdna_shim_ctx *ctx, struct xdna_dma_buf *buf, const char *what)
{
    if (!buf->va)
        return xdna_fail(ctx, ENOENT, "no %s image loaded", what);
    if (!buf->mapped && xdna_dma_map(ctx, buf) < 0)
        return -1;
    return 0;
}

/* VALIDATE (npu image) -> VALIDATE_CERT (cert image) -> START. */
int xdna_aie4_psp_start(struct xdna_shim_ctx *ctx)
{
    if (map_image(ctx, &ctx->fw, "firmware") < 0 || map_image(ctx, &ctx->cert, "cert") < 0)
        return -1;
    if (ctx->cert.iova % XDNA_AIE4_CERT_ALIGN)
        return xdna_fail(ctx, EINVAL, "cert buffer %#llx is not %u-aligned",
                         (unsigned long long)ctx->cert.iova, XDNA_AIE4_CERT_ALIGN);
    /* a failed VALIDATE or START is not followed by RELEASE_TMR, as in the driver */
    if (psp_exec(ctx, XDNA_AIE4_PSP_CMD_VALIDATE, (uint32_t)ctx->fw.iova,
                 (uint32_t)(ctx->fw.iova >> 32), (uint32_t)ctx->fw.size) < 0 ||
        psp_exec(ctx, XDNA_AIE4_PSP_CMD_VALIDATE_CERT, (uint32_t)ctx->cert.iova,
                 (uint32_t)(ctx->cert.iova >> 32), (uint32_t)ctx->cert.size) < 0 ||
        psp_exec(ctx, XDNA_AIE4_PSP_CMD_START, XDNA_AIE4_PSP_START_COPY_FW, 0, 0) < 0)
        return -1;
    ctx->psp_on = true;
    return 0;
}

int xdna_aie4_psp_stop(struct xdna_shim_ctx *ctx)
{
    return psp_exec(ctx, XDNA_AIE4_PSP_CMD_RELEASE_TMR, 0, 0, 0);
}
