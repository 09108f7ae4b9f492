/* Pure validators (see parse.h): the shim's ring arithmetic and structure checks, with no
 * state and no I/O so that libFuzzer can hammer them directly.
 *
 * All arithmetic on values that came from the firmware or a client is done so it cannot wrap
 * (subtractions only after the matching bound has been checked, or in 64 bits).
 */
#include "parse.h"

#include <string.h>

static const char *const reason_names[XDNA_PARSE_REASON_MAX] = {
    [XDNA_PARSE_OK] = "ok",
    [XDNA_PARSE_BAD_RING] = "ring size is not a power of two >= 64",
    [XDNA_PARSE_BAD_TAIL] = "tail out of range or unaligned",
    [XDNA_PARSE_BAD_HEAD] = "head out of range or unaligned",
    [XDNA_PARSE_BAD_TOMBSTONE] = "TOMBSTONE while the tail is ahead",
    [XDNA_PARSE_BAD_SIZE] = "bad message size",
    [XDNA_PARSE_PAST_TAIL] = "message runs past the tail",
    [XDNA_PARSE_BAD_LEN] = "send length not sendable",
    [XDNA_PARSE_NOSPC] = "ring full",
    [XDNA_PARSE_BAD_MAGIC] = "id without the 0x1D magic",
    [XDNA_PARSE_BAD_SLOT] = "id names no slot",
    [XDNA_PARSE_NONCONTIG] = "non-contiguous id",
    [XDNA_PARSE_SHORT] = "buffer too short",
    [XDNA_PARSE_BAD_INFO_MAGIC] = "bad mgmt channel info magic",
    [XDNA_PARSE_BAD_PROTO_MAJOR] = "protocol major mismatch",
    [XDNA_PARSE_OLD_PROTO_MINOR] = "protocol minor too old",
    [XDNA_PARSE_BAD_MSIX] = "MSI-X vector out of range",
    [XDNA_PARSE_UNALIGNED] = "address not 4-aligned",
    [XDNA_PARSE_NO_BAR] = "address in no mapped BAR",
    [XDNA_PARSE_WRONG_BAR] = "address in the wrong BAR",
    [XDNA_PARSE_RING_SIZE] = "ring size is not a power of two >= 64",
    [XDNA_PARSE_STATUS_BUSY] = "no context or columns available",
    [XDNA_PARSE_STATUS_INVAL] = "invalid parameter",
    [XDNA_PARSE_STATUS_FAIL] = "firmware error status",
    [XDNA_PARSE_NO_CQ] = "no cq pair allocated",
    [XDNA_PARSE_CMD_COUNT] = "header count does not fit",
    [XDNA_PARSE_CMD_OPCODE] = "unsupported opcode",
    [XDNA_PARSE_CMD_SHORT] = "payload too short",
    [XDNA_PARSE_CHAIN_COUNT] = "bad chain count",
    [XDNA_PARSE_CHAIN_ENTRY] = "bad chain entry",
};

const char *xdna_parse_reason_str(int reason)
{
    if (reason < 0)
        reason = -reason;
    if (reason >= XDNA_PARSE_REASON_MAX || !reason_names[reason])
        return "unknown";
    return reason_names[reason];
}

static const char *const field_names[XDNA_PARSE_F_MAX] = {
    "x2i tail", "x2i head", "i2x tail", "i2x head", "interrupt", "x2i", "i2x", "msix",
};

const char *xdna_parse_field_str(int field)
{
    return field >= 0 && field < XDNA_PARSE_F_MAX ? field_names[field] : "?";
}

static uint32_t rd32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static int ring_size_ok(uint32_t size) { return size >= 64 && !(size & (size - 1)); }

/* ---- (a) i2x receive ---------------------------------------------------------------------- */

static void rx_bad(struct xdna_parse_rx *rx, int reason)
{
    rx->kind = XDNA_PARSE_RX_BAD;
    rx->reason = reason;
}

