/* test_process_resize.c - a process pool that changes size while it runs:
 * cf_executor_set_max_workers() up (workers start as work needs them) and
 * down (surplus workers leave after their current task), and idle_timeout
 * / min_workers (idle workers leave, a later burst starts them again).
 * No task is lost or run twice: burst tasks create their own file with
 * O_EXCL, so a second run fails. Workers are watched by pid: the pool
 * reaps a worker that left, so kill(pid, 0) then fails. Runs over both
 * transports (CMake registers it again with CF_TEST_TRANSPORT=pipes).
 */
#include "procpool_test.h"

#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <sys/resource.h>
#include <sys/wait.h>

/* path_codec: creates `path`, refusing if it exists: a task run twice
 * fails its second run. */
static void *task_create_once(void *arg, cf_call *call)
{
    int fd = open(arg, O_CREAT | O_EXCL | O_WRONLY, 0600);
    if (fd < 0)
        return cf_fail(call, errno, "%s ran twice", (const char *)arg);
    close(fd);
    return (void *)1;
}

static bool gone(pid_t pid)
{
    return kill(pid, 0) == -1 && errno == ESRCH;
}

static cf_executor *resizable(int workers, int limit, double idle, int min)
{
    cf_process_pool_options o = {.max_workers = workers,
                                 .max_workers_limit = limit,
                                 .idle_timeout = idle,
                                 .min_workers = min,
                                 .transport = test_transport()};
    cf_executor *ex = NULL;
    ASSERT_OK(cf_process_pool_new(&o, &ex));
    return ex;
}

/* Starts a task that announces its worker's pid and waits for "go". */
static cf_future *hold(cf_executor *ex, const tmpdir *d, const char *name,
                       char *base, size_t n, pid_t *pid)
{
    tmpdir_file(d, name, base, n);
    cf_future *f = submit_path(ex, task_pid_then_wait, base);
    *pid = await_pid(base);
    return f;
}

static void finish(cf_future *f)
{
    void *v;
    ASSERT_OK(cf_future_result(f, 30, &v));
    ASSERT_EQ((intptr_t)v, 1);
    cf_future_release(f);
}

/* Submits `n` create-once tasks, calling `during(ex, i)` after each, and
 * checks that every one ran exactly once. */
static void burst(cf_executor *ex, size_t n,
                  void (*during)(cf_executor *ex, size_t i))
{
    tmpdir d;
    tmpdir_make(&d);
    cf_future **fs = calloc(n, sizeof *fs);
    char (*paths)[160] = calloc(n, sizeof *paths);
    ASSERT(fs && paths);
    for (size_t i = 0; i < n; i++) {
        char name[32];
        snprintf(name, sizeof name, "t%zu", i);
        tmpdir_file(&d, name, paths[i], sizeof paths[i]);
        fs[i] = submit_path(ex, task_create_once, paths[i]);
        if (during)
            during(ex, i);
    }
    for (size_t i = 0; i < n; i++) {
        void *v;
        ASSERT_OK(cf_future_result(fs[i], 60, &v));
        ASSERT_EQ((intptr_t)v, 1);
        ASSERT(file_exists(paths[i]));
        cf_future_release(fs[i]);
    }
    free(fs);
    free(paths);
    tmpdir_remove(&d);
}

/* ------------------------------------------------------------------------ */
/* cf_executor_set_max_workers                                              */

TEST_TIMEOUT(grow_starts_workers_for_queued_tasks, 60)
{
    cf_executor *ex = resizable(1, 4, 0, 0);
    tmpdir d;
    tmpdir_make(&d);
    char a[256], b[256];
    pid_t pa, pb;
    cf_future *fa = hold(ex, &d, "a", a, sizeof a, &pa);
    tmpdir_file(&d, "b", b, sizeof b);
    cf_future *fb = submit_path(ex, task_pid_then_wait, b);
    ASSERT(!cf_future_running(fb)); /* one worker, and it is busy */
    ASSERT_OK(cf_executor_set_max_workers(ex, 2));
    pb = await_pid(b); /* a second worker started for it */
    ASSERT(pb != pa);
    release_go(a);
    release_go(b);
    finish(fa);
    finish(fb);
    cf_executor_free(ex);
    tmpdir_remove(&d);
}

