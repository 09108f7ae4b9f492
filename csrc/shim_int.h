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

#define XDNA_MAX_DPM 16 /* DPM levels a chip may have (chips have 8) */

#include "generated/xdna_fw_aie2.h"
#include "generated/xdna_fw_aie4.h"
#include "xdna_chips.h"
#include "generated/xdna_proto.h"
#include "xdna_shim.h"
#include "parse.h"

#define XDNA_NUM_BARS 6
#define XDNA_ERR_MAX 256 /* one error message */
#define XDNA_MAX_VECTORS 2048 /* MSI-X table size field is 11 bits */
/* Threads that may wait on their own channel's vector at once (event.c, direct waits);
 * more waiters sleep on the condition variable the monitor broadcasts. */
#define XDNA_DIRECT_MAX 16

/* Mailbox limits; the protocol's numbers and layouts are in generated/xdna_fw_aie2.h
 * (docs/spec/messages.md). */
#define MBOX_MAX_IDS 256
#define MBOX_RESP_MAX 128 /* largest response struct we accept into a pending slot */

/* IOVA layout and the firmware image limit */
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
    bool any_size;    /* accept any response of >= 4 bytes (CONFIG_CU's no-wait reply) */
    /* completion callback of a posted message (called under the ctx lock, also with err
     * != 0 when the channel goes away); resp holds resp_len bytes when err == 0 */
    void (*cb)(struct xdna_shim_ctx *ctx, void *arg, int err, const uint8_t *resp, size_t len);
    void *cb_arg;
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
    bool user;                    /* a context's channel: responses must come in id order */
    bool no_ack;                  /* AIE4: no interrupt register, the RX worker only drains */
    bool hold_kicks;              /* sends log their tail unkicked: a batch, the caller kicks */
    uint32_t last_id;             /* id of the last response taken (user-channel contiguity) */
    unsigned npending;
    struct xdna_mbox_pending pend[MBOX_MAX_IDS];
};

struct xdna_bar_map {
    volatile uint8_t *va;
    uint64_t size;
    uint32_t flags;
};

#include <pthread.h>

/* ---- locking (lockdep.c): with -DXDNA_LOCKDEP, the debug build's lock checker ---- */
#ifdef XDNA_LOCKDEP
void xdna_lock(pthread_mutex_t *m);
void xdna_unlock(pthread_mutex_t *m);
void xdna_cond_wait_raw(pthread_cond_t *c, pthread_mutex_t *m);
int xdna_cond_timedwait_raw(pthread_cond_t *c, pthread_mutex_t *m, const struct timespec *ts);
void xdna_lockdep_blocking(void); /* about to sleep in a poll: no lock may be held */
void xdna_lockdep_forget(const pthread_mutex_t *m); /* destroyed: its edges go */
#else
static inline void xdna_lock(pthread_mutex_t *m) { pthread_mutex_lock(m); }
static inline void xdna_unlock(pthread_mutex_t *m) { pthread_mutex_unlock(m); }
static inline void xdna_cond_wait_raw(pthread_cond_t *c, pthread_mutex_t *m)
{
    pthread_cond_wait(c, m);
}
static inline int xdna_cond_timedwait_raw(pthread_cond_t *c, pthread_mutex_t *m,
                                          const struct timespec *ts)
{
    return pthread_cond_timedwait(c, m, ts);
}
static inline void xdna_lockdep_blocking(void) {}
static inline void xdna_lockdep_forget(const pthread_mutex_t *m) { (void)m; }
#endif

/* ---- driver state, buffers, hardware contexts (api.c, bo.c, hwctx.c; docs/spec/jobs.md) ---- */
#define XDNA_MAX_BOS 4096
#define XDNA_MAX_HWCTX 64
/* Context ids are allocated cyclically over 1..255 as the driver does, so a destroyed
 * context's id is not handed out again at once. */
#define XDNA_HWCTX_ID_MAX 255u
#define XDNA_CTX_MAX_CMDS 4          /* CTX_MAX_CMDS: outstanding commands per AIE2 context */
#define XDNA_RQ_IDLE_TICKS 3         /* idle TDR ticks before the runqueue disconnects a context */
/* The job ring: AIE4 keeps as many jobs in flight as its HSA queue has packets
 * (docs/spec/aie4.md §8); AIE2 uses the first XDNA_CTX_MAX_CMDS of the same ring. */
#define XDNA_CTX_JOBS_MAX XDNA_AIE4_HSA_QUEUE_SLOTS
#define XDNA_MONITOR_POLL_NS 1000000u /* monitor re-check of a due duty that could not run (1 ms) */
#define XDNA_POLL_SPIN_NS 100000u /* a TURBO wait spins this long on its ring before it blocks */
#define XDNA_POLL_SLICE_NS 200000u /* a TURBO wait's sleeps between looks at its ring */
#define XDNA_CMDLIST_SIZE 4096u      /* one cmd-list buffer */
#define XDNA_HEAP_CHUNK (64ull << 20)
#define XDNA_HEAP_MAX_CHUNKS 64      /* DEV_HEAP BOs one session may add (docs/spec/uapi.md §6) */
#define XDNA_DEV_BO_ALIGN (32u << 10)
#define XDNA_HEALTH_MAX 1024u
#define XDNA_CHAIN_MAX XDNA_PARSE_CHAIN_MAX
#define XDNA_MAX_PINS 256u

struct xdna_bo;
struct xdna_hwctx;

/* What the driver keeps beside the device's transport state (the part the kernel holds in
 * its device and client structs): the lock, the monitor, interrupt ownership, BOs,
 * contexts, TDR and power settings, async errors. Lives inside struct xdna_shim_ctx as
 * ctx->s; set up by xdna_drv_state_init. */
