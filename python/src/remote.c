/* remote.c - Python calls across processes: the pickled call a worker runs
 * and the pickled outcome its future decodes.
 *
 * Design: submit() pickles (fn, args, kwargs) and hands the bytes to the
 * core process pool as the argument of the task "cfutures.call", which the
 * extension registers at import in every process (the parent and each
 * worker). In a worker the task unpickles the call, runs it and answers
 * one tag byte and a pickle:
 *
 *   'R' + pickle(result)
 *   'E' + pickle(_ExceptionWithTraceback(exc)): re-raised in the parent
 *         with a _RemoteTraceback cause holding the worker's traceback, as
 *         the stdlib does (a result that cannot be pickled is answered by
 *         its pickling error, the same way)
 *   'U' + pickle(traceback text): the call could not be unpickled in the
 *         worker; the parent raises BrokenProcessPool from it, where the
 *         stdlib's worker dies of it (its pool breaks; ours carries on)
 *
 * The future keeps those bytes in its core future and unpickles them on
 * first use, in the thread that asks (result(), exception(), a callback),
 * so the pool's manager thread never needs the GIL for a result.
 *
 * The worker serves on its main thread with the GIL released; each task
 * takes it back with the thread state kept for the worker's life (one
 * interpreter, one thread state per worker process).
 */
#include "cfpy.h"

#include <limits.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* The parent: decoding an outcome                                          */

static const char BROKEN_MSG[] =
    "A process in the process pool was terminated abruptly while the future "
    "was running or pending.";

/* BrokenProcessPool(msg) with __cause__ = cause (borrowed, may be NULL). */
static PyObject *broken(cfpy_state *st, PyObject *msg, PyObject *cause)
{
    PyObject *exc = PyObject_CallOneArg(st->BrokenProcessPool, msg);
    if (exc && cause)
        PyException_SetCause(exc, Py_NewRef(cause));
    return exc;
}

/* The exception a failed decode stores: BrokenProcessPool from the
 * current exception. */
static PyObject *broken_from_current(cfpy_state *st, const char *msg)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (value && tb)
        PyException_SetTraceback(value, tb);
    PyObject *text = PyUnicode_FromString(msg);
    PyObject *exc = text ? broken(st, text, value) : NULL;
    Py_XDECREF(text);
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
    return exc;
}

/* What a failed core future means to Python: the pool broke (a worker
 * died: the core's message names its pid, status and task), or a worker
 * could not be started. */
static PyObject *core_failure(cfpy_state *st, cfpy_future *f)
{
    const char *why = cf__future_message(f->cf);
    PyObject *name = NULL;
    if (f->fn) { /* the core knows the call as cfpy_remote_call */
        name = PyObject_GetAttrString(f->fn, "__qualname__");
        if (!name || !PyUnicode_Check(name)) {
            PyErr_Clear();
            Py_XSETREF(name, PyObject_Repr(f->fn));
        }
        PyErr_Clear();
    }
    const char *text =
        why && *why ? why : cf_strerror(cf__future_code(f->cf));
    PyObject *msg =
        name ? PyUnicode_FromFormat("%s (%s; the call: %S)", BROKEN_MSG,
                                    text, name)
             : PyUnicode_FromFormat("%s (%s)", BROKEN_MSG, text);
    Py_XDECREF(name);
    if (!msg)
        return NULL;
    PyObject *exc = broken(st, msg, NULL);
    Py_DECREF(msg);
    return exc;
}

/* Decodes the tagged pickle `b`: sets *result or *exc (new references).
 * Returns -1 with an exception when it cannot be unpickled. */
static int decode(cfpy_state *st, const cf_bytes *b, PyObject **result,
                  PyObject **exc)
{
    if (b->len < 1) {
        PyErr_SetString(PyExc_ValueError, "empty result from a worker");
        return -1;
    }
    PyObject *view = PyMemoryView_FromMemory((char *)b->data + 1,
                                             (Py_ssize_t)b->len - 1,
                                             PyBUF_READ);
    if (!view)
        return -1;
    PyObject *v = PyObject_CallOneArg(st->pickle_loads, view);
    Py_DECREF(view);
    if (!v)
        return -1;
    switch (b->data[0]) {
    case 'R':
        *result = v;
        return 0;
    case 'E':
        *exc = v;
        return 0;
    case 'U': {
        PyObject *cause = PyObject_CallOneArg(st->RemoteTraceback, v);
        Py_DECREF(v);
        if (!cause)
            return -1;
        PyObject *msg = PyUnicode_FromString(
            "the call could not be unpickled in the worker process");
        *exc = msg ? broken(st, msg, cause) : NULL;
        Py_XDECREF(msg);
        Py_DECREF(cause);
        return *exc ? 0 : -1;
    }
    default:
        Py_DECREF(v);
        PyErr_SetString(PyExc_ValueError, "bad result tag from a worker");
        return -1;
    }
}

