/* test_signal.c - blocking calls under a storm of signals.
 *
 * A program's signal handler interrupts whatever system call its thread is
 * in; without SA_RESTART the call fails with EINTR. The library promises
 * that its waits (cf_future_result, cf_wait, cf_as_completed_next,
 * cf_map_next, cf_executor_shutdown_timeout) neither return early nor late
 * because of that, and never report an error the wait did not have: each
 * test installs a SIGUSR1 handler without SA_RESTART, lets a storm thread
 * send signals to the waiting thread (pthread_kill) or to the process
 * (kill) in a bounded loop, and checks the code and the elapsed time.
 */
#include "reltest.h"

#include <stdatomic.h>
#include <time.h>

static atomic_size_t signals_seen;

static void on_signal(int sig)
{
    (void)sig;
    atomic_fetch_add_explicit(&signals_seen, 1, memory_order_relaxed);
}

static void install_handler(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0; /* no SA_RESTART: interrupted calls fail with EINTR */
    ASSERT_EQ(sigaction(SIGUSR1, &sa, NULL), 0);
}

typedef struct storm {
    pthread_t target;
    bool whole_process; /* kill() rather than pthread_kill() */
    atomic_bool stop;
    size_t sent;
    helper h;
} storm;

static void *storm_main(helper *h)
{
    storm *s = h->ctx;
    /* Bounded: at most 200k signals, about one every 20 us. */
    struct timespec gap = {0, 20000};
    for (s->sent = 0; !atomic_load(&s->stop) && s->sent < 200000;
         s->sent++) {
        if (s->whole_process)
            kill(getpid(), SIGUSR1);
        else
            pthread_kill(s->target, SIGUSR1);
        nanosleep(&gap, NULL);
    }
    return NULL;
}

static void storm_start(storm *s, bool whole_process)
{
    install_handler();
    s->target = pthread_self();
    s->whole_process = whole_process;
    atomic_init(&s->stop, false);
    size_t before = atomic_load(&signals_seen);
    helper_start(&s->h, storm_main, s);
    /* The storm is on once signals arrive. */
    WAIT_UNTIL(atomic_load(&signals_seen) > before + 5, 10);
}

static void storm_stop(storm *s)
{
    atomic_store(&s->stop, true);
    helper_join(&s->h);
}

/* Checks that a wait of `timeout` seconds took that long, give or take. */
static void assert_elapsed(double t0, double timeout, size_t signals_before)
{
    double took = harness_now() - t0;
    if (took < timeout - 0.002)
        harness_fail(__FILE__, __LINE__, "returned early: %.4f s of %.4f s",
                     took, timeout);
    if (took > timeout + reltest_late_tolerance())
        harness_fail(__FILE__, __LINE__, "returned late: %.4f s of %.4f s",
                     took, timeout);
    /* Only meaningful if signals really landed during the wait. */
    ASSERT(atomic_load(&signals_seen) > signals_before + 10);
}

static const double TIMEOUT = 0.2;

/* ------------------------------------------------------------------------ */

TEST(result_times_out_on_time_under_storm)
{
    storm s;
    storm_start(&s, false);
    cf_future *f = future_new();
    for (int round = 0; round < 2; round++) {
        size_t before = atomic_load(&signals_seen);
        double t0 = harness_now();
        void *v = (void *)0x5e17;
        ASSERT_CODE(cf_future_result(f, TIMEOUT, &v), CF_ETIMEDOUT);
        assert_elapsed(t0, TIMEOUT, before);
        cf_error e;
        t0 = harness_now();
        before = atomic_load(&signals_seen);
        ASSERT_CODE(cf_future_exception(f, TIMEOUT, &e), CF_ETIMEDOUT);
        assert_elapsed(t0, TIMEOUT, before);
    }
    storm_stop(&s);
    cf_future_release(f);
}

/* A task that lets `arg` seconds pass, then returns 1. Under the storm a
 * forever-wait for it must return its value, not early, not an error. */
static void *task_take_time(void *arg, cf_call *call)
{
    (void)call;
    let_time_pass(*(double *)arg);
    return (void *)1;
}

TEST(result_forever_returns_value_under_storm)
{
    storm s;
    storm_start(&s, true);
    cf_executor *pool = pool_new(1);
    double work = 0.2;
    for (int round = 0; round < 3; round++) {
        size_t before = atomic_load(&signals_seen);
        double t0 = harness_now();
        cf_future *f = submit(pool, task_take_time, &work);
        void *v = NULL;
        ASSERT_OK(cf_future_result(f, CF_FOREVER, &v));
        ASSERT_EQ((intptr_t)v, 1);
        assert_elapsed(t0, work, before);
        cf_future_release(f);
    }
    cf_executor_free(pool);
    storm_stop(&s);
}

TEST(wait_times_out_on_time_under_storm)
{
    storm s;
    storm_start(&s, false);
    cf_future *pending = future_new(), *done = future_done_with(NULL);
    cf_future *fs[] = {pending, done};
    const cf_return_when modes[] = {CF_ALL_COMPLETED, CF_FIRST_EXCEPTION};
    for (int m = 0; m < 2; m++) {
        size_t nd = 0, nn = 0, before = atomic_load(&signals_seen);
        double t0 = harness_now();
        ASSERT_OK(cf_wait(fs, 2, TIMEOUT, modes[m], NULL, &nd, NULL, &nn));
        assert_elapsed(t0, TIMEOUT, before);
        ASSERT_EQ(nd, 1);
        ASSERT_EQ(nn, 1);
    }
    storm_stop(&s);
    cf_future_release(pending);
    cf_future_release(done);
}

