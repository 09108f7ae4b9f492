/* Syncobjs across processes (docs/spec/uapi.md §6, "Syncobjs across processes"): run under
 * `xdna-emu exec` by tests/test_uapi_fence.py on each chip.
 *
 * - a forked child imports host syncobjs and signals and waits with the parent;
 * - an unrelated process (this program exec'd again, the fds passed over SCM_RIGHTS)
 *   waits on a host timeline and on the parent's context timeline, and the two run a
 *   fence chain of three jobs: job 1 in the parent, job 2 in the child behind a DEPENDENCY
 *   on job 1's point, job 3 in the parent behind job 2's point, then a SIGNAL of a binary
 *   syncobj the child waits on; out3 = a + 3b proves the order;
 * - an exporter that dies with a job running: its points up to the last submission signal
 *   (with an error), a later one never comes (the wait times out as asked);
 * - bad input: an fd that is not ours, a stale handle, unknown flags, non-zero pads;
 * - sync files: exported from host fences and from a context's jobs (readable only once
 *   the job ended), imported into binary and timeline syncobjs, in a forked process too.
 * Prints "uapi_fence_test: N checks, M failed"; exit status 0 only when none failed.
 *
 * XKNL_* come from xdna_emu/kernels.py on the compiler's command line. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "amdxdna_accel.h"
#include "xdna_shim.h"

#include "uapi_check.h"

#define LONG_NS 20000000000ull /* a wait that only a broken emulator reaches */

