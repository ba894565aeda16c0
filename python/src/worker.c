/* worker.c - the Python side of a core thread-pool worker.
 *
 * Design: the core pool's thread hook (cf_thread_pool_options.thread_main)
 * wraps each worker thread's life: the thread makes one Python thread
 * state when it starts and deletes it when the pool lets it go, so a task
 * only takes the GIL with it and drops it when the call ends. The thread
 * is known to `threading` by its stdlib name ("<prefix>_<n>") through the
 * dummy Thread that threading.current_thread() registers for it, named at
 * its first task (or before the initializer) and unregistered at its end.
 * Without an initializer a new worker needs no GIL before its first task:
 * it takes queued work at once, as the stdlib's new threads do while the
 * submitting thread still holds the GIL.
 *
 * A task runs its future's call, drops fn and args at once, stores the
 * outcome, and completes the future: with the GIL when callbacks or stdlib
 * waiters need it, otherwise after dropping the GIL, through the core,
 * so the thread that waits for the result finds the GIL free. When more
 * calls are queued, the worker claims and runs them in the same hold of
 * the GIL (a burst, bounded in time): their own tasks find them running
 * and skip them. Claiming is the core's PENDING-to-RUNNING step, so a
 * call is run once, by whoever claims it first.
 */
#include "cfpy.h"

#include <stdlib.h>

typedef struct worker_tls {
    PyThreadState *ts;
    cfpy_pool *pool;
    int index;   /* in the pool: the thread is named <prefix>_<index> */
    bool named;  /* known to `threading` by that name */
} worker_tls;

static _Thread_local worker_tls tls;

/* The longest a worker runs queued calls in one hold of the GIL. */
enum { BURST_NS = 5 * 1000 * 1000 };

/* Fails every queued future with BrokenThreadPool(message). GIL held. */
static void fail_queued(cfpy_pool *pool)
{
    cfpy_state *st = pool->st;
    PyObject *list = PyList_New(0);
    if (!list) {
        PyErr_WriteUnraisable(NULL);
        return;
    }
    for (cfpy_link *l = pool->queued.next; l != &pool->queued; l = l->next) {
        PyObject *f = (PyObject *)((char *)l - offsetof(cfpy_future, link));
        if (PyList_Append(list, f) < 0)
            PyErr_WriteUnraisable(NULL);
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(list); i++) {
        cfpy_future *f = (cfpy_future *)PyList_GET_ITEM(list, i);
        PyObject *exc = PyObject_CallOneArg(st->BrokenThreadPool,
                                            pool->broken);
        if (!exc || (cfpy_future_finish(st, f, NULL, exc) < 0 &&
                     !PyErr_ExceptionMatches(st->InvalidStateError)))
            PyErr_WriteUnraisable((PyObject *)f);
        PyErr_Clear();
        Py_XDECREF(exc);
    }
    Py_DECREF(list);
}

/* Names the thread as the stdlib would ("<prefix>_<n>") for `threading`.
 * GIL held. */
static void name_thread(cfpy_pool *pool, int index)
{
    PyObject *t = PyObject_CallNoArgs(pool->st->current_thread);
    PyObject *name = PyUnicode_FromFormat("%U_%d", pool->prefix, index);
    if (!t || !name || PyObject_SetAttrString(t, "name", name) < 0)
        PyErr_WriteUnraisable(NULL);
    Py_XDECREF(t);
    Py_XDECREF(name);
}

static void run_initializer(cfpy_pool *pool)
{
    if (!pool->initializer || pool->broken)
        return;
    PyObject *r = PyObject_Call(pool->initializer, pool->initargs, NULL);
    if (r) {
        Py_DECREF(r);
        return;
    }
    cfpy_log_exception(pool->st, "critical", "Exception in initializer:",
                       NULL);
    if (!pool->broken) {
        pool->broken = PyUnicode_FromString(
            "A thread initializer failed, the thread pool is not usable "
            "anymore");
        if (!pool->broken) {
            PyErr_WriteUnraisable(NULL);
            return;
        }
    }
    fail_queued(pool);
}

int cfpy_worker_start(void *arg)
{
    cfpy_pool *pool = arg;
    if (pool->initializer) {
        PyEval_RestoreThread(tls.ts);
        name_thread(pool, tls.index);
        tls.named = true;
        run_initializer(pool);
        PyEval_SaveThread();
    }
    return 0;
}

/* Takes this thread out of threading._active again. GIL held. */
static void unname_thread(cfpy_pool *pool)
{
    PyObject *ident = PyLong_FromUnsignedLong(PyThread_get_thread_ident());
    if (!ident || (PyDict_DelItem(pool->st->threading_active, ident) < 0 &&
                   !PyErr_ExceptionMatches(PyExc_KeyError)))
        PyErr_WriteUnraisable(NULL);
    PyErr_Clear();
    Py_XDECREF(ident);
}

