/* test_process_monitor.c - stats and observers of a process pool
 * (cf_executor_monitor, cf_executor_get_stats): every counter, both time
 * summaries, the worker counts, and every event, including a worker's
 * crash (with and without survive_worker_death) and the exits and starts
 * of max_tasks_per_child, and map chunks (each counted as one task).
 * Registered once more over the pipes transport, and with workers of
 * another program and started by a callback (procpool_test.h).
 *
 * Tasks in workers are held on files (procpool_test.h); the observer logs
 * events under a mutex, and the pool's free (which joins its manager,
 * where process events happen) makes the log complete.
 */
#define PP_WORKER_KINDS 1 /* see procpool_test.h */
#include "procpool_test.h"

#include <pthread.h>

static cf_executor_stats stats_of(cf_executor *ex)
{
    cf_executor_stats st;
    memset(&st, 0xab, sizeof st);
    ASSERT_OK(cf_executor_get_stats(ex, &st));
    return st;
}

static cf_executor *monitored_pool(const cf_process_pool_options *o,
                                   cf_observer_fn fn, void *arg)
{
    cf_process_pool_options opts = *o;
    cf_process_pool_options kind = {PP_KIND};
    opts.transport = kind.transport;
    opts.start_method = kind.start_method;
    opts.program = kind.program;
    opts.start_worker = kind.start_worker;
    cf_executor *ex = NULL;
    ASSERT_OK(cf_process_pool_new(&opts, &ex));
    cf_monitor_options m = {.stats = true, .observer = fn,
                            .observer_arg = arg};
    ASSERT_OK(cf_executor_monitor(ex, &m));
    return ex;
}

static void *task_fail_code(void *arg, cf_call *call)
{
    return cf_fail(call, (int)(intptr_t)arg, "failed on purpose");
}

static void *task_abort(void *arg, cf_call *call)
{
    (void)arg;
    (void)call;
    abort();
}

/* The names workers of another kind know these by (procpool_test.h). */
static void pp_register_names(void)
{
    PP_NAME(task_square);
    PP_NAME(task_getpid);
    PP_NAME(task_pid_then_wait);
    PP_NAME(task_fail_code);
    PP_NAME(task_abort);
    PP_NAME(&path_codec);
}

/* ------------------------------------------------------------------------ */
/* An event log                                                             */

enum { LOG_MAX = 1024 };

