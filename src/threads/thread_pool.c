/* thread_pool.c - ThreadPoolExecutor: tasks run on a pool of threads.
 *
 * Design: the future is its own queue node, linked through f->next.
 *
 *   submit --push (lock-free)--> [queue] --pop (pop_lock)--> worker:
 *       set_running_or_notify_cancel, run the task, complete the future
 *
 * The queue (task_queue.h) is Vyukov's intrusive multi-producer queue: a
 * submit links its future with one atomic exchange and never takes a lock
 * a worker holds, so a submitting thread and busy workers do not contend.
 * Workers pop under `pop_lock`, a spinlock held for a few instructions. An
 * idle worker reads the queue's own links to see whether there is work
 * (has_work), so a submit to a full pool writes no shared counter.
 *
 * Idle workers search (spin) briefly, then sleep on the `work` event. A
 * submit reads one counter that changes only when a worker falls asleep or
 * wakes, and makes a system call only if a worker sleeps; a busy pool, or
 * one whose idle workers still search, costs a submit neither (see the
 * worker states below). No lost wake-up: a worker counts itself asleep
 * before its last look at the queue, a submit publishes its future (the
 * tail exchange) before it reads that count, all sequentially consistent,
 * and the event re-checks its sequence number.
 *
 * Growing: idle threads are reused before new ones start (Python 3.8+),
 * and a submit reserves the idle worker it counts on, so a burst of
 * k <= max_workers tasks runs at once. While the pool may still grow,
 * `spare` counts idle workers minus queued tasks: a submit takes one, and
 * starts a thread if that leaves it negative; a worker adds one when it
 * falls idle, and one when it takes a task without having been counted
 * idle (a busy worker moving on to the next task); a started thread counts
 * as idle from its start. Each step changes the count by what it changes
 * in the world, so it never drifts, and a moment's lag between a step and
 * its count can only start a thread too many, never one too few. While
 * the pool is full (as many threads as it may run) nobody reads or writes
 * `spare`: a submit then pays one load and compare for all of this. The
 * pool's size may change (resizing, idle reaping, compensating threads for
 * blocked nested waits): sizing.c keeps the mode and the count across
 * those changes, and lists the invariants.
 *
 * Closing (shutdown or broken) sets `closed`, which a submit checks before
 * it pushes, and `stopping`, which it checks after. A worker decides to exit
 * under the pool lock, and only with the queue empty (a retiring worker,
 * sizing.c, decides there too). A submit that finds
 * the pool stopping takes that lock too: if no worker is left, it drains
 * the queue itself (withdrawing its own future, cancelling any other), so a
 * task accepted while a shutdown races it still ends. A submit to a full
 * pool costs no atomic read-modify-write but the queue's own exchange.
 *
 * Continuations whose input completed come as a chain
 * (cf__thread_pool_submit_chain): their futures, linked already, are
 * pushed with one exchange, and n of them reserve n idle workers (or start
 * threads) and share one wake decision, as one submit does for one. A
 * submit's own futures stay together in the queue, so a drain that
 * withdraws them (a racing shutdown) finds them as a run.
 *
 * User code (tasks, callbacks, initializers, result destructors) never runs
 * under a pool lock: a worker releases the future it ran only after it has
 * dropped pop_lock.
 */
#include "threads/thread_pool.h"

#include <stdio.h>
#include <stdlib.h>

/* How long an idle worker spins before sleeping: long enough to catch the
 * next task of a caller that submits in a loop, short enough that an idle
 * pool costs nothing. */
enum { IDLE_SPIN_NS = 50000 };

typedef struct worker_start {
    thread_pool *pool;
    int index;
    unsigned mode; /* when it was started: its generation of `spare` */
} worker_start;

void (*_Atomic cf__thread_pool_before_grow)(cf_executor *ex);

/* ------------------------------------------------------------------------ */
/* Breaking                                                                 */

static void fail_all(cf_future *f, const char *message)
{
    while (f) {
        cf_future *next = cf__queue_next(f);
        cf__future_finish(f, NULL, NULL, CF_EBROKEN_THREAD_POOL,
                          cf__strdup(message));
        cf_future_release(f);
        f = next;
    }
}

