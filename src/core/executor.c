/* executor.c - the abstract Executor: dispatch to an implementation.
 *
 * Design: an executor is an ops table plus an implementation pointer. This
 * file owns what every executor shares: argument checks, allocating the
 * future handed to ops->submit, the shutdown flag that refuses later
 * submits, the `with`-style free, and what happens when a shutdown or a
 * free comes from one of the executor's own threads (cf__current_pool: a
 * task, an initializer, a done-callback run there). Such a call cannot
 * wait for the executor, which waits for the very thread making it; as in
 * CPython, where only the join fails, the shutdown still takes effect in
 * full (no new work, cancel_futures honoured) and only the wait is
 * skipped (CF_EDEADLK). A free from there hands the wait and the free to
 * a detached thread of its own, so the executor ends once its tasks
 * return and nothing leaks. Implementations own their queues and order a
 * submit that races a shutdown under their own locks: only they can.
 */
#include "core/core.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

_Thread_local const void *cf__current_pool;
_Thread_local bool cf__in_process_worker;

/* Fork generation: a child of fork() gets a new one, so executors created
 * before the fork know they were inherited (their threads and workers live
 * in the parent only). */
static atomic_uint fork_generation;
static pthread_once_t fork_hook_once = PTHREAD_ONCE_INIT;

static void after_fork_in_child(void)
{
    atomic_fetch_add_explicit(&fork_generation, 1, memory_order_relaxed);
}

static void install_fork_hook(void)
{
    pthread_atfork(NULL, NULL, after_fork_in_child);
}

void cf__fork_hook_install(void)
{
    pthread_once(&fork_hook_once, install_fork_hook);
}

unsigned cf__fork_generation(void)
{
    return atomic_load_explicit(&fork_generation, memory_order_relaxed);
}

/* Executors created on a process-pool worker's task thread. A task in a
 * worker may build and use pools of its own; any other executor pointer it
 * holds came from the parent (in an exec'd worker it is not even valid
 * memory here), and calling into it would wait on the pool that waits on
 * this very task. So on a worker thread, only registered executors are
 * usable; everything else gets CF_EDEADLK without being dereferenced. */
static struct {
    pthread_mutex_t lock;
    cf_executor **items;
    size_t n, cap;
} worker_local = {PTHREAD_MUTEX_INITIALIZER, NULL, 0, 0};

static bool register_worker_local(cf_executor *ex)
{
    pthread_mutex_lock(&worker_local.lock);
    if (worker_local.n == worker_local.cap) {
        size_t cap = worker_local.cap ? 2 * worker_local.cap : 8;
        cf_executor **items = realloc(worker_local.items,
                                      cap * sizeof *items);
        if (!items) {
            pthread_mutex_unlock(&worker_local.lock);
            return false;
        }
        worker_local.items = items;
        worker_local.cap = cap;
    }
    worker_local.items[worker_local.n++] = ex;
    pthread_mutex_unlock(&worker_local.lock);
    return true;
}

static void unregister_worker_local(const cf_executor *ex)
{
    pthread_mutex_lock(&worker_local.lock);
    for (size_t i = 0; i < worker_local.n; i++) {
        if (worker_local.items[i] == ex) {
            worker_local.items[i] = worker_local.items[--worker_local.n];
            break;
        }
    }
    if (worker_local.n == 0) {
        free(worker_local.items);
        worker_local.items = NULL;
        worker_local.cap = 0;
    }
    pthread_mutex_unlock(&worker_local.lock);
}

/* True when called on a worker's task thread with an executor that was not
 * made there. Compares pointers only. */
static bool foreign_in_worker(const cf_executor *ex)
{
    if (!cf__process_worker_active())
        return false;
    pthread_mutex_lock(&worker_local.lock);
    bool local = false;
    for (size_t i = 0; i < worker_local.n && !local; i++)
        local = worker_local.items[i] == ex;
    pthread_mutex_unlock(&worker_local.lock);
    return !local;
}

bool cf__executor_refused_in_worker(const cf_executor *ex)
{
    return foreign_in_worker(ex);
}

