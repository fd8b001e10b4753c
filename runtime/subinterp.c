/* CPython start-up and the life of one app interpreter.
 *
 * Every function here runs on Go's single control thread (plugin/control.go),
 * which owns the main interpreter's thread state: interpreters are created and
 * ended one at a time, from one OS thread, as the measured recipe requires. */
#include "vivarium.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The main interpreter's thread state. It hosts no app; it is only the parent
 * every app interpreter is created from. Never touched by Python code. */
static PyThreadState *main_ts;

static char *vv_strdupf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = malloc((size_t)n + 1);
    if (s == NULL)
        return NULL;
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

/* Formats and clears the raised exception (GIL held). The caller frees it. */
char *vv_format_exception(void)
{
    PyObject *exc = PyErr_GetRaisedException();
    if (exc == NULL)
        return vv_strdupf("unknown error");
    char *out = NULL;
    PyObject *tb = PyImport_ImportModule("traceback");
    PyObject *lines = tb ? PyObject_CallMethod(tb, "format_exception", "O", exc) : NULL;
    PyObject *sep = lines ? PyUnicode_FromString("") : NULL;
    PyObject *text = sep ? PyUnicode_Join(sep, lines) : NULL;
    const char *utf8 = text ? PyUnicode_AsUTF8(text) : NULL;
    if (utf8 != NULL) {
        out = vv_strdupf("%s", utf8);
    } else {
        PyErr_Clear();
        PyObject *s = PyObject_Str(exc);
        const char *msg = s ? PyUnicode_AsUTF8(s) : NULL;
        out = vv_strdupf("%s: %s", Py_TYPE(exc)->tp_name, msg ? msg : "?");
        Py_XDECREF(s);
        PyErr_Clear();
    }
    Py_XDECREF(text);
    Py_XDECREF(sep);
    Py_XDECREF(lines);
    Py_XDECREF(tb);
    Py_DECREF(exc);
    return out;
}

/* Logs and clears the raised exception as the app's error (GIL held). */
void vv_log_exception(uint64_t app_id, const char *what)
{
    char *tb = vv_format_exception();
    char *msg = vv_strdupf("%s\n%s", what, tb ? tb : "");
    if (msg != NULL)
        vvLog(app_id, VV_LOG_ERROR, msg, strlen(msg));
    free(msg);
    free(tb);
}

const char *vv_python_version(void)
{
    return Py_GetVersion();
}

/* Attaches a new thread state of the main interpreter of the python process
 * that loaded us as an extension module (the wheel's vivarium._caddy). That
 * process's main thread waits in Caddy with the GIL released; this thread
 * takes the part Py_Initialize gives it in bin/caddy. */
static int adopt_main_interpreter(char **err)
{
    PyThreadState *ts = PyThreadState_New(PyInterpreterState_Main());
    if (ts == NULL) {
        *err = vv_strdupf("cannot create a thread state for the main interpreter");
        return -1;
    }
    PyEval_RestoreThread(ts);
    return 0;
}

static int start_python(char **err)
{
    /* UTF-8 mode, as `python -X utf8` (and 3.15's default): file names and
     * open() use UTF-8 whatever the locale. Caddy never calls setlocale, so
     * the process runs in the C locale, whose encoding is ASCII. */
    PyPreConfig preconfig;
    PyPreConfig_InitIsolatedConfig(&preconfig);
    preconfig.utf8_mode = 1;
    PyStatus status = Py_PreInitialize(&preconfig);
    if (PyStatus_Exception(status))
        goto failed;
    PyConfig config;
    /* Isolated: no PYTHON* variables, no user site, and no site-packages of the
     * process: each app's sys.path is built by the adapter from its own venv.
     * Caddy owns the signals. */
    PyConfig_InitIsolatedConfig(&config);
    config.install_signal_handlers = 0;
    config.site_import = 0;
    config.parse_argv = 0;
    status = Py_InitializeFromConfig(&config);
    PyConfig_Clear(&config);
    if (PyStatus_Exception(status))
        goto failed;
    return 0;
failed:
    *err = vv_strdupf("Python failed to start: %s%s%s", status.func ? status.func : "",
                      status.func ? ": " : "", status.err_msg ? status.err_msg : "");
    return -1;
}

