/* test_notify_protocol.c - a cancelled future under the stdlib's notify
 * protocol (cf__future_use_notify_protocol, for the Python binding's bare
 * Future()) against the default, where a cancel is done for everyone.
 *
 * CPython (Lib/concurrent/futures/_base.py): cancel() makes a pending
 * future CANCELLED, wakes result() and runs the done-callbacks; wait() and
 * as_completed() count only CANCELLED_AND_NOTIFIED and FINISHED, which
 * set_running_or_notify_cancel() reaches and announces to their waiters. */
#define _GNU_SOURCE
#include "coretest.h"

#include "core/core.h"

static cf_future *protocol_future(void)
{
    cf_future *f = future_new();
    cf__future_use_notify_protocol(f);
    return f;
}

/* Done for cf_wait with a poll: FIRST_COMPLETED and ALL_COMPLETED, which
 * take different paths (nodes, and waiting for each in turn). */
static bool wait_counts_done(cf_future *f)
{
    cf_future *fs[1] = {f};
    size_t first = 0, all = 0;
    ASSERT_OK(cf_wait(fs, 1, 0, CF_FIRST_COMPLETED, NULL, &first, NULL, NULL));
    ASSERT_OK(cf_wait(fs, 1, 0, CF_ALL_COMPLETED, NULL, &all, NULL, NULL));
    ASSERT_EQ(first, all);
    return first == 1;
}

/* Done for a new as_completed iterator, polled. */
static bool as_completed_counts_done(cf_future *f)
{
    cf_as_completed *it = NULL;
    ASSERT_OK(cf_as_completed_new(&f, 1, 0, &it));
    cf_future *got = NULL;
    int rc = cf_as_completed_next(it, &got);
    cf_as_completed_free(it);
    if (rc == CF_OK) {
        ASSERT_PTR_EQ(got, f);
        cf_future_release(got);
        return true;
    }
    ASSERT_CODE(rc, CF_ETIMEDOUT);
    return false;
}

