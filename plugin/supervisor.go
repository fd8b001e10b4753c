package plugin

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"
)

// Supervision of an `isolation process` app: one goroutine per slot starts its
// process, waits for it to end and starts another, with a delay that doubles
// while processes die young or fail to start. While no process of the app
// runs, its requests get 503 with the reason in the log. Stopping the app
// (reload, exit) drains and ends every process; none outlives Caddy, as the
// kernel kills a child whose parent died (PR_SET_PDEATHSIG, process.go).

const (
	// startMargin is what a process gets on top of the app's start_timeout
	// to start its Go runtime and CPython.
	startMargin = 10 * time.Second
	restartBase = 200 * time.Millisecond
	restartMax  = 30 * time.Second
	// stableAfter: a process that ran this long before it died counts as a
	// success; the next restart comes after restartBase again.
	stableAfter = 10 * time.Second
	// crashLoopAfter failed starts in a row are logged as the app being down.
	crashLoopAfter = 5
	// exitMargin is what a process being stopped gets, on top of the time
	// its own stop may take (the grace, then forceWait for interrupted code),
	// to exit before Caddy kills it.
	exitMargin = 5 * time.Second
)

func restartDelay(failures int) time.Duration {
	d := restartBase
	for i := 0; i < failures && d < restartMax; i++ {
		d *= 2
	}
	return min(d, restartMax)
}

// supervise runs the slot's processes for the app's life: the first start,
// whose outcome goes to first (a failure refuses the config, as an app that
// fails to load in-process does), then a restart after every death, and a
// replacement when max_requests or max_memory is due (process_recycle.go).
func (s *slot) supervise(first chan<- error) {
	pa := s.pa
	defer pa.wg.Done()
	c, err := s.start(nil)
	first <- err
	if err != nil {
		return
	}
	var memory <-chan time.Time
	if pa.cfg.controls.maxMemory > 0 {
		tick := time.NewTicker(memoryCheckEvery)
		defer tick.Stop()
		memory = tick.C
	}
	for {
		select {
		case <-c.ended:
		case <-s.due:
			if call, ok := s.requestsDue(c); ok {
				c = s.replace(c, call)
			}
			continue
		case <-memory:
			if call, ok := s.overMemory(c); ok {
				c = s.replace(c, call)
			}
			continue
		case <-pa.stopping:
			s.stop(c)
			return
		}
		select {
		case <-pa.stopping:
			return
		default:
		}
		if c.endedAt.Sub(c.readyAt) >= stableAfter {
			s.failures = 0
		}
		delay := restartDelay(s.failures)
		s.failures++
		s.recordDeath(c, true)
		s.logDeath(c, "restarting it", zap.Duration("restart_in", delay))
		for {
			select {
			case <-time.After(delay):
			case <-pa.stopping:
				return
			}
			c, err = s.start(nil)
			if err == nil {
				break
			}
			if errors.Is(err, errClosed) {
				return
			}
			s.startFailures++
			delay = restartDelay(s.failures)
			s.failures++
			s.logStartFailure(err, delay)
		}
		if s.startFailures >= crashLoopAfter {
			c.logger.Info("the app's process started again", zap.Int("process", s.index),
				zap.Int("failed_starts", s.startFailures))
		}
		s.startFailures = 0
	}
}

// start runs a new process for the slot and waits until its app serves; it
// then takes the place of old, if any (a recycle).
func (s *slot) start(old *child) (*child, error) {
	pa := s.pa
	started := time.Now()
	c, err := s.spawn()
	if err != nil {
		return nil, err
	}
	limit := pa.cfg.controls.startTimeout + startMargin
	timer := time.NewTimer(limit)
	defer timer.Stop()
	var failure error
	select {
	case msg := <-c.ready:
		if msg != "" {
			failure = errors.New(msg)
			break
		}
		c.readyAt = time.Now()
		if !s.up(c, old) {
			<-c.ended
			return nil, fmt.Errorf("its process %s as it became ready%s", c.status, quoted(c.lastWords()))
		}
		pa.mu.Lock()
		pa.lastFailure = ""
		pa.mu.Unlock()
		c.logger.Info("app process started", zap.Int("process", s.index), zap.Duration("took", time.Since(started)))
		s.checkFresh(c)
		return c, nil
	case <-c.ended:
		failure = fmt.Errorf("its process %s before the app was ready%s", c.status, quoted(c.lastWords()))
		select {
		case msg := <-c.ready: // why it could not start, sent before it exited
			if msg != "" {
				failure = errors.New(msg)
			}
		default:
		}
	case <-timer.C:
		failure = fmt.Errorf("its process was not ready %s after it started (start_timeout %s), so Caddy ended it",
			limit, pa.cfg.controls.startTimeout)
	case <-pa.stopping:
		failure = errClosed
	}
	c.kill()
	<-c.ended
	return nil, failure
}