/* One DRM file with a mapped heap, the add's instruction BO and a, b (b = 7). */
struct dev {
    int fd;
    uint32_t rows, instr, hang, a, b;
    int32_t *pa, *pb;
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static struct dev dev_open(void)
{
    struct dev d = {0};
    d.fd = open_with_heap(&d.rows);
    const size_t bytes = N * sizeof(int32_t);
    d.a = create_bo(d.fd, AMDXDNA_BO_SHARE, bytes);
    d.b = create_bo(d.fd, AMDXDNA_BO_SHARE, bytes);
    d.pa = map_bo(d.fd, d.a, bytes);
    d.pb = map_bo(d.fd, d.b, bytes);
    for (int k = 0; k < N; k++) {
        d.pa[k] = k;
        d.pb[k] = 7;
    }
    d.instr = instr_bo(d.fd, XKNL_ADD, N);
    d.hang = instr_bo(d.fd, XKNL_HANG, 0);
    return d;
}

/* A context; its timeline syncobj in *sync. */
static uint32_t ctx_create(const struct dev *d, uint32_t *sync)
{
    struct amdxdna_qos_info qos = {.priority = AMDXDNA_QOS_NORMAL_PRIORITY};
    struct amdxdna_drm_create_hwctx c = {.qos_p = PTR(&qos), .num_tiles = d->rows};
    EXPECT_OK(d->fd, DRM_IOCTL_AMDXDNA_CREATE_HWCTX, &c);
    *sync = c.syncobj_handle;
    return c.handle;
}

/* Submit instr(x, y) -> out on ctx; its seq. */
static uint64_t submit(const struct dev *d, uint32_t ctx, uint32_t instr, uint32_t x, uint32_t y, uint32_t out)
{
    uint32_t cmd = create_bo(d->fd, AMDXDNA_BO_CMD, 4096);
    uint32_t *c = map_bo(d->fd, cmd, 4096);
    uint64_t ia = bo_info(d->fd, instr).xdna_addr;
    uint32_t hs[3] = {x, y, out};
    uint32_t w[11] = {1, (uint32_t)ia, (uint32_t)(ia >> 32), sizeof(struct xknl_desc), 0}, nw = 5;
    for (int k = 0; k < 3; k++) {
        uint64_t v = bo_info(d->fd, hs[k]).xdna_addr;
        w[nw++] = (uint32_t)v;
        w[nw++] = (uint32_t)(v >> 32);
    }
    c[0] = XDNA_SHIM_ERT_STATE_NEW | nw << 12 | XDNA_SHIM_ERT_START_NPU << 23;
    memcpy(c + 1, w, nw * 4);
    munmap(c, 4096);
    struct amdxdna_drm_exec_cmd e = {.hwctx = ctx, .type = AMDXDNA_CMD_SUBMIT_EXEC_BUF, .cmd_handles = cmd,
                                     .args = PTR(hs), .cmd_count = 1, .arg_count = 3};
    EXPECT_OK(d->fd, DRM_IOCTL_AMDXDNA_EXEC_CMD, &e);
    return e.seq;
}

/* EXEC_CMD DEPENDENCY (wait) or SIGNAL of one (syncobj, point) on ctx. */
static void fence(const struct dev *d, uint32_t ctx, uint32_t type, uint32_t sync, uint64_t point)
{
    struct amdxdna_drm_exec_cmd e = {.hwctx = ctx, .type = type, .cmd_handles = PTR(&sync), .args = PTR(&point),
                                     .cmd_count = 1, .arg_count = 1};
    EXPECT_OK(d->fd, DRM_IOCTL_AMDXDNA_EXEC_CMD, &e);
}

static uint32_t syncobj(int fd, uint32_t flags)
{
    struct drm_syncobj_create c = {.flags = flags};
    EXPECT_OK(fd, DRM_IOCTL_SYNCOBJ_CREATE, &c);
    return c.handle;
}

static int export_fd(int fd, uint32_t h)
{
    struct drm_syncobj_handle x = {.handle = h};
    EXPECT_OK(fd, DRM_IOCTL_SYNCOBJ_HANDLE_TO_FD, &x);
    return x.fd;
}

static uint32_t import_fd(int fd, int sfd)
{
    struct drm_syncobj_handle x = {.fd = sfd};
    EXPECT_OK(fd, DRM_IOCTL_SYNCOBJ_FD_TO_HANDLE, &x);
    return x.handle;
}

/* TIMELINE_WAIT of one point (0: the binary state through SYNCOBJ_WAIT); the errno, 0. */
static int wait_point(int fd, uint32_t h, uint64_t point, uint32_t flags, uint64_t timeout_ns)
{
    int rc;
    if (point) {
        struct drm_syncobj_timeline_wait w = {.handles = PTR(&h), .points = PTR(&point), .count_handles = 1,
                                              .flags = flags, .timeout_nsec = (int64_t)(now_ns() + timeout_ns)};
        rc = ioctl(fd, DRM_IOCTL_SYNCOBJ_TIMELINE_WAIT, &w);
    } else {
        struct drm_syncobj_wait w = {.handles = PTR(&h), .count_handles = 1, .flags = flags,
                                     .timeout_nsec = (int64_t)(now_ns() + timeout_ns)};
        rc = ioctl(fd, DRM_IOCTL_SYNCOBJ_WAIT, &w);
    }
    return rc == 0 ? 0 : errno;
}

static uint64_t query(int fd, uint32_t h, uint32_t flags)
{
    uint64_t p = ~0ull;
    struct drm_syncobj_timeline_array q = {.handles = PTR(&h), .points = PTR(&p), .count_handles = 1,
                                           .flags = flags};
    EXPECT_OK(fd, DRM_IOCTL_SYNCOBJ_QUERY, &q);
    return p;
}

static void signal_point(int fd, uint32_t h, uint64_t point)
{
    struct drm_syncobj_timeline_array a = {.handles = PTR(&h), .points = PTR(&point), .count_handles = 1};
    EXPECT_OK(fd, DRM_IOCTL_SYNCOBJ_TIMELINE_SIGNAL, &a);
}

/* ---- messages between the two processes: a u64 and up to 4 fds (SCM_RIGHTS) ---- */

static void send_msg(int sock, uint64_t val, const int *fds, unsigned n)
{
    char ctl[CMSG_SPACE(4 * sizeof(int))] = {0};
    struct iovec io = {&val, sizeof(val)};
    struct msghdr m = {.msg_iov = &io, .msg_iovlen = 1};
    if (n) {
        m.msg_control = ctl;
        m.msg_controllen = CMSG_SPACE(n * sizeof(int));
        struct cmsghdr *c = CMSG_FIRSTHDR(&m);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(n * sizeof(int));
        memcpy(CMSG_DATA(c), fds, n * sizeof(int));
    }
    CHECK(sendmsg(sock, &m, 0) == sizeof(val), "sendmsg: %s", strerror(errno));
}

static uint64_t recv_msg(int sock, int *fds, unsigned n)
{
    uint64_t val = ~0ull;
    char ctl[CMSG_SPACE(4 * sizeof(int))] = {0};
    struct iovec io = {&val, sizeof(val)};
    struct msghdr m = {.msg_iov = &io, .msg_iovlen = 1, .msg_control = ctl, .msg_controllen = sizeof(ctl)};
    ssize_t got = recvmsg(sock, &m, MSG_CMSG_CLOEXEC);
    CHECK(got == sizeof(val), "recvmsg: %zd %s", got, strerror(errno));
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    unsigned have = c && c->cmsg_type == SCM_RIGHTS ? (unsigned)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int)) : 0;
    CHECK(have == n, "%u fds received, want %u", have, n);
    if (have == n && n)
        memcpy(fds, CMSG_DATA(c), n * sizeof(int));
    return val;
}

