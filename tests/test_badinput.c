/* test_badinput.c - every public function given what it should refuse.
 *
 * The header promises: misuse (NULL, bad sizes, NaN timeouts, wrong state)
 * returns an error code and never aborts; out-parameters are written only
 * on success; every release/free accepts NULL. Each test below feeds one
 * family of functions NULLs, zero and huge sizes, NaN, negative and
 * infinite timeouts, futures in every state and executors after shutdown,
 * and checks the exact code. The last tests drive the process pool's wire
 * decoders and the built-in codecs with random bytes (the fuzzer's job in
 * miniature, on every run).
 */
#include "reltest.h"

#include <float.h>
#include <limits.h>
#include <math.h>

#include "processes/wire.h"

/* Under ASan, let a hopeless allocation return NULL as libc's does, so
 * the library's own CF_ENOMEM path is what gets tested. */
#if RELTEST_ASAN
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
    return "allocator_may_return_null=1";
}
#endif
#if RELTEST_TSAN
const char *__tsan_default_options(void);
const char *__tsan_default_options(void)
{
    return "allocator_may_return_null=1";
}
#endif

/* A value an out-parameter must still hold after a failed call. */
#define SENTINEL ((void *)0x5e17)

/* The four states a future can be in, made on purpose. `gate` holds the
 * running one until opened. */
typedef struct states {
    cf_executor *pool;
    latch gate;
    cf_future *pending, *running, *cancelled, *finished, *failed;
} states;

static void states_make(states *s)
{
    s->pool = pool_new(1);
    latch_init(&s->gate);
    s->running = submit(s->pool, task_gate, &s->gate);
    latch_wait_arrived(&s->gate, 1);
    s->pending = future_new();
    s->cancelled = future_new();
    ASSERT(cf_future_cancel(s->cancelled));
    s->finished = future_done_with((void *)42);
    s->failed = future_new();
    ASSERT_OK(cf_future_set_exception(s->failed, 7, "seven"));
}

static void states_free(states *s)
{
    latch_open(&s->gate);
    ASSERT(cf_future_result(s->running, CF_FOREVER, NULL) == CF_OK);
    cf_future_release(s->pending);
    cf_future_release(s->running);
    cf_future_release(s->cancelled);
    cf_future_release(s->finished);
    cf_future_release(s->failed);
    cf_executor_free(s->pool);
    latch_destroy(&s->gate);
}

/* ------------------------------------------------------------------------ */
/* Errors and version                                                       */

TEST(error_functions_take_any_int)
{
    const int codes[] = {INT_MIN, -1000, -17, -16, -1, 0, 1, 1000, INT_MAX};
    for (size_t i = 0; i < sizeof codes / sizeof *codes; i++) {
        ASSERT(cf_strerror(codes[i]) != NULL);
        ASSERT(cf_err_name(codes[i]) != NULL);
        ASSERT(!cf_error_is_broken(codes[i]));
    }
    ASSERT_STR_EQ(cf_err_name(INT_MIN), "CF_UNKNOWN");
    ASSERT_STR_EQ(cf_strerror(INT_MAX), "the task failed");
    ASSERT(cf_version() != NULL);
}

/* ------------------------------------------------------------------------ */
/* Futures                                                                  */

