package plugin

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

// What a failed read of a request body means is the same for WSGI and ASGI:
// net/http reports a client that went away and a client that sent something
// that is not HTTP (a malformed chunked encoding) through the same Read.

// bodyStatus is the status that answers a request whose body failed with
// err: 400 for a body that is not valid HTTP, 413 past a size limit
// (request_body max_size), and 0 when the client went away or stalled, so
// that no one is left to answer.
func bodyStatus(err error) int {
	var tooLarge *http.MaxBytesError
	var netErr net.Error
	switch {
	case errors.As(err, &tooLarge):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed),
		errors.Is(err, http.ErrBodyReadAfterClose), errors.Is(err, context.Canceled),
		errors.As(err, &netErr):
		return 0
	}
	return http.StatusBadRequest
}

// badBody answers a request whose body could not be read, before any of the
// app's response went out, and logs what was wrong with it once. The
// connection closes after the answer: what follows a broken body on it is
// not a request.
func (p *Python) badBody(w http.ResponseWriter, r *http.Request, err error) error {
	status := bodyStatus(err)
	if status == 0 {
		// The client is gone: cut the connection rather than answer it.
		panic(http.ErrAbortHandler)
	}
	p.logger.Warn("request body could not be read",
		zap.String("method", r.Method), zap.String("uri", requestURI(r)),
		zap.Int("status", status), zap.Error(err))
	w.Header().Set("Connection", "close")
	return caddyhttp.Error(status, err)
}

// inlineBody is the largest body sent along with the request itself, sparing
// the app a round trip for every small POST.
const inlineBody = 64 << 10

// readInlineBody reads a body of known length up to inlineBody, which then
// travels with the request; streamed tells that the body is larger or of
// unknown length, and is read part by part as the app asks for it.
func readInlineBody(r *http.Request) (body []byte, streamed bool, err error) {
	switch {
	case r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0:
		return nil, false, nil
	case r.ContentLength > 0 && r.ContentLength <= inlineBody:
		body = make([]byte, r.ContentLength)
		_, err = io.ReadFull(r.Body, body)
		return body, false, err
	}
	return nil, true, nil
}
