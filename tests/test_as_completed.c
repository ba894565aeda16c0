/* test_as_completed.c - the completion-order iterator: done futures first,
 * each future once, deadline from creation, its own references, and
 * linear cost. */
#define _GNU_SOURCE
#include "coretest.h"

#include <math.h>

static cf_as_completed *iter_new(cf_future *const *fs, size_t n,
                                 double timeout)
{
    cf_as_completed *it = NULL;
    ASSERT_OK(cf_as_completed_new(fs, n, timeout, &it));
    ASSERT(it != NULL);
    return it;
}

/* The next future, which must come; drops the iterator's reference. */
static cf_future *next_of(cf_as_completed *it)
{
    cf_future *f = NULL;
    ASSERT_OK(cf_as_completed_next(it, &f));
    ASSERT(f != NULL);
    ASSERT(cf_future_done(f));
    cf_future_release(f); /* the caller still holds one in these tests */
    return f;
}

TEST(as_completed_yields_already_finished_first)
{
    cf_future *a = future_new(), *b = future_done_with(NULL),
              *c = future_new(), *d = future_done_with(NULL);
    cf_future *fs[4] = {a, b, c, d};
    cf_as_completed *it = iter_new(fs, 4, CF_FOREVER);
    ASSERT_OK(cf_future_set_result(c, NULL)); /* before the first next */
    cf_future *first = next_of(it), *second = next_of(it);
    ASSERT(first == b || first == d);
    ASSERT(second == b || second == d);
    ASSERT(first != second);
    ASSERT_PTR_EQ(next_of(it), c);
    ASSERT_OK(cf_future_set_result(a, NULL));
    ASSERT_PTR_EQ(next_of(it), a);
    cf_future *none = NULL;
    ASSERT_CODE(cf_as_completed_next(it, &none), CF_EEND);
    cf_as_completed_free(it);
    for (int i = 0; i < 4; i++)
        cf_future_release(fs[i]);
}

TEST(as_completed_yields_in_completion_order)
{
    cf_future *fs[4];
    for (int i = 0; i < 4; i++)
        fs[i] = future_new();
    cf_as_completed *it = iter_new(fs, 4, CF_FOREVER);
    int order[4] = {2, 0, 3, 1};
    for (int i = 0; i < 4; i++)
        ASSERT_OK(cf_future_set_result(fs[order[i]], NULL));
    for (int i = 0; i < 4; i++)
        ASSERT_PTR_EQ(next_of(it), fs[order[i]]);
    cf_as_completed_free(it);
    for (int i = 0; i < 4; i++)
        cf_future_release(fs[i]);
}

static void *complete_when_blocked(helper *h)
{
    void **ctx = h->ctx;
    WAIT_BLOCKED((pid_t)(intptr_t)ctx[1]);
    cf_future_set_result(ctx[0], NULL);
    return NULL;
}

TEST(as_completed_next_blocks_until_one_completes)
{
    cf_future *fs[2] = {future_new(), future_new()};
    cf_as_completed *it = iter_new(fs, 2, CF_FOREVER);
    void *ctx[2] = {fs[1], (void *)(intptr_t)current_tid()};
    helper h;
    helper_start(&h, complete_when_blocked, ctx);
    ASSERT_PTR_EQ(next_of(it), fs[1]);
    helper_join(&h);
    ASSERT_OK(cf_future_set_result(fs[0], NULL));
    ASSERT_PTR_EQ(next_of(it), fs[0]);
    cf_as_completed_free(it);
    cf_future_release(fs[0]);
    cf_future_release(fs[1]);
}

