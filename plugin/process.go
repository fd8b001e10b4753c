package plugin

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/sys/unix"
)

// `isolation process`: the app runs in child processes of Caddy, `interpreters`
// of them, each the same binary in its worker mode (child.go) hosting the app
// in its own main interpreter. Any extension module loads there, any number of
// such apps share a config, and a crash takes one process down, not Caddy.
//
// Caddy keeps the HTTP side: it packs a request as it would for its own
// threads and sends those bytes over the process's link (transport.go). WSGI
// requests wait here in one FIFO queue and go to the process with the fewest
// in flight that has a free thread; each process schedules its threads itself,
// as an in-process app does. An ASGI app's processes are event loops of their
// own: each has a loop here (remote) whose events go over the link, so the
// ASGI and WebSocket code serves them unchanged.
//
// Supervision (supervisor.go) restarts a process that dies.

const (
	isolationProcess = "process"
	isolationAuto    = "auto"
)

// isolationNames lists the values of `isolation`, for error messages.
const isolationNames = "interpreter, shared, main, process or auto"

func knownIsolation(s string) bool {
	_, ok := isolationCodes[s]
	return ok || s == isolationAuto
}

// validateProcess checks what applies to process apps only.
func (p *Python) validateProcess() error {
	if (p.User != "" || p.Group != "") && p.Isolation != isolationProcess && p.Isolation != isolationAuto {
		return fmt.Errorf("%s: user and group need isolation process: only an app in processes of its own "+
			"can run as another user", p.name())
	}
	return nil
}

// Messages for a WSGI request's handler besides the child's frames.
const (
	msgLost        byte = 200 + iota // its process died with it
	msgUnavailable                   // no process of the app runs any more
)

var errLost = errors.New("the app's process died while it ran the request")

// procSeq numbers the WSGI requests sent to processes.
var procSeq atomic.Uint64

// processApp is the Caddy side of an `isolation process` app.
type processApp struct {
	app    *app
	cfg    appConfig
	logger *zap.Logger
	creds  *syscall.Credential
	env    []string // the children's environment
	slots  []*slot

	mu          sync.Mutex
	queue       []*procRequest // WSGI: waiting for a process with a free thread
	closed      bool
	lastFailure string // why the last start failed, for 503s while none runs

	recycleOff atomic.Bool // a replacement failed to start (process_recycle.go)
	memoryOff  atomic.Bool // a fresh process is over max_memory already

	stopping chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup // the supervisors
}

// slot is one of an app's `interpreters` processes, over its restarts.
type slot struct {
	pa    *processApp
	index int
	loop  *loop // ASGI: the loop here that stands for the process's loop
	cur   atomic.Pointer[child]

	// Processes replaced by a recycle that finish what they have
	// (process_recycle.go); changed under pa.mu and pumpMu.
	retiring atomic.Pointer[[]*child]
	due      chan struct{} // cap 1: a process reached its max_requests

	pumpMu sync.Mutex

	// For the admin API (pa.mu).
	restarts    int          // processes that died and were replaced
	lastExit    *exitView    // how the last one ended
	recycles    int          // processes replaced by max_requests or max_memory
	lastRecycle *recycleView // the last of those

	// The supervisor's own.
	failures      int // restarts in a row that did not lead to a stable run
	startFailures int // starts in a row that failed
}

// child is one process run for a slot.
type child struct {
	slot    *slot
	cmd     *exec.Cmd
	pid     int
	link    *link
	logger  *zap.Logger
	ready   chan string   // the frReady message
	ended   chan struct{} // closed once the process is waited for and its link read to the end
	read    chan struct{} // closed when its link's reader stopped
	outDone chan struct{} // closed when its output pipe reached EOF
	readyAt time.Time

	// Set before ended is closed.
	status  string // "exited with status 1", "was killed by signal SIGKILL"
	signal  string
	code    int
	endedAt time.Time
	killed  atomic.Bool // Caddy killed it

	// Recycling (process_recycle.go).
	limit    int64         // max_requests for this one, with its jitter; 0: none
	served   atomic.Int64  // requests and WebSockets it finished
	retiring atomic.Bool   // replaced: it finishes what it has and takes nothing new
	settled  chan struct{} // cap 1: a request of a retiring process ended

	inflight int // WSGI: requests sent to it and not yet answered (pa.mu)

	mu       sync.Mutex
	dead     bool
	requests map[uint64]*procRequest // WSGI, in flight there
	owned    map[uint64]asgiWhat     // ASGI tokens in flight there, and what each is
	running  []string                // what it ran when it died
	tail     []string                // its last lines of output
}

