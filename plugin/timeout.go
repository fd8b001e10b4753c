package plugin

/*
#include "vivarium.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

// The request timeout and the write timeout of WSGI requests.
//
// The handler goroutine, which waits while a worker runs its request, keeps
// the time: a request may wait `timeout` for a thread, and then go `timeout`
// without its app starting, sending or reading part of it. Past that, the
// handler takes the response back from the worker (under req.mu, after
// cutting a write the worker may be blocked in), answers 504 (or cuts the
// connection when headers went out already) and leaves the request to the
// worker, which frees it when the app returns. The app's code is interrupted
// where it is: RequestTimeout is raised in its thread (interrupt.go), and the
// log shows the stack it had. A write that makes no progress for
// write_timeout is cut the same way: its connection's write deadline is set to
// now, the write fails, and the app sees the client gone.

var errTimedOut = errors.New("the request ran past its timeout")

// monotime is now on the clock the timeouts use: ns since epoch.
func monotime() int64 { return int64(time.Since(epoch)) }

// Timers are reused: one per request would be two allocations on the
// request path. Since Go 1.23 a stopped timer's channel holds nothing stale.
var timerPool = sync.Pool{New: func() any {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return t
}}

func getTimer(d time.Duration) *time.Timer {
	t := timerPool.Get().(*time.Timer)
	t.Reset(d)
	return t
}

func putTimer(t *time.Timer) {
	t.Stop()
	timerPool.Put(t)
}

// started records, on the worker's thread, that w now runs the request.
func (req *request) runningOn(w *worker) {
	req.mu.Lock()
	req.worker, req.seq = w, w.seq
	req.mu.Unlock()
	req.progress.Store(monotime())
}

// awaitWSGI waits until the worker has answered req, its client left while it
// was still queued, or it timed out. It reports whether req may be released
// (false: a queue or a worker still holds it) and the error to answer with.
func (p *Python) awaitWSGI(req *request, r *http.Request) (release bool, err error) {
	ctl := p.app.Load().cfg.controls
	if spinWait(req.done) {
		<-req.done
		return true, nil
	}
	ctxDone := r.Context().Done()
	timer := getTimer(min(ctl.timeout, ctl.writeTimeout/2))
	defer putTimer(timer)
	for {
		select {
		case <-req.done:
			return true, nil
		case <-ctxDone:
			ctxDone = nil
			if req.state.CompareAndSwap(stateQueued, stateCancelled) {
				// Still queued: a worker will skip it. The request stays
				// referenced by the queue, so it is not recycled.
				p.waitedInQueue(req)
				return false, nil
			}
			continue
		case <-timer.C:
		}
		now := monotime()
		if since := req.writing.Load(); since != 0 && now-since >= int64(ctl.writeTimeout) && !req.stalled.Load() {
			// The app goes on with the client gone; the response ends when
			// it returns.
			req.stalled.Store(true)
			p.metrics.TimedOut("write")
			_ = http.NewResponseController(req.w).SetWriteDeadline(time.Now())
			p.logger.Warn("a response write made no progress within write_timeout: the response is ended and its thread freed",
				zap.String("method", r.Method), zap.String("uri", requestURI(r)),
				zap.Duration("write_timeout", ctl.writeTimeout))
		}
		idle := now - req.progress.Load()
		if idle < int64(ctl.timeout) {
			// A write may begin at any time: look again within half the
			// write timeout, so that one stalled is cut by 1.5 times it.
			next := min(time.Duration(int64(ctl.timeout)-idle), ctl.writeTimeout/2)
			if since := req.writing.Load(); since != 0 && !req.stalled.Load() {
				next = min(next, time.Duration(since+int64(ctl.writeTimeout)-now))
			}
			timer.Reset(max(next, time.Millisecond))
			continue
		}
		if req.state.CompareAndSwap(stateQueued, stateCancelled) {
			p.waitedInQueue(req)
			p.metrics.TimedOut("queue")
			p.logger.Error("request timed out waiting for a thread: every thread of the app was busy for its whole timeout",
				zap.String("method", r.Method), zap.String("uri", requestURI(r)), zap.Duration("timeout", ctl.timeout))
			return false, caddyhttp.Error(http.StatusGatewayTimeout,
				fmt.Errorf("%s: no thread was free within timeout %v", p.name(), ctl.timeout))
		}
		w, seq, headerSent, expired := req.expire()
		if !expired {
			<-req.done // it finished just now
			return true, nil
		}
		p.metrics.TimedOut("request")
		if w != nil && w.host != nil && w.host.owner != nil {
			go w.host.owner.reportTimeout(w, seq, r.Method, requestURI(r))
		}
		if headerSent {
			panic(http.ErrAbortHandler)
		}
		return false, caddyhttp.Error(http.StatusGatewayTimeout,
			fmt.Errorf("%s ran past its timeout %v; see where in the log", p.name(), ctl.timeout))
	}
}

// waitedInQueue counts the queue wait of a request that left the queue
// without a thread.
func (p *Python) waitedInQueue(req *request) {
	if req.queuedAt != 0 {
		p.metrics.waited(time.Since(epoch) - time.Duration(req.queuedAt))
	}
}

// expire takes the response back from the worker, unless it has just
// finished. A write the worker is blocked in is cut first: the response
// cannot be completed anyway.
func (req *request) expire() (w *worker, seq uint32, headerSent, expired bool) {
	rc := http.NewResponseController(req.w)
	if req.writing.Load() != 0 {
		_ = rc.SetWriteDeadline(time.Now())
	}
	if req.reading.Load() {
		// A body read must not outlive the handler, which owns the body.
		_ = rc.SetReadDeadline(time.Now())
	}
	req.mu.Lock()
	defer req.mu.Unlock()
	if req.finished {
		return nil, 0, false, false
	}
	req.over = true
	return req.worker, req.seq, req.headerSent, true
}

// reportTimeout interrupts the request worker w runs as seq, logs where it
// was, and reports it again if it does not come back.
func (a *app) reportTimeout(w *worker, seq uint32, method, uri string) {
	timeout := a.cfg.controls.timeout
	fields := []zap.Field{zap.String("method", method), zap.String("uri", uri), zap.Duration("timeout", timeout)}
	if w == nil || w.host == nil {
		return
	}
	fields = append(fields, zap.Int64("interpreter", w.host.id))
	what := fmt.Sprintf("request %s %s ran past its timeout %v and the client got 504", method, uri, timeout)
	late := func(at where) {
		if !at.gone {
			a.logger.Warn(what+"; it has come back to Python and RequestTimeout is raised in its thread, which was at:",
				append(fields, zap.String("traceback", at.stack))...)
		}
	}
	at := interruptWorker(w.host.guard, w, int64(seq), 0, C.VV_RAISE_REQUEST_TIMEOUT, late)
	switch {
	case !at.reached:
		a.logger.Error(what+"; "+notReached, fields...)
		return
	case at.gone:
		a.logger.Error(what+"; it returned as it was being interrupted", fields...)
		return
	}
	a.logger.Error(what+"; RequestTimeout is raised in its thread, which was at:",
		append(fields, zap.String("traceback", at.stack))...)
	time.Sleep(returnWait)
	if C.vv_worker_runs(w.c, C.uint32_t(seq)) != 0 {
		a.logger.Error(fmt.Sprintf("request %s %s has not returned %v after its interruption: it waits in a call that does not "+
			"return to Python (time.sleep, a socket without a timeout, C code), and holds its thread until it does", method, uri, returnWait),
			fields...)
	}
}

// asgiTimedOut ends an ASGI request whose app went `timeout` without sending
// anything: 504, or a cut connection once headers went out. Its task is
// interrupted or cancelled (reportASGITimeout).
func (p *Python) asgiTimedOut(q *asgiRequest, r *http.Request, headerSent bool) error {
	q.markGone()
	p.metrics.TimedOut("request")
	timeout := p.app.Load().cfg.controls.timeout
	if h := q.loop.host; h != nil && h.owner != nil {
		go h.owner.reportASGITimeout(q.loop, q.token, r.Method, requestURI(r))
	}
	if q.loop.remote != nil {
		// A process's loop: the app hears of it as of a client gone.
		q.loop.post(evDisconnect, q.token)
	}
	if headerSent {
		panic(http.ErrAbortHandler)
	}
	return caddyhttp.Error(http.StatusGatewayTimeout,
		fmt.Errorf("%s ran past its timeout %v; see where in the log", p.name(), timeout))
}

// reportASGITimeout stops the task of request token: when it is what runs on
// the event loop (it blocks the loop), RequestTimeout is raised in it and the
// log shows where it was; otherwise the loop itself cancels the task and logs
// where it waited.
func (a *app) reportASGITimeout(l *loop, token uint64, method, uri string) {
	timeout := a.cfg.controls.timeout
	what := fmt.Sprintf("request %s %s ran past its timeout %v and the client got 504", method, uri, timeout)
	fields := []zap.Field{zap.String("method", method), zap.String("uri", uri), zap.Duration("timeout", timeout)}
	in := l.host
	if in == nil || len(in.workers) == 0 {
		return
	}
	fields = append(fields, zap.Int64("interpreter", in.id))
	late := func(at where) {
		if at.owns {
			a.logger.Warn(what+"; its event loop has come back to Python and RequestTimeout is raised in its task, which was at:",
				append(fields, zap.String("traceback", at.stack))...)
		}
	}
	at := interruptWorker(in.guard, in.workers[0], anyRequest, token, C.VV_RAISE_REQUEST_TIMEOUT, late)
	switch {
	case !at.reached:
		a.logger.Error(what+"; its event loop is blocked: "+notReached, fields...)
		l.post(evTimeout, token, what)
	case at.gone:
	case at.owns:
		a.logger.Error(what+"; it blocked the event loop, and RequestTimeout is raised in its task, which was at:",
			append(fields, zap.String("traceback", at.stack))...)
	default:
		l.post(evTimeout, token, what)
		if !at.idle {
			a.logger.Warn(what+"; its event loop is busy with other code, so the task is cancelled once that lets go; the loop is at:",
				append(fields, zap.String("traceback", at.stack))...)
		}
	}
}

// killIfStuck kills c when the request it was told to interrupt is still in
// flight after the interrupt has had its time: code that does not come back
// to Python (C code, a call that does not return) ends with its process.
func (pa *processApp) killIfStuck(c *child, id uint64, method, uri string) {
	select {
	case <-c.ended:
		return
	case <-time.After(gilWait + returnWait + time.Second):
	}
	if c.request(id) == nil {
		return
	}
	c.logger.Error(fmt.Sprintf("request %s %s ran past its timeout and its process does not come back from it "+
		"(C code, or a call that does not return to Python): the process is killed, and another started", method, uri),
		zap.String("method", method), zap.String("uri", uri), zap.Int("pid", c.pid))
	c.kill()
}
