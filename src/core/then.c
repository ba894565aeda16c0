/* then.c - continuations: cf_future_then() and cf_future_then_always().
 *
 * Design: a continuation of cf_future_then is the new future D alone: no
 * record of its own, so a hop costs one future, as a submit does. While
 * D waits, D itself is the entry on its input's callback list (future.c,
 * ENTRY_THEN: linked through D's `next` word, unused until D is
 * submitted), D's start words hold the function and the executor (NULL:
 * inline), and D's own callback list ends with the input (ENTRY_INPUT,
 * referenced), which D's end uses to detach from it. The entry holds a
 * reference to D.
 *
 *   input done --> D cancelled already: drop D
 *   (run list)     else take the input off D (cf__future_take_input, or
 *                  _take_input_of for a series, which knows the input):
 *                  input failed/cancelled: D the same
 *                  else inline: run fn now, complete D
 *                       else: submit D to the executor (D is the task's
 *                             own future: no second future, no extra hop)
 *   D done ------> input done: drop it (its firing finds D done)
 *   (first of      else take D off the input's list; then, from the run
 *    D's list)     list, detach from the input, and cancel it if D was
 *                  cancelled and nothing else waits on it (when.c has the
 *                  same rule)
 *
 * Exactly one of the two sees the other not done: the input's completion
 * detaches its list (with D's entry) under its lock, and D's end takes
 * the entry off under that lock; D's firing takes the input off D under
 * D's lock, and D's end detaches its list (with the input) under it.
 * When the input's value has a destructor, the input stays on D until D
 * is done, so the value D's task reads lives as long as D runs.
 *
 * Fan-out: an input's continuations start as one series (future.c puts
 * its list in order, which leaves a run of them linked by plain pointers,
 * and hands the run and the input to chain.c, which gives both to
 * cf__then_inputs_done at the outermost firing). All D of a series share
 * the input, so what D needs of it (a value? kept?) is read once, and
 * taking it off D is inline: lock D, check D waits, clear D's list,
 * which as a rule holds the input alone. Those bound for one thread pool
 * in a row are gathered and queued there as one chain
 * (cf_executor.submit_chain: one exchange on the queue's tail, one wake
 * decision), each with the reference its entry held, which becomes the
 * queue's; the input's references are dropped in one step at the end. So
 * a hop costs about a submit. Anything else (an inline continuation,
 * another executor, a failed input, an executor with a monitor or a task
 * timeout, a process worker's thread) first queues what was gathered,
 * since it may run user code that waits for those, then goes the
 * one-by-one way. A D cancelled
 * after its input was taken off it is queued all the same: the worker
 * finds it cancelled and skips it, as it skips any cancelled future.
 *
 * An input done already at the call needs no list at all when D goes to
 * an executor: D is made and submitted (or failed, or cancelled) during
 * the call, as cf_executor_submit would, unless the input's value has a
 * destructor (then the input stays on D, as above). Inline ones fire at
 * once: their function runs through the run list (chain.c).
 *
 * cf_future_then_always passes the input itself to its function, so its
 * continuation keeps a `then_op` the size of a future, a 64-byte slot (from
 * the same per-thread slabs): two links (chain.c), `on_self` on D,
 * attached first while D is still private, and `on_input` on the
 * antecedent, and a reference to each future; it is freed by whichever
 * link runs second.
 *
 * D is made and put on its input's list by future.c in one step
 * (cf__future_then), its usual path calling nothing: of what a hop costs
 * before its input is done, calls and repeated stores were most.
 *
 * D is handed out only once it is on its input's list, so D's end cannot
 * come before D is counted among the input's dependents. A cancel racing
 * the start of D is settled by D's own state machine: a cancelled D is
 * never run (cf_future_set_running_or_notify_cancel fails) and never
 * completed.
 */
#include "core/core.h"

#include <stddef.h>
#include <stdlib.h>

/* Low bits of then_op.self (futures are 8-byte aligned). */
enum { RAN = 1 /* one of the two links has run */ };

typedef struct then_op {
    union {
        cf__link on_input; /* on the antecedent, until it has run */
        struct {           /* then, cf_future_then_always's call */
            cf_then_fn fn;
            void *arg;
        } always;
    } u;
    cf__link on_self;
    cf_future *input;      /* referenced until the op ends */
    atomic_uintptr_t self; /* D (referenced until the op ends) | RAN */
    cf_executor *ex;       /* NULL: inline */
} then_op;

