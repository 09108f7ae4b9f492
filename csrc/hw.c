/* Hardware start and stop: the bring-up sequence and its unwinding, in the driver's order
 * (docs/spec/firmware.md §3-§6): SMU power cycle, PSP VALIDATE/START, firmware alive and the
 * management channel, mgmt_fw_init, pm_init, mgmt_fw_query, async event registration,
 * GET_DEV_REVISION; stop undoes them in reverse. The driver's aie2_pci.c counterpart
 * (hw_start/hw_stop and the firmware init), with the lifecycle bodies probe, stop, suspend
 * and resume built on them. */
#include "shim_int.h"
#include "parse.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define TIME_QUOTA_US 30000
#define FINE_PREEMPT_VALUE 0 /* we leave fine-grained preemption disabled */

static void stage_done(struct xdna_shim_ctx *ctx, const char *name, uint64_t t0)
{
    struct xdna_shim_info *in = &ctx->info;
    if (in->nstages >= XDNA_SHIM_MAX_STAGES)
        return;
    snprintf(in->stages[in->nstages].name, sizeof(in->stages[0].name), "%s", name);
    in->stages[in->nstages].ns = xdna_now_ns() - t0;
    in->nstages++;
}

static int fw_alive(struct xdna_shim_ctx *ctx, struct xdna_aie2_mgmt_mbox_chann_info *ci)
{
    struct xdna_loc alive = xdna_role(ctx, XDNA_ROLE_SRAM_FW_ALIVE);
    uint32_t addr;
    if (xdna_poll_reg(ctx, alive, 0xFFFFFFFFu, ctx->timeouts[XDNA_SHIM_TIMEOUT_FW_ALIVE], &addr,
                      "firmware alive") < 0)
        return -1;
    struct xdna_loc il;
    if (addr & 3)
        return xdna_fail(ctx, EINVAL, "mgmt channel info address %#x is not 4-aligned", addr);
    if (xdna_dev_loc(ctx, addr, XDNA_AIE2_MGMT_MBOX_CHANN_INFO_SIZE, &il, "mgmt channel info") < 0)
        return -1;
    if ((int)il.bar != ctx->chip->sram_bar)
        return xdna_fail(ctx, EINVAL, "mgmt channel info %#x is outside SRAM", addr);
    uint32_t w[XDNA_AIE2_MGMT_MBOX_CHANN_INFO_SIZE / 4];
    for (unsigned i = 0; i < XDNA_AIE2_MGMT_MBOX_CHANN_INFO_SIZE / 4; i++)
        w[i] = xdna_rd(ctx, (struct xdna_loc){.bar = il.bar, .off = il.off + 4 * i});
    memcpy(ci, w, sizeof(*ci));
    if (xdna_wr_auto(ctx, alive, 0) < 0)
        return -1;
    const struct xdna_chip_desc *c = ctx->chip;
    struct xdna_parse_mgmt_info pi;
    switch (xdna_parse_mgmt_hdr((const uint8_t *)w, sizeof(w), c->protocol_major,
                                c->protocol_min_minor, &pi)) {
    case XDNA_PARSE_OK:
        break;
    case XDNA_PARSE_BAD_INFO_MAGIC:
        return xdna_fail(ctx, EINVAL, "mgmt channel info magic %#x, expected %#x", ci->magic,
                         XDNA_AIE2_MGMT_INFO_MAGIC);
    case XDNA_PARSE_OLD_PROTO_MINOR:
        return xdna_fail(ctx, EOPNOTSUPP, "firmware protocol %u.%u is older than %u.%u",
                         ci->prot_major, ci->prot_minor, c->protocol_major, c->protocol_min_minor);
    default:
        return xdna_fail(ctx, EINVAL, "firmware protocol %u.%u: %s needs major %u", ci->prot_major,
                         ci->prot_minor, c->name, c->protocol_major);
    }
    ctx->info.protocol_major = ci->prot_major;
    ctx->info.protocol_minor = ci->prot_minor;
    ctx->info.mgmt_msi_id = ci->msi_id;
    return 0;
}

