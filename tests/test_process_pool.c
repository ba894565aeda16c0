/* test_process_pool.c - ProcessPoolExecutor: results, codecs, payloads,
 * map, initializer, max_tasks_per_child, shutdown, cancel, terminate,
 * start methods, and calls back into an executor from a worker.
 * The crash catalogue lives in test_process_crash.c.
 */
#define PP_WORKER_KINDS 1 /* see procpool_test.h */
#include "procpool_test.h"

#include "core/core.h" /* cf__future_set_cancel_hook */
#include "processes/pool.h" /* cf__process_pool_before_give */

#include <sys/resource.h>
#include <sys/wait.h>

/* ------------------------------------------------------------------------ */
/* Results and failures                                                     */

static void check_squares(cf_start_method method)
{
    cf_executor *ex = pool_new(2, method);
    ASSERT_STR_EQ(cf_executor_kind(ex), "process_pool");
    cf_future *f[20];
    for (intptr_t i = 0; i < 20; i++)
        ASSERT_OK(cf_executor_submit(ex, task_square, (void *)i, &f[i]));
    for (intptr_t i = 0; i < 20; i++) {
        void *v;
        ASSERT_OK(cf_future_result(f[i], 30, &v));
        ASSERT_EQ((intptr_t)v, i * i);
        cf_future_release(f[i]);
    }
    cf_executor_free(ex);
}

TEST_TIMEOUT(exec_workers_return_results, 60)
{
    check_squares(CF_START_EXEC);
}

TEST_TIMEOUT(fork_workers_return_results, 60)
{
    check_squares(CF_START_FORK);
}

TEST_TIMEOUT(workers_are_other_processes, 60)
{
    cf_executor *ex = pool_new(1, CF_START_EXEC);
    cf_future *f;
    void *v;
    ASSERT_OK(cf_executor_submit(ex, task_getpid, NULL, &f));
    ASSERT_OK(cf_future_result(f, 30, &v));
    ASSERT_NE((intptr_t)v, (intptr_t)getpid());
    ASSERT((intptr_t)v > 0);
    cf_future_release(f);
    cf_executor_free(ex);
}

static void *task_fail_with(void *arg, cf_call *call)
{
    return cf_fail(call, 42, "bad input %ld", (long)(intptr_t)arg);
}

static void *task_fail_negative(void *arg, cf_call *call)
{
    (void)arg;
    return cf_fail(call, CF_ECODEC, "negative codes pass through");
}

TEST_TIMEOUT(task_failure_returns_code_and_message, 60)
{
    cf_executor *ex = pool_new(1, CF_START_EXEC);
    cf_future *f, *g;
    cf_error e;
    ASSERT_OK(cf_executor_submit(ex, task_fail_with, (void *)5, &f));
    ASSERT_OK(cf_executor_submit(ex, task_fail_negative, NULL, &g));
    ASSERT_CODE(outcome(f, 30, NULL, &e), CF_ETASK);
    ASSERT_EQ(e.code, 42);
    ASSERT_STR_EQ(e.message, "bad input 5");
    ASSERT_CODE(outcome(g, 30, NULL, &e), CF_ECODEC);
    ASSERT_STR_EQ(e.message, "negative codes pass through");
    cf_future_release(f);
    cf_future_release(g);
    cf_executor_free(ex);
}

static void *task_shout(void *arg, cf_call *call)
{
    (void)call;
    if (!arg)
        return NULL;
    char *s = strdup(arg);
    for (char *p = s; *p; p++)
        if (*p >= 'a' && *p <= 'z')
            *p = (char)(*p - 'a' + 'A');
    return s;
}

TEST_TIMEOUT(string_codec_round_trip, 60)
{
    cf_process_pool_options o = {PP_KIND, .max_workers = 1,
                                 .codec = cf_codec_string()};
    cf_executor *ex;
    ASSERT_OK(cf_process_pool_new(&o, &ex));
    cf_future *f, *g, *h;
    void *v;
    ASSERT_OK(cf_executor_submit(ex, task_shout, "hello", &f));
    ASSERT_OK(cf_executor_submit(ex, task_shout, NULL, &g));
    ASSERT_OK(cf_executor_submit(ex, task_shout, "", &h));
    ASSERT_OK(cf_future_result(f, 30, &v));
    ASSERT_STR_EQ(v, "HELLO");
    ASSERT_OK(cf_future_result(g, 30, &v));
    ASSERT_PTR_EQ(v, NULL);
    ASSERT_OK(cf_future_result(h, 30, &v));
    ASSERT_STR_EQ(v, "");
    cf_future_release(f);
    cf_future_release(g);
    cf_future_release(h);
    cf_executor_free(ex);
}

/* A codec that cannot decode results: the future fails, the pool lives. */
static int bad_decode(const void *data, size_t len, void **value)
{
    (void)data;
    (void)len;
    (void)value;
    return CF_ECODEC;
}

static int word_enc(const void *v, cf_buffer *out)
{
    return cf_buffer_append(out, &v, sizeof v);
}

static int word_dec(const void *data, size_t len, void **value)
{
    if (len != sizeof *value)
        return CF_ECODEC;
    memcpy(value, data, len);
    return CF_OK;
}

static const cf_codec undecodable = {
    .encode_arg = word_enc,
    .decode_arg = word_dec,
    .encode_result = word_enc,
    .decode_result = bad_decode,
};

TEST_TIMEOUT(codec_failure_fails_only_that_future, 60)
{
    cf_executor *ex = pool_new(1, CF_START_EXEC);
    cf_future *f, *g;
    cf_error e;
    void *v;
    ASSERT_OK(cf_executor_submit_ex(ex, task_square, (void *)3, &undecodable,
                                    &f));
    ASSERT_OK(cf_executor_submit(ex, task_square, (void *)4, &g));
    ASSERT_CODE(outcome(f, 30, NULL, &e), CF_ECODEC);
    ASSERT(contains(e.message, "decode"));
    ASSERT_OK(cf_future_result(g, 30, &v));
    ASSERT_EQ((intptr_t)v, 16);
    cf_future_release(f);
    cf_future_release(g);
    cf_executor_free(ex);
}

