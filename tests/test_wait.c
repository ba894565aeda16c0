/* test_wait.c - cf_wait(): the three return conditions, the done and
 * not_done sets, duplicates, mixed sources, timeouts and misuse. */
#define _GNU_SOURCE
#include "coretest.h"

#include <math.h>

typedef struct wait_out {
    cf_future *done[8];
    cf_future *not_done[8];
    size_t n_done;
    size_t n_not_done;
} wait_out;

static int wait_into(cf_future *const *fs, size_t n, double timeout,
                     cf_return_when when, wait_out *o)
{
    o->n_done = o->n_not_done = 999;
    return cf_wait(fs, n, timeout, when, o->done, &o->n_done, o->not_done,
                   &o->n_not_done);
}

TEST(wait_all_completed_returns_when_all_done)
{
    cf_executor *ex = pool_new(3);
    latch l;
    latch_init(&l);
    cf_future *fs[3];
    for (int i = 0; i < 3; i++)
        fs[i] = submit(ex, task_gate, &l);
    latch_wait_arrived(&l, 3);
    wait_out o;
    ASSERT_OK(wait_into(fs, 3, 0, CF_ALL_COMPLETED, &o));
    ASSERT_EQ(o.n_done, 0);
    ASSERT_EQ(o.n_not_done, 3);
    latch_open(&l);
    ASSERT_OK(wait_into(fs, 3, CF_FOREVER, CF_ALL_COMPLETED, &o));
    ASSERT_EQ(o.n_done, 3);
    ASSERT_EQ(o.n_not_done, 0);
    for (int i = 0; i < 3; i++) {
        ASSERT(cf_future_done(fs[i]));
        ASSERT(in_list(o.done, o.n_done, fs[i]));
        cf_future_release(fs[i]);
    }
    cf_executor_free(ex);
    latch_destroy(&l);
}

static void *complete_one_by_one(helper *h)
{
    cf_future **fs = h->ctx;
    pid_t main_tid = (pid_t)(intptr_t)fs[3];
    for (int i = 0; i < 3; i++) {
        WAIT_BLOCKED(main_tid);
        cf_future_set_result(fs[i], NULL);
    }
    return NULL;
}

TEST(wait_all_completed_blocks_until_the_last)
{
    cf_future *fs[4] = {future_new(), future_new(), future_new(),
                        (cf_future *)(intptr_t)current_tid()};
    helper h;
    helper_start(&h, complete_one_by_one, fs);
    wait_out o;
    ASSERT_OK(wait_into(fs, 3, CF_FOREVER, CF_ALL_COMPLETED, &o));
    ASSERT_EQ(o.n_done, 3);
    ASSERT_EQ(o.n_not_done, 0);
    helper_join(&h);
    for (int i = 0; i < 3; i++)
        cf_future_release(fs[i]);
}

TEST(wait_first_completed_returns_after_one)
{
    cf_executor *ex = pool_new(2);
    latch a, b;
    latch_init(&a);
    latch_init(&b);
    cf_future *fs[2] = {submit(ex, task_gate, &a), submit(ex, task_gate, &b)};
    latch_wait_arrived(&a, 1);
    latch_wait_arrived(&b, 1);
    latch_open(&b);
    wait_out o;
    ASSERT_OK(wait_into(fs, 2, CF_FOREVER, CF_FIRST_COMPLETED, &o));
    ASSERT_EQ(o.n_done, 1);
    ASSERT_PTR_EQ(o.done[0], fs[1]);
    ASSERT_EQ(o.n_not_done, 1);
    ASSERT_PTR_EQ(o.not_done[0], fs[0]);
    latch_open(&a);
    cf_future_release(fs[0]);
    cf_future_release(fs[1]);
    cf_executor_free(ex);
    latch_destroy(&a);
    latch_destroy(&b);
}

TEST(wait_first_completed_with_one_already_done_returns_at_once)
{
    cf_future *fs[2] = {future_new(), future_done_with(NULL)};
    wait_out o;
    ASSERT_OK(wait_into(fs, 2, CF_FOREVER, CF_FIRST_COMPLETED, &o));
    ASSERT_EQ(o.n_done, 1);
    ASSERT_PTR_EQ(o.done[0], fs[1]);
    ASSERT_EQ(o.n_not_done, 1);
    cf_future_release(fs[0]);
    cf_future_release(fs[1]);
}

