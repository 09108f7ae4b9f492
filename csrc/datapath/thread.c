/* The doorbell thread of the daemon's C job path (docs/spec/jobs.md §7 "The doorbell
 * thread"), the way vhost-net's kernel thread serves a virtio ring kicked through an
 * ioeventfd: it sleeps on the sessions' doorbell eventfds (docs/spec/protocol.md
 * "Doorbells"), and on a ring drains that session's write log with xdp_drain while the
 * entries are writes of channels Python armed for it, raises their vectors and notifies.
 * At the first entry it cannot take it stores the tail up to there and hands the log to
 * Python by writing the session's kick eventfd.
 *
 * One device lock serialises it with the Python daemon, which holds the lock for each of
 * its steps, syncs the channels back at the start and re-arms them at the end: the thread
 * only ever works on state Python armed. */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "datapath.h"
#include "generated/xdna_proto.h"

#define MAX_SESS 256
#define CTL_KEY UINT64_MAX

struct sess {
    uint8_t *ctrl;        /* NULL: free */
    int bell_fd, kick_fd, notify_fd;
    uint32_t gen;         /* bumped per use of the slot: a stale epoll event is ignored */
    uint64_t polled_ns;   /* when its polling word was last seen nonzero, 0: not recently */
    uint64_t owed_ns;     /* since when a deferred notify is owed to it, 0: none */
    uint64_t handed;      /* 1 + the tail it was handed to Python at, 0: not handed back */
};

