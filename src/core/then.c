/* then.c - continuations: cf_future_then() and cf_future_then_always().
 *
 * Design: a continuation is the new future D plus one `then_op` of 56
 * bytes, the size of a future, so it comes from the same per-thread slabs
 * (future_slab.c): no malloc, and a worker that frees it does not touch
 * the allocating thread's heap. The op has two links (chain.c): `on_self`
 * on D, attached first while D is still private, and `on_input` on the
 * antecedent. It holds a reference to each future and is freed by
 * whichever link runs second, so the antecedent, and the value the
 * continuation reads from it, live until D is done. Usually the value
 * needs nothing of its future (no destructor): then on_input takes
 * on_self off D and ends the op itself, in the thread that completed the
 * input, so that the worker running D does what it does for any task. While D waits, its own
 * `start` words (unused until it is submitted) hold the function and its
 * argument.
 *
 *   input done --on_input--> D cancelled already: nothing
 *                            then, input failed/cancelled: D the same
 *                            else inline: run fn now, complete D
 *                                 else: submit D to the executor (D is
 *                                       the task's own future: no second
 *                                       future, no extra hop)
 *   D done ------on_self---> input not done (D was cancelled, or
 *                            completed by hand): detach from it, and
 *                            cancel it if D was cancelled and nothing
 *                            else waits on it (when.c has the same rule)
 *
 * An input done already at the call needs no op when D goes to an
 * executor: D is made and submitted (or failed, or cancelled) during the
 * call, as cf_executor_submit would, unless the input's value has a
 * destructor (then the op keeps the input alive while D runs). So a
 * `then` on a done input costs what a submit does. Inline ones keep the
 * op: their function runs through the run list (chain.c).
 *
 * D is handed out only once on_input is attached, so on_self cannot run
 * before on_input has counted D among the input's dependents. A cancel
 * racing the start of D is settled by D's own state machine: a cancelled
 * D is never run (cf_future_set_running_or_notify_cancel fails) and
 * never completed.
 */
#include "core/core.h"

#include <stddef.h>
#include <stdlib.h>

/* Low bits of then_op.self and then_op.input (futures are 8-byte
 * aligned). */
enum {
    RAN = 1,     /* self: one of the two links has run */
    ALWAYS = 2,  /* self: cf_future_then_always */
    SELF_IN = 1, /* input: on_self is looking at the input */
    GONE = 2,    /* input: released early by on_input */
    TAGS = 3,
};

typedef struct then_op {
    union {
        cf__link on_input; /* on the antecedent, until it has run */
        struct {           /* then, cf_future_then_always's call */
            cf_then_fn fn;
            void *arg;
        } always;
    } u;
    cf__link on_self;
    atomic_uintptr_t input; /* referenced until the op ends | tags */
    atomic_uintptr_t self;  /* D (referenced until the op ends) | tags */
    cf_executor *ex;        /* NULL: inline */
} then_op;

_Static_assert(sizeof(then_op) <= sizeof(cf_future),
               "a continuation fits a future's slot");

static cf_future *untag(uintptr_t word)
{
    return (cf_future *)(word & ~(uintptr_t)TAGS);
}

static cf_future *self_of(then_op *op)
{
    return untag(atomic_load_explicit(&op->self, memory_order_relaxed));
}

static cf_future *input_of(then_op *op)
{
    return untag(atomic_load_explicit(&op->input, memory_order_relaxed));
}

/* The second of the two links to run frees the op. */
static void op_unref(then_op *op)
{
    if (!(atomic_fetch_or_explicit(&op->self, RAN, memory_order_acq_rel) &
          RAN))
        return;
    uintptr_t input = atomic_load_explicit(&op->input, memory_order_relaxed);
    if (!(input & GONE))
        cf_future_release(untag(input));
    cf_future_release(self_of(op));
    cf__future_mem_free(op);
}

/* on_input's early release of the input, once nothing the continuation
 * will do reads it: the input's reference then goes in the thread that
 * completed the input, which has its memory in cache, not in a worker
 * (N continuations of one future would otherwise pass its line between
 * the threads on every hop). Not while on_self looks at the input: then
 * the op's end releases it, as usual. */
static void release_input_early(then_op *op)
{
    uintptr_t word = atomic_load_explicit(&op->input, memory_order_relaxed);
    while (!(word & SELF_IN))
        if (atomic_compare_exchange_weak_explicit(&op->input, &word,
                                                  word | GONE,
                                                  memory_order_acq_rel,
                                                  memory_order_relaxed)) {
            cf_future_release(untag(word));
            return;
        }
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
    return op->u.always.fn(input_of(op), op->u.always.arg, call);
}

/* D's continuation could not be submitted: D fails with the reason. */
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

