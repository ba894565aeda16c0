/* future.h - what the files of cfutures.Future share: future.c (the state
 * machine: transitions, the type), future_methods.c (the public methods)
 * and future_protocol.c (the stdlib's private attributes).
 *
 * Everything here runs with the GIL held.
 */
#ifndef CFPY_FUTURE_H
#define CFPY_FUTURE_H

#include "cfpy.h"

/* The stdlib's name of the state of `f` (st->PENDING, ...): borrowed. */
PyObject *cfpy_future_state_name(cfpy_state *st, const cfpy_future *f);

/* Calls fn(f). An Exception is logged as the stdlib does; a BaseException
 * (KeyboardInterrupt, SystemExit) propagates: returns -1. */
int cfpy_future_call_callback(cfpy_state *st, cfpy_future *f, PyObject *fn);

/* Marks that completing `f` will need the GIL (callbacks or protocol). If
 * a worker is completing it without the GIL right now, waits until the
 * core future is done: then nothing needs the mark. A REMOTE future gets
 * its core hook instead. */
void cfpy_future_need_gil(cfpy_future *f);

/* The stdlib protocol, when something asked for it: the condition guards
 * each transition to done. enter returns 1 if it acquired the condition,
 * 0 if there is none, -1 with an exception (acquire() may drop the GIL
 * while it blocks). exit releases it if `entered` > 0, after notify_all()
 * if `notify`; it keeps a pending exception. */
int cfpy_future_protocol_enter(cfpy_future *f);
void cfpy_future_protocol_exit(cfpy_future *f, int entered, bool notify);

/* Calls method(f) on every stdlib waiter installed in `_waiters`; their
 * errors are reported as unraisable. */
void cfpy_future_notify_waiters(cfpy_future *f, const char *method);

/* Takes a queued future off its pool's list: its task will find it done
 * (or running, for set_running_or_notify_cancel) and skip it. Returns true
 * if the task's reference is now the caller's to drop. */
bool cfpy_future_withdraw(cfpy_future *f);

/* repr(f), as the stdlib's (future_methods.c). */
PyObject *cfpy_future_repr(cfpy_future *f);

/* The type's tables: future_methods.c, future_protocol.c. */
extern PyMethodDef cfpy_future_methods[];
extern PyGetSetDef cfpy_future_getset[];

#endif /* CFPY_FUTURE_H */
