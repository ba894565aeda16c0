/* cfpy.h - the CPython extension `cfutures._cfutures`: shared declarations.
 *
 * Design: the extension is a thin layer of Python objects over the C core,
 * linked in statically. It uses the core's internal interface (core/core.h:
 * the future's state, waiters and wait nodes) for the Python binding only,
 * because waiting must be interruptible by signals and a Python future
 * keeps its outcome as Python objects beside the core future's state.
 *
 *   Future (Python class: FutureBase + concurrent.futures.Future)
 *     FutureBase (C): one core future (the state machine every wait uses)
 *     + the call (fn, args, kwargs) until it ends, the outcome as Python
 *     objects, done-callbacks, and the stdlib's private protocol
 *     (_condition, _waiters, _state) created only when something asks.
 *   ThreadPoolExecutor (Python class: ThreadPoolBase + the stdlib's)
 *     ThreadPoolBase (C): one cfpy_pool around a core thread pool; every
 *     worker thread has one Python thread state for its whole life.
 *
 * The GIL is the lock of everything Python-side here: a pool's list of
 * queued futures, a future's Python fields and flags. Every transition of a
 * Python future to done happens in this extension's code with the GIL held,
 * except one: a worker whose finished future has neither callbacks nor
 * protocol waiters drops the GIL first and lets the core complete it (the
 * `gil_need` handshake below), so that a thread waiting for the result finds
 * the GIL free when it wakes. The core never completes a Python future by
 * itself: cancelling queued work, a broken pool and shutdown are done here.
 */
#ifndef CFPY_H
#define CFPY_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "core/core.h"

/* ------------------------------------------------------------------------ */
/* Module state                                                             */

typedef struct cfpy_pool cfpy_pool;
typedef struct cfpy_thread_rec cfpy_thread_rec;

typedef struct cfpy_state {
    PyTypeObject *FutureBase;     /* C base of Future */
    PyTypeObject *Future;         /* class Future(FutureBase, stdlib Future) */
    PyTypeObject *ThreadPoolBase; /* C base of ThreadPoolExecutor */
    PyTypeObject *AsCompleted;    /* as_completed() iterator */
    PyTypeObject *MapIterator;    /* Executor.map() iterator */
    PyTypeObject *Bridge;         /* stdlib-protocol waiter for foreign futures */
    PyTypeObject *WorkerThread;   /* what executor._threads holds */
    PyTypeObject *ProcessPoolBase; /* C base of ProcessPoolExecutor */
    PyObject *stdlib_Future;      /* concurrent.futures.Future */
    PyObject *CancelledError;
    PyObject *TimeoutError;
    PyObject *InvalidStateError;
    PyObject *BrokenThreadPool;
    PyObject *BrokenProcessPool;
    PyObject *RemoteTraceback;    /* concurrent.futures.process._RemoteTraceback */
    PyObject *pickle_dumps, *pickle_loads;
    PyObject *logger;             /* logging.getLogger('concurrent.futures') */
    PyObject *Condition;          /* threading.Condition */
    PyObject *current_thread;     /* threading.current_thread */
    PyObject *threading_active;   /* threading._active */
    PyObject *DoneAndNotDone;     /* _base.DoneAndNotDoneFutures */
    PyObject *empty_tuple;
    /* _base's state and return_when strings */
    PyObject *PENDING, *RUNNING, *CANCELLED, *CANCELLED_AND_NOTIFIED,
        *FINISHED;
    PyObject *FIRST_COMPLETED, *FIRST_EXCEPTION, *ALL_COMPLETED;
    cfpy_pool *pools;   /* every pool not yet freed; guarded by the GIL */
    struct cfpy_ppool *ppools; /* every process pool not yet freed (GIL) */
    unsigned pools_walk; /* numbers the walks over `pools` */
    /* wait() and as_completed() deduplicating their futures (wait_set.c):
     * the last ticket handed out, and the calls collecting right now. */
    uint64_t mark_next;
    struct cfpy_marking *marking;
    bool exiting;       /* _python_exit() ran: no new work */
} cfpy_state;

extern PyModuleDef cfpy_module_def;

static inline cfpy_state *cfpy_state_of_module(PyObject *module)
{
    return (cfpy_state *)PyModule_GetState(module);
}

/* The state of the module that defined `type` (or a base of it). */
cfpy_state *cfpy_state_of_type(PyTypeObject *type);

/* ------------------------------------------------------------------------ */
/* Futures (future.c)                                                       */

/* A doubly linked list node; the list's head is a sentinel (GIL). */
typedef struct cfpy_link {
    struct cfpy_link *prev, *next;
} cfpy_link;

enum cfpy_future_flags {
    CFPY_BARE = 1u << 0,   /* made by Future(): stdlib notify protocol */
    CFPY_QUEUED = 1u << 2, /* a queued task holds a reference; linked */
    /* A process pool's: the core future holds the pickled outcome, decoded
     * on first use (remote.c). */
    CFPY_REMOTE = 1u << 3,
    CFPY_DECODED = 1u << 4,  /* REMOTE: result/exception hold the outcome */
    CFPY_HOOKED = 1u << 5,   /* REMOTE: a core done-callback holds a ref */
    CFPY_NOTIFIED = 1u << 6, /* REMOTE: that callback has run */
};

