/* process_posix.c - worker processes on POSIX (Linux first); see process.h.
 *
 * Design: spawning happens on the process pool's manager thread, because
 * PR_SET_PDEATHSIG fires when the *thread* that created the child ends: the
 * manager outlives its workers, a caller's short-lived thread might not.
 * Exec'd workers start through posix_spawn (glibc uses CLONE_VFORK: no
 * copy of the parent's memory, nothing runs between fork and exec but the
 * file actions), with an empty signal mask and default dispositions, the
 * channel's descriptors placed where cf__exec_spec says and every other
 * descriptor closed. Finding code by address is code_ref_posix.c.
 */
#include "process.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cfutures.h"

#if defined(__linux__)
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#endif

extern char **environ;

static int errno_to_cf(int e)
{
    switch (e) {
    case EAGAIN:
    case EMFILE:
    case ENFILE:
        return CF_EAGAIN;
    case ENOMEM:
        return CF_ENOMEM;
    default:
        return CF_ESYS;
    }
}

void cf__fd_close(int fd)
{
    /* Linux always releases the descriptor, even on EINTR: never retry. */
    if (fd >= 0)
        close(fd);
}

/* ------------------------------------------------------------------------ */
/* Spawning                                                                 */

int cf__proc_self_exe(char **out)
{
    /* Resolved once per pool rather than exec'ing "/proc/self/exe" itself:
     * valgrind reports the client program here, so workers of a program
     * run under valgrind start the program, not the tool. */
    char buf[4096];
    ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
    if (n <= 0 || (size_t)n >= sizeof buf - 1)
        return CF_ESYS;
    buf[n] = '\0';
    /* malloc, not strdup: the fault tests wrap malloc to count memory. */
    char *s = malloc((size_t)n + 1);
    if (!s)
        return CF_ENOMEM;
    memcpy(s, buf, (size_t)n + 1);
    *out = s;
    return CF_OK;
}

int cf__pidfd_open(pid_t pid)
{
#if defined(__linux__) && defined(SYS_pidfd_open)
    int fd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (fd >= 0) {
        /* pidfds are close-on-exec from birth. */
        return fd;
    }
#endif
    (void)pid;
    return -1;
}

/* ------------------------------------------------------------------------ */
/* Channels                                                                 */

static int set_nonblocking(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0)
        return errno_to_cf(errno);
    return CF_OK;
}

