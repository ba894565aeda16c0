/* procpool_test.h - helpers shared by the process-pool tests.
 *
 * Tasks run in other processes, so latches cannot gate them. Files in a
 * per-test temporary directory do instead: a task announces itself by
 * writing a file (its pid, atomically, by rename) and waits for a "go"
 * file; the test polls for files with a deadline (WAIT_UNTIL). Every task
 * and codec here is a static object of the test program, so workers find
 * them by module and offset like any user code.
 */
#ifndef CF_PROCPOOL_TEST_H
#define CF_PROCPOOL_TEST_H

#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

#if defined(__SANITIZE_THREAD__)
#define PP_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define PP_TSAN 1
#endif
#endif

#if defined(__SANITIZE_ADDRESS__)
#define PP_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PP_ASAN 1
#endif
#endif

#ifdef PP_TSAN
#include <sys/wait.h>
/* CF_START_FORK forks from the pool's manager thread. */
const char *__tsan_default_options(void);
const char *__tsan_default_options(void)
{
    return "die_after_fork=0";
}

/* TSan starts its background thread after the first fork (or spawn), not
 * at the harness's warm-up thread: fork once before the tests so the leak
 * check's baseline has it. Not in a worker, which never runs the tests. */
__attribute__((constructor)) static void tsan_fork_warm_up(void)
{
    if (getenv("CF_PROCESS_WORKER"))
        return;
    pid_t pid = fork();
    if (pid == 0)
        _exit(0);
    if (pid > 0)
        waitpid(pid, NULL, 0);
}
#endif

/* ------------------------------------------------------------------------ */
/* Temporary directory                                                      */

typedef struct tmpdir {
    char path[64];
} tmpdir;

/* The directories made and not yet removed (copies): a failing test
 * removes them too (harness_on_fail), so no /tmp/cfpp.* is left behind.
 * A test that cannot clean up (killed at its time limit, crashed) leaves
 * its directories, named for its pid: the next tmpdir_make() removes
 * those of processes that no longer exist. */
enum { PP_TMPDIRS = 16 };
static tmpdir pp_tmpdirs[PP_TMPDIRS];

static inline void tmpdir_remove(tmpdir *d);

static inline void pp_tmpdirs_cleanup(void)
{
    for (int i = 0; i < PP_TMPDIRS; i++)
        if (pp_tmpdirs[i].path[0]) {
            tmpdir copy = pp_tmpdirs[i];
            tmpdir_remove(&copy);
        }
}

/* Removes /tmp/cfpp.<pid>.* of every <pid> that no longer runs. */
static inline void pp_tmpdirs_sweep(void)
{
    DIR *dir = opendir("/tmp");
    if (!dir)
        return;
    struct dirent *e;
    while ((e = readdir(dir)) != NULL) {
        long pid;
        int end = 0;
        if (sscanf(e->d_name, "cfpp.%ld.%n", &pid, &end) != 1 || end == 0 ||
            pid <= 0 || kill((pid_t)pid, 0) == 0 || errno != ESRCH ||
            strlen(e->d_name) + 5 >= sizeof(tmpdir))
            continue;
        tmpdir stale;
        memcpy(stale.path, "/tmp/", 5);
        strcpy(stale.path + 5, e->d_name);
        tmpdir_remove(&stale);
    }
    closedir(dir);
}

static inline void tmpdir_make(tmpdir *d)
{
    pp_tmpdirs_sweep();
    snprintf(d->path, sizeof d->path, "/tmp/cfpp.%ld.XXXXXX", (long)getpid());
    ASSERT(mkdtemp(d->path) != NULL);
    for (int i = 0; i < PP_TMPDIRS; i++)
        if (!pp_tmpdirs[i].path[0]) {
            pp_tmpdirs[i] = *d;
            break;
        }
    harness_on_fail(pp_tmpdirs_cleanup);
}

static inline void tmpdir_file(const tmpdir *d, const char *name, char *out,
                               size_t n)
{
    snprintf(out, n, "%s/%s", d->path, name);
}

static inline void tmpdir_remove(tmpdir *d)
{
    for (int i = 0; i < PP_TMPDIRS; i++)
        if (strcmp(pp_tmpdirs[i].path, d->path) == 0)
            pp_tmpdirs[i].path[0] = '\0';
    DIR *dir = opendir(d->path);
    if (dir) {
        struct dirent *e;
        char p[512];
        while ((e = readdir(dir)) != NULL) {
            if (e->d_name[0] == '.')
                continue;
            snprintf(p, sizeof p, "%s/%s", d->path, e->d_name);
            unlink(p);
        }
        closedir(dir);
    }
    rmdir(d->path);
}

static inline bool file_exists(const char *path)
{
    return access(path, F_OK) == 0;
}

static inline void touch(const char *path)
{
    FILE *f = fopen(path, "w");
    ASSERT(f != NULL);
    fclose(f);
}