TEST_TIMEOUT(codec_on_the_heap_is_refused, 30)
{
    cf_executor *ex = pool_new(1, CF_START_EXEC);
    cf_codec *heap = malloc(sizeof *heap);
    *heap = undecodable;
    cf_future *f;
    ASSERT_CODE(cf_executor_submit_ex(ex, task_square, (void *)3, heap, &f),
                CF_EINVAL);
    free(heap);
    cf_executor_free(ex);
}

/* ------------------------------------------------------------------------ */
/* Volume                                                                   */

TEST_TIMEOUT(ten_thousand_tiny_tasks, 120)
{
    size_t n = harness_scaled(10000, 200);
    cf_executor *ex = pool_new(2, CF_START_EXEC);
    cf_future **f = malloc(n * sizeof *f);
    double t0 = harness_now();
    for (size_t i = 0; i < n; i++)
        ASSERT_OK(cf_executor_submit(ex, task_square, (void *)(intptr_t)i,
                                     &f[i]));
    for (size_t i = 0; i < n; i++) {
        void *v;
        ASSERT_OK(cf_future_result(f[i], 60, &v));
        ASSERT_EQ((intptr_t)v, (intptr_t)(i * i));
        cf_future_release(f[i]);
    }
    double dt = harness_now() - t0;
    printf("  %zu tasks in %.3f s (%.0f tasks/s)\n", n, dt, (double)n / dt);
    free(f);
    cf_executor_free(ex);
}

TEST_TIMEOUT(round_trip_latency, 60)
{
    size_t n = harness_scaled(2000, 50);
    cf_executor *ex = pool_new(1, CF_START_EXEC);
    double *lat = malloc(n * sizeof *lat);
    cf_future *f;
    ASSERT_OK(cf_executor_submit(ex, task_square, (void *)2, &f)); /* warm */
    ASSERT_OK(cf_future_result(f, 30, NULL));
    cf_future_release(f);
    for (size_t i = 0; i < n; i++) {
        double t0 = harness_now();
        void *v;
        ASSERT_OK(cf_executor_submit(ex, task_square, (void *)3, &f));
        ASSERT_OK(cf_future_result(f, 30, &v));
        lat[i] = harness_now() - t0;
        ASSERT_EQ((intptr_t)v, 9);
        cf_future_release(f);
    }
    /* Median by partial selection: good enough for a report line. */
    for (size_t i = 0; i <= n / 2; i++)
        for (size_t j = i + 1; j < n; j++)
            if (lat[j] < lat[i]) {
                double t = lat[i];
                lat[i] = lat[j];
                lat[j] = t;
            }
    printf("  round trip p50 %.1f us over %zu calls\n", lat[n / 2] * 1e6, n);
    free(lat);
    cf_executor_free(ex);
}

/* A string of `len` bytes: 'a'..'z' repeating, seeded. */
static char *make_string(size_t len, int seed)
{
    char *s = malloc(len + 1);
    ASSERT(s != NULL);
    for (size_t i = 0; i < len; i++)
        s[i] = (char)('a' + (i + (size_t)seed) % 26);
    s[len] = '\0';
    return s;
}

TEST_TIMEOUT(large_payloads_both_ways, 180)
{
    size_t len = harness_scaled(32u << 20, 1u << 20);
    enum { N = 4 };
    cf_process_pool_options o = {PP_KIND, .max_workers = 2,
                                 .codec = cf_codec_string()};
    cf_executor *ex;
    ASSERT_OK(cf_process_pool_new(&o, &ex));
    cf_future *f[N];
    for (int i = 0; i < N; i++) {
        char *s = make_string(len, i);
        ASSERT_OK(cf_executor_submit(ex, task_shout, s, &f[i]));
        free(s); /* encoded at submit: the caller's copy may go */
    }
    for (int i = 0; i < N; i++) {
        void *v;
        ASSERT_OK(cf_future_result(f[i], 120, &v));
        const char *r = v;
        ASSERT_EQ(strlen(r), len);
        for (size_t k = 0; k < len; k += 4099)
            ASSERT_EQ(r[k], 'A' + (k + (size_t)i) % 26);
        cf_future_release(f[i]);
    }
    cf_executor_free(ex);
}

/* ------------------------------------------------------------------------ */
/* map                                                                      */

TEST_TIMEOUT(map_with_chunksize_keeps_order, 60)
{
    enum { N = 103 };
    void *args[N];
    for (intptr_t i = 0; i < N; i++)
        args[i] = (void *)i;
    cf_executor *ex = pool_new(2, CF_START_EXEC);
    cf_map_options mo = {.chunksize = 7};
    cf_map *m;
    ASSERT_OK(cf_executor_map(ex, task_square, args, N, &mo, &m));
    for (intptr_t i = 0; i < N; i++) {
        void *v;
        ASSERT_OK(cf_map_next(m, &v, NULL));
        ASSERT_EQ((intptr_t)v, i * i);
    }
    ASSERT_CODE(cf_map_next(m, NULL, NULL), CF_EEND);
    cf_map_free(m);
    cf_executor_free(ex);
}

static void *task_fail_odd(void *arg, cf_call *call)
{
    intptr_t x = (intptr_t)arg;
    if (x % 2)
        return cf_fail(call, 7, "odd %ld", (long)x);
    return (void *)(x + 1000);
}

