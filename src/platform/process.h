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

#include "../wire.h"

/* The environment variable that makes a program start as a worker:
 * "<fd>:<parent pid>:<shm fd>:<slot>" (shm fd -1: no shared slot). */
#define CF__WORKER_ENV "CF_PROCESS_WORKER"
/* The descriptors an exec'd worker finds its socket and the pool's shared
 * memory on. */
#define CF__WORKER_FD 3
#define CF__WORKER_SHM_FD 4

/* Memory shared by the pool and one worker.
 *
 * - to_worker / from_worker count messages sent, bumped after each write:
 *   they let either side busy-wait without a system call ("something is
 *   on the socket now"). A sleeper is woken by the socket itself.
 * - claim[] are the claim words. Every task sent to a worker gets the next
 *   number k (1, 2, ...) on that worker; before sending it the pool stores
 *   CF__CLAIM(k, CF__CLAIM_PENDING) in claim[k % CF__CLAIM_RING]. The
 *   worker starts task k only after it moved that word PENDING -> RUNNING
 *   by compare-and-swap; a cancel (the future's cancel hook) or the pool
 *   taking the task back for another worker moves it PENDING -> SKIP, and
 *   the worker skips it. One word, one winner: a future is cancelled iff
 *   its task never starts. The pool may also store RUNNING itself (a task
 *   sent to an idle worker is claimed as it is sent).
 * - done is the number of the last task the worker finished or skipped;
 *   the pool reuses a ring entry only once the worker is past it.
 * - asleep is set by the pool while its manager sleeps in poll(): a worker
 *   that claims a task with no result to send then writes a CLAIMED frame,
 *   so the future turns RUNNING even while the manager sleeps.
 * - ring is a byte ring of results, one producer (the worker) and one
 *   consumer (the pool): records [u64 length][frames, padded to 8], never
 *   split at the end (length CF__RING_WRAP: go on at offset 0).
 *   ring_head counts bytes published, ring_tail bytes consumed. A worker
 *   sends results through it without a system call; what does not fit
 *   goes through the socket, so results may arrive in either order (each
 *   frame names its task). A worker that publishes while the pool sleeps
 *   (asleep) also writes a CLAIMED frame to wake it.
 * Each side writes its own cache line (claim[] is shared by design). */
#define CF__CLAIM_RING 64u
enum { CF__CLAIM_PENDING = 1, CF__CLAIM_RUNNING = 2, CF__CLAIM_SKIP = 3 };
#define CF__CLAIM(k, st) (((unsigned)(k) << 2) | (unsigned)(st))
#define CF__RING_BYTES (64u << 10)
#define CF__RING_WRAP UINT64_MAX

typedef struct cf__shm_slot {
    _Alignas(64) atomic_uint_fast64_t to_worker; /* written by the pool */
    atomic_uint asleep;
    _Alignas(64) atomic_uint_fast64_t from_worker; /* by the worker */
    atomic_uint done;
    _Alignas(64) atomic_uint claim[CF__CLAIM_RING];
    _Alignas(64) atomic_uint_fast64_t ring_head; /* by the worker */
    _Alignas(64) atomic_uint_fast64_t ring_tail; /* by the pool */
    _Alignas(64) unsigned char ring[CF__RING_BYTES];
} cf__shm_slot;

/* A pool's shared slots (memfd + mmap, so exec'd workers can map it). */
typedef struct cf__shm {
    int fd; /* >= CF__WORKER_SHM_FD + 1, close-on-exec; -1 if none */
    cf__shm_slot *slots;
    size_t size;
} cf__shm;

/* Creates `n` zeroed slots. Returns CF_OK, CF_ENOMEM, CF_EAGAIN or
 * CF_ESYS; on error `*out` is {-1, NULL, 0} and the pool runs without. */
int cf__shm_create(size_t n, cf__shm *out);
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

/* Forks a worker that runs `child_main(fd)` and exits with its return
 * value. The child resets its signal mask and closes every descriptor but
 * 0-2 and its socket. Same returns. */
int cf__proc_spawn_fork(int (*child_main)(int fd, cf__shm_slot *slot),
                        cf__shm_slot *slot, cf__proc *out);

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
 * (with the socket, the parent pid and the shared slot, NULL if none: the
 * mapping is made here, before the descriptors are closed) if this
 * process is a worker. */
bool cf__worker_env_take(int *fd, pid_t *parent, cf__shm_slot **slot);

/* Makes this process a well-behaved worker: dies with its parent
 * (PR_SET_PDEATHSIG, checked against `parent` for the race before it was
 * set), keeps no descriptor but 0-2 and `fd` (made close-on-exec, so a
 * task's own child processes do not inherit it). Returns false if the
 * parent is already gone. */
bool cf__worker_process_setup(int fd, pid_t parent);

/* The worker loop of a forked worker (process_worker.c). */
int cf__worker_main_forked(int fd, cf__shm_slot *slot);

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
int cf__addr_to_ref(const void *addr, cf__wire_ref *ref);

/* The address for `ref` in this process, loading the module (dlopen) if it
 * is not loaded yet. NULL if it cannot be found. */
void *cf__ref_to_addr(const cf__wire_ref *ref);

/* A readable name for a function, for messages: its symbol if the dynamic
 * symbol table has it, else "<module>+0x<offset>". */
void cf__addr_describe(const void *addr, char *buf, size_t n);

#endif /* CF_PLATFORM_PROCESS_H */
