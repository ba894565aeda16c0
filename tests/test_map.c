/* test_map.c - cf_executor_map() and cf_executor_map_stream(): input order,
 * deadlines, failures in place, early free, chunks and bounded buffering. */
#define _GNU_SOURCE
#include "coretest.h"

#include <math.h>

static cf_map *map_new(cf_executor *ex, cf_fn fn, void *const *args,
                       size_t n, const cf_map_options *opts)
{
    cf_map *m = NULL;
    ASSERT_OK(cf_executor_map(ex, fn, args, n, opts, &m));
    ASSERT(m != NULL);
    return m;
}

static intptr_t next_value(cf_map *m)
{
    void *v = NULL;
    cf_error e = {0};
    int err = cf_map_next(m, &v, &e);
    if (err != CF_OK)
        harness_fail(__FILE__, __LINE__, "cf_map_next: %s (%s)",
                     cf_err_name(err), e.message ? e.message : "");
    return (intptr_t)v;
}

static void expect_end(cf_map *m)
{
    void *v = NULL;
    ASSERT_CODE(cf_map_next(m, &v, NULL), CF_EEND);
    ASSERT_CODE(cf_map_next(m, &v, NULL), CF_EEND);
}

/* ------------------------------------------------------------------------ */
/* Order                                                                    */

typedef struct late_first {
    latch first; /* item 0 waits on it */
    atomic_int others_done;
} late_first;

static late_first lf;

static void *slow_first(void *arg, cf_call *call)
{
    (void)call;
    intptr_t i = (intptr_t)arg;
    if (i == 0)
        latch_wait(&lf.first);
    else
        atomic_fetch_add(&lf.others_done, 1);
    return (void *)(i * 10);
}

TEST(map_returns_results_in_input_order)
{
    enum { N = 12 };
    latch_init(&lf.first);
    atomic_store(&lf.others_done, 0);
    cf_executor *ex = pool_new(3);
    void *args[N];
    for (int i = 0; i < N; i++)
        args[i] = (void *)(intptr_t)i;
    cf_map *m = map_new(ex, slow_first, args, N, NULL);
    WAIT_UNTIL(atomic_load(&lf.others_done) == N - 1, 10);
    latch_open(&lf.first); /* the first to finish is the last item */
    for (int i = 0; i < N; i++)
        ASSERT_EQ(next_value(m), i * 10);
    expect_end(m);
    cf_map_free(m);
    cf_executor_free(ex);
    latch_destroy(&lf.first);
}

TEST(map_reads_args_during_the_call_only)
{
    enum { N = 5 };
    cf_executor *ex = pool_new(2);
    void *args[N];
    for (int i = 0; i < N; i++)
        args[i] = (void *)(intptr_t)i;
    cf_map *m = map_new(ex, task_double, args, N, NULL);
    for (int i = 0; i < N; i++)
        args[i] = (void *)(intptr_t)1000;
    for (int i = 0; i < N; i++)
        ASSERT_EQ(next_value(m), 2 * i);
    expect_end(m);
    cf_map_free(m);
    cf_executor_free(ex);
}

TEST(map_of_empty_input_ends_at_once)
{
    cf_executor *ex = pool_new(1);
    void *none[1] = {NULL};
    cf_map *m = map_new(ex, task_double, none, 0, NULL);
    expect_end(m);
    cf_map_free(m);
    cf_executor_free(ex);
}

static bool empty_source(void *ctx, void **arg)
{
    (void)ctx;
    (void)arg;
    return false;
}

TEST(map_stream_of_empty_source_ends_at_once)
{
    cf_executor *ex = pool_new(1);
    cf_map *m = NULL;
    ASSERT_OK(cf_executor_map_stream(ex, task_double, empty_source, NULL,
                                     NULL, &m));
    expect_end(m);
    cf_map_free(m);
    cf_map_options opts = {.buffersize = 2, .chunksize = 3};
    ASSERT_OK(cf_executor_map_stream(ex, task_double, empty_source, NULL,
                                     &opts, &m));
    expect_end(m);
    cf_map_free(m);
    cf_executor_free(ex);
}

/* ------------------------------------------------------------------------ */
/* Deadline                                                                 */

