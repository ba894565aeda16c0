/* test_fault_thread_pool.c - the core and the thread pool when malloc or
 * pthread_create fail.
 *
 * One fixed workload uses every allocation site of the core and the
 * thread pool: pool creation, submit (the future, the worker start),
 * done-callbacks, a task's failure message, cf_wait, as_completed, map with
 * chunks, shutdown. The sweeps make each allocation (then each thread
 * start) fail in turn, once and from then on, and require: every call
 * returns CF_OK or a documented error, every accepted task completes (no
 * hang), callbacks run once each, and everything is released.
 */
#include "faulttest.h"

#include <stdatomic.h>

typedef struct config {
    bool init_fails; /* the pool's initializer returns nonzero */
} config;

static int init_fail(void *arg)
{
    (void)arg;
    return 1;
}

static int count_cb(cf_future *f, void *arg)
{
    (void)f;
    atomic_fetch_add((atomic_size_t *)arg, 1);
    return 0;
}

/* The outcome an accepted future may have in this workload. */
static void check_outcome(cf_future *f, intptr_t i, bool init_fails)
{
    void *v = NULL;
    int rc = cf_future_result(f, CF_FOREVER, &v);
    if (init_fails) {
        ASSERT_CODE(rc, CF_EBROKEN_THREAD_POOL);
        cf_error e;
        ASSERT_OK(cf_future_exception(f, 0, &e));
        ASSERT(e.message != NULL && e.message[0] != '\0');
    } else if (i % 3 == 2) {
        ASSERT_CODE(rc, CF_ETASK);
        cf_error e;
        ASSERT_OK(cf_future_exception(f, 0, &e));
        ASSERT_EQ(e.code, (int)i);
        ASSERT(e.message != NULL); /* cf_fail's or the fallback */
    } else {
        ASSERT_OK(rc);
        ASSERT_EQ((intptr_t)v, 2 * i);
    }
}

static void *task_fail_i(void *arg, cf_call *call)
{
    return cf_fail(call, (int)(intptr_t)arg, "task %d failed",
                   (int)(intptr_t)arg);
}

static void run_map(cf_executor *ex, bool init_fails)
{
    void *args[6];
    for (int i = 0; i < 6; i++)
        args[i] = (void *)(intptr_t)i;
    for (size_t chunk = 1; chunk <= 2; chunk++) {
        cf_map *m;
        int rc = cf_executor_map(ex, task_double, args, 6,
                                 &(cf_map_options){.chunksize = chunk}, &m);
        if (rc != CF_OK) {
            ASSERT_ONE_OF(rc, CF_ENOMEM, CF_EAGAIN, CF_ESYS,
                          CF_EBROKEN_THREAD_POOL);
            continue;
        }
        int steps = 0;
        void *v;
        cf_error e;
        while ((rc = cf_map_next(m, &v, &e)) != CF_EEND) {
            ASSERT(++steps <= 12);
            if (rc == CF_OK)
                ASSERT(!init_fails && (intptr_t)v % 2 == 0);
            else
                ASSERT_ONE_OF(rc, CF_ENOMEM, CF_EAGAIN, CF_ESYS,
                              CF_EBROKEN_THREAD_POOL);
        }
        cf_map_free(m);
    }
}

static void workload(void *arg)
{
    const config *cfg = arg;
    cf_thread_pool_options opts = {
        .max_workers = 2, .initializer = cfg->init_fails ? init_fail : NULL};
    cf_executor *ex = NULL;
    int rc = cf_thread_pool_new(&opts, &ex);
    if (rc != CF_OK) {
        ASSERT_ONE_OF(rc, CF_ENOMEM, CF_ESYS);
        return;
    }
    enum { N = 8 };
    cf_future *fs[N];
    intptr_t ids[N];
    size_t n = 0;
    atomic_size_t cb_run;
    atomic_init(&cb_run, 0);
    size_t cb_added = 0;
    for (intptr_t i = 0; i < N; i++) {
        cf_future *f;
        rc = cf_executor_submit(ex, i % 3 == 2 ? task_fail_i : task_double,
                                (void *)i, &f);
        if (rc != CF_OK) {
            ASSERT_ONE_OF(rc, CF_ENOMEM, CF_EAGAIN, CF_ESYS,
                          CF_EBROKEN_THREAD_POOL);
            continue;
        }
        rc = cf_future_add_done_callback(f, count_cb, &cb_run);
        if (rc == CF_OK)
            cb_added++;
        else
            ASSERT_CODE(rc, CF_ENOMEM);
        ids[n] = i;
        fs[n++] = f;
    }
    size_t nd = 0;
    rc = cf_wait(fs, n, CF_FOREVER, CF_ALL_COMPLETED, NULL, &nd, NULL, NULL);
    if (rc == CF_OK)
        ASSERT_EQ(nd, n);
    else
        ASSERT_CODE(rc, CF_ENOMEM);
    cf_as_completed *it;
    rc = cf_as_completed_new(fs, n, CF_FOREVER, &it);
    if (rc == CF_OK) {
        cf_future *got;
        size_t seen = 0;
        while ((rc = cf_as_completed_next(it, &got)) == CF_OK) {
            ASSERT(cf_future_done(got));
            cf_future_release(got);
            seen++;
        }
        ASSERT_CODE(rc, CF_EEND);
        ASSERT_EQ(seen, n);
        cf_as_completed_free(it);
    } else {
        ASSERT_CODE(rc, CF_ENOMEM);
    }
    for (size_t k = 0; k < n; k++)
        check_outcome(fs[k], ids[k], cfg->init_fails);
    run_map(ex, cfg->init_fails);
    ASSERT_OK(cf_executor_shutdown(ex, true, false));
    ASSERT_EQ(atomic_load(&cb_run), cb_added);
    for (size_t k = 0; k < n; k++)
        cf_future_release(fs[k]);
    cf_executor_free(ex);
}

