/* wait_set.h - a set of futures reduced to core futures (wait_set.c), the
 * common ground of wait() (wait.c) and as_completed() (as_completed.c).
 *
 * Design: one entry per distinct future not done when collected (ours
 * that are done need nothing but a slot in a list). Ours bring their
 * core future; a foreign future (the stdlib's, or any that speaks its private protocol)
 * gets a bridge: a core future of its own, completed by a small waiter
 * object appended to the foreign future's `_waiters` under its
 * `_condition`. Then one core waiter with one node per pending entry does
 * the waiting, the GIL released. Everything here runs with the GIL held.
 */
#ifndef CFPY_WAIT_SET_H
#define CFPY_WAIT_SET_H

#include "cfpy.h"

typedef struct cfpy_wait_entry {
    PyObject *fut;       /* strong, until yielded */
    cf_future *cf;       /* one reference: ours, or the bridge's */
    PyObject *bridge;    /* installed on a foreign future, or NULL */
    bool done;           /* done when looked at */
    bool failed;         /* ... with an exception */
    bool installed;      /* node is on cf */
    cf__wait_node node;
} cfpy_wait_entry;

typedef struct cfpy_wait_set {
    cfpy_state *st;
    /* Ours that were done when collected (strong references), in input
     * order; as_completed() clears each slot as it yields it. */
    PyObject **done;
    Py_ssize_t n_done;
    bool done_failed;    /* one of `done` failed (if collect was asked) */
    /* The others: ours not done, and every foreign future. */
    cfpy_wait_entry *e;
    Py_ssize_t n;
} cfpy_wait_set;

/* The distinct futures of the iterable `fs` (the futures set(fs) would
 * hold), in input order: ours sorted into done and not done, foreign ones
 * in `e`, not looked at yet. With `check_failed`, also whether one of the
 * done ones failed (FIRST_EXCEPTION). Returns 0, or -1 with an exception
 * (set(fs)'s, for a bad `fs`) and `c` empty.
 *
 * Duplicates: each of our futures carries the ticket of the last call
 * that collected it (cfpy_future.mark), so a second sight of it in the
 * same call costs a compare, where set(fs) costs a hash, a probe and a
 * share of the table's growth per future. A mark is only trusted while
 * its call is collecting (st->marking lists those calls): a future whose
 * mark belongs to another call collecting right now (a second thread, or
 * fs's own Python code calling wait()) is deduplicated by a set instead,
 * and so are foreign futures and instances of subclasses (which may
 * define __eq__ and __hash__). */
int cfpy_wait_set_collect(cfpy_state *st, PyObject *fs, bool check_failed,
                          cfpy_wait_set *c);

/* Unhooks every entry and drops every reference `c` holds. */
void cfpy_wait_set_free(cfpy_wait_set *c);

/* Looks at entry `e` (done? failed?); with `install`, also prepares it for
 * waiting: a bridge for a foreign future, a core reference for ours.
 * Returns 0, or -1 with an exception. */
int cfpy_wait_entry_look(cfpy_state *st, cfpy_wait_entry *e, bool install);

/* Takes entry `e` out of waiting: its node, bridge and core reference. */
void cfpy_wait_entry_unhook(cfpy_wait_entry *e);

#endif /* CFPY_WAIT_SET_H */
