/* wait.c - cf_wait() and cf_as_completed: waiting on many futures.
 *
 * Design: one waiter per call, one wait node per distinct future, installed
 * once. A completing future notifies the waiter under its own lock (see
 * future.c); the waiter keeps counts (cf_wait) or a FIFO of completed nodes
 * (as_completed) under its own lock, and sleeps on its event. So the total
 * cost is linear in the number of futures, however they complete: no
 * re-installing waiters, no rescans. cf_wait(ALL_COMPLETED) is simpler
 * still: it waits for each future in turn. Duplicates are removed first
 * (runs of rising or falling addresses, else a pointer hash set).
 *
 * Both spin before they sleep as a single-future wait does, yielding at
 * each turn when a future they wait on has a polling completer (the MPI
 * executor's: future_wait.c).
 *
 * Lock order: future lock, then waiter lock (notifications); the waiting
 * thread never holds both.
 */
#include "core/core.h"

#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* Deduplication                                                            */

static size_t hash_ptr(const void *p)
{
    uint64_t x = (uint64_t)(uintptr_t)p;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return (size_t)x;
}

typedef struct address_run {
    uintptr_t first, last; /* lowest and highest address */
    size_t begin, len;     /* fs[begin .. begin + len), strictly monotone */
    bool falling;          /* falling addresses (else rising) */
} address_run;

static int by_first_address(const void *a, const void *b)
{
    uintptr_t x = ((const address_run *)a)->first;
    uintptr_t y = ((const address_run *)b)->first;
    return (x > y) - (x < y);
}

/* The run's i-th lowest address. */
static uintptr_t address_at(cf_future *const *fs, const address_run *r,
                            size_t i)
{
    return (uintptr_t)fs[r->begin + (r->falling ? r->len - 1 - i : i)];
}

/* True if two monotone runs share no future: each element of the shorter
 * is looked up in the longer by bisection. Adds the steps taken to
 * *work. */
static bool runs_share_nothing(cf_future *const *fs, const address_run *a,
                               const address_run *b, size_t *work)
{
    const address_run *small = a->len <= b->len ? a : b;
    const address_run *big = small == a ? b : a;
    for (size_t i = 0; i < small->len; i++) {
        uintptr_t x = address_at(fs, small, i);
        size_t lo = 0, hi = big->len;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (address_at(fs, big, mid) < x)
                lo = mid + 1;
            else
                hi = mid;
            ++*work;
        }
        if (lo < big->len && address_at(fs, big, lo) == x)
            return false;
    }
    return true;
}

/* The strictly rising or falling run that starts at fs[begin]: returns its
 * end and sets its direction. Returns 0 if the run meets a future equal to
 * the one before it: a duplicate, for certain. */
static size_t run_end(cf_future *const *fs, size_t n, size_t begin,
                      bool *falling)
{
    *falling = begin + 1 < n &&
               (uintptr_t)fs[begin + 1] < (uintptr_t)fs[begin];
    size_t i = begin + 1;
    for (; i < n; i++) {
        uintptr_t a = (uintptr_t)fs[i - 1], b = (uintptr_t)fs[i];
        if (a == b)
            return 0;
        if ((b < a) != *falling)
            break;
    }
    return i;
}

/* True if fs[0..n) are provably distinct without a table. Futures made one
 * after another sit at rising addresses within a slab (future_slab.c), and
 * at falling ones when they reuse slots freed in the order they were made
 * (a slab's free list is last in, first out); the order jumps where a slab
 * starts and where the reuse pattern changes. So split the array into
 * strictly monotone runs, sort the runs by lowest address, and sweep: a run
 * can only share a future with the runs whose range it overlaps, and those
 * pairs are checked by bisection. Usually few runs overlap, and then this
 * costs two sequential passes; past a budget of work, or of runs, the hash
 * table decides instead. */
