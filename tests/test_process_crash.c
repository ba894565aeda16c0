/* test_process_crash.c - the process pool's crash catalogue.
 *
 * A worker aborts, segfaults, is killed from outside, calls _exit in a
 * task or in its initializer, dies halfway through writing a result (small
 * or large), dies after shutdown began, or dies with many tasks queued.
 * Each ends in CF_EBROKEN_PROCESS_POOL naming the worker's pid, how it
 * ended and the task it was running; nothing hangs (every test has a time
 * limit) and nothing leaks (the harness checks children and descriptors).
 * With survive_worker_death only the dead worker's task fails.
 */
#define PP_WORKER_KINDS 1 /* see procpool_test.h */
#include "procpool_test.h"

#include <sys/wait.h>

static void *task_abort(void *arg, cf_call *call)
{
    (void)arg;
    (void)call;
    abort();
}

static void *task_segv(void *arg, cf_call *call)
{
    (void)call;
    volatile int *p = (volatile int *)(uintptr_t)arg; /* NULL */
    *p = 1;
    return NULL;
}

/* An integer division by zero: a SIGFPE from the CPU where it traps
 * (x86), raised by hand elsewhere (ARM divides by zero quietly). */
static void *task_fpe(void *arg, cf_call *call)
{
    (void)call;
#if defined(__x86_64__) || defined(__i386__)
    /* Both volatile: 1 / x compiles to compares, not a division. */
    volatile int zero = (int)(intptr_t)arg, seven = 7;
    return (void *)(intptr_t)(seven / zero);
#else
    (void)arg;
    raise(SIGFPE);
    return NULL;
#endif
}

static void *task_exit3(void *arg, cf_call *call)
{
    (void)arg;
    (void)call;
    _exit(3);
}

static void *task_sigkill_self(void *arg, cf_call *call)
{
    (void)arg;
    (void)call;
    kill(getpid(), SIGKILL);
    pause(); /* SIGKILL is not blocked: never returns */
    return NULL;
}

/* Writes the start of a RESULT frame claiming `arg` payload bytes (and
 * some of them) straight into the worker's socket, then dies: a result
 * cut short. Exec'd workers find their socket on fd 3; over pipes, fd 3
 * is the task pipe and fd 4 the result pipe. */
static void *task_die_mid_result(void *arg, cf_call *call)
{
    (void)call;
    int out = test_transport() == CF_TRANSPORT_PIPES ? 4 : 3;
    size_t claim = (size_t)(uintptr_t)arg;
    unsigned char h[24] = {18}; /* CF__MSG_RESULT, flags 0 */
    for (int i = 0; i < 8; i++)
        h[8 + i] = (unsigned char)((uint64_t)claim >> (8 * i));
    if (write(out, h, sizeof h) != (ssize_t)sizeof h)
        _exit(9);
    size_t part = claim / 2;
    char *body = calloc(1, part ? part : 1);
    size_t done = 0;
    while (done < part) {
        ssize_t n = write(out, body + done, part - done);
        if (n <= 0)
            break;
        done += (size_t)n;
    }
    /* Freed, or valgrind (--error-exitcode) would report the leak by
     * changing this worker's exit status. */
    free(body);
    _exit(0);
}

/* Checks a failure that broke the pool: code, pid, how, and the task. */
static void check_broken(cf_future *f, const char *how, const char *task)
{
    cf_error e;
    ASSERT_CODE(outcome(f, 30, NULL, &e), CF_EBROKEN_PROCESS_POOL);
    ASSERT_CODE(e.code, CF_EBROKEN_PROCESS_POOL);
    ASSERT(contains(e.message, "worker process "));
    if (how)
        ASSERT(contains(e.message, how));
    if (task)
        ASSERT(contains(e.message, task));
}

