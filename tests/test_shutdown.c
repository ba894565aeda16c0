/* test_shutdown.c - shutdown with and without wait, cancel_futures,
 * shutdown_timeout, and the `with` forms (cf_executor_free, scoped). */
#define _GNU_SOURCE
#include "coretest.h"

#include <math.h>

#include "core/core.h"

TEST(shutdown_is_idempotent)
{
    cf_executor *ex = pool_new(2);
    cf_future *f = submit(ex, task_identity, NULL);
    ASSERT_OK(cf_executor_shutdown(ex, true, false));
    ASSERT_OK(cf_executor_shutdown(ex, true, false));
    ASSERT_OK(cf_executor_shutdown(ex, false, true));
    ASSERT_OK(cf_executor_shutdown(ex, true, true));
    result_of(f);
    cf_future_release(f);
    cf_executor_free(ex);
}

TEST(shutdown_of_unused_pool)
{
    cf_executor *ex = pool_new(2);
    ASSERT_OK(cf_executor_shutdown(ex, true, false));
    cf_executor_free(ex);
}

TEST(submit_after_shutdown_is_eshutdown)
{
    cf_executor *ex = pool_new(1);
    ASSERT_OK(cf_executor_shutdown(ex, true, false));
    cf_future *f = (cf_future *)0x1;
    ASSERT_CODE(cf_executor_submit(ex, task_identity, NULL, &f), CF_ESHUTDOWN);
    ASSERT_CODE(cf_executor_submit_ex(ex, task_identity, NULL, NULL, &f),
                CF_ESHUTDOWN);
    ASSERT_PTR_EQ(f, (cf_future *)0x1);
    cf_executor_free(ex);
}

/* A submit that found the pool open, then a shutdown before that submit
 * could start the pool's first worker: the shutdown saw no worker to wait
 * for, so the future must be withdrawn (CF_ESHUTDOWN), not left queued
 * with nothing to run it. The hook runs the shutdown inside that window. */
static void shut_down_inside_submit(cf_executor *ex)
{
    atomic_store(&cf__thread_pool_before_grow, NULL); /* once */
    ASSERT_OK(cf_executor_shutdown(ex, true, false));
}

TEST(shutdown_before_the_first_worker_starts_strands_nothing)
{
    cf_executor *ex = pool_new(2);
    atomic_store(&cf__thread_pool_before_grow, shut_down_inside_submit);
    cf_future *f = (cf_future *)0x1;
    ASSERT_CODE(cf_executor_submit(ex, task_identity, NULL, &f), CF_ESHUTDOWN);
    ASSERT(atomic_load(&cf__thread_pool_before_grow) == NULL); /* it ran */
    ASSERT_PTR_EQ(f, (cf_future *)0x1);
    cf_executor_free(ex);
}

TEST(submit_after_nowait_shutdown_is_eshutdown)
{
    cf_executor *ex = pool_new(1);
    ASSERT_OK(cf_executor_shutdown(ex, false, false));
    cf_future *f = (cf_future *)0x1;
    ASSERT_CODE(cf_executor_submit(ex, task_identity, NULL, &f), CF_ESHUTDOWN);
    ASSERT_PTR_EQ(f, (cf_future *)0x1);
    cf_executor_free(ex);
}

static bool one_item(void *ctx, void **arg)
{
    int *left = ctx;
    if (*left == 0)
        return false;
    (*left)--;
    *arg = NULL;
    return true;
}

TEST(map_after_shutdown_is_eshutdown)
{
    cf_executor *ex = pool_new(1);
    ASSERT_OK(cf_executor_shutdown(ex, true, false));
    void *args[2] = {0};
    cf_map *m = (cf_map *)0x1;
    ASSERT_CODE(cf_executor_map(ex, task_identity, args, 2, NULL, &m),
                CF_ESHUTDOWN);
    int left = 3;
    ASSERT_CODE(cf_executor_map_stream(ex, task_identity, one_item, &left,
                                       NULL, &m),
                CF_ESHUTDOWN);
    cf_map_options opts = {.buffersize = 1};
    ASSERT_CODE(cf_executor_map_stream(ex, task_identity, one_item, &left,
                                       &opts, &m),
                CF_ESHUTDOWN);
    ASSERT_PTR_EQ(m, (cf_map *)0x1);
    cf_executor_free(ex);
}