func (a *app) startProcesses() error {
	cfg := a.cfg
	creds, userEnv, err := credentials(cfg.user, cfg.group)
	if err != nil {
		return err
	}
	pa := &processApp{
		app:      a,
		cfg:      cfg,
		logger:   a.logger,
		creds:    creds,
		env:      childEnv(userEnv),
		stopping: make(chan struct{}),
	}
	a.procs = pa
	for i := 0; i < cfg.interpreters; i++ {
		s := &slot{pa: pa, index: i, due: make(chan struct{}, 1)}
		if cfg.kind == "asgi" {
			s.loop = &loop{
				efd:     -1,
				remote:  s,
				ready:   make(chan string, 1),
				closing: make(chan struct{}),
				exited:  make(chan struct{}),
				events:  make([]byte, 4, 4096),
			}
			a.interps = append(a.interps, &interpreter{loop: s.loop})
		}
		pa.slots = append(pa.slots, s)
	}
	first := make(chan error, len(pa.slots))
	for _, s := range pa.slots {
		pa.wg.Add(1)
		go s.supervise(first)
	}
	var failed error
	for range pa.slots {
		if err := <-first; err != nil && failed == nil {
			failed = err
		}
	}
	return failed
}

// childEnv is the environment of a child: Caddy's, with extra on top, and the
// parent's pid for the child to check.
func childEnv(extra []string) []string {
	return append(append(os.Environ(), extra...), parentPIDEnv+"="+strconv.Itoa(os.Getpid()))
}

// serveHTTP is ServeHTTP for a process app.
func (pa *processApp) serveHTTP(p *Python, w http.ResponseWriter, r *http.Request, out *outcome) error {
	if pa.cfg.kind == "asgi" {
		return p.serveASGI(w, r, out)
	}
	return pa.serveWSGI(p, w, r, out)
}

// unavailable is the error of a request that finds no process running.
func (pa *processApp) unavailable() error {
	pa.mu.Lock()
	defer pa.mu.Unlock()
	switch {
	case pa.closed:
		return errClosed
	case pa.lastFailure != "":
		return fmt.Errorf("no process of the app runs: it keeps failing to start: %s", pa.lastFailure)
	}
	return errors.New("no process of the app runs: it is restarting after a crash")
}

// running counts the slots whose process serves. Caller holds pa.mu.
func (pa *processApp) running() int {
	n := 0
	for _, s := range pa.slots {
		if s.cur.Load() != nil {
			n++
		}
	}
	return n
}

// unavailable tells pickLoop to pass over a loop whose process is down.
func (l *loop) unavailable() bool {
	return l.remote != nil && l.remote.cur.Load() == nil
}

// noLoop is pickLoop's error when it found no loop to take a request.
func (a *app) noLoop() error {
	if a.procs != nil {
		return a.procs.unavailable()
	}
	return errClosed
}

// ------------------------------------------------------------------ WSGI

// procRequest is a WSGI request on its way through a process. Its handler
// goroutine does all the writing to the client, from the messages the link's
// reader hands it.
type procRequest struct {
	id     uint64
	r      *http.Request
	env    []byte
	envBuf *[]byte // env's buffer, back to envPool once sent
	body   []byte  // sent with the request
	more   bool    // the body goes on past it, read as the app asks
	state  atomic.Int32
	child  atomic.Pointer[child] // the process it was sent to

	mu      sync.Mutex
	msgs    []procMsg
	bodyErr error         // why reading the body for the app failed
	signal  chan struct{} // cap 1: msgs has messages
}

type procMsg struct {
	typ        byte // frSend, frResponse, frRead, msgLost, msgUnavailable
	flags      int
	head, body []byte
	n          int // frRead
}

