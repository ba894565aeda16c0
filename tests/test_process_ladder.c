/* test_process_ladder.c - cf_executor_cancel() on process pools: a task
 * waiting at a worker is cancelled at once and never runs; a running task
 * that ends within the grace period keeps its result; one still running
 * after it is killed with its worker, its future cancelled, and the tasks
 * waiting at that worker carry on; a cancel racing the task's end and
 * one racing the kill of its time limit give one consistent answer and
 * never break the pool. Run over both transports (procpool_test.h).
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

TEST_TIMEOUT(process_ladder_cancels_a_task_waiting_at_a_worker, 60)
{
    tmpdir d;
    tmpdir_make(&d);
    char base[256], proof[256];
    tmpdir_file(&d, "t", base, sizeof base);
    tmpdir_file(&d, "ran", proof, sizeof proof);
    cf_executor *ex = pool_new(1, CF_START_EXEC);
    cf_future *busy = submit_path(ex, task_pid_then_wait, base);
    await_pid(base);
    cf_future *queued = submit_path(ex, task_touch, proof);
    cf_cancel_outcome o = CF_CANCEL_WAS_DONE;
    ASSERT_OK(cf_executor_cancel(ex, queued, 30, &o));
    ASSERT_EQ(o, CF_CANCEL_QUEUED);
    ASSERT(cf_future_cancelled(queued));
    release_go(base);
    ASSERT_OK(cf_future_result(busy, 30, NULL));
    cf_executor_free(ex);
    ASSERT(!file_exists(proof)); /* it never ran */
    cf_future_release(busy);
    cf_future_release(queued);
    tmpdir_remove(&d);
}

TEST_TIMEOUT(process_ladder_kills_a_task_still_running_after_grace, 60)
{
    tmpdir d;
    tmpdir_make(&d);
    char base[256];
    tmpdir_file(&d, "t", base, sizeof base);
    cf_executor *ex = pool_new(1, CF_START_EXEC); /* no survive option */
    cf_future *stuck = submit_path(ex, task_pid_then_wait, base);
    pid_t pid = await_pid(base);
    enum { N = 4 };
    cf_future *fs[N];
    for (int i = 0; i < N; i++)
        ASSERT_OK(cf_executor_submit(ex, task_square, (void *)(intptr_t)i,
                                     &fs[i]));
    cf_cancel_outcome o = CF_CANCEL_WAS_DONE;
    ASSERT_OK(cf_executor_cancel(ex, stuck, 0.1, &o));
    ASSERT_EQ(o, CF_CANCEL_KILLED);
    ASSERT(cf_future_cancelled(stuck));
    ASSERT_EQ(cf_future_result(stuck, 0, NULL), CF_ECANCELLED);
    WAIT_UNTIL(kill(pid, 0) != 0, 30);
    for (int i = 0; i < N; i++) { /* they waited at the killed worker */
        void *v = NULL;
        ASSERT_OK(cf_future_result(fs[i], 30, &v));
        ASSERT_EQ((intptr_t)v, (intptr_t)i * i);
        cf_future_release(fs[i]);
    }
    cf_future_release(stuck);
    cf_executor_free(ex);
    tmpdir_remove(&d);
}

TEST_TIMEOUT(process_ladder_task_ending_within_grace_keeps_its_result, 60)
{
    cf_executor *ex = pool_new(1, CF_START_EXEC);
    cf_future *f = NULL;
    ASSERT_OK(cf_executor_submit(ex, task_sleep_ms, (void *)(intptr_t)200,
                                 &f));
    WAIT_UNTIL(cf_future_running(f), 30);
    cf_cancel_outcome o = CF_CANCEL_WAS_DONE;
    ASSERT_OK(cf_executor_cancel(ex, f, 30, &o));
    ASSERT_EQ(o, CF_CANCEL_STOPPED);
    ASSERT_OK(cf_future_result(f, 0, NULL));
    cf_future_release(f);
    cf_executor_free(ex);
}

/* The grace period ends as the task does: killed means cancelled, stopped
 * means its result; the pool goes on either way. */
TEST_TIMEOUT(process_ladder_cancel_racing_the_end_of_the_task, 120)
{
    cf_executor *ex = pool_new(2, CF_START_EXEC);
    int killed = 0, stopped = 0;
    /* Each kill costs a worker start: rounds scale with the build. */
    size_t rounds = harness_scaled(20, 4);
    for (size_t i = 0; i < rounds; i++) {
        cf_future *f = NULL;
        ASSERT_OK(cf_executor_submit(ex, task_sleep_ms, (void *)(intptr_t)20,
                                     &f));
        WAIT_UNTIL(cf_future_running(f) || cf_future_done(f), 30);
        cf_cancel_outcome o = CF_CANCEL_WAS_DONE;
        ASSERT_OK(cf_executor_cancel(ex, f, 0.019, &o));
        if (o == CF_CANCEL_KILLED) {
            ASSERT_EQ(cf_future_result(f, 0, NULL), CF_ECANCELLED);
            killed++;
        } else if (o == CF_CANCEL_STOPPED || o == CF_CANCEL_WAS_DONE) {
            ASSERT_OK(cf_future_result(f, 0, NULL));
            stopped++;
        } else {
            ASSERT(!"unexpected outcome");
        }
        cf_future_release(f);
    }
    ASSERT_EQ(killed + stopped, (int)rounds);
    cf_future *g = NULL;
    ASSERT_OK(cf_executor_submit(ex, task_square, (void *)(intptr_t)5, &g));
    ASSERT_OK(cf_future_result(g, 30, NULL));
    cf_future_release(g);
    cf_executor_free(ex);
}

/* A cancel whose kill races the kill of the task's time limit: one wins,
 * the future ends cancelled or with CF_ETASK_TIMEOUT, nothing hangs. */
TEST_TIMEOUT(process_ladder_cancel_racing_the_time_limit_kill, 120)
{
    cf_executor *ex = pool_new(1, CF_START_EXEC);
    for (int i = 0; i < 10; i++) {
        cf_submit_options so = {.timeout = 0.05};
        cf_future *f = NULL;
        ASSERT_OK(cf_executor_submit_opts(ex, task_sleep_ms,
                                          (void *)(intptr_t)30000, &so, &f));
        WAIT_UNTIL(cf_future_running(f), 30);
        cf_cancel_outcome o = CF_CANCEL_WAS_DONE;
        ASSERT_OK(cf_executor_cancel(ex, f, 0.04, &o));
        int rc = cf_future_result(f, 30, NULL);
        if (o == CF_CANCEL_KILLED) {
            ASSERT_EQ(rc, CF_ECANCELLED);
        } else {
            ASSERT_EQ(o, CF_CANCEL_STOPPED); /* the limit's kill won */
            ASSERT_EQ(rc, CF_ETASK_TIMEOUT);
        }
        cf_future_release(f);
    }
    cf_future *g = NULL;
    ASSERT_OK(cf_executor_submit(ex, task_square, (void *)(intptr_t)5, &g));
    ASSERT_OK(cf_future_result(g, 30, NULL));
    cf_future_release(g);
    cf_executor_free(ex);
}
