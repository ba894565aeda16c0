/* posix.c - clocks, mutexes, condition variables and threads on POSIX.
 *
 * Design: thin wrappers that turn "impossible" failures (a lock operation
 * on a valid lock) into abort(), and resource failures into CF_E* codes.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "platform.h"

#include <errno.h>
#include <math.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cfutures.h"

static void die(const char *what, int err)
{
    fprintf(stderr, "cfutures: %s failed: %s\n", what, strerror(err));
    abort();
}

int64_t cf__now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int cf__deadline_from_timeout(double timeout, int64_t *deadline_ns)
{
    if (isnan(timeout))
        return CF_EINVAL;
    int64_t now = cf__now_ns();
    if (timeout <= 0) {
        *deadline_ns = now;
        return CF_OK;
    }
    /* Clamp before converting: an out-of-range double-to-integer conversion
     * is undefined behaviour. 2^62 ns is about 146 years. */
    const double limit_s = 4611686018.0;
    if (timeout >= limit_s) {
        *deadline_ns = CF__NO_DEADLINE;
        return CF_OK;
    }
    *deadline_ns = now + (int64_t)(timeout * 1e9);
    return CF_OK;
}

static struct timespec to_timespec(int64_t ns)
{
    struct timespec ts = {.tv_sec = ns / 1000000000,
                          .tv_nsec = ns % 1000000000};
    return ts;
}

void cf__spin_lock_slow(cf__spinlock *l)
{
    for (unsigned spins = 0;; spins++) {
        if (!atomic_load_explicit(&l->held, memory_order_relaxed) &&
            !atomic_exchange_explicit(&l->held, true, memory_order_acquire))
            return;
        /* The holder may have been preempted (2 cores, many threads): stop
         * burning its CPU after a short while. */
        if (spins < 64)
            cf__cpu_relax();
        else
            sched_yield();
    }
}

int cf__mutex_init(cf__mutex *m)
{
    int err = pthread_mutex_init(m, NULL);
    return err == 0 ? CF_OK : err == ENOMEM ? CF_ENOMEM : CF_ESYS;
}

void cf__mutex_destroy(cf__mutex *m)
{
    int err = pthread_mutex_destroy(m);
    if (err)
        die("pthread_mutex_destroy", err);
}

void cf__mutex_lock(cf__mutex *m)
{
    int err = pthread_mutex_lock(m);
    if (err)
        die("pthread_mutex_lock", err);
}

void cf__mutex_unlock(cf__mutex *m)
{
    int err = pthread_mutex_unlock(m);
    if (err)
        die("pthread_mutex_unlock", err);
}

int cf__cond_init(cf__cond *c)
{
    pthread_condattr_t attr;
    if (pthread_condattr_init(&attr) != 0)
        return CF_ENOMEM;
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    int err = pthread_cond_init(c, &attr);
    pthread_condattr_destroy(&attr);
    return err == 0 ? CF_OK : err == ENOMEM ? CF_ENOMEM : CF_ESYS;
}

void cf__cond_destroy(cf__cond *c)
{
    int err = pthread_cond_destroy(c);
    if (err)
        die("pthread_cond_destroy", err);
}

void cf__cond_wait(cf__cond *c, cf__mutex *m)
{
    int err = pthread_cond_wait(c, m);
    if (err)
        die("pthread_cond_wait", err);
}

bool cf__cond_timedwait(cf__cond *c, cf__mutex *m, int64_t deadline_ns)
{
    if (deadline_ns == CF__NO_DEADLINE) {
        cf__cond_wait(c, m);
        return true;
    }
    struct timespec ts = to_timespec(deadline_ns);
    int err = pthread_cond_timedwait(c, m, &ts);
    if (err == ETIMEDOUT)
        return false;
    if (err)
        die("pthread_cond_timedwait", err);
    return true;
}

void cf__cond_signal(cf__cond *c)
{
    int err = pthread_cond_signal(c);
    if (err)
        die("pthread_cond_signal", err);
}

void cf__cond_broadcast(cf__cond *c)
{
    int err = pthread_cond_broadcast(c);
    if (err)
        die("pthread_cond_broadcast", err);
}

/* The new thread names itself before running `fn`, so that the name is in
 * place before any task or initializer can observe it. */
typedef struct thread_start {
    void *(*fn)(void *);
    void *arg;
    char name[16]; /* the kernel keeps 15 bytes and a NUL */
} thread_start;

static void *thread_trampoline(void *raw)
{
    thread_start start = *(thread_start *)raw;
    free(raw);
#if defined(__linux__)
    if (start.name[0])
        pthread_setname_np(pthread_self(), start.name);
#endif
    return start.fn(start.arg);
}

int cf__thread_create(cf__thread *t, void *(*fn)(void *), void *arg,
                      const char *name)
{
    thread_start *start = malloc(sizeof *start);
    if (!start)
        return CF_ENOMEM;
    start->fn = fn;
    start->arg = arg;
    snprintf(start->name, sizeof start->name, "%s", name ? name : "");
    /* Block every signal while creating, so the new thread starts with all
     * signals blocked: process-directed signals then go to the caller's own
     * threads, where its handlers expect them. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int err = pthread_create(t, NULL, thread_trampoline, start);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (err) {
        free(start);
        return err == EAGAIN ? CF_EAGAIN : err == ENOMEM ? CF_ENOMEM : CF_ESYS;
    }
    return CF_OK;
}

void cf__thread_join(cf__thread t)
{
    int err = pthread_join(t, NULL);
    if (err)
        die("pthread_join", err);
}

void cf__thread_detach(cf__thread t)
{
    int err = pthread_detach(t);
    if (err)
        die("pthread_detach", err);
}

void cf__yield(void)
{
    sched_yield();
}

int cf__cpu_count(void)
{
#if defined(__linux__)
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        int n = CPU_COUNT(&set);
        if (n > 0)
            return n;
    }
#endif
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}
