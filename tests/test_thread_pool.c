/* test_thread_pool.c - ThreadPoolExecutor: worker limits, names, the
 * initializer and a broken pool, lazy start, reuse of idle threads, and a
 * task that shuts down its own pool. */
#define _GNU_SOURCE
#include <limits.h>

#include "coretest.h"

#include <sched.h>

/* Submits `n` latch-gated tasks and returns how many run at the same time:
 * it waits until no more arrive for a while after the count stops rising
 * (a bounded look for an extra worker, not a wait for a known thread). */
static int concurrent_capacity(cf_executor *ex, int n)
{
    latch l;
    latch_init(&l);
    cf_future **fs = calloc((size_t)n, sizeof *fs);
    ASSERT(fs != NULL);
    for (int i = 0; i < n; i++)
        fs[i] = submit(ex, task_gate, &l);
    int arrived = 0;
    double quiet_until = harness_now() + 0.3;
    while (harness_now() < quiet_until) {
        pthread_mutex_lock(&l.mutex);
        int now = l.arrived;
        pthread_mutex_unlock(&l.mutex);
        if (now != arrived) {
            arrived = now;
            quiet_until = harness_now() + 0.3;
        }
        harness_pause();
    }
    int running = 0;
    for (int i = 0; i < n; i++)
        running += cf_future_running(fs[i]);
    ASSERT_EQ(running, arrived);
    latch_open(&l);
    for (int i = 0; i < n; i++) {
        result_of(fs[i]);
        cf_future_release(fs[i]);
    }
    free(fs);
    latch_destroy(&l);
    return arrived;
}

static int default_workers(void)
{
    int n = cf_cpu_count() + 4;
    return n < 32 ? n : 32;
}

TEST(cpu_count_matches_affinity)
{
    cpu_set_t set;
    ASSERT_EQ(sched_getaffinity(0, sizeof set, &set), 0);
    ASSERT_EQ(cf_cpu_count(), CPU_COUNT(&set));
    ASSERT(cf_cpu_count() >= 1);
}

TEST(default_max_workers_is_min_32_cpus_plus_4)
{
    cf_executor *ex = NULL;
    ASSERT_OK(cf_thread_pool_new(NULL, &ex));
    int expect = default_workers();
    ASSERT_EQ(concurrent_capacity(ex, expect + 3), expect);
    cf_executor_free(ex);
}

TEST(zero_max_workers_means_default)
{
    cf_thread_pool_options opts = {.max_workers = 0};
    cf_executor *ex = NULL;
    ASSERT_OK(cf_thread_pool_new(&opts, &ex));
    int expect = default_workers();
    ASSERT_EQ(concurrent_capacity(ex, expect + 2), expect);
    cf_executor_free(ex);
}

TEST(max_workers_bounds_concurrency)
{
    cf_executor *ex = pool_new(3);
    ASSERT_EQ(concurrent_capacity(ex, 7), 3);
    cf_executor_free(ex);
}

TEST(one_worker_runs_tasks_one_at_a_time)
{
    cf_executor *ex = pool_new(1);
    ASSERT_EQ(concurrent_capacity(ex, 3), 1);
    cf_executor_free(ex);
}

TEST(negative_max_workers_is_einval)
{
    cf_thread_pool_options opts = {.max_workers = -1};
    cf_executor *ex = (cf_executor *)0x1;
    ASSERT_CODE(cf_thread_pool_new(&opts, &ex), CF_EINVAL);
    ASSERT_PTR_EQ(ex, (cf_executor *)0x1);
    opts.max_workers = -1000;
    ASSERT_CODE(cf_thread_pool_new(&opts, &ex), CF_EINVAL);
}