TEST(wait_first_completed_counts_cancel)
{
    cf_future *fs[2] = {future_new(), future_new()};
    ASSERT(cf_future_cancel(fs[0]));
    wait_out o;
    ASSERT_OK(wait_into(fs, 2, CF_FOREVER, CF_FIRST_COMPLETED, &o));
    ASSERT_EQ(o.n_done, 1);
    ASSERT_PTR_EQ(o.done[0], fs[0]);
    cf_future_release(fs[0]);
    cf_future_release(fs[1]);
}

TEST(wait_first_exception_returns_on_failure)
{
    cf_executor *ex = pool_new(2);
    latch l;
    latch_init(&l);
    cf_future *fs[2] = {submit(ex, task_gate, &l),
                        submit(ex, task_fail, (void *)(intptr_t)3)};
    wait_out o;
    ASSERT_OK(wait_into(fs, 2, CF_FOREVER, CF_FIRST_EXCEPTION, &o));
    ASSERT_EQ(o.n_done, 1);
    ASSERT_PTR_EQ(o.done[0], fs[1]);
    ASSERT_EQ(o.n_not_done, 1);
    ASSERT_PTR_EQ(o.not_done[0], fs[0]);
    latch_open(&l);
    cf_future_release(fs[0]);
    cf_future_release(fs[1]);
    cf_executor_free(ex);
    latch_destroy(&l);
}

TEST(wait_first_exception_with_failure_already_done_returns_at_once)
{
    cf_future *bad = future_new();
    ASSERT_OK(cf_future_set_exception(bad, 4, "x"));
    cf_future *fs[2] = {future_new(), bad};
    wait_out o;
    ASSERT_OK(wait_into(fs, 2, CF_FOREVER, CF_FIRST_EXCEPTION, &o));
    ASSERT_EQ(o.n_done, 1);
    ASSERT_PTR_EQ(o.done[0], bad);
    cf_future_release(fs[0]);
    cf_future_release(bad);
}

static void *fail_when_blocked(helper *h)
{
    void **ctx = h->ctx;
    WAIT_BLOCKED((pid_t)(intptr_t)ctx[1]);
    cf_future_set_exception(ctx[0], 9, "late failure");
    return NULL;
}

TEST(wait_first_exception_wakes_on_later_failure)
{
    cf_future *ok = future_done_with(NULL);
    cf_future *bad = future_new();
    cf_future *other = future_new();
    void *ctx[2] = {bad, (void *)(intptr_t)current_tid()};
    helper h;
    helper_start(&h, fail_when_blocked, ctx);
    cf_future *fs[3] = {ok, bad, other};
    wait_out o;
    ASSERT_OK(wait_into(fs, 3, CF_FOREVER, CF_FIRST_EXCEPTION, &o));
    helper_join(&h);
    ASSERT_EQ(o.n_done, 2);
    ASSERT_PTR_EQ(o.done[0], ok);
    ASSERT_PTR_EQ(o.done[1], bad);
    ASSERT_EQ(o.n_not_done, 1);
    ASSERT_PTR_EQ(o.not_done[0], other);
    cf_future_release(ok);
    cf_future_release(bad);
    cf_future_release(other);
}

static void *succeed_when_blocked(helper *h)
{
    void **ctx = h->ctx;
    WAIT_BLOCKED((pid_t)(intptr_t)ctx[1]);
    cf_future_set_result(ctx[0], NULL);
    return NULL;
}

