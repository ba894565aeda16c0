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
 */
#include "cfpy.h"

#include <string.h>

/* ------------------------------------------------------------------------ */
/* Helpers                                                                  */

static PyObject *state_name(cfpy_state *st, const cfpy_future *f)
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
static int call_callback(cfpy_state *st, cfpy_future *f, PyObject *fn)
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
        rc = call_callback(st, f, fn);
        Py_DECREF(fn);
    }
    Py_DECREF(list);
    return rc;
}

/* Marks that completing `f` will need the GIL (callbacks or protocol). If
 * a worker is completing it without the GIL right now, waits until the
 * core future is done: then nothing needs the mark. */
static void need_gil(cfpy_future *f)
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
static int protocol_enter(cfpy_future *f)
{
    if (!f->condition)
        return 0;
    PyObject *r = PyObject_CallMethod(f->condition, "acquire", NULL);
    if (!r)
        return -1;
    Py_DECREF(r);
    return 1;
}

static void protocol_exit(cfpy_future *f, int entered, bool notify)
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
static void notify_waiters(cfpy_future *f, const char *method)
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
static bool withdraw(cfpy_future *f)
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
        PyErr_Format(st->InvalidStateError, "%U: %U", state_name(st, f),
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
    int entered = protocol_enter(f);
    if (entered < 0)
        return -1;
    /* The condition's acquire may have let another thread finish it. */
    if (cf__state_done_for_result(cf__future_state(f->cf))) {
        protocol_exit(f, entered, false);
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
        protocol_exit(f, entered, false);
        invalid_state(st, f);
        return -1;
    }
    Py_XDECREF(old_result);
    Py_XDECREF(old_exc);
    /* A running task still holds its reference: it sees the future done. */
    bool task_ref = claimed && withdraw(f);
    notify_waiters(f, exc ? "add_exception" : "add_result");
    protocol_exit(f, entered, true);
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
    int entered = protocol_enter(f);
    if (entered < 0)
        return -1;
    if (!cf__future_cancel(f->cf)) {
        protocol_exit(f, entered, false);
        return 0; /* a worker started it */
    }
    bool task_ref = withdraw(f);
    if (!(f->flags & CFPY_BARE))
        notify_waiters(f, "add_cancelled");
    protocol_exit(f, entered, true);
    int rc = run_callbacks(st, f);
    if (task_ref)
        Py_DECREF(f);
    return rc < 0 ? -1 : 1;
}