TEST(future_null_everywhere)
{
    ASSERT_CODE(cf_future_new(NULL), CF_EINVAL);
    ASSERT(cf_future_retain(NULL) == NULL);
    cf_future_release(NULL);
    ASSERT(!cf_future_cancel(NULL));
    ASSERT(!cf_future_request_cancel(NULL));
    ASSERT(!cf_future_cancelled(NULL));
    ASSERT(!cf_future_running(NULL));
    ASSERT(!cf_future_done(NULL));
    void *v = SENTINEL;
    ASSERT_CODE(cf_future_result(NULL, 0, &v), CF_EINVAL);
    ASSERT_CODE(cf_future_result(NULL, CF_FOREVER, &v), CF_EINVAL);
    ASSERT_PTR_EQ(v, SENTINEL);
    cf_error e = {123, "x"};
    ASSERT_CODE(cf_future_exception(NULL, 0, &e), CF_EINVAL);
    ASSERT_EQ(e.code, 123);
    ASSERT_CODE(cf_future_add_done_callback(NULL, NULL, NULL), CF_EINVAL);
    ASSERT_CODE(cf_future_set_running_or_notify_cancel(NULL), CF_EINVAL);
    ASSERT_CODE(cf_future_set_result(NULL, NULL), CF_EINVAL);
    ASSERT_CODE(cf_future_set_result_owned(NULL, NULL, free), CF_EINVAL);
    ASSERT_CODE(cf_future_set_exception(NULL, 1, "x"), CF_EINVAL);
    ASSERT_CODE(cf_future_run(NULL, task_empty, NULL), CF_EINVAL);
    ASSERT(cf_fail(NULL, 1, "x %d", 1) == NULL);
    ASSERT(!cf_call_cancel_requested(NULL));

    cf_future *f = future_new();
    ASSERT_CODE(cf_future_add_done_callback(f, NULL, NULL), CF_EINVAL);
    ASSERT_CODE(cf_future_run(f, NULL, NULL), CF_EINVAL);
    ASSERT(!cf_future_done(f)); /* the refusals left it pending */
    cf_future_release(f);
}

TEST(future_timeouts_nan_negative_huge)
{
    states s;
    states_make(&s);
    const double polls[] = {0.0, -0.0, -1.0, -INFINITY, -DBL_MAX,
                            DBL_MIN, DBL_TRUE_MIN, 1e-300};
    cf_future *waitable[] = {s.pending, s.running};
    for (size_t w = 0; w < 2; w++) {
        cf_future *f = waitable[w];
        void *v = SENTINEL;
        cf_error e = {99, NULL};
        ASSERT_CODE(cf_future_result(f, NAN, &v), CF_EINVAL);
        ASSERT_CODE(cf_future_result(f, -NAN, &v), CF_EINVAL);
        ASSERT_CODE(cf_future_exception(f, NAN, &e), CF_EINVAL);
        for (size_t i = 0; i < sizeof polls / sizeof *polls; i++) {
            double t0 = harness_now();
            ASSERT_CODE(cf_future_result(f, polls[i], &v), CF_ETIMEDOUT);
            ASSERT_CODE(cf_future_exception(f, polls[i], &e), CF_ETIMEDOUT);
            ASSERT(harness_now() - t0 < reltest_late_tolerance());
        }
        ASSERT_PTR_EQ(v, SENTINEL);
        ASSERT_EQ(e.code, 99);
    }
    /* Huge and infinite timeouts on done futures return at once. */
    const double forevers[] = {CF_FOREVER, DBL_MAX, 1e300, 4611686018.0,
                               9.3e18};
    for (size_t i = 0; i < sizeof forevers / sizeof *forevers; i++) {
        void *v = NULL;
        ASSERT_OK(cf_future_result(s.finished, forevers[i], &v));
        ASSERT_EQ((intptr_t)v, 42);
        ASSERT_CODE(cf_future_result(s.cancelled, forevers[i], &v),
                    CF_ECANCELLED);
        ASSERT_CODE(cf_future_result(s.failed, forevers[i], &v), CF_ETASK);
    }
    /* NaN is refused even when the future is already done. */
    ASSERT_CODE(cf_future_result(s.finished, NAN, NULL), CF_EINVAL);
    states_free(&s);
}

