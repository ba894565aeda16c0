/* map.c - Executor.map(fn, *iterables, timeout, chunksize, buffersize).
 *
 * Design: the stdlib's semantics in one C iterator. Without buffersize
 * every call is submitted before map() returns (bpo-11777); with it (3.14),
 * at most `buffersize` results wait unyielded, and each result yielded
 * submits the next call, while the executor still exists (a weak
 * reference, so the iterator does not keep the executor alive). Results
 * come back in input order; the timeout counts from the map() call. When
 * a call fails or is late, that result raises, the iterator ends, and the
 * calls not yet started are cancelled, as the stdlib's generator does when
 * it unwinds; dropping or close()-ing an iterator that has started does
 * the same (one never advanced keeps its calls, as an unstarted
 * generator's finally clause never runs). chunksize only matters to
 * process pools: their map() submits one call per chunk and asks for
 * `_flatten`, which yields the items of each result list in turn (the
 * stdlib's _chain_from_iterable_of_lists, without a Python generator
 * step per item); a yielded item's slot in its list is cleared at once.
 */
#include "cfpy.h"

typedef struct map_iter {
    PyObject_HEAD
    cfpy_state *st;
    PyObject *fs;         /* list of futures; yielded slots are None */
    Py_ssize_t pos;       /* next to yield */
    PyObject *zipped;     /* with buffersize: the rest of zip(*iterables) */
    PyObject *fn;         /* with buffersize */
    PyObject *executor;   /* weak reference, with buffersize */
    PyObject *chunk;      /* _flatten: the result list being yielded */
    Py_ssize_t cpos;      /* its next item */
    int64_t deadline;
    bool flatten;         /* _flatten: results are lists of results */
    bool started;
    bool finished;
    bool busy;            /* a next() waits, the GIL dropped */
} map_iter;

/* Submits fn(*args) through executor.submit (ours, unless a subclass
 * replaced it). Returns a new future or NULL. */
static PyObject *submit(cfpy_state *st, PyObject *executor, PyObject *fn,
                        PyObject *args, PyObject *submit_method)
{
    if (!submit_method) {
        cfpy_pool *pool = ((cfpy_executor *)executor)->pool;
        return (PyObject *)cfpy_pool_submit(
            pool, fn, PyTuple_GET_SIZE(args) ? args : NULL, NULL);
    }
    Py_ssize_t n = PyTuple_GET_SIZE(args);
    PyObject *full = PyTuple_New(n + 1);
    if (!full)
        return NULL;
    PyTuple_SET_ITEM(full, 0, Py_NewRef(fn));
    for (Py_ssize_t i = 0; i < n; i++)
        PyTuple_SET_ITEM(full, i + 1, Py_NewRef(PyTuple_GET_ITEM(args, i)));
    PyObject *f = PyObject_Call(submit_method, full, NULL);
    Py_DECREF(full);
    return f;
}

/* The bound submit method if type(executor) overrides ours, else NULL
 * (with no exception). Returns -1 on error. */
static int custom_submit(cfpy_state *st, PyObject *executor, PyObject **out)
{
    *out = NULL;
    PyObject *mine = PyObject_GetAttrString((PyObject *)st->ThreadPoolBase,
                                            "submit");
    PyObject *theirs = mine ? PyObject_GetAttrString(
                                  (PyObject *)Py_TYPE(executor), "submit")
                            : NULL;
    int rc = theirs ? 0 : -1;
    if (theirs && theirs != mine)
        rc = (*out = PyObject_GetAttrString(executor, "submit")) ? 0 : -1;
    Py_XDECREF(mine);
    Py_XDECREF(theirs);
    return rc;
}

