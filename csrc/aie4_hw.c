/* AIE4 hardware start and stop in the driver's AIE4 order (docs/spec/aie4.md §4-§6): SMU
 * POWER_ON, PSP with the npu and cert images, MSI-X, mailbox_info, the mgmt channel, then
 * IDENTIFY, QUERY_CERT_FIRMWARE_VERSION, AIE_VERSION_INFO + AIE_TILE_INFO (not on a PF),
 * CALIBRATE_CLOCK, DRAM_WORK_BUFFER, SET_RUNTIME_CONFIG (hysteresis, context timeout),
 * CREATE_PARTITION (not on a PF) and one ASYNC_EVENT_MSG per column. A VF loads nothing
 * through PSP or SMU and gives no work buffer. Stop undoes them in reverse. The driver's
 * aie4_pci.c counterpart. */
#include "shim_int.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define EVENT_BUF XDNA_AIE4_ASYNC_EVENT_BUF_SIZE

static const char *const FUNCTION_NAMES[] = {
    [XDNA_FUNC_PLAIN] = "plain", [XDNA_FUNC_PF] = "pf", [XDNA_FUNC_VF] = "vf"};

static void stage_done(struct xdna_shim_ctx *ctx, const char *name, uint64_t t0)
{
    struct xdna_shim_info *in = &ctx->info;
    if (in->nstages >= XDNA_SHIM_MAX_STAGES)
        return;
    snprintf(in->stages[in->nstages].name, sizeof(in->stages[0].name), "%s", name);
    in->stages[in->nstages].ns = xdna_now_ns() - t0;
    in->nstages++;
}

static bool is_pf(struct xdna_shim_ctx *ctx)
{
    return ctx->chip->function == XDNA_FUNC_PF;
}

static bool is_vf(struct xdna_shim_ctx *ctx)
{
    return ctx->chip->function == XDNA_FUNC_VF;
}

/* Device address of offset `off` of BAR `bar` (mailbox_info holds BAR offsets). */
static int bar_addr(struct xdna_shim_ctx *ctx, int bar, uint32_t off, uint32_t *addr)
{
    const struct xdna_chip_desc *c = ctx->chip;
    for (unsigned i = 0; i < c->nbars; i++)
        if (c->bars[i].bar == bar && off < c->bars[i].size) {
            uint64_t a = c->bars[i].base + off;
            if (a > UINT32_MAX)
                break;
            *addr = (uint32_t)a;
            return 0;
        }
    return xdna_fail(ctx, EINVAL, "mailbox_info: offset %#x is outside BAR%d", off, bar);
}

/* Poll mailbox_info.valid, then turn its BAR offsets into the channel the mailbox code
 * checks and opens (registers in the mailbox BAR, rings in the ring-buffer BAR). */
