/* procpool.c - ProcessPoolBase, the C part of cfutures.ProcessPoolExecutor.
 *
 * Design: the executor object owns a cfpy_ppool around a core process
 * pool whose workers are Python interpreters, one per process, started in
 * one of two ways:
 *
 * - through a multiprocessing context (fork, forkserver, spawn): the core
 *   calls start_worker() on its manager thread, which takes the GIL and
 *   asks the package's launcher (cfutures.process._Launcher) to start a
 *   Process that serves the channel (cfutures._cfutures._serve); the
 *   launcher also reports each worker's exit status (reap), since
 *   multiprocessing keeps its own bookkeeping of its children;
 * - the cfutures-native worker program (CF_START_PROGRAM): the core
 *   itself starts `python -c ...cfutures._worker...`, no multiprocessing
 *   machinery on either side.
 *
 * submit() pickles (fn, args, kwargs) and hands the bytes to the core as
 * the task "cfutures.call" (remote.c); a call that cannot be pickled ends
 * its future with the pickling error at once. The core completes futures
 * on its manager thread without the GIL; their Python side is decoded
 * lazily (remote.c), and only futures with callbacks or stdlib waiters
 * take the GIL there (future.c, remote_done).
 *
 * Life cycle: shutdown(wait=True), terminate_workers() and kill_workers()
 * wait with the GIL released (the manager takes it to start and reap
 * workers) and free the core pool. An executor dropped without shutdown
 * is shut down without waiting (as the stdlib's weakref callback does)
 * and its pool freed once its work ended: at the next pool's creation or
 * at interpreter exit (_python_exit), whichever comes first. A process
 * forked from the owner (a fork worker) never touches its copy.
 */
#include "cfpy.h"

#include <signal.h>
#include <string.h>
#include <unistd.h>

typedef struct cfpy_ppool {
    cf_executor *ex;      /* NULL once freed */
    cfpy_state *st;
    PyObject *launcher;   /* mp contexts: the package's _Launcher; or NULL */
    sigset_t mask;        /* the creating thread's: workers start with it */
    pid_t owner;          /* the process that made it */
    int max_workers;
    bool shutdown;        /* shutdown() (or terminate) called */
    bool orphaned;        /* its executor object is gone */
    bool freeing;         /* a thread waits to free it (GIL dropped) */
    struct cfpy_ppool *next; /* st->ppools */
} cfpy_ppool;

typedef struct cfpy_pexecutor {
    PyObject_HEAD
    cfpy_ppool *pool;
} cfpy_pexecutor;

static const char BROKEN_POOL_MSG[] =
    "A child process terminated abruptly, the process pool is not usable "
    "anymore";

/* ------------------------------------------------------------------------ */
/* Callbacks of the core pool (its manager thread, every signal blocked)   */

static int start_worker(void *ctx, const cf_worker_channel *ch,
                        cf_worker_process *out);

/* The wait status of a worker the launcher started, from its Process. */
static int reap_worker(void *ctx, long pid, int *wait_status)
{
    cfpy_ppool *pool = ctx;
    PyGILState_STATE g = PyGILState_Ensure();
    PyObject *r = PyObject_CallMethod(pool->launcher, "reap", "l", pid);
    int rc = 1;
    if (r && r != Py_None) {
        long status = PyLong_AsLong(r);
        if (!(status == -1 && PyErr_Occurred())) {
            *wait_status = (int)status;
            rc = 0;
        }
    }
    if (!r || PyErr_Occurred())
        PyErr_WriteUnraisable(pool->launcher);
    Py_XDECREF(r);
    PyGILState_Release(g);
    return rc;
}

static int start_worker(void *ctx, const cf_worker_channel *ch,
                        cf_worker_process *out)
{
    cfpy_ppool *pool = ctx;
    PyGILState_STATE g = PyGILState_Ensure();
    /* The process (and a forkserver or resource tracker it starts) gets
     * the signal mask of the thread that made the pool, not the
     * manager's: a worker must end on SIGTERM. */
    sigset_t old;
    pthread_sigmask(SIG_SETMASK, &pool->mask, &old);
    PyObject *r = PyObject_CallMethod(pool->launcher, "start", "iiii",
                                      ch->read_fd, ch->write_fd, ch->shm_fd,
                                      ch->slot);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    long pid = r ? PyLong_AsLong(r) : -1;
    if (PyErr_Occurred())
        PyErr_WriteUnraisable(pool->launcher);
    Py_XDECREF(r);
    PyGILState_Release(g);
    if (pid <= 0)
        return CF_ESYS;
    out->pid = pid;
    out->reap = reap_worker;
    return CF_OK;
}

