/* as_completed.c - as_completed() over cfutures and foreign futures.
 *
 * Design: futures done at the start are yielded first, from a list; the
 * others are reduced to core futures (wait_set.c), each with a node of one
 * core waiter whose notification appends the node to a queue; next()
 * pops the queue or sleeps on the waiter's event, the GIL released.
 *
 * Lock order: core notifications take the future's lock, then the
 * waiter's spinlock.
 */
#include "wait_set.h"

#include <stddef.h>

typedef struct as_completed {
    PyObject_HEAD
    cfpy_wait_set c;        /* the futures not done at the start */
    cf__waiter w;           /* queue of notified nodes */
    PyObject *ready;        /* list: done at the start, yielded first */
    Py_ssize_t total;       /* distinct futures */
    Py_ssize_t yielded;
    int64_t deadline;
    bool finished;
    bool busy;              /* a next() waits, the GIL dropped */
} as_completed;

static bool queue_ready(void *arg)
{
    cf__waiter *w = arg;
    cf__spin_lock(&w->lock);
    bool r = w->done_head != NULL;
    cf__spin_unlock(&w->lock);
    return r;
}

static cf__wait_node *queue_pop(cf__waiter *w)
{
    cf__spin_lock(&w->lock);
    cf__wait_node *node = w->done_head;
    if (node) {
        w->done_head = node->done_next;
        if (!w->done_head)
            w->done_tail = NULL;
    }
    cf__spin_unlock(&w->lock);
    return node;
}

static void ac_finish(as_completed *it)
{
    if (it->finished)
        return;
    it->finished = true;
    cfpy_wait_set_free(&it->c);
    Py_CLEAR(it->ready);
    cf__event_destroy(&it->w.event);
}

/* Hands out entry `e`: the iterator keeps no reference to a future it has
 * yielded (the stdlib's promise, bpo-14406). */
static PyObject *ac_yield(as_completed *it, cfpy_wait_entry *e)
{
    cfpy_wait_entry_unhook(e);
    PyObject *fut = e->fut;
    e->fut = NULL;
    it->yielded++;
    return fut;
}

static PyObject *ac_wait_next(as_completed *it);

/* The stdlib's as_completed() is a generator: a second thread calling
 * next() while one waits gets "already executing", not a shared wait. */
static PyObject *ac_next(as_completed *it)
{
    if (it->busy) {
        PyErr_SetString(PyExc_ValueError, "generator already executing");
        return NULL;
    }
    it->busy = true;
    PyObject *r = ac_wait_next(it);
    it->busy = false;
    return r;
}

static PyObject *ac_wait_next(as_completed *it)
{
    if (it->finished)
        return NULL;
    Py_ssize_t n_ready = PyList_GET_SIZE(it->ready);
    if (n_ready > 0) { /* the list's reference goes to the caller */
        PyObject *fut = PyList_GET_ITEM(it->ready, n_ready - 1);
        Py_INCREF(fut);
        if (PyList_SetSlice(it->ready, n_ready - 1, n_ready, NULL) < 0) {
            Py_DECREF(fut);
            return NULL;
        }
        it->yielded++;
        return fut;
    }
    if (it->yielded == it->total) {
        ac_finish(it);
        return NULL;
    }
    for (;;) {
        cf__wait_node *node = queue_pop(&it->w);
        if (node) {
            cfpy_wait_entry *e = (cfpy_wait_entry *)((char *)node -
                                   offsetof(cfpy_wait_entry, node));
            e->installed = false; /* notified: the core unlinked it */
            return ac_yield(it, e);
        }
        int rc = cfpy_wait_event(&it->w.event, queue_ready, &it->w,
                                 it->deadline);
        if (rc < 0)
            return NULL;
        if (rc == 0) {
            PyErr_Format(it->c.st->TimeoutError,
                         "%zd (of %zd) futures unfinished",
                         it->total - it->yielded, it->total);
            ac_finish(it);
            return NULL;
        }
    }
}

static void ac_dealloc(as_completed *it)
{
    PyTypeObject *tp = Py_TYPE(it);
    PyObject_GC_UnTrack(it);
    ac_finish(it);
    tp->tp_free((PyObject *)it);
    Py_DECREF(tp);
}

static int ac_traverse(as_completed *it, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(it));
    if (!it->finished) {
        Py_VISIT(it->ready);
        for (Py_ssize_t i = 0; i < it->c.n; i++)
            Py_VISIT(it->c.e[i].fut);
    }
    return 0;
}

