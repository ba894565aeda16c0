/* test_future.c - the future's state machine, result/exception with
 * timeouts, task failures, cancellation and the executor-author API. */
#define _GNU_SOURCE
#include "coretest.h"

#include <math.h>

/* ------------------------------------------------------------------------ */
/* States                                                                   */

TEST(new_future_is_pending)
{
    cf_future *f = future_new();
    ASSERT(!cf_future_running(f));
    ASSERT(!cf_future_done(f));
    ASSERT(!cf_future_cancelled(f));
    ASSERT_CODE(cf_future_result(f, 0, NULL), CF_ETIMEDOUT);
    cf_future_release(f);
}

TEST(set_running_makes_future_running)
{
    cf_future *f = future_new();
    ASSERT_OK(cf_future_set_running_or_notify_cancel(f));
    ASSERT(cf_future_running(f));
    ASSERT(!cf_future_done(f));
    ASSERT(!cf_future_cancelled(f));
    ASSERT_CODE(cf_future_result(f, 0, NULL), CF_ETIMEDOUT);
    ASSERT_OK(cf_future_set_result(f, NULL));
    cf_future_release(f);
}

TEST(set_result_finishes_future)
{
    cf_future *f = future_new();
    ASSERT_OK(cf_future_set_running_or_notify_cancel(f));
    ASSERT_OK(cf_future_set_result(f, (void *)(intptr_t)42));
    ASSERT(cf_future_done(f));
    ASSERT(!cf_future_running(f));
    ASSERT(!cf_future_cancelled(f));
    void *v = NULL;
    ASSERT_OK(cf_future_result(f, 0, &v));
    ASSERT_EQ((intptr_t)v, 42);
    cf_future_release(f);
}

TEST(set_result_on_pending_future_finishes_it)
{
    cf_future *f = future_new();
    ASSERT_OK(cf_future_set_result(f, (void *)(intptr_t)5));
    ASSERT(cf_future_done(f));
    ASSERT_EQ(result_of(f), 5);
    cf_future_release(f);
}

TEST(submitted_task_goes_running_then_finished)
{
    cf_executor *ex = pool_new(1);
    latch l;
    latch_init(&l);
    cf_future *f = submit(ex, task_gate, &l);
    latch_wait_arrived(&l, 1);
    ASSERT(cf_future_running(f));
    ASSERT(!cf_future_done(f));
    latch_open(&l);
    ASSERT_PTR_EQ((void *)result_of(f), &l);
    ASSERT(cf_future_done(f));
    ASSERT(!cf_future_running(f));
    cf_future_release(f);
    cf_executor_free(ex);
    latch_destroy(&l);
}

TEST(retain_returns_future_and_adds_a_reference)
{
    cf_future *f = future_new();
    ASSERT_PTR_EQ(cf_future_retain(f), f);
    cf_future_release(f);
    /* Still alive: the retained reference remains. */
    ASSERT_OK(cf_future_set_result(f, NULL));
    ASSERT(cf_future_done(f));
    cf_future_release(f);
}

/* ------------------------------------------------------------------------ */
/* Cancellation                                                             */

TEST(cancel_pending_future_succeeds)
{
    cf_future *f = future_new();
    ASSERT(cf_future_cancel(f));
    ASSERT(cf_future_cancelled(f));
    ASSERT(cf_future_done(f));
    ASSERT(!cf_future_running(f));
    ASSERT(cf_future_cancel(f)); /* already cancelled: still true */
    cf_future_release(f);
}

TEST(cancelled_future_result_reports_ecancelled)
{
    cf_future *f = future_new();
    ASSERT(cf_future_cancel(f));
    void *v = (void *)0x1;
    ASSERT_CODE(cf_future_result(f, 0, &v), CF_ECANCELLED);
    ASSERT_PTR_EQ(v, (void *)0x1); /* out written only on success */
    cf_error e = {0};
    ASSERT_CODE(cf_future_exception(f, CF_FOREVER, &e), CF_ECANCELLED);
    cf_future_release(f);
}

TEST(cancel_fails_once_running)
{
    cf_future *f = future_new();
    ASSERT_OK(cf_future_set_running_or_notify_cancel(f));
    ASSERT(!cf_future_cancel(f));
    ASSERT(!cf_future_cancelled(f));
    ASSERT(cf_future_running(f));
    ASSERT_OK(cf_future_set_result(f, NULL));
    cf_future_release(f);
}

