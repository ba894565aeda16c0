/* test_stress.c - volume and races: a million tasks, many submitting
 * threads, cancel racing with start, shutdown racing with submit, and
 * callbacks that submit, cancel and add callbacks while work completes. */
#define _GNU_SOURCE
#include "coretest.h"

TEST_TIMEOUT(million_empty_tasks_with_futures, 300)
{
    size_t n = harness_scaled(1000000, 10000);
    cf_future **fs = malloc(n * sizeof *fs);
    ASSERT(fs != NULL);
    cf_executor *ex = NULL;
    ASSERT_OK(cf_thread_pool_new(NULL, &ex));
    double t0 = harness_now();
    for (size_t i = 0; i < n; i++)
        ASSERT_OK(cf_executor_submit(ex, task_empty, NULL, &fs[i]));
    double submitted = harness_now() - t0;
    size_t n_done = 0, n_not_done = 99;
    ASSERT_OK(cf_wait(fs, n, CF_FOREVER, CF_ALL_COMPLETED, NULL, &n_done,
                      NULL, &n_not_done));
    ASSERT_EQ(n_done, n);
    ASSERT_EQ(n_not_done, 0);
    printf("%zu tasks: submitted in %.2f s, all done in %.2f s\n", n,
           submitted, harness_now() - t0);
    for (size_t i = 0; i < n; i++) {
        ASSERT(cf_future_done(fs[i]) && !cf_future_cancelled(fs[i]));
        cf_future_release(fs[i]);
    }
    free(fs);
    cf_executor_free(ex);
}

/* ------------------------------------------------------------------------ */

typedef struct submitter {
    cf_executor *ex;
    size_t per_thread;
    atomic_long *sum;
    int failures;
} submitter;

static void *add_arg(void *arg, cf_call *call)
{
    (void)call;
    return arg;
}

static void *submit_many(helper *h)
{
    submitter *s = h->ctx;
    cf_future **fs = malloc(s->per_thread * sizeof *fs);
    if (!fs) {
        s->failures++;
        return NULL;
    }
    for (size_t i = 0; i < s->per_thread; i++)
        if (cf_executor_submit(s->ex, add_arg, (void *)(intptr_t)(i + 1),
                               &fs[i]) != CF_OK) {
            s->failures++;
            fs[i] = NULL;
        }
    for (size_t i = 0; i < s->per_thread; i++) {
        void *v = NULL;
        if (!fs[i])
            continue;
        if (cf_future_result(fs[i], CF_FOREVER, &v) == CF_OK)
            atomic_fetch_add(s->sum, (long)(intptr_t)v);
        else
            s->failures++;
        cf_future_release(fs[i]);
    }
    free(fs);
    return NULL;
}

TEST_TIMEOUT(many_threads_submit_concurrently, 120)
{
    enum { THREADS = 8 };
    size_t per = harness_scaled(20000, 500);
    atomic_long sum = 0;
    cf_executor *ex = pool_new(4);
    submitter s[THREADS];
    helper h[THREADS];
    for (int t = 0; t < THREADS; t++) {
        s[t] = (submitter){ex, per, &sum, 0};
        helper_start(&h[t], submit_many, &s[t]);
    }
    for (int t = 0; t < THREADS; t++) {
        helper_join(&h[t]);
        ASSERT_EQ(s[t].failures, 0);
    }
    ASSERT_EQ(atomic_load(&sum), (long)THREADS * (long)(per * (per + 1) / 2));
    cf_executor_free(ex);
}

/* ------------------------------------------------------------------------ */

typedef struct race {
    cf_future **fs;
    atomic_bool *ran;
    size_t n;
    atomic_size_t published; /* futures [0, published) are in fs */
    atomic_int runs;
    size_t cancel_true;
} race;

static race rc;

static void *mark_ran(void *arg, cf_call *call)
{
    (void)call;
    atomic_store(&rc.ran[(size_t)(intptr_t)arg], true);
    atomic_fetch_add(&rc.runs, 1);
    return arg;
}

static void *cancel_all(helper *h)
{
    (void)h;
    for (size_t i = 0; i < rc.n; i++) {
        while (atomic_load(&rc.published) <= i)
            ;
        if (cf_future_cancel(rc.fs[i]))
            rc.cancel_true++;
    }
    return NULL;
}

