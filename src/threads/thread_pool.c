/* thread_pool.c - ThreadPoolExecutor: tasks run on a pool of threads.
 *
 * Design: the future is its own queue node, linked through f->next.
 *
 *   submit --push (lock-free)--> [queue] --pop (pop_lock)--> worker:
 *       set_running_or_notify_cancel, run the task, complete the future
 *
 * The queue is Vyukov's intrusive multi-producer queue: a submit links its
 * future with one atomic exchange and never takes a lock a worker holds,
 * so a submitting thread and busy workers do not contend. Workers pop under
 * `pop_lock`, a spinlock held for a few instructions. An idle worker reads
 * the queue's own links to see whether there is work (has_work), so a
 * submit writes no shared counter.
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
 * Idle threads are reused before new ones start (Python 3.8+): a submit
 * starts a thread only when no worker is idle and fewer than max_workers
 * exist.
 *
 * Closing (shutdown or broken) sets `closed`, which a submit checks before
 * it pushes, and `stopping`, which it checks after. A worker decides to exit
 * under the pool lock, and only with the queue empty. A submit that finds
 * the pool stopping takes that lock too: if no worker is left, it drains
 * the queue itself (withdrawing its own future, cancelling any other), so a
 * task accepted while a shutdown races it still ends. A submit costs no
 * atomic read-modify-write but the queue's own exchange.
 *
 * User code (tasks, callbacks, initializers, result destructors) never runs
 * under a pool lock: a worker releases the future it ran only after it has
 * dropped pop_lock.
 */
#include "core/core.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* How long an idle worker spins before sleeping: long enough to catch the
 * next task of a caller that submits in a loop, short enough that an idle
 * pool costs nothing. */
enum { IDLE_SPIN_NS = 50000 };

typedef struct worker_slot {
    cf_future *running; /* guarded by pop_lock; the future being run */
} worker_slot;

typedef struct thread_pool {
    /* Producer side. */
    _Atomic(cf_future *) tail;

    /* Consumer side, on its own cache lines. */
    _Alignas(64) cf__spinlock pop_lock;
    _Atomic(cf_future *) head; /* written under pop_lock, read by searchers */
    worker_slot *slots;   /* max_workers; guarded by pop_lock */
    atomic_int n_searching; /* workers spinning: they find work unaided */

    /* Sleepers, on a line that changes only when a worker falls asleep or
     * wakes: the one idle state a submit reads on its fast path. */
    _Alignas(64) atomic_int n_sleeping;
    cf__event work; /* sleeping workers wait here */

    /* Read on every submit, written once: closed to new work (shutdown or
     * broken), and stopping (workers exit once the queue is empty). */
    _Alignas(64) atomic_bool closed;
    atomic_bool stopping;

    /* Cold state, guarded by lock. */
    _Alignas(64) cf__mutex lock;
    cf__cond threads_done; /* a worker exited */
    atomic_int n_threads;  /* started (read without the lock by submit) */
    int n_alive;           /* started and not yet exited */
    bool shutdown;
    atomic_bool broken;
    char *broken_message;

    cf_executor *executor; /* back pointer, for cf__current_pool */
    int max_workers;
    int max_searching; /* workers that may spin at once: half the CPUs */
    unsigned fork_generation;
    int (*initializer)(void *);
    void *initarg;
    char name_prefix[16];
    cf__thread *threads; /* max_workers slots; [0, n_threads) started */

    cf__mutex join_lock; /* serialises joining */
    int n_joined;        /* guarded by join_lock */

    cf_future stub; /* the queue's placeholder node; only `next` is used */
} thread_pool;

typedef struct worker_start {
    thread_pool *pool;
    int index;
} worker_start;

static atomic_uint pool_counter;

void (*_Atomic cf__thread_pool_before_grow)(cf_executor *ex);

/* ------------------------------------------------------------------------ */
/* The queue                                                                */

static void push(thread_pool *p, cf_future *f)
{
    atomic_store_explicit(&f->next, NULL, memory_order_relaxed);
    /* Sequentially consistent: this exchange is what publishes the future
     * to an idle worker's last look at the queue (see has_work). */
    cf_future *prev = atomic_exchange_explicit(&p->tail, f,
                                               memory_order_seq_cst);
    atomic_store_explicit(&prev->next, f, memory_order_release);
}