static bool distinct_by_runs(cf_future *const *fs, size_t n)
{
    enum { MAX_RUNS = 4096 };
    size_t n_runs = 0;
    bool falling;
    for (size_t b = 0, e; b < n; b = e) {
        if ((e = run_end(fs, n, b, &falling)) == 0 || ++n_runs > MAX_RUNS)
            return false;
    }
    if (n_runs <= 1)
        return true;
    address_run *runs = malloc(n_runs * sizeof *runs);
    size_t *open = malloc(n_runs * sizeof *open);
    bool distinct = runs && open;
    if (distinct) {
        size_t r = 0;
        for (size_t b = 0, e; b < n; b = e, r++) {
            e = run_end(fs, n, b, &falling);
            uintptr_t lo = (uintptr_t)fs[falling ? e - 1 : b];
            uintptr_t hi = (uintptr_t)fs[falling ? b : e - 1];
            runs[r] = (address_run){.first = lo, .last = hi, .begin = b,
                                    .len = e - b, .falling = falling};
        }
        qsort(runs, n_runs, sizeof *runs, by_first_address);
    }
    /* `open`: the earlier runs whose range reaches the current one. */
    size_t n_open = 0, work = 0;
    for (size_t i = 0; distinct && i < n_runs; i++) {
        size_t kept = 0;
        for (size_t k = 0; k < n_open; k++)
            if (runs[open[k]].last >= runs[i].first)
                open[kept++] = open[k];
        n_open = kept;
        for (size_t k = 0; k < n_open && distinct; k++)
            distinct = runs_share_nothing(fs, &runs[open[k]], &runs[i],
                                          &work) &&
                       work <= n;
        open[n_open++] = i;
    }
    free(runs);
    free(open);
    return distinct;
}

/* Copies the distinct futures of fs[0..n) to `uniq` in first-seen order and
 * returns how many, or (size_t)-1 when out of memory. */
static size_t dedup(cf_future *const *fs, size_t n, cf_future **uniq)
{
    if (distinct_by_runs(fs, n)) {
        if (n)
            memcpy(uniq, fs, n * sizeof *fs);
        return n;
    }
    if (n <= 8) { /* small sets: a scan beats a table */
        size_t m = 0;
        for (size_t i = 0; i < n; i++) {
            size_t j = 0;
            while (j < m && uniq[j] != fs[i])
                j++;
            if (j == m)
                uniq[m++] = fs[i];
        }
        return m;
    }
    size_t cap = 16;
    while (cap < 2 * n)
        cap <<= 1;
    cf_future **table = calloc(cap, sizeof *table);
    if (!table)
        return (size_t)-1;
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        size_t slot = hash_ptr(fs[i]) & (cap - 1);
        while (table[slot] && table[slot] != fs[i])
            slot = (slot + 1) & (cap - 1);
        if (!table[slot]) {
            table[slot] = fs[i];
            uniq[m++] = fs[i];
        }
    }
    free(table);
    return m;
}

static int check_futures(cf_future *const *fs, size_t n)
{
    if (n > 0 && !fs)
        return CF_EINVAL;
    if (n > SIZE_MAX / (2 * sizeof(cf__wait_node)))
        return CF_EINVAL;
    for (size_t i = 0; i < n; i++)
        if (!fs[i])
            return CF_EINVAL;
    return CF_OK;
}

/* A future that finished with a failure (not a cancel): FIRST_EXCEPTION. */
static bool failed(const cf_future *f)
{
    return cf__future_state(f) == CF__FINISHED && f->failed;
}

/* ------------------------------------------------------------------------ */
/* cf_wait                                                                  */

static void notify_wait(cf__waiter *w, cf__wait_node *node, cf_future *f)
{
    (void)node;
    cf__spin_lock(&w->lock);
    w->remaining--;
    bool trigger = w->remaining == 0 ||
                   w->return_when == CF_FIRST_COMPLETED ||
                   (w->return_when == CF_FIRST_EXCEPTION && failed(f));
    if (trigger)
        w->triggered = true;
    cf__spin_unlock(&w->lock);
    if (trigger)
        cf__event_signal_all(&w->event);
}

/* True if the condition already holds for the futures as they are now. */
static bool condition_holds(cf_future *const *fs, size_t n, int return_when)
{
    size_t done = 0;
    for (size_t i = 0; i < n; i++) {
        if (!cf__state_done(cf__future_state(fs[i])))
            continue;
        done++;
        if (return_when == CF_FIRST_COMPLETED)
            return true;
        if (return_when == CF_FIRST_EXCEPTION && failed(fs[i]))
            return true;
    }
    return done == n;
}

