/* Hardware contexts, command submission and TDR, the driver's aie2_ctx.c counterpart
 * (docs/spec/jobs.md §3, §4, §6; docs/spec/firmware.md §8).
 *
 * A context is created the way the driver's hwctx_start does it: CREATE_CONTEXT, the user
 * channel on the returned cq_pair and MSI-X vector, MAP_HOST_BUFFER/ADD_HOST_BUFFER for the
 * session heap, CONFIG_CU on the user channel without waiting. Commands go out as chain
 * messages (CHAIN_EXEC_NPU with slot_npu, or the legacy CHAIN_EXEC_DPU with slot_dpu when
 * the firmware lacks NPU_COMMAND) from one of 4 cmd-list buffers; responses arrive in order
 * and their state is written into the command BO header. TDR destroys a hung context,
 * times out its oldest command, aborts the rest and re-creates it under the same handle.
 */
#include "shim_int.h"
#include "parse.h"

#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BUSY_WAIT_MS 30000
#define HEALTH_BUF_SIZE XDNA_QUERY_BUF_SIZE /* the shim's GET_APP_HEALTH buffer */
#define DEBUG_BO_WAIT_MS 3000   /* the driver's wait for a debug-BO job */

/* ---- helpers -------------------------------------------------------------------------- */

static struct xdna_hwctx *hw_get(struct xdna_shim_ctx *ctx, uint32_t handle)
{
    if (handle == 0 || handle > XDNA_HWCTX_ID_MAX)
        return NULL;
    for (unsigned i = 0; i < XDNA_MAX_HWCTX; i++)
        if (ctx->s.hw[i] && ctx->s.hw[i]->handle == handle)
            return ctx->s.hw[i];
    return NULL;
}

/* The live context whose hardware-queue handle is h (other than self), or NULL. */
static struct xdna_hwctx *syncobj_owner(struct xdna_shim_ctx *ctx, uint32_t h,
                                        const struct xdna_hwctx *self)
{
    for (unsigned i = 0; i < XDNA_MAX_HWCTX; i++)
        if (ctx->s.hw[i] && ctx->s.hw[i] != self && ctx->s.hw[i]->syncobj == h)
            return ctx->s.hw[i];
    return NULL;
}

/* The next free id at or after the cyclic cursor, as the driver's xa_alloc_cyclic does. */
static uint32_t hw_next_id(struct xdna_shim_ctx *ctx)
{
    for (uint32_t n = 0; n < XDNA_HWCTX_ID_MAX; n++) {
        uint32_t id = (ctx->s.next_hwctx_id + n) % XDNA_HWCTX_ID_MAX + 1;
        if (!hw_get(ctx, id)) {
            ctx->s.next_hwctx_id = id % XDNA_HWCTX_ID_MAX;
            return id;
        }
    }
    return 0;
}


static uint32_t *hdr_of(struct xdna_bo *bo) { return (uint32_t *)bo->va; }

static void set_state(struct xdna_bo *bo, uint32_t state)
{
    uint32_t *h = hdr_of(bo);
    uint32_t v = __atomic_load_n(h, __ATOMIC_RELAXED);
    __atomic_store_n(h, (v & ~0xFu) | (state & 0xFu), __ATOMIC_RELEASE);
}

/* Wait (lock released) until the context is not inside another create/destroy/recovery. */
static int hw_claim(struct xdna_shim_ctx *ctx, uint32_t handle, struct xdna_hwctx **out)
{
    uint64_t deadline = xdna_deadline(BUSY_WAIT_MS);
    for (;;) {
        struct xdna_hwctx *hw = hw_get(ctx, handle);
        if (!hw)
            return xdna_fail(ctx, EINVAL, "no hardware context with handle %u", handle);
        if (!hw->busy) {
            hw->busy = true;
            *out = hw;
            return 0;
        }
        if (xdna_cond_wait(ctx, deadline) < 0)
            return xdna_fail(ctx, EBUSY, "hardware context %u stayed busy", handle);
    }
}

static void hw_release(struct xdna_shim_ctx *ctx, struct xdna_hwctx *hw)
{
    hw->busy = false;
    xdna_wake_all(ctx);
}

unsigned xdna_hwctx_pending(struct xdna_shim_ctx *ctx)
{
    unsigned n = 0;
    for (unsigned i = 0; i < XDNA_MAX_HWCTX; i++)
        if (ctx->s.hw[i])
            n += ctx->s.hw[i]->njobs + (ctx->s.hw[i]->busy ? 1u : 0u);
    return n;
}

unsigned xdna_hwctx_live(struct xdna_shim_ctx *ctx)
{
    unsigned n = 0;
    for (unsigned i = 0; i < XDNA_MAX_HWCTX; i++)
        n += ctx->s.hw[i] != NULL;
    return n;
}

/* ---- jobs ----------------------------------------------------------------------------- */

static struct xdna_job *job_at(struct xdna_hwctx *hw, unsigned i)
{
    return &hw->jobs[(hw->job_head + i) % XDNA_CTX_JOBS_MAX];
}

static struct xdna_job *job_find(struct xdna_hwctx *hw, uint64_t seq)
{
    for (unsigned i = 0; i < hw->njobs; i++) {
        struct xdna_job *j = job_at(hw, i);
        if (j->live && j->seq == seq)
            return j;
    }
    return NULL;
}

/* The context's health record as the driver composes it from the last GET_APP_HEALTH
 * report (docs/spec/jobs.md §6); without one, the driver's "not captured" defaults. */
static struct xdna_aie2_ctx_health_data health_record(const struct xdna_hwctx *hw)
{
    struct xdna_aie2_ctx_health_data h = {
        .version = XDNA_AIE2_CTX_HEALTH_V1,
        .npu_gen = XDNA_AIE2_NPU_GEN_AIE2,
        .txn_op_idx = XDNA_AIE2_TXN_OP_NONE,
    };
    if (hw->health_len >= sizeof(struct xdna_aie2_app_health_report)) {
        struct xdna_aie2_app_health_report r;
        struct xdna_aie2_fatal_error_info f;
        memcpy(&r, hw->health, sizeof(r));
        memcpy(&f, r.fatal_error_info, sizeof(f));
        h.txn_op_idx = r.txn_op_id;
        h.ctx_pc = r.ctx_pc;
        h.fatal_error_type = f.fatal_type;
        h.fatal_error_exception_type = f.exception_type;
        h.fatal_error_exception_pc = f.exception_pc;
        h.fatal_error_app_module = f.app_module;
    }
    return h;
}

/* The command that hung in a chain: the report's dpu_pc (its index), else the first. */
static uint32_t hung_index(const struct xdna_hwctx *hw, uint32_t count)
{
    if (hw->health_len < sizeof(struct xdna_aie2_app_health_report))
        return 0;
    struct xdna_aie2_app_health_report r;
    memcpy(&r, hw->health, sizeof(r));
    return r.dpu_pc < count ? r.dpu_pc : 0;
}

/* Health record into a command BO's payload (after its CU masks), if the BO holds it. */
static void put_health(struct xdna_bo *bo, const struct xdna_aie2_ctx_health_data *h)
{
    struct xdna_parse_cmd c;
    if (!bo || bo->type != XDNA_SHIM_BO_CMD ||
        xdna_parse_cmd_hdr(bo->va, bo->size, &c) != XDNA_PARSE_OK ||
        4ull * c.pay + sizeof(*h) > bo->size)
        return;
    memcpy((uint8_t *)bo->va + 4ull * c.pay, h, sizeof(*h));
}

/* Write the final state, release pins and the cmd-list buffer, pop finished jobs. A
 * TIMEOUT carries the context's health record: in the command's payload, for a chain in
 * the sub-command that hung, which error_index then names. */
void xdna_job_finish(struct xdna_shim_ctx *ctx, struct xdna_hwctx *hw, struct xdna_job *j,
                     uint32_t state, uint32_t fail_idx)
{
    struct xdna_bo *cmd = xdna_bo_get(ctx, j->cmd_bo);
    if (cmd && state == XDNA_SHIM_ERT_STATE_TIMEOUT && !xdna_is_aie4(ctx->chip)) {
        struct xdna_aie2_ctx_health_data h = health_record(hw);
        uint32_t *w = hdr_of(cmd);
        if (((w[0] >> 23) & 0x1F) == XDNA_SHIM_ERT_CMD_CHAIN) {
            struct xdna_parse_chain chn;
            if (xdna_parse_chain(cmd->va, cmd->size, j->cmd_bo, XDNA_MAX_BOS, &chn) ==
                XDNA_PARSE_OK) {
                uint32_t idx = hung_index(hw, chn.n);
                struct xdna_bo *sub = xdna_bo_get(ctx, (uint32_t)chn.handle[idx]);
                put_health(sub, &h);
                if (sub)
                    set_state(sub, XDNA_SHIM_ERT_STATE_TIMEOUT);
                w[1 + 2] = idx; /* error_index */
            }
        } else {
            put_health(cmd, &h);
        }
    }
    if (cmd) {
        uint32_t h = *hdr_of(cmd);
        if (((h >> 23) & 0x1F) == XDNA_SHIM_ERT_CMD_CHAIN && state == XDNA_SHIM_ERT_STATE_ERROR) {
            uint32_t *payload = hdr_of(cmd) + 1; /* no CU masks: {count, submit, error_index} */
            uint32_t count = payload[0];
            payload[2] = fail_idx < count ? fail_idx : 0;
        }
        set_state(cmd, state);
        if (cmd->busy)
            cmd->busy--;
    }
    for (unsigned i = 0; i < j->npins; i++) {
        struct xdna_bo *bo = xdna_bo_get(ctx, j->pins[i]);
        if (bo && bo->busy)
            bo->busy--;
    }
    if (j->cmdlist < XDNA_CTX_MAX_CMDS)
        hw->cmdlist_used[j->cmdlist] = false;
    j->live = false;
    switch (state) {
    case XDNA_SHIM_ERT_STATE_COMPLETED: hw->completed++; break;
    case XDNA_SHIM_ERT_STATE_TIMEOUT: hw->timeouts++; break;
    case XDNA_SHIM_ERT_STATE_ABORT: hw->aborts++; break;
    default: hw->errors++; break;
    }
    while (hw->njobs && !job_at(hw, 0)->live) {
        hw->job_head = (hw->job_head + 1) % XDNA_CTX_JOBS_MAX;
        hw->njobs--;
    }
    ctx->s.last_active_ns = hw->active_ns = xdna_now_ns();
    xdna_wake_all(ctx);
}

static void *job_arg(uint32_t handle, uint64_t seq)
{
    return (void *)(uintptr_t)(((uint64_t)handle << 48) | (seq & 0xFFFFFFFFFFFFull));
}

