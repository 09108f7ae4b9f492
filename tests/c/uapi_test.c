/* The amdxdna UAPI from C, as a program written for the real driver uses it: compiled
 * against our generated header (csrc/generated/amdxdna_accel.h) and run under
 * `xdna-emu exec` by tests/test_uapi_c.py on each chip. Every ioctl served, and each of its
 * bad inputs with the driver's errno (docs/spec/uapi.md §6). Prints one line per failed
 * check and "uapi_test: N checks, M failed"; the exit status is 0 only when none failed.
 *
 * The reference-kernel descriptor constants (XKNL_*) come from xdna_emu/kernels.py on the
 * compiler's command line, the ERT command format from the shim's public header. */
#define _GNU_SOURCE /* program_invocation_short_name */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include "amdxdna_accel.h"
#include "xdna_fw_aie2.h" /* col_status: the emulated firmware's column dump */
#include "xdna_shim.h"

#include "uapi_check.h"

struct bo_expect {
    uint64_t total, internal, heap;
};

static void *unmapped; /* a page the process may not touch (PROT_NONE, kept reserved) */

static void test_node(void)
{
    struct stat st;
    CHECK(stat("/dev/accel/accel0", &st) == 0 && S_ISCHR(st.st_mode) && major(st.st_rdev) == ACCEL_MAJOR &&
              minor(st.st_rdev) == 0, "stat of the node");
    CHECK(stat("/dev/accel/accel7", &st) == -1 && errno == ENOENT, "no accel7");
    struct statx stx;
    memset(&stx, 0xEE, sizeof(stx));
    CHECK(statx(AT_FDCWD, "/dev/accel/accel0", 0, STATX_BASIC_STATS, &stx) == 0 && S_ISCHR(stx.stx_mode) &&
              stx.stx_rdev_major == ACCEL_MAJOR && stx.stx_rdev_minor == 0 &&
              (stx.stx_mask & STATX_BASIC_STATS) == STATX_BASIC_STATS,
          "statx of the node: mode %#o rdev %u:%u", stx.stx_mode, stx.stx_rdev_major, stx.stx_rdev_minor);
    CHECK(statx(AT_FDCWD, "/dev/accel/accel7", 0, STATX_BASIC_STATS, &stx) == -1 && errno == ENOENT,
          "no accel7 for statx");
    CHECK(open("/dev/accel/accel7", O_RDWR) == -1 && errno == ENOENT, "open accel7");
    char buf[64] = {0};
    int s = open("/sys/class/accel/accel0/device/vendor", O_RDONLY);
    CHECK(s >= 0 && read(s, buf, sizeof(buf) - 1) > 0 && strncmp(buf, "0x1022", 6) == 0,
          "sysfs device link leads to the PCI function: %s", buf);
    if (s >= 0)
        close(s);
    char dev[64];
    snprintf(dev, sizeof(dev), "/sys/dev/char/%u:0/device/class", ACCEL_MAJOR);
    memset(buf, 0, sizeof(buf));
    s = open(dev, O_RDONLY);
    CHECK(s >= 0 && read(s, buf, sizeof(buf) - 1) > 0 && strncmp(buf, "0x1180", 6) == 0,
          "/sys/dev/char leads to the NPU: %s", buf);
    if (s >= 0)
        close(s);
}

static void test_generic(int fd)
{
    char name[4] = {'x', 'x', 'x', 'x'};
    struct drm_version v = {.name_len = 3, .name = PTR(name)};
    EXPECT_OK(fd, DRM_IOCTL_VERSION, &v);
    CHECK(v.name_len == 7 && memcmp(name, "amd", 3) == 0 && name[3] == 'x',
          "VERSION copies what fits and reports the length: %zu", (size_t)v.name_len);
    char full[16] = {0};
    v = (struct drm_version){.name_len = sizeof(full), .name = PTR(full)};
    EXPECT_OK(fd, DRM_IOCTL_VERSION, &v);
    CHECK(strcmp(full, "amdxdna") == 0 && v.version_major == AMDXDNA_DRIVER_MAJOR, "name %s", full);
    v = (struct drm_version){.name_len = 8, .name = PTR(unmapped)};
    EXPECT_ERR(fd, DRM_IOCTL_VERSION, &v, EFAULT);
    EXPECT_ERR(fd, DRM_IOCTL_VERSION, NULL, EFAULT);
    EXPECT_ERR(fd, DRM_IOCTL_VERSION, unmapped, EFAULT);
    EXPECT_ERR(fd, DRM_IOWR(DRM_COMMAND_BASE + 11, struct amdxdna_drm_get_info), &v, EINVAL);
    EXPECT_ERR(fd, DRM_IOWR(0x3F, struct drm_gem_close), &v, EINVAL);
    EXPECT_ERR(fd, _IOWR('T', 1, int), &v, ENOTTY);
    struct drm_set_client_name cn = {.name_len = 7, .name = PTR("uapi-ok")};
    EXPECT_OK(fd, DRM_IOCTL_SET_CLIENT_NAME, &cn);
    cn = (struct drm_set_client_name){.name_len = 6, .name = PTR("a name")};
    EXPECT_ERR(fd, DRM_IOCTL_SET_CLIENT_NAME, &cn, EINVAL);
    cn = (struct drm_set_client_name){.name_len = 100, .name = PTR("x")};
    EXPECT_ERR(fd, DRM_IOCTL_SET_CLIENT_NAME, &cn, EINVAL);
    cn = (struct drm_set_client_name){.name_len = 4, .name = PTR(unmapped)};
    EXPECT_ERR(fd, DRM_IOCTL_SET_CLIENT_NAME, &cn, EFAULT);
    struct drm_gem_close gc = {.handle = 999};
    EXPECT_ERR(fd, DRM_IOCTL_GEM_CLOSE, &gc, EINVAL);

    /* GET_CAP: a compute-accel driver with syncobjs and timelines answers four caps; a
     * KMS cap or an unknown one is EOPNOTSUPP with value 0 (docs/spec/uapi.md §3) */
    static const struct { uint64_t cap, value; } caps[] = {
        {DRM_CAP_SYNCOBJ, 1}, {DRM_CAP_SYNCOBJ_TIMELINE, 1}, {DRM_CAP_TIMESTAMP_MONOTONIC, 1},
        {DRM_CAP_PRIME, DRM_PRIME_CAP_IMPORT | DRM_PRIME_CAP_EXPORT}};
    for (size_t i = 0; i < sizeof(caps) / sizeof(caps[0]); i++) {
        struct drm_get_cap gcap = {.capability = caps[i].cap, .value = 77};
        EXPECT_OK(fd, DRM_IOCTL_GET_CAP, &gcap);
        CHECK(gcap.value == caps[i].value, "cap %#llx = %llu", (unsigned long long)caps[i].cap,
              (unsigned long long)gcap.value);
    }
    struct drm_get_cap gcap = {.capability = DRM_CAP_DUMB_BUFFER, .value = 77};
    EXPECT_ERR(fd, DRM_IOCTL_GET_CAP, &gcap, EOPNOTSUPP);
    CHECK(gcap.value == 0, "refused cap value %llu", (unsigned long long)gcap.value);
    gcap = (struct drm_get_cap){.capability = 0xFFFF, .value = 77};
    EXPECT_ERR(fd, DRM_IOCTL_GET_CAP, &gcap, EOPNOTSUPP);
    EXPECT_ERR(fd, DRM_IOCTL_GET_CAP, NULL, EFAULT);

    /* FIOCLEX/FIONCLEX/FIONBIO/FIOASYNC: the kernel's, on the fd itself */
    CHECK(ioctl(fd, FIONCLEX) == 0 && !(fcntl(fd, F_GETFD) & FD_CLOEXEC), "FIONCLEX");
    CHECK(ioctl(fd, FIOCLEX) == 0 && (fcntl(fd, F_GETFD) & FD_CLOEXEC), "FIOCLEX");
    int on = 1;
    CHECK(ioctl(fd, FIONBIO, &on) == 0 && (fcntl(fd, F_GETFL) & O_NONBLOCK), "FIONBIO on");
    on = 0;
    CHECK(ioctl(fd, FIONBIO, &on) == 0 && !(fcntl(fd, F_GETFL) & O_NONBLOCK), "FIONBIO off");
    EXPECT_ERR(fd, FIONBIO, NULL, EFAULT);
    CHECK(ioctl(fd, FIOASYNC, &on) == 0 && !(fcntl(fd, F_GETFL) & O_ASYNC), "FIOASYNC off");
    on = 1; /* no fasync handler: the kernel's ENOTTY, the flag unchanged */
    CHECK(ioctl(fd, FIOASYNC, &on) == -1 && errno == ENOTTY && !(fcntl(fd, F_GETFL) & O_ASYNC), "FIOASYNC on");
    struct drm_version v2 = {0};
    EXPECT_OK(fd, DRM_IOCTL_VERSION, &v2); /* the file still works */

    struct stat st;
    CHECK(fstat(fd, &st) == 0 && S_ISCHR(st.st_mode) && major(st.st_rdev) == ACCEL_MAJOR, "fstat");
    struct statx stx;
    CHECK(statx(fd, "", AT_EMPTY_PATH, STATX_BASIC_STATS, &stx) == 0 && S_ISCHR(stx.stx_mode) &&
              stx.stx_rdev_major == ACCEL_MAJOR, "statx of the fd");
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    CHECK(poll(&pfd, 1, 0) == 0, "poll: no event pending");
    int d = dup(fd);
    struct drm_version dv = {0};
    CHECK(d >= 0 && ioctl(d, DRM_IOCTL_VERSION, &dv) == 0 && dv.name_len == 7, "ioctl on a dup");
    close(d);
    CHECK(ioctl(fd, DRM_IOCTL_VERSION, &dv) == 0, "the original survives closing its dup");
    CHECK(ioctl(d, DRM_IOCTL_VERSION, &dv) == -1 && errno == EBADF, "closed dup is gone");
}

static void test_bos(int fd, int other)
{
    struct amdxdna_drm_create_bo c = {.type = AMDXDNA_BO_SHARE, .size = 0};
    EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_CREATE_BO, &c, EINVAL);
    c = (struct amdxdna_drm_create_bo){.type = 0, .size = 4096};
    EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_CREATE_BO, &c, EINVAL);
    c.type = AMDXDNA_BO_CMD + 1;
    EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_CREATE_BO, &c, EINVAL);
    c = (struct amdxdna_drm_create_bo){.type = AMDXDNA_BO_SHARE, .size = 4096, .flags = 1u << 8};
    EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_CREATE_BO, &c, EINVAL);
    EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_CREATE_BO, NULL, EFAULT);
    EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_CREATE_BO, unmapped, EFAULT);
    c = (struct amdxdna_drm_create_bo){.type = AMDXDNA_BO_DEV, .size = 4096};
    EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_CREATE_BO, &c, EINVAL); /* no heap yet */

    uint32_t share = create_bo(fd, AMDXDNA_BO_SHARE, 8192);
    struct amdxdna_drm_get_bo_info i = bo_info(fd, share);
    CHECK(i.map_offset && i.xdna_addr && i.xdna_addr != AMDXDNA_INVALID_ADDR, "bo info");
    i = (struct amdxdna_drm_get_bo_info){.handle = share, .ext = 1};
    EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_GET_BO_INFO, &i, EINVAL);
    i = (struct amdxdna_drm_get_bo_info){.handle = share, .pad = 1};
    EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_GET_BO_INFO, &i, EINVAL);
    i = (struct amdxdna_drm_get_bo_info){.handle = 4000};
    EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_GET_BO_INFO, &i, ENOENT);

    /* a handle of another DRM file names nothing here */
    uint32_t theirs[4];
    for (int k = 0; k < 4; k++)
        theirs[k] = create_bo(other, AMDXDNA_BO_SHARE, 4096);
    i = (struct amdxdna_drm_get_bo_info){.handle = theirs[3]};
    EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_GET_BO_INFO, &i, ENOENT);
    uint64_t their_off = bo_info(other, theirs[3]).map_offset;
    CHECK(mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, (off_t)their_off) == MAP_FAILED && errno == EINVAL,
          "mmap of another file's BO offset");

    /* mapping: the BO's memory, shared with a second mapping */
    uint8_t *p = map_bo(fd, share, 8192), *q = map_bo(fd, share, 4096);
    p[100] = 0x5A;
    CHECK(q[100] == 0x5A, "two maps of one BO share memory");
    munmap(q, 4096);
    CHECK(mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, (off_t)(bo_info(fd, share).map_offset + 4096)) == MAP_FAILED &&
              errno == EINVAL, "mmap inside a BO's range");
    CHECK(mmap(NULL, 1 << 20, PROT_READ, MAP_SHARED, fd, (off_t)bo_info(fd, share).map_offset) == MAP_FAILED &&
              errno == EINVAL, "mmap longer than the BO");
    CHECK(mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 4096) == MAP_FAILED && errno == EINVAL,
          "mmap at an offset naming no BO");
    /* a read-only shared map is the BO's memory, read-only; a private (copy-on-write) map
     * is refused as the DRM core refuses it (docs/spec/uapi.md §6) */
    const uint8_t *ro = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, (off_t)bo_info(fd, share).map_offset);
    CHECK(ro != MAP_FAILED && ro[100] == 0x5A, "read-only map of a BO");
    if (ro != MAP_FAILED)
        munmap((void *)ro, 4096);
    CHECK(mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, fd, (off_t)bo_info(fd, share).map_offset) == MAP_FAILED &&
              errno == EINVAL, "private map of a BO");
    CHECK(mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, (off_t)bo_info(fd, share).map_offset) ==
              MAP_FAILED && errno == EINVAL, "copy-on-write map of a BO");

    struct amdxdna_drm_sync_bo s = {.handle = share, .direction = SYNC_DIRECT_TO_DEVICE, .size = 8192};
    EXPECT_OK(fd, DRM_IOCTL_AMDXDNA_SYNC_BO, &s);
    s.direction = 2;
    EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_SYNC_BO, &s, EINVAL);
    s = (struct amdxdna_drm_sync_bo){.handle = share, .offset = 8192, .size = 1};
    EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_SYNC_BO, &s, EINVAL);
    s = (struct amdxdna_drm_sync_bo){.handle = 4000};
    EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_SYNC_BO, &s, ENOENT);
    munmap(p, 8192);

    struct drm_gem_close gc = {.handle = share};
    EXPECT_OK(fd, DRM_IOCTL_GEM_CLOSE, &gc);
    EXPECT_ERR(fd, DRM_IOCTL_GEM_CLOSE, &gc, EINVAL); /* stale */
    i = (struct amdxdna_drm_get_bo_info){.handle = share};
    EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_GET_BO_INFO, &i, ENOENT);
}

static struct amdxdna_drm_query_aie_metadata test_info(int fd)
{
    struct amdxdna_drm_query_aie_metadata md;
    memset(&md, 0xEE, sizeof(md));
    struct amdxdna_drm_get_info gi = {.param = DRM_AMDXDNA_QUERY_AIE_METADATA,
                                      .buffer_size = sizeof(md), .buffer = PTR(&md)};
    EXPECT_OK(fd, DRM_IOCTL_AMDXDNA_GET_INFO, &gi);
    CHECK(md.cols > 0 && md.core.row_count > 0 && md.shim.row_count == 1 && md.version.major > 0,
          "metadata cols %u core rows %u", md.cols, md.core.row_count);

    struct amdxdna_drm_query_aie_version av = {0};
    gi = (struct amdxdna_drm_get_info){.param = DRM_AMDXDNA_QUERY_AIE_VERSION,
                                       .buffer_size = sizeof(av), .buffer = PTR(&av)};
    EXPECT_OK(fd, DRM_IOCTL_AMDXDNA_GET_INFO, &gi);
    CHECK(av.major == md.version.major && av.minor == md.version.minor, "aie version");

    uint8_t fw[sizeof(struct amdxdna_drm_query_firmware_version) + 4];
    memset(fw, 0xAB, sizeof(fw));
    gi = (struct amdxdna_drm_get_info){.param = DRM_AMDXDNA_QUERY_FIRMWARE_VERSION,
                                       .buffer_size = 8, .buffer = PTR(fw)};
    EXPECT_OK(fd, DRM_IOCTL_AMDXDNA_GET_INFO, &gi); /* copies what fits */
    CHECK(fw[8] == 0xAB && fw[15] == 0xAB, "firmware version wrote past an 8-byte buffer");
    gi.buffer_size = sizeof(struct amdxdna_drm_query_firmware_version);
    EXPECT_OK(fd, DRM_IOCTL_AMDXDNA_GET_INFO, &gi);
    CHECK(fw[16] == 0xAB && (fw[0] | fw[4]) != 0, "firmware version");

    struct amdxdna_drm_query_clock_metadata cm = {0};
    gi = (struct amdxdna_drm_get_info){.param = DRM_AMDXDNA_QUERY_CLOCK_METADATA,
                                       .buffer_size = sizeof(cm), .buffer = PTR(&cm)};
    EXPECT_OK(fd, DRM_IOCTL_AMDXDNA_GET_INFO, &gi);
    CHECK(cm.mp_npu_clock.freq_mhz > 0 && cm.mp_npu_clock.name[0], "npu clock %u", cm.mp_npu_clock.freq_mhz);

    struct amdxdna_drm_get_power_mode pm = {.power_mode = 0xFF};
    gi = (struct amdxdna_drm_get_info){.param = DRM_AMDXDNA_GET_POWER_MODE,
                                       .buffer_size = sizeof(pm), .buffer = PTR(&pm)};
    EXPECT_OK(fd, DRM_IOCTL_AMDXDNA_GET_INFO, &gi);
    CHECK(pm.power_mode <= POWER_MODE_TURBO, "power mode %u", pm.power_mode);