/* ALL_COMPLETED: every future must end, in whatever order, so wait for
 * each in turn until the deadline. A done one costs a load, a pending one
 * a short spin or a single node; still linear. Nodes on all of them would
 * cost an array as large as the set and a notification per completion,
 * which the completing workers pay while this thread is still installing
 * (W1: 50-65 ns per future of 1M; this way 5-15).
 *
 * At the first pending future, the last one is waited for first. A pool
 * runs its queue in order, so the last future is usually the last to
 * end: one spin or sleep on it, then loads of done futures. Waiting on
 * each pending one in turn instead trails the workers: this thread reads
 * each future's cache line while its worker still writes it (start,
 * completion, its last reference), and each such write then pays a
 * transfer between cores (W1, 30,000 empty tasks, one worker: 44 ns a
 * task this way, 77 trailing). The done ones before it are read in
 * order, as the workers left them. Waiting for one a fixed distance
 * ahead (16, 64, 256) instead of the last measured no better. */
static int wait_each(cf_future *const *fs, size_t n, int64_t deadline)
{
    bool last_waited = n < 2;
    for (size_t i = 0; i < n; i++) {
        if (!last_waited && !cf__state_done(cf__future_state(fs[i]))) {
            last_waited = true;
            int rc = cf__future_wait(fs[n - 1], deadline);
            if (rc != CF_OK)
                return rc == CF_EDEADLK ? rc : CF_OK; /* a timeout is not */
        }
        int rc = cf__future_wait(fs[i], deadline);
        if (rc != CF_OK)
            return rc == CF_EDEADLK ? rc : CF_OK;
    }
    return CF_OK;
}

/* From inside a task (nested.c): runs the futures queued in this thread's
 * pool until the condition holds or none is left to run here. Returns
 * true if the condition holds. */
static bool help_until(cf_future *const *fs, size_t n, int return_when)
{
    size_t cursor = 0;
    cf_future *ran;
    while ((ran = cf__nested_help_one(fs, n, &cursor)) != NULL)
        if (return_when == CF_FIRST_COMPLETED ||
            (return_when == CF_FIRST_EXCEPTION && failed(ran)))
            return true;
    return condition_holds(fs, n, return_when);
}

/* FIRST_COMPLETED, FIRST_EXCEPTION: installs nodes on the futures not done
 * yet and sleeps until the waiter triggers or the deadline passes. Returns
 * CF_OK or CF_ENOMEM. */
static int block_until(cf_future *const *fs, size_t n, int return_when,
                       int64_t deadline)
{
    bool nested = cf__running != NULL;
    cf__wait_frame frame;
    if (nested) {
        if (help_until(fs, n, return_when))
            return CF_OK;
        int rc = cf__nested_begin_wait(&frame, fs, n, CF__CANCELLED);
        if (rc == CF_EDEADLK && condition_holds(fs, n, return_when))
            return CF_OK; /* one finished meanwhile: see nested.c */
        if (rc != CF_OK)
            return rc;
    }
    cf__wait_node *nodes = malloc(n * sizeof *nodes);
    if (!nodes) {
        if (nested)
            cf__nested_end_wait(&frame);
        return CF_ENOMEM;
    }
    cf__waiter w;
    cf__event_init(&w.event);
    atomic_init(&w.lock.held, false);
    w.notify = notify_wait;
    w.wakes_on_cancel = false;
    /* Count every future up front: a node may be notified before the
     * install loop ends, and a future found done is discounted the same way
     * a notification would discount it. */
    w.remaining = n;
    w.triggered = false;
    w.return_when = return_when;

    size_t installed = 0;
    bool polls = false; /* a future not done has a polling completer */
    for (size_t i = 0; i < n; i++) {
        nodes[installed].waiter = &w;
        if (cf__wait_node_install(fs[i], &nodes[installed])) {
            installed++;
            polls |= fs[i]->completer_polls;
            continue;
        }
        cf__spin_lock(&w.lock);
        if (--w.remaining == 0)
            w.triggered = true;
        cf__spin_unlock(&w.lock);
    }
    /* A future that completed before its node went in could not trigger
     * FIRST_COMPLETED or FIRST_EXCEPTION: check those once, then sleep. */
    if (!condition_holds(fs, n, return_when)) {
        for (;;) {
            unsigned seq = cf__event_seq(&w.event);
            cf__spin_lock(&w.lock);
            bool triggered = w.triggered;
            cf__spin_unlock(&w.lock);
            if (triggered ||
                !cf__event_wait_spinning_for(&w.event, seq, deadline, polls))
                break;
        }
    }
    for (size_t i = 0; i < installed; i++)
        cf__wait_node_remove(&nodes[i]);
    cf__event_destroy(&w.event);
    free(nodes);
    if (nested)
        cf__nested_end_wait(&frame);
    return CF_OK;
}

