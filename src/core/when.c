/* when.c - combinators: cf_when_all() and cf_when_any().
 *
 * Design: one allocation per combinator, `when_op`: a link (chain.c) per
 * input and one, `on_self`, on the new future D, attached last. The op
 * holds a reference to every input (in `inputs`) and to D, and is freed
 * when all its links have run, that is when D and every input are done.
 *
 *   when_all: each input's link counts down `remaining`; the last one
 *             completes D: with the inputs array as its value if all
 *             succeeded (D then owns the array and its references), or
 *             as the first input, in input order, that did not succeed.
 *   when_any: the first input link to set `decided` completes D with
 *             that input as its value (D holds a reference to it).
 *   on_self:  D is done; detach from every input not done yet (when_any's
 *             losers, or all of them if D was cancelled), and cancel those
 *             left with no dependent when D was cancelled (then.c has the
 *             same rule).
 *
 * Links of inputs done at the call run during it, in input order, so
 * when_any picks the first done input in input order. on_self is attached
 * after every input link, so it never detaches from an input that was
 * not yet counted.
 */
#include "core/core.h"

#include <stddef.h>
#include <stdlib.h>

typedef struct when_op when_op;

typedef struct input_link {
    cf__link link;
    when_op *op;
} input_link;

/* The inputs array, which becomes when_all's value: `futures` is what
 * cf_future_result() hands out; the count lets the value free itself. */
typedef struct input_array {
    size_t n;
    cf_future *futures[];
} input_array;

struct when_op {
    cf__link on_self;
    cf_future *self;           /* D; referenced until the op ends */
    input_array *inputs;       /* referenced; NULL once D owns them */
    bool any;
    atomic_bool decided;       /* when_any: a winner was taken */
    atomic_size_t remaining;   /* when_all: inputs not done */
    atomic_size_t links;       /* links not yet run */
    input_link in[];           /* one per input */
};

static void release_inputs(input_array *a)
{
    for (size_t i = 0; i < a->n; i++)
        cf_future_release(a->futures[i]);
    free(a);
}

/* when_all's value, freed with D. */
static void free_inputs_value(void *value)
{
    release_inputs((input_array *)((char *)value -
                                   offsetof(input_array, futures)));
}

/* when_any's value, freed with D. */
static void release_winner(void *value)
{
    cf_future_release(value);
}

static void op_unref(when_op *op)
{
    if (atomic_fetch_sub_explicit(&op->links, 1, memory_order_acq_rel) != 1)
        return;
    if (op->inputs)
        release_inputs(op->inputs);
    cf_future_release(op->self);
    free(op);
}

/* Every input is done: completes D by the rules in cfutures.h. */
static void complete_all(when_op *op)
{
    input_array *a = op->inputs;
    for (size_t i = 0; i < a->n; i++) {
        const cf_future *f = a->futures[i];
        if (cf__state_cancelled(cf__future_state(f))) {
            cf__future_cancel(op->self);
            return;
        }
        if (cf__future_code(f) != 0) {
            const char *message = cf__future_message(f);
            cf__future_finish(op->self, NULL, NULL, cf__future_code(f),
                              message ? cf__strdup(message) : NULL);
            return;
        }
    }
    if (cf__future_finish(op->self, a->futures, free_inputs_value, 0,
                          NULL) == CF_OK)
        op->inputs = NULL; /* D owns them now */
}

static void input_done(cf__link *link)
{
    input_link *in = (input_link *)link;
    when_op *op = in->op;
    if (op->any) {
        if (!atomic_exchange(&op->decided, true)) {
            cf_future *winner = op->inputs->futures[in - op->in];
            cf_future_retain(winner);
            if (cf__future_finish(op->self, winner, release_winner, 0,
                                  NULL) != CF_OK)
                cf_future_release(winner); /* D was cancelled */
        }
    } else if (atomic_fetch_sub(&op->remaining, 1) == 1) {
        complete_all(op);
    }
    op_unref(op);
}

static void self_done(cf__link *link)
{
    when_op *op = (when_op *)((char *)link - offsetof(when_op, on_self));
    bool cancelled = cf__state_cancelled(cf__future_state(op->self));
    input_array *a = op->inputs;
    for (size_t i = 0; a && i < a->n; i++) {
        cf_future *f = a->futures[i];
        if (!cf__state_done_for_result(cf__future_state(f)) &&
            cf__future_detach(f) && cancelled)
            cf_future_cancel(f);
    }
    op_unref(op);
}

static int when_new(cf_future *const *fs, size_t n, bool any,
                    cf_future **out)
{
    if (!out || (n > 0 && !fs) || (any && n == 0))
        return CF_EINVAL;
    if (n > (SIZE_MAX - sizeof(when_op)) / (sizeof(input_link) +
                                           sizeof(cf_future *)))
        return CF_EINVAL;
    for (size_t i = 0; i < n; i++)
        if (!fs[i])
            return CF_EINVAL;
    when_op *op = malloc(sizeof *op + n * sizeof(input_link));
    input_array *a = op ? malloc(sizeof *a + n * sizeof(cf_future *)) : NULL;
    cf_future *d = a ? cf__future_alloc() : NULL;
    if (!d) {
        free(a);
        free(op);
        return CF_ENOMEM;
    }
    a->n = n;
    for (size_t i = 0; i < n; i++) {
        a->futures[i] = cf_future_retain(fs[i]);
        /* Set while D is ours alone: an input's polling thread may be
         * the one to complete D (core.h). */
        d->completer_polls |= fs[i]->completer_polls;
    }
    op->inputs = a;
    op->self = cf_future_retain(d); /* and the caller's, in *out */
    op->any = any;
    atomic_init(&op->decided, false);
    atomic_init(&op->remaining, n);
    atomic_init(&op->links, n + 1);
    op->on_self.run = self_done;
    *out = d;
    if (n == 0) /* all of nothing: done at once */
        complete_all(op);
    for (size_t i = 0; i < n; i++) {
        op->in[i].op = op;
        op->in[i].link.run = input_done;
        if (!cf__future_attach(a->futures[i], &op->in[i].link, true))
            cf__chain_fire(&op->in[i].link);
    }
    if (!cf__future_attach(d, &op->on_self, false))
        cf__chain_fire(&op->on_self);
    return CF_OK;
}

int cf_when_all(cf_future *const *fs, size_t n, cf_future **out)
{
    return when_new(fs, n, false, out);
}

int cf_when_any(cf_future *const *fs, size_t n, cf_future **out)
{
    return when_new(fs, n, true, out);
}
