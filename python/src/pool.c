/* pool.c - ThreadPoolBase, the C part of cfutures.ThreadPoolExecutor.
 *
 * Design: the executor object owns a cfpy_pool, which wraps a core thread
 * pool and outlives the object when work is still running: an executor
 * dropped without shutdown is shut down without waiting (as the stdlib's
 * weakref callback does) and its pool is freed once its threads have
 * ended, at the next pool's creation or at interpreter exit, whichever
 * comes first. Every pool is on the module's list until freed.
 *
 * submit() queues the future on the pool's `queued` list (the GIL guards
 * it) with a reference for the task, then hands the core one task whose
 * argument is the future. Whoever takes the future off the list owns that
 * reference: the task when it starts, or the code that cancels or fails a
 * queued future (cancel(), shutdown(cancel_futures=True), a failed
 * initializer). The core pool skips a future that is no longer pending, so
 * none of them needs the core's help, and the core never completes a
 * Python future by itself.
 *
 * Blocking calls into the core (shutdown with wait, free) drop the GIL:
 * the workers take it to finish their tasks.
 */
#include "cfpy.h"

#include <stdlib.h>

enum { SHUTDOWN_SLICE_MS = 50, NEW_THREAD_WAIT_NS = 1000 * 1000 * 1000 };

void cfpy_link_init(cfpy_link *head)
{
    head->prev = head->next = head;
}

void cfpy_link_remove(cfpy_link *node)
{
    node->prev->next = node->next;
    node->next->prev = node->prev;
    node->prev = node->next = node;
}

static void link_append(cfpy_link *head, cfpy_link *node)
{
    node->prev = head->prev;
    node->next = head;
    head->prev->next = node;
    head->prev = node;
}

/* ------------------------------------------------------------------------ */
/* Pools                                                                    */

static void pool_unlist(cfpy_pool *pool)
{
    for (cfpy_pool **p = &pool->st->pools; *p; p = &(*p)->next) {
        if (*p == pool) {
            *p = pool->next;
            return;
        }
    }
}

/* Shuts the core pool down and waits for its threads, the GIL dropped,
 * in slices so that signal handlers run. `interruptible`: return -1 when
 * a handler raises (the pool stays shut down). GIL held. */
static int join_pool(cfpy_pool *pool, bool interruptible)
{
    for (;;) {
        int rc;
        Py_BEGIN_ALLOW_THREADS
        rc = cf_executor_shutdown_timeout(pool->ex, SHUTDOWN_SLICE_MS / 1e3,
                                          false, NULL);
        Py_END_ALLOW_THREADS
        if (rc == CF_OK)
            break;
        if (rc == CF_EDEADLK) {
            PyErr_SetString(PyExc_RuntimeError, "cannot join current thread");
            return -1;
        }
        if (interruptible && PyErr_CheckSignals() < 0)
            return -1;
    }
    return 0;
}

/* Frees a pool whose threads have all ended. GIL held. */
static void pool_free(cfpy_pool *pool)
{
    pool_unlist(pool);
    Py_BEGIN_ALLOW_THREADS
    cf_executor_free(pool->ex);
    Py_END_ALLOW_THREADS
    Py_XDECREF(pool->initializer);
    Py_XDECREF(pool->initargs);
    Py_XDECREF(pool->prefix);
    Py_XDECREF(pool->broken);
    PyObject *module = pool->module;
    for (int i = 0; i < atomic_load(&pool->n_threads); i++)
        cfpy_thread_rec_release(atomic_load(&pool->recs[i]));
    PyMem_Free(pool->recs);
    PyMem_Free(pool);
    Py_DECREF(module);
}

/* True once every thread of the (shut down) pool has ended. */
static bool pool_finished(cfpy_pool *pool)
{
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = cf_executor_shutdown_timeout(pool->ex, 0, false, NULL);
    Py_END_ALLOW_THREADS
    return rc == CF_OK;
}

/* Frees `pool` if its threads have ended and no other thread is freeing
 * it. The GIL is dropped meanwhile, so `reaping` keeps others off it. */
static void try_free(cfpy_pool *pool)
{
    if (pool->reaping)
        return;
    pool->reaping = true;
    if (pool_finished(pool))
        pool_free(pool);
    else
        pool->reaping = false;
}

/* Finds a pool of the list that this walk has not seen and that matches
 * `orphans_only`. Each call marks what it returns, so a walk that drops the
 * GIL between calls (the list may change meanwhile) sees every pool once. */