void xdna_parse_i2x_head(uint32_t size, uint32_t head, uint32_t tail, struct xdna_parse_rx *rx)
{
    memset(rx, 0, sizeof(*rx));
    if (!ring_size_ok(size))
        return rx_bad(rx, XDNA_PARSE_BAD_RING);
    if (tail > size || (tail & 3))
        return rx_bad(rx, XDNA_PARSE_BAD_TAIL);
    /* Empty first, as the driver does: after a message ending exactly at the ring end head
     * and tail both equal size, and wrapping head first would re-read stale messages. */
    if (head == tail)
        return;
    if (head == size)
        head = 0;
    if (head == tail) /* wrapped onto an empty ring (tail 0) */
        return;
    if (head > size - 4 || (head & 3))
        return rx_bad(rx, XDNA_PARSE_BAD_HEAD);
    rx->kind = XDNA_PARSE_RX_READ;
    rx->off = head;
}

void xdna_parse_i2x_first(uint32_t size, uint32_t tail, uint32_t first, struct xdna_parse_rx *rx)
{
    const uint32_t head = rx->off;
    if (first == XDNA_AIE2_TOMBSTONE) {
        if (tail > head)
            return rx_bad(rx, XDNA_PARSE_BAD_TOMBSTONE);
        rx->kind = XDNA_PARSE_RX_WRAP;
        rx->next = 0;
        return;
    }
    const uint32_t total = first;
    if (total == 0 || (total & 3) || total > size - XDNA_AIE2_MSG_HEADER_SIZE ||
        head > size - XDNA_AIE2_MSG_HEADER_SIZE - total)
        return rx_bad(rx, XDNA_PARSE_BAD_SIZE);
    if (tail > head && head + XDNA_AIE2_MSG_HEADER_SIZE + total > tail)
        return rx_bad(rx, XDNA_PARSE_PAST_TAIL);
    rx->kind = XDNA_PARSE_RX_MSG;
    rx->total = total;
    rx->next = head + XDNA_AIE2_MSG_HEADER_SIZE + total; /* may equal size: expected */
}

void xdna_parse_i2x_step(const uint8_t *ring, uint32_t size, uint32_t head, uint32_t tail,
                         struct xdna_parse_rx *rx)
{
    xdna_parse_i2x_head(size, head, tail, rx);
    if (rx->kind != XDNA_PARSE_RX_READ)
        return;
    xdna_parse_i2x_first(size, tail, rd32(ring + rx->off), rx);
    if (rx->kind == XDNA_PARSE_RX_MSG) {
        rx->id = rd32(ring + rx->off + offsetof(struct xdna_aie2_msg_header, id));
        rx->opcode = rd32(ring + rx->off + offsetof(struct xdna_aie2_msg_header, opcode));
    }
}

/* ---- (b) x2i send ------------------------------------------------------------------------- */

void xdna_parse_x2i_space(uint32_t head, uint32_t tail, uint32_t size, uint32_t len,
                          struct xdna_parse_tx *tx)
{
    memset(tx, 0, sizeof(*tx));
    tx->kind = XDNA_PARSE_TX_BAD;
    if (!ring_size_ok(size)) {
        tx->reason = XDNA_PARSE_BAD_RING;
        return;
    }
    if (head > size || (head & 3)) {
        tx->reason = XDNA_PARSE_BAD_HEAD;
        return;
    }
    /* the cached tail and the length are the shim's own; checked so the arithmetic below
     * cannot wrap whatever the caller passes */
    if (tail > size || (tail & 3)) {
        tx->reason = XDNA_PARSE_BAD_TAIL;
        return;
    }
    if (len == 0 || (len & 3) || len > size - 4) {
        tx->reason = XDNA_PARSE_BAD_LEN;
        return;
    }
    tx->reason = XDNA_PARSE_OK;
    if (tail < head && tail + len >= head) {
        tx->kind = XDNA_PARSE_TX_NOSPC;
        tx->reason = XDNA_PARSE_NOSPC;
        return;
    }
    if (tail >= head && tail + len > size - 4) {
        if (len >= head) {
            tx->kind = XDNA_PARSE_TX_NOSPC;
            tx->reason = XDNA_PARSE_NOSPC;
            return;
        }
        tx->kind = XDNA_PARSE_TX_WRAP;
        tx->tomb = tail;
        tx->tomb_ok = tail + 4 <= size;
        tx->pos = 0;
    } else {
        tx->kind = XDNA_PARSE_TX_WRITE;
        tx->pos = tail;
    }
    tx->new_tail = tx->pos + len;
}

