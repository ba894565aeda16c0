/* test_timeout.c - per-task time limits on thread pools and custom
 * executors (cf_submit_options.timeout, cf_thread_pool_options.
 * task_timeout): the cancel flag at the limit, the overrun reported when
 * the task returns, time queued not counted, the pool default and its
 * override, a limit expiring as the task returns, bad options.
 * Process pools: test_process_timeout.c.
 */
#include "harness.h"

#include <stdatomic.h>

static atomic_int saw_flag;

/* Spins until its cancel flag is raised (or 30 s pass); counts in
 * saw_flag that it saw the flag. */
static void *until_cancelled(void *arg, cf_call *call)
{
    (void)arg;
    double end = harness_now() + 30;
    while (!cf_call_cancel_requested(call))
        if (harness_now() > end)
            return (void *)0;
    atomic_fetch_add(&saw_flag, 1);
    return (void *)1;
}

/* Runs for `arg` microseconds (busy), then returns 2 if it saw its cancel
 * flag, else 1. */
static void *busy_for(void *arg, cf_call *call)
{
    double end = harness_now() + (double)(intptr_t)arg / 1e6;
    while (harness_now() < end)
        ;
    return (void *)(intptr_t)(cf_call_cancel_requested(call) ? 2 : 1);
}

static latch gate;

static void *wait_gate(void *arg, cf_call *call)
{
    (void)call;
    latch_wait(&gate);
    return arg;
}

static void free_int(void *p)
{
    free(p);
}

/* Returns a malloc'd value (freed by the future), after its flag rose. */
static void *malloc_after_cancel(void *arg, cf_call *call)
{
    until_cancelled(arg, call);
    int *v = malloc(sizeof *v);
    if (v) {
        *v = 7;
        cf_call_set_result_free(call, free_int);
    }
    return v;
}

static cf_executor *threads(int n, double task_timeout)
{
    cf_thread_pool_options o = {.max_workers = n,
                                .task_timeout = task_timeout};
    cf_executor *ex = NULL;
    ASSERT_OK(cf_thread_pool_new(&o, &ex));
    return ex;
}

static cf_future *submit_limited(cf_executor *ex, cf_fn fn, void *arg,
                                 double limit)
{
    cf_submit_options o = {.timeout = limit};
    cf_future *f = NULL;
    ASSERT_OK(cf_executor_submit_opts(ex, fn, arg, &o, &f));
    return f;
}

TEST(thread_task_past_limit_sees_flag_and_fails_with_timeout)
{
    atomic_store(&saw_flag, 0);
    cf_executor *ex = threads(2, 0);
    cf_future *f = submit_limited(ex, until_cancelled, NULL, 0.05);
    ASSERT_EQ(cf_future_result(f, 30, NULL), CF_ETASK_TIMEOUT);
    cf_error e;
    ASSERT_OK(cf_future_exception(f, 0, &e));
    ASSERT_EQ(e.code, CF_ETASK_TIMEOUT);
    ASSERT(strstr(e.message, "until_cancelled") != NULL);
    ASSERT(strstr(e.message, "0.05 s") != NULL);
    ASSERT_EQ(atomic_load(&saw_flag), 1);
    cf_future_release(f);
    cf_executor_free(ex);
}

TEST(thread_task_within_limit_keeps_its_result)
{
    cf_executor *ex = threads(1, 0);
    cf_future *f = submit_limited(ex, busy_for, (void *)(intptr_t)100, 30);
    void *v = NULL;
    ASSERT_OK(cf_future_result(f, 30, &v));
    ASSERT_EQ((intptr_t)v, 1);
    cf_future_release(f);
    cf_executor_free(ex);
}

TEST(thread_time_queued_does_not_count)
{
    latch_init(&gate);
    cf_executor *ex = threads(1, 0);
    cf_future *first = NULL;
    ASSERT_OK(cf_executor_submit(ex, wait_gate, (void *)1, &first));
    latch_wait_arrived(&gate, 1);
    /* The limit must hold the task's own run however slow the build. */
    double limit = 0.2 * harness_slowdown();
    cf_future *second = submit_limited(ex, busy_for, (void *)(intptr_t)0,
                                       limit);
    /* The second task stays queued well past its limit. */
    double until = harness_now() + 2 * limit;
    WAIT_UNTIL(harness_now() > until, 5);
    latch_open(&gate);
    void *v = NULL;
    ASSERT_OK(cf_future_result(second, 30, &v));
    ASSERT_EQ((intptr_t)v, 1);
    ASSERT_OK(cf_future_result(first, 30, NULL));
    cf_future_release(first);
    cf_future_release(second);
    cf_executor_free(ex);
    latch_destroy(&gate);
}

TEST(thread_pool_default_limit_applies_to_plain_submits)
{
    atomic_store(&saw_flag, 0);
    cf_executor *ex = threads(1, 0.05);
    cf_future *f = NULL;
    ASSERT_OK(cf_executor_submit(ex, until_cancelled, NULL, &f));
    ASSERT_EQ(cf_future_result(f, 30, NULL), CF_ETASK_TIMEOUT);
    ASSERT_EQ(atomic_load(&saw_flag), 1);
    cf_future_release(f);
    cf_executor_free(ex);
}

