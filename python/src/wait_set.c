/* wait_set.c - a set of futures reduced to core futures: bridges for
 * foreign futures, one entry per future (see wait_set.h).
 *
 * "Done" follows the stdlib: a bare Future() that was cancelled counts only
 * once it has been notified (set_running_or_notify_cancel()).
 *
 * Lock order: a foreign future's condition is taken with the GIL held and
 * never while a core lock is held.
 */
#include "wait_set.h"

#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* Bridges: a stdlib waiter that completes a core future                    */

typedef struct bridge {
    PyObject_HEAD
    cf_future *cf; /* one reference */
} bridge;

static PyObject *bridge_add_result(bridge *b, PyObject *f)
{
    cf_future_set_result(b->cf, NULL);
    Py_RETURN_NONE;
}

static PyObject *bridge_add_exception(bridge *b, PyObject *f)
{
    cf_future_set_exception(b->cf, CF_ETASK, NULL);
    Py_RETURN_NONE;
}

static PyObject *bridge_add_cancelled(bridge *b, PyObject *f)
{
    cf_future_cancel(b->cf);
    Py_RETURN_NONE;
}

static void bridge_dealloc(bridge *b)
{
    PyTypeObject *tp = Py_TYPE(b);
    cf_future_release(b->cf);
    tp->tp_free((PyObject *)b);
    Py_DECREF(tp);
}