TEST(cancel_fails_once_finished)
{
    cf_future *f = future_done_with((void *)(intptr_t)3);
    ASSERT(!cf_future_cancel(f));
    ASSERT(!cf_future_cancelled(f));
    ASSERT_EQ(result_of(f), 3);
    cf_future_release(f);
}

TEST(cancel_fails_for_running_pool_task)
{
    cf_executor *ex = pool_new(1);
    latch l;
    latch_init(&l);
    cf_future *f = submit(ex, task_gate, &l);
    latch_wait_arrived(&l, 1);
    ASSERT(!cf_future_cancel(f));
    latch_open(&l);
    ASSERT_PTR_EQ((void *)result_of(f), &l);
    cf_future_release(f);
    cf_executor_free(ex);
    latch_destroy(&l);
}

TEST(cancel_queued_pool_task_prevents_run)
{
    cf_executor *ex = pool_new(1);
    latch l;
    latch_init(&l);
    atomic_int ran = 0;
    cf_future *blocker = submit(ex, task_gate, &l);
    cf_future *queued = submit(ex, task_count, &ran);
    latch_wait_arrived(&l, 1);
    ASSERT(cf_future_cancel(queued));
    latch_open(&l);
    cf_executor_free(ex); /* waits for every started task */
    ASSERT_EQ(atomic_load(&ran), 0);
    ASSERT(cf_future_cancelled(queued));
    cf_future_release(blocker);
    cf_future_release(queued);
    latch_destroy(&l);
}

static void *wait_result(helper *h)
{
    return (void *)(intptr_t)cf_future_result(h->ctx, CF_FOREVER, NULL);
}

TEST(cancel_before_run_notifies_waiters)
{
    cf_future *f = future_new();
    helper h;
    helper_start(&h, wait_result, f);
    WAIT_BLOCKED(h.tid);
    ASSERT(cf_future_cancel(f));
    ASSERT_CODE((int)(intptr_t)helper_join(&h), CF_ECANCELLED);
    cf_future_release(f);
}

static void *wait_all_two(helper *h)
{
    cf_future **fs = h->ctx;
    cf_future *done[2];
    size_t n_done = 99, n_not_done = 99;
    int err = cf_wait(fs, 2, CF_FOREVER, CF_ALL_COMPLETED, done, &n_done,
                      NULL, &n_not_done);
    if (err != CF_OK)
        return (void *)(intptr_t)err;
    return (void *)(intptr_t)(n_done * 10 + n_not_done);
}

TEST(cancel_while_wait_all_completed_blocked_counts_done)
{
    cf_future *fs[2] = {future_new(), future_new()};
    helper h;
    helper_start(&h, wait_all_two, fs);
    WAIT_BLOCKED(h.tid);
    ASSERT_OK(cf_future_set_result(fs[0], NULL));
    ASSERT(cf_future_cancel(fs[1]));
    ASSERT_EQ((intptr_t)helper_join(&h), 20); /* 2 done, 0 not done */
    cf_future_release(fs[0]);
    cf_future_release(fs[1]);
}

static void *next_completed(helper *h)
{
    cf_future *f = NULL;
    int err = cf_as_completed_next(h->ctx, &f);
    if (err != CF_OK)
        return (void *)(intptr_t)err;
    return f;
}

TEST(cancel_wakes_blocked_as_completed)
{
    cf_future *f = future_new();
    cf_as_completed *it = NULL;
    ASSERT_OK(cf_as_completed_new(&f, 1, CF_FOREVER, &it));
    helper h;
    helper_start(&h, next_completed, it);
    WAIT_BLOCKED(h.tid);
    ASSERT(cf_future_cancel(f));
    cf_future *got = helper_join(&h);
    ASSERT_PTR_EQ(got, f);
    ASSERT(cf_future_cancelled(got));
    cf_future_release(got);
    cf_as_completed_free(it);
    cf_future_release(f);
}

static int note_thread(cf_future *f, void *arg)
{
    (void)f;
    *(pthread_t *)arg = pthread_self();
    return 0;
}