TEST(wait_first_completed_sees_completion_under_storm)
{
    storm s;
    storm_start(&s, true);
    cf_executor *pool = pool_new(1);
    cf_future *never = future_new();
    double work = 0.2;
    size_t before = atomic_load(&signals_seen);
    double t0 = harness_now();
    cf_future *f = submit(pool, task_take_time, &work);
    cf_future *fs[] = {never, f}, *done[2];
    size_t nd = 0;
    ASSERT_OK(cf_wait(fs, 2, CF_FOREVER, CF_FIRST_COMPLETED, done, &nd, NULL,
                      NULL));
    ASSERT_EQ(nd, 1);
    ASSERT_PTR_EQ(done[0], f);
    assert_elapsed(t0, work, before);
    cf_future_release(f);
    cf_future_release(never);
    cf_executor_free(pool);
    storm_stop(&s);
}

TEST(as_completed_times_out_on_time_under_storm)
{
    storm s;
    storm_start(&s, false);
    cf_future *pending = future_new(), *done = future_done_with(NULL);
    cf_future *fs[] = {pending, done};
    size_t before = atomic_load(&signals_seen);
    double t0 = harness_now();
    cf_as_completed *it;
    ASSERT_OK(cf_as_completed_new(fs, 2, TIMEOUT, &it));
    cf_future *got;
    ASSERT_OK(cf_as_completed_next(it, &got));
    ASSERT_PTR_EQ(got, done);
    cf_future_release(got);
    ASSERT_CODE(cf_as_completed_next(it, &got), CF_ETIMEDOUT);
    assert_elapsed(t0, TIMEOUT, before);
    cf_as_completed_free(it);
    storm_stop(&s);
    cf_future_release(pending);
    cf_future_release(done);
}

TEST(as_completed_forever_yields_all_under_storm)
{
    storm s;
    storm_start(&s, true);
    cf_executor *pool = pool_new(2);
    double work = 0.1;
    cf_future *fs[4];
    for (int i = 0; i < 4; i++)
        fs[i] = submit(pool, task_take_time, &work);
    cf_as_completed *it;
    ASSERT_OK(cf_as_completed_new(fs, 4, CF_FOREVER, &it));
    cf_future *got;
    int n = 0, rc;
    while ((rc = cf_as_completed_next(it, &got)) == CF_OK) {
        ASSERT_OK(cf_future_result(got, 0, NULL));
        cf_future_release(got);
        n++;
    }
    ASSERT_CODE(rc, CF_EEND);
    ASSERT_EQ(n, 4);
    cf_as_completed_free(it);
    for (int i = 0; i < 4; i++)
        cf_future_release(fs[i]);
    cf_executor_free(pool);
    storm_stop(&s);
}

TEST(map_next_times_out_on_time_under_storm)
{
    storm s;
    storm_start(&s, false);
    cf_executor *pool = pool_new(1);
    latch gate;
    latch_init(&gate);
    void *args[] = {&gate};
    size_t before = atomic_load(&signals_seen);
    double t0 = harness_now();
    cf_map *m;
    ASSERT_OK(cf_executor_map(pool, task_gate, args, 1,
                              &(cf_map_options){.timeout = TIMEOUT}, &m));
    ASSERT_CODE(cf_map_next(m, NULL, NULL), CF_ETIMEDOUT);
    assert_elapsed(t0, TIMEOUT, before);
    latch_open(&gate);
    cf_map_free(m);
    cf_executor_free(pool);
    latch_destroy(&gate);
    storm_stop(&s);
}

TEST(shutdown_timeout_on_time_under_storm)
{
    storm s;
    storm_start(&s, true);
    cf_executor *pool = pool_new(1);
    latch gate;
    latch_init(&gate);
    cf_future *running = submit(pool, task_gate, &gate);
    cf_future *queued = submit(pool, task_empty, NULL);
    latch_wait_arrived(&gate, 1);
    size_t left = 0, before = atomic_load(&signals_seen);
    double t0 = harness_now();
    ASSERT_CODE(cf_executor_shutdown_timeout(pool, TIMEOUT, false, &left),
                CF_ETIMEDOUT);
    assert_elapsed(t0, TIMEOUT, before);
    ASSERT_EQ(left, 2);
    latch_open(&gate);
    ASSERT_OK(cf_executor_shutdown_timeout(pool, CF_FOREVER, false, &left));
    ASSERT_EQ(left, 0);
    ASSERT_OK(cf_future_result(queued, 0, NULL));
    cf_future_release(running);
    cf_future_release(queued);
    cf_executor_free(pool);
    latch_destroy(&gate);
    storm_stop(&s);
}

/* Tasks keep working under a process-wide storm, and workers block
 * signals, so handlers run on the program's own threads only. */
static void *task_check_mask(void *arg, cf_call *call)
{
    (void)arg;
    sigset_t set;
    pthread_sigmask(SIG_BLOCK, NULL, &set);
    if (!sigismember(&set, SIGUSR1))
        return cf_fail(call, 1, "SIGUSR1 not blocked in a worker");
    return (void *)7;
}

TEST(pool_work_is_untouched_by_storm)
{
    storm s;
    storm_start(&s, true);
    cf_executor *pool = pool_new(2);
    size_t n = harness_scaled(200, 20);
    for (size_t i = 0; i < n; i++) {
        cf_future *f = submit(pool, (i & 7) ? task_double : task_check_mask,
                              (void *)(intptr_t)i);
        void *v;
        ASSERT_OK(cf_future_result(f, CF_FOREVER, &v));
        ASSERT_EQ((intptr_t)v, (i & 7) ? 2 * (intptr_t)i : 7);
        cf_future_release(f);
    }
    cf_executor_free(pool);
    storm_stop(&s);
}