static cfpy_pool *next_unvisited(cfpy_state *st, unsigned walk,
                                 bool orphans_only)
{
    for (cfpy_pool *p = st->pools; p; p = p->next) {
        if (p->visit == walk || p->reaping || (orphans_only && !p->orphaned))
            continue;
        p->visit = walk;
        return p;
    }
    return NULL;
}

/* Frees the pools whose executor is gone and whose threads have ended. */
static void reap_orphans(cfpy_state *st)
{
    unsigned walk = ++st->pools_walk;
    cfpy_pool *p;
    while ((p = next_unvisited(st, walk, true)) != NULL)
        try_free(p);
}

int cfpy_pools_exit(cfpy_state *st)
{
    st->exiting = true;
    /* Queued work finishes first, as the stdlib's _python_exit does. */
    unsigned walk = ++st->pools_walk;
    cfpy_pool *p;
    while ((p = next_unvisited(st, walk, false)) != NULL) {
        p->reaping = true; /* no other thread frees it while we wait */
        int rc = join_pool(p, false);
        p->reaping = false;
        if (rc < 0)
            return -1;
    }
    reap_orphans(st);
    return 0;
}

static PyObject *raise_core_error(cfpy_pool *pool, int rc)
{
    cfpy_state *st = pool->st;
    switch (rc) {
    case CF_ENOMEM:
        return PyErr_NoMemory();
    case CF_ESHUTDOWN:
        PyErr_SetString(PyExc_RuntimeError,
                        "cannot schedule new futures after shutdown");
        return NULL;
    case CF_EBROKEN_THREAD_POOL:
        PyErr_SetString(st->BrokenThreadPool,
                        "the thread pool is not usable in a child process "
                        "(its threads live in the parent)");
        return NULL;
    case CF_EAGAIN:
        PyErr_SetString(PyExc_RuntimeError, "can't start new thread");
        return NULL;
    default:
        PyErr_Format(PyExc_RuntimeError, "cfutures: %s", cf_strerror(rc));
        return NULL;
    }
}

/* A failed thread start left no worker alive, or a thread could not get
 * its Python thread state: the core failed the queued futures by itself
 * (the one case it does). Give each its Python exception (the one the
 * submit raises), callbacks and waiters. GIL held, error `rc` set. */
static void sweep_failed(cfpy_pool *pool)
{
    PyObject *t, *v, *tb;
    PyErr_Fetch(&t, &v, &tb);
    PyErr_NormalizeException(&t, &v, &tb);
    cfpy_link *l = pool->queued.next;
    while (l != &pool->queued) {
        cfpy_link *next = l->next;
        cfpy_future *f = (cfpy_future *)((char *)l - offsetof(cfpy_future,
                                                              link));
        if (cf__state_done_for_result(cf__future_state(f->cf))) {
            cfpy_link_remove(&f->link);
            f->flags &= ~CFPY_QUEUED;
            Py_CLEAR(f->fn);
            Py_CLEAR(f->args);
            Py_CLEAR(f->kwargs);
            Py_XSETREF(f->exception, Py_XNewRef(v));
            cfpy_future_failed_by_core(pool->st, f);
            Py_DECREF(f);
        }
        l = next;
    }
    PyErr_Restore(t, v, tb);
}

/* This submit started a thread: wait, as threading.Thread.start() does
 * for the stdlib's pool, until the thread runs, and, without an
 * initializer, until it (or an idle one) has taken the call, so that a
 * shutdown right after the submit finds the call running, as with the
 * stdlib. The GIL is dropped meanwhile; bounded by NEW_THREAD_WAIT_NS. */
static void let_new_thread_start(cfpy_pool *pool, cfpy_future *f,
                                 int started)
{
    bool take = !pool->initializer;
    Py_BEGIN_ALLOW_THREADS
    int64_t until = cf__now_ns() + NEW_THREAD_WAIT_NS;
    while (cf__now_ns() < until &&
           (atomic_load(&pool->n_threads) < started ||
            (take && cf__future_state(f->cf) == CF__PENDING)))
        cf__yield();
    Py_END_ALLOW_THREADS
}