/* ------------------------------------------------------------------------ */
/* Pools                                                                    */

static void ppool_unlist(cfpy_ppool *pool)
{
    for (cfpy_ppool **p = &pool->st->ppools; *p; p = &(*p)->next) {
        if (*p == pool) {
            *p = pool->next;
            return;
        }
    }
}

/* Frees the core pool (waiting for its work, the GIL released) and drops
 * the launcher; the struct too if its executor is gone. */
static void ppool_release(cfpy_ppool *pool)
{
    if (pool->freeing)
        return; /* another thread is at it */
    pool->freeing = true;
    cf_executor *ex = pool->ex;
    if (ex) {
        Py_BEGIN_ALLOW_THREADS
        cf_executor_free(ex);
        Py_END_ALLOW_THREADS
        pool->ex = NULL;
    }
    Py_CLEAR(pool->launcher);
    pool->freeing = false;
    if (pool->orphaned) {
        ppool_unlist(pool);
        PyMem_Free(pool);
    }
}

/* Frees the pools of dropped executors whose work has ended. */
static void reap_orphans(cfpy_state *st)
{
    pid_t me = getpid();
    for (bool again = true; again;) {
        again = false;
        for (cfpy_ppool *p = st->ppools; p; p = p->next) {
            if (p->orphaned && p->owner == me && !p->freeing &&
                (!p->ex || cf_executor_shutdown_timeout(p->ex, 0, false,
                                                        NULL) == CF_OK)) {
                ppool_release(p); /* drops the GIL: walk again */
                again = true;
                break;
            }
        }
    }
}

int cfpy_ppools_exit(cfpy_state *st)
{
    pid_t me = getpid();
    for (;;) {
        cfpy_ppool *p = st->ppools;
        while (p && (p->owner != me || !p->ex || p->freeing))
            p = p->next;
        if (!p)
            return 0;
        p->shutdown = true;
        ppool_release(p); /* waits for its work, then frees it */
    }
}

/* executor._broken: False, or the stdlib's message with the core's. */
static PyObject *broken_text(cfpy_ppool *pool)
{
    const char *why;
    if (!cf_executor_broken(pool->ex, &why))
        return Py_NewRef(Py_False);
    if (!*why)
        return PyUnicode_FromString(BROKEN_POOL_MSG);
    return PyUnicode_FromFormat("%s (%s)", BROKEN_POOL_MSG, why);
}

static PyObject *raise_broken(cfpy_state *st, cfpy_ppool *pool)
{
    PyObject *text = broken_text(pool);
    if (text == Py_False) {
        Py_DECREF(text);
        text = PyUnicode_FromString(BROKEN_POOL_MSG);
    }
    if (text) {
        PyErr_SetObject(st->BrokenProcessPool, text);
        Py_DECREF(text);
    }
    return NULL;
}