TEST_TIMEOUT(map_chunk_items_fail_one_by_one, 60)
{
    enum { N = 10 };
    void *args[N];
    for (intptr_t i = 0; i < N; i++)
        args[i] = (void *)i;
    cf_executor *ex = pool_new(1, CF_START_EXEC);
    cf_map_options mo = {.chunksize = 4};
    cf_map *m;
    ASSERT_OK(cf_executor_map(ex, task_fail_odd, args, N, &mo, &m));
    for (intptr_t i = 0; i < N; i++) {
        void *v;
        cf_error e;
        int rc = cf_map_next(m, &v, &e);
        if (i % 2) {
            ASSERT_CODE(rc, CF_ETASK);
            ASSERT_EQ(e.code, 7);
            char want[32];
            snprintf(want, sizeof want, "odd %ld", (long)i);
            ASSERT_STR_EQ(e.message, want);
        } else {
            ASSERT_OK(rc);
            ASSERT_EQ((intptr_t)v, i + 1000);
        }
    }
    cf_map_free(m);
    cf_executor_free(ex);
}

/* Word chunks travel as WORDS messages and come back as plain words
 * until an item fails or sets a free function: then the worker turns the
 * whole reply into per-item outcomes. Exercise that switch at the first,
 * a middle and the last item of a chunk, and a chunk with none. */
static void ignore_word(void *p)
{
    (void)p; /* the result is a plain word, not memory */
}

static void *task_mixed(void *arg, cf_call *call)
{
    intptr_t x = (intptr_t)arg;
    if (x % 100 == 0 && x < 200)
        return cf_fail(call, 5, "first %ld", (long)x);
    if (x % 100 == 99)
        return cf_fail(call, 6, "last %ld", (long)x);
    if (x == 42 || x == 142)
        cf_call_set_result_free(call, ignore_word);
    return (void *)(x * 3);
}

TEST_TIMEOUT(map_word_chunks_switch_to_outcomes_per_item, 60)
{
    enum { N = 350 };
    void **args = malloc(N * sizeof *args);
    ASSERT(args != NULL);
    for (intptr_t i = 0; i < N; i++)
        args[i] = (void *)i;
    cf_executor *ex = pool_new(2, CF_START_EXEC);
    cf_map_options mo = {.chunksize = 100};
    cf_map *m;
    ASSERT_OK(cf_executor_map(ex, task_mixed, args, N, &mo, &m));
    free(args); /* read during the call only */
    for (intptr_t i = 0; i < N; i++) {
        void *v = NULL;
        cf_error e = {0};
        int rc = cf_map_next(m, &v, &e);
        if ((i % 100 == 0 && i < 200) || i % 100 == 99) {
            ASSERT_CODE(rc, CF_ETASK);
            ASSERT_EQ(e.code, i % 100 == 0 ? 5 : 6);
            char want[32];
            snprintf(want, sizeof want, "%s %ld",
                     i % 100 == 0 ? "first" : "last", (long)i);
            ASSERT_STR_EQ(e.message, want);
        } else {
            ASSERT_OK(rc);
            ASSERT_EQ((intptr_t)v, i * 3);
        }
    }
    ASSERT_CODE(cf_map_next(m, NULL, NULL), CF_EEND);
    cf_map_free(m);
    cf_executor_free(ex);
}

TEST_TIMEOUT(map_timeout_then_results, 60)
{
    tmpdir d;
    tmpdir_make(&d);
    char gate[256];
    tmpdir_file(&d, "gate", gate, sizeof gate);
    void *args[3] = {gate, gate, gate};
    cf_executor *ex = pool_new(2, CF_START_EXEC);
    cf_map_options mo = {.timeout = 0.2, .chunksize = 2, .codec = &path_codec};
    cf_map *m;
    ASSERT_OK(cf_executor_map(ex, task_wait_file, args, 3, &mo, &m));
    void *v;
    ASSERT_CODE(cf_map_next(m, &v, NULL), CF_ETIMEDOUT);
    touch(gate);
    for (int i = 0; i < 3; i++) {
        /* Past the deadline each call polls: wait until it is ready. */
        int rc;
        double end = harness_now() + 30;
        while ((rc = cf_map_next(m, &v, NULL)) == CF_ETIMEDOUT &&
               harness_now() < end)
            harness_pause();
        ASSERT_OK(rc);
        ASSERT_EQ((intptr_t)v, 1);
    }
    cf_map_free(m);
    cf_executor_free(ex);
    tmpdir_remove(&d);
}

/* ------------------------------------------------------------------------ */
/* Initializer                                                              */

static intptr_t init_value;

static int init_set(void *arg)
{
    init_value = (intptr_t)arg;
    return 0;
}

static void *task_init_value(void *arg, cf_call *call)
{
    (void)arg;
    (void)call;
    return (void *)init_value;
}

TEST_TIMEOUT(initializer_runs_in_each_worker, 60)
{
    cf_process_pool_options o = {PP_KIND, .max_workers = 2, .initializer = init_set,
                                 .initarg = (void *)77};
    cf_executor *ex;
    ASSERT_OK(cf_process_pool_new(&o, &ex));
    cf_future *f[8];
    for (int i = 0; i < 8; i++)
        ASSERT_OK(cf_executor_submit(ex, task_init_value, NULL, &f[i]));
    for (int i = 0; i < 8; i++) {
        void *v;
        ASSERT_OK(cf_future_result(f[i], 30, &v));
        ASSERT_EQ((intptr_t)v, 77);
        cf_future_release(f[i]);
    }
    ASSERT_EQ(init_value, 0); /* it ran in the workers, not here */
    cf_executor_free(ex);
}

static int init_fail(void *arg)
{
    (void)arg;
    return 7;
}

