/* The lock checker of the shim's debug build (csrc/lockdep.c), driven by hand:
 *   lockdep_test ok | twice | inversion | across-wait | blocking | foreign-unlock
 * "ok" exits 0; every other case must abort with its line on stderr. */
#include "shim_int.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

static pthread_mutex_t a = PTHREAD_MUTEX_INITIALIZER, b = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t c = PTHREAD_COND_INITIALIZER;

static void *take_b_then_a(void *arg)
{
    (void)arg;
    xdna_lock(&b);
    xdna_lock(&a);
    xdna_unlock(&a);
    xdna_unlock(&b);
    return NULL;
}

int main(int argc, char **argv)
{
    const char *what = argc > 1 ? argv[1] : "ok";
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    if (!strcmp(what, "ok")) { /* a then b twice, a wait with only its own lock, a poll with none */
        for (int i = 0; i < 2; i++) {
            xdna_lock(&a);
            xdna_lock(&b);
            xdna_unlock(&b);
            xdna_unlock(&a);
        }
        xdna_lock(&a);
        xdna_cond_timedwait_raw(&c, &a, &now);
        xdna_unlock(&a);
        xdna_lockdep_blocking();
        puts("ok");
        return 0;
    }
    if (!strcmp(what, "twice")) {
        xdna_lock(&a);
        xdna_lock(&a);
    } else if (!strcmp(what, "inversion")) { /* a then b here, b then a in another thread */
        xdna_lock(&a);
        xdna_lock(&b);
        xdna_unlock(&b);
        xdna_unlock(&a);
        pthread_t t;
        pthread_create(&t, NULL, take_b_then_a, NULL);
        pthread_join(t, NULL);
    } else if (!strcmp(what, "across-wait")) {
        xdna_lock(&b);
        xdna_lock(&a);
        xdna_cond_timedwait_raw(&c, &a, &now);
    } else if (!strcmp(what, "blocking")) {
        xdna_lock(&a);
        xdna_lockdep_blocking();
    } else if (!strcmp(what, "foreign-unlock")) {
        xdna_unlock(&a);
    }
    puts("not caught");
    return 0;
}
