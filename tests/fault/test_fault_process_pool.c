/* test_fault_process_pool.c - the process pool when the system says no.
 *
 * One fixed workload (a pool of two workers, tasks that succeed and fail,
 * a string-codec task, a chunked map, a waited shutdown) runs while the
 * shim makes the Nth allocation, process start, descriptor, socket send or
 * receive, eventfd read/write or poll fail or come up short, for every N.
 * Every call must return CF_OK or a documented error, every accepted future
 * must complete (no hang) with its value or a documented failure, and
 * nothing may leak: allocations (checked per run), descriptors, threads
 * and worker processes (checked by the harness after the test).
 *
 * The allocation sweep forks workers (CF_START_FORK: no exec per run, so
 * it stays fast); the process and descriptor sweeps use both methods.
 */
#include "faulttest.h"

typedef struct config {
    cf_start_method method;
} config;

static void *task_fail_i(void *arg, cf_call *call)
{
    return cf_fail(call, (int)(intptr_t)arg, "task %d failed",
                   (int)(intptr_t)arg);
}

static void *task_upper(void *arg, cf_call *call)
{
    (void)call;
    const char *s = arg;
    char *out = malloc(strlen(s) + 1);
    if (!out)
        return cf_fail(call, CF_ENOMEM, "no memory");
    for (size_t i = 0;; i++) {
        out[i] = (char)(s[i] >= 'a' && s[i] <= 'z' ? s[i] - 32 : s[i]);
        if (!s[i])
            break;
    }
    return out;
}

/* What any future of this workload may end with, besides its value. */
#define POOL_FAILURES                                                        \
    CF_EBROKEN_PROCESS_POOL, CF_EAGAIN, CF_ESYS, CF_ENOMEM, CF_ECODEC

static void run_map(cf_executor *ex)
{
    void *args[4] = {(void *)1, (void *)2, (void *)3, (void *)4};
    cf_map *m;
    int rc = cf_executor_map(ex, task_double, args, 4,
                             &(cf_map_options){.chunksize = 2}, &m);
    if (rc != CF_OK) {
        ASSERT_ONE_OF(rc, CF_ENOMEM, CF_EAGAIN, CF_ESYS,
                      CF_EBROKEN_PROCESS_POOL);
        return;
    }
    void *v;
    int steps = 0;
    intptr_t want = 1;
    while ((rc = cf_map_next(m, &v, NULL)) != CF_EEND) {
        ASSERT(++steps <= 8);
        if (rc == CF_OK)
            ASSERT_EQ((intptr_t)v, 2 * want);
        else
            ASSERT_ONE_OF(rc, POOL_FAILURES);
        want++;
    }
    cf_map_free(m);
}

static void workload(void *arg)
{
    const config *cfg = arg;
    cf_process_pool_options opts = {.max_workers = 2,
                                    .start_method = cfg->method};
    cf_executor *ex;
    int rc = cf_process_pool_new(&opts, &ex);
    if (rc != CF_OK) {
        ASSERT_ONE_OF(rc, CF_ENOMEM, CF_ESYS, CF_EAGAIN);
        return;
    }
    enum { N = 4 };
    cf_future *fs[N] = {NULL};
    for (intptr_t i = 0; i < N; i++) {
        if (i == 3)
            rc = cf_executor_submit_ex(ex, task_upper, "abc",
                                       cf_codec_string(), &fs[i]);
        else
            rc = cf_executor_submit(ex, i == 2 ? task_fail_i : task_double,
                                    (void *)i, &fs[i]);
        if (rc != CF_OK) {
            ASSERT_ONE_OF(rc, CF_ENOMEM, CF_EAGAIN, CF_ESYS,
                          CF_EBROKEN_PROCESS_POOL);
            fs[i] = NULL;
        }
    }
    for (intptr_t i = 0; i < N; i++) {
        if (!fs[i])
            continue;
        void *v = NULL;
        rc = cf_future_result(fs[i], CF_FOREVER, &v);
        if (rc == CF_OK) {
            if (i == 3)
                ASSERT_STR_EQ(v, "ABC");
            else
                ASSERT(i != 2 && (intptr_t)v == 2 * i);
        } else if (rc == CF_ETASK) {
            ASSERT_EQ(i, 2);
        } else {
            ASSERT_ONE_OF(rc, POOL_FAILURES);
        }
        cf_error e;
        ASSERT_OK(cf_future_exception(fs[i], 0, &e));
        ASSERT(e.message != NULL);
    }
    run_map(ex);
    ASSERT_OK(cf_executor_shutdown(ex, true, false));
    for (int i = 0; i < N; i++)
        cf_future_release(fs[i]);
    cf_executor_free(ex);
}