static int mailbox_info(struct xdna_shim_ctx *ctx, struct xdna_aie2_mgmt_mbox_chann_info *ci)
{
    const struct xdna_chip_desc *c = ctx->chip;
    struct xdna_loc l = {.bar = c->mbox_info.bar, .off = c->mbox_info.off};
    uint32_t valid;
    if (xdna_poll_reg(ctx, l, 0xFFFFFFFFu, ctx->timeouts[XDNA_SHIM_TIMEOUT_FW_ALIVE], &valid,
                      "mailbox_info.valid") < 0)
        return -1;
    if (valid != XDNA_AIE4_MBOX_INFO_VALID)
        return xdna_fail(ctx, EINVAL, "mailbox_info.valid is %#x", valid);
    uint32_t w[XDNA_AIE4_MAILBOX_INFO_SIZE / 4];
    for (unsigned i = 0; i < XDNA_AIE4_MAILBOX_INFO_SIZE / 4; i++)
        w[i] = xdna_rd(ctx, (struct xdna_loc){.bar = l.bar, .off = l.off + 4 * i});
    struct xdna_aie4_mailbox_info mi;
    memcpy(&mi, w, sizeof(mi));
    memset(ci, 0, sizeof(*ci));
    int rb = c->mbox.bar, sb = c->sram_bar;
    if (bar_addr(ctx, rb, mi.x2i_tail_offset, &ci->x2i_tail) < 0 ||
        bar_addr(ctx, rb, mi.x2i_head_offset, &ci->x2i_head) < 0 ||
        bar_addr(ctx, rb, mi.i2x_tail_offset, &ci->i2x_tail) < 0 ||
        bar_addr(ctx, rb, mi.i2x_head_offset, &ci->i2x_head) < 0 ||
        bar_addr(ctx, sb, mi.x2i_buffer_addr, &ci->x2i_buf) < 0 ||
        bar_addr(ctx, sb, mi.i2x_buffer_addr, &ci->i2x_buf) < 0)
        return -1;
    ci->x2i_buf_sz = mi.x2i_buffer_size;
    ci->i2x_buf_sz = mi.i2x_buffer_size;
    ci->msi_id = mi.i2x_msi_idx;
    /* the AIE4 driver only logs the protocol version */
    ctx->info.protocol_major = mi.protocol_major;
    ctx->info.protocol_minor = mi.protocol_minor;
    ctx->info.mgmt_msi_id = mi.i2x_msi_idx;
    return 0;
}

static int set_runtime_config(struct xdna_shim_ctx *ctx, uint32_t type, const void *body,
                              size_t len)
{
    uint8_t req[XDNA_AIE4_RUNTIME_CONFIG_REQ_SIZE + 16];
    xdna_aie4_set_runtime_config_req_t head = {.type = type};
    if (len > sizeof(req) - sizeof(head))
        return xdna_fail(ctx, EINVAL, "runtime config %u: payload of %zu bytes", type, len);
    memcpy(req, &head, sizeof(head));
    memcpy(req + sizeof(head), body, len);
    return xdna_fw_req(ctx, XDNA_AIE4_MSG_SET_RUNTIME_CONFIG, req, sizeof(head) + len, NULL, 0);
}

static int query(struct xdna_shim_ctx *ctx)
{
    struct xdna_aie4_rsvd_req rsvd = {0};
    xdna_aie4_identify_resp_t id;
    xdna_aie4_query_cert_firmware_version_resp_t cv;
    if (xdna_fw_req(ctx, XDNA_AIE4_MSG_IDENTIFY, &rsvd, sizeof(rsvd), &id, sizeof(id)) < 0 ||
        xdna_fw_req(ctx, XDNA_AIE4_MSG_QUERY_CERT_FIRMWARE_VERSION, &rsvd, sizeof(rsvd), &cv,
                    sizeof(cv)) < 0)
        return -1;
    struct xdna_shim_info *in = &ctx->info;
    in->fw_major = id.major;
    in->fw_minor = id.minor;
    in->fw_sub = id.patch;
    in->fw_build = id.build;
    in->cert_major = cv.major;
    in->cert_minor = cv.minor;
    in->cert_hotfix = cv.hotfix;
    in->cert_build = cv.build;
    if (is_pf(ctx))
        return 0;
    xdna_aie2_query_aie_version_resp_t av2;
    xdna_aie2_query_aie_tile_info_resp_t ti2;
    if (xdna_aie4_aie_info(ctx, &av2, &ti2) < 0)
        return -1;
    return xdna_decode_aie_info(ctx, &av2, &ti2);
}

