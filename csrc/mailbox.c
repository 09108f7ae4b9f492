/* Mailbox channels (docs/spec/firmware.md §5): x2i producer, i2x consumer, interrupts.
 *
 * The algorithm is the driver's: cached x2i tail and i2x head, hardware x2i head and i2x
 * tail, TOMBSTONE wrap, ids (seq & 0xFF) | MSG_ID_MAGIC allocated cyclically per channel,
 * exact response sizes, and a channel that turns "bad" for good when the ring is malformed.
 * Everything read from the device is range-checked before use.
 */
#include "shim_int.h"
#include "parse.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

const char *xdna_opcode_name(uint32_t op)
{
    const char *name = xdna_aie2_msg_name(op);
    if (!name) /* AIE4 opcodes (0x10001 up) do not overlap AIE2's */
        name = xdna_aie4_msg_name(op);
    return name ? name : "MSG";
}

static struct xdna_loc loc_add(struct xdna_loc l, uint32_t d)
{
    return (struct xdna_loc){.bar = l.bar, .off = l.off + d};
}

/* The chip's apertures and what this session really mapped, for the pure checks. */
static void layout_of(struct xdna_shim_ctx *ctx, struct xdna_parse_layout *lay)
{
    const struct xdna_chip_desc *c = ctx->chip;
    memset(lay, 0, sizeof(*lay));
    for (unsigned i = 0; i < c->nbars && lay->nap < XDNA_PARSE_MAX_APERTURES; i++)
        lay->ap[lay->nap++] = (struct xdna_parse_aperture){
            .bar = c->bars[i].bar, .base = c->bars[i].base, .size = c->bars[i].size};
    for (unsigned b = 0; b < XDNA_NUM_BARS && b < XDNA_PARSE_MAX_BARS; b++)
        lay->bar_size[b] = ctx->bars[b].va ? ctx->bars[b].size : 0;
    lay->mbox_bar = c->mbox.present ? c->mbox.bar : -1;
    lay->sram_bar = c->sram_bar;
    lay->nvec = ctx->nvec;
}

static struct xdna_loc loc_of(struct xdna_parse_loc l)
{
    return (struct xdna_loc){.bar = l.bar, .off = l.off};
}

int xdna_mbox_create(struct xdna_shim_ctx *ctx, struct xdna_mbox_chan *ch, const char *name,
                     const struct xdna_aie2_mgmt_mbox_chann_info *ci)
{
    memset(ch, 0, sizeof(*ch));
    ch->name = name;
    ch->user = ch != &ctx->mgmt;
    struct xdna_parse_layout lay;
    struct xdna_parse_chan pc;
    layout_of(ctx, &lay);
    const struct xdna_parse_chan_addrs a = {
        .x2i_tail = ci->x2i_tail, .x2i_head = ci->x2i_head, .x2i_buf = ci->x2i_buf,
        .x2i_buf_sz = ci->x2i_buf_sz, .i2x_tail = ci->i2x_tail, .i2x_head = ci->i2x_head,
        .i2x_buf = ci->i2x_buf, .i2x_buf_sz = ci->i2x_buf_sz, .msi_id = ci->msi_id};
    int r = xdna_parse_chan_check(&lay, &a, &pc);
    if (r == XDNA_PARSE_BAD_MSIX)
        return xdna_fail(ctx, EINVAL, "mailbox %s: msi_id %u >= %u vectors", name, ci->msi_id,
                         ctx->nvec);
    if (r)
        return xdna_fail(ctx, EINVAL, "mailbox %s: %s %s %#x: %s", name,
                         xdna_parse_field_str(pc.field),
                         pc.field >= XDNA_PARSE_F_X2I_RING ? "ring" : "register", pc.value,
                         xdna_parse_reason_str(r));
    ch->x2i_tail_reg = loc_of(pc.reg[XDNA_PARSE_F_X2I_TAIL]);
    ch->x2i_head_reg = loc_of(pc.reg[XDNA_PARSE_F_X2I_HEAD]);
    ch->i2x_tail_reg = loc_of(pc.reg[XDNA_PARSE_F_I2X_TAIL]);
    ch->i2x_head_reg = loc_of(pc.reg[XDNA_PARSE_F_I2X_HEAD]);
    ch->intr_reg = loc_of(pc.reg[XDNA_PARSE_F_INTR]);
    ch->x2i_buf = loc_of(pc.ring[0]);
    ch->i2x_buf = loc_of(pc.ring[1]);
    ch->x2i_size = ci->x2i_buf_sz;
    ch->i2x_size = ci->i2x_buf_sz;
    ch->msix = ci->msi_id;
    ch->no_ack = xdna_is_aie4(ctx->chip);
    uint32_t tail = xdna_rd(ctx, ch->x2i_tail_reg);
    uint32_t head = xdna_rd(ctx, ch->i2x_head_reg);
    if (tail > ch->x2i_size || (tail & 3) || head > ch->i2x_size || (head & 3))
        return xdna_fail(ctx, EINVAL, "mailbox %s: initial x2i tail %#x / i2x head %#x invalid",
                         name, tail, head);
    ch->x2i_tail = tail;
    ch->i2x_head = head;
    ch->active = true;
    return 0;
}

