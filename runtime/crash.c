/* The death notice: when a thread running an app's Python dies of a fatal
 * signal (SIGSEGV, SIGBUS, SIGABRT, SIGFPE, SIGILL), one line goes to
 * stderr before the process dies, in the JSON shape of Caddy's own log
 * (level, ts, logger, msg): the app, interpreter and thread that crashed,
 * Python's faulthandler trace of that thread, and every app, interpreter and
 * request running at that moment. Then the signal's default action ends the
 * process, so that it still dies of that signal.
 *
 * The handler is installed over Go's. A fault in Go code (Go turns a nil
 * dereference into a panic, which may be recovered) goes on to Go's handler
 * untouched: a notice is written only for a thread that runs Python or C
 * code of an app, not Go code.
 *
 * Python's own faulthandler writes the trace: it is enabled in the main
 * interpreter with a memfd as its file, under our handler, which calls it
 * and reads back what it wrote. Everything on the signal path is
 * async-signal-safe: no malloc, no stdio, only write/pread on fds opened
 * beforehand and reads of memory the registry keeps. */
#include "vivarium.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static const int fatal_signals[] = {SIGSEGV, SIGBUS, SIGABRT, SIGFPE, SIGILL};
#define NFATAL (int)(sizeof fatal_signals / sizeof fatal_signals[0])

static struct sigaction go_action[NFATAL];  /* what was there before us */
static struct sigaction fh_action[NFATAL];  /* faulthandler's */
static int fh_fd = -1;                      /* faulthandler's file */
static pthread_t control_thread;
static volatile sig_atomic_t dying;

/* Every live interpreter, for the notice to name what runs. Written by the
 * control thread, read by a signal handler on any thread. */
#define VV_CRASH_SLOTS 1024
static vv_interp *registry[VV_CRASH_SLOTS];

/* What this thread runs, set by the thread itself. */
static __thread vv_interp *thread_interp;
static __thread vv_worker *thread_worker;
static __thread int thread_in_go;

void vv_crash_thread(vv_interp *in, vv_worker *w)
{
    thread_interp = in;
    thread_worker = w;
}

/* The interpreter this thread runs for, if it is one of ours. */
vv_interp *vv_thread_interp(void)
{
    return thread_interp;
}

/* The worker this thread is, if it is one of ours. */
vv_worker *vv_thread_worker(void)
{
    return thread_worker;
}

void vv_crash_in_go(int in_go)
{
    thread_in_go = in_go;
}

void vv_crash_register(vv_interp *in)
{
    for (int i = 0; i < VV_CRASH_SLOTS; i++) {
        vv_interp *none = NULL;
        if (__atomic_compare_exchange_n(&registry[i], &none, in, 0, __ATOMIC_RELEASE, __ATOMIC_RELAXED))
            return;
    }
}

void vv_crash_unregister(vv_interp *in)
{
    for (int i = 0; i < VV_CRASH_SLOTS; i++) {
        if (__atomic_load_n(&registry[i], __ATOMIC_RELAXED) == in) {
            __atomic_store_n(&registry[i], NULL, __ATOMIC_RELEASE);
            return;
        }
    }
}

/* ASGI: the requests an event loop has in flight, kept by the loop's own
 * thread through _vivarium.begin()/end(). */
void vv_crash_begin(uint64_t token, const char *desc, size_t len)
{
    vv_worker *w = thread_worker;
    if (w == NULL)
        return;
    for (int i = 0; i < VV_FLIGHT_SLOTS; i++) {
        if (w->flight[i].token == 0) {
            if (len >= sizeof w->flight[i].desc)
                len = sizeof w->flight[i].desc - 1;
            memcpy(w->flight[i].desc, desc, len);
            w->flight[i].desc[len] = 0;
            __atomic_store_n(&w->flight[i].token, token, __ATOMIC_RELEASE);
            return;
        }
    }
    w->flight_more++;
}

void vv_crash_end(uint64_t token)
{
    vv_worker *w = thread_worker;
    if (w == NULL)
        return;
    for (int i = 0; i < VV_FLIGHT_SLOTS; i++) {
        if (w->flight[i].token == token) {
            __atomic_store_n(&w->flight[i].token, 0, __ATOMIC_RELEASE);
            return;
        }
    }
    if (w->flight_more > 0)
        w->flight_more--;
}

/* ---- the notice, built in a static buffer with async-signal-safe code ---- */

static char line[96 << 10];
static size_t pos;

static void put(const char *s, size_t n)
{
    if (n > sizeof line - 8 - pos)
        n = sizeof line - 8 - pos;
    memcpy(line + pos, s, n);
    pos += n;
}

static void puts_(const char *s)
{
    put(s, strlen(s));
}

static void put_u64(uint64_t v)
{
    char d[24];
    int n = 0;
    do {
        d[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        put(&d[--n], 1);
}

/* A JSON string's contents: quotes, backslashes and control bytes escaped. */
static void put_json(const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            put(e, 2);
        } else if (c == '\n') {
            put("\\n", 2);
        } else if (c == '\t') {
            put("\\t", 2);
        } else if (c < 0x20 || c == 0x7f) {
            char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            put(e, 6);
        } else {
            put((const char *)&c, 1);
        }
    }
}