/* A worker could not start serving (its initializer failed): break the
 * pool (Python's BrokenThreadPool). Pending futures fail with `message`
 * (taken over; NULL: the code's own); later submits are refused. */
static void break_pool(thread_pool *p, char *message)
{
    bool first = false;
    cf__mutex_lock(&p->lock);
    if (!atomic_load(&p->broken)) {
        p->broken_message = message;
        message = NULL;
        atomic_store(&p->broken, true);
        first = true;
    }
    close_pool(p);
    cf__spin_lock(&p->pop_lock);
    cf_future *queued = cf__queue_take_all(queue(p), NULL);
    cf__spin_unlock(&p->pop_lock);
    cf__mutex_unlock(&p->lock);
    free(message);
    cf__event_signal_all(&p->work);
    /* broken_message is written once, before `broken`, and never freed
     * before the pool is: safe to read without the lock. */
    fail_all(queued, p->broken_message ? p->broken_message
                                       : cf_strerror(CF_EBROKEN_THREAD_POOL));
    if (first)
        cf__monitor_worker_event(p->executor, CF_EVENT_CRASH,
                                 cf__current_worker, CF_EBROKEN_THREAD_POOL,
                                 p->broken_message);
}

/* ------------------------------------------------------------------------ */
/* Workers                                                                  */

/* Worker states: busy (running a task), searching (spinning on the queue)
 * or sleeping. A sleeper needs waking only when nobody searches, since a
 * searcher takes the task without a system call; so a submit reads
 * n_sleeping (which changes rarely) and only when it is nonzero
 * n_searching (which a worker keeping up with its submitter changes on
 * every task). A searcher that takes a task while more wait wakes the
 * next sleeper (the wake-ups chain). All of it is the Dekker
 * pattern: a worker counts itself asleep, then stops counting itself as
 * searching, then takes its last look at the queue; a submit links its
 * future, then reads the counts; all sequentially consistent. */

static bool should_wake(thread_pool *p)
{
    return atomic_load(&p->n_sleeping) > 0 &&
           atomic_load(&p->n_searching) == 0;
}

/* The worker is idle now (searching or about to): counts it in `spare`
 * unless it already is. */
static void spare_idle(thread_pool *p, spare_share *s)
{
    cf__tp_spare_join(p, s,
                      atomic_load_explicit(&p->mode, memory_order_relaxed));
    if (!s->idle && s->counting)
        cf__tp_spare_add(p, s->gen, 1);
    s->idle = true;
}

/* The worker took a task off the queue, in the generation of `mode` (read
 * under pop_lock): one queued task less, and one idle worker less if it
 * was counted idle (then `spare` stays). */
static void spare_took_task(thread_pool *p, spare_share *s, unsigned mode)
{
    cf__tp_spare_join(p, s, mode);
    if (!s->idle && s->counting)
        cf__tp_spare_add(p, s->gen, 1);
    s->idle = false;
}

static void become_searching(thread_pool *p)
{
    atomic_fetch_add(&p->n_searching, 1);
}

/* A searching worker took a task: it is busy; pass work on if more waits
 * and only sleepers could take it. */
static void found_work(thread_pool *p)
{
    atomic_fetch_sub(&p->n_searching, 1);
    if (should_wake(p) && has_work(p))
        cf__event_signal_one(&p->work);
}

/* Why a worker's wait for work ended. */
typedef enum wake {
    WAKE_WORK,    /* work is queued, or look again */
    WAKE_STOP,    /* the pool is stopping */
    WAKE_SURPLUS, /* more threads than allowed: may retire */
    WAKE_EXPIRED  /* idle past idle_timeout: may retire */
} wake;

static bool surplus(thread_pool *p)
{
    return atomic_load_explicit(&p->mode, memory_order_relaxed) &
           MODE_SURPLUS;
}

