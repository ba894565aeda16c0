/* faulttest.h - the sweep that drives a workload through every fault.
 *
 * sweep() runs `workload` with the Nth call of a class failing, for
 * N = 1, 2, ... until a run in which the fault did not fire (the workload
 * made fewer than N such calls). After every run it checks that the
 * workload released every allocation it made; the harness checks threads,
 * descriptors and children after the test. A hang fails by the test's time
 * limit; a crash fails by itself.
 */
#ifndef CF_FAULTTEST_H
#define CF_FAULTTEST_H

#include "reltest.h"

#include "fault.h"

/* Asserts that `rc` is one of the listed codes. */
#define ASSERT_ONE_OF(rc, ...)                                               \
    do {                                                                     \
        int rc_ = (rc), ok_[] = {__VA_ARGS__};                               \
        bool found_ = false;                                                 \
        for (size_t k_ = 0; k_ < sizeof ok_ / sizeof *ok_; k_++)             \
            found_ = found_ || rc_ == ok_[k_];                               \
        if (!found_)                                                         \
            harness_fail(__FILE__, __LINE__, "%s: unexpected %s (%d)", #rc, \
                         cf_err_name(rc_), rc_);                             \
    } while (0)

typedef struct sweep_stats {
    long runs;      /* runs with the fault fired */
    long max_calls; /* most calls of the class seen in one run */
} sweep_stats;

/* Under CF_TEST_SCALE < 1 (valgrind, slow sanitizers) the sweep takes
 * every k-th N, k = 1 / scale, still ending where the faults stop. */
static inline long sweep_stride(void)
{
    size_t hundred = harness_scaled(100, 1);
    return hundred >= 100 ? 1 : (long)(100 / hundred);
}

/* `limit` bounds N, so a workload whose call count grows without end
 * fails instead of looping. */
static inline sweep_stats sweep(unsigned cls, enum fault_mode mode, int err,
                                void (*workload)(void *), void *ctx,
                                long limit)
{
    sweep_stats st = {0, 0};
    long base = fault_live_allocs(), stride = sweep_stride();
    for (long n = 1;; n += stride) {
        if (n > limit)
            harness_fail(__FILE__, __LINE__,
                         "sweep: still firing at N = %ld", n);
        fault_arm(cls, n, mode, err);
        workload(ctx);
        long calls = fault_disarm();
        bool fired = fault_fired();
        if (calls > st.max_calls)
            st.max_calls = calls;
        long live = fault_live_allocs();
        if (live != base)
            harness_fail(__FILE__, __LINE__,
                         "sweep N = %ld (mode %d): %ld allocations leaked",
                         n, (int)mode, live - base);
        if (!fired)
            break;
        st.runs++;
    }
    return st;
}

#endif
