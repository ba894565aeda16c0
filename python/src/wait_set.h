/* wait_set.h - a set of futures reduced to core futures (wait_set.c), the
 * common ground of wait() (wait.c) and as_completed() (as_completed.c).
 *
 * Design: one entry per distinct future. Ours bring their core future; a
 * foreign future (the stdlib's, or any that speaks its private protocol)
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
    PyObject *set;       /* the distinct futures, as set(fs) */
    cfpy_wait_entry *e;
    Py_ssize_t n;
} cfpy_wait_set;

/* One entry per future of `set` (a new reference, which `c` takes, also
 * on failure), each looked at once. Returns 0, or -1 with an exception
 * and `c` empty. */
int cfpy_wait_set_collect(cfpy_state *st, PyObject *set, cfpy_wait_set *c);

/* Unhooks every entry and drops every reference `c` holds. */
void cfpy_wait_set_free(cfpy_wait_set *c);

/* Looks at entry `e` (done? failed?); with `install`, also prepares it for
 * waiting: a bridge for a foreign future, a core reference for ours.
 * Returns 0, or -1 with an exception. */
int cfpy_wait_entry_look(cfpy_state *st, cfpy_wait_entry *e, bool install);

/* Takes entry `e` out of waiting: its node, bridge and core reference. */
void cfpy_wait_entry_unhook(cfpy_wait_entry *e);

#endif /* CFPY_WAIT_SET_H */
