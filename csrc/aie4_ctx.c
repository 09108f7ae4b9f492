/* AIE4 hardware contexts through HSA user-mode queues, kernel-mode submission
 * (docs/spec/aie4.md §8): CREATE_HW_CONTEXT on a queue BO in the session's memory, one
 * packet per ERT_START_DPU command (a CMD_CHAIN takes one packet per command, chained),
 * completion_signal at the command BO, write_index bumped and the doorbell rung; the
 * job-completion vector (or a wait) reaps jobs whose packets read_index has passed. The
 * driver's aie4_hwctx.c counterpart. */
#include "shim_int.h"
#include "parse.h"

#include <errno.h>
#include <string.h>

#define SLOTS XDNA_AIE4_HSA_QUEUE_SLOTS
#define PKTS_OFF XDNA_AIE4_HSA_QUEUE_HEADER_SIZE
#define QUEUE_BYTES (PKTS_OFF + SLOTS * XDNA_AIE4_HSA_PKT_SIZE + \
                     SLOTS * XDNA_AIE4_HSA_INDIRECT_PER_SLOT * XDNA_AIE4_HSA_INDIRECT_PKT_SIZE)
/* Emulator choice: each slot's u64 argument block lives in the queue BO after the queue. */
#define ARGS_MAX 256u
#define ARGS_OFF ((QUEUE_BYTES + 63u) & ~63u)
/* ... and the CERT log descriptor after them (docs/spec/aie4.md §11). */
#define LOG_DESC_OFF (ARGS_OFF + SLOTS * ARGS_MAX)
#define UMQ_BO_SIZE (LOG_DESC_OFF + sizeof(struct xdna_aie4_cert_log_desc))

/* A u64 index of the queue header, the firmware's side of it read and written atomically.
 * The generated struct is packed, so its members look unaligned to the compiler; the header
 * sits at the start of a page-aligned BO, so the index is naturally aligned and the access
 * is one instruction, not a libatomic call (docs/spec/aie4.md §7). */
static uint64_t *queue_index(struct xdna_bo *q, size_t off)
{
    return (uint64_t *)__builtin_assume_aligned((uint8_t *)q->va + off, 8);
}

static uint64_t queue_read_index(struct xdna_bo *q)
{
    return __atomic_load_n(queue_index(q, offsetof(struct xdna_aie4_hsa_queue_header, read_index)),
                           __ATOMIC_ACQUIRE);
}

/* CONFIGURE_HW_CONTEXT CERT_LOG: the descriptor (in the queue BO) names each slice of the
 * log BO, laid out in order from its offset 0; detach sends address 0. */
static int send_log(struct xdna_shim_ctx *ctx, struct xdna_hwctx *hw, bool attach)
{
    struct xdna_bo *q = xdna_bo_get(ctx, hw->umq_bo), *log = xdna_bo_get(ctx, hw->log_bo);
    xdna_aie4_configure_hw_context_req_t cfg = {
        .hw_context_id = hw->fw_id, .property = XDNA_AIE4_CTX_PROP_CERT_LOG, .value = 0};
    if (attach) {
        if (!q || !log)
            return xdna_fail(ctx, EINVAL, "cert log: its BO is gone");
        struct xdna_aie4_cert_log_desc d = {.num_ucs = hw->log_n};
        uint64_t off = 0;
        for (uint32_t i = 0; i < hw->log_n; i++) {
            d.slice[i] = (struct xdna_aie4_cert_log_slice){.uc_index = hw->log_ucs[i].uc_index,
                .size = hw->log_ucs[i].size, .addr = log->xdna_addr + off};
            off += hw->log_ucs[i].size;
        }
        memcpy((uint8_t *)q->va + LOG_DESC_OFF, &d, sizeof(d));
        cfg.value = q->xdna_addr + LOG_DESC_OFF;
    }
    return xdna_fw_req(ctx, XDNA_AIE4_MSG_CONFIGURE_HW_CONTEXT, &cfg, sizeof(cfg), NULL, 0);
}