TEST(map_timeout_counts_from_the_original_call)
{
    cf_executor *ex = pool_new(2);
    latch l;
    latch_init(&l);
    void *args[2] = {(void *)(intptr_t)1, (void *)(intptr_t)2};
    cf_map_options opts = {.timeout = 0.2};
    cf_map *m = map_new(ex, task_double, args, 2, &opts);
    cf_future *blocker = submit(ex, task_gate, &l);
    /* The first results are ready; they come back before the deadline. */
    ASSERT_EQ(next_value(m), 2);
    cf_map_free(m);

    void *gated[2] = {&l, &l};
    m = map_new(ex, task_gate, gated, 2, &opts);
    let_time_pass(0.25);
    double t0 = harness_now();
    void *v = (void *)0x1;
    ASSERT_CODE(cf_map_next(m, &v, NULL), CF_ETIMEDOUT);
    ASSERT(harness_now() - t0 < 0.15); /* not a fresh 0.2 s */
    ASSERT_PTR_EQ(v, (void *)0x1);
    /* Past the deadline each call polls: a ready result still comes. */
    latch_open(&l);
    result_of(blocker);
    WAIT_UNTIL(cf_map_next(m, &v, NULL) == CF_OK, 10);
    ASSERT_PTR_EQ(v, &l);
    cf_map_free(m);
    cf_future_release(blocker);
    cf_executor_free(ex);
    latch_destroy(&l);
}

TEST(map_timeout_waits_up_to_the_deadline)
{
    cf_executor *ex = pool_new(1);
    latch l;
    latch_init(&l);
    void *gated[1] = {&l};
    cf_map_options opts = {.timeout = 0.15};
    double t0 = harness_now();
    cf_map *m = map_new(ex, task_gate, gated, 1, &opts);
    void *v = NULL;
    ASSERT_CODE(cf_map_next(m, &v, NULL), CF_ETIMEDOUT);
    double waited = harness_now() - t0;
    ASSERT(waited >= 0.149);
    ASSERT(waited < 2.0);
    latch_open(&l);
    cf_map_free(m);
    cf_executor_free(ex);
    latch_destroy(&l);
}

/* ------------------------------------------------------------------------ */
/* Failures                                                                 */

static void *fail_on_two(void *arg, cf_call *call)
{
    intptr_t i = (intptr_t)arg;
    if (i == 2)
        return cf_fail(call, 7, "item %d is bad", (int)i);
    if (i == 4)
        return cf_fail(call, CF_ECODEC, "item %d cannot be encoded", (int)i);
    return (void *)(i + 100);
}

static void check_failures_in_place(cf_map *m)
{
    ASSERT_EQ(next_value(m), 100);
    ASSERT_EQ(next_value(m), 101);
    void *v = (void *)0x1;
    cf_error e = {0};
    ASSERT_CODE(cf_map_next(m, &v, &e), CF_ETASK);
    ASSERT_EQ(e.code, 7);
    ASSERT_STR_EQ(e.message, "item 2 is bad");
    ASSERT_EQ(next_value(m), 103);
    ASSERT_CODE(cf_map_next(m, &v, &e), CF_ECODEC);
    ASSERT_CODE(e.code, CF_ECODEC);
    ASSERT_STR_EQ(e.message, "item 4 cannot be encoded");
    ASSERT_CODE(cf_map_next(m, &v, NULL), CF_EEND);
}

TEST(map_failure_surfaces_at_its_position_and_iteration_continues)
{
    cf_executor *ex = pool_new(2);
    void *args[5];
    for (int i = 0; i < 5; i++)
        args[i] = (void *)(intptr_t)i;
    cf_map *m = map_new(ex, fail_on_two, args, 5, NULL);
    check_failures_in_place(m);
    cf_map_free(m);
    cf_executor_free(ex);
}

TEST(map_failure_inside_a_chunk_fails_only_its_item)
{
    cf_executor *ex = pool_new(2);
    void *args[5];
    for (int i = 0; i < 5; i++)
        args[i] = (void *)(intptr_t)i;
    cf_map_options opts = {.chunksize = 3};
    cf_map *m = map_new(ex, fail_on_two, args, 5, &opts);
    check_failures_in_place(m);
    cf_map_free(m);
    cf_executor_free(ex);
}