    struct amdxdna_drm_query_firmware_version cert = {0};
    gi = (struct amdxdna_drm_get_info){.param = DRM_AMDXDNA_QUERY_CERT_FIRMWARE_VERSION,
                                       .buffer_size = sizeof(cert), .buffer = PTR(&cert)};
    EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_GET_INFO, &gi, EOPNOTSUPP); /* AIE2: no cert firmware */
    CHECK(cert.major == 0 && cert.build == 0, "refused cert query wrote nothing");

    /* short buffers: these copy what fits and succeed, the bytes the full answer has
     * there, nothing past the buffer (docs/spec/uapi.md §6); `stable` bytes of each answer
     * cannot move between two calls (the clocks, the current TOPS and contexts are live) */
    static const struct { uint32_t param, size, stable; } fits[] = {
        {DRM_AMDXDNA_QUERY_AIE_VERSION, sizeof(struct amdxdna_drm_query_aie_version),
         sizeof(struct amdxdna_drm_query_aie_version)},
        {DRM_AMDXDNA_QUERY_AIE_METADATA, sizeof(struct amdxdna_drm_query_aie_metadata),
         sizeof(struct amdxdna_drm_query_aie_metadata)},
        {DRM_AMDXDNA_QUERY_CLOCK_METADATA, sizeof(struct amdxdna_drm_query_clock_metadata),
         offsetof(struct amdxdna_drm_query_clock, freq_mhz)},
        {DRM_AMDXDNA_QUERY_RESOURCE_INFO, sizeof(struct amdxdna_drm_get_resource_info),
         offsetof(struct amdxdna_drm_get_resource_info, npu_tops_curr)},
        {DRM_AMDXDNA_GET_POWER_MODE, sizeof(struct amdxdna_drm_get_power_mode),
         sizeof(struct amdxdna_drm_get_power_mode)}};
    for (size_t i = 0; i < sizeof(fits) / sizeof(fits[0]); i++) {
        uint8_t full[128], part[128 + 8];
        memset(full, 0, sizeof(full));
        gi = (struct amdxdna_drm_get_info){.param = fits[i].param, .buffer_size = fits[i].size,
                                           .buffer = PTR(full)};
        EXPECT_OK(fd, DRM_IOCTL_AMDXDNA_GET_INFO, &gi);
        uint32_t cuts[2] = {0, fits[i].size - 1};
        for (int k = 0; k < 2; k++) {
            memset(part, 0xCD, sizeof(part));
            gi = (struct amdxdna_drm_get_info){.param = fits[i].param, .buffer_size = cuts[k],
                                               .buffer = PTR(part)};
            EXPECT_OK(fd, DRM_IOCTL_AMDXDNA_GET_INFO, &gi);
            size_t past = 0;
            for (size_t b = cuts[k]; b < sizeof(part); b++)
                past += part[b] != 0xCD;
            size_t same = cuts[k] < fits[i].stable ? cuts[k] : fits[i].stable;
            CHECK(memcmp(part, full, same) == 0 && past == 0,
                  "param %u, %u-byte buffer: %zu bytes written past it", fits[i].param, cuts[k], past);
        }
    }

    gi = (struct amdxdna_drm_get_info){.param = 99, .buffer_size = 8, .buffer = PTR(&pm)};
    EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_GET_INFO, &gi, EOPNOTSUPP); /* a parameter not served */
    gi = (struct amdxdna_drm_get_info){.param = DRM_AMDXDNA_QUERY_AIE_VERSION, .buffer_size = 8,
                                       .buffer = PTR(unmapped)};
    EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_GET_INFO, &gi, EFAULT);
    gi.buffer = 0;
    EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_GET_INFO, &gi, EFAULT);
    return md;
}

static uint32_t test_hwctx(int fd, const struct amdxdna_drm_query_aie_metadata *md)
{
    struct amdxdna_qos_info qos = {.priority = AMDXDNA_QOS_NORMAL_PRIORITY};
    struct amdxdna_drm_create_hwctx c = {.qos_p = PTR(&qos), .num_tiles = md->core.row_count};
    EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_CREATE_HWCTX, &c, ENOENT); /* no heap */

    uint32_t heap = create_bo(fd, AMDXDNA_BO_DEV_HEAP, HEAP_SIZE);
    struct amdxdna_drm_create_bo c2 = {.type = AMDXDNA_BO_DEV, .size = 4096};
    EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_CREATE_BO, &c2, EINVAL); /* heap not mapped yet */
    EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_CREATE_HWCTX, &c, EINVAL);
    void *hp = map_bo(fd, heap, HEAP_SIZE);
    (void)hp;

    c = (struct amdxdna_drm_create_hwctx){.qos_p = PTR(&qos), .num_tiles = md->core.row_count, .ext = 1};
    EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_CREATE_HWCTX, &c, EINVAL);
    c = (struct amdxdna_drm_create_hwctx){.qos_p = 0, .num_tiles = md->core.row_count};
    EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_CREATE_HWCTX, &c, EFAULT);
    c = (struct amdxdna_drm_create_hwctx){.qos_p = PTR(unmapped), .num_tiles = md->core.row_count};
    EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_CREATE_HWCTX, &c, EFAULT);
    c = (struct amdxdna_drm_create_hwctx){.qos_p = PTR(&qos), .num_tiles = 0};
    EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_CREATE_HWCTX, &c, EINVAL);
    c = (struct amdxdna_drm_create_hwctx){.qos_p = PTR(&qos), .num_tiles = (md->cols + 1u) * md->core.row_count};
    EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_CREATE_HWCTX, &c, EINVAL);
    /* QoS out of range: more GOPS than any count fits, or than the partition's ops per
     * cycle give at the top DPM level (docs/spec/jobs.md §6) */
    struct amdxdna_qos_info big = {.gops = 0x10000, .fps = 0x10000, .priority = AMDXDNA_QOS_NORMAL_PRIORITY};
    c = (struct amdxdna_drm_create_hwctx){.qos_p = PTR(&big), .num_tiles = md->core.row_count};
    EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_CREATE_HWCTX, &c, EINVAL);
    big = (struct amdxdna_qos_info){.gops = 100, .latency = 10, .priority = AMDXDNA_QOS_NORMAL_PRIORITY};
    c = (struct amdxdna_drm_create_hwctx){.qos_p = PTR(&big), .num_tiles = md->core.row_count, .max_opc = 1};
    EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_CREATE_HWCTX, &c, EINVAL);
    /* a QoS that fits the partition is taken, and reported back by GET_ARRAY */
    qos = (struct amdxdna_qos_info){.gops = 1, .fps = 30, .priority = AMDXDNA_QOS_NORMAL_PRIORITY};
    c = (struct amdxdna_drm_create_hwctx){.qos_p = PTR(&qos), .num_tiles = md->core.row_count, .max_opc = 2048};
    EXPECT_OK(fd, DRM_IOCTL_AMDXDNA_CREATE_HWCTX, &c);
    CHECK(c.handle != AMDXDNA_INVALID_CTX_HANDLE, "context handle");

    uint32_t cu_bo = create_bo(fd, AMDXDNA_BO_DEV, 4096);
    struct {
        struct amdxdna_hwctx_param_config_cu hdr;
        struct amdxdna_cu_config cu[1];
    } cfg = {.hdr = {.num_cus = 1}, .cu = {{.cu_bo = cu_bo}}};
    struct amdxdna_drm_config_hwctx cc = {.handle = c.handle, .param_type = DRM_AMDXDNA_HWCTX_CONFIG_CU,
                                          .param_val = PTR(&cfg), .param_val_size = sizeof(cfg)};
    struct amdxdna_drm_config_hwctx bad = cc;
    bad.pad = 1;
    EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_CONFIG_HWCTX, &bad, EINVAL);
    bad = cc;
    bad.handle = c.handle + 100;
    EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_CONFIG_HWCTX, &bad, EINVAL);
    bad = cc;
    bad.param_type = 99;
    EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_CONFIG_HWCTX, &bad, EINVAL);
    bad.param_type = DRM_AMDXDNA_HWCTX_CONFIG_OPCODE_TIMEOUT; /* Versal's: AIE2 refuses it */
    EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_CONFIG_HWCTX, &bad, EOPNOTSUPP);
    bad = cc;
    bad.param_val_size = sizeof(cfg.hdr);
    EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_CONFIG_HWCTX, &bad, EINVAL);
    bad = cc;
    bad.param_val = PTR(unmapped);
    EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_CONFIG_HWCTX, &bad, EFAULT);
    cfg.hdr.num_cus = 0;
    EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_CONFIG_HWCTX, &cc, EINVAL);
    cfg.hdr.num_cus = 1;
    cfg.cu[0].cu_bo = 4000;
    EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_CONFIG_HWCTX, &cc, EINVAL);
    cfg.cu[0].cu_bo = cu_bo;
    EXPECT_OK(fd, DRM_IOCTL_AMDXDNA_CONFIG_HWCTX, &cc);

    /* debug BOs (docs/spec/jobs.md §4a): param_val names a DEV BO of at least 4 KiB */
    uint32_t dbg = create_bo(fd, AMDXDNA_BO_DEV, 4096), dbg2 = create_bo(fd, AMDXDNA_BO_DEV, 4096);
    uint32_t tiny = create_bo(fd, AMDXDNA_BO_DEV, 1024), shr = create_bo(fd, AMDXDNA_BO_SHARE, 4096);
    struct amdxdna_drm_config_hwctx db = {.handle = c.handle, .param_type = DRM_AMDXDNA_HWCTX_ASSIGN_DBG_BUF};
    db.param_val = 4000;
    EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_CONFIG_HWCTX, &db, EINVAL); /* no such BO */
    db.param_val = shr;
    EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_CONFIG_HWCTX, &db, EINVAL); /* not a DEV BO */
    db.param_val = tiny;
    EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_CONFIG_HWCTX, &db, EINVAL); /* the firmware refuses it */
    db.param_val = dbg;
    db.handle = c.handle + 100;
    EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_CONFIG_HWCTX, &db, EINVAL); /* no such context */
    db.handle = c.handle;
    EXPECT_OK(fd, DRM_IOCTL_AMDXDNA_CONFIG_HWCTX, &db);
    EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_CONFIG_HWCTX, &db, EBUSY); /* bound already */
    db.param_val = dbg2;
    EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_CONFIG_HWCTX, &db, EBUSY); /* the context has one */
    db.param_type = DRM_AMDXDNA_HWCTX_REMOVE_DBG_BUF;
    EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_CONFIG_HWCTX, &db, EINVAL); /* not its debug BO */
    db.param_val = dbg;
    EXPECT_OK(fd, DRM_IOCTL_AMDXDNA_CONFIG_HWCTX, &db);
    EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_CONFIG_HWCTX, &db, EINVAL); /* removed already */
    db.param_type = DRM_AMDXDNA_HWCTX_ASSIGN_DBG_BUF;
    db.param_val = dbg2;
    EXPECT_OK(fd, DRM_IOCTL_AMDXDNA_CONFIG_HWCTX, &db); /* a new one after the removal */
    db.param_type = DRM_AMDXDNA_HWCTX_REMOVE_DBG_BUF;
    EXPECT_OK(fd, DRM_IOCTL_AMDXDNA_CONFIG_HWCTX, &db);
    struct drm_gem_close gc = {.handle = tiny};
    EXPECT_OK(fd, DRM_IOCTL_GEM_CLOSE, &gc);
    gc.handle = shr;
    EXPECT_OK(fd, DRM_IOCTL_GEM_CLOSE, &gc);
    gc.handle = dbg;
    EXPECT_OK(fd, DRM_IOCTL_GEM_CLOSE, &gc);
    gc.handle = dbg2;
    EXPECT_OK(fd, DRM_IOCTL_GEM_CLOSE, &gc);

    struct amdxdna_drm_get_resource_info ri = {0};
    struct amdxdna_drm_get_info gi = {.param = DRM_AMDXDNA_QUERY_RESOURCE_INFO, .buffer_size = sizeof(ri),
                                      .buffer = PTR(&ri)};
    EXPECT_OK(fd, DRM_IOCTL_AMDXDNA_GET_INFO, &gi);
    CHECK(ri.npu_clk_max > 0 && ri.npu_task_max >= 1 && ri.npu_task_curr == 1 &&
              ri.npu_tops_curr <= ri.npu_tops_max,
          "resource info clk %llu tasks %llu/%llu tops %llu/%llu", (unsigned long long)ri.npu_clk_max,
          (unsigned long long)ri.npu_task_curr, (unsigned long long)ri.npu_task_max,
          (unsigned long long)ri.npu_tops_curr, (unsigned long long)ri.npu_tops_max);

    struct amdxdna_drm_query_hwctx hw[2];
    gi = (struct amdxdna_drm_get_info){.param = DRM_AMDXDNA_QUERY_HW_CONTEXTS,
                                       .buffer_size = sizeof(hw), .buffer = PTR(hw)};
    EXPECT_OK(fd, DRM_IOCTL_AMDXDNA_GET_INFO, &gi);
    CHECK(gi.buffer_size == sizeof(hw[0]) && hw[0].pid == getpid() && hw[0].num_col == 1,
          "hw contexts: %u bytes", gi.buffer_size);
    gi.buffer_size = sizeof(hw[0]) - 1;
    EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_GET_INFO, &gi, EINVAL);
    return c.handle;
}

static void test_exec(int fd, uint32_t ctx)
{
    const size_t bytes = N * sizeof(int32_t);
    uint32_t a = create_bo(fd, AMDXDNA_BO_SHARE, bytes), b = create_bo(fd, AMDXDNA_BO_SHARE, bytes);
    uint32_t out = create_bo(fd, AMDXDNA_BO_SHARE, bytes), instr = create_bo(fd, AMDXDNA_BO_DEV, 4096);
    uint32_t cmd = create_bo(fd, AMDXDNA_BO_CMD, 4096);
    int32_t *pa = map_bo(fd, a, bytes), *pb = map_bo(fd, b, bytes), *po = map_bo(fd, out, bytes);
    for (int k = 0; k < N; k++) {
        pa[k] = k;
        pb[k] = 1000 - 3 * k;
        po[k] = -1;
    }
    /* the reference-kernel descriptor (docs/spec/jobs.md §5) in the instruction BO */
    write_desc(fd, instr, XKNL_ADD, N);

    uint32_t *c = map_bo(fd, cmd, 4096);
    uint64_t ia = bo_info(fd, instr).xdna_addr, args[3] = {bo_info(fd, a).xdna_addr,
                                                          bo_info(fd, b).xdna_addr,
                                                          bo_info(fd, out).xdna_addr};
    uint32_t w[16], nw = 0;
    w[nw++] = 1; /* CU mask */
    w[nw++] = (uint32_t)ia;
    w[nw++] = (uint32_t)(ia >> 32);
    w[nw++] = sizeof(struct xknl_desc);
    w[nw++] = 0; /* no properties */
    for (int k = 0; k < 3; k++) {
        w[nw++] = (uint32_t)args[k];
        w[nw++] = (uint32_t)(args[k] >> 32);
    }
    c[0] = XDNA_SHIM_ERT_STATE_NEW | (nw << 12) | (XDNA_SHIM_ERT_START_NPU << 23);
    memcpy(c + 1, w, nw * 4);

    uint32_t hs[4] = {a, b, out, instr};
    struct amdxdna_drm_exec_cmd e = {.hwctx = ctx, .type = AMDXDNA_CMD_SUBMIT_EXEC_BUF,
                                     .cmd_handles = cmd, .args = PTR(hs), .cmd_count = 1,
                                     .arg_count = 4};
    struct amdxdna_drm_exec_cmd bad = e;
    bad.ext = 1;
    EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_EXEC_CMD, &bad, EINVAL);
    bad = e;
    bad.cmd_count = 2;
    EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_EXEC_CMD, &bad, EINVAL);
    bad = e;
    bad.type = 7;
    EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_EXEC_CMD, &bad, EINVAL);
    bad = e;
    bad.cmd_handles = a; /* not a CMD BO */
    EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_EXEC_CMD, &bad, EINVAL);
    bad = e;
    bad.hwctx = ctx + 100;
    EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_EXEC_CMD, &bad, EINVAL);
    bad = e;
    bad.args = PTR(unmapped);
    EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_EXEC_CMD, &bad, EFAULT);
    uint32_t stale = create_bo(fd, AMDXDNA_BO_SHARE, 4096);
    struct drm_gem_close gc = {.handle = stale};
    EXPECT_OK(fd, DRM_IOCTL_GEM_CLOSE, &gc);
    uint32_t hs_stale[2] = {a, stale};
    bad = e;
    bad.args = PTR(hs_stale);
    bad.arg_count = 2;
    EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_EXEC_CMD, &bad, ENOENT); /* a BO freed meanwhile */
    CHECK(po[0] == -1 && (c[0] & 0xF) == XDNA_SHIM_ERT_STATE_NEW, "refused commands ran nothing");

    EXPECT_OK(fd, DRM_IOCTL_AMDXDNA_EXEC_CMD, &e);
    CHECK(e.seq >= 1, "seq %llu", (unsigned long long)e.seq);
    struct amdxdna_drm_wait_cmd wc = {.hwctx = ctx, .timeout = 5000, .seq = e.seq};
    EXPECT_OK(fd, DRM_IOCTL_AMDXDNA_WAIT_CMD, &wc);
    CHECK((c[0] & 0xF) == XDNA_SHIM_ERT_STATE_COMPLETED, "command state %u", c[0] & 0xF);
    int wrong = 0;
    for (int k = 0; k < N; k++)
        wrong += po[k] != pa[k] + pb[k];
    CHECK(wrong == 0, "%d wrong sums", wrong);
    wc.hwctx = ctx + 100;
    EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_WAIT_CMD, &wc, EINVAL);
    wc = (struct amdxdna_drm_wait_cmd){.hwctx = ctx, .timeout = 10, .seq = e.seq + 50};
    EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_WAIT_CMD, &wc, EINVAL); /* never submitted */
}

/* A second process (forked, opening the device itself) reads the first one's contexts and
 * BO usage, as another process reads them on a real machine. Returns its failures. */
