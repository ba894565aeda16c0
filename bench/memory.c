/* memory.c - RSS per pending task: N futures queued behind a task that holds
 * the pool's only worker, reported as bytes per pending task.
 *
 *     bench_memory [N=1000000]
 *
 * The handle array is allocated and touched before the baseline, so only
 * what the library allocates per task is counted (VmHWM after the submits
 * minus VmRSS before them).
 */
#include <pthread.h>

#include "cfutures.h"

#include "bench.h"

static pthread_mutex_t gate_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cond = PTHREAD_COND_INITIALIZER;
static bool gate_open;

static void *hold(void *arg, cf_call *call)
{
    (void)call;
    pthread_mutex_lock(&gate_lock);
    while (!gate_open)
        pthread_cond_wait(&gate_cond, &gate_lock);
    pthread_mutex_unlock(&gate_lock);
    return arg;
}

static void *noop(void *arg, cf_call *call)
{
    (void)call;
    return arg;
}

int main(int argc, char **argv)
{
    long n = bench_arg(argc, argv, 1, 1000000);
    cf_executor *ex = bench_thread_pool(1);
    cf_future **fs = bench_xmalloc((size_t)n * sizeof *fs);
    cf_future *held;

    BENCH_CHECK(cf_executor_submit(ex, hold, NULL, &held));
    long long before = bench_status_bytes("VmRSS");
    for (long i = 0; i < n; i++)
        BENCH_CHECK(cf_executor_submit(ex, noop, NULL, &fs[i]));
    long long peak = bench_status_bytes("VmHWM");
    size_t pending = 0;
    for (long i = 0; i < n; i++)
        pending += !cf_future_done(fs[i]);

    pthread_mutex_lock(&gate_lock);
    gate_open = true;
    pthread_cond_broadcast(&gate_cond);
    pthread_mutex_unlock(&gate_lock);
    BENCH_CHECK(cf_wait(fs, (size_t)n, CF_FOREVER, CF_ALL_COMPLETED, NULL,
                        NULL, NULL, NULL));
    if (pending != (size_t)n)
        bench_die("only %zu of %ld futures were pending", pending, n);
    printf("mem cfutures n=%ld bytes_per_task=%.1f peak_rss_mb=%.1f\n", n,
           (double)(peak - before) / (double)n, (double)peak / 1048576.0);
    cf_future_release(held);
    for (long i = 0; i < n; i++)
        cf_future_release(fs[i]);
    free(fs);
    cf_executor_free(ex);
    return 0;
}
