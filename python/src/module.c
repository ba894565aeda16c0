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
    if (cfpy_pools_exit(cfpy_state_of_module(module)) < 0)
        return NULL;
    Py_RETURN_NONE;
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
        cfpy_wait_types_init(module, st) < 0 ||
        cfpy_map_type_init(module, st) < 0 ||
        cfpy_threads_type_init(module, st) < 0)
        return -1;
    return PyModule_AddStringConstant(module, "core_version", cf_version());
}

#define STATE_OBJECTS(X)                                                      \
    X(FutureBase) X(Future) X(ThreadPoolBase) X(AsCompleted) X(MapIterator)  \
    X(Bridge) X(WorkerThread) X(stdlib_Future) X(CancelledError) X(TimeoutError)             \
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