/* One task crashes a one-worker pool with more tasks queued behind it. */
static void crash_case(cf_start_method method, cf_fn fn, void *arg,
                       const char *how)
{
    cf_executor *ex = pool_new(1, method);
    cf_future *bad, *queued[5];
    ASSERT_OK(cf_executor_submit(ex, fn, arg, &bad));
    for (int i = 0; i < 5; i++)
        ASSERT_OK(cf_executor_submit(ex, task_square, (void *)2,
                                     &queued[i]));
    check_broken(bad, how, "while running task #");
    for (int i = 0; i < 5; i++) {
        check_broken(queued[i], how, NULL);
        cf_future_release(queued[i]);
    }
    cf_future *late;
    ASSERT_CODE(cf_executor_submit(ex, task_square, (void *)2, &late),
                CF_EBROKEN_PROCESS_POOL);
    cf_future_release(bad);
    cf_executor_free(ex);
}

TEST_TIMEOUT(abort_in_task_breaks_pool, 60)
{
    crash_case(CF_START_EXEC, task_abort, NULL, "SIGABRT");
}

TEST_TIMEOUT(abort_in_task_breaks_pool_fork, 60)
{
    crash_case(CF_START_FORK, task_abort, NULL, "SIGABRT");
}

/* cf_executor_broken(): false while the pool works, then true with the
 * message the failed futures carry (pid, signal, task). */
TEST_TIMEOUT(broken_reports_why_the_pool_broke, 60)
{
    cf_executor *ex = pool_new(1, CF_START_EXEC);
    const char *why = "untouched";
    cf_future *ok, *bad;
    ASSERT_OK(cf_executor_submit(ex, task_square, (void *)3, &ok));
    ASSERT_OK(outcome(ok, 30, NULL, NULL));
    ASSERT(!cf_executor_broken(ex, &why));
    ASSERT_STR_EQ(why, "untouched");
    ASSERT_OK(cf_executor_submit(ex, task_abort, NULL, &bad));
    cf_error e;
    ASSERT_CODE(outcome(bad, 30, NULL, &e), CF_EBROKEN_PROCESS_POOL);
    ASSERT(cf_executor_broken(ex, &why));
    ASSERT(contains(why, "worker process "));
    ASSERT(contains(why, "SIGABRT"));
    ASSERT(cf_executor_broken(ex, NULL));
    cf_future_release(ok);
    cf_future_release(bad);
    cf_executor_free(ex);
}

/* task_exit3 is static and not exported (dladdr cannot name it): the
 * report names it from the program file's symbol table, not as
 * "test_process_crash+0x...". */
TEST_TIMEOUT(crash_report_names_a_static_task, 60)
{
    cf_executor *ex = pool_new(1, CF_START_EXEC);
    cf_future *bad;
    ASSERT_OK(cf_executor_submit(ex, task_exit3, NULL, &bad));
    check_broken(bad, "exited with status 3", " (task_exit3)");
    cf_future_release(bad);
    cf_executor_free(ex);
}

TEST_TIMEOUT(segfault_in_task_breaks_pool, 60)
{
#if defined(PP_ASAN) || defined(PP_TSAN)
    /* The sanitizer catches the fault, reports it and exits. */
    crash_case(CF_START_EXEC, task_segv, NULL, NULL);
#else
    crash_case(CF_START_EXEC, task_segv, NULL, "SIGSEGV");
#endif
}

/* ------------------------------------------------------------------------ */
/* Crash backtraces                                                         */

/* Runs `fn` on a fresh one-worker pool and checks its failure: the
 * signal, a backtrace, and `frame` in it (a line's start, "\n  #0 name":
 * the crashing function itself). */
static void check_trace(cf_start_method method, cf_fn fn, const char *sig,
                        const char *frame)
{
    cf_executor *ex = pool_new(1, method);
    cf_future *bad;
    ASSERT_OK(cf_executor_submit(ex, fn, NULL, &bad));
    cf_error e;
    ASSERT_CODE(outcome(bad, 30, NULL, &e), CF_EBROKEN_PROCESS_POOL);
    if (!contains(e.message, frame))
        fprintf(stderr, "no '%s' in: %s\n", frame, e.message);
    ASSERT(contains(e.message, sig));
    ASSERT(contains(e.message, "; backtrace:\n  #0 "));
    ASSERT(contains(e.message, frame));
    cf_future_release(bad);
    cf_executor_free(ex);
}

/* The sanitizers' own handlers catch a fault first (ASan reports and
 * exits, TSan too): no trace to check there. */