TEST(future_transitions_in_every_state)
{
    states s;
    states_make(&s);
    /* set_running_or_notify_cancel */
    ASSERT_CODE(cf_future_set_running_or_notify_cancel(s.running), CF_ESTATE);
    ASSERT_CODE(cf_future_set_running_or_notify_cancel(s.cancelled),
                CF_ECANCELLED);
    ASSERT_CODE(cf_future_set_running_or_notify_cancel(s.finished), CF_ESTATE);
    ASSERT_CODE(cf_future_set_running_or_notify_cancel(s.failed), CF_ESTATE);
    /* completing what is done is refused and changes nothing (the
     * cancelled one had its one set_running_or_notify_cancel above) */
    cf_future *done[] = {s.cancelled, s.finished, s.failed};
    for (size_t i = 0; i < 3; i++) {
        ASSERT_CODE(cf_future_set_result(done[i], (void *)1), CF_ESTATE);
        ASSERT_CODE(cf_future_set_exception(done[i], 5, NULL), CF_ESTATE);
        ASSERT_CODE(cf_future_run(done[i], task_empty, NULL), CF_ESTATE);
    }
    void *v = NULL;
    ASSERT_OK(cf_future_result(s.finished, 0, &v));
    ASSERT_EQ((intptr_t)v, 42);
    cf_error e;
    ASSERT_OK(cf_future_exception(s.failed, 0, &e));
    ASSERT_EQ(e.code, 7);
    ASSERT_STR_EQ(e.message, "seven");
    /* set_result_owned refused: the caller keeps ownership (no free). */
    char *mine = malloc(8);
    ASSERT(mine != NULL);
    ASSERT_CODE(cf_future_set_result_owned(s.finished, mine, free), CF_ESTATE);
    free(mine);
    /* cancel: false on running and finished, true (idempotent) on cancelled */
    ASSERT(!cf_future_cancel(s.running));
    ASSERT(!cf_future_cancel(s.finished));
    ASSERT(!cf_future_cancel(s.failed));
    ASSERT(cf_future_cancel(s.cancelled));
    ASSERT(cf_future_request_cancel(s.cancelled));
    ASSERT(!cf_future_request_cancel(s.running));
    ASSERT(cf_future_running(s.running));
    /* an executor-driven future completed from outside: refused later */
    ASSERT_OK(cf_future_set_result(s.pending, (void *)3));
    ASSERT_CODE(cf_future_set_running_or_notify_cancel(s.pending), CF_ESTATE);
    states_free(&s);
}

TEST(set_exception_codes_and_messages)
{
    const int codes[] = {0, 1, INT_MAX, -1, -16, -1000, INT_MIN};
    for (size_t i = 0; i < sizeof codes / sizeof *codes; i++) {
        cf_future *f = future_new();
        ASSERT_OK(cf_future_set_exception(f, codes[i], NULL));
        int want = codes[i] == 0 ? CF_ETASK : codes[i] > 0 ? CF_ETASK
                                                           : codes[i];
        ASSERT_CODE(cf_future_result(f, 0, NULL), want);
        cf_error e;
        ASSERT_OK(cf_future_exception(f, 0, &e));
        ASSERT_EQ(e.code, codes[i] ? codes[i] : CF_ETASK);
        ASSERT(e.message != NULL && e.message[0] != '\0');
        cf_future_release(f);
    }
    /* An empty message is kept as given. */
    cf_future *f = future_new();
    ASSERT_OK(cf_future_set_exception(f, 3, ""));
    cf_error e;
    ASSERT_OK(cf_future_exception(f, 0, &e));
    ASSERT(e.message != NULL);
    cf_future_release(f);
}

static void *task_fail_fmt(void *arg, cf_call *call)
{
    (void)arg;
    /* A NULL format and a zero code: the failure is still recorded. */
    return cf_fail(call, 0, NULL);
}

TEST(cf_fail_with_null_format_and_zero_code)
{
    cf_executor *pool = pool_new(1);
    cf_future *f = submit(pool, task_fail_fmt, NULL);
    ASSERT_CODE(cf_future_result(f, CF_FOREVER, NULL), CF_ETASK);
    cf_error e;
    ASSERT_OK(cf_future_exception(f, 0, &e));
    ASSERT_EQ(e.code, CF_ETASK);
    ASSERT(e.message != NULL);
    cf_future_release(f);
    cf_executor_free(pool);
}

/* ------------------------------------------------------------------------ */
/* wait and as_completed                                                    */

