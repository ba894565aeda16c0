/* test_fork.c - fork() in a program that uses cfutures.
 *
 * A child of fork() has one thread: the one that forked. A pool inherited
 * from the parent has no workers there, and its locks may have been held
 * by a parent thread at the instant of the fork. The library promises that
 * in the child the inherited pool refuses work with CF_EBROKEN_THREAD_POOL
 * at once (it compares a fork generation), that a pool created in the
 * child works, and that nothing in the child deadlocks. Each child runs
 * under a deadline: a deadlock fails the test rather than hanging it.
 */
#include "reltest.h"

#include <stdatomic.h>

/* Under TSan the children only check the refusals: TSan does not support
 * starting threads in the child of a multithreaded process. */
#if RELTEST_TSAN
const char *__tsan_default_options(void);
const char *__tsan_default_options(void)
{
    return "die_after_fork=0";
}
#endif

/* ------------------------------------------------------------------------ */
/* A busy pool: a feeder thread keeps its workers popping tiny tasks, so its
 * lock is taken and released all the time.                                */

typedef struct busy {
    cf_executor *pool;
    atomic_bool stop;
    atomic_size_t ran;
    pthread_t feeder;
} busy;

static void *task_tick(void *arg, cf_call *call)
{
    (void)call;
    atomic_fetch_add((atomic_size_t *)arg, 1);
    return NULL;
}

static void *feed(void *arg)
{
    busy *b = arg;
    while (!atomic_load(&b->stop)) {
        cf_future *last = NULL;
        for (int i = 0; i < 64; i++) {
            cf_future *f;
            if (cf_executor_submit(b->pool, task_tick, &b->ran, &f) != CF_OK)
                break;
            cf_future_release(last);
            last = f;
        }
        /* Bound the queue: wait for the last of the batch. */
        if (last)
            cf_future_result(last, CF_FOREVER, NULL);
        cf_future_release(last);
    }
    return NULL;
}

static void busy_start(busy *b, int workers)
{
    b->pool = pool_new(workers);
    atomic_init(&b->stop, false);
    atomic_init(&b->ran, 0);
    ASSERT_EQ(pthread_create(&b->feeder, NULL, feed, b), 0);
    WAIT_UNTIL(atomic_load(&b->ran) > 100, 10);
}

static void busy_stop(busy *b)
{
    atomic_store(&b->stop, true);
    ASSERT_EQ(pthread_join(b->feeder, NULL), 0);
    cf_executor_free(b->pool);
}

/* In the child: the inherited pool refuses, a fresh pool works. */
static int child_check_pools(void *arg)
{
    cf_executor *inherited = arg;
    cf_future *f = NULL;
    int rc = cf_executor_submit(inherited, task_double, (void *)3, &f);
    if (rc != CF_EBROKEN_THREAD_POOL) {
        fprintf(stderr, "child: inherited pool submit gave %s\n",
                cf_err_name(rc));
        return 2;
    }
    if (RELTEST_TSAN) {
        cf_executor_free(inherited);
        return 0; /* TSan cannot follow threads started after fork() */
    }
    cf_executor *fresh;
    if (cf_thread_pool_new(&(cf_thread_pool_options){.max_workers = 2},
                           &fresh) != CF_OK)
        return 3;
    if (cf_executor_submit(fresh, task_double, (void *)21, &f) != CF_OK)
        return 4;
    void *v = NULL;
    rc = cf_future_result(f, 10, &v);
    cf_future_release(f);
    cf_executor_free(fresh);
    if (rc != CF_OK || (intptr_t)v != 42)
        return 5;
    /* Freeing the child's copy returns at once (its threads are the
     * parent's) and releases its memory (valgrind checks the child too). */
    cf_executor_free(inherited);
    return 0;
}

TEST_TIMEOUT(busy_pool_children_never_deadlock, 120)
{
    /* GCC's ASan runtime does not hold its allocator lock across fork():
     * a child forked while a parent thread allocates can hang in malloc,
     * whatever the program does. The test proves the library's part in
     * the other builds. */
    if (RELTEST_ASAN) {
        printf("skipped under ASan (its allocator is not fork-safe)\n");
        return;
    }
    busy b;
    busy_start(&b, 2);
    size_t forks = harness_scaled(200, 10);
    for (size_t i = 0; i < forks; i++) {
        int rc = reltest_in_child(child_check_pools, b.pool, 10);
        if (rc != 0)
            harness_fail(__FILE__, __LINE__, "fork %zu of %zu: child %s (%d)",
                         i + 1, forks, rc == CHILD_HUNG ? "hung" : "failed",
                         rc);
    }
    busy_stop(&b);
}

