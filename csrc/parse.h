/* xdna_parse_*: pure validators of everything the firmware or a client hands the shim
 * (docs/spec/firmware.md §5, §6, §8; docs/spec/jobs.md §4).
 *
 * No ctx, no I/O, no allocation: inputs are byte buffers and numbers, outputs are small result
 * structs and reason codes. The shim (mailbox.c, hw.c, hwctx.c) calls these, and the
 * libFuzzer harnesses in fuzz/native/ call the very same functions, so what is fuzzed is what
 * runs. This header depends on nothing but <stdint.h>/<stddef.h> and the generated firmware
 * interface header (docs/spec/firmware.md §10) and the public header's ERT numbers, so a harness
 * builds from csrc/parse.c alone.
 */
#ifndef XDNA_PARSE_H
#define XDNA_PARSE_H

#include <stddef.h>
#include <stdint.h>

#include "generated/xdna_fw_aie2.h"
#include "xdna_shim.h"

#define XDNA_PARSE_MAX_BARS 6
#define XDNA_PARSE_MAX_APERTURES 8
#define XDNA_PARSE_CHAIN_MAX 64u /* sub-commands of one CMD_CHAIN */

/* Why something was rejected. 0 is success everywhere. */
enum xdna_parse_reason {
    XDNA_PARSE_OK = 0,
    /* rings */
    XDNA_PARSE_BAD_RING,        /* ring size not a power of two >= 64 (caller bug, never firmware) */
    XDNA_PARSE_BAD_TAIL,        /* tail register past the ring or unaligned */
    XDNA_PARSE_BAD_HEAD,        /* head past the ring or unaligned */
    XDNA_PARSE_BAD_TOMBSTONE,   /* TOMBSTONE while the tail is ahead of the head */
    XDNA_PARSE_BAD_SIZE,        /* total_size zero, unaligned or not fitting the ring */
    XDNA_PARSE_PAST_TAIL,       /* message runs past the tail */
    XDNA_PARSE_BAD_LEN,         /* send length zero, unaligned or larger than the ring allows */
    XDNA_PARSE_NOSPC,           /* x2i ring full */
    /* ids */
    XDNA_PARSE_BAD_MAGIC,       /* id top byte is not MSG_ID_MAGIC's */
    XDNA_PARSE_BAD_SLOT,        /* id low part is no slot */
    XDNA_PARSE_NONCONTIG,       /* user channel: id is not last + 1 */
    /* channel layouts */
    XDNA_PARSE_SHORT,           /* buffer shorter than the structure */
    XDNA_PARSE_BAD_INFO_MAGIC,  /* mgmt info magic != MGMT_INFO_MAGIC */
    XDNA_PARSE_BAD_PROTO_MAJOR,
    XDNA_PARSE_OLD_PROTO_MINOR,
    XDNA_PARSE_BAD_MSIX,        /* vector >= vectors */
    XDNA_PARSE_UNALIGNED,       /* a register or ring address is not 4-aligned */
    XDNA_PARSE_NO_BAR,          /* address in no aperture (or its BAR is not mapped / too small) */
    XDNA_PARSE_WRONG_BAR,       /* register outside the mailbox BAR, ring outside SRAM */
    XDNA_PARSE_RING_SIZE,       /* ring size not a power of two >= 64 */
    XDNA_PARSE_STATUS_BUSY,     /* CREATE_CONTEXT status: nothing available (EBUSY) */
    XDNA_PARSE_STATUS_INVAL,    /* CREATE_CONTEXT status: invalid parameter (EINVAL) */
    XDNA_PARSE_STATUS_FAIL,     /* CREATE_CONTEXT status: anything else non-zero (EIO) */
    XDNA_PARSE_NO_CQ,           /* CREATE_CONTEXT: no cq pair allocated */
    /* commands */
    XDNA_PARSE_CMD_COUNT,       /* header count vs BO size / CU masks */
    XDNA_PARSE_CMD_OPCODE,      /* not START_NPU / CMD_CHAIN */
    XDNA_PARSE_CMD_SHORT,       /* payload too short for its opcode (START_NPU props) */
    XDNA_PARSE_CHAIN_COUNT,     /* chain of 0 or > 64 commands, or payload too short for it */
    XDNA_PARSE_CHAIN_ENTRY,     /* chain entry handle 0, too large or the chain itself */
    XDNA_PARSE_REASON_MAX
};

const char *xdna_parse_reason_str(int reason);

/* ---- (a) i2x receive step ----------------------------------------------------------------- */

enum xdna_parse_rx_kind {
    XDNA_PARSE_RX_EMPTY = 0,  /* nothing to read */
    XDNA_PARSE_RX_READ,       /* intermediate (two-phase API): read the word at .off next */
    XDNA_PARSE_RX_WRAP,       /* TOMBSTONE at .off: head becomes 0 */
    XDNA_PARSE_RX_MSG,        /* message: header at .off, .total payload bytes, next head .next */
    XDNA_PARSE_RX_BAD,        /* malformed ring: channel goes bad (.reason) */
};