TEST(shutdown_without_wait_returns_while_tasks_run)
{
    cf_executor *ex = pool_new(1);
    latch l;
    latch_init(&l);
    atomic_int ran = 0;
    cf_future *blocked = submit(ex, task_gate, &l);
    cf_future *queued = submit(ex, task_count, &ran);
    latch_wait_arrived(&l, 1);
    ASSERT_OK(cf_executor_shutdown(ex, false, false)); /* would hang if it waited */
    ASSERT(!cf_future_done(blocked));
    ASSERT(!cf_future_cancelled(queued));
    latch_open(&l);
    /* The work still completes, queued tasks included. */
    ASSERT_PTR_EQ((void *)result_of(blocked), &l);
    result_of(queued);
    ASSERT_EQ(atomic_load(&ran), 1);
    cf_future_release(blocked);
    cf_future_release(queued);
    cf_executor_free(ex);
    latch_destroy(&l);
}

TEST(workers_exit_on_their_own_after_nowait_shutdown)
{
    cf_thread_pool_options opts = {.max_workers = 2,
                                   .thread_name_prefix = "own"};
    cf_executor *ex = NULL;
    ASSERT_OK(cf_thread_pool_new(&opts, &ex));
    latch l;
    latch_init(&l);
    cf_future *fs[2] = {submit(ex, task_gate, &l), submit(ex, task_gate, &l)};
    latch_wait_arrived(&l, 2);
    ASSERT_EQ(count_named_threads("own_"), 2);
    ASSERT_OK(cf_executor_shutdown(ex, false, false));
    latch_open(&l);
    WAIT_UNTIL(count_named_threads("own_") == 0, 10);
    cf_future_release(fs[0]);
    cf_future_release(fs[1]);
    cf_executor_free(ex);
    latch_destroy(&l);
}

TEST(shutdown_with_wait_runs_queued_tasks_first)
{
    cf_executor *ex = pool_new(2);
    atomic_int ran = 0;
    enum { N = 200 };
    for (int i = 0; i < N; i++) {
        cf_future *f = submit(ex, task_count, &ran);
        cf_future_release(f); /* releasing does not cancel */
    }
    ASSERT_OK(cf_executor_shutdown(ex, true, false));
    ASSERT_EQ(atomic_load(&ran), N);
    cf_executor_free(ex);
}

TEST(shutdown_with_wait_joins_the_workers)
{
    cf_thread_pool_options opts = {.max_workers = 3,
                                   .thread_name_prefix = "joined"};
    cf_executor *ex = NULL;
    ASSERT_OK(cf_thread_pool_new(&opts, &ex));
    latch l;
    latch_init(&l);
    latch_open(&l);
    cf_future *fs[3];
    for (int i = 0; i < 3; i++)
        fs[i] = submit(ex, task_gate, &l);
    ASSERT_OK(cf_executor_shutdown(ex, true, false));
    for (int i = 0; i < 3; i++) {
        ASSERT(cf_future_done(fs[i]));
        cf_future_release(fs[i]);
    }
    /* The kernel may list a joined thread in /proc for a moment. */
    WAIT_UNTIL(count_named_threads("joined_") == 0, 5);
    cf_executor_free(ex);
    latch_destroy(&l);
}

