/* future.c - cfutures.Future: a concurrent.futures.Future on a core future.
 *
 * Design: the core future holds the state (PENDING, RUNNING, CANCELLED,
 * FINISHED) and wakes every waiter; this object holds what Python needs
 * beside it: the outcome as objects, done-callbacks, and the stdlib's
 * private protocol, made only when asked for (`_condition`, `_waiters`):
 * from then on each transition to done happens under that condition and
 * notifies the stdlib waiters in `_waiters`, so the stdlib's own wait() and
 * as_completed() work on these futures.
 *
 * Notify protocol: a bare Future() (made by user code, as executor authors
 * and tests do) follows the stdlib: cancel() makes it CANCELLED, done() and
 * result() see that at once, but wait() and as_completed() count it only
 * once set_running_or_notify_cancel() moved it to CANCELLED_AND_NOTIFIED.
 * A future an executor of ours made is done for everyone the moment it is
 * cancelled (cpython#92001, #109934, #87893).
 *
 * Everything here runs with the GIL held; the GIL guards the fields. The
 * outcome fields are written before the core future turns done, so a thread
 * that saw it done and then took the GIL reads them.
 *
 * This file has the state machine: the transitions, the REMOTE hook, the
 * life cycle and the type; the methods are in future_methods.c, the
 * private attributes in future_protocol.c (their shared helpers:
 * future.h).
 */
#include "future.h"

#include <string.h>

/* ------------------------------------------------------------------------ */
/* Helpers                                                                  */

PyObject *cfpy_future_state_name(cfpy_state *st, const cfpy_future *f)
{
    switch (cf__future_state(f->cf)) {
    case CF__PENDING:
        return st->PENDING;
    case CF__RUNNING:
        return st->RUNNING;
    case CF__CANCELLED_UNNOTIFIED:
        return st->CANCELLED;
    case CF__CANCELLED:
    case CF__CANCELLED_NOTIFIED:
        return st->CANCELLED_AND_NOTIFIED;
    default:
        return st->FINISHED;
    }
}

bool cfpy_future_done_for_wait(const cfpy_future *f)
{
    /* The core's notify protocol (bare futures) makes the difference. */
    return cf__state_done(cf__future_state(f->cf));
}

bool cfpy_future_failed(const cfpy_future *f)
{
    if (f->flags & CFPY_REMOTE) {
        cfpy_state *st = cfpy_state_of_type(Py_TYPE(f));
        if (st)
            cfpy_remote_decode(st, (cfpy_future *)f);
        else
            PyErr_Clear();
    }
    return cf__future_state(f->cf) == CF__FINISHED && f->exception &&
           f->exception != Py_None;
}

void cfpy_log_exception(cfpy_state *st, const char *level, const char *msg,
                        PyObject *obj)
{
    /* logging reads sys.exc_info(): make the raised exception the handled
     * one for the call. */
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (tb && value)
        PyException_SetTraceback(value, tb);
    PyObject *previous = PyErr_GetHandledException();
    PyErr_SetHandledException(value);
    PyObject *r = NULL, *args = obj ? Py_BuildValue("(sO)", msg, obj)
                                    : Py_BuildValue("(s)", msg);
    PyObject *kwargs = Py_BuildValue("{s:O}", "exc_info", Py_True);
    PyObject *method = PyObject_GetAttrString(st->logger, level);
    if (args && kwargs && method)
        r = PyObject_Call(method, args, kwargs);
    Py_XDECREF(args);
    Py_XDECREF(kwargs);
    Py_XDECREF(method);
    if (!r)
        PyErr_WriteUnraisable(st->logger); /* logging itself failed */
    Py_XDECREF(r);
    PyErr_SetHandledException(previous);
    Py_XDECREF(previous);
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
}

/* Calls fn(f). An Exception is logged as the stdlib does; a BaseException
 * (KeyboardInterrupt, SystemExit) propagates: returns -1. */
int cfpy_future_call_callback(cfpy_state *st, cfpy_future *f, PyObject *fn)
{
    PyObject *r = PyObject_CallOneArg(fn, (PyObject *)f);
    if (r) {
        Py_DECREF(r);
        return 0;
    }
    if (!PyErr_ExceptionMatches(PyExc_Exception))
        return -1;
    cfpy_log_exception(st, "exception", "exception calling callback for %r",
                       (PyObject *)f);
    return 0;
}

/* Runs the callbacks added before completion, once; later ones run when
 * added. Returns -1 if one raised a BaseException (the rest do not run, as
 * in the stdlib). */