/* The user channel's chain response {status, fail_cmd_idx, fail_cmd_status}. */
static void job_cb(struct xdna_shim_ctx *ctx, void *arg, int err, const uint8_t *resp,
                   size_t len)
{
    uint64_t a = (uint64_t)(uintptr_t)arg;
    struct xdna_hwctx *hw = hw_get(ctx, (uint32_t)(a >> 48));
    if (!hw)
        return;
    struct xdna_job *j = job_find(hw, a & 0xFFFFFFFFFFFFull);
    if (!j)
        return; /* already ended by TDR or destroy */
    hw->completions++;
    if (err) {
        /* EINVAL: response of the wrong size; otherwise the channel went away */
        xdna_job_finish(ctx, hw, j, err == EINVAL ? XDNA_SHIM_ERT_STATE_ERROR : XDNA_SHIM_ERT_STATE_ABORT, 0);
        return;
    }
    struct xdna_aie2_chain_resp r = {.status = 1}; /* no status word: an error */
    memcpy(&r, resp, len < sizeof(r) ? len : sizeof(r));
    xdna_job_finish(ctx, hw, j, r.status == 0 ? XDNA_SHIM_ERT_STATE_COMPLETED : XDNA_SHIM_ERT_STATE_ERROR,
               r.fail_cmd_idx);
}

static void cu_cb(struct xdna_shim_ctx *ctx, void *arg, int err, const uint8_t *resp, size_t len)
{
    struct xdna_hwctx *hw = hw_get(ctx, (uint32_t)(uintptr_t)arg);
    if (!hw || err)
        return;
    xdna_aie2_config_cu_resp_t r = {0};
    if (len >= sizeof(r))
        memcpy(&r, resp, sizeof(r));
    hw->cu_status = r.status;
    if (hw->cu_status)
        xdna_fail(ctx, EIO, "context %u: CONFIG_CU failed, status %#x", hw->handle, hw->cu_status);
}

/* The CONFIG_DEBUG_BO answer (or the channel going away: status all ones). */
static void dbg_cb(struct xdna_shim_ctx *ctx, void *arg, int err, const uint8_t *resp, size_t len)
{
    struct xdna_hwctx *hw = hw_get(ctx, (uint32_t)(uintptr_t)arg);
    if (!hw)
        return;
    xdna_aie2_config_debug_bo_resp_t r = {.status = UINT32_MAX};
    if (!err && len >= sizeof(r))
        memcpy(&r, resp, sizeof(r));
    hw->dbg_status = r.status;
    hw->dbg_done = true;
    xdna_wake_all(ctx);
}

/* CONFIG_DEBUG_BO for bo on the context's user channel (docs/spec/jobs.md §4a). */
static int dbg_post(struct xdna_shim_ctx *ctx, struct xdna_hwctx *hw, const struct xdna_bo *bo,
                    uint32_t config)
{
    xdna_aie2_config_debug_bo_req_t req = {.offset = bo->heap_off, .size = bo->size,
                                           .config = config};
    hw->dbg_done = false;
    return xdna_mbox_post_cb(ctx, &hw->chan, XDNA_AIE2_MSG_CONFIG_DEBUG_BO, &req, sizeof(req),
                             XDNA_AIE2_MSG_CONFIG_DEBUG_BO_RESP_SIZE, false, dbg_cb,
                             (void *)(uintptr_t)hw->handle);
}

/* A polled (TURBO) channel raises no interrupt, so a wait on it sleeps in short slices
 * and looks at its ring after each: the end of the next slice, or ``deadline``. In
 * deterministic mode the wait hook returns after every daemon step that did anything, and
 * lets virtual time pass only to the next device timer, monitor duty or ``deadline``: the
 * ring can change only in a step, so the wait sleeps to ``deadline`` and looks after each
 * step, at the same virtual times, without a hook call per slice (docs/spec/fuzzing.md §9). */
static uint64_t poll_until(struct xdna_shim_ctx *ctx, uint64_t deadline)
{
    if (ctx->s.no_monitor && xdna_hooks())
        return deadline;
    uint64_t slice = xdna_now_ns() + XDNA_POLL_SLICE_NS;
    return slice < deadline ? slice : deadline;
}

/* ... and wait for its status, as the driver waits for its debug-BO job. */
static int dbg_call(struct xdna_shim_ctx *ctx, struct xdna_hwctx *hw, const struct xdna_bo *bo,
                    uint32_t config)
{
    if (dbg_post(ctx, hw, bo, config) < 0)
        return -1;
    uint64_t deadline = xdna_deadline(DEBUG_BO_WAIT_MS);
    while (!hw->dbg_done) {
        xdna_hwctx_client_boot_check(ctx); /* its ring may be another firmware's now */
        if (hw->polled && hw->chan.active)
            xdna_mbox_rx(ctx, &hw->chan);
        if (hw->dbg_done)
            break;
        uint64_t until = hw->polled ? poll_until(ctx, deadline) : deadline;
        if (xdna_cond_wait(ctx, until) < 0 && until == deadline && !hw->dbg_done)
            return xdna_fail(ctx, ETIME, "context %u: no CONFIG_DEBUG_BO answer within %d ms",
                             hw->handle, DEBUG_BO_WAIT_MS);
    }
    if (hw->gone) /* its firmware went while it waited (xdna_hwctx_client_boot_check) */
        return xdna_fail(ctx, ENODEV, "context %u: the device was stopped or reset", hw->handle);
    if (hw->dbg_status)
        return xdna_fail(ctx, EINVAL, "context %u: CONFIG_DEBUG_BO (config %u) status %#x",
                         hw->handle, config, hw->dbg_status);
    return 0;
}

/* ---- firmware side of a context ------------------------------------------------------- */

static uint32_t usable_cols(struct xdna_shim_ctx *ctx)
{
    uint32_t first = ctx->chip->first_col, total = ctx->info.total_col;
    return total > first ? total - first : 0;
}

static int pick_cols(struct xdna_shim_ctx *ctx, struct xdna_hwctx *hw)
{
    uint32_t first = ctx->chip->first_col, total = ctx->info.total_col;
    uint32_t n = hw->params.num_cols ? hw->params.num_cols : usable_cols(ctx);
    if (n == 0 || n > usable_cols(ctx))
        return xdna_fail(ctx, EINVAL, "hwctx: %u columns requested, %u usable", n, usable_cols(ctx));
    hw->num_col = n;
    if (hw->params.start_col >= 0) {
        if ((uint32_t)hw->params.start_col < first || (uint32_t)hw->params.start_col + n > total)
            return xdna_fail(ctx, EINVAL, "hwctx: columns %d..%u outside %u..%u",
                             hw->params.start_col, hw->params.start_col + n - 1, first, total - 1);
        hw->start_col = (uint32_t)hw->params.start_col;
        return 0;
    }
    hw->start_col = first;
    if (ctx->chip->temporal_only)
        return 0;
    for (uint32_t s = first; s + n <= total; s++) { /* spatial: avoid our own contexts */
        bool clash = false;
        for (unsigned i = 0; i < XDNA_MAX_HWCTX && !clash; i++) {
            struct xdna_hwctx *o = ctx->s.hw[i];
            if (o && o != hw && o->fw_live && s < o->start_col + o->num_col &&
                o->start_col < s + n)
                clash = true;
        }
        if (!clash) {
            hw->start_col = s;
            return 0;
        }
    }
    return 0; /* let the firmware say NOAVAIL */
}

/* DESTROY_CONTEXT (best effort) and close the user channel; pending jobs get ABORT. */
static void fw_stop(struct xdna_shim_ctx *ctx, struct xdna_hwctx *hw, bool destroy)
{
    if (xdna_is_aie4(ctx->chip)) { /* HSA queue, no user channel (docs/spec/aie4.md §8) */
        xdna_aie4_ctx_stop(ctx, hw, destroy);
        return;
    }
    /* stop the channel first, as the driver does: the firmware tears its ring down */
    xdna_mbox_destroy(ctx, &hw->chan);
    if (hw->fw_live && destroy && !ctx->sock_dead) {
        xdna_aie2_destroy_context_req_t req = {.context_id = hw->fw_id};
        xdna_aie2_destroy_context_resp_t st;
        xdna_fw_call(ctx, XDNA_AIE2_MSG_DESTROY_CONTEXT, &req, sizeof(req), &st, sizeof(st));
    }
    hw->fw_live = false;
    xdna_wake_monitor(ctx);
}

/* CREATE_CONTEXT, user channel, host buffers, CONFIG_CU (the driver's hwctx_start). */
int xdna_hwctx_heap_give(struct xdna_shim_ctx *ctx, struct xdna_hwctx *hw)
{
    for (unsigned i = 0; i < ctx->s.nheap; i++) {
        const struct xdna_bo *chunk = xdna_bo_get(ctx, ctx->s.heap_chunk[i]);
        for (uint64_t off = 0; chunk && off < chunk->alloc; off += XDNA_HEAP_CHUNK) {
            uint64_t at = chunk->heap_off + off; /* where this 64 MiB sits in the heap */
            if (at < hw->heap_given)
                continue;
            struct xdna_aie2_host_buffer_req hb = {
                .context_id = hw->fw_id,
                .buf_addr = chunk->dma_addr + off, /* chunk VA (SVA) or IOVA */
                .buf_size = XDNA_HEAP_CHUNK,
            };
            if (xdna_fw_req(ctx, at == 0 ? XDNA_AIE2_MSG_MAP_HOST_BUFFER
                                         : XDNA_AIE2_MSG_ADD_HOST_BUFFER,
                            &hb, sizeof(hb), NULL, 0) < 0)
                return -1;
            hw->heap_given = at + XDNA_HEAP_CHUNK;
        }
    }
    return 0;
}

static void vec_release(struct xdna_shim_ctx *ctx, struct xdna_hwctx *hw, unsigned vec);

