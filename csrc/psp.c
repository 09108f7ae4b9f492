/* The PSP: the firmware image found and loaded into DMA memory, VALIDATE and START it,
 * RELEASE_TMR on stop, and the wait-mode poll of the firmware init sequence
 * (docs/spec/firmware.md §2, §3); the driver's aie2_psp.c counterpart. */
#include "shim_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* PSP commands and status bits: generated/xdna_fw_aie2.h (docs/spec/firmware.md §3) */

static const char *psp_name(uint32_t cmd)
{
    const char *name = xdna_aie2_psp_cmd_name(cmd);
    return name ? name : "CMD";
}

static int psp_exec(struct xdna_shim_ctx *ctx, uint32_t cmd, uint32_t a0, uint32_t a1, uint32_t a2)
{
    if (xdna_wr_auto(ctx, xdna_role(ctx, XDNA_ROLE_PSP_CMD), cmd) < 0 ||
        xdna_wr_auto(ctx, xdna_role(ctx, XDNA_ROLE_PSP_ARG0), a0) < 0 ||
        xdna_wr_auto(ctx, xdna_role(ctx, XDNA_ROLE_PSP_ARG1), a1) < 0 ||
        xdna_wr_auto(ctx, xdna_role(ctx, XDNA_ROLE_PSP_ARG2), a2) < 0 ||
        xdna_wr_auto_lazy(ctx, xdna_role(ctx, XDNA_ROLE_PSP_INTR), 0) < 0 ||
        xdna_wr_auto(ctx, xdna_role(ctx, XDNA_ROLE_PSP_INTR), 1) < 0)
        return -1;
    char what[32];
    snprintf(what, sizeof(what), "psp: %s", psp_name(cmd));
    if (xdna_poll_reg(ctx, xdna_role(ctx, XDNA_ROLE_PSP_STATUS), XDNA_AIE2_PSP_STATUS_READY,
                      ctx->timeouts[XDNA_SHIM_TIMEOUT_PSP], NULL, what) < 0)
        return -1;
    uint32_t resp = xdna_rd(ctx, xdna_role(ctx, XDNA_ROLE_PSP_RESP));
    if (resp != 0)
        return xdna_fail(ctx, EIO, "psp: %s failed, resp %#010x", psp_name(cmd), resp);
    return 0;
}

/* Find <dir>/<rel> along the search path and copy it into a DMA-able memfd buffer. */
int xdna_fw_load_file(struct xdna_shim_ctx *ctx, const char *search, const char *rel,
                      size_t max, struct xdna_dma_buf *buf, const char *tag)
{
    if (!search || !*search)
        return xdna_fail(ctx, EINVAL, "empty firmware search path");
    int fd = -1;
    char path[4096];
    for (const char *p = search; *p;) {
        const char *colon = strchr(p, ':');
        size_t n = colon ? (size_t)(colon - p) : strlen(p);
        if (n > 0 && n + strlen(rel) + 2 < sizeof(path)) {
            snprintf(path, sizeof(path), "%.*s/%s", (int)n, p, rel);
            fd = open(path, O_RDONLY | O_CLOEXEC);
            if (fd >= 0)
                break;
        }
        if (!colon)
            break;
        p = colon + 1;
    }
    if (fd < 0)
        return xdna_fail(ctx, ENOENT, "firmware %s not found in %s", rel, search);
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size <= 0 ||
        (size_t)st.st_size > max) {
        xdna_fail(ctx, EINVAL, "firmware %s: not a regular file of 1..%zu bytes", path, max);
        goto close_file;
    }
    if (buf->mapped)
        xdna_dma_unmap(ctx, buf);
    xdna_dma_free(buf);
    if (xdna_dma_alloc(ctx, buf, (size_t)st.st_size, XDNA_PROTO_DMA_READ, tag) < 0)
        goto close_file;
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t k = read(fd, (char *)buf->va + got, (size_t)st.st_size - got);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            xdna_fail(ctx, k < 0 ? errno : EIO, "firmware %s: short read", path);
            goto free_image;
        }
        got += (size_t)k;
    }
    close(fd);
    return 0;

free_image:
    xdna_dma_free(buf);
close_file:
    close(fd); /* closing a read-only file succeeds and leaves errno alone */
    return -1;
}

int xdna_fw_load(struct xdna_shim_ctx *ctx, const char *search)
{
    return xdna_fw_load_file(ctx, search, ctx->chip->fw_path, XDNA_FW_MAX_SIZE, &ctx->fw, "xdna-fw");
}

int xdna_psp_start(struct xdna_shim_ctx *ctx)
{
    if (!ctx->fw.va)
        return xdna_fail(ctx, ENOENT, "no firmware image loaded");
    if (!ctx->fw.mapped && xdna_dma_map(ctx, &ctx->fw) < 0)
        return -1;
    if (psp_exec(ctx, XDNA_AIE2_PSP_CMD_VALIDATE, (uint32_t)ctx->fw.iova, (uint32_t)(ctx->fw.iova >> 32),
                 (uint32_t)ctx->fw.size) < 0)
        return -1;
    /* as in the driver, a failed VALIDATE or START is not followed by RELEASE_TMR */
    if (psp_exec(ctx, XDNA_AIE2_PSP_CMD_START, XDNA_AIE2_PSP_START_COPY_FW, 0, 0) < 0)
        return -1;
    ctx->psp_on = true;
    return 0;
}

int xdna_psp_stop(struct xdna_shim_ctx *ctx)
{
    return psp_exec(ctx, XDNA_AIE2_PSP_CMD_RELEASE_TMR, 0, 0, 0);
}

/* The firmware parks in wait mode after SUSPEND; the PSP says so in its PWAITMODE register. */
int xdna_psp_waitmode_poll(struct xdna_shim_ctx *ctx)
{
    return xdna_poll_reg(ctx, xdna_role(ctx, XDNA_ROLE_PSP_PWAITMODE), XDNA_AIE2_PSP_PWAITMODE_READY,
                         ctx->timeouts[XDNA_SHIM_TIMEOUT_PSP], NULL, "psp: wait mode");
}