static cf_future *head_of(thread_pool *p)
{
    return atomic_load_explicit(&p->head, memory_order_relaxed);
}

/* Pops one future, or NULL when the queue is empty or a push is half done.
 * pop_lock held. */
static cf_future *pop(thread_pool *p)
{
    cf_future *head = head_of(p);
    cf_future *next = atomic_load_explicit(&head->next, memory_order_acquire);
    if (head == &p->stub) {
        if (!next)
            return NULL;
        atomic_store_explicit(&p->head, next, memory_order_relaxed);
        head = next;
        next = atomic_load_explicit(&next->next, memory_order_acquire);
    }
    if (!next) {
        /* `head` may be the last node: put the stub behind it so it can be
         * taken. If a push is under way, wait for it instead. */
        if (atomic_load_explicit(&p->tail, memory_order_acquire) != head)
            return NULL;
        push(p, &p->stub);
        next = atomic_load_explicit(&head->next, memory_order_acquire);
        if (!next)
            return NULL;
    }
    atomic_store_explicit(&p->head, next, memory_order_relaxed);
    return head;
}

/* True if a future is queued, counting one whose push is half done. The
 * head is a real future until it is popped; with the stub at the head, the
 * queue is empty only while the stub is also the tail, which every push
 * changes first. The tail is read last and only when the links show
 * nothing: searching workers poll the links, and leave the tail's line to
 * the submitters. */
static bool has_work(thread_pool *p)
{
    if (atomic_load(&p->head) != &p->stub ||
        atomic_load_explicit(&p->stub.next, memory_order_acquire) != NULL)
        return true;
    return atomic_load(&p->tail) != &p->stub;
}

/* Pops a future if the queue has one, retrying over half-done pushes.
 * pop_lock held. */
static cf_future *pop_available(thread_pool *p)
{
    for (unsigned spins = 0; has_work(p); spins++) {
        cf_future *f = pop(p);
        if (f)
            return f;
        /* A submitter is between its exchange and its link: a few
         * instructions, unless it was preempted. */
        if (spins < 64)
            cf__cpu_relax();
        else
            cf__yield();
    }
    return NULL;
}

/* Detaches everything queued (a push still half done stays behind, for a
 * worker or a draining submit). pop_lock held. Returns a list linked
 * through next. */
static cf_future *take_all(thread_pool *p)
{
    cf_future *first = NULL, *last = NULL, *f;
    while ((f = pop_available(p)) != NULL) {
        atomic_store_explicit(&f->next, NULL, memory_order_relaxed);
        if (last)
            atomic_store_explicit(&last->next, f, memory_order_relaxed);
        else
            first = f;
        last = f;
    }
    return first;
}

static cf_future *list_next(cf_future *f)
{
    return atomic_load_explicit(&f->next, memory_order_relaxed);
}

/* ------------------------------------------------------------------------ */
/* Closing                                                                  */

/* Closes the pool to new work. pool lock held. */
static void close_pool(thread_pool *p)
{
    atomic_store(&p->closed, true);
    atomic_store(&p->stopping, true);
}

static void fail_all(cf_future *f, const char *message)
{
    while (f) {
        cf_future *next = list_next(f);
        cf__future_finish(f, NULL, NULL, CF_EBROKEN_THREAD_POOL,
                          cf__strdup(message));
        cf_future_release(f);
        f = next;
    }
}

static void cancel_all(cf_future *f)
{
    while (f) {
        cf_future *next = list_next(f);
        cf__future_cancel(f);
        cf_future_release(f);
        f = next;
    }
}

/* The initializer failed on this thread: break the pool (Python's
 * BrokenThreadPool). Pending futures fail; later submits are refused. */