int xdna_aie4_ctx_start(struct xdna_shim_ctx *ctx, struct xdna_hwctx *hw)
{
    /* a client names partition 0: the driver's half fills in its partition (§12) */
    if (!ctx->info.partition_id && (!ctx->s.client || ctx->chip->function == XDNA_FUNC_PF))
        return xdna_fail(ctx, EOPNOTSUPP, "hwctx: %s has no partition for contexts",
                         ctx->chip->name);
    if (!hw->umq_bo && xdna_bo_new(ctx, XDNA_SHIM_BO_SHARE, UMQ_BO_SIZE, true, &hw->umq_bo) < 0)
        return -1;
    struct xdna_bo *q = xdna_bo_get(ctx, hw->umq_bo);
    memset(q->va, 0, q->alloc); /* a fresh queue: read and write index 0 */
    struct xdna_aie4_hsa_queue_header h = {
        .major = XDNA_AIE4_HSA_QUEUE_MAJOR, .minor = XDNA_AIE4_HSA_QUEUE_MINOR,
        .capacity = SLOTS, .data_address = q->xdna_addr + PKTS_OFF};
    memcpy(q->va, &h, sizeof(h));
    hw->umq_wr = 0;
    uint32_t pasid = ctx->iommu_iova ? 0 : (ctx->info.pasid & XDNA_AIE4_PASID_MASK) | XDNA_AIE4_PASID_VALID;
    xdna_aie4_create_hw_context_req_t req = {
        .partition_id = ctx->info.partition_id, .num_tiles = hw->params.num_cols,
        .hsa_addr_hi = (uint32_t)(q->xdna_addr >> 32), .hsa_addr_lo = (uint32_t)q->xdna_addr,
        .pasid = pasid, .priority_band = hw->prio};
    xdna_aie4_create_hw_context_resp_t r;
    if (xdna_fw_req(ctx, XDNA_AIE4_MSG_CREATE_HW_CONTEXT, &req, sizeof(req), &r, sizeof(r)) < 0)
        return -1;
    hw->fw_id = r.hw_context_id;
    hw->fw_live = true;
    hw->msix = r.job_complete_msix_idx;
    hw->doorbell = r.doorbell_offset;
    const struct xdna_bar_off *db = &ctx->chip->doorbells;
    if (r.job_complete_msix_idx >= ctx->nvec || r.doorbell_offset == XDNA_AIE4_INVALID_DOORBELL ||
        !xdna_loc_ok(ctx, (struct xdna_loc){.bar = db->bar, .off = r.doorbell_offset}, 4)) {
        xdna_fail(ctx, EINVAL, "CREATE_HW_CONTEXT: vector %u, doorbell %#x out of range",
                  r.job_complete_msix_idx, r.doorbell_offset);
        goto destroy;
    }
    if (xdna_irq_own(ctx, hw->msix) < 0)
        goto destroy;
    xdna_aie4_configure_hw_context_req_t cfg = {
        .hw_context_id = hw->fw_id, .property = XDNA_AIE4_CTX_PROP_DPM, .value = ctx->info.dpm_level};
    if (xdna_fw_req(ctx, XDNA_AIE4_MSG_CONFIGURE_HW_CONTEXT, &cfg, sizeof(cfg), NULL, 0) < 0)
        goto destroy;
    if (hw->log_bo && send_log(ctx, hw, true) < 0) /* re-created (resume, FLR): log again */
        goto destroy;
    hw->state = XDNA_SHIM_HWCTX_ACTIVE;
    xdna_wake_monitor(ctx);
    return 0;

destroy: {
        struct xdna_err e;
        xdna_err_save(ctx, &e);
        xdna_aie4_ctx_stop(ctx, hw, true);
        return xdna_err_restore(ctx, &e);
    }
}