#if defined(PP_ASAN) || defined(PP_TSAN)
#define FAULT_TRACED 0
#else
#define FAULT_TRACED 1
#endif

/* task_segv is static: named from the program's symbol table. */
TEST_TIMEOUT(segfault_trace_names_the_crashing_function, 60)
{
    if (FAULT_TRACED)
        check_trace(CF_START_EXEC, task_segv, "SIGSEGV", "\n  #0 task_segv");
}

TEST_TIMEOUT(segfault_trace_with_fork_start, 60)
{
    if (FAULT_TRACED)
        check_trace(CF_START_FORK, task_segv, "SIGSEGV", "\n  #0 task_segv");
}

/* abort() raises inside the C library: the task is the caller of
 * abort, named by its return address. */
TEST_TIMEOUT(abort_trace_names_the_task, 60)
{
    check_trace(CF_START_EXEC, task_abort, "SIGABRT", " task_abort+0x");
}

TEST_TIMEOUT(sigfpe_trace_names_the_crashing_function, 60)
{
#if defined(__x86_64__) || defined(__i386__)
    if (FAULT_TRACED)
        check_trace(CF_START_EXEC, task_fpe, "SIGFPE", "\n  #0 task_fpe");
#else
    check_trace(CF_START_EXEC, task_fpe, "SIGFPE", " task_fpe+0x");
#endif
}

/* The trap is in the worker only: the caller's handlers and alternate
 * stack (a sanitizer's, or none) are the same before and after. */
TEST_TIMEOUT(caller_gets_no_signal_handler, 60)
{
    int sigs[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT};
    enum { N = sizeof sigs / sizeof sigs[0] };
    struct sigaction before[N], after;
    stack_t ss_before, ss_after;
    for (size_t i = 0; i < N; i++)
        ASSERT_OK(sigaction(sigs[i], NULL, &before[i]));
    ASSERT_OK(sigaltstack(NULL, &ss_before));
    cf_start_method methods[] = {CF_START_EXEC, CF_START_FORK};
    for (int m = 0; m < 2; m++) {
        cf_executor *ex = pool_new(1, methods[m]);
        cf_future *f;
        ASSERT_OK(cf_executor_submit(ex, task_square, (void *)3, &f));
        ASSERT_OK(outcome(f, 30, NULL, NULL));
        cf_future_release(f);
        for (size_t i = 0; i < N; i++) {
            ASSERT_OK(sigaction(sigs[i], NULL, &after));
            ASSERT(after.sa_handler == before[i].sa_handler);
        }
        ASSERT_OK(sigaltstack(NULL, &ss_after));
        ASSERT(ss_after.ss_sp == ss_before.ss_sp &&
               ss_after.ss_flags == ss_before.ss_flags);
        cf_executor_free(ex);
    }
}

TEST_TIMEOUT(exit_in_task_breaks_pool, 60)
{
    crash_case(CF_START_EXEC, task_exit3, NULL, "exited with status 3");
}

TEST_TIMEOUT(sigkill_in_task_breaks_pool, 60)
{
    crash_case(CF_START_EXEC, task_sigkill_self, NULL, "SIGKILL");
}

TEST_TIMEOUT(death_mid_result_breaks_pool, 60)
{
    crash_case(CF_START_EXEC, task_die_mid_result, (void *)64,
               "exited with status 0");
}

TEST_TIMEOUT(death_with_large_result_in_flight_breaks_pool, 60)
{
    crash_case(CF_START_EXEC, task_die_mid_result,
               (void *)(uintptr_t)harness_scaled(16u << 20, 1u << 20),
               "exited with status 0");
}

/* The error names the pid that died. */
TEST_TIMEOUT(sigkill_from_outside_names_pid_and_signal, 60)
{
    tmpdir d;
    tmpdir_make(&d);
    char base[256];
    tmpdir_file(&d, "t", base, sizeof base);
    cf_executor *ex = pool_new(2, CF_START_EXEC);
    cf_future *victim = submit_path(ex, task_pid_then_wait, base);
    pid_t pid = await_pid(base);
    ASSERT(cf_future_running(victim));
    ASSERT_OK(kill(pid, SIGKILL));
    char want[64];
    snprintf(want, sizeof want, "worker process %ld ", (long)pid);
    check_broken(victim, "SIGKILL", want);
    cf_future_release(victim);
    cf_executor_free(ex);
    tmpdir_remove(&d);
}

