package plugin

/*
#include "vivarium.h"
*/
import "C"

import (
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// What an app instance is doing right now, as the metrics and the admin
// API show it. Reading it takes the instance's lock and its scheduler's,
// never an interpreter's GIL: a scrape or an API call does not wait for
// Python.

// Lifecycle of an app instance (app.state).
const (
	appStarting int32 = iota
	appServing
	appDraining
	appEnded
)

const (
	stateNameServing  = "serving"
	stateNameDraining = "draining"
	stateNameEnded    = "ended"
)

var appStateNames = [...]string{"starting", stateNameServing, stateNameDraining, stateNameEnded}

type instanceView struct {
	Instance     uint64        `json:"instance"` // a sequence number, new for every start, reload or restart
	State        string        `json:"state"`
	Kind         string        `json:"kind"`
	Started      time.Time     `json:"started"`
	Queued       int           `json:"queued"`    // WSGI requests waiting for a thread
	InFlight     int           `json:"in_flight"` // running or queued requests and WebSockets
	Interpreters []interpView  `json:"interpreters"`
	Processes    []processView `json:"processes,omitempty"` // isolation process
}

type interpView struct {
	ID         int64        `json:"id"` // the Python interpreter id
	State      string       `json:"state"`
	Limit      int          `json:"concurrency_limit,omitempty"` // WSGI
	Busy       int          `json:"busy_threads"`
	Idle       int          `json:"idle_threads"`
	Requests   uint64       `json:"requests"` // handed to it since it started
	ArenaBytes *uint64      `json:"arena_bytes,omitempty"`
	Threads    []threadView `json:"threads"`
}

type threadView struct {
	// WSGI: starting, idle, assigned (woken with a request), running (in
	// Python), waiting (for the GIL, or writing its response), exited.
	// ASGI: event_loop.
	State    string        `json:"state"`
	Request  *runningView  `json:"request,omitempty"`  // WSGI: the request it runs
	Requests []runningView `json:"requests,omitempty"` // ASGI: every request and WebSocket on the loop
}

type runningView struct {
	Method    string  `json:"method"`
	Path      string  `json:"path"`
	Seconds   float64 `json:"seconds"` // WSGI: running in Python; ASGI: since it arrived
	WebSocket bool    `json:"websocket,omitempty"`
}

// view reads the instance's state.
func (a *app) view() instanceView {
	a.mu.Lock()
	defer a.mu.Unlock()
	v := instanceView{
		Instance: a.id,
		State:    appStateNames[a.state.Load()],
		Kind:     a.cfg.kind,
		Started:  a.startedAt,
	}
	if a.pool != nil {
		v.Queued = int(a.pool.queued.Load())
		a.pool.mu.Lock()
		defer a.pool.mu.Unlock()
	}
	interpState := stateNameServing
	if v.State != stateNameServing {
		interpState = stateNameDraining
	}
	var onLoop map[*loop][]runningView
	if a.cfg.kind == "asgi" {
		onLoop = a.asgiRunning()
	}
	mono := monotonicNs()
	for _, in := range a.interps {
		iv := interpView{ID: in.id, State: interpState, Threads: []threadView{}}
		if in.ended {
			iv.State = stateNameEnded
		} else if in.ownAllocator {
			n := uint64(C.vv_interp_arena_bytes(in.c))
			iv.ArenaBytes = &n
		}
		if in.loop != nil {
			running := onLoop[in.loop]
			iv.Requests = in.loop.requests.Load()
			iv.Busy = min(len(running), 1)
			iv.Idle = 1 - iv.Busy
			v.InFlight += int(in.loop.active.Load())
			iv.Threads = append(iv.Threads, threadView{State: "event_loop", Requests: running})
			v.Interpreters = append(v.Interpreters, iv)
			continue
		}
		if len(in.workers) > 0 {
			load := in.workers[0].sched
			iv.Limit, iv.Requests, iv.Busy = load.limit, load.requests, load.busy
			iv.Idle = len(load.workers) - load.busy
			v.InFlight += load.busy
		}
		for _, w := range in.workers {
			iv.Threads = append(iv.Threads, w.view(in.ended, mono))
		}
		v.Interpreters = append(v.Interpreters, iv)
	}
	if a.procs != nil {
		procs, queued := a.procs.view()
		v.Processes, v.Queued = procs, queued
		for _, p := range procs {
			if a.cfg.kind == "wsgi" {
				v.InFlight += p.InFlight
			}
		}
	}
	v.InFlight += v.Queued
	return v
}

// view is a WSGI worker's state. Caller holds pool.mu, and the app's lock
// while its interpreter has not ended (the C half is freed then).
func (w *worker) view(ended bool, mono int64) threadView {
	switch {
	case w.exited:
		return threadView{State: "exited"}
	case !w.calledIn:
		return threadView{State: "starting"}
	case !w.busy:
		return threadView{State: "idle"}
	case w.running == nil:
		return threadView{State: "assigned"}
	}
	r := &runningView{Method: w.running.Method, Path: clientPath(w.running)}
	var since int64
	if !ended {
		since = int64(atomic.LoadUint64((*uint64)(unsafe.Pointer(&w.c.py_since))))
	}
	if since == 0 {
		return threadView{State: "waiting", Request: r}
	}
	r.Seconds = float64(mono-since) / 1e9
	return threadView{State: "running", Request: r}
}

// asgiRunning lists the app's requests and WebSockets in flight, by loop.
func (a *app) asgiRunning() map[*loop][]runningView {
	loops := map[*loop]bool{}
	for _, in := range a.interps {
		if in.loop != nil {
			loops[in.loop] = true
		}
	}
	out := map[*loop][]runningView{}
	now := int64(time.Since(epoch))
	asgiRequests.Range(func(_, v any) bool {
		q := v.(*asgiRequest)
		if loops[q.loop] {
			out[q.loop] = append(out[q.loop], runningView{
				Method: q.r.Method, Path: clientPath(q.r), Seconds: float64(now-q.start) / 1e9, WebSocket: q.websocket,
			})
		}
		return true
	})
	return out
}

// monotonicNs is CLOCK_MONOTONIC, the clock of the worker threads' py_since.
func monotonicNs() int64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}
