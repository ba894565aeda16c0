/* test_future_wait.c - how waits spin (future_wait.c): a waiter on a
 * future whose completer is a polling thread of this process
 * (cf__future_set_completer_polls, the MPI executor's) gives its CPU away
 * from the first turn of its spin, and at each turn, instead of pausing
 * on it for CF__WAIT_SPIN_NS first; so do cf_wait and as_completed over
 * such futures, and waiters on a continuation or combinator of one.
 *
 * The test program defines sched_yield() (which cf__yield() calls), so a
 * yield is seen where it happens, on the waiting thread, with no second
 * thread and no CPU to share: when a test arms it, the waiter's yield
 * notes the time and completes the future, as the polling thread would
 * once it got the CPU. A timing test between two threads pinned to one
 * CPU was tried first: a CPU-bound process landing on that CPU made its
 * yielded turns last milliseconds.
 *
 * The tests of the waits on many futures and of continuations take no
 * time at all: the future is completed at the waiter's second yield. A
 * pausing spin yields once at most (past its budget, platform.h's polite
 * spin), then sleeps until the wait's limit, so without the yielding
 * spin they fail by that limit. While they count, the armed yields give
 * nothing away, so that a loaded machine cannot stretch the turns past
 * the spin's budget. */
#define _GNU_SOURCE
#include "coretest.h"

#include <sched.h>

#include "core/core.h"

/* Armed by a test on its own thread: the future a yield completes, how
 * many more yields come before that one (0: the next, which also gives
 * the CPU away), and when it came. */
static _Thread_local cf_future *yield_completes;
static _Thread_local int yields_before;
static _Thread_local int64_t yielded_at;

