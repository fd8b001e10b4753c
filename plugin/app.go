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
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"go.uber.org/zap"

	"github.com/vivarium-dev/vivarium/pyadapters"
)

// drainTimeout bounds how long an app being replaced or stopped may take to
// finish the requests it already has.
const drainTimeout = 30 * time.Second

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
	user, group  string         // isolation process: who its processes run as
}

// app is one running instance of a `python` block: its interpreters, their
// worker threads and the scheduler in front of them. A config reload starts a
// new instance and stops the old one.
type app struct {
	id      uint64
	cfg     appConfig
	logger  *zap.Logger
	pool    *pool
	interps []*interpreter
	metrics *appMetrics
	started time.Time
	state   atomic.Int32 // appStarting ... appEnded
	mu      sync.Mutex   // held to read a live interpreter's C half (snapshot.go)
	procs   *processApp  // isolation process: its processes (process.go)
}

// interpreter is one of an app's interpreters and its worker threads.
type interpreter struct {
	c            *C.vv_interp
	id           int64 // Python's interpreter id
	ownAllocator bool  // isolation interpreter: its memory can be told apart
	ended        bool  // guarded by app.mu; c is freed once set
	workers      []*worker
	loop         *loop // ASGI only
}

var (
	apps   sync.Map // id -> *app, for log lines coming from C
	appSeq atomic.Uint64
)

func startApp(cfg appConfig, logger *zap.Logger) (*app, error) {
	a := &app{
		id:      appSeq.Add(1),
		cfg:     cfg,
		logger:  logger,
		pool:    newPool(cfg.interpreters, cfg.maxQueue),
		metrics: cfg.metrics,
		started: time.Now(),
	}
	apps.Store(a.id, a)
	if cfg.isolation == isolationProcessCode {
		if err := a.startProcesses(); err != nil {
			a.stop()
			return nil, err
		}
		a.state.Store(appServing)
		a.metrics.addInstance(a)
		return a, nil
	}
	for i := 0; i < cfg.interpreters; i++ {
		if err := a.startInterpreter(i); err != nil {
			a.stop()
			return nil, err
		}
	}
	a.state.Store(appServing)
	a.metrics.addInstance(a)
	return a, nil
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

// newInterpreter creates and boots one interpreter for cfg on the control
// thread, with nworkers worker slots not yet started.
func newInterpreter(cfg appConfig, appID uint64, nworkers int) (*C.vv_interp, error) {
	sources := pyadapters.Sources(cfg.kind)
	names := make([]string, len(sources))
	codes := make([]string, len(sources))
	for i, s := range sources {
		names[i], codes[i] = s.Name, s.Code
	}
	opts := map[string]any{"lifespan": cfg.lifespan, "threads": cfg.threads}
	for k, v := range cfg.options {
		opts[k] = v
	}
	options, _ := json.Marshal(opts)
	strs := cStrings(cfg.kind, cfg.module, cfg.workingDir, cfg.venv, string(options))
	defer freeCStrings(strs)
	cnames, ccodes := cStrings(names...), cStrings(codes...)
	defer freeCStrings(cnames)
	defer freeCStrings(ccodes)
	// The arrays of pointers live in C memory: cgo forbids passing Go memory
	// that holds pointers.
	ptrSize := C.size_t(unsafe.Sizeof((*C.char)(nil)))
	nameArr := (**C.char)(C.malloc(ptrSize * C.size_t(len(sources))))
	codeArr := (**C.char)(C.malloc(ptrSize * C.size_t(len(sources))))
	defer C.free(unsafe.Pointer(nameArr))
	defer C.free(unsafe.Pointer(codeArr))
	copy(unsafe.Slice(nameArr, len(sources)), cnames)
	copy(unsafe.Slice(codeArr, len(sources)), ccodes)
	refused := (*C.int)(C.calloc(1, C.size_t(unsafe.Sizeof(C.int(0)))))
	defer C.free(unsafe.Pointer(refused))

	ccfg := C.vv_app_config{
		app_id:       C.uint64_t(appID),
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
		in = C.vv_interp_new(&ccfg, C.int(nworkers), &cerr)
	})
	if initErr != nil {
		return nil, initErr
	}
	if in == nil {
		return nil, &startError{msg: takeCString(cerr), refused: *refused != 0}
	}
	return in, nil
}

