/* test_custom_executor.c - executors built with cf_executor_new().
 *
 * An "inline" executor runs each task synchronously in submit with
 * cf_future_run(). The same test bodies (each takes a cf_executor *) run
 * against it and against the thread pool, so everything cfutures supplies
 * around a custom executor - futures, map, wait, as_completed, the shutdown
 * flag - behaves as on the built-in one. A "deferred" executor that queues
 * tasks until the test runs them shows cancellation through map and
 * shutdown. */
#define _GNU_SOURCE
#include "coretest.h"

/* ------------------------------------------------------------------------ */
/* The inline executor                                                      */

typedef struct inline_impl {
    atomic_int submits;
    atomic_int shutdowns;
    atomic_int destroys;
    double last_timeout;
    bool last_cancel;
} inline_impl;

static int inline_submit(void *impl, cf_future *f, cf_fn fn, void *arg,
                         const cf_codec *codec)
{
    (void)codec;
    atomic_fetch_add(&((inline_impl *)impl)->submits, 1);
    int err = cf_future_run(f, fn, arg);
    return err == CF_ECANCELLED ? CF_OK : err;
}

static int inline_shutdown(void *impl, double timeout, bool cancel_futures,
                           size_t *unfinished)
{
    inline_impl *in = impl;
    atomic_fetch_add(&in->shutdowns, 1);
    in->last_timeout = timeout;
    in->last_cancel = cancel_futures;
    if (unfinished)
        *unfinished = 0;
    return CF_OK;
}

static void inline_destroy(void *impl)
{
    atomic_fetch_add(&((inline_impl *)impl)->destroys, 1);
}

static const cf_executor_ops inline_ops = {
    .kind = "inline",
    .submit = inline_submit,
    .shutdown = inline_shutdown,
    .destroy = inline_destroy,
};

static cf_executor *inline_new(inline_impl *impl)
{
    memset(impl, 0, sizeof *impl);
    cf_executor *ex = NULL;
    ASSERT_OK(cf_executor_new(&inline_ops, impl, &ex));
    ASSERT(ex != NULL);
    return ex;
}

static void on_thread_pool(void (*body)(cf_executor *))
{
    cf_executor *ex = pool_new(4);
    body(ex);
    cf_executor_free(ex);
}

static void on_inline(void (*body)(cf_executor *))
{
    inline_impl impl;
    cf_executor *ex = inline_new(&impl);
    body(ex);
    cf_executor_free(ex);
    ASSERT_EQ(atomic_load(&impl.destroys), 1);
}

/* ------------------------------------------------------------------------ */
/* Bodies shared by both executors                                          */

static void body_submit_returns_result(cf_executor *ex)
{
    cf_future *f = submit(ex, task_double, (void *)(intptr_t)21);
    ASSERT_EQ(result_of(f), 42);
    ASSERT(cf_future_done(f));
    cf_future_release(f);
}

static void body_submit_reports_task_failure(cf_executor *ex)
{
    cf_future *f = submit(ex, task_fail, (void *)(intptr_t)13);
    ASSERT_CODE(cf_future_result(f, CF_FOREVER, NULL), CF_ETASK);
    cf_error e;
    ASSERT_OK(cf_future_exception(f, 0, &e));
    ASSERT_EQ(e.code, 13);
    ASSERT_STR_EQ(e.message, "failed with 13");
    cf_future_release(f);
}

static void body_submit_rejects_null_fn(cf_executor *ex)
{
    cf_future *f = (cf_future *)0x1;
    ASSERT_CODE(cf_executor_submit(ex, NULL, NULL, &f), CF_EINVAL);
    ASSERT_CODE(cf_executor_submit(ex, task_identity, NULL, NULL), CF_EINVAL);
    ASSERT_PTR_EQ(f, (cf_future *)0x1);
}