TEST(thread_forever_overrides_the_pool_default)
{
    cf_executor *ex = threads(1, 0.01);
    cf_future *f = submit_limited(ex, busy_for, (void *)(intptr_t)100000,
                                  CF_FOREVER);
    void *v = NULL;
    ASSERT_OK(cf_future_result(f, 30, &v));
    ASSERT_EQ((intptr_t)v, 1); /* no flag raised */
    cf_future_release(f);
    cf_executor_free(ex);
}

TEST(thread_overrun_frees_the_result_it_replaces)
{
    cf_executor *ex = threads(1, 0);
    cf_future *f = submit_limited(ex, malloc_after_cancel, NULL, 0.02);
    void *v = (void *)1;
    ASSERT_EQ(cf_future_result(f, 30, &v), CF_ETASK_TIMEOUT);
    cf_future_release(f); /* ASan/valgrind: the int was freed */
    cf_executor_free(ex);
}

/* A limit expiring as the task returns gives one answer: a task that saw
 * its flag raised is reported late, never as a success. */
TEST(thread_limit_expiring_as_the_task_returns_is_consistent)
{
    cf_executor *ex = threads(2, 0);
    enum { N = 200 };
    cf_future *fs[N];
    for (int i = 0; i < N; i++)
        fs[i] = submit_limited(ex, busy_for, (void *)(intptr_t)1000, 0.001);
    int late = 0, ok = 0;
    for (int i = 0; i < N; i++) {
        void *v = NULL;
        int rc = cf_future_result(fs[i], 30, &v);
        if (rc == CF_OK) {
            ASSERT_EQ((intptr_t)v, 1); /* it never saw the flag */
            ok++;
        } else {
            ASSERT_EQ(rc, CF_ETASK_TIMEOUT);
            late++;
        }
        cf_future_release(fs[i]);
    }
    ASSERT_EQ(ok + late, N);
    ASSERT(late > 0); /* 1 ms of work against a 1 ms limit */
    cf_executor_free(ex);
}

TEST(thread_cancelled_while_queued_never_runs_nor_leaks)
{
    latch_init(&gate);
    cf_executor *ex = threads(1, 0);
    cf_future *first = NULL;
    ASSERT_OK(cf_executor_submit(ex, wait_gate, (void *)1, &first));
    latch_wait_arrived(&gate, 1);
    cf_future *f = submit_limited(ex, until_cancelled, NULL, 0.01);
    ASSERT(cf_future_cancel(f));
    latch_open(&gate);
    ASSERT_OK(cf_future_result(first, 30, NULL));
    ASSERT_EQ(cf_future_result(f, 0, NULL), CF_ECANCELLED);
    cf_future_release(first);
    cf_future_release(f);
    cf_executor_free(ex);
    latch_destroy(&gate);
}

static int inline_submit(void *impl, cf_future *f, cf_fn fn, void *arg,
                         const cf_codec *codec)
{
    (void)impl;
    (void)codec;
    cf_future_run(f, fn, arg); /* a cancelled f: fn does not run */
    return CF_OK;
}

static const cf_executor_ops inline_ops = {.kind = "inline",
                                           .submit = inline_submit};

TEST(custom_executor_task_past_limit_is_reported)
{
    atomic_store(&saw_flag, 0);
    cf_executor *ex = NULL;
    ASSERT_OK(cf_executor_new(&inline_ops, NULL, &ex));
    cf_future *f = submit_limited(ex, until_cancelled, NULL, 0.02);
    void *v = NULL;
    ASSERT_EQ(cf_future_result(f, 30, &v), CF_ETASK_TIMEOUT);
    ASSERT_EQ(atomic_load(&saw_flag), 1);
    cf_future_release(f);
    cf_executor_free(ex);
}

TEST(bad_time_limits_are_einval)
{
    cf_executor *ex = threads(1, 0);
    cf_future *f = NULL;
    cf_submit_options o = {.timeout = -1};
    ASSERT_EQ(cf_executor_submit_opts(ex, busy_for, NULL, &o, &f),
              CF_EINVAL);
    o.timeout = NAN;
    ASSERT_EQ(cf_executor_submit_opts(ex, busy_for, NULL, &o, &f),
              CF_EINVAL);
    ASSERT_EQ(cf_executor_submit_opts(NULL, busy_for, NULL, NULL, &f),
              CF_EINVAL);
    cf_executor_free(ex);
    cf_thread_pool_options to = {.task_timeout = -0.5};
    ASSERT_EQ(cf_thread_pool_new(&to, &ex), CF_EINVAL);
    to.task_timeout = NAN;
    ASSERT_EQ(cf_thread_pool_new(&to, &ex), CF_EINVAL);
    cf_process_pool_options po = {.task_timeout = -1};
    ASSERT_EQ(cf_process_pool_new(&po, &ex), CF_EINVAL);
}
