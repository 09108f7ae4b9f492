/* libFuzzer target: ERT command BO parsing (hwctx.c parse_cmd / parse_npu / exec's chain).
 * Input: the BO bytes (copied into an exact-size heap buffer). Invariants: the payload, the
 * START_NPU arguments and the chain handles all lie inside the BO (every argument word is
 * read back so ASan sees any overrun); a chain holds 1..64 handles, none 0, too large or
 * itself. */
#include "fuzz_common.h"

#define MAX_HANDLE 4096u
#define SELF 7u

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
    uint8_t *bo = malloc(len ? len : 1);
    memcpy(bo, data, len);
    struct xdna_parse_cmd c;
    if (xdna_parse_cmd_hdr(bo, len, &c) == XDNA_PARSE_OK) {
        CHECK(c.pay >= 1 && (uint64_t)(c.pay + c.npay) * 4 <= len);
    }
    struct xdna_parse_npu n;
    if (xdna_parse_npu(bo, len, &n) == XDNA_PARSE_OK) {
        CHECK(n.pargs >= 2 && n.pargs <= n.args && (uint64_t)(n.args + n.nargs) * 4 <= len);
        volatile uint32_t sum = 0;
        for (uint32_t i = 0; i < n.nargs; i++)
            sum += fz_u32(bo + 4ull * (n.args + i));
        (void)sum;
    }
    struct xdna_parse_chain ch;
    int r = xdna_parse_chain(bo, len, SELF, MAX_HANDLE, &ch);
    if (r == XDNA_PARSE_CHAIN_ENTRY) { /* n = index of the bad entry + 1, the earlier ones fine */
        CHECK(ch.n >= 1 && ch.n <= XDNA_PARSE_CHAIN_MAX);
        uint64_t bad = ch.handle[ch.n - 1];
        CHECK(bad == 0 || bad > MAX_HANDLE || bad == SELF);
        for (uint32_t i = 0; i + 1 < ch.n; i++)
            CHECK(ch.handle[i] >= 1 && ch.handle[i] <= MAX_HANDLE && ch.handle[i] != SELF);
    }
    if (r == XDNA_PARSE_OK) {
        CHECK(ch.n >= 1 && ch.n <= XDNA_PARSE_CHAIN_MAX);
        CHECK((uint64_t)(1 + 6 + 2 * ch.n) * 4 <= len);
        for (uint32_t i = 0; i < ch.n; i++)
            CHECK(ch.handle[i] >= 1 && ch.handle[i] <= MAX_HANDLE && ch.handle[i] != SELF);
    }
    free(bo);
    return 0;
}