static void body_map_returns_results_in_order(cf_executor *ex)
{
    enum { N = 20 };
    void *args[N];
    for (int i = 0; i < N; i++)
        args[i] = (void *)(intptr_t)i;
    size_t chunks[] = {1, 3, 50};
    for (size_t k = 0; k < 3; k++) {
        cf_map_options opts = {.chunksize = chunks[k]};
        cf_map *m = NULL;
        ASSERT_OK(cf_executor_map(ex, task_double, args, N, &opts, &m));
        for (int i = 0; i < N; i++) {
            void *v = NULL;
            ASSERT_OK(cf_map_next(m, &v, NULL));
            ASSERT_EQ((intptr_t)v, 2 * i);
        }
        void *v = NULL;
        ASSERT_CODE(cf_map_next(m, &v, NULL), CF_EEND);
        cf_map_free(m);
    }
}

static void body_map_failure_in_place(cf_executor *ex)
{
    void *args[3] = {(void *)(intptr_t)0, (void *)(intptr_t)5,
                     (void *)(intptr_t)0};
    cf_map *m = NULL;
    ASSERT_OK(cf_executor_map(ex, task_fail, args, 3, NULL, &m));
    /* task_fail with 0 fails too (code 0 is CF_ETASK): check position 1. */
    void *v = NULL;
    cf_error e;
    ASSERT_CODE(cf_map_next(m, &v, &e), CF_ETASK);
    ASSERT_CODE(e.code, CF_ETASK);
    ASSERT_CODE(cf_map_next(m, &v, &e), CF_ETASK);
    ASSERT_EQ(e.code, 5);
    ASSERT_STR_EQ(e.message, "failed with 5");
    ASSERT_CODE(cf_map_next(m, &v, &e), CF_ETASK);
    ASSERT_CODE(cf_map_next(m, &v, &e), CF_EEND);
    cf_map_free(m);
}

static int stream_left;

static bool stream_next(void *ctx, void **arg)
{
    int *left = ctx;
    if (*left == 0)
        return false;
    *arg = (void *)(intptr_t)(10 - (*left)--);
    return true;
}

static void body_map_stream_with_buffersize(cf_executor *ex)
{
    stream_left = 10;
    cf_map_options opts = {.buffersize = 2, .chunksize = 2};
    cf_map *m = NULL;
    ASSERT_OK(cf_executor_map_stream(ex, task_double, stream_next,
                                     &stream_left, &opts, &m));
    for (int i = 0; i < 10; i++) {
        void *v = NULL;
        ASSERT_OK(cf_map_next(m, &v, NULL));
        ASSERT_EQ((intptr_t)v, 2 * i);
    }
    void *v = NULL;
    ASSERT_CODE(cf_map_next(m, &v, NULL), CF_EEND);
    cf_map_free(m);
}

static void body_wait_all_completed(cf_executor *ex)
{
    enum { N = 8 };
    cf_future *fs[N + 1];
    for (int i = 0; i < N; i++)
        fs[i] = submit(ex, task_identity, (void *)(intptr_t)i);
    fs[N] = fs[0]; /* a duplicate */
    cf_future *done[N + 1];
    size_t n_done = 0, n_not_done = 99;
    ASSERT_OK(cf_wait(fs, N + 1, CF_FOREVER, CF_ALL_COMPLETED, done, &n_done,
                      NULL, &n_not_done));
    ASSERT_EQ(n_done, N);
    ASSERT_EQ(n_not_done, 0);
    for (int i = 0; i < N; i++) {
        ASSERT_PTR_EQ(done[i], fs[i]);
        ASSERT_EQ(result_of(fs[i]), i);
        cf_future_release(fs[i]);
    }
}

static void body_wait_first_exception(cf_executor *ex)
{
    cf_future *pending = future_new();
    cf_future *fs[3] = {pending, submit(ex, task_identity, NULL),
                        submit(ex, task_fail, (void *)(intptr_t)2)};
    cf_future *done[3], *not_done[3];
    size_t n_done = 0, n_not_done = 0;
    ASSERT_OK(cf_wait(fs, 3, CF_FOREVER, CF_FIRST_EXCEPTION, done, &n_done,
                      not_done, &n_not_done));
    ASSERT(in_list(done, n_done, fs[2]));
    ASSERT_EQ(n_not_done, 1);
    ASSERT_PTR_EQ(not_done[0], pending);
    for (int i = 0; i < 3; i++)
        cf_future_release(fs[i]);
}

