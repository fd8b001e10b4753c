package plugin

/*
#include <stdlib.h>
#include "vivarium.h"
*/
import "C"

import (
	"sync"
	"time"
	"unsafe"
)

// Reaching into an interpreter's threads from outside, for a timeout: where
// the Python code is, and an exception raised there (runtime/interrupt.c).
// These functions are the mechanism every backend uses; a process backend
// calls the same ones in its child.

// gilWait bounds how long a timeout waits for the interpreter's GIL before it
// reports the thread as stuck in C code that holds it.
const gilWait = 3 * time.Second

// returnWait is how long code that was interrupted gets to come back before
// it is reported as not returning.
const returnWait = 5 * time.Second

// interpGuard keeps an interpreter from being ended while a call from another
// thread reaches into it; such a call may wait long for the GIL.
type interpGuard struct {
	mu     sync.Mutex
	ending bool
	calls  sync.WaitGroup
}

func (g *interpGuard) enter() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ending {
		return false
	}
	g.calls.Add(1)
	return true
}

func (g *interpGuard) leave() { g.calls.Done() }

// close refuses new calls and waits for those under way.
func (g *interpGuard) close() {
	g.mu.Lock()
	g.ending = true
	g.mu.Unlock()
	g.calls.Wait()
}

// where is what an interrupt found in the target thread.
type where struct {
	reached bool   // the interpreter's GIL was had within gilWait
	gone    bool   // the target no longer ran what was meant
	owns    bool   // it ran the request meant (an event loop may run others)
	idle    bool   // an event loop waiting for events
	stack   string // innermost frame last
}

func takeWhere(w C.vv_where) where {
	out := where{reached: true, gone: w.state == C.VV_INTERRUPT_GONE, owns: w.owns != 0, idle: w.idle != 0}
	if w.stack != nil {
		out.stack = C.GoString(w.stack)
		C.free(unsafe.Pointer(w.stack))
	}
	return out
}

// reach runs call on a thread of its own and waits for it at most gilWait.
// A call still waiting for the GIL then goes on in the background, the guard
// keeping the interpreter alive until it is done, and late (when not nil)
// gets what it found, once it has.
func reach(g *interpGuard, call func() C.vv_where, late func(where)) where {
	if !g.enter() {
		return where{reached: true, gone: true}
	}
	done := make(chan where, 1)
	var mu sync.Mutex
	waited := false
	go func() {
		defer g.leave()
		w := takeWhere(call())
		mu.Lock()
		defer mu.Unlock()
		if waited && late != nil {
			go late(w)
		}
		done <- w
	}()
	select {
	case w := <-done:
		return w
	case <-time.After(gilWait):
	}
	mu.Lock()
	defer mu.Unlock()
	select {
	case w := <-done:
		return w
	default:
		waited = true
		return where{}
	}
}

// anyRequest, as seq, means whatever request the worker runs.
const anyRequest = -1

// interruptWorker gets the stack of the worker's thread while it runs request
// seq (an event loop: request token's task, 0 for any) and, with raise, has
// the exception raised there.
func interruptWorker(g *interpGuard, w *worker, seq int64, token uint64, raise C.int, late func(where)) where {
	return reach(g, func() C.vv_where {
		return C.vv_interrupt_worker(w.c, C.int64_t(seq), C.uint64_t(token), raise)
	}, late)
}

// interruptBoot does the same for the thread importing the app.
func interruptBoot(g *interpGuard, in *C.vv_interp, raise C.int) where {
	return reach(g, func() C.vv_where { return C.vv_interrupt_boot(in, raise) }, nil)
}

// notReached says what a thread that kept the GIL past gilWait is doing.
const notReached = "its thread holds the interpreter's GIL in C code (an extension module's loop or a call " +
	"that does not release the GIL), so it can neither be inspected nor interrupted, and the interpreter's " +
	"other threads wait too"
