/* test_nested.c - tasks that wait for futures of their own pool: they
 * complete however few workers there are (a waiting worker runs what it
 * waits for), and a wait that could never end (a task waiting for itself,
 * or a cycle) returns CF_EDEADLK instead of hanging.
 *
 * The spec's two deadlock examples (concurrent.futures.rst, "Deadlocks")
 * are here with latches where the spec sleeps: both tasks of the
 * wait_on_a / wait_on_b pair are surely running before either waits.
 */
#define _GNU_SOURCE
#include "core/core.h"
#include "coretest.h"

static cf_executor *pool; /* the pool the tasks below submit to */

/* ------------------------------------------------------------------------ */
/* The spec's examples                                                      */

static void *power(void *arg, cf_call *call)
{
    (void)call;
    intptr_t x = (intptr_t)arg;
    return (void *)(x * x);
}

/* wait_on_future(): submits pow(5, 2) to its own one-worker pool and
 * waits for it. */
static void *wait_on_future(void *arg, cf_call *call)
{
    (void)arg;
    cf_future *f = NULL;
    int rc = cf_executor_submit(pool, power, (void *)5, &f);
    void *v = NULL;
    if (rc == CF_OK)
        rc = cf_future_result(f, CF_FOREVER, &v);
    cf_future_release(f);
    return rc ? cf_fail(call, rc, "%s", cf_err_name(rc)) : v;
}

TEST_TIMEOUT(spec_wait_on_future_on_one_worker_completes, 30)
{
    pool = pool_new(1);
    cf_future *f = submit(pool, wait_on_future, NULL);
    ASSERT_EQ(result_of(f), 25);
    cf_future_release(f);
    cf_executor_free(pool);
}

typedef struct pair {
    cf_future *_Atomic a, *_Atomic b;
    latch both_running;
    latch published; /* a and b are stored */
    atomic_int deadlocks;
} pair;

static pair spec_pair;

/* wait_on_b() / wait_on_a(): each returns the other's result, or its own
 * value when its wait was refused. */
static void *wait_on_other(pair *p, bool is_a, cf_call *call)
{
    latch_wait(&p->published);
    latch_wait(&p->both_running);
    cf_future *other = atomic_load(is_a ? &p->b : &p->a);
    void *v = NULL;
    int rc = cf_future_result(other, CF_FOREVER, &v);
    if (rc == CF_EDEADLK) {
        atomic_fetch_add(&p->deadlocks, 1);
        return (void *)(intptr_t)(is_a ? 5 : 6);
    }
    return rc == CF_OK ? v : cf_fail(call, rc, "%s", cf_err_name(rc));
}

static void *wait_on_b(void *arg, cf_call *call)
{
    return wait_on_other(arg, true, call);
}

static void *wait_on_a(void *arg, cf_call *call)
{
    return wait_on_other(arg, false, call);
}

/* With two workers both tasks run, each waits for the other: a cycle. The
 * second wait to begin is refused; its task returns, and the first wait
 * gets that result. With one worker, the wait in the first task runs the
 * second in place, whose wait for the first is then the cycle. */
static void wait_on_each_other(int workers)
{
    pair *p = &spec_pair;
    latch_init(&p->both_running);
    latch_init(&p->published);
    atomic_store(&p->deadlocks, 0);
    cf_executor *ex = pool_new(workers);
    cf_future *a = submit(ex, wait_on_b, p), *b = submit(ex, wait_on_a, p);
    atomic_store(&p->a, a);
    atomic_store(&p->b, b);
    latch_open(&p->published);
    if (workers >= 2)
        latch_wait_arrived(&p->both_running, 2);
    latch_open(&p->both_running);
    intptr_t ra = result_of(a), rb = result_of(b);
    ASSERT_EQ(atomic_load(&p->deadlocks), 1);
    /* The refused one returned its own value; the other got it. */
    ASSERT(ra == rb && (ra == 5 || ra == 6));
    cf_future_release(a);
    cf_future_release(b);
    cf_executor_free(ex);
    latch_destroy(&p->both_running);
    latch_destroy(&p->published);
}