static void body_as_completed_yields_all(cf_executor *ex)
{
    enum { N = 10 };
    cf_future *fs[N];
    for (int i = 0; i < N; i++)
        fs[i] = submit(ex, task_identity, (void *)(intptr_t)i);
    cf_as_completed *it = NULL;
    ASSERT_OK(cf_as_completed_new(fs, N, CF_FOREVER, &it));
    for (int i = 0; i < N; i++)
        cf_future_release(fs[i]);
    int seen = 0;
    cf_future *f = NULL;
    int err;
    while ((err = cf_as_completed_next(it, &f)) == CF_OK) {
        intptr_t v = result_of(f);
        ASSERT(v >= 0 && v < N);
        ASSERT(!(seen & (1 << v)));
        seen |= 1 << v;
        cf_future_release(f);
    }
    ASSERT_CODE(err, CF_EEND);
    ASSERT_EQ(seen, (1 << N) - 1);
    cf_as_completed_free(it);
}

static void body_shutdown_then_submit_is_eshutdown(cf_executor *ex)
{
    cf_future *f = submit(ex, task_identity, NULL);
    ASSERT_OK(cf_executor_shutdown(ex, true, false));
    ASSERT_OK(cf_executor_shutdown(ex, true, false));
    cf_future *g = (cf_future *)0x1;
    ASSERT_CODE(cf_executor_submit(ex, task_identity, NULL, &g), CF_ESHUTDOWN);
    ASSERT_PTR_EQ(g, (cf_future *)0x1);
    cf_map *m = (cf_map *)0x1;
    void *args[1] = {NULL};
    ASSERT_CODE(cf_executor_map(ex, task_identity, args, 1, NULL, &m),
                CF_ESHUTDOWN);
    ASSERT_PTR_EQ(m, (cf_map *)0x1);
    ASSERT(cf_future_done(f));
    cf_future_release(f);
}

static int mark_called(cf_future *f, void *arg)
{
    (void)f;
    atomic_fetch_add((atomic_int *)arg, 1);
    return 0;
}

static void body_callbacks_run_once(cf_executor *ex)
{
    atomic_int calls = 0;
    cf_future *f = submit(ex, task_identity, NULL);
    ASSERT_OK(cf_future_add_done_callback(f, mark_called, &calls));
    result_of(f);
    WAIT_UNTIL(atomic_load(&calls) == 1, 10);
    cf_future_release(f);
}

TEST(submit_returns_result_on_thread_pool)
{
    on_thread_pool(body_submit_returns_result);
}
TEST(submit_returns_result_on_inline)
{
    on_inline(body_submit_returns_result);
}
TEST(submit_reports_task_failure_on_thread_pool)
{
    on_thread_pool(body_submit_reports_task_failure);
}
TEST(submit_reports_task_failure_on_inline)
{
    on_inline(body_submit_reports_task_failure);
}
TEST(submit_rejects_null_fn_on_thread_pool)
{
    on_thread_pool(body_submit_rejects_null_fn);
}
TEST(submit_rejects_null_fn_on_inline)
{
    on_inline(body_submit_rejects_null_fn);
}
TEST(map_returns_results_in_order_on_thread_pool)
{
    on_thread_pool(body_map_returns_results_in_order);
}
TEST(map_returns_results_in_order_on_inline)
{
    on_inline(body_map_returns_results_in_order);
}
TEST(map_failure_in_place_on_thread_pool)
{
    on_thread_pool(body_map_failure_in_place);
}
TEST(map_failure_in_place_on_inline)
{
    on_inline(body_map_failure_in_place);
}
TEST(map_stream_with_buffersize_on_thread_pool)
{
    on_thread_pool(body_map_stream_with_buffersize);
}
TEST(map_stream_with_buffersize_on_inline)
{
    on_inline(body_map_stream_with_buffersize);
}
TEST(wait_all_completed_on_thread_pool)
{
    on_thread_pool(body_wait_all_completed);
}
TEST(wait_all_completed_on_inline)
{
    on_inline(body_wait_all_completed);
}
TEST(wait_first_exception_on_thread_pool)
{
    on_thread_pool(body_wait_first_exception);
}
TEST(wait_first_exception_on_inline)
{
    on_inline(body_wait_first_exception);
}
TEST(as_completed_yields_all_on_thread_pool)
{
    on_thread_pool(body_as_completed_yields_all);
}
TEST(as_completed_yields_all_on_inline)
{
    on_inline(body_as_completed_yields_all);
}
TEST(shutdown_then_submit_is_eshutdown_on_thread_pool)
{
    on_thread_pool(body_shutdown_then_submit_is_eshutdown);
}
TEST(shutdown_then_submit_is_eshutdown_on_inline)
{
    on_inline(body_shutdown_then_submit_is_eshutdown);
}
TEST(callbacks_run_once_on_thread_pool)
{
    on_thread_pool(body_callbacks_run_once);
}
TEST(callbacks_run_once_on_inline)
{
    on_inline(body_callbacks_run_once);
}

