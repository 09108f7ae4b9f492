/* The accel device files: one DRM file per open of /dev/accel/accelN, served in-process by
 * the shim (docs/spec/uapi.md §5). preload.c routes the libc calls of a program here. */
#ifndef XDNA_ACCEL_H
#define XDNA_ACCEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define XDNA_ACCEL_MAX_FDS 4096
#define XDNA_ACCEL_MAX_MINORS 8

/* CDEF-BEGIN */
/* Open a DRM file on the daemon at socket, in this process, without the interposer: a
 * process that is not under `xdna-emu exec` (the shim fuzz target) issues the same ioctls
 * through xdna_accel_ioctl. minor names the registry and driver service as for accelN
 * (none: those calls answer as outside exec). fd or -1/errno (docs/spec/fuzzing.md §12). */
int xdna_accel_attach(int minor, const char *socket, int flags);
/* The DRM ioctl decoder: 0 or -1/errno, the ioctl(2) contract. */
int xdna_accel_ioctl(int fd, unsigned long req, void *arg);
/* mmap of a BO at its map_offset; MAP_FAILED/errno otherwise. */
void *xdna_accel_mmap(void *addr, size_t len, int prot, int flags, int fd, int64_t off);
/* After the real close: fd no longer names its file (the last one releases it). */
void xdna_accel_forget(int fd);
/* CDEF-END */

/* "/dev/accel/accelN" -> N, or -1 when path names no accel node we serve. */
int xdna_accel_minor(const char *path);
/* Open minor N: a new DRM file (its own client session and handles). fd or -1/errno. */
int xdna_accel_open(int minor, int flags);
/* The minor fd stands for, or -1 when fd is not one of ours. */
int xdna_accel_fd_minor(int fd);
/* After the real dup: newfd now also names oldfd's file. */
void xdna_accel_dup(int oldfd, int newfd);

#endif
