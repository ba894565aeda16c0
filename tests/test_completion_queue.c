/* test_completion_queue.c - futures reported through a pollable descriptor.
 *
 * Readiness is checked with poll() and a zero or bounded timeout, never
 * with a sleep: a descriptor that should be readable must be so at once
 * (the completing call has returned), and one that should not must not
 * be. The races run a completer thread against the draining loop.
 */
/* procpool_test.h for its TSan fork warm-up (a process pool test is
 * here); its pool_new is the process pool's, coretest.h's the thread
 * pool's. */
#define pool_new process_pool_new_for_test
#include "procpool_test.h"
#undef pool_new

#include <poll.h>
#include <sys/epoll.h>
#include <sys/select.h>

#include "core/core.h"
#include "coretest.h"

static cf_completion_queue *queue_new(bool use_pipe)
{
    cf_completion_queue *q = NULL;
    ASSERT_OK(cf__completion_queue_open(use_pipe, &q));
    ASSERT(q != NULL);
    ASSERT(cf_completion_queue_fd(q) >= 0);
    return q;
}

/* True if the queue's descriptor is readable within `ms` milliseconds. */
static bool readable(cf_completion_queue *q, int ms)
{
    struct pollfd p = {.fd = cf_completion_queue_fd(q), .events = POLLIN};
    int r;
    do
        r = poll(&p, 1, ms);
    while (r < 0 && errno == EINTR);
    ASSERT(r >= 0);
    return r == 1 && (p.revents & POLLIN);
}

/* Drains into `out`, returning how many. */
static size_t drain(cf_completion_queue *q, cf_future **out, size_t cap)
{
    size_t n = 99999;
    ASSERT_OK(cf_completion_queue_drain(q, out, cap, &n));
    ASSERT(n <= cap);
    return n;
}

static void readable_when_a_future_finishes(bool use_pipe)
{
    cf_completion_queue *q = queue_new(use_pipe);
    cf_future *f = future_new();
    ASSERT_OK(cf_completion_queue_add(q, f));
    ASSERT_EQ(cf_completion_queue_size(q), 1);
    ASSERT(!readable(q, 0));
    cf_future *out[4];
    ASSERT_EQ(drain(q, out, 4), 0);
    ASSERT_OK(cf_future_set_result(f, (void *)7));
    ASSERT(readable(q, 0));
    ASSERT_EQ(drain(q, out, 4), 1);
    ASSERT_PTR_EQ(out[0], f);
    ASSERT_EQ(cf_completion_queue_size(q), 0);
    ASSERT(!readable(q, 0));
    cf_future_release(out[0]);
    cf_future_release(f);
    cf_completion_queue_free(q);
}

TEST(fd_turns_readable_when_a_future_finishes)
{
    readable_when_a_future_finishes(false);
}

TEST(pipe_fd_turns_readable_when_a_future_finishes)
{
    readable_when_a_future_finishes(true);
}

TEST(drain_returns_futures_in_completion_order)
{
    enum { N = 16 };
    cf_completion_queue *q = queue_new(false);
    cf_future *fs[N];
    for (int i = 0; i < N; i++) {
        fs[i] = future_new();
        ASSERT_OK(cf_completion_queue_add(q, fs[i]));
    }
    int order[N];
    for (int i = 0; i < N; i++)
        order[i] = (i * 7 + 3) % N; /* a permutation: 7 is prime to 16 */
    for (int i = 0; i < N; i++)
        ASSERT_OK(cf_future_set_result(fs[order[i]], NULL));
    cf_future *out[N];
    ASSERT_EQ(drain(q, out, N), N);
    for (int i = 0; i < N; i++) {
        ASSERT_PTR_EQ(out[i], fs[order[i]]);
        cf_future_release(out[i]);
        cf_future_release(fs[i]);
    }
    cf_completion_queue_free(q);
}

TEST(cancelled_and_failed_futures_are_reported)
{
    cf_completion_queue *q = queue_new(false);
    cf_future *a = future_new(), *b = future_new();
    ASSERT_OK(cf_completion_queue_add(q, a));
    ASSERT_OK(cf_completion_queue_add(q, b));
    ASSERT(cf_future_cancel(a));
    ASSERT_OK(cf_future_set_exception(b, 5, "boom"));
    cf_future *out[2];
    ASSERT_EQ(drain(q, out, 2), 2);
    ASSERT_PTR_EQ(out[0], a);
    ASSERT(cf_future_cancelled(out[0]));
    ASSERT_PTR_EQ(out[1], b);
    ASSERT_CODE(cf_future_result(out[1], 0, NULL), CF_ETASK);
    for (int i = 0; i < 2; i++)
        cf_future_release(out[i]);
    cf_future_release(a);
    cf_future_release(b);
    cf_completion_queue_free(q);
}

