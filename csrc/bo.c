/* Buffer objects, the driver's amdxdna_gem.c counterpart for AIE2 (docs/spec/jobs.md §2).
 *
 * SHARE and DEV_HEAP BOs are memfds mapped in this process and DMA-mapped with SVA at that
 * mapping's address in the session PASID, so the device reaches them by the same address
 * the process uses. The heap grows by DEV_HEAP chunks up to the chip's maximum, mapped one
 * after the other in a VA range reserved at the first one, so the heap is one contiguous
 * range here and for the device. DEV BOs are 32 KiB-aligned pieces of it (first fit) and may
 * span chunks; their device address is 0x4000000 + offset, which the firmware resolves
 * through the context's MAP/ADD_HOST_BUFFER chunks. CMD BOs are plain memory only the shim
 * reads.
 */
#include "shim_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define PAGE 4096ull
#define BO_MAX_SIZE (1ull << 40)

static uint64_t round_up(uint64_t v, uint64_t a)
{
    return (v + a - 1) & ~(a - 1);
}

struct xdna_bo *xdna_bo_get(struct xdna_shim_ctx *ctx, uint32_t handle)
{
    if (handle == 0 || handle > XDNA_MAX_BOS || !ctx->s.bos)
        return NULL;
    return ctx->s.bos[handle - 1];
}

/* A user-visible BO; EINVAL for a bad or internal handle. */
static struct xdna_bo *user_bo(struct xdna_shim_ctx *ctx, uint32_t handle, const char *what)
{
    struct xdna_bo *bo = xdna_bo_get(ctx, handle);
    if (!bo || bo->internal) {
        xdna_fail(ctx, EINVAL, "%s: no buffer object with handle %u", what, handle);
        return NULL;
    }
    return bo;
}

struct xdna_bo *xdna_bo_by_addr(struct xdna_shim_ctx *ctx, uint64_t addr, uint64_t len)
{
    if (len == 0)
        len = 1;
    for (unsigned i = 0; i < XDNA_MAX_BOS; i++) {
        struct xdna_bo *bo = ctx->s.bos[i];
        if (!bo || bo->type == XDNA_SHIM_BO_CMD || bo->type == XDNA_SHIM_BO_DEV_HEAP)
            continue;
        if (addr >= bo->xdna_addr && len <= bo->alloc && addr - bo->xdna_addr <= bo->alloc - len)
            return bo;
    }
    return NULL;
}

int xdna_sva_map(struct xdna_shim_ctx *ctx, int fd, void *va, uint64_t size)
{
    struct xdna_proto_dma_map m = {
        .argsz = sizeof(m),
        .flags = XDNA_PROTO_DMA_READ | XDNA_PROTO_DMA_WRITE | XDNA_PROTO_DMA_SVA,
        .offset = 0, .address = (uint64_t)(uintptr_t)va, .size = size, .pasid = ctx->info.pasid};
    size_t len = 0;
    return xdna_ctl(ctx, XDNA_PROTO_CMD_DMA_MAP, &m, sizeof(m), &fd, 1, NULL, &len, 0, NULL, NULL);
}

/* IOVA mode: map at the next 64 KiB-aligned IOVA of the session (PASID 0 space). */
static int iova_map(struct xdna_shim_ctx *ctx, int fd, uint64_t size, uint64_t *iova)
{
    uint64_t at = (ctx->iova_next + 0xFFFFu) & ~(uint64_t)0xFFFFu;
    struct xdna_proto_dma_map m = {.argsz = sizeof(m),
                                   .flags = XDNA_PROTO_DMA_READ | XDNA_PROTO_DMA_WRITE,
                                   .offset = 0, .address = at, .size = size, .pasid = 0};
    size_t len = 0;
    if (xdna_ctl(ctx, XDNA_PROTO_CMD_DMA_MAP, &m, sizeof(m), &fd, 1, NULL, &len, 0, NULL, NULL) < 0)
        return -1;
    ctx->iova_next = at + size;
    *iova = at;
    return 0;
}

