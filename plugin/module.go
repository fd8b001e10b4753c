// Package plugin is the Caddy side of Vivarium: the `python` HTTP handler, its
// Caddyfile syntax, the scheduler that feeds requests to the C worker threads
// of each app's interpreters, and the cgo bridge between them.
package plugin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

func init() {
	caddy.RegisterModule(Python{})
}

// Defaults for the per-app settings.
const (
	defaultThreads  = 4
	defaultMaxQueue = 1024
)

// Python serves a Python web app from own-GIL subinterpreters inside Caddy.
type Python struct {
	// ModuleWSGI names the WSGI app: "package.module:attribute". The attribute
	// defaults to "application"; "module:factory()" calls a factory.
	ModuleWSGI string `json:"module_wsgi,omitempty"`
	// ModuleASGI names an ASGI 3 app instead: "package.module:app".
	ModuleASGI string `json:"module_asgi,omitempty"`
	// Lifespan runs the ASGI lifespan protocol: "on" or "off" (default).
	Lifespan string `json:"lifespan,omitempty"`
	// Venv is a virtual environment made with the same Python version as the
	// one Caddy embeds; its site-packages are added to the app's sys.path.
	Venv string `json:"venv,omitempty"`
	// WorkingDir is the app's import root, first on its sys.path. It is not a
	// chdir: the current directory is shared by the whole process. Defaults to
	// Caddy's current directory.
	WorkingDir string `json:"working_dir,omitempty"`
	// Interpreters is how many own-GIL interpreters serve this app: a number,
	// or "auto" for one per CPU. Default 1.
	Interpreters Count `json:"interpreters,omitempty"`
	// Threads is the number of worker threads per interpreter. Default 4.
	Threads int `json:"threads,omitempty"`
	// MaxQueue is how many requests may wait for a worker before new ones get
	// 503 Service Unavailable. Default 1024.
	MaxQueue int `json:"max_queue,omitempty"`
	// Isolation is where the app runs: "interpreter", its own interpreter
	// with its own GIL; "shared", its own interpreter under the main GIL, for
	// extension modules that refuse own-GIL interpreters; "main", the main
	// interpreter itself (one app per process); "process", child processes of
	// Caddy, `interpreters` of them; "auto" (default), interpreter where the
	// app loads there, else process.
	Isolation string `json:"isolation,omitempty"`
	// User and Group run an `isolation process` app's processes as this
	// user and group (names or numeric ids). Caddy must run as root.
	User  string `json:"user,omitempty"`
	Group string `json:"group,omitempty"`
	// ScriptName is the path prefix the app is mounted at: it becomes
	// SCRIPT_NAME (ASGI root_path) and is cut from PATH_INFO. Without it,
	// the prefix a rewrite such as handle_path stripped is the mount point.
	ScriptName string `json:"script_name,omitempty"`
	// WebSocketCompression negotiates permessage-deflate with WebSocket
	// clients that offer it: "on" (default) or "off".
	WebSocketCompression string `json:"websocket_compression,omitempty"`
	// Name names the app in logs, metrics and the admin API; unique in a
	// config. The Caddyfile derives it from the site and matcher; JSON
	// without one gets it from script_name, else the module.
	Name string `json:"name,omitempty"`
	// Watch restarts the app (new interpreters first, then the old ones
	// drain) when a file under working_dir that matches one of these globs
	// changes. See watch.go.
	Watch []string `json:"watch,omitempty"`
	// caddy-snake's names for some of these (venv_path, workers, autoreload),
	// and what cannot be honoured.
	// MaxDynamicApps bounds the apps a block with placeholders runs at once
	// (one per distinct value). Default 32. See dynamic.go.
	MaxDynamicApps snakeInt `json:"max_dynamic_apps,omitempty"`
	// DynamicIdleTimeout ends such an app after this long without a request.
	// Default 10m.
	DynamicIdleTimeout caddy.Duration `json:"dynamic_idle_timeout,omitempty"`
	snakeFields

	// Env sets environment variables for this app alone: its os.environ and
	// os.getenv see them, other apps and the process environment do not.
	Env map[string]string `json:"env,omitempty"`
	// EnvFile is a dotenv file of more such variables (Env wins), relative to
	// WorkingDir.
	EnvFile string `json:"env_file,omitempty"`
	// Timeout is how long a request may wait for a thread, and then how long
	// the app may take without sending or reading part of it, before the
	// client gets 504 and the app's code is interrupted. Default 60s.
	Timeout caddy.Duration `json:"timeout,omitempty"`
	// WriteTimeout is how long a WSGI response write may make no progress
	// before the response is ended and its thread freed. Default 30s.
	WriteTimeout caddy.Duration `json:"write_timeout,omitempty"`
	// StartTimeout bounds the app's import and lifespan startup. Default 120s;
	// "-1" (or "forever") for no bound, as caddy-snake writes it.
	StartTimeout StartTimeout `json:"start_timeout,omitempty"`
	// MaxRequests replaces an interpreter once it has served about this many
	// requests (up to 10% more, so that interpreters do not recycle together).
	MaxRequests int `json:"max_requests,omitempty"`
	// MaxMemory replaces an interpreter whose Python heap grows past this
	// many bytes.
	MaxMemory int64 `json:"max_memory,omitempty"`

	env        map[string]string // Env over EnvFile's
	app        *appSlot          // nil for a dynamic block
	watcher    *watcher          // with Watch
	dynamic    *dynamicApps      // with placeholders: one app per value
	logger     *zap.Logger
	mainConfig context.Context // the config this app holds the main interpreter for
	metrics    *appMetrics
	config     *prometheus.Registry // the config's registry, which keys its names
	validated  bool                 // Validate passed
}