TEST_TIMEOUT(shrink_lets_busy_workers_finish_their_task, 60)
{
    cf_executor *ex = resizable(2, 0, 0, 0);
    tmpdir d;
    tmpdir_make(&d);
    char a[256], b[256];
    pid_t pa, pb;
    cf_future *fa = hold(ex, &d, "a", a, sizeof a, &pa);
    cf_future *fb = hold(ex, &d, "b", b, sizeof b, &pb);
    ASSERT_OK(cf_executor_set_max_workers(ex, 1));
    ASSERT(!gone(pa) && !gone(pb)); /* busy: each finishes its task */
    release_go(a);
    release_go(b);
    finish(fa);
    finish(fb);
    WAIT_UNTIL(gone(pa) || gone(pb), 30);
    /* One worker serves from now on. */
    pid_t left = gone(pa) ? pb : pa;
    for (int i = 0; i < 8; i++) {
        cf_future *f;
        void *v;
        ASSERT_OK(cf_executor_submit(ex, task_getpid, NULL, &f));
        ASSERT_OK(cf_future_result(f, 30, &v));
        ASSERT_EQ((pid_t)(intptr_t)v, left);
        cf_future_release(f);
    }
    cf_executor_free(ex);
    tmpdir_remove(&d);
}

TEST_TIMEOUT(shrink_lets_idle_workers_go_at_once, 60)
{
    cf_executor *ex = resizable(2, 0, 0, 0);
    tmpdir d;
    tmpdir_make(&d);
    char a[256], b[256];
    pid_t pa, pb;
    cf_future *fa = hold(ex, &d, "a", a, sizeof a, &pa);
    cf_future *fb = hold(ex, &d, "b", b, sizeof b, &pb);
    release_go(b);
    finish(fb); /* b's worker is idle now */
    ASSERT_OK(cf_executor_set_max_workers(ex, 1));
    WAIT_UNTIL(gone(pb), 30);
    ASSERT(!gone(pa)); /* still on its task */
    release_go(a);
    finish(fa);
    cf_executor_free(ex);
    tmpdir_remove(&d);
}

static void shrink_and_grow(cf_executor *ex, size_t i)
{
    static const int sizes[] = {1, 3, 2, 4, 1};
    if (i % 16 == 8)
        ASSERT_OK(cf_executor_set_max_workers(ex, sizes[(i / 16) % 5]));
}

TEST_TIMEOUT(resizing_during_a_burst_loses_and_repeats_nothing, 120)
{
    cf_executor *ex = resizable(4, 0, 0, 0);
    burst(ex, harness_scaled(400, 60), shrink_and_grow);
    cf_executor_free(ex);
}

static void shrink_to_one(cf_executor *ex, size_t i)
{
    if (i == 10)
        ASSERT_OK(cf_executor_set_max_workers(ex, 1));
}

TEST_TIMEOUT(shrinking_while_a_burst_arrives, 120)
{
    cf_executor *ex = resizable(4, 0, 0, 0);
    burst(ex, harness_scaled(200, 40), shrink_to_one);
    cf_executor_free(ex);
}

static void grow_to_four(cf_executor *ex, size_t i)
{
    if (i == 10)
        ASSERT_OK(cf_executor_set_max_workers(ex, 4));
}

TEST_TIMEOUT(growing_under_load, 120)
{
    cf_executor *ex = resizable(1, 4, 0, 0);
    burst(ex, harness_scaled(200, 40), grow_to_four);
    cf_executor_free(ex);
}

TEST_TIMEOUT(same_size_changes_nothing, 60)
{
    cf_executor *ex = resizable(2, 0, 0, 0);
    ASSERT_OK(cf_executor_set_max_workers(ex, 2));
    burst(ex, 20, NULL);
    cf_executor_free(ex);
}