/* ---- a forked child: host syncobjs both ways ---------------------------------------- */

static void test_forked(void)
{
    struct dev d = dev_open();
    uint32_t bin = syncobj(d.fd, 0), tl = syncobj(d.fd, 0);
    int bfd = export_fd(d.fd, bin), tfd = export_fd(d.fd, tl);
    pid_t pid = fork();
    if (pid == 0) {
        checks = failed = 0;
        int cfd = open("/dev/accel/accel0", O_RDWR | O_CLOEXEC);
        uint32_t cb = import_fd(cfd, bfd), ct = import_fd(cfd, tfd);
        CHECK(wait_point(cfd, ct, 2, 0, 0) == EINVAL, "no fence for point 2 yet");
        signal_point(cfd, ct, 2); /* the parent waits for it */
        CHECK(wait_point(cfd, cb, 0, DRM_SYNCOBJ_WAIT_FLAGS_WAIT_FOR_SUBMIT, LONG_NS) == 0,
              "the parent's signal seen in the child");
        CHECK(query(cfd, ct, 0) == 5, "the parent's point 5 seen: %llu", (unsigned long long)query(cfd, ct, 0));
        fflush(stdout);
        _exit(failed ? 1 : 0);
    }
    CHECK(wait_point(d.fd, tl, 2, DRM_SYNCOBJ_WAIT_FLAGS_WAIT_FOR_SUBMIT, LONG_NS) == 0,
          "the child's point 2 seen in the parent");
    signal_point(d.fd, tl, 5);
    struct drm_syncobj_array sa = {.handles = PTR(&bin), .count_handles = 1};
    EXPECT_OK(d.fd, DRM_IOCTL_SYNCOBJ_SIGNAL, &sa);
    int st = -1;
    waitpid(pid, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "forked child: status %#x", st);
    /* the child's file is gone: the syncobjs live on in the parent */
    CHECK(query(d.fd, tl, 0) == 5, "timeline after the child left");
    EXPECT_OK(d.fd, DRM_IOCTL_SYNCOBJ_RESET, &sa);
    CHECK(wait_point(d.fd, bin, 0, 0, 0) == EINVAL, "reset");
    close(bfd);
    close(tfd);
    close(d.fd);
}

/* ---- an unrelated process: the fence chain across two processes --------------------- */

/* The exec'd child (argv: self "child" SOCKFD). Messages, in order: from the parent
 * {host timeline, A's context timeline, done, out1, out2} fds; it waits point 3 of the
 * host timeline, job 1's point of A's timeline, runs job 2 behind it and sends its own
 * timeline; then waits `done` (signalled by A after job 3) and checks out2. */
