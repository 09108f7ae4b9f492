/* Management messages: a request and its checked response, on the management channel for
 * the driver or through MGMT_PROXY for a client, and the decoding of what the firmware
 * reports about itself (docs/spec/firmware.md §6, docs/spec/jobs.md §1); the driver's
 * aie2_message.c counterpart. */
#include "shim_int.h"

#include <errno.h>
#include <string.h>

#define MSG_QUERY_AIE_TILE_INFO 0xE
#define MSG_QUERY_AIE_VERSION 0xF
#define MSG_GET_FIRMWARE_VERSION 0x108
#define MSG_SET_RUNTIME_CONFIG 0x10A
#define MSG_GET_PROTOCOL_VERSION 0x301
#define AIE2_MAX_COL 128 /* the driver's default column limit (module parameter) */
#define PROXY_RESP_MAX 512

bool xdna_has_feature(struct xdna_shim_ctx *ctx, enum xdna_feature f)
{
    return xdna_chip_has_feature(ctx->chip, f, ctx->info.protocol_major,
                                 ctx->info.protocol_minor);
}

/* ---- driver: the management channel ------------------------------------------------ */

/* A management message whose response starts with a status word that must be 0. */
int xdna_mgmt_req(struct xdna_shim_ctx *ctx, uint32_t op, const void *req, size_t req_len,
                void *resp, size_t resp_len)
{
    uint32_t status_only;
    if (!resp) {
        resp = &status_only;
        resp_len = sizeof(status_only);
    }
    if (xdna_mbox_call(ctx, &ctx->mgmt, op, req, req_len, resp, resp_len, 0) < 0)
        return -1;
    uint32_t status;
    memcpy(&status, resp, 4);
    if (status != 0)
        return xdna_fail(ctx, EIO, "mgmt: %s (%#x) failed, status %#x", xdna_opcode_name(op), op,
                         status);
    return 0;
}

int xdna_set_runtime_config(struct xdna_shim_ctx *ctx, uint32_t type, uint64_t value)
{
    uint8_t req[12];
    memcpy(req, &type, 4);
    memcpy(req + 4, &value, 8);
    if (xdna_mgmt_req(ctx, MSG_SET_RUNTIME_CONFIG, req, sizeof(req), NULL, 0) < 0) {
        char msg[sizeof(ctx->last_error)];
        memcpy(msg, ctx->last_error, sizeof(msg));
        return xdna_fail(ctx, errno, "%.200s (type %u value %llu)", msg, type,
                         (unsigned long long)value);
    }
    return 0;
}

int xdna_mgmt_req_u32(struct xdna_shim_ctx *ctx, uint32_t op, void *resp, size_t resp_len)
{
    uint32_t rsvd = 0;
    return xdna_mgmt_req(ctx, op, &rsvd, sizeof(rsvd), resp, resp_len);
}

int xdna_get_fw_version(struct xdna_shim_ctx *ctx)
{
    uint32_t r[5];
    if (xdna_mgmt_req_u32(ctx, MSG_GET_FIRMWARE_VERSION, r, sizeof(r)) < 0)
        return -1;
    ctx->info.fw_major = r[1];
    ctx->info.fw_minor = r[2];
    ctx->info.fw_sub = r[3];
    ctx->info.fw_build = r[4];
    return 0;
}

int xdna_mgmt_fw_query(struct xdna_shim_ctx *ctx)
{
    if (xdna_get_fw_version(ctx) < 0)
        return -1;
    uint8_t av[8];
    if (xdna_mgmt_req_u32(ctx, MSG_QUERY_AIE_VERSION, av, sizeof(av)) < 0)
        return -1;
    uint8_t ti[48];
    if (xdna_mgmt_req_u32(ctx, MSG_QUERY_AIE_TILE_INFO, ti, sizeof(ti)) < 0)
        return -1;
    return xdna_decode_aie_info(ctx, av, ti);
}

/* QUERY_AIE_VERSION (8 B) and QUERY_AIE_TILE_INFO (48 B) responses into ctx->info, with
 * the driver's sanity check (no columns or no core rows: the AIE array is unusable). */