static PyObject *raise_core(cfpy_state *st, int rc)
{
    switch (rc) {
    case CF_ESHUTDOWN:
        PyErr_SetString(PyExc_RuntimeError,
                        "cannot schedule new futures after shutdown");
        break;
    case CF_EBROKEN_PROCESS_POOL:
    case CF_EAGAIN:
        PyErr_SetString(st->BrokenProcessPool, BROKEN_POOL_MSG);
        break;
    case CF_ENOMEM:
        PyErr_NoMemory();
        break;
    case CF_EDEADLK:
        PyErr_SetString(PyExc_RuntimeError,
                        "a process pool cannot be used from its own worker "
                        "processes");
        break;
    default:
        PyErr_Format(PyExc_RuntimeError, "cfutures: %s", cf_strerror(rc));
        break;
    }
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* The executor object                                                      */

#define PPOOL_OR_FAIL(self, ret)                                              \
    cfpy_ppool *pool = ((cfpy_pexecutor *)(self))->pool;                      \
    if (!pool) {                                                              \
        PyErr_SetString(PyExc_RuntimeError,                                   \
                        "ProcessPoolExecutor.__init__() was not called");     \
        return ret;                                                           \
    }

/* A NULL-terminated copy of a list of str, in one PyMem block. */
static char **argv_copy(PyObject *list)
{
    PyObject *seq = PySequence_Fast(list, "argv must be a list of str");
    if (!seq)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    size_t size = (size_t)(n + 1) * sizeof(char *);
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t len;
        if (!PyUnicode_AsUTF8AndSize(PySequence_Fast_GET_ITEM(seq, i), &len)) {
            Py_DECREF(seq);
            return NULL;
        }
        size += (size_t)len + 1;
    }
    char **argv = n > 0 ? PyMem_Malloc(size) : NULL;
    if (!argv) {
        Py_DECREF(seq);
        if (n == 0)
            PyErr_SetString(PyExc_ValueError, "empty worker argv");
        else
            PyErr_NoMemory();
        return NULL;
    }
    char *text = (char *)(argv + n + 1);
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t len;
        const char *s =
            PyUnicode_AsUTF8AndSize(PySequence_Fast_GET_ITEM(seq, i), &len);
        memcpy(text, s, (size_t)len + 1);
        argv[i] = text;
        text += len + 1;
    }
    argv[n] = NULL;
    Py_DECREF(seq);
    return argv;
}

/* _cf_start(max_workers, launcher, argv, max_tasks_per_child,
 * survive_worker_death): the Python __init__ validates the arguments as
 * the stdlib does, then calls this with a launcher (mp contexts) or the
 * worker program's argv (the native start). */
static PyObject *executor_start(PyObject *self, PyTypeObject *cls,
                                PyObject *const *args, Py_ssize_t nargs,
                                PyObject *kwnames)
{
    cfpy_state *st = PyType_GetModuleState(cls);
    cfpy_pexecutor *e = (cfpy_pexecutor *)self;
    if (nargs != 5 || kwnames) {
        PyErr_SetString(PyExc_TypeError,
                        "_cf_start(max_workers, launcher, argv, "
                        "max_tasks_per_child, survive_worker_death)");
        return NULL;
    }
    if (e->pool) {
        PyErr_SetString(PyExc_RuntimeError, "executor already started");
        return NULL;
    }
    long max_workers = PyLong_AsLong(args[0]);
    if (max_workers == -1 && PyErr_Occurred())
        return NULL;
    if (max_workers <= 0) {
        PyErr_SetString(PyExc_ValueError,
                        "max_workers must be greater than 0");
        return NULL;
    }
    if (max_workers > 4096) {
        PyErr_SetString(PyExc_ValueError, "max_workers is too large");
        return NULL;
    }
    long max_tasks = PyLong_AsLong(args[3]);
    if (max_tasks == -1 && PyErr_Occurred())
        return NULL;
    if (max_tasks < 0) {
        PyErr_SetString(PyExc_ValueError, "max_tasks_per_child must be >= 1");
        return NULL;
    }
    int survive = PyObject_IsTrue(args[4]);
    if (survive < 0)
        return NULL;
    PyObject *launcher = args[1] == Py_None ? NULL : args[1];
    char **argv = NULL;
    if (!launcher && !(argv = argv_copy(args[2])))
        return NULL;
    reap_orphans(st);

    cfpy_ppool *pool = PyMem_Calloc(1, sizeof *pool);
    if (!pool) {
        PyMem_Free(argv);
        return PyErr_NoMemory();
    }
    pool->st = st;
    pool->owner = getpid();
    pool->max_workers = (int)max_workers;
    pool->launcher = Py_XNewRef(launcher);
    pthread_sigmask(SIG_SETMASK, NULL, &pool->mask);

    static const char *const required[] = {"cfutures.call", NULL};
    cf_process_pool_options opts = {
        .max_workers = (int)max_workers,
        .start_method = launcher ? CF_START_CALLBACK : CF_START_PROGRAM,
        .max_tasks_per_child = (size_t)max_tasks,
        .codec = cf_codec_bytes(),
        .survive_worker_death = survive,
        .program = argv ? argv[0] : NULL,
        .program_argv = (const char *const *)argv,
        .start_worker = launcher ? start_worker : NULL,
        .start_ctx = pool,
        .required_tasks = required,
    };
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = cf_process_pool_new(&opts, &pool->ex);
    Py_END_ALLOW_THREADS
    PyMem_Free(argv); /* copied by the pool */
    if (rc != CF_OK) {
        Py_XDECREF(pool->launcher);
        PyMem_Free(pool);
        return raise_core(st, rc);
    }
    pool->next = st->ppools;
    st->ppools = pool;
    e->pool = pool;
    Py_RETURN_NONE;
}