static void input_done(cf__link *link)
{
    then_op *op = (then_op *)link;
    cf_future *d = self_of(op), *input = input_of(op);
    /* D's start words, before a submit reuses them. */
    cf_fn fn = d->start.task.fn;
    void *arg = d->start.task.arg;
    if (cf__state_done_for_result(cf__future_state(d))) {
        op_unref(op); /* cancelled while it waited */
        return;
    }
    if (atomic_load_explicit(&op->self, memory_order_relaxed) & ALWAYS) {
        /* on_input has run: its words hold the call from now on. */
        op->u.always.fn = (cf_then_fn)(void (*)(void))fn;
        op->u.always.arg = arg;
        start_task(op->ex, d, run_always, op);
        op_unref(op);
        return;
    }
    bool ok = cf__future_outcome(input) == CF_OK;
    cf_executor *ex = op->ex;
    /* The common case: what D still needs of the input is its outcome, or
     * a value with no destructor. Then on_self has no more work (the input
     * is done), so it comes off D and the op ends here, in the thread that
     * completed the input, instead of in the worker that completes D: a
     * hop then costs the worker what a submitted task does. */
    if ((!ok || !input->end.value.free_result) &&
        cf__future_unlink(d, &op->on_self)) {
        cf__future_mem_free(op);
        if (ok)
            start_task(ex, d, fn, cf__future_result(input));
        else
            pass_on(d, input);
        cf_future_release(input);
        cf_future_release(d);
        return;
    }
    /* on_self stays on D: its value has a destructor (D needs the input
     * until it is done), or D was cancelled a moment ago. */
    if (!ok) {
        pass_on(d, input);
        release_input_early(op);
        op_unref(op);
        return;
    }
    arg = cf__future_result(input);
    if (!input->end.value.free_result)
        release_input_early(op);
    start_task(ex, d, fn, arg);
    op_unref(op);
}

static void self_done(cf__link *link)
{
    then_op *op = (then_op *)((char *)link - offsetof(then_op, on_self));
    uintptr_t word = atomic_fetch_or_explicit(&op->input, SELF_IN,
                                              memory_order_acq_rel);
    /* GONE: on_input ran, so the input is done; nothing to detach. */
    cf_future *input = untag(word);
    if (!(word & GONE) && !cf__state_done_for_result(cf__future_state(input)) &&
        cf__future_detach(input) &&
        cf__state_cancelled(cf__future_state(self_of(op))))
        cf_future_cancel(input);
    op_unref(op);
}

/* The continuation that waits: an op with its two links. */
static int then_attach(cf_future *f, cf_executor *ex, cf_fn fn, bool always,
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
    /* The op's reference and the caller's. D is seen by nobody else yet:
     * a store does what an increment would. */
    atomic_store_explicit(&d->refs, 2, memory_order_relaxed);
    atomic_init(&op->input, (uintptr_t)cf_future_retain(f));
    atomic_init(&op->self, (uintptr_t)d | (always ? ALWAYS : 0));
    op->ex = ex;
    op->u.on_input.run = input_done;
    op->on_self.run = self_done;
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

/* cf_future_then(f, ex, ...) with `f` done already and `ex` not NULL:
 * nothing to wait for, so no op. D is made and submitted at once, as
 * cf_executor_submit would, with the input's value as its argument; a
 * failed or cancelled input is copied. Only the input's value with a
 * destructor needs the op (D then keeps the input alive until it is
 * done). Inline continuations keep the general path: their function runs
 * through the run list (chain.c), after the link running now, if any. */
static int then_done_now(cf_future *f, cf_executor *ex, cf_fn fn,
                         cf_future **out)
{
    bool ok = cf__future_state(f) == CF__FINISHED && !f->failed;
    if (ok && f->end.value.free_result)
        return then_attach(f, ex, fn, false, NULL, out);
    cf_future *d = cf__future_alloc();
    if (!d)
        return CF_ENOMEM;
    *out = d;
    if (!ok) {
        pass_on(d, f);
        return CF_OK;
    }
    /* then_new made cf__executor_submit_future's checks a moment ago: what
     * is left of them is the plain submit. */
    void *arg = f->end.value.result;
    int rc = ex->task_timeout > 0
                 ? cf__submit_limited(ex, d, fn, arg, NULL, ex->task_timeout)
                 : cf__executor_dispatch(ex, d, fn, arg, NULL);
    if (rc != CF_OK)
        submit_failed(d, rc);
    return CF_OK;
}

static int then_new(cf_future *f, cf_executor *ex, cf_fn fn, bool always,
                    void *arg, cf_future **out)
{
    if (ex && cf__process_worker_active() &&
        cf__executor_refused_in_worker(ex))
        return CF_EDEADLK;
    if (!f || !out || !fn)
        return CF_EINVAL;
    if (ex && atomic_load_explicit(&ex->shut_down, memory_order_relaxed))
        return CF_ESHUTDOWN;
    if (ex && always && !cf__executor_shares_memory(ex))
        return CF_ENOTSUP;
    if (!always && ex && cf__state_done_for_result(cf__future_state(f)))
        return then_done_now(f, ex, fn, out);
    return then_attach(f, ex, fn, always, arg, out);
}

int cf_future_then(cf_future *f, cf_executor *ex, cf_fn fn, cf_future **out)
{
    return then_new(f, ex, fn, false, NULL, out);
}

int cf_future_then_always(cf_future *f, cf_executor *ex, cf_then_fn fn,
                          void *arg, cf_future **out)
{
    /* Kept in D's start words as a cf_fn until it runs, then cast back. */
    return then_new(f, ex, (cf_fn)(void (*)(void))fn, true, arg, out);
}