static void put_jsonz(const char *s)
{
    put_json(s, strlen(s));
}

static const char *signal_name(int sig)
{
    switch (sig) {
    case SIGSEGV: return "SIGSEGV";
    case SIGBUS: return "SIGBUS";
    case SIGABRT: return "SIGABRT";
    case SIGFPE: return "SIGFPE";
    case SIGILL: return "SIGILL";
    }
    return "signal";
}

/* Finds a CGI variable in the packed request data (plugin/environ.go). */
static int packed_var(const char *buf, size_t len, const char *key, const char **val, uint32_t *vlen)
{
    const char *p = buf, *end = buf + len;
    size_t klen = strlen(key);
    if (buf == NULL || len < 4)
        return 0;
    uint32_t count = (uint32_t)vv_le(p, 4);
    p += 4;
    for (uint32_t i = 0; i < count; i++) {
        if (end - p < 4)
            return 0;
        uint32_t kl = (uint32_t)vv_le(p, 4);
        p += 4;
        if ((size_t)(end - p) < (size_t)kl + 4)
            return 0;
        const char *k = p;
        p += kl;
        uint32_t vl = (uint32_t)vv_le(p, 4);
        p += 4;
        if ((size_t)(end - p) < vl)
            return 0;
        if (kl == klen && memcmp(k, key, klen) == 0) {
            *val = p;
            *vlen = vl;
            return 1;
        }
        p += vl;
    }
    return 0;
}

/* "GET /script/path?query" of the WSGI request in the worker's buffer. */
static void put_wsgi_request(vv_worker *w)
{
    static const char *const keys[] = {"REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING"};
    for (int k = 0; k < 4; k++) {
        const char *v;
        uint32_t n;
        if (!packed_var(w->buf, w->len, keys[k], &v, &n))
            continue;
        if (k == 3 && n > 0)
            put("?", 1);
        if (n > 512)
            n = 512;
        put_json(v, n);
        if (k == 0)
            put(" ", 1);
    }
}

static void put_running(vv_interp *crashed_in, vv_worker *crashed_w)
{
    puts_(",\"running\":[");
    int first = 1;
    for (int i = 0; i < VV_CRASH_SLOTS; i++) {
        vv_interp *in = __atomic_load_n(&registry[i], __ATOMIC_ACQUIRE);
        if (in == NULL)
            continue;
        for (int j = 0; j < in->nworkers; j++) {
            vv_worker *w = &in->workers[j];
            int busy = in->event_loop ? 0 : __atomic_load_n(&w->py_since, __ATOMIC_RELAXED) != 0;
            for (int f = 0; in->event_loop && f < VV_FLIGHT_SLOTS; f++)
                busy |= __atomic_load_n(&w->flight[f].token, __ATOMIC_ACQUIRE) != 0;
            if (!busy && w != crashed_w)
                continue;
            puts_(first ? "{\"app\":\"" : ",{\"app\":\"");
            first = 0;
            put_jsonz(in->name);
            puts_("\",\"interpreter\":");
            put_u64((uint64_t)in->interp_id);
            puts_(",\"thread\":");
            put_u64((uint64_t)j);
            if (w == crashed_w)
                puts_(",\"crashed\":true");
            puts_(",\"requests\":[");
            if (!in->event_loop) {
                if (busy) {
                    put("\"", 1);
                    put_wsgi_request(w);
                    put("\"", 1);
                }
            } else {
                int firstr = 1;
                for (int f = 0; f < VV_FLIGHT_SLOTS; f++) {
                    if (__atomic_load_n(&w->flight[f].token, __ATOMIC_ACQUIRE) == 0)
                        continue;
                    puts_(firstr ? "\"" : ",\"");
                    firstr = 0;
                    put_json(w->flight[f].desc, strnlen(w->flight[f].desc, sizeof w->flight[f].desc));
                    put("\"", 1);
                }
                if (w->flight_more > 0) {
                    puts_(firstr ? "\"" : ",\"");
                    put_u64((uint64_t)w->flight_more);
                    puts_(" more\"");
                }
            }
            puts_("]}");
        }
    }
    if (crashed_in != NULL && crashed_w == NULL) {
        /* A thread of the app's own, or its import. */
        puts_(first ? "{\"app\":\"" : ",{\"app\":\"");
        put_jsonz(crashed_in->name);
        puts_("\",\"interpreter\":");
        put_u64((uint64_t)crashed_in->interp_id);
        puts_(",\"crashed\":true}");
    }
    puts_("]");
}

/* The interpreter a thread of the app's own (not one of ours) runs in. */
static vv_interp *interp_of(PyThreadState *ts)
{
    if (ts == NULL)
        return NULL;
    PyInterpreterState *state = ts->interp;
    for (int i = 0; i < VV_CRASH_SLOTS; i++) {
        vv_interp *in = __atomic_load_n(&registry[i], __ATOMIC_ACQUIRE);
        if (in != NULL && in->state == state)
            return in;
    }
    return NULL;
}