TEST(wait_first_exception_without_failures_is_all_completed)
{
    cf_future *fs[4] = {future_done_with(NULL), future_new(), future_new(),
                        (cf_future *)(intptr_t)current_tid()};
    /* A success is not an exception: this must not return early. */
    wait_out o;
    double t0 = harness_now();
    ASSERT_OK(wait_into(fs, 3, 0.1, CF_FIRST_EXCEPTION, &o));
    ASSERT(harness_now() - t0 >= 0.099);
    ASSERT_EQ(o.n_done, 1);
    ASSERT_EQ(o.n_not_done, 2);
    /* Nor a cancel (Python's FIRST_EXCEPTION skips cancelled futures). */
    ASSERT(cf_future_cancel(fs[1]));
    t0 = harness_now();
    ASSERT_OK(wait_into(fs, 3, 0.1, CF_FIRST_EXCEPTION, &o));
    ASSERT(harness_now() - t0 >= 0.099);
    ASSERT_EQ(o.n_done, 2);
    ASSERT_EQ(o.n_not_done, 1);
    /* It returns once everything is done, as ALL_COMPLETED. */
    helper h;
    void *ctx[2] = {fs[2], fs[3]};
    helper_start(&h, succeed_when_blocked, ctx);
    ASSERT_OK(wait_into(fs, 3, CF_FOREVER, CF_FIRST_EXCEPTION, &o));
    helper_join(&h);
    ASSERT_EQ(o.n_done, 3);
    ASSERT_EQ(o.n_not_done, 0);
    for (int i = 0; i < 3; i++)
        cf_future_release(fs[i]);
}

TEST(wait_first_exception_returns_when_all_succeed)
{
    cf_future *fs[2] = {future_done_with(NULL), future_new()};
    void *ctx[2] = {fs[1], (void *)(intptr_t)current_tid()};
    helper h;
    helper_start(&h, succeed_when_blocked, ctx);
    wait_out o;
    ASSERT_OK(wait_into(fs, 2, CF_FOREVER, CF_FIRST_EXCEPTION, &o));
    helper_join(&h);
    ASSERT_EQ(o.n_done, 2);
    ASSERT_EQ(o.n_not_done, 0);
    cf_future_release(fs[0]);
    cf_future_release(fs[1]);
}

TEST(wait_sets_keep_first_seen_order)
{
    cf_future *a = future_new(), *b = future_done_with(NULL),
              *c = future_new(), *d = future_done_with(NULL);
    cf_future *fs[4] = {a, b, c, d};
    wait_out o;
    ASSERT_OK(wait_into(fs, 4, 0, CF_ALL_COMPLETED, &o));
    ASSERT_EQ(o.n_done, 2);
    ASSERT_PTR_EQ(o.done[0], b);
    ASSERT_PTR_EQ(o.done[1], d);
    ASSERT_EQ(o.n_not_done, 2);
    ASSERT_PTR_EQ(o.not_done[0], a);
    ASSERT_PTR_EQ(o.not_done[1], c);
    for (int i = 0; i < 4; i++)
        cf_future_release(fs[i]);
}

TEST(wait_counts_duplicates_once)
{
    cf_future *a = future_new(), *b = future_done_with(NULL);
    cf_future *fs[5] = {a, b, a, b, a};
    wait_out o;
    ASSERT_OK(wait_into(fs, 5, 0, CF_ALL_COMPLETED, &o));
    ASSERT_EQ(o.n_done, 1);
    ASSERT_PTR_EQ(o.done[0], b);
    ASSERT_EQ(o.n_not_done, 1);
    ASSERT_PTR_EQ(o.not_done[0], a);
    cf_future_release(a);
    cf_future_release(b);
}