static int child_main(int sock)
{
    int fds[4];
    uint64_t seq1 = recv_msg(sock, fds, 3);
    struct dev d = dev_open();
    uint32_t tl = import_fd(d.fd, fds[0]), ta = import_fd(d.fd, fds[1]), done = import_fd(d.fd, fds[2]);
    close(fds[0]);
    close(fds[1]);
    close(fds[2]);
    CHECK(wait_point(d.fd, done, 0, 0, 0) == EINVAL, "done has no fence yet");
    send_msg(sock, 0, NULL, 0); /* ready: the parent signals point 3 */
    CHECK(wait_point(d.fd, tl, 3, DRM_SYNCOBJ_WAIT_FLAGS_WAIT_FOR_SUBMIT, LONG_NS) == 0, "host point 3");
    CHECK(query(d.fd, tl, 0) == 3, "host timeline at 3");
    /* job 1 runs in the parent: its point signals here when it ends */
    CHECK(wait_point(d.fd, ta, seq1, DRM_SYNCOBJ_WAIT_FLAGS_WAIT_FOR_SUBMIT, LONG_NS) == 0,
          "A's job %llu seen ended", (unsigned long long)seq1);
    CHECK(query(d.fd, ta, 0) >= seq1, "A's timeline queried from B");
    CHECK(query(d.fd, ta, DRM_SYNCOBJ_QUERY_FLAGS_LAST_SUBMITTED) >= seq1, "A's last submitted");
    struct drm_syncobj_array sa = {.handles = PTR(&ta), .count_handles = 1};
    EXPECT_ERR(d.fd, DRM_IOCTL_SYNCOBJ_SIGNAL, &sa, EINVAL); /* a context's timeline is the device's */
    /* TRANSFER across processes: A's job point into the shared host timeline at 10 */
    struct drm_syncobj_transfer tr = {.src_handle = ta, .dst_handle = tl, .src_point = seq1, .dst_point = 10};
    EXPECT_OK(d.fd, DRM_IOCTL_SYNCOBJ_TRANSFER, &tr);

    /* job 2: out2 = out1 + b, behind job 1 (the BOs are the parent's, over PRIME) */
    uint64_t bufs = recv_msg(sock, fds, 2);
    CHECK(bufs == 2, "buffers message");
    struct drm_prime_handle p1 = {.fd = fds[0]}, p2 = {.fd = fds[1]};
    EXPECT_OK(d.fd, DRM_IOCTL_PRIME_FD_TO_HANDLE, &p1);
    EXPECT_OK(d.fd, DRM_IOCTL_PRIME_FD_TO_HANDLE, &p2);
    uint32_t tb, ctx = ctx_create(&d, &tb);
    int tbfd = export_fd(d.fd, tb);
    fence(&d, ctx, AMDXDNA_CMD_SUBMIT_DEPENDENCY, ta, seq1 + 1); /* job 1' (a second one) too */
    uint64_t seq2 = submit(&d, ctx, d.instr, p1.handle, d.b, p2.handle);
    send_msg(sock, seq2, &tbfd, 1);
    close(tbfd);
    CHECK(wait_point(d.fd, done, 0, DRM_SYNCOBJ_WAIT_FLAGS_WAIT_FOR_SUBMIT, LONG_NS) == 0,
          "A's SIGNAL after job 3 seen in B");
    int32_t *o2 = map_bo(d.fd, p2.handle, N * sizeof(int32_t));
    int wrong = 0;
    for (int k = 0; k < N; k++)
        wrong += o2[k] != k + 14;
    CHECK(wrong == 0, "out2 = a + 2b in B: %d wrong", wrong);
    send_msg(sock, 0, NULL, 0);
    close(d.fd); /* the context goes: A sees its timeline end at seq2 */
    printf("uapi_fence_test child: %d checks, %d failed\n", checks, failed);
    return failed ? 1 : 0;
}

static void test_chain(const char *self)
{
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv) == 0, "socketpair");
    fcntl(sv[0], F_SETFD, FD_CLOEXEC);
    pid_t pid = fork();
    if (pid == 0) {
        char arg[16];
        snprintf(arg, sizeof(arg), "%d", sv[1]);
        execl(self, self, "child", arg, (char *)NULL);
        _exit(127);
    }
    close(sv[1]);
    struct dev d = dev_open();
    const size_t bytes = N * sizeof(int32_t);
    uint32_t o1 = create_bo(d.fd, AMDXDNA_BO_SHARE, bytes), o2 = create_bo(d.fd, AMDXDNA_BO_SHARE, bytes);
    uint32_t o3 = create_bo(d.fd, AMDXDNA_BO_SHARE, bytes);
    int32_t *p3 = map_bo(d.fd, o3, bytes);
    uint32_t ta, ctx = ctx_create(&d, &ta);
    uint32_t tl = syncobj(d.fd, 0), done = syncobj(d.fd, 0);
    /* job 1 first, so its point exists when B waits for it */
    uint64_t seq1 = submit(&d, ctx, d.instr, d.a, d.b, o1);
    int fds[3] = {export_fd(d.fd, tl), export_fd(d.fd, ta), export_fd(d.fd, done)};
    send_msg(sv[0], seq1, fds, 3);
    for (int k = 0; k < 3; k++)
        close(fds[k]);
    recv_msg(sv[0], NULL, 0); /* B imported them */
    signal_point(d.fd, tl, 3);
    /* a second job on A: B's DEPENDENCY names its point (seq1 + 1) */
    uint64_t seq1b = submit(&d, ctx, d.instr, d.a, d.b, o1);
    CHECK(seq1b == seq1 + 1, "seqs %llu %llu", (unsigned long long)seq1, (unsigned long long)seq1b);
    struct drm_prime_handle x1 = {.handle = o1, .flags = DRM_CLOEXEC}, x2 = {.handle = o2, .flags = DRM_CLOEXEC};
    EXPECT_OK(d.fd, DRM_IOCTL_PRIME_HANDLE_TO_FD, &x1);
    EXPECT_OK(d.fd, DRM_IOCTL_PRIME_HANDLE_TO_FD, &x2);
    int bufs[2] = {x1.fd, x2.fd};
    send_msg(sv[0], 2, bufs, 2);
    close(x1.fd);
    close(x2.fd);
    int tbfd = -1;
    uint64_t seq2 = recv_msg(sv[0], &tbfd, 1);
    uint32_t tb = import_fd(d.fd, tbfd);
    close(tbfd);
    CHECK(query(d.fd, tl, 0) == 10, "B's TRANSFER into the host timeline: %llu", (unsigned long long)query(d.fd, tl, 0));
    /* job 3: out3 = out2 + b, behind B's job 2; then SIGNAL `done` when it ends */
    fence(&d, ctx, AMDXDNA_CMD_SUBMIT_DEPENDENCY, tb, seq2);
    uint64_t seq3 = submit(&d, ctx, d.instr, o2, d.b, o3);
    fence(&d, ctx, AMDXDNA_CMD_SUBMIT_SIGNAL, done, 0);
    CHECK(wait_point(d.fd, ta, seq3, 0, LONG_NS) == 0, "job 3 ended");
    int wrong = 0;
    for (int k = 0; k < N; k++)
        wrong += p3[k] != k + 21;
    CHECK(wrong == 0, "fence chain across processes: out3 = a + 3b, %d wrong", wrong);
    recv_msg(sv[0], NULL, 0); /* B checked out2 */
    int st = -1;
    waitpid(pid, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "exec'd child: status %#x", st);
    /* B's context is gone with its file: its timeline stays signalled up to job 2, and a
     * later point never comes */
    CHECK(query(d.fd, tb, 0) == seq2, "B's timeline after B left: %llu", (unsigned long long)query(d.fd, tb, 0));
    CHECK(wait_point(d.fd, tb, seq2, 0, 0) == 0, "B's job 2 point");
    CHECK(wait_point(d.fd, tb, seq2 + 1, DRM_SYNCOBJ_WAIT_FLAGS_WAIT_FOR_SUBMIT, 100000000) == ETIME,
          "a point B never submitted times out");
    struct amdxdna_drm_destroy_hwctx x = {.handle = ctx};
    EXPECT_OK(d.fd, DRM_IOCTL_AMDXDNA_DESTROY_HWCTX, &x);
    close(sv[0]);
    close(d.fd);
}