static int mgmt_fw_init(struct xdna_shim_ctx *ctx)
{
    const struct xdna_chip_desc *c = ctx->chip;
    for (unsigned i = 0; i < c->nrt_init; i++)
        if (xdna_set_runtime_config(ctx, c->rt_init[i].type, c->rt_init[i].value) < 0)
            return -1;
    if (c->fine_preempt_type >= 0 && xdna_has_feature(ctx, XDNA_FEAT_PREEMPT) &&
        xdna_set_runtime_config(ctx, (uint32_t)c->fine_preempt_type, FINE_PREEMPT_VALUE) < 0)
        return -1;
    xdna_aie2_assign_mgmt_pasid_req_t pasid = {.pasid = 0};
    if (xdna_fw_req(ctx, XDNA_AIE2_MSG_ASSIGN_MGMT_PASID, &pasid, sizeof(pasid), NULL, 0) < 0)
        return -1;
    if (xdna_has_feature(ctx, XDNA_FEAT_UPDATE_PROPERTY)) {
        xdna_aie2_update_property_req_t req = {
            .type = XDNA_AIE2_UPDATE_PROPERTY_TIME_QUOTA,
            .context_id = XDNA_AIE2_UPDATE_PROPERTY_ALL_CONTEXTS,
            .time_quota_us = TIME_QUOTA_US,
        };
        if (xdna_fw_req(ctx, XDNA_AIE2_MSG_UPDATE_PROPERTY, &req, sizeof(req), NULL, 0) < 0)
            return -1;
    }
    if (xdna_fw_req_u32(ctx, XDNA_AIE2_MSG_SUSPEND, NULL, 0) < 0)
        return -1;
    if (xdna_psp_waitmode_poll(ctx) < 0)
        return -1;
    if (xdna_fw_req_u32(ctx, XDNA_AIE2_MSG_RESUME, NULL, 0) < 0)
        return -1;
    if (xdna_has_feature(ctx, XDNA_FEAT_CALIBRATE_TIME)) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        xdna_aie2_calibrate_time_req_t req = {
            .timestamp_ns = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec,
        };
        if (xdna_fw_req(ctx, XDNA_AIE2_MSG_CALIBRATE_TIME, &req, sizeof(req), NULL, 0) < 0)
            return -1;
    }
    return 0;
}

/* ---- hw_start / hw_stop ------------------------------------------------------------ */

/* Undo bring-up in the driver's stop order; keeps the first error. */
static int hw_stop(struct xdna_shim_ctx *ctx, bool send_suspend)
{
    struct xdna_err first = {0};
#define STEP(expr)                                                                     \
    do {                                                                               \
        if ((expr) < 0 && !first.err)                                                  \
            xdna_err_save(ctx, &first);                                                \
    } while (0)
    if (ctx->mgmt.active) {
        if (send_suspend)
            STEP(xdna_fw_req_u32(ctx, XDNA_AIE2_MSG_SUSPEND, NULL, 0));
        xdna_mbox_destroy(ctx, &ctx->mgmt);
    }
    if (ctx->psp_on) {
        ctx->psp_on = false;
        STEP(xdna_psp_stop(ctx));
    }
    if (ctx->smu_on) {
        ctx->smu_on = false;
        ctx->pm_on = false;
        if (ctx->chip->ndpm)
            STEP(xdna_smu_set_dpm(ctx, 0));
        STEP(xdna_smu_stop(ctx));
    }
    STEP(xdna_dma_unmap(ctx, &ctx->async_buf));
    xdna_dma_free(&ctx->async_buf);
    STEP(xdna_dma_unmap(ctx, &ctx->fw));
#undef STEP
    return first.err ? xdna_err_restore(ctx, &first) : 0;
}

/* hw_start; `probing` adds the probe tail (GET_DEV_REVISION), which resume does not redo. */
static int hw_start(struct xdna_shim_ctx *ctx, bool probing)
{
    struct xdna_aie2_mgmt_mbox_chann_info ci;
    uint64_t t;
    ctx->info.nstages = 0;
    if (probing)
        ctx->info.dev_revision = 0;

    t = xdna_now_ns();
    /* the driver unwinds the SMU only once it is powered on (a dead SMU is left alone) */
    if (xdna_smu_start(ctx) < 0)
        return -1;
    ctx->smu_on = true;
    stage_done(ctx, "smu", t);

    t = xdna_now_ns();
    if (xdna_psp_start(ctx) < 0)
        return -1;
    stage_done(ctx, "psp", t);

    t = xdna_now_ns();
    if (fw_alive(ctx, &ci) < 0 || xdna_irq_own(ctx, ci.msi_id) < 0)
        return -1;
    stage_done(ctx, "fw_alive", t);

    t = xdna_now_ns();
    if (xdna_mbox_create(ctx, &ctx->mgmt, "mgmt", &ci) < 0 || mgmt_fw_init(ctx) < 0)
        return -1;
    stage_done(ctx, "mgmt_init", t);

    t = xdna_now_ns();
    if (xdna_pm_init(ctx) < 0)
        return -1;
    stage_done(ctx, "pm", t);

    t = xdna_now_ns();
    if (xdna_mgmt_fw_query(ctx) < 0 || xdna_async_events_start(ctx) < 0 || xdna_get_fw_version(ctx) < 0)
        return -1;
    if (probing && xdna_has_feature(ctx, XDNA_FEAT_GET_DEV_REVISION)) {
        xdna_aie2_get_dev_revision_resp_t r;
        if (xdna_fw_req_u32(ctx, XDNA_AIE2_MSG_GET_DEV_REVISION, &r, sizeof(r)) < 0)
            return -1;
        ctx->info.dev_revision = r.rev;
    }
    stage_done(ctx, "query", t);
    return 0;
}

