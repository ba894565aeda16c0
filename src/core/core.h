/* core.h - the core's private declarations (cf__ names), shared by src/.
 *
 * Design: a future is one allocation (a slab slot) that is also the task's
 * queue node. Its state is an atomic read without a lock by the predicates
 * and the result fast path; transitions, the waiter list and the callback
 * list are guarded by a one-byte spinlock in the future (held for a few
 * instructions, never across user code). Lock order: future lock,
 * then waiter lock; executor locks are never held while taking a future lock
 * except through cf__future_* calls documented as safe for that.
 */
#ifndef CF_CORE_H
#define CF_CORE_H

#include "cfutures.h"

#include <stdatomic.h>
#include <stdint.h>

#include "platform/platform.h"

/* ------------------------------------------------------------------------ */
/* Futures                                                                  */

/* A future's states, ordered so that the predicates below are ranges.
 * Cancelling a PENDING future makes it CANCELLED (done for every
 * observer at once), or CANCELLED_UNNOTIFIED under the stdlib's notify
 * protocol (cf__future_use_notify_protocol). The first
 * set_running_or_notify_cancel() on either moves it to CANCELLED_NOTIFIED
 * (CPython's CANCELLED_AND_NOTIFIED), so that a second call is refused. */
enum cf__state {
    CF__PENDING = 0,
    CF__RUNNING = 1,
    /* Done for its owner (done(), result(), callbacks) but not yet for
     * cf_wait, as_completed and completion queues. */
    CF__CANCELLED_UNNOTIFIED = 2,
    CF__CANCELLED = 3,
    CF__CANCELLED_NOTIFIED = 4,
    CF__FINISHED = 5,
};

typedef struct cf__wait_node cf__wait_node;
typedef struct cf__monitor cf__monitor;

struct cf_future {
    /* The thread pool's queue link, owned by the executor the future was
     * submitted to; untouched by future.c. Atomic because the pool links
     * it without a lock. */
    _Atomic(cf_future *) next;

    /* Two unions keep a future within a 64-byte slab slot: a million
     * pending futures are 64 MB of memory that must be fresh, and
     * touching it is most of what submitting costs.
     *
     * `start`: task words while PENDING, for an executor that queues the
     * future itself (the thread pool reads them after it moved the future
     * to RUNNING); or, when has_cancel_hook is set, the cancel hook (see
     * cf__future_set_cancel_hook), guarded by lock. An executor uses one or
     * the other. */
    union {
        struct {
            cf_fn fn;
            void *arg;
        } task;
        struct {
            bool (*fn)(cf_future *f);
            void *data;
        } cancel_hook;
    } start;

    /* `end`: the waiter and callback lists while the future is not done,
     * guarded by lock; its outcome once it is. The completer detaches the
     * lists, writes the outcome and publishes the done state in one step
     * under the lock (a waiter or callback added under the lock sees the
     * future done, or is on the lists detached). Outcome readers acquire a
     * done `state` first; `failed` says which outcome it is. */
    union {
        struct {
            cf__wait_node *waiters;
            /* Newest first: done-callbacks and links (tagged, see
             * cf__link). */
            void *callbacks;
        } lists;
        struct {
            void *result;
            void (*free_result)(void *);
        } value;
        struct {
            char *message; /* malloc'd, or NULL */
            int code;      /* never 0 */
        } failure;
    } end;

    _Atomic int state;            /* enum cf__state */
    atomic_uint refs;             /* references; the last one frees */
    atomic_bool cancel_requested; /* cf_call_cancel_requested() */
    cf__spinlock lock;            /* guards transitions, lists, hook */
    bool has_cancel_hook;         /* guarded by lock */
    bool failed;                  /* part of the outcome, like `end` */
    /* Set once before the future is shared: a cancel makes it
     * CANCELLED_UNNOTIFIED (see cf__future_use_notify_protocol). */
    bool notify_protocol : 1;
    /* Set once before the future is shared: its completer is a polling
     * thread of this process (cf__future_set_completer_polls), so a
     * waiter yields as it spins. A continuation or combinator inherits
     * it from its inputs (then.c, when.c): the polling thread completes
     * an input, and runs or submits what follows from there. One byte
     * with notify_protocol. */
    bool completer_polls : 1;
    /* The helping tag of the thread pool whose queue holds it (nested.c),
     * set by that pool's submit; 0: none. Meaningful while PENDING. Stored
     * with release after the task words and loaded with acquire: a worker
     * that finds the tag may claim and run the future at once, and a
     * continuation's future can be waited on while it is being submitted
     * (plain loads and stores on x86 either way). */
    _Atomic(uint8_t) pool_tag;
    /* Continuations and combinators waiting on this future and not done
     * (see cf__future_attach); meaningful only while it is not done.
     * Saturates: from CF__DEPENDENTS_MAX on it stays there, and the
     * future is never cancelled for want of dependents. Guarded by lock.
     * Fills what was padding. */
    uint16_t dependents;
    /* A monitored task's own function while monitor.c's wrapper runs in
     * its place (a task of a cf__executor_set_invokes_in_place executor,
     * see cf__monitor_submit); written before the future is shared, else
     * unset. Fills the rest of the 64-byte slab slot. */
    cf_fn monitored_fn;
};

