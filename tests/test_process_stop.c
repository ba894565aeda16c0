/* test_process_stop.c - cooperative cancellation of process-pool tasks: a
 * running task's cf_call_cancel_requested() turns true in its worker when
 * the parent asks it to stop (cf_executor_cancel()'s grace period, the
 * shutdown report's request), so a task that polls it ends early, within
 * the grace period, and its worker lives on (same pid). The flag is the
 * task's own: the next task on that worker starts with it false. CMake
 * runs these over both transports and every worker kind
 * (procpool_test.h); one test starts workers by fork.
 */
#define PP_WORKER_KINDS 1 /* see procpool_test.h */
#include "procpool_test.h"

/* Polls its flag in a tight loop (as a compute loop would) for up to 30 s:
 * returns its pid if the flag turned true, else 0. */
static void *task_poll_stop(void *arg, cf_call *call)
{
    (void)arg;
    double end = harness_now() + 30;
    unsigned long i = 0;
    while (!cf_call_cancel_requested(call)) {
        if ((++i & 1023) == 0 && harness_now() > end)
            return NULL;
    }
    return (void *)(intptr_t)getpid();
}

/* Its flag as it starts, and its pid: pid * 2 + flag. */
static void *task_flag_now(void *arg, cf_call *call)
{
    (void)arg;
    return (void *)(intptr_t)(getpid() * 2 + cf_call_cancel_requested(call));
}

static void pp_register_names(void)
{
    PP_NAME(task_poll_stop);
    PP_NAME(task_flag_now);
    PP_NAME(task_getpid);
    PP_NAME(task_square);
}

/* Submits task_poll_stop and waits until it runs. */
static cf_future *start_poller(cf_executor *ex)
{
    cf_future *f = NULL;
    ASSERT_OK(cf_executor_submit(ex, task_poll_stop, NULL, &f));
    WAIT_UNTIL(cf_future_running(f) || cf_future_done(f), 30);
    return f;
}

/* The flag of the next task on the (only) worker is false again, and
 * that worker is `pid`. */
static void check_next_task_clean(cf_executor *ex, pid_t pid)
{
    cf_future *g = NULL;
    void *v = NULL;
    ASSERT_OK(cf_executor_submit(ex, task_flag_now, NULL, &g));
    ASSERT_OK(cf_future_result(g, 30, &v));
    ASSERT_EQ((intptr_t)v, (intptr_t)pid * 2); /* same worker, flag down */
    cf_future_release(g);
}

static void cancel_reaches_polling_task(cf_start_method method)
{
    cf_executor *ex = pool_new(1, method);
    cf_future *f = start_poller(ex);
    cf_cancel_outcome o = CF_CANCEL_WAS_DONE;
    ASSERT_OK(cf_executor_cancel(ex, f, 20, &o));
    ASSERT_EQ(o, CF_CANCEL_STOPPED); /* not killed after the grace */
    void *v = NULL;
    ASSERT_OK(cf_future_result(f, 0, &v));
    pid_t pid = (pid_t)(intptr_t)v;
    ASSERT(pid > 0); /* it saw its flag */
    check_next_task_clean(ex, pid);
    cf_future_release(f);
    cf_executor_free(ex);
}

TEST_TIMEOUT(process_stop_cancel_reaches_a_polling_task, 60)
{
    cancel_reaches_polling_task(CF_START_EXEC);
}

TEST_TIMEOUT(process_stop_cancel_reaches_a_forked_worker, 60)
{
    cancel_reaches_polling_task(CF_START_FORK);
}

/* The same worker stops a second task as well: the flag is per task and
 * a request for an earlier task does not linger. */
TEST_TIMEOUT(process_stop_each_task_is_asked_once, 90)
{
    cf_executor *ex = pool_new(1, CF_START_EXEC);
    pid_t first = 0;
    for (int i = 0; i < 3; i++) {
        cf_future *f = start_poller(ex);
        cf_cancel_outcome o = CF_CANCEL_WAS_DONE;
        ASSERT_OK(cf_executor_cancel(ex, f, 20, &o));
        ASSERT_EQ(o, CF_CANCEL_STOPPED);
        void *v = NULL;
        ASSERT_OK(cf_future_result(f, 0, &v));
        if (i == 0)
            first = (pid_t)(intptr_t)v;
        ASSERT_EQ((intptr_t)v, (intptr_t)first);
        check_next_task_clean(ex, first);
        cf_future_release(f);
    }
    cf_executor_free(ex);
}

/* The shutdown report's "ask running tasks to stop" reaches the worker:
 * the task ends within the grace period, counted as stopped, not killed. */
TEST_TIMEOUT(process_stop_shutdown_report_stops_a_polling_task, 60)
{
    cf_executor *ex = pool_new(1, CF_START_EXEC);
    cf_future *f = start_poller(ex);
    cf_shutdown_options so = {.wait = 0, .grace = 20, .kill_after = 1};
    cf_shutdown_report r;
    ASSERT_OK(cf_executor_shutdown_report(ex, &so, &r));
    ASSERT_EQ(r.stopped, (size_t)1);
    ASSERT_EQ(r.killed, (size_t)0);
    void *v = NULL;
    ASSERT_OK(cf_future_result(f, 0, &v));
    ASSERT((intptr_t)v > 0);
    cf_future_release(f);
    cf_executor_free(ex);
}

/* Tasks waiting at the worker behind the stopped one run normally (over
 * socket + shared memory they were sent already; a STOP frame over pipes
 * travels alone, since tasks go only to a free worker). */
/* shutdown(cancel_futures) raises the flag of the running task, as on a
 * thread pool: the polling task ends at once, with its result. */
TEST_TIMEOUT(process_stop_shutdown_cancel_futures_stops_a_polling_task, 60)
{
    cf_executor *ex = pool_new(1, CF_START_EXEC);
    cf_future *f = start_poller(ex);
    ASSERT_OK(cf_executor_shutdown(ex, true, true));
    void *v = NULL;
    ASSERT_OK(cf_future_result(f, 0, &v));
    ASSERT((intptr_t)v > 0); /* it saw its flag, not its 30 s bound */
    cf_future_release(f);
    cf_executor_free(ex);
}

TEST_TIMEOUT(process_stop_tasks_behind_the_stopped_one_run, 60)
{
    cf_executor *ex = pool_new(1, CF_START_EXEC);
    cf_future *f = start_poller(ex);
    enum { N = 8 };
    cf_future *fs[N];
    for (int i = 0; i < N; i++)
        ASSERT_OK(cf_executor_submit(ex, task_square, (void *)(intptr_t)i,
                                     &fs[i]));
    cf_cancel_outcome o = CF_CANCEL_WAS_DONE;
    ASSERT_OK(cf_executor_cancel(ex, f, 20, &o));
    ASSERT_EQ(o, CF_CANCEL_STOPPED);
    for (int i = 0; i < N; i++) {
        void *v = NULL;
        ASSERT_OK(cf_future_result(fs[i], 30, &v));
        ASSERT_EQ((intptr_t)v, (intptr_t)i * i);
        cf_future_release(fs[i]);
    }
    void *v = NULL;
    ASSERT_OK(cf_future_result(f, 0, &v));
    check_next_task_clean(ex, (pid_t)(intptr_t)v);
    cf_future_release(f);
    cf_executor_free(ex);
}