_Static_assert(sizeof(then_op) <= sizeof(cf_future),
               "a continuation fits a future's slot");

static cf_future *self_of(then_op *op)
{
    return (cf_future *)(atomic_load_explicit(&op->self,
                                              memory_order_relaxed) &
                         ~(uintptr_t)RAN);
}

/* The second of the two links to run frees the op. */
static void op_unref(then_op *op)
{
    if (!(atomic_fetch_or_explicit(&op->self, RAN, memory_order_acq_rel) &
          RAN))
        return;
    cf_future_release(op->input);
    cf_future_release(self_of(op));
    cf__future_mem_free(op);
}

/* Completes D as a copy of the input's failure or cancel. */
static void pass_on(cf_future *d, const cf_future *input)
{
    if (cf__state_cancelled(cf__future_state(input))) {
        cf__future_cancel(d);
        return;
    }
    const char *message = cf__future_message(input);
    cf__future_finish(d, NULL, NULL, cf__future_code(input),
                      message ? cf__strdup(message) : NULL);
}

/* The task of cf_future_then_always: the op lives until D is done. */
static void *run_always(void *arg, cf_call *call)
{
    then_op *op = arg;
    return op->u.always.fn(op->input, op->u.always.arg, call);
}

/* D's continuation could not be submitted: D fails with the reason. */
#if defined(__GNUC__)
__attribute__((noinline)) /* rare: kept out of the paths that submit */
#endif
static void submit_failed(cf_future *d, int rc)
{
    cf__future_finish(d, NULL, NULL, rc,
                      cf__format("the continuation could not be submitted: %s",
                                 cf_strerror(rc)));
}

/* Runs `fn(arg)` for D: now, here (inline), or by submitting D itself as
 * the task's future. */
static void start_task(cf_executor *ex, cf_future *d, cf_fn fn, void *arg)
{
    if (!ex) {
        if (cf_future_set_running_or_notify_cancel(d) == CF_OK)
            cf__run_task(d, fn, arg);
        return;
    }
    int rc = cf__executor_submit_future(ex, d, fn, arg);
    if (rc != CF_OK)
        submit_failed(d, rc);
}

/* Once the input is done, D's input on its list drops or cancels it per
 * the design above. */
static void release_or_cancel_input(cf_future *d, cf_future *input)
{
    if (!cf__state_done_for_result(cf__future_state(input)) &&
        cf__future_detach(input) &&
        cf__state_cancelled(cf__future_state(d)))
        cf_future_cancel(input);
    cf_future_release(input);
}

/* Continuations bound for one thread pool, gathered to be queued there
 * as one chain (cf_executor.submit_chain), linked through `next`. */
typedef struct fan_out {
    cf_executor *ex;
    cf_future *first, *last;
    int n;
} fan_out;

/* The pool refused a chain: its futures fail as a refused submit's do. */
#if defined(__GNUC__)
__attribute__((noinline))
#endif
static void chain_refused(cf_future *d, int n, int rc)
{
    for (int i = 0; i < n; i++) {
        cf_future *next = atomic_load_explicit(&d->next, memory_order_relaxed);
        submit_failed(d, rc);
        cf_future_release(d); /* the entry's */
        d = next;
    }
}

/* Queues what `b` gathered. The entries' references to the futures are
 * the queue's. */
static inline void flush(fan_out *b)
{
    if (b->n == 0)
        return;
    int n = b->n;
    b->n = 0;
    int rc = b->ex->submit_chain(b->ex->impl, b->first, b->last, n);
    if (rc != CF_OK)
        chain_refused(b->first, n, rc);
}

/* True if cf__executor_submit_future(ex, ...) would come down to a plain
 * ops->submit, which submit_chain may do for a chain instead. */
static inline bool chainable(const cf_executor *ex)
{
    return ex && ex->submit_chain && ex->task_timeout <= 0 &&
           !cf__process_worker_active() &&
           !atomic_load_explicit(&ex->monitor, memory_order_relaxed) &&
           !atomic_load_explicit(&ex->shut_down, memory_order_relaxed);
}

