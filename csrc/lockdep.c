/* Lock checker of the shim's debug build (docs/spec/fuzzing.md §10): built with
 * -DXDNA_LOCKDEP, every lock, unlock and condition wait of the shim goes through here.
 * Per thread it keeps the locks held, in order; across threads it keeps every "A was held
 * when B was taken" edge seen. It aborts the process, with a line on stderr, on:
 *   - a lock taken twice by one thread, or released by a thread that does not hold it;
 *   - a lock-order inversion: B taken under A after A was once taken under B;
 *   - a wait on a condition with a lock held other than the condition's own;
 *   - a blocking poll (the event pump sleeping with its lock dropped) with a lock held.
 * Without XDNA_LOCKDEP the wrappers in shim_int.h are the plain pthread calls. */
#include "shim_int.h"

#ifdef XDNA_LOCKDEP
#include <stdio.h>
#include <stdlib.h>

#define LOCKDEP_HELD_MAX 8
#define LOCKDEP_EDGES_MAX 256

static __thread pthread_mutex_t *held[LOCKDEP_HELD_MAX];
static __thread unsigned nheld;

static pthread_mutex_t edges_lock = PTHREAD_MUTEX_INITIALIZER;
static struct { const pthread_mutex_t *before, *after; } edges[LOCKDEP_EDGES_MAX];
static unsigned nedges;

static void lockdep_die(const char *what, const void *m)
{
    fprintf(stderr, "xdna lockdep: %s (lock %p, %u held by this thread)\n", what, m, nheld);
    fflush(stderr);
    abort();
}

static int held_index(const pthread_mutex_t *m)
{
    for (unsigned i = 0; i < nheld; i++)
        if (held[i] == m)
            return (int)i;
    return -1;
}

/* Record "before was held when after was taken"; die if the opposite order was seen. */
static void order(const pthread_mutex_t *before, const pthread_mutex_t *after)
{
    bool known = false;
    pthread_mutex_lock(&edges_lock);
    for (unsigned i = 0; i < nedges; i++) {
        if (edges[i].before == after && edges[i].after == before) {
            pthread_mutex_unlock(&edges_lock);
            lockdep_die("lock-order inversion", after);
        }
        if (edges[i].before == before && edges[i].after == after)
            known = true;
    }
    if (!known && nedges < LOCKDEP_EDGES_MAX) {
        edges[nedges].before = before;
        edges[nedges].after = after;
        nedges++;
    }
    pthread_mutex_unlock(&edges_lock);
}

/* A lock is destroyed: forget its edges, so a lock that later lives at the same address
 * (another session's) starts with none. */
void xdna_lockdep_forget(const pthread_mutex_t *m)
{
    pthread_mutex_lock(&edges_lock);
    unsigned n = 0;
    for (unsigned i = 0; i < nedges; i++)
        if (edges[i].before != m && edges[i].after != m)
            edges[n++] = edges[i];
    nedges = n;
    pthread_mutex_unlock(&edges_lock);
}

static void push(pthread_mutex_t *m)
{
    if (nheld == LOCKDEP_HELD_MAX)
        lockdep_die("too many locks held", m);
    held[nheld++] = m;
}

static void pop(pthread_mutex_t *m)
{
    int i = held_index(m);
    if (i < 0)
        lockdep_die("unlock of a lock this thread does not hold", m);
    for (unsigned j = (unsigned)i; j + 1 < nheld; j++)
        held[j] = held[j + 1];
    nheld--;
}

void xdna_lock(pthread_mutex_t *m)
{
    if (held_index(m) >= 0)
        lockdep_die("lock taken twice by one thread", m);
    for (unsigned i = 0; i < nheld; i++)
        order(held[i], m);
    pthread_mutex_lock(m);
    push(m);
}

void xdna_unlock(pthread_mutex_t *m)
{
    pop(m);
    pthread_mutex_unlock(m);
}

static void before_wait(pthread_mutex_t *m)
{
    if (held_index(m) < 0)
        lockdep_die("condition wait without its lock", m);
    if (nheld > 1)
        lockdep_die("lock held across a wait", held[0] == m ? held[1] : held[0]);
    pop(m);
}

void xdna_cond_wait_raw(pthread_cond_t *c, pthread_mutex_t *m)
{
    before_wait(m);
    pthread_cond_wait(c, m);
    push(m);
}

int xdna_cond_timedwait_raw(pthread_cond_t *c, pthread_mutex_t *m, const struct timespec *ts)
{
    before_wait(m);
    int r = pthread_cond_timedwait(c, m, ts);
    push(m);
    return r;
}

void xdna_lockdep_blocking(void)
{
    if (nheld)
        lockdep_die("lock held across a blocking poll", held[0]);
}
#endif
