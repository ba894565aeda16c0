/* sizing.c - how many threads a thread pool runs: growing past idle
 * workers, resizing (cf_executor_set_max_workers), idle reaping, and the
 * compensating threads of workers blocked in nested waits.
 *
 * Design. A pool may run allowed = max_workers + min(n_blocked,
 * max_compensating) threads; n_threads are live (started, not retired).
 * Both change only under the pool lock, and with them the pool's `mode`:
 *
 *   MODE_COUNTING  n_threads < allowed: the pool may grow, so `spare`
 *                  (idle workers minus queued tasks) is kept, and a submit
 *                  that leaves it negative starts a thread (thread_pool.c,
 *                  "Growing");
 *   MODE_SURPLUS   n_threads > allowed: workers retire, idle ones at once
 *                  (they are woken), busy ones before their next task;
 *   neither        the pool is full: nobody reads or writes `spare`, and
 *                  a submit pays one load for all of this.
 *
 * Invariants (each kept under the lock unless said otherwise):
 *   I1  n_threads <= capacity, and a slot is free (not live, not
 *       joinable) for each thread fewer: a start always finds one.
 *   I2  every thread ever started is joined once: at shutdown if it
 *       exited there (its slot stays joinable), else through `retired`:
 *       each retiring thread takes the thread retired before it, joins it
 *       once it has dropped the lock, and leaves itself there; shutdown
 *       joins what is left, so the chain is joined whole.
 *   I3  while counting, `spare` never exceeds the idle workers minus the
 *       queued tasks (it may fall short: that starts a thread too many,
 *       bounded by allowed, never one too few). Each generation of
 *       counting starts at minus the queued tasks (counted under
 *       pop_lock, at most the room left: see reshape) and every step
 *       after it changes the count by what it changes in the world; a
 *       worker joins a generation (adds itself if idle) the first time it
 *       sees it, and a step it took for an older generation is void
 *       (`spare` carries its generation, so the step is a compare and
 *       swap against it). Sleepers are woken when a generation starts, so
 *       that they join it.
 *   I4  no queued task is left without a worker: a worker retires only
 *       with the queue empty, after it took itself out of `spare` or
 *       flipped the mode (sequentially consistent), while a submit pushes
 *       and then reads the mode and takes from `spare` (sequentially
 *       consistent): either the retiring worker sees the task and stays,
 *       or the submit sees the smaller count and starts a thread (under
 *       the lock, after the retirement). A surplus worker retires even
 *       with work queued, but only down to allowed (>= 1) threads, which
 *       are then woken to take it. A retiring worker that was searching
 *       stops counting as searching before that last look at the queue:
 *       a submit that saw it searching woke nobody, counting on it.
 *   I5  a task is run once: retiring happens between tasks, never with a
 *       popped future in hand.
 *
 * Lock order: the pool lock, then pop_lock (thread_pool.h).
 */
#include "threads/thread_pool.h"

/* This thread's pool, if it is a worker of one: a nested wait asks it for
 * a compensating thread. */
static _Thread_local thread_pool *current_pool;

void cf__tp_set_current(thread_pool *p)
{
    current_pool = p;
}

/* Queued futures, at most `most`, stopping at a push half done only long
 * enough for it to end. pop_lock held. */
static int count_queued(thread_pool *p, int most)
{
    cf__task_queue q = queue(p);
    cf_future *f = cf__queue_head(q);
    int n = f != q.stub && most > 0;
    unsigned spins = 0;
    while (n < most) {
        cf_future *next = cf__queue_next(f);
        if (!next) {
            if (atomic_load(q.tail) == f)
                break; /* the end */
            /* A submitter between its exchange and its link. */
            if (spins++ < 64)
                cf__cpu_relax();
            else
                cf__yield();
            continue;
        }
        f = next;
        if (f != q.stub)
            n++;
    }
    return n;
}

void cf__tp_reshape(thread_pool *p)
{
    int allowed = allowed_threads(p);
    unsigned mode = atomic_load(&p->mode);
    unsigned counting = p->n_threads < allowed ? MODE_COUNTING : 0;
    unsigned surplus = p->n_threads > allowed ? MODE_SURPLUS : 0;
    if (counting == (mode & MODE_COUNTING) &&
        surplus == (mode & MODE_SURPLUS))
        return;
    unsigned next = mode & ~(MODE_COUNTING | MODE_SURPLUS);
    if (counting != (mode & MODE_COUNTING))
        next += MODE_GEN;
    next |= counting | surplus;
    if (counting && !(mode & MODE_COUNTING)) {
        /* A new count: minus what is queued. Its word goes in before the
         * mode that points submits at it; the queue is counted after (a
         * submit that read the old mode pushed before this store, and is
         * counted here; one that reads the new mode takes its own from
         * `spare`, and may be counted twice: a thread too many at most).
         * Past the room left, the count need not be exact: the caller
         * starts that many threads, and the pool is full again. */
        cf__spin_lock(&p->pop_lock);
        atomic_store(&p->spare, spare_word(mode_gen(next), 0));
        atomic_store(&p->mode, next);
        int queued = count_queued(p, allowed - p->n_threads);
        atomic_fetch_sub(&p->spare, (uint64_t)queued);
        cf__spin_unlock(&p->pop_lock);
    } else {
        /* pop_lock: a worker reads the mode with the task it pops. */
        cf__spin_lock(&p->pop_lock);
        atomic_store(&p->mode, next);
        cf__spin_unlock(&p->pop_lock);
    }
    /* Sleepers join a new count, or retire if surplus. */
    if ((counting && !(mode & MODE_COUNTING)) ||
        (surplus && !(mode & MODE_SURPLUS)))
        cf__event_signal_all(&p->work);
}