TEST(max_workers_above_4096_is_einval)
{
    cf_thread_pool_options opts = {.max_workers = 4097};
    cf_executor *ex = (cf_executor *)0x1;
    ASSERT_CODE(cf_thread_pool_new(&opts, &ex), CF_EINVAL);
    ASSERT_PTR_EQ(ex, (cf_executor *)0x1);
    opts.max_workers = INT_MAX;
    ASSERT_CODE(cf_thread_pool_new(&opts, &ex), CF_EINVAL);
    opts.max_workers = 4096; /* the most: threads start lazily */
    ASSERT_OK(cf_thread_pool_new(&opts, &ex));
    cf_executor_free(ex);
}

TEST(executor_kind_is_thread_pool)
{
    cf_executor *ex = pool_new(1);
    ASSERT_STR_EQ(cf_executor_kind(ex), "thread_pool");
    cf_executor_free(ex);
}

/* ------------------------------------------------------------------------ */
/* Thread names                                                             */

typedef struct named {
    latch l;
    char names[4][32];
    atomic_int n;
} named;

static void *record_name(void *arg, cf_call *call)
{
    (void)call;
    named *nm = arg;
    int i = atomic_fetch_add(&nm->n, 1);
    if (i < 4)
        pthread_getname_np(pthread_self(), nm->names[i], sizeof nm->names[i]);
    latch_wait(&nm->l); /* keep the thread busy so the next task needs another */
    return NULL;
}

/* Runs `k` tasks at once on `ex` and collects their thread names. */
static void collect_names(cf_executor *ex, named *nm, int k)
{
    latch_init(&nm->l);
    atomic_store(&nm->n, 0);
    cf_future *fs[4];
    for (int i = 0; i < k; i++)
        fs[i] = submit(ex, record_name, nm);
    latch_wait_arrived(&nm->l, k);
    latch_open(&nm->l);
    for (int i = 0; i < k; i++) {
        result_of(fs[i]);
        cf_future_release(fs[i]);
    }
    latch_destroy(&nm->l);
}

/* True if `name` is `prefix` + "_" + a decimal number. */
static bool is_prefix_number(const char *name, const char *prefix)
{
    size_t len = strlen(prefix);
    if (strncmp(name, prefix, len) != 0 || name[len] != '_')
        return false;
    const char *digits = name + len + 1;
    if (*digits == '\0')
        return false;
    for (; *digits; digits++)
        if (*digits < '0' || *digits > '9')
            return false;
    return true;
}

TEST(thread_name_prefix_names_workers)
{
    cf_thread_pool_options opts = {.max_workers = 2,
                                   .thread_name_prefix = "worker"};
    cf_executor *ex = NULL;
    ASSERT_OK(cf_thread_pool_new(&opts, &ex));
    named nm;
    collect_names(ex, &nm, 2);
    ASSERT(is_prefix_number(nm.names[0], "worker"));
    ASSERT(is_prefix_number(nm.names[1], "worker"));
    ASSERT(strcmp(nm.names[0], nm.names[1]) != 0);
    cf_executor_free(ex);
}

TEST(thread_name_prefix_is_copied)
{
    char prefix[] = "copied";
    cf_thread_pool_options opts = {.max_workers = 1,
                                   .thread_name_prefix = prefix};
    cf_executor *ex = NULL;
    ASSERT_OK(cf_thread_pool_new(&opts, &ex));
    memcpy(prefix, "XXXXXX", 6);
    named nm;
    collect_names(ex, &nm, 1);
    ASSERT(is_prefix_number(nm.names[0], "copied"));
    cf_executor_free(ex);
}

TEST(long_thread_name_prefix_is_truncated)
{
    cf_thread_pool_options opts = {
        .max_workers = 1,
        .thread_name_prefix = "a_very_long_thread_name_prefix"};
    cf_executor *ex = NULL;
    ASSERT_OK(cf_thread_pool_new(&opts, &ex));
    named nm;
    collect_names(ex, &nm, 1);
    ASSERT(strlen(nm.names[0]) > 0);
    ASSERT(strlen(nm.names[0]) <= 15);
    ASSERT(strncmp(nm.names[0], "a_very_long_thr", strlen(nm.names[0])) ==
           0);
    cf_executor_free(ex);
}