TEST(cancel_futures_cancels_queued_not_running)
{
    cf_executor *ex = pool_new(1);
    latch l;
    latch_init(&l);
    atomic_int ran = 0;
    cf_future *running = submit(ex, task_gate, &l);
    cf_future *queued[3];
    for (int i = 0; i < 3; i++)
        queued[i] = submit(ex, task_count, &ran);
    latch_wait_arrived(&l, 1);
    ASSERT_OK(cf_executor_shutdown(ex, false, true));
    for (int i = 0; i < 3; i++) {
        ASSERT(cf_future_cancelled(queued[i])); /* at once */
        ASSERT_CODE(cf_future_result(queued[i], 0, NULL), CF_ECANCELLED);
    }
    ASSERT(cf_future_running(running));
    ASSERT(!cf_future_cancelled(running));
    latch_open(&l);
    ASSERT_PTR_EQ((void *)result_of(running), &l);
    cf_executor_free(ex);
    ASSERT_EQ(atomic_load(&ran), 0);
    for (int i = 0; i < 3; i++)
        cf_future_release(queued[i]);
    cf_future_release(running);
    latch_destroy(&l);
}

TEST(cancel_futures_with_wait_returns_after_running_task)
{
    cf_executor *ex = pool_new(1);
    latch l;
    latch_init(&l);
    latch_open(&l);
    cf_future *first = submit(ex, task_gate, &l);
    cf_future *rest[5];
    for (int i = 0; i < 5; i++)
        rest[i] = submit(ex, task_identity, NULL);
    ASSERT_OK(cf_executor_shutdown(ex, true, true));
    ASSERT(cf_future_done(first));
    for (int i = 0; i < 5; i++) {
        ASSERT(cf_future_done(rest[i])); /* ran or cancelled, none pending */
        cf_future_release(rest[i]);
    }
    cf_future_release(first);
    cf_executor_free(ex);
}

static void *spin_until_asked(void *arg, cf_call *call)
{
    latch_wait(arg);
    while (!cf_call_cancel_requested(call))
        ;
    return (void *)(intptr_t)1;
}

TEST(cancel_futures_asks_running_tasks_to_stop)
{
    cf_executor *ex = pool_new(1);
    latch l;
    latch_init(&l);
    cf_future *f = submit(ex, spin_until_asked, &l);
    latch_wait_arrived(&l, 1);
    latch_open(&l);
    ASSERT_OK(cf_executor_shutdown(ex, false, true));
    ASSERT_EQ(result_of(f), 1); /* would spin forever otherwise */
    cf_future_release(f);
    cf_executor_free(ex);
    latch_destroy(&l);
}

TEST(shutdown_timeout_reports_unfinished_then_completes)
{
    cf_executor *ex = pool_new(2);
    latch l;
    latch_init(&l);
    cf_future *fs[3];
    for (int i = 0; i < 3; i++)
        fs[i] = submit(ex, task_gate, &l);
    latch_wait_arrived(&l, 2);
    size_t unfinished = 0;
    double t0 = harness_now();
    ASSERT_CODE(cf_executor_shutdown_timeout(ex, 0.1, false, &unfinished),
                CF_ETIMEDOUT);
    ASSERT(harness_now() - t0 >= 0.099);
    ASSERT_EQ(unfinished, 3); /* two running, one queued */
    cf_future *g = (cf_future *)0x1;
    ASSERT_CODE(cf_executor_submit(ex, task_identity, NULL, &g), CF_ESHUTDOWN);
    ASSERT_CODE(cf_executor_shutdown_timeout(ex, 0, false, &unfinished),
                CF_ETIMEDOUT);
    ASSERT_EQ(unfinished, 3);
    latch_open(&l);
    unfinished = 99;
    ASSERT_OK(cf_executor_shutdown_timeout(ex, CF_FOREVER, false, &unfinished));
    for (int i = 0; i < 3; i++) {
        ASSERT(cf_future_done(fs[i]));
        ASSERT(!cf_future_cancelled(fs[i]));
        cf_future_release(fs[i]);
    }
    ASSERT_OK(cf_executor_shutdown_timeout(ex, 0, false, NULL));
    cf_executor_free(ex);
    latch_destroy(&l);
}

