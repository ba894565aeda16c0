/* process_posix.c - worker processes on POSIX (Linux first); see process.h.
 *
 * Design: spawning happens on the process pool's manager thread, because
 * PR_SET_PDEATHSIG fires when the *thread* that created the child ends: the
 * manager outlives its workers, a caller's short-lived thread might not.
 * Exec'd workers start through posix_spawn (glibc uses CLONE_VFORK: no
 * copy of the parent's memory, nothing runs between fork and exec but the
 * file actions), with an empty signal mask and default dispositions, the
 * socket dup'ed to CF__WORKER_FD and every other descriptor closed.
 */
#include "process.h"

#include "elf_symbols.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
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

static int open_pidfd(pid_t pid)
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

static int make_socketpair(int sv[2])
{
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        return errno_to_cf(errno);
    /* Large buffers: fewer wake-ups for big payloads. Best effort. */
    int size = 1 << 20;
    for (int i = 0; i < 2; i++) {
        setsockopt(sv[i], SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
        setsockopt(sv[i], SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
    }
    int fl = fcntl(sv[0], F_GETFL);
    if (fl < 0 || fcntl(sv[0], F_SETFL, fl | O_NONBLOCK) != 0) {
        int e = errno;
        close(sv[0]);
        close(sv[1]);
        return errno_to_cf(e);
    }
    return CF_OK;
}

/* ------------------------------------------------------------------------ */
/* Shared slots                                                             */

int cf__shm_create(size_t size, cf__shm *out)
{
    *out = (cf__shm){-1, NULL, 0};
#if defined(__linux__) && defined(MFD_CLOEXEC)
    int fd = memfd_create("cfutures-pool", MFD_CLOEXEC);
    if (fd < 0)
        return errno_to_cf(errno);
    /* Kept above the numbers a spawned worker's descriptors are dup'ed
     * to, so those dups never overwrite it. */
    int high = fcntl(fd, F_DUPFD_CLOEXEC, CF__WORKER_SHM_FD + 1);
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

/* environ plus our variable (any inherited one replaced). */
static char **worker_environ(char *var)
{
    size_t n = 0;
    while (environ && environ[n])
        n++;
    char **env = malloc((n + 2) * sizeof *env);
    if (!env)
        return NULL;
    size_t k = 0, prefix = strlen(CF__WORKER_ENV "=");
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], CF__WORKER_ENV "=", prefix) != 0)
            env[k++] = environ[i];
    env[k++] = var;
    env[k] = NULL;
    return env;
}

static int spawn_attrs(posix_spawnattr_t *attr, posix_spawn_file_actions_t *fa,
                       int child_fd, int shm_fd)
{
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    if (posix_spawnattr_init(attr) != 0)
        return CF_ENOMEM;
    if (posix_spawn_file_actions_init(fa) != 0) {
        posix_spawnattr_destroy(attr);
        return CF_ENOMEM;
    }
    /* The manager thread blocks every signal; the worker must not inherit
     * that mask, nor a disposition the caller set to "ignore". */
    int rc = posix_spawnattr_setflags(attr, POSIX_SPAWN_SETSIGMASK |
                                                POSIX_SPAWN_SETSIGDEF);
    rc = rc ? rc : posix_spawnattr_setsigmask(attr, &none);
    rc = rc ? rc : posix_spawnattr_setsigdefault(attr, &all);
    /* dup2 onto itself clears close-on-exec (glibc >= 2.29). */
    rc = rc ? rc : posix_spawn_file_actions_adddup2(fa, child_fd,
                                                    CF__WORKER_FD);
    /* After the socket: shm_fd is above both numbers (cf__shm_create). */
    if (shm_fd >= 0)
        rc = rc ? rc : posix_spawn_file_actions_adddup2(fa, shm_fd,
                                                        CF__WORKER_SHM_FD);
#if defined(__GLIBC__) && (__GLIBC__ > 2 || __GLIBC_MINOR__ >= 34)
    /* Descriptors the caller left inheritable stay out of the worker. */
    rc = rc ? rc : posix_spawn_file_actions_addclosefrom_np(fa,
                                                    CF__WORKER_SHM_FD + 1);
#endif
    if (rc != 0) {
        posix_spawn_file_actions_destroy(fa);
        posix_spawnattr_destroy(attr);
        return errno_to_cf(rc);
    }
    return CF_OK;
}