static int child_reads(pid_t parent, uint32_t ctx, const struct bo_expect *want)
{
    int fd = open("/dev/accel/accel0", O_RDWR);
    CHECK(fd >= 0, "child open: %s", strerror(errno));
    if (fd < 0)
        return 1;
    struct amdxdna_drm_hwctx_entry e[8];
    memset(e, 0, sizeof(e));
    struct amdxdna_drm_get_array ga = {.param = DRM_AMDXDNA_HW_CONTEXT_ALL, .element_size = sizeof(e[0]),
                                       .num_element = 8, .buffer = PTR(e)};
    EXPECT_OK(fd, DRM_IOCTL_AMDXDNA_GET_ARRAY, &ga);
    int found = -1;
    for (unsigned i = 0; i < ga.num_element; i++)
        if (e[i].pid == parent && e[i].context_id == ctx)
            found = (int)i;
    CHECK(ga.element_size == sizeof(e[0]) && found >= 0, "parent's context listed (%u entries)", ga.num_element);
    if (found >= 0)
        CHECK(strncmp(e[found].name, program_invocation_short_name, 15) == 0 && e[found].command_submissions == 1 &&
                  e[found].command_completions == 1 && e[found].num_col == 1 &&
                  e[found].priority == AMDXDNA_QOS_NORMAL_PRIORITY && e[found].gops == 1 && e[found].fps == 30 &&
                  e[found].state <= AMDXDNA_HWCTX_STATE_ACTIVE,
              "entry: name %s subs %llu", e[found].name, (unsigned long long)e[found].command_submissions);

    /* a smaller element: the first bytes of each, at that stride */
    uint8_t small[2 * 24];
    ga = (struct amdxdna_drm_get_array){.param = DRM_AMDXDNA_HW_CONTEXT_ALL, .element_size = 24,
                                        .num_element = 2, .buffer = PTR(small)};
    EXPECT_OK(fd, DRM_IOCTL_AMDXDNA_GET_ARRAY, &ga);
    CHECK(ga.element_size == 24 && ga.num_element >= 1, "negotiated %u x %u", ga.num_element, ga.element_size);

    /* BY_ID: the user's handle and the pid; the firmware's id comes back in hwctx_id */
    struct amdxdna_drm_hwctx_entry key = {.pid = parent, .context_id = ctx};
    ga = (struct amdxdna_drm_get_array){.param = DRM_AMDXDNA_HW_CONTEXT_BY_ID, .element_size = sizeof(key),
                                        .num_element = 1, .buffer = PTR(&key)};
    EXPECT_OK(fd, DRM_IOCTL_AMDXDNA_GET_ARRAY, &ga);
    CHECK(ga.num_element == 1 && key.command_completions == 1 && key.context_id == ctx &&
              found >= 0 && key.hwctx_id == e[found].hwctx_id,
          "by id: context %u fw %u", key.context_id, key.hwctx_id);
    key = (struct amdxdna_drm_hwctx_entry){.pid = parent, .context_id = ctx + 100};
    EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_GET_ARRAY, &ga, EINVAL); /* no such context */
    key = (struct amdxdna_drm_hwctx_entry){.pid = getpid(), .context_id = ctx};
    EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_GET_ARRAY, &ga, EINVAL); /* not this pid's */
    key = (struct amdxdna_drm_hwctx_entry){.pid = parent, .context_id = 0};
    EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_GET_ARRAY, &ga, EINVAL); /* a key of 0 */
    key = (struct amdxdna_drm_hwctx_entry){.pid = 0, .context_id = ctx};
    EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_GET_ARRAY, &ga, EINVAL);
    struct amdxdna_drm_hwctx_entry keys[2] = {{.pid = parent, .context_id = ctx}};
    ga = (struct amdxdna_drm_get_array){.param = DRM_AMDXDNA_HW_CONTEXT_BY_ID, .element_size = sizeof(key),
                                        .num_element = 2, .buffer = PTR(keys)};
    EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_GET_ARRAY, &ga, EINVAL); /* more than one element */
    CHECK(ga.num_element == 1 && keys[0].command_completions == 0, "BY_ID of 2 elements");

    struct amdxdna_drm_bo_usage u = {.pid = parent};
    ga = (struct amdxdna_drm_get_array){.param = DRM_AMDXDNA_BO_USAGE, .element_size = sizeof(u),
                                        .num_element = 1, .buffer = PTR(&u)};
    EXPECT_OK(fd, DRM_IOCTL_AMDXDNA_GET_ARRAY, &ga);
    CHECK(u.total_usage == want->total && u.internal_usage == want->internal && u.heap_usage == want->heap,
          "bo usage %llu/%llu/%llu, want %llu/%llu/%llu", (unsigned long long)u.total_usage,
          (unsigned long long)u.internal_usage, (unsigned long long)u.heap_usage,
          (unsigned long long)want->total, (unsigned long long)want->internal, (unsigned long long)want->heap);
    ga.element_size = sizeof(u) - 1;
    EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_GET_ARRAY, &ga, EINVAL);

    /* the element-size and count limits, MBZ pad, params */
    ga = (struct amdxdna_drm_get_array){.param = DRM_AMDXDNA_HW_CONTEXT_ALL, .element_size = sizeof(e[0]),
                                        .num_element = 0, .buffer = PTR(e)};
    EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_GET_ARRAY, &ga, EINVAL);
    ga.num_element = AMDXDNA_MAX_NUM_ELEMENT + 1;
    EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_GET_ARRAY, &ga, EINVAL);
    ga.num_element = 1;
    ga.element_size = AMDXDNA_MAX_ELEMENT_SIZE + 1;
    EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_GET_ARRAY, &ga, EINVAL);
    ga.element_size = sizeof(e[0]);
    ga.pad = 1;
    EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_GET_ARRAY, &ga, EINVAL);
    ga.pad = 0;
    ga.param = 99;
    EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_GET_ARRAY, &ga, EOPNOTSUPP); /* a parameter not served */
    ga.param = DRM_AMDXDNA_HW_CONTEXT_ALL;
    ga.buffer = PTR(unmapped);
    EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_GET_ARRAY, &ga, EFAULT);

    /* HW_CONTEXTS sees the parent's context too */
    struct amdxdna_drm_query_hwctx q[8];
    struct amdxdna_drm_get_info gi = {.param = DRM_AMDXDNA_QUERY_HW_CONTEXTS, .buffer_size = sizeof(q),
                                      .buffer = PTR(q)};
    EXPECT_OK(fd, DRM_IOCTL_AMDXDNA_GET_INFO, &gi);
    CHECK(gi.buffer_size >= sizeof(q[0]) && q[0].pid == parent, "hw contexts from the child");
    close(fd);
    return failed;
}

/* HW_CONTEXT_ALL with a capacity short of the device's contexts (a second one made here):
 * ENOSPC, num_element set to the count needed, nothing written; that count then works. */
static void test_ctx_all_short(int fd, const struct amdxdna_drm_query_aie_metadata *md)
{
    struct amdxdna_qos_info qos = {.priority = AMDXDNA_QOS_NORMAL_PRIORITY};
    struct amdxdna_drm_create_hwctx cc = {.qos_p = PTR(&qos), .num_tiles = md->core.row_count};
    EXPECT_OK(fd, DRM_IOCTL_AMDXDNA_CREATE_HWCTX, &cc);
    static struct amdxdna_drm_hwctx_entry e[16];
    memset(e, 0xEE, sizeof(e));
    struct amdxdna_drm_get_array ga = {.param = DRM_AMDXDNA_HW_CONTEXT_ALL, .element_size = sizeof(e[0]),
                                       .num_element = 1, .buffer = PTR(e)};
    EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_GET_ARRAY, &ga, ENOSPC);
    uint32_t need = ga.num_element;
    CHECK(need >= 2 && need <= 16 && e[0].pid == (int64_t)0xEEEEEEEEEEEEEEEEull, "ENOSPC: count %u", need);
    ga.num_element = need;
    EXPECT_OK(fd, DRM_IOCTL_AMDXDNA_GET_ARRAY, &ga);
    bool mine = false;
    for (uint32_t i = 0; i < ga.num_element && i < 16; i++)
        mine |= e[i].pid == getpid() && e[i].context_id == cc.handle;
    CHECK(ga.num_element == need && mine, "all %u contexts, the new one listed: %d", ga.num_element, mine);
    struct amdxdna_drm_destroy_hwctx dh = {.handle = cc.handle};
    EXPECT_OK(fd, DRM_IOCTL_AMDXDNA_DESTROY_HWCTX, &dh);
}

/* The firmware's id of this process's context `handle` (HW_CONTEXT_BY_ID's hwctx_id). */
static uint32_t fw_ctx_id(int fd, uint32_t handle)
{
    struct amdxdna_drm_hwctx_entry key = {.pid = getpid(), .context_id = handle};
    struct amdxdna_drm_get_array ga = {.param = DRM_AMDXDNA_HW_CONTEXT_BY_ID, .element_size = sizeof(key),
                                       .num_element = 1, .buffer = PTR(&key)};
    EXPECT_OK(fd, DRM_IOCTL_AMDXDNA_GET_ARRAY, &ga);
    return key.hwctx_id;
}

/* GET_INFO AIE_STATUS (docs/spec/uapi.md §6): a buffer smaller than cols * col_size is
 * refused; the firmware dumps one col_status per column the device's contexts hold, those
 * columns come back in cols_filled, and nothing past the dump is written. The context may
 * have been disconnected meanwhile (idle TDR ticks): its column then reads FREE. */
static void test_aie_status(int fd, const struct amdxdna_drm_query_aie_metadata *md)
{
    CHECK(md->col_size == sizeof(struct xdna_aie2_col_status), "col_size %u", md->col_size);
    struct amdxdna_drm_query_hwctx q;
    struct amdxdna_drm_get_info gi = {.param = DRM_AMDXDNA_QUERY_HW_CONTEXTS, .buffer_size = sizeof(q),
                                      .buffer = PTR(&q)};
    EXPECT_OK(fd, DRM_IOCTL_AMDXDNA_GET_INFO, &gi);
    uint32_t fw = fw_ctx_id(fd, q.context_id);
    uint32_t need = md->cols * md->col_size;
    uint8_t dump[64 * sizeof(struct xdna_aie2_col_status)];
    memset(dump, 0xEE, sizeof(dump));
    struct amdxdna_drm_query_aie_status st = {.buffer = PTR(dump), .buffer_size = need - 1};
    gi = (struct amdxdna_drm_get_info){.param = DRM_AMDXDNA_QUERY_AIE_STATUS, .buffer_size = sizeof(st),
                                       .buffer = PTR(&st)};
    EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_GET_INFO, &gi, EINVAL);
    CHECK(dump[0] == 0xEE, "short buffer written");
    st.buffer_size = need;
    EXPECT_OK(fd, DRM_IOCTL_AMDXDNA_GET_INFO, &gi);
    uint32_t want = ((1u << q.num_col) - 1) << q.start_col;
    CHECK(st.cols_filled == want, "cols_filled %#x, want %#x", st.cols_filled, want);
    unsigned n = (unsigned)__builtin_popcount(st.cols_filled);
    struct xdna_aie2_col_status cs;
    memcpy(&cs, dump, sizeof(cs));
    CHECK(cs.col == q.start_col, "first column %u, want %u", cs.col, q.start_col);
    if (cs.state == XDNA_AIE2_COL_STATE_FREE)
        CHECK(cs.contexts == 0 && cs.context_id == XDNA_AIE2_NO_CONTEXT && cs.core_status == 0,
              "free column: %u contexts, id %#x, core %#x", cs.contexts, cs.context_id, cs.core_status);
    else
        CHECK(cs.state == XDNA_AIE2_COL_STATE_IDLE && cs.contexts >= 1 &&
                  cs.context_id == fw && cs.completed >= 1 && cs.failed <= cs.completed &&
                  (cs.core_status & XDNA_AIE2_CORE_STATUS_ENABLE),
              "column %u: state %u, %u contexts, id %u (want %u), %u completed, core %#x", cs.col,
              cs.state, cs.contexts, cs.context_id, fw, cs.completed, cs.core_status);
    CHECK(n * md->col_size <= need && dump[n * md->col_size] == 0xEE && dump[need] == 0xEE,
          "written past the dump");
    /* a larger buffer: the same dump, nothing more written */
    memset(dump, 0xEE, sizeof(dump));
    st = (struct amdxdna_drm_query_aie_status){.buffer = PTR(dump), .buffer_size = sizeof(dump)};
    EXPECT_OK(fd, DRM_IOCTL_AMDXDNA_GET_INFO, &gi);
    CHECK(st.cols_filled == want && dump[n * md->col_size] == 0xEE, "large buffer");
    /* bad pointers: the argument, the dump buffer */
    gi.buffer = PTR(unmapped);
    EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_GET_INFO, &gi, EFAULT);
    gi.buffer = 0;
    EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_GET_INFO, &gi, EFAULT);
    gi.buffer = PTR(&st);
    st = (struct amdxdna_drm_query_aie_status){.buffer = PTR(unmapped), .buffer_size = need};
    EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_GET_INFO, &gi, EFAULT);
}

/* GET_INFO TELEMETRY (docs/spec/uapi.md §6): header + map of npu_task_max entries, then
 * the firmware's HEALTH data; a header-only buffer is refused, nothing past the data is
 * written, the map names this context when it is connected. */
static void test_telemetry(int fd)
{
    struct amdxdna_drm_get_resource_info ri = {0};
    struct amdxdna_drm_get_info gi = {.param = DRM_AMDXDNA_QUERY_RESOURCE_INFO, .buffer_size = sizeof(ri),
                                      .buffer = PTR(&ri)};
    EXPECT_OK(fd, DRM_IOCTL_AMDXDNA_GET_INFO, &gi);
    struct amdxdna_drm_query_hwctx q;
    gi = (struct amdxdna_drm_get_info){.param = DRM_AMDXDNA_QUERY_HW_CONTEXTS, .buffer_size = sizeof(q),
                                       .buffer = PTR(&q)};
    EXPECT_OK(fd, DRM_IOCTL_AMDXDNA_GET_INFO, &gi);
    uint32_t fw = fw_ctx_id(fd, q.context_id);
    uint32_t limit = (uint32_t)ri.npu_task_max;
    size_t hsz = sizeof(struct amdxdna_drm_query_telemetry_header) + limit * sizeof(uint32_t);
    static uint8_t buf[16384];
    struct amdxdna_drm_query_telemetry_header *h = (void *)buf;
    memset(buf, 0xEE, sizeof(buf));
    h->type = XDNA_AIE2_TELEMETRY_TYPE_HEALTH;
    gi = (struct amdxdna_drm_get_info){.param = DRM_AMDXDNA_QUERY_TELEMETRY, .buffer_size = (uint32_t)hsz,
                                       .buffer = PTR(buf)};
    EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_GET_INFO, &gi, EINVAL); /* header only */
    CHECK(h->major == 0xEEEEEEEE, "header-only buffer written");
    gi.buffer_size = sizeof(buf);
    EXPECT_OK(fd, DRM_IOCTL_AMDXDNA_GET_INFO, &gi);
    struct xdna_aie2_telemetry_health th;
    memcpy(&th, buf + hsz, sizeof(th));
    size_t end = hsz + sizeof(th) + (size_t)th.contexts * th.ctx_size;
    CHECK(h->major == XDNA_AIE2_TELEMETRY_MAJOR && h->minor == XDNA_AIE2_TELEMETRY_MINOR &&
              h->type == XDNA_AIE2_TELEMETRY_TYPE_HEALTH && h->map_num_elements == limit,
          "telemetry header %u.%u type %u map %u", h->major, h->minor, h->type, h->map_num_elements);
    CHECK(th.ctx_size == sizeof(struct xdna_aie2_telemetry_ctx) && th.jobs_completed >= 1 &&
              th.contexts <= limit && end < sizeof(buf) && buf[end] == 0xEE,
          "telemetry data: %u contexts, %u jobs, ctx size %u", th.contexts, th.jobs_completed, th.ctx_size);
    bool found = false;
    for (uint32_t i = 0; i < th.contexts && end < sizeof(buf); i++) {
        struct xdna_aie2_telemetry_ctx tc;
        memcpy(&tc, buf + hsz + sizeof(th) + i * th.ctx_size, sizeof(tc));
        if (tc.context_id == fw && tc.start_col == q.start_col) {
            found = true; /* the map: firmware id -> the user's handle */
            CHECK(tc.completed >= 1 && tc.failed <= tc.completed && h->map[tc.context_id] == q.context_id,
                  "telemetry context %u: %u completed, map %u", tc.context_id, tc.completed,
                  h->map[tc.context_id]);
        }
    }
    CHECK(found || th.contexts == 0, "telemetry lists %u contexts, not ours", th.contexts);
    /* types the firmware does not keep, a buffer past 4 MiB of data, bad pointers */
    h->type = XDNA_AIE2_TELEMETRY_TYPE_PROFILING;
    EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_GET_INFO, &gi, EINVAL);
    h->type = 99;
    EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_GET_INFO, &gi, EINVAL);
    h->type = XDNA_AIE2_TELEMETRY_TYPE_HEALTH;
    gi.buffer_size = (uint32_t)hsz + (4u << 20) + 1;
    EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_GET_INFO, &gi, EINVAL);
    gi.buffer_size = sizeof(buf);
    gi.buffer = PTR(unmapped);
    EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_GET_INFO, &gi, EFAULT);
}

static void test_fork(uint32_t ctx, const struct bo_expect *want)
{
    pid_t parent = getpid(), pid = fork();
    if (pid == 0) {
        int bad = child_reads(parent, ctx, want);
        fflush(stdout);
        _exit(bad ? 1 : 0);
    }
    int status = -1;
    CHECK(pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0,
          "forked reader: status %#x", status);
}

/* PRIME: export a BO, import it in this file (same handle), in another file of this
 * process and in a forked process; the memory outlives the exporter's close. */