TEST(as_completed_yields_each_future_once)
{
    cf_future *a = future_done_with(NULL), *b = future_new();
    cf_future *fs[5] = {a, b, a, b, a};
    cf_as_completed *it = iter_new(fs, 5, CF_FOREVER);
    ASSERT_PTR_EQ(next_of(it), a);
    ASSERT_OK(cf_future_set_result(b, NULL));
    ASSERT_PTR_EQ(next_of(it), b);
    cf_future *none = NULL;
    ASSERT_CODE(cf_as_completed_next(it, &none), CF_EEND);
    ASSERT_PTR_EQ(none, NULL);
    cf_as_completed_free(it);
    cf_future_release(a);
    cf_future_release(b);
}

TEST(as_completed_yields_each_future_once_in_large_sets)
{
    enum { DISTINCT = 12, N = 300 };
    cf_future *distinct[DISTINCT];
    for (int i = 0; i < DISTINCT; i++)
        distinct[i] = i % 3 ? future_new() : future_done_with(NULL);
    cf_future *fs[N];
    for (int i = 0; i < N; i++)
        fs[i] = distinct[(i * 5) % DISTINCT];
    cf_as_completed *it = iter_new(fs, N, CF_FOREVER);
    for (int i = 0; i < DISTINCT; i++)
        if (i % 3)
            ASSERT_OK(cf_future_set_result(distinct[i], NULL));
    int seen[DISTINCT] = {0};
    cf_future *f = NULL;
    int err, count = 0;
    while ((err = cf_as_completed_next(it, &f)) == CF_OK) {
        for (int i = 0; i < DISTINCT; i++)
            if (f == distinct[i])
                seen[i]++;
        count++;
        cf_future_release(f);
    }
    ASSERT_CODE(err, CF_EEND);
    ASSERT_EQ(count, DISTINCT);
    for (int i = 0; i < DISTINCT; i++)
        ASSERT_EQ(seen[i], 1);
    cf_as_completed_free(it);
    for (int i = 0; i < DISTINCT; i++)
        cf_future_release(distinct[i]);
}

TEST(as_completed_returns_eend_at_end_and_after)
{
    cf_future *f = future_done_with(NULL);
    cf_as_completed *it = iter_new(&f, 1, CF_FOREVER);
    ASSERT_PTR_EQ(next_of(it), f);
    cf_future *none = NULL;
    for (int i = 0; i < 3; i++)
        ASSERT_CODE(cf_as_completed_next(it, &none), CF_EEND);
    cf_as_completed_free(it);
    cf_future_release(f);
}

TEST(as_completed_on_no_futures_ends_at_once)
{
    cf_future *dummy = NULL;
    cf_as_completed *it = iter_new(&dummy, 0, CF_FOREVER);
    cf_future *none = NULL;
    ASSERT_CODE(cf_as_completed_next(it, &none), CF_EEND);
    cf_as_completed_free(it);
}

TEST(as_completed_timeout_counts_from_creation)
{
    cf_future *f = future_new();
    cf_as_completed *it = iter_new(&f, 1, 0.2);
    let_time_pass(0.25);
    cf_future *got = NULL;
    double t0 = harness_now();
    ASSERT_CODE(cf_as_completed_next(it, &got), CF_ETIMEDOUT);
    ASSERT(harness_now() - t0 < 0.15); /* no fresh 0.2 s from this call */
    ASSERT_PTR_EQ(got, NULL);
    /* Past the deadline later calls poll: a completed future still comes. */
    ASSERT_OK(cf_future_set_result(f, NULL));
    ASSERT_PTR_EQ(next_of(it), f);
    ASSERT_CODE(cf_as_completed_next(it, &got), CF_EEND);
    cf_as_completed_free(it);
    cf_future_release(f);
}

TEST(as_completed_waits_up_to_the_deadline)
{
    cf_future *f = future_new();
    double t0 = harness_now();
    cf_as_completed *it = iter_new(&f, 1, 0.15);
    cf_future *got = NULL;
    ASSERT_CODE(cf_as_completed_next(it, &got), CF_ETIMEDOUT);
    double waited = harness_now() - t0;
    ASSERT(waited >= 0.149);
    ASSERT(waited < 2.0);
    cf_as_completed_free(it);
    cf_future_release(f);
}

