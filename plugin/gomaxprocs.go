package plugin

import (
	"os"
	"runtime"
	"sync"

	"go.uber.org/zap"
)

// Every call from a C worker thread into Go (vvServe, vvSend, vvPoll, ...) needs
// a Go P for its duration. With GOMAXPROCS at the number of CPUs, those calls
// queue behind the goroutines serving HTTP, and the worker, and so the
// interpreter, waits. Twice the CPUs served the most in the measurements of
// docs/benchmarks/gomaxprocs.md; more Ps did not help.
var gomaxprocsOnce sync.Once

// raiseGOMAXPROCS gives Go twice as many Ps as CPUs, unless the operator chose
// GOMAXPROCS or it is already as high.
func raiseGOMAXPROCS(logger *zap.Logger) {
	gomaxprocsOnce.Do(func() {
		if os.Getenv("GOMAXPROCS") != "" {
			return
		}
		want := 2 * runtime.NumCPU()
		if was := runtime.GOMAXPROCS(0); was < want {
			runtime.GOMAXPROCS(want)
			logger.Info("raised GOMAXPROCS so that calls from Python's threads into Go need not wait",
				zap.Int("from", was), zap.Int("to", want))
		}
	})
}
