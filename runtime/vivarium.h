/* The C half of Vivarium: CPython start-up, one own-GIL interpreter per app
 * instance, worker threads bound to it, and the `_vivarium` bridge module the
 * Python adapters call. The Go half (plugin/) owns scheduling and HTTP; the two
 * meet in the functions declared at the end of this file. */
#ifndef VIVARIUM_H
#define VIVARIUM_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdint.h>
#include <stddef.h>

#if PY_VERSION_HEX < 0x030D0000
#error "Vivarium needs Python >= 3.13 (own-GIL interpreters); point the build at one with PYTHON=/path/to/python3.13"
#endif

/* Every code and layout that crosses between Go, C and Python is defined
 * here, once. Go reads them through cgo (plugin/codes.go), Python from the
 * _vivarium module, which exports each under its name without VV_
 * (runtime/bridge.c). */

/* A WSGI request reaches C as its CGI variables (plugin/environ.go packs
 * them into vv_worker.buf, worker.c makes the environ): a u32 count, then per
 * variable a u32 length and the name, a u32 length and the value, all
 * little-endian. A response head goes back as "status\0" and a header block
 * (plugin/headers.go). */

/* Flags on the final or streamed part of a response (vvServe, vvSend) and on
 * a message from an event loop (vvPost). */
#define VV_FLUSH 1 /* write to the client now: the app streams */
#define VV_MORE 1 /* on VV_POST_HTTP: more of the body follows (the same bit) */
#define VV_ABORT 2 /* the app failed after headers were sent: cut the connection */
#define VV_TIMED_OUT 4 /* with VV_ABORT: its code was interrupted by RequestTimeout */
#define VV_LOST 8 /* the app's process died with the request: set by Caddy only */

/* Where an app runs (the `isolation` directive). */
#define VV_ISOLATION_INTERPRETER 0 /* its own interpreter with its own GIL */
#define VV_ISOLATION_SHARED 1      /* its own interpreter sharing the main GIL */
#define VV_ISOLATION_MAIN 2        /* the main interpreter itself */
#define VV_ISOLATION_PROCESS 3     /* child processes of Caddy; never reaches C, since
                                      a child runs its app with VV_ISOLATION_MAIN */

/* Events from Go to an ASGI event loop. plugin/loop.go packs a batch as a u32
 * count, then per event a head of VV_EVENT_HEAD bytes, u8 kind, u64 token,
 * u16 number of fields, then each field as a u32 length and its bytes, all
 * little-endian; vvPoll hands it to bridge.c's poll(). */
#define VV_EVENT_HEAD 11
#define VV_EV_HTTP 1       /* a new HTTP request: the VV_SCOPE_* fields */
#define VV_EV_WEBSOCKET 2  /* a new WebSocket handshake: the VV_SCOPE_* fields */
#define VV_EV_BODY 3       /* the next request body part: data, more ("1" or "0") */
#define VV_EV_DISCONNECT 4 /* the client went away */
#define VV_EV_RESUME 5     /* sends may go on: Go has written what was queued */
#define VV_EV_WS_TEXT 6    /* a message from the client: data */
#define VV_EV_WS_BYTES 7
#define VV_EV_WS_CLOSE 8   /* the client closed: its code, in decimal */
#define VV_EV_SHUTDOWN 9
#define VV_EV_TIMEOUT 10   /* the request ran past its timeout: what to log */

/* The fields of VV_EV_HTTP and VV_EV_WEBSOCKET, in order
 * (plugin/asgi_scope.go packs them, pyadapters/asgi.py makes the scope). */