static PyType_Slot ac_slots[] = {
    {Py_tp_dealloc, ac_dealloc},
    {Py_tp_traverse, ac_traverse},
    {Py_tp_iter, PyObject_SelfIter},
    {Py_tp_iternext, ac_next},
    {Py_tp_doc, PyDoc_STR("Iterator of as_completed().")},
    {0, NULL},
};

static PyType_Spec ac_spec = {
    .name = "cfutures._cfutures.AsCompleted",
    .basicsize = sizeof(as_completed),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC |
             Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = ac_slots,
};

PyObject *cfpy_as_completed(PyObject *module, PyObject *const *args,
                            Py_ssize_t nargs, PyObject *kwnames)
{
    cfpy_state *st = cfpy_state_of_module(module);
    PyObject *fs = nargs > 0 ? args[0] : NULL, *timeout = Py_None;
    if (nargs > 1)
        timeout = args[1];
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    for (Py_ssize_t k = 0; k < nkw; k++) {
        PyObject *key = PyTuple_GET_ITEM(kwnames, k);
        if (PyUnicode_CompareWithASCIIString(key, "timeout") == 0 &&
            nargs < 2)
            timeout = args[nargs + k];
        else if (PyUnicode_CompareWithASCIIString(key, "fs") == 0 && !fs)
            fs = args[nargs + k];
        else {
            PyErr_Format(PyExc_TypeError,
                         "as_completed() got an unexpected keyword argument "
                         "'%S'",
                         key);
            return NULL;
        }
    }
    if (!fs || nargs > 2) {
        PyErr_SetString(PyExc_TypeError,
                        "as_completed(fs, timeout=None) takes 1 or 2 "
                        "arguments");
        return NULL;
    }
    int64_t deadline;
    if (cfpy_deadline(timeout, &deadline) < 0)
        return NULL;
    PyObject *set = PySet_New(fs);
    if (!set)
        return NULL;
    /* Done ones go straight to `ready`; only the others get an entry, a
     * core reference and a wait node. */
    PyObject *ready = PyList_New(0), *pending = PySet_New(NULL);
    PyObject *iter = ready && pending ? PyObject_GetIter(set) : NULL, *item;
    while (iter && (item = PyIter_Next(iter)) != NULL) {
        bool done = cfpy_future_check(st, item) &&
                    cfpy_future_done_for_wait((cfpy_future *)item);
        int rc = done ? PyList_Append(ready, item) : PySet_Add(pending, item);
        Py_DECREF(item);
        if (rc < 0)
            Py_CLEAR(iter);
    }
    Py_ssize_t total = PySet_GET_SIZE(set);
    Py_DECREF(set);
    if (!iter || PyErr_Occurred()) {
        Py_XDECREF(iter);
        Py_XDECREF(ready);
        Py_XDECREF(pending);
        return NULL;
    }
    Py_DECREF(iter);
    as_completed *it = PyObject_GC_New(as_completed, st->AsCompleted);
    if (!it) {
        Py_DECREF(ready);
        Py_DECREF(pending);
        return NULL;
    }
    it->finished = true; /* until everything below is in place */
    it->busy = false;
    it->ready = ready;
    it->total = total;
    it->yielded = 0;
    it->deadline = deadline;
    it->c.e = NULL;
    it->c.set = NULL;
    if (cfpy_wait_set_collect(st, pending, &it->c) < 0) {
        Py_DECREF(it);
        return NULL;
    }
    cf__event_init(&it->w.event);
    atomic_init(&it->w.lock.held, false);
    it->w.notify = cf__waiter_notify_queue;
    it->w.wakes_on_cancel = false;
    it->w.done_head = it->w.done_tail = NULL;
    it->finished = false;
    PyObject_GC_Track(it);
    for (Py_ssize_t i = 0; i < it->c.n; i++) {
        cfpy_wait_entry *e = &it->c.e[i];
        if (!e->done && cfpy_wait_entry_look(st, e, true) < 0) {
            Py_DECREF(it);
            return NULL;
        }
        e->node.waiter = &it->w;
        if (!e->done && cf__wait_node_install(e->cf, &e->node)) {
            e->installed = true;
            continue;
        }
        /* Done since the first look: queue it as a notification would. */
        cf__waiter_notify_queue(&it->w, &e->node, e->cf);
    }
    Py_CLEAR(it->c.set); /* the entries and `ready` hold the futures */
    return (PyObject *)it;
}

int cfpy_as_completed_type_init(PyObject *module, cfpy_state *st)
{
    st->AsCompleted = (PyTypeObject *)PyType_FromModuleAndSpec(
        module, &ac_spec, NULL);
    return st->AsCompleted ? 0 : -1;
}
