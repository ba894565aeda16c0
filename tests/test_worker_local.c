/* test_worker_local.c - inside a process-pool worker, a task may build and
 * use executors of its own, while its parent's stay off limits. */
#include "reltest.h" /* first: it sets _GNU_SOURCE; RELTEST_TSAN */
#include "harness.h"

#include <stdint.h>

static void *triple(void *arg, cf_call *call)
{
    (void)call;
    return (void *)(3 * (intptr_t)arg);
}

/* Runs in a worker: sums triple(1..n) through a thread pool it creates. */
static void *sum_through_local_pool(void *arg, cf_call *call)
{
    intptr_t n = (intptr_t)arg, sum = 0;
    cf_executor *local;
    int rc = cf_thread_pool_new(&(cf_thread_pool_options){.max_workers = 2},
                                &local);
    if (rc != CF_OK)
        return cf_fail(call, 1, "thread pool in worker: %s", cf_err_name(rc));
    for (intptr_t i = 1; i <= n; i++) {
        cf_future *f;
        void *v;
        rc = cf_executor_submit(local, triple, (void *)i, &f);
        if (rc == CF_OK) {
            rc = cf_future_result(f, 10, &v);
            cf_future_release(f);
        }
        if (rc != CF_OK) {
            cf_executor_free(local);
            return cf_fail(call, 2, "local submit: %s", cf_err_name(rc));
        }
        sum += (intptr_t)v;
    }
    cf_executor_free(local);
    return (void *)sum;
}

static void run_in(cf_start_method method)
{
    cf_executor *pp;
    ASSERT_OK(cf_process_pool_new(
        &(cf_process_pool_options){.max_workers = 1, .start_method = method},
        &pp));
    cf_future *f;
    void *v = NULL;
    ASSERT_OK(cf_executor_submit(pp, sum_through_local_pool, (void *)10, &f));
    cf_error e = {0};
    int rc = cf_future_result(f, 30, &v);
    if (rc != CF_OK)
        cf_future_exception(f, 0, &e);
    ASSERT_CODE(rc, CF_OK);
    ASSERT_EQ((intptr_t)v, 3 * 55);
    cf_future_release(f);
    cf_executor_free(pp);
}

TEST(task_in_exec_worker_uses_its_own_thread_pool)
{
    run_in(CF_START_EXEC);
}

TEST(task_in_forked_worker_uses_its_own_thread_pool)
{
    /* TSan cannot follow threads started in a forked child of a threaded
     * parent; the exec'd case above covers the same code under TSan. */
    if (RELTEST_TSAN) {
        printf("skipped: threads in a forked child under TSan\n");
        return;
    }
    run_in(CF_START_FORK);
}