void xdna_aie4_ctx_stop(struct xdna_shim_ctx *ctx, struct xdna_hwctx *hw, bool destroy)
{
    if (hw->fw_live && destroy && !ctx->sock_dead) {
        xdna_aie4_destroy_hw_context_req_t req = {.hw_context_id = hw->fw_id, .flags = 0};
        xdna_aie4_destroy_hw_context_resp_t st;
        xdna_fw_call(ctx, XDNA_AIE4_MSG_DESTROY_HW_CONTEXT, &req, sizeof(req), &st, sizeof(st));
    }
    hw->fw_live = false;
    xdna_wake_monitor(ctx);
}

bool xdna_aie4_queue_room(struct xdna_shim_ctx *ctx, struct xdna_hwctx *hw, uint32_t nsub)
{
    struct xdna_bo *q = xdna_bo_get(ctx, hw->umq_bo);
    if (!q || !hw->fw_live || hw->umq_user)
        return true; /* no queue yet (or not ours): submit decides */
    uint64_t rd = queue_read_index(q);
    return hw->umq_wr + nsub - rd <= SLOTS;
}

int xdna_aie4_submit(struct xdna_shim_ctx *ctx, struct xdna_hwctx *hw, struct xdna_job *j,
                     const uint32_t *subs, uint32_t nsub)
{
    struct xdna_bo *q = xdna_bo_get(ctx, hw->umq_bo);
    if (!q || !hw->fw_live)
        return xdna_fail(ctx, EIO, "exec: context %u has no queue", hw->handle);
    if (hw->umq_user)
        return xdna_fail(ctx, EBUSY, "exec: the application submits to context %u itself",
                         hw->handle);
    uint64_t rd = queue_read_index(q);
    if (nsub == 0 || nsub > SLOTS || hw->umq_wr + nsub - rd > SLOTS)
        return xdna_fail(ctx, EAGAIN, "exec: the queue of context %u is full", hw->handle);
    uint8_t *base = q->va;
    for (uint32_t i = 0; i < nsub; i++) {
        struct xdna_bo *cb = xdna_bo_get(ctx, subs[i]);
        struct xdna_parse_npu n;
        if (!cb || xdna_parse_exec(cb->va, cb->size, XDNA_SHIM_ERT_START_DPU, &n))
            return xdna_fail(ctx, EINVAL, "exec: BO %u is not a START_DPU command", subs[i]);
        if (4ull * n.nargs > ARGS_MAX)
            return xdna_fail(ctx, EINVAL, "exec: %u argument words (at most %u)", n.nargs,
                             ARGS_MAX / 4);
        uint64_t idx = hw->umq_wr + i;
        uint32_t slot = (uint32_t)(idx % SLOTS);
        memcpy(base + ARGS_OFF + slot * ARGS_MAX, (const uint32_t *)cb->va + n.args, 4ull * n.nargs);
        uint64_t args = q->xdna_addr + ARGS_OFF + slot * ARGS_MAX;
        struct xdna_aie4_hsa_pkt p = {
            .hdr = {.opcode = XDNA_AIE4_HSA_OP_EXEC_BUF,
                    .chain_flag = i + 1 < nsub ? XDNA_AIE4_HSA_CHAIN_NOT_LAST : XDNA_AIE4_HSA_CHAIN_LAST,
                    .count = XDNA_AIE4_HSA_EXEC_BUF_SIZE,
                    .completion_signal = cb->xdna_addr}};
        struct xdna_aie4_hsa_exec_buf eb = {
            .ctrlcode_lo = (uint32_t)n.inst, .ctrlcode_hi = (uint32_t)(n.inst >> 32),
            .args_len = (uint16_t)(4 * n.nargs),
            .args_lo = (uint32_t)args, .args_hi = (uint32_t)(args >> 32)};
        memcpy(p.data, &eb, sizeof(eb));
        memcpy(base + PKTS_OFF + slot * XDNA_AIE4_HSA_PKT_SIZE, &p, sizeof(p));
        j->subs[i] = subs[i];
    }
    /* SUBMITTED before the doorbell, since the firmware may write the final state at once */
    for (uint32_t i = 0; i <= nsub; i++) {
        struct xdna_bo *cb = xdna_bo_get(ctx, i < nsub ? subs[i] : j->cmd_bo);
        uint32_t *h = cb ? (uint32_t *)cb->va : NULL;
        if (h)
            __atomic_store_n(h, (*h & ~0xFu) | XDNA_SHIM_ERT_STATE_SUBMITTED, __ATOMIC_RELEASE);
    }
    j->nsub = nsub;
    j->umq_end = hw->umq_wr + nsub;
    hw->umq_wr += nsub;
    __atomic_store_n(queue_index(q, offsetof(struct xdna_aie4_hsa_queue_header, write_index)),
                     hw->umq_wr, __ATOMIC_RELEASE);
    const struct xdna_bar_off *db = &ctx->chip->doorbells;
    return xdna_wr_auto(ctx, (struct xdna_loc){.bar = db->bar, .off = hw->doorbell}, 0);
}

