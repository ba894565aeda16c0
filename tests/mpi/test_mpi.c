/* test_mpi.c - the MPI executor's tests, one per behaviour, each run by
 * ctest as its own MPI job: `mpirun -n 2|3 test_mpi <name>` (see
 * tests/mpi/CMakeLists.txt for the flags and time limits). Every rank runs
 * the same test: rank 0 checks the behaviour through the executor, the
 * others serve it and check what cf_mpi_comm_executor() returned to them.
 * A failed check ends the whole job (MPI_Abort) with a message.
 *
 * tests/harness.h is not used: its leak checks count threads and
 * descriptors, and MPI keeps both for the life of the process.
 */
#define _POSIX_C_SOURCE 200809L
#include "cfutures_mpi.h"

#include "core/core.h" /* completer_polls: the core's wait policy */

#include <math.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define CHECK(cond)                                                       \
    do {                                                                  \
        if (!(cond))                                                      \
            fail(__LINE__, "check failed: %s", #cond);                    \
    } while (0)
#define CHECK_CODE(a, b)                                                  \
    do {                                                                  \
        int a_ = (a), b_ = (b);                                           \
        if (a_ != b_)                                                     \
            fail(__LINE__, "%s == %s: %s != %s", #a, #b, cf_err_name(a_), \
                 cf_err_name(b_));                                        \
    } while (0)

static void fail(int line, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 2, 3)));

#include <stdarg.h>
static void fail(int line, const char *fmt, ...)
{
    int rank = -1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "test_mpi.c:%d (rank %d): ", line, rank);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    MPI_Abort(MPI_COMM_WORLD, 1);
    abort();
}

/* ------------------------------------------------------------------------ */
/* Tasks (every rank runs this same program: found by module + offset)      */

static void *square(void *arg, cf_call *call)
{
    (void)call;
    intptr_t x = (intptr_t)arg;
    return (void *)(x * x);
}

static void *my_pid(void *arg, cf_call *call)
{
    (void)call;
    (void)arg;
    return (void *)(intptr_t)getpid();
}

static void *slow_pid(void *arg, cf_call *call)
{
    (void)call;
    (void)arg;
    struct timespec ts = {0, 2000000};
    nanosleep(&ts, NULL);
    return (void *)(intptr_t)getpid();
}

static void *fails(void *arg, cf_call *call)
{
    return cf_fail(call, 42, "task %d failed on purpose", (int)(intptr_t)arg);
}

