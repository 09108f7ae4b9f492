/* The amdxdna ioctl surface on an emulated /dev/accel/accelN (docs/spec/uapi.md §5-6).
 *
 * Each open is one DRM file: a client session of the shim (xdna_shim_attach) with its own
 * BO and context handles, named by an eventfd so poll/dup/close/fstat on it behave as on
 * a real fd. The decoder copies arguments in and out as drm_ioctl does (the caller's ioctl
 * size, zero-filled to ours, copied back on return), reads and writes user memory only
 * through process_vm_readv/writev so a bad pointer is EFAULT and never a crash, and maps
 * each command onto the shim's public calls with the driver's errno rules.
 */
#include "accel.h"
#include "argcheck.h"
#include "registry.h"

#include "../shim_int.h"
#include "../generated/amdxdna_accel.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/futex.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define ENV_SOCKET_FMT "XDNA_EMU_ACCEL%ld_SOCKET"
#define ENV_DRIVER_FMT "XDNA_EMU_ACCEL%d_DRIVER"
#define ACCEL_PREFIX "/dev/accel/accel"
/* map_offset = handle << 40: one disjoint range per handle, wider than any BO (bo.c) */
#define MAP_SHIFT 40
#define EXEC_MAX_ARGS 4096u        /* arg BO handles in one EXEC_CMD */
#define CU_CONFIG_MAX (4096u)      /* param_val_size of CONFIG_CU: one page */

#define MAX_SYNCOBJS 1024u
#define MAX_WAIT_HANDLES 64u

struct accel_file;

/* A syncobj's fence state (docs/spec/uapi.md §6): in the process's memory until it is
 * exported, then in a shared page (a memfd of its own) that every process importing it
 * maps, so a signal, a wait or a context's job end in one process is seen in all. Every
 * change bumps `futex`, on which waiters of any process sleep. */
struct sync_state {
    uint32_t magic;     /* SYNC_MAGIC in a shared page */
    uint32_t futex;
    uint32_t hwctx;     /* non-zero: the timeline of this context (point N = job N ended) */
    int32_t pid;        /* a context timeline: the process whose file runs the context */
    uint32_t flags;     /* SYNC_* */
    uint32_t pad;
    uint64_t value;     /* binary: 1 signalled, 0 not; timeline: the highest signalled point;
                         * a context's: its last ended job as published to other processes */
    uint64_t submitted; /* a context's: its last submitted job, published */
    uint64_t start;     /* a context timeline: that process's start time (a reused pid differs) */
};

/* One process's view of a syncobj. Several DRM files of the process may name it
 * (SYNCOBJ_HANDLE_TO_FD, then FD_TO_HANDLE): each name holds a reference. */
struct syncobj {
    unsigned refs;
    struct accel_file *owner; /* a context timeline in the process that runs it, else NULL */
    struct sync_state *st;    /* &local, or the shared page once exported or imported */
    struct sync_state local;
    int fd;                   /* the shared page's memfd, -1 while local */
    pid_t pid;                /* the process this view belongs to (a fork copies it) */
    dev_t dev;
    ino_t ino;
    pthread_t publisher;      /* an exported context timeline: publishes its job ends */
    bool publishing, stop;
    struct syncobj *next;     /* the process's shared syncobjs */
};

static pthread_mutex_t sync_lock = PTHREAD_MUTEX_INITIALIZER;

struct ctx_qos {
    uint32_t handle;
    struct amdxdna_qos_info qos;
};

struct accel_file {
    int minor;
    pid_t owner;                   /* the process that opened it (a forked child is not) */
    uint32_t id;                   /* its rows in the device registry */
    struct xdna_registry *reg;
    struct ctx_qos qos[XDNA_MAX_HWCTX];
    unsigned refs;                 /* fds naming this file (dup) */
    struct xdna_shim_ctx *ctx;     /* its client session */
    /* where the program mapped each DEV_HEAP chunk (the driver's heap userptr), 0: not yet */
    struct heap_map { uint32_t handle; uint64_t uva; } heap_map[XDNA_HEAP_MAX_CHUNKS];
    uint32_t cu_ctx[XDNA_MAX_HWCTX]; /* contexts whose CUs were configured */
    char client_name[DRM_CLIENT_NAME_MAX_LEN + 1];
    /* syncobjs: index = handle - 1; a context's timeline reads its jobs (§6) */
    struct syncobj *sync[MAX_SYNCOBJS];
};

static void publish(struct accel_file *f);
static void unpublish(struct accel_file *f);
static void sync_drop_ctx(struct accel_file *f, uint32_t hwctx);
static void sync_drop_file(struct accel_file *f);
static void sync_note_job(struct accel_file *f, uint32_t hwctx, uint64_t seq, bool end);

static pthread_mutex_t tbl_lock = PTHREAD_MUTEX_INITIALIZER;
static struct accel_file *files[XDNA_ACCEL_MAX_FDS];

/* ---- user memory: never dereferenced directly ------------------------------------- */

static int uread(void *dst, uint64_t src, size_t len)
{
    if (!len)
        return 0;
    struct iovec l = {dst, len}, r = {(void *)(uintptr_t)src, len};
    return process_vm_readv(getpid(), &l, 1, &r, 1, 0) == (ssize_t)len ? 0 : -EFAULT;
}

static int uwrite(uint64_t dst, const void *src, size_t len)
{
    if (!len)
        return 0;
    struct iovec l = {(void *)src, len}, r = {(void *)(uintptr_t)dst, len};
    return process_vm_writev(getpid(), &l, 1, &r, 1, 0) == (ssize_t)len ? 0 : -EFAULT;
}

/* ---- the fd table ---------------------------------------------------------------- */