int vv_runtime_init(const char *main_source, char **err)
{
    if ((Py_IsInitialized() ? adopt_main_interpreter(err) : start_python(err)) < 0)
        return -1;
    if (vv_bridge_install() < 0) {
        *err = vv_format_exception();
        return -1;
    }
    /* Ending own-GIL interpreters that imported datetime in any order but reverse
     * creation order aborts the process unless the main interpreter imported it
     * first (glibc's "munmap_chunk(): invalid pointer", seen with 3.13); with
     * it imported here every order was safe. Reloads end interpreters in any
     * order. */
    PyObject *dt = PyImport_ImportModule("datetime");
    if (dt == NULL) {
        *err = vv_format_exception();
        return -1;
    }
    Py_DECREF(dt);
    if (vv_main_hooks_install(main_source, err) < 0)
        return -1;
    vv_crash_init();
    main_ts = PyEval_SaveThread();
    return 0;
}

/* Loads the embedded adapter modules and lets vivarium_boot import the app.
 * Runs inside the new interpreter with its GIL held. vivarium_boot is kept
 * even when the app fails, for its shutdown() to wait for threads the
 * failed import may have started. */
static int boot(vv_interp *in, const vv_app_config *cfg, char **err)
{
    PyObject *mod = NULL, *args = NULL, *res = NULL;
    if (vv_bridge_bind(cfg->app_id) < 0)
        goto pyerr;
    for (int i = 0; i < cfg->nsources; i++) {
        char filename[256];
        snprintf(filename, sizeof filename, "<vivarium>/%s.py", cfg->source_names[i]);
        PyObject *code = Py_CompileString(cfg->sources[i], filename, Py_file_input);
        if (code == NULL)
            goto pyerr;
        PyObject *m = PyImport_ExecCodeModule(cfg->source_names[i], code);
        Py_DECREF(code);
        if (m == NULL)
            goto pyerr;
        Py_DECREF(m);
    }
    mod = PyImport_ImportModule("vivarium_boot");
    if (mod == NULL)
        goto pyerr;
    in->boot_module = Py_NewRef(mod);
    args = Py_BuildValue("{s:s,s:s,s:s,s:s,s:s,s:i}", "kind", cfg->kind, "module", cfg->module,
                         "working_dir", cfg->working_dir, "venv", cfg->venv, "options", cfg->options,
                         "isolation", cfg->isolation);
    if (args == NULL)
        goto pyerr;
    res = PyObject_CallMethod(mod, "boot", "O", args);
    if (res == NULL)
        goto pyerr;
    /* boot() answers (error message or None, handler, base environ). */
    if (!PyTuple_Check(res) || PyTuple_GET_SIZE(res) != 3) {
        *err = vv_strdupf("vivarium_boot.boot returned an unexpected value");
        goto fail;
    }
    PyObject *msg = PyTuple_GET_ITEM(res, 0);
    if (msg != Py_None) {
        const char *s = PyUnicode_AsUTF8(msg);
        *err = vv_strdupf("%s", s ? s : "app failed to start");
        if (cfg->refused != NULL)
            *cfg->refused = PyTuple_GET_ITEM(res, 1) == Py_True;
        goto fail;
    }
    in->handler = Py_NewRef(PyTuple_GET_ITEM(res, 1));
    in->base_environ = Py_NewRef(PyTuple_GET_ITEM(res, 2));
    /* Kept (boot_module): in the main interpreter a later app re-executes
     * vivarium_boot. */
    Py_DECREF(mod);
    Py_DECREF(res);
    Py_DECREF(args);
    return 0;
pyerr:
    *err = vv_format_exception();
fail:
    PyErr_Clear();
    Py_XDECREF(res);
    Py_XDECREF(args);
    Py_XDECREF(mod);
    return -1;
}

