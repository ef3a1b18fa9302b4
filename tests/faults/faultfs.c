/*
 * faultfs: storage faults injected at the C library boundary, for the fault tests
 * (tests/it/faults.rs). Loaded into the daemon with LD_PRELOAD; the daemon itself is the
 * release or debug binary, unchanged. Only files whose path contains FAULTFS_MATCH are
 * touched, and only while a mode file exists in the FAULTFS_CONTROL directory, so a
 * test turns a fault on and off at run time by creating and removing a file:
 *
 *   enospc     writes, extensions and allocations fail with ENOSPC (the disk is full)
 *   erofs      opening for writing, writes and syncs fail with EROFS (remounted read-only)
 *   eio_fsync  fsync and fdatasync fail with EIO (the device lost the data)
 *
 * Built by the test harness with the system C compiler (cc -shared -fPIC).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

static int active(const char *mode) {
    const char *dir = getenv("FAULTFS_CONTROL");
    char path[PATH_MAX];
    if (dir == NULL) {
        return 0;
    }
    snprintf(path, sizeof path, "%s/%s", dir, mode);
    return access(path, F_OK) == 0;
}

static int path_matches(const char *path) {
    const char *match = getenv("FAULTFS_MATCH");
    return match != NULL && *match != '\0' && path != NULL && strstr(path, match) != NULL;
}

static int fd_matches(int fd) {
    char link[64];
    char path[PATH_MAX];
    ssize_t n;
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    n = readlink(link, path, sizeof path - 1);
    if (n < 0) {
        return 0;
    }
    path[n] = '\0';
    return path_matches(path);
}

/* Whether a write to `fd` fails now; errno is set when it does. */
static int write_fails(int fd) {
    if (active("enospc") && fd_matches(fd)) {
        errno = ENOSPC;
        return 1;
    }
    if (active("erofs") && fd_matches(fd)) {
        errno = EROFS;
        return 1;
    }
    return 0;
}

static int sync_fails(int fd) {
    if (active("eio_fsync") && fd_matches(fd)) {
        errno = EIO;
        return 1;
    }
    if (active("erofs") && fd_matches(fd)) {
        errno = EROFS;
        return 1;
    }
    return 0;
}

static int open_fails(const char *path, int flags) {
    if ((flags & (O_WRONLY | O_RDWR | O_CREAT | O_TRUNC)) && active("erofs") &&
        path_matches(path)) {
        errno = EROFS;
        return 1;
    }
    return 0;
}

#define REAL(name)                                                                         \
    static __typeof__(name) *real_##name;                                                  \
    if (real_##name == NULL) {                                                             \
        real_##name = (__typeof__(name) *)dlsym(RTLD_NEXT, #name);                         \
    }

ssize_t write(int fd, const void *buf, size_t count) {
    REAL(write);
    if (write_fails(fd)) {
        return -1;
    }
    return real_write(fd, buf, count);
}

ssize_t pwrite(int fd, const void *buf, size_t count, off_t offset) {
    REAL(pwrite);
    if (write_fails(fd)) {
        return -1;
    }
    return real_pwrite(fd, buf, count, offset);
}

ssize_t pwrite64(int fd, const void *buf, size_t count, off64_t offset) {
    REAL(pwrite64);
    if (write_fails(fd)) {
        return -1;
    }
    return real_pwrite64(fd, buf, count, offset);
}

int ftruncate(int fd, off_t length) {
    REAL(ftruncate);
    if (write_fails(fd)) {
        return -1;
    }
    return real_ftruncate(fd, length);
}

int ftruncate64(int fd, off64_t length) {
    REAL(ftruncate64);
    if (write_fails(fd)) {
        return -1;
    }
    return real_ftruncate64(fd, length);
}

int posix_fallocate(int fd, off_t offset, off_t len) {
    REAL(posix_fallocate);
    if (write_fails(fd)) {
        return errno;
    }
    return real_posix_fallocate(fd, offset, len);
}

int fallocate(int fd, int mode, off_t offset, off_t len) {
    REAL(fallocate);
    if (write_fails(fd)) {
        return -1;
    }
    return real_fallocate(fd, mode, offset, len);
}

int fsync(int fd) {
    REAL(fsync);
    if (sync_fails(fd)) {
        return -1;
    }
    return real_fsync(fd);
}

int fdatasync(int fd) {
    REAL(fdatasync);
    if (sync_fails(fd)) {
        return -1;
    }
    return real_fdatasync(fd);
}

static mode_t mode_arg(int flags, va_list ap) {
    if (flags & (O_CREAT | __O_TMPFILE)) {
        return (mode_t)va_arg(ap, int);
    }
    return 0;
}

int open(const char *path, int flags, ...) {
    va_list ap;
    mode_t mode;
    REAL(open);
    va_start(ap, flags);
    mode = mode_arg(flags, ap);
    va_end(ap);
    if (open_fails(path, flags)) {
        return -1;
    }
    return real_open(path, flags, mode);
}

int open64(const char *path, int flags, ...) {
    va_list ap;
    mode_t mode;
    REAL(open64);
    va_start(ap, flags);
    mode = mode_arg(flags, ap);
    va_end(ap);
    if (open_fails(path, flags)) {
        return -1;
    }
    return real_open64(path, flags, mode);
}

int openat(int dirfd, const char *path, int flags, ...) {
    va_list ap;
    mode_t mode;
    REAL(openat);
    va_start(ap, flags);
    mode = mode_arg(flags, ap);
    va_end(ap);
    if (open_fails(path, flags)) {
        return -1;
    }
    return real_openat(dirfd, path, flags, mode);
}

int openat64(int dirfd, const char *path, int flags, ...) {
    va_list ap;
    mode_t mode;
    REAL(openat64);
    va_start(ap, flags);
    mode = mode_arg(flags, ap);
    va_end(ap);
    if (open_fails(path, flags)) {
        return -1;
    }
    return real_openat64(dirfd, path, flags, mode);
}