TEST(default_thread_name_is_cfpool_k)
{
    cf_executor *ex = pool_new(2);
    named nm;
    collect_names(ex, &nm, 2);
    for (int i = 0; i < 2; i++) {
        ASSERT(strncmp(nm.names[i], "cfpool", 6) == 0);
        ASSERT(strchr(nm.names[i], '_') != NULL);
    }
    ASSERT(strcmp(nm.names[0], nm.names[1]) != 0);
    /* Another pool's threads get another prefix. */
    cf_executor *other = pool_new(1);
    named nm2;
    collect_names(other, &nm2, 1);
    ASSERT(strncmp(nm2.names[0], "cfpool", 6) == 0);
    const char *us = strchr(nm.names[0], '_');
    const char *us2 = strchr(nm2.names[0], '_');
    ASSERT(us - nm.names[0] != us2 - nm2.names[0] ||
           strncmp(nm.names[0], nm2.names[0], (size_t)(us - nm.names[0])) !=
               0);
    cf_executor_free(other);
    cf_executor_free(ex);
}

TEST(empty_thread_name_prefix_means_default)
{
    cf_thread_pool_options opts = {.max_workers = 1,
                                   .thread_name_prefix = ""};
    cf_executor *ex = NULL;
    ASSERT_OK(cf_thread_pool_new(&opts, &ex));
    named nm;
    collect_names(ex, &nm, 1);
    ASSERT(strncmp(nm.names[0], "cfpool", 6) == 0);
    cf_executor_free(ex);
}

/* ------------------------------------------------------------------------ */
/* Initializer                                                              */

typedef struct init_state {
    atomic_int calls;
    _Atomic(void *) arg_seen;
    latch gate; /* optional: the initializer waits on it */
    bool gated;
    int result;
} init_state;

static _Thread_local init_state *initialized_with;

static int initializer(void *initarg)
{
    init_state *st = initarg;
    atomic_fetch_add(&st->calls, 1);
    atomic_store(&st->arg_seen, initarg);
    initialized_with = st;
    if (st->gated)
        latch_wait(&st->gate);
    return st->result;
}

static void *task_saw_initializer(void *arg, cf_call *call)
{
    (void)call;
    latch_wait(arg);
    return initialized_with;
}

TEST(initializer_runs_once_per_thread_with_its_arg)
{
    init_state st = {.calls = 0, .gated = false, .result = 0};
    cf_thread_pool_options opts = {.max_workers = 3,
                                   .initializer = initializer,
                                   .initarg = &st};
    cf_executor *ex = NULL;
    ASSERT_OK(cf_thread_pool_new(&opts, &ex));
    ASSERT_EQ(atomic_load(&st.calls), 0); /* no thread yet */
    latch l;
    latch_init(&l);
    cf_future *fs[3];
    for (int i = 0; i < 3; i++)
        fs[i] = submit(ex, task_saw_initializer, &l);
    latch_wait_arrived(&l, 3); /* three threads at once */
    latch_open(&l);
    for (int i = 0; i < 3; i++) {
        ASSERT_PTR_EQ((void *)result_of(fs[i]), &st); /* same thread */
        cf_future_release(fs[i]);
    }
    /* More work on the same threads does not initialize again. */
    for (int i = 0; i < 10; i++) {
        cf_future *f = submit(ex, task_identity, NULL);
        result_of(f);
        cf_future_release(f);
    }
    cf_executor_free(ex);
    ASSERT_EQ(atomic_load(&st.calls), 3);
    ASSERT_PTR_EQ(atomic_load(&st.arg_seen), &st);
    latch_destroy(&l);
}