TEST_TIMEOUT(initializer_failure_breaks_pool, 60)
{
    cf_process_pool_options o = {PP_KIND, .max_workers = 2, .initializer = init_fail};
    cf_executor *ex;
    ASSERT_OK(cf_process_pool_new(&o, &ex));
    cf_future *f[4];
    for (int i = 0; i < 4; i++)
        ASSERT_OK(cf_executor_submit(ex, task_square, (void *)2, &f[i]));
    for (int i = 0; i < 4; i++) {
        cf_error e;
        ASSERT_CODE(outcome(f[i], 30, NULL, &e), CF_EBROKEN_PROCESS_POOL);
        ASSERT(contains(e.message, "initializer"));
        ASSERT(contains(e.message, "returned 7"));
        cf_future_release(f[i]);
    }
    cf_future *g;
    ASSERT_CODE(cf_executor_submit(ex, task_square, (void *)2, &g),
                CF_EBROKEN_PROCESS_POOL);
    cf_executor_free(ex);
}

/* ------------------------------------------------------------------------ */
/* max_tasks_per_child                                                      */

static void check_max_tasks(size_t per_child)
{
    size_t n = harness_scaled(60, 12);
    cf_process_pool_options o = {PP_KIND, .max_workers = 2,
                                 .max_tasks_per_child = per_child};
    cf_executor *ex;
    ASSERT_OK(cf_process_pool_new(&o, &ex));
    cf_future **f = malloc(n * sizeof *f);
    for (size_t i = 0; i < n; i++)
        ASSERT_OK(cf_executor_submit(ex, task_getpid, NULL, &f[i]));
    pid_t *pids = malloc(n * sizeof *pids);
    for (size_t i = 0; i < n; i++) {
        void *v;
        ASSERT_OK(cf_future_result(f[i], 60, &v));
        pids[i] = (pid_t)(intptr_t)v;
        cf_future_release(f[i]);
    }
    /* No worker ran more than per_child tasks. */
    for (size_t i = 0; i < n; i++) {
        size_t same = 0;
        for (size_t j = 0; j < n; j++)
            same += pids[j] == pids[i];
        ASSERT(same <= per_child);
    }
    free(pids);
    free(f);
    cf_executor_free(ex);
}

TEST_TIMEOUT(max_tasks_per_child_1, 120)
{
    check_max_tasks(1);
}

TEST_TIMEOUT(max_tasks_per_child_2, 120)
{
    check_max_tasks(2);
}

/* ------------------------------------------------------------------------ */
/* Shutdown, cancel, terminate                                              */

TEST_TIMEOUT(shutdown_timeout_while_busy_then_wait, 60)
{
    tmpdir d;
    tmpdir_make(&d);
    char base[256];
    tmpdir_file(&d, "t", base, sizeof base);
    cf_executor *ex = pool_new(1, CF_START_EXEC);
    cf_future *busy = submit_path(ex, task_pid_then_wait, base);
    cf_future *queued;
    ASSERT_OK(cf_executor_submit(ex, task_square, (void *)5, &queued));
    await_pid(base);
    size_t unfinished = 0;
    ASSERT_CODE(cf_executor_shutdown_timeout(ex, 0.05, false, &unfinished),
                CF_ETIMEDOUT);
    ASSERT_EQ(unfinished, 2);
    cf_future *late;
    ASSERT_CODE(cf_executor_submit(ex, task_square, (void *)1, &late),
                CF_ESHUTDOWN);
    release_go(base);
    ASSERT_OK(cf_executor_shutdown(ex, true, false));
    void *v;
    ASSERT_OK(cf_future_result(busy, 0, &v));
    ASSERT_EQ((intptr_t)v, 1);
    ASSERT_OK(cf_future_result(queued, 0, &v));
    ASSERT_EQ((intptr_t)v, 25);
    cf_future_release(busy);
    cf_future_release(queued);
    cf_executor_free(ex);
    tmpdir_remove(&d);
}

TEST_TIMEOUT(shutdown_no_wait_cancel_futures, 60)
{
    tmpdir d;
    tmpdir_make(&d);
    char base[256];
    tmpdir_file(&d, "t", base, sizeof base);
    cf_executor *ex = pool_new(1, CF_START_EXEC);
    cf_future *busy = submit_path(ex, task_pid_then_wait, base);
    cf_future *q[5];
    for (int i = 0; i < 5; i++)
        ASSERT_OK(cf_executor_submit(ex, task_square, (void *)2, &q[i]));
    await_pid(base);
    ASSERT(cf_future_running(busy));
    ASSERT_OK(cf_executor_shutdown(ex, false, true));
    for (int i = 0; i < 5; i++)
        ASSERT(cf_future_cancelled(q[i]));
    ASSERT(!cf_future_done(busy));
    release_go(base);
    void *v;
    ASSERT_OK(cf_future_result(busy, 30, &v));
    ASSERT_EQ((intptr_t)v, 1);
    for (int i = 0; i < 5; i++)
        cf_future_release(q[i]);
    cf_future_release(busy);
    cf_executor_free(ex);
    tmpdir_remove(&d);
}

TEST_TIMEOUT(queued_task_is_not_running_and_cancel_stops_it, 60)
{
    tmpdir d;
    tmpdir_make(&d);
    char base[256], marker[256];
    tmpdir_file(&d, "t", base, sizeof base);
    tmpdir_file(&d, "ran", marker, sizeof marker);
    cf_executor *ex = pool_new(1, CF_START_EXEC);
    cf_future *busy = submit_path(ex, task_pid_then_wait, base);
    cf_future *second = submit_path(ex, task_touch, marker);
    await_pid(base);
    ASSERT(cf_future_running(busy));
    ASSERT(!cf_future_running(second));
    ASSERT(cf_future_cancel(second));
    release_go(base);
    ASSERT_OK(cf_future_result(busy, 30, NULL));
    ASSERT_OK(cf_executor_shutdown(ex, true, false));
    ASSERT(!file_exists(marker)); /* the cancelled task never ran */
    ASSERT_CODE(cf_future_result(second, 0, NULL), CF_ECANCELLED);
    cf_future_release(busy);
    cf_future_release(second);
    cf_executor_free(ex);
    tmpdir_remove(&d);
}

/* A task that waited at a busy worker is claimed by the worker itself;
 * the future still turns RUNNING once it starts (the worker's result or
 * CLAIMED frame wakes the manager), and from then on cancel fails. */
