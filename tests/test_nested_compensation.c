/* test_nested_compensation.c - a thread pool adds a compensating thread
 * while one of its workers is blocked in a nested wait, so that queued
 * work runs even when every worker waits: A waits for B, running
 * elsewhere, and B for something C, still queued, will do; up to
 * max_compensating extra threads, which retire once the waits end. */
#define _GNU_SOURCE
#include "coretest.h"

static cf_executor *compensating_pool(int max_workers, int max_compensating,
                                      const char *prefix)
{
    cf_thread_pool_options opts = {.max_workers = max_workers,
                                   .max_compensating = max_compensating,
                                   .thread_name_prefix = prefix};
    cf_executor *ex = NULL;
    ASSERT_OK(cf_thread_pool_new(&opts, &ex));
    return ex;
}

/* ------------------------------------------------------------------------ */
/* A -> B -> C                                                              */

typedef struct chain {
    cf_executor *ex;
    latch gate;       /* B waits here (not a future: it cannot help) */
    cf_future *b;     /* B's future, for A */
    cf_future *x;     /* a bare future C sets, for B on one worker */
} chain;

static void *task_open_gate(void *arg, cf_call *call)
{
    (void)call;
    latch_open(&((chain *)arg)->gate);
    return NULL;
}

/* A: queues C behind the busy workers, then waits for B. */
static void *task_a(void *arg, cf_call *call)
{
    (void)call;
    chain *c = arg;
    cf_future *fc = NULL;
    if (cf_executor_submit(c->ex, task_open_gate, c, &fc) != CF_OK)
        return NULL;
    void *v = NULL;
    int rc = cf_future_result(c->b, CF_FOREVER, &v);
    cf_future_release(fc);
    return rc == CF_OK ? v : NULL;
}

TEST_TIMEOUT(a_waits_for_running_b_that_waits_for_queued_c_two_workers, 30)
{
    chain c = {.ex = compensating_pool(2, 0, "abc2")};
    latch_init(&c.gate);
    c.b = submit(c.ex, task_gate, &c.gate);
    latch_wait_arrived(&c.gate, 1); /* B runs and waits */
    cf_future *a = submit(c.ex, task_a, &c);
    ASSERT_EQ(result_of(a), (intptr_t)&c.gate);
    ASSERT_EQ(result_of(c.b), (intptr_t)&c.gate);
    /* The compensating thread retires once the wait is over. */
    WAIT_UNTIL(count_named_threads("abc2_") <= 2, 10);
    cf_future_release(a);
    cf_future_release(c.b);
    cf_executor_free(c.ex);
    latch_destroy(&c.gate);
}

static void *task_set_x(void *arg, cf_call *call)
{
    (void)call;
    return (void *)(intptr_t)cf_future_set_result(((chain *)arg)->x,
                                                  (void *)7);
}

/* B on one worker: A runs it in place (helping), and it waits for the
 * bare future x that C, queued, sets. */
static void *task_b_waits_x(void *arg, cf_call *call)
{
    (void)call;
    void *v = NULL;
    return cf_future_result(((chain *)arg)->x, CF_FOREVER, &v) == CF_OK
               ? v
               : NULL;
}

static void *task_a_one_worker(void *arg, cf_call *call)
{
    (void)call;
    chain *c = arg;
    cf_future *fb = NULL, *fc = NULL;
    void *v = NULL;
    if (cf_executor_submit(c->ex, task_b_waits_x, c, &fb) == CF_OK &&
        cf_executor_submit(c->ex, task_set_x, c, &fc) == CF_OK)
        cf_future_result(fb, CF_FOREVER, &v);
    cf_future_release(fb);
    cf_future_release(fc);
    return v;
}

TEST_TIMEOUT(a_waits_for_b_that_waits_for_queued_c_one_worker, 30)
{
    chain c = {.ex = compensating_pool(1, 0, "abc1")};
    c.x = future_new();
    cf_future *a = submit(c.ex, task_a_one_worker, &c);
    ASSERT_EQ(result_of(a), 7);
    WAIT_UNTIL(count_named_threads("abc1_") <= 1, 10);
    cf_future_release(a);
    cf_future_release(c.x);
    cf_executor_free(c.ex);
}

/* ------------------------------------------------------------------------ */
/* Recursive divide-and-conquer whose halves wait for each other            */

typedef struct node {
    cf_executor *ex;
    int depth;
    cf_future *mine, *other; /* bare: each half sets its own, waits for
                              * the other's (NULL at the root) */
} node;

