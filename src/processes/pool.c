/* pool.c - ProcessPoolExecutor: creation, shutdown and destruction; the
 * design of the whole pool, whose parts live in tasks.c, dispatch.c,
 * results.c and manager.c (shared state in pool.h), workers behind
 * transport.h, started by spawn.c.
 *
 * Design:
 *
 *   submit (any thread)            manager thread                 workers
 *   -------------------            --------------                 -------
 *   encode arg with codec  --+
 *   frame a TASK message     | queue  pop (drop cancelled),  socket  claim k
 *   append to queue          +------> send to a worker  ---------->  (CAS in
 *   (wake fd if it sleeps)            window, claim word            shm), or
 *                                     k: PENDING                    skip it;
 *                                     claims seen: RUNNING          decode,
 *   future <--- finish <--- decode <--------------------------------  run fn,
 *                           result   busy-wait on shm counters, then  encode
 *                                    poll(): wake fd, sockets, pidfds result
 *
 * The manager thread owns the workers (spawn, send, receive, reap) and is
 * the only thread that blocks on them; callers only touch the queue under
 * `lock`. Each task sent to a worker gets a number k on it. Up to WINDOW
 * tasks wait at a busy worker, their bytes already there, but PENDING: the
 * worker starts task k only after it won the claim word of k in shared
 * memory (PENDING -> RUNNING, see cf__shm_slot); a cancel races it on the
 * same word (PENDING -> SKIP) through the future's cancel hook, so a
 * cancelled task never runs and a claimed one cannot be cancelled (the
 * cancel turns it RUNNING instead). The manager catches up with the claims
 * (a claimed task turns RUNNING before its result is read: the worker
 * sends its earlier results, or a CLAIMED frame when the manager sleeps,
 * after claiming) and drops skipped tasks. So cf_future_running() still
 * means a worker has started the task, with no round trip through the
 * manager between two tasks. A task sent to an idle worker is claimed by
 * the manager as it is sent. A worker falling idle takes the oldest task
 * waiting at another (taken back by the same compare-and-swap), so
 * nothing waits behind a long task while a worker idles. Without shared
 * memory (no memfd) a task is sent only to a free worker and claimed as it
 * is sent. A map chunk is one message and one task.
 *
 * Results come back through a byte ring in the worker's shared slot, with
 * no system call on either side while the manager is awake (the socket
 * carries what does not fit; a result names its task, so the two channels
 * need no common order). Tasks go out on the socket, in batches.
 *
 * Hand-offs: a sleeping wake-up costs tens of microseconds on a VM, so
 * the manager busy-waits briefly (new tasks: n_enqueued; results, claims
 * and finished tasks: the workers' shared slots) before it sleeps in
 * poll(), and an idle worker likewise before it sleeps in read().
 * Callers write the wake fd only when the manager sleeps.
 *
 * The manager never blocks on a write: sockets are non-blocking and the
 * unsent rest waits for POLLOUT, while results keep being read, so a large
 * payload in each direction cannot deadlock. A worker's exit is seen on its
 * pidfd (or, without pidfds, its socket's EOF); its ring and socket are
 * drained first so results written just before death count. An exit while
 * a task was claimed at the worker breaks the pool (or, with
 * survive_worker_death, fails that task only and sends the tasks waiting
 * there elsewhere); an exit we did not ask for breaks it too. A worker we
 * cannot talk to any more (failed send or receive, corrupt stream, no
 * memory for its result) is killed and reported the same way. Workers are
 * reaped by pid, never waitpid(-1).
 *
 * Lock order: the pool lock, then a future's lock
 * (set_running only); a future's lock is held while its cancel hook runs,
 * which takes no other lock. Futures are completed and cancelled with no pool
 * lock held, since completion runs callbacks.
 */
#include "processes/pool.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>

static const cf_executor_ops process_pool_ops;

/* ------------------------------------------------------------------------ */
/* Shutdown, terminate, destroy                                             */

/* Marks the pool shut down, optionally cancelling every task not yet
 * started: the queue, and the tasks waiting at workers unclaimed (the
 * manager skips them when it finds them cancelled). */