func (pr *procRequest) push(m procMsg) {
	pr.mu.Lock()
	pr.msgs = append(pr.msgs, m)
	pr.mu.Unlock()
	select {
	case pr.signal <- struct{}{}:
	default:
	}
}

func (pr *procRequest) takeOut() []procMsg { return takeAll(&pr.mu, &pr.msgs) }

func (pa *processApp) serveWSGI(p *Python, w http.ResponseWriter, r *http.Request, out *outcome) error {
	pr := &procRequest{id: procSeq.Add(1), r: r, signal: make(chan struct{}, 1)}
	pr.envBuf = envPool.Get().(*[]byte)
	pr.env = buildEnviron((*pr.envBuf)[:0], r, p.ScriptName)
	var err error
	if pr.body, pr.more, err = readInlineBody(r); err != nil {
		return p.badBody(w, r, err)
	}
	if err := pa.submit(pr); err != nil {
		return p.unavailable(w, err)
	}

	rc := http.NewResponseController(w)
	ctxDone := r.Context().Done()
	headerSent, gone := false, false
	var unacked int
	ctl := pa.cfg.controls
	timer := getTimer(ctl.timeout)
	defer putTimer(timer)
	// write bounds a write to the client by write_timeout; the handler is
	// the one writing, so a deadline does what the in-process watch does.
	write := func(head, body []byte) error {
		bounded := len(body) > inlineBody
		if bounded {
			_ = rc.SetWriteDeadline(time.Now().Add(ctl.writeTimeout))
		}
		err := writePart(w, head, body, p.logger, &headerSent, out)
		if bounded {
			_ = rc.SetWriteDeadline(time.Time{})
		}
		if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
			p.metrics.TimedOut("write")
			p.logger.Warn("a response write made no progress within write_timeout: the response is ended",
				zap.String("method", r.Method), zap.String("uri", requestURI(r)), zap.Duration("write_timeout", ctl.writeTimeout))
		}
		return err
	}
	for {
		select {
		case <-pr.signal:
		case <-ctxDone:
			ctxDone = nil
			if pr.state.CompareAndSwap(stateQueued, stateCancelled) {
				return nil // never sent: submit skips it
			}
			gone = true
			pa.tellGone(pr)
			continue
		case <-timer.C:
			return pa.timedOut(p, pr, r, headerSent)
		}
		timer.Reset(ctl.timeout)
		for _, m := range pr.takeOut() {
			switch m.typ {
			case frRead:
				go pa.readBody(pr, m.n)
			case frSend:
				if !gone {
					err := write(m.head, m.body)
					if err == nil && m.flags&flagFlush != 0 {
						err = rc.Flush()
					}
					if err != nil {
						gone = true
						pa.tellGone(pr)
					}
				}
				// Acknowledged in batches: a process may run respWindow ahead.
				if unacked += len(m.body); unacked >= respWindow/8 {
					pa.ack(pr, unacked)
					unacked = 0
				}
			case frResponse:
				if m.flags&flagAbort != 0 {
					if headerSent {
						panic(http.ErrAbortHandler)
					}
					if m.flags&flagTimedOut != 0 {
						return caddyhttp.Error(http.StatusGatewayTimeout,
							fmt.Errorf("%s was interrupted by its stop; see where in the log", p.name()))
					}
					pr.mu.Lock()
					bodyErr := pr.bodyErr
					pr.mu.Unlock()
					if bodyErr != nil {
						return p.badBody(w, r, bodyErr)
					}
					return caddyhttp.Error(http.StatusInternalServerError, fmt.Errorf("%s failed; see its traceback in the log", p.name()))
				}
				if gone {
					return nil
				}
				if err := write(m.head, m.body); err != nil && !headerSent {
					return caddyhttp.Error(http.StatusInternalServerError, fmt.Errorf("%s: %w", p.name(), err))
				}
				return nil
			case msgLost:
				if headerSent {
					panic(http.ErrAbortHandler)
				}
				return caddyhttp.Error(http.StatusBadGateway, fmt.Errorf("%s: %w", p.name(), errLost))
			case msgUnavailable:
				return p.unavailable(w, pa.unavailable())
			}
		}
	}
}

