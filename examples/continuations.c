/* continuations.c - composing futures without blocking a thread: then,
 * when_all, when_any, and how failure and cancellation travel.
 *
 *   squares of 1..4, each +1 by a continuation, summed when all are done
 *   a failing task whose continuation never runs, then a recovery
 *   when_any between a task and a "deadline" nobody completes, cancelled
 *
 * Only the final results are waited for; every step in between runs in a
 * pool worker (or inline) as soon as its input is done. */
#include <cfutures.h>
#include <stdint.h>
#include <stdio.h>

static void *square(void *arg, cf_call *call)
{
    (void)call;
    return (void *)((intptr_t)arg * (intptr_t)arg);
}
static void *plus_one(void *arg, cf_call *call)
{
    (void)call;
    return (void *)((intptr_t)arg + 1);
}
static void *fails(void *arg, cf_call *call)
{
    return cf_fail(call, 42, "no data for %ld", (long)(intptr_t)arg);
}
/* when_all's value is the array of its inputs, all done. */
static void *sum(cf_future *all, void *n, cf_call *call)
{
    void *v;
    intptr_t total = 0;
    if (cf_future_result(all, 0, &v) != CF_OK)
        return cf_fail(call, 1, "an input failed");
    cf_future *const *inputs = v;
    for (intptr_t i = 0; i < (intptr_t)n; i++)
        if (cf_future_result(inputs[i], 0, &v) == CF_OK)
            total += (intptr_t)v;
    return (void *)total;
}
/* Runs whatever the outcome: turns a failure into a default value. */
static void *or_zero(cf_future *done, void *arg, cf_call *call)
{
    void *v;
    cf_error err;
    (void)arg, (void)call;
    if (cf_future_exception(done, 0, &err) == CF_OK && err.code != 0)
        printf("recovered from: %s\n", err.message);
    return cf_future_result(done, 0, &v) == CF_OK ? v : (void *)0;
}

int main(void)
{
    cf_executor *ex = NULL;
    cf_future *plus[4], *all = NULL, *total = NULL, *bad = NULL, *next = NULL,
              *safe = NULL, *race[2] = {NULL, NULL}, *any = NULL;
    void *v = NULL;
    int failures = 0;
    if (cf_thread_pool_new(NULL, &ex) != CF_OK)
        return 1;
    for (intptr_t i = 0; i < 4; i++) {
        cf_future *sq;
        if (cf_executor_submit(ex, square, (void *)(i + 1), &sq) != CF_OK ||
            cf_future_then(sq, ex, plus_one, &plus[i]) != CF_OK)
            return 1;
        cf_future_release(sq); /* the continuation keeps it */
    }
    if (cf_when_all(plus, 4, &all) != CF_OK ||
        cf_future_then_always(all, NULL, sum, (void *)4, &total) != CF_OK)
        return 1;
    if (cf_future_result(total, CF_FOREVER, &v) != CF_OK || (intptr_t)v != 34)
        failures++;
    printf("sum of (i*i + 1) for i in 1..4 = %ld\n", (long)(intptr_t)v);

    /* A failure skips cf_future_then's function and travels on as is. */
    if (cf_executor_submit(ex, fails, (void *)7, &bad) != CF_OK ||
        cf_future_then(bad, ex, plus_one, &next) != CF_OK ||
        cf_future_then_always(next, ex, or_zero, NULL, &safe) != CF_OK)
        return 1;
    if (cf_future_result(next, CF_FOREVER, NULL) != CF_ETASK ||
        cf_future_result(safe, CF_FOREVER, &v) != CF_OK || v != NULL)
        failures++;

    /* Cancelling a combinator cancels the inputs only it waits on. */
    if (cf_future_new(&race[0]) != CF_OK ||        /* the "deadline" */
        cf_executor_submit(ex, square, (void *)9, &race[1]) != CF_OK ||
        cf_when_any(race, 2, &any) != CF_OK)
        return 1;
    if (cf_future_cancel(any)) /* lost if square(9) finished first */
        printf("when_any cancelled: deadline cancelled too: %s\n",
               cf_future_cancelled(race[0]) ? "yes" : "no");
    else if (cf_future_result(any, 0, &v) != CF_OK || v != race[1])
        failures++;

    cf_future *drop[] = {plus[0], plus[1], plus[2], plus[3], all, total,
                         bad, next, safe, any, race[0], race[1]};
    for (size_t i = 0; i < sizeof drop / sizeof *drop; i++)
        cf_future_release(drop[i]);
    cf_executor_free(ex);
    return failures ? 1 : 0;
}
