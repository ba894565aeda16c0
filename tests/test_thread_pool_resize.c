/* test_thread_pool_resize.c - cf_executor_set_max_workers() on a thread
 * pool: up, threads start for queued work; down, idle threads exit at
 * once and busy ones after their task; nothing is lost or run twice, and
 * a burst of up to max_workers tasks still runs at once after any resize.
 */
#define _GNU_SOURCE
#include <math.h>

#include "coretest.h"
#include "core/core.h"

TEST(growing_starts_threads_for_queued_work)
{
    cf_executor *ex = named_pool(1, "grow");
    latch l;
    latch_init(&l);
    cf_future *fs[4];
    for (int i = 0; i < 4; i++)
        fs[i] = submit(ex, task_gate, &l);
    latch_wait_arrived(&l, 1); /* one runs, three wait in the queue */
    ASSERT_OK(cf_executor_set_max_workers(ex, 4));
    latch_wait_arrived(&l, 4); /* the three queued start without a submit */
    ASSERT_EQ(count_named_threads("grow_"), 4);
    latch_open(&l);
    for (int i = 0; i < 4; i++) {
        result_of(fs[i]);
        cf_future_release(fs[i]);
    }
    cf_executor_free(ex);
    latch_destroy(&l);
}

TEST(shrinking_stops_idle_threads_at_once)
{
    cf_executor *ex = named_pool(4, "idle");
    burst_runs_at_once(ex, 4);
    ASSERT_EQ(count_named_threads("idle_"), 4);
    ASSERT_OK(cf_executor_set_max_workers(ex, 1));
    WAIT_UNTIL(count_named_threads("idle_") <= 1, 10);
    let_time_pass(0.05); /* no idle_timeout: the last one stays */
    ASSERT_EQ(count_named_threads("idle_"), 1);
    /* The one left serves. */
    cf_future *f = submit(ex, task_double, (void *)21);
    ASSERT_EQ(result_of(f), 42);
    cf_future_release(f);
    cf_executor_free(ex);
}

TEST(shrinking_stops_busy_threads_after_their_task)
{
    cf_executor *ex = named_pool(4, "busy");
    latch l;
    latch_init(&l);
    cf_future *fs[8];
    for (int i = 0; i < 4; i++)
        fs[i] = submit(ex, task_gate, &l);
    latch_wait_arrived(&l, 4);
    ASSERT_OK(cf_executor_set_max_workers(ex, 2));
    /* Queued behind the busy ones: run by the two that stay. */
    for (int i = 4; i < 8; i++)
        fs[i] = submit(ex, task_double, (void *)(intptr_t)i);
    ASSERT_EQ(count_named_threads("busy_"), 4); /* none was interrupted */
    for (int i = 0; i < 4; i++)
        ASSERT(!cf_future_done(fs[i]));
    latch_open(&l);
    for (int i = 0; i < 8; i++) {
        ASSERT_EQ(result_of(fs[i]), i < 4 ? (intptr_t)&l : 2 * i);
        cf_future_release(fs[i]);
    }
    WAIT_UNTIL(count_named_threads("busy_") == 2, 10);
    cf_executor_free(ex);
    latch_destroy(&l);
}

TEST(bursts_run_at_once_after_every_resize)
{
    cf_executor *ex = named_pool(3, "rsz");
    static const int sizes[] = {3, 1, 6, 2, 8, 5, 1, 4};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        ASSERT_OK(cf_executor_set_max_workers(ex, sizes[i]));
        burst_runs_at_once(ex, sizes[i]);
        burst_runs_at_once(ex, sizes[i] > 1 ? sizes[i] - 1 : 1);
    }
    cf_executor_free(ex);
}

static cf_future *_Atomic late_task;

/* In the worker that just retired: once the other worker sleeps, submit.
 * The retiring worker looked at the queue before this push; if it still
 * counted as searching, the submit would wake nobody. */
static void submit_as_a_worker_retires(cf_executor *ex)
{
    atomic_store(&cf__thread_pool_after_retire, NULL); /* once */
    pid_t self = current_tid();
    double deadline = harness_now() + 10;
    while (count_named_threads_but("late_", self, true) != 0 &&
           harness_now() < deadline)
        harness_pause();
    cf_future *f = NULL;
    if (cf_executor_submit(ex, task_identity, (void *)7, &f) == CF_OK)
        atomic_store(&late_task, f);
}

TEST(task_submitted_as_a_worker_retires_runs)
{
    cf_executor *ex = named_pool(2, "late");
    burst_runs_at_once(ex, 2); /* two threads, idle now */
    atomic_store(&cf__thread_pool_after_retire, submit_as_a_worker_retires);
    ASSERT_OK(cf_executor_set_max_workers(ex, 1));
    WAIT_UNTIL(atomic_load(&late_task) != NULL, 10);
    cf_future *f = atomic_load(&late_task);
    void *v = NULL;
    ASSERT_OK(cf_future_result(f, 2 * harness_slowdown(), &v));
    ASSERT_PTR_EQ(v, (void *)7);
    cf_future_release(f);
    cf_executor_free(ex);
}

/* Growing wakes the idle threads to count them again; a submit racing
 * that may start one thread more (never one too few), and from then on
 * submit-wait-submit reuses the threads there are. */
static void run_sequentially(cf_executor *ex, int n)
{
    for (int i = 0; i < n; i++) {
        cf_future *f = submit(ex, task_identity, NULL);
        result_of(f);
        cf_future_release(f);
    }
}