static PyMethodDef bridge_methods[] = {
    {"add_result", (PyCFunction)bridge_add_result, METH_O, NULL},
    {"add_exception", (PyCFunction)bridge_add_exception, METH_O, NULL},
    {"add_cancelled", (PyCFunction)bridge_add_cancelled, METH_O, NULL},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot bridge_slots[] = {
    {Py_tp_dealloc, bridge_dealloc},
    {Py_tp_methods, bridge_methods},
    {Py_tp_doc, PyDoc_STR("A waiter that cfutures.wait() installs on a "
                          "foreign future.")},
    {0, NULL},
};

static PyType_Spec bridge_spec = {
    .name = "cfutures._cfutures.Bridge",
    .basicsize = sizeof(bridge),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE |
             Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = bridge_slots,
};

/* Calls `with fut._condition: ...` around `body`. Returns body's result or
 * -1 with an exception. */
static int with_condition(PyObject *fut, int (*body)(PyObject *fut,
                                                     void *ctx),
                          void *ctx)
{
    PyObject *cond = PyObject_GetAttrString(fut, "_condition");
    if (!cond)
        return -1;
    PyObject *r = PyObject_CallMethod(cond, "acquire", NULL);
    if (!r) {
        Py_DECREF(cond);
        return -1;
    }
    Py_DECREF(r);
    int rc = body(fut, ctx);
    PyObject *t, *v, *tb;
    PyErr_Fetch(&t, &v, &tb);
    r = PyObject_CallMethod(cond, "release", NULL);
    Py_DECREF(cond);
    if (!r) {
        Py_XDECREF(t);
        Py_XDECREF(v);
        Py_XDECREF(tb);
        return -1;
    }
    Py_DECREF(r);
    PyErr_Restore(t, v, tb);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Collecting the set                                                       */

/* Reads a foreign future's state under its condition, and installs a
 * bridge on it if it is not done. */
typedef struct foreign_ctx {
    cfpy_state *st;
    cfpy_wait_entry *e;
    bool install;
} foreign_ctx;

static int foreign_look(PyObject *fut, void *arg)
{
    foreign_ctx *c = arg;
    cfpy_state *st = c->st;
    PyObject *state = PyObject_GetAttrString(fut, "_state");
    if (!state)
        return -1;
    int finished = PyObject_RichCompareBool(state, st->FINISHED, Py_EQ);
    int notified = finished == 0 ? PyObject_RichCompareBool(
                                       state, st->CANCELLED_AND_NOTIFIED,
                                       Py_EQ)
                                 : 0;
    Py_DECREF(state);
    if (finished < 0 || notified < 0)
        return -1;
    if (finished || notified) {
        c->e->done = true;
        if (finished) {
            PyObject *exc = PyObject_GetAttrString(fut, "_exception");
            if (!exc)
                return -1;
            c->e->failed = exc != Py_None;
            Py_DECREF(exc);
        }
        return 0;
    }
    if (!c->install)
        return 0;
    bridge *b = PyObject_New(bridge, st->Bridge);
    if (!b)
        return -1;
    if (cf_future_new(&b->cf) != CF_OK) {
        b->cf = NULL;
        Py_DECREF(b);
        PyErr_NoMemory();
        return -1;
    }
    PyObject *waiters = PyObject_GetAttrString(fut, "_waiters");
    if (!waiters || PyList_Append(waiters, (PyObject *)b) < 0) {
        Py_XDECREF(waiters);
        Py_DECREF(b);
        return -1;
    }
    Py_DECREF(waiters);
    c->e->bridge = (PyObject *)b;
    c->e->cf = cf_future_retain(b->cf);
    return 0;
}

static int foreign_remove(PyObject *fut, void *arg)
{
    PyObject *waiters = PyObject_GetAttrString(fut, "_waiters");
    if (!waiters)
        return -1;
    PyObject *r = PyObject_CallMethod(waiters, "remove", "O", (PyObject *)arg);
    Py_DECREF(waiters);
    if (!r) {
        if (!PyErr_ExceptionMatches(PyExc_ValueError))
            return -1;
        PyErr_Clear();
        return 0;
    }
    Py_DECREF(r);
    return 0;
}

/* Looks at entry `e` (done? failed?); with `install`, also prepares it for
 * waiting: a bridge for a foreign future, a core reference for ours. */
int cfpy_wait_entry_look(cfpy_state *st, cfpy_wait_entry *e, bool install)
{
    if (cfpy_future_check(st, e->fut)) {
        cfpy_future *f = (cfpy_future *)e->fut;
        e->done = cfpy_future_done_for_wait(f);
        e->failed = e->done && cfpy_future_failed(f);
        if (install && !e->done && !e->cf)
            e->cf = cf_future_retain(f->cf);
        return 0;
    }
    if (e->bridge)
        return 0;
    foreign_ctx c = {st, e, install};
    return with_condition(e->fut, foreign_look, &c);
}

/* Takes entry `e` out of waiting: its node, bridge and core reference. */
void cfpy_wait_entry_unhook(cfpy_wait_entry *e)
{
    if (e->installed) {
        cf__wait_node_remove(&e->node);
        e->installed = false;
    }
    if (e->bridge) {
        if (with_condition(e->fut, foreign_remove, e->bridge) < 0)
            PyErr_WriteUnraisable(e->fut);
        Py_CLEAR(e->bridge);
    }
    cf_future_release(e->cf);
    e->cf = NULL;
}

void cfpy_wait_set_free(cfpy_wait_set *c)
{
    for (Py_ssize_t i = 0; c->e && i < c->n; i++) {
        cfpy_wait_entry_unhook(&c->e[i]);
        Py_CLEAR(c->e[i].fut);
    }
    for (Py_ssize_t i = 0; c->done && i < c->n_done; i++)
        Py_CLEAR(c->done[i]);
    PyMem_Free(c->e);
    PyMem_Free(c->done);
    c->e = NULL;
    c->done = NULL;
    c->n = c->n_done = 0;
}

/* ------------------------------------------------------------------------ */
/* Collecting: one entry per distinct future                                */

/* A call collecting right now, on its stack, listed in st->marking. */
typedef struct cfpy_marking {
    uint64_t ticket;
    struct cfpy_marking *next;
} cfpy_marking;

/* True if `mark` is the ticket of a call collecting right now. Usually
 * the list holds the caller alone, whose own ticket it was asked about
 * already. */
static bool mark_in_use(const cfpy_state *st, uint64_t mark)
{
    for (const cfpy_marking *m = st->marking; m; m = m->next)
        if (m->ticket == mark)
            return true;
    return false;
}

/* Adds `o` to *set (made on first use). Returns 1 if it was not there,
 * 0 if it was, -1 with an exception (unhashable, as set(fs) raises). */
static int set_add_new(PyObject **set, PyObject *o)
{
    if (!*set && !(*set = PySet_New(NULL)))
        return -1;
    Py_ssize_t before = PySet_GET_SIZE(*set);
    if (PySet_Add(*set, o) < 0)
        return -1;
    return PySet_GET_SIZE(*set) > before;
}

/* Returns 1 if `o` is seen for the first time in this call, 0 if not,
 * -1 with an exception. */
static int first_sight(cfpy_state *st, const cfpy_marking *me, PyObject *o,
                       PyObject **seen)
{
    if (Py_TYPE(o) != st->Future) /* foreign, or a subclass: by the set */
        return set_add_new(seen, o);
    cfpy_future *f = (cfpy_future *)o;
    if (f->mark == me->ticket)
        return 0;
    /* Seen already while another call held its mark? */
    if (*seen) {
        int in = PySet_Contains(*seen, o);
        if (in != 0)
            return in < 0 ? -1 : 0;
    }
    if (f->mark != 0 && mark_in_use(st, f->mark))
        return set_add_new(seen, o); /* leave the other call its mark */
    f->mark = me->ticket;
    return 1;
}

/* Sorts the distinct futures of `items` (n of them) into c->done and
 * c->e. Returns 0 or -1 with an exception. */
static int sort_out(cfpy_state *st, const cfpy_marking *me, PyObject *seq,
                    Py_ssize_t n, bool check_failed, cfpy_wait_set *c)
{
    PyObject *seen = NULL;
    int rc = 0;
    /* Bounded by the size at the start: a foreign __hash__ or __eq__ may
     * change a list we iterate. */
    for (Py_ssize_t i = 0; i < n && i < PySequence_Fast_GET_SIZE(seq); i++) {
        PyObject *o = PySequence_Fast_GET_ITEM(seq, i);
        Py_INCREF(o);
        int first = first_sight(st, me, o, &seen);
        if (first <= 0) {
            Py_DECREF(o);
            if (first < 0) {
                rc = -1;
                break;
            }
            continue;
        }
        if (cfpy_future_check(st, o) &&
            cfpy_future_done_for_wait((cfpy_future *)o)) {
            if (check_failed && !c->done_failed)
                c->done_failed = cfpy_future_failed((cfpy_future *)o);
            c->done[c->n_done++] = o;
            continue;
        }
        cfpy_wait_entry *e = &c->e[c->n++];
        memset(e, 0, sizeof *e);
        e->fut = o; /* ours not done, or foreign: looked at later */
    }
    Py_XDECREF(seen);
    return rc;
}

int cfpy_wait_set_collect(cfpy_state *st, PyObject *fs, bool check_failed,
                          cfpy_wait_set *c)
{
    c->st = st;
    c->done = NULL;
    c->e = NULL;
    c->n = c->n_done = 0;
    c->done_failed = false;
    /* A list or a tuple is read in place; anything else is listed first,
     * which raises what set(fs) would for something not iterable. */
    PyObject *seq = PyList_CheckExact(fs) || PyTuple_CheckExact(fs)
                        ? Py_NewRef(fs)
                        : PySequence_List(fs);
    if (!seq)
        return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    /* Room for every item in both: pages never written cost nothing. */
    c->done = PyMem_Malloc((n ? (size_t)n : 1) * sizeof *c->done);
    c->e = PyMem_Malloc((n ? (size_t)n : 1) * sizeof *c->e);
    if (!c->done || !c->e) {
        Py_DECREF(seq);
        cfpy_wait_set_free(c);
        PyErr_NoMemory();
        return -1;
    }
    cfpy_marking me = {++st->mark_next, st->marking};
    st->marking = &me;
    int rc = sort_out(st, &me, seq, n, check_failed, c);
    /* Not necessarily the head: another thread may have started and not
     * yet ended its own collect while this one ran Python code. */
    cfpy_marking **p = &st->marking;
    while (*p != &me)
        p = &(*p)->next;
    *p = me.next;
    Py_DECREF(seq);
    if (rc < 0)
        cfpy_wait_set_free(c);
    return rc;
}

int cfpy_bridge_type_init(PyObject *module, cfpy_state *st)
{
    st->Bridge = (PyTypeObject *)PyType_FromModuleAndSpec(module,
                                                          &bridge_spec, NULL);
    return st->Bridge ? 0 : -1;
}