/* ---- (c) response ids --------------------------------------------------------------------- */

int xdna_parse_resp_slot(uint32_t id, uint32_t nslots)
{
    if ((id & XDNA_AIE2_MSG_ID_MAGIC_MASK) != XDNA_AIE2_MSG_ID_MAGIC)
        return -XDNA_PARSE_BAD_MAGIC;
    uint32_t slot = id & 0xFFFFFFu;
    if (slot >= nslots)
        return -XDNA_PARSE_BAD_SLOT;
    return (int)slot;
}

int xdna_parse_resp_contig(uint32_t id, uint32_t last_id)
{
    uint32_t low = id & 0xFFFFFFu;
    if (low == 0 || low == ((last_id & 0xFFFFFFu) + 1))
        return XDNA_PARSE_OK;
    return XDNA_PARSE_NONCONTIG;
}

/* ---- (d) channel layouts ------------------------------------------------------------------ */

int xdna_parse_dev_loc(const struct xdna_parse_layout *lay, uint64_t addr, uint32_t size,
                       struct xdna_parse_loc *loc)
{
    unsigned nap = lay->nap < XDNA_PARSE_MAX_APERTURES ? lay->nap : XDNA_PARSE_MAX_APERTURES;
    for (unsigned i = 0; i < nap; i++) {
        const struct xdna_parse_aperture *a = &lay->ap[i];
        if (addr >= a->base && size <= a->size && addr - a->base <= a->size - size) {
            /* the first matching aperture decides, as xdna_dev_to_bar */
            uint64_t off = addr - a->base;
            if (a->bar < 0 || a->bar >= XDNA_PARSE_MAX_BARS || off > UINT32_MAX)
                return XDNA_PARSE_NO_BAR;
            uint64_t mapped = lay->bar_size[a->bar];
            if (!mapped || size > mapped || off > mapped - size)
                return XDNA_PARSE_NO_BAR;
            loc->bar = (unsigned)a->bar;
            loc->off = (uint32_t)off;
            return XDNA_PARSE_OK;
        }
    }
    return XDNA_PARSE_NO_BAR;
}

static int chan_fail(struct xdna_parse_chan *ch, int reason, int field, uint32_t value)
{
    ch->reason = reason;
    ch->field = field;
    ch->value = value;
    return reason;
}

static int reg_check(const struct xdna_parse_layout *lay, struct xdna_parse_chan *ch, int field,
                     uint32_t addr)
{
    if (addr & 3)
        return chan_fail(ch, XDNA_PARSE_UNALIGNED, field, addr);
    int r = xdna_parse_dev_loc(lay, addr, 4, &ch->reg[field]);
    if (r)
        return chan_fail(ch, r, field, addr);
    if (lay->mbox_bar < 0 || ch->reg[field].bar != (unsigned)lay->mbox_bar)
        return chan_fail(ch, XDNA_PARSE_WRONG_BAR, field, addr);
    return 0;
}

static int ring_check(const struct xdna_parse_layout *lay, struct xdna_parse_chan *ch, int field,
                      uint32_t addr, uint32_t size)
{
    if (!ring_size_ok(size))
        return chan_fail(ch, XDNA_PARSE_RING_SIZE, field, size);
    if (addr & 3)
        return chan_fail(ch, XDNA_PARSE_UNALIGNED, field, addr);
    int i = field - XDNA_PARSE_F_X2I_RING;
    int r = xdna_parse_dev_loc(lay, addr, size, &ch->ring[i]);
    if (r)
        return chan_fail(ch, r, field, addr);
    if ((int)ch->ring[i].bar != lay->sram_bar)
        return chan_fail(ch, XDNA_PARSE_WRONG_BAR, field, addr);
    ch->ring_size[i] = size;
    return 0;
}