static void cancel_rest(map_iter *it)
{
    for (Py_ssize_t i = it->pos; it->fs && i < PyList_GET_SIZE(it->fs); i++) {
        PyObject *f = PyList_GET_ITEM(it->fs, i);
        if (cfpy_future_check(it->st, f)) {
            if (cfpy_future_cancel(it->st, (cfpy_future *)f) < 0)
                PyErr_WriteUnraisable(f);
        } else {
            PyObject *r = PyObject_CallMethod(f, "cancel", NULL);
            if (!r)
                PyErr_WriteUnraisable(f);
            Py_XDECREF(r);
        }
    }
}

static void finish(map_iter *it, bool cancel)
{
    if (it->finished)
        return;
    it->finished = true;
    PyObject *t, *v, *tb;
    PyErr_Fetch(&t, &v, &tb);
    if (cancel)
        cancel_rest(it);
    PyErr_Restore(t, v, tb);
    Py_CLEAR(it->fs);
    Py_CLEAR(it->chunk);
    Py_CLEAR(it->zipped);
    Py_CLEAR(it->fn);
    Py_CLEAR(it->executor);
}

/* With buffersize: submit the next call, if the executor is alive. */
static int refill(map_iter *it)
{
    if (!it->zipped)
        return 0;
    PyObject *executor;
#if PY_VERSION_HEX >= 0x030D0000
    if (PyWeakref_GetRef(it->executor, &executor) <= 0)
        return PyErr_Occurred() ? -1 : 0;
#else
    executor = PyWeakref_GetObject(it->executor);
    if (executor == Py_None || !executor)
        return 0;
    Py_INCREF(executor);
#endif
    PyObject *args = PyIter_Next(it->zipped);
    if (!args) {
        Py_DECREF(executor);
        Py_CLEAR(it->zipped);
        return PyErr_Occurred() ? -1 : 0;
    }
    PyObject *method;
    int rc = custom_submit(it->st, executor, &method);
    PyObject *f = rc < 0 ? NULL
                         : submit(it->st, executor, it->fn, args, method);
    Py_XDECREF(method);
    Py_DECREF(args);
    Py_DECREF(executor);
    if (!f)
        return -1;
    rc = PyList_Append(it->fs, f);
    Py_DECREF(f);
    return rc;
}

static PyObject *map_wait_next(map_iter *it);

/* As a generator: one next() at a time. */
static PyObject *map_next(map_iter *it)
{
    if (it->busy) {
        PyErr_SetString(PyExc_ValueError, "generator already executing");
        return NULL;
    }
    it->busy = true;
    PyObject *r = map_wait_next(it);
    it->busy = false;
    return r;
}

/* _flatten: the next item of the current result list, or NULL (no
 * exception) when it is used up. */
static PyObject *chunk_next(map_iter *it)
{
    if (!it->chunk)
        return NULL;
    if (it->cpos >= PyList_GET_SIZE(it->chunk)) {
        Py_CLEAR(it->chunk);
        return NULL;
    }
    /* The list's reference goes to the caller. */
    PyObject *item = PyList_GET_ITEM(it->chunk, it->cpos);
    PyList_SET_ITEM(it->chunk, it->cpos, Py_NewRef(Py_None));
    it->cpos++;
    return item;
}

static PyObject *map_wait_result(map_iter *it);

static PyObject *map_wait_next(map_iter *it)
{
    if (!it->flatten)
        return map_wait_result(it);
    for (;;) {
        PyObject *item = chunk_next(it);
        if (item)
            return item;
        PyObject *chunk = map_wait_result(it);
        if (!chunk)
            return NULL;
        if (!PyList_CheckExact(chunk)) {
            PyErr_Format(PyExc_TypeError,
                         "map(): a chunk's result is %.200s, not a list",
                         Py_TYPE(chunk)->tp_name);
            Py_DECREF(chunk);
            finish(it, true);
            return NULL;
        }
        it->chunk = chunk;
        it->cpos = 0;
    }
}