/* Spins, then sleeps, until there is work, the pool stops, it has more
 * threads than allowed, or (idle_timeout) the worker stayed idle that
 * long; the worker is searching on entry and on return. While it sleeps
 * it joins each new generation of `spare` (sizing.c wakes the sleepers
 * when one starts), so that it is counted idle there. */
static wake wait_for_work(thread_pool *p, spare_share *share)
{
    /* Few searchers: each one spinning takes a core from the threads that
     * submit (two cores, a submitter and two spinning workers, and the
     * submitter runs a third of the time). The others sleep at once; the
     * chained wake-up brings them in when work piles up. */
    int64_t until = 0;
    bool spin = atomic_load(&p->n_searching) <= p->max_searching;
    for (unsigned i = 0; spin && !has_work(p) && !atomic_load(&p->stopping);
         i++)
        if (!cf__spin_continue(i, &until, IDLE_SPIN_NS))
            break;
    bool expired = false;
    if (!has_work(p) && !atomic_load(&p->stopping) && !surplus(p)) {
        int64_t deadline = p->idle_ns ? cf__now_ns() + p->idle_ns
                                      : CF__NO_DEADLINE;
        atomic_fetch_add(&p->n_sleeping, 1);
        atomic_fetch_sub(&p->n_searching, 1);
        for (;;) {
            unsigned seq = cf__event_seq(&p->work);
            if (has_work(p) || atomic_load(&p->stopping) || surplus(p))
                break;
            spare_idle(p, share);
            if (!cf__event_wait(&p->work, seq, deadline)) {
                expired = !has_work(p);
                break;
            }
        }
        atomic_fetch_add(&p->n_searching, 1);
        atomic_fetch_sub(&p->n_sleeping, 1);
    }
    if (has_work(p))
        return WAKE_WORK;
    if (atomic_load(&p->stopping))
        return WAKE_STOP;
    if (surplus(p))
        return WAKE_SURPLUS;
    return expired ? WAKE_EXPIRED : WAKE_WORK;
}

/* Runs a popped future. If the queue is empty, the worker starts searching
 * (and counts as idle) *before* completing the future: a caller that waits
 * for this result and submits again must find an idle worker rather than
 * start a thread (idle threads are reused). Returns whether it is
 * searching. */
static bool run(thread_pool *p, cf_future *f, spare_share *share)
{
    if (cf_future_set_running_or_notify_cancel(f) != CF_OK)
        return false; /* cancelled while queued */
    cf__outcome outcome;
    cf__invoke(f, f->start.task.fn, f->start.task.arg, &outcome);
    bool searching = !has_work(p);
    if (searching) {
        become_searching(p);
        spare_idle(p, share);
    }
    cf__complete(f, &outcome);
    return searching;
}

/* The pool is stopping: exit unless work arrived. Decided under the pool
 * lock, which a submit racing the shutdown also takes (see close_pool). */
static bool exit_if_no_work(thread_pool *p)
{
    cf__mutex_lock(&p->lock);
    if (has_work(p)) {
        cf__mutex_unlock(&p->lock);
        return false;
    }
    atomic_fetch_sub(&p->n_searching, 1);
    p->n_alive--;
    cf__cond_broadcast(&p->threads_done);
    cf__mutex_unlock(&p->lock);
    return true;
}

/* A worker's life: the initializer (if `initialize`), then tasks until the
 * pool stops. */