TEST(done_future_is_reported_at_once)
{
    cf_completion_queue *q = queue_new(false);
    cf_future *f = future_done_with((void *)1);
    ASSERT_OK(cf_completion_queue_add(q, f));
    cf_future_release(f); /* the queue holds its own reference */
    ASSERT(readable(q, 0));
    cf_future *out[1];
    ASSERT_EQ(drain(q, out, 1), 1);
    void *v = NULL;
    ASSERT_OK(cf_future_result(out[0], 0, &v));
    ASSERT_EQ((intptr_t)v, 1);
    cf_future_release(out[0]);
    cf_completion_queue_free(q);
}

TEST(future_added_twice_is_reported_twice)
{
    cf_completion_queue *q = queue_new(false);
    cf_future *f = future_new();
    ASSERT_OK(cf_completion_queue_add(q, f));
    ASSERT_OK(cf_completion_queue_add(q, f));
    ASSERT_OK(cf_future_set_result(f, NULL));
    cf_future *out[4];
    ASSERT_EQ(drain(q, out, 4), 2);
    ASSERT_PTR_EQ(out[0], f);
    ASSERT_PTR_EQ(out[1], f);
    cf_future_release(out[0]);
    cf_future_release(out[1]);
    cf_future_release(f);
    cf_completion_queue_free(q);
}

/* Level-triggered use: a drain that leaves futures behind leaves the
 * descriptor readable. */
TEST(partial_drain_keeps_fd_readable)
{
    enum { N = 10 };
    cf_completion_queue *q = queue_new(false);
    cf_future *fs[N];
    for (int i = 0; i < N; i++) {
        fs[i] = future_new();
        ASSERT_OK(cf_completion_queue_add(q, fs[i]));
        ASSERT_OK(cf_future_set_result(fs[i], NULL));
    }
    size_t total = 0;
    while (readable(q, 0)) {
        cf_future *out[3];
        size_t n = drain(q, out, 3);
        for (size_t i = 0; i < n; i++)
            ASSERT_PTR_EQ(out[i], fs[total + i]);
        for (size_t i = 0; i < n; i++)
            cf_future_release(out[i]);
        total += n;
        ASSERT(total <= N);
    }
    ASSERT_EQ(total, N);
    for (int i = 0; i < N; i++)
        cf_future_release(fs[i]);
    cf_completion_queue_free(q);
}

TEST(free_releases_futures_not_drained)
{
    cf_completion_queue *q = queue_new(false);
    cf_future *pending = future_new(), *done = future_new();
    ASSERT_OK(cf_completion_queue_add(q, pending));
    ASSERT_OK(cf_completion_queue_add(q, done));
    ASSERT_OK(cf_future_set_result(done, NULL));
    cf_completion_queue_free(q);
    /* The queue is gone: completing the other future must not touch it
     * (ASan and valgrind check), and it is not cancelled. */
    ASSERT(!cf_future_done(pending));
    ASSERT_OK(cf_future_set_result(pending, NULL));
    cf_future_release(pending);
    cf_future_release(done);
}

TEST(bad_arguments_are_refused)
{
    cf_completion_queue *q = queue_new(false);
    cf_future *f = future_new();
    cf_future *out[1];
    size_t n = 42;
    ASSERT_CODE(cf_completion_queue_new(NULL), CF_EINVAL);
    ASSERT_CODE(cf_completion_queue_fd(NULL), CF_EINVAL);
    ASSERT_CODE(cf_completion_queue_add(NULL, f), CF_EINVAL);
    ASSERT_CODE(cf_completion_queue_add(q, NULL), CF_EINVAL);
    ASSERT_CODE(cf_completion_queue_drain(NULL, out, 1, &n), CF_EINVAL);
    ASSERT_CODE(cf_completion_queue_drain(q, NULL, 1, &n), CF_EINVAL);
    ASSERT_CODE(cf_completion_queue_drain(q, out, 0, &n), CF_EINVAL);
    ASSERT_CODE(cf_completion_queue_drain(q, out, 1, NULL), CF_EINVAL);
    ASSERT_EQ(n, 42);
    ASSERT_EQ(cf_completion_queue_size(NULL), 0);
    cf_completion_queue_free(NULL);
    cf_future_release(f);
    cf_completion_queue_free(q);
}

/* ------------------------------------------------------------------------ */
/* Races                                                                    */

typedef struct race {
    cf_future **fs;
    size_t n;
    atomic_size_t released; /* futures the loop has added so far */
} race;