TEST(shutdown_timeout_with_cancel_counts_only_running)
{
    cf_executor *ex = pool_new(1);
    latch l;
    latch_init(&l);
    cf_future *fs[4];
    for (int i = 0; i < 4; i++)
        fs[i] = submit(ex, task_gate, &l);
    latch_wait_arrived(&l, 1);
    size_t unfinished = 0;
    ASSERT_CODE(cf_executor_shutdown_timeout(ex, 0.05, true, &unfinished),
                CF_ETIMEDOUT);
    ASSERT_EQ(unfinished, 1);
    for (int i = 1; i < 4; i++)
        ASSERT(cf_future_cancelled(fs[i]));
    latch_open(&l);
    ASSERT_OK(cf_executor_shutdown_timeout(ex, CF_FOREVER, false, NULL));
    for (int i = 0; i < 4; i++)
        cf_future_release(fs[i]);
    cf_executor_free(ex);
    latch_destroy(&l);
}

TEST(shutdown_timeout_rejects_nan)
{
    cf_executor *ex = pool_new(1);
    ASSERT_CODE(cf_executor_shutdown_timeout(ex, NAN, false, NULL), CF_EINVAL);
    cf_executor_free(ex);
}

/* ------------------------------------------------------------------------ */
/* The `with` forms                                                         */

typedef struct freeing {
    cf_executor *ex;
    latch *l;
    atomic_int *finished;
    int finished_seen_after_free;
} freeing;

static void *task_gate_then_finish(void *arg, cf_call *call)
{
    (void)call;
    freeing *fr = arg;
    latch_wait(fr->l);
    atomic_store(fr->finished, 1);
    return NULL;
}

static void *free_executor(helper *h)
{
    freeing *fr = h->ctx;
    cf_executor_free(fr->ex);
    fr->finished_seen_after_free = atomic_load(fr->finished);
    return NULL;
}

TEST(executor_free_waits_for_running_tasks)
{
    latch l;
    latch_init(&l);
    atomic_int finished = 0;
    freeing fr = {pool_new(1), &l, &finished, -1};
    cf_future *f = submit(fr.ex, task_gate_then_finish, &fr);
    latch_wait_arrived(&l, 1);
    helper h;
    helper_start(&h, free_executor, &fr);
    WAIT_BLOCKED(h.tid); /* blocked inside cf_executor_free */
    latch_open(&l);
    helper_join(&h);
    ASSERT_EQ(fr.finished_seen_after_free, 1);
    ASSERT(cf_future_done(f));
    cf_future_release(f);
    latch_destroy(&l);
}

TEST(executor_free_runs_queued_tasks)
{
    atomic_int ran = 0;
    cf_executor *ex = pool_new(2);
    for (int i = 0; i < 100; i++)
        cf_future_release(submit(ex, task_count, &ran));
    cf_executor_free(ex);
    ASSERT_EQ(atomic_load(&ran), 100);
}

TEST(executor_free_after_shutdown)
{
    cf_executor *ex = pool_new(2);
    ASSERT_OK(cf_executor_shutdown(ex, false, false));
    cf_executor_free(ex);
    cf_executor_free(NULL);
}

static int scoped_block(atomic_int *ran)
{
    CF_SCOPED_EXECUTOR ex = NULL;
    cf_thread_pool_options opts = {.thread_name_prefix = "scoped"};
    if (cf_thread_pool_new(&opts, &ex) != CF_OK)
        return 1;
    for (int i = 0; i < 50; i++) {
        cf_future *f = NULL;
        if (cf_executor_submit(ex, task_count, ran, &f) != CF_OK)
            return 1;
        cf_future_release(f);
    }
    return 0; /* ex is shut down (waiting) and freed here */
}

TEST(scoped_executor_is_freed_at_scope_exit)
{
    atomic_int ran = 0;
    ASSERT_EQ(scoped_block(&ran), 0);
    ASSERT_EQ(atomic_load(&ran), 50);
    /* The kernel may list a joined thread in /proc for a moment. */
    WAIT_UNTIL(count_named_threads("scoped_") == 0, 5);
}

TEST(scoped_executor_accepts_null)
{
    {
        CF_SCOPED_EXECUTOR ex = NULL;
        (void)ex;
    }
    cf_executor_freep(NULL);
}
