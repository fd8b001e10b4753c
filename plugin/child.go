package plugin

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/sys/unix"
)

// The child side of `isolation process`: `caddy python-worker`, the same
// binary run by Caddy for each process of such an app. It hosts the app in its
// own main interpreter with the machinery an in-process app has (the scheduler
// and C worker threads of WSGI, the event loop of ASGI) and takes its requests
// from the link on fd 3 instead of from net/http: the bridge's calls that
// answer a request (request.go's remote, vvPost) go back over the link.

const (
	childLinkFD  = 3
	parentPIDEnv = "VIVARIUM_PARENT_PID"
)

func init() {
	registerChildCommand("python-worker", "Runs one process of an `isolation process` app (Caddy starts it itself)",
		func() error {
			os.Exit(runChild())
			return nil
		})
}

// childConfig is what Caddy tells a child in its first frame.
type childConfig struct {
	Kind         string `json:"kind"`
	Module       string `json:"module"`
	Lifespan     bool   `json:"lifespan"`
	WorkingDir   string `json:"working_dir"`
	Venv         string `json:"venv"`
	Threads      int    `json:"threads"`
	Multiprocess bool   `json:"multiprocess"`
	// The app's controls, as in Caddy's process. max_requests and max_memory
	// are Caddy's to apply: it replaces the whole process (process_recycle.go).
	Name        string            `json:"name"`
	Env         map[string]string `json:"env"`
	Timeout     time.Duration     `json:"timeout"`
	StartTimout time.Duration     `json:"start_timeout"`
}

// childSide is a child process's state: its link to Caddy, its app and the
// requests in flight.
type childSide struct {
	link     *link
	direct   bool          // ASGI: the event loop's thread reads the link (pull)
	lost     chan struct{} // closed when pull finds the link gone
	lostOnce sync.Once
	batching bool    // the loop thread's: posts wait for its next pull
	yield    yielder // the loop thread's
	cfg      childConfig
	app      *app
	loop     *loop // ASGI: the app's event loop
	logger   *zap.Logger
	stopOnce sync.Once

	mu       sync.Mutex
	requests map[uint64]*childRequest // WSGI
	tokens   map[uint64]*childToken   // ASGI
}

// inChild is set in a child process: vvPost then goes to Caddy.
var inChild *childSide

var errClientGone = errors.New("client disconnected")

func runChild() int {
	// No child outlives Caddy: the kernel kills this process when Caddy's
	// spawning thread ends. Caddy may be gone already: then the parent is
	// another process.
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0); err != nil {
		fmt.Fprintln(os.Stderr, "python-worker: PR_SET_PDEATHSIG:", err)
		return 2
	}
	parent, _ := strconv.Atoi(os.Getenv(parentPIDEnv))
	os.Unsetenv(parentPIDEnv) // not for the app's os.environ
	if parent == 0 || os.Getppid() != parent {
		fmt.Fprintln(os.Stderr, "python-worker runs an app for the Caddy that starts it; it is not a command to run by hand")
		return 2
	}
	// The config is read with nothing read ahead, since what follows it goes
	// to the link that the config's kind of app gets.
	typ, p, err := readFrameFD(childLinkFD)
	var cfg childConfig
	if err == nil && typ == frConfig {
		err = json.Unmarshal(p, &cfg)
	} else if err == nil {
		err = errBadFrame
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "python-worker: no config from Caddy:", err)
		return 2
	}
	var l *link
	if cfg.Kind == "asgi" {
		l, err = newDirectLink(childLinkFD)
	} else {
		l, err = newLink(os.NewFile(childLinkFD, "caddy"))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "python-worker: no link to Caddy on fd 3:", err)
		return 2
	}
	cs := &childSide{
		link:     l,
		direct:   l.fd >= 0,
		lost:     make(chan struct{}),
		cfg:      cfg,
		logger:   zap.New(&linkCore{link: l}),
		requests: map[uint64]*childRequest{},
		tokens:   map[uint64]*childToken{},
	}
	inChild = cs
	// Caddy stops its children over the link, after their requests are done.
	// TERM and INT reach them too when systemd stops the whole unit; they are
	// caught and dropped, not ignored (SIG_IGN), which the app's subprocesses
	// would inherit.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		for range sigs {
		}
	}()
	return cs.serve()
}

