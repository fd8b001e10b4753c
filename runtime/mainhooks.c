/* The main interpreter's part in the boot of an app interpreter.
 *
 * CPython runs the init function of each extension module an app imports in
 * the main interpreter first (pyadapters/main.py says why that matters). The
 * booting app and the main interpreter share two things for it, kept here as
 * C strings since no Python object may cross interpreters: the app's sys.path,
 * which the main interpreter's BootPathFinder searches, and the error an init
 * function raised there, which CPython reports only to the main interpreter.
 * Both are kept per booting thread: each app boots on a thread of its own
 * (subinterp.c, vv_interp_boot), and the init functions its imports run in
 * the main interpreter run on that same thread, so the thread tells which
 * app they are for when boots overlap (a recycle beside a reload). */
#include "vivarium.h"

#include <stdlib.h>
#include <string.h>

/* One booting thread's share; tid 0 is a free slot. */
typedef struct {
    unsigned long tid;
    char *path;                /* entries, each ending in '\0' */
    size_t path_len;
    char *init_failure;        /* NULL: none */
} boot_share;

#define SHARE_SLOTS 32
static pthread_mutex_t share_lock = PTHREAD_MUTEX_INITIALIZER;
static boot_share shares[SHARE_SLOTS];

/* vivarium_main, in the main interpreter; touched with the main GIL held. */
static PyObject *main_hooks;

/* This thread's share, made when make is set; share_lock held. */
static boot_share *share_of_thread(int make)
{
    unsigned long tid = PyThread_get_thread_ident();
    boot_share *free_slot = NULL;
    for (int i = 0; i < SHARE_SLOTS; i++) {
        if (shares[i].tid == tid)
            return &shares[i];
        if (shares[i].tid == 0 && free_slot == NULL)
            free_slot = &shares[i];
    }
    if (make && free_slot != NULL)
        free_slot->tid = tid;
    return make ? free_slot : NULL;
}

/* What the calling thread's boot shared goes. */
void vv_boot_share_clear(void)
{
    pthread_mutex_lock(&share_lock);
    boot_share *sh = share_of_thread(0);
    if (sh != NULL) {
        free(sh->path);
        free(sh->init_failure);
        memset(sh, 0, sizeof *sh);
    }
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
    boot_share *sh = share_of_thread(1);
    if (sh != NULL) {
        free(sh->path);
        sh->path = buf;
        sh->path_len = (size_t)(p - buf);
    } else {
        free(buf); /* more boots at once than slots: this one shares nothing */
    }
    pthread_mutex_unlock(&share_lock);
    Py_RETURN_NONE;
}

/* shared_path() -> list[str] | None: the sys.path of the app this thread
 * boots, or None when it boots none. */
static PyObject *get_shared_path(PyObject *mod, PyObject *unused)
{
    pthread_mutex_lock(&share_lock);
    PyObject *out = NULL;
    boot_share *sh = share_of_thread(0);
    if (sh == NULL || sh->path == NULL) {
        out = Py_NewRef(Py_None);
        goto done;
    }
    out = PyList_New(0);
    for (size_t at = 0; out != NULL && at < sh->path_len;) {
        size_t slen = strlen(sh->path + at);
        PyObject *s = PyUnicode_DecodeUTF8(sh->path + at, (Py_ssize_t)slen, "surrogateescape");
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
    boot_share *sh = share_of_thread(0);
    if (sh != NULL) {
        free(sh->init_failure);
        sh->init_failure = copy;
    } else {
        free(copy);
    }
    pthread_mutex_unlock(&share_lock);
    Py_RETURN_NONE;
}

/* init_failure() -> str | None: the last error noted during this thread's boot. */
static PyObject *get_init_failure(PyObject *mod, PyObject *unused)
{
    pthread_mutex_lock(&share_lock);
    boot_share *sh = share_of_thread(0);
    const char *text = sh ? sh->init_failure : NULL;
    PyObject *out = text ? PyUnicode_DecodeUTF8(text, (Py_ssize_t)strlen(text), "replace") : Py_NewRef(Py_None);
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

/* After each boot, on its thread, with the main interpreter attached. */
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