TEST(wait_counts_duplicates_once_in_large_sets)
{
    /* Large inputs take another path than small ones: check both. */
    enum { DISTINCT = 10, N = 200 };
    cf_future *distinct[DISTINCT];
    for (int i = 0; i < DISTINCT; i++)
        distinct[i] = i % 2 ? future_new() : future_done_with(NULL);
    cf_future *fs[N], *done[N], *not_done[N];
    for (int i = 0; i < N; i++)
        fs[i] = distinct[(i * 7) % DISTINCT];
    size_t n_done = 0, n_not_done = 0;
    ASSERT_OK(cf_wait(fs, N, 0, CF_ALL_COMPLETED, done, &n_done, not_done,
                      &n_not_done));
    ASSERT_EQ(n_done, DISTINCT / 2);
    ASSERT_EQ(n_not_done, DISTINCT / 2);
    /* First-seen order: fs[0], fs[1], ... name distinct[0], [7], [4], ... */
    for (size_t k = 0; k < n_done; k++)
        for (size_t j = k + 1; j < n_done; j++)
            ASSERT(done[k] != done[j]);
    ASSERT_PTR_EQ(done[0], distinct[0]);
    ASSERT_PTR_EQ(not_done[0], distinct[7]);
    for (int i = 1; i < DISTINCT; i += 2)
        ASSERT_OK(cf_future_set_result(distinct[i], NULL));
    ASSERT_OK(cf_wait(fs, N, CF_FOREVER, CF_ALL_COMPLETED, NULL, &n_done,
                      NULL, &n_not_done));
    ASSERT_EQ(n_done, DISTINCT);
    ASSERT_EQ(n_not_done, 0);
    for (int i = 0; i < DISTINCT; i++)
        cf_future_release(distinct[i]);
}

static int by_address(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t) * (cf_future *const *)a;
    uintptr_t y = (uintptr_t) * (cf_future *const *)b;
    return (x > y) - (x < y);
}

static size_t distinct_in_wait(cf_future **fs, size_t n)
{
    size_t n_done = 0;
    ASSERT_OK(cf_wait(fs, n, 0, CF_ALL_COMPLETED, NULL, &n_done, NULL, NULL));
    return n_done;
}

/* Runs of rising addresses (how futures from slabs arrive) prove an array
 * distinct only if the runs' ranges do not overlap: a duplicate hidden in
 * a second run must still be found. */
TEST(wait_counts_duplicates_across_rising_runs)
{
    enum { N = 40 };
    cf_future *f[N], *fs[2 * N];
    for (int i = 0; i < N; i++)
        f[i] = future_done_with(NULL);
    qsort(f, N, sizeof *f, by_address); /* f rises, whatever the allocator */
    /* Two rising runs, high half first: disjoint ranges, all distinct. */
    memcpy(fs, f + N / 2, N / 2 * sizeof *fs);
    memcpy(fs + N / 2, f, N / 2 * sizeof *fs);
    ASSERT_EQ(distinct_in_wait(fs, N), N);
    /* Overlapping runs: f[0..29], then f[10..39]: 40 distinct of 60. */
    memcpy(fs, f, 30 * sizeof *fs);
    memcpy(fs + 30, f + 10, 30 * sizeof *fs);
    ASSERT_EQ(distinct_in_wait(fs, 60), N);
    /* Interleaved runs with disjoint elements but overlapping ranges:
     * evens, then odds: all distinct (the table path decides). */
    for (int i = 0; i < N / 2; i++) {
        fs[i] = f[2 * i];
        fs[N / 2 + i] = f[2 * i + 1];
    }
    ASSERT_EQ(distinct_in_wait(fs, N), N);
    /* One future repeated at the end of a run of its own. */
    memcpy(fs, f, N * sizeof *fs);
    fs[N] = f[N / 2];
    ASSERT_EQ(distinct_in_wait(fs, N + 1), N);
    for (int i = 0; i < N; i++)
        cf_future_release(f[i]);
}

/* Futures that reuse freed slots arrive at falling addresses: a falling run
 * proves as much as a rising one, and no more. */