/* XDNA_EMU_ACCEL<N>_SOCKET: the daemon socket behind accelN (set by `xdna-emu exec`). */
static const char *socket_env(long minor)
{
    char name[48];
    snprintf(name, sizeof(name), ENV_SOCKET_FMT, minor);
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

int xdna_accel_minor(const char *path)
{
    if (!path || strncmp(path, ACCEL_PREFIX, strlen(ACCEL_PREFIX)) != 0)
        return -1;
    const char *p = path + strlen(ACCEL_PREFIX);
    if (*p < '0' || *p > '9' || (p[0] == '0' && p[1]))
        return -1;
    char *end;
    long n = strtol(p, &end, 10);
    if (*end || n >= XDNA_ACCEL_MAX_MINORS || !socket_env(n))
        return -1;
    return (int)n;
}

static int socket_of(int minor, char *out, size_t cap)
{
    const char *v = socket_env(minor);
    if (!v)
        return -ENODEV;
    if (strlen(v) >= cap)
        return -ENAMETOOLONG;
    strcpy(out, v);
    return 0;
}

static struct accel_file *file_of(int fd)
{
    if (fd < 0 || fd >= XDNA_ACCEL_MAX_FDS)
        return NULL;
    pthread_mutex_lock(&tbl_lock);
    struct accel_file *f = files[fd];
    pthread_mutex_unlock(&tbl_lock);
    return f;
}

int xdna_accel_fd_minor(int fd)
{
    struct accel_file *f = file_of(fd);
    return f ? f->minor : -1;
}

int xdna_accel_open(int minor, int flags)
{
    char sock[256];
    int rc = socket_of(minor, sock, sizeof(sock));
    if (rc < 0) {
        errno = -rc;
        return -1;
    }
    return xdna_accel_attach(minor, sock, flags);
}

int xdna_accel_attach(int minor, const char *sock, int flags)
{
    struct accel_file *f = calloc(1, sizeof(*f));
    if (!f) {
        errno = ENOMEM;
        return -1;
    }
    f->minor = minor;
    f->refs = 1;
    f->owner = getpid();
    f->reg = xdna_reg_get(minor);
    f->ctx = xdna_shim_open(sock, 0);
    if (!f->ctx)
        goto free_file;
    if (xdna_shim_attach(f->ctx) < 0)
        goto close_ctx;
    int fd = eventfd(0, (flags & O_CLOEXEC) ? EFD_CLOEXEC : 0);
    if (fd < 0)
        goto close_ctx;
    if (fd >= XDNA_ACCEL_MAX_FDS) {
        close(fd);
        errno = EMFILE;
        goto close_ctx;
    }
    pthread_mutex_lock(&tbl_lock);
    files[fd] = f;
    pthread_mutex_unlock(&tbl_lock);
    publish(f);
    return fd;

close_ctx: {
        int err = errno;
        xdna_shim_close(f->ctx);
        errno = err;
    }
free_file: {
        int err = errno == ENOENT || errno == ECONNREFUSED ? ENODEV : errno;
        if (getenv("XDNA_EMU_DEBUG"))
            fprintf(stderr, "xdna-emu accel%d: open: %s\n", minor, xdna_shim_last_error(NULL));
        free(f);
        errno = err;
        return -1;
    }
}

void xdna_accel_dup(int oldfd, int newfd)
{
    if (newfd < 0 || newfd >= XDNA_ACCEL_MAX_FDS || oldfd == newfd)
        return;
    xdna_accel_forget(newfd); /* dup2 onto one of ours closed it */
    pthread_mutex_lock(&tbl_lock);
    struct accel_file *f = oldfd >= 0 && oldfd < XDNA_ACCEL_MAX_FDS ? files[oldfd] : NULL;
    if (f) {
        f->refs++;
        files[newfd] = f;
    }
    pthread_mutex_unlock(&tbl_lock);
}

void xdna_accel_forget(int fd)
{
    if (fd < 0 || fd >= XDNA_ACCEL_MAX_FDS)
        return;
    pthread_mutex_lock(&tbl_lock);
    struct accel_file *f = files[fd];
    files[fd] = NULL;
    bool last = f && --f->refs == 0;
    pthread_mutex_unlock(&tbl_lock);
    if (last && f->owner != getpid()) /* a forked child's copy: the parent owns it */
        return;
    if (last) { /* the DRM file's release: its contexts and BOs go with the session */
        unpublish(f);
        sync_drop_file(f); /* its contexts' timelines shared elsewhere, its names */
        xdna_shim_close(f->ctx);
        free(f);
    }
}

/* ---- the device registry: this file's rows (registry.h) ------------------------- */

static void unpublish_locked(struct accel_file *f)
{
    for (unsigned i = 0; i < XDNA_REG_MAX_CTX; i++)
        if (f->reg->ctx[i].file == f->id)
            f->reg->ctx[i].file = 0;
    for (unsigned i = 0; i < XDNA_REG_MAX_FILES; i++)
        if (f->reg->files[i].file == f->id)
            f->reg->files[i].file = 0;
}

static void unpublish(struct accel_file *f)
{
    if (!f->reg || !f->id)
        return;
    xdna_reg_lock(f->reg);
    unpublish_locked(f);
    xdna_reg_unlock(f->reg);
}

static const struct amdxdna_qos_info *qos_of(struct accel_file *f, uint32_t handle)
{
    for (unsigned i = 0; i < XDNA_MAX_HWCTX; i++)
        if (f->qos[i].handle == handle)
            return &f->qos[i].qos;
    return NULL;
}

/* Recompute this file's rows: its contexts, and its BO usage by the driver's accounting
 * (every shmem-backed BO in total; DEV_HEAP and CMD also internal; DEV only heap). */
/* A DEV BO lives in the heap on AIE2; on AIE4 it is a plain buffer (docs/spec/aie4.md §8). */
static bool dev_in_heap(const struct accel_file *f, uint32_t type)
{
    return type == XDNA_SHIM_BO_DEV && !xdna_is_aie4(f->ctx->chip);
}

static void publish(struct accel_file *f)
{
    if (!f->reg)
        return;
    struct xdna_reg_file usage = {.pid = f->owner};
    struct xdna_reg_ctx rows[XDNA_MAX_HWCTX];
    unsigned n = 0;
    struct xdna_shim_info info;
    char comm[16] = {0};
    int cfd = open("/proc/self/comm", O_RDONLY | O_CLOEXEC);
    if (cfd >= 0) {
        ssize_t got = read(cfd, comm, sizeof(comm) - 1);
        close(cfd);
        if (got > 0 && comm[got - 1] == '\n')
            comm[got - 1] = 0;
    }
    if (xdna_shim_get_info(f->ctx, &info) < 0 || xdna_api_enter(f->ctx) < 0)
        return;
    for (unsigned i = 0; f->ctx->s.bos && i < XDNA_MAX_BOS; i++) {
        const struct xdna_bo *bo = f->ctx->s.bos[i];
        uint64_t sz = bo ? (bo->size + 4095) & ~4095ull : 0;
        if (!bo)
            continue;
        /* AIE4 has no DEV heap: a DEV BO is a plain buffer, internal (docs/spec/aie4.md §8) */
        if (dev_in_heap(f, bo->type)) {
            usage.heap += sz;
            continue;
        }
        usage.total += sz;
        if (bo->type == XDNA_SHIM_BO_DEV_HEAP || bo->type == XDNA_SHIM_BO_CMD ||
            bo->type == XDNA_SHIM_BO_DEV)
            usage.internal += sz;
    }
    for (unsigned i = 0; i < XDNA_MAX_HWCTX; i++) {
        const struct xdna_hwctx *hw = f->ctx->s.hw[i];
        if (!hw)
            continue;
        const struct amdxdna_qos_info *q = qos_of(f, hw->handle);
        rows[n] = (struct xdna_reg_ctx){
            .context_id = hw->handle, .pid = f->owner, .hwctx_id = hw->fw_id,
            .start_col = hw->start_col, .num_col = hw->num_col,
            .state = hw->state == XDNA_SHIM_HWCTX_ACTIVE ? AMDXDNA_HWCTX_STATE_ACTIVE
                                                          : AMDXDNA_HWCTX_STATE_IDLE,
            .pasid = info.pasid, .priority = q ? q->priority : 0,
            .gops = q ? q->gops : 0, .fps = q ? q->fps : 0,
            .dma_bandwidth = q ? q->dma_bandwidth : 0, .latency = q ? q->latency : 0,
            .frame_exec_time = q ? q->frame_exec_time : 0, .submissions = hw->submitted,
            .completions = hw->completed, .errors = hw->errors, .heap_usage = usage.heap};
        memcpy(rows[n].name, comm, sizeof(rows[n].name));
        n++;
    }
    xdna_api_leave(f->ctx, 0);
    xdna_reg_lock(f->reg);
    if (!f->id)
        f->id = ++f->reg->next_file ? f->reg->next_file : ++f->reg->next_file;
    unpublish_locked(f);
    usage.file = f->id;
    for (unsigned i = 0; i < XDNA_REG_MAX_FILES; i++)
        if (!f->reg->files[i].file) {
            f->reg->files[i] = usage;
            break;
        }
    for (unsigned k = 0, i = 0; k < n && i < XDNA_REG_MAX_CTX; i++)
        if (!f->reg->ctx[i].file) {
            rows[k].file = f->id;
            f->reg->ctx[i] = rows[k++];
        }
    xdna_reg_unlock(f->reg);
}

/* ---- BO lookups -------------------------------------------------------------------- */

struct bo_view {
    int type;
    uint64_t size, alloc, xdna_addr, heap_off;
    uint8_t *va;
    int fd; /* backing memfd (the heap's for a DEV BO) */
};

/* A user BO of the file: 0, or -ENOENT when the handle names none (internal ones too). */
static int bo_view(struct accel_file *f, uint32_t handle, struct bo_view *v)
{
    if (xdna_api_enter(f->ctx) < 0)
        return -errno;
    struct xdna_bo *bo = xdna_bo_get(f->ctx, handle);
    int rc = -ENOENT;
    if (bo && !bo->internal) {
        struct xdna_bo *heap = xdna_bo_get(f->ctx, f->ctx->s.heap);
        *v = (struct bo_view){.type = bo->type, .size = bo->size, .alloc = bo->alloc,
                              .xdna_addr = bo->xdna_addr, .heap_off = bo->heap_off,
                              .va = bo->va, .fd = bo->fd};
        if (dev_in_heap(f, bo->type))
            v->fd = heap ? heap->fd : -1; /* AIE4: a DEV BO is a plain buffer of its own */
        rc = 0;
    }
    xdna_api_leave(f->ctx, 0);
    return rc;
}

static uint32_t heap_handle(struct accel_file *f)
{
    if (xdna_api_enter(f->ctx) < 0)
        return 0;
    uint32_t h = f->ctx->s.heap;
    xdna_api_leave(f->ctx, 0);
    return h;
}

/* One DEV_HEAP chunk as the program sees it. */
struct heap_chunk {
    uint32_t handle;
    uint64_t off, len; /* its range in the heap */
    uint64_t uva;      /* the program's mapping of it, 0: none */
};

/* The chunks of the file's heap in device-address order; their count. */
static unsigned heap_chunks(struct accel_file *f, struct heap_chunk *out)
{
    if (xdna_api_enter(f->ctx) < 0)
        return 0;
    unsigned n = 0;
    for (unsigned i = 0; i < f->ctx->s.nheap; i++) {
        const struct xdna_bo *c = xdna_bo_get(f->ctx, f->ctx->s.heap_chunk[i]);
        if (c)
            out[n++] = (struct heap_chunk){.handle = c->handle, .off = c->heap_off,
                                           .len = c->alloc};
    }
    xdna_api_leave(f->ctx, 0);
    for (unsigned i = 0; i < n; i++)
        for (unsigned k = 0; k < XDNA_HEAP_MAX_CHUNKS; k++)
            if (f->heap_map[k].handle == out[i].handle)
                out[i].uva = f->heap_map[k].uva;
    return n;
}

static void heap_map_note(struct accel_file *f, uint32_t handle, uint64_t uva)
{
    unsigned free_k = XDNA_HEAP_MAX_CHUNKS;
    for (unsigned k = 0; k < XDNA_HEAP_MAX_CHUNKS; k++) {
        if (f->heap_map[k].handle == handle)
            return; /* the first mapping is the chunk's userptr, as the driver keeps it */
        if (free_k == XDNA_HEAP_MAX_CHUNKS && !f->heap_map[k].handle)
            free_k = k;
    }
    if (free_k < XDNA_HEAP_MAX_CHUNKS)
        f->heap_map[free_k] = (struct heap_map){handle, uva};
}

/* Forget mappings of chunks that are gone (their handle may come back as another BO). */
static void heap_map_prune(struct accel_file *f)
{
    struct heap_chunk c[XDNA_HEAP_MAX_CHUNKS];
    unsigned n = heap_chunks(f, c);
    for (unsigned k = 0; k < XDNA_HEAP_MAX_CHUNKS; k++) {
        bool live = false;
        for (unsigned i = 0; i < n; i++)
            live |= c[i].handle == f->heap_map[k].handle;
        if (!live)
            f->heap_map[k].handle = 0;
    }
}

/* The driver's rule for a DEV BO at [off, off+len) of the heap: every chunk it spans is
 * mapped by the program (the first chunk not mapped: EINVAL, a later one: EAGAIN, the
 * runtime maps it and retries) and those mappings are one contiguous range (EINVAL).
 * Its user address goes to *uva. */
static int dev_bo_userptr(struct accel_file *f, uint64_t off, uint64_t len, uint64_t *uva)
{
    struct heap_chunk c[XDNA_HEAP_MAX_CHUNKS];
    unsigned n = heap_chunks(f, c);
    if (!n || !c[0].uva)
        return -EINVAL;
    bool first = true;
    uint64_t want = 0;
    for (unsigned i = 0; i < n; i++) {
        if (off >= c[i].off + c[i].len || off + len <= c[i].off)
            continue;
        if (!c[i].uva)
            return -EAGAIN;
        if (first)
            *uva = c[i].uva + (off - c[i].off);
        else if (c[i].uva != want)
            return -EINVAL; /* the chunks' mappings are not contiguous */
        first = false;
        want = c[i].uva + c[i].len;
    }
    return first ? -EINVAL : 0;
}

static bool hwctx_exists(struct accel_file *f, uint32_t handle)
{
    struct xdna_shim_hwctx_info hi;
    return handle && xdna_shim_hwctx_info(f->ctx, handle, &hi) == 0;
}

/* ---- generic DRM ioctls ------------------------------------------------------------ */

static int copy_field(uint64_t buf, uint64_t *buf_len, const char *value)
{
    size_t len = strlen(value), n = len < *buf_len ? len : (size_t)*buf_len;
    *buf_len = len;
    return n && buf ? uwrite(buf, value, n) : 0;
}

static int drm_version(struct accel_file *f, void *k)
{
    (void)f;
    struct drm_version *v = k;
    v->version_major = AMDXDNA_DRIVER_MAJOR;
    v->version_minor = AMDXDNA_DRIVER_MINOR;
    v->version_patchlevel = 0;
    int rc = copy_field(v->name, &v->name_len, "amdxdna");
    if (!rc)
        rc = copy_field(v->date, &v->date_len, "");
    if (!rc)
        rc = copy_field(v->desc, &v->desc_len, "AMD XDNA NPU (xdna-emu)");
    return rc;
}

/* GET_CAP: the DRM core's answer for a driver without modesetting that declares syncobjs
 * and timeline syncobjs: the four caps such a driver has, every other EOPNOTSUPP with
 * value 0 (docs/spec/uapi.md §3). */
static int drm_get_cap(struct accel_file *f, void *k)
{
    (void)f;
    struct drm_get_cap *c = k;
    uint64_t cap = c->capability;
    c->value = 0;
    switch (cap) {
    case DRM_CAP_TIMESTAMP_MONOTONIC:
    case DRM_CAP_SYNCOBJ:
    case DRM_CAP_SYNCOBJ_TIMELINE:
        c->value = 1;
        return 0;
    case DRM_CAP_PRIME:
        c->value = DRM_PRIME_CAP_IMPORT | DRM_PRIME_CAP_EXPORT;
        return 0;
    default:
        return -EOPNOTSUPP;
    }
}

static int drm_gem_close(struct accel_file *f, void *k)
{
    struct drm_gem_close *a = k;
    struct bo_view v;
    if (bo_view(f, a->handle, &v) < 0)
        return -EINVAL; /* drm_gem_handle_delete: no such handle */
    return xdna_shim_bo_free(f->ctx, a->handle) < 0 ? -errno : 0;
}

/* name: 1..DRM_CLIENT_NAME_MAX_LEN-1 printable characters, no spaces; length 0 clears */
static int drm_set_client_name(struct accel_file *f, void *k)
{
    struct drm_set_client_name *a = k;
    char name[DRM_CLIENT_NAME_MAX_LEN];
    if (a->name_len >= DRM_CLIENT_NAME_MAX_LEN)
        return -EINVAL;
    if (uread(name, a->name, a->name_len) < 0)
        return -EFAULT;
    for (uint64_t i = 0; i < a->name_len; i++)
        if (name[i] <= ' ' || name[i] > '~')
            return -EINVAL;
    memcpy(f->client_name, name, a->name_len);
    f->client_name[a->name_len] = 0;
    return 0;
}

/* PRIME: a SHARE BO's memfd is the dma-buf stand-in (docs/spec/uapi.md §6). Exporting
 * duplicates it, so the memory lives as long as any fd or mapping of it does. */
#define PRIME_MEMFD "/memfd:xdna-share"

static int prime_handle_to_fd(struct accel_file *f, void *k)
{
    struct drm_prime_handle *a = k;
    if (a->flags & ~(uint32_t)(DRM_CLOEXEC | DRM_RDWR))
        return -EINVAL;
    struct bo_view v;
    if (bo_view(f, a->handle, &v) < 0)
        return -ENOENT;
    if (v.type != AMDXDNA_BO_SHARE || v.fd < 0)
        return -EINVAL; /* only shmem-backed user BOs are exported */
    int fd = fcntl(v.fd, (a->flags & DRM_CLOEXEC) ? F_DUPFD_CLOEXEC : F_DUPFD, 0);
    if (fd < 0)
        return -errno;
    a->fd = fd;
    return 0;
}

static int prime_fd_to_handle(struct accel_file *f, void *k)
{
    struct drm_prime_handle *a = k;
    char link[64], target[128];
    struct stat st;
    if (fcntl(a->fd, F_GETFD) < 0)
        return -EBADF;
    snprintf(link, sizeof(link), "/proc/self/fd/%d", a->fd);
    ssize_t n = readlink(link, target, sizeof(target) - 1);
    target[n > 0 ? n : 0] = 0;
    if (n <= 0 || strncmp(target, PRIME_MEMFD, strlen(PRIME_MEMFD)) != 0 ||
        fstat(a->fd, &st) < 0 || !st.st_size)
        return -EINVAL; /* not a buffer we exported */
    if (xdna_api_enter(f->ctx) < 0)
        return -errno;
    for (unsigned i = 0; i < XDNA_MAX_BOS; i++) { /* our own BO comes back as itself */
        const struct xdna_bo *bo = f->ctx->s.bos[i];
        struct stat bst;
        if (bo && !bo->internal && bo->fd >= 0 && fstat(bo->fd, &bst) == 0 &&
            bst.st_ino == st.st_ino && bst.st_dev == st.st_dev) {
            a->handle = bo->handle;
            xdna_api_leave(f->ctx, 0);
            return 0;
        }
    }
    uint32_t h;
    int rc = xdna_bo_import(f->ctx, a->fd, (uint64_t)st.st_size, &h);
    int err = errno;
    xdna_api_leave(f->ctx, rc);
    if (rc < 0)
        return -err;
    a->handle = h;
    return 0;
}

/* ---- amdxdna: buffers ------------------------------------------------------------- */

/* ---- user-pointer BOs (docs/spec/uapi.md §6) ---------------------------------------- */

#define UPTR_MEMFD "xdna-share-uptr" /* a SHARE memfd name: the BO can be exported */

/* How the program maps [va, va+len) (/proc/self/maps): 0 readable and writable throughout,
 * 1 readable only throughout, -EFAULT a page not mapped or not readable, or a range part
 * writable and part not (the driver pins such a range writable, which fails). */
static int range_access(uint64_t va, uint64_t len)
{
    FILE *maps = fopen("/proc/self/maps", "re");
    if (!maps)
        return -EFAULT;
    uint64_t at = va, end = va + len;
    int ro = -1;
    char line[512], perms[8];
    unsigned long long lo, hi;
    while (at < end && fgets(line, sizeof(line), maps)) {
        if (sscanf(line, "%llx-%llx %7s", &lo, &hi, perms) != 3 || hi <= at)
            continue;
        if (lo > at || perms[0] != 'r')
            break; /* a hole, or a page the program may not read */
        int w = perms[1] == 'w' ? 0 : 1;
        if (ro >= 0 && ro != w) {
            ro = -2;
            break;
        }
        ro = w;
        at = hi;
    }
    fclose(maps);
    return at >= end && ro >= 0 ? ro : -EFAULT;
}

/* The program's pages move into one memfd, mapped back at the same addresses with the same
 * access: from then on the program and the device use the same pages, with no copy between
 * them. A page that is all zeros is not written, so a sparse range stays sparse. */
static int uptr_memfd(const struct amdxdna_drm_va_entry *e, uint32_t n, uint64_t total, bool ro)
{
    static const uint8_t zero[4096];
    int fd = memfd_create(UPTR_MEMFD, MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0)
        return -errno;
    int rc = 0;
    if (ftruncate(fd, (off_t)total) < 0 || fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK) < 0)
        rc = -ENOMEM;
    uint64_t off = 0;
    for (uint32_t i = 0; rc == 0 && i < n; off += e[i].len, i++)
        for (uint64_t p = 0; rc == 0 && p < e[i].len; p += sizeof(zero)) {
            const void *src = (const void *)(uintptr_t)(e[i].vaddr + p);
            if (memcmp(src, zero, sizeof(zero)) &&
                pwrite(fd, src, sizeof(zero), (off_t)(off + p)) != (ssize_t)sizeof(zero))
                rc = -ENOMEM;
        }
    off = 0;
    for (uint32_t i = 0; rc == 0 && i < n; off += e[i].len, i++)
        if (mmap((void *)(uintptr_t)e[i].vaddr, e[i].len, ro ? PROT_READ : PROT_READ | PROT_WRITE,
                 MAP_SHARED | MAP_FIXED, fd, (off_t)off) == MAP_FAILED)
            rc = -errno;
    if (rc < 0) {
        close(fd);
        return rc;
    }
    return fd;
}


/* CREATE_BO with vaddr: a va table {udma_fd, num_entries, entries[]}. No entries: the BO is
 * the dma-buf udma_fd names (a PRIME import). Else each entry is a page-aligned range of the
 * program's memory, and the BO is those ranges in order. */
static int create_uptr_bo(struct accel_file *f, struct amdxdna_drm_create_bo *a)
{
    struct amdxdna_drm_va_tbl tbl;
    if (uread(&tbl, a->vaddr, sizeof(tbl)) < 0)
        return -EINVAL; /* the driver's errno for a table it cannot read */
    if (!tbl.num_entries) {
        struct drm_prime_handle ph = {.fd = tbl.udma_fd};
        int rc = prime_fd_to_handle(f, &ph);
        if (rc == 0)
            a->handle = ph.handle;
        return rc;
    }
    if (tbl.num_entries > XDNA_UAPI_UPTR_MAX_ENTRIES)
        return -EINVAL;
    struct amdxdna_drm_va_entry *e = calloc(tbl.num_entries, sizeof(*e));
    if (!e)
        return -ENOMEM;
    int rc = uread(e, a->vaddr + sizeof(tbl), tbl.num_entries * sizeof(*e)) < 0 ? -EINVAL : 0;
    uint64_t total = 0;
    if (rc == 0)
        rc = xdna_uapi_va_total(e, tbl.num_entries, &total);
    int ro = -1;
    for (uint32_t i = 0; rc == 0 && i < tbl.num_entries; i++) {
        int acc = range_access(e[i].vaddr, e[i].len);
        if (acc < 0 || (ro >= 0 && acc != ro))
            rc = -EFAULT; /* not the program's, or read-only and writable ranges mixed */
        ro = acc;
    }
    int fd = rc == 0 ? uptr_memfd(e, tbl.num_entries, total, ro == 1) : rc;
    free(e);
    if (fd < 0)
        return fd;
    uint32_t h;
    rc = xdna_api_enter(f->ctx);
    if (rc == 0) {
        rc = xdna_bo_userptr(f->ctx, fd, total, ro == 1, &h);
        int err = errno;
        xdna_api_leave(f->ctx, rc);
        rc = rc < 0 ? -err : 0;
    } else {
        rc = -errno;
    }
    close(fd);
    if (rc == 0)
        a->handle = h;
    return rc;
}

static int create_bo(struct accel_file *f, void *k)
{
    struct amdxdna_drm_create_bo *a = k;
    int kind = xdna_uapi_check_create_bo(a);
    if (kind < 0)
        return kind;
    if (kind == 1)
        return create_uptr_bo(f, a);
    uint64_t uva;
    if (dev_in_heap(f, a->type) && dev_bo_userptr(f, 0, 1, &uva) < 0)
        return -EINVAL; /* no heap, or its user mapping is not there yet (AIE4: no heap) */
    if (a->type == AMDXDNA_BO_DEV_HEAP)
        heap_map_prune(f); /* a freed chunk's handle may name the new one */
    uint32_t h;
    if (xdna_shim_bo_create(f->ctx, (int)a->type, a->size, &h) < 0)
        return dev_in_heap(f, a->type) && errno == ENOMEM ? -EAGAIN : -errno;
    if (dev_in_heap(f, a->type)) { /* the chunks it landed in must be mapped, contiguously */
        struct bo_view v;
        int rc = bo_view(f, h, &v);
        if (rc == 0)
            rc = dev_bo_userptr(f, v.heap_off, v.alloc, &uva);
        if (rc < 0) {
            xdna_shim_bo_free(f->ctx, h);
            return rc;
        }
    }
    a->handle = h;
    return 0;
}

