/* future.c - the future state machine, references and callbacks (waiting
 * for one is future_wait.c).
 *
 * Design: states move PENDING -> RUNNING -> FINISHED, or PENDING ->
 * CANCELLED -> CANCELLED_NOTIFIED, or PENDING -> FINISHED (an executor
 * failing work that never ran). Every transition is a compare-and-swap on
 * `state`, so the hot PENDING -> RUNNING step takes no lock. Transitions
 * into a done state also hold `lock`, because they detach the waiter and
 * callback lists in the same step: a waiter or callback added under the
 * lock either sees the future done or is on the list the completer
 * detaches, never neither.
 *
 * A cancelled future is done for every observer at once (the spec's text,
 * not CPython's CANCELLED/CANCELLED_AND_NOTIFIED split): cancel notifies
 * waiters and runs callbacks before it returns. The first
 * set_running_or_notify_cancel() on it then only records the call
 * (CANCELLED -> CANCELLED_NOTIFIED), so that a second one is refused, as
 * the spec's "can only be called once" says.
 *
 * Under the stdlib's notify protocol (a bare Future() of the Python
 * binding) the split is CPython's: a cancel makes the future
 * CANCELLED_UNNOTIFIED, running its callbacks and waking the waiters that
 * wait for its result (wakes_on_cancel), while the waiters of cf_wait,
 * as_completed and completion queues stay on its list until
 * set_running_or_notify_cancel() moves it to CANCELLED_NOTIFIED and wakes
 * them. Until then its `end` union still holds that list.
 *
 * Waiters (future_wait.c) are notified while the completer holds the
 * future's lock. Callbacks run after the lock is dropped, in the
 * completing thread.
 */
#include "core/core.h"

#include <stdio.h>
#include <stdlib.h>

/* A future fits a 64-byte slab slot, a cache line (future_slab.c): keep
 * it so. */
_Static_assert(sizeof(void *) != 8 || sizeof(cf_future) == 64,
               "a future is 64 bytes on 64-bit targets");

/* A done-callback. The callback list also holds links (core.h) and
 * continuations (then.c), told apart by the low bits of their pointers
 * (all 8-byte aligned); each kind starts with the entry's (tagged) `next`:
 *   ENTRY_THEN      a continuation future waiting on this one: its own
 *                   `next` word (free until it is submitted) is the link.
 *                   Its tag is 0 (cf__series_goes_on, core.h): once the
 *                   list is put in order, a run of them is linked by plain
 *                   pointers, the series chain.c and then.c take as is
 *   ENTRY_LINK      a cf__link of a combinator or then_always
 *   ENTRY_CALLBACK  a cf__callback, malloc'd here
 *   ENTRY_INPUT     in a continuation's own list, always its oldest
 *                   entry and never followed: the input it waits on
 *                   (referenced), so that its end can detach from it;
 *                   or, with bit 2 set (never in a pointer), a data
 *                   entry (core.h), its data in the bits above */
typedef struct cf__callback {
    void *next;
    cf_done_fn fn;
    void *arg;
} cf__callback;

enum {
    ENTRY_THEN,
    ENTRY_LINK,
    ENTRY_CALLBACK,
    ENTRY_INPUT = CF__ENTRY_INPUT
};
_Static_assert(ENTRY_THEN == 0, "a series is linked by plain pointers");
#define ENTRY_TAGS ((uintptr_t)3)

static unsigned entry_kind(const void *entry)
{
    return (unsigned)((uintptr_t)entry & ENTRY_TAGS);
}

static void *entry_ptr(const void *entry)
{
    return (void *)((uintptr_t)entry & ~ENTRY_TAGS);
}

static void *tag_entry(const void *p, unsigned kind)
{
    return (void *)((uintptr_t)p | kind);
}

#define DATA_BIT ((uintptr_t)4)

/* An ENTRY_INPUT entry: a data entry rather than an input? */
static bool is_data(const void *entry)
{
    return (uintptr_t)entry & DATA_BIT;
}

static void *data_entry(uint64_t data)
{
    return (void *)(((uintptr_t)data << 3) | DATA_BIT | ENTRY_INPUT);
}

static uint64_t entry_data(const void *entry)
{
    return (uint64_t)((uintptr_t)entry >> 3);
}