TEST_TIMEOUT(spec_wait_on_a_and_b_on_two_workers_reports_one_deadlock, 30)
{
    wait_on_each_other(2);
}

TEST_TIMEOUT(spec_wait_on_a_and_b_on_one_worker_reports_one_deadlock, 30)
{
    wait_on_each_other(1);
}

/* ------------------------------------------------------------------------ */
/* Waiting for itself                                                       */

typedef struct self_wait {
    cf_future *_Atomic self;
    latch published;
    cf_future *_Atomic other; /* a bare future, for the OR waits */
    atomic_int rc[7];
} self_wait;

static void *wait_for_itself(void *arg, cf_call *call)
{
    (void)call;
    self_wait *s = arg;
    latch_wait(&s->published);
    cf_future *me = atomic_load(&s->self), *other = atomic_load(&s->other);
    cf_error err;
    s->rc[0] = cf_future_result(me, CF_FOREVER, NULL);
    s->rc[1] = cf_future_exception(me, 5.0, &err);
    cf_future *set[2] = {me, other};
    size_t nd = 0;
    s->rc[2] = cf_wait(set, 1, CF_FOREVER, CF_ALL_COMPLETED, NULL, &nd, NULL,
                       NULL);
    s->rc[3] = cf_wait(set, 1, CF_FOREVER, CF_FIRST_COMPLETED, NULL, &nd,
                       NULL, NULL);
    cf_as_completed *it = NULL;
    cf_future *got = NULL;
    int rc = cf_as_completed_new(set, 1, CF_FOREVER, &it);
    if (rc == CF_OK)
        rc = cf_as_completed_next(it, &got);
    cf_as_completed_free(it);
    s->rc[4] = rc;
    /* With a way out (`other`, completed by the test), an OR wait waits. */
    s->rc[5] = cf_wait(set, 2, CF_FOREVER, CF_FIRST_COMPLETED, NULL, &nd,
                       NULL, NULL);
    s->rc[6] = (int)nd;
    return NULL;
}

TEST_TIMEOUT(task_waiting_for_itself_gets_edeadlk, 30)
{
    cf_executor *ex = pool_new(2);
    self_wait s;
    memset(&s, 0, sizeof s);
    latch_init(&s.published);
    cf_future *other = future_new();
    atomic_store(&s.other, other);
    cf_future *f = submit(ex, wait_for_itself, &s);
    atomic_store(&s.self, f);
    latch_open(&s.published);
    WAIT_UNTIL(s.rc[4] != 0, 10); /* the refused waits are done */
    ASSERT_OK(cf_future_set_result(other, NULL));
    ASSERT_OK(cf_future_result(f, CF_FOREVER, NULL));
    for (int i = 0; i < 5; i++)
        ASSERT_CODE(s.rc[i], CF_EDEADLK);
    ASSERT_OK(s.rc[5]);
    ASSERT_EQ(s.rc[6], 1);
    cf_future_release(f);
    cf_future_release(other);
    cf_executor_free(ex);
    latch_destroy(&s.published);
}

static void *inline_self(void *arg, cf_call *call)
{
    cf_future *_Atomic *self = arg;
    cf_future *me = atomic_load(self);
    int rc = me ? cf_future_result(me, CF_FOREVER, NULL) : CF_EINVAL;
    return cf_fail(call, rc, "waited for itself");
}

static void *record_self(cf_future *done, void *arg, cf_call *call)
{
    (void)done;
    return inline_self(arg, call);
}

TEST(inline_continuation_waiting_for_itself_gets_edeadlk)
{
    cf_future *_Atomic self = NULL;
    cf_future *root = future_new(), *d = NULL;
    ASSERT_OK(cf_future_then_always(root, NULL, record_self, &self, &d));
    atomic_store(&self, d);
    ASSERT_OK(cf_future_set_result(root, NULL));
    cf_error err;
    ASSERT_OK(cf_future_exception(d, 0, &err));
    ASSERT_CODE(err.code, CF_EDEADLK);
    cf_future_release(d);
    cf_future_release(root);
}