int sched_yield(void)
{
    cf_future *f = yield_completes;
    if (f && yields_before > 0) {
        yields_before--;
        return 0;
    }
    if (f) {
        yield_completes = NULL;
        yielded_at = cf__now_ns();
        ASSERT_OK(cf_future_set_running_or_notify_cancel(f));
        ASSERT_OK(cf_future_set_result(f, (void *)1));
    }
    return (int)syscall(SYS_sched_yield);
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

TEST(waiter_on_a_polled_future_yields_from_the_start)
{
    enum { ROUNDS = 21 };
    int64_t delay[ROUNDS];
    for (int i = 0; i < ROUNDS; i++) {
        cf_future *f = future_new();
        ASSERT(cf__future_set_completer_polls(f));
        yield_completes = f;
        int64_t t0 = cf__now_ns();
        void *v = NULL;
        /* A waiter that never yields sleeps until this limit. */
        ASSERT_OK(cf_future_result(f, 10 * harness_slowdown(), &v));
        ASSERT_PTR_EQ(v, (void *)1);
        ASSERT(yield_completes == NULL); /* done by the yield, no sleep */
        delay[i] = yielded_at - t0;
        cf_future_release(f);
    }
    /* A pausing spin yields only past CF__WAIT_SPIN_NS (platform.h's
     * polite spin), every round; this one at its first turn (0.1 us in a
     * plain build). The median ignores a round in which the thread was
     * preempted; a slowed build (sanitizers, valgrind) gets more time. */
    qsort(delay, ROUNDS, sizeof delay[0], cmp_i64);
    printf("first yield after %.2f us (median of %d)\n",
           (double)delay[ROUNDS / 2] / 1e3, ROUNDS);
    ASSERT(delay[ROUNDS / 2] < CF__WAIT_SPIN_NS / 2 * harness_slowdown());
}

/* An unmarked future's waiter still pauses first: a pool's worker is not
 * helped by the CPU the waiter would give away. */
TEST(waiter_on_an_unmarked_future_pauses_before_it_yields)
{
    cf_future *f = future_new();
    yield_completes = f;
    int64_t t0 = cf__now_ns();
    void *v = NULL;
    ASSERT_OK(cf_future_result(f, 10 * harness_slowdown(), &v));
    ASSERT(yield_completes == NULL);
    ASSERT(yielded_at - t0 >= CF__WAIT_SPIN_NS);
    cf_future_release(f);
}

/* The mark is a plain field that waiters read without a lock: it is only
 * written while the caller holds the only reference. */
TEST(completer_polls_marks_only_an_unshared_future)
{
    cf_future *f = future_new();
    cf_future *shared = cf_future_retain(f);
    ASSERT(!cf__future_set_completer_polls(f));
    ASSERT(!f->completer_polls);
    cf_future_release(shared);
    ASSERT(cf__future_set_completer_polls(f));
    ASSERT(f->completer_polls);
    cf_future_release(f);
}

/* ------------------------------------------------------------------------ */
/* Waits on many futures, and on what follows a polled one                  */

/* How long a wait in the tests below may take: a waiter that does not
 * yield at each turn sleeps until then. */
static double wait_limit(void)
{
    return 0.2 * harness_slowdown();
}

static cf_future *polled_future(void)
{
    cf_future *f = future_new();
    ASSERT(cf__future_set_completer_polls(f));
    return f;
}

/* Arms this thread's yields: the second from now completes `f`. */
static void complete_at_second_yield(cf_future *f)
{
    yields_before = 1;
    yield_completes = f;
}

/* The second yield does not come if more than the spin's budget passes
 * between the two: this thread preempted, or, in the first try of a
 * process, its first run of that code (page faults; 1 in 10 first tries
 * under ASan at load 10, 0 of the second tries; valgrind translates the
 * code then). Not in five tries in a row. */
enum { TRIES = 5 };

/* An unmarked future beside the marked one: some of the futures waited on
 * poll. */
TEST(wait_first_completed_yields_at_each_turn_on_a_polled_future)
{
    bool done = false;
    for (int t = 0; t < TRIES && !done; t++) {
        cf_future *fs[] = {future_new(), polled_future()};
        complete_at_second_yield(fs[1]);
        cf_future *d[2];
        size_t nd = 0;
        ASSERT_OK(cf_wait(fs, 2, wait_limit(), CF_FIRST_COMPLETED, d, &nd,
                          NULL, NULL));
        done = nd == 1 && d[0] == fs[1];
        yield_completes = NULL;
        cf_future_release(fs[0]);
        cf_future_release(fs[1]);
    }
    ASSERT(done);
}

TEST(as_completed_yields_at_each_turn_on_a_polled_future)
{
    bool done = false;
    for (int t = 0; t < TRIES && !done; t++) {
        cf_future *fs[] = {future_new(), polled_future()};
        cf_as_completed *it;
        ASSERT_OK(cf_as_completed_new(fs, 2, wait_limit(), &it));
        complete_at_second_yield(fs[1]);
        cf_future *f = NULL;
        int rc = cf_as_completed_next(it, &f);
        done = rc == CF_OK && f == fs[1];
        if (rc == CF_OK)
            cf_future_release(f);
        else
            ASSERT_EQ(rc, CF_ETIMEDOUT);
        yield_completes = NULL;
        cf_as_completed_free(it);
        cf_future_release(fs[0]);
        cf_future_release(fs[1]);
    }
    ASSERT(done);
}

static void *plus_one(void *arg, cf_call *call)
{
    (void)call;
    return (void *)((intptr_t)arg + 1);
}

/* Cancelled (a try that timed out): NULL. */
static void *done_plus_one(cf_future *input, void *arg, cf_call *call)
{
    (void)arg;
    void *v = NULL;
    if (cf_future_result(input, 0, &v) != CF_OK)
        return NULL;
    return plus_one(v, call);
}

/* Makes the future that follows `f` (polled): 0 then, 1 then_always,
 * 2 when_all, 3 when_any (with an unmarked input that never ends). */
static cf_future *follow(cf_future *f, int how, cf_future *other)
{
    cf_future *d = NULL;
    cf_future *fs[] = {other, f};
    switch (how) {
    case 0:
        ASSERT_OK(cf_future_then(f, NULL, plus_one, &d));
        break;
    case 1:
        ASSERT_OK(cf_future_then_always(f, NULL, done_plus_one, NULL, &d));
        break;
    case 2:
        ASSERT_OK(cf_when_all(fs + 1, 1, &d));
        break;
    default:
        ASSERT_OK(cf_when_any(fs, 2, &d));
        break;
    }
    return d;
}

/* A waiter on what follows a polled future: true if it was done by the
 * waiter's second yield, within the wait's limit. */
static bool follower_done_by_yields(int how)
{
    cf_future *f = polled_future(), *other = future_new();
    cf_future *d = follow(f, how, other);
    complete_at_second_yield(f);
    void *v = NULL;
    int rc = cf_future_result(d, wait_limit(), &v);
    if (rc != CF_OK)
        ASSERT_EQ(rc, CF_ETIMEDOUT);
    else if (how <= 1)
        ASSERT_PTR_EQ(v, (void *)2);
    yield_completes = NULL;
    /* Not done by then, `f` still ends, so that what follows it ends too
     * and frees itself. */
    (void)cf_future_cancel(f);
    cf_future_release(d);
    ASSERT(cf_future_cancel(other));
    cf_future_release(other);
    cf_future_release(f);
    return rc == CF_OK;
}

static void follower_yields(int how)
{
    bool done = false;
    for (int t = 0; t < TRIES && !done; t++)
        done = follower_done_by_yields(how);
    ASSERT(done);
}

TEST(then_of_a_polled_future_is_waited_on_yielding)
{
    follower_yields(0);
}

TEST(then_always_of_a_polled_future_is_waited_on_yielding)
{
    follower_yields(1);
}

TEST(when_all_of_a_polled_future_is_waited_on_yielding)
{
    follower_yields(2);
}

TEST(when_any_of_a_polled_future_is_waited_on_yielding)
{
    follower_yields(3);
}
