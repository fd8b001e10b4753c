package plugin

import (
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

func newTestRegistry() *prometheus.Registry { return prometheus.NewPedanticRegistry() }

func TestHistogramBucketsAreCumulativeAndInclusive(t *testing.T) {
	var h histogram
	for _, d := range []time.Duration{0, 500 * time.Microsecond, 700 * time.Millisecond, 100 * time.Second} {
		h.observe(d)
	}
	m := &dto.Metric{}
	if err := h.metric(descDuration, "x").Write(m); err != nil {
		t.Fatal(err)
	}
	got := map[float64]uint64{}
	for _, b := range m.Histogram.Bucket {
		got[b.GetUpperBound()] = b.GetCumulativeCount()
	}
	want := map[float64]uint64{0.0005: 2, 0.5: 2, 1: 3, 60: 3}
	for le, n := range want {
		if got[le] != n {
			t.Errorf("bucket le=%v: %d, want %d", le, got[le], n)
		}
	}
	if m.Histogram.GetSampleCount() != 4 || m.Histogram.GetSampleSum() < 100.7 {
		t.Errorf("count %d sum %v", m.Histogram.GetSampleCount(), m.Histogram.GetSampleSum())
	}
}

// testInstance is an app instance over a test pool, without interpreters.
func testInstance(m *appMetrics, interpID int64, state int32) (*app, [][]*worker) {
	p, ws, _ := newTestPool(1, 2, 4)
	a := &app{id: appSeq.Add(1), cfg: appConfig{kind: "wsgi", metrics: m}, pool: p, metrics: m}
	a.interps = []*interpreter{{id: interpID, workers: ws[0]}}
	a.state.Store(state)
	m.addInstance(a)
	return a, ws
}

func gather(t *testing.T, reg *prometheus.Registry, app string) map[string]float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range families {
		for _, m := range f.Metric {
			key, mine := f.GetName(), false
			for _, l := range m.Label {
				if l.GetName() == "app" {
					mine = l.GetValue() == app
					continue
				}
				key += "," + l.GetName() + "=" + l.GetValue()
			}
			if !mine {
				continue
			}
			switch {
			case m.Counter != nil:
				out[key] = m.Counter.GetValue()
			case m.Gauge != nil:
				out[key] = m.Gauge.GetValue()
			case m.Histogram != nil:
				out[key] = float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return out
}

func TestCollectorReportsEachSeriesOnceAcrossReloads(t *testing.T) {
	m := acquireMetrics("collector-test", nil)
	defer releaseMetrics(m, nil)
	// In isolation main, the instance being replaced and its successor both
	// run in interpreter 0.
	old, _ := testInstance(m, 0, appDraining)
	cur, ws := testInstance(m, 0, appServing)
	defer m.removeInstance(old)
	defer m.removeInstance(cur)
	if err := cur.pool.submit(queued()); err != nil {
		t.Fatal(err)
	}
	if _, what := cur.pool.next(ws[0][1], 0); what != nextRun {
		t.Fatal("the woken worker should run the request")
	}
	m.answered(200, time.Millisecond)
	m.answered(503, time.Millisecond)
	m.counted(101)
	m.refused()
	m.Restarted("admin")
	m.TimedOut("request")

	// Each config's registry gets the collector; registering it again is no error.
	reg := newTestRegistry()
	for i := 0; i < 2; i++ {
		if err := registerCollector(reg); err != nil {
			t.Fatal(err)
		}
	}
	got := gather(t, reg, "collector-test")
	want := map[string]float64{
		"vivarium_requests_total,class=2xx":         1,
		"vivarium_requests_total,class=5xx":         1,
		"vivarium_requests_total,class=1xx":         1,
		"vivarium_rejected_total":                   1,
		"vivarium_request_duration_seconds":         2,
		"vivarium_restarts_total,reason=admin":      1,
		"vivarium_timeouts_total,kind=request":      1,
		"vivarium_interpreters_up":                  1,
		"vivarium_interpreters_draining":            1,
		"vivarium_threads,interpreter=0,state=busy": 1,
		"vivarium_threads,interpreter=0,state=idle": 1,
		"vivarium_concurrency_limit,interpreter=0":  1,
		"vivarium_requests_in_flight":               1,
		"vivarium_queue_depth":                      0,
		"vivarium_processes_up":                     0,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
}

func TestQueueWaitIsTheTimeInTheQueue(t *testing.T) {
	p, ws, _, clock := newTimedPool(1, 1, 4)
	first, second := queued(), queued()
	_ = p.submit(first)
	_ = p.submit(second)
	w := ws[0][0]
	if got, _ := p.next(w, 0); got != first || first.waited != 0 {
		t.Fatalf("a request handed to an idle thread waits 0, got %d", first.waited)
	}
	clock.now += int64(3 * time.Millisecond)
	if got, _ := p.next(w, 0); got != second || second.waited != int64(3*time.Millisecond) {
		t.Fatalf("the queued request waited %d ns, want 3 ms", second.waited)
	}
	if p.interps[0].requests != 2 {
		t.Fatalf("the interpreter was handed %d requests, want 2", p.interps[0].requests)
	}
}

// BenchmarkRequestMetrics is what the metrics add to each request: the
// clock read at its start, and at its end the class counter, the duration
// and queue wait histograms. Run it with `go test -bench RequestMetrics -run '^$' ./plugin`.
func BenchmarkRequestMetrics(b *testing.B) {
	m := newAppMetrics("bench")
	record := func() {
		start := time.Since(epoch)
		out := outcome{status: 200}
		m.account(&out, nil, start)
		m.waited(0)
	}
	// CPU time of the benchmark's thread as well as wall time: on a machine
	// shared with other work, the wall time counts time spent descheduled.
	b.Run("serial", func(b *testing.B) {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		b.ReportAllocs()
		before := threadCPU()
		for i := 0; i < b.N; i++ {
			record()
		}
		b.ReportMetric(float64(threadCPU()-before)/float64(b.N), "cpu-ns/op")
	})
	// Handler goroutines on every core adding to one app's counters.
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				record()
			}
		})
	})
}

func threadCPU() int64 {
	var ru unix.Rusage
	_ = unix.Getrusage(unix.RUSAGE_THREAD, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}