static void serve(thread_pool *p, int index, unsigned start_mode,
                  bool initialize)
{
    worker_slot *slot = &p->slots[index];
    cf__current_pool = p->executor;
    cf__current_worker = index;
    cf__helping_tag = p->helping_tag;
    cf__tp_set_current(p);
    cf__monitor_worker_event(p->executor, CF_EVENT_WORKER_START, index, 0,
                             NULL);

    if (initialize && p->initializer) {
        int rc = p->initializer(p->initarg);
        if (rc != 0)
            break_pool(p, cf__format("a thread initializer failed (returned "
                                     "%d): the thread pool is not usable "
                                     "anymore",
                                     rc));
    }
    cf_future *finished = NULL;
    bool searching = false;
    /* Counted idle from its start by cf__tp_start_worker, in the
     * generation it was started in. */
    spare_share share = {mode_gen(start_mode), start_mode & MODE_COUNTING,
                         true};
    for (;;) {
        /* More threads than allowed: a worker leaves before it takes a
         * task (after the one it ran). */
        if (surplus(p) && cf__tp_retire(p, &share, index, false, searching))
            break;
        cf__spin_lock(&p->pop_lock);
        cf_future *f = cf__queue_pop_available(queue(p));
        slot->running = f;
        unsigned mode = atomic_load_explicit(&p->mode, memory_order_relaxed);
        cf__spin_unlock(&p->pop_lock);
        /* Released only now, with no lock held: its last release may run
         * a user's result destructor. */
        cf_future_release(finished);
        finished = NULL;
        if (f) {
            if (searching)
                found_work(p);
            spare_took_task(p, &share, mode);
            searching = run(p, f, &share);
            finished = f;
            continue;
        }
        if (!searching)
            become_searching(p);
        spare_idle(p, &share);
        searching = true;
        wake why = wait_for_work(p, &share);
        if (why == WAKE_STOP && exit_if_no_work(p))
            break;
        if ((why == WAKE_SURPLUS || why == WAKE_EXPIRED) &&
            cf__tp_retire(p, &share, index, why == WAKE_EXPIRED, true))
            break;
    }
    cf_future_release(finished);
    /* The pool outlives this call: it is freed only once its threads are
     * joined. */
    cf__monitor_worker_event(p->executor, CF_EVENT_WORKER_EXIT, index, 0,
                             NULL);
    cf__current_worker = -1;
    cf__helping_tag = 0;
    cf__tp_set_current(NULL);
    cf__current_pool = NULL;
}

/* What the thread_main option's hook gets to run the worker with. */
typedef struct worker_run {
    thread_pool *pool;
    int index;
    unsigned mode;
    bool ran;
} worker_run;

static void run_worker(void *arg)
{
    worker_run *w = arg;
    if (w->ran)
        return; /* a second call: the pool may be gone by now */
    w->ran = true;
    serve(w->pool, w->index, w->mode, true);
}

static void *worker_main(void *arg)
{
    worker_start start = *(worker_start *)arg;
    free(arg);
    thread_pool *p = start.pool;
    if (!p->thread_main) {
        serve(p, start.index, start.mode, true);
        return NULL;
    }
    /* The hook's frame encloses the worker's whole life. Once serve()
     * returns the pool may be freed as soon as this thread ends: nothing
     * after it reads `p`. */
    worker_run w = {p, start.index, start.mode, false};
    p->thread_main(run_worker, &w, p->thread_ctx);
    if (!w.ran) {
        /* The hook returned without running the worker: nothing would
         * serve the queue. Break the pool, then let the worker do its
         * exit (it finds the pool stopping and leaves). */
        break_pool(p, cf__strdup("the thread pool's thread_main hook "
                                 "returned without running the worker: "
                                 "the thread pool is not usable anymore"));
        serve(p, start.index, start.mode, false);
    }
    return NULL;
}

/* Starts one more worker, in a free slot (one exists while n_threads <
 * capacity, which allowed_threads() never exceeds). pool lock held. */
int cf__tp_start_worker(thread_pool *p)
{
    worker_start *start = malloc(sizeof *start);
    if (!start)
        return CF_ENOMEM;
    int index = 0;
    while (p->slots[index].live || p->slots[index].joinable)
        index++;
    unsigned mode = atomic_load(&p->mode);
    start->pool = p;
    start->index = index;
    start->mode = mode;
    /* Idle (in `spare`) from now: its first task, or none, settles it.
     * The generation cannot change meanwhile: that takes the lock. */
    if (mode & MODE_COUNTING)
        atomic_fetch_add(&p->spare, 1);
    char name[32];
    snprintf(name, sizeof name, "%s_%d", p->name_prefix, index);
    int rc = cf__thread_create(&p->threads[index], worker_main, start, name);
    if (rc != CF_OK) {
        if (mode & MODE_COUNTING)
            atomic_fetch_sub(&p->spare, 1);
        free(start);
        return rc;
    }
    p->slots[index].live = true;
    p->slots[index].joinable = true;
    p->n_threads++;
    p->n_alive++;
    atomic_fetch_add(&p->n_started, 1);
    cf__tp_reshape(p);
    return CF_OK;
}