static int sva_unmap(struct xdna_shim_ctx *ctx, struct xdna_bo *bo)
{
    const bool sva = bo->dma_addr == (uint64_t)(uintptr_t)bo->va;
    struct xdna_proto_dma_unmap u = {.argsz = sizeof(u), .flags = sva ? XDNA_PROTO_DMA_SVA : 0,
                                     .address = bo->dma_addr, .size = bo->alloc,
                                     .pasid = sva ? ctx->info.pasid : 0};
    size_t len = 0;
    return xdna_ctl(ctx, XDNA_PROTO_CMD_DMA_UNMAP, &u, sizeof(u), NULL, 0, NULL, &len, 0, NULL,
                    NULL);
}

static int map_fd(struct xdna_shim_ctx *ctx, struct xdna_bo *bo, int fd);

/* memfd + shared mapping + SVA DMA map. */
static int memfd_bo(struct xdna_shim_ctx *ctx, struct xdna_bo *bo, const char *name)
{
    int fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0)
        return xdna_fail(ctx, errno, "memfd_create: %s", strerror(errno));
    /* sealed against shrinking: the daemon maps it and refuses fds that could shrink */
    if (ftruncate(fd, (off_t)bo->alloc) < 0 || fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK) < 0) {
        int err = errno;
        xdna_fail(ctx, err == EFBIG || err == EINVAL ? ENOMEM : err, "ftruncate %llu: %s",
                  (unsigned long long)bo->alloc, strerror(err));
        close(fd);
        return -1;
    }
    return map_fd(ctx, bo, fd);
}

/* Map fd (taken over: closed on failure) here and for the device. */
static int map_fd(struct xdna_shim_ctx *ctx, struct xdna_bo *bo, int fd)
{
    void *va = mmap(NULL, bo->alloc, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (va == MAP_FAILED) {
        xdna_fail(ctx, errno, "mmap BO: %s", strerror(errno));
        goto close_fd;
    }
    bo->dma_addr = (uint64_t)(uintptr_t)va;
    int rc = ctx->iommu_iova ? iova_map(ctx, fd, bo->alloc, &bo->dma_addr)
                             : xdna_sva_map(ctx, fd, va, bo->alloc);
    if (rc < 0)
        goto unmap;
    bo->fd = fd;
    bo->va = va;
    bo->dma_mapped = true;
    return 0;

unmap: /* munmap and close succeed here, so errno still says what failed */
    munmap(va, bo->alloc);
close_fd:
    close(fd);
    return -1;
}

/* First fit in the heap (all its chunks) for a DEV BO of bo->alloc bytes: EINVAL when the
 * heap could never hold it, ENOMEM when it does not fit the chunks there are now. */
static int heap_place(struct xdna_shim_ctx *ctx, struct xdna_bo *bo)
{
    if (bo->alloc > ctx->chip->dev_heap_max)
        return xdna_fail(ctx, EINVAL, "DEV BO of %llu bytes exceeds the %llu-byte heap maximum",
                         (unsigned long long)bo->size,
                         (unsigned long long)ctx->chip->dev_heap_max);
    uint64_t cand = 0;
    for (bool moved = true; moved;) {
        moved = false;
        for (unsigned i = 0; i < XDNA_MAX_BOS; i++) {
            struct xdna_bo *o = ctx->s.bos[i];
            if (!o || o == bo || o->type != XDNA_SHIM_BO_DEV)
                continue;
            if (cand < o->heap_off + o->alloc && o->heap_off < cand + bo->alloc) {
                cand = round_up(o->heap_off + o->alloc, XDNA_DEV_BO_ALIGN);
                moved = true;
            }
        }
        if (cand + bo->alloc > ctx->s.heap_total)
            return xdna_fail(ctx, ENOMEM, "DEV BO of %llu bytes does not fit the %llu-byte heap",
                             (unsigned long long)bo->size,
                             (unsigned long long)ctx->s.heap_total);
    }
    bo->heap_off = cand;
    bo->va = ctx->s.heap_base + cand;
    bo->xdna_addr = XDNA_AIE2_HEAP_DEV_ADDR + cand;
    return 0;
}

/* The device's view of the heap: [0, len) of the heap memfd at heap_dma, in the session
 * PASID (SVA) or PASID 0 (IOVA); with replace, in place of the mapping there in one step. */
static int heap_dma(struct xdna_shim_ctx *ctx, bool map, uint64_t len, bool replace)
{
    bool sva = !ctx->iommu_iova;
    uint32_t pasid = sva ? ctx->info.pasid : 0, sva_flag = sva ? XDNA_PROTO_DMA_SVA : 0;
    size_t out = 0;
    if (map) {
        struct xdna_proto_dma_map m = {
            .argsz = sizeof(m),
            .flags = XDNA_PROTO_DMA_READ | XDNA_PROTO_DMA_WRITE | sva_flag |
                     (replace ? XDNA_PROTO_DMA_REPLACE : 0),
            .offset = 0, .address = ctx->s.heap_dma, .size = len, .pasid = pasid};
        int fd = ctx->s.heap_fd;
        return xdna_ctl(ctx, XDNA_PROTO_CMD_DMA_MAP, &m, sizeof(m), &fd, 1, NULL, &out, 0, NULL,
                        NULL);
    }
    struct xdna_proto_dma_unmap u = {.argsz = sizeof(u), .flags = sva_flag,
                                     .address = ctx->s.heap_dma, .size = len, .pasid = pasid};
    return xdna_ctl(ctx, XDNA_PROTO_CMD_DMA_UNMAP, &u, sizeof(u), NULL, 0, NULL, &out, 0, NULL,
                    NULL);
}

/* The heap grew or shrank from old to len bytes: the device's mapping follows. Only the part
 * in use is mapped, so a device snapshot copies no more than before. The new mapping replaces
 * the old in one step: the chunks in use stay reachable throughout, as the driver's pinned
 * chunks do, so a job the firmware runs meanwhile never faults (docs/spec/jobs.md §2). */
static int heap_resize(struct xdna_shim_ctx *ctx, uint64_t old, uint64_t len)
{
    if (old && len)
        return heap_dma(ctx, true, len, true); /* refused: the old mapping stays */
    if (old)
        return heap_dma(ctx, false, old, false);
    return len ? heap_dma(ctx, true, len, false) : 0;
}

/* The session heap: one memfd as large as the chip's maximum (sparse), mapped whole here, so
 * the chunks are contiguous both here and for the device; a chunk is a window on it. */
static int heap_open(struct xdna_shim_ctx *ctx)
{
    uint64_t max = ctx->chip->dev_heap_max;
    int fd = memfd_create("xdna-heap", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0)
        return xdna_fail(ctx, errno, "memfd_create: %s", strerror(errno));
    void *va = MAP_FAILED;
    if (ftruncate(fd, (off_t)max) == 0 && fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK) == 0)
        va = mmap(NULL, max, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);
    if (va == MAP_FAILED) {
        int err = errno;
        close(fd);
        return xdna_fail(ctx, err == EFBIG ? ENOMEM : err, "heap of %llu bytes: %s",
                         (unsigned long long)max, strerror(err));
    }
    ctx->s.heap_fd = fd;
    ctx->s.heap_base = va;
    if (ctx->iommu_iova) { /* a fixed IOVA range for the maximum, so chunks never move */
        ctx->s.heap_dma = (ctx->iova_next + 0xFFFFu) & ~(uint64_t)0xFFFFu;
        ctx->iova_next = ctx->s.heap_dma + max;
    } else {
        ctx->s.heap_dma = (uint64_t)(uintptr_t)va;
    }
    return 0;
}