struct xdna_parse_rx {
    int kind, reason;
    uint32_t off;    /* header offset (the effective head, after a wrap from size to 0) */
    uint32_t total;  /* payload bytes (MSG) */
    uint32_t next;   /* head after this step (MSG: off + 16 + total, may equal size; WRAP: 0) */
    uint32_t id, opcode; /* MSG, filled by xdna_parse_i2x_step only */
};

/* Phase 1: from the cached head and the tail register alone. kind EMPTY, BAD or READ. */
void xdna_parse_i2x_head(uint32_t size, uint32_t head, uint32_t tail, struct xdna_parse_rx *rx);
/* Phase 2: given the word at rx->off (after READ): WRAP, MSG or BAD. */
void xdna_parse_i2x_first(uint32_t size, uint32_t tail, uint32_t first, struct xdna_parse_rx *rx);
/* Both phases on a ring held in memory (ring has `size` bytes); MSG also gets id/opcode. */
void xdna_parse_i2x_step(const uint8_t *ring, uint32_t size, uint32_t head, uint32_t tail,
                         struct xdna_parse_rx *rx);

/* ---- (b) x2i send space ------------------------------------------------------------------- */

enum xdna_parse_tx_kind {
    XDNA_PARSE_TX_WRITE = 0,  /* write len bytes at .pos */
    XDNA_PARSE_TX_WRAP,       /* TOMBSTONE at .tomb (if .tomb_ok), then write at .pos = 0 */
    XDNA_PARSE_TX_NOSPC,      /* ring full (ENOSPC) */
    XDNA_PARSE_TX_BAD,        /* head register / cached tail / len invalid (.reason) */
};

struct xdna_parse_tx {
    int kind, reason;
    uint32_t pos;       /* where the message goes */
    uint32_t tomb;      /* WRAP: the old tail */
    int tomb_ok;        /* WRAP: the TOMBSTONE word fits at .tomb */
    uint32_t new_tail;  /* pos + len */
};

void xdna_parse_x2i_space(uint32_t head, uint32_t tail, uint32_t size, uint32_t len,
                          struct xdna_parse_tx *tx);

/* ---- (c) response ids --------------------------------------------------------------------- */

/* The slot a response id names (>= 0), or -reason (BAD_MAGIC, BAD_SLOT). */
int xdna_parse_resp_slot(uint32_t id, uint32_t nslots);
/* User-channel contiguity: 0 when id follows last_id (or its low part is 0), else NONCONTIG. */
int xdna_parse_resp_contig(uint32_t id, uint32_t last_id);

/* ---- (d) channel layouts (mgmt_mbox_chann_info, CREATE_CONTEXT cq_pair) -------------------- */

struct xdna_parse_aperture {
    int bar;
    uint64_t base; /* device address of BAR offset 0 */
    uint64_t size;
};

/* What a layout is checked against: the chip's apertures and what is really mapped. */
struct xdna_parse_layout {
    struct xdna_parse_aperture ap[XDNA_PARSE_MAX_APERTURES];
    unsigned nap;
    uint64_t bar_size[XDNA_PARSE_MAX_BARS]; /* mapped bytes per BAR, 0 = not mapped */
    int mbox_bar;                        /* -1: the chip has no mailbox block */
    int sram_bar;
    unsigned nvec;                       /* MSI-X vectors enabled */
};

struct xdna_parse_loc {
    unsigned bar;
    uint32_t off;
};

/* The addresses of one channel, in the mgmt info's order. */
struct xdna_parse_chan_addrs {
    uint32_t x2i_tail, x2i_head, x2i_buf, x2i_buf_sz;
    uint32_t i2x_tail, i2x_head, i2x_buf, i2x_buf_sz;
    uint32_t msi_id;
};

enum xdna_parse_chan_field {
    XDNA_PARSE_F_X2I_TAIL = 0, XDNA_PARSE_F_X2I_HEAD, XDNA_PARSE_F_I2X_TAIL, XDNA_PARSE_F_I2X_HEAD,
    XDNA_PARSE_F_INTR, XDNA_PARSE_F_X2I_RING, XDNA_PARSE_F_I2X_RING, XDNA_PARSE_F_MSIX,
    XDNA_PARSE_F_MAX
};
const char *xdna_parse_field_str(int field);

struct xdna_parse_chan {
    int reason;
    int field;     /* enum xdna_parse_chan_field that failed */
    uint32_t value;/* its address / size / vector */
    struct xdna_parse_loc reg[5];  /* x2i tail, x2i head, i2x tail, i2x head, interrupt */
    struct xdna_parse_loc ring[2]; /* x2i, i2x */
    uint32_t ring_size[2];
    uint32_t msix;
};

