package plugin

import (
	"errors"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics of each app, on Caddy's Prometheus registry: `/metrics` of the
// admin endpoint, or the `metrics` handler.
//
// Caddy makes a new registry for every config it loads, so one collector,
// reading every live app when scraped, is registered into each: a reload
// never registers a metric twice in one registry. What is counted lives in
// an appMetrics per app name, kept in a caddy.UsagePool: a reload provisions
// the new config before it cleans up the old one, so an app that keeps its
// name keeps counting, and a counter only starts over when its app leaves
// the config. A request pays atomic adds on its app's appMetrics and
// nothing else; gauges (queue depth, threads, limits, memory) are read from
// the scheduler when scraped.
//
// Other parts of Vivarium record into an app's appMetrics (app.metrics)
// through its exported methods: Restarted, TimedOut, ProcessStarted and
// ProcessExited. Each is safe for concurrent use and for a nil receiver.

// classLabels names the status classes counted: what the client got.
// "none": it left before any status was sent.
var classLabels = [...]string{"none", "1xx", "2xx", "3xx", "4xx", "5xx"}

// durationBuckets are the upper bounds, in seconds, of the request duration
// and queue wait histograms.
var durationBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}

var bucketBounds = func() (ns [16]int64) {
	for i, s := range durationBuckets {
		ns[i] = int64(s * float64(time.Second))
	}
	return
}()

// histogram counts observations per bucket with one atomic add each; the
// cumulative counts Prometheus wants are added up when scraped.
type histogram struct {
	counts [len(bucketBounds) + 1]atomic.Uint64 // the last one: above every bound
	sumNs  atomic.Uint64
}

