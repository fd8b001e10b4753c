package plugin

// Benchmarks of the path a request takes inside Caddy, without HTTP: the
// handler packs the environ, the scheduler hands it to a C worker thread, the
// adapter calls a no-op app and the response comes back to the handler
// goroutine. Run them with
//
//	make bench                                    (part of the full benchmark)
//	go test -bench Bridge -run '^$' ./plugin      (with the Makefile's CGO_* exported)
//
// Plain `go test` compiles them but does not run them.

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"go.uber.org/zap"
)

const noopApps = `
BODY = b"ok"

def wsgi(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [BODY]

async def asgi(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": BODY})
`

// startNoopApp starts the no-op app of kind ("wsgi" or "asgi") from a module
// written to a temp dir, and returns a handler serving it.
func startNoopApp(b *testing.B, kind string, interpreters, threads int) *Python {
	return startTestApp(b, kind, noopApps, interpreters, threads)
}

// startTestApp starts the app of kind ("wsgi" or "asgi") whose module
// source defines it under that name, in real interpreters.
func startTestApp(tb testing.TB, kind, source string, interpreters, threads int) *Python {
	tb.Helper()
	dir := tb.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "test_app.py"), []byte(source), 0o644); err != nil {
		tb.Fatal(err)
	}
	module := "test_app:" + kind
	// Counted as a served app's requests are, so that the benchmark includes
	// what the metrics cost.
	metrics := newAppMetrics("bench")
	a, err := startApp(appConfig{
		metrics:      metrics,
		kind:         kind,
		module:       module,
		workingDir:   dir,
		interpreters: interpreters,
		threads:      threads,
		maxQueue:     1 << 16,
	}, zap.NewNop())
	if err != nil {
		tb.Fatalf("starting the %s app: %v", kind, err)
	}
	tb.Cleanup(a.stop)
	p := &Python{app: &appSlot{}, logger: zap.NewNop(), WorkingDir: dir, metrics: metrics}
	p.app.Store(a)
	if kind == "asgi" {
		p.ModuleASGI = module
	} else {
		p.ModuleWSGI = module
	}
	return p
}

// serveOnce runs one GET through the handler and checks the answer.
func serveOnce(p *Python) error {
	r := httptest.NewRequest(http.MethodGet, "/bench?x=1", nil)
	w := httptest.NewRecorder()
	if err := p.ServeHTTP(w, r, nil); err != nil {
		return err
	}
	if w.Code != http.StatusOK || w.Body.String() != "ok" {
		return fmt.Errorf("got %d %q, want 200 \"ok\"", w.Code, w.Body.String())
	}
	return nil
}

func benchBridge(b *testing.B, kind string) {
	// One request at a time: the latency of a round trip Go -> C -> Python -> Go.
	b.Run("serial", func(b *testing.B) {
		p := startNoopApp(b, kind, 1, 1)
		if err := serveOnce(p); err != nil { // warm-up, and a check
			b.Fatal(err)
		}
		b.ReportAllocs()
		cpu := cpuNanos(p)
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if err := serveOnce(p); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(cpuNanos(p)-cpu)/1e3/float64(b.N), "cpu-us/op")
	})
	// Many handler goroutines, two own-GIL interpreters: throughput of the scheduler.
	b.Run("parallel-2interp", func(b *testing.B) {
		p := startNoopApp(b, kind, 2, 4)
		if err := serveOnce(p); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		b.SetParallelism(4)
		cpu := cpuNanos(p)
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := serveOnce(p); err != nil {
					b.Error(err) // not Fatal: this is not the benchmark's goroutine
					return
				}
			}
		})
		b.ReportMetric(float64(cpuNanos(p)-cpu)/1e3/float64(b.N), "cpu-us/op")
	})
}

// BenchmarkBridgeWSGI: a no-op WSGI app through the scheduler and a C worker thread.
func BenchmarkBridgeWSGI(b *testing.B) { benchBridge(b, "wsgi") }

// BenchmarkBridgeASGI: a no-op ASGI app through the event loop of each interpreter.
func BenchmarkBridgeASGI(b *testing.B) { benchBridge(b, "asgi") }
