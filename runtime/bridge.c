/* `_vivarium`: the few calls the Python adapters make into the server.
 *
 * Multi-phase init with per-module state and no static types, so every app
 * interpreter gets its own instance and may run under its own GIL. Each call
 * that can block on the network releases the GIL first. */
#include "vivarium.h"

typedef struct {
    uint64_t app_id;
    /* Raised in an app's thread by interrupt.c: BaseException subclasses,
     * so that an app's `except Exception` does not swallow them. */
    PyObject *request_timeout, *start_timeout;
} bridge_state;

static PyObject *disconnected(void)
{
    PyErr_SetString(PyExc_ConnectionError, "client disconnected");
    return NULL;
}

/* A failed read of the request body: the client gone, or a body that is not
 * valid HTTP, which Go answers with 400 once the app has given up. */
static PyObject *unreadable(ptrdiff_t n)
{
    if (n == VV_READ_MALFORMED) {
        PyErr_SetString(PyExc_ConnectionError, "the request body is malformed");
        return NULL;
    }
    return disconnected();
}

static int check_nargs(const char *name, Py_ssize_t nargs, Py_ssize_t want)
{
    if (nargs == want)
        return 0;
    PyErr_Format(PyExc_TypeError, "%s() takes %zd arguments (%zd given)", name, want, nargs);
    return -1;
}

/* The arguments of a call about one request: want of them, the token first. */
static int token_call(const char *name, PyObject *const *args, Py_ssize_t nargs, Py_ssize_t want, uint64_t *token)
{
    if (check_nargs(name, nargs, want) < 0)
        return -1;
    *token = PyLong_AsUnsignedLongLong(args[0]);
    return (*token == (uint64_t)-1 && PyErr_Occurred()) ? -1 : 0;
}

/* What send() and post() take after their first arguments: a head (bytes or
 * None), a body (any bytes-like object) and flags. On success the body's
 * buffer is held: release it with PyBuffer_Release(&part->body). */
typedef struct bridge_part {
    char *head;
    size_t head_len;
    Py_buffer body;
    int flags;
} bridge_part;

static int parse_part(PyObject *const *args, const char *head_name, bridge_part *part)
{
    if (args[0] != Py_None && !PyBytes_Check(args[0])) {
        PyErr_Format(PyExc_TypeError, "%s must be bytes or None", head_name);
        return -1;
    }
    part->flags = PyLong_AsInt(args[2]);
    if (part->flags == -1 && PyErr_Occurred())
        return -1;
    if (PyObject_GetBuffer(args[1], &part->body, PyBUF_SIMPLE) < 0)
        return -1;
    part->head = args[0] == Py_None ? NULL : PyBytes_AS_STRING(args[0]);
    part->head_len = args[0] == Py_None ? 0 : (size_t)PyBytes_GET_SIZE(args[0]);
    return 0;
}

/* send(token, head: bytes | None, body: bytes-like, flags: int) -> None */
static PyObject *bridge_send(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    uint64_t token;
    bridge_part part;
    if (token_call("send", args, nargs, 4, &token) < 0 || parse_part(args + 1, "head", &part) < 0)
        return NULL;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    VV_IN_GO(rc = vvSend(token, part.head, part.head_len, part.body.buf, (size_t)part.body.len, part.flags));
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&part.body);
    if (rc < 0)
        return disconnected();
    Py_RETURN_NONE;
}

/* read(token, n) -> bytes: at most n bytes, b"" at the end of the body. */
static PyObject *bridge_read(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    uint64_t token;
    if (token_call("read", args, nargs, 2, &token) < 0)
        return NULL;
    Py_ssize_t size = PyLong_AsSsize_t(args[1]);
    if (size == -1 && PyErr_Occurred())
        return NULL;
    if (size < 0) {
        PyErr_SetString(PyExc_ValueError, "size must be >= 0");
        return NULL;
    }
    PyObject *out = PyBytes_FromStringAndSize(NULL, size);
    if (out == NULL)
        return NULL;
    ptrdiff_t n = 0;
    if (size > 0) {
        char *p = PyBytes_AS_STRING(out);
        Py_BEGIN_ALLOW_THREADS
        VV_IN_GO(n = vvRead(token, p, (size_t)size));
        Py_END_ALLOW_THREADS
    }
    if (n < 0) {
        Py_DECREF(out);
        return unreadable(n);
    }
    if (n != size && _PyBytes_Resize(&out, n) < 0)
        return NULL;
    return out;
}