static int fw_start(struct xdna_shim_ctx *ctx, struct xdna_hwctx *hw)
{
    if (hw->gone)
        return xdna_fail(ctx, ENODEV, "hwctx %u: the firmware it was made on was stopped",
                         hw->handle);
    if (xdna_is_aie4(ctx->chip))
        return xdna_aie4_ctx_start(ctx, hw);
    struct xdna_bo *heap = xdna_bo_get(ctx, ctx->s.heap);
    if (!heap)
        return xdna_fail(ctx, EINVAL, "hwctx: the session has no heap");
    if (pick_cols(ctx, hw) < 0)
        return -1;
    hw->polled = ctx->s.power_mode == XDNA_SHIM_POWER_TURBO;
    xdna_aie2_create_context_req_t req = {
        .aie_type = 1,
        .start_col = (uint8_t)hw->start_col,
        .num_col = (uint8_t)hw->num_col,
        .num_cq_pairs_requested = 1,
        .pasid = ctx->iommu_iova ? 0 : (uint16_t)ctx->info.pasid, /* 0: DMA addresses */
        .context_priority = hw->prio,
    };
    xdna_aie2_create_context_resp_t r;
    if (xdna_fw_call(ctx, XDNA_AIE2_MSG_CREATE_CONTEXT, &req, sizeof(req), &r, sizeof(r)) < 0)
        return -1;
    struct xdna_parse_create_resp cr;
    int pr = xdna_parse_create_resp((const uint8_t *)&r, sizeof(r), ctx->nvec, &cr);
    uint32_t status = cr.status;
    if (pr == XDNA_PARSE_STATUS_BUSY)
        return xdna_fail(ctx, EBUSY, "CREATE_CONTEXT: no context or columns available (status %#x)",
                         status);
    if (!cr.fw_live)
        return xdna_fail(ctx, pr == XDNA_PARSE_STATUS_INVAL ? EINVAL : EIO,
                         "CREATE_CONTEXT failed, status %#x", status);
    hw->fw_id = cr.ctx_id;
    hw->fw_live = true;
    uint16_t msix = cr.msix;
    struct xdna_aie2_mgmt_mbox_chann_info ci = {0};
    ci.x2i_head = cr.a.x2i_head; /* cq_pair[0] */
    ci.x2i_tail = cr.a.x2i_tail;
    ci.x2i_buf = cr.a.x2i_buf;
    ci.x2i_buf_sz = cr.a.x2i_buf_sz;
    ci.i2x_head = cr.a.i2x_head;
    ci.i2x_tail = cr.a.i2x_tail;
    ci.i2x_buf = cr.a.i2x_buf;
    ci.i2x_buf_sz = cr.a.i2x_buf_sz;
    ci.msi_id = msix;
    hw->msix = msix;
    bool took_vec = false;
    if (pr == XDNA_PARSE_NO_CQ) {
        xdna_fail(ctx, EINVAL, "CREATE_CONTEXT: %u cq pairs allocated", cr.ncq);
        goto destroy_context;
    }
    if (pr == XDNA_PARSE_BAD_MSIX) {
        xdna_fail(ctx, EINVAL, "CREATE_CONTEXT: msix_id %u >= %u vectors", msix, ctx->nvec);
        goto destroy_context;
    }
    if (xdna_mbox_create(ctx, &hw->chan, "user", &ci) < 0) /* apertures, power-of-2 rings */
        goto destroy_context;
    if (!hw->polled && xdna_irq_own(ctx, msix) < 0)
        goto destroy_context;
    took_vec = !hw->polled; /* a failure from here gives it back (docs/spec/jobs.md §3a) */
    hw->heap_given = 0;
    if (xdna_hwctx_heap_give(ctx, hw) < 0)
        goto destroy_context;
    /* the client's CU table, or one CU whose "PDI" is the heap base */
    xdna_aie2_config_cu_req_t cu = {
        .num_cus = 1,
        .cfgs = {(uint32_t)((XDNA_AIE2_HEAP_DEV_ADDR >> XDNA_AIE2_CU_PDI_SHIFT) & 0x1FFFF)},
    };
    if (hw->cu_user) {
        cu.num_cus = hw->num_cus;
        memcpy(cu.cfgs, hw->cu_cfg, sizeof(hw->cu_cfg));
    }
    hw->cu_status = 0;
    if (xdna_mbox_post_cb(ctx, &hw->chan, XDNA_AIE2_MSG_CONFIG_CU, &cu, sizeof(cu),
                          XDNA_AIE2_MSG_CONFIG_CU_RESP_SIZE, true, cu_cb,
                          (void *)(uintptr_t)hw->handle) < 0)
        goto destroy_context;
    struct xdna_bo *dbg = hw->dbg_bo ? xdna_bo_get(ctx, hw->dbg_bo) : NULL;
    if (dbg && dbg_post(ctx, hw, dbg, 1) < 0) /* a re-created context gets its debug BO back */
        goto destroy_context;
    hw->state = XDNA_SHIM_HWCTX_ACTIVE;
    hw->connects++;
    hw->tick_pending = false;
    hw->idle_ticks = 0;
    hw->tick_submitted = hw->submitted;
    xdna_wake_monitor(ctx);
    return 0;

destroy_context: { /* DESTROY_CONTEXT, the channel and the vector, keeping this failure */
        struct xdna_err e;
        xdna_err_save(ctx, &e);
        fw_stop(ctx, hw, true);
        if (took_vec)
            vec_release(ctx, hw, msix);
        return xdna_err_restore(ctx, &e);
    }
}

/* ---- the context runqueue (docs/spec/jobs.md §3a) ---------------------------------------- */

/* Disconnect an idle context (to make room, or after its idle ticks): DESTROY_CONTEXT, its
 * vector back; it reconnects when its next job arrives. */
static void swap_out(struct xdna_shim_ctx *ctx, struct xdna_hwctx *v, bool idle)
{
    v->busy = true;
    unsigned vec = v->msix;
    bool irq = v->fw_live && !v->polled;
    fw_stop(ctx, v, true);
    if (irq)
        vec_release(ctx, v, vec);
    v->state = XDNA_SHIM_HWCTX_IDLE;
    if (idle)
        v->idle_outs++;
    else
        v->swaps++;
    hw_release(ctx, v);
}

/* The least recently active connected context with nothing pending, other than hw. */
static struct xdna_hwctx *pick_victim(struct xdna_shim_ctx *ctx, const struct xdna_hwctx *hw)
{
    struct xdna_hwctx *best = NULL;
    for (unsigned i = 0; i < XDNA_MAX_HWCTX; i++) {
        struct xdna_hwctx *o = ctx->s.hw[i];
        if (o && o != hw && o->fw_live && o->state == XDNA_SHIM_HWCTX_ACTIVE && !o->busy &&
            o->njobs == 0 && (!best || o->active_ns < best->active_ns))
            best = o;
    }
    return best;
}

/* Connect a context to the firmware (the runqueue's dispatch): when no firmware context or
 * columns are free, swap out an idle one of ours; with none, ask the other sessions (the
 * ctrl page's RQ_ASK, docs/spec/jobs.md §3a) and wait until a firmware context goes away
 * anywhere (CTX_GEN moves) or one of ours becomes idle. As the driver's runqueue keeps a
 * context waiting while others free partitions, the wait starts over whenever one came
 * free, even if another context took it first: EBUSY only when none came free within the
 * mailbox timeout. */
static int rq_connect(struct xdna_shim_ctx *ctx, struct xdna_hwctx *hw)
{
    uint64_t deadline = xdna_deadline(ctx->timeouts[XDNA_SHIM_TIMEOUT_MBOX_RX]);
    for (;;) {
        uint32_t gen = xdna_ctrl_get(ctx, XDNA_PROTO_CTRL_OFF_CTX_GEN);
        if (fw_start(ctx, hw) == 0)
            return 0;
        if (errno != EBUSY)
            return -1;
        struct xdna_hwctx *v = pick_victim(ctx, hw);
        if (v) {
            swap_out(ctx, v, false);
            continue;
        }
        xdna_ctrl_set(ctx, XDNA_PROTO_CTRL_OFF_RQ_ASK,
                      xdna_ctrl_get(ctx, XDNA_PROTO_CTRL_OFF_RQ_ASK) + 1);
        while (gen == xdna_ctrl_get(ctx, XDNA_PROTO_CTRL_OFF_CTX_GEN) && !pick_victim(ctx, hw))
            if (xdna_cond_wait(ctx, deadline) < 0)
                return xdna_fail(ctx, EBUSY, "context %u: no partition became free", hw->handle);
        if (gen != xdna_ctrl_get(ctx, XDNA_PROTO_CTRL_OFF_CTX_GEN))
            deadline = xdna_deadline(ctx->timeouts[XDNA_SHIM_TIMEOUT_MBOX_RX]);
    }
}

void xdna_hwctx_rq_yield(struct xdna_shim_ctx *ctx)
{
    struct xdna_drv_state *s = &ctx->s;
    uint32_t asks = xdna_ctrl_get(ctx, XDNA_PROTO_CTRL_OFF_RQ_ASKS);
    if (asks != s->rq_asks_seen) {
        s->rq_asks_seen = asks;
        s->rq_owed = true;
    }
    if (!s->rq_owed || xdna_is_aie4(ctx->chip))
        return;
    struct xdna_hwctx *v = pick_victim(ctx, NULL);
    if (v) {
        swap_out(ctx, v, false);
        s->rq_owed = false;
    }
}

static void hw_free(struct xdna_shim_ctx *ctx, struct xdna_hwctx *hw)
{
    struct xdna_bo *dbg = hw->dbg_bo ? xdna_bo_get(ctx, hw->dbg_bo) : NULL;
    if (dbg && dbg->dbg_ctx == hw->handle) /* the firmware forgot it with the context */
        dbg->dbg_ctx = 0;
    xdna_aie4_log_release(ctx, hw);
    if (hw->umq_bo) { /* AIE4 queue BO */
        struct xdna_bo *bo = xdna_bo_get(ctx, hw->umq_bo);
        if (bo)
            bo->busy = 0;
        xdna_bo_release(ctx, hw->umq_bo);
    }
    for (unsigned i = 0; i < XDNA_CTX_MAX_CMDS; i++)
        if (hw->cmdlist_bo[i]) {
            struct xdna_bo *bo = xdna_bo_get(ctx, hw->cmdlist_bo[i]);
            if (bo)
                bo->busy = 0;
            xdna_bo_release(ctx, hw->cmdlist_bo[i]);
        }
    ctx->s.hw[hw->slot] = NULL;
    free(hw);
    xdna_ctrl_set(ctx, XDNA_PROTO_CTRL_OFF_HWCTX_LIVE, xdna_hwctx_live(ctx));
    xdna_wake_all(ctx);
}

/* Every pending job ends: the oldest with first_state, the rest ABORT. On AIE4 the jobs the
 * firmware already finished keep the state it wrote first (docs/spec/aie4.md §8). */
static void end_jobs(struct xdna_shim_ctx *ctx, struct xdna_hwctx *hw, uint32_t first_state)
{
    bool first = true;
    if (xdna_is_aie4(ctx->chip))
        xdna_aie4_reap(ctx, hw);
    while (hw->njobs) {
        struct xdna_job *j = job_at(hw, 0);
        if (j->live) {
            xdna_job_finish(ctx, hw, j, first ? first_state : XDNA_SHIM_ERT_STATE_ABORT, 0);
            first = false;
        } else {
            hw->job_head = (hw->job_head + 1) % XDNA_CTX_JOBS_MAX;
            hw->njobs--;
        }
    }
}