TEST(wait_bad_arguments)
{
    states s;
    states_make(&s);
    cf_future *fs[] = {s.pending, s.finished};
    cf_future *done[4], *not_done[4];
    size_t nd = 77, nn = 77;
    ASSERT_CODE(cf_wait(NULL, 1, 0, CF_ALL_COMPLETED, done, &nd, not_done,
                        &nn), CF_EINVAL);
    cf_future *with_null[] = {s.finished, NULL};
    ASSERT_CODE(cf_wait(with_null, 2, 0, CF_ALL_COMPLETED, done, &nd,
                        not_done, &nn), CF_EINVAL);
    ASSERT_CODE(cf_wait(fs, 2, NAN, CF_ALL_COMPLETED, done, &nd, not_done,
                        &nn), CF_EINVAL);
    ASSERT_CODE(cf_wait(fs, 2, 0, (cf_return_when)3, done, &nd, not_done,
                        &nn), CF_EINVAL);
    ASSERT_CODE(cf_wait(fs, 2, 0, (cf_return_when)-1, done, &nd, not_done,
                        &nn), CF_EINVAL);
    ASSERT_CODE(cf_wait(fs, SIZE_MAX, 0, CF_ALL_COMPLETED, done, &nd,
                        not_done, &nn), CF_EINVAL);
    ASSERT_CODE(cf_wait(fs, SIZE_MAX / 2, 0, CF_ALL_COMPLETED, done, &nd,
                        not_done, &nn), CF_EINVAL);
    ASSERT_EQ(nd, 77); /* untouched by the refusals */
    ASSERT_EQ(nn, 77);
    /* n = 0, even with a NULL array: nothing to wait for. */
    ASSERT_OK(cf_wait(NULL, 0, CF_FOREVER, CF_ALL_COMPLETED, NULL, &nd, NULL,
                      &nn));
    ASSERT_EQ(nd, 0);
    ASSERT_EQ(nn, 0);
    ASSERT_OK(cf_wait(NULL, 0, CF_FOREVER, CF_FIRST_COMPLETED, NULL, &nd,
                      NULL, &nn));
    /* Negative and -inf timeouts poll; every output may be NULL. */
    ASSERT_OK(cf_wait(fs, 2, -1, CF_ALL_COMPLETED, NULL, NULL, NULL, NULL));
    ASSERT_OK(cf_wait(fs, 2, -INFINITY, CF_ALL_COMPLETED, done, &nd, not_done,
                      &nn));
    ASSERT_EQ(nd, 1);
    ASSERT_EQ(nn, 1);
    /* Every state at once, duplicated. */
    cf_future *all[] = {s.pending, s.running, s.cancelled, s.finished,
                        s.failed, s.pending, s.failed, s.running};
    cf_future *d8[8], *n8[8];
    ASSERT_OK(cf_wait(all, 8, 0, CF_FIRST_EXCEPTION, d8, &nd, n8, &nn));
    ASSERT_EQ(nd, 3);
    ASSERT_EQ(nn, 2);
    states_free(&s);
}

TEST(as_completed_bad_arguments)
{
    states s;
    states_make(&s);
    cf_as_completed *it = SENTINEL;
    cf_future *fs[] = {s.finished, s.cancelled, s.failed, s.finished};
    ASSERT_CODE(cf_as_completed_new(fs, 2, 0, NULL), CF_EINVAL);
    ASSERT_CODE(cf_as_completed_new(NULL, 2, 0, &it), CF_EINVAL);
    ASSERT_CODE(cf_as_completed_new(fs, 2, NAN, &it), CF_EINVAL);
    cf_future *with_null[] = {s.finished, NULL};
    ASSERT_CODE(cf_as_completed_new(with_null, 2, 0, &it), CF_EINVAL);
    ASSERT_CODE(cf_as_completed_new(fs, SIZE_MAX, 0, &it), CF_EINVAL);
    ASSERT_PTR_EQ(it, SENTINEL);
    ASSERT_CODE(cf_as_completed_next(NULL, NULL), CF_EINVAL);
    cf_as_completed_free(NULL);

    /* Empty: ends at once, and keeps ending. */
    ASSERT_OK(cf_as_completed_new(NULL, 0, CF_FOREVER, &it));
    cf_future *f = SENTINEL;
    ASSERT_CODE(cf_as_completed_next(it, &f), CF_EEND);
    ASSERT_CODE(cf_as_completed_next(it, &f), CF_EEND);
    ASSERT_CODE(cf_as_completed_next(it, NULL), CF_EINVAL);
    ASSERT_PTR_EQ(f, SENTINEL);
    cf_as_completed_free(it);

    /* Done futures in every done state, duplicated; then the end. */
    ASSERT_OK(cf_as_completed_new(fs, 4, -5, &it));
    for (int i = 0; i < 3; i++) {
        ASSERT_OK(cf_as_completed_next(it, &f));
        cf_future_release(f);
    }
    ASSERT_CODE(cf_as_completed_next(it, &f), CF_EEND);
    cf_as_completed_free(it);

    /* A pending future with a negative timeout: a poll, then CF_ETIMEDOUT
     * for as long as it stays pending. */
    cf_future *p[] = {s.pending};
    ASSERT_OK(cf_as_completed_new(p, 1, -1, &it));
    ASSERT_CODE(cf_as_completed_next(it, &f), CF_ETIMEDOUT);
    ASSERT_CODE(cf_as_completed_next(it, &f), CF_ETIMEDOUT);
    ASSERT_OK(cf_future_set_result(s.pending, NULL));
    ASSERT_OK(cf_as_completed_next(it, &f));
    ASSERT_PTR_EQ(f, s.pending);
    cf_future_release(f);
    ASSERT_CODE(cf_as_completed_next(it, &f), CF_EEND);
    cf_as_completed_free(it);
    states_free(&s);
}