// startError is an interpreter that did not start; refused when an extension
// module of the app refused the interpreter's isolation.
type startError struct {
	msg     string
	refused bool
}

func (e *startError) Error() string { return e.msg }

func (a *app) startInterpreter(index int) error {
	// An ASGI interpreter has one thread, running its event loop; `threads`
	// sizes that loop's executor instead.
	nthreads := a.cfg.threads
	if a.cfg.kind == "asgi" {
		nthreads = 1
	}
	started := time.Now()
	in, err := newInterpreter(a.cfg, a.id, nthreads)
	if err != nil {
		return err
	}
	var cerr *C.char
	interp := &interpreter{c: in, id: int64(in.interp_id), ownAllocator: a.cfg.isolation == isolationCodes[isolationInterpreter]}
	a.interps = append(a.interps, interp)
	if a.cfg.kind == "asgi" {
		l, err := newLoop()
		if err != nil {
			return fmt.Errorf("cannot create an eventfd: %w", err)
		}
		interp.loop = l
	}

	ids := (*C.int)(C.malloc(C.size_t(unsafe.Sizeof(C.int(0))) * C.size_t(nthreads)))
	defer C.free(unsafe.Pointer(ids))
	idSlice := unsafe.Slice(ids, nthreads)
	cworkers := unsafe.Slice(in.workers, nthreads)
	for i := range idSlice {
		id, ok := allocWorkerID()
		if !ok {
			return fmt.Errorf("more than %d worker threads in one process", maxWorkers)
		}
		w := &worker{id: id, c: &cworkers[i], loop: interp.loop}
		a.pool.addWorker(index, w)
		if interp.loop != nil {
			cworkers[i].efd = C.int(interp.loop.efd)
		}
		workerTable[id].Store(w)
		interp.workers = append(interp.workers, w)
		idSlice[i] = C.int(id)
	}
	if C.vv_interp_start(in, ids, &cerr) != 0 {
		return errors.New(takeCString(cerr))
	}
	if interp.loop != nil {
		// Lifespan startup runs on the loop before any traffic.
		if msg := <-interp.loop.ready; msg != "" {
			return errors.New(msg)
		}
	}
	a.logger.Info("interpreter started",
		zap.Int("interpreter", index),
		zap.Int64("interpreter_id", interp.id),
		zap.Int("threads", a.cfg.threads),
		zap.Duration("took", time.Since(started)))
	return nil
}

// stop lets the workers finish what they have, then ends the interpreters.
func (a *app) stop() {
	for {
		s := a.state.Load()
		if s >= appDraining {
			return // stopped already
		}
		if a.state.CompareAndSwap(s, appDraining) {
			break
		}
	}
	if a.procs != nil {
		a.procs.stop()
		apps.Delete(a.id)
		a.state.Store(appEnded)
		a.metrics.removeInstance(a)
		return
	}
	a.pool.close()
	for _, in := range a.interps {
		if in.loop != nil {
			// Lifespan shutdown runs, open WebSockets are told the server goes away.
			in.loop.post(evShutdown, 0)
			close(in.loop.closing)
		}
	}
	var wg sync.WaitGroup
	for _, in := range a.interps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			C.vv_interp_join(in.c)
			a.mu.Lock()
			in.ended = true
			a.mu.Unlock()
			onControlThread(func() { C.vv_interp_end(in.c) })
			for _, w := range in.workers {
				freeWorkerID(w.id)
			}
			if in.loop != nil {
				close(in.loop.exited)
				in.loop.close()
			}
		}()
	}
	ended := make(chan struct{})
	go func() {
		wg.Wait()
		apps.Delete(a.id)
		a.state.Store(appEnded)
		a.metrics.removeInstance(a)
		close(ended)
	}()
	select {
	case <-ended:
	case <-time.After(drainTimeout):
		// Python running a request cannot be cut short safely; the
		// interpreter ends on its own once its requests return.
		a.logger.Error("app did not finish its requests in time; its interpreters end when they do",
			zap.Duration("waited", drainTimeout))
	}
}

// logAppLine writes a line from an app's interpreter to the app's logger.
func logAppLine(appID uint64, kind int, text string) {
	v, ok := apps.Load(appID)
	if !ok {
		return
	}
	logger := v.(*app).logger
	switch kind {
	case C.VV_LOG_STDOUT:
		logger.Info(text, zap.String("stream", "stdout"))
	case C.VV_LOG_STDERR:
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
