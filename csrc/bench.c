/* The C side of the floors `xdna-emu bench` measures (docs/spec/operator.md §7): the shim
 * kicks the daemon and waits for its interrupt through eventfds, so the floor a job or
 * mailbox figure is judged against is an eventfd round trip from C in this process to the
 * Python daemon process, timed here with no Python in between. */
#include "xdna_shim.h"

#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int xdna_shim_bench_eventfd(int tx_fd, int rx_fd, unsigned n, int timeout_ms, double *us)
{
    if (tx_fd < 0 || rx_fd < 0 || !us || timeout_ms <= 0) {
        errno = EINVAL;
        return -1;
    }
    for (unsigned i = 0; i < n; i++) {
        uint64_t one = 1, got;
        uint64_t t0 = mono_ns();
        if (write(tx_fd, &one, sizeof(one)) != (ssize_t)sizeof(one))
            return -1;
        struct pollfd p = {.fd = rx_fd, .events = POLLIN};
        int r;
        do
            r = poll(&p, 1, timeout_ms);
        while (r < 0 && errno == EINTR);
        if (r < 0)
            return -1;
        if (r == 0) {
            errno = ETIME;
            return -1;
        }
        if (read(rx_fd, &got, sizeof(got)) != (ssize_t)sizeof(got))
            return -1;
        us[i] = (double)(mono_ns() - t0) / 1e3;
    }
    return 0;
}