// serve starts the app, reports to Caddy and answers its frames until told to
// stop (stop exits) or until Caddy is gone.
func (cs *childSide) serve() int {
	cfg := cs.cfg
	raiseGOMAXPROCS(zap.NewNop())
	a, err := startApp(appConfig{
		kind:         cfg.Kind,
		module:       cfg.Module,
		lifespan:     cfg.Lifespan,
		isolation:    isolationMainCode,
		workingDir:   cfg.WorkingDir,
		venv:         cfg.Venv,
		interpreters: 1,
		threads:      cfg.Threads,
		// Caddy sends a process no more WSGI requests than it has threads.
		maxQueue: 1 << 20,
		// The app has the process's main interpreter to itself, where uvloop
		// loads: its loop is taken when the app's environment has it, as
		// uvicorn's --loop auto does.
		options: cs.adapterOptions(),
		controls: controls{
			name: cfg.Name, env: cfg.Env, timeout: cfg.Timeout, startTimeout: cfg.StartTimout,
		},
	}, cs.logger)
	if err != nil {
		cs.link.send(frReady, 0, []byte(err.Error()))
		cs.link.drain()
		return 1
	}
	cs.app = a
	if cfg.Kind == "asgi" {
		cs.loop = a.interps[0].loop
	}
	if cs.link.send(frReady, 0) != nil {
		return 1
	}
	if cs.direct {
		// The event loop reads the link (pull) until Caddy is gone.
		<-cs.lost
		return 1
	}
	for {
		typ, id, p, err := cs.link.read()
		if err != nil {
			// Caddy is gone, or broke the link: no one is left to answer.
			return 1
		}
		if err := cs.handle(typ, id, p); err != nil {
			fmt.Fprintf(os.Stderr, "python-worker: frame %d from Caddy: %v\n", typ, err)
			return 1
		}
	}
}

func (cs *childSide) handle(typ byte, id uint64, p []byte) error {
	switch typ {
	case frRequest:
		return cs.request(id, p)
	case frBody:
		if len(p) < 1 {
			return errBadFrame
		}
		if cr := cs.request1(id); cr != nil {
			cr.answered(p)
		}
	case frAck:
		if len(p) != 4 {
			return errBadFrame
		}
		cs.ack(id, int(binary.LittleEndian.Uint32(p)))
	case frGone:
		cs.gone(id)
	case frEvents:
		return cs.events(p)
	case frStop:
		go cs.stop()
	case frTimeout:
		if cr := cs.request1(id); cr != nil {
			go cs.timedOut(cr, string(p))
		}
	default:
		return errBadFrame
	}
	return nil
}

// adapterOptions: with a direct link, the event loop watches its socket.
func (cs *childSide) adapterOptions() map[string]any {
	// The app has the process's main interpreter to itself, where uvloop
	// loads: its loop is taken when the app's environment has it, as
	// uvicorn's --loop auto does.
	opts := map[string]any{"multiprocess": cs.cfg.Multiprocess, "event_loop": "auto"}
	if cs.direct {
		opts["link_fd"] = cs.link.fd
	}
	return opts
}

// yieldEvery is how often a thread of the app (the event loop's, a WSGI
// worker's) lets Go's scheduler run while it serves. Such a thread, made by
// C, holds a Go P for as long as it keeps calling into Go, and no goroutine is
// ever scheduled on that P: to Go's sysmon it looks like one goroutine running
// for good, so past 10 ms it takes the P away on every one of its ticks, the
// thread's next call has to find another, and sysmon, finding that work every
// time, wakes every 20 µs instead of backing off. A yield now and then (a
// hand-off of the P and back) shows the scheduler the thread's progress.
const yieldEvery = 5 * time.Millisecond