TEST_TIMEOUT(waiting_task_turns_running_when_its_worker_starts_it, 60)
{
    tmpdir d;
    tmpdir_make(&d);
    char first[256], second[256], marker[256];
    tmpdir_file(&d, "a", first, sizeof first);
    tmpdir_file(&d, "b", second, sizeof second);
    tmpdir_file(&d, "ran", marker, sizeof marker);
    cf_executor *ex = pool_new(1, CF_START_EXEC);
    cf_future *busy = submit_path(ex, task_pid_then_wait, first);
    cf_future *skipped = submit_path(ex, task_touch, marker);
    cf_future *next = submit_path(ex, task_pid_then_wait, second);
    await_pid(first);
    ASSERT(cf_future_cancel(skipped)); /* waiting: its claim word says SKIP */
    ASSERT(!cf_future_running(next));
    release_go(first);
    ASSERT_OK(cf_future_result(busy, 30, NULL));
    await_pid(second);
    WAIT_UNTIL(cf_future_running(next), 30);
    ASSERT(!cf_future_cancel(next));
    ASSERT(!cf_future_done(next));
    release_go(second);
    ASSERT_OK(cf_future_result(next, 30, NULL));
    ASSERT(!file_exists(marker));
    ASSERT_CODE(cf_future_result(skipped, 0, NULL), CF_ECANCELLED);
    cf_future_release(busy);
    cf_future_release(skipped);
    cf_future_release(next);
    cf_executor_free(ex);
    tmpdir_remove(&d);
}

/* The future's cancel hook (future.c), on its own. */
static int hook_calls;
static bool hook_answer;

static bool count_hook(cf_future *f)
{
    ASSERT_PTR_EQ(f->start.cancel_hook.data, &hook_calls);
    hook_calls++;
    return hook_answer;
}

TEST(cancel_hook_decides_a_pending_cancel)
{
    cf_future *f;
    /* true: the cancel goes ahead. */
    ASSERT_OK(cf_future_new(&f));
    hook_calls = 0;
    hook_answer = true;
    cf__future_set_cancel_hook(f, count_hook, &hook_calls);
    ASSERT(cf_future_cancel(f));
    ASSERT(cf_future_cancelled(f));
    ASSERT(cf_future_cancel(f)); /* already cancelled: not asked again */
    ASSERT_EQ(hook_calls, 1);
    cf_future_release(f);
    /* false: started elsewhere, so the future turns RUNNING instead. */
    ASSERT_OK(cf_future_new(&f));
    hook_calls = 0;
    hook_answer = false;
    cf__future_set_cancel_hook(f, count_hook, &hook_calls);
    ASSERT(!cf_future_cancel(f));
    ASSERT(cf_future_running(f));
    ASSERT_EQ(hook_calls, 1);
    ASSERT(!cf_future_request_cancel(f)); /* running: only the flag */
    ASSERT_EQ(hook_calls, 1);
    ASSERT_CODE(cf_future_set_running_or_notify_cancel(f), CF_ESTATE);
    ASSERT_OK(cf_future_set_result(f, (void *)7));
    void *v;
    ASSERT_OK(cf_future_result(f, 0, &v));
    ASSERT_EQ((intptr_t)v, 7);
    cf_future_release(f);
    /* Cleared: a plain cancel. Running: never asked. */
    ASSERT_OK(cf_future_new(&f));
    hook_calls = 0;
    cf__future_set_cancel_hook(f, count_hook, &hook_calls);
    cf__future_set_cancel_hook(f, NULL, NULL);
    ASSERT(cf_future_cancel(f));
    cf_future_release(f);
    ASSERT_OK(cf_future_new(&f));
    cf__future_set_cancel_hook(f, count_hook, &hook_calls);
    ASSERT_OK(cf_future_set_running_or_notify_cancel(f));
    ASSERT(!cf_future_cancel(f));
    ASSERT_OK(cf_future_set_result(f, NULL));
    ASSERT(!cf_future_cancel(f));
    ASSERT_EQ(hook_calls, 0);
    cf_future_release(f);
    /* Done: the hook's words hold the outcome now, and setting or clearing
     * a hook late leaves it alone. */
    static char owned[] = "owned";
    ASSERT_OK(cf_future_new(&f));
    cf__future_set_cancel_hook(f, count_hook, &hook_calls);
    ASSERT_OK(cf_future_set_running_or_notify_cancel(f));
    ASSERT_OK(cf_future_set_result(f, owned));
    cf__future_set_cancel_hook(f, NULL, NULL);
    cf__future_set_cancel_hook(f, count_hook, &hook_calls);
    ASSERT(!cf_future_cancel(f));
    ASSERT_OK(cf_future_result(f, 0, &v));
    ASSERT_PTR_EQ(v, owned);
    ASSERT_EQ(hook_calls, 0);
    cf_future_release(f);
}

/* Cancel races the dispatch of each task: either cancel wins (the task
 * never runs: no marker) or the task runs to completion (its marker
 * exists). Never both, never neither. */
TEST_TIMEOUT(cancel_racing_with_start, 120)
{
    enum { N = 40 };
    tmpdir d;
    tmpdir_make(&d);
    char paths[N][256];
    cf_executor *ex = pool_new(2, CF_START_EXEC);
    cf_future *f[N];
    for (int i = 0; i < N; i++) {
        char name[16];
        snprintf(name, sizeof name, "m%d", i);
        tmpdir_file(&d, name, paths[i], sizeof paths[i]);
        f[i] = submit_path(ex, task_touch, paths[i]);
        if (i % 2)
            cf_future_cancel(f[i - 1]);
    }
    ASSERT_OK(cf_executor_shutdown(ex, true, false));
    for (int i = 0; i < N; i++) {
        ASSERT(cf_future_done(f[i]));
        if (cf_future_cancelled(f[i]))
            ASSERT(!file_exists(paths[i]));
        else
            ASSERT(file_exists(paths[i]));
        cf_future_release(f[i]);
    }
    cf_executor_free(ex);
    tmpdir_remove(&d);
}

