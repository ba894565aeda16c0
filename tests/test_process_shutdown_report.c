/* test_process_shutdown_report.c - cf_executor_shutdown_report() on
 * process pools: tasks waiting are cancelled, one that ends during the
 * wait completes, one still busy at the deadline is killed (SIGTERM), one
 * that ignores SIGTERM is killed by SIGKILL, a worker that crashes during
 * the shutdown hangs nothing, an idle pool reports nothing. Run over both
 * transports (procpool_test.h).
 */
#include "procpool_test.h"

static void *task_sleep_ms(void *arg, cf_call *call)
{
    (void)call;
    long ms = (long)(intptr_t)arg;
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
    return (void *)(intptr_t)getpid();
}

/* path_codec: ignores SIGTERM, writes its pid, then waits forever. */
static void *task_deaf_to_sigterm(void *arg, cf_call *call)
{
    signal(SIGTERM, SIG_IGN);
    return task_pid_then_wait(arg, call);
}

/* Sleeps 200 ms, then aborts: a crash while the pool shuts down. */
static void *task_crash_later(void *arg, cf_call *call)
{
    /* Late enough for the other worker to have started its task however
     * slow the build (the test waits for both to run). */
    task_sleep_ms((void *)(intptr_t)(200 * harness_slowdown()), call);
    (void)arg;
    abort();
}

static size_t total(const cf_shutdown_report *r)
{
    return r->cancelled + r->completed + r->stopped + r->killed +
           r->still_running;
}

TEST_TIMEOUT(process_report_cancels_waiting_completes_and_kills, 60)
{
    tmpdir d;
    tmpdir_make(&d);
    char base[256];
    tmpdir_file(&d, "t", base, sizeof base);
    cf_executor *ex = pool_new(2, CF_START_EXEC);
    cf_future *stuck = submit_path(ex, task_pid_then_wait, base);
    pid_t pid = await_pid(base);
    cf_future *soon = NULL;
    ASSERT_OK(cf_executor_submit(ex, task_sleep_ms, (void *)(intptr_t)150,
                                 &soon));
    WAIT_UNTIL(cf_future_running(soon), 30);
    enum { N = 4 };
    cf_future *fs[N];
    for (int i = 0; i < N; i++)
        ASSERT_OK(cf_executor_submit(ex, task_square, (void *)(intptr_t)i,
                                     &fs[i]));
    cf_shutdown_options so = {.wait = 0.6, .grace = 0.05};
    cf_shutdown_report r;
    ASSERT_OK(cf_executor_shutdown_report(ex, &so, &r));
    ASSERT(r.can_kill && r.exact);
    ASSERT_EQ(total(&r), N + 2);
    ASSERT_EQ(r.killed, 1);
    ASSERT_EQ(r.still_running, 0);
    /* The squares waited: cancelled, unless a worker got to them first. */
    ASSERT_EQ(r.cancelled + r.completed, N + 1);
    ASSERT_EQ(cf_future_result(stuck, 0, NULL), CF_EBROKEN_PROCESS_POOL);
    ASSERT_OK(cf_future_result(soon, 0, NULL));
    ASSERT(kill(pid, 0) != 0); /* reaped */
    for (int i = 0; i < N; i++)
        cf_future_release(fs[i]);
    cf_future_release(stuck);
    cf_future_release(soon);
    cf_executor_free(ex);
    tmpdir_remove(&d);
}

TEST_TIMEOUT(process_report_kills_a_worker_deaf_to_sigterm, 60)
{
    tmpdir d;
    tmpdir_make(&d);
    char base[256];
    tmpdir_file(&d, "t", base, sizeof base);
    cf_executor *ex = pool_new(1, CF_START_EXEC);
    cf_future *deaf = submit_path(ex, task_deaf_to_sigterm, base);
    await_pid(base);
    cf_shutdown_options so = {.kill_after = 0.2};
    cf_shutdown_report r;
    double t0 = harness_now();
    ASSERT_OK(cf_executor_shutdown_report(ex, &so, &r));
    ASSERT(harness_now() - t0 >= 0.19); /* SIGTERM alone did not do */
    ASSERT_EQ(r.killed, 1);
    ASSERT_EQ(total(&r), 1);
    ASSERT_EQ(cf_future_result(deaf, 0, NULL), CF_EBROKEN_PROCESS_POOL);
    cf_future_release(deaf);
    cf_executor_free(ex);
    tmpdir_remove(&d);
}

TEST_TIMEOUT(process_report_survives_a_crash_during_the_shutdown, 60)
{
    cf_executor *ex = pool_new(2, CF_START_EXEC);
    cf_future *crash = NULL, *sleeper = NULL;
    ASSERT_OK(cf_executor_submit(ex, task_crash_later, NULL, &crash));
    ASSERT_OK(cf_executor_submit(ex, task_sleep_ms, (void *)(intptr_t)30000,
                                 &sleeper));
    WAIT_UNTIL(cf_future_running(crash) && cf_future_running(sleeper), 30);
    cf_shutdown_options so = {.grace = 5, .kill_after = 0.1};
    cf_shutdown_report r;
    double t0 = harness_now();
    ASSERT_OK(cf_executor_shutdown_report(ex, &so, &r));
    ASSERT(harness_now() - t0 < 5 + 5);
    ASSERT_EQ(total(&r), 2);
    ASSERT_EQ(r.still_running, 0);
    ASSERT_EQ(cf_future_result(crash, 0, NULL), CF_EBROKEN_PROCESS_POOL);
    ASSERT(cf_future_done(sleeper));
    cf_future_release(crash);
    cf_future_release(sleeper);
    cf_executor_free(ex);
}

TEST_TIMEOUT(process_report_of_an_idle_pool_is_all_zero, 60)
{
    cf_executor *ex = pool_new(1, CF_START_EXEC);
    cf_future *f = NULL;
    ASSERT_OK(cf_executor_submit(ex, task_square, (void *)(intptr_t)3, &f));
    ASSERT_OK(cf_future_result(f, 30, NULL));
    cf_shutdown_report r;
    ASSERT_OK(cf_executor_shutdown_report(ex, NULL, &r));
    ASSERT_EQ(total(&r), 0);
    cf_future_release(f);
    cf_executor_free(ex);
}
