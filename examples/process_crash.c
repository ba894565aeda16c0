/* process_crash.c - what a caller sees when a worker process dies.
 *
 * Python's BrokenProcessPool: a worker killed from outside (here by the
 * task itself, with SIGKILL, as the kernel's out-of-memory killer would)
 * breaks the pool. The task it was running and every task still queued
 * fail with CF_EBROKEN_PROCESS_POOL, whose message names the worker's pid,
 * the signal, and the task; later submits fail the same way. Nothing hangs.
 * Then the same crash with survive_worker_death: only that task fails, a
 * new worker starts and the rest carry on. Exits 0 when all of that held.
 */
#define _POSIX_C_SOURCE 200809L
#include <cfutures.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <unistd.h>

static void *square(void *arg, cf_call *call)
{
    (void)call;
    intptr_t x = (intptr_t)arg;
    return (void *)(x * x);
}

static void *die(void *arg, cf_call *call)
{
    (void)arg;
    (void)call;
    kill(getpid(), SIGKILL);
    pause();
    return NULL;
}

/* Submits `die` between two squares and reports each outcome. Returns how
 * many futures ended as `expect` says (1: ok, 0: broken). */
static int run(bool survive)
{
    cf_process_pool_options opts = {.max_workers = 1,
                                    .survive_worker_death = survive};
    cf_executor *pool;
    cf_fn fns[3] = {square, die, square};
    cf_future *f[3] = {NULL, NULL, NULL};
    int ok = 0, err;
    if ((err = cf_process_pool_new(&opts, &pool)) != CF_OK) {
        fprintf(stderr, "process_crash: %s\n", cf_strerror(err));
        return -1;
    }
    for (int i = 0; i < 3; i++)
        if ((err = cf_executor_submit(pool, fns[i], (void *)7, &f[i])) !=
            CF_OK)
            fprintf(stderr, "submit: %s\n", cf_strerror(err));
    for (int i = 0; i < 3 && f[i]; i++) {
        void *value;
        cf_error e;
        err = cf_future_result(f[i], 60, &value);
        if (err == CF_OK) {
            printf("  task %d: %ld\n", i, (long)(intptr_t)value);
        } else {
            cf_future_exception(f[i], 0, &e);
            printf("  task %d: %s: %s\n", i, cf_err_name(err), e.message);
        }
        /* Broken mode: tasks 1 and 2 break. Surviving: only task 1. */
        bool want_ok = i == 0 || (survive && i == 2);
        ok += (err == CF_OK) == want_ok &&
              (err == CF_OK || err == CF_EBROKEN_PROCESS_POOL);
        cf_future_release(f[i]);
    }
    cf_future *late = NULL;
    err = cf_executor_submit(pool, square, (void *)3, &late);
    printf("  a later submit: %s\n", cf_err_name(err));
    ok += survive ? err == CF_OK : err == CF_EBROKEN_PROCESS_POOL;
    if (late) {
        cf_future_result(late, 60, NULL);
        cf_future_release(late);
    }
    cf_executor_free(pool);
    return ok;
}

int main(void)
{
    printf("default (a dead worker breaks the pool):\n");
    int a = run(false);
    printf("survive_worker_death:\n");
    int b = run(true);
    return a == 4 && b == 4 ? 0 : 1;
}