/* log(level: int, message: str) -> None: a line for Caddy's log, tagged with the app. */
static PyObject *bridge_log(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    if (check_nargs("log", nargs, 2) < 0)
        return NULL;
    int level = PyLong_AsInt(args[0]);
    if (level == -1 && PyErr_Occurred())
        return NULL;
    if (!PyUnicode_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "message must be str");
        return NULL;
    }
    Py_ssize_t len;
    const char *msg = PyUnicode_AsUTF8AndSize(args[1], &len);
    if (msg == NULL)
        return NULL;
    bridge_state *st = PyModule_GetState(mod);
    /* msg stays valid: args[1] is borrowed from our caller for the whole call. */
    Py_BEGIN_ALLOW_THREADS
    VV_IN_GO(vvLog(st->app_id, level, (char *)msg, (size_t)len));
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

/* poll(worker_id) -> list of (kind, token, *fields): every event Go queued for
 * this event loop (see plugin/loop.go for the layout). Fields are bytes. */
static PyObject *bridge_poll(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    if (check_nargs("poll", nargs, 1) < 0)
        return NULL;
    int id = PyLong_AsInt(args[0]);
    if (id == -1 && PyErr_Occurred())
        return NULL;
    char *buf = NULL;
    size_t len = 0;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    VV_IN_GO(rc = vvPoll(id, &buf, &len));
    Py_END_ALLOW_THREADS
    if (rc < 0 || len < 4) {
        PyErr_SetString(PyExc_RuntimeError, "vivarium: no event inbox for this worker");
        return NULL;
    }
    const char *p = buf, *end = buf + len;
    uint32_t count = (uint32_t)vv_le(p, 4);
    p += 4;
    PyObject *list = PyList_New(0);
    if (list == NULL)
        return NULL;
    for (uint32_t i = 0; i < count; i++) {
        if (end - p < VV_EVENT_HEAD)
            goto corrupt;
        int kind = (unsigned char)p[0];
        uint64_t token = vv_le(p + 1, 8);
        int nfields = (int)vv_le(p + 9, 2);
        p += VV_EVENT_HEAD;
        PyObject *ev = PyTuple_New(2 + nfields);
        if (ev == NULL)
            goto error;
        PyTuple_SET_ITEM(ev, 0, PyLong_FromLong(kind));
        PyTuple_SET_ITEM(ev, 1, PyLong_FromUnsignedLongLong(token));
        for (int f = 0; f < nfields; f++) {
            if (end - p < 4) {
                Py_DECREF(ev);
                goto corrupt;
            }
            uint32_t flen = (uint32_t)vv_le(p, 4);
            p += 4;
            if ((size_t)(end - p) < flen) {
                Py_DECREF(ev);
                goto corrupt;
            }
            PyTuple_SET_ITEM(ev, 2 + f, PyBytes_FromStringAndSize(p, flen));
            p += flen;
        }
        if (PyErr_Occurred() || PyList_Append(list, ev) < 0) {
            Py_DECREF(ev);
            goto error;
        }
        Py_DECREF(ev);
    }
    return list;
corrupt:
    PyErr_SetString(PyExc_RuntimeError, "vivarium: corrupt event data");
error:
    Py_DECREF(list);
    return NULL;
}

/* post(token, kind, a: bytes | None, b: bytes-like, flags) -> int:
 * 0 go on, 1 wait for the resume event, -1 the client is gone. */
