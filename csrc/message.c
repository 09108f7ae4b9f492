/* Management messages: a request and its checked response, on the management channel for
 * the driver or through MGMT_PROXY for a client, and the decoding of what the firmware
 * reports about itself (docs/spec/firmware.md §6, docs/spec/jobs.md §1); the driver's
 * aie2_message.c counterpart. */
#include "shim_int.h"

#include <errno.h>
#include <string.h>

#define AIE2_MAX_COL 128 /* the driver's default column limit (module parameter) */
#define PROXY_RESP_MAX 512

bool xdna_has_feature(struct xdna_shim_ctx *ctx, enum xdna_feature f)
{
    return xdna_chip_has_feature(ctx->chip, f, ctx->info.protocol_major,
                                 ctx->info.protocol_minor);
}

static void set_fw_version(struct xdna_shim_ctx *ctx, const xdna_aie2_get_firmware_version_resp_t *r)
{
    ctx->info.fw_major = r->major;
    ctx->info.fw_minor = r->minor;
    ctx->info.fw_sub = r->sub;
    ctx->info.fw_build = r->build;
}

/* ---- driver: the management channel ------------------------------------------------ */

int xdna_set_runtime_config(struct xdna_shim_ctx *ctx, uint32_t type, uint64_t value)
{
    xdna_aie2_set_runtime_config_req_t req = {.type = type, .value = value};
    if (xdna_fw_req(ctx, XDNA_AIE2_MSG_SET_RUNTIME_CONFIG, &req, sizeof(req), NULL, 0) < 0) {
        char msg[sizeof(ctx->last_error)];
        memcpy(msg, ctx->last_error, sizeof(msg));
        return xdna_fail(ctx, errno, "%.200s (type %u value %llu)", msg, type,
                         (unsigned long long)value);
    }
    return 0;
}

int xdna_get_fw_version(struct xdna_shim_ctx *ctx)
{
    xdna_aie2_get_firmware_version_resp_t r;
    if (xdna_fw_req_u32(ctx, XDNA_AIE2_MSG_GET_FIRMWARE_VERSION, &r, sizeof(r)) < 0)
        return -1;
    set_fw_version(ctx, &r);
    return 0;
}

int xdna_mgmt_fw_query(struct xdna_shim_ctx *ctx)
{
    if (xdna_get_fw_version(ctx) < 0)
        return -1;
    xdna_aie2_query_aie_version_resp_t av;
    if (xdna_fw_req_u32(ctx, XDNA_AIE2_MSG_QUERY_AIE_VERSION, &av, sizeof(av)) < 0)
        return -1;
    xdna_aie2_query_aie_tile_info_resp_t ti;
    if (xdna_fw_req_u32(ctx, XDNA_AIE2_MSG_QUERY_AIE_TILE_INFO, &ti, sizeof(ti)) < 0)
        return -1;
    return xdna_decode_aie_info(ctx, &av, &ti);
}

/* QUERY_AIE_VERSION and QUERY_AIE_TILE_INFO responses into ctx->info, with the driver's
 * sanity check (no columns or no core rows: the AIE array is unusable). */
int xdna_decode_aie_info(struct xdna_shim_ctx *ctx, const xdna_aie2_query_aie_version_resp_t *av,
                         const xdna_aie2_query_aie_tile_info_resp_t *ti)
{
    struct xdna_shim_info *in = &ctx->info;
    in->aie_major = av->major;
    in->aie_minor = av->minor;
    in->cols = ti->cols;
    in->rows = ti->rows;
    in->core_rows = ti->core_rows;
    in->mem_rows = ti->mem_rows;
    in->shim_rows = ti->shim_rows;
    in->core_row_start = ti->core_row_start;
    in->mem_row_start = ti->mem_row_start;
    in->shim_row_start = ti->shim_row_start;
    if (in->cols == 0 || in->core_rows == 0 || in->rows == 0)
        return xdna_fail(ctx, EINVAL, "tile info: %u cols, %u rows, %u core rows", in->cols,
                         in->rows, in->core_rows);
    in->total_col = in->cols < AIE2_MAX_COL ? in->cols : AIE2_MAX_COL;
    return 0;
}