/* ------------------------------------------------------------------------ */
/* What cfutures does around a custom executor                              */

TEST(custom_executor_reports_its_kind)
{
    inline_impl impl;
    cf_executor *ex = inline_new(&impl);
    ASSERT_STR_EQ(cf_executor_kind(ex), "inline");
    cf_executor_free(ex);
}

TEST(shutdown_calls_ops_once_per_call_with_wait_as_timeout)
{
    inline_impl impl;
    cf_executor *ex = inline_new(&impl);
    ASSERT_OK(cf_executor_shutdown(ex, false, true));
    ASSERT(atomic_load(&impl.shutdowns) >= 1);
    ASSERT(impl.last_timeout <= 0);
    ASSERT(impl.last_cancel);
    int before = atomic_load(&impl.submits);
    cf_future *f = (cf_future *)0x1;
    ASSERT_CODE(cf_executor_submit(ex, task_identity, NULL, &f), CF_ESHUTDOWN);
    ASSERT_EQ(atomic_load(&impl.submits), before); /* refused before ops */
    ASSERT_OK(cf_executor_shutdown(ex, true, false));
    ASSERT(isinf(impl.last_timeout));
    ASSERT_EQ(atomic_load(&impl.destroys), 0);
    cf_executor_free(ex);
    ASSERT_EQ(atomic_load(&impl.destroys), 1);
}

TEST(executor_free_shuts_down_waiting_then_destroys)
{
    inline_impl impl;
    cf_executor *ex = inline_new(&impl);
    cf_executor_free(ex);
    ASSERT(atomic_load(&impl.shutdowns) >= 1);
    ASSERT(isinf(impl.last_timeout));
    ASSERT(!impl.last_cancel);
    ASSERT_EQ(atomic_load(&impl.destroys), 1);
}

static int timing_out_shutdown(void *impl, double timeout,
                               bool cancel_futures, size_t *unfinished)
{
    (void)cancel_futures;
    int *calls = impl;
    (*calls)++;
    if (isinf(timeout))
        return CF_OK;
    if (unfinished)
        *unfinished = 4;
    return CF_ETIMEDOUT;
}

static int refuse_submit(void *impl, cf_future *f, cf_fn fn, void *arg,
                         const cf_codec *codec)
{
    (void)impl;
    (void)f;
    (void)fn;
    (void)arg;
    (void)codec;
    return CF_EAGAIN;
}

static const cf_executor_ops stubborn_ops = {
    .kind = "stubborn",
    .submit = refuse_submit,
    .shutdown = timing_out_shutdown,
    .destroy = NULL,
};

TEST(shutdown_timeout_passes_through_the_ops_answer)
{
    int calls = 0;
    cf_executor *ex = NULL;
    ASSERT_OK(cf_executor_new(&stubborn_ops, &calls, &ex));
    size_t unfinished = 0;
    ASSERT_CODE(cf_executor_shutdown_timeout(ex, 0.01, false, &unfinished),
                CF_ETIMEDOUT);
    ASSERT_EQ(unfinished, 4);
    ASSERT_OK(cf_executor_shutdown_timeout(ex, CF_FOREVER, false, NULL));
    cf_executor_free(ex);
    ASSERT(calls >= 2);
}