static void sleep_us(long us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

static void *slow(void *arg, cf_call *call)
{
    (void)call;
    sleep_us(2000);
    return arg;
}

/* Each byte + 1, as a new cf_bytes. */
static void *bytes_plus_one(void *arg, cf_call *call)
{
    const cf_bytes *in = arg;
    cf_bytes *out = cf_bytes_new(NULL, in->len);
    if (!out)
        return cf_fail(call, CF_ENOMEM, "no memory");
    for (size_t i = 0; i < in->len; i++)
        out->data[i] = (unsigned char)(in->data[i] + 1);
    return out;
}

static void *shout(void *arg, cf_call *call)
{
    (void)call;
    char *s = strdup(arg);
    for (char *p = s; p && *p; p++)
        if (*p >= 'a' && *p <= 'z')
            *p = (char)(*p - 'a' + 'A');
    return s;
}

static void *crash_if_one(void *arg, cf_call *call)
{
    (void)call;
    if ((intptr_t)arg == 1)
        raise(SIGSEGV);
    return arg;
}

static void *kill_rank(void *arg, cf_call *call)
{
    (void)call;
    (void)arg;
    raise(SIGKILL);
    return NULL;
}

static intptr_t g_init_value;
static int init_sets(void *arg)
{
    g_init_value = (intptr_t)arg;
    return 0;
}
static int init_fails(void *arg)
{
    (void)arg;
    return 3;
}
static void *get_init_value(void *arg, cf_call *call)
{
    (void)arg;
    (void)call;
    return (void *)g_init_value;
}

/* ------------------------------------------------------------------------ */
/* Helpers on the root                                                      */

static intptr_t result_of(cf_future *f)
{
    void *v = NULL;
    CHECK_CODE(cf_future_result(f, 60, &v), CF_OK);
    return (intptr_t)v;
}

static cf_future *submit(cf_executor *ex, cf_fn fn, intptr_t arg)
{
    cf_future *f = NULL;
    CHECK_CODE(cf_executor_submit(ex, fn, (void *)arg, &f), CF_OK);
    return f;
}

/* ------------------------------------------------------------------------ */
/* The tests: what rank 0 checks                                            */

static void t_submit_result(cf_executor *ex)
{
    cf_future *fs[200];
    for (int i = 0; i < 200; i++)
        fs[i] = submit(ex, square, i);
    for (int i = 0; i < 200; i++) {
        CHECK(result_of(fs[i]) == (intptr_t)i * i);
        cf_future_release(fs[i]);
    }
    CHECK(strcmp(cf_executor_kind(ex), "mpi") == 0);
}

/* Its futures tell the core's wait that a polling thread completes them
 * (a waiter yields as it spins: core/future_wait.c), from the submit on. */
static void t_futures_say_their_completer_polls(cf_executor *ex)
{
    cf_future *f = submit(ex, square, 3);
    CHECK(f->completer_polls);
    CHECK(result_of(f) == 9);
    cf_future_release(f);
}

/* Tasks run on the other ranks, all of them. */
static void t_runs_on_every_worker_rank(cf_executor *ex)
{
    int size;
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    enum { N = 64 };
    cf_future *fs[N];
    for (int i = 0; i < N; i++)
        fs[i] = submit(ex, slow, 0);
    for (int i = 0; i < N; i++)
        cf_future_release(fs[i]);
    long pids[N];
    int n_distinct = 0;
    for (int i = 0; i < N; i++) {
        cf_future *f = submit(ex, my_pid, 0);
        long pid = (long)result_of(f);
        cf_future_release(f);
        CHECK(pid != (long)getpid());
        bool seen = false;
        for (int j = 0; j < n_distinct; j++)
            seen |= pids[j] == pid;
        if (!seen)
            pids[n_distinct++] = pid;
    }
    /* Sequential submits may all go to one rank; concurrent ones spread. */
    cf_future *fs2[N];
    for (int i = 0; i < N; i++)
        fs2[i] = submit(ex, slow, i);
    for (int i = 0; i < N; i++) {
        CHECK(result_of(fs2[i]) == i);
        cf_future_release(fs2[i]);
    }
    CHECK(n_distinct >= 1 && n_distinct <= size - 1);
}

static void t_task_failure_keeps_code_and_message(cf_executor *ex)
{
    cf_future *f = submit(ex, fails, 7);
    CHECK_CODE(cf_future_result(f, 60, NULL), CF_ETASK);
    cf_error e;
    CHECK_CODE(cf_future_exception(f, 60, &e), CF_OK);
    CHECK(e.code == 42);
    CHECK(strcmp(e.message, "task 7 failed on purpose") == 0);
    cf_future_release(f);
}

static void t_map_chunks_in_order(cf_executor *ex)
{
    enum { N = 10000 };
    static void *args[N];
    for (int i = 0; i < N; i++)
        args[i] = (void *)(intptr_t)i;
    size_t chunks[] = {1, 7, 100};
    for (size_t c = 0; c < 3; c++) {
        cf_map_options mo = {.chunksize = chunks[c], .buffersize = 8};
        cf_map *m;
        CHECK_CODE(cf_executor_map(ex, square, args, N, &mo, &m), CF_OK);
        void *v;
        int i = 0, rc;
        while ((rc = cf_map_next(m, &v, NULL)) == CF_OK) {
            CHECK((intptr_t)v == (intptr_t)i * i);
            i++;
        }
        CHECK_CODE(rc, CF_EEND);
        CHECK(i == N);
        cf_map_free(m);
    }
}

static void t_map_chunks_of_strings(cf_executor *ex)
{
    const char *words[] = {"alpha", "beta", "", "gamma", "delta", "mpi"};
    cf_map_options mo = {.chunksize = 4, .codec = cf_codec_string()};
    cf_map *m;
    CHECK_CODE(cf_executor_map(ex, shout, (void *const *)words, 6, &mo, &m),
               CF_OK);
    const char *want[] = {"ALPHA", "BETA", "", "GAMMA", "DELTA", "MPI"};
    void *v;
    for (int i = 0; i < 6; i++) {
        CHECK_CODE(cf_map_next(m, &v, NULL), CF_OK);
        CHECK(strcmp(v, want[i]) == 0);
    }
    CHECK_CODE(cf_map_next(m, &v, NULL), CF_EEND);
    cf_map_free(m);
}

static void t_wait_and_as_completed_mix_executors(cf_executor *ex)
{
    cf_executor *threads;
    CHECK_CODE(cf_thread_pool_new(NULL, &threads), CF_OK);
    cf_future *fs[20];
    for (int i = 0; i < 20; i++)
        fs[i] = submit(i % 2 ? threads : ex, square, i);
    size_t n_done = 0;
    cf_future *done[20];
    CHECK_CODE(cf_wait(fs, 20, 60, CF_ALL_COMPLETED, done, &n_done, NULL,
                       NULL),
               CF_OK);
    CHECK(n_done == 20);
    cf_as_completed *it;
    CHECK_CODE(cf_as_completed_new(fs, 20, 60, &it), CF_OK);
    cf_future *f;
    int n = 0;
    while (cf_as_completed_next(it, &f) == CF_OK) {
        n++;
        cf_future_release(f);
    }
    CHECK(n == 20);
    cf_as_completed_free(it);
    for (int i = 0; i < 20; i++) {
        CHECK(result_of(fs[i]) == (intptr_t)i * i);
        cf_future_release(fs[i]);
    }
    cf_executor_free(threads);
}

static atomic_int g_callbacks;
static cf_executor *g_ex;
/* Set by the callback on the executor's thread, read by the test's. */
static _Atomic(cf_future *) g_chained;
static int count_done(cf_future *f, void *arg)
{
    (void)f;
    (void)arg;
    atomic_fetch_add(&g_callbacks, 1);
    return 0;
}
/* A callback may submit to the executor whose thread runs it. */
static int chain(cf_future *f, void *arg)
{
    (void)arg;
    void *v;
    if (cf_future_result(f, 0, &v) != CF_OK)
        return 1;
    cf_future *g = NULL;
    int rc = cf_executor_submit(g_ex, square, v, &g);
    atomic_store(&g_chained, g);
    return rc;
}

static void t_callbacks_run_once_each(cf_executor *ex)
{
    cf_future *fs[50];
    for (int i = 0; i < 50; i++) {
        fs[i] = submit(ex, square, i);
        CHECK_CODE(cf_future_add_done_callback(fs[i], count_done, NULL),
                   CF_OK);
    }
    for (int i = 0; i < 50; i++) {
        result_of(fs[i]);
        cf_future_release(fs[i]);
    }
    /* Callbacks run before waiters wake only on the completing thread:
     * poll for the count with a deadline. */
    for (int i = 0; i < 6000 && atomic_load(&g_callbacks) < 50; i++)
        sleep_us(1000);
    CHECK(atomic_load(&g_callbacks) == 50);
    g_ex = ex;
    cf_future *f = submit(ex, square, 3);
    CHECK_CODE(cf_future_add_done_callback(f, chain, NULL), CF_OK);
    result_of(f);
    cf_future_release(f);
    cf_future *g = NULL;
    for (int i = 0; i < 6000 && !(g = atomic_load(&g_chained)); i++)
        sleep_us(1000);
    CHECK(g);
    CHECK(result_of(g) == 81);
    cf_future_release(g);
}

static void round_trip_bytes(cf_executor *ex, size_t len)
{
    cf_bytes *in = cf_bytes_new(NULL, len);
    CHECK(in);
    for (size_t i = 0; i < len; i++)
        in->data[i] = (unsigned char)(i * 7);
    cf_future *f;
    CHECK_CODE(cf_executor_submit_ex(ex, bytes_plus_one, in, cf_codec_bytes(),
                                     &f),
               CF_OK);
    void *v;
    CHECK_CODE(cf_future_result(f, 60, &v), CF_OK);
    const cf_bytes *out = v;
    CHECK(out->len == len);
    for (size_t i = 0; i < len; i++)
        if (out->data[i] != (unsigned char)(i * 7 + 1))
            fail(__LINE__, "byte %zu differs", i);
    cf_future_release(f);
    cf_bytes_free(in);
}

static void t_large_payloads(cf_executor *ex)
{
    round_trip_bytes(ex, 0);
    round_trip_bytes(ex, 12u << 20);
}

/* With small MPI messages, every frame above 4 KiB goes as many. */
static void opts_small_messages(cf_mpi_options *o) { o->max_message = 4096; }
static void t_large_payloads_split(cf_executor *ex)
{
    round_trip_bytes(ex, 5000);
    round_trip_bytes(ex, 4096 - 24);
    round_trip_bytes(ex, 6u << 20);
    t_map_chunks_of_strings(ex);
}

static void t_tiny_tasks_100k(cf_executor *ex)
{
    enum { N = 100000 };
    cf_future **fs = malloc(N * sizeof *fs);
    CHECK(fs);
    for (int i = 0; i < N; i++)
        fs[i] = submit(ex, square, i % 1000);
    long long sum = 0;
    for (int i = 0; i < N; i++) {
        sum += result_of(fs[i]);
        cf_future_release(fs[i]);
    }
    long long want = 0;
    for (int i = 0; i < N; i++)
        want += (long long)(i % 1000) * (i % 1000);
    CHECK(sum == want);
    free(fs);
}

static void t_shutdown_cancel_while_busy(cf_executor *ex)
{
    enum { N = 300 };
    cf_future *fs[N];
    for (int i = 0; i < N; i++)
        fs[i] = submit(ex, slow, i);
    /* Busy: the first task has started (the ranks checked in). */
    for (int i = 0; i < 60000 && !cf_future_running(fs[0]) &&
                    !cf_future_done(fs[0]);
         i++)
        sleep_us(100);
    CHECK_CODE(cf_executor_shutdown(ex, true, true), CF_OK);
    int cancelled = 0, ran = 0;
    for (int i = 0; i < N; i++) {
        CHECK(cf_future_done(fs[i]));
        if (cf_future_cancelled(fs[i]))
            cancelled++;
        else if (result_of(fs[i]) == i)
            ran++;
        cf_future_release(fs[i]);
    }
    CHECK(cancelled > 0 && ran > 0 && cancelled + ran == N);
    cf_future *f;
    CHECK_CODE(cf_executor_submit(ex, square, NULL, &f), CF_ESHUTDOWN);
}

static void t_shutdown_without_wait_finishes_work(cf_executor *ex)
{
    enum { N = 100 };
    cf_future *fs[N];
    for (int i = 0; i < N; i++)
        fs[i] = submit(ex, slow, i);
    CHECK_CODE(cf_executor_shutdown(ex, false, false), CF_OK);
    for (int i = 0; i < N; i++) {
        CHECK(result_of(fs[i]) == i);
        cf_future_release(fs[i]);
    }
}

static void opts_prefetch_1(cf_mpi_options *o) { o->prefetch = 1; }
static void t_cancel_queued_task(cf_executor *ex)
{
    enum { N = 60 };
    cf_future *fs[N];
    for (int i = 0; i < N; i++)
        fs[i] = submit(ex, slow, i);
    /* prefetch 1: at most 2 in flight; the last ones are still queued. */
    CHECK(cf_future_cancel(fs[N - 1]));
    CHECK(cf_future_cancelled(fs[N - 1]));
    for (int i = 0; i < N - 1; i++) {
        CHECK(result_of(fs[i]) == i);
        cf_future_release(fs[i]);
    }
    CHECK_CODE(cf_future_result(fs[N - 1], 0, NULL), CF_ECANCELLED);
    cf_future_release(fs[N - 1]);
}

static void opts_init_sets(cf_mpi_options *o)
{
    o->initializer = init_sets;
    o->initarg = (void *)(intptr_t)1234;
}
static void t_initializer_runs_on_worker_ranks(cf_executor *ex)
{
    for (int i = 0; i < 8; i++) {
        cf_future *f = submit(ex, get_init_value, 0);
        CHECK(result_of(f) == 1234);
        cf_future_release(f);
    }
}

static void opts_init_fails(cf_mpi_options *o) { o->initializer = init_fails; }
static void t_initializer_failure_breaks_executor(cf_executor *ex)
{
    cf_future *f = NULL;
    int rc = cf_executor_submit(ex, square, (void *)2, &f);
    if (rc == CF_OK) {
        CHECK_CODE(cf_future_result(f, 60, NULL), CF_EBROKEN);
        cf_error e;
        CHECK_CODE(cf_future_exception(f, 60, &e), CF_OK);
        CHECK(strstr(e.message, "initializer failed"));
        CHECK(strstr(e.message, "MPI rank"));
        cf_future_release(f);
    }
    /* Once broken is seen, later submits are refused. */
    for (int i = 0; i < 6000 && rc == CF_OK; i++) {
        sleep_us(1000);
        rc = cf_executor_submit(ex, square, (void *)2, &f);
        if (rc == CF_OK) {
            cf_future_result(f, 60, NULL);
            cf_future_release(f);
        }
    }
    CHECK_CODE(rc, CF_EBROKEN);
}

static void opts_isolate(cf_mpi_options *o) { o->isolate = true; }
static void t_isolated_crash_fails_only_its_future(cf_executor *ex)
{
    cf_future *before = submit(ex, crash_if_one, 5);
    cf_future *bad = submit(ex, crash_if_one, 1);
    CHECK(result_of(before) == 5);
    CHECK_CODE(cf_future_result(bad, 60, NULL), CF_EBROKEN_PROCESS_POOL);
    cf_error e;
    CHECK_CODE(cf_future_exception(bad, 60, &e), CF_OK);
    fprintf(stderr, "crash message: %s\n", e.message);
    CHECK(strstr(e.message, "MPI rank "));
    CHECK(strstr(e.message, "pid") || strstr(e.message, "process"));
    CHECK(strstr(e.message, "signal") || strstr(e.message, "SIGSEGV"));
    cf_future_release(before);
    cf_future_release(bad);
    for (int i = 0; i < 20; i++) {
        cf_future *f = submit(ex, crash_if_one, 2 + i);
        CHECK(result_of(f) == 2 + i);
        cf_future_release(f);
    }
}

static int refuse_encode(const void *v, cf_buffer *out)
{
    (void)v;
    (void)out;
    return CF_ECODEC;
}
static int any_decode(const void *data, size_t len, void **v)
{
    (void)data;
    (void)len;
    *v = NULL;
    return CF_OK;
}
static const cf_codec refusing_codec = {refuse_encode, any_decode, NULL,
                                        refuse_encode, any_decode, NULL};

static void t_bad_input_is_refused(cf_executor *ex)
{
    cf_executor *other;
    cf_mpi_options o = {.prefetch = -1};
    CHECK_CODE(cf_mpi_executor_new(MPI_COMM_WORLD, NULL, NULL), CF_EINVAL);
    CHECK_CODE(cf_mpi_executor_new(MPI_COMM_WORLD, &o, &other), CF_EINVAL);
    o = (cf_mpi_options){.spin = NAN};
    CHECK_CODE(cf_mpi_executor_new(MPI_COMM_WORLD, &o, &other), CF_EINVAL);
    o = (cf_mpi_options){.max_sleep = -1};
    CHECK_CODE(cf_mpi_executor_new(MPI_COMM_WORLD, &o, &other), CF_EINVAL);
    o = (cf_mpi_options){.max_message = 10};
    CHECK_CODE(cf_mpi_executor_new(MPI_COMM_WORLD, &o, &other), CF_EINVAL);
    CHECK_CODE(cf_mpi_comm_executor(MPI_COMM_WORLD, -1, NULL, &other),
               CF_EINVAL);
    CHECK_CODE(cf_mpi_comm_executor(MPI_COMM_WORLD, 99, NULL, &other),
               CF_EINVAL);
    CHECK_CODE(cf_mpi_comm_executor(MPI_COMM_WORLD, 0, NULL, NULL), CF_EINVAL);
    CHECK(!cf_mpi_has_ulfm());
    cf_future *f;
    CHECK_CODE(cf_executor_submit(ex, NULL, NULL, &f), CF_EINVAL);
    /* Code that is in no module (the heap) cannot be found elsewhere. */
    unsigned char *heap = malloc(64);
    cf_fn fn;
    memcpy(&fn, &heap, sizeof fn);
    CHECK_CODE(cf_executor_submit(ex, fn, NULL, &f), CF_EINVAL);
    free(heap);
    /* A codec that cannot encode fails only that future. */
    CHECK_CODE(cf_executor_submit_ex(ex, square, NULL, &refusing_codec, &f),
               CF_OK);
    CHECK_CODE(cf_future_result(f, 60, NULL), CF_ECODEC);
    cf_future_release(f);
    f = submit(ex, square, 9);
    CHECK(result_of(f) == 81);
    cf_future_release(f);
}

/* The other build (test_mpi_other) answers the root's check-in. */
static void t_other_build_is_refused(cf_executor *ex)
{
    cf_future *f = NULL;
    int rc = cf_executor_submit(ex, square, (void *)2, &f);
    if (rc == CF_OK) {
        CHECK_CODE(cf_future_result(f, 60, NULL), CF_EBROKEN);
        cf_error e;
        CHECK_CODE(cf_future_exception(f, 60, &e), CF_OK);
        CHECK(strstr(e.message, "another build"));
        CHECK(strstr(e.message, "MPI rank 1"));
        cf_future_release(f);
    } else {
        CHECK_CODE(rc, CF_EBROKEN);
    }
}

static void *then_always_fn(cf_future *done, void *arg, cf_call *call)
{
    (void)done;
    (void)call;
    return arg;
}

/* Tasks run on other ranks: what wraps a task in this process is refused
 * or left out, never sent as a pointer to this process's memory. */
static void t_monitor_then_and_limits(cf_executor *ex)
{
    cf_monitor_options mo = {.stats = true};
    CHECK_CODE(cf_executor_monitor(ex, &mo), CF_OK);
    cf_future *fs[10];
    for (int i = 0; i < 10; i++)
        fs[i] = submit(ex, square, i);
    for (int i = 0; i < 10; i++) {
        CHECK(result_of(fs[i]) == (intptr_t)i * i);
        cf_future_release(fs[i]);
    }
    cf_executor_stats st;
    for (int i = 0; i < 6000; i++) {
        CHECK_CODE(cf_executor_get_stats(ex, &st), CF_OK);
        if (st.finished == 10)
            break;
        sleep_us(1000);
    }
    CHECK(st.submitted == 10 && st.finished == 10);
    cf_future *f = submit(ex, square, 3), *g, *h;
    CHECK_CODE(cf_future_then(f, ex, square, &g), CF_OK);
    CHECK(result_of(g) == 81);
    CHECK_CODE(cf_future_then_always(f, ex, then_always_fn, NULL, &h),
               CF_ENOTSUP);
    cf_submit_options so = {.timeout = 1.0};
    CHECK_CODE(cf_executor_submit_opts(ex, square, NULL, &so, &h),
               CF_ENOTSUP);
    cf_future_release(f);
    cf_future_release(g);
}

static void t_killed_rank_ends_job(cf_executor *ex)
{
    cf_future *f = submit(ex, kill_rank, 0);
    /* mpirun ends the job: this wait never returns normally. */
    cf_future_result(f, 60, NULL);
    fail(__LINE__, "the job outlived its killed rank");
}

/* Spawn mode: the tasks run in the two spawned processes, not here, and
 * this process is alone in its MPI_COMM_WORLD. */
static void t_runs_on_spawned_workers(cf_executor *ex)
{
    int size;
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    CHECK(size == 1);
    enum { N = 64 };
    cf_future *fs[N];
    for (int i = 0; i < N; i++)
        fs[i] = submit(ex, slow_pid, 0);
    long pids[N];
    int n_distinct = 0;
    for (int i = 0; i < N; i++) {
        long pid = (long)result_of(fs[i]);
        cf_future_release(fs[i]);
        CHECK(pid != (long)getpid());
        bool seen = false;
        for (int j = 0; j < n_distinct; j++)
            seen |= pids[j] == pid;
        if (!seen)
            pids[n_distinct++] = pid;
    }
    CHECK(n_distinct == 2);
}

/* Bad input to cf_mpi_spawn_executor() is refused, also a command that
 * cannot start (Open MPI would end the job); the executor in hand keeps
 * working. */
static void t_spawn_bad_input_is_refused(cf_executor *ex)
{
    cf_executor *other = NULL;
    CHECK_CODE(cf_mpi_spawn_executor(NULL, 0, NULL, &other), CF_EINVAL);
    CHECK_CODE(cf_mpi_spawn_executor(NULL, -3, NULL, &other), CF_EINVAL);
    CHECK_CODE(cf_mpi_spawn_executor(NULL, 1, NULL, NULL), CF_EINVAL);
    cf_mpi_options bad = {.prefetch = -1};
    CHECK_CODE(cf_mpi_spawn_executor(NULL, 1, &bad, &other), CF_EINVAL);
    CHECK_CODE(cf_mpi_spawn_executor("/nonexistent/cf-mpi-worker", 1, NULL,
                                     &other),
               CF_EINVAL);
    CHECK(other == NULL);
    cf_future *f = submit(ex, square, 12);
    CHECK(result_of(f) == 144);
    cf_future_release(f);
}

/* Freed, the executor lets its spawned workers go: a second one can be
 * spawned and used after it. */
static void t_spawn_again_after_free(cf_executor *ex)
{
    cf_future *f = submit(ex, square, 5);
    CHECK(result_of(f) == 25);
    cf_future_release(f);
    char *argv[] = {"spawn_again_after_free", NULL};
    cf_mpi_options o = {.spawn_argv = argv};
    for (int round = 0; round < 2; round++) {
        cf_executor *ex2 = NULL;
        CHECK_CODE(cf_mpi_spawn_executor(NULL, 1, &o, &ex2), CF_OK);
        f = submit(ex2, square, 6 + round);
        CHECK(result_of(f) == (6 + round) * (6 + round));
        cf_future_release(f);
        cf_executor_free(ex2);
    }
}

/* ------------------------------------------------------------------------ */
/* The table                                                                */

typedef struct mpi_test {
    const char *name;
    void (*run)(cf_executor *ex);
    void (*options)(cf_mpi_options *o);
    int worker_rc; /* what cf_mpi_comm_executor() returns on worker ranks */
} mpi_test;

static const mpi_test tests[] = {
    {"submit_result", t_submit_result, NULL, CF_OK},
    {"runs_on_every_worker_rank", t_runs_on_every_worker_rank, NULL, CF_OK},
    {"futures_say_their_completer_polls", t_futures_say_their_completer_polls,
     NULL, CF_OK},
    {"task_failure_keeps_code_and_message",
     t_task_failure_keeps_code_and_message, NULL, CF_OK},
    {"map_chunks_in_order", t_map_chunks_in_order, NULL, CF_OK},
    {"map_chunks_of_strings", t_map_chunks_of_strings, NULL, CF_OK},
    {"wait_and_as_completed_mix_executors",
     t_wait_and_as_completed_mix_executors, NULL, CF_OK},
    {"callbacks_run_once_each", t_callbacks_run_once_each, NULL, CF_OK},
    {"large_payloads", t_large_payloads, NULL, CF_OK},
    {"large_payloads_split", t_large_payloads_split, opts_small_messages,
     CF_OK},
    {"tiny_tasks_100k", t_tiny_tasks_100k, NULL, CF_OK},
    {"shutdown_cancel_while_busy", t_shutdown_cancel_while_busy, NULL, CF_OK},
    {"shutdown_without_wait_finishes_work",
     t_shutdown_without_wait_finishes_work, NULL, CF_OK},
    {"cancel_queued_task", t_cancel_queued_task, opts_prefetch_1, CF_OK},
    {"initializer_runs_on_worker_ranks", t_initializer_runs_on_worker_ranks,
     opts_init_sets, CF_OK},
    {"initializer_failure_breaks_executor",
     t_initializer_failure_breaks_executor, opts_init_fails, CF_EBROKEN},
    {"isolated_crash_fails_only_its_future",
     t_isolated_crash_fails_only_its_future, opts_isolate, CF_OK},
    {"bad_input_is_refused", t_bad_input_is_refused, NULL, CF_OK},
    {"monitor_then_and_limits", t_monitor_then_and_limits, NULL, CF_OK},
    {"other_build_is_refused", t_other_build_is_refused, NULL, CF_EINVAL},
    {"killed_rank_ends_job", t_killed_rank_ends_job, NULL, CF_OK},
};

/* Spawn mode only (`test_mpi spawn_<name>`: the parent spawns 2 workers);
 * every test of the table above also runs so. */
static const mpi_test spawn_only[] = {
    { "runs_on_spawned_workers", t_runs_on_spawned_workers, NULL, CF_OK},
    { "bad_input_is_refused", t_spawn_bad_input_is_refused, NULL, CF_OK},
    { "again_after_free", t_spawn_again_after_free, NULL, CF_OK},
};

static const mpi_test *find_test(const char *name, bool spawn)
{
    if (spawn)
        for (size_t i = 0; i < sizeof spawn_only / sizeof *spawn_only; i++)
            if (strcmp(spawn_only[i].name, name) == 0)
                return &spawn_only[i];
    for (size_t i = 0; i < sizeof tests / sizeof *tests; i++)
        if (strcmp(tests[i].name, name) == 0)
            return &tests[i];
    return NULL;
}

/* MPI initialised at MPI_THREAD_SINGLE: every rank is refused. */
static int thread_single(void)
{
    int provided;
    MPI_Init_thread(NULL, NULL, MPI_THREAD_SINGLE, &provided);
    cf_executor *ex = NULL;
    int rc = cf_mpi_comm_executor(MPI_COMM_WORLD, 0, NULL, &ex);
    if (provided < MPI_THREAD_SERIALIZED)
        CHECK_CODE(rc, CF_ENOTSUP);
    else
        cf_executor_free(ex);
    MPI_Finalize();
    return 0;
}

/* An executor over a communicator of the application's: world split in
 * two; a communicator of one rank has no worker. */
static int split_comm(void)
{
    int provided, rank;
    MPI_Init_thread(NULL, NULL, MPI_THREAD_SERIALIZED, &provided);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm half;
    MPI_Comm_split(MPI_COMM_WORLD, rank < 2, rank, &half);
    int size;
    MPI_Comm_size(half, &size);
    cf_executor *ex = NULL;
    int rc = cf_mpi_comm_executor(half, 0, NULL, &ex);
    if (size == 1) {
        CHECK_CODE(rc, CF_EINVAL);
    } else {
        CHECK_CODE(rc, CF_OK);
        if (ex) {
            t_submit_result(ex);
            cf_executor_free(ex);
        }
    }
    MPI_Comm_free(&half);
    MPI_Finalize();
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: test_mpi <test>\n");
        return 2;
    }
    if (strcmp(argv[1], "thread_level_single_is_refused") == 0)
        return thread_single();
    if (strcmp(argv[1], "executor_over_split_communicator") == 0)
        return split_comm();
    /* spawn_<name>: the same test with an executor over 2 spawned
     * workers; they run this program with the same argument. */
    bool spawn = strncmp(argv[1], "spawn_", 6) == 0;
    const mpi_test *t = find_test(spawn ? argv[1] + 6 : argv[1], spawn);
    if (!t) {
        fprintf(stderr, "test_mpi: no test %s\n", argv[1]);
        return 2;
    }
    int provided;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_SERIALIZED, &provided);
    cf_mpi_options o = {0};
    if (t->options)
        t->options(&o);
    cf_executor *ex = NULL;
    int rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm parent;
    MPI_Comm_get_parent(&parent);
    char *spawn_argv[] = {argv[1], NULL};
    o.spawn_argv = spawn_argv;
    int rc = spawn ? cf_mpi_spawn_executor(NULL, 2, &o, &ex)
                   : cf_mpi_comm_executor(MPI_COMM_WORLD, 0, &o, &ex);
    if (spawn ? parent == MPI_COMM_NULL : rank == 0) {
        CHECK_CODE(rc, CF_OK);
        t->run(ex);
        cf_executor_free(ex);
    } else {
        CHECK_CODE(rc, t->worker_rc);
        CHECK(ex == NULL);
    }
    MPI_Finalize();
#ifdef CF_TEST_OTHER_BUILD
    puts("other build"); /* makes this executable differ */
#endif
    return 0;
}
