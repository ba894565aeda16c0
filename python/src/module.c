/* module.c - cfutures._cfutures: module state and multi-phase init.
 *
 * Design: everything the extension needs from the stdlib (exception
 * classes, the `concurrent.futures` logger, threading's Condition, the
 * state strings) is looked up once per module object, in its exec slot,
 * and kept in the module state, so that several interpreters each have
 * their own. Types are heap types made from specs. _python_exit() is what
 * the package registers with threading._register_atexit, as the stdlib's
 * thread.py does: at interpreter exit queued work finishes and worker
 * threads end before the interpreter is torn down.
 */
#include "cfpy.h"

cfpy_state *cfpy_state_of_type(PyTypeObject *type)
{
    PyObject *module = PyType_GetModuleByDef(type, &cfpy_module_def);
    return module ? cfpy_state_of_module(module) : NULL;
}

static PyObject *python_exit(PyObject *module, PyObject *unused)
{
    cfpy_state *st = cfpy_state_of_module(module);
    if (cfpy_pools_exit(st) < 0 || cfpy_ppools_exit(st) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *module_map(PyObject *module, PyObject *const *args,
                            Py_ssize_t nargs, PyObject *kwnames)
{
    if (nargs < 1) {
        PyErr_SetString(PyExc_TypeError, "_map(executor, fn, *iterables)");
        return NULL;
    }
    return cfpy_map_new(cfpy_state_of_module(module), args[0], args + 1,
                        nargs - 1, kwnames);
}

static PyMethodDef module_methods[] = {
    {"wait", (PyCFunction)(void (*)(void))cfpy_wait,
     METH_FASTCALL | METH_KEYWORDS,
     PyDoc_STR("wait(fs, timeout=None, return_when=ALL_COMPLETED)\n--\n\n"
               "Wait for the futures in the given sequence to complete.")},
    {"as_completed", (PyCFunction)(void (*)(void))cfpy_as_completed,
     METH_FASTCALL | METH_KEYWORDS,
     PyDoc_STR("as_completed(fs, timeout=None)\n--\n\n"
               "An iterator over the given futures that yields each as it "
               "completes.")},
    {"_serve", (PyCFunction)(void (*)(void))cfpy_remote_serve, METH_FASTCALL,
     PyDoc_STR("_serve(read_fd, write_fd, shm_fd, slot, init)\n--\n\n"
               "Serves a process pool as a worker started through an mp "
               "context; returns the exit status.")},
    {"_worker_main", (PyCFunction)(void (*)(void))cfpy_remote_worker_main,
     METH_FASTCALL,
     PyDoc_STR("_worker_main(init)\n--\n\nServes a process pool as the "
               "cfutures-native worker program; returns the exit status.")},
    {"_map", (PyCFunction)(void (*)(void))module_map,
     METH_FASTCALL | METH_KEYWORDS,
     PyDoc_STR("_map(executor, fn, *iterables, timeout=None, "
               "buffersize=None)\n--\n\nExecutor.map through "
               "executor.submit.")},
    {"_python_exit", python_exit, METH_NOARGS,
     PyDoc_STR("Finishes queued work and ends every worker thread "
               "(registered with threading._register_atexit).")},
    {NULL, NULL, 0, NULL},
};

static PyObject *import_attr(const char *module, const char *name)
{
    PyObject *m = PyImport_ImportModule(module);
    if (!m)
        return NULL;
    PyObject *attr = PyObject_GetAttrString(m, name);
    Py_DECREF(m);
    return attr;
}

static int load_stdlib(cfpy_state *st)
{
    static const struct {
        size_t offset;
        const char *module, *name;
    } table[] = {
#define S(field) offsetof(cfpy_state, field)
        {S(stdlib_Future), "concurrent.futures._base", "Future"},
        {S(CancelledError), "concurrent.futures._base", "CancelledError"},
        {S(TimeoutError), "concurrent.futures._base", "TimeoutError"},
        {S(InvalidStateError), "concurrent.futures._base",
         "InvalidStateError"},
        {S(BrokenThreadPool), "concurrent.futures.thread",
         "BrokenThreadPool"},
        {S(BrokenProcessPool), "concurrent.futures.process",
         "BrokenProcessPool"},
        {S(RemoteTraceback), "concurrent.futures.process",
         "_RemoteTraceback"},
        {S(pickle_dumps), "pickle", "dumps"},
        {S(pickle_loads), "pickle", "loads"},
        {S(logger), "concurrent.futures._base", "LOGGER"},
        {S(DoneAndNotDone), "concurrent.futures._base",
         "DoneAndNotDoneFutures"},
        {S(PENDING), "concurrent.futures._base", "PENDING"},
        {S(RUNNING), "concurrent.futures._base", "RUNNING"},
        {S(CANCELLED), "concurrent.futures._base", "CANCELLED"},
        {S(CANCELLED_AND_NOTIFIED), "concurrent.futures._base",
         "CANCELLED_AND_NOTIFIED"},
        {S(FINISHED), "concurrent.futures._base", "FINISHED"},
        {S(FIRST_COMPLETED), "concurrent.futures._base", "FIRST_COMPLETED"},
        {S(FIRST_EXCEPTION), "concurrent.futures._base", "FIRST_EXCEPTION"},
        {S(ALL_COMPLETED), "concurrent.futures._base", "ALL_COMPLETED"},
        {S(Condition), "threading", "Condition"},
        {S(current_thread), "threading", "current_thread"},
        {S(threading_active), "threading", "_active"},
#undef S
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        PyObject *v = import_attr(table[i].module, table[i].name);
        if (!v)
            return -1;
        *(PyObject **)((char *)st + table[i].offset) = v;
    }
    st->empty_tuple = PyTuple_New(0);
    return st->empty_tuple ? 0 : -1;
}

static int module_exec(PyObject *module)
{
    cfpy_state *st = cfpy_state_of_module(module);
    if (load_stdlib(st) < 0 || cfpy_future_types_init(module, st) < 0 ||
        cfpy_pool_type_init(module, st) < 0 ||
        cfpy_bridge_type_init(module, st) < 0 ||
        cfpy_as_completed_type_init(module, st) < 0 ||
        cfpy_map_type_init(module, st) < 0 ||
        cfpy_threads_type_init(module, st) < 0 ||
        cfpy_procpool_type_init(module, st) < 0)
        return -1;
    return PyModule_AddStringConstant(module, "core_version", cf_version());
}

#define STATE_OBJECTS(X)                                                      \
    X(FutureBase) X(Future) X(ThreadPoolBase) X(AsCompleted) X(MapIterator)  \
    X(Bridge) X(WorkerThread) X(ProcessPoolBase) X(BrokenProcessPool)       \
    X(RemoteTraceback) X(pickle_dumps) X(pickle_loads) X(stdlib_Future) X(CancelledError) X(TimeoutError)             \
    X(InvalidStateError) X(BrokenThreadPool) X(logger) X(Condition)          \
    X(current_thread) X(threading_active) X(DoneAndNotDone) X(empty_tuple)   \
    X(PENDING) X(RUNNING) X(CANCELLED) X(CANCELLED_AND_NOTIFIED)             \
    X(FINISHED) X(FIRST_COMPLETED) X(FIRST_EXCEPTION) X(ALL_COMPLETED)

static int module_traverse(PyObject *module, visitproc visit, void *arg)
{
    cfpy_state *st = cfpy_state_of_module(module);
#define VISIT(field) Py_VISIT(st->field);
    STATE_OBJECTS(VISIT)
#undef VISIT
    return 0;
}

static int module_clear(PyObject *module)
{
    cfpy_state *st = cfpy_state_of_module(module);
#define CLEAR(field) Py_CLEAR(st->field);
    STATE_OBJECTS(CLEAR)
#undef CLEAR
    return 0;
}

static void module_free(void *module)
{
    module_clear(module);
}

static PyModuleDef_Slot module_slots[] = {
    {Py_mod_exec, module_exec},
    {0, NULL},
};

PyModuleDef cfpy_module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "cfutures._cfutures",
    .m_doc = "The C part of cfutures: concurrent.futures on the cfutures "
             "C core.",
    .m_size = sizeof(cfpy_state),
    .m_methods = module_methods,
    .m_slots = module_slots,
    .m_traverse = module_traverse,
    .m_clear = module_clear,
    .m_free = module_free,
};

PyMODINIT_FUNC PyInit__cfutures(void)
{
    return PyModuleDef_Init(&cfpy_module_def);
}