TEST(submit_error_from_ops_reaches_the_caller)
{
    int calls = 0;
    cf_executor *ex = NULL;
    ASSERT_OK(cf_executor_new(&stubborn_ops, &calls, &ex));
    cf_future *f = (cf_future *)0x1;
    ASSERT_CODE(cf_executor_submit(ex, task_identity, NULL, &f), CF_EAGAIN);
    ASSERT_PTR_EQ(f, (cf_future *)0x1);
    cf_map *m = (cf_map *)0x1;
    void *args[2] = {NULL, NULL};
    ASSERT_CODE(cf_executor_map(ex, task_identity, args, 2, NULL, &m),
                CF_EAGAIN);
    ASSERT_PTR_EQ(m, (cf_map *)0x1);
    cf_executor_free(ex);
}

static const cf_executor_ops minimal_ops = {
    .kind = "minimal",
    .submit = inline_submit,
    .shutdown = NULL,
    .destroy = NULL,
};

TEST(ops_without_shutdown_and_destroy_work)
{
    inline_impl impl;
    memset(&impl, 0, sizeof impl);
    cf_executor *ex = NULL;
    ASSERT_OK(cf_executor_new(&minimal_ops, &impl, &ex));
    cf_future *f = submit(ex, task_double, (void *)(intptr_t)2);
    ASSERT_EQ(result_of(f), 4);
    cf_future_release(f);
    ASSERT_OK(cf_executor_shutdown(ex, true, true));
    cf_executor_free(ex);
}

/* ------------------------------------------------------------------------ */
/* cf_future_run                                                            */

TEST(future_run_runs_and_completes)
{
    cf_future *f = future_new();
    ASSERT_OK(cf_future_run(f, task_double, (void *)(intptr_t)4));
    ASSERT_EQ(result_of(f), 8);
    ASSERT_CODE(cf_future_run(f, task_double, NULL), CF_ESTATE);
    cf_future_release(f);
}

TEST(future_run_records_failure)
{
    cf_future *f = future_new();
    ASSERT_OK(cf_future_run(f, task_fail, (void *)(intptr_t)3));
    cf_error e;
    ASSERT_OK(cf_future_exception(f, 0, &e));
    ASSERT_EQ(e.code, 3);
    cf_future_release(f);
}

TEST(future_run_on_cancelled_future_does_not_run)
{
    atomic_int ran = 0;
    cf_future *f = future_new();
    ASSERT(cf_future_cancel(f));
    ASSERT_CODE(cf_future_run(f, task_count, &ran), CF_ECANCELLED);
    ASSERT_EQ(atomic_load(&ran), 0);
    cf_future_release(f);
}

TEST(future_run_on_running_future_is_estate)
{
    atomic_int ran = 0;
    cf_future *f = future_new();
    ASSERT_OK(cf_future_set_running_or_notify_cancel(f));
    ASSERT_CODE(cf_future_run(f, task_count, &ran), CF_ESTATE);
    ASSERT_EQ(atomic_load(&ran), 0);
    ASSERT_OK(cf_future_set_result(f, NULL));
    cf_future_release(f);
}

static void *check_request_flag(void *arg, cf_call *call)
{
    (void)arg;
    return (void *)(intptr_t)cf_call_cancel_requested(call);
}

TEST(future_run_gives_the_task_a_call)
{
    cf_future *f = future_new();
    ASSERT_OK(cf_future_run(f, check_request_flag, NULL));
    ASSERT_EQ(result_of(f), 0);
    cf_future_release(f);
}

/* ------------------------------------------------------------------------ */
/* A deferred executor: tasks wait in a queue until the test runs them     */

typedef struct deferred_task {
    cf_future *f;
    cf_fn fn;
    void *arg;
} deferred_task;

typedef struct deferred {
    deferred_task q[64];
    int n;
    int cancelled_at_run;
    int ran;
} deferred;

static int deferred_submit(void *impl, cf_future *f, cf_fn fn, void *arg,
                           const cf_codec *codec)
{
    (void)codec;
    deferred *d = impl;
    if (d->n == 64)
        return CF_ENOMEM;
    d->q[d->n++] = (deferred_task){cf_future_retain(f), fn, arg};
    return CF_OK;
}

