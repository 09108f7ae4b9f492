/* libFuzzer target: CREATE_CONTEXT response validation (hwctx.c fw_start + mailbox.c create).
 * Input: [layout selector u8][76 response bytes]. Selector bit7 forces status 0 and one cq
 * pair. Invariants: only status 0 makes the context live; a validated response's cq_pair
 * addresses convert inside their BARs with power-of-two rings and msix < vectors. */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
    if (len < 1)
        return 0;
    struct xdna_parse_layout lay;
    uint32_t major, min_minor;
    fz_layout(data[0], &lay, &major, &min_minor);
    size_t n = len - 1;
    uint8_t *buf = malloc(n ? n : 1);
    memcpy(buf, data + 1, n);
    if ((data[0] & 0x80) && n >= XDNA_AIE2_MSG_CREATE_CONTEXT_RESP_SIZE) {
        memset(buf, 0, 4);
        buf[10] = 1;
    }
    struct xdna_parse_create_resp cr;
    struct xdna_parse_chan ch;
    int r = xdna_parse_create_resp_full(buf, n, &lay, &cr, &ch);
    CHECK(r >= 0 && r < XDNA_PARSE_REASON_MAX && r == ch.reason);
    if (r == XDNA_PARSE_STATUS_BUSY || r == XDNA_PARSE_STATUS_INVAL || r == XDNA_PARSE_STATUS_FAIL ||
        r == XDNA_PARSE_SHORT)
        CHECK(!cr.fw_live);
    else
        CHECK(cr.fw_live && cr.status == 0);
    if (r == XDNA_PARSE_OK) {
        CHECK(cr.ncq >= 1 && cr.msix < lay.nvec);
        fz_check_chan(&lay, &cr.a, &ch);
    }
    free(buf);
    return 0;
}