/* ------------------------------------------------------------------------ */
/* Cycles                                                                   */

enum { RING = 3 };

typedef struct ring {
    cf_future *_Atomic f[RING];
    latch all_running;
    latch published;
    atomic_int deadlocks;
} ring;

static ring the_ring;

/* Task i waits for task i + 1 (mod RING): a cycle once all wait. */
static void *wait_on_next(void *arg, cf_call *call)
{
    intptr_t i = (intptr_t)arg;
    ring *r = &the_ring;
    latch_wait(&r->published);
    latch_wait(&r->all_running);
    void *v = NULL;
    int rc = cf_future_result(atomic_load(&r->f[(i + 1) % RING]),
                              CF_FOREVER, &v);
    if (rc == CF_EDEADLK) {
        atomic_fetch_add(&r->deadlocks, 1);
        return (void *)(100 + i);
    }
    return rc == CF_OK ? v : cf_fail(call, rc, "%s", cf_err_name(rc));
}

TEST_TIMEOUT(cycle_of_three_tasks_reports_one_deadlock, 30)
{
    ring *r = &the_ring;
    latch_init(&r->all_running);
    latch_init(&r->published);
    cf_executor *ex = pool_new(RING);
    cf_future *fs[RING];
    for (intptr_t i = 0; i < RING; i++)
        atomic_store(&r->f[i], fs[i] = submit(ex, wait_on_next, (void *)i));
    latch_open(&r->published);
    latch_wait_arrived(&r->all_running, RING);
    latch_open(&r->all_running);
    intptr_t v0 = result_of(fs[0]);
    ASSERT_EQ(atomic_load(&r->deadlocks), 1);
    for (int i = 0; i < RING; i++)
        ASSERT_EQ(result_of(fs[i]), v0); /* the refused one's value */
    /* Only now: task i borrows fs[i + 1] until it returns. */
    for (int i = 0; i < RING; i++)
        cf_future_release(fs[i]);
    cf_executor_free(ex);
    latch_destroy(&r->all_running);
    latch_destroy(&r->published);
}

typedef struct chain_wait {
    cf_future *_Atomic target;
    latch go;
} chain_wait;

static void *wait_on_target(void *arg, cf_call *call)
{
    chain_wait *c = arg;
    latch_wait(&c->go);
    void *v = NULL;
    int rc = cf_future_result(atomic_load(&c->target), CF_FOREVER, &v);
    return rc == CF_OK ? v : cf_fail(call, rc, "%s", cf_err_name(rc));
}

/* A waits for B, which runs (held on a latch) on another worker: an
 * ordinary wait, no false deadlock. */
TEST_TIMEOUT(waiting_for_a_running_task_is_no_deadlock, 30)
{
    latch gate;
    latch_init(&gate);
    cf_executor *ex = pool_new(2);
    cf_future *b = submit(ex, task_gate, &gate);
    WAIT_UNTIL(cf_future_running(b), 10);
    chain_wait c = {.target = b};
    latch_init(&c.go);
    latch_open(&c.go);
    cf_future *a = submit(ex, wait_on_target, &c);
    WAIT_UNTIL(cf_future_running(a), 10);
    ASSERT(!cf_future_done(a));
    latch_open(&gate);
    ASSERT_EQ(result_of(a), (intptr_t)&gate);
    cf_future_release(a);
    cf_future_release(b);
    cf_executor_free(ex);
    latch_destroy(&gate);
    latch_destroy(&c.go);
}

/* ------------------------------------------------------------------------ */
/* Divide and conquer                                                       */

