package plugin

// Benchmarks of `isolation process` without HTTP: the same no-op apps and
// round trips as bridge_bench_test.go, through a child process and its link.
// Compared with BenchmarkBridgeWSGI/ASGI they give the transport's cost per
// request; cpu-us/op counts both processes.

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"go.uber.org/zap"
)

// TestMain lets the test binary be its own child process: isolation process
// runs /proc/self/exe python-worker.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "python-worker" {
		os.Exit(runChild())
	}
	os.Exit(m.Run())
}

func startNoopProcessApp(b *testing.B, kind string, processes, threads int) *Python {
	b.Helper()
	dir := b.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "noop_app.py"), []byte(noopApps), 0o644); err != nil {
		b.Fatal(err)
	}
	module := "noop_app:" + kind
	metrics := newAppMetrics("bench")
	a, err := startApp(appConfig{
		metrics:      metrics,
		kind:         kind,
		module:       module,
		isolation:    isolationProcessCode,
		workingDir:   dir,
		interpreters: processes,
		threads:      threads,
		maxQueue:     1 << 16,
	}, zap.NewNop())
	if err != nil {
		b.Fatalf("starting the no-op %s app: %v", kind, err)
	}
	b.Cleanup(a.stop)
	p := &Python{app: &appSlot{}, logger: zap.NewNop(), WorkingDir: dir, metrics: metrics}
	p.app.Store(a)
	if kind == "asgi" {
		p.ModuleASGI = module
	} else {
		p.ModuleWSGI = module
	}
	return p
}

// cpuNanos is the CPU time (user + system) this process and the app's
// processes have used.
func cpuNanos(p *Python) int64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	total := ru.Utime.Nano() + ru.Stime.Nano()
	procs := p.app.Load().procs
	if procs == nil {
		return total
	}
	for _, s := range procs.slots {
		if c := s.cur.Load(); c != nil {
			total += childCPU(c.pid)
		}
	}
	return total
}

func childCPU(pid int) int64 {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// Fields after the command name, which is in parentheses: utime and stime
	// are the 12th and 13th of them, in clock ticks (100 a second).
	fields := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+2:]))
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	return (utime + stime) * 10_000_000
}

func benchProcess(b *testing.B, kind string) {
	run := func(b *testing.B, p *Python, parallel bool) {
		if err := serveOnce(p); err != nil { // warm-up, and a check
			b.Fatal(err)
		}
		b.ReportAllocs()
		cpu := cpuNanos(p)
		b.ResetTimer()
		if parallel {
			b.SetParallelism(4)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := serveOnce(p); err != nil {
						b.Error(err)
						return
					}
				}
			})
		} else {
			for i := 0; i < b.N; i++ {
				if err := serveOnce(p); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.StopTimer()
		b.ReportMetric(float64(cpuNanos(p)-cpu)/1e3/float64(b.N), "cpu-us/op")
	}
	b.Run("serial", func(b *testing.B) { run(b, startNoopProcessApp(b, kind, 1, 1), false) })
	b.Run("parallel-2proc", func(b *testing.B) { run(b, startNoopProcessApp(b, kind, 2, 4), true) })
}

// BenchmarkBridgeProcessWSGI: a no-op WSGI app in a child process.
func BenchmarkBridgeProcessWSGI(b *testing.B) { benchProcess(b, "wsgi") }

// BenchmarkBridgeProcessASGI: a no-op ASGI app in a child process.
func BenchmarkBridgeProcessASGI(b *testing.B) { benchProcess(b, "asgi") }