TEST(cancel_runs_callbacks_before_returning)
{
    cf_future *f = future_new();
    pthread_t seen = 0;
    ASSERT_OK(cf_future_add_done_callback(f, note_thread, &seen));
    ASSERT(seen == 0);
    ASSERT(cf_future_cancel(f));
    ASSERT(seen != 0);
    ASSERT(pthread_equal(seen, pthread_self()));
    cf_future_release(f);
}

/* ------------------------------------------------------------------------ */
/* Executor-author API                                                      */

TEST(set_running_on_cancelled_future_returns_ecancelled)
{
    cf_future *f = future_new();
    ASSERT(cf_future_cancel(f));
    ASSERT_CODE(cf_future_set_running_or_notify_cancel(f), CF_ECANCELLED);
    ASSERT(cf_future_cancelled(f));
    ASSERT(!cf_future_running(f));
    cf_future_release(f);
}

/* The spec: set_running_or_notify_cancel "can only be called once";
 * CPython moves a cancelled future to CANCELLED_AND_NOTIFIED and raises on
 * a second call. */
TEST(set_running_on_cancelled_future_reports_the_cancel_once)
{
    cf_future *f = future_new();
    ASSERT(cf_future_cancel(f));
    ASSERT_CODE(cf_future_set_running_or_notify_cancel(f), CF_ECANCELLED);
    ASSERT_CODE(cf_future_set_running_or_notify_cancel(f), CF_ESTATE);
    ASSERT_CODE(cf_future_set_running_or_notify_cancel(f), CF_ESTATE);
    /* Still cancelled, done, and cancellable (idempotently) for all. */
    ASSERT(cf_future_cancelled(f));
    ASSERT(cf_future_done(f));
    ASSERT(cf_future_cancel(f));
    ASSERT_CODE(cf_future_result(f, 0, NULL), CF_ECANCELLED);
    ASSERT_CODE(cf_future_set_result(f, NULL), CF_ESTATE);
    cf_future *fs[1] = {f};
    size_t n_done = 0;
    ASSERT_OK(cf_wait(fs, 1, 0, CF_ALL_COMPLETED, NULL, &n_done, NULL, NULL));
    ASSERT_EQ(n_done, 1);
    cf_future_release(f);
}

TEST(set_running_after_set_result_or_exception_is_estate)
{
    cf_future *f = future_new();
    ASSERT_OK(cf_future_set_result(f, NULL));
    ASSERT_CODE(cf_future_set_running_or_notify_cancel(f), CF_ESTATE);
    cf_future_release(f);
    f = future_new();
    ASSERT_OK(cf_future_set_exception(f, 3, NULL));
    ASSERT_CODE(cf_future_set_running_or_notify_cancel(f), CF_ESTATE);
    cf_future_release(f);
}

TEST(future_run_on_cancelled_future_reports_the_cancel_once)
{
    cf_future *f = future_new();
    atomic_int ran = 0;
    ASSERT(cf_future_cancel(f));
    ASSERT_CODE(cf_future_run(f, task_count, &ran), CF_ECANCELLED);
    ASSERT_CODE(cf_future_run(f, task_count, &ran), CF_ESTATE);
    ASSERT_EQ(atomic_load(&ran), 0);
    cf_future_release(f);
}

/* Executors and cancels race: whoever calls set_running_or_notify_cancel
 * first on a cancelled future gets CF_ECANCELLED, every other CF_ESTATE,
 * and no task runs. */
typedef struct race {
    cf_future *f;
    atomic_int go, cancelled, estate;
} race;

static void *race_set_running(helper *h)
{
    race *r = h->ctx;
    while (!atomic_load(&r->go))
        ;
    int rc = cf_future_set_running_or_notify_cancel(r->f);
    if (rc == CF_ECANCELLED)
        atomic_fetch_add(&r->cancelled, 1);
    else if (rc == CF_ESTATE)
        atomic_fetch_add(&r->estate, 1);
    return NULL;
}

TEST(concurrent_set_running_on_cancelled_future_reports_it_once)
{
    for (int round = 0; round < 200; round++) {
        race r = {.f = future_new()};
        ASSERT(cf_future_cancel(r.f));
        helper hs[3];
        for (int i = 0; i < 3; i++)
            helper_start(&hs[i], race_set_running, &r);
        atomic_store(&r.go, 1);
        for (int i = 0; i < 3; i++)
            helper_join(&hs[i]);
        ASSERT_EQ(atomic_load(&r.cancelled), 1);
        ASSERT_EQ(atomic_load(&r.estate), 2);
        cf_future_release(r.f);
    }
}