// timedOut answers a WSGI request from which its process sent nothing for the
// app's timeout: 504, or a cut connection once the headers went out. The
// process is told the client is gone, so the app's next write fails, and to
// interrupt the request (frTimeout), which it does and logs where the code
// was; a process whose request does not come back soon after is killed, and
// its slot starts another.
func (pa *processApp) timedOut(p *Python, pr *procRequest, r *http.Request, headerSent bool) error {
	ctl := pa.cfg.controls
	if pr.state.CompareAndSwap(stateQueued, stateCancelled) {
		p.metrics.TimedOut("queue")
		p.logger.Error("request timed out waiting for a thread: every thread of the app's processes was busy for its whole timeout",
			zap.String("method", r.Method), zap.String("uri", requestURI(r)), zap.Duration("timeout", ctl.timeout))
		return caddyhttp.Error(http.StatusGatewayTimeout,
			fmt.Errorf("%s: no thread was free within timeout %v", p.name(), ctl.timeout))
	}
	p.metrics.TimedOut("request")
	p.logger.Error("request ran past its timeout and the client got 504; the app's process is told to interrupt it",
		zap.String("method", r.Method), zap.String("uri", requestURI(r)), zap.Duration("timeout", ctl.timeout))
	pa.tellGone(pr)
	if c := pr.child.Load(); c != nil {
		c.link.send(frTimeout, pr.id, []byte(r.Method+" "+requestURI(r)))
		go pa.killIfStuck(c, pr.id, r.Method, requestURI(r))
	}
	if headerSent {
		panic(http.ErrAbortHandler)
	}
	return caddyhttp.Error(http.StatusGatewayTimeout, fmt.Errorf("%s ran past its timeout %v", p.name(), ctl.timeout))
}

// writePart writes the status and headers when given, then a body part.
func writePart(w http.ResponseWriter, head, body []byte, logger *zap.Logger, headerSent *bool, out *outcome) error {
	if head != nil && !*headerSent {
		code, err := writeHead(w, head, logger)
		if err != nil {
			return err
		}
		*headerSent = true
		out.status = code
	}
	if len(body) > 0 {
		if _, err := w.Write(body); err != nil {
			return err
		}
	}
	return nil
}

// submit sends pr to the process with the fewest requests in flight among
// those with a free thread, or queues it.
func (pa *processApp) submit(pr *procRequest) error {
	if err := lockOpen(&pa.mu, &pa.closed); err != nil {
		return err
	}
	if best, ok := leastBusy(pa.slots, func(s *slot) (int, bool) {
		c := s.cur.Load()
		return c.load(), c != nil && c.inflight < pa.cfg.threads
	}); ok {
		pr.state.Store(stateRunning)
		c := best.assign(pr)
		pa.mu.Unlock()
		c.sendRequest(pr, writeInline)
		return nil
	}
	if pa.running() == 0 {
		pa.mu.Unlock()
		return pa.unavailable()
	}
	if len(pa.queue) >= pa.cfg.maxQueue {
		pa.mu.Unlock()
		return errQueueFull
	}
	pa.queue = append(pa.queue, pr)
	pa.mu.Unlock()
	return nil
}

// load is how many WSGI requests c runs, none for no process. Caller holds pa.mu.
func (c *child) load() int {
	if c == nil {
		return 0
	}
	return c.inflight
}

// assign records pr as running in the slot's process. Caller holds pa.mu.
func (s *slot) assign(pr *procRequest) *child {
	c := s.cur.Load()
	c.inflight++
	c.mu.Lock()
	c.requests[pr.id] = pr
	c.mu.Unlock()
	pr.child.Store(c)
	return c
}

// fill hands queued requests to the slot's process while it has free threads.
// Caller holds pa.mu; the caller sends what it returns.
func (s *slot) fill() (*child, []*procRequest) {
	pa := s.pa
	c := s.cur.Load()
	var out []*procRequest
	for c != nil && c.inflight < pa.cfg.threads && len(pa.queue) > 0 {
		pr := pa.queue[0]
		pa.queue[0] = nil
		pa.queue = pa.queue[1:]
		if !pr.state.CompareAndSwap(stateQueued, stateRunning) {
			continue // its client left while it waited
		}
		s.assign(pr)
		out = append(out, pr)
	}
	return c, out
}

