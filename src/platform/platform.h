/* platform.h - the OS layer: clocks, locks, events, threads.
 *
 * Design: every OS #ifdef of the library lives under src/platform/. Lock
 * operations abort() when they fail, because that is a bug (a destroyed or
 * corrupted lock); resource allocation (threads) returns an error code.
 * Deadlines are absolute CLOCK_MONOTONIC nanoseconds; a timeout in seconds
 * is converted once, at API entry, by cf__deadline_from_timeout().
 */
#ifndef CF_PLATFORM_H
#define CF_PLATFORM_H

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ------------------------------------------------------------------------ */
/* Time                                                                     */

#define CF__NO_DEADLINE INT64_MAX

/* Monotonic clock in nanoseconds. */
int64_t cf__now_ns(void);

/* A cheaper clock for timing intervals, in nanoseconds from an arbitrary
 * epoch (fast_clock.c): the CPU's invariant time-stamp counter where
 * there is one, else cf__now_ns(). Call cf__fast_clock_init() once before
 * the first read (it may take 2 ms); thread-safe. */
void cf__fast_clock_init(void);

/* The counter's scale, set once by cf__fast_clock_init(): ns = (ticks -
 * base_ticks) * ns_per_tick_q32 >> 32; ns_per_tick_q32 0: no counter.
 * Read inline: a monitored task reads the clock three times. */
typedef struct cf__fast_clock_scale {
    uint64_t base_ticks;
    uint64_t ns_per_tick_q32; /* ns per tick, times 2^32 */
} cf__fast_clock_scale;
extern cf__fast_clock_scale cf__fast_clock;

static inline int64_t cf__fast_now_ns(void)
{
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    uint64_t q32 = cf__fast_clock.ns_per_tick_q32;
    if (q32) {
        uint64_t ticks = __builtin_ia32_rdtsc() - cf__fast_clock.base_ticks;
        /* ticks * q32 >> 32, in two halves (no overflow within
         * centuries). */
        uint64_t hi = ticks >> 32, lo = ticks & 0xffffffffu;
        return (int64_t)(hi * q32 + ((lo * q32) >> 32));
    }
#endif
    return cf__now_ns();
}

/* Converts a timeout in seconds to an absolute deadline. CF_FOREVER, any
 * infinity or anything too large to represent gives CF__NO_DEADLINE; <= 0
 * gives "now" (poll). Returns CF_OK, or CF_EINVAL for NaN. */
int cf__deadline_from_timeout(double timeout, int64_t *deadline_ns);

/* ------------------------------------------------------------------------ */
/* Spinlock: one byte, for critical sections of a few instructions.         */

typedef struct cf__spinlock {
    atomic_bool held;
} cf__spinlock;

#define CF__SPINLOCK_INIT {false}

void cf__spin_lock_slow(cf__spinlock *l);

static inline void cf__spin_lock(cf__spinlock *l)
{
    if (!atomic_exchange_explicit(&l->held, true, memory_order_acquire))
        return;
    cf__spin_lock_slow(l);
}

static inline void cf__spin_unlock(cf__spinlock *l)
{
    atomic_store_explicit(&l->held, false, memory_order_release);
}

/* A CPU hint for busy-wait loops. */
static inline void cf__cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* Gives the CPU to another runnable thread, if any (sched_yield). */
void cf__yield(void);

/* How long a spin uses pause alone. Past it, the spin also yields at each
 * clock read: on a busy machine the thread it waits for may be queued
 * behind the spinner on the same CPU, and pausing would keep it there
 * until the time slice ends. Measured on 2 vCPUs (bench/RESULTS.md): a
 * pool's idle worker that yields after 20 us lets a submitter sharing its
 * CPU run (W1 with 2 workers: 95 -> 79 ns/task quiet, 236 -> 80 ns under a
 * CPU hog), while yielding after 4 us gave the CPU away too often to an
 * unrelated busy thread (W2 under the hog: 0.5-3 us -> 10 us). */
enum { CF__SPIN_POLITE_NS = 20000 };