/* ------------------------------------------------------------------------ */
/* Links: how continuations and combinators follow futures (chain.c)        */

/* One future followed by a continuation or combinator: an entry of the
 * future's callback list embedded in the operation (16 bytes, no
 * allocation of its own), and what to do once the future is done. The
 * list holds done-callbacks (future.c's, malloc'd) and links, a link's
 * pointer tagged with the low bit; `next` is the list's (tagged) link. */
typedef struct cf__link cf__link;
struct cf__link {
    void *next;
    void (*run)(cf__link *link);
};

/* Called by a future that completes (or by the caller of
 * cf__future_attach() when the future was done) for each of its links:
 * runs link->run in this thread through a per-thread run list. A run
 * that completes another future whose links fire (a chain) appends them
 * to the list instead of recursing, so a chain of any length takes
 * constant stack; the outermost firing runs the list to its end. */
void cf__chain_fire(cf__link *link);

/* Attaches `link` to `f`: link->run will run once `f` is done. With
 * `dependent`, also counts one more dependent of `f` (a continuation or
 * combinator waiting on it). Returns true if attached, false if `f` was
 * done already (nothing attached or counted: the caller runs the link
 * itself). */
bool cf__future_attach(cf_future *f, cf__link *link, bool dependent);

/* cf__future_attach(f, link, false) for a pending future nobody else
 * sees yet (just allocated, not handed out): no lock, no check. */
void cf__future_attach_new(cf_future *f, cf__link *link);

/* Continuations without a record (then.c): the new future D itself is
 * the entry on its input's callback list (linked through D's `next`, free
 * until D is submitted; D's start words hold the function and executor),
 * and the input, referenced, is the oldest entry of D's own list, so that
 * D's end can detach from it. cf__future_then(d, f, fn, ex, out) makes
 * D so, from a fresh slab slot (cf__future_mem_alloc), for then.c's
 * cf_future_then (its checks made): pending, with two references (the
 * entry's and the caller's, `*out`), f's completer_polls, one more
 * reference to f, and on f's list, counted among its dependents; or, if
 * f is done, with the input on D's list fired at once
 * (cf__chain_fire_then(d, false)). Returns CF_OK. */
int cf__future_then(cf_future *d, cf_future *f, cf_fn fn, cf_executor *ex,
                    cf_future **out);
/* Takes D's input off D once the input is done (as D's firing from it
 * runs), unless D is done: then NULL (D's end has dropped the input, or
 * will). It stays on D (`*kept`) when its value has a destructor: D needs
 * it until D is done. */
cf_future *cf__future_take_input(cf_future *d, bool *kept);
/* The tag of an input on a continuation's list (future.c). */
enum { CF__ENTRY_INPUT = 3 };
bool cf__future_take_input_of_slow(cf_future *d, bool keep);
void cf__future_unlink_input(cf_future *d);
/* The same, for a series whose done input the caller knows: takes it off
 * D unless `keep` (then D keeps it until D is done). True if D is not
 * done; false if it is (then D's end has dropped the input, or will).
 * Inline: a hop costs about what a submit does only if its steps cost no
 * call. */
static inline bool cf__future_take_input_of(cf_future *d,
                                            const cf_future *input, bool keep);
/* Takes D's entry off `f`'s list. True if it was there (`f` not done):
 * D's reference that the entry held is the caller's now. */
bool cf__future_unlink_then(cf_future *f, cf_future *d);
/* Puts D on this thread's run list (chain.c): to start from its input
 * (false), or, once D ended before its input, to detach from it (true). */
void cf__chain_fire_then(cf_future *d, bool self_done);
/* A series: continuations of one input, oldest first, linked through
 * their `next` words by plain pointers (a continuation's tag on a
 * callback list is 0, future.c). It ends at a NULL word or at a tagged
 * one (an entry of another kind, which follows the series on the list). */
static inline bool cf__series_goes_on(const void *next)
{
    return next && ((uintptr_t)next & 3) == 0;
}
/* Fires the series from `first` of continuations of `input`, which just
 * completed, as cf__chain_fire_then(d, false) would fire each in turn.
 * Returns the word that ended the series. */
void *cf__chain_fire_thens(cf_future *input, cf_future *first);
/* The run list's work for D (then.c), as cf__chain_fire_then says. */
void cf__then_input_done(cf_future *d);
/* The same for a series of them, as cf__chain_fire_thens says: from the
 * outermost firing (so that a completion within appends to the list).
 * Returns the word that ended the series. */
void *cf__then_inputs_done(cf_future *input, cf_future *first);
void cf__then_self_done_later(cf_future *d);
/* D completed with its input still on its list (future.c calls it from
 * D's callbacks, first): takes D off its input, or drops the input. */
void cf__then_self_done(cf_future *d, cf_future *input);

