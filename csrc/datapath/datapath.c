/* The daemon's C job path (docs/spec/jobs.md §7, "What runs in C"): the subset of the
 * Python user-channel firmware (docs/spec/jobs.md §4-§5: the ring rules of
 * MailboxChannel.on_x2i_tail/_put, ContextFirmware._single/_chain/_slot/_run/resolve and
 * Iommu.translate, docs/spec/jobs.md §2) that answers no-op jobs, the mgmt channel's
 * queries from the replies the firmware published ("Management queries"), and a stop at
 * everything else ("When it falls back").
 *
 * Every check the Python path makes on a message is made here in the same order; where the
 * Python path would answer anything but SUCCESS, fault, stall, queue or log, this code stops
 * before the message and leaves it to Python, so the errors have one definition. A message
 * is answered only once all of its commands succeeded: nothing of a message the C path
 * gives up on has been changed. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "datapath.h"
#include "generated/xdna_fw_aie2.h"
#include "generated/xdna_kernels.h"
#include "generated/xdna_proto.h"

#define HDR XDNA_AIE2_MSG_HEADER_SIZE
#define DMA_READ XDNA_IOMMU_DMA_READ
#define DMA_WRITE XDNA_IOMMU_DMA_WRITE

typedef unsigned __int128 u128;

static uint32_t rd32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t rd64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static void wr32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }

static uint32_t sz_ver(uint32_t size)
{
    return (size & XDNA_AIE2_MSG_SIZE_MASK) | XDNA_AIE2_MSG_PROTOCOL_VERSION << XDNA_AIE2_MSG_VERSION_SHIFT;
}

/* ContextFirmware.resolve then Iommu.translate: a job's device address -> host bytes, or
 * NULL for a fault (the Python path stalls the context: not ours). */
static const uint8_t *translate(const struct xdp_chan *c, uint64_t addr, uint64_t size,
                                uint32_t perm)
{
    uint64_t a = addr;
    if (c->nchunks && XDNA_AIE2_HEAP_DEV_ADDR <= addr) {
        u128 end = (u128)addr + size;
        for (uint32_t i = 0; i < c->nchunks; i++) {
            const struct xdp_chunk *ch = &c->chunks[i];
            if (!(ch->dev <= addr && addr < ch->dev + ch->size))
                continue;
            a = ch->va + (addr - ch->dev);
            if (end > (u128)ch->dev + ch->size) { /* the range runs into later chunks */
                const struct xdp_chunk *nxt = ch;
                for (uint32_t j = i + 1; j < c->nchunks; j++) {
                    if (end <= (u128)nxt->dev + nxt->size)
                        break;
                    if (c->chunks[j].va != nxt->va + nxt->size)
                        return NULL;
                    nxt = &c->chunks[j];
                }
                if (end > (u128)nxt->dev + nxt->size)
                    return NULL;
            }
            break;
        }
    }
    /* the last mapping starting at or below a (bisect_right - 1) */
    uint32_t lo = 0, hi = c->nmaps;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (c->maps[mid].addr <= a)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == 0)
        return NULL;
    const struct xdp_map *m = &c->maps[lo - 1];
    if (!(a < m->addr + m->size))
        return NULL;
    uint64_t start = a - m->addr;
    if ((u128)start + size > m->size || (m->perm & perm) != perm)
        return NULL;
    return m->mem + start;
}

/* One command as ContextFirmware.Command holds it. */
struct cmd {
    uint64_t inst_addr;
    uint32_t inst_size;
    uint32_t nwords;   /* buffer-argument words */
    int exact;
    int elf;
    uint32_t slot_type;
    uint64_t save_addr, restore_addr;
    uint32_t save_size, restore_size;
    int64_t cu;        /* -1: none */
};

/* ContextFirmware._run for the programs this path runs: all-zero and the nop kernel.
 * Returns 0 (SUCCESS, *kernel set) or -1 (anything else: Python's). */
