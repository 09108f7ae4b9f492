/* xdna_shim: the amdxdna kernel driver, played in userspace against an xdna-emu daemon.
 *
 * The shim attaches to one emulated NPU over the daemon's control socket
 * (docs/spec/protocol.md), maps its BARs, and then probes it the way the amdxdna driver
 * does: id-table match, SMU power-up, PSP firmware load, FW-alive handshake, management
 * mailbox channel, the firmware init message sequence, and teardown.
 *
 * Conventions (libvfio-user style):
 *  - one opaque context per attached device. Every public call takes the context's mutex,
 *    which is released only while a call blocks (waiting for the device), so several
 *    threads may use one context at once (e.g. exec/wait on different hardware contexts).
 *    A monitor thread per context (started by probe/attach, joined by close) receives
 *    interrupts, runs TDR, drains async events and runs runtime autosuspend;
 *  - every int-returning call returns 0 on success or -1 with errno set;
 *    xdna_shim_last_error() then holds one human-readable line about the failure;
 *  - errno values: ENOENT/ECONNREFUSED (no daemon), EPROTO (the daemon broke the
 *    protocol), ENODEV (not an NPU we know / management channel gone), EOPNOTSUPP (a chip
 *    we only know by id, or firmware too old), EINVAL (bad argument, or the device returned
 *    an out-of-range value), EIO (firmware returned an error status), ETIME (the device did
 *    not answer before a deadline), EPIPE (daemon gone or a mailbox channel in bad state),
 *    EBADF (context closed), EBUSY/EALREADY (call in the wrong state);
 *    xdna_shim_last_error() is per thread: the line of this thread's last failure.
 *  - no call sleeps for a fixed time; every wait is a poll() with a monotonic deadline.
 *
 * The part between the CDEF markers is fed verbatim to cffi (xdna_emu/_shim_build.py), so
 * it may hold only declarations and integer #defines.
 */
#ifndef XDNA_SHIM_H
#define XDNA_SHIM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* CDEF-BEGIN */

struct xdna_shim_ctx;

/* Device lifecycle state as reported in xdna_shim_info.state. */
enum xdna_shim_state {
    XDNA_SHIM_STATE_ATTACHED = 0,  /* open succeeded, not probed yet */
    XDNA_SHIM_STATE_PROBED = 1,    /* hw_start and init sequence completed */
    XDNA_SHIM_STATE_STOPPED = 2,   /* stopped by xdna_shim_stop (may be probed again) */
    XDNA_SHIM_STATE_SUSPENDED = 3, /* stopped by xdna_shim_suspend (resume restarts) */
    XDNA_SHIM_STATE_FAILED = 4     /* a probe step failed: probe again or close; a resume or
                                    * reset step failed: still bound, stop before a probe */
};

/* Selectors for xdna_shim_set_timeout(). */
enum xdna_shim_timeout {
    XDNA_SHIM_TIMEOUT_PSP = 0,      /* PSP STATUS and PWAITMODE polls, default 1000 ms */
    XDNA_SHIM_TIMEOUT_SMU = 1,      /* SMU RESP poll, default 1000 ms */
    XDNA_SHIM_TIMEOUT_FW_ALIVE = 2, /* FW_ALIVE poll, default 1000 ms */
    XDNA_SHIM_TIMEOUT_MBOX_RX = 3,  /* mailbox response wait, default 5000 ms */
    XDNA_SHIM_TIMEOUT_CONTROL = 4   /* control-socket replies, default: open's timeout_ms */
};

#define XDNA_SHIM_MAX_STAGES 8

/* One timed probe stage (CLOCK_MONOTONIC). */
struct xdna_shim_stage {
    char name[16];
    uint64_t ns;
};