/* ---- an exporter that dies with a job running ------------------------------------- */

static void test_dead_exporter(void)
{
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0, "socketpair");
    pid_t pid = fork();
    if (pid == 0) {
        struct dev d = dev_open();
        uint32_t t, ctx = ctx_create(&d, &t);
        int tfd = export_fd(d.fd, t);
        uint64_t seq = submit(&d, ctx, d.hang, d.a, d.b, d.a); /* ends only when TDR ends it */
        send_msg(sv[1], seq, &tfd, 1);
        raise(SIGKILL); /* dies with the job running, nothing released */
        _exit(1);
    }
    int tfd = -1;
    struct dev d = dev_open();
    uint64_t seq = recv_msg(sv[0], &tfd, 1);
    int st = -1;
    waitpid(pid, &st, 0);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "exporter killed: %#x", st);
    uint32_t t = import_fd(d.fd, tfd); /* an fd of a process that is gone */
    CHECK(query(d.fd, t, DRM_SYNCOBJ_QUERY_FLAGS_LAST_SUBMITTED) == seq, "last submitted %llu",
          (unsigned long long)query(d.fd, t, DRM_SYNCOBJ_QUERY_FLAGS_LAST_SUBMITTED));
    /* the context went with its process: its fence signalled (with an error) */
    CHECK(wait_point(d.fd, t, seq, 0, LONG_NS) == 0, "the dead exporter's point signals");
    CHECK(query(d.fd, t, 0) == seq, "dead exporter's timeline at %llu", (unsigned long long)query(d.fd, t, 0));
    CHECK(wait_point(d.fd, t, seq + 1, DRM_SYNCOBJ_WAIT_FLAGS_WAIT_FOR_SUBMIT, 100000000) == ETIME,
          "a point it never submitted times out");
    CHECK(wait_point(d.fd, t, seq + 1, 0, 0) == EINVAL, "and has no fence");
    /* the daemon and this client are unaffected: a job runs */
    uint32_t ts, ctx = ctx_create(&d, &ts);
    uint32_t o = create_bo(d.fd, AMDXDNA_BO_SHARE, N * sizeof(int32_t));
    int32_t *po = map_bo(d.fd, o, N * sizeof(int32_t));
    uint64_t s2 = submit(&d, ctx, d.instr, d.a, d.b, o);
    CHECK(wait_point(d.fd, ts, s2, 0, LONG_NS) == 0, "a job after the exporter died");
    CHECK(po[5] == 12, "its sum %d", po[5]);
    close(tfd);
    close(sv[0]);
    close(sv[1]);
    close(d.fd);
}

