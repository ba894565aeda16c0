/* fault.c - the wrappers behind fault.h.
 *
 * Design: one armed fault at a time, in a few atomics, so the wrappers are
 * safe from any thread and cost one atomic load when disarmed. A forked
 * child disarms itself (pthread_atfork), so worker processes run normally.
 * The live-allocation count pairs each successful wrapped allocation with
 * its free; the library and the fault tests allocate only through the
 * wrappers (futures too: CF_FUTURE_ALLOC=malloc, set before the first),
 * so the count returning to its start means nothing leaked.
 */
#define _GNU_SOURCE
#include "fault.h"

#include <errno.h>
#include <execinfo.h>
#include <poll.h>
#include <pthread.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <stdarg.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

static atomic_uint armed_mask; /* 0: disarmed */
static atomic_long calls;
static atomic_long nth;
static atomic_int mode;
static atomic_int err;
static atomic_bool fired;
static atomic_long live;

static void disarm_in_child(void)
{
    atomic_store(&armed_mask, 0);
}

__attribute__((constructor)) static void fault_init(void)
{
    /* Futures from malloc, so the live count covers them too (the slab
     * allocator maps its memory with mmap, which is not wrapped). */
    setenv("CF_FUTURE_ALLOC", "malloc", 0);
    pthread_atfork(NULL, NULL, disarm_in_child);
}

void fault_arm(unsigned mask, long n, enum fault_mode m, int e)
{
    atomic_store(&armed_mask, 0);
    atomic_store(&calls, 0);
    atomic_store(&nth, n);
    atomic_store(&mode, (int)m);
    atomic_store(&err, e);
    atomic_store(&fired, false);
    atomic_store(&armed_mask, mask);
    if (getenv("CF_FAULT_BACKTRACE"))
        fprintf(stderr, "fault: class %#x, call %ld, mode %d, errno %d\n",
                mask, n, (int)m, e);
}

long fault_disarm(void)
{
    atomic_store(&armed_mask, 0);
    return atomic_load(&calls);
}

bool fault_fired(void)
{
    return atomic_load(&fired);
}

long fault_live_allocs(void)
{
    return atomic_load(&live);
}

/* What the call of class `cls` should do: 0 pass, 1 fail, 2 shorten. */
static int decide(unsigned cls)
{
    if (!(atomic_load_explicit(&armed_mask, memory_order_relaxed) & cls))
        return 0;
    long i = atomic_fetch_add(&calls, 1) + 1;
    long n = atomic_load(&nth);
    int m = atomic_load(&mode);
    bool from = m == FAULT_FROM || m == FAULT_SHORT_FROM;
    bool hit = from ? i >= n : i == n;
    if (!hit)
        return 0;
    if (!atomic_exchange(&fired, true) && getenv("CF_FAULT_BACKTRACE")) {
        /* Where the first injected fault hit, for diagnosing a failure:
         * CF_FAULT_BACKTRACE=1 ./test_fault_x <test>. */
        void *frames[32];
        int k = backtrace(frames, 32);
        backtrace_symbols_fd(frames, k, 2);
    }
    return m == FAULT_SHORT || m == FAULT_SHORT_FROM ? 2 : 1;
}

static int fail_errno(void)
{
    errno = atomic_load(&err);
    return -1;
}

/* ------------------------------------------------------------------------ */
/* Memory                                                                   */

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
void __real_free(void *p);

void *__wrap_malloc(size_t n)
{
    if (decide(FAULT_ALLOC)) {
        errno = ENOMEM;
        return NULL;
    }
    void *p = __real_malloc(n);
    if (p)
        atomic_fetch_add(&live, 1);
    return p;
}

void *__wrap_calloc(size_t n, size_t size)
{
    if (decide(FAULT_ALLOC)) {
        errno = ENOMEM;
        return NULL;
    }
    void *p = __real_calloc(n, size);
    if (p)
        atomic_fetch_add(&live, 1);
    return p;
}

