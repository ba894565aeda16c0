/* thread_pool.h - the thread pool's state, shared by thread_pool.c (submit
 * and the workers) and lifecycle.c (create, shut down, free).
 *
 * Design: see thread_pool.c. The fields are grouped by who writes them, one
 * cache line per group, so that a submitting thread and the workers share
 * only the lines they must. Lock order: the pool lock, then pop_lock, then
 * a future's lock (through cf__future_* calls).
 */
#ifndef CF_THREAD_POOL_H
#define CF_THREAD_POOL_H

#include "core/core.h"
#include "threads/task_queue.h"

typedef struct worker_slot {
    cf_future *running; /* guarded by pop_lock; the future being run */
} worker_slot;

typedef struct thread_pool {
    /* Producer side. */
    _Atomic(cf_future *) tail;

    /* Consumer side, on its own cache lines. */
    _Alignas(64) cf__spinlock pop_lock;
    _Atomic(cf_future *) head; /* written under pop_lock, read by searchers */
    worker_slot *slots;   /* max_workers; guarded by pop_lock */
    atomic_int n_searching; /* workers spinning: they find work unaided */

    /* Sleepers, on a line that changes only when a worker falls asleep or
     * wakes: the one idle state a submit reads on its fast path. */
    _Alignas(64) atomic_int n_sleeping;
    cf__event work; /* sleeping workers wait here */

    /* Read on every submit, written once: closed to new work (shutdown or
     * broken), and stopping (workers exit once the queue is empty). */
    _Alignas(64) atomic_bool closed;
    atomic_bool stopping;

    /* Cold state, guarded by lock. */
    _Alignas(64) cf__mutex lock;
    cf__cond threads_done; /* a worker exited */
    atomic_int n_threads;  /* started (read without the lock by submit) */
    /* Idle workers minus queued tasks, kept only while the pool may grow
     * (n_threads < max_workers): see "Growing" in thread_pool.c. */
    atomic_int spare;
    int n_alive;           /* started and not yet exited */
    bool shutdown;
    atomic_bool broken;
    char *broken_message;

    cf_executor *executor; /* back pointer, for cf__current_pool */
    int max_workers;
    int max_searching; /* workers that may spin at once: half the CPUs */
    /* Marks this pool's queued futures, so that a worker whose task waits
     * for one runs it in place (core/nested.c); 0: none left (255 live
     * pools have one). */
    uint8_t helping_tag;
    unsigned fork_generation;
    int (*initializer)(void *);
    void *initarg;
    void (*thread_main)(void (*run)(void *), void *run_arg, void *ctx);
    void *thread_ctx;
    char name_prefix[16];
    cf__thread *threads; /* max_workers slots; [0, n_threads) started */

    cf__mutex join_lock; /* serialises joining */
    int n_joined;        /* guarded by join_lock */

    cf_future stub; /* the queue's placeholder node; only `next` is used */
} thread_pool;

/* The pool's queue (task_queue.h), from its three parts. */
static inline cf__task_queue queue(thread_pool *p)
{
    return (cf__task_queue){&p->tail, &p->head, &p->stub};
}

static inline bool has_work(thread_pool *p)
{
    return cf__queue_has_work(queue(p));
}

/* True in a child of fork(): the pool's threads live in the parent, and
 * its locks may have been held there at the fork. */
static inline bool inherited(const thread_pool *p)
{
    return p->fork_generation != cf__fork_generation();
}

/* Closes the pool to new work. pool lock held. */
static inline void close_pool(thread_pool *p)
{
    atomic_store(&p->closed, true);
    atomic_store(&p->stopping, true);
}

/* The executor operation behind cf_executor_submit (thread_pool.c). */
int cf__thread_pool_submit(void *impl, cf_future *f, cf_fn fn, void *arg,
                           const cf_codec *codec);

#endif /* CF_THREAD_POOL_H */
