/* lifecycle.c - the thread pool's life: creation, shutdown, freeing.
 *
 * Design: cf_thread_pool_new() sets up the pool with no thread; threads
 * start as work arrives (thread_pool.c). Shutdown closes the pool under its
 * lock (a submit racing it is ordered there: see thread_pool.c), cancels
 * what is queued if asked, wakes every sleeping worker, and, if it waits,
 * waits for the workers to exit and joins them. A pool inherited by a fork
 * child only releases memory: its threads and its lock holders live in the
 * parent.
 */
#include "threads/thread_pool.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static atomic_uint pool_counter;

/* Helping tags (thread_pool.h): one per live pool, 1 to 255. */
static _Atomic(const thread_pool *) tag_owner[256];

static uint8_t take_helping_tag(const thread_pool *p)
{
    for (int tag = 1; tag < 256; tag++) {
        const thread_pool *none = NULL;
        if (atomic_compare_exchange_strong(&tag_owner[tag], &none, p))
            return (uint8_t)tag;
    }
    return 0; /* its workers will not help: see core/nested.c */
}

static void give_back_helping_tag(const thread_pool *p)
{
    if (p->helping_tag)
        atomic_store(&tag_owner[p->helping_tag], NULL);
}

static void cancel_all(cf_future *f)
{
    while (f) {
        cf_future *next = cf__queue_next(f);
        cf__future_cancel(f);
        cf_future_release(f);
        f = next;
    }
}

/* ------------------------------------------------------------------------ */
/* Shutdown                                                                 */

/* Tasks queued or running, not done. pop_lock held. */
static size_t count_unfinished(thread_pool *p)
{
    size_t n = 0;
    for (cf_future *f = cf__queue_head(queue(p)); f; f = cf__queue_next(f))
        if (f != &p->stub && !cf__state_done(cf__future_state(f)))
            n++;
    for (int i = 0; i < p->capacity; i++)
        if (p->slots[i].running)
            n++;
    return n;
}

/* Joins the threads that exited at shutdown and the last one retired
 * (which joined the one before it: see sizing.c, I2). Every worker has
 * left the pool. */
static void join_exited(thread_pool *p)
{
    cf__mutex_lock(&p->join_lock);
    for (;;) {
        cf__thread t;
        bool found = false;
        cf__mutex_lock(&p->lock);
        for (int i = 0; i < p->capacity && !found; i++)
            if (p->slots[i].joinable) {
                p->slots[i].joinable = false;
                t = p->threads[i];
                found = true;
            }
        if (!found && p->has_retired) {
            p->has_retired = false;
            t = p->retired;
            found = true;
        }
        cf__mutex_unlock(&p->lock);
        if (!found)
            break;
        cf__thread_join(t);
    }
    cf__mutex_unlock(&p->join_lock);
}