static void test_prime(int fd, int other)
{
    uint32_t h = create_bo(fd, AMDXDNA_BO_SHARE, 8192);
    uint32_t *p = map_bo(fd, h, 8192);
    p[0] = 0xC0FFEE;
    struct drm_prime_handle ph = {.handle = h, .flags = DRM_CLOEXEC | DRM_RDWR};
    EXPECT_OK(fd, DRM_IOCTL_PRIME_HANDLE_TO_FD, &ph);
    int dmabuf = ph.fd;
    CHECK(dmabuf >= 0, "exported fd");
    struct drm_prime_handle bad = {.handle = h, .flags = 0x10};
    EXPECT_ERR(fd, DRM_IOCTL_PRIME_HANDLE_TO_FD, &bad, EINVAL);
    bad = (struct drm_prime_handle){.handle = 4000};
    EXPECT_ERR(fd, DRM_IOCTL_PRIME_HANDLE_TO_FD, &bad, ENOENT);
    uint32_t cmd = create_bo(fd, AMDXDNA_BO_CMD, 4096);
    bad = (struct drm_prime_handle){.handle = cmd};
    EXPECT_ERR(fd, DRM_IOCTL_PRIME_HANDLE_TO_FD, &bad, EINVAL);

    struct drm_prime_handle in = {.fd = dmabuf};
    EXPECT_OK(fd, DRM_IOCTL_PRIME_FD_TO_HANDLE, &in);
    CHECK(in.handle == h, "own import is the same handle: %u vs %u", in.handle, h);
    in = (struct drm_prime_handle){.fd = dmabuf};
    EXPECT_OK(other, DRM_IOCTL_PRIME_FD_TO_HANDLE, &in);
    uint32_t *q = map_bo(other, in.handle, 8192);
    CHECK(q[0] == 0xC0FFEE, "imported memory is the exporter's");
    q[1] = 0xBEEF;
    CHECK(p[1] == 0xBEEF, "and shared both ways");
    CHECK(bo_info(other, in.handle).xdna_addr != 0, "the importer's device address");

    int pipefd[2];
    CHECK(pipe(pipefd) == 0, "pipe");
    in = (struct drm_prime_handle){.fd = pipefd[0]};
    EXPECT_ERR(fd, DRM_IOCTL_PRIME_FD_TO_HANDLE, &in, EINVAL); /* not a buffer of ours */
    in = (struct drm_prime_handle){.fd = 9999};
    EXPECT_ERR(fd, DRM_IOCTL_PRIME_FD_TO_HANDLE, &in, EBADF);
    close(pipefd[0]);
    close(pipefd[1]);

    /* the exporter lets go of its handle: the memory stays for the fd's holders */
    munmap(p, 8192);
    struct drm_gem_close gc = {.handle = h};
    EXPECT_OK(fd, DRM_IOCTL_GEM_CLOSE, &gc);
    CHECK(q[0] == 0xC0FFEE, "memory outlives the exporter's handle");

    pid_t pid = fork();
    if (pid == 0) { /* another process imports through the inherited fd */
        int cfd = open("/dev/accel/accel0", O_RDWR);
        struct drm_prime_handle ci = {.fd = dmabuf};
        int ok = cfd >= 0 && ioctl(cfd, DRM_IOCTL_PRIME_FD_TO_HANDLE, &ci) == 0;
        uint32_t *r = ok ? map_bo(cfd, ci.handle, 8192) : MAP_FAILED;
        ok = ok && r != MAP_FAILED && r[0] == 0xC0FFEE;
        if (ok)
            r[2] = 0xF00D;
        _exit(ok && !failed ? 0 : 1);
    }
    int status = -1;
    CHECK(pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0,
          "import in a forked process: %#x", status);
    CHECK(q[2] == 0xF00D, "the other process wrote the shared BO");
    munmap(q, 8192);
    close(dmabuf);
}

/* An `add` command (out = a + b, N int32) in a new CMD BO, submitted to ctx; returns seq. */
static uint32_t last_cmd; /* the CMD BO of the last submit_add */

static uint64_t submit_add(int fd, uint32_t ctx, uint32_t instr, uint32_t a, uint32_t b, uint32_t out)
{
    uint32_t cmd = last_cmd = create_bo(fd, AMDXDNA_BO_CMD, 4096);
    uint32_t *c = map_bo(fd, cmd, 4096);
    uint64_t ia = bo_info(fd, instr).xdna_addr, args[3] = {bo_info(fd, a).xdna_addr, bo_info(fd, b).xdna_addr,
                                                          bo_info(fd, out).xdna_addr};
    uint32_t w[16], nw = 0;
    w[nw++] = 1;
    w[nw++] = (uint32_t)ia;
    w[nw++] = (uint32_t)(ia >> 32);
    w[nw++] = 48;
    w[nw++] = 0;
    for (int k = 0; k < 3; k++) {
        w[nw++] = (uint32_t)args[k];
        w[nw++] = (uint32_t)(args[k] >> 32);
    }
    c[0] = XDNA_SHIM_ERT_STATE_NEW | (nw << 12) | (XDNA_SHIM_ERT_START_NPU << 23);
    memcpy(c + 1, w, nw * 4);
    munmap(c, 4096);
    uint32_t hs[3] = {a, b, out};
    struct amdxdna_drm_exec_cmd e = {.hwctx = ctx, .type = AMDXDNA_CMD_SUBMIT_EXEC_BUF, .cmd_handles = cmd,
                                     .args = PTR(hs), .cmd_count = 1, .arg_count = 3};
    EXPECT_OK(fd, DRM_IOCTL_AMDXDNA_EXEC_CMD, &e);
    return e.seq;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void test_host_syncobjs(int fd)
{
    struct drm_syncobj_create sc = {0};
    EXPECT_OK(fd, DRM_IOCTL_SYNCOBJ_CREATE, &sc);
    uint32_t tl = sc.handle;
    uint64_t pt = 5, got = 99;
    struct drm_syncobj_timeline_array ta = {.handles = PTR(&tl), .points = PTR(&got), .count_handles = 1};
    EXPECT_OK(fd, DRM_IOCTL_SYNCOBJ_QUERY, &ta);
    CHECK(got == 0, "fresh timeline at %llu", (unsigned long long)got);
    ta.points = PTR(&pt);
    EXPECT_OK(fd, DRM_IOCTL_SYNCOBJ_TIMELINE_SIGNAL, &ta);
    ta.points = PTR(&got);
    EXPECT_OK(fd, DRM_IOCTL_SYNCOBJ_QUERY, &ta);
    CHECK(got == 5, "signalled to %llu", (unsigned long long)got);
    struct drm_syncobj_timeline_wait tw = {.handles = PTR(&tl), .points = PTR(&pt), .count_handles = 1,
                                           .timeout_nsec = 0};
    EXPECT_OK(fd, DRM_IOCTL_SYNCOBJ_TIMELINE_WAIT, &tw);
    uint64_t six = 6;
    tw.points = PTR(&six);
    tw.timeout_nsec = (int64_t)now_ns();
    EXPECT_ERR(fd, DRM_IOCTL_SYNCOBJ_TIMELINE_WAIT, &tw, EINVAL); /* no fence for point 6 yet */
    tw.flags = DRM_SYNCOBJ_WAIT_FLAGS_WAIT_FOR_SUBMIT;
    EXPECT_ERR(fd, DRM_IOCTL_SYNCOBJ_TIMELINE_WAIT, &tw, ETIME);
    tw.flags = 0;
    tw.count_handles = 0;
    EXPECT_ERR(fd, DRM_IOCTL_SYNCOBJ_TIMELINE_WAIT, &tw, EINVAL);
    tw.count_handles = 1;
    tw.handles = PTR(unmapped);
    EXPECT_ERR(fd, DRM_IOCTL_SYNCOBJ_TIMELINE_WAIT, &tw, EFAULT);

    sc = (struct drm_syncobj_create){.flags = DRM_SYNCOBJ_CREATE_SIGNALED};
    EXPECT_OK(fd, DRM_IOCTL_SYNCOBJ_CREATE, &sc);
    uint32_t bin = sc.handle;
    struct drm_syncobj_wait w = {.handles = PTR(&bin), .count_handles = 1, .timeout_nsec = 0};
    EXPECT_OK(fd, DRM_IOCTL_SYNCOBJ_WAIT, &w);
    struct drm_syncobj_array sa = {.handles = PTR(&bin), .count_handles = 1};
    EXPECT_OK(fd, DRM_IOCTL_SYNCOBJ_RESET, &sa);
    EXPECT_ERR(fd, DRM_IOCTL_SYNCOBJ_WAIT, &w, EINVAL); /* nothing submitted */
    w.flags = DRM_SYNCOBJ_WAIT_FLAGS_WAIT_FOR_SUBMIT;
    w.timeout_nsec = (int64_t)now_ns();
    EXPECT_ERR(fd, DRM_IOCTL_SYNCOBJ_WAIT, &w, ETIME);
    EXPECT_OK(fd, DRM_IOCTL_SYNCOBJ_SIGNAL, &sa);
    EXPECT_OK(fd, DRM_IOCTL_SYNCOBJ_WAIT, &w);
    uint32_t two[2] = {bin, 900};
    w = (struct drm_syncobj_wait){.handles = PTR(two), .count_handles = 2};
    EXPECT_ERR(fd, DRM_IOCTL_SYNCOBJ_WAIT, &w, ENOENT);
    w.flags = 0x100;
    EXPECT_ERR(fd, DRM_IOCTL_SYNCOBJ_WAIT, &w, EINVAL);

    sc = (struct drm_syncobj_create){.flags = 2};
    EXPECT_ERR(fd, DRM_IOCTL_SYNCOBJ_CREATE, &sc, EINVAL);
    struct drm_syncobj_destroy sd = {.handle = bin};
    EXPECT_OK(fd, DRM_IOCTL_SYNCOBJ_DESTROY, &sd);
    EXPECT_ERR(fd, DRM_IOCTL_SYNCOBJ_DESTROY, &sd, EINVAL);
    sd.handle = tl;
    EXPECT_OK(fd, DRM_IOCTL_SYNCOBJ_DESTROY, &sd);
}

/* Three jobs on three contexts chained by fences: job k+1 waits (DEPENDENCY) on job k's
 * point of its context's timeline syncobj; SIGNAL then marks a host timeline when the last
 * one is done. out3 = a + 3b proves the order. */
static void test_fence_chain(int fd, const struct amdxdna_drm_query_aie_metadata *md)
{
    const size_t bytes = N * sizeof(int32_t);
    struct amdxdna_qos_info qos = {.priority = AMDXDNA_QOS_NORMAL_PRIORITY};
    uint32_t ctx[3], sync[3];
    for (int k = 0; k < 3; k++) {
        struct amdxdna_drm_create_hwctx c = {.qos_p = PTR(&qos), .num_tiles = md->core.row_count};
        EXPECT_OK(fd, DRM_IOCTL_AMDXDNA_CREATE_HWCTX, &c);
        ctx[k] = c.handle;
        sync[k] = c.syncobj_handle;
        CHECK(sync[k] != AMDXDNA_INVALID_FENCE_HANDLE, "context syncobj");
    }
    uint32_t a = create_bo(fd, AMDXDNA_BO_SHARE, bytes), b = create_bo(fd, AMDXDNA_BO_SHARE, bytes);
    uint32_t o[3] = {create_bo(fd, AMDXDNA_BO_SHARE, bytes), create_bo(fd, AMDXDNA_BO_SHARE, bytes),
                     create_bo(fd, AMDXDNA_BO_SHARE, bytes)};
    uint32_t instr = create_bo(fd, AMDXDNA_BO_DEV, 4096);
    write_desc(fd, instr, XKNL_ADD, N);
    int32_t *pa = map_bo(fd, a, bytes), *pb = map_bo(fd, b, bytes), *p3 = map_bo(fd, o[2], bytes);
    for (int k = 0; k < N; k++) {
        pa[k] = k;
        pb[k] = 7;
    }
    struct drm_syncobj_create sc = {0};
    EXPECT_OK(fd, DRM_IOCTL_SYNCOBJ_CREATE, &sc);
    uint32_t host = sc.handle;

    uint64_t seq = submit_add(fd, ctx[0], instr, a, b, o[0]);
    for (int k = 1; k < 3; k++) {
        uint32_t dep = sync[k - 1];
        uint64_t pt = seq;
        struct amdxdna_drm_exec_cmd e = {.hwctx = ctx[k], .type = AMDXDNA_CMD_SUBMIT_DEPENDENCY,
                                         .cmd_handles = PTR(&dep), .args = PTR(&pt), .cmd_count = 1,
                                         .arg_count = 1};
        EXPECT_OK(fd, DRM_IOCTL_AMDXDNA_EXEC_CMD, &e);
        seq = submit_add(fd, ctx[k], instr, o[k - 1], b, o[k]);
    }
    uint64_t ten = 10;
    struct amdxdna_drm_exec_cmd sig = {.hwctx = ctx[2], .type = AMDXDNA_CMD_SUBMIT_SIGNAL,
                                       .cmd_handles = PTR(&host), .args = PTR(&ten), .cmd_count = 1,
                                       .arg_count = 1};
    EXPECT_OK(fd, DRM_IOCTL_AMDXDNA_EXEC_CMD, &sig);
    struct drm_syncobj_timeline_wait tw = {.handles = PTR(&host), .points = PTR(&ten), .count_handles = 1,
                                           .timeout_nsec = (int64_t)(now_ns() + 10000000000ull)};
    EXPECT_OK(fd, DRM_IOCTL_SYNCOBJ_TIMELINE_WAIT, &tw);
    uint64_t one = 1;
    tw = (struct drm_syncobj_timeline_wait){.handles = PTR(&sync[2]), .points = PTR(&one), .count_handles = 1,
                                            .timeout_nsec = (int64_t)(now_ns() + 10000000000ull)};
    EXPECT_OK(fd, DRM_IOCTL_SYNCOBJ_TIMELINE_WAIT, &tw);
    int wrong = 0;
    for (int k = 0; k < N; k++)
        wrong += p3[k] != pa[k] + 3 * pb[k];
    CHECK(wrong == 0, "fence chain: %d wrong results", wrong);
    uint64_t got = 0;
    struct drm_syncobj_timeline_array q = {.handles = PTR(&sync[2]), .points = PTR(&got), .count_handles = 1};
    EXPECT_OK(fd, DRM_IOCTL_SYNCOBJ_QUERY, &q);
    CHECK(got == 1, "context timeline at %llu", (unsigned long long)got);
    q.points = PTR(&ten);
    EXPECT_ERR(fd, DRM_IOCTL_SYNCOBJ_TIMELINE_SIGNAL, &q, EINVAL); /* the device's timeline */

    /* TRANSFER: the context's point 1 into a binary syncobj, and host point 10 into point 3 */
    struct drm_syncobj_create bc = {0};
    EXPECT_OK(fd, DRM_IOCTL_SYNCOBJ_CREATE, &bc);
    struct drm_syncobj_transfer tr = {.src_handle = sync[0], .dst_handle = bc.handle, .src_point = 1};
    EXPECT_OK(fd, DRM_IOCTL_SYNCOBJ_TRANSFER, &tr);
    struct drm_syncobj_wait bw = {.handles = PTR(&bc.handle), .count_handles = 1};
    EXPECT_OK(fd, DRM_IOCTL_SYNCOBJ_WAIT, &bw);
    struct drm_syncobj_create tc = {0};
    EXPECT_OK(fd, DRM_IOCTL_SYNCOBJ_CREATE, &tc);
    tr = (struct drm_syncobj_transfer){.src_handle = host, .dst_handle = tc.handle, .src_point = 10,
                                       .dst_point = 3};
    EXPECT_OK(fd, DRM_IOCTL_SYNCOBJ_TRANSFER, &tr);
    got = 0;
    q = (struct drm_syncobj_timeline_array){.handles = PTR(&tc.handle), .points = PTR(&got), .count_handles = 1};
    EXPECT_OK(fd, DRM_IOCTL_SYNCOBJ_QUERY, &q);
    CHECK(got == 3, "transferred point %llu", (unsigned long long)got);
    tr.pad = 1;
    EXPECT_ERR(fd, DRM_IOCTL_SYNCOBJ_TRANSFER, &tr, EINVAL);
    tr = (struct drm_syncobj_transfer){.src_handle = host, .dst_handle = sync[1], .src_point = 10};
    EXPECT_ERR(fd, DRM_IOCTL_SYNCOBJ_TRANSFER, &tr, EINVAL);
    tr.dst_handle = 900;
    EXPECT_ERR(fd, DRM_IOCTL_SYNCOBJ_TRANSFER, &tr, ENOENT);
    sig.cmd_count = 2;
    EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_EXEC_CMD, &sig, EINVAL); /* counts differ */
    for (int k = 0; k < 3; k++) {
        struct amdxdna_drm_destroy_hwctx d = {.handle = ctx[k]};
        EXPECT_OK(fd, DRM_IOCTL_AMDXDNA_DESTROY_HWCTX, &d);
    }
}

/* CREATE_BO of a user-pointer BO over one range; the errno, 0 on success. */
static int uptr_bo(int fd, uint64_t va, uint64_t len, uint32_t *h)
{
    struct {
        struct amdxdna_drm_va_tbl tbl;
        struct amdxdna_drm_va_entry e[1];
    } t = {.tbl = {.udma_fd = -1, .num_entries = 1}, .e = {{.vaddr = va, .len = len}}};
    struct amdxdna_drm_create_bo c = {.type = AMDXDNA_BO_SHARE, .vaddr = PTR(&t)};
    int rc = ioctl(fd, DRM_IOCTL_AMDXDNA_CREATE_BO, &c);
    *h = c.handle;
    return rc == 0 ? 0 : errno;
}

static uint32_t cmd_state(int fd, uint32_t cmd)
{
    uint32_t *c = map_bo(fd, cmd, 4096), st = c[0] & 0xF;
    munmap(c, 4096);
    return st;
}

/* User-pointer BOs (docs/spec/uapi.md §6): the device reads and writes the program's own
 * pages, a later write by either side is seen by the other with no copy or sync; a read-only
 * file mapping is a BO the device may only read (a job writing it faults and fails, and no
 * byte changes); bad tables get the driver's errno. */