/* A future that already failed with the current exception (a call that
 * could not be pickled), as the stdlib's feeder thread reports it. */
static PyObject *failed_future(cfpy_state *st)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (value && tb)
        PyException_SetTraceback(value, tb);
    PyObject *process = PyImport_ImportModule("cfutures.process");
    PyObject *exc = process ? PyObject_CallMethod(process, "_pickling_failed",
                                                  "O", value)
                            : NULL;
    Py_XDECREF(process);
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
    if (!exc)
        return NULL;
    cf_future *cf = cf__future_alloc();
    cfpy_future *f = cf ? cfpy_future_new(st, cf) : NULL;
    if (!f) {
        cf_future_release(cf);
        Py_DECREF(exc);
        return cf ? NULL : PyErr_NoMemory();
    }
    int r = cfpy_future_finish(st, f, NULL, exc);
    Py_DECREF(exc);
    if (r < 0) {
        Py_DECREF(f);
        return NULL;
    }
    return (PyObject *)f;
}

static PyObject *executor_submit(PyObject *self, PyTypeObject *cls,
                                 PyObject *const *args, Py_ssize_t nargs,
                                 PyObject *kwnames)
{
    cfpy_state *st = PyType_GetModuleState(cls);
    PPOOL_OR_FAIL(self, NULL);
    if (nargs < 1) {
        PyErr_SetString(PyExc_TypeError,
                        "submit() missing 1 required positional argument: "
                        "'fn'");
        return NULL;
    }
    if (cf_executor_broken(pool->ex, NULL))
        return raise_broken(st, pool);
    if (pool->shutdown || !pool->ex)
        return raise_core(st, CF_ESHUTDOWN);
    if (st->exiting) {
        PyErr_SetString(PyExc_RuntimeError,
                        "cannot schedule new futures after interpreter "
                        "shutdown");
        return NULL;
    }
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    PyObject *call = PyTuple_New(3);
    PyObject *call_args = PyTuple_New(nargs - 1);
    PyObject *kwargs = nkw ? PyDict_New() : Py_NewRef(Py_None);
    if (!call || !call_args || !kwargs) {
        Py_XDECREF(call);
        Py_XDECREF(call_args);
        Py_XDECREF(kwargs);
        return NULL;
    }
    for (Py_ssize_t i = 1; i < nargs; i++)
        PyTuple_SET_ITEM(call_args, i - 1, Py_NewRef(args[i]));
    for (Py_ssize_t i = 0; i < nkw; i++) {
        if (PyDict_SetItem(kwargs, PyTuple_GET_ITEM(kwnames, i),
                           args[nargs + i]) < 0) {
            Py_DECREF(call);
            Py_DECREF(call_args);
            Py_DECREF(kwargs);
            return NULL;
        }
    }
    PyTuple_SET_ITEM(call, 0, Py_NewRef(args[0]));
    PyTuple_SET_ITEM(call, 1, call_args);
    PyTuple_SET_ITEM(call, 2, kwargs);
    PyObject *data = PyObject_CallOneArg(st->pickle_dumps, call);
    Py_DECREF(call);
    if (!data)
        return failed_future(st);
    if (!PyBytes_Check(data)) {
        Py_DECREF(data);
        PyErr_SetString(PyExc_TypeError, "pickle.dumps() did not return "
                                         "bytes");
        return NULL;
    }
    /* The core encodes the argument before submit returns: it may point
     * into the bytes object. */
    cf_bytes arg = {(size_t)PyBytes_GET_SIZE(data),
                    (unsigned char *)PyBytes_AS_STRING(data)};
    cf_future *cf = NULL;
    int rc = cf_executor_submit(pool->ex, cfpy_remote_call, &arg, &cf);
    Py_DECREF(data);
    if (rc == CF_EBROKEN_PROCESS_POOL)
        return raise_broken(st, pool);
    if (rc != CF_OK)
        return raise_core(st, rc);
    cfpy_future *f = cfpy_future_new(st, cf);
    if (!f) {
        cf_future_cancel(cf);
        cf_future_release(cf);
        return NULL;
    }
    f->flags = CFPY_REMOTE;
    /* Kept (no copy) only to name the call if its worker dies. */
    f->fn = Py_NewRef(args[0]);
    return (PyObject *)f;
}