static int pool_shutdown(void *impl, double timeout, bool cancel_futures,
                         size_t *unfinished)
{
    thread_pool *p = impl;
    if (inherited(p))
        return CF_OK; /* nothing of it runs in this process */
    cf_future *cancelled = NULL;
    cf__mutex_lock(&p->lock);
    p->shutdown = true;
    close_pool(p);
    if (cancel_futures) {
        cf__spin_lock(&p->pop_lock);
        cancelled = cf__queue_take_all(queue(p), NULL);
        for (int i = 0; i < p->capacity; i++)
            if (p->slots[i].running)
                atomic_store_explicit(&p->slots[i].running->cancel_requested,
                                      true, memory_order_relaxed);
        cf__spin_unlock(&p->pop_lock);
    }
    cf__mutex_unlock(&p->lock);
    cf__event_signal_all(&p->work);
    cancel_all(cancelled);
    if (timeout == 0)
        return CF_OK;

    int64_t deadline;
    cf__deadline_from_timeout(timeout, &deadline);
    cf__mutex_lock(&p->lock);
    while (p->n_alive > 0) {
        if (!cf__cond_timedwait(&p->threads_done, &p->lock, deadline) &&
            p->n_alive > 0) {
            cf__spin_lock(&p->pop_lock);
            *unfinished = count_unfinished(p);
            cf__spin_unlock(&p->pop_lock);
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
    give_back_helping_tag(p);
    if (inherited(p)) {
        /* Its locks may be held by parent threads that do not exist here,
         * and its thread handles are the parent's: release memory only.
         * The futures still queued belong to the parent's copy. */
        free(p->broken_message);
        free(p->threads);
        free(p->slots);
        free(p);
        return;
    }
    cf__mutex_destroy(&p->join_lock);
    cf__cond_destroy(&p->threads_done);
    cf__mutex_destroy(&p->lock);
    cf__event_destroy(&p->work);
    free(p->broken_message);
    free(p->threads);
    free(p->slots);
    free(p);
}

/* cf_executor_broken(): the message the pool's failed futures carry;
 * written once, before `broken`, and freed with the pool. */
static const char *broken_reason(void *impl)
{
    thread_pool *p = impl;
    if (!atomic_load(&p->broken))
        return NULL;
    return p->broken_message ? p->broken_message
                             : cf_strerror(CF_EBROKEN_THREAD_POOL);
}

/* Threads alive, and those of them idle, for cf_executor_get_stats(). */
static void worker_counts(void *impl, int *alive, int *idle)
{
    thread_pool *p = impl;
    if (inherited(p)) { /* its threads live in the parent */
        *alive = *idle = 0;
        return;
    }
    cf__mutex_lock(&p->lock);
    int n_alive = p->n_alive;
    cf__mutex_unlock(&p->lock);
    /* Searching or asleep; a worker moving between the two may count
     * twice for a moment. */
    int n_idle = atomic_load(&p->n_searching) + atomic_load(&p->n_sleeping);
    *alive = n_alive;
    *idle = n_idle < 0 ? 0 : n_idle > n_alive ? n_alive : n_idle;
}

/* Counts (fs NULL) or retains into fs the futures queued and running.
 * pop_lock held: workers neither pop nor drop a running future
 * meanwhile. A push half done (its link not yet written) is missed. */
static size_t collect(thread_pool *p, cf_future **fs)
{
    size_t n = 0;
    for (int i = 0; i < p->capacity; i++) {
        cf_future *f = p->slots[i].running;
        if (f && !cf_future_done(f) && fs)
            fs[n] = cf_future_retain(f);
        n += f && !cf_future_done(f);
    }
    for (cf_future *f = cf__queue_head(queue(p)); f; f = cf__queue_next(f)) {
        if (f == &p->stub)
            continue;
        if (fs)
            fs[n] = cf_future_retain(f);
        n++;
    }
    return n;
}

/* The futures queued and running, for the shutdown report (escalate.c). */
static int unfinished(void *impl, cf_future ***out, size_t *n_out)
{
    thread_pool *p = impl;
    cf_future **fs = NULL;
    for (size_t cap = 0;;) {
        cf__spin_lock(&p->pop_lock);
        size_t n = collect(p, NULL);
        if (n <= cap) {
            n = collect(p, fs);
            cf__spin_unlock(&p->pop_lock);
            *out = fs;
            *n_out = n;
            return CF_OK;
        }
        cf__spin_unlock(&p->pop_lock);
        free(fs);
        cap = n + n / 4 + 16;
        if (!(fs = malloc(cap * sizeof *fs)))
            return CF_ENOMEM;
    }
}

/* A thread cannot be killed: only the list. */
static const cf__escalation thread_pool_escalation = {
    .unfinished = unfinished,
};

static const cf_executor_ops thread_pool_ops = {
    .kind = "thread_pool",
    .submit = cf__thread_pool_submit,
    .shutdown = pool_shutdown,
    .destroy = pool_destroy,
};
/* ------------------------------------------------------------------------ */
/* Construction                                                             */

/* max_workers_limit and max_compensating: at most, and by default. */
enum { MAX_LIMIT = 4096, DEFAULT_LIMIT = 256, DEFAULT_COMPENSATING = 256 };

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
    if ((rc = cf__cond_init(&p->threads_done)) != CF_OK)
        goto fail_threads_done;
    if ((rc = cf__mutex_init(&p->join_lock)) != CF_OK)
        goto fail_join_lock;
    cf__event_init(&p->work);
    return CF_OK;
fail_join_lock:
    cf__cond_destroy(&p->threads_done);
fail_threads_done:
    cf__mutex_destroy(&p->lock);
fail_lock:
    return rc;
}

static void init_atomics(thread_pool *p)
{
    cf__queue_init(queue(p));
    atomic_init(&p->closed, false);
    atomic_init(&p->pop_lock.held, false);
    atomic_init(&p->n_sleeping, 0);
    atomic_init(&p->n_searching, 0);
    atomic_init(&p->n_started, 0);
    atomic_init(&p->spare, spare_word(0, 0));
    atomic_init(&p->mode, MODE_COUNTING); /* no thread yet */
    atomic_init(&p->stopping, false);
    atomic_init(&p->broken, false);
}

int cf_thread_pool_new(const cf_thread_pool_options *opts, cf_executor **out)
{
    static const cf_thread_pool_options defaults = {0};
    if (!out)
        return CF_EINVAL;
    if (!opts)
        opts = &defaults;
    if (opts->max_workers < 0 || opts->max_workers > MAX_LIMIT ||
        isnan(opts->task_timeout) ||
        opts->task_timeout < 0 || !(opts->idle_timeout >= 0) ||
        opts->min_workers < 0 || opts->max_workers_limit < 0 ||
        opts->max_workers_limit > MAX_LIMIT ||
        opts->max_compensating < 0 ||
        opts->max_compensating > MAX_LIMIT)
        return CF_EINVAL;
    int max_workers = opts->max_workers ? opts->max_workers
                                        : default_workers();
    if (opts->min_workers > max_workers ||
        (opts->max_workers_limit && opts->max_workers_limit < max_workers))
        return CF_EINVAL;

    int rc = CF_ENOMEM;
    thread_pool *p = aligned_alloc(64, (sizeof *p + 63) / 64 * 64);
    if (!p)
        return CF_ENOMEM;
    memset(p, 0, sizeof *p);
    init_atomics(p);
    p->max_workers = max_workers;
    p->limit = opts->max_workers_limit ? opts->max_workers_limit
               : max_workers > DEFAULT_LIMIT ? max_workers
                                             : DEFAULT_LIMIT;
    p->max_compensating = opts->max_compensating ? opts->max_compensating
                                                 : DEFAULT_COMPENSATING;
    p->capacity = p->limit + p->max_compensating;
    p->min_workers = opts->min_workers;
    /* Past a year, an idle timeout is no timeout (and no overflow). */
    p->idle_ns = opts->idle_timeout <= 0 ? 0
                 : opts->idle_timeout > 31536000.0
                     ? 0
                     : (int64_t)(opts->idle_timeout * 1e9);
    if (opts->idle_timeout > 0 && opts->idle_timeout <= 31536000.0 &&
        p->idle_ns == 0)
        p->idle_ns = 1;
    p->helping_tag = take_helping_tag(p);
    p->max_searching = cf__cpu_count() / 2 > 1 ? cf__cpu_count() / 2 : 1;
    p->threads = calloc((size_t)p->capacity, sizeof *p->threads);
    p->slots = calloc((size_t)p->capacity, sizeof *p->slots);
    if (!p->threads || !p->slots)
        goto fail_alloc;
    p->initializer = opts->initializer;
    p->initarg = opts->initarg;
    p->thread_main = opts->thread_main;
    p->thread_ctx = opts->thread_ctx;
    cf__fork_hook_install();
    p->fork_generation = cf__fork_generation();
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
    cf__executor_set_worker_counts(p->executor, worker_counts);
    cf__executor_set_invokes_in_place(p->executor);
    cf__executor_set_broken(p->executor, broken_reason);
    cf__executor_set_resize(p->executor, cf__tp_resize);
    cf__executor_set_task_timeout(p->executor, opts->task_timeout);
    p->executor->escalation = &thread_pool_escalation;
    p->executor->submit_chain = cf__thread_pool_submit_chain;
    *out = p->executor;
    return CF_OK;
fail_executor:
    cf__event_destroy(&p->work);
    cf__mutex_destroy(&p->join_lock);
    cf__cond_destroy(&p->threads_done);
    cf__mutex_destroy(&p->lock);
fail_alloc:
    give_back_helping_tag(p);
    free(p->threads);
    free(p->slots);
    free(p);
    return rc;
}

int cf__thread_pool_threads_started(const cf_executor *ex)
{
    if (!ex || ex->ops != &thread_pool_ops)
        return 0;
    return atomic_load(&((thread_pool *)ex->impl)->n_started);
}