static int open_socketpair(cf__channel *c)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        return errno_to_cf(errno);
    /* Large buffers: fewer wake-ups for big payloads. Best effort. */
    int size = 1 << 20;
    for (int i = 0; i < 2; i++) {
        setsockopt(sv[i], SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
        setsockopt(sv[i], SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
    }
    *c = (cf__channel){sv[0], sv[0], sv[1], sv[1], true};
    return CF_OK;
}

static int open_pipes(cf__channel *c)
{
    int to_child[2], to_parent[2];
    if (pipe2(to_child, O_CLOEXEC) != 0)
        return errno_to_cf(errno);
    if (pipe2(to_parent, O_CLOEXEC) != 0) {
        int e = errno;
        close(to_child[0]);
        close(to_child[1]);
        return errno_to_cf(e);
    }
#if defined(F_SETPIPE_SZ)
    /* Larger pipes: fewer wake-ups for big payloads. Best effort. */
    fcntl(to_child[1], F_SETPIPE_SZ, 1 << 20);
    fcntl(to_parent[1], F_SETPIPE_SZ, 1 << 20);
#endif
    *c = (cf__channel){to_parent[0], to_child[1], to_child[0], to_parent[1],
                       false};
    return CF_OK;
}

int cf__channel_open(bool pipes, cf__channel *out)
{
    cf__channel c;
    int rc = pipes ? open_pipes(&c) : open_socketpair(&c);
    if (rc != CF_OK)
        return rc;
    rc = set_nonblocking(c.parent_read);
    if (rc == CF_OK && c.parent_write != c.parent_read)
        rc = set_nonblocking(c.parent_write);
    if (rc != CF_OK) {
        cf__channel_close(&c);
        return rc;
    }
    *out = c;
    return CF_OK;
}

/* Closes both ends of a side (once if they are one socket). */
static void close_pair(int *r, int *w)
{
    if (*w != *r)
        cf__fd_close(*w);
    cf__fd_close(*r);
    *r = *w = -1;
}

void cf__channel_close_child(cf__channel *c)
{
    close_pair(&c->child_read, &c->child_write);
}

void cf__channel_close(cf__channel *c)
{
    close_pair(&c->parent_read, &c->parent_write);
    cf__channel_close_child(c);
}

void cf__proc_from_channel(cf__channel *c, pid_t pid, cf__proc *out)
{
    out->pid = pid;
    out->fd = c->parent_read;
    out->write_fd = c->parent_write;
    out->socket = c->socket;
    out->pidfd = cf__pidfd_open(pid);
    c->parent_read = c->parent_write = -1;
}

/* ------------------------------------------------------------------------ */
/* Shared memory                                                            */

int cf__shm_create(size_t size, cf__shm *out)
{
    *out = (cf__shm){-1, NULL, 0};
#if defined(__linux__) && defined(MFD_CLOEXEC)
    int fd = memfd_create("cfutures-pool", MFD_CLOEXEC);
    if (fd < 0)
        return errno_to_cf(errno);
    /* Kept above the numbers a spawned worker's descriptors are placed
     * at, so placing them never overwrites it. */
    int high = fcntl(fd, F_DUPFD_CLOEXEC, CF__HIGH_FD);
    int e = errno;
    close(fd);
    if (high < 0)
        return errno_to_cf(e);
    void *p = MAP_FAILED;
    if (ftruncate(high, (off_t)size) == 0)
        p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, high, 0);
    if (p == MAP_FAILED) {
        e = errno;
        close(high);
        return errno_to_cf(e);
    }
    *out = (cf__shm){high, p, size};
    return CF_OK;
#else
    (void)size;
    return CF_ENOTSUP;
#endif
}

void cf__shm_destroy(cf__shm *shm)
{
    if (shm->base)
        munmap(shm->base, shm->size);
    cf__fd_close(shm->fd);
    *shm = (cf__shm){-1, NULL, 0};
}

cf__shm cf__shm_map(int fd)
{
    struct stat st;
    cf__shm shm = {-1, NULL, 0};
    if (fd < 0 || fstat(fd, &st) != 0 || st.st_size <= 0)
        return shm;
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE,
                   MAP_SHARED, fd, 0);
    if (p != MAP_FAILED) {
        shm.base = p; /* the mapping lives as long as the process */
        shm.size = (size_t)st.st_size;
    }
    return shm;
}

/* ------------------------------------------------------------------------ */
/* Spawning                                                                 */

/* environ plus `var` (any inherited variable of the same name replaced). */
static char **child_environ(const char *var)
{
    size_t n = 0;
    while (environ && environ[n])
        n++;
    char **env = malloc((n + 2) * sizeof *env);
    if (!env)
        return NULL;
    const char *eq = var ? strchr(var, '=') : NULL;
    size_t prefix = eq ? (size_t)(eq - var) + 1 : 0;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (!prefix || strncmp(environ[i], var, prefix) != 0)
            env[k++] = environ[i];
    if (var)
        env[k++] = (char *)var;
    env[k] = NULL;
    return env;
}

/* The file actions that give the child `fds` at fd_base + i from the
 * temporary copies `high` (above every target, so no placement overwrites
 * a source), keep `keep_fds`, and close the rest. */
