/* omp.c - OpenMP tasks on the same workloads.
 *
 * A team of WORKERS + 1 threads; one thread (in `single`) creates the
 * tasks, the others run them, and the creator joins in at taskwait. libgomp
 * runs a task at once on the creating thread when too many are queued (64
 * per thread), so a pending-memory figure would not mean anything and W2
 * often runs on the waiting thread itself.
 *
 *     omp w1 N WORKERS [ROUNDS]   create N empty tasks, taskwait
 *     omp w2 N           create one, taskwait; N round trips
 */
#include <omp.h>

#include "../bench.h"

static volatile long sink;

static void run_w1(long n, int workers, int rounds)
{
    bench_w1_clock clock;
    bench_w1_clock_init(&clock, rounds);
#pragma omp parallel num_threads(workers + 1)
#pragma omp single
    {
#pragma omp task
        sink++; /* warm up */
#pragma omp taskwait
        for (int r = 0; r < rounds; r++) {
            bench_w1_round_start(&clock);
            for (long i = 0; i < n; i++) {
#pragma omp task
                (void)sink;
            }
#pragma omp taskwait
            bench_w1_round_end(&clock);
        }
    }
    bench_w1_report(&clock, "openmp", workers, n);
}

static void run_w2(long n)
{
    double *lat = bench_xmalloc((size_t)n * sizeof *lat);
#pragma omp parallel num_threads(2)
#pragma omp single
    {
        for (long i = -1000; i < n; i++) { /* 1000 rounds of warm up */
            int64_t t0 = bench_now_ns();
#pragma omp task
            (void)sink;
#pragma omp taskwait
            if (i >= 0)
                lat[i] = (double)(bench_now_ns() - t0);
        }
    }
    bench_lat s = bench_latency_stats(lat, (size_t)n);
    printf("w2 openmp n=%ld mean_us=%.2f p50_us=%.2f p99_us=%.2f\n", n,
           s.mean_us, s.p50_us, s.p99_us);
    free(lat);
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
    else
        bench_die("usage: omp w1|w2 [args]");
    return 0;
}
