/* handoff.c - the floor under W2: what one round trip between two threads
 * costs with no pool at all.
 *
 *     handoff cond N    mutex + condition variable ping-pong
 *     handoff futex N   bare futex wait/wake ping-pong (Linux)
 *     handoff spin N    both threads spin on an atomic (no sleeping)
 *
 * One round trip is a request from the main thread to a partner thread and
 * the reply back: the same shape as submit + result of an empty task. The
 * `spin` line shows what a hand-off costs when neither side ever sleeps;
 * `cond` and `futex` include the kernel wake-up of a sleeping thread, which
 * is what a pool that sleeps at once pays per round trip.
 */
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "../bench.h"

/* `turn` is odd while the partner owes a reply, even while main does. */
static atomic_uint turn;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static long rounds;
static enum { COND, FUTEX, SPIN } mode;

static void futex_wait(atomic_uint *word, unsigned expected)
{
    syscall(SYS_futex, (unsigned *)word, FUTEX_WAIT_PRIVATE, expected, NULL,
            NULL, 0);
}

static void futex_wake(atomic_uint *word)
{
    syscall(SYS_futex, (unsigned *)word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL,
            0);
}

/* Waits until `turn` has the parity `odd`, then returns its value. */
static unsigned await_turn(bool odd)
{
    unsigned t;
    switch (mode) {
    case COND:
        pthread_mutex_lock(&lock);
        while (((t = atomic_load(&turn)) & 1u) != (unsigned)odd)
            pthread_cond_wait(&cond, &lock);
        pthread_mutex_unlock(&lock);
        return t;
    case FUTEX:
        while (((t = atomic_load(&turn)) & 1u) != (unsigned)odd)
            futex_wait(&turn, t);
        return t;
    case SPIN:
    default:
        while (((t = atomic_load_explicit(&turn, memory_order_acquire)) &
                1u) != (unsigned)odd)
            __builtin_ia32_pause();
        return t;
    }
}

static void pass_turn(unsigned t)
{
    switch (mode) {
    case COND:
        pthread_mutex_lock(&lock);
        atomic_store(&turn, t + 1);
        pthread_cond_signal(&cond);
        pthread_mutex_unlock(&lock);
        break;
    case FUTEX:
        atomic_store(&turn, t + 1);
        futex_wake(&turn);
        break;
    case SPIN:
        atomic_store_explicit(&turn, t + 1, memory_order_release);
        break;
    }
}

static void *partner(void *unused)
{
    (void)unused;
    for (long i = 0; i < rounds; i++)
        pass_turn(await_turn(true));
    return NULL;
}

int main(int argc, char **argv)
{
    const char *what = argc > 1 ? argv[1] : "";
    if (strcmp(what, "cond") == 0)
        mode = COND;
    else if (strcmp(what, "futex") == 0)
        mode = FUTEX;
    else if (strcmp(what, "spin") == 0)
        mode = SPIN;
    else
        bench_die("usage: handoff cond|futex|spin [N]");
    long n = bench_arg(argc, argv, 2, 100000);
    long warm = 1000;
    rounds = n + warm;
    double *lat = bench_xmalloc((size_t)n * sizeof *lat);
    pthread_t th;
    if (pthread_create(&th, NULL, partner, NULL) != 0)
        bench_die("pthread_create");
    for (long i = 0; i < rounds; i++) {
        int64_t t0 = bench_now_ns();
        pass_turn(await_turn(false));
        await_turn(false);
        if (i >= warm)
            lat[i - warm] = (double)(bench_now_ns() - t0);
    }
    pthread_join(th, NULL);
    bench_lat s = bench_latency_stats(lat, (size_t)n);
    printf("w2 handoff_%s n=%ld mean_us=%.2f p50_us=%.2f p99_us=%.2f\n", what,
           n, s.mean_us, s.p50_us, s.p99_us);
    free(lat);
    return 0;
}