static void heap_close(struct xdna_shim_ctx *ctx)
{
    if (ctx->s.heap_base && !ctx->s.nheap) {
        munmap(ctx->s.heap_base, ctx->chip->dev_heap_max);
        close(ctx->s.heap_fd);
        ctx->s.heap_base = NULL;
        ctx->s.heap_total = 0;
    }
}

/* A new DEV_HEAP chunk of size bytes: EINVAL a size no heap takes, EBUSY no room left (npu1:
 * its one chunk exists already). */
static int heap_chunk_check(struct xdna_shim_ctx *ctx, uint64_t size)
{
    uint64_t max = ctx->chip->dev_heap_max;
    if (size % XDNA_HEAP_CHUNK)
        return xdna_fail(ctx, EINVAL, "bo_create: heap size %llu is not a multiple of 64 MiB",
                         (unsigned long long)size);
    if (size > max)
        return xdna_fail(ctx, EINVAL, "bo_create: heap size %llu exceeds the %llu-byte maximum",
                         (unsigned long long)size, (unsigned long long)max);
    if (ctx->s.nheap && (ctx->s.heap_total + size > max || ctx->s.nheap == XDNA_HEAP_MAX_CHUNKS))
        return xdna_fail(ctx, EBUSY, "bo_create: the heap (%llu bytes) has no room for %llu more",
                         (unsigned long long)ctx->s.heap_total, (unsigned long long)size);
    return 0;
}