static int file_actions(posix_spawn_file_actions_t *fa,
                        const cf__exec_spec *spec, const int *high)
{
    int rc = posix_spawn_file_actions_init(fa);
    if (rc != 0)
        return CF_ENOMEM;
    /* dup2 onto itself clears close-on-exec (glibc >= 2.29). */
    for (size_t i = 0; rc == 0 && i < spec->n_keep_fds; i++)
        rc = posix_spawn_file_actions_adddup2(fa, spec->keep_fds[i],
                                              spec->keep_fds[i]);
    for (int i = 0; rc == 0 && i < spec->n_fds; i++)
        if (high[i] >= 0)
            rc = posix_spawn_file_actions_adddup2(fa, high[i],
                                                  spec->fd_base + i);
#if defined(__GLIBC__) && (__GLIBC__ > 2 || __GLIBC_MINOR__ >= 34)
    /* Descriptors the caller left inheritable stay out of the worker. */
    rc = rc ? rc : posix_spawn_file_actions_addclosefrom_np(
                       fa, spec->fd_base + spec->n_fds);
#endif
    if (rc != 0) {
        posix_spawn_file_actions_destroy(fa);
        return errno_to_cf(rc);
    }
    return CF_OK;
}

static int spawn_attrs(posix_spawnattr_t *attr)
{
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    if (posix_spawnattr_init(attr) != 0)
        return CF_ENOMEM;
    /* The manager thread blocks every signal; the worker must not inherit
     * that mask, nor a disposition the caller set to "ignore". */
    int rc = posix_spawnattr_setflags(attr, POSIX_SPAWN_SETSIGMASK |
                                                POSIX_SPAWN_SETSIGDEF);
    rc = rc ? rc : posix_spawnattr_setsigmask(attr, &none);
    rc = rc ? rc : posix_spawnattr_setsigdefault(attr, &all);
    if (rc != 0) {
        posix_spawnattr_destroy(attr);
        return errno_to_cf(rc);
    }
    return CF_OK;
}

enum { MAX_PLACED_FDS = 8 };

int cf__proc_spawn_exec(const cf__exec_spec *spec, pid_t *pid)
{
    if (spec->n_fds < 0 || spec->n_fds > MAX_PLACED_FDS || spec->fd_base < 3)
        return CF_EINVAL;
    for (size_t i = 0; i < spec->n_keep_fds; i++)
        if (spec->keep_fds[i] < 0 || spec->keep_fds[i] >= spec->fd_base)
            return CF_EINVAL;
    int high[MAX_PLACED_FDS];
    int rc = CF_OK;
    for (int i = 0; i < spec->n_fds; i++)
        high[i] = -1;
    for (int i = 0; rc == CF_OK && i < spec->n_fds; i++) {
        if (spec->fds[i] < 0)
            continue;
        high[i] = fcntl(spec->fds[i], F_DUPFD_CLOEXEC,
                        spec->fd_base + spec->n_fds);
        if (high[i] < 0)
            rc = errno_to_cf(errno);
    }
    char **env = rc == CF_OK ? child_environ(spec->env_var) : NULL;
    if (rc == CF_OK && !env)
        rc = CF_ENOMEM;
    posix_spawnattr_t attr;
    posix_spawn_file_actions_t fa;
    if (rc == CF_OK && (rc = spawn_attrs(&attr)) == CF_OK) {
        if ((rc = file_actions(&fa, spec, high)) == CF_OK) {
            char *default_argv[] = {(char *)spec->exe, NULL};
            int err = posix_spawn(pid, spec->exe, &fa, &attr,
                                  spec->argv ? spec->argv : default_argv,
                                  env);
            rc = err ? errno_to_cf(err) : CF_OK;
            posix_spawn_file_actions_destroy(&fa);
        }
        posix_spawnattr_destroy(&attr);
    }
    free(env);
    for (int i = 0; i < spec->n_fds; i++)
        cf__fd_close(high[i]);
    return rc;
}

