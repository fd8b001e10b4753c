package plugin

import (
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

// Placeholders in module_wsgi/module_asgi, working_dir, venv, env values or
// env_file make a block dynamic: each distinct set of values a request gives them is
// an app of its own (a tenant), with interpreters of its own, started on its
// first request. max_dynamic_apps bounds how many run at once; a tenant
// idle for dynamic_idle_timeout is ended.

const (
	defaultMaxDynamicApps     = 32
	defaultDynamicIdleTimeout = 10 * time.Minute
	// dynamicRetry is how long a tenant whose app failed to load answers 502
	// before a request tries to load it again.
	dynamicRetry = 5 * time.Second
)

// template is one setting that holds placeholders.
type template struct {
	text string
	kind int    // what its values may hold: valuePath, valueModule or valueEnv
	base string // valuePath: the directory its values must stay under
}

const (
	valuePath = iota
	valueModule
	valueEnv
)

// hasPlaceholder tells whether s holds a Caddy placeholder such as
// {http.request.host.labels.2}.
func hasPlaceholder(s string) bool {
	open := strings.IndexByte(s, '{')
	return open >= 0 && strings.IndexByte(s[open:], '}') > 1
}

func newTemplate(text string, kind int) template {
	t := template{text: text, kind: kind}
	if kind == valuePath {
		// The fixed part before the first placeholder names the directory
		// every value must stay in: /srv/tenants/{host} -> /srv/tenants.
		t.base = filepath.Dir(text[:strings.IndexByte(text, '{')] + "x")
	}
	return t
}

// expand fills in the placeholders of t for one request. A value that
// could leave t's directory, change the module spec's shape or is empty is
// refused.
func (t template) expand(repl *caddy.Replacer) (string, error) {
	var b strings.Builder
	s := t.text
	for {
		open := strings.IndexByte(s, '{')
		if open < 0 {
			break
		}
		end := strings.IndexByte(s[open:], '}')
		if end < 0 {
			break
		}
		key := s[open+1 : open+end]
		value, ok := repl.GetString(key)
		if !ok {
			return "", fmt.Errorf("unknown placeholder {%s}", key)
		}
		if err := checkValue(key, value, t.kind); err != nil {
			return "", err
		}
		b.WriteString(s[:open])
		b.WriteString(value)
		s = s[open+end+1:]
	}
	b.WriteString(s)
	out := b.String()
	if t.kind == valuePath {
		out = filepath.Clean(out)
		if rel, err := filepath.Rel(t.base, out); err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
			return "", fmt.Errorf("%s is outside %s", out, t.base)
		}
	}
	return out, nil
}