static void break_pool(thread_pool *p, int code)
{
    char *message = cf__format("a thread initializer failed (returned %d): "
                               "the thread pool is not usable anymore",
                               code);
    cf__mutex_lock(&p->lock);
    if (!atomic_load(&p->broken)) {
        p->broken_message = message;
        message = NULL;
        atomic_store(&p->broken, true);
    }
    close_pool(p);
    cf__spin_lock(&p->pop_lock);
    cf_future *queued = take_all(p);
    cf__spin_unlock(&p->pop_lock);
    cf__mutex_unlock(&p->lock);
    free(message);
    cf__event_signal_all(&p->work);
    /* broken_message is written once, before `broken`, and never freed
     * before the pool is: safe to read without the lock. */
    fail_all(queued, p->broken_message ? p->broken_message
                                       : cf_strerror(CF_EBROKEN_THREAD_POOL));
}

/* ------------------------------------------------------------------------ */
/* Workers                                                                  */

/* Worker states: busy (running a task), searching (spinning on the queue)
 * or sleeping. Idle workers (searching plus sleeping, see idle_workers())
 * count for the decision to start a thread. A sleeper needs waking only when nobody
 * searches, since a searcher takes the task without a system call; so a
 * submit reads n_sleeping (which changes rarely) and only when it is
 * nonzero n_searching (which a worker keeping up with its submitter
 * changes on every task). A searcher that takes a task while more wait
 * wakes the next sleeper (the wake-ups chain). All of it is the Dekker
 * pattern: a worker counts itself asleep, then stops counting itself as
 * searching, then takes its last look at the queue; a submit links its
 * future, then reads the counts; all sequentially consistent. */

static bool should_wake(thread_pool *p)
{
    return atomic_load(&p->n_sleeping) > 0 &&
           atomic_load(&p->n_searching) == 0;
}

/* Searching plus sleeping workers. A worker falling asleep or waking
 * raises one count before it lowers the other, so the sum may read one too
 * high for a moment but never too low: zero means no worker is idle. */
static int idle_workers(thread_pool *p)
{
    return atomic_load(&p->n_searching) + atomic_load(&p->n_sleeping);
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

/* Spins, then sleeps, until there is work or the pool stops; the worker is
 * searching on entry and on return. Returns false when it should exit. */
static bool wait_for_work(thread_pool *p)
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
    if (!has_work(p) && !atomic_load(&p->stopping)) {
        atomic_fetch_add(&p->n_sleeping, 1);
        atomic_fetch_sub(&p->n_searching, 1);
        for (;;) {
            unsigned seq = cf__event_seq(&p->work);
            if (has_work(p) || atomic_load(&p->stopping))
                break;
            cf__event_wait(&p->work, seq, CF__NO_DEADLINE);
        }
        atomic_fetch_add(&p->n_searching, 1);
        atomic_fetch_sub(&p->n_sleeping, 1);
    }
    return has_work(p) || !atomic_load(&p->stopping);
}

/* Runs a popped future. If the queue is empty, the worker starts searching
 * *before* completing the future: a caller that waits for this result and
 * submits again must find an idle worker rather than start a thread (idle
 * threads are reused). Returns whether it is searching. */