static void test_userptr(int fd, uint32_t ctx)
{
    const size_t bytes = N * sizeof(int32_t), page = 4096;
    int32_t *in = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    int32_t *res = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    for (int k = 0; k < N; k++) {
        in[k] = 3 * k;
        res[k] = -1;
    }
    uint32_t a, o, b = create_bo(fd, AMDXDNA_BO_SHARE, bytes), instr = create_bo(fd, AMDXDNA_BO_DEV, 4096);
    CHECK(uptr_bo(fd, PTR(in), bytes, &a) == 0 && uptr_bo(fd, PTR(res), bytes, &o) == 0, "user-pointer BOs");
    in[5] = 1000; /* after CREATE_BO: the device must see it, no copy was taken */
    int32_t *pb = map_bo(fd, b, bytes), *view = map_bo(fd, a, bytes);
    CHECK(view[5] == 1000 && view[6] == 18, "the BO is the program's pages");
    view[7] = 7000;
    CHECK(in[7] == 7000, "and the program sees the BO's writes");
    for (int k = 0; k < N; k++)
        pb[k] = 1;
    write_desc(fd, instr, XKNL_ADD, N);
    struct amdxdna_drm_wait_cmd wc = {.hwctx = ctx, .timeout = 5000, .seq = submit_add(fd, ctx, instr, a, b, o)};
    EXPECT_OK(fd, DRM_IOCTL_AMDXDNA_WAIT_CMD, &wc);
    int wrong = 0;
    for (int k = 0; k < N; k++)
        wrong += res[k] != in[k] + 1;
    CHECK(wrong == 0, "the device wrote the program's own pages: %d wrong", wrong);

    /* a read-only file mapping is a BO; a job writing it fails and no byte changes */
    char path[] = "/tmp/xdna-uptr-XXXXXX";
    int tf = mkstemp(path);
    CHECK(tf >= 0 && write(tf, in, bytes) == (ssize_t)bytes, "temp file: %s", strerror(errno));
    int rf = open(path, O_RDONLY);
    unlink(path);
    const int32_t *ro = mmap(NULL, bytes, PROT_READ, MAP_SHARED, rf, 0);
    uint32_t r;
    CHECK(ro != MAP_FAILED && uptr_bo(fd, PTR(ro), bytes, &r) == 0, "read-only file mapping as a BO");
    uint64_t seq = submit_add(fd, ctx, instr, a, b, r);
    wc = (struct amdxdna_drm_wait_cmd){.hwctx = ctx, .timeout = 20000, .seq = seq};
    ioctl(fd, DRM_IOCTL_AMDXDNA_WAIT_CMD, &wc); /* ends when TDR ends the faulted job */
    int32_t file0[2] = {0, 0};
    CHECK(pread(rf, file0, sizeof(file0), 0) == (ssize_t)sizeof(file0) && file0[1] == 3 && ro[1] == 3 &&
              ro[5] == 1000, "the read-only BO is unchanged: %d %d", file0[1], ro[1]);
    uint32_t st = cmd_state(fd, last_cmd);
    CHECK(st == XDNA_SHIM_ERT_STATE_TIMEOUT || st == XDNA_SHIM_ERT_STATE_ERROR, "the faulted job failed: state %u", st);

    /* bad tables */
    struct amdxdna_drm_create_bo c = {.type = AMDXDNA_BO_SHARE, .vaddr = PTR(unmapped)};
    EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_CREATE_BO, &c, EINVAL); /* table unreadable */
    uint32_t h;
    CHECK(uptr_bo(fd, PTR(in) + 8, page, &h) == EINVAL, "unaligned range");
    CHECK(uptr_bo(fd, PTR(in), 100, &h) == EINVAL, "unaligned length");
    CHECK(uptr_bo(fd, PTR(in), 0, &h) == EINVAL, "empty range");
    CHECK(uptr_bo(fd, PTR(unmapped), page, &h) == EFAULT, "a page the program may not read");
    CHECK(uptr_bo(fd, 0x1000, page, &h) == EFAULT, "a range not mapped");
    struct {
        struct amdxdna_drm_va_tbl tbl;
        struct amdxdna_drm_va_entry e[2];
    } t2 = {.tbl = {.num_entries = 2}, .e = {{.vaddr = PTR(in), .len = page}, {.vaddr = PTR(ro), .len = page}}};
    c = (struct amdxdna_drm_create_bo){.type = AMDXDNA_BO_SHARE, .vaddr = PTR(&t2)};
    EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_CREATE_BO, &c, EFAULT); /* writable and read-only mixed */
    t2.e[1].vaddr = PTR(res);
    EXPECT_OK(fd, DRM_IOCTL_AMDXDNA_CREATE_BO, &c); /* two ranges apart: one BO */
    CHECK(bo_info(fd, c.handle).xdna_addr != 0, "two-range BO");
    t2.tbl.num_entries = 5000;
    EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_CREATE_BO, &c, EINVAL);
    t2.tbl = (struct amdxdna_drm_va_tbl){.udma_fd = -1, .num_entries = 0};
    EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_CREATE_BO, &c, EBADF); /* a dma-buf by fd: not an fd */
    t2.tbl.udma_fd = rf;
    EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_CREATE_BO, &c, EINVAL); /* not a buffer of ours */
    c = (struct amdxdna_drm_create_bo){.type = AMDXDNA_BO_DEV, .vaddr = PTR(&t2)};
    EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_CREATE_BO, &c, EINVAL);
    close(rf);
    close(tf);
}

/* SYNCOBJ_HANDLE_TO_FD / FD_TO_HANDLE (docs/spec/uapi.md §6): a syncobj, a context's
 * timeline too, named by a second DRM file of the process through an fd; the context going
 * away leaves its signalled points; bad flags, handles and fds get the DRM core's errno. */
static void test_syncobj_fds(int fd, int other, const struct amdxdna_drm_query_aie_metadata *md)
{
    struct drm_syncobj_create sc = {0};
    EXPECT_OK(fd, DRM_IOCTL_SYNCOBJ_CREATE, &sc);
    struct drm_syncobj_handle ex = {.handle = sc.handle};
    EXPECT_OK(fd, DRM_IOCTL_SYNCOBJ_HANDLE_TO_FD, &ex);
    CHECK(ex.fd >= 0 && (fcntl(ex.fd, F_GETFD) & FD_CLOEXEC), "syncobj fd, close-on-exec");
    struct drm_syncobj_handle im = {.fd = ex.fd};
    EXPECT_OK(other, DRM_IOCTL_SYNCOBJ_FD_TO_HANDLE, &im);
    struct drm_syncobj_array arr = {.handles = PTR(&sc.handle), .count_handles = 1};
    EXPECT_OK(fd, DRM_IOCTL_SYNCOBJ_SIGNAL, &arr);
    struct drm_syncobj_wait w = {.handles = PTR(&im.handle), .count_handles = 1};
    EXPECT_OK(other, DRM_IOCTL_SYNCOBJ_WAIT, &w); /* signalled through the other file */
    struct drm_syncobj_destroy d = {.handle = sc.handle};
    EXPECT_OK(fd, DRM_IOCTL_SYNCOBJ_DESTROY, &d);
    EXPECT_OK(other, DRM_IOCTL_SYNCOBJ_WAIT, &w); /* the import is a name of its own */

    /* a context's timeline */
    struct amdxdna_qos_info qos = {.priority = AMDXDNA_QOS_NORMAL_PRIORITY};
    struct amdxdna_drm_create_hwctx cc = {.qos_p = PTR(&qos), .num_tiles = md->core.row_count};
    EXPECT_OK(fd, DRM_IOCTL_AMDXDNA_CREATE_HWCTX, &cc);
    const size_t bytes = N * sizeof(int32_t);
    uint32_t a = create_bo(fd, AMDXDNA_BO_SHARE, bytes), b = create_bo(fd, AMDXDNA_BO_SHARE, bytes);
    uint32_t o = create_bo(fd, AMDXDNA_BO_SHARE, bytes), instr = create_bo(fd, AMDXDNA_BO_DEV, 4096);
    write_desc(fd, instr, XKNL_ADD, N);
    ex = (struct drm_syncobj_handle){.handle = cc.syncobj_handle};
    EXPECT_OK(fd, DRM_IOCTL_SYNCOBJ_HANDLE_TO_FD, &ex);
    im = (struct drm_syncobj_handle){.fd = ex.fd};
    EXPECT_OK(other, DRM_IOCTL_SYNCOBJ_FD_TO_HANDLE, &im);
    uint64_t seq = submit_add(fd, cc.handle, instr, a, b, o);
    struct drm_syncobj_timeline_wait tw = {.handles = PTR(&im.handle), .points = PTR(&seq), .count_handles = 1,
                                           .timeout_nsec = (int64_t)(now_ns() + 10000000000ull)};
    EXPECT_OK(other, DRM_IOCTL_SYNCOBJ_TIMELINE_WAIT, &tw); /* job seq ended, seen from the other file */
    struct amdxdna_drm_destroy_hwctx dh = {.handle = cc.handle};
    EXPECT_OK(fd, DRM_IOCTL_AMDXDNA_DESTROY_HWCTX, &dh);
    uint64_t got = 0;
    struct drm_syncobj_timeline_array q = {.handles = PTR(&im.handle), .points = PTR(&got), .count_handles = 1};
    EXPECT_OK(other, DRM_IOCTL_SYNCOBJ_QUERY, &q);
    CHECK(got == seq, "the destroyed context's timeline stays at %llu: %llu", (unsigned long long)seq,
          (unsigned long long)got);
    EXPECT_OK(other, DRM_IOCTL_SYNCOBJ_TIMELINE_WAIT, &tw);

    /* bad input */
    struct drm_syncobj_handle bad = {.handle = im.handle, .pad = 1};
    EXPECT_ERR(other, DRM_IOCTL_SYNCOBJ_HANDLE_TO_FD, &bad, EINVAL);
    bad = (struct drm_syncobj_handle){.handle = im.handle, .point = 5};
    EXPECT_ERR(other, DRM_IOCTL_SYNCOBJ_HANDLE_TO_FD, &bad, EINVAL); /* a point needs a sync file */
    bad = (struct drm_syncobj_handle){.handle = im.handle, .flags = 0x100};
    EXPECT_ERR(other, DRM_IOCTL_SYNCOBJ_HANDLE_TO_FD, &bad, EINVAL);
    bad = (struct drm_syncobj_handle){.handle = 999};
    EXPECT_ERR(other, DRM_IOCTL_SYNCOBJ_HANDLE_TO_FD, &bad, EINVAL);
    bad = (struct drm_syncobj_handle){.handle = im.handle, .flags = DRM_SYNCOBJ_HANDLE_TO_FD_FLAGS_EXPORT_SYNC_FILE};
    EXPECT_OK(other, DRM_IOCTL_SYNCOBJ_HANDLE_TO_FD, &bad); /* a sync file of its last point */
    struct pollfd pf = {.fd = bad.fd, .events = POLLIN};
    CHECK(poll(&pf, 1, 10000) == 1 && (pf.revents & POLLIN), "the sync file is signalled");
    close(bad.fd);
    bad = (struct drm_syncobj_handle){.fd = -1};
    EXPECT_ERR(other, DRM_IOCTL_SYNCOBJ_FD_TO_HANDLE, &bad, EINVAL);
    int plain = memfd_create("not-a-syncobj", MFD_CLOEXEC);
    bad = (struct drm_syncobj_handle){.fd = plain};
    EXPECT_ERR(other, DRM_IOCTL_SYNCOBJ_FD_TO_HANDLE, &bad, EINVAL);
    bad = (struct drm_syncobj_handle){.fd = ex.fd, .pad = 1};
    EXPECT_ERR(other, DRM_IOCTL_SYNCOBJ_FD_TO_HANDLE, &bad, EINVAL);
    bad = (struct drm_syncobj_handle){.fd = ex.fd, .flags = DRM_SYNCOBJ_FD_TO_HANDLE_FLAGS_IMPORT_SYNC_FILE,
                                      .handle = im.handle};
    EXPECT_ERR(other, DRM_IOCTL_SYNCOBJ_FD_TO_HANDLE, &bad, EINVAL); /* a syncobj fd is no sync file */
    close(plain);
    /* a forked process imports it too: the destroyed context's points stay signalled
     * (tests/c/uapi_fence_test.c covers processes in depth) */
    pid_t pid = fork();
    if (pid == 0) {
        int cfd = open("/dev/accel/accel0", O_RDWR);
        struct drm_syncobj_handle ci = {.fd = ex.fd};
        int ok = cfd >= 0 && ioctl(cfd, DRM_IOCTL_SYNCOBJ_FD_TO_HANDLE, &ci) == 0;
        tw.handles = PTR(&ci.handle);
        _exit(ok && ioctl(cfd, DRM_IOCTL_SYNCOBJ_TIMELINE_WAIT, &tw) == 0 ? 0 : 1);
    }
    int st = -1;
    waitpid(pid, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "a forked process imports and waits: %#x", st);
    close(ex.fd);
}

/* The PCI device id behind accel0 (0x1502: npu1, whose heap is one fixed chunk). */
static unsigned pci_device(void)
{
    char buf[16] = {0};
    int s = open("/sys/class/accel/accel0/device/device", O_RDONLY);
    if (s >= 0) {
        if (read(s, buf, sizeof(buf) - 1) < 0)
            buf[0] = 0;
        close(s);
    }
    return (unsigned)strtoul(buf, NULL, 16);
}

static uint64_t dev_bo(int fd, uint64_t size, int want_err, uint32_t *h)
{
    struct amdxdna_drm_create_bo c = {.type = AMDXDNA_BO_DEV, .size = size};
    if (want_err) {
        EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_CREATE_BO, &c, want_err);
        return 0;
    }
    EXPECT_OK(fd, DRM_IOCTL_AMDXDNA_CREATE_BO, &c);
    *h = c.handle;
    return bo_info(fd, c.handle).xdna_addr;
}

static void gem_close(int fd, uint32_t h)
{
    struct drm_gem_close g = {.handle = h};
    EXPECT_OK(fd, DRM_IOCTL_GEM_CLOSE, &g);
}

/* DEV heap growth (docs/spec/uapi.md §6): a DEV BO that does not fit is EAGAIN; the runtime
 * adds a 64 MiB chunk, maps it right after the others and retries; npu4 grows to 512 MiB, npu1
 * keeps one 64 MiB chunk; a DEV BO may span chunks (and the device reads and writes it there,
 * through a chunk added while its context runs); freed ranges are reused. */
static void test_heap_growth(const struct amdxdna_drm_query_aie_metadata *md)
{
    const uint64_t MiB = 1u << 20, chunk = 64 * MiB, base = 0x4000000; /* the heap's device address */
    const bool grows = pci_device() != 0x1502;
    const uint64_t max = grows ? 512 * MiB : chunk;
    int fd = open("/dev/accel/accel0", O_RDWR);
    CHECK(fd >= 0, "open: %s", strerror(errno));
    if (fd < 0)
        return;
    struct amdxdna_drm_create_bo c = {.type = AMDXDNA_BO_DEV_HEAP, .size = max + chunk};
    EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_CREATE_BO, &c, EINVAL); /* no heap that big */
    c.size = chunk / 2;
    EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_CREATE_BO, &c, EINVAL); /* not whole chunks */
    uint32_t h0 = create_bo(fd, AMDXDNA_BO_DEV_HEAP, chunk), h;
    /* the runtime's layout: one VA range for the maximum, chunk n mapped at n * 64 MiB */
    uint8_t *va = mmap(NULL, max, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    CHECK(mmap(va, chunk, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd,
               (off_t)bo_info(fd, h0).map_offset) == va, "map chunk 0: %s", strerror(errno));
    dev_bo(fd, max + 64 * MiB, EINVAL, &h); /* larger than the heap can ever be */
    if (!grows) {
        c.size = chunk;
        EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_CREATE_BO, &c, EBUSY); /* one fixed chunk */
        dev_bo(fd, 96 * MiB, EINVAL, &h);                      /* no cross-chunk BO */
        uint64_t a = dev_bo(fd, chunk, 0, &h);                 /* the whole heap */
        dev_bo(fd, 4096, EAGAIN, &h);                          /* full */
        gem_close(fd, h);
        CHECK(dev_bo(fd, chunk - 32768, 0, &h) == a, "a freed range is reused");
        close(fd);
        munmap(va, max);
        return;
    }
    /* chunk 1 mapped away from chunk 0: a BO across them is refused */
    uint32_t h1 = create_bo(fd, AMDXDNA_BO_DEV_HEAP, chunk);
    CHECK(bo_info(fd, h1).xdna_addr == base + chunk, "chunk 1 follows chunk 0");
    void *away = mmap(NULL, chunk, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)bo_info(fd, h1).map_offset);
    dev_bo(fd, 96 * MiB, EINVAL, &h);
    munmap(away, chunk);
    gem_close(fd, h1); /* the last chunk, no DEV BO in the heap yet */

    /* a context connected with one chunk, then the heap grows under it */
    struct amdxdna_qos_info qos = {.priority = AMDXDNA_QOS_NORMAL_PRIORITY};
    struct amdxdna_drm_create_hwctx cc = {.qos_p = PTR(&qos), .num_tiles = md->core.row_count};
    EXPECT_OK(fd, DRM_IOCTL_AMDXDNA_CREATE_HWCTX, &cc);
    enum { NB = 16384 }; /* 64 KiB per buffer: more than the 32 KiB left at chunk 0's end */
    uint32_t instr, a, b, out, filler, probe;
    dev_bo(fd, 4096, 0, &instr);
    write_desc(fd, instr, XKNL_ADD, NB);
    dev_bo(fd, NB * 4, 0, &b);
    dev_bo(fd, NB * 4, 0, &out);
    uint64_t p = dev_bo(fd, 32768, 0, &probe); /* the first free offset */
    gem_close(fd, probe);
    dev_bo(fd, base + chunk - p - 32768, 0, &filler);
    dev_bo(fd, NB * 4, EAGAIN, &a); /* 32 KiB left: the runtime adds a chunk */
    h1 = create_bo(fd, AMDXDNA_BO_DEV_HEAP, chunk);
    dev_bo(fd, NB * 4, EAGAIN, &a); /* the chunk it would span is not mapped yet */
    CHECK(mmap(va + chunk, chunk, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd,
               (off_t)bo_info(fd, h1).map_offset) == va + chunk, "map chunk 1: %s", strerror(errno));
    uint64_t aa = dev_bo(fd, NB * 4, 0, &a);
    CHECK(aa < base + chunk && aa + NB * 4 > base + chunk, "the BO spans chunks: %#llx", (unsigned long long)aa);
    CHECK(bo_info(fd, a).vaddr == PTR(va) + (aa - base), "its vaddr is in the program's heap mapping");
    int32_t *pa = (int32_t *)(uintptr_t)bo_info(fd, a).vaddr, *pb = (int32_t *)(uintptr_t)bo_info(fd, b).vaddr;
    int32_t *po = (int32_t *)(uintptr_t)bo_info(fd, out).vaddr;
    for (int k = 0; k < NB; k++) {
        pa[k] = k;
        pb[k] = 5;
        po[k] = -1;
    }
    int32_t *ma = mmap(NULL, NB * 4, PROT_READ, MAP_SHARED, fd, (off_t)bo_info(fd, a).map_offset);
    CHECK(ma != MAP_FAILED && ma[NB - 1] == NB - 1, "the BO's own mapping shows the same pages");
    if (ma != MAP_FAILED)
        munmap(ma, NB * 4);
    struct amdxdna_drm_wait_cmd wc = {.hwctx = cc.handle, .seq = submit_add(fd, cc.handle, instr, a, b, out)};
    EXPECT_OK(fd, DRM_IOCTL_AMDXDNA_WAIT_CMD, &wc);
    int wrong = 0;
    for (int k = 0; k < NB; k++)
        wrong += po[k] != k + 5;
    CHECK(wrong == 0, "job over a BO spanning chunks: %d wrong results", wrong);
    gem_close(fd, a);
    CHECK(dev_bo(fd, NB * 4, 0, &a) == aa, "a freed range is reused");
    /* grow to the maximum and no further */
    for (uint64_t total = 2 * chunk; total < max; total += chunk) {
        uint32_t hn = create_bo(fd, AMDXDNA_BO_DEV_HEAP, chunk);
        CHECK(mmap(va + total, chunk, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd,
                   (off_t)bo_info(fd, hn).map_offset) == va + total, "map chunk: %s", strerror(errno));
    }
    c.size = chunk;
    EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_CREATE_BO, &c, EBUSY); /* the heap is at its maximum */
    dev_bo(fd, 576 * MiB, EINVAL, &h);                     /* never fits */
    uint64_t big = dev_bo(fd, 256 * MiB, 0, &h);             /* across four chunks */
    CHECK(big > aa && big + 256 * MiB <= base + max, "a 256 MiB BO after the others at %#llx",
          (unsigned long long)big);
    close(fd);
    munmap(va, max);
}