static void begin_shutdown(process_pool *pool, bool cancel_futures, int sig)
{
    /* The futures are cancelled with no lock held, since cancelling runs
     * callbacks and a callback may shut this very pool down again. Those
     * waiting at workers are copied out first, into memory of this call's
     * own or else the pool's spare buffer; with neither, they are left to
     * run (as CPython leaves its call queue), the queue is still
     * cancelled. */
    size_t cap = cancel_futures ? (size_t)pool->max_workers * WINDOW : 0;
    cf_future **buf = cap ? malloc(cap * sizeof *buf) : NULL;
    bool spare = false;
    if (cap && !buf && !atomic_exchange(&pool->cancel_buf_busy, true)) {
        buf = pool->cancel_buf;
        spare = true;
    }
    size_t n = 0;
    cf__mutex_lock(&pool->lock);
    pool->shutdown = true;
    if (cancel_futures)
        atomic_store_explicit(&pool->stop_running, true,
                              memory_order_release);
    if (sig)
        pool->terminate_sig = sig;
    task *q = cancel_futures ? cf__pp_take_queue(pool) : NULL;
    for (int i = 0; buf && i < pool->max_workers; i++)
        for (task *t = pool->workers[i].wait_head; t && n < cap; t = t->next)
            buf[n++] = cf_future_retain(t->f);
    cf__mutex_unlock(&pool->lock);
    cf__pp_cancel_tasks(q);
    for (size_t i = 0; i < n; i++) {
        cf__future_cancel(buf[i]);
        cf_future_release(buf[i]);
    }
    if (spare)
        atomic_store(&pool->cancel_buf_busy, false);
    else
        free(buf);
    cf__pp_wake_manager(pool);
}

static void join_manager(process_pool *pool)
{
    cf__mutex_lock(&pool->lock);
    bool join = pool->manager_done && !pool->manager_joined;
    pool->manager_joined |= join;
    cf__mutex_unlock(&pool->lock);
    if (join)
        cf__thread_join(pool->manager);
}

static int pool_shutdown(void *impl, double timeout, bool cancel_futures,
                         size_t *unfinished)
{
    process_pool *pool = impl;
    if (cf__process_worker_active())
        return CF_EDEADLK;
    if (getpid() != pool->owner)
        return CF_OK; /* a forked child's copy: the workers are not ours */
    begin_shutdown(pool, cancel_futures, 0);
    if (timeout == 0)
        return CF_OK;
    int64_t deadline;
    cf__deadline_from_timeout(timeout, &deadline);
    cf__mutex_lock(&pool->lock);
    while (!pool->manager_done) {
        if (!cf__cond_timedwait(&pool->changed, &pool->lock, deadline) &&
            !pool->manager_done) {
            if (unfinished)
                *unfinished = pool->n_queued + pool->n_inflight;
            cf__mutex_unlock(&pool->lock);
            return CF_ETIMEDOUT;
        }
    }
    cf__mutex_unlock(&pool->lock);
    join_manager(pool);
    return CF_OK;
}

static int terminate(cf_executor *ex, int sig)
{
    if (cf__process_worker_active())
        return CF_EDEADLK;
    if (!ex || ex->ops != &process_pool_ops)
        return CF_EINVAL;
    process_pool *pool = ex->impl;
    begin_shutdown(pool, true, sig);
    cf__mutex_lock(&pool->lock);
    while (pool->n_alive > 0 && !pool->manager_done)
        cf__cond_wait(&pool->changed, &pool->lock);
    cf__mutex_unlock(&pool->lock);
    return CF_OK;
}

int cf_process_pool_terminate_workers(cf_executor *ex)
{
    return terminate(ex, SIGTERM);
}

int cf_process_pool_kill_workers(cf_executor *ex)
{
    return terminate(ex, SIGKILL);
}

int cf_process_pool_pids(cf_executor *ex, long *pids, size_t cap,
                         size_t *n)
{
    if (n)
        *n = 0;
    if (!ex || ex->ops != &process_pool_ops || !n || (!pids && cap))
        return CF_EINVAL;
    process_pool *pool = ex->impl;
    if (getpid() != pool->owner)
        return CF_OK; /* a forked child's copy has no workers */
    if (cf__current_pool == ex) {
        /* The manager itself (a done-callback or start callback it runs):
         * it owns the workers' table, and cannot wait for itself. */
        *n = cf__pp_list_pids(pool, pids, cap);
        return CF_OK;
    }
    pp_request req = {.kind = REQ_PIDS, .pids = pids, .cap = cap};
    int rc = cf__pp_ask_manager(pool, &req);
    *n = req.n;
    return rc == CF_ESTATE ? CF_OK : rc; /* no manager: no workers */
}