static int run(const struct xdp_chan *c, const struct cmd *k, uint32_t *kernel)
{
    if (k->cu >= (int64_t)c->ncus)
        return -1;
    const uint8_t *inst = NULL;
    if (k->inst_size) {
        inst = translate(c, k->inst_addr, k->inst_size, DMA_READ);
        if (!inst)
            return -1;
    }
    if (k->save_size && !translate(c, k->save_addr, k->save_size, DMA_READ | DMA_WRITE))
        return -1;
    if (k->restore_size && !translate(c, k->restore_addr, k->restore_size, DMA_READ | DMA_WRITE))
        return -1;
    uint8_t desc[XDNA_KERNEL_DESC_SIZE];
    uint32_t n = k->inst_size < sizeof(desc) ? k->inst_size : (uint32_t)sizeof(desc);
    if (n)
        memcpy(desc, inst, n);
    int zero = 1;
    for (uint32_t i = 0; i < n && zero; i++)
        zero = !desc[i];
    for (uint64_t i = n; i < k->inst_size && zero; i++)
        zero = !inst[i];
    if (zero) {
        *kernel = XDNA_AIE2_TXN_OP_NONE;
        return 0;
    }
    if (n < XDNA_KERNEL_DESC_SIZE
        || rd32(desc + XDNA_KERNEL_DESC_OFF_MAGIC) != XDNA_KERNEL_MAGIC
        || rd32(desc + XDNA_KERNEL_DESC_OFF_VERSION) != XDNA_KERNEL_VERSION
        || rd32(desc + XDNA_KERNEL_DESC_OFF_KERNEL) != XDNA_KERNEL_NOP
        || !xdna_kernel_dtype_ok(rd32(desc + XDNA_KERNEL_DESC_OFF_DTYPE)))
        return -1;
    uint32_t need = 2 * XDNA_KERNEL_NOP_NARGS, have = k->nwords;
    if (k->elf) {
        if ((uint64_t)k->inst_size < XDNA_KERNEL_DESC_SIZE + 8ull * XDNA_KERNEL_NOP_NARGS)
            return -1;
        have = need;
    }
    if (have < need || (k->exact && have != need))
        return -1;
    *kernel = XDNA_KERNEL_NOP;
    return 0;
}

/* ContextFirmware._cf_command: words 0/1 name the program, the rest are arguments. */
static int cf_command(const uint8_t *words, uint32_t nwords, struct cmd *k)
{
    if (nwords < 2)
        return -1;
    k->inst_addr = rd32(words) | (uint64_t)rd32(words + 4) << 32;
    k->inst_size = XDNA_KERNEL_DESC_SIZE;
    k->nwords = nwords - 2;
    return 0;
}

/* A job's outcome, committed only when the whole message succeeded. */
struct outcome {
    uint32_t cmds, cur_idx, kernel, slot, slot_set;
};