TEST(set_running_twice_is_estate)
{
    cf_future *f = future_new();
    ASSERT_OK(cf_future_set_running_or_notify_cancel(f));
    ASSERT_CODE(cf_future_set_running_or_notify_cancel(f), CF_ESTATE);
    ASSERT_OK(cf_future_set_result(f, NULL));
    ASSERT_CODE(cf_future_set_running_or_notify_cancel(f), CF_ESTATE);
    cf_future_release(f);
}

TEST(second_completion_is_estate)
{
    cf_future *f = future_new();
    ASSERT_OK(cf_future_set_result(f, (void *)(intptr_t)1));
    ASSERT_CODE(cf_future_set_result(f, (void *)(intptr_t)2), CF_ESTATE);
    ASSERT_CODE(cf_future_set_exception(f, 5, "late"), CF_ESTATE);
    ASSERT_EQ(result_of(f), 1);
    cf_future_release(f);

    f = future_new();
    ASSERT_OK(cf_future_set_exception(f, 5, "first"));
    ASSERT_CODE(cf_future_set_result(f, NULL), CF_ESTATE);
    ASSERT_CODE(cf_future_set_exception(f, 6, "second"), CF_ESTATE);
    cf_error e;
    ASSERT_OK(cf_future_exception(f, 0, &e));
    ASSERT_EQ(e.code, 5);
    ASSERT_STR_EQ(e.message, "first");
    cf_future_release(f);
}

TEST(completing_cancelled_future_is_estate)
{
    cf_future *f = future_new();
    ASSERT(cf_future_cancel(f));
    ASSERT_CODE(cf_future_set_result(f, NULL), CF_ESTATE);
    ASSERT_CODE(cf_future_set_exception(f, 1, NULL), CF_ESTATE);
    ASSERT(cf_future_cancelled(f));
    cf_future_release(f);
}

static atomic_int frees;

static void count_free(void *p)
{
    atomic_fetch_add(&frees, 1);
    free(p);
}

TEST(set_result_owned_frees_on_last_release)
{
    atomic_store(&frees, 0);
    cf_future *f = future_new();
    int *value = malloc(sizeof *value);
    ASSERT(value != NULL);
    *value = 77;
    ASSERT_OK(cf_future_set_result_owned(f, value, count_free));
    cf_future_retain(f);
    void *v = NULL;
    ASSERT_OK(cf_future_result(f, 0, &v));
    ASSERT_EQ(*(int *)v, 77);
    cf_future_release(f);
    ASSERT_EQ(atomic_load(&frees), 0); /* one reference left */
    cf_future_release(f);
    ASSERT_EQ(atomic_load(&frees), 1);
}

TEST(set_result_owned_on_done_future_leaves_ownership)
{
    atomic_store(&frees, 0);
    cf_future *f = future_done_with(NULL);
    int *value = malloc(sizeof *value);
    ASSERT(value != NULL);
    ASSERT_CODE(cf_future_set_result_owned(f, value, count_free), CF_ESTATE);
    cf_future_release(f);
    ASSERT_EQ(atomic_load(&frees), 0);
    free(value);
}

TEST(set_exception_copies_message)
{
    cf_future *f = future_new();
    char msg[] = "disk on fire";
    ASSERT_OK(cf_future_set_exception(f, 28, msg));
    memset(msg, 'x', sizeof msg - 1);
    cf_error e;
    ASSERT_OK(cf_future_exception(f, 0, &e));
    ASSERT_EQ(e.code, 28);
    ASSERT_STR_EQ(e.message, "disk on fire");
    ASSERT_CODE(cf_future_result(f, 0, NULL), CF_ETASK);
    cf_future_release(f);
}

TEST(set_exception_null_message_uses_strerror)
{
    cf_future *f = future_new();
    ASSERT_OK(cf_future_set_exception(f, CF_EBROKEN, NULL));
    cf_error e;
    ASSERT_OK(cf_future_exception(f, 0, &e));
    ASSERT_EQ(e.code, CF_EBROKEN);
    ASSERT_STR_EQ(e.message, cf_strerror(CF_EBROKEN));
    ASSERT_CODE(cf_future_result(f, 0, NULL), CF_EBROKEN);
    cf_future_release(f);
}