int xdna_aie4_aie_info(struct xdna_shim_ctx *ctx, xdna_aie2_query_aie_version_resp_t *av2,
                       xdna_aie2_query_aie_tile_info_resp_t *ti2)
{
    if (is_pf(ctx)) /* a management function: no AIE array of its own (docs/spec/aie4.md §6) */
        return xdna_fail(ctx, EOPNOTSUPP, "%s has no AIE tiles", ctx->chip->name);
    struct xdna_aie4_rsvd_req rsvd = {0};
    xdna_aie4_aie_version_info_resp_t av;
    xdna_aie4_aie_tile_info_resp_t ti;
    if (xdna_fw_req(ctx, XDNA_AIE4_MSG_AIE_VERSION_INFO, &rsvd, sizeof(rsvd), &av, sizeof(av)) < 0 ||
        xdna_fw_req(ctx, XDNA_AIE4_MSG_AIE_TILE_INFO, &rsvd, sizeof(rsvd), &ti, sizeof(ti)) < 0)
        return -1;
    /* the AIE2 decoder takes the same fields: version, then the tile info block */
    *av2 = (xdna_aie2_query_aie_version_resp_t){.major = (uint16_t)av.major,
                                                 .minor = (uint16_t)av.minor};
    _Static_assert(sizeof(*ti2) == sizeof(ti), "AIE4 tile info is AIE2's layout");
    memcpy(ti2, &ti, sizeof(ti));
    return 0;
}

int xdna_aie4_client_query(struct xdna_shim_ctx *ctx)
{
    snprintf(ctx->info.function, sizeof(ctx->info.function), "%s",
             FUNCTION_NAMES[ctx->chip->function]);
    return query(ctx);
}

static void async_cb(struct xdna_shim_ctx *ctx, void *arg, int err, const uint8_t *resp, size_t len);

static int async_post(struct xdna_shim_ctx *ctx, unsigned idx)
{
    xdna_aie4_async_event_msg_req_t req = {
        .addr = ctx->async_buf.iova + (uint64_t)idx * EVENT_BUF, .pasid = 0, .size = EVENT_BUF};
    return xdna_mbox_post_cb(ctx, &ctx->mgmt, XDNA_AIE4_MSG_ASYNC_EVENT_MSG, &req, sizeof(req),
                             XDNA_AIE4_MSG_ASYNC_EVENT_MSG_RESP_SIZE, false, async_cb,
                             (void *)(uintptr_t)idx);
}

/* An async event: count it, keep its type, reset the context a CTX_ERROR names, register
 * the buffer again. */
static void async_cb(struct xdna_shim_ctx *ctx, void *arg, int err, const uint8_t *resp, size_t len)
{
    unsigned idx = (unsigned)(uintptr_t)arg;
    xdna_aie4_async_event_msg_resp_t r;
    if (err || !resp || len < sizeof(r))
        return; /* the channel went away (stop/suspend) */
    memcpy(&r, resp, sizeof(r));
    struct xdna_shim_async_error *a = &ctx->s.async;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    a->count++;
    a->ts_ns = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
    a->type = r.type;
    a->ret_code = r.status;
    if (r.status == 0 && r.type == XDNA_AIE4_ASYNC_EVENT_CTX_ERROR && ctx->async_buf.va &&
        (size_t)(idx + 1) * EVENT_BUF <= ctx->async_buf.size) {
        struct xdna_aie4_ctx_error_event ev; /* read before the buffer is registered again */
        memcpy(&ev, (const uint8_t *)ctx->async_buf.va + (size_t)idx * EVENT_BUF, sizeof(ev));
        xdna_aie4_ctx_error(ctx, &ev);
    }
    if (idx < sizeof(ctx->s.async_repost) && async_post(ctx, idx) < 0)
        ctx->s.async_repost[idx] = 1;
    xdna_wake_all(ctx);
}

/* A PF whose VFs are still enabled tells a firmware that started again (resume, a probe
 * after stop) about them: the firmware forgets its VFs when it stops, as the driver's
 * reset_done re-sends their count after a firmware reload (docs/spec/aie4.md §10). */
static int vfs_again(struct xdna_shim_ctx *ctx)
{
    uint16_t total, cur;
    if (!is_pf(ctx))
        return 0;
    if (xdna_pci_sriov(ctx, &total, &cur) < 0)
        return -1;
    if (!cur)
        return 0;
    xdna_aie4_create_vfs_req_t req = {.num_vfs = cur};
    return xdna_fw_req(ctx, XDNA_AIE4_MSG_CREATE_VFS, &req, sizeof(req), NULL, 0);
}