static void check_terminate(int (*end)(cf_executor *), const char *signame)
{
    tmpdir d;
    tmpdir_make(&d);
    char base[256];
    tmpdir_file(&d, "t", base, sizeof base);
    cf_executor *ex = pool_new(1, CF_START_EXEC);
    cf_future *busy = submit_path(ex, task_pid_then_wait, base);
    cf_future *queued;
    ASSERT_OK(cf_executor_submit(ex, task_square, (void *)5, &queued));
    pid_t pid = await_pid(base);
    ASSERT_OK(end(ex));
    /* Reaped: the pid is no longer our child. */
    ASSERT_EQ(waitpid(pid, NULL, WNOHANG), -1);
    cf_error e;
    ASSERT_CODE(outcome(busy, 30, NULL, &e), CF_EBROKEN_PROCESS_POOL);
    ASSERT(contains(e.message, signame));
    ASSERT_CODE(cf_future_result(queued, 0, NULL), CF_ECANCELLED);
    cf_future *late;
    ASSERT_CODE(cf_executor_submit(ex, task_square, (void *)1, &late),
                CF_ESHUTDOWN);
    cf_future_release(busy);
    cf_future_release(queued);
    cf_executor_free(ex);
    tmpdir_remove(&d);
}

TEST_TIMEOUT(terminate_workers, 60)
{
    check_terminate(cf_process_pool_terminate_workers, "SIGTERM");
}

TEST_TIMEOUT(kill_workers, 60)
{
    check_terminate(cf_process_pool_kill_workers, "SIGKILL");
}

TEST_TIMEOUT(terminate_needs_a_process_pool, 30)
{
    cf_executor *ex;
    ASSERT_OK(cf_thread_pool_new(NULL, &ex));
    ASSERT_CODE(cf_process_pool_terminate_workers(ex), CF_EINVAL);
    ASSERT_CODE(cf_process_pool_kill_workers(NULL), CF_EINVAL);
    cf_executor_free(ex);
}

/* Right after the submits, the pids are those of the workers the tasks
 * start: the call waits for the manager to start them. */
TEST_TIMEOUT(pids_lists_the_workers_the_submits_start, 60)
{
    tmpdir d;
    tmpdir_make(&d);
    enum { N = 3 };
    char base[N][256];
    cf_executor *ex = pool_new(N, CF_START_EXEC);
    cf_future *f[N];
    for (int i = 0; i < N; i++) {
        char name[16];
        snprintf(name, sizeof name, "w%d", i);
        tmpdir_file(&d, name, base[i], sizeof base[i]);
        f[i] = submit_path(ex, task_pid_then_wait, base[i]);
    }
    long pids[N + 1] = {0};
    size_t n = 0;
    ASSERT_OK(cf_process_pool_pids(ex, pids, N + 1, &n));
    ASSERT_EQ(n, N);
    /* The same processes the tasks run in. */
    for (int i = 0; i < N; i++) {
        pid_t ran_in = await_pid(base[i]);
        bool listed = false;
        for (size_t k = 0; k < n; k++)
            listed |= pids[k] == (long)ran_in;
        ASSERT(listed);
    }
    /* Room for fewer: the count is still all of them. */
    long one = 0;
    ASSERT_OK(cf_process_pool_pids(ex, &one, 1, &n));
    ASSERT_EQ(n, N);
    ASSERT(one > 0);
    ASSERT_OK(cf_process_pool_pids(ex, NULL, 0, &n));
    ASSERT_EQ(n, N);
    for (int i = 0; i < N; i++) {
        release_go(base[i]);
        ASSERT_OK(cf_future_result(f[i], 30, NULL));
        cf_future_release(f[i]);
    }
    ASSERT_OK(cf_executor_shutdown(ex, true, false));
    ASSERT_OK(cf_process_pool_pids(ex, pids, N, &n));
    ASSERT_EQ(n, 0);
    cf_executor_free(ex);
    tmpdir_remove(&d);
}

static _Atomic int pids_rc = 1;
static _Atomic long pids_n = -1;

static int list_pids_in_callback(cf_future *f, void *arg)
{
    (void)f;
    size_t n = 0;
    atomic_store(&pids_rc, cf_process_pool_pids(arg, NULL, 0, &n));
    atomic_store(&pids_n, (long)n);
    return 0;
}

/* A done-callback on the pool's manager thread gets the list at once:
 * the manager cannot wait for itself. */
TEST_TIMEOUT(pids_from_the_managers_own_thread_answers_at_once, 60)
{
    blocked_pool b;
    blocked_pool_start(&b, 1);
    ASSERT_OK(cf_future_add_done_callback(b.running, list_pids_in_callback,
                                          b.ex));
    blocked_pool_release(&b);
    WAIT_UNTIL(atomic_load(&pids_n) >= 0, 30);
    ASSERT_OK(atomic_load(&pids_rc));
    ASSERT_EQ(atomic_load(&pids_n), 1);
    blocked_pool_free(&b);
}

TEST(pids_needs_a_process_pool_and_somewhere_to_count)
{
    cf_executor *ex;
    size_t n = 7;
    long pid;
    ASSERT_OK(cf_thread_pool_new(NULL, &ex));
    ASSERT_CODE(cf_process_pool_pids(ex, &pid, 1, &n), CF_EINVAL);
    ASSERT_EQ(n, 0);
    ASSERT_CODE(cf_process_pool_pids(NULL, &pid, 1, &n), CF_EINVAL);
    cf_executor_free(ex);
    ex = pool_new(1, CF_START_EXEC);
    ASSERT_CODE(cf_process_pool_pids(ex, &pid, 1, NULL), CF_EINVAL);
    ASSERT_CODE(cf_process_pool_pids(ex, NULL, 1, &n), CF_EINVAL);
    cf_executor_free(ex);
}