static unsigned free_slot(struct xdna_shim_ctx *ctx)
{
    for (unsigned i = 0; i < XDNA_MAX_BOS; i++)
        if (!ctx->s.bos[i])
            return i;
    return XDNA_MAX_BOS;
}

int xdna_bo_import(struct xdna_shim_ctx *ctx, int fd, uint64_t size, uint32_t *handle)
{
    unsigned slot = free_slot(ctx);
    if (slot == XDNA_MAX_BOS)
        return xdna_fail(ctx, ENOSPC, "bo_import: all %u handles in use", XDNA_MAX_BOS);
    if (!size || size % PAGE || size > BO_MAX_SIZE)
        return xdna_fail(ctx, EINVAL, "bo_import: size %llu", (unsigned long long)size);
    struct xdna_bo *bo = calloc(1, sizeof(*bo));
    int own = bo ? fcntl(fd, F_DUPFD_CLOEXEC, 0) : -1;
    if (own < 0) {
        free(bo);
        return xdna_fail(ctx, bo ? errno : ENOMEM, "bo_import: %s", strerror(errno));
    }
    *bo = (struct xdna_bo){.handle = slot + 1, .type = XDNA_SHIM_BO_SHARE, .size = size,
                           .alloc = size, .fd = -1};
    if (map_fd(ctx, bo, own) < 0) {
        int err = errno;
        free(bo);
        errno = err;
        return -1;
    }
    bo->xdna_addr = bo->dma_addr;
    ctx->s.bos[slot] = bo;
    *handle = bo->handle;
    return 0;
}

int xdna_bo_userptr(struct xdna_shim_ctx *ctx, int fd, uint64_t size, bool readonly,
                    uint32_t *handle)
{
    unsigned slot = free_slot(ctx);
    if (slot == XDNA_MAX_BOS)
        return xdna_fail(ctx, ENOSPC, "bo_userptr: all %u handles in use", XDNA_MAX_BOS);
    if (!size || size % PAGE || size > BO_MAX_SIZE)
        return xdna_fail(ctx, EINVAL, "bo_userptr: size %llu", (unsigned long long)size);
    struct xdna_bo *bo = calloc(1, sizeof(*bo));
    int own = bo ? fcntl(fd, F_DUPFD_CLOEXEC, 0) : -1;
    if (own < 0) {
        free(bo);
        return xdna_fail(ctx, bo ? errno : ENOMEM, "bo_userptr: %s", strerror(errno));
    }
    *bo = (struct xdna_bo){.handle = slot + 1, .type = XDNA_SHIM_BO_SHARE, .size = size,
                           .alloc = size, .fd = own};
    /* one contiguous view of the pages (the program's ranges may lie apart) */
    bo->va = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, own, 0);
    if (bo->va == MAP_FAILED) {
        xdna_fail(ctx, errno, "bo_userptr: mmap: %s", strerror(errno));
        goto close_fd;
    }
    /* the device's view: that VA (SVA) or the next IOVA; read-only when every range the
     * program gave is */
    bool sva = !ctx->iommu_iova;
    uint64_t at = sva ? (uint64_t)(uintptr_t)bo->va
                      : (ctx->iova_next + 0xFFFFu) & ~(uint64_t)0xFFFFu;
    struct xdna_proto_dma_map m = {
        .argsz = sizeof(m),
        .flags = XDNA_PROTO_DMA_READ | (readonly ? 0 : XDNA_PROTO_DMA_WRITE) |
                 (sva ? XDNA_PROTO_DMA_SVA : 0),
        .offset = 0, .address = at, .size = size, .pasid = sva ? ctx->info.pasid : 0};
    size_t len = 0;
    if (xdna_ctl(ctx, XDNA_PROTO_CMD_DMA_MAP, &m, sizeof(m), &own, 1, NULL, &len, 0, NULL,
                 NULL) < 0)
        goto unmap;
    if (!sva)
        ctx->iova_next = at + size;
    bo->dma_addr = bo->xdna_addr = at;
    bo->dma_mapped = true;
    ctx->s.bos[slot] = bo;
    *handle = bo->handle;
    return 0;

unmap: /* munmap and close succeed here, so errno still says what failed */
    munmap(bo->va, size);