static int get_bo_info(struct accel_file *f, void *k)
{
    struct amdxdna_drm_get_bo_info *a = k;
    if (a->ext || a->ext_flags || a->pad)
        return -EINVAL;
    struct bo_view v;
    int rc = bo_view(f, a->handle, &v);
    if (rc < 0)
        return rc;
    uint64_t uva = (uint64_t)(uintptr_t)v.va;
    if (dev_in_heap(f, v.type)) /* its place in the program's heap mapping */
        dev_bo_userptr(f, v.heap_off, v.alloc, &uva);
    a->map_offset = (uint64_t)a->handle << MAP_SHIFT;
    a->vaddr = uva;
    a->xdna_addr = v.xdna_addr;
    return 0;
}

static int sync_bo(struct accel_file *f, void *k)
{
    struct amdxdna_drm_sync_bo *a = k;
    struct bo_view v;
    int rc = bo_view(f, a->handle, &v);
    if (rc < 0)
        return rc;
    if (a->direction > SYNC_DIRECT_FROM_DEVICE)
        return -EINVAL;
    return xdna_shim_bo_sync(f->ctx, a->handle, (int)a->direction, a->offset, a->size) < 0
               ? -errno : 0;
}

void *xdna_accel_mmap(void *addr, size_t len, int prot, int flags, int fd, int64_t off)
{
    struct accel_file *f = file_of(fd);
    struct bo_view v;
    uint64_t uoff = (uint64_t)off;
    uint32_t handle = (uint32_t)(uoff >> MAP_SHIFT);
    if (!f || !len || uoff & (((uint64_t)1 << MAP_SHIFT) - 1) || bo_view(f, handle, &v) < 0 ||
        v.fd < 0 || len > v.alloc) {
        errno = EINVAL; /* an offset that names no BO of this file */
        return MAP_FAILED;
    }
    if ((flags & MAP_TYPE) == MAP_PRIVATE) {
        errno = EINVAL; /* a copy-on-write map of a BO, refused as the DRM core refuses it */
        return MAP_FAILED;
    }
    /* the heap is one memfd: a chunk or a DEV BO is a window on it (docs/spec/uapi.md §6) */
    bool in_heap = dev_in_heap(f, v.type) || v.type == XDNA_SHIM_BO_DEV_HEAP;
    void *p = mmap(addr, len, prot, flags, v.fd, in_heap ? (off_t)v.heap_off : 0);
    if (p != MAP_FAILED && v.type == XDNA_SHIM_BO_DEV_HEAP)
        heap_map_note(f, handle, (uint64_t)(uintptr_t)p);
    return p;
}

/* ---- syncobjs (docs/spec/uapi.md §6) ------------------------------------------------ */

#define SYNC_MAGIC 0x58595343u     /* a shared page we made ("CSYX") */
#define SYNC_PAGE 4096u
#define SYNC_MEMFD "xdna-syncobj"
#define SYNC_MEMFD_LINK "/memfd:" SYNC_MEMFD
#define SYNC_SUBMITTED 1u          /* a fence was attached (binary) or a point signalled */
#define SYNC_ERROR 2u              /* a context timeline whose process died (§7) */
#define SYNC_SLICE_MS 100u         /* re-check a dead owner / a publisher's stop this often */

#define SYNC_PENDING 128u         /* sync files of a shared timeline waiting for their point */
#define FENCE_PREFIX "xdna-fence:" /* a sync file's abstract socket name (fence_name) */
#define PENDING_CLAIMED UINT64_MAX /* an entry being filled in */

/* A shared page: the state, then the sync files exported from it whose point has not
 * signalled yet (id 0: a free entry); whoever sees the point signal sends each its
 * datagram (docs/spec/uapi.md §6, "Sync files"). */
struct sync_page {
    struct sync_state st;
    struct { uint64_t id, point; } pending[SYNC_PENDING];
};
_Static_assert(sizeof(struct sync_page) <= SYNC_PAGE, "one page");

static struct syncobj *shared_syncs; /* the process's shared views (sync_lock) */
static pthread_mutex_t pub_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t pub_cond = PTHREAD_COND_INITIALIZER; /* a job was submitted, or stop */
static pthread_once_t fork_once = PTHREAD_ONCE_INIT;

/* A fork while a publisher holds a lock must not leave it locked in the child. */
static void fork_prepare(void)
{
    pthread_mutex_lock(&sync_lock);
    pthread_mutex_lock(&pub_lock);
}

static void fork_release(void)
{
    pthread_mutex_unlock(&pub_lock);
    pthread_mutex_unlock(&sync_lock);
}

static void fork_guard(void)
{
    pthread_atfork(fork_prepare, fork_release, fork_release);
}

#define LD(x) __atomic_load_n(&(x), __ATOMIC_ACQUIRE)

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* The abstract socket name of sync file id whose fence is a job of process (pid, start)
 * (0: a fence signalled already); its length for bind/sendto. */
static socklen_t fence_name(struct sockaddr_un *a, pid_t pid, uint64_t start, uint64_t id)
{
    memset(a, 0, sizeof(*a));
    a->sun_family = AF_UNIX;
    int n = snprintf(a->sun_path + 1, sizeof(a->sun_path) - 1, FENCE_PREFIX "%d.%llx:%llx",
                     (int)pid, (unsigned long long)start, (unsigned long long)id);
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
}

