/* executor.c - the abstract Executor: dispatch to an implementation.
 *
 * Design: an executor is an ops table plus an implementation pointer. This
 * file owns what every executor shares: argument checks, allocating the
 * future handed to ops->submit, refusing a waited shutdown from inside the
 * executor's own task, the shutdown flag that refuses later submits, and the
 * `with`-style free. Implementations own their queues and order a submit
 * that races a shutdown under their own locks: only they can.
 */
#include "internal.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

_Thread_local const void *cf__current_pool;

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
    atomic_init(&ex->shut_down, false);
    *out = ex;
    return CF_OK;
}

void cf__executor_set_submit_chunk(cf_executor *ex, cf__submit_chunk_fn fn)
{
    ex->submit_chunk = fn;
}

int cf_executor_submit(cf_executor *ex, cf_fn fn, void *arg, cf_future **out)
{
    return cf_executor_submit_ex(ex, fn, arg, NULL, out);
}

int cf_executor_submit_ex(cf_executor *ex, cf_fn fn, void *arg,
                          const cf_codec *codec, cf_future **out)
{
    if (!ex || !fn || !out)
        return CF_EINVAL;
    if (atomic_load_explicit(&ex->shut_down, memory_order_relaxed))
        return CF_ESHUTDOWN;
    cf_future *f = cf__future_alloc();
    if (!f)
        return CF_ENOMEM;
    int rc = ex->ops->submit(ex->impl, f, fn, arg, codec);
    if (rc != CF_OK) {
        cf_future_release(f);
        return rc;
    }
    *out = f;
    return CF_OK;
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

int cf_executor_shutdown(cf_executor *ex, bool wait, bool cancel_futures)
{
    if (!ex)
        return CF_EINVAL;
    /* A task waiting for its own executor to finish would wait forever. */
    if (wait && cf__current_pool == ex)
        return CF_EDEADLK;
    return shutdown_impl(ex, wait ? CF_FOREVER : 0, cancel_futures, NULL);
}

int cf_executor_shutdown_timeout(cf_executor *ex, double timeout,
                                 bool cancel_futures, size_t *unfinished)
{
    if (!ex || isnan(timeout))
        return CF_EINVAL;
    if (timeout > 0 && cf__current_pool == ex)
        return CF_EDEADLK;
    /* The implementation reads 0 as "don't wait": a poll is a tiny wait. */
    return shutdown_impl(ex, timeout > 0 ? timeout : 1e-9, cancel_futures,
                         unfinished);
}

void cf_executor_free(cf_executor *ex)
{
    if (!ex)
        return;
    if (cf__current_pool == ex) {
        /* Freeing the pool from its own task cannot wait for that task.
         * Refuse loudly rather than deadlock or free a running pool. */
        fprintf(stderr, "cfutures: cf_executor_free() called from a task of "
                        "the same executor; not freed\n");
        return;
    }
    shutdown_impl(ex, CF_FOREVER, false, NULL);
    if (ex->ops->destroy)
        ex->ops->destroy(ex->impl);
    free(ex);
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
