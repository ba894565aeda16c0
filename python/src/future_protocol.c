/* future_protocol.c - the stdlib Future's private attributes on
 * cfutures.Future: `_state`, `_result`, `_exception`, `_condition`,
 * `_waiters`, `_done_callbacks`.
 *
 * Design: the stdlib's own wait() and as_completed(), its tests and some
 * executors use them. `_condition` and `_waiters` are made on first use;
 * from then on every transition to done happens under that condition and
 * notifies the waiters (future.c). Assigning `_state` moves the future
 * forward without notifying anyone, as with the stdlib's class. GIL held.
 */
#include "future.h"

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
    return Py_NewRef(cfpy_future_state_name(st, f));
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
    PyObject *now = cfpy_future_state_name(st, f);
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
    if (claimed && cfpy_future_withdraw(f))
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
        cfpy_future_need_gil(f);
        f->condition = PyObject_CallNoArgs(st->Condition);
        if (!f->condition)
            return NULL;
    }
    return Py_NewRef(f->condition);
}

static PyObject *get_waiters(cfpy_future *f, void *closure)
{
    if (!f->waiters) {
        cfpy_future_need_gil(f);
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

PyGetSetDef cfpy_future_getset[] = {
    {"_state", (getter)get_state, (setter)set_state, NULL, NULL},
    {"_result", (getter)get_result, (setter)set_result, NULL, NULL},
    {"_exception", (getter)get_exception, (setter)set_exception, NULL, NULL},
    {"_condition", (getter)get_condition, NULL, NULL, NULL},
    {"_waiters", (getter)get_waiters, NULL, NULL, NULL},
    {"_done_callbacks", (getter)get_done_callbacks, NULL, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};