/* A data entry: a number up to CF__DATA_MAX kept as the oldest entry of
 * a pending future's callback list, for monitor.c: it costs a future that
 * has none nothing (no field, no check on its paths), is read and changed
 * under the future's lock, and is handed back when the future completes,
 * in the completing thread, before its callbacks run:
 * cf__monitor_data_done(f, data). cf__future_attach_data_new() puts it on
 * a future nobody else sees yet whose list is empty;
 * cf__future_detach_data_new() takes it off such a future again. */
#define CF__DATA_MAX ((uint64_t)(UINTPTR_MAX >> 3)) /* 61 bits on 64-bit */
void cf__future_attach_data_new(cf_future *f, uint64_t data);
void cf__future_detach_data_new(cf_future *f);
/* Under f's lock, replaces the data D of f's data entry with (D & keep)
 * | set, and returns true with D in `*old`; false if `f` is done (its
 * lists gave way to its outcome; the entry was handed back). */
bool cf__future_update_data(cf_future *f, uint64_t keep, uint64_t set,
                            uint64_t *old);
/* f completed: its data entry held `data` (monitor.c). */
void cf__monitor_data_done(cf_future *f, uint64_t data);

/* Where cf_future.dependents saturates. */
#define CF__DEPENDENTS_MAX UINT16_MAX

/* Takes `link` off `f` before it fires. Returns true if it was attached
 * and `f` is not done (then it will never run); false otherwise (it has
 * run, or will: `f` is done). */
bool cf__future_unlink(cf_future *f, cf__link *link);

/* One dependent of `f` stops waiting on it. Returns true if `f` is not
 * done and no dependent is left, so that the caller may cancel it; false
 * (and nothing counted) if `f` is done. "Done" here and in
 * cf__future_attach is done for its result, as done-callbacks see it. */
bool cf__future_detach(cf_future *f);

/* A done future's outcome (call only once cf__future_state() is done). */
static inline int cf__future_code(const cf_future *f)
{
    return f->failed ? f->end.failure.code : 0;
}
static inline const char *cf__future_message(const cf_future *f)
{
    return f->failed ? f->end.failure.message : NULL;
}
static inline void *cf__future_result(const cf_future *f)
{
    return f->failed ? NULL : f->end.value.result;
}

/* Cancel hook: for an executor whose task may be started by someone who
 * cannot take this future's lock (a worker process claiming it in shared
 * memory). Cancelling a PENDING future that has a hook calls it under the
 * future's lock, with `f->start.cancel_hook.data` as the executor's data;
 * it returns true if the cancel may proceed (the task will never start),
 * or false if the task has already started: the future then turns RUNNING
 * instead and the cancel fails. Only the cancel path looks at it, so
 * futures without a hook pay nothing. Setting it (NULL clears) takes the
 * lock, so after it returns an older hook is no longer running. An
 * executor that sets a hook keeps nothing in start.task. */
void cf__future_set_cancel_hook(cf_future *f, bool (*hook)(cf_future *f),
                                void *data);

/* Allocates a pending future with one reference (the caller's). NULL when
 * out of memory. */
cf_future *cf__future_alloc(void);

/* Drops `n` (> 0) references to `f` at once, as n cf_future_release()
 * would. */
void cf__future_release_n(cf_future *f, unsigned n);

/* Puts `f` under the stdlib's notify protocol, for the Python binding's
 * bare Future(): a cancel makes it cancelled and done for its owner at
 * once (cf_future_done(), cf_future_cancelled(), result() and exception()
 * report it, waiters in result() wake, its done-callbacks run), but
 * cf_wait(), as_completed and completion queues count it done only once
 * cf_future_set_running_or_notify_cancel() is called on it, which wakes
 * them (CPython's CANCELLED, then CANCELLED_AND_NOTIFIED). Without it, a
 * cancelled future is done for every observer at once. Call right after
 * cf_future_new(), before the future is shared. */
void cf__future_use_notify_protocol(cf_future *f);

/* Says that `f` will be completed by a thread of this process that polls
 * for its outcome and shares the CPUs with its waiters (the MPI
 * executor's communication thread): a waiter then yields its CPU while
 * it spins, instead of pausing on it (future_wait.c). For an executor's
 * submit: marks `f` and returns true if the caller holds its only
 * reference (nobody else can see it yet: cf_executor_submit's, map's);
 * otherwise leaves it unmarked, returns false (a continuation's future,
 * submitted once its input is done, may have waiters already: they keep
 * the plain spin). Exported for libcfutures_mpi. */
__attribute__((visibility("default"))) bool
cf__future_set_completer_polls(cf_future *f);

/* Memory for one cf_future (future_slab.c): per-thread slabs, or malloc
 * with CF_FUTURE_ALLOC=malloc and under AddressSanitizer. Any thread may
 * free what another allocated. */
void *cf__future_mem_alloc(void);
void cf__future_mem_free(void *p);

