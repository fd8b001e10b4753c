package plugin

/*
#include "vivarium.h"
*/
import "C"

import (
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// The scheduler of one app instance: it hands each request to an idle worker
// of the least busy interpreter (each interpreter has its own GIL, so spreading
// over interpreters is what buys parallelism), or queues it when no
// interpreter may take it. Invariant: the queue holds requests only while
// every interpreter runs as many requests as its limit allows.
//
// An idle C worker sleeps in C, on its own semaphore, not inside a Go call:
// a goroutine parked on a C thread's locked M costs two scheduler hand-offs
// per wake-up, which profiling showed to be the largest cost per request.
//
// How many requests an interpreter runs at once adapts, between 1 and its
// thread count. Threads of one interpreter share one GIL: for an app that
// only computes, a second request in flight only queues for the GIL, in no
// particular order and with a context switch at each hand-off. Measured with
// Flask hello, 2 interpreters x 4 threads, with the limit and without, in 3
// alternating rounds: at 16 connections 19.7-20.6k against 16.4-17.3k req/s,
// p99 2.0-2.4 against 3.6-4.7 ms; at 64, 23.3-23.6k against 22.2-22.7k req/s,
// p99 5.9-6.1 against 7.8-8.0 ms. (Before the worker left the writing of
// responses to the handler goroutines while requests queue, the limit cost
// 8-10% of throughput at 64: the GIL sat idle while the one thread running
// wrote.) For an app that waits (on a database, a client, another request)
// the extra threads are what let it serve while it waits. So the limit starts
// at 1 and
//   - rises by one each tick (4 ms) while requests queue and the threads of
//     the interpreter, while they ran requests, wanted a CPU for less than
//     half of that time: the GIL sits idle while requests wait. Their time in
//     Go between requests does not count: there a thread may wait for one of
//     Go's Ps, which is no reason for more threads (counting it made the
//     limit climb for an app that does almost nothing in Python: raw WSGI
//     with 2 interpreters x 4 threads served 13-15% fewer requests, and did
//     0.62 against 0.77 of Caddy's respond in the bench). Nor does a tick
//     that finds one of the threads runnable: on a machine with more threads
//     to run than cores, a request that only computes spends ticks in the
//     run queue, and its wait there is not counted until it ends (seen in a
//     full test run as computing requests let in beside each other). A
//     request that waits on another request still queued is thus held up
//     for a few ticks at most;
//   - falls when requests, on average over a window, spent more than half of
//     it waiting for the GIL as they started: they queue on the GIL anyway,
//     and our FIFO queue does that better.

var (
	errQueueFull = errors.New("queue full")
	errClosed    = errors.New("app is shutting down")
)

const (
	// tickInterval is how often a pool with queued requests checks whether
	// an interpreter's threads wait on something other than a CPU. A thread's
	// run-queue wait is only counted when it gets a CPU, at best a scheduler
	// tick (4 ms at HZ=250) late, so a shorter interval misreads a machine
	// short of cores. A tick that finds a thread still runnable decides
	// nothing (tick).
	tickInterval = 4 * time.Millisecond
	// gilWindow is the period over which GIL waits are added up.
	gilWindow = 10 * time.Millisecond
)

// worker is the Go side of one C worker thread.
type worker struct {
	id    int
	c     *C.vv_worker // its C half
	loop  *loop        // ASGI: the event loop this thread runs; nil for WSGI
	pool  *pool
	sched *schedInterp // its interpreter, as the scheduler counts it
	cur   *request     // the request the thread is running
	seq   uint32
	host  *interpreter // the interpreter it runs in
	yield yielder      // in a child: its thread's yields to Go's scheduler (child.go)

	// Writing the last part of a response (request.finish): since when, and
	// how long all such writes took, for inPython.
	writeSince atomic.Int64
	wrote      atomic.Int64

	// Guarded by pool.mu.
	assigned *request // handed over while the thread slept
	exit     bool
	busy     bool          // counted in interp.busy
	calledIn bool          // its thread has called in: its C half is ready to be sampled
	exited   bool          // told to end its thread
	running  *http.Request // what it runs, for the admin API
}

// schedInterp tracks one interpreter's workers and how many requests it may run.
type schedInterp struct {
	busy     int
	idle     []*worker
	workers  []*worker
	limit    int    // requests it may run at once, 1..len(workers)
	requests uint64 // handed to its threads so far
	retired  bool   // being replaced (recycle.go): takes no more requests

	// For lowering the limit: GIL waits of the requests finished in the window.
	gilWait     int64 // ns
	windowStart int64

	// For raising it: its threads' CPU demand and their time running
	// requests, all told, at the last tick.
	demand    uint64
	ran       uint64
	sampledAt int64 // 0: none yet
}

type pool struct {
	mu       sync.Mutex
	interps  []*schedInterp
	queue    []*request // FIFO; head at queue[0]
	maxQueue int
	closed   bool
	ticking  bool         // a tick is scheduled
	queued   atomic.Int32 // len(queue), for readers without mu

	// The outside world, replaced in tests.
	wake     func(*worker)                // wakes a sleeping worker thread
	demand   func(*worker) (uint64, bool) // ns its thread has wanted a CPU; whether it is runnable now
	inPython func(*worker) uint64         // ns its thread has spent running requests
	clock    func() int64                 // monotonic ns
	after    func(func())                 // runs f one tick from now
}

var epoch = time.Now()

func newPool(interpreters, maxQueue int) *pool {
	p := &pool{
		maxQueue: maxQueue,
		interps:  make([]*schedInterp, interpreters),
		wake:     wakeWorker,
		demand:   workerDemand,
		inPython: workerInPython,
		clock:    func() int64 { return int64(time.Since(epoch)) },
		after:    func(f func()) { time.AfterFunc(tickInterval, f) },
	}
	for i := range p.interps {
		p.interps[i] = &schedInterp{limit: 1}
	}
	return p
}

// addWorker registers a worker of interpreter i before its thread starts.
func (p *pool) addWorker(i int, w *worker) {
	p.mu.Lock()
	defer p.mu.Unlock()
	in := p.interps[i]
	w.pool, w.sched = p, in
	in.workers = append(in.workers, w)
}

func workerDemand(w *worker) (uint64, bool) {
	var runnable C.int
	ns := C.vv_worker_demand(w.c, &runnable)
	return uint64(ns), runnable != 0
}

// workerInPython counts, besides its time in Python, the time the worker
// spent writing the last part of a response (vvServe, after Python): a
// thread blocked on a client that reads slowly waits, and other requests
// may have a thread meanwhile.
func workerInPython(w *worker) uint64 {
	ns := uint64(C.vv_worker_in_python(w.c)) + uint64(w.wrote.Load())
	if since := w.writeSince.Load(); since != 0 {
		ns += uint64(max(0, monotime()-since))
	}
	return ns
}

func wakeWorker(w *worker) { C.vv_worker_wake(w.c) }

// submit hands req to an idle worker or queues it.
func (p *pool) submit(req *request) error {
	if err := lockOpen(&p.mu, &p.closed); err != nil {
		return err
	}
	if best, ok := leastBusy(p.interps, func(in *schedInterp) (int, bool) {
		return in.busy, !in.retired && len(in.idle) > 0 && in.busy < in.limit
	}); ok {
		w := best.assign(req)
		p.mu.Unlock()
		p.wake(w)
		return nil
	}
	if len(p.queue) >= p.maxQueue {
		p.mu.Unlock()
		return errQueueFull
	}
	req.queuedAt = p.clock()
	p.queue = append(p.queue, req)
	p.queued.Store(int32(len(p.queue)))
	if !p.ticking && p.limited() {
		p.ticking = true
		p.after(p.tick)
	}
	p.mu.Unlock()
	return nil
}

// limited tells whether some interpreter runs fewer requests than it has
// threads, so that a tick could let it run more. Caller holds pool.mu.
func (p *pool) limited() bool {
	for _, in := range p.interps {
		if !in.retired && in.limit < len(in.workers) {
			return true
		}
	}
	return false
}

// pop removes the queue's head. Caller holds pool.mu; the queue is not empty.
func (p *pool) pop() *request {
	req := p.queue[0]
	p.queue[0] = nil
	p.queue = p.queue[1:]
	p.queued.Store(int32(len(p.queue)))
	req.waited = p.clock() - req.queuedAt
	return req
}

// assign gives req to one of the interpreter's idle workers and returns it,
// to be woken. Caller holds pool.mu.
func (in *schedInterp) assign(req *request) *worker {
	w := in.idle[len(in.idle)-1]
	in.idle = in.idle[:len(in.idle)-1]
	in.busy++
	w.busy = true
	w.assigned = req
	return w
}

// What next tells a worker thread to do.
const (
	nextRun  = iota // run the returned request
	nextIdle        // sleep until woken, then ask again
	nextExit        // end the thread
)

// next is called by a worker thread whose previous request, if any, is
// finished; gilWait is how long that request waited for the GIL to start. It
// never blocks: with nothing to run, the worker is listed as idle and goes to
// sleep in C.
func (p *pool) next(w *worker, gilWait int64) (*request, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	w.calledIn = true
	w.running = nil
	if req := w.assigned; req != nil {
		w.assigned = nil
		if req.state.CompareAndSwap(stateQueued, stateRunning) {
			w.running = req.r
			w.sched.requests++
			return req, nextRun
		}
		// Its client left between hand-off and wake-up.
	}
	in := w.sched
	if w.busy {
		in.busy--
		w.busy = false
		in.finished(gilWait, p.clock())
	}
	for len(p.queue) > 0 && in.busy < in.limit && !in.retired {
		if req := p.pop(); req.state.CompareAndSwap(stateQueued, stateRunning) {
			in.busy++
			in.requests++
			w.busy = true
			w.running = req.r
			return req, nextRun
		}
	}
	if in.retired || (p.closed || w.exit) && len(p.queue) == 0 {
		w.exited = true
		return nil, nextExit
	}
	in.idle = append(in.idle, w)
	return nil, nextIdle
}

// finished adds a finished request's GIL wait to the window and, at the
// window's end, lowers the limit by the number of requests that were on
// average queueing for the GIL, rounded.
func (in *schedInterp) finished(gilWait, now int64) {
	in.gilWait += gilWait
	elapsed := now - in.windowStart
	if elapsed < int64(gilWindow) {
		return
	}
	queued := int((2*in.gilWait + elapsed) / (2 * elapsed))
	in.limit = max(1, in.limit-queued)
	in.gilWait, in.windowStart = 0, now
}

// tick runs every tickInterval while requests queue. For each interpreter
// held back by its limit it measures, since the last tick, how long its
// threads wanted a CPU against how long they spent running requests; when
// they wanted one less than half that time, requests held the GIL's threads
// while waiting on something else, and the GIL sat idle while others queued,
// so it raises the limit and hands it queued requests.
func (p *pool) tick() {
	p.mu.Lock()
	var held []*schedInterp
	var sample [][]*worker
	if len(p.queue) > 0 {
		for _, in := range p.interps {
			if !in.retired && in.busy >= in.limit && in.limit < len(in.workers) {
				held = append(held, in)
				var ws []*worker
				for _, w := range in.workers {
					if w.calledIn {
						ws = append(ws, w)
					}
				}
				sample = append(sample, ws)
			}
		}
	}
	if len(held) == 0 {
		p.ticking = false
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()

	// Read outside the lock: a read of /proc per thread.
	demand := make([]uint64, len(held))
	ran := make([]uint64, len(held))
	// A thread on a CPU, or in the run queue for one, is not waiting on
	// something else; and the kernel counts a run-queue wait only once it
	// ends, so its demand may read short (vv_worker_demand).
	runnable := make([]bool, len(held))
	for i, ws := range sample {
		for _, w := range ws {
			ran[i] += p.inPython(w)
			d, r := p.demand(w)
			demand[i] += d
			runnable[i] = runnable[i] || r
		}
	}
	now := p.clock()

	p.mu.Lock()
	var wake []*worker
	for i, in := range held {
		prevDemand, prevRan, prevAt := in.demand, in.ran, in.sampledAt
		in.demand, in.ran, in.sampledAt = demand[i], ran[i], now
		if prevAt == 0 || now-prevAt > int64(4*tickInterval) || demand[i] < prevDemand || ran[i] < prevRan {
			continue // no baseline to compare with
		}
		if runnable[i] {
			continue // the next tick sees its wait counted
		}
		wanted, running := demand[i]-prevDemand, ran[i]-prevRan
		if running > 0 && 2*wanted < running && in.limit < len(in.workers) {
			in.limit++
			for in.busy < in.limit && len(in.idle) > 0 && len(p.queue) > 0 {
				wake = append(wake, in.assign(p.pop()))
			}
		}
	}
	p.after(p.tick)
	p.mu.Unlock()
	for _, w := range wake {
		p.wake(w)
	}
}

// close stops new submissions; queued requests still run, on every thread,
// then workers exit.
func (p *pool) close() {
	p.mu.Lock()
	p.closed = true
	var idle []*worker
	for _, in := range p.interps {
		in.limit = max(1, len(in.workers))
		idle = append(idle, in.idle...)
		in.idle = nil
	}
	p.exitIdle(idle)
}

// exitIdle tells idle workers to end their threads and wakes them. Caller
// holds p.mu, which exitIdle releases.
func (p *pool) exitIdle(idle []*worker) {
	for _, w := range idle {
		w.exit = true
	}
	p.mu.Unlock()
	for _, w := range idle {
		p.wake(w)
	}
}

// lockOpen locks mu, unless what it guards is closed: then errClosed, with
// mu not held.
func lockOpen(mu *sync.Mutex, closed *bool) error {
	mu.Lock()
	if *closed {
		mu.Unlock()
		return errClosed
	}
	return nil
}

// leastBusy is the item of lowest load among those open to one more
// request; ok is false when none is.
func leastBusy[T any](items []T, load func(T) (n int, open bool)) (best T, ok bool) {
	least := 0
	for _, it := range items {
		if n, open := load(it); open && (!ok || n < least) {
			best, least, ok = it, n, true
		}
	}
	return best, ok
}

// addInterp adds a pool slot for a new interpreter (recycle.go) and returns
// its index for addWorker.
func (p *pool) addInterp() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.interps = append(p.interps, &schedInterp{limit: 1})
	return len(p.interps) - 1
}

// retire stops handing requests to interpreter i: its idle workers exit, its
// busy ones once their request is done. Requests that wait go to the others.
func (p *pool) retire(i int) {
	p.mu.Lock()
	in := p.interps[i]
	in.retired = true
	idle := in.idle
	in.idle = nil
	p.exitIdle(idle)
}