#define VV_SCOPE_HTTP_VERSION 0
#define VV_SCOPE_METHOD 1
#define VV_SCOPE_SCHEME 2
#define VV_SCOPE_PATH 3
#define VV_SCOPE_RAW_PATH 4
#define VV_SCOPE_QUERY 5
#define VV_SCOPE_ROOT_PATH 6
#define VV_SCOPE_HEADERS 7 /* a header block: plugin/headers.go */
#define VV_SCOPE_CLIENT_HOST 8
#define VV_SCOPE_CLIENT_PORT 9
#define VV_SCOPE_SERVER_HOST 10
#define VV_SCOPE_SERVER_PORT 11
#define VV_SCOPE_BODY 12  /* VV_EV_HTTP: the body, or its first part */
#define VV_SCOPE_MORE 13  /* VV_EV_HTTP: "1" when more of the body follows */
#define VV_SCOPE_FIELDS 14

/* The close code a WebSocket event carries when the connection ended
 * without a close frame (RFC 6455, 7.1.5), and when a close frame had none. */
#define VV_WS_ABNORMAL 1006
#define VV_WS_NO_STATUS 1005

/* Messages from an event loop to Go: vvPost(token, kind, a, b, flags). */
#define VV_POST_HTTP 1      /* a: status and headers (first part only), b: body; VV_MORE */
#define VV_POST_WANT_BODY 2 /* the app awaits the next body part */
#define VV_POST_DONE 3      /* the app returned; VV_ABORT when it failed */
#define VV_POST_WS_ACCEPT 4 /* a: subprotocol, b: a header block */
#define VV_POST_WS_TEXT 5   /* b: the message */
#define VV_POST_WS_BYTES 6
#define VV_POST_WS_CLOSE 7  /* a: reason, flags: code */
/* What vvPost answers: go on, pause until VV_EV_RESUME, or the client is gone. */
#define VV_POST_OK 0
#define VV_POST_PAUSE 1
#define VV_POST_GONE (-1)

/* Kinds of line passed to vvLog: what the app printed, or an error we report. */
#define VV_LOG_STDOUT 0
#define VV_LOG_STDERR 1
#define VV_LOG_ERROR 2

#define VV_FLIGHT_SLOTS 16

/* A worker's wake_state (worker.c: worker_idle, vv_loop_idle). */
enum {
    VV_WAKE_NONE,     /* nothing posted; the worker runs or spins */
    VV_WAKE_POSTED,   /* Go has something for it */
    VV_WAKE_SLEEPING, /* it sleeps (semaphore, or the loop's epoll): a post must wake it */
};

/* What a worker thread owns. Go fills `buf` with the next request's packed
 * data (see plugin/environ.go) through vv_worker_reserve. */
typedef struct vv_worker {
    int id;                     /* slot in Go's worker table */
    uint32_t seq;               /* request sequence, guards stale tokens */
    char *buf;
    size_t len, cap;
    struct vv_interp *interp;
    pthread_t thread;
    int started;
    int efd;                    /* ASGI: the eventfd the event loop watches */
    sem_t wake;                 /* WSGI: an idle worker sleeps here */
    int wake_state;             /* VV_WAKE_*, see worker_idle and vv_loop_idle */
    unsigned spin_fails, spin_skip; /* idle spins that failed, spells to sleep at once */
    int loadfd;                 /* /proc/loadavg, or -1 (spin_for_post) */
    int ncpus;                  /* the machine's online CPUs */
    uint64_t gil_wait_ns;       /* how long the finished request waited for the
                                   GIL before it could start */
    int statfd;                 /* the thread's /proc schedstat, or -1 */
    int taskfd;                 /* the thread's /proc stat, or -1 (its state) */
    /* Wall time spent running requests with the GIL taken, and when the
     * current one started (0: none runs); read by the scheduler's thread. */
    uint64_t py_ns, py_since;
    /* For interrupting the request it runs (interrupt.c): its thread state
     * and thread id, set once by the thread itself; whether it runs request
     * `seq` now, and whether an exception was scheduled in it. The last two
     * change only with the interpreter's GIL held. */
    PyThreadState *ts;
    unsigned long tid;
    int running;
    int interrupted;
    /* ASGI: the requests its event loop has in flight, for the death notice
     * (crash.c); token 0 is a free slot. Kept by the loop's thread. */
    struct {
        uint64_t token;
        char desc[120];
    } flight[VV_FLIGHT_SLOTS];
    int flight_more;            /* in flight beyond the slots */
} vv_worker;