/* SIGKILL cannot be caught: no trace, the rest of the report as ever. */
TEST_TIMEOUT(sigkill_from_outside_has_no_backtrace, 60)
{
    tmpdir d;
    tmpdir_make(&d);
    char base[256];
    tmpdir_file(&d, "t", base, sizeof base);
    cf_executor *ex = pool_new(1, CF_START_EXEC);
    cf_future *victim = submit_path(ex, task_pid_then_wait, base);
    pid_t pid = await_pid(base);
    ASSERT_OK(kill(pid, SIGKILL));
    cf_error e;
    ASSERT_CODE(outcome(victim, 30, NULL, &e), CF_EBROKEN_PROCESS_POOL);
    ASSERT(contains(e.message, "SIGKILL"));
    ASSERT(contains(e.message, "task_pid_then_wait"));
    ASSERT(!contains(e.message, "backtrace"));
    cf_future_release(victim);
    cf_executor_free(ex);
    tmpdir_remove(&d);
}

TEST_TIMEOUT(many_queued_tasks_fail_when_worker_dies, 60)
{
    size_t n = harness_scaled(200, 20);
    tmpdir d;
    tmpdir_make(&d);
    char base[256];
    tmpdir_file(&d, "t", base, sizeof base);
    cf_executor *ex = pool_new(2, CF_START_EXEC);
    cf_future *victim = submit_path(ex, task_pid_then_wait, base);
    pid_t pid = await_pid(base);
    /* Queued behind a worker that will never finish: the other worker
     * takes some, the rest wait. */
    cf_future *other = submit_path(ex, task_wait_file, base);
    cf_future **q = malloc(n * sizeof *q);
    for (size_t i = 0; i < n; i++)
        ASSERT_OK(cf_executor_submit(ex, task_square, (void *)3, &q[i]));
    ASSERT_OK(kill(pid, SIGKILL));
    char want[64];
    snprintf(want, sizeof want, "worker process %ld ", (long)pid);
    check_broken(victim, "SIGKILL", want);
    size_t broken = 0;
    for (size_t i = 0; i < n; i++) {
        int rc = cf_future_result(q[i], 30, NULL);
        ASSERT(rc == CF_OK || rc == CF_EBROKEN_PROCESS_POOL);
        if (rc != CF_OK) {
            check_broken(q[i], "SIGKILL", want);
            broken++;
        }
        cf_future_release(q[i]);
    }
    ASSERT(broken > 0);
    check_broken(other, NULL, NULL); /* the other worker was stopped too */
    cf_future_release(other);
    cf_future_release(victim);
    free(q);
    cf_executor_free(ex);
    tmpdir_remove(&d);
}

TEST_TIMEOUT(death_after_shutdown_began, 60)
{
    tmpdir d;
    tmpdir_make(&d);
    char base[256];
    tmpdir_file(&d, "t", base, sizeof base);
    cf_executor *ex = pool_new(1, CF_START_EXEC);
    cf_future *victim = submit_path(ex, task_pid_then_wait, base);
    cf_future *queued;
    ASSERT_OK(cf_executor_submit(ex, task_square, (void *)2, &queued));
    pid_t pid = await_pid(base);
    ASSERT_OK(cf_executor_shutdown(ex, false, false));
    ASSERT_OK(kill(pid, SIGKILL));
    ASSERT_OK(cf_executor_shutdown(ex, true, false)); /* returns */
    check_broken(victim, "SIGKILL", NULL);
    check_broken(queued, "SIGKILL", NULL);
    cf_future_release(victim);
    cf_future_release(queued);
    cf_executor_free(ex);
    tmpdir_remove(&d);
}