/* ContextFirmware._chain and _slot. */
static int chain(const struct xdp_chan *c, uint32_t op, const uint8_t *req, struct outcome *o)
{
    uint64_t addr;
    uint32_t size, count;
    if (op == XDNA_AIE2_MSG_CHAIN_EXEC_NPU) {
        addr = rd64(req + offsetof(struct xdna_aie2_chain_exec_npu_req, buf_addr));
        size = rd32(req + offsetof(struct xdna_aie2_chain_exec_npu_req, buf_size));
        count = rd32(req + offsetof(struct xdna_aie2_chain_exec_npu_req, count));
    } else {
        addr = rd64(req + offsetof(struct xdna_aie2_chain_exec_req, buf_addr));
        size = rd32(req + offsetof(struct xdna_aie2_chain_exec_req, buf_size));
        count = rd32(req + offsetof(struct xdna_aie2_chain_exec_req, count));
    }
    if (count == 0 || size == 0 || size > XDNA_AIE2_CMD_LIST_MAX)
        return -1;
    const uint8_t *live = translate(c, addr, size, DMA_READ);
    if (!live)
        return -1;
    uint8_t buf[XDNA_AIE2_CMD_LIST_MAX]; /* the snapshot: the host cannot change a running chain */
    memcpy(buf, live, size);
    uint32_t off = 0;
    for (uint32_t idx = 0; idx < count; idx++) {
        struct cmd k = {.exact = 1, .cu = -1};
        uint32_t hsize, at_cnt; /* the slot header, and where its arg_cnt is */
        if (op == XDNA_AIE2_MSG_CHAIN_EXEC_NPU) {
            hsize = XDNA_AIE2_SLOT_NPU_SIZE;
            at_cnt = offsetof(struct xdna_aie2_slot_npu, arg_cnt);
        } else if (op == XDNA_AIE2_MSG_CHAIN_EXEC_DPU) {
            hsize = XDNA_AIE2_SLOT_DPU_SIZE;
            at_cnt = offsetof(struct xdna_aie2_slot_dpu, arg_cnt);
        } else {
            hsize = XDNA_AIE2_SLOT_EXECBUF_CF_SIZE;
            at_cnt = offsetof(struct xdna_aie2_slot_execbuf_cf, arg_cnt);
        }
        if ((uint64_t)off + hsize > size)
            return -1;
        const uint8_t *s = buf + off;
        uint32_t arg_cnt = rd32(s + at_cnt);
        uint64_t end = (uint64_t)off + hsize + 4ull * arg_cnt;
        if (end > size)
            return -1;
        const uint8_t *words = s + hsize;
        if (op == XDNA_AIE2_MSG_CHAIN_EXEC_NPU) {
            uint32_t stype = rd32(s + offsetof(struct xdna_aie2_slot_npu, type));
            uint32_t props = rd32(s + offsetof(struct xdna_aie2_slot_npu, inst_prop_cnt));
            uint32_t cu = rd32(s + offsetof(struct xdna_aie2_slot_npu, cu_idx));
            k.slot_type = stype;
            if (stype == XDNA_AIE2_SLOT_TYPE_NON_ELF) {
                if (cf_command(words, arg_cnt, &k))
                    return -1;
                k.cu = cu;
            } else if (stype == XDNA_AIE2_SLOT_TYPE_ELF) {
                if (arg_cnt != 1 || rd32(words) != XDNA_AIE2_KERNEL_OP_TXN)
                    return -1;
                k.inst_addr = rd64(s + offsetof(struct xdna_aie2_slot_npu, inst_addr));
                k.inst_size = rd32(s + offsetof(struct xdna_aie2_slot_npu, inst_size));
                k.elf = 1;
            } else if (stype == XDNA_AIE2_SLOT_TYPE_PARTIAL_ELF
                       || stype == XDNA_AIE2_SLOT_TYPE_PREEMPT) {
                if (props > arg_cnt)
                    return -1;
                k.inst_addr = rd64(s + offsetof(struct xdna_aie2_slot_npu, inst_addr));
                k.inst_size = rd32(s + offsetof(struct xdna_aie2_slot_npu, inst_size));
                k.nwords = arg_cnt - props;
                k.cu = cu;
                if (stype == XDNA_AIE2_SLOT_TYPE_PREEMPT) {
                    k.save_addr = rd64(s + offsetof(struct xdna_aie2_slot_npu, save_addr));
                    k.save_size = rd32(s + offsetof(struct xdna_aie2_slot_npu, save_size));
                    k.restore_addr = rd64(s + offsetof(struct xdna_aie2_slot_npu, restore_addr));
                    k.restore_size = rd32(s + offsetof(struct xdna_aie2_slot_npu, restore_size));
                }
            } else {
                return -1;
            }
        } else if (op == XDNA_AIE2_MSG_CHAIN_EXEC_DPU) {
            uint32_t props = rd32(s + offsetof(struct xdna_aie2_slot_dpu, inst_prop_cnt));
            if (props > arg_cnt)
                return -1;
            k.inst_addr = rd64(s + offsetof(struct xdna_aie2_slot_dpu, inst_buf_addr));
            k.inst_size = rd32(s + offsetof(struct xdna_aie2_slot_dpu, inst_size));
            k.nwords = arg_cnt - props;
            k.cu = rd32(s + offsetof(struct xdna_aie2_slot_dpu, cu_idx));
        } else {
            if (cf_command(words, arg_cnt, &k))
                return -1;
            k.cu = rd32(s + offsetof(struct xdna_aie2_slot_execbuf_cf, cu_idx));
        }
        off = (uint32_t)end;
        if (run(c, &k, &o->kernel))
            return -1;
        o->cmds++;
        o->cur_idx = idx;
        o->slot = k.slot_type;
        o->slot_set = 1;
    }
    return 0;
}

