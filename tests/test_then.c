/* test_then.c - continuations: cf_future_then(), cf_future_then_always().
 *
 * Inputs are bare futures the test completes, or pool tasks held on a
 * latch, so every state (pending, running, done) is certain when the
 * continuation is attached or cancelled. Deep chains complete on a thread
 * with a small stack: a chain that recursed would overflow it.
 */
#define pool_new process_pool_new_for_test /* see test_completion_queue.c */
#include "procpool_test.h"
#undef pool_new

#include "core/core.h"
#include "coretest.h"

static atomic_int calls;

static void *add_one(void *arg, cf_call *call)
{
    (void)call;
    atomic_fetch_add(&calls, 1);
    return (void *)((intptr_t)arg + 1);
}

static _Thread_local int thread_marker;

/* Returns whether it ran on the thread that set thread_marker. */
static void *on_marked_thread(void *arg, cf_call *call)
{
    (void)arg;
    (void)call;
    return (void *)(intptr_t)(thread_marker == 1);
}

static cf_future *then(cf_future *f, cf_executor *ex, cf_fn fn)
{
    cf_future *d = NULL;
    ASSERT_OK(cf_future_then(f, ex, fn, &d));
    ASSERT(d != NULL);
    return d;
}

/* Runs `body(arg)` on a thread with a 256 KiB stack and waits for it. */
static void on_small_stack(void *(*body)(void *), void *arg)
{
    pthread_attr_t attr;
    pthread_t t;
    ASSERT_EQ(pthread_attr_init(&attr), 0);
    ASSERT_EQ(pthread_attr_setstacksize(&attr, 256 * 1024), 0);
    ASSERT_EQ(pthread_create(&t, &attr, body, arg), 0);
    ASSERT_EQ(pthread_join(t, NULL), 0);
    pthread_attr_destroy(&attr);
}

/* ------------------------------------------------------------------------ */
/* Values and threads                                                       */

TEST(inline_then_runs_in_the_completing_thread)
{
    cf_future *f = future_new();
    cf_future *d = then(f, NULL, on_marked_thread);
    ASSERT(!cf_future_done(d));
    thread_marker = 1;
    ASSERT_OK(cf_future_set_result(f, NULL));
    thread_marker = 0;
    ASSERT(cf_future_done(d)); /* before set_result returned */
    ASSERT_EQ(result_of(d), 1);
    cf_future_release(d);
    cf_future_release(f);
}

TEST(then_on_a_done_future_runs_during_the_call)
{
    cf_future *f = future_done_with((void *)41);
    thread_marker = 1;
    cf_future *d = then(f, NULL, add_one);
    thread_marker = 0;
    ASSERT(cf_future_done(d));
    ASSERT_EQ(result_of(d), 42);
    cf_future_release(d);
    cf_future_release(f);
}

TEST(then_on_a_thread_pool_runs_on_a_worker)
{
    cf_executor *ex = pool_new(2);
    cf_future *f = future_new();
    cf_future *d = then(f, ex, on_marked_thread);
    thread_marker = 1;
    ASSERT_OK(cf_future_set_result(f, NULL));
    thread_marker = 0;
    ASSERT_EQ(result_of(d), 0); /* not this thread */
    cf_future *e = then(d, ex, add_one);
    ASSERT_EQ(result_of(e), 1);
    cf_future_release(e);
    cf_future_release(d);
    cf_future_release(f);
    cf_executor_free(ex);
}

TEST_TIMEOUT(then_on_a_process_pool_sends_the_value, 60)
{
    cf_process_pool_options o = {.max_workers = 1};
    cf_executor *pp = NULL, *tp = pool_new(1);
    ASSERT_OK(cf_process_pool_new(&o, &pp));
    cf_future *f = submit(tp, task_identity, (void *)10);
    cf_future *d = then(f, pp, add_one); /* thread pool -> process pool */
    cf_future *e = then(d, tp, task_double); /* and back */
    ASSERT_EQ(result_of(e), 22);
    cf_future_release(e);
    cf_future_release(d);
    cf_future_release(f);
    cf_executor_free(pp);
    cf_executor_free(tp);
}

/* A done input and a pool: the continuation is submitted during the call,
 * with no op (then.c's then_done_now). */