TEST(map_reports_cancelled_items)
{
    cf_executor *ex = pool_new(1);
    latch l;
    latch_init(&l);
    void *args[3] = {&l, &l, &l};
    cf_map *m = map_new(ex, task_gate, args, 3, NULL);
    latch_wait_arrived(&l, 1);
    ASSERT_OK(cf_executor_shutdown(ex, false, true)); /* cancels 2 and 3 */
    latch_open(&l);
    ASSERT_PTR_EQ((void *)next_value(m), &l);
    void *v = NULL;
    ASSERT_CODE(cf_map_next(m, &v, NULL), CF_ECANCELLED);
    ASSERT_CODE(cf_map_next(m, &v, NULL), CF_ECANCELLED);
    ASSERT_CODE(cf_map_next(m, &v, NULL), CF_EEND);
    cf_map_free(m);
    cf_executor_free(ex);
    latch_destroy(&l);
}

/* ------------------------------------------------------------------------ */
/* Freeing early                                                            */

static latch gate;
static atomic_int ran;

static void *gated_count(void *arg, cf_call *call)
{
    (void)call;
    atomic_fetch_add(&ran, 1);
    latch_wait(&gate);
    return arg;
}

TEST(map_free_early_cancels_what_has_not_run)
{
    enum { N = 10 };
    latch_init(&gate);
    atomic_store(&ran, 0);
    cf_executor *ex = pool_new(1);
    void *args[N] = {0};
    cf_map *m = map_new(ex, gated_count, args, N, NULL);
    latch_wait_arrived(&gate, 1);
    cf_map_free(m); /* must not wait for the running call */
    latch_open(&gate);
    cf_executor_free(ex);
    ASSERT_EQ(atomic_load(&ran), 1);
    latch_destroy(&gate);
}

TEST(map_free_after_some_results_cancels_the_rest)
{
    enum { N = 10 };
    latch_init(&gate);
    latch_open(&gate); /* nothing blocks here; one worker runs in order */
    atomic_store(&ran, 0);
    cf_executor *ex = pool_new(1);
    latch hold;
    latch_init(&hold);
    cf_future *blocker = submit(ex, task_gate, &hold);
    void *args[N] = {0};
    cf_map *m = map_new(ex, gated_count, args, N, NULL);
    latch_wait_arrived(&hold, 1);
    cf_map_free(m); /* nothing of the map has started */
    latch_open(&hold);
    cf_executor_free(ex);
    ASSERT_EQ(atomic_load(&ran), 0);
    cf_future_release(blocker);
    latch_destroy(&hold);
    latch_destroy(&gate);
}

TEST(map_free_with_results_unconsumed_leaks_nothing)
{
    cf_executor *ex = pool_new(2);
    void *args[20];
    for (int i = 0; i < 20; i++)
        args[i] = (void *)(intptr_t)i;
    cf_map_options opts = {.chunksize = 3};
    cf_map *m = map_new(ex, task_double, args, 20, &opts);
    ASSERT_EQ(next_value(m), 0);
    cf_map_free(m);
    cf_map_free(NULL);
    cf_executor_free(ex);
}

/* ------------------------------------------------------------------------ */
/* Chunks                                                                   */

static atomic_bool item_ran[16];

static void *chunk_item(void *arg, cf_call *call)
{
    (void)call;
    intptr_t i = (intptr_t)arg;
    if (i == 0)
        latch_wait(&gate);
    atomic_store(&item_ran[i], true);
    return (void *)(i * 3);
}

TEST(map_chunksize_batches_items_into_one_task)
{
    /* Two workers, chunks [0..3] and [4..7]. Item 0 blocks its worker, so
     * with batching items 1..3 wait behind it while 4..7 run; one task per
     * item would have run 1..3 on the free worker before 4..7. */
    latch_init(&gate);
    for (int i = 0; i < 16; i++)
        atomic_store(&item_ran[i], false);
    cf_executor *ex = pool_new(2);
    void *args[8];
    for (int i = 0; i < 8; i++)
        args[i] = (void *)(intptr_t)i;
    cf_map_options opts = {.chunksize = 4};
    cf_map *m = map_new(ex, chunk_item, args, 8, &opts);
    WAIT_UNTIL(atomic_load(&item_ran[4]) && atomic_load(&item_ran[5]) &&
                   atomic_load(&item_ran[6]) && atomic_load(&item_ran[7]),
               10);
    for (int i = 1; i < 4; i++)
        ASSERT(!atomic_load(&item_ran[i]));
    latch_open(&gate);
    for (int i = 0; i < 8; i++)
        ASSERT_EQ(next_value(m), i * 3);
    expect_end(m);
    cf_map_free(m);
    cf_executor_free(ex);
    latch_destroy(&gate);
}

