/* Shared helpers of the libFuzzer harnesses: chip layouts and a check macro that aborts (so
 * libFuzzer, ClusterFuzzLite and OSS-Fuzz all record a crash) with a readable message. */
#ifndef XDNA_FUZZ_COMMON_H
#define XDNA_FUZZ_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "parse.h"

#define CHECK(cond)                                                                           \
    do {                                                                                      \
        if (!(cond)) {                                                                        \
            fprintf(stderr, "invariant failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__);    \
            abort();                                                                          \
        }                                                                                     \
    } while (0)

static inline uint32_t fz_u32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* Layout selector byte: bit0 chip (npu1 / npu4 apertures, from the chip TOML files), bit1
 * maps the SRAM and mailbox BARs only half (the mapped-size check must catch it). */
static inline void fz_layout(uint8_t sel, struct xdna_parse_layout *lay, uint32_t *major,
                             uint32_t *min_minor)
{
    memset(lay, 0, sizeof(*lay));
    if (sel & 1) { /* npu4 */
        const struct xdna_parse_aperture ap[] = {{0, 0x3000000, 0x80000}, {2, 0x3600000, 0x40000},
                                              {4, 0x3810000, 0x1000}, {5, 0x3b10000, 0x1000}};
        memcpy(lay->ap, ap, sizeof(ap));
        lay->nap = 4;
        lay->mbox_bar = 0;
        lay->nvec = 17;
        *major = 6;
        *min_minor = 12;
    } else { /* npu1 */
        const struct xdna_parse_aperture ap[] = {{0, 0x3000000, 0x20000}, {2, 0x3080000, 0x40000},
                                              {4, 0x30c0000, 0x4000}};
        memcpy(lay->ap, ap, sizeof(ap));
        lay->nap = 3;
        lay->mbox_bar = 4;
        lay->nvec = 7;
        *major = 5;
        *min_minor = 7;
    }
    lay->sram_bar = 2;
    for (unsigned i = 0; i < lay->nap; i++)
        lay->bar_size[lay->ap[i].bar] = lay->ap[i].size;
    if (sel & 2) {
        lay->bar_size[lay->sram_bar] /= 2;
        lay->bar_size[lay->mbox_bar] /= 2;
    }
}

/* A location the validator returned must be inside a mapped BAR, and converting it back must
 * give the device address it came from (through an aperture of that BAR). */
static inline void fz_check_loc(const struct xdna_parse_layout *lay, struct xdna_parse_loc l,
                                uint32_t addr, uint32_t size)
{
    CHECK(l.bar < XDNA_PARSE_MAX_BARS);
    CHECK(lay->bar_size[l.bar] >= size && l.off <= lay->bar_size[l.bar] - size);
    int found = 0;
    for (unsigned i = 0; i < lay->nap; i++)
        if (lay->ap[i].bar == (int)l.bar && lay->ap[i].base + l.off == addr &&
            (uint64_t)l.off + size <= lay->ap[i].size)
            found = 1;
    CHECK(found);
}

/* Every field of a channel that validated converts inside the right BAR. */
static inline void fz_check_chan(const struct xdna_parse_layout *lay,
                                 const struct xdna_parse_chan_addrs *a, const struct xdna_parse_chan *ch)
{
    const uint32_t regs[5] = {a->x2i_tail, a->x2i_head, a->i2x_tail, a->i2x_head,
                              a->i2x_head + 4};
    for (int i = 0; i < 5; i++) {
        CHECK((regs[i] & 3) == 0);
        CHECK((int)ch->reg[i].bar == lay->mbox_bar);
        fz_check_loc(lay, ch->reg[i], regs[i], 4);
    }
    const uint32_t bufs[2] = {a->x2i_buf, a->i2x_buf}, sz[2] = {a->x2i_buf_sz, a->i2x_buf_sz};
    for (int i = 0; i < 2; i++) {
        CHECK(sz[i] >= 64 && (sz[i] & (sz[i] - 1)) == 0 && ch->ring_size[i] == sz[i]);
        CHECK((bufs[i] & 3) == 0);
        CHECK((int)ch->ring[i].bar == lay->sram_bar);
        fz_check_loc(lay, ch->ring[i], bufs[i], sz[i]);
    }
    CHECK(a->msi_id < lay->nvec && ch->msix == a->msi_id);
}

#endif
