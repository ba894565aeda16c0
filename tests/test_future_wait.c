/* test_future_wait.c - how a single-future wait spins (future_wait.c):
 * a waiter on a future whose completer is a polling thread of this
 * process (cf__future_set_completer_polls, the MPI executor's) gives its
 * CPU away from the first turn of its spin, instead of pausing on it for
 * CF__WAIT_SPIN_NS first.
 *
 * The test program defines sched_yield() (which cf__yield() calls), so a
 * yield is seen where it happens, on the waiting thread, with no second
 * thread and no CPU to share: when a test arms it, the waiter's yield
 * notes the time and completes the future, as the polling thread would
 * once it got the CPU. A timing test between two threads pinned to one
 * CPU was tried first: a CPU-bound process landing on that CPU made its
 * yielded turns last milliseconds. */
#define _GNU_SOURCE
#include "coretest.h"

#include <sched.h>

#include "core/core.h"

/* Armed by a test on its own thread: the future its next yield completes
 * and when that yield came. */
static _Thread_local cf_future *yield_completes;
static _Thread_local int64_t yielded_at;

int sched_yield(void)
{
    cf_future *f = yield_completes;
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