void cfpy_remote_decode(cfpy_state *st, cfpy_future *f)
{
    if ((f->flags & (CFPY_REMOTE | CFPY_DECODED)) != CFPY_REMOTE ||
        cf__future_state(f->cf) != CF__FINISHED)
        return;
    if (f->result || f->exception) { /* set by hand (set_result) */
        f->flags |= CFPY_DECODED;
        return;
    }
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb); /* a caller's pending exception */
    PyObject *result = NULL, *exc = NULL;
    if (cf__future_code(f->cf) != 0) {
        exc = core_failure(st, f);
    } else {
        const cf_bytes *b = cf__future_result(f->cf);
        if (!b)
            result = Py_NewRef(Py_None); /* finished by hand in the core */
        else if (decode(st, b, &result, &exc) < 0)
            exc = broken_from_current(
                st, "A result has failed to un-serialize. Please ensure "
                    "that the objects returned by functions are always "
                    "picklable.");
    }
    if (!result && !exc) /* no memory even for the error */
        exc = Py_NewRef(PyExc_MemoryError);
    PyErr_Clear();
    /* Unpickling runs Python code: another thread may have decoded it
     * meanwhile. The first outcome stays. */
    if (!(f->flags & CFPY_DECODED) && !f->result && !f->exception) {
        f->result = result;
        f->exception = exc;
        f->flags |= CFPY_DECODED;
        Py_CLEAR(f->fn);
    } else {
        Py_XDECREF(result);
        Py_XDECREF(exc);
    }
    PyErr_Restore(type, value, tb);
}

/* ------------------------------------------------------------------------ */
/* The worker: running a call                                               */

/* A worker process serves one pool, on one thread: its state is the
 * process's. */
static struct {
    PyThreadState *tstate; /* saved while the loop waits; NULL: not serving */
    PyObject *loads, *dumps;
    PyObject *pack_exception; /* process._pack_exception(exc, unpickling) */
    PyObject *init;           /* worker-side initializer, or NULL */
} ws;

/* A cf_bytes of `tag` and the bytes object `data` (stolen). NULL when out
 * of memory. */
static cf_bytes *tagged(char tag, PyObject *data)
{
    cf_bytes *out = NULL;
    if (data && PyBytes_Check(data)) {
        size_t n = (size_t)PyBytes_GET_SIZE(data);
        out = cf_bytes_new(NULL, n + 1);
        if (out) {
            out->data[0] = (unsigned char)tag;
            memcpy(out->data + 1, PyBytes_AS_STRING(data), n);
        }
    }
    Py_XDECREF(data);
    return out;
}

/* Pickles the current exception for the parent (_ExceptionWithTraceback,
 * or the traceback text for a call that could not be unpickled). */
static cf_bytes *pack_current(bool unpickling)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (value && tb)
        PyException_SetTraceback(value, tb);
    PyObject *data = value ? PyObject_CallFunction(ws.pack_exception, "OO",
                                                   value,
                                                   unpickling ? Py_True
                                                              : Py_False)
                           : NULL;
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
    if (!data)
        PyErr_Clear();
    return tagged(unpickling ? 'U' : 'E', data);
}

static cf_bytes *run_call(const cf_bytes *in)
{
    PyObject *view = PyMemoryView_FromMemory((char *)in->data,
                                             (Py_ssize_t)in->len,
                                             PyBUF_READ);
    PyObject *call = view ? PyObject_CallOneArg(ws.loads, view) : NULL;
    Py_XDECREF(view);
    if (call && (!PyTuple_Check(call) || PyTuple_GET_SIZE(call) != 3 ||
                 !PyTuple_Check(PyTuple_GET_ITEM(call, 1)))) {
        Py_CLEAR(call);
        PyErr_SetString(PyExc_TypeError, "not a cfutures call");
    }
    if (!call)
        return pack_current(true);
    PyObject *kwargs = PyTuple_GET_ITEM(call, 2);
    PyObject *r = PyObject_Call(PyTuple_GET_ITEM(call, 0),
                                PyTuple_GET_ITEM(call, 1),
                                kwargs == Py_None ? NULL : kwargs);
    Py_DECREF(call); /* fn and its arguments go as soon as the call ends */
    if (!r)
        return pack_current(false);
    PyObject *data = PyObject_CallOneArg(ws.dumps, r);
    Py_DECREF(r);
    if (!data)
        return pack_current(false);
    return tagged('R', data);
}