/* ------------------------------------------------------------------------ */
/* Executors                                                                */

TEST(thread_pool_options_out_of_range)
{
    cf_executor *ex = SENTINEL;
    ASSERT_CODE(cf_thread_pool_new(NULL, NULL), CF_EINVAL);
    ASSERT_CODE(cf_thread_pool_new(&(cf_thread_pool_options){.max_workers = -1},
                                   &ex), CF_EINVAL);
    ASSERT_CODE(cf_thread_pool_new(
                    &(cf_thread_pool_options){.max_workers = INT_MIN}, &ex),
                CF_EINVAL);
    ASSERT_PTR_EQ(ex, SENTINEL);
    /* A long prefix is truncated, not overflowed; "" means the default. */
    char longname[300];
    memset(longname, 'n', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    const char *names[] = {longname, "", "%s%n%x"};
    for (size_t i = 0; i < 3; i++) {
        ASSERT_OK(cf_thread_pool_new(
            &(cf_thread_pool_options){.max_workers = 1,
                                      .thread_name_prefix = names[i]},
            &ex));
        cf_future *f = submit(ex, task_double, (void *)4);
        ASSERT_EQ(result_of(f), 8);
        cf_future_release(f);
        cf_executor_free(ex);
    }
    /* The most workers allowed; threads start lazily, so few are made. */
    ASSERT_OK(cf_thread_pool_new(
        &(cf_thread_pool_options){.max_workers = 4096}, &ex));
    cf_future *f = submit(ex, task_double, (void *)4);
    ASSERT_EQ(result_of(f), 8);
    cf_future_release(f);
    cf_executor_free(ex);
}

TEST(executor_null_and_after_shutdown)
{
    cf_future *f = SENTINEL;
    ASSERT_CODE(cf_executor_submit(NULL, task_empty, NULL, &f), CF_EINVAL);
    ASSERT_CODE(cf_executor_submit_ex(NULL, task_empty, NULL, NULL, &f),
                CF_EINVAL);
    ASSERT_CODE(cf_executor_shutdown(NULL, true, true), CF_EINVAL);
    ASSERT_CODE(cf_executor_shutdown_timeout(NULL, 1, false, NULL), CF_EINVAL);
    cf_executor_free(NULL);
    cf_executor_freep(NULL);
    ASSERT_STR_EQ(cf_executor_kind(NULL), "");
    ASSERT_CODE(cf_executor_new(NULL, NULL, NULL), CF_EINVAL);
    cf_executor_ops no_submit = {.kind = "x"};
    cf_executor *ex = SENTINEL;
    ASSERT_CODE(cf_executor_new(&no_submit, NULL, &ex), CF_EINVAL);
    ASSERT_PTR_EQ(ex, SENTINEL);

    ex = pool_new(2);
    ASSERT_CODE(cf_executor_submit(ex, NULL, NULL, &f), CF_EINVAL);
    ASSERT_CODE(cf_executor_submit(ex, task_empty, NULL, NULL), CF_EINVAL);
    ASSERT_PTR_EQ(f, SENTINEL);
    ASSERT_CODE(cf_executor_shutdown_timeout(ex, NAN, false, NULL), CF_EINVAL);
    /* Shutdown is idempotent in every form; then submit is refused. */
    size_t left = 99;
    ASSERT_OK(cf_executor_shutdown(ex, false, false));
    ASSERT_OK(cf_executor_shutdown(ex, true, true));
    ASSERT_OK(cf_executor_shutdown_timeout(ex, -1, true, &left));
    ASSERT_EQ(left, 0);
    ASSERT_OK(cf_executor_shutdown_timeout(ex, CF_FOREVER, false, NULL));
    ASSERT_OK(cf_executor_shutdown_timeout(ex, 0, false, NULL));
    ASSERT_CODE(cf_executor_submit(ex, task_empty, NULL, &f), CF_ESHUTDOWN);
    ASSERT_CODE(cf_executor_submit_ex(ex, task_empty, NULL, cf_codec_string(),
                                      &f), CF_ESHUTDOWN);
    ASSERT_PTR_EQ(f, SENTINEL);
    void *args[] = {NULL};
    cf_map *m = SENTINEL;
    ASSERT_CODE(cf_executor_map(ex, task_identity, args, 1, NULL, &m),
                CF_ESHUTDOWN);
    ASSERT_PTR_EQ(m, SENTINEL);
    cf_executor_free(ex);
}

static bool next_none(void *ctx, void **arg)
{
    (void)ctx;
    (void)arg;
    return false;
}

TEST(map_bad_arguments)
{
    cf_executor *ex = pool_new(2);
    void *args[] = {(void *)1, (void *)2};
    cf_map *m = SENTINEL;
    ASSERT_CODE(cf_executor_map(NULL, task_identity, args, 2, NULL, &m),
                CF_EINVAL);
    ASSERT_CODE(cf_executor_map(ex, NULL, args, 2, NULL, &m), CF_EINVAL);
    ASSERT_CODE(cf_executor_map(ex, task_identity, NULL, 2, NULL, &m),
                CF_EINVAL);
    cf_map_options bad[] = {{.timeout = NAN}, {.timeout = -1},
                            {.timeout = -INFINITY}};
    for (size_t i = 0; i < 3; i++)
        ASSERT_CODE(cf_executor_map(ex, task_identity, args, 2, &bad[i], &m),
                    CF_EINVAL);
    ASSERT_CODE(cf_executor_map_stream(ex, task_identity, NULL, NULL, NULL,
                                       &m), CF_EINVAL);
    ASSERT_PTR_EQ(m, SENTINEL);
    ASSERT_CODE(cf_map_next(NULL, NULL, NULL), CF_EINVAL);
    cf_map_free(NULL);

    /* Zero items, with NULL args, and an empty stream: end at once. */
    ASSERT_OK(cf_executor_map(ex, task_identity, NULL, 0, NULL, &m));
    ASSERT_CODE(cf_map_next(m, NULL, NULL), CF_EEND);
    ASSERT_CODE(cf_map_next(m, NULL, NULL), CF_EEND);
    cf_map_free(m);
    ASSERT_OK(cf_executor_map_stream(ex, task_identity, next_none, NULL,
                                     &(cf_map_options){.buffersize = 1}, &m));
    ASSERT_CODE(cf_map_next(m, NULL, NULL), CF_EEND);
    cf_map_free(m);
    /* A huge window and an infinite timeout mean "no limit". */
    cf_map_options huge = {.timeout = CF_FOREVER, .buffersize = SIZE_MAX};
    ASSERT_OK(cf_executor_map(ex, task_double, args, 2, &huge, &m));
    void *v;
    ASSERT_OK(cf_map_next(m, &v, NULL));
    ASSERT_EQ((intptr_t)v, 2);
    ASSERT_OK(cf_map_next(m, &v, NULL));
    ASSERT_EQ((intptr_t)v, 4);
    ASSERT_CODE(cf_map_next(m, &v, NULL), CF_EEND);
    cf_map_free(m);
    cf_executor_free(ex);
}

/* A NULL `out` is refused, with nothing left running. */
TEST(map_null_out)
{
    cf_executor *ex = pool_new(2);
    void *args[] = {(void *)1, (void *)2};
    ASSERT_CODE(cf_executor_map(ex, task_identity, args, 2, NULL, NULL),
                CF_EINVAL);
    ASSERT_CODE(cf_executor_map_stream(ex, task_identity, next_none, NULL,
                                       NULL, NULL), CF_EINVAL);
    cf_executor_free(ex);
}

/* A chunk size larger than the input means "everything in one chunk", as
 * in Python, not an allocation of that many slots. */
TEST(map_huge_chunksize_means_one_chunk)
{
    cf_executor *ex = pool_new(2);
    void *args[] = {(void *)1, (void *)2};
    const size_t sizes[] = {SIZE_MAX, SIZE_MAX / 64, (size_t)1 << 40};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        cf_map *m = NULL;
        cf_map_options o = {.chunksize = sizes[i]};
        ASSERT_OK(cf_executor_map(ex, task_double, args, 2, &o, &m));
        void *v;
        ASSERT_OK(cf_map_next(m, &v, NULL));
        ASSERT_EQ((intptr_t)v, 2);
        ASSERT_OK(cf_map_next(m, &v, NULL));
        ASSERT_EQ((intptr_t)v, 4);
        ASSERT_CODE(cf_map_next(m, &v, NULL), CF_EEND);
        cf_map_free(m);
    }
    cf_executor_free(ex);
}

