package plugin

/*
#include "vivarium.h"
*/
import "C"

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"sync/atomic"

	"go.uber.org/zap"
)

// Recycling: an interpreter that has served max_requests requests, or whose
// heap has grown past max_memory, is replaced. The replacement is started
// first, while the old one goes on serving; then the old one takes no new
// requests, finishes those it has (stop.go bounds that) and is ended. No
// request is refused or dropped on the way: requests that come meanwhile go
// to the interpreters that serve.
//
// The heap is what the interpreter's own object allocator holds from the
// system: its arenas of small objects (runtime/memory.c).
// Objects above 512 bytes come from malloc, which the whole process shares,
// and are not counted. In isolation shared and main that allocator is the
// main interpreter's, shared by them all.

// recycling is the recycling state of one interpreter.
type recycling struct {
	count    atomic.Int64 // requests served
	limit    int64        // max_requests for this one, with its jitter; 0: none
	retiring atomic.Bool
}

// requestLimit draws an interpreter's max_requests: up to 10% more than
// configured, so that interpreters started together are not replaced together.
func requestLimit(n int) int64 {
	if n <= 0 {
		return 0
	}
	return int64(n) + rand.Int64N(int64(n)/10+1)
}

// heapBytes is the interpreter's heap now (memory.c reads it without the GIL).
func (in *interpreter) heapBytes() int64 {
	return int64(C.vv_interp_arena_bytes(in.c))
}

// served counts a finished request of in and starts its replacement when it
// is due. Called once per request, by the worker or handler that ends it.
func (in *interpreter) served() {
	a := in.owner
	n := in.count.Add(1)
	if a == nil || in.retiring.Load() || a.recycleOff.Load() {
		return
	}
	ctl := a.cfg.controls
	var cause string
	switch {
	// Only the request that made the count: one that came after it may get
	// here first, and the log would name a count past the limit.
	case in.limit > 0 && n == in.limit:
		cause = fmt.Sprintf("max_requests %d reached: %d requests served", ctl.maxRequests, n)
	case ctl.maxMemory > 0 && !a.memoryOff.Load() && in.heapBytes() > ctl.maxMemory:
		cause = fmt.Sprintf("max_memory %s exceeded: its heap is %s", sizeText(ctl.maxMemory), sizeText(in.heapBytes()))
	default:
		return
	}
	if in.retiring.CompareAndSwap(false, true) {
		go a.recycle(in, cause, n)
	}
}

func sizeText(n int64) string {
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}

// recycle replaces old with a new interpreter, one replacement at a time.
func (a *app) recycle(old *interpreter, cause string, served int64) {
	a.recycleMu.Lock()
	locked := true
	defer func() {
		if locked {
			a.recycleMu.Unlock()
		}
	}()
	if a.stopped() {
		return
	}
	a.logger.Info("recycling an interpreter: "+cause, zap.Int64("interpreter", old.id), zap.Int64("served", served))
	// The metric's reason is the directive that caused it: the cause's first word.
	reason, _, _ := strings.Cut(cause, " ")
	a.metrics.Restarted(reason)
	index := 0 // an event loop's interpreter has no pool slot
	if a.pool != nil {
		index = a.pool.addInterp()
	}
	fresh, err := a.startInterpreter(index)
	if err != nil {
		if fresh != nil {
			a.discard(fresh)
		}
		a.recycleOff.Store(true)
		a.logger.Error("cannot recycle the interpreter: its replacement failed to start, so it goes on serving and "+
			"recycling is off for this app", zap.Int64("interpreter", old.id), zap.Error(err))
		return
	}
	if ctl := a.cfg.controls; ctl.maxMemory > 0 && fresh.heapBytes() > ctl.maxMemory {
		a.memoryOff.Store(true)
		a.logger.Error(fmt.Sprintf("max_memory %s is below the heap of a freshly started interpreter (%s): recycling "+
			"on memory is off for this app; raise max_memory", sizeText(ctl.maxMemory), sizeText(fresh.heapBytes())))
	}
	a.retire(old)
	ended := a.endInterpreters([]*interpreter{old})
	// The next replacement, or a stop, need not wait for this one to drain.
	a.recycleMu.Unlock()
	locked = false
	go func() {
		<-ended
		a.forget(old)
		a.logger.Info("interpreter recycled", zap.Int64("old", old.id), zap.Int64("new", fresh.id),
			zap.Int64("served", old.count.Load()))
	}()
	a.awaitEnd([]*interpreter{old}, ended, fmt.Sprintf("recycled interpreter %d", old.id))
}

// discard stops and forgets an interpreter that failed to start.
func (a *app) discard(in *interpreter) {
	a.retire(in)
	ended := a.endInterpreters([]*interpreter{in})
	go func() {
		<-ended
		a.forget(in)
	}()
	a.awaitEnd([]*interpreter{in}, ended, fmt.Sprintf("interpreter %d that failed to start", in.id))
}

// retire stops sending requests to in; endInterpreters then lets its
// threads finish what they have.
func (a *app) retire(in *interpreter) {
	if in.loop != nil {
		in.loop.serving.Store(false)
	} else {
		a.pool.retire(in.poolIndex)
	}
}

// forget drops an ended interpreter from the app.
func (a *app) forget(in *interpreter) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for i, x := range a.interps {
		if x == in {
			a.interps = append(a.interps[:i:i], a.interps[i+1:]...)
			return
		}
	}
}

func (a *app) stopped() bool {
	return a.state.Load() >= appDraining
}