TEST(initializer_failure_breaks_the_pool)
{
    init_state st = {.calls = 0, .gated = true, .result = 1};
    latch_init(&st.gate);
    cf_thread_pool_options opts = {.max_workers = 1,
                                   .initializer = initializer,
                                   .initarg = &st};
    cf_executor *ex = NULL;
    ASSERT_OK(cf_thread_pool_new(&opts, &ex));
    atomic_int ran = 0;
    cf_future *fs[3];
    for (int i = 0; i < 3; i++)
        fs[i] = submit(ex, task_count, &ran);
    latch_wait_arrived(&st.gate, 1);
    latch_open(&st.gate); /* now the initializer fails */
    for (int i = 0; i < 3; i++) {
        ASSERT_CODE(cf_future_result(fs[i], CF_FOREVER, NULL),
                    CF_EBROKEN_THREAD_POOL);
        cf_error e;
        ASSERT_OK(cf_future_exception(fs[i], 0, &e));
        ASSERT_CODE(e.code, CF_EBROKEN_THREAD_POOL);
        ASSERT(cf_error_is_broken(e.code));
        ASSERT(e.message != NULL);
        cf_future_release(fs[i]);
    }
    ASSERT_EQ(atomic_load(&ran), 0);
    cf_future *f = (cf_future *)0x1;
    ASSERT_CODE(cf_executor_submit(ex, task_count, &ran, &f),
                CF_EBROKEN_THREAD_POOL);
    ASSERT_PTR_EQ(f, (cf_future *)0x1);
    cf_map *m = NULL;
    void *args[1] = {&ran};
    ASSERT_CODE(cf_executor_map(ex, task_count, args, 1, NULL, &m),
                CF_EBROKEN_THREAD_POOL);
    ASSERT_OK(cf_executor_shutdown(ex, true, false));
    cf_executor_free(ex);
    ASSERT_EQ(atomic_load(&ran), 0);
    latch_destroy(&st.gate);
}

/* cf_executor_broken(): false until the initializer failed, then true
 * with the message the failed futures carry. */
TEST(broken_reports_why_once_an_initializer_failed)
{
    init_state st = {.calls = 0, .gated = true, .result = 1};
    latch_init(&st.gate);
    cf_thread_pool_options opts = {.max_workers = 1,
                                   .initializer = initializer,
                                   .initarg = &st};
    cf_executor *ex = NULL;
    ASSERT_OK(cf_thread_pool_new(&opts, &ex));
    atomic_int ran = 0;
    cf_future *f = submit(ex, task_count, &ran);
    latch_wait_arrived(&st.gate, 1);
    const char *why = "untouched";
    ASSERT(!cf_executor_broken(ex, &why));
    ASSERT_STR_EQ(why, "untouched");
    latch_open(&st.gate); /* now the initializer fails */
    cf_error e;
    ASSERT_CODE(cf_future_result(f, CF_FOREVER, NULL),
                CF_EBROKEN_THREAD_POOL);
    ASSERT_OK(cf_future_exception(f, 0, &e));
    ASSERT(cf_executor_broken(ex, &why));
    ASSERT_STR_EQ(why, e.message);
    cf_future_release(f);
    cf_executor_free(ex);
    latch_destroy(&st.gate);
}

/* ------------------------------------------------------------------------ */
/* Lazy start and reuse                                                     */

TEST(threads_start_lazily)
{
    int before = harness_count_threads();
    cf_executor *ex = named_pool(4, "lazy");
    ASSERT_EQ(count_named_threads("lazy_"), 0);
    ASSERT(harness_count_threads() <= before);
    cf_future *f = submit(ex, task_identity, NULL);
    result_of(f);
    cf_future_release(f);
    ASSERT_EQ(count_named_threads("lazy_"), 1);
    cf_executor_free(ex);
}

static void *task_tid(void *arg, cf_call *call)
{
    (void)arg;
    (void)call;
    return (void *)(intptr_t)current_tid();
}

TEST(idle_threads_are_reused)
{
    cf_executor *ex = named_pool(8, "reuse");
    intptr_t first = 0;
    for (int i = 0; i < 200; i++) {
        cf_future *f = submit(ex, task_tid, NULL);
        intptr_t tid = result_of(f);
        cf_future_release(f);
        if (i == 0)
            first = tid;
        ASSERT_EQ(tid, first);
    }
    ASSERT_EQ(count_named_threads("reuse_"), 1);
    cf_executor_free(ex);
}