cfpy_future *cfpy_pool_submit(cfpy_pool *pool, PyObject *fn, PyObject *args,
                              PyObject *kwargs)
{
    cfpy_state *st = pool->st;
    if (pool->broken) {
        PyErr_SetObject(st->BrokenThreadPool, pool->broken);
        return NULL;
    }
    if (pool->shutdown) {
        PyErr_SetString(PyExc_RuntimeError,
                        "cannot schedule new futures after shutdown");
        return NULL;
    }
    if (st->exiting) {
        PyErr_SetString(PyExc_RuntimeError,
                        "cannot schedule new futures after interpreter "
                        "shutdown");
        return NULL;
    }
    cfpy_future *f = cfpy_future_new(st, NULL);
    if (!f)
        return NULL;
    f->fn = Py_NewRef(fn);
    f->args = Py_XNewRef(args);
    f->kwargs = Py_XNewRef(kwargs);
    f->flags = CFPY_QUEUED;
    Py_INCREF(f); /* the task's */
    link_append(&pool->queued, &f->link);
    /* No worker takes the GIL before this returns: f->cf is set in time. */
    int started = cf__thread_pool_threads_started(pool->ex);
    int rc = cf_executor_submit(pool->ex, cfpy_worker_task, f, &f->cf);
    if (rc != CF_OK) {
        cfpy_link_remove(&f->link);
        f->flags = 0;
        Py_DECREF(f); /* the task's */
        Py_DECREF(f); /* no core future: never seen by anyone */
        raise_core_error(pool, rc);
        if (rc == CF_EAGAIN || rc == CF_EBROKEN_THREAD_POOL)
            sweep_failed(pool);
        return NULL;
    }
    int now_started = cf__thread_pool_threads_started(pool->ex);
    if (now_started > started)
        let_new_thread_start(pool, f, now_started);
    return f;
}

/* ------------------------------------------------------------------------ */
/* The executor object                                                      */

#define POOL_OR_FAIL(self, ret)                                               \
    cfpy_pool *pool = ((cfpy_executor *)(self))->pool;                        \
    if (!pool) {                                                              \
        PyErr_SetString(PyExc_RuntimeError,                                   \
                        "ThreadPoolExecutor.__init__() was not called");      \
        return ret;                                                           \
    }

/* _cf_start(max_workers, prefix, initializer, initargs): the Python
 * __init__ validates the arguments as the stdlib does, then calls this. */
static PyObject *executor_start(PyObject *self, PyTypeObject *cls,
                                PyObject *const *args, Py_ssize_t nargs,
                                PyObject *kwnames)
{
    cfpy_state *st = PyType_GetModuleState(cls);
    cfpy_executor *e = (cfpy_executor *)self;
    if (nargs != 4 || kwnames) {
        PyErr_SetString(PyExc_TypeError,
                        "_cf_start(max_workers, prefix, initializer, "
                        "initargs)");
        return NULL;
    }
    if (e->pool) {
        PyErr_SetString(PyExc_RuntimeError, "executor already started");
        return NULL;
    }
    long max_workers = PyLong_AsLong(args[0]);
    if (max_workers == -1 && PyErr_Occurred())
        return NULL;
    if (max_workers > 100000) {
        PyErr_SetString(PyExc_ValueError, "max_workers is too large");
        return NULL;
    }
    if (max_workers <= 0) {
        PyErr_SetString(PyExc_ValueError,
                        "max_workers must be greater than 0");
        return NULL;
    }
    if (!PyUnicode_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "thread_name_prefix must be a str");
        return NULL;
    }
    PyObject *initargs = PySequence_Tuple(args[3]);
    if (!initargs)
        return NULL;
    reap_orphans(st);

    cfpy_pool *pool = PyMem_Calloc(1, sizeof *pool);
    if (pool && !(pool->recs = PyMem_Calloc((size_t)max_workers,
                                            sizeof *pool->recs))) {
        PyMem_Free(pool);
        pool = NULL;
    }
    if (!pool) {
        Py_DECREF(initargs);
        return PyErr_NoMemory();
    }
    pool->st = st;
    pool->interp = PyThreadState_GetInterpreter(PyThreadState_Get());
    pool->max_workers = (int)max_workers;
    pool->initializer = args[2] == Py_None ? NULL : Py_NewRef(args[2]);
    pool->initargs = initargs;
    pool->prefix = Py_NewRef(args[1]);
    cfpy_link_init(&pool->queued);

    cf_thread_pool_options opts = {
        .max_workers = (int)max_workers,
        .thread_name_prefix = PyUnicode_AsUTF8(args[1]),
        .initializer = cfpy_worker_start,
        .initarg = pool,
        .thread_main = cfpy_worker_main,
        .thread_ctx = pool,
    };
    int rc = opts.thread_name_prefix ? cf_thread_pool_new(&opts, &pool->ex)
                                     : CF_EINVAL;
    if (rc != CF_OK) {
        Py_XDECREF(pool->initializer);
        Py_DECREF(pool->initargs);
        Py_DECREF(pool->prefix);
        PyMem_Free(pool->recs);
        PyMem_Free(pool);
        if (!PyErr_Occurred())
            PyErr_Format(PyExc_RuntimeError, "cfutures: %s",
                         cf_strerror(rc));
        return NULL;
    }
    pool->module = Py_NewRef(PyType_GetModule(cls));
    pool->next = st->pools;
    st->pools = pool;
    e->pool = pool;
    Py_RETURN_NONE;
}