void *__wrap_realloc(void *p, size_t n)
{
    if (decide(FAULT_ALLOC)) {
        errno = ENOMEM;
        return NULL;
    }
    void *q = __real_realloc(p, n);
    if (!p && q)
        atomic_fetch_add(&live, 1);
    else if (p && !q && n == 0)
        atomic_fetch_sub(&live, 1);
    return q;
}

void *__real_aligned_alloc(size_t align, size_t n);
void *__wrap_aligned_alloc(size_t align, size_t n)
{
    if (decide(FAULT_ALLOC)) {
        errno = ENOMEM;
        return NULL;
    }
    void *p = __real_aligned_alloc(align, n);
    if (p)
        atomic_fetch_add(&live, 1);
    return p;
}

int __real_posix_memalign(void **out, size_t align, size_t n);
int __wrap_posix_memalign(void **out, size_t align, size_t n)
{
    if (decide(FAULT_ALLOC))
        return ENOMEM;
    int rc = __real_posix_memalign(out, align, n);
    if (rc == 0)
        atomic_fetch_add(&live, 1);
    return rc;
}

void __wrap_free(void *p)
{
    if (p)
        atomic_fetch_sub(&live, 1);
    __real_free(p);
}

/* ------------------------------------------------------------------------ */
/* Threads and processes                                                    */

int __real_pthread_create(pthread_t *t, const pthread_attr_t *a,
                          void *(*fn)(void *), void *arg);
int __wrap_pthread_create(pthread_t *t, const pthread_attr_t *a,
                          void *(*fn)(void *), void *arg)
{
    if (decide(FAULT_THREAD))
        return atomic_load(&err);
    return __real_pthread_create(t, a, fn, arg);
}

pid_t __real_fork(void);
pid_t __wrap_fork(void)
{
    if (decide(FAULT_PROC))
        return fail_errno();
    return __real_fork();
}

int __real_posix_spawn(pid_t *pid, const char *path,
                       const posix_spawn_file_actions_t *fa,
                       const posix_spawnattr_t *attr, char *const argv[],
                       char *const envp[]);
int __wrap_posix_spawn(pid_t *pid, const char *path,
                       const posix_spawn_file_actions_t *fa,
                       const posix_spawnattr_t *attr, char *const argv[],
                       char *const envp[])
{
    if (decide(FAULT_PROC))
        return atomic_load(&err);
    return __real_posix_spawn(pid, path, fa, attr, argv, envp);
}

/* ------------------------------------------------------------------------ */
/* Descriptors                                                              */

int __real_pipe(int fds[2]);
int __wrap_pipe(int fds[2])
{
    if (decide(FAULT_FD))
        return fail_errno();
    return __real_pipe(fds);
}

int __real_pipe2(int fds[2], int flags);
int __wrap_pipe2(int fds[2], int flags)
{
    if (decide(FAULT_FD))
        return fail_errno();
    return __real_pipe2(fds, flags);
}

int __real_socketpair(int domain, int type, int protocol, int fds[2]);
int __wrap_socketpair(int domain, int type, int protocol, int fds[2])
{
    if (decide(FAULT_FD))
        return fail_errno();
    return __real_socketpair(domain, type, protocol, fds);
}

int __real_eventfd(unsigned int initval, int flags);
int __wrap_eventfd(unsigned int initval, int flags)
{
    if (decide(FAULT_FD))
        return fail_errno();
    return __real_eventfd(initval, flags);
}

/* ------------------------------------------------------------------------ */
/* I/O                                                                      */

ssize_t __real_read(int fd, void *buf, size_t n);
ssize_t __wrap_read(int fd, void *buf, size_t n)
{
    switch (decide(FAULT_READ)) {
    case 1:
        return fail_errno();
    case 2:
        return __real_read(fd, buf, n ? 1 : 0);
    }
    return __real_read(fd, buf, n);
}

