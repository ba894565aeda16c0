/* test_shutdown_inside.c - shutdown and free called from one of the
 * executor's own threads: a thread pool's task, a process pool's
 * done-callback (run on its manager thread). The call cannot wait for the
 * thread it runs on, but the shutdown takes effect in full (as in CPython,
 * where only the join fails): no new work, cancel_futures honoured,
 * running tasks flagged; the wait alone is refused (CF_EDEADLK), and the
 * executor finishes once its tasks return. A free from there is finished
 * by a thread of the library's own ("cfutures-free"). */
#include "procpool_test.h"

#include <pthread.h>
#include <sys/wait.h>

/* ------------------------------------------------------------------------ */
/* Helpers                                                                  */

static cf_executor *thread_pool(int max_workers, const char *prefix)
{
    cf_thread_pool_options opts = {.max_workers = max_workers,
                                   .thread_name_prefix = prefix};
    cf_executor *ex = NULL;
    ASSERT_OK(cf_thread_pool_new(&opts, &ex));
    return ex;
}

static cf_future *submit(cf_executor *ex, cf_fn fn, void *arg)
{
    cf_future *f = NULL;
    ASSERT_OK(cf_executor_submit(ex, fn, arg, &f));
    return f;
}

static intptr_t result_of(cf_future *f)
{
    void *v = NULL;
    ASSERT_OK(cf_future_result(f, 30, &v));
    return (intptr_t)v;
}

/* Threads of this process whose name starts with `prefix` and that have
 * not exited. */
static int threads_named(const char *prefix)
{
    DIR *d = opendir("/proc/self/task");
    ASSERT(d != NULL);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        char path[300], comm[32] = "", state = '?';
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof path, "/proc/self/task/%s/stat", e->d_name);
        FILE *fp = fopen(path, "r");
        if (!fp)
            continue;
        if (fscanf(fp, "%*d (%31[^)]) %c", comm, &state) == 2 &&
            strncmp(comm, prefix, strlen(prefix)) == 0 && state != 'Z' &&
            state != 'X')
            n++;
        fclose(fp);
    }
    closedir(d);
    return n;
}

/* True once this process has no child process left, exited or not
 * (without reaping any: the pool reaps its own). */
static bool no_child_left(void)
{
    siginfo_t si;
    return waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT) == -1 &&
           errno == ECHILD;
}

static void *task_gate(void *arg, cf_call *call)
{
    (void)call;
    latch_wait(arg);
    return (void *)(intptr_t)7;
}

/* Waits on the latch, then reports whether it was asked to stop. */
static void *task_gate_then_flag(void *arg, cf_call *call)
{
    latch_wait(arg);
    return (void *)(intptr_t)cf_call_cancel_requested(call);
}

static void *task_value(void *arg, cf_call *call)
{
    (void)call;
    return arg;
}

/* What a task that shuts its own pool down saw. */
typedef struct inside {
    cf_executor *ex;
    latch *go; /* the task waits for it: the test has queued the others */
    bool cancel;
    int rc;
    size_t unfinished;
    bool flagged; /* its own cf_call_cancel_requested() afterwards */
} inside;

static void *task_shutdown_wait(void *arg, cf_call *call)
{
    inside *in = arg;
    latch_wait(in->go);
    in->rc = cf_executor_shutdown(in->ex, true, in->cancel);
    in->flagged = cf_call_cancel_requested(call);
    return NULL;
}

