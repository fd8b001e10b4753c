package plugin

// The pump between an ASGI event loop and the handler goroutines: the loop
// posts a request's messages (vvPost) into its asgiRequest, the handler
// drains them and writes to the client, and flow control pauses the loop's
// send() while too much waits for a slow client. HTTP (asgi_http.go) and
// WebSocket (websocket.go) requests both run over it.

import (
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// pauseBytes is how much may wait for a slow client before the app's send()
// has to wait: enough for streaming, bounded for memory.
const pauseBytes = 1 << 20

var asgiTokens atomic.Uint64

// asgiRequests maps tokens to the requests in flight, for vvPost.
var asgiRequests sync.Map

type outMsg struct {
	kind  int
	a, b  []byte
	flags int
}

// asgiRequest is one HTTP request or WebSocket between Go and an event loop.
// The handler goroutine does the writing and the loop only queues messages,
// but for a whole response in one message while the goroutine waits for it
// (answerDirect).
type asgiRequest struct {
	token uint64
	loop  *loop

	// For the admin API: the request is alive until release.
	r         *http.Request
	start     int64 // ns since epoch, as the scheduler's clock
	websocket bool

	mu       sync.Mutex
	out      []outMsg
	outBytes int
	paused   bool
	gone     bool
	signal   chan struct{} // cap 1: out has messages

	// Lent by the handler goroutine while it waits, for answerDirect; the
	// goroutine takes it back (reclaim) before it touches the writer again.
	lent     http.ResponseWriter
	logger   *zap.Logger
	answered bool // answerDirect wrote the whole response: status code, err
	code     int
	wrote    error
}

func (q *asgiRequest) push(m outMsg) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.gone && m.kind != postDone {
		return postGone
	}
	if q.answerDirect(m) {
		return postOK
	}
	q.out = append(q.out, m)
	q.outBytes += len(m.b)
	select {
	case q.signal <- struct{}{}:
	default:
	}
	if q.outBytes > pauseBytes {
		q.paused = true
		return postPause
	}
	return postOK
}

// lend lets the loop's thread write the response while the handler
// goroutine waits; reclaim takes the writer back and tells whether the loop
// answered.
func (q *asgiRequest) lend(w http.ResponseWriter, logger *zap.Logger) {
	q.mu.Lock()
	q.lent, q.logger = w, logger
	q.mu.Unlock()
}

func (q *asgiRequest) reclaim() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.lent = nil
	return q.answered
}

// answerDirect writes a complete response, status to body, on the event
// loop's thread, from within its post, when its loop has no other request
// to run meanwhile: the client has its answer without waiting for the Go
// scheduler to run the handler goroutine again, which for a loop serving
// one request at a time was a wake-up on every request's critical path.
// With more requests in flight the goroutines write, so that the loop
// returns to Python at once. Only a body that fills the Content-Length the
// app declared is flushed here: a flush without one would force chunked
// encoding. A client that does not read (pipelined requests whose answers
// fill its socket) could hold the loop in the write: the write may take
// directWait, past which the connection is cut. Caller holds mu.
func (q *asgiRequest) answerDirect(m outMsg) bool {
	w := q.lent
	if w == nil || m.kind != postHTTP || m.flags&flagMore != 0 || m.a == nil || len(m.b) > directBody ||
		q.loop.active.Load() > 1 || headLength(m.a) != int64(len(m.b)) {
		return false
	}
	rc := http.NewResponseController(w)
	if rc.SetWriteDeadline(time.Now().Add(directWait)) != nil {
		return false // unbounded: left to the handler
	}
	defer rc.SetWriteDeadline(time.Time{})
	code, err := writeHead(w, m.a, q.logger)
	if err != nil {
		return false // nothing written: the handler reports it
	}
	q.lent, q.answered, q.code = nil, true, code
	if _, err = w.Write(m.b); err == nil {
		err = rc.Flush()
	}
	q.wrote = err
	select {
	case q.signal <- struct{}{}:
	default:
	}
	return true
}

