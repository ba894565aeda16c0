/* test_monitor.c - stats and observers: cf_executor_monitor(),
 * cf_executor_get_stats().
 *
 * Tasks are held on latches so that the counts in each state are certain
 * when the test reads them; durations are checked against bounds the
 * test itself enforces (a task that spins until a clock passes a mark).
 */
#define pool_new process_pool_new_for_test /* see test_completion_queue.c */
#include "procpool_test.h"
#undef pool_new

#include "core/core.h"
#include "coretest.h"

static cf_executor_stats stats_of(cf_executor *ex)
{
    cf_executor_stats st;
    memset(&st, 0xab, sizeof st);
    ASSERT_OK(cf_executor_get_stats(ex, &st));
    return st;
}

static void monitor(cf_executor *ex, bool stats, cf_observer_fn fn,
                    void *arg)
{
    cf_monitor_options o = {.stats = stats, .observer = fn,
                            .observer_arg = arg};
    ASSERT_OK(cf_executor_monitor(ex, &o));
}

/* Spins until `arg` seconds have passed since it started. */
static void *spin_for(void *arg, cf_call *call)
{
    (void)call;
    double seconds = (double)(intptr_t)arg / 1000.0;
    double until = harness_now() + seconds;
    while (harness_now() < until)
        ;
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Stats                                                                    */

TEST(stats_count_tasks_in_every_state)
{
    latch gate;
    latch_init(&gate);
    cf_executor *ex = pool_new(1);
    monitor(ex, true, NULL, NULL);
    cf_future *busy = submit(ex, task_gate, &gate);
    /* The future turns RUNNING just before the monitor counts the start. */
    WAIT_UNTIL(stats_of(ex).running == 1, 10);
    cf_future *ok[3], *bad[2], *gone[4];
    for (int i = 0; i < 3; i++)
        ok[i] = submit(ex, task_identity, NULL);
    for (int i = 0; i < 2; i++)
        bad[i] = submit(ex, task_fail, (void *)5);
    for (int i = 0; i < 4; i++)
        gone[i] = submit(ex, task_identity, NULL);
    cf_executor_stats st = stats_of(ex);
    ASSERT_EQ(st.submitted, 10);
    ASSERT_EQ(st.running, 1);
    ASSERT_EQ(st.queued, 9);
    ASSERT_EQ(st.workers_alive, 1);
    ASSERT_EQ(st.workers_idle, 0);
    for (int i = 0; i < 4; i++)
        ASSERT(cf_future_cancel(gone[i]));
    st = stats_of(ex);
    ASSERT_EQ(st.cancelled, 4);
    ASSERT_EQ(st.queued, 5);
    latch_open(&gate);
    for (int i = 0; i < 3; i++)
        ASSERT_OK(cf_future_result(ok[i], CF_FOREVER, NULL));
    for (int i = 0; i < 2; i++)
        ASSERT_CODE(cf_future_result(bad[i], CF_FOREVER, NULL), CF_ETASK);
    ASSERT_OK(cf_future_result(busy, CF_FOREVER, NULL));
    /* The last FINISH is counted by the worker just after the result is
     * visible: poll for it. */
    WAIT_UNTIL(stats_of(ex).running == 0, 10);
    st = stats_of(ex);
    ASSERT_EQ(st.submitted, 10);
    ASSERT_EQ(st.queued, 0);
    ASSERT_EQ(st.finished, 6);
    ASSERT_EQ(st.failed, 2);
    ASSERT_EQ(st.cancelled, 4);
    ASSERT_EQ(st.queue_wait.count, 6);
    ASSERT_EQ(st.run_time.count, 6);
    WAIT_UNTIL(stats_of(ex).workers_idle == 1, 10);
    cf_future *all[] = {busy, ok[0], ok[1], ok[2], bad[0], bad[1],
                        gone[0], gone[1], gone[2], gone[3]};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        cf_future_release(all[i]);
    cf_executor_free(ex);
    latch_destroy(&gate);
}

TEST(stats_time_queue_waits_and_runs)
{
    latch gate;
    latch_init(&gate);
    cf_executor *ex = pool_new(1);
    monitor(ex, true, NULL, NULL);
    /* b waits in the queue at least the 20 ms the gate stays shut; a
     * runs 20 ms, b 1 ms. */
    cf_future *busy = submit(ex, task_gate, &gate);
    WAIT_UNTIL(cf_future_running(busy), 10);
    cf_future *a = submit(ex, spin_for, (void *)20);
    cf_future *b = submit(ex, spin_for, (void *)1);
    let_time_pass(0.020);
    latch_open(&gate);
    ASSERT_OK(cf_future_result(b, CF_FOREVER, NULL));
    WAIT_UNTIL(stats_of(ex).running == 0, 10);
    cf_executor_stats st = stats_of(ex);
    ASSERT_EQ(st.run_time.count, 3);
    ASSERT(st.run_time.max >= 0.020 && st.run_time.max < 60);
    ASSERT(st.run_time.total >= 0.041); /* the gate, a and b */
    ASSERT(st.run_time.p99 >= st.run_time.p50);
    ASSERT(st.run_time.p99 <= st.run_time.max);
    ASSERT(st.run_time.p50 >= st.run_time.min);
    ASSERT_EQ(st.queue_wait.count, 3);
    ASSERT(st.queue_wait.max >= 0.040); /* b: the gate, then a */
    ASSERT(st.queue_wait.min < st.queue_wait.max);
    cf_future_release(busy);
    cf_future_release(a);
    cf_future_release(b);
    cf_executor_free(ex);
    latch_destroy(&gate);
}

TEST(quantiles_come_within_an_eighth)
{
    enum { N = 200 };
    cf_executor *ex = pool_new(1);
    monitor(ex, true, NULL, NULL);
    /* 100 tasks of 1 ms, 100 of 8 ms (timed by the tasks themselves). */
    cf_future *fs[N];
    for (int i = 0; i < N; i++)
        fs[i] = submit(ex, spin_for, (void *)(intptr_t)(i % 2 ? 8 : 1));
    for (int i = 0; i < N; i++) {
        ASSERT_OK(cf_future_result(fs[i], CF_FOREVER, NULL));
        cf_future_release(fs[i]);
    }
    WAIT_UNTIL(stats_of(ex).run_time.count == N, 10);
    cf_executor_stats st = stats_of(ex);
    /* The median falls in the upper half's first sample: 1 or 8 ms. A
     * busy machine stretches a task, never shortens it. */
    ASSERT(st.run_time.p90 >= 0.008 * 0.875);
    ASSERT(st.run_time.min >= 0.001);
    cf_executor_free(ex);
}

TEST(stats_are_zero_and_workers_known_when_not_monitored)
{
    cf_executor *ex = pool_new(2);
    cf_future *f = submit(ex, task_identity, NULL);
    ASSERT_OK(cf_future_result(f, CF_FOREVER, NULL));
    cf_executor_stats st = stats_of(ex);
    ASSERT_EQ(st.submitted, 0);
    ASSERT_EQ(st.finished, 0);
    ASSERT_EQ(st.queue_wait.count, 0);
    ASSERT_EQ(st.run_time.p99 * 1e9, 0);
    ASSERT(st.workers_alive >= 1);
    cf_future_release(f);
    cf_executor_free(ex);
}

TEST(bad_arguments_are_refused)
{
    cf_executor *ex = pool_new(1);
    cf_executor_stats st;
    ASSERT_CODE(cf_executor_get_stats(NULL, &st), CF_EINVAL);
    ASSERT_CODE(cf_executor_get_stats(ex, NULL), CF_EINVAL);
    ASSERT_CODE(cf_executor_monitor(NULL, NULL), CF_EINVAL);
    ASSERT_OK(cf_executor_monitor(ex, NULL)); /* off, and never on */
    cf_executor_free(ex);
}

/* ------------------------------------------------------------------------ */
/* Observers                                                                */

enum { LOG_MAX = 4096 };

typedef struct event_log {
    pthread_mutex_t lock;
    size_t n;
    cf_event ev[LOG_MAX];
    char crash_message[256]; /* a message is valid only during the call */
} event_log;

static void record(const cf_event *ev, void *arg)
{
    event_log *log = arg;
    pthread_mutex_lock(&log->lock);
    if (log->n < LOG_MAX)
        log->ev[log->n++] = *ev;
    if (ev->kind == CF_EVENT_CRASH)
        snprintf(log->crash_message, sizeof log->crash_message, "%s",
                 ev->message ? ev->message : "(null)");
    pthread_mutex_unlock(&log->lock);
}

static event_log *log_new(void)
{
    event_log *log = calloc(1, sizeof *log);
    ASSERT(log != NULL);
    pthread_mutex_init(&log->lock, NULL);
    return log;
}

static void log_free(event_log *log)
{
    pthread_mutex_destroy(&log->lock);
    free(log);
}

/* Index of the first event of `kind` for `f` (NULL: any), or -1. Under
 * the log's lock: a worker may still be logging (a logged event is
 * written once, so its fields can be read after). */
static int find(event_log *log, cf_event_kind kind, const cf_future *f)
{
    int found = -1;
    pthread_mutex_lock(&log->lock);
    for (size_t i = 0; i < log->n && found < 0; i++)
        if (log->ev[i].kind == kind && (!f || log->ev[i].future == f))
            found = (int)i;
    pthread_mutex_unlock(&log->lock);
    return found;
}

static size_t count(event_log *log, cf_event_kind kind)
{
    size_t n = 0;
    pthread_mutex_lock(&log->lock);
    for (size_t i = 0; i < log->n; i++)
        n += log->ev[i].kind == kind;
    pthread_mutex_unlock(&log->lock);
    return n;
}

TEST(observer_sees_each_task_submit_start_finish_in_order)
{
    enum { N = 50 };
    event_log *log = log_new();
    cf_executor *ex = pool_new(2);
    monitor(ex, false, record, log);
    cf_future *fs[N];
    for (int i = 0; i < N; i++)
        fs[i] = submit(ex, i % 5 ? task_identity : task_fail, (void *)3);
    for (int i = 0; i < N; i++)
        cf_future_result(fs[i], CF_FOREVER, NULL);
    cf_executor_free(ex); /* every event is in once it returns */
    for (int i = 0; i < N; i++) {
        int s = find(log, CF_EVENT_SUBMIT, fs[i]);
        int b = find(log, CF_EVENT_START, fs[i]);
        int e = find(log, CF_EVENT_FINISH, fs[i]);
        ASSERT(s >= 0 && s < b && b < e);
        ASSERT(log->ev[b].worker >= 0 && log->ev[b].worker < 2);
        ASSERT_EQ(log->ev[e].worker, log->ev[b].worker);
        ASSERT_CODE(log->ev[e].code, i % 5 ? CF_OK : CF_ETASK);
        ASSERT(log->ev[s].time <= log->ev[b].time);
        ASSERT(log->ev[b].time <= log->ev[e].time);
        ASSERT(log->ev[e].duration >= 0);
        cf_future_release(fs[i]);
    }
    ASSERT_EQ(count(log, CF_EVENT_SUBMIT), N);
    ASSERT_EQ(count(log, CF_EVENT_START), N);
    ASSERT_EQ(count(log, CF_EVENT_FINISH), N);
    size_t started = count(log, CF_EVENT_WORKER_START);
    ASSERT(started >= 1 && started <= 2);
    ASSERT_EQ(count(log, CF_EVENT_WORKER_EXIT), started);
    log_free(log);
}

TEST(cancelled_task_finishes_without_starting)
{
    latch gate;
    latch_init(&gate);
    event_log *log = log_new();
    cf_executor *ex = pool_new(1);
    monitor(ex, true, record, log);
    cf_future *busy = submit(ex, task_gate, &gate);
    cf_future *f = submit(ex, task_identity, NULL);
    ASSERT(cf_future_cancel(f));
    latch_open(&gate);
    cf_executor_free(ex);
    ASSERT_EQ(find(log, CF_EVENT_START, f), -1);
    int e = find(log, CF_EVENT_FINISH, f);
    ASSERT(e >= 0);
    ASSERT_CODE(log->ev[e].code, CF_ECANCELLED);
    ASSERT_EQ(log->ev[e].worker, -1);
    ASSERT_EQ(log->ev[e].duration, 0);
    cf_future_release(busy);
    cf_future_release(f);
    log_free(log);
    latch_destroy(&gate);
}

static int failing_init(void *arg)
{
    (void)arg;
    return 7;
}

TEST(broken_pool_reports_a_crash)
{
    event_log *log = log_new();
    cf_thread_pool_options o = {.max_workers = 1,
                                .initializer = failing_init};
    cf_executor *ex = NULL;
    ASSERT_OK(cf_thread_pool_new(&o, &ex));
    monitor(ex, true, record, log);
    cf_future *f = submit(ex, task_identity, NULL);
    ASSERT_CODE(cf_future_result(f, CF_FOREVER, NULL),
                CF_EBROKEN_THREAD_POOL);
    cf_executor_free(ex);
    int c = find(log, CF_EVENT_CRASH, NULL);
    ASSERT(c >= 0);
    ASSERT_CODE(log->ev[c].code, CF_EBROKEN_THREAD_POOL);
    ASSERT(strstr(log->crash_message, "returned 7") != NULL);
    int e = find(log, CF_EVENT_FINISH, f);
    ASSERT(e >= 0);
    ASSERT_CODE(log->ev[e].code, CF_EBROKEN_THREAD_POOL);
    cf_future_release(f);
    log_free(log);
}

static int refuse(void *impl, cf_future *f, cf_fn fn, void *arg,
                  const cf_codec *codec)
{
    (void)impl, (void)f, (void)fn, (void)arg, (void)codec;
    return CF_EAGAIN;
}

TEST(refused_submit_is_reported_and_not_counted)
{
    static const cf_executor_ops ops = {.kind = "refuser", .submit = refuse};
    event_log *log = log_new();
    cf_executor *ex = NULL;
    ASSERT_OK(cf_executor_new(&ops, NULL, &ex));
    monitor(ex, true, record, log);
    cf_future *f = NULL;
    ASSERT_CODE(cf_executor_submit(ex, task_identity, NULL, &f), CF_EAGAIN);
    ASSERT_EQ(log->n, 2);
    ASSERT_EQ(log->ev[0].kind, CF_EVENT_SUBMIT);
    ASSERT_EQ(log->ev[1].kind, CF_EVENT_FINISH);
    ASSERT_CODE(log->ev[1].code, CF_EAGAIN);
    cf_executor_stats st = stats_of(ex);
    ASSERT_EQ(st.submitted, 0);
    ASSERT_EQ(st.failed, 0);
    ASSERT_EQ(st.workers_alive, -1); /* a custom executor does not say */
    cf_executor_free(ex);
    log_free(log);
}

TEST(monitoring_off_reports_nothing_new)
{
    event_log *log = log_new();
    cf_executor *ex = pool_new(1);
    monitor(ex, true, record, log);
    cf_future *a = submit(ex, task_identity, NULL);
    ASSERT_OK(cf_future_result(a, CF_FOREVER, NULL));
    WAIT_UNTIL(stats_of(ex).finished == 1, 10);
    ASSERT_OK(cf_executor_monitor(ex, NULL));
    cf_future *b = submit(ex, task_identity, NULL);
    ASSERT_OK(cf_future_result(b, CF_FOREVER, NULL));
    cf_executor_free(ex);
    ASSERT(find(log, CF_EVENT_FINISH, a) >= 0);
    ASSERT_EQ(find(log, CF_EVENT_SUBMIT, b), -1);
    ASSERT_EQ(find(log, CF_EVENT_FINISH, b), -1);
    cf_future_release(a);
    cf_future_release(b);
    log_free(log);
}

TEST(continuations_on_a_monitored_pool_are_its_tasks)
{
    cf_executor *ex = pool_new(1);
    monitor(ex, true, NULL, NULL);
    cf_future *root = future_new(), *d = NULL;
    ASSERT_OK(cf_future_then(root, ex, task_double, &d));
    ASSERT_OK(cf_future_set_result(root, (void *)21));
    ASSERT_EQ(result_of(d), 42);
    WAIT_UNTIL(stats_of(ex).finished == 1, 10);
    ASSERT_EQ(stats_of(ex).run_time.count, 1);
    cf_future_release(d);
    cf_future_release(root);
    cf_executor_free(ex);
}

/* Completing a running task's future from outside (a misuse the API
 * allows) reports its end at once, must not free what the monitor keeps
 * for the task under it (ASan), and counts it as started on worker 0;
 * its run is still timed once it returns. */
TEST(future_completed_while_its_task_runs_counts_as_started)
{
    latch gate;
    latch_init(&gate);
    event_log *log = log_new();
    cf_executor *ex = pool_new(1);
    monitor(ex, true, record, log);
    cf_future *f = submit(ex, task_gate, &gate);
    WAIT_UNTIL(find(log, CF_EVENT_START, f) >= 0, 10);
    ASSERT_EQ(stats_of(ex).running, 1);
    ASSERT_OK(cf_future_set_result(f, (void *)1));
    cf_executor_stats st = stats_of(ex);
    ASSERT_EQ(st.running, 0);
    ASSERT_EQ(st.queued, 0);
    ASSERT_EQ(st.finished, 1);
    int e = find(log, CF_EVENT_FINISH, f);
    ASSERT(e >= 0);
    ASSERT_EQ(log->ev[e].worker, 0);
    ASSERT_EQ(log->ev[e].duration, 0); /* it has not returned */
    latch_open(&gate);
    WAIT_UNTIL(stats_of(ex).run_time.count == 1, 10);
    cf_executor_free(ex);
    ASSERT_EQ(count(log, CF_EVENT_FINISH), 1);
    cf_future_release(f);
    log_free(log);
    latch_destroy(&gate);
}

/* FINISH carries the run time the worker measured (a thread pool's task
 * reports it through its future's completion, after the task returned). */
TEST(finish_reports_how_long_the_task_ran)
{
    event_log *log = log_new();
    cf_executor *ex = pool_new(1);
    monitor(ex, true, record, log);
    cf_future *f = submit(ex, spin_for, (void *)5);
    ASSERT_OK(cf_future_result(f, CF_FOREVER, NULL));
    cf_executor_free(ex);
    int b = find(log, CF_EVENT_START, f);
    int e = find(log, CF_EVENT_FINISH, f);
    ASSERT(b >= 0 && e > b);
    /* Timed with the fast clock, whose rate is CLOCK_MONOTONIC's within
     * about 1e-4 (fast_clock.c). */
    ASSERT(log->ev[e].duration >= 0.005 * 0.99 && log->ev[e].duration < 60);
    cf_future_release(f);
    log_free(log);
}

static int count_callback(cf_future *f, void *arg)
{
    (void)f;
    atomic_fetch_add((atomic_int *)arg, 1);
    return 0;
}

/* A monitored task's future keeps what it needs on its callback list:
 * done-callbacks and continuations added while it waits or runs go in
 * front of that, and all of it still works. */
TEST(callbacks_on_a_monitored_task_run_and_leave_its_counts_right)
{
    latch gate;
    latch_init(&gate);
    event_log *log = log_new();
    cf_executor *ex = pool_new(1);
    monitor(ex, true, record, log);
    cf_future *busy = submit(ex, task_gate, &gate);
    cf_future *f = submit(ex, task_identity, (void *)21);
    atomic_int calls = 0;
    ASSERT_OK(cf_future_add_done_callback(f, count_callback, &calls));
    cf_future *d = NULL;
    ASSERT_OK(cf_future_then(f, NULL, task_double, &d));
    ASSERT_OK(cf_future_add_done_callback(busy, count_callback, &calls));
    latch_open(&gate);
    ASSERT_EQ(result_of(d), 42);
    ASSERT_OK(cf_future_result(busy, CF_FOREVER, NULL));
    WAIT_UNTIL(stats_of(ex).finished == 2, 10);
    cf_executor_stats st = stats_of(ex);
    ASSERT_EQ(st.submitted, 2);
    ASSERT_EQ(st.running, 0);
    ASSERT_EQ(st.queued, 0);
    ASSERT_EQ(st.queue_wait.count, 2);
    WAIT_UNTIL(atomic_load(&calls) == 2, 10);
    cf_executor_free(ex);
    int b = find(log, CF_EVENT_START, f);
    int e = find(log, CF_EVENT_FINISH, f);
    ASSERT(b >= 0 && e > b);
    ASSERT_EQ(log->ev[e].worker, 0);
    cf_future_release(d);
    cf_future_release(f);
    cf_future_release(busy);
    log_free(log);
    latch_destroy(&gate);
}

static void *plus_one(void *arg, cf_call *call)
{
    (void)call;
    return (void *)((intptr_t)arg + 1);
}

/* Threads that count own a shard each (monitor.c), up to 31; the rest
 * share one with atomic adds; an exiting thread gives its shard back.
 * More threads than shards, all submitting at once, and a second wave
 * that reuses the first one's shards: not one count may be lost. */
enum { COUNTERS = 40, PER_COUNTER = 2000 };

typedef struct counter_ctx {
    cf_executor *ex;
    latch *start;
} counter_ctx;

static void *submit_many(helper *h)
{
    counter_ctx *c = h->ctx;
    latch_wait(c->start);
    for (int i = 0; i < PER_COUNTER; i++) {
        cf_future *f = NULL;
        ASSERT_OK(cf_executor_submit(c->ex, task_empty, NULL, &f));
        cf_future_release(f);
    }
    return NULL;
}

TEST_TIMEOUT(counts_from_more_threads_than_shards_are_exact, 120)
{
    cf_executor *ex = pool_new(4);
    monitor(ex, true, NULL, NULL);
    for (int wave = 1; wave <= 2; wave++) {
        latch start;
        latch_init(&start);
        counter_ctx c = {ex, &start};
        helper hs[COUNTERS];
        for (int i = 0; i < COUNTERS; i++)
            helper_start(&hs[i], submit_many, &c);
        latch_open(&start);
        for (int i = 0; i < COUNTERS; i++)
            helper_join(&hs[i]);
        latch_destroy(&start);
        uint64_t n = (uint64_t)wave * COUNTERS * PER_COUNTER;
        WAIT_UNTIL(stats_of(ex).finished == n, 60);
        cf_executor_stats st = stats_of(ex);
        ASSERT_EQ(st.submitted, n);
        ASSERT_EQ(st.queued, 0);
        ASSERT_EQ(st.running, 0);
        ASSERT_EQ(st.queue_wait.count, n);
        ASSERT_EQ(st.run_time.count, n);
    }
    cf_executor_free(ex);
}

TEST_TIMEOUT(process_pool_reports_its_tasks, 60)
{
    enum { N = 20 };
    event_log *log = log_new();
    cf_process_pool_options o = {.max_workers = 1};
    cf_executor *ex = NULL;
    ASSERT_OK(cf_process_pool_new(&o, &ex));
    monitor(ex, true, record, log);
    cf_future *fs[N];
    for (int i = 0; i < N; i++)
        ASSERT_OK(cf_executor_submit(ex, plus_one, (void *)(intptr_t)i,
                                     &fs[i]));
    for (int i = 0; i < N; i++)
        ASSERT_OK(cf_future_result(fs[i], CF_FOREVER, NULL));
    /* A task's end is counted as its future's callbacks run, just after
     * its waiters are woken. */
    WAIT_UNTIL(stats_of(ex).finished == N, 30);
    cf_executor_stats st = stats_of(ex);
    ASSERT_EQ(st.submitted, N);
    ASSERT_EQ(st.finished, N);
    ASSERT_EQ(st.queued, 0);
    ASSERT_EQ(st.run_time.count, N); /* test_process_monitor.c: the rest */
    cf_executor_free(ex);
    ASSERT_EQ(count(log, CF_EVENT_SUBMIT), N);
    ASSERT_EQ(count(log, CF_EVENT_FINISH), N);
    for (int i = 0; i < N; i++)
        cf_future_release(fs[i]);
    log_free(log);
}
