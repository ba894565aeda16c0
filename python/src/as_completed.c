/* as_completed.c - as_completed() over cfutures and foreign futures.
 *
 * Design: the distinct futures are collected once (wait_set.c: ours
 * deduplicated by a mark, not a set). Those done at the start are yielded
 * first, in input order, from the collected array; the others are reduced
 * to core futures, each with a node of one core waiter whose notification
 * appends the node to a queue; next() pops the queue or sleeps on the
 * waiter's event, the GIL released.
 *
 * Lock order: core notifications take the future's lock, then the
 * waiter's spinlock.
 */
#include "wait_set.h"

#include <stddef.h>

typedef struct as_completed {
    PyObject_HEAD
    cfpy_wait_set c;        /* c.done first, then c.e as they complete */
    cf__waiter w;           /* queue of notified nodes */
    Py_ssize_t next_done;   /* c.done[next_done] is yielded next */
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
    if (it->next_done < it->c.n_done) { /* the slot's reference is handed */
        PyObject *fut = it->c.done[it->next_done];
        it->c.done[it->next_done++] = NULL;
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
        for (Py_ssize_t i = it->next_done; i < it->c.n_done; i++)
            Py_VISIT(it->c.done[i]);
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
    as_completed *it = PyObject_GC_New(as_completed, st->AsCompleted);
    if (!it)
        return NULL;
    it->finished = true; /* until everything below is in place */
    it->busy = false;
    it->next_done = 0;
    it->yielded = 0;
    it->deadline = deadline;
    if (cfpy_wait_set_collect(st, fs, false, &it->c) < 0) {
        Py_DECREF(it);
        return NULL;
    }
    it->total = it->c.n_done + it->c.n;
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
    return (PyObject *)it;
}

int cfpy_as_completed_type_init(PyObject *module, cfpy_state *st)
{
    st->AsCompleted = (PyTypeObject *)PyType_FromModuleAndSpec(
        module, &ac_spec, NULL);
    return st->AsCompleted ? 0 : -1;
}