// envPool holds environ buffers: a request's is copied into the link's
// buffer when it is sent, and needed no more.
var envPool = sync.Pool{New: func() any { b := make([]byte, 0, 2048); return &b }}

func (c *child) sendRequest(pr *procRequest, mode int) {
	b := c.link.begin(frRequest, pr.id)
	b = appendField(b, pr.env)
	more := byte(0)
	if pr.more {
		more = 1
	}
	b = append(b, more)
	b = append(b, pr.body...)
	// A failed write means the process is gone: its reader fails pr.
	c.link.endMode(b, mode)
	*pr.envBuf = pr.env[:0]
	envPool.Put(pr.envBuf)
	pr.env, pr.envBuf = nil, nil
}

// finished takes a request answered by c out of its books and sends c the
// next queued ones. It runs on c's reader, which writes them once it has
// handled every frame it has read: under load, many in one system call.
func (c *child) finished(id uint64) *procRequest {
	s := c.slot
	pa := s.pa
	pa.mu.Lock()
	c.mu.Lock()
	pr := c.requests[id]
	delete(c.requests, id)
	c.mu.Unlock()
	if pr == nil {
		pa.mu.Unlock()
		return nil
	}
	c.inflight--
	var next []*procRequest
	if s.cur.Load() == c {
		_, next = s.fill()
	}
	pa.mu.Unlock()
	for _, q := range next {
		c.sendRequest(q, writeLater)
	}
	c.counted()
	return pr
}

func (c *child) request(id uint64) *procRequest {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.requests[id]
}

// The frames a handler sends its request's process; to a process that died
// they go nowhere.
func (pa *processApp) tellGone(pr *procRequest) {
	if c := pr.child.Load(); c != nil {
		c.link.send(frGone, pr.id)
	}
}

func (pa *processApp) ack(pr *procRequest, n int) {
	if c := pr.child.Load(); c != nil {
		c.link.sendU32(frAck, pr.id, uint32(n))
	}
}

// readBody answers a frRead with up to n bytes of the body (at least one),
// its end, or its failure.
func (pa *processApp) readBody(pr *procRequest, n int) {
	buf := make([]byte, max(1, min(n, maxBodyPart)))
	var got int
	var err error
	for got == 0 && err == nil {
		got, err = pr.r.Body.Read(buf)
	}
	status := bodyData
	switch {
	case got > 0:
	case err == io.EOF:
		status = bodyEnd
	default:
		status = bodyFailed
		pr.mu.Lock()
		pr.bodyErr = err
		pr.mu.Unlock()
	}
	if c := pr.child.Load(); c != nil {
		c.link.send(frBody, pr.id, []byte{status}, buf[:got])
	}
}

// ------------------------------------------------------------------ ASGI

// pump sends the events queued on the slot's loop to its process, but those
// of requests a retiring process owns, which go to that one. While no
// process runs, they stay queued for the next one (pickLoop sends no new
// request there meanwhile; what raced with the death goes to the restart).
func (s *slot) pump() {
	s.pumpMu.Lock()
	defer s.pumpMu.Unlock()
	c, retiring := s.cur.Load(), s.retiring.Load()
	if c == nil && retiring == nil {
		return
	}
	var batch []byte
	s.loop.drainInbox(func(events []byte) {
		batch = append([]byte(nil), events...)
	})
	if retiring != nil {
		batch = routeEvents(batch, *retiring)
	}
	if binary.LittleEndian.Uint32(batch) == 0 {
		return
	}
	if c == nil {
		s.loop.putBack(batch)
		return
	}
	if c.adopt(batch) {
		c.sendEvents(batch)
	}
}

// sendEvents sends c a batch of packed events.
func (c *child) sendEvents(batch []byte) {
	b := c.link.begin(frEvents, 0)
	b = append(b, batch...)
	c.link.end(b, true)
}

