/* block.c - waiting with the GIL released, interruptible by signals.
 *
 * Design: a wait drops the GIL, then sleeps on the core's event (a futex)
 * in slices of at most SLICE_NS. Between slices, and whenever a sleep ends
 * without the condition (EINTR: Ctrl-C delivered to this thread), it takes
 * the GIL back to run Python's signal handlers, so a KeyboardInterrupt
 * raised by the handler ends the wait. The core's threads block every
 * signal, so a process-directed SIGINT lands on a Python thread. The slice
 * bounds how late a signal that arrives just before a sleep is seen.
 */
#include "cfpy.h"

#include <math.h>

enum { SLICE_NS = 50 * 1000 * 1000 };

int cfpy_deadline(PyObject *timeout, int64_t *deadline)
{
    if (timeout == Py_None) {
        *deadline = CF__NO_DEADLINE;
        return 0;
    }
    double t = PyFloat_AsDouble(timeout);
    if (t == -1.0 && PyErr_Occurred())
        return -1;
    if (isnan(t)) {
        PyErr_SetString(PyExc_ValueError, "Invalid value NaN (not a number)");
        return -1;
    }
    cf__deadline_from_timeout(t, deadline);
    return 0;
}

static int64_t slice_end(int64_t deadline)
{
    int64_t end = cf__now_ns() + SLICE_NS;
    return end < deadline ? end : deadline;
}

static void wake(cf__waiter *w, cf__wait_node *node, cf_future *f)
{
    (void)node;
    (void)f;
    cf__event_signal_all(&w->event);
}

static bool done_for_result(void *cf)
{
    return cf__state_done_for_result(cf__future_state(cf));
}

int cfpy_wait_core(cf_future *cf, int64_t deadline)
{
    if (done_for_result(cf))
        return 1;
    if (deadline != CF__NO_DEADLINE && cf__now_ns() >= deadline)
        return 0;
    /* Woken by a cancel too: a bare future's result() sees it at once. */
    cf__waiter w;
    cf__wait_node node;
    cf__event_init(&w.event);
    w.notify = wake;
    w.wakes_on_cancel = true;
    node.waiter = &w;
    int rc = 1;
    if (cf__wait_node_install(cf, &node)) {
        rc = cfpy_wait_event(&w.event, done_for_result, cf, deadline);
        cf__wait_node_remove(&node);
    }
    cf__event_destroy(&w.event);
    return rc;
}

int cfpy_wait_event(cf__event *ev, bool (*ready)(void *ctx), void *ctx,
                    int64_t deadline)
{
    if (ready(ctx))
        return 1;
    if (deadline != CF__NO_DEADLINE && cf__now_ns() >= deadline)
        return 0;
    PyThreadState *ts = PyEval_SaveThread();
    int rc = 0;
    for (;;) {
        unsigned seq = cf__event_seq(ev);
        if (ready(ctx)) {
            rc = 1;
            break;
        }
        int64_t end = slice_end(deadline);
        if (!cf__event_wait_spinning(ev, seq, end) || cf__event_seq(ev) == seq) {
            /* The slice ended, or a signal interrupted the sleep. */
            if (deadline != CF__NO_DEADLINE && cf__now_ns() >= deadline) {
                rc = ready(ctx) ? 1 : 0;
                break;
            }
            PyEval_RestoreThread(ts);
            rc = PyErr_CheckSignals();
            ts = PyEval_SaveThread();
            if (rc < 0)
                break;
        }
    }
    PyEval_RestoreThread(ts);
    return rc;
}
