/* The ioctl decoder's pure argument checks (docs/spec/uapi.md §6): no shim, no user memory,
 * no state, so the libFuzzer harness fuzz/native/fuzz_uapi_args.c runs them alone. Each
 * returns 0 or a negative errno, the driver's for that input. */
#ifndef XDNA_UAPI_ARGCHECK_H
#define XDNA_UAPI_ARGCHECK_H

#include <stdint.h>

#include "../generated/amdxdna_accel.h"

#define XDNA_UAPI_ARG_MAX 4096u       /* largest argument struct we accept (drm_ioctl: 16383) */
#define XDNA_UAPI_UPTR_MAX_ENTRIES 4096u /* va-table entries taken in one CREATE_BO */

/* drm_ioctl's framing of request req for a command whose struct is drv_size bytes: how many
 * bytes it copies in and back, and the kernel-side size (the larger of the two structs). */
struct xdna_uapi_frame {
    unsigned in, out, ksize;
};
/* -ENOTTY not a DRM ('d') request, -EINVAL larger than we take. */
int xdna_uapi_frame(unsigned long req, unsigned drv_size, struct xdna_uapi_frame *fr);

/* CREATE_BO before anything is allocated: 1 a user-pointer BO (vaddr names a va table),
 * 0 a plain one; -EINVAL flags 63:8, unknown type, size 0, vaddr with a type other than
 * SHARE. */
int xdna_uapi_check_create_bo(const struct amdxdna_drm_create_bo *a);

/* A user-pointer BO's entries (n of them, read already): their total size in *total;
 * -EINVAL more than XDNA_UAPI_UPTR_MAX_ENTRIES, an entry empty or not page-aligned, a range
 * or a total that overflows. */
int xdna_uapi_va_total(const struct amdxdna_drm_va_entry *e, uint32_t n, uint64_t *total);

/* GET_ARRAY's common checks: -EINVAL pad, element_size 0 or over the limit, num_element 0
 * or over the limit. */
int xdna_uapi_check_get_array(const struct amdxdna_drm_get_array *a);

/* GET_ARRAY's answer size: min(element_size, ours) bytes per element. */
uint32_t xdna_uapi_elem_size(uint32_t element_size, uint32_t ours);

/* SYNCOBJ_HANDLE_TO_FD (export) or FD_TO_HANDLE: 0 a plain syncobj fd, 1 a sync file (its
 * point is `point` with TIMELINE, else 0); -EINVAL pad, unknown flags, a point without a
 * sync file. */
int xdna_uapi_check_syncobj_handle(const struct drm_syncobj_handle *a, int export_);

/* SET_STATE of a 0/1 attribute: -EINVAL a state above 1. */
int xdna_uapi_check_attr(const struct amdxdna_drm_attribute_state *st);

#endif