/* ContextFirmware._single. */
static int single(const struct xdp_chan *c, uint32_t op, const uint8_t *req, struct outcome *o)
{
    struct cmd k = {.exact = 0};
    if (op == XDNA_AIE2_MSG_EXECUTE_BUFFER_CF) {
        const uint8_t *w = req + offsetof(struct xdna_aie2_execute_buffer_cf_req, payload);
        uint32_t nw = (XDNA_AIE2_EXECUTE_BUFFER_CF_REQ_SIZE
                       - offsetof(struct xdna_aie2_execute_buffer_cf_req, payload)) / 4;
        if (cf_command(w, nw, &k))
            return -1;
        k.cu = rd32(req + offsetof(struct xdna_aie2_execute_buffer_cf_req, cu_idx));
    } else {
        uint32_t props, nw;
        if (op == XDNA_AIE2_MSG_EXEC_DPU) {
            k.inst_addr = rd64(req + offsetof(struct xdna_aie2_exec_dpu_req, inst_buf_addr));
            k.inst_size = rd32(req + offsetof(struct xdna_aie2_exec_dpu_req, inst_size));
            props = rd32(req + offsetof(struct xdna_aie2_exec_dpu_req, inst_prop_cnt));
            k.cu = rd32(req + offsetof(struct xdna_aie2_exec_dpu_req, cu_idx));
            nw = (XDNA_AIE2_EXEC_DPU_REQ_SIZE - offsetof(struct xdna_aie2_exec_dpu_req, payload)) / 4;
        } else {
            k.inst_addr = rd64(req + offsetof(struct xdna_aie2_exec_npu_req, inst_addr));
            k.inst_size = rd32(req + offsetof(struct xdna_aie2_exec_npu_req, inst_size));
            props = rd32(req + offsetof(struct xdna_aie2_exec_npu_req, inst_prop_cnt));
            k.cu = rd32(req + offsetof(struct xdna_aie2_exec_npu_req, cu_idx));
            nw = (XDNA_AIE2_EXEC_NPU_REQ_SIZE - offsetof(struct xdna_aie2_exec_npu_req, payload)) / 4;
        }
        if (props > nw)
            return -1;
        k.nwords = nw - props;
    }
    if (run(c, &k, &o->kernel))
        return -1;
    o->cmds = 1;
    o->cur_idx = 0;
    return 0;
}

/* The request size of a fast op, its ops bit and whether it is a chain, or 0 when it is
 * not one (the list is generated from the Python sets: xdna_kernels.h XDNA_FAST_OPS). */
static uint32_t fast_op(uint32_t op, uint32_t *bit, uint32_t *resp, int *chained)
{
#define FAST(name, b, ch) case XDNA_AIE2_MSG_##name: { \
        _Static_assert(XDNA_AIE2_MSG_##name##_RESP_SIZE <= XDNA_AIE2_CHAIN_RESP_SIZE, \
                       "the reply fits the reply buffer"); \
        *bit = (b); \
        *chained = (ch); \
        *resp = XDNA_AIE2_MSG_##name##_RESP_SIZE; \
        return XDNA_AIE2_MSG_##name##_REQ_SIZE; }
    switch (op) {
    XDNA_FAST_OPS(FAST)
    }
#undef FAST
    return 0;
}