/* Not for ENTRY_INPUT, which has no next. */
static void *entry_next(const void *entry)
{
    if (entry_kind(entry) == ENTRY_THEN)
        return atomic_load_explicit(&((cf_future *)entry_ptr(entry))->next,
                                    memory_order_relaxed);
    return *(void *const *)entry_ptr(entry);
}

static void set_entry_next(void *entry, void *next)
{
    if (entry_kind(entry) == ENTRY_THEN)
        atomic_store_explicit(&((cf_future *)entry_ptr(entry))->next,
                              (cf_future *)next, memory_order_relaxed);
    else
        *(void **)entry_ptr(entry) = next;
}

/* Frees a detached list without running it. Links belong to their
 * operations: only done-callbacks are freed, and the references of
 * continuations and inputs dropped. */
static void free_entries(void *entry)
{
    while (entry) {
        if (entry_kind(entry) == ENTRY_INPUT) {
            if (!is_data(entry))
                cf_future_release(entry_ptr(entry));
            return;
        }
        void *next = entry_next(entry);
        if (entry_kind(entry) == ENTRY_CALLBACK)
            free(entry_ptr(entry));
        else if (entry_kind(entry) == ENTRY_THEN)
            cf_future_release(entry_ptr(entry));
        entry = next;
    }
}

/* ------------------------------------------------------------------------ */
/* Callback failures                                                        */

static void default_callback_error(cf_future *f, int code, void *arg)
{
    (void)arg;
    fprintf(stderr, "cfutures: done-callback of future %p failed: %s (%d)\n",
            (void *)f, cf_strerror(code), code);
}

static struct {
    cf__spinlock lock;
    cf_callback_error_fn fn;
    void *arg;
} callback_error = {CF__SPINLOCK_INIT, default_callback_error, NULL};

void cf_set_callback_error_handler(cf_callback_error_fn handler, void *arg)
{
    cf__spin_lock(&callback_error.lock);
    callback_error.fn = handler ? handler : default_callback_error;
    callback_error.arg = handler ? arg : NULL;
    cf__spin_unlock(&callback_error.lock);
}

static void report_callback_error(cf_future *f, int code)
{
    cf__spin_lock(&callback_error.lock);
    cf_callback_error_fn fn = callback_error.fn;
    void *arg = callback_error.arg;
    cf__spin_unlock(&callback_error.lock);
    fn(f, code, arg);
}

/* Runs a detached callback list (newest first, as added) in the order
 * the entries were added, freeing each done-callback. A failing callback
 * is reported and the rest still run. Links and continuations are handed
 * to the run list (chain.c), which may free them: their `next` is read
 * first. A continuation's input, its oldest entry, goes first. */
static void run_callbacks(cf_future *f, void *newest)
{
    void *entry = NULL;
    while (newest) { /* reverse: one pass, whatever the kinds */
        if (entry_kind(newest) == ENTRY_INPUT) {
            if (is_data(newest))
                cf__monitor_data_done(f, entry_data(newest));
            else
                cf__then_self_done(f, entry_ptr(newest));
            break;
        }
        void *next = entry_next(newest);
        set_entry_next(newest, entry);
        entry = newest;
        newest = next;
    }
    while (entry) {
        if (entry_kind(entry) == ENTRY_THEN) {
            /* A run of continuations, in order now and linked by plain
             * pointers (their tag is 0), fires as one series (chain.c),
             * which hands back the entry after it. */
            entry = cf__chain_fire_thens(f, entry);
            continue;
        }
        void *next = entry_next(entry);
        if (entry_kind(entry) == ENTRY_LINK) {
            cf__chain_fire(entry_ptr(entry));
        } else {
            cf__callback *cb = entry_ptr(entry);
            int rc = cb->fn(f, cb->arg);
            if (rc != 0)
                report_callback_error(f, rc);
            free(cb);
        }
        entry = next;
    }
}

/* ------------------------------------------------------------------------ */
/* Life cycle                                                               */

/* A fresh future's words: pending, with `refs` references, the start
 * words and the callback list given. Nobody else sees the future yet: no
 * store here needs ordering (a plain assignment to an atomic would be a
 * full barrier, stalling the submit on the fresh memory's cache miss). */