/* ------------------------------------------------------------------------ */
/* Codecs and buffers                                                       */

TEST(buffer_and_codecs_refuse_bad_bytes)
{
    ASSERT_CODE(cf_buffer_append(NULL, "x", 1), CF_EINVAL);
    cf_buffer buf;
    cf__buffer_init(&buf);
    ASSERT_CODE(cf_buffer_append(&buf, NULL, 1), CF_EINVAL);
    ASSERT_OK(cf_buffer_append(&buf, NULL, 0));
    ASSERT_CODE(cf_buffer_append(&buf, "x", SIZE_MAX), CF_ENOMEM);
    ASSERT_EQ(buf.len, 0);
    cf__buffer_destroy(&buf);

    const cf_codec *word = cf_codec_word(), *str = cf_codec_string();
    void *v = SENTINEL;
    unsigned char bytes[16] = {0};
    for (size_t len = 0; len < 16; len++)
        if (len != 8)
            ASSERT_CODE(word->decode_arg(bytes, len, &v), CF_ECODEC);
    ASSERT_PTR_EQ(v, SENTINEL);
    ASSERT_CODE(str->decode_arg(bytes, 0, &v), CF_ECODEC);
    ASSERT_CODE(str->decode_arg("\x02hi", 3, &v), CF_ECODEC);
    ASSERT_CODE(str->decode_arg("\x00x", 2, &v), CF_ECODEC);
    ASSERT_CODE(str->decode_arg("\x01h\0i", 4, &v), CF_ECODEC);
    ASSERT_PTR_EQ(v, SENTINEL);
    ASSERT_OK(str->decode_arg("\x00", 1, &v));
    ASSERT(v == NULL);
    ASSERT_OK(str->decode_result("\x01", 1, &v));
    ASSERT_STR_EQ(v, "");
    str->free_result(v);
}