/* ---- any session: management channel or MGMT_PROXY --------------------------------- */

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
    if (xdna_pm_client_get(ctx) < 0) /* the firmware must be up to answer (jobs.md §1) */
        return -1;
    uint32_t hdr[2] = {opcode, 0};
    memcpy(buf, hdr, 8);
    memcpy(buf + 8, req, req_len);
    uint8_t out[PROXY_RESP_MAX + 64];
    size_t len = sizeof(out);
    int rc = xdna_ctl(ctx, XDNA_PROTO_CMD_MGMT_PROXY, buf, 8 + req_len, NULL, 0, out, &len, 0,
                      NULL, NULL);
    if (rc < 0 && errno == ENODEV && xdna_ctrl_get(ctx, XDNA_PROTO_CTRL_OFF_PM_DOWN)) {
        /* the driver suspended the device just before (its PM_DOWN came with this reply's
         * step): take the reference now and send it again */
        if (xdna_pm_client_get(ctx) < 0)
            return -1;
        len = sizeof(out);
        rc = xdna_ctl(ctx, XDNA_PROTO_CMD_MGMT_PROXY, buf, 8 + req_len, NULL, 0, out, &len, 0,
                      NULL, NULL);
    }
    if (rc < 0) {
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

/* A firmware request whose response starts with a status word that must be 0 (EIO
 * otherwise); a NULL resp means a status-only response. */
int xdna_fw_req(struct xdna_shim_ctx *ctx, uint32_t op, const void *req, size_t req_len,
                void *resp, size_t resp_len)
{
    struct xdna_aie2_status_resp st;
    if (!resp) {
        resp = &st;
        resp_len = sizeof(st);
    }
    if (xdna_fw_call(ctx, op, req, req_len, resp, resp_len) < 0)
        return -1;
    memcpy(&st, resp, sizeof(st)); /* every response starts with the status word */
    if (st.status != 0)
        return xdna_fail(ctx, EIO, "%s (%#x) failed, status %#x", xdna_opcode_name(op), op,
                         st.status);
    return 0;
}

/* The same for the query-style messages whose request is one reserved word. */
int xdna_fw_req_u32(struct xdna_shim_ctx *ctx, uint32_t op, void *resp, size_t len)
{
    struct xdna_aie2_rsvd_req rsvd = {0};
    return xdna_fw_req(ctx, op, &rsvd, sizeof(rsvd), resp, len);
}

/* The protocol version gates features (NPU_COMMAND). Only the driver reads the mgmt
 * channel info; a client asks GET_PROTOCOL_VERSION through the proxy, and when the
 * daemon refuses that, reads the info block the firmware published in SRAM (emulator
 * shortcut: the real driver shares this knowledge inside the kernel). */
static int client_protocol(struct xdna_shim_ctx *ctx)
{
    xdna_aie2_get_protocol_version_resp_t r;
    if (xdna_fw_req_u32(ctx, XDNA_AIE2_MSG_GET_PROTOCOL_VERSION, &r, sizeof(r)) == 0) {
        ctx->info.protocol_major = r.major;
        ctx->info.protocol_minor = r.minor;
        return 0;
    }
    const struct xdna_chip_desc *c = ctx->chip;
    if (c->mgmt_info.valid) {
        struct xdna_loc l = {.bar = c->mgmt_info.bar, .off = c->mgmt_info.off};
        uint32_t w[XDNA_AIE2_MGMT_MBOX_CHANN_INFO_SIZE / 4];
        for (unsigned i = 0; i < XDNA_AIE2_MGMT_MBOX_CHANN_INFO_SIZE / 4; i++)
            w[i] = xdna_rd(ctx, (struct xdna_loc){.bar = l.bar, .off = l.off + 4 * i});
        struct xdna_aie2_mgmt_mbox_chann_info ci;
        memcpy(&ci, w, sizeof(ci));
        if (ci.magic == XDNA_AIE2_MGMT_INFO_MAGIC && ci.prot_major == c->protocol_major) {
            ctx->info.protocol_major = ci.prot_major;
            ctx->info.protocol_minor = ci.prot_minor;
            return 0;
        }
    }
    return xdna_fail(ctx, EPROTO, "attach: cannot learn the firmware protocol version");
}

/* What a client learns at attach, through the proxy: the firmware version, the AIE version
 * and tile info, and the protocol version. */
int xdna_client_query(struct xdna_shim_ctx *ctx)
{
    if (xdna_is_aie4(ctx->chip))
        return xdna_aie4_client_query(ctx);
    xdna_aie2_get_firmware_version_resp_t fv;
    xdna_aie2_query_aie_version_resp_t av;
    xdna_aie2_query_aie_tile_info_resp_t ti;
    if (xdna_fw_req_u32(ctx, XDNA_AIE2_MSG_GET_FIRMWARE_VERSION, &fv, sizeof(fv)) < 0 ||
        xdna_fw_req_u32(ctx, XDNA_AIE2_MSG_QUERY_AIE_VERSION, &av, sizeof(av)) < 0 ||
        xdna_fw_req_u32(ctx, XDNA_AIE2_MSG_QUERY_AIE_TILE_INFO, &ti, sizeof(ti)) < 0 ||
        client_protocol(ctx) < 0)
        return -1;
    set_fw_version(ctx, &fv);
    return xdna_decode_aie_info(ctx, &av, &ti);
}