static PyObject *executor_shutdown(PyObject *self, PyObject *args,
                                   PyObject *kwds)
{
    static char *kwlist[] = {"wait", "cancel_futures", NULL};
    int wait = 1, cancel_futures = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|p$p:shutdown", kwlist,
                                     &wait, &cancel_futures))
        return NULL;
    PPOOL_OR_FAIL(self, NULL);
    pool->shutdown = true;
    if (!pool->ex)
        Py_RETURN_NONE;
    if (!wait) {
        /* Cancelled futures' callbacks run here, taking the GIL again. */
        Py_BEGIN_ALLOW_THREADS
        cf_executor_shutdown(pool->ex, false, cancel_futures);
        Py_END_ALLOW_THREADS
        Py_RETURN_NONE;
    }
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = cf_executor_shutdown(pool->ex, true, cancel_futures);
    Py_END_ALLOW_THREADS
    if (rc == CF_EDEADLK) {
        /* A done-callback on the pool's own manager thread. */
        PyErr_SetString(PyExc_RuntimeError,
                        "cannot join the process pool from its own manager "
                        "thread");
        return NULL;
    }
    ppool_release(pool);
    Py_RETURN_NONE;
}

/* terminate_workers() / kill_workers() (3.14). */
static PyObject *force_shutdown(PyObject *self, int (*how)(cf_executor *))
{
    PPOOL_OR_FAIL(self, NULL);
    pool->shutdown = true;
    if (!pool->ex)
        Py_RETURN_NONE;
    Py_BEGIN_ALLOW_THREADS
    how(pool->ex);
    Py_END_ALLOW_THREADS
    ppool_release(pool);
    Py_RETURN_NONE;
}

static PyObject *executor_terminate(PyObject *self, PyObject *unused)
{
    return force_shutdown(self, cf_process_pool_terminate_workers);
}

static PyObject *executor_kill(PyObject *self, PyObject *unused)
{
    return force_shutdown(self, cf_process_pool_kill_workers);
}

/* The live workers' pids, once the manager has started those the tasks
 * submitted so far need (for the _processes property). */
static PyObject *executor_pids(PyObject *self, PyObject *unused)
{
    PPOOL_OR_FAIL(self, NULL);
    long stack[64], *pids = stack;
    size_t cap = 64, n = 0;
    for (;;) {
        int rc = CF_OK;
        if (pool->ex) {
            Py_BEGIN_ALLOW_THREADS
            rc = cf_process_pool_pids(pool->ex, pids, cap, &n);
            Py_END_ALLOW_THREADS
        }
        if (rc != CF_OK) {
            if (pids != stack)
                PyMem_Free(pids);
            return PyErr_Format(PyExc_RuntimeError, "%s", cf_strerror(rc));
        }
        if (n <= cap)
            break;
        /* Workers started meanwhile: ask again with room for them all. */
        if (pids != stack)
            PyMem_Free(pids);
        cap = n;
        pids = PyMem_New(long, cap);
        if (!pids)
            return PyErr_NoMemory();
    }
    PyObject *list = PyList_New((Py_ssize_t)n);
    for (size_t i = 0; list && i < n; i++) {
        PyObject *pid = PyLong_FromLong(pids[i]);
        if (!pid)
            Py_CLEAR(list);
        else
            PyList_SET_ITEM(list, (Py_ssize_t)i, pid);
    }
    if (pids != stack)
        PyMem_Free(pids);
    return list;
}

