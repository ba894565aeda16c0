/* test_soak.c - a bounded mixed workload whose memory must stay flat.
 *
 * Runs for $CF_SOAK_SECONDS (default 1 second, so CI stays fast; set e.g.
 * CF_SOAK_SECONDS=600 for a long soak) a mix of everything a program does:
 * submits in batches, callbacks, cancels, cf_wait, as_completed, map with
 * and without chunks, pools created and freed, and a process pool's map.
 * After a warm-up (a fifth of the time) the resident set size must not grow
 * by more than a small allowance: a leak of even one allocation per task
 * shows over a long run. The check is skipped under sanitizers and
 * valgrind, whose own bookkeeping grows (they report leaks themselves).
 */
#include "reltest.h"

#include <stdatomic.h>

static double soak_seconds(void)
{
    const char *s = getenv("CF_SOAK_SECONDS");
    double v = s ? atof(s) : 1.0;
    return v > 0 ? v : 1.0;
}

static int count_cb(cf_future *f, void *arg)
{
    (void)f;
    atomic_fetch_add((atomic_size_t *)arg, 1);
    return 0;
}

static void *task_mix(void *arg, cf_call *call)
{
    intptr_t i = (intptr_t)arg;
    if (i % 17 == 0)
        return cf_fail(call, 17, "task %ld fails on purpose", (long)i);
    return (void *)(i * 2);
}

typedef struct totals {
    size_t tasks, failed, cancelled;
    atomic_size_t callbacks;
    size_t callbacks_added;
} totals;

/* One round of thread-pool work. */
static void round_threads(cf_executor *ex, totals *t, intptr_t base)
{
    enum { BATCH = 64 };
    cf_future *fs[BATCH];
    for (int i = 0; i < BATCH; i++) {
        fs[i] = submit(ex, task_mix, (void *)(base + i));
        if (i % 4 == 0) {
            ASSERT_OK(cf_future_add_done_callback(fs[i], count_cb,
                                                  &t->callbacks));
            t->callbacks_added++;
        }
        if (i % 9 == 0 && cf_future_cancel(fs[i]))
            t->cancelled++;
    }
    size_t nd;
    ASSERT_OK(cf_wait(fs, BATCH / 2, 10, CF_FIRST_COMPLETED, NULL, &nd, NULL,
                      NULL));
    cf_as_completed *it;
    ASSERT_OK(cf_as_completed_new(fs, BATCH, 30, &it));
    cf_future *f;
    int rc;
    while ((rc = cf_as_completed_next(it, &f)) == CF_OK) {
        int r = cf_future_result(f, 0, NULL);
        ASSERT(r == CF_OK || r == CF_ETASK || r == CF_ECANCELLED);
        t->failed += r == CF_ETASK;
        cf_future_release(f);
    }
    ASSERT_CODE(rc, CF_EEND);
    cf_as_completed_free(it);
    for (int i = 0; i < BATCH; i++)
        cf_future_release(fs[i]);
    t->tasks += BATCH;

    void *args[32];
    for (int i = 0; i < 32; i++)
        args[i] = (void *)(base + i + 1);
    cf_map *m;
    ASSERT_OK(cf_executor_map(ex, task_double, args, 32,
                              &(cf_map_options){.chunksize =
                                                    (size_t)(base % 3) + 1,
                                                .buffersize = 8},
                              &m));
    void *v;
    for (int i = 0; i < 32; i++) {
        ASSERT_OK(cf_map_next(m, &v, NULL));
        ASSERT_EQ((intptr_t)v, 2 * (base + i + 1));
    }
    ASSERT_CODE(cf_map_next(m, &v, NULL), CF_EEND);
    cf_map_free(m);
    t->tasks += 32;
}

static void round_processes(cf_executor *pp, intptr_t base)
{
    void *args[16];
    for (int i = 0; i < 16; i++)
        args[i] = (void *)(base + i);
    cf_map *m;
    ASSERT_OK(cf_executor_map(pp, task_double, args, 16,
                              &(cf_map_options){.chunksize = 4}, &m));
    void *v;
    for (int i = 0; i < 16; i++) {
        ASSERT_OK(cf_map_next(m, &v, NULL));
        ASSERT_EQ((intptr_t)v, 2 * (base + i));
    }
    cf_map_free(m);
}

TEST_TIMEOUT(mixed_workload_memory_stays_flat, 3600)
{
    double seconds = soak_seconds(), t0 = harness_now();
    double warm_until = t0 + seconds / 5, end = t0 + seconds;
    totals t = {0};
    atomic_init(&t.callbacks, 0);
    cf_executor *pp;
    ASSERT_OK(cf_process_pool_new(&(cf_process_pool_options){.max_workers = 2},
                                  &pp));
    cf_executor *ex = pool_new(4);
    size_t rss_warm = 0, rss_peak = 0, rounds = 0;
    for (intptr_t base = 0; harness_now() < end || rounds < 3;
         base += 100, rounds++) {
        round_threads(ex, &t, base);
        if (rounds % 8 == 0)
            round_processes(pp, base);
        if (rounds % 16 == 15) { /* pools come and go too */
            cf_executor_free(ex);
            ex = pool_new(1 + (int)(rounds % 4));
        }
        size_t rss = reltest_rss();
        if (harness_now() < warm_until || rss_warm == 0)
            rss_warm = rss > rss_warm ? rss : rss_warm;
        else if (rss > rss_peak)
            rss_peak = rss;
    }
    cf_executor_free(ex);
    cf_executor_free(pp);
    ASSERT_EQ(atomic_load(&t.callbacks), t.callbacks_added);
    printf("soak: %.1f s, %zu rounds, %zu tasks (%zu failed, %zu cancelled), "
           "RSS after warm-up %zu KiB, peak after %zu KiB\n",
           harness_now() - t0, rounds, t.tasks, t.failed, t.cancelled,
           rss_warm / 1024, rss_peak / 1024);
    if (CORETEST_SANITIZED || RELTEST_TSAN || harness_under_valgrind())
        return;
    /* Allowance: allocator arenas settle in steps; a leak grows without
     * end. 2 MiB + 5% of the warm size. */
    size_t allowance = ((size_t)2 << 20) + rss_warm / 20;
    if (rss_peak > rss_warm + allowance)
        harness_fail(__FILE__, __LINE__,
                     "RSS grew from %zu KiB to %zu KiB after warm-up",
                     rss_warm / 1024, rss_peak / 1024);
}
