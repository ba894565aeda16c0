/* harness.h - the glue between test files and ctest.
 *
 * TEST(name) { ... } defines a test; TEST_TIMEOUT(name, seconds) one with
 * its own time limit. tests/CMakeLists.txt finds them in the source and
 * registers each as a ctest test running `test_<area> <name>` in its own
 * process. Run a program with no argument to run all its tests in turn,
 * or with --list to list them.
 *
 * After each test the harness checks that the test left no thread, no
 * child process and no file descriptor behind it.
 */
#ifndef CF_TEST_HARNESS_H
#define CF_TEST_HARNESS_H

#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cfutures.h"

typedef void (*harness_fn)(void);
void harness_register(const char *name, harness_fn fn);

#define TEST(name)                                                   \
    static void test_##name(void);                                   \
    __attribute__((constructor)) static void register_##name(void)   \
    {                                                                \
        harness_register(#name, test_##name);                        \
    }                                                                \
    static void test_##name(void)

/* The seconds argument is read by CMake; C ignores it. */
#define TEST_TIMEOUT(name, seconds) TEST(name)

void harness_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 3, 4)));

/* Has `fn` run once when the test fails, before its process exits, in the
 * process that set it (not in a forked child): fixtures clean up after
 * themselves. One hook at a time; NULL removes it. */
void harness_on_fail(void (*fn)(void));

#define ASSERT(cond)                                                     \
    do {                                                                 \
        if (!(cond))                                                     \
            harness_fail(__FILE__, __LINE__, "assertion failed: %s",     \
                         #cond);                                         \
    } while (0)

#define ASSERT_EQ(a, b)                                                  \
    do {                                                                 \
        intmax_t a_ = (intmax_t)(a), b_ = (intmax_t)(b);                 \
        if (a_ != b_)                                                    \
            harness_fail(__FILE__, __LINE__,                             \
                         "%s == %s: %" PRIdMAX " != %" PRIdMAX, #a, #b,  \
                         a_, b_);                                        \
    } while (0)

#define ASSERT_NE(a, b)                                                  \
    do {                                                                 \
        intmax_t a_ = (intmax_t)(a), b_ = (intmax_t)(b);                 \
        if (a_ == b_)                                                    \
            harness_fail(__FILE__, __LINE__, "%s != %s: both %" PRIdMAX, \
                         #a, #b, a_);                                    \
    } while (0)

/* Compares cfutures codes and prints their names. */
#define ASSERT_CODE(a, b)                                                \
    do {                                                                 \
        int a_ = (a), b_ = (b);                                          \
        if (a_ != b_)                                                    \
            harness_fail(__FILE__, __LINE__, "%s == %s: %s (%d) != %s (%d)", \
                         #a, #b, cf_err_name(a_), a_, cf_err_name(b_), b_);  \
    } while (0)

#define ASSERT_OK(expr) ASSERT_CODE((expr), CF_OK)

#define ASSERT_PTR_EQ(a, b)                                              \
    do {                                                                 \
        const void *a_ = (a), *b_ = (b);                                 \
        if (a_ != b_)                                                    \
            harness_fail(__FILE__, __LINE__, "%s == %s: %p != %p", #a,   \
                         #b, a_, b_);                                    \
    } while (0)

#define ASSERT_STR_EQ(a, b)                                              \
    do {                                                                 \
        const char *a_ = (a), *b_ = (b);                                 \
        if (!a_ || !b_ || strcmp(a_, b_) != 0)                           \
            harness_fail(__FILE__, __LINE__, "%s == %s: \"%s\" != \"%s\"", \
                         #a, #b, a_ ? a_ : "(null)", b_ ? b_ : "(null)"); \
    } while (0)

/* Sizes for stress tests, scaled by $CF_TEST_SCALE (default 1; CI lowers it
 * under valgrind). Never below `min`. */
size_t harness_scaled(size_t n, size_t min);

/* How many times slower than a plain build this one runs (the build's
 * CF_TEST_TIMEOUT_SCALE: sanitizers, valgrind). A test whose task must
 * finish within a time limit (not one that must overrun it) scales the
 * limit by this, so a slow build or a loaded machine does not fail it. */
double harness_slowdown(void);

/* Seconds of monotonic time, for deadlines in polling loops. */
double harness_now(void);

/* A latch: tasks block on it until the test opens it. Gate tasks on a latch
 * rather than sleeping. */
typedef struct latch {
    pthread_mutex_t mutex;
    pthread_cond_t cond;
    int open;
    int arrived; /* how many threads reached latch_wait */
} latch;

void latch_init(latch *l);
void latch_destroy(latch *l);
void latch_open(latch *l);
void latch_wait(latch *l);
/* Waits until `n` threads are blocked in latch_wait (or have passed it). */
void latch_wait_arrived(latch *l, int n);

/* Polls `cond` until true or `seconds` pass; fails the test on timeout. */
#define WAIT_UNTIL(cond, seconds)                                        \
    do {                                                                 \
        double deadline_ = harness_now() + (seconds);                    \
        while (!(cond)) {                                                \
            if (harness_now() > deadline_)                               \
                harness_fail(__FILE__, __LINE__, "timed out waiting: %s", \
                             #cond);                                     \
            harness_pause();                                             \
        }                                                                \
    } while (0)

/* Yields the CPU briefly inside a polling loop (not a sleep to "wait" for
 * a thread: the loop re-checks a condition with a deadline). */
void harness_pause(void);

/* Counts for leak checks: open descriptors, threads of this process. */
int harness_count_fds(void);
int harness_count_threads(void);

/* True under valgrind (its preload library is in the environment). */
bool harness_under_valgrind(void);

/* Ends a forked child with `status`. Under valgrind, memory the child
 * inherited from threads that only exist in the parent (their futures, a
 * queue they were filling) is unreachable in the child, and valgrind's
 * leak check at the child's exit would report it as lost although nothing
 * leaked. So there the child replaces itself with a shell that exits with
 * the same status: no leak check of the abandoned image. */
_Noreturn void harness_child_exit(int status);

/* Skip the automatic end-of-test leak check (for tests that fork children
 * the harness cannot see the end of, which should be none). */
void harness_skip_leak_check(void);

#endif