/* Starts D, whose input was taken off it with `value`, per the design
 * above: onto `b` if it goes to a thread pool (with others for the same
 * pool), else at once, after what `b` holds. The entry's reference to D
 * goes with it. */
static inline void start(fan_out *b, cf_future *d, void *value)
{
    /* D's start words, before a submit reuses them. */
    cf_fn fn = d->start.task.fn;
    cf_executor *ex = d->start.task.arg;
    if (b->n > 0 && ex == b->ex) {
        /* Bound for the pool of the chain being gathered (chainable a
         * moment ago). */
        d->start.task.arg = value;
        atomic_store_explicit(&b->last->next, d, memory_order_relaxed);
        b->last = d; /* with the entry's reference, the queue's to be */
        b->n++;
    } else if (chainable(ex)) {
        flush(b);
        d->start.task.arg = value;
        b->ex = ex;
        b->first = b->last = d;
        b->n = 1;
    } else {
        flush(b); /* an inline one may wait for those */
        start_task(ex, d, fn, value);
        cf_future_release(d); /* the entry's */
    }
}

/* The same for a D whose input failed or was cancelled: D the same. */
static void start_failed(fan_out *b, cf_future *d, const cf_future *input)
{
    flush(b); /* D's callbacks may wait for those */
    pass_on(d, input);
    cf_future_release(d); /* the entry's */
}

/* Done (its completer, or the acquire of its done state, made the outcome
 * visible to this thread): a value, or not. */
static inline bool has_value(const cf_future *input)
{
    return cf__future_state(input) == CF__FINISHED && !input->failed;
}

void cf__then_input_done(cf_future *d)
{
    bool kept = false;
    cf_future *input = cf__future_take_input(d, &kept);
    if (!input) {
        cf_future_release(d); /* cancelled while it waited */
        return;
    }
    fan_out b = {.n = 0};
    if (has_value(input))
        start(&b, d, input->end.value.result);
    else
        start_failed(&b, d, input);
    flush(&b);
    /* Kept, D's end drops it; else nothing D does reads it. */
    if (!kept)
        cf_future_release(input);
}

/* cf__then_inputs_done for an input that failed, was cancelled, or whose
 * value has a destructor (then it stays on each D until D is done). */
#if defined(__GNUC__)
__attribute__((noinline))
#endif
static void *inputs_done_any(cf_future *input, cf_future *d)
{
    bool ok = has_value(input);
    bool keep = ok && input->end.value.free_result;
    fan_out b = {.n = 0};
    unsigned drops = 0;
    void *next;
    for (;;) {
        next = atomic_load_explicit(&d->next, memory_order_relaxed);
        if (!cf__future_take_input_of(d, input, keep)) {
            cf_future_release(d); /* cancelled while it waited */
        } else {
            if (ok)
                start(&b, d, input->end.value.result);
            else
                start_failed(&b, d, input);
            drops++;
        }
        if (!cf__series_goes_on(next))
            break;
        d = next;
    }
    flush(&b);
    /* Kept, each D's end drops it. */
    if (!keep && drops > 0)
        cf__future_release_n(input, drops);
    return next;
}

void *cf__then_inputs_done(cf_future *input, cf_future *d)
{
    /* The input is the same for the whole series, and so is all D needs
     * of it: the usual case, a value without a destructor, goes alone. */
    if (!has_value(input) || input->end.value.free_result)
        return inputs_done_any(input, d);
    void *value = input->end.value.result;
    fan_out b = {.n = 0};
    unsigned drops = 0;
    void *next;
    for (;;) {
        next = atomic_load_explicit(&d->next, memory_order_relaxed);
        if (cf__future_take_input_of(d, input, false)) {
            start(&b, d, value);
            drops++;
        } else {
            cf_future_release(d); /* cancelled while it waited */
        }
        if (!cf__series_goes_on(next))
            break;
        d = next;
    }
    flush(&b);
    /* Nothing D does reads the input: the series' references in one
     * step. */
    if (drops > 0)
        cf__future_release_n(input, drops);
    return next;
}

