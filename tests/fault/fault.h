/* fault.h - fault injection for the reliability tests.
 *
 * The fault test programs are linked with -Wl,--wrap=<symbol> for every
 * allocation, thread and process start, descriptor creation and socket
 * read or write the library makes (see CMakeLists.txt here). Each wrapper
 * counts the calls of its class while armed and makes the chosen one fail
 * the way the OS would (malloc returns NULL, pthread_create returns
 * EAGAIN, fork returns -1 with errno EAGAIN, read returns -1 with EINTR or
 * a short count, ...). Everything else passes through to the real
 * function. Only calls from the process that armed the shim are counted:
 * a forked worker runs unharmed.
 *
 * A test runs one fixed workload for N = 1, 2, ... with the Nth call
 * failing, until a run in which fewer than N calls happened: then every
 * call of that class in the workload has been made to fail once.
 */
#ifndef CF_FAULT_H
#define CF_FAULT_H

#include <stdbool.h>
#include <stddef.h>

enum fault_class {
    FAULT_ALLOC = 1 << 0,  /* malloc, calloc, realloc, aligned_alloc, ... */
    FAULT_THREAD = 1 << 1, /* pthread_create */
    FAULT_PROC = 1 << 2,   /* fork, posix_spawn */
    FAULT_FD = 1 << 3,     /* pipe, pipe2, socketpair, eventfd */
    FAULT_READ = 1 << 4,   /* read (the pool's wake-up eventfd) */
    FAULT_WRITE = 1 << 5,  /* write (the same) */
    FAULT_RECV = 1 << 6,   /* recv, recvmsg (worker sockets) */
    FAULT_SEND = 1 << 7,   /* send, sendmsg (the same) */
    FAULT_POLL = 1 << 8,   /* poll */
};

enum fault_mode {
    FAULT_ONCE,  /* only the nth call fails */
    FAULT_FROM,  /* the nth call and every later one fail (exhaustion) */
    FAULT_SHORT, /* the nth read/write moves at most one byte */
    FAULT_SHORT_FROM, /* every read/write from the nth on: at most 1 byte */
};

/* Arms the shim: calls of the classes in `mask` are counted from now on,
 * and the `nth` (1-based) fails per `mode`, with `err` as its errno (or as
 * pthread_create's return value). */
void fault_arm(unsigned mask, long nth, enum fault_mode mode, int err);

/* Disarms; returns how many calls of the armed classes were counted. */
long fault_disarm(void);

/* True if the armed fault has fired since fault_arm(). */
bool fault_fired(void);

/* Allocations made through the wrappers and not yet freed. A workload
 * that releases everything returns this to where it started. */
long fault_live_allocs(void);

/* Makes pidfd_open/pidfd_send_signal fail with ENOSYS (as on kernels
 * before 5.3 and under valgrind), so the process pool's fallback (a
 * worker's end seen as its socket's EOF) is what runs. */
void fault_without_pidfd(bool on);

#endif
