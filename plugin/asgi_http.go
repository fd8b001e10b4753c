package plugin

import (
	"fmt"
	"io"
	"net/http"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

// serveASGI runs one HTTP request through the app's event loop; out gets
// the status the app sent.
func (p *Python) serveASGI(w http.ResponseWriter, r *http.Request, out *outcome) error {
	if isWebSocket(r) {
		out.websocket = true
		return p.serveWebSocket(w, r, out)
	}
	body, streamed, err := readInlineBody(r)
	if err != nil {
		return p.badBody(w, r, err)
	}
	if streamed {
		// Let the app stream its response while it still reads the body.
		_ = http.NewResponseController(w).EnableFullDuplex()
	}
	a := p.app.Load()
	q, err := a.newASGIRequest(r, false)
	if err != nil {
		return p.unavailable(w, err)
	}
	defer func() {
		if q != nil {
			q.unregister()
		}
	}()
	// A response in one piece may be written by the loop itself
	// (answerDirect): over HTTP/1, to a request whose body came with it.
	// Lent before the request is posted: the loop may answer at once.
	direct := r.ProtoMajor == 1 && !streamed
	if direct && q.loop.remote == nil {
		q.lend(w, p.logger)
	}
	if q, err = p.reopen(a, q, r, evHTTP, scopeFields(r, p.ScriptName, body, streamed)); err != nil {
		return p.unavailable(w, err)
	}
	direct = direct && q.loop.remote == nil
	limit := a.cfg.controls.timeout

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
	spinning.inPython.Add(1)
	defer spinning.inPython.Add(-1)
	spinWait(q.signal)
	timeout := getTimer(limit)
	defer putTimer(timeout)
	for {
		if direct {
			q.lend(w, p.logger)
		}
		select {
		case <-q.signal:
		case <-ctxDone:
			ctxDone = nil
			if q.markGone() {
				q.loop.post(evDisconnect, q.token)
			}
			continue
		case err := <-bodyFailed:
			if direct && q.reclaim() {
				return p.answeredDirect(q, out)
			}
			// The app has heard of a disconnect; the client gets the status.
			if headerSent {
				panic(http.ErrAbortHandler)
			}
			return p.badBody(w, r, err)
		case <-q.loop.exited:
			if direct && q.reclaim() {
				return p.answeredDirect(q, out)
			}
			panic(http.ErrAbortHandler)
		case <-timeout.C:
			if direct && q.reclaim() {
				return p.answeredDirect(q, out)
			}
			return p.asgiTimedOut(q, r, headerSent)
		}
		if direct && q.reclaim() {
			return p.answeredDirect(q, out)
		}
		timeout.Reset(limit)
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
				if m.flags&flagMore != 0 {
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

// answeredDirect ends a request the loop answered itself (answerDirect).
func (p *Python) answeredDirect(q *asgiRequest, out *outcome) error {
	out.status = q.code
	if q.wrote != nil && q.markGone() {
		q.loop.post(evDisconnect, q.token)
	}
	return nil
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
