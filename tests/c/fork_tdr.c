/* A forked child opening the device while the parent holds a context TDR restarted, then
 * the parent's new context: run under `xdna-emu exec` by tests/test_uapi_c.py.
 *
 * The parent's context hangs (the hang kernel) until TDR destroys and re-creates it
 * (docs/spec/jobs.md §6); a forked child opens the device (a new client session,
 * docs/spec/uapi.md §5), imports the parent's syncobj fd, creates its own context and
 * runs a job, and exits without closing (its session is reclaimed when the socket goes).
 * Then the parent's restarted context and a new one must both run jobs: every channel the
 * sessions gave up and took in between is in order. Prints "fork_tdr: N checks, M failed".
 *
 * XKNL_* come from xdna_emu/kernels.py on the compiler's command line. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "amdxdna_accel.h"
#include "xdna_shim.h"

#include "uapi_check.h"

/* One DRM file with a mapped heap, the add's buffers and instruction BOs for add and hang. */
struct dev {
    int fd;
    uint32_t rows, a, b, out, add, hang;
    int32_t *pa, *pb, *po;
};

static struct dev dev_open(void)
{
    struct dev d = {0};
    d.fd = open_with_heap(&d.rows);
    const size_t bytes = N * sizeof(int32_t);
    d.a = create_bo(d.fd, AMDXDNA_BO_SHARE, bytes);
    d.b = create_bo(d.fd, AMDXDNA_BO_SHARE, bytes);
    d.out = create_bo(d.fd, AMDXDNA_BO_SHARE, bytes);
    d.pa = map_bo(d.fd, d.a, bytes);
    d.pb = map_bo(d.fd, d.b, bytes);
    d.po = map_bo(d.fd, d.out, bytes);
    d.add = instr_bo(d.fd, XKNL_ADD, N);
    d.hang = instr_bo(d.fd, XKNL_HANG, 0);
    return d;
}

static uint32_t ctx_create(const struct dev *d)
{
    struct amdxdna_qos_info qos = {.priority = AMDXDNA_QOS_NORMAL_PRIORITY};
    struct amdxdna_drm_create_hwctx c = {.qos_p = PTR(&qos), .num_tiles = d->rows};
    EXPECT_OK(d->fd, DRM_IOCTL_AMDXDNA_CREATE_HWCTX, &c);
    return c.handle;
}

static void ctx_destroy(const struct dev *d, uint32_t ctx)
{
    struct amdxdna_drm_destroy_hwctx x = {.handle = ctx};
    EXPECT_OK(d->fd, DRM_IOCTL_AMDXDNA_DESTROY_HWCTX, &x);
}

/* Submit the instruction BO with nargs of the add's three buffers as arguments to ctx,
 * wait up to wait_ms for it and return its ERT state; -1 when the submission fails. */
static int run(const struct dev *d, uint32_t ctx, uint32_t instr, uint32_t nargs, uint32_t wait_ms)
{
    uint32_t cmd = create_bo(d->fd, AMDXDNA_BO_CMD, 4096);
    uint32_t *c = map_bo(d->fd, cmd, 4096);
    uint64_t ia = bo_info(d->fd, instr).xdna_addr;
    uint32_t w[11] = {1, (uint32_t)ia, (uint32_t)(ia >> 32), sizeof(struct xknl_desc), 0}, nw = 5;
    uint32_t hs[3] = {d->a, d->b, d->out};
    for (uint32_t k = 0; k < nargs; k++) {
        uint64_t x = bo_info(d->fd, hs[k]).xdna_addr;
        w[nw++] = (uint32_t)x;
        w[nw++] = (uint32_t)(x >> 32);
    }
    c[0] = XDNA_SHIM_ERT_STATE_NEW | nw << 12 | XDNA_SHIM_ERT_START_NPU << 23;
    memcpy(c + 1, w, nw * 4);
    struct amdxdna_drm_exec_cmd e = {.hwctx = ctx, .type = AMDXDNA_CMD_SUBMIT_EXEC_BUF, .cmd_handles = cmd,
                                     .args = PTR(hs), .cmd_count = 1, .arg_count = nargs};
    int rc = ioctl(d->fd, DRM_IOCTL_AMDXDNA_EXEC_CMD, &e);
    CHECK(rc == 0, "EXEC_CMD on context %u: errno %d (%s)", ctx, errno, strerror(errno));
    int st = -1;
    if (rc == 0) {
        struct amdxdna_drm_wait_cmd wc = {.hwctx = ctx, .timeout = wait_ms, .seq = e.seq};
        ioctl(d->fd, DRM_IOCTL_AMDXDNA_WAIT_CMD, &wc); /* its state says how it ended */
        st = (int)(c[0] & 0xF);
    }
    munmap(c, 4096);
    return st;
}

