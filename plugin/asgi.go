package plugin

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
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

// inlineBody is the largest body sent along with the request itself, sparing
// the app a round trip for every small POST.
const inlineBody = 64 << 10

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

// bodyReader reads a streamed request body one part per want, so a large
// upload is never held in memory beyond the part the app is about to
// receive. It alone reads the body once started; the handler goroutine
// hears from it only when the body failed.
type bodyReader struct {
	q      *asgiRequest
	body   io.ReadCloser
	wants  chan struct{}
	failed chan error    // cap 1: the body is not valid HTTP (see bodyStatus)
	done   chan struct{} // closed once the reader has let go of the body
}

func (q *asgiRequest) startBodyReader(body io.ReadCloser) *bodyReader {
	br := &bodyReader{q: q, body: body, wants: make(chan struct{}, 1),
		failed: make(chan error, 1), done: make(chan struct{})}
	go br.run()
	return br
}

func (br *bodyReader) want() {
	select {
	case br.wants <- struct{}{}:
	default:
	}
}

func (br *bodyReader) run() {
	defer close(br.done)
	q := br.q
	buf := make([]byte, inlineBody)
	for range br.wants {
		n, err := fill(br.body, buf)
		switch {
		case err == io.EOF:
			q.loop.post(evBody, q.token, bytesField(buf[:n]), "0")
			return
		case err != nil:
			// The body is not complete, whatever arrived of it, so the app
			// hears of a disconnect, not of an end. The handler is told
			// first: the app may return as soon as it hears.
			if bodyStatus(err) != 0 {
				br.failed <- err
			}
			if q.markGone() {
				q.loop.post(evDisconnect, q.token)
			}
			return
		}
		q.loop.post(evBody, q.token, bytesField(buf[:n]), "1")
	}
	// Stopped by finishBody with the body unread.
	drain(br.body)
}

// finishBody is called once the app's response is complete while part of a
// streamed body may still be unread. What is left is read and dropped, as
// uvicorn does, so that the connection serves the next request; a client
// that stalls meanwhile is cut off by Caddy's read_idle_timeout. Left to
// net/http after the handler returns, that drain runs into its background
// read of the connection when full duplex is on (golang/go#68560), and the
// next request on the connection fails; closing the connection instead
// needs net/http to see the early close, which it cannot through the body
// wrappers Caddy installs.
func (p *Python) finishBody(w http.ResponseWriter, r *http.Request, br *bodyReader) {
	if br != nil {
		close(br.wants)
		select {
		case <-br.done:
			return // read to its end (or failed) already
		default:
		}
	}
	// The client has its response before anything waits for its body.
	_ = http.NewResponseController(w).Flush()
	if br == nil {
		drain(r.Body)
		return
	}
	<-br.done
}

func drain(body io.ReadCloser) {
	_, _ = io.Copy(io.Discard, body)
	body.Close()
}

