/* libFuzzer target: x2i send-space arithmetic (mailbox.c x2i_send) against a consumer model.
 * Input: [size selector u8][start u32][ops...]; op byte: bit0 = send (length from the other
 * bits) or consume (that many messages).
 * Invariants: a write never leaves the ring; outside a wrap it ends at or before size - 4
 * (room for the TOMBSTONE); a wrap writes below the head; no send overwrites a message the
 * consumer has not read (every message comes back intact and in order); a single call with
 * raw operands never reports a write outside the ring. */
#include "fuzz_common.h"

static void raw_call(const uint8_t *d)
{
    struct xdna_parse_tx tx;
    uint32_t size = fz_u32(d), head = fz_u32(d + 4), tail = fz_u32(d + 8), len = fz_u32(d + 12);
    xdna_parse_x2i_space(head, tail, size, len, &tx);
    if (tx.kind == XDNA_PARSE_TX_WRITE || tx.kind == XDNA_PARSE_TX_WRAP) {
        CHECK((uint64_t)tx.pos + len <= size);
        CHECK(tx.new_tail == tx.pos + len);
        if (tx.kind == XDNA_PARSE_TX_WRITE)
            CHECK(tx.pos == tail && tx.pos + len <= size - 4);
        else
            CHECK(tx.pos == 0 && len < head && (!tx.tomb_ok || tx.tomb + 4 <= size));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
    if (len >= 16 && data[0] == 0xFF) { /* raw operands mode */
        raw_call(data + 1 < data + len - 16 ? data + 1 : data);
        return 0;
    }
    if (len < 5)
        return 0;
    uint32_t size = 64u << (data[0] & 7);
    uint32_t start = (fz_u32(data + 1) % (size / 4 + 1)) * 4; /* tail == head == start */
    uint32_t head = start, tail = start;
    uint8_t *ring = calloc(1, size);
    uint32_t next_seq = 0, expect_seq = 0;
    for (size_t i = 5; i < len; i++) {
        uint8_t op = data[i];
        if (op & 1) { /* send a message of 16 + 4k bytes */
            uint32_t mlen = 16 + 4 * ((op >> 1) % (size / 4));
            struct xdna_parse_tx tx;
            xdna_parse_x2i_space(head, tail, size, mlen, &tx);
            if (mlen > size - 4) {
                CHECK(tx.kind == XDNA_PARSE_TX_BAD && tx.reason == XDNA_PARSE_BAD_LEN);
                continue;
            }
            CHECK(tx.kind != XDNA_PARSE_TX_BAD);
            if (tx.kind == XDNA_PARSE_TX_NOSPC)
                continue;
            CHECK((uint64_t)tx.pos + mlen <= size);
            if (tx.kind == XDNA_PARSE_TX_WRITE)
                CHECK(tx.pos + mlen <= size - 4);
            if (tx.kind == XDNA_PARSE_TX_WRAP) {
                CHECK(tx.pos == 0 && mlen < head);
                if (tx.tomb_ok) {
                    uint32_t t = XDNA_AIE2_TOMBSTONE;
                    memcpy(ring + tx.tomb, &t, 4);
                }
            }
            uint32_t hdr[4] = {mlen - 16, mlen - 16, XDNA_AIE2_MSG_ID_MAGIC | (next_seq & 0xFF),
                               next_seq};
            memcpy(ring + tx.pos, hdr, 16);
            memset(ring + tx.pos + 16, 0xA5, mlen - 16);
            next_seq++;
            tail = tx.new_tail;
        } else { /* the firmware consumes up to (op >> 1) & 7 messages */
            for (unsigned k = 0; k < ((op >> 1) & 7u); k++) {
                if (head == tail)
                    break;
                if (head == size) {
                    head = 0;
                    if (head == tail)
                        break;
                }
                uint32_t w = fz_u32(ring + head);
                if (w == XDNA_AIE2_TOMBSTONE) {
                    head = 0;
                    continue;
                }
                CHECK(fz_u32(ring + head + 12) == expect_seq); /* not overwritten */
                CHECK(head + 16 + w <= size);
                head += 16 + w;
                expect_seq++;
            }
        }
    }
    CHECK(expect_seq <= next_seq);
    free(ring);
    return 0;
}