/* Writes `value` to `path` atomically (readers never see half a file). */
static inline bool write_long_file(const char *path, long value)
{
    char tmp[600];
    int n = snprintf(tmp, sizeof tmp, "%s.tmp%ld", path, (long)getpid());
    if (n < 0 || (size_t)n >= sizeof tmp)
        return false;
    FILE *f = fopen(tmp, "w");
    if (!f)
        return false;
    fprintf(f, "%ld\n", value);
    fclose(f);
    return rename(tmp, path) == 0;
}

static inline long read_long_file(const char *path)
{
    FILE *f = fopen(path, "r");
    long v = -1;
    if (!f)
        return -1;
    if (fscanf(f, "%ld", &v) != 1)
        v = -1;
    fclose(f);
    return v;
}

/* Polls for `path` (inside a task: no harness there) for up to `secs`. */
static inline bool await_file(const char *path, double secs)
{
    double end = harness_now() + secs;
    while (!file_exists(path)) {
        if (harness_now() > end)
            return false;
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    return true;
}

static inline bool contains(const char *haystack, const char *needle)
{
    return haystack && strstr(haystack, needle) != NULL;
}

/* ------------------------------------------------------------------------ */
/* A codec: a path (string) in, a word out                                  */

static inline int pathc_encode(const void *value, cf_buffer *out)
{
    return cf_buffer_append(out, value, strlen(value));
}

static inline int pathc_decode(const void *data, size_t len, void **value)
{
    char *s = malloc(len + 1);
    if (!s)
        return CF_ENOMEM;
    memcpy(s, data, len);
    s[len] = '\0';
    *value = s;
    return CF_OK;
}

static inline int wordc_encode(const void *value, cf_buffer *out)
{
    return cf_buffer_append(out, &value, sizeof value);
}

static inline int wordc_decode(const void *data, size_t len, void **value)
{
    if (len != sizeof *value)
        return CF_ECODEC;
    memcpy(value, data, sizeof *value);
    return CF_OK;
}

static const cf_codec path_codec = {
    .encode_arg = pathc_encode,
    .decode_arg = pathc_decode,
    .free_arg = free,
    .encode_result = wordc_encode,
    .decode_result = wordc_decode,
};

/* ------------------------------------------------------------------------ */
/* Tasks                                                                    */

static inline void *task_square(void *arg, cf_call *call)
{
    (void)call;
    intptr_t x = (intptr_t)arg;
    return (void *)(x * x);
}

static inline void *task_getpid(void *arg, cf_call *call)
{
    (void)arg;
    (void)call;
    return (void *)(intptr_t)getpid();
}

/* path_codec: waits for the file `path` (30 s at most); 1 if it came. */
static inline void *task_wait_file(void *arg, cf_call *call)
{
    (void)call;
    return (void *)(intptr_t)await_file(arg, 30);
}

/* path_codec: writes its pid to `path`.pid, then waits for `path`.go. */
static inline void *task_pid_then_wait(void *arg, cf_call *call)
{
    char p[600];
    snprintf(p, sizeof p, "%.590s.pid", (const char *)arg);
    if (!write_long_file(p, getpid()))
        return cf_fail(call, 1, "cannot write %s", p);
    snprintf(p, sizeof p, "%.590s.go", (const char *)arg);
    return (void *)(intptr_t)await_file(p, 30);
}

/* path_codec: creates `path` (proof that the task ran). */
static inline void *task_touch(void *arg, cf_call *call)
{
    FILE *f = fopen(arg, "w");
    if (!f)
        return cf_fail(call, errno, "cannot create %s", (const char *)arg);
    fclose(f);
    return (void *)1;
}

/* Waits until the worker that ran path `base` wrote its pid; returns it. */
static inline pid_t await_pid(const char *base)
{
    char p[600];
    snprintf(p, sizeof p, "%.590s.pid", base);
    WAIT_UNTIL(read_long_file(p) > 0, 30);
    return (pid_t)read_long_file(p);
}

static inline void release_go(const char *base)
{
    char p[600];
    snprintf(p, sizeof p, "%.590s.go", base);
    touch(p);
}

/* The transport the tests run over: CF_TEST_TRANSPORT=pipes (CMake
 * registers the process-pool tests once more that way), else the default. */
static inline cf_transport test_transport(void)
{
    const char *t = getenv("CF_TEST_TRANSPORT");
    return t && strcmp(t, "pipes") == 0 ? CF_TRANSPORT_PIPES
                                        : CF_TRANSPORT_SHARED_MEMORY;
}

/* ------------------------------------------------------------------------ */
/* Worker kinds                                                             */

/* CF_TEST_START=program or =callback (CMake registers the process-pool
 * tests once more each way) runs a test's default pool (CF_START_EXEC)
 * with workers of that kind instead:
 *   program   CF_START_PROGRAM of this very binary, which serves from
 *             pp_serve_as_program() below before main();
 *   callback  CF_START_CALLBACK with pp_start_by_fork().
 * Tasks then go by name, so a test file that runs this way defines
 * PP_WORKER_KINDS before including this header and registers every task,
 * codec and initializer it uses in pp_register_names(). */
static inline cf_start_method test_start(void)
{
    const char *k = getenv("CF_TEST_START");
    if (k && strcmp(k, "program") == 0)
        return CF_START_PROGRAM;
    if (k && strcmp(k, "callback") == 0)
        return CF_START_CALLBACK;
    return CF_START_EXEC;
}

/* Starts a worker as a language runtime's launcher would: the child
 * keeps only its channel, moved to 3 (and 4 for pipes; the shared memory
 * next), as an exec'd worker has it, and serves it. */
static inline int pp_start_by_fork(void *ctx, const cf_worker_channel *ch,
                                   cf_worker_process *out)
{
    (void)ctx;
    pid_t pid = fork();
    if (pid < 0)
        return CF_EAGAIN;
    if (pid == 0) {
        bool one = ch->read_fd == ch->write_fd;
        int high[3] = {fcntl(ch->read_fd, F_DUPFD, 100),
                       one ? -1 : fcntl(ch->write_fd, F_DUPFD, 100),
                       ch->shm_fd < 0 ? -1 : fcntl(ch->shm_fd, F_DUPFD, 100)};
        cf_worker_channel moved = {3, one ? 3 : 4, -1, ch->slot};
        int next = 3;
        for (int i = 0; i < 3; i++)
            if (high[i] >= 0 && dup2(high[i], next) == next) {
                if (i == 2)
                    moved.shm_fd = next;
                next++;
            }
        for (int fd = next; fd < 1024; fd++)
            close(fd);
        int status = 2;
        cf_process_worker_serve(&moved, NULL, &status);
        _exit(status);
    }
    out->pid = pid;
    return CF_OK;
}

/* Options for a test's default pool: the transport and worker kind the
 * environment asks for. */
#define PP_KIND                                                          \
    .transport = test_transport(), .start_method = test_start(),         \
    .program = "/proc/self/exe", .start_worker = pp_start_by_fork

#ifdef PP_WORKER_KINDS
static void pp_register_names(void);

__attribute__((constructor(200))) static void pp_names_early(void)
{
    pp_register_names(); /* in the tests and in their program workers */
}

/* A CF_START_PROGRAM worker of this binary serves before main() (whose
 * harness would run the tests); the library's own constructor serves only
 * exec'd workers of CF_START_EXEC. */
__attribute__((constructor(300))) static void pp_serve_as_program(void)
{
    const char *v = getenv("CF_PROCESS_WORKER");
    if (!v || strncmp(v, "main:", 5) != 0)
        return;
    int status = 2;
    cf_process_worker_main(NULL, &status);
    _exit(status);
}

/* Registers `x` (a task, codec or initializer) under its own name. */
#define PP_NAME(x)                                                       \
    do {                                                                 \
        int rc_ = _Generic((x), const cf_codec *: cf_codec_register,      \
                           int (*)(void *): cf_initializer_register,     \
                           default: pp_task_register)(#x, (x));          \
        if (rc_ != CF_OK)                                                \
            fprintf(stderr, "registering %s: %s\n", #x, cf_strerror(rc_)); \
    } while (0)

static inline int pp_task_register(const char *name, cf_fn fn)
{
    return cf_task_register(name, fn);
}
#endif

static inline cf_executor *pool_new(int workers, cf_start_method method)
{
    cf_process_pool_options o = {PP_KIND, .max_workers = workers};
    if (method != CF_START_EXEC)
        o.start_method = method; /* a test of that method */
    cf_executor *ex = NULL;
    ASSERT_OK(cf_process_pool_new(&o, &ex));
    return ex;
}

static inline cf_future *submit_path(cf_executor *ex, cf_fn fn,
                                     const char *path)
{
    cf_future *f = NULL;
    ASSERT_OK(cf_executor_submit_ex(ex, fn, (void *)path, &path_codec, &f));
    return f;
}

/* A pool of `workers` whose first worker is busy with task_pid_then_wait
 * until blocked_pool_release(): tasks submitted meanwhile wait. */
typedef struct blocked_pool {
    tmpdir dir;
    char base[256];
    cf_executor *ex;
    cf_future *running;
} blocked_pool;

static inline void blocked_pool_start(blocked_pool *b, int workers)
{
    tmpdir_make(&b->dir);
    tmpdir_file(&b->dir, "block", b->base, sizeof b->base);
    b->ex = pool_new(workers, CF_START_EXEC);
    b->running = submit_path(b->ex, task_pid_then_wait, b->base);
    await_pid(b->base);
}

/* Lets the busy task end, and checks that it did. */
static inline void blocked_pool_release(blocked_pool *b)
{
    release_go(b->base);
    void *v = NULL;
    ASSERT_OK(cf_future_result(b->running, 30, &v));
    ASSERT_EQ((intptr_t)v, 1);
}

static inline void blocked_pool_free(blocked_pool *b)
{
    cf_future_release(b->running);
    cf_executor_free(b->ex);
    tmpdir_remove(&b->dir);
}

/* Result and failure of a finished future. */
static inline int outcome(cf_future *f, double timeout, void **value,
                          cf_error *err)
{
    int rc = cf_future_result(f, timeout, value);
    if (err && rc != CF_ETIMEDOUT && rc != CF_ECANCELLED)
        ASSERT_OK(cf_future_exception(f, 0, err));
    return rc;
}

#endif