/* What the slabs hold now, for tests and benchmarks. */
typedef struct cf__future_mem_stats {
    bool slabs;            /* false: futures come from malloc */
    size_t slab_size;      /* bytes per slab */
    size_t slots_per_slab; /* futures per slab */
    size_t mapped;         /* slabs mapped: owned, abandoned or spare */
    size_t abandoned;      /* no owner, some slots still out */
    size_t spares;         /* empty, kept for reuse */
    size_t takes;          /* times a thread took a slab, ever */
    size_t huge;           /* slabs mapped as huge pages, ever */
    size_t huge_slow;      /* of those, found too slow (see future_slab.c) */
} cf__future_mem_stats;
void cf__future_mem_get_stats(cf__future_mem_stats *out);
/* For tests: a huge slab that takes more than `slow_ns` of CPU to populate
 * sends new slabs to small pages for `backoff_ns`; restarts the backoff. */
void cf__future_mem_tune_huge(int64_t slow_ns, int64_t backoff_ns);

/* Completes `f` from RUNNING or PENDING (for executors that fail a future
 * that never ran: broken pool). `message` is taken over (may be NULL).
 * A failure (code != 0) carries no result: pass NULL, NULL.
 * Returns CF_OK or CF_ESTATE (then `message` is freed). Wakes waiters and
 * runs callbacks in this thread, outside the lock. */
int cf__future_finish(cf_future *f, void *result, void (*free_result)(void *),
                      int code, char *message);

/* Same as cf_future_cancel() but only from PENDING; true if cancelled. */
bool cf__future_cancel(cf_future *f);

/* Cancels `f` even though its task started, for an executor that stopped
 * the task by force (a killed worker process): RUNNING (or PENDING) ->
 * CANCELLED, notifying as a cancel does. True if `f` is now cancelled;
 * false if it had finished. */
bool cf__future_cancel_running(cf_future *f);

static inline int cf__future_state(const cf_future *f)
{
    return atomic_load_explicit(&((cf_future *)f)->state,
                                memory_order_acquire);
}

/* Done as cf_wait(), as_completed and completion queues see it. */
static inline bool cf__state_done(int state)
{
    return state >= CF__CANCELLED;
}

/* Done as cf_future_done(), result() and done-callbacks see it: also a
 * cancelled future not yet notified (CF__CANCELLED_UNNOTIFIED). */
static inline bool cf__state_done_for_result(int state)
{
    return state >= CF__CANCELLED_UNNOTIFIED;
}

static inline bool cf__state_cancelled(int state)
{
    return state >= CF__CANCELLED_UNNOTIFIED &&
           state <= CF__CANCELLED_NOTIFIED;
}

/* Continuations (declared above). */
static inline bool cf__future_take_input_of(cf_future *d,
                                            const cf_future *input, bool keep)
{
    if (keep ||
        atomic_exchange_explicit(&d->lock.held, true, memory_order_acquire))
        return cf__future_take_input_of_slow(d, keep);
    bool waits = !cf__state_done_for_result(
        atomic_load_explicit(&d->state, memory_order_relaxed));
    if (!waits) {
        /* Cancelled while it waited. */
    } else if (d->end.lists.callbacks ==
               (void *)((uintptr_t)input | CF__ENTRY_INPUT)) {
        d->end.lists.callbacks = NULL; /* the input alone, as usual */
    } else {
        cf__future_unlink_input(d); /* under callbacks or waiters */
    }
    cf__spin_unlock(&d->lock);
    return waits;
}

/* Reports a future's outcome code as cf_future_result() does. */
int cf__future_outcome(const cf_future *f);

/* ------------------------------------------------------------------------ */
/* Waiters: one per blocked thread, one node per (waiter, future) pair.      */

typedef struct cf__waiter cf__waiter;

/* Called with the future's lock held when it completes; must not block. */
typedef void (*cf__notify_fn)(cf__waiter *w, cf__wait_node *node,
                              cf_future *f);

struct cf__waiter {
    cf__event event;       /* signalled when the waiter should look again */
    cf__spinlock lock;     /* guards the fields below */
    cf__notify_fn notify;
    /* Notified when a notify-protocol future is cancelled (a waiter in
     * result()), not only once the cancel is notified (cf_wait,
     * as_completed, completion queues). Set before installing a node. */
    bool wakes_on_cancel;
    size_t remaining;      /* futures not yet completed */
    bool triggered;        /* the wait condition holds */
    int return_when;       /* cf_return_when, for cf_wait */
    cf__wait_node *done_head; /* as_completed: completed, not yet taken */
    cf__wait_node *done_tail;
};

/* A notify that queues the node on the waiter's done list (in completion
 * order) and wakes it: as_completed's, in C and in the Python module. */
void cf__waiter_notify_queue(cf__waiter *w, cf__wait_node *node,
                             cf_future *f);

struct cf__wait_node {
    cf__wait_node *next;  /* in the future's list; guarded by future lock */
    cf__wait_node *prev;
    cf__waiter *waiter;
    cf_future *future;
    cf__wait_node *done_next; /* in the waiter's done list */
    bool linked;              /* in the future's list; guarded by its lock */
};

/* Installs `node` on `f` unless `f` is done. Returns true if installed,
 * false if `f` was already done (nothing installed). */