int cf_wait(cf_future *const *fs, size_t n, double timeout,
            cf_return_when return_when, cf_future **done, size_t *n_done,
            cf_future **not_done, size_t *n_not_done)
{
    int rc = check_futures(fs, n);
    if (rc != CF_OK)
        return rc;
    if (return_when != CF_ALL_COMPLETED && return_when != CF_FIRST_COMPLETED &&
        return_when != CF_FIRST_EXCEPTION)
        return CF_EINVAL;
    int64_t deadline;
    if ((rc = cf__deadline_from_timeout(timeout, &deadline)) != CF_OK)
        return rc;

    cf_future **uniq = malloc((n ? n : 1) * sizeof *uniq);
    if (!uniq)
        return CF_ENOMEM;
    size_t m = dedup(fs, n, uniq);
    if (m == (size_t)-1) {
        free(uniq);
        return CF_ENOMEM;
    }
    if (return_when == CF_ALL_COMPLETED)
        rc = wait_each(uniq, m, deadline); /* no scan first: it is one */
    else if (!condition_holds(uniq, m, return_when))
        rc = block_until(uniq, m, return_when, deadline);
    if (rc != CF_OK) {
        free(uniq);
        return rc;
    }
    /* Partition by the state at return, as Python does. */
    size_t nd = 0, nn = 0;
    for (size_t i = 0; i < m; i++) {
        if (cf__state_done(cf__future_state(uniq[i]))) {
            if (done)
                done[nd] = uniq[i];
            nd++;
        } else {
            if (not_done)
                not_done[nn] = uniq[i];
            nn++;
        }
    }
    if (n_done)
        *n_done = nd;
    if (n_not_done)
        *n_not_done = nn;
    free(uniq);
    return CF_OK;
}

/* ------------------------------------------------------------------------ */
/* as_completed                                                             */

struct cf_as_completed {
    cf__waiter w;
    cf_future **futures;   /* distinct futures, each retained */
    size_t n;
    cf__wait_node *nodes;  /* one per future in `futures` */
    size_t *ready;         /* indexes done before the call, yielded first */
    size_t help_cursor;    /* from inside a task: see cf__nested_help_one */
    size_t n_ready, ready_pos;
    size_t yielded;
    int64_t deadline;
    bool polls;            /* a future with a node has a polling completer */
};

void cf__waiter_notify_queue(cf__waiter *w, cf__wait_node *node, cf_future *f)
{
    (void)f;
    node->done_next = NULL;
    cf__spin_lock(&w->lock);
    if (w->done_tail)
        w->done_tail->done_next = node;
    else
        w->done_head = node;
    w->done_tail = node;
    cf__spin_unlock(&w->lock);
    cf__event_signal_all(&w->event);
}