TEST(map_chunksize_not_dividing_input)
{
    cf_executor *ex = pool_new(2);
    enum { N = 10 };
    void *args[N];
    for (int i = 0; i < N; i++)
        args[i] = (void *)(intptr_t)i;
    size_t sizes[] = {1, 3, 4, 9, 10, 11, 100};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        cf_map_options opts = {.chunksize = sizes[k]};
        cf_map *m = map_new(ex, task_double, args, N, &opts);
        for (int i = 0; i < N; i++)
            ASSERT_EQ(next_value(m), 2 * i);
        expect_end(m);
        cf_map_free(m);
    }
    cf_executor_free(ex);
}

/* ------------------------------------------------------------------------ */
/* Streams and buffersize                                                   */

typedef struct counting_source {
    size_t limit;  /* SIZE_MAX: endless */
    size_t pulled;
    pthread_t consumer;
    bool wrong_thread;
} counting_source;

static bool count_next(void *ctx, void **arg)
{
    counting_source *s = ctx;
    if (!pthread_equal(pthread_self(), s->consumer))
        s->wrong_thread = true;
    if (s->pulled >= s->limit)
        return false;
    *arg = (void *)(intptr_t)s->pulled++;
    return true;
}

/* Consumes a stream of `limit` items with the given bounds and checks at
 * every step that the source was never pulled more than
 * buffersize * chunksize items beyond the chunks being consumed. */
static void check_buffered_stream(size_t limit, size_t buffersize,
                                  size_t chunksize)
{
    cf_executor *ex = pool_new(3);
    counting_source src = {.limit = limit, .pulled = 0,
                           .consumer = pthread_self(), .wrong_thread = false};
    cf_map_options opts = {.buffersize = buffersize, .chunksize = chunksize};
    cf_map *m = NULL;
    ASSERT_OK(cf_executor_map_stream(ex, task_double, count_next, &src,
                                     &opts, &m));
    size_t window = buffersize * chunksize;
    ASSERT(src.pulled <= window);
    ASSERT(src.pulled > 0); /* work started before the first next */
    for (size_t i = 0; i < limit; i++) {
        ASSERT_EQ(next_value(m), 2 * (intptr_t)i);
        size_t consumed = i + 1;
        /* Items of the chunk now being read count as consumed. */
        size_t chunks_started = (consumed + chunksize - 1) / chunksize;
        size_t bound = chunks_started * chunksize + window;
        if (src.pulled > bound)
            harness_fail(__FILE__, __LINE__,
                         "pulled %zu items with %zu consumed (bound %zu)",
                         src.pulled, consumed, bound);
    }
    expect_end(m);
    ASSERT_EQ(src.pulled, limit);
    ASSERT(!src.wrong_thread);
    cf_map_free(m);
    cf_executor_free(ex);
}

TEST(map_stream_returns_results_in_order)
{
    cf_executor *ex = pool_new(3);
    counting_source src = {.limit = 50, .pulled = 0,
                           .consumer = pthread_self(), .wrong_thread = false};
    cf_map *m = NULL;
    ASSERT_OK(cf_executor_map_stream(ex, task_double, count_next, &src, NULL,
                                     &m));
    ASSERT_EQ(src.pulled, 50); /* buffersize 0 drains at once */
    for (int i = 0; i < 50; i++)
        ASSERT_EQ(next_value(m), 2 * i);
    expect_end(m);
    ASSERT(!src.wrong_thread);
    cf_map_free(m);
    cf_executor_free(ex);
}

TEST(map_buffersize_bounds_in_flight_items)
{
    check_buffered_stream(40, 3, 1);
}

TEST(map_buffersize_bounds_in_flight_chunks)
{
    check_buffered_stream(41, 2, 4);
}

TEST(map_buffersize_one)
{
    check_buffered_stream(10, 1, 1);
}

TEST(map_buffersize_on_array_input)
{
    cf_executor *ex = pool_new(2);
    enum { N = 30 };
    void *args[N];
    for (int i = 0; i < N; i++)
        args[i] = (void *)(intptr_t)i;
    cf_map_options opts = {.buffersize = 2, .chunksize = 2};
    cf_map *m = map_new(ex, task_double, args, N, &opts);
    for (int i = 0; i < N; i++)
        ASSERT_EQ(next_value(m), 2 * i);
    expect_end(m);
    cf_map_free(m);
    cf_executor_free(ex);
}