static int query_health(struct xdna_shim_ctx *ctx, struct xdna_hwctx *hw)
{
    if (!xdna_has_feature(ctx, XDNA_FEAT_GET_APP_HEALTH))
        return xdna_fail(ctx, EOPNOTSUPP, "firmware %u.%u has no GET_APP_HEALTH",
                         ctx->info.protocol_major, ctx->info.protocol_minor);
    if (!hw->fw_live)
        return xdna_fail(ctx, ENODEV, "context %u is not known to the firmware", hw->handle);
    uint64_t addr;
    uint8_t *va;
    if (xdna_health_buf(ctx, &addr, &va) < 0)
        return -1;
    xdna_aie2_get_app_health_req_t req = {
        .context_id = hw->fw_id,
        .buf_size = HEALTH_BUF_SIZE,
        .buf_addr = addr,
    };
    xdna_aie2_get_app_health_resp_t resp;
    memset(va, 0, XDNA_AIE2_APP_HEALTH_REPORT_SIZE);
    if (xdna_fw_req(ctx, XDNA_AIE2_MSG_GET_APP_HEALTH, &req, sizeof(req), &resp, sizeof(resp)) < 0)
        return -1;
    uint32_t need = resp.required_buffer_size;
    uint32_t n = need && need < XDNA_HEALTH_MAX ? need : XDNA_AIE2_APP_HEALTH_REPORT_SIZE;
    memcpy(hw->health, va, n);
    hw->health_len = n;
    return 0;
}

/* Give back a context's MSI-X vector unless another live context of ours uses it: a later
 * context of another session may get it (the firmware picks vectors by context id). */
static void vec_release(struct xdna_shim_ctx *ctx, struct xdna_hwctx *hw, unsigned vec)
{
    for (unsigned i = 0; i < XDNA_MAX_HWCTX; i++)
        if (ctx->s.hw[i] && ctx->s.hw[i]->fw_live && !ctx->s.hw[i]->polled &&
            ctx->s.hw[i]->msix == vec && (ctx->s.hw[i] != hw || hw->fw_live))
            return;
    if (vec != ctx->mgmt.msix)
        xdna_irq_release(ctx, vec);
}

/* TDR recovery of one context (monitor thread). */
static void recover(struct xdna_shim_ctx *ctx, struct xdna_hwctx *hw)
{
    bool had_irq = hw->fw_live && !hw->polled;
    unsigned vec = hw->msix;
    hw->busy = true;
    hw->health_len = 0; /* no stale report in the TIMEOUT record */
    query_health(ctx, hw); /* best effort: kept for xdna_shim_app_health and the record */
    end_jobs(ctx, hw, XDNA_SHIM_ERT_STATE_TIMEOUT);
    fw_stop(ctx, hw, true);
    if (fw_start(ctx, hw) < 0)
        hw->state = XDNA_SHIM_HWCTX_BROKEN;
    /* re-created under another id, or not at all: the old vector is free (vec_release
     * keeps it while a live context of ours still uses it) */
    if (had_irq && (vec != hw->msix || !hw->fw_live))
        vec_release(ctx, hw, vec);
    hw->completions++;
    hw_release(ctx, hw);
}

void xdna_hwctx_tdr_tick(struct xdna_shim_ctx *ctx)
{
    if (xdna_is_aie4(ctx->chip)) { /* the firmware's context timeout does it (docs/spec/aie4.md §7) */
        xdna_aie4_tdr(ctx);
        return;
    }
    for (unsigned i = 0; i < XDNA_MAX_HWCTX; i++) {
        struct xdna_hwctx *hw = ctx->s.hw[i];
        if (!hw || hw->busy)
            continue;
        if (hw->njobs && hw->tick_pending && hw->completions == hw->tick_completions)
            recover(ctx, hw);
        hw = ctx->s.hw[i];
        if (!hw)
            continue;
        hw->tick_pending = hw->njobs > 0;
        hw->tick_completions = hw->completions;
        /* the runqueue: connected with nothing to do since the last tick, for
         * XDNA_RQ_IDLE_TICKS ticks in a row, it is disconnected (docs/spec/jobs.md §3a) */
        bool idle = hw->state == XDNA_SHIM_HWCTX_ACTIVE && hw->fw_live && !hw->busy &&
                    hw->njobs == 0 && hw->submitted == hw->tick_submitted;
        hw->tick_submitted = hw->submitted;
        hw->idle_ticks = idle ? hw->idle_ticks + 1 : 0;
        if (hw->idle_ticks >= XDNA_RQ_IDLE_TICKS)
            swap_out(ctx, hw, true);
    }
}

/* End every active context's jobs ABORT and stop its firmware context, telling the firmware
 * (DESTROY_CONTEXT) only with destroy. With release its MSI-X vector goes back as at a
 * disconnection: the next firmware gives that vector to whichever session's context gets the
 * id first, and the context takes a vector again when it restarts (docs/spec/jobs.md §3a);
 * without, a reset to come frees them all. */
static void stop_each(struct xdna_shim_ctx *ctx, bool destroy, bool release)
{
    for (unsigned i = 0; i < XDNA_MAX_HWCTX; i++) {
        struct xdna_hwctx *hw = ctx->s.hw[i];
        if (!hw || hw->state != XDNA_SHIM_HWCTX_ACTIVE)
            continue;
        unsigned vec = hw->msix;
        bool irq = hw->fw_live && !hw->polled;
        end_jobs(ctx, hw, XDNA_SHIM_ERT_STATE_ABORT);
        fw_stop(ctx, hw, destroy);
        if (irq && release && !ctx->sock_dead)
            vec_release(ctx, hw, vec);
        hw->state = XDNA_SHIM_HWCTX_IDLE;
    }
}

void xdna_hwctx_stop_all(struct xdna_shim_ctx *ctx)
{
    stop_each(ctx, true, true);
}

/* A reset is coming (AIE4 FLR reset_prepare): end the jobs ABORT and forget the firmware
 * contexts without telling the firmware. */
void xdna_hwctx_drop_all(struct xdna_shim_ctx *ctx)
{
    stop_each(ctx, false, false);
}

void xdna_hwctx_forget_all(struct xdna_shim_ctx *ctx)
{
    for (unsigned i = 0; i < XDNA_MAX_HWCTX; i++)
        if (ctx->s.hw[i])
            hw_free(ctx, ctx->s.hw[i]);
}

int xdna_hwctx_restart_all(struct xdna_shim_ctx *ctx)
{
    int rc = 0;
    for (unsigned i = 0; i < XDNA_MAX_HWCTX; i++) {
        struct xdna_hwctx *hw = ctx->s.hw[i];
        if (!hw || hw->state == XDNA_SHIM_HWCTX_ACTIVE)
            continue;
        if (fw_start(ctx, hw) < 0) {
            if (errno == EBUSY) { /* more contexts than partitions: connected on demand */
                hw->state = XDNA_SHIM_HWCTX_IDLE;
                continue;
            }
            hw->state = XDNA_SHIM_HWCTX_BROKEN;
            rc = -1;
        }
    }
    return rc;
}

void xdna_hwctx_destroy_all(struct xdna_shim_ctx *ctx)
{
    for (unsigned i = 0; i < XDNA_MAX_HWCTX; i++) {
        struct xdna_hwctx *hw = ctx->s.hw[i];
        if (!hw)
            continue;
        end_jobs(ctx, hw, XDNA_SHIM_ERT_STATE_ABORT);
        fw_stop(ctx, hw, ctx->state == XDNA_SHIM_STATE_PROBED || ctx->s.client);
        hw_free(ctx, hw);
    }
}

/* GET_APP_HEALTH target buffer, allocated on first use. */
int xdna_health_buf(struct xdna_shim_ctx *ctx, uint64_t *addr, uint8_t **va)
{
    struct xdna_dma_buf *b = &ctx->s.health_buf;
    if (!b->va) {
        if (xdna_dma_alloc(ctx, b, HEALTH_BUF_SIZE, XDNA_PROTO_DMA_READ | XDNA_PROTO_DMA_WRITE,
                           "xdna-health") < 0)
            return -1;
        int rc = ctx->s.client ? xdna_sva_map(ctx, b->fd, b->va, b->size) : xdna_dma_map(ctx, b);
        if (rc < 0) {
            xdna_dma_free(b);
            return -1;
        }
        if (ctx->s.client)
            b->iova = (uint64_t)(uintptr_t)b->va;
    }
    *addr = b->iova;
    *va = b->va;
    return 0;
}

/* ---- public: contexts ----------------------------------------------------------------- */

/* A client session's contexts do not outlive the firmware they were made on when the driver
 * session stopped it (DRV_STOPS moved) or the function was reset: once another firmware
 * booted (the ctrl page's fw_boots moved), they are gone, as the driver's files are once its
 * device goes, and every later call on them but destroy fails ENODEV. A firmware booted by a
 * resume keeps them, as the driver's resume re-creates every context: they reconnect on
 * their next job. Either way their jobs end ABORT, their channels close without a message
 * (the firmware that knew them is gone) and their vectors go back (docs/spec/jobs.md §1).
 * AIE2: an AIE4 client's queues follow the function's FLR (docs/spec/aie4.md §8). Checked
 * before every receive too, so a channel whose ring the next firmware gave another context
 * is never read as this one's: the event pump's, a direct or polled wait's, a debug-BO
 * wait's. */
void xdna_hwctx_client_boot_check(struct xdna_shim_ctx *ctx)
{
    if (!ctx->s.client || !ctx->ctrl || xdna_is_aie4(ctx->chip))
        return;
    uint32_t n = xdna_ctrl_get(ctx, XDNA_PROTO_CTRL_OFF_FW_BOOTS);
    uint32_t stops = xdna_ctrl_get(ctx, XDNA_PROTO_CTRL_OFF_DRV_STOPS);
    uint32_t resets = xdna_ctrl_get(ctx, XDNA_PROTO_CTRL_OFF_RESETS);
    if (n == ctx->boots_seen && stops == ctx->stops_seen && resets == ctx->resets_seen)
        return;
    bool gone = stops != ctx->stops_seen || resets != ctx->resets_seen;
    if (!gone && xdna_ctrl_get(ctx, XDNA_PROTO_CTRL_OFF_PM_DOWN))
        return; /* suspended, not stopped: looked at again once it is resumed */
    ctx->boots_seen = n;
    ctx->stops_seen = stops;
    ctx->resets_seen = resets;
    for (unsigned i = 0; gone && i < XDNA_MAX_HWCTX; i++)
        if (ctx->s.hw[i])
            ctx->s.hw[i]->gone = true;
    stop_each(ctx, false, true);
}