/* fib(n) with a submit per call, each waiting for its two children. */
static void *fib(void *arg, cf_call *call)
{
    intptr_t n = (intptr_t)arg;
    if (n < 2)
        return (void *)n;
    cf_future *a = NULL, *b = NULL;
    int rc = cf_executor_submit(pool, fib, (void *)(n - 1), &a);
    if (rc == CF_OK)
        rc = cf_executor_submit(pool, fib, (void *)(n - 2), &b);
    void *va = NULL, *vb = NULL;
    if (rc == CF_OK)
        rc = cf_future_result(a, CF_FOREVER, &va);
    if (rc == CF_OK)
        rc = cf_future_result(b, CF_FOREVER, &vb);
    cf_future_release(a);
    cf_future_release(b);
    if (rc != CF_OK)
        return cf_fail(call, rc, "fib(%ld): %s", (long)n, cf_err_name(rc));
    return (void *)((intptr_t)va + (intptr_t)vb);
}

static void fib_on(int workers)
{
    pool = pool_new(workers);
    cf_future *f = submit(pool, fib, (void *)18);
    ASSERT_EQ(result_of(f), 2584);
    cf_future_release(f);
    cf_executor_free(pool);
}

TEST_TIMEOUT(recursive_fib_on_one_worker_completes, 60)
{
    fib_on(1);
}

TEST_TIMEOUT(recursive_fib_on_two_workers_completes, 60)
{
    fib_on(2);
}

TEST_TIMEOUT(recursive_fib_on_four_workers_completes, 60)
{
    fib_on(4);
}

/* A chain 2,000 deep: task i submits task i + 1 and waits for it, so on
 * one worker every task runs nested in the one before. */
static void *descend(void *arg, cf_call *call)
{
    intptr_t depth = (intptr_t)arg;
    if (depth == 0)
        return NULL;
    cf_future *f = NULL;
    int rc = cf_executor_submit(pool, descend, (void *)(depth - 1), &f);
    if (rc == CF_OK)
        rc = cf_future_result(f, CF_FOREVER, NULL);
    cf_future_release(f);
    return rc ? cf_fail(call, rc, "%s", cf_err_name(rc)) : NULL;
}

TEST_TIMEOUT(chain_of_2000_nested_waits_on_one_worker_completes, 60)
{
    pool = pool_new(1);
    cf_future *f = submit(pool, descend, (void *)2000);
    ASSERT_OK(cf_future_result(f, CF_FOREVER, NULL));
    cf_future_release(f);
    cf_executor_free(pool);
}

/* Sums 0..n-1 by submitting one task per chunk and collecting them with
 * `how`: 0 as_completed, 1 cf_wait FIRST_COMPLETED until all, 2 map. */
static void *add_range(void *arg, cf_call *call)
{
    (void)call;
    intptr_t lo = (intptr_t)arg * 10, sum = 0;
    for (intptr_t i = lo; i < lo + 10; i++)
        sum += i;
    return (void *)sum;
}

static void *collect(void *arg, cf_call *call)
{
    enum { N = 50 };
    intptr_t how = (intptr_t)arg, sum = 0;
    cf_future *fs[N] = {NULL};
    int rc = CF_OK;
    if (how == 2) {
        void *args[N];
        for (intptr_t i = 0; i < N; i++)
            args[i] = (void *)i;
        cf_map *m = NULL;
        rc = cf_executor_map(pool, add_range, args, N, NULL, &m);
        void *v;
        while (rc == CF_OK && (rc = cf_map_next(m, &v, NULL)) == CF_OK)
            sum += (intptr_t)v;
        cf_map_free(m);
        rc = rc == CF_EEND ? CF_OK : rc;
        return rc ? cf_fail(call, rc, "%s", cf_err_name(rc)) : (void *)sum;
    }
    for (intptr_t i = 0; i < N && rc == CF_OK; i++)
        rc = cf_executor_submit(pool, add_range, (void *)i, &fs[i]);
    if (how == 0 && rc == CF_OK) {
        cf_as_completed *it = NULL;
        cf_future *f;
        rc = cf_as_completed_new(fs, N, CF_FOREVER, &it);
        while (rc == CF_OK && (rc = cf_as_completed_next(it, &f)) == CF_OK) {
            void *v = NULL;
            cf_future_result(f, 0, &v);
            sum += (intptr_t)v;
            cf_future_release(f);
        }
        cf_as_completed_free(it);
        rc = rc == CF_EEND ? CF_OK : rc;
    } else if (rc == CF_OK) {
        cf_future *not_done[N];
        size_t nn = N;
        cf_future *const *left = fs;
        while (rc == CF_OK && nn > 0) {
            rc = cf_wait(left, nn, CF_FOREVER, CF_FIRST_COMPLETED, NULL,
                         NULL, not_done, &nn);
            left = not_done;
        }
        for (int i = 0; i < N; i++) {
            void *v = NULL;
            cf_future_result(fs[i], 0, &v);
            sum += (intptr_t)v;
        }
    }
    for (int i = 0; i < N; i++)
        cf_future_release(fs[i]);
    return rc ? cf_fail(call, rc, "%s", cf_err_name(rc)) : (void *)sum;
}

