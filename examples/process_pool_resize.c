/* process_pool_resize.c - a process pool sized to its load.
 *
 * The pool starts with one worker and room for four (max_workers_limit).
 * cf_executor_set_max_workers() raises it to four for a burst: workers
 * start as the queued tasks need them. Once the burst is over, workers
 * idle longer than idle_timeout exit, down to min_workers. A shrink below
 * the current size and a raise past the limit (CF_EINVAL) end the tour.
 * Exits 0 when all of that held.
 */
#define _POSIX_C_SOURCE 200809L
#include <cfutures.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

/* Stands for a short piece of work: 20 ms, then the worker's pid. */
static void *work(void *arg, cf_call *call)
{
    (void)arg;
    (void)call;
    struct timespec ts = {0, 20 * 1000000L};
    nanosleep(&ts, NULL);
    return (void *)(intptr_t)getpid();
}

static int fail(const char *what, int rc)
{
    fprintf(stderr, "%s: %s\n", what, cf_strerror(rc));
    return 1;
}

/* Runs `n` (at most 16) tasks at once and waits for them; `*alive` gets
 * how many workers the pool had then. Returns the first error, or CF_OK. */
static int burst(cf_executor *ex, int n, int *alive)
{
    cf_future *fs[16];
    int rc = CF_OK, k = 0;
    for (; k < n && rc == CF_OK; k++)
        rc = cf_executor_submit(ex, work, NULL, &fs[k]);
    if (rc != CF_OK)
        k--; /* fs[k - 1] was not written */
    for (int i = 0; i < k; i++) {
        int r = cf_future_result(fs[i], 30, NULL);
        rc = rc != CF_OK ? rc : r;
        cf_future_release(fs[i]);
    }
    cf_executor_stats st;
    int s = cf_executor_get_stats(ex, &st);
    *alive = st.workers_alive;
    return rc != CF_OK ? rc : s;
}

int main(void)
{
    cf_process_pool_options o = {.max_workers = 1, .max_workers_limit = 4,
                                 .idle_timeout = 0.05, .min_workers = 1};
    cf_executor *ex = NULL;
    int rc = cf_process_pool_new(&o, &ex), alive = 0;
    if (rc != CF_OK)
        return fail("cf_process_pool_new", rc);
    if ((rc = burst(ex, 8, &alive)) != CF_OK)
        return fail("burst on one worker", rc);
    printf("max_workers 1: %d worker(s) alive after 8 tasks\n", alive);
    if ((rc = cf_executor_set_max_workers(ex, 4)) != CF_OK)
        return fail("cf_executor_set_max_workers(4)", rc);
    if ((rc = burst(ex, 16, &alive)) != CF_OK)
        return fail("burst on four workers", rc);
    printf("max_workers 4: %d worker(s) alive after 16 tasks\n", alive);
    /* Idle reaping: poll the stats for up to 10 s. */
    cf_executor_stats st = {0};
    for (int i = 0; i < 1000; i++) {
        if ((rc = cf_executor_get_stats(ex, &st)) != CF_OK)
            return fail("cf_executor_get_stats", rc);
        if (st.workers_alive <= o.min_workers)
            break;
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
    printf("idle for a while: %d worker(s) alive (min_workers %d)\n",
           st.workers_alive, o.min_workers);
    if (st.workers_alive != o.min_workers)
        return fail("idle reaping", CF_ETIMEDOUT);
    if ((rc = cf_executor_set_max_workers(ex, 2)) != CF_OK)
        return fail("cf_executor_set_max_workers(2)", rc);
    rc = cf_executor_set_max_workers(ex, 5);
    printf("raise past max_workers_limit: %s\n", cf_err_name(rc));
    if (rc != CF_EINVAL)
        return fail("cf_executor_set_max_workers(5)", rc);
    cf_executor_free(ex);
    return 0;
}
