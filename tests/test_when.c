/* test_when.c - combinators: cf_when_all(), cf_when_any().
 *
 * Inputs are bare futures the test completes, so the order of completion
 * is the test's; the races complete several inputs from several threads
 * released at once.
 */
#define pool_new process_pool_new_for_test /* see test_completion_queue.c */
#include "procpool_test.h"
#undef pool_new

#include "core/core.h"
#include "coretest.h"

static cf_future *when_all(cf_future *const *fs, size_t n)
{
    cf_future *d = NULL;
    ASSERT_OK(cf_when_all(fs, n, &d));
    ASSERT(d != NULL);
    return d;
}

static cf_future *when_any(cf_future *const *fs, size_t n)
{
    cf_future *d = NULL;
    ASSERT_OK(cf_when_any(fs, n, &d));
    ASSERT(d != NULL);
    return d;
}

static void release_all(cf_future **fs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        cf_future_release(fs[i]);
}

/* ------------------------------------------------------------------------ */
/* when_all                                                                 */

TEST(when_all_waits_for_every_input_and_gives_them_in_input_order)
{
    enum { N = 5 };
    cf_future *fs[N];
    for (int i = 0; i < N; i++)
        fs[i] = future_new();
    cf_future *d = when_all(fs, N);
    for (int i = N - 1; i > 0; i--) { /* every input but fs[0] */
        ASSERT_OK(cf_future_set_result(fs[i], (void *)(intptr_t)i));
        ASSERT(!cf_future_done(d));
    }
    ASSERT_OK(cf_future_set_result(fs[0], NULL));
    ASSERT(cf_future_done(d));
    release_all(fs, N); /* d keeps them */
    void *v = NULL;
    ASSERT_OK(cf_future_result(d, 0, &v));
    cf_future *const *got = v;
    for (int i = 0; i < N; i++)
        ASSERT_EQ(result_of(got[i]), i);
    cf_future_release(d);
}

TEST(when_all_of_nothing_is_done_at_once)
{
    cf_future *d = when_all(NULL, 0);
    void *v = NULL;
    ASSERT_OK(cf_future_result(d, 0, &v));
    ASSERT(v != NULL);
    cf_future_release(d);
}

TEST(when_all_fails_like_its_first_failed_input_in_input_order)
{
    cf_future *fs[3] = {future_new(), future_new(), future_new()};
    cf_future *d = when_all(fs, 3);
    ASSERT_OK(cf_future_set_exception(fs[2], 9, "nine")); /* first done */
    ASSERT_OK(cf_future_set_exception(fs[1], 7, "seven"));
    ASSERT(!cf_future_done(d)); /* still waits for fs[0] */
    ASSERT_OK(cf_future_set_result(fs[0], NULL));
    cf_error err;
    ASSERT_OK(cf_future_exception(d, 0, &err));
    ASSERT_EQ(err.code, 7);
    ASSERT_STR_EQ(err.message, "seven");
    release_all(fs, 3);
    cf_future_release(d);
}

TEST(when_all_is_cancelled_when_its_first_unsuccessful_input_was)
{
    cf_future *fs[3] = {future_done_with(NULL), future_new(), future_new()};
    ASSERT_OK(cf_future_set_exception(fs[2], 9, "nine"));
    cf_future *d = when_all(fs, 3);
    ASSERT(cf_future_cancel(fs[1]));
    ASSERT(cf_future_cancelled(d));
    release_all(fs, 3);
    cf_future_release(d);
}

TEST(cancelling_when_all_cancels_inputs_nothing_else_waits_on)
{
    latch gate;
    latch_init(&gate);
    cf_executor *ex = pool_new(1);
    cf_future *running = submit(ex, task_gate, &gate);
    WAIT_UNTIL(cf_future_running(running), 10);
    cf_future *alone = future_new(), *shared = future_new();
    cf_future *keeper = NULL;
    ASSERT_OK(cf_future_then(shared, NULL, task_identity, &keeper));
    cf_future *fs[4] = {running, alone, shared, alone};
    cf_future *d = when_all(fs, 4);
    ASSERT(cf_future_cancel(d));
    ASSERT(cf_future_cancelled(alone)); /* listed twice: both detached */
    ASSERT(!cf_future_done(shared));    /* keeper still waits on it */
    ASSERT(cf_future_running(running)); /* a started task is left alone */
    latch_open(&gate);
    ASSERT_OK(cf_future_set_result(shared, (void *)3));
    ASSERT_EQ(result_of(keeper), 3);
    ASSERT_EQ(result_of(running), (intptr_t)&gate);
    cf_future_release(d);
    cf_future_release(keeper);
    cf_future_release(shared);
    cf_future_release(alone);
    cf_future_release(running);
    cf_executor_free(ex);
    latch_destroy(&gate);
}