static void report(const char *what, sweep_stats st)
{
    printf("%s: %ld faults injected (up to %ld calls a run)\n", what, st.runs,
           st.max_calls);
    fflush(stdout);
}

static const config FORK = {CF_START_FORK}, EXEC = {CF_START_EXEC};

TEST_TIMEOUT(every_allocation_fails_once, 60)
{
    sweep_stats st = sweep(FAULT_ALLOC, FAULT_ONCE, ENOMEM, workload,
                           (void *)&FORK, 20000);
    ASSERT(st.max_calls > 10);
    report("malloc once (fork)", st);
}

TEST_TIMEOUT(allocations_fail_from_n_on, 60)
{
    report("malloc from N (fork)", sweep(FAULT_ALLOC, FAULT_FROM, ENOMEM,
                                         workload, (void *)&FORK, 20000));
}

TEST_TIMEOUT(process_start_fails, 120)
{
    const config *cfgs[] = {&FORK, &EXEC};
    const int errs[] = {EAGAIN, ENOMEM, EPERM};
    for (int c = 0; c < 2; c++)
        for (int e = 0; e < 3; e++) {
            sweep_stats st = sweep(FAULT_PROC, FAULT_ONCE, errs[e], workload,
                                   (void *)cfgs[c], 100);
            ASSERT(st.runs >= 1);
            report("process start once", st);
            report("process start from N",
                   sweep(FAULT_PROC, FAULT_FROM, errs[e], workload,
                         (void *)cfgs[c], 100));
        }
}

TEST_TIMEOUT(descriptors_run_out, 120)
{
    const config *cfgs[] = {&FORK, &EXEC};
    const int errs[] = {EMFILE, ENFILE};
    for (int c = 0; c < 2; c++)
        for (int e = 0; e < 2; e++) {
            sweep_stats st = sweep(FAULT_FD, FAULT_ONCE, errs[e], workload,
                                   (void *)cfgs[c], 100);
            ASSERT(st.runs >= 1);
            report("descriptor once", st);
            report("descriptor from N", sweep(FAULT_FD, FAULT_FROM, errs[e],
                                              workload, (void *)cfgs[c], 100));
        }
}

/* Sends and receives: interrupted (EINTR, retried), would-block (EAGAIN),
 * short (one byte moved, the rest later), or the peer gone (ECONNRESET,
 * EPIPE: the worker is taken for dead and the pool breaks). */
