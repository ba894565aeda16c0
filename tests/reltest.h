/* reltest.h - helpers for the reliability tests (fork, signals, faults,
 * races, bad input, soak).
 *
 * The reliability tests check what a user cannot see from the API alone: a
 * child process that must not hang, a resource that must come back, a wait
 * that must last exactly as long as asked. These helpers run a body in a
 * forked child under a deadline (so a deadlock in the child fails the test
 * instead of hanging it), read the resident set size, and tell sanitizer
 * and valgrind builds apart, where memory figures and some limits mean
 * little.
 */
#ifndef CF_RELTEST_H
#define CF_RELTEST_H

/* Include first: kill(), syscall() and friends need it. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "coretest.h"

/* TSan kills a multithreaded process's child that starts threads, by
 * default. The fork tests do exactly that on purpose (a new pool in the
 * child), so they turn it off; glibc's fork makes the child's malloc and
 * the library's own state safe to use. */
#if defined(__SANITIZE_THREAD__)
#define RELTEST_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define RELTEST_TSAN 1
#endif
#endif
#ifndef RELTEST_TSAN
#define RELTEST_TSAN 0
#endif

#if defined(__SANITIZE_ADDRESS__)
#define RELTEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define RELTEST_ASAN 1
#endif
#endif
#ifndef RELTEST_ASAN
#define RELTEST_ASAN 0
#endif


/* How a child ended, for reltest_wait_child(). */
enum {
    CHILD_HUNG = -1, /* still running at the deadline: killed */
};

/* Waits for `pid` until `seconds` pass. Returns its exit status (0..255),
 * 128 + the signal that killed it, or CHILD_HUNG (then it was SIGKILLed
 * and reaped). */
static inline int reltest_wait_child(pid_t pid, double seconds)
{
    double deadline = harness_now() + seconds;
    for (;;) {
        int status;
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) {
            if (WIFEXITED(status))
                return WEXITSTATUS(status);
            return 128 + WTERMSIG(status);
        }
        if (r < 0 && errno != EINTR)
            return 255;
        if (harness_now() > deadline) {
            kill(pid, SIGKILL);
            while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
                ;
            return CHILD_HUNG;
        }
        harness_pause();
    }
}


/* Runs `body(ctx)` in a forked child, which exits with its return value
 * (harness asserts in the child exit 1). Returns as reltest_wait_child(). */
static inline int reltest_in_child(int (*body)(void *), void *ctx,
                                   double seconds)
{
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0)
        harness_child_exit(body(ctx));
    return reltest_wait_child(pid, seconds);
}

#define ASSERT_CHILD_OK(rc)                                               \
    do {                                                                  \
        int rc_ = (rc);                                                   \
        if (rc_ != 0)                                                     \
            harness_fail(__FILE__, __LINE__, "child %s (status %d)",      \
                         rc_ == CHILD_HUNG ? "hung" : "failed", rc_);     \
    } while (0)

/* One step of a busy-wait loop: a CPU pause, and a yield now and then so
 * that on a small machine the thread we wait for gets to run. */
static inline void reltest_spin(unsigned *spins)
{
    if ((++*spins & 63) == 0) {
        sched_yield();
        return;
    }
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* Resident set size of this process in bytes (0 if unknown). */
static inline size_t reltest_rss(void)
{
    FILE *fp = fopen("/proc/self/statm", "r");
    if (!fp)
        return 0;
    unsigned long size = 0, resident = 0;
    int n = fscanf(fp, "%lu %lu", &size, &resident);
    fclose(fp);
    return n == 2 ? (size_t)resident * (size_t)sysconf(_SC_PAGESIZE) : 0;
}

/* Elapsed-time tolerance for "returns neither early nor late": generous,
 * because the machine is shared and sanitizers slow everything. */
static inline double reltest_late_tolerance(void)
{
    double t = 0.25;
    if (CORETEST_SANITIZED || RELTEST_TSAN)
        t *= 4;
    if (harness_under_valgrind())
        t *= 8;
    return t;
}

#endif
