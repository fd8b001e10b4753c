package plugin

/*
#include "vivarium.h"
*/
import "C"

import (
	"errors"
	"sync"
)

// The scheduler of one app instance: it hands each request to an idle worker
// of the least busy interpreter (each interpreter has its own GIL, so spreading
// over interpreters is what buys parallelism), or queues it when every worker
// is busy. Invariant: the queue holds requests only while no worker is idle.
//
// An idle C worker sleeps in C, on its own semaphore, not inside a Go call:
// a goroutine parked on a C thread's locked M costs two scheduler hand-offs
// per wake-up, which profiling showed to be the largest cost per request.

var (
	errQueueFull = errors.New("queue full")
	errClosed    = errors.New("app is shutting down")
)

// worker is the Go side of one C worker thread.
type worker struct {
	id     int
	c      *C.vv_worker // its C half
	loop   *loop        // ASGI: the event loop this thread runs; nil for WSGI
	pool   *pool
	interp *interpLoad
	cur    *request // the request the thread is running
	seq    uint32

	// Guarded by pool.mu.
	assigned *request // handed over while the thread slept
	exit     bool
	busy     bool // counted in interp.busy
}

// interpLoad tracks one interpreter's busy and idle workers.
type interpLoad struct {
	busy int
	idle []*worker
}

type pool struct {
	mu       sync.Mutex
	interps  []*interpLoad
	queue    []*request // FIFO; head at queue[0]
	maxQueue int
	closed   bool
	wake     func(*worker) // wakes a sleeping worker thread
}

func newPool(interpreters, maxQueue int) *pool {
	p := &pool{maxQueue: maxQueue, interps: make([]*interpLoad, interpreters), wake: wakeWorker}
	for i := range p.interps {
		p.interps[i] = &interpLoad{}
	}
	return p
}

func wakeWorker(w *worker) { C.vv_worker_wake(w.c) }

// submit hands req to an idle worker or queues it.
func (p *pool) submit(req *request) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return errClosed
	}
	var best *interpLoad
	for _, in := range p.interps {
		if len(in.idle) > 0 && (best == nil || in.busy < best.busy) {
			best = in
		}
	}
	if best != nil {
		w := best.idle[len(best.idle)-1]
		best.idle = best.idle[:len(best.idle)-1]
		best.busy++
		w.busy = true
		w.assigned = req
		p.mu.Unlock()
		p.wake(w)
		return nil
	}
	if len(p.queue) >= p.maxQueue {
		p.mu.Unlock()
		return errQueueFull
	}
	p.queue = append(p.queue, req)
	p.mu.Unlock()
	return nil
}

// What next tells a worker thread to do.
const (
	nextRun  = iota // run the returned request
	nextIdle        // sleep until woken, then ask again
	nextExit        // end the thread
)

// next is called by a worker thread whose previous request, if any, is
// finished. It never blocks: with nothing to run, the worker is listed as
// idle and goes to sleep in C.
func (p *pool) next(w *worker) (*request, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if req := w.assigned; req != nil {
		w.assigned = nil
		if req.state.CompareAndSwap(stateQueued, stateRunning) {
			return req, nextRun
		}
		// Its client left between hand-off and wake-up.
	}
	if w.busy {
		w.interp.busy--
		w.busy = false
	}
	for len(p.queue) > 0 {
		req := p.queue[0]
		p.queue[0] = nil
		p.queue = p.queue[1:]
		if req.state.CompareAndSwap(stateQueued, stateRunning) {
			w.interp.busy++
			w.busy = true
			return req, nextRun
		}
	}
	if p.closed || w.exit {
		return nil, nextExit
	}
	w.interp.idle = append(w.interp.idle, w)
	return nil, nextIdle
}

// close stops new submissions; queued requests still run, then workers exit.
func (p *pool) close() {
	p.mu.Lock()
	p.closed = true
	var idle []*worker
	for _, in := range p.interps {
		idle = append(idle, in.idle...)
		in.idle = nil
	}
	for _, w := range idle {
		w.exit = true
	}
	p.mu.Unlock()
	for _, w := range idle {
		p.wake(w)
	}
}
