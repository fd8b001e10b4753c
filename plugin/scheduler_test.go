package plugin

import (
	"testing"
	"time"
)

// newTestPool builds a pool whose workers are plain Go values; waking one is
// recorded, time and the threads' CPU demand are what the test sets, a worker
// with a request runs it the whole time, and a tick runs when the test calls
// clock.tick.
func newTestPool(interps, threads, maxQueue int) (*pool, [][]*worker, *[]*worker) {
	p, ws, woken, _ := newTimedPool(interps, threads, maxQueue)
	return p, ws, woken
}

type testClock struct {
	now      int64
	demand   map[*worker]uint64
	inPython map[*worker]uint64
	runnable map[*worker]bool // on a CPU or in the run queue at the sample
	workers  []*worker
	pending  func()
}

// tick moves time on by d, during which each worker with a request ran it and
// each worker in wanting wanted a CPU for the whole of d, then runs the
// pending tick, if any.
func (c *testClock) tick(d time.Duration, wanting ...*worker) {
	c.now += int64(d)
	for _, w := range c.workers {
		if w.busy {
			c.inPython[w] += uint64(d)
		}
	}
	for _, w := range wanting {
		c.demand[w] += uint64(d)
	}
	if f := c.pending; f != nil {
		c.pending = nil
		f()
	}
}

func newTimedPool(interps, threads, maxQueue int) (*pool, [][]*worker, *[]*worker, *testClock) {
	p := newPool(interps, maxQueue)
	c := &testClock{
		now: 1, demand: map[*worker]uint64{}, inPython: map[*worker]uint64{}, runnable: map[*worker]bool{},
	}
	woken := &[]*worker{}
	p.wake = func(w *worker) { *woken = append(*woken, w) }
	p.clock = func() int64 { return c.now }
	p.demand = func(w *worker) (uint64, bool) { return c.demand[w], c.runnable[w] }
	p.inPython = func(w *worker) uint64 { return c.inPython[w] }
	p.after = func(f func()) { c.pending = f }
	ws := make([][]*worker, interps)
	for i := range ws {
		for j := 0; j < threads; j++ {
			w := &worker{}
			p.addWorker(i, w)
			ws[i] = append(ws[i], w)
			c.workers = append(c.workers, w)
			if _, what := p.next(w, 0); what != nextIdle {
				panic("a fresh worker should go idle")
			}
		}
	}
	return p, ws, woken, c
}

func queued() *request {
	req := &request{done: make(chan struct{}, 1)}
	req.state.Store(stateQueued)
	return req
}

func TestSubmitSpreadsOverInterpretersBeforeThreads(t *testing.T) {
	p, _, woken := newTestPool(2, 2, 10)
	for i := 0; i < 2; i++ {
		if err := p.submit(queued()); err != nil {
			t.Fatal(err)
		}
	}
	if p.interps[0].busy != 1 || p.interps[1].busy != 1 {
		t.Fatalf("two requests should land on two interpreters, busy = %d, %d", p.interps[0].busy, p.interps[1].busy)
	}
	if len(*woken) != 2 || (*woken)[0].sched == (*woken)[1].sched {
		t.Fatal("one worker of each interpreter should have been woken")
	}
}

func TestWokenWorkerRunsItsAssignedRequestThenGoesIdle(t *testing.T) {
	p, ws, _ := newTestPool(1, 1, 10)
	req := queued()
	_ = p.submit(req)
	w := ws[0][0]
	if got, what := p.next(w, 0); what != nextRun || got != req {
		t.Fatal("the woken worker should run the request handed to it")
	}
	if _, what := p.next(w, 0); what != nextIdle || p.interps[0].busy != 0 || len(p.interps[0].idle) != 1 {
		t.Fatalf("with nothing queued the worker should go idle; busy=%d idle=%d", p.interps[0].busy, len(p.interps[0].idle))
	}
}