TEST(then_on_a_done_input_on_a_pool_runs_on_a_worker_with_its_value)
{
    cf_executor *ex = pool_new(1);
    cf_future *f = future_done_with((void *)41);
    cf_future *d = then(f, ex, add_one);
    cf_future_release(f); /* the value needs nothing of it */
    ASSERT_EQ(result_of(d), 42);
    cf_future_release(d);
    thread_marker = 1;
    f = future_done_with(NULL);
    d = then(f, ex, on_marked_thread);
    thread_marker = 0;
    ASSERT_EQ(result_of(d), 0); /* not this thread */
    cf_future_release(d);
    cf_future_release(f);
    cf_executor_free(ex);
}

TEST(then_on_a_failed_done_input_on_a_pool_fails_during_the_call)
{
    cf_executor *ex = pool_new(1);
    atomic_store(&calls, 0);
    cf_future *f = future_new();
    ASSERT_OK(cf_future_set_exception(f, 9, "failed before"));
    cf_future *d = then(f, ex, add_one);
    ASSERT(cf_future_done(d));
    cf_error err;
    ASSERT_OK(cf_future_exception(d, 0, &err));
    ASSERT_EQ(err.code, 9);
    ASSERT_STR_EQ(err.message, "failed before");
    cf_future_release(d);
    cf_future_release(f);
    f = future_new();
    ASSERT(cf_future_cancel(f));
    d = then(f, ex, add_one);
    ASSERT(cf_future_cancelled(d));
    cf_future_release(d);
    cf_future_release(f);
    cf_executor_free(ex); /* waits: add_one would have run by now */
    ASSERT_EQ(atomic_load(&calls), 0);
}

static atomic_int owned_freed;

static void free_owned(void *value)
{
    (void)value;
    atomic_fetch_add(&owned_freed, 1);
}

/* Holds on its latch, then says whether the input's value still lives. */
static latch *owned_gate;

static void *value_alive_after_gate(void *arg, cf_call *call)
{
    (void)call;
    latch_wait(owned_gate);
    return (void *)(intptr_t)(arg == (void *)&owned_freed &&
                              atomic_load(&owned_freed) == 0);
}

TEST(then_on_a_done_input_keeps_an_owned_value_until_it_ran)
{
    cf_executor *ex = pool_new(1);
    latch gate;
    latch_init(&gate);
    owned_gate = &gate;
    atomic_store(&owned_freed, 0);
    cf_future *f = future_new();
    ASSERT_OK(cf_future_set_result_owned(f, &owned_freed, free_owned));
    cf_future *d = then(f, ex, value_alive_after_gate);
    cf_future_release(f); /* D keeps it */
    ASSERT_EQ(atomic_load(&owned_freed), 0);
    latch_open(&gate);
    ASSERT_EQ(result_of(d), 1);
    cf_future_release(d);
    cf_executor_free(ex);
    ASSERT_EQ(atomic_load(&owned_freed), 1);
    latch_destroy(&gate);
}

TEST(then_on_a_pending_input_keeps_an_owned_value_until_it_ran)
{
    cf_executor *ex = pool_new(1);
    latch gate;
    latch_init(&gate);
    owned_gate = &gate;
    atomic_store(&owned_freed, 0);
    cf_future *f = future_new();
    cf_future *d = then(f, ex, value_alive_after_gate);
    ASSERT_OK(cf_future_set_result_owned(f, &owned_freed, free_owned));
    cf_future_release(f); /* D keeps it while its task runs */
    ASSERT_EQ(atomic_load(&owned_freed), 0);
    latch_open(&gate);
    ASSERT_EQ(result_of(d), 1);
    cf_future_release(d);
    cf_executor_free(ex);
    ASSERT_EQ(atomic_load(&owned_freed), 1);
    latch_destroy(&gate);
}

static void *until_cancel_requested(void *arg, cf_call *call)
{
    (void)arg;
    while (!cf_call_cancel_requested(call))
        let_time_pass(0.001);
    return NULL;
}

TEST(then_on_a_done_input_gets_the_pools_task_timeout)
{
    cf_thread_pool_options o = {.max_workers = 1, .task_timeout = 0.05};
    cf_executor *ex = NULL;
    ASSERT_OK(cf_thread_pool_new(&o, &ex));
    cf_future *f = future_done_with(NULL);
    cf_future *d = then(f, ex, until_cancel_requested);
    ASSERT_CODE(cf_future_result(d, 30, NULL), CF_ETASK_TIMEOUT);
    cf_future_release(d);
    cf_future_release(f);
    cf_executor_free(ex);
}

/* ------------------------------------------------------------------------ */
/* Failure                                                                  */