struct xdp_dev {
    pthread_mutex_t lock;
    pthread_t thread;
    int started, stop;
    int epfd, ctl_fd;
    struct xdp_chan *chans;
    uint32_t nchans;
    struct xdp_tstats *stats;
    /* spin-then-block (docs/spec/protocol.md "Spin, then block"), the daemon's constants */
    uint64_t spin_ns, recent_ns, defer_ns;
    int spinning;         /* in spin(): logs keep draining set, polling sessions' notifies wait */
    uint32_t want;        /* Python threads waiting for the lock: the spin lets them in first */
    struct sess sess[MAX_SESS];
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint32_t *word(uint8_t *ctrl, uint32_t off) { return (uint32_t *)(ctrl + off); }
static uint64_t *dword(uint8_t *ctrl, uint32_t off) { return (uint64_t *)(ctrl + off); }

static void bump(int fd)
{
    uint64_t one = 1;
    ssize_t r = write(fd, &one, sizeof(one));
    (void)r; /* a full counter (EAGAIN) is still a pending wake-up */
}

static void consume(int fd)
{
    uint64_t v;
    ssize_t r = read(fd, &v, sizeof(v)); /* non-blocking: EAGAIN when nobody rang */
    (void)r;
}

/* Raise the vectors of the channels that replied since the last batch, once each, in the
 * order of their first replies (as the Python path does, docs/spec/device.md §3); *woken
 * gets the owner slots of the vectors delivered. Returns how many channels replied. */
static unsigned raise_batch(struct xdp_dev *d, uint8_t *woken)
{
    unsigned n = 0;
    for (;;) {
        struct xdp_chan *next = NULL;
        for (uint32_t i = 0; i < d->nchans; i++) {
            struct xdp_chan *c = &d->chans[i];
            if (c->irqs && (!next || c->first < next->first))
                next = c;
        }
        if (!next)
            return n;
        uint64_t one = 1;
        if (next->irq_fd < 0 || __atomic_load_n(next->vec_ctrl, __ATOMIC_ACQUIRE) & next->mask_bit) {
            /* MsixController.raise_vector: pending until deliverable */
            __atomic_fetch_or(next->pba, (uint8_t)next->pba_bit, __ATOMIC_RELEASE);
            next->t_pended++;
        } else if (write(next->irq_fd, &one, sizeof(one)) == sizeof(one)) {
            next->t_delivered++;
            if (next->owner >= 0 && next->owner < MAX_SESS)
                woken[next->owner] = 1;
        } else {
            next->t_dropped++;
        }
        next->t_irqs += next->irqs;
        next->irqs = 0;
        next->first = 0;
        n++;
    }
}

/* After a batch: each touched session's epoch moves, and it gets a notify wake-up unless
 * one of its own vectors woke it and it has irq_wakes set (docs/spec/protocol.md
 * "Suppressed kicks and notifies"). */
static void notify(struct xdp_dev *d, int slot, const uint8_t *woken)
{
    for (int i = 0; i < MAX_SESS; i++) {
        struct sess *s = &d->sess[i];
        if (!s->ctrl || (i != slot && !woken[i]))
            continue;
        __atomic_fetch_add(dword(s->ctrl, XDNA_PROTO_CTRL_OFF_EPOCH), 1, __ATOMIC_RELEASE);
        uint32_t wakes = __atomic_load_n(word(s->ctrl, XDNA_PROTO_CTRL_OFF_IRQ_WAKES),
                                         __ATOMIC_ACQUIRE);
        if (wakes && woken[i])
            continue;
        /* a polling session with irq_wakes set: its spinning thread sees the answer on the
         * ring; the wake-up is owed until the spin ends or it is defer_ns old */
        if (wakes && d->spin_ns && s->polled_ns) {
            if (!s->owed_ns)
                s->owed_ns = now_ns();
            continue;
        }
        bump(s->notify_fd);
        d->stats->notifies++;
    }
}

/* Pay the deferred notifies older than age_ns (0: all). */
static void pay(struct xdp_dev *d, uint64_t age_ns)
{
    uint64_t now = age_ns ? now_ns() : 0;
    for (int i = 0; i < MAX_SESS; i++) {
        struct sess *s = &d->sess[i];
        if (!s->ctrl || !s->owed_ns || (age_ns && now - s->owed_ns < age_ns))
            continue;
        s->owed_ns = 0;
        bump(s->notify_fd);
        d->stats->notifies++;
    }
}

/* Does any session poll now, or did within recent_ns? (notes when each was seen) */
static int polling(struct xdp_dev *d)
{
    uint64_t now = now_ns();
    int any = 0;
    for (int i = 0; i < MAX_SESS; i++) {
        struct sess *s = &d->sess[i];
        if (!s->ctrl)
            continue;
        if (__atomic_load_n(word(s->ctrl, XDNA_PROTO_CTRL_OFF_POLLING), __ATOMIC_ACQUIRE))
            s->polled_ns = now;
        else if (s->polled_ns && now - s->polled_ns > d->recent_ns)
            s->polled_ns = 0;
        any |= s->polled_ns != 0;
    }
    return any;
}

/* Serve one session's doorbell: the daemon's drain (Connection.drain_write_log) for the
 * entries the thread may take. */
static void serve(struct xdp_dev *d, int slot)
{
    struct sess *s = &d->sess[slot];
    uint8_t *ctrl = s->ctrl;
    uint64_t *headp = dword(ctrl, XDNA_PROTO_CTRL_OFF_HEAD);
    uint64_t *tailp = dword(ctrl, XDNA_PROTO_CTRL_OFF_TAIL);
    uint32_t *draining = word(ctrl, XDNA_PROTO_CTRL_OFF_DRAINING);
    const uint8_t *entries = ctrl + XDNA_PROTO_CTRL_OFF_ENTRY0;
    uint32_t seq = 0, why, got[3];
    int32_t chan;
    int settled = 0, applied = 0, handback = 0, flag = 0;
#if defined(__x86_64__)
    flag = 1; /* the eventfd read is the full barrier only here (protocol.md) */
    __atomic_store_n(draining, 1, __ATOMIC_SEQ_CST);
#endif
    d->stats->batches++;
    int round;
    for (round = 0; round < XDNA_PROTO_DRAIN_ROUNDS; round++) {
        uint64_t head = __atomic_load_n(headp, __ATOMIC_ACQUIRE);
        uint64_t tail = *tailp;
        if (head == tail) {
            if (settled)
                break;
            if (flag) {
                __atomic_store_n(draining, 0, __ATOMIC_SEQ_CST);
                flag = 0;
            }
            consume(s->bell_fd); /* also the barrier before the next head load */
            settled = 1;
            continue;
        }
        if (head < tail || head - tail > XDNA_PROTO_LOG_ENTRIES) {
            handback = 1; /* Python finds the corrupt log and drops the session */
            break;
        }
        uint64_t to = xdp_drain(d->chans, d->nchans, entries, XDNA_PROTO_LOG_ENTRIES, tail,
                                head, &why, &chan, got, &seq);
        applied |= to != tail;
        __atomic_store_n(tailp, to, __ATOMIC_RELEASE);
        if (to < head) {
            handback = 1; /* Python applies the entry there and the rest, in order */
            break;
        }
    }
    uint8_t woken[MAX_SESS] = {0};
    raise_batch(d, woken);
    if (handback) {
        /* draining stays as it is: Python's drain, kicked now, clears it and looks again;
         * the doorbell's count goes, or it would wake this thread until Python ran */
        consume(s->bell_fd);
        bump(s->kick_fd);
        d->stats->handbacks++;
        s->handed = 1 + *tailp;
    } else if (round == XDNA_PROTO_DRAIN_ROUNDS) { /* the others' turn: ring ourselves */
        if (flag)
            __atomic_store_n(draining, 0, __ATOMIC_SEQ_CST);
        bump(s->bell_fd);
    }
    if (applied)
        notify(d, slot, woken);
#if defined(__x86_64__)
    if (d->spinning && !handback) /* the spin watches this log: no kicks meanwhile */
        __atomic_store_n(draining, 1, __ATOMIC_SEQ_CST);
#endif
}

/* Spin, then block: while a session polls, watch every log's head for spin_ns after the
 * last one that moved, with sched_yield between looks (a client may be waiting for this
 * CPU), serving each that moves; the logs' draining flags stay set meanwhile, so their
 * clients need not ring. The lock is taken per look: Python's steps go on in between. At
 * the end, as at the end of a drain: clear the flags, consume the doorbells (the barrier),
 * look once more; the deferred notifies are paid before the thread blocks. */
static void spin(struct xdp_dev *d)
{
    uint64_t end = now_ns() + d->spin_ns;
    pthread_mutex_lock(&d->lock);
    d->spinning = 1;
    for (;;) {
        int moved = 0;
        if (d->stop || !polling(d))
            break;
        for (int i = 0; i < MAX_SESS; i++) {
            struct sess *s = &d->sess[i];
            if (!s->ctrl)
                continue;
#if defined(__x86_64__)
            __atomic_store_n(word(s->ctrl, XDNA_PROTO_CTRL_OFF_DRAINING), 1, __ATOMIC_SEQ_CST);
#endif
            uint64_t tail = *dword(s->ctrl, XDNA_PROTO_CTRL_OFF_TAIL);
            if (s->handed == 1 + tail)
                continue; /* handed to Python at this tail: its drain is on the way */
            if (__atomic_load_n(dword(s->ctrl, XDNA_PROTO_CTRL_OFF_HEAD), __ATOMIC_ACQUIRE) !=
                tail) {
                serve(d, i);
                moved = 1;
            }
        }
        pay(d, d->defer_ns);
        uint64_t now = now_ns();
        if (moved)
            end = now + d->spin_ns;
        else if (now >= end)
            break;
        pthread_mutex_unlock(&d->lock);
        sched_yield();
        while (__atomic_load_n(&d->want, __ATOMIC_ACQUIRE)) /* a Python step goes first */
            sched_yield();
        pthread_mutex_lock(&d->lock);
    }
    d->spinning = 0;
    for (int i = 0; i < MAX_SESS && !d->stop; i++) {
        struct sess *s = &d->sess[i];
        if (!s->ctrl)
            continue;
#if defined(__x86_64__)
        uint32_t *flag = word(s->ctrl, XDNA_PROTO_CTRL_OFF_DRAINING);
        if (__atomic_load_n(flag, __ATOMIC_RELAXED)) {
            __atomic_store_n(flag, 0, __ATOMIC_SEQ_CST);
            consume(s->bell_fd);
        }
#endif
        uint64_t tail = *dword(s->ctrl, XDNA_PROTO_CTRL_OFF_TAIL);
        if (s->handed != 1 + tail &&
            __atomic_load_n(dword(s->ctrl, XDNA_PROTO_CTRL_OFF_HEAD), __ATOMIC_ACQUIRE) != tail)
            serve(d, i);
    }
    pay(d, 0);
    pthread_mutex_unlock(&d->lock);
}

static void *thread_main(void *arg)
{
    struct xdp_dev *d = arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL); /* signals are the Python thread's */
    struct epoll_event ev[16];
    for (;;) {
        int n = epoll_wait(d->epfd, ev, 16, -1);
        if (n < 0 && errno != EINTR)
            break;
        pthread_mutex_lock(&d->lock);
        if (d->stop) {
            pthread_mutex_unlock(&d->lock);
            break;
        }
        int spin_now = d->spin_ns && polling(d); /* before serving: notifies are deferred */
        for (int i = 0; i < n; i++) {
            uint64_t key = ev[i].data.u64;
            if (key == CTL_KEY) {
                consume(d->ctl_fd);
                continue;
            }
            uint32_t slot = (uint32_t)key, gen = (uint32_t)(key >> 32);
            if (slot < MAX_SESS && d->sess[slot].ctrl && d->sess[slot].gen == gen)
                serve(d, (int)slot);
        }
        pthread_mutex_unlock(&d->lock);
        if (spin_now)
            spin(d);
    }
    return NULL;
}