/* What `xdna-emu probe --json` prints. Fields the device has not reported yet are 0. */
struct xdna_shim_info {
    char chip[16];   /* chip name from the id table, e.g. "npu4" */
    char family[8];  /* "aie2" or "aie4" */
    char bdf[32];    /* from the daemon's VERSION caps */
    char vbnv[64];
    uint32_t vendor, device, revision, class_code;
    uint32_t pasid;  /* the session PASID from the VERSION caps */
    uint32_t fw_major, fw_minor, fw_sub, fw_build;  /* GET_FIRMWARE_VERSION */
    uint32_t protocol_major, protocol_minor;        /* mgmt_mbox_chann_info */
    uint32_t aie_major, aie_minor;                  /* QUERY_AIE_VERSION */
    uint32_t cols, rows, core_rows, mem_rows, shim_rows;  /* QUERY_AIE_TILE_INFO */
    uint32_t core_row_start, mem_row_start, shim_row_start;
    uint32_t total_col;
    uint32_t first_col;
    uint32_t msix_vectors;
    uint32_t mgmt_msi_id;
    uint32_t dpm_levels;  /* entries in the chip DPM table */
    uint32_t dpm_level;   /* level set by pm_init */
    uint32_t dev_revision; /* GET_DEV_REVISION (0 when the chip does not offer it) */
    uint32_t hwctx_limit;
    int32_t state;        /* enum xdna_shim_state */
    uint32_t async_pending;   /* REGISTER_ASYNC_EVENT_MSG messages still outstanding */
    uint64_t async_events;    /* async event responses received */
    uint64_t dropped_resps;   /* mailbox responses that matched no pending message */
    uint64_t trapped_writes;  /* entries appended to the write log */
    uint32_t nstages;
    struct xdna_shim_stage stages[8];
    uint32_t caps_probed; /* VERSION caps "probed" at open: attach rather than probe */
    uint32_t client;      /* 1 after xdna_shim_attach */
    /* AIE4 (docs/spec/aie4.md §6) */
    uint32_t cert_major, cert_minor, cert_hotfix, cert_build; /* QUERY_CERT_FIRMWARE_VERSION */
    uint32_t partition_id; /* CREATE_PARTITION (0: none, a PF) */
    char function[8];      /* "plain", "pf" or "vf" */
    uint64_t kicks_saved;  /* write-log entries not kicked: the daemon was still draining */
    uint64_t direct_waits; /* waits that slept on their own channel's vector, not the monitor's */
    uint64_t ctl_sends;    /* control-socket sendmsg calls: a pipelined batch is one */
};

/* Connect to the daemon socket, handshake (VERSION), read config space, match the id
 * table, enable memory + bus mastering, map the BARs, attach the write log and set up one
 * eventfd per MSI-X vector. timeout_ms bounds each control-socket reply (<= 0: 5000).
 * Returns NULL with errno set on failure (a chip known only by id still opens; probing it
 * gives EOPNOTSUPP). */
struct xdna_shim_ctx *xdna_shim_open(const char *socket_path, int timeout_ms);

/* Stop the device if it is probed, unmap everything and close every fd. NULL is a no-op. */
void xdna_shim_close(struct xdna_shim_ctx *ctx);

/* The driver's hw_start + init sequence. fw_search_path is a colon-separated list of
 * directories, each searched for <dir>/<chip fw_path>. Allowed when attached, stopped or
 * failed; EALREADY when probed. */
int xdna_shim_probe(struct xdna_shim_ctx *ctx, const char *fw_search_path);

/* Copy the current device information (valid in every state). */
int xdna_shim_get_info(struct xdna_shim_ctx *ctx, struct xdna_shim_info *info);

/* Driver stop order: SUSPEND message, destroy the mgmt channel, PSP RELEASE_TMR,
 * set_dpm(0), SMU POWER_OFF, unmap DMA buffers. Best effort: every step runs, the first
 * error is reported. */
int xdna_shim_stop(struct xdna_shim_ctx *ctx);

/* PM suspend (same order as stop), leaving the device ready for xdna_shim_resume(). */
int xdna_shim_suspend(struct xdna_shim_ctx *ctx);

/* PM resume: hw_start again (SMU, PSP with the loaded image, FW-alive, mgmt channel) and
 * the init sequence. */
int xdna_shim_resume(struct xdna_shim_ctx *ctx);

/* Send one management message and wait for its response; resp_len must equal the response
 * size exactly (the driver's rule) or the call fails with EINVAL. timeout_ms <= 0 uses
 * the MBOX_RX timeout. A timeout destroys the management channel (ENODEV afterwards). */
int xdna_shim_mgmt_msg(struct xdna_shim_ctx *ctx, uint32_t opcode, const void *req,
                       size_t req_len, void *resp, size_t resp_len, int timeout_ms);

/* 32-bit register access by (bar, offset). Offsets must be 4-aligned and inside the BAR.
 * Writes to registers with side effects are also appended to the write log. */