/* Bounded busy-waiting. Call in a loop that re-checks a condition:
 *     int64_t until = 0;
 *     for (unsigned i = 0; !ready(); i++)
 *         if (!cf__spin_continue(i, &until, budget_ns)) break;
 * The budget is time, not iterations, because a pause instruction costs
 * from 10 to 150 cycles depending on the CPU. The clock is read once every
 * 32 iterations. */
static inline bool cf__spin_continue(unsigned i, int64_t *until,
                                     int64_t budget_ns)
{
    cf__cpu_relax();
    if ((i & 31) != 31)
        return true;
    int64_t now = cf__now_ns();
    if (*until == 0) {
        *until = now + budget_ns;
        return true;
    }
    if (now - (*until - budget_ns) > CF__SPIN_POLITE_NS)
        cf__yield();
    return now < *until;
}

/* ------------------------------------------------------------------------ */
/* Event: a sequence number threads sleep on until it changes (a futex on
 * Linux). Signal is cheap when nobody sleeps: no system call.              */

typedef struct cf__event {
    atomic_uint seq;
    atomic_uint sleepers;
#if !defined(__linux__)
    pthread_mutex_t mutex;
    pthread_cond_t cond;
#endif
} cf__event;

void cf__event_init(cf__event *ev);
void cf__event_destroy(cf__event *ev);

/* The current sequence number, to pass to cf__event_wait(). */
static inline unsigned cf__event_seq(cf__event *ev)
{
    return atomic_load_explicit(&ev->seq, memory_order_acquire);
}

/* Sleeps while the sequence number is still `seq`, until `deadline_ns`.
 * May return early (signals, spurious wake-ups): callers re-check their
 * condition. Returns false once the deadline has passed. */
bool cf__event_wait(cf__event *ev, unsigned seq, int64_t deadline_ns);

/* Advances the sequence number and wakes one / every sleeper. */
void cf__event_signal_one(cf__event *ev);
void cf__event_signal_all(cf__event *ev);

/* ------------------------------------------------------------------------ */
/* Mutex, condition variable, thread                                        */

typedef pthread_mutex_t cf__mutex;
typedef pthread_cond_t cf__cond;

int cf__mutex_init(cf__mutex *m);
void cf__mutex_destroy(cf__mutex *m);
void cf__mutex_lock(cf__mutex *m);
void cf__mutex_unlock(cf__mutex *m);

/* Condition variables use the monotonic clock. */
int cf__cond_init(cf__cond *c);
void cf__cond_destroy(cf__cond *c);
void cf__cond_wait(cf__cond *c, cf__mutex *m);
/* Returns false once the deadline has passed. */
bool cf__cond_timedwait(cf__cond *c, cf__mutex *m, int64_t deadline_ns);
void cf__cond_signal(cf__cond *c);
void cf__cond_broadcast(cf__cond *c);

typedef pthread_t cf__thread;

/* Starts a thread named `name` (may be NULL; truncated to the OS limit)
 * with all signals blocked, so the caller's signal handlers run on the
 * caller's threads only. Returns CF_OK, CF_EAGAIN, CF_ENOMEM. */
int cf__thread_create(cf__thread *t, void *(*fn)(void *), void *arg,
                      const char *name);
void cf__thread_join(cf__thread t);
/* Lets a thread end on its own: nobody will join it. */
void cf__thread_detach(cf__thread t);

/* CPUs this process may run on (affinity mask), at least 1. */
int cf__cpu_count(void);

/* ------------------------------------------------------------------------ */
/* Pages                                                                    */

/* Maps `size` bytes of zeroed, private memory aligned to `size` (a power of
 * two, a multiple of the page size). With `*huge` true, asks for
 * transparent huge pages, and leaves `*huge` true only if the OS took the
 * advice (it may still serve small pages). NULL on failure. */
void *cf__pages_map_aligned(size_t size, bool *huge);
void cf__pages_unmap(void *p, size_t size);

/* Backs every page of [p, p + size), fresh from cf__pages_map_aligned and
 * not yet in use, with memory now, as writing to it would. Returns the CPU
 * time this thread spent doing it, in ns (time the thread was preempted
 * does not count). */
int64_t cf__pages_populate(void *p, size_t size);

#endif /* CF_PLATFORM_H */
