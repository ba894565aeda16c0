/* test_thread_pool_hook.c - the thread pool's thread_main option: a hook
 * that wraps each worker thread's whole life, as a Python binding needs to
 * keep one interpreter thread state per thread. */
#define _GNU_SOURCE
#include "coretest.h"

/* What the hook records, and the state it keeps on its own stack. */
typedef struct hook_log {
    atomic_int entered, left;
    char names[8][32];
} hook_log;

typedef struct frame {
    hook_log *log;
    int index;
    atomic_int tasks; /* tasks run inside this frame */
} frame;

/* The frame of the hook around this thread, or NULL outside one. */
static _Thread_local frame *current_frame;

static void hook(void (*run)(void *), void *run_arg, void *ctx)
{
    hook_log *log = ctx;
    frame fr = {.log = log};
    fr.index = atomic_fetch_add(&log->entered, 1);
    if (fr.index < 8)
        pthread_getname_np(pthread_self(), log->names[fr.index],
                           sizeof log->names[fr.index]);
    current_frame = &fr;
    run(run_arg);
    current_frame = NULL;
    atomic_fetch_add(&log->left, 1);
}

/* Counts itself in the enclosing hook's frame (on that hook's stack) and
 * returns the frame, NULL outside one; waits on the latch `arg` if any. */
static void *task_in_frame(void *arg, cf_call *call)
{
    (void)call;
    frame *fr = current_frame;
    if (fr)
        atomic_fetch_add(&fr->tasks, 1);
    if (arg)
        latch_wait(arg);
    return fr;
}

static cf_executor *hooked_pool(int max_workers, hook_log *log)
{
    cf_thread_pool_options opts = {.max_workers = max_workers,
                                   .thread_name_prefix = "hooked",
                                   .thread_main = hook,
                                   .thread_ctx = log};
    cf_executor *ex = NULL;
    ASSERT_OK(cf_thread_pool_new(&opts, &ex));
    return ex;
}

TEST(thread_main_runs_once_per_thread_around_every_task)
{
    hook_log log = {0};
    cf_executor *ex = hooked_pool(3, &log);
    ASSERT_EQ(atomic_load(&log.entered), 0); /* no thread yet */
    latch l;
    latch_init(&l);
    cf_future *fs[3];
    for (int i = 0; i < 3; i++)
        fs[i] = submit(ex, task_in_frame, &l); /* three threads at once */
    latch_wait_arrived(&l, 3);
    latch_open(&l);
    for (int i = 0; i < 3; i++) {
        ASSERT(result_of(fs[i]) != 0);
        cf_future_release(fs[i]);
    }
    for (int i = 0; i < 50; i++) {
        cf_future *f = submit(ex, task_in_frame, NULL);
        ASSERT(result_of(f) != 0);
        cf_future_release(f);
    }
    ASSERT_EQ(atomic_load(&log.entered), 3);
    ASSERT_EQ(atomic_load(&log.left), 0); /* the threads are still alive */
    cf_executor_free(ex);
    ASSERT_EQ(atomic_load(&log.left), 3); /* each hook returned, once */
    latch_destroy(&l);
}

TEST(thread_main_sees_the_thread_named)
{
    hook_log log = {0};
    cf_executor *ex = hooked_pool(2, &log);
    latch l;
    latch_init(&l);
    cf_future *a = submit(ex, task_in_frame, &l);
    cf_future *b = submit(ex, task_in_frame, &l);
    latch_wait_arrived(&l, 2);
    latch_open(&l);
    result_of(a);
    result_of(b);
    cf_future_release(a);
    cf_future_release(b);
    cf_executor_free(ex);
    ASSERT_EQ(atomic_load(&log.entered), 2);
    for (int i = 0; i < 2; i++)
        ASSERT(strncmp(log.names[i], "hooked_", 7) == 0);
    ASSERT(strcmp(log.names[0], log.names[1]) != 0);
}

static int initializer_in_frame(void *arg)
{
    atomic_fetch_add((atomic_int *)arg, current_frame ? 1 : 1000);
    return 0;
}

TEST(thread_main_encloses_the_initializer)
{
    hook_log log = {0};
    atomic_int inits = 0;
    cf_thread_pool_options opts = {.max_workers = 2,
                                   .initializer = initializer_in_frame,
                                   .initarg = &inits,
                                   .thread_main = hook,
                                   .thread_ctx = &log};
    cf_executor *ex = NULL;
    ASSERT_OK(cf_thread_pool_new(&opts, &ex));
    cf_future *f = submit(ex, task_in_frame, NULL);
    ASSERT(result_of(f) != 0);
    cf_future_release(f);
    cf_executor_free(ex);
    ASSERT_EQ(atomic_load(&inits), 1);
}

/* A hook that forgets to run the worker. */
static void hook_skipping_run(void (*run)(void *), void *run_arg, void *ctx)
{
    (void)run;
    (void)run_arg;
    atomic_fetch_add((atomic_int *)ctx, 1);
}

TEST(thread_main_returning_without_run_breaks_the_pool)
{
    atomic_int calls = 0;
    cf_thread_pool_options opts = {.max_workers = 1,
                                   .thread_main = hook_skipping_run,
                                   .thread_ctx = &calls};
    cf_executor *ex = NULL;
    ASSERT_OK(cf_thread_pool_new(&opts, &ex));
    atomic_int ran = 0;
    cf_future *f = submit(ex, task_count, &ran);
    ASSERT_CODE(cf_future_result(f, 30, NULL), CF_EBROKEN_THREAD_POOL);
    cf_future_release(f);
    cf_future *g = (cf_future *)0x1;
    ASSERT_CODE(cf_executor_submit(ex, task_count, &ran, &g),
                CF_EBROKEN_THREAD_POOL);
    cf_executor_free(ex);
    ASSERT_EQ(atomic_load(&ran), 0);
    ASSERT_EQ(atomic_load(&calls), 1);
}

/* A hook that runs the worker twice: the second call returns at once. */
static void hook_running_twice(void (*run)(void *), void *run_arg, void *ctx)
{
    run(run_arg);
    run(run_arg);
    atomic_fetch_add((atomic_int *)ctx, 1);
}

TEST(thread_main_calling_run_again_returns_at_once)
{
    atomic_int left = 0;
    cf_thread_pool_options opts = {.max_workers = 1,
                                   .thread_main = hook_running_twice,
                                   .thread_ctx = &left};
    cf_executor *ex = NULL;
    ASSERT_OK(cf_thread_pool_new(&opts, &ex));
    cf_future *f = submit(ex, task_identity, (void *)(intptr_t)4);
    ASSERT_EQ(result_of(f), 4);
    cf_future_release(f);
    cf_executor_free(ex);
    ASSERT_EQ(atomic_load(&left), 1);
}