/* Signal sync file id: one datagram makes it readable (POLLIN) in every process. */
static void fence_send(pid_t pid, uint64_t start, uint64_t id)
{
    static int out = -1; /* the process's sending socket */
    int fd = __atomic_load_n(&out, __ATOMIC_ACQUIRE);
    if (fd < 0) {
        int mine = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (mine < 0)
            return;
        if (__atomic_compare_exchange_n(&out, &fd, mine, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
            fd = mine;
        else
            close(mine);
    }
    struct sockaddr_un a;
    socklen_t len = fence_name(&a, pid, start, id);
    char one = 1;
    sendto(fd, &one, 1, MSG_DONTWAIT, (struct sockaddr *)&a, len); /* a closed one: refused */
}

/* Send every pending sync file of a shared page whose point has signalled. */
static void st_notify(struct sync_state *st)
{
    if (LD(st->magic) != SYNC_MAGIC)
        return;
    struct sync_page *pg = (struct sync_page *)st;
    uint64_t v = LD(st->value);
    pid_t pid = (pid_t)LD(st->pid);
    uint64_t start = LD(st->start);
    for (unsigned i = 0; i < SYNC_PENDING; i++) {
        uint64_t id = LD(pg->pending[i].id), pt = LD(pg->pending[i].point);
        if (id && id != PENDING_CLAIMED && pt <= v &&
            __atomic_compare_exchange_n(&pg->pending[i].id, &id, 0, false, __ATOMIC_ACQ_REL,
                                        __ATOMIC_ACQUIRE))
            fence_send(pid, start, id);
    }
}

/* Every change of a state wakes its waiters in every process (a shared futex) and sends
 * the sync files it signalled. */
static void st_wake(struct sync_state *st)
{
    __atomic_add_fetch(&st->futex, 1, __ATOMIC_RELEASE);
    syscall(SYS_futex, &st->futex, FUTEX_WAKE, INT32_MAX, NULL, NULL, 0);
    st_notify(st);
}

/* A point only moves up, whichever process moves it. */
static void st_raise(uint64_t *v, uint64_t to)
{
    uint64_t cur = __atomic_load_n(v, __ATOMIC_ACQUIRE);
    while (cur < to && !__atomic_compare_exchange_n(v, &cur, to, false, __ATOMIC_ACQ_REL,
                                                    __ATOMIC_ACQUIRE))
        ;
}

/* A context timeline whose context is gone (destroyed, its file released, its process
 * dead): every job it submitted has ended, so it becomes a host timeline signalled up to
 * the last submission; `error` marks a process that died (its jobs' fences carry an error). */
static void st_orphan(struct sync_state *st, uint64_t last_seq, bool error)
{
    st_raise(&st->value, last_seq);
    __atomic_or_fetch(&st->flags, SYNC_SUBMITTED | (error ? SYNC_ERROR : 0), __ATOMIC_RELEASE);
    __atomic_store_n(&st->hwctx, 0, __ATOMIC_RELEASE);
    st_wake(st);
}

/* Process pid's start time (/proc/PID/stat field 22), 0 when it cannot be read. */
static uint64_t proc_start(pid_t pid)
{
    char path[32], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
    if (fd >= 0)
        close(fd);
    buf[n > 0 ? n : 0] = 0;
    char *p = strrchr(buf, ')'); /* the command name may hold spaces */
    for (int field = 2; p && field < 22; field++)
        p = strchr(p + 1, ' ');
    return p ? strtoull(p + 1, NULL, 10) : 0;
}

/* Has the process (pid, start) that ran a fence's job gone? Its file was released, so
 * every fence it submitted has signalled. */
static bool proc_gone(pid_t pid, uint64_t start)
{
    if (pid <= 0)
        return false;
    if (kill(pid, 0) < 0 && errno == ESRCH)
        return true;
    uint64_t now = start ? proc_start(pid) : 0;
    return now && now != start; /* the pid was reused */
}

static bool owner_gone(const struct sync_state *st)
{
    return proc_gone((pid_t)LD(st->pid), LD(st->start));
}

static int sync_new(struct accel_file *f, uint32_t hwctx, bool signaled, uint32_t *handle)
{
    pthread_mutex_lock(&sync_lock);
    int rc = -ENOMEM;
    for (unsigned i = 0; i < MAX_SYNCOBJS; i++)
        if (!f->sync[i]) {
            struct syncobj *s = calloc(1, sizeof(*s));
            if (s) {
                *s = (struct syncobj){.refs = 1, .owner = hwctx ? f : NULL, .fd = -1,
                                      .pid = getpid()};
                s->local = (struct sync_state){.hwctx = hwctx, .pid = hwctx ? getpid() : 0,
                                               .start = hwctx ? proc_start(getpid()) : 0,
                                               .flags = signaled ? SYNC_SUBMITTED : 0,
                                               .value = signaled};
                s->st = &s->local;
                f->sync[i] = s;
                *handle = i + 1;
                rc = 0;
            }
            break;
        }
    pthread_mutex_unlock(&sync_lock);
    return rc;
}

/* Drop one name of s (sync_lock held); the last one unmaps its shared page. */
static void sync_put(struct syncobj *s)
{
    if (!s || --s->refs)
        return;
    for (struct syncobj **p = &shared_syncs; *p; p = &(*p)->next)
        if (*p == s) {
            *p = s->next;
            break;
        }
    if (s->fd >= 0) {
        munmap(s->st, SYNC_PAGE);
        close(s->fd);
    }
    free(s);
}

/* The publisher of an exported context timeline (a thread of the process running the
 * context): it publishes each submission and each job end to the shared page, so other
 * processes see point N signal when job N ends. */
static void *sync_publisher(void *arg)
{
    struct syncobj *s = arg;
    struct sync_state *st = s->st;
    struct xdna_shim_ctx *ctx = s->owner->ctx;
    uint32_t hw = LD(st->hwctx);
    pthread_mutex_lock(&pub_lock);
    while (!s->stop) {
        pthread_mutex_unlock(&pub_lock);
        struct xdna_shim_hwctx_info hi;
        bool idle = true;
        if (xdna_shim_hwctx_info(ctx, hw, &hi) == 0) {
            if (hi.submitted > LD(st->submitted)) {
                st_raise(&st->submitted, hi.submitted);
                st_wake(st);
            }
            uint64_t next = LD(st->value) + 1;
            idle = next > hi.submitted;
            if (!idle && xdna_shim_wait(ctx, hw, next, SYNC_SLICE_MS) == 0) {
                st_raise(&st->value, next); /* a context's jobs end in order */
                st_wake(st);
            }
        }
        pthread_mutex_lock(&pub_lock);
        if (idle && !s->stop) {
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_nsec += SYNC_SLICE_MS * 1000000l;
            until.tv_sec += until.tv_nsec / 1000000000l;
            until.tv_nsec %= 1000000000l;
            pthread_cond_timedwait(&pub_cond, &pub_lock, &until);
        }
    }
    pthread_mutex_unlock(&pub_lock);
    return NULL;
}

/* Move s's state into a shared page (the first export; sync_lock held). A context
 * timeline of this process gets its publisher. */
static int sync_share(struct syncobj *s)
{
    if (s->fd >= 0)
        return 0;
    int fd = memfd_create(SYNC_MEMFD, MFD_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct stat sb;
    struct sync_state *p = MAP_FAILED;
    if (ftruncate(fd, SYNC_PAGE) < 0 || fstat(fd, &sb) < 0)
        goto close_fd;
    p = mmap(NULL, SYNC_PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED)
        goto close_fd;
    pthread_once(&fork_once, fork_guard);
    *p = s->local;
    p->magic = SYNC_MAGIC;
    p->futex = 0;
    s->st = p;
    s->fd = fd;
    s->dev = sb.st_dev;
    s->ino = sb.st_ino;
    s->next = shared_syncs;
    shared_syncs = s;
    st_wake(&s->local); /* this process's waiters move to the page's word */
    if (s->owner && p->hwctx) {
        s->refs++; /* the publisher's, dropped when the context goes */
        sigset_t all, old;
        sigfillset(&all); /* the program's signals stay on its own threads */
        pthread_sigmask(SIG_SETMASK, &all, &old);
        if (pthread_create(&s->publisher, NULL, sync_publisher, s) == 0)
            s->publishing = true;
        else
            s->refs--;
        pthread_sigmask(SIG_SETMASK, &old, NULL);
    }
    return 0;

close_fd: {
        int err = errno;
        close(fd);
        return -err;
    }
}

/* Orphan (when another name or process may still hold it) and drop the file's names of
 * its context hwctx's timeline; an exported one's publisher stops first. */
static void sync_drop_ctx(struct accel_file *f, uint32_t hwctx)
{
    struct xdna_shim_hwctx_info hi = {0};
    xdna_shim_hwctx_info(f->ctx, hwctx, &hi);
    struct syncobj *pub[MAX_SYNCOBJS];
    unsigned npub = 0;
    pthread_mutex_lock(&sync_lock);
    for (struct syncobj *s = shared_syncs; s && npub < MAX_SYNCOBJS; s = s->next)
        if (s->owner == f && s->pid == getpid() && LD(s->st->hwctx) == hwctx && s->publishing) {
            s->publishing = false;
            pub[npub++] = s;
        }
    pthread_mutex_unlock(&sync_lock);
    for (unsigned i = 0; i < npub; i++) {
        pthread_mutex_lock(&pub_lock);
        pub[i]->stop = true;
        pthread_cond_broadcast(&pub_cond);
        pthread_mutex_unlock(&pub_lock);
        pthread_join(pub[i]->publisher, NULL);
    }
    pthread_mutex_lock(&sync_lock);
    for (unsigned i = 0; i < MAX_SYNCOBJS; i++) {
        struct syncobj *s = f->sync[i];
        if (s && s->owner == f && LD(s->st->hwctx) == hwctx) {
            if (s->refs > 1 || s->fd >= 0)
                st_orphan(s->st, hi.submitted, false);
            s->owner = NULL;
            f->sync[i] = NULL;
            sync_put(s);
        }
    }
    for (unsigned i = 0; i < npub; i++) { /* the publisher's name (its handles may be gone) */
        st_orphan(pub[i]->st, hi.submitted, false);
        pub[i]->owner = NULL;
        sync_put(pub[i]);
    }
    pthread_mutex_unlock(&sync_lock);
}

/* The file's release: every context timeline it runs, named by it or only exported. */
static void sync_drop_file(struct accel_file *f)
{
    uint32_t ctxs[MAX_SYNCOBJS];
    unsigned n = 0;
    pthread_mutex_lock(&sync_lock);
    for (unsigned i = 0; i < MAX_SYNCOBJS; i++)
        if (f->sync[i] && f->sync[i]->owner == f)
            ctxs[n++] = f->sync[i]->st->hwctx;
    for (struct syncobj *s = shared_syncs; s && n < MAX_SYNCOBJS; s = s->next)
        if (s->owner == f && s->pid == getpid())
            ctxs[n++] = s->st->hwctx;
    pthread_mutex_unlock(&sync_lock);
    for (unsigned i = 0; i < n; i++)
        sync_drop_ctx(f, ctxs[i]); /* a second time for one context finds nothing */
    pthread_mutex_lock(&sync_lock);
    for (unsigned i = 0; i < MAX_SYNCOBJS; i++) {
        sync_put(f->sync[i]);
        f->sync[i] = NULL;
    }
    pthread_mutex_unlock(&sync_lock);
}

static struct syncobj *sync_get(struct accel_file *f, uint32_t handle)
{
    return handle && handle <= MAX_SYNCOBJS ? f->sync[handle - 1] : NULL;
}

/* The exported timeline of context hwctx of f, or NULL (sync_lock held). */
static struct syncobj *sync_shared_ctx(struct accel_file *f, uint32_t hwctx)
{
    for (struct syncobj *s = shared_syncs; s; s = s->next)
        if (s->owner == f && s->pid == getpid() && s->st->hwctx == hwctx)
            return s;
    return NULL;
}

/* This process saw job seq of its context hwctx submitted (end: ended): published at once,
 * so a process told of it afterwards finds it. */
static void sync_note_job(struct accel_file *f, uint32_t hwctx, uint64_t seq, bool end)
{
    pthread_mutex_lock(&sync_lock);
    struct syncobj *s = sync_shared_ctx(f, hwctx);
    if (s) {
        st_raise(end ? &s->st->value : &s->st->submitted, seq);
        st_wake(s->st);
    }
    pthread_mutex_unlock(&sync_lock);
    if (s && !end) {
        pthread_mutex_lock(&pub_lock);
        pthread_cond_broadcast(&pub_cond);
        pthread_mutex_unlock(&pub_lock);
    }
}

/* Is point (0: the binary state) of s signalled? 1 yes, 0 not yet (a job still runs),
 * -EINVAL no fence for it yet (nothing submitted up to that point). */
static int sync_check(struct syncobj *s, uint64_t point)
{
    struct sync_state *st = s->st;
    uint32_t hw = LD(st->hwctx);
    if (hw && s->owner) { /* this process runs the context: ask its session */
        if (!point)
            return -EINVAL;
        int rc = xdna_shim_wait(s->owner->ctx, hw, point, 0);
        return rc == 0 ? 1 : errno == ETIME ? 0 : -EINVAL;
    }
    if (hw) { /* another process's context, through what it published */
        if (!point)
            return -EINVAL;
        if (LD(st->value) >= point)
            return 1;
        if (LD(st->submitted) < point)
            return -EINVAL;
        if (!owner_gone(st))
            return 0;
        st_orphan(st, LD(st->submitted), true);
        return 1;
    }
    /* host signals are instant: a point (or binary state) not signalled has no fence yet */
    uint64_t v = LD(st->value);
    if (!(LD(st->flags) & SYNC_SUBMITTED) || (point ? v < point : !v))
        return -EINVAL;
    return 1;
}

/* Sleep until one of the words changes from its value or until `until` (ns, monotonic). */
static void futex_sleep(struct futex_waitv *wv, unsigned n, uint64_t until)
{
    struct timespec ts = {.tv_sec = (time_t)(until / 1000000000u),
                          .tv_nsec = (long)(until % 1000000000u)};
    if (syscall(SYS_futex_waitv, wv, n, 0, &ts, CLOCK_MONOTONIC) < 0 && errno == ENOSYS) {
        uint64_t now = mono_ns(); /* before 5.16: one word, the others at the next slice */
        uint64_t left = until > now ? until - now : 0;
        struct timespec rel = {.tv_sec = 0, .tv_nsec = (long)(left < 10000000u ? left : 10000000u)};
        syscall(SYS_futex, (uint32_t *)(uintptr_t)wv[0].uaddr, FUTEX_WAIT, (uint32_t)wv[0].val,
                &rel, NULL, 0);
    }
}

/* The wait of SYNCOBJ_WAIT and TIMELINE_WAIT: timeout_nsec is absolute CLOCK_MONOTONIC.
 * A context's timeline run by this process is waited for through the shim, every other
 * state on its futex word (shared pages: across processes). */
static int sync_wait(struct accel_file *f, const uint32_t *h, const uint64_t *points, uint32_t n,
                     uint32_t flags, int64_t timeout, uint32_t *first)
{
    bool all = flags & DRM_SYNCOBJ_WAIT_FLAGS_WAIT_ALL;
    bool for_submit = flags & DRM_SYNCOBJ_WAIT_FLAGS_WAIT_FOR_SUBMIT;
    for (;;) {
        uint32_t done = 0, ctx_wait = 0;
        uint64_t ctx_point = 0;
        struct xdna_shim_ctx *ctx_of = NULL;
        struct futex_waitv wv[MAX_WAIT_HANDLES];
        unsigned nw = 0;
        bool foreign = false; /* another process's context: re-check that it lives */
        int hit = -1;
        pthread_mutex_lock(&sync_lock);
        for (uint32_t i = 0; i < n; i++) {
            struct syncobj *s = sync_get(f, h[i]);
            if (!s) {
                pthread_mutex_unlock(&sync_lock);
                return -ENOENT;
            }
            uint32_t seen = LD(s->st->futex); /* before the check: no wake-up is lost */
            int st = sync_check(s, points ? points[i] : 0);
            if (st < 0 && !for_submit) {
                pthread_mutex_unlock(&sync_lock);
                return -EINVAL;
            }
            if (st == 1) {
                done++;
                if (hit < 0)
                    hit = (int)i;
                continue;
            }
            if (s->owner && LD(s->st->hwctx)) {
                if (!ctx_wait) {
                    ctx_wait = s->st->hwctx;
                    ctx_point = points ? points[i] : 0;
                    ctx_of = s->owner->ctx;
                }
                continue;
            }
            foreign |= LD(s->st->hwctx) != 0;
            bool dup = false;
            for (unsigned k = 0; k < nw; k++)
                dup |= wv[k].uaddr == (uint64_t)(uintptr_t)&s->st->futex;
            if (!dup)
                wv[nw++] = (struct futex_waitv){.val = seen, .flags = FUTEX_32,
                                                .uaddr = (uint64_t)(uintptr_t)&s->st->futex};
        }
        pthread_mutex_unlock(&sync_lock);
        if (all ? done == n : done > 0) {
            *first = hit < 0 ? 0 : (uint32_t)hit;
            return 0;
        }
        uint64_t now = mono_ns();
        if (timeout <= 0 || (uint64_t)timeout <= now)
            return -ETIME;
        uint64_t left_ms = ((uint64_t)timeout - now) / 1000000u + 1;
        if (ctx_wait && ctx_point) { /* the job's end wakes us through the shim */
            unsigned slice = nw ? SYNC_SLICE_MS : 1000u;
            if (xdna_shim_wait(ctx_of, ctx_wait, ctx_point,
                               left_ms > slice ? (int)slice : (int)left_ms) < 0 && errno != ETIME)
                return -errno;
            continue;
        }
        if (!nw) { /* only a context's binary state, never signalled: look again later */
            struct timespec ts = {.tv_sec = 0, .tv_nsec = 10000000};
            nanosleep(&ts, NULL);
            continue;
        }
        uint64_t slice = (foreign ? SYNC_SLICE_MS : 1000u) * 1000000ull;
        futex_sleep(wv, nw, (uint64_t)timeout - now > slice ? now + slice : (uint64_t)timeout);
    }
}

/* Read n u32 handles (and n u64 points) from the caller. */
static int read_handles(uint64_t hp, uint64_t pp, uint32_t n, uint32_t *h, uint64_t *pts)
{
    if (!n || n > MAX_WAIT_HANDLES)
        return -EINVAL;
    if (uread(h, hp, n * sizeof(*h)) < 0 || (pts && uread(pts, pp, n * sizeof(*pts)) < 0))
        return -EFAULT;
    return 0;
}

static int syncobj_create(struct accel_file *f, void *k)
{
    struct drm_syncobj_create *a = k;
    if (a->flags & ~(uint32_t)DRM_SYNCOBJ_CREATE_SIGNALED)
        return -EINVAL;
    return sync_new(f, 0, a->flags & DRM_SYNCOBJ_CREATE_SIGNALED, &a->handle);
}

static int syncobj_destroy(struct accel_file *f, void *k)
{
    struct drm_syncobj_destroy *a = k;
    if (a->pad)
        return -EINVAL;
    pthread_mutex_lock(&sync_lock);
    struct syncobj *s = sync_get(f, a->handle);
    if (s) {
        f->sync[a->handle - 1] = NULL;
        sync_put(s);
    }
    pthread_mutex_unlock(&sync_lock);
    return s ? 0 : -EINVAL;
}

static int syncobj_wait(struct accel_file *f, void *k)
{
    struct drm_syncobj_wait *a = k;
    uint32_t h[MAX_WAIT_HANDLES];
    if (a->flags & ~(uint32_t)(DRM_SYNCOBJ_WAIT_FLAGS_WAIT_ALL | DRM_SYNCOBJ_WAIT_FLAGS_WAIT_FOR_SUBMIT |
                               DRM_SYNCOBJ_WAIT_FLAGS_WAIT_DEADLINE))
        return -EINVAL;
    int rc = read_handles(a->handles, 0, a->count_handles, h, NULL);
    return rc ? rc : sync_wait(f, h, NULL, a->count_handles, a->flags, a->timeout_nsec,
                               &a->first_signaled);
}

static int syncobj_timeline_wait(struct accel_file *f, void *k)
{
    struct drm_syncobj_timeline_wait *a = k;
    uint32_t h[MAX_WAIT_HANDLES];
    uint64_t pts[MAX_WAIT_HANDLES];
    if (a->flags & ~(uint32_t)(DRM_SYNCOBJ_WAIT_FLAGS_WAIT_ALL | DRM_SYNCOBJ_WAIT_FLAGS_WAIT_FOR_SUBMIT |
                               DRM_SYNCOBJ_WAIT_FLAGS_WAIT_AVAILABLE | DRM_SYNCOBJ_WAIT_FLAGS_WAIT_DEADLINE))
        return -EINVAL;
    int rc = read_handles(a->handles, a->points, a->count_handles, h, pts);
    return rc ? rc : sync_wait(f, h, pts, a->count_handles, a->flags, a->timeout_nsec,
                               &a->first_signaled);
}

/* RESET, SIGNAL (binary) and TIMELINE_SIGNAL; a context's timeline is the device's own. */
static int syncobj_set(struct accel_file *f, uint64_t hp, uint64_t pp, uint32_t n, int op)
{
    uint32_t h[MAX_WAIT_HANDLES];
    uint64_t pts[MAX_WAIT_HANDLES];
    int rc = read_handles(hp, pp, n, h, op == 2 ? pts : NULL);
    if (rc)
        return rc;
    pthread_mutex_lock(&sync_lock);
    for (uint32_t i = 0; i < n && !rc; i++) {
        struct syncobj *s = sync_get(f, h[i]);
        rc = !s ? -ENOENT : LD(s->st->hwctx) ? -EINVAL : 0;
    }
    for (uint32_t i = 0; i < n && !rc; i++) {
        struct sync_state *st = sync_get(f, h[i])->st;
        if (op == 0) {
            __atomic_store_n(&st->value, 0, __ATOMIC_RELEASE);
            __atomic_and_fetch(&st->flags, ~SYNC_SUBMITTED, __ATOMIC_RELEASE);
        } else {
            st_raise(&st->value, op == 1 || !pts[i] ? 1 : pts[i]); /* point 0: the binary fence */
            __atomic_or_fetch(&st->flags, SYNC_SUBMITTED, __ATOMIC_RELEASE);
        }
        st_wake(st);
    }
    pthread_mutex_unlock(&sync_lock);
    return rc;
}

static int syncobj_reset(struct accel_file *f, void *k)
{
    struct drm_syncobj_array *a = k;
    return a->pad ? -EINVAL : syncobj_set(f, a->handles, 0, a->count_handles, 0);
}

static int syncobj_signal(struct accel_file *f, void *k)
{
    struct drm_syncobj_array *a = k;
    return a->pad ? -EINVAL : syncobj_set(f, a->handles, 0, a->count_handles, 1);
}

static int syncobj_timeline_signal(struct accel_file *f, void *k)
{
    struct drm_syncobj_timeline_array *a = k;
    return a->flags ? -EINVAL : syncobj_set(f, a->handles, a->points, a->count_handles, 2);
}

/* QUERY: each syncobj's highest signalled point (a context's: its last finished job). */
static int syncobj_query(struct accel_file *f, void *k)
{
    struct drm_syncobj_timeline_array *a = k;
    uint32_t h[MAX_WAIT_HANDLES];
    uint64_t pts[MAX_WAIT_HANDLES];
    bool last = a->flags & DRM_SYNCOBJ_QUERY_FLAGS_LAST_SUBMITTED;
    if (a->flags & ~(uint32_t)DRM_SYNCOBJ_QUERY_FLAGS_LAST_SUBMITTED)
        return -EINVAL;
    int rc = read_handles(a->handles, 0, a->count_handles, h, NULL);
    if (rc)
        return rc;
    for (uint32_t i = 0; i < a->count_handles; i++) {
        pthread_mutex_lock(&sync_lock);
        struct syncobj *s = sync_get(f, h[i]);
        struct accel_file *of = s ? s->owner : NULL; /* the file running the context */
        uint32_t hw = s ? LD(s->st->hwctx) : 0;
        if (s && hw && !of) /* another process's: what it published (a dead one: all ended) */
            sync_check(s, LD(s->st->value) + 1);
        hw = s ? LD(s->st->hwctx) : 0;
        pts[i] = s ? (hw && !of && last ? LD(s->st->submitted) : LD(s->st->value)) : 0;
        pthread_mutex_unlock(&sync_lock);
        if (!s)
            return -ENOENT;
        if (hw && of) { /* highest seq p with every job up to p final */
            struct xdna_shim_hwctx_info hi;
            if (xdna_shim_hwctx_info(of->ctx, hw, &hi) < 0)
                return -errno;
            uint64_t p = 0;
            while (xdna_shim_wait(of->ctx, hw, p + 1, 0) == 0)
                p++;
            pts[i] = last ? hi.submitted : p;
        }
    }
    return uwrite(a->points, pts, a->count_handles * sizeof(*pts));
}

/* TRANSFER: dst (at dst_point, or its binary state for 0) takes src's point once that is
 * signalled; the call waits for it, as EXEC_CMD DEPENDENCY does (docs/spec/uapi.md §7). */
static int syncobj_transfer(struct accel_file *f, void *k)
{
    struct drm_syncobj_transfer *a = k;
    uint32_t first;
    if (a->pad || a->flags & ~(uint32_t)DRM_SYNCOBJ_WAIT_FLAGS_WAIT_FOR_SUBMIT)
        return -EINVAL;
    pthread_mutex_lock(&sync_lock);
    struct syncobj *dst = sync_get(f, a->dst_handle), *src = sync_get(f, a->src_handle);
    bool dst_ctx = dst && LD(dst->st->hwctx);
    pthread_mutex_unlock(&sync_lock);
    if (!dst || !src)
        return -ENOENT;
    if (dst_ctx)
        return -EINVAL; /* a context's timeline is the device's */
    int rc = sync_wait(f, &a->src_handle, &a->src_point, 1,
                       DRM_SYNCOBJ_WAIT_FLAGS_WAIT_ALL | a->flags, INT64_MAX, &first);
    if (rc)
        return rc;
    uint64_t pt = a->dst_point ? a->dst_point : 1;
    return syncobj_set(f, (uint64_t)(uintptr_t)&a->dst_handle, (uint64_t)(uintptr_t)&pt, 1, 2);
}

/* EXEC_CMD DEPENDENCY: wait (in the call) until every (syncobj, point) is signalled, EINVAL
 * when one has no fence yet (nothing submitted for it);
 * SIGNAL: once the context's last submitted job ends, signal each (syncobj, point). */
static int exec_fences(struct accel_file *f, struct amdxdna_drm_exec_cmd *a)
{
    uint32_t h[MAX_WAIT_HANDLES], first;
    uint64_t pts[MAX_WAIT_HANDLES];
    if (a->cmd_count != a->arg_count)
        return -EINVAL;
    int rc = read_handles(a->cmd_handles, a->args, a->cmd_count, h, pts);
    if (rc)
        return rc;
    struct xdna_shim_hwctx_info hi;
    if (!a->hwctx || xdna_shim_hwctx_info(f->ctx, a->hwctx, &hi) < 0)
        return -EINVAL;
    if (a->type == AMDXDNA_CMD_SUBMIT_DEPENDENCY) /* every point must have a fence */
        return sync_wait(f, h, pts, a->cmd_count, DRM_SYNCOBJ_WAIT_FLAGS_WAIT_ALL, INT64_MAX,
                         &first);
    if (hi.submitted && xdna_shim_wait(f->ctx, a->hwctx, hi.submitted, -1) < 0)
        return -errno;
    return syncobj_set(f, a->cmd_handles, a->args, a->cmd_count, 2);
}

/* ---- sync files (docs/spec/uapi.md §6) -------------------------------------------- */

/* A sync file is a datagram socket bound to an abstract name FENCE_PREFIX "pid.start:id":
 * pid and start name the process running the fence's job (0: signalled at export), id
 * names the sync file. It becomes
 * readable (POLLIN) when the fence signals: at once for a signalled one, else when a
 * process sees the job's point signal (st_notify). */
static int fence_socket(pid_t pid, uint64_t start, uint64_t *id)
{
    static uint32_t counter;
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0); /* O_CLOEXEC, as the DRM core */
    if (fd < 0)
        return -errno;
    for (unsigned tries = 0; tries < 64; tries++) {
        *id = (uint64_t)(uint32_t)getpid() << 32 | __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED);
        struct sockaddr_un a;
        socklen_t len = fence_name(&a, pid, start, *id);
        if (bind(fd, (struct sockaddr *)&a, len) == 0)
            return fd;
        if (errno != EADDRINUSE)
            break;
    }
    int err = errno;
    close(fd);
    return -err;
}

/* EXPORT_SYNC_FILE: the syncobj's fence at point (0: its current fence: the binary state, a
 * timeline's last point, a context's last submitted job) as a new sync file. ENOENT no
 * such syncobj, EINVAL no fence there yet (the DRM core's answers). */
static int export_sync_file(struct accel_file *f, struct drm_syncobj_handle *a)
{
    uint64_t point = (a->flags & DRM_SYNCOBJ_HANDLE_TO_FD_FLAGS_TIMELINE) ? a->point : 0;
    pthread_mutex_lock(&sync_lock);
    struct syncobj *s = sync_get(f, a->handle);
    int rc = s ? 0 : -ENOENT, signalled = 0;
    uint32_t hw = s ? LD(s->st->hwctx) : 0;
    if (s && hw) { /* a context's job: its last submitted one for point 0 */
        uint64_t last = LD(s->st->submitted);
        if (s->owner) {
            struct xdna_shim_hwctx_info hi;
            last = xdna_shim_hwctx_info(s->owner->ctx, hw, &hi) == 0 ? hi.submitted : 0;
        }
        point = point ? point : last;
        signalled = point ? sync_check(s, point) : -EINVAL;
        if (signalled == 0)
            rc = sync_share(s); /* the page carries the pending sync file */
    } else if (s) {
        uint64_t v = LD(s->st->value);
        signalled = (LD(s->st->flags) & SYNC_SUBMITTED) && (point ? v >= point : v != 0) ? 1 : -EINVAL;
    }
    if (rc == 0 && signalled < 0)
        rc = -EINVAL;
    bool pend = rc == 0 && signalled == 0;
    pid_t pid = pend ? (pid_t)LD(s->st->pid) : 0;
    uint64_t id = 0, start = pend ? LD(s->st->start) : 0;
    int fd = rc ? -1 : fence_socket(pid, start, &id);
    if (rc == 0 && fd < 0)
        rc = fd;
    if (rc == 0 && signalled == 0) { /* pending: the page sends it when the point signals */
        struct sync_page *pg = (struct sync_page *)s->st;
        unsigned i = 0;
        for (uint64_t zero = 0; i < SYNC_PENDING; i++, zero = 0)
            if (__atomic_compare_exchange_n(&pg->pending[i].id, &zero, PENDING_CLAIMED, false,
                                            __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
                break;
        if (i == SYNC_PENDING) {
            close(fd);
            rc = -ENOMEM;
        } else {
            __atomic_store_n(&pg->pending[i].point, point, __ATOMIC_RELEASE);
            __atomic_store_n(&pg->pending[i].id, id, __ATOMIC_RELEASE);
            if (sync_check(s, point) == 1) { /* it signalled meanwhile */
                st_raise(&s->st->value, point); /* a context's jobs end in order */
                st_wake(s->st);
            }
        }
    } else if (rc == 0) {
        fence_send(0, 0, id);
    }
    pthread_mutex_unlock(&sync_lock);
    if (rc == 0)
        a->fd = fd;
    return rc;
}

/* ---- syncobj fds (docs/spec/uapi.md §6) -------------------------------------------- */

/* HANDLE_TO_FD: the syncobj's shared page, one more fd of its memfd (close-on-exec, as the
 * DRM core makes it); any process may import it. */
static int syncobj_handle_to_fd(struct accel_file *f, void *k)
{
    struct drm_syncobj_handle *a = k;
    int rc = xdna_uapi_check_syncobj_handle(a, 1);
    if (rc < 0)
        return rc;
    if (rc == 1)
        return export_sync_file(f, a);
    pthread_mutex_lock(&sync_lock);
    struct syncobj *s = sync_get(f, a->handle);
    rc = !s ? -EINVAL : sync_share(s);
    int fd = rc ? -1 : fcntl(s->fd, F_DUPFD_CLOEXEC, 0);
    if (rc == 0 && fd < 0)
        rc = -errno;
    pthread_mutex_unlock(&sync_lock);
    if (rc == 0)
        a->fd = fd;
    return rc;
}

/* The view of this process for the syncobj page fd names: the one it has (a context of
 * this process keeps its owner), or a new mapping (sync_lock held). */
static int sync_view(int fd, struct syncobj **out)
{
    char link[64], target[64];
    struct stat sb;
    if (fstat(fd, &sb) < 0)
        return -EINVAL; /* not an fd: the DRM core's answer */
    snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, target, sizeof(target) - 1);
    target[n > 0 ? n : 0] = 0;
    if (n <= 0 || strncmp(target, SYNC_MEMFD_LINK, strlen(SYNC_MEMFD_LINK)) != 0 ||
        sb.st_size != SYNC_PAGE)
        return -EINVAL; /* not a syncobj fd */
    for (struct syncobj *s = shared_syncs; s; s = s->next)
        if (s->pid == getpid() && s->dev == sb.st_dev && s->ino == sb.st_ino) {
            *out = s;
            return 0;
        }
    struct sync_state *p = mmap(NULL, SYNC_PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED)
        return -EINVAL;
    struct syncobj *s = LD(p->magic) == SYNC_MAGIC ? calloc(1, sizeof(*s)) : NULL;
    int own = s ? fcntl(fd, F_DUPFD_CLOEXEC, 0) : -1;
    if (!s || own < 0) {
        munmap(p, SYNC_PAGE);
        free(s);
        return s ? -EMFILE : -EINVAL;
    }
    *s = (struct syncobj){.st = p, .fd = own, .pid = getpid(), .dev = sb.st_dev,
                          .ino = sb.st_ino, .next = shared_syncs};
    shared_syncs = s;
    *out = s;
    return 0;
}

/* IMPORT_SYNC_FILE: the sync file's fence into the syncobj (point 0: its binary state) once
 * it has signalled; the call waits for that, as TRANSFER does (docs/spec/uapi.md §7). EINVAL
 * not a sync file, ENOENT no such syncobj, EINVAL a context's timeline (the device's). */
static int import_sync_file(struct accel_file *f, struct drm_syncobj_handle *a)
{
    uint64_t point = (a->flags & DRM_SYNCOBJ_FD_TO_HANDLE_FLAGS_TIMELINE) ? a->point : 0;
    struct sockaddr_un sa;
    socklen_t len = sizeof(sa);
    int pid = -1;
    unsigned long long start, id;
    char tail;
    memset(&sa, 0, sizeof(sa));
    if (getsockname(a->fd, (struct sockaddr *)&sa, &len) < 0 || sa.sun_family != AF_UNIX ||
        len <= offsetof(struct sockaddr_un, sun_path) + 1 || sa.sun_path[0] ||
        sscanf(sa.sun_path + 1, FENCE_PREFIX "%d.%llx:%llx%c", &pid, &start, &id, &tail) != 3)
        return -EINVAL; /* not a sync file */
    pthread_mutex_lock(&sync_lock);
    struct syncobj *s = sync_get(f, a->handle);
    int rc = !s ? -ENOENT : LD(s->st->hwctx) ? -EINVAL : 0;
    pthread_mutex_unlock(&sync_lock);
    if (rc)
        return rc;
    /* a fence whose process died has signalled (with an error): its file was released */
    struct pollfd p = {.fd = a->fd, .events = POLLIN};
    while (poll(&p, 1, SYNC_SLICE_MS) == 0 || (p.revents & POLLIN) == 0) {
        if (proc_gone(pid, start))
            break;
        if (p.revents & (POLLERR | POLLNVAL))
            return -EINVAL;
    }
    uint64_t pt = point ? point : 1;
    return syncobj_set(f, (uint64_t)(uintptr_t)&a->handle, (uint64_t)(uintptr_t)&pt, 1, 2);
}

/* FD_TO_HANDLE: a handle of this file for the syncobj the fd names, a name of its own
 * (destroying one name leaves the others), from any process. */
static int syncobj_fd_to_handle(struct accel_file *f, void *k)
{
    struct drm_syncobj_handle *a = k;
    int rc = xdna_uapi_check_syncobj_handle(a, 0);
    if (rc < 0)
        return rc;
    if (rc == 1)
        return import_sync_file(f, a);
    pthread_mutex_lock(&sync_lock);
    struct syncobj *s = NULL;
    rc = sync_view(a->fd, &s);
    unsigned slot = MAX_SYNCOBJS;
    for (unsigned i = 0; rc == 0 && i < MAX_SYNCOBJS && slot == MAX_SYNCOBJS; i++)
        if (!f->sync[i])
            slot = i;
    if (rc == 0 && slot == MAX_SYNCOBJS)
        rc = -ENOMEM;
    if (rc == 0) {
        f->sync[slot] = s;
        s->refs++;
        a->handle = slot + 1;
    } else if (s && !s->refs) {
        s->refs = 1;
        sync_put(s);
    }
    pthread_mutex_unlock(&sync_lock);
    return rc;
}

/* ---- amdxdna: contexts and commands ----------------------------------------------- */

static int create_hwctx(struct accel_file *f, void *k)
{
    struct amdxdna_drm_create_hwctx *a = k;
    struct amdxdna_qos_info qos;
    struct xdna_shim_info info;
    if (a->ext || a->ext_flags)
        return -EINVAL;
    if (uread(&qos, a->qos_p, sizeof(qos)) < 0)
        return -EFAULT;
    if (xdna_shim_get_info(f->ctx, &info) < 0)
        return -errno;
    uint32_t cols = info.core_rows ? a->num_tiles / info.core_rows : 0;
    if (!cols || cols > info.total_col)
        return -EINVAL;
    if (!heap_handle(f))
        return -ENOENT; /* the client's dev heap must exist first */
    uint64_t uva;
    if (dev_bo_userptr(f, 0, 1, &uva) < 0)
        return -EINVAL; /* ... and be mapped */
    /* QoS drives the context's DPM level; out of range is EINVAL (docs/spec/jobs.md §6) */
    struct xdna_shim_hwctx_params p = {.priority = qos.priority, .num_cols = cols,
                                       .start_col = -1, .gops = qos.gops, .fps = qos.fps,
                                       .latency_ms = qos.latency, .max_opc = a->max_opc};
    uint32_t h;
    if (xdna_shim_hwctx_create(f->ctx, &p, &h) < 0)
        return -errno;
    for (unsigned i = 0; i < XDNA_MAX_HWCTX; i++)
        if (!f->qos[i].handle) {
            f->qos[i] = (struct ctx_qos){.handle = h, .qos = qos};
            break;
        }
    a->handle = h;
    if (sync_new(f, h, false, &a->syncobj_handle) < 0) {
        xdna_shim_hwctx_destroy(f->ctx, h);
        return -ENOMEM;
    }
    a->umq_doorbell = AMDXDNA_INVALID_DOORBELL_OFFSET;
    return 0;
}

static int destroy_hwctx(struct accel_file *f, void *k)
{
    struct amdxdna_drm_destroy_hwctx *a = k;
    if (a->pad)
        return -EINVAL;
    if (!hwctx_exists(f, a->handle))
        return -EINVAL;
    for (unsigned i = 0; i < XDNA_MAX_HWCTX; i++) {
        if (f->cu_ctx[i] == a->handle)
            f->cu_ctx[i] = 0;
        if (f->qos[i].handle == a->handle)
            f->qos[i].handle = 0;
    }
    sync_drop_ctx(f, a->handle);
    return xdna_shim_hwctx_destroy(f->ctx, a->handle) < 0 ? -errno : 0;
}

static int config_cu(struct accel_file *f, uint32_t hwctx, uint64_t buf, uint32_t size)
{
    uint8_t data[CU_CONFIG_MAX];
    if (!size || size > CU_CONFIG_MAX)
        return -EINVAL;
    if (uread(data, buf, size) < 0)
        return -EFAULT;
    const struct amdxdna_hwctx_param_config_cu *cfg = (const void *)data;
    if (size < sizeof(*cfg) || !cfg->num_cus ||
        sizeof(*cfg) + (size_t)cfg->num_cus * sizeof(struct amdxdna_cu_config) > size)
        return -EINVAL;
    for (unsigned i = 0; i < cfg->num_cus; i++) {
        struct bo_view v;
        if (bo_view(f, cfg->cu_configs[i].cu_bo, &v) < 0)
            return -EINVAL;
    }
    unsigned free_slot = XDNA_MAX_HWCTX;
    for (unsigned i = 0; i < XDNA_MAX_HWCTX; i++) {
        if (f->cu_ctx[i] == hwctx)
            return -EINVAL; /* configured once per context */
        if (!f->cu_ctx[i] && free_slot == XDNA_MAX_HWCTX)
            free_slot = i;
    }
    if (free_slot == XDNA_MAX_HWCTX)
        return -ENOSPC;
    f->cu_ctx[free_slot] = hwctx;
    return 0;
}

static int config_hwctx(struct accel_file *f, void *k)
{
    struct amdxdna_drm_config_hwctx *a = k;
    if (a->pad)
        return -EINVAL;
    if (!hwctx_exists(f, a->handle))
        return -EINVAL;
    switch (a->param_type) {
    case DRM_AMDXDNA_HWCTX_CONFIG_CU:
        return config_cu(f, a->handle, a->param_val, a->param_val_size);
    case DRM_AMDXDNA_HWCTX_ASSIGN_DBG_BUF:
    case DRM_AMDXDNA_HWCTX_REMOVE_DBG_BUF: /* param_val is the DEV BO (docs/spec/jobs.md §4a) */
        return xdna_shim_hwctx_config(f->ctx, a->handle,
                                      a->param_type == DRM_AMDXDNA_HWCTX_ASSIGN_DBG_BUF
                                          ? XDNA_SHIM_HWCTX_ASSIGN_DBG_BUF
                                          : XDNA_SHIM_HWCTX_REMOVE_DBG_BUF,
                                      a->param_val) < 0 ? -errno : 0;
    case DRM_AMDXDNA_HWCTX_CONFIG_OPCODE_TIMEOUT:
        return -EOPNOTSUPP; /* Versal's (VE2) only: the AIE2 driver refuses it (uapi.md §6) */
    default:
        return -EINVAL;
    }
}

static int exec_cmd(struct accel_file *f, void *k)
{
    struct amdxdna_drm_exec_cmd *a = k;
    if (a->ext || a->ext_flags)
        return -EINVAL;
    if (a->type == AMDXDNA_CMD_SUBMIT_DEPENDENCY || a->type == AMDXDNA_CMD_SUBMIT_SIGNAL)
        return exec_fences(f, a);
    if (a->type != AMDXDNA_CMD_SUBMIT_EXEC_BUF || a->cmd_count != 1 ||
        a->arg_count > EXEC_MAX_ARGS)
        return -EINVAL;
    uint32_t *args = a->arg_count ? calloc(a->arg_count, sizeof(uint32_t)) : NULL;
    if (a->arg_count && !args)
        return -ENOMEM;
    int rc = uread(args, a->args, a->arg_count * sizeof(uint32_t));
    struct bo_view v;
    for (uint32_t i = 0; rc == 0 && i < a->arg_count; i++)
        if (bo_view(f, args[i], &v) < 0)
            rc = -ENOENT;
    free(args);
    if (rc < 0)
        return rc;
    uint32_t cmd = (uint32_t)a->cmd_handles;
    if (a->cmd_handles >> 32 || bo_view(f, cmd, &v) < 0 || v.type != AMDXDNA_BO_CMD)
        return -EINVAL;
    if (!hwctx_exists(f, a->hwctx))
        return -EINVAL;
    uint64_t seq;
    if (xdna_shim_exec(f->ctx, a->hwctx, cmd, &seq) < 0)
        return -errno;
    sync_note_job(f, a->hwctx, seq, false); /* other processes learn of it now */
    a->seq = seq;
    return 0;
}

static int wait_cmd(struct accel_file *f, void *k)
{
    struct amdxdna_drm_wait_cmd *a = k;
    if (!hwctx_exists(f, a->hwctx))
        return -EINVAL;
    int ms = a->timeout ? (a->timeout > INT32_MAX ? INT32_MAX : (int)a->timeout) : -1;
    if (xdna_shim_wait(f->ctx, a->hwctx, a->seq, ms) < 0)
        return -errno;
    sync_note_job(f, a->hwctx, a->seq, true); /* seen ended here: ended for all */
    return 0;
}

/* ---- amdxdna: queries ------------------------------------------------------------- */

/* "Copy what fits": the answer's first min(buffer_size, size) bytes, never more. */
static int put_fit(struct amdxdna_drm_get_info *a, const void *val, size_t size)
{
    return uwrite(a->buffer, val, a->buffer_size < size ? a->buffer_size : size);
}

static int query_metadata(struct accel_file *f, struct amdxdna_drm_get_info *a)
{
    xdna_aie2_query_aie_tile_info_resp_t ti;
    xdna_aie2_query_aie_version_resp_t av;
    if (xdna_api_enter(f->ctx) < 0)
        return -errno;
    int rc;
    if (xdna_is_aie4(f->ctx->chip)) { /* its own queries, which a client may send */
        rc = xdna_aie4_aie_info(f->ctx, &av, &ti);
    } else {
        rc = xdna_fw_req_u32(f->ctx, XDNA_AIE2_MSG_QUERY_AIE_TILE_INFO, &ti, sizeof(ti));
        if (rc == 0)
            rc = xdna_fw_req_u32(f->ctx, XDNA_AIE2_MSG_QUERY_AIE_VERSION, &av, sizeof(av));
    }
    int err = errno;
    xdna_api_leave(f->ctx, rc);
    if (rc < 0)
        return -err;
    struct amdxdna_drm_query_aie_metadata md = {
        .col_size = ti.size, .cols = ti.cols, .rows = ti.rows,
        .version = {.major = av.major, .minor = av.minor},
        .core = {.row_count = ti.core_rows, .row_start = ti.core_row_start,
                 .dma_channel_count = ti.core_dma_channels, .lock_count = ti.core_locks,
                 .event_reg_count = ti.core_events},
        .mem = {.row_count = ti.mem_rows, .row_start = ti.mem_row_start,
                .dma_channel_count = ti.mem_dma_channels, .lock_count = ti.mem_locks,
                .event_reg_count = ti.mem_events},
        .shim = {.row_count = ti.shim_rows, .row_start = ti.shim_row_start,
                 .dma_channel_count = ti.shim_dma_channels, .lock_count = ti.shim_locks,
                 .event_reg_count = ti.shim_events}};
    return put_fit(a, &md, sizeof(md));
}

/* The registry's context rows (every process's), copied out under its lock. */
static unsigned reg_contexts(struct accel_file *f, struct xdna_reg_ctx *out, unsigned cap)
{
    unsigned n = 0;
    if (!f->reg)
        return 0;
    xdna_reg_lock(f->reg);
    for (unsigned i = 0; i < XDNA_REG_MAX_CTX && n < cap; i++)
        if (f->reg->ctx[i].file)
            out[n++] = f->reg->ctx[i];
    xdna_reg_unlock(f->reg);
    return n;
}

/* AIE_STATUS: the argument is a query_aie_status the buffer names; a status buffer smaller
 * than cols * col_size is refused; the firmware dumps one col_status per column the
 * device's contexts (every process's) hold, QUERY_COL_STATUS into the session's query DMA
 * buffer; the dump and cols_filled (that column bitmap) go back (docs/spec/uapi.md §6). */
static int query_aie_status(struct accel_file *f, struct amdxdna_drm_get_info *a)
{
    static __thread struct xdna_reg_ctx rows[XDNA_REG_MAX_CTX];
    struct amdxdna_drm_query_aie_status st;
    int rc = uread(&st, a->buffer, sizeof(st));
    if (rc < 0)
        return rc;
    uint32_t bitmap = 0;
    unsigned n = reg_contexts(f, rows, XDNA_REG_MAX_CTX);
    for (unsigned i = 0; i < n; i++)
        for (uint32_t c = rows[i].start_col; c < rows[i].start_col + rows[i].num_col && c < 32; c++)
            bitmap |= 1u << c;
    xdna_aie2_query_aie_tile_info_resp_t ti;
    xdna_aie2_query_col_status_resp_t resp = {0};
    uint64_t addr = 0;
    uint8_t *va = NULL;
    if (xdna_api_enter(f->ctx) < 0)
        return -errno;
    rc = xdna_fw_req_u32(f->ctx, XDNA_AIE2_MSG_QUERY_AIE_TILE_INFO, &ti, sizeof(ti));
    int err = rc < 0 ? errno : 0;
    if (rc == 0 && (uint64_t)st.buffer_size < (uint64_t)ti.cols * ti.size) {
        rc = -1;
        err = EINVAL;
    }
    if (rc == 0 && (rc = xdna_health_buf(f->ctx, &addr, &va)) < 0)
        err = errno;
    if (rc == 0) {
        xdna_aie2_query_col_status_req_t req = {
            .dump_addr = addr, .dump_size = XDNA_QUERY_BUF_SIZE < st.buffer_size ? XDNA_QUERY_BUF_SIZE
                                                                                  : st.buffer_size,
            .num_cols = (uint32_t)__builtin_popcount(bitmap), .aie_bitmap = bitmap};
        rc = xdna_fw_req(f->ctx, XDNA_AIE2_MSG_QUERY_COL_STATUS, &req, sizeof(req), &resp, sizeof(resp));
        /* a firmware error status is the driver's EINVAL (xdna_fw_req says EIO) */
        err = rc < 0 ? (resp.status != XDNA_AIE2_STATUS_SUCCESS ? EINVAL : errno) : 0;
        if (rc == 0 && (resp.size > st.buffer_size || resp.size > XDNA_QUERY_BUF_SIZE)) {
            rc = -1;
            err = EINVAL;
        }
    }
    static __thread uint8_t dump[XDNA_QUERY_BUF_SIZE];
    if (rc == 0)
        memcpy(dump, va, resp.size);
    xdna_api_leave(f->ctx, rc);
    if (rc < 0)
        return -err;
    rc = uwrite(st.buffer, dump, resp.size);
    if (rc < 0)
        return rc;
    st.cols_filled = bitmap;
    return uwrite(a->buffer, &st, sizeof(st));
}

/* HW_CONTEXTS: one query_hwctx per context on the device; a buffer too small for all of
 * them is refused, buffer_size comes back as the bytes written. */
static int query_hw_contexts(struct accel_file *f, struct amdxdna_drm_get_info *a)
{
    static __thread struct xdna_reg_ctx rows[XDNA_REG_MAX_CTX];
    static __thread struct amdxdna_drm_query_hwctx out[XDNA_REG_MAX_CTX];
    unsigned n = reg_contexts(f, rows, XDNA_REG_MAX_CTX);
    for (unsigned i = 0; i < n; i++)
        out[i] = (struct amdxdna_drm_query_hwctx){
            .context_id = rows[i].context_id, .start_col = rows[i].start_col,
            .num_col = rows[i].num_col, .pid = rows[i].pid,
            .command_submissions = rows[i].submissions,
            .command_completions = rows[i].completions, .errors = rows[i].errors};
    size_t bytes = n * sizeof(out[0]);
    if (a->buffer_size < bytes)
        return -EINVAL;
    int rc = uwrite(a->buffer, out, bytes);
    if (rc == 0)
        a->buffer_size = (uint32_t)bytes;
    return rc;
}

/* TELEMETRY: the buffer is a telemetry header with a map of `limit` (the context limit) u32
 * entries, then the firmware's data. A buffer no larger than that header is refused, as
 * is data over 4 MiB; GET_TELEMETRY fills the session's query DMA buffer (the firmware
 * refuses a type it does not keep: EINVAL), whose bytes go after the map; the header
 * gets the firmware's version and map[firmware context id] = the context's handle for
 * each connected context of the device (docs/spec/uapi.md §6). */
#define TELEMETRY_DATA_MAX (4u << 20)
static int query_telemetry(struct accel_file *f, struct amdxdna_drm_get_info *a, uint32_t limit)
{
    static __thread struct xdna_reg_ctx rows[XDNA_REG_MAX_CTX];
    static __thread _Alignas(8) uint8_t hdr_buf[sizeof(struct amdxdna_drm_query_telemetry_header) +
                                                XDNA_REG_MAX_CTX * sizeof(uint32_t)];
    if (limit > XDNA_REG_MAX_CTX)
        return -EINVAL;
    struct amdxdna_drm_query_telemetry_header *h = (void *)hdr_buf;
    size_t hsz = sizeof(*h) + (size_t)limit * sizeof(uint32_t);
    if (a->buffer_size <= hsz || a->buffer_size - hsz > TELEMETRY_DATA_MAX)
        return -EINVAL;
    memset(hdr_buf, 0, sizeof(hdr_buf));
    int rc = uread(h, a->buffer, sizeof(*h));
    if (rc < 0)
        return rc;
    uint32_t data_sz = a->buffer_size - (uint32_t)hsz;
    xdna_aie2_get_telemetry_resp_t resp = {0};
    uint64_t addr = 0;
    uint8_t *va = NULL;
    static __thread uint8_t data[XDNA_QUERY_BUF_SIZE];
    if (xdna_api_enter(f->ctx) < 0)
        return -errno;
    int err = 0;
    if ((rc = xdna_health_buf(f->ctx, &addr, &va)) < 0)
        err = errno;
    if (rc == 0) {
        xdna_aie2_get_telemetry_req_t req = {
            .type = h->type, .buf_addr = addr,
            .buf_size = data_sz < XDNA_QUERY_BUF_SIZE ? data_sz : XDNA_QUERY_BUF_SIZE};
        rc = xdna_fw_req(f->ctx, XDNA_AIE2_MSG_GET_TELEMETRY, &req, sizeof(req), &resp, sizeof(resp));
        err = rc < 0 ? (resp.status != XDNA_AIE2_STATUS_SUCCESS ? EINVAL : errno) : 0;
        if (rc == 0 && resp.size > req.buf_size) {
            rc = -1;
            err = EINVAL;
        }
        if (rc == 0)
            memcpy(data, va, resp.size);
    }
    xdna_api_leave(f->ctx, rc);
    if (rc < 0)
        return -err;
    rc = uwrite(a->buffer + hsz, data, resp.size);
    if (rc < 0)
        return rc;
    h->major = resp.major;
    h->minor = resp.minor;
    h->map_num_elements = limit;
    unsigned n = reg_contexts(f, rows, XDNA_REG_MAX_CTX);
    for (unsigned i = 0; i < n; i++)
        if (rows[i].state == AMDXDNA_HWCTX_STATE_ACTIVE && rows[i].hwctx_id < limit)
            h->map[rows[i].hwctx_id] = rows[i].context_id;
    return uwrite(a->buffer, hdr_buf, hsz);
}

/* SENSORS (AIE2): the platform firmware's metrics (xdna_pm_npu_metrics) as the driver
 * serves them: "Total Power" in mW, then one "Column N Utilization" in % per column up to
 * the metrics table's 8; a buffer short of all of them is refused, `buffer_size` comes back
 * as the bytes written (docs/spec/uapi.md §6 "Sensors"). */
static int query_sensors(struct accel_file *f, struct amdxdna_drm_get_info *a, uint32_t total_col)
{
    static __thread struct amdxdna_drm_query_sensor out[1 + XDNA_PROTO_CTRL_PMF_COLUMNS];
    uint32_t ncol = total_col < XDNA_PROTO_CTRL_PMF_COLUMNS ? total_col : XDNA_PROTO_CTRL_PMF_COLUMNS;
    uint32_t bytes = (1 + ncol) * (uint32_t)sizeof(out[0]);
    if (a->buffer_size < bytes)
        return -EINVAL;
    uint32_t power;
    uint16_t busy[XDNA_PROTO_CTRL_PMF_COLUMNS];
    if (xdna_pm_npu_metrics(f->ctx, &power, busy) < 0)
        return -errno;
    memset(out, 0, sizeof(out));
    out[0].type = AMDXDNA_SENSOR_TYPE_POWER;
    out[0].input = power;
    out[0].unitm = -3;
    snprintf((char *)out[0].label, sizeof(out[0].label), "Total Power");
    snprintf((char *)out[0].units, sizeof(out[0].units), "mW");
    for (uint32_t i = 0; i < ncol; i++) {
        struct amdxdna_drm_query_sensor *s = &out[1 + i];
        s->type = AMDXDNA_SENSOR_TYPE_COLUMN_UTILIZATION;
        s->input = busy[i];
        snprintf((char *)s->label, sizeof(s->label), "Column %u Utilization", i);
        snprintf((char *)s->units, sizeof(s->units), "%%");
    }
    if (uwrite(a->buffer, out, bytes) < 0)
        return -EFAULT;
    a->buffer_size = bytes;
    return 0;
}

/* A call into the driver session `exec` keeps (xdna_emu.uapi.DriverService, docs/spec/uapi.md
 * §6) for state that is the driver's, not a client session's: one SOCK_SEQPACKET request
 * {u32 command number, u32 param, the argument's bytes}, one reply {i32 errno, the answer};
 * the answer's length in *got. -EOPNOTSUPP when there is no such session. */
static int driver_call_fd(struct accel_file *f, uint32_t nr, uint32_t param, const void *body,
                          size_t len, void *ans, size_t cap, size_t *got, int *fd);

static int driver_call(struct accel_file *f, uint32_t nr, uint32_t param, const void *body,
                       size_t len, void *ans, size_t cap, size_t *got)
{
    return driver_call_fd(f, nr, param, body, len, ans, cap, got, NULL);
}

/* driver_call that may also receive one fd with the reply (SCM_RIGHTS): *fd, or -1. */
static int driver_call_fd(struct accel_file *f, uint32_t nr, uint32_t param, const void *body,
                          size_t len, void *ans, size_t cap, size_t *got, int *fd)
{
    char name[40];
    snprintf(name, sizeof(name), ENV_DRIVER_FMT, f->minor);
    const char *path = getenv(name);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    uint8_t req[64], rep[64];
    if (!path || strlen(path) >= sizeof(sa.sun_path))
        return -EOPNOTSUPP;
    if (len > sizeof(req) - 8 || cap > sizeof(rep) - 4)
        return -EINVAL;
    strcpy(sa.sun_path, path);
    memcpy(req, &nr, 4);
    memcpy(req + 4, &param, 4);
    if (len)
        memcpy(req + 8, body, len);
    int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (s < 0)
        return -errno;
    int rc = -EIO;
    ssize_t n = -1;
    union {
        struct cmsghdr h;
        char space[CMSG_SPACE(sizeof(int))];
    } cm;
    struct iovec iov = {rep, sizeof(rep)};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.space,
                        .msg_controllen = sizeof(cm.space)};
    if (fd)
        *fd = -1;
    if (connect(s, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
        send(s, req, 8 + len, MSG_NOSIGNAL) == (ssize_t)(8 + len))
        n = recvmsg(s, &mh, MSG_CMSG_CLOEXEC);
    for (struct cmsghdr *c = n >= 0 ? CMSG_FIRSTHDR(&mh) : NULL; c; c = CMSG_NXTHDR(&mh, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        int got_fd;
        memcpy(&got_fd, CMSG_DATA(c), sizeof(got_fd));
        if (fd && *fd < 0)
            *fd = got_fd;
        else
            close(got_fd);
    }
    if (n >= 4) {
        int32_t err;
        memcpy(&err, rep, 4);
        *got = (size_t)n - 4 < cap ? (size_t)n - 4 : cap;
        memcpy(ans, rep + 4, *got);
        rc = -err;
    }
    close(s);
    if (rc < 0 && fd && *fd >= 0) {
        close(*fd);
        *fd = -1;
    }
    return rc;
}

/* ---- firmware log and trace (docs/spec/uapi.md §6 "Firmware log and trace") ---------- */

/* The caller's buffer is num_element * element_size bytes; its last bytes are a
 * dpt_metadata {offset, size, watch}: where the reader is (the footer's running tail it got
 * last, 0 at first) and whether to wait for data. */
static uint64_t dpt_buf_size(const struct amdxdna_drm_get_array *a)
{
    return (uint64_t)a->num_element * a->element_size;
}

/* The footer's 32-bit tail as the 64-bit running count next to the reader's offset. */
static uint64_t dpt_tail(const uint8_t *ring, uint32_t size, uint64_t offset)
{
    uint32_t t32;
    memcpy(&t32, ring + size - XDNA_AIE2_DPT_FOOTER_PAGE + offsetof(struct xdna_aie2_dpt_footer, tail),
           sizeof(t32));
    __atomic_thread_fence(__ATOMIC_ACQUIRE); /* the records before the tail that shows them */
    uint64_t tail = (offset & ~(uint64_t)0xFFFFFFFFu) | t32;
    if (tail < offset && offset - tail >= 1ull << 31)
        tail += 1ull << 32; /* the 32-bit tail wrapped since (a lag under 2 GiB: an offset past it) */
    return tail;
}

/* GET_ARRAY FW_LOG / FW_TRACE: the bytes between the reader's offset and the tail (from the
 * ring's start when the reader fell a whole ring behind), as many as fit before the
 * metadata; the metadata comes back with the new offset and the bytes written. */
static int dpt_read(struct accel_file *f, struct amdxdna_drm_get_array *a)
{
    const uint64_t bsz = dpt_buf_size(a);
    struct amdxdna_dpt_metadata md;
    if (bsz < sizeof(md))
        return -EFAULT; /* the driver reads the metadata before the buffer: nothing there */
    const uint64_t mdp = a->buffer + bsz - sizeof(md);
    if (uread(&md, mdp, sizeof(md)) < 0)
        return -EFAULT;
    uint32_t size = 0;
    size_t got = 0;
    int fd = -1;
    int rc = driver_call_fd(f, _IOC_NR(DRM_IOCTL_AMDXDNA_GET_ARRAY), a->param, NULL, 0, &size,
                            sizeof(size), &got, &fd);
    if (rc < 0)
        return rc; /* ESHUTDOWN: not enabled */
    if (fd < 0 || got != sizeof(size) || size <= XDNA_AIE2_DPT_FOOTER_PAGE) {
        if (fd >= 0)
            close(fd);
        return -EIO;
    }
    const uint8_t *ring = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (ring == MAP_FAILED)
        return -ENOMEM;
    const uint64_t log = size - XDNA_AIE2_DPT_FOOTER_PAGE;
    uint64_t tail = dpt_tail(ring, size, md.offset);
    /* watch: wait for the tail to move, polling the footer as the driver's timer does */
    for (unsigned waited = 0; tail == md.offset && md.watch; waited++) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        if (nanosleep(&ts, NULL) < 0) {
            rc = -EINTR; /* a signal: nothing read */
            break;
        }
        if (waited % 16 == 15) { /* still enabled? (the driver wakes its waiters when not) */
            struct amdxdna_drm_get_dpt_state st = {0};
            size_t g = 0;
            uint32_t cfg = a->param == DRM_AMDXDNA_FW_LOG ? DRM_AMDXDNA_FW_LOG_CONFIG : DRM_AMDXDNA_FW_TRACE_CONFIG;
            if (driver_call(f, _IOC_NR(DRM_IOCTL_AMDXDNA_GET_ARRAY), cfg, NULL, 0, &st, sizeof(st), &g) < 0 ||
                !st.status) {
                rc = -ESHUTDOWN;
                break;
            }
        }
        tail = dpt_tail(ring, size, md.offset);
    }
    uint32_t out = 0;
    if (rc == 0 && tail < md.offset) {
        md.offset = 0; /* an offset the ring never reached */
        rc = -EINVAL;
    } else if (rc == 0 && tail != md.offset) {
        uint64_t start = md.offset % log, avail = tail - md.offset;
        if (avail > log) { /* overwritten meanwhile: the oldest the ring still holds */
            start = tail % log;
            avail = log;
        }
        const uint64_t room = bsz - sizeof(md);
        uint64_t n = avail < room ? avail : room;
        uint64_t first = n < log - start ? n : log - start;
        if (uwrite(a->buffer, ring + start, first) < 0 ||
            (n > first && uwrite(a->buffer + first, ring, n - first) < 0))
            rc = -EFAULT;
        md.offset = tail - avail + n; /* what was not copied stays for the next call */
        out = (uint32_t)n;
    }
    munmap((void *)ring, size);
    md.size = out;
    if (uwrite(mdp, &md, sizeof(md)) < 0)
        return -EFAULT;
    return rc;
}

/* GET_ARRAY FW_LOG_CONFIG / FW_TRACE_CONFIG: one get_dpt_state at the buffer's start. */
static int dpt_config(struct accel_file *f, struct amdxdna_drm_get_array *a)
{
    struct amdxdna_drm_get_dpt_state st = {0};
    if (dpt_buf_size(a) < sizeof(st))
        return -ENOSPC;
    size_t got = 0;
    int rc = driver_call(f, _IOC_NR(DRM_IOCTL_AMDXDNA_GET_ARRAY), a->param, NULL, 0, &st,
                         sizeof(st), &got);
    if (rc < 0)
        return rc;
    return uwrite(a->buffer, &st, sizeof(st)) < 0 ? -EFAULT : 0;
}

static struct amdxdna_drm_hwctx_entry hwctx_entry(const struct xdna_reg_ctx *r)
{
    struct amdxdna_drm_hwctx_entry e = {
        .context_id = r->context_id, .start_col = r->start_col, .num_col = r->num_col,
        .hwctx_id = r->hwctx_id, .pid = r->pid, .command_submissions = r->submissions,
        .command_completions = r->completions, .errors = r->errors, .priority = r->priority,
        .heap_usage = r->heap_usage, .state = r->state, .pasid = r->pasid, .gops = r->gops,
        .fps = r->fps, .dma_bandwidth = r->dma_bandwidth, .latency = r->latency,
        .frame_exec_time = r->frame_exec_time};
    memcpy(e.name, r->name, sizeof(e.name));
    return e;
}

/* GET_ARRAY: element_size and num_element are the caller's capacity; the answer uses
 * min(element_size, our entry) bytes per element, packed at that stride, and both fields
 * come back as what was written. HW_CONTEXT_ALL refuses a capacity short of every context
 * with ENOSPC and the count needed in num_element; HW_CONTEXT_BY_ID takes one element whose
 * context_id (the user's handle) and pid name the context (docs/spec/uapi.md §6). */
static int get_array(struct accel_file *f, void *k)
{
    struct amdxdna_drm_get_array *a = k;
    static __thread struct xdna_reg_ctx rows[XDNA_REG_MAX_CTX];
    int rc = xdna_uapi_check_get_array(a);
    if (rc < 0)
        return rc;
    switch (a->param) {
    case DRM_AMDXDNA_HW_CONTEXT_ALL:
    case DRM_AMDXDNA_HW_CONTEXT_BY_ID: {
        size_t esz = xdna_uapi_elem_size(a->element_size, sizeof(struct amdxdna_drm_hwctx_entry));
        struct amdxdna_drm_hwctx_entry want = {0};
        unsigned n = reg_contexts(f, rows, XDNA_REG_MAX_CTX), put = 0;
        if (a->param == DRM_AMDXDNA_HW_CONTEXT_BY_ID) {
            /* the key: what fits of the first element, the rest zero */
            if (uread(&want, a->buffer, esz) < 0)
                return -EFAULT;
            if (a->num_element != 1 || !want.context_id || !want.pid) {
                a->num_element = 1;
                return -EINVAL;
            }
        } else if (a->num_element < n) {
            a->num_element = n;
            return -ENOSPC;
        }
        for (unsigned i = 0; i < n && put < a->num_element; i++) {
            if (a->param == DRM_AMDXDNA_HW_CONTEXT_BY_ID &&
                (rows[i].pid != want.pid || rows[i].context_id != want.context_id))
                continue;
            struct amdxdna_drm_hwctx_entry e = hwctx_entry(&rows[i]);
            if (uwrite(a->buffer + (uint64_t)put * esz, &e, esz) < 0)
                return -EFAULT;
            put++;
        }
        if (a->param == DRM_AMDXDNA_HW_CONTEXT_BY_ID && !put)
            return -EINVAL; /* no such context of that pid */
        a->num_element = put;
        a->element_size = (uint32_t)esz;
        return 0;
    }
    case DRM_AMDXDNA_BO_USAGE: {
        struct amdxdna_drm_bo_usage u;
        if (a->element_size < sizeof(u))
            return -EINVAL;
        if (uread(&u, a->buffer, sizeof(u)) < 0)
            return -EFAULT;
        u.total_usage = u.internal_usage = u.heap_usage = 0;
        if (f->reg) {
            xdna_reg_lock(f->reg);
            for (unsigned i = 0; i < XDNA_REG_MAX_FILES; i++) {
                const struct xdna_reg_file *r = &f->reg->files[i];
                if (r->file && r->pid == u.pid) {
                    u.total_usage += r->total;
                    u.internal_usage += r->internal;
                    u.heap_usage += r->heap;
                }
            }
            xdna_reg_unlock(f->reg);
        }
        if (uwrite(a->buffer, &u, sizeof(u)) < 0)
            return -EFAULT;
        a->num_element = 1;
        a->element_size = sizeof(u);
        return 0;
    }
    case DRM_AMDXDNA_HW_LAST_ASYNC_ERR: { /* the driver's cache: none or the last one */
        struct amdxdna_async_error e;
        size_t got = 0;
        rc = driver_call(f, _IOC_NR(DRM_IOCTL_AMDXDNA_GET_ARRAY), a->param, NULL, 0, &e,
                         sizeof(e), &got);
        if (rc < 0)
            return rc;
        uint32_t n = got == sizeof(e) ? 1 : 0, esz = xdna_uapi_elem_size(a->element_size, sizeof(e));
        if (n && uwrite(a->buffer, &e, esz) < 0)
            return -EFAULT;
        a->num_element = n;
        a->element_size = esz;
        return 0;
    }
    case DRM_AMDXDNA_FW_LOG:
    case DRM_AMDXDNA_FW_TRACE:
        if (xdna_is_aie4(f->ctx->chip))
            return -EOPNOTSUPP;
        if (geteuid() != 0)
            return -EPERM; /* the driver's admin check (CAP_SYS_ADMIN) */
        return dpt_read(f, a);
    case DRM_AMDXDNA_FW_LOG_CONFIG:
    case DRM_AMDXDNA_FW_TRACE_CONFIG:
        return xdna_is_aie4(f->ctx->chip) ? -EOPNOTSUPP : dpt_config(f, a);
    case DRM_AMDXDNA_AIE_COREDUMP:
    case DRM_AMDXDNA_AIE_TILE_READ:
    case DRM_AMDXDNA_HWCTX_AIE_PART_FD:
    case DRM_AMDXDNA_HWCTX_MEM_BITMAP:
        return -EOPNOTSUPP; /* docs/spec/uapi.md §7 */
    default:
        return -EOPNOTSUPP; /* the driver's answer to a parameter it does not serve */
    }
}

/* Frame-boundary preemption is a firmware runtime setting (SET/GET_RUNTIME_CONFIG of the
 * chip's type): read or set it there, so every process sees the device's own value. */
static int frame_boundary(struct accel_file *f, bool set, uint32_t *state)
{
    int32_t type = f->ctx->chip->frame_boundary_type;
    if (type < 0)
        return -EOPNOTSUPP; /* the chip's firmware has no such setting */
    if (xdna_api_enter(f->ctx) < 0)
        return -errno;
    int rc;
    if (set) {
        xdna_aie2_set_runtime_config_req_t req = {.type = (uint32_t)type, .value = *state};
        rc = xdna_fw_req(f->ctx, XDNA_AIE2_MSG_SET_RUNTIME_CONFIG, &req, sizeof(req), NULL, 0);
    } else {
        xdna_aie2_get_runtime_config_req_t req = {.type = (uint32_t)type};
        xdna_aie2_get_runtime_config_resp_t r;
        rc = xdna_fw_req(f->ctx, XDNA_AIE2_MSG_GET_RUNTIME_CONFIG, &req, sizeof(req), &r, sizeof(r));
        if (rc == 0)
            *state = r.value ? 1 : 0;
    }
    int err = errno;
    xdna_api_leave(f->ctx, rc);
    return rc < 0 ? -err : 0;
}

/* A device-wide setting of the driver's (the registry's dev block): read, or set when
 * `set` is not NULL. */
static uint32_t dev_setting(struct accel_file *f, uint32_t *field_of_dev, const uint32_t *set)
{
    if (!f->reg)
        return 0;
    xdna_reg_lock(f->reg);
    if (set)
        *field_of_dev = *set;
    uint32_t v = *field_of_dev;
    xdna_reg_unlock(f->reg);
    return v;
}

static uint32_t force_preempt(struct accel_file *f)
{
    return f->reg ? dev_setting(f, &f->reg->dev.force_preempt, NULL) : 0;
}

static int get_info(struct accel_file *f, void *k)
{
    struct amdxdna_drm_get_info *a = k;
    struct xdna_shim_info info;
    struct xdna_shim_power pw;
    if (xdna_shim_get_info(f->ctx, &info) < 0 || xdna_shim_get_power(f->ctx, &pw) < 0)
        return -errno;
    switch (a->param) {
    case DRM_AMDXDNA_QUERY_AIE_VERSION: {
        struct amdxdna_drm_query_aie_version v = {info.aie_major, info.aie_minor};
        return put_fit(a, &v, sizeof(v));
    }
    case DRM_AMDXDNA_QUERY_AIE_METADATA:
        return query_metadata(f, a);
    case DRM_AMDXDNA_QUERY_CLOCK_METADATA: {
        struct amdxdna_drm_query_clock_metadata c = {
            .mp_npu_clock = {.name = "MP-NPU Clock", .freq_mhz = pw.npuclk_mhz},
            .h_clock = {.name = "H Clock", .freq_mhz = pw.hclk_mhz}};
        return put_fit(a, &c, sizeof(c));
    }
    case DRM_AMDXDNA_QUERY_FIRMWARE_VERSION: {
        struct amdxdna_drm_query_firmware_version v = {info.fw_major, info.fw_minor,
                                                       info.fw_sub, info.fw_build};
        return put_fit(a, &v, sizeof(v));
    }
    case DRM_AMDXDNA_GET_POWER_MODE: { /* the driver's mode (this session's under no exec) */
        struct amdxdna_drm_get_power_mode p = {.power_mode = (uint8_t)pw.mode};
        size_t got = 0;
        int rc = driver_call(f, _IOC_NR(DRM_IOCTL_AMDXDNA_GET_INFO), a->param, NULL, 0, &p,
                             sizeof(p), &got);
        if (rc < 0 && rc != -EOPNOTSUPP)
            return rc;
        return put_fit(a, &p, sizeof(p));
    }
    case DRM_AMDXDNA_QUERY_HW_CONTEXTS:
        return query_hw_contexts(f, a);
    case DRM_AMDXDNA_QUERY_RESOURCE_INFO: {
        /* the top DPM level's H clock and TOPS, the context limit, the current TOPS and
         * the contexts on the device */
        static __thread struct xdna_reg_ctx rows[XDNA_REG_MAX_CTX];
        const struct xdna_chip_desc *c = f->ctx->chip;
        struct amdxdna_drm_get_resource_info r = {
            .npu_clk_max = c->ndpm ? c->dpm[c->ndpm - 1].hclk_mhz : 0,
            .npu_tops_max = c->ndpm && c->tops ? (uint64_t)c->tops[c->ndpm - 1] : 0,
            .npu_task_max = info.hwctx_limit, .npu_tops_curr = (uint64_t)pw.tops,
            .npu_task_curr = reg_contexts(f, rows, XDNA_REG_MAX_CTX)};
        return put_fit(a, &r, sizeof(r));
    }
    case DRM_AMDXDNA_GET_FORCE_PREEMPT_STATE: { /* the driver's flag: what fits */
        struct amdxdna_drm_attribute_state st = {.state = (uint8_t)force_preempt(f)};
        return put_fit(a, &st, sizeof(st));
    }
    case DRM_AMDXDNA_GET_FRAME_BOUNDARY_PREEMPT_STATE: {
        uint32_t v = 0;
        int rc = frame_boundary(f, false, &v);
        struct amdxdna_drm_attribute_state st = {.state = (uint8_t)v};
        return rc < 0 ? rc : put_fit(a, &st, sizeof(st));
    }
    case DRM_AMDXDNA_QUERY_AIE_STATUS:
        return query_aie_status(f, a);
    case DRM_AMDXDNA_QUERY_TELEMETRY:
        if (geteuid() != 0)
            return -EPERM; /* the driver's admin check (CAP_SYS_ADMIN) */
        return query_telemetry(f, a, info.hwctx_limit);
    case DRM_AMDXDNA_QUERY_SENSORS:
        return query_sensors(f, a, info.total_col);
    case DRM_AMDXDNA_QUERY_CERT_FIRMWARE_VERSION: { /* AIE4: what the probe read, what fits */
        if (!xdna_is_aie4(f->ctx->chip))
            return -EOPNOTSUPP; /* AIE2 has no cert firmware */
        struct amdxdna_drm_query_firmware_version v = {info.cert_major, info.cert_minor,
                                                       info.cert_hotfix, info.cert_build};
        return put_fit(a, &v, sizeof(v));
    }
    case DRM_AMDXDNA_GET_AUTO_COREDUMP: { /* AIE4: the driver's flag, what fits */
        if (!xdna_is_aie4(f->ctx->chip) || !f->reg)
            return -EOPNOTSUPP; /* the AIE2 driver's answer */
        struct amdxdna_drm_attribute_state st = {
            .state = (uint8_t)dev_setting(f, &f->reg->dev.auto_coredump, NULL)};
        return put_fit(a, &st, sizeof(st));
    }
    case DRM_AMDXDNA_READ_AIE_MEM:
    case DRM_AMDXDNA_READ_AIE_REG:
        /* a debug build's only: EOPNOTSUPP, as for any parameter the driver does not serve
         * (docs/spec/uapi.md §6, §7) */
        return -EOPNOTSUPP;
    default:
        return -EOPNOTSUPP; /* the driver's answer to a parameter it does not serve */
    }
}

/* SET_STATE's buffer: min(buffer_size, size) bytes of it, the rest zero (as the driver
 * copies its attribute structs). */
static int get_fit(const struct amdxdna_drm_set_state *a, void *val, size_t size)
{
    memset(val, 0, size);
    return uread(val, a->buffer, a->buffer_size < size ? a->buffer_size : size);
}

/* SET_STATE, root only (DRM_ROOT_ONLY); the driver's buffer rules per parameter
 * (docs/spec/uapi.md §6). */
static int set_state(struct accel_file *f, void *k)
{
    struct amdxdna_drm_set_state *a = k;
    if (geteuid() != 0)
        return -EACCES; /* DRM_ROOT_ONLY without CAP_SYS_ADMIN */
    struct amdxdna_drm_attribute_state st;
    switch (a->param) {
    case DRM_AMDXDNA_SET_FORCE_PREEMPT:
        if (get_fit(a, &st, sizeof(st)) < 0)
            return -EFAULT;
        if (xdna_uapi_check_attr(&st) < 0)
            return -EINVAL;
        if (f->reg) {
            uint32_t v = st.state;
            dev_setting(f, &f->reg->dev.force_preempt, &v);
        }
        return 0;
    case DRM_AMDXDNA_SET_FRAME_BOUNDARY_PREEMPT: {
        if (a->buffer_size != sizeof(st))
            return -EINVAL;
        if (uread(&st, a->buffer, sizeof(st)) < 0)
            return -EFAULT;
        if (xdna_uapi_check_attr(&st) < 0)
            return -EINVAL;
        uint32_t v = st.state;
        return frame_boundary(f, true, &v);
    }
    case DRM_AMDXDNA_SET_POWER_MODE: { /* the driver session applies it (SMU DPM, runtime cfg) */
        struct amdxdna_drm_set_power_mode pm;
        size_t got = 0;
        if (get_fit(a, &pm, sizeof(pm)) < 0)
            return -EFAULT;
        if (pm.power_mode > POWER_MODE_TURBO)
            return -EINVAL;
        /* TURBO only on a device without contexts: every process's (the registry), as the
         * driver counts all its clients' (docs/spec/uapi.md §6) */
        static __thread struct xdna_reg_ctx rows[XDNA_REG_MAX_CTX];
        if (pm.power_mode == POWER_MODE_TURBO && reg_contexts(f, rows, XDNA_REG_MAX_CTX))
            return -EBUSY;
        return driver_call(f, _IOC_NR(DRM_IOCTL_AMDXDNA_SET_STATE), a->param, &pm, sizeof(pm),
                           NULL, 0, &got);
    }
    case DRM_AMDXDNA_SET_AUTO_COREDUMP: { /* AIE4: takes what fits; state 0/1, pad MBZ */
        if (!xdna_is_aie4(f->ctx->chip) || !f->reg)
            return -EOPNOTSUPP; /* the AIE2 driver's answer */
        if (get_fit(a, &st, sizeof(st)) < 0)
            return -EFAULT;
        if (xdna_uapi_check_attr(&st) < 0)
            return -EINVAL;
        for (size_t i = 0; i < sizeof(st.pad); i++)
            if (st.pad[i])
                return -EINVAL; /* the driver checks this pad MBZ */
        uint32_t v = st.state;
        dev_setting(f, &f->reg->dev.auto_coredump, &v);
        return 0;
    }
    case DRM_AMDXDNA_SET_FW_LOG_STATE:
    case DRM_AMDXDNA_SET_FW_TRACE_STATE: { /* the driver session starts, changes or stops it */
        struct amdxdna_drm_set_dpt_state ds;
        size_t got = 0;
        if (xdna_is_aie4(f->ctx->chip))
            return -EOPNOTSUPP; /* AIE4's rings are not modelled (docs/spec/uapi.md §7) */
        if (a->buffer_size != sizeof(ds))
            return -EINVAL;
        if (uread(&ds, a->buffer, sizeof(ds)) < 0)
            return -EFAULT;
        return driver_call(f, _IOC_NR(DRM_IOCTL_AMDXDNA_SET_STATE), a->param, &ds, sizeof(ds),
                           NULL, 0, &got);
    }
    case DRM_AMDXDNA_AIE_TILE_WRITE:
        return -EOPNOTSUPP; /* not served yet: docs/spec/uapi.md §7 */
    default: /* WRITE_AIE_MEM/REG (a debug build's), SET_CLOCK_FREQ and unknown parameters:
              * the driver's answer */
        return -EOPNOTSUPP;
    }
}

/* ---- the decoder ------------------------------------------------------------------- */

struct ioctl_desc {
    unsigned nr;
    unsigned size; /* our struct's size (drm_ioctl's drv_size) */
    int (*fn)(struct accel_file *f, void *k);
};

#define IOCTL(name, fn) {_IOC_NR(DRM_IOCTL_##name), _IOC_SIZE(DRM_IOCTL_##name), fn}
static const struct ioctl_desc IOCTLS[] = {
    IOCTL(VERSION, drm_version),
    IOCTL(GEM_CLOSE, drm_gem_close),
    IOCTL(GET_CAP, drm_get_cap),
    IOCTL(SET_CLIENT_NAME, drm_set_client_name),
    IOCTL(PRIME_HANDLE_TO_FD, prime_handle_to_fd),
    IOCTL(PRIME_FD_TO_HANDLE, prime_fd_to_handle),
    IOCTL(SYNCOBJ_CREATE, syncobj_create),
    IOCTL(SYNCOBJ_DESTROY, syncobj_destroy),
    IOCTL(SYNCOBJ_HANDLE_TO_FD, syncobj_handle_to_fd),
    IOCTL(SYNCOBJ_FD_TO_HANDLE, syncobj_fd_to_handle),
    IOCTL(SYNCOBJ_WAIT, syncobj_wait),
    IOCTL(SYNCOBJ_RESET, syncobj_reset),
    IOCTL(SYNCOBJ_SIGNAL, syncobj_signal),
    IOCTL(SYNCOBJ_TIMELINE_WAIT, syncobj_timeline_wait),
    IOCTL(SYNCOBJ_QUERY, syncobj_query),
    IOCTL(SYNCOBJ_TRANSFER, syncobj_transfer),
    IOCTL(SYNCOBJ_TIMELINE_SIGNAL, syncobj_timeline_signal),
    IOCTL(AMDXDNA_CREATE_HWCTX, create_hwctx),
    IOCTL(AMDXDNA_DESTROY_HWCTX, destroy_hwctx),
    IOCTL(AMDXDNA_CONFIG_HWCTX, config_hwctx),
    IOCTL(AMDXDNA_CREATE_BO, create_bo),
    IOCTL(AMDXDNA_GET_BO_INFO, get_bo_info),
    IOCTL(AMDXDNA_SYNC_BO, sync_bo),
    IOCTL(AMDXDNA_EXEC_CMD, exec_cmd),
    IOCTL(AMDXDNA_GET_INFO, get_info),
    IOCTL(AMDXDNA_SET_STATE, set_state),
    IOCTL(AMDXDNA_WAIT_CMD, wait_cmd),
    IOCTL(AMDXDNA_GET_ARRAY, get_array),
};

int xdna_accel_ioctl(int fd, unsigned long req, void *arg)
{
    struct accel_file *f = file_of(fd);
    if (!f) {
        errno = EBADF;
        return -1;
    }
    switch (req) {
    case FIOCLEX:
    case FIONCLEX:
    case FIONBIO:
    case FIOASYNC: /* the kernel's, on the file before any driver: they act on our fd
                    * (docs/spec/uapi.md §6) */
        return (int)syscall(SYS_ioctl, fd, req, arg);
    default:
        break;
    }
    if (f->owner != getpid()) { /* inherited over fork: the session is the parent's */
        errno = ENODEV;
        return -1;
    }
    if (_IOC_TYPE(req) != DRM_IOCTL_BASE) { /* before the lookup, as drm_ioctl */
        errno = ENOTTY;
        return -1;
    }
    const struct ioctl_desc *d = NULL;
    for (size_t i = 0; i < sizeof(IOCTLS) / sizeof(IOCTLS[0]); i++)
        if (IOCTLS[i].nr == _IOC_NR(req))
            d = &IOCTLS[i];
    if (!d) {
        errno = EINVAL; /* drm_ioctl: no such command */
        return -1;
    }
    struct xdna_uapi_frame fr;
    int rc = xdna_uapi_frame(req, d->size, &fr);
    if (rc < 0) {
        errno = -rc;
        return -1;
    }
    unsigned out = fr.out;
    _Alignas(8) uint8_t kdata[XDNA_UAPI_ARG_MAX];
    memset(kdata, 0, fr.ksize);
    rc = uread(kdata, (uint64_t)(uintptr_t)arg, fr.in);
    if (rc < 0) { /* nothing read, nothing written back */
        errno = EFAULT;
        return -1;
    }
    rc = d->fn(f, kdata);
    if (rc == 0 && d->fn != get_info && d->fn != get_array && d->fn != drm_version &&
        d->fn != drm_get_cap)
        publish(f); /* what other processes see through GET_ARRAY */
    if (uwrite((uint64_t)(uintptr_t)arg, kdata, out) < 0) /* as drm_ioctl, also on error */
        rc = -EFAULT;
    if (rc < 0) {
        errno = -rc;
        return -1;
    }
    return 0;
}
