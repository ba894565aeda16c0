/* simple_c.c - the "simple C" floor: a plain mutex/condition-variable thread
 * pool with futures, as anyone would write it in an afternoon.
 *
 * Design: one lock guards the FIFO queue and every future's `done` flag.
 * A future is its own queue node (one malloc per task, as cfutures). Workers
 * sleep on `work`; waiters sleep on `finished`, which is broadcast only when
 * someone waits. It has no cancellation, callbacks, timeouts or error
 * handling: it is the cost floor a full futures library is compared with.
 *
 *     simple_c w1 N WORKERS [ROUNDS]   submit N empty tasks, wait for all
 *     simple_c w2 N           submit one, wait for it; N round trips
 *     simple_c w5 WORKERS REPS the spec's primes example, REPS times
 *     simple_c mem N          RSS per pending task (one worker held)
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "../bench.h"

typedef void *(*task_fn)(void *arg);

typedef struct sfuture {
    struct sfuture *next;
    task_fn fn;
    void *arg;
    void *result; /* guarded by pool lock */
    bool done;    /* guarded by pool lock */
} sfuture;

typedef struct spool {
    pthread_mutex_t lock;
    pthread_cond_t work;     /* queue not empty, or stopping */
    pthread_cond_t finished; /* some future completed */
    sfuture *head, *tail;    /* guarded by lock */
    int waiters;             /* threads in spool_wait; guarded by lock */
    bool stop;               /* guarded by lock */
    int nthreads;
    pthread_t threads[64];
} spool;

static void *worker_main(void *p)
{
    spool *pool = p;
    pthread_mutex_lock(&pool->lock);
    for (;;) {
        while (pool->head == NULL && !pool->stop)
            pthread_cond_wait(&pool->work, &pool->lock);
        if (pool->head == NULL)
            break;
        sfuture *f = pool->head;
        pool->head = f->next;
        if (pool->head == NULL)
            pool->tail = NULL;
        pthread_mutex_unlock(&pool->lock);
        void *result = f->fn(f->arg);
        pthread_mutex_lock(&pool->lock);
        f->result = result;
        f->done = true;
        if (pool->waiters > 0)
            pthread_cond_broadcast(&pool->finished);
    }
    pthread_mutex_unlock(&pool->lock);
    return NULL;
}

static spool *spool_new(int nthreads)
{
    spool *pool = bench_xmalloc(sizeof *pool);
    pthread_mutex_init(&pool->lock, NULL);
    pthread_cond_init(&pool->work, NULL);
    pthread_cond_init(&pool->finished, NULL);
    pool->nthreads = nthreads;
    for (int i = 0; i < nthreads; i++)
        if (pthread_create(&pool->threads[i], NULL, worker_main, pool) != 0)
            bench_die("pthread_create");
    return pool;
}

static void spool_free(spool *pool)
{
    pthread_mutex_lock(&pool->lock);
    pool->stop = true;
    pthread_cond_broadcast(&pool->work);
    pthread_mutex_unlock(&pool->lock);
    for (int i = 0; i < pool->nthreads; i++)
        pthread_join(pool->threads[i], NULL);
    pthread_cond_destroy(&pool->finished);
    pthread_cond_destroy(&pool->work);
    pthread_mutex_destroy(&pool->lock);
    free(pool);
}

static sfuture *spool_submit(spool *pool, task_fn fn, void *arg)
{
    sfuture *f = malloc(sizeof *f);
    if (f == NULL)
        bench_die("out of memory");
    f->next = NULL;
    f->fn = fn;
    f->arg = arg;
    f->result = NULL;
    f->done = false;
    pthread_mutex_lock(&pool->lock);
    if (pool->tail != NULL)
        pool->tail->next = f;
    else
        pool->head = f;
    pool->tail = f;
    pthread_cond_signal(&pool->work);
    pthread_mutex_unlock(&pool->lock);
    return f;
}

/* Waits for `f`, frees it and returns its result. */
static void *spool_result(spool *pool, sfuture *f)
{
    pthread_mutex_lock(&pool->lock);
    if (!f->done) {
        pool->waiters++;
        while (!f->done)
            pthread_cond_wait(&pool->finished, &pool->lock);
        pool->waiters--;
    }
    void *result = f->result;
    pthread_mutex_unlock(&pool->lock);
    free(f);
    return result;
}

static void *noop(void *arg)
{
    return arg;
}

