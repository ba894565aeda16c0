/* process.h - the OS layer for worker processes: channels, spawn, watch,
 * reap, wake-up descriptors, non-blocking I/O, and finding code by module.
 *
 * Design: a worker is a process joined to its parent by a channel, one
 * AF_UNIX stream socket (both directions; sends never raise SIGPIPE) or
 * two pipes, and watched through a pidfd where the kernel has them, else
 * through the channel's EOF. Every descriptor is created close-on-exec;
 * the child keeps only its ends of the channel (and what its caller asks
 * to keep). Nothing here installs a signal handler. What travels on the
 * channel, and the environment variable a worker finds it by, belong to
 * the layer above (src/processes/).
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

/* Descriptors below this number are never used for a pool's own shared
 * memory, so that placing a child's descriptors never overwrites it. */
#define CF__HIGH_FD 10

/* Shared memory for a pool and its workers (memfd + mmap, so exec'd
 * workers can map it too). What it holds is the caller's business. */
typedef struct cf__shm {
    int fd; /* >= CF__HIGH_FD, close-on-exec; -1 if none */
    void *base;
    size_t size;
} cf__shm;

/* Creates `size` zeroed bytes. Returns CF_OK, CF_ENOMEM, CF_EAGAIN,
 * CF_ESYS or CF_ENOTSUP; on error `*out` is {-1, NULL, 0}. */
int cf__shm_create(size_t size, cf__shm *out);
void cf__shm_destroy(cf__shm *shm);

/* A channel between a parent and one child: both ends of a socket pair
 * (then read and write descriptors are the same) or of two pipes. The
 * parent's ends are non-blocking; every descriptor is close-on-exec. */
typedef struct cf__channel {
    int parent_read, parent_write;
    int child_read, child_write;
    bool socket;
} cf__channel;

/* Creates a channel: a socket pair, or with `pipes` two pipes. Returns
 * CF_OK, CF_EAGAIN (descriptor limits), CF_ENOMEM, CF_ESYS. */
int cf__channel_open(bool pipes, cf__channel *out);
/* Closes the child's ends (the parent's copies, once the child has them). */
void cf__channel_close_child(cf__channel *c);
/* Closes every end still open. */
void cf__channel_close(cf__channel *c);

typedef struct cf__proc {
    pid_t pid;
    int fd;       /* the parent's end to read from, non-blocking */
    int write_fd; /* ... and to write to (== fd for a socket) */
    bool socket;  /* the channel is a socket */
    int pidfd; /* readable once the child has exited; -1 if unsupported */
} cf__proc;

/* The child's side of a channel after the parent's ends were taken. */
void cf__proc_from_channel(cf__channel *c, pid_t pid, cf__proc *out);

/* The path of the running program, for exec (malloc'd). Returns CF_OK,
 * CF_ENOMEM or CF_ESYS. */
int cf__proc_self_exe(char **out);

/* What to exec. The child gets `fds` (n_fds of them, -1 allowed) at the
 * numbers fd_base, fd_base + 1, ..., keeps `keep_fds` at their own numbers
 * (each must be below fd_base), and nothing else above 2. */
typedef struct cf__exec_spec {
    const char *exe;
    char *const *argv;   /* NULL: {exe, NULL} */
    const char *env_var; /* "NAME=value", added to the environment (an
                            inherited NAME is replaced); NULL: none */
    const int *keep_fds;
    size_t n_keep_fds;
    const int *fds;
    int n_fds;
    int fd_base;
} cf__exec_spec;

/* Starts a program (fork + exec, via posix_spawn: safe in a multithreaded
 * parent), with an empty signal mask and default signal dispositions.
 * Returns CF_OK with its pid, CF_EAGAIN (resource limits), CF_ENOMEM,
 * CF_ESYS, CF_EINVAL (a kept descriptor at or above fd_base). */
int cf__proc_spawn_exec(const cf__exec_spec *spec, pid_t *pid);

/* Forks a child that runs `child_main(ch, ctx)` and exits with its return
 * value. The child resets its signal mask and closes every descriptor but
 * 0-2 and its ends of `ch`. Same returns. */
int cf__proc_spawn_fork(const cf__channel *ch,
                        int (*child_main)(const cf__channel *ch, void *ctx),
                        void *ctx, pid_t *pid);

/* A pidfd for `pid` (any process this one may signal), or -1. */
int cf__pidfd_open(pid_t pid);

/* Sends `sig` to the child unless it has been reaped. */
void cf__proc_signal(const cf__proc *p, int sig);

/* True if `pid` is a child of this process (running, or ended and not
 * yet reaped): one waitpid() may reap. Does not reap it. */
bool cf__proc_is_child(pid_t pid);

/* Waits for the child to end (blocking) and closes its descriptors.
 * Returns the raw wait status. Never waits for any other child. */
int cf__proc_reap(cf__proc *p);

/* Closes the descriptors of a process someone else reaps. */
void cf__proc_forget(cf__proc *p);

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

/* The same on a non-blocking pipe. A write to a pipe whose reader is gone
 * returns -1 without killing the caller: SIGPIPE is raised on the calling
 * thread only, so callers keep it blocked there (pool manager threads
 * block every signal), and it is taken back before this returns. */
ptrdiff_t cf__pipe_write(int fd, const void *buf, size_t n);
ptrdiff_t cf__pipe_read(int fd, void *buf, size_t n);

/* A wake-up descriptor (eventfd): readable once signalled. */
int cf__wake_open(int *fd);
void cf__wake_signal(int fd);
void cf__wake_drain(int fd);
void cf__fd_close(int fd);

/* ------------------------------------------------------------------------ */
/* Worker side                                                              */

/* Maps all of the shared memory behind `fd` (made by cf__shm_create() in
 * the parent). Returns {-1, NULL, 0} when it cannot; the mapping lives as
 * long as the process. `fd` is not kept. */
cf__shm cf__shm_map(int fd);

/* Dies with the parent (PR_SET_PDEATHSIG), checked against `parent` for
 * the race before it was set. Returns false if the parent is already
 * gone. */
bool cf__die_with_parent(pid_t parent);

/* Closes every descriptor from `from` (>= 3) up but `keep` (n of them),
 * and makes those close-on-exec, so a task's own child processes do not
 * inherit them. */
void cf__keep_only_fds(const int *keep, int n, int from);

/* Unblocks every signal of the calling thread (a worker started from a
 * thread that blocked them must still die of SIGTERM). */
void cf__unblock_signals(void);

/* Blocking I/O for the worker: all of `len` bytes, or false (peer gone).
 * Sockets never raise SIGPIPE; a pipe to a dead reader may (the worker
 * then ends, as its pool is gone). */
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