static void fail_all(struct xdna_shim_ctx *ctx, struct xdna_mbox_chan *ch, int err)
{
    for (unsigned i = 0; i < MBOX_MAX_IDS; i++) {
        struct xdna_mbox_pending *p = &ch->pend[i];
        if (!p->in_use || p->done)
            continue;
        p->done = true;
        p->err = err;
        if (p->async) { /* nobody waits for these: release the slot */
            p->in_use = false;
            ch->npending--;
            if (p->cb)
                p->cb(ctx, p->cb_arg, err, NULL, 0);
        }
    }
}

void xdna_mbox_destroy(struct xdna_shim_ctx *ctx, struct xdna_mbox_chan *ch)
{
    if (!ch->active)
        return;
    fail_all(ctx, ch, ENODEV);
    ch->active = false;
}

static void set_bad(struct xdna_shim_ctx *ctx, struct xdna_mbox_chan *ch, const char *fmt,
                    uint32_t a, uint32_t b)
{
    ch->bad = true;
    fail_all(ctx, ch, EPIPE);
    char msg[160];
    snprintf(msg, sizeof(msg), fmt, a, b);
    xdna_fail(ctx, EPIPE, "mailbox %s: bad state: %s", ch->name, msg);
}

static void free_slot(struct xdna_mbox_chan *ch, unsigned slot)
{
    if (ch->pend[slot].in_use) {
        ch->pend[slot].in_use = false;
        ch->npending--;
    }
}

static int alloc_slot(struct xdna_shim_ctx *ctx, struct xdna_mbox_chan *ch, unsigned *slot)
{
    for (unsigned k = 0; k < MBOX_MAX_IDS; k++) {
        unsigned s = (ch->next_id + k) % MBOX_MAX_IDS;
        if (!ch->pend[s].in_use) {
            memset(&ch->pend[s], 0, sizeof(ch->pend[s]));
            ch->pend[s].in_use = true;
            ch->npending++;
            ch->next_id = (s + 1) % MBOX_MAX_IDS;
            *slot = s;
            if (ctx->s.nmon_skip) /* an answer will come: is its vector watched? */
                xdna_irq_wakes_sync(ctx);
            return 0;
        }
    }
    return xdna_fail(ctx, EBUSY, "mailbox %s: all %d message ids are in flight", ch->name,
                     MBOX_MAX_IDS);
}

static void ring_write(struct xdna_shim_ctx *ctx, struct xdna_loc base, uint32_t off,
                       const void *src, uint32_t len)
{
    const uint8_t *s = src;
    for (uint32_t i = 0; i < len; i += 4) {
        uint32_t w;
        memcpy(&w, s + i, 4);
        xdna_wr(ctx, loc_add(base, off + i), w);
    }
}

