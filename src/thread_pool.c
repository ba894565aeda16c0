/* thread_pool.c - ThreadPoolExecutor: tasks run on a pool of threads.
 *
 * Design: one FIFO of futures (the future is its own queue node, linked by
 * f->next) under one mutex, and up to max_workers threads started lazily.
 *
 *   submit --push--> [queue] --pop--> worker: set_running_or_notify_cancel,
 *                                      run the task, complete the future
 *
 * Worker shape (as libuv's): lock; while no work, wait; take one; unlock;
 * run; relock. User code (tasks, callbacks, the initializer, result
 * destructors) never runs under the pool lock: a worker releases the
 * future it just ran only after dropping the lock again.
 *
 * Idle workers: a worker with nothing to do spins briefly before sleeping,
 * because a hand-off to a spinning thread costs a cache miss while waking a
 * sleeping one costs a system call on each side. `n_idle` counts workers
 * spinning or sleeping; a submit starts a thread only when the queue holds
 * more tasks than there are idle workers (Python's idle semaphore, made
 * exact), and signals the condition variable only when the spinning workers
 * are too few for the queue.
 *
 * Cancel: a queued future is cancelled in place (future.c); the worker that
 * pops it sees CF_ECANCELLED and skips it. shutdown(cancel_futures) detaches
 * the whole queue and cancels it outside the lock.
 *
 * Broken: an initializer failure marks the pool broken, fails every queued
 * future with CF_EBROKEN_THREAD_POOL, and every later submit returns it.
 *
 * Stopping: shutdown sets a flag all workers see; a worker exits when the
 * flag is set and the queue is empty. A waited shutdown joins every thread
 * (under join_lock, so concurrent shutdowns never join twice).
 */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct worker_slot {
    cf_future *running; /* guarded by pool lock; the future being run */
} worker_slot;

typedef struct thread_pool {
    cf_executor *executor; /* back pointer, for cf__current_pool */
    cf__mutex lock;
    cf__cond work_ready;   /* workers sleep here */
    cf__cond threads_done; /* a worker exited */

    /* Guarded by lock. */
    cf_future *head, *tail;
    size_t queued;
    int n_threads;   /* started */
    int n_alive;     /* started and not yet exited */
    int n_idle;      /* spinning or sleeping, waiting for work */
    int n_sleeping;  /* waiting on work_ready */
    bool shutdown;
    bool broken;
    char *broken_message;

    /* Read by spinning workers without the lock: a hint, re-checked under
     * the lock. */
    atomic_size_t queued_hint;

    int max_workers;
    unsigned fork_generation;
    int (*initializer)(void *);
    void *initarg;
    char name_prefix[16];
    cf__thread *threads;  /* max_workers slots; [0, n_threads) started */
    worker_slot *slots;   /* max_workers */

    cf__mutex join_lock;  /* serialises joining */
    int n_joined;         /* guarded by join_lock */
} thread_pool;

typedef struct worker_start {
    thread_pool *pool;
    int index;
} worker_start;

/* How long an idle worker spins before sleeping: long enough to catch the
 * next task of a caller that submits in a loop, short enough that an idle
 * pool costs nothing. */
enum { IDLE_SPIN_NS = 50000 };

static atomic_uint pool_counter;

/* ------------------------------------------------------------------------ */
/* Queue (lock held)                                                        */

static void push(thread_pool *p, cf_future *f)
{
    f->next = NULL;
    if (p->tail)
        p->tail->next = f;
    else
        p->head = f;
    p->tail = f;
    p->queued++;
    atomic_store_explicit(&p->queued_hint, p->queued, memory_order_relaxed);
}

static cf_future *pop(thread_pool *p)
{
    cf_future *f = p->head;
    if (!f)
        return NULL;
    p->head = f->next;
    if (!p->head)
        p->tail = NULL;
    p->queued--;
    atomic_store_explicit(&p->queued_hint, p->queued, memory_order_relaxed);
    return f;
}

