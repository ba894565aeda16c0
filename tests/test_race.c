/* test_race.c - many threads doing everything at once.
 *
 * The promises under test: no task is lost (every accepted task either runs
 * exactly once or is cancelled, never both, never neither), every
 * done-callback runs exactly once, no wake-up is lost (a waiter always
 * sees a completion that happens while it installs itself), and shutdown
 * racing submits leaves every accepted future done. Sizes scale with
 * CF_TEST_SCALE; the races are tight loops, so sanitizers see many
 * interleavings in little time.
 */
#include "reltest.h"

#include <stdatomic.h>

static int count_callback(cf_future *f, void *arg)
{
    (void)f;
    atomic_fetch_add((atomic_size_t *)arg, 1);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* cancel against start                                                     */

typedef struct cancel_race {
    cf_future **fs;
    atomic_uchar *ran;       /* times each task ran */
    atomic_uchar *callbacks; /* times each future's callback ran */
    bool *cancel_ok;         /* what cancel() returned */
    size_t n;
    atomic_size_t published; /* futures [0, published) are in fs */
} cancel_race;

typedef struct indexed {
    cancel_race *race;
    size_t i;
} indexed;

static void *task_mark(void *arg, cf_call *call)
{
    (void)call;
    indexed *x = arg;
    atomic_fetch_add(&x->race->ran[x->i], 1);
    return NULL;
}

static int mark_callback(cf_future *f, void *arg)
{
    (void)f;
    indexed *x = arg;
    atomic_fetch_add(&x->race->callbacks[x->i], 1);
    return 0;
}

/* Cancels each future as soon as it is published: right when a worker is
 * likely to be popping it. */
static void *canceller(helper *h)
{
    cancel_race *r = h->ctx;
    unsigned spins = 0;
    for (size_t i = 0; i < r->n; i++) {
        while (atomic_load(&r->published) <= i)
            reltest_spin(&spins);
        r->cancel_ok[i] = cf_future_cancel(r->fs[i]);
    }
    return NULL;
}

TEST_TIMEOUT(cancel_against_start_loses_nothing, 120)
{
    cancel_race r;
    r.n = harness_scaled(100000, 2000);
    r.fs = calloc(r.n, sizeof *r.fs);
    r.ran = calloc(r.n, sizeof *r.ran);
    r.callbacks = calloc(r.n, sizeof *r.callbacks);
    r.cancel_ok = calloc(r.n, sizeof *r.cancel_ok);
    indexed *xs = calloc(r.n, sizeof *xs);
    ASSERT(r.fs && r.ran && r.callbacks && r.cancel_ok && xs);
    atomic_init(&r.published, 0);
    cf_executor *pool = pool_new(2);
    helper h;
    helper_start(&h, canceller, &r);
    for (size_t i = 0; i < r.n; i++) {
        xs[i] = (indexed){&r, i};
        r.fs[i] = submit(pool, task_mark, &xs[i]);
        ASSERT_OK(cf_future_add_done_callback(r.fs[i], mark_callback, &xs[i]));
        atomic_store(&r.published, i + 1);
    }
    helper_join(&h);
    ASSERT_OK(cf_executor_shutdown(pool, true, false));
    size_t cancelled = 0, ran = 0;
    for (size_t i = 0; i < r.n; i++) {
        ASSERT(cf_future_done(r.fs[i]));
        bool c = cf_future_cancelled(r.fs[i]);
        ASSERT_EQ(c, r.cancel_ok[i]);   /* cancel told the truth */
        ASSERT_EQ(r.ran[i], c ? 0 : 1); /* ran exactly once, or never */
        ASSERT_EQ(r.callbacks[i], 1);
        cancelled += c;
        ran += !c;
        cf_future_release(r.fs[i]);
    }
    ASSERT_EQ(cancelled + ran, r.n);
    printf("cancel race: %zu cancelled, %zu ran\n", cancelled, ran);
    cf_executor_free(pool);
    free(r.fs);
    free(r.ran);
    free(r.callbacks);
    free(r.cancel_ok);
    free(xs);
}

/* ------------------------------------------------------------------------ */
/* completion against wait: lost wake-ups                                   */

/* A completion racing the waiter's install must still wake it. A lost
 * wake-up shows as a 5 s timeout (not_done non-empty), not as a hang. */
TEST_TIMEOUT(completion_against_wait_first_completed, 120)
{
    cf_executor *pool = pool_new(2);
    cf_future *never = future_new();
    size_t rounds = harness_scaled(20000, 500);
    for (size_t i = 0; i < rounds; i++) {
        cf_future *f = submit(pool, task_identity, (void *)(intptr_t)i);
        cf_future *fs[] = {never, f};
        cf_future *done[2];
        size_t nd = 0, nn = 0;
        switch (i % 4) {
        case 0:
        case 1:
            ASSERT_OK(cf_wait(fs, 2, 5, CF_FIRST_COMPLETED, done, &nd, NULL,
                              &nn));
            ASSERT_EQ(nd, 1);
            ASSERT_PTR_EQ(done[0], f);
            break;
        case 2: {
            cf_as_completed *it;
            cf_future *got;
            ASSERT_OK(cf_as_completed_new(fs, 2, 5, &it));
            ASSERT_OK(cf_as_completed_next(it, &got));
            ASSERT_PTR_EQ(got, f);
            cf_future_release(got);
            cf_as_completed_free(it);
            break;
        }
        default:
            ASSERT_OK(cf_future_result(f, 5, NULL));
        }
        cf_future_release(f);
    }
    cf_future_release(never);
    cf_executor_free(pool);
}

/* The same with a bare completer thread: set_result against install,
 * with no pool in between. */
typedef struct handoff {
    _Atomic(cf_future *) slot;
    atomic_bool stop;
} handoff;

static void *completer(helper *h)
{
    handoff *x = h->ctx;
    unsigned spins = 0;
    while (!atomic_load(&x->stop)) {
        cf_future *f = atomic_exchange(&x->slot, NULL);
        if (f) {
            cf_future_set_result(f, (void *)1);
            cf_future_release(f);
        } else {
            reltest_spin(&spins);
        }
    }
    return NULL;
}

TEST_TIMEOUT(set_result_against_wait_install, 120)
{
    handoff x;
    atomic_init(&x.slot, NULL);
    atomic_init(&x.stop, false);
    helper h;
    helper_start(&h, completer, &x);
    size_t rounds = harness_scaled(20000, 500);
    for (size_t i = 0; i < rounds; i++) {
        cf_future *f = future_new();
        atomic_store(&x.slot, cf_future_retain(f));
        cf_future *fs[] = {f};
        size_t nd = 0;
        if (i & 1)
            ASSERT_OK(cf_wait(fs, 1, 5, CF_FIRST_COMPLETED, NULL, &nd, NULL,
                              NULL));
        else
            ASSERT_OK(cf_wait(fs, 1, 5, CF_ALL_COMPLETED, NULL, &nd, NULL,
                              NULL));
        ASSERT_EQ(nd, 1);
        cf_future_release(f);
    }
    atomic_store(&x.stop, true);
    helper_join(&h);
}

/* ------------------------------------------------------------------------ */
/* Everything at once on one executor and shared futures                    */

enum { SLOTS = 16 };

typedef struct shared {
    cf_executor *pool;
    pthread_mutex_t lock;
    cf_future *slots[SLOTS]; /* guarded by lock; each holds a reference */
    atomic_size_t callbacks_added, callbacks_run;
    atomic_size_t submitted, refused;
    size_t iterations;
    atomic_int next_id;
    atomic_int mixers_done;
} shared;

static uint64_t rng(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* A reference to the future in slot i, or NULL. */
static cf_future *take(shared *s, size_t i)
{
    pthread_mutex_lock(&s->lock);
    cf_future *f = cf_future_retain(s->slots[i]);
    pthread_mutex_unlock(&s->lock);
    return f;
}

static void put(shared *s, size_t i, cf_future *f)
{
    pthread_mutex_lock(&s->lock);
    cf_future *old = s->slots[i];
    s->slots[i] = f;
    pthread_mutex_unlock(&s->lock);
    cf_future_release(old);
}

static void *task_short(void *arg, cf_call *call)
{
    (void)call;
    /* A few microseconds of work, polling the cancel flag. */
    volatile uintptr_t x = (uintptr_t)arg;
    for (int i = 0; i < 200 && !cf_call_cancel_requested(call); i++)
        x = x * 31 + 7;
    return (void *)x;
}

static void *mixer(helper *h)
{
    shared *s = h->ctx;
    uint64_t seed = 0x9E3779B97F4A7C15ULL * (uint64_t)atomic_fetch_add(
                                                 &s->next_id, 1) + 1;
    for (size_t it = 0; it < s->iterations; it++) {
        size_t i = rng(&seed) % SLOTS, j = rng(&seed) % SLOTS;
        switch (rng(&seed) % 8) {
        case 0:
        case 1: { /* submit */
            cf_future *f;
            int rc = cf_executor_submit(s->pool, task_short, (void *)it, &f);
            if (rc == CF_OK) {
                atomic_fetch_add(&s->submitted, 1);
                put(s, i, f);
            } else {
                ASSERT_CODE(rc, CF_ESHUTDOWN);
                atomic_fetch_add(&s->refused, 1);
            }
            break;
        }
        case 2: { /* cancel or request cancel */
            cf_future *f = take(s, i);
            if (f) {
                bool ok = (it & 1) ? cf_future_cancel(f)
                                   : cf_future_request_cancel(f);
                if (ok)
                    ASSERT(cf_future_cancelled(f));
                cf_future_release(f);
            }
            break;
        }
        case 3: { /* add a callback */
            cf_future *f = take(s, i);
            if (f) {
                atomic_fetch_add(&s->callbacks_added, 1);
                ASSERT_OK(cf_future_add_done_callback(f, count_callback,
                                                      &s->callbacks_run));
                cf_future_release(f);
            }
            break;
        }
        case 4: { /* wait on two, maybe the same */
            cf_future *a = take(s, i), *b = take(s, j);
            if (a && b) {
                cf_future *fs[] = {a, b};
                size_t nd = 0, nn = 0;
                ASSERT_OK(cf_wait(fs, 2, 0.001,
                                  (cf_return_when)(rng(&seed) % 3), NULL,
                                  &nd, NULL, &nn));
                ASSERT(nd + nn == (a == b ? 1u : 2u));
            }
            cf_future_release(a);
            cf_future_release(b);
            break;
        }
        case 5: { /* as_completed over everything there is */
            cf_future *fs[SLOTS];
            size_t n = 0;
            for (size_t k = 0; k < SLOTS; k++)
                if ((fs[n] = take(s, k)) != NULL)
                    n++;
            cf_as_completed *ac;
            ASSERT_OK(cf_as_completed_new(fs, n, 0.001, &ac));
            for (size_t k = 0; k < n; k++)
                cf_future_release(fs[k]); /* the iterator holds its own */
            cf_future *got;
            int rc;
            while ((rc = cf_as_completed_next(ac, &got)) == CF_OK) {
                ASSERT(cf_future_done(got));
                cf_future_release(got);
            }
            ASSERT(rc == CF_EEND || rc == CF_ETIMEDOUT);
            cf_as_completed_free(ac);
            break;
        }
        case 6: { /* result with a short timeout */
            cf_future *f = take(s, i);
            if (f) {
                int rc = cf_future_result(f, 0.0005, NULL);
                ASSERT(rc == CF_OK || rc == CF_ETIMEDOUT ||
                       rc == CF_ECANCELLED);
                cf_future_release(f);
            }
            break;
        }
        default: /* drop a slot */
            put(s, i, NULL);
        }
    }
    atomic_fetch_add(&s->mixers_done, 1);
    return NULL;
}

static void *shutter(helper *h)
{
    shared *s = h->ctx;
    /* Let the mixers get going, then shut down under them. */
    WAIT_UNTIL(atomic_load(&s->submitted) >= s->iterations ||
                   atomic_load(&s->mixers_done) > 0,
               60);
    ASSERT_OK(cf_executor_shutdown(s->pool, true, (s->iterations & 1) != 0));
    return NULL;
}

TEST_TIMEOUT(everything_at_once_on_shared_futures, 120)
{
    enum { MIXERS = 6 };
    shared s;
    memset(&s, 0, sizeof s);
    s.pool = pool_new(3);
    pthread_mutex_init(&s.lock, NULL);
    s.iterations = harness_scaled(20000, 500);
    helper mixers[MIXERS], shut;
    for (int i = 0; i < MIXERS; i++)
        helper_start(&mixers[i], mixer, &s);
    helper_start(&shut, shutter, &s);
    for (int i = 0; i < MIXERS; i++)
        helper_join(&mixers[i]);
    helper_join(&shut);
    /* Shut down again from here (idempotent) and wait: every accepted
     * future is done, every callback has run exactly once. */
    ASSERT_OK(cf_executor_shutdown(s.pool, true, false));
    for (size_t i = 0; i < SLOTS; i++) {
        cf_future *f = take(&s, i);
        if (f)
            ASSERT(cf_future_done(f));
        cf_future_release(f);
        put(&s, i, NULL);
    }
    ASSERT_EQ(atomic_load(&s.callbacks_run), atomic_load(&s.callbacks_added));
    ASSERT(atomic_load(&s.refused) > 0); /* the shutdown really raced */
    printf("mixed: %zu submitted, %zu refused, %zu callbacks\n",
           atomic_load(&s.submitted), atomic_load(&s.refused),
           atomic_load(&s.callbacks_run));
    cf_executor_free(s.pool);
    pthread_mutex_destroy(&s.lock);
}

/* ------------------------------------------------------------------------ */
/* shutdown against submit                                                  */

typedef struct submitter_ctx {
    cf_executor *pool;
    cf_future **accepted;
    size_t cap;
    atomic_size_t n; /* read by the main thread while submitting */
} submitter_ctx;

static void *submit_until_refused(helper *h)
{
    submitter_ctx *c = h->ctx;
    while (atomic_load(&c->n) < c->cap) {
        cf_future *f;
        int rc = cf_executor_submit(c->pool, task_short, NULL, &f);
        if (rc != CF_OK) {
            ASSERT_CODE(rc, CF_ESHUTDOWN);
            break;
        }
        c->accepted[atomic_load(&c->n)] = f;
        atomic_fetch_add(&c->n, 1);
    }
    return NULL;
}

TEST_TIMEOUT(shutdown_against_submit_keeps_every_accepted_task, 120)
{
    size_t rounds = harness_scaled(200, 20), cap = 4096;
    for (size_t r = 0; r < rounds; r++) {
        bool cancel = r & 1;
        cf_executor *pool = pool_new(2);
        submitter_ctx c[2];
        helper h[2];
        for (int k = 0; k < 2; k++) {
            c[k].pool = pool;
            c[k].accepted = calloc(cap, sizeof(cf_future *));
            c[k].cap = cap;
            atomic_init(&c[k].n, 0);
            ASSERT(c[k].accepted != NULL);
            helper_start(&h[k], submit_until_refused, &c[k]);
        }
        WAIT_UNTIL(atomic_load(&c[0].n) + atomic_load(&c[1].n) > r % 50, 30);
        ASSERT_OK(cf_executor_shutdown(pool, true, cancel));
        for (int k = 0; k < 2; k++) {
            helper_join(&h[k]);
            for (size_t i = 0; i < atomic_load(&c[k].n); i++) {
                cf_future *f = c[k].accepted[i];
                /* After a waited shutdown nothing accepted is left over:
                 * it ran, or (cancel_futures) it was cancelled. The two
                 * submitters may have been accepted after shutdown began
                 * only if they were queued before the flag: still done. */
                ASSERT(cf_future_done(f) || !cancel);
                if (!cancel)
                    ASSERT_OK(cf_future_result(f, 10, NULL));
                cf_future_release(f);
            }
            free(c[k].accepted);
        }
        cf_executor_free(pool);
    }
}

/* Several threads shutting down (waiting, with and without a timeout) and
 * freeing nothing until all return: no double join, no hang. */
static void *shut_wait(helper *h)
{
    ASSERT_OK(cf_executor_shutdown((cf_executor *)h->ctx, true, false));
    return NULL;
}

static void *shut_timeout(helper *h)
{
    size_t left;
    int rc = cf_executor_shutdown_timeout((cf_executor *)h->ctx, 30, true,
                                          &left);
    ASSERT_OK(rc);
    return NULL;
}

TEST(concurrent_shutdowns)
{
    size_t rounds = harness_scaled(200, 20);
    for (size_t r = 0; r < rounds; r++) {
        cf_executor *pool = pool_new(3);
        for (int i = 0; i < 8; i++) {
            cf_future *f = submit(pool, task_short, NULL);
            cf_future_release(f);
        }
        helper h[4];
        for (int i = 0; i < 4; i++)
            helper_start(&h[i], (i & 1) ? shut_timeout : shut_wait, pool);
        for (int i = 0; i < 4; i++)
            helper_join(&h[i]);
        cf_executor_free(pool);
    }
}

/* References taken and dropped by many threads while the future completes
 * and callbacks are added: the last release frees it once (ASan/valgrind
 * see a double free or a leak). */
static void *retain_release(helper *h)
{
    cf_future *f = h->ctx;
    for (int i = 0; i < 2000; i++) {
        cf_future_retain(f);
        if (i % 100 == 0)
            cf_future_done(f);
        cf_future_release(f);
    }
    return NULL;
}

TEST(refcount_under_contention)
{
    size_t rounds = harness_scaled(100, 10);
    atomic_size_t ran;
    atomic_init(&ran, 0);
    for (size_t r = 0; r < rounds; r++) {
        cf_future *f = future_new();
        helper h[3];
        for (int i = 0; i < 3; i++)
            helper_start(&h[i], retain_release, cf_future_retain(f));
        ASSERT_OK(cf_future_add_done_callback(f, count_callback, &ran));
        ASSERT_OK(cf_future_set_result(f, NULL));
        for (int i = 0; i < 3; i++) {
            helper_join(&h[i]);
            cf_future_release(f);
        }
        cf_future_release(f);
    }
    ASSERT_EQ(atomic_load(&ran), rounds);
}