/* Producer side, as the driver sends: returns -1/ENOSPC when the ring has no room. */
static int x2i_send(struct xdna_shim_ctx *ctx, struct xdna_mbox_chan *ch, uint32_t opcode,
                    uint32_t id, const void *req, uint32_t req_len)
{
    const uint32_t size = ch->x2i_size;
    const uint32_t len = XDNA_AIE2_MSG_HEADER_SIZE + req_len;
    uint32_t head = xdna_rd(ctx, ch->x2i_head_reg);
    uint32_t tail = ch->x2i_tail;
    struct xdna_parse_tx tx;
    xdna_parse_x2i_space(head, tail, size, len, &tx);
    if (tx.kind == XDNA_PARSE_TX_BAD) {
        set_bad(ctx, ch, "x2i head %#x (ring %#x)", head, size);
        return -1;
    }
    if (tx.kind == XDNA_PARSE_TX_NOSPC)
        return xdna_fail(ctx, ENOSPC, "mailbox %s: x2i ring full (head %#x tail %#x)", ch->name,
                         head, tail);
    if (tx.kind == XDNA_PARSE_TX_WRAP && tx.tomb_ok)
        xdna_wr(ctx, loc_add(ch->x2i_buf, tx.tomb), XDNA_AIE2_TOMBSTONE);
    tail = tx.pos;
    struct xdna_aie2_msg_header hdr = {
        .total_size = req_len,
        .sz_ver = (req_len & XDNA_AIE2_MSG_SIZE_MASK) | (XDNA_AIE2_MSG_PROTOCOL_VERSION << XDNA_AIE2_MSG_VERSION_SHIFT),
        .id = id,
        .opcode = opcode,
    };
    ring_write(ctx, ch->x2i_buf, tail, &hdr, sizeof(hdr));
    ring_write(ctx, ch->x2i_buf, tail + XDNA_AIE2_MSG_HEADER_SIZE, req, req_len);
    tail += len;
    ch->x2i_tail = tail;
    if (ch->hold_kicks) /* one of a batch: its last send kicks for all (xdna_async_bufs_start) */
        return xdna_wr_log_held(ctx, ch->x2i_tail_reg, tail);
    /* log only: see xdna_wr_log. A mgmt message the daemon's C path does not answer (not a
     * query) wakes the Python loop directly: the doorbell thread would only hand it back
     * (docs/spec/jobs.md §7 "Management queries") */
    if (!ch->user && !xdna_aie2_mgmt_query(opcode))
        return xdna_wr_log_loop(ctx, ch->x2i_tail_reg, tail);
    return xdna_wr_log(ctx, ch->x2i_tail_reg, tail);
}

/* Deliver one response to its pending slot. */
/* Hand a response to its pending message, as the driver's mailbox_get_resp does. An id
 * without the 0x1D magic, out of order on a user channel, or matching no pending message,
 * and a response of the wrong size are errors that put the channel in bad state: the
 * return is then a reason string (a wrong-size response first completes its waiter with
 * EINVAL). NULL when the response was taken. */
static const char *dispatch(struct xdna_shim_ctx *ctx, struct xdna_mbox_chan *ch, uint32_t id,
                            uint32_t total, uint32_t payload_off)
{
    int sl = xdna_parse_resp_slot(id, MBOX_MAX_IDS);
    if (sl < 0) {
        ctx->info.dropped_resps++;
        return "response id %#x lacks the 0x1D magic (size %#x)";
    }
    if (ch->user && xdna_parse_resp_contig(id, ch->last_id) != 0) {
        ctx->info.dropped_resps++;
        return "response id %#x out of order on a user channel (size %#x)";
    }
    ch->last_id = id;
    unsigned slot = (unsigned)sl;
    if (!ch->pend[slot].in_use || ch->pend[slot].done) {
        ctx->info.dropped_resps++;
        return "response id %#x matches no pending message (size %#x)";
    }
    struct xdna_mbox_pending *p = &ch->pend[slot];
    const bool bad_size = p->any_size ? total < 4 : total != p->resp_len;
    if (bad_size) {
        p->err = EINVAL;
    } else {
        uint8_t *dst = p->resp;
        uint32_t n = total < p->resp_len ? total : (uint32_t)p->resp_len;
        for (uint32_t i = 0; i < n; i += 4) {
            uint32_t w = xdna_rd(ctx, loc_add(ch->i2x_buf, payload_off + i));
            memcpy(dst + i, &w, n - i < 4 ? n - i : 4);
        }
        p->err = 0;
    }
    p->done = true;
    if (p->async) {
        if (p->opcode == XDNA_AIE2_MSG_REGISTER_ASYNC_EVENT_MSG)
            ctx->info.async_events++;
        void (*cb)(struct xdna_shim_ctx *, void *, int, const uint8_t *, size_t) = p->cb;
        void *arg = p->cb_arg;
        int err = p->err;
        uint8_t resp[sizeof(p->async_resp)];
        size_t len = p->resp_len;
        memcpy(resp, p->async_resp, sizeof(resp));
        free_slot(ch, slot);
        if (cb)
            cb(ctx, arg, err, err ? NULL : resp, err ? 0 : len);
    }
    return bad_size ? "response id %#x has the wrong size %#x" : NULL;
}