// up makes c the slot's process: it gets the queued WSGI requests it has
// threads for and the events waiting on the slot's loop. A live old process
// it replaces retires: it gets no new request, and the events of those it
// has go on reaching it (pump). False when c died before that.
func (s *slot) up(c, old *child) bool {
	pa := s.pa
	// pumpMu first: no batch is on its way to old once it retires.
	s.pumpMu.Lock()
	pa.mu.Lock()
	if c.isDead() {
		pa.mu.Unlock()
		s.pumpMu.Unlock()
		return false
	}
	if old != nil && !old.isDead() {
		old.retiring.Store(true)
		s.setRetiring(append(slices.Clone(s.retired()), old))
		pa.app.metrics.ProcessDraining(old.pid)
	}
	s.cur.Store(c)
	_, next := s.fill()
	pa.app.metrics.ProcessStarted(c.pid) // under pa.mu: before lost can say it exited
	pa.mu.Unlock()
	s.pumpMu.Unlock()
	for _, pr := range next {
		c.sendRequest(pr, writeInline)
	}
	if s.loop != nil {
		s.pump()
	}
	return true
}

// stop lets the process finish its requests (queued WSGI ones first go out
// to the app's processes), then waits for it to exit, or kills it. The
// process stops as an app in Caddy's process does (stop.go): its requests
// get the grace, what still runs is interrupted and gets forceWait to come
// back, then it exits whatever its code does; Caddy kills it exitMargin
// after that, so a stop is bounded even by a process that no longer reads
// its link.
func (s *slot) stop(c *child) {
	pa := s.pa
	deadline := time.Now().Add(pa.cfg.stopGrace())
	for time.Now().Before(deadline) {
		pa.mu.Lock()
		queued := len(pa.queue)
		pa.mu.Unlock()
		if queued == 0 {
			break
		}
		select {
		case <-c.ended:
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
	s.end(c)
}

// end tells the process to stop and waits until it exits, or kills it.
func (s *slot) end(c *child) {
	grace := s.pa.cfg.stopGrace()
	c.link.send(frStop, 0)
	wait := grace + forceWait + exitMargin
	select {
	case <-c.ended:
	case <-time.After(wait):
		c.logger.Error("the app's process did not exit in time after its stop; killed it",
			zap.Int("process", s.index), zap.Duration("waited", wait))
		c.kill()
		<-c.ended
	}
}

func (pa *processApp) stop() {
	pa.stopOnce.Do(func() {
		pa.mu.Lock()
		pa.closed = true
		pa.mu.Unlock()
		for _, s := range pa.slots {
			if s.loop != nil {
				close(s.loop.closing) // open WebSockets are closed with 1001
			}
		}
		close(pa.stopping)
		pa.wg.Wait()
		pa.mu.Lock()
		orphans := pa.queue
		pa.queue = nil
		pa.mu.Unlock()
		for _, pr := range orphans {
			if pr.state.CompareAndSwap(stateQueued, stateRunning) {
				pr.push(procMsg{typ: msgUnavailable})
			}
		}
		for _, s := range pa.slots {
			if s.loop != nil {
				close(s.loop.exited)
			}
		}
	})
}

// recordDeath keeps what the admin API shows of the slot's last death;
// restarted: the slot starts another process for it (a retiring one that
// dies is replaced already).
func (s *slot) recordDeath(c *child, restarted bool) {
	c.mu.Lock()
	running := len(c.running)
	c.mu.Unlock()
	pa := s.pa
	pa.mu.Lock()
	if restarted {
		s.restarts++
	}
	s.lastExit = &exitView{
		PID: c.pid, Status: c.status, Signal: c.signal, ExitCode: c.code, At: c.endedAt,
		KilledByCaddy: c.killed.Load(), RequestsInFlight: running,
	}
	pa.mu.Unlock()
	if restarted {
		pa.app.metrics.Restarted("crash")
	}
}

// logDeath logs the death of a process, then what the slot does about it.
func (s *slot) logDeath(c *child, then string, extra ...zap.Field) {
	words := c.lastWords()
	c.mu.Lock()
	running := c.running
	c.mu.Unlock()
	fields := []zap.Field{zap.Int("process", s.index)}
	if c.signal != "" {
		fields = append(fields, zap.String("signal", c.signal))
	} else {
		fields = append(fields, zap.Int("exit_code", c.code))
	}
	if fatal := fatalLine(words); fatal != "" {
		fields = append(fields, zap.String("fatal", fatal))
	}
	fields = append(fields, zap.Int("requests_in_flight", len(running)))
	if len(running) > 0 {
		fields = append(fields, zap.Strings("requests", running[:min(len(running), 20)]))
	}
	if len(words) > 0 {
		fields = append(fields, zap.Strings("last_output", words))
	}
	fields = append(fields, extra...)
	msg := "the app's process " + c.status
	if c.signal == "SIGKILL" && !c.killed.Load() {
		msg += " (not by Caddy; the kernel's OOM killer sends SIGKILL when memory runs out, see dmesg)"
	}
	c.logger.Error(msg+"; its requests in flight got 502; "+then, fields...)
}

func (s *slot) logStartFailure(err error, next time.Duration) {
	pa := s.pa
	pa.mu.Lock()
	pa.lastFailure = lastLine(err.Error())
	pa.mu.Unlock()
	if s.startFailures == crashLoopAfter {
		pa.logger.Error(fmt.Sprintf("the app failed to start %d times in a row: it answers 503 while none of its "+
			"processes runs, and is tried again after growing delays, up to %s", crashLoopAfter, restartMax),
			zap.Int("process", s.index), zap.String("reason", err.Error()), zap.Duration("next_attempt_in", next))
		return
	}
	pa.logger.Error("the app's process failed to start", zap.Int("process", s.index),
		zap.Int("attempt", s.startFailures), zap.String("reason", err.Error()), zap.Duration("next_attempt_in", next))
}

// fatalLine picks the line in which the Go runtime or CPython names a fatal
// signal or error ("SIGSEGV: segmentation violation", "Fatal Python error: ...").
func fatalLine(lines []string) string {
	for _, l := range lines {
		if strings.HasPrefix(l, "SIG") && strings.Contains(l, ": ") || strings.HasPrefix(l, "Fatal Python error") ||
			strings.HasPrefix(l, "fatal error: ") {
			return l
		}
	}
	return ""
}

func lastLine(s string) string {
	s = strings.TrimRight(s, "\n ")
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

func quoted(lines []string) string {
	if len(lines) == 0 {
		return ""
	}
	return "; its last output:\n" + strings.Join(lines, "\n")
}

// processView is one of an app's processes in GET /python/apps.
type processView struct {
	Process  int       `json:"process"` // its slot, 0 to interpreters-1, across restarts
	PID      int       `json:"pid,omitempty"`
	State    string    `json:"state"` // serving, restarting (none runs), draining (recycled, finishing), stopping
	Started  time.Time `json:"started,omitzero"`
	InFlight int       `json:"in_flight"` // requests and WebSockets it runs
	RSSBytes uint64    `json:"rss_bytes,omitempty"`
	Restarts int       `json:"restarts"` // processes of this slot that died and were replaced
	Recycles int       `json:"recycles"` // processes of this slot replaced by max_requests or max_memory
	// While none runs because starts fail: the last failure's reason.
	StartFailure string       `json:"start_failure,omitempty"`
	LastExit     *exitView    `json:"last_exit,omitempty"`
	LastRecycle  *recycleView `json:"last_recycle,omitempty"`
}

// exitView is how a process of the app ended.
type exitView struct {
	PID              int       `json:"pid"`
	Status           string    `json:"status"` // "exited with status 1", "was killed by signal SIGSEGV"
	Signal           string    `json:"signal,omitempty"`
	ExitCode         int       `json:"exit_code"`
	At               time.Time `json:"at"`
	KilledByCaddy    bool      `json:"killed_by_caddy"`
	RequestsInFlight int       `json:"requests_in_flight"` // they got 502
}

// view reads the state of the app's processes and its queue: each slot's
// process, then those retiring after a recycle.
func (pa *processApp) view() (procs []processView, queued int) {
	pa.mu.Lock()
	defer pa.mu.Unlock()
	var retiring []processView
	for _, s := range pa.slots {
		v := processView{Process: s.index, State: "restarting", Restarts: s.restarts, Recycles: s.recycles}
		if s.lastExit != nil {
			e := *s.lastExit
			v.LastExit = &e
		}
		if s.lastRecycle != nil {
			r := *s.lastRecycle
			v.LastRecycle = &r
		}
		if c := s.cur.Load(); c != nil {
			v.State = stateNameServing
			pa.describe(&v, c)
		} else {
			v.StartFailure = pa.lastFailure
		}
		for _, c := range s.retired() {
			if c.isDead() {
				continue // exited: its drain forgets it next
			}
			r := processView{Process: s.index, State: "draining", Restarts: s.restarts, Recycles: s.recycles}
			pa.describe(&r, c)
			retiring = append(retiring, r)
		}
		procs = append(procs, v)
	}
	procs = append(procs, retiring...)
	if pa.closed {
		for i := range procs {
			procs[i].State = "stopping"
		}
	}
	return procs, len(pa.queue)
}

// describe fills in what v shows of process c. Caller holds pa.mu.
func (pa *processApp) describe(v *processView, c *child) {
	v.PID, v.Started = c.pid, c.readyAt
	if pa.cfg.kind == "asgi" {
		c.mu.Lock()
		v.InFlight = len(c.owned)
		c.mu.Unlock()
	} else {
		v.InFlight = c.inflight
	}
	if rss, ok := residentBytes(c.pid); ok {
		v.RSSBytes = rss
	}
}
