/* The daemon's C job path for AIE2 user channels (docs/spec/jobs.md §7).
 *
 * Called synchronously from the daemon's write-log drain: it applies logged writes in order
 * while each is a ring-register write of a user channel Python armed, and answers that
 * channel's no-op jobs itself. At anything else it stops, leaving the entry (and every
 * message after the last one it answered) to the Python model. Python state stays
 * authoritative: each call gets the channels' cursors and tables from Python and returns
 * counts that Python adds to its own counters.
 *
 * The declarations between the CDEF markers are cffi's declaration list. */
#ifndef XDNA_DATAPATH_H
#define XDNA_DATAPATH_H

#include <stdint.h>

/* CDEF-BEGIN */
/* why xdp_drain stopped */
enum {
    XDP_DONE = 0,      /* every entry applied */
    XDP_UNARMED = 1,   /* an entry for no armed channel: Python applies it (or arms one) */
    XDP_FALLBACK = 2,  /* a message the C path does not answer: Python applies the entry */
};

/* One IOMMU mapping of the context's PASID (sorted by addr, not overlapping). */
struct xdp_map {
    uint64_t addr;
    uint64_t size;
    uint8_t *mem; /* host bytes of addr */
    uint32_t perm;
    uint32_t rsvd;
};

/* One host-buffer chunk of the context's heap: device range -> VA in its PASID. */
struct xdp_chunk {
    uint64_t dev;
    uint64_t va;
    uint64_t size;
};

/* One mgmt query's published reply (docs/spec/jobs.md §7 "Management queries"). */
struct xdp_reply {
    uint32_t opcode;
    uint32_t req_size;           /* the request's length; any other goes to Python */
    uint32_t resp_size;
    uint32_t rsvd;
    const uint8_t *resp;         /* the reply payload MgmtFirmware.dispatch gives it */
};

/* One armed channel: a user channel and its context, or the mgmt channel (nreplies). */
struct xdp_chan {
    uint32_t armed;              /* 0: entries for this channel stop the drain */
    /* in: set by Python when it arms the channel */
    uint32_t tail_bar, tail_off; /* trapped (bar, offset) of the x2i tail register */
    uint32_t head_bar, head_off; /* ... and of the i2x head register */
    uint32_t *x2i_tail_reg, *x2i_head_reg, *i2x_tail_reg, *i2x_head_reg;
    uint32_t *intr_reg;          /* NULL: none */
    uint8_t *x2i, *i2x;
    uint32_t ring_size;
    uint32_t ops;                /* bits (XDNA_FAST_OPS) of the ops the image offers */
    uint32_t ncus;               /* CUs of the context's CONFIG_CU table */
    uint32_t nchunks, nmaps;
    const struct xdp_chunk *chunks;
    const struct xdp_map *maps;
    /* in and out: the firmware's cursors */
    uint32_t x2i_head, i2x_tail;
    /* out: what happened since armed (Python adds and clears) */
    uint32_t writes, msgs_in, msgs_out, irqs;
    uint32_t jobs, cmds, chains;
    uint32_t last_op, cur_idx, cur_kernel, last_slot;
    uint32_t slot_set;           /* last_slot was set (a chain ran) */
    uint32_t first;              /* *seq at its first reply (0: none): Python raises the
                                    vectors of a batch in this order, the order the Python
                                    path first raises them (docs/spec/device.md §3) */
    /* the doorbell thread's (thread.c): in, set by Python when it arms for the thread */
    int32_t irq_fd;              /* the vector's eventfd; -1: not deliverable (MSI-X off,
                                    function masked or no eventfd), the raise sets its PBA bit */
    int32_t owner;               /* session slot of the vector's owner, -1: none */
    uint8_t *pba;                /* the PBA byte of the vector (docs/spec/device.md §3) */
    uint32_t pba_bit;
    const uint8_t *vec_ctrl;     /* the low byte of the vector's table control word, read
                                    at each raise as Python's raise reads it: a client stores
                                    a table write before its write-log entry is applied */
    uint32_t mask_bit;
    /* out: the thread's interrupts since armed (Python adds and clears) */
    uint32_t t_irqs;             /* replies that raised the vector (counted as Python does) */
    uint32_t t_delivered, t_dropped, t_pended; /* per batch: eventfd writes made and failed,
                                                  PBA bits set */
    /* the mgmt channel's: in, set by Python when it arms it; nonzero nreplies makes this
     * channel answer only these queries (no jobs), msgs_in/msgs_out counting them */
    uint32_t nreplies;
    const struct xdp_reply *replies;
};

/* The doorbell thread's counters (Python adds and clears them under the lock). */
struct xdp_tstats {
    uint64_t batches;            /* doorbell wake-ups served */
    uint64_t handbacks;          /* logs handed to Python at an entry the thread cannot take */
    uint64_t notifies;           /* notify eventfd writes */
};

struct xdp_dev; /* the device lock, the thread, its sessions (thread.c) */

/* Apply log entries [tail, head) of a ring of nentries 16-byte entries; returns the index
 * of the first entry not applied and sets *why (XDP_*), *chan (the armed channel the stop
 * belongs to, or -1) and, at a stop, got[] to the (bar, offset, value) of that entry as C
 * read it: the caller applies exactly that copy, never a second read of the shared log
 * (a client may rewrite it meanwhile). *seq numbers the channels' first replies across
 * the calls of one batch (xdp_chan.first). */
uint64_t xdp_drain(struct xdp_chan *chans, uint32_t nchans, const uint8_t *entries,
                   uint32_t nentries, uint64_t tail, uint64_t head, uint32_t *why,
                   int32_t *chan, uint32_t got[3], uint32_t *seq);

/* The doorbell thread (docs/spec/jobs.md §7 "The doorbell thread"). Everything below but
 * xdp_dev_new/xdp_dev_free and xdp_lock is called with the device lock held. */
struct xdp_dev *xdp_dev_new(struct xdp_chan *chans, uint32_t nchans, struct xdp_tstats *stats);
/* 0, or -errno. spin_ns 0: no spin; else while a session polls (its ctrl page's polling
 * word nonzero now or within recent_ns) the thread watches the logs for spin_ns after the
 * last one that moved, and defers a polling session's notify up to defer_ns. */
int xdp_dev_start(struct xdp_dev *d, uint64_t spin_ns, uint64_t recent_ns, uint64_t defer_ns);
void xdp_dev_free(struct xdp_dev *d);        /* stops and joins the thread (lock not held) */
void xdp_lock(struct xdp_dev *d);
void xdp_unlock(struct xdp_dev *d);
/* A session's log: its ctrl page and eventfds (borrowed: the caller closes them only after
 * xdp_sess_remove). Returns its slot, or -errno. */
int xdp_sess_add(struct xdp_dev *d, uint8_t *ctrl, int bell_fd, int kick_fd, int notify_fd);
void xdp_sess_remove(struct xdp_dev *d, int slot);
/* CDEF-END */

#endif