func checkValue(key, value string, kind int) error {
	if strings.IndexByte(value, 0) >= 0 {
		return fmt.Errorf("{%s} holds a NUL byte", key)
	}
	if kind == valueEnv {
		return nil // any text: it is not a path
	}
	if value == "" || value == "." || value == ".." || strings.ContainsAny(value, `/\`) {
		return fmt.Errorf("{%s} is %q, which cannot name a tenant (empty, a dot segment or a path)", key, value)
	}
	if kind == valueModule && strings.ContainsAny(value, ": ") {
		return fmt.Errorf("{%s} is %q, which cannot be part of a module name", key, value)
	}
	return nil
}

// tenant is one app of a dynamic block: a handler of its own, a copy of the
// block's with the values filled in, so that it serves, restarts and is
// watched as any app is.
type tenant struct {
	key      string
	desc     string // for logs: the resolved settings
	ready    chan struct{}
	p        *Python // set before ready is closed; nil when it failed
	err      error
	failedAt time.Time
	inflight atomic.Int64
	lastUsed atomic.Int64 // unix ns
}

func (t *tenant) settled() bool {
	select {
	case <-t.ready:
		return true
	default:
		return false
	}
}

// dynamicApps holds the tenants of one dynamic `python` block.
type dynamicApps struct {
	p         *Python
	base      appConfig
	module    template
	workDir   *template
	venv      *template
	envFile   *template
	env       map[string]template // env values that hold placeholders
	max       int
	idle      time.Duration
	logger    *zap.Logger
	mu        sync.Mutex
	tenants   map[string]*tenant
	closed    bool
	stopSweep chan struct{}
	ending    sync.WaitGroup
}

// isDynamic tells whether the block's settings hold placeholders.
func (p *Python) isDynamic() bool {
	if hasPlaceholder(p.module()) || hasPlaceholder(p.WorkingDir) || hasPlaceholder(p.Venv) || hasPlaceholder(p.EnvFile) {
		return true
	}
	for _, v := range p.Env {
		if hasPlaceholder(v) {
			return true
		}
	}
	return false
}

// tenantSpec is what one tenant's app is started from: the block's settings
// with the request's values filled in.
type tenantSpec struct {
	cfg     appConfig
	env     map[string]string // env, before env_file's are merged in
	envFile string
}

func newDynamicApps(p *Python, base appConfig) (*dynamicApps, error) {
	if p.Isolation == isolationMain {
		return nil, fmt.Errorf("%s: placeholders make one app per value, and isolation main holds one app per process; "+
			"use isolation interpreter (or shared)", p.name())
	}
	d := &dynamicApps{
		p:         p,
		base:      base,
		module:    newTemplate(base.module, valueModule),
		max:       int(p.MaxDynamicApps),
		idle:      time.Duration(p.DynamicIdleTimeout),
		logger:    p.logger,
		tenants:   map[string]*tenant{},
		stopSweep: make(chan struct{}),
	}
	if d.max == 0 {
		d.max = defaultMaxDynamicApps
	}
	if d.idle == 0 {
		d.idle = defaultDynamicIdleTimeout
	}
	for _, f := range []struct {
		into  **template
		value string
		what  string
	}{{&d.workDir, base.workingDir, "working_dir"}, {&d.venv, base.venv, "venv"}} {
		if !hasPlaceholder(f.value) {
			continue
		}
		t := newTemplate(f.value, valuePath)
		if !isDir(t.base) {
			return nil, fmt.Errorf("%s: %s %s: the directory its values go in, %s, is not a directory", p.name(), f.what, f.value, t.base)
		}
		*f.into = &t
	}
	if hasPlaceholder(p.EnvFile) {
		// A relative env_file is the tenant's working_dir's: its values stay
		// in the directory before the placeholder there.
		t := newTemplate(p.EnvFile, valuePath)
		d.envFile = &t
	}
	d.env = map[string]template{}
	for k, v := range p.Env {
		if hasPlaceholder(v) {
			d.env[k] = newTemplate(v, valueEnv)
		}
	}
	go d.sweep()
	return d, nil
}

// resolve gives the tenant's settings for r, and the key that names it.
func (d *dynamicApps) resolve(r *http.Request) (tenantSpec, string, error) {
	repl, _ := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	spec := tenantSpec{cfg: d.base, envFile: d.p.EnvFile}
	if repl == nil {
		return spec, "", errors.New("no placeholders outside an HTTP request")
	}
	cfg := &spec.cfg
	var err error
	if hasPlaceholder(cfg.module) {
		if cfg.module, err = d.module.expand(repl); err != nil {
			return spec, "", fmt.Errorf("module: %w", err)
		}
	}
	if d.workDir != nil {
		if cfg.workingDir, err = d.workDir.expand(repl); err != nil {
			return spec, "", fmt.Errorf("working_dir: %w", err)
		}
	}
	if d.venv != nil {
		if cfg.venv, err = d.venv.expand(repl); err != nil {
			return spec, "", fmt.Errorf("venv: %w", err)
		}
	}
	if d.envFile != nil {
		if spec.envFile, err = d.envFile.expand(repl); err != nil {
			return spec, "", fmt.Errorf("env_file: %w", err)
		}
	}
	key := cfg.module + "\x00" + cfg.workingDir + "\x00" + cfg.venv + "\x00" + spec.envFile
	spec.env = make(map[string]string, len(d.p.Env))
	names := make([]string, 0, len(d.p.Env))
	for k, v := range d.p.Env {
		names = append(names, k)
		spec.env[k] = v
	}
	sort.Strings(names)
	for _, k := range names {
		if t, ok := d.env[k]; ok {
			if spec.env[k], err = t.expand(repl); err != nil {
				return spec, "", fmt.Errorf("env %s: %w", k, err)
			}
			key += "\x00" + k + "=" + spec.env[k]
		}
	}
	return spec, key, nil
}

// get finds or starts the tenant r belongs to. Call done when the request
// is done.
func (d *dynamicApps) get(w http.ResponseWriter, r *http.Request) (tp *Python, done func(), err error) {
	spec, key, err := d.resolve(r)
	if err != nil {
		d.logger.Warn("request names no valid dynamic app", zap.String("uri", requestURI(r)), zap.Error(err))
		return nil, nil, caddyhttp.Error(http.StatusBadRequest, fmt.Errorf("%s: %w", d.p.name(), err))
	}
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil, nil, d.p.unavailable(w, errClosed)
	}
	t := d.tenants[key]
	if t != nil && t.settled() && t.err != nil && time.Since(t.failedAt) >= dynamicRetry {
		delete(d.tenants, key)
		t = nil
	}
	fresh := t == nil
	if fresh {
		if len(d.tenants) >= d.max && !d.evictLocked() {
			d.mu.Unlock()
			return nil, nil, d.p.unavailable(w, fmt.Errorf("max_dynamic_apps (%d) apps run and each has requests in flight", d.max))
		}
		t = &tenant{key: key, ready: make(chan struct{}), desc: tenantName(spec.cfg)}
		d.tenants[key] = t
	}
	t.inflight.Add(1)
	t.lastUsed.Store(time.Now().UnixNano())
	d.mu.Unlock()
	done = func() {
		t.lastUsed.Store(time.Now().UnixNano())
		t.inflight.Add(-1)
	}
	if fresh {
		d.start(t, spec)
	}
	select {
	case <-t.ready:
	case <-r.Context().Done():
		done()
		return nil, nil, r.Context().Err()
	}
	if t.err != nil {
		done()
		return nil, nil, caddyhttp.Error(http.StatusBadGateway, fmt.Errorf("dynamic app %s failed to load: %w", t.desc, t.err))
	}
	return t.p, done, nil
}

// start loads a new tenant's app (on its first request's goroutine, which
// waits for it anyway).
func (d *dynamicApps) start(t *tenant, spec tenantSpec) {
	defer close(t.ready)
	logger := d.logger.With(zap.String("tenant", t.desc))
	started := time.Now()
	tp, err := d.startTenant(spec, logger)
	if err != nil {
		t.err, t.failedAt = err, time.Now()
		logger.Error("dynamic app failed to load; its requests get 502", zap.Error(err))
		return
	}
	t.p = tp
	logger.Info("dynamic app started", zap.Duration("took", time.Since(started)))
}

// startTenant starts a tenant's app as Provision starts a block's.
func (d *dynamicApps) startTenant(spec tenantSpec, logger *zap.Logger) (*Python, error) {
	cfg := spec.cfg
	if err := validateTenant(cfg); err != nil {
		return nil, err
	}
	env, err := appEnv(spec.env, spec.envFile, cfg.workingDir)
	if err != nil {
		return nil, err
	}
	cfg.controls.env = env
	tp := *d.p
	tp.Env, tp.EnvFile, tp.env = spec.env, spec.envFile, env
	if tp.ModuleASGI != "" {
		tp.ModuleASGI = cfg.module
	} else {
		tp.ModuleWSGI = cfg.module
	}
	tp.WorkingDir, tp.Venv = cfg.workingDir, cfg.venv
	// Nothing of the config's to release: the block holds those.
	tp.dynamic, tp.watcher, tp.mainConfig, tp.config = nil, nil, nil, nil
	tp.logger = logger
	a, err := startApp(cfg, logger)
	if err != nil {
		return nil, err
	}
	tp.app = &appSlot{}
	tp.app.Store(a)
	if len(tp.Watch) > 0 {
		if tp.watcher, err = watchApp(&tp); err != nil {
			tp.stopTenant()
			return nil, fmt.Errorf("watch %s: %v", cfg.workingDir, err)
		}
	}
	return &tp, nil
}

// stopTenant ends a tenant's app as Cleanup ends a block's.
func (p *Python) stopTenant() {
	p.watcher.close()
	p.app.restartMu.Lock()
	defer p.app.restartMu.Unlock()
	p.app.stop()
}

func tenantName(cfg appConfig) string {
	name := fmt.Sprintf("%s (working_dir %s", cfg.module, cfg.workingDir)
	if cfg.venv != "" {
		name += ", venv " + cfg.venv
	}
	return name + ")"
}

func validateTenant(cfg appConfig) error {
	if !isDir(cfg.workingDir) {
		return fmt.Errorf("working_dir %s is not a directory", cfg.workingDir)
	}
	if cfg.venv != "" && !isDir(cfg.venv) {
		return fmt.Errorf("venv %s is not a directory", cfg.venv)
	}
	return nil
}

// evictLocked ends the least recently used tenant with no request in flight,
// to make room. Caller holds d.mu.
func (d *dynamicApps) evictLocked() bool {
	var lru *tenant
	for _, t := range d.tenants {
		if !t.settled() || t.inflight.Load() > 0 {
			continue
		}
		if lru == nil || t.lastUsed.Load() < lru.lastUsed.Load() {
			lru = t
		}
	}
	if lru == nil {
		return false
	}
	d.endLocked(lru, "max_dynamic_apps reached; least recently used")
	return true
}

// endLocked removes t and stops its app in the background. Caller holds d.mu.
func (d *dynamicApps) endLocked(t *tenant, why string) {
	delete(d.tenants, t.key)
	d.retire(t, why)
}

func (d *dynamicApps) retire(t *tenant, why string) {
	if t.p == nil {
		return
	}
	d.logger.Info("ending dynamic app", zap.String("tenant", t.desc), zap.String("why", why))
	d.ending.Add(1)
	go func() {
		defer d.ending.Done()
		t.p.stopTenant()
	}()
}

// sweep ends tenants idle past the timeout, and forgets failures to retry.
func (d *dynamicApps) sweep() {
	every := min(max(d.idle/4, time.Second), time.Minute)
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-d.stopSweep:
			return
		case now := <-tick.C:
			d.mu.Lock()
			for _, t := range d.tenants {
				if !t.settled() || t.inflight.Load() > 0 {
					continue
				}
				if t.err != nil {
					if now.Sub(t.failedAt) >= dynamicRetry {
						delete(d.tenants, t.key)
					}
					continue
				}
				if idle := now.Sub(time.Unix(0, t.lastUsed.Load())); idle >= d.idle {
					d.endLocked(t, fmt.Sprintf("idle for %s", idle.Round(time.Second)))
				}
			}
			d.mu.Unlock()
		}
	}
}

// restart restarts every running tenant, one after the other; the result
// lists the interpreters of all of them.
func (d *dynamicApps) restart(reason string) (restartResult, error) {
	d.mu.Lock()
	var running []*Python
	for _, t := range d.tenants {
		if t.settled() && t.p != nil {
			running = append(running, t.p)
		}
	}
	d.mu.Unlock()
	res := restartResult{Name: d.p.Name, OldInterpreters: []int64{}, NewInterpreters: []int64{}}
	var errs []error
	for _, tp := range running {
		one, err := tp.restart(reason)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		res.OldInterpreters = append(res.OldInterpreters, one.OldInterpreters...)
		res.NewInterpreters = append(res.NewInterpreters, one.NewInterpreters...)
		res.StartSeconds += one.StartSeconds
		res.DrainSeconds += one.DrainSeconds
	}
	return res, errors.Join(errs...)
}

// close ends every tenant, waiting for those still starting.
func (d *dynamicApps) close() {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return
	}
	d.closed = true
	close(d.stopSweep)
	all := d.tenants
	d.tenants = map[string]*tenant{}
	d.mu.Unlock()
	for _, t := range all {
		<-t.ready
		d.retire(t, "config unloaded")
	}
	d.ending.Wait()
}

// count is how many tenants are loaded or loading.
func (d *dynamicApps) count() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.tenants)
}

// unmarshalDynamic reads max_dynamic_apps and dynamic_idle_timeout.
func (p *Python) unmarshalDynamic(d *caddyfile.Dispenser, sub string) error {
	var arg string
	if !d.AllArgs(&arg) {
		return d.Errf("%s takes exactly one value", sub)
	}
	if sub == "max_dynamic_apps" {
		n, err := positive(arg)
		if err != nil {
			return d.Errf("max_dynamic_apps: %v", err)
		}
		p.MaxDynamicApps = snakeInt(n)
		return nil
	}
	dur, err := caddy.ParseDuration(arg)
	if err != nil || dur <= 0 {
		return d.Errf("dynamic_idle_timeout: want a duration such as 10m, got %q", arg)
	}
	p.DynamicIdleTimeout = caddy.Duration(dur)
	return nil
}
