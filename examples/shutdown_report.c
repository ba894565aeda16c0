/* shutdown_report.c - shut a pool down by a deadline and learn what
 * became of its work (cf_executor_shutdown_report).
 *
 * A process pool holds a task that hangs, one about to finish and a few
 * still queued (and first, a second hanging task is cancelled alone). The shutdown cancels the queued ones, lets the running
 * ones go on for `wait` seconds, asks them to stop, and after `grace`
 * (then `kill_after`) kills the workers still busy. The cancellation
 * ladder does the same for one task (cf_executor_cancel). Exits 0 when
 * every task was accounted for.
 */
#define _POSIX_C_SOURCE 200809L
#include <cfutures.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

static void *nap(void *arg, cf_call *call)
{
    (void)call;
    long ms = (long)(intptr_t)arg;
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
    return arg;
}

static int submit(cf_executor *ex, long ms, cf_future **f)
{
    return cf_executor_submit(ex, nap, (void *)(intptr_t)ms, f);
}

static void await_running(cf_future *f)
{
    while (!cf_future_running(f) && !cf_future_done(f)) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
}

int main(void)
{
    cf_executor *ex = NULL;
    cf_process_pool_options po = {.max_workers = 2};
    if (cf_process_pool_new(&po, &ex) != CF_OK)
        return 1;
    enum { N = 6 };
    cf_future *fs[N];
    /* Two tasks that would nap for an hour. */
    if (submit(ex, 3600000, &fs[0]) != CF_OK ||
        submit(ex, 3600000, &fs[1]) != CF_OK)
        return 1;
    await_running(fs[0]);
    await_running(fs[1]);

    /* One task: a cooperative request, 0.1 s of grace, then the kill. */
    cf_cancel_outcome how;
    if (cf_executor_cancel(ex, fs[1], 0.1, &how) != CF_OK ||
        how != CF_CANCEL_KILLED)
        return 1;
    printf("cancel ladder: the task was killed with its worker, "
           "its future cancelled: %s\n",
           cf_future_cancelled(fs[1]) ? "yes" : "no");

    /* A task about to finish, and three queued behind it. */
    for (int i = 2; i < N; i++)
        if (submit(ex, i == 2 ? 300 : 10, &fs[i]) != CF_OK)
            return 1;
    await_running(fs[2]);

    /* The whole pool: cancel the queued, 0.5 s for the running to end,
     * ask them to stop, 0.1 s, SIGTERM, 0.1 s, SIGKILL. */
    cf_shutdown_options so = {.wait = 0.5, .grace = 0.1, .kill_after = 0.1};
    cf_shutdown_report r;
    int rc = cf_executor_shutdown_report(ex, &so, &r);
    if (rc != CF_OK) {
        fprintf(stderr, "shutdown_report: %s\n", cf_strerror(rc));
        return 1;
    }
    printf("shutdown report: %zu cancelled before starting, %zu ran to the "
           "end, %zu stopped when asked, %zu killed, %zu still running\n",
           r.cancelled, r.completed, r.stopped, r.killed, r.still_running);
    size_t accounted = r.cancelled + r.completed + r.stopped + r.killed +
                       r.still_running;
    for (int i = 0; i < N; i++)
        cf_future_release(fs[i]);
    cf_executor_free(ex);
    /* All but the task the ladder cancelled were unfinished. */
    return accounted == N - 1 && r.killed == 1 ? 0 : 1;
}