static PyObject *bridge_post(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    uint64_t token;
    if (token_call("post", args, nargs, 5, &token) < 0)
        return NULL;
    int kind = PyLong_AsInt(args[1]);
    bridge_part part;
    if ((kind == -1 && PyErr_Occurred()) || parse_part(args + 2, "a", &part) < 0)
        return NULL;
    /* Go only queues a copy: no need to release the GIL for that. */
    int rc;
    VV_IN_GO(rc = vvPost(token, kind, part.head, part.head_len, part.body.buf, (size_t)part.body.len, part.flags));
    PyBuffer_Release(&part.body);
    return PyLong_FromLong(rc);
}

/* ready(worker_id, error: str | None): lifespan startup is over. */
static PyObject *bridge_ready(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    if (check_nargs("ready", nargs, 2) < 0)
        return NULL;
    int id = PyLong_AsInt(args[0]);
    if (id == -1 && PyErr_Occurred())
        return NULL;
    Py_ssize_t len = 0;
    const char *msg = NULL;
    if (args[1] != Py_None) {
        msg = PyUnicode_AsUTF8AndSize(args[1], &len);
        if (msg == NULL)
            return NULL;
    }
    VV_IN_GO(vvReady(id, (char *)msg, (size_t)len));
    Py_RETURN_NONE;
}

/* begin(token, description) / end(token): an event loop's request starts and
 * ends, for the death notice. */
static PyObject *bridge_begin(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    uint64_t token;
    if (token_call("begin", args, nargs, 2, &token) < 0)
        return NULL;
    Py_ssize_t len;
    const char *desc = PyUnicode_Check(args[1]) ? PyUnicode_AsUTF8AndSize(args[1], &len) : NULL;
    if (desc == NULL) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "description must be str");
        return NULL;
    }
    vv_crash_begin(token, desc, (size_t)len);
    Py_RETURN_NONE;
}

static PyObject *bridge_end(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    uint64_t token;
    if (token_call("end", args, nargs, 1, &token) < 0)
        return NULL;
    vv_crash_end(token);
    Py_RETURN_NONE;
}

/* idle(epfd) -> bool: on an event loop's thread, before its selector (epoll
 * instance epfd) would block: spins while that pays, and tells whether Go
 * may have posted events that no eventfd write announces, or one of the
 * selector's descriptors is ready (worker.c: vv_loop_idle). */
static PyObject *bridge_idle(PyObject *Py_UNUSED(mod), PyObject *arg)
{
    int epfd = PyLong_AsInt(arg);
    if (epfd == -1 && PyErr_Occurred())
        return NULL;
    vv_worker *w = vv_thread_worker();
    if (w == NULL || !w->interp->event_loop)
        Py_RETURN_FALSE;
    int posted;
    Py_BEGIN_ALLOW_THREADS
    posted = vv_loop_idle(w, epfd);
    Py_END_ALLOW_THREADS
    return PyBool_FromLong(posted);
}

static PyMethodDef bridge_methods[] = {
    {"idle", bridge_idle, METH_O,
     "idle(epfd): the event loop would sleep; True if events may wait unannounced."},
    {"begin", (PyCFunction)(void (*)(void))bridge_begin, METH_FASTCALL,
     "begin(token, description): an event loop's request starts."},
    {"end", (PyCFunction)(void (*)(void))bridge_end, METH_FASTCALL,
     "end(token): an event loop's request is over."},
    {"poll", (PyCFunction)(void (*)(void))bridge_poll, METH_FASTCALL,
     "poll(worker_id): the events queued for this event loop."},
    {"post", (PyCFunction)(void (*)(void))bridge_post, METH_FASTCALL,
     "post(token, kind, a, b, flags): a message from the app to the client."},
    {"ready", (PyCFunction)(void (*)(void))bridge_ready, METH_FASTCALL,
     "ready(worker_id, error): the app has started, or failed to."},
    {"send", (PyCFunction)(void (*)(void))bridge_send, METH_FASTCALL,
     "send(token, head, body, flags): write part of a response."},
    {"read", (PyCFunction)(void (*)(void))bridge_read, METH_FASTCALL,
     "read(token, n): up to n bytes of the request body."},
    {"log", (PyCFunction)(void (*)(void))bridge_log, METH_FASTCALL,
     "log(kind, message): a line for Caddy's log (STDOUT, STDERR or ERROR)."},
    {NULL, NULL, 0, NULL},
};

