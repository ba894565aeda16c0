/* task_timeout.c - a time limit per task (cf_submit_options.timeout).
 *
 * On a process pool, a task that hangs is killed with its worker at its
 * limit: its future fails with CF_ETASK_TIMEOUT, the message naming the
 * task and the limit, and the other tasks carry on (a new worker takes
 * them). On a thread pool a thread cannot be killed: at the limit the
 * task's cf_call_cancel_requested() turns true, and a task that returns
 * late is reported as CF_ETASK_TIMEOUT. Exits 0 when all of that held.
 */
#define _POSIX_C_SOURCE 200809L
#include <cfutures.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

static void *square(void *arg, cf_call *call)
{
    (void)call;
    intptr_t x = (intptr_t)arg;
    return (void *)(x * x);
}

/* Stands for a call that never returns (a stuck network read). */
static void *hang(void *arg, cf_call *call)
{
    (void)arg;
    (void)call;
    struct timespec ts = {3600, 0};
    nanosleep(&ts, NULL);
    return NULL;
}

/* Works in small steps and stops when asked to. */
static void *cooperative(void *arg, cf_call *call)
{
    (void)arg;
    unsigned long steps = 0;
    while (!cf_call_cancel_requested(call))
        steps++;
    return (void *)(uintptr_t)steps;
}

static int check(const char *what, int rc, int want)
{
    if (rc == want)
        return 0;
    fprintf(stderr, "%s: %s, expected %s\n", what, cf_err_name(rc),
            cf_err_name(want));
    return 1;
}

int main(void)
{
    int bad = 0;
    cf_executor *procs = NULL, *threads = NULL;
    cf_process_pool_options po = {.max_workers = 1};
    if (cf_process_pool_new(&po, &procs) != CF_OK ||
        cf_thread_pool_new(NULL, &threads) != CF_OK)
        return 1;

    cf_submit_options limit = {.timeout = 0.2}; /* seconds of running */
    cf_future *stuck = NULL, *next = NULL, *slow = NULL;
    if (cf_executor_submit_opts(procs, hang, NULL, &limit, &stuck) != CF_OK ||
        cf_executor_submit(procs, square, (void *)(intptr_t)12, &next) !=
            CF_OK ||
        cf_executor_submit_opts(threads, cooperative, NULL, &limit, &slow) !=
            CF_OK)
        return 1;

    cf_error err;
    void *value = NULL;
    bad |= check("hung process task", cf_future_result(stuck, 30, NULL),
                 CF_ETASK_TIMEOUT);
    if (cf_future_exception(stuck, 0, &err) == CF_OK)
        printf("process pool: %s\n", err.message);
    bad |= check("the task after it", cf_future_result(next, 30, &value),
                 CF_OK);
    printf("process pool: the next task still ran: 12 * 12 = %ld\n",
           (long)(intptr_t)value);
    bad |= check("cooperative thread task", cf_future_result(slow, 30, NULL),
                 CF_ETASK_TIMEOUT);
    if (cf_future_exception(slow, 0, &err) == CF_OK)
        printf("thread pool: %s\n", err.message);

    cf_future_release(stuck);
    cf_future_release(next);
    cf_future_release(slow);
    cf_executor_free(procs);
    cf_executor_free(threads);
    return bad;
}