static inline void init(cf_future *f, cf_fn fn, void *arg, void *callbacks,
                        unsigned refs, bool completer_polls)
{
    atomic_store_explicit(&f->next, NULL, memory_order_relaxed);
    f->start.task.fn = fn;
    f->start.task.arg = arg;
    f->end.lists.waiters = NULL;
    f->end.lists.callbacks = callbacks;
    atomic_init(&f->state, CF__PENDING);
    atomic_init(&f->refs, refs);
    atomic_init(&f->cancel_requested, false);
    atomic_init(&f->lock.held, false);
    f->has_cancel_hook = false;
    f->failed = false;
    f->notify_protocol = false;
    f->completer_polls = completer_polls;
    atomic_init(&f->pool_tag, 0);
    f->dependents = 0;
}

cf_future *cf__future_alloc(void)
{
    cf_future *f = cf__future_mem_alloc();
    if (f)
        init(f, NULL, NULL, NULL, 1, false);
    return f;
}

void cf__future_use_notify_protocol(cf_future *f)
{
    f->notify_protocol = true;
}

int cf_future_new(cf_future **out)
{
    if (!out)
        return CF_EINVAL;
    cf_future *f = cf__future_alloc();
    if (!f)
        return CF_ENOMEM;
    *out = f;
    return CF_OK;
}

cf_future *cf_future_retain(cf_future *f)
{
    if (f)
        atomic_fetch_add_explicit(&f->refs, 1, memory_order_relaxed);
    return f;
}

/* Futures this thread is freeing whose results have destructors, which
 * may release more futures (a when_all's value holds its inputs, which may
 * be when_alls...): those wait on this list, linked through `next` (the
 * future is dead), and the outermost release frees them in a loop, so a
 * nest of any depth is freed in constant stack. */
static _Thread_local struct {
    cf_future *head;
    bool freeing;
} dying;

/* The last release of a finished future whose result has a destructor.
 * Out of line: most futures have none. */
__attribute__((noinline)) static void release_owned(cf_future *f)
{
    atomic_store_explicit(&f->next, dying.head, memory_order_relaxed);
    dying.head = f;
    if (dying.freeing)
        return;
    dying.freeing = true;
    while ((f = dying.head) != NULL) {
        dying.head = atomic_load_explicit(&f->next, memory_order_relaxed);
        f->end.value.free_result(f->end.value.result);
        cf__future_mem_free(f);
    }
    dying.freeing = false;
}

void cf_future_release(cf_future *f)
{
    if (!f)
        return;
    /* acq_rel: the last releaser must see every write made by the others. */
    if (atomic_fetch_sub_explicit(&f->refs, 1, memory_order_acq_rel) != 1)
        return;
    int state = atomic_load_explicit(&f->state, memory_order_relaxed);
    if (state == CF__FINISHED && f->failed) {
        free(f->end.failure.message);
    } else if (state == CF__FINISHED) {
        if (f->end.value.free_result && f->end.value.result) {
            release_owned(f);
            return;
        }
    } else if (!cf__state_cancelled(state)) {
        /* Released while pending: its callbacks will now never run; free
         * them. No waiter can be left: waiters hold references. */
        free_entries(f->end.lists.callbacks);
    }
    cf__future_mem_free(f);
}

void cf__future_release_n(cf_future *f, unsigned n)
{
    /* All but one in one step: the last goes the usual way, in case it is
     * the future's last. Release: this thread's writes before either. */
    if (n > 1)
        atomic_fetch_sub_explicit(&f->refs, n - 1, memory_order_release);
    cf_future_release(f);
}

/* ------------------------------------------------------------------------ */
/* Transitions                                                              */

/* Notifies every waiter of a detached list. Called with f->lock held. */
static void notify_waiters(cf_future *f, cf__wait_node *node)
{
    while (node) {
        cf__wait_node *next = node->next;
        node->linked = false;
        node->waiter->notify(node->waiter, node, f);
        node = next;
    }
}

/* Cancels a PENDING notify-protocol future: CANCELLED_UNNOTIFIED. Its
 * callbacks run and the waiters that wake on a cancel are unlinked and
 * notified; the others stay. Called with f->lock held; drops it. Returns
 * the state found, as complete() does. */
