/* libFuzzer target: response id checks (mailbox.c dispatch).
 * Input: pairs of u32 (id, last_id). Invariants: a slot is returned only for a 0x1D-magic id
 * whose low part is that slot and below the slot count; contiguity accepts exactly last + 1
 * or a low part of 0. */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
    for (size_t i = 0; i + 8 <= len; i += 8) {
        uint32_t id = fz_u32(data + i), last = fz_u32(data + i + 4);
        uint32_t nslots = 1u + (last >> 24); /* 1 .. 256 */
        int s = xdna_parse_resp_slot(id, nslots);
        if (s >= 0) {
            CHECK((id & 0xFF000000u) == 0x1D000000u);
            CHECK((uint32_t)s == (id & 0xFFFFFFu) && (uint32_t)s < nslots);
        } else {
            CHECK(s == -XDNA_PARSE_BAD_MAGIC || s == -XDNA_PARSE_BAD_SLOT);
            CHECK((s == -XDNA_PARSE_BAD_MAGIC) == ((id & 0xFF000000u) != 0x1D000000u));
        }
        int c = xdna_parse_resp_contig(id, last);
        int want = (id & 0xFFFFFFu) == 0 || (id & 0xFFFFFFu) == ((last & 0xFFFFFFu) + 1);
        CHECK((c == XDNA_PARSE_OK) == want);
    }
    return 0;
}
