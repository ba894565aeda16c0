/* future_methods.c - the public methods of cfutures.Future: cancel(),
 * result(), exception(), add_done_callback(), set_result() and the rest,
 * as the stdlib's Future has them (future.c has the state machine).
 *
 * Everything here runs with the GIL held; result() and exception() drop it
 * while they wait.
 */
#include "future.h"

#define STATE_OF(cls) ((cfpy_state *)PyType_GetModuleState(cls))

PyObject *cfpy_future_repr(cfpy_future *f)
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
    cfpy_future_need_gil(f);
    if (!cf__state_done_for_result(cf__future_state(f->cf))) {
        if (!f->callbacks && !(f->callbacks = PyList_New(0)))
            return NULL;
        if (PyList_Append(f->callbacks, args[0]) < 0)
            return NULL;
        Py_RETURN_NONE;
    }
    if (cfpy_future_call_callback(STATE_OF(cls), f, args[0]) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *unexpected_state(cfpy_state *st, cfpy_future *f)
{
    PyObject *id = PyLong_FromVoidPtr(f);
    if (id) {
        PyObject *r = PyObject_CallMethod(st->logger, "critical", "sOO",
                                          "Future %s in unexpected state: %s",
                                          id, cfpy_future_state_name(st, f));
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
        int entered = cfpy_future_protocol_enter(f);
        if (entered < 0)
            return NULL;
        /* The core wakes its wait() and as_completed() waiters. */
        int rc = cf_future_set_running_or_notify_cancel(f->cf);
        if (rc == CF_ECANCELLED && s == CF__CANCELLED_UNNOTIFIED)
            cfpy_future_notify_waiters(f, "add_cancelled");
        cfpy_future_protocol_exit(f, entered, false);
        if (rc == CF_ECANCELLED)
            Py_RETURN_FALSE;
    } else if (s == CF__PENDING &&
               cf_future_set_running_or_notify_cancel(f->cf) == CF_OK) {
        if (cfpy_future_withdraw(f))
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

PyMethodDef cfpy_future_methods[] = {
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
