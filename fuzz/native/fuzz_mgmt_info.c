/* libFuzzer target: mgmt_mbox_chann_info validation (hw.c fw_alive + mailbox.c create).
 * Input: [layout selector u8][64 info bytes]. Selector bit7 forces a valid magic and protocol
 * so the fuzzer spends its time on the addresses. Invariant: a validated info's registers
 * all convert inside the mailbox BAR and its rings inside SRAM, and the vector exists. */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
    if (len < 1)
        return 0;
    struct xdna_parse_layout lay;
    uint32_t major, min_minor;
    fz_layout(data[0], &lay, &major, &min_minor);
    uint8_t *buf = malloc(len - 1 ? len - 1 : 1); /* exact: reading past 64 bytes is a bug */
    memcpy(buf, data + 1, len - 1);
    size_t n = len - 1;
    if ((data[0] & 0x80) && n >= XDNA_AIE2_MGMT_MBOX_CHANN_INFO_SIZE) {
        uint32_t w[4] = {XDNA_AIE2_MGMT_INFO_MAGIC, fz_u32(buf + 36), major, min_minor + (buf[44] & 3)};
        memcpy(buf + 32, w, sizeof(w));
    }
    struct xdna_parse_mgmt_info mi;
    struct xdna_parse_chan ch;
    int r = xdna_parse_mgmt_info(buf, n, major, min_minor, &lay, &mi, &ch);
    CHECK(r >= 0 && r < XDNA_PARSE_REASON_MAX && r == ch.reason);
    if (n < XDNA_AIE2_MGMT_MBOX_CHANN_INFO_SIZE)
        CHECK(r == XDNA_PARSE_SHORT);
    if (r == XDNA_PARSE_OK) {
        CHECK(mi.magic == XDNA_AIE2_MGMT_INFO_MAGIC && mi.prot_major == major &&
              mi.prot_minor >= min_minor);
        fz_check_chan(&lay, &mi.a, &ch);
    }
    free(buf);
    return 0;
}