void *cfpy_remote_call(void *arg, cf_call *call)
{
    const cf_bytes *in = arg;
    if (!ws.tstate || !in)
        return cf_fail(call, CF_EINVAL, "cfutures.call outside a Python "
                                        "worker");
    PyEval_RestoreThread(ws.tstate);
    cf_bytes *out = run_call(in);
    PyErr_Clear();
    ws.tstate = PyEval_SaveThread();
    if (!out)
        return cf_fail(call, CF_ENOMEM, "no memory for the call's result");
    return out;
}

/* The worker-side initializer: the Python one (process._run_initializer
 * bound to it), which logs a failure and answers False. */
static int worker_init(void *unused)
{
    (void)unused;
    PyEval_RestoreThread(ws.tstate);
    PyObject *r = PyObject_CallNoArgs(ws.init);
    int ok = r ? PyObject_IsTrue(r) : 0;
    Py_XDECREF(r);
    PyErr_Clear();
    ws.tstate = PyEval_SaveThread();
    return ok > 0 ? 0 : 1;
}

static int serving_begin(PyObject *init)
{
    if (ws.tstate || ws.loads) {
        PyErr_SetString(PyExc_RuntimeError,
                        "this process already serves a pool");
        return -1;
    }
    PyObject *pickle = PyImport_ImportModule("pickle");
    PyObject *process = PyImport_ImportModule("cfutures.process");
    if (pickle && process) {
        ws.loads = PyObject_GetAttrString(pickle, "loads");
        ws.dumps = PyObject_GetAttrString(pickle, "dumps");
        ws.pack_exception =
            PyObject_GetAttrString(process, "_pack_exception");
    }
    Py_XDECREF(pickle);
    Py_XDECREF(process);
    ws.init = init == Py_None ? NULL : Py_NewRef(init);
    if (!ws.loads || !ws.dumps || !ws.pack_exception) {
        Py_CLEAR(ws.loads);
        Py_CLEAR(ws.dumps);
        Py_CLEAR(ws.pack_exception);
        Py_CLEAR(ws.init);
        return -1;
    }
    return 0;
}

static PyObject *serving_end(int rc, int status)
{
    Py_CLEAR(ws.loads);
    Py_CLEAR(ws.dumps);
    Py_CLEAR(ws.pack_exception);
    Py_CLEAR(ws.init);
    if (rc != CF_OK) {
        PyErr_Format(PyExc_RuntimeError, "cfutures worker: %s",
                     cf_strerror(rc));
        return NULL;
    }
    return PyLong_FromLong(status);
}

/* _serve(read_fd, write_fd, shm_fd, slot, init): a worker started through
 * an mp context serves its pool; returns the exit status. */
PyObject *cfpy_remote_serve(PyObject *module, PyObject *const *args,
                            Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError,
                        "_serve(read_fd, write_fd, shm_fd, slot, init)");
        return NULL;
    }
    int v[4];
    for (int i = 0; i < 4; i++) {
        long n = PyLong_AsLong(args[i]);
        if (n == -1 && PyErr_Occurred())
            return NULL;
        if (n < -1 || n > INT_MAX) {
            PyErr_SetString(PyExc_ValueError, "bad worker channel");
            return NULL;
        }
        v[i] = (int)n;
    }
    if (serving_begin(args[4]) < 0)
        return NULL;
    cf_worker_channel ch = {v[0], v[1], v[2], v[3]};
    cf_worker_options opts = {ws.init ? worker_init : NULL, NULL};
    int status = 0;
    ws.tstate = PyEval_SaveThread();
    int rc = cf_process_worker_serve(&ch, &opts, &status);
    PyEval_RestoreThread(ws.tstate);
    ws.tstate = NULL;
    return serving_end(rc, status);
}

/* _worker_main(init): the cfutures-native worker program serves its pool
 * (the channel comes in the environment); returns the exit status. */
PyObject *cfpy_remote_worker_main(PyObject *module, PyObject *const *args,
                                  Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 1) {
        PyErr_SetString(PyExc_TypeError, "_worker_main(init)");
        return NULL;
    }
    if (serving_begin(args[0]) < 0)
        return NULL;
    cf_worker_options opts = {ws.init ? worker_init : NULL, NULL};
    int status = 0;
    ws.tstate = PyEval_SaveThread();
    int rc = cf_process_worker_main(&opts, &status);
    PyEval_RestoreThread(ws.tstate);
    ws.tstate = NULL;
    return serving_end(rc, status);
}
