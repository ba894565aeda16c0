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
 * doubles as the list's link. Links run in the order they fired.
 */
#include "core/core.h"

static _Thread_local struct {
    cf__link *head, *tail;
    bool draining;
} runs;

void cf__chain_fire(cf__link *link)
{
    link->next = NULL;
    if (runs.tail)
        runs.tail->next = link;
    else
        runs.head = link;
    runs.tail = link;
    if (runs.draining)
        return; /* an outer firing on this thread runs it */
    runs.draining = true;
    while ((link = runs.head) != NULL) {
        runs.head = link->next;
        if (!runs.head)
            runs.tail = NULL;
        link->run(link); /* may append more, and free `link` */
    }
    runs.draining = false;
}