TEST(pool_grows_only_when_all_threads_are_busy)
{
    cf_executor *ex = named_pool(8, "grow");
    latch l;
    latch_init(&l);
    cf_future *a = submit(ex, task_gate, &l);
    cf_future *b = submit(ex, task_gate, &l);
    latch_wait_arrived(&l, 2);
    ASSERT_EQ(count_named_threads("grow_"), 2);
    latch_open(&l);
    result_of(a);
    result_of(b);
    cf_future_release(a);
    cf_future_release(b);
    for (int i = 0; i < 50; i++) {
        cf_future *f = submit(ex, task_identity, NULL);
        result_of(f);
        cf_future_release(f);
    }
    ASSERT_EQ(count_named_threads("grow_"), 2);
    cf_executor_free(ex);
    latch_destroy(&l);
}

TEST(threads_end_after_free)
{
    cf_executor *ex = named_pool(3, "end");
    latch l;
    latch_init(&l);
    cf_future *fs[3];
    for (int i = 0; i < 3; i++)
        fs[i] = submit(ex, task_gate, &l);
    latch_wait_arrived(&l, 3);
    ASSERT_EQ(count_named_threads("end_"), 3);
    latch_open(&l);
    cf_executor_free(ex);
    /* Joined threads are gone, but the kernel may list one in /proc for a
     * moment after its join returns. */
    WAIT_UNTIL(count_named_threads("end_") == 0, 5);
    for (int i = 0; i < 3; i++)
        cf_future_release(fs[i]);
    latch_destroy(&l);
}

/* ------------------------------------------------------------------------ */
/* A task using its own pool                                                */

static void *shutdown_own_pool(void *arg, cf_call *call)
{
    (void)call;
    return (void *)(intptr_t)cf_executor_shutdown(arg, true, false);
}

static void *shutdown_own_pool_nowait(void *arg, cf_call *call)
{
    (void)call;
    return (void *)(intptr_t)cf_executor_shutdown(arg, false, false);
}

TEST(task_shutting_down_own_pool_without_wait_succeeds)
{
    cf_executor *ex = pool_new(1);
    cf_future *f = submit(ex, shutdown_own_pool_nowait, ex);
    ASSERT_OK((int)result_of(f));
    cf_future_release(f);
    cf_future *g = (cf_future *)0x1;
    ASSERT_CODE(cf_executor_submit(ex, task_identity, NULL, &g),
                CF_ESHUTDOWN);
    cf_executor_free(ex);
}

TEST(task_may_shut_down_another_pool_with_wait)
{
    cf_executor *outer = pool_new(1), *inner = pool_new(1);
    cf_future *work = submit(inner, task_identity, (void *)(intptr_t)3);
    cf_future *f = submit(outer, shutdown_own_pool, inner);
    ASSERT_OK((int)result_of(f));
    ASSERT_EQ(result_of(work), 3);
    cf_future_release(work);
    cf_future_release(f);
    cf_executor_free(inner);
    cf_executor_free(outer);
}

typedef struct nested {
    cf_executor *ex;
    latch *l;
} nested;

static void *submit_from_task(void *arg, cf_call *call)
{
    (void)call;
    nested *n = arg;
    cf_future *f = NULL;
    int err = cf_executor_submit(n->ex, task_double, (void *)(intptr_t)8, &f);
    if (err != CF_OK)
        return cf_fail(call, err, "submit: %s", cf_strerror(err));
    void *v = NULL;
    err = cf_future_result(f, CF_FOREVER, &v);
    cf_future_release(f);
    return err == CF_OK ? v : cf_fail(call, err, "result");
}

TEST(task_may_submit_to_its_own_pool)
{
    cf_executor *ex = pool_new(2);
    nested n = {ex, NULL};
    cf_future *f = submit(ex, submit_from_task, &n);
    ASSERT_EQ(result_of(f), 16);
    cf_future_release(f);
    cf_executor_free(ex);
}