static void collect_on_one_worker(intptr_t how)
{
    pool = pool_new(1);
    cf_future *f = submit(pool, collect, (void *)how);
    ASSERT_EQ(result_of(f), 499 * 500 / 2);
    cf_future_release(f);
    cf_executor_free(pool);
}

TEST_TIMEOUT(as_completed_inside_a_task_on_one_worker_completes, 30)
{
    collect_on_one_worker(0);
}

TEST_TIMEOUT(wait_first_completed_inside_a_task_on_one_worker_completes, 30)
{
    collect_on_one_worker(1);
}

TEST_TIMEOUT(map_inside_a_task_on_one_worker_completes, 30)
{
    collect_on_one_worker(2);
}

/* ------------------------------------------------------------------------ */
/* What a waiting worker does not do                                        */

static void *which_pool(void *arg, cf_call *call)
{
    (void)arg;
    (void)call;
    return (void *)cf__current_pool;
}

/* A worker helps only its own pool: a task of another pool it waits for
 * runs on that pool's worker. */
TEST_TIMEOUT(waiting_worker_does_not_run_another_pools_task, 30)
{
    latch gate;
    latch_init(&gate);
    cf_executor *other = pool_new(1);
    cf_future *busy = submit(other, task_gate, &gate);
    WAIT_UNTIL(cf_future_running(busy), 10);
    cf_future *theirs = submit(other, which_pool, NULL); /* queued */
    pool = pool_new(1);
    chain_wait c = {.target = theirs};
    latch_init(&c.go);
    latch_open(&c.go);
    cf_future *mine = submit(pool, wait_on_target, &c);
    WAIT_UNTIL(cf_future_running(mine) || cf_future_done(mine), 10);
    latch_open(&gate);
    ASSERT_PTR_EQ((void *)result_of(mine), other);
    cf_future_release(mine);
    cf_future_release(theirs);
    cf_future_release(busy);
    cf_executor_free(pool);
    cf_executor_free(other);
    latch_destroy(&gate);
    latch_destroy(&c.go);
}

static void *poll_child(void *arg, cf_call *call)
{
    (void)arg;
    cf_future *f = NULL;
    if (cf_executor_submit(pool, task_identity, NULL, &f) != CF_OK)
        return cf_fail(call, 1, "submit");
    int rc = cf_future_result(f, 0, NULL); /* a poll */
    bool ran = cf_future_done(f);
    cf_future_release(f);
    return (void *)(intptr_t)(rc == CF_ETIMEDOUT && !ran);
}

TEST_TIMEOUT(poll_from_a_task_runs_nothing, 30)
{
    pool = pool_new(1);
    cf_future *f = submit(pool, poll_child, NULL);
    ASSERT_EQ(result_of(f), 1);
    cf_future_release(f);
    cf_executor_free(pool);
}

/* ------------------------------------------------------------------------ */
/* A future finishing as a task begins to wait                              */