int cf_as_completed_new(cf_future *const *fs, size_t n, double timeout,
                        cf_as_completed **out)
{
    int rc = check_futures(fs, n);
    if (rc != CF_OK || !out)
        return rc != CF_OK ? rc : CF_EINVAL;
    int64_t deadline;
    if ((rc = cf__deadline_from_timeout(timeout, &deadline)) != CF_OK)
        return rc;

    cf_as_completed *it = calloc(1, sizeof *it);
    size_t alloc_n = n ? n : 1;
    if (it) {
        it->futures = malloc(alloc_n * sizeof *it->futures);
        it->nodes = malloc(alloc_n * sizeof *it->nodes);
        it->ready = malloc(alloc_n * sizeof *it->ready);
    }
    if (!it || !it->futures || !it->nodes || !it->ready)
        goto nomem;
    it->n = dedup(fs, n, it->futures);
    if (it->n == (size_t)-1)
        goto nomem;
    cf__event_init(&it->w.event);
    atomic_init(&it->w.lock.held, false);
    it->w.notify = cf__waiter_notify_queue;
    it->deadline = deadline;

    for (size_t i = 0; i < it->n; i++) {
        cf_future *f = cf_future_retain(it->futures[i]);
        /* A future done already needs no node: it goes straight to the
         * ready list, and its node's memory is never touched. */
        if (cf__state_done(cf__future_state(f))) {
            it->ready[it->n_ready++] = i;
            continue;
        }
        it->nodes[i].waiter = &it->w;
        if (!cf__wait_node_install(f, &it->nodes[i]))
            it->ready[it->n_ready++] = i;
        else
            it->polls |= f->completer_polls;
    }
    *out = it;
    return CF_OK;
nomem:
    if (it) {
        free(it->futures);
        free(it->nodes);
        free(it->ready);
        free(it);
    }
    return CF_ENOMEM;
}

static cf__wait_node *pop_completed(cf_as_completed *it)
{
    cf__spin_lock(&it->w.lock);
    cf__wait_node *node = it->w.done_head;
    if (node) {
        it->w.done_head = node->done_next;
        if (!it->w.done_head)
            it->w.done_tail = NULL;
    }
    cf__spin_unlock(&it->w.lock);
    return node;
}

int cf_as_completed_next(cf_as_completed *it, cf_future **out)
{
    if (!it || !out)
        return CF_EINVAL;
    if (it->ready_pos < it->n_ready) {
        /* No node points at a ready future: hand the caller the
         * iterator's own reference (free() skips it) instead of taking
         * another, which would touch the future's line twice more. */
        *out = it->futures[it->ready[it->ready_pos++]];
        it->yielded++;
        return CF_OK;
    }
    if (it->yielded == it->n)
        return CF_EEND;
    bool nested = false;
    cf__wait_frame frame;
    for (;;) {
        unsigned seq = cf__event_seq(&it->w.event);
        cf__wait_node *node = pop_completed(it);
        if (node) {
            if (nested)
                cf__nested_end_wait(&frame);
            it->yielded++;
            *out = cf_future_retain(node->future);
            return CF_OK;
        }
        /* From inside a task (nested.c): run a future queued in this
         * thread's pool, and look again; before blocking, make sure that
         * something else can end the wait. */
        if (cf__running && !nested) {
            if (cf__nested_help_one(it->futures, it->n, &it->help_cursor))
                continue;
            int rc = cf__nested_begin_wait(&frame, it->futures, it->n,
                                           CF__CANCELLED);
            if (rc == CF_EDEADLK && (node = pop_completed(it)) != NULL) {
                it->yielded++; /* one finished meanwhile: see nested.c */
                *out = cf_future_retain(node->future);
                return CF_OK;
            }
            if (rc != CF_OK)
                return rc;
            nested = true;
            continue; /* a look before sleeping: a future may be done */
        }
        if (!cf__event_wait_spinning_for(&it->w.event, seq, it->deadline,
                                         it->polls)) {
            if (nested)
                cf__nested_end_wait(&frame);
            /* One last look: a completion may have raced the deadline. */
            if ((node = pop_completed(it)) != NULL) {
                it->yielded++;
                *out = cf_future_retain(node->future);
                return CF_OK;
            }
            return CF_ETIMEDOUT;
        }
    }
}

void cf_as_completed_free(cf_as_completed *it)
{
    if (!it)
        return;
    /* `ready` lists, in rising order, the futures whose node was never
     * installed (or whose install found them done); the first ready_pos of
     * them were handed out with our reference. Every other node is removed
     * under its future's lock, even when it was notified: the completer may
     * still be signalling our event. */
    size_t r = 0;
    for (size_t i = 0; i < it->n; i++) {
        if (r < it->n_ready && it->ready[r] == i) {
            if (r++ < it->ready_pos)
                continue; /* the caller owns that reference now */
        } else {
            cf__wait_node_remove(&it->nodes[i]);
        }
        cf_future_release(it->futures[i]);
    }
    cf__event_destroy(&it->w.event);
    free(it->futures);
    free(it->nodes);
    free(it->ready);
    free(it);
}
