/* then.c - what a continuation hop costs next to a submit, on the same
 * one-worker thread pool, in the same program.
 *
 *     bench_then MODE [N=1000000] [ROUNDS=1]
 *
 * ROUNDS > 1 runs N hops ROUNDS times (ns_per_hop is per hop of all of
 * them): with a small N, memory is reused from round to round, so the
 * figure leaves out the first touch of fresh memory that dominates a
 * million hops outstanding at once.
 * Independent hops (W1's shape: N tasks, then wait for all):
 *   submit        N x cf_executor_submit(noop)
 *   then_pending  N x cf_future_then(root, pool, noop) on a pending bare
 *                 future, then complete it: its callbacks submit them all
 *   then_done     N x cf_future_then(done, pool, noop): each submits at once
 *   callback      N done-callbacks on a pending bare future, each of which
 *                 submits noop when it runs: then done by hand, the way to
 *                 chain without cf_future_then
 * Dependent hops (a chain: each task needs the previous result):
 *   chain_submit  submit, wait for the result, submit the next (W2's shape)
 *   chain_then    N continuations each on the previous, on the pool, then
 *                 complete the root and wait for the end: no thread waits
 *   chain_inline  the same chain with inline continuations
 *   chain_callback the same chain by hand: each task's done-callback
 *                 submits the next task and adds itself to its future
 * The clock covers creating the hops, running them and releasing them;
 * run_ns_per_hop leaves out building a then chain (before its root
 * completes), the cost of one hop once its input is done.
 */
#include "cfutures.h"

#include "bench.h"

static void *noop(void *arg, cf_call *call)
{
    (void)call;
    return arg;
}

static void *add_one(void *arg, cf_call *call)
{
    (void)call;
    return (void *)((intptr_t)arg + 1);
}

/* Waits for each future in turn (what cf_wait(ALL_COMPLETED) does, less
 * its check for duplicates, whose cost depends on where in memory the
 * futures happen to lie) and releases it. */
static void wait_release_all(cf_future **fs, long n)
{
    for (long i = 0; i < n; i++) {
        BENCH_CHECK(cf_future_result(fs[i], CF_FOREVER, NULL));
        cf_future_release(fs[i]);
    }
}

/* The hand-made continuation: a done-callback that submits. */
typedef struct by_hand {
    cf_executor *ex;
    cf_future **slot;
} by_hand;

static int submit_when_done(cf_future *f, void *arg)
{
    by_hand *h = arg;
    (void)f;
    return cf_executor_submit(h->ex, noop, NULL, h->slot);
}

/* N independent hops; returns the elapsed ns. */
static int64_t independent(cf_executor *ex, const char *mode, long n,
                           cf_future **fs)
{
    cf_future *root;
    BENCH_CHECK(cf_future_new(&root));
    if (strcmp(mode, "then_done") == 0)
        BENCH_CHECK(cf_future_set_result(root, NULL));
    by_hand *hands = NULL;
    if (strcmp(mode, "callback") == 0)
        hands = bench_xmalloc((size_t)n * sizeof *hands);
    bool submits = strcmp(mode, "submit") == 0;
    int64_t t0 = bench_now_ns();
    /* One loop per mode, so that no mode pays for the others' tests. */
    if (submits) {
        for (long i = 0; i < n; i++)
            BENCH_CHECK(cf_executor_submit(ex, noop, NULL, &fs[i]));
    } else if (hands) {
        for (long i = 0; i < n; i++) {
            hands[i] = (by_hand){ex, &fs[i]};
            BENCH_CHECK(cf_future_add_done_callback(root, submit_when_done,
                                                    &hands[i]));
        }
    } else {
        for (long i = 0; i < n; i++)
            BENCH_CHECK(cf_future_then(root, ex, noop, &fs[i]));
    }
    if (strcmp(mode, "then_pending") == 0 || hands)
        BENCH_CHECK(cf_future_set_result(root, NULL));
    wait_release_all(fs, n);
    int64_t elapsed = bench_now_ns() - t0;
    cf_future_release(root);
    free(hands);
    return elapsed;
}

/* The hand-made chain: a done-callback that submits the next step. */
typedef struct by_hand_chain {
    cf_executor *ex;
    long left;
    cf_future *last; /* done when the chain is */
} by_hand_chain;