// CaddyModule returns the Caddy module information.
func (Python) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.python",
		New: func() caddy.Module { return new(Python) },
	}
}

// Count is a positive number, or "auto" for the number of CPUs.
type Count int

// CountAuto is how "auto" is kept until Provision resolves it.
const CountAuto Count = -1

// UnmarshalJSON accepts a number or "auto".
func (c *Count) UnmarshalJSON(b []byte) error {
	var s string
	if json.Unmarshal(b, &s) == nil {
		return c.parse(s)
	}
	var n int
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf(`want a number or "auto", got %s`, b)
	}
	*c = Count(n)
	return nil
}

// MarshalJSON writes "auto" or the number.
func (c Count) MarshalJSON() ([]byte, error) {
	if c == CountAuto {
		return []byte(`"auto"`), nil
	}
	return json.Marshal(int(c))
}

func (c *Count) parse(s string) error {
	if s == "auto" {
		*c = CountAuto
		return nil
	}
	n, err := positive(s)
	if err != nil {
		return fmt.Errorf(`%v, or "auto"`, err)
	}
	*c = Count(n)
	return nil
}

func (p *Python) module() string {
	if p.ModuleASGI != "" {
		return p.ModuleASGI
	}
	return p.ModuleWSGI
}

func (p *Python) name() string {
	return fmt.Sprintf("python app %q (working_dir %s)", p.module(), p.WorkingDir)
}

// Provision fills in defaults, checks the settings and starts the app's
// interpreters. A failure refuses the config; nothing is left running.
func (p *Python) Provision(ctx caddy.Context) error {
	p.logger = ctx.Logger()
	if err := p.applySnakeFields(); err != nil {
		return err
	}
	if p.Interpreters == 0 {
		p.Interpreters = 1
	}
	if p.Interpreters == CountAuto {
		p.Interpreters = Count(runtime.NumCPU())
	}
	if p.Threads == 0 {
		p.Threads = defaultThreads
	}
	if p.MaxQueue == 0 {
		p.MaxQueue = defaultMaxQueue
	}
	if p.WorkingDir == "" {
		p.WorkingDir = "."
	}
	if p.Isolation == "" {
		p.Isolation = isolationAuto
	}
	var err error
	if p.WorkingDir, err = filepath.Abs(p.WorkingDir); err != nil {
		return err
	}
	if p.Venv != "" {
		if p.Venv, err = filepath.Abs(p.Venv); err != nil {
			return err
		}
	}
	if p.Name == "" {
		p.Name = p.fallbackName()
	}
	if err := p.Validate(); err != nil {
		return err
	}
	if err := claimName(ctx.GetMetricsRegistry(), p.Name); err != nil {
		return fmt.Errorf("%s: %v", p.name(), err)
	}
	p.config = ctx.GetMetricsRegistry() // from here on, Cleanup releases the name
	if err := registerCollector(p.config); err != nil {
		return err
	}
	p.metrics = acquireMetrics(p.Name, p)
	if err := p.provisionControls(); err != nil {
		return err
	}
	kind := "wsgi"
	if p.ModuleASGI != "" {
		kind = "asgi"
	}
	appLogger := p.logger.With(zap.String("app", p.Name), zap.String("module", p.module()), zap.String("working_dir", p.WorkingDir))
	if p.Isolation == isolationAuto && !p.isDynamic() {
		if err := p.chooseIsolation(kind, appLogger); err != nil {
			return err
		}
	}
	if p.Isolation == isolationMain {
		if err := claimMain(ctx, p.name()); err != nil {
			return err
		}
		p.mainConfig = ctx.Context
	}
	if p.Isolation != isolationProcess {
		// Calls from C threads into Go happen in the app's processes instead.
		raiseGOMAXPROCS(p.logger)
	}
	p.logger = appLogger
	cfg := appConfig{
		metrics:      p.metrics,
		kind:         kind,
		module:       p.module(),
		lifespan:     p.Lifespan == "on",
		isolation:    isolationCodes[p.Isolation],
		workingDir:   p.WorkingDir,
		venv:         p.Venv,
		interpreters: int(p.Interpreters),
		threads:      p.Threads,
		maxQueue:     p.MaxQueue,
		controls:     p.controls(),
		user:         p.User,
		group:        p.Group,
	}
	if p.isDynamic() {
		p.dynamic, err = newDynamicApps(p, cfg)
		return err
	}
	a, err := startApp(cfg, p.logger)
	if err != nil {
		p.releaseMain()
		var refused *startError
		if errors.As(err, &refused) && refused.refused {
			if advice := isolationAdvice(cfg); advice != "" {
				return fmt.Errorf("%s: %v; %s; or `isolation process`, which the default (auto) "+
					"would choose: processes of its own, where any extension module loads", p.name(), err, advice)
			}
		}
		return fmt.Errorf("%s: %v", p.name(), err)
	}
	p.app = &appSlot{}
	p.app.Store(a)
	p.stopsWithConfig()
	if len(p.Watch) > 0 {
		// On failure Caddy calls Cleanup, which stops the app.
		if p.watcher, err = watchApp(p); err != nil {
			return fmt.Errorf("%s: watch %s: %v", p.name(), p.WorkingDir, err)
		}
	}
	return nil
}