int cf_executor_new(const cf_executor_ops *ops, void *impl, cf_executor **out)
{
    if (!ops || !ops->submit || !out)
        return CF_EINVAL;
    /* Every executor may need to know it was inherited by a child. */
    cf__fork_hook_install();
    cf_executor *ex = malloc(sizeof *ex);
    if (!ex)
        return CF_ENOMEM;
    ex->ops = ops;
    ex->impl = impl;
    ex->submit_chunk = NULL;
    ex->submit_chain = NULL;
    atomic_init(&ex->shut_down, false);
    atomic_init(&ex->monitor, NULL);
    atomic_init(&ex->monitor_mem, NULL);
    ex->worker_counts = NULL;
    ex->task_timeout = 0;
    ex->escalation = NULL;
    atomic_init(&ex->timer, NULL);
    ex->set_max_workers = NULL;
    ex->broken = NULL;
    ex->invokes_in_place = false;
    ex->worker_local = cf__process_worker_active();
    if (ex->worker_local && !register_worker_local(ex)) {
        free(ex);
        return CF_ENOMEM;
    }
    *out = ex;
    return CF_OK;
}

void cf__executor_set_submit_chunk(cf_executor *ex, cf__submit_chunk_fn fn)
{
    ex->submit_chunk = fn;
}

void cf__executor_set_worker_counts(cf_executor *ex,
                                    void (*fn)(void *impl, int *alive,
                                               int *idle))
{
    ex->worker_counts = fn;
}

void cf__executor_set_invokes_in_place(cf_executor *ex)
{
    ex->invokes_in_place = true;
}

void cf__executor_set_resize(cf_executor *ex,
                             int (*fn)(void *impl, int max_workers))
{
    ex->set_max_workers = fn;
}

void cf__executor_set_broken(cf_executor *ex,
                             const char *(*fn)(void *impl))
{
    ex->broken = fn;
}

bool cf_executor_broken(const cf_executor *ex, const char **why)
{
    const char *reason = ex && ex->broken ? ex->broken(ex->impl) : NULL;
    if (!reason)
        return false;
    if (why)
        *why = reason;
    return true;
}

int cf_executor_set_max_workers(cf_executor *ex, int max_workers)
{
    if (!ex || max_workers <= 0)
        return CF_EINVAL;
    if (cf__executor_refused_in_worker(ex))
        return CF_EDEADLK;
    if (!ex->set_max_workers)
        return CF_ENOTSUP;
    return ex->set_max_workers(ex->impl, max_workers);
}

int cf_executor_submit(cf_executor *ex, cf_fn fn, void *arg, cf_future **out)
{
    return cf_executor_submit_ex(ex, fn, arg, NULL, out);
}

int cf_executor_submit_ex(cf_executor *ex, cf_fn fn, void *arg,
                          const cf_codec *codec, cf_future **out)
{
    if (foreign_in_worker(ex))
        return CF_EDEADLK;
    if (!ex || !fn || !out)
        return CF_EINVAL;
    if (atomic_load_explicit(&ex->shut_down, memory_order_relaxed))
        return CF_ESHUTDOWN;
    cf_future *f = cf__future_alloc();
    if (!f)
        return CF_ENOMEM;
    int rc = ex->task_timeout > 0
                 ? cf__submit_limited(ex, f, fn, arg, codec, ex->task_timeout)
                 : cf__executor_dispatch(ex, f, fn, arg, codec);
    if (rc != CF_OK) {
        cf_future_release(f);
        return rc;
    }
    *out = f;
    return CF_OK;
}


int cf_executor_submit_opts(cf_executor *ex, cf_fn fn, void *arg,
                            const cf_submit_options *opts, cf_future **out)
{
    static const cf_submit_options defaults = {0};
    if (!opts)
        opts = &defaults;
    if (isnan(opts->timeout) || opts->timeout < 0)
        return foreign_in_worker(ex) ? CF_EDEADLK : CF_EINVAL;
    if (opts->timeout == 0)
        return cf_executor_submit_ex(ex, fn, arg, opts->codec, out);
    if (foreign_in_worker(ex))
        return CF_EDEADLK;
    if (!ex || !fn || !out)
        return CF_EINVAL;
    if (atomic_load_explicit(&ex->shut_down, memory_order_relaxed))
        return CF_ESHUTDOWN;
    cf_future *f = cf__future_alloc();
    if (!f)
        return CF_ENOMEM;
    int rc = cf__submit_limited(ex, f, fn, arg, opts->codec, opts->timeout);
    if (rc != CF_OK) {
        cf_future_release(f);
        return rc;
    }
    *out = f;
    return CF_OK;
}