// directBody bounds what answerDirect writes: one write that a client's
// socket takes without blocking the loop; directWait bounds the wait when
// it does not.
const (
	directBody = 16 << 10
	directWait = 10 * time.Millisecond
)

func (q *asgiRequest) takeOut() []outMsg { return takeAll(&q.mu, &q.out) }

// takeAll empties a queue of messages under its lock and returns what it held.
func takeAll[T any](mu *sync.Mutex, queue *[]T) []T {
	mu.Lock()
	defer mu.Unlock()
	msgs := *queue
	*queue = nil
	return msgs
}

// written accounts for bytes handed to the client and resumes a paused app.
func (q *asgiRequest) written(n int) {
	q.mu.Lock()
	q.outBytes -= n
	resume := q.paused && q.outBytes <= pauseBytes/2
	if resume {
		q.paused = false
	}
	q.mu.Unlock()
	if resume {
		q.loop.post(evResume, q.token)
	}
	if q.loop.remote != nil {
		q.loop.remote.ack(q.token, n)
	}
}

func (q *asgiRequest) isGone() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.gone
}

func (q *asgiRequest) markGone() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	was := q.gone
	q.gone = true
	return !was
}

func vvPostGo(token uint64, kind int, a, b []byte, flags int) int {
	v, ok := asgiRequests.Load(token)
	if !ok {
		return postGone
	}
	q := v.(*asgiRequest)
	// The loop's buffers are only lent for this call.
	m := outMsg{kind: kind, flags: flags}
	if a != nil {
		m.a = append([]byte{}, a...)
	}
	if len(b) > 0 {
		m.b = append([]byte{}, b...)
	}
	return q.push(m)
}

var errTooBusy = errors.New("too many requests in flight")

// pickLoop chooses the least busy event loop and counts the new request on
// it, or refuses past max_queue. Choosing and counting are one step: requests
// that arrive together would otherwise all see the same loop idle and pile
// onto it while the others stay idle (seen as two CPU-bound FastAPI requests
// on one of two processes, one after the other).
func (a *app) pickLoop() (*loop, error) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	for {
		var best *loop
		var least, total int64
		for _, in := range a.interps {
			l := in.loop
			// A process's loop serves once its link is up; an interpreter's once lifespan started.
			if l == nil || (l.remote == nil && !l.serving.Load()) || l.unavailable() {
				continue
			}
			n := l.active.Load()
			total += n
			if best == nil || n < least {
				best, least = l, n
			}
		}
		if best == nil {
			return nil, a.noLoop()
		}
		if total >= int64(a.cfg.maxQueue) {
			return nil, errTooBusy
		}
		if best.active.CompareAndSwap(least, least+1) {
			return best, nil
		}
	}
}

// startASGI registers an HTTP request or WebSocket on the app's least busy
// event loop and posts its first event (reopen moves it on when a restart
// closed that loop meanwhile).
func (p *Python) startASGI(r *http.Request, kind byte, fields []string) (*asgiRequest, error) {
	a := p.app.Load()
	q, err := a.newASGIRequest(r, kind == evWebSocket)
	if err != nil {
		return nil, err
	}
	return p.reopen(a, q, r, kind, fields)
}

func (a *app) newASGIRequest(r *http.Request, websocket bool) (*asgiRequest, error) {
	l, err := a.pickLoop()
	if err != nil {
		return nil, err
	}
	q := &asgiRequest{token: asgiTokens.Add(1), loop: l, signal: make(chan struct{}, 1),
		r: r, start: int64(time.Since(epoch)), websocket: websocket}
	l.requests.Add(1)
	asgiRequests.Store(q.token, q)
	return q, nil
}

func (q *asgiRequest) unregister() {
	if h := q.loop.host; h != nil {
		h.served()
	}
	q.loop.active.Add(-1)
	asgiRequests.Delete(q.token)
}