/* device address -> (bar, off) exactly like xdna_dev_to_bar + the mapped-size check. */
int xdna_parse_dev_loc(const struct xdna_parse_layout *lay, uint64_t addr, uint32_t size,
                       struct xdna_parse_loc *loc);
/* A channel's registers (mailbox BAR, 4-aligned, interrupt = i2x head + 4) and rings (SRAM,
 * power of two >= 64, 4-aligned), and its vector < nvec. Returns ch->reason. */
int xdna_parse_chan_check(const struct xdna_parse_layout *lay,
                          const struct xdna_parse_chan_addrs *a, struct xdna_parse_chan *ch);

struct xdna_parse_mgmt_info {
    struct xdna_parse_chan_addrs a;
    uint32_t magic, prot_major, prot_minor;
};
/* Decode 64 bytes and check magic and protocol (what fw_alive checks). */
int xdna_parse_mgmt_hdr(const uint8_t *buf, size_t len, uint32_t major, uint32_t min_minor,
                        struct xdna_parse_mgmt_info *out);
/* Header checks then the channel layout: the whole of what probe accepts. */
int xdna_parse_mgmt_info(const uint8_t *buf, size_t len, uint32_t major, uint32_t min_minor,
                         const struct xdna_parse_layout *lay, struct xdna_parse_mgmt_info *out,
                         struct xdna_parse_chan *ch);

/* ---- (e) CREATE_CONTEXT response ---------------------------------------------------------- */

struct xdna_parse_create_resp {
    uint32_t status, ctx_id;
    uint16_t msix;
    uint8_t ncq;
    struct xdna_parse_chan_addrs a; /* cq_pair[0] */
    int fw_live;                 /* status was 0: the firmware now knows the context */
};
/* status (BUSY/INVAL/FAIL), cq pairs, msix < nvec. Channel layout not checked. */
int xdna_parse_create_resp(const uint8_t *buf, size_t len, unsigned nvec,
                           struct xdna_parse_create_resp *out);
/* ... plus the cq_pair layout against the apertures. */
int xdna_parse_create_resp_full(const uint8_t *buf, size_t len, const struct xdna_parse_layout *lay,
                                struct xdna_parse_create_resp *out, struct xdna_parse_chan *ch);

/* ---- (f) ERT command BOs ------------------------------------------------------------------ */

struct xdna_parse_cmd {
    uint32_t opcode, cu_idx;
    uint32_t pay;   /* word index of the payload in the BO */
    uint32_t npay;  /* payload words */
};
/* Header word, CU masks and count against the BO size (bytes in bo, at least 4 readable). */
int xdna_parse_cmd_hdr(const uint8_t *bo, uint64_t bo_size, struct xdna_parse_cmd *out);

struct xdna_parse_npu {
    uint32_t opcode;
    uint64_t inst, save, restore;
    uint32_t inst_size, save_size, restore_size, props, cu_idx;
    uint32_t pargs;  /* word index of the first property (props words, then the arguments) */
    uint32_t args;   /* word index of the first argument */
    uint32_t nargs;
};
/* One runnable command (docs/spec/jobs.md §4):
 *   START_NPU {inst lo, hi, size, props, props..., args...};
 *   START_DPU {inst lo, hi, size, chained (must be 0), args...};
 *   START_NPU_PREEMPT(_ELF) {inst, save, restore (u64 each), inst/save/restore size, props,
 *   props..., args...}; START_CU: the whole payload is arguments.
 * cu_idx is the lowest bit set in the first non-zero CU mask word (its bit index within that
 * word, as the driver reads it), XDNA_SHIM_ERT_INVALID_CU if every mask word is zero. */
int xdna_parse_npu(const uint8_t *bo, uint64_t bo_size, struct xdna_parse_npu *out);
/* xdna_parse_npu of a command that must have the given opcode (XDNA_PARSE_CMD_OPCODE if not;
 * AIE4 runs only START_DPU, docs/spec/aie4.md §8). */
int xdna_parse_exec(const uint8_t *bo, uint64_t bo_size, uint32_t opcode, struct xdna_parse_npu *out);

struct xdna_parse_chain {
    uint32_t n;     /* OK: entries; CHAIN_COUNT: the count read; CHAIN_ENTRY: index of the bad one + 1 */
    uint64_t handle[XDNA_PARSE_CHAIN_MAX];
};
/* A CMD_CHAIN command: {count, submit, error_index, rsvd x3, handles (u64) x count};
 * each handle must be 1..max_handle and not self. */
int xdna_parse_chain(const uint8_t *bo, uint64_t bo_size, uint32_t self, uint32_t max_handle,
                     struct xdna_parse_chain *out);

#endif