static PyObject *executor_submit(PyObject *self, PyObject *const *args,
                                 Py_ssize_t nargs, PyObject *kwnames)
{
    POOL_OR_FAIL(self, NULL);
    if (nargs < 1) {
        PyErr_SetString(PyExc_TypeError,
                        "submit() missing 1 required positional argument: "
                        "'fn'");
        return NULL;
    }
    PyObject *call_args = NULL, *kwargs = NULL;
    if (nargs > 1) {
        if (!(call_args = PyTuple_New(nargs - 1)))
            return NULL;
        for (Py_ssize_t i = 1; i < nargs; i++)
            PyTuple_SET_ITEM(call_args, i - 1, Py_NewRef(args[i]));
    }
    if (kwnames && PyTuple_GET_SIZE(kwnames)) {
        kwargs = PyDict_New();
        for (Py_ssize_t i = 0; kwargs && i < PyTuple_GET_SIZE(kwnames); i++)
            if (PyDict_SetItem(kwargs, PyTuple_GET_ITEM(kwnames, i),
                               args[nargs + i]) < 0)
                Py_CLEAR(kwargs);
        if (!kwargs) {
            Py_XDECREF(call_args);
            return NULL;
        }
    }
    cfpy_future *f = cfpy_pool_submit(pool, args[0], call_args, kwargs);
    Py_XDECREF(call_args);
    Py_XDECREF(kwargs);
    return (PyObject *)f;
}

/* Cancels every queued future (shutdown(cancel_futures=True)). */
static int cancel_queued(cfpy_pool *pool)
{
    PyObject *list = PyList_New(0);
    if (!list)
        return -1;
    for (cfpy_link *l = pool->queued.next; l != &pool->queued; l = l->next) {
        PyObject *f = (PyObject *)((char *)l - offsetof(cfpy_future, link));
        if (PyList_Append(list, f) < 0) {
            Py_DECREF(list);
            return -1;
        }
    }
    int rc = 0;
    for (Py_ssize_t i = 0; rc == 0 && i < PyList_GET_SIZE(list); i++)
        rc = cfpy_future_cancel(pool->st,
                                (cfpy_future *)PyList_GET_ITEM(list, i)) < 0
                 ? -1
                 : 0;
    Py_DECREF(list);
    return rc;
}

