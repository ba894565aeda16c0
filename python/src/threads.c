/* threads.c - executor._threads: a view of a pool's worker threads.
 *
 * Design: each worker thread has a small record, shared by the thread and
 * every handle object made for it and freed by the last of them (an atomic
 * count): the thread marks it ended (and wakes joiners) as the very last
 * thing it does with Python, so a handle outlives its pool safely. The
 * handles are what the stdlib's executor._threads holds (threading.Thread
 * objects): name, ident, native_id, is_alive() and join(timeout), with
 * join() waiting the GIL released and interruptible, as Thread.join().
 */
#include "cfpy.h"

#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

struct cfpy_thread_rec {
    atomic_uint refs;
    atomic_bool ended;
    cf__event ended_ev;
    unsigned long ident;     /* PyThread_get_thread_ident() of the thread */
    unsigned long native_id;
    int index;
};

cfpy_thread_rec *cfpy_thread_rec_new(int index)
{
    cfpy_thread_rec *r = malloc(sizeof *r);
    if (!r)
        return NULL;
    atomic_init(&r->refs, 2); /* the thread's and the pool's */
    atomic_init(&r->ended, false);
    cf__event_init(&r->ended_ev);
    r->ident = PyThread_get_thread_ident();
    r->native_id = (unsigned long)syscall(SYS_gettid);
    r->index = index;
    return r;
}

void cfpy_thread_rec_release(cfpy_thread_rec *r)
{
    if (r && atomic_fetch_sub(&r->refs, 1) == 1) {
        cf__event_destroy(&r->ended_ev);
        free(r);
    }
}

void cfpy_thread_rec_end(cfpy_thread_rec *r)
{
    atomic_store(&r->ended, true);
    cf__event_signal_all(&r->ended_ev);
    cfpy_thread_rec_release(r);
}

/* ------------------------------------------------------------------------ */
/* Handles                                                                  */

typedef struct handle {
    PyObject_HEAD
    cfpy_thread_rec *rec;
    PyObject *name;
} handle;

static bool ended(void *rec)
{
    return atomic_load(&((cfpy_thread_rec *)rec)->ended);
}

static PyObject *handle_join(handle *h, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"timeout", NULL};
    PyObject *timeout = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|O:join", kwlist,
                                     &timeout))
        return NULL;
    if (h->rec->ident == PyThread_get_thread_ident()) {
        PyErr_SetString(PyExc_RuntimeError, "cannot join current thread");
        return NULL;
    }
    int64_t deadline;
    if (cfpy_deadline(timeout, &deadline) < 0 ||
        cfpy_wait_event(&h->rec->ended_ev, ended, h->rec, deadline) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *handle_is_alive(handle *h, PyObject *unused)
{
    return PyBool_FromLong(!atomic_load(&h->rec->ended));
}

static PyObject *handle_repr(handle *h)
{
    return PyUnicode_FromFormat("<cfutures worker thread(%U, %s %lu)>",
                                h->name,
                                atomic_load(&h->rec->ended) ? "stopped"
                                                            : "started",
                                h->rec->ident);
}

static PyObject *get_ident(handle *h, void *closure)
{
    return PyLong_FromUnsignedLong(h->rec->ident);
}

static PyObject *get_native_id(handle *h, void *closure)
{
    return PyLong_FromUnsignedLong(h->rec->native_id);
}

static PyObject *get_daemon(handle *h, void *closure)
{
    Py_RETURN_FALSE;
}

static void handle_dealloc(handle *h)
{
    PyTypeObject *tp = Py_TYPE(h);
    cfpy_thread_rec_release(h->rec);
    Py_XDECREF(h->name);
    tp->tp_free((PyObject *)h);
    Py_DECREF(tp);
}

static PyMethodDef handle_methods[] = {
    {"join", (PyCFunction)(void (*)(void))handle_join,
     METH_VARARGS | METH_KEYWORDS,
     PyDoc_STR("join(timeout=None)\n--\n\nWait until the thread ends.")},
    {"is_alive", (PyCFunction)handle_is_alive, METH_NOARGS,
     PyDoc_STR("Return whether the thread is alive.")},
    {NULL, NULL, 0, NULL},
};

static PyObject *get_name(handle *h, void *closure)
{
    return Py_NewRef(h->name);
}

static PyGetSetDef handle_getset[] = {
    {"name", (getter)get_name, NULL, NULL, NULL},
    {"ident", (getter)get_ident, NULL, NULL, NULL},
    {"native_id", (getter)get_native_id, NULL, NULL, NULL},
    {"daemon", (getter)get_daemon, NULL, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot handle_slots[] = {
    {Py_tp_dealloc, handle_dealloc},
    {Py_tp_repr, handle_repr},
    {Py_tp_methods, handle_methods},
    {Py_tp_getset, handle_getset},
    {Py_tp_doc, PyDoc_STR("A worker thread of a cfutures pool, as "
                          "executor._threads lists it.")},
    {0, NULL},
};

static PyType_Spec handle_spec = {
    .name = "cfutures._cfutures.WorkerThread",
    .basicsize = sizeof(handle),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE |
             Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = handle_slots,
};

PyObject *cfpy_pool_threads(cfpy_pool *pool)
{
    PyObject *set = PySet_New(NULL);
    int n = atomic_load(&pool->n_threads);
    for (int i = 0; set && i < n; i++) {
        cfpy_thread_rec *r = atomic_load(&pool->recs[i]);
        if (!r)
            continue; /* starting: its record is not published yet */
        handle *h = PyObject_New(handle, pool->st->WorkerThread);
        if (!h) {
            Py_CLEAR(set);
            break;
        }
        atomic_fetch_add(&r->refs, 1);
        h->rec = r;
        h->name = PyUnicode_FromFormat("%U_%d", pool->prefix, r->index);
        if (!h->name || PySet_Add(set, (PyObject *)h) < 0)
            Py_CLEAR(set);
        Py_DECREF(h);
    }
    return set;
}

int cfpy_threads_type_init(PyObject *module, cfpy_state *st)
{
    st->WorkerThread = (PyTypeObject *)PyType_FromModuleAndSpec(
        module, &handle_spec, NULL);
    return st->WorkerThread ? 0 : -1;
}