/* Jobs whose packets read_index has passed end with the state the firmware wrote. */
void xdna_aie4_reap(struct xdna_shim_ctx *ctx, struct xdna_hwctx *hw)
{
    struct xdna_bo *q = hw->umq_bo ? xdna_bo_get(ctx, hw->umq_bo) : NULL;
    if (!q)
        return;
    uint64_t rd = queue_read_index(q);
    while (hw->njobs) {
        struct xdna_job *j = &hw->jobs[hw->job_head % XDNA_CTX_JOBS_MAX];
        if (!j->live || rd < j->umq_end)
            return;
        uint32_t state = XDNA_SHIM_ERT_STATE_COMPLETED, fail = 0;
        for (uint32_t i = 0; i < j->nsub; i++) {
            struct xdna_bo *cb = xdna_bo_get(ctx, j->subs[i]);
            uint32_t st = cb ? __atomic_load_n((uint32_t *)cb->va, __ATOMIC_ACQUIRE) & 0xF
                             : XDNA_SHIM_ERT_STATE_ERROR;
            if (st == XDNA_SHIM_ERT_STATE_COMPLETED)
                continue;
            /* a state the firmware could not write (bad signal) is an error */
            bool final = st == XDNA_SHIM_ERT_STATE_ERROR || st == XDNA_SHIM_ERT_STATE_ABORT ||
                         st == XDNA_SHIM_ERT_STATE_TIMEOUT;
            state = final ? st : XDNA_SHIM_ERT_STATE_ERROR;
            fail = i;
            break;
        }
        xdna_job_finish(ctx, hw, j, state, fail);
    }
}

/* The driver's async-event handling of CTX_ERROR: the context is reset. The firmware has
 * ended the hung job TIMEOUT and the published jobs behind it ABORT and moved read_index
 * past them (docs/spec/aie4.md §7); the shim keeps the health report for the hung job,
 * counts the reset (a submission waiting for room sees it and fails EAGAIN, claim_slot)
 * and reaps what read_index has passed. */
void xdna_aie4_ctx_error(struct xdna_shim_ctx *ctx, const struct xdna_aie4_ctx_error_event *ev)
{
    for (unsigned i = 0; i < XDNA_MAX_HWCTX; i++) {
        struct xdna_hwctx *hw = ctx->s.hw[i];
        if (!hw || !hw->fw_live || hw->fw_id != ev->ctx_id)
            continue;
        _Static_assert(sizeof(*ev) <= sizeof(hw->health), "the report fits the health record");
        memcpy(hw->health, ev, sizeof(*ev));
        hw->health_len = sizeof(*ev);
        hw->resets++;
        if (!hw->busy && !hw->umq_user)
            xdna_aie4_reap(ctx, hw);
        xdna_wake_all(ctx);
        return;
    }
}

/* ---- user-mode submission ------------------------------------------------------------- */