TEST(sequential_submits_after_growing_reuse_threads)
{
    cf_executor *ex = named_pool(2, "seqg");
    burst_runs_at_once(ex, 2);
    ASSERT_OK(cf_executor_set_max_workers(ex, 8));
    run_sequentially(ex, 20);
    ASSERT(count_named_threads("seqg_") <= 3);
    /* Without reuse, 300 more would start threads up to the new 8. A
     * submit may still beat a thread the resize woke to count itself idle
     * and start one more (never one too few), hence the bound, not an
     * equality with the count above. */
    run_sequentially(ex, 300);
    ASSERT(count_named_threads("seqg_") <= 3);
    cf_executor_free(ex);
}

/* Submitters keep submitting while the main thread resizes the pool up and
 * down: every task runs exactly once. */
enum { HAMMER_TASKS = 3000, HAMMERS = 3 };

typedef struct hammer {
    cf_executor *ex;
    atomic_int *runs; /* HAMMERS * HAMMER_TASKS counters */
    int first;
} hammer;

static void *task_mark(void *arg, cf_call *call)
{
    (void)call;
    atomic_fetch_add((atomic_int *)arg, 1);
    return NULL;
}

static void *hammer_body(helper *h)
{
    hammer *hm = h->ctx;
    for (int i = 0; i < HAMMER_TASKS; i++) {
        cf_future *f = submit(hm->ex, task_mark, &hm->runs[hm->first + i]);
        if (i % 11 == 0)
            result_of(f);
        cf_future_release(f);
    }
    return NULL;
}

TEST_TIMEOUT(resizing_while_tasks_arrive_loses_nothing, 120)
{
    cf_executor *ex = named_pool(2, "ham");
    static atomic_int runs[HAMMERS * HAMMER_TASKS];
    hammer hm[HAMMERS];
    helper hs[HAMMERS];
    for (int i = 0; i < HAMMERS; i++) {
        hm[i] = (hammer){ex, runs, i * HAMMER_TASKS};
        helper_start(&hs[i], hammer_body, &hm[i]);
    }
    for (int round = 0; round < 300; round++)
        ASSERT_OK(cf_executor_set_max_workers(ex, 1 + round % 5));
    for (int i = 0; i < HAMMERS; i++)
        helper_join(&hs[i]);
    /* Threads a shrink retired finish their current task before they go,
     * so while sizes change the count may pass the newest size for a
     * while; once the work is done it settles within the last (5). */
    WAIT_UNTIL(count_named_threads("ham_") <= 5, 30);
    ASSERT_OK(cf_executor_shutdown(ex, true, false));
    for (int i = 0; i < HAMMERS * HAMMER_TASKS; i++)
        ASSERT_EQ(atomic_load(&runs[i]), 1);
    cf_executor_free(ex);
}

TEST(shrinking_while_a_burst_arrives_runs_every_task_once)
{
    cf_executor *ex = named_pool(6, "sb");
    for (int round = 0; round < 50; round++) {
        atomic_int runs[6] = {0};
        cf_future *fs[6];
        ASSERT_OK(cf_executor_set_max_workers(ex, 6));
        for (int i = 0; i < 6; i++) {
            fs[i] = submit(ex, task_mark, &runs[i]);
            if (i == 2)
                ASSERT_OK(cf_executor_set_max_workers(ex, 1 + round % 3));
        }
        for (int i = 0; i < 6; i++) {
            result_of(fs[i]);
            cf_future_release(fs[i]);
            ASSERT_EQ(atomic_load(&runs[i]), 1);
        }
    }
    cf_executor_free(ex);
}

TEST(resize_refuses_bad_input)
{
    cf_thread_pool_options opts = {.max_workers = 2,
                                   .max_workers_limit = 4};
    cf_executor *ex = NULL;
    ASSERT_OK(cf_thread_pool_new(&opts, &ex));
    ASSERT_EQ(cf_executor_set_max_workers(ex, 0), CF_EINVAL);
    ASSERT_EQ(cf_executor_set_max_workers(ex, -1), CF_EINVAL);
    ASSERT_EQ(cf_executor_set_max_workers(ex, 5), CF_EINVAL);
    ASSERT_OK(cf_executor_set_max_workers(ex, 4));
    ASSERT_OK(cf_executor_set_max_workers(ex, 4)); /* the same size */
    ASSERT_EQ(cf_executor_set_max_workers(NULL, 1), CF_EINVAL);
    ASSERT_OK(cf_executor_shutdown(ex, true, false));
    ASSERT_EQ(cf_executor_set_max_workers(ex, 1), CF_ESHUTDOWN);
    cf_executor_free(ex);
}

TEST(thread_pool_options_for_sizing_are_checked)
{
    cf_executor *ex = NULL;
    cf_thread_pool_options bad[] = {
        {.max_workers = 2, .idle_timeout = -1},
        {.max_workers = 2, .idle_timeout = NAN},
        {.max_workers = 2, .min_workers = -1},
        {.max_workers = 2, .min_workers = 3},
        {.max_workers = 2, .max_workers_limit = 1},
        {.max_workers = 2, .max_workers_limit = -1},
        {.max_workers = 2, .max_workers_limit = 5000},
        {.max_workers = 2, .max_compensating = -1},
        {.max_workers = 2, .max_compensating = 5000},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        ASSERT_EQ(cf_thread_pool_new(&bad[i], &ex), CF_EINVAL);
        ASSERT(ex == NULL);
    }
    /* The default limit lets a pool grow past its first size. */
    ASSERT_OK(cf_thread_pool_new(&(cf_thread_pool_options){.max_workers = 2},
                                 &ex));
    ASSERT_OK(cf_executor_set_max_workers(ex, 256));
    ASSERT_EQ(cf_executor_set_max_workers(ex, 257), CF_EINVAL);
    cf_executor_free(ex);
}
