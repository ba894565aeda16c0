/* test_worker_kinds.c - process pools whose workers run another program
 * (CF_START_PROGRAM) or are started by a callback (CF_START_CALLBACK),
 * tasks found by name, the bytes codec, and the pipes transport.
 *
 * The worker program is tests/worker/worker_program.c; both it and this
 * test register the tasks of tests/worker/named_tasks.h under the same
 * names. CF_TEST_WORKER_PROGRAM is its path (set by CMake).
 */
#include "procpool_test.h"

#include <spawn.h>
#include <sys/wait.h>

#include "worker/named_tasks.h"

extern char **environ;

/* Never registered. */
static void *unnamed_task(void *arg, cf_call *call)
{
    (void)call;
    return arg;
}

static void register_once(void)
{
    ASSERT_OK(named_tasks_register());
}

static cf_process_pool_options program_options(int workers,
                                               cf_transport transport)
{
    register_once();
    cf_process_pool_options o = {.max_workers = workers,
                                 .start_method = CF_START_PROGRAM,
                                 .program = CF_TEST_WORKER_PROGRAM,
                                 .transport = transport};
    return o;
}

static cf_executor *new_pool(const cf_process_pool_options *o)
{
    cf_executor *ex = NULL;
    ASSERT_OK(cf_process_pool_new(o, &ex));
    return ex;
}

/* Squares 0..n-1 on `ex` and checks every result. */
static void check_squares(cf_executor *ex, int n)
{
    cf_future *f[200];
    ASSERT(n <= 200);
    for (int i = 0; i < n; i++)
        ASSERT_OK(cf_executor_submit(ex, named_square, (void *)(intptr_t)i,
                                     &f[i]));
    for (int i = 0; i < n; i++) {
        void *v;
        ASSERT_OK(cf_future_result(f[i], 30, &v));
        ASSERT_EQ((intptr_t)v, (intptr_t)i * i);
        cf_future_release(f[i]);
    }
}

/* Checks that `ex`'s tasks run in another process. */
static void check_elsewhere(cf_executor *ex)
{
    cf_future *p;
    void *pid;
    ASSERT_OK(cf_executor_submit(ex, named_pid, NULL, &p));
    ASSERT_OK(cf_future_result(p, 30, &pid));
    ASSERT((intptr_t)pid > 0 && (pid_t)(intptr_t)pid != getpid());
    cf_future_release(p);
}

/* The code and message a finished future failed with. */
static int failure(cf_future *f, char *msg, size_t n)
{
    cf_error e;
    int rc = cf_future_result(f, 30, NULL);
    ASSERT_OK(cf_future_exception(f, 0, &e));
    snprintf(msg, n, "%s", e.message ? e.message : "");
    return rc == CF_ETASK ? e.code : rc;
}

/* ------------------------------------------------------------------------ */
/* Another program                                                          */

TEST_TIMEOUT(program_worker_runs_named_tasks, 60)
{
    cf_process_pool_options o = program_options(2, CF_TRANSPORT_SHARED_MEMORY);
    cf_executor *ex = new_pool(&o);
    check_squares(ex, 200);
    check_elsewhere(ex);
    cf_executor_free(ex);
}

TEST_TIMEOUT(program_worker_over_pipes, 60)
{
    cf_process_pool_options o = program_options(2, CF_TRANSPORT_PIPES);
    cf_executor *ex = new_pool(&o);
    check_squares(ex, 200);
    check_elsewhere(ex);
    cf_executor_free(ex);
}

TEST_TIMEOUT(program_worker_task_failure, 60)
{
    cf_process_pool_options o = program_options(2, CF_TRANSPORT_SHARED_MEMORY);
    cf_executor *ex = new_pool(&o);
    cf_future *f;
    ASSERT_OK(cf_executor_submit(ex, named_fail, (void *)5, &f));
    char msg[200];
    ASSERT_EQ(failure(f, msg, sizeof msg), 42);
    ASSERT_STR_EQ(msg, "failed on 5");
    cf_future_release(f);
    cf_executor_free(ex);
}