/* ---- bad input ---------------------------------------------------------------------- */

static void test_bad(void)
{
    int fd = open("/dev/accel/accel0", O_RDWR | O_CLOEXEC);
    uint32_t h = syncobj(fd, DRM_SYNCOBJ_CREATE_SIGNALED);
    int sfd = export_fd(fd, h);
    /* an fd that is not ours: a pipe, a memfd of the right size and name but no page of ours */
    int pp[2];
    CHECK(pipe(pp) == 0, "pipe");
    struct drm_syncobj_handle x = {.fd = pp[0]};
    EXPECT_ERR(fd, DRM_IOCTL_SYNCOBJ_FD_TO_HANDLE, &x, EINVAL);
    int fake = memfd_create("xdna-syncobj", MFD_CLOEXEC);
    CHECK(ftruncate(fake, 4096) == 0, "ftruncate");
    x = (struct drm_syncobj_handle){.fd = fake};
    EXPECT_ERR(fd, DRM_IOCTL_SYNCOBJ_FD_TO_HANDLE, &x, EINVAL);
    x = (struct drm_syncobj_handle){.fd = 4000};
    EXPECT_ERR(fd, DRM_IOCTL_SYNCOBJ_FD_TO_HANDLE, &x, EINVAL); /* not an fd */
    /* unknown flags, non-zero pads, a point without a sync file */
    x = (struct drm_syncobj_handle){.fd = sfd, .flags = 4};
    EXPECT_ERR(fd, DRM_IOCTL_SYNCOBJ_FD_TO_HANDLE, &x, EINVAL);
    x = (struct drm_syncobj_handle){.fd = sfd, .pad = 1};
    EXPECT_ERR(fd, DRM_IOCTL_SYNCOBJ_FD_TO_HANDLE, &x, EINVAL);
    x = (struct drm_syncobj_handle){.fd = sfd, .flags = DRM_SYNCOBJ_FD_TO_HANDLE_FLAGS_TIMELINE, .point = 3};
    EXPECT_ERR(fd, DRM_IOCTL_SYNCOBJ_FD_TO_HANDLE, &x, EINVAL);
    x = (struct drm_syncobj_handle){.handle = h, .flags = 0x80};
    EXPECT_ERR(fd, DRM_IOCTL_SYNCOBJ_HANDLE_TO_FD, &x, EINVAL);
    x = (struct drm_syncobj_handle){.handle = h, .pad = 2};
    EXPECT_ERR(fd, DRM_IOCTL_SYNCOBJ_HANDLE_TO_FD, &x, EINVAL);
    /* TIMELINE alone (point 0) is a plain syncobj fd, as the DRM core takes it */
    x = (struct drm_syncobj_handle){.fd = sfd, .flags = DRM_SYNCOBJ_FD_TO_HANDLE_FLAGS_TIMELINE};
    EXPECT_OK(fd, DRM_IOCTL_SYNCOBJ_FD_TO_HANDLE, &x);
    CHECK(wait_point(fd, x.handle, 0, 0, 0) == 0, "the import is signalled");
    /* a stale handle: destroyed, then every use refused */
    uint32_t stale = x.handle;
    struct drm_syncobj_destroy sd = {.handle = stale};
    EXPECT_OK(fd, DRM_IOCTL_SYNCOBJ_DESTROY, &sd);
    EXPECT_ERR(fd, DRM_IOCTL_SYNCOBJ_DESTROY, &sd, EINVAL);
    x = (struct drm_syncobj_handle){.handle = stale};
    EXPECT_ERR(fd, DRM_IOCTL_SYNCOBJ_HANDLE_TO_FD, &x, EINVAL);
    CHECK(wait_point(fd, stale, 0, 0, 0) == ENOENT, "wait on a stale handle");
    struct drm_syncobj_array sa = {.handles = PTR(&stale), .count_handles = 1};
    EXPECT_ERR(fd, DRM_IOCTL_SYNCOBJ_SIGNAL, &sa, ENOENT);
    /* TIMELINE_SIGNAL of point 0 is the binary state, as the DRM core takes it */
    uint32_t z = syncobj(fd, 0);
    signal_point(fd, z, 0);
    CHECK(wait_point(fd, z, 0, 0, 0) == 0, "point 0 signals the binary state");
    /* the syncobj lives while an fd holds it: every handle gone, the fd imports it again */
    struct drm_syncobj_destroy d0 = {.handle = h};
    EXPECT_OK(fd, DRM_IOCTL_SYNCOBJ_DESTROY, &d0);
    uint32_t again = import_fd(fd, sfd);
    CHECK(wait_point(fd, again, 0, 0, 0) == 0, "re-imported after its handles were gone");
    close(pp[0]);
    close(pp[1]);
    close(fake);
    close(sfd);
    close(fd);
}