// fill reads until buf is full or the body ends (io.EOF) or fails. Unlike
// io.ReadFull it keeps a clean end apart from a broken one.
func fill(r io.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// scopeFields packs what the adapter needs to build an ASGI scope; the order
// is the one pyadapters/asgi.py unpacks.
func scopeFields(r *http.Request, scriptName string, body []byte, more bool) []string {
	version := "1.1"
	switch {
	case r.ProtoMajor == 1 && r.ProtoMinor == 0:
		version = "1.0"
	case r.ProtoMajor > 1:
		version = strconv.Itoa(r.ProtoMajor)
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	// ASGI keeps the full path and names the mount point in root_path.
	rootPath, _, stripped := mountPoint(r, scriptName)
	path, rawPath := asgiPath(r, rootPath, stripped)
	var hb strings.Builder
	writeHeader := func(name, value string) {
		if hb.Len() > 0 {
			hb.WriteByte(0)
		}
		for i := 0; i < len(name); i++ {
			c := name[i]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			hb.WriteByte(c)
		}
		hb.WriteByte(0)
		hb.WriteString(value)
	}
	writeHeader("host", r.Host)
	for name, values := range r.Header {
		if name == "Host" {
			continue
		}
		for _, v := range values {
			writeHeader(name, v)
		}
	}
	if te := transferEncoding(r); te != "" {
		writeHeader("transfer-encoding", te)
	}
	clientHost, clientPort := clientAddr(r)
	serverHost, serverPort := r.Host, ""
	if h, p, err := net.SplitHostPort(r.Host); err == nil {
		serverHost, serverPort = h, p
	}
	if local, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		if h, p, err := net.SplitHostPort(local.String()); err == nil {
			serverHost, serverPort = h, p
		}
	}
	moreFlag := "0"
	if more {
		moreFlag = "1"
	}
	return []string{
		version, r.Method, scheme, path, rawPath,
		r.URL.RawQuery, rootPath, hb.String(),
		clientHost, clientPort, serverHost, serverPort,
		bytesField(body), moreFlag,
	}
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

// serveASGI runs one HTTP request through the app's event loop; out gets
// the status the app sent.
func (p *Python) serveASGI(w http.ResponseWriter, r *http.Request, out *outcome) error {
	if isWebSocket(r) {
		out.websocket = true
		return p.serveWebSocket(w, r, out)
	}
	a := p.app.Load()
	q, err := a.newASGIRequest(r, false)
	if err != nil {
		return p.unavailable(w, err)
	}
	defer func() {
		if q != nil {
			q.release()
		}
	}()

	// A small body travels with the request; a large or chunked one is read
	// part by part as the app asks for it.
	var body []byte
	streamed := false
	switch {
	case r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0:
	case r.ContentLength > 0 && r.ContentLength <= inlineBody:
		body = make([]byte, r.ContentLength)
		if _, err := io.ReadFull(r.Body, body); err != nil {
			return p.badBody(w, r, err)
		}
	default:
		streamed = true
		// Let the app stream its response while it still reads the body.
		_ = http.NewResponseController(w).EnableFullDuplex()
	}
	if q, err = p.reopen(a, q, r, evHTTP, scopeFields(r, p.ScriptName, body, streamed)); err != nil {
		return p.unavailable(w, err)
	}

	rc := http.NewResponseController(w)
	ctxDone := r.Context().Done()
	headerSent, finished := false, false
	var reader *bodyReader
	var bodyFailed <-chan error
	defer func() {
		if reader != nil && !finished {
			close(reader.wants)
		}
	}()
	timeout := getTimer(a.cfg.controls.timeout)
	defer putTimer(timeout)
	for {
		select {
		case <-q.signal:
		case <-ctxDone:
			ctxDone = nil
			if q.markGone() {
				q.loop.post(evDisconnect, q.token)
			}
			continue
		case err := <-bodyFailed:
			// The app has heard of a disconnect; the client gets the status.
			if headerSent {
				panic(http.ErrAbortHandler)
			}
			return p.badBody(w, r, err)
		case <-q.loop.exited:
			panic(http.ErrAbortHandler)
		case <-timeout.C:
			return p.asgiTimedOut(q, r, headerSent)
		}
		timeout.Reset(a.cfg.controls.timeout)
		for _, m := range q.takeOut() {
			switch m.kind {
			case postWantBody:
				if reader == nil {
					reader = q.startBodyReader(r.Body)
					bodyFailed = reader.failed
				}
				reader.want()
			case postHTTP:
				if finished {
					continue
				}
				if m.a != nil && !headerSent {
					code, err := writeHead(w, m.a, p.logger)
					if err != nil {
						p.logger.Error("invalid http.response.start from app", zap.Error(err))
						return caddyhttp.Error(http.StatusInternalServerError, err)
					}
					headerSent = true
					out.status = code
				}
				if len(m.b) > 0 {
					if _, err := w.Write(m.b); err != nil && q.markGone() {
						q.loop.post(evDisconnect, q.token)
					}
				}
				if m.flags&1 != 0 {
					if err := rc.Flush(); err != nil && q.markGone() {
						q.loop.post(evDisconnect, q.token)
					}
				} else {
					finished = true
				}
				if finished {
					// The response is complete; the app may still run
					// (background tasks) and post postDone later.
					if streamed {
						p.finishBody(w, r, reader)
					}
					return nil
				}
				q.written(len(m.b))
			case postDone:
				if reader != nil {
					select {
					case err := <-reader.failed:
						if headerSent {
							panic(http.ErrAbortHandler)
						}
						return p.badBody(w, r, err)
					default:
					}
				}
				if q.isGone() {
					// The client left first: nothing to answer, and no
					// response the app did not send.
					panic(http.ErrAbortHandler)
				}
				if m.flags&flagLost != 0 && !headerSent {
					return caddyhttp.Error(http.StatusBadGateway, fmt.Errorf("%s: %w", p.name(), errLost))
				}
				if m.flags&flagAbort != 0 || !headerSent {
					if headerSent {
						panic(http.ErrAbortHandler)
					}
					if m.flags&flagTimedOut != 0 {
						return caddyhttp.Error(http.StatusGatewayTimeout,
							fmt.Errorf("%s was interrupted by its stop; see where in the log", p.name()))
					}
					return caddyhttp.Error(http.StatusInternalServerError,
						fmt.Errorf("%s failed before responding; see its log", p.name()))
				}
				// Returned with the response unfinished.
				panic(http.ErrAbortHandler)
			}
		}
	}
}
