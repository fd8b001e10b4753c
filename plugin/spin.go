package plugin

import (
	"bytes"
	"os"
	"runtime"
	"sync/atomic"
	"time"
)

// A handler goroutine that waits for its worker parks on req.done (for ASGI,
// on its request's signal from the loop), and the worker's send wakes it: Go readies the goroutine and, with a P idle, wakes
// an M to run it (wakep, a futex call and a sleeping thread's wake-up),
// which on a server with one client at a time is paid once per request,
// beside the worker's own wake-up. So while nothing else runs, one handler
// at a time spins on req.done instead: the worker's send then finds it
// running. It does not while the app's requests would occupy every CPU,
// nor while the machine has no core to spare (other runnable threads than
// ours, from /proc/loadavg, looked at every few milliseconds), and after a
// spin that failed (an app slower than the spin) it skips twice as many
// requests as after the last failure, up to 256, as the C worker's spin
// does (worker.c).
const (
	spinMax        = 150 * time.Microsecond
	spinBackoffMax = 8
	loadLookEvery  = 5 * time.Millisecond
)

var spinning struct {
	inPython atomic.Int32 // requests between submit and answer, all apps
	spinner  atomic.Bool  // a handler spins
	fails    atomic.Int32 // spins that failed in a row, capped
	skip     atomic.Int32 // requests left to wait without a spin
	shortAt  atomic.Int64 // monotime of the last look at the load
	short    atomic.Bool  // the machine had no core to spare then
}

var spinCPUs = runtime.NumCPU()

// spinWait spins until done has the worker's answer, which it leaves there
// for the caller's own wait to take at once, and tells whether it came.
func spinWait(done chan struct{}) bool {
	if spinCPUs < 2 || int(spinning.inPython.Load()) >= spinCPUs {
		return false
	}
	if spinning.skip.Load() > 0 {
		spinning.skip.Add(-1)
		return false
	}
	if coresShort() || !spinning.spinner.CompareAndSwap(false, true) {
		return false
	}
	defer spinning.spinner.Store(false)
	start := monotime()
	for i := 0; ; i++ {
		if len(done) > 0 {
			spinning.fails.Store(0)
			return true
		}
		if i%64 == 63 && monotime()-start >= int64(spinMax) {
			break
		}
	}
	fails := min(spinning.fails.Add(1), spinBackoffMax)
	spinning.fails.Store(fails)
	spinning.skip.Store(1 << fails)
	return false
}

// coresShort tells whether the machine's runnable threads outnumber its
// CPUs, as last seen.
func coresShort() bool {
	now := monotime()
	if at := spinning.shortAt.Load(); now-at < int64(loadLookEvery) || !spinning.shortAt.CompareAndSwap(at, now) {
		return spinning.short.Load()
	}
	short := true
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		// "0.10 0.20 0.30 3/512 1234": the fourth field counts runnable
		// threads, this one included.
		if f := bytes.Fields(b); len(f) >= 4 {
			if running, _, ok := bytes.Cut(f[3], []byte{'/'}); ok {
				n := 0
				for _, c := range running {
					n = n*10 + int(c-'0')
				}
				short = n > spinCPUs
			}
		}
	}
	spinning.short.Store(short)
	return short
}
