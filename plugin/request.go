package plugin

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"

	"go.uber.org/zap"
)

// Request states: a queued request is either taken by a worker or given up by
// its client, never both.
const (
	stateQueued int32 = iota
	stateRunning
	stateCancelled
)

// request is one HTTP request on its way through an app. Between submit and
// done, only the worker that took it touches the ResponseWriter; the handler
// goroutine waits.
type request struct {
	w     http.ResponseWriter
	r     *http.Request
	env   []byte // packed CGI variables, see environ.go
	state atomic.Int32
	done  chan struct{}

	headerSent bool
	failed     bool  // the app failed before sending headers: answer 500
	aborted    bool  // the app failed after sending headers: cut the connection
	written    int64 // body bytes written
	status     int   // the status the app sent
	queuedAt   int64 // pool clock when queued; 0: a thread took it at once
	waited     int64 // ns in the queue
	body       io.Reader
	bodyErr    error // why reading the request body failed
	logger     *zap.Logger

	// The timeouts (timeout.go). The worker writes holding mu; the handler
	// takes mu to take the response back when the app ran past its timeout.
	mu       sync.Mutex
	over     bool         // the handler gave up on the worker, which must not touch w, and releases the request
	finished bool         // the worker is done with the response
	stalled  atomic.Bool  // a write made no progress for writeTimeout and was cut
	progress atomic.Int64 // when the request was queued, started, sent or read part (ns since epoch)
	writing  atomic.Int64 // when the write under way began (ns since epoch); 0: none
	reading  atomic.Bool  // the worker waits for the request body
	timedOut bool         // RequestTimeout ended it: answer 504, not 500
	worker   *worker      // the worker running it, and its seq, for an interrupt
	seq      uint32
	// In a child process of an `isolation process` app: the request is
	// Caddy's, and its response goes back over the link (child.go).
	remote *childRequest
}

var requestPool = sync.Pool{New: func() any { return &request{done: make(chan struct{}, 1)} }}

func newRequest(w http.ResponseWriter, r *http.Request, logger *zap.Logger) *request {
	req := requestPool.Get().(*request)
	req.w, req.r, req.body, req.logger = w, r, r.Body, logger
	req.state.Store(stateQueued)
	req.progress.Store(monotime())
	return req
}

func (req *request) release() {
	env := req.env[:0]
	done := req.done
	// Field by field: the atomics and the mutex must not be copied.
	req.w, req.r, req.env, req.body, req.logger = nil, nil, env, nil, nil
	req.headerSent, req.failed, req.aborted, req.written = false, false, false, 0
	req.status, req.queuedAt, req.waited, req.bodyErr = 0, 0, 0, nil
	req.over, req.finished, req.worker, req.seq, req.timedOut = false, false, nil, 0, false
	req.stalled.Store(false)
	req.writing.Store(0)
	req.reading.Store(false)
	req.done = done
	requestPool.Put(req)
}

// finish writes the final part of the response and wakes the handler goroutine.
//
// With flush, a complete HTTP/1 response, one whose body filled the
// Content-Length the app declared, is flushed to the client here, on the
// worker thread: the client then need not wait for the Go scheduler to run the
// handler goroutine again. That is worth it while the app keeps up: Flask at 1
// connection went from 5.0-5.4k to 6.7-6.9k req/s. While requests queue, the
// caller leaves the write to the handler goroutine instead: the worker gets
// back to Python sooner, and the goroutines that run on one Go thread write
// their responses back to back, which wakes the clients less often. Measured
// with Flask hello, 2 interpreters, in 3 alternating rounds against flushing
// on the worker always: at 64 connections 23.1-23.6k against 19.9-21.1k req/s
// and 1.2-1.3 against 1.7-1.9 context switches per request; at 16, 20.5-20.7k
// against 18.5-18.6k; at 1, unchanged. Without a Content-Length, flushing
// early would force chunked encoding on what net/http can still send with a
// length, so that always waits for the handler.
func (req *request) finish(head, body []byte, flags int, flush bool) {
	if req.remote != nil {
		req.remote.finish(req, head, body, flags)
		return
	}
	req.mu.Lock()
	if req.over {
		// Its handler answered 504 and left the request to us.
		req.mu.Unlock()
		req.release()
		return
	}
	defer func() {
		req.finished = true
		req.mu.Unlock()
		req.done <- struct{}{}
	}()
	req.timedOut = flags&flagTimedOut != 0
	if flags&flagAbort != 0 {
		if req.headerSent {
			req.aborted = true
		} else {
			req.failed = true
		}
	} else if err := req.sendLast(head, body); err != nil {
		if !req.headerSent {
			req.failed = true
		} else {
			req.aborted = true
		}
	} else if flush && req.headerSent && req.r.ProtoMajor == 1 && req.written == declaredLength(req.w.Header()) {
		req.writing.Store(monotime())
		_ = http.NewResponseController(req.w).Flush()
		req.writing.Store(0)
	}
}