TEST(as_completed_with_zero_timeout_polls)
{
    cf_future *fs[2] = {future_done_with(NULL), future_new()};
    cf_as_completed *it = iter_new(fs, 2, 0);
    ASSERT_PTR_EQ(next_of(it), fs[0]);
    cf_future *got = NULL;
    ASSERT_CODE(cf_as_completed_next(it, &got), CF_ETIMEDOUT);
    cf_as_completed_free(it);
    cf_future_release(fs[0]);
    cf_future_release(fs[1]);
}

TEST(as_completed_yields_cancelled_futures)
{
    cf_future *fs[2] = {future_new(), future_new()};
    ASSERT(cf_future_cancel(fs[0]));
    cf_as_completed *it = iter_new(fs, 2, CF_FOREVER);
    ASSERT_PTR_EQ(next_of(it), fs[0]);
    ASSERT(cf_future_cancel(fs[1]));
    cf_future *got = next_of(it);
    ASSERT_PTR_EQ(got, fs[1]);
    ASSERT(cf_future_cancelled(got));
    cf_as_completed_free(it);
    cf_future_release(fs[0]);
    cf_future_release(fs[1]);
}

TEST(as_completed_holds_its_own_references)
{
    cf_executor *ex = pool_new(2);
    latch l;
    latch_init(&l);
    enum { N = 6 };
    cf_future *fs[N];
    for (int i = 0; i < N; i++)
        fs[i] = submit(ex, i % 2 ? task_identity : task_gate,
                       i % 2 ? (void *)(intptr_t)i : (void *)&l);
    cf_as_completed *it = iter_new(fs, N, CF_FOREVER);
    for (int i = 0; i < N; i++)
        cf_future_release(fs[i]);
    latch_open(&l);
    int seen[N] = {0};
    for (int k = 0; k < N; k++) {
        cf_future *f = NULL;
        ASSERT_OK(cf_as_completed_next(it, &f));
        void *v = NULL;
        ASSERT_OK(cf_future_result(f, 0, &v));
        if (v == (void *)&l) {
            seen[0]++;
        } else {
            ASSERT((intptr_t)v % 2 == 1);
            seen[(intptr_t)v]++;
        }
        cf_future_release(f);
    }
    ASSERT_EQ(seen[0], N / 2);
    for (int i = 1; i < N; i += 2)
        ASSERT_EQ(seen[i], 1);
    cf_future *none = NULL;
    ASSERT_CODE(cf_as_completed_next(it, &none), CF_EEND);
    cf_as_completed_free(it);
    cf_executor_free(ex);
    latch_destroy(&l);
}

TEST(as_completed_free_before_end_releases_references)
{
    /* Freed halfway, with futures still pending: none is cancelled, and
     * completing them later touches nothing freed (checked under ASan). */
    cf_future *fs[3] = {future_done_with(NULL), future_new(), future_new()};
    cf_as_completed *it = iter_new(fs, 3, CF_FOREVER);
    ASSERT_PTR_EQ(next_of(it), fs[0]);
    cf_as_completed_free(it);
    ASSERT(!cf_future_cancelled(fs[1]));
    ASSERT(!cf_future_done(fs[2]));
    ASSERT_OK(cf_future_set_result(fs[1], NULL));
    ASSERT_OK(cf_future_set_result(fs[2], NULL));
    for (int i = 0; i < 3; i++)
        cf_future_release(fs[i]);
}

