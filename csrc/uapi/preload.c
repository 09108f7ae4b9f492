/* The LD_PRELOAD interposer of `xdna-emu exec` (docs/spec/uapi.md §5).
 *
 * umockdev's preload serves /sys (the PCI function and its accel child) and leaves
 * /dev/accel alone; this library, first in LD_PRELOAD, takes the libc entry points a
 * program reaches the accel node through: open (every variant), stat (every variant,
 * statx too, as a character device of major 261), ioctl, mmap, close and the dup family. Everything else
 * goes to the next definition (RTLD_NEXT). munmap and poll need no hook: the fd is a
 * real eventfd and a BO mapping a real shared mapping. Only these symbols are exported;
 * the shim inside is built with hidden visibility so it cannot clash with a program's own
 * copy (a Python program under exec that also loads xdna_emu._shim).
 */
#include "accel.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#define EXPORT __attribute__((visibility("default")))
#define ACCEL_MAJOR 261

#define REAL(name) \
    static __typeof__(&name) real_##name; \
    if (!real_##name) \
        real_##name = (__typeof__(&name))dlsym(RTLD_NEXT, #name)

static void fake_stat(int minor, struct stat *st)
{
    memset(st, 0, sizeof(*st));
    st->st_mode = S_IFCHR | 0666;
    st->st_rdev = makedev(ACCEL_MAJOR, (unsigned)minor);
    st->st_nlink = 1;
    st->st_blksize = 4096;
    st->st_dev = makedev(0, 5); /* devtmpfs-like */
    st->st_ino = 1000 + (unsigned)minor;
}

static int mode_arg(int flags, va_list ap)
{
    return (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE ? va_arg(ap, int) : 0;
}

static int accel_open(const char *path, int flags)
{
    int minor = xdna_accel_minor(path);
    return minor < 0 ? -2 : xdna_accel_open(minor, flags);
}

#define OPEN_HOOK(name)                                                           \
    EXPORT int name(const char *path, int flags, ...)                               \
    {                                                                               \
        va_list ap;                                                                 \
        va_start(ap, flags);                                                        \
        int mode = mode_arg(flags, ap);                                             \
        va_end(ap);                                                                 \
        int fd = accel_open(path, flags);                                           \
        if (fd != -2)                                                               \
            return fd;                                                              \
        REAL(name);                                                                 \
        return real_##name(path, flags, mode);                                      \
    }
OPEN_HOOK(open)
OPEN_HOOK(open64)

#define OPENAT_HOOK(name)                                                         \
    EXPORT int name(int dirfd, const char *path, int flags, ...)                    \
    {                                                                               \
        va_list ap;                                                                 \
        va_start(ap, flags);                                                        \
        int mode = mode_arg(flags, ap);                                             \
        va_end(ap);                                                                 \
        int fd = accel_open(path, flags);                                           \
        if (fd != -2)                                                               \
            return fd;                                                              \
        REAL(name);                                                                 \
        return real_##name(dirfd, path, flags, mode);                               \
    }
OPENAT_HOOK(openat)
OPENAT_HOOK(openat64)

/* the _FORTIFY_SOURCE entry points */
extern int __open_2(const char *path, int flags);
extern int __open64_2(const char *path, int flags);
extern int __openat_2(int dirfd, const char *path, int flags);
extern int __openat64_2(int dirfd, const char *path, int flags);
#define OPEN2_HOOK(name)                                                          \
    EXPORT int name(const char *path, int flags)                                    \
    {                                                                               \
        int fd = accel_open(path, flags);                                           \
        if (fd != -2)                                                               \
            return fd;                                                              \
        REAL(name);                                                                 \
        return real_##name(path, flags);                                            \
    }
OPEN2_HOOK(__open_2)
OPEN2_HOOK(__open64_2)
#define OPENAT2_HOOK(name)                                                        \
    EXPORT int name(int dirfd, const char *path, int flags)                         \
    {                                                                               \
        int fd = accel_open(path, flags);                                           \
        if (fd != -2)                                                               \
            return fd;                                                              \
        REAL(name);                                                                 \
        return real_##name(dirfd, path, flags);                                     \
    }
OPENAT2_HOOK(__openat_2)
OPENAT2_HOOK(__openat64_2)

/* ---- stat: the node is a character device, 261:N --------------------------------- */
#define STAT_HOOK(name, st_t)                                                     \
    EXPORT int name(const char *path, st_t *st)                                     \
    {                                                                               \
        int minor = xdna_accel_minor(path);                                         \
        if (minor >= 0) {                                                           \
            fake_stat(minor, (struct stat *)st);                                    \
            return 0;                                                               \
        }                                                                           \
        REAL(name);                                                                 \
        return real_##name(path, st);                                               \
    }
STAT_HOOK(stat, struct stat)
STAT_HOOK(stat64, struct stat64)
STAT_HOOK(lstat, struct stat)
STAT_HOOK(lstat64, struct stat64)

#define FSTAT_HOOK(name, st_t)                                                    \
    EXPORT int name(int fd, st_t *st)                                               \
    {                                                                               \
        int minor = xdna_accel_fd_minor(fd);                                        \
        if (minor >= 0) {                                                           \
            fake_stat(minor, (struct stat *)st);                                    \
            return 0;                                                               \
        }                                                                           \
        REAL(name);                                                                 \
        return real_##name(fd, st);                                                 \
    }
FSTAT_HOOK(fstat, struct stat)
FSTAT_HOOK(fstat64, struct stat64)

#define FSTATAT_HOOK(name, st_t)                                                  \
    EXPORT int name(int dirfd, const char *path, st_t *st, int flags)               \
    {                                                                               \
        int minor = (flags & AT_EMPTY_PATH) && !*path                       \
                        ? xdna_accel_fd_minor(dirfd) : xdna_accel_minor(path);      \
        if (minor >= 0) {                                                           \
            fake_stat(minor, (struct stat *)st);                                    \
            return 0;                                                               \
        }                                                                           \
        REAL(name);                                                                 \
        return real_##name(dirfd, path, st, flags);                                 \
    }
FSTATAT_HOOK(fstatat, struct stat)
FSTATAT_HOOK(fstatat64, struct stat64)

/* binaries built against glibc < 2.33 call the versioned __xstat family */
extern int __xstat(int ver, const char *path, struct stat *st);
extern int __xstat64(int ver, const char *path, struct stat64 *st);
extern int __lxstat(int ver, const char *path, struct stat *st);
extern int __lxstat64(int ver, const char *path, struct stat64 *st);
extern int __fxstat(int ver, int fd, struct stat *st);
extern int __fxstat64(int ver, int fd, struct stat64 *st);
#define XSTAT_HOOK(name, st_t)                                                    \
    EXPORT int name(int ver, const char *path, st_t *st)                            \
    {                                                                               \
        int minor = xdna_accel_minor(path);                                         \
        if (minor >= 0) {                                                           \
            fake_stat(minor, (struct stat *)st);                                    \
            return 0;                                                               \
        }                                                                           \
        REAL(name);                                                                 \
        return real_##name(ver, path, st);                                          \
    }
XSTAT_HOOK(__xstat, struct stat)
XSTAT_HOOK(__xstat64, struct stat64)
XSTAT_HOOK(__lxstat, struct stat)
XSTAT_HOOK(__lxstat64, struct stat64)
#define FXSTAT_HOOK(name, st_t)                                                   \
    EXPORT int name(int ver, int fd, st_t *st)                                      \
    {                                                                               \
        int minor = xdna_accel_fd_minor(fd);                                        \
        if (minor >= 0) {                                                           \
            fake_stat(minor, (struct stat *)st);                                    \
            return 0;                                                               \
        }                                                                           \
        REAL(name);                                                                 \
        return real_##name(ver, fd, st);                                            \
    }
FXSTAT_HOOK(__fxstat, struct stat)
FXSTAT_HOOK(__fxstat64, struct stat64)

/* statx (glibc 2.28+; coreutils' stat, Rust's fs::metadata): the same fake stat in the
 * statx layout, the basic fields marked valid. */
EXPORT int statx(int dirfd, const char *path, int flags, unsigned int mask, struct statx *stx)
{
    int m = (flags & AT_EMPTY_PATH) && path && !*path ? xdna_accel_fd_minor(dirfd)
                                                      : xdna_accel_minor(path);
    if (m >= 0) {
        struct stat st;
        fake_stat(m, &st);
        memset(stx, 0, sizeof(*stx));
        stx->stx_mask = STATX_BASIC_STATS;
        stx->stx_mode = (uint16_t)st.st_mode;
        stx->stx_nlink = (uint32_t)st.st_nlink;
        stx->stx_ino = st.st_ino;
        stx->stx_blksize = (uint32_t)st.st_blksize;
        stx->stx_rdev_major = major(st.st_rdev);
        stx->stx_rdev_minor = minor(st.st_rdev);
        stx->stx_dev_major = major(st.st_dev);
        stx->stx_dev_minor = minor(st.st_dev);
        return 0;
    }
    REAL(statx);
    return real_statx(dirfd, path, flags, mask, stx);
}

EXPORT int access(const char *path, int mode)
{
    if (xdna_accel_minor(path) >= 0)
        return (mode & X_OK) ? (errno = EACCES, -1) : 0;
    REAL(access);
    return real_access(path, mode);
}

/* ---- the fd: ioctl, mmap, close, dup ------------------------------------------- */
EXPORT int ioctl(int fd, unsigned long req, ...)
{
    va_list ap;
    va_start(ap, req);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    if (xdna_accel_fd_minor(fd) >= 0)
        return xdna_accel_ioctl(fd, req, arg);
    REAL(ioctl);
    return real_ioctl(fd, req, arg);
}

EXPORT void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    if (!(flags & MAP_ANONYMOUS) && xdna_accel_fd_minor(fd) >= 0)
        return xdna_accel_mmap(addr, len, prot, flags, fd, off);
    REAL(mmap);
    return real_mmap(addr, len, prot, flags, fd, off);
}

EXPORT void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off64_t off)
{
    if (!(flags & MAP_ANONYMOUS) && xdna_accel_fd_minor(fd) >= 0)
        return xdna_accel_mmap(addr, len, prot, flags, fd, (off_t)off);
    REAL(mmap64);
    return real_mmap64(addr, len, prot, flags, fd, off);
}