bool cf__wait_node_install(cf_future *f, cf__wait_node *node);

/* Removes `node` from its future if still there. After this returns the
 * future will never touch the node or its waiter again. */
void cf__wait_node_remove(cf__wait_node *node);

/* Blocks until `f` is done (cf__state_done) or `deadline_ns` passes
 * (CF__NO_DEADLINE: never). Returns true if done. Spins briefly first:
 * most waits are short. */
bool cf__future_wait_done(cf_future *f, int64_t deadline_ns);

/* How long a waiter spins before it sleeps. A hand-off between two awake
 * threads takes well under a microsecond; a futex sleep and wake costs tens
 * of microseconds on each side. */
enum { CF__WAIT_SPIN_NS = 20000 };

/* Waits on `ev` for its sequence number to move from `seq`: spins up to
 * CF__WAIT_SPIN_NS (never past the deadline), then sleeps. Returns false
 * once the deadline has passed. */
bool cf__event_wait_spinning(cf__event *ev, unsigned seq, int64_t deadline_ns);
/* The same, yielding the CPU at each turn of the spin instead of pausing
 * when `completer_polls`: some future the caller waits on is completed by
 * a polling thread of this process (future_wait.c). */
bool cf__event_wait_spinning_for(cf__event *ev, unsigned seq,
                                 int64_t deadline_ns, bool completer_polls);

/* A completion queue whose descriptor is a pipe even where eventfd
 * exists (use_pipe), so tests cover the fallback. */
int cf__completion_queue_open(bool use_pipe, cf_completion_queue **out);

/* The plain wait: blocks until `f`'s state is at least `done_from`
 * (CF__CANCELLED: done for cf_wait; CF__CANCELLED_UNNOTIFIED: done for its
 * result) or the deadline passes. Returns true if done. */
bool cf__future_block(cf_future *f, int64_t deadline_ns, int done_from);

/* cf__future_wait_done() that also says why it gave up: CF_OK (done),
 * CF_ETIMEDOUT, CF_EDEADLK (a task waiting for itself: see nested.c). */
int cf__future_wait(cf_future *f, int64_t deadline_ns);

/* ------------------------------------------------------------------------ */
/* Waits from inside tasks (nested.c)                                       */

/* The future whose task this thread runs (the innermost, when a waiting
 * worker runs another task in place), or NULL: cf__invoke() sets it for
 * the task and puts back the one before. */
extern _Thread_local cf_future *cf__running;
/* This thread's pool's helping tag (a thread pool worker's), or 0. */
extern _Thread_local uint8_t cf__helping_tag;

/* A task's wait, while it lasts, in nested.c's registry (on the waiting
 * function's stack; the fields are nested.c's). */
typedef struct cf__wait_frame cf__wait_frame;
struct cf__wait_frame {
    cf_future *running;    /* the waiting task's future */
    cf_future *waiting_on; /* the one future it waits for; NULL: several */
    cf__wait_frame *next, *prev;
};

/* A wait for `f` from inside a task (cf__running not NULL): runs `f`
 * here if it is queued in this thread's pool, else blocks as
 * cf__future_block() does unless that would wait for the task itself.
 * Returns CF_OK (done), CF_ETIMEDOUT, CF_EDEADLK. */
int cf__nested_wait(cf_future *f, int64_t deadline_ns, int done_from);

/* From inside a task waiting for any of fs[0..n): runs one of them that is
 * queued in this thread's pool, starting at *cursor (advanced past those
 * that cannot be: they never can later). Returns the one it ran (done
 * now), or NULL. */
cf_future *cf__nested_help_one(cf_future *const *fs, size_t n,
                               size_t *cursor);

/* From inside a task, before it blocks waiting for any of fs[0..n):
 * CF_EDEADLK if every one not yet done waits, in the end, for the task
 * itself; else registers the wait in `fr` and returns CF_OK, to be ended
 * by cf__nested_end_wait(fr). A future may finish after the caller's
 * last look and end the wait: on CF_EDEADLK every one done has notified
 * its waiters, and the caller looks at its condition once more (if it
 * holds, the wait is over: no deadlock). */
int cf__nested_begin_wait(cf__wait_frame *fr, cf_future *const *fs,
                          size_t n, int done_from);
/* For tests: called (when set) by cf__nested_begin_wait before it looks
 * at the futures: where one may finish after the caller's last look.
 * NULL in normal use. */
extern void (*_Atomic cf__nested_before_check)(void);
void cf__nested_end_wait(cf__wait_frame *fr);

/* ------------------------------------------------------------------------ */
/* Calls: what a running task sees as `cf_call *`.                          */

struct cf_call {
    cf_future *future; /* NULL where there is none (a process worker) */
    int code;          /* 0 unless cf_fail() was called */
    char *message;     /* from cf_fail(), malloc'd, or NULL */
    void (*free_result)(void *); /* cf_call_set_result_free(), or NULL */
    const atomic_bool *cancel_flag; /* polled by cf_call_cancel_requested */
    /* Where no one else can raise the flag (a process worker over pipes):
     * called while it reads false, to look for a request and raise it
     * (rate-limited inside). NULL: none, the flag alone says. */
    void (*cancel_poll)(const cf_call *call);
};