void cf__then_self_done(cf_future *d, cf_future *input)
{
    if (!cf__future_unlink_then(input, d)) {
        cf_future_release(input); /* done: its firing finds D done */
        return;
    }
    /* D never started, so its start words are free: they carry the input
     * to the run list, where a cancel of it runs in constant stack. */
    d->start.task.arg = input;
    cf__chain_fire_then(d, true);
}

void cf__then_self_done_later(cf_future *d)
{
    release_or_cancel_input(d, d->start.task.arg);
    cf_future_release(d); /* the entry's, taken off the input */
}

/* cf_future_then_always: the op's links. */
static void always_input_done(cf__link *link)
{
    then_op *op = (then_op *)link;
    cf_future *d = self_of(op);
    /* D's start words, before a submit reuses them. */
    cf_fn fn = d->start.task.fn;
    void *arg = d->start.task.arg;
    if (!cf__state_done_for_result(cf__future_state(d))) {
        /* on_input has run: its words hold the call from now on. */
        op->u.always.fn = (cf_then_fn)(void (*)(void))fn;
        op->u.always.arg = arg;
        start_task(op->ex, d, run_always, op);
    }
    op_unref(op);
}

static void always_self_done(cf__link *link)
{
    then_op *op = (then_op *)((char *)link - offsetof(then_op, on_self));
    cf_future *input = op->input;
    if (!cf__state_done_for_result(cf__future_state(input)) &&
        cf__future_detach(input) &&
        cf__state_cancelled(cf__future_state(self_of(op))))
        cf_future_cancel(input);
    op_unref(op);
}

static int then_always_new(cf_future *f, cf_executor *ex, cf_fn fn,
                           void *arg, cf_future **out)
{
    then_op *op = cf__future_mem_alloc();
    cf_future *d = op ? cf__future_alloc() : NULL;
    if (!d) {
        if (op)
            cf__future_mem_free(op);
        return CF_ENOMEM;
    }
    d->start.task.fn = fn;
    d->start.task.arg = arg;
    d->completer_polls = f->completer_polls; /* see core.h */
    /* The op's reference and the caller's. D is seen by nobody else yet:
     * a store does what an increment would. */
    atomic_store_explicit(&d->refs, 2, memory_order_relaxed);
    op->input = cf_future_retain(f);
    atomic_init(&op->self, (uintptr_t)d);
    op->ex = ex;
    op->u.on_input.run = always_input_done;
    op->on_self.run = always_self_done;
    /* on_self first, while D is still ours alone: nothing can complete D
     * before on_input has run, so on_self still runs second unless D is
     * cancelled, by a caller who can only do so once on_input has
     * counted D among f's dependents. */
    cf__future_attach_new(d, &op->on_self);
    /* A link that finds its future done already runs now, in this
     * thread, as a done-callback would. */
    if (!cf__future_attach(f, &op->u.on_input, true))
        cf__chain_fire(&op->u.on_input);
    *out = d;
    return CF_OK;
}

/* The continuation that waits: D, on its input's list (or fired now, if
 * the input is done), made by future.c in one step. D's references: the
 * entry's and the caller's. D inherits the input's completer_polls, set
 * while D is ours alone: a polling thread completes the input, and so
 * starts D's end (core.h). cf_future_then's main path. */
static inline int then_attach(cf_future *f, cf_executor *ex, cf_fn fn,
                              cf_future **out)
{
    cf_future *d = cf__future_mem_alloc();
    if (!d)
        return CF_ENOMEM;
    return cf__future_then(d, f, fn, ex, out);
}

/* Below: every case, which the usual paths fall back on. */
static int then_any(cf_future *f, cf_executor *ex, cf_fn fn,
                    cf_future **out);

/* cf_future_then(f, ex, ...) with `f` done already and `ex` not NULL:
 * nothing to wait for, so no op. D is made and submitted at once, as
 * cf_executor_submit would, with the input's value as its argument; a
 * failed or cancelled input is copied. Only the input's value with a
 * destructor needs the op (D then keeps the input alive until it is
 * done). Inline continuations keep the general path: their function runs
 * through the run list (chain.c), after the link running now, if any.
 *
 * The usual case first, a value without a destructor, once then_check's
 * checks passed. */
