/* test_shutdown_report.c - cf_executor_shutdown_report() on thread pools
 * and custom executors: each unfinished task counted once (cancelled,
 * completed, stopped, still running), never a wait past the deadline, an
 * idle pool, the fallback for executors the core cannot look into, bad
 * options. Process pools (the kill rungs): test_process_shutdown_report.c.
 */
#include "harness.h"

#include <sched.h>
#include <stdatomic.h>

static latch gate;
static atomic_int started;

static void *wait_gate(void *arg, cf_call *call)
{
    (void)call;
    atomic_fetch_add(&started, 1);
    latch_wait(&gate);
    return arg;
}

/* Runs 400 ms (times the build's slowdown), ignoring its flag: long
 * enough to be unfinished when the shutdown starts, however slowly the
 * other tasks start (under valgrind and load that took more than 400 ms:
 * it ended before the report began), short enough to end within its
 * `wait`. */
static void *busy_400ms(void *arg, cf_call *call)
{
    (void)call;
    atomic_fetch_add(&started, 1);
    double end = harness_now() + 0.4 * harness_slowdown();
    while (harness_now() < end)
        sched_yield(); /* valgrind runs one thread at a time: share it */
    return arg;
}

static void *until_cancelled(void *arg, cf_call *call)
{
    (void)arg;
    atomic_fetch_add(&started, 1);
    double end = harness_now() + 30;
    while (!cf_call_cancel_requested(call)) {
        if (harness_now() > end)
            return (void *)0;
        sched_yield(); /* see busy_400ms */
    }
    return (void *)1;
}

TEST_TIMEOUT(report_counts_each_unfinished_thread_task_once, 60)
{
    latch_init(&gate);
    atomic_store(&started, 0);
    cf_thread_pool_options po = {.max_workers = 3};
    cf_executor *ex = NULL;
    ASSERT_OK(cf_thread_pool_new(&po, &ex));
    cf_future *done_soon = NULL, *polite = NULL, *deaf = NULL, *queued = NULL;
    ASSERT_OK(cf_executor_submit(ex, busy_400ms, NULL, &done_soon));
    ASSERT_OK(cf_executor_submit(ex, until_cancelled, NULL, &polite));
    ASSERT_OK(cf_executor_submit(ex, wait_gate, NULL, &deaf));
    WAIT_UNTIL(atomic_load(&started) == 3, 30);
    ASSERT_OK(cf_executor_submit(ex, busy_400ms, NULL, &queued));
    /* Long enough for done_soon's 0.4 s however slow the build. */
    double wait = 2.0 * harness_slowdown();
    cf_shutdown_options so = {.wait = wait, .grace = 0.1};
    cf_shutdown_report r;
    memset(&r, 0xff, sizeof r);
    double t0 = harness_now();
    ASSERT_EQ(cf_executor_shutdown_report(ex, &so, &r), CF_ETIMEDOUT);
    ASSERT(harness_now() - t0 < wait + 0.1 + 5); /* never past the deadline */
    ASSERT_EQ(r.cancelled, 1);
    ASSERT_EQ(r.completed, 1);
    ASSERT_EQ(r.stopped, 1);
    ASSERT_EQ(r.killed, 0);
    ASSERT_EQ(r.still_running, 1);
    ASSERT(!r.can_kill);
    ASSERT(r.exact);
    ASSERT(cf_future_cancelled(queued));
    ASSERT(cf_future_running(deaf));
    ASSERT_EQ(cf_executor_submit(ex, busy_400ms, NULL, &queued),
              CF_ESHUTDOWN);
    latch_open(&gate);
    cf_executor_free(ex);
    void *v = NULL;
    ASSERT_OK(cf_future_result(polite, 0, &v));
    ASSERT_EQ((intptr_t)v, 1);
    cf_future_release(done_soon);
    cf_future_release(polite);
    cf_future_release(deaf);
    cf_future_release(queued);
    latch_destroy(&gate);
}

TEST(report_of_an_idle_thread_pool_is_all_zero)
{
    cf_executor *ex = NULL;
    ASSERT_OK(cf_thread_pool_new(NULL, &ex));
    cf_future *f = NULL;
    ASSERT_OK(cf_executor_submit(ex, busy_400ms, NULL, &f));
    ASSERT_OK(cf_future_result(f, 30, NULL));
    cf_shutdown_report r;
    ASSERT_OK(cf_executor_shutdown_report(ex, NULL, &r));
    ASSERT_EQ(r.cancelled + r.completed + r.stopped + r.killed +
                  r.still_running,
              0);
    ASSERT(r.exact);
    cf_future_release(f);
    cf_executor_free(ex);
}

/* A queue that never runs its tasks. */
static int never_submit(void *impl, cf_future *f, cf_fn fn, void *arg,
                        const cf_codec *codec)
{
    (void)impl;
    (void)f;
    (void)fn;
    (void)arg;
    (void)codec;
    return CF_OK;
}

static const cf_executor_ops never_ops = {.kind = "never",
                                          .submit = never_submit};

TEST(report_of_a_custom_executor_falls_back_to_shutdown_timeout)
{
    cf_executor *ex = NULL;
    ASSERT_OK(cf_executor_new(&never_ops, NULL, &ex));
    cf_shutdown_report r;
    memset(&r, 0xff, sizeof r);
    ASSERT_OK(cf_executor_shutdown_report(ex, NULL, &r));
    ASSERT(!r.exact);
    ASSERT(!r.can_kill);
    ASSERT_EQ(r.still_running, 0);
    cf_future *f = NULL;
    ASSERT_EQ(cf_executor_submit(ex, busy_400ms, NULL, &f), CF_ESHUTDOWN);
    cf_executor_free(ex);
}

TEST(report_bad_options_are_einval)
{
    cf_executor *ex = NULL;
    ASSERT_OK(cf_thread_pool_new(NULL, &ex));
    cf_shutdown_report r;
    cf_shutdown_options so = {.wait = -1};
    ASSERT_EQ(cf_executor_shutdown_report(ex, &so, &r), CF_EINVAL);
    so = (cf_shutdown_options){.grace = NAN};
    ASSERT_EQ(cf_executor_shutdown_report(ex, &so, &r), CF_EINVAL);
    so = (cf_shutdown_options){.kill_after = -0.5};
    ASSERT_EQ(cf_executor_shutdown_report(ex, &so, &r), CF_EINVAL);
    ASSERT_EQ(cf_executor_shutdown_report(ex, NULL, NULL), CF_EINVAL);
    ASSERT_EQ(cf_executor_shutdown_report(NULL, NULL, &r), CF_EINVAL);
    cf_future *f = NULL; /* nothing happened: still open */
    ASSERT_OK(cf_executor_submit(ex, busy_400ms, NULL, &f));
    ASSERT_OK(cf_future_result(f, 30, NULL));
    cf_future_release(f);
    cf_executor_free(ex);
}