TEST_TIMEOUT(idle_worker_killed_breaks_pool, 60)
{
    cf_executor *ex = pool_new(1, CF_START_EXEC);
    cf_future *f;
    void *v;
    ASSERT_OK(cf_executor_submit(ex, task_getpid, NULL, &f));
    ASSERT_OK(cf_future_result(f, 30, &v));
    cf_future_release(f);
    ASSERT_OK(kill((pid_t)(intptr_t)v, SIGKILL));
    /* Seen asynchronously: submits start failing once it is noticed. */
    int rc;
    double end = harness_now() + 30;
    while ((rc = cf_executor_submit(ex, task_square, (void *)2, &f)) ==
               CF_OK &&
           harness_now() < end) {
        int r = cf_future_result(f, 30, NULL);
        ASSERT(r == CF_OK || r == CF_EBROKEN_PROCESS_POOL);
        cf_future_release(f);
        harness_pause();
    }
    ASSERT_CODE(rc, CF_EBROKEN_PROCESS_POOL);
    cf_executor_free(ex);
}

/* ------------------------------------------------------------------------ */
/* Initializer deaths                                                       */

static int init_exit5(void *arg)
{
    (void)arg;
    _exit(5);
}

TEST_TIMEOUT(exit_in_initializer_breaks_pool, 60)
{
    cf_process_pool_options o = {PP_KIND, .max_workers = 2,
                                 .initializer = init_exit5};
    cf_executor *ex;
    ASSERT_OK(cf_process_pool_new(&o, &ex));
    cf_future *f[3];
    for (int i = 0; i < 3; i++)
        ASSERT_OK(cf_executor_submit(ex, task_square, (void *)2, &f[i]));
    for (int i = 0; i < 3; i++) {
        check_broken(f[i], "exited with status 5", "initializer");
        cf_future_release(f[i]);
    }
    cf_executor_free(ex);
}

TEST_TIMEOUT(exit_in_initializer_breaks_even_surviving_pool, 60)
{
    cf_process_pool_options o = {PP_KIND, .max_workers = 1,
                                 .initializer = init_exit5,
                                 .survive_worker_death = true};
    cf_executor *ex;
    ASSERT_OK(cf_process_pool_new(&o, &ex));
    cf_future *f;
    ASSERT_OK(cf_executor_submit(ex, task_square, (void *)2, &f));
    check_broken(f, "exited with status 5", NULL);
    cf_future_release(f);
    cf_executor_free(ex);
}

/* ------------------------------------------------------------------------ */
/* survive_worker_death                                                     */

static void check_survive(cf_start_method method)
{
    cf_process_pool_options o = {PP_KIND, .max_workers = 2,
                                 .survive_worker_death = true};
    if (method != CF_START_EXEC)
        o.start_method = method;
    cf_executor *ex;
    ASSERT_OK(cf_process_pool_new(&o, &ex));
    enum { N = 20 };
    cf_future *good[N], *bad[3];
    for (int i = 0; i < N; i++) {
        ASSERT_OK(cf_executor_submit(ex, task_square, (void *)(intptr_t)i,
                                     &good[i]));
        if (i % 7 == 3)
            ASSERT_OK(cf_executor_submit(
                ex, i == 3 ? task_abort : task_exit3, NULL, &bad[i / 7]));
    }
    for (int i = 0; i < 3; i++) {
        check_broken(bad[i], i == 0 ? "SIGABRT" : "exited with status 3",
                     "while running task #");
        cf_future_release(bad[i]);
    }
    for (int i = 0; i < N; i++) {
        void *v;
        ASSERT_OK(cf_future_result(good[i], 30, &v));
        ASSERT_EQ((intptr_t)v, (intptr_t)i * i);
        cf_future_release(good[i]);
    }
    /* Still usable afterwards. */
    cf_future *f;
    void *v;
    ASSERT_OK(cf_executor_submit(ex, task_square, (void *)9, &f));
    ASSERT_OK(cf_future_result(f, 30, &v));
    ASSERT_EQ((intptr_t)v, 81);
    cf_future_release(f);
    cf_executor_free(ex);
}

TEST_TIMEOUT(survive_worker_death_fails_only_that_task, 60)
{
    check_survive(CF_START_EXEC);
}