ssize_t __real_recv(int fd, void *buf, size_t n, int flags);
ssize_t __wrap_recv(int fd, void *buf, size_t n, int flags)
{
    switch (decide(FAULT_RECV)) {
    case 1:
        return fail_errno();
    case 2:
        return __real_recv(fd, buf, n ? 1 : 0, flags);
    }
    return __real_recv(fd, buf, n, flags);
}

/* Shortens a message to its first byte (in a copy of the header). */
static struct msghdr one_byte(const struct msghdr *msg, struct iovec *iov)
{
    struct msghdr m = *msg;
    for (size_t i = 0; i < msg->msg_iovlen; i++) {
        if (msg->msg_iov[i].iov_len) {
            iov->iov_base = msg->msg_iov[i].iov_base;
            iov->iov_len = 1;
            m.msg_iov = iov;
            m.msg_iovlen = 1;
            break;
        }
    }
    return m;
}

ssize_t __real_recvmsg(int fd, struct msghdr *msg, int flags);
ssize_t __wrap_recvmsg(int fd, struct msghdr *msg, int flags)
{
    switch (decide(FAULT_RECV)) {
    case 1:
        return fail_errno();
    case 2: {
        struct iovec iov;
        struct msghdr m = one_byte(msg, &iov);
        ssize_t r = __real_recvmsg(fd, &m, flags);
        msg->msg_flags = m.msg_flags;
        msg->msg_controllen = m.msg_controllen;
        return r;
    }
    }
    return __real_recvmsg(fd, msg, flags);
}

int __real_poll(struct pollfd *fds, nfds_t n, int timeout);
int __wrap_poll(struct pollfd *fds, nfds_t n, int timeout)
{
    if (decide(FAULT_POLL) == 1)
        return fail_errno();
    return __real_poll(fds, n, timeout);
}

ssize_t __real_write(int fd, const void *buf, size_t n);
ssize_t __wrap_write(int fd, const void *buf, size_t n)
{
    switch (decide(FAULT_WRITE)) {
    case 1:
        return fail_errno();
    case 2:
        return __real_write(fd, buf, n ? 1 : 0);
    }
    return __real_write(fd, buf, n);
}

ssize_t __real_send(int fd, const void *buf, size_t n, int flags);
ssize_t __wrap_send(int fd, const void *buf, size_t n, int flags)
{
    switch (decide(FAULT_SEND)) {
    case 1:
        return fail_errno();
    case 2:
        return __real_send(fd, buf, n ? 1 : 0, flags);
    }
    return __real_send(fd, buf, n, flags);
}

ssize_t __real_sendmsg(int fd, const struct msghdr *msg, int flags);
ssize_t __wrap_sendmsg(int fd, const struct msghdr *msg, int flags)
{
    switch (decide(FAULT_SEND)) {
    case 1:
        return fail_errno();
    case 2: {
        struct iovec iov;
        struct msghdr m = one_byte(msg, &iov);
        return __real_sendmsg(fd, &m, flags);
    }
    }
    return __real_sendmsg(fd, msg, flags);
}

/* ------------------------------------------------------------------------ */
/* Kernel features                                                          */

static atomic_bool no_pidfd;

void fault_without_pidfd(bool on)
{
    atomic_store(&no_pidfd, on);
}

long __real_syscall(long n, ...);
long __wrap_syscall(long n, ...)
{
    va_list ap;
    va_start(ap, n);
    long a[6];
    for (int i = 0; i < 6; i++)
        a[i] = va_arg(ap, long);
    va_end(ap);
#if defined(SYS_pidfd_open)
    if (atomic_load(&no_pidfd) &&
        (n == SYS_pidfd_open || n == SYS_pidfd_send_signal)) {
        errno = ENOSYS; /* a kernel before 5.3, or valgrind */
        return -1;
    }
#endif
    return __real_syscall(n, a[0], a[1], a[2], a[3], a[4], a[5]);
}