// yielder is one such thread's: only that thread calls maybe.
type yielder struct{ last time.Time }

func (y *yielder) maybe() {
	if now := time.Now(); now.Sub(y.last) > yieldEvery {
		y.last = now
		runtime.Gosched()
	}
}

// pull is vvPoll's first step in an ASGI process, on the event loop's thread:
// it writes the responses posted since the last pull in one go, then hands
// the loop what Caddy sent. Until the loop's next pull, which the adapter
// schedules when this one brings events, posts wait to go out together.
func (cs *childSide) pull(l *loop) {
	cs.batching = false
	cs.link.flush()
	cs.yield.maybe()
	err := cs.link.pull(cs.handle)
	cs.batching = l.pending()
	if err != nil {
		if err != io.EOF {
			fmt.Fprintln(os.Stderr, "python-worker: the link to Caddy:", err)
		}
		cs.lostOnce.Do(func() { close(cs.lost) })
	}
}

// stop lets the app finish what it has, as a reload does in-process, then exits.
func (cs *childSide) stop() {
	cs.stopOnce.Do(func() {
		if cs.app != nil {
			cs.app.stop()
		}
		cs.link.drain()
		os.Exit(0)
	})
}

// ------------------------------------------------------------------- WSGI

// childRequest is the child's half of a WSGI request: the scheduler runs it as
// any request (request.go hands its answers here), and its response and body
// reads travel over the link.
type childRequest struct {
	id   uint64
	cs   *childSide
	req  *request
	body []byte // what arrived with the request or a frBody and is not read yet
	more bool   // the body goes on: ask Caddy for it

	mu     sync.Mutex
	ahead  int    // response bytes sent that Caddy has not yet written to the client
	gone   bool   // the client left
	answer []byte // a frBody not yet taken: status byte, data
	wake   chan struct{}
}

func (cs *childSide) request(id uint64, p []byte) error {
	env, rest, err := cutField(p)
	if err != nil || env == nil || len(rest) < 1 {
		return errBadFrame
	}
	cr := &childRequest{id: id, cs: cs, more: rest[0] != 0, body: rest[1:], wake: make(chan struct{}, 1)}
	req := requestPool.Get().(*request)
	req.env, req.remote, req.logger = env, cr, cs.logger
	req.state.Store(stateQueued)
	cr.req = req
	cs.mu.Lock()
	cs.requests[id] = cr
	cs.mu.Unlock()
	if err := cs.app.pool.submit(req); err != nil {
		cs.forget(id)
		cs.link.sendPart(frResponse, id, flagAbort, nil, nil, true)
	}
	return nil
}

// timedOut interrupts a request Caddy gave up on (frTimeout): RequestTimeout
// is raised in its thread, and the log shows where it was (timeout.go).
func (cs *childSide) timedOut(cr *childRequest, what string) {
	req := cr.req
	req.mu.Lock()
	w, seq := req.worker, req.seq
	req.mu.Unlock()
	method, uri, _ := strings.Cut(what, " ")
	if w != nil {
		cs.app.reportTimeout(w, seq, method, uri)
	}
}

func (cs *childSide) request1(id uint64) *childRequest {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return cs.requests[id]
}

func (cs *childSide) forget(id uint64) {
	cs.mu.Lock()
	delete(cs.requests, id)
	cs.mu.Unlock()
}

func (cr *childRequest) signal() {
	select {
	case cr.wake <- struct{}{}:
	default:
	}
}

// finish sends the final part; the request is then over in the child. The
// worker thread writes it itself: handing it to the flusher goroutine costs
// one more wake-up per response than it saves.
func (cr *childRequest) finish(req *request, head, body []byte, flags int) {
	req.mu.Lock()
	w := req.worker
	req.mu.Unlock()
	cr.cs.forget(cr.id)
	cr.cs.link.sendPart(frResponse, cr.id, flags, head, body, true)
	req.release()
	if w != nil {
		w.yield.maybe()
	}
}