TEST(set_exception_code_zero_becomes_etask)
{
    cf_future *f = future_new();
    ASSERT_OK(cf_future_set_exception(f, 0, "zero"));
    cf_error e;
    ASSERT_OK(cf_future_exception(f, 0, &e));
    ASSERT_CODE(e.code, CF_ETASK);
    ASSERT_CODE(cf_future_result(f, 0, NULL), CF_ETASK);
    cf_future_release(f);
}

TEST(future_new_is_not_tied_to_an_executor)
{
    cf_future *f = future_new();
    ASSERT_OK(cf_future_set_running_or_notify_cancel(f));
    ASSERT_OK(cf_future_set_result(f, (void *)(intptr_t)9));
    ASSERT_EQ(result_of(f), 9);
    cf_future_release(f);
}

TEST(futures_outlive_their_executor)
{
    cf_executor *ex = pool_new(2);
    cf_future *ok = submit(ex, task_double, (void *)(intptr_t)21);
    cf_future *bad = submit(ex, task_fail, (void *)(intptr_t)8);
    cf_executor_free(ex);
    ASSERT_EQ(result_of(ok), 42);
    cf_error e;
    ASSERT_OK(cf_future_exception(bad, 0, &e));
    ASSERT_EQ(e.code, 8);
    ASSERT_STR_EQ(e.message, "failed with 8");
    cf_future_release(ok);
    cf_future_release(bad);
}

/* ------------------------------------------------------------------------ */
/* result() and exception() with timeouts                                   */

static void *complete_later(helper *h)
{
    /* Complete only once the main thread is asleep in its wait. */
    pid_t main_tid = (pid_t)(intptr_t)((void **)h->ctx)[1];
    WAIT_BLOCKED(main_tid);
    cf_future_set_result(((void **)h->ctx)[0], (void *)(intptr_t)11);
    return NULL;
}

TEST(result_forever_waits_for_completion)
{
    cf_future *f = future_new();
    void *ctx[2] = {f, (void *)(intptr_t)current_tid()};
    helper h;
    helper_start(&h, complete_later, ctx);
    void *v = NULL;
    ASSERT_OK(cf_future_result(f, CF_FOREVER, &v));
    ASSERT_EQ((intptr_t)v, 11);
    helper_join(&h);
    cf_future_release(f);
}

TEST(exception_forever_waits_for_completion)
{
    cf_future *f = future_new();
    void *ctx[2] = {f, (void *)(intptr_t)current_tid()};
    helper h;
    helper_start(&h, complete_later, ctx);
    cf_error e = {.code = 99, .message = NULL};
    ASSERT_OK(cf_future_exception(f, CF_FOREVER, &e));
    ASSERT_EQ(e.code, 0);
    ASSERT_STR_EQ(e.message, "");
    helper_join(&h);
    cf_future_release(f);
}

TEST(result_nonpositive_timeout_polls)
{
    cf_future *f = future_new();
    void *v = (void *)0x1;
    double t0 = harness_now();
    ASSERT_CODE(cf_future_result(f, 0, &v), CF_ETIMEDOUT);
    ASSERT_CODE(cf_future_result(f, -1, &v), CF_ETIMEDOUT);
    ASSERT_CODE(cf_future_result(f, -INFINITY, &v), CF_ETIMEDOUT);
    ASSERT(harness_now() - t0 < 1.0);
    ASSERT_PTR_EQ(v, (void *)0x1);
    ASSERT_OK(cf_future_set_result(f, (void *)(intptr_t)4));
    ASSERT_OK(cf_future_result(f, 0, &v));
    ASSERT_EQ((intptr_t)v, 4);
    ASSERT_OK(cf_future_result(f, -5, &v));
    cf_future_release(f);
}