// Validate checks the settings, whichever way the config was written.
// Provision calls it before anything starts; Caddy's own call after
// Provision then finds it done.
func (p *Python) Validate() error {
	if p.validated {
		return nil
	}
	if err := p.checkApp(); err != nil {
		if p.module() == "" {
			return fmt.Errorf("python: %v", err)
		}
		return fmt.Errorf("%s: %v", p.name(), err)
	}
	if err := p.validateSettings(); err != nil {
		return err
	}
	p.validated = true
	return nil
}

// checkApp applies the rules of what makes one app: each is written once,
// here. The Caddyfile calls it at the end of a block, and the rules of one
// value (check* below) where the value is written, so that its errors name
// the line.
func (p *Python) checkApp() error {
	switch {
	case p.ModuleWSGI == "" && p.ModuleASGI == "":
		return errors.New(`the block needs module_wsgi or module_asgi, e.g. module_wsgi "main:app"`)
	case p.ModuleWSGI != "" && p.ModuleASGI != "":
		return errors.New("the block has both module_wsgi and module_asgi; one app per block")
	}
	for _, rule := range settingRules {
		if field, check := p.checkedSetting(rule.name); *field != "" {
			if err := check(*field); err != nil {
				return err
			}
		}
	}
	if p.Lifespan == "on" && p.ModuleASGI == "" {
		return errors.New("lifespan applies to ASGI apps (module_asgi) only")
	}
	if p.WebSocketCompression != "" && p.ModuleASGI == "" {
		return errors.New("websocket_compression applies to ASGI apps (module_asgi) only")
	}
	return nil
}

// settingRules are the rules of the settings whose one value has a rule of
// its own.
var settingRules = []struct {
	name  string
	field func(*Python) *string
	valid func(string) bool
	want  string
}{
	{"module_wsgi", func(p *Python) *string { return &p.ModuleWSGI }, isModuleName, moduleNameWanted},
	{"module_asgi", func(p *Python) *string { return &p.ModuleASGI }, isModuleName, moduleNameWanted},
	{"lifespan", func(p *Python) *string { return &p.Lifespan }, isOnOff, "on or off"},
	{"websocket_compression", func(p *Python) *string { return &p.WebSocketCompression }, isOnOff, "on or off"},
	{"isolation", func(p *Python) *string { return &p.Isolation }, knownIsolation, isolationNames},
	{"script_name", func(p *Python) *string { return &p.ScriptName }, isMountPath,
		"a path that starts with / and does not end with /, like /api"},
}

const moduleNameWanted = `a module name like "main:app", not a path: the directory goes in working_dir`

// checkedSetting is where the setting of that name goes, and its rule; nil
// for another setting.
func (p *Python) checkedSetting(name string) (*string, func(string) error) {
	for _, rule := range settingRules {
		if rule.name == name {
			return rule.field(p), func(v string) error {
				if !rule.valid(v) {
					return fmt.Errorf("%s must be %s; got %q", name, rule.want, v)
				}
				return nil
			}
		}
	}
	return nil, nil
}

func isModuleName(v string) bool { return strings.Contains(v, ":") || !strings.ContainsAny(v, "/\\") }

func isOnOff(v string) bool { return v == "on" || v == "off" }

func isMountPath(v string) bool {
	return v == "" || strings.HasPrefix(v, "/") && !strings.HasSuffix(v, "/")
}