static int cancel_unnotified(cf_future *f, int state)
{
    /* Only the start of a task races with us, without the lock. */
    if (!atomic_compare_exchange_strong_explicit(&f->state, &state,
                                                 CF__CANCELLED_UNNOTIFIED,
                                                 memory_order_acq_rel,
                                                 memory_order_acquire)) {
        cf__spin_unlock(&f->lock);
        return state;
    }
    void *callbacks = f->end.lists.callbacks;
    f->end.lists.callbacks = NULL;
    cf__wait_node *node = f->end.lists.waiters;
    while (node) {
        cf__wait_node *next = node->next;
        if (node->waiter->wakes_on_cancel) {
            if (node->prev)
                node->prev->next = next;
            else
                f->end.lists.waiters = next;
            if (next)
                next->prev = node->prev;
            node->linked = false;
            node->waiter->notify(node->waiter, node, f);
        }
        node = next;
    }
    cf__spin_unlock(&f->lock);
    run_callbacks(f, callbacks);
    return CF__PENDING;
}

/* CANCELLED_UNNOTIFIED -> CANCELLED_NOTIFIED, waking the waiters left on
 * the future. Returns false if the future was not CANCELLED_UNNOTIFIED
 * (another call got there first). */
static bool notify_cancel(cf_future *f)
{
    cf__spin_lock(&f->lock);
    if (atomic_load_explicit(&f->state, memory_order_relaxed) !=
        CF__CANCELLED_UNNOTIFIED) {
        cf__spin_unlock(&f->lock);
        return false;
    }
    cf__wait_node *waiters = f->end.lists.waiters;
    f->end.lists.waiters = NULL;
    atomic_store_explicit(&f->state, CF__CANCELLED_NOTIFIED,
                          memory_order_release);
    notify_waiters(f, waiters);
    cf__spin_unlock(&f->lock);
    return true;
}

/* Moves `f` from one of the states allowed by `from_mask` (bits of enum
 * cf__state) to the done state `to`, storing the outcome first. Returns
 * the state found: the transition happened iff it is in from_mask. */
static int complete(cf_future *f, unsigned from_mask, int to, void *result,
                    void (*free_result)(void *), int code, char *message)
{
    cf__spin_lock(&f->lock);
    int state = atomic_load_explicit(&f->state, memory_order_relaxed);
    if (cf__state_cancelled(to) && state == CF__PENDING &&
        f->has_cancel_hook && !f->start.cancel_hook.fn(f)) {
        /* Started already where only the hook could see it. */
        atomic_compare_exchange_strong_explicit(&f->state, &state, CF__RUNNING,
                                                memory_order_acq_rel,
                                                memory_order_acquire);
        cf__spin_unlock(&f->lock);
        return state == CF__PENDING ? CF__RUNNING : state;
    }
    if (!(from_mask & (1u << state))) {
        cf__spin_unlock(&f->lock);
        return state;
    }
    if (to == CF__CANCELLED_UNNOTIFIED)
        return cancel_unnotified(f, state);
    /* The lists give way to the outcome, which must be visible before the
     * done state is. Only the start of a task races with us (PENDING to
     * RUNNING, without the lock), so the CAS may need a second try; if the
     * new state is not one we complete from, the lists go back. */
    cf__wait_node *waiters = f->end.lists.waiters;
    void *callbacks = f->end.lists.callbacks;
    /* Every way out of RUNNING takes the lock we hold: a RUNNING future
     * cannot change under us, and a store publishes the outcome with one
     * locked instruction less per task than the compare-and-swap. */
    bool settled = state == CF__RUNNING;
    for (;;) {
        f->failed = code != 0;
        if (code != 0) {
            f->end.failure.message = message;
            f->end.failure.code = code;
        } else {
            f->end.value.result = result;
            f->end.value.free_result = free_result;
        }
        if (settled) {
            atomic_store_explicit(&f->state, to, memory_order_release);
            break;
        }
        if (atomic_compare_exchange_weak_explicit(&f->state, &state, to,
                                                  memory_order_acq_rel,
                                                  memory_order_relaxed))
            break;
        if (!(from_mask & (1u << state))) {
            f->end.lists.waiters = waiters;
            f->end.lists.callbacks = callbacks;
            cf__spin_unlock(&f->lock);
            return state;
        }
    }
    notify_waiters(f, waiters);
    cf__spin_unlock(&f->lock);
    run_callbacks(f, callbacks);
    return state;
}

#define FROM(s) (1u << (s))