static int start_or_unwind(struct xdna_shim_ctx *ctx, bool probing)
{
    if (hw_start(ctx, probing) == 0) {
        ctx->state = XDNA_SHIM_STATE_PROBED;
        return 0;
    }
    struct xdna_err e;
    xdna_err_save(ctx, &e);
    hw_stop(ctx, false);
    ctx->state = XDNA_SHIM_STATE_FAILED;
    return xdna_err_restore(ctx, &e);
}

/* ---- lifecycle bodies -------------------------------------------------------------- */

static int need_ctx(struct xdna_shim_ctx *ctx)
{
    if (!ctx) {
        xdna_set_tls_error(EBADF, "no context");
        return -1;
    }
    return 0;
}

int xdna_probe_unlocked(struct xdna_shim_ctx *ctx, const char *fw_search_path)
{
    if (need_ctx(ctx) < 0)
        return -1;
    if (!ctx->chip->supported)
        return xdna_fail(ctx, EOPNOTSUPP, "%s (%s) is known by id only; probing it is not supported",
                         ctx->chip->name, ctx->chip->family);
    if (ctx->state == XDNA_SHIM_STATE_PROBED)
        return xdna_fail(ctx, EALREADY, "device is already probed");
    if (ctx->state == XDNA_SHIM_STATE_SUSPENDED)
        return xdna_fail(ctx, EBUSY, "device is suspended; resume it instead");
    if (xdna_is_aie4(ctx->chip)) /* the AIE4 order (docs/spec/aie4.md §6) */
        return xdna_aie4_probe(ctx, fw_search_path);
    if (xdna_pci_restore_if_reset(ctx) < 0 || xdna_fw_load(ctx, fw_search_path) < 0)
        return -1;
    return start_or_unwind(ctx, true);
}

int xdna_stop_unlocked(struct xdna_shim_ctx *ctx)
{
    if (need_ctx(ctx) < 0)
        return -1;
    int rc = 0;
    if (ctx->state == XDNA_SHIM_STATE_PROBED)
        rc = xdna_is_aie4(ctx->chip) ? xdna_aie4_stop(ctx) : hw_stop(ctx, true);
    if (ctx->state == XDNA_SHIM_STATE_PROBED || ctx->state == XDNA_SHIM_STATE_SUSPENDED)
        ctx->state = XDNA_SHIM_STATE_STOPPED;
    return rc;
}

int xdna_suspend_unlocked(struct xdna_shim_ctx *ctx)
{
    if (need_ctx(ctx) < 0)
        return -1;
    if (ctx->state != XDNA_SHIM_STATE_PROBED)
        return xdna_fail(ctx, EINVAL, "suspend: device is not probed");
    int rc = xdna_is_aie4(ctx->chip) ? xdna_aie4_stop(ctx) : hw_stop(ctx, true);
    ctx->state = XDNA_SHIM_STATE_SUSPENDED;
    return rc;
}

int xdna_resume_unlocked(struct xdna_shim_ctx *ctx)
{
    if (need_ctx(ctx) < 0)
        return -1;
    if (ctx->state != XDNA_SHIM_STATE_SUSPENDED)
        return xdna_fail(ctx, EINVAL, "resume: device is not suspended");
    if (xdna_is_aie4(ctx->chip)) {
        if (xdna_aie4_start(ctx) == 0) {
            ctx->state = XDNA_SHIM_STATE_PROBED;
            return 0;
        }
        struct xdna_err e;
        xdna_err_save(ctx, &e);
        xdna_aie4_stop(ctx);
        ctx->state = XDNA_SHIM_STATE_FAILED;
        return xdna_err_restore(ctx, &e);
    }
    return start_or_unwind(ctx, false);
}

int xdna_mgmt_msg_unlocked(struct xdna_shim_ctx *ctx, uint32_t opcode, const void *req,
                       size_t req_len, void *resp, size_t resp_len, int timeout_ms)
{
    if (need_ctx(ctx) < 0)
        return -1;
    if (!ctx->mgmt.active)
        return xdna_fail(ctx, ENODEV, "management channel is not up");
    return xdna_mbox_call(ctx, &ctx->mgmt, opcode, req, req_len, resp, resp_len, timeout_ms);
}

/* At close: stop a probed device unless the daemon is gone. */
void xdna_hw_close(struct xdna_shim_ctx *ctx)
{
    if (ctx->state == XDNA_SHIM_STATE_PROBED && !ctx->sock_dead)
        xdna_is_aie4(ctx->chip) ? (void)xdna_aie4_stop(ctx) : (void)hw_stop(ctx, true);
    else
        xdna_mbox_destroy(ctx, &ctx->mgmt);
}