static bool run(thread_pool *p, cf_future *f)
{
    if (cf_future_set_running_or_notify_cancel(f) != CF_OK)
        return false; /* cancelled while queued */
    cf__outcome outcome;
    cf__invoke(f, f->start.task.fn, f->start.task.arg, &outcome);
    bool searching = !has_work(p);
    if (searching)
        become_searching(p);
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

static void *worker_main(void *arg)
{
    worker_start start = *(worker_start *)arg;
    free(arg);
    thread_pool *p = start.pool;
    worker_slot *slot = &p->slots[start.index];
    cf__current_pool = p->executor;

    if (p->initializer) {
        int rc = p->initializer(p->initarg);
        if (rc != 0)
            break_pool(p, rc);
    }
    cf_future *finished = NULL;
    bool searching = false;
    for (;;) {
        cf__spin_lock(&p->pop_lock);
        cf_future *f = pop_available(p);
        slot->running = f;
        cf__spin_unlock(&p->pop_lock);
        /* Released only now, with no lock held: its last release may run
         * a user's result destructor. */
        cf_future_release(finished);
        finished = NULL;
        if (f) {
            if (searching)
                found_work(p);
            searching = run(p, f);
            finished = f;
            continue;
        }
        if (!searching)
            become_searching(p);
        searching = true;
        if (!wait_for_work(p) && exit_if_no_work(p))
            break;
    }
    cf__current_pool = NULL;
    return NULL;
}

/* Starts one more worker. pool lock held. */
static int start_worker(thread_pool *p)
{
    worker_start *start = malloc(sizeof *start);
    if (!start)
        return CF_ENOMEM;
    int index = atomic_load(&p->n_threads);
    start->pool = p;
    start->index = index;
    char name[32];
    snprintf(name, sizeof name, "%s_%d", p->name_prefix, index);
    int rc = cf__thread_create(&p->threads[index], worker_main, start, name);
    if (rc != CF_OK) {
        free(start);
        return rc;
    }
    atomic_store(&p->n_threads, index + 1);
    p->n_alive++;
    return CF_OK;
}

/* No worker could be started and none is alive, so nothing will run what
 * is queued. Fails everything queued but `own` (whose submit reports the
 * error instead). Returns true if `own` was found and dropped. pool lock
 * held; no push can be under way for futures other than those whose
 * submitters wait for this lock. */
static bool abandon_queue(thread_pool *p, cf_future *own, int rc)
{
    cf__spin_lock(&p->pop_lock);
    cf_future *f = NULL, *list = NULL;
    bool found = false;
    while ((f = pop(p)) != NULL) {
        if (f == own) {
            found = true;
            continue;
        }
        atomic_store_explicit(&f->next, list, memory_order_relaxed);
        list = f;
    }
    cf__spin_unlock(&p->pop_lock);
    while (list) {
        cf_future *next = list_next(list);
        cf__future_finish(list, NULL, NULL, rc,
                          cf__strdup("no worker thread could be started"));
        cf_future_release(list);
        list = next;
    }
    return found;
}

/* A submit pushed `f` while the pool was closing. If a worker is still
 * alive it will see `f` before it may exit (both decide under the lock).
 * If none is, nothing would run `f`: drain the queue here, withdraw `f`
 * and cancel what other racing submits left. */
static int submit_raced_close(thread_pool *p, cf_future *f)
{
    cf__mutex_lock(&p->lock);
    if (p->n_alive > 0) {
        cf__mutex_unlock(&p->lock);
        return CF_OK;
    }
    cf__spin_lock(&p->pop_lock);
    cf_future *queued = take_all(p);
    cf__spin_unlock(&p->pop_lock);
    int rc = atomic_load(&p->broken) ? CF_EBROKEN_THREAD_POOL : CF_ESHUTDOWN;
    cf__mutex_unlock(&p->lock);
    bool withdrawn = false;
    while (queued) {
        cf_future *next = list_next(queued);
        if (queued == f)
            withdrawn = true;
        else
            cf__future_cancel(queued);
        cf_future_release(queued);
        queued = next;
    }
    return withdrawn ? rc : CF_OK; /* someone else cancelled ours */
}

/* Starts a worker if none is idle and the pool may grow. Returns CF_OK, or
 * the error for `f` (already queued) if it was withdrawn. */
static int grow(thread_pool *p, cf_future *f)
{
    int rc = CF_OK;
    cf__mutex_lock(&p->lock);
    if (p->shutdown) {
        /* Shut down since this submit saw the pool open: no worker may
         * start now, and if none ever started, nothing would run `f`. */
        cf__mutex_unlock(&p->lock);
        return submit_raced_close(p, f);
    }
    /* Re-check under the lock: an idle worker may have taken the task
     * already (it was counted idle until then), and a task no longer
     * queued needs no new thread. */
    if (idle_workers(p) == 0 && has_work(p) &&
        atomic_load(&p->n_threads) < p->max_workers) {
        rc = start_worker(p);
        if (rc != CF_OK && p->n_alive == 0) {
            if (abandon_queue(p, f, rc)) {
                cf__mutex_unlock(&p->lock);
                cf_future_release(f); /* the queue's reference */
                return rc;
            }
        }
        rc = CF_OK; /* live workers will run it */
    }
    cf__mutex_unlock(&p->lock);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Executor operations                                                      */

/* True in a child of fork(): the pool's threads live in the parent, and
 * its locks may have been held there at the fork. */
static bool inherited(const thread_pool *p)
{
    return p->fork_generation != cf__fork_generation();
}

static int pool_submit(void *impl, cf_future *f, cf_fn fn, void *arg,
                       const cf_codec *codec)
{
    (void)codec; /* threads share memory: nothing crosses as bytes */
    thread_pool *p = impl;
    if (inherited(p))
        return CF_EBROKEN_THREAD_POOL;
    if (atomic_load(&p->closed))
        return atomic_load(&p->broken) ? CF_EBROKEN_THREAD_POOL
                                       : CF_ESHUTDOWN;
    f->start.task.fn = fn;
    f->start.task.arg = arg;
    /* The queue's reference. The future was allocated by this submit and
     * nobody else can see it yet, so a plain store does what an atomic
     * increment would, without its cost. */
    atomic_store_explicit(&f->refs,
                          atomic_load_explicit(&f->refs,
                                               memory_order_relaxed) + 1,
                          memory_order_relaxed);
    push(p, f);
    if (atomic_load(&p->stopping))
        return submit_raced_close(p, f);
    if (should_wake(p)) {
        cf__event_signal_one(&p->work);
        return CF_OK;
    }
    /* Once the pool is full, a submit never reads the busy idle count. */
    if (atomic_load_explicit(&p->n_threads, memory_order_relaxed) <
            p->max_workers &&
        idle_workers(p) == 0) {
        void (*hook)(cf_executor *) = atomic_load_explicit(
            &cf__thread_pool_before_grow, memory_order_relaxed);
        if (hook)
            hook(p->executor);
        return grow(p, f);
    }
    return CF_OK;
}

/* Tasks queued or running, not done. pop_lock held. */
static size_t count_unfinished(thread_pool *p)
{
    size_t n = 0;
    for (cf_future *f = head_of(p); f; f = list_next(f))
        if (f != &p->stub && !cf__state_done(cf__future_state(f)))
            n++;
    int started = atomic_load(&p->n_threads);
    for (int i = 0; i < started; i++)
        if (p->slots[i].running)
            n++;
    return n;
}

static void join_exited(thread_pool *p)
{
    cf__mutex_lock(&p->join_lock);
    int started = atomic_load(&p->n_threads);
    for (; p->n_joined < started; p->n_joined++)
        cf__thread_join(p->threads[p->n_joined]);
    cf__mutex_unlock(&p->join_lock);
}

static int pool_shutdown(void *impl, double timeout, bool cancel_futures,
                         size_t *unfinished)
{
    thread_pool *p = impl;
    if (inherited(p))
        return CF_OK; /* nothing of it runs in this process */
    cf_future *cancelled = NULL;
    cf__mutex_lock(&p->lock);
    p->shutdown = true;
    close_pool(p);
    if (cancel_futures) {
        cf__spin_lock(&p->pop_lock);
        cancelled = take_all(p);
        int started = atomic_load(&p->n_threads);
        for (int i = 0; i < started; i++)
            if (p->slots[i].running)
                atomic_store_explicit(&p->slots[i].running->cancel_requested,
                                      true, memory_order_relaxed);
        cf__spin_unlock(&p->pop_lock);
    }
    cf__mutex_unlock(&p->lock);
    cf__event_signal_all(&p->work);
    cancel_all(cancelled);
    if (timeout == 0)
        return CF_OK;

    int64_t deadline;
    cf__deadline_from_timeout(timeout, &deadline);
    cf__mutex_lock(&p->lock);
    while (p->n_alive > 0) {
        if (!cf__cond_timedwait(&p->threads_done, &p->lock, deadline) &&
            p->n_alive > 0) {
            cf__spin_lock(&p->pop_lock);
            *unfinished = count_unfinished(p);
            cf__spin_unlock(&p->pop_lock);
            cf__mutex_unlock(&p->lock);
            return CF_ETIMEDOUT;
        }
    }
    cf__mutex_unlock(&p->lock);
    join_exited(p);
    return CF_OK;
}

static void pool_destroy(void *impl)
{
    thread_pool *p = impl;
    if (inherited(p)) {
        /* Its locks may be held by parent threads that do not exist here,
         * and its thread handles are the parent's: release memory only.
         * The futures still queued belong to the parent's copy. */
        free(p->broken_message);
        free(p->threads);
        free(p->slots);
        free(p);
        return;
    }
    cf__mutex_destroy(&p->join_lock);
    cf__cond_destroy(&p->threads_done);
    cf__mutex_destroy(&p->lock);
    cf__event_destroy(&p->work);
    free(p->broken_message);
    free(p->threads);
    free(p->slots);
    free(p);
}

static const cf_executor_ops thread_pool_ops = {
    .kind = "thread_pool",
    .submit = pool_submit,
    .shutdown = pool_shutdown,
    .destroy = pool_destroy,
};

/* ------------------------------------------------------------------------ */
/* Construction                                                             */

static int default_workers(void)
{
    int n = cf__cpu_count() + 4;
    return n < 32 ? n : 32;
}

static int init_sync(thread_pool *p)
{
    int rc;
    if ((rc = cf__mutex_init(&p->lock)) != CF_OK)
        goto fail_lock;
    if ((rc = cf__cond_init(&p->threads_done)) != CF_OK)
        goto fail_threads_done;
    if ((rc = cf__mutex_init(&p->join_lock)) != CF_OK)
        goto fail_join_lock;
    cf__event_init(&p->work);
    return CF_OK;
fail_join_lock:
    cf__cond_destroy(&p->threads_done);
fail_threads_done:
    cf__mutex_destroy(&p->lock);
fail_lock:
    return rc;
}

static void init_queue(thread_pool *p)
{
    atomic_init(&p->stub.next, NULL);
    atomic_init(&p->tail, &p->stub);
    atomic_init(&p->head, &p->stub);
    atomic_init(&p->closed, false);
    atomic_init(&p->pop_lock.held, false);
    atomic_init(&p->n_sleeping, 0);
    atomic_init(&p->n_searching, 0);
    atomic_init(&p->n_threads, 0);
    atomic_init(&p->stopping, false);
    atomic_init(&p->broken, false);
}

int cf_thread_pool_new(const cf_thread_pool_options *opts, cf_executor **out)
{
    static const cf_thread_pool_options defaults = {0};
    if (!out)
        return CF_EINVAL;
    if (!opts)
        opts = &defaults;
    if (opts->max_workers < 0)
        return CF_EINVAL;

    int rc = CF_ENOMEM;
    thread_pool *p = aligned_alloc(64, (sizeof *p + 63) / 64 * 64);
    if (!p)
        return CF_ENOMEM;
    memset(p, 0, sizeof *p);
    init_queue(p);
    p->max_workers = opts->max_workers ? opts->max_workers : default_workers();
    p->max_searching = cf__cpu_count() / 2 > 1 ? cf__cpu_count() / 2 : 1;
    p->threads = calloc((size_t)p->max_workers, sizeof *p->threads);
    p->slots = calloc((size_t)p->max_workers, sizeof *p->slots);
    if (!p->threads || !p->slots)
        goto fail_alloc;
    p->initializer = opts->initializer;
    p->initarg = opts->initarg;
    cf__fork_hook_install();
    p->fork_generation = cf__fork_generation();
    if (opts->thread_name_prefix && *opts->thread_name_prefix)
        snprintf(p->name_prefix, sizeof p->name_prefix, "%s",
                 opts->thread_name_prefix);
    else
        snprintf(p->name_prefix, sizeof p->name_prefix, "cfpool%u",
                 atomic_fetch_add(&pool_counter, 1));
    if ((rc = init_sync(p)) != CF_OK)
        goto fail_alloc;
    if ((rc = cf_executor_new(&thread_pool_ops, p, &p->executor)) != CF_OK)
        goto fail_executor;
    *out = p->executor;
    return CF_OK;
fail_executor:
    cf__event_destroy(&p->work);
    cf__mutex_destroy(&p->join_lock);
    cf__cond_destroy(&p->threads_done);
    cf__mutex_destroy(&p->lock);
fail_alloc:
    free(p->threads);
    free(p->slots);
    free(p);
    return rc;
}
