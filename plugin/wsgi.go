package plugin

import (
	"fmt"
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// serveWSGI queues the request for the app and waits until a worker has
// answered it, or until the client leaves while it is still queued.
func (p *Python) serveWSGI(w http.ResponseWriter, r *http.Request, out *outcome) error {
	req := newRequest(w, r, p.logger)
	req.env = buildEnviron(req.env, r, p.ScriptName)
	if err := p.submit(req); err != nil {
		req.release()
		return p.unavailable(w, err)
	}
	spinning.inPython.Add(1)
	release, err := p.awaitWSGI(req, r)
	spinning.inPython.Add(-1)
	if !release {
		return err
	}
	failed, aborted, bodyErr, timedOut := req.failed, req.aborted, req.bodyErr, req.timedOut
	out.status = req.status
	p.metrics.waited(time.Duration(req.waited))
	req.release()
	if aborted {
		panic(http.ErrAbortHandler)
	}
	if failed && bodyErr != nil {
		return p.badBody(w, r, bodyErr)
	}
	if failed && timedOut {
		return caddyhttp.Error(http.StatusGatewayTimeout, fmt.Errorf("%s was interrupted by its stop; see where in the log", p.name()))
	}
	if failed {
		return caddyhttp.Error(http.StatusInternalServerError, fmt.Errorf("%s failed; see its traceback in the log", p.name()))
	}
	return nil
}
