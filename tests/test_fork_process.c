/* test_fork_process.c - process pools across fork(), and processes dying.
 *
 * Promises under test:
 * - a child of a program with busy pools can create and use a process
 *   pool of its own; a process pool inherited across fork() refuses work
 *   in the child (CF_EBROKEN_PROCESS_POOL) instead of queueing it for a
 *   manager thread that does not exist there;
 * - a parent killed with busy workers leaves no worker alive (workers die
 *   with their parent: PR_SET_PDEATHSIG);
 * - a worker that dies for memory (RLIMIT_AS) is reported, not hung on;
 * - a program that exits with work pending ends promptly, and its workers
 *   with it (the documented policy: pending work is abandoned);
 * - shutdown racing a worker crash neither hangs nor loses a future.
 */
#include "reltest.h"

#include <dirent.h>

#if RELTEST_TSAN
const char *__tsan_default_options(void);
const char *__tsan_default_options(void)
{
    return "die_after_fork=0";
}
#endif

/* ------------------------------------------------------------------------ */
/* Helpers                                                                  */

/* Lets time pass in a worker until `arg` seconds are up: a long task. */
static void *task_linger(void *arg, cf_call *call)
{
    (void)call;
    double until = harness_now() + (double)(intptr_t)arg;
    while (harness_now() < until)
        harness_pause();
    return (void *)1;
}

static void *task_crash(void *arg, cf_call *call)
{
    (void)arg;
    (void)call;
    abort();
}

/* The pids whose parent is `parent` (scanning /proc). */
static int children_of(pid_t parent, pid_t *out, int cap)
{
    DIR *d = opendir("/proc");
    ASSERT(d != NULL);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && n < cap) {
        if (e->d_name[0] < '1' || e->d_name[0] > '9')
            continue;
        char path[300], buf[512];
        snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
        FILE *fp = fopen(path, "r");
        if (!fp)
            continue;
        size_t len = fread(buf, 1, sizeof buf - 1, fp);
        fclose(fp);
        buf[len] = '\0';
        const char *paren = strrchr(buf, ')');
        char state;
        int ppid;
        if (paren && sscanf(paren + 1, " %c %d", &state, &ppid) == 2 &&
            ppid == parent && state != 'Z')
            out[n++] = (pid_t)atoi(e->d_name);
    }
    closedir(d);
    return n;
}

/* True while `pid` runs (a zombie counts as gone). */
static bool alive(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *fp = fopen(path, "r");
    if (!fp)
        return false;
    size_t len = fread(buf, 1, sizeof buf - 1, fp);
    fclose(fp);
    buf[len] = '\0';
    const char *paren = strrchr(buf, ')');
    return paren && paren[1] == ' ' && paren[2] != 'Z' && paren[2] != 'X';
}

/* ------------------------------------------------------------------------ */
/* Fork                                                                     */

static int child_uses_new_process_pool(void *arg)
{
    cf_executor *inherited_threads = arg;
    cf_future *f;
    if (cf_executor_submit(inherited_threads, task_double, (void *)1, &f) !=
        CF_EBROKEN_THREAD_POOL)
        return 2;
    cf_executor *pp;
    if (cf_process_pool_new(&(cf_process_pool_options){.max_workers = 2},
                            &pp) != CF_OK)
        return 3;
    void *args[8];
    for (int i = 0; i < 8; i++)
        args[i] = (void *)(intptr_t)i;
    cf_map *m;
    if (cf_executor_map(pp, task_double, args, 8,
                        &(cf_map_options){.chunksize = 3}, &m) != CF_OK)
        return 4;
    for (int i = 0; i < 8; i++) {
        void *v;
        if (cf_map_next(m, &v, NULL) != CF_OK || (intptr_t)v != 2 * i)
            return 5;
    }
    cf_map_free(m);
    cf_executor_free(pp);
    return 0;
}

TEST_TIMEOUT(children_of_busy_program_create_process_pools, 120)
{
    if (RELTEST_TSAN || RELTEST_ASAN) {
        printf("skipped under sanitizers (threads after fork, allocator)\n");
        return;
    }
    cf_executor *pool = pool_new(2);
    latch gate;
    latch_init(&gate);
    cf_future *busy = submit(pool, task_gate, &gate);
    latch_wait_arrived(&gate, 1);
    size_t forks = harness_scaled(10, 2);
    for (size_t i = 0; i < forks; i++)
        ASSERT_CHILD_OK(reltest_in_child(child_uses_new_process_pool, pool,
                                         30));
    latch_open(&gate);
    cf_future_release(busy);
    cf_executor_free(pool);
    latch_destroy(&gate);
}