TEST_TIMEOUT(unregistered_task_is_refused_at_submit, 60)
{
    cf_process_pool_options o = program_options(1, CF_TRANSPORT_SHARED_MEMORY);
    cf_executor *ex = new_pool(&o);
    cf_future *f = NULL;
    /* This program's own function, never registered: no name to send. */
    ASSERT_CODE(cf_executor_submit(ex, unnamed_task, NULL, &f), CF_EINVAL);
    ASSERT(f == NULL);
    check_squares(ex, 4); /* the pool is unharmed */
    cf_executor_free(ex);
}

TEST_TIMEOUT(task_the_worker_lacks_fails_its_future, 60)
{
    cf_process_pool_options o = program_options(1, CF_TRANSPORT_SHARED_MEMORY);
    const char *argv[] = {CF_TEST_WORKER_PROGRAM, "--only-square", NULL};
    o.program_argv = argv;
    cf_executor *ex = new_pool(&o);
    cf_future *f;
    ASSERT_OK(cf_executor_submit(ex, named_pid, NULL, &f));
    char msg[300];
    ASSERT_EQ(failure(f, msg, sizeof msg), CF_EINVAL);
    ASSERT(strstr(msg, "'pid' is not registered") != NULL);
    cf_future_release(f);
    check_squares(ex, 4);
    cf_executor_free(ex);
}

TEST_TIMEOUT(required_task_missing_breaks_pool, 60)
{
    cf_process_pool_options o = program_options(1, CF_TRANSPORT_SHARED_MEMORY);
    const char *argv[] = {CF_TEST_WORKER_PROGRAM, "--only-square", NULL};
    const char *required[] = {"square", "reverse", NULL};
    o.program_argv = argv;
    o.required_tasks = required;
    cf_executor *ex = new_pool(&o);
    cf_future *f;
    ASSERT_OK(cf_executor_submit(ex, named_square, (void *)3, &f));
    char msg[400];
    ASSERT_EQ(failure(f, msg, sizeof msg), CF_EBROKEN_PROCESS_POOL);
    ASSERT(strstr(msg, "'reverse'") != NULL);
    cf_future_release(f);
    cf_future *later = NULL;
    ASSERT_CODE(cf_executor_submit(ex, named_square, (void *)3, &later),
                CF_EBROKEN_PROCESS_POOL);
    cf_executor_free(ex);
}

TEST_TIMEOUT(required_tasks_present_start_normally, 60)
{
    cf_process_pool_options o = program_options(2, CF_TRANSPORT_PIPES);
    const char *required[] = {"square", "reverse", "pid", NULL};
    o.required_tasks = required;
    cf_executor *ex = new_pool(&o);
    check_squares(ex, 20);
    cf_executor_free(ex);
}

TEST_TIMEOUT(initializer_and_codec_by_name, 60)
{
    cf_process_pool_options o = program_options(2, CF_TRANSPORT_SHARED_MEMORY);
    o.initializer = named_init;
    o.initarg = (void *)41;
    o.codec = &named_plus_codec;
    cf_executor *ex = new_pool(&o);
    cf_future *f;
    void *v;
    ASSERT_OK(cf_executor_submit(ex, named_seen_init, NULL, &f));
    ASSERT_OK(cf_future_result(f, 30, &v));
    ASSERT_EQ((intptr_t)v, 41 + 1); /* the result's trip adds one */
    cf_future_release(f);
    ASSERT_OK(cf_executor_submit(ex, named_square, (void *)4, &f));
    ASSERT_OK(cf_future_result(f, 30, &v));
    ASSERT_EQ((intptr_t)v, 25 + 1); /* (4 + 1)^2 + 1 */
    cf_future_release(f);
    cf_executor_free(ex);
}

TEST_TIMEOUT(failing_initializers_break_pool, 60)
{
    /* The pool's, by name... */
    cf_process_pool_options o = program_options(1, CF_TRANSPORT_SHARED_MEMORY);
    o.initializer = named_init;
    o.initarg = (void *)-1;
    cf_executor *ex = new_pool(&o);
    cf_future *f;
    char msg[400];
    ASSERT_OK(cf_executor_submit(ex, named_square, (void *)2, &f));
    ASSERT_EQ(failure(f, msg, sizeof msg), CF_EBROKEN_PROCESS_POOL);
    cf_future_release(f);
    cf_executor_free(ex);
    /* ...and the worker program's own (cf_worker_options). */
    o = program_options(1, CF_TRANSPORT_PIPES);
    const char *argv[] = {CF_TEST_WORKER_PROGRAM, "--init-fail", NULL};
    o.program_argv = argv;
    ex = new_pool(&o);
    ASSERT_OK(cf_executor_submit(ex, named_square, (void *)2, &f));
    ASSERT_EQ(failure(f, msg, sizeof msg), CF_EBROKEN_PROCESS_POOL);
    ASSERT(strstr(msg, "worker program's initializer returned 3") != NULL);
    cf_future_release(f);
    cf_executor_free(ex);
}

