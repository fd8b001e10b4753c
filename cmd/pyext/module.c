/* vivarium._caddy: the entry into Caddy from the python process that hosts it.
 *
 * main(argv) hands the command line to Caddy and never returns. It releases
 * the GIL for good: Vivarium's control thread then takes the main interpreter
 * (runtime/subinterp.c), as Py_Initialize gives it to that thread in bin/caddy. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <signal.h>
#include <stdlib.h>

#include "_cgo_export.h"

static int started;

/* main(argv: list[str]) -> NoReturn */
static PyObject *caddy_main(PyObject *mod, PyObject *arg)
{
    if (!PyList_Check(arg) || PyList_GET_SIZE(arg) < 1) {
        PyErr_SetString(PyExc_TypeError, "main() takes the command line as a non-empty list of str");
        return NULL;
    }
    if (started) {
        PyErr_SetString(PyExc_RuntimeError, "Caddy runs once per process");
        return NULL;
    }
    Py_ssize_t argc = PyList_GET_SIZE(arg);
    PyObject *encoded = PyList_New(argc);
    char **argv = calloc((size_t)argc + 1, sizeof *argv);
    if (encoded == NULL || argv == NULL) {
        Py_XDECREF(encoded);
        free(argv);
        return PyErr_NoMemory();
    }
    for (Py_ssize_t i = 0; i < argc; i++) {
        PyObject *b = PyUnicode_EncodeFSDefault(PyList_GET_ITEM(arg, i));
        if (b == NULL) {
            Py_DECREF(encoded);
            free(argv);
            return NULL;
        }
        PyList_SET_ITEM(encoded, i, b);
        argv[i] = PyBytes_AS_STRING(b);
    }
    started = 1;
    /* Caddy owns the signals, as in bin/caddy: Python's SIGINT handler only
     * flags the interrupt for a main thread that never runs Python again.
     * Caddy's commands that trap SIGINT take it from Go; the others end on it. */
    signal(SIGINT, SIG_DFL);
    PyEval_SaveThread();
    vvCaddyMain((int)argc, argv);
    /* vvCaddyMain ends the process. */
    abort();
}

static PyMethodDef caddy_methods[] = {
    {"main", caddy_main, METH_O, "main(argv): run the caddy command line argv; never returns."},
    {NULL, NULL, 0, NULL},
};

static PyModuleDef_Slot caddy_slots[] = {
    /* Caddy and Go's runtime exist once per process, so does this module. */
    {Py_mod_multiple_interpreters, Py_MOD_MULTIPLE_INTERPRETERS_NOT_SUPPORTED},
    {0, NULL},
};

static struct PyModuleDef caddy_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "vivarium._caddy",
    .m_doc = "Caddy with its standard modules and Vivarium, hosted by this python process.",
    .m_size = 0,
    .m_methods = caddy_methods,
    .m_slots = caddy_slots,
};

PyMODINIT_FUNC PyInit__caddy(void)
{
    return PyModuleDef_Init(&caddy_def);
}