/* Attaches the interpreter the isolation mode asks for: a new one, or the main
 * one itself. On failure nothing is attached and *err says why. */
static PyThreadState *enter_interpreter(int isolation, char **err)
{
    PyEval_RestoreThread(main_ts);
    if (isolation == VV_ISOLATION_MAIN)
        return main_ts;
    PyInterpreterConfig icfg = {
        .use_main_obmalloc = 0,
        .allow_fork = 0,
        .allow_exec = 0,
        .allow_threads = 1,
        .allow_daemon_threads = 0,
        .check_multi_interp_extensions = 1,
        .gil = PyInterpreterConfig_OWN_GIL,
    };
    if (isolation == VV_ISOLATION_SHARED) {
        /* A legacy subinterpreter: the main GIL and allocator, so extension
         * modules with single-phase init (PyO3, Cython, most C) may load. */
        icfg.use_main_obmalloc = 1;
        icfg.check_multi_interp_extensions = 0;
        icfg.gil = PyInterpreterConfig_SHARED_GIL;
    }
    PyThreadState *ts = NULL;
    PyStatus status = Py_NewInterpreterFromConfig(&ts, &icfg);
    if (PyStatus_Exception(status)) {
        /* On failure the main thread state is attached again. */
        *err = vv_strdupf("cannot create an interpreter: %s", status.err_msg ? status.err_msg : "?");
        PyEval_SaveThread();
        return NULL;
    }
    return ts;
}

/* What the main interpreter kept for a boot goes (mainhooks.c). */
static void boot_ended(void)
{
    PyThreadState *ts = PyThreadState_New(PyInterpreterState_Main());
    if (ts == NULL)
        return;
    PyEval_RestoreThread(ts);
    vv_main_hooks_boot_ended();
    PyThreadState_Clear(ts);
    PyThreadState_DeleteCurrent();
}

vv_interp *vv_interp_new(const vv_app_config *cfg, int nworkers, char **err)
{
    vv_interp *in = calloc(1, sizeof *in);
    vv_worker *workers = calloc((size_t)nworkers, sizeof *workers);
    vv_key *keys = calloc(VV_KEY_SLOTS, sizeof *keys);
    char *name = vv_strdupf("%s", cfg->name ? cfg->name : "");
    if (in == NULL || workers == NULL || keys == NULL || name == NULL) {
        *err = vv_strdupf("out of memory");
        goto fail;
    }
    in->app_id = cfg->app_id;
    in->isolation = cfg->isolation;
    in->event_loop = strcmp(cfg->kind, "asgi") == 0;
    in->nworkers = nworkers;
    in->workers = workers;
    in->keys = keys;
    in->name = name;

    PyThreadState *ts = enter_interpreter(cfg->isolation, err);
    if (ts == NULL)
        goto fail;
    in->boot_ts = ts;
    in->state = PyThreadState_GetInterpreter(ts);
    in->interp_id = PyInterpreterState_GetID(in->state);
    PyEval_SaveThread();
    for (int i = 0; i < nworkers; i++) {
        sem_init(&workers[i].wake, 0, 0);
        workers[i].statfd = -1;
        workers[i].taskfd = -1;
        workers[i].loadfd = -1;
        /* An event loop counts as asleep until it first spins: Go's first
         * post must write its eventfd. */
        workers[i].wake_state = in->event_loop ? VV_WAKE_SLEEPING : VV_WAKE_NONE;
    }
    vv_crash_register(in);
    return in;
fail:
    free(name);
    free(keys);
    free(workers);
    free(in);
    return NULL;
}

/* Imports the app into the interpreter vv_interp_new made. Not on the
 * control thread, but on a thread of its own with a thread state of its own:
 * an import that hangs then holds up no other app, and can be interrupted
 * (interrupt.c) while the control thread goes on. On failure the
 * interpreter stays, for vv_interp_end. */
