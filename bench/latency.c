/* latency.c - W2: submit one empty task, wait for its result, repeat;
 * mean, p50 and p99 microseconds per round trip on a one-worker pool.
 *
 *     bench_latency [N=100000]
 */
#include "cfutures.h"

#include "bench.h"

static void *noop(void *arg, cf_call *call)
{
    (void)call;
    return arg;
}

/* One round trip: submit, wait for the result, release. */
static void round_trip(cf_executor *ex, long i)
{
    cf_future *f;
    void *value;
    BENCH_CHECK(cf_executor_submit(ex, noop, (void *)(intptr_t)i, &f));
    BENCH_CHECK(cf_future_result(f, CF_FOREVER, &value));
    if ((intptr_t)value != i)
        bench_die("round trip %ld returned %ld", i, (long)(intptr_t)value);
    cf_future_release(f);
}

int main(int argc, char **argv)
{
    long n = bench_arg(argc, argv, 1, 100000);
    cf_executor *ex = bench_thread_pool(1);
    double *lat = bench_xmalloc((size_t)n * sizeof *lat);

    for (long i = 0; i < 1000; i++) /* warm up */
        round_trip(ex, i);
    for (long i = 0; i < n; i++) {
        int64_t t0 = bench_now_ns();
        round_trip(ex, i);
        lat[i] = (double)(bench_now_ns() - t0);
    }

    bench_lat s = bench_latency_stats(lat, (size_t)n);
    printf("w2 cfutures n=%ld mean_us=%.2f p50_us=%.2f p99_us=%.2f\n", n,
           s.mean_us, s.p50_us, s.p99_us);
    free(lat);
    cf_executor_free(ex);
    return 0;
}