/* xorshift64*: the same bytes every run, so a failure reproduces. */
static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1DULL;
}

/* Runs every decoder over `p[0..n)`; each must refuse or accept without
 * reading past `n` (ASan checks that: the bytes live in an exact-size
 * heap block). */
static void decode_everything(const unsigned char *p, size_t n)
{
    cf__wire_header h;
    int rc = cf__wire_header_decode(p, n, &h);
    ASSERT(rc == CF_OK || rc == CF_EAGAIN || rc == CF_ECODEC);
    if (rc == CF_OK)
        ASSERT(h.len <= CF__WIRE_MAX_PAYLOAD && h.flags == 0);
    cf__wire_init init;
    rc = cf__wire_decode_init(p, n, &init);
    ASSERT(rc == CF_OK || rc == CF_ECODEC);
    if (rc == CF_OK && init.has_init)
        ASSERT(init.init.module_len <= n);
    for (int chunk = 0; chunk < 2; chunk++) {
        cf__wire_task t;
        rc = cf__wire_decode_task(p, n, chunk, &t);
        ASSERT(rc == CF_OK || rc == CF_ECODEC);
        if (rc == CF_OK && chunk) {
            cf__wire_reader r;
            cf__wire_chunk_items(&t, &r);
            for (uint64_t i = 0; i < t.n; i++) {
                const unsigned char *d;
                size_t len;
                ASSERT_OK(cf__wire_next_item(&r, &d, &len));
                ASSERT(d >= p && d + len <= p + n);
            }
        }
    }
    cf__wire_status st;
    rc = cf__wire_decode_status(p, n, &st);
    ASSERT(rc == CF_OK || rc == CF_ECODEC);
    cf__wire_reader r;
    cf__wire_reader_init(&r, p, n);
    uint64_t items = cf__wire_get_u64(&r);
    for (uint64_t i = 0; i < items && !r.bad; i++)
        if (cf__wire_next_status(&r, &st) == CF_OK)
            ASSERT(st.data == NULL ? st.len == 0
                                   : st.data + st.len <= p + n);
    void *v;
    const cf_codec *codecs[] = {cf_codec_word(), cf_codec_string()};
    for (int c = 0; c < 2; c++)
        if (codecs[c]->decode_result(p, n, &v) == CF_OK &&
            codecs[c]->free_result)
            codecs[c]->free_result(v);
}