int vv_interp_boot(vv_interp *in, const vv_app_config *cfg, char **err)
{
    PyThreadState *ts = PyThreadState_New(in->state);
    if (ts == NULL) {
        *err = vv_strdupf("cannot create a thread state for the app's import");
        return -1;
    }
    PyEval_RestoreThread(ts);
    in->boot_tid = PyThread_get_thread_ident();
    in->boot_thread_ts = ts;
    vv_crash_thread(in, NULL);
    int rc = boot(in, cfg, err);
    vv_crash_thread(NULL, NULL);
    in->boot_thread_ts = NULL;
    PyThreadState_Clear(ts);
    PyThreadState_DeleteCurrent();
    boot_ended();
    return rc;
}

int vv_interp_start(vv_interp *in, const int *worker_ids, char **err)
{
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    /* Deep recursion in apps (templates, ORMs) wants the usual main-thread stack. */
    pthread_attr_setstacksize(&attr, 8u << 20);
    for (int i = 0; i < in->nworkers; i++) {
        vv_worker *w = &in->workers[i];
        w->id = worker_ids[i];
        w->interp = in;
        int rc = pthread_create(&w->thread, &attr, in->event_loop ? vv_loop_main : vv_worker_main, w);
        if (rc != 0) {
            *err = vv_strdupf("cannot start worker thread: %s", strerror(rc));
            pthread_attr_destroy(&attr);
            return -1;
        }
        w->started = 1;
    }
    pthread_attr_destroy(&attr);
    return 0;
}

void vv_interp_join(vv_interp *in)
{
    for (int i = 0; i < in->nworkers; i++) {
        vv_worker *w = &in->workers[i];
        if (w->started) {
            pthread_join(w->thread, NULL);
            w->started = 0;
        }
    }
}

/* The report a "check" or "probe" boot left in place of a handler (see
 * vivarium_boot.check); the caller frees it. */
char *vv_interp_report(vv_interp *in)
{
    PyEval_RestoreThread(in->boot_ts);
    const char *s = PyUnicode_Check(in->handler) ? PyUnicode_AsUTF8(in->handler) : NULL;
    char *out = vv_strdupf("%s", s ? s : "{}");
    PyErr_Clear();
    PyEval_SaveThread();
    return out;
}

void vv_interp_end(vv_interp *in)
{
    PyEval_RestoreThread(in->boot_ts);
    /* Without vivarium_boot (its own import failed) no app code ran. */
    PyObject *r = in->boot_module ? PyObject_CallMethod(in->boot_module, "shutdown", NULL) : Py_NewRef(Py_True);
    if (r == NULL)
        vv_log_exception(in->app_id, "app shutdown failed");
    /* shutdown() answers False when threads of the app would make
     * Py_EndInterpreter wait forever on this, the only control thread. */
    int can_end = r != NULL && PyObject_IsTrue(r) == 1;
    Py_XDECREF(r);
    Py_CLEAR(in->boot_module);
    Py_CLEAR(in->handler);
    Py_CLEAR(in->base_environ);
    vv_crash_unregister(in);
    for (int i = 0; i < VV_KEY_SLOTS; i++)
        Py_CLEAR(in->keys[i].str);
    free(in->keys);
    in->keys = NULL;
    if (in->isolation == VV_ISOLATION_MAIN || !can_end)
        PyEval_SaveThread();
    else
        Py_EndInterpreter(in->boot_ts);
    for (int i = 0; i < in->nworkers; i++) {
        free(in->workers[i].buf);
        sem_destroy(&in->workers[i].wake);
        /* Closed only now: the scheduler may sample it until the threads end. */
        if (in->workers[i].statfd >= 0)
            close(in->workers[i].statfd);
        if (in->workers[i].taskfd >= 0)
            close(in->workers[i].taskfd);
        if (in->workers[i].loadfd >= 0)
            close(in->workers[i].loadfd);
    }
    free(in->workers);
    free(in->name);
    free(in);
}
