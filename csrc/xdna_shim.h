/* xdna_shim: the amdxdna kernel driver, played in userspace against an xdna-emu daemon.
 *
 * The shim attaches to one emulated NPU over the daemon's control socket
 * (docs/spec/protocol.md), maps its BARs, and then probes it the way the amdxdna driver
 * does: id-table match, SMU power-up, PSP firmware load, FW-alive handshake, management
 * mailbox channel, the firmware init message sequence, and teardown.
 *
 * Conventions (libvfio-user style):
 *  - one opaque context per attached device; calls on one context must not run
 *    concurrently (no locking inside);
 *  - every int-returning call returns 0 on success or -1 with errno set;
 *    xdna_shim_last_error() then holds one human-readable line about the failure;
 *  - errno values: ENOENT/ECONNREFUSED (no daemon), EPROTO (the daemon broke the
 *    protocol), ENODEV (not an NPU we know / management channel gone), EOPNOTSUPP (a chip
 *    we only know by id, or firmware too old), EINVAL (bad argument, or the device returned
 *    an out-of-range value), EIO (firmware returned an error status), ETIME (the device did
 *    not answer before a deadline), EPIPE (daemon gone or a mailbox channel in bad state),
 *    EBADF (context closed), EBUSY/EALREADY (call in the wrong state).
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
    XDNA_SHIM_STATE_FAILED = 4     /* a probe step failed; probe again or close */
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

/* CDEF-END */

#ifdef __cplusplus
}
#endif

#endif