/* The future the deadlock check's test hook completes (once), and with a
 * failure or not. */
static cf_future *_Atomic finish_at_check;
static atomic_bool finish_failing;

static void finish_before_check(void)
{
    cf_future *f = atomic_exchange(&finish_at_check, NULL);
    if (f && atomic_load(&finish_failing))
        cf_future_set_exception(f, CF_ETASK, "ends a FIRST_EXCEPTION wait");
    else if (f)
        cf_future_set_result(f, NULL);
}

/* Waits for {itself, a bare future} that finishes just before the
 * deadlock check, after the wait's last look. rc: cf_wait
 * FIRST_COMPLETED, as_completed's first next() (then its second),
 * cf_wait FIRST_EXCEPTION with the future succeeding (a true deadlock),
 * then failing. */
static void *wait_as_check_begins(void *arg, cf_call *call)
{
    (void)call;
    self_wait *s = arg;
    latch_wait(&s->published);
    cf_future *me = atomic_load(&s->self), *set[2] = {me, NULL};
    size_t nd = 0;
    set[1] = future_new();
    atomic_store(&finish_at_check, set[1]);
    s->rc[0] = cf_wait(set, 2, CF_FOREVER, CF_FIRST_COMPLETED, NULL, &nd,
                       NULL, NULL);
    cf_future_release(set[1]);

    set[1] = future_new();
    cf_as_completed *it = NULL;
    cf_future *got = NULL;
    int rc = cf_as_completed_new(set, 2, CF_FOREVER, &it);
    atomic_store(&finish_at_check, set[1]);
    if (rc == CF_OK)
        rc = cf_as_completed_next(it, &got);
    s->rc[1] = rc == CF_OK && got != set[1] ? CF_ESTATE : rc;
    cf_future_release(got);
    s->rc[2] = cf_as_completed_next(it, &got); /* only itself is left */
    cf_as_completed_free(it);
    cf_future_release(set[1]);

    for (int failing = 0; failing < 2; failing++) {
        set[1] = future_new();
        atomic_store(&finish_failing, failing);
        atomic_store(&finish_at_check, set[1]);
        s->rc[3 + failing] = cf_wait(set, 2, CF_FOREVER, CF_FIRST_EXCEPTION,
                                     NULL, &nd, NULL, NULL);
        cf_future_release(set[1]);
    }
    return NULL;
}

TEST_TIMEOUT(future_finishing_at_the_deadlock_check_ends_the_wait, 30)
{
    cf_executor *ex = pool_new(1);
    self_wait s;
    memset(&s, 0, sizeof s);
    latch_init(&s.published);
    cf__nested_before_check = finish_before_check;
    cf_future *f = submit(ex, wait_as_check_begins, &s);
    atomic_store(&s.self, f);
    latch_open(&s.published);
    ASSERT_OK(cf_future_result(f, CF_FOREVER, NULL));
    void (*none)(void) = NULL;
    atomic_store(&cf__nested_before_check, none);
    ASSERT_OK(s.rc[0]);
    ASSERT_OK(s.rc[1]);
    ASSERT_CODE(s.rc[2], CF_EDEADLK);
    ASSERT_CODE(s.rc[3], CF_EDEADLK);
    ASSERT_OK(s.rc[4]);
    cf_future_release(f);
    cf_executor_free(ex);
    latch_destroy(&s.published);
}

/* ------------------------------------------------------------------------ */
/* A future finishing as a task begins to wait                              */

/* Round by round, the task waits for "itself or this round's bare future"
 * (cf_wait FIRST_EXCEPTION, then as_completed), while the test thread
 * fails that future at a slightly different moment each round. The wait
 * must end with the bare future, never with CF_EDEADLK: one finishing
 * between the wait's last look and its deadlock check (all that is left
 * is then the task itself) ends the wait; it is no deadlock. The futures
 * done before the wait (DONE of them, which end neither wait) come first
 * and the bare one last, so that the window is most of the wait. */
enum { DONE = 1000 };