typedef struct event_log {
    pthread_mutex_t lock;
    size_t n;
    cf_event ev[LOG_MAX];
    char crash_message[512]; /* a message is valid only during the call */
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

/* Index of the first event of `kind` for `f` (NULL: any), or -1. */
static int find(event_log *log, cf_event_kind kind, const cf_future *f)
{
    for (size_t i = 0; i < log->n; i++)
        if (log->ev[i].kind == kind && (!f || log->ev[i].future == f))
            return (int)i;
    return -1;
}

static size_t count(event_log *log, cf_event_kind kind)
{
    size_t n = 0;
    for (size_t i = 0; i < log->n; i++)
        n += log->ev[i].kind == kind;
    return n;
}

/* ------------------------------------------------------------------------ */
/* Stats                                                                    */

TEST_TIMEOUT(process_stats_count_tasks_in_every_state, 60)
{
    tmpdir d;
    tmpdir_make(&d);
    char base[256];
    tmpdir_file(&d, "busy", base, sizeof base);
    cf_process_pool_options o = {.max_workers = 1};
    cf_executor *ex = monitored_pool(&o, NULL, NULL);
    cf_future *busy = submit_path(ex, task_pid_then_wait, base);
    await_pid(base);
    WAIT_UNTIL(cf_future_running(busy), 30);
    cf_future *ok[3], *bad[2], *gone[4];
    for (int i = 0; i < 3; i++)
        ASSERT_OK(cf_executor_submit(ex, task_square, (void *)2, &ok[i]));
    for (int i = 0; i < 2; i++)
        ASSERT_OK(cf_executor_submit(ex, task_fail_code, (void *)5, &bad[i]));
    for (int i = 0; i < 4; i++)
        ASSERT_OK(cf_executor_submit(ex, task_square, (void *)3, &gone[i]));
    for (int i = 0; i < 4; i++)
        ASSERT(cf_future_cancel(gone[i]));
    cf_executor_stats st = stats_of(ex);
    ASSERT_EQ(st.submitted, 10);
    ASSERT_EQ(st.running, 1);
    ASSERT_EQ(st.queued, 5);
    ASSERT_EQ(st.cancelled, 4);
    ASSERT_EQ(st.finished, 0);
    ASSERT_EQ(st.workers_alive, 1);
    ASSERT_EQ(st.workers_idle, 0);
    /* The busy task runs at least this long: its run time must show it. */
    double mark = harness_now() + 0.05;
    WAIT_UNTIL(harness_now() > mark, 10);
    release_go(base);
    for (int i = 0; i < 3; i++)
        ASSERT_OK(cf_future_result(ok[i], 30, NULL));
    for (int i = 0; i < 2; i++)
        ASSERT_CODE(cf_future_result(bad[i], 30, NULL), CF_ETASK);
    ASSERT_OK(cf_future_result(busy, 30, NULL));
    st = stats_of(ex);
    ASSERT_EQ(st.submitted, 10);
    ASSERT_EQ(st.queued, 0);
    ASSERT_EQ(st.running, 0);
    ASSERT_EQ(st.finished, 6);
    ASSERT_EQ(st.failed, 2);
    ASSERT_EQ(st.cancelled, 4);
    ASSERT_EQ(st.queue_wait.count, 6);
    ASSERT_EQ(st.run_time.count, 6);
    ASSERT(st.run_time.max >= 0.05);
    ASSERT(st.run_time.min <= st.run_time.p50);
    ASSERT(st.run_time.p99 <= st.run_time.max);
    /* The five queued behind the busy task waited for it. */
    ASSERT(st.queue_wait.max >= 0.05);
    ASSERT(st.queue_wait.total >= 5 * 0.05);
    WAIT_UNTIL(stats_of(ex).workers_idle == 1, 30);
    cf_executor_free(ex);
    cf_future_release(busy);
    for (int i = 0; i < 3; i++)
        cf_future_release(ok[i]);
    for (int i = 0; i < 2; i++)
        cf_future_release(bad[i]);
    for (int i = 0; i < 4; i++)
        cf_future_release(gone[i]);
    tmpdir_remove(&d);
}

TEST_TIMEOUT(process_stats_are_zero_and_workers_known_unmonitored, 60)
{
    cf_executor *ex = NULL;
    cf_process_pool_options o = {PP_KIND, .max_workers = 2};
    ASSERT_OK(cf_process_pool_new(&o, &ex));
    cf_future *f;
    ASSERT_OK(cf_executor_submit(ex, task_square, (void *)4, &f));
    ASSERT_OK(cf_future_result(f, 30, NULL));
    cf_executor_stats st = stats_of(ex);
    ASSERT_EQ(st.submitted, 0);
    ASSERT_EQ(st.finished, 0);
    ASSERT_EQ(st.run_time.count, 0);
    ASSERT(st.workers_alive >= 1 && st.workers_alive <= 2);
    ASSERT(st.workers_idle >= 0 && st.workers_idle <= st.workers_alive);
    cf_future_release(f);
    cf_executor_free(ex);
}

/* A map on a process pool ships chunks as one message each: every chunk
 * counts as one task (as on a thread pool, where a chunk runs as one),
 * with its start and run time, and its events. */
TEST_TIMEOUT(process_stats_count_map_chunks_as_tasks, 60)
{
    event_log *log = log_new();
    cf_process_pool_options o = {.max_workers = 2};
    cf_executor *ex = monitored_pool(&o, record, log);
    enum { N = 40, CHUNK = 10 };
    void *args[N];
    for (int i = 0; i < N; i++)
        args[i] = (void *)(intptr_t)i;
    cf_map_options mo = {.chunksize = CHUNK};
    cf_map *m = NULL;
    ASSERT_OK(cf_executor_map(ex, task_square, args, N, &mo, &m));
    void *v;
    for (int i = 0; i < N; i++) {
        ASSERT_OK(cf_map_next(m, &v, NULL));
        ASSERT_EQ((intptr_t)v, (intptr_t)i * i);
    }
    ASSERT_EQ(cf_map_next(m, &v, NULL), CF_EEND);
    cf_map_free(m);
    /* A task's end is counted as its future's callbacks run, just after
     * its waiters (here cf_map_next) are woken. */
    WAIT_UNTIL(stats_of(ex).finished == N / CHUNK, 30);
    cf_executor_stats st = stats_of(ex);
    ASSERT_EQ(st.submitted, N / CHUNK);
    ASSERT_EQ(st.finished, N / CHUNK);
    ASSERT_EQ(st.failed, 0);
    ASSERT_EQ(st.queued, 0);
    ASSERT_EQ(st.running, 0);
    ASSERT_EQ(st.run_time.count, N / CHUNK);
    ASSERT_EQ(st.queue_wait.count, N / CHUNK);
    cf_executor_free(ex);
    ASSERT_EQ(count(log, CF_EVENT_SUBMIT), (size_t)(N / CHUNK));
    ASSERT_EQ(count(log, CF_EVENT_START), (size_t)(N / CHUNK));
    ASSERT_EQ(count(log, CF_EVENT_FINISH), (size_t)(N / CHUNK));
    log_free(log);
}

/* ------------------------------------------------------------------------ */
/* Events                                                                   */

TEST_TIMEOUT(process_observer_sees_submit_start_finish_in_order, 60)
{
    enum { N = 40 };
    event_log *log = log_new();
    cf_process_pool_options o = {.max_workers = 2};
    cf_executor *ex = monitored_pool(&o, record, log);
    cf_future *fs[N];
    for (int i = 0; i < N; i++)
        ASSERT_OK(cf_executor_submit(ex, i % 5 ? task_square : task_fail_code,
                                     (void *)3, &fs[i]));
    for (int i = 0; i < N; i++)
        cf_future_result(fs[i], 30, NULL);
    cf_executor_free(ex); /* joins the manager: every event is in */
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
        ASSERT(log->ev[b].duration >= 0);
        ASSERT(log->ev[e].duration > 0); /* timed before it is reported */
        cf_future_release(fs[i]);
    }
    ASSERT_EQ(count(log, CF_EVENT_SUBMIT), N);
    ASSERT_EQ(count(log, CF_EVENT_START), N);
    ASSERT_EQ(count(log, CF_EVENT_FINISH), N);
    size_t started = count(log, CF_EVENT_WORKER_START);
    ASSERT(started >= 1 && started <= 2);
    ASSERT_EQ(count(log, CF_EVENT_WORKER_EXIT), started);
    ASSERT_EQ(count(log, CF_EVENT_CRASH), 0);
    log_free(log);
}