/* ---- sync files ------------------------------------------------------------------- */

/* EXPORT_SYNC_FILE of point (0: the current fence); the fd or -errno. */
static int export_sync(int fd, uint32_t h, uint32_t flags, uint64_t point)
{
    struct drm_syncobj_handle x = {.handle = h, .flags = DRM_SYNCOBJ_HANDLE_TO_FD_FLAGS_EXPORT_SYNC_FILE | flags,
                                   .point = point};
    return ioctl(fd, DRM_IOCTL_SYNCOBJ_HANDLE_TO_FD, &x) == 0 ? x.fd : -errno;
}

/* IMPORT_SYNC_FILE into h (at point with TIMELINE); 0 or the errno. */
static int import_sync(int fd, uint32_t h, int sf, uint32_t flags, uint64_t point)
{
    struct drm_syncobj_handle x = {.handle = h, .fd = sf, .flags = DRM_SYNCOBJ_FD_TO_HANDLE_FLAGS_IMPORT_SYNC_FILE | flags,
                                   .point = point};
    return ioctl(fd, DRM_IOCTL_SYNCOBJ_FD_TO_HANDLE, &x) == 0 ? 0 : errno;
}

static int readable(int sf, int ms)
{
    struct pollfd p = {.fd = sf, .events = POLLIN};
    return poll(&p, 1, ms) == 1 && (p.revents & POLLIN);
}