TEST(failed_input_fails_the_continuation_without_running_it)
{
    atomic_store(&calls, 0);
    cf_future *f = future_new();
    cf_future *d = then(f, NULL, add_one);
    ASSERT_OK(cf_future_set_exception(f, 7, "bad input"));
    cf_error err;
    ASSERT_CODE(cf_future_result(d, 0, NULL), CF_ETASK);
    ASSERT_OK(cf_future_exception(d, 0, &err));
    ASSERT_EQ(err.code, 7);
    ASSERT_STR_EQ(err.message, "bad input");
    ASSERT_EQ(atomic_load(&calls), 0);
    cf_future_release(d);
    cf_future_release(f);
}

TEST(cancelled_input_cancels_the_continuation)
{
    atomic_store(&calls, 0);
    cf_executor *ex = pool_new(1);
    cf_future *f = future_new();
    cf_future *d = then(f, ex, add_one);
    ASSERT(cf_future_cancel(f));
    ASSERT(cf_future_cancelled(d));
    ASSERT_EQ(atomic_load(&calls), 0);
    cf_future_release(d);
    cf_future_release(f);
    cf_executor_free(ex);
}

static void *describe(cf_future *done, void *arg, cf_call *call)
{
    (void)arg;
    if (cf_future_cancelled(done))
        return (void *)-1;
    cf_error err;
    if (cf_future_exception(done, 0, &err) != CF_OK)
        return cf_fail(call, 99, "unexpected");
    if (err.code == 13)
        return cf_fail(call, 14, "still bad: %s", err.message);
    return (void *)(intptr_t)(err.code + 100 * (arg != NULL));
}

TEST(then_always_sees_every_outcome)
{
    cf_executor *ex = pool_new(1);
    cf_future *ok = future_done_with(NULL), *bad = future_new(),
              *worse = future_new(), *gone = future_new();
    ASSERT_OK(cf_future_set_exception(bad, 5, "five"));
    ASSERT_OK(cf_future_set_exception(worse, 13, "thirteen"));
    ASSERT(cf_future_cancel(gone));
    cf_future *d[4];
    ASSERT_OK(cf_future_then_always(ok, ex, describe, (void *)1, &d[0]));
    ASSERT_OK(cf_future_then_always(bad, NULL, describe, NULL, &d[1]));
    ASSERT_OK(cf_future_then_always(worse, ex, describe, NULL, &d[2]));
    ASSERT_OK(cf_future_then_always(gone, ex, describe, NULL, &d[3]));
    ASSERT_EQ(result_of(d[0]), 100); /* a recovered value */
    ASSERT_EQ(result_of(d[1]), 5);
    cf_error err;
    ASSERT_OK(cf_future_exception(d[2], CF_FOREVER, &err));
    ASSERT_EQ(err.code, 14);
    ASSERT_STR_EQ(err.message, "still bad: thirteen");
    ASSERT_EQ(result_of(d[3]), -1); /* ran although the input was cancelled */
    for (int i = 0; i < 4; i++)
        cf_future_release(d[i]);
    cf_future_release(ok);
    cf_future_release(bad);
    cf_future_release(worse);
    cf_future_release(gone);
    cf_executor_free(ex);
}

TEST_TIMEOUT(then_always_refuses_a_process_pool, 30)
{
    cf_process_pool_options o = {.max_workers = 1};
    cf_executor *pp = NULL;
    ASSERT_OK(cf_process_pool_new(&o, &pp));
    cf_future *f = future_new(), *d = NULL;
    ASSERT_CODE(cf_future_then_always(f, pp, describe, NULL, &d), CF_ENOTSUP);
    ASSERT(d == NULL);
    cf_future_release(f);
    cf_executor_free(pp);
}

TEST(executor_shut_down_before_the_input_is_done_fails_the_continuation)
{
    cf_executor *ex = pool_new(1);
    cf_future *f = future_new(), *d = then(f, ex, add_one), *e = NULL;
    ASSERT_OK(cf_executor_shutdown(ex, true, false));
    ASSERT_CODE(cf_future_then(f, ex, add_one, &e), CF_ESHUTDOWN);
    ASSERT_OK(cf_future_set_result(f, NULL));
    ASSERT_CODE(cf_future_result(d, CF_FOREVER, NULL), CF_ESHUTDOWN);
    cf_future_release(d);
    cf_future_release(f);
    cf_executor_free(ex);
}