TEST(as_completed_iterates_pool_results)
{
    cf_executor *ex = pool_new(4);
    enum { N = 200 };
    cf_future *fs[N];
    for (int i = 0; i < N; i++)
        fs[i] = submit(ex, task_double, (void *)(intptr_t)i);
    cf_as_completed *it = iter_new(fs, N, CF_FOREVER);
    bool seen[N] = {false};
    for (int k = 0; k < N; k++) {
        cf_future *f = NULL;
        ASSERT_OK(cf_as_completed_next(it, &f));
        intptr_t v = result_of(f) / 2;
        ASSERT(v >= 0 && v < N);
        ASSERT(!seen[v]);
        seen[v] = true;
        ASSERT_PTR_EQ(f, fs[v]);
        cf_future_release(f);
    }
    cf_future *none = NULL;
    ASSERT_CODE(cf_as_completed_next(it, &none), CF_EEND);
    cf_as_completed_free(it);
    for (int i = 0; i < N; i++)
        cf_future_release(fs[i]);
    cf_executor_free(ex);
}

TEST(as_completed_rejects_bad_arguments)
{
    cf_future *f = future_done_with(NULL);
    cf_future *fs[2] = {f, NULL};
    cf_as_completed *it = (cf_as_completed *)0x1;
    ASSERT_CODE(cf_as_completed_new(fs, 2, CF_FOREVER, &it), CF_EINVAL);
    ASSERT_CODE(cf_as_completed_new(NULL, 2, CF_FOREVER, &it), CF_EINVAL);
    ASSERT_CODE(cf_as_completed_new(fs, 1, NAN, &it), CF_EINVAL);
    ASSERT_PTR_EQ(it, (cf_as_completed *)0x1);
    ASSERT_CODE(cf_as_completed_new(fs, 1, CF_FOREVER, NULL), CF_EINVAL);
    cf_future *got = NULL;
    ASSERT_CODE(cf_as_completed_next(NULL, &got), CF_EINVAL);
    it = iter_new(fs, 1, CF_FOREVER);
    ASSERT_CODE(cf_as_completed_next(it, NULL), CF_EINVAL);
    ASSERT_PTR_EQ(next_of(it), f); /* the misuse consumed nothing */
    cf_as_completed_free(it);
    cf_as_completed_free(NULL);
    cf_future_release(f);
}

/* ------------------------------------------------------------------------ */
/* Cost                                                                     */

/* Runs as_completed over n futures, half done before the iterator exists
 * and half completed after, in reverse order; returns the seconds taken by
 * creating, completing and iterating. */
static double time_as_completed(size_t n)
{
    cf_future **fs = malloc(n * sizeof *fs);
    ASSERT(fs != NULL);
    for (size_t i = 0; i < n; i++) {
        fs[i] = future_new();
        if (i % 2 == 0)
            ASSERT_OK(cf_future_set_result(fs[i], (void *)(intptr_t)i));
    }
    double t0 = harness_now();
    cf_as_completed *it = iter_new(fs, n, CF_FOREVER);
    for (size_t i = n; i-- > 0;) {
        if (i % 2 == 1) {
            ASSERT_OK(cf_future_set_result(fs[i], (void *)(intptr_t)i));
            cf_future_release(fs[i]); /* the iterator keeps it alive */
        }
    }
    size_t count = 0;
    cf_future *f = NULL;
    int err;
    while ((err = cf_as_completed_next(it, &f)) == CF_OK) {
        count++;
        cf_future_release(f);
    }
    ASSERT_CODE(err, CF_EEND);
    ASSERT_EQ(count, n);
    cf_as_completed_free(it);
    double took = harness_now() - t0;
    for (size_t i = 0; i < n; i += 2)
        cf_future_release(fs[i]);
    free(fs);
    return took;
}

TEST_TIMEOUT(as_completed_million_futures_in_linear_time, 300)
{
    size_t n = harness_scaled(1000000, 20000);
    time_as_completed(n / 10); /* warm the allocator */
    double small = time_as_completed(n / 10);
    double big = time_as_completed(n);
    printf("as_completed: %zu futures in %.3f s, %zu in %.3f s\n", n / 10,
           small, n, big);
    /* Linear: 10x the work takes about 10x the time; quadratic takes 100x.
     * The slack absorbs a busy machine. */
    ASSERT(big < 30 * small + 0.5);
}