/* Consume one i2x message. 1 consumed, 0 ring empty, -1 channel now bad. */
static int i2x_one(struct xdna_shim_ctx *ctx, struct xdna_mbox_chan *ch)
{
    const uint32_t size = ch->i2x_size;
    uint32_t tail = xdna_rd(ctx, ch->i2x_tail_reg);
    struct xdna_parse_rx rx;
    /* Empty is decided before the head wraps from size to 0, as the driver does: after a
     * message that ended exactly at the ring end both head and tail equal size. */
    xdna_parse_i2x_head(size, ch->i2x_head, tail, &rx);
    if (rx.kind == XDNA_PARSE_RX_EMPTY)
        return 0;
    uint32_t first = 0;
    if (rx.kind == XDNA_PARSE_RX_READ) {
        first = xdna_rd(ctx, loc_add(ch->i2x_buf, rx.off));
        xdna_parse_i2x_first(size, tail, first, &rx);
    }
    const uint32_t head = rx.off;
    switch (rx.kind) {
    case XDNA_PARSE_RX_WRAP:
        ch->i2x_head = 0;
        return xdna_wr_trap_lazy(ctx, ch->i2x_head_reg, 0) < 0 ? -1 : 1;
    case XDNA_PARSE_RX_MSG: {
        uint32_t id = xdna_rd(ctx, loc_add(ch->i2x_buf,
                                           head + offsetof(struct xdna_aie2_msg_header, id)));
        const char *why = dispatch(ctx, ch, id, rx.total, head + XDNA_AIE2_MSG_HEADER_SIZE);
        ch->i2x_head = rx.next; /* may equal size: expected */
        if (xdna_wr_trap_lazy(ctx, ch->i2x_head_reg, rx.next) < 0)
            return -1;
        if (why) { /* the driver consumes the message, then gives up on the channel */
            set_bad(ctx, ch, why, id, rx.total);
            return -1;
        }
        return 1;
    }
    default:
        break;
    }
    switch (rx.reason) {
    case XDNA_PARSE_BAD_TAIL:
        set_bad(ctx, ch, "i2x tail %#x (ring %#x)", tail, size);
        break;
    case XDNA_PARSE_BAD_TOMBSTONE:
        set_bad(ctx, ch, "TOMBSTONE at %#x while tail %#x is ahead", head, tail);
        break;
    case XDNA_PARSE_PAST_TAIL:
        set_bad(ctx, ch, "message at %#x runs past tail %#x", head, tail);
        break;
    case XDNA_PARSE_BAD_SIZE:
        set_bad(ctx, ch, "message size %#x at head %#x", first, head);
        break;
    default:
        set_bad(ctx, ch, "i2x head %#x (ring %#x)", ch->i2x_head, size);
        break;
    }
    return -1;
}

/* The interrupt handler + RX worker: ack, drain, re-check the interrupt register. */
static int rx_worker(struct xdna_shim_ctx *ctx, struct xdna_mbox_chan *ch)
{
    for (unsigned round = 0; round < 64; round++) {
        /* The ack is a plain store: the firmware sets the register to 1 with each response
         * and never needs to see the 0. Replaying a logged 0 later could wipe a newer 1. */
        if (!ch->no_ack)
            xdna_wr(ctx, ch->intr_reg, 0);
        for (unsigned n = 0;; n++) {
            if (n > ch->i2x_size) { /* more messages than the ring can hold: firmware loops */
                set_bad(ctx, ch, "i2x ring never drains (tail %#x, head %#x)",
                        xdna_rd(ctx, ch->i2x_tail_reg), ch->i2x_head);
                return -1;
            }
            int r = i2x_one(ctx, ch);
            if (r < 0)
                return -1;
            if (r == 0)
                break;
        }
        if (ch->no_ack || xdna_rd(ctx, ch->intr_reg) == 0)
            break;
    }
    return 0;
}