// validateSettings checks the numbers, names and paths.
func (p *Python) validateSettings() error {
	if p.Interpreters < 1 && p.Interpreters != CountAuto {
		return fmt.Errorf("%s: interpreters must be at least 1", p.name())
	}
	if err := p.validateProcess(); err != nil {
		return err
	}
	if p.Isolation == isolationShared || p.Isolation == isolationMain {
		if p.Interpreters > 1 || p.Interpreters == CountAuto {
			return fmt.Errorf("%s: interpreters above 1 needs isolation interpreter: a %s app runs "+
				"under the main GIL, so more interpreters would add memory but no parallelism; raise threads instead",
				p.name(), p.Isolation)
		}
	}
	if p.Threads < 1 {
		return fmt.Errorf("%s: threads must be at least 1", p.name())
	}
	if p.MaxQueue < 1 {
		return fmt.Errorf("%s: max_queue must be at least 1", p.name())
	}
	if p.Name != "" {
		if err := checkName(p.Name); err != nil {
			return fmt.Errorf("%s: %v", p.name(), err)
		}
	}
	if p.WorkingDir != "" && !hasPlaceholder(p.WorkingDir) {
		if st, err := os.Stat(p.WorkingDir); err != nil || !st.IsDir() {
			return fmt.Errorf("%s: working_dir %s is not a directory", p.name(), p.WorkingDir)
		}
	}
	if p.Venv != "" && !hasPlaceholder(p.Venv) {
		if st, err := os.Stat(p.Venv); err != nil || !st.IsDir() {
			return fmt.Errorf("%s: venv %s is not a directory; create it with python%s -m venv %s", p.name(), p.Venv, pythonXY, p.Venv)
		}
	}
	return nil
}

// Cleanup stops the app once Caddy no longer routes to it: its workers finish
// the requests they have, then its interpreters end.
func (p *Python) Cleanup() error {
	// First, so that no restart it would start holds up the stop.
	p.watcher.close()
	p.watcher = nil
	if p.dynamic != nil {
		p.dynamic.close()
	}
	if p.app != nil {
		p.beginConfigStop()
		p.app.restartMu.Lock()
		defer p.app.restartMu.Unlock()
		if p.app.stopped {
			return nil
		}
		p.app.stop()
	}
	p.releaseMain()
	// p.config marks what Provision took; the request path never reads it.
	if p.config != nil {
		if p.metrics != nil {
			releaseMetrics(p.metrics, p)
		}
		releaseName(p.config, p.Name)
		p.config = nil
	}
	return nil
}

// Isolation modes, and their codes (codes.go).
const (
	isolationInterpreter = "interpreter"
	isolationShared      = "shared"
	isolationMain        = "main"
)

var isolationCodes = map[string]int{isolationInterpreter: isolationInterpreterCode, isolationShared: isolationSharedCode,
	isolationMain: isolationMainCode, isolationProcess: isolationProcessCode}

// mainUsers records, per loaded config, the app holding the main interpreter.
// During a reload the outgoing config's app may still hold it: that is one
// app replacing itself, not two apps sharing it.
var mainUsers struct {
	sync.Mutex
	byConfig map[context.Context]string
}

func claimMain(ctx caddy.Context, name string) error {
	mainUsers.Lock()
	defer mainUsers.Unlock()
	if other, taken := mainUsers.byConfig[ctx.Context]; taken {
		return fmt.Errorf("%s: isolation main is taken by %s; only one app per process can run in the "+
			"main interpreter: give this one isolation interpreter or shared", name, other)
	}
	if mainUsers.byConfig == nil {
		mainUsers.byConfig = map[context.Context]string{}
	}
	mainUsers.byConfig[ctx.Context] = name
	return nil
}

func (p *Python) releaseMain() {
	if p.mainConfig == nil {
		return
	}
	mainUsers.Lock()
	delete(mainUsers.byConfig, p.mainConfig)
	mainUsers.Unlock()
	p.mainConfig = nil
}

// ServeHTTP hands the request to the app and counts what it got.
func (p *Python) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) (err error) {
	start := time.Since(epoch)
	var out outcome
	// Deferred, so that a response cut short (a panic with
	// http.ErrAbortHandler) is counted too.
	defer func() { p.metrics.account(&out, err, start) }()
	target := p
	if p.dynamic != nil {
		var done func()
		if target, done, err = p.dynamic.get(w, r); err != nil {
			return err
		}
		defer done()
	}
	if procs := target.app.Load().procs; procs != nil {
		return procs.serveHTTP(target, w, r, &out)
	}
	if target.ModuleASGI != "" {
		return target.serveASGI(w, r, &out)
	}
	return target.serveWSGI(w, r, &out)
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Python)(nil)
	_ caddy.Validator             = (*Python)(nil)
	_ caddy.CleanerUpper          = (*Python)(nil)
	_ caddyhttp.MiddlewareHandler = (*Python)(nil)
)