TEST_TIMEOUT(program_keeps_the_descriptors_it_is_given, 60)
{
    int kept[2], other[2];
    ASSERT_OK(pipe(kept));
    ASSERT_OK(pipe(other));
    cf_process_pool_options o = program_options(1, CF_TRANSPORT_SHARED_MEMORY);
    o.keep_fds = &kept[1];
    o.n_keep_fds = 1;
    cf_executor *ex = new_pool(&o);
    void *v;
    cf_future *f;
    ASSERT_OK(cf_executor_submit(ex, named_fd_open,
                                 (void *)(intptr_t)kept[1], &f));
    ASSERT_OK(cf_future_result(f, 30, &v));
    ASSERT_EQ((intptr_t)v, 1);
    cf_future_release(f);
    ASSERT_OK(cf_executor_submit(ex, named_fd_open,
                                 (void *)(intptr_t)other[1], &f));
    ASSERT_OK(cf_future_result(f, 30, &v));
    ASSERT_EQ((intptr_t)v, 0);
    cf_future_release(f);
    cf_executor_free(ex);
    for (int i = 0; i < 2; i++) {
        close(kept[i]);
        close(other[i]);
    }
}

TEST_TIMEOUT(program_worker_crash_names_pid_and_signal, 60)
{
    cf_process_pool_options o = program_options(1, CF_TRANSPORT_SHARED_MEMORY);
    o.survive_worker_death = true;
    cf_executor *ex = new_pool(&o);
    cf_future *f;
    char msg[400];
    ASSERT_OK(cf_executor_submit(ex, named_abort, NULL, &f));
    ASSERT_EQ(failure(f, msg, sizeof msg), CF_EBROKEN_PROCESS_POOL);
    ASSERT(strstr(msg, "SIGABRT") != NULL);
    ASSERT(strstr(msg, "abort") != NULL);
    cf_future_release(f);
    check_squares(ex, 10); /* a replacement serves the rest */
    cf_executor_free(ex);
}

/* The worker program's own function, named from its file. */
TEST_TIMEOUT(program_worker_crash_has_backtrace, 60)
{
    cf_process_pool_options o = program_options(1, CF_TRANSPORT_PIPES);
    cf_executor *ex = new_pool(&o);
    cf_future *f;
    char msg[4096];
    ASSERT_OK(cf_executor_submit(ex, named_abort, NULL, &f));
    ASSERT_EQ(failure(f, msg, sizeof msg), CF_EBROKEN_PROCESS_POOL);
    ASSERT(strstr(msg, "; backtrace:\n  #0 ") != NULL);
    ASSERT(strstr(msg, " named_abort+0x") != NULL);
    ASSERT(strstr(msg, "cf_test_worker_program+0x") != NULL);
    cf_future_release(f);
    cf_executor_free(ex);
}

TEST_TIMEOUT(missing_program_fails_futures, 60)
{
    cf_process_pool_options o = program_options(1, CF_TRANSPORT_SHARED_MEMORY);
    o.program = "/nonexistent/cfutures-worker";
    cf_executor *ex = new_pool(&o);
    cf_future *f;
    ASSERT_OK(cf_executor_submit(ex, named_square, (void *)2, &f));
    char msg[400];
    int rc = failure(f, msg, sizeof msg);
    ASSERT(rc == CF_ESYS || rc == CF_EBROKEN_PROCESS_POOL);
    /* The message names the program and what is wrong with it (under
     * valgrind's --trace-children the start succeeds: valgrind itself
     * runs, then fails to exec it and the pool breaks). */
    if (rc == CF_ESYS &&
        !contains(msg, "/nonexistent/cfutures-worker: No such file"))
        harness_fail(__FILE__, __LINE__, "message: %s", msg);
    cf_future_release(f);
    cf_executor_free(ex);
}

