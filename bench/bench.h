/* bench.h - helpers shared by every benchmark program (cfutures and peers).
 *
 * Design: header-only so that the peers (C and C++) build from one file
 * each. Every program prints exactly one line of space-separated tokens:
 *
 *     <scenario> <contender> key=value key=value ...
 *
 * which bench/harness.py parses; the keys are the parameters first, then the
 * measurements. Programs exit nonzero on any failure, so a broken contender
 * can never pass off an error as a fast result.
 */
#ifndef CF_BENCH_H
#define CF_BENCH_H

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Monotonic clock in nanoseconds. */
static inline int64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* CPU time the whole process (every thread) has spent in the kernel, in
 * ns: page faults and the zeroing of fresh memory, futex and yield calls.
 * W1 reports it per task, to show how much of a run the kernel took. */
static inline int64_t bench_sys_ns(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return 0;
    return (int64_t)ru.ru_stime.tv_sec * 1000000000 +
           (int64_t)ru.ru_stime.tv_usec * 1000;
}

/* Prints W1's line: `elapsed_ns` and `sys_ns` (bench_sys_ns() differences)
 * cover the timed section of `n` tasks. */
static inline void bench_report_w1(const char *contender, int workers, long n,
                                   int64_t elapsed_ns, int64_t sys_ns)
{
    double ns = (double)elapsed_ns / (double)n;
    printf("w1 %s workers=%d n=%ld ns_per_task=%.1f tasks_per_s=%.0f"
           " sys_ns_per_task=%.1f\n",
           contender, workers, n, ns, 1e9 / ns, (double)sys_ns / (double)n);
}