/* ------------------------------------------------------------------------ */
/* when_any                                                                 */

TEST(when_any_gives_the_first_input_done)
{
    cf_future *fs[3] = {future_new(), future_new(), future_new()};
    cf_future *d = when_any(fs, 3);
    ASSERT(!cf_future_done(d));
    ASSERT_OK(cf_future_set_exception(fs[1], 4, "four"));
    ASSERT_OK(cf_future_set_result(fs[2], NULL));
    void *v = NULL;
    ASSERT_OK(cf_future_result(d, 0, &v)); /* a failed winner is a value */
    ASSERT_PTR_EQ(v, fs[1]);
    ASSERT(!cf_future_done(fs[0])); /* losers are not cancelled */
    ASSERT_OK(cf_future_set_result(fs[0], NULL));
    release_all(fs, 3);
    cf_future_release(d);
}

TEST(when_any_picks_the_first_done_input_in_input_order)
{
    cf_future *fs[3] = {future_new(), future_done_with((void *)1),
                        future_done_with((void *)2)};
    cf_future *d = when_any(fs, 3);
    void *v = NULL;
    ASSERT_OK(cf_future_result(d, 0, &v));
    ASSERT_PTR_EQ(v, fs[1]);
    cf_future_release(d); /* the winner's reference goes with it */
    ASSERT(cf_future_cancel(fs[0])); /* nothing waits on it any more */
    release_all(fs, 3);
}

TEST(when_any_of_nothing_is_refused)
{
    cf_future *d = NULL;
    ASSERT_CODE(cf_when_any(NULL, 0, &d), CF_EINVAL);
    ASSERT(d == NULL);
}

TEST(cancelling_when_any_cancels_its_pending_inputs)
{
    cf_future *fs[2] = {future_new(), future_new()};
    cf_future *d = when_any(fs, 2);
    ASSERT(cf_future_cancel(d));
    ASSERT(cf_future_cancelled(fs[0]));
    ASSERT(cf_future_cancelled(fs[1]));
    release_all(fs, 2);
    cf_future_release(d);
}

enum { RACERS = 4 };

typedef struct any_race {
    cf_future *fs[RACERS];
    atomic_size_t armed;    /* rounds the test has set up */
    atomic_size_t joined;   /* racers that reached their round, in all */
    atomic_size_t finished; /* racers done with their round, in all */
    atomic_int ids;
    size_t n;
} any_race;

static void spin_until(atomic_size_t *v, size_t want)
{
    for (unsigned s = 0; atomic_load(v) < want; s++)
        if (s > 64)
            cf__yield(); /* the machine may have fewer CPUs than racers */
        else
            cf__cpu_relax();
}

static void *race_to_finish(helper *h)
{
    any_race *r = h->ctx;
    int id = atomic_fetch_add(&r->ids, 1);
    for (size_t i = 1; i <= r->n; i++) {
        spin_until(&r->armed, i);
        atomic_fetch_add(&r->joined, 1);
        spin_until(&r->joined, RACERS * i); /* all go at once */
        ASSERT_OK(cf_future_set_result(r->fs[id], (void *)(intptr_t)id));
        atomic_fetch_add(&r->finished, 1);
    }
    return NULL;
}

/* RACERS threads complete RACERS inputs at the same moment: exactly one is
 * the winner, it is done, and every input's link runs once (the op is
 * freed: ASan, valgrind). */