TEST(bad_arguments_are_refused)
{
    cf_future *f = future_new(), *d = NULL;
    ASSERT_CODE(cf_future_then(NULL, NULL, add_one, &d), CF_EINVAL);
    ASSERT_CODE(cf_future_then(f, NULL, NULL, &d), CF_EINVAL);
    ASSERT_CODE(cf_future_then(f, NULL, add_one, NULL), CF_EINVAL);
    ASSERT_CODE(cf_future_then_always(f, NULL, NULL, NULL, &d), CF_EINVAL);
    ASSERT_CODE(cf_future_then_always(NULL, NULL, describe, NULL, &d),
                CF_EINVAL);
    ASSERT(d == NULL);
    cf_future_release(f);
}

/* ------------------------------------------------------------------------ */
/* Cancellation                                                             */

TEST(cancelling_a_continuation_cancels_its_only_pending_input)
{
    latch gate;
    latch_init(&gate);
    cf_executor *ex = pool_new(1);
    cf_future *busy = submit(ex, task_gate, &gate);
    cf_future *f = submit(ex, add_one, NULL); /* queued behind busy */
    cf_future *d = then(f, ex, add_one);
    ASSERT(cf_future_cancel(d));
    ASSERT(cf_future_cancelled(f));
    latch_open(&gate);
    ASSERT_EQ(result_of(busy), (intptr_t)&gate);
    cf_future_release(d);
    cf_future_release(f);
    cf_future_release(busy);
    cf_executor_free(ex);
    latch_destroy(&gate);
}

TEST(input_another_continuation_waits_on_is_not_cancelled)
{
    cf_future *f = future_new();
    cf_future *d1 = then(f, NULL, add_one), *d2 = then(f, NULL, add_one);
    ASSERT(cf_future_cancel(d1));
    ASSERT(!cf_future_done(f)); /* d2 still waits on it */
    ASSERT(cf_future_cancel(d2));
    ASSERT(cf_future_cancelled(f)); /* now nothing does */
    cf_future_release(d1);
    cf_future_release(d2);
    cf_future_release(f);
}

TEST(input_whose_continuation_finished_does_not_count)
{
    cf_future *f = future_new(), *g = future_new();
    cf_future *d1 = then(f, NULL, add_one);
    cf_future *any = NULL;
    cf_future *pair[2] = {f, g};
    ASSERT_OK(cf_when_any(pair, 2, &any));
    ASSERT_OK(cf_future_set_result(g, NULL)); /* any is done: it left f */
    ASSERT(cf_future_done(any));
    ASSERT(cf_future_cancel(d1));
    ASSERT(cf_future_cancelled(f));
    cf_future_release(any);
    cf_future_release(d1);
    cf_future_release(f);
    cf_future_release(g);
}

TEST(running_input_is_not_cancelled)
{
    latch gate;
    latch_init(&gate);
    atomic_store(&calls, 0);
    cf_executor *ex = pool_new(1);
    cf_future *f = submit(ex, task_gate, &gate);
    WAIT_UNTIL(cf_future_running(f), 10);
    cf_future *d = then(f, ex, add_one);
    ASSERT(cf_future_cancel(d));
    ASSERT(cf_future_running(f));
    latch_open(&gate);
    ASSERT_EQ(result_of(f), (intptr_t)&gate);
    ASSERT(cf_future_cancelled(d));
    cf_executor_free(ex);
    ASSERT_EQ(atomic_load(&calls), 0);
    cf_future_release(d);
    cf_future_release(f);
    latch_destroy(&gate);
}

TEST(cancelling_the_end_of_a_chain_cancels_the_chain)
{
    enum { N = 10 };
    cf_future *root = future_new(), *fs[N + 1];
    fs[0] = root;
    for (int i = 1; i <= N; i++)
        fs[i] = then(fs[i - 1], NULL, add_one);
    cf_future *side = then(fs[3], NULL, add_one); /* shares fs[0..3] */
    ASSERT(cf_future_cancel(fs[N]));
    for (int i = 4; i <= N; i++)
        ASSERT(cf_future_cancelled(fs[i]));
    for (int i = 0; i <= 3; i++)
        ASSERT(!cf_future_done(fs[i]));
    ASSERT(cf_future_cancel(side));
    for (int i = 0; i <= 3; i++)
        ASSERT(cf_future_cancelled(fs[i]));
    cf_future_release(side);
    for (int i = 0; i <= N; i++)
        cf_future_release(fs[i]);
}

typedef struct cancel_race {
    cf_future *_Atomic f; /* this round's input, published by the test */
    atomic_size_t round;  /* rounds the completer has joined */
    size_t n;
} cancel_race;

/* Spins until `*v` reaches `want`, yielding on a busy machine. */
static void spin_until(atomic_size_t *v, size_t want)
{
    for (unsigned i = 0; atomic_load(v) < want; i++)
        if (i > 64)
            cf__yield();
        else
            cf__cpu_relax();
}

