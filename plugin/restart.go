package plugin

import (
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// A restart replaces one app's instance (its interpreters, their threads
// and its scheduler) without a config reload and without touching any
// other app: the new instance starts beside the old one, which serves until
// the new one is ready; then requests go to the new one and the old one
// drains as on a reload. A request that picked the old instance just as it
// closed is moved to the new one, so none is refused for the restart. The
// next restart may begin while the old instance drains: a long request (an
// event stream, a WebSocket) on old code holds up no later save.

var errStopped = errors.New("the app is being stopped by a config reload")

// appSlot holds a handler's current instance. It sits behind a pointer so
// that Python stays a plain value for Caddy's module registration.
type appSlot struct {
	atomic.Pointer[app]
	restartMu sync.Mutex // one start and switch at a time, and none once stopped
	stopped   bool
	draining  sync.WaitGroup // old instances still finishing their requests
}

// stop stops the current instance and waits for the old ones still draining;
// no restart begins after it. Caller holds restartMu.
func (s *appSlot) stop() {
	s.stopped = true
	s.Load().stop()
	s.draining.Wait()
}

// restartResult is what POST /python/apps/<name>/restart answers.
type restartResult struct {
	Name            string  `json:"name"`
	OldInstance     uint64  `json:"old_instance"`
	NewInstance     uint64  `json:"new_instance"`
	OldInterpreters []int64 `json:"old_interpreters"`
	NewInterpreters []int64 `json:"new_interpreters"`
	StartSeconds    float64 `json:"start_seconds"` // starting the new interpreters
	DrainSeconds    float64 `json:"drain_seconds"` // the old ones finishing their requests and ending
}

// restart starts a new instance of the app, switches traffic to it and
// stops the old one, waiting for it to drain. On failure the old instance
// keeps serving.
func (p *Python) restart(reason string) (restartResult, error) {
	if p.dynamic != nil {
		return p.dynamic.restart(reason)
	}
	res, drain, err := p.replace(reason)
	if err != nil {
		return res, err
	}
	return drain(), nil
}

// replace starts a new instance and switches traffic to it; drain then
// stops the old instance, waits for it and logs the restart.
func (p *Python) replace(reason string) (res restartResult, drain func() restartResult, err error) {
	p.app.restartMu.Lock()
	defer p.app.restartMu.Unlock()
	if p.app.stopped {
		return restartResult{}, nil, errStopped
	}
	old := p.app.Load()
	res = restartResult{Name: p.Name, OldInstance: old.id, OldInterpreters: interpreterIDs(old)}
	began := time.Now()
	fresh, err := startApp(old.cfg, p.logger)
	if err != nil {
		return res, nil, fmt.Errorf("%s: the new interpreters failed to start, the old ones keep serving: %v", p.name(), err)
	}
	res.StartSeconds = time.Since(began).Seconds()
	p.app.Store(fresh)
	p.metrics.Restarted(reason)
	res.NewInstance, res.NewInterpreters = fresh.id, interpreterIDs(fresh)
	p.app.draining.Add(1)
	return res, func() restartResult {
		defer p.app.draining.Done()
		return p.drained(reason, old, res)
	}, nil
}

// drained stops the old instance of a restart and logs the restart.
func (p *Python) drained(reason string, old *app, res restartResult) restartResult {
	drained := time.Now()
	old.stop()
	res.DrainSeconds = time.Since(drained).Seconds()
	p.logger.Info("app restarted",
		zap.String("reason", reason),
		zap.Int64s("old_interpreters", res.OldInterpreters),
		zap.Int64s("new_interpreters", res.NewInterpreters),
		zap.Float64("start_seconds", res.StartSeconds),
		zap.Float64("drain_seconds", res.DrainSeconds))
	return res
}

func interpreterIDs(a *app) []int64 {
	ids := []int64{}
	for _, in := range a.interps {
		ids = append(ids, in.id)
	}
	return ids
}

// submit queues a WSGI request on the app's current instance, or on the one
// that replaced it when that one closed first.
func (p *Python) submit(req *request) error {
	a := p.app.Load()
	for {
		err := a.pool.submit(req)
		if err != errClosed {
			return err
		}
		next := p.app.Load()
		if next == a {
			return err
		}
		a = next
	}
}

// reopen posts the first event of an ASGI request or WebSocket that q holds
// on instance a. When a recycle shut q's loop meanwhile, the request starts
// over on another loop of a; when a restart shut a's loops, on the instance
// that replaced a.
func (p *Python) reopen(a *app, q *asgiRequest, r *http.Request, kind byte, fields []string) (*asgiRequest, error) {
	for !q.loop.open(kind, q.token, fields...) {
		q.unregister()
		if next := p.app.Load(); next != a {
			a = next
		} else if a.stopped() {
			return nil, errClosed
		}
		var err error
		if q, err = a.newASGIRequest(r, q.websocket); err != nil {
			return nil, err
		}
	}
	return q, nil
}