TEST_TIMEOUT(resize_bad_input, 60)
{
    cf_executor *ex = resizable(2, 3, 0, 0);
    ASSERT_CODE(cf_executor_set_max_workers(NULL, 1), CF_EINVAL);
    ASSERT_CODE(cf_executor_set_max_workers(ex, 0), CF_EINVAL);
    ASSERT_CODE(cf_executor_set_max_workers(ex, -1), CF_EINVAL);
    ASSERT_CODE(cf_executor_set_max_workers(ex, 4), CF_EINVAL);
    ASSERT_OK(cf_executor_set_max_workers(ex, 3));
    burst(ex, 10, NULL); /* the refused calls changed nothing */
    ASSERT_OK(cf_executor_shutdown(ex, true, false));
    ASSERT_CODE(cf_executor_set_max_workers(ex, 1), CF_ESHUTDOWN);
    cf_executor_free(ex);

    cf_executor *tp;
    ASSERT_OK(cf_thread_pool_new(NULL, &tp));
    /* Thread pools resize too (test_thread_pool_resize.c). */
    ASSERT_OK(cf_executor_set_max_workers(tp, 2));
    cf_executor_free(tp);

    cf_process_pool_options bad[] = {
        {.max_workers = 2, .idle_timeout = -1},
        {.max_workers = 2, .idle_timeout = NAN},
        {.max_workers = 2, .min_workers = -1},
        {.max_workers = 2, .min_workers = 3},
        {.max_workers = 2, .max_workers_limit = 1},
        {.max_workers = 2, .max_workers_limit = -1},
        {.max_workers = 2, .max_workers_limit = 5000},
        {.max_workers = 4097},
        {.max_workers = INT_MAX},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cf_executor *none = NULL;
        ASSERT_CODE(cf_process_pool_new(&bad[i], &none), CF_EINVAL);
        ASSERT(none == NULL);
    }
}

/* A forked child's copy of the pool has no manager and no workers: a
 * resize there is refused as a submit is, and the parent's pool keeps
 * its size. */
TEST_TIMEOUT(resize_in_a_fork_child_is_refused, 60)
{
    cf_executor *ex = resizable(2, 3, 0, 0);
    pid_t pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0) {
        int rc = cf_executor_set_max_workers(ex, 3);
        /* Under valgrind, without a leak check of the abandoned image. */
        harness_child_exit(rc == CF_EBROKEN_PROCESS_POOL ? 0 : 1);
    }
    int status;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT(WIFEXITED(status));
    ASSERT_EQ(WEXITSTATUS(status), 0);
    burst(ex, 4, NULL);
    cf_executor_free(ex);
}

/* Room for 1000 workers is 3001 entries to watch, more than a process
 * with RLIMIT_NOFILE 128 may hand poll() (EINVAL): the manager watches
 * only the descriptors of the workers that run. */
TEST_TIMEOUT(large_limit_under_a_low_descriptor_limit, 60)
{
    struct rlimit old, low;
    ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &old), 0);
    low = old;
    low.rlim_cur = old.rlim_cur < 128 ? old.rlim_cur : 128;
    ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &low), 0);
    cf_executor *ex = resizable(2, 1000, 0, 0);
    burst(ex, 4, NULL);
    ASSERT_OK(cf_executor_set_max_workers(ex, 6));
    burst(ex, 12, NULL);
    cf_executor_free(ex);
    ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &old), 0);
}

/* ------------------------------------------------------------------------ */
/* idle_timeout                                                             */

TEST_TIMEOUT(idle_workers_exit_after_idle_timeout, 60)
{
    cf_executor *ex = resizable(2, 0, 0.05, 0);
    tmpdir d;
    tmpdir_make(&d);
    char a[256], b[256];
    pid_t pa, pb;
    cf_future *fa = hold(ex, &d, "a", a, sizeof a, &pa);
    cf_future *fb = hold(ex, &d, "b", b, sizeof b, &pb);
    release_go(a);
    release_go(b);
    finish(fa);
    finish(fb);
    WAIT_UNTIL(gone(pa) && gone(pb), 30);
    cf_executor_free(ex);
    tmpdir_remove(&d);
}