struct xdp_dev *xdp_dev_new(struct xdp_chan *chans, uint32_t nchans, struct xdp_tstats *stats)
{
    struct xdp_dev *d = calloc(1, sizeof(*d));
    if (!d)
        return NULL;
    d->chans = chans;
    d->nchans = nchans;
    d->stats = stats;
    d->ctl_fd = -1;
    if (pthread_mutex_init(&d->lock, NULL))
        goto free_dev;
    d->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (d->epfd < 0)
        goto destroy_lock;
    d->ctl_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (d->ctl_fd < 0)
        goto close_ep;
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = CTL_KEY};
    if (epoll_ctl(d->epfd, EPOLL_CTL_ADD, d->ctl_fd, &ev))
        goto close_ctl;
    return d;
close_ctl:
    close(d->ctl_fd);
close_ep:
    close(d->epfd);
destroy_lock:
    pthread_mutex_destroy(&d->lock);
free_dev:
    free(d);
    return NULL;
}

int xdp_dev_start(struct xdp_dev *d, uint64_t spin_ns, uint64_t recent_ns, uint64_t defer_ns)
{
    if (d->started)
        return -EBUSY;
    d->spin_ns = spin_ns;
    d->recent_ns = recent_ns;
    d->defer_ns = defer_ns;
    int err = pthread_create(&d->thread, NULL, thread_main, d);
    if (err)
        return -err;
    d->started = 1;
    return 0;
}