// adopt records the requests and WebSockets a batch starts as c's: c may
// answer only those, and when it dies they fail with it. When c is dead
// already, they fail now and adopt answers false.
func (c *child) adopt(batch []byte) bool {
	var started []uint64
	var what []asgiWhat
	eachEvent(batch, func(kind byte, token uint64, fields [][]byte) bool {
		if (kind == evHTTP || kind == evWebSocket) && len(fields) > scopeQuery {
			// Method, raw path and query, kept as slices of the batch, which
			// this keeps alive meanwhile.
			started = append(started, token)
			what = append(what, asgiWhat{fields[scopeMethod], fields[scopeRawPath], fields[scopeQuery], kind == evWebSocket})
		}
		return true
	})
	c.mu.Lock()
	dead := c.dead
	if !dead {
		for i, t := range started {
			c.owned[t] = what[i]
		}
	}
	c.mu.Unlock()
	if dead {
		for _, t := range started {
			failASGI(t)
		}
	}
	return !dead
}

// asgiWhat is what an ASGI request is, for the notice of its process's death.
type asgiWhat struct {
	method, path, query []byte
	websocket           bool
}

func (w asgiWhat) String() string {
	method := string(w.method)
	if w.websocket {
		method = "websocket"
	}
	if len(w.query) > 0 {
		return method + " " + string(w.path) + "?" + string(w.query)
	}
	return method + " " + string(w.path)
}

// owns tells whether token is a request c runs; final ends it there.
func (c *child) owns(token uint64, final bool) bool {
	c.mu.Lock()
	_, ok := c.owned[token]
	ended := ok && final
	if ended {
		delete(c.owned, token)
	}
	c.mu.Unlock()
	if ended {
		c.counted()
	}
	return ok
}

// ack tells the process that runs token that n bytes of its response reached
// the client (asgiRequest.written).
func (s *slot) ack(token uint64, n int) {
	if c := s.owner(token); c != nil && n > 0 {
		c.link.sendU32(frAck, token, uint32(n))
	}
}

// failASGI ends an ASGI request whose process died: 502 before the response
// started, a cut connection or a closed WebSocket after.
func failASGI(token uint64) {
	if v, ok := asgiRequests.Load(token); ok {
		v.(*asgiRequest).push(outMsg{kind: postDone, flags: flagAbort | flagLost})
	}
}

// ------------------------------------------------------------- the link

// handle acts on one frame from the process.
func (c *child) handle(typ byte, id uint64, p []byte) error {
	switch typ {
	case frReady:
		select {
		case c.ready <- string(p):
		default:
		}
	case frLog:
		return c.logEntry(p)
	case frResponse, frSend:
		flags, head, body, err := cutPart(p)
		if err != nil {
			return err
		}
		var pr *procRequest
		if typ == frResponse {
			pr = c.finished(id)
		} else {
			pr = c.request(id)
		}
		if pr != nil {
			pr.push(procMsg{typ: typ, flags: flags, head: head, body: body})
		}
	case frRead:
		if len(p) != 4 {
			return errBadFrame
		}
		if pr := c.request(id); pr != nil {
			pr.push(procMsg{typ: frRead, n: int(binary.LittleEndian.Uint32(p))})
		}
	case frPost:
		if len(p) < 5 {
			return errBadFrame
		}
		kind, flags := int(p[0]), int(binary.LittleEndian.Uint32(p[1:]))
		a, b, err := cutField(p[5:])
		if err != nil {
			return err
		}
		final := kind == postDone || (kind == postHTTP && flags&flagMore == 0)
		if !c.owns(id, final) {
			return nil // over already, or not this process's to answer
		}
		if v, ok := asgiRequests.Load(id); ok {
			q := v.(*asgiRequest)
			if q.push(outMsg{kind: kind, a: a, b: b, flags: flags &^ flagLost}) == postGone && final {
				// The client left before the last part came, and the handler
				// waits for the app's end; in Caddy's process the app would
				// have been told at once and said so, but the process,
				// having answered, says nothing more.
				q.push(outMsg{kind: postDone, flags: flagAbort})
			}
		}
	default:
		return errBadFrame
	}
	return nil
}