// send sends a streamed part once the client has taken all but respWindow
// bytes of the earlier ones.
func (cr *childRequest) send(head, body []byte, flags int) error {
	for {
		cr.mu.Lock()
		if cr.gone {
			cr.mu.Unlock()
			return errClientGone
		}
		if cr.ahead < respWindow {
			cr.ahead += len(body)
			cr.mu.Unlock()
			break
		}
		cr.mu.Unlock()
		<-cr.wake
	}
	return cr.cs.link.sendPart(frSend, cr.id, flags, head, body, true)
}

// read fills p with at least one byte of the body, or returns 0 at its end.
func (cr *childRequest) read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if len(cr.body) > 0 {
		n := copy(p, cr.body)
		cr.body = cr.body[n:]
		return n, nil
	}
	if !cr.more {
		return 0, nil
	}
	if err := cr.cs.link.sendU32(frRead, cr.id, uint32(min(len(p), maxBodyPart))); err != nil {
		return 0, err
	}
	for {
		cr.mu.Lock()
		a, gone := cr.answer, cr.gone
		cr.answer = nil
		cr.mu.Unlock()
		switch {
		case a != nil:
			switch a[0] {
			case bodyData:
				n := copy(p, a[1:])
				cr.body = a[1+n:]
				return n, nil
			case bodyEnd:
				cr.more = false
				return 0, nil
			default:
				cr.more = false
				return 0, errClientGone
			}
		case gone:
			return 0, errClientGone
		}
		<-cr.wake
	}
}

func (cr *childRequest) answered(p []byte) {
	cr.mu.Lock()
	cr.answer = p
	cr.mu.Unlock()
	cr.signal()
}

func (cs *childSide) ack(id uint64, n int) {
	cs.mu.Lock()
	if cr := cs.requests[id]; cr != nil {
		cs.mu.Unlock()
		cr.mu.Lock()
		cr.ahead -= n
		cr.mu.Unlock()
		cr.signal()
		return
	}
	t := cs.tokens[id]
	resume := false
	if t != nil {
		t.ahead -= n
		if t.paused && t.ahead <= pauseBytes/2 {
			t.paused, resume = false, true
		}
	}
	cs.mu.Unlock()
	if resume {
		cs.loop.post(evResume, id)
	}
}

// gone: the client left. A request still queued here is dropped (Caddy gets
// its end at once); a running one sees its next send or read fail.
func (cs *childSide) gone(id uint64) {
	cs.mu.Lock()
	cr := cs.requests[id]
	cancelled := cr != nil && cr.req.state.CompareAndSwap(stateQueued, stateCancelled)
	if cancelled {
		// The queue still holds the request, so it is not recycled.
		delete(cs.requests, id)
	}
	cs.mu.Unlock()
	if cr == nil {
		return
	}
	if cancelled {
		cs.link.sendPart(frResponse, id, flagAbort, nil, nil, true)
		return
	}
	cr.mu.Lock()
	cr.gone = true
	cr.mu.Unlock()
	cr.signal()
}

// ------------------------------------------------------------------- ASGI

// childToken is the child's flow control for one ASGI request or WebSocket.
type childToken struct {
	ahead  int // bytes posted that Caddy has not yet written to the client
	paused bool
	gone   bool
}

// events hands a batch from Caddy to the event loop, noting new requests and
// clients gone on the way.
func (cs *childSide) events(batch []byte) error {
	cs.mu.Lock()
	err := eachEvent(batch, func(kind byte, token uint64, _ [][]byte) bool {
		switch kind {
		case evHTTP, evWebSocket:
			cs.tokens[token] = &childToken{}
		case evDisconnect, evWSClose:
			if t := cs.tokens[token]; t != nil {
				t.gone = true
			}
		}
		return true
	})
	cs.mu.Unlock()
	if err != nil {
		return err
	}
	if cs.loop == nil {
		return errBadFrame
	}
	if cs.direct {
		cs.loop.queuePacked(batch) // on the loop's thread, which takes them next
		return nil
	}
	cs.loop.postPacked(batch)
	return nil
}