/* What a task produced, between running it and completing its future. */
typedef struct cf__outcome {
    void *result;
    void (*free_result)(void *);
    int code;
    char *message;
} cf__outcome;

/* Runs `fn(arg)` with a fresh call for the RUNNING future `f`. */
void cf__invoke(cf_future *f, cf_fn fn, void *arg, cf__outcome *out);
/* Completes `f` with an outcome (taking over its message). */
void cf__complete(cf_future *f, const cf__outcome *o);
/* Both: runs the task and completes `f`, which must already be RUNNING. */
void cf__run_task(cf_future *f, cf_fn fn, void *arg);

/* Formats a message (malloc'd; NULL on failure). */
char *cf__vformat(const char *fmt, va_list ap);
char *cf__format(const char *fmt, ...) CF_PRINTF(1, 2);
char *cf__strdup(const char *s);

/* ------------------------------------------------------------------------ */
/* Buffers                                                                  */

struct cf_buffer {
    unsigned char *data;
    size_t len;
    size_t cap;
};

void cf__buffer_init(cf_buffer *buf);
void cf__buffer_destroy(cf_buffer *buf);
/* Makes room for `extra` more bytes. Returns CF_OK or CF_ENOMEM. */
int cf__buffer_reserve(cf_buffer *buf, size_t extra);

/* ------------------------------------------------------------------------ */
/* Executors                                                                */

/* A chunk of map items run as one task, owned by the map iterator (see
 * map.c). Its outcomes are in `items`, which the executor allocates with
 * cf__chunk_items() when it has some to store (a native chunk whose
 * results all came back as words has none: see cf__submit_chunk_fn). */
typedef struct cf__chunk_item {
    void *value;
    void (*free_value)(void *); /* NULL: nothing to free */
    int code;                   /* 0 on success */
    char *message;              /* on failure, malloc'd or NULL */
} cf__chunk_item;

typedef struct cf__chunk {
    cf_fn fn;
    size_t n;
    void **args;            /* n arguments, in the chunk's own block */
    cf__chunk_item *items;  /* n outcomes, or NULL */
} cf__chunk;

cf__chunk *cf__chunk_new(cf_fn fn, size_t n);
void cf__chunk_free(void *chunk);
/* Allocates the chunk's items (zeroed) if it has none. CF_OK or CF_ENOMEM. */
int cf__chunk_items(cf__chunk *chunk);

/* Optional hook for executors that run a chunk natively (the process pool
 * ships a chunk as one message). Completes `f` with the chunk, its items
 * holding the outcomes, or with the chunk's args array, the results
 * written over the arguments when every item succeeded with nothing to
 * free; or fails `f` as a whole. Same contract as ops->submit. */
typedef int (*cf__submit_chunk_fn)(void *impl, cf_future *f, cf__chunk *chunk,
                                   const cf_codec *codec);

struct cf_executor {
    const cf_executor_ops *ops;
    void *impl;
    cf__submit_chunk_fn submit_chunk; /* NULL: chunks run as thread tasks */
    /* Set when shutdown begins; submit and map refuse work from then on.
     * Implementations still order a submit racing the shutdown under their
     * own locks. */
    atomic_bool shut_down;
    /* Created on a process-pool worker's task thread, and registered
     * there as usable from it (see executor.c). */
    bool worker_local;
    /* Monitoring (monitor.c): the monitor while it is on, else NULL; read
     * on every submit, so off costs one load. `monitor_mem` keeps it from
     * the first cf_executor_monitor() to the executor's free, as records
     * of tasks under way point to it. */
    _Atomic(cf__monitor *) monitor;
    _Atomic(cf__monitor *) monitor_mem;
    /* The executor's worker counts for cf_executor_get_stats(); NULL: it
     * does not say. Set once, at creation. */
    void (*worker_counts)(void *impl, int *alive, int *idle);
    /* Default run-time limit of tasks the core wraps (executors that
     * share memory: see timeouts.c), in seconds; 0: none. Set once, at
     * creation. A process pool keeps its own default instead. */
    double task_timeout;
    /* What the executor can do to stop running work (escalate.c); NULL:
     * nothing beyond cancel flags. Set once, at creation. */
    const struct cf__escalation *escalation;
    /* The timer thread that raises the cancel flags of wrapped tasks past
     * their limit (timeouts.c); NULL until the first such task starts. */
    _Atomic(struct cf__timer *) timer;
    /* cf_executor_set_max_workers(); NULL: CF_ENOTSUP. Set once, at
     * creation. */
    int (*set_max_workers)(void *impl, int max_workers);
    /* cf_executor_broken(): the reason, or NULL while not broken; NULL
     * hook: never broken. Set once, at creation. */
    const char *(*broken)(void *impl);
    /* Queues `n` futures at once (continuations whose input completed,
     * then.c): `first` to `last`, linked through `next`, each pending,
     * its task words set, and one reference to each handed over as the
     * queue's. Only for a plain submit (no monitor, no task timeout, not
     * refused in a worker, not shut down: the caller checks). Returns
     * CF_OK, or the error ops->submit would give; then the n futures
     * (still linked through `next`: walk n of them) and their references
     * are the caller's again. NULL: one ops->submit each. Set once, at
     * creation. */
    int (*submit_chain)(void *impl, cf_future *first, cf_future *last,
                        int n);
    /* Its workers run a task with cf__invoke() on the task's own future
     * (a thread pool), so monitoring may wrap the task without a record
     * (monitor.c). Set once, at creation. */
    bool invokes_in_place;
};

