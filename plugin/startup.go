package plugin

/*
#include "vivarium.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"
)

// An app's import runs on a thread of its own, not on the control thread, so
// that one that hangs holds up no other app; start_timeout bounds it. Past
// the bound the import is interrupted (StartTimeout is raised where it is)
// and the config refused, naming the app. An import that does not come back
// (a call that does not return to Python: a sleep, a connect, C code) is left
// to end on its own: its interpreter is ended when it does, and never serves.

// bootInterpreter imports the app into in; failed makes the error of a
// failed import, and free releases the C config once the import is over. On failure the interpreter is ended (or will be, once
// an import that does not return comes back).
func bootInterpreter(in *C.vv_interp, g *interpGuard, ccfg *C.vv_app_config, failed func(*C.char) error, free func(),
	timeout time.Duration, logger *zap.Logger) error {
	done := make(chan error, 1)
	go func() {
		var cerr *C.char
		rc := C.vv_interp_boot(in, ccfg, &cerr)
		var err error
		if rc != 0 {
			err = failed(cerr)
		}
		free()
		done <- err
	}()
	var expired <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		expired = t.C
	}
	select {
	case err := <-done:
		if err != nil {
			endInterpreter(in, g)
		}
		return err
	case <-expired:
	}

	at := interruptBoot(g, in, C.VV_RAISE_START_TIMEOUT)
	if at.gone {
		// It finished just now.
		if err := <-done; err != nil {
			endInterpreter(in, g)
			return err
		}
		return nil
	}
	select {
	case err := <-done:
		endInterpreter(in, g)
		if err == nil {
			return fmt.Errorf("it did not start within start_timeout %v", timeout)
		}
		return fmt.Errorf("it did not start within start_timeout %v; its import was interrupted: %v", timeout, err)
	case <-time.After(returnWait):
	}
	go func() {
		<-done
		endInterpreter(in, g)
		if logger != nil {
			logger.Warn("the import that ran past start_timeout has returned; its interpreter is ended")
		}
	}()
	if !at.reached {
		return fmt.Errorf("it did not start within start_timeout %v, and %s; it is left to end on its own "+
			"and will never serve", timeout, notReached)
	}
	return fmt.Errorf("it did not start within start_timeout %v and its import does not return to Python, so it "+
		"cannot be interrupted: it waits in a call (a sleep, a connection, C code); it is left to end on its own "+
		"and will never serve. It was at:\n%s", timeout, at.stack)
}

// endInterpreter ends an interpreter whose threads are gone, once no call
// reaches into it any more.
func endInterpreter(in *C.vv_interp, g *interpGuard) {
	g.close()
	onControlThread(func() { C.vv_interp_end(in) })
}

// awaitReady waits for an ASGI interpreter's lifespan startup until
// start_timeout from started. Past it, a startup that waits is cancelled from
// within its loop; one that computes is interrupted.
func (a *app) awaitReady(in *interpreter, started time.Time) error {
	timeout := a.cfg.controls.startTimeout
	failed := func(msg string) error {
		if msg == "" {
			return errors.New("its startup completed only after that")
		}
		return errors.New(msg)
	}
	t := time.NewTimer(time.Until(started.Add(timeout)))
	defer t.Stop()
	select {
	case msg := <-in.loop.ready:
		if msg == "" {
			return nil
		}
		return errors.New(msg)
	case <-t.C:
	}
	late := fmt.Errorf("it did not start within start_timeout %v", timeout)
	in.loop.post(evShutdown, 0)
	select {
	case msg := <-in.loop.ready:
		return fmt.Errorf("%w: %v", late, failed(msg))
	case <-time.After(gilWait):
	}
	at := interruptWorker(in.guard, in.workers[0], anyRequest, 0, C.VV_RAISE_START_TIMEOUT, nil)
	select {
	case msg := <-in.loop.ready:
		return fmt.Errorf("%w: %v", late, failed(msg))
	case <-time.After(returnWait):
	}
	if !at.reached {
		return fmt.Errorf("%w: its lifespan startup runs C code that holds the GIL: %s", late, notReached)
	}
	return fmt.Errorf("%w: its lifespan startup was interrupted but does not return to Python; it was at:\n%s", late, at.stack)
}