static void test_destroy(int fd, uint32_t ctx)
{
    struct amdxdna_drm_destroy_hwctx d = {.handle = ctx, .pad = 1};
    EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_DESTROY_HWCTX, &d, EINVAL);
    d.pad = 0;
    EXPECT_OK(fd, DRM_IOCTL_AMDXDNA_DESTROY_HWCTX, &d);
    EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_DESTROY_HWCTX, &d, EINVAL); /* stale */
}

/* GET_INFO / SET_STATE of the driver's device settings (docs/spec/uapi.md §6): what fits is
 * copied, SET_STATE is root's, each SET with the driver's buffer rule, the values are the
 * device's (another process reads them). */
static uint8_t get_attr(int fd, uint32_t param, int want_err)
{
    struct amdxdna_drm_attribute_state st = {.state = 0xEE};
    struct amdxdna_drm_get_info gi = {.param = param, .buffer_size = sizeof(st), .buffer = PTR(&st)};
    if (want_err) {
        EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_GET_INFO, &gi, want_err);
        return 0xEE;
    }
    EXPECT_OK(fd, DRM_IOCTL_AMDXDNA_GET_INFO, &gi);
    return st.state;
}

static int set_attr(int fd, uint32_t param, uint8_t state, uint32_t size)
{
    struct amdxdna_drm_attribute_state st = {.state = state};
    struct amdxdna_drm_set_state ss = {.param = param, .buffer_size = size, .buffer = PTR(&st)};
    return ioctl(fd, DRM_IOCTL_AMDXDNA_SET_STATE, &ss) == 0 ? 0 : errno;
}

static void test_state(int fd)
{
    const bool fb = pci_device() != 0x1502; /* npu1's firmware has no frame-boundary setting */
    const uint32_t sz = sizeof(struct amdxdna_drm_attribute_state);
    CHECK(get_attr(fd, DRM_AMDXDNA_GET_FORCE_PREEMPT_STATE, 0) == 0, "force preempt off at start");
    CHECK(set_attr(fd, DRM_AMDXDNA_SET_FORCE_PREEMPT, 1, sz) == 0, "set force preempt");
    CHECK(get_attr(fd, DRM_AMDXDNA_GET_FORCE_PREEMPT_STATE, 0) == 1, "force preempt on");
    CHECK(set_attr(fd, DRM_AMDXDNA_SET_FORCE_PREEMPT, 2, sz) == EINVAL, "state 2");
    CHECK(set_attr(fd, DRM_AMDXDNA_SET_FORCE_PREEMPT, 0, 1) == 0 &&
              get_attr(fd, DRM_AMDXDNA_GET_FORCE_PREEMPT_STATE, 0) == 0, "a 1-byte buffer is enough");
    struct amdxdna_drm_set_state ss = {.param = DRM_AMDXDNA_SET_FORCE_PREEMPT, .buffer_size = sz,
                                       .buffer = PTR(unmapped)};
    EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_SET_STATE, &ss, EFAULT);
    uint8_t two[2] = {0xAA, 0xAA};
    struct amdxdna_drm_get_info gi = {.param = DRM_AMDXDNA_GET_FORCE_PREEMPT_STATE, .buffer_size = 1,
                                      .buffer = PTR(two)};
    EXPECT_OK(fd, DRM_IOCTL_AMDXDNA_GET_INFO, &gi);
    CHECK(two[0] == 0 && two[1] == 0xAA, "a short buffer gets what fits, nothing past it");
    gi.buffer = PTR(unmapped);
    EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_GET_INFO, &gi, EFAULT);
    CHECK(set_attr(fd, DRM_AMDXDNA_SET_FORCE_PREEMPT, 1, sz) == 0, "force preempt on again");
    if (fb) {
        CHECK(get_attr(fd, DRM_AMDXDNA_GET_FRAME_BOUNDARY_PREEMPT_STATE, 0) == 0, "frame boundary off at init");
        CHECK(set_attr(fd, DRM_AMDXDNA_SET_FRAME_BOUNDARY_PREEMPT, 1, sz - 1) == EINVAL, "size must be exact");
        CHECK(set_attr(fd, DRM_AMDXDNA_SET_FRAME_BOUNDARY_PREEMPT, 2, sz) == EINVAL, "state 2");
        CHECK(set_attr(fd, DRM_AMDXDNA_SET_FRAME_BOUNDARY_PREEMPT, 1, sz) == 0, "set frame boundary");
        CHECK(get_attr(fd, DRM_AMDXDNA_GET_FRAME_BOUNDARY_PREEMPT_STATE, 0) == 1, "frame boundary on");
    } else {
        get_attr(fd, DRM_AMDXDNA_GET_FRAME_BOUNDARY_PREEMPT_STATE, EOPNOTSUPP);
        CHECK(set_attr(fd, DRM_AMDXDNA_SET_FRAME_BOUNDARY_PREEMPT, 1, sz) == EOPNOTSUPP, "npu1 frame boundary");
    }
    get_attr(fd, DRM_AMDXDNA_GET_AUTO_COREDUMP, EOPNOTSUPP); /* AIE4's */
    get_attr(fd, DRM_AMDXDNA_QUERY_CERT_FIRMWARE_VERSION, EOPNOTSUPP); /* AIE2 has no cert firmware */
    CHECK(set_attr(fd, DRM_AMDXDNA_SET_AUTO_COREDUMP, 1, sz) == EOPNOTSUPP, "auto coredump is AIE4's");
    CHECK(set_attr(fd, 99, 1, sz) == EOPNOTSUPP, "unknown SET_STATE parameter");

    /* another process sees the device's values; a non-root caller may read, not set */
    pid_t pid = fork();
    if (pid == 0) {
        int cfd = open("/dev/accel/accel0", O_RDWR);
        int bad = cfd < 0 || get_attr(cfd, DRM_AMDXDNA_GET_FORCE_PREEMPT_STATE, 0) != 1 ||
                  (fb && get_attr(cfd, DRM_AMDXDNA_GET_FRAME_BOUNDARY_PREEMPT_STATE, 0) != 1);
        if (setuid(65534) < 0 || set_attr(cfd, DRM_AMDXDNA_SET_FORCE_PREEMPT, 0, sz) != EACCES ||
            get_attr(cfd, DRM_AMDXDNA_GET_FORCE_PREEMPT_STATE, 0) != 1)
            bad = 1;
        _exit(bad);
    }
    int st = -1;
    waitpid(pid, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "another process reads the values; non-root gets EACCES");
    CHECK(set_attr(fd, DRM_AMDXDNA_SET_FORCE_PREEMPT, 0, sz) == 0, "force preempt off");
    if (fb)
        CHECK(set_attr(fd, DRM_AMDXDNA_SET_FRAME_BOUNDARY_PREEMPT, 0, sz) == 0, "frame boundary off");
}

/* The driver's own state through exec's driver session (docs/spec/uapi.md §6): a root
 * SET_POWER_MODE moves the device's mode; a job that raises an AIE error leaves it in the
 * driver's last-async-error cache, which GET_ARRAY HW_LAST_ASYNC_ERR reads. */
static void test_driver_state(int fd, const struct amdxdna_drm_query_aie_metadata *md)
{
    struct amdxdna_drm_set_power_mode pm = {.power_mode = POWER_MODE_LOW};
    struct amdxdna_drm_set_state ss = {.param = DRM_AMDXDNA_SET_POWER_MODE, .buffer_size = sizeof(pm),
                                       .buffer = PTR(&pm)};
    EXPECT_OK(fd, DRM_IOCTL_AMDXDNA_SET_STATE, &ss);
    struct amdxdna_drm_get_power_mode got = {.power_mode = 0xEE};
    struct amdxdna_drm_get_info gi = {.param = DRM_AMDXDNA_GET_POWER_MODE, .buffer_size = sizeof(got),
                                      .buffer = PTR(&got)};
    EXPECT_OK(fd, DRM_IOCTL_AMDXDNA_GET_INFO, &gi);
    CHECK(got.power_mode == POWER_MODE_LOW, "power mode %u after SET_STATE", got.power_mode);
    pm.power_mode = POWER_MODE_TURBO + 1;
    EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_SET_STATE, &ss, EINVAL);
    ss.buffer = PTR(unmapped);
    EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_SET_STATE, &ss, EFAULT);
    pm.power_mode = POWER_MODE_DEFAULT;
    ss.buffer = PTR(&pm);
    EXPECT_OK(fd, DRM_IOCTL_AMDXDNA_SET_STATE, &ss);
    EXPECT_OK(fd, DRM_IOCTL_AMDXDNA_GET_INFO, &gi);
    CHECK(got.power_mode == POWER_MODE_DEFAULT, "power mode %u back", got.power_mode);

    /* an AIE error at a core tile: instruction error event 59 of the core module */
    struct amdxdna_qos_info qos = {.priority = AMDXDNA_QOS_NORMAL_PRIORITY};
    struct amdxdna_drm_create_hwctx cc = {.qos_p = PTR(&qos), .num_tiles = md->core.row_count};
    EXPECT_OK(fd, DRM_IOCTL_AMDXDNA_CREATE_HWCTX, &cc);
    uint32_t instr = create_bo(fd, AMDXDNA_BO_DEV, 4096), cmd = create_bo(fd, AMDXDNA_BO_CMD, 4096);
    struct xknl_desc desc = {XKNL_MAGIC, XKNL_VERSION, XKNL_FAIL, XKNL_INT32, 0, 0, 0, 0, 1.0, XKNL_AIE_ERR,
              0u | (uint32_t)md->core.row_start << 8 | 1u << 16 | 59u << 24};
    memcpy((void *)(uintptr_t)bo_info(fd, instr).vaddr, &desc, sizeof(desc));
    uint32_t *c = map_bo(fd, cmd, 4096);
    uint64_t ia = bo_info(fd, instr).xdna_addr;
    uint32_t w[] = {1, (uint32_t)ia, (uint32_t)(ia >> 32), sizeof(struct xknl_desc), 0};
    c[0] = XDNA_SHIM_ERT_STATE_NEW | (uint32_t)(sizeof(w) / 4) << 12 | XDNA_SHIM_ERT_START_NPU << 23;
    memcpy(c + 1, w, sizeof(w));
    struct amdxdna_drm_exec_cmd e = {.hwctx = cc.handle, .type = AMDXDNA_CMD_SUBMIT_EXEC_BUF,
                                     .cmd_handles = cmd, .cmd_count = 1};
    EXPECT_OK(fd, DRM_IOCTL_AMDXDNA_EXEC_CMD, &e);
    struct amdxdna_drm_wait_cmd wc = {.hwctx = cc.handle, .timeout = 5000, .seq = e.seq};
    ioctl(fd, DRM_IOCTL_AMDXDNA_WAIT_CMD, &wc);
    CHECK((c[0] & 0xF) == XDNA_SHIM_ERT_STATE_ERROR, "the failing job: state %u", c[0] & 0xF);
    struct amdxdna_async_error ae[2];
    struct amdxdna_drm_get_array ga = {0};
    for (int tries = 0; tries < 400; tries++) { /* the event reaches the driver on its own */
        memset(ae, 0, sizeof(ae));
        ga = (struct amdxdna_drm_get_array){.param = DRM_AMDXDNA_HW_LAST_ASYNC_ERR,
                                            .element_size = sizeof(ae[0]), .num_element = 2,
                                            .buffer = PTR(ae)};
        EXPECT_OK(fd, DRM_IOCTL_AMDXDNA_GET_ARRAY, &ga);
        if (ga.num_element)
            break;
        usleep(25000);
    }
    CHECK(ga.num_element == 1 && ga.element_size == sizeof(ae[0]), "one cached error: %u", ga.num_element);
    CHECK((ae[0].err_code & 0xFFFF) == 8 && (ae[0].err_code >> 32 & 0xFF) == 3 && ae[0].ts_us,
          "AIE_INSTRUCTION of AIE_CORE: %#llx", (unsigned long long)ae[0].err_code);
    CHECK((ae[0].ex_err_code >> 8 & 0xFF) == md->core.row_start, "row in ex_err_code: %#llx",
          (unsigned long long)ae[0].ex_err_code);
    ga.pad = 1;
    EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_GET_ARRAY, &ga, EINVAL);
    struct amdxdna_drm_destroy_hwctx dh = {.handle = cc.handle};
    EXPECT_OK(fd, DRM_IOCTL_AMDXDNA_DESTROY_HWCTX, &dh);
}

/* GET_INFO SENSORS (docs/spec/uapi.md §6 "Sensors"): "Total Power" in mW, then one
 * "Column N Utilization" in % per column (at most 8); a buffer short of all of them is
 * EINVAL with nothing written, buffer_size comes back as the bytes written and nothing
 * lands past them; the values are the device's: a hung job makes its columns 100 % busy
 * and raises the power, destroying its context brings both back. */
static int read_sensors(int fd, struct amdxdna_drm_query_sensor *s, uint32_t cap)
{
    struct amdxdna_drm_get_info gi = {.param = DRM_AMDXDNA_QUERY_SENSORS,
                                      .buffer_size = cap * (uint32_t)sizeof(*s), .buffer = PTR(s)};
    EXPECT_OK(fd, DRM_IOCTL_AMDXDNA_GET_INFO, &gi);
    return (int)(gi.buffer_size / sizeof(*s));
}

static int busy_cols(const struct amdxdna_drm_query_sensor *s, int n)
{
    int busy = 0;
    for (int i = 1; i < n; i++)
        busy += s[i].input == 100;
    return busy;
}

/* The platform firmware's power model (docs/spec/uapi.md §6 "Sensors") at the clocks the
 * device runs at now. */
static uint32_t model_mw(int fd, int busy)
{
    struct amdxdna_drm_query_clock_metadata ck = {0};
    struct amdxdna_drm_get_info gi = {.param = DRM_AMDXDNA_QUERY_CLOCK_METADATA, .buffer_size = sizeof(ck),
                                      .buffer = PTR(&ck)};
    EXPECT_OK(fd, DRM_IOCTL_AMDXDNA_GET_INFO, &gi);
    return (ck.mp_npu_clock.freq_mhz + ck.h_clock.freq_mhz) / 4 + (uint32_t)busy * ck.h_clock.freq_mhz / 4;
}

static void test_sensors(int fd, const struct amdxdna_drm_query_aie_metadata *md)
{
    enum { CAP = 12 };
    const uint32_t ncol = md->cols < 8 ? md->cols : 8, want = (1 + ncol) * sizeof(struct amdxdna_drm_query_sensor);
    struct amdxdna_drm_query_sensor s[CAP];
    memset(s, 0xAB, sizeof(s));
    struct amdxdna_drm_get_info gi = {.param = DRM_AMDXDNA_QUERY_SENSORS, .buffer_size = sizeof(s),
                                      .buffer = PTR(s)};
    EXPECT_OK(fd, DRM_IOCTL_AMDXDNA_GET_INFO, &gi);
    CHECK(gi.buffer_size == want, "buffer_size %u, want %u", gi.buffer_size, want);
    CHECK(s[ncol + 1].label[0] == 0xAB && s[CAP - 1].pad[5] == 0xAB, "nothing past the sensors");
    CHECK(s[0].type == AMDXDNA_SENSOR_TYPE_POWER && !strcmp((char *)s[0].label, "Total Power") &&
              !strcmp((char *)s[0].units, "mW") && s[0].unitm == -3 && s[0].input > 0 && s[0].input < 65536 &&
              s[0].max == 0 && s[0].status[0] == 0 && s[0].pad[0] == 0,
          "power sensor: %s %u %s", (char *)s[0].label, s[0].input, (char *)s[0].units);
    for (uint32_t i = 0; i < ncol; i++) {
        char label[64];
        snprintf(label, sizeof(label), "Column %u Utilization", i);
        CHECK(s[1 + i].type == AMDXDNA_SENSOR_TYPE_COLUMN_UTILIZATION && !strcmp((char *)s[1 + i].label, label) &&
                  !strcmp((char *)s[1 + i].units, "%") && s[1 + i].unitm == 0 && s[1 + i].input == 0,
              "column %u: %s %u %s", i, (char *)s[1 + i].label, s[1 + i].input, (char *)s[1 + i].units);
    }
    /* a context's QoS reaches the SMU asynchronously: the last one's may still be on its way */
    for (int tries = 0; tries < 400 && s[0].input != model_mw(fd, 0); tries++) {
        usleep(25000);
        read_sensors(fd, s, 1 + ncol);
    }
    CHECK(s[0].input == model_mw(fd, 0), "idle power %u mW, model %u", s[0].input, model_mw(fd, 0));

    memset(s, 0xAB, sizeof(s));
    gi = (struct amdxdna_drm_get_info){.param = DRM_AMDXDNA_QUERY_SENSORS, .buffer_size = want - 1,
                                       .buffer = PTR(s)};
    EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_GET_INFO, &gi, EINVAL);
    CHECK(s[0].label[0] == 0xAB && gi.buffer_size == want - 1, "a short buffer: nothing written");
    gi.buffer_size = sizeof(struct amdxdna_drm_query_sensor); /* the power alone: short too */
    EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_GET_INFO, &gi, EINVAL);
    gi.buffer_size = want;
    gi.buffer = PTR(unmapped);
    EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_GET_INFO, &gi, EFAULT);

    /* a job that hangs: its columns busy until its context goes */
    struct amdxdna_qos_info qos = {.priority = AMDXDNA_QOS_NORMAL_PRIORITY};
    struct amdxdna_drm_create_hwctx cc = {.qos_p = PTR(&qos), .num_tiles = md->core.row_count};
    EXPECT_OK(fd, DRM_IOCTL_AMDXDNA_CREATE_HWCTX, &cc);
    uint32_t instr = create_bo(fd, AMDXDNA_BO_DEV, 4096), cmd = create_bo(fd, AMDXDNA_BO_CMD, 4096);
    write_desc(fd, instr, XKNL_HANG, 0);
    uint32_t *c = map_bo(fd, cmd, 4096);
    uint64_t ia = bo_info(fd, instr).xdna_addr;
    uint32_t w[] = {1, (uint32_t)ia, (uint32_t)(ia >> 32), sizeof(struct xknl_desc), 0};
    c[0] = XDNA_SHIM_ERT_STATE_NEW | (uint32_t)(sizeof(w) / 4) << 12 | XDNA_SHIM_ERT_START_NPU << 23;
    memcpy(c + 1, w, sizeof(w));
    struct amdxdna_drm_exec_cmd e = {.hwctx = cc.handle, .type = AMDXDNA_CMD_SUBMIT_EXEC_BUF,
                                     .cmd_handles = cmd, .cmd_count = 1};
    EXPECT_OK(fd, DRM_IOCTL_AMDXDNA_EXEC_CMD, &e);
    int n = 0, busy = 0;
    for (int tries = 0; tries < 400; tries++) { /* the firmware takes the job on its own */
        n = read_sensors(fd, s, CAP);
        busy = busy_cols(s, n);
        if (busy == 1 && s[0].input == model_mw(fd, 1))
            break;
        usleep(25000);
    }
    CHECK(busy == 1 && s[0].input == model_mw(fd, 1), "one busy column: %d busy, %u mW, model %u", busy,
          s[0].input, model_mw(fd, 1));
    struct amdxdna_drm_destroy_hwctx dh = {.handle = cc.handle};
    EXPECT_OK(fd, DRM_IOCTL_AMDXDNA_DESTROY_HWCTX, &dh);
    for (int tries = 0; tries < 400; tries++) {
        n = read_sensors(fd, s, CAP);
        busy = busy_cols(s, n);
        if (!busy && s[0].input == model_mw(fd, 0))
            break;
        usleep(25000);
    }
    CHECK(busy == 0 && s[0].input == model_mw(fd, 0), "idle again: %d busy, %u mW", busy, s[0].input);
    munmap(c, 4096);
    gem_close(fd, cmd);
    gem_close(fd, instr);
}