void cf__future_set_cancel_hook(cf_future *f, bool (*hook)(cf_future *f),
                                void *data)
{
    cf__spin_lock(&f->lock);
    f->has_cancel_hook = hook != NULL;
    f->start.cancel_hook.fn = hook;
    f->start.cancel_hook.data = data;
    cf__spin_unlock(&f->lock);
}

int cf__future_finish(cf_future *f, void *result, void (*free_result)(void *),
                      int code, char *message)
{
    int was = complete(f, FROM(CF__PENDING) | FROM(CF__RUNNING), CF__FINISHED,
                       result, free_result, code, message);
    if (was == CF__PENDING || was == CF__RUNNING)
        return CF_OK;
    free(message);
    return CF_ESTATE;
}

bool cf__future_cancel(cf_future *f)
{
    int to = f->notify_protocol ? CF__CANCELLED_UNNOTIFIED : CF__CANCELLED;
    int was = complete(f, FROM(CF__PENDING), to, NULL, NULL, 0, NULL);
    return was == CF__PENDING || cf__state_cancelled(was);
}

bool cf__future_cancel_running(cf_future *f)
{
    int was = complete(f, FROM(CF__PENDING) | FROM(CF__RUNNING), CF__CANCELLED,
                       NULL, NULL, 0, NULL);
    return was == CF__PENDING || was == CF__RUNNING ||
           cf__state_cancelled(was);
}

bool cf_future_cancel(cf_future *f)
{
    if (!f)
        return false;
    return cf__future_cancel(f);
}

bool cf_future_request_cancel(cf_future *f)
{
    if (!f)
        return false;
    if (cf__future_cancel(f))
        return true;
    if (cf__future_state(f) == CF__RUNNING)
        atomic_store_explicit(&f->cancel_requested, true,
                              memory_order_relaxed);
    return false;
}

/* cf_future_set_running_or_notify_cancel() on a future that was not
 * PENDING. Out of line, so that the start of every task (the
 * compare-and-swap there) does not pay for this path's registers. */
#if defined(__GNUC__)
__attribute__((noinline))
#endif
static int set_running_failed(cf_future *f, int state)
{
    /* Cancelled: reported once. Its waiters were notified at the cancel,
     * or (notify protocol) are now. A second call finds it
     * CANCELLED_NOTIFIED. */
    if (state == CF__CANCELLED &&
        atomic_compare_exchange_strong_explicit(&f->state, &state,
                                                CF__CANCELLED_NOTIFIED,
                                                memory_order_acq_rel,
                                                memory_order_acquire))
        return CF_ECANCELLED;
    if (state == CF__CANCELLED_UNNOTIFIED && notify_cancel(f))
        return CF_ECANCELLED;
    return CF_ESTATE;
}

int cf_future_set_running_or_notify_cancel(cf_future *f)
{
    if (!f)
        return CF_EINVAL;
    int state = CF__PENDING;
    if (atomic_compare_exchange_strong_explicit(&f->state, &state,
                                                CF__RUNNING,
                                                memory_order_acq_rel,
                                                memory_order_acquire))
        return CF_OK;
    return set_running_failed(f, state);
}

int cf_future_set_result(cf_future *f, void *result)
{
    return cf_future_set_result_owned(f, result, NULL);
}

int cf_future_set_result_owned(cf_future *f, void *result,
                               void (*free_result)(void *))
{
    if (!f)
        return CF_EINVAL;
    int was = complete(f, FROM(CF__PENDING) | FROM(CF__RUNNING), CF__FINISHED,
                       result, free_result, 0, NULL);
    return (was == CF__PENDING || was == CF__RUNNING) ? CF_OK : CF_ESTATE;
}

int cf_future_set_exception(cf_future *f, int code, const char *message)
{
    if (!f)
        return CF_EINVAL;
    if (cf__state_done_for_result(cf__future_state(f)))
        return CF_ESTATE; /* cheap refusal before copying the message */
    char *copy = message ? cf__strdup(message) : NULL;
    return cf__future_finish(f, NULL, NULL, code ? code : CF_ETASK, copy);
}

/* ------------------------------------------------------------------------ */
/* Observers                                                                */

bool cf_future_cancelled(const cf_future *f)
{
    return f && cf__state_cancelled(cf__future_state(f));
}

bool cf_future_running(const cf_future *f)
{
    return f && cf__future_state(f) == CF__RUNNING;
}

