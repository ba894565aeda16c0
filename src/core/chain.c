/* chain.c - the run list that carries continuations and combinators.
 *
 * Design: a continuation (then.c) or combinator (when.c) follows each
 * future it waits on through a link (core.h): a done-callback embedded in
 * the operation, so following a future costs no allocation. When the
 * future completes, the link fires in the completing thread; its work
 * (submitting a continuation, running an inline one, completing a
 * combinator, detaching from inputs, propagating a cancel) usually
 * completes another future, whose links fire in turn. Run directly, a
 * chain of 100,000 continuations would nest 100,000 frames deep. So a
 * fired link goes on this thread's run list, and only the outermost
 * firing on a thread drains the list; a firing inside a run appends and
 * returns. A chain then runs as a loop, in constant stack, in the thread
 * that completed its first future, before the call that completed it
 * returns.
 *
 * The list is per thread, so it needs no lock. A link's `next` field is
 * free once the future has fired it (run_callbacks read it first), so it
 * doubles as the list's link; so is the `next` word of a continuation
 * future (then.c), its entry on its input's list. Entries run in the
 * order they fired.
 *
 * A completing future's continuations, each run of them in a row on its
 * list, fire as one series (cf__chain_fire_thens, which hands back what
 * follows the run): at the outermost firing, then.c starts them all
 * before the list runs, so that those bound for one thread pool can be
 * queued there together; inside a run they are appended one by one.
 */
#include "core/core.h"

/* A run list entry: a link, or a continuation future (then.c) to start or
 * to detach, told apart by the low bits; each has its own `next` word. */
enum { RUN_LINK, RUN_INPUT, RUN_SELF, RUN_TAGS = 3 };

static _Thread_local struct {
    uintptr_t head, tail;
    bool draining;
} runs;

static void set_next(uintptr_t entry, uintptr_t next)
{
    void *p = (void *)(entry & ~(uintptr_t)RUN_TAGS);
    if ((entry & RUN_TAGS) == RUN_LINK)
        ((cf__link *)p)->next = (void *)next;
    else
        atomic_store_explicit(&((cf_future *)p)->next, (cf_future *)next,
                              memory_order_relaxed);
}

static uintptr_t get_next(uintptr_t entry)
{
    void *p = (void *)(entry & ~(uintptr_t)RUN_TAGS);
    if ((entry & RUN_TAGS) == RUN_LINK)
        return (uintptr_t)((cf__link *)p)->next;
    return (uintptr_t)atomic_load_explicit(&((cf_future *)p)->next,
                                           memory_order_relaxed);
}

static void run(uintptr_t entry)
{
    void *p = (void *)(entry & ~(uintptr_t)RUN_TAGS);
    switch (entry & RUN_TAGS) {
    case RUN_LINK:
        ((cf__link *)p)->run(p);
        break;
    case RUN_INPUT:
        cf__then_input_done(p);
        break;
    default:
        cf__then_self_done_later(p);
        break;
    }
}

/* Runs what the list holds, to its end. */
static inline void drain(void)
{
    uintptr_t entry;
    while ((entry = runs.head) != 0) {
        runs.head = get_next(entry);
        if (!runs.head)
            runs.tail = 0;
        run(entry);
    }
}

static void fire(uintptr_t entry)
{
    if (runs.draining) {
        /* An outer firing on this thread runs it, after those before. */
        set_next(entry, 0);
        if (runs.tail)
            set_next(runs.tail, entry);
        else
            runs.head = entry;
        runs.tail = entry;
        return;
    }
    /* The outermost firing: the list is empty, so this one runs first. */
    runs.draining = true;
    run(entry); /* may append more, and free its entry */
    drain();
    runs.draining = false;
}

void cf__chain_fire(cf__link *link)
{
    fire((uintptr_t)link | RUN_LINK);
}

void cf__chain_fire_then(cf_future *d, bool self_done)
{
    fire((uintptr_t)d | (self_done ? RUN_SELF : RUN_INPUT));
}

void *cf__chain_fire_thens(cf_future *input, cf_future *d)
{
    if (runs.draining) {
        /* Appended in order, after those before: the series' own links,
         * tagged, are the list's. */
        uintptr_t entry = (uintptr_t)d | RUN_INPUT;
        if (runs.tail)
            set_next(runs.tail, entry);
        else
            runs.head = entry;
        void *next;
        while (cf__series_goes_on(next = atomic_load_explicit(
                                      &d->next, memory_order_relaxed))) {
            atomic_store_explicit(&d->next,
                                  (cf_future *)((uintptr_t)next | RUN_INPUT),
                                  memory_order_relaxed);
            d = next;
        }
        atomic_store_explicit(&d->next, NULL, memory_order_relaxed);
        runs.tail = (uintptr_t)d | RUN_INPUT;
        return next;
    }
    /* The outermost firing: the whole series starts at once (then.c
     * queues those bound for one thread pool together); what they
     * complete meanwhile waits on the list, which runs after them. */
    runs.draining = true;
    void *next = cf__then_inputs_done(input, d);
    drain();
    runs.draining = false;
    return next;
}