/* The codes of vivarium.h the adapters use, under their names without VV_. */
#define BRIDGE_CONSTANT(name) {#name, VV_##name}
static const struct bridge_constant {
    const char *name;
    long value;
} bridge_constants[] = {
    BRIDGE_CONSTANT(FLUSH), BRIDGE_CONSTANT(MORE), BRIDGE_CONSTANT(ABORT), BRIDGE_CONSTANT(TIMED_OUT),
    BRIDGE_CONSTANT(LOST),
    BRIDGE_CONSTANT(LOG_STDOUT), BRIDGE_CONSTANT(LOG_STDERR), BRIDGE_CONSTANT(LOG_ERROR),
    BRIDGE_CONSTANT(ISOLATION_INTERPRETER), BRIDGE_CONSTANT(ISOLATION_SHARED), BRIDGE_CONSTANT(ISOLATION_MAIN),
    BRIDGE_CONSTANT(ISOLATION_PROCESS),
    BRIDGE_CONSTANT(EV_HTTP), BRIDGE_CONSTANT(EV_WEBSOCKET), BRIDGE_CONSTANT(EV_BODY), BRIDGE_CONSTANT(EV_DISCONNECT),
    BRIDGE_CONSTANT(EV_RESUME), BRIDGE_CONSTANT(EV_WS_TEXT), BRIDGE_CONSTANT(EV_WS_BYTES), BRIDGE_CONSTANT(EV_WS_CLOSE),
    BRIDGE_CONSTANT(EV_SHUTDOWN), BRIDGE_CONSTANT(EV_TIMEOUT),
    BRIDGE_CONSTANT(SCOPE_HTTP_VERSION), BRIDGE_CONSTANT(SCOPE_METHOD), BRIDGE_CONSTANT(SCOPE_SCHEME),
    BRIDGE_CONSTANT(SCOPE_PATH), BRIDGE_CONSTANT(SCOPE_RAW_PATH), BRIDGE_CONSTANT(SCOPE_QUERY),
    BRIDGE_CONSTANT(SCOPE_ROOT_PATH), BRIDGE_CONSTANT(SCOPE_HEADERS), BRIDGE_CONSTANT(SCOPE_CLIENT_HOST),
    BRIDGE_CONSTANT(SCOPE_CLIENT_PORT), BRIDGE_CONSTANT(SCOPE_SERVER_HOST), BRIDGE_CONSTANT(SCOPE_SERVER_PORT),
    BRIDGE_CONSTANT(SCOPE_BODY), BRIDGE_CONSTANT(SCOPE_MORE), BRIDGE_CONSTANT(SCOPE_FIELDS),
    BRIDGE_CONSTANT(WS_ABNORMAL), BRIDGE_CONSTANT(WS_NO_STATUS),
    BRIDGE_CONSTANT(POST_HTTP), BRIDGE_CONSTANT(POST_WANT_BODY), BRIDGE_CONSTANT(POST_DONE),
    BRIDGE_CONSTANT(POST_WS_ACCEPT), BRIDGE_CONSTANT(POST_WS_TEXT), BRIDGE_CONSTANT(POST_WS_BYTES),
    BRIDGE_CONSTANT(POST_WS_CLOSE), BRIDGE_CONSTANT(POST_OK), BRIDGE_CONSTANT(POST_PAUSE), BRIDGE_CONSTANT(POST_GONE),
    {NULL, 0},
};
#undef BRIDGE_CONSTANT

static int bridge_exec(PyObject *mod)
{
    bridge_state *st = PyModule_GetState(mod);
    st->request_timeout = PyErr_NewExceptionWithDoc(
        "_vivarium.RequestTimeout",
        "Raised in a request's code when it ran past the app's `timeout`; the client got 504.",
        PyExc_BaseException, NULL);
    st->start_timeout = PyErr_NewExceptionWithDoc(
        "_vivarium.StartTimeout",
        "Raised in the app's import when it ran past the app's `start_timeout`.",
        PyExc_BaseException, NULL);
    if (st->request_timeout == NULL || st->start_timeout == NULL ||
        PyModule_AddObjectRef(mod, "RequestTimeout", st->request_timeout) < 0 ||
        PyModule_AddObjectRef(mod, "StartTimeout", st->start_timeout) < 0)
        return -1;
    for (const struct bridge_constant *c = bridge_constants; c->name != NULL; c++)
        if (PyModule_AddIntConstant(mod, c->name, c->value) < 0)
            return -1;
    if (PyModule_AddFunctions(mod, vv_boot_share_methods) < 0)
        return -1;
    return 0;
}