/* Round i has three steps: the test arms it (3i-2), the completer joins
 * (3i-1) and completes the input while the test cancels the
 * continuation, then says it is done with the input (3i). */
static void *complete_inputs(helper *h)
{
    cancel_race *r = h->ctx;
    for (size_t i = 1; i <= r->n; i++) {
        spin_until(&r->round, 3 * i - 2);
        atomic_store(&r->round, 3 * i - 1);
        cf_future_set_result(atomic_load(&r->f), NULL); /* may lose */
        atomic_store(&r->round, 3 * i);
    }
    return NULL;
}

/* A continuation cancelled at the moment its input completes either runs
 * (and the cancel fails) or never runs (and is cancelled): never both,
 * never neither, and its future always ends. */
static void cancel_during_then(cf_executor *ex)
{
    cancel_race r = {.n = harness_scaled(20000, 500)};
    size_t ran = 0, cancelled = 0;
    helper h;
    helper_start(&h, complete_inputs, &r);
    for (size_t i = 1; i <= r.n; i++) {
        atomic_store(&calls, 0);
        cf_future *f = future_new(), *d = then(f, ex, add_one);
        atomic_store(&r.f, f);
        atomic_store(&r.round, 3 * i - 2);
        spin_until(&r.round, 3 * i - 1);
        for (unsigned k = 0; k < (i * 37) % 300; k++) /* vary the timing */
            cf__cpu_relax();
        bool was_cancelled = cf_future_cancel(d);
        int rc = cf_future_result(d, CF_FOREVER, NULL);
        if (was_cancelled) {
            ASSERT_CODE(rc, CF_ECANCELLED);
            cancelled++;
        } else {
            ASSERT_OK(rc);
            ran++;
        }
        ASSERT_EQ(atomic_load(&calls), was_cancelled ? 0 : 1);
        spin_until(&r.round, 3 * i);
        /* Completed, or cancelled first by the cancel of d. */
        ASSERT(cf_future_done(f));
        cf_future_release(d);
        cf_future_release(f);
    }
    helper_join(&h);
    printf("%zu ran, %zu cancelled\n", ran, cancelled);
}

TEST_TIMEOUT(cancel_during_inline_then_runs_it_once_or_never, 120)
{
    cancel_during_then(NULL);
}

TEST_TIMEOUT(cancel_during_pool_then_runs_it_once_or_never, 120)
{
    cf_executor *ex = pool_new(2);
    cancel_during_then(ex);
    cf_executor_free(ex);
}

/* The same with a fan-out: the input's continuations start as one series
 * (those bound for one pool are queued there together), and two of four
 * are cancelled while it starts them. Each runs or is cancelled, exactly
 * once. */
TEST_TIMEOUT(cancel_during_a_fan_out_runs_each_once_or_never, 120)
{
    enum { N = 4 };
    cf_executor *ex = pool_new(2);
    cancel_race r = {.n = harness_scaled(10000, 300)};
    size_t cancelled = 0;
    helper h;
    helper_start(&h, complete_inputs, &r);
    for (size_t i = 1; i <= r.n; i++) {
        atomic_store(&calls, 0);
        cf_future *f = future_new(), *d[N];
        for (int k = 0; k < N; k++)
            d[k] = then(f, ex, add_one);
        atomic_store(&r.f, f);
        atomic_store(&r.round, 3 * i - 2);
        spin_until(&r.round, 3 * i - 1);
        for (unsigned k = 0; k < (i * 37) % 300; k++) /* vary the timing */
            cf__cpu_relax();
        bool was_cancelled[N] = {false, cf_future_cancel(d[1]),
                                 cf_future_cancel(d[2]), false};
        int ran = 0;
        for (int k = 0; k < N; k++) {
            int rc = cf_future_result(d[k], CF_FOREVER, NULL);
            if (was_cancelled[k]) {
                ASSERT_CODE(rc, CF_ECANCELLED);
                cancelled++;
            } else {
                ASSERT_OK(rc);
                ran++;
            }
        }
        spin_until(&r.round, 3 * i);
        ASSERT_EQ(atomic_load(&calls), ran);
        for (int k = 0; k < N; k++)
            cf_future_release(d[k]);
        cf_future_release(f);
    }
    helper_join(&h);
    printf("%zu of %zu cancelled\n", cancelled, 2 * r.n);
    cf_executor_free(ex);
}

/* ------------------------------------------------------------------------ */
/* Fan-out: the continuations of one input                                  */