static int mgmt_init(struct xdna_shim_ctx *ctx)
{
    const struct xdna_chip_desc *c = ctx->chip;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    xdna_aie4_calibrate_clock_req_t cal = {
        .time_base_ns = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec};
    if (xdna_fw_req(ctx, XDNA_AIE4_MSG_CALIBRATE_CLOCK, &cal, sizeof(cal), NULL, 0) < 0)
        return -1;
    if (!is_vf(ctx)) {
        if (xdna_dma_alloc(ctx, &ctx->work_buf, XDNA_AIE4_WORK_BUFFER_SIZE,
                           XDNA_PROTO_DMA_READ | XDNA_PROTO_DMA_WRITE, "xdna-work") < 0 ||
            xdna_dma_map(ctx, &ctx->work_buf) < 0)
            return -1;
        xdna_aie4_dram_work_buffer_req_t wb = {
            .addr = ctx->work_buf.iova, .pasid = 0, .size = XDNA_AIE4_WORK_BUFFER_SIZE};
        if (xdna_fw_req(ctx, XDNA_AIE4_MSG_DRAM_WORK_BUFFER, &wb, sizeof(wb), NULL, 0) < 0)
            return -1;
    }
    struct xdna_aie4_rtcfg_ctx_switch_hysteresis hy = {
        .hysteresis_us = XDNA_AIE4_CTX_SWITCH_HYSTERESIS_US};
    struct xdna_aie4_rtcfg_context_timeout to = {.timeout_ms = XDNA_AIE4_CONTEXT_TIMEOUT_MS};
    if (set_runtime_config(ctx, XDNA_AIE4_RTCFG_CTX_SWITCH_HYSTERESIS, &hy, sizeof(hy)) < 0 ||
        set_runtime_config(ctx, XDNA_AIE4_RTCFG_CONTEXT_TIMEOUT, &to, sizeof(to)) < 0)
        return -1;
    /* the power mode starts as DEFAULT: POWER_OVERRIDE is only sent on a change */
    ctx->info.partition_id = 0;
    if (!is_pf(ctx)) {
        xdna_aie4_create_partition_req_t pr = {.col_start = c->part_col_start,
                                              .col_count = c->part_col_count};
        xdna_aie4_create_partition_resp_t pp;
        if (xdna_fw_req(ctx, XDNA_AIE4_MSG_CREATE_PARTITION, &pr, sizeof(pr), &pp, sizeof(pp)) < 0)
            return -1;
        if (pp.partition_id == 0)
            return xdna_fail(ctx, EINVAL, "CREATE_PARTITION returned partition id 0");
        ctx->info.partition_id = pp.partition_id;
    }
    if (xdna_async_bufs_start(ctx, EVENT_BUF, async_post) < 0)
        return -1;
    return vfs_again(ctx);
}

int xdna_aie4_start(struct xdna_shim_ctx *ctx)
{
    struct xdna_aie2_mgmt_mbox_chann_info ci;
    uint64_t t;
    if (xdna_pci_restore_if_reset(ctx) < 0) /* reset while stopped: config state back */
        return -1;
    ctx->info.nstages = 0;
    snprintf(ctx->info.function, sizeof(ctx->info.function), "%s",
             FUNCTION_NAMES[ctx->chip->function]);
    if (!is_vf(ctx)) {
        t = xdna_now_ns();
        if (xdna_smu_power_on(ctx) < 0)
            return -1;
        ctx->smu_on = true;
        stage_done(ctx, "smu", t);
        t = xdna_now_ns();
        if (xdna_aie4_psp_start(ctx) < 0)
            return -1;
        stage_done(ctx, "psp", t);
    }
    t = xdna_now_ns();
    if (mailbox_info(ctx, &ci) < 0 || xdna_irq_own(ctx, ci.msi_id) < 0 ||
        xdna_mbox_create(ctx, &ctx->mgmt, "mgmt", &ci) < 0)
        return -1;
    stage_done(ctx, "mailbox_info", t);
    t = xdna_now_ns();
    if (query(ctx) < 0)
        return -1;
    stage_done(ctx, "query", t);
    t = xdna_now_ns();
    if (mgmt_init(ctx) < 0)
        return -1;
    stage_done(ctx, "mgmt_init", t);
    return 0;
}

