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
	wake   chan *request // nil: exit
	cur    *request
	seq    uint32
	busy   bool // counted in interp.busy; guarded by pool.mu
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
}

func newPool(interpreters, maxQueue int) *pool {
	p := &pool{maxQueue: maxQueue, interps: make([]*interpLoad, interpreters)}
	for i := range p.interps {
		p.interps[i] = &interpLoad{}
	}
	return p
}

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
		p.mu.Unlock()
		w.wake <- req
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

// next is called by a worker whose previous request (if any) is finished. It
// returns the next request to run, or nil when the worker must exit.
func (p *pool) next(w *worker) *request {
	p.mu.Lock()
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
			p.mu.Unlock()
			return req
		}
	}
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	w.interp.idle = append(w.interp.idle, w)
	p.mu.Unlock()
	for req := range w.wake {
		if req == nil {
			return nil
		}
		if req.state.CompareAndSwap(stateQueued, stateRunning) {
			return req
		}
		// Its client left between hand-off and wake-up: idle again.
		p.mu.Lock()
		w.interp.busy--
		w.busy = false
		if p.closed {
			p.mu.Unlock()
			return nil
		}
		w.interp.idle = append(w.interp.idle, w)
		p.mu.Unlock()
	}
	return nil
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
	p.mu.Unlock()
	for _, w := range idle {
		w.wake <- nil
	}
}
