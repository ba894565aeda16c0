/* wait.c - wait() over cfutures and foreign futures.
 *
 * Design: the distinct futures are collected once (wait_set.c: ours
 * deduplicated by a mark, not a set; those done need nothing more); the
 * others are reduced to core futures, then one core waiter with one node
 * per pending future does the waiting, the GIL released, as in the core's
 * cf_wait: linear in the number of futures.
 * The waiter's nodes do not wake on the cancel of a bare Future(): it
 * counts once notified, as in the stdlib.
 *
 * Lock order: core notifications take the future's lock, then the
 * waiter's spinlock.
 */
#include "wait_set.h"

/* A process pool's future also failed when its answer, still pickled, is
 * an exception (remote.c: any tag but 'R'); every other core future the
 * binding waits on holds no result. */
static bool core_failed(const cf_future *f)
{
    if (cf__future_state(f) != CF__FINISHED)
        return false;
    if (f->failed)
        return true;
    const cf_bytes *b = cf__future_result(f);
    return b && b->len > 0 && b->data[0] != 'R';
}

/* ------------------------------------------------------------------------ */
/* wait()                                                                   */

enum { ALL, FIRST_COMPLETED, FIRST_EXCEPTION };

static void notify_wait(cf__waiter *w, cf__wait_node *node, cf_future *f)
{
    (void)node;
    cf__spin_lock(&w->lock);
    w->remaining--;
    bool trigger = w->remaining == 0 || w->return_when == FIRST_COMPLETED ||
                   (w->return_when == FIRST_EXCEPTION && core_failed(f));
    if (trigger)
        w->triggered = true;
    cf__spin_unlock(&w->lock);
    if (trigger)
        cf__event_signal_all(&w->event);
}

static bool triggered(void *arg)
{
    cf__waiter *w = arg;
    cf__spin_lock(&w->lock);
    bool t = w->triggered;
    cf__spin_unlock(&w->lock);
    return t;
}

/* Looks at the entries not looked at yet (foreign futures: under their
 * condition), then says whether wait() may return without blocking.
 * Returns 1, 0, or -1 with an exception. */
static int condition_holds(cfpy_wait_set *c, int return_when)
{
    Py_ssize_t done = c->n_done;
    bool failed = c->done_failed;
    for (Py_ssize_t i = 0; i < c->n; i++) {
        cfpy_wait_entry *e = &c->e[i];
        if (!cfpy_future_check(c->st, e->fut) &&
            cfpy_wait_entry_look(c->st, e, false) < 0)
            return -1;
        done += e->done;
        failed = failed || (e->done && e->failed);
    }
    if (return_when == FIRST_COMPLETED && done > 0)
        return 1;
    if (return_when == FIRST_EXCEPTION && failed)
        return 1;
    return done == c->n_done + c->n;
}

/* Installs nodes on every pending entry and sleeps until the condition
 * holds or the deadline passes. Returns 0 or -1 (a signal handler raised,
 * or installing failed). */
static int block(cfpy_wait_set *c, int return_when, int64_t deadline)
{
    cf__waiter w;
    cf__event_init(&w.event);
    atomic_init(&w.lock.held, false);
    w.notify = notify_wait;
    w.wakes_on_cancel = false; /* a bare future counts once notified */
    w.remaining = 0;
    w.triggered = false;
    w.return_when = return_when;
    w.done_head = w.done_tail = NULL;
    int rc = 0;
    for (Py_ssize_t i = 0; i < c->n && rc == 0; i++) {
        cfpy_wait_entry *e = &c->e[i];
        if (e->done)
            continue;
        if ((rc = cfpy_wait_entry_look(c->st, e, true)) < 0)
            break;
        if (e->done) { /* completed since the first look */
            if (return_when == FIRST_COMPLETED ||
                (return_when == FIRST_EXCEPTION && e->failed)) {
                cf__spin_lock(&w.lock);
                w.triggered = true;
                cf__spin_unlock(&w.lock);
            }
            continue;
        }
        cf__spin_lock(&w.lock);
        w.remaining++;
        cf__spin_unlock(&w.lock);
        e->node.waiter = &w;
        if (cf__wait_node_install(e->cf, &e->node)) {
            e->installed = true;
            continue;
        }
        /* Completed just now: count it as a notification would. */
        notify_wait(&w, &e->node, e->cf);
    }
    cf__spin_lock(&w.lock);
    if (w.remaining == 0)
        w.triggered = true;
    cf__spin_unlock(&w.lock);
    if (rc == 0 && cfpy_wait_event(&w.event, triggered, &w, deadline) < 0)
        rc = -1;
    for (Py_ssize_t i = 0; i < c->n; i++) {
        if (c->e[i].installed) {
            cf__wait_node_remove(&c->e[i].node);
            c->e[i].installed = false;
        }
    }
    cf__event_destroy(&w.event);
    return rc;
}

