/* The device-wide tables the kernel keeps across processes (every client's contexts and BO
 * usage), kept in a file `xdna-emu exec` creates per device and every process maps
 * (docs/spec/uapi.md §6, GET_ARRAY). Each DRM file publishes its own rows after each call
 * that changes them and removes them at release; readers see every process's rows. */
#ifndef XDNA_ACCEL_REGISTRY_H
#define XDNA_ACCEL_REGISTRY_H

#include <stdint.h>

#define XDNA_REG_MAX_CTX 256
#define XDNA_REG_MAX_FILES 256

struct xdna_reg_ctx {
    uint32_t file;        /* the publishing file's id, 0: free row */
    uint32_t hwctx_id;    /* the firmware's context id */
    int64_t pid;
    uint32_t context_id;  /* the context handle in its file (the user's id) */
    uint32_t start_col, num_col, state, pasid, priority;
    uint32_t gops, fps, dma_bandwidth, latency, frame_exec_time, pad;
    uint64_t submissions, completions, errors, heap_usage;
    char name[16];
};

struct xdna_reg_file {
    uint32_t file;        /* 0: free row */
    uint32_t pad;
    int64_t pid;
    uint64_t total, internal, heap;
};

/* The driver's device-wide settings that live in no firmware (its dev_handle fields). */
struct xdna_reg_dev {
    uint32_t force_preempt; /* SET_STATE SET_FORCE_PREEMPT: 0 or 1 */
    uint32_t auto_coredump; /* SET_STATE SET_AUTO_COREDUMP (AIE4): 0 or 1 */
};

struct xdna_registry {
    uint32_t lock;        /* 0 free, else the holder's pid */
    uint32_t next_file;
    struct xdna_reg_ctx ctx[XDNA_REG_MAX_CTX];
    struct xdna_reg_file files[XDNA_REG_MAX_FILES];
    struct xdna_reg_dev dev;
};

/* The registry of minor N (mapped once per process), or NULL when exec gave none. */
struct xdna_registry *xdna_reg_get(int minor);
void xdna_reg_lock(struct xdna_registry *r);
void xdna_reg_unlock(struct xdna_registry *r);

#endif