static int ready(struct xdna_shim_ctx *ctx, const char *what)
{
    if (xdna_pm_client_get(ctx) < 0) /* the driver holds the device suspended */
        return -1;
    xdna_hwctx_client_boot_check(ctx);
    if (ctx->s.client || ctx->state == XDNA_SHIM_STATE_PROBED || ctx->s.rpm_suspended)
        return xdna_rpm_get(ctx);
    return xdna_fail(ctx, ENODEV, "%s: the device is not probed or attached", what);
}

static int prio_of(uint32_t p, uint32_t *out)
{
    switch (p) {
    case 0:
    case XDNA_SHIM_PRIO_NORMAL: *out = 3; return 0;
    case XDNA_SHIM_PRIO_REALTIME: *out = 1; return 0;
    case XDNA_SHIM_PRIO_HIGH: *out = 2; return 0;
    case XDNA_SHIM_PRIO_LOW: *out = 4; return 0;
    default: return -1;
    }
}

int xdna_shim_hwctx_create(struct xdna_shim_ctx *ctx, const struct xdna_shim_hwctx_params *p,
                           uint32_t *handle)
{
    if (xdna_api_enter(ctx) < 0)
        return -1;
    struct xdna_shim_hwctx_params params = {.priority = 0, .num_cols = 0, .start_col = -1};
    if (p)
        params = *p;
    uint32_t prio;
    if (!handle)
        return xdna_api_leave(ctx, xdna_fail(ctx, EINVAL, "hwctx_create: NULL handle"));
    if (prio_of(params.priority, &prio) < 0)
        return xdna_api_leave(ctx, xdna_fail(ctx, EINVAL, "hwctx_create: unknown priority %#x",
                                     params.priority));
    if (ready(ctx, "hwctx_create") < 0)
        return xdna_api_leave(ctx, -1);
    bool aie4 = xdna_is_aie4(ctx->chip); /* no heap, no command lists: an HSA queue */
    uint32_t dpm_level;
    if (xdna_pm_ctx_level(ctx, &params, &dpm_level) < 0)
        return xdna_api_leave(ctx, -1);
    if (!ctx->s.heap && !aie4) {
        uint32_t h;
        if (xdna_bo_new(ctx, XDNA_SHIM_BO_DEV_HEAP, XDNA_HEAP_CHUNK, false, &h) < 0)
            return xdna_api_leave(ctx, -1);
    }
    unsigned slot = XDNA_MAX_HWCTX;
    for (unsigned i = 0; i < XDNA_MAX_HWCTX; i++)
        if (!ctx->s.hw[i]) {
            slot = i;
            break;
        }
    if (slot == XDNA_MAX_HWCTX)
        return xdna_api_leave(ctx, xdna_fail(ctx, EBUSY, "hwctx_create: %u contexts in this session",
                                     XDNA_MAX_HWCTX));
    struct xdna_hwctx *hw = calloc(1, sizeof(*hw));
    if (!hw)
        return xdna_api_leave(ctx, xdna_fail(ctx, ENOMEM, "out of memory"));
    hw->handle = hw_next_id(ctx); /* a free slot exists, so a free id does too */
    do /* a handle no live context holds, never 0 (the driver's syncobj idr) */
        hw->syncobj = ++ctx->s.next_syncobj ? ctx->s.next_syncobj : ++ctx->s.next_syncobj;
    while (syncobj_owner(ctx, hw->syncobj, hw));
    hw->slot = slot;
    hw->params = params;
    hw->prio = prio;
    hw->num_cus = 1; /* the one CU fw_start configures */
    hw->busy = true;
    hw->next_seq = 1;
    hw->state = XDNA_SHIM_HWCTX_IDLE;
    ctx->s.hw[slot] = hw;
    xdna_ctrl_set(ctx, XDNA_PROTO_CTRL_OFF_HWCTX_LIVE, xdna_hwctx_live(ctx));
    for (unsigned i = 0; i < XDNA_CTX_MAX_CMDS && !aie4; i++)
        if (xdna_bo_new(ctx, XDNA_SHIM_BO_DEV, XDNA_CMDLIST_SIZE, true, &hw->cmdlist_bo[i]) < 0)
            goto free_hw;
    if (fw_start(ctx, hw) < 0) { /* no room now: the runqueue connects it on its first job */
        if (errno != EBUSY || xdna_hwctx_live(ctx) > ctx->chip->hwctx_limit)
            goto free_hw;
        hw->state = XDNA_SHIM_HWCTX_IDLE;
    }
    hw->dpm_level = dpm_level; /* counted as the driver's ctx init does */
    if (xdna_dev_begin(ctx) == 0) {
        hw->dpm_counted = true;
        (void)xdna_pm_count_level(ctx, dpm_level, true); /* best effort, as the driver's */
        xdna_dev_end(ctx);
    }
    hw_release(ctx, hw);
    *handle = hw->handle;
    ctx->s.last_active_ns = xdna_now_ns();
    return xdna_api_leave(ctx, 0);

free_hw: {
        struct xdna_err e;
        xdna_err_save(ctx, &e);
        hw_free(ctx, hw); /* its cmd-list BOs too */
        return xdna_api_leave(ctx, xdna_err_restore(ctx, &e));
    }
}

int xdna_shim_hwctx_destroy(struct xdna_shim_ctx *ctx, uint32_t handle)
{
    if (xdna_api_enter(ctx) < 0)
        return -1;
    struct xdna_hwctx *hw;
    if (hw_claim(ctx, handle, &hw) < 0)
        return xdna_api_leave(ctx, -1);
    end_jobs(ctx, hw, XDNA_SHIM_ERT_STATE_ABORT);
    bool had_fw = hw->fw_live, polled = hw->polled;
    unsigned vec = hw->msix;
    fw_stop(ctx, hw, true);
    if (had_fw && !polled)
        vec_release(ctx, hw, vec);
    if (hw->dpm_counted && xdna_dev_begin(ctx) == 0) {
        (void)xdna_pm_count_level(ctx, hw->dpm_level, false); /* best effort: it is gone */
        xdna_dev_end(ctx);
    }
    hw_free(ctx, hw);
    return xdna_api_leave(ctx, 0);
}

int xdna_shim_hwctx_info(struct xdna_shim_ctx *ctx, uint32_t handle,
                         struct xdna_shim_hwctx_info *info)
{
    if (xdna_api_enter(ctx) < 0)
        return -1;
    struct xdna_hwctx *hw = hw_get(ctx, handle);
    if (!hw || !info)
        return xdna_api_leave(ctx, xdna_fail(ctx, EINVAL, "hwctx_info: bad handle %u", handle));
    memset(info, 0, sizeof(*info));
    info->handle = hw->handle;
    info->fw_ctx_id = hw->fw_id;
    info->msix = hw->msix;
    info->start_col = hw->start_col;
    info->num_cols = hw->num_col;
    info->priority = hw->prio;
    info->state = hw->state;
    info->polled = hw->polled;
    info->cu_status = hw->cu_status;
    info->dpm_level = hw->dpm_level;
    info->connects = hw->connects;
    info->syncobj = hw->syncobj;
    info->swaps = hw->swaps;
    info->idle_outs = hw->idle_outs;
    info->pending = hw->njobs;
    info->submitted = hw->submitted;
    info->completed = hw->completed;
    info->errors = hw->errors;
    info->timeouts = hw->timeouts;
    info->aborts = hw->aborts;
    return xdna_api_leave(ctx, 0);
}

int xdna_shim_hwctx_config(struct xdna_shim_ctx *ctx, uint32_t handle, uint32_t type,
                           uint64_t value)
{
    if (xdna_api_enter(ctx) < 0)
        return -1;
    if (type == XDNA_SHIM_HWCTX_CONFIG_CU) /* it carries a buffer: xdna_shim_hwctx_config_cu */
        return xdna_api_leave(ctx, xdna_fail(ctx, EINVAL, "hwctx_config: CONFIG_CU takes a CU"
                                             " table (xdna_shim_hwctx_config_cu)"));
    if (type != XDNA_SHIM_HWCTX_ASSIGN_DBG_BUF && type != XDNA_SHIM_HWCTX_REMOVE_DBG_BUF)
        return xdna_api_leave(ctx, xdna_fail(ctx, EOPNOTSUPP, "hwctx_config: type %u", type));
    struct xdna_bo *bo = value <= UINT32_MAX ? xdna_bo_get(ctx, (uint32_t)value) : NULL;
    if (!bo || bo->internal || bo->type != XDNA_SHIM_BO_DEV)
        return xdna_api_leave(ctx, xdna_fail(ctx, EINVAL, "hwctx_config: %llu is not a DEV BO",
                                             (unsigned long long)value));
    struct xdna_hwctx *hw;
    if (hw_claim(ctx, handle, &hw) < 0)
        return xdna_api_leave(ctx, -1);
    int rc = -1;
    if (type == XDNA_SHIM_HWCTX_REMOVE_DBG_BUF) {
        if (bo->dbg_ctx != hw->handle || hw->dbg_bo != bo->handle) {
            xdna_fail(ctx, EINVAL, "hwctx_config: BO %u is not context %u's debug BO", bo->handle,
                      hw->handle);
            goto release;
        }
        bo->dbg_ctx = 0; /* unbound whatever the firmware answers, as the driver */
        hw->dbg_bo = 0;
        rc = hw->fw_live && hw->state == XDNA_SHIM_HWCTX_ACTIVE ? dbg_call(ctx, hw, bo, 0) : 0;
        goto release;
    }
    if (bo->dbg_ctx || hw->dbg_bo) {
        xdna_fail(ctx, EBUSY, "hwctx_config: BO %u is bound already, or context %u has a debug BO",
                  bo->handle, hw->handle);
        goto release;
    }
    if (ready(ctx, "hwctx_config") < 0)
        goto release;
    if (hw->state != XDNA_SHIM_HWCTX_ACTIVE && rq_connect(ctx, hw) < 0) {
        if (errno != EBUSY)
            hw->state = XDNA_SHIM_HWCTX_BROKEN;
        goto release;
    }
    if (dbg_call(ctx, hw, bo, 1) < 0)
        goto release;
    bo->dbg_ctx = hw->handle;
    hw->dbg_bo = bo->handle;
    rc = 0;
release:
    hw_release(ctx, hw);
    return xdna_api_leave(ctx, rc);
}

