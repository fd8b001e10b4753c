package plugin

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// unavailable is the one 503 answer, for every request the app cannot take
// now (queue full, app stopping, no process up, too many dynamic apps):
// Retry-After, because each of these passes.
func (p *Python) unavailable(w http.ResponseWriter, err error) error {
	if errors.Is(err, errQueueFull) || errors.Is(err, errTooBusy) {
		p.metrics.refused()
	}
	w.Header().Set("Retry-After", "1")
	return caddyhttp.Error(http.StatusServiceUnavailable, fmt.Errorf("%s: %w", p.name(), err))
}