static PyObject *get_shutdown(PyObject *self, void *closure)
{
    PPOOL_OR_FAIL(self, NULL);
    return PyBool_FromLong(pool->shutdown);
}

static PyObject *get_broken(PyObject *self, void *closure)
{
    PPOOL_OR_FAIL(self, NULL);
    return broken_text(pool);
}

static PyObject *get_launcher(PyObject *self, void *closure)
{
    PPOOL_OR_FAIL(self, NULL);
    return Py_NewRef(pool->launcher ? pool->launcher : Py_None);
}

static void executor_dealloc(PyObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    cfpy_ppool *pool = ((cfpy_pexecutor *)self)->pool;
    PyObject_GC_UnTrack(self);
    if (pool && pool->owner == getpid()) {
        /* As the stdlib's weakref callback: queued work still runs. */
        pool->shutdown = true;
        pool->orphaned = true;
        if (pool->ex)
            cf_executor_shutdown(pool->ex, false, false);
        else if (!pool->freeing) {
            ppool_unlist(pool);
            PyMem_Free(pool);
        }
    }
    tp->tp_free(self);
    Py_DECREF(tp);
}

static int executor_traverse(PyObject *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    cfpy_ppool *pool = ((cfpy_pexecutor *)self)->pool;
    if (pool)
        Py_VISIT(pool->launcher);
    return 0;
}

static PyMethodDef executor_methods[] = {
    {"_cf_start", (PyCFunction)(void (*)(void))executor_start,
     METH_METHOD | METH_FASTCALL | METH_KEYWORDS,
     PyDoc_STR("Starts the core pool (called by __init__).")},
    {"submit", (PyCFunction)(void (*)(void))executor_submit,
     METH_METHOD | METH_FASTCALL | METH_KEYWORDS,
     PyDoc_STR("submit(fn, /, *args, **kwargs)\n--\n\nSubmits a callable "
               "to be executed with the given arguments.")},
    {"shutdown", (PyCFunction)(void (*)(void))executor_shutdown,
     METH_VARARGS | METH_KEYWORDS,
     PyDoc_STR("shutdown(wait=True, *, cancel_futures=False)\n--\n\n"
               "Clean-up the resources associated with the Executor.")},
    {"terminate_workers", executor_terminate, METH_NOARGS,
     PyDoc_STR("Attempts to terminate the executor's workers (SIGTERM), "
               "then shuts down.")},
    {"kill_workers", executor_kill, METH_NOARGS,
     PyDoc_STR("Attempts to kill the executor's workers (SIGKILL), then "
               "shuts down.")},
    {"_cf_pids", executor_pids, METH_NOARGS,
     PyDoc_STR("The worker processes' pids, once the workers the tasks "
               "submitted so far need have started.")},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef executor_getset[] = {
    {"_shutdown_thread", get_shutdown, NULL, NULL, NULL},
    {"_launcher", get_launcher, NULL, NULL, NULL},
    {"_broken", get_broken, NULL, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot executor_slots[] = {
    {Py_tp_dealloc, executor_dealloc},
    {Py_tp_traverse, executor_traverse},
    {Py_tp_methods, executor_methods},
    {Py_tp_getset, executor_getset},
    {Py_tp_doc, PyDoc_STR("The C part of cfutures.ProcessPoolExecutor.")},
    {0, NULL},
};

static PyType_Spec executor_spec = {
    .name = "cfutures._cfutures.ProcessPoolBase",
    .basicsize = sizeof(cfpy_pexecutor),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC |
             Py_TPFLAGS_IMMUTABLETYPE,
    .slots = executor_slots,
};

int cfpy_procpool_type_init(PyObject *module, cfpy_state *st)
{
    /* Both the parent and its workers know the one task by name. */
    if (cf_task_register("cfutures.call", cfpy_remote_call) != CF_OK) {
        PyErr_SetString(PyExc_RuntimeError,
                        "cfutures: cannot register the task cfutures.call");
        return -1;
    }
    st->ProcessPoolBase = (PyTypeObject *)PyType_FromModuleAndSpec(
        module, &executor_spec, NULL);
    if (!st->ProcessPoolBase)
        return -1;
    return PyModule_AddObjectRef(module, "ProcessPoolBase",
                                 (PyObject *)st->ProcessPoolBase);
}
