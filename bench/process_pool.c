/* process_pool.c - W4: N tiny tasks (return x + 1) on a two-process pool,
 * by submit/result, or by map with a given chunksize.
 *
 *     bench_process_pool N submit|map1|map100
 *
 * The clock runs from the first submit (or the map call) until the last
 * result has been read and checked. The workers are started beforehand.
 */
#include "cfutures.h"

#include "bench.h"

static void *inc(void *arg, cf_call *call)
{
    (void)call;
    return (void *)((intptr_t)arg + 1);
}

static void by_submit(cf_executor *ex, long n)
{
    cf_future **fs = bench_xmalloc((size_t)n * sizeof *fs);
    for (long i = 0; i < n; i++)
        BENCH_CHECK(cf_executor_submit(ex, inc, (void *)(intptr_t)i, &fs[i]));
    for (long i = 0; i < n; i++) {
        void *value;
        BENCH_CHECK(cf_future_result(fs[i], CF_FOREVER, &value));
        if ((intptr_t)value != i + 1)
            bench_die("task %ld returned %ld", i, (long)(intptr_t)value);
        cf_future_release(fs[i]);
    }
    free(fs);
}

static void by_map(cf_executor *ex, long n, size_t chunksize)
{
    void **args = bench_xmalloc((size_t)n * sizeof *args);
    for (long i = 0; i < n; i++)
        args[i] = (void *)(intptr_t)i;
    cf_map_options opts = {0};
    opts.chunksize = chunksize;
    cf_map *m;
    BENCH_CHECK(cf_executor_map(ex, inc, args, (size_t)n, &opts, &m));
    for (long i = 0; i < n; i++) {
        void *value;
        cf_error error;
        BENCH_CHECK(cf_map_next(m, &value, &error));
        if ((intptr_t)value != i + 1)
            bench_die("item %ld returned %ld", i, (long)(intptr_t)value);
    }
    void *extra;
    if (cf_map_next(m, &extra, NULL) != CF_EEND)
        bench_die("map returned more results than inputs");
    cf_map_free(m);
    free(args);
}

static void run(cf_executor *ex, long n, const char *method)
{
    if (strcmp(method, "submit") == 0)
        by_submit(ex, n);
    else if (strcmp(method, "map1") == 0)
        by_map(ex, n, 1);
    else if (strcmp(method, "map100") == 0)
        by_map(ex, n, 100);
    else
        bench_die("usage: bench_process_pool N submit|map1|map100");
}

int main(int argc, char **argv)
{
    long n = bench_arg(argc, argv, 1, 10000);
    const char *method = argc > 2 ? argv[2] : "submit";
    cf_process_pool_options opts = {0};
    opts.max_workers = 2;
    cf_executor *ex;
    BENCH_CHECK(cf_process_pool_new(&opts, &ex));

    run(ex, 100, "map1"); /* warm up: start the workers */
    int64_t t0 = bench_now_ns();
    run(ex, n, method);
    double ns = (double)(bench_now_ns() - t0) / (double)n;

    printf("w4 cfutures method=%s n=%ld ns_per_task=%.1f tasks_per_s=%.0f\n",
           method, n, ns, 1e9 / ns);
    cf_executor_free(ex);
    return 0;
}
