/* Per-chip descriptor types (the shim's twin of the driver's dev_priv / npuN_regs.c).
 *
 * The tables themselves are generated from the chip TOML files (xdna_emu/chips) by xdna_emu/chips/cgen.py
 * into csrc/generated/; no C file holds a register offset of its own.
 */
#ifndef XDNA_CHIPS_H
#define XDNA_CHIPS_H

#include <stdbool.h>
#include <stdint.h>

#include "generated/xdna_roles_gen.h"

struct xdna_bar_off {
    uint8_t valid;
    uint8_t bar;
    uint32_t off;
};

struct xdna_aperture {
    int bar;
    uint64_t base; /* device address of BAR offset 0 */
    uint64_t size;
};

struct xdna_feature_gate {
    uint8_t present; /* 0: the chip does not offer the feature (driver optional-message table) */
    uint16_t major, minor;
};

struct xdna_dpm_level {
    uint32_t npuclk_mhz, hclk_mhz;
};

struct xdna_rtcfg {
    uint32_t type;
    uint64_t value;
};

enum xdna_dpm_method { XDNA_DPM_LEVEL = 0, XDNA_DPM_CLOCK = 1 };

/* PCI function kind (the driver's device type by id): plain, SR-IOV PF or VF. */
enum xdna_function { XDNA_FUNC_PLAIN = 0, XDNA_FUNC_PF = 1, XDNA_FUNC_VF = 2 };

struct xdna_mbox_block {
    uint8_t present;
    uint8_t bar;
    uint32_t base_off, stride, channels;
    /* field offsets inside one channel's register block */
    uint32_t x2i_tail, x2i_head, i2x_tail, i2x_head, intr;
};

struct xdna_msix_layout {
    int bar;
    uint32_t table_off, pba_off, vectors;
};

struct xdna_chip_desc {
    const char *name, *family, *vbnv, *fw_path;
    uint16_t vendor, device;
    uint8_t revision;
    uint32_t class_code;
    uint8_t supported; /* 0: identity only: probe gives EOPNOTSUPP */
    uint32_t protocol_major, protocol_min_minor;
    struct xdna_feature_gate features[XDNA_FEAT_MAX];
    const struct xdna_aperture *bars;
    unsigned nbars;
    struct xdna_msix_layout msix;
    struct xdna_bar_off roles[XDNA_ROLE_MAX];
    int sram_bar;
    struct xdna_mbox_block mbox;
    const struct xdna_bar_off *traps;
    unsigned ntraps;
    const struct xdna_dpm_level *dpm;
    unsigned ndpm;
    const struct xdna_rtcfg *rt_init;
    unsigned nrt_init;
    const uint32_t *clock_gating;
    unsigned nclock_gating;
    int32_t fine_preempt_type; /* -1: none */
    int32_t frame_boundary_type; /* SET_RUNTIME_CONFIG type of frame-boundary preemption, -1: none */
    uint32_t first_col, hwctx_limit;
    enum xdna_dpm_method dpm_method;
    uint8_t temporal_only;   /* contexts may share columns */
    uint64_t dev_heap_max;   /* a client's DEV heap grows up to this (docs/spec/uapi.md §6) */
    const double *tops;      /* per DPM level (chip formula), NULL without a DPM table */
    struct xdna_bar_off mgmt_info; /* where the firmware publishes mgmt_mbox_chann_info */
    /* AIE4 (docs/spec/aie4.md): NULL cert_path on AIE2 chips */
    const char *cert_path;         /* cert.dev.sbin beside fw_path */
    enum xdna_function function;
    struct xdna_bar_off mbox_info; /* mailbox_info, ring-buffer BAR offset 0 */
    uint32_t part_col_start, part_col_count; /* CREATE_PARTITION columns */
    struct xdna_bar_off doorbells; /* doorbell page of context slot 0 (trapped writes) */
    uint32_t doorbell_stride, ndoorbells;
};

/* The id table lookup, as the OOT driver does it after a class match. NULL if unknown. */
const struct xdna_chip_desc *xdna_chip_lookup(uint16_t device, uint8_t revision);

/* The one device-address -> (bar, offset) conversion (twin of Chip.dev_to_bar).
 * 0 when [addr, addr+size) lies inside one BAR aperture, else -1. */
int xdna_dev_to_bar(const struct xdna_chip_desc *chip, uint64_t addr, uint64_t size,
                    unsigned *bar, uint32_t *off);

/* True when the chip lists the gate and firmware speaking major.minor meets it. */
bool xdna_chip_has_feature(const struct xdna_chip_desc *chip, enum xdna_feature f,
                           uint32_t major, uint32_t minor);

#endif