TEST_TIMEOUT(cancel_racing_with_start_is_cancelled_xor_run, 120)
{
    rc.n = harness_scaled(50000, 2000);
    rc.fs = calloc(rc.n, sizeof *rc.fs);
    rc.ran = calloc(rc.n, sizeof *rc.ran);
    ASSERT(rc.fs && rc.ran);
    atomic_store(&rc.published, 0);
    atomic_store(&rc.runs, 0);
    rc.cancel_true = 0;
    cf_executor *ex = pool_new(2);
    helper h;
    helper_start(&h, cancel_all, NULL);
    for (size_t i = 0; i < rc.n; i++) {
        rc.fs[i] = submit(ex, mark_ran, (void *)(intptr_t)i);
        atomic_store(&rc.published, i + 1);
    }
    helper_join(&h);
    cf_executor_free(ex);
    size_t cancelled = 0;
    for (size_t i = 0; i < rc.n; i++) {
        cf_future *f = rc.fs[i];
        ASSERT(cf_future_done(f));
        bool c = cf_future_cancelled(f);
        bool r = atomic_load(&rc.ran[i]);
        if (c == r)
            harness_fail(__FILE__, __LINE__,
                         "future %zu: cancelled %d, ran %d", i, c, r);
        if (c) {
            cancelled++;
            ASSERT_CODE(cf_future_result(f, 0, NULL), CF_ECANCELLED);
        } else {
            ASSERT_EQ(result_of(f), (intptr_t)i);
        }
        cf_future_release(f);
    }
    printf("%zu cancelled, %d ran\n", cancelled, atomic_load(&rc.runs));
    ASSERT_EQ(cancelled, rc.cancel_true);
    ASSERT_EQ(cancelled + (size_t)atomic_load(&rc.runs), rc.n);
    free(rc.fs);
    free(rc.ran);
}

/* ------------------------------------------------------------------------ */

typedef struct shut_race {
    cf_executor *ex;
    latch *go;
    atomic_int *runs;
    size_t accepted;
    size_t refused;
    size_t bad;
    cf_future **fs;
    size_t cap;
} shut_race;

static void *submit_until_refused(helper *h)
{
    shut_race *s = h->ctx;
    latch_wait(s->go);
    for (;;) {
        cf_future *f = NULL;
        int err = cf_executor_submit(s->ex, task_count, s->runs, &f);
        if (err == CF_ESHUTDOWN) {
            s->refused++;
            /* Once refused, always refused. */
            for (int k = 0; k < 100; k++)
                if (cf_executor_submit(s->ex, task_count, s->runs, &f) !=
                    CF_ESHUTDOWN)
                    s->bad++;
            return NULL;
        }
        if (err != CF_OK) {
            s->bad++;
            return NULL;
        }
        if (s->accepted == s->cap) {
            s->cap = s->cap ? 2 * s->cap : 1024;
            cf_future **grown = realloc(s->fs, s->cap * sizeof *grown);
            if (!grown) {
                s->bad++;
                cf_future_release(f);
                return NULL;
            }
            s->fs = grown;
        }
        s->fs[s->accepted++] = f;
    }
}

TEST_TIMEOUT(shutdown_racing_with_submit, 120)
{
    enum { THREADS = 4 };
    int rounds = (int)harness_scaled(20, 3);
    for (int r = 0; r < rounds; r++) {
        atomic_int runs = 0;
        cf_executor *ex = pool_new(2);
        shut_race s[THREADS];
        helper h[THREADS];
        latch go;
        latch_init(&go);
        for (int t = 0; t < THREADS; t++) {
            s[t] = (shut_race){.ex = ex, .go = &go, .runs = &runs};
            helper_start(&h[t], submit_until_refused, &s[t]);
        }
        latch_open(&go);
        /* Let them get going, then shut down under their feet. */
        WAIT_UNTIL(atomic_load(&runs) >= 100 * (r % 5), 30);
        ASSERT_OK(cf_executor_shutdown(ex, true, false));
        size_t accepted = 0;
        for (int t = 0; t < THREADS; t++) {
            helper_join(&h[t]);
            ASSERT_EQ(s[t].bad, 0);
            ASSERT_EQ(s[t].refused, 1);
            for (size_t i = 0; i < s[t].accepted; i++) {
                /* Every accepted future ends, and ran. */
                ASSERT_OK(cf_future_result(s[t].fs[i], CF_FOREVER, NULL));
                cf_future_release(s[t].fs[i]);
            }
            accepted += s[t].accepted;
            free(s[t].fs);
        }
        ASSERT_EQ((size_t)atomic_load(&runs), accepted);
        cf_executor_free(ex);
        latch_destroy(&go);
    }
}

/* ------------------------------------------------------------------------ */

typedef struct storm {
    cf_executor *ex;
    cf_future *victims[64];
    atomic_int victim_next;
    atomic_int leaf_calls;
    atomic_int victim_calls;
    atomic_int children;
    atomic_int cancels;
    cf_future *child_fs[4096];
    atomic_int child_n;
} storm;

static int on_leaf(cf_future *f, void *arg)
{
    (void)f;
    atomic_fetch_add(&((storm *)arg)->leaf_calls, 1);
    return 0;
}