// logEntry writes an entry the process logged (its app's output among them)
// to the app's log.
func (c *child) logEntry(p []byte) error {
	if len(p) < 1 {
		return errBadFrame
	}
	// Never above error: a Fatal entry would end Caddy, a Panic one panic it.
	level := min(max(zapcore.Level(int8(p[0])), zapcore.DebugLevel), zapcore.ErrorLevel)
	msg, rest, err := cutField(p[1:])
	if err != nil {
		return err
	}
	ce := c.logger.Check(level, string(msg))
	if ce == nil {
		return nil
	}
	var fields map[string]any
	if json.Unmarshal(rest, &fields) != nil {
		return errBadFrame
	}
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	zf := make([]zap.Field, 0, len(keys))
	for _, k := range keys {
		zf = append(zf, zap.Any(k, fields[k]))
	}
	ce.Write(zf...)
	return nil
}

// readLoop reads the process's frames until its link ends.
func (c *child) readLoop(done func()) {
	defer done()
	defer close(c.read)
	defer c.lost()
	for {
		typ, id, p, err := c.link.read()
		if err != nil {
			if err != io.EOF && !errors.Is(err, os.ErrClosed) && !c.killed.Load() && !isClosedConn(err) {
				c.logger.Error("the link to the app's process broke; ending the process", zap.Error(err))
				c.kill()
			}
			return
		}
		if err := c.handle(typ, id, p); err != nil {
			c.logger.Error("the app's process sent a malformed frame; ending it", zap.Error(err), zap.Uint8("frame", typ))
			c.kill()
			return
		}
		if c.link.rd.Buffered() == 0 {
			c.link.flush() // what finished left to send, before waiting for more
		}
	}
}

func isClosedConn(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, net.ErrClosed)
}

// lost fails what the process was running once its link is gone.
func (c *child) lost() {
	s := c.slot
	pa := s.pa
	pa.mu.Lock()
	if s.cur.Load() == c {
		s.cur.Store(nil)
	}
	c.mu.Lock()
	c.dead = true
	reqs, owned := c.requests, c.owned
	c.requests, c.owned = nil, nil
	var running []string
	for _, pr := range reqs {
		running = append(running, pr.r.Method+" "+requestURI(pr.r))
	}
	for _, what := range owned {
		running = append(running, what.String())
	}
	sort.Strings(running)
	c.running = running
	c.mu.Unlock()
	var orphans []*procRequest
	if pa.running() == 0 {
		orphans, pa.queue = pa.queue, nil
	}
	pa.mu.Unlock()
	pa.app.metrics.ProcessExited(c.pid)
	for _, pr := range reqs {
		pr.push(procMsg{typ: msgLost})
	}
	for token := range owned {
		failASGI(token)
	}
	for _, pr := range orphans {
		if pr.state.CompareAndSwap(stateQueued, stateRunning) {
			pr.push(procMsg{typ: msgUnavailable})
		}
	}
}

func (c *child) kill() {
	c.killed.Store(true)
	c.cmd.Process.Signal(syscall.SIGKILL)
}

// ------------------------------------------------------------- spawning

// Children are started from one OS thread that never ends: the kernel sends
// a child's PR_SET_PDEATHSIG signal when the thread that forked it exits,
// and Go ends threads of its own accord.
var spawner struct {
	once sync.Once
	ops  chan func()
}

func onSpawnThread(f func()) {
	spawner.once.Do(func() {
		spawner.ops = make(chan func())
		go func() {
			runtime.LockOSThread() // never unlocked: the thread lives as long as Caddy
			for op := range spawner.ops {
				op()
			}
		}()
	})
	done := make(chan struct{})
	spawner.ops <- func() { f(); close(done) }
	<-done
}