TEST_TIMEOUT(socket_io_fails_or_comes_up_short, 60)
{
    const struct {
        unsigned cls;
        enum fault_mode mode;
        int err;
        const char *what;
    } cases[] = {
        {FAULT_SEND, FAULT_ONCE, EINTR, "send EINTR"},
        {FAULT_SEND, FAULT_ONCE, EAGAIN, "send EAGAIN"},
        {FAULT_SEND, FAULT_ONCE, EPIPE, "send EPIPE"},
        {FAULT_SEND, FAULT_SHORT, 0, "send short once"},
        {FAULT_SEND, FAULT_SHORT_FROM, 0, "send short from N"},
        {FAULT_RECV, FAULT_ONCE, EINTR, "recv EINTR"},
        {FAULT_RECV, FAULT_ONCE, EAGAIN, "recv EAGAIN"},
        {FAULT_RECV, FAULT_ONCE, ECONNRESET, "recv ECONNRESET"},
        {FAULT_RECV, FAULT_SHORT, 0, "recv short once"},
        {FAULT_RECV, FAULT_SHORT_FROM, 0, "recv short from N"},
        {FAULT_READ, FAULT_ONCE, EINTR, "eventfd read EINTR"},
        {FAULT_WRITE, FAULT_ONCE, EINTR, "eventfd write EINTR"},
        {FAULT_POLL, FAULT_ONCE, EINTR, "poll EINTR"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        report(cases[i].what, sweep(cases[i].cls, cases[i].mode, cases[i].err,
                                    workload, (void *)&FORK, 2000));
}

/* poll() may fail with ENOMEM (kernel memory). The manager must not take
 * the whole program down for it. */
TEST_TIMEOUT(poll_out_of_memory, 60)
{
    report("poll ENOMEM", sweep(FAULT_POLL, FAULT_ONCE, ENOMEM, workload,
                                (void *)&FORK, 2000));
}

/* Without pidfds (kernels before 5.3, valgrind) a worker's end is seen as
 * its socket's EOF: the same workload, a crash racing shutdown, and the
 * descriptor and I/O faults still end, with the same codes. */
static void *task_crash(void *arg, cf_call *call)
{
    (void)arg;
    (void)call;
    abort();
}

static void crash_during_shutdown(void *arg)
{
    const config *cfg = arg;
    cf_executor *ex;
    ASSERT_OK(cf_process_pool_new(
        &(cf_process_pool_options){.max_workers = 2,
                                   .start_method = cfg->method},
        &ex));
    cf_future *fs[4];
    for (int i = 0; i < 4; i++)
        ASSERT_OK(cf_executor_submit(ex, i == 1 ? task_crash : task_double,
                                     (void *)(intptr_t)i, &fs[i]));
    ASSERT_OK(cf_executor_shutdown(ex, true, false));
    for (int i = 0; i < 4; i++) {
        void *v;
        int rc = cf_future_result(fs[i], 0, &v);
        if (rc == CF_OK)
            ASSERT_EQ((intptr_t)v, 2 * i);
        else
            ASSERT_CODE(rc, CF_EBROKEN_PROCESS_POOL);
        cf_future_release(fs[i]);
    }
    cf_executor_free(ex);
}

/* Survive mode without pidfds: a send that fails while the manager hands a
 * task to a worker gives that worker up; the manager must reap it (no pidfd
 * will wake poll() for it) and every future must still end. */
static void survive_workload(void *arg)
{
    const config *cfg = arg;
    cf_executor *ex;
    ASSERT_OK(cf_process_pool_new(
        &(cf_process_pool_options){.max_workers = 1,
                                   .start_method = cfg->method,
                                   .survive_worker_death = true},
        &ex));
    for (int i = 0; i < 4; i++) {
        cf_future *f;
        int sub = cf_executor_submit(ex, task_double, (void *)(intptr_t)i, &f);
        if (sub == CF_EBROKEN_PROCESS_POOL)
            break; /* a worker lost before it was ready breaks even this mode */
        ASSERT_OK(sub);
        void *v;
        int rc = cf_future_result(f, 20, &v);
        if (rc == CF_OK)
            ASSERT_EQ((intptr_t)v, 2 * i);
        else
            ASSERT_CODE(rc, CF_EBROKEN_PROCESS_POOL); /* never a hang */
        cf_future_release(f);
    }
    cf_executor_free(ex);
}

TEST_TIMEOUT(survive_without_pidfd_send_fails, 120)
{
    fault_without_pidfd(true);
    report("survive, no pidfd, send EPIPE",
           sweep(FAULT_SEND, FAULT_ONCE, EPIPE, survive_workload,
                 (void *)&FORK, 2000));
    fault_without_pidfd(false);
}

TEST_TIMEOUT(without_pidfd, 120)
{
    fault_without_pidfd(true);
    for (int i = 0; i < 5; i++) {
        workload((void *)&FORK);
        workload((void *)&EXEC);
        crash_during_shutdown((void *)&FORK);
        crash_during_shutdown((void *)&EXEC);
    }
    report("no pidfd, send EPIPE", sweep(FAULT_SEND, FAULT_ONCE, EPIPE,
                                         workload, (void *)&FORK, 2000));
    report("no pidfd, recv ECONNRESET",
           sweep(FAULT_RECV, FAULT_ONCE, ECONNRESET, workload, (void *)&FORK,
                 2000));
    report("no pidfd, malloc once", sweep(FAULT_ALLOC, FAULT_ONCE, ENOMEM,
                                          workload, (void *)&FORK, 20000));
    fault_without_pidfd(false);
}
