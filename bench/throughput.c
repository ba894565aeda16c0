/* throughput.c - W1: submit N empty tasks, each returning a future, then
 * wait for all of them; ns per task and tasks per second.
 *
 *     bench_throughput [N=1000000] [WORKERS=1] [MONITOR=0] [ROUNDS=1] [WAIT=all]
 *
 * MONITOR 1 turns on the pool's stats (cf_executor_monitor), 2 also an
 * observer that counts events: what leaving them on costs a task.
 * The clock runs from the first submit until every future has been waited
 * for (cf_wait, ALL_COMPLETED) and released: a future's whole life.
 * ROUNDS > 1 repeats that on the same pool and reports the median round
 * after the first (bench_w1_clock: a pool that has already run work).
 * WAIT `each` waits the way a loop over the results does instead: the
 * result of each future in submit order, then its release.
 */
#include "cfutures.h"

#include <stdatomic.h>

#include "bench.h"

static void *noop(void *arg, cf_call *call)
{
    (void)call;
    return arg;
}

static atomic_long events;

static void count_event(const cf_event *ev, void *arg)
{
    (void)ev;
    (void)arg;
    atomic_fetch_add_explicit(&events, 1, memory_order_relaxed);
}

int main(int argc, char **argv)
{
    long n = bench_arg(argc, argv, 1, 1000000);
    int workers = (int)bench_arg(argc, argv, 2, 1);
    long monitor = argc > 3 ? strtol(argv[3], NULL, 10) : 0;
    int rounds = (int)bench_arg(argc, argv, 4, 1);
    bool each = argc > 5 && strcmp(argv[5], "each") == 0;
    if (argc > 5 && !each && strcmp(argv[5], "all") != 0)
        bench_die("WAIT is all or each, not %s", argv[5]);
    cf_executor *ex = bench_thread_pool(workers);
    if (monitor) {
        cf_monitor_options o = {.stats = true,
                                .observer = monitor > 1 ? count_event : NULL};
        BENCH_CHECK(cf_executor_monitor(ex, &o));
    }
    cf_future **fs = bench_xmalloc((size_t)n * sizeof *fs);

    for (long i = 0; i < 1000; i++) /* warm up: start the workers */
        BENCH_CHECK(cf_executor_submit(ex, noop, NULL, &fs[i]));
    BENCH_CHECK(cf_wait(fs, 1000, CF_FOREVER, CF_ALL_COMPLETED, NULL, NULL,
                        NULL, NULL));
    for (long i = 0; i < 1000; i++)
        cf_future_release(fs[i]);

    bench_w1_clock clock;
    bench_w1_clock_init(&clock, rounds);
    for (int r = 0; r < rounds; r++) {
        bench_w1_round_start(&clock);
        for (long i = 0; i < n; i++)
            BENCH_CHECK(cf_executor_submit(ex, noop, NULL, &fs[i]));
        size_t n_done = 0;
        if (each) {
            for (long i = 0; i < n; i++, n_done++) {
                BENCH_CHECK(cf_future_result(fs[i], CF_FOREVER, NULL));
                cf_future_release(fs[i]);
            }
        } else {
            BENCH_CHECK(cf_wait(fs, (size_t)n, CF_FOREVER, CF_ALL_COMPLETED,
                                NULL, &n_done, NULL, NULL));
            for (long i = 0; i < n; i++)
                cf_future_release(fs[i]);
        }
        bench_w1_round_end(&clock);
        if (n_done != (size_t)n)
            bench_die("%zu of %ld futures done", n_done, n);
    }
    static const char *const names[2][3] = {
        {"cfutures", "cfutures_stats", "cfutures_stats_observer"},
        {"cfutures_each", "cfutures_each_stats",
         "cfutures_each_stats_observer"}};
    bench_w1_report(&clock, names[each][monitor == 0 ? 0 : monitor == 1 ? 1 : 2],
                    workers, n);
    free(fs);
    cf_executor_free(ex);
    return 0;
}