TEST(result_positive_timeout_times_out)
{
    cf_future *f = future_new();
    double t0 = harness_now();
    ASSERT_CODE(cf_future_result(f, 0.1, NULL), CF_ETIMEDOUT);
    double waited = harness_now() - t0;
    ASSERT(waited >= 0.099);
    ASSERT(waited < 2.0);
    cf_error e;
    t0 = harness_now();
    ASSERT_CODE(cf_future_exception(f, 0.1, &e), CF_ETIMEDOUT);
    ASSERT(harness_now() - t0 >= 0.099);
    cf_future_release(f);
}

TEST(huge_timeout_waits_like_forever)
{
    cf_future *f = future_new();
    void *ctx[2] = {f, (void *)(intptr_t)current_tid()};
    helper h;
    helper_start(&h, complete_later, ctx);
    void *v = NULL;
    ASSERT_OK(cf_future_result(f, 1e300, &v));
    ASSERT_EQ((intptr_t)v, 11);
    helper_join(&h);
    cf_future_release(f);
}

TEST(nan_timeout_is_einval)
{
    cf_future *f = future_done_with(NULL);
    cf_error e;
    ASSERT_CODE(cf_future_result(f, NAN, NULL), CF_EINVAL);
    ASSERT_CODE(cf_future_exception(f, NAN, &e), CF_EINVAL);
    cf_future_release(f);
}

/* ------------------------------------------------------------------------ */
/* Failed tasks                                                             */

static void *fail_formatted(void *arg, cf_call *call)
{
    (void)arg;
    return cf_fail(call, 42, "bad %s number %d", "input", 7);
}

TEST(failed_task_reported_by_result_and_exception)
{
    cf_executor *ex = pool_new(1);
    cf_future *f = submit(ex, fail_formatted, NULL);
    void *v = (void *)0x1;
    ASSERT_CODE(cf_future_result(f, CF_FOREVER, &v), CF_ETASK);
    ASSERT_PTR_EQ(v, (void *)0x1);
    cf_error e;
    ASSERT_OK(cf_future_exception(f, 0, &e));
    ASSERT_EQ(e.code, 42);
    ASSERT_STR_EQ(e.message, "bad input number 7");
    ASSERT(cf_future_done(f));
    ASSERT(!cf_future_cancelled(f));
    cf_future_release(f);
    cf_executor_free(ex);
}

TEST(negative_fail_code_passes_through)
{
    cf_executor *ex = pool_new(1);
    cf_future *f = submit(ex, task_fail, (void *)(intptr_t)CF_ECODEC);
    ASSERT_CODE(cf_future_result(f, CF_FOREVER, NULL), CF_ECODEC);
    cf_error e;
    ASSERT_OK(cf_future_exception(f, 0, &e));
    ASSERT_CODE(e.code, CF_ECODEC);
    ASSERT_STR_EQ(e.message, "failed with -15");
    cf_future_release(f);
    cf_executor_free(ex);
}

TEST(fail_code_zero_becomes_etask)
{
    cf_executor *ex = pool_new(1);
    cf_future *f = submit(ex, task_fail, (void *)(intptr_t)0);
    ASSERT_CODE(cf_future_result(f, CF_FOREVER, NULL), CF_ETASK);
    cf_error e;
    ASSERT_OK(cf_future_exception(f, 0, &e));
    ASSERT_CODE(e.code, CF_ETASK);
    cf_future_release(f);
    cf_executor_free(ex);
}

static void *fail_twice(void *arg, cf_call *call)
{
    (void)arg;
    cf_fail(call, 1, "first");
    return cf_fail(call, 2, "second");
}

TEST(second_fail_replaces_first)
{
    cf_executor *ex = pool_new(1);
    cf_future *f = submit(ex, fail_twice, NULL);
    cf_error e;
    ASSERT_OK(cf_future_exception(f, CF_FOREVER, &e));
    ASSERT_EQ(e.code, 2);
    ASSERT_STR_EQ(e.message, "second");
    cf_future_release(f);
    cf_executor_free(ex);
}

TEST(exception_of_successful_task_is_empty)
{
    cf_executor *ex = pool_new(1);
    cf_future *f = submit(ex, task_identity, (void *)(intptr_t)3);
    cf_error e = {.code = 99, .message = NULL};
    ASSERT_OK(cf_future_exception(f, CF_FOREVER, &e));
    ASSERT_EQ(e.code, 0);
    ASSERT_STR_EQ(e.message, "");
    cf_future_release(f);
    cf_executor_free(ex);
}

