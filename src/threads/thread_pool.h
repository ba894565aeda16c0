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
    bool live;          /* lock: a thread serves here (not retired) */
    bool joinable;      /* lock: its thread is to be joined at shutdown */
} worker_slot;

/* `mode` bits (see "Sizing" in thread_pool.c). */
enum {
    MODE_COUNTING = 1u, /* fewer threads than allowed: `spare` is kept */
    MODE_SURPLUS = 2u,  /* more threads than allowed: workers retire */
    MODE_GEN = 4u       /* the generation counts in steps of this */
};

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
    /* Read on every submit and task, written (under lock and pop_lock)
     * only when the pool's size or its allowance changes: MODE_* bits and
     * a generation. */
    _Atomic unsigned mode;

    /* Cold state, guarded by lock. */
    _Alignas(64) cf__mutex lock;
    cf__cond threads_done; /* a worker exited */
    int n_threads;         /* live: started and not retired */
    atomic_int n_started;  /* ever started (read without the lock) */
    /* Idle workers minus queued tasks, kept only while the pool may grow
     * (MODE_COUNTING): the generation in the high 32 bits, the count plus
     * SPARE_BIAS in the low ones. See "Growing" in thread_pool.c. */
    _Atomic uint64_t spare;
    int n_alive;           /* started and not yet exited or retired */
    bool shutdown;
    atomic_bool broken;
    char *broken_message;

    cf_executor *executor; /* back pointer, for cf__current_pool */
    int max_workers;      /* lock; cf_executor_set_max_workers() */
    int limit;            /* the most max_workers may be raised to */
    int capacity;         /* slots: limit + max_compensating */
    int max_compensating; /* threads added for blocked waits, at most */
    int n_blocked;        /* lock: workers blocked in a nested wait */
    int min_workers;      /* idle reaping stops there */
    int64_t idle_ns;      /* idle reaping: 0 none */
    cf__thread retired;   /* lock: the last retired thread, to join */
    bool has_retired;
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
    cf__thread *threads; /* capacity; the thread of each live slot */

    cf__mutex join_lock; /* serialises joining */

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

/* `spare` packs a generation (the high 32 bits) with a count (the low
 * ones, biased so that it never borrows from the generation). */
#define SPARE_BIAS 0x80000000u

static inline uint32_t mode_gen(unsigned mode)
{
    return mode / MODE_GEN;
}

static inline uint64_t spare_word(uint32_t gen, int count)
{
    return (uint64_t)gen << 32 | (uint32_t)(SPARE_BIAS + (uint32_t)count);
}

static inline int spare_count(uint64_t word)
{
    return (int)((int64_t)(uint32_t)word - (int64_t)SPARE_BIAS);
}

static inline uint32_t spare_gen(uint64_t word)
{
    return (uint32_t)(word >> 32);
}

/* Threads the pool may run now: max_workers, plus one for each worker
 * blocked in a nested wait, up to max_compensating. lock held. */
static inline int allowed_threads(const thread_pool *p)
{
    int extra = p->n_blocked < p->max_compensating ? p->n_blocked
                                                   : p->max_compensating;
    return p->max_workers + extra;
}

/* What a worker knows of its part in `spare` (sizing.c). */
typedef struct spare_share {
    uint32_t gen;  /* the generation it has joined */
    bool counting; /* that generation keeps `spare` */
    bool idle;     /* it is idle (counted so, if counting) */
} spare_share;

/* Adds `delta` to `spare` if it is still of generation `gen` (a step of
 * an older generation is void: its worker joins the new one afresh). */
static inline void cf__tp_spare_add(thread_pool *p, uint32_t gen, int delta)
{
    uint64_t w = atomic_load_explicit(&p->spare, memory_order_relaxed);
    while (spare_gen(w) == gen &&
           !atomic_compare_exchange_weak_explicit(
               &p->spare, &w, w + (uint64_t)(int64_t)delta,
               memory_order_relaxed, memory_order_relaxed))
        ;
}

/* Moves the worker to the generation of `mode` if it is a new one, and
 * counts it there if it is idle: a new generation's count starts from the
 * queued tasks alone (sizing.c). */
static inline void cf__tp_spare_join(thread_pool *p, spare_share *s,
                                     unsigned mode)
{
    uint32_t gen = mode_gen(mode);
    if (gen == s->gen)
        return;
    s->gen = gen;
    s->counting = mode & MODE_COUNTING;
    if (s->counting && s->idle)
        cf__tp_spare_add(p, gen, 1);
}

/* sizing.c: the pool's size. */
void cf__tp_reshape(thread_pool *p);
void cf__tp_grow_backlog(thread_pool *p);
bool cf__tp_retire(thread_pool *p, spare_share *s, int index,
                   bool idle_expired, bool searching);
int cf__tp_resize(void *impl, int max_workers);

/* Makes `p` this thread's pool (NULL: none), for nested waits. */
void cf__tp_set_current(thread_pool *p);

/* thread_pool.c: starts one more worker. lock held. */
int cf__tp_start_worker(thread_pool *p);

/* The executor operation behind cf_executor_submit (thread_pool.c). */
int cf__thread_pool_submit(void *impl, cf_future *f, cf_fn fn, void *arg,
                           const cf_codec *codec);
/* Its cf_executor.submit_chain (core.h). */
int cf__thread_pool_submit_chain(void *impl, cf_future *first,
                                 cf_future *last, int n);

#endif /* CF_THREAD_POOL_H */
