package plugin

/*
#include "vivarium.h"
*/
import "C"

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// Stopping an app (reload, exit) or one of its interpreters (recycling) is
// bounded whatever the app does: its requests get a grace to finish, then
// what still runs is interrupted (an exception raised where it is), and after
// forceWait the stop gives up on code that does not come back, leaving its
// interpreter to end when it does.

// drainTimeout bounds the grace of an app whose timeout is longer.
const drainTimeout = 30 * time.Second

// forceWait is how long interrupted code gets to unwind before a stop gives
// up on it.
const forceWait = 10 * time.Second

// stopGrace is how long the requests of an app being stopped get to finish:
// no longer than they could run anyway.
func (cfg *appConfig) stopGrace() time.Duration {
	if t := cfg.controls.timeout; t > 0 && t < drainTimeout {
		return t
	}
	return drainTimeout
}

// stop lets the workers finish what they have, then ends the interpreters.
// A second call waits for the first one's stop.
func (a *app) stop() {
	for {
		s := a.state.Load()
		if s >= appDraining {
			if a.done != nil {
				<-a.done
			}
			return
		}
		if a.state.CompareAndSwap(s, appDraining) {
			break
		}
	}
	if a.done != nil {
		defer close(a.done)
	}
	if a.procs != nil {
		a.procs.stop()
		apps.Delete(a.id)
		a.state.Store(appEnded)
		a.metrics.removeInstance(a)
		return
	}
	if a.pool != nil {
		a.pool.close()
	}
	// A replacement under way is started first: then none is missed.
	a.recycleMu.Lock()
	a.mu.RLock()
	interps := append([]*interpreter(nil), a.interps...)
	a.mu.RUnlock()
	a.recycleMu.Unlock()
	ended := a.endInterpreters(interps)
	go func() {
		<-ended
		apps.Delete(a.id)
		a.state.Store(appEnded)
		a.metrics.removeInstance(a)
	}()
	a.awaitEnd(interps, ended, "app")
}

// endInterpreters tells the interpreters' threads to finish (WSGI threads
// exit once the pool is closed to them) and ends each interpreter once its
// threads are gone. The channel closes when all are ended. An interpreter a
// recycle is ending already is waited for, not ended twice.
func (a *app) endInterpreters(interps []*interpreter) <-chan struct{} {
	var all []<-chan struct{}
	for _, in := range interps {
		all = append(all, in.end())
	}
	ended := make(chan struct{})
	go func() {
		for _, c := range all {
			<-c
		}
		close(ended)
	}()
	return ended
}

// end starts ending in, once; the channel closes when it is ended.
func (in *interpreter) end() <-chan struct{} {
	in.endOnce.Do(func() {
		in.gone = make(chan struct{})
		if in.loop != nil {
			// Lifespan shutdown runs, open WebSockets are told the server goes away.
			in.loop.serving.Store(false)
			in.loop.post(evShutdown, 0)
			close(in.loop.closing)
		}
		go func() {
			defer close(in.gone)
			C.vv_interp_join(in.c)
			if a := in.owner; a != nil {
				a.mu.Lock()
				in.ended = true
				a.mu.Unlock()
			}
			endInterpreter(in.c, in.guard)
			for _, w := range in.workers {
				freeWorkerID(w.id)
			}
			if in.loop != nil {
				close(in.loop.exited)
				in.loop.close()
			}
		}()
	})
	return in.gone
}

// awaitEnd waits for ended: the grace, then interrupts, then forceWait.
func (a *app) awaitEnd(interps []*interpreter, ended <-chan struct{}, what string) {
	grace := a.cfg.stopGrace()
	select {
	case <-ended:
		return
	case <-time.After(grace):
	}
	stuck := a.interruptAll(interps)
	select {
	case <-ended:
		a.logger.Warn(fmt.Sprintf("%s stopped: code still running %v after the stop was interrupted", what, grace),
			zap.Int("interrupted", len(stuck)), zap.String("where", strings.Join(stuck, "\n\n")))
		return
	case <-time.After(forceWait):
	}
	a.logger.Error(fmt.Sprintf("%s did not stop: its code was interrupted %v after the stop and has not come back "+
		"within %v; its interpreters are left to end when it does, and serve nothing meanwhile", what, grace, forceWait),
		zap.Duration("grace", grace), zap.String("where", strings.Join(stuck, "\n\n")))
}

// interruptAll raises RequestTimeout in every thread still running a request
// (an event loop: unless it is idle) and says where each was.
func (a *app) interruptAll(interps []*interpreter) []string {
	var mu sync.Mutex
	var found []string
	var wg sync.WaitGroup
	for _, in := range interps {
		for j, w := range in.workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var at where
				if in.loop != nil {
					if at = interruptWorker(in.guard, w, anyRequest, 0, C.VV_RAISE_NONE, nil); at.reached && (at.gone || at.idle) {
						return
					}
					if at.reached {
						at = interruptWorker(in.guard, w, anyRequest, 0, C.VV_RAISE_REQUEST_TIMEOUT, nil)
					}
				} else {
					at = interruptWorker(in.guard, w, anyRequest, 0, C.VV_RAISE_REQUEST_TIMEOUT, nil)
				}
				if at.reached && at.gone {
					return
				}
				text := at.stack
				if !at.reached {
					text = notReached
				}
				mu.Lock()
				found = append(found, fmt.Sprintf("interpreter %d, thread %d:\n%s", in.id, j, text))
				mu.Unlock()
			}()
		}
	}
	wg.Wait()
	return found
}

// A config's apps stop together. Caddy cleans up a config's handlers one
// after another, so with several apps that do not finish, a reload or an exit
// would wait for each one's bound in turn; instead, the first Cleanup of a
// config begins the stop of all its apps, and each Cleanup waits for its own.
var configApps = struct {
	sync.Mutex
	m map[*prometheus.Registry][]*Python
}{m: map[*prometheus.Registry][]*Python{}}

// stopsWithConfig records p, whose app serves now, among its config's apps.
func (p *Python) stopsWithConfig() {
	configApps.Lock()
	configApps.m[p.config] = append(configApps.m[p.config], p)
	configApps.Unlock()
}

// beginConfigStop starts stopping every app of p's config but p's own, which
// its Cleanup stops.
func (p *Python) beginConfigStop() {
	configApps.Lock()
	others := configApps.m[p.config]
	delete(configApps.m, p.config)
	configApps.Unlock()
	for _, q := range others {
		if q != p && q.app != nil {
			if a := q.app.Load(); a != nil {
				go a.stop()
			}
		}
	}
}