/* An environ key already made into a str: requests carry the same twenty or
 * so CGI and header names, and a shared str spares decoding and hashing one
 * anew for each, and lets the app's lookups match it by identity. */
#define VV_KEY_SLOTS 128 /* a power of two; at most half are filled */
typedef struct vv_key {
    uint32_t hash;
    PyObject *str;               /* NULL: empty slot */
} vv_key;

/* One interpreter of one app. */
typedef struct vv_interp {
    uint64_t app_id;
    int isolation;              /* VV_ISOLATION_* */
    PyThreadState *boot_ts;     /* attaches this interpreter on the control thread
                                   (the main thread state in isolation main) */
    PyInterpreterState *state;
    int64_t interp_id;          /* PyInterpreterState_GetID, as Python shows it */
    int event_loop;             /* ASGI: one thread runs handler(worker_id, efd) */
    PyObject *handler;          /* WSGI: handler(environ, token) per request */
    PyObject *base_environ;     /* constant environ keys, copied per request */
    PyObject *boot_module;      /* this instance's vivarium_boot, for shutdown */
    struct vv_key *keys;        /* environ keys seen, VV_KEY_SLOTS; GIL held */
    int nkeys;
    char *name;                 /* the app, for the death notice */
    /* The thread importing the app while vv_interp_boot runs (GIL held to
     * change): what a start_timeout interrupts. */
    PyThreadState *boot_thread_ts;
    unsigned long boot_tid;
    int nworkers;
    vv_worker *workers;
} vv_interp;

/* What Go hands to vv_interp_new. Strings are NUL-terminated UTF-8. */
typedef struct vv_app_config {
    uint64_t app_id;
    const char *name;           /* the app as the log names it */
    const char *kind;           /* "wsgi" or "asgi" */
    int isolation;              /* VV_ISOLATION_* */
    const char *module;         /* "pkg.module:attr" */
    const char *working_dir;    /* absolute, or "" */
    const char *venv;           /* absolute, or "" */
    const char *options;        /* JSON object of adapter options (lifespan, threads) */
    int nsources;
    const char **source_names;  /* adapter modules: "vivarium_boot", ... */
    const char **sources;
    int *refused;               /* out, unless NULL: 1 when the start failed because an
                                   extension module refused the interpreter */
} vv_app_config;

/* Go packs request data and events little-endian (plugin/environ.go, plugin/loop.go). */
static inline uint64_t vv_le(const char *p, int nbytes)
{
    const unsigned char *u = (const unsigned char *)p;
    uint64_t v = 0;
    for (int i = 0; i < nbytes; i++)
        v |= (uint64_t)u[i] << (8 * i);
    return v;
}

/* What vv_interrupt found. */
#define VV_INTERRUPT_DONE 0  /* stack taken (and the exception scheduled) */
#define VV_INTERRUPT_GONE 1  /* the target no longer runs what was meant */
/* The exception vv_interrupt schedules (classes of the _vivarium module). */
#define VV_RAISE_NONE 0
#define VV_RAISE_REQUEST_TIMEOUT 1
#define VV_RAISE_START_TIMEOUT 2
/* What where() in vivarium_boot told of the target thread. */
typedef struct vv_where {
    int state;                  /* VV_INTERRUPT_* */
    int owns;                   /* it runs the request meant (always, for 0) */
    int idle;                   /* an event loop waiting for events */
    char *stack;                /* malloc'd; NULL when gone */
} vv_where;

/* subinterp.c: called from Go's single control thread only, but for
 * vv_interp_boot, which runs on a thread of its own. */