TEST_TIMEOUT(bytes_codec_round_trip, 60)
{
    cf_process_pool_options o = program_options(1, CF_TRANSPORT_SHARED_MEMORY);
    o.codec = cf_codec_bytes();
    cf_executor *ex = new_pool(&o);
    size_t sizes[] = {0, 1, 7, 4096, 300000};
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        cf_bytes *in = cf_bytes_new(NULL, sizes[k]);
        ASSERT(in != NULL);
        for (size_t i = 0; i < in->len; i++)
            in->data[i] = (unsigned char)(i * 7 + k);
        cf_future *f;
        void *v;
        ASSERT_OK(cf_executor_submit(ex, named_reverse, in, &f));
        ASSERT_OK(cf_future_result(f, 30, &v));
        const cf_bytes *out = v;
        ASSERT(out != NULL);
        ASSERT_EQ(out->len, in->len);
        for (size_t i = 0; i < in->len; i++)
            ASSERT_EQ(out->data[i], in->data[in->len - 1 - i]);
        cf_future_release(f);
        cf_bytes_free(in);
    }
    cf_future *f;
    void *v = (void *)1;
    ASSERT_OK(cf_executor_submit(ex, named_reverse, NULL, &f));
    ASSERT_OK(cf_future_result(f, 30, &v));
    ASSERT(v == NULL);
    cf_future_release(f);
    cf_executor_free(ex);
}

/* ------------------------------------------------------------------------ */
/* Started by a callback                                                    */

typedef struct starter {
    atomic_int started;
    atomic_int reaped;
    bool close_others; /* a careful starter; a naive one keeps everything */
} starter;

static int start_by_fork(void *ctx, const cf_worker_channel *ch,
                         cf_worker_process *out)
{
    starter *s = ctx;
    pid_t pid = fork();
    if (pid < 0)
        return CF_EAGAIN;
    if (pid == 0) {
        if (s->close_others)
            for (int fd = 3; fd < 1024; fd++)
                if (fd != ch->read_fd && fd != ch->write_fd &&
                    fd != ch->shm_fd)
                    close(fd);
        int status = 2;
        cf_process_worker_serve(ch, NULL, &status);
        _exit(status);
    }
    atomic_fetch_add(&s->started, 1);
    out->pid = pid;
    return CF_OK;
}

static void check_callback(cf_transport transport, bool close_others)
{
    register_once();
    starter s = {0, 0, close_others};
    cf_process_pool_options o = {.max_workers = 2,
                                 .start_method = CF_START_CALLBACK,
                                 .start_worker = start_by_fork,
                                 .start_ctx = &s,
                                 .transport = transport};
    cf_executor *ex = new_pool(&o);
    check_squares(ex, 100);
    check_elsewhere(ex);
    cf_executor_free(ex);
    ASSERT(atomic_load(&s.started) >= 1);
}

TEST_TIMEOUT(callback_fork_worker, 60)
{
    check_callback(CF_TRANSPORT_SHARED_MEMORY, true);
}

TEST_TIMEOUT(callback_fork_worker_over_pipes, 60)
{
    check_callback(CF_TRANSPORT_PIPES, true);
}

TEST_TIMEOUT(callback_naive_fork_keeps_every_descriptor, 60)
{
    /* Each worker holds copies of the pool's ends of the others' channels:
     * shutdown must still end them all. */
    check_callback(CF_TRANSPORT_SHARED_MEMORY, false);
    check_callback(CF_TRANSPORT_PIPES, false);
}

TEST_TIMEOUT(callback_worker_crash_has_backtrace, 60)
{
    register_once();
    starter s = {0, 0, true};
    cf_process_pool_options o = {.max_workers = 1,
                                 .start_method = CF_START_CALLBACK,
                                 .start_worker = start_by_fork,
                                 .start_ctx = &s,
                                 .transport = CF_TRANSPORT_SHARED_MEMORY};
    cf_executor *ex = new_pool(&o);
    cf_future *f;
    char msg[4096];
    ASSERT_OK(cf_executor_submit(ex, named_abort, NULL, &f));
    ASSERT_EQ(failure(f, msg, sizeof msg), CF_EBROKEN_PROCESS_POOL);
    ASSERT(strstr(msg, "; backtrace:\n  #0 ") != NULL);
    ASSERT(strstr(msg, " named_abort+0x") != NULL);
    cf_future_release(f);
    cf_executor_free(ex);
}