static void deferred_run_all(deferred *d)
{
    for (int i = 0; i < d->n; i++) {
        int err = cf_future_run(d->q[i].f, d->q[i].fn, d->q[i].arg);
        if (err == CF_ECANCELLED)
            d->cancelled_at_run++;
        else if (err == CF_OK)
            d->ran++;
        cf_future_release(d->q[i].f);
    }
    d->n = 0;
}

static int deferred_shutdown(void *impl, double timeout, bool cancel_futures,
                             size_t *unfinished)
{
    (void)timeout;
    deferred *d = impl;
    if (cancel_futures)
        for (int i = 0; i < d->n; i++)
            cf_future_cancel(d->q[i].f);
    deferred_run_all(d);
    if (unfinished)
        *unfinished = 0;
    return CF_OK;
}

static const cf_executor_ops deferred_ops = {
    .kind = "deferred",
    .submit = deferred_submit,
    .shutdown = deferred_shutdown,
    .destroy = NULL,
};

TEST(map_free_cancels_unstarted_calls_on_custom_executor)
{
    deferred d = {.n = 0};
    cf_executor *ex = NULL;
    ASSERT_OK(cf_executor_new(&deferred_ops, &d, &ex));
    void *args[5] = {0};
    cf_map *m = NULL;
    ASSERT_OK(cf_executor_map(ex, task_identity, args, 5, NULL, &m));
    ASSERT_EQ(d.n, 5);
    cf_map_free(m);
    deferred_run_all(&d);
    ASSERT_EQ(d.cancelled_at_run, 5);
    ASSERT_EQ(d.ran, 0);
    cf_executor_free(ex);
}

TEST(map_waits_for_deferred_results)
{
    deferred d = {.n = 0};
    cf_executor *ex = NULL;
    ASSERT_OK(cf_executor_new(&deferred_ops, &d, &ex));
    void *args[3] = {(void *)(intptr_t)1, (void *)(intptr_t)2,
                     (void *)(intptr_t)3};
    cf_map_options opts = {.timeout = 0.05};
    cf_map *m = NULL;
    ASSERT_OK(cf_executor_map(ex, task_double, args, 3, &opts, &m));
    void *v = NULL;
    ASSERT_CODE(cf_map_next(m, &v, NULL), CF_ETIMEDOUT); /* nothing ran */
    cf_map_free(m);
    deferred_run_all(&d);
    ASSERT_EQ(d.cancelled_at_run, 3);

    ASSERT_OK(cf_executor_map(ex, task_double, args, 3, NULL, &m));
    deferred_run_all(&d);
    ASSERT_EQ(d.ran, 3);
    for (int i = 1; i <= 3; i++) {
        ASSERT_OK(cf_map_next(m, &v, NULL));
        ASSERT_EQ((intptr_t)v, 2 * i);
    }
    ASSERT_CODE(cf_map_next(m, &v, NULL), CF_EEND);
    cf_map_free(m);
    cf_executor_free(ex);
}

TEST(shutdown_cancel_futures_reaches_custom_executor)
{
    deferred d = {.n = 0};
    cf_executor *ex = NULL;
    ASSERT_OK(cf_executor_new(&deferred_ops, &d, &ex));
    cf_future *fs[3];
    for (int i = 0; i < 3; i++)
        fs[i] = submit(ex, task_identity, NULL);
    ASSERT_OK(cf_executor_shutdown(ex, true, true));
    for (int i = 0; i < 3; i++) {
        ASSERT(cf_future_cancelled(fs[i]));
        cf_future_release(fs[i]);
    }
    ASSERT_EQ(d.cancelled_at_run, 3);
    cf_executor_free(ex);
}

/* A custom executor reports failures on its futures: never broken. */
TEST(broken_is_false_for_custom_executor_and_null)
{
    inline_impl impl;
    cf_executor *ex = inline_new(&impl);
    const char *why = "untouched";
    ASSERT(!cf_executor_broken(ex, &why));
    ASSERT(!cf_executor_broken(NULL, &why));
    ASSERT_STR_EQ(why, "untouched");
    cf_executor_free(ex);
}