static void run_w1(long n, int workers, int rounds)
{
    spool *pool = spool_new(workers);
    sfuture **fs = bench_xmalloc((size_t)n * sizeof *fs);
    spool_result(pool, spool_submit(pool, noop, NULL)); /* warm up */
    bench_w1_clock clock;
    bench_w1_clock_init(&clock, rounds);
    for (int r = 0; r < rounds; r++) {
        bench_w1_round_start(&clock);
        for (long i = 0; i < n; i++)
            fs[i] = spool_submit(pool, noop, NULL);
        for (long i = 0; i < n; i++)
            spool_result(pool, fs[i]);
        bench_w1_round_end(&clock);
    }
    bench_w1_report(&clock, "simple_c", workers, n);
    free(fs);
    spool_free(pool);
}

static void run_w2(long n)
{
    spool *pool = spool_new(1);
    double *lat = bench_xmalloc((size_t)n * sizeof *lat);
    for (int i = 0; i < 1000; i++) /* warm up */
        spool_result(pool, spool_submit(pool, noop, NULL));
    for (long i = 0; i < n; i++) {
        int64_t t0 = bench_now_ns();
        spool_result(pool, spool_submit(pool, noop, NULL));
        lat[i] = (double)(bench_now_ns() - t0);
    }
    bench_lat s = bench_latency_stats(lat, (size_t)n);
    printf("w2 simple_c n=%ld mean_us=%.2f p50_us=%.2f p99_us=%.2f\n", n,
           s.mean_us, s.p50_us, s.p99_us);
    free(lat);
    spool_free(pool);
}

static void *prime_task(void *arg)
{
    return (void *)(intptr_t)bench_is_prime((uint64_t)(uintptr_t)arg);
}

/* The spec's primes example, its list repeated `reps` times; the clock
 * includes starting and stopping the pool, as bench/primes.c does. */
static void run_w5(int workers, long reps)
{
    size_t n = BENCH_NPRIMES * (size_t)reps;
    sfuture **fs = bench_xmalloc(n * sizeof *fs);
    int64_t t0 = bench_now_ns();
    spool *pool = spool_new(workers);
    for (size_t i = 0; i < n; i++)
        fs[i] = spool_submit(
            pool, prime_task,
            (void *)(uintptr_t)bench_primes[i % BENCH_NPRIMES]);
    for (size_t i = 0; i < n; i++)
        if ((int)(intptr_t)spool_result(pool, fs[i]) !=
            bench_primes_expected[i % BENCH_NPRIMES])
            bench_die("wrong answer for %llu",
                      (unsigned long long)bench_primes[i % BENCH_NPRIMES]);
    spool_free(pool);
    double s = (double)(bench_now_ns() - t0) / 1e9;
    printf("w5 simple_c workers=%d reps=%ld seconds=%.3f\n", workers, reps,
           s);
    free(fs);
}

/* The first task holds the only worker until `gate` opens, so every later
 * submission stays pending while RSS is read. */
static pthread_mutex_t gate_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cond = PTHREAD_COND_INITIALIZER;
static bool gate_open;

static void *hold(void *arg)
{
    pthread_mutex_lock(&gate_lock);
    while (!gate_open)
        pthread_cond_wait(&gate_cond, &gate_lock);
    pthread_mutex_unlock(&gate_lock);
    return arg;
}

static void run_mem(long n)
{
    spool *pool = spool_new(1);
    sfuture **fs = bench_xmalloc((size_t)n * sizeof *fs);
    sfuture *held = spool_submit(pool, hold, NULL);
    long long before = bench_status_bytes("VmRSS");
    for (long i = 0; i < n; i++)
        fs[i] = spool_submit(pool, noop, NULL);
    long long peak = bench_status_bytes("VmHWM");
    pthread_mutex_lock(&gate_lock);
    gate_open = true;
    pthread_cond_broadcast(&gate_cond);
    pthread_mutex_unlock(&gate_lock);
    spool_result(pool, held);
    for (long i = 0; i < n; i++)
        spool_result(pool, fs[i]);
    printf("mem simple_c n=%ld bytes_per_task=%.1f peak_rss_mb=%.1f\n", n,
           (double)(peak - before) / (double)n, (double)peak / 1048576.0);
    free(fs);
    spool_free(pool);
}

int main(int argc, char **argv)
{
    const char *what = argc > 1 ? argv[1] : "";
    if (strcmp(what, "w1") == 0)
        run_w1(bench_arg(argc, argv, 2, 1000000),
               (int)bench_arg(argc, argv, 3, 1),
               (int)bench_arg(argc, argv, 4, 1));
    else if (strcmp(what, "w2") == 0)
        run_w2(bench_arg(argc, argv, 2, 100000));
    else if (strcmp(what, "w5") == 0)
        run_w5((int)bench_arg(argc, argv, 2, 2),
               bench_arg(argc, argv, 3, 1));
    else if (strcmp(what, "mem") == 0)
        run_mem(bench_arg(argc, argv, 2, 1000000));
    else
        bench_die("usage: simple_c w1|w2|w5|mem [args]");
    return 0;
}