/* A child of an idle pool: no lock can be held at the fork. */
TEST(idle_pool_child_refuses_and_new_pool_works)
{
    cf_executor *pool = pool_new(2);
    cf_future *f = submit(pool, task_double, (void *)1);
    ASSERT_EQ(result_of(f), 2);
    cf_future_release(f);
    ASSERT_CHILD_OK(reltest_in_child(child_check_pools, pool, 10));
    /* The parent's pool is untouched by the child's refusal. */
    f = submit(pool, task_double, (void *)5);
    ASSERT_EQ(result_of(f), 10);
    cf_future_release(f);
    cf_executor_free(pool);
}

/* A pool created before any work, never started a thread: still refused
 * in the child (the generation is recorded at creation). */
TEST(unstarted_pool_is_refused_in_child)
{
    cf_executor *pool = pool_new(1);
    ASSERT_CHILD_OK(reltest_in_child(child_check_pools, pool, 10));
    cf_executor_free(pool);
}

static int grandchild_body(void *arg)
{
    return child_check_pools(arg);
}

/* In the child, a pool made there; forked again: the grandchild refuses it. */
static int child_forks_again(void *arg)
{
    (void)arg;
    if (RELTEST_TSAN)
        return 0; /* TSan cannot follow threads started after fork() */
    cf_executor *mine;
    if (cf_thread_pool_new(NULL, &mine) != CF_OK)
        return 2;
    cf_future *f;
    if (cf_executor_submit(mine, task_double, (void *)2, &f) != CF_OK)
        return 3;
    cf_future_result(f, 10, NULL);
    cf_future_release(f);
    pid_t pid = fork();
    if (pid < 0)
        return 4;
    if (pid == 0)
        harness_child_exit(grandchild_body(mine));
    int rc = reltest_wait_child(pid, 10);
    cf_executor_free(mine);
    return rc == 0 ? 0 : 5;
}

TEST(grandchild_refuses_pool_of_its_parent)
{
    ASSERT_CHILD_OK(reltest_in_child(child_forks_again, NULL, 20));
}

/* A future completed in the parent before the fork reads the same in the
 * child; one running at the fork stays running there (nothing in the child
 * completes it): a timed wait times out rather than hanging, and cancel
 * refuses. A pending one is the child's own copy to cancel. */
static int child_reads_futures(void *arg)
{
    cf_future **fs = arg;
    void *v = NULL;
    if (cf_future_result(fs[0], 0, &v) != CF_OK || (intptr_t)v != 7)
        return 2;
    if (cf_future_result(fs[1], 0.05, NULL) != CF_ETIMEDOUT)
        return 3;
    if (cf_future_cancel(fs[1]) || !cf_future_running(fs[1]))
        return 4;
    if (!cf_future_cancel(fs[2]) || !cf_future_cancelled(fs[2]))
        return 5;
    return 0;
}

TEST(futures_cross_fork_as_copies)
{
    cf_executor *pool = pool_new(1);
    latch gate;
    latch_init(&gate);
    cf_future *fs[3];
    fs[0] = future_done_with((void *)7);
    fs[1] = submit(pool, task_gate, &gate);
    fs[2] = future_new();
    latch_wait_arrived(&gate, 1);
    ASSERT_CHILD_OK(reltest_in_child(child_reads_futures, fs, 10));
    ASSERT(!cf_future_cancelled(fs[2])); /* the parent's are untouched */
    latch_open(&gate);
    ASSERT(cf_future_result(fs[1], CF_FOREVER, NULL) == CF_OK);
    for (int i = 0; i < 3; i++)
        cf_future_release(fs[i]);
    cf_executor_free(pool);
    latch_destroy(&gate);
}

/* What a child may do with the inherited pool object itself: shut it down
 * or free it. Its workers do not exist in the child, so neither may wait
 * for them; both must return promptly. */
static int child_free_inherited(void *arg)
{
    cf_executor *inherited = arg;
    int rc = cf_executor_shutdown(inherited, true, false);
    if (rc != CF_OK && !cf_error_is_broken(rc))
        return 2;
    cf_executor_free(inherited);
    return 0;
}

TEST_TIMEOUT(child_free_inherited_idle_pool, 30)
{
    cf_executor *pool = pool_new(2);
    cf_future *f = submit(pool, task_double, (void *)1);
    ASSERT_EQ(result_of(f), 2);
    cf_future_release(f);
    ASSERT_CHILD_OK(reltest_in_child(child_free_inherited, pool, 10));
    cf_executor_free(pool);
}
