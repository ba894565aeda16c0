/* process.h - the OS layer for worker processes: spawn, watch, reap,
 * wake-up descriptors, non-blocking socket I/O, and finding code by module.
 *
 * Design: a worker is a child process joined to its parent by one
 * AF_UNIX stream socket (both directions; sends never raise SIGPIPE) and
 * watched through a pidfd where the kernel has them, else through the
 * socket's EOF. Every descriptor is created close-on-exec; the child keeps
 * only its end of the socket. Nothing here installs a signal handler.
 */
#ifndef CF_PLATFORM_PROCESS_H
#define CF_PLATFORM_PROCESS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>
#include <sys/uio.h>


/* Where a function or object lives, so another process running the same
 * code can find it: the module that holds it (not NUL-terminated; empty
 * for the main program) and its offset from the module's load address. */
typedef struct cf__code_ref {
    const char *module;
    size_t module_len;
    uint64_t offset;
} cf__code_ref;

/* The environment variable that makes a program start as a worker:
 * "<fd>:<parent pid>:<shm fd>:<slot>" (shm fd -1: no shared slot). */
#define CF__WORKER_ENV "CF_PROCESS_WORKER"
/* The descriptors an exec'd worker finds its socket and the pool's shared
 * memory on. */
#define CF__WORKER_FD 3
#define CF__WORKER_SHM_FD 4

/* Shared memory for a pool and its workers (memfd + mmap, so exec'd
 * workers can map it too). What it holds is the caller's business. */
typedef struct cf__shm {
    int fd; /* >= CF__WORKER_SHM_FD + 1, close-on-exec; -1 if none */
    void *base;
    size_t size;
} cf__shm;

/* Creates `size` zeroed bytes. Returns CF_OK, CF_ENOMEM, CF_EAGAIN,
 * CF_ESYS or CF_ENOTSUP; on error `*out` is {-1, NULL, 0}. */
int cf__shm_create(size_t size, cf__shm *out);
void cf__shm_destroy(cf__shm *shm);

typedef struct cf__proc {
    pid_t pid;
    int fd;    /* the parent's end of the socket, non-blocking */
    int pidfd; /* readable once the child has exited; -1 if unsupported */
} cf__proc;

/* The path of the running program, for exec (malloc'd). Returns CF_OK,
 * CF_ENOMEM or CF_ESYS. */
int cf__proc_self_exe(char **out);

/* Starts `exe` as a worker (fork + exec, via posix_spawn: safe in a
 * multithreaded parent). Returns CF_OK, CF_EAGAIN (resource limits),
 * CF_ENOMEM, CF_ESYS. */
int cf__proc_spawn_exec(const char *exe, const cf__shm *shm, int slot,
                        cf__proc *out);

/* Forks a worker that runs `child_main(fd, ctx)` and exits with its
 * return value. The child resets its signal mask and closes every
 * descriptor but 0-2 and its socket. Same returns. */
int cf__proc_spawn_fork(int (*child_main)(int fd, void *ctx), void *ctx,
                        cf__proc *out);

/* Sends `sig` to the child unless it has been reaped. */
void cf__proc_signal(const cf__proc *p, int sig);

/* Waits for the child to end (blocking) and closes its descriptors.
 * Returns the raw wait status. Never waits for any other child. */
int cf__proc_reap(cf__proc *p);

/* Writes a description of a wait status: "exited with status 3",
 * "was killed by signal SIGKILL (Killed)". */
void cf__proc_describe_status(int status, char *buf, size_t n);

/* True if `status` is a normal exit with code 0. */
bool cf__proc_status_clean(int status);

/* True if `status` is a death by SIGKILL. */
bool cf__proc_status_sigkill(int status);

/* Sends as much of `iov` as fits now. Returns bytes sent (0 when the
 * socket is full), or -1 if the peer is gone. */
ptrdiff_t cf__sock_send(int fd, const struct iovec *iov, int n);
/* Receives what is there. Returns bytes (>0), 0 at EOF, -1 when nothing is
 * available now, -2 on error (treated as EOF). */
ptrdiff_t cf__sock_recv(int fd, void *buf, size_t n);

/* A wake-up descriptor (eventfd): readable once signalled. */
int cf__wake_open(int *fd);
void cf__wake_signal(int fd);
void cf__wake_drain(int fd);
void cf__fd_close(int fd);

/* ------------------------------------------------------------------------ */
/* Worker side                                                              */

/* Reads CF__WORKER_ENV and removes it from the environment. Returns true
 * if this process is a worker, with its socket, its parent's pid, the
 * pool's shared memory (`shm->base` NULL if none: the mapping is made
 * here, before the descriptors are closed, and lives as long as the
 * process) and the index of its slot in it (-1 if none). */
bool cf__worker_env_take(int *fd, pid_t *parent, cf__shm *shm, int *slot);

/* Makes this process a well-behaved worker: dies with its parent
 * (PR_SET_PDEATHSIG, checked against `parent` for the race before it was
 * set), keeps no descriptor but 0-2 and `fd` (made close-on-exec, so a
 * task's own child processes do not inherit it). Returns false if the
 * parent is already gone. */
bool cf__worker_process_setup(int fd, pid_t parent);

/* Blocking I/O for the worker: all of `len` bytes, or false (peer gone). */
bool cf__fd_write_all(int fd, const void *buf, size_t len);
/* Blocking read of at least 1 byte: > 0 bytes, 0 at EOF or error. */
ptrdiff_t cf__fd_read_some(int fd, void *buf, size_t len);

/* ------------------------------------------------------------------------ */
/* Finding code across processes                                            */

/* Function pointers as addresses and back. ISO C has no cast between the
 * two; POSIX (dlsym) guarantees they have the same representation. */
typedef void (*cf__any_fn)(void);
static inline const void *cf__fn_addr(cf__any_fn fn)
{
    const void *p;
    _Static_assert(sizeof p == sizeof fn, "code and data pointers differ");
    memcpy(&p, &fn, sizeof p);
    return p;
}
static inline cf__any_fn cf__addr_fn(const void *p)
{
    cf__any_fn fn;
    memcpy(&fn, &p, sizeof fn);
    return fn;
}

/* Names the module holding `addr` and the offset from its load address.
 * `ref->module` points into the loader's data: valid while the module is
 * loaded. Returns CF_OK or CF_EINVAL (not inside any loaded module: heap,
 * stack, JIT code). */
int cf__addr_to_ref(const void *addr, cf__code_ref *ref);

/* The address for `ref` in this process, loading the module (dlopen) if it
 * is not loaded yet. NULL if it cannot be found. */
void *cf__ref_to_addr(const cf__code_ref *ref);

/* A readable name for a function, for messages: its name from the module
 * file's symbol table (static functions too: elf_symbols.h), else from the
 * dynamic symbol table (dladdr), else "<module>+0x<offset>". */
void cf__addr_describe(const void *addr, char *buf, size_t n);

#endif /* CF_PLATFORM_PROCESS_H */
