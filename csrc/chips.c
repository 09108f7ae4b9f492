/* Chip table lookups: the id-table match and the one device-address conversion. */
#include "shim_int.h"

#include "generated/xdna_chips_gen.h"

const struct xdna_chip_desc *xdna_chip_lookup(uint16_t device, uint8_t revision)
{
    for (size_t i = 0; i < XDNA_CHIP_TABLE_LEN; i++) {
        const struct xdna_chip_desc *c = &xdna_chip_table[i];
        if (c->device == device && c->revision == revision)
            return c;
    }
    return NULL;
}

int xdna_dev_to_bar(const struct xdna_chip_desc *chip, uint64_t addr, uint64_t size,
                    unsigned *bar, uint32_t *off)
{
    for (unsigned i = 0; i < chip->nbars; i++) {
        const struct xdna_aperture *a = &chip->bars[i];
        if (addr >= a->base && size <= a->size && addr - a->base <= a->size - size) {
            *bar = (unsigned)a->bar;
            *off = (uint32_t)(addr - a->base);
            return 0;
        }
    }
    return -1;
}

bool xdna_chip_has_feature(const struct xdna_chip_desc *chip, enum xdna_feature f,
                           uint32_t major, uint32_t minor)
{
    if ((unsigned)f >= XDNA_FEAT_MAX)
        return false;
    const struct xdna_feature_gate *g = &chip->features[f];
    if (!g->present)
        return false;
    return major > g->major || (major == g->major && minor >= g->minor);
}