int xdna_parse_chan_check(const struct xdna_parse_layout *lay,
                          const struct xdna_parse_chan_addrs *a, struct xdna_parse_chan *ch)
{
    memset(ch, 0, sizeof(*ch));
    if (a->msi_id >= lay->nvec)
        return chan_fail(ch, XDNA_PARSE_BAD_MSIX, XDNA_PARSE_F_MSIX, a->msi_id);
    ch->msix = a->msi_id;
    int r;
    if ((r = reg_check(lay, ch, XDNA_PARSE_F_X2I_TAIL, a->x2i_tail)) ||
        (r = reg_check(lay, ch, XDNA_PARSE_F_X2I_HEAD, a->x2i_head)) ||
        (r = reg_check(lay, ch, XDNA_PARSE_F_I2X_TAIL, a->i2x_tail)) ||
        (r = reg_check(lay, ch, XDNA_PARSE_F_I2X_HEAD, a->i2x_head)))
        return r;
    /* i2x_head + 4 in 64 bits: a head at 0xFFFFFFFC must not alias address 0 */
    uint64_t intr = (uint64_t)a->i2x_head + 4;
    if (intr > UINT32_MAX)
        return chan_fail(ch, XDNA_PARSE_NO_BAR, XDNA_PARSE_F_INTR, (uint32_t)intr);
    if ((r = reg_check(lay, ch, XDNA_PARSE_F_INTR, (uint32_t)intr)) ||
        (r = ring_check(lay, ch, XDNA_PARSE_F_X2I_RING, a->x2i_buf, a->x2i_buf_sz)) ||
        (r = ring_check(lay, ch, XDNA_PARSE_F_I2X_RING, a->i2x_buf, a->i2x_buf_sz)))
        return r;
    return XDNA_PARSE_OK;
}

int xdna_parse_mgmt_hdr(const uint8_t *buf, size_t len, uint32_t major, uint32_t min_minor,
                        struct xdna_parse_mgmt_info *out)
{
    memset(out, 0, sizeof(*out));
    if (len < XDNA_AIE2_MGMT_MBOX_CHANN_INFO_SIZE)
        return XDNA_PARSE_SHORT;
    struct xdna_aie2_mgmt_mbox_chann_info in;
    memcpy(&in, buf, sizeof(in));
    out->a.x2i_tail = in.x2i_tail;
    out->a.x2i_head = in.x2i_head;
    out->a.x2i_buf = in.x2i_buf;
    out->a.x2i_buf_sz = in.x2i_buf_sz;
    out->a.i2x_tail = in.i2x_tail;
    out->a.i2x_head = in.i2x_head;
    out->a.i2x_buf = in.i2x_buf;
    out->a.i2x_buf_sz = in.i2x_buf_sz;
    out->magic = in.magic;
    out->a.msi_id = in.msi_id;
    out->prot_major = in.prot_major;
    out->prot_minor = in.prot_minor;
    if (out->magic != XDNA_AIE2_MGMT_INFO_MAGIC)
        return XDNA_PARSE_BAD_INFO_MAGIC;
    if (out->prot_major != major)
        return XDNA_PARSE_BAD_PROTO_MAJOR;
    if (out->prot_minor < min_minor)
        return XDNA_PARSE_OLD_PROTO_MINOR;
    return XDNA_PARSE_OK;
}

int xdna_parse_mgmt_info(const uint8_t *buf, size_t len, uint32_t major, uint32_t min_minor,
                         const struct xdna_parse_layout *lay, struct xdna_parse_mgmt_info *out,
                         struct xdna_parse_chan *ch)
{
    memset(ch, 0, sizeof(*ch));
    int r = xdna_parse_mgmt_hdr(buf, len, major, min_minor, out);
    if (r) {
        ch->reason = r;
        return r;
    }
    return xdna_parse_chan_check(lay, &out->a, ch);
}

/* ---- (e) CREATE_CONTEXT response ---------------------------------------------------------- */