TEST(map_buffersize_holds_back_work)
{
    /* With buffersize 2 on an array, items beyond the window are not even
     * submitted until the consumer moves on. */
    latch_init(&gate);
    atomic_store(&ran, 0);
    cf_executor *ex = pool_new(4);
    void *args[6] = {0};
    cf_map_options opts = {.buffersize = 2};
    cf_map *m = map_new(ex, gated_count, args, 6, &opts);
    latch_wait_arrived(&gate, 2);
    /* Four workers are free, yet no third item may start. */
    let_time_pass(0.1);
    ASSERT_EQ(atomic_load(&ran), 2);
    latch_open(&gate);
    for (int i = 0; i < 6; i++)
        next_value(m);
    expect_end(m);
    ASSERT_EQ(atomic_load(&ran), 6);
    cf_map_free(m);
    cf_executor_free(ex);
    latch_destroy(&gate);
}

static size_t rss_kib(void)
{
    FILE *fp = fopen("/proc/self/status", "r");
    if (!fp)
        return 0;
    char line[256];
    size_t kib = 0;
    while (fgets(line, sizeof line, fp))
        if (sscanf(line, "VmRSS: %zu kB", &kib) == 1)
            break;
    fclose(fp);
    return kib;
}

TEST_TIMEOUT(map_endless_stream_runs_in_bounded_memory, 120)
{
    cf_executor *ex = pool_new(2);
    counting_source src = {.limit = SIZE_MAX, .pulled = 0,
                           .consumer = pthread_self(), .wrong_thread = false};
    cf_map_options opts = {.buffersize = 4, .chunksize = 8};
    cf_map *m = NULL;
    ASSERT_OK(cf_executor_map_stream(ex, task_double, count_next, &src,
                                     &opts, &m));
    size_t n = harness_scaled(400000, 20000);
    size_t warm = n / 10, rss_warm = 0;
    for (size_t i = 0; i < n; i++) {
        ASSERT_EQ(next_value(m), 2 * (intptr_t)i);
        ASSERT(src.pulled <= i + 1 + 5 * 8);
        if (i == warm)
            rss_warm = rss_kib();
    }
    size_t rss_end = rss_kib();
    cf_map_free(m);
    cf_executor_free(ex);
    ASSERT(!src.wrong_thread);
    printf("endless stream: %zu items, RSS %zu -> %zu KiB\n", n, rss_warm,
           rss_end);
    /* Keeping anything per item (a future, a chunk) for 360k items would
     * cost tens of MiB; sanitizers keep freed memory on purpose. */
    if (!CORETEST_SANITIZED)
        ASSERT(rss_end < rss_warm + 8 * 1024);
}

/* ------------------------------------------------------------------------ */
/* Misuse                                                                   */

TEST(map_rejects_bad_arguments)
{
    cf_executor *ex = pool_new(1);
    void *args[2] = {0};
    cf_map *m = (cf_map *)0x1;
    ASSERT_CODE(cf_executor_map(NULL, task_double, args, 2, NULL, &m),
                CF_EINVAL);
    ASSERT_CODE(cf_executor_map(ex, NULL, args, 2, NULL, &m), CF_EINVAL);
    ASSERT_CODE(cf_executor_map(ex, task_double, NULL, 2, NULL, &m),
                CF_EINVAL);
    ASSERT_CODE(cf_executor_map(ex, task_double, args, 2, NULL, NULL),
                CF_EINVAL);
    cf_map_options bad = {.timeout = NAN};
    ASSERT_CODE(cf_executor_map(ex, task_double, args, 2, &bad, &m),
                CF_EINVAL);
    ASSERT_CODE(cf_executor_map_stream(ex, task_double, NULL, NULL, NULL, &m),
                CF_EINVAL);
    ASSERT_CODE(cf_executor_map_stream(NULL, task_double, empty_source, NULL,
                                       NULL, &m),
                CF_EINVAL);
    ASSERT_PTR_EQ(m, (cf_map *)0x1);
    void *v = NULL;
    ASSERT_CODE(cf_map_next(NULL, &v, NULL), CF_EINVAL);
    cf_executor_free(ex);
}