static int send_checks(struct xdna_shim_ctx *ctx, struct xdna_mbox_chan *ch, const void *req,
                       size_t req_len)
{
    if (!ch->active)
        return xdna_fail(ctx, ENODEV, "mailbox %s: channel is gone", ch->name);
    if (ch->bad)
        return xdna_fail(ctx, EPIPE, "mailbox %s: channel is in bad state", ch->name);
    if (!req || req_len == 0 || (req_len & 3) || req_len > XDNA_AIE2_MSG_SIZE_MASK ||
        req_len + XDNA_AIE2_MSG_HEADER_SIZE + 4 > ch->x2i_size)
        return xdna_fail(ctx, EINVAL, "mailbox %s: payload of %zu bytes is not sendable",
                         ch->name, req_len);
    uint32_t w0;
    memcpy(&w0, req, 4);
    if (w0 == XDNA_AIE2_TOMBSTONE)
        return xdna_fail(ctx, EINVAL, "mailbox %s: payload starts with TOMBSTONE", ch->name);
    return 0;
}

int xdna_mbox_post_async(struct xdna_shim_ctx *ctx, struct xdna_mbox_chan *ch, uint32_t opcode,
                         const void *req, size_t req_len, size_t resp_len)
{
    unsigned slot;
    if (send_checks(ctx, ch, req, req_len) < 0)
        return -1;
    if (resp_len > sizeof(ch->pend[0].async_resp))
        return xdna_fail(ctx, EINVAL, "async response too large");
    if (alloc_slot(ctx, ch, &slot) < 0)
        return -1;
    struct xdna_mbox_pending *p = &ch->pend[slot];
    p->async = true;
    p->opcode = opcode;
    p->resp = p->async_resp;
    p->resp_len = resp_len;
    if (x2i_send(ctx, ch, opcode, XDNA_AIE2_MSG_ID_MAGIC | slot, req, (uint32_t)req_len) < 0) {
        int err = errno;
        free_slot(ch, slot);
        errno = err;
        return -1;
    }
    return 0;
}

int xdna_mbox_post_cb(struct xdna_shim_ctx *ctx, struct xdna_mbox_chan *ch, uint32_t opcode,
                      const void *req, size_t req_len, size_t resp_len, bool any_size,
                      void (*cb)(struct xdna_shim_ctx *, void *, int, const uint8_t *, size_t),
                      void *arg)
{
    if (xdna_mbox_post_async(ctx, ch, opcode, req, req_len, resp_len) < 0)
        return -1;
    /* the slot just allocated is the one before next_id; nothing ran in between (the send
     * does not process responses) */
    unsigned slot = (ch->next_id + MBOX_MAX_IDS - 1) % MBOX_MAX_IDS;
    ch->pend[slot].any_size = any_size;
    ch->pend[slot].cb = cb;
    ch->pend[slot].cb_arg = arg;
    return 0;
}

int xdna_mbox_rx(struct xdna_shim_ctx *ctx, struct xdna_mbox_chan *ch)
{
    if (!ch->active || ch->bad)
        return 0;
    return rx_worker(ctx, ch);
}

/* Before the monitor runs (a first probe) the sender of a message is the only receiver and
 * its wait polls the channel's vector (xdna_wait_step): while that is the only vector the
 * session owns, an interrupt to the session wakes it as notify would, so it says so in
 * irq_wakes for the call and the daemon leaves that notify out (docs/spec/protocol.md,
 * "Suppressed kicks and notifies"). Not in deterministic mode, whose waits are its hooks. */