/* ------------------------------------------------------------------------ */
/* Options and misuse                                                       */

TEST(invalid_options)
{
    cf_executor *ex;
    cf_process_pool_options o = {.max_workers = -1};
    ASSERT_CODE(cf_process_pool_new(&o, &ex), CF_EINVAL);
    o = (cf_process_pool_options){.start_method = (cf_start_method)7};
    ASSERT_CODE(cf_process_pool_new(&o, &ex), CF_EINVAL);
    ASSERT_CODE(cf_process_pool_new(NULL, NULL), CF_EINVAL);
}

TEST_TIMEOUT(defaults_use_cpu_count_and_start_lazily, 60)
{
    cf_executor *ex;
    ASSERT_OK(cf_process_pool_new(NULL, &ex));
    cf_future *f;
    void *v;
    ASSERT_OK(cf_executor_submit(ex, task_square, (void *)9, &f));
    ASSERT_OK(cf_future_result(f, 30, &v));
    ASSERT_EQ((intptr_t)v, 81);
    cf_future_release(f);
    cf_executor_free(ex);
}

TEST_TIMEOUT(free_without_any_submit, 30)
{
    cf_executor *ex = pool_new(2, CF_START_EXEC);
    cf_executor_free(ex);
}

/* ------------------------------------------------------------------------ */
/* Calling back into an executor from a worker                              */

static void *task_new_pool(void *arg, cf_call *call)
{
    (void)arg;
    (void)call;
    cf_executor *inner = NULL;
    int rc = cf_process_pool_new(NULL, &inner);
    if (rc == CF_OK)
        cf_executor_free(inner);
    return (void *)(intptr_t)rc;
}

/* The parent's executor pointer crosses as a word; with CF_START_EXEC it
 * means nothing in the worker, which is why the check comes first. */
static void *task_submit_back(void *arg, cf_call *call)
{
    (void)call;
    cf_future *f = NULL;
    int rc = cf_executor_submit(arg, task_square, (void *)2, &f);
    if (rc == CF_OK)
        cf_future_release(f);
    return (void *)(intptr_t)rc;
}

static void *task_shutdown_back(void *arg, cf_call *call)
{
    (void)call;
    return (void *)(intptr_t)cf_executor_shutdown(arg, true, false);
}

/* cf_future_then back on the parent's executor, on a done input and on a
 * pending one: refused before the pointer is read (cf_future_then reads
 * the executor only after its process worker check). */
static void *task_then_back(void *arg, cf_call *call)
{
    (void)call;
    cf_future *done = NULL, *pending = NULL, *g = NULL;
    if (cf_future_new(&done) != CF_OK || cf_future_new(&pending) != CF_OK ||
        cf_future_set_result(done, NULL) != CF_OK)
        return (void *)(intptr_t)CF_ENOMEM;
    int rc_done = cf_future_then(done, arg, task_square, &g);
    if (rc_done == CF_OK)
        cf_future_release(g);
    int rc_pending = cf_future_then(pending, arg, task_square, &g);
    if (rc_pending == CF_OK)
        cf_future_release(g);
    cf_future_release(done);
    cf_future_release(pending);
    return (void *)(intptr_t)(rc_done != CF_EDEADLK ? rc_done : rc_pending);
}

static void check_callbacks_refused(cf_start_method method)
{
    cf_executor *ex = pool_new(1, method);
    cf_future *a, *b, *c, *d;
    void *v;
    ASSERT_OK(cf_executor_submit(ex, task_new_pool, NULL, &a));
    ASSERT_OK(cf_executor_submit(ex, task_submit_back, ex, &b));
    ASSERT_OK(cf_executor_submit(ex, task_shutdown_back, ex, &c));
    ASSERT_OK(cf_executor_submit(ex, task_then_back, ex, &d));
    ASSERT_OK(cf_future_result(a, 30, &v));
    ASSERT_CODE((int)(intptr_t)v, CF_EDEADLK);
    ASSERT_OK(cf_future_result(b, 30, &v));
    ASSERT_CODE((int)(intptr_t)v, CF_EDEADLK);
    ASSERT_OK(cf_future_result(c, 30, &v));
    ASSERT_CODE((int)(intptr_t)v, CF_EDEADLK);
    ASSERT_OK(cf_future_result(d, 30, &v));
    ASSERT_CODE((int)(intptr_t)v, CF_EDEADLK);
    cf_future_release(a);
    cf_future_release(b);
    cf_future_release(c);
    cf_future_release(d);
    cf_executor_free(ex);
}

TEST_TIMEOUT(worker_calling_back_gets_edeadlk_exec, 60)
{
    check_callbacks_refused(CF_START_EXEC);
}

TEST_TIMEOUT(worker_calling_back_gets_edeadlk_fork, 60)
{
    check_callbacks_refused(CF_START_FORK);
}

/* ------------------------------------------------------------------------ */
/* Hygiene                                                                  */

/* path_codec: counts the worker's open descriptors (0-2 and its socket
 * are expected), written to `path`. */
static void *task_count_fds(void *arg, cf_call *call)
{
    (void)arg;
    (void)call;
    DIR *dir = opendir("/proc/self/fd");
    if (!dir)
        return (void *)-1;
    /* valgrind keeps its own descriptors above the soft limit. */
    struct rlimit lim;
    if (getrlimit(RLIMIT_NOFILE, &lim) != 0)
        return (void *)-1;
    intptr_t n = 0;
    struct dirent *e;
    while ((e = readdir(dir)) != NULL)
        if (e->d_name[0] != '.' &&
            (rlim_t)atol(e->d_name) < lim.rlim_cur)
            n++;
    closedir(dir);
    return (void *)(n - 1); /* less the directory's own */
}