static int slot_of(int sig)
{
    for (int i = 0; i < NFATAL; i++)
        if (fatal_signals[i] == sig)
            return i;
    return -1;
}

static void write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t k = write(fd, p, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return;
        p += k;
        n -= (size_t)k;
    }
}

static void die_of(int sig)
{
    signal(sig, SIG_DFL);
    raise(sig);
}

/* Does nothing: faulthandler, done writing, restores the handler it found
 * (this one) and raises the signal again; we are not done yet. */
static void swallow(int sig, siginfo_t *info, void *uctx)
{
    (void)sig, (void)info, (void)uctx;
}

static void on_fatal(int sig, siginfo_t *info, void *uctx)
{
    int slot = slot_of(sig);
    int saved_errno = errno;
    PyThreadState *attached = PyThreadState_GetUnchecked();
    PyThreadState *bound = PyGILState_GetThisThreadState();
    int python = attached != NULL ||
                 (!thread_in_go && (thread_interp != NULL ||
                                    (bound != NULL && !pthread_equal(pthread_self(), control_thread))));
    if (!python) {
        /* Go's, or C code of Go's: Go decides. */
        struct sigaction *go = &go_action[slot];
        if (go->sa_flags & SA_SIGINFO)
            go->sa_sigaction(sig, info, uctx);
        else if (go->sa_handler == SIG_DFL)
            die_of(sig);
        else if (go->sa_handler != SIG_IGN)
            go->sa_handler(sig);
        errno = saved_errno;
        return;
    }
    if (dying) {
        die_of(sig);
        return;
    }
    dying = 1;

    /* faulthandler's trace of this thread, into its memfd. */
    ssize_t tlen = 0;
    static char trace[48 << 10];
    if (fh_fd >= 0 && !(fh_action[slot].sa_flags & SA_SIGINFO) && fh_action[slot].sa_handler != SIG_DFL &&
        fh_action[slot].sa_handler != SIG_IGN) {
        fh_action[slot].sa_handler(sig);
        tlen = pread(fh_fd, trace, sizeof trace, 0);
        if (tlen < 0)
            tlen = 0;
    }

    vv_interp *in = thread_interp ? thread_interp : interp_of(attached ? attached : bound);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    pos = 0;
    puts_("{\"level\":\"fatal\",\"ts\":");
    put_u64((uint64_t)now.tv_sec);
    put(".", 1);
    char us[7];
    long frac = now.tv_nsec / 1000;
    for (int i = 5; i >= 0; i--, frac /= 10)
        us[i] = (char)('0' + frac % 10);
    put(us, 6);
    puts_(",\"logger\":\"http.handlers.python\",\"msg\":\"the process dies of ");
    puts_(signal_name(sig));
    if (in != NULL) {
        puts_(" in app ");
        put_jsonz(in->name);
        puts_(", interpreter ");
        put_u64((uint64_t)in->interp_id);
        if (thread_worker != NULL && !in->event_loop && thread_worker->py_since != 0) {
            puts_(", while it ran ");
            put_wsgi_request(thread_worker);
        } else if (thread_worker == NULL && in->boot_thread_ts != NULL &&
                   (attached == in->boot_thread_ts || bound == in->boot_thread_ts)) {
            puts_(", while importing the app");
        }
    }
    puts_("\",\"signal\":\"");
    puts_(signal_name(sig));
    puts_("\"");
    if (in != NULL) {
        puts_(",\"app\":\"");
        put_jsonz(in->name);
        puts_("\",\"interpreter\":");
        put_u64((uint64_t)in->interp_id);
    }
    put_running(in, thread_worker);
    puts_(",\"traceback\":\"");
    put_json(trace, (size_t)tlen);
    puts_("\"}\n");
    write_all(STDERR_FILENO, line, pos);
    die_of(sig);
    errno = saved_errno;
}

/* Installs the handlers; on the control thread, with the main interpreter
 * attached, after Go's runtime has installed its own. A failure only costs
 * the notice. */
void vv_crash_init(void)
{
    control_thread = pthread_self();
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    /* SA_ONSTACK: Go runs signal handlers on its threads' signal stacks. */
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
    sa.sa_sigaction = swallow;
    for (int i = 0; i < NFATAL; i++) {
        sigaction(fatal_signals[i], NULL, &go_action[i]);
        sigaction(fatal_signals[i], &sa, NULL);
    }
    fh_fd = memfd_create("vivarium-faulthandler", MFD_CLOEXEC);
    PyObject *fh = fh_fd >= 0 ? PyImport_ImportModule("faulthandler") : NULL;
    PyObject *r = fh ? PyObject_CallMethod(fh, "enable", "iO", fh_fd, Py_False) : NULL;
    if (r == NULL) {
        PyErr_Clear();
        if (fh_fd >= 0)
            close(fh_fd);
        fh_fd = -1;
    }
    Py_XDECREF(r);
    Py_XDECREF(fh);
    for (int i = 0; i < NFATAL; i++)
        sigaction(fatal_signals[i], NULL, &fh_action[i]);
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sa.sa_sigaction = on_fatal;
    for (int i = 0; i < NFATAL; i++)
        sigaction(fatal_signals[i], &sa, NULL);
}