static int run_callbacks(cfpy_state *st, cfpy_future *f)
{
    PyObject *list = f->callbacks;
    if (!list)
        return 0;
    f->callbacks = NULL;
    int rc = 0;
    for (Py_ssize_t i = 0; rc == 0 && i < PyList_GET_SIZE(list); i++) {
        PyObject *fn = Py_NewRef(PyList_GET_ITEM(list, i));
        rc = cfpy_future_call_callback(st, f, fn);
        Py_DECREF(fn);
    }
    Py_DECREF(list);
    return rc;
}

/* Marks that completing `f` will need the GIL (callbacks or protocol). If
 * a worker is completing it without the GIL right now, waits until the
 * core future is done: then nothing needs the mark. */
void cfpy_future_need_gil(cfpy_future *f)
{
    if (f->flags & CFPY_REMOTE) {
        cfpy_remote_hook(f);
        return;
    }
    unsigned char expected = CFPY_GIL_FREE;
    if (atomic_compare_exchange_strong(&f->gil_need, &expected,
                                       CFPY_GIL_NEEDED) ||
        expected == CFPY_GIL_NEEDED)
        return;
    /* The worker has dropped the GIL and is in the core's completion: a
     * few instructions away. */
    for (unsigned i = 0;
         !cf__state_done_for_result(cf__future_state(f->cf)); i++) {
        if (i < 64)
            cf__cpu_relax();
        else
            cf__yield();
    }
}

/* The stdlib protocol, when something asked for it: the condition guards
 * each transition to done. acquire() may drop the GIL while it blocks. */
int cfpy_future_protocol_enter(cfpy_future *f)
{
    if (!f->condition)
        return 0;
    PyObject *r = PyObject_CallMethod(f->condition, "acquire", NULL);
    if (!r)
        return -1;
    Py_DECREF(r);
    return 1;
}

void cfpy_future_protocol_exit(cfpy_future *f, int entered, bool notify)
{
    if (entered <= 0)
        return;
    PyObject *exc_type, *exc_value, *exc_tb;
    PyErr_Fetch(&exc_type, &exc_value, &exc_tb);
    PyObject *r = notify ? PyObject_CallMethod(f->condition, "notify_all",
                                               NULL)
                         : Py_NewRef(Py_None);
    if (!r)
        PyErr_WriteUnraisable(f->condition);
    Py_XDECREF(r);
    r = PyObject_CallMethod(f->condition, "release", NULL);
    if (!r)
        PyErr_WriteUnraisable(f->condition);
    Py_XDECREF(r);
    PyErr_Restore(exc_type, exc_value, exc_tb);
}

/* Calls method(f) on every stdlib waiter installed in `_waiters`. */
void cfpy_future_notify_waiters(cfpy_future *f, const char *method)
{
    if (!f->waiters || PyList_GET_SIZE(f->waiters) == 0)
        return;
    PyObject *copy = PyList_GetSlice(f->waiters, 0, PY_SSIZE_T_MAX);
    if (!copy) {
        PyErr_WriteUnraisable((PyObject *)f);
        return;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(copy); i++) {
        PyObject *r = PyObject_CallMethod(PyList_GET_ITEM(copy, i), method,
                                          "O", (PyObject *)f);
        if (!r)
            PyErr_WriteUnraisable(PyList_GET_ITEM(copy, i));
        Py_XDECREF(r);
    }
    Py_DECREF(copy);
}

/* Takes a queued future off its pool's list: its task will find it done
 * (or running, for set_running_or_notify_cancel) and skip it. Returns true
 * if the task's reference is now the caller's to drop. */
bool cfpy_future_withdraw(cfpy_future *f)
{
    if (!(f->flags & CFPY_QUEUED))
        return false;
    cfpy_link_remove(&f->link);
    f->flags &= ~CFPY_QUEUED;
    Py_CLEAR(f->fn);
    Py_CLEAR(f->args);
    Py_CLEAR(f->kwargs);
    return true;
}

