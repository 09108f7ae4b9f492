/* What the C programs run under `xdna-emu exec` share (tests/test_uapi_c.py): the check
 * counters and macros, and the calls every test makes to get a BO, its info and its map,
 * to put a reference-kernel descriptor (docs/spec/jobs.md §5) in an instruction BO, and to
 * open the device with its heap.
 * Each program prints one line per failed check; `checks` and `failed` are its totals. */
#ifndef XDNA_TESTS_UAPI_CHECK_H
#define XDNA_TESTS_UAPI_CHECK_H

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

#include "amdxdna_accel.h"

static int checks, failed;

#define CHECK(cond, ...)                                                  \
    do {                                                                  \
        checks++;                                                         \
        if (!(cond)) {                                                    \
            failed++;                                                     \
            printf("FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);        \
            printf(__VA_ARGS__);                                          \
            printf("\n");                                                 \
        }                                                                 \
    } while (0)

/* ioctl that must fail with err */
#define EXPECT_ERR(fd, req, arg, err)                                                  \
    do {                                                                               \
        errno = 0;                                                                     \
        int rc_ = ioctl(fd, req, arg);                                                 \
        CHECK(rc_ == -1 && errno == (err), "%s: rc %d errno %d (%s), want %d", #req,   \
              rc_, errno, strerror(errno), err);                                       \
    } while (0)
#define EXPECT_OK(fd, req, arg)                                                        \
    do {                                                                               \
        int rc_ = ioctl(fd, req, arg);                                                 \
        CHECK(rc_ == 0, "%s: rc %d errno %d (%s)", #req, rc_, errno, strerror(errno)); \
    } while (0)

#define PTR(p) ((uint64_t)(uintptr_t)(p))
#define HEAP_SIZE (64u << 20)
#define N 1024

/* The reference-kernel descriptor; XKNL_* come from xdna_emu/kernels.py on the compiler's
 * command line. */
struct xknl_desc {
    uint32_t magic, version, kernel, dtype, count, m, n, k;
    double scalar;
    uint32_t error, where;
};
_Static_assert(sizeof(struct xknl_desc) == 48, "descriptor");

static inline uint32_t create_bo(int fd, uint32_t type, uint64_t size)
{
    struct amdxdna_drm_create_bo c = {.type = type, .size = size};
    EXPECT_OK(fd, DRM_IOCTL_AMDXDNA_CREATE_BO, &c);
    return c.handle;
}

static inline struct amdxdna_drm_get_bo_info bo_info(int fd, uint32_t h)
{
    struct amdxdna_drm_get_bo_info i = {.handle = h};
    EXPECT_OK(fd, DRM_IOCTL_AMDXDNA_GET_BO_INFO, &i);
    return i;
}

static inline void *map_bo(int fd, uint32_t h, size_t size)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)bo_info(fd, h).map_offset);
    CHECK(p != MAP_FAILED, "mmap BO %u: %s", h, strerror(errno));
    return p;
}

/* A scale-1 int32 run of kernel over count elements, in instruction BO instr. */
static inline void write_desc(int fd, uint32_t instr, uint32_t kernel, uint32_t count)
{
    struct xknl_desc d = {XKNL_MAGIC, XKNL_VERSION, kernel, XKNL_INT32, count, 0, 0, 0, 1.0, 0, 0};
    memcpy((void *)(uintptr_t)bo_info(fd, instr).vaddr, &d, sizeof(d));
}

/* A DEV BO holding kernel's descriptor: a job's instruction BO. */
static inline uint32_t instr_bo(int fd, uint32_t kernel, uint32_t count)
{
    uint32_t h = create_bo(fd, AMDXDNA_BO_DEV, 4096);
    write_desc(fd, h, kernel, count);
    return h;
}

/* /dev/accel/accel0 opened with a mapped 64 MiB heap, as a runtime starts; the core row
 * count (a context's num_tiles per column) in *rows. */
static inline int open_with_heap(uint32_t *rows)
{
    int fd = open("/dev/accel/accel0", O_RDWR | O_CLOEXEC);
    CHECK(fd >= 0, "open: %s", strerror(errno));
    struct amdxdna_drm_query_aie_metadata md = {0};
    struct amdxdna_drm_get_info gi = {.param = DRM_AMDXDNA_QUERY_AIE_METADATA, .buffer_size = sizeof(md),
                                      .buffer = PTR(&md)};
    EXPECT_OK(fd, DRM_IOCTL_AMDXDNA_GET_INFO, &gi);
    *rows = md.core.row_count;
    map_bo(fd, create_bo(fd, AMDXDNA_BO_DEV_HEAP, HEAP_SIZE), HEAP_SIZE);
    return fd;
}

#endif
