/* transport.h - how a process pool's manager moves frames to and from one
 * worker, behind one interface (implementations in transport.c).
 *
 * The bookkeeping (pool.c and its parts: queue, claims, cancels, crash
 * handling, shutdown) uses only these operations: open the channel a
 * worker is started with, send and receive bytes without blocking, and
 * the descriptors poll() watches for the channel and for the worker's end
 * (its exit is then learnt from its pidfd or the channel's EOF, and its
 * status from reaping, the same for every transport). Frames themselves
 * are wire.h's, the same on every transport.
 *
 *   socket + shared memory  one socket pair per worker for frames, plus a
 *                           cf__shm_slot (shm_slot.h) for claim words, a
 *                           result ring and busy-waiting; several tasks
 *                           may wait at a busy worker. The default.
 *   pipes                   two pipes per worker, nothing shared: a task
 *                           is sent only to a free worker and claimed as
 *                           it is sent.
 *
 * A transport without descriptors (MPI ranks) would also replace the
 * manager's poll(); that belongs with the executor that needs it.
 */
#ifndef CF_PROCESSES_TRANSPORT_H
#define CF_PROCESSES_TRANSPORT_H

#include <poll.h>

#include "core/core.h"
#include "platform/process.h"

typedef struct cf__transport {
    const char *name;
    /* True if each worker shares a cf__shm_slot with the pool. */
    bool shared_memory;
    /* Opens the channel a new worker is started with. Returns CF_OK,
     * CF_EAGAIN (descriptor limit), CF_ESYS. */
    int (*open)(cf__channel *ch);
    /* Sends up to `n` bytes without blocking: bytes sent (> 0), 0 when
     * the channel is full now (wait for POLLOUT), < 0 when the worker's
     * end is gone. */
    ptrdiff_t (*send)(const cf__proc *p, const void *data, size_t n);
    /* Receives up to `n` bytes without blocking: bytes (> 0), 0 at EOF,
     * -1 when nothing is there now, < -1 on an error. */
    ptrdiff_t (*recv)(const cf__proc *p, void *buf, size_t n);
} cf__transport;

/* The implementation of `kind`, or NULL for an unknown kind. */
const cf__transport *cf__transport_for(cf_transport kind);

/* Fills the three poll() entries of a worker: its channel's read end
 * (when `in`), its write end (when `out`; the same socket, or a pipe)
 * and its pidfd (when `alive`). An entry not wanted has fd -1, so the
 * entries keep their places. */
void cf__transport_watch(const cf__proc *p, bool in, bool out, bool alive,
                         struct pollfd entries[3]);

#endif /* CF_PROCESSES_TRANSPORT_H */