close_fd:
    close(own);
    free(bo);
    return -1;
}

int xdna_bo_new(struct xdna_shim_ctx *ctx, int type, uint64_t size, bool internal,
                uint32_t *handle)
{
    if (!handle)
        return xdna_fail(ctx, EINVAL, "bo_create: NULL handle");
    if (type < XDNA_SHIM_BO_SHARE || type > XDNA_SHIM_BO_CMD)
        return xdna_fail(ctx, EINVAL, "bo_create: unknown BO type %d", type);
    if (size == 0 || size > BO_MAX_SIZE)
        return xdna_fail(ctx, EINVAL, "bo_create: bad size %llu", (unsigned long long)size);
    bool aie4 = xdna_is_aie4(ctx->chip); /* no DEV heap: DEV and CMD BOs are plain buffers */
    if (type == XDNA_SHIM_BO_DEV_HEAP && aie4)
        return xdna_fail(ctx, EINVAL, "bo_create: %s has no DEV heap", ctx->chip->name);
    if (type == XDNA_SHIM_BO_DEV_HEAP && heap_chunk_check(ctx, size) < 0)
        return -1;
    if (type == XDNA_SHIM_BO_DEV && !ctx->s.heap && !aie4) { /* the default 64 MiB heap */
        uint32_t h;
        if (xdna_bo_new(ctx, XDNA_SHIM_BO_DEV_HEAP, XDNA_HEAP_CHUNK, false, &h) < 0)
            return -1;
    }
    unsigned slot = free_slot(ctx);
    if (slot == XDNA_MAX_BOS)
        return xdna_fail(ctx, ENOSPC, "bo_create: all %u handles in use", XDNA_MAX_BOS);
    struct xdna_bo *bo = calloc(1, sizeof(*bo));
    if (!bo)
        return xdna_fail(ctx, ENOMEM, "out of memory");
    bo->handle = slot + 1;
    bo->type = type;
    bo->internal = internal;
    bo->size = size;
    bo->fd = -1;
    int rc = 0;
    switch (aie4 && type != XDNA_SHIM_BO_SHARE ? -type : type) {
    case -XDNA_SHIM_BO_DEV: /* AIE4: the firmware reaches it by its VA, as a SHARE BO */
    case -XDNA_SHIM_BO_CMD: /* AIE4: the firmware writes the command state into it */
        bo->alloc = round_up(size, PAGE);
        rc = memfd_bo(ctx, bo, type == XDNA_SHIM_BO_CMD ? "xdna-cmd" : "xdna-dev");
        bo->xdna_addr = bo->dma_addr;
        break;
    case XDNA_SHIM_BO_SHARE:
        bo->alloc = round_up(size, PAGE);
        rc = memfd_bo(ctx, bo, "xdna-share");
        bo->xdna_addr = bo->dma_addr; /* its VA (SVA) or its IOVA */
        break;
    case XDNA_SHIM_BO_DEV_HEAP: /* the next chunk, right after the last one */
        bo->alloc = size;
        bo->heap_off = ctx->s.heap_total;
        rc = ctx->s.heap_base ? 0 : heap_open(ctx);
        if (rc == 0 && (bo->fd = fcntl(ctx->s.heap_fd, F_DUPFD_CLOEXEC, 0)) < 0)
            rc = xdna_fail(ctx, errno, "dup heap: %s", strerror(errno));
        if (rc == 0 && heap_resize(ctx, ctx->s.heap_total, ctx->s.heap_total + size) < 0)
            rc = -1;
        if (rc < 0) {
            int err = errno;
            if (bo->fd >= 0)
                close(bo->fd);
            heap_close(ctx);
            errno = err;
            break;
        }
        bo->va = ctx->s.heap_base + bo->heap_off;
        bo->dma_addr = ctx->s.heap_dma + bo->heap_off;
        bo->xdna_addr = XDNA_AIE2_HEAP_DEV_ADDR + bo->heap_off;
        break;
    case XDNA_SHIM_BO_DEV:
        bo->alloc = round_up(size, XDNA_DEV_BO_ALIGN);
        rc = heap_place(ctx, bo);
        break;
    case XDNA_SHIM_BO_CMD: { /* a memfd, so a UAPI client can mmap it too (docs/spec/uapi.md §6) */
        bo->alloc = round_up(size, PAGE);
        int fd = memfd_create("xdna-cmd", MFD_CLOEXEC);
        void *va = MAP_FAILED;
        if (fd >= 0 && ftruncate(fd, (off_t)bo->alloc) == 0)
            va = mmap(NULL, bo->alloc, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (va == MAP_FAILED) {
            rc = xdna_fail(ctx, ENOMEM, "mmap CMD BO: %s", strerror(errno));
            if (fd >= 0)
                close(fd);
        } else {
            bo->va = va;
            bo->fd = fd;
        }
        break;
    }
    }
    if (rc < 0) {
        int err = errno;
        free(bo);
        errno = err;
        return -1;
    }
    ctx->s.bos[slot] = bo;
    if (type == XDNA_SHIM_BO_DEV_HEAP) {
        if (!ctx->s.nheap)
            ctx->s.heap = bo->handle;
        ctx->s.heap_chunk[ctx->s.nheap++] = bo->handle;
        ctx->s.heap_total += bo->alloc;
    }
    *handle = bo->handle;
    return 0;
}

/* A chunk leaves the heap: its pages are dropped (a later chunk there starts zeroed, as a
 * new shmem BO does) and the device's mapping shrinks. */
static void heap_chunk_drop(struct xdna_shim_ctx *ctx, struct xdna_bo *bo, bool unmap)
{
    unsigned n = 0;
    for (unsigned i = 0; i < ctx->s.nheap; i++)
        if (ctx->s.heap_chunk[i] != bo->handle)
            ctx->s.heap_chunk[n++] = ctx->s.heap_chunk[i];
    ctx->s.nheap = n;
    ctx->s.heap = n ? ctx->s.heap_chunk[0] : 0;
    uint64_t old = ctx->s.heap_total;
    ctx->s.heap_total = n ? old - bo->alloc : 0;
    fallocate(ctx->s.heap_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)bo->heap_off,
              (off_t)bo->alloc);
    if (unmap && !ctx->sock_dead)
        heap_resize(ctx, old, ctx->s.heap_total);
    heap_close(ctx);
}