static struct xdna_hwctx *aie4_hw(struct xdna_shim_ctx *ctx, uint32_t handle, const char *what)
{
    if (!xdna_is_aie4(ctx->chip)) {
        xdna_fail(ctx, EOPNOTSUPP, "%s: %s has no user-mode queues", what, ctx->chip->name);
        return NULL;
    }
    for (unsigned i = 0; i < XDNA_MAX_HWCTX; i++) {
        struct xdna_hwctx *hw = ctx->s.hw[i];
        if (hw && hw->handle == handle && !hw->busy && hw->umq_bo && hw->fw_live)
            return hw;
    }
    xdna_fail(ctx, EINVAL, "%s: no live hardware context %u", what, handle);
    return NULL;
}

/* A context config call's runtime-PM get: a handle no context has (never made, or
 * destroyed) is refused first, as the driver looks the context up before it resumes the
 * device; other chips go on to aie4_hw's EOPNOTSUPP. */
static int aie4_rpm_get_for(struct xdna_shim_ctx *ctx, uint32_t handle, const char *what)
{
    if (!xdna_is_aie4(ctx->chip))
        return 0;
    for (unsigned i = 0; i < XDNA_MAX_HWCTX; i++)
        if (ctx->s.hw[i] && ctx->s.hw[i]->handle == handle)
            return xdna_rpm_get(ctx);
    return xdna_fail(ctx, EINVAL, "%s: no hardware context %u", what, handle);
}

int xdna_shim_umq(struct xdna_shim_ctx *ctx, uint32_t hwctx, struct xdna_shim_umq *out)
{
    if (xdna_api_enter(ctx) < 0)
        return -1;
    struct xdna_hwctx *hw = aie4_hw(ctx, hwctx, "umq");
    if (!hw || !out)
        return xdna_api_leave(ctx, hw ? xdna_fail(ctx, EINVAL, "umq: NULL out") : -1);
    if (hw->njobs)
        return xdna_api_leave(ctx, xdna_fail(ctx, EBUSY, "umq: context %u has %u jobs in flight",
                                             hwctx, hw->njobs));
    struct xdna_bo *q = xdna_bo_get(ctx, hw->umq_bo);
    q->internal = false; /* the application maps it now, but cannot free it under the firmware */
    q->busy++;
    hw->umq_user = true;
    *out = (struct xdna_shim_umq){.queue_bo = q->handle, .doorbell = hw->doorbell,
                                  .msix = hw->msix, .capacity = SLOTS,
                                  .queue_addr = q->xdna_addr};
    return xdna_api_leave(ctx, 0);
}

int xdna_shim_doorbell(struct xdna_shim_ctx *ctx, uint32_t hwctx)
{
    if (xdna_api_enter(ctx) < 0)
        return -1;
    struct xdna_hwctx *hw = aie4_hw(ctx, hwctx, "doorbell");
    if (!hw)
        return xdna_api_leave(ctx, -1);
    const struct xdna_bar_off *db = &ctx->chip->doorbells;
    return xdna_api_leave(ctx, xdna_wr_auto(ctx, (struct xdna_loc){.bar = db->bar,
                                                                   .off = hw->doorbell}, 0));
}

/* ---- CERT log (docs/spec/aie4.md §11) ------------------------------------------------- */

void xdna_aie4_log_release(struct xdna_shim_ctx *ctx, struct xdna_hwctx *hw)
{
    struct xdna_bo *bo = hw->log_bo ? xdna_bo_get(ctx, hw->log_bo) : NULL;
    if (bo && bo->busy)
        bo->busy--;
    hw->log_bo = hw->log_n = 0;
}

