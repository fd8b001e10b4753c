package plugin

/*
#include <stdlib.h>
#include "vivarium.h"
*/
import "C"

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"go.uber.org/zap"

	"github.com/vivarium-dev/vivarium/pyadapters"
)

// appConfig is what one app instance is started from.
type appConfig struct {
	metrics      *appMetrics // shared by the instances of one app name
	kind         string      // "wsgi" or "asgi"
	module       string
	lifespan     bool
	isolation    int // VV_ISOLATION_*
	workingDir   string
	venv         string
	interpreters int
	threads      int
	maxQueue     int
	options      map[string]any // more adapter options (python-check's)
	controls     controls
	user, group  string // isolation process: who its processes run as
}

// app is one running instance of a `python` block: its interpreters, their
// worker threads and the scheduler in front of them. A config reload starts a
// new instance and stops the old one.
type app struct {
	id        uint64
	cfg       appConfig
	logger    *zap.Logger
	pool      *pool          // WSGI in this process only: the queue and its scheduler
	interps   []*interpreter // guarded by mu: recycling replaces them
	metrics   *appMetrics
	startedAt time.Time
	state     atomic.Int32 // appStarting ... appEnded
	// Held to read a live interpreter's C half (snapshot.go), and to change
	// interps.
	mu sync.RWMutex
	// Closed once stop is done (stop.go).
	done chan struct{}

	// Recycling (recycle.go): one replacement at a time.
	recycleMu  sync.Mutex
	recycleOff atomic.Bool // a replacement failed to start
	memoryOff  atomic.Bool // a fresh interpreter is over max_memory already
	procs      *processApp // isolation process: its processes (process.go)
}

// interpreter is one of an app's interpreters and its worker threads.
type interpreter struct {
	c            *C.vv_interp
	guard        *interpGuard // keeps c alive while a timeout reaches into it
	id           int64        // Python's interpreter id
	ownAllocator bool         // isolation interpreter: its memory can be told apart
	ended        bool         // guarded by app.mu; c is freed once set
	workers      []*worker
	loop         *loop // ASGI only

	recycling
	owner     *app
	poolIndex int
	endOnce   sync.Once
	gone      chan struct{} // closed once it is ended (stop.go)
}

var (
	apps   sync.Map // id -> *app, for log lines coming from C
	appSeq atomic.Uint64
)

func startApp(cfg appConfig, logger *zap.Logger) (*app, error) {
	cfg.controls = cfg.controls.withDefaults()
	a := &app{
		id:        appSeq.Add(1),
		cfg:       cfg,
		logger:    logger,
		metrics:   cfg.metrics,
		startedAt: time.Now(),
		done:      make(chan struct{}),
	}
	if cfg.kind == "wsgi" && cfg.isolation != isolationProcessCode {
		a.pool = newPool(cfg.interpreters, cfg.maxQueue)
	}
	apps.Store(a.id, a)
	start := a.startInterpreters
	if cfg.isolation == isolationProcessCode {
		start = a.startProcesses
	}
	if err := start(); err != nil {
		a.stop()
		return nil, err
	}
	a.state.Store(appServing)
	a.metrics.addInstance(a)
	return a, nil
}

// startInterpreters starts the app's interpreters. Own-GIL interpreters
// start side by side: the control thread creates them one at a time, as the
// runtime requires, and each imports the app on a thread of its own under its
// own GIL, so a start (and a restart's wait for it) takes about one import, not
// one per interpreter. Interpreters that share a GIL would only take turns.
// On failure the first error by index is returned, once every start is over.
func (a *app) startInterpreters() error {
	n := a.cfg.interpreters
	if n < 2 || a.cfg.isolation != isolationCodes[isolationInterpreter] {
		for i := 0; i < n; i++ {
			if _, err := a.startInterpreter(i); err != nil {
				return err
			}
		}
		return nil
	}
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = a.startInterpreter(i)
		}()
	}
	wg.Wait()
	// In pool order, as a serial start leaves them.
	a.mu.Lock()
	sort.Slice(a.interps, func(i, j int) bool { return a.interps[i].poolIndex < a.interps[j].poolIndex })
	a.mu.Unlock()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// cStrings allocates C copies of ss; free them with freeCStrings.
func cStrings(ss ...string) []*C.char {
	out := make([]*C.char, len(ss))
	for i, s := range ss {
		out[i] = C.CString(s)
	}
	return out
}

func freeCStrings(cs []*C.char) {
	for _, c := range cs {
		C.free(unsafe.Pointer(c))
	}
}

// newInterpreter creates one interpreter for cfg on the control thread, with
// nworkers worker slots not yet started, and imports the app into it on a
// thread of its own, within the app's start_timeout (startup.go).
func newInterpreter(cfg appConfig, appID uint64, nworkers int) (*C.vv_interp, error) {
	in, _, err := newGuardedInterpreter(cfg, appID, nworkers, nil)
	return in, err
}