static void bo_destroy(struct xdna_shim_ctx *ctx, struct xdna_bo *bo, bool unmap)
{
    if (bo->dma_mapped && unmap && !ctx->sock_dead)
        sva_unmap(ctx, bo);
    /* AIE4 DEV BOs are own maps; heap chunks are windows on the heap's mapping */
    if ((bo->type != XDNA_SHIM_BO_DEV || bo->fd >= 0) && bo->type != XDNA_SHIM_BO_DEV_HEAP &&
        bo->va)
        munmap(bo->va, bo->alloc);
    if (bo->fd >= 0)
        close(bo->fd);
    if (bo->type == XDNA_SHIM_BO_DEV_HEAP)
        heap_chunk_drop(ctx, bo, unmap);
    ctx->s.bos[bo->handle - 1] = NULL;
    free(bo);
}

int xdna_bo_release(struct xdna_shim_ctx *ctx, uint32_t handle)
{
    struct xdna_bo *bo = xdna_bo_get(ctx, handle);
    if (!bo)
        return xdna_fail(ctx, EINVAL, "bo_free: no buffer object with handle %u", handle);
    if (bo->busy)
        return xdna_fail(ctx, EBUSY, "bo_free: BO %u is used by %u pending command(s)", handle,
                         bo->busy);
    if (bo->type == XDNA_SHIM_BO_DEV_HEAP) {
        for (unsigned i = 0; i < XDNA_MAX_BOS; i++)
            if (ctx->s.bos[i] && ctx->s.bos[i]->type == XDNA_SHIM_BO_DEV)
                return xdna_fail(ctx, EBUSY, "bo_free: the heap still holds DEV BO %u", i + 1);
        if (xdna_hwctx_live(ctx))
            return xdna_fail(ctx, EBUSY, "bo_free: hardware contexts still use the heap");
        if (ctx->s.heap_chunk[ctx->s.nheap - 1] != handle)
            return xdna_fail(ctx, EBUSY, "bo_free: later heap chunks follow chunk %u", handle);
    }
    bo_destroy(ctx, bo, true);
    return 0;
}