TEST_TIMEOUT(when_any_with_inputs_finishing_together_has_one_winner, 120)
{
    any_race r = {.n = harness_scaled(5000, 200)};
    helper hs[RACERS];
    size_t wins[RACERS] = {0};
    for (int k = 0; k < RACERS; k++)
        helper_start(&hs[k], race_to_finish, &r);
    for (size_t i = 1; i <= r.n; i++) {
        for (int k = 0; k < RACERS; k++)
            r.fs[k] = future_new();
        cf_future *d = when_any(r.fs, RACERS);
        cf_future *all = when_all(r.fs, RACERS);
        atomic_store(&r.armed, i);
        spin_until(&r.finished, RACERS * i);
        void *v = NULL;
        ASSERT_OK(cf_future_result(d, 0, &v));
        ASSERT(in_list(r.fs, RACERS, v));
        ASSERT(cf_future_done(v));
        wins[result_of(v)]++;
        ASSERT(cf_future_done(all));
        cf_future_release(all);
        cf_future_release(d);
        release_all(r.fs, RACERS);
    }
    for (int k = 0; k < RACERS; k++)
        helper_join(&hs[k]);
    printf("wins:");
    for (int k = 0; k < RACERS; k++)
        printf(" %zu", wins[k]);
    printf("\n");
}

/* ------------------------------------------------------------------------ */
/* Mixed                                                                    */

static void *plus_one(void *arg, cf_call *call)
{
    (void)call;
    return (void *)((intptr_t)arg + 1);
}

TEST_TIMEOUT(combinators_take_futures_of_any_executor, 60)
{
    cf_process_pool_options o = {.max_workers = 1};
    cf_executor *pp = NULL, *tp = pool_new(1);
    ASSERT_OK(cf_process_pool_new(&o, &pp));
    cf_future *fs[3] = {submit(tp, plus_one, (void *)1), NULL, future_new()};
    ASSERT_OK(cf_executor_submit(pp, plus_one, (void *)2, &fs[1]));
    cf_future *all = when_all(fs, 3), *any = when_any(fs + 1, 2);
    void *v = NULL;
    ASSERT_OK(cf_future_result(any, CF_FOREVER, &v)); /* the process's */
    ASSERT_PTR_EQ(v, fs[1]);
    ASSERT_OK(cf_future_set_result(fs[2], (void *)4));
    ASSERT_OK(cf_future_result(all, CF_FOREVER, &v));
    cf_future *const *got = v;
    ASSERT_EQ(result_of(got[0]) + result_of(got[1]) + result_of(got[2]), 9);
    cf_future_release(all);
    cf_future_release(any);
    release_all(fs, 3);
    cf_executor_free(pp);
    cf_executor_free(tp);
}

typedef struct nest {
    cf_future *root, *end;
} nest;

/* Completes the root, then drops the end: each when_all's value holds
 * its inputs, so freeing the end frees the whole nest. */
static void *complete_and_free(void *arg)
{
    nest *n = arg;
    ASSERT_OK(cf_future_set_result(n->root, NULL));
    ASSERT(cf_future_done(n->end));
    cf_future_release(n->end);
    return NULL;
}

TEST_TIMEOUT(nesting_100k_combinators_runs_and_frees_in_constant_stack, 60)
{
    cf_future *root = future_new(), *prev = cf_future_retain(root);
    for (int i = 0; i < 100000; i++) {
        cf_future *side = future_done_with(NULL);
        cf_future *pair[2] = {side, prev};
        cf_future *next = (i & 1) ? when_all(pair, 2) : when_any(pair + 1, 1);
        cf_future_release(side);
        cf_future_release(prev);
        prev = next;
    }
    nest n = {root, prev};
    pthread_attr_t attr;
    pthread_t t;
    ASSERT_EQ(pthread_attr_init(&attr), 0);
    ASSERT_EQ(pthread_attr_setstacksize(&attr, 256 * 1024), 0);
    ASSERT_EQ(pthread_create(&t, &attr, complete_and_free, &n), 0);
    ASSERT_EQ(pthread_join(t, NULL), 0);
    pthread_attr_destroy(&attr);
    cf_future_release(root);
}

TEST(bad_arguments_are_refused)
{
    cf_future *f = future_new(), *d = NULL;
    cf_future *with_null[2] = {f, NULL};
    ASSERT_CODE(cf_when_all(with_null, 2, &d), CF_EINVAL);
    ASSERT_CODE(cf_when_any(with_null, 2, &d), CF_EINVAL);
    ASSERT_CODE(cf_when_all(NULL, 1, &d), CF_EINVAL);
    ASSERT_CODE(cf_when_all(&f, 1, NULL), CF_EINVAL);
    ASSERT_CODE(cf_when_all(&f, SIZE_MAX / 2, &d), CF_EINVAL);
    ASSERT(d == NULL);
    cf_future_release(f);
}