/* Live clocks and TURBO (docs/spec/uapi.md §6): CLOCK_METADATA and RESOURCE_INFO's
 * npu_tops_curr are the device's current DPM level right after a SET_POWER_MODE of any
 * process; TURBO is EBUSY while any process has a context. */
static int set_mode(int fd, uint8_t mode)
{
    struct amdxdna_drm_set_power_mode pm = {.power_mode = mode};
    struct amdxdna_drm_set_state ss = {.param = DRM_AMDXDNA_SET_POWER_MODE, .buffer_size = sizeof(pm),
                                       .buffer = PTR(&pm)};
    return ioctl(fd, DRM_IOCTL_AMDXDNA_SET_STATE, &ss) == 0 ? 0 : errno;
}

/* mode in a forked process of its own (its own DRM file); its errno, or 255 */
static int set_mode_elsewhere(uint8_t mode)
{
    pid_t pid = fork();
    if (pid == 0) {
        int cfd = open("/dev/accel/accel0", O_RDWR);
        _exit(cfd < 0 ? 255 : set_mode(cfd, mode));
    }
    int st = -1;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 255;
}

static void clocks_now(int fd, uint32_t *hclk, struct amdxdna_drm_get_resource_info *ri)
{
    struct amdxdna_drm_query_clock_metadata ck = {0};
    struct amdxdna_drm_get_info gi = {.param = DRM_AMDXDNA_QUERY_CLOCK_METADATA, .buffer_size = sizeof(ck),
                                      .buffer = PTR(&ck)};
    EXPECT_OK(fd, DRM_IOCTL_AMDXDNA_GET_INFO, &gi);
    *hclk = ck.h_clock.freq_mhz;
    gi = (struct amdxdna_drm_get_info){.param = DRM_AMDXDNA_QUERY_RESOURCE_INFO, .buffer_size = sizeof(*ri),
                                       .buffer = PTR(ri)};
    EXPECT_OK(fd, DRM_IOCTL_AMDXDNA_GET_INFO, &gi);
}

static void test_power_live(int fd, const struct amdxdna_drm_query_aie_metadata *md)
{
    uint32_t h;
    struct amdxdna_drm_get_resource_info ri;
    CHECK(set_mode_elsewhere(POWER_MODE_HIGH) == 0, "HIGH from another process");
    clocks_now(fd, &h, &ri);
    CHECK(h == ri.npu_clk_max && ri.npu_tops_curr == ri.npu_tops_max, "HIGH at once: %u/%llu MHz, %llu/%llu TOPS",
          h, (unsigned long long)ri.npu_clk_max, (unsigned long long)ri.npu_tops_curr,
          (unsigned long long)ri.npu_tops_max);
    CHECK(set_mode_elsewhere(POWER_MODE_LOW) == 0, "LOW from another process");
    clocks_now(fd, &h, &ri);
    /* npu1's TOPS are 2 per column at every level; npu4's follow the H clock */
    const bool flat_tops = pci_device() == 0x1502;
    CHECK(h < ri.npu_clk_max && (flat_tops ? ri.npu_tops_curr == ri.npu_tops_max : ri.npu_tops_curr < ri.npu_tops_max),
          "LOW at once: %u MHz, %llu TOPS", h, (unsigned long long)ri.npu_tops_curr);
    const uint32_t low_h = h;

    struct amdxdna_qos_info qos = {.priority = AMDXDNA_QOS_NORMAL_PRIORITY};
    struct amdxdna_drm_create_hwctx cc = {.qos_p = PTR(&qos), .num_tiles = md->core.row_count};
    EXPECT_OK(fd, DRM_IOCTL_AMDXDNA_CREATE_HWCTX, &cc);
    CHECK(set_mode(fd, POWER_MODE_TURBO) == EBUSY, "TURBO with this process's context");
    CHECK(set_mode_elsewhere(POWER_MODE_TURBO) == EBUSY, "TURBO from another process while we hold a context");
    clocks_now(fd, &h, &ri);
    CHECK(h == low_h, "a refused TURBO leaves the clocks: %u MHz", h);
    struct amdxdna_drm_destroy_hwctx dh = {.handle = cc.handle};
    EXPECT_OK(fd, DRM_IOCTL_AMDXDNA_DESTROY_HWCTX, &dh);
    CHECK(set_mode_elsewhere(POWER_MODE_TURBO) == 0, "TURBO with no context anywhere");
    clocks_now(fd, &h, &ri);
    CHECK(h == ri.npu_clk_max, "TURBO runs the top level: %u MHz", h);
    CHECK(set_mode(fd, POWER_MODE_DEFAULT) == 0, "DEFAULT again");
}

/* FW log and trace (docs/spec/uapi.md §6 "Firmware log and trace"): root SET_STATE starts,
 * changes and stops them in the driver; GET_ARRAY *_CONFIG reads {version, status, config};
 * GET_ARRAY FW_LOG/FW_TRACE read the firmware's ring from the reader's offset, with the
 * dpt_metadata at the buffer's end (watch: wait for data). npu1's firmware has none: the
 * driver stays off without an error. */
static int set_dpt(int fd, uint32_t param, uint32_t action, uint32_t config, uint32_t size)
{
    struct amdxdna_drm_set_dpt_state ds = {.action = action, .config = config};
    struct amdxdna_drm_set_state ss = {.param = param, .buffer_size = size, .buffer = PTR(&ds)};
    return ioctl(fd, DRM_IOCTL_AMDXDNA_SET_STATE, &ss) == 0 ? 0 : errno;
}

static struct amdxdna_drm_get_dpt_state dpt_config(int fd, uint32_t param)
{
    struct amdxdna_drm_get_dpt_state st;
    memset(&st, 0xEE, sizeof(st));
    struct amdxdna_drm_get_array ga = {.param = param, .element_size = sizeof(st), .num_element = 1,
                                       .buffer = PTR(&st)};
    EXPECT_OK(fd, DRM_IOCTL_AMDXDNA_GET_ARRAY, &ga);
    return st;
}

/* One read: data into buf (cap bytes before the metadata); returns the errno (0 ok). */
static int dpt_read(int fd, uint32_t param, uint8_t *buf, uint32_t cap, struct amdxdna_dpt_metadata *md)
{
    memcpy(buf + cap, md, sizeof(*md));
    struct amdxdna_drm_get_array ga = {.param = param, .element_size = cap + sizeof(*md), .num_element = 1,
                                       .buffer = PTR(buf)};
    int rc = ioctl(fd, DRM_IOCTL_AMDXDNA_GET_ARRAY, &ga) == 0 ? 0 : errno;
    memcpy(md, buf + cap, sizeof(*md));
    return rc;
}

/* The text of every log line in data[0, n) that has level lv, joined by '|'. */
static void log_lines(const uint8_t *data, uint32_t n, unsigned lv, char *out, size_t cap)
{
    out[0] = 0;
    for (uint32_t off = 0; off + sizeof(struct xdna_aie2_fw_log_header) <= n;) {
        struct xdna_aie2_fw_log_header h;
        memcpy(&h, data + off, sizeof(h));
        uint32_t argc = h.flags >> 24, len = (uint32_t)sizeof(h) + argc * 4;
        if ((h.flags >> 8 & 7) == lv && (h.flags >> 16 & 0xFF) == XDNA_AIE2_FW_LOG_APP_MGMT && argc)
            snprintf(out + strlen(out), cap - strlen(out), "%.*s|", (int)(argc * 4),
                     (const char *)data + off + sizeof(h));
        off += (len + XDNA_AIE2_FW_LOG_MSG_ALIGN - 1) / XDNA_AIE2_FW_LOG_MSG_ALIGN * XDNA_AIE2_FW_LOG_MSG_ALIGN;
    }
}

static uint32_t ctx_create_destroy(int fd, const struct amdxdna_drm_query_aie_metadata *md)
{
    struct amdxdna_qos_info qos = {.priority = AMDXDNA_QOS_NORMAL_PRIORITY};
    struct amdxdna_drm_create_hwctx cc = {.qos_p = PTR(&qos), .num_tiles = md->core.row_count};
    EXPECT_OK(fd, DRM_IOCTL_AMDXDNA_CREATE_HWCTX, &cc);
    struct amdxdna_drm_destroy_hwctx dh = {.handle = cc.handle};
    EXPECT_OK(fd, DRM_IOCTL_AMDXDNA_DESTROY_HWCTX, &dh);
    return cc.handle;
}

static void test_fw_log(int fd, const struct amdxdna_drm_query_aie_metadata *md)
{
    static uint8_t buf[65536 + 64];
    char lines[4096];
    const uint32_t sz = sizeof(struct amdxdna_drm_set_dpt_state);
    struct amdxdna_dpt_metadata m = {0};
    struct amdxdna_drm_get_dpt_state st = dpt_config(fd, DRM_AMDXDNA_FW_LOG_CONFIG);
    CHECK(st.status == 0 && st.config == 0 && st.version == 0, "log off at start: %u %u %u", st.status,
          st.config, st.version);
    CHECK(dpt_read(fd, DRM_AMDXDNA_FW_LOG, buf, 4096, &m) == ESHUTDOWN, "FW_LOG while off");
    CHECK(set_dpt(fd, DRM_AMDXDNA_SET_FW_LOG_STATE, 1, 3, sz - 1) == EINVAL, "SET buffer_size must be exact");
    struct amdxdna_drm_set_state ss = {.param = DRM_AMDXDNA_SET_FW_LOG_STATE, .buffer_size = sz,
                                       .buffer = PTR(unmapped)};
    EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_SET_STATE, &ss, EFAULT);
    struct amdxdna_drm_get_array ga = {.param = DRM_AMDXDNA_FW_LOG_CONFIG, .element_size = 8, .num_element = 1,
                                       .buffer = PTR(buf)};
    EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_GET_ARRAY, &ga, ENOSPC);
    if (pci_device() == 0x1502) { /* npu1: no firmware log; the driver stays off, no error */
        CHECK(set_dpt(fd, DRM_AMDXDNA_SET_FW_LOG_STATE, 1, 3, sz) == 0, "npu1 log enable");
        CHECK(dpt_config(fd, DRM_AMDXDNA_FW_LOG_CONFIG).status == 0, "npu1 log stays off");
        CHECK(set_dpt(fd, DRM_AMDXDNA_SET_FW_TRACE_STATE, 1, 0, sz) == 0, "npu1 trace enable");
        CHECK(dpt_config(fd, DRM_AMDXDNA_FW_TRACE_CONFIG).status == 0, "npu1 trace stays off");
        CHECK(dpt_read(fd, DRM_AMDXDNA_FW_TRACE, buf, 4096, &m) == ESHUTDOWN, "npu1 FW_TRACE");
        return;
    }
    CHECK(set_dpt(fd, DRM_AMDXDNA_SET_FW_LOG_STATE, 1, 0, sz) == 0, "log on, default level");
    st = dpt_config(fd, DRM_AMDXDNA_FW_LOG_CONFIG);
    CHECK(st.status == 1 && st.config == 1 && st.version == XDNA_AIE2_FW_LOG_PAYLOAD_VERSION,
          "log on at ERROR: %u %u %u", st.status, st.config, st.version);
    CHECK(set_dpt(fd, DRM_AMDXDNA_SET_FW_LOG_STATE, 1, 3, sz) == 0 &&
              dpt_config(fd, DRM_AMDXDNA_FW_LOG_CONFIG).config == 3, "level INFO");
    m = (struct amdxdna_dpt_metadata){0};
    CHECK(dpt_read(fd, DRM_AMDXDNA_FW_LOG, buf, 65536, &m) == 0, "read from 0");
    uint64_t at = m.offset;
    uint32_t h = ctx_create_destroy(fd, md);
    (void)h;
    m = (struct amdxdna_dpt_metadata){.offset = at};
    CHECK(dpt_read(fd, DRM_AMDXDNA_FW_LOG, buf, 65536, &m) == 0 && m.size > 0 && m.offset == at + m.size,
          "new lines: %u bytes to %llu", m.size, (unsigned long long)m.offset);
    log_lines(buf, m.size, 3, lines, sizeof(lines));
    CHECK(strstr(lines, " created: pasid ") && strstr(lines, " destroyed|"), "INFO lines: %s", lines);
    const uint64_t tail = m.offset;
    CHECK(dpt_read(fd, DRM_AMDXDNA_FW_LOG, buf, 65536, &m) == 0 && m.size == 0 && m.offset == tail,
          "nothing new: %u", m.size);
    /* a small buffer: what fits, nothing past it, the rest on the next call */
    memset(buf, 0xAB, sizeof(buf));
    m = (struct amdxdna_dpt_metadata){.offset = at};
    CHECK(dpt_read(fd, DRM_AMDXDNA_FW_LOG, buf, 24, &m) == 0 && m.size == 24 && m.offset == at + 24,
          "24 bytes: %u to %llu", m.size, (unsigned long long)m.offset);
    CHECK(buf[24 + sizeof(m)] == 0xAB, "nothing past the buffer");
    CHECK(dpt_read(fd, DRM_AMDXDNA_FW_LOG, buf, 65536, &m) == 0 && m.offset == tail, "the rest");
    m = (struct amdxdna_dpt_metadata){.offset = tail + 4096};
    CHECK(dpt_read(fd, DRM_AMDXDNA_FW_LOG, buf, 4096, &m) == EINVAL && m.offset == 0 && m.size == 0,
          "an offset past the tail");
    ga = (struct amdxdna_drm_get_array){.param = DRM_AMDXDNA_FW_LOG, .element_size = 8, .num_element = 1,
                                        .buffer = PTR(buf)};
    EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_GET_ARRAY, &ga, EFAULT); /* no room for the metadata */
    ga.element_size = 4096;
    ga.buffer = PTR(unmapped);
    EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_GET_ARRAY, &ga, EFAULT);

    /* watch: another process waits at the tail until the firmware writes */
    pid_t pid = fork();
    if (pid == 0) {
        int cfd = open("/dev/accel/accel0", O_RDWR);
        struct amdxdna_dpt_metadata w = {.offset = tail, .watch = 1};
        int bad = cfd < 0 || dpt_read(cfd, DRM_AMDXDNA_FW_LOG, buf, 65536, &w) != 0 || w.size == 0;
        _exit(bad);
    }
    ctx_create_destroy(fd, md);
    int wst = -1;
    waitpid(pid, &wst, 0);
    CHECK(WIFEXITED(wst) && WEXITSTATUS(wst) == 0, "a watcher gets the new lines");

    /* trace: all categories by default, then only jobs */
    CHECK(dpt_config(fd, DRM_AMDXDNA_FW_TRACE_CONFIG).status == 0, "trace off");
    CHECK(set_dpt(fd, DRM_AMDXDNA_SET_FW_TRACE_STATE, 1, 0, sz) == 0, "trace on");
    st = dpt_config(fd, DRM_AMDXDNA_FW_TRACE_CONFIG);
    CHECK(st.status == 1 && st.config == 0xFFFFFFFFu && st.version == XDNA_AIE2_FW_TRACE_PAYLOAD_VERSION,
          "trace config %u %#x %u", st.status, st.config, st.version);
    h = ctx_create_destroy(fd, md);
    m = (struct amdxdna_dpt_metadata){0};
    CHECK(dpt_read(fd, DRM_AMDXDNA_FW_TRACE, buf, 65536, &m) == 0 &&
              m.size == 2 * sizeof(struct xdna_aie2_fw_trace_record), "two trace records: %u", m.size);
    struct xdna_aie2_fw_trace_record r[2];
    memcpy(r, buf, sizeof(r));
    CHECK(r[0].event == XDNA_AIE2_FW_TRACE_EV_CTX_CREATE && r[1].event == XDNA_AIE2_FW_TRACE_EV_CTX_DESTROY &&
              r[0].category == XDNA_AIE2_FW_TRACE_CAT_CONTEXT && r[0].timestamp <= r[1].timestamp,
          "create then destroy: %u %u", r[0].event, r[1].event);
    CHECK(set_dpt(fd, DRM_AMDXDNA_SET_FW_TRACE_STATE, 1, XDNA_AIE2_FW_TRACE_CAT_JOB, sz) == 0 &&
              dpt_config(fd, DRM_AMDXDNA_FW_TRACE_CONFIG).config == XDNA_AIE2_FW_TRACE_CAT_JOB, "jobs only");
    ctx_create_destroy(fd, md);
    const uint64_t ttail = m.offset;
    CHECK(dpt_read(fd, DRM_AMDXDNA_FW_TRACE, buf, 65536, &m) == 0 && m.size == 0 && m.offset == ttail,
          "contexts no longer traced: %u", m.size);
    CHECK(set_dpt(fd, DRM_AMDXDNA_SET_FW_TRACE_STATE, 0, 0, sz) == 0 &&
              dpt_config(fd, DRM_AMDXDNA_FW_TRACE_CONFIG).status == 0, "trace off again");
    CHECK(dpt_read(fd, DRM_AMDXDNA_FW_TRACE, buf, 4096, &m) == ESHUTDOWN, "FW_TRACE while off");
    CHECK(set_dpt(fd, DRM_AMDXDNA_SET_FW_LOG_STATE, 0, 0, sz) == 0, "log off");
    st = dpt_config(fd, DRM_AMDXDNA_FW_LOG_CONFIG);
    CHECK(st.status == 0 && st.config == 0, "log off: %u %u", st.status, st.config);
}