/* Detaches the whole queue and returns its head. */
static cf_future *take_all(thread_pool *p)
{
    cf_future *all = p->head;
    p->head = p->tail = NULL;
    p->queued = 0;
    atomic_store_explicit(&p->queued_hint, 0, memory_order_relaxed);
    return all;
}

/* ------------------------------------------------------------------------ */
/* Workers                                                                  */

/* Fails every future of a detached list with the pool's broken error, and
 * drops the queue's references. Runs outside the lock (callbacks). */
static void fail_all(cf_future *f, const char *message)
{
    while (f) {
        cf_future *next = f->next;
        cf__future_finish(f, NULL, NULL, CF_EBROKEN_THREAD_POOL,
                          cf__strdup(message));
        cf_future_release(f);
        f = next;
    }
}

static void cancel_all(cf_future *f)
{
    while (f) {
        cf_future *next = f->next;
        cf__future_cancel(f);
        cf_future_release(f);
        f = next;
    }
}

/* The initializer failed on this thread: break the pool. */
static void break_pool(thread_pool *p, int code)
{
    char *message = cf__format("a thread initializer failed (returned %d): "
                               "the thread pool is not usable anymore",
                               code);
    cf__mutex_lock(&p->lock);
    if (!p->broken) {
        p->broken = true;
        p->broken_message = message;
        message = NULL;
    }
    cf_future *queued = take_all(p);
    cf__cond_broadcast(&p->work_ready);
    cf__mutex_unlock(&p->lock);
    free(message);
    fail_all(queued, p->broken_message ? p->broken_message
                                       : cf_strerror(CF_EBROKEN_THREAD_POOL));
}

/* Waits, lock held, until there is work or the pool is stopping. Spins
 * first with the lock dropped. `finished` is the future just run (may be
 * NULL); it is released while the lock is dropped. Returns the popped
 * future, or NULL to exit; the lock is held on return either way. */
static cf_future *next_task(thread_pool *p, cf_future **finished)
{
    cf_future *f = pop(p);
    if (f || p->shutdown || p->broken)
        return f;
    p->n_idle++;
    cf__mutex_unlock(&p->lock);
    cf_future_release(*finished);
    *finished = NULL;
    int64_t until = 0;
    for (unsigned i = 0; !atomic_load_explicit(&p->queued_hint,
                                               memory_order_relaxed); i++)
        if (!cf__spin_continue(i, &until, IDLE_SPIN_NS))
            break;
    cf__mutex_lock(&p->lock);
    while (!p->head && !p->shutdown && !p->broken) {
        p->n_sleeping++;
        cf__cond_wait(&p->work_ready, &p->lock);
        p->n_sleeping--;
    }
    p->n_idle--;
    return pop(p); /* NULL: stopping with an empty queue */
}

static void *worker_main(void *arg)
{
    worker_start start = *(worker_start *)arg;
    free(arg);
    thread_pool *p = start.pool;
    cf__current_pool = p->executor;

    if (p->initializer) {
        int rc = p->initializer(p->initarg);
        if (rc != 0)
            break_pool(p, rc);
    }

    cf_future *finished = NULL;
    cf__mutex_lock(&p->lock);
    for (;;) {
        cf_future *f = next_task(p, &finished);
        if (!f)
            break;
        p->slots[start.index].running = f;
        cf__mutex_unlock(&p->lock);
        cf_future_release(finished);
        if (cf_future_set_running_or_notify_cancel(f) == CF_OK)
            cf__run_task(f, f->fn, f->arg);
        finished = f;
        cf__mutex_lock(&p->lock);
        p->slots[start.index].running = NULL;
    }
    p->n_alive--;
    cf__cond_broadcast(&p->threads_done);
    cf__mutex_unlock(&p->lock);
    cf_future_release(finished);
    cf__current_pool = NULL;
    return NULL;
}