static void free_config(process_pool *pool)
{
    cf__shm_destroy(&pool->shm);
    free(pool->cancel_buf);
    free(pool->workers);
    free(pool->pfds);
    free(pool->polled);
    free(pool->polled_at);
    free(pool->init_module);
    cf__buffer_destroy(&pool->required);
    cf__spawn_config_destroy(&pool->spawn);
}

static void pool_destroy(void *impl)
{
    process_pool *pool = impl;
    if (getpid() == pool->owner)
        join_manager(pool);
    cf__pp_free_spares(pool);
    cf__fd_close(pool->wake_fd);
    cf__mutex_destroy(&pool->req_lock);
    cf__cond_destroy(&pool->changed);
    cf__mutex_destroy(&pool->lock);
    free(pool->broken_msg);
    free_config(pool);
    free(pool);
}

/* ------------------------------------------------------------------------ */
/* Escalation (core/escalate.c)                                             */

static int esc_unfinished(void *impl, cf_future ***out, size_t *n)
{
    process_pool *pool = impl;
    *out = NULL;
    *n = 0;
    if (getpid() != pool->owner)
        return CF_OK; /* a forked child's copy: nothing runs here */
    pp_request req = {.kind = REQ_LIST};
    int rc = cf__pp_ask_manager(pool, &req);
    *out = req.list;
    *n = req.n;
    return rc == CF_ESTATE ? CF_OK : rc; /* no manager: nothing left */
}

static int esc_kill_task(void *impl, cf_future *f)
{
    process_pool *pool = impl;
    if (getpid() != pool->owner)
        return CF_ESTATE;
    pp_request req = {.kind = REQ_KILL, .future = f};
    return cf__pp_ask_manager(pool, &req);
}

static void esc_signal_workers(void *impl, bool hard)
{
    process_pool *pool = impl;
    if (getpid() == pool->owner)
        begin_shutdown(pool, true, hard ? SIGKILL : SIGTERM);
}

/* The manager passes raised flags of running tasks on to their workers
 * at its next step (escalation.c): make that now. */
static void esc_stop_requested(void *impl)
{
    process_pool *pool = impl;
    if (getpid() == pool->owner)
        cf__pp_wake_manager(pool);
}

static const cf__escalation process_pool_escalation = {
    .unfinished = esc_unfinished,
    .kill_task = esc_kill_task,
    .signal_workers = esc_signal_workers,
    .stop_requested = esc_stop_requested,
};

static const cf_executor_ops process_pool_ops = {
    .kind = "process_pool",
    .submit = cf__pp_pool_submit,
    .shutdown = pool_shutdown,
    .destroy = pool_destroy,
};

/* ------------------------------------------------------------------------ */
/* Resizing                                                                 */