TEST_TIMEOUT(process_workers_start_and_exit_under_max_tasks_per_child, 60)
{
    enum { N = 6, PER_CHILD = 2 };
    event_log *log = log_new();
    cf_process_pool_options o = {.max_workers = 1,
                                 .max_tasks_per_child = PER_CHILD};
    cf_executor *ex = monitored_pool(&o, record, log);
    cf_future *fs[N];
    for (int i = 0; i < N; i++)
        ASSERT_OK(cf_executor_submit(ex, task_getpid, NULL, &fs[i]));
    for (int i = 0; i < N; i++)
        ASSERT_OK(cf_future_result(fs[i], 30, NULL));
    /* The third worker leaves once its share is done, as the others did. */
    WAIT_UNTIL(stats_of(ex).workers_alive == 0, 30);
    cf_executor_stats st = stats_of(ex);
    ASSERT_EQ(st.finished, N);
    ASSERT_EQ(st.run_time.count, N);
    cf_executor_free(ex);
    ASSERT_EQ(count(log, CF_EVENT_WORKER_START), N / PER_CHILD);
    ASSERT_EQ(count(log, CF_EVENT_WORKER_EXIT), N / PER_CHILD);
    ASSERT_EQ(count(log, CF_EVENT_CRASH), 0);
    /* Each worker's start comes before its tasks, its exit after them. */
    for (int i = 0; i < N; i++) {
        int b = find(log, CF_EVENT_START, fs[i]);
        ASSERT(b >= 0);
        int starts = 0, exits = 0;
        for (int j = 0; j < b; j++) {
            starts += log->ev[j].kind == CF_EVENT_WORKER_START;
            exits += log->ev[j].kind == CF_EVENT_WORKER_EXIT;
        }
        ASSERT_EQ(starts, i / PER_CHILD + 1);
        ASSERT_EQ(exits, i / PER_CHILD);
        cf_future_release(fs[i]);
    }
    log_free(log);
}