static int count_callback(cf_future *f, void *arg)
{
    (void)f;
    atomic_fetch_add((atomic_int *)arg, 1);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Under the protocol                                                       */

TEST(protocol_cancel_is_done_for_its_owner_at_once)
{
    cf_future *f = protocol_future();
    atomic_int calls = 0;
    ASSERT_OK(cf_future_add_done_callback(f, count_callback, &calls));
    ASSERT(cf_future_cancel(f));
    ASSERT(cf_future_cancelled(f));
    ASSERT(cf_future_done(f));
    ASSERT(!cf_future_running(f));
    ASSERT_EQ(atomic_load(&calls), 1); /* callbacks run at the cancel */
    ASSERT_CODE(cf_future_result(f, CF_FOREVER, NULL), CF_ECANCELLED);
    cf_error e;
    ASSERT_CODE(cf_future_exception(f, CF_FOREVER, &e), CF_ECANCELLED);
    /* A callback added now runs at once, as for any done future. */
    ASSERT_OK(cf_future_add_done_callback(f, count_callback, &calls));
    ASSERT_EQ(atomic_load(&calls), 2);
    ASSERT(cf_future_cancel(f)); /* idempotent */
    ASSERT_CODE(cf_future_set_result(f, NULL), CF_ESTATE);
    ASSERT_CODE(cf_future_set_exception(f, 1, NULL), CF_ESTATE);
    cf_future_release(f);
}

TEST(protocol_cancel_is_not_done_for_wait_until_notified)
{
    cf_future *f = protocol_future();
    ASSERT(cf_future_cancel(f));
    ASSERT(!wait_counts_done(f));
    ASSERT(!as_completed_counts_done(f));
    ASSERT_CODE(cf_future_set_running_or_notify_cancel(f), CF_ECANCELLED);
    ASSERT(wait_counts_done(f));
    ASSERT(as_completed_counts_done(f));
    ASSERT(cf_future_cancelled(f));
    ASSERT_CODE(cf_future_set_running_or_notify_cancel(f), CF_ESTATE);
    cf_future_release(f);
}

static void *result_body(helper *h)
{
    return (void *)(intptr_t)cf_future_result(h->ctx, CF_FOREVER, NULL);
}

TEST(protocol_cancel_wakes_a_blocked_result)
{
    cf_future *f = protocol_future();
    helper h;
    helper_start(&h, result_body, f);
    WAIT_BLOCKED(atomic_load(&h.tid));
    ASSERT(cf_future_cancel(f));
    ASSERT_CODE((int)(intptr_t)helper_join(&h), CF_ECANCELLED);
    cf_future_release(f);
}

typedef struct blocked_wait {
    cf_future *f;
    cf_return_when when;
    atomic_int returned;
    size_t n_done;
} blocked_wait;

static void *wait_body(helper *h)
{
    blocked_wait *b = h->ctx;
    cf_future *fs[1] = {b->f};
    ASSERT_OK(cf_wait(fs, 1, CF_FOREVER, b->when, NULL, &b->n_done, NULL,
                      NULL));
    atomic_store(&b->returned, 1);
    return NULL;
}

static void blocked_wait_wakes_on_notify_only(cf_return_when when)
{
    blocked_wait b = {.f = protocol_future(), .when = when};
    helper h;
    helper_start(&h, wait_body, &b);
    WAIT_BLOCKED(atomic_load(&h.tid));
    ASSERT(cf_future_cancel(b.f));
    /* The cancel did not count: a second wait with a limit agrees. */
    ASSERT(!wait_counts_done(b.f));
    ASSERT_EQ(atomic_load(&b.returned), 0);
    ASSERT_CODE(cf_future_set_running_or_notify_cancel(b.f), CF_ECANCELLED);
    helper_join(&h);
    ASSERT_EQ(b.n_done, 1);
    cf_future_release(b.f);
}

TEST(protocol_notify_wakes_a_blocked_wait_first_completed)
{
    blocked_wait_wakes_on_notify_only(CF_FIRST_COMPLETED);
}

TEST(protocol_notify_wakes_a_blocked_wait_all_completed)
{
    blocked_wait_wakes_on_notify_only(CF_ALL_COMPLETED);
}

static void *as_completed_body(helper *h)
{
    cf_as_completed *it = h->ctx;
    cf_future *got = NULL;
    int rc = cf_as_completed_next(it, &got);
    cf_future_release(got);
    return (void *)(intptr_t)rc;
}

TEST(protocol_notify_wakes_a_blocked_as_completed)
{
    cf_future *f = protocol_future();
    cf_as_completed *it = NULL;
    ASSERT_OK(cf_as_completed_new(&f, 1, CF_FOREVER, &it));
    helper h;
    helper_start(&h, as_completed_body, it);
    WAIT_BLOCKED(atomic_load(&h.tid));
    ASSERT(cf_future_cancel(f));
    ASSERT(!as_completed_counts_done(f));
    ASSERT_CODE(cf_future_set_running_or_notify_cancel(f), CF_ECANCELLED);
    ASSERT_OK((int)(intptr_t)helper_join(&h));
    cf_as_completed_free(it);
    cf_future_release(f);
}

TEST(protocol_completion_queue_reports_the_future_once_notified)
{
    cf_future *f = protocol_future();
    cf_completion_queue *q = NULL;
    ASSERT_OK(cf_completion_queue_new(&q));
    ASSERT_OK(cf_completion_queue_add(q, f));
    ASSERT(cf_future_cancel(f));
    cf_future *out[2];
    size_t n = 9;
    ASSERT_OK(cf_completion_queue_drain(q, out, 2, &n));
    ASSERT_EQ(n, 0);
    ASSERT_CODE(cf_future_set_running_or_notify_cancel(f), CF_ECANCELLED);
    ASSERT_OK(cf_completion_queue_drain(q, out, 2, &n));
    ASSERT_EQ(n, 1);
    ASSERT_PTR_EQ(out[0], f);
    cf_future_release(out[0]);
    cf_completion_queue_free(q);
    cf_future_release(f);
}

TEST(protocol_future_released_unnotified_leaks_nothing)
{
    cf_future *f = protocol_future();
    atomic_int calls = 0;
    ASSERT_OK(cf_future_add_done_callback(f, count_callback, &calls));
    cf_as_completed *it = NULL;
    ASSERT_OK(cf_as_completed_new(&f, 1, 0, &it)); /* a node stays on f */
    ASSERT(cf_future_cancel(f));
    cf_as_completed_free(it);
    cf_future_release(f);
    ASSERT_EQ(atomic_load(&calls), 1);
}

TEST(protocol_future_runs_and_finishes_like_any_other)
{
    cf_future *f = protocol_future();
    ASSERT_OK(cf_future_set_running_or_notify_cancel(f));
    ASSERT(!cf_future_cancel(f));
    ASSERT_OK(cf_future_set_result(f, (void *)(intptr_t)5));
    ASSERT(wait_counts_done(f));
    ASSERT_EQ(result_of(f), 5);
    cf_future_release(f);
}

/* ------------------------------------------------------------------------ */
/* Without it (every executor's futures, and cf_future_new's)               */

TEST(default_cancel_is_done_for_every_observer_at_once)
{
    cf_future *f = future_new();
    ASSERT(cf_future_cancel(f));
    ASSERT(cf_future_done(f));
    ASSERT(wait_counts_done(f));
    ASSERT(as_completed_counts_done(f));
    ASSERT_CODE(cf_future_set_running_or_notify_cancel(f), CF_ECANCELLED);
    ASSERT(wait_counts_done(f));
    cf_future_release(f);
}

TEST(default_cancel_wakes_a_blocked_wait)
{
    blocked_wait b = {.f = future_new(), .when = CF_ALL_COMPLETED};
    helper h;
    helper_start(&h, wait_body, &b);
    WAIT_BLOCKED(atomic_load(&h.tid));
    ASSERT(cf_future_cancel(b.f));
    helper_join(&h);
    ASSERT_EQ(b.n_done, 1);
    cf_future_release(b.f);
}

TEST(executor_futures_are_done_for_wait_at_cancel)
{
    cf_executor *ex = pool_new(1);
    latch l;
    latch_init(&l);
    cf_future *busy = submit(ex, task_gate, &l);
    cf_future *queued = submit(ex, task_identity, NULL);
    ASSERT(cf_future_cancel(queued));
    ASSERT(wait_counts_done(queued)); /* before any worker reaches it */
    latch_open(&l);
    result_of(busy);
    cf_future_release(busy);
    cf_future_release(queued);
    cf_executor_free(ex);
    latch_destroy(&l);
}