TEST(wait_counts_duplicates_across_falling_runs)
{
    enum { N = 40 };
    cf_future *f[N], *fs[2 * N];
    for (int i = 0; i < N; i++)
        f[i] = future_done_with(NULL);
    qsort(f, N, sizeof *f, by_address);
    /* One falling run: all distinct. */
    for (int i = 0; i < N; i++)
        fs[i] = f[N - 1 - i];
    ASSERT_EQ(distinct_in_wait(fs, N), N);
    /* Overlapping falling runs: f[39..10], then f[29..0]: 40 of 60. */
    for (int i = 0; i < 30; i++) {
        fs[i] = f[N - 1 - i];
        fs[30 + i] = f[29 - i];
    }
    ASSERT_EQ(distinct_in_wait(fs, 60), N);
    /* A rising run, then a falling one over it: f[0..29], f[39..10]. */
    for (int i = 0; i < 30; i++) {
        fs[i] = f[i];
        fs[30 + i] = f[N - 1 - i];
    }
    ASSERT_EQ(distinct_in_wait(fs, 60), N);
    /* A falling run with its middle future repeated after it. */
    for (int i = 0; i < N; i++)
        fs[i] = f[N - 1 - i];
    fs[N] = f[N / 2];
    ASSERT_EQ(distinct_in_wait(fs, N + 1), N);
    /* A future twice in a row inside a falling run. */
    fs[0] = f[3];
    fs[1] = f[3];
    fs[2] = f[2];
    ASSERT_EQ(distinct_in_wait(fs, 3), 2);
    for (int i = 0; i < N; i++)
        cf_future_release(f[i]);
}

TEST(wait_all_completed_on_duplicates_returns_after_one_completion)
{
    /* If each copy were counted, one completion could never satisfy it. */
    cf_future *a = future_new();
    cf_future *fs[4] = {a, a, a, (cf_future *)(intptr_t)current_tid()};
    void *ctx[2] = {a, fs[3]};
    helper h;
    helper_start(&h, succeed_when_blocked, ctx);
    wait_out o;
    ASSERT_OK(wait_into(fs, 3, CF_FOREVER, CF_ALL_COMPLETED, &o));
    helper_join(&h);
    ASSERT_EQ(o.n_done, 1);
    ASSERT_EQ(o.n_not_done, 0);
    cf_future_release(a);
}

TEST(wait_mixes_executors_and_plain_futures)
{
    cf_executor *p1 = pool_new(1), *p2 = pool_new(1);
    cf_future *fs[3] = {submit(p1, task_identity, (void *)(intptr_t)1),
                        submit(p2, task_identity, (void *)(intptr_t)2),
                        future_new()};
    void *ctx[2] = {fs[2], (void *)(intptr_t)current_tid()};
    helper h;
    helper_start(&h, succeed_when_blocked, ctx);
    wait_out o;
    ASSERT_OK(wait_into(fs, 3, CF_FOREVER, CF_ALL_COMPLETED, &o));
    helper_join(&h);
    ASSERT_EQ(o.n_done, 3);
    ASSERT_EQ(result_of(fs[0]), 1);
    ASSERT_EQ(result_of(fs[1]), 2);
    for (int i = 0; i < 3; i++)
        cf_future_release(fs[i]);
    cf_executor_free(p1);
    cf_executor_free(p2);
}

TEST(wait_timeout_returns_ok_with_not_done)
{
    cf_future *fs[2] = {future_new(), future_done_with(NULL)};
    wait_out o;
    double t0 = harness_now();
    ASSERT_OK(wait_into(fs, 2, 0.1, CF_ALL_COMPLETED, &o));
    double waited = harness_now() - t0;
    ASSERT(waited >= 0.099);
    ASSERT(waited < 2.0);
    ASSERT_EQ(o.n_done, 1);
    ASSERT_PTR_EQ(o.done[0], fs[1]);
    ASSERT_EQ(o.n_not_done, 1);
    ASSERT_PTR_EQ(o.not_done[0], fs[0]);
    cf_future_release(fs[0]);
    cf_future_release(fs[1]);
}

TEST(wait_nonpositive_timeout_polls)
{
    cf_future *f = future_new();
    wait_out o;
    double t0 = harness_now();
    ASSERT_OK(wait_into(&f, 1, 0, CF_FIRST_COMPLETED, &o));
    ASSERT_OK(wait_into(&f, 1, -3, CF_ALL_COMPLETED, &o));
    ASSERT(harness_now() - t0 < 1.0);
    ASSERT_EQ(o.n_not_done, 1);
    cf_future_release(f);
}

