/* The cross-process tables of one accel device: a shared file mapped by every process
 * (docs/spec/uapi.md §6). The lock is a word holding the holder's pid, so a holder that
 * died is detected and its lock taken over; critical sections only copy rows. */
#include "registry.h"
#include "accel.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define ENV_STATE_FMT "XDNA_EMU_ACCEL%d_STATE"

static pthread_mutex_t map_lock = PTHREAD_MUTEX_INITIALIZER;
static struct xdna_registry *maps[XDNA_ACCEL_MAX_MINORS];

struct xdna_registry *xdna_reg_get(int minor)
{
    if (minor < 0 || minor >= XDNA_ACCEL_MAX_MINORS)
        return NULL;
    pthread_mutex_lock(&map_lock);
    struct xdna_registry *r = maps[minor];
    if (!r) {
        char name[40];
        snprintf(name, sizeof(name), ENV_STATE_FMT, minor);
        const char *path = getenv(name);
        int fd = path ? open(path, O_RDWR | O_CLOEXEC) : -1;
        struct stat st;
        if (fd >= 0 && fstat(fd, &st) == 0 &&
            (st.st_size >= (off_t)sizeof(*r) || ftruncate(fd, sizeof(*r)) == 0)) {
            void *p = mmap(NULL, sizeof(*r), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
            if (p != MAP_FAILED)
                r = maps[minor] = p;
        }
        if (fd >= 0)
            close(fd);
    }
    pthread_mutex_unlock(&map_lock);
    return r;
}

void xdna_reg_lock(struct xdna_registry *r)
{
    uint32_t me = (uint32_t)getpid();
    for (;;) {
        uint32_t free_word = 0;
        if (__atomic_compare_exchange_n(&r->lock, &free_word, me, false, __ATOMIC_ACQUIRE,
                                        __ATOMIC_RELAXED))
            return;
        /* a holder that died without unlocking: take its lock over */
        if (free_word != me && kill((pid_t)free_word, 0) < 0 && errno == ESRCH &&
            __atomic_compare_exchange_n(&r->lock, &free_word, me, false, __ATOMIC_ACQUIRE,
                                        __ATOMIC_RELAXED))
            return;
        sched_yield();
    }
}

void xdna_reg_unlock(struct xdna_registry *r)
{
    __atomic_store_n(&r->lock, 0, __ATOMIC_RELEASE);
}