static void test_sync_files(void)
{
    struct dev d = dev_open();
    /* host fences: signalled ones are readable at once; none yet is EINVAL */
    uint32_t sig = syncobj(d.fd, DRM_SYNCOBJ_CREATE_SIGNALED), unsig = syncobj(d.fd, 0), tl = syncobj(d.fd, 0);
    int sf = export_sync(d.fd, sig, 0, 0);
    CHECK(sf >= 0 && (fcntl(sf, F_GETFD) & FD_CLOEXEC) && readable(sf, 0), "a signalled fence's sync file: %d", sf);
    uint32_t into = syncobj(d.fd, 0);
    CHECK(import_sync(d.fd, into, sf, 0, 0) == 0, "import into a binary syncobj");
    CHECK(wait_point(d.fd, into, 0, 0, 0) == 0, "the import signalled it");
    CHECK(import_sync(d.fd, tl, sf, DRM_SYNCOBJ_FD_TO_HANDLE_FLAGS_TIMELINE, 4) == 0, "import at point 4");
    CHECK(query(d.fd, tl, 0) == 4, "timeline at 4 after the import");
    CHECK(export_sync(d.fd, unsig, 0, 0) == -EINVAL, "no fence: EINVAL");
    int p4 = export_sync(d.fd, tl, DRM_SYNCOBJ_HANDLE_TO_FD_FLAGS_TIMELINE, 4);
    CHECK(p4 >= 0 && readable(p4, 0), "point 4's sync file");
    CHECK(export_sync(d.fd, tl, DRM_SYNCOBJ_HANDLE_TO_FD_FLAGS_TIMELINE, 5) == -EINVAL, "point 5 has no fence");
    int cur = export_sync(d.fd, tl, 0, 5); /* without TIMELINE the point is not read */
    CHECK(cur >= 0 && readable(cur, 0), "the timeline's current fence");
    /* bad input */
    CHECK(export_sync(d.fd, 999, 0, 0) == -ENOENT, "no such syncobj: ENOENT");
    CHECK(export_sync(d.fd, sig, 4, 0) == -EINVAL, "unknown flags");
    struct drm_syncobj_handle x = {.handle = sig, .flags = DRM_SYNCOBJ_HANDLE_TO_FD_FLAGS_EXPORT_SYNC_FILE, .pad = 1};
    EXPECT_ERR(d.fd, DRM_IOCTL_SYNCOBJ_HANDLE_TO_FD, &x, EINVAL);
    x = (struct drm_syncobj_handle){.handle = into, .fd = sf, .flags = DRM_SYNCOBJ_FD_TO_HANDLE_FLAGS_IMPORT_SYNC_FILE,
                                    .pad = 1};
    EXPECT_ERR(d.fd, DRM_IOCTL_SYNCOBJ_FD_TO_HANDLE, &x, EINVAL);
    CHECK(import_sync(d.fd, into, sf, 8, 0) == EINVAL, "unknown import flags");
    CHECK(import_sync(d.fd, 999, sf, 0, 0) == ENOENT, "import into no syncobj: ENOENT");
    int pp[2], plain = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    CHECK(pipe(pp) == 0, "pipe");
    int sobj = export_fd(d.fd, sig);
    CHECK(import_sync(d.fd, into, pp[0], 0, 0) == EINVAL, "a pipe is no sync file");
    CHECK(import_sync(d.fd, into, plain, 0, 0) == EINVAL, "a socket is no sync file");
    CHECK(import_sync(d.fd, into, sobj, 0, 0) == EINVAL, "a syncobj fd is no sync file");
    CHECK(import_sync(d.fd, into, 4000, 0, 0) == EINVAL, "not an fd");
    uint32_t ts, ctx = ctx_create(&d, &ts);
    CHECK(import_sync(d.fd, ts, sf, 0, 0) == EINVAL, "a context's timeline is the device's");

    /* a context's job: readable once it ended (never before), imported in another process */
    uint32_t o = create_bo(d.fd, AMDXDNA_BO_SHARE, N * sizeof(int32_t));
    uint64_t seq = submit(&d, ctx, d.instr, d.a, d.b, o);
    int jf = export_sync(d.fd, ts, DRM_SYNCOBJ_HANDLE_TO_FD_FLAGS_TIMELINE, seq);
    CHECK(jf >= 0, "a job's sync file: %d", jf);
    if (readable(jf, 0))
        CHECK(query(d.fd, ts, 0) >= seq, "readable before its job ended");
    CHECK(export_sync(d.fd, ts, DRM_SYNCOBJ_HANDLE_TO_FD_FLAGS_TIMELINE, seq + 1) == -EINVAL,
          "a job not submitted has no fence");
    uint64_t hs = submit(&d, ctx, d.hang, d.a, d.b, d.a); /* ends when TDR ends it */
    int hf = export_sync(d.fd, ts, 0, 0);                  /* the last submitted job: the hang */
    int tsfd = export_fd(d.fd, ts);
    CHECK(hf >= 0 && tsfd >= 0, "the hang's sync file %d", hf);
    if (readable(hf, 0))
        CHECK(query(d.fd, ts, 0) >= hs, "the hang's sync file readable before it ended");
    pid_t pid = fork();
    if (pid == 0) {
        checks = failed = 0;
        int cfd = open("/dev/accel/accel0", O_RDWR | O_CLOEXEC);
        uint32_t b = syncobj(cfd, 0);
        CHECK(import_sync(cfd, b, jf, 0, 0) == 0, "the parent's job fence imported");
        CHECK(wait_point(cfd, b, 0, 0, 0) == 0, "and signalled");
        CHECK(import_sync(cfd, b, hf, DRM_SYNCOBJ_FD_TO_HANDLE_FLAGS_TIMELINE, 7) == 0, "the hang's fence");
        CHECK(query(cfd, b, 0) == 7, "imported at point 7");
        /* a sync file exported from an imported timeline */
        uint32_t t = import_fd(cfd, tsfd);
        int cf = export_sync(cfd, t, DRM_SYNCOBJ_HANDLE_TO_FD_FLAGS_TIMELINE, hs);
        CHECK(cf >= 0 && readable(cf, 20000), "a sync file of the parent's timeline, from the child");
        fflush(stdout);
        _exit(failed ? 1 : 0);
    }
    CHECK(readable(jf, 20000) && readable(hf, 30000), "the job's and the hang's sync files signal");
    CHECK(query(d.fd, ts, 0) >= hs, "both jobs ended");
    int st = -1;
    waitpid(pid, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "sync files in a forked child: %#x", st);
    int fds[] = {sf, p4, cur, pp[0], pp[1], plain, sobj, jf, hf, tsfd};
    for (unsigned k = 0; k < sizeof(fds) / sizeof(fds[0]); k++)
        close(fds[k]);
    close(d.fd);
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "child") == 0)
        return child_main(atoi(argv[2]));
    test_forked();
    test_chain(argv[0]);
    test_dead_exporter();
    test_bad();
    test_sync_files();
    printf("uapi_fence_test: %d checks, %d failed\n", checks, failed);
    return failed ? 1 : 0;
}
