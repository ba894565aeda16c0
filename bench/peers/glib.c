/* glib.c - GLib's GThreadPool on the same workloads.
 *
 * GThreadPool has no futures either: an item is a non-NULL pointer pushed to
 * the pool. "Wait for all" is a completion counter the last task signals;
 * a round trip waits on a GAsyncQueue the task replies to.
 *
 *     glib w1 N WORKERS [ROUNDS]   push N empty items, wait for all
 *     glib w2 N           push one, pop its reply; N round trips
 *     glib mem N          RSS per pending item (the only worker held)
 */
#include <glib.h>

#include "../bench.h"

static gint remaining;
static GMutex done_lock;
static GCond done_cond;
static gboolean all_done;
static GAsyncQueue *replies;

static void count_down(gpointer data, gpointer user)
{
    (void)data;
    (void)user;
    if (g_atomic_int_dec_and_test(&remaining)) {
        g_mutex_lock(&done_lock);
        all_done = TRUE;
        g_cond_signal(&done_cond);
        g_mutex_unlock(&done_lock);
    }
}

static void wait_all(void)
{
    g_mutex_lock(&done_lock);
    while (!all_done)
        g_cond_wait(&done_cond, &done_lock);
    all_done = FALSE;
    g_mutex_unlock(&done_lock);
}

static GThreadPool *pool_new(GFunc fn, int workers)
{
    GError *error = NULL;
    /* Exclusive: the threads start now and belong to this pool. */
    GThreadPool *pool = g_thread_pool_new(fn, NULL, workers, TRUE, &error);
    if (pool == NULL)
        bench_die("g_thread_pool_new: %s", error->message);
    return pool;
}

static void push(GThreadPool *pool, long i)
{
    GError *error = NULL;
    if (!g_thread_pool_push(pool, GSIZE_TO_POINTER((gsize)i + 1), &error))
        bench_die("g_thread_pool_push: %s", error->message);
}

static void run_w1(long n, int workers, int rounds)
{
    GThreadPool *pool = pool_new(count_down, workers);
    g_atomic_int_set(&remaining, 1); /* warm up */
    push(pool, 0);
    wait_all();
    bench_w1_clock clock;
    bench_w1_clock_init(&clock, rounds);
    for (int r = 0; r < rounds; r++) {
        bench_w1_round_start(&clock);
        g_atomic_int_set(&remaining, (gint)n);
        for (long i = 0; i < n; i++)
            push(pool, i);
        wait_all();
        bench_w1_round_end(&clock);
    }
    bench_w1_report(&clock, "glib", workers, n);
    g_thread_pool_free(pool, FALSE, TRUE);
}

static void reply(gpointer data, gpointer user)
{
    (void)user;
    g_async_queue_push(replies, data);
}

static void run_w2(long n)
{
    replies = g_async_queue_new();
    GThreadPool *pool = pool_new(reply, 1);
    double *lat = bench_xmalloc((size_t)n * sizeof *lat);
    for (int i = 0; i < 1000; i++) { /* warm up */
        push(pool, i);
        g_async_queue_pop(replies);
    }
    for (long i = 0; i < n; i++) {
        int64_t t0 = bench_now_ns();
        push(pool, i);
        g_async_queue_pop(replies);
        lat[i] = (double)(bench_now_ns() - t0);
    }
    bench_lat s = bench_latency_stats(lat, (size_t)n);
    printf("w2 glib n=%ld mean_us=%.2f p50_us=%.2f p99_us=%.2f\n", n,
           s.mean_us, s.p50_us, s.p99_us);
    free(lat);
    g_thread_pool_free(pool, FALSE, TRUE);
    g_async_queue_unref(replies);
}

static GMutex gate_lock;
static GCond gate_cond;
static gboolean gate_open;

static void hold_then_count(gpointer data, gpointer user)
{
    if (GPOINTER_TO_SIZE(data) == 1) { /* the first item holds the worker */
        g_mutex_lock(&gate_lock);
        while (!gate_open)
            g_cond_wait(&gate_cond, &gate_lock);
        g_mutex_unlock(&gate_lock);
    }
    count_down(data, user);
}

static void run_mem(long n)
{
    GThreadPool *pool = pool_new(hold_then_count, 1);
    g_atomic_int_set(&remaining, (gint)n + 1);
    push(pool, 0);
    long long before = bench_status_bytes("VmRSS");
    for (long i = 1; i <= n; i++)
        push(pool, i);
    long long peak = bench_status_bytes("VmHWM");
    g_mutex_lock(&gate_lock);
    gate_open = TRUE;
    g_cond_broadcast(&gate_cond);
    g_mutex_unlock(&gate_lock);
    wait_all();
    printf("mem glib n=%ld bytes_per_task=%.1f peak_rss_mb=%.1f\n", n,
           (double)(peak - before) / (double)n, (double)peak / 1048576.0);
    g_thread_pool_free(pool, FALSE, TRUE);
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
        bench_die("usage: glib w1|w2|mem [args]");
    return 0;
}