// sendLast writes the final part, accounting the time it takes to the
// worker (workerInPython): it writes after Python, where the scheduler does
// not see it otherwise. Caller holds mu.
func (req *request) sendLast(head, body []byte) error {
	w := req.worker
	if w == nil {
		return req.send(head, body, 0)
	}
	start := monotime()
	w.writeSince.Store(start)
	err := req.send(head, body, 0)
	w.wrote.Add(monotime() - start)
	w.writeSince.Store(0)
	return err
}

// send writes part of a streamed response, for the worker running it.
func (req *request) sendPart(head, body []byte, flags int) error {
	req.mu.Lock()
	defer req.mu.Unlock()
	if req.over {
		return errTimedOut
	}
	err := req.send(head, body, flags)
	req.progress.Store(monotime())
	return err
}

// writeChunk bounds how much one write hands to the connection, so that a
// client that reads, however slowly, shows progress to the write timeout:
// with the default write_timeout, 64 KiB in 30 s.
const writeChunk = 64 << 10

// send writes the status and headers (when head is given) and a body chunk.
// Caller holds mu.
func (req *request) send(head, body []byte, flags int) error {
	if req.remote != nil {
		return req.remote.send(head, body, flags)
	}
	if head != nil {
		if err := req.writeHead(head); err != nil {
			return err
		}
	}
	for len(body) > 0 {
		part := body[:min(len(body), writeChunk)]
		req.writing.Store(monotime())
		n, err := req.w.Write(part)
		req.writing.Store(0)
		req.written += int64(n)
		if err != nil {
			return err
		}
		body = body[n:]
	}
	if flags&flagFlush != 0 {
		req.writing.Store(monotime())
		defer req.writing.Store(0)
		return http.NewResponseController(req.w).Flush()
	}
	return nil
}

var errBadStatus = errors.New("invalid status line from app")

// writeHead reads the adapter's NUL-separated "status\0name\0value..." block.
func (req *request) writeHead(head []byte) error {
	code, err := writeHead(req.w, head, req.logger)
	if err != nil {
		return err
	}
	req.headerSent = true
	req.status = code
	return nil
}

// declaredLength is the response's Content-Length, or -1 when it has none.
func declaredLength(h http.Header) int64 {
	n, err := strconv.ParseInt(h.Get("Content-Length"), 10, 64)
	if err != nil {
		return -1
	}
	return n
}

// writeHead writes the status and headers an adapter packed as
// "status\0name\0value\0...", the status being "200" or "200 OK", and
// returns the status.
func writeHead(w http.ResponseWriter, head []byte, logger *zap.Logger) (int, error) {
	status, rest, _ := bytes.Cut(head, []byte{0})
	if len(status) < 3 || (len(status) > 3 && status[3] != ' ') {
		return 0, errBadStatus
	}
	code, err := strconv.Atoi(string(status[:3]))
	if err != nil || code < 100 {
		return 0, errBadStatus
	}
	addHeaders(w.Header(), rest, logger)
	w.WriteHeader(code)
	return code, nil
}

// read fills p from the request body with at least one byte, unless it ended.
func (req *request) read(p []byte) (int, error) {
	if req.remote != nil {
		return req.remote.read(p)
	}
	if req.body == nil || len(p) == 0 {
		return 0, nil
	}
	req.reading.Store(true)
	defer func() {
		req.reading.Store(false)
		req.progress.Store(monotime())
	}()
	for {
		n, err := req.body.Read(p)
		if n > 0 {
			return n, nil
		}
		if err == io.EOF {
			return 0, nil
		}
		if err != nil {
			req.bodyErr = err
			return 0, err
		}
	}
}