int vv_runtime_init(const char *main_source, char **err);
vv_interp *vv_interp_new(const vv_app_config *cfg, int nworkers, char **err);
int vv_interp_boot(vv_interp *in, const vv_app_config *cfg, char **err);
int vv_interp_start(vv_interp *in, const int *worker_ids, char **err);
void vv_interp_join(vv_interp *in);
void vv_interp_end(vv_interp *in);
char *vv_interp_report(vv_interp *in);
const char *vv_python_version(void);
char *vv_format_exception(void);
void vv_log_exception(uint64_t app_id, const char *what);

/* mainhooks.c: the main interpreter's part in app boots (control thread). */
extern PyMethodDef vv_boot_share_methods[];
void vv_boot_share_clear(void);
int vv_main_hooks_install(const char *source, char **err);
void vv_main_hooks_boot_ended(void);

/* worker.c */
void *vv_worker_main(void *arg);
void *vv_loop_main(void *arg);
void vv_worker_wake(vv_worker *w);
int vv_loop_wake(vv_worker *w);
int vv_loop_idle(vv_worker *w, int epfd);
int vv_worker_reserve(vv_worker *w, size_t n);
uint64_t vv_worker_demand(vv_worker *w, int *runnable);
uint64_t vv_worker_in_python(vv_worker *w);
int vv_worker_runs(vv_worker *w, uint32_t seq);

/* interrupt.c: each call on a thread of its own, outside the control thread;
 * it blocks until it has the interpreter's GIL. */
vv_where vv_interrupt_worker(vv_worker *w, int64_t seq, uint64_t token, int raise);
vv_where vv_interrupt_boot(vv_interp *in, int raise);
void vv_request_over(vv_worker *w);

/* crash.c: the death notice on a fatal signal. */
void vv_crash_init(void);
void vv_crash_register(vv_interp *in);
void vv_crash_unregister(vv_interp *in);
void vv_crash_thread(vv_interp *in, vv_worker *w);
void vv_crash_in_go(int in_go);
void vv_crash_begin(uint64_t token, const char *desc, size_t len);
void vv_crash_end(uint64_t token);
vv_interp *vv_thread_interp(void);
vv_worker *vv_thread_worker(void);
/* Brackets a call into Go, whose faults are Go's to handle. */
#define VV_IN_GO(call) (vv_crash_in_go(1), (call), vv_crash_in_go(0))

/* memory.c: bytes in the pymalloc arenas of the interpreter's own allocator;
 * callable from any thread without the GIL while the interpreter lives. */
size_t vv_interp_arena_bytes(const vv_interp *in);

/* bridge.c */
/* vv_bridge_install: _vivarium in the main interpreter, as vivarium_main needs it. */
int vv_bridge_install(void);
int vv_bridge_bind(uint64_t app_id);
PyObject *vv_bridge_exception(int raise);

/* Implemented in Go (plugin/bridge.go). Called without the GIL held. */
/* vvServe: 1 run the request now in buf, 0 sleep on `wake` then ask again, -1 exit. */
extern int vvServe(vv_worker *w, char *head, size_t head_len, char *body, size_t body_len, int flags);
extern int vvSend(uint64_t token, char *head, size_t head_len, char *body, size_t body_len, int flags);
/* vvRead: > 0 bytes read, 0 at the end of the body, or one of these. */
#define VV_READ_GONE (-1)      /* the client went away */
#define VV_READ_MALFORMED (-2) /* what the client sent is not a valid body */
extern ptrdiff_t vvRead(uint64_t token, char *buf, size_t n);
extern void vvLog(uint64_t app_id, int level, char *msg, size_t msg_len);
extern int vvPoll(int worker_id, char **buf, size_t *len);
extern int vvPost(uint64_t token, int kind, char *a, size_t a_len, char *b, size_t b_len, int flags);
extern void vvReady(int worker_id, char *err, size_t err_len);

#endif