TEST_TIMEOUT(process_crash_is_reported_and_counted, 60)
{
    event_log *log = log_new();
    cf_process_pool_options o = {.max_workers = 1};
    cf_executor *ex = monitored_pool(&o, record, log);
    cf_future *f;
    ASSERT_OK(cf_executor_submit(ex, task_abort, NULL, &f));
    ASSERT_CODE(cf_future_result(f, 30, NULL), CF_EBROKEN_PROCESS_POOL);
    /* Counted as its future's callbacks run, just after the wake-up. */
    WAIT_UNTIL(stats_of(ex).finished == 1, 30);
    cf_executor_stats st = stats_of(ex);
    ASSERT_EQ(st.submitted, 1);
    ASSERT_EQ(st.finished, 1);
    ASSERT_EQ(st.failed, 1);
    ASSERT_EQ(st.running, 0);
    ASSERT_EQ(st.run_time.count, 1);
    cf_executor_free(ex);
    ASSERT_EQ(count(log, CF_EVENT_CRASH), 1);
    int c = find(log, CF_EVENT_CRASH, NULL);
    ASSERT_CODE(log->ev[c].code, CF_EBROKEN_PROCESS_POOL);
    ASSERT(contains(log->crash_message, "SIGABRT"));
    int e = find(log, CF_EVENT_FINISH, f);
    ASSERT(e >= 0);
    ASSERT_CODE(log->ev[e].code, CF_EBROKEN_PROCESS_POOL);
    ASSERT_EQ(log->ev[e].worker, 0);
    ASSERT_EQ(count(log, CF_EVENT_WORKER_START), 1);
    ASSERT_EQ(count(log, CF_EVENT_WORKER_EXIT), 1);
    cf_future_release(f);
    log_free(log);
}

TEST_TIMEOUT(process_crash_survived_names_the_worker, 60)
{
    event_log *log = log_new();
    cf_process_pool_options o = {.max_workers = 1,
                                 .survive_worker_death = true};
    cf_executor *ex = monitored_pool(&o, record, log);
    cf_future *bad, *good;
    ASSERT_OK(cf_executor_submit(ex, task_abort, NULL, &bad));
    ASSERT_CODE(cf_future_result(bad, 30, NULL), CF_EBROKEN_PROCESS_POOL);
    ASSERT_OK(cf_executor_submit(ex, task_square, (void *)5, &good));
    ASSERT_OK(cf_future_result(good, 30, NULL));
    WAIT_UNTIL(stats_of(ex).finished == 2, 30); /* as above */
    cf_executor_stats st = stats_of(ex);
    ASSERT_EQ(st.finished, 2);
    ASSERT_EQ(st.failed, 1);
    cf_executor_free(ex);
    ASSERT_EQ(count(log, CF_EVENT_CRASH), 1);
    int c = find(log, CF_EVENT_CRASH, NULL);
    ASSERT_EQ(log->ev[c].worker, 0);
    ASSERT(contains(log->crash_message, "SIGABRT"));
    /* The dead worker and its replacement. */
    ASSERT_EQ(count(log, CF_EVENT_WORKER_START), 2);
    ASSERT_EQ(count(log, CF_EVENT_WORKER_EXIT), 2);
    cf_future_release(bad);
    cf_future_release(good);
    log_free(log);
}