/* Undo the start in reverse; every step runs, the first error is kept. */
int xdna_aie4_stop(struct xdna_shim_ctx *ctx)
{
    struct xdna_err first = {0};
#define STEP(expr)                                                                     \
    do {                                                                               \
        if ((expr) < 0 && !first.err)                                                  \
            xdna_err_save(ctx, &first);                                                \
    } while (0)
    if (ctx->mgmt.active) {
        if (ctx->info.partition_id) {
            xdna_aie4_destroy_partition_req_t dp = {.partition_id = ctx->info.partition_id};
            STEP(xdna_fw_req(ctx, XDNA_AIE4_MSG_DESTROY_PARTITION, &dp, sizeof(dp), NULL, 0));
            ctx->info.partition_id = 0;
        }
        if (ctx->work_buf.mapped) {
            struct xdna_aie4_rsvd_req rsvd = {0};
            STEP(xdna_fw_req(ctx, XDNA_AIE4_MSG_RELEASE_DRAM_WORK_BUFFER, &rsvd, sizeof(rsvd),
                             NULL, 0));
        }
        xdna_mbox_destroy(ctx, &ctx->mgmt);
    }
    if (ctx->psp_on) {
        ctx->psp_on = false;
        STEP(xdna_aie4_psp_stop(ctx));
    }
    if (ctx->smu_on) {
        ctx->smu_on = false;
        if (ctx->chip->ndpm)
            STEP(xdna_smu_set_dpm(ctx, 0));
        STEP(xdna_smu_stop(ctx));
    }
    STEP(xdna_dma_unmap(ctx, &ctx->async_buf));
    xdna_dma_free(&ctx->async_buf);
    STEP(xdna_dma_unmap(ctx, &ctx->work_buf));
    xdna_dma_free(&ctx->work_buf);
    STEP(xdna_dma_unmap(ctx, &ctx->fw));
    STEP(xdna_dma_unmap(ctx, &ctx->cert));
#undef STEP
    return first.err ? xdna_err_restore(ctx, &first) : 0;
}

/* Load both images (a VF loads none), then start, unwinding on failure. */
/* FLR reset_prepare's teardown: what xdna_aie4_stop undoes, with no message or register
 * write to a function about to be reset. */
static void reset_prepare(struct xdna_shim_ctx *ctx)
{
    xdna_hwctx_drop_all(ctx);
    const struct xdna_chip_desc *c = ctx->chip;
    xdna_wr_auto(ctx, (struct xdna_loc){.bar = c->mbox_info.bar, .off = c->mbox_info.off}, 0);
    if (ctx->mgmt.active)
        xdna_mbox_destroy(ctx, &ctx->mgmt);
    ctx->info.partition_id = 0;
    ctx->psp_on = ctx->smu_on = false;
    xdna_dma_unmap(ctx, &ctx->async_buf);
    xdna_dma_free(&ctx->async_buf);
    xdna_dma_unmap(ctx, &ctx->work_buf);
    xdna_dma_free(&ctx->work_buf);
    xdna_dma_unmap(ctx, &ctx->fw);
    xdna_dma_unmap(ctx, &ctx->cert);
}

/* reset_prepare, the reset (initiate: an FLR through config space, as the PCI core's
 * pcie_flr; else it already happened and only the config state comes back), reset_done:
 * the resume path, the full handshake and the partition, then every context re-created
 * (counted in resume_count). */