static int on_victim(cf_future *f, void *arg)
{
    (void)f;
    atomic_fetch_add(&((storm *)arg)->victim_calls, 1);
    return 0;
}

/* On each root's completion: submit a child with its own callback, add a
 * callback to a victim, and cancel that victim. */
static int on_root(cf_future *f, void *arg)
{
    (void)f;
    storm *s = arg;
    cf_future *child = NULL;
    if (cf_executor_submit(s->ex, task_identity, NULL, &child) == CF_OK) {
        atomic_fetch_add(&s->children, 1);
        cf_future_add_done_callback(child, on_leaf, s);
        int i = atomic_fetch_add(&s->child_n, 1);
        s->child_fs[i] = child;
    }
    int v = atomic_fetch_add(&s->victim_next, 1) % 64;
    cf_future_add_done_callback(s->victims[v], on_victim, s);
    if (cf_future_cancel(s->victims[v]))
        atomic_fetch_add(&s->cancels, 1);
    return 0;
}

TEST_TIMEOUT(callbacks_that_submit_cancel_and_add_callbacks, 120)
{
    enum { ROOTS = 4096 };
    static storm s;
    memset(&s, 0, sizeof s);
    s.ex = pool_new(4);
    for (int i = 0; i < 64; i++)
        s.victims[i] = future_new();
    cf_future **roots = malloc(ROOTS * sizeof *roots);
    ASSERT(roots != NULL);
    for (int i = 0; i < ROOTS; i++) {
        roots[i] = submit(s.ex, task_identity, NULL);
        ASSERT_OK(cf_future_add_done_callback(roots[i], on_root, &s));
    }
    ASSERT_OK(cf_wait(roots, ROOTS, CF_FOREVER, CF_ALL_COMPLETED, NULL, NULL,
                      NULL, NULL));
    /* Callbacks run after the state changes; wait for the last of them. */
    WAIT_UNTIL(atomic_load(&s.child_n) == ROOTS, 30);
    cf_executor_free(s.ex);
    ASSERT_EQ(atomic_load(&s.children), ROOTS);
    ASSERT_EQ(atomic_load(&s.leaf_calls), ROOTS);
    /* Each victim's callbacks ran once each: ROOTS adds in all. */
    ASSERT_EQ(atomic_load(&s.victim_calls), ROOTS);
    ASSERT_EQ(atomic_load(&s.cancels), ROOTS); /* cancel stays true */
    for (int i = 0; i < 64; i++) {
        ASSERT(cf_future_cancelled(s.victims[i]));
        cf_future_release(s.victims[i]);
    }
    for (int i = 0; i < ROOTS; i++) {
        cf_future_release(roots[i]);
        cf_future_release(s.child_fs[i]);
    }
    free(roots);
}

/* ------------------------------------------------------------------------ */

static void *wait_one(helper *h)
{
    return (void *)(intptr_t)cf_future_result(h->ctx, CF_FOREVER, NULL);
}

TEST(many_waiters_on_one_future_all_wake)
{
    enum { WAITERS = 16 };
    int rounds = (int)harness_scaled(50, 5);
    for (int r = 0; r < rounds; r++) {
        cf_future *f = future_new();
        helper h[WAITERS];
        for (int i = 0; i < WAITERS; i++)
            helper_start(&h[i], wait_one, f);
        if (r % 2)
            ASSERT_OK(cf_future_set_result(f, NULL));
        else
            ASSERT(cf_future_cancel(f));
        for (int i = 0; i < WAITERS; i++)
            ASSERT_CODE((int)(intptr_t)helper_join(&h[i]),
                        r % 2 ? CF_OK : CF_ECANCELLED);
        cf_future_release(f);
    }
}

TEST_TIMEOUT(as_completed_while_pool_completes, 120)
{
    size_t n = harness_scaled(50000, 2000);
    cf_executor *ex = pool_new(4);
    cf_future **fs = malloc(n * sizeof *fs);
    bool *seen = calloc(n, 1);
    ASSERT(fs && seen);
    for (size_t i = 0; i < n; i++)
        fs[i] = submit(ex, task_identity, (void *)(intptr_t)i);
    cf_as_completed *it = NULL;
    ASSERT_OK(cf_as_completed_new(fs, n, CF_FOREVER, &it));
    for (size_t i = 0; i < n; i++)
        cf_future_release(fs[i]);
    cf_future *f = NULL;
    size_t count = 0;
    int err;
    while ((err = cf_as_completed_next(it, &f)) == CF_OK) {
        size_t v = (size_t)result_of(f);
        ASSERT(v < n && !seen[v]);
        seen[v] = true;
        count++;
        cf_future_release(f);
    }
    ASSERT_CODE(err, CF_EEND);
    ASSERT_EQ(count, n);
    cf_as_completed_free(it);
    cf_executor_free(ex);
    free(fs);
    free(seen);
}