func (h *histogram) observe(d time.Duration) {
	i := 0
	for i < len(bucketBounds) && int64(d) > bucketBounds[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sumNs.Add(uint64(max(d, 0)))
}

func (h *histogram) metric(desc *prometheus.Desc, labels ...string) prometheus.Metric {
	buckets := make(map[float64]uint64, len(durationBuckets))
	var n uint64
	for i, bound := range durationBuckets {
		n += h.counts[i].Load()
		buckets[bound] = n
	}
	n += h.counts[len(durationBuckets)].Load()
	sum := float64(h.sumNs.Load()) / float64(time.Second)
	return prometheus.MustNewConstHistogram(desc, n, sum, buckets, labels...)
}

// appMetrics is what is counted for one app name, across reloads and
// restarts, and the app's instances and handlers live now.
type appMetrics struct {
	name string

	requests   [len(classLabels)]atomic.Uint64
	duration   histogram // requests answered by the app, WebSockets left out
	queueWait  histogram // WSGI requests: time waiting for a thread
	rejected   atomic.Uint64
	websockets atomic.Int64

	mu        sync.Mutex
	restarts  map[string]uint64 // by reason
	timeouts  map[string]uint64 // by kind
	processes map[int]bool      // pids of the app's processes: serving (true) or retiring
	instances []*app            // started and not yet ended, oldest first
	handlers  []*Python         // provisioned and not cleaned up, oldest first
}

// restartAdmin is the reason of a restart asked for at the admin API.
const restartAdmin = "admin"

func newAppMetrics(name string) *appMetrics {
	return &appMetrics{
		name:      name,
		restarts:  map[string]uint64{restartAdmin: 0},
		timeouts:  map[string]uint64{},
		processes: map[int]bool{},
	}
}

// Destruct is for caddy.UsagePool: nothing to release.
func (m *appMetrics) Destruct() error { return nil }

// answered counts a request the app answered (status 0: the client left
// first) and how long it took.
func (m *appMetrics) answered(status int, took time.Duration) {
	if m == nil {
		return
	}
	m.requests[statusClass(status)].Add(1)
	m.duration.observe(took)
}

// waited records how long a WSGI request waited in the queue; zero when a
// thread took it at once.
func (m *appMetrics) waited(d time.Duration) {
	if m == nil {
		return
	}
	m.queueWait.observe(d)
}

// refused counts a request answered 503 because the app was full.
func (m *appMetrics) refused() {
	if m != nil {
		m.rejected.Add(1)
	}
}

// counted counts a request by its status only: a WebSocket, or a 503 of
// our own.
func (m *appMetrics) counted(status int) {
	if m != nil {
		m.requests[statusClass(status)].Add(1)
	}
}

// outcome is what a request got, as the handler learns it: the status the
// app sent, if any. It lives on ServeHTTP's stack.
type outcome struct {
	status    int
	websocket bool
}

// account records a request that reached the app once its handler is done:
// err is what the handler returned (a caddyhttp.HandlerError carries the
// status Caddy will send), start the scheduler's clock when it arrived (one
// read of the monotonic clock, where time.Now reads the wall clock too).
func (m *appMetrics) account(out *outcome, err error, start time.Duration) {
	status := out.status
	if err != nil {
		status = errorStatus(err)
	}
	if out.websocket || status == 0 || (err != nil && status == http.StatusServiceUnavailable) {
		m.counted(status)
		return
	}
	m.answered(status, time.Since(epoch)-start)
}

// errorStatus is the status Caddy answers a handler's error with. Apart
// from the call: errors.As takes its target's address, which would put it
// on the heap for every request.
func errorStatus(err error) int {
	var he caddyhttp.HandlerError
	if errors.As(err, &he) {
		return he.StatusCode
	}
	return http.StatusInternalServerError
}

func (m *appMetrics) socketOpened() {
	if m != nil {
		m.websockets.Add(1)
	}
}

func (m *appMetrics) socketClosed() {
	if m != nil {
		m.websockets.Add(-1)
	}
}

func statusClass(status int) int {
	if status < 100 || status > 599 {
		return 0
	}
	return status / 100
}

// update changes m's maps and lists under its lock; a nil m (an app started
// without metrics, as in tests) records nothing.
func (m *appMetrics) update(change func()) {
	if m == nil {
		return
	}
	m.mu.Lock()
	change()
	m.mu.Unlock()
}

// Restarted counts a restart of the app's interpreters or processes, for
// a reason such as "admin", "max_requests" or "crash".
func (m *appMetrics) Restarted(reason string) { m.update(func() { m.restarts[reason]++ }) }

// TimedOut counts a request cut short by a limit of the app, of a kind
// such as "request", "write" or "start".
func (m *appMetrics) TimedOut(kind string) { m.update(func() { m.timeouts[kind]++ }) }

// ProcessStarted records a process serving the app: it counts in
// vivarium_processes_up and its resident memory is read when scraped.
func (m *appMetrics) ProcessStarted(pid int) { m.update(func() { m.processes[pid] = true }) }

// ProcessDraining records that a process of the app was replaced by a
// recycle: it finishes its requests, and no longer counts as up.
func (m *appMetrics) ProcessDraining(pid int) { m.update(func() { m.processes[pid] = false }) }

// ProcessExited records that a process of the app is gone.
func (m *appMetrics) ProcessExited(pid int) { m.update(func() { delete(m.processes, pid) }) }

func (m *appMetrics) addInstance(a *app) { m.update(func() { m.instances = append(m.instances, a) }) }

func (m *appMetrics) removeInstance(a *app) {
	m.update(func() { m.instances = slices.DeleteFunc(m.instances, func(b *app) bool { return b == a }) })
}

func (m *appMetrics) live() []*app {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.instances)
}

// handler is the newest handler of the app: the one of the config loaded last.
func (m *appMetrics) handler() *Python {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.handlers) == 0 {
		return nil
	}
	return m.handlers[len(m.handlers)-1]
}

// appsByName holds the appMetrics of every app name in a live config.
var appsByName = caddy.NewUsagePool()

// acquireMetrics returns the app's appMetrics, made on its first use, and
// lists h as one of its handlers; releaseMetrics undoes it.
func acquireMetrics(name string, h *Python) *appMetrics {
	v, _, _ := appsByName.LoadOrNew(name, func() (caddy.Destructor, error) { return newAppMetrics(name), nil })
	m := v.(*appMetrics)
	m.update(func() { m.handlers = append(m.handlers, h) })
	return m
}