static int flr(struct xdna_shim_ctx *ctx, bool initiate)
{
    uint16_t cmd, flags;
    xdna_pci_state(ctx, &cmd, &flags);
    reset_prepare(ctx);
    int rc = initiate ? xdna_pci_flr(ctx) : xdna_pci_restore(ctx, cmd, flags);
    ctx->resets_seen = xdna_pci_resets(ctx);
    ctx->state = XDNA_SHIM_STATE_SUSPENDED;
    if (rc == 0)
        rc = xdna_pm_resume(ctx);
    else
        ctx->state = XDNA_SHIM_STATE_FAILED;
    return rc;
}

int xdna_shim_flr(struct xdna_shim_ctx *ctx)
{
    if (xdna_api_enter(ctx) < 0)
        return -1;
    if (!xdna_is_aie4(ctx->chip))
        return xdna_api_leave(ctx, xdna_fail(ctx, EOPNOTSUPP, "flr: %s has no reset hooks",
                                             ctx->chip->name));
    if (ctx->s.client)
        return xdna_api_leave(ctx, xdna_fail(ctx, EPERM, "flr: only the driver session may"
                                             " reset the function"));
    if (ctx->state != XDNA_SHIM_STATE_PROBED)
        return xdna_api_leave(ctx, xdna_fail(ctx, EINVAL, "flr: device is not probed"));
    if (xdna_pci_flr_capable(ctx) < 0 || xdna_rpm_get(ctx) < 0 || xdna_dev_begin(ctx) < 0)
        return xdna_api_leave(ctx, -1);
    int rc = flr(ctx, true);
    xdna_dev_end(ctx);
    return xdna_api_leave(ctx, rc);
}

/* The function was reset by someone else (an FLR through config space the driver did not
 * start): the same hooks run on a device that is already at power-on. Monitor duty, lock
 * held; a stopped or suspended function gets its config state back when it starts. */
void xdna_aie4_reset_check(struct xdna_shim_ctx *ctx)
{
    if (ctx->s.client || !xdna_is_aie4(ctx->chip) || ctx->s.dev_busy ||
        ctx->state != XDNA_SHIM_STATE_PROBED || ctx->s.rpm_suspended ||
        xdna_pci_resets(ctx) == ctx->resets_seen)
        return;
    ctx->s.dev_busy = true;
    flr(ctx, false);
    xdna_dev_end(ctx);
}

/* The TDR backstop (docs/spec/aie4.md §8): hangs are the firmware's to time out, but a
 * firmware that died (mailbox_info.valid gone to 0 under a probed driver) ends nothing.
 * Jobs pending then reset the function through the FLR hooks: they end ABORT, the firmware
 * boots again. Lock held, monitor duty (the caller checked no device sequence runs). */
void xdna_aie4_tdr(struct xdna_shim_ctx *ctx)
{
    if (ctx->s.client || ctx->state != XDNA_SHIM_STATE_PROBED || ctx->s.rpm_suspended ||
        ctx->s.dev_busy || !xdna_hwctx_pending(ctx))
        return;
    const struct xdna_chip_desc *c = ctx->chip;
    if (xdna_rd(ctx, (struct xdna_loc){.bar = c->mbox_info.bar, .off = c->mbox_info.off}) != 0)
        return;
    ctx->s.dev_busy = true;
    flr(ctx, true);
    xdna_dev_end(ctx);
}

bool xdna_aie4_removed(struct xdna_shim_ctx *ctx)
{
    if (ctx->removed)
        return true;
    if (!ctx->ctrl || !xdna_is_aie4(ctx->chip) ||
        !__atomic_load_n((const uint32_t *)(ctx->ctrl + XDNA_PROTO_CTRL_OFF_REMOVED),
                         __ATOMIC_ACQUIRE))
        return false;
    ctx->removed = ctx->sock_dead = true; /* first, so nothing below talks to the daemon */
    xdna_hwctx_drop_all(ctx);
    ctx->mgmt.active = false;
    xdna_wake_all(ctx);
    return true;
}

