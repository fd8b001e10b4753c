package plugin

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2"
)

func init() {
	caddy.RegisterModule(AdminPython{})
}

// AdminPython is the admin API of the Python apps, on Caddy's admin
// endpoint:
//
//	GET  /python/apps                 every app: its counters and, per interpreter,
//	                                  its state, its threads and what they run
//	POST /python/apps/<name>/restart  restart one app gracefully
//
// Caddy loads every admin.api module with each config; this one also puts
// the apps' metrics on that config's registry, the one /metrics serves.
type AdminPython struct{}

// CaddyModule returns the Caddy module information.
func (AdminPython) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.python",
		New: func() caddy.Module { return new(AdminPython) },
	}
}

// Provision registers the metrics collector on the config's registry. The
// admin endpoint is provisioned before the config's apps, and stays when a
// reload fails after it, so this is what keeps the apps on /metrics then.
func (a *AdminPython) Provision(ctx caddy.Context) error {
	return registerCollector(ctx.GetMetricsRegistry())
}

// Routes returns the admin routes.
func (a *AdminPython) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{
		{Pattern: "/python/apps", Handler: caddy.AdminHandlerFunc(a.list)},
		{Pattern: "/python/apps/", Handler: caddy.AdminHandlerFunc(a.action)},
	}
}

// appView is one app in GET /python/apps.
type appView struct {
	Name       string         `json:"name"`
	Kind       string         `json:"kind"`
	Module     string         `json:"module"`
	Isolation  string         `json:"isolation"`
	WorkingDir string         `json:"working_dir"`
	Counters   countersView   `json:"counters"`
	Instances  []instanceView `json:"instances"` // one, or two while one replaces the other
}

type countersView struct {
	Requests       map[string]uint64 `json:"requests"` // by status class
	Rejected       uint64            `json:"rejected"`
	Restarts       map[string]uint64 `json:"restarts"`
	Timeouts       map[string]uint64 `json:"timeouts"`
	WebSocketsOpen int64             `json:"websockets_open"`
}

func (a *AdminPython) list(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet {
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: errors.New("GET only")}
	}
	apps := []appView{}
	for _, m := range allApps() {
		apps = append(apps, m.view())
	}
	return writeJSON(w, map[string]any{"apps": apps})
}

func (m *appMetrics) view() appView {
	v := appView{Name: m.name, Instances: []instanceView{}}
	if h := m.handler(); h != nil {
		v.Kind, v.Module, v.Isolation, v.WorkingDir = "wsgi", h.module(), h.Isolation, h.WorkingDir
		if h.ModuleASGI != "" {
			v.Kind = "asgi"
		}
	}
	c := countersView{Requests: map[string]uint64{}, Restarts: map[string]uint64{}, Timeouts: map[string]uint64{}}
	for i, class := range classLabels {
		c.Requests[class] = m.requests[i].Load()
	}
	c.Rejected = m.rejected.Load()
	c.WebSocketsOpen = m.websockets.Load()
	m.mu.Lock()
	for k, n := range m.restarts {
		c.Restarts[k] = n
	}
	for k, n := range m.timeouts {
		c.Timeouts[k] = n
	}
	m.mu.Unlock()
	v.Counters = c
	for _, a := range m.live() {
		v.Instances = append(v.Instances, a.view())
	}
	return v
}

// action serves POST /python/apps/<name>/restart.
func (a *AdminPython) action(w http.ResponseWriter, r *http.Request) error {
	rest := strings.TrimPrefix(r.URL.Path, "/python/apps/")
	name, verb, ok := strings.Cut(rest, "/")
	if !ok || verb != "restart" {
		return caddy.APIError{HTTPStatus: http.StatusNotFound,
			Err: fmt.Errorf("no such endpoint %s; there are GET /python/apps and POST /python/apps/<name>/restart", r.URL.Path)}
	}
	if r.Method != http.MethodPost {
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: errors.New("restart wants POST")}
	}
	m := lookupApp(name)
	var h *Python
	if m != nil {
		h = m.handler()
	}
	if h == nil {
		return caddy.APIError{HTTPStatus: http.StatusNotFound, Err: fmt.Errorf("no python app named %q; GET /python/apps lists them", name)}
	}
	res, err := h.restart(restartAdmin)
	if err != nil {
		status := http.StatusInternalServerError
		if errors.Is(err, errStopped) {
			status = http.StatusConflict
		}
		return caddy.APIError{HTTPStatus: status, Err: fmt.Errorf("restarting %q: %w", name, err)}
	}
	return writeJSON(w, res)
}

func writeJSON(w http.ResponseWriter, v any) error {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// Interface guards
var (
	_ caddy.Provisioner = (*AdminPython)(nil)
	_ caddy.AdminRouter = (*AdminPython)(nil)
)