func TestFullQueueRefusesAndQueuedRequestsRunInOrder(t *testing.T) {
	p, ws, _ := newTestPool(1, 1, 2)
	first, second, third := queued(), queued(), queued()
	for _, r := range []*request{first, second, third} {
		if err := p.submit(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.submit(queued()); err != errQueueFull {
		t.Fatalf("fourth request: got %v, want errQueueFull", err)
	}
	// Workers read the queue's length without the lock, to choose who writes
	// a response (request.finish).
	if n := p.queued.Load(); n != 2 {
		t.Fatalf("queued reads %d with two requests waiting", n)
	}
	w := ws[0][0]
	for i, want := range []*request{first, second, third} {
		if got, what := p.next(w, 0); what != nextRun || got != want {
			t.Fatalf("request %d ran out of order", i)
		}
	}
	if n := p.queued.Load(); n != 0 {
		t.Fatalf("queued reads %d with the queue empty", n)
	}
}

func TestCancelledRequestIsSkipped(t *testing.T) {
	p, ws, _ := newTestPool(1, 1, 5)
	running, gone, live := queued(), queued(), queued()
	_ = p.submit(running)
	w := ws[0][0]
	p.next(w, 0)
	_ = p.submit(gone)
	_ = p.submit(live)
	gone.state.CompareAndSwap(stateQueued, stateCancelled)
	if got, _ := p.next(w, 0); got != live {
		t.Fatal("a request whose client left while queued must not run")
	}
}

func TestCloseWakesIdleWorkersToExitAndRefusesNewRequests(t *testing.T) {
	p, ws, woken := newTestPool(1, 2, 5)
	p.close()
	if len(*woken) != 2 {
		t.Fatalf("close should wake both idle workers, woke %d", len(*woken))
	}
	for _, w := range ws[0] {
		if _, what := p.next(w, 0); what != nextExit {
			t.Fatal("a woken worker should exit after close")
		}
	}
	if err := p.submit(queued()); err != errClosed {
		t.Fatalf("submit after close: %v", err)
	}
}

// submitN submits n fresh requests and returns them.
func submitN(t *testing.T, p *pool, n int) []*request {
	t.Helper()
	reqs := make([]*request, n)
	for i := range reqs {
		reqs[i] = queued()
		if err := p.submit(reqs[i]); err != nil {
			t.Fatal(err)
		}
	}
	return reqs
}

func TestAnInterpreterStartsWithOneRequestAtATime(t *testing.T) {
	p, _, woken := newTestPool(1, 4, 10)
	submitN(t, p, 3)
	if len(*woken) != 1 || len(p.queue) != 2 {
		t.Fatalf("woke %d workers and queued %d requests, want 1 and 2", len(*woken), len(p.queue))
	}
}

func TestRequestsThatComputeKeepTheLimitAtOne(t *testing.T) {
	p, _, woken, clock := newTimedPool(1, 4, 10)
	submitN(t, p, 3)
	running := (*woken)[0]
	for i := 0; i < 20; i++ {
		clock.tick(tickInterval, running)
	}
	if p.interps[0].limit != 1 || len(*woken) != 1 {
		t.Fatalf("a thread that keeps a CPU busy should not get company: limit %d, woken %d", p.interps[0].limit, len(*woken))
	}
}

func TestRequestsThatComputeOnAMachineShortOfCoresKeepTheLimitAtOne(t *testing.T) {
	p, _, woken, clock := newTimedPool(1, 4, 10)
	submitN(t, p, 3)
	running := (*woken)[0]
	for round := 0; round < 4; round++ {
		// Five ticks in the run queue: the kernel has counted a quarter of
		// each as time on a CPU and none of the wait yet ...
		clock.runnable[running] = true
		for i := 0; i < 5; i++ {
			clock.demand[running] += uint64(tickInterval / 4)
			clock.tick(tickInterval)
		}
		// ... until the thread gets a CPU: then all of it at once.
		clock.demand[running] += uint64(5 * tickInterval * 3 / 4)
		clock.tick(tickInterval, running)
	}
	if p.interps[0].limit != 1 || len(*woken) != 1 {
		t.Fatalf("a thread waiting for a CPU should not get company: limit %d, woken %d", p.interps[0].limit, len(*woken))
	}
}

func TestThreadsWaitingOutsidePythonKeepTheLimitAtOne(t *testing.T) {
	p, _, woken, clock := newTimedPool(1, 4, 10)
	submitN(t, p, 3)
	// The worker has a request but neither runs Python nor wants a CPU: it
	// waits in Go, between requests, for one of Go's Ps.
	p.inPython = func(*worker) uint64 { return 0 }
	for i := 0; i < 20; i++ {
		clock.tick(tickInterval)
	}
	if p.interps[0].limit != 1 || len(*woken) != 1 {
		t.Fatalf("a thread waiting outside Python should not get company: limit %d, woken %d", p.interps[0].limit, len(*woken))
	}
}

func TestRequestsThatWaitRaiseTheLimitUpToTheThreads(t *testing.T) {
	p, _, woken, clock := newTimedPool(1, 4, 10)
	reqs := submitN(t, p, 5)
	// Nothing wants a CPU: the running requests wait (on I/O, a client, or
	// another request still in the queue).
	clock.tick(tickInterval) // the first tick only takes a baseline
	for want := 2; want <= 4; want++ {
		clock.tick(tickInterval)
		if p.interps[0].limit != want || len(*woken) != want {
			t.Fatalf("limit %d with %d workers woken, want %d", p.interps[0].limit, len(*woken), want)
		}
	}
	if len(p.queue) != 1 || p.queue[0] != reqs[4] {
		t.Fatal("with every thread busy the fifth request should wait in the queue")
	}
	clock.tick(tickInterval)
	if clock.pending != nil {
		t.Fatal("an interpreter at its thread count leaves nothing for a tick to do")
	}
}

func TestNoTicksWithoutAQueue(t *testing.T) {
	p, _, _, clock := newTimedPool(2, 4, 10)
	submitN(t, p, 2)
	if clock.pending != nil {
		t.Fatal("requests that found an idle worker should not start the ticks")
	}
	submitN(t, p, 1)
	if clock.pending == nil {
		t.Fatal("a queued request should start the ticks")
	}
}

func TestGILWaitsLowerTheLimit(t *testing.T) {
	p, ws, _, clock := newTimedPool(1, 4, 10)
	in := p.interps[0]
	in.limit = 4
	submitN(t, p, 5)
	for _, w := range ws[0] {
		p.next(w, 0) // each starts the request handed to it
	}
	clock.now += int64(gilWindow)
	in.finished(0, clock.now) // opens a window
	// Over one window, three requests each waited for the GIL the whole time;
	// the window is judged when the next request after its end finishes.
	clock.now += int64(gilWindow) - 1
	for i := 0; i < 3; i++ {
		in.finished(int64(gilWindow), clock.now)
	}
	clock.now++
	in.finished(0, clock.now)
	if in.limit != 1 {
		t.Fatalf("limit %d after three requests queued on the GIL all along, want 1", in.limit)
	}
	// A worker finishing while three others still run leaves the queued
	// request in the queue.
	if _, what := p.next(ws[0][0], 0); what != nextIdle || len(p.queue) != 1 {
		t.Fatal("a worker over the limit should go idle")
	}
}

func TestShortGILWaitsKeepTheLimit(t *testing.T) {
	p, _, _, clock := newTimedPool(1, 4, 10)
	in := p.interps[0]
	in.limit = 3
	clock.now += int64(gilWindow)
	in.finished(0, clock.now)
	clock.now += int64(gilWindow) - 1
	in.finished(int64(gilWindow)/4, clock.now)
	clock.now++
	in.finished(0, clock.now)
	if in.limit != 3 {
		t.Fatalf("a quarter of a request waiting on the GIL on average should not lower the limit; got %d", in.limit)
	}
}

func TestCloseRunsQueuedRequestsOnEveryThread(t *testing.T) {
	p, ws, woken := newTestPool(1, 3, 10)
	reqs := submitN(t, p, 3)
	p.close()
	if len(*woken) != 3 {
		t.Fatalf("woke %d workers, want the running one and both idle ones", len(*woken))
	}
	for i, w := range ws[0][:2] { // the idle ones, in the order they went idle
		if got, what := p.next(w, 0); what != nextRun || (got != reqs[1] && got != reqs[2]) {
			t.Fatalf("idle worker %d should take a queued request after close", i)
		}
	}
}

func TestARetiredInterpreterFinishesItsRequestAndTakesNoMore(t *testing.T) {
	p, ws, woken := newTestPool(1, 2, 10)
	old := ws[0]
	running := queued()
	if err := p.submit(running); err != nil {
		t.Fatal(err)
	}
	busy := (*woken)[0]
	if req, what := p.next(busy, 0); what != nextRun || req != running {
		t.Fatalf("the woken worker should run the request, got %v", what)
	}

	// A replacement comes in, then the old interpreter is retired.
	fresh := p.addInterp()
	nw := &worker{}
	p.addWorker(fresh, nw)
	if _, what := p.next(nw, 0); what != nextIdle {
		t.Fatal("the new interpreter's worker should go idle")
	}
	*woken = nil
	p.retire(0)
	idle := old[0]
	if idle == busy {
		idle = old[1]
	}
	if len(*woken) != 1 || (*woken)[0] != idle {
		t.Fatalf("retiring should wake the old interpreter's idle worker, woke %v", *woken)
	}
	if _, what := p.next(idle, 0); what != nextExit {
		t.Fatalf("the old idle worker should exit, got %v", what)
	}

	// New requests go to the replacement, even while the old one is busy.
	*woken = nil
	next := queued()
	if err := p.submit(next); err != nil {
		t.Fatal(err)
	}
	if len(*woken) != 1 || (*woken)[0] != nw {
		t.Fatalf("a new request should go to the replacement, woke %v", *woken)
	}
	// The busy old worker ends its request and exits, taking nothing queued.
	if err := p.submit(queued()); err != nil {
		t.Fatal(err)
	}
	if _, what := p.next(busy, 0); what != nextExit {
		t.Fatalf("the old busy worker should exit after its request, got %v", what)
	}
	if p.queued.Load() != 1 {
		t.Fatalf("the queued request should wait for the replacement, queue %d", p.queued.Load())
	}
}