void cf__tp_grow_backlog(thread_pool *p)
{
    while (!p->shutdown &&
           (atomic_load(&p->mode) & MODE_COUNTING) &&
           spare_count(atomic_load(&p->spare)) < 0 &&
           p->n_threads < allowed_threads(p))
        if (cf__tp_start_worker(p) != CF_OK)
            break; /* the workers alive run it, in time */
}

/* Takes the worker out of the pool's books. lock held. */
static void leave(thread_pool *p, int index)
{
    worker_slot *slot = &p->slots[index];
    cf__spin_lock(&p->pop_lock);
    slot->running = NULL;
    cf__spin_unlock(&p->pop_lock);
    slot->live = false;
    slot->joinable = false;
    p->n_alive--;
    cf__cond_broadcast(&p->threads_done);
}

void (*_Atomic cf__thread_pool_after_retire)(cf_executor *ex);

bool cf__tp_retire(thread_pool *p, spare_share *s, int index,
                   bool idle_expired, bool searching)
{
    cf__mutex_lock(&p->lock);
    bool over = p->n_threads > allowed_threads(p);
    int floor = p->min_workers < p->max_workers ? p->min_workers
                                                : p->max_workers;
    if (atomic_load(&p->stopping) || p->shutdown ||
        !(over || (idle_expired && p->idle_ns && p->n_threads > floor))) {
        cf__mutex_unlock(&p->lock);
        return false;
    }
    uint32_t gen = mode_gen(atomic_load(&p->mode));
    bool counted = s->counting && s->idle && s->gen == gen;
    if (counted)
        atomic_fetch_sub(&p->spare, 1);
    p->n_threads--;
    cf__tp_reshape(p);
    if (!over && has_work(p)) {
        /* A submit may count on this worker (I4): stay. */
        p->n_threads++;
        if (counted && mode_gen(atomic_load(&p->mode)) == gen)
            atomic_fetch_add(&p->spare, 1);
        cf__tp_reshape(p);
        cf__mutex_unlock(&p->lock);
        return false;
    }
    leave(p, index);
    cf__thread before = p->retired;
    bool joins = p->has_retired;
    p->retired = p->threads[index];
    p->has_retired = true;
    cf__mutex_unlock(&p->lock);
    /* Stop counting as searching before the last look at the queue (the
     * Dekker pattern of thread_pool.c): a submit that saw this worker
     * searching woke nobody, counting on it to take the task, so either
     * that submit sees the count drop or this look sees its task. */
    if (searching)
        atomic_fetch_sub(&p->n_searching, 1);
    if (has_work(p))
        cf__event_signal_one(&p->work); /* I4: the others take it */
    void (*hook)(cf_executor *) = atomic_load_explicit(
        &cf__thread_pool_after_retire, memory_order_relaxed);
    if (hook)
        hook(p->executor);
    if (joins)
        cf__thread_join(before);
    return true;
}

int cf__tp_resize(void *impl, int max_workers)
{
    thread_pool *p = impl;
    if (inherited(p))
        return CF_EBROKEN_THREAD_POOL;
    if (max_workers > p->limit)
        return CF_EINVAL;
    cf__mutex_lock(&p->lock);
    int rc = CF_OK;
    if (atomic_load(&p->broken))
        rc = CF_EBROKEN_THREAD_POOL;
    else if (p->shutdown)
        rc = CF_ESHUTDOWN;
    else {
        p->max_workers = max_workers;
        cf__tp_reshape(p);
        cf__tp_grow_backlog(p);
    }
    cf__mutex_unlock(&p->lock);
    return rc;
}

void cf__thread_pool_blocking(bool blocked)
{
    thread_pool *p = current_pool;
    if (!p || inherited(p))
        return;
    cf__mutex_lock(&p->lock);
    p->n_blocked += blocked ? 1 : -1;
    if (!p->shutdown) {
        cf__tp_reshape(p);
        if (blocked)
            cf__tp_grow_backlog(p);
    }
    cf__mutex_unlock(&p->lock);
}
