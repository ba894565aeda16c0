/* pool_trace.c - watching a thread pool: a stats line while it works, and
 * a Chrome trace of every task (open the file in chrome://tracing or
 * https://ui.perfetto.dev: one row per worker, one bar per task).
 *
 *     pool_trace [trace.json]      (default: cfutures-trace.json)
 */
#include <cfutures.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>

static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;
static FILE *out;
static int events;

/* Called on the worker that finished the task: a "complete" event (ph X)
 * with its start and duration in microseconds. */
static void trace(const cf_event *ev, void *arg)
{
    (void)arg;
    if (ev->kind != CF_EVENT_FINISH && ev->kind != CF_EVENT_WORKER_START)
        return;
    pthread_mutex_lock(&out_lock);
    if (ev->kind == CF_EVENT_WORKER_START)
        fprintf(out, "%s{\"ph\":\"M\",\"name\":\"thread_name\",\"pid\":1,"
                "\"tid\":%d,\"args\":{\"name\":\"worker %d\"}}",
                events++ ? ",\n" : "", ev->worker, ev->worker);
    else if (ev->worker >= 0) /* ran: a cancelled task has no bar */
        fprintf(out, "%s{\"ph\":\"X\",\"name\":\"%s\",\"pid\":1,\"tid\":%d,"
                "\"ts\":%.1f,\"dur\":%.1f}",
                events++ ? ",\n" : "", ev->code ? "failed" : "task",
                ev->worker, (ev->time - ev->duration) * 1e6,
                ev->duration * 1e6);
    pthread_mutex_unlock(&out_lock);
}

/* Work of uneven length: task i spins for i % 7 steps (0 to ~0.5 ms). */
static volatile uint64_t sink;
static void *work(void *arg, cf_call *call)
{
    uint64_t x = 0;
    for (intptr_t i = 0; i < (intptr_t)arg % 7 * 200000; i++)
        x += (uint64_t)i * (uint64_t)i;
    sink = x;
    return (intptr_t)arg % 50 == 49 ? cf_fail(call, 1, "unlucky") : NULL;
}

static void print_stats(cf_executor *ex)
{
    cf_executor_stats s;
    if (cf_executor_get_stats(ex, &s) != CF_OK)
        return;
    printf("submitted %llu queued %llu running %llu finished %llu "
           "failed %llu | workers %d idle %d | wait p50 %.0f us p99 %.0f us "
           "| run p50 %.0f us p99 %.0f us\n",
           (unsigned long long)s.submitted, (unsigned long long)s.queued,
           (unsigned long long)s.running, (unsigned long long)s.finished,
           (unsigned long long)s.failed, s.workers_alive, s.workers_idle,
           s.queue_wait.p50 * 1e6, s.queue_wait.p99 * 1e6,
           s.run_time.p50 * 1e6, s.run_time.p99 * 1e6);
}

int main(int argc, char **argv)
{
    enum { N = 400 };
    const char *path = argc > 1 ? argv[1] : "cfutures-trace.json";
    cf_thread_pool_options popts = {.max_workers = 3};
    cf_monitor_options mopts = {.stats = true, .observer = trace};
    cf_executor *ex = NULL;
    cf_future *fs[N];
    if (!(out = fopen(path, "w")) || cf_thread_pool_new(&popts, &ex) != CF_OK ||
        cf_executor_monitor(ex, &mopts) != CF_OK)
        return 1;
    fputs("{\"traceEvents\":[\n", out);
    for (intptr_t i = 0; i < N; i++)
        if (cf_executor_submit(ex, work, (void *)i, &fs[i]) != CF_OK)
            return 1;
    size_t left = N;
    while (left > 0) { /* a stats line every 10 ms until all are done */
        print_stats(ex);
        if (cf_wait(fs, N, 0.01, CF_ALL_COMPLETED, NULL, NULL, NULL,
                    &left) != CF_OK)
            return 1;
    }
    /* Once the workers are gone, every event has been written. */
    if (cf_executor_shutdown(ex, true, false) != CF_OK)
        return 1;
    print_stats(ex);
    cf_executor_free(ex);
    fputs("\n]}\n", out);
    int failed = 0;
    for (int i = 0; i < N; i++) {
        failed += cf_future_result(fs[i], 0, NULL) != CF_OK;
        cf_future_release(fs[i]);
    }
    printf("%d tasks, %d failed, %d trace events in %s\n", N, failed, events,
           path);
    return fclose(out) == 0 && failed == N / 50 ? 0 : 1;
}