/* Prints a message and exits: a benchmark that failed must not report. */
static inline void bench_die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("bench: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

/* Reads a positive integer argument, or `dflt` when absent. */
static inline long bench_arg(int argc, char **argv, int i, long dflt)
{
    if (i >= argc)
        return dflt;
    char *end;
    long v = strtol(argv[i], &end, 10);
    if (*end != '\0' || v <= 0)
        bench_die("bad argument '%s'", argv[i]);
    return v;
}

static inline void *bench_xmalloc(size_t size)
{
    void *p = malloc(size ? size : 1);
    if (p == NULL)
        bench_die("out of memory (%zu bytes)", size);
    /* Touch every page now, so that the page faults are not timed. */
    memset(p, 0, size);
    return p;
}

/* W1 in rounds: the timed section run `rounds` times in one process, with
 * the same pool, threads and memory (what a long-running program sees,
 * where the first W1 round sees a fresh pool and fresh memory). The report
 * is the median round of all but the first; with one round, that round.
 *
 *     bench_w1_clock c;
 *     bench_w1_clock_init(&c, rounds);
 *     for (int r = 0; r < rounds; r++) {
 *         bench_w1_round_start(&c);
 *         ... submit n, wait for all ...
 *         bench_w1_round_end(&c);
 *     }
 *     bench_w1_report(&c, "name", workers, n);
 */
typedef struct bench_w1_clock {
    int rounds, done;
    int64_t *elapsed, *sys; /* per round */
    int64_t t0, k0;         /* the running round's start */
} bench_w1_clock;

static inline void bench_w1_clock_init(bench_w1_clock *c, int rounds)
{
    c->rounds = rounds > 0 ? rounds : 1;
    c->done = 0;
    c->elapsed = (int64_t *)bench_xmalloc((size_t)c->rounds * sizeof(int64_t));
    c->sys = (int64_t *)bench_xmalloc((size_t)c->rounds * sizeof(int64_t));
}

static inline void bench_w1_round_start(bench_w1_clock *c)
{
    c->k0 = bench_sys_ns();
    c->t0 = bench_now_ns();
}

static inline void bench_w1_round_end(bench_w1_clock *c)
{
    int64_t t1 = bench_now_ns();
    if (c->done < c->rounds) {
        c->elapsed[c->done] = t1 - c->t0;
        c->sys[c->done] = bench_sys_ns() - c->k0;
        c->done++;
    }
}

static inline void bench_w1_report(bench_w1_clock *c, const char *contender,
                                   int workers, long n)
{
    if (c->done == 0)
        bench_die("w1: no round ran");
    /* Rounds after the first, sorted by time (insertion sort: few). */
    int first = c->done > 1 ? 1 : 0, m = c->done - first;
    int64_t *e = c->elapsed + first, *k = c->sys + first;
    for (int i = 1; i < m; i++)
        for (int j = i; j > 0 && e[j] < e[j - 1]; j--) {
            int64_t te = e[j], tk = k[j];
            e[j] = e[j - 1];
            k[j] = k[j - 1];
            e[j - 1] = te;
            k[j - 1] = tk;
        }
    bench_report_w1(contender, workers, n, e[m / 2], k[m / 2]);
    free(c->elapsed);
    free(c->sys);
}

/* A field of /proc/self/status in bytes ("VmRSS", "VmHWM"), or 0. */
static inline long long bench_status_bytes(const char *field)
{
    FILE *fp = fopen("/proc/self/status", "r");
    char line[256];
    size_t len = strlen(field);
    long long kb = 0;
    if (fp == NULL)
        return 0;
    while (fgets(line, sizeof line, fp) != NULL) {
        if (strncmp(line, field, len) == 0 && line[len] == ':') {
            kb = atoll(line + len + 1);
            break;
        }
    }
    fclose(fp);
    return kb * 1024;
}

static int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Latency statistics of `n` samples in nanoseconds (sorted in place). */
typedef struct bench_lat {
    double mean_us, p50_us, p99_us, max_us;
} bench_lat;

static inline bench_lat bench_latency_stats(double *ns, size_t n)
{
    bench_lat s = {0, 0, 0, 0};
    double sum = 0;
    if (n == 0)
        return s;
    for (size_t i = 0; i < n; i++)
        sum += ns[i];
    qsort(ns, n, sizeof *ns, bench_cmp_double);
    s.mean_us = sum / (double)n / 1e3;
    s.p50_us = ns[n / 2] / 1e3;
    s.p99_us = ns[(size_t)((double)(n - 1) * 0.99)] / 1e3;
    s.max_us = ns[n - 1] / 1e3;
    return s;
}

/* The W5 workload: the spec's ProcessPoolExecutor example. */
static const uint64_t bench_primes[] = {
    112272535095293ULL, 112582705942171ULL, 112272535095293ULL,
    115280095190773ULL, 115797848077099ULL, 1099726899285419ULL,
};
#define BENCH_NPRIMES (sizeof bench_primes / sizeof bench_primes[0])
/* What is_prime() answers for each, as the spec's output shows. */
static const int bench_primes_expected[] = {1, 1, 1, 1, 1, 0};

static inline int bench_is_prime(uint64_t n)
{
    if (n < 2)
        return 0;
    if (n == 2)
        return 1;
    if (n % 2 == 0)
        return 0;
    /* floor(sqrt(n)) as Python's int(math.floor(math.sqrt(n))); a double
     * is exact enough below 2^52, and the two loops settle the rounding. */
    uint64_t root = (uint64_t)sqrt((double)n);
    while (root * root > n)
        root--;
    while ((root + 1) * (root + 1) <= n)
        root++;
    for (uint64_t i = 3; i <= root; i += 2)
        if (n % i == 0)
            return 0;
    return 1;
}

#ifdef CFUTURES_H
/* Exits unless a cfutures call returned CF_OK. */
#define BENCH_CHECK(call)                                                  \
    do {                                                                   \
        int bench_err_ = (call);                                           \
        if (bench_err_ != CF_OK)                                           \
            bench_die("%s: %s", #call, cf_err_name(bench_err_));           \
    } while (0)

/* A thread pool of `workers` threads, started (they start lazily) and warmed
 * up, so that no measurement includes thread creation. */
static inline cf_executor *bench_thread_pool(int workers)
{
    cf_thread_pool_options opts = {0};
    cf_executor *ex;
    opts.max_workers = workers;
    BENCH_CHECK(cf_thread_pool_new(&opts, &ex));
    return ex;
}
#endif

#ifdef __cplusplus
}
#endif

#endif /* CF_BENCH_H */
