/* A worker thread: bound to one interpreter for its whole life, it asks Go for
 * a request, runs the adapter on it with the interpreter's GIL held, and hands
 * the response back in the same Go call that waits for the next request. A
 * request that is answered in one piece thus costs one Go/C crossing. */
#include "vivarium.h"

#include <sys/epoll.h>

#include <stdlib.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sched.h>
#include <time.h>
#include <unistd.h>

int vv_worker_reserve(vv_worker *w, size_t n)
{
    if (n <= w->cap)
        return 0;
    size_t cap = w->cap ? w->cap : 4096;
    while (cap < n)
        cap *= 2;
    char *buf = realloc(w->buf, cap);
    if (buf == NULL)
        return -1;
    w->buf = buf;
    w->cap = cap;
    return 0;
}

/* A new reference to the str for key k, from the interpreter's table of keys
 * when it is there. The table only grows to half its slots: header names are
 * the client's to choose, and past that they are decoded each time. */
static PyObject *environ_key(vv_interp *in, const char *k, uint32_t klen)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (uint32_t i = 0; i < klen; i++)
        h = (h ^ (unsigned char)k[i]) * 16777619u;
    for (uint32_t i = h;; i++) {
        vv_key *slot = &in->keys[i & (VV_KEY_SLOTS - 1)];
        if (slot->str == NULL) {
            PyObject *key = PyUnicode_DecodeLatin1(k, klen, NULL);
            if (key != NULL && in->nkeys < VV_KEY_SLOTS / 2) {
                slot->hash = h;
                slot->str = Py_NewRef(key);
                in->nkeys++;
            }
            return key;
        }
        /* Latin-1 strs are stored one byte a character. */
        if (slot->hash == h && (uint32_t)PyUnicode_GET_LENGTH(slot->str) == klen &&
            memcmp(PyUnicode_1BYTE_DATA(slot->str), k, klen) == 0)
            return Py_NewRef(slot->str);
    }
}

/* Adds the packed CGI variables Go wrote (u32 count, then u32-length-prefixed
 * key and value pairs, see plugin/environ.go) to environ as latin-1 strings,
 * the "native strings" of PEP 3333. */
static int fill_environ(vv_interp *in, PyObject *environ, const char *buf, size_t len)
{
    const char *p = buf, *end = buf + len;
    if (end - p < 4)
        goto corrupt;
    uint32_t count = (uint32_t)vv_le(p, 4);
    p += 4;
    for (uint32_t i = 0; i < count; i++) {
        if (end - p < 4)
            goto corrupt;
        uint32_t klen = (uint32_t)vv_le(p, 4);
        p += 4;
        if ((size_t)(end - p) < (size_t)klen + 4)
            goto corrupt;
        const char *k = p;
        p += klen;
        uint32_t vlen = (uint32_t)vv_le(p, 4);
        p += 4;
        if ((size_t)(end - p) < vlen)
            goto corrupt;
        PyObject *key = environ_key(in, k, klen);
        PyObject *val = key ? PyUnicode_DecodeLatin1(p, vlen, NULL) : NULL;
        p += vlen;
        int rc = val ? PyDict_SetItem(environ, key, val) : -1;
        Py_XDECREF(key);
        Py_XDECREF(val);
        if (rc < 0)
            return -1;
    }
    return 0;
corrupt:
    PyErr_SetString(PyExc_RuntimeError, "vivarium: corrupt request data");
    return -1;
}

typedef struct response {
    char *head, *body;
    size_t head_len, body_len;
    int flags;
} response;

/* Runs one request. Returns what keeps `r` alive (the adapter's answer), or NULL
 * when the adapter itself failed, in which case `r` asks Go for a 500 or an
 * aborted connection. GIL held. */