int xdna_shim_hwctx_config_cu(struct xdna_shim_ctx *ctx, uint32_t handle,
                              const struct xdna_shim_cu_config *cus, uint32_t num_cus)
{
    if (xdna_api_enter(ctx) < 0)
        return -1;
    if (!cus || num_cus == 0 || num_cus > XDNA_AIE2_CONFIG_CU_MAX)
        return xdna_api_leave(ctx, xdna_fail(ctx, EINVAL, "config_cu: %u CUs (1..%u)", num_cus,
                                             XDNA_AIE2_CONFIG_CU_MAX));
    uint32_t cfg[XDNA_AIE2_CONFIG_CU_MAX] = {0};
    for (uint32_t i = 0; i < num_cus; i++) {
        struct xdna_bo *bo = xdna_bo_get(ctx, cus[i].cu_bo);
        if (!bo || bo->internal || bo->type != XDNA_SHIM_BO_DEV || cus[i].pad[0] ||
            cus[i].pad[1] || cus[i].pad[2])
            return xdna_api_leave(ctx, xdna_fail(ctx, EINVAL, "config_cu: CU %u: BO %u is not a"
                                                 " DEV BO (or pad is not zero)", i, cus[i].cu_bo));
        cfg[i] = (uint32_t)((bo->xdna_addr >> XDNA_AIE2_CU_PDI_SHIFT) & 0x1FFFF) |
                 (uint32_t)cus[i].cu_func << XDNA_AIE2_CU_FUNC_SHIFT;
    }
    struct xdna_hwctx *hw;
    if (hw_claim(ctx, handle, &hw) < 0)
        return xdna_api_leave(ctx, -1);
    int rc = 0;
    if (hw->cu_user) {
        rc = xdna_fail(ctx, EINVAL, "config_cu: context %u has its CUs already", handle);
    } else {
        memcpy(hw->cu_cfg, cfg, sizeof(cfg));
        hw->num_cus = num_cus;
        hw->cu_user = true;
        if (hw->fw_live && hw->state == XDNA_SHIM_HWCTX_ACTIVE) { /* connected: send it now */
            xdna_aie2_config_cu_req_t req = {.num_cus = num_cus};
            memcpy(req.cfgs, cfg, sizeof(cfg));
            rc = xdna_mbox_post_cb(ctx, &hw->chan, XDNA_AIE2_MSG_CONFIG_CU, &req, sizeof(req),
                                   XDNA_AIE2_MSG_CONFIG_CU_RESP_SIZE, true, cu_cb,
                                   (void *)(uintptr_t)hw->handle);
        }
    }
    hw_release(ctx, hw);
    return xdna_api_leave(ctx, rc);
}

void xdna_hwctx_dbg_unbind(struct xdna_shim_ctx *ctx, struct xdna_bo *bo)
{
    uint32_t h = bo->dbg_ctx;
    struct xdna_hwctx *hw;
    bo->dbg_ctx = 0;
    if (hw_claim(ctx, h, &hw) < 0)
        return;
    if (hw->dbg_bo == bo->handle) {
        hw->dbg_bo = 0;
        struct xdna_err e;
        xdna_err_save(ctx, &e);
        if (hw->fw_live && hw->state == XDNA_SHIM_HWCTX_ACTIVE)
            dbg_call(ctx, hw, bo, 0); /* best effort: the BO goes either way */
        xdna_err_restore(ctx, &e);
    }
    hw_release(ctx, hw);
}

/* ---- public: commands ----------------------------------------------------------------- */

struct parsed_cmd {
    uint32_t opcode, cu_idx;
    const uint32_t *payload;
    uint32_t npay; /* payload words */
};

static int parse_cmd(struct xdna_shim_ctx *ctx, uint32_t handle, struct parsed_cmd *pc)
{
    struct xdna_bo *bo = xdna_bo_get(ctx, handle);
    if (!bo || bo->internal || bo->type != XDNA_SHIM_BO_CMD)
        return xdna_fail(ctx, EINVAL, "exec: %u is not a CMD BO", handle);
    const uint32_t *w = hdr_of(bo);
    /* data = CU masks (1 + extra; none for CMD_CHAIN, as the driver reads it) + payload */
    struct xdna_parse_cmd c;
    if (xdna_parse_cmd_hdr((const uint8_t *)w, bo->size, &c))
        return xdna_fail(ctx, EINVAL, "exec: BO %u header count %u does not fit %llu bytes", handle,
                         bo->size >= 4 ? (w[0] >> 12) & 0x7FF : 0, (unsigned long long)bo->size);
    pc->opcode = c.opcode;
    pc->cu_idx = c.cu_idx;
    pc->payload = w + c.pay;
    pc->npay = c.npay;
    return 0;
}

struct npu_cmd {
    uint32_t opcode;
    uint64_t inst, save, restore;
    uint32_t inst_size, save_size, restore_size, props, cu_idx, nargs;
    const uint32_t *pargs; /* props words, then nargs argument words */
    const uint32_t *args;
};

/* The command forms a context runs: every AIE2 form, on AIE4 only ERT_START_DPU
 * (docs/spec/jobs.md §4, docs/spec/aie4.md §8). */
static bool runnable_op(struct xdna_shim_ctx *ctx, uint32_t op)
{
    if (xdna_is_aie4(ctx->chip))
        return op == XDNA_SHIM_ERT_START_DPU;
    return op == XDNA_SHIM_ERT_START_CU || op == XDNA_SHIM_ERT_START_DPU ||
           op == XDNA_SHIM_ERT_START_NPU || op == XDNA_SHIM_ERT_START_NPU_PREEMPT ||
           op == XDNA_SHIM_ERT_START_NPU_PREEMPT_ELF;
}

static const char *runnable_names(struct xdna_shim_ctx *ctx)
{
    return xdna_is_aie4(ctx->chip) ? "START_DPU (18)"
                                   : "START_CU (0), START_DPU (18), START_NPU (20) or"
                                     " START_NPU_PREEMPT(_ELF) (21, 22)";
}

static bool preempt_op(uint32_t op)
{
    return op == XDNA_SHIM_ERT_START_NPU_PREEMPT || op == XDNA_SHIM_ERT_START_NPU_PREEMPT_ELF;
}

static int parse_npu(struct xdna_shim_ctx *ctx, uint32_t handle, struct npu_cmd *c)
{
    struct parsed_cmd pc;
    if (parse_cmd(ctx, handle, &pc) < 0)
        return -1;
    struct xdna_bo *bo = xdna_bo_get(ctx, handle); /* a CMD BO: parse_cmd checked it */
    const uint32_t *w = hdr_of(bo);
    struct xdna_parse_npu n;
    int r = xdna_parse_npu((const uint8_t *)w, bo->size, &n);
    if (r == XDNA_PARSE_CMD_OPCODE || (r == XDNA_PARSE_OK && !runnable_op(ctx, n.opcode)))
        return xdna_fail(ctx, EINVAL, "exec: BO %u opcode %u is not %s", handle, pc.opcode,
                         runnable_names(ctx));
    if (r)
        return xdna_fail(ctx, EINVAL, "exec: BO %u opcode %u payload of %u words is malformed",
                         handle, pc.opcode, pc.npay);
    c->opcode = n.opcode;
    c->inst = n.inst;
    c->save = n.save;
    c->restore = n.restore;
    c->inst_size = n.inst_size;
    c->save_size = n.save_size;
    c->restore_size = n.restore_size;
    c->props = n.props;
    c->cu_idx = n.cu_idx;
    c->pargs = w + n.pargs;
    c->args = w + n.args;
    c->nargs = n.nargs;
    return 0;
}

/* Pin the instruction buffer and every argument that names one of our BOs. */
static void pin_npu(struct xdna_shim_ctx *ctx, struct xdna_job *j, const struct npu_cmd *c)
{
    const uint64_t bufs[3][2] = {{c->inst, c->inst_size}, {c->save, c->save_size},
                                 {c->restore, c->restore_size}};
    for (unsigned i = 0; i < 3; i++) {
        struct xdna_bo *bo = bufs[i][0] ? xdna_bo_by_addr(ctx, bufs[i][0], bufs[i][1]) : NULL;
        if (bo && j->npins < XDNA_MAX_PINS) {
            bo->busy++;
            j->pins[j->npins++] = bo->handle;
        }
    }
    struct xdna_bo *bo;
    for (uint32_t i = 0; i + 1 < c->nargs; i += 2) {
        uint64_t a = c->args[i] | (uint64_t)c->args[i + 1] << 32;
        bo = xdna_bo_by_addr(ctx, a, 1);
        if (bo && j->npins < XDNA_MAX_PINS) {
            bo->busy++;
            j->pins[j->npins++] = bo->handle;
        }
    }
}

/* Append one slot the way the driver's cmd-list fill does for the command's opcode
 * (docs/spec/jobs.md §4); returns bytes written or -1 (EINVAL: the cmd list is full). */
static int put_slot(struct xdna_shim_ctx *ctx, uint8_t *buf, uint32_t off, bool npu,
                    const struct npu_cmd *c)
{
    static const uint32_t txn = XDNA_AIE2_KERNEL_OP_TXN;
    bool cu = c->opcode == XDNA_SHIM_ERT_START_CU;
    bool elf = c->opcode == XDNA_SHIM_ERT_START_NPU_PREEMPT_ELF;
    uint32_t hdr = npu ? XDNA_AIE2_SLOT_NPU_SIZE
                       : cu ? XDNA_AIE2_SLOT_EXECBUF_CF_SIZE : XDNA_AIE2_SLOT_DPU_SIZE;
    uint32_t nwords = elf ? 1 : c->props + c->nargs; /* props travel with the arguments */
    const uint32_t *words = elf ? &txn : c->pargs;
    uint64_t need = hdr + 4ull * nwords;
    if (off + need > XDNA_CMDLIST_SIZE)
        return xdna_fail(ctx, EINVAL, "exec: the chain does not fit the %u-byte command list",
                         XDNA_CMDLIST_SIZE);
    uint8_t *s = buf + off;
    if (npu) {
        struct xdna_aie2_slot_npu h = {
            .type = cu ? XDNA_AIE2_SLOT_TYPE_NON_ELF
                  : elf ? XDNA_AIE2_SLOT_TYPE_ELF
                  : c->opcode == XDNA_SHIM_ERT_START_NPU_PREEMPT ? XDNA_AIE2_SLOT_TYPE_PREEMPT
                  : XDNA_AIE2_SLOT_TYPE_PARTIAL_ELF,
            .inst_addr = c->inst,
            .save_addr = c->save,
            .restore_addr = c->restore,
            .inst_size = c->inst_size,
            .save_size = c->save_size,
            .restore_size = c->restore_size,
            .inst_prop_cnt = c->props,
            .cu_idx = elf ? 0 : c->cu_idx,
            .arg_cnt = nwords,
        };
        memcpy(s, &h, sizeof(h));
    } else if (cu) {
        struct xdna_aie2_slot_execbuf_cf h = {.cu_idx = c->cu_idx, .arg_cnt = nwords};
        memcpy(s, &h, sizeof(h));
    } else {
        struct xdna_aie2_slot_dpu h = {
            .inst_buf_addr = c->inst,
            .inst_size = c->inst_size,
            .inst_prop_cnt = c->props,
            .cu_idx = c->cu_idx,
            .arg_cnt = nwords,
        };
        memcpy(s, &h, sizeof(h));
    }
    memcpy(s + hdr, words, 4ull * nwords);
    return (int)need;
}

