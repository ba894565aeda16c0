/* nested_waits.c - tasks that wait for tasks of their own pool.
 *
 * The spec's "Deadlocks" section shows two programs that hang in Python:
 * a task on a one-worker pool that submits and waits (wait_on_future),
 * and two tasks that wait for each other (wait_on_a / wait_on_b). Here the
 * first completes, because a worker whose task waits for a task still
 * queued in its own pool runs that task itself, and the second reports
 * CF_EDEADLK to one of the two waits instead of hanging. The same rule
 * lets a recursive divide-and-conquer (fib) run on any number of workers.
 */
#include <cfutures.h>
#include <stdint.h>
#include <stdio.h>

static cf_executor *pool;
static cf_future *a, *b, *go; /* go: set once a and b are stored */

static void *power(void *arg, cf_call *call)
{
    (void)call;
    return (void *)((intptr_t)arg * (intptr_t)arg);
}

static void *wait_on_future(void *arg, cf_call *call)
{
    cf_future *f = NULL;
    void *v = NULL;
    int rc = cf_executor_submit(pool, power, arg, &f);
    if (rc == CF_OK) /* runs power() here: the one worker is this one */
        rc = cf_future_result(f, CF_FOREVER, &v);
    cf_future_release(f);
    return rc ? cf_fail(call, rc, "%s", cf_strerror(rc)) : v;
}

/* Waits for the other one; one of the two waits gets CF_EDEADLK. */
static void *wait_on_other(void *other, cf_call *call)
{
    void *v = NULL;
    int rc = cf_future_result(go, CF_FOREVER, NULL);
    cf_future *f = *(cf_future **)other;
    if (rc == CF_OK)
        rc = cf_future_result(f, CF_FOREVER, &v);
    if (rc == CF_EDEADLK) {
        printf("  %s: %s\n", f == a ? "wait_on_a" : "wait_on_b",
               cf_strerror(rc));
        return (void *)(intptr_t)(f == a ? 6 : 5);
    }
    return rc ? cf_fail(call, rc, "%s", cf_strerror(rc)) : v;
}

/* fib(n) the slow way: two tasks, then waits for both. */
static void *fib(void *arg, cf_call *call)
{
    intptr_t n = (intptr_t)arg;
    cf_future *x = NULL, *y = NULL;
    void *vx = NULL, *vy = NULL;
    if (n < 2)
        return arg;
    int rc = cf_executor_submit(pool, fib, (void *)(n - 1), &x);
    if (rc == CF_OK)
        rc = cf_executor_submit(pool, fib, (void *)(n - 2), &y);
    if (rc == CF_OK && (rc = cf_future_result(x, CF_FOREVER, &vx)) == CF_OK)
        rc = cf_future_result(y, CF_FOREVER, &vy);
    cf_future_release(x);
    cf_future_release(y);
    return rc ? cf_fail(call, rc, "%s", cf_strerror(rc))
              : (void *)((intptr_t)vx + (intptr_t)vy);
}

int main(void)
{
    cf_thread_pool_options one = {.max_workers = 1}, two = {.max_workers = 2};
    cf_future *f = NULL;
    void *v = NULL;
    int failures = 0;

    if (cf_thread_pool_new(&one, &pool) != CF_OK ||
        cf_executor_submit(pool, wait_on_future, (void *)5, &f) != CF_OK)
        return 1;
    failures += cf_future_result(f, CF_FOREVER, &v) != CF_OK || v != (void *)25;
    printf("wait_on_future on one worker: %ld\n", (long)(intptr_t)v);
    cf_future_release(f);

    printf("wait_on_b / wait_on_a on one worker:\n");
    if (cf_future_new(&go) != CF_OK ||
        cf_executor_submit(pool, wait_on_other, &b, &a) != CF_OK ||
        cf_executor_submit(pool, wait_on_other, &a, &b) != CF_OK ||
        cf_future_set_result(go, NULL) != CF_OK)
        return 1;
    failures += cf_future_result(a, CF_FOREVER, &v) != CF_OK;
    printf("  a = %ld\n", (long)(intptr_t)v);
    failures += cf_future_result(b, CF_FOREVER, &v) != CF_OK;
    printf("  b = %ld\n", (long)(intptr_t)v);
    cf_future_release(a);
    cf_future_release(b);
    cf_future_release(go);
    cf_executor_free(pool);

    if (cf_thread_pool_new(&two, &pool) != CF_OK ||
        cf_executor_submit(pool, fib, (void *)20, &f) != CF_OK)
        return 1;
    failures += cf_future_result(f, CF_FOREVER, &v) != CF_OK ||
                (intptr_t)v != 6765;
    printf("fib(20) by 21,891 nested tasks on two workers: %ld\n",
           (long)(intptr_t)v);
    cf_future_release(f);
    cf_executor_free(pool);
    return failures ? 1 : 0;
}