/* Random bytes, and valid messages with random bytes flipped, through
 * every decoder. */
TEST(wire_decoders_survive_random_bytes)
{
    uint64_t seed = 0x9E3779B97F4A7C15ULL;
    size_t rounds = harness_scaled(20000, 500);
    for (size_t i = 0; i < rounds; i++) {
        size_t n = (size_t)(rng_next(&seed) % 96);
        unsigned char *p = malloc(n ? n : 1);
        ASSERT(p != NULL);
        for (size_t j = 0; j < n; j++)
            p[j] = (unsigned char)rng_next(&seed);
        /* Small integers make lengths and counts plausible more often. */
        if (n >= 8 && (i & 1))
            p[rng_next(&seed) % (n - 7)] = (unsigned char)(rng_next(&seed) % 4);
        decode_everything(p, n);
        free(p);
    }
}

/* A valid CHUNK payload, then each of its bytes mutated and every prefix
 * cut: still no read past the end, and no accepted item outside. */
TEST(wire_valid_messages_mutated_and_truncated)
{
    cf_buffer b;
    cf__buffer_init(&b);
    cf__wire_ref fn = {.module = "libx.so", .module_len = 7, .offset = 4096};
    cf__wire_codec codec = {.kind = CF__CODEC_CUSTOM, .ref = fn};
    ASSERT_OK(cf__wire_put_ref(&b, &fn));
    ASSERT_OK(cf__wire_put_codec(&b, &codec));
    ASSERT_OK(cf__wire_put_u64(&b, 3));
    for (int i = 0; i < 3; i++) {
        ASSERT_OK(cf__wire_put_u64(&b, (uint64_t)i));
        ASSERT_OK(cf_buffer_append(&b, "abc", (size_t)i));
    }
    cf__wire_task t;
    ASSERT_OK(cf__wire_decode_task(b.data, b.len, true, &t));
    ASSERT_EQ(t.n, 3);
    for (size_t cut = 0; cut < b.len; cut++) {
        unsigned char *p = malloc(cut ? cut : 1);
        ASSERT(p != NULL);
        memcpy(p, b.data, cut);
        ASSERT_CODE(cf__wire_decode_task(p, cut, true, &t), CF_ECODEC);
        decode_everything(p, cut);
        free(p);
    }
    uint64_t seed = 42;
    for (size_t i = 0; i < b.len * 8; i++) {
        unsigned char *p = malloc(b.len);
        ASSERT(p != NULL);
        memcpy(p, b.data, b.len);
        p[i / 8] ^= (unsigned char)(1u << (i % 8));
        p[rng_next(&seed) % b.len] = (unsigned char)rng_next(&seed);
        decode_everything(p, b.len);
        free(p);
    }
    cf__buffer_destroy(&b);
}