/* ------------------------------------------------------------------------ */
/* Escalation: the cancellation ladder, the shutdown report (escalate.c)    */

typedef struct cf__escalation {
    /* New references to every future of the executor queued or running
     * now, in a malloc'd array (the caller releases and frees them).
     * CF_OK or CF_ENOMEM. */
    int (*unfinished)(void *impl, cf_future ***out, size_t *n);
    /* Kills the worker running `f`'s task; the future is then cancelled
     * (or, if its result won the race, finished). CF_OK if the kill went
     * out; CF_ESTATE if `f` runs nowhere in this executor. Waits only for
     * the executor's thread to look. NULL: the executor cannot. */
    int (*kill_task)(void *impl, cf_future *f);
    /* Sends every worker SIGTERM, or SIGKILL with `hard` (closing the
     * executor, cancelling what has not started); does not wait. Futures
     * of tasks so ended fail with CF_EBROKEN_PROCESS_POOL. NULL: the
     * executor cannot. */
    void (*signal_workers)(void *impl, bool hard);
    /* The cancel flag of a running future of this executor was just
     * raised: pass the request on to where the task runs (a process pool
     * tells its worker). Does not wait. NULL: the flag is all it takes. */
    void (*stop_requested)(void *impl);
} cf__escalation;

/* ------------------------------------------------------------------------ */
/* Per-task time limits (timeouts.c)                                        */

/* Submits `fn(arg)` for `f` as ops->submit would (through the monitor when
 * it is on), with a run-time limit of `limit` seconds (0 or infinite:
 * none). An executor that shares memory gets the task wrapped (the core's
 * timer raises its cancel flag at the limit, and an overrun fails it with
 * CF_ETASK_TIMEOUT); another (a process pool) finds the limit in
 * cf__submit_timeout during its submit. Same contract as ops->submit. */
int cf__submit_limited(cf_executor *ex, cf_future *f, cf_fn fn, void *arg,
                       const cf_codec *codec, double limit);

/* The limit the submit under way on this thread asked for (seconds; 0:
 * none given, the executor's default applies; infinite: none), for an
 * executor that enforces limits itself (the process pool). */
extern _Thread_local double cf__submit_timeout;

/* Sets the default limit of an executor that shares memory. */
void cf__executor_set_task_timeout(cf_executor *ex, double seconds);

/* Stops and joins ex's timer thread, if it has one. Once no task of ex
 * runs (after its waited shutdown). */
void cf__executor_timer_free(cf_executor *ex);

/* The plain submit: through the monitor when it is on, else ops->submit.
 * Inline (below, after monitor.c's declarations): every submit and a
 * continuation on a done input take it, and a call is a measurable part
 * of an empty task. */
static inline int cf__executor_dispatch(cf_executor *ex, cf_future *f,
                                        cf_fn fn, void *arg,
                                        const cf_codec *codec);

/* ------------------------------------------------------------------------ */
/* Monitoring (monitor.c)                                                   */

/* Submits `fn(arg)` to `ex` for `f` through the monitor `m` (ex's, on):
 * counts and reports it and, where the executor shares memory, runs it
 * through a record that times it. Same contract as ops->submit. */
int cf__monitor_submit(cf__monitor *m, cf_executor *ex, cf_future *f,
                       cf_fn fn, void *arg, const cf_codec *codec);

static inline int cf__executor_dispatch(cf_executor *ex, cf_future *f,
                                        cf_fn fn, void *arg,
                                        const cf_codec *codec)
{
    cf__monitor *m = atomic_load_explicit(&ex->monitor, memory_order_acquire);
    return m ? cf__monitor_submit(m, ex, f, fn, arg, codec)
             : ex->ops->submit(ex->impl, f, fn, arg, codec);
}

/* Reports a worker or crash event of `ex` if it is monitored; costs a
 * load when not. */
void cf__monitor_worker_event(cf_executor *ex, cf_event_kind kind,
                              int worker, int code, const char *message);

/* Tasks that run in another process are timed by their executor (a
 * process pool, from its manager thread): during ops->submit, a monitored
 * executor's submit offers the task's record in cf__monitor_handoff; the
 * executor takes it with cf__monitor_hold() once it has accepted the task
 * (NULL when not monitored: one thread-local load), reports the task's
 * start (the worker's index) and end (before completing its future, so
 * FINISH has the run time), and releases it when it lets the task go,
 * whatever happened to it. Start, end and release are called from one
 * thread at a time per record; end is a no-op unless started. */
