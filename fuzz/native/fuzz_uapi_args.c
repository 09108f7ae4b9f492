/* libFuzzer target: the UAPI decoder's pure argument checks (csrc/uapi/argcheck.c,
 * docs/spec/uapi.md §6). Input: a selector byte, then the bytes of one argument. Each check's
 * verdict is compared with the driver's rule restated here, and a success promises what the
 * decoder relies on (a frame within the copy buffer, a table total without overflow). */
#include "fuzz_common.h"
#include "uapi/argcheck.h"

#include <errno.h>
#include <sys/ioctl.h>

/* The argument bytes, zero-filled past the input (as the decoder zero-fills a short copy). */
static void take(void *dst, size_t size, const uint8_t *data, size_t len)
{
    memset(dst, 0, size);
    memcpy(dst, data, len < size ? len : size);
}

static void frame(const uint8_t *d, size_t n)
{
    uint64_t req = 0;
    uint16_t drv = 0;
    take(&req, sizeof(req), d, n);
    if (n > 8)
        take(&drv, sizeof(drv), d + 8, n - 8);
    struct xdna_uapi_frame fr = {0};
    int rc = xdna_uapi_frame((unsigned long)req, drv, &fr);
    unsigned usize = _IOC_SIZE((unsigned long)req), k = usize > drv ? usize : drv;
    CHECK((rc == -ENOTTY) == (_IOC_TYPE((unsigned long)req) != DRM_IOCTL_BASE));
    if (rc == 0) {
        CHECK(fr.ksize == k && fr.ksize <= XDNA_UAPI_ARG_MAX);
        CHECK(fr.in <= fr.ksize && fr.out <= fr.ksize && fr.ksize >= drv);
    } else if (rc != -ENOTTY) {
        CHECK(rc == -EINVAL && k > XDNA_UAPI_ARG_MAX);
    }
}

static void create_bo(const uint8_t *d, size_t n)
{
    struct amdxdna_drm_create_bo a;
    take(&a, sizeof(a), d, n);
    int bad = (a.flags >> 8) != 0 || a.type < AMDXDNA_BO_SHARE || a.type > AMDXDNA_BO_CMD ||
              (a.vaddr && a.type != AMDXDNA_BO_SHARE) || (!a.vaddr && !a.size);
    int rc = xdna_uapi_check_create_bo(&a);
    CHECK(bad ? rc == -EINVAL : rc == (a.vaddr ? 1 : 0));
}

static void va_total(const uint8_t *d, size_t n)
{
    static struct amdxdna_drm_va_entry e[XDNA_UAPI_UPTR_MAX_ENTRIES + 1];
    if (n < 2)
        return;
    uint32_t count = ((uint32_t)d[0] << 8 | d[1]) % (XDNA_UAPI_UPTR_MAX_ENTRIES + 2);
    size_t have = (n - 2) / sizeof(e[0]);
    for (uint32_t i = 0; i < count; i++) /* entries past the input repeat it */
        take(&e[i], sizeof(e[i]), d + 2 + (have ? (i % have) * sizeof(e[0]) : 0),
             have ? sizeof(e[0]) : 0);
    uint64_t total = 0xA5A5;
    int rc = xdna_uapi_va_total(e, count, &total);
    int ok = count >= 1 && count <= XDNA_UAPI_UPTR_MAX_ENTRIES;
    unsigned __int128 sum = 0;
    for (uint32_t i = 0; ok && i < count; i++) {
        ok = e[i].len && !((e[i].vaddr | e[i].len) & 4095) &&
             (unsigned __int128)e[i].vaddr + e[i].len <= UINT64_MAX;
        sum += e[i].len;
    }
    ok = ok && sum <= UINT64_MAX;
    CHECK(ok ? rc == 0 && total == (uint64_t)sum : rc == -EINVAL && total == 0xA5A5);
}

static void get_array(const uint8_t *d, size_t n)
{
    struct amdxdna_drm_get_array a;
    take(&a, sizeof(a), d, n);
    int ok = !a.pad && a.element_size && a.num_element &&
             a.element_size <= AMDXDNA_MAX_ELEMENT_SIZE && a.num_element <= AMDXDNA_MAX_NUM_ELEMENT;
    CHECK(xdna_uapi_check_get_array(&a) == (ok ? 0 : -EINVAL));
    uint32_t ours = sizeof(struct amdxdna_drm_hwctx_entry), esz = xdna_uapi_elem_size(a.element_size, ours);
    CHECK(esz <= ours && esz <= a.element_size && (esz == ours || esz == a.element_size));
}

static void syncobj_handle(const uint8_t *d, size_t n, int export_)
{
    struct drm_syncobj_handle a;
    take(&a, sizeof(a), d, n);
    int rc = xdna_uapi_check_syncobj_handle(&a, export_);
    uint32_t sync_file = export_ ? DRM_SYNCOBJ_HANDLE_TO_FD_FLAGS_EXPORT_SYNC_FILE
                                 : DRM_SYNCOBJ_FD_TO_HANDLE_FLAGS_IMPORT_SYNC_FILE;
    uint32_t timeline = export_ ? DRM_SYNCOBJ_HANDLE_TO_FD_FLAGS_TIMELINE
                                : DRM_SYNCOBJ_FD_TO_HANDLE_FLAGS_TIMELINE;
    if (a.pad || a.flags & ~(sync_file | timeline))
        CHECK(rc == -EINVAL);
    else if (a.flags & sync_file)
        CHECK(rc == 1);
    else
        CHECK(rc == (a.point ? -EINVAL : 0)); /* the point is read only with a sync file */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
    if (len < 1)
        return 0;
    const uint8_t *d = data + 1;
    size_t n = len - 1;
    switch (data[0] % 7) {
    case 0: frame(d, n); break;
    case 1: create_bo(d, n); break;
    case 2: va_total(d, n); break;
    case 3: get_array(d, n); break;
    case 4: syncobj_handle(d, n, 1); break;
    case 5: syncobj_handle(d, n, 0); break;
    default: {
        struct amdxdna_drm_attribute_state st;
        take(&st, sizeof(st), d, n);
        CHECK(xdna_uapi_check_attr(&st) == (st.state > 1 ? -EINVAL : 0));
    }
    }
    return 0;
}