int xdna_shim_readl(struct xdna_shim_ctx *ctx, unsigned bar, uint32_t off, uint32_t *val);
int xdna_shim_writel(struct xdna_shim_ctx *ctx, unsigned bar, uint32_t off, uint32_t val);

/* Change one deadline (enum xdna_shim_timeout); ms must be > 0. */
int xdna_shim_set_timeout(struct xdna_shim_ctx *ctx, int which, int ms);

/* One line describing the last failure on ctx ("" if none). Never NULL. */
const char *xdna_shim_last_error(struct xdna_shim_ctx *ctx);

/* ---- buffers, hardware contexts, commands (docs/spec/jobs.md) ------------------------ */

/* Sessions: the shim that probed the device is the driver session. Another process (or
 * another context in this one) attaches as a client: it needs VERSION caps "probed" (taken
 * at open) and sends its management requests through MGMT_PROXY. ENODEV when no driver
 * session has probed the device, EALREADY when this context is probed or attached. */
int xdna_shim_attach(struct xdna_shim_ctx *ctx);

/* BO types (uapi). SHARE: memfd mapped here, SVA-mapped (device address = its VA).
 * DEV_HEAP: a heap chunk, a multiple of 64 MiB, each right after the last (the first at
 * device address 0x4000000), up to the chip's heap maximum (docs/spec/uapi.md §6); the
 * first DEV BO or hardware context auto-creates a 64 MiB heap when none exists.
 * DEV: 32 KiB-aligned piece of the heap (0x4000000 + offset). CMD: plain memory holding an
 * ERT command, never seen by the device (device address 0). */
#define XDNA_SHIM_BO_SHARE 1
#define XDNA_SHIM_BO_DEV_HEAP 2
#define XDNA_SHIM_BO_DEV 3
#define XDNA_SHIM_BO_CMD 4

#define XDNA_SHIM_SYNC_TO_DEVICE 0
#define XDNA_SHIM_SYNC_FROM_DEVICE 1

/* ERT command header: bits 3:0 state, 11:10 extra CU masks, 22:12 count = number of data
 * words after the header (1 + extra CU masks + payload; a CMD_CHAIN has no CU masks),
 * 27:23 opcode. */
#define XDNA_SHIM_ERT_START_CU 0
#define XDNA_SHIM_ERT_START_DPU 18
#define XDNA_SHIM_ERT_CMD_CHAIN 19
#define XDNA_SHIM_ERT_START_NPU 20
#define XDNA_SHIM_ERT_START_NPU_PREEMPT 21
#define XDNA_SHIM_ERT_START_NPU_PREEMPT_ELF 22
#define XDNA_SHIM_ERT_INVALID_CU 0xFFFFFFFFu /* no bit set in any CU mask word */
#define XDNA_SHIM_ERT_STATE_NEW 1
#define XDNA_SHIM_ERT_STATE_QUEUED 2
#define XDNA_SHIM_ERT_STATE_RUNNING 3
#define XDNA_SHIM_ERT_STATE_COMPLETED 4
#define XDNA_SHIM_ERT_STATE_ERROR 5
#define XDNA_SHIM_ERT_STATE_ABORT 6
#define XDNA_SHIM_ERT_STATE_SUBMITTED 7
#define XDNA_SHIM_ERT_STATE_TIMEOUT 8
#define XDNA_SHIM_ERT_STATE_NORESPONSE 9

/* uapi QoS priorities -> CREATE_CONTEXT context_priority 1..4 (0 means normal) */
#define XDNA_SHIM_PRIO_REALTIME 0x100
#define XDNA_SHIM_PRIO_HIGH 0x180
#define XDNA_SHIM_PRIO_NORMAL 0x200
#define XDNA_SHIM_PRIO_LOW 0x280

#define XDNA_SHIM_POWER_DEFAULT 0
#define XDNA_SHIM_POWER_LOW 1
#define XDNA_SHIM_POWER_MEDIUM 2
#define XDNA_SHIM_POWER_HIGH 3
#define XDNA_SHIM_POWER_TURBO 4