int cf__proc_spawn_exec(const char *exe, const cf__shm *shm, int slot,
                        cf__proc *out)
{
    int sv[2];
    int rc = make_socketpair(sv);
    if (rc != CF_OK)
        return rc;
    bool shared = shm && shm->base;
    char var[96];
    snprintf(var, sizeof var, CF__WORKER_ENV "=%d:%ld:%d:%d", CF__WORKER_FD,
             (long)getpid(), shared ? CF__WORKER_SHM_FD : -1,
             shared ? slot : -1);
    char **env = worker_environ(var);
    posix_spawnattr_t attr;
    posix_spawn_file_actions_t fa;
    if (!env) {
        rc = CF_ENOMEM;
        goto out_sock;
    }
    if ((rc = spawn_attrs(&attr, &fa, sv[1], shared ? shm->fd : -1)) !=
        CF_OK)
        goto out_env;
    char *argv[] = {(char *)exe, NULL};
    pid_t pid;
    int err = posix_spawn(&pid, exe, &fa, &attr, argv, env);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    if (err != 0) {
        rc = errno_to_cf(err);
        goto out_env;
    }
    free(env);
    close(sv[1]);
    out->pid = pid;
    out->fd = sv[0];
    out->pidfd = open_pidfd(pid);
    return CF_OK;
out_env:
    free(env);
out_sock:
    close(sv[0]);
    close(sv[1]);
    return rc;
}

/* Closes every descriptor above 2 except `keep`. */
static void close_all_but(int keep)
{
#if defined(__linux__) && defined(SYS_close_range)
    if (keep > 3)
        syscall(SYS_close_range, 3u, (unsigned)keep - 1, 0u);
    if (syscall(SYS_close_range, (unsigned)keep + 1, ~0u, 0u) == 0)
        return;
#endif
    long max = sysconf(_SC_OPEN_MAX);
    for (int fd = 3; fd < (max > 0 ? max : 1024); fd++)
        if (fd != keep)
            close(fd);
}

int cf__proc_spawn_fork(int (*child_main)(int fd, void *ctx), void *ctx,
                        cf__proc *out)
{
    int sv[2];
    int rc = make_socketpair(sv);
    if (rc != CF_OK)
        return rc;
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(sv[0]);
        close(sv[1]);
        return errno_to_cf(e);
    }
    if (pid == 0) {
        sigset_t none;
        sigemptyset(&none);
        pthread_sigmask(SIG_SETMASK, &none, NULL);
        close_all_but(sv[1]);
        if (!cf__worker_process_setup(sv[1], parent))
            _exit(1);
        _exit(child_main(sv[1], ctx)); /* mappings are inherited */
    }
    close(sv[1]);
    out->pid = pid;
    out->fd = sv[0];
    out->pidfd = open_pidfd(pid);
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

int cf__proc_reap(cf__proc *p)
{
    int status = 0;
    while (waitpid(p->pid, &status, 0) < 0 && errno == EINTR)
        ;
    cf__fd_close(p->fd);
    cf__fd_close(p->pidfd);
    p->fd = -1;
    p->pidfd = -1;
    p->pid = -1;
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

/* Maps all of the pool's shared memory from `shm_fd` ({-1, NULL, 0} if
 * there is none or it cannot be mapped: the worker then never busy-waits). */
static cf__shm map_shm(int shm_fd)
{
    struct stat st;
    cf__shm shm = {-1, NULL, 0};
    if (shm_fd < 0 || fstat(shm_fd, &st) != 0 || st.st_size <= 0)
        return shm;
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE,
                   MAP_SHARED, shm_fd, 0);
    if (p != MAP_FAILED) {
        shm.base = p; /* the mapping lives as long as the worker */
        shm.size = (size_t)st.st_size;
    }
    return shm;
}

bool cf__worker_env_take(int *fd, pid_t *parent, cf__shm *shm, int *slot)
{
    const char *v = getenv(CF__WORKER_ENV);
    if (!v)
        return false;
    int f, shm_fd = -1, index = -1;
    long ppid;
    bool ok = sscanf(v, "%d:%ld:%d:%d", &f, &ppid, &shm_fd, &index) >= 2 &&
              f >= 0 && ppid > 0;
    /* A task that starts this program again must not make it a worker. */
    unsetenv(CF__WORKER_ENV);
    if (!ok)
        return false;
    *fd = f;
    *parent = (pid_t)ppid;
    *shm = map_shm(index >= 0 ? shm_fd : -1);
    *slot = shm->base ? index : -1;
    return true;
}

bool cf__worker_process_setup(int fd, pid_t parent)
{
#if defined(__linux__)
    prctl(PR_SET_PDEATHSIG, SIGKILL);
#endif
    /* The parent may have died before the line above: then our parent is
     * already someone else (init or a subreaper). */
    if (getppid() != parent)
        return false;
    close_all_but(fd);
    int fl = fcntl(fd, F_GETFD);
    if (fl >= 0)
        fcntl(fd, F_SETFD, fl | FD_CLOEXEC);
    return true;
}