EXPORT int close(int fd)
{
    REAL(close);
    bool ours = xdna_accel_fd_minor(fd) >= 0;
    int rc = real_close(fd);
    if (ours)
        xdna_accel_forget(fd);
    return rc;
}

EXPORT int dup(int fd)
{
    REAL(dup);
    int nfd = real_dup(fd);
    if (nfd >= 0)
        xdna_accel_dup(fd, nfd);
    return nfd;
}

EXPORT int dup2(int fd, int nfd)
{
    REAL(dup2);
    int rc = real_dup2(fd, nfd);
    if (rc >= 0)
        xdna_accel_dup(fd, rc);
    return rc;
}

EXPORT int dup3(int fd, int nfd, int flags)
{
    REAL(dup3);
    int rc = real_dup3(fd, nfd, flags);
    if (rc >= 0)
        xdna_accel_dup(fd, rc);
    return rc;
}

#define FCNTL_HOOK(name)                                                          \
    EXPORT int name(int fd, int cmd, ...)                                           \
    {                                                                               \
        va_list ap;                                                                 \
        va_start(ap, cmd);                                                          \
        void *arg = va_arg(ap, void *);                                             \
        va_end(ap);                                                                 \
        REAL(name);                                                                 \
        int rc = real_##name(fd, cmd, arg);                                         \
        if (rc >= 0 && (cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC))                  \
            xdna_accel_dup(fd, rc);                                                 \
        return rc;                                                                  \
    }
FCNTL_HOOK(fcntl)
FCNTL_HOOK(fcntl64)