func releaseMetrics(m *appMetrics, h *Python) {
	m.update(func() { m.handlers = slices.DeleteFunc(m.handlers, func(g *Python) bool { return g == h }) })
	_, _ = appsByName.Delete(m.name)
}

// allApps lists the appMetrics of every app, by name.
func allApps() []*appMetrics {
	var out []*appMetrics
	appsByName.Range(func(_, v any) bool {
		out = append(out, v.(*appMetrics))
		return true
	})
	slices.SortFunc(out, func(a, b *appMetrics) int { return strings.Compare(a.name, b.name) })
	return out
}

func lookupApp(name string) *appMetrics {
	for _, m := range allApps() {
		if m.name == name {
			return m
		}
	}
	return nil
}

// The metrics, as Prometheus describes them.
var (
	descRequests = prometheus.NewDesc("vivarium_requests_total",
		"Requests that reached the app, by the class of the status they got (none: the client left first); WebSocket handshakes included.",
		[]string{"app", "class"}, nil)
	descDuration = prometheus.NewDesc("vivarium_request_duration_seconds",
		"Time from a request reaching the app to its answer, for requests the app answered (not 503s, not WebSockets).",
		[]string{"app"}, nil)
	descQueueWait = prometheus.NewDesc("vivarium_queue_wait_seconds",
		"Time a WSGI request waited in the app's queue for a thread (0 when one took it at once).",
		[]string{"app"}, nil)
	descRejected = prometheus.NewDesc("vivarium_rejected_total",
		"Requests answered 503 Service Unavailable because the app's max_queue was reached.",
		[]string{"app"}, nil)
	descQueueDepth = prometheus.NewDesc("vivarium_queue_depth",
		"WSGI requests waiting for a thread now.",
		[]string{"app"}, nil)
	descInFlight = prometheus.NewDesc("vivarium_requests_in_flight",
		"Requests (and WebSockets) the app has now: running, or waiting in its queue.",
		[]string{"app"}, nil)
	descThreads = prometheus.NewDesc("vivarium_threads",
		"WSGI worker threads of each interpreter, busy with a request or idle.",
		[]string{"app", "interpreter", "state"}, nil)
	descLimit = prometheus.NewDesc("vivarium_concurrency_limit",
		"How many requests a WSGI interpreter may run at once now (the scheduler adapts it between 1 and threads).",
		[]string{"app", "interpreter"}, nil)
	descInterpsUp = prometheus.NewDesc("vivarium_interpreters_up",
		"Interpreters serving the app.",
		[]string{"app"}, nil)
	descInterpsDraining = prometheus.NewDesc("vivarium_interpreters_draining",
		"Interpreters of a replaced instance of the app (reload or restart), finishing their requests.",
		[]string{"app"}, nil)
	descRestarts = prometheus.NewDesc("vivarium_restarts_total",
		"Restarts of the app's interpreters or processes, by reason (admin: POST /python/apps/<name>/restart).",
		[]string{"app", "reason"}, nil)
	descTimeouts = prometheus.NewDesc("vivarium_timeouts_total",
		"Requests cut short by a time limit of the app, by kind.",
		[]string{"app", "kind"}, nil)
	descWebSockets = prometheus.NewDesc("vivarium_websockets_open",
		"WebSockets open now.",
		[]string{"app"}, nil)
	descArena = prometheus.NewDesc("vivarium_interpreter_arena_bytes",
		"Memory the interpreter's own object allocator (pymalloc) holds in arenas: Python objects up to 512 bytes. "+
			"Larger objects and memory of C extensions are not counted; process_resident_memory_bytes is the whole process. "+
			"Only for interpreters with an allocator of their own (isolation interpreter).",
		[]string{"app", "interpreter"}, nil)
	descProcessesUp = prometheus.NewDesc("vivarium_processes_up",
		"Processes serving the app.",
		[]string{"app"}, nil)
	descProcessRSS = prometheus.NewDesc("vivarium_process_resident_bytes",
		"Resident memory of each process serving the app.",
		[]string{"app", "pid"}, nil)
)

