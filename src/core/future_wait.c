/* future_wait.c - blocking until one future is done: the wait node a
 * waiter hangs on a future's list, and the spin-then-sleep wait that
 * cf_future_result(), cf_future_exception() and the executors use.
 *
 * Design: a waiter spins briefly (CF__WAIT_SPIN_NS: a hand-off on another
 * core is often that close), then installs a node on the future's waiter
 * list under the future's lock and sleeps on its own event.
 *
 * The spin depends on who completes the future. A pool's worker is
 * either running the task or asleep, so pausing on a CPU of our own is
 * the quick way to see it finish. A future marked completer_polls (the
 * MPI executor's: its communication thread polls MPI for the result) is
 * completed by a thread of this process that is awake and wants a CPU
 * for every poll; where CPUs are few (2 cores: the submitter, that thread
 * and the worker ranks' polls), a pausing waiter holds the CPU it needs,
 * so the result is seen only once the spin gives up (20 us a round trip,
 * measured: bench/mpi/README.md). Such a waiter yields at each turn
 * instead of pausing, for the same budget: with a free CPU elsewhere it
 * still sees the result at once without a futex wake-up; without one,
 * the polling thread runs in its place. The same spin (spin_until) serves
 * the waits on many futures (wait.c: cf_wait, as_completed), which yield
 * when any future they wait on is marked; a continuation or combinator
 * over a marked future is marked too (then.c, when.c), as the polling
 * thread starts the completions that end in it.
 *
 * Completers notify waiters while they hold the future's lock; a waiter
 * only frees its node after removing it under the same lock
 * (cf__wait_node_remove), so a notification never touches freed memory.
 * cf_wait and as_completed (wait.c) hang one node per future on a shared
 * waiter.
 */
#include "core/core.h"

bool cf__wait_node_install(cf_future *f, cf__wait_node *node)
{
    node->future = f;
    node->prev = NULL;
    int done_from = node->waiter->wakes_on_cancel ? CF__CANCELLED_UNNOTIFIED
                                                  : CF__CANCELLED;
    cf__spin_lock(&f->lock);
    if (atomic_load_explicit(&f->state, memory_order_relaxed) >= done_from) {
        node->linked = false;
        cf__spin_unlock(&f->lock);
        return false;
    }
    node->next = f->end.lists.waiters;
    if (node->next)
        node->next->prev = node;
    f->end.lists.waiters = node;
    node->linked = true;
    cf__spin_unlock(&f->lock);
    return true;
}

void cf__wait_node_remove(cf__wait_node *node)
{
    cf_future *f = node->future;
    cf__spin_lock(&f->lock);
    if (node->linked) {
        if (node->prev)
            node->prev->next = node->next;
        else
            f->end.lists.waiters = node->next;
        if (node->next)
            node->next->prev = node->prev;
        node->linked = false;
    }
    cf__spin_unlock(&f->lock);
}

static void notify_single(cf__waiter *w, cf__wait_node *node, cf_future *f)
{
    (void)node;
    (void)f;
    cf__event_signal_all(&w->event);
}

bool cf__future_set_completer_polls(cf_future *f)
{
    /* Only the holder of the only reference writes the plain field: no
     * other thread can see the future, so no waiter reads it meanwhile. */
    if (atomic_load_explicit(&f->refs, memory_order_acquire) != 1)
        return false;
    f->completer_polls = true;
    return true;
}

/* The spin before sleeping, the one policy of every wait here and in
 * wait.c: until ready(ctx), for CF__WAIT_SPIN_NS and never past the
 * deadline; pausing, or yielding at each turn when a completer polls
 * (`yields`: see the file's header), then at least once: the completer
 * gets one turn even if this thread was slow to get here. Returns true if
 * ready. Inline, so that `ready` is inlined into each loop. */
static inline bool spin_until(bool (*ready)(const void *ctx),
                              const void *ctx, bool yields,
                              int64_t deadline_ns)
{
    if (yields) {
        int64_t until = cf__now_ns() + CF__WAIT_SPIN_NS;
        if (until > deadline_ns)
            until = deadline_ns;
        do
            cf__yield();
        while (!ready(ctx) && cf__now_ns() < until);
        return ready(ctx);
    }
    int64_t until = 0;
    for (unsigned i = 0; !ready(ctx); i++) {
        if (!cf__spin_continue(i, &until, CF__WAIT_SPIN_NS) ||
            (until != 0 && until > deadline_ns))
            return false;
    }
    return true;
}

typedef struct seq_watch {
    cf__event *ev;
    unsigned seq;
} seq_watch;

static bool seq_moved(const void *ctx)
{
    const seq_watch *w = ctx;
    return cf__event_seq(w->ev) != w->seq;
}

bool cf__event_wait_spinning_for(cf__event *ev, unsigned seq,
                                 int64_t deadline_ns, bool completer_polls)
{
    seq_watch w = {.ev = ev, .seq = seq};
    if (spin_until(seq_moved, &w, completer_polls, deadline_ns))
        return true;
    return cf__event_wait(ev, seq, deadline_ns);
}

bool cf__event_wait_spinning(cf__event *ev, unsigned seq, int64_t deadline_ns)
{
    return cf__event_wait_spinning_for(ev, seq, deadline_ns, false);
}

typedef struct state_watch {
    cf_future *f;
    int done_from;
} state_watch;

static bool state_reached(const void *ctx)
{
    const state_watch *w = ctx;
    return cf__future_state(w->f) >= w->done_from;
}

/* Blocks until `f`'s state is at least `done_from` (CF__CANCELLED: done
 * for cf_wait; CF__CANCELLED_UNNOTIFIED: done for its result) or the
 * deadline passes. Returns true if done. */
static bool wait_done(cf_future *f, int64_t deadline_ns,
                             int done_from)
{
    if (deadline_ns != CF__NO_DEADLINE && cf__now_ns() >= deadline_ns)
        return cf__future_state(f) >= done_from; /* a poll */
    state_watch sw = {.f = f, .done_from = done_from};
    if (spin_until(state_reached, &sw, f->completer_polls, deadline_ns))
        return true;

    cf__waiter w;
    cf__wait_node node;
    cf__event_init(&w.event);
    w.notify = notify_single;
    w.wakes_on_cancel = done_from == CF__CANCELLED_UNNOTIFIED;
    node.waiter = &w;
    if (!cf__wait_node_install(f, &node)) {
        cf__event_destroy(&w.event);
        return true;
    }
    for (;;) {
        unsigned seq = cf__event_seq(&w.event);
        if (cf__future_state(f) >= done_from)
            break;
        if (!cf__event_wait(&w.event, seq, deadline_ns))
            break;
    }
    /* Also waits out a completer still notifying us under the lock. */
    cf__wait_node_remove(&node);
    cf__event_destroy(&w.event);
    return cf__future_state(f) >= done_from;
}

bool cf__future_block(cf_future *f, int64_t deadline_ns, int done_from)
{
    return wait_done(f, deadline_ns, done_from);
}

int cf__future_wait(cf_future *f, int64_t deadline_ns)
{
    if (cf__state_done(cf__future_state(f)))
        return CF_OK;
    if (cf__running)
        return cf__nested_wait(f, deadline_ns, CF__CANCELLED);
    return wait_done(f, deadline_ns, CF__CANCELLED) ? CF_OK : CF_ETIMEDOUT;
}

bool cf__future_wait_done(cf_future *f, int64_t deadline_ns)
{
    return cf__future_wait(f, deadline_ns) == CF_OK;
}