static PyModuleDef_Slot bridge_slots[] = {
    {Py_mod_exec, bridge_exec},
    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
    {Py_mod_gil, Py_MOD_GIL_NOT_USED},
    {0, NULL},
};

static int bridge_traverse(PyObject *mod, visitproc visit, void *arg)
{
    bridge_state *st = PyModule_GetState(mod);
    Py_VISIT(st->request_timeout);
    Py_VISIT(st->start_timeout);
    return 0;
}

static int bridge_clear(PyObject *mod)
{
    bridge_state *st = PyModule_GetState(mod);
    Py_CLEAR(st->request_timeout);
    Py_CLEAR(st->start_timeout);
    return 0;
}

static void bridge_free(void *mod)
{
    bridge_clear(mod);
}

static struct PyModuleDef bridge_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_vivarium",
    .m_doc = "Calls from the Vivarium adapters into the server.",
    .m_size = sizeof(bridge_state),
    .m_methods = bridge_methods,
    .m_slots = bridge_slots,
    .m_traverse = bridge_traverse,
    .m_clear = bridge_clear,
    .m_free = bridge_free,
};

/* The current interpreter's _vivarium, made and entered in its sys.modules
 * on first use (a new reference; NULL with an exception). Made here rather
 * than through the inittab, which cannot grow once Python runs: in the wheel,
 * the python process started it before loading us. */
static PyObject *bridge_module(void)
{
    PyObject *modules = PyImport_GetModuleDict();
    PyObject *mod;
    if (PyDict_GetItemStringRef(modules, "_vivarium", &mod) != 0)
        return mod;
    PyObject *machinery = PyImport_ImportModule("importlib.machinery");
    PyObject *spec = machinery ? PyObject_CallMethod(machinery, "ModuleSpec", "sO", "_vivarium", Py_None) : NULL;
    mod = spec ? PyModule_FromDefAndSpec(&bridge_def, spec) : NULL;
    if (mod != NULL && (PyModule_ExecDef(mod, &bridge_def) < 0 ||
                        PyDict_SetItemString(modules, "_vivarium", mod) < 0))
        Py_CLEAR(mod);
    Py_XDECREF(spec);
    Py_XDECREF(machinery);
    return mod;
}

int vv_bridge_install(void)
{
    PyObject *mod = bridge_module();
    Py_XDECREF(mod);
    return mod != NULL ? 0 : -1;
}

/* Binds the interpreter's _vivarium to the app (in isolation main, the main
 * interpreter's one, which every such app binds in turn). */
int vv_bridge_bind(uint64_t app_id)
{
    PyObject *mod = bridge_module();
    if (mod == NULL)
        return -1;
    bridge_state *st = PyModule_GetState(mod);
    st->app_id = app_id;
    Py_DECREF(mod);
    return 0;
}

/* A new reference to the exception class for VV_RAISE_*, from this
 * interpreter's _vivarium; NULL for none. GIL held. */
PyObject *vv_bridge_exception(int raise)
{
    PyObject *name = PyUnicode_FromString("_vivarium");
    PyObject *mod = name ? PyImport_GetModule(name) : NULL;
    Py_XDECREF(name);
    if (mod == NULL)
        return NULL;
    bridge_state *st = PyModule_GetState(mod);
    PyObject *exc = raise == VV_RAISE_REQUEST_TIMEOUT ? st->request_timeout
                    : raise == VV_RAISE_START_TIMEOUT ? st->start_timeout : NULL;
    Py_XINCREF(exc);
    Py_DECREF(mod);
    return exc;
}