static PyObject *run_request(vv_worker *w, response *r)
{
    vv_interp *in = w->interp;
    memset(r, 0, sizeof *r);
    PyObject *token = NULL, *res = NULL;
    PyObject *environ = PyDict_Copy(in->base_environ);
    if (environ == NULL || fill_environ(in, environ, w->buf, w->len) < 0)
        goto fail;
    token = PyLong_FromUnsignedLongLong(((uint64_t)w->id << 32) | w->seq);
    if (token == NULL)
        goto fail;
    res = PyObject_CallFunctionObjArgs(in->handler, environ, token, NULL);
    if (res == NULL)
        goto fail;
    /* The adapter answers (head bytes or None, body bytes or None, flags). */
    if (!PyTuple_Check(res) || PyTuple_GET_SIZE(res) != 3) {
        PyErr_SetString(PyExc_TypeError, "vivarium: adapter returned an unexpected value");
        goto fail;
    }
    PyObject *head = PyTuple_GET_ITEM(res, 0), *body = PyTuple_GET_ITEM(res, 1);
    if ((head != Py_None && !PyBytes_Check(head)) || (body != Py_None && !PyBytes_Check(body))) {
        PyErr_SetString(PyExc_TypeError, "vivarium: adapter returned non-bytes");
        goto fail;
    }
    if (head != Py_None) {
        r->head = PyBytes_AS_STRING(head);
        r->head_len = (size_t)PyBytes_GET_SIZE(head);
    }
    if (body != Py_None) {
        r->body = PyBytes_AS_STRING(body);
        r->body_len = (size_t)PyBytes_GET_SIZE(body);
    }
    r->flags = PyLong_AsInt(PyTuple_GET_ITEM(res, 2));
    if (r->flags == -1 && PyErr_Occurred())
        goto fail;
    Py_DECREF(environ);
    Py_DECREF(token);
    return res;
fail:
    vv_log_exception(in->app_id, "vivarium adapter failed");
    Py_XDECREF(res);
    Py_XDECREF(token);
    Py_XDECREF(environ);
    memset(r, 0, sizeof *r);
    r->flags = VV_ABORT;
    return NULL;
}