/* Closes every descriptor from `from` up that is not in `keep`. */
static void close_others(const int *keep, int n, int from)
{
    int top = from - 1;
    for (int i = 0; i < n; i++)
        top = keep[i] > top ? keep[i] : top;
    for (int fd = from; fd <= top; fd++) {
        bool kept = false;
        for (int i = 0; i < n && !kept; i++)
            kept = keep[i] == fd;
        if (!kept)
            close(fd);
    }
#if defined(__linux__) && defined(SYS_close_range)
    if (syscall(SYS_close_range, (unsigned)top + 1, ~0u, 0u) == 0)
        return;
#endif
    long max = sysconf(_SC_OPEN_MAX);
    for (int fd = top + 1; fd < (max > 0 ? max : 1024); fd++)
        close(fd);
}

void cf__keep_only_fds(const int *keep, int n, int from)
{
    close_others(keep, n, from < 3 ? 3 : from);
    for (int i = 0; i < n; i++) {
        int fl = keep[i] >= 0 ? fcntl(keep[i], F_GETFD) : -1;
        if (fl >= 0)
            fcntl(keep[i], F_SETFD, fl | FD_CLOEXEC);
    }
}

void cf__unblock_signals(void)
{
    sigset_t none;
    sigemptyset(&none);
    pthread_sigmask(SIG_SETMASK, &none, NULL);
}

int cf__proc_spawn_fork(const cf__channel *ch,
                        int (*child_main)(const cf__channel *ch, void *ctx),
                        void *ctx, pid_t *pid)
{
    pid_t child = fork();
    if (child < 0)
        return errno_to_cf(errno);
    if (child == 0) {
        cf__unblock_signals();
        int keep[] = {ch->child_read, ch->child_write};
        close_others(keep, 2, 3);
        cf__channel mine = *ch;
        mine.parent_read = mine.parent_write = -1;
        _exit(child_main(&mine, ctx)); /* mappings are inherited */
    }
    *pid = child;
    return CF_OK;
}

void cf__proc_signal(const cf__proc *p, int sig)
{
    /* Through the pidfd when there is one: it cannot hit a recycled pid. */
#if defined(__linux__) && defined(SYS_pidfd_send_signal)
    if (p->pidfd >= 0 &&
        syscall(SYS_pidfd_send_signal, p->pidfd, sig, NULL, 0) == 0)
        return;
#endif
    if (p->pid > 0)
        kill(p->pid, sig);
}

void cf__proc_forget(cf__proc *p)
{
    close_pair(&p->fd, &p->write_fd);
    cf__fd_close(p->pidfd);
    p->pidfd = -1;
    p->pid = -1;
}

bool cf__proc_is_child(pid_t pid)
{
    siginfo_t info;
    int rc;
    if (pid <= 0)
        return false;
    /* WNOWAIT leaves an ended child to be reaped later. */
    while ((rc = waitid(P_PID, (id_t)pid, &info,
                        WEXITED | WNOHANG | WNOWAIT)) < 0 &&
           errno == EINTR)
        ;
    return rc == 0;
}

int cf__proc_reap(cf__proc *p)
{
    int status = 0;
    while (waitpid(p->pid, &status, 0) < 0 && errno == EINTR)
        ;
    cf__proc_forget(p);
    return status;
}

void cf__proc_describe_status(int status, char *buf, size_t n)
{
    if (WIFEXITED(status)) {
        snprintf(buf, n, "exited with status %d", WEXITSTATUS(status));
    } else if (WIFSIGNALED(status)) {
        int sig = WTERMSIG(status);
#if defined(__GLIBC__) && (__GLIBC__ > 2 || __GLIBC_MINOR__ >= 32)
        const char *abbrev = sigabbrev_np(sig);
        const char *descr = sigdescr_np(sig);
        snprintf(buf, n, "was killed by signal %d (SIG%s: %s)%s", sig,
                 abbrev ? abbrev : "?", descr ? descr : "?",
                 WCOREDUMP(status) ? ", core dumped" : "");
#else
        snprintf(buf, n, "was killed by signal %d", sig);
#endif
    } else {
        snprintf(buf, n, "ended with wait status 0x%x", (unsigned)status);
    }
}