/* What the driver checks per command before filling its slot: a CU the context has (an ELF
 * slot names none), the preempt forms only with the firmware's PREEMPT feature and the
 * NPU command set. */
static int check_cmd(struct xdna_shim_ctx *ctx, struct xdna_hwctx *hw, uint32_t handle,
                     const struct npu_cmd *c)
{
    if (preempt_op(c->opcode) && (!xdna_has_feature(ctx, XDNA_FEAT_PREEMPT) ||
                                  !xdna_has_feature(ctx, XDNA_FEAT_NPU_COMMAND)))
        return xdna_fail(ctx, EOPNOTSUPP, "exec: BO %u: firmware %u.%u has no preemption", handle,
                         ctx->info.protocol_major, ctx->info.protocol_minor);
    if (c->opcode == XDNA_SHIM_ERT_START_NPU_PREEMPT_ELF)
        return 0;
    if (c->cu_idx == XDNA_SHIM_ERT_INVALID_CU || c->cu_idx >= hw->num_cus)
        return xdna_fail(ctx, EINVAL, "exec: BO %u names CU %d, context %u has %u", handle,
                         (int)c->cu_idx, hw->handle, hw->num_cus);
    return 0;
}

/* The command and every command it chains, checked before anything is claimed: subs gets
 * the START_NPU BOs to run, in order. */
static int exec_parse(struct xdna_shim_ctx *ctx, uint32_t hwctx, uint32_t cmd_bo,
                      struct parsed_cmd *pc, uint32_t *subs, uint32_t *nsub)
{
    if (!hw_get(ctx, hwctx))
        return xdna_fail(ctx, EINVAL, "exec: no hardware context %u", hwctx);
    if (parse_cmd(ctx, cmd_bo, pc) < 0)
        return -1;
    *nsub = 0;
    if (pc->opcode == XDNA_SHIM_ERT_CMD_CHAIN) {
        struct xdna_bo *cb = xdna_bo_get(ctx, cmd_bo); /* a CMD BO: parse_cmd checked it */
        struct xdna_parse_chain chn;
        int cr = xdna_parse_chain(cb->va, cb->size, cmd_bo, XDNA_MAX_BOS, &chn);
        if (cr == XDNA_PARSE_CMD_SHORT)
            return xdna_fail(ctx, EINVAL, "exec: CMD_CHAIN payload too short");
        if (cr && cr != XDNA_PARSE_CHAIN_ENTRY)
            return xdna_fail(ctx, EINVAL, "exec: CMD_CHAIN of %u commands (1..%u, %u"
                             " payload words)", chn.n, XDNA_CHAIN_MAX, pc->npay);
        uint32_t op0 = 0;
        for (uint32_t i = 0; i < chn.n; i++) {
            uint64_t h = chn.handle[i];
            struct npu_cmd c;
            if ((cr && i + 1 == chn.n) || parse_npu(ctx, (uint32_t)h, &c) < 0)
                return xdna_fail(ctx, EINVAL, "exec: chain entry %u (BO %llu) is not a"
                                 " runnable command", i, (unsigned long long)h);
            if (i == 0)
                op0 = c.opcode;
            if (c.opcode != op0) /* one chain message carries one slot kind */
                return xdna_fail(ctx, EINVAL, "exec: chain entry %u has opcode %u, entry 0 %u",
                                 i, c.opcode, op0);
            if (check_cmd(ctx, hw_get(ctx, hwctx), (uint32_t)h, &c) < 0)
                return -1;
            subs[(*nsub)++] = (uint32_t)h;
        }
        return 0;
    }
    if (runnable_op(ctx, pc->opcode)) {
        struct npu_cmd c;
        if (parse_npu(ctx, cmd_bo, &c) < 0 || check_cmd(ctx, hw_get(ctx, hwctx), cmd_bo, &c) < 0)
            return -1;
        subs[(*nsub)++] = cmd_bo;
        return 0;
    }
    return xdna_fail(ctx, EINVAL, "exec: opcode %u is not %s or CMD_CHAIN (19)", pc->opcode,
                     runnable_names(ctx));
}

/* Claim the context with a free job slot (at most XDNA_CTX_MAX_CMDS outstanding on AIE2; on
 * AIE4 as many as the HSA queue holds, docs/spec/aie4.md §8), waiting for one with the context
 * released. On success the caller holds the claim. */
static int claim_slot(struct xdna_shim_ctx *ctx, uint32_t hwctx, uint32_t nsub,
                      struct xdna_hwctx **out)
{
    struct xdna_hwctx *hw;
    bool aie4 = xdna_is_aie4(ctx->chip);
    if (aie4 && nsub > XDNA_AIE4_HSA_QUEUE_SLOTS)
        return xdna_fail(ctx, EINVAL, "exec: %u commands do not fit a %u-packet queue", nsub,
                         XDNA_AIE4_HSA_QUEUE_SLOTS);
    if (hw_claim(ctx, hwctx, &hw) < 0)
        return -1;
    uint64_t deadline = xdna_deadline(ctx->timeouts[XDNA_SHIM_TIMEOUT_MBOX_RX]);
    uint32_t resets = hw->resets;
    /* as the driver blocks a submission until its context has a free slot (AIE4: until the
     * HSA queue has room for every packet of the command; a context reset releases it
     * unpublished with EAGAIN, docs/spec/aie4.md §8) */
    unsigned max_jobs = aie4 ? XDNA_CTX_JOBS_MAX : XDNA_CTX_MAX_CMDS;
    while (hw->njobs >= max_jobs || (aie4 && !xdna_aie4_queue_room(ctx, hw, nsub))) {
        hw_release(ctx, hw);
        if (xdna_cond_wait(ctx, deadline) < 0)
            return xdna_fail(ctx, EAGAIN, "exec: context %u has no room for %u more commands",
                             hwctx, nsub);
        if (hw_claim(ctx, hwctx, &hw) < 0)
            return -1;
        if (hw->resets != resets) {
            hw_release(ctx, hw);
            return xdna_fail(ctx, EAGAIN, "exec: context %u was reset while the submission"
                             " waited for room", hwctx);
        }
    }
    *out = hw;
    return 0;
}

int xdna_shim_exec(struct xdna_shim_ctx *ctx, uint32_t hwctx, uint32_t cmd_bo, uint64_t *seq)
{
    uint32_t subs[XDNA_CHAIN_MAX], nsub = 0;
    struct npu_cmd cmds[XDNA_CHAIN_MAX];
    struct parsed_cmd pc, pc2;
    struct xdna_hwctx *hw = NULL;
    int rc = -1;

    if (xdna_api_enter(ctx) < 0)
        return -1;
    if (!seq) {
        xdna_fail(ctx, EINVAL, "exec: NULL seq");
        goto leave;
    }
    if (exec_parse(ctx, hwctx, cmd_bo, &pc, subs, &nsub) < 0 || ready(ctx, "exec") < 0 ||
        claim_slot(ctx, hwctx, nsub, &hw) < 0)
        goto leave;
    if (ctx->s.rpm_suspended && xdna_rpm_get(ctx) < 0)
        goto release_hw;
    if (hw->state != XDNA_SHIM_HWCTX_ACTIVE && rq_connect(ctx, hw) < 0) {
        if (errno != EBUSY)
            hw->state = XDNA_SHIM_HWCTX_BROKEN;
        goto release_hw;
    }
    bool aie4 = xdna_is_aie4(ctx->chip);
    /* chunks added since the context connected reach the firmware before its next job */
    if (!aie4 && hw->heap_given < ctx->s.heap_total && xdna_hwctx_heap_give(ctx, hw) < 0)
        goto release_hw;
    unsigned li = 0;
    while (li < XDNA_CTX_MAX_CMDS && hw->cmdlist_used[li])
        li++;
    struct xdna_bo *list = li < XDNA_CTX_MAX_CMDS ? xdna_bo_get(ctx, hw->cmdlist_bo[li]) : NULL;
    if (!list && !aie4) {
        xdna_fail(ctx, EIO, "exec: no free command list");
        goto release_hw;
    }
    bool npu = xdna_has_feature(ctx, XDNA_FEAT_NPU_COMMAND);
    struct xdna_job *j = &hw->jobs[(hw->job_head + hw->njobs) % XDNA_CTX_JOBS_MAX];
    memset(j, 0, sizeof(*j));
    /* The lock may have been dropped since the first parse (slot wait, context start): the
     * client may have released or rewritten the BOs meanwhile. Parse again, fail cleanly if
     * they no longer hold commands, and use these results (not a third parse) below. */
    bool changed = parse_cmd(ctx, cmd_bo, &pc2) < 0 || pc2.opcode != pc.opcode;
    for (uint32_t i = 0; !changed && i < nsub; i++)
        changed = parse_npu(ctx, subs[i], &cmds[i]) < 0 || cmds[i].opcode != cmds[0].opcode ||
                  check_cmd(ctx, hw, subs[i], &cmds[i]) < 0;
    if (changed) {
        xdna_fail(ctx, EINVAL, "exec: BO %u (or a command it chains) changed or went away"
                  " during submission", cmd_bo);
        goto release_hw;
    }
    uint64_t s = hw->next_seq;
    if (aie4) { /* packets into the HSA queue and the doorbell (docs/spec/aie4.md §8) */
        j->cmd_bo = cmd_bo; /* marked SUBMITTED before the doorbell: the firmware may finish first */
        if (xdna_aie4_submit(ctx, hw, j, subs, nsub) < 0)
            goto release_hw;
        li = XDNA_CTX_MAX_CMDS; /* no command list */
        goto submitted;
    }
    uint32_t off = 0;
    for (uint32_t i = 0; i < nsub; i++) {
        const struct npu_cmd c = cmds[i];
        int n = put_slot(ctx, list->va, off, npu, &c);
        if (n < 0)
            goto release_hw;
        off += (uint32_t)n;
    }
    union {
        xdna_aie2_chain_exec_npu_req_t npu;
        xdna_aie2_chain_exec_dpu_req_t dpu;
    } req;
    size_t req_len;
    uint32_t op;
    if (npu) {
        req.npu = (xdna_aie2_chain_exec_npu_req_t){
            .buf_addr = list->xdna_addr, .buf_size = off, .count = nsub};
        req_len = sizeof(req.npu);
        op = XDNA_AIE2_MSG_CHAIN_EXEC_NPU;
    } else { /* legacy: the CF chain for START_CU, the DPU chain otherwise (same request) */
        req.dpu = (xdna_aie2_chain_exec_dpu_req_t){
            .buf_addr = list->xdna_addr, .buf_size = off, .count = nsub};
        req_len = sizeof(req.dpu);
        op = cmds[0].opcode == XDNA_SHIM_ERT_START_CU ? XDNA_AIE2_MSG_CHAIN_EXEC_BUFFER_CF
                                                      : XDNA_AIE2_MSG_CHAIN_EXEC_DPU;
    }
    __atomic_thread_fence(__ATOMIC_SEQ_CST); /* slots visible before the doorbell */
    /* both chain messages answer with the same chain_resp */
    if (xdna_mbox_post_cb(ctx, &hw->chan, op, &req, req_len, XDNA_AIE2_MSG_CHAIN_EXEC_NPU_RESP_SIZE,
                          false, job_cb, job_arg(hw->handle, s)) < 0)
        goto release_hw;
submitted:
    hw->next_seq++;
    j->live = true;
    j->seq = s;
    j->cmd_bo = cmd_bo;
    j->cmdlist = li;
    if (li < XDNA_CTX_MAX_CMDS)
        hw->cmdlist_used[li] = true;
    hw->njobs++;
    hw->submitted++;
    struct xdna_bo *cbo = xdna_bo_get(ctx, cmd_bo);
    cbo->busy++;
    if (!aie4)
        set_state(cbo, XDNA_SHIM_ERT_STATE_SUBMITTED);
    for (uint32_t i = 0; i < nsub; i++) {
        const struct npu_cmd c = cmds[i];
        if (subs[i] != cmd_bo) {
            struct xdna_bo *sb = xdna_bo_get(ctx, subs[i]);
            if (j->npins < XDNA_MAX_PINS) {
                sb->busy++;
                j->pins[j->npins++] = subs[i];
            }
        }
        pin_npu(ctx, j, &c);
    }
    *seq = s;
    ctx->s.last_active_ns = hw->active_ns = xdna_now_ns();
    rc = 0;
release_hw:
    hw_release(ctx, hw);
leave:
    return xdna_api_leave(ctx, rc);
}