TEST_TIMEOUT(survive_worker_death_fork, 60)
{
    check_survive(CF_START_FORK);
}

TEST_TIMEOUT(survive_idle_worker_killed, 60)
{
    cf_process_pool_options o = {PP_KIND, .max_workers = 1,
                                 .survive_worker_death = true};
    cf_executor *ex;
    ASSERT_OK(cf_process_pool_new(&o, &ex));
    cf_future *f;
    void *v, *w;
    ASSERT_OK(cf_executor_submit(ex, task_getpid, NULL, &f));
    ASSERT_OK(cf_future_result(f, 30, &v));
    cf_future_release(f);
    ASSERT_OK(kill((pid_t)(intptr_t)v, SIGKILL));
    /* Whether or not the death is seen before this submit, the task
     * either runs on a replacement or fails alone; never a broken pool. */
    for (int i = 0; i < 3; i++) {
        ASSERT_OK(cf_executor_submit(ex, task_getpid, NULL, &f));
        int rc = cf_future_result(f, 30, &w);
        ASSERT(rc == CF_OK || rc == CF_EBROKEN_PROCESS_POOL);
        if (rc == CF_OK)
            ASSERT_NE((intptr_t)w, (intptr_t)v);
        cf_future_release(f);
    }
    cf_executor_free(ex);
}

/* ------------------------------------------------------------------------ */
/* The caller's other children are left alone                              */

TEST_TIMEOUT(callers_own_child_is_not_reaped, 60)
{
    pid_t child = fork();
    ASSERT(child >= 0);
    if (child == 0) {
        /* Wait to be killed; never outlive the test. */
        for (int i = 0; i < 6000; i++) {
            struct timespec ts = {0, 10000000};
            nanosleep(&ts, NULL);
        }
        _exit(0);
    }
    crash_case(CF_START_EXEC, task_exit3, NULL, "exited with status 3");
    /* Still ours to reap: the pool never called waitpid(-1). */
    ASSERT_OK(kill(child, SIGKILL));
    int status;
    ASSERT_EQ(waitpid(child, &status, 0), child);
    ASSERT(WIFSIGNALED(status));
}

/* The names workers of another kind know these by (procpool_test.h). */
/* Forks, and both processes return from the task: the child with a
 * result of its own (1000 + arg), which must never be seen. */
static void *task_fork_both_return(void *arg, cf_call *call)
{
    pid_t pid = fork();
    if (pid < 0)
        return cf_fail(call, errno, "fork failed");
    return (void *)((intptr_t)arg + (pid == 0 ? 1000 : 0));
}

/* The forked copy of a worker ends as its task returns, instead of
 * serving the pool's channel beside its parent (it took frames meant for
 * the worker: the pool broke, or a task ran twice). */
TEST_TIMEOUT(task_that_forks_leaves_its_child_out_of_the_pool, 60)
{
    cf_executor *ex = pool_new(1, CF_START_EXEC);
    cf_future *f[24];
    for (int i = 0; i < 24; i++)
        ASSERT_OK(cf_executor_submit(ex, i % 6 == 0 ? task_fork_both_return
                                                   : task_square,
                                     (void *)(intptr_t)i, &f[i]));
    for (int i = 0; i < 24; i++) {
        void *v;
        ASSERT_OK(cf_future_result(f[i], 30, &v));
        ASSERT_EQ((intptr_t)v, i % 6 == 0 ? i : i * i);
        cf_future_release(f[i]);
    }
    ASSERT(!cf_executor_broken(ex, NULL));
    cf_executor_free(ex);
}

static void pp_register_names(void)
{
    PP_NAME(task_square);
    PP_NAME(task_getpid);
    PP_NAME(task_wait_file);
    PP_NAME(task_pid_then_wait);
    PP_NAME(task_touch);
    PP_NAME(task_abort);
    PP_NAME(task_segv);
    PP_NAME(task_exit3);
    PP_NAME(task_fpe);
    PP_NAME(task_sigkill_self);
    PP_NAME(task_die_mid_result);
    PP_NAME(task_fork_both_return);
    PP_NAME(init_exit5);
    PP_NAME(&path_codec);
}