static cf_future *order_seen[64];
static atomic_int order_next;

/* Records which continuation runs, in order. */
static void *record_order(void *arg, cf_call *call)
{
    order_seen[atomic_fetch_add(&order_next, 1)] = call->future;
    return arg;
}

TEST(fan_out_to_one_worker_runs_in_the_order_attached)
{
    enum { N = 64 };
    cf_executor *ex = pool_new(1);
    cf_future *f = future_new(), *d[N];
    for (int i = 0; i < N; i++)
        d[i] = then(f, ex, record_order);
    ASSERT_OK(cf_future_set_result(f, NULL));
    for (int i = 0; i < N; i++)
        ASSERT_OK(cf_future_result(d[i], CF_FOREVER, NULL));
    ASSERT_EQ(atomic_load(&order_next), N);
    for (int i = 0; i < N; i++) {
        ASSERT_PTR_EQ(order_seen[i], d[i]);
        cf_future_release(d[i]);
    }
    cf_future_release(f);
    cf_executor_free(ex);
}

/* What ran, in order, in the completing thread: continuations (their
 * futures) and done-callbacks (their arguments). */
static const void *ran[8];
static int ran_n;

static void *record_inline(void *arg, cf_call *call)
{
    ran[ran_n++] = call->future;
    return arg;
}

static int record_callback(cf_future *f, void *arg)
{
    (void)f;
    ran[ran_n++] = arg;
    return 0;
}

static int marks[3];

/* On `f`: runs of continuations (inline, and one for `ex`) between
 * done-callbacks. ds[2] is the one for `ex`. */
static void attach_mixed(cf_future *f, cf_executor *ex, cf_future *ds[4])
{
    ASSERT_OK(cf_future_add_done_callback(f, record_callback, &marks[0]));
    ds[0] = then(f, NULL, record_inline);
    ds[1] = then(f, NULL, record_inline);
    ds[2] = then(f, ex, add_one);
    ASSERT_OK(cf_future_add_done_callback(f, record_callback, &marks[1]));
    ds[3] = then(f, NULL, record_inline);
    ASSERT_OK(cf_future_add_done_callback(f, record_callback, &marks[2]));
}

static void check_mixed(cf_future *ds[4])
{
    ASSERT_EQ(result_of(ds[0]), 41);
    ASSERT_EQ(result_of(ds[1]), 41);
    ASSERT_EQ(result_of(ds[2]), 42);
    ASSERT_EQ(result_of(ds[3]), 41);
    for (int i = 0; i < 4; i++)
        cf_future_release(ds[i]);
}

/* A run of continuations fires as one series, which ends where a
 * done-callback follows it on the list: everything runs once, in the
 * order added. */
TEST(continuations_between_done_callbacks_run_in_the_order_added)
{
    cf_executor *ex = pool_new(1);
    cf_future *f = future_new(), *ds[4];
    attach_mixed(f, ex, ds);
    ran_n = 0;
    ASSERT_OK(cf_future_set_result(f, (void *)41));
    ASSERT_EQ(ran_n, 6);
    const void *want[] = {&marks[0], ds[0], ds[1], &marks[1], ds[3],
                          &marks[2]};
    for (int i = 0; i < 6; i++)
        ASSERT_PTR_EQ(ran[i], want[i]);
    check_mixed(ds);
    cf_future_release(f);
    cf_executor_free(ex);
}

static void *same(void *arg, cf_call *call)
{
    (void)call;
    return arg;
}

/* The same list on a continuation that completes inside a chain: its
 * callbacks run as it completes, its series wait on the run list and
 * then run in the order added. */
TEST(continuations_between_done_callbacks_inside_a_chain)
{
    cf_executor *ex = pool_new(1);
    cf_future *f = future_new(), *g = then(f, NULL, same), *ds[4];
    attach_mixed(g, ex, ds);
    ran_n = 0;
    ASSERT_OK(cf_future_set_result(f, (void *)41));
    ASSERT_EQ(ran_n, 6);
    const void *want[] = {&marks[0], &marks[1], &marks[2],
                          ds[0],     ds[1],     ds[3]};
    for (int i = 0; i < 6; i++)
        ASSERT_PTR_EQ(ran[i], want[i]);
    check_mixed(ds);
    cf_future_release(g);
    cf_future_release(f);
    cf_executor_free(ex);
}

/* A fan-out from an input whose value has a destructor: every
 * continuation keeps the input, so the value lives until the last ran. */
