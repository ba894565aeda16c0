/* process_latency.c - W4 round trip: submit one tiny task (x + 1) to a
 * two-process pool, wait for its result, repeat; mean, p50 and p99
 * microseconds per round trip.
 *
 *     bench_process_latency [N=10000]
 */
#include "cfutures.h"

#include "bench.h"

static void *inc(void *arg, cf_call *call)
{
    (void)call;
    return (void *)((intptr_t)arg + 1);
}

static void round_trip(cf_executor *ex, long i)
{
    cf_future *f;
    void *value;
    BENCH_CHECK(cf_executor_submit(ex, inc, (void *)(intptr_t)i, &f));
    BENCH_CHECK(cf_future_result(f, CF_FOREVER, &value));
    if ((intptr_t)value != i + 1)
        bench_die("round trip %ld returned %ld", i, (long)(intptr_t)value);
    cf_future_release(f);
}

int main(int argc, char **argv)
{
    long n = bench_arg(argc, argv, 1, 10000);
    cf_process_pool_options opts = {0};
    opts.max_workers = 2;
    cf_executor *ex;
    BENCH_CHECK(cf_process_pool_new(&opts, &ex));
    double *lat = bench_xmalloc((size_t)n * sizeof *lat);

    for (long i = 0; i < 100; i++) /* warm up: start the workers */
        round_trip(ex, i);
    for (long i = 0; i < n; i++) {
        int64_t t0 = bench_now_ns();
        round_trip(ex, i);
        lat[i] = (double)(bench_now_ns() - t0);
    }

    bench_lat s = bench_latency_stats(lat, (size_t)n);
    printf("w4lat cfutures n=%ld mean_us=%.2f p50_us=%.2f p99_us=%.2f\n", n,
           s.mean_us, s.p50_us, s.p99_us);
    free(lat);
    cf_executor_free(ex);
    return 0;
}