/* ------------------------------------------------------------------------ */
/* cf_call_set_result_free                                                  */

static void *malloc_result(void *arg, cf_call *call)
{
    int *v = malloc(sizeof *v);
    if (!v)
        return cf_fail(call, CF_ENOMEM, "no memory");
    *v = (int)(intptr_t)arg;
    cf_call_set_result_free(call, count_free);
    if (*v < 0)
        cf_fail(call, 3, "negative"); /* the value returned is not kept */
    return v;
}

TEST(call_set_result_free_frees_on_last_release)
{
    atomic_store(&frees, 0);
    cf_executor *ex = pool_new(1);
    cf_future *f = submit(ex, malloc_result, (void *)(intptr_t)31);
    void *v = NULL;
    ASSERT_OK(cf_future_result(f, CF_FOREVER, &v));
    ASSERT_EQ(*(int *)v, 31);
    cf_future_retain(f);
    cf_future_release(f);
    cf_executor_free(ex); /* the pool has dropped its references */
    ASSERT_EQ(atomic_load(&frees), 0);
    ASSERT_EQ(*(int *)v, 31);
    cf_future_release(f);
    ASSERT_EQ(atomic_load(&frees), 1);
}

TEST(call_set_result_free_frees_at_once_when_task_fails)
{
    atomic_store(&frees, 0);
    cf_executor *ex = pool_new(1);
    cf_future *f = submit(ex, malloc_result, (void *)(intptr_t)-1);
    ASSERT_CODE(cf_future_result(f, CF_FOREVER, NULL), CF_ETASK);
    cf_executor_free(ex); /* the worker is done with it */
    ASSERT_EQ(atomic_load(&frees), 1); /* not kept until the last release */
    cf_future_release(f);
    ASSERT_EQ(atomic_load(&frees), 1);
}

TEST(call_set_result_free_accepts_null_call)
{
    cf_call_set_result_free(NULL, count_free);
}

/* ------------------------------------------------------------------------ */
/* Cooperative cancellation of a running task                               */

typedef struct polling {
    latch started;
    atomic_int polls_before_flag;
} polling;

static void *poll_until_cancel_requested(void *arg, cf_call *call)
{
    polling *p = arg;
    int polls = 0;
    if (cf_call_cancel_requested(call))
        return cf_fail(call, 1, "flag set before anyone asked");
    latch_wait(&p->started); /* the test opens it before asking */
    while (!cf_call_cancel_requested(call))
        polls++;
    atomic_store(&p->polls_before_flag, polls);
    return (void *)(intptr_t)123;
}

TEST(request_cancel_sets_flag_seen_by_running_task)
{
    cf_executor *ex = pool_new(1);
    polling p;
    latch_init(&p.started);
    cf_future *f = submit(ex, poll_until_cancel_requested, &p);
    latch_wait_arrived(&p.started, 1);
    latch_open(&p.started);
    ASSERT(!cf_future_request_cancel(f)); /* running: not cancelled */
    ASSERT_EQ(result_of(f), 123);
    ASSERT(!cf_future_cancelled(f));
    cf_future_release(f);
    cf_executor_free(ex);
    latch_destroy(&p.started);
}

TEST(request_cancel_cancels_pending_future)
{
    cf_future *f = future_new();
    ASSERT(cf_future_request_cancel(f));
    ASSERT(cf_future_cancelled(f));
    ASSERT_CODE(cf_future_set_running_or_notify_cancel(f), CF_ECANCELLED);
    cf_future_release(f);
}

TEST(plain_cancel_does_not_set_running_flag)
{
    cf_executor *ex = pool_new(1);
    polling p;
    latch_init(&p.started);
    cf_future *f = submit(ex, poll_until_cancel_requested, &p);
    latch_wait_arrived(&p.started, 1);
    ASSERT(!cf_future_cancel(f)); /* must not reach the task */
    latch_open(&p.started);
    /* The task spins until asked; give it a moment to (wrongly) stop. */
    ASSERT_CODE(cf_future_result(f, 0.05, NULL), CF_ETIMEDOUT);
    ASSERT(!cf_future_request_cancel(f));
    ASSERT_EQ(result_of(f), 123);
    cf_future_release(f);
    cf_executor_free(ex);
    latch_destroy(&p.started);
}