/* A submit's own futures: `n` of them from `first`, pushed as one chain
 * (a single submit's is a chain of one), so that every thread taking
 * them off the queue finds them together, in order. */
typedef struct own_chain {
    cf_future *first;
    int n;
    int left; /* while taking them off: how many are still to come */
} own_chain;

/* True if `f`, taken off the queue in order, is one of `own`'s. */
static bool is_own(own_chain *own, const cf_future *f)
{
    if (f == own->first)
        own->left = own->n;
    if (own->left == 0)
        return false;
    own->left--;
    return true;
}

/* No worker could be started and none is alive, so nothing will run what
 * is queued. Fails everything queued but `own`'s (whose submit reports the
 * error instead). Returns true if they were found and taken off (their
 * queue references are the submitter's again). pool lock held; no push
 * can be under way for futures other than those whose submitters wait for
 * this lock. */
static bool abandon_queue(thread_pool *p, own_chain *own, int rc)
{
    cf__spin_lock(&p->pop_lock);
    cf_future *f = NULL, *list = NULL;
    bool found = false;
    while ((f = cf__queue_pop(queue(p))) != NULL) {
        atomic_fetch_add_explicit(&p->spare, 1, memory_order_relaxed);
        if (is_own(own, f)) {
            found = true;
            continue;
        }
        atomic_store_explicit(&f->next, list, memory_order_relaxed);
        list = f;
    }
    cf__spin_unlock(&p->pop_lock);
    while (list) {
        cf_future *next = cf__queue_next(list);
        cf__future_finish(list, NULL, NULL, rc,
                          cf__strdup("no worker thread could be started"));
        cf_future_release(list);
        list = next;
    }
    return found;
}

/* A submit pushed `own`'s futures while the pool was closing. If a worker
 * is still alive it will see them before it may exit (both decide under
 * the lock). If none is, nothing would run them: drain the queue here,
 * withdraw them (their queue references are the submitter's again) and
 * cancel what other racing submits left. */
static int submit_raced_close(thread_pool *p, own_chain *own)
{
    cf__mutex_lock(&p->lock);
    if (p->n_alive > 0) {
        cf__mutex_unlock(&p->lock);
        return CF_OK;
    }
    cf__spin_lock(&p->pop_lock);
    cf_future *queued = cf__queue_take_all(queue(p), NULL);
    cf__spin_unlock(&p->pop_lock);
    int rc = atomic_load(&p->broken) ? CF_EBROKEN_THREAD_POOL : CF_ESHUTDOWN;
    cf__mutex_unlock(&p->lock);
    bool withdrawn = false;
    while (queued) {
        cf_future *next = cf__queue_next(queued);
        if (is_own(own, queued)) {
            withdrawn = true;
        } else {
            cf__future_cancel(queued);
            cf_future_release(queued);
        }
        queued = next;
    }
    return withdrawn ? rc : CF_OK; /* someone else cancelled ours */
}

/* Starts workers while the queued tasks outnumber the idle workers and
 * the pool may grow. Returns CF_OK, or the error for `own`'s futures
 * (already queued) if they were withdrawn. */