/* gil_need: what completing the future requires (see the file header). */
enum {
    CFPY_GIL_FREE = 0,       /* nothing Python-side to run at completion */
    CFPY_GIL_NEEDED = 1,     /* callbacks or protocol waiters to notify */
    CFPY_GIL_COMPLETING = 2, /* a worker completes it without the GIL */
};

typedef struct cfpy_future {
    PyObject_HEAD
    cf_future *cf;          /* one reference, never NULL once made */
    PyObject *fn;           /* the call, until it ends */
    PyObject *args;         /* tuple or NULL */
    PyObject *kwargs;       /* dict or NULL */
    PyObject *result;       /* outcome once finished (or set by _result) */
    PyObject *exception;
    PyObject *callbacks;    /* list, or NULL */
    PyObject *condition;    /* threading.Condition, once asked for */
    PyObject *waiters;      /* list of stdlib waiters, once asked for */
    cfpy_link link;         /* on the pool's queued list while QUEUED */
    unsigned flags;         /* enum cfpy_future_flags; GIL */
    _Atomic unsigned char gil_need;
    /* The ticket of the last wait() or as_completed() that collected it
     * (wait_set.c: its duplicates cost a compare, not a set); GIL. */
    uint64_t mark;
} cfpy_future;

static inline bool cfpy_future_check(cfpy_state *st, PyObject *o)
{
    return PyObject_TypeCheck(o, st->FutureBase);
}

/* A new pending future of class st->Future (a bare one: CFPY_BARE unset;
 * the caller sets flags). NULL with an exception on failure. */
cfpy_future *cfpy_future_new(cfpy_state *st, cf_future *cf);

/* True if `f` counts as done for wait() and as_completed(): finished, or
 * cancelled and (for a bare future) notified. */
bool cfpy_future_done_for_wait(const cfpy_future *f);
/* True if `f` finished with an exception (FIRST_EXCEPTION). GIL held. */
bool cfpy_future_failed(const cfpy_future *f);

/* Completes `f` with a result (exc == NULL) or an exception; both are
 * borrowed. Runs protocol notifications and callbacks. Returns 0, or -1
 * with InvalidStateError set if `f` is already done. GIL held. */
int cfpy_future_finish(cfpy_state *st, cfpy_future *f, PyObject *result,
                       PyObject *exc);

/* Cancels `f` if it is pending (queued work is withdrawn). Returns 1 if it
 * is now cancelled, 0 if it runs or finished, -1 if a callback raised a
 * BaseException. GIL held. */
int cfpy_future_cancel(cfpy_state *st, cfpy_future *f);

/* For a future the core failed by itself (its exception field set): the
 * protocol waiters and callbacks. GIL held, no exception set. */
void cfpy_future_failed_by_core(cfpy_state *st, cfpy_future *f);

/* Runs the queued call of `f` on this worker thread, which holds the GIL,
 * and sets its outcome. Returns true if the caller must complete the core
 * future itself (without the GIL), with failure if *failed. (worker.c) */
bool cfpy_future_run(cfpy_state *st, cfpy_future *f, bool *failed);

/* Waits for `f` until `deadline`, then returns its result (a new
 * reference) or NULL with its exception, CancelledError or TimeoutError.
 * GIL held (dropped while waiting). */
PyObject *cfpy_future_result_until(cfpy_state *st, cfpy_future *f,
                                   int64_t deadline);

/* Logs the current exception on the concurrent.futures logger with
 * LOGGER.<level>(msg, obj) and exc_info, and clears it. GIL held. */
void cfpy_log_exception(cfpy_state *st, const char *level, const char *msg,
                        PyObject *obj);

/* ------------------------------------------------------------------------ */
/* Blocking (block.c): the GIL released, signals checked every slice.       */

/* Converts a Python timeout (None, int or float) to an absolute deadline:
 * None is CF__NO_DEADLINE, <= 0 polls, NaN raises ValueError as
 * threading's waits do. Returns 0 or -1 with an exception. */
int cfpy_deadline(PyObject *timeout, int64_t *deadline);

/* Waits until the core future `cf` is done or the deadline passes. Returns
 * 1 (done), 0 (deadline), -1 (a signal handler raised). GIL held on entry
 * and return, released while waiting. */
int cfpy_wait_core(cf_future *cf, int64_t deadline);

/* Waits on `ev` until `ready(ctx)` or the deadline; same returns. */
int cfpy_wait_event(cf__event *ev, bool (*ready)(void *ctx), void *ctx,
                    int64_t deadline);

/* ------------------------------------------------------------------------ */
/* Thread pools (pool.c, worker.c)                                          */

