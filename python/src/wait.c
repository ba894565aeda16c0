/* wait.c - wait() and as_completed() over cfutures and foreign futures.
 *
 * Design: every future in the set is reduced to a core future. Ours have
 * one. A foreign future (the stdlib's, or any that speaks its private
 * protocol) gets a bridge: a core future of its own, completed by a small
 * waiter object appended to the foreign future's `_waiters` under its
 * `_condition` (add_result, add_exception, add_cancelled). Then one core
 * waiter with one node per pending future does the waiting, the GIL
 * released, as in the core's cf_wait: linear in the number of futures.
 *
 * "Done" follows the stdlib: a bare Future() that was cancelled counts only
 * once it has been notified (set_running_or_notify_cancel()): the core's
 * notify protocol, with waiters that do not wake on the cancel itself.
 *
 * Lock order: a foreign future's condition is taken with the GIL held and
 * never while a core lock is held; core notifications take the future's
 * lock, then the waiter's spinlock.
 */
#include "cfpy.h"

#include <stdlib.h>

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

typedef struct entry {
    PyObject *fut;       /* strong, until yielded */
    cf_future *cf;       /* one reference: ours, or the bridge's */
    PyObject *bridge;    /* installed on a foreign future, or NULL */
    bool done;           /* done when looked at */
    bool failed;         /* ... with an exception */
    bool installed;      /* node is on cf */
    cf__wait_node node;
} entry;

typedef struct collection {
    cfpy_state *st;
    PyObject *set;       /* the distinct futures, as set(fs) */
    entry *e;
    Py_ssize_t n;
} collection;

/* Reads a foreign future's state under its condition, and installs a
 * bridge on it if it is not done. */
