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
)

// Messages from the event loop to Go (vvPost); the same numbers as in pyadapters/asgi.py.
const (
	postHTTP     = 1 // a: status+headers (first part only), b: body, flags: 1 = more body
	postWantBody = 2 // the app awaits the next body part
	postDone     = 3 // the app returned; flags: flagAbort when it failed
	postWSAccept = 4 // a: subprotocol, b: headers
	postWSText   = 5
	postWSBytes  = 6
	postWSClose  = 7 // a: reason, flags: code
)

// vvPost answers: go on, pause until evResume, or the client is gone.
const (
	postOK    = 0
	postPause = 1
	postGone  = -1
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
// The handler goroutine does all the writing; the loop only queues messages.
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
}

func (q *asgiRequest) push(m outMsg) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.gone && m.kind != postDone {
		return postGone
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

func (q *asgiRequest) takeOut() []outMsg {
	q.mu.Lock()
	defer q.mu.Unlock()
	msgs := q.out
	q.out = nil
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

// pickLoop chooses the least busy event loop, or refuses past max_queue.
func (a *app) pickLoop() (*loop, error) {
	var best *loop
	var total int64
	a.mu.RLock()
	defer a.mu.RUnlock()
	for _, in := range a.interps {
		l := in.loop
		// A process's loop serves once its link is up; an interpreter's once lifespan started.
		if l == nil || (l.remote == nil && !l.serving.Load()) || l.unavailable() {
			continue
		}
		n := l.active.Load()
		total += n
		if best == nil || n < best.active.Load() {
			best = l
		}
	}
	if best == nil {
		return nil, a.noLoop()
	}
	if total >= int64(a.cfg.maxQueue) {
		return nil, errTooBusy
	}
	return best, nil
}

func (a *app) newASGIRequest(r *http.Request, websocket bool) (*asgiRequest, error) {
	l, err := a.pickLoop()
	if err != nil {
		return nil, err
	}
	q := &asgiRequest{token: asgiTokens.Add(1), loop: l, signal: make(chan struct{}, 1),
		r: r, start: int64(time.Since(epoch)), websocket: websocket}
	l.active.Add(1)
	l.requests.Add(1)
	asgiRequests.Store(q.token, q)
	return q, nil
}

func (q *asgiRequest) release() {
	if h := q.loop.host; h != nil {
		h.served()
	}
	q.loop.active.Add(-1)
	asgiRequests.Delete(q.token)
}