static inline int value_now(cf_future *f, cf_executor *ex, cf_fn fn,
                            cf_future **out)
{
    cf_future *d = cf__future_alloc();
    if (!d)
        return CF_ENOMEM;
    *out = d;
    /* What is left of cf__executor_submit_future is the plain submit. */
    void *arg = f->end.value.result;
    int rc = ex->task_timeout > 0
                 ? cf__submit_limited(ex, d, fn, arg, NULL, ex->task_timeout)
                 : cf__executor_dispatch(ex, d, fn, arg, NULL);
    if (rc != CF_OK)
        submit_failed(*out, rc); /* D, read back: one register fewer kept */
    return CF_OK;
}

/* The same from cf_future_then, which leaves the rest of then_check's
 * checks to the paths that have a frame: the first needs a call (a TLS
 * descriptor's), and comes first because in a process worker `ex` may
 * point at nothing. */
#if defined(__GNUC__)
__attribute__((noinline)) /* keeps the waiting path's registers few */
#endif
static int then_value_now(cf_future *f, cf_executor *ex, cf_fn fn,
                          cf_future **out)
{
    if (cf__process_worker_active() ||
        atomic_load_explicit(&ex->shut_down, memory_order_relaxed))
        return then_any(f, ex, fn, out);
    return value_now(f, ex, fn, out);
}

/* Every other case. */
#if defined(__GNUC__)
__attribute__((noinline)) /* keeps the usual paths' registers few */
#endif
static int then_done_now(cf_future *f, cf_executor *ex, cf_fn fn,
                         cf_future **out)
{
    bool ok = cf__future_state(f) == CF__FINISHED && !f->failed;
    if (ok && f->end.value.free_result)
        return then_attach(f, ex, fn, out);
    if (ok)
        return value_now(f, ex, fn, out);
    cf_future *d = cf__future_alloc();
    if (!d)
        return CF_ENOMEM;
    *out = d;
    pass_on(d, f);
    return CF_OK;
}

/* The checks of both calls. CF_OK to go on. */
static inline int then_check(const cf_future *f, cf_executor *ex, cf_fn fn,
                             cf_future **out)
{
    if (ex && cf__process_worker_active() &&
        cf__executor_refused_in_worker(ex))
        return CF_EDEADLK;
    if (!f || !out || !fn)
        return CF_EINVAL;
    if (ex && atomic_load_explicit(&ex->shut_down, memory_order_relaxed))
        return CF_ESHUTDOWN;
    return CF_OK;
}

/* cf_future_then, every case. */
#if defined(__GNUC__)
__attribute__((noinline))
#endif
static int then_any(cf_future *f, cf_executor *ex, cf_fn fn, cf_future **out)
{
    int rc = then_check(f, ex, fn, out);
    if (rc != CF_OK)
        return rc;
    if (ex && cf__state_done_for_result(cf__future_state(f)))
        return then_done_now(f, ex, fn, out);
    return then_attach(f, ex, fn, out);
}

int cf_future_then(cf_future *f, cf_executor *ex, cf_fn fn, cf_future **out)
{
    /* The usual cases first, with an executor, whose paths then have no
     * call of their own to make room for: a hop costs no more than a
     * submit only so. The rest of then_check's checks is made where each
     * path has its frame; the first, a process worker's, before `ex` is
     * read. */
    if (!(f && ex && fn && out))
        return then_any(f, ex, fn, out);
    int state = cf__future_state(f);
    if (!cf__state_done_for_result(state))
        return cf__process_worker_active() ||
                       atomic_load_explicit(&ex->shut_down,
                                            memory_order_relaxed)
                   ? then_any(f, ex, fn, out)
                   : then_attach(f, ex, fn, out);
    if (state == CF__FINISHED && !f->failed && !f->end.value.free_result)
        return then_value_now(f, ex, fn, out);
    return then_any(f, ex, fn, out);
}

int cf_future_then_always(cf_future *f, cf_executor *ex, cf_then_fn fn,
                          void *arg, cf_future **out)
{
    /* Kept in D's start words as a cf_fn until it runs, then cast back. */
    cf_fn as_fn = (cf_fn)(void (*)(void))fn;
    int rc = then_check(f, ex, as_fn, out);
    if (rc != CF_OK)
        return rc;
    if (ex && !cf__executor_shares_memory(ex))
        return CF_ENOTSUP;
    return then_always_new(f, ex, as_fn, arg, out);
}
