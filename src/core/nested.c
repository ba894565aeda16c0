/* nested.c - waits from inside a task: they help, and they never deadlock
 * silently.
 *
 * Design: cf__invoke() records in cf__running the future whose task this
 * thread runs (putting back the one before when it returns), so a wait
 * knows whether it is called from a task, and from which. Such a wait
 * does two things a wait from an ordinary thread does not:
 *
 * - Helping. A thread pool's worker has a tag (cf__helping_tag), and the
 *   futures queued in that pool carry it (cf_future.pool_tag). A worker
 *   whose task waits for a future still queued in its own pool claims it
 *   (PENDING -> RUNNING, the step a worker takes to start a task) and
 *   runs it right here, nested on its stack; the worker that later pops
 *   it finds it started and skips it, as it skips a cancelled one. So a
 *   task that submits and waits, or a recursive divide-and-conquer,
 *   completes however few workers the pool has: when all are busy, each
 *   runs what it waits for itself. Only what the task waits for is run
 *   (no unrelated task that might itself wait for the suspended one), and
 *   only from its own pool (a task may count on its pool's initializer or
 *   thread_main having run on the thread).
 *
 * - Deadlock detection. A task about to block registers "my future waits
 *   for X" in a global registry, under its lock. If following those edges
 *   from X (X's task waits for Y, Y's for Z...) comes back to the task's
 *   own future, the wait would never end: it returns CF_EDEADLK instead.
 *   Registrations are serialised, so of two tasks closing a cycle at once
 *   exactly one finds it. A worker that helps is registered as waiting
 *   for the future it runs (it cannot resume before that one returns).
 *   A wait for any of several futures (FIRST_COMPLETED, as_completed) is
 *   a deadlock only when every future not yet done leads back; while it
 *   waits, it is an edge only if just one is left. One that finished
 *   after the caller's last look may end the wait: the caller looks at
 *   its condition again before it reports the deadlock.
 *
 * - Compensation. A wait that still blocks (what it waits for runs on
 *   another thread, is a bare future, or belongs to another pool) tells
 *   the worker's thread pool, which may then run one thread more while it
 *   blocks (threads/sizing.c, up to its max_compensating): queued work
 *   that the blocked task's progress depends on (A waits for B, running
 *   elsewhere, which waits for C, queued) still runs when every worker
 *   waits, and so does a pool whose workers wait for another pool's
 *   queued tasks. Told only after the cycle check passed: a cycle is
 *   CF_EDEADLK and starts no thread.
 *
 * Cycles through futures that no task runs (a bare future that some task
 * would complete by hand) are not seen (README, "Waits inside tasks").
 *
 * Lock order: the registry lock is a leaf: nothing else is taken under it
 * but future states read without locks. The pool lock (taken to
 * compensate) is taken with no registry lock held.
 */
#include "core/core.h"

#include <pthread.h>

_Thread_local cf_future *cf__running;
_Thread_local uint8_t cf__helping_tag;

static struct {
    pthread_mutex_t lock;
    cf__wait_frame *head; /* the waits of tasks */
    size_t n;
} registry = {PTHREAD_MUTEX_INITIALIZER, NULL, 0};

/* ------------------------------------------------------------------------ */
/* The registry                                                             */

/* The waiting frame of the task whose future is `f`, or NULL. lock held. */
static cf__wait_frame *waiting_frame_of(const cf_future *f)
{
    for (cf__wait_frame *fr = registry.head; fr; fr = fr->next)
        if (fr->running == f)
            return fr;
    return NULL;
}

/* True if waiting for `f` would wait, through the registered edges, for
 * `me` itself. lock held. */
static bool leads_to(const cf_future *f, const cf_future *me)
{
    /* No cycle can be registered (the frame that would close one is
     * refused), so a walk is at most as long as the registry. */
    for (size_t steps = 0; f && steps <= registry.n; steps++) {
        if (f == me)
            return true;
        cf__wait_frame *fr = waiting_frame_of(f);
        f = fr ? fr->waiting_on : NULL;
    }
    return false;
}

static void enter(cf__wait_frame *fr, cf_future *waiting_on)
{
    fr->running = cf__running;
    fr->waiting_on = waiting_on;
    fr->prev = NULL;
    fr->next = registry.head;
    if (fr->next)
        fr->next->prev = fr;
    registry.head = fr;
    registry.n++;
}

static void leave(cf__wait_frame *fr)
{
    pthread_mutex_lock(&registry.lock);
    if (fr->prev)
        fr->prev->next = fr->next;
    else
        registry.head = fr->next;
    if (fr->next)
        fr->next->prev = fr->prev;
    registry.n--;
    pthread_mutex_unlock(&registry.lock);
}

/* ------------------------------------------------------------------------ */
/* Helping                                                                  */