/* The PCI core's sriov_numvfs checks, then the driver's sriov_configure. Lock held. */
static int sriov_configure(struct xdna_shim_ctx *ctx, uint32_t num_vfs)
{
    if (!xdna_is_aie4(ctx->chip) || !is_pf(ctx))
        return xdna_fail(ctx, EOPNOTSUPP, "sriov: %s is not an SR-IOV physical function",
                         ctx->chip->name);
    if (ctx->s.client)
        return xdna_fail(ctx, EPERM, "sriov: only the driver session may configure VFs");
    if (ctx->state != XDNA_SHIM_STATE_PROBED)
        return xdna_fail(ctx, EINVAL, "sriov: device is not probed");
    uint16_t total, cur;
    if (xdna_pci_sriov(ctx, &total, &cur) < 0)
        return -1;
    if (num_vfs > total)
        return xdna_fail(ctx, ERANGE, "sriov: %u VFs, the PF has %u", num_vfs, total);
    if (num_vfs == cur)
        return 0;
    if (num_vfs && cur)
        return xdna_fail(ctx, EBUSY, "sriov: %u VFs already enabled; disable them before"
                         " enabling %u", cur, num_vfs);
    if (xdna_rpm_get(ctx) < 0 || xdna_dev_begin(ctx) < 0)
        return -1;
    int rc;
    if (num_vfs) { /* the firmware first, then the VFs appear */
        xdna_aie4_create_vfs_req_t req = {.num_vfs = num_vfs};
        rc = xdna_fw_req(ctx, XDNA_AIE4_MSG_CREATE_VFS, &req, sizeof(req), NULL, 0);
        if (rc == 0)
            rc = xdna_pci_sriov_set(ctx, (uint16_t)num_vfs);
    } else { /* the VFs go (their drivers removed), then the firmware forgets them */
        rc = xdna_pci_sriov_set(ctx, 0);
        if (rc == 0)
            rc = xdna_fw_req_u32(ctx, XDNA_AIE4_MSG_DESTROY_VFS, NULL, 0);
    }
    xdna_dev_end(ctx);
    return rc;
}

int xdna_shim_sriov_configure(struct xdna_shim_ctx *ctx, uint32_t num_vfs)
{
    if (xdna_api_enter(ctx) < 0)
        return -1;
    return xdna_api_leave(ctx, sriov_configure(ctx, num_vfs));
}

/* Monitor duty: a write of N to the PF's sysfs sriov_numvfs reached the daemon, which left
 * N + 1 in the ctrl page; run sriov_configure(N) as the kernel runs the driver's callback.
 * A refusal changes nothing (sriov_numvfs keeps showing the enabled count): the writer's
 * errno has nowhere to go. */
void xdna_aie4_sriov_request(struct xdna_shim_ctx *ctx)
{
    if (!ctx->ctrl || ctx->s.client || !is_pf(ctx) || ctx->s.dev_busy ||
        ctx->state != XDNA_SHIM_STATE_PROBED)
        return;
    uint32_t *req = (uint32_t *)(ctx->ctrl + XDNA_PROTO_CTRL_OFF_SRIOV_REQ);
    uint32_t n = __atomic_exchange_n(req, 0, __ATOMIC_ACQ_REL);
    if (n == 0)
        return;
    struct xdna_err e;
    xdna_err_save(ctx, &e);
    sriov_configure(ctx, n - 1);
    uint64_t one = 1; /* the daemon shows the count again once it sees the request taken */
    if (write(ctx->kick_fd, &one, sizeof(one)) < 0)
        (void)one;
    xdna_err_restore(ctx, &e);
}

int xdna_aie4_probe(struct xdna_shim_ctx *ctx, const char *fw_search_path)
{
    if (!is_vf(ctx) &&
        (xdna_fw_load(ctx, fw_search_path) < 0 ||
         xdna_fw_load_file(ctx, fw_search_path, ctx->chip->cert_path, XDNA_AIE4_CERT_MAX,
                           &ctx->cert, "xdna-cert") < 0))
        return -1;
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