typedef struct foreign_ctx {
    cfpy_state *st;
    entry *e;
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
static int look(cfpy_state *st, entry *e, bool install)
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
static void unhook(entry *e)
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

static void collection_free(collection *c)
{
    for (Py_ssize_t i = 0; c->e && i < c->n; i++) {
        unhook(&c->e[i]);
        Py_CLEAR(c->e[i].fut);
    }
    PyMem_Free(c->e);
    c->e = NULL;
    Py_CLEAR(c->set);
}

/* One entry per future of `set` (a new reference, which `c` takes),
 * looked at once. */
static int collect(cfpy_state *st, PyObject *set, collection *c)
{
    c->st = st;
    c->e = NULL;
    c->n = 0;
    c->set = set;
    if (!c->set)
        return -1;
    Py_ssize_t n = PySet_GET_SIZE(c->set);
    c->e = PyMem_Calloc(n ? (size_t)n : 1, sizeof *c->e);
    if (!c->e) {
        Py_CLEAR(c->set);
        PyErr_NoMemory();
        return -1;
    }
    PyObject *iter = PyObject_GetIter(c->set);
    if (!iter) {
        collection_free(c);
        return -1;
    }
    PyObject *item;
    while (c->n < n && (item = PyIter_Next(iter)) != NULL) {
        entry *e = &c->e[c->n++];
        e->fut = item;
        if (look(st, e, false) < 0) {
            Py_DECREF(iter);
            collection_free(c);
            return -1;
        }
    }
    Py_DECREF(iter);
    return 0;
}

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

static bool condition_holds(collection *c, int return_when)
{
    Py_ssize_t done = 0;
    for (Py_ssize_t i = 0; i < c->n; i++) {
        if (!c->e[i].done)
            continue;
        done++;
        if (return_when == FIRST_COMPLETED)
            return true;
        if (return_when == FIRST_EXCEPTION && c->e[i].failed)
            return true;
    }
    return done == c->n;
}

/* Installs nodes on every pending entry and sleeps until the condition
 * holds or the deadline passes. Returns 0 or -1 (a signal handler raised,
 * or installing failed). */
static int block(collection *c, int return_when, int64_t deadline)
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
        entry *e = &c->e[i];
        if (e->done)
            continue;
        if ((rc = look(c->st, e, true)) < 0)
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

/* True if every future in `set` is ours and done: nothing to wait for,
 * nothing to allocate. */
static bool all_ours_and_done(cfpy_state *st, PyObject *set)
{
    PyObject *iter = PyObject_GetIter(set), *item;
    bool all = iter != NULL;
    while (all && (item = PyIter_Next(iter)) != NULL) {
        all = cfpy_future_check(st, item) &&
              cfpy_future_done_for_wait((cfpy_future *)item);
        Py_DECREF(item);
    }
    Py_XDECREF(iter);
    PyErr_Clear(); /* a set's iterator does not fail */
    return all;
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

static PyObject *partition(collection *c)
{
    PyObject *done = PySet_New(NULL), *not_done = PySet_New(NULL);
    for (Py_ssize_t i = 0; done && not_done && i < c->n; i++) {
        entry *e = &c->e[i];
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
    PyObject *set = PySet_New(vals[0]);
    if (!set)
        return NULL;
    if (all_ours_and_done(st, set)) { /* the common case: set is `done` */
        PyObject *empty = PySet_New(NULL);
        PyObject *r = empty ? PyObject_CallFunctionObjArgs(
                                  st->DoneAndNotDone, set, empty, NULL)
                            : NULL;
        Py_XDECREF(empty);
        Py_DECREF(set);
        return r;
    }
    collection c;
    if (collect(st, set, &c) < 0)
        return NULL;
    PyObject *r = NULL;
    if (condition_holds(&c, return_when)) {
        bool all = true;
        for (Py_ssize_t i = 0; all && i < c.n; i++)
            all = c.e[i].done;
        if (all) { /* the common case: the set itself is `done` */
            PyObject *empty = PySet_New(NULL);
            if (empty)
                r = PyObject_CallFunctionObjArgs(st->DoneAndNotDone, c.set,
                                                 empty, NULL);
            Py_XDECREF(empty);
            collection_free(&c);
            return r;
        }
    } else if (block(&c, return_when, deadline) < 0) {
        collection_free(&c);
        return NULL;
    }
    r = partition(&c);
    collection_free(&c);
    return r;
}

/* ------------------------------------------------------------------------ */
/* as_completed()                                                           */

typedef struct as_completed {
    PyObject_HEAD
    collection c;           /* the futures not done at the start */
    cf__waiter w;           /* queue of notified nodes */
    PyObject *ready;        /* list: done at the start, yielded first */
    Py_ssize_t total;       /* distinct futures */
    Py_ssize_t yielded;
    int64_t deadline;
    bool finished;
    bool busy;              /* a next() waits, the GIL dropped */
} as_completed;

static void notify_queue(cf__waiter *w, cf__wait_node *node, cf_future *f)
{
    (void)f;
    node->done_next = NULL;
    cf__spin_lock(&w->lock);
    if (w->done_tail)
        w->done_tail->done_next = node;
    else
        w->done_head = node;
    w->done_tail = node;
    cf__spin_unlock(&w->lock);
    cf__event_signal_all(&w->event);
}

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
    collection_free(&it->c);
    Py_CLEAR(it->ready);
    cf__event_destroy(&it->w.event);
}

/* Hands out entry `e`: the iterator keeps no reference to a future it has
 * yielded (the stdlib's promise, bpo-14406). */
static PyObject *ac_yield(as_completed *it, entry *e)
{
    unhook(e);
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
            entry *e = (entry *)((char *)node - offsetof(entry, node));
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
    if (collect(st, pending, &it->c) < 0) {
        Py_DECREF(it);
        return NULL;
    }
    cf__event_init(&it->w.event);
    atomic_init(&it->w.lock.held, false);
    it->w.notify = notify_queue;
    it->w.wakes_on_cancel = false;
    it->w.done_head = it->w.done_tail = NULL;
    it->finished = false;
    PyObject_GC_Track(it);
    for (Py_ssize_t i = 0; i < it->c.n; i++) {
        entry *e = &it->c.e[i];
        if (!e->done && look(st, e, true) < 0) {
            Py_DECREF(it);
            return NULL;
        }
        e->node.waiter = &it->w;
        if (!e->done && cf__wait_node_install(e->cf, &e->node)) {
            e->installed = true;
            continue;
        }
        /* Done since the first look: queue it as a notification would. */
        notify_queue(&it->w, &e->node, e->cf);
    }
    Py_CLEAR(it->c.set); /* the entries and `ready` hold the futures */
    return (PyObject *)it;
}

int cfpy_wait_types_init(PyObject *module, cfpy_state *st)
{
    st->Bridge = (PyTypeObject *)PyType_FromModuleAndSpec(module,
                                                          &bridge_spec, NULL);
    if (!st->Bridge)
        return -1;
    st->AsCompleted = (PyTypeObject *)PyType_FromModuleAndSpec(
        module, &ac_spec, NULL);
    return st->AsCompleted ? 0 : -1;
}
