/* The ioctl decoder's pure argument checks (argcheck.h, docs/spec/uapi.md §6). */
#include "argcheck.h"

#include <errno.h>
#include <sys/ioctl.h>

#define PAGE_MASK 4095u

int xdna_uapi_frame(unsigned long req, unsigned drv_size, struct xdna_uapi_frame *fr)
{
    if (_IOC_TYPE(req) != DRM_IOCTL_BASE)
        return -ENOTTY;
    unsigned usize = _IOC_SIZE(req);
    unsigned ksize = usize > drv_size ? usize : drv_size;
    if (ksize > XDNA_UAPI_ARG_MAX)
        return -EINVAL;
    fr->in = (_IOC_DIR(req) & _IOC_WRITE) ? usize : 0;
    fr->out = (_IOC_DIR(req) & _IOC_READ) ? usize : 0;
    fr->ksize = ksize;
    return 0;
}

int xdna_uapi_check_create_bo(const struct amdxdna_drm_create_bo *a)
{
    if (a->flags & ~(uint64_t)AMDXDNA_BO_FLAGS_REGION_MASK)
        return -EINVAL;
    if (a->type < AMDXDNA_BO_SHARE || a->type > AMDXDNA_BO_CMD)
        return -EINVAL;
    if (a->vaddr && a->type == AMDXDNA_BO_SHARE)
        return 1; /* its size comes from the table */
    if (a->vaddr || !a->size)
        return -EINVAL; /* user pages back SHARE BOs only here */
    return 0;
}

int xdna_uapi_va_total(const struct amdxdna_drm_va_entry *e, uint32_t n, uint64_t *total)
{
    if (!n || n > XDNA_UAPI_UPTR_MAX_ENTRIES)
        return -EINVAL;
    uint64_t sum = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint64_t end;
        if (!e[i].len || (e[i].vaddr | e[i].len) & PAGE_MASK ||
            __builtin_add_overflow(e[i].vaddr, e[i].len, &end) ||
            __builtin_add_overflow(sum, e[i].len, &sum))
            return -EINVAL;
    }
    *total = sum;
    return 0;
}

int xdna_uapi_check_get_array(const struct amdxdna_drm_get_array *a)
{
    if (a->pad || !a->element_size || !a->num_element ||
        a->element_size > AMDXDNA_MAX_ELEMENT_SIZE || a->num_element > AMDXDNA_MAX_NUM_ELEMENT)
        return -EINVAL;
    return 0;
}

uint32_t xdna_uapi_elem_size(uint32_t element_size, uint32_t ours)
{
    return element_size < ours ? element_size : ours;
}

int xdna_uapi_check_syncobj_handle(const struct drm_syncobj_handle *a, int export_)
{
    uint32_t sync_file = export_ ? DRM_SYNCOBJ_HANDLE_TO_FD_FLAGS_EXPORT_SYNC_FILE
                                 : DRM_SYNCOBJ_FD_TO_HANDLE_FLAGS_IMPORT_SYNC_FILE;
    uint32_t timeline = export_ ? DRM_SYNCOBJ_HANDLE_TO_FD_FLAGS_TIMELINE
                                : DRM_SYNCOBJ_FD_TO_HANDLE_FLAGS_TIMELINE;
    if (a->pad || a->flags & ~(sync_file | timeline))
        return -EINVAL;
    if (a->flags & sync_file)
        return 1; /* the point is read only with TIMELINE */
    return a->point ? -EINVAL : 0; /* a point only goes with a sync file; TIMELINE alone is 0 */
}

int xdna_uapi_check_attr(const struct amdxdna_drm_attribute_state *st)
{
    return st->state > 1 ? -EINVAL : 0;
}