bool cf_future_done(const cf_future *f)
{
    return f && cf__state_done_for_result(cf__future_state(f));
}

int cf__future_outcome(const cf_future *f)
{
    int state = cf__future_state(f);
    if (cf__state_cancelled(state))
        return CF_ECANCELLED;
    int code = cf__future_code(f);
    if (code == 0)
        return CF_OK;
    return code < 0 ? code : CF_ETASK;
}

/* Waits for `f` per `timeout`, until it is done for its result (a
 * notify-protocol future is, once cancelled). Returns CF_OK once done, or
 * an error. */
static int wait_for(cf_future *f, double timeout)
{
    if (!f || isnan(timeout))
        return CF_EINVAL;
    if (cf__state_done_for_result(cf__future_state(f)))
        return CF_OK;
    int64_t deadline;
    int rc = cf__deadline_from_timeout(timeout, &deadline);
    if (rc != CF_OK)
        return rc;
    if (cf__running) /* from inside a task: see nested.c */
        return cf__nested_wait(f, deadline, CF__CANCELLED_UNNOTIFIED);
    return cf__future_block(f, deadline, CF__CANCELLED_UNNOTIFIED)
               ? CF_OK
               : CF_ETIMEDOUT;
}

int cf_future_result(cf_future *f, double timeout, void **out)
{
    int rc = wait_for(f, timeout);
    if (rc != CF_OK)
        return rc;
    rc = cf__future_outcome(f);
    if (rc == CF_OK && out)
        *out = cf__future_result(f);
    return rc;
}

int cf_future_exception(cf_future *f, double timeout, cf_error *out)
{
    int rc = wait_for(f, timeout);
    if (rc != CF_OK)
        return rc;
    if (cf__state_cancelled(cf__future_state(f)))
        return CF_ECANCELLED;
    if (out) {
        const char *message = cf__future_message(f);
        out->code = cf__future_code(f);
        out->message = out->code == 0 ? ""
                       : message      ? message
                                      : cf_strerror(out->code);
    }
    return CF_OK;
}

int cf_future_add_done_callback(cf_future *f, cf_done_fn fn, void *arg)
{
    if (!f || !fn)
        return CF_EINVAL;
    cf__callback *cb = malloc(sizeof *cb);
    if (!cb)
        return CF_ENOMEM;
    cb->next = NULL;
    cb->fn = fn;
    cb->arg = arg;
    cf__spin_lock(&f->lock);
    if (!cf__state_done_for_result(atomic_load_explicit(
            &f->state, memory_order_relaxed))) {
        cb->next = f->end.lists.callbacks;
        f->end.lists.callbacks = tag_entry(cb, ENTRY_CALLBACK);
        cf__spin_unlock(&f->lock);
        return CF_OK;
    }
    cf__spin_unlock(&f->lock);
    /* Already done: run it now, in this thread, as Python does. */
    run_callbacks(f, tag_entry(cb, ENTRY_CALLBACK));
    return CF_OK;
}

/* Pushes `tagged` on a pending f's list and counts a dependent; false if
 * f is done (nothing done). */
static inline bool attach_entry(cf_future *f, void *tagged, bool dependent)
{
    /* A done future stays done: no need for its lock to see that. */
    if (cf__state_done_for_result(cf__future_state(f)))
        return false;
    cf__spin_lock(&f->lock);
    if (cf__state_done_for_result(atomic_load_explicit(
            &f->state, memory_order_relaxed))) {
        cf__spin_unlock(&f->lock);
        return false;
    }
    set_entry_next(tagged, f->end.lists.callbacks);
    f->end.lists.callbacks = tagged;
    if (dependent && f->dependents < CF__DEPENDENTS_MAX)
        f->dependents++;
    cf__spin_unlock(&f->lock);
    return true;
}

bool cf__future_attach(cf_future *f, cf__link *link, bool dependent)
{
    return attach_entry(f, tag_entry(link, ENTRY_LINK), dependent);
}

void cf__future_attach_new(cf_future *f, cf__link *link)
{
    link->next = f->end.lists.callbacks;
    f->end.lists.callbacks = tag_entry(link, ENTRY_LINK);
}

/* Puts D's entry on f's list, counting a dependent, unless f is done.
 * Called with f->lock held; drops it. True if D waits. */
