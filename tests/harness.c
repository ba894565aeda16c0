/* harness.c - runs the tests of one program; see harness.h. */
#define _GNU_SOURCE
#include "harness.h"

#include <dirent.h>
#include <errno.h>
#include <sched.h>
#include <stdarg.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_TESTS 512

static struct {
    const char *name;
    harness_fn fn;
} tests[MAX_TESTS];
static int n_tests;
static const char *current;
static bool skip_leak_check;
static void (*on_fail)(void);
static pid_t on_fail_pid;

void harness_on_fail(void (*fn)(void))
{
    on_fail = fn;
    on_fail_pid = getpid();
}

void harness_register(const char *name, harness_fn fn)
{
    if (n_tests == MAX_TESTS) {
        fprintf(stderr, "harness: more than %d tests\n", MAX_TESTS);
        exit(2);
    }
    tests[n_tests].name = name;
    tests[n_tests].fn = fn;
    n_tests++;
}

void harness_fail(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "FAIL %s (%s:%d): ", current ? current : "?", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stderr);
    void (*fn)(void) = on_fail;
    on_fail = NULL; /* once, even if it fails an assertion itself */
    if (fn && getpid() == on_fail_pid)
        fn();
    _exit(1);
}

size_t harness_scaled(size_t n, size_t min)
{
    const char *s = getenv("CF_TEST_SCALE");
    double scale = s ? atof(s) : 1.0;
    if (!(scale > 0))
        scale = 1.0;
    size_t v = (size_t)((double)n * scale);
    return v < min ? min : v;
}

double harness_slowdown(void)
{
#ifdef CF_TEST_SLOWDOWN
    return CF_TEST_SLOWDOWN > 1 ? (double)CF_TEST_SLOWDOWN : 1.0;
#else
    return 1.0;
#endif
}

double harness_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void harness_pause(void)
{
    struct timespec ts = {0, 200000}; /* 0.2 ms */
    nanosleep(&ts, NULL);
}

void latch_init(latch *l)
{
    pthread_mutex_init(&l->mutex, NULL);
    pthread_cond_init(&l->cond, NULL);
    l->open = 0;
    l->arrived = 0;
}

void latch_destroy(latch *l)
{
    pthread_cond_destroy(&l->cond);
    pthread_mutex_destroy(&l->mutex);
}

void latch_open(latch *l)
{
    pthread_mutex_lock(&l->mutex);
    l->open = 1;
    pthread_cond_broadcast(&l->cond);
    pthread_mutex_unlock(&l->mutex);
}

void latch_wait(latch *l)
{
    pthread_mutex_lock(&l->mutex);
    l->arrived++;
    pthread_cond_broadcast(&l->cond);
    while (!l->open)
        pthread_cond_wait(&l->cond, &l->mutex);
    pthread_mutex_unlock(&l->mutex);
}

void latch_wait_arrived(latch *l, int n)
{
    pthread_mutex_lock(&l->mutex);
    while (l->arrived < n)
        pthread_cond_wait(&l->cond, &l->mutex);
    pthread_mutex_unlock(&l->mutex);
}

static int count_dir(const char *path)
{
    DIR *d = opendir(path);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

int harness_count_fds(void)
{
    return count_dir("/proc/self/fd") - 1; /* less the directory's own fd */
}

int harness_count_threads(void)
{
    return count_dir("/proc/self/task");
}

void harness_skip_leak_check(void)
{
    skip_leak_check = true;
}

/* Threads that were joined may take a moment to leave /proc. */
static bool settles(int (*count)(void), int expected)
{
    double deadline = harness_now() + 5.0;
    while (count() > expected) {
        if (harness_now() > deadline)
            return false;
        harness_pause();
    }
    return true;
}

static int run_one(int i)
{
    current = tests[i].name;
    skip_leak_check = false;
    int fds = harness_count_fds(), threads = harness_count_threads();
    double t0 = harness_now();
    tests[i].fn();
    if (!skip_leak_check) {
        if (!settles(harness_count_threads, threads))
            harness_fail(__FILE__, __LINE__, "leaked threads: %d before, %d after",
                         threads, harness_count_threads());
        if (!settles(harness_count_fds, fds))
            harness_fail(__FILE__, __LINE__, "leaked descriptors: %d before, %d after",
                         fds, harness_count_fds());
        int status;
        pid_t child = waitpid(-1, &status, WNOHANG);
        if (child > 0 || (child == 0))
            harness_fail(__FILE__, __LINE__, "left a child process behind");
    }
    printf("ok %s (%.3f s)\n", tests[i].name, harness_now() - t0);
    fflush(stdout);
    return 0;
}

static void *warm_up(void *arg)
{
    return arg;
}

int main(int argc, char **argv)
{
    /* Sanitizer runtimes (TSan) start a background thread with the first
     * pthread_create; start it now so the leak check's baseline has it. */
    int baseline = harness_count_threads();
    pthread_t t;
    if (pthread_create(&t, NULL, warm_up, NULL) == 0) {
        pthread_join(t, NULL);
        /* A joined thread leaves /proc a moment later; TSan's own stays. */
        settles(harness_count_threads, baseline + 1);
        double deadline = harness_now() + 0.05;
        while (harness_count_threads() > baseline && harness_now() < deadline)
            harness_pause();
    }

    if (argc > 1 && strcmp(argv[1], "--list") == 0) {
        for (int i = 0; i < n_tests; i++)
            printf("%s\n", tests[i].name);
        return 0;
    }
    if (argc > 1) {
        for (int i = 0; i < n_tests; i++)
            if (strcmp(tests[i].name, argv[1]) == 0)
                return run_one(i);
        fprintf(stderr, "no test named %s\n", argv[1]);
        return 2;
    }
    for (int i = 0; i < n_tests; i++)
        run_one(i);
    printf("%d passed, 0 failed\n", n_tests);
    return 0;
}

bool harness_under_valgrind(void)
{
    const char *p = getenv("LD_PRELOAD");
    return p && strstr(p, "valgrind") != NULL;
}

void harness_child_exit(int status)
{
    if (harness_under_valgrind()) {
        char code[16];
        snprintf(code, sizeof code, "exit %d", status & 0xff);
        execl("/bin/sh", "sh", "-c", code, (char *)NULL);
    }
    _exit(status);
}