int xdna_decode_aie_info(struct xdna_shim_ctx *ctx, const uint8_t av[8], const uint8_t ti[48])
{
    struct xdna_shim_info *in = &ctx->info;
    uint16_t maj, min, f[19];
    memcpy(&maj, av + 4, 2);
    memcpy(&min, av + 6, 2);
    in->aie_major = maj;
    in->aie_minor = min;
    memcpy(f, ti + 8, sizeof(f)); /* major, minor, cols, rows, core/mem/shim rows, row starts... */
    in->cols = f[2];
    in->rows = f[3];
    in->core_rows = f[4];
    in->mem_rows = f[5];
    in->shim_rows = f[6];
    in->core_row_start = f[7];
    in->mem_row_start = f[8];
    in->shim_row_start = f[9];
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
    uint32_t hdr[2] = {opcode, 0};
    memcpy(buf, hdr, 8);
    memcpy(buf + 8, req, req_len);
    uint8_t out[PROXY_RESP_MAX + 64];
    size_t len = sizeof(out);
    if (xdna_ctl(ctx, XDNA_PROTO_CMD_MGMT_PROXY, buf, 8 + req_len, NULL, 0, out, &len, 0, NULL,
                 NULL) < 0) {
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

int xdna_fw_req_u32(struct xdna_shim_ctx *ctx, uint32_t op, void *resp, size_t len)
{
    uint32_t rsvd = 0, status;
    if (xdna_fw_call(ctx, op, &rsvd, sizeof(rsvd), resp, len) < 0)
        return -1;
    memcpy(&status, resp, 4);
    if (status != 0)
        return xdna_fail(ctx, EIO, "%s failed, status %#x", xdna_opcode_name(op), status);
    return 0;
}

/* The protocol version gates features (NPU_COMMAND). Only the driver reads the mgmt
 * channel info; a client asks GET_PROTOCOL_VERSION through the proxy, and when the
 * daemon refuses that, reads the info block the firmware published in SRAM (emulator
 * shortcut: the real driver shares this knowledge inside the kernel). */
static int client_protocol(struct xdna_shim_ctx *ctx)
{
    uint32_t r[3];
    if (xdna_fw_req_u32(ctx, MSG_GET_PROTOCOL_VERSION, r, sizeof(r)) == 0) {
        ctx->info.protocol_major = r[1];
        ctx->info.protocol_minor = r[2];
        return 0;
    }
    const struct xdna_chip_desc *c = ctx->chip;
    if (c->mgmt_info.valid) {
        struct xdna_loc l = {.bar = c->mgmt_info.bar, .off = c->mgmt_info.off};
        uint32_t w[MGMT_INFO_SIZE / 4];
        for (unsigned i = 0; i < MGMT_INFO_SIZE / 4; i++)
            w[i] = xdna_rd(ctx, (struct xdna_loc){.bar = l.bar, .off = l.off + 4 * i});
        struct xdna_mbox_chann_info ci;
        memcpy(&ci, w, sizeof(ci));
        if (ci.magic == MGMT_INFO_MAGIC && ci.prot_major == c->protocol_major) {
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
    uint32_t fv[5];
    uint8_t av[8], ti[48];
    if (xdna_fw_req_u32(ctx, MSG_GET_FIRMWARE_VERSION, fv, sizeof(fv)) < 0 ||
        xdna_fw_req_u32(ctx, MSG_QUERY_AIE_VERSION, av, sizeof(av)) < 0 ||
        xdna_fw_req_u32(ctx, MSG_QUERY_AIE_TILE_INFO, ti, sizeof(ti)) < 0 || client_protocol(ctx) < 0)
        return -1;
    struct xdna_shim_info *in = &ctx->info;
    in->fw_major = fv[1];
    in->fw_minor = fv[2];
    in->fw_sub = fv[3];
    in->fw_build = fv[4];
    return xdna_decode_aie_info(ctx, av, ti);
}