static PyObject *invalid_state(cfpy_state *st, cfpy_future *f)
{
    PyObject *repr = PyObject_Repr((PyObject *)f);
    if (repr) {
        PyErr_Format(st->InvalidStateError, "%U: %U", cfpy_future_state_name(st, f),
                     repr);
        Py_DECREF(repr);
    }
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Transitions                                                              */

int cfpy_future_finish(cfpy_state *st, cfpy_future *f, PyObject *result,
                       PyObject *exc)
{
    if (cf__state_done_for_result(cf__future_state(f->cf))) {
        invalid_state(st, f);
        return -1;
    }
    int entered = cfpy_future_protocol_enter(f);
    if (entered < 0)
        return -1;
    /* The condition's acquire may have let another thread finish it. */
    if (cf__state_done_for_result(cf__future_state(f->cf))) {
        cfpy_future_protocol_exit(f, entered, false);
        invalid_state(st, f);
        return -1;
    }
    /* Claim a pending future from its task: a worker may be taking it
     * right now, without the GIL; whichever moves it to RUNNING first
     * owns the task's reference (the other sees it running or done). */
    bool claimed = cf_future_set_running_or_notify_cancel(f->cf) == CF_OK;
    PyObject *old_result = f->result, *old_exc = f->exception;
    f->result = exc ? NULL : Py_NewRef(result);
    f->exception = exc ? Py_NewRef(exc) : NULL;
    if (cf__future_finish(f->cf, NULL, NULL, exc ? CF_ETASK : 0, NULL) !=
        CF_OK) {
        /* A worker completed it meanwhile, without the GIL. */
        Py_XSETREF(f->result, old_result);
        Py_XSETREF(f->exception, old_exc);
        cfpy_future_protocol_exit(f, entered, false);
        invalid_state(st, f);
        return -1;
    }
    Py_XDECREF(old_result);
    Py_XDECREF(old_exc);
    /* A running task still holds its reference: it sees the future done. */
    bool task_ref = claimed && cfpy_future_withdraw(f);
    cfpy_future_notify_waiters(f, exc ? "add_exception" : "add_result");
    cfpy_future_protocol_exit(f, entered, true);
    int rc = run_callbacks(st, f);
    if (task_ref)
        Py_DECREF(f); /* the caller holds its own reference */
    return rc;
}

int cfpy_future_cancel(cfpy_state *st, cfpy_future *f)
{
    int s = cf__future_state(f->cf);
    if (cf__state_cancelled(s))
        return 1;
    if (s != CF__PENDING)
        return 0;
    if (f->flags & CFPY_REMOTE)
        return cfpy_remote_cancel(f);
    int entered = cfpy_future_protocol_enter(f);
    if (entered < 0)
        return -1;
    if (!cf__future_cancel(f->cf)) {
        cfpy_future_protocol_exit(f, entered, false);
        return 0; /* a worker started it */
    }
    bool task_ref = cfpy_future_withdraw(f);
    if (!(f->flags & CFPY_BARE))
        cfpy_future_notify_waiters(f, "add_cancelled");
    cfpy_future_protocol_exit(f, entered, true);
    int rc = run_callbacks(st, f);
    if (task_ref)
        Py_DECREF(f);
    return rc < 0 ? -1 : 1;
}

void cfpy_future_failed_by_core(cfpy_state *st, cfpy_future *f)
{
    int entered = cfpy_future_protocol_enter(f);
    if (entered < 0) {
        PyErr_WriteUnraisable((PyObject *)f);
        entered = 0;
    }
    cfpy_future_notify_waiters(f, "add_exception");
    cfpy_future_protocol_exit(f, entered, true);
    if (run_callbacks(st, f) < 0)
        PyErr_WriteUnraisable((PyObject *)f);
}

/* The core done-callback of a hooked REMOTE future: on the thread that
 * completed the core future (a pool's manager thread, or one that
 * cancelled it), with the GIL taken. */
static int remote_done(cf_future *cf, void *arg)
{
    (void)cf;
    cfpy_future *f = arg;
    PyGILState_STATE g = PyGILState_Ensure();
    cfpy_state *st = cfpy_state_of_type(Py_TYPE(f));
    if (st) {
        cfpy_remote_decode(st, f);
        int entered = cfpy_future_protocol_enter(f);
        if (entered < 0) {
            PyErr_WriteUnraisable((PyObject *)f);
            entered = 0;
        }
        const char *method =
            cf__state_cancelled(cf__future_state(f->cf)) ? "add_cancelled"
            : cfpy_future_failed(f)                     ? "add_exception"
                                                        : "add_result";
        cfpy_future_notify_waiters(f, method);
        f->flags |= CFPY_NOTIFIED;
        cfpy_future_protocol_exit(f, entered, true);
        if (run_callbacks(st, f) < 0)
            PyErr_WriteUnraisable((PyObject *)f);
    } else {
        PyErr_WriteUnraisable((PyObject *)f);
    }
    Py_DECREF(f); /* the hook's */
    PyGILState_Release(g);
    return 0;
}

void cfpy_remote_hook(cfpy_future *f)
{
    if (f->flags & CFPY_HOOKED)
        return;
    f->flags |= CFPY_HOOKED;
    Py_INCREF(f);
    if (cf_future_add_done_callback(f->cf, remote_done, f) != CF_OK) {
        /* Out of memory: callbacks then run when added after the end. */
        f->flags &= ~CFPY_HOOKED;
        Py_DECREF(f);
    }
}

int cfpy_remote_cancel(cfpy_future *f)
{
    /* The pool's cancel hook races the worker's claim; a hooked future's
     * Python side runs in remote_done, in this thread. */
    return cf__future_cancel(f->cf) ? 1 : 0;
}

/* ------------------------------------------------------------------------ */
/* Construction and life cycle                                              */

cfpy_future *cfpy_future_new(cfpy_state *st, cf_future *cf)
{
    cfpy_future *f = (cfpy_future *)st->Future->tp_alloc(st->Future, 0);
    if (!f)
        return NULL;
    f->cf = cf;
    atomic_init(&f->gil_need, CFPY_GIL_FREE);
    return f;
}

static PyObject *future_new(PyTypeObject *type, PyObject *args,
                            PyObject *kwds)
{
    cf_future *cf = cf__future_alloc();
    if (!cf)
        return PyErr_NoMemory();
    cfpy_future *f = (cfpy_future *)type->tp_alloc(type, 0);
    if (!f) {
        cf_future_release(cf);
        return NULL;
    }
    f->cf = cf;
    f->flags = CFPY_BARE;
    cf__future_use_notify_protocol(cf);
    atomic_init(&f->gil_need, CFPY_GIL_FREE);
    return (PyObject *)f;
}

static int future_init(PyObject *self, PyObject *args, PyObject *kwds)
{
    if (PyTuple_GET_SIZE(args) != 0 || (kwds && PyDict_GET_SIZE(kwds))) {
        PyErr_SetString(PyExc_TypeError, "Future() takes no arguments");
        return -1;
    }
    return 0;
}

static int future_traverse(cfpy_future *f, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(f));
    Py_VISIT(f->fn);
    Py_VISIT(f->args);
    Py_VISIT(f->kwargs);
    Py_VISIT(f->result);
    Py_VISIT(f->exception);
    Py_VISIT(f->callbacks);
    Py_VISIT(f->condition);
    Py_VISIT(f->waiters);
    return 0;
}

