package plugin

/*
#include <stdlib.h>
#include "vivarium.h"
*/
import "C"

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unsafe"

	"go.uber.org/zap"
)

// `isolation auto` is decided at provisioning: `interpreter` when the app
// loads in an own-GIL interpreter, `process` when it does not. The probe
// imports the app in a child process (a throwaway one: an import that fails in
// an own-GIL interpreter may leave a half-initialised extension behind, and
// some abort the process), the way `caddy python-check` does first.

// probeReport is what vivarium_boot's check reports (check.go reads the same).
type probeReport struct {
	OK      bool   `json:"ok"`
	Error   string `json:"error"`
	Refused string `json:"refused"`
}

// chooseIsolation resolves auto into interpreter or process, and logs why.
func (p *Python) chooseIsolation(kind string, logger *zap.Logger) error {
	if p.User != "" || p.Group != "" {
		p.Isolation = isolationProcess
		logger.Info("isolation auto: process, since user and group apply to processes only")
		return nil
	}
	started := time.Now()
	report, err := probeApp(appConfig{kind: kind, module: p.module(), workingDir: p.WorkingDir, venv: p.Venv}, logger)
	if err != nil {
		return fmt.Errorf("%s: isolation auto: %v", p.name(), err)
	}
	took := zap.Duration("probe_took", time.Since(started))
	if report.OK {
		p.Isolation = isolationInterpreter
		logger.Info("isolation auto: interpreter, since the app loads in an own-GIL interpreter", took)
		return nil
	}
	p.Isolation = isolationProcess
	why := report.Error
	if report.Refused != "" {
		why = fmt.Sprintf("extension module %s refuses own-GIL interpreters", report.Refused)
	}
	logger.Info("isolation auto: process, since the app does not load in an own-GIL interpreter",
		zap.String("why", lastLine(why)), took)
	return nil
}

// probeApp imports the app in an own-GIL interpreter of a new child process.
func probeApp(cfg appConfig, logger *zap.Logger) (probeReport, error) {
	a := &app{cfg: cfg, logger: logger}
	pa := &processApp{app: a, cfg: cfg, logger: logger, stopping: make(chan struct{})}
	pa.env = childEnv(nil)
	s := &slot{pa: pa}
	pa.slots = []*slot{s}
	c, err := s.spawn("probe")
	if err != nil {
		return probeReport{}, err
	}
	defer func() {
		c.kill()
		<-c.ended
	}()
	var report probeReport
	var msg string
	select {
	case msg = <-c.ready:
	case <-c.ended:
		select {
		case msg = <-c.ready: // the report, sent before the probe exited
		default:
			// The import crashed the process: it would crash Caddy's too.
			return probeReport{Error: fmt.Sprintf("importing the app in an own-GIL interpreter ended the probe's process: it %s%s",
				c.status, quoted(c.lastWords()))}, nil
		}
	case <-time.After(childStartTimeout):
		return report, errors.New("the probe did not import the app within " + childStartTimeout.String())
	}
	if err := json.Unmarshal([]byte(msg), &report); err != nil {
		return report, fmt.Errorf("the probe answered %q", msg)
	}
	return report, nil
}

// probe is a child's work in "probe" mode: import the app as `isolation
// interpreter` would, report and exit.
func (cs *childSide) probe() int {
	cfg := cs.cfg
	module := cfg.Module
	if !strings.Contains(module, ":") {
		// The check imports with the ASGI default; a WSGI app's is "application".
		if cfg.Kind == "wsgi" {
			module += ":application"
		}
	}
	in, err := newInterpreter(appConfig{kind: "check", module: module, workingDir: cfg.WorkingDir, venv: cfg.Venv}, 0, 0)
	var report string
	if err != nil {
		js, _ := json.Marshal(probeReport{Error: err.Error()})
		report = string(js)
	} else {
		onControlThread(func() {
			s := C.vv_interp_report(in)
			report = C.GoString(s)
			C.free(unsafe.Pointer(s))
		})
	}
	cs.link.send(frReady, 0, []byte(report))
	cs.link.drain()
	return 0
}