/* References to inode `ino` this process still holds: fds (/proc/self/fd) and mappings
 * (/proc/self/maps' inode column). */
static int inode_refs(ino_t ino)
{
    int n = 0;
    char path[64], line[512];
    for (int fdn = 0; fdn < 1024; fdn++) {
        struct stat st;
        snprintf(path, sizeof(path), "/proc/self/fd/%d", fdn);
        if (stat(path, &st) == 0 && st.st_ino == ino && S_ISREG(st.st_mode))
            n++;
    }
    FILE *m = fopen("/proc/self/maps", "r");
    while (m && fgets(line, sizeof(line), m)) {
        unsigned long long inode = 0;
        if (sscanf(line, "%*s %*s %*s %*s %llu", &inode) == 1 && inode == (unsigned long long)ino)
            n++;
    }
    if (m)
        fclose(m);
    return n;
}

/* An exported BO outlives its exporter: the exporting file (handle, map, fd) is closed
 * before another process imports the buffer, which still holds the exporter's bytes; once
 * the last fd and mapping go, this process holds nothing of it (docs/spec/uapi.md §7). */
static void test_prime_outlives(void)
{
    int ex = open("/dev/accel/accel0", O_RDWR);
    CHECK(ex >= 0, "exporter open: %s", strerror(errno));
    if (ex < 0)
        return;
    uint32_t h = create_bo(ex, AMDXDNA_BO_SHARE, 4096);
    uint32_t *p = map_bo(ex, h, 4096);
    p[0] = 0xFEEDF00D;
    struct drm_prime_handle ph = {.handle = h, .flags = DRM_RDWR};
    EXPECT_OK(ex, DRM_IOCTL_PRIME_HANDLE_TO_FD, &ph);
    int dmabuf = ph.fd;
    struct stat st;
    CHECK(dmabuf >= 0 && fstat(dmabuf, &st) == 0, "exported fd");
    munmap(p, 4096);
    gem_close(ex, h);
    close(ex); /* the exporter's file is gone */
    CHECK(inode_refs(st.st_ino) == 1, "only the dma-buf fd holds the buffer: %d", inode_refs(st.st_ino));
    pid_t pid = fork();
    if (pid == 0) {
        int cfd = open("/dev/accel/accel0", O_RDWR);
        struct drm_prime_handle ci = {.fd = dmabuf};
        int ok = cfd >= 0 && ioctl(cfd, DRM_IOCTL_PRIME_FD_TO_HANDLE, &ci) == 0;
        uint32_t *r = ok ? map_bo(cfd, ci.handle, 4096) : MAP_FAILED;
        ok = ok && r != MAP_FAILED && r[0] == 0xFEEDF00D;
        if (ok)
            r[1] = 0xABCD;
        _exit(ok ? 0 : 1);
    }
    int status = -1;
    CHECK(pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0,
          "import after the exporter closed: %#x", status);
    uint32_t *q = mmap(NULL, 4096, PROT_READ, MAP_SHARED, dmabuf, 0);
    CHECK(q != MAP_FAILED && q[0] == 0xFEEDF00D && q[1] == 0xABCD, "the importer's write is in the buffer");
    if (q != MAP_FAILED)
        munmap(q, 4096);
    close(dmabuf);
    CHECK(inode_refs(st.st_ino) == 0, "the buffer is released with its last reference: %d refs",
          inode_refs(st.st_ino));
}

/* Every ioctl of the decoder (tests/test_uapi_c.py checks this list names each one of the
 * UAPI table): an argument that is NULL, in a PROT_NONE page, or that runs from a readable
 * page into one, is EFAULT as drm_ioctl's copy-in makes it, and no byte of the program's
 * memory changes (the readable page and a buffer elsewhere keep their sentinel). */
#define BAD(name) {DRM_IOCTL_##name, #name}
static const struct {
    unsigned long req;
    const char *name;
} BAD_ARGS[] = {
    BAD(VERSION), BAD(GEM_CLOSE), BAD(GET_CAP), BAD(PRIME_HANDLE_TO_FD), BAD(PRIME_FD_TO_HANDLE),
    BAD(SYNCOBJ_CREATE), BAD(SYNCOBJ_DESTROY), BAD(SYNCOBJ_HANDLE_TO_FD), BAD(SYNCOBJ_FD_TO_HANDLE),
    BAD(SYNCOBJ_WAIT), BAD(SYNCOBJ_RESET), BAD(SYNCOBJ_SIGNAL), BAD(SYNCOBJ_TIMELINE_WAIT),
    BAD(SYNCOBJ_QUERY), BAD(SYNCOBJ_TRANSFER), BAD(SYNCOBJ_TIMELINE_SIGNAL), BAD(SET_CLIENT_NAME),
    BAD(AMDXDNA_CREATE_HWCTX), BAD(AMDXDNA_DESTROY_HWCTX), BAD(AMDXDNA_CONFIG_HWCTX),
    BAD(AMDXDNA_CREATE_BO), BAD(AMDXDNA_GET_BO_INFO), BAD(AMDXDNA_SYNC_BO), BAD(AMDXDNA_EXEC_CMD),
    BAD(AMDXDNA_GET_INFO), BAD(AMDXDNA_SET_STATE), BAD(AMDXDNA_WAIT_CMD), BAD(AMDXDNA_GET_ARRAY),
};

static void test_bad_args(int fd)
{
    const size_t page = 4096;
    uint8_t *two = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(two != MAP_FAILED && mprotect(two + page, page, PROT_NONE) == 0, "a page, then a PROT_NONE one");
    if (two == MAP_FAILED)
        return;
    static uint8_t sentinel[4096];
    memset(sentinel, 0xA5, sizeof(sentinel));
    memset(two, 0x5A, page);
    for (size_t i = 0; i < sizeof(BAD_ARGS) / sizeof(BAD_ARGS[0]); i++) {
        unsigned long req = BAD_ARGS[i].req;
        void *args[3] = {NULL, unmapped, two + page - 4}; /* the last straddles the pages */
        for (int k = 0; k < 3; k++) {
            errno = 0;
            int rc = ioctl(fd, req, args[k]);
            CHECK(rc == -1 && errno == EFAULT, "%s with arg %d: rc %d errno %d", BAD_ARGS[i].name, k, rc,
                  errno);
        }
    }
    size_t bad = 0;
    for (size_t i = 0; i < page; i++)
        bad += two[i] != 0x5A;
    for (size_t i = 0; i < sizeof(sentinel); i++)
        bad += sentinel[i] != 0xA5;
    CHECK(bad == 0, "%zu bytes of the program's memory changed", bad);
    munmap(two, 2 * page);
    struct drm_version v = {0};
    EXPECT_OK(fd, DRM_IOCTL_VERSION, &v); /* the file still works */
}

/* Context and syncobj handles that are stale (destroyed) or another DRM file's (a file of
 * this same process): the driver's errnos, EINVAL for a context (EXEC_CMD, WAIT_CMD,
 * CONFIG_HWCTX, DESTROY_HWCTX), ENOENT for a syncobj looked up to wait, query, signal or
 * reset, EINVAL for one to destroy or export; the owner's handles keep working. */
static void test_stale_foreign(int fd, const struct amdxdna_drm_query_aie_metadata *md)
{
    uint32_t cmd = create_bo(fd, AMDXDNA_BO_CMD, 4096);
    uint32_t stale = ctx_create_destroy(fd, md);
    struct amdxdna_drm_exec_cmd e = {.hwctx = stale, .type = AMDXDNA_CMD_SUBMIT_EXEC_BUF,
                                     .cmd_handles = cmd, .cmd_count = 1};
    struct amdxdna_drm_wait_cmd w = {.hwctx = stale, .seq = 1};
    struct amdxdna_cu_config cu = {0};
    struct amdxdna_drm_config_hwctx cfg = {.handle = stale, .param_type = DRM_AMDXDNA_HWCTX_CONFIG_CU,
                                           .param_val = PTR(&cu), .param_val_size = sizeof(cu)};
    struct amdxdna_drm_destroy_hwctx d = {.handle = stale};
    EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_EXEC_CMD, &e, EINVAL);
    EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_WAIT_CMD, &w, EINVAL);
    EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_CONFIG_HWCTX, &cfg, EINVAL);
    EXPECT_ERR(fd, DRM_IOCTL_AMDXDNA_DESTROY_HWCTX, &d, EINVAL);

    /* a live context of fd and a host syncobj of fd, named from a fresh file */
    struct amdxdna_qos_info qos = {.priority = AMDXDNA_QOS_NORMAL_PRIORITY};
    struct amdxdna_drm_create_hwctx cc = {.qos_p = PTR(&qos), .num_tiles = md->core.row_count};
    EXPECT_OK(fd, DRM_IOCTL_AMDXDNA_CREATE_HWCTX, &cc);
    struct drm_syncobj_create sc = {.flags = DRM_SYNCOBJ_CREATE_SIGNALED};
    EXPECT_OK(fd, DRM_IOCTL_SYNCOBJ_CREATE, &sc);
    int third = open("/dev/accel/accel0", O_RDWR | O_CLOEXEC);
    CHECK(third >= 0, "a third file: %s", strerror(errno));
    if (third >= 0) {
        uint32_t cmd3 = create_bo(third, AMDXDNA_BO_CMD, 4096);
        e = (struct amdxdna_drm_exec_cmd){.hwctx = cc.handle, .type = AMDXDNA_CMD_SUBMIT_EXEC_BUF,
                                          .cmd_handles = cmd3, .cmd_count = 1};
        w = (struct amdxdna_drm_wait_cmd){.hwctx = cc.handle, .seq = 1};
        cfg.handle = cc.handle;
        d.handle = cc.handle;
        EXPECT_ERR(third, DRM_IOCTL_AMDXDNA_EXEC_CMD, &e, EINVAL);
        EXPECT_ERR(third, DRM_IOCTL_AMDXDNA_WAIT_CMD, &w, EINVAL);
        EXPECT_ERR(third, DRM_IOCTL_AMDXDNA_CONFIG_HWCTX, &cfg, EINVAL);
        EXPECT_ERR(third, DRM_IOCTL_AMDXDNA_DESTROY_HWCTX, &d, EINVAL);
        uint32_t hs[2] = {cc.syncobj_handle, sc.handle};
        uint64_t pts[2] = {1, 0};
        for (int k = 0; k < 2; k++) {
            struct drm_syncobj_wait sw = {.handles = PTR(&hs[k]), .count_handles = 1};
            EXPECT_ERR(third, DRM_IOCTL_SYNCOBJ_WAIT, &sw, ENOENT);
            struct drm_syncobj_timeline_array q = {.handles = PTR(&hs[k]), .points = PTR(&pts[k]),
                                                   .count_handles = 1};
            EXPECT_ERR(third, DRM_IOCTL_SYNCOBJ_QUERY, &q, ENOENT);
            CHECK(pts[0] == 1 && pts[1] == 0, "refused QUERY wrote the points");
            struct drm_syncobj_destroy sd = {.handle = hs[k]};
            EXPECT_ERR(third, DRM_IOCTL_SYNCOBJ_DESTROY, &sd, EINVAL);
            struct drm_syncobj_handle sh = {.handle = hs[k], .fd = -1};
            EXPECT_ERR(third, DRM_IOCTL_SYNCOBJ_HANDLE_TO_FD, &sh, EINVAL);
            CHECK(sh.fd == -1, "refused export gave fd %d", sh.fd);
        }
        struct drm_syncobj_array sa = {.handles = PTR(&sc.handle), .count_handles = 1};
        EXPECT_ERR(third, DRM_IOCTL_SYNCOBJ_SIGNAL, &sa, ENOENT);
        EXPECT_ERR(third, DRM_IOCTL_SYNCOBJ_RESET, &sa, ENOENT);
        close(third);
    }
    /* the owner's handles are untouched */
    struct drm_syncobj_wait sw = {.handles = PTR(&sc.handle), .count_handles = 1};
    EXPECT_OK(fd, DRM_IOCTL_SYNCOBJ_WAIT, &sw);
    struct drm_syncobj_destroy sd = {.handle = sc.handle};
    EXPECT_OK(fd, DRM_IOCTL_SYNCOBJ_DESTROY, &sd);
    d.handle = cc.handle;
    EXPECT_OK(fd, DRM_IOCTL_AMDXDNA_DESTROY_HWCTX, &d);
    gem_close(fd, cmd);
}

/* A caller without root (a forked child that opens the device, then drops its effective
 * ids to nobody): the admin-only reads (TELEMETRY, FW_LOG, FW_TRACE) are EPERM, as the
 * out-of-tree driver's admin check, and a SET_STATE is the DRM core's EACCES; what anyone
 * may read still works. Skipped, and said so, when the child cannot drop its ids. */
static void test_non_root(void)
{
    if (geteuid() != 0) {
        printf("uapi_test: already non-root, the dropped-privilege checks ran as such\n");
        return;
    }
    pid_t pid = fork();
    if (pid == 0) {
        /* the file is opened as root, the calls made as nobody: the driver checks the
         * caller's capability at each ioctl, not at open */
        int cfd = open("/dev/accel/accel0", O_RDWR);
        if (cfd < 0)
            _exit(3);
        if (setegid(65534) != 0 || seteuid(65534) != 0)
            _exit(2);
        static uint8_t buf[16384];
        struct amdxdna_drm_get_info gi = {.param = DRM_AMDXDNA_QUERY_TELEMETRY, .buffer_size = sizeof(buf),
                                          .buffer = PTR(buf)};
        EXPECT_ERR(cfd, DRM_IOCTL_AMDXDNA_GET_INFO, &gi, EPERM);
        struct amdxdna_drm_get_array ga = {.param = DRM_AMDXDNA_FW_LOG, .element_size = sizeof(buf),
                                           .num_element = 1, .buffer = PTR(buf)};
        EXPECT_ERR(cfd, DRM_IOCTL_AMDXDNA_GET_ARRAY, &ga, EPERM);
        ga.param = DRM_AMDXDNA_FW_TRACE;
        EXPECT_ERR(cfd, DRM_IOCTL_AMDXDNA_GET_ARRAY, &ga, EPERM);
        struct amdxdna_drm_attribute_state st = {0};
        struct amdxdna_drm_set_state ss = {.param = DRM_AMDXDNA_SET_FORCE_PREEMPT, .buffer_size = sizeof(st),
                                           .buffer = PTR(&st)};
        EXPECT_ERR(cfd, DRM_IOCTL_AMDXDNA_SET_STATE, &ss, EACCES);
        struct amdxdna_drm_query_aie_version av = {0};
        gi = (struct amdxdna_drm_get_info){.param = DRM_AMDXDNA_QUERY_AIE_VERSION, .buffer_size = sizeof(av),
                                           .buffer = PTR(&av)};
        EXPECT_OK(cfd, DRM_IOCTL_AMDXDNA_GET_INFO, &gi);
        close(cfd);
        fflush(stdout);
        _exit(failed ? 1 : 0);
    }
    int status = -1;
    waitpid(pid, &status, 0);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 2) {
        printf("uapi_test: SKIP non-root checks: cannot drop to nobody\n");
        return;
    }
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "non-root child: %#x", status);
}

static void test_not_served(int fd)
{
    /* root-only SET_STATE: a non-root caller gets the DRM permission error */
    struct amdxdna_drm_set_state ss = {.param = DRM_AMDXDNA_AIE_TILE_WRITE};
    errno = 0;
    int rc = ioctl(fd, DRM_IOCTL_AMDXDNA_SET_STATE, &ss);
    CHECK(rc == -1 && errno == (geteuid() ? EACCES : EOPNOTSUPP), "SET_STATE errno %d", errno);
}

int main(void)
{
    unmapped = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    test_node();
    int fd = open("/dev/accel/accel0", O_RDWR | O_CLOEXEC);
    int other = open("/dev/accel/accel0", O_RDWR);
    CHECK(fd >= 0 && other >= 0 && fd != other, "two opens: %s", strerror(errno));
    if (fd < 0 || other < 0)
        return 1;
    test_generic(fd);
    test_bos(fd, other);
    struct amdxdna_drm_query_aie_metadata md = test_info(fd);
    uint32_t ctx = test_hwctx(fd, &md);
    test_exec(fd, ctx);
    test_aie_status(fd, &md);
    test_telemetry(fd);
    test_ctx_all_short(fd, &md);
    /* BO usage of this pid by the driver's rules: shmem BOs (SHARE, CMD, DEV_HEAP) in total,
     * DEV_HEAP and CMD also internal, DEV BOs (ours and the context's 4 command lists) heap.
     * `other` holds 4 SHARE pages; here the heap, a, b, out, cmd; DEV: cu, instr. */
    const uint64_t page = 4096;
    struct bo_expect want = {.total = 4 * page + HEAP_SIZE + 3 * N * 4 + page,
                             .internal = HEAP_SIZE + page, .heap = 2 * page + 4 * page};
    test_fork(ctx, &want);
    test_prime(fd, other);
    test_host_syncobjs(fd);
    test_userptr(fd, ctx);
    test_syncobj_fds(fd, other, &md);
    test_destroy(fd, ctx);
    test_fence_chain(fd, &md);
    test_heap_growth(&md);
    if (geteuid() == 0) {
        test_state(fd);
        test_driver_state(fd, &md);
    }
    test_sensors(fd, &md);
    if (geteuid() == 0) {
        test_power_live(fd, &md);
        test_fw_log(fd, &md);
    }
    test_prime_outlives();
    test_bad_args(fd);
    test_stale_foreign(fd, &md);
    test_not_served(fd);
    test_non_root();
    if (geteuid() != 0)
        printf("uapi_test: SKIP root-only checks (SET_STATE, power mode, firmware log): not root\n");
    close(other);
    close(fd);
    printf("uapi_test: %d checks, %d failed\n", checks, failed);
    return failed ? 1 : 0;
}