/* A TURBO wait spins on its ring's tail register, the lock dropped, before it blocks: the
 * response of a short job lands within the spin, with no wake-up on either side (the
 * ctrl page's polling count asks the daemon to spin too; docs/spec/protocol.md). True when
 * the tail moved. */
static bool spin_on_ring(struct xdna_shim_ctx *ctx, const struct xdna_mbox_chan *ch,
                         uint64_t until)
{
    const struct xdna_loc tail_reg = ch->i2x_tail_reg; /* copies: ch is not ours unlocked */
    const uint32_t head = ch->i2x_head, size = ch->i2x_size;
    uint32_t *polling = (uint32_t *)(ctx->ctrl + XDNA_PROTO_CTRL_OFF_POLLING);
    bool moved = false;
    __atomic_add_fetch(polling, 1, __ATOMIC_SEQ_CST);
    pthread_mutex_unlock(&ctx->s.lock);
    for (unsigned n = 0; !moved; n++) {
        uint32_t tail = xdna_rd(ctx, tail_reg);
        moved = tail != head && !(head == size && tail == 0); /* as ring_has_data (event.c) */
        if (moved)
            break;
        if (n % 16 == 15 && (xdna_now_ns() >= until || xdna_daemon_gone(ctx)))
            break;
        /* a polite spin: on a busy machine the daemon may be waiting for this CPU */
        if (n >= 64)
            sched_yield();
#if defined(__x86_64__) || defined(__i386__)
        else
            __builtin_ia32_pause();
#endif
    }
    pthread_mutex_lock(&ctx->s.lock);
    __atomic_sub_fetch(polling, 1, __ATOMIC_SEQ_CST);
    return moved;
}

/* A job wait's direct claim on its context's vector (docs/spec/protocol.md, "Direct
 * waits"), given back on every way out. */
struct wait_vec {
    bool direct;
    unsigned vec;
};

static int wait_leave(struct xdna_shim_ctx *ctx, const struct wait_vec *dv, int rc)
{
    if (dv->direct)
        xdna_direct_release(ctx, dv->vec);
    return xdna_api_leave(ctx, rc);
}

int xdna_shim_wait(struct xdna_shim_ctx *ctx, uint32_t hwctx, uint64_t seq, int timeout_ms)
{
    if (xdna_api_enter(ctx) < 0)
        return -1;
    struct xdna_hwctx *hw = hw_get(ctx, hwctx);
    if (!hw)
        return xdna_api_leave(ctx, xdna_fail(ctx, EINVAL, "wait: no hardware context %u", hwctx));
    if (seq == 0 || seq >= hw->next_seq)
        return xdna_api_leave(ctx, xdna_fail(ctx, EINVAL, "wait: command %llu was never submitted to %u",
                                     (unsigned long long)seq, hwctx));
    uint64_t deadline = timeout_ms < 0 ? UINT64_MAX : xdna_deadline(timeout_ms > 0 ? timeout_ms : 1);
    bool spun = false;
    struct wait_vec dv = {.direct = false};
    for (;;) {
        xdna_hwctx_client_boot_check(ctx); /* its ring may be another firmware's now */
        hw = hw_get(ctx, hwctx);
        if (!hw || !job_find(hw, seq))
            return wait_leave(ctx, &dv, 0); /* final (or its context is gone: ABORT was written) */
        if (hw->polled && hw->chan.active) /* TURBO: poll the ring ourselves */
            xdna_mbox_rx(ctx, &hw->chan);
        if (dv.direct) { /* every channel on the claimed vector is ours to drain */
            xdna_direct_service(ctx, dv.vec, NULL);
            pthread_cond_broadcast(&ctx->s.cond);
        }
        if (hw->umq_bo) /* AIE4: the queue's read_index tells (docs/spec/aie4.md §8) */
            xdna_aie4_reap(ctx, hw);
        if (!job_find(hw, seq))
            return wait_leave(ctx, &dv, 0);
        if (timeout_ms == 0)
            break;
        uint64_t until = hw->polled ? poll_until(ctx, deadline) : deadline;
        if (ctx->sock_dead && xdna_aie4_removed(ctx) && !job_find(hw, seq))
            return wait_leave(ctx, &dv, 0); /* its function was removed: it ended ABORT */
        if (ctx->sock_dead)
            return wait_leave(ctx, &dv, xdna_fail(ctx, EPIPE, "wait: the daemon is gone"));
        if (hw->polled && hw->chan.active && !spun && ctx->s.mon_running && ctx->ctrl) {
            spun = true; /* once per wait: a long job then sleeps in the slices below */
            uint64_t spin = xdna_now_ns() + XDNA_POLL_SPIN_NS;
            if (spin_on_ring(ctx, &hw->chan, spin < deadline ? spin : deadline))
                continue;
        }
        if (!dv.direct && !hw->polled && !hw->umq_bo && hw->chan.active &&
            xdna_direct_claim(ctx, hw->msix)) { /* docs/spec/protocol.md, "Direct waits" */
            dv.direct = true;
            dv.vec = hw->msix;
            continue; /* an answer that came before the claim is on the ring already */
        }
        if (dv.direct) {
            if (xdna_direct_wait(ctx, dv.vec, until) == 0)
                continue;
            if (errno != ETIME)
                return wait_leave(ctx, &dv, -1);
            if (until == deadline && !ctx->removed)
                break;
            continue;
        }
        if (xdna_cond_wait(ctx, until) < 0 && until == deadline && !ctx->removed)
            break;
    }
    return wait_leave(ctx, &dv, xdna_fail(ctx, ETIME, "wait: command %llu of context %u not"
                                          " done within %d ms", (unsigned long long)seq, hwctx,
                                          timeout_ms));
}

int xdna_shim_syncobj_wait(struct xdna_shim_ctx *ctx, uint32_t syncobj, uint64_t seq,
                           int timeout_ms)
{
    if (xdna_api_enter(ctx) < 0)
        return -1;
    struct xdna_hwctx *hw = syncobj ? syncobj_owner(ctx, syncobj, NULL) : NULL;
    if (!hw)
        return xdna_api_leave(ctx, xdna_fail(ctx, EINVAL, "syncobj_wait: no context has queue"
                                             " handle %u", syncobj));
    uint32_t handle = hw->handle;
    xdna_api_leave(ctx, 0);
    return xdna_shim_wait(ctx, handle, seq, timeout_ms); /* the context may go meanwhile */
}

int xdna_shim_cmd_state(struct xdna_shim_ctx *ctx, uint32_t cmd_bo, uint32_t *state)
{
    if (xdna_api_enter(ctx) < 0)
        return -1;
    struct xdna_bo *bo = xdna_bo_get(ctx, cmd_bo);
    if (!bo || bo->internal || bo->type != XDNA_SHIM_BO_CMD || !state)
        return xdna_api_leave(ctx, xdna_fail(ctx, EINVAL, "cmd_state: %u is not a CMD BO", cmd_bo));
    *state = __atomic_load_n(hdr_of(bo), __ATOMIC_ACQUIRE) & 0xF;
    return xdna_api_leave(ctx, 0);
}

int xdna_shim_app_health(struct xdna_shim_ctx *ctx, uint32_t hwctx, void *buf, size_t len)
{
    if (xdna_api_enter(ctx) < 0)
        return -1;
    struct xdna_hwctx *hw;
    if (!buf && len)
        return xdna_api_leave(ctx, xdna_fail(ctx, EINVAL, "app_health: NULL buffer"));
    if (hw_claim(ctx, hwctx, &hw) < 0)
        return xdna_api_leave(ctx, -1);
    int rc = 0;
    if (!hw->health_len) {
        rc = ready(ctx, "app_health");
        /* disconnected by the runqueue: connected first, as for a job (docs/spec/jobs.md §3a) */
        if (rc == 0 && hw->state != XDNA_SHIM_HWCTX_ACTIVE &&
            xdna_has_feature(ctx, XDNA_FEAT_GET_APP_HEALTH))
            rc = rq_connect(ctx, hw);
        if (rc == 0)
            rc = query_health(ctx, hw);
    }
    size_t n = 0;
    if (rc == 0) {
        n = hw->health_len < len ? hw->health_len : len;
        memcpy(buf, hw->health, n);
    }
    hw_release(ctx, hw);
    return xdna_api_leave(ctx, rc < 0 ? -1 : (int)n);
}