/* True if this thread may run `f` in place: it is a pool worker and `f`
 * is queued, unstarted, in that same pool. */
static bool runnable_here(const cf_future *f)
{
    return cf__helping_tag != 0 &&
           atomic_load_explicit(&f->pool_tag, memory_order_acquire) ==
               cf__helping_tag &&
           cf__future_state(f) == CF__PENDING;
}

/* Claims `f` and runs its task on this thread, registered as waiting for
 * it meanwhile. Returns false if another worker started it first. */
/* Claims `f` and runs its task on this thread, registered as waiting for
 * it meanwhile. Returns false if another worker started it first. */
static bool run_here(cf_future *f)
{
    int expected = CF__PENDING;
    if (!atomic_compare_exchange_strong_explicit(&f->state, &expected,
                                                 CF__RUNNING,
                                                 memory_order_acq_rel,
                                                 memory_order_acquire))
        return false;
    /* Ours now: its task words stay as the submit left them. */
    cf__wait_frame fr;
    pthread_mutex_lock(&registry.lock);
    enter(&fr, f);
    pthread_mutex_unlock(&registry.lock);
    cf__run_task(f, f->start.task.fn, f->start.task.arg);
    leave(&fr);
    return true;
}

cf_future *cf__nested_help_one(cf_future *const *fs, size_t n,
                               size_t *cursor)
{
    if (!cf__running || cf__helping_tag == 0)
        return NULL;
    /* A future that cannot be run here now never can (it started, or is
     * not this pool's): each is looked at once over all calls. */
    for (; *cursor < n; ++*cursor) {
        cf_future *f = fs[*cursor];
        if (runnable_here(f) && run_here(f)) {
            ++*cursor;
            return f;
        }
    }
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Waiting                                                                  */

int cf__nested_wait(cf_future *f, int64_t deadline_ns, int done_from)
{
    if (cf__future_state(f) >= done_from)
        return CF_OK;
    if (f == cf__running)
        return CF_EDEADLK; /* a task waiting for its own future */
    if (deadline_ns != CF__NO_DEADLINE && cf__now_ns() >= deadline_ns)
        return CF_ETIMEDOUT; /* a poll runs nothing */
    if (runnable_here(f) && run_here(f))
        return CF_OK; /* done: it ran here */
    cf__wait_frame fr;
    pthread_mutex_lock(&registry.lock);
    if (leads_to(f, cf__running)) {
        pthread_mutex_unlock(&registry.lock);
        return CF_EDEADLK;
    }
    enter(&fr, f);
    pthread_mutex_unlock(&registry.lock);
    cf__thread_pool_blocking(true);
    bool done = cf__future_block(f, deadline_ns, done_from);
    cf__thread_pool_blocking(false);
    leave(&fr);
    return done ? CF_OK : CF_ETIMEDOUT;
}

void (*_Atomic cf__nested_before_check)(void);

/* Waits until every future of fs[0..n) that is done has also notified
 * its waiters: its completer notifies them under its lock, after the
 * state turned done. */
static void settle_done(cf_future *const *fs, size_t n, int done_from)
{
    for (size_t i = 0; i < n; i++)
        if (cf__future_state(fs[i]) >= done_from) {
            cf__spin_lock(&fs[i]->lock);
            cf__spin_unlock(&fs[i]->lock);
        }
}

int cf__nested_begin_wait(cf__wait_frame *fr, cf_future *const *fs,
                          size_t n, int done_from)
{
    void (*hook)(void) = atomic_load_explicit(&cf__nested_before_check,
                                              memory_order_relaxed);
    if (hook)
        hook();
    cf_future *only = NULL;
    size_t pending = 0;
    bool way_out = false; /* a future not done that does not lead back */
    pthread_mutex_lock(&registry.lock);
    /* Enough is known once a way out and a second pending future are. */
    for (size_t i = 0; i < n && !(way_out && pending > 1); i++) {
        if (cf__future_state(fs[i]) >= done_from)
            continue;
        pending++;
        only = fs[i];
        if (!way_out && !leads_to(fs[i], cf__running))
            way_out = true;
    }
    if (pending > 0 && !way_out) {
        pthread_mutex_unlock(&registry.lock);
        /* One of the futures found done may have finished after the
         * caller last looked, and may end its wait: it is then no
         * deadlock. Once the done ones have notified, the caller's look
         * at its condition tells (the pending ones can only lead back). */
        if (pending < n)
            settle_done(fs, n, done_from);
        return CF_EDEADLK;
    }
    enter(fr, pending == 1 ? only : NULL);
    pthread_mutex_unlock(&registry.lock);
    cf__thread_pool_blocking(true);
    return CF_OK;
}

void cf__nested_end_wait(cf__wait_frame *fr)
{
    cf__thread_pool_blocking(false);
    leave(fr);
}