void xdna_bo_free_all(struct xdna_shim_ctx *ctx)
{
    if (!ctx->s.bos)
        return;
    for (int pass = 0; pass < 2; pass++) /* DEV BOs before the heap they live in */
        for (unsigned i = 0; i < XDNA_MAX_BOS; i++) {
            struct xdna_bo *bo = ctx->s.bos[i];
            if (bo && (pass == 1 || bo->type == XDNA_SHIM_BO_DEV))
                bo_destroy(ctx, bo, false); /* the daemon drops our mappings with the session */
        }
}

/* ---- public ------------------------------------------------------------------------- */

int xdna_shim_bo_create(struct xdna_shim_ctx *ctx, int type, uint64_t size, uint32_t *handle)
{
    if (xdna_api_enter(ctx) < 0)
        return -1;
    return xdna_api_leave(ctx, xdna_bo_new(ctx, type, size, false, handle));
}

int xdna_shim_bo_info(struct xdna_shim_ctx *ctx, uint32_t handle, struct xdna_shim_bo_info *info)
{
    if (xdna_api_enter(ctx) < 0)
        return -1;
    struct xdna_bo *bo = user_bo(ctx, handle, "bo_info");
    if (!bo || !info)
        return xdna_api_leave(ctx, bo ? xdna_fail(ctx, EINVAL, "bo_info: NULL info") : -1);
    info->type = (uint32_t)bo->type;
    info->handle = bo->handle;
    info->size = bo->size;
    info->vaddr = (uint64_t)(uintptr_t)bo->va;
    info->xdna_addr = bo->xdna_addr;
    info->map_offset = (uint64_t)bo->handle << 12;
    return xdna_api_leave(ctx, 0);
}

int xdna_shim_bo_sync(struct xdna_shim_ctx *ctx, uint32_t handle, int dir, uint64_t offset,
                      uint64_t size)
{
    if (xdna_api_enter(ctx) < 0)
        return -1;
    struct xdna_bo *bo = user_bo(ctx, handle, "bo_sync");
    if (!bo)
        return xdna_api_leave(ctx, -1);
    if (dir != XDNA_SHIM_SYNC_TO_DEVICE && dir != XDNA_SHIM_SYNC_FROM_DEVICE)
        return xdna_api_leave(ctx, xdna_fail(ctx, EINVAL, "bo_sync: direction %d", dir));
    if (offset > bo->size || (size && size > bo->size - offset))
        return xdna_api_leave(ctx, xdna_fail(ctx, EINVAL, "bo_sync: [%llu, +%llu) is outside the %llu-byte BO",
                                     (unsigned long long)offset, (unsigned long long)size,
                                     (unsigned long long)bo->size));
    __atomic_thread_fence(__ATOMIC_SEQ_CST); /* host and device memory are coherent here */
    return xdna_api_leave(ctx, 0);
}

int xdna_shim_bo_free(struct xdna_shim_ctx *ctx, uint32_t handle)
{
    if (xdna_api_enter(ctx) < 0)
        return -1;
    struct xdna_bo *bo = user_bo(ctx, handle, "bo_free");
    if (!bo)
        return xdna_api_leave(ctx, -1);
    if (bo->dbg_ctx) /* a context's debug BO: it goes first (docs/spec/jobs.md §4a) */
        xdna_hwctx_dbg_unbind(ctx, bo);
    return xdna_api_leave(ctx, xdna_bo_release(ctx, handle));
}

int xdna_shim_set_iommu_mode(struct xdna_shim_ctx *ctx, int mode)
{
    if (xdna_api_enter(ctx) < 0)
        return -1;
    int rc = 0;
    if (mode != XDNA_SHIM_IOMMU_SVA && mode != XDNA_SHIM_IOMMU_IOVA)
        rc = xdna_fail(ctx, EINVAL, "iommu mode %d: SVA (0) or IOVA (1)", mode);
    else if (ctx->s.client && mode == XDNA_SHIM_IOMMU_IOVA)
        rc = xdna_fail(ctx, EPERM, "IOVA mode is the driver session's: DMA addresses are "
                                   "the kernel's, shared by every process");
    for (unsigned i = 0; rc == 0 && ctx->s.bos && i < XDNA_MAX_BOS; i++)
        if (ctx->s.bos[i])
            rc = xdna_fail(ctx, EBUSY, "iommu mode: buffer objects exist already");
    if (rc == 0)
        ctx->iommu_iova = mode == XDNA_SHIM_IOMMU_IOVA;
    return xdna_api_leave(ctx, rc);
}
