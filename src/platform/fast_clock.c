/* fast_clock.c - a cheap clock for timing short intervals (task queue
 * waits and run times, monitor.c).
 *
 * Design: clock_gettime(CLOCK_MONOTONIC) costs 20-60 ns (60 on a VM's
 * kvm-clock), and a monitored task reads a clock three times. Where the
 * CPU has an invariant time-stamp counter (x86-64: constant rate across
 * power states, as the kernel's own clock assumes), reading it costs a
 * quarter of that. Its rate is measured once, on first use, against
 * CLOCK_MONOTONIC over at least 2 ms, longer until the clock reads at
 * both ends make an error under 1e-3 (see calibrate()), and ticks are
 * scaled by it in fixed point (ns per tick << 32). Intervals only: the
 * epoch is the first use, not CLOCK_MONOTONIC's, and the two drift apart
 * by that error. Elsewhere, or without an invariant counter, it is
 * cf__now_ns(). The read itself, cf__fast_now_ns(), is inline in
 * platform.h: a call would be a third of its cost.
 */
#include "platform/platform.h"

#include <pthread.h>
#include <time.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#include <x86intrin.h>
#define HAVE_TSC 1
#endif

static pthread_once_t once = PTHREAD_ONCE_INIT;
cf__fast_clock_scale cf__fast_clock; /* read by cf__fast_now_ns() */

#ifdef HAVE_TSC
/* CPUID 0x80000007, EDX bit 8: the counter's rate is invariant. */
static bool tsc_invariant(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(0x80000000, &a, &b, &c, &d) || a < 0x80000007)
        return false;
    __get_cpuid(0x80000007, &a, &b, &c, &d);
    return (d >> 8) & 1;
}
#endif

#ifdef HAVE_TSC
/* One reading of both clocks: the counter between two reads of the
 * system clock, dated at their midpoint. Returns the gap between those
 * two reads, the reading's uncertainty: a thread preempted there (a busy
 * machine) shows a large one, so of several tries the tightest counts. */
static int64_t read_both(int64_t *ns, uint64_t *ticks)
{
    int64_t best = INT64_MAX;
    for (int i = 0; i < 8; i++) {
        int64_t a = cf__now_ns();
        uint64_t c = __rdtsc();
        int64_t b = cf__now_ns();
        if (b - a < best) {
            best = b - a;
            *ns = a + (b - a) / 2;
            *ticks = c;
        }
    }
    return best;
}
#endif

/* The rate over a span of at least 2 ms, longer while the two readings'
 * uncertainty is more than 1e-3 of it (a preempted reading, or valgrind,
 * where a reading takes microseconds): a counter's rate misread by a
 * preemption at one end shortened every interval (a 1 ms task measured
 * under 1 ms). The thread sleeps meanwhile: the counter runs on. Past
 * 256 ms without a good reading, the counter is not used. */
static void calibrate(void)
{
#ifdef HAVE_TSC
    if (!tsc_invariant())
        return;
    int64_t t0 = 0, t1 = 0;
    uint64_t c0 = 0, c1 = 0;
    int64_t gap0 = read_both(&t0, &c0);
    for (int64_t span = 2000000;; span *= 2) {
        int64_t left;
        while ((left = t0 + span - cf__now_ns()) > 0) {
            struct timespec ts = {0, (long)left};
            nanosleep(&ts, NULL);
        }
        int64_t gap1 = read_both(&t1, &c1);
        if ((gap0 + gap1) * 1000 <= t1 - t0)
            break;
        if (span >= 256000000)
            return;
    }
    if (c1 <= c0)
        return;
    cf__fast_clock.base_ticks = c0;
    cf__fast_clock.ns_per_tick_q32 =
        (uint64_t)(((double)(t1 - t0) / (double)(c1 - c0)) * 4294967296.0);
#endif
}

void cf__fast_clock_init(void)
{
    pthread_once(&once, calibrate);
}