void xdp_dev_free(struct xdp_dev *d)
{
    if (!d)
        return;
    if (d->started) {
        pthread_mutex_lock(&d->lock);
        d->stop = 1;
        pthread_mutex_unlock(&d->lock);
        bump(d->ctl_fd);
        pthread_join(d->thread, NULL);
    }
    close(d->ctl_fd);
    close(d->epfd);
    pthread_mutex_destroy(&d->lock);
    free(d);
}

void xdp_lock(struct xdp_dev *d)
{
    __atomic_add_fetch(&d->want, 1, __ATOMIC_ACQ_REL);
    pthread_mutex_lock(&d->lock);
    __atomic_sub_fetch(&d->want, 1, __ATOMIC_ACQ_REL);
}
void xdp_unlock(struct xdp_dev *d) { pthread_mutex_unlock(&d->lock); }

int xdp_sess_add(struct xdp_dev *d, uint8_t *ctrl, int bell_fd, int kick_fd, int notify_fd)
{
    for (int i = 0; i < MAX_SESS; i++) {
        struct sess *s = &d->sess[i];
        if (s->ctrl)
            continue;
        s->gen++;
        struct epoll_event ev = {.events = EPOLLIN,
                                 .data.u64 = (uint64_t)s->gen << 32 | (uint32_t)i};
        if (epoll_ctl(d->epfd, EPOLL_CTL_ADD, bell_fd, &ev))
            return -errno;
        s->ctrl = ctrl;
        s->bell_fd = bell_fd;
        s->kick_fd = kick_fd;
        s->notify_fd = notify_fd;
        s->polled_ns = s->owed_ns = s->handed = 0;
        return i;
    }
    return -ENOSPC;
}

void xdp_sess_remove(struct xdp_dev *d, int slot)
{
    if (slot < 0 || slot >= MAX_SESS || !d->sess[slot].ctrl)
        return;
    struct sess *s = &d->sess[slot];
    epoll_ctl(d->epfd, EPOLL_CTL_DEL, s->bell_fd, NULL);
    s->ctrl = NULL;
    s->bell_fd = s->kick_fd = s->notify_fd = -1;
}
