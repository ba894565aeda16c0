/* coretest.h - small helpers shared by the core tests (futures, wait,
 * as_completed, thread pool, map, shutdown, errors, custom executors).
 *
 * Tasks used by many tests, a way to know that another thread is really
 * blocked (its /proc state is "S") rather than guessing with a sleep, and
 * thin wrappers that fail the test when a setup call fails.
 */
#ifndef CF_CORETEST_H
#define CF_CORETEST_H

#include <dirent.h>
#include <stdatomic.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "harness.h"

/* ------------------------------------------------------------------------ */
/* Tasks                                                                    */

/* Returns its argument. */
static inline void *task_identity(void *arg, cf_call *call)
{
    (void)call;
    return arg;
}

/* Returns twice its (integer) argument. */
static inline void *task_double(void *arg, cf_call *call)
{
    (void)call;
    return (void *)(2 * (intptr_t)arg);
}

/* Fails with the code it is given and a message naming it. */
static inline void *task_fail(void *arg, cf_call *call)
{
    int code = (int)(intptr_t)arg;
    return cf_fail(call, code, "failed with %d", code);
}

/* Blocks on the latch it is given, then returns it. */
static inline void *task_gate(void *arg, cf_call *call)
{
    (void)call;
    latch_wait((latch *)arg);
    return arg;
}

/* Adds one to the counter it is given. */
static inline void *task_count(void *arg, cf_call *call)
{
    (void)call;
    atomic_fetch_add((atomic_int *)arg, 1);
    return NULL;
}

/* Does nothing. */
static inline void *task_empty(void *arg, cf_call *call)
{
    (void)arg;
    (void)call;
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Threads                                                                  */

static inline pid_t current_tid(void)
{
    return (pid_t)syscall(SYS_gettid);
}

/* True if thread `tid` of this process is asleep (blocked in the kernel). */
static inline bool thread_is_sleeping(pid_t tid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/self/task/%d/stat", (int)tid);
    FILE *fp = fopen(path, "r");
    if (!fp)
        return false;
    size_t len = fread(buf, 1, sizeof buf - 1, fp);
    fclose(fp);
    buf[len] = '\0';
    const char *paren = strrchr(buf, ')'); /* the name may hold spaces */
    return paren && paren[1] == ' ' && paren[2] == 'S';
}

/* Waits until `tid` is blocked: a thread that announced it is about to call
 * a blocking function and then sleeps is inside that function. */
#define WAIT_BLOCKED(tid) WAIT_UNTIL(thread_is_sleeping(tid), 10)

/* A helper thread whose kernel id is published once it runs. */
typedef struct helper {
    pthread_t thread;
    _Atomic pid_t tid;
    void *(*body)(struct helper *);
    void *ctx;
    void *ret;
} helper;

static inline void *helper_main(void *arg)
{
    helper *h = arg;
    atomic_store(&h->tid, current_tid());
    h->ret = h->body(h);
    return NULL;
}

static inline void helper_start(helper *h, void *(*body)(helper *), void *ctx)
{
    atomic_store(&h->tid, 0);
    h->body = body;
    h->ctx = ctx;
    h->ret = NULL;
    ASSERT_EQ(pthread_create(&h->thread, NULL, helper_main, h), 0);
    WAIT_UNTIL(atomic_load(&h->tid) != 0, 10);
}

static inline void *helper_join(helper *h)
{
    ASSERT_EQ(pthread_join(h->thread, NULL), 0);
    return h->ret;
}

/* Lets `seconds` of wall time pass (for deadlines that must expire; never
 * to wait for another thread). */
static inline void let_time_pass(double seconds)
{
    double until = harness_now() + seconds;
    while (harness_now() < until)
        harness_pause();
}

/* Counts this process's threads whose name starts with `prefix` (a pool's
 * thread_name_prefix), other than thread `skip` (0: none), and with
 * `awake_only` only those not asleep: unlike a count of all threads it
 * ignores threads the harness or a tool started, and joined threads that
 * /proc still lists for a moment. */
static inline int count_named_threads_but(const char *prefix, pid_t skip,
                                          bool awake_only)
{
    DIR *d = opendir("/proc/self/task");
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    size_t len = strlen(prefix);
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.' || (skip && atoi(e->d_name) == skip))
            continue;
        char path[300], comm[32] = "";
        snprintf(path, sizeof path, "/proc/self/task/%s/stat", e->d_name);
        FILE *fp = fopen(path, "r");
        if (!fp)
            continue;
        char state = '?';
        /* "tid (comm) S ...": skip threads that have exited (Z, X). */
        if (fscanf(fp, "%*d (%31[^)]) %c", comm, &state) == 2 &&
            strncmp(comm, prefix, len) == 0 && state != 'Z' &&
            state != 'X' && !(awake_only && state == 'S'))
            n++;
        fclose(fp);
    }
    closedir(d);
    return n;
}