struct xdna_drv_state {
    pthread_mutex_t lock;     /* protects the whole ctx; released only while blocking */
    pthread_cond_t cond;      /* broadcast after every event the monitor processed */
    bool inited;
    pthread_t mon;
    bool mon_running, mon_stop;
    int wake_fd;              /* eventfd: wakes the monitor's poll */
    uint64_t events;          /* bumped by the monitor after each wakeup */
    bool client;              /* attached with xdna_shim_attach (no mgmt ring) */
    bool caps_probed;         /* VERSION caps "probed" */
    uint8_t *vec_owned;       /* per MSI-X vector: installed with SET_IRQS by this session */
    struct xdna_bo **bos;     /* index = handle - 1 */
    unsigned nbos;
    uint32_t heap;            /* handle of the first DEV_HEAP chunk, 0 when none */
    uint32_t heap_chunk[XDNA_HEAP_MAX_CHUNKS]; /* the DEV_HEAP chunks in device-address order */
    unsigned nheap;
    uint64_t heap_total;      /* bytes of all chunks: the DEV range 0x4000000 + [0, total) */
    uint8_t *heap_base;       /* the heap memfd (the chip's maximum) mapped here, NULL: none */
    int heap_fd;
    uint64_t heap_dma;        /* where the device sees it: heap_base (SVA) or a fixed IOVA */
    struct xdna_hwctx *hw[XDNA_MAX_HWCTX]; /* any order; hw->handle names it */
    uint32_t next_hwctx_id;   /* where the cyclic handle allocation resumes */
    uint32_t next_syncobj;    /* the last hardware-queue handle handed out */
    uint32_t rq_asks_seen;    /* the other sessions' runqueue asks last looked at */
    bool rq_owed;             /* they asked: disconnect one idle context when there is one */
    uint32_t foreign_dpm;     /* client sessions' highest DPM level + 1, as last applied */
    int tdr_ms, autosuspend_ms;
    uint64_t next_tdr_ns, last_active_ns;
    bool rpm_suspended;       /* runtime-suspended by the monitor */
    bool bound;               /* driver: a probe succeeded and no stop since; a failed resume or
                               * reset leaves it bound (probe EALREADY, docs/spec/jobs.md §6) */
    bool dev_busy;            /* a device-wide sequence (probe, PM, power) is running */
    int power_mode;
    bool clock_gating;
    uint32_t dpm_cnt[XDNA_MAX_DPM]; /* contexts asking for each DPM level */
    uint32_t dft_dpm_level;   /* the level DEFAULT mode runs at: highest asked, else 0 */
    uint64_t suspend_count, resume_count;
    uint32_t stops;           /* driver: times it stopped the device (published as DRV_STOPS) */
    uint32_t pm_asks_seen;    /* driver: the client sessions' runtime-PM asks last handled */
    uint32_t client_ops_seen; /* driver: the client sessions' proxied messages last seen */
    struct xdna_shim_async_error async;
    uint8_t async_repost[128];
    struct xdna_dma_buf health_buf; /* GET_APP_HEALTH target (IOVA, or SVA for clients) */
    bool no_monitor;          /* deterministic mode: the monitor's work runs inline */
    bool mon_virtual;         /* ...and it would be running now */
    bool in_housekeeping;     /* inline TDR/autosuspend work in progress (no re-entry) */
    /* Direct waits (event.c): the vectors a waiting thread polls itself, which the monitor
     * leaves alone, and the vectors the monitor's current poll left out for that reason. */
    struct { unsigned vec; pthread_t tid; } direct[XDNA_DIRECT_MAX];
    unsigned ndirect;
    unsigned mon_skip[XDNA_DIRECT_MAX];
    unsigned nmon_skip;
    bool log_wait;            /* a thread waits for log room with the lock held */
};

struct xdna_shim_ctx {
    int sock;
    bool sock_dead;
    uint16_t next_msg_id;
    /* commands of a pipelined batch gathered for one sendmsg (xdna_ctl_cork, proto.c) */
    bool tx_cork;
    uint32_t tx_len;
    uint8_t tx[1024];
    int timeouts[5]; /* enum xdna_shim_timeout, ms */
    char last_error[XDNA_ERR_MAX];
    const struct xdna_chip_desc *chip;
    uint8_t config[XDNA_PROTO_CONFIG_SIZE];
    uint32_t max_msg_fds;
    struct xdna_bar_map bars[XDNA_NUM_BARS];

    /* write log */
    volatile uint8_t *ctrl;
    int kick_fd, notify_fd;
    int bell_fd;          /* -1: the daemon gave none (protocol minor < 2): every write kicks */
    uint32_t log_entries;
    /* the doorbell registers the daemon published at attach (docs/spec/protocol.md
     * "Doorbells"); which of them are live is read from the ctrl page at each write */
    uint32_t bell_bar, bell_base, bell_stride, bell_count;

    /* MSI-X */
    unsigned msix_cap;
    uint32_t resets_seen; /* the ctrl page's function-reset count the driver last handled */
    uint32_t boots_seen;  /* a client: the ctrl page's firmware boots its contexts were made on */
    uint32_t stops_seen;  /* a client: the driver's stops (ctrl page DRV_STOPS) its contexts were made under */
    bool removed;         /* the function was removed (a VF disabled); its jobs ended ABORT */
    unsigned nvec;
    int *irq_fds;
    struct xdna_loc msix_table;

