/* wakefd_posix.c - the wake-up descriptor (wakefd.h): eventfd on Linux, a
 * pipe elsewhere.
 *
 * Design: an eventfd is one descriptor with a counter; a signal adds one,
 * a clear reads (and so zeroes) it. The pipe fallback writes one byte per
 * signal and a clear reads until the pipe is empty. A signal that finds
 * the pipe full (EAGAIN) is dropped: the pipe is readable already, which
 * is all a signal promises.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "wakefd.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <unistd.h>

#include "cfutures.h"

#if defined(__linux__)
#include <sys/eventfd.h>
#endif

static int errno_code(int e)
{
    return e == EMFILE || e == ENFILE ? CF_EAGAIN
           : e == ENOMEM              ? CF_ENOMEM
                                      : CF_ESYS;
}

static int open_pipe(cf__wakefd *w)
{
    int fds[2];
#if defined(__linux__)
    if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0)
        return errno_code(errno);
#else
    if (pipe(fds) != 0)
        return errno_code(errno);
    for (int i = 0; i < 2; i++) {
        int fl = fcntl(fds[i], F_GETFL);
        if (fl < 0 || fcntl(fds[i], F_SETFL, fl | O_NONBLOCK) != 0 ||
            fcntl(fds[i], F_SETFD, FD_CLOEXEC) != 0) {
            int e = errno;
            close(fds[0]);
            close(fds[1]);
            return errno_code(e);
        }
    }
#endif
    w->read_fd = fds[0];
    w->write_fd = fds[1];
    return CF_OK;
}

int cf__wakefd_open(cf__wakefd *w, bool use_pipe)
{
#if defined(__linux__)
    if (!use_pipe) {
        int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (fd >= 0) {
            w->read_fd = w->write_fd = fd;
            return CF_OK;
        }
        /* A kernel built without eventfd: fall back to a pipe. */
        if (errno != ENOSYS && errno != EINVAL)
            return errno_code(errno);
    }
#else
    (void)use_pipe;
#endif
    return open_pipe(w);
}

void cf__wakefd_close(cf__wakefd *w)
{
    if (w->write_fd != w->read_fd)
        close(w->write_fd);
    close(w->read_fd);
    w->read_fd = w->write_fd = -1;
}

void cf__wakefd_signal(const cf__wakefd *w)
{
    ssize_t r;
    if (w->write_fd == w->read_fd) {
        uint64_t one = 1;
        do
            r = write(w->write_fd, &one, sizeof one);
        while (r < 0 && errno == EINTR);
    } else {
        char byte = 1;
        do
            r = write(w->write_fd, &byte, 1);
        while (r < 0 && errno == EINTR);
    }
    (void)r; /* EAGAIN: readable already */
}

void cf__wakefd_clear(const cf__wakefd *w)
{
    if (w->write_fd == w->read_fd) {
        uint64_t v;
        while (read(w->read_fd, &v, sizeof v) < 0 && errno == EINTR)
            ;
        return;
    }
    char buf[64];
    for (;;) {
        ssize_t r = read(w->read_fd, buf, sizeof buf);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < (ssize_t)sizeof buf)
            return; /* empty (EAGAIN), or read the last bytes */
    }
}