static int child_submits_to_inherited_process_pool(void *arg)
{
    cf_executor *pp = arg;
    cf_future *f = NULL;
    int rc = cf_executor_submit(pp, task_double, (void *)1, &f);
    if (rc == CF_OK) {
        /* Accepted: it must at least complete, not wait forever for a
         * manager thread that only exists in the parent. */
        rc = cf_future_result(f, 5, NULL);
        fprintf(stderr, "child: inherited process pool accepted a task; "
                        "its result: %s\n", cf_err_name(rc));
        cf_future_release(f);
        return 2;
    }
    return rc == CF_EBROKEN_PROCESS_POOL ? 0 : 3;
}

TEST_TIMEOUT(inherited_process_pool_refuses_in_child, 60)
{
    cf_executor *pp;
    ASSERT_OK(cf_process_pool_new(&(cf_process_pool_options){.max_workers = 1},
                                  &pp));
    cf_future *f = submit(pp, task_double, (void *)4);
    ASSERT_EQ(result_of(f), 8);
    cf_future_release(f);
    ASSERT_CHILD_OK(reltest_in_child(child_submits_to_inherited_process_pool,
                                     pp, 20));
    f = submit(pp, task_double, (void *)5); /* the parent's still works */
    ASSERT_EQ(result_of(f), 10);
    cf_future_release(f);
    cf_executor_free(pp);
}

/* ------------------------------------------------------------------------ */
/* Process death                                                            */

/* The child: a pool with two workers busy on long tasks; tells the parent
 * through `fd` once both run, then waits to be killed. */
static int busy_then_wait(int fd)
{
    cf_executor *pp;
    if (cf_process_pool_new(&(cf_process_pool_options){.max_workers = 2},
                            &pp) != CF_OK)
        return 2;
    cf_future *fs[2];
    for (int i = 0; i < 2; i++)
        if (cf_executor_submit(pp, task_linger, (void *)(intptr_t)30,
                               &fs[i]) != CF_OK)
            return 3;
    double deadline = harness_now() + 20;
    while (!(cf_future_running(fs[0]) && cf_future_running(fs[1])))
        if (harness_now() > deadline)
            return 4;
        else
            harness_pause();
    if (write(fd, "r", 1) != 1)
        return 5;
    cf_future_result(fs[0], 60, NULL); /* killed meanwhile */
    return 6;
}

TEST_TIMEOUT(killed_parent_leaves_no_worker, 60)
{
    int p[2];
    ASSERT_EQ(pipe(p), 0);
    fflush(stdout);
    pid_t child = fork();
    ASSERT(child >= 0);
    if (child == 0) {
        close(p[0]);
        _exit(busy_then_wait(p[1]));
    }
    close(p[1]);
    char c;
    ssize_t r = read(p[0], &c, 1);
    close(p[0]);
    if (r != 1) {
        int st = reltest_wait_child(child, 10);
        harness_fail(__FILE__, __LINE__, "child failed before ready (%d)", st);
    }
    pid_t workers[8];
    int n = children_of(child, workers, 8);
    ASSERT_EQ(n, 2);
    ASSERT_EQ(kill(child, SIGKILL), 0);
    ASSERT_EQ(reltest_wait_child(child, 10), 128 + SIGKILL);
    for (int i = 0; i < n; i++)
        WAIT_UNTIL(!alive(workers[i]), 10);
}

/* A worker limited to 256 MiB of address space by its initializer; the
 * task allocates past it and aborts, as a program does when malloc fails
 * (or is killed, as by the OOM killer). */
static int limit_memory(void *arg)
{
    (void)arg;
    struct rlimit rl = {256u << 20, 256u << 20};
    return setrlimit(RLIMIT_AS, &rl) == 0 ? 0 : 1;
}

/* Where the hog keeps its blocks: memory that is reachable, and so cannot
 * be elided by a compiler that drops a malloc whose memory is never read
 * (clang does). */
static void *volatile hog_blocks;

static void *task_hog(void *arg, cf_call *call)
{
    (void)arg;
    size_t total = 0;
    for (;;) {
        void **p = malloc(16u << 20);
        if (!p)
            abort(); /* what most programs do when memory runs out */
        memset(p, 1, 16u << 20);
        *p = hog_blocks;
        hog_blocks = p;
        total += 16u << 20;
        if (total > (1u << 30))
            return cf_fail(call, 1, "RLIMIT_AS did not hold");
    }
}