    /* DMA */
    uint64_t iova_next;
    bool iommu_iova;      /* user BOs by IOVA (driver iommu_mode=1) instead of SVA/PASID */
    struct xdna_dma_buf fw;       /* firmware image, kept for resume */
    struct xdna_dma_buf async_buf;
    struct xdna_dma_buf cert;      /* AIE4 cert image, kept for resume (docs/spec/aie4.md §3) */
    struct xdna_dma_buf work_buf;  /* AIE4 DRAM work buffer */

    /* bring-up progress (for unwinding in driver order) */
    bool smu_on, psp_on, pm_on;
    int state;

    /* firmware log and trace rings (dpt.c) */
    struct xdna_dpt {
        bool enabled;
        uint32_t config;
        struct xdna_dma_buf buf;
    } dpt[2];

    struct xdna_mbox_chan mgmt;
    struct xdna_shim_info info;
    struct xdna_drv_state s; /* the driver's state */
};

/* ---- errors, clock, deterministic-mode hooks, register access (core.c) ---- */
int xdna_fail(struct xdna_shim_ctx *ctx, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void xdna_set_tls_error(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A failure (errno and message) kept while cleanup runs that may fail on its own: save,
 * clean up, then return xdna_err_restore(), which puts them back and returns -1. */
struct xdna_err {
    int err;
    char msg[XDNA_ERR_MAX];
};
void xdna_err_save(struct xdna_shim_ctx *ctx, struct xdna_err *e);
int xdna_err_restore(struct xdna_shim_ctx *ctx, const struct xdna_err *e);
uint64_t xdna_now_ns(void);
uint64_t xdna_deadline(int ms);
/* Deterministic mode: the calling thread's hooks, or NULL. */
const struct xdna_shim_hooks *xdna_hooks(void);
uint32_t xdna_rd(struct xdna_shim_ctx *ctx, struct xdna_loc loc);
void xdna_wr(struct xdna_shim_ctx *ctx, struct xdna_loc loc, uint32_t val);
int xdna_wr_trap(struct xdna_shim_ctx *ctx, struct xdna_loc loc, uint32_t val);
/* Append to the write log without storing into BAR memory (mailbox x2i tail). */
int xdna_wr_log(struct xdna_shim_ctx *ctx, struct xdna_loc loc, uint32_t val);
int xdna_wr_log_loop(struct xdna_shim_ctx *ctx, struct xdna_loc loc, uint32_t val);
int xdna_wr_log_held(struct xdna_shim_ctx *ctx, struct xdna_loc loc, uint32_t val);
int xdna_log_kick(struct xdna_shim_ctx *ctx);
int xdna_wr_trap_lazy(struct xdna_shim_ctx *ctx, struct xdna_loc loc, uint32_t val);
/* The ctrl page's shared runqueue words (docs/spec/jobs.md §3a): read one, store one, and
 * kick the daemon so it publishes them to the other sessions. */
uint32_t xdna_ctrl_get(struct xdna_shim_ctx *ctx, unsigned off);
void xdna_ctrl_set(struct xdna_shim_ctx *ctx, unsigned off, uint32_t val);
void xdna_ctrl_store(struct xdna_shim_ctx *ctx, unsigned off, uint32_t val);
/* Write through the log when (bar, off) is a trapped register, else plainly. */
int xdna_wr_auto(struct xdna_shim_ctx *ctx, struct xdna_loc loc, uint32_t val);
/* The same, without a kick: for a write the next kicked one follows at once (an INTR 0
 * before its 1), so the daemon applies both on one wake-up. */
int xdna_wr_auto_lazy(struct xdna_shim_ctx *ctx, struct xdna_loc loc, uint32_t val);
bool xdna_loc_ok(struct xdna_shim_ctx *ctx, struct xdna_loc loc, uint32_t len);
struct xdna_loc xdna_role(struct xdna_shim_ctx *ctx, enum xdna_role role);
/* device address -> location inside a mapped BAR; -1/EINVAL with a message otherwise */
int xdna_dev_loc(struct xdna_shim_ctx *ctx, uint64_t addr, uint32_t size, struct xdna_loc *loc,
                 const char *what);
int xdna_readl_unlocked(struct xdna_shim_ctx *ctx, unsigned bar, uint32_t off, uint32_t *val);
int xdna_writel_unlocked(struct xdna_shim_ctx *ctx, unsigned bar, uint32_t off, uint32_t val);
int xdna_set_timeout_unlocked(struct xdna_shim_ctx *ctx, int which, int ms);
int xdna_get_info_unlocked(struct xdna_shim_ctx *ctx, struct xdna_shim_info *info);

/* ---- waits and the event pump (event.c) ---- */
/* One wait step: block until the notify eventfd, extra_fd (if >= 0) or the socket is ready,
 * or the deadline passes. 0 on a wakeup (*extra_ready says whether extra_fd fired, its
 * counter is drained), -1 with ETIME at the deadline, EPIPE when the daemon is gone. */
int xdna_wait_step(struct xdna_shim_ctx *ctx, int extra_fd, uint64_t deadline, bool *extra_ready);
/* Deterministic-mode wait step: hooks->wait, then a zero-timeout look at every
 * event source; with housekeeping, the monitor's TDR/autosuspend work runs inline. */
int xdna_hooked_step(struct xdna_shim_ctx *ctx, int extra_fd, uint64_t deadline,
                     bool *extra_ready, bool housekeeping);
/* Poll a register until (value & mask) != 0 (or == 0 when want_zero). */
int xdna_poll_reg(struct xdna_shim_ctx *ctx, struct xdna_loc loc, uint32_t mask, int timeout_ms,
                  uint32_t *val, const char *what);
/* Wait for write-log room without releasing the lock. */
int xdna_wait_log(struct xdna_shim_ctx *ctx, uint64_t deadline);
int xdna_cond_wait(struct xdna_shim_ctx *ctx, uint64_t deadline); /* 0 woken, ETIME */
/* Direct waits: a thread waiting for one channel sleeps on its vector itself, not through
 * the monitor (docs/spec/protocol.md, "Direct waits"). claim: true when this thread now
 * owns vec's wake-ups (false: use xdna_cond_wait). wait: one sleep on vec, notify and the
 * socket, lock dropped; the caller then services vec's channels. release: give vec back
 * to the monitor; its channels are serviced if an answer slipped in meanwhile. */
bool xdna_direct_claim(struct xdna_shim_ctx *ctx, unsigned vec);
int xdna_direct_wait(struct xdna_shim_ctx *ctx, unsigned vec, uint64_t deadline);
void xdna_direct_release(struct xdna_shim_ctx *ctx, unsigned vec);
/* Drain every channel that raises vec (several may share one) but `done`: the claimant
 * services them all, as the monitor leaves them alone. */
void xdna_direct_service(struct xdna_shim_ctx *ctx, unsigned vec, struct xdna_mbox_chan *done);
/* Wake every waiter after a state change: the condition variable, and each direct waiter
 * of another thread through its vector. */
void xdna_wake_all(struct xdna_shim_ctx *ctx);
/* Store irq_wakes from the state: the monitor runs, no thread waits for log room, and
 * every owned vector is polled by the monitor or a direct waiter. */
void xdna_irq_wakes_sync(struct xdna_shim_ctx *ctx);
/* The monitor's step: poll every event source (lock released), service the channels. */
int xdna_pump_monitor(struct xdna_shim_ctx *ctx, uint64_t deadline);
/* Deterministic mode, outside any wait: the receiving half of a monitor iteration, one
 * look at every source without blocking, the channels serviced. */
int xdna_pump_virtual(struct xdna_shim_ctx *ctx);
/* The daemon ended this session (socket hung up, or it cleared the ctrl page's alive word). */
bool xdna_daemon_gone(struct xdna_shim_ctx *ctx);

/* ---- the monitor thread and its periodic duties (monitor.c) ---- */
void xdna_wake_monitor(struct xdna_shim_ctx *ctx);
/* Tell the daemon whether our vectors wake us as notify does (ctrl page irq_wakes). */
void xdna_set_irq_wakes(struct xdna_shim_ctx *ctx, bool on);
int xdna_monitor_start(struct xdna_shim_ctx *ctx);
void xdna_monitor_stop(struct xdna_shim_ctx *ctx);
/* When the periodic duties are next due (never in the past). */
uint64_t xdna_monitor_due(struct xdna_shim_ctx *ctx, uint64_t now);
/* Deterministic mode: one monitor iteration's duties, inline. */
void xdna_monitor_housekeeping(struct xdna_shim_ctx *ctx);

/* ---- context state, locking, device-wide sequences (api.c) ---- */
int xdna_drv_state_init(struct xdna_shim_ctx *ctx);
void xdna_drv_state_fini(struct xdna_shim_ctx *ctx);
/* Public-call locking: enter takes the ctx lock, leave drops it and copies a
 * failure's message to the calling thread's last_error. */
int xdna_api_enter(struct xdna_shim_ctx *ctx);
int xdna_api_leave(struct xdna_shim_ctx *ctx, int rc);
/* leave without the PM publish (a snapshot restore puts the ctrl page back itself) */
int xdna_api_unlock(struct xdna_shim_ctx *ctx, int rc);
/* A device-wide sequence (probe, PM, power): one at a time, others wait for it. */
int xdna_dev_begin(struct xdna_shim_ctx *ctx);
void xdna_dev_end(struct xdna_shim_ctx *ctx);

/* ---- the PCI function: attach, release, interrupts (pci.c) ---- */
int xdna_pci_attach(struct xdna_shim_ctx *ctx, const char *path);
void xdna_pci_release(struct xdna_shim_ctx *ctx);
/* Function-level reset through config space (pcie_flr), then the config state restored. */
int xdna_pci_flr(struct xdna_shim_ctx *ctx);
int xdna_pci_flr_capable(struct xdna_shim_ctx *ctx); /* ENOTTY when not */
/* SR-IOV capability (pci.c): TotalVFs and the enabled VFs; enable/disable N VFs. */
int xdna_pci_sriov(struct xdna_shim_ctx *ctx, uint16_t *total, uint16_t *num);
int xdna_pci_sriov_set(struct xdna_shim_ctx *ctx, uint16_t num);
int xdna_pci_restore(struct xdna_shim_ctx *ctx, uint16_t cmd, uint16_t msix_flags);
void xdna_pci_state(struct xdna_shim_ctx *ctx, uint16_t *cmd, uint16_t *msix_flags);
uint32_t xdna_pci_resets(struct xdna_shim_ctx *ctx);
/* Config space back as the session set it when the function was reset since it looked. */
int xdna_pci_restore_if_reset(struct xdna_shim_ctx *ctx);
/* Install this session's eventfd on an MSI-X vector (per-vector ownership). */
int xdna_irq_own(struct xdna_shim_ctx *ctx, unsigned vec);
int xdna_irq_release(struct xdna_shim_ctx *ctx, unsigned vec);

/* ---- control socket (proto.c) ---- */
int xdna_connect(struct xdna_shim_ctx *ctx, const char *path);
/* Send one command and receive its reply. resp_len in: capacity, out: payload bytes got
 * (must be >= resp_min). fds received go to rfds (capacity *nrfds, out: count). */
int xdna_ctl(struct xdna_shim_ctx *ctx, uint16_t cmd, const void *req, size_t req_len,
             const int *fds, unsigned nfds, void *resp, size_t *resp_len, size_t resp_min,
             int *rfds, unsigned *nrfds);
/* The two halves of xdna_ctl, for pipelining: replies come back in the order sent. */
void xdna_ctl_cork(struct xdna_shim_ctx *ctx);
int xdna_ctl_send(struct xdna_shim_ctx *ctx, uint16_t cmd, const void *req, size_t req_len,
                  const int *fds, unsigned nfds, uint16_t *id);
int xdna_ctl_recv(struct xdna_shim_ctx *ctx, uint16_t cmd, uint16_t id, void *resp,
                  size_t *resp_len, size_t resp_min, int *rfds, unsigned *nrfds);
int xdna_region_read(struct xdna_shim_ctx *ctx, uint32_t region, uint64_t off, void *buf,
                     uint32_t count);
int xdna_region_write(struct xdna_shim_ctx *ctx, uint32_t region, uint64_t off,
                      const void *buf, uint32_t count);
/* xdna_region_read and xdna_region_write in two halves, for pipelining */
int xdna_region_read_send(struct xdna_shim_ctx *ctx, uint32_t region, uint64_t off,
                          uint32_t count, uint16_t *id);
int xdna_region_read_recv(struct xdna_shim_ctx *ctx, uint16_t id, void *buf, uint32_t count);
int xdna_region_write_send(struct xdna_shim_ctx *ctx, uint32_t region, uint64_t off,
                           const void *buf, uint32_t count, uint16_t *id);
int xdna_region_write_recv(struct xdna_shim_ctx *ctx, uint16_t id);
int xdna_dma_alloc(struct xdna_shim_ctx *ctx, struct xdna_dma_buf *buf, size_t size,
                   uint32_t flags, const char *name);
int xdna_dma_map(struct xdna_shim_ctx *ctx, struct xdna_dma_buf *buf);
int xdna_dma_unmap(struct xdna_shim_ctx *ctx, struct xdna_dma_buf *buf);
void xdna_dma_free(struct xdna_dma_buf *buf);

/* ---- mailbox (mailbox.c) ---- */
int xdna_mbox_create(struct xdna_shim_ctx *ctx, struct xdna_mbox_chan *ch, const char *name,
                     const struct xdna_aie2_mgmt_mbox_chann_info *ci);
void xdna_mbox_destroy(struct xdna_shim_ctx *ctx, struct xdna_mbox_chan *ch);
/* Send and wait for the response (exact size). */
int xdna_mbox_call(struct xdna_shim_ctx *ctx, struct xdna_mbox_chan *ch, uint32_t opcode,
                   const void *req, size_t req_len, void *resp, size_t resp_len, int timeout_ms);
/* Send and leave pending (REGISTER_ASYNC_EVENT_MSG). */
int xdna_mbox_post_async(struct xdna_shim_ctx *ctx, struct xdna_mbox_chan *ch, uint32_t opcode,
                         const void *req, size_t req_len, size_t resp_len);
const char *xdna_opcode_name(uint32_t opcode);
/* Send and leave pending; cb runs when the response arrives or the channel dies. */
int xdna_mbox_post_cb(struct xdna_shim_ctx *ctx, struct xdna_mbox_chan *ch, uint32_t opcode,
                      const void *req, size_t req_len, size_t resp_len, bool any_size,
                      void (*cb)(struct xdna_shim_ctx *, void *, int, const uint8_t *, size_t),
                      void *arg);
/* Ack the channel interrupt and drain its i2x ring (the RX worker). */
int xdna_mbox_rx(struct xdna_shim_ctx *ctx, struct xdna_mbox_chan *ch);

/* ---- SMU (smu.c) ---- */
int xdna_smu_start(struct xdna_shim_ctx *ctx);
int xdna_smu_power_on(struct xdna_shim_ctx *ctx); /* AIE4 start: POWER_ON only */
int xdna_smu_stop(struct xdna_shim_ctx *ctx);
int xdna_smu_set_dpm(struct xdna_shim_ctx *ctx, uint32_t level);

/* ---- PSP and the firmware image (psp.c) ---- */
int xdna_fw_load(struct xdna_shim_ctx *ctx, const char *search);
/* Find <dir>/<rel> along the search path and copy it (1..max bytes) into buf. */
int xdna_fw_load_file(struct xdna_shim_ctx *ctx, const char *search, const char *rel,
                      size_t max, struct xdna_dma_buf *buf, const char *tag);
int xdna_psp_start(struct xdna_shim_ctx *ctx);
int xdna_psp_stop(struct xdna_shim_ctx *ctx);
int xdna_psp_waitmode_poll(struct xdna_shim_ctx *ctx);

/* ---- management messages (message.c) ---- */
bool xdna_has_feature(struct xdna_shim_ctx *ctx, enum xdna_feature f);
int xdna_set_runtime_config(struct xdna_shim_ctx *ctx, uint32_t type, uint64_t value);
int xdna_get_fw_version(struct xdna_shim_ctx *ctx);
int xdna_mgmt_fw_query(struct xdna_shim_ctx *ctx);
/* AIE version + tile info responses into ctx->info; -1 if unusable. */
int xdna_decode_aie_info(struct xdna_shim_ctx *ctx, const xdna_aie2_query_aie_version_resp_t *av,
                         const xdna_aie2_query_aie_tile_info_resp_t *ti);
/* One management request: mgmt ring for the driver session, MGMT_PROXY for a client. The
 * response must be exactly resp_len bytes; its status word is not checked here. */
int xdna_fw_call(struct xdna_shim_ctx *ctx, uint32_t opcode, const void *req, size_t req_len,
                 void *resp, size_t resp_len);
/* xdna_fw_call whose response status word must be 0 (EIO otherwise); NULL resp: status
 * only. The _u32 form sends the one-reserved-word request of the query messages. */
int xdna_fw_req(struct xdna_shim_ctx *ctx, uint32_t op, const void *req, size_t req_len,
                void *resp, size_t resp_len);
int xdna_fw_req_u32(struct xdna_shim_ctx *ctx, uint32_t op, void *resp, size_t len);
int xdna_client_query(struct xdna_shim_ctx *ctx);

/* ---- QoS-driven DPM (pm.c) ---- */
/* The level a context's QoS asks for (driver math); -1 (EINVAL) when it cannot be met. */
int xdna_pm_ctx_level(struct xdna_shim_ctx *ctx, const struct xdna_shim_hwctx_params *p,
                      uint32_t *level);
/* Count a context's level in or out; in DEFAULT mode the SMU follows the highest counted. */
int xdna_pm_count_level(struct xdna_shim_ctx *ctx, uint32_t level, bool add);
/* Monitor duty of the driver session: the client sessions' QoS changed (ctrl FOREIGN_DPM). */
void xdna_pm_foreign_qos(struct xdna_shim_ctx *ctx);

/* ---- async error events (async.c) ---- */
/* The async buffer, event_buf bytes per column, (re)made and mapped, and each column's
 * registration posted with post, as one batch of one kick: both families' start. */
int xdna_async_bufs_start(struct xdna_shim_ctx *ctx, size_t event_buf,
                          int (*post)(struct xdna_shim_ctx *ctx, unsigned idx));
int xdna_async_events_start(struct xdna_shim_ctx *ctx);
/* Decode one AIE error the driver's way (docs/spec/jobs.md §6). */
uint32_t xdna_aie_error_category(uint32_t row, uint32_t event_id, uint32_t mod_type);
uint64_t xdna_aie_error_code(uint32_t category, uint32_t mod_type);
/* Post REGISTER_ASYNC_EVENT_MSG for async buffer idx (decoded and re-posted on reply). */
int xdna_async_post(struct xdna_shim_ctx *ctx, unsigned idx);

/* ---- hardware start and stop, lifecycle bodies (hw.c) ---- */
int xdna_probe_unlocked(struct xdna_shim_ctx *ctx, const char *fw_search_path);
int xdna_stop_unlocked(struct xdna_shim_ctx *ctx);
int xdna_suspend_unlocked(struct xdna_shim_ctx *ctx);
int xdna_resume_unlocked(struct xdna_shim_ctx *ctx);
int xdna_mgmt_msg_unlocked(struct xdna_shim_ctx *ctx, uint32_t opcode, const void *req,
                           size_t req_len, void *resp, size_t resp_len, int timeout_ms);
void xdna_hw_close(struct xdna_shim_ctx *ctx);

/* ---- firmware log and trace (dpt.c) ---- */
/* After a resume: hand the same rings to the new firmware (the driver resubmits them). */
void xdna_dpt_resume(struct xdna_shim_ctx *ctx);
/* At close: free the rings. */
void xdna_dpt_free(struct xdna_shim_ctx *ctx);

/* ---- power management (pm.c) ---- */
int xdna_pm_init(struct xdna_shim_ctx *ctx);
int xdna_pm_apply_mode(struct xdna_shim_ctx *ctx, int mode);
int xdna_pm_resume(struct xdna_shim_ctx *ctx);
/* Runtime PM: resume the device if the monitor suspended it (caller holds the lock). */
int xdna_rpm_get(struct xdna_shim_ctx *ctx);
bool xdna_rpm_armed(struct xdna_shim_ctx *ctx);
void xdna_rpm_maybe_suspend(struct xdna_shim_ctx *ctx);
void xdna_pm_publish(struct xdna_shim_ctx *ctx, bool sync);
void xdna_pm_client_asks(struct xdna_shim_ctx *ctx);
void xdna_pm_client_busy(struct xdna_shim_ctx *ctx);
int xdna_pm_client_get(struct xdna_shim_ctx *ctx);
/* The platform firmware's NPU metrics (the driver's amd_pmf_get_npu_data): power in mW and
 * busy % of the first XDNA_PROTO_CTRL_PMF_COLUMNS columns, as the daemon last sampled them
 * (docs/spec/uapi.md §6 "Sensors"). -1 with EOPNOTSUPP without a daemon to publish them. */
int xdna_pm_npu_metrics(struct xdna_shim_ctx *ctx, uint32_t *power_mw,
                        uint16_t busy[XDNA_PROTO_CTRL_PMF_COLUMNS]);

/* ---- buffers (bo.c) ---- */
struct xdna_bo {
    uint32_t handle;
    int type;
    bool internal;        /* a cmd-list buffer of a context (no user access) */
    uint64_t size;        /* requested */
    uint64_t alloc;       /* bytes backing it (page / 32 KiB rounded) */
    uint8_t *va;
    int fd;
    uint64_t xdna_addr;
    uint64_t heap_off;    /* DEV, DEV_HEAP chunk: offset in the session heap */
    uint64_t dma_addr;    /* where DMA_MAP put it: the VA (SVA) or an IOVA (IOVA mode) */
    bool dma_mapped;
    unsigned busy;        /* pins held by pending commands */
    uint32_t dbg_ctx;     /* handle of the context it is the debug BO of (0: none) */
};
struct xdna_bo *xdna_bo_get(struct xdna_shim_ctx *ctx, uint32_t handle);
/* The BO whose device range holds [addr, addr+len) (heap or SVA), or NULL. */
struct xdna_bo *xdna_bo_by_addr(struct xdna_shim_ctx *ctx, uint64_t addr, uint64_t len);
int xdna_bo_new(struct xdna_shim_ctx *ctx, int type, uint64_t size, bool internal,
                uint32_t *handle);
int xdna_bo_release(struct xdna_shim_ctx *ctx, uint32_t handle);
/* Give a connected context the heap chunks it does not have yet: MAP_HOST_BUFFER for the
 * first 64 MiB, ADD_HOST_BUFFER for each later 64 MiB (hwctx.c). Caller holds the lock. */
int xdna_hwctx_heap_give(struct xdna_shim_ctx *ctx, struct xdna_hwctx *hw);
/* A SHARE BO over an existing memfd (a PRIME import; docs/spec/uapi.md §6): the fd is
 * duplicated, mapped here and for the device. Caller holds the lock. */
int xdna_bo_import(struct xdna_shim_ctx *ctx, int fd, uint64_t size, uint32_t *handle);
/* A user-pointer BO (docs/spec/uapi.md §6): a SHARE BO over the memfd that now backs the
 * program's pages, DMA-mapped read-only when readonly. Caller holds the lock. */
int xdna_bo_userptr(struct xdna_shim_ctx *ctx, int fd, uint64_t size, bool readonly,
                    uint32_t *handle);
void xdna_bo_free_all(struct xdna_shim_ctx *ctx);
/* DMA_MAP an fd at this process's VA in the session PASID (SVA). */
int xdna_sva_map(struct xdna_shim_ctx *ctx, int fd, void *va, uint64_t size);

/* ---- hardware contexts and jobs (hwctx.c) ---- */
struct xdna_job {
    bool live;
    uint64_t seq;
    uint32_t cmd_bo;
    unsigned cmdlist;     /* index of the cmd-list buffer it uses */
    unsigned npins;
    uint32_t pins[XDNA_MAX_PINS];
    uint64_t umq_end;     /* AIE4: the queue index after its last packet */
    uint32_t nsub;        /* AIE4: packets (chained commands) it took */
    uint32_t subs[XDNA_PARSE_CHAIN_MAX]; /* AIE4: their CMD BOs, in packet order */
};

enum xdna_hwctx_state { XDNA_HWCTX_ACTIVE = 0, XDNA_HWCTX_IDLE = 1, XDNA_HWCTX_BROKEN = 2 };

struct xdna_hwctx {
    uint32_t handle;      /* cyclic 1..XDNA_HWCTX_ID_MAX: a stale handle names no new context */
    unsigned slot;        /* index in s.hw */
    struct xdna_shim_hwctx_params params;
    int state;
    bool busy;            /* create/destroy/recovery in progress (lock released inside) */
    bool fw_live;         /* the firmware knows this context */
    bool polled;          /* TURBO: user channel polled, not interrupt driven */
    bool gone;            /* a client's context whose firmware the driver stopped: ENODEV */
    uint32_t fw_id, msix, start_col, num_col, prio;
    uint32_t dpm_level;   /* the DPM level its QoS asks for */
    uint32_t dbg_bo;      /* its debug BO (0: none) */
    uint32_t connects, swaps; /* runqueue: CREATE_CONTEXTs, disconnections for another */
    uint32_t idle_outs;   /* runqueue: disconnections after XDNA_RQ_IDLE_TICKS idle ticks */
    uint32_t idle_ticks;  /* TDR ticks in a row it was connected with nothing to do */
    uint64_t tick_submitted; /* submitted at the last tick */
    uint32_t syncobj;     /* its hardware-queue (completion timeline) handle */
    uint64_t active_ns;   /* last submission or completion (swap victims: least recent) */
    bool dbg_done;        /* the CONFIG_DEBUG_BO answer arrived */
    uint32_t dbg_status;
    bool dpm_counted;     /* dpm_level is in s.dpm_cnt */
    uint32_t cu_cfg[XDNA_AIE2_CONFIG_CU_MAX]; /* CONFIG_CU cfgs set by the client */
    bool cu_user;         /* the client configured its CUs */
    uint32_t num_cus;     /* CUs in the context's CONFIG_CU (a command naming another: EINVAL) */
    uint64_t heap_given;  /* heap bytes the firmware context has (MAP/ADD_HOST_BUFFER) */
    struct xdna_mbox_chan chan;
    uint32_t cmdlist_bo[XDNA_CTX_MAX_CMDS];
    bool cmdlist_used[XDNA_CTX_MAX_CMDS];
    struct xdna_job jobs[XDNA_CTX_JOBS_MAX]; /* ring in submission order */
    unsigned job_head, njobs;
    uint64_t next_seq, done_seq;
    uint64_t submitted, completed, errors, timeouts, aborts;
    uint64_t completions, tick_completions;
    bool tick_pending;
    uint32_t cu_status;
    uint8_t health[XDNA_HEALTH_MAX];
    uint32_t health_len;
    uint32_t umq_bo;      /* AIE4: the HSA queue BO (internal SHARE) */
    uint32_t doorbell;    /* AIE4: doorbell offset from CREATE_HW_CONTEXT */
    uint64_t umq_wr;      /* AIE4: our write index */
    bool umq_user;        /* AIE4: the application owns the queue (user-mode submission) */
    uint32_t resets;      /* AIE4: context resets (CTX_ERROR); a blocked submission sees one */
    uint32_t log_bo;      /* AIE4: its CERT log BO (0: none), slices in log_ucs */
    uint32_t log_n;
    struct xdna_shim_uc_log log_ucs[XDNA_AIE4_CERT_LOG_UCS];
};
/* Firmware side of every live context: stop (PM suspend) / restart (resume). */
void xdna_hwctx_stop_all(struct xdna_shim_ctx *ctx);
void xdna_hwctx_drop_all(struct xdna_shim_ctx *ctx);
/* Free every context (its BOs, its slot) without a message: the caller marked the socket
 * dead first (a snapshot's restore, snapshot.c). */
void xdna_hwctx_forget_all(struct xdna_shim_ctx *ctx);
/* Unmask every MSI-X table entry again (after a function reset, as the PCI core restores). */
int xdna_msix_restore(struct xdna_shim_ctx *ctx);
int xdna_hwctx_restart_all(struct xdna_shim_ctx *ctx);
/* A client session whose contexts' firmware went (stopped, reset, or booted again): their jobs
 * end ABORT and their channels close before anything reads them (docs/spec/jobs.md §1). */
void xdna_hwctx_client_boot_check(struct xdna_shim_ctx *ctx);
/* Monitor tick: TDR over every context. */
void xdna_hwctx_tdr_tick(struct xdna_shim_ctx *ctx);
/* Monitor duty: another session asked the runqueue for a partition; give up an idle one. */
void xdna_hwctx_rq_yield(struct xdna_shim_ctx *ctx);
/* Channels to scan / vectors to poll for the monitor. */
unsigned xdna_hwctx_pending(struct xdna_shim_ctx *ctx);
unsigned xdna_hwctx_live(struct xdna_shim_ctx *ctx);
void xdna_hwctx_destroy_all(struct xdna_shim_ctx *ctx);
/* A bound debug BO is being freed: unregister it (best effort) and unbind it. */
void xdna_hwctx_dbg_unbind(struct xdna_shim_ctx *ctx, struct xdna_bo *bo);
/* GET_APP_HEALTH target buffer: IOVA (mgmt PASID) for the driver, SVA for a client. */
/* The session's query DMA buffer (GET_APP_HEALTH, QUERY_COL_STATUS): XDNA_QUERY_BUF_SIZE
 * bytes in the session's PASID, allocated on first use. */
#define XDNA_QUERY_BUF_SIZE 0x2000u
int xdna_health_buf(struct xdna_shim_ctx *ctx, uint64_t *addr, uint8_t **va);

/* ---- AIE4 (aie4_psp.c, aie4_hw.c; docs/spec/aie4.md) ---- */
static inline bool xdna_is_aie4(const struct xdna_chip_desc *c)
{
    return c->mbox_info.valid;
}
int xdna_aie4_psp_start(struct xdna_shim_ctx *ctx);
int xdna_aie4_psp_stop(struct xdna_shim_ctx *ctx);
int xdna_aie4_probe(struct xdna_shim_ctx *ctx, const char *fw_search_path);
int xdna_aie4_start(struct xdna_shim_ctx *ctx);
int xdna_aie4_stop(struct xdna_shim_ctx *ctx);
/* A client session's queries through MGMT_PROXY (docs/spec/aie4.md §12). */
int xdna_aie4_client_query(struct xdna_shim_ctx *ctx);
/* AIE_VERSION_INFO and AIE_TILE_INFO in AIE2's layout (the same fields); EOPNOTSUPP on a PF,
 * which has no AIE array of its own (the decoder's GET_INFO AIE_METADATA, docs/spec/uapi.md §6). */
int xdna_aie4_aie_info(struct xdna_shim_ctx *ctx, xdna_aie2_query_aie_version_resp_t *av2,
                       xdna_aie2_query_aie_tile_info_resp_t *ti2);
/* AIE4 contexts through HSA queues (aie4_ctx.c; docs/spec/aie4.md §8) */
int xdna_aie4_ctx_start(struct xdna_shim_ctx *ctx, struct xdna_hwctx *hw);
void xdna_aie4_ctx_stop(struct xdna_shim_ctx *ctx, struct xdna_hwctx *hw, bool destroy);
/* The HSA queue has room for nsub more packets (true while there is no queue yet). */
bool xdna_aie4_queue_room(struct xdna_shim_ctx *ctx, struct xdna_hwctx *hw, uint32_t nsub);
int xdna_aie4_submit(struct xdna_shim_ctx *ctx, struct xdna_hwctx *hw, struct xdna_job *j,
                     const uint32_t *subs, uint32_t nsub);
void xdna_aie4_reap(struct xdna_shim_ctx *ctx, struct xdna_hwctx *hw);
/* A context goes away: its CERT log BO is free again (aie4_ctx.c). */
void xdna_aie4_log_release(struct xdna_shim_ctx *ctx, struct xdna_hwctx *hw);
/* CTX_ERROR on firmware context ctx_id: reset it (docs/spec/aie4.md §8). */
void xdna_aie4_ctx_error(struct xdna_shim_ctx *ctx, const struct xdna_aie4_ctx_error_event *ev);
/* Monitor duty: a function reset the driver did not start runs the FLR hooks (aie4_hw.c). */
void xdna_aie4_reset_check(struct xdna_shim_ctx *ctx);
/* TDR tick on AIE4: jobs pending under a firmware that is gone reset the function. */
void xdna_aie4_tdr(struct xdna_shim_ctx *ctx);
/* The daemon went away: if it removed the function (a VF disabled), end every job ABORT as
 * the driver's remove does; true when it did. Lock held (aie4_hw.c). */
bool xdna_aie4_removed(struct xdna_shim_ctx *ctx);
/* Monitor duty: a write to the PF's sysfs sriov_numvfs runs sriov_configure (aie4_hw.c). */
void xdna_aie4_sriov_request(struct xdna_shim_ctx *ctx);
/* hwctx.c: a job is over (its command BO gets `state`) */
void xdna_job_finish(struct xdna_shim_ctx *ctx, struct xdna_hwctx *hw, struct xdna_job *j,
                     uint32_t state, uint32_t fail_idx);

#endif
