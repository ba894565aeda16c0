/* test_process_timeout.c - per-task time limits on process pools: a task
 * past its limit is killed with its worker and fails with
 * CF_ETASK_TIMEOUT naming it and the limit, a replacement takes the next
 * task, the tasks waiting at that worker carry on (the pool does not
 * break, with or without survive_worker_death), time queued does not
 * count, the pool default and its override, a limit expiring as the task
 * returns, map chunks. Run over both transports (procpool_test.h).
 */
#include "procpool_test.h"

/* Sleeps `arg` milliseconds, then returns its pid. */
static void *task_sleep_ms(void *arg, cf_call *call)
{
    (void)call;
    long ms = (long)(intptr_t)arg;
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
    return (void *)(intptr_t)getpid();
}

static cf_executor *pool_with(int workers, double task_timeout)
{
    cf_process_pool_options o = {.max_workers = workers,
                                 .transport = test_transport(),
                                 .task_timeout = task_timeout};
    cf_executor *ex = NULL;
    ASSERT_OK(cf_process_pool_new(&o, &ex));
    return ex;
}

static cf_future *submit_limited(cf_executor *ex, cf_fn fn, void *arg,
                                 const cf_codec *codec, double limit)
{
    cf_submit_options o = {.codec = codec, .timeout = limit};
    cf_future *f = NULL;
    ASSERT_OK(cf_executor_submit_opts(ex, fn, arg, &o, &f));
    return f;
}

TEST_TIMEOUT(process_task_past_limit_is_killed_and_fails_with_timeout, 60)
{
    tmpdir d;
    tmpdir_make(&d);
    char base[256];
    tmpdir_file(&d, "t", base, sizeof base);
    cf_executor *ex = pool_with(1, 0);
    /* Waits for a go file that never comes; the limit leaves it time to
     * write its pid first however slow the build. */
    double limit = 0.3 * harness_slowdown();
    cf_future *f = submit_limited(ex, task_pid_then_wait, base, &path_codec,
                                  limit);
    pid_t pid = await_pid(base);
    cf_error e;
    ASSERT_EQ(outcome(f, 30, NULL, &e), CF_ETASK_TIMEOUT);
    ASSERT_EQ(e.code, CF_ETASK_TIMEOUT);
    ASSERT(contains(e.message, "task_pid_then_wait"));
    char said[64];
    snprintf(said, sizeof said, "limit of %g s", limit);
    ASSERT(contains(e.message, said));
    /* The worker is gone; a replacement runs the next task. */
    WAIT_UNTIL(kill(pid, 0) != 0, 30);
    cf_future *g = NULL;
    ASSERT_OK(cf_executor_submit(ex, task_getpid, NULL, &g));
    void *v = NULL;
    ASSERT_OK(cf_future_result(g, 30, &v));
    ASSERT((pid_t)(intptr_t)v != pid);
    cf_future_release(f);
    cf_future_release(g);
    cf_executor_free(ex);
    tmpdir_remove(&d);
}

TEST_TIMEOUT(process_tasks_waiting_at_the_killed_worker_carry_on, 60)
{
    tmpdir d;
    tmpdir_make(&d);
    char base[256];
    tmpdir_file(&d, "t", base, sizeof base);
    cf_executor *ex = pool_with(1, 0); /* survive_worker_death off */
    cf_future *slow = submit_limited(ex, task_pid_then_wait, base,
                                     &path_codec, 0.3);
    enum { N = 8 };
    cf_future *fs[N];
    for (int i = 0; i < N; i++)
        ASSERT_OK(cf_executor_submit(ex, task_square, (void *)(intptr_t)i,
                                     &fs[i]));
    ASSERT_EQ(cf_future_result(slow, 30, NULL), CF_ETASK_TIMEOUT);
    for (int i = 0; i < N; i++) {
        void *v = NULL;
        ASSERT_OK(cf_future_result(fs[i], 30, &v));
        ASSERT_EQ((intptr_t)v, (intptr_t)i * i);
        cf_future_release(fs[i]);
    }
    cf_future_release(slow);
    cf_executor_free(ex);
    tmpdir_remove(&d);
}

