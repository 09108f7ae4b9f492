/* Internal definitions shared by the shim's C files (not part of the public API). */
#ifndef XDNA_SHIM_INT_H
#define XDNA_SHIM_INT_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "xdna_chips.h"
#include "xdna_proto.h"
#include "xdna_shim.h"

#define XDNA_NUM_BARS 6
#define XDNA_MAX_VECTORS 2048 /* MSI-X table size field is 11 bits */

/* Mailbox protocol facts (amdxdna-facts.md §4). */
#define MBOX_HDR_SIZE 16
#define MBOX_TOMBSTONE 0xDEADFACEu
#define MBOX_ID_MAGIC 0x1D000000u
#define MBOX_ID_MAGIC_MASK 0xFF000000u
#define MBOX_PROTO_VER 1u
#define MBOX_SIZE_MASK 0x7FFu
#define MBOX_MAX_IDS 256
#define MBOX_RESP_MAX 128 /* largest response struct we accept into a pending slot */

/* mgmt_mbox_chann_info (64 bytes, facts §6 step 4) */
#define MGMT_INFO_SIZE 64
#define MGMT_INFO_MAGIC 0x55504E5Fu

/* firmware / DMA buffer alignment (facts §2, §5) */
#define PSP_FW_ALIGN 0x10000u
#define ASYNC_BUF_SIZE 0x2000u
#define XDNA_IOVA_BASE 0x100000000ull
#define XDNA_FW_MAX_SIZE (64u << 20)

struct xdna_loc {
    unsigned bar;
    uint32_t off;
};

struct xdna_dma_buf {
    int fd;
    void *va;
    size_t size;   /* bytes mapped (rounded) */
    uint64_t iova;
    uint32_t flags; /* XDNA_PROTO_DMA_* */
    bool mapped;    /* registered with the daemon */
};

struct xdna_mbox_pending {
    bool in_use, done, async;
    uint32_t opcode;
    void *resp;       /* caller's buffer (sync) or async_resp */
    size_t resp_len;
    int err;          /* 0 or errno for this message */
    uint8_t async_resp[16];
};

struct xdna_mbox_chan {
    bool active, bad;
    const char *name;
    unsigned msix;                /* vector whose eventfd signals this channel */
    struct xdna_loc x2i_buf, i2x_buf;
    uint32_t x2i_size, i2x_size;
    struct xdna_loc x2i_tail_reg, x2i_head_reg, i2x_tail_reg, i2x_head_reg, intr_reg;
    uint32_t x2i_tail;            /* cached producer tail */
    uint32_t i2x_head;            /* cached consumer head */
    unsigned next_id;             /* cyclic id allocator */
    unsigned npending;
    struct xdna_mbox_pending pend[MBOX_MAX_IDS];
};

struct xdna_bar_map {
    volatile uint8_t *va;
    uint64_t size;
    uint32_t flags;
};

struct xdna_shim_ctx {
    int sock;
    bool sock_dead;
    uint16_t next_msg_id;
    int timeouts[5]; /* enum xdna_shim_timeout, ms */
    char last_error[256];
    const struct xdna_chip_desc *chip;
    uint8_t config[XDNA_PROTO_CONFIG_SIZE];
    uint32_t max_msg_fds;
    struct xdna_bar_map bars[XDNA_NUM_BARS];

    /* write log */
    volatile uint8_t *ctrl;
    int kick_fd, notify_fd;
    uint32_t log_entries;

    /* MSI-X */
    unsigned msix_cap;
    unsigned nvec;
    int *irq_fds;
    struct xdna_loc msix_table;

    /* DMA */
    uint64_t iova_next;
    struct xdna_dma_buf fw;       /* firmware image, kept for resume */
    struct xdna_dma_buf async_buf;

    /* bring-up progress (for unwinding in driver order) */
    bool smu_on, psp_on, pm_on;
    int state;

    struct xdna_mbox_chan mgmt;
    struct xdna_shim_info info;
};