/* The result of the next call. */
static PyObject *map_wait_result(map_iter *it)
{
    if (it->finished || it->pos >= PyList_GET_SIZE(it->fs)) {
        finish(it, false);
        return NULL;
    }
    it->started = true;
    if (refill(it) < 0) {
        finish(it, true);
        return NULL;
    }
    PyObject *f = PyList_GET_ITEM(it->fs, it->pos);
    Py_INCREF(f);
    /* Drop the list's reference: a yielded result must not stay alive
     * here through its future (bpo-14406). */
    PyList_SET_ITEM(it->fs, it->pos, Py_NewRef(Py_None));
    Py_DECREF(f);
    it->pos++;
    PyObject *r;
    if (cfpy_future_check(it->st, f)) {
        r = cfpy_future_result_until(it->st, (cfpy_future *)f, it->deadline);
        if (!r && cfpy_future_cancel(it->st, (cfpy_future *)f) < 0)
            PyErr_WriteUnraisable(f);
    } else {
        double left = it->deadline == CF__NO_DEADLINE
                          ? -1
                          : (double)(it->deadline - cf__now_ns()) / 1e9;
        r = left < 0 && it->deadline == CF__NO_DEADLINE
                ? PyObject_CallMethod(f, "result", NULL)
                : PyObject_CallMethod(f, "result", "d", left);
        if (!r) {
            PyObject *c = PyObject_CallMethod(f, "cancel", NULL);
            Py_XDECREF(c);
        }
    }
    Py_DECREF(f);
    if (!r)
        finish(it, true);
    return r;
}

static PyObject *map_close(map_iter *it, PyObject *unused)
{
    if (it->busy) {
        PyErr_SetString(PyExc_ValueError, "generator already executing");
        return NULL;
    }
    finish(it, it->started);
    Py_RETURN_NONE;
}

static void map_dealloc(map_iter *it)
{
    PyTypeObject *tp = Py_TYPE(it);
    PyObject_GC_UnTrack(it);
    finish(it, it->started);
    tp->tp_free((PyObject *)it);
    Py_DECREF(tp);
}

static int map_traverse(map_iter *it, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(it));
    Py_VISIT(it->fs);
    Py_VISIT(it->chunk);
    Py_VISIT(it->zipped);
    Py_VISIT(it->fn);
    Py_VISIT(it->executor);
    return 0;
}

static int map_clear(map_iter *it)
{
    Py_CLEAR(it->fs);
    Py_CLEAR(it->chunk);
    Py_CLEAR(it->zipped);
    Py_CLEAR(it->fn);
    Py_CLEAR(it->executor);
    it->finished = true;
    return 0;
}

