/* primes.c - W5: the spec's ProcessPoolExecutor example (is_prime over
 * PRIMES, by map), its list repeated REPS times so that the run is long
 * enough to time, on a process pool, a thread pool, or a plain serial loop.
 *
 *     bench_primes serial|thread|process [WORKERS=2] [REPS=1]
 *
 * The clock includes creating and freeing the pool, as the spec's `with`
 * block does.
 */
#include "cfutures.h"

#include "bench.h"

static void *is_prime_task(void *arg, cf_call *call)
{
    (void)call;
    return (void *)(intptr_t)bench_is_prime((uint64_t)(uintptr_t)arg);
}

static void check(size_t i, int answer)
{
    if (answer != bench_primes_expected[i % BENCH_NPRIMES])
        bench_die("wrong answer for %llu",
                  (unsigned long long)bench_primes[i % BENCH_NPRIMES]);
}

static void run_serial(size_t n)
{
    for (size_t i = 0; i < n; i++)
        check(i, bench_is_prime(bench_primes[i % BENCH_NPRIMES]));
}

static void run_pool(cf_executor *ex, size_t n)
{
    void **args = bench_xmalloc(n * sizeof *args);
    for (size_t i = 0; i < n; i++)
        args[i] = (void *)(uintptr_t)bench_primes[i % BENCH_NPRIMES];
    cf_map *m;
    BENCH_CHECK(cf_executor_map(ex, is_prime_task, args, n, NULL, &m));
    for (size_t i = 0; i < n; i++) {
        void *value;
        BENCH_CHECK(cf_map_next(m, &value, NULL));
        check(i, (int)(intptr_t)value);
    }
    cf_map_free(m);
    free(args);
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "serial";
    int workers = (int)bench_arg(argc, argv, 2, 2);
    long reps = bench_arg(argc, argv, 3, 1);
    size_t n = BENCH_NPRIMES * (size_t)reps;

    int64_t t0 = bench_now_ns();
    if (strcmp(mode, "serial") == 0) {
        run_serial(n);
        workers = 1; /* a loop on the calling thread */
    } else if (strcmp(mode, "thread") == 0) {
        cf_executor *ex = bench_thread_pool(workers);
        run_pool(ex, n);
        cf_executor_free(ex);
    } else if (strcmp(mode, "process") == 0) {
        cf_process_pool_options opts = {0};
        opts.max_workers = workers;
        cf_executor *ex;
        BENCH_CHECK(cf_process_pool_new(&opts, &ex));
        run_pool(ex, n);
        cf_executor_free(ex);
    } else {
        bench_die("usage: bench_primes serial|thread|process [WORKERS] "
                  "[REPS]");
    }
    double s = (double)(bench_now_ns() - t0) / 1e9;
    const char *name = strcmp(mode, "serial") == 0   ? "serial_c"
                       : strcmp(mode, "thread") == 0 ? "cfutures_thread"
                                                     : "cfutures_process";
    printf("w5 %s workers=%d reps=%ld seconds=%.3f\n", name, workers, reps,
           s);
    return 0;
}
