/* libFuzzer target: the i2x receive step (mailbox.c i2x_one), driven as the RX worker drives
 * it: step until the ring is empty or bad.
 * Input: [size selector u8][head u32][tail u32][ring bytes...]
 * Invariants: a message lies inside the ring and never runs past a tail ahead of it; a wrap
 * only happens with the tail at or behind the head; the drain ends within size/16 + 2 steps
 * (a fixed tail can never make the consumer loop). */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
    if (len < 9)
        return 0;
    uint8_t sel = data[0];
    uint32_t size = 64u << (sel & 7); /* 64 .. 8192, as validated rings are */
    uint32_t head = fz_u32(data + 1), tail = fz_u32(data + 5);
    if (!(sel & 0x80)) { /* mostly a head the shim can really hold: aligned, <= size */
        head = (head % (size / 4 + 1)) * 4;
    }
    data += 9;
    len -= 9;
    uint8_t *ring = malloc(size); /* exact size: ASan flags any read past the ring */
    /* the input repeated over the ring; bit6: laid in from the head (messages at the head) */
    uint32_t at = (sel & 0x40) ? head % size : 0;
    if (!len)
        memset(ring, 0, size);
    for (uint32_t done = 0; len && done < size;) {
        uint32_t n = size - done < len ? size - done : (uint32_t)len;
        uint32_t first = size - at < n ? size - at : n;
        memcpy(ring + at, data, first);
        memcpy(ring, data + first, n - first);
        at = (at + n) % size;
        done += n;
    }

    struct xdna_parse_rx rx;
    unsigned steps = 0;
    for (;;) {
        uint32_t h0 = head;
        xdna_parse_i2x_step(ring, size, head, tail, &rx);
        steps++;
        CHECK(steps <= size / 16 + 2);
        if (rx.kind == XDNA_PARSE_RX_EMPTY) {
            CHECK(head == tail || (head == size && tail == 0));
            break;
        }
        if (rx.kind == XDNA_PARSE_RX_BAD) {
            CHECK(rx.reason > XDNA_PARSE_OK && rx.reason < XDNA_PARSE_REASON_MAX);
            break;
        }
        CHECK(tail <= size && (tail & 3) == 0);
        CHECK(rx.off == (h0 == size ? 0 : h0));
        CHECK(rx.off + 4 <= size && (rx.off & 3) == 0);
        if (rx.kind == XDNA_PARSE_RX_WRAP) {
            CHECK(fz_u32(ring + rx.off) == XDNA_AIE2_TOMBSTONE);
            CHECK(tail <= rx.off);
            CHECK(rx.next == 0);
        } else {
            CHECK(rx.kind == XDNA_PARSE_RX_MSG);
            CHECK(rx.total > 0 && (rx.total & 3) == 0);
            CHECK((uint64_t)rx.off + XDNA_AIE2_MSG_HEADER_SIZE + rx.total <= size);
            CHECK(rx.next == rx.off + XDNA_AIE2_MSG_HEADER_SIZE + rx.total);
            if (tail > rx.off)
                CHECK(rx.next <= tail);
            CHECK(rx.id == fz_u32(ring + rx.off + 8));
            volatile uint8_t sink = ring[rx.next - 1]; /* the last payload byte is readable */
            (void)sink;
        }
        head = rx.next;
    }
    free(ring);
    return 0;
}