static PyObject *executor_shutdown(PyObject *self, PyObject *args,
                                   PyObject *kwds)
{
    static char *kwlist[] = {"wait", "cancel_futures", NULL};
    int wait = 1, cancel_futures = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|p$p:shutdown", kwlist,
                                     &wait, &cancel_futures))
        return NULL;
    POOL_OR_FAIL(self, NULL);
    pool->shutdown = true;
    if (cancel_futures && cancel_queued(pool) < 0)
        return NULL;
    if (!wait) {
        cf_executor_shutdown(pool->ex, false, false);
        Py_RETURN_NONE;
    }
    if (join_pool(pool, true) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *executor_map(PyObject *self, PyTypeObject *cls,
                              PyObject *const *args, Py_ssize_t nargs,
                              PyObject *kwnames)
{
    POOL_OR_FAIL(self, NULL);
    return cfpy_map_new(PyType_GetModuleState(cls), self, args, nargs,
                        kwnames);
}

static PyObject *get_max_workers(PyObject *self, void *closure)
{
    POOL_OR_FAIL(self, NULL);
    return PyLong_FromLong(pool->max_workers);
}

static PyObject *get_broken(PyObject *self, void *closure)
{
    POOL_OR_FAIL(self, NULL);
    return Py_NewRef(pool->broken ? pool->broken : Py_False);
}

static PyObject *get_shutdown(PyObject *self, void *closure)
{
    POOL_OR_FAIL(self, NULL);
    return PyBool_FromLong(pool->shutdown);
}

static PyObject *get_threads(PyObject *self, void *closure)
{
    POOL_OR_FAIL(self, NULL);
    return cfpy_pool_threads(pool);
}

static PyObject *get_prefix(PyObject *self, void *closure)
{
    POOL_OR_FAIL(self, NULL);
    return Py_NewRef(pool->prefix);
}

static PyObject *get_initializer(PyObject *self, void *closure)
{
    POOL_OR_FAIL(self, NULL);
    return Py_NewRef(pool->initializer ? pool->initializer : Py_None);
}

static PyObject *get_initargs(PyObject *self, void *closure)
{
    POOL_OR_FAIL(self, NULL);
    return Py_NewRef(pool->initargs);
}

static void executor_dealloc(PyObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    cfpy_pool *pool = ((cfpy_executor *)self)->pool;
    PyObject_GC_UnTrack(self);
    if (pool) {
        /* As the stdlib's weakref callback: queued work still runs. */
        pool->shutdown = true;
        pool->orphaned = true;
        cf_executor_shutdown(pool->ex, false, false);
        try_free(pool);
    }
    tp->tp_free(self);
    Py_DECREF(tp);
}

static int executor_traverse(PyObject *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    cfpy_pool *pool = ((cfpy_executor *)self)->pool;
    if (pool) {
        Py_VISIT(pool->initializer);
        Py_VISIT(pool->initargs);
    }
    return 0;
}

static PyMethodDef executor_methods[] = {
    {"_cf_start", (PyCFunction)(void (*)(void))executor_start,
     METH_METHOD | METH_FASTCALL | METH_KEYWORDS,
     PyDoc_STR("Starts the core pool (called by __init__).")},
    {"submit", (PyCFunction)(void (*)(void))executor_submit,
     METH_FASTCALL | METH_KEYWORDS,
     PyDoc_STR("submit(fn, /, *args, **kwargs)\n--\n\nSubmits a callable "
               "to be executed with the given arguments.")},
    {"map", (PyCFunction)(void (*)(void))executor_map,
     METH_METHOD | METH_FASTCALL | METH_KEYWORDS,
     PyDoc_STR("map(fn, *iterables, timeout=None, chunksize=1, "
               "buffersize=None)\n--\n\nReturns an iterator equivalent to "
               "map(fn, iter).")},
    {"shutdown", (PyCFunction)(void (*)(void))executor_shutdown,
     METH_VARARGS | METH_KEYWORDS,
     PyDoc_STR("shutdown(wait=True, *, cancel_futures=False)\n--\n\n"
               "Clean-up the resources associated with the Executor.")},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef executor_getset[] = {
    {"_max_workers", get_max_workers, NULL, NULL, NULL},
    {"_broken", get_broken, NULL, NULL, NULL},
    {"_shutdown", get_shutdown, NULL, NULL, NULL},
    {"_threads", get_threads, NULL, NULL, NULL},
    {"_thread_name_prefix", get_prefix, NULL, NULL, NULL},
    {"_initializer", get_initializer, NULL, NULL, NULL},
    {"_initargs", get_initargs, NULL, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot executor_slots[] = {
    {Py_tp_dealloc, executor_dealloc},
    {Py_tp_traverse, executor_traverse},
    {Py_tp_methods, executor_methods},
    {Py_tp_getset, executor_getset},
    {Py_tp_doc, PyDoc_STR("The C part of cfutures.ThreadPoolExecutor.")},
    {0, NULL},
};

static PyType_Spec executor_spec = {
    .name = "cfutures._cfutures.ThreadPoolBase",
    .basicsize = sizeof(cfpy_executor),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC |
             Py_TPFLAGS_IMMUTABLETYPE,
    .slots = executor_slots,
};

int cfpy_pool_type_init(PyObject *module, cfpy_state *st)
{
    st->ThreadPoolBase = (PyTypeObject *)PyType_FromModuleAndSpec(
        module, &executor_spec, NULL);
    if (!st->ThreadPoolBase)
        return -1;
    return PyModule_AddObjectRef(module, "ThreadPoolBase",
                                 (PyObject *)st->ThreadPoolBase);
}