/* xdna_shim_hwctx_info.state */
#define XDNA_SHIM_HWCTX_ACTIVE 0 /* known to the firmware */
#define XDNA_SHIM_HWCTX_IDLE 1   /* firmware context destroyed by runtime suspend */
#define XDNA_SHIM_HWCTX_BROKEN 2 /* re-creation after TDR failed; exec retries it */

struct xdna_shim_bo_info {
    uint32_t type;
    uint32_t handle;
    uint64_t size;       /* bytes requested */
    uint64_t vaddr;      /* the mapping in this process */
    uint64_t xdna_addr;  /* device address */
    uint64_t map_offset; /* informational (handle << 12); the memory is already mapped */
};

struct xdna_shim_hwctx_params {
    uint32_t priority; /* XDNA_SHIM_PRIO_* (0: normal) */
    uint32_t num_cols; /* 0: all usable columns */
    int32_t start_col; /* -1: chosen by the shim */
    uint32_t rsvd;
    /* QoS (uapi amdxdna_qos_info): the DPM level the context asks for (docs/spec/jobs.md §6).
     * gops = 0 or (fps = 0 and latency = 0): no QoS (max level; LOW priority: level 0). */
    uint32_t gops, fps, latency_ms;
    uint32_t max_opc;  /* ops per cycle of the context's partition (0: unknown) */
};

struct xdna_shim_hwctx_info {
    uint32_t handle, fw_ctx_id, msix, start_col, num_cols, priority;
    int32_t state;     /* XDNA_SHIM_HWCTX_* */
    uint32_t polled;   /* created in TURBO: user channel polled */
    uint32_t cu_status; /* status word of the CONFIG_CU reply (0 until it arrives or ok) */
    uint32_t dpm_level; /* the DPM level its QoS asks for (counted while it lives) */
    uint32_t pending;  /* commands outstanding */
    uint32_t connects; /* times the firmware context was created (the runqueue reconnects) */
    uint32_t swaps;    /* times it was disconnected to make room for another */
    uint32_t syncobj;  /* its hardware-queue handle: the completion timeline (§3b) */
    uint32_t umq_doorbell; /* user-mode queue doorbell: 0 on AIE2 (kernel-mode queue) */
    uint32_t idle_outs; /* times it was disconnected after its idle TDR ticks */
    uint64_t submitted, completed, errors, timeouts, aborts;
};

struct xdna_shim_async_error {
    uint64_t count;     /* async error events received since probe */
    uint64_t ts_ns;     /* CLOCK_REALTIME of the last one; sticky until the next */
    uint32_t type;      /* 0 AIE error, 1 exception */
    uint32_t err_cnt;   /* entries in the last event */
    uint32_t ret_code;
    uint32_t event_id;  /* of its last entry (the one the driver caches) */
    uint32_t row, col, mod_type;
    uint32_t category;  /* AieErrorCategory the driver decodes it to */
    uint64_t err_code;  /* the driver's xrtErrorCode: num, driver, severity, module, class */
};

struct xdna_shim_power {
    int32_t mode;       /* XDNA_SHIM_POWER_* */
    uint32_t dpm_level, npuclk_mhz, hclk_mhz;
    double tops;
    uint32_t clock_gating; /* 1 on */
    uint32_t suspended;    /* runtime-suspended */
    uint64_t suspend_count, resume_count;
};

/* BOs: 0 / -1 with errno (EINVAL bad type/size/handle, EBUSY heap at its maximum / BO in
 * use, ENOMEM a DEV BO that does not fit the heap's chunks). */
int xdna_shim_bo_create(struct xdna_shim_ctx *ctx, int type, uint64_t size, uint32_t *handle);
int xdna_shim_bo_info(struct xdna_shim_ctx *ctx, uint32_t handle, struct xdna_shim_bo_info *info);
/* dir 0 to device, 1 from device; offset+size must lie inside the BO (size 0: to its end).
 * Memory is coherent, so this is a checked fence. */
int xdna_shim_bo_sync(struct xdna_shim_ctx *ctx, uint32_t handle, int dir, uint64_t offset,
                      uint64_t size);
/* EBUSY while a pending command uses it (or, for the heap, while DEV BOs/contexts exist). */
int xdna_shim_bo_free(struct xdna_shim_ctx *ctx, uint32_t handle);

/* Hardware contexts (driver hwctx_start). The firmware's NOAVAIL -> EBUSY. p may be NULL. */
int xdna_shim_hwctx_create(struct xdna_shim_ctx *ctx, const struct xdna_shim_hwctx_params *p,
                           uint32_t *handle);