/* Completes each future as soon as the loop has added it, so completions
 * land at every point of the loop's drain. */
static void *complete_each(helper *h)
{
    race *r = h->ctx;
    for (size_t i = 0; i < r->n; i++) {
        /* Yields: on a busy machine the loop may share this CPU. */
        for (unsigned spins = 0; atomic_load(&r->released) <= i; spins++)
            if (spins > 16)
                cf__yield();
        cf_future_set_result(r->fs[i], (void *)(intptr_t)i);
    }
    return NULL;
}

/* The loop adds one future, then waits for the descriptor (5 s limit:
 * a lost wake-up fails instead of hanging) and drains until it has it,
 * while the completer finishes the future at any moment: before the
 * drain, during it, or after it. Every future must come out once. */
static void completion_during_drain(bool use_pipe)
{
    size_t n = harness_scaled(20000, 500);
    cf_completion_queue *q = queue_new(use_pipe);
    race r = {.fs = calloc(n, sizeof(cf_future *)), .n = n};
    ASSERT(r.fs != NULL);
    for (size_t i = 0; i < n; i++)
        r.fs[i] = future_new();
    helper h;
    helper_start(&h, complete_each, &r);
    size_t spurious = 0, first = 0;
    for (size_t i = 0; i < n; i++) {
        ASSERT_OK(cf_completion_queue_add(q, r.fs[i]));
        atomic_store(&r.released, i + 1);
        /* A varying head start, so that the completion falls before,
         * inside and after the drain below. */
        for (unsigned k = 0; k < (i * 37) % 400; k++)
            cf__cpu_relax();
        cf_future *out[2];
        size_t got = drain(q, out, 2); /* races the completion */
        first += got;
        while (got == 0) {
            if (!readable(q, 5000))
                harness_fail(__FILE__, __LINE__,
                             "lost wake-up: future %zu done=%d", i,
                             (int)cf_future_done(r.fs[i]));
            got = drain(q, out, 2);
            spurious += got == 0;
        }
        ASSERT_EQ(got, 1);
        ASSERT_PTR_EQ(out[0], r.fs[i]);
        cf_future_release(out[0]);
        /* Nothing left: the descriptor may be stale once, never twice. */
        if (readable(q, 0)) {
            ASSERT_EQ(drain(q, out, 2), 0);
            ASSERT(!readable(q, 0));
        }
    }
    helper_join(&h);
    printf("%zu futures, %zu taken by the racing drain, %zu empty "
           "wake-ups\n", n, first, spurious);
    for (size_t i = 0; i < n; i++)
        cf_future_release(r.fs[i]);
    free(r.fs);
    cf_completion_queue_free(q);
}

TEST_TIMEOUT(completion_during_drain_is_never_lost, 120)
{
    completion_during_drain(false);
}

TEST_TIMEOUT(pipe_completion_during_drain_is_never_lost, 120)
{
    completion_during_drain(true);
}

/* Futures of a thread pool finishing in bursts while an epoll loop drains
 * them, level-triggered or edge-triggered. */
static void epoll_loop_sees_every_future(bool edge, bool use_pipe)
{
    size_t n = harness_scaled(50000, 1000);
    cf_executor *ex = pool_new(2);
    cf_completion_queue *q = queue_new(use_pipe);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    ASSERT(ep >= 0);
    struct epoll_event ev = {.events = EPOLLIN | (edge ? EPOLLET : 0)};
    ASSERT_EQ(epoll_ctl(ep, EPOLL_CTL_ADD, cf_completion_queue_fd(q), &ev), 0);
    for (size_t i = 0; i < n; i++) {
        cf_future *f = submit(ex, task_identity, (void *)(intptr_t)(i + 1));
        ASSERT_OK(cf_completion_queue_add(q, f));
        cf_future_release(f);
    }
    char *seen = calloc(n + 1, 1);
    ASSERT(seen != NULL);
    size_t total = 0;
    while (total < n) {
        struct epoll_event got;
        int r = epoll_wait(ep, &got, 1, 5000);
        if (r < 0 && errno == EINTR)
            continue;
        ASSERT_EQ(r, 1); /* 0: a lost wake-up */
        size_t k;
        do {
            cf_future *out[16];
            k = drain(q, out, 16);
            for (size_t i = 0; i < k; i++) {
                void *v = NULL;
                ASSERT_OK(cf_future_result(out[i], 0, &v));
                size_t id = (size_t)(intptr_t)v;
                ASSERT(id >= 1 && id <= n && !seen[id]);
                seen[id] = 1;
                cf_future_release(out[i]);
            }
            total += k;
        } while (edge && k == 16); /* edge: drain until short */
    }
    ASSERT_EQ(cf_completion_queue_size(q), 0);
    free(seen);
    close(ep);
    cf_completion_queue_free(q);
    cf_executor_free(ex);
}