func newGuardedInterpreter(cfg appConfig, appID uint64, nworkers int, logger *zap.Logger) (*C.vv_interp, *interpGuard, error) {
	sources := pyadapters.Sources(cfg.kind)
	names := make([]string, len(sources))
	codes := make([]string, len(sources))
	for i, s := range sources {
		names[i], codes[i] = s.Name, s.Code
	}
	opts := cfg.adapterOptions()
	for k, v := range cfg.options {
		opts[k] = v
	}
	options, _ := json.Marshal(opts)
	strs := cStrings(cfg.kind, cfg.module, cfg.workingDir, cfg.venv, string(options), cfg.displayName())
	cnames, ccodes := cStrings(names...), cStrings(codes...)
	// The arrays of pointers live in C memory: cgo forbids passing Go memory
	// that holds pointers.
	ptrSize := C.size_t(unsafe.Sizeof((*C.char)(nil)))
	nameArr := (**C.char)(C.malloc(ptrSize * C.size_t(len(sources))))
	codeArr := (**C.char)(C.malloc(ptrSize * C.size_t(len(sources))))
	copy(unsafe.Slice(nameArr, len(sources)), cnames)
	copy(unsafe.Slice(codeArr, len(sources)), ccodes)
	refused := (*C.int)(C.calloc(1, C.size_t(unsafe.Sizeof(C.int(0)))))
	// Freed once the import is over, which may be after a start_timeout.
	free := func() {
		freeCStrings(strs)
		freeCStrings(cnames)
		freeCStrings(ccodes)
		C.free(unsafe.Pointer(nameArr))
		C.free(unsafe.Pointer(codeArr))
		C.free(unsafe.Pointer(refused))
	}

	ccfg := &C.vv_app_config{
		app_id:       C.uint64_t(appID),
		name:         strs[5],
		kind:         strs[0],
		module:       strs[1],
		working_dir:  strs[2],
		venv:         strs[3],
		options:      strs[4],
		isolation:    C.int(cfg.isolation),
		nsources:     C.int(len(sources)),
		source_names: nameArr,
		sources:      codeArr,
		refused:      refused,
	}
	var in *C.vv_interp
	var cerr *C.char
	var initErr error
	onControlThread(func() {
		if control.initErr != nil {
			initErr = control.initErr
			return
		}
		in = C.vv_interp_new(ccfg, C.int(nworkers), &cerr)
	})
	if initErr != nil {
		free()
		return nil, nil, initErr
	}
	if in == nil {
		free()
		return nil, nil, errors.New(takeCString(cerr))
	}
	g := &interpGuard{}
	failed := func(cerr *C.char) error {
		return &startError{msg: takeCString(cerr), refused: *refused != 0}
	}
	if err := bootInterpreter(in, g, ccfg, failed, free, cfg.controls.startTimeout, logger); err != nil {
		return nil, nil, err
	}
	return in, g, nil
}

// startError is an interpreter that did not start; refused when an extension
// module of the app refused the interpreter's isolation.
type startError struct {
	msg     string
	refused bool
}

func (e *startError) Error() string { return e.msg }

func (a *app) startInterpreter(index int) (*interpreter, error) {
	// An ASGI interpreter has one thread, running its event loop; `threads`
	// sizes that loop's executor instead.
	nthreads := a.cfg.threads
	if a.cfg.kind == "asgi" {
		nthreads = 1
	}
	started := time.Now()
	in, guard, err := newGuardedInterpreter(a.cfg, a.id, nthreads, a.logger)
	if err != nil {
		return nil, err
	}
	var cerr *C.char
	interp := &interpreter{c: in, guard: guard, id: int64(in.interp_id), owner: a, poolIndex: index,
		ownAllocator: a.cfg.isolation == isolationInterpreterCode}
	interp.limit = requestLimit(a.cfg.controls.maxRequests)
	a.mu.Lock()
	a.interps = append(a.interps, interp)
	a.mu.Unlock()
	if a.cfg.kind == "asgi" {
		l, err := newLoop()
		if err != nil {
			return interp, fmt.Errorf("cannot create an eventfd: %w", err)
		}
		interp.loop = l
		l.host = interp
	}

	ids := (*C.int)(C.malloc(C.size_t(unsafe.Sizeof(C.int(0))) * C.size_t(nthreads)))
	defer C.free(unsafe.Pointer(ids))
	idSlice := unsafe.Slice(ids, nthreads)
	cworkers := unsafe.Slice(in.workers, nthreads)
	for i := range idSlice {
		id, ok := allocWorkerID()
		if !ok {
			return interp, fmt.Errorf("more than %d worker threads in one process", maxWorkers)
		}
		w := &worker{id: id, c: &cworkers[i], loop: interp.loop, host: interp}
		if a.pool != nil {
			a.pool.addWorker(index, w)
		}
		if interp.loop != nil {
			cworkers[i].efd = C.int(interp.loop.efd)
			interp.loop.cw = &cworkers[i]
		}
		workerTable[id].Store(w)
		interp.workers = append(interp.workers, w)
		idSlice[i] = C.int(id)
	}
	if C.vv_interp_start(in, ids, &cerr) != 0 {
		return interp, errors.New(takeCString(cerr))
	}
	if interp.loop != nil {
		// Lifespan startup runs on the loop before any traffic.
		if err := a.awaitReady(interp, started); err != nil {
			return interp, err
		}
		interp.loop.serving.Store(true)
	}
	a.logger.Info("interpreter started",
		zap.Int("interpreter", index),
		zap.Int64("interpreter_id", interp.id),
		zap.Int("threads", a.cfg.threads),
		zap.Duration("took", time.Since(started)))
	return interp, nil
}

// logAppLine writes a line from an app's interpreter to the app's logger.
func logAppLine(appID uint64, kind int, text string) {
	v, ok := apps.Load(appID)
	if !ok {
		return
	}
	logger := v.(*app).logger
	switch kind {
	case logStdout:
		logger.Info(text, zap.String("stream", "stdout"))
	case logStderr:
		logger.Info(text, zap.String("stream", "stderr"))
	default:
		msg, detail, _ := strings.Cut(text, "\n")
		if detail == "" {
			logger.Error(msg)
		} else {
			logger.Error(msg, zap.String("traceback", detail))
		}
	}
}