TEST_TIMEOUT(process_task_within_limit_keeps_its_result, 60)
{
    cf_executor *ex = pool_with(1, 0);
    cf_future *f = submit_limited(ex, task_square, (void *)(intptr_t)9, NULL,
                                  30);
    void *v = NULL;
    ASSERT_OK(cf_future_result(f, 30, &v));
    ASSERT_EQ((intptr_t)v, 81);
    cf_future_release(f);
    cf_executor_free(ex);
}

TEST_TIMEOUT(process_time_queued_does_not_count, 60)
{
    tmpdir d;
    tmpdir_make(&d);
    char base[256];
    tmpdir_file(&d, "t", base, sizeof base);
    cf_executor *ex = pool_with(1, 0);
    cf_future *first = submit_path(ex, task_pid_then_wait, base);
    await_pid(base);
    /* Runs 100 ms of its 0.4 s, after 0.6 s in the queue. */
    cf_future *second = submit_limited(ex, task_sleep_ms,
                                       (void *)(intptr_t)100, NULL, 0.4);
    double until = harness_now() + 0.6;
    WAIT_UNTIL(harness_now() > until, 5);
    release_go(base);
    ASSERT_OK(cf_future_result(second, 30, NULL));
    ASSERT_OK(cf_future_result(first, 30, NULL));
    cf_future_release(first);
    cf_future_release(second);
    cf_executor_free(ex);
    tmpdir_remove(&d);
}

TEST_TIMEOUT(process_pool_default_limit_and_its_override, 60)
{
    cf_executor *ex = pool_with(2, 0.2);
    cf_future *dflt = NULL;
    ASSERT_OK(cf_executor_submit(ex, task_sleep_ms, (void *)(intptr_t)30000,
                                 &dflt));
    cf_future *over = submit_limited(ex, task_sleep_ms,
                                     (void *)(intptr_t)400, NULL, CF_FOREVER);
    ASSERT_EQ(cf_future_result(dflt, 30, NULL), CF_ETASK_TIMEOUT);
    ASSERT_OK(cf_future_result(over, 30, NULL));
    cf_future_release(dflt);
    cf_future_release(over);
    cf_executor_free(ex);
}

TEST_TIMEOUT(process_map_chunk_past_the_pool_limit_fails_with_timeout, 60)
{
    cf_executor *ex = pool_with(1, 0.2);
    void *args[2] = {(void *)(intptr_t)1, (void *)(intptr_t)30000};
    cf_map_options mo = {.chunksize = 2};
    cf_map *m = NULL;
    ASSERT_OK(cf_executor_map(ex, task_sleep_ms, args, 2, &mo, &m));
    void *v = NULL;
    cf_error e;
    ASSERT_EQ(cf_map_next(m, &v, &e), CF_ETASK_TIMEOUT);
    ASSERT(contains(e.message, "map chunk"));
    cf_map_free(m);
    cf_executor_free(ex);
}

/* A limit expiring as the task returns: each future ends either with the
 * task's result or with CF_ETASK_TIMEOUT; the pool never breaks and the
 * next task runs. */
TEST_TIMEOUT(process_limit_expiring_as_the_task_returns_is_consistent, 120)
{
    cf_executor *ex = pool_with(2, 0);
    /* Each late one costs a worker start: rounds scale with the build. */
    enum { MAX = 40 };
    size_t n = harness_scaled(MAX, 8);
    cf_future *fs[MAX];
    for (size_t i = 0; i < n; i++)
        fs[i] = submit_limited(ex, task_sleep_ms, (void *)(intptr_t)20, NULL,
                               0.020);
    int ok = 0, late = 0;
    for (size_t i = 0; i < n; i++) {
        int rc = cf_future_result(fs[i], 60, NULL);
        if (rc == CF_OK)
            ok++;
        else {
            ASSERT_EQ(rc, CF_ETASK_TIMEOUT);
            late++;
        }
        cf_future_release(fs[i]);
    }
    ASSERT_EQ(ok + late, (int)n);
    cf_future *g = NULL;
    ASSERT_OK(cf_executor_submit(ex, task_square, (void *)(intptr_t)4, &g));
    ASSERT_OK(cf_future_result(g, 30, NULL));
    cf_future_release(g);
    cf_executor_free(ex);
}