TEST(wait_on_zero_futures_returns_at_once)
{
    cf_future *dummy = NULL;
    wait_out o;
    ASSERT_OK(wait_into(&dummy, 0, CF_FOREVER, CF_ALL_COMPLETED, &o));
    ASSERT_EQ(o.n_done, 0);
    ASSERT_EQ(o.n_not_done, 0);
    ASSERT_OK(wait_into(&dummy, 0, CF_FOREVER, CF_FIRST_COMPLETED, &o));
    ASSERT_EQ(o.n_done, 0);
    ASSERT_OK(wait_into(&dummy, 0, CF_FOREVER, CF_FIRST_EXCEPTION, &o));
}

TEST(wait_rejects_null_entries)
{
    cf_future *f = future_done_with(NULL);
    cf_future *fs[2] = {f, NULL};
    wait_out o;
    ASSERT_CODE(wait_into(fs, 2, CF_FOREVER, CF_ALL_COMPLETED, &o),
                CF_EINVAL);
    ASSERT_EQ(o.n_done, 999); /* outputs untouched */
    ASSERT_EQ(o.n_not_done, 999);
    ASSERT_CODE(wait_into(NULL, 2, CF_FOREVER, CF_ALL_COMPLETED, &o),
                CF_EINVAL);
    cf_future_release(f);
}

TEST(wait_rejects_nan_and_bad_return_when)
{
    cf_future *f = future_done_with(NULL);
    wait_out o;
    ASSERT_CODE(wait_into(&f, 1, NAN, CF_ALL_COMPLETED, &o), CF_EINVAL);
    ASSERT_CODE(wait_into(&f, 1, 0, (cf_return_when)7, &o), CF_EINVAL);
    ASSERT_CODE(wait_into(&f, 1, 0, (cf_return_when)-1, &o), CF_EINVAL);
    cf_future_release(f);
}

TEST(wait_outputs_may_be_null)
{
    cf_future *fs[2] = {future_done_with(NULL), future_new()};
    ASSERT_OK(cf_wait(fs, 2, 0, CF_ALL_COMPLETED, NULL, NULL, NULL, NULL));
    size_t n_done = 0, n_not_done = 0;
    ASSERT_OK(cf_wait(fs, 2, 0, CF_ALL_COMPLETED, NULL, &n_done, NULL,
                      &n_not_done));
    ASSERT_EQ(n_done, 1);
    ASSERT_EQ(n_not_done, 1);
    cf_future *done[2];
    ASSERT_OK(cf_wait(fs, 2, 0, CF_ALL_COMPLETED, done, NULL, NULL, NULL));
    ASSERT_PTR_EQ(done[0], fs[0]);
    cf_future_release(fs[0]);
    cf_future_release(fs[1]);
}

static void *wait_first(helper *h)
{
    cf_future **fs = h->ctx;
    size_t n_done = 0;
    int err = cf_wait(fs, 2, CF_FOREVER, CF_FIRST_COMPLETED, NULL, &n_done,
                      NULL, NULL);
    return (void *)(intptr_t)(err == CF_OK ? (int)n_done : err);
}

TEST(wait_from_several_threads_on_same_futures)
{
    cf_future *fs[2] = {future_new(), future_new()};
    helper hs[4];
    for (int i = 0; i < 4; i++)
        helper_start(&hs[i], wait_first, fs);
    for (int i = 0; i < 4; i++)
        WAIT_BLOCKED(hs[i].tid);
    ASSERT_OK(cf_future_set_result(fs[1], NULL));
    for (int i = 0; i < 4; i++)
        ASSERT_EQ((intptr_t)helper_join(&hs[i]), 1);
    cf_future_release(fs[0]);
    cf_future_release(fs[1]);
}

TEST(wait_leaves_no_waiter_behind_after_timeout)
{
    /* A timed-out wait must detach from the future: completing it later
     * must not touch the waiter (ASan sees a use after return otherwise). */
    cf_future *f = future_new();
    wait_out o;
    ASSERT_OK(wait_into(&f, 1, 0.01, CF_ALL_COMPLETED, &o));
    ASSERT_EQ(o.n_not_done, 1);
    ASSERT_OK(cf_future_set_result(f, NULL));
    ASSERT_OK(wait_into(&f, 1, 0, CF_ALL_COMPLETED, &o));
    ASSERT_EQ(o.n_done, 1);
    cf_future_release(f);
}