int xdna_shim_cert_log_attach(struct xdna_shim_ctx *ctx, uint32_t hwctx, uint32_t bo,
                              const struct xdna_shim_uc_log *ucs, uint32_t num_ucs)
{
    if (xdna_api_enter(ctx) < 0)
        return -1;
    /* a context config call: the handle is looked up, then the device resumes for it
     * (docs/spec/aie4.md §11) */
    if (aie4_rpm_get_for(ctx, hwctx, "cert_log_attach") < 0)
        return xdna_api_leave(ctx, -1);
    struct xdna_hwctx *hw = aie4_hw(ctx, hwctx, "cert_log_attach");
    if (!hw)
        return xdna_api_leave(ctx, -1);
    if (hw->log_bo)
        return xdna_api_leave(ctx, xdna_fail(ctx, EINVAL, "cert_log_attach: context %u has a"
                                             " log attached", hwctx));
    if (!ucs || num_ucs == 0 || num_ucs > XDNA_AIE4_CERT_LOG_UCS)
        return xdna_api_leave(ctx, xdna_fail(ctx, EINVAL, "cert_log_attach: %u slices, 1..%u",
                                             num_ucs, XDNA_AIE4_CERT_LOG_UCS));
    struct xdna_bo *b = xdna_bo_get(ctx, bo);
    if (!b || b->type != XDNA_SHIM_BO_DEV)
        return xdna_api_leave(ctx, xdna_fail(ctx, EINVAL, "cert_log_attach: BO %u is not a DEV"
                                             " BO", bo));
    uint64_t sum = 0;
    uint32_t seen = 0;
    for (uint32_t i = 0; i < num_ucs; i++) {
        uint32_t uc = ucs[i].uc_index;
        if (uc >= XDNA_AIE4_CERT_LOG_UCS || (seen >> uc & 1u))
            return xdna_api_leave(ctx, xdna_fail(ctx, EINVAL, "cert_log_attach: slice %u names"
                                                 " uC %u (0..%u, each once)", i, uc,
                                                 XDNA_AIE4_CERT_LOG_UCS - 1));
        if (ucs[i].size < sizeof(struct xdna_aie4_cert_log_header) + sizeof(struct xdna_aie4_cert_log_record))
            return xdna_api_leave(ctx, xdna_fail(ctx, EINVAL, "cert_log_attach: slice %u of %u"
                                                 " bytes holds no record", i, ucs[i].size));
        seen |= 1u << uc;
        sum += ucs[i].size;
    }
    if (sum > b->size)
        return xdna_api_leave(ctx, xdna_fail(ctx, EINVAL, "cert_log_attach: slices of %llu bytes"
                                             " exceed BO %u (%llu bytes)", (unsigned long long)sum,
                                             bo, (unsigned long long)b->size));
    hw->log_bo = bo;
    hw->log_n = num_ucs;
    memcpy(hw->log_ucs, ucs, num_ucs * sizeof(*ucs));
    b->busy++; /* bound to the context: not freed under the firmware */
    if (send_log(ctx, hw, true) < 0) {
        struct xdna_err e;
        xdna_err_save(ctx, &e);
        xdna_aie4_log_release(ctx, hw);
        return xdna_api_leave(ctx, xdna_err_restore(ctx, &e));
    }
    return xdna_api_leave(ctx, 0);
}

int xdna_shim_cert_log_detach(struct xdna_shim_ctx *ctx, uint32_t hwctx)
{
    if (xdna_api_enter(ctx) < 0)
        return -1;
    /* a context config call: the handle is looked up, then the device resumes for it
     * (docs/spec/aie4.md §11) */
    if (aie4_rpm_get_for(ctx, hwctx, "cert_log_detach") < 0)
        return xdna_api_leave(ctx, -1);
    struct xdna_hwctx *hw = aie4_hw(ctx, hwctx, "cert_log_detach");
    if (!hw)
        return xdna_api_leave(ctx, -1);
    if (!hw->log_bo)
        return xdna_api_leave(ctx, xdna_fail(ctx, EINVAL, "cert_log_detach: context %u has no"
                                             " log", hwctx));
    int rc = send_log(ctx, hw, false);
    xdna_aie4_log_release(ctx, hw);
    return xdna_api_leave(ctx, rc);
}