/* ---- errors (core.c) ---- */
int xdna_fail(struct xdna_shim_ctx *ctx, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void xdna_set_tls_error(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- time, waits (core.c) ---- */
uint64_t xdna_now_ns(void);
uint64_t xdna_deadline(int ms);
/* One wait step: block until the notify eventfd, extra_fd (if >= 0) or the socket is ready,
 * or the deadline passes. 0 on a wakeup (*extra_ready says whether extra_fd fired, its
 * counter is drained), -1 with ETIME at the deadline, EPIPE when the daemon is gone. */
int xdna_wait_step(struct xdna_shim_ctx *ctx, int extra_fd, uint64_t deadline, bool *extra_ready);
/* Poll a register until (value & mask) != 0 (or == 0 when want_zero). */
int xdna_poll_reg(struct xdna_shim_ctx *ctx, struct xdna_loc loc, uint32_t mask, int timeout_ms,
                  uint32_t *val, const char *what);

/* ---- register access (core.c) ---- */
uint32_t xdna_rd(struct xdna_shim_ctx *ctx, struct xdna_loc loc);
void xdna_wr(struct xdna_shim_ctx *ctx, struct xdna_loc loc, uint32_t val);
int xdna_wr_trap(struct xdna_shim_ctx *ctx, struct xdna_loc loc, uint32_t val);
/* Write through the log when (bar, off) is a trapped register, else plainly. */
int xdna_wr_auto(struct xdna_shim_ctx *ctx, struct xdna_loc loc, uint32_t val);
bool xdna_loc_ok(struct xdna_shim_ctx *ctx, struct xdna_loc loc, uint32_t len);
struct xdna_loc xdna_role(struct xdna_shim_ctx *ctx, enum xdna_role role);
/* device address -> location inside a mapped BAR; -1/EINVAL with a message otherwise */
int xdna_dev_loc(struct xdna_shim_ctx *ctx, uint64_t addr, uint32_t size, struct xdna_loc *loc,
                 const char *what);

/* ---- control socket (proto.c) ---- */
int xdna_connect(struct xdna_shim_ctx *ctx, const char *path);
/* Send one command and receive its reply. resp_len in: capacity, out: payload bytes got
 * (must be >= resp_min). fds received go to rfds (capacity *nrfds, out: count). */
int xdna_ctl(struct xdna_shim_ctx *ctx, uint16_t cmd, const void *req, size_t req_len,
             const int *fds, unsigned nfds, void *resp, size_t *resp_len, size_t resp_min,
             int *rfds, unsigned *nrfds);
int xdna_region_read(struct xdna_shim_ctx *ctx, uint32_t region, uint64_t off, void *buf,
                     uint32_t count);
int xdna_region_write(struct xdna_shim_ctx *ctx, uint32_t region, uint64_t off,
                      const void *buf, uint32_t count);
int xdna_dma_alloc(struct xdna_shim_ctx *ctx, struct xdna_dma_buf *buf, size_t size,
                   uint32_t flags, const char *name);
int xdna_dma_map(struct xdna_shim_ctx *ctx, struct xdna_dma_buf *buf);
int xdna_dma_unmap(struct xdna_shim_ctx *ctx, struct xdna_dma_buf *buf);
void xdna_dma_free(struct xdna_dma_buf *buf);

/* ---- mailbox (mailbox.c) ---- */
struct xdna_mbox_chann_info {
    uint32_t x2i_tail, x2i_head, x2i_buf, x2i_buf_sz;
    uint32_t i2x_tail, i2x_head, i2x_buf, i2x_buf_sz;
    uint32_t magic, msi_id, prot_major, prot_minor;
    uint32_t rsvd[4];
};
_Static_assert(sizeof(struct xdna_mbox_chann_info) == MGMT_INFO_SIZE, "mgmt info");

int xdna_mbox_create(struct xdna_shim_ctx *ctx, struct xdna_mbox_chan *ch, const char *name,
                     const struct xdna_mbox_chann_info *ci);
void xdna_mbox_destroy(struct xdna_shim_ctx *ctx, struct xdna_mbox_chan *ch);
/* Send and wait for the response (exact size). */
int xdna_mbox_call(struct xdna_shim_ctx *ctx, struct xdna_mbox_chan *ch, uint32_t opcode,
                   const void *req, size_t req_len, void *resp, size_t resp_len, int timeout_ms);
/* Send and leave pending (REGISTER_ASYNC_EVENT_MSG). */
int xdna_mbox_post_async(struct xdna_shim_ctx *ctx, struct xdna_mbox_chan *ch, uint32_t opcode,
                         const void *req, size_t req_len, size_t resp_len);
const char *xdna_opcode_name(uint32_t opcode);

#endif