static int next_step(cf_future *f, void *arg)
{
    by_hand_chain *c = arg;
    void *v = NULL;
    cf_future *g;
    if (cf_future_result(f, 0, &v) != CF_OK)
        return 1;
    cf_future_release(f); /* the chain's reference to this step */
    if (--c->left == 0)
        return cf_future_set_result(c->last, v);
    int rc = cf_executor_submit(c->ex, add_one, v, &g);
    return rc ? rc : cf_future_add_done_callback(g, next_step, c);
}

/* Of a then chain's time, the part spent building it (the rest is the
 * hops themselves, once the root completes). */
static int64_t build_ns;

/* A chain of N dependent hops; returns the elapsed ns. */
static int64_t chain(cf_executor *ex, const char *mode, long n)
{
    void *value = NULL;
    int64_t t0 = bench_now_ns();
    if (strcmp(mode, "chain_callback") == 0) {
        by_hand_chain c = {ex, n, NULL};
        cf_future *first;
        BENCH_CHECK(cf_future_new(&c.last));
        BENCH_CHECK(cf_executor_submit(ex, add_one, NULL, &first));
        BENCH_CHECK(cf_future_add_done_callback(first, next_step, &c));
        BENCH_CHECK(cf_future_result(c.last, CF_FOREVER, &value));
        cf_future_release(c.last);
    } else if (strcmp(mode, "chain_submit") == 0) {
        for (long i = 0; i < n; i++) {
            cf_future *f;
            BENCH_CHECK(cf_executor_submit(ex, add_one, value, &f));
            BENCH_CHECK(cf_future_result(f, CF_FOREVER, &value));
            cf_future_release(f);
        }
    } else {
        cf_executor *hop = strcmp(mode, "chain_inline") == 0 ? NULL : ex;
        cf_future *root, *prev;
        BENCH_CHECK(cf_future_new(&root));
        prev = cf_future_retain(root);
        for (long i = 0; i < n; i++) {
            cf_future *next;
            BENCH_CHECK(cf_future_then(prev, hop, add_one, &next));
            cf_future_release(prev);
            prev = next;
        }
        build_ns += bench_now_ns() - t0;
        BENCH_CHECK(cf_future_set_result(root, NULL));
        BENCH_CHECK(cf_future_result(prev, CF_FOREVER, &value));
        cf_future_release(prev);
        cf_future_release(root);
    }
    int64_t elapsed = bench_now_ns() - t0;
    if ((intptr_t)value != n)
        bench_die("%s: chain ended at %ld, not %ld", mode,
                  (long)(intptr_t)value, n);
    return elapsed;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        bench_die("usage: bench_then MODE [N]");
    const char *mode = argv[1];
    long n = bench_arg(argc, argv, 2, 1000000);
    long rounds = bench_arg(argc, argv, 3, 1);
    cf_executor *ex = bench_thread_pool(1);
    cf_future **fs = bench_xmalloc((size_t)n * sizeof *fs);
    bool is_chain = strncmp(mode, "chain_", 6) == 0;
    if (!is_chain && strcmp(mode, "submit") != 0 &&
        strcmp(mode, "then_pending") != 0 && strcmp(mode, "then_done") != 0 &&
        strcmp(mode, "callback") != 0)
        bench_die("unknown mode '%s'", mode);

    /* Warm up: the worker started, the slabs mapped. */
    if (is_chain)
        chain(ex, mode, n / 10 + 1);
    else
        independent(ex, mode, n / 10 + 1, fs);
    int64_t sys0 = bench_sys_ns();
    int64_t elapsed = 0;
    build_ns = 0;
    for (long r = 0; r < rounds; r++)
        elapsed += is_chain ? chain(ex, mode, n) : independent(ex, mode, n, fs);
    int64_t sys = bench_sys_ns() - sys0;
    double hops = (double)n * (double)rounds;
    printf("then %s n=%ld rounds=%ld ns_per_hop=%.1f run_ns_per_hop=%.1f "
           "sys_ns_per_hop=%.1f\n",
           mode, n, rounds, (double)elapsed / hops,
           (double)(elapsed - build_ns) / hops, (double)sys / hops);
    free(fs);
    cf_executor_free(ex);
    return 0;
}