TEST(fan_out_keeps_an_owned_value_until_every_continuation_ran)
{
    enum { N = 3 };
    cf_executor *ex = pool_new(2);
    latch gate;
    latch_init(&gate);
    owned_gate = &gate;
    atomic_store(&owned_freed, 0);
    cf_future *f = future_new(), *d[N];
    for (int i = 0; i < N; i++)
        d[i] = then(f, ex, value_alive_after_gate);
    ASSERT_OK(cf_future_set_result_owned(f, &owned_freed, free_owned));
    cf_future_release(f); /* each D keeps it */
    ASSERT_EQ(atomic_load(&owned_freed), 0);
    latch_open(&gate);
    for (int i = 0; i < N; i++) {
        ASSERT_EQ(result_of(d[i]), 1);
        cf_future_release(d[i]);
    }
    cf_executor_free(ex);
    ASSERT_EQ(atomic_load(&owned_freed), 1);
    latch_destroy(&gate);
}

static cf_future *first_sibling;

/* An inline continuation that waits for a sibling bound for a pool,
 * attached before it. */
static void *wait_for_first_sibling(void *arg, cf_call *call)
{
    (void)arg;
    (void)call;
    return (void *)(result_of(first_sibling) + 1);
}

/* Continuations for two pools and inline ones, interleaved: each runs
 * where it should, with the value; the inline ones run before the
 * completing call returns, and one of them may wait for a sibling bound
 * for a pool (which is queued before any inline one runs). */
TEST_TIMEOUT(fan_out_mixing_pools_and_inline_continuations, 30)
{
    cf_executor *a = pool_new(1), *b = pool_new(1);
    cf_future *f = future_new();
    cf_future *a1 = then(f, a, add_one), *a2 = then(f, a, on_marked_thread);
    first_sibling = a1;
    cf_future *i1 = then(f, NULL, wait_for_first_sibling);
    cf_future *b1 = then(f, b, add_one), *a3 = then(f, a, add_one);
    cf_future *i2 = then(f, NULL, on_marked_thread);
    cf_future *b2 = then(f, b, add_one);
    thread_marker = 1;
    ASSERT_OK(cf_future_set_result(f, (void *)41));
    thread_marker = 0;
    ASSERT(cf_future_done(i1) && cf_future_done(i2));
    ASSERT_EQ(result_of(i1), 43);
    ASSERT_EQ(result_of(i2), 1);  /* here */
    ASSERT_EQ(result_of(a2), 0);  /* on a worker */
    ASSERT_EQ(result_of(a1), 42);
    ASSERT_EQ(result_of(a3), 42);
    ASSERT_EQ(result_of(b1), 42);
    ASSERT_EQ(result_of(b2), 42);
    cf_future *all[] = {a1, a2, i1, b1, a3, i2, b2, f};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        cf_future_release(all[i]);
    cf_executor_free(a);
    cf_executor_free(b);
}

static int failing_initializer(void *arg)
{
    (void)arg;
    return 7;
}

/* A broken pool refuses the fan-out's chain as a whole: every
 * continuation fails as a refused submit does. */
TEST(fan_out_to_a_broken_pool_fails_every_continuation)
{
    cf_thread_pool_options o = {.max_workers = 1,
                                .initializer = failing_initializer};
    cf_executor *ex;
    ASSERT_OK(cf_thread_pool_new(&o, &ex));
    cf_future *probe = submit(ex, task_identity, NULL);
    ASSERT_CODE(cf_future_result(probe, 10, NULL), CF_EBROKEN_THREAD_POOL);
    cf_future *f = future_new(), *d[3];
    for (int i = 0; i < 3; i++)
        d[i] = then(f, ex, add_one);
    ASSERT_OK(cf_future_set_result(f, NULL));
    for (int i = 0; i < 3; i++) {
        ASSERT_CODE(cf_future_result(d[i], 10, NULL), CF_EBROKEN_THREAD_POOL);
        cf_future_release(d[i]);
    }
    cf_future_release(probe);
    cf_future_release(f);
    cf_executor_free(ex);
}

static void shut_down_inside_the_fan_out(cf_executor *ex)
{
    atomic_store(&cf__thread_pool_before_grow, NULL); /* once */
    ASSERT_OK(cf_executor_shutdown(ex, true, false));
}

/* A pool shut down while the fan-out's chain is queued, before the pool's
 * first worker could start: the shutdown saw no worker to wait for, so the
 * whole chain is withdrawn and every continuation fails with
 * CF_ESHUTDOWN, none left queued with nothing to run it. The hook runs the
 * shutdown inside that window. */
