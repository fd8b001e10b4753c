package plugin

import (
	"testing"
)

// newTestPool builds a pool whose workers are plain Go values; waking one is recorded.
func newTestPool(interps, threads, maxQueue int) (*pool, [][]*worker, *[]*worker) {
	p := newPool(interps, maxQueue)
	woken := &[]*worker{}
	p.wake = func(w *worker) { *woken = append(*woken, w) }
	ws := make([][]*worker, interps)
	for i := range ws {
		for j := 0; j < threads; j++ {
			w := &worker{pool: p, interp: p.interps[i]}
			ws[i] = append(ws[i], w)
			if _, what := p.next(w); what != nextIdle {
				panic("a fresh worker should go idle")
			}
		}
	}
	return p, ws, woken
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
	if len(*woken) != 2 || (*woken)[0].interp == (*woken)[1].interp {
		t.Fatal("one worker of each interpreter should have been woken")
	}
}

func TestWokenWorkerRunsItsAssignedRequestThenGoesIdle(t *testing.T) {
	p, ws, _ := newTestPool(1, 1, 10)
	req := queued()
	_ = p.submit(req)
	w := ws[0][0]
	if got, what := p.next(w); what != nextRun || got != req {
		t.Fatal("the woken worker should run the request handed to it")
	}
	if _, what := p.next(w); what != nextIdle || p.interps[0].busy != 0 || len(p.interps[0].idle) != 1 {
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
	w := ws[0][0]
	for i, want := range []*request{first, second, third} {
		if got, what := p.next(w); what != nextRun || got != want {
			t.Fatalf("request %d ran out of order", i)
		}
	}
}

func TestCancelledRequestIsSkipped(t *testing.T) {
	p, ws, _ := newTestPool(1, 1, 5)
	running, gone, live := queued(), queued(), queued()
	_ = p.submit(running)
	w := ws[0][0]
	p.next(w)
	_ = p.submit(gone)
	_ = p.submit(live)
	gone.state.CompareAndSwap(stateQueued, stateCancelled)
	if got, _ := p.next(w); got != live {
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
		if _, what := p.next(w); what != nextExit {
			t.Fatal("a woken worker should exit after close")
		}
	}
	if err := p.submit(queued()); err != errClosed {
		t.Fatalf("submit after close: %v", err)
	}
}