/* Spawns the worker program with --serve, its channel moved to 100..102
 * (as a launcher that passes descriptors would), and reaps it itself. */
static int start_by_spawn(void *ctx, const cf_worker_channel *ch,
                          cf_worker_process *out);

static int reap_own(void *ctx, long pid, int *status)
{
    starter *s = ctx;
    if (waitpid((pid_t)pid, status, 0) != (pid_t)pid)
        return -1;
    atomic_fetch_add(&s->reaped, 1);
    return 0;
}

static int start_by_spawn(void *ctx, const cf_worker_channel *ch,
                          cf_worker_process *out)
{
    starter *s = ctx;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    bool one = ch->read_fd == ch->write_fd;
    posix_spawn_file_actions_adddup2(&fa, ch->read_fd, 100);
    if (!one)
        posix_spawn_file_actions_adddup2(&fa, ch->write_fd, 101);
    if (ch->shm_fd >= 0)
        posix_spawn_file_actions_adddup2(&fa, ch->shm_fd, 102);
    char slot[16];
    snprintf(slot, sizeof slot, "%d", ch->slot);
    char *argv[] = {(char *)CF_TEST_WORKER_PROGRAM, "--serve", "100",
                    one ? "100" : "101", ch->shm_fd >= 0 ? "102" : "-1",
                    slot, NULL};
    pid_t pid;
    int err = posix_spawn(&pid, CF_TEST_WORKER_PROGRAM, &fa, NULL, argv,
                          environ);
    posix_spawn_file_actions_destroy(&fa);
    if (err)
        return CF_ESYS;
    atomic_fetch_add(&s->started, 1);
    out->pid = pid;
    out->reap = reap_own;
    return CF_OK;
}

static void check_spawn_callback(cf_transport transport)
{
    register_once();
    starter s = {0, 0, true};
    cf_process_pool_options o = {.max_workers = 2,
                                 .start_method = CF_START_CALLBACK,
                                 .start_worker = start_by_spawn,
                                 .start_ctx = &s,
                                 .transport = transport,
                                 .max_tasks_per_child = 7};
    cf_executor *ex = new_pool(&o);
    check_squares(ex, 50);
    check_elsewhere(ex);
    cf_executor_free(ex);
    /* Every worker (some retired after 7 tasks) was reaped by its
     * starter, once. */
    ASSERT(atomic_load(&s.started) >= 50 / 7);
    ASSERT_EQ(atomic_load(&s.reaped), atomic_load(&s.started));
}

TEST_TIMEOUT(callback_spawned_program_reaped_by_its_starter, 60)
{
    check_spawn_callback(CF_TRANSPORT_SHARED_MEMORY);
}

TEST_TIMEOUT(callback_spawned_program_over_pipes, 60)
{
    check_spawn_callback(CF_TRANSPORT_PIPES);
}

static int start_refused(void *ctx, const cf_worker_channel *ch,
                         cf_worker_process *out)
{
    (void)ctx;
    (void)ch;
    (void)out;
    return CF_EAGAIN;
}

static int start_without_pid(void *ctx, const cf_worker_channel *ch,
                             cf_worker_process *out)
{
    (void)ctx;
    (void)ch;
    out->pid = 0; /* breaks the contract */
    return CF_OK;
}

/* A pid that is no child of ours, with no reap function: the pool could
 * neither reap it nor signal it safely (here init, which would never end
 * for the pool to see). */
static int start_not_a_child(void *ctx, const cf_worker_channel *ch,
                             cf_worker_process *out)
{
    (void)ctx;
    (void)ch;
    out->pid = 1; /* breaks the contract */
    return CF_OK;
}

TEST_TIMEOUT(callback_that_fails_fails_the_futures, 60)
{
    register_once();
    cf_start_worker_fn bad[] = {start_refused, start_without_pid,
                                start_not_a_child};
    int expect[] = {CF_EAGAIN, CF_EINVAL, CF_EINVAL};
    for (int k = 0; k < 3; k++) {
        cf_process_pool_options o = {.max_workers = 1,
                                     .start_method = CF_START_CALLBACK,
                                     .start_worker = bad[k]};
        cf_executor *ex = new_pool(&o);
        cf_future *f;
        ASSERT_OK(cf_executor_submit(ex, named_square, (void *)2, &f));
        ASSERT_CODE(cf_future_result(f, 30, NULL), expect[k]);
        cf_future_release(f);
        cf_executor_free(ex);
    }
}