bool cf__fd_write_all(int fd, const void *buf, size_t len)
{
    const unsigned char *p = buf;
    while (len > 0) {
        ssize_t r = send(fd, p, len, MSG_NOSIGNAL);
        if (r < 0) {
            if (errno == EINTR)
                continue;
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

/* ------------------------------------------------------------------------ */
/* Finding code across processes                                            */

struct find_addr {
    uintptr_t addr;
    cf__code_ref *ref;
    bool found;
    const ElfW(Phdr) *phdrs; /* the module's, as loaded */
    int n_phdrs;
};

static int find_addr_cb(struct dl_phdr_info *info, size_t size, void *data)
{
    struct find_addr *fa = data;
    (void)size;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD)
            continue;
        uintptr_t start = info->dlpi_addr + ph->p_vaddr;
        if (fa->addr >= start && fa->addr - start < ph->p_memsz) {
            const char *name = info->dlpi_name ? info->dlpi_name : "";
            fa->ref->module = name;
            fa->ref->module_len = strlen(name);
            fa->ref->offset = fa->addr - info->dlpi_addr;
            fa->found = true;
            fa->phdrs = info->dlpi_phdr;
            fa->n_phdrs = info->dlpi_phnum;
            return 1;
        }
    }
    return 0;
}

int cf__addr_to_ref(const void *addr, cf__code_ref *ref)
{
    struct find_addr fa = {(uintptr_t)addr, ref, false, NULL, 0};
    dl_iterate_phdr(find_addr_cb, &fa);
    return fa.found ? CF_OK : CF_EINVAL;
}

struct find_module {
    const cf__code_ref *ref;
    uintptr_t result;
    bool found;
};

static int find_module_cb(struct dl_phdr_info *info, size_t size, void *data)
{
    struct find_module *fm = data;
    (void)size;
    const char *name = info->dlpi_name ? info->dlpi_name : "";
    if (strlen(name) != fm->ref->module_len ||
        memcmp(name, fm->ref->module, fm->ref->module_len) != 0)
        return 0;
    /* The offset must land inside one of the module's segments: a
     * corrupted or stale reference must not become a wild jump. */
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type == PT_LOAD && fm->ref->offset >= ph->p_vaddr &&
            fm->ref->offset - ph->p_vaddr < ph->p_memsz) {
            fm->result = info->dlpi_addr + (uintptr_t)fm->ref->offset;
            fm->found = true;
            return 1;
        }
    }
    return 1;
}

void *cf__ref_to_addr(const cf__code_ref *ref)
{
    struct find_module fm = {ref, 0, false};
    dl_iterate_phdr(find_module_cb, &fm);
    if (fm.found)
        return (void *)fm.result;
    if (ref->module_len == 0 || ref->module_len > 4095)
        return NULL;
    /* A module the parent loaded with dlopen(): load it here too. It stays
     * loaded for the worker's life, as the parent's reference implies. */
    char path[4096];
    memcpy(path, ref->module, ref->module_len);
    path[ref->module_len] = '\0';
    if (!dlopen(path, RTLD_NOW | RTLD_GLOBAL))
        return NULL;
    dl_iterate_phdr(find_module_cb, &fm);
    return fm.found ? (void *)fm.result : NULL;
}

void cf__addr_describe(const void *addr, char *buf, size_t n)
{
    cf__code_ref ref;
    struct find_addr fa = {(uintptr_t)addr, &ref, false, NULL, 0};
    dl_iterate_phdr(find_addr_cb, &fa);
    /* The module file's full symbol table names static functions too. */
    if (fa.found && cf__elf_symbol_name(ref.module, ref.offset, fa.phdrs,
                                        fa.n_phdrs, buf, n))
        return;
    Dl_info info;
    if (dladdr(addr, &info) && info.dli_sname && info.dli_saddr == addr) {
        snprintf(buf, n, "%s", info.dli_sname);
        return;
    }
    if (fa.found) {
        /* No symbol anywhere (a stripped file): the module and offset
         * still let `addr2line -f -e <module> <offset>` name it. */
        const char *module = ref.module;
#if defined(__GLIBC__)
        if (!ref.module_len)
            module = program_invocation_name;
#endif
        snprintf(buf, n, "%s+0x%llx", module[0] ? module : "main",
                 (unsigned long long)ref.offset);
        return;
    }
    snprintf(buf, n, "%p", addr);
}
