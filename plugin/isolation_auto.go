package plugin

import (
	"context"
	"fmt"
	"time"

	"go.uber.org/zap"
)

// `isolation auto` is decided at provisioning: `interpreter` when the app
// loads in an own-GIL interpreter, `process` when it does not. The probe is
// python-check's first step (checkStarts): the app imported in an own-GIL
// interpreter of a throwaway child process, since an import that fails there
// may leave a half-initialised extension module behind, and some abort the
// process.

// chooseIsolation resolves auto into interpreter or process, and logs why.
func (p *Python) chooseIsolation(kind string, logger *zap.Logger) error {
	if p.User != "" || p.Group != "" {
		p.Isolation = isolationProcess
		logger.Info("isolation auto: process, since user and group apply to processes only")
		return nil
	}
	defaultAttr := "application"
	if kind == "asgi" {
		defaultAttr = "app"
	}
	started := time.Now()
	// The probe imports the app as its start would: with its environment, and
	// bounded by its start_timeout.
	ctl := p.controls().withDefaults()
	ctx, cancel := context.WithTimeout(context.Background(), ctl.startTimeout)
	defer cancel()
	reports, err := checkStarts(ctx,
		appConfig{kind: kind, module: p.module(), workingDir: p.WorkingDir, venv: p.Venv, controls: ctl},
		defaultAttr, isolationInterpreter, 1)
	if ctx.Err() != nil {
		// The import did not finish within start_timeout: the start that
		// follows bounds it as it bounds any start, refuses the config and
		// shows where the code was, in an interpreter as good as anywhere.
		p.Isolation = isolationInterpreter
		logger.Warn("isolation auto: interpreter, since the probe's import did not finish within start_timeout",
			zap.Duration("start_timeout", ctl.startTimeout))
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s: isolation auto: %v", p.name(), err)
	}
	own := reports[0]
	took := zap.Duration("probe_took", time.Since(started))
	if own.OK {
		p.Isolation = isolationInterpreter
		logger.Info("isolation auto: interpreter, since the app loads in an own-GIL interpreter", took)
		return nil
	}
	// Whatever kept it from loading there, a process is where it may: an app
	// that imports nowhere is refused when its process fails to start, with
	// that error.
	p.Isolation = isolationProcess
	why := lastLine(own.Error)
	switch {
	case own.Crash != nil:
		why = own.Crash.String()
	case own.Refused != "":
		why = fmt.Sprintf("extension module %s refuses own-GIL interpreters", own.Refused)
	}
	logger.Info("isolation auto: process, since the app does not load in an own-GIL interpreter",
		zap.String("why", why), took)
	return nil
}