// post is vvPost in a child: the message goes to Caddy. It is called on the
// event loop's thread with its GIL held, so it never waits on the socket.
func (cs *childSide) post(token uint64, kind int, a, b []byte, flags int) int {
	rc := postOK
	cs.mu.Lock()
	t := cs.tokens[token]
	switch {
	case t == nil, t.gone && kind != postDone:
		cs.mu.Unlock()
		return postGone
	case kind == postDone, kind == postHTTP && flags&flagMore == 0:
		delete(cs.tokens, token)
	default:
		t.ahead += len(b)
		if t.ahead > pauseBytes {
			t.paused, rc = true, postPause
		}
	}
	cs.mu.Unlock()
	f := cs.link.begin(frPost, token)
	f = append(f, byte(kind))
	f = binary.LittleEndian.AppendUint32(f, uint32(flags))
	f = appendField(f, a)
	f = append(f, b...)
	mode := writeTry
	if cs.batching {
		mode = writeLater
	}
	if cs.link.endMode(f, mode) != nil {
		return postGone
	}
	return rc
}

// --------------------------------------------------------------- logging

// linkCore is the child's zap core: every entry, the app's output among them,
// goes to Caddy's log through the link, where the app's logger writes it.
type linkCore struct {
	link   *link
	fields []zapcore.Field
}

func (c *linkCore) Enabled(zapcore.Level) bool { return true }

func (c *linkCore) With(fields []zapcore.Field) zapcore.Core {
	return &linkCore{link: c.link, fields: append(append([]zapcore.Field{}, c.fields...), fields...)}
}

func (c *linkCore) Check(ent zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	return ce.AddCore(ent, c)
}

func (c *linkCore) Write(ent zapcore.Entry, fields []zapcore.Field) error {
	enc := zapcore.NewMapObjectEncoder()
	for _, fs := range [2][]zapcore.Field{c.fields, fields} {
		for _, f := range fs {
			if f.Type == zapcore.DurationType {
				// As Caddy's encoder writes durations: seconds.
				enc.AddFloat64(f.Key, time.Duration(f.Integer).Seconds())
				continue
			}
			f.AddTo(enc)
		}
	}
	js, err := json.Marshal(enc.Fields)
	if err != nil {
		js = []byte("{}")
	}
	b := c.link.begin(frLog, 0)
	b = append(b, byte(int8(ent.Level)))
	b = appendField(b, []byte(ent.Message))
	b = append(b, js...)
	// Not inline: an entry may be written with a GIL held.
	err = c.link.end(b, false)
	if err == nil && ent.Level >= zapcore.ErrorLevel {
		// An error may be the last words before the process ends (os._exit
		// logs who called it, then exits): it reaches Caddy first. Caddy's
		// reader never waits for this process, so the wait is short.
		err = c.link.drain()
	}
	return err
}

func (c *linkCore) Sync() error { return nil }

// readFrameFD reads one frame from a blocking fd, nothing past it.
func readFrameFD(fd int) (typ byte, payload []byte, err error) {
	var h [frameHeader]byte
	if err = readFullFD(fd, h[:]); err != nil {
		return 0, nil, err
	}
	n := binary.LittleEndian.Uint32(h[:4])
	if n < frameHeader-4 || n > maxFrame {
		return 0, nil, errBadFrame
	}
	payload = make([]byte, n-(frameHeader-4))
	return h[4], payload, readFullFD(fd, payload)
}

func readFullFD(fd int, b []byte) error {
	for len(b) > 0 {
		n, err := unix.Read(fd, b)
		switch {
		case err == unix.EINTR:
			continue
		case err != nil:
			return err
		case n == 0:
			return io.ErrUnexpectedEOF
		}
		b = b[n:]
	}
	return nil
}
