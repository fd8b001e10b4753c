/* Reaching into a thread that runs an app's Python: where it is (its stack),
 * and an exception raised there, as mod_wsgi's interrupt-timeout does.
 *
 * Each call runs on a thread of its own (Go starts it for a timeout) with a
 * thread state of its own in the target's interpreter, and first takes that
 * interpreter's GIL. A thread that runs Python lets go of the GIL within the
 * switch interval; one blocked in a call that released it (time.sleep, a
 * socket) lets go at once. A thread in C code that holds the GIL never does:
 * then the call blocks, and Go, which waits for it with a bound, reports the
 * thread as stuck in C. Go keeps the interpreter from ending while a call
 * is under way (plugin/interrupt.go).
 *
 * With the GIL held, the target is paused: its frame can be read, and the
 * exception (PyThreadState_SetAsyncExc) is raised in it at its next check of
 * the eval breaker, before it can finish its request, since finishing takes
 * the GIL too. A WSGI worker clears what is still pending when its request
 * ends (vv_request_over), so that nothing fires in the next one. */
#include "vivarium.h"

#include <string.h>

static char *dup_utf8(PyObject *s)
{
    const char *u = s && PyUnicode_Check(s) ? PyUnicode_AsUTF8(s) : NULL;
    if (u == NULL) {
        PyErr_Clear();
        return NULL;
    }
    size_t n = strlen(u);
    char *out = malloc(n + 1);
    if (out != NULL)
        memcpy(out, u, n + 1);
    return out;
}

/* Asks vivarium_boot.where() about the frame of thread ts: its stack, and
 * whether it is an event loop waiting for events. GIL held; runs Python. */
static void ask_where(PyThreadState *ts, uint64_t token, vv_where *out)
{
    PyFrameObject *frame = PyThreadState_GetFrame(ts);
    PyObject *name = PyUnicode_FromString("vivarium_boot");
    PyObject *mod = name ? PyImport_GetModule(name) : NULL;
    Py_XDECREF(name);
    PyObject *r = NULL;
    if (mod != NULL)
        r = PyObject_CallMethod(mod, "where", "OK", frame ? (PyObject *)frame : Py_None,
                                (unsigned long long)token);
    if (r != NULL && PyTuple_Check(r) && PyTuple_GET_SIZE(r) == 3) {
        out->stack = dup_utf8(PyTuple_GET_ITEM(r, 0));
        out->owns = PyObject_IsTrue(PyTuple_GET_ITEM(r, 1)) == 1;
        out->idle = PyObject_IsTrue(PyTuple_GET_ITEM(r, 2)) == 1;
    } else {
        /* Before vivarium_boot is loaded, or where() failed: no stack,
         * but the target is still the one meant. */
        out->owns = token == 0;
    }
    PyErr_Clear();
    Py_XDECREF(r);
    Py_XDECREF(mod);
    Py_XDECREF((PyObject *)frame);
}

static int schedule(unsigned long tid, int raise)
{
    PyObject *exc = vv_bridge_exception(raise);
    int n = exc ? PyThreadState_SetAsyncExc(tid, exc) : 0;
    Py_XDECREF(exc);
    PyErr_Clear();
    return n == 1;
}

/* Attaches a thread state of this thread to the interpreter. */
static PyThreadState *attach(vv_interp *in)
{
    PyThreadState *ts = PyThreadState_New(in->state);
    if (ts != NULL)
        PyEval_RestoreThread(ts);
    return ts;
}

static void detach(PyThreadState *ts)
{
    PyThreadState_Clear(ts);
    PyThreadState_DeleteCurrent();
}

/* Whether the event loop thread ts runs request token's task now: a frame of
 * one of the adapters' REQUEST_CODES whose local `token` is it. In C, with
 * no Python code run, so that the GIL is not let go between this check and
 * the exception it allows. GIL held. */
static int loop_runs(PyThreadState *ts, uint64_t token)
{
    if (token == 0)
        return 1;
    PyObject *name = PyUnicode_FromString("vivarium_boot");
    PyObject *mod = name ? PyImport_GetModule(name) : NULL;
    Py_XDECREF(name);
    PyObject *codes = mod ? PyObject_GetAttrString(mod, "REQUEST_CODES") : NULL;
    Py_XDECREF(mod);
    PyObject *want = PyLong_FromUnsignedLongLong((unsigned long long)token);
    int found = 0;
    PyFrameObject *f = codes && want ? PyThreadState_GetFrame(ts) : NULL;
    for (int depth = 0; f != NULL && !found && depth < 100000; depth++) {
        PyCodeObject *code = PyFrame_GetCode(f);
        if (PySet_Contains(codes, (PyObject *)code) == 1) {
            PyObject *v = PyFrame_GetVarString(f, "token");
            found = v != NULL && PyObject_RichCompareBool(v, want, Py_EQ) == 1;
            Py_XDECREF(v);
        }
        Py_DECREF(code);
        PyFrameObject *back = PyFrame_GetBack(f);
        Py_DECREF(f);
        f = back;
    }
    Py_XDECREF(f);
    Py_XDECREF(want);
    Py_XDECREF(codes);
    PyErr_Clear();
    return found;
}

/* Whether the worker runs what the caller meant. GIL held. */
static int still_runs(vv_worker *w, int64_t seq, uint64_t token)
{
    if (w->ts == NULL || !w->running)
        return 0;
    if (w->interp->event_loop)
        return loop_runs(w->ts, token);
    return seq < 0 || w->seq == (uint32_t)seq;
}

/* The stack of the worker's thread while it runs request seq (WSGI; -1: any)
 * or, on an event loop, while it runs request token's task (0: any); with
 * raise, the exception scheduled there in that case. where() runs Python
 * code, during which the GIL may pass to the worker: the check that allows
 * the exception comes after it, in C. */
vv_where vv_interrupt_worker(vv_worker *w, int64_t seq, uint64_t token, int raise)
{
    vv_where out = {.state = VV_INTERRUPT_GONE};
    PyThreadState *ts = attach(w->interp);
    if (ts == NULL)
        return out;
    if (still_runs(w, seq, 0)) {
        out.state = VV_INTERRUPT_DONE;
        ask_where(w->ts, 0, &out);
        out.owns = still_runs(w, seq, token);
        if (raise != VV_RAISE_NONE && out.owns && schedule(w->tid, raise))
            w->interrupted = 1;
    }
    detach(ts);
    return out;
}

/* The stack of the thread importing the app, and with raise the exception
 * scheduled in it. */
vv_where vv_interrupt_boot(vv_interp *in, int raise)
{
    vv_where out = {.state = VV_INTERRUPT_GONE};
    PyThreadState *ts = attach(in);
    if (ts == NULL)
        return out;
    PyThreadState *booting = in->boot_thread_ts;
    if (booting != NULL) {
        out.state = VV_INTERRUPT_DONE;
        ask_where(booting, 0, &out);
        out.owns = in->boot_thread_ts == booting;
        if (raise != VV_RAISE_NONE && out.owns)
            schedule(in->boot_tid, raise);
    }
    detach(ts);
    return out;
}

/* The worker's request has ended: nothing of it may fire later. GIL held. */
void vv_request_over(vv_worker *w)
{
    w->running = 0;
    if (w->interrupted) {
        w->interrupted = 0;
        PyThreadState_SetAsyncExc(w->tid, NULL);
    }
}
