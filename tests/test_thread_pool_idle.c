/* test_thread_pool_idle.c - idle reaping on a thread pool: threads idle
 * longer than idle_timeout exit, down to min_workers; later work starts
 * threads again (a burst still runs at once), and each new thread runs the
 * initializer and the thread_main hook like the first ones. */
#define _GNU_SOURCE
#include "coretest.h"

static cf_executor *reaping_pool(int max_workers, int min_workers,
                                 const char *prefix)
{
    cf_thread_pool_options opts = {.max_workers = max_workers,
                                   .min_workers = min_workers,
                                   .idle_timeout = 0.05,
                                   .thread_name_prefix = prefix};
    cf_executor *ex = NULL;
    ASSERT_OK(cf_thread_pool_new(&opts, &ex));
    return ex;
}

TEST(idle_threads_exit_after_idle_timeout)
{
    cf_executor *ex = reaping_pool(4, 0, "reap");
    burst_runs_at_once(ex, 4);
    WAIT_UNTIL(count_named_threads("reap_") == 0, 10);
    cf_executor_stats st;
    ASSERT_OK(cf_executor_get_stats(ex, &st));
    ASSERT_EQ(st.workers_alive, 0);
    cf_executor_free(ex);
}

TEST(min_workers_stay_when_idle)
{
    cf_executor *ex = reaping_pool(4, 2, "keep");
    burst_runs_at_once(ex, 4);
    WAIT_UNTIL(count_named_threads("keep_") == 2, 10);
    let_time_pass(0.3); /* six idle timeouts */
    ASSERT_EQ(count_named_threads("keep_"), 2);
    cf_executor_free(ex);
}

TEST(threads_stay_without_idle_timeout)
{
    cf_thread_pool_options opts = {.max_workers = 3,
                                   .thread_name_prefix = "stay"};
    cf_executor *ex = NULL;
    ASSERT_OK(cf_thread_pool_new(&opts, &ex));
    burst_runs_at_once(ex, 3);
    let_time_pass(0.2);
    ASSERT_EQ(count_named_threads("stay_"), 3);
    cf_executor_free(ex);
}

TEST(bursts_run_at_once_after_reaping)
{
    cf_executor *ex = reaping_pool(5, 1, "again");
    for (int round = 0; round < 4; round++) {
        burst_runs_at_once(ex, 5);
        WAIT_UNTIL(count_named_threads("again_") == 1, 10);
        burst_runs_at_once(ex, 2 + round);
        WAIT_UNTIL(count_named_threads("again_") == 1, 10);
    }
    cf_executor_free(ex);
}

/* Submissions paced so that threads are reaped between them, some while
 * one arrives: every task runs once. */
static void *task_mark(void *arg, cf_call *call)
{
    (void)call;
    atomic_fetch_add((atomic_int *)arg, 1);
    return NULL;
}

TEST_TIMEOUT(tasks_arriving_as_threads_retire_all_run_once, 120)
{
    cf_thread_pool_options opts = {.max_workers = 3,
                                   .idle_timeout = 0.0005,
                                   .thread_name_prefix = "race"};
    cf_executor *ex = NULL;
    ASSERT_OK(cf_thread_pool_new(&opts, &ex));
    enum { N = 600 };
    static atomic_int runs[N];
    cf_future *fs[3];
    for (int i = 0; i < N; i += 3) {
        for (int j = 0; j < 3; j++)
            fs[j] = submit(ex, task_mark, &runs[i + j]);
        for (int j = 0; j < 3; j++) {
            result_of(fs[j]);
            cf_future_release(fs[j]);
        }
        if (i % 4 == 0)
            let_time_pass(0.0005 * (i % 5)); /* around the timeout */
    }
    ASSERT_OK(cf_executor_shutdown(ex, true, false));
    for (int i = 0; i < N; i++)
        ASSERT_EQ(atomic_load(&runs[i]), 1);
    ASSERT(count_named_threads("race_") == 0);
    cf_executor_free(ex);
}

/* Each thread, the first ones and those started after reaping, runs the
 * initializer and the thread_main hook once, and its worker-local state
 * is its own. */
static atomic_int initialized, hooked, hook_returned;

static int count_init(void *arg)
{
    (void)arg;
    atomic_fetch_add(&initialized, 1);
    return 0;
}

static void counting_main(void (*run)(void *), void *run_arg, void *ctx)
{
    (void)ctx;
    atomic_fetch_add(&hooked, 1);
    run(run_arg);
    atomic_fetch_add(&hook_returned, 1);
}

TEST(restarted_threads_run_the_initializer_and_hook)
{
    cf_thread_pool_options opts = {.max_workers = 2,
                                   .idle_timeout = 0.02,
                                   .initializer = count_init,
                                   .thread_main = counting_main,
                                   .thread_name_prefix = "hook"};
    cf_executor *ex = NULL;
    ASSERT_OK(cf_thread_pool_new(&opts, &ex));
    for (int round = 1; round <= 3; round++) {
        burst_runs_at_once(ex, 2);
        WAIT_UNTIL(count_named_threads("hook_") == 0, 10);
        WAIT_UNTIL(atomic_load(&hook_returned) == 2 * round, 10);
        ASSERT_EQ(atomic_load(&initialized), 2 * round);
        ASSERT_EQ(atomic_load(&hooked), 2 * round);
    }
    cf_executor_free(ex);
}

TEST(shutdown_joins_threads_that_retired)
{
    cf_executor *ex = reaping_pool(3, 0, "join");
    for (int i = 0; i < 3; i++) {
        burst_runs_at_once(ex, 3);
        WAIT_UNTIL(count_named_threads("join_") == 0, 10);
    }
    /* The harness fails the test if a thread is left over. */
    cf_executor_free(ex);
}
