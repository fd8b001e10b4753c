package plugin

import (
	"testing"
	"time"
)

func newTestPool(interps, threads, maxQueue int) (*pool, [][]*worker) {
	p := newPool(interps, maxQueue)
	ws := make([][]*worker, interps)
	for i := range ws {
		for j := 0; j < threads; j++ {
			w := &worker{pool: p, interp: p.interps[i], wake: make(chan *request, 1)}
			ws[i] = append(ws[i], w)
			p.interps[i].idle = append(p.interps[i].idle, w)
		}
	}
	return p, ws
}

func queued() *request {
	req := &request{done: make(chan struct{}, 1)}
	req.state.Store(stateQueued)
	return req
}

func TestSubmitSpreadsOverInterpretersBeforeThreads(t *testing.T) {
	p, ws := newTestPool(2, 2, 10)
	for i := 0; i < 2; i++ {
		if err := p.submit(queued()); err != nil {
			t.Fatal(err)
		}
	}
	if p.interps[0].busy != 1 || p.interps[1].busy != 1 {
		t.Fatalf("two requests should land on two interpreters, busy = %d, %d", p.interps[0].busy, p.interps[1].busy)
	}
	_ = ws
}

func TestFullQueueRefusesAndQueuedRequestsRunInOrder(t *testing.T) {
	p, ws := newTestPool(1, 1, 2)
	first, second, third := queued(), queued(), queued()
	for _, r := range []*request{first, second, third} {
		if err := p.submit(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.submit(queued()); err != errQueueFull {
		t.Fatalf("fourth request: got %v, want errQueueFull", err)
	}
	w := ws[0][0]
	if got := <-w.wake; got != first {
		t.Fatal("the idle worker should get the first request")
	}
	first.state.Store(stateRunning)
	w.busy = true
	if got := p.next(w); got != second {
		t.Fatal("a finished worker should take the oldest queued request")
	}
	if got := p.next(w); got != third {
		t.Fatal("then the next one")
	}
}

func TestCancelledRequestIsSkipped(t *testing.T) {
	p, ws := newTestPool(1, 1, 5)
	running, gone, live := queued(), queued(), queued()
	_ = p.submit(running)
	<-ws[0][0].wake
	ws[0][0].busy = true
	_ = p.submit(gone)
	_ = p.submit(live)
	gone.state.CompareAndSwap(stateQueued, stateCancelled)
	if got := p.next(ws[0][0]); got != live {
		t.Fatal("a request whose client left while queued must not run")
	}
}

func TestCloseWakesIdleWorkersAndRefusesNewRequests(t *testing.T) {
	p, ws := newTestPool(1, 1, 5)
	w := ws[0][0]
	p.interps[0].idle = nil
	exited := make(chan *request)
	go func() { exited <- p.next(w) }()
	time.Sleep(10 * time.Millisecond)
	p.close()
	select {
	case r := <-exited:
		if r != nil {
			t.Fatal("an idle worker should be told to exit")
		}
	case <-time.After(time.Second):
		t.Fatal("idle worker was not woken by close")
	}
	if err := p.submit(queued()); err != errClosed {
		t.Fatalf("submit after close: %v", err)
	}
}
