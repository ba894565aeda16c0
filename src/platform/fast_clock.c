/* fast_clock.c - a cheap clock for timing short intervals (task queue
 * waits and run times, monitor.c).
 *
 * Design: clock_gettime(CLOCK_MONOTONIC) costs 20-60 ns (60 on a VM's
 * kvm-clock), and a monitored task reads a clock three times. Where the
 * CPU has an invariant time-stamp counter (x86-64: constant rate across
 * power states, as the kernel's own clock assumes), reading it costs a
 * quarter of that. Its rate is measured once, on first use, against
 * CLOCK_MONOTONIC over at least 2 ms (an error of about 1e-4 from the
 * clock reads at both ends), and ticks are scaled by it in fixed point
 * (ns per tick << 32). Intervals only: the epoch is the first use, not
 * CLOCK_MONOTONIC's, and the two drift apart by that error. Elsewhere,
 * or without an invariant counter, it is cf__now_ns(). The read itself,
 * cf__fast_now_ns(), is inline in platform.h: a call would be a third of
 * its cost.
 */
#include "platform/platform.h"

#include <pthread.h>

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

static void calibrate(void)
{
#ifdef HAVE_TSC
    if (!tsc_invariant())
        return;
    int64_t t0 = cf__now_ns();
    uint64_t c0 = __rdtsc();
    int64_t t1;
    uint64_t c1;
    do {
        t1 = cf__now_ns();
        c1 = __rdtsc();
    } while (t1 - t0 < 2000000);
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