int xdna_parse_create_resp(const uint8_t *buf, size_t len, unsigned nvec,
                           struct xdna_parse_create_resp *out)
{
    memset(out, 0, sizeof(*out));
    if (len < XDNA_AIE2_MSG_CREATE_CONTEXT_RESP_SIZE)
        return XDNA_PARSE_SHORT;
    struct xdna_aie2_create_context_resp r;
    memcpy(&r, buf, sizeof(r));
    out->status = r.status;
    if (out->status == XDNA_AIE2_STATUS_MGMT_ERT_NOAVAIL)
        return XDNA_PARSE_STATUS_BUSY;
    if (out->status == XDNA_AIE2_STATUS_MGMT_ERT_INVALID_PARAM)
        return XDNA_PARSE_STATUS_INVAL;
    if (out->status)
        return XDNA_PARSE_STATUS_FAIL;
    out->fw_live = 1;
    out->ctx_id = r.context_id;
    out->msix = r.msix_id;
    out->ncq = r.num_cq_pairs_allocated;
    const struct xdna_aie2_cq_pair *q = &r.cq_pair[0];
    out->a.x2i_head = q->x2i_q.head_addr;
    out->a.x2i_tail = q->x2i_q.tail_addr;
    out->a.x2i_buf = q->x2i_q.buf_addr;
    out->a.x2i_buf_sz = q->x2i_q.buf_size;
    out->a.i2x_head = q->i2x_q.head_addr;
    out->a.i2x_tail = q->i2x_q.tail_addr;
    out->a.i2x_buf = q->i2x_q.buf_addr;
    out->a.i2x_buf_sz = q->i2x_q.buf_size;
    out->a.msi_id = out->msix;
    if (out->ncq < 1)
        return XDNA_PARSE_NO_CQ;
    if (out->msix >= nvec)
        return XDNA_PARSE_BAD_MSIX;
    return XDNA_PARSE_OK;
}

int xdna_parse_create_resp_full(const uint8_t *buf, size_t len, const struct xdna_parse_layout *lay,
                                struct xdna_parse_create_resp *out, struct xdna_parse_chan *ch)
{
    memset(ch, 0, sizeof(*ch));
    int r = xdna_parse_create_resp(buf, len, lay->nvec, out);
    if (r) {
        ch->reason = r;
        return r;
    }
    return xdna_parse_chan_check(lay, &out->a, ch);
}

/* ---- (f) ERT command BOs ------------------------------------------------------------------ */

int xdna_parse_cmd_hdr(const uint8_t *bo, uint64_t bo_size, struct xdna_parse_cmd *out)
{
    memset(out, 0, sizeof(*out));
    if (bo_size < 4)
        return XDNA_PARSE_CMD_COUNT;
    uint32_t h = rd32(bo);
    uint32_t count = (h >> 12) & 0x7FF;
    out->opcode = (h >> 23) & 0x1F;
    /* data = CU masks (1 + extra; none for CMD_CHAIN) + payload */
    uint32_t masks = out->opcode == XDNA_SHIM_ERT_CMD_CHAIN ? 0 : 1 + ((h >> 10) & 3);
    if ((uint64_t)(1 + count) * 4 > bo_size || count < masks)
        return XDNA_PARSE_CMD_COUNT;
    out->cu_idx = masks ? XDNA_SHIM_ERT_INVALID_CU : 0;
    for (uint32_t i = 0; i < masks; i++) {
        uint32_t mask = rd32(bo + 4 + 4 * i);
        if (mask) {
            out->cu_idx = (uint32_t)__builtin_ctz(mask); /* bit within that word, as the driver */
            break;
        }
    }
    out->pay = 1 + masks;
    out->npay = count - masks;
    return XDNA_PARSE_OK;
}

/* A command of the given opcode: its header in c, its payload at *p. */
static int cmd_of(const uint8_t *bo, uint64_t bo_size, uint32_t opcode, struct xdna_parse_cmd *c,
                  const uint8_t **p)
{
    int r = xdna_parse_cmd_hdr(bo, bo_size, c);
    if (r)
        return r;
    if (c->opcode != opcode)
        return XDNA_PARSE_CMD_OPCODE;
    *p = bo + 4ull * c->pay;
    return XDNA_PARSE_OK;
}

