/* shm_slot.h - the memory a process pool shares with each of its workers.
 *
 * Design: one slot per worker, in one shared mapping (platform/process.h's
 * cf__shm). The pool and the worker each write their own cache lines; the
 * claim words are shared by design. Every field is described below.
 */
#ifndef CF_PROCESSES_SHM_SLOT_H
#define CF_PROCESSES_SHM_SLOT_H

#include <stdatomic.h>
#include <stdint.h>

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
 * - stop[k % CF__CLAIM_RING] is task k's cancel flag, the one its cf_call
 *   polls in the worker: the pool clears it before it sends task k and
 *   raises it when the task's future is asked to stop (escalation.c).
 *   The entry cannot be reused under a raise: the pool raises it only
 *   while task k runs, and sends task k + CF__CLAIM_RING only after the
 *   worker is past k (see claim[]), both on its manager thread.
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
    _Alignas(64) atomic_bool stop[CF__CLAIM_RING]; /* by the pool */
    _Alignas(64) atomic_uint_fast64_t ring_head; /* by the worker */
    _Alignas(64) atomic_uint_fast64_t ring_tail; /* by the pool */
    _Alignas(64) unsigned char ring[CF__RING_BYTES];
} cf__shm_slot;

#endif /* CF_PROCESSES_SHM_SLOT_H */