void cfpy_worker_main(void (*run)(void *run_arg), void *run_arg, void *ctx)
{
    cfpy_pool *pool = ctx;
    PyThreadState *ts = PyThreadState_New(pool->interp);
    if (!ts)
        return; /* no memory for a thread state: the core breaks the pool */
    tls.ts = ts;
    tls.pool = pool;
    tls.index = atomic_fetch_add(&pool->n_threads, 1);
    tls.named = false;
    /* Without a record the thread still works; it is only not listed. */
    cfpy_thread_rec *rec = cfpy_thread_rec_new(tls.index);
    if (rec)
        atomic_store(&pool->recs[tls.index], rec);
    run(run_arg);
    /* The pool let this thread go; the interpreter is still alive, as
     * every pool is joined before it is torn down (_python_exit). */
    PyEval_RestoreThread(ts);
    if (tls.named)
        unname_thread(pool);
    PyThreadState_Clear(ts);
    PyThreadState_DeleteCurrent();
    tls.ts = NULL;
    if (rec)
        cfpy_thread_rec_end(rec);
}

/* ------------------------------------------------------------------------ */
/* Tasks                                                                    */

bool cfpy_future_run(cfpy_state *st, cfpy_future *f, bool *failed)
{
    /* The task's reference is ours from here. */
    if (f->flags & CFPY_QUEUED) {
        cfpy_link_remove(&f->link);
        f->flags &= ~CFPY_QUEUED;
    }
    PyObject *fn = f->fn, *args = f->args, *kwargs = f->kwargs;
    f->fn = f->args = f->kwargs = NULL;
    if (!fn || cf__state_done_for_result(cf__future_state(f->cf))) {
        /* Finished by hand (set_result on a running future). */
        Py_XDECREF(fn);
        Py_XDECREF(args);
        Py_XDECREF(kwargs);
        Py_DECREF(f);
        return false;
    }
    PyObject *result = args || kwargs
                           ? PyObject_Call(fn, args ? args : st->empty_tuple,
                                           kwargs)
                           : PyObject_CallNoArgs(fn);
    Py_DECREF(fn); /* as soon as the call ends */
    Py_XDECREF(args);
    Py_XDECREF(kwargs);
    PyObject *exc = NULL;
    if (!result) {
        PyObject *type, *tb;
        PyErr_Fetch(&type, &exc, &tb);
        PyErr_NormalizeException(&type, &exc, &tb);
        if (tb)
            PyException_SetTraceback(exc, tb);
        Py_XDECREF(type);
        Py_XDECREF(tb);
    }
    unsigned char expected = CFPY_GIL_FREE;
    if (atomic_compare_exchange_strong(&f->gil_need, &expected,
                                       CFPY_GIL_COMPLETING)) {
        f->result = result;
        f->exception = exc;
        *failed = exc != NULL;
        Py_DECREF(f);
        return true;
    }
    if (cfpy_future_finish(st, f, result, exc) < 0)
        cfpy_log_exception(st, "critical", "Exception in worker", NULL);
    Py_XDECREF(result);
    Py_XDECREF(exc);
    Py_DECREF(f);
    return false;
}

/* Claims the oldest queued future no worker has taken yet, as a worker
 * popping its task would (PENDING to RUNNING; its task will skip it).
 * GIL held. */
static cfpy_future *claim_queued(cfpy_pool *pool)
{
    for (cfpy_link *l = pool->queued.next; l != &pool->queued; l = l->next) {
        cfpy_future *f = (cfpy_future *)((char *)l -
                                         offsetof(cfpy_future, link));
        if (cf_future_set_running_or_notify_cancel(f->cf) == CF_OK)
            return f;
        /* Running: a worker took its task and waits for the GIL. */
    }
    return NULL;
}

/* More calls are queued: run them here, in this hold of the GIL, instead
 * of handing the GIL back and forth once per call (a futex wake-up each
 * when the submitting thread waits too). The interpreter's switch
 * interval still lets other threads in while the calls run. Bounded, so
 * that this thread returns to the core's loop now and then. GIL held. */
static void run_burst(cfpy_pool *pool)
{
    int64_t until = cf__now_ns() + BURST_NS;
    cfpy_future *f;
    while (cf__now_ns() < until && (f = claim_queued(pool)) != NULL) {
        cf_future *cf = cf_future_retain(f->cf);
        bool failed = false;
        if (cfpy_future_run(pool->st, f, &failed))
            cf__future_finish(cf, NULL, NULL, failed ? CF_ETASK : 0, NULL);
        cf_future_release(cf);
    }
}

void *cfpy_worker_task(void *arg, cf_call *call)
{
    cfpy_future *f = arg;
    cfpy_pool *pool = tls.pool;
    PyEval_RestoreThread(tls.ts);
    if (!tls.named) {
        name_thread(pool, tls.index);
        tls.named = true;
    }
    bool failed = false;
    bool core_completes = cfpy_future_run(pool->st, f, &failed);
    if (pool->queued.next != &pool->queued) {
        if (core_completes) /* now: the burst would delay it */
            cf__future_finish(call->future, NULL, NULL,
                              failed ? CF_ETASK : 0, NULL);
        core_completes = false;
        run_burst(pool);
    }
    PyEval_SaveThread();
    if (core_completes && failed)
        return cf_fail(call, CF_ETASK, NULL);
    return NULL;
}