static inline int count_named_threads(const char *prefix)
{
    return count_named_threads_but(prefix, 0, false);
}

/* ------------------------------------------------------------------------ */
/* Setup                                                                    */

static inline cf_executor *pool_new(int max_workers)
{
    cf_thread_pool_options opts = {.max_workers = max_workers};
    cf_executor *ex = NULL;
    ASSERT_OK(cf_thread_pool_new(&opts, &ex));
    ASSERT(ex != NULL);
    return ex;
}

/* A pool whose threads are named `prefix`_<n>, for count_named_threads. */
static inline cf_executor *named_pool(int max_workers, const char *prefix)
{
    cf_thread_pool_options opts = {.max_workers = max_workers,
                                   .thread_name_prefix = prefix};
    cf_executor *ex = NULL;
    ASSERT_OK(cf_thread_pool_new(&opts, &ex));
    ASSERT(ex != NULL);
    return ex;
}

static inline cf_future *submit(cf_executor *ex, cf_fn fn, void *arg)
{
    cf_future *f = NULL;
    ASSERT_OK(cf_executor_submit(ex, fn, arg, &f));
    ASSERT(f != NULL);
    return f;
}

static inline cf_future *future_new(void)
{
    cf_future *f = NULL;
    ASSERT_OK(cf_future_new(&f));
    ASSERT(f != NULL);
    return f;
}

static inline cf_future *future_done_with(void *value)
{
    cf_future *f = future_new();
    ASSERT_OK(cf_future_set_result(f, value));
    return f;
}

/* The result of a future that must succeed. */
static inline intptr_t result_of(cf_future *f)
{
    void *v = NULL;
    ASSERT_OK(cf_future_result(f, CF_FOREVER, &v));
    return (intptr_t)v;
}

/* Submits `k` (<= 16) gated tasks at once and requires all of them to
 * start: the pool runs a burst at once, whatever it ran before. */
static inline void burst_runs_at_once(cf_executor *ex, int k)
{
    ASSERT(k <= 16);
    latch l;
    latch_init(&l);
    cf_future *fs[16];
    for (int i = 0; i < k; i++)
        fs[i] = submit(ex, task_gate, &l);
    double deadline = harness_now() + 10;
    int arrived = 0;
    while (arrived < k && harness_now() < deadline) {
        pthread_mutex_lock(&l.mutex);
        arrived = l.arrived;
        pthread_mutex_unlock(&l.mutex);
        if (arrived < k)
            harness_pause();
    }
    latch_open(&l);
    for (int i = 0; i < k; i++) {
        result_of(fs[i]);
        cf_future_release(fs[i]);
    }
    latch_destroy(&l);
    ASSERT_EQ(arrived, k);
}

static inline bool in_list(cf_future *const *fs, size_t n, const cf_future *f)
{
    for (size_t i = 0; i < n; i++)
        if (fs[i] == f)
            return true;
    return false;
}

/* True when running under a sanitizer (memory figures mean little then). */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define CORETEST_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define CORETEST_SANITIZED 1
#endif
#endif
#ifndef CORETEST_SANITIZED
#define CORETEST_SANITIZED 0
#endif

#endif