static inline bool link_then(cf_future *f, cf_future *d)
{
    bool waits = !cf__state_done_for_result(
        atomic_load_explicit(&f->state, memory_order_relaxed));
    if (waits) {
        /* ENTRY_THEN: D's own pointer, its tag 0. */
        atomic_store_explicit(&d->next, f->end.lists.callbacks,
                              memory_order_relaxed);
        f->end.lists.callbacks = d;
        if (f->dependents < CF__DEPENDENTS_MAX)
            f->dependents++;
    }
    cf__spin_unlock(&f->lock);
    return waits;
}

/* The rest of cf__future_then for an input done already: D's input fires
 * now (chain.c). */
#if defined(__GNUC__)
__attribute__((noinline))
#endif
static int then_fire(cf_future *d, cf_future **out)
{
    cf__chain_fire_then(d, false);
    *out = d;
    return CF_OK;
}

/* The rest of cf__future_then when f's lock was held. */
#if defined(__GNUC__)
__attribute__((noinline))
#endif
static int then_contended(cf_future *f, cf_future *d, cf_future **out)
{
    cf__spin_lock_slow(&f->lock);
    if (!link_then(f, d))
        return then_fire(d, out);
    *out = d;
    return CF_OK;
}

int cf__future_then(cf_future *d, cf_future *f, cf_fn fn, cf_executor *ex,
                    cf_future **out)
{
    /* From the slab slot to the entry on f's list in one function whose
     * usual path calls nothing: the hop's cost is mostly calls and
     * stores, each done once here. */
    init(d, fn, ex, tag_entry(f, ENTRY_INPUT), 2, f->completer_polls);
    atomic_fetch_add_explicit(&f->refs, 1, memory_order_relaxed);
    if (atomic_exchange_explicit(&f->lock.held, true, memory_order_acquire))
        return then_contended(f, d, out);
    if (!link_then(f, d))
        return then_fire(d, out);
    *out = d;
    return CF_OK;
}

void cf__future_attach_data_new(cf_future *f, uint64_t data)
{
    f->end.lists.callbacks = data_entry(data);
}

void cf__future_detach_data_new(cf_future *f)
{
    f->end.lists.callbacks = NULL;
}

bool cf__future_update_data(cf_future *f, uint64_t keep, uint64_t set,
                            uint64_t *old)
{
    cf__spin_lock(&f->lock);
    if (cf__state_done_for_result(
            atomic_load_explicit(&f->state, memory_order_relaxed))) {
        cf__spin_unlock(&f->lock);
        return false;
    }
    /* The oldest entry: usually the only one. */
    void *prev = NULL, *entry = f->end.lists.callbacks;
    while (entry_kind(entry) != ENTRY_INPUT) {
        prev = entry;
        entry = entry_next(entry);
    }
    *old = entry_data(entry);
    void *updated = data_entry((*old & keep) | set);
    if (prev)
        set_entry_next(prev, updated);
    else
        f->end.lists.callbacks = updated;
    cf__spin_unlock(&f->lock);
    return true;
}

/* Takes `tagged` off a pending f's list. True if it was there. */
static bool unlink_entry(cf_future *f, void *tagged)
{
    bool found = false;
    cf__spin_lock(&f->lock);
    if (!cf__state_done_for_result(atomic_load_explicit(
            &f->state, memory_order_relaxed))) {
        /* Newest first; the entry is usually the only one, or close. */
        void *prev = NULL, *entry = f->end.lists.callbacks;
        while (entry && entry != tagged && entry_kind(entry) != ENTRY_INPUT) {
            prev = entry;
            entry = entry_next(entry);
        }
        if (entry == tagged) {
            void *next = entry_next(entry);
            if (prev)
                set_entry_next(prev, next);
            else
                f->end.lists.callbacks = next;
            found = true;
        }
    }
    cf__spin_unlock(&f->lock);
    return found;
}

bool cf__future_unlink(cf_future *f, cf__link *link)
{
    return unlink_entry(f, tag_entry(link, ENTRY_LINK));
}

bool cf__future_unlink_then(cf_future *f, cf_future *d)
{
    return unlink_entry(f, tag_entry(d, ENTRY_THEN));
}

/* Takes the input, the oldest entry, off a pending d's list. Called with
 * d->lock held. */