int xdna_shim_hwctx_destroy(struct xdna_shim_ctx *ctx, uint32_t handle);
int xdna_shim_hwctx_info(struct xdna_shim_ctx *ctx, uint32_t handle,
                         struct xdna_shim_hwctx_info *info);
/* CONFIG_HWCTX (docs/spec/jobs.md §4a): ASSIGN_DBG_BUF / REMOVE_DBG_BUF with value = a DEV
 * BO handle. EINVAL bad BO or firmware refusal, EBUSY already bound, ETIME no answer;
 * CONFIG_CU: EOPNOTSUPP. */
#define XDNA_SHIM_HWCTX_CONFIG_CU 0
#define XDNA_SHIM_HWCTX_ASSIGN_DBG_BUF 1
#define XDNA_SHIM_HWCTX_REMOVE_DBG_BUF 2
int xdna_shim_hwctx_config(struct xdna_shim_ctx *ctx, uint32_t handle, uint32_t type,
                           uint64_t value);
/* CONFIG_HWCTX CONFIG_CU (the uapi config_cu buffer): the context's CU table, each CU a DEV
 * BO (its "PDI") and a function; sent in CONFIG_CU whenever the context connects, and at
 * once if it is connected. EINVAL: no CUs, more than 32, a CU BO that is no DEV BO, or
 * configured already. */
struct xdna_shim_cu_config {
    uint32_t cu_bo;
    uint8_t cu_func;
    uint8_t pad[3];
};
int xdna_shim_hwctx_config_cu(struct xdna_shim_ctx *ctx, uint32_t handle,
                              const struct xdna_shim_cu_config *cus, uint32_t num_cus);

/* Submit the ERT command in CMD BO cmd_bo (START_NPU, or CMD_CHAIN of START_NPU BOs) to a
 * context; *seq identifies it for xdna_shim_wait. With 4 commands outstanding the call
 * blocks until one completes, up to the MBOX_RX timeout (then EAGAIN). EINVAL for a bad
 * header, opcode, count or handle. */
int xdna_shim_exec(struct xdna_shim_ctx *ctx, uint32_t hwctx, uint32_t cmd_bo, uint64_t *seq);
/* 0 when command seq of hwctx is final (read its state with xdna_shim_cmd_state), ETIME
 * when not within timeout_ms (0: look once, < 0: wait for ever). */
int xdna_shim_wait(struct xdna_shim_ctx *ctx, uint32_t hwctx, uint64_t seq, int timeout_ms);

/* AIE4 user-mode submission (docs/spec/aie4.md §8): hand a context's HSA queue to the
 * application. The queue BO becomes a user BO (map it with xdna_shim_bo_map); the
 * application writes packets, publishes write_index and rings the doorbell with
 * xdna_shim_doorbell, and reads read_index and its command states itself. The context
 * then takes no xdna_shim_exec (EBUSY). EOPNOTSUPP on AIE2. */
struct xdna_shim_umq {
    uint32_t queue_bo;   /* header, 32 packets, 32 x 6 indirect packets */
    uint32_t doorbell;   /* doorbell offset in the ring-buffer BAR */
    uint32_t msix;       /* job-completion vector */
    uint32_t capacity;   /* packets */
    uint64_t queue_addr; /* device address of the queue */
};
int xdna_shim_umq(struct xdna_shim_ctx *ctx, uint32_t hwctx, struct xdna_shim_umq *out);
/* The application's store to a context's doorbell page. */
int xdna_shim_doorbell(struct xdna_shim_ctx *ctx, uint32_t hwctx);
/* AIE4 CERT log (docs/spec/aie4.md §11): bind a uC LOG BO (a DEV BO: AIE4's carveout
 * stand-in) to a context and split it into one slice per micro-controller, laid out in
 * order from offset 0; the firmware writes a record there each time a uC finishes an
 * exec_buf. EINVAL: no slice or more than 6, a uC index of 6 or above or named twice, a
 * slice too small for its header and one record, slices whose sum exceeds the BO, a BO that
 * is not a DEV BO, a log already attached. Detach: EINVAL when none is. AIE2: EOPNOTSUPP. */