static void check_worker_fds(cf_start_method method)
{
    /* A descriptor the caller forgot to mark close-on-exec. */
    int fds[2];
    ASSERT_OK(pipe(fds));
    cf_executor *ex = pool_new(1, method);
    cf_future *f;
    void *v;
    ASSERT_OK(cf_executor_submit(ex, task_count_fds, NULL, &f));
    ASSERT_OK(cf_future_result(f, 30, &v));
    /* stdin, stdout, stderr and the socket (or the two pipes); a worker
     * started by a callback also has the shared memory's descriptor. */
    bool shm = test_transport() == CF_TRANSPORT_SHARED_MEMORY;
    intptr_t most = 3 + (shm ? 1 : 2) +
                    (shm && test_start() == CF_START_CALLBACK ? 1 : 0);
    ASSERT((intptr_t)v <= most);
    cf_future_release(f);
    cf_executor_free(ex);
    close(fds[0]);
    close(fds[1]);
}

TEST_TIMEOUT(worker_keeps_only_its_socket_exec, 60)
{
    check_worker_fds(CF_START_EXEC);
}

TEST_TIMEOUT(worker_keeps_only_its_socket_fork, 60)
{
    check_worker_fds(CF_START_FORK);
}

static atomic_int callbacks_seen;

static int count_callback(cf_future *f, void *arg)
{
    (void)f;
    (void)arg;
    atomic_fetch_add(&callbacks_seen, 1);
    return 0;
}

TEST_TIMEOUT(threads_in_the_caller_do_not_matter, 60)
{
    /* CF_START_EXEC is safe with other threads busy in the parent: a
     * thread pool churns while the process pool starts its workers. */
    cf_executor *tp;
    ASSERT_OK(cf_thread_pool_new(NULL, &tp));
    cf_future *spin[8];
    for (int i = 0; i < 8; i++)
        ASSERT_OK(cf_executor_submit(tp, task_square, (void *)3, &spin[i]));
    cf_executor *ex = pool_new(2, CF_START_EXEC);
    cf_future *f[16];
    for (int i = 0; i < 16; i++) {
        ASSERT_OK(cf_executor_submit(ex, task_square, (void *)(intptr_t)i,
                                     &f[i]));
        ASSERT_OK(cf_future_add_done_callback(f[i], count_callback, NULL));
    }
    for (int i = 0; i < 16; i++) {
        ASSERT_OK(cf_future_result(f[i], 30, NULL));
        cf_future_release(f[i]);
    }
    cf_executor_free(ex);
    ASSERT_EQ(atomic_load(&callbacks_seen), 16);
    for (int i = 0; i < 8; i++)
        cf_future_release(spin[i]);
    cf_executor_free(tp);
}

/* A done-callback of a cancelled future shuts the same pool down again
 * (and cancels): the cancels run with no pool lock held, so the nested
 * shutdown neither deadlocks nor loses a future. */
static int shutdown_again(cf_future *f, void *arg)
{
    (void)f;
    cf_executor *ex = arg;
    int rc = cf_executor_shutdown(ex, false, true);
    return rc == CF_OK ? 0 : rc;
}

TEST_TIMEOUT(cancel_callback_shuts_the_pool_down_again, 60)
{
    blocked_pool b;
    blocked_pool_start(&b, 1);
    /* Some of these wait at the busy worker, the rest in the queue. */
    enum { N = 40 };
    cf_future *f[N];
    for (int i = 0; i < N; i++) {
        ASSERT_OK(cf_executor_submit(b.ex, task_square, (void *)(intptr_t)i,
                                     &f[i]));
        ASSERT_OK(cf_future_add_done_callback(f[i], shutdown_again, b.ex));
    }
    ASSERT_OK(cf_executor_shutdown(b.ex, false, true));
    blocked_pool_release(&b);
    for (int i = 0; i < N; i++) {
        ASSERT_CODE(cf_future_result(f[i], 30, NULL), CF_ECANCELLED);
        cf_future_release(f[i]);
    }
    blocked_pool_free(&b);
}

/* In the manager, with a task taken from the queue and not yet at a
 * worker: a shutdown(cancel_futures) finds it in neither place. */
static void shutdown_in_transit(cf_executor *ex)
{
    atomic_store(&cf__process_pool_before_give, NULL); /* once */
    cf_executor_shutdown(ex, false, true);
}

TEST_TIMEOUT(cancel_futures_cancels_a_task_on_its_way_to_a_worker, 60)
{
    blocked_pool b;
    blocked_pool_start(&b, 1);
    atomic_store(&cf__process_pool_before_give, shutdown_in_transit);
    cf_future *f = NULL;
    ASSERT_OK(cf_executor_submit(b.ex, task_square, (void *)3, &f));
    /* Over pipes the task stays queued until the worker is free. */
    blocked_pool_release(&b);
    ASSERT_CODE(cf_future_result(f, 30, NULL), CF_ECANCELLED);
    ASSERT(atomic_load(&cf__process_pool_before_give) == NULL); /* it ran */
    cf_future_release(f);
    blocked_pool_free(&b);
}

/* The names workers of another kind know these by (procpool_test.h). */
static void pp_register_names(void)
{
    PP_NAME(task_square);
    PP_NAME(task_getpid);
    PP_NAME(task_wait_file);
    PP_NAME(task_pid_then_wait);
    PP_NAME(task_touch);
    PP_NAME(task_fail_with);
    PP_NAME(task_fail_negative);
    PP_NAME(task_shout);
    PP_NAME(task_fail_odd);
    PP_NAME(task_mixed);
    PP_NAME(task_init_value);
    PP_NAME(task_new_pool);
    PP_NAME(task_submit_back);
    PP_NAME(task_shutdown_back);
    PP_NAME(task_then_back);
    PP_NAME(task_count_fds);
    PP_NAME(init_set);
    PP_NAME(init_fail);
    PP_NAME(&path_codec);
    PP_NAME(&undecodable);
}