static int future_clear(cfpy_future *f)
{
    Py_CLEAR(f->fn);
    Py_CLEAR(f->args);
    Py_CLEAR(f->kwargs);
    Py_CLEAR(f->result);
    Py_CLEAR(f->exception);
    Py_CLEAR(f->callbacks);
    Py_CLEAR(f->condition);
    Py_CLEAR(f->waiters);
    return 0;
}

static void future_dealloc(cfpy_future *f)
{
    PyTypeObject *tp = Py_TYPE(f);
    PyObject_GC_UnTrack(f);
    future_clear(f);
    cf_future_release(f->cf);
    tp->tp_free((PyObject *)f);
    Py_DECREF(tp);
}

static PyType_Slot future_slots[] = {
    {Py_tp_new, future_new},
    {Py_tp_init, future_init},
    {Py_tp_dealloc, future_dealloc},
    {Py_tp_traverse, future_traverse},
    {Py_tp_clear, future_clear},
    {Py_tp_repr, cfpy_future_repr},
    {Py_tp_methods, cfpy_future_methods},
    {Py_tp_getset, cfpy_future_getset},
    {Py_tp_doc, PyDoc_STR("The C part of cfutures.Future.")},
    {0, NULL},
};

static PyType_Spec future_spec = {
    .name = "cfutures._cfutures.FutureBase",
    .basicsize = sizeof(cfpy_future),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC |
             Py_TPFLAGS_IMMUTABLETYPE,
    .slots = future_slots,
};

/* Makes FutureBase and the public class
 *     class Future(FutureBase, concurrent.futures.Future)
 * so that isinstance() with the stdlib's class holds and our methods come
 * first in the MRO. */
int cfpy_future_types_init(PyObject *module, cfpy_state *st)
{
    st->FutureBase = (PyTypeObject *)PyType_FromModuleAndSpec(
        module, &future_spec, NULL);
    if (!st->FutureBase)
        return -1;
    PyObject *ns = Py_BuildValue(
        "{s:s,s:s,s:()}", "__module__", "cfutures", "__doc__",
        "Represents the result of an asynchronous computation.",
        "__slots__");
    if (!ns)
        return -1;
    /* __slots__ = (): the stdlib class already gives __dict__ and
     * __weakref__ (made only when used). */
    st->Future = (PyTypeObject *)PyObject_CallFunction(
        (PyObject *)&PyType_Type, "s(OO)O", "Future", st->FutureBase,
        st->stdlib_Future, ns);
    Py_DECREF(ns);
    if (!st->Future)
        return -1;
    return PyModule_AddObjectRef(module, "Future", (PyObject *)st->Future);
}