static bool lone_waiter(struct xdna_shim_ctx *ctx, unsigned vec)
{
    const struct xdna_drv_state *s = &ctx->s;
    if (s->mon_running || xdna_hooks() || !ctx->ctrl || !s->vec_owned || vec >= ctx->nvec ||
        !s->vec_owned[vec] || ctx->irq_fds[vec] < 0)
        return false;
    for (unsigned v = 0; v < ctx->nvec; v++)
        if (v != vec && s->vec_owned[v])
            return false;
    return true;
}

int xdna_mbox_call(struct xdna_shim_ctx *ctx, struct xdna_mbox_chan *ch, uint32_t opcode,
                   const void *req, size_t req_len, void *resp, size_t resp_len, int timeout_ms)
{
    unsigned slot;
    if (send_checks(ctx, ch, req, req_len) < 0)
        return -1;
    if (!resp || resp_len == 0 || (resp_len & 3) || resp_len > ch->i2x_size)
        return xdna_fail(ctx, EINVAL, "mailbox %s: bad response size %zu", ch->name, resp_len);
    if (alloc_slot(ctx, ch, &slot) < 0)
        return -1;
    struct xdna_mbox_pending *p = &ch->pend[slot];
    p->opcode = opcode;
    p->resp = resp;
    p->resp_len = resp_len;
    /* the vector is ours before the request goes out (docs/spec/protocol.md, "Direct
     * waits"); the management channel outlives the call, so it is released with it */
    const unsigned vec = ch->msix;
    const bool direct = xdna_direct_claim(ctx, vec);
    const bool lone = !direct && lone_waiter(ctx, vec);
    if (lone) /* stored before the request goes out: its answer needs no notify */
        xdna_set_irq_wakes(ctx, true);
    if (x2i_send(ctx, ch, opcode, XDNA_AIE2_MSG_ID_MAGIC | slot, req, (uint32_t)req_len) < 0)
        goto fail;

    uint64_t deadline = xdna_deadline(timeout_ms > 0 ? timeout_ms
                                                     : ctx->timeouts[XDNA_SHIM_TIMEOUT_MBOX_RX]);
    int irq_fd = ctx->irq_fds[ch->msix];
    while (!p->done) {
        bool irq = direct;
        if ((direct ? xdna_direct_wait(ctx, vec, deadline)
                    : xdna_wait_step(ctx, irq_fd, deadline, &irq)) < 0) {
            if (errno != ETIME)
                goto fail;
            if (direct)
                xdna_direct_release(ctx, vec);
            if (lone)
                xdna_irq_wakes_sync(ctx);
            free_slot(ch, slot);
            /* the driver destroys the management channel on a timeout */
            xdna_mbox_destroy(ctx, ch);
            return xdna_fail(ctx, ETIME, "mailbox %s: no response to %s (%#x) within %d ms",
                             ch->name, xdna_opcode_name(opcode), opcode,
                             timeout_ms > 0 ? timeout_ms : ctx->timeouts[XDNA_SHIM_TIMEOUT_MBOX_RX]);
        }
        /* this direct waiter or the event pump may have taken our response (and found the
         * channel bad) while we waited: a bad channel is read no further, and a call whose
         * response came has its own outcome (a wrong size is EINVAL, whatever bad state
         * followed) */
        if (irq && xdna_mbox_rx(ctx, ch) < 0 && !p->done)
            goto fail;
        if (direct) { /* the vector's other channels, and what the answers completed */
            xdna_direct_service(ctx, vec, ch);
            pthread_cond_broadcast(&ctx->s.cond);
        }
    }
    if (direct)
        xdna_direct_release(ctx, vec);
    if (lone)
        xdna_irq_wakes_sync(ctx);
    int err = p->err;
    free_slot(ch, slot);
    if (err == EINVAL)
        return xdna_fail(ctx, EINVAL, "mailbox %s: %s response size differs from %zu bytes",
                         ch->name, xdna_opcode_name(opcode), resp_len);
    if (err)
        return xdna_fail(ctx, err, "mailbox %s: %s failed: %s", ch->name,
                         xdna_opcode_name(opcode), strerror(err));
    return 0;

fail: {
        int e = errno;
        if (direct)
            xdna_direct_release(ctx, vec);
        if (lone)
            xdna_irq_wakes_sync(ctx);
        free_slot(ch, slot);
        errno = e;
        return -1;
    }
}