static int parse_return_when(cfpy_state *st, PyObject *o, int *out)
{
    PyObject *names[] = {st->ALL_COMPLETED, st->FIRST_COMPLETED,
                         st->FIRST_EXCEPTION};
    for (int i = 0; i < 3; i++) {
        int eq = PyObject_RichCompareBool(o, names[i], Py_EQ);
        if (eq < 0)
            return -1;
        if (eq) {
            *out = i;
            return 0;
        }
    }
    PyErr_Format(PyExc_ValueError, "Invalid return condition: %R", o);
    return -1;
}

/* Adds c->done[from ...] to `set`. Returns 0 or -1 with an exception. */
static int add_all(PyObject *set, PyObject *const *items, Py_ssize_t n)
{
    for (Py_ssize_t i = 0; i < n; i++)
        if (PySet_Add(set, items[i]) < 0)
            return -1;
    return 0;
}

/* DoneAndNotDoneFutures(done, not_done) as the futures are now. */
static PyObject *partition(cfpy_wait_set *c)
{
    PyObject *done = PySet_New(NULL), *not_done = PySet_New(NULL);
    if (done && not_done && add_all(done, c->done, c->n_done) < 0)
        Py_CLEAR(done);
    for (Py_ssize_t i = 0; done && not_done && i < c->n; i++) {
        cfpy_wait_entry *e = &c->e[i];
        bool is_done = e->done;
        if (!is_done && cfpy_future_check(c->st, e->fut))
            is_done = cfpy_future_done_for_wait((cfpy_future *)e->fut);
        else if (!is_done && e->cf)
            is_done = cf__state_done(cf__future_state(e->cf));
        if (PySet_Add(is_done ? done : not_done, e->fut) < 0)
            Py_CLEAR(done);
    }
    PyObject *r = done && not_done
                      ? PyObject_CallFunctionObjArgs(c->st->DoneAndNotDone,
                                                     done, not_done, NULL)
                      : NULL;
    Py_XDECREF(done);
    Py_XDECREF(not_done);
    return r;
}

PyObject *cfpy_wait(PyObject *module, PyObject *const *args, Py_ssize_t nargs,
                    PyObject *kwnames)
{
    cfpy_state *st = cfpy_state_of_module(module);
    static const char *const names[] = {"fs", "timeout", "return_when"};
    PyObject *vals[3] = {NULL, Py_None, st->ALL_COMPLETED};
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    if (nargs > 3) {
        PyErr_SetString(PyExc_TypeError,
                        "wait() takes at most 3 arguments");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < nargs; i++)
        vals[i] = args[i];
    for (Py_ssize_t k = 0; k < nkw; k++) {
        PyObject *key = PyTuple_GET_ITEM(kwnames, k);
        int slot = -1;
        for (int j = 0; j < 3; j++)
            if (PyUnicode_CompareWithASCIIString(key, names[j]) == 0)
                slot = j;
        if (slot < 0 || slot < nargs) {
            PyErr_Format(PyExc_TypeError,
                         slot < 0 ? "wait() got an unexpected keyword "
                                    "argument '%S'"
                                  : "wait() got multiple values for "
                                    "argument '%S'",
                         key);
            return NULL;
        }
        vals[slot] = args[nargs + k];
    }
    if (!vals[0]) {
        PyErr_SetString(PyExc_TypeError,
                        "wait() missing required argument 'fs'");
        return NULL;
    }
    int return_when;
    int64_t deadline;
    if (parse_return_when(st, vals[2], &return_when) < 0 ||
        cfpy_deadline(vals[1], &deadline) < 0)
        return NULL;
    cfpy_wait_set c;
    if (cfpy_wait_set_collect(st, vals[0], return_when == FIRST_EXCEPTION,
                              &c) < 0)
        return NULL;
    int holds = condition_holds(&c, return_when);
    if (holds < 0 || (!holds && block(&c, return_when, deadline) < 0)) {
        cfpy_wait_set_free(&c);
        return NULL;
    }
    PyObject *r = partition(&c);
    cfpy_wait_set_free(&c);
    return r;
}
