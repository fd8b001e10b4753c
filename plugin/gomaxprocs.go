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
// interpreter, waits. Measured on 2 CPUs, raw WSGI hello at 64 connections:
// GOMAXPROCS 2 -> 19.7k req/s, p99 19 ms; 4 -> 34.9k req/s, p99 6 ms; 8 -> 30.8k.
// Caddy's own `respond` did not change (46.7k, 52.2k, 50.4k).
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