struct xdna_shim_uc_log {
    uint32_t uc_index;
    uint32_t size;
};
int xdna_shim_cert_log_attach(struct xdna_shim_ctx *ctx, uint32_t hwctx, uint32_t bo,
                              const struct xdna_shim_uc_log *ucs, uint32_t num_ucs);
int xdna_shim_cert_log_detach(struct xdna_shim_ctx *ctx, uint32_t hwctx);
/* AIE4 function-level reset (docs/spec/aie4.md §8): reset_prepare (jobs in flight end ABORT,
 * mailbox_info.valid cleared, mailbox torn down), the function's reset, reset_done (the
 * handshake and partition again, every context re-created). AIE2: EOPNOTSUPP. */
int xdna_shim_flr(struct xdna_shim_ctx *ctx);

/* The AIE4 driver's sriov_configure on a PF (docs/spec/aie4.md §10), as a write of
 * `num_vfs` to sysfs sriov_numvfs: n > 0 sends CREATE_VFS to the PF's firmware and enables
 * n VFs in the SR-IOV capability (each becomes a function of its own); 0 disables them
 * (their jobs end ABORT) and sends DESTROY_VFS. ERANGE above TotalVFs, EBUSY for n > 0
 * while VFs are enabled, EOPNOTSUPP off an AIE4 PF, EPERM for a client, EINVAL unprobed. */
int xdna_shim_sriov_configure(struct xdna_shim_ctx *ctx, uint32_t num_vfs);

/* The context's hardware-queue handle (docs/spec/jobs.md §3b): its completion timeline (the
 * driver's per-context syncobj; a command's seq is its point). Wait on point `seq` of it
 * as xdna_shim_wait does; EINVAL for a handle no live context has. */
int xdna_shim_syncobj_wait(struct xdna_shim_ctx *ctx, uint32_t syncobj, uint64_t seq,
                           int timeout_ms);
int xdna_shim_cmd_state(struct xdna_shim_ctx *ctx, uint32_t cmd_bo, uint32_t *state);

/* TDR period (default 2000 ms) and runtime autosuspend delay (default 5000 ms, 0: never). */
int xdna_shim_set_tdr_ms(struct xdna_shim_ctx *ctx, int ms);
int xdna_shim_set_autosuspend_ms(struct xdna_shim_ctx *ctx, int ms);

/* The last async error the driver session decoded (count 0: none yet). */
int xdna_shim_last_async_error(struct xdna_shim_ctx *ctx, struct xdna_shim_async_error *err);
/* Copy the context's last health report (kept by TDR), or query GET_APP_HEALTH now when none
 * is kept. Returns the number of bytes copied (>= 0), or -1 (EOPNOTSUPP: firmware has no
 * GET_APP_HEALTH). */
int xdna_shim_app_health(struct xdna_shim_ctx *ctx, uint32_t hwctx, void *buf, size_t len);

/* Power mode (driver session only: EPERM for clients; TURBO with live contexts: EBUSY). */
int xdna_shim_set_power_mode(struct xdna_shim_ctx *ctx, int mode);

/* Firmware log and trace (the driver's DPT; docs/spec/uapi.md §6 "Firmware log and trace"),
 * driver session only (EPERM for clients). which: XDNA_SHIM_DPT_LOG or XDNA_SHIM_DPT_TRACE.
 * set: action 0 stops it; otherwise config (log level 1..4, or trace categories; 0: the
 * driver's default, ERROR or all) starts it (a DMA ring the firmware fills) or changes it.
 * A firmware without the messages leaves it off and still returns 0, as the driver does. */
#define XDNA_SHIM_DPT_LOG 0
#define XDNA_SHIM_DPT_TRACE 1
struct xdna_shim_dpt {
    uint32_t enabled, config, payload_version;
    uint32_t size; /* bytes of the ring buffer, footer page included (0: none) */
    int fd;        /* its memfd (owned by the session; -1: none) */
};
int xdna_shim_dpt_set(struct xdna_shim_ctx *ctx, int which, uint32_t action, uint32_t config);
int xdna_shim_dpt_get(struct xdna_shim_ctx *ctx, int which, struct xdna_shim_dpt *out);

/* How the device addresses user buffers (the driver's iommu_mode): SVA, the default, uses
 * this process's virtual addresses tagged by its PASID; IOVA uses DMA addresses the shim
 * allocates (PASID 0), as with iommu_mode=1. Set before the first BO; driver session only
 * (EPERM for a client), EBUSY once BOs exist. */