// spawn starts a process for the slot and sends it the app's config.
func (s *slot) spawn() (*child, error) {
	pa := s.pa
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("cannot create a socket pair for the app's process: %w", err)
	}
	ours, theirs := os.NewFile(uintptr(fds[0]), "link"), os.NewFile(uintptr(fds[1]), "link")
	outR, outW, err := os.Pipe()
	if err != nil {
		ours.Close()
		theirs.Close()
		return nil, err
	}
	cmd := &exec.Cmd{
		// This very binary, even if replaced on disk since; in the wheel,
		// python and vivarium's script come before the caddy command line.
		Path:       "/proc/self/exe",
		Args:       selfArgs("python-worker"),
		Env:        pa.env,
		Stdout:     outW,
		Stderr:     outW,
		ExtraFiles: []*os.File{theirs}, // fd 3
		SysProcAttr: &syscall.SysProcAttr{
			Pdeathsig:  syscall.SIGKILL,
			Setpgid:    true, // a terminal's ^C is Caddy's to handle, not the child's
			Credential: pa.creds,
		},
	}
	var startErr error
	onSpawnThread(func() { startErr = cmd.Start() })
	theirs.Close()
	outW.Close()
	if startErr != nil {
		ours.Close()
		outR.Close()
		return nil, fmt.Errorf("cannot start a process for the app: %w", startErr)
	}
	l, err := newLink(ours)
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		outR.Close()
		return nil, err
	}
	c := &child{
		slot:     s,
		cmd:      cmd,
		pid:      cmd.Process.Pid,
		link:     l,
		ready:    make(chan string, 1),
		ended:    make(chan struct{}),
		read:     make(chan struct{}),
		outDone:  make(chan struct{}),
		requests: map[uint64]*procRequest{},
		owned:    map[uint64]asgiWhat{},
		limit:    requestLimit(pa.cfg.controls.maxRequests),
		settled:  make(chan struct{}, 1),
	}
	c.logger = pa.logger.With(zap.Int("pid", c.pid))
	var parts sync.WaitGroup
	parts.Add(2)
	go c.readOutput(outR)
	go c.wait(parts.Done)
	go c.readLoop(parts.Done)
	go func() {
		parts.Wait()
		close(c.ended)
	}()
	cfg, _ := json.Marshal(childConfig{
		Kind:         pa.cfg.kind,
		Module:       pa.cfg.module,
		Lifespan:     pa.cfg.lifespan,
		WorkingDir:   pa.cfg.workingDir,
		Venv:         pa.cfg.venv,
		Threads:      pa.cfg.threads,
		Multiprocess: pa.cfg.interpreters > 1,
		Name:         pa.cfg.controls.name,
		Env:          pa.cfg.controls.env,
		Timeout:      pa.cfg.controls.timeout,
		StartTimout:  pa.cfg.controls.startTimeout,
	})
	l.send(frConfig, 0, cfg)
	return c, nil
}

// wait reaps the process. Its end of the link closed with it (no subprocess
// of the app inherits it: the child holds it close-on-exec), so the reader
// gets the frames sent last, then EOF; the link is closed here only if that
// does not come.
func (c *child) wait(done func()) {
	defer done()
	c.cmd.Wait()
	c.endedAt = time.Now()
	c.status, c.signal, c.code = describeExit(c.cmd.ProcessState)
	select {
	case <-c.read:
	case <-time.After(2 * time.Second):
		c.link.close()
	}
}

func describeExit(ps *os.ProcessState) (status, signal string, code int) {
	ws, ok := ps.Sys().(syscall.WaitStatus)
	switch {
	case ok && ws.Signaled():
		name := unix.SignalName(ws.Signal())
		if name == "" {
			name = strconv.Itoa(int(ws.Signal()))
		}
		return "was killed by signal " + name, name, 0
	case ok && ws.Exited():
		return fmt.Sprintf("exited with status %d", ws.ExitStatus()), "", ws.ExitStatus()
	}
	return ps.String(), "", -1
}

// outputLines is how much of a process's last output its death notice quotes.
const outputLines = 12

// readOutput logs what the process writes to its stdout and stderr outside
// Python's sys.stdout (C code, the Go runtime's last words), and keeps the
// last lines for the notice of its death.
func (c *child) readOutput(r *os.File) {
	defer close(c.outDone)
	defer r.Close()
	rd := bufio.NewReaderSize(r, 16<<10)
	for {
		// A line longer than the buffer comes in pieces.
		b, _, err := rd.ReadLine()
		if len(b) > 0 || err == nil {
			text := string(b)
			c.logger.Info(text, zap.String("stream", "output"))
			c.mu.Lock()
			if len(c.tail) == outputLines {
				c.tail = append(c.tail[:0], c.tail[1:]...)
			}
			c.tail = append(c.tail, text)
			c.mu.Unlock()
		}
		if err != nil {
			return
		}
	}
}

// lastWords is the process's last output, for a start that failed.
func (c *child) lastWords() []string {
	select {
	case <-c.outDone:
	case <-time.After(500 * time.Millisecond):
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.tail...)
}