typedef struct cf__task_record cf__task_record;
extern _Thread_local cf__task_record *cf__monitor_handoff;
cf__task_record *cf__monitor_hold_slow(void);
static inline cf__task_record *cf__monitor_hold(void)
{
    return cf__monitor_handoff ? cf__monitor_hold_slow() : NULL;
}
void cf__monitor_task_start(cf__task_record *r, int worker);
void cf__monitor_task_end(cf__task_record *r);
void cf__monitor_release(cf__task_record *r);
/* ex->submit_chunk() for a monitored executor (map.c): the chunk counts
 * as one task, its record handed over as above. Same contract. */
int cf__monitor_submit_chunk(cf__monitor *m, cf_executor *ex, cf_future *f,
                             cf__chunk *c, const cf_codec *codec);

/* Frees ex's monitor, once no task of ex is under way. */
void cf__monitor_free(cf_executor *ex);

/* The index of the worker this thread is (a thread pool's), or -1. */
extern _Thread_local int cf__current_worker;

/* True on a process-pool worker's task thread for an executor not created
 * there (its parent's): such calls get CF_EDEADLK. Never dereferences. */
bool cf__executor_refused_in_worker(const cf_executor *ex);

/* Submits `fn(arg)` to `ex` with its outcome going to `f`, a pending
 * future the caller made and may share (a continuation's): the checks of
 * cf_executor_submit, then ops->submit. Returns CF_OK or the error
 * cf_executor_submit would (then `f` is untouched by the executor). */
int cf__executor_submit_future(cf_executor *ex, cf_future *f, cf_fn fn,
                               void *arg);

/* False for executors that run tasks in another address space (a
 * process pool), where a pointer to this process's memory means nothing. */
bool cf__executor_shares_memory(const cf_executor *ex);

/* Sets how cf_executor_get_stats() learns an executor's worker counts. */
void cf__executor_set_worker_counts(cf_executor *ex,
                                    void (*fn)(void *impl, int *alive,
                                               int *idle));

/* Says that ex's workers run tasks with cf__invoke() on their futures. */
void cf__executor_set_invokes_in_place(cf_executor *ex);

/* Sets what cf_executor_set_max_workers() calls (n > 0 checked). */
void cf__executor_set_resize(cf_executor *ex,
                             int (*fn)(void *impl, int max_workers));

/* Sets what cf_executor_broken() asks: the reason the pool broke (valid
 * until the executor is freed), or NULL while it is not broken. */
void cf__executor_set_broken(cf_executor *ex,
                             const char *(*fn)(void *impl));

/* Sets the native chunk hook of an executor made by cf_executor_new(). */
void cf__executor_set_submit_chunk(cf_executor *ex, cf__submit_chunk_fn fn);

/* The executor this thread belongs to (a thread pool's worker, a process
 * pool's manager, which runs done-callbacks), or NULL. A waited shutdown
 * or a free called here cannot wait for the executor: see executor.c. */
extern _Thread_local const void *cf__current_pool;

/* For tests: called (when set) by a thread-pool submit that found the pool
 * open and is about to start a worker, with no lock held: the window in
 * which a shutdown may slip between the two. NULL in normal use. */
extern void (*_Atomic cf__thread_pool_before_grow)(cf_executor *ex);

/* For tests: called (when set) by a thread-pool worker that has just
 * retired, after its last look at the queue, with no lock held: a submit
 * made there must still find a worker to wake. NULL in normal use. */
extern void (*_Atomic cf__thread_pool_after_retire)(cf_executor *ex);

/* A thread pool's worker is about to block (true) in a nested wait, or
 * has stopped blocking (false): while it blocks, its pool may run a
 * compensating thread in its place (threads/sizing.c). No-op on other
 * threads. */
void cf__thread_pool_blocking(bool blocked);

/* Threads a thread pool has started so far (0 for other executors), for
 * the Python binding: a submit that started one lets it take the call
 * before returning, as threading.Thread.start() does for the stdlib's. */
int cf__thread_pool_threads_started(const cf_executor *ex);

/* Counts fork()s into children: an executor records it at creation and
 * compares on submit, so a pool inherited by a child refuses work
 * (its threads or workers exist only in the parent) instead of hanging. */
unsigned cf__fork_generation(void);
/* Installs the fork hook behind cf__fork_generation(); call before the
 * first read (executor constructors do, through cf_executor_new). */
void cf__fork_hook_install(void);

/* ------------------------------------------------------------------------ */
/* Worker threads of process pools                                          */

/* True on a thread that serves a process-pool worker's tasks (set by that
 * worker loop, src/processes/). The entry points that would call back
 * into an executor from a worker (cf_executor_submit*, cf_executor_map*,
 * cf_executor_shutdown*, cf_process_pool_new) return CF_EDEADLK for
 * executors not created on that thread: they belong to the parent. */
extern _Thread_local bool cf__in_process_worker;
static inline bool cf__process_worker_active(void)
{
    return cf__in_process_worker;
}

#endif /* CF_CORE_H */