/* Starts one more worker. Lock held. Returns CF_OK or the start error. */
static int start_worker(thread_pool *p)
{
    worker_start *start = malloc(sizeof *start);
    if (!start)
        return CF_ENOMEM;
    start->pool = p;
    start->index = p->n_threads;
    char name[32];
    snprintf(name, sizeof name, "%s_%d", p->name_prefix, p->n_threads);
    int rc = cf__thread_create(&p->threads[p->n_threads], worker_main, start,
                               name);
    if (rc != CF_OK) {
        free(start);
        return rc;
    }
    p->n_threads++;
    p->n_alive++;
    return CF_OK;
}

/* ------------------------------------------------------------------------ */
/* Executor operations                                                      */

static int pool_submit(void *impl, cf_future *f, cf_fn fn, void *arg,
                       const cf_codec *codec)
{
    (void)codec; /* threads share memory: nothing crosses as bytes */
    thread_pool *p = impl;
    f->fn = fn;
    f->arg = arg;
    cf__mutex_lock(&p->lock);
    if (p->fork_generation != cf__fork_generation()) {
        cf__mutex_unlock(&p->lock);
        return CF_EBROKEN_THREAD_POOL; /* inherited across fork() */
    }
    if (p->broken) {
        cf__mutex_unlock(&p->lock);
        return CF_EBROKEN_THREAD_POOL;
    }
    if (p->shutdown) {
        cf__mutex_unlock(&p->lock);
        return CF_ESHUTDOWN;
    }
    cf_future_retain(f); /* the queue's reference */
    push(p, f);
    /* Reuse idle workers before starting new ones (Python 3.8+). A spinning
     * worker will see the queue by itself; wake a sleeper only when the
     * spinners are too few for what is queued. */
    size_t idle = (size_t)p->n_idle, spinning = idle - (size_t)p->n_sleeping;
    if (idle >= p->queued) {
        if (p->queued > spinning)
            cf__cond_signal(&p->work_ready);
    } else if (p->n_threads < p->max_workers) {
        int rc = start_worker(p);
        if (rc != CF_OK && p->n_alive == 0) {
            /* No thread will ever run it. With no thread alive nothing was
             * popped, and every earlier submit undid itself the same way,
             * so the queue holds only f. */
            cf_future *only = take_all(p);
            cf__mutex_unlock(&p->lock);
            cf_future_release(only);
            return rc;
        }
    }
    cf__mutex_unlock(&p->lock);
    return CF_OK;
}

/* Tasks queued or running, not done. Lock held. */
static size_t count_unfinished(thread_pool *p)
{
    size_t n = 0;
    for (cf_future *f = p->head; f; f = f->next)
        if (!cf__state_done(cf__future_state(f)))
            n++;
    for (int i = 0; i < p->n_threads; i++)
        if (p->slots[i].running)
            n++;
    return n;
}

static void join_exited(thread_pool *p)
{
    cf__mutex_lock(&p->join_lock);
    cf__mutex_lock(&p->lock);
    int started = p->n_threads;
    cf__mutex_unlock(&p->lock);
    for (; p->n_joined < started; p->n_joined++)
        cf__thread_join(p->threads[p->n_joined]);
    cf__mutex_unlock(&p->join_lock);
}

static int pool_shutdown(void *impl, double timeout, bool cancel_futures,
                         size_t *unfinished)
{
    thread_pool *p = impl;
    cf_future *cancelled = NULL;
    cf__mutex_lock(&p->lock);
    p->shutdown = true;
    if (cancel_futures) {
        cancelled = take_all(p);
        for (int i = 0; i < p->n_threads; i++)
            if (p->slots[i].running)
                atomic_store_explicit(&p->slots[i].running->cancel_requested,
                                      true, memory_order_relaxed);
    }
    cf__cond_broadcast(&p->work_ready);
    cf__mutex_unlock(&p->lock);
    cancel_all(cancelled);
    if (timeout == 0)
        return CF_OK;

    int64_t deadline;
    cf__deadline_from_timeout(timeout, &deadline);
    cf__mutex_lock(&p->lock);
    while (p->n_alive > 0) {
        if (!cf__cond_timedwait(&p->threads_done, &p->lock, deadline) &&
            p->n_alive > 0) {
            *unfinished = count_unfinished(p);
            cf__mutex_unlock(&p->lock);
            return CF_ETIMEDOUT;
        }
    }
    cf__mutex_unlock(&p->lock);
    join_exited(p);
    return CF_OK;
}