static uint64_t now_ns(clockid_t clock)
{
    struct timespec t;
    clock_gettime(clock, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* An idle worker's wake-up: Go assigns it a request (or tells it to exit)
 * and wakes it. Posting the semaphore costs a futex call on Go's side and,
 * on the worker's, a sleep and a wake-up: a context switch, and the
 * scheduling latency of a thread woken on another CPU, paid in full by
 * every request of a client that sends its next one as soon as it has the
 * answer. So an idle worker first spins a while, watching wake_state, and
 * Go posts the semaphore only to a worker that went to sleep. */
/* The longest an idle worker spins. A client's next request arrives within
 * a round trip through the client and the Go scheduler; an idle server's
 * worker stops spinning after a few long waits (worker_idle). */
#define VV_SPIN_MAX_NS 100000u
/* Spins between looks at the clock; each ends with sched_yield, so that on
 * a machine short of cores a spinning worker gives its CPU to whatever else
 * is ready to run there (Go's threads, the interpreter's others). */
#define VV_SPIN_PAUSES 16
/* Rounds of VV_SPIN_PAUSES between looks at the machine's load. */
#define VV_SPIN_CHECK 8
/* At most 2^this idle spells without a spin after spins that failed. */
#define VV_SPIN_BACKOFF_MAX 8

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

void vv_worker_wake(vv_worker *w)
{
    if (__atomic_exchange_n(&w->wake_state, VV_WAKE_POSTED, __ATOMIC_ACQ_REL) == VV_WAKE_SLEEPING)
        sem_post(&w->wake);
}

/* Whether the machine has no core to spare: its runnable threads, this one
 * included, outnumber its CPUs (the fourth field of /proc/loadavg counts
 * them). A worker that spins then holds a CPU that a thread it waits for
 * (Go's, the client's) may be waiting for: it sleeps instead, and its CPU
 * goes to them. Unknown counts as short. */
static int cores_short(vv_worker *w)
{
    char buf[128];
    ssize_t n = w->loadfd >= 0 ? pread(w->loadfd, buf, sizeof buf - 1, 0) : -1;
    if (n <= 0)
        return 1;
    buf[n] = 0;
    unsigned long running;
    if (sscanf(buf, "%*s %*s %*s %lu", &running) != 1)
        return 1;
    return running > (unsigned long)w->ncpus;
}

/* Spins while spinning pays, watching wake_state for Go's post; 1 if it
 * came. It does not for a worker of an idle or lightly loaded server, whose
 * wake-up comes later than a spin lasts: after a spin that failed the
 * worker sleeps at once for twice as many spells as after the last failure
 * (up to 2^VV_SPIN_BACKOFF_MAX), then tries again; a spin that succeeds
 * resets that. Nor while the machine has no core to spare (cores_short).
 * With epfd, an event loop's epoll instance, it also ends when one of the
 * loop's own file descriptors is ready (a callback from another thread, a
 * socket of the app's), which the loop must not wait a whole spin for. */
static int spin_for_post(vv_worker *w, int epfd)
{
    if (w->spin_skip > 0) {
        w->spin_skip--;
        return 0;
    }
    uint64_t start = now_ns(CLOCK_MONOTONIC), now = start;
    for (unsigned round = 0; now - start < VV_SPIN_MAX_NS; round++) {
        if (__atomic_load_n(&w->wake_state, __ATOMIC_ACQUIRE) == VV_WAKE_POSTED) {
            w->spin_fails = 0;
            return 1;
        }
        if (round % VV_SPIN_CHECK == 0) {
            if (cores_short(w))
                break;
            struct epoll_event ev;
            if (epfd >= 0 && epoll_wait(epfd, &ev, 1, 0) > 0)
                return 1;
        }
        for (int i = 0; i < VV_SPIN_PAUSES; i++)
            cpu_relax();
        sched_yield();
        now = now_ns(CLOCK_MONOTONIC);
    }
    if (w->spin_fails < VV_SPIN_BACKOFF_MAX)
        w->spin_fails++;
    w->spin_skip = 1u << w->spin_fails;
    return 0;
}

/* Waits for Go's wake-up, spinning first (spin_for_post). Go wakes a worker
 * at most once per spell on the idle list, so one POSTED is one wake-up. */
static void worker_idle(vv_worker *w)
{
    int expect = VV_WAKE_NONE;
    if (!spin_for_post(w, -1) &&
        __atomic_compare_exchange_n(&w->wake_state, &expect, VV_WAKE_SLEEPING, 0,
                                    __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
        while (sem_wait(&w->wake) != 0 && errno == EINTR)
            ;
    __atomic_store_n(&w->wake_state, VV_WAKE_NONE, __ATOMIC_RELEASE);
}

/* An event loop's wake-up. Go writes the loop's eventfd when it posts to an
 * empty inbox, and the loop, asleep in epoll_wait, wakes: a context switch
 * and a cross-CPU wake-up on the path of each request of a client that
 * sends its next one as soon as it has the answer, as the WSGI worker's
 * semaphore is. Here wake_state is SLEEPING while the loop runs or sleeps
 * (a post must write the eventfd), NONE while it spins before it would
 * sleep: a post then only sets POSTED. vv_loop_idle spins and tells
 * whether events may wait that no eventfd announces; the adapter's
 * selector then polls them without sleeping. A POSTED it finds is always
 * taken as that, so a wake-up is never lost, at worst polled for nothing;
 * only Go's posts (vv_loop_wake) set it, each for its own loop. */
int vv_loop_wake(vv_worker *w)
{
    return __atomic_exchange_n(&w->wake_state, VV_WAKE_POSTED, __ATOMIC_ACQ_REL) == VV_WAKE_SLEEPING;
}

int vv_loop_idle(vv_worker *w, int epfd)
{
    int expect = VV_WAKE_SLEEPING;
    if (!__atomic_compare_exchange_n(&w->wake_state, &expect, VV_WAKE_NONE, 0,
                                     __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
        __atomic_store_n(&w->wake_state, VV_WAKE_SLEEPING, __ATOMIC_RELEASE);
        return 1;
    }
    int posted = spin_for_post(w, epfd);
    expect = VV_WAKE_NONE;
    if (!posted && __atomic_compare_exchange_n(&w->wake_state, &expect, VV_WAKE_SLEEPING, 0,
                                               __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
        return 0;
    __atomic_store_n(&w->wake_state, VV_WAKE_SLEEPING, __ATOMIC_RELEASE);
    return 1;
}

/* The nanoseconds the worker's thread has spent on a CPU or waiting in the
 * run queue for one: the time it wanted a CPU. Called by the scheduler from
 * another thread. What it leaves out is the time the thread slept: on I/O, on
 * the GIL, on a client, on its semaphore. Counting the run-queue wait is what
 * tells a thread that waits on something from one the machine has no core
 * for. The CPU time comes from the thread's clock, exact to the call; the
 * schedstat figures of a thread that is running lag by up to a scheduler tick
 * (4 ms at HZ=250), too coarse for it. Without schedstat (a kernel built
 * without it) the CPU time stands alone.
 *
 * The kernel adds a run-queue wait to schedstat only when the wait ends, so a
 * thread still waiting has wanted a CPU for longer than the figure says: on a
 * loaded machine a thread that only computes would look like one that waits.
 * *runnable is set when the thread is on a CPU or waiting for one (state R):
 * then the figure may be short, and the caller must not read the thread as
 * waiting on something else. */
uint64_t vv_worker_demand(vv_worker *w, int *runnable)
{
    clockid_t cid;
    uint64_t ns = pthread_getcpuclockid(w->thread, &cid) == 0 ? now_ns(cid) : 0;
    char buf[512];
    *runnable = 0;
    if (w->statfd >= 0) {
        ssize_t n = pread(w->statfd, buf, sizeof buf - 1, 0);
        if (n > 0) {
            buf[n] = 0;
            unsigned long long run, wait;
            if (sscanf(buf, "%llu %llu", &run, &wait) == 2)
                ns += wait;
        }
    }
    if (w->taskfd >= 0) {
        /* "tid (name) S ...": the name may hold ") ", the state follows the last. */
        ssize_t n = pread(w->taskfd, buf, sizeof buf - 1, 0);
        if (n > 0) {
            buf[n] = 0;
            const char *end = strrchr(buf, ')');
            *runnable = end && end[1] == ' ' && end[2] == 'R';
        }
    }
    return ns;
}

/* The wall time the worker's thread has spent running requests, from taking
 * the GIL at their start to their end, the one under way included: what the
 * scheduler compares the thread's CPU demand with. Time in Go, between
 * requests, is left out: there the thread may wait for one of Go's Ps, which
 * is waiting for a CPU, not for I/O. Called from another thread; py_ns is
 * published after py_since is cleared, so a request that just ended is
 * counted at most once. */
uint64_t vv_worker_in_python(vv_worker *w)
{
    uint64_t done = __atomic_load_n(&w->py_ns, __ATOMIC_ACQUIRE);
    uint64_t since = __atomic_load_n(&w->py_since, __ATOMIC_RELAXED);
    return since ? done + (now_ns(CLOCK_MONOTONIC) - since) : done;
}

/* Whether the worker still runs request seq; from another thread. */
int vv_worker_runs(vv_worker *w, uint32_t seq)
{
    return __atomic_load_n(&w->py_since, __ATOMIC_RELAXED) != 0 &&
           __atomic_load_n(&w->seq, __ATOMIC_RELAXED) == seq;
}

void *vv_worker_main(void *arg)
{
    vv_worker *w = arg;
    /* Named so that top -H and perf tell Python's threads from Go's. */
    pthread_setname_np(pthread_self(), "vv-wsgi");
    /* One thread state for the thread's whole life, created on this thread. */
    PyThreadState *ts = PyThreadState_New(w->interp->state);
    w->ts = ts;
    w->tid = PyThread_get_thread_ident();
    vv_crash_thread(w->interp, w);
    /* Opened here, before the first vvServe, so the scheduler sees it set. */
    w->statfd = open("/proc/thread-self/schedstat", O_RDONLY | O_CLOEXEC);
    w->taskfd = open("/proc/thread-self/stat", O_RDONLY | O_CLOEXEC);
    w->loadfd = open("/proc/loadavg", O_RDONLY | O_CLOEXEC);
    w->ncpus = (int)sysconf(_SC_NPROCESSORS_ONLN);
    response r = {0};
    PyObject *answer = NULL;
    for (;;) {
        int rc;
        VV_IN_GO(rc = vvServe(w, r.head, r.head_len, r.body, r.body_len, r.flags));
        memset(&r, 0, sizeof r);
        if (rc < 0)
            break;
        if (rc == 0) {
            /* Idle: Go wakes us when it assigns a request or tells us to
             * exit. Waiting here, not in Go, is what keeps the hand-off
             * cheap. */
            worker_idle(w);
            continue;
        }
        /* The scheduler lowers how many requests run at once in this
         * interpreter when they queue for its GIL (plugin/scheduler.go). */
        uint64_t t0 = now_ns(CLOCK_MONOTONIC);
        PyEval_RestoreThread(ts);
        uint64_t t1 = now_ns(CLOCK_MONOTONIC);
        w->gil_wait_ns = t1 - t0;
        __atomic_store_n(&w->py_since, t1, __ATOMIC_RELAXED);
        w->running = 1;
        /* The previous answer stayed alive until Go had written it. */
        Py_CLEAR(answer);
        answer = run_request(w, &r);
        vv_request_over(w);
        PyEval_SaveThread();
        uint64_t ran = now_ns(CLOCK_MONOTONIC) - t1;
        __atomic_store_n(&w->py_since, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&w->py_ns, w->py_ns + ran, __ATOMIC_RELEASE);
    }
    PyEval_RestoreThread(ts);
    Py_CLEAR(answer);
    w->ts = NULL;
    PyThreadState_Clear(ts);
    PyThreadState_DeleteCurrent();
    vv_crash_thread(NULL, NULL);
    return NULL;
}

/* An ASGI interpreter's one thread: it runs the adapter's event loop until Go
 * posts the shutdown event. The adapter reports the outcome of lifespan
 * startup itself; should the loop end before that, this says so. */
void *vv_loop_main(void *arg)
{
    vv_worker *w = arg;
    pthread_setname_np(pthread_self(), "vv-asgi");
    w->loadfd = open("/proc/loadavg", O_RDONLY | O_CLOEXEC);
    w->ncpus = (int)sysconf(_SC_NPROCESSORS_ONLN);
    PyThreadState *ts = PyThreadState_New(w->interp->state);
    w->tid = PyThread_get_thread_ident();
    vv_crash_thread(w->interp, w);
    PyEval_RestoreThread(ts);
    /* The loop runs requests for as long as it lives. */
    w->ts = ts;
    w->running = 1;
    PyObject *r = PyObject_CallFunction(w->interp->handler, "ii", w->id, w->efd);
    if (r == NULL)
        vv_log_exception(w->interp->app_id, "event loop failed");
    Py_XDECREF(r);
    w->running = 0;
    w->ts = NULL;
    PyThreadState_Clear(ts);
    PyThreadState_DeleteCurrent();
    vv_crash_thread(NULL, NULL);
    const char msg[] = "the event loop ended before the app was ready";
    VV_IN_GO(vvReady(w->id, (char *)msg, sizeof msg - 1));
    return NULL;
}