TEST(fan_out_shut_down_before_the_first_worker_starts_fails_all)
{
    cf_executor *ex = pool_new(2);
    cf_future *f = future_new(), *d[3];
    for (int i = 0; i < 3; i++)
        d[i] = then(f, ex, add_one);
    atomic_store(&cf__thread_pool_before_grow, shut_down_inside_the_fan_out);
    ASSERT_OK(cf_future_set_result(f, NULL));
    ASSERT(atomic_load(&cf__thread_pool_before_grow) == NULL); /* it ran */
    for (int i = 0; i < 3; i++) {
        ASSERT_CODE(cf_future_result(d[i], 10, NULL), CF_ESHUTDOWN);
        cf_future_release(d[i]);
    }
    cf_future_release(f);
    cf_executor_free(ex);
}

/* ------------------------------------------------------------------------ */
/* Deep chains                                                              */

typedef struct chain {
    cf_future *root, *end;
    size_t n;
} chain;

/* A chain of n continuations of `fn` on a bare root; only the root and
 * the end are kept. */
static chain chain_new(size_t n, cf_executor *ex)
{
    chain c = {.root = future_new(), .n = n};
    cf_future *prev = cf_future_retain(c.root);
    for (size_t i = 0; i < n; i++) {
        cf_future *next = then(prev, ex, add_one);
        cf_future_release(prev); /* the continuation keeps it */
        prev = next;
    }
    c.end = prev;
    return c;
}

static void *complete_root(void *arg)
{
    ASSERT_OK(cf_future_set_result(((chain *)arg)->root, NULL));
    return NULL;
}

static void *cancel_end(void *arg)
{
    ASSERT(cf_future_cancel(((chain *)arg)->end));
    return NULL;
}

TEST_TIMEOUT(chain_of_100k_inline_continuations_runs_in_constant_stack, 60)
{
    chain c = chain_new(100000, NULL);
    on_small_stack(complete_root, &c);
    ASSERT_EQ(result_of(c.end), 100000);
    cf_future_release(c.end);
    cf_future_release(c.root);
}

TEST_TIMEOUT(chain_of_100k_pool_continuations_completes, 60)
{
    cf_executor *ex = pool_new(2);
    chain c = chain_new(100000, ex);
    on_small_stack(complete_root, &c);
    ASSERT_EQ(result_of(c.end), 100000);
    cf_future_release(c.end);
    cf_future_release(c.root);
    cf_executor_free(ex);
}

TEST_TIMEOUT(cancelling_a_chain_of_100k_runs_in_constant_stack, 60)
{
    chain c = chain_new(100000, NULL);
    on_small_stack(cancel_end, &c);
    ASSERT(cf_future_cancelled(c.root));
    cf_future_release(c.end);
    cf_future_release(c.root);
}

TEST_TIMEOUT(failure_travels_down_a_chain_of_100k, 60)
{
    chain c = chain_new(100000, NULL);
    ASSERT_OK(cf_future_set_exception(c.root, 3, "at the root"));
    cf_error err;
    ASSERT_OK(cf_future_exception(c.end, 0, &err));
    ASSERT_EQ(err.code, 3);
    ASSERT_STR_EQ(err.message, "at the root");
    cf_future_release(c.end);
    cf_future_release(c.root);
}

TEST(chain_released_before_it_runs_is_freed_when_it_ends)
{
    chain c = chain_new(1000, NULL);
    cf_future_release(c.end); /* nobody holds the end */
    ASSERT_OK(cf_future_set_result(c.root, NULL));
    cf_future_release(c.root); /* ASan and valgrind see any leak */
}

/* A bare future under the stdlib's notify protocol (the Python binding's
 * Future()) is done for its callbacks once cancelled, before any
 * set_running_or_notify_cancel(): its continuations follow at once, and a
 * cancel propagated to it leaves it for its owner to notify. */
TEST(continuations_follow_notify_protocol_futures)
{
    cf_future *f = future_new(), *g = future_new();
    cf__future_use_notify_protocol(f);
    cf__future_use_notify_protocol(g);
    cf_future *d = then(f, NULL, add_one), *e = then(g, NULL, add_one);
    ASSERT(cf_future_cancel(f));
    ASSERT(cf_future_cancelled(d));
    ASSERT(cf_future_cancel(e)); /* nothing else waits on g */
    ASSERT(cf_future_cancelled(g));
    ASSERT_CODE(cf_future_set_running_or_notify_cancel(g), CF_ECANCELLED);
    cf_future_release(d);
    cf_future_release(e);
    cf_future_release(f);
    cf_future_release(g);
}