/* The manager brings the workers to the new size at its next step. */
int cf__pp_set_max_workers(void *impl, int max_workers)
{
    process_pool *pool = impl;
    if (max_workers > pool->max_workers)
        return CF_EINVAL; /* past the slots made at creation */
    /* A forked child's copy: the manager and workers are the parent's
     * (as submit there, tasks.c). */
    if (cf__fork_generation() != pool->fork_gen)
        return CF_EBROKEN_PROCESS_POOL;
    cf__mutex_lock(&pool->lock);
    int rc = pool->broken     ? CF_EBROKEN_PROCESS_POOL
             : pool->shutdown ? CF_ESHUTDOWN
                              : CF_OK;
    if (rc == CF_OK)
        pool->limit = max_workers;
    cf__mutex_unlock(&pool->lock);
    if (rc == CF_OK)
        cf__pp_wake_manager(pool);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Construction                                                             */

/* cf_executor_get_stats(): worker processes not yet reaped, and those the
 * manager found with nothing to do at its last look. */
static void worker_counts(void *impl, int *alive, int *idle)
{
    process_pool *pool = impl;
    cf__mutex_lock(&pool->lock);
    *alive = pool->n_alive;
    cf__mutex_unlock(&pool->lock);
    int n = atomic_load_explicit(&pool->n_idle, memory_order_relaxed);
    *idle = n < *alive ? n : *alive;
}

/* cf_executor_broken(): the message the pool's failed futures carry. */
static const char *broken_reason(void *impl)
{
    process_pool *pool = impl;
    cf__mutex_lock(&pool->lock);
    const char *why = !pool->broken      ? NULL
                      : pool->broken_msg ? pool->broken_msg
                                         : cf_strerror(CF_EBROKEN_PROCESS_POOL);
    cf__mutex_unlock(&pool->lock);
    return why;
}

/* max_workers 0: the CPUs, within the pool's limit on slots. */
static int default_workers(void)
{
    int n = cf_cpu_count();
    return n < CF__PP_MAX_WORKERS_LIMIT ? n : CF__PP_MAX_WORKERS_LIMIT;
}

static int check_options(const cf_process_pool_options *o)
{
    if (o->max_workers < 0 || o->max_workers > CF__PP_MAX_WORKERS_LIMIT ||
        isnan(o->task_timeout) || o->task_timeout < 0 ||
        (unsigned)o->start_method > CF_START_CALLBACK ||
        (unsigned)o->transport > CF_TRANSPORT_PIPES)
        return CF_EINVAL;
    int n = o->max_workers ? o->max_workers : default_workers();
    if (!(o->idle_timeout >= 0) || o->min_workers < 0 ||
        o->min_workers > n || o->max_workers_limit < 0 ||
        (o->max_workers_limit && o->max_workers_limit < n) ||
        o->max_workers_limit > CF__PP_MAX_WORKERS_LIMIT)
        return CF_EINVAL;
    return CF_OK;
}

/* The INIT message's list of names every worker must know. */
static int configure_required(process_pool *pool,
                              const cf_process_pool_options *o)
{
    cf__buffer_init(&pool->required);
    for (size_t i = 0; o->required_tasks && o->required_tasks[i]; i++) {
        const char *name = o->required_tasks[i];
        size_t len = strlen(name);
        if (len == 0 || len > CF__REGISTRY_NAME_MAX)
            return CF_EINVAL;
        int rc = cf__wire_put_name(&pool->required, name, len);
        if (rc != CF_OK)
            return rc;
        pool->n_required++;
    }
    return CF_OK;
}

static int configure_initializer(process_pool *pool,
                                 const cf_process_pool_options *o)
{
    if (!o->initializer)
        return CF_OK;
    cf__wire_ref ref;
    if (cf__pp_code_ref(pool, CF__REG_INITIALIZER,
                 cf__fn_addr((cf__any_fn)o->initializer), &ref) != CF_OK)
        return CF_EINVAL;
    pool->init_module = malloc(ref.module_len + 1);
    if (!pool->init_module)
        return CF_ENOMEM;
    memcpy(pool->init_module, ref.module, ref.module_len);
    pool->init_module[ref.module_len] = '\0';
    pool->init_len = ref.module_len;
    pool->init_offset = ref.offset;
    pool->has_init = true;
    return CF_OK;
}

/* Copies the options and resolves what the workers will need. */
static int configure(process_pool *pool, const cf_process_pool_options *o)
{
    pool->limit = o->max_workers ? o->max_workers : default_workers();
    pool->max_workers =
        o->max_workers_limit ? o->max_workers_limit : pool->limit;
    pool->min_workers = o->min_workers;
    /* Clamped to a year: beyond it, never is as good. */
    pool->idle_ns = o->idle_timeout <= 0 ? 0
                    : o->idle_timeout > 31536000.0
                        ? (int64_t)31536000 * 1000000000
                        : (int64_t)(o->idle_timeout * 1e9);
    if (o->idle_timeout > 0 && pool->idle_ns == 0)
        pool->idle_ns = 1;
    pool->max_tasks_per_child = o->max_tasks_per_child;
    pool->codec = o->codec ? o->codec : cf_codec_word();
    pool->survive = o->survive_worker_death;
    pool->task_timeout =
        o->task_timeout > 0 && !isinf(o->task_timeout) ? o->task_timeout : 0;
    pool->initarg = o->initarg;
    pool->owner = getpid();
    pool->wake_fd = -1;
    pool->shm.fd = -1;
    int rc = cf__spawn_configure(&pool->spawn, o);
    if (rc != CF_OK)
        return rc;
    pool->by_name = !cf__spawn_same_program(&pool->spawn);
    cf__wire_codec wc;
    if (cf__pp_codec_to_wire(pool, pool->codec, &wc) != CF_OK)
        return CF_EINVAL;
    if ((rc = configure_initializer(pool, o)) != CF_OK ||
        (rc = configure_required(pool, o)) != CF_OK)
        return rc;
    /* Without shared slots (no memfd, or the pipes transport) the pool
     * works the same, only without busy-waiting on the workers. */
    if (pool->spawn.transport->shared_memory)
        cf__shm_create((size_t)pool->max_workers * sizeof(cf__shm_slot),
                       &pool->shm);
    pool->workers = calloc((size_t)pool->max_workers, sizeof *pool->workers);
    size_t n_pfds = 1 + 3 * (size_t)pool->max_workers;
    pool->pfds = calloc(n_pfds, sizeof *pool->pfds);
    pool->polled = calloc(n_pfds, sizeof *pool->polled);
    pool->polled_at = calloc(n_pfds, sizeof *pool->polled_at);
    pool->cancel_buf = calloc((size_t)pool->max_workers * WINDOW,
                              sizeof *pool->cancel_buf);
    if (!pool->workers || !pool->pfds || !pool->polled || !pool->polled_at ||
        !pool->cancel_buf)
        return CF_ENOMEM;
    return CF_OK;
}

int cf_process_pool_new(const cf_process_pool_options *opts, cf_executor **out)
{
    static const cf_process_pool_options defaults = {0};
    if (cf__process_worker_active())
        return CF_EDEADLK;
    if (!out)
        return CF_EINVAL;
    if (!opts)
        opts = &defaults;
    int rc = check_options(opts);
    if (rc != CF_OK)
        return rc;
    process_pool *pool = calloc(1, sizeof *pool);
    if (!pool)
        return CF_ENOMEM;
    atomic_init(&pool->spare_lock.held, false);
    atomic_init(&pool->cancel_buf_busy, false);
    atomic_init(&pool->stop_running, false);
    atomic_init(&pool->n_idle, 0);
    atomic_init(&pool->req_pending, false);
    if ((rc = configure(pool, opts)) != CF_OK)
        goto fail_config;
    if ((rc = cf__wake_open(&pool->wake_fd)) != CF_OK)
        goto fail_config;
    if ((rc = cf__mutex_init(&pool->lock)) != CF_OK)
        goto fail_lock;
    if ((rc = cf__cond_init(&pool->changed)) != CF_OK)
        goto fail_cond;
    if ((rc = cf__mutex_init(&pool->req_lock)) != CF_OK)
        goto fail_req_lock;
    if ((rc = cf_executor_new(&process_pool_ops, pool, &pool->ex)) != CF_OK)
        goto fail_executor;
    cf__executor_set_submit_chunk(pool->ex, cf__pp_pool_submit_chunk);
    cf__executor_set_worker_counts(pool->ex, worker_counts);
    pool->ex->escalation = &process_pool_escalation;
    cf__executor_set_resize(pool->ex, cf__pp_set_max_workers);
    cf__executor_set_broken(pool->ex, broken_reason);
    pool->fork_gen = cf__fork_generation(); /* the hook is installed now */
    if ((rc = cf__thread_create(&pool->manager, cf__pp_manager_main, pool,
                                "cfprocmgr")) != CF_OK)
        goto fail_thread;
    *out = pool->ex;
    return CF_OK;
fail_thread:
    free(pool->ex);
fail_executor:
    cf__mutex_destroy(&pool->req_lock);
fail_req_lock:
    cf__cond_destroy(&pool->changed);
fail_cond:
    cf__mutex_destroy(&pool->lock);
fail_lock:
    cf__fd_close(pool->wake_fd);
fail_config:
    free_config(pool);
    free(pool);
    return rc;
}