bool cf__proc_status_clean(int status)
{
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

bool cf__proc_status_sigkill(int status)
{
    return WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
}

/* ------------------------------------------------------------------------ */
/* Non-blocking socket I/O (parent side)                                    */

ptrdiff_t cf__sock_send(int fd, const struct iovec *iov, int n)
{
    struct msghdr msg = {.msg_iov = (struct iovec *)iov,
                         .msg_iovlen = (size_t)n};
    for (;;) {
        /* MSG_NOSIGNAL: a dead worker must not raise SIGPIPE in the
         * caller's process. */
        ssize_t r = sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (r >= 0)
            return r;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return 0;
        return -1;
    }
}

ptrdiff_t cf__sock_recv(int fd, void *buf, size_t n)
{
    for (;;) {
        ssize_t r = recv(fd, buf, n, MSG_DONTWAIT);
        if (r >= 0)
            return r;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return -1;
        return -2;
    }
}

ptrdiff_t cf__pipe_write(int fd, const void *buf, size_t n)
{
    for (;;) {
        ssize_t r = write(fd, buf, n);
        if (r >= 0)
            return r;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return 0;
        if (errno == EPIPE) {
            /* Take back the SIGPIPE the kernel raised on this thread,
             * which blocks it, before anything unblocks it. */
            sigset_t pipe;
            sigemptyset(&pipe);
            sigaddset(&pipe, SIGPIPE);
            struct timespec zero = {0, 0};
            while (sigtimedwait(&pipe, NULL, &zero) < 0 && errno == EINTR)
                ;
        }
        return -1;
    }
}

ptrdiff_t cf__pipe_read(int fd, void *buf, size_t n)
{
    for (;;) {
        ssize_t r = read(fd, buf, n);
        if (r >= 0)
            return r;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return -1;
        return -2;
    }
}

/* ------------------------------------------------------------------------ */
/* Wake-up descriptor                                                       */

int cf__wake_open(int *fd)
{
#if defined(__linux__)
    int e = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (e < 0)
        return errno_to_cf(errno);
    *fd = e;
    return CF_OK;
#else
#error "cf__wake_open: only Linux (eventfd) is implemented"
#endif
}

void cf__wake_signal(int fd)
{
    uint64_t one = 1;
    /* A full counter (EAGAIN) is already a pending wake-up. */
    while (write(fd, &one, sizeof one) < 0 && errno == EINTR)
        ;
}

void cf__wake_drain(int fd)
{
    uint64_t v;
    while (read(fd, &v, sizeof v) < 0 && errno == EINTR)
        ;
}

/* ------------------------------------------------------------------------ */
/* Worker side                                                              */

bool cf__die_with_parent(pid_t parent)
{
#if defined(__linux__)
    prctl(PR_SET_PDEATHSIG, SIGKILL);
#endif
    /* The parent may have died before the line above: then our parent is
     * already someone else (init or a subreaper). */
    return getppid() == parent;
}

bool cf__fd_write_all(int fd, const void *buf, size_t len)
{
    const unsigned char *p = buf;
    bool socket = true;
    while (len > 0) {
        ssize_t r = socket ? send(fd, p, len, MSG_NOSIGNAL)
                           : write(fd, p, len);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            if (socket && errno == ENOTSOCK) {
                socket = false; /* a pipe */
                continue;
            }
            return false;
        }
        p += r;
        len -= (size_t)r;
    }
    return true;
}

ptrdiff_t cf__fd_read_some(int fd, void *buf, size_t len)
{
    for (;;) {
        ssize_t r = read(fd, buf, len);
        if (r >= 0)
            return r;
        if (errno != EINTR)
            return 0;
    }
}
