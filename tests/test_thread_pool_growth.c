/* test_thread_pool_growth.c - when the thread pool starts a thread: a
 * burst of up to max_workers tasks runs at once even when idle threads
 * exist (a submit reserves the idle worker it counts on, as CPython's
 * idle semaphore does), while sequential submits keep reusing one. */
#define _GNU_SOURCE
#include "coretest.h"

/* A rendezvous of `n` tasks: each arrives and waits, up to a deadline, for
 * all of them. Tasks that cannot run at the same time time out. */
typedef struct rendezvous {
    pthread_mutex_t mutex;
    pthread_cond_t cond;
    int n, arrived;
} rendezvous;

static void rendezvous_init(rendezvous *r, int n)
{
    pthread_mutex_init(&r->mutex, NULL);
    pthread_cond_init(&r->cond, NULL);
    r->n = n;
    r->arrived = 0;
}

static void rendezvous_destroy(rendezvous *r)
{
    pthread_cond_destroy(&r->cond);
    pthread_mutex_destroy(&r->mutex);
}

/* Returns 1 if every party arrived within 5 seconds, else 0. */
static void *task_meet(void *arg, cf_call *call)
{
    (void)call;
    rendezvous *r = arg;
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 5;
    pthread_mutex_lock(&r->mutex);
    r->arrived++;
    pthread_cond_broadcast(&r->cond);
    int rc = 0;
    while (r->arrived < r->n && rc == 0)
        rc = pthread_cond_timedwait(&r->cond, &r->mutex, &deadline);
    bool met = r->arrived >= r->n;
    pthread_mutex_unlock(&r->mutex);
    return (void *)(intptr_t)met;
}

/* Runs one task to its end, leaving the pool with an idle thread. */
static void run_one(cf_executor *ex)
{
    cf_future *f = submit(ex, task_identity, NULL);
    result_of(f);
    cf_future_release(f);
}

TEST(burst_after_idle_runs_tasks_that_wait_for_each_other)
{
    cf_executor *ex = pool_new(2);
    run_one(ex); /* one thread, idle */
    rendezvous r;
    rendezvous_init(&r, 2);
    cf_future *a = submit(ex, task_meet, &r);
    cf_future *b = submit(ex, task_meet, &r);
    ASSERT_EQ(result_of(a), 1);
    ASSERT_EQ(result_of(b), 1);
    cf_future_release(a);
    cf_future_release(b);
    cf_executor_free(ex);
    rendezvous_destroy(&r);
}

TEST(short_task_does_not_wait_behind_a_long_one_after_idle)
{
    cf_executor *ex = pool_new(2);
    run_one(ex);
    latch l;
    latch_init(&l);
    cf_future *slow = submit(ex, task_gate, &l);
    cf_future *quick = submit(ex, task_identity, (void *)(intptr_t)7);
    /* `slow` cannot end before the latch opens: `quick` must not wait for
     * it. */
    void *v = NULL;
    int rc = cf_future_result(quick, 10.0, &v);
    latch_open(&l); /* before asserting: the pool must be able to end */
    ASSERT_OK(rc);
    ASSERT_EQ((intptr_t)v, 7);
    result_of(slow);
    cf_future_release(slow);
    cf_future_release(quick);
    cf_executor_free(ex);
    latch_destroy(&l);
}

TEST(bursts_of_every_size_run_at_once_whatever_is_idle)
{
    enum { MAX = 6 };
    cf_executor *ex = named_pool(MAX, "burst");
    /* Each burst finds the threads the bursts before it left idle. */
    static const int sizes[] = {1, 2, 1, 3, 2, 5, 4, 6, 1, 6, 3};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        burst_runs_at_once(ex, sizes[i]);
        ASSERT(count_named_threads("burst_") <= MAX);
    }
    cf_executor_free(ex);
}

TEST(sequential_submits_after_a_burst_start_no_thread)
{
    cf_executor *ex = named_pool(8, "seq");
    burst_runs_at_once(ex, 3);
    ASSERT_EQ(count_named_threads("seq_"), 3);
    for (int i = 0; i < 300; i++)
        run_one(ex);
    ASSERT_EQ(count_named_threads("seq_"), 3);
    cf_executor_free(ex);
}

TEST(sequential_submits_start_one_thread)
{
    cf_executor *ex = named_pool(8, "one");
    for (int i = 0; i < 300; i++)
        run_one(ex);
    ASSERT_EQ(count_named_threads("one_"), 1);
    cf_executor_free(ex);
}

/* Many threads submitting at once into a small, partly idle pool: every
 * task still ends and the pool never exceeds its size. */
typedef struct hammer {
    cf_executor *ex;
    atomic_int *ran;
} hammer;

static void *hammer_body(helper *h)
{
    hammer *hm = h->ctx;
    for (int i = 0; i < 2000; i++) {
        cf_future *f = submit(hm->ex, task_count, hm->ran);
        if (i % 7 == 0)
            result_of(f);
        cf_future_release(f);
    }
    return NULL;
}

TEST(concurrent_submitters_never_exceed_max_workers)
{
    cf_executor *ex = named_pool(3, "hammer");
    atomic_int ran = 0;
    hammer hm = {ex, &ran};
    helper hs[4];
    for (int i = 0; i < 4; i++)
        helper_start(&hs[i], hammer_body, &hm);
    for (int i = 0; i < 4; i++)
        helper_join(&hs[i]);
    ASSERT(count_named_threads("hammer_") <= 3);
    ASSERT_OK(cf_executor_shutdown(ex, true, false));
    ASSERT_EQ(atomic_load(&ran), 4 * 2000);
    cf_executor_free(ex);
}