struct cfpy_pool {
    cf_executor *ex;            /* the core thread pool */
    cfpy_state *st;
    PyObject *module;           /* strong: the state outlives the pool */
    PyInterpreterState *interp;
    cfpy_link queued;           /* futures whose task has not started */
    PyObject *initializer;      /* or NULL */
    PyObject *initargs;         /* tuple */
    PyObject *prefix;           /* str: thread names are <prefix>_<n> */
    PyObject *broken;           /* str once an initializer failed */
    atomic_int n_threads;       /* worker threads started */
    /* Their records, published when each thread starts; max_workers. */
    _Atomic(cfpy_thread_rec *) *recs;
    int max_workers;
    bool shutdown;              /* shutdown() called */
    bool orphaned;              /* its executor object is gone */
    /* A thread is freeing it (the GIL is dropped while it waits): others
     * leave it alone. */
    bool reaping;
    unsigned visit;             /* the last walk of st->pools that saw it */
    cfpy_pool *next;            /* st->pools */
};

typedef struct cfpy_executor {
    PyObject_HEAD
    cfpy_pool *pool;
} cfpy_executor;

/* The core pool's thread hook: one Python thread state for the life of
 * the thread. (worker.c) */
void cfpy_worker_main(void (*run)(void *run_arg), void *run_arg, void *pool);
/* The core pool's initializer: names the thread and runs the Python
 * initializer, if there is one. (worker.c) */
int cfpy_worker_start(void *pool);
/* The core task that runs a queued future (arg). (worker.c) */
void *cfpy_worker_task(void *arg, cf_call *call);

/* Thread records (threads.c): made by the thread with two references,
 * its own and its pool's; ended by it (wakes joiners, drops its own). */
cfpy_thread_rec *cfpy_thread_rec_new(int index);
void cfpy_thread_rec_end(cfpy_thread_rec *r);
void cfpy_thread_rec_release(cfpy_thread_rec *r);
/* executor._threads: a new set of handles. GIL held. */
PyObject *cfpy_pool_threads(cfpy_pool *pool);

void cfpy_link_init(cfpy_link *head);
void cfpy_link_remove(cfpy_link *node);

/* Submits fn(*args, **kwargs) (args a tuple or NULL, kwargs a dict or
 * NULL; both borrowed). Returns a new future or NULL with an exception. */
cfpy_future *cfpy_pool_submit(cfpy_pool *pool, PyObject *fn, PyObject *args,
                              PyObject *kwargs);

/* Waits for every pool's workers and frees what is left (at exit). */
int cfpy_pools_exit(cfpy_state *st);

/* ------------------------------------------------------------------------ */
/* Process pools (procpool.c) and their futures and workers (remote.c)      */

/* A REMOTE future's outcome: decodes the pickled result or exception the
 * core future holds into f->result / f->exception, once (a failure to
 * unpickle becomes a BrokenProcessPool). No-op for other futures and
 * before the core future finished. GIL held; never leaves an exception. */
void cfpy_remote_decode(cfpy_state *st, cfpy_future *f);

/* Makes the completion of a REMOTE future run its Python side (protocol
 * waiters, done-callbacks) by a core done-callback, which takes the GIL
 * on the thread that completes it; if it is done already, that runs now,
 * in this thread. GIL held. */
void cfpy_remote_hook(cfpy_future *f);

/* Cancels a pending REMOTE future through the core (whose pool may still
 * win the race); its hook does the rest. Returns 1 if cancelled. */
int cfpy_remote_cancel(cfpy_future *f);

/* The core task every Python call runs as in a worker ("cfutures.call"):
 * a pickled (fn, args, kwargs) in, a tagged pickle out. */
void *cfpy_remote_call(void *arg, cf_call *call);

/* Module functions: a worker's loop for a process started by an mp
 * context (_serve) or as the cfutures-native worker program
 * (_worker_main). */
PyObject *cfpy_remote_serve(PyObject *module, PyObject *const *args,
                            Py_ssize_t nargs);
PyObject *cfpy_remote_worker_main(PyObject *module, PyObject *const *args,
                                  Py_ssize_t nargs);

/* Shuts down and frees every process pool (interpreter exit). */
int cfpy_ppools_exit(cfpy_state *st);

/* ------------------------------------------------------------------------ */
/* Types and functions registered by module.c                               */

int cfpy_future_types_init(PyObject *module, cfpy_state *st);
int cfpy_pool_type_init(PyObject *module, cfpy_state *st);
int cfpy_bridge_type_init(PyObject *module, cfpy_state *st);
int cfpy_as_completed_type_init(PyObject *module, cfpy_state *st);
int cfpy_map_type_init(PyObject *module, cfpy_state *st);
int cfpy_threads_type_init(PyObject *module, cfpy_state *st);
int cfpy_procpool_type_init(PyObject *module, cfpy_state *st);

PyObject *cfpy_wait(PyObject *module, PyObject *const *args, Py_ssize_t nargs,
                    PyObject *kwnames);
PyObject *cfpy_as_completed(PyObject *module, PyObject *const *args,
                            Py_ssize_t nargs, PyObject *kwnames);
/* executor.map(fn, *iterables, timeout=None, chunksize=1, buffersize=None)
 * for `self` (a ThreadPoolBase). */
PyObject *cfpy_map_new(cfpy_state *st, PyObject *self, PyObject *const *args,
                       Py_ssize_t nargs, PyObject *kwnames);

#endif /* CFPY_H */
