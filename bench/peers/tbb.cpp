/* tbb.cpp - oneTBB's task_group on the same workloads.
 *
 * "WORKERS" worker threads plus the submitting thread form the arena, as in
 * the other contenders; unlike them, TBB's submitting thread also runs
 * tasks inside wait(), and a single run()+wait() usually runs the task on
 * the waiting thread itself, so W2 for TBB is not a cross-thread hand-off.
 *
 *     tbb w1 N WORKERS [ROUNDS]   run N empty tasks, wait for all
 *     tbb w2 N           run one, wait for it; N round trips
 *     tbb mem N          RSS per pending task (the only worker held)
 */
#include <tbb/global_control.h>
#include <tbb/task_arena.h>
#include <tbb/task_group.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "../bench.h"

static void run_w1(long n, int workers, int rounds)
{
    tbb::global_control limit(tbb::global_control::max_allowed_parallelism,
                              workers + 1);
    tbb::task_arena arena(workers + 1);
    bench_w1_clock clock;
    bench_w1_clock_init(&clock, rounds);
    arena.execute([&] {
        tbb::task_group g;
        g.run([] {}); /* warm up */
        g.wait();
        for (int r = 0; r < rounds; r++) {
            bench_w1_round_start(&clock);
            for (long i = 0; i < n; i++)
                g.run([] {});
            g.wait();
            bench_w1_round_end(&clock);
        }
    });
    bench_w1_report(&clock, "onetbb", workers, n);
}

static void run_w2(long n)
{
    tbb::global_control limit(tbb::global_control::max_allowed_parallelism,
                              2);
    tbb::task_arena arena(2);
    double *lat = (double *)bench_xmalloc((size_t)n * sizeof *lat);
    arena.execute([&] {
        tbb::task_group g;
        for (int i = 0; i < 1000; i++) { /* warm up */
            g.run([] {});
            g.wait();
        }
        for (long i = 0; i < n; i++) {
            int64_t t0 = bench_now_ns();
            g.run([] {});
            g.wait();
            lat[i] = (double)(bench_now_ns() - t0);
        }
    });
    bench_lat s = bench_latency_stats(lat, (size_t)n);
    printf("w2 onetbb n=%ld mean_us=%.2f p50_us=%.2f p99_us=%.2f\n", n,
           s.mean_us, s.p50_us, s.p99_us);
    free(lat);
}

static void run_mem(long n)
{
    tbb::global_control limit(tbb::global_control::max_allowed_parallelism,
                              2);
    tbb::task_arena arena(2);
    std::mutex gate_lock;
    std::condition_variable gate_cond;
    bool gate_open = false;
    std::atomic<bool> held{false};
    long long before = 0, peak = 0;
    arena.execute([&] {
        tbb::task_group g;
        g.run([&] {
            held = true;
            std::unique_lock<std::mutex> l(gate_lock);
            gate_cond.wait(l, [&] { return gate_open; });
        });
        /* The worker must have taken the holding task before the rest is
         * queued, or it would just run them. Poll with a deadline. */
        int64_t deadline = bench_now_ns() + 10000000000LL;
        while (!held.load()) {
            if (bench_now_ns() > deadline)
                bench_die("tbb: no worker took the holding task");
            std::this_thread::yield();
        }
        before = bench_status_bytes("VmRSS");
        for (long i = 0; i < n; i++)
            g.run([] {});
        peak = bench_status_bytes("VmHWM");
        {
            std::lock_guard<std::mutex> l(gate_lock);
            gate_open = true;
        }
        gate_cond.notify_all();
        g.wait();
    });
    printf("mem onetbb n=%ld bytes_per_task=%.1f peak_rss_mb=%.1f\n", n,
           (double)(peak - before) / (double)n, (double)peak / 1048576.0);
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
        bench_die("usage: tbb w1|w2|mem [args]");
    return 0;
}