static void report(const char *what, sweep_stats st)
{
    printf("%s: %ld faults injected (up to %ld calls a run)\n", what, st.runs,
           st.max_calls);
}

TEST_TIMEOUT(every_allocation_fails_once, 120)
{
    config cfg = {false};
    sweep_stats st = sweep(FAULT_ALLOC, FAULT_ONCE, ENOMEM, workload, &cfg,
                           5000);
    ASSERT(st.max_calls > 10); /* the workload really allocates */
    report("malloc once", st);
}

TEST_TIMEOUT(allocations_fail_from_n_on, 120)
{
    config cfg = {false};
    report("malloc from N", sweep(FAULT_ALLOC, FAULT_FROM, ENOMEM, workload,
                                  &cfg, 5000));
}

TEST_TIMEOUT(allocations_fail_with_broken_initializer, 120)
{
    config cfg = {true};
    report("malloc once, initializer fails",
           sweep(FAULT_ALLOC, FAULT_ONCE, ENOMEM, workload, &cfg, 5000));
    report("malloc from N, initializer fails",
           sweep(FAULT_ALLOC, FAULT_FROM, ENOMEM, workload, &cfg, 5000));
}

TEST_TIMEOUT(every_thread_start_fails, 120)
{
    config cfg = {false};
    const int errs[] = {EAGAIN, ENOMEM, EPERM};
    for (int i = 0; i < 3; i++) {
        sweep_stats st = sweep(FAULT_THREAD, FAULT_ONCE, errs[i], workload,
                               &cfg, 1000);
        ASSERT(st.runs >= 1);
        report("pthread_create once", st);
        report("pthread_create from N",
               sweep(FAULT_THREAD, FAULT_FROM, errs[i], workload, &cfg, 1000));
    }
}

/* The exact codes: no thread can start and none runs -> CF_EAGAIN (or
 * CF_ENOMEM / CF_ESYS per the errno), nothing scheduled; the same pool
 * works once threads can start again. */
TEST(submit_reports_thread_start_failure_then_recovers)
{
    cf_executor *ex = pool_new(2);
    const struct {
        int err, code;
    } cases[] = {{EAGAIN, CF_EAGAIN}, {ENOMEM, CF_ENOMEM}, {EPERM, CF_ESYS}};
    for (int i = 0; i < 3; i++) {
        fault_arm(FAULT_THREAD, 1, FAULT_FROM, cases[i].err);
        cf_future *f = (void *)0x5e17;
        ASSERT_CODE(cf_executor_submit(ex, task_double, (void *)1, &f),
                    cases[i].code);
        ASSERT_PTR_EQ(f, (void *)0x5e17);
        void *args[] = {(void *)1};
        cf_map *m;
        ASSERT_CODE(cf_executor_map(ex, task_double, args, 1, NULL, &m),
                    cases[i].code);
        fault_disarm();
    }
    cf_future *f = submit(ex, task_double, (void *)21);
    ASSERT_EQ(result_of(f), 42);
    cf_future_release(f);
    cf_executor_free(ex);
}

/* One worker runs; the others cannot start. Submits still succeed and no
 * task is lost: the running worker takes them all. */
TEST(tasks_run_on_the_workers_there_are)
{
    cf_executor *ex = pool_new(4);
    latch gate;
    latch_init(&gate);
    cf_future *first = submit(ex, task_gate, &gate);
    latch_wait_arrived(&gate, 1);
    fault_arm(FAULT_THREAD, 1, FAULT_FROM, EAGAIN);
    cf_future *fs[16];
    for (int i = 0; i < 16; i++)
        fs[i] = submit(ex, task_double, (void *)(intptr_t)i);
    ASSERT(fault_fired()); /* a start was attempted and failed */
    fault_disarm();
    latch_open(&gate);
    for (int i = 0; i < 16; i++) {
        ASSERT_EQ(result_of(fs[i]), 2 * i);
        cf_future_release(fs[i]);
    }
    cf_future_release(first);
    cf_executor_free(ex);
    latch_destroy(&gate);
}

/* The callback list node cannot be allocated: CF_ENOMEM, the callback is
 * not attached and never runs; the future is unaffected. */
static int never_cb(cf_future *f, void *arg)
{
    (void)f;
    (void)arg;
    harness_fail(__FILE__, __LINE__, "a refused callback ran");
}

TEST(refused_callback_never_runs)
{
    cf_future *f = future_new();
    fault_arm(FAULT_ALLOC, 1, FAULT_ONCE, ENOMEM);
    ASSERT_CODE(cf_future_add_done_callback(f, never_cb, NULL), CF_ENOMEM);
    fault_disarm();
    ASSERT_OK(cf_future_set_result(f, NULL));
    cf_future_release(f);
}