TEST(level_triggered_epoll_sees_every_future)
{
    epoll_loop_sees_every_future(false, false);
}

TEST(edge_triggered_epoll_sees_every_future)
{
    epoll_loop_sees_every_future(true, false);
}

TEST(edge_triggered_epoll_on_pipe_sees_every_future)
{
    epoll_loop_sees_every_future(true, true);
}

TEST(select_sees_every_future)
{
    enum { N = 200 };
    cf_executor *ex = pool_new(2);
    cf_completion_queue *q = queue_new(false);
    int fd = cf_completion_queue_fd(q);
    ASSERT(fd < FD_SETSIZE);
    for (int i = 0; i < N; i++) {
        cf_future *f = submit(ex, task_identity, NULL);
        ASSERT_OK(cf_completion_queue_add(q, f));
        cf_future_release(f);
    }
    size_t total = 0;
    while (total < N) {
        fd_set rd;
        FD_ZERO(&rd);
        FD_SET(fd, &rd);
        struct timeval tv = {.tv_sec = 5};
        int r = select(fd + 1, &rd, NULL, NULL, &tv);
        if (r < 0 && errno == EINTR)
            continue;
        ASSERT_EQ(r, 1);
        cf_future *out[8];
        size_t k = drain(q, out, 8);
        for (size_t i = 0; i < k; i++)
            cf_future_release(out[i]);
        total += k;
    }
    ASSERT_EQ(total, N);
    cf_completion_queue_free(q);
    cf_executor_free(ex);
}

typedef struct adder {
    cf_completion_queue *q;
    cf_executor *ex;
    size_t n;
} adder;

static void *add_many(helper *h)
{
    adder *a = h->ctx;
    for (size_t i = 0; i < a->n; i++) {
        cf_future *f = submit(a->ex, task_empty, NULL);
        ASSERT_OK(cf_completion_queue_add(a->q, f));
        cf_future_release(f);
    }
    return NULL;
}

TEST(completions_from_many_threads_during_drain_are_never_lost)
{
    enum { THREADS = 3 };
    size_t per = harness_scaled(20000, 500);
    cf_executor *ex = pool_new(2);
    cf_completion_queue *q = queue_new(false);
    adder a = {q, ex, per};
    helper hs[THREADS];
    for (int i = 0; i < THREADS; i++)
        helper_start(&hs[i], add_many, &a);
    size_t total = 0;
    while (total < THREADS * per) {
        if (!readable(q, 5000))
            harness_fail(__FILE__, __LINE__, "lost wake-up at %zu", total);
        cf_future *out[32];
        size_t k = drain(q, out, 32);
        for (size_t i = 0; i < k; i++) {
            ASSERT(cf_future_done(out[i]));
            cf_future_release(out[i]);
        }
        total += k;
    }
    for (int i = 0; i < THREADS; i++)
        helper_join(&hs[i]);
    ASSERT_EQ(total, THREADS * per);
    if (readable(q, 0)) { /* stale once at most */
        cf_future *out[1];
        ASSERT_EQ(drain(q, out, 1), 0);
        ASSERT(!readable(q, 0));
    }
    cf_completion_queue_free(q);
    cf_executor_free(ex);
}

static void *plus_one(void *arg, cf_call *call)
{
    (void)call;
    return (void *)((intptr_t)arg + 1);
}

TEST_TIMEOUT(process_pool_futures_are_reported, 60)
{
    enum { N = 50 };
    cf_process_pool_options o = {.max_workers = 2};
    cf_executor *ex = NULL;
    ASSERT_OK(cf_process_pool_new(&o, &ex));
    cf_completion_queue *q = queue_new(false);
    for (intptr_t i = 0; i < N; i++) {
        cf_future *f = NULL;
        ASSERT_OK(cf_executor_submit(ex, plus_one, (void *)i, &f));
        ASSERT_OK(cf_completion_queue_add(q, f));
        cf_future_release(f);
    }
    intptr_t sum = 0;
    size_t total = 0;
    while (total < N) {
        ASSERT(readable(q, 10000));
        cf_future *out[8];
        size_t k = drain(q, out, 8);
        for (size_t i = 0; i < k; i++) {
            void *v = NULL;
            ASSERT_OK(cf_future_result(out[i], 0, &v));
            sum += (intptr_t)v;
            cf_future_release(out[i]);
        }
        total += k;
    }
    ASSERT_EQ(sum, N * (N + 1) / 2);
    cf_completion_queue_free(q);
    cf_executor_free(ex);
}