static int grow(thread_pool *p, own_chain *own)
{
    int rc = CF_OK;
    cf__mutex_lock(&p->lock);
    if (p->shutdown) {
        /* Shut down since this submit saw the pool open: no worker may
         * start now, and if none ever started, nothing would run `f`. */
        cf__mutex_unlock(&p->lock);
        return submit_raced_close(p, own);
    }
    /* Re-check under the lock: a worker that fell idle or finished its
     * task may have taken this one already, and a thread another submit
     * started counts as idle from its start (so a single submit starts
     * one at most). */
    while (spare_count(atomic_load(&p->spare)) < 0 &&
           p->n_threads < allowed_threads(p)) {
        rc = cf__tp_start_worker(p);
        if (rc != CF_OK && p->n_alive == 0 && abandon_queue(p, own, rc)) {
            cf__mutex_unlock(&p->lock);
            return rc;
        }
        if (rc != CF_OK)
            break;
    }
    rc = CF_OK; /* live workers will run them */
    cf__mutex_unlock(&p->lock);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Submit                                                                   */

/* Why a submit cannot push: CF_OK if it may. */
static inline int refused(thread_pool *p)
{
    if (inherited(p))
        return CF_EBROKEN_THREAD_POOL;
    if (atomic_load(&p->closed))
        return atomic_load(&p->broken) ? CF_EBROKEN_THREAD_POOL
                                       : CF_ESHUTDOWN;
    return CF_OK;
}

/* What a submit does once it has pushed `own`'s n futures: settles a race
 * with a shutdown, reserves idle workers (or starts threads) for them, and
 * wakes a sleeper if nobody searches (the wake-ups chain from there: see
 * found_work). Returns CF_OK, or the error for them if they were withdrawn
 * (their queue references are the submitter's again). */
static inline int pushed(thread_pool *p, own_chain *own)
{
    if (atomic_load(&p->stopping))
        return submit_raced_close(p, own);
    /* Reserve an idle worker for each task, or start threads if none is
     * left. Once the pool is full this is one compare. Sequentially
     * consistent, after the push: a worker that retires (sizing.c) takes
     * itself out of `spare`, or flips the mode, then looks at the queue. */
    if ((atomic_load(&p->mode) & MODE_COUNTING) &&
        spare_count(atomic_fetch_sub(&p->spare, (uint64_t)own->n)) <
            own->n) {
        void (*hook)(cf_executor *) = atomic_load_explicit(
            &cf__thread_pool_before_grow, memory_order_relaxed);
        if (hook)
            hook(p->executor);
        int rc = grow(p, own);
        if (rc != CF_OK)
            return rc;
    }
    if (should_wake(p))
        cf__event_signal_one(&p->work);
    return CF_OK;
}

int cf__thread_pool_submit(void *impl, cf_future *f, cf_fn fn, void *arg,
                           const cf_codec *codec)
{
    (void)codec; /* threads share memory: nothing crosses as bytes */
    thread_pool *p = impl;
    int rc = refused(p);
    if (rc != CF_OK)
        return rc;
    f->start.task.fn = fn;
    f->start.task.arg = arg;
    atomic_store_explicit(&f->pool_tag, p->helping_tag, memory_order_release);
    /* The queue's reference. A future with one reference, the caller's,
     * is seen by nobody else (a future allocated by this submit), so a
     * plain store does what an atomic increment would, without its cost.
     * A continuation's future (then) may be held by others meanwhile. */
    unsigned refs = atomic_load_explicit(&f->refs, memory_order_relaxed);
    if (refs == 1)
        atomic_store_explicit(&f->refs, 2, memory_order_relaxed);
    else
        atomic_fetch_add_explicit(&f->refs, 1, memory_order_relaxed);
    cf__queue_push(queue(p), f);
    own_chain own = {f, 1, 0};
    rc = pushed(p, &own);
    if (rc != CF_OK)
        cf_future_release(f); /* the queue's reference */
    return rc;
}

int cf__thread_pool_submit_chain(void *impl, cf_future *first,
                                 cf_future *last, int n)
{
    thread_pool *p = impl;
    int rc = refused(p);
    if (rc != CF_OK)
        return rc;
    /* Their task words are set; they are marked as this pool's (as a
     * submit marks its future) before the push makes them visible. */
    for (cf_future *f = first; f != last; f = cf__queue_next(f))
        atomic_store_explicit(&f->pool_tag, p->helping_tag,
                              memory_order_release);
    atomic_store_explicit(&last->pool_tag, p->helping_tag,
                          memory_order_release);
    cf__queue_push_chain(queue(p), first, last);
    own_chain own = {first, n, 0};
    return pushed(p, &own);
}