TEST_TIMEOUT(idle_reaping_keeps_min_workers, 60)
{
    cf_executor *ex = resizable(2, 0, 0.02, 1);
    tmpdir d;
    tmpdir_make(&d);
    char a[256], b[256];
    pid_t pa, pb;
    cf_future *fa = hold(ex, &d, "a", a, sizeof a, &pa);
    cf_future *fb = hold(ex, &d, "b", b, sizeof b, &pb);
    release_go(a);
    release_go(b);
    finish(fa);
    finish(fb);
    WAIT_UNTIL(gone(pa) || gone(pb), 30);
    pid_t kept = gone(pa) ? pb : pa;
    /* Many idle timeouts later, the last one is still there. */
    double end = harness_now() + 0.5;
    while (harness_now() < end)
        ASSERT(!gone(kept));
    cf_future *f;
    void *v;
    ASSERT_OK(cf_executor_submit(ex, task_getpid, NULL, &f));
    ASSERT_OK(cf_future_result(f, 30, &v));
    ASSERT_EQ((pid_t)(intptr_t)v, kept);
    cf_future_release(f);
    cf_executor_free(ex);
    tmpdir_remove(&d);
}

static int workers_alive(cf_executor *ex)
{
    cf_executor_stats st;
    ASSERT_OK(cf_executor_get_stats(ex, &st));
    return st.workers_alive;
}

/* A worker killed for its task (here an escalated cancel) is replaced at
 * once while the pool is below min_workers, before any work asks. */
TEST_TIMEOUT(killed_worker_is_replaced_at_once_below_min_workers, 60)
{
    cf_executor *ex = resizable(2, 0, 0, 1);
    tmpdir d;
    tmpdir_make(&d);
    char a[256];
    pid_t pa;
    cf_future *fa = hold(ex, &d, "a", a, sizeof a, &pa);
    cf_cancel_outcome o = CF_CANCEL_WAS_DONE;
    ASSERT_OK(cf_executor_cancel(ex, fa, 0, &o));
    ASSERT_EQ(o, CF_CANCEL_KILLED);
    WAIT_UNTIL(gone(pa), 30);
    WAIT_UNTIL(workers_alive(ex) == 1, 30); /* no task submitted */
    cf_future *f;
    void *v;
    ASSERT_OK(cf_executor_submit(ex, task_getpid, NULL, &f));
    ASSERT_OK(cf_future_result(f, 30, &v));
    ASSERT((pid_t)(intptr_t)v != pa);
    ASSERT_EQ(workers_alive(ex), 1); /* it was the replacement */
    cf_future_release(f);
    cf_future_release(fa);
    cf_executor_free(ex);
    tmpdir_remove(&d);
}

/* Above min_workers a loss is not replaced until work needs it. */
TEST_TIMEOUT(killed_worker_above_min_workers_waits_for_work, 60)
{
    cf_executor *ex = resizable(2, 0, 0, 0);
    tmpdir d;
    tmpdir_make(&d);
    char a[256];
    pid_t pa;
    cf_future *fa = hold(ex, &d, "a", a, sizeof a, &pa);
    cf_cancel_outcome o = CF_CANCEL_WAS_DONE;
    ASSERT_OK(cf_executor_cancel(ex, fa, 0, &o));
    ASSERT_EQ(o, CF_CANCEL_KILLED);
    WAIT_UNTIL(gone(pa) && workers_alive(ex) == 0, 30);
    cf_future *f;
    ASSERT_OK(cf_executor_submit(ex, task_getpid, NULL, &f));
    ASSERT_OK(cf_future_result(f, 30, NULL));
    cf_future_release(f);
    cf_future_release(fa);
    cf_executor_free(ex);
    tmpdir_remove(&d);
}

TEST_TIMEOUT(burst_after_idle_reaping_starts_workers_again, 60)
{
    cf_executor *ex = resizable(2, 0, 0.02, 0);
    tmpdir d;
    tmpdir_make(&d);
    char a[256], b[256];
    pid_t pa, pb;
    cf_future *fa = hold(ex, &d, "a", a, sizeof a, &pa);
    release_go(a);
    finish(fa);
    WAIT_UNTIL(gone(pa), 30);
    /* Two tasks that must run at once: two new workers. */
    cf_future *fa2 = hold(ex, &d, "a2", a, sizeof a, &pa);
    cf_future *fb2 = hold(ex, &d, "b2", b, sizeof b, &pb);
    ASSERT(pa != pb);
    release_go(a);
    release_go(b);
    finish(fa2);
    finish(fb2);
    burst(ex, harness_scaled(100, 20), NULL);
    cf_executor_free(ex);
    tmpdir_remove(&d);
}