static void *task_node(void *arg, cf_call *call)
{
    (void)call;
    node *n = arg;
    void *v = NULL;
    if (n->mine && (cf_future_set_result(n->mine, NULL) != CF_OK ||
                    cf_future_result(n->other, CF_FOREVER, &v) != CF_OK))
        return (void *)-1;
    if (n->depth == 0)
        return (void *)1;
    cf_future *fl = NULL, *fr = NULL, *l = NULL, *r = NULL;
    intptr_t leaves = -1;
    void *vl = NULL, *vr = NULL;
    if (cf_future_new(&fl) == CF_OK && cf_future_new(&fr) == CF_OK) {
        node left = {n->ex, n->depth - 1, fl, fr};
        node right = {n->ex, n->depth - 1, fr, fl};
        if (cf_executor_submit(n->ex, task_node, &left, &l) == CF_OK &&
            cf_executor_submit(n->ex, task_node, &right, &r) == CF_OK &&
            cf_future_result(l, CF_FOREVER, &vl) == CF_OK &&
            cf_future_result(r, CF_FOREVER, &vr) == CF_OK &&
            (intptr_t)vl > 0 && (intptr_t)vr > 0)
            leaves = (intptr_t)vl + (intptr_t)vr;
        /* Both halves ended (or never started) before their nodes go. */
        if (l)
            cf_future_result(l, CF_FOREVER, &vl);
        if (r)
            cf_future_result(r, CF_FOREVER, &vr);
    }
    cf_future_release(l);
    cf_future_release(r);
    cf_future_release(fl);
    cf_future_release(fr);
    return (void *)leaves;
}

static void exchanging_tree_completes(int max_workers, const char *prefix)
{
    enum { DEPTH = 6 };
    cf_executor *ex = compensating_pool(max_workers, 0, prefix);
    node root = {ex, DEPTH, NULL, NULL};
    cf_future *f = submit(ex, task_node, &root);
    ASSERT_EQ(result_of(f), 1 << DEPTH);
    cf_future_release(f);
    WAIT_UNTIL(count_named_threads(prefix) <= max_workers, 10);
    cf_executor_free(ex);
}

TEST_TIMEOUT(exchanging_divide_and_conquer_on_one_worker_completes, 60)
{
    exchanging_tree_completes(1, "dc1_");
}

TEST_TIMEOUT(exchanging_divide_and_conquer_on_two_workers_completes, 60)
{
    exchanging_tree_completes(2, "dc2_");
}

/* ------------------------------------------------------------------------ */
/* The limit                                                                */

typedef struct blocker {
    atomic_int arrived;
    cf_future *gate; /* bare, set by the test */
} blocker;

static void *task_block(void *arg, cf_call *call)
{
    (void)call;
    blocker *b = arg;
    atomic_fetch_add(&b->arrived, 1);
    void *v = NULL;
    return cf_future_result(b->gate, CF_FOREVER, &v) == CF_OK ? v : NULL;
}

TEST_TIMEOUT(compensating_threads_stop_at_max_compensating, 30)
{
    cf_executor *ex = compensating_pool(1, 2, "cap_");
    blocker b = {.gate = future_new()};
    cf_future *fs[6];
    for (int i = 0; i < 6; i++)
        fs[i] = submit(ex, task_block, &b);
    /* One worker and two compensating threads, all blocked. */
    WAIT_UNTIL(atomic_load(&b.arrived) == 3, 10);
    let_time_pass(0.2);
    ASSERT_EQ(atomic_load(&b.arrived), 3);
    ASSERT_EQ(count_named_threads("cap_"), 3);
    ASSERT_OK(cf_future_set_result(b.gate, (void *)5));
    for (int i = 0; i < 6; i++) {
        ASSERT_EQ(result_of(fs[i]), 5);
        cf_future_release(fs[i]);
    }
    WAIT_UNTIL(count_named_threads("cap_") == 1, 10);
    cf_future_release(b.gate);
    cf_executor_free(ex);
}

/* ------------------------------------------------------------------------ */
/* Two pools                                                                */

typedef struct crossed {
    cf_executor *p, *q;
    _Atomic(cf_future *) in_p, in_q; /* queued in each pool */
} crossed;

/* Queues a task in its own pool (behind itself: one worker), and waits
 * for the one the other side queued in the other pool. */
static void *task_cross(void *arg, cf_call *call, bool on_p)
{
    (void)call;
    crossed *c = arg;
    cf_future *mine = NULL;
    if (cf_executor_submit(on_p ? c->p : c->q, task_identity, (void *)3,
                           &mine) != CF_OK)
        return NULL;
    atomic_store(on_p ? &c->in_p : &c->in_q, mine);
    cf_future *theirs;
    while (!(theirs = atomic_load(on_p ? &c->in_q : &c->in_p)))
        harness_pause();
    void *v = NULL;
    cf_future_result(theirs, CF_FOREVER, &v);
    return v;
}

static void *task_cross_p(void *arg, cf_call *call)
{
    return task_cross(arg, call, true);
}

static void *task_cross_q(void *arg, cf_call *call)
{
    return task_cross(arg, call, false);
}

TEST_TIMEOUT(two_pools_waiting_for_each_others_queued_tasks_complete, 30)
{
    crossed c = {compensating_pool(1, 0, "crp_"),
                 compensating_pool(1, 0, "crq_"), NULL, NULL};
    cf_future *a = submit(c.p, task_cross_p, &c);
    cf_future *b = submit(c.q, task_cross_q, &c);
    ASSERT_EQ(result_of(a), 3);
    ASSERT_EQ(result_of(b), 3);
    cf_future_release(a);
    cf_future_release(b);
    cf_future_release(atomic_load(&c.in_p));
    cf_future_release(atomic_load(&c.in_q));
    cf_executor_free(c.p);
    cf_executor_free(c.q);
}
