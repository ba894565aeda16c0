/* test_cancel_ladder.c - cf_executor_cancel() on thread pools and custom
 * executors: a queued task is cancelled at once, a running one that polls
 * its flag stops within the grace period, one that ignores it is left
 * running (a thread cannot be killed), a done future is left alone, bad
 * arguments. Process pools (the kill rung): test_process_ladder.c.
 */
#include "harness.h"

#include <stdatomic.h>

static latch gate;
static atomic_int ran;

static void *wait_gate(void *arg, cf_call *call)
{
    (void)call;
    latch_wait(&gate);
    atomic_fetch_add(&ran, 1);
    return arg;
}

/* Spins until its cancel flag rises (30 s at most); returns 1 if it did. */
static void *until_cancelled(void *arg, cf_call *call)
{
    (void)arg;
    atomic_fetch_add(&ran, 1);
    double end = harness_now() + 30;
    while (!cf_call_cancel_requested(call))
        if (harness_now() > end)
            return (void *)0;
    return (void *)1;
}

static void *identity(void *arg, cf_call *call)
{
    (void)call;
    return arg;
}

static cf_executor *threads(int n)
{
    cf_thread_pool_options o = {.max_workers = n};
    cf_executor *ex = NULL;
    ASSERT_OK(cf_thread_pool_new(&o, &ex));
    return ex;
}

TEST(ladder_cancels_a_queued_task_at_once)
{
    latch_init(&gate);
    atomic_store(&ran, 0);
    cf_executor *ex = threads(1);
    cf_future *busy = NULL, *queued = NULL;
    ASSERT_OK(cf_executor_submit(ex, wait_gate, NULL, &busy));
    latch_wait_arrived(&gate, 1);
    ASSERT_OK(cf_executor_submit(ex, wait_gate, NULL, &queued));
    cf_cancel_outcome o = CF_CANCEL_STILL_RUNNING;
    ASSERT_OK(cf_executor_cancel(ex, queued, CF_FOREVER, &o));
    ASSERT_EQ(o, CF_CANCEL_QUEUED);
    ASSERT(cf_future_cancelled(queued));
    latch_open(&gate);
    ASSERT_OK(cf_future_result(busy, 30, NULL));
    cf_executor_free(ex);
    ASSERT_EQ(atomic_load(&ran), 1); /* the cancelled one never ran */
    cf_future_release(busy);
    cf_future_release(queued);
    latch_destroy(&gate);
}

TEST(ladder_stops_a_running_task_that_polls_its_flag)
{
    atomic_store(&ran, 0);
    cf_executor *ex = threads(1);
    cf_future *f = NULL;
    ASSERT_OK(cf_executor_submit(ex, until_cancelled, NULL, &f));
    WAIT_UNTIL(atomic_load(&ran) == 1, 30);
    cf_cancel_outcome o = CF_CANCEL_WAS_DONE;
    ASSERT_OK(cf_executor_cancel(ex, f, 30, &o));
    ASSERT_EQ(o, CF_CANCEL_STOPPED);
    void *v = NULL;
    ASSERT_OK(cf_future_result(f, 0, &v));
    ASSERT_EQ((intptr_t)v, 1); /* it saw the request */
    cf_future_release(f);
    cf_executor_free(ex);
}

TEST(ladder_leaves_a_thread_task_ignoring_its_flag_running)
{
    latch_init(&gate);
    cf_executor *ex = threads(1);
    cf_future *f = NULL;
    ASSERT_OK(cf_executor_submit(ex, wait_gate, (void *)7, &f));
    latch_wait_arrived(&gate, 1);
    double t0 = harness_now();
    cf_cancel_outcome o = CF_CANCEL_WAS_DONE;
    ASSERT_OK(cf_executor_cancel(ex, f, 0.05, &o));
    ASSERT_EQ(o, CF_CANCEL_STILL_RUNNING);
    ASSERT(harness_now() - t0 < 10);
    ASSERT(cf_future_running(f));
    latch_open(&gate);
    void *v = NULL;
    ASSERT_OK(cf_future_result(f, 30, &v));
    ASSERT_EQ((intptr_t)v, 7);
    cf_future_release(f);
    cf_executor_free(ex);
    latch_destroy(&gate);
}

TEST(ladder_leaves_a_done_future_alone)
{
    cf_executor *ex = threads(1);
    cf_future *f = NULL;
    ASSERT_OK(cf_executor_submit(ex, identity, NULL, &f));
    ASSERT_OK(cf_future_result(f, 30, NULL));
    cf_cancel_outcome o = CF_CANCEL_KILLED;
    ASSERT_OK(cf_executor_cancel(ex, f, 0, &o));
    ASSERT_EQ(o, CF_CANCEL_WAS_DONE);
    ASSERT(!cf_future_cancelled(f));
    cf_future_release(f);
    cf_executor_free(ex);
}

/* A queue that never runs its tasks: the future stays pending. */
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

TEST(ladder_cancels_a_custom_executors_pending_task)
{
    cf_executor *ex = NULL;
    ASSERT_OK(cf_executor_new(&never_ops, NULL, &ex));
    cf_future *f = NULL;
    ASSERT_OK(cf_executor_submit(ex, until_cancelled, NULL, &f));
    cf_cancel_outcome o = CF_CANCEL_WAS_DONE;
    ASSERT_OK(cf_executor_cancel(ex, f, 0, &o));
    ASSERT_EQ(o, CF_CANCEL_QUEUED);
    cf_future_release(f);
    cf_executor_free(ex);
}

TEST(ladder_bad_arguments_are_einval)
{
    cf_executor *ex = threads(1);
    cf_future *f = NULL;
    ASSERT_OK(cf_future_new(&f));
    ASSERT_EQ(cf_executor_cancel(NULL, f, 0, NULL), CF_EINVAL);
    ASSERT_EQ(cf_executor_cancel(ex, NULL, 0, NULL), CF_EINVAL);
    ASSERT_EQ(cf_executor_cancel(ex, f, -1, NULL), CF_EINVAL);
    ASSERT_EQ(cf_executor_cancel(ex, f, NAN, NULL), CF_EINVAL);
    /* A bare future, pending: cancelled like a queued task. */
    ASSERT_OK(cf_executor_cancel(ex, f, 0, NULL));
    ASSERT(cf_future_cancelled(f));
    cf_future_release(f);
    cf_executor_free(ex);
}