int xdna_parse_exec(const uint8_t *bo, uint64_t bo_size, uint32_t opcode, struct xdna_parse_npu *out)
{
    int r = xdna_parse_npu(bo, bo_size, out);
    if (r)
        return r;
    return out->opcode == opcode ? XDNA_PARSE_OK : XDNA_PARSE_CMD_OPCODE;
}

int xdna_parse_npu(const uint8_t *bo, uint64_t bo_size, struct xdna_parse_npu *out)
{
    memset(out, 0, sizeof(*out));
    struct xdna_parse_cmd c;
    int r = xdna_parse_cmd_hdr(bo, bo_size, &c);
    if (r)
        return r;
    const uint8_t *p = bo + 4ull * c.pay;
    uint32_t fixed; /* payload words before the properties */
    out->opcode = c.opcode;
    out->cu_idx = c.cu_idx;
    switch (c.opcode) {
    case XDNA_SHIM_ERT_START_CU:
        fixed = 0;
        break;
    case XDNA_SHIM_ERT_START_NPU:
    case XDNA_SHIM_ERT_START_DPU:
        fixed = 4;
        if (c.npay < fixed)
            return XDNA_PARSE_CMD_SHORT;
        out->inst = rd32(p) | (uint64_t)rd32(p + 4) << 32;
        out->inst_size = rd32(p + 8);
        if (c.opcode == XDNA_SHIM_ERT_START_NPU)
            out->props = rd32(p + 12);
        else if (rd32(p + 12)) /* chained multi-column DPU sequences are not served */
            return XDNA_PARSE_CMD_SHORT;
        break;
    case XDNA_SHIM_ERT_START_NPU_PREEMPT:
    case XDNA_SHIM_ERT_START_NPU_PREEMPT_ELF:
        fixed = 10;
        if (c.npay < fixed)
            return XDNA_PARSE_CMD_SHORT;
        out->inst = rd32(p) | (uint64_t)rd32(p + 4) << 32;
        out->save = rd32(p + 8) | (uint64_t)rd32(p + 12) << 32;
        out->restore = rd32(p + 16) | (uint64_t)rd32(p + 20) << 32;
        out->inst_size = rd32(p + 24);
        out->save_size = rd32(p + 28);
        out->restore_size = rd32(p + 32);
        out->props = rd32(p + 36);
        break;
    default:
        return XDNA_PARSE_CMD_OPCODE;
    }
    if (out->props > c.npay - fixed)
        return XDNA_PARSE_CMD_SHORT;
    out->pargs = c.pay + fixed;
    out->args = out->pargs + out->props;
    out->nargs = c.npay - fixed - out->props;
    return XDNA_PARSE_OK;
}

int xdna_parse_chain(const uint8_t *bo, uint64_t bo_size, uint32_t self, uint32_t max_handle,
                     struct xdna_parse_chain *out)
{
    memset(out, 0, sizeof(*out));
    struct xdna_parse_cmd c;
    const uint8_t *p;
    int r = cmd_of(bo, bo_size, XDNA_SHIM_ERT_CMD_CHAIN, &c, &p);
    if (r)
        return r;
    if (c.npay < 6)
        return XDNA_PARSE_CMD_SHORT;
    uint32_t n = rd32(p);
    out->n = n; /* CHAIN_COUNT: the count found; CHAIN_ENTRY: entries up to the bad one */
    if (n == 0 || n > XDNA_PARSE_CHAIN_MAX || c.npay < 6 + 2 * n)
        return XDNA_PARSE_CHAIN_COUNT;
    for (uint32_t i = 0; i < n; i++) {
        uint64_t h = rd32(p + 4 * (6 + 2 * i)) | (uint64_t)rd32(p + 4 * (7 + 2 * i)) << 32;
        out->handle[i] = h;
        if (h == 0 || h > max_handle || h == self) {
            out->n = i + 1;
            return XDNA_PARSE_CHAIN_ENTRY;
        }
    }
    return XDNA_PARSE_OK;
}