/* The mgmt channel (docs/spec/jobs.md §7 "Management queries"): the published reply of a
 * query with a request of its length, or NULL (Python's: another op, a wrong length). */
static const struct xdp_reply *query(const struct xdp_chan *c, uint32_t op, uint32_t total)
{
    for (uint32_t i = 0; i < c->nreplies; i++) {
        const struct xdp_reply *r = &c->replies[i];
        if (r->opcode == op)
            /* a row for anything but a query of the table is never used */
            return r->req_size == total && xdna_aie2_mgmt_query(op) ? r : NULL;
    }
    return NULL;
}

/* MailboxChannel._put: where a reply of n bytes goes in the i2x ring, or -1 when the Python
 * path would queue it (no space) or fail the channel. *wrap: a TOMBSTONE goes at the tail. */
static int64_t i2x_room(const struct xdp_chan *c, uint32_t n, int *wrap)
{
    uint32_t size = c->ring_size, head = *c->i2x_head_reg, tail = c->i2x_tail;
    *wrap = 0;
    if (head > size || (head & 3) || n > size - 4)
        return -1;
    if (tail < head && tail + n >= head)
        return -1;
    if (tail >= head && (uint64_t)tail + n > size - 4) {
        if (n >= head || (uint64_t)tail + 4 > size)
            return -1;
        *wrap = 1;
        return 0;
    }
    return tail;
}

/* MailboxChannel.on_x2i_tail for an armed channel: 0 when every message up to tail was
 * answered, -1 at the first one that is Python's (the cursor stays before it). */
static int x2i_tail(struct xdp_chan *c, uint32_t tail, uint32_t *seq)
{
    uint32_t size = c->ring_size;
    const uint8_t *ring = c->x2i;
    if (tail > size || (tail & 3))
        return -1;
    for (uint32_t pass = 0; pass < size / 4 + 2; pass++) {
        uint32_t head = c->x2i_head;
        if (head == tail)
            return 0;
        if (head >= size) {
            c->x2i_head = head = 0;
            if (head == tail)
                return 0;
        }
        uint32_t word = rd32(ring + head);
        if (word == XDNA_AIE2_TOMBSTONE) {
            if (head < tail)
                return -1;
            c->x2i_head = 0;
            *c->x2i_head_reg = 0;
            continue;
        }
        if ((uint64_t)head + HDR > size)
            return -1;
        uint32_t total = rd32(ring + head + offsetof(struct xdna_aie2_msg_header, total_size));
        uint32_t szv = rd32(ring + head + offsetof(struct xdna_aie2_msg_header, sz_ver));
        uint32_t id = rd32(ring + head + offsetof(struct xdna_aie2_msg_header, id));
        uint32_t op = rd32(ring + head + offsetof(struct xdna_aie2_msg_header, opcode));
        uint64_t msg_size = (uint64_t)HDR + total;
        if (total == 0 || (total & 3) || total > XDNA_AIE2_MSG_SIZE_MASK
            || msg_size > size - head || (head < tail && msg_size > tail - head))
            return -1;
        if (szv != sz_ver(total) || (id & XDNA_AIE2_MSG_ID_MAGIC_MASK) != XDNA_AIE2_MSG_ID_MAGIC)
            return -1;
        uint32_t bit, resp;
        int chained = 0;
        struct outcome o = {0};
        const struct xdp_reply *q = NULL;
        if (c->nreplies) { /* the mgmt channel: published queries only */
            q = query(c, op, total);
            if (!q)
                return -1;
            resp = q->resp_size;
        } else {
            uint32_t req_size = fast_op(op, &bit, &resp, &chained);
            if (!req_size || !(c->ops >> bit & 1) || total != req_size)
                return -1;
            const uint8_t *req = ring + head + HDR;
            if (chained ? chain(c, op, req, &o) : single(c, op, req, &o))
                return -1;
        }
        int wrap;
        uint32_t n = HDR + resp;
        int64_t at = i2x_room(c, n, &wrap);
        if (at < 0)
            return -1;
        /* answered: commit, in the Python path's order (reply, then the x2i head) */
        c->x2i_head = head + (uint32_t)msg_size;
        c->msgs_in++;
        if (!q) {
            c->jobs++;
            c->cmds += o.cmds;
            c->chains += chained;
            c->last_op = op;
            c->cur_idx = o.cur_idx;
            c->cur_kernel = o.kernel;
            if (o.slot_set) {
                c->last_slot = o.slot;
                c->slot_set = 1;
            }
        }
        if (wrap)
            wr32(c->i2x + c->i2x_tail, XDNA_AIE2_TOMBSTONE);
        uint8_t pkt[HDR + XDNA_AIE2_CHAIN_RESP_SIZE] = {0}; /* status SUCCESS, then zeros */
        wr32(pkt + offsetof(struct xdna_aie2_msg_header, total_size), resp);
        wr32(pkt + offsetof(struct xdna_aie2_msg_header, sz_ver), sz_ver(resp));
        wr32(pkt + offsetof(struct xdna_aie2_msg_header, id), id);
        wr32(pkt + offsetof(struct xdna_aie2_msg_header, opcode), op);
        _Static_assert(XDNA_AIE2_STATUS_SUCCESS == 0, "a zeroed reply is SUCCESS");
        if (q) { /* the header, then the published payload */
            memcpy(c->i2x + at, pkt, HDR);
            memcpy(c->i2x + at + HDR, q->resp, resp);
        } else {
            memcpy(c->i2x + at, pkt, n);
        }
        c->i2x_tail = (uint32_t)at + n;
        *c->i2x_tail_reg = c->i2x_tail;
        c->msgs_out++;
        if (c->intr_reg)
            *c->intr_reg = 1;
        if (!c->irqs++)
            c->first = ++*seq;
        *c->x2i_head_reg = c->x2i_head;
    }
    return -1; /* the ring does not terminate: Python fails the channel */
}