int cf__executor_submit_future(cf_executor *ex, cf_future *f, cf_fn fn,
                               void *arg)
{
    if (foreign_in_worker(ex))
        return CF_EDEADLK;
    if (atomic_load_explicit(&ex->shut_down, memory_order_relaxed))
        return CF_ESHUTDOWN;
    return ex->task_timeout > 0
               ? cf__submit_limited(ex, f, fn, arg, NULL, ex->task_timeout)
               : cf__executor_dispatch(ex, f, fn, arg, NULL);
}

bool cf__executor_shares_memory(const cf_executor *ex)
{
    /* By name: the process pool and the MPI executor (libcfutures_mpi)
     * run tasks elsewhere; a custom executor is taken to run them in this
     * process, as cf_executor_ops asks of it. */
    return strcmp(cf_executor_kind(ex), "process_pool") != 0 &&
           strcmp(cf_executor_kind(ex), "mpi") != 0; /* libcfutures_mpi */
}

static int shutdown_impl(cf_executor *ex, double timeout, bool cancel_futures,
                         size_t *unfinished)
{
    size_t left = 0;
    atomic_store(&ex->shut_down, true);
    int rc = ex->ops->shutdown
                 ? ex->ops->shutdown(ex->impl, timeout, cancel_futures, &left)
                 : CF_OK;
    if (unfinished)
        *unfinished = rc == CF_OK ? 0 : left;
    return rc;
}

/* True on one of `ex`'s own threads, which a waited shutdown would wait
 * for. */
static bool inside(const cf_executor *ex)
{
    return cf__current_pool == ex;
}

int cf_executor_shutdown(cf_executor *ex, bool wait, bool cancel_futures)
{
    if (foreign_in_worker(ex))
        return CF_EDEADLK;
    if (!ex)
        return CF_EINVAL;
    if (wait && inside(ex)) {
        shutdown_impl(ex, 0, cancel_futures, NULL);
        return CF_EDEADLK; /* shut down; only the wait is impossible */
    }
    return shutdown_impl(ex, wait ? CF_FOREVER : 0, cancel_futures, NULL);
}

int cf_executor_shutdown_timeout(cf_executor *ex, double timeout,
                                 bool cancel_futures, size_t *unfinished)
{
    if (foreign_in_worker(ex))
        return CF_EDEADLK;
    if (!ex || isnan(timeout))
        return CF_EINVAL;
    /* The implementation reads 0 as "don't wait": a poll is a tiny wait.
     * From inside, the poll still counts what is left (the caller's own
     * task at least). */
    int rc = shutdown_impl(ex, timeout > 0 && !inside(ex) ? timeout : 1e-9,
                           cancel_futures, unfinished);
    return timeout > 0 && inside(ex) ? CF_EDEADLK : rc;
}

/* Shuts down with wait and frees. Not on one of ex's own threads. */
static void free_now(cf_executor *ex)
{
    shutdown_impl(ex, CF_FOREVER, false, NULL);
    if (ex->ops->destroy)
        ex->ops->destroy(ex->impl);
    cf__executor_timer_free(ex);
    cf__monitor_free(ex);
    if (ex->worker_local)
        unregister_worker_local(ex);
    free(ex);
}

static void *free_when_done(void *arg)
{
    free_now(arg);
    return NULL;
}

void cf_executor_free(cf_executor *ex)
{
    if (!ex || foreign_in_worker(ex))
        return; /* a worker cannot shut down its parent's pool */
    if (!inside(ex)) {
        free_now(ex);
        return;
    }
    /* From the executor's own thread: shut down now, and let a thread of
     * our own wait for the executor's threads (this one included, once its
     * task returns) and free it. */
    shutdown_impl(ex, 0, false, NULL);
    cf__thread reaper;
    if (cf__thread_create(&reaper, free_when_done, ex, "cfutures-free") ==
        CF_OK)
        cf__thread_detach(reaper);
    /* Else (a thread limit) the executor stays shut down, not freed: there
     * is no thread left that may wait for it. */
}

void cf_executor_freep(cf_executor **ex)
{
    if (ex) {
        cf_executor_free(*ex);
        *ex = NULL;
    }
}

const char *cf_executor_kind(const cf_executor *ex)
{
    return ex && ex->ops->kind ? ex->ops->kind : "";
}