static void pool_destroy(void *impl)
{
    thread_pool *p = impl;
    cf__mutex_destroy(&p->join_lock);
    cf__cond_destroy(&p->threads_done);
    cf__cond_destroy(&p->work_ready);
    cf__mutex_destroy(&p->lock);
    free(p->broken_message);
    free(p->threads);
    free(p->slots);
    free(p);
}

static const cf_executor_ops thread_pool_ops = {
    .kind = "thread_pool",
    .submit = pool_submit,
    .shutdown = pool_shutdown,
    .destroy = pool_destroy,
};

/* ------------------------------------------------------------------------ */
/* Construction                                                             */

static int default_workers(void)
{
    int n = cf__cpu_count() + 4;
    return n < 32 ? n : 32;
}

static int init_sync(thread_pool *p)
{
    int rc;
    if ((rc = cf__mutex_init(&p->lock)) != CF_OK)
        goto fail_lock;
    if ((rc = cf__cond_init(&p->work_ready)) != CF_OK)
        goto fail_work_ready;
    if ((rc = cf__cond_init(&p->threads_done)) != CF_OK)
        goto fail_threads_done;
    if ((rc = cf__mutex_init(&p->join_lock)) != CF_OK)
        goto fail_join_lock;
    return CF_OK;
fail_join_lock:
    cf__cond_destroy(&p->threads_done);
fail_threads_done:
    cf__cond_destroy(&p->work_ready);
fail_work_ready:
    cf__mutex_destroy(&p->lock);
fail_lock:
    return rc;
}

int cf_thread_pool_new(const cf_thread_pool_options *opts, cf_executor **out)
{
    static const cf_thread_pool_options defaults = {0};
    if (!out)
        return CF_EINVAL;
    if (!opts)
        opts = &defaults;
    if (opts->max_workers < 0)
        return CF_EINVAL;

    int rc = CF_ENOMEM;
    thread_pool *p = calloc(1, sizeof *p);
    if (!p)
        return CF_ENOMEM;
    p->max_workers = opts->max_workers ? opts->max_workers : default_workers();
    p->threads = calloc((size_t)p->max_workers, sizeof *p->threads);
    p->slots = calloc((size_t)p->max_workers, sizeof *p->slots);
    if (!p->threads || !p->slots)
        goto fail_alloc;
    p->initializer = opts->initializer;
    p->initarg = opts->initarg;
    p->fork_generation = cf__fork_generation();
    atomic_init(&p->queued_hint, 0);
    if (opts->thread_name_prefix && *opts->thread_name_prefix)
        snprintf(p->name_prefix, sizeof p->name_prefix, "%s",
                 opts->thread_name_prefix);
    else
        snprintf(p->name_prefix, sizeof p->name_prefix, "cfpool%u",
                 atomic_fetch_add(&pool_counter, 1));
    if ((rc = init_sync(p)) != CF_OK)
        goto fail_alloc;
    if ((rc = cf_executor_new(&thread_pool_ops, p, &p->executor)) != CF_OK)
        goto fail_executor;
    *out = p->executor;
    return CF_OK;
fail_executor:
    cf__mutex_destroy(&p->join_lock);
    cf__cond_destroy(&p->threads_done);
    cf__cond_destroy(&p->work_ready);
    cf__mutex_destroy(&p->lock);
fail_alloc:
    free(p->threads);
    free(p->slots);
    free(p);
    return rc;
}