/* ------------------------------------------------------------------------ */
/* This same program over pipes                                             */

TEST_TIMEOUT(exec_and_fork_workers_over_pipes, 60)
{
    cf_start_method methods[] = {CF_START_EXEC, CF_START_FORK};
    for (int k = 0; k < 2; k++) {
        cf_process_pool_options o = {.max_workers = 2,
                                     .start_method = methods[k],
                                     .transport = CF_TRANSPORT_PIPES,
                                     .max_tasks_per_child = 30};
        cf_executor *ex = new_pool(&o);
        /* Unregistered tasks: this same program finds them by address. */
        cf_future *f[100];
        for (int i = 0; i < 100; i++)
            ASSERT_OK(cf_executor_submit(ex, unnamed_task,
                                         (void *)(intptr_t)i, &f[i]));
        for (int i = 0; i < 100; i++) {
            void *v;
            ASSERT_OK(cf_future_result(f[i], 30, &v));
            ASSERT_EQ((intptr_t)v, i);
            cf_future_release(f[i]);
        }
        cf_executor_free(ex);
    }
}

/* ------------------------------------------------------------------------ */
/* Bad input                                                                */

TEST(options_for_other_programs_are_checked)
{
    cf_executor *ex = NULL;
    cf_process_pool_options o = {.start_method = CF_START_PROGRAM};
    ASSERT_CODE(cf_process_pool_new(&o, &ex), CF_EINVAL); /* no program */
    o = (cf_process_pool_options){.start_method = CF_START_CALLBACK};
    ASSERT_CODE(cf_process_pool_new(&o, &ex), CF_EINVAL); /* no callback */
    o = (cf_process_pool_options){.start_method = 9};
    ASSERT_CODE(cf_process_pool_new(&o, &ex), CF_EINVAL);
    o = (cf_process_pool_options){.transport = 5};
    ASSERT_CODE(cf_process_pool_new(&o, &ex), CF_EINVAL);
    int bad_fd = -4;
    o = (cf_process_pool_options){.start_method = CF_START_PROGRAM,
                                  .program = CF_TEST_WORKER_PROGRAM,
                                  .keep_fds = &bad_fd,
                                  .n_keep_fds = 1};
    ASSERT_CODE(cf_process_pool_new(&o, &ex), CF_EINVAL);
    const char *required[] = {"", NULL};
    o = (cf_process_pool_options){.required_tasks = required};
    ASSERT_CODE(cf_process_pool_new(&o, &ex), CF_EINVAL);
    ASSERT(ex == NULL);
}

TEST(registry_refuses_conflicts)
{
    char longname[300];
    memset(longname, 'x', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    ASSERT_CODE(cf_task_register(NULL, named_square), CF_EINVAL);
    ASSERT_CODE(cf_task_register("x", NULL), CF_EINVAL);
    ASSERT_CODE(cf_task_register("", named_square), CF_EINVAL);
    ASSERT_CODE(cf_task_register(longname, named_square), CF_EINVAL);
    longname[255] = '\0';
    ASSERT_OK(cf_task_register(longname, unnamed_task)); /* 255: fine */
    ASSERT_OK(cf_task_register(longname, unnamed_task)); /* same pair */
    ASSERT_CODE(cf_task_register(longname, named_square), CF_EINVAL);
    ASSERT_CODE(cf_task_register("another", unnamed_task), CF_EINVAL);
    ASSERT_CODE(cf_codec_register("c", NULL), CF_EINVAL);
    ASSERT_CODE(cf_initializer_register(NULL, named_init), CF_EINVAL);
    /* Each kind has its own names. */
    ASSERT_OK(cf_codec_register(longname, &named_plus_codec));
}

TEST(worker_entry_outside_a_pool_is_refused)
{
    int status = -1;
    ASSERT_CODE(cf_process_worker_main(NULL, &status), CF_EINVAL);
    ASSERT_CODE(cf_process_worker_main(NULL, NULL), CF_EINVAL);
    cf_worker_channel ch = {-1, -1, -1, -1};
    ASSERT_CODE(cf_process_worker_serve(&ch, NULL, &status), CF_EINVAL);
    ASSERT_CODE(cf_process_worker_serve(NULL, NULL, &status), CF_EINVAL);
    ASSERT_EQ(status, -1);
}
