/* The main interpreter's part in the boot of an app interpreter.
 *
 * CPython runs the init function of each extension module an app imports in
 * the main interpreter first (pyadapters/main.py says why that matters). The
 * booting app and the main interpreter share two things for it, kept here as
 * C strings since no Python object may cross interpreters: the app's sys.path,
 * which the main interpreter's BootPathFinder searches, and the error an init
 * function raised there, which CPython reports only to the main interpreter.
 * Both are set and read on the control thread, by one boot at a time; the lock
 * is for the main interpreter's other threads, whose lookups find nothing. */
#include "vivarium.h"

#include <stdlib.h>
#include <string.h>

static pthread_mutex_t share_lock = PTHREAD_MUTEX_INITIALIZER;
static char *shared_path;    /* entries, each ending in '\0'; NULL: no boot */
static size_t shared_path_len;
static char *init_failure;   /* NULL: none */

/* vivarium_main, in the main interpreter; touched with the main GIL held. */
static PyObject *main_hooks;

void vv_boot_share_clear(void)
{
    pthread_mutex_lock(&share_lock);
    free(shared_path);
    free(init_failure);
    shared_path = init_failure = NULL;
    shared_path_len = 0;
    pthread_mutex_unlock(&share_lock);
}

/* share_path(entries: list[str]): the booting app's sys.path. */
static PyObject *share_path(PyObject *mod, PyObject *list)
{
    if (!PyList_Check(list)) {
        PyErr_SetString(PyExc_TypeError, "share_path wants a list of str");
        return NULL;
    }
    size_t len = 0;
    Py_ssize_t n = PyList_GET_SIZE(list);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *s = PyList_GET_ITEM(list, i);
        Py_ssize_t slen;
        if (PyUnicode_Check(s) && PyUnicode_AsUTF8AndSize(s, &slen) != NULL)
            len += (size_t)slen + 1;
        PyErr_Clear(); /* an entry that is no str cannot be searched: left out */
    }
    char *buf = malloc(len ? len : 1);
    if (buf == NULL)
        return PyErr_NoMemory();
    char *p = buf;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *s = PyList_GET_ITEM(list, i);
        Py_ssize_t slen;
        const char *utf8 = PyUnicode_Check(s) ? PyUnicode_AsUTF8AndSize(s, &slen) : NULL;
        PyErr_Clear();
        if (utf8 != NULL && (size_t)(p - buf) + (size_t)slen + 1 <= len) {
            memcpy(p, utf8, (size_t)slen + 1);
            p += slen + 1;
        }
    }
    pthread_mutex_lock(&share_lock);
    free(shared_path);
    shared_path = buf;
    shared_path_len = (size_t)(p - buf);
    pthread_mutex_unlock(&share_lock);
    Py_RETURN_NONE;
}

/* shared_path() -> list[str] | None: the sys.path of the app that is booting. */
static PyObject *get_shared_path(PyObject *mod, PyObject *unused)
{
    pthread_mutex_lock(&share_lock);
    PyObject *out = NULL;
    if (shared_path == NULL) {
        out = Py_NewRef(Py_None);
        goto done;
    }
    out = PyList_New(0);
    for (size_t at = 0; out != NULL && at < shared_path_len;) {
        size_t slen = strlen(shared_path + at);
        PyObject *s = PyUnicode_DecodeUTF8(shared_path + at, (Py_ssize_t)slen, "surrogateescape");
        if (s == NULL || PyList_Append(out, s) < 0)
            Py_CLEAR(out);
        Py_XDECREF(s);
        at += slen + 1;
    }
done:
    pthread_mutex_unlock(&share_lock);
    return out;
}

/* note_init_failure(text: str): an init function's error, as the main
 * interpreter's sys.unraisablehook got it. */
static PyObject *note_init_failure(PyObject *mod, PyObject *text)
{
    const char *utf8 = PyUnicode_Check(text) ? PyUnicode_AsUTF8(text) : NULL;
    if (utf8 == NULL) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "note_init_failure wants a str");
        return NULL;
    }
    char *copy = strdup(utf8);
    if (copy == NULL)
        return PyErr_NoMemory();
    pthread_mutex_lock(&share_lock);
    free(init_failure);
    init_failure = copy;
    pthread_mutex_unlock(&share_lock);
    Py_RETURN_NONE;
}

/* init_failure() -> str | None: the last error noted during this boot. */
static PyObject *get_init_failure(PyObject *mod, PyObject *unused)
{
    pthread_mutex_lock(&share_lock);
    PyObject *out = init_failure ? PyUnicode_DecodeUTF8(init_failure, (Py_ssize_t)strlen(init_failure), "replace")
                                 : Py_NewRef(Py_None);
    pthread_mutex_unlock(&share_lock);
    return out;
}

PyMethodDef vv_boot_share_methods[] = {
    {"share_path", share_path, METH_O, "share_path(entries): the booting app's sys.path, for the main interpreter."},
    {"shared_path", get_shared_path, METH_NOARGS, "shared_path(): the sys.path of the app that is booting, or None."},
    {"note_init_failure", note_init_failure, METH_O, "note_init_failure(text): an extension's init error."},
    {"init_failure", get_init_failure, METH_NOARGS, "init_failure(): the init error noted during this boot, or None."},
    {NULL, NULL, 0, NULL},
};

/* Runs vivarium_main in the main interpreter (GIL held), which installs the
 * finder and the hook. */
int vv_main_hooks_install(const char *source, char **err)
{
    PyObject *code = Py_CompileString(source, "<vivarium>/vivarium_main.py", Py_file_input);
    PyObject *mod = code ? PyImport_ExecCodeModule("vivarium_main", code) : NULL;
    Py_XDECREF(code);
    if (mod == NULL) {
        *err = vv_format_exception();
        return -1;
    }
    main_hooks = mod;
    return 0;
}

/* After each boot, with the main interpreter attached. */
void vv_main_hooks_boot_ended(void)
{
    vv_boot_share_clear();
    if (main_hooks == NULL)
        return;
    PyObject *r = PyObject_CallMethod(main_hooks, "boot_ended", NULL);
    if (r == NULL)
        PyErr_Print(); /* a bug of ours, with no app to blame: to stderr */
    Py_XDECREF(r);
}