TEST_TIMEOUT(worker_out_of_memory_is_reported, 60)
{
    if (CORETEST_SANITIZED || RELTEST_TSAN || harness_under_valgrind()) {
        printf("skipped: sanitizers and valgrind reserve address space\n");
        return;
    }
    cf_executor *pp;
    ASSERT_OK(cf_process_pool_new(
        &(cf_process_pool_options){.max_workers = 1,
                                   .initializer = limit_memory},
        &pp));
    cf_future *f = submit(pp, task_hog, NULL);
    double t0 = harness_now();
    ASSERT_CODE(cf_future_result(f, 30, NULL), CF_EBROKEN_PROCESS_POOL);
    ASSERT(harness_now() - t0 < 30);
    cf_error e;
    ASSERT_OK(cf_future_exception(f, 0, &e));
    ASSERT(strstr(e.message, "SIGABRT") || strstr(e.message, "signal"));
    cf_future_release(f);
    ASSERT_CODE(cf_executor_submit(pp, task_double, (void *)1, &f),
                CF_EBROKEN_PROCESS_POOL);
    cf_executor_free(pp);
}

/* Returning from main (exit()) with work queued and running on both kinds
 * of pools: the process ends at once (no atexit handler waits for the
 * work), and the workers die with it. */
static int exit_with_pending_work(int fd)
{
    cf_executor *pp, *tp;
    if (cf_process_pool_new(&(cf_process_pool_options){.max_workers = 2},
                            &pp) != CF_OK ||
        cf_thread_pool_new(NULL, &tp) != CF_OK)
        return 2;
    cf_future *f;
    for (int i = 0; i < 4; i++) {
        if (cf_executor_submit(pp, task_linger, (void *)(intptr_t)30, &f) !=
            CF_OK)
            return 3;
        if (cf_executor_submit(tp, task_linger, (void *)(intptr_t)30, &f) !=
            CF_OK)
            return 4;
    }
    double deadline = harness_now() + 20;
    while (!cf_future_running(f) && harness_now() < deadline)
        harness_pause();
    if (write(fd, "r", 1) != 1)
        return 5;
    exit(0); /* as returning from main does */
}

TEST_TIMEOUT(exit_with_pending_work_ends_promptly, 60)
{
    int p[2];
    ASSERT_EQ(pipe(p), 0);
    fflush(stdout);
    pid_t child = fork();
    ASSERT(child >= 0);
    if (child == 0) {
        close(p[0]);
        _exit(exit_with_pending_work(p[1]));
    }
    close(p[1]);
    char c;
    ASSERT_EQ(read(p[0], &c, 1), 1);
    close(p[0]);
    pid_t workers[8];
    int n = children_of(child, workers, 8);
    double t0 = harness_now();
    ASSERT_EQ(reltest_wait_child(child, 10), 0);
    ASSERT(harness_now() - t0 < 5); /* did not wait for the 30 s tasks */
    for (int i = 0; i < n; i++)
        WAIT_UNTIL(!alive(workers[i]), 10);
}

/* Shutdown (waiting) while workers crash under it: every future ends
 * (value or CF_EBROKEN_PROCESS_POOL), nothing hangs. */
typedef struct crash_ctx {
    cf_executor *pp;
    cf_future *fs[6];
} crash_ctx;

static void *shut_down(helper *h)
{
    crash_ctx *c = h->ctx;
    ASSERT_OK(cf_executor_shutdown(c->pp, true, (harness_now() * 1e3) > 0));
    return NULL;
}

TEST_TIMEOUT(shutdown_racing_worker_crash, 120)
{
    size_t rounds = harness_scaled(20, 3);
    for (size_t r = 0; r < rounds; r++) {
        crash_ctx c;
        ASSERT_OK(cf_process_pool_new(
            &(cf_process_pool_options){.max_workers = 2,
                                       .start_method = (cf_start_method)(
                                           r & 1)},
            &c.pp));
        for (int i = 0; i < 6; i++)
            c.fs[i] = submit(c.pp, i == (int)(r % 6) ? task_crash : task_double,
                             (void *)(intptr_t)i);
        helper h;
        helper_start(&h, shut_down, &c);
        for (int i = 0; i < 6; i++) {
            void *v;
            int rc = cf_future_result(c.fs[i], 30, &v);
            if (rc == CF_OK)
                ASSERT_EQ((intptr_t)v, 2 * i);
            else
                ASSERT(rc == CF_EBROKEN_PROCESS_POOL || rc == CF_ECANCELLED);
            cf_future_release(c.fs[i]);
        }
        helper_join(&h);
        cf_executor_free(c.pp);
    }
}
