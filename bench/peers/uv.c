/* uv.c - libuv's thread pool (uv_queue_work) on the same workloads.
 *
 * libuv has no futures: a uv_work_t is the handle, its after-work callback
 * runs on the loop thread, and "wait for all" is uv_run() returning once no
 * work is left. The pool size comes from UV_THREADPOOL_SIZE, set before the
 * pool's first use.
 *
 *     uv w1 N WORKERS [ROUNDS]  queue N empty work items, run the loop
 *                       until done (ROUNDS times: bench_w1_clock)
 *     uv w2 N           queue one, run the loop until done; N round trips
 *     uv mem N          RSS per pending item (the only worker held)
 */
#include <pthread.h>
#include <stdbool.h>
#include <uv.h>

#include "../bench.h"

static long completed;

static void noop_work(uv_work_t *req)
{
    (void)req;
}

static void count_done(uv_work_t *req, int status)
{
    (void)req;
    if (status != 0)
        bench_die("uv work failed: %s", uv_strerror(status));
    completed++;
}

static void set_pool_size(int workers)
{
    char buf[16];
    snprintf(buf, sizeof buf, "%d", workers);
    setenv("UV_THREADPOOL_SIZE", buf, 1);
}

static void queue(uv_loop_t *loop, uv_work_t *req, uv_work_cb work)
{
    int err = uv_queue_work(loop, req, work, count_done);
    if (err != 0)
        bench_die("uv_queue_work: %s", uv_strerror(err));
}

static void run_w1(long n, int workers, int rounds)
{
    set_pool_size(workers);
    uv_loop_t *loop = uv_default_loop();
    uv_work_t *reqs = bench_xmalloc((size_t)n * sizeof *reqs);
    queue(loop, &reqs[0], noop_work); /* warm up: starts the pool */
    uv_run(loop, UV_RUN_DEFAULT);
    bench_w1_clock clock;
    bench_w1_clock_init(&clock, rounds);
    for (int r = 0; r < rounds; r++) {
        completed = 0;
        bench_w1_round_start(&clock);
        for (long i = 0; i < n; i++)
            queue(loop, &reqs[i], noop_work);
        uv_run(loop, UV_RUN_DEFAULT);
        bench_w1_round_end(&clock);
        if (completed != n)
            bench_die("uv: %ld of %ld completed", completed, n);
    }
    bench_w1_report(&clock, "libuv", workers, n);
    free(reqs);
}

static void run_w2(long n)
{
    set_pool_size(1);
    uv_loop_t *loop = uv_default_loop();
    uv_work_t req;
    double *lat = bench_xmalloc((size_t)n * sizeof *lat);
    for (int i = 0; i < 1000; i++) { /* warm up */
        queue(loop, &req, noop_work);
        uv_run(loop, UV_RUN_DEFAULT);
    }
    for (long i = 0; i < n; i++) {
        int64_t t0 = bench_now_ns();
        queue(loop, &req, noop_work);
        uv_run(loop, UV_RUN_DEFAULT);
        lat[i] = (double)(bench_now_ns() - t0);
    }
    bench_lat s = bench_latency_stats(lat, (size_t)n);
    printf("w2 libuv n=%ld mean_us=%.2f p50_us=%.2f p99_us=%.2f\n", n,
           s.mean_us, s.p50_us, s.p99_us);
    free(lat);
}

static pthread_mutex_t gate_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cond = PTHREAD_COND_INITIALIZER;
static bool gate_open;

static void hold_work(uv_work_t *req)
{
    (void)req;
    pthread_mutex_lock(&gate_lock);
    while (!gate_open)
        pthread_cond_wait(&gate_cond, &gate_lock);
    pthread_mutex_unlock(&gate_lock);
}

static void run_mem(long n)
{
    set_pool_size(1);
    uv_loop_t *loop = uv_default_loop();
    uv_work_t held;
    queue(loop, &held, hold_work);
    long long before = bench_status_bytes("VmRSS");
    /* The caller owns each pending item's memory: it is counted. */
    uv_work_t *reqs = bench_xmalloc((size_t)n * sizeof *reqs);
    for (long i = 0; i < n; i++)
        queue(loop, &reqs[i], noop_work);
    long long peak = bench_status_bytes("VmHWM");
    pthread_mutex_lock(&gate_lock);
    gate_open = true;
    pthread_cond_broadcast(&gate_cond);
    pthread_mutex_unlock(&gate_lock);
    uv_run(loop, UV_RUN_DEFAULT);
    printf("mem libuv n=%ld bytes_per_task=%.1f peak_rss_mb=%.1f\n", n,
           (double)(peak - before) / (double)n, (double)peak / 1048576.0);
    free(reqs);
}

int main(int argc, char **argv)
{
    const char *what = argc > 1 ? argv[1] : "";
    if (strcmp(what, "w1") == 0)
        run_w1(bench_arg(argc, argv, 2, 1000000),
               (int)bench_arg(argc, argv, 3, 1),
               (int)bench_arg(argc, argv, 4, 1));
    else if (strcmp(what, "w2") == 0)
        run_w2(bench_arg(argc, argv, 2, 100000));
    else if (strcmp(what, "mem") == 0)
        run_mem(bench_arg(argc, argv, 2, 1000000));
    else
        bench_die("usage: uv w1|w2|mem [args]");
    uv_loop_close(uv_default_loop());
    return 0;
}