static void unlink_input(cf_future *d)
{
    void *prev = NULL, *entry = d->end.lists.callbacks;
    while (entry_kind(entry) != ENTRY_INPUT) {
        prev = entry;
        entry = entry_next(entry);
    }
    if (prev)
        set_entry_next(prev, NULL);
    else
        d->end.lists.callbacks = NULL;
}

cf_future *cf__future_take_input(cf_future *d, bool *kept)
{
    cf_future *input = NULL;
    cf__spin_lock(&d->lock);
    if (!cf__state_done_for_result(atomic_load_explicit(
            &d->state, memory_order_relaxed))) {
        /* The input is the oldest entry: usually the only one. */
        void *entry = d->end.lists.callbacks;
        while (entry_kind(entry) != ENTRY_INPUT)
            entry = entry_next(entry);
        input = entry_ptr(entry);
        *kept = cf__future_state(input) == CF__FINISHED && !input->failed &&
                input->end.value.free_result;
        /* Kept, d needs the input's value until it is done. */
        if (!*kept)
            unlink_input(d);
    }
    cf__spin_unlock(&d->lock);
    return input;
}

void cf__future_unlink_input(cf_future *d)
{
    unlink_input(d);
}

bool cf__future_take_input_of_slow(cf_future *d, bool keep)
{
    cf__spin_lock(&d->lock);
    bool waits = !cf__state_done_for_result(
        atomic_load_explicit(&d->state, memory_order_relaxed));
    if (waits && !keep)
        unlink_input(d);
    cf__spin_unlock(&d->lock);
    return waits;
}

bool cf__future_detach(cf_future *f)
{
    cf__spin_lock(&f->lock);
    bool zero = false;
    if (!cf__state_done_for_result(atomic_load_explicit(
            &f->state, memory_order_relaxed)) &&
        f->dependents < CF__DEPENDENTS_MAX) {
        f->dependents--;
        zero = f->dependents == 0;
    }
    cf__spin_unlock(&f->lock);
    return zero;
}

/* ------------------------------------------------------------------------ */
/* Calls                                                                    */

void *cf_fail(cf_call *call, int code, const char *fmt, ...)
{
    if (!call)
        return NULL;
    char *message = NULL;
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        message = cf__vformat(fmt, ap);
        va_end(ap);
    }
    free(call->message);
    call->message = message;
    call->code = code ? code : CF_ETASK;
    return NULL;
}

bool cf_call_cancel_requested(const cf_call *call)
{
    if (!call || !call->cancel_flag)
        return false;
    if (atomic_load_explicit(call->cancel_flag, memory_order_relaxed))
        return true;
    if (!call->cancel_poll)
        return false;
    call->cancel_poll(call); /* may raise it */
    return atomic_load_explicit(call->cancel_flag, memory_order_relaxed);
}

void cf_call_set_result_free(cf_call *call, void (*free_result)(void *))
{
    if (call)
        call->free_result = free_result;
}

void cf__invoke(cf_future *f, cf_fn fn, void *arg, cf__outcome *out)
{
    cf_call call = {.future = f,
                    .code = 0,
                    .message = NULL,
                    .free_result = NULL,
                    .cancel_flag = &f->cancel_requested};
    /* Waits inside the task know which task waits (nested.c). */
    cf_future *outer = cf__running;
    cf__running = f;
    void *result = fn(arg, &call);
    cf__running = outer;
    if (call.code != 0 && call.free_result && result)
        call.free_result(result); /* a failing task's value is not delivered */
    out->result = call.code ? NULL : result;
    out->free_result = call.code ? NULL : call.free_result;
    out->code = call.code;
    out->message = call.message;
}

void cf__complete(cf_future *f, const cf__outcome *o)
{
    cf__future_finish(f, o->result, o->free_result, o->code, o->message);
}

void cf__run_task(cf_future *f, cf_fn fn, void *arg)
{
    cf__outcome o;
    cf__invoke(f, fn, arg, &o);
    cf__complete(f, &o);
}

int cf_future_run(cf_future *f, cf_fn fn, void *arg)
{
    if (!f || !fn)
        return CF_EINVAL;
    int rc = cf_future_set_running_or_notify_cancel(f);
    if (rc != CF_OK)
        return rc;
    cf__run_task(f, fn, arg);
    return CF_OK;
}