typedef struct finish_race {
    cf_future *_Atomic self;
    latch published;
    cf_future *set[DONE + 2]; /* DONE done futures, the task, the bare one */
    cf_future *_Atomic other; /* this round's bare future; NULL between */
    atomic_int waiting;       /* the round the task is about to wait in */
    atomic_bool stop;
    atomic_int deadlocks; /* waits refused */
    atomic_int failures;  /* waits that failed otherwise */
} finish_race;

static int wait_me_or_other(cf_future **set, bool use_wait)
{
    cf_future *other = set[DONE + 1];
    if (use_wait) {
        size_t nd = 0;
        int rc = cf_wait(set, DONE + 2, CF_FOREVER, CF_FIRST_EXCEPTION, NULL,
                         &nd, NULL, NULL);
        return rc == CF_OK && nd != DONE + 1 ? CF_ESTATE : rc;
    }
    cf_as_completed *it = NULL;
    cf_future *got = NULL;
    int rc = cf_as_completed_new(set, DONE + 2, CF_FOREVER, &it);
    for (int i = 0; rc == CF_OK && i <= DONE; i++) {
        cf_future_release(got);
        got = NULL;
        rc = cf_as_completed_next(it, &got);
    }
    if (rc == CF_OK && got != other)
        rc = CF_ESTATE;
    cf_future_release(got);
    cf_as_completed_free(it);
    return rc;
}

static void *wait_as_other_finishes(void *arg, cf_call *call)
{
    (void)call;
    finish_race *r = arg;
    latch_wait(&r->published);
    r->set[DONE] = atomic_load(&r->self);
    for (int round = 1;; round++) {
        cf_future *other;
        while (!(other = atomic_load(&r->other))) {
            if (atomic_load(&r->stop))
                return NULL;
            sched_yield();
        }
        r->set[DONE + 1] = other;
        atomic_store(&r->waiting, round);
        int rc = wait_me_or_other(r->set, round % 2);
        if (rc == CF_EDEADLK)
            atomic_fetch_add(&r->deadlocks, 1);
        else if (rc != CF_OK)
            atomic_fetch_add(&r->failures, 1);
        atomic_store(&r->other, NULL);
    }
}

TEST_TIMEOUT(future_finishing_as_a_task_begins_to_wait_is_no_deadlock, 30)
{
    cf_executor *ex = pool_new(1);
    static finish_race r;
    latch_init(&r.published);
    for (int i = 0; i < DONE; i++)
        r.set[i] = future_done_with(NULL);
    cf_future *f = submit(ex, wait_as_other_finishes, &r);
    atomic_store(&r.self, f);
    latch_open(&r.published);
    /* Rounds until a refusal or the deadline; the delay before the
     * failure sweeps the wait. Without the fix about half the runs find
     * the window (the test above hits it every time). */
    double slow = harness_slowdown();
    double deadline = harness_now() + 0.3 * (slow < 3 ? slow : 3);
    int round = 0;
    while (harness_now() < deadline && atomic_load(&r.deadlocks) == 0) {
        cf_future *other = future_new();
        round++;
        atomic_store(&r.other, other);
        while (atomic_load(&r.waiting) != round)
            sched_yield();
        for (volatile int spin = 0; spin < (round * 997) % 20000; spin++)
            ;
        ASSERT_OK(cf_future_set_exception(other, CF_ETASK, "ends the wait"));
        while (atomic_load(&r.other) != NULL)
            sched_yield();
        cf_future_release(other);
    }
    atomic_store(&r.stop, true);
    ASSERT_OK(cf_future_result(f, CF_FOREVER, NULL));
    ASSERT_EQ(atomic_load(&r.deadlocks), 0);
    ASSERT_EQ(atomic_load(&r.failures), 0);
    ASSERT(round > 0);
    cf_future_release(f);
    for (int i = 0; i < DONE; i++)
        cf_future_release(r.set[i]);
    cf_executor_free(ex);
    latch_destroy(&r.published);
}