#define XDNA_SHIM_IOMMU_SVA 0
#define XDNA_SHIM_IOMMU_IOVA 1
int xdna_shim_set_iommu_mode(struct xdna_shim_ctx *ctx, int mode);
int xdna_shim_get_power(struct xdna_shim_ctx *ctx, struct xdna_shim_power *pw);

/* ---- deterministic mode: pluggable waits ------------------------------------------ */

/* With hooks set, the shim never blocks in poll(): every wait (control-socket replies,
 * register polls, mailbox and job waits, write-log room) calls wait(user, deadline_ns),
 * which must advance the device (and may advance time) and return 0 (< 0: give up, the
 * waiting call fails with EPIPE). Time comes from now_ns(user) (ns, monotonic). The work
 * of the monitor thread (receiving, TDR ticks, async re-posts, autosuspend) runs inline
 * in the waiting call; no monitor thread is started for a context opened or marked while
 * hooks are set. Everything then runs in the calling thread. */
struct xdna_shim_hooks {
    uint64_t (*now_ns)(void *user);
    int (*wait)(void *user, uint64_t deadline_ns);
    void *user;
};

/* Set (hooks != NULL) or clear the calling thread's hooks. They are per thread and copied.
 * ctx NULL: contexts opened afterwards by this thread run without a monitor thread.
 * ctx given: also mark ctx monitor-less (EBUSY if its monitor thread already runs).
 * EINVAL when a hook pointer is NULL. Keep the hooks set while such a context lives. */
int xdna_shim_set_hooks(struct xdna_shim_ctx *ctx, const struct xdna_shim_hooks *hooks);

/* Deterministic mode: run the monitor's periodic duties (TDR tick, runqueue, async re-posts,
 * autosuspend, a client's resume ask) once now, as the monitor thread would while another
 * session's call waits. A no-op for a context with a monitor thread or none running. Never
 * call it from inside one of ctx's own calls (its wait hook): the lock is not recursive. */
int xdna_shim_monitor_step(struct xdna_shim_ctx *ctx);

/* ---- deterministic mode: a snapshot after the probe (snapshot.c) ------------------ */

/* For the shim fuzz target only (docs/spec/fuzzing.md §9): the driver state a probe left in
 * a monitor-less driver context, so that the next example starts from it instead of a fresh
 * device and a new probe. save copies it (EBUSY unless the context is a probed driver
 * session in deterministic mode with no context, BO, heap, firmware log, health buffer or
 * awaited management message). restore frees what the context holds beyond the snapshot
 * (contexts, BOs, heap, firmware-log rings, the health buffer) without a word to the daemon,
 * maps the probe's DMA buffers again where a stop or suspend freed them (the snapshot keeps
 * their memfds) and puts the saved fields back, the counters of its eventfds too (those it
 * shares with the daemon included); the caller restores the device (and its mappings of
 * those buffers) and the daemon's session beside it. ESTALE, with the context unchanged,
 * when the transport is no longer the snapshot's (another socket, BAR or ctrl mapping or
 * vector table) or the socket is dead; ESTALE, with the context fit only for close, when a
 * buffer cannot be mapped again. */
struct xdna_shim_snapshot;
struct xdna_shim_snapshot *xdna_shim_snapshot_save(struct xdna_shim_ctx *ctx);
int xdna_shim_snapshot_restore(struct xdna_shim_ctx *ctx, struct xdna_shim_snapshot *snap);
void xdna_shim_snapshot_free(struct xdna_shim_snapshot *snap);

/* ---- floors for `xdna-emu bench` (bench.c) ----------------------------------------- */

/* n eventfd round trips from C: write 1 to tx_fd, wait (poll, up to timeout_ms) until
 * rx_fd is readable and read it; us[i] is the i-th round trip in microseconds. The peer
 * (another process) answers each read of tx_fd with a write to rx_fd. 0, or -1 with errno
 * (EINVAL: bad argument; ETIME: no answer in time; or the failing call's). */
int xdna_shim_bench_eventfd(int tx_fd, int rx_fd, unsigned n, int timeout_ms, double *us);

/* CDEF-END */

#ifdef __cplusplus
}
#endif

#endif