uint64_t xdp_drain(struct xdp_chan *chans, uint32_t nchans, const uint8_t *entries,
                   uint32_t nentries, uint64_t tail, uint64_t head, uint32_t *why,
                   int32_t *chan, uint32_t got[3], uint32_t *seq)
{
    *why = XDP_DONE;
    *chan = -1;
    for (; tail < head; tail++) {
        const uint8_t *e = entries + (tail % nentries) * XDNA_PROTO_LOG_ENTRY_SIZE;
        uint32_t bar = rd32(e + offsetof(struct xdna_proto_log_entry, bar));
        uint32_t off = rd32(e + offsetof(struct xdna_proto_log_entry, offset));
        uint32_t val = rd32(e + offsetof(struct xdna_proto_log_entry, value));
        got[0] = bar; /* the copy the caller applies if this entry stops the drain */
        got[1] = off;
        got[2] = val;
        struct xdp_chan *c = NULL;
        int is_tail = 0;
        for (uint32_t i = 0; i < nchans; i++) {
            if (!chans[i].armed)
                continue;
            if (chans[i].tail_bar == bar && chans[i].tail_off == off) {
                c = &chans[i];
                is_tail = 1;
                *chan = (int32_t)i;
                break;
            }
            if (chans[i].head_bar == bar && chans[i].head_off == off) {
                c = &chans[i];
                *chan = (int32_t)i;
                break;
            }
        }
        if (!c) {
            *why = XDP_UNARMED;
            *chan = -1;
            return tail;
        }
        if (is_tail) {
            *c->x2i_tail_reg = val; /* the trapped write lands, then its side effect */
            if (x2i_tail(c, val, seq)) {
                *why = XDP_FALLBACK;
                return tail;
            }
        } else { /* MailboxChannel.on_i2x_head: the queue is empty on an armed channel */
            if (val > c->ring_size || (val & 3)) {
                *why = XDP_FALLBACK;
                return tail;
            }
            *c->i2x_head_reg = val;
        }
        c->writes++;
    }
    *chan = -1;
    return tail;
}