/* An add on ctx completes with the right sums. */
static void add_works(const struct dev *d, uint32_t ctx, int32_t bias, const char *what)
{
    for (int k = 0; k < N; k++) {
        d->pa[k] = k;
        d->pb[k] = bias;
        d->po[k] = -1;
    }
    int st = run(d, ctx, d->add, 3, 20000);
    int wrong = 0;
    for (int k = 0; k < N; k++)
        wrong += d->po[k] != k + bias;
    CHECK(st == XDNA_SHIM_ERT_STATE_COMPLETED && wrong == 0, "%s: state %d, %d wrong sums", what, st, wrong);
}

/* The child: a new DRM file of its own (the parent's are not inherited as sessions),
 * importing the parent's syncobj fd; with_ctx: a context of its own that runs a job. It
 * exits without closing anything: the daemon reclaims its session. */
static int child(int sync_fd, int with_ctx)
{
    checks = failed = 0; /* its own count, not the parent's copy */
    struct dev d = dev_open();
    struct drm_syncobj_handle im = {.fd = sync_fd};
    EXPECT_OK(d.fd, DRM_IOCTL_SYNCOBJ_FD_TO_HANDLE, &im); /* the parent's syncobj, shared */
    if (with_ctx)
        add_works(&d, ctx_create(&d), 11, "the child's context");
    fflush(stdout); /* _exit does not */
    return failed ? 1 : 0;
}

int main(void)
{
    struct dev d = dev_open();
    uint32_t ctx = ctx_create(&d);
    add_works(&d, ctx, 1, "a fresh context");
    int st = run(&d, ctx, d.hang, 0, 20000); /* the wait ends when TDR ends the hung job */
    CHECK(st == XDNA_SHIM_ERT_STATE_TIMEOUT, "the hung job timed out: state %d", st);
    add_works(&d, ctx, 2, "the context TDR restarted");

    struct drm_syncobj_create sc = {0};
    EXPECT_OK(d.fd, DRM_IOCTL_SYNCOBJ_CREATE, &sc);
    struct drm_syncobj_handle ex = {.handle = sc.handle};
    EXPECT_OK(d.fd, DRM_IOCTL_SYNCOBJ_HANDLE_TO_FD, &ex);
    for (int round = 0; round < 3; round++) {
        /* a context whose last job is just done goes away: the shim's write of its ring
         * head (logged, not kicked) is still unapplied when the firmware frees its channel */
        uint32_t gone = ctx_create(&d);
        add_works(&d, gone, 50 + round, "a short-lived context");
        ctx_destroy(&d, gone);

        fflush(stdout);
        pid_t pid = fork();
        if (pid == 0)
            _exit(child(ex.fd, round > 0));
        int status = -1;
        CHECK(pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0,
              "round %d: the child: status %#x", round, status);

        /* the parent's next new context (the freed channel's next owner) and the restarted one */
        uint32_t fresh = ctx_create(&d);
        add_works(&d, fresh, 100 + round, "a new context after the child");
        add_works(&d, ctx, 200 + round, "the restarted context after the child");
        ctx_destroy(&d, fresh);
    }
    ctx_destroy(&d, ctx);
    close(ex.fd);
    close(d.fd);
    printf("fork_tdr: %d checks, %d failed\n", checks, failed);
    return failed ? 1 : 0;
}