static void *task_shutdown_timeout(void *arg, cf_call *call)
{
    inside *in = arg;
    latch_wait(in->go);
    in->unfinished = 99;
    in->rc = cf_executor_shutdown_timeout(in->ex, 5.0, in->cancel,
                                          &in->unfinished);
    in->flagged = cf_call_cancel_requested(call);
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Thread pool: a task                                                      */

TEST(task_shutdown_with_wait_shuts_the_pool_down_and_gets_edeadlk)
{
    cf_executor *ex = thread_pool(2, "inwait");
    latch gate;
    latch_init(&gate);
    cf_future *busy = submit(ex, task_gate, &gate);
    latch_wait_arrived(&gate, 1);
    latch go;
    latch_init(&go);
    inside in = {.ex = ex, .go = &go};
    cf_future *self = submit(ex, task_shutdown_wait, &in);
    cf_future *queued = submit(ex, task_value, (void *)(intptr_t)5);
    latch_open(&go);
    result_of(self);
    ASSERT_CODE(in.rc, CF_EDEADLK);
    ASSERT(!in.flagged);
    /* Shut down: nothing new is taken; what was accepted still runs. */
    cf_future *late = (cf_future *)0x1;
    ASSERT_CODE(cf_executor_submit(ex, task_value, NULL, &late),
                CF_ESHUTDOWN);
    ASSERT_PTR_EQ(late, (cf_future *)0x1);
    latch_open(&gate);
    ASSERT_EQ(result_of(busy), 7);
    ASSERT_EQ(result_of(queued), 5);
    /* The pool ends on its own once the tasks returned. */
    WAIT_UNTIL(threads_named("inwait_") == 0, 10);
    ASSERT_OK(cf_executor_shutdown(ex, true, false));
    cf_future_release(busy);
    cf_future_release(self);
    cf_future_release(queued);
    cf_executor_free(ex);
    latch_destroy(&gate);
    latch_destroy(&go);
}

TEST(task_shutdown_with_wait_honours_cancel_futures)
{
    cf_executor *ex = thread_pool(2, "incancel");
    latch gate;
    latch_init(&gate);
    cf_future *busy = submit(ex, task_gate_then_flag, &gate);
    latch_wait_arrived(&gate, 1);
    latch go;
    latch_init(&go);
    inside in = {.ex = ex, .go = &go, .cancel = true};
    cf_future *self = submit(ex, task_shutdown_wait, &in);
    cf_future *queued = submit(ex, task_value, (void *)(intptr_t)5);
    latch_open(&go);
    result_of(self);
    ASSERT_CODE(in.rc, CF_EDEADLK);
    ASSERT(in.flagged); /* running tasks are asked to stop, itself too */
    ASSERT_CODE(cf_future_result(queued, 30, NULL), CF_ECANCELLED);
    latch_open(&gate);
    ASSERT_EQ(result_of(busy), 1);
    cf_future_release(busy);
    cf_future_release(self);
    cf_future_release(queued);
    cf_executor_free(ex);
    latch_destroy(&gate);
    latch_destroy(&go);
}

TEST(task_shutdown_timeout_shuts_down_and_counts_itself)
{
    cf_executor *ex = thread_pool(1, "intimeout");
    latch go;
    latch_init(&go);
    inside in = {.ex = ex, .go = &go};
    cf_future *self = submit(ex, task_shutdown_timeout, &in);
    cf_future *queued = submit(ex, task_value, (void *)(intptr_t)3);
    latch_open(&go);
    result_of(self);
    ASSERT_CODE(in.rc, CF_EDEADLK);
    ASSERT_EQ(in.unfinished, 2); /* itself, running, and the queued one */
    cf_future *late = NULL;
    ASSERT_CODE(cf_executor_submit(ex, task_value, NULL, &late),
                CF_ESHUTDOWN);
    ASSERT_EQ(result_of(queued), 3);
    cf_future_release(self);
    cf_future_release(queued);
    cf_executor_free(ex);
    latch_destroy(&go);
}

static void *task_free_own_pool(void *arg, cf_call *call)
{
    (void)call;
    inside *in = arg;
    latch_wait(in->go);
    cf_executor_free(in->ex);
    return (void *)(intptr_t)1;
}

TEST(task_freeing_its_own_pool_frees_it_once_the_tasks_end)
{
    int threads_before = harness_count_threads();
    cf_executor *ex = thread_pool(1, "infree");
    latch go;
    latch_init(&go);
    inside in = {.ex = ex, .go = &go};
    cf_future *self = submit(ex, task_free_own_pool, &in);
    cf_future *queued[3];
    for (int i = 0; i < 3; i++)
        queued[i] = submit(ex, task_value, (void *)(intptr_t)(10 + i));
    latch_open(&go);
    ASSERT_EQ(result_of(self), 1);
    /* As cf_executor_free() from outside: the accepted tasks still run. */
    for (int i = 0; i < 3; i++)
        ASSERT_EQ(result_of(queued[i]), 10 + i);
    /* The worker and the thread that frees the pool end; ASan and
     * valgrind check that the pool's memory went with them. */
    WAIT_UNTIL(harness_count_threads() <= threads_before, 10);
    ASSERT_EQ(threads_named("infree_"), 0);
    cf_future_release(self);
    for (int i = 0; i < 3; i++)
        cf_future_release(queued[i]);
    latch_destroy(&go);
}

/* ------------------------------------------------------------------------ */
/* Process pool: a done-callback on its manager thread                      */

static void *task_wait_path(void *arg, cf_call *call)
{
    (void)call;
    return (void *)(intptr_t)await_file(arg, 30);
}

typedef struct from_callback {
    cf_executor *ex;
    bool free_it;
    atomic_int done;
    int rc;
    pthread_t thread;
} from_callback;

static int callback_shutdown(cf_future *f, void *arg)
{
    (void)f;
    from_callback *cb = arg;
    cb->thread = pthread_self();
    if (cb->free_it)
        cf_executor_free(cb->ex);
    else
        cb->rc = cf_executor_shutdown(cb->ex, true, false);
    atomic_store(&cb->done, 1);
    return 0;
}

/* Submits a task that waits for a file, attaches `cb` while it surely
 * waits, then lets it finish: the callback runs on the manager thread. */
static cf_future *finish_with_callback(cf_executor *ex, from_callback *cb,
                                       tmpdir *dir)
{
    static char path[600];
    tmpdir_file(dir, "go", path, sizeof path);
    cf_future *f = submit_path(ex, task_wait_path, path);
    ASSERT_OK(cf_future_add_done_callback(f, callback_shutdown, cb));
    touch(path);
    ASSERT_EQ(result_of(f), 1);
    WAIT_UNTIL(atomic_load(&cb->done), 30);
    ASSERT(!pthread_equal(cb->thread, pthread_self()));
    return f;
}

TEST_TIMEOUT(process_pool_callback_shutdown_with_wait_shuts_it_down, 60)
{
    tmpdir dir;
    tmpdir_make(&dir);
    cf_executor *ex = pool_new(1, CF_START_EXEC);
    from_callback cb = {.ex = ex};
    cf_future *f = finish_with_callback(ex, &cb, &dir);
    ASSERT_CODE(cb.rc, CF_EDEADLK);
    cf_future *late = (cf_future *)0x1;
    ASSERT_CODE(cf_executor_submit(ex, task_square, (void *)3, &late),
                CF_ESHUTDOWN);
    ASSERT_PTR_EQ(late, (cf_future *)0x1);
    ASSERT_OK(cf_executor_shutdown(ex, true, false));
    cf_future_release(f);
    cf_executor_free(ex);
    tmpdir_remove(&dir);
}

TEST_TIMEOUT(process_pool_callback_freeing_the_pool_frees_it, 60)
{
    int threads_before = harness_count_threads();
    tmpdir dir;
    tmpdir_make(&dir);
    cf_executor *ex = pool_new(1, CF_START_EXEC);
    from_callback cb = {.ex = ex, .free_it = true};
    cf_future *f = finish_with_callback(ex, &cb, &dir);
    /* The pool's manager, its worker process and the freeing thread
     * end. */
    WAIT_UNTIL(no_child_left() && harness_count_threads() <= threads_before,
               30);
    cf_future_release(f);
    tmpdir_remove(&dir);
}