static PyMethodDef map_methods[] = {
    {"close", (PyCFunction)map_close, METH_NOARGS,
     PyDoc_STR("Stop: cancel the calls that have not started.")},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot map_slots[] = {
    {Py_tp_dealloc, map_dealloc},
    {Py_tp_traverse, map_traverse},
    {Py_tp_clear, map_clear},
    {Py_tp_iter, PyObject_SelfIter},
    {Py_tp_iternext, map_next},
    {Py_tp_methods, map_methods},
    {Py_tp_doc, PyDoc_STR("Iterator of Executor.map().")},
    {0, NULL},
};

static PyType_Spec map_spec = {
    .name = "cfutures._cfutures.MapIterator",
    .basicsize = sizeof(map_iter),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC |
             Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = map_slots,
};

int cfpy_map_type_init(PyObject *module, cfpy_state *st)
{
    st->MapIterator = (PyTypeObject *)PyType_FromModuleAndSpec(
        module, &map_spec, NULL);
    return st->MapIterator ? 0 : -1;
}

/* Reads timeout, chunksize, buffersize, _flatten from the keywords. */
static int parse_keywords(PyObject *const *kwvals, PyObject *kwnames,
                          PyObject **timeout, PyObject **buffersize,
                          PyObject **flatten)
{
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    for (Py_ssize_t k = 0; k < nkw; k++) {
        PyObject *key = PyTuple_GET_ITEM(kwnames, k);
        if (PyUnicode_CompareWithASCIIString(key, "timeout") == 0) {
            *timeout = kwvals[k];
        } else if (PyUnicode_CompareWithASCIIString(key, "buffersize") == 0) {
            *buffersize = kwvals[k];
        } else if (PyUnicode_CompareWithASCIIString(key, "_flatten") == 0) {
            *flatten = kwvals[k];
        } else if (PyUnicode_CompareWithASCIIString(key, "chunksize") != 0) {
            PyErr_Format(PyExc_TypeError,
                         "map() got an unexpected keyword argument '%S'",
                         key);
            return -1;
        }
    }
    return 0;
}

PyObject *cfpy_map_new(cfpy_state *st, PyObject *self, PyObject *const *args,
                       Py_ssize_t nargs, PyObject *kwnames)
{
    if (nargs < 1) {
        PyErr_SetString(PyExc_TypeError,
                        "map() missing 1 required positional argument: "
                        "'fn'");
        return NULL;
    }
    PyObject *timeout = Py_None, *buffersize = Py_None, *flatten = Py_False;
    if (parse_keywords(args + nargs, kwnames, &timeout, &buffersize,
                       &flatten) < 0)
        return NULL;
    int flat = PyObject_IsTrue(flatten);
    if (flat < 0)
        return NULL;
    Py_ssize_t limit = 0;
    if (buffersize != Py_None) {
        if (!PyLong_Check(buffersize)) {
            PyErr_SetString(PyExc_TypeError,
                            "buffersize must be an integer or None");
            return NULL;
        }
        limit = PyLong_AsSsize_t(buffersize);
        if (limit == -1 && PyErr_Occurred())
            return NULL;
        if (limit < 1) {
            PyErr_SetString(PyExc_ValueError,
                            "buffersize must be None or > 0");
            return NULL;
        }
    }
    int64_t deadline;
    if (cfpy_deadline(timeout, &deadline) < 0)
        return NULL;
    PyObject *iterables = PyTuple_New(nargs - 1);
    if (!iterables)
        return NULL;
    for (Py_ssize_t i = 1; i < nargs; i++)
        PyTuple_SET_ITEM(iterables, i - 1, Py_NewRef(args[i]));
    PyObject *zipped = PyObject_Call((PyObject *)&PyZip_Type, iterables,
                                     NULL);
    Py_DECREF(iterables);
    if (!zipped)
        return NULL;
    map_iter *it = PyObject_GC_New(map_iter, st->MapIterator);
    if (!it) {
        Py_DECREF(zipped);
        return NULL;
    }
    it->st = st;
    it->fs = PyList_New(0);
    it->pos = 0;
    it->zipped = NULL;
    it->fn = NULL;
    it->executor = NULL;
    it->chunk = NULL;
    it->cpos = 0;
    it->deadline = deadline;
    it->flatten = flat;
    it->started = false;
    it->finished = false;
    it->busy = false;
    PyObject_GC_Track(it);
    PyObject *method = NULL;
    if (!it->fs || custom_submit(st, self, &method) < 0)
        goto fail;
    for (Py_ssize_t i = 0; limit == 0 || i < limit; i++) {
        PyObject *call_args = PyIter_Next(zipped);
        if (!call_args) {
            if (PyErr_Occurred())
                goto fail;
            break;
        }
        PyObject *f = submit(st, self, args[0], call_args, method);
        Py_DECREF(call_args);
        if (!f || PyList_Append(it->fs, f) < 0) {
            Py_XDECREF(f);
            goto fail;
        }
        Py_DECREF(f);
    }
    Py_XDECREF(method);
    if (limit) {
        it->zipped = zipped;
        it->fn = Py_NewRef(args[0]);
        if (!(it->executor = PyWeakref_NewRef(self, NULL))) {
            Py_DECREF(it);
            return NULL;
        }
    } else {
        Py_DECREF(zipped);
    }
    return (PyObject *)it;
fail:
    Py_XDECREF(method);
    Py_DECREF(zipped);
    /* The stdlib's list comprehension leaves submitted calls running. */
    Py_DECREF(it);
    return NULL;
}