var allDescs = []*prometheus.Desc{
	descRequests, descDuration, descQueueWait, descRejected, descQueueDepth, descInFlight,
	descThreads, descLimit, descInterpsUp, descInterpsDraining, descRestarts, descTimeouts,
	descWebSockets, descArena, descProcessesUp, descProcessRSS,
}

// collector reads every live app when the registry is scraped.
type collector struct{}

func (collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range allDescs {
		ch <- d
	}
}

func (collector) Collect(ch chan<- prometheus.Metric) {
	for _, m := range allApps() {
		m.collect(ch)
	}
}

// registerCollector adds the collector to a config's registry, once.
func registerCollector(reg *prometheus.Registry) error {
	if reg == nil {
		return nil
	}
	err := reg.Register(collector{})
	if errors.As(err, &prometheus.AlreadyRegisteredError{}) {
		return nil
	}
	return err
}

func (m *appMetrics) collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	name := m.name
	for i, class := range classLabels {
		counter(descRequests, m.requests[i].Load(), name, class)
	}
	ch <- m.duration.metric(descDuration, name)
	ch <- m.queueWait.metric(descQueueWait, name)
	counter(descRejected, m.rejected.Load(), name)
	gauge(descWebSockets, float64(m.websockets.Load()), name)

	m.mu.Lock()
	for reason, n := range m.restarts {
		counter(descRestarts, n, name, reason)
	}
	for kind, n := range m.timeouts {
		counter(descTimeouts, n, name, kind)
	}
	pids := make([]int, 0, len(m.processes))
	serving := 0
	for pid, up := range m.processes {
		pids = append(pids, pid)
		serving += boolInt(up)
	}
	m.mu.Unlock()
	gauge(descProcessesUp, float64(serving), name)
	for _, pid := range pids {
		if rss, ok := residentBytes(pid); ok {
			gauge(descProcessRSS, float64(rss), name, strconv.Itoa(pid))
		}
	}

	// Serving instances first: in isolation main an instance being replaced
	// has the same interpreter (0) as its successor, and a series may be
	// reported once only.
	views := []instanceView{}
	for _, a := range m.live() {
		views = append(views, a.view())
	}
	slices.SortStableFunc(views, func(a, b instanceView) int {
		return boolInt(a.State != stateNameServing) - boolInt(b.State != stateNameServing)
	})
	var queued, inFlight int
	var up, draining int
	seen := map[int64]bool{}
	for _, v := range views {
		queued += v.Queued
		inFlight += v.InFlight
		for _, in := range v.Interpreters {
			switch {
			case in.State == stateNameServing:
				up++
			case in.State == stateNameDraining:
				draining++
			}
			if seen[in.ID] || in.State == stateNameEnded {
				continue
			}
			seen[in.ID] = true
			id := strconv.FormatInt(in.ID, 10)
			if v.Kind == "wsgi" {
				gauge(descThreads, float64(in.Busy), name, id, "busy")
				gauge(descThreads, float64(in.Idle), name, id, "idle")
				gauge(descLimit, float64(in.Limit), name, id)
			}
			if in.ArenaBytes != nil {
				gauge(descArena, float64(*in.ArenaBytes), name, id)
			}
		}
	}
	gauge(descQueueDepth, float64(queued), name)
	gauge(descInFlight, float64(inFlight), name)
	gauge(descInterpsUp, float64(up), name)
	gauge(descInterpsDraining, float64(draining), name)
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

var pageSize = uint64(os.Getpagesize())

// residentBytes reads a process's resident set size from /proc.
func residentBytes(pid int) (uint64, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/statm")
	if err != nil {
		return 0, false
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0, false
	}
	pages, err := strconv.ParseUint(f[1], 10, 64)
	if err != nil {
		return 0, false
	}
	return pages * pageSize, true
}
