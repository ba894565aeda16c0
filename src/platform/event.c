/* event.c - a sequence number threads sleep on: futex on Linux, a mutex and
 * condition variable elsewhere.
 *
 * Design: `sleepers` counts threads between announcing they will sleep and
 * returning. A signaller bumps `seq` and makes the system call only if
 * `sleepers` is nonzero. Both sides use sequentially consistent operations
 * (a Dekker pattern): either the sleeper sees the new `seq` and does not
 * sleep, or the signaller sees the sleeper and wakes it. The futex itself
 * re-checks `seq` atomically in the kernel, so no wake-up is lost.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "platform.h"

#include <errno.h>
#include <time.h>

#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

void cf__event_init(cf__event *ev)
{
    atomic_init(&ev->seq, 0);
    atomic_init(&ev->sleepers, 0);
}

void cf__event_destroy(cf__event *ev)
{
    (void)ev;
}

bool cf__event_wait(cf__event *ev, unsigned seq, int64_t deadline_ns)
{
    if (deadline_ns != CF__NO_DEADLINE && cf__now_ns() >= deadline_ns)
        return false;
    atomic_fetch_add(&ev->sleepers, 1);
    if (atomic_load(&ev->seq) == seq) {
        struct timespec ts, *tsp = NULL;
        if (deadline_ns != CF__NO_DEADLINE) {
            ts.tv_sec = deadline_ns / 1000000000;
            ts.tv_nsec = deadline_ns % 1000000000;
            tsp = &ts;
        }
        /* FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC deadline. EINTR,
         * EAGAIN (seq moved) and ETIMEDOUT all just return to the caller,
         * which re-checks its condition and the deadline. */
        syscall(SYS_futex, &ev->seq, FUTEX_WAIT_BITSET_PRIVATE, seq, tsp,
                NULL, FUTEX_BITSET_MATCH_ANY);
    }
    atomic_fetch_sub(&ev->sleepers, 1);
    return deadline_ns == CF__NO_DEADLINE || cf__now_ns() < deadline_ns;
}

static void signal_n(cf__event *ev, int n)
{
    atomic_fetch_add(&ev->seq, 1);
    if (atomic_load(&ev->sleepers) != 0)
        syscall(SYS_futex, &ev->seq, FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0);
}

#else /* portable fallback */

void cf__event_init(cf__event *ev)
{
    atomic_init(&ev->seq, 0);
    atomic_init(&ev->sleepers, 0);
    pthread_mutex_init(&ev->mutex, NULL);
    pthread_cond_init(&ev->cond, NULL);
}

void cf__event_destroy(cf__event *ev)
{
    pthread_cond_destroy(&ev->cond);
    pthread_mutex_destroy(&ev->mutex);
}

bool cf__event_wait(cf__event *ev, unsigned seq, int64_t deadline_ns)
{
    pthread_mutex_lock(&ev->mutex);
    while (atomic_load(&ev->seq) == seq) {
        if (deadline_ns == CF__NO_DEADLINE) {
            pthread_cond_wait(&ev->cond, &ev->mutex);
            continue;
        }
        /* The fallback's condition variable counts in realtime. */
        int64_t left = deadline_ns - cf__now_ns();
        if (left <= 0)
            break;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        int64_t abs_ns = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec + left;
        ts.tv_sec = abs_ns / 1000000000;
        ts.tv_nsec = abs_ns % 1000000000;
        pthread_cond_timedwait(&ev->cond, &ev->mutex, &ts);
    }
    pthread_mutex_unlock(&ev->mutex);
    return deadline_ns == CF__NO_DEADLINE || cf__now_ns() < deadline_ns;
}

static void signal_n(cf__event *ev, int n)
{
    pthread_mutex_lock(&ev->mutex);
    atomic_fetch_add(&ev->seq, 1);
    if (n == 1)
        pthread_cond_signal(&ev->cond);
    else
        pthread_cond_broadcast(&ev->cond);
    pthread_mutex_unlock(&ev->mutex);
}

#endif

void cf__event_signal_one(cf__event *ev)
{
    signal_n(ev, 1);
}

void cf__event_signal_all(cf__event *ev)
{
    signal_n(ev, 0x7fffffff);
}