void cfpy_future_failed_by_core(cfpy_state *st, cfpy_future *f)
{
    int entered = protocol_enter(f);
    if (entered < 0) {
        PyErr_WriteUnraisable((PyObject *)f);
        entered = 0;
    }
    notify_waiters(f, "add_exception");
    protocol_exit(f, entered, true);
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
        int entered = protocol_enter(f);
        if (entered < 0) {
            PyErr_WriteUnraisable((PyObject *)f);
            entered = 0;
        }
        const char *method =
            cf__state_cancelled(cf__future_state(f->cf)) ? "add_cancelled"
            : cfpy_future_failed(f)                     ? "add_exception"
                                                        : "add_result";
        notify_waiters(f, method);
        f->flags |= CFPY_NOTIFIED;
        protocol_exit(f, entered, true);
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

/* ------------------------------------------------------------------------ */
/* Methods                                                                  */

#define STATE_OF(cls) ((cfpy_state *)PyType_GetModuleState(cls))

static PyObject *future_repr(cfpy_future *f)
{
    cfpy_state *st = cfpy_state_of_type(Py_TYPE(f));
    if (!st)
        return NULL;
    const char *desc;
    switch (cf__future_state(f->cf)) {
    case CF__PENDING:
        desc = "pending";
        break;
    case CF__RUNNING:
        desc = "running";
        break;
    case CF__CANCELLED_UNNOTIFIED:
    case CF__CANCELLED:
    case CF__CANCELLED_NOTIFIED:
        desc = "cancelled";
        break;
    default:
        desc = "finished";
        break;
    }
    const char *name = _PyType_Name(Py_TYPE(f));
    if (cf__future_state(f->cf) != CF__FINISHED)
        return PyUnicode_FromFormat("<%s at %p state=%s>", name, f, desc);
    cfpy_remote_decode(st, f);
    int raised = f->exception ? PyObject_IsTrue(f->exception) : 0;
    if (raised < 0)
        return NULL;
    PyObject *outcome = raised ? f->exception
                               : (f->result ? f->result : Py_None);
    return PyUnicode_FromFormat("<%s at %p state=%s %s %s>", name, f, desc,
                                raised ? "raised" : "returned",
                                _PyType_Name(Py_TYPE(outcome)));
}

static PyObject *future_cancel(cfpy_future *f, PyTypeObject *cls,
                               PyObject *const *args, Py_ssize_t nargs,
                               PyObject *kwnames)
{
    if (nargs || kwnames) {
        PyErr_SetString(PyExc_TypeError, "cancel() takes no arguments");
        return NULL;
    }
    int rc = cfpy_future_cancel(STATE_OF(cls), f);
    if (rc < 0)
        return NULL;
    return PyBool_FromLong(rc);
}

static PyObject *future_cancelled(cfpy_future *f, PyObject *unused)
{
    return PyBool_FromLong(cf__state_cancelled(cf__future_state(f->cf)));
}

static PyObject *future_running(cfpy_future *f, PyObject *unused)
{
    return PyBool_FromLong(cf__future_state(f->cf) == CF__RUNNING);
}

static PyObject *future_done(cfpy_future *f, PyObject *unused)
{
    return PyBool_FromLong(
        cf__state_done_for_result(cf__future_state(f->cf)));
}

/* Parses the one optional `timeout` argument of result()/exception(). */
static int parse_timeout(const char *fname, PyObject *const *args,
                         Py_ssize_t nargs, PyObject *kwnames,
                         PyObject **timeout)
{
    *timeout = Py_None;
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    if (nargs + nkw > 1) {
        PyErr_Format(PyExc_TypeError, "%s() takes at most 1 argument", fname);
        return -1;
    }
    if (nargs == 1) {
        *timeout = args[0];
    } else if (nkw == 1) {
        PyObject *name = PyTuple_GET_ITEM(kwnames, 0);
        if (!PyUnicode_Check(name) ||
            PyUnicode_CompareWithASCIIString(name, "timeout") != 0) {
            PyErr_Format(PyExc_TypeError,
                         "%s() got an unexpected keyword argument '%S'",
                         fname, name);
            return -1;
        }
        *timeout = args[0];
    }
    return 0;
}

/* Waits until `f` is done or the deadline. Returns 0, or -1 with
 * CancelledError, TimeoutError or a signal handler's exception. */
static int wait_until(cfpy_state *st, cfpy_future *f, int64_t deadline)
{
    int s = cf__future_state(f->cf);
    if (!cf__state_done_for_result(s)) {
        int rc = cfpy_wait_core(f->cf, deadline);
        if (rc < 0)
            return -1;
        if (rc == 0) {
            PyErr_SetNone(st->TimeoutError);
            return -1;
        }
        s = cf__future_state(f->cf);
    }
    if (cf__state_cancelled(s)) {
        PyErr_SetNone(st->CancelledError);
        return -1;
    }
    return 0;
}

static int wait_done(cfpy_state *st, cfpy_future *f, PyObject *timeout)
{
    int64_t deadline = CF__NO_DEADLINE;
    if (!cf__state_done_for_result(cf__future_state(f->cf)) &&
        cfpy_deadline(timeout, &deadline) < 0)
        return -1;
    return wait_until(st, f, deadline);
}

static PyObject *raise_exception(PyObject *exc)
{
    if (PyExceptionInstance_Check(exc))
        PyErr_SetObject(PyExceptionInstance_Class(exc), exc);
    else if (PyExceptionClass_Check(exc))
        PyErr_SetNone(exc);
    else
        PyErr_SetString(PyExc_TypeError,
                        "exceptions must derive from BaseException");
    return NULL;
}

static PyObject *outcome(cfpy_future *f)
{
    if (f->flags & CFPY_REMOTE) {
        cfpy_state *st = cfpy_state_of_type(Py_TYPE(f));
        if (!st)
            return NULL;
        cfpy_remote_decode(st, f);
    }
    if (f->exception) {
        int truth = PyObject_IsTrue(f->exception);
        if (truth < 0)
            return NULL;
        if (truth)
            return raise_exception(f->exception);
    }
    return Py_NewRef(f->result ? f->result : Py_None);
}

PyObject *cfpy_future_result_until(cfpy_state *st, cfpy_future *f,
                                   int64_t deadline)
{
    if (wait_until(st, f, deadline) < 0)
        return NULL;
    return outcome(f);
}

static PyObject *future_result(cfpy_future *f, PyTypeObject *cls,
                               PyObject *const *args, Py_ssize_t nargs,
                               PyObject *kwnames)
{
    PyObject *timeout;
    if (parse_timeout("result", args, nargs, kwnames, &timeout) < 0)
        return NULL;
    if (wait_done(STATE_OF(cls), f, timeout) < 0)
        return NULL;
    return outcome(f);
}

static PyObject *future_exception(cfpy_future *f, PyTypeObject *cls,
                                  PyObject *const *args, Py_ssize_t nargs,
                                  PyObject *kwnames)
{
    PyObject *timeout;
    if (parse_timeout("exception", args, nargs, kwnames, &timeout) < 0)
        return NULL;
    if (wait_done(STATE_OF(cls), f, timeout) < 0)
        return NULL;
    cfpy_remote_decode(STATE_OF(cls), f);
    return Py_NewRef(f->exception ? f->exception : Py_None);
}

static PyObject *future_add_done_callback(cfpy_future *f, PyTypeObject *cls,
                                          PyObject *const *args,
                                          Py_ssize_t nargs, PyObject *kwnames)
{
    if (nargs != 1 || kwnames) {
        PyErr_SetString(PyExc_TypeError,
                        "add_done_callback() takes exactly one argument (fn)");
        return NULL;
    }
    need_gil(f);
    if (!cf__state_done_for_result(cf__future_state(f->cf))) {
        if (!f->callbacks && !(f->callbacks = PyList_New(0)))
            return NULL;
        if (PyList_Append(f->callbacks, args[0]) < 0)
            return NULL;
        Py_RETURN_NONE;
    }
    if (call_callback(STATE_OF(cls), f, args[0]) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *unexpected_state(cfpy_state *st, cfpy_future *f)
{
    PyObject *id = PyLong_FromVoidPtr(f);
    if (id) {
        PyObject *r = PyObject_CallMethod(st->logger, "critical", "sOO",
                                          "Future %s in unexpected state: %s",
                                          id, state_name(st, f));
        Py_XDECREF(r);
        Py_DECREF(id);
        if (!r)
            return NULL;
    }
    PyErr_SetString(PyExc_RuntimeError, "Future in unexpected state");
    return NULL;
}

static PyObject *future_set_running_or_notify_cancel(cfpy_future *f,
                                                     PyTypeObject *cls,
                                                     PyObject *const *args,
                                                     Py_ssize_t nargs,
                                                     PyObject *kwnames)
{
    cfpy_state *st = STATE_OF(cls);
    if (nargs || kwnames) {
        PyErr_SetString(PyExc_TypeError,
                        "set_running_or_notify_cancel() takes no arguments");
        return NULL;
    }
    int s = cf__future_state(f->cf);
    if (s == CF__CANCELLED_UNNOTIFIED || s == CF__CANCELLED) {
        int entered = protocol_enter(f);
        if (entered < 0)
            return NULL;
        /* The core wakes its wait() and as_completed() waiters. */
        int rc = cf_future_set_running_or_notify_cancel(f->cf);
        if (rc == CF_ECANCELLED && s == CF__CANCELLED_UNNOTIFIED)
            notify_waiters(f, "add_cancelled");
        protocol_exit(f, entered, false);
        if (rc == CF_ECANCELLED)
            Py_RETURN_FALSE;
    } else if (s == CF__PENDING &&
               cf_future_set_running_or_notify_cancel(f->cf) == CF_OK) {
        if (withdraw(f))
            Py_DECREF(f); /* its task will skip a running future */
        Py_RETURN_TRUE;
    }
    return unexpected_state(st, f);
}

static PyObject *future_set_result(cfpy_future *f, PyTypeObject *cls,
                                   PyObject *const *args, Py_ssize_t nargs,
                                   PyObject *kwnames)
{
    if (nargs != 1 || kwnames) {
        PyErr_SetString(PyExc_TypeError,
                        "set_result() takes exactly one argument (result)");
        return NULL;
    }
    if (cfpy_future_finish(STATE_OF(cls), f, args[0], NULL) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *future_set_exception(cfpy_future *f, PyTypeObject *cls,
                                      PyObject *const *args, Py_ssize_t nargs,
                                      PyObject *kwnames)
{
    if (nargs != 1 || kwnames) {
        PyErr_SetString(PyExc_TypeError,
                        "set_exception() takes exactly one argument "
                        "(exception)");
        return NULL;
    }
    if (cfpy_future_finish(STATE_OF(cls), f, NULL, args[0]) < 0)
        return NULL;
    Py_RETURN_NONE;
}

#define METHOD(name, doc)                                                   \
    {#name, (PyCFunction)(void (*)(void))future_##name,                     \
     METH_METHOD | METH_FASTCALL | METH_KEYWORDS, PyDoc_STR(doc)}

static PyMethodDef future_methods[] = {
    METHOD(cancel, "Cancel the future if possible."),
    {"cancelled", (PyCFunction)future_cancelled, METH_NOARGS,
     PyDoc_STR("Return True if the future was cancelled.")},
    {"running", (PyCFunction)future_running, METH_NOARGS,
     PyDoc_STR("Return True if the future is currently executing.")},
    {"done", (PyCFunction)future_done, METH_NOARGS,
     PyDoc_STR("Return True if the future was cancelled or finished "
               "executing.")},
    METHOD(result, "Return the result of the call that the future "
                   "represents."),
    METHOD(exception, "Return the exception raised by the call that the "
                      "future represents."),
    METHOD(add_done_callback, "Attaches a callable that will be called when "
                              "the future finishes."),
    METHOD(set_running_or_notify_cancel, "Mark the future as running or "
                                         "process any cancel "
                                         "notifications."),
    METHOD(set_result, "Sets the return value of work associated with the "
                       "future."),
    METHOD(set_exception, "Sets the result of the future as being the given "
                          "exception."),
    {NULL, NULL, 0, NULL},
};

/* ------------------------------------------------------------------------ */
/* The stdlib's private attributes                                          */

static PyObject *get_state(cfpy_future *f, void *closure)
{
    cfpy_state *st = cfpy_state_of_type(Py_TYPE(f));
    if (!st)
        return NULL;
    /* A hooked REMOTE future is done for the stdlib's protocol once its
     * hook notified the waiters, under the condition (wait() counts the
     * futures it sees done and expects a notification from the rest). */
    if ((f->flags & (CFPY_HOOKED | CFPY_NOTIFIED)) == CFPY_HOOKED &&
        cf__state_done(cf__future_state(f->cf)))
        return Py_NewRef(st->RUNNING);
    return Py_NewRef(state_name(st, f));
}

/* Direct assignment, as the stdlib's tests and some executors do: moves
 * the future forward without notifying anyone (the assigner notifies). */
static int set_state(cfpy_future *f, PyObject *value, void *closure)
{
    cfpy_state *st = cfpy_state_of_type(Py_TYPE(f));
    if (!st)
        return -1;
    if (!value) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete _state");
        return -1;
    }
    PyObject *now = state_name(st, f);
    int eq = PyObject_RichCompareBool(value, now, Py_EQ);
    if (eq != 0)
        return eq < 0 ? -1 : 0;
    int s = cf__future_state(f->cf);
    bool ok = false, claimed = false; /* claimed: taken from its task */
    if (PyObject_RichCompareBool(value, st->RUNNING, Py_EQ) == 1) {
        ok = claimed = s == CF__PENDING &&
                       cf_future_set_running_or_notify_cancel(f->cf) ==
                           CF_OK;
    } else if (PyObject_RichCompareBool(value, st->CANCELLED, Py_EQ) == 1) {
        ok = claimed = s == CF__PENDING && cf__future_cancel(f->cf);
    } else if (PyObject_RichCompareBool(value, st->CANCELLED_AND_NOTIFIED,
                                        Py_EQ) == 1) {
        claimed = s == CF__PENDING && cf__future_cancel(f->cf);
        ok = cf__state_cancelled(cf__future_state(f->cf)) &&
             (cf__state_done(cf__future_state(f->cf)) ||
              cf_future_set_running_or_notify_cancel(f->cf) ==
                  CF_ECANCELLED);
    } else if (PyObject_RichCompareBool(value, st->FINISHED, Py_EQ) == 1) {
        bool failed = f->exception && f->exception != Py_None;
        claimed = s == CF__PENDING &&
                  cf_future_set_running_or_notify_cancel(f->cf) == CF_OK;
        ok = cf__future_state(f->cf) == CF__RUNNING &&
             cf__future_finish(f->cf, NULL, NULL, failed ? CF_ETASK : 0,
                               NULL) == CF_OK;
    }
    if (claimed && withdraw(f))
        Py_DECREF(f); /* its task will skip it; the caller holds f */
    if (PyErr_Occurred())
        return -1;
    if (!ok) {
        PyErr_Format(PyExc_ValueError,
                     "cannot move a cfutures Future from %U to %R", now,
                     value);
        return -1;
    }
    return 0;
}

static PyObject *get_result(cfpy_future *f, void *closure)
{
    cfpy_state *st = cfpy_state_of_type(Py_TYPE(f));
    if (st)
        cfpy_remote_decode(st, f);
    else
        PyErr_Clear();
    return Py_NewRef(f->result ? f->result : Py_None);
}

static int set_result(cfpy_future *f, PyObject *value, void *closure)
{
    Py_XSETREF(f->result, Py_XNewRef(value));
    return 0;
}

static PyObject *get_exception(cfpy_future *f, void *closure)
{
    cfpy_state *st = cfpy_state_of_type(Py_TYPE(f));
    if (st)
        cfpy_remote_decode(st, f);
    else
        PyErr_Clear();
    return Py_NewRef(f->exception ? f->exception : Py_None);
}

static int set_exception(cfpy_future *f, PyObject *value, void *closure)
{
    Py_XSETREF(f->exception,
               value && value != Py_None ? Py_NewRef(value) : NULL);
    return 0;
}

static PyObject *get_condition(cfpy_future *f, void *closure)
{
    if (!f->condition) {
        cfpy_state *st = cfpy_state_of_type(Py_TYPE(f));
        if (!st)
            return NULL;
        need_gil(f);
        f->condition = PyObject_CallNoArgs(st->Condition);
        if (!f->condition)
            return NULL;
    }
    return Py_NewRef(f->condition);
}

static PyObject *get_waiters(cfpy_future *f, void *closure)
{
    if (!f->waiters) {
        need_gil(f);
        if (!(f->waiters = PyList_New(0)))
            return NULL;
    }
    return Py_NewRef(f->waiters);
}

static PyObject *get_done_callbacks(cfpy_future *f, void *closure)
{
    if (f->callbacks)
        return Py_NewRef(f->callbacks);
    return PyList_New(0);
}

static PyGetSetDef future_getset[] = {
    {"_state", (getter)get_state, (setter)set_state, NULL, NULL},
    {"_result", (getter)get_result, (setter)set_result, NULL, NULL},
    {"_exception", (getter)get_exception, (setter)set_exception, NULL, NULL},
    {"_condition", (getter)get_condition, NULL, NULL, NULL},
    {"_waiters", (getter)get_waiters, NULL, NULL, NULL},
    {"_done_callbacks", (getter)get_done_callbacks, NULL, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot future_slots[] = {
    {Py_tp_new, future_new},
    {Py_tp_init, future_init},
    {Py_tp_dealloc, future_dealloc},
    {Py_tp_traverse, future_traverse},
    {Py_tp_clear, future_clear},
    {Py_tp_repr, future_repr},
    {Py_tp_methods, future_methods},
    {Py_tp_getset, future_getset},
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
