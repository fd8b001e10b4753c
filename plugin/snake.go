package plugin

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// Configs written for caddy-snake run unchanged where Vivarium can honour
// them: its names are aliases of Vivarium's settings; what it cannot honour
// is refused with what to use instead.

// snakeFields are caddy-snake's JSON names, embedded in Python.
type snakeFields struct {
	// VenvPath is caddy-snake's JSON name for venv.
	VenvPath string `json:"venv_path,omitempty"`
	// Workers is caddy-snake's name for interpreters ("0": one per CPU).
	Workers snakeCount `json:"workers,omitzero"`
	// Autoreload "on" is watch with its default globs.
	Autoreload string `json:"autoreload,omitempty"`
	// EnvVars and EnvFiles are caddy-snake's env and env_file (one file).
	EnvVars  map[string]string `json:"env_vars,omitempty"`
	EnvFiles []string          `json:"env_files,omitempty"`
	// Refused with what to use instead.
	PythonPath string `json:"python_path,omitempty"`
	Runtime    string `json:"runtime,omitempty"`
	ModuleESGI string `json:"module_esgi,omitempty"`
}

// snakeCount is a count written as a number or a string, as caddy-snake
// writes it; 0 means one per CPU.
type snakeCount struct {
	set bool
	n   int
}

func (c *snakeCount) UnmarshalJSON(b []byte) error {
	var s string
	if json.Unmarshal(b, &s) != nil {
		s = string(b)
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return fmt.Errorf("workers: want a whole number, got %s", b)
	}
	*c = snakeCount{set: true, n: n}
	return nil
}

// snakeInt is a whole number that JSON may also write as a string, as
// caddy-snake writes max_dynamic_apps.
type snakeInt int

func (n *snakeInt) UnmarshalJSON(b []byte) error {
	var s string
	if json.Unmarshal(b, &s) != nil {
		s = string(b)
	}
	v, err := strconv.Atoi(s)
	if err != nil {
		return fmt.Errorf("want a whole number, got %s", b)
	}
	*n = snakeInt(v)
	return nil
}

func (c snakeCount) MarshalJSON() ([]byte, error) { return json.Marshal(c.n) }

func (c snakeCount) IsZero() bool { return !c.set }

// startTimeoutForever is caddy-snake's start_timeout -1 (or forever).
const startTimeoutForever = 100 * 365 * 24 * time.Hour

// StartTimeout is start_timeout: a duration, or one of caddy-snake's words
// for no bound, the same in a Caddyfile, in JSON and on the command line.
// JSON also takes a number of nanoseconds, as for Caddy's durations.
type StartTimeout caddy.Duration

// parseStartTimeout reads a start_timeout value: "-1", "forever", "none",
// "inf" or "indefinite" (caddy-snake's) wait without a bound, here one no
// import reaches; anything else is a positive duration.
func parseStartTimeout(s string) (StartTimeout, error) {
	switch strings.ToLower(s) {
	case "-1", "forever", "none", "inf", "indefinite":
		return StartTimeout(startTimeoutForever), nil
	}
	d, err := caddy.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("start_timeout wants a positive duration like 30s or 2m, or -1 (or forever) for no bound, got %q", s)
	}
	return StartTimeout(d), nil
}

func (t *StartTimeout) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		v, err := parseStartTimeout(s)
		if err != nil {
			return err
		}
		*t = v
		return nil
	}
	var n int64
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("start_timeout wants a duration string like \"30s\" or \"-1\", or nanoseconds, got %s", b)
	}
	if n == -1 {
		n = int64(startTimeoutForever)
	}
	*t = StartTimeout(n)
	return nil
}

// Refusals, shared by the Caddyfile, JSON and python-server.
const (
	refusePythonPath = "python_path: Vivarium embeds its Python in the caddy binary (the one `caddy version` was built with); " +
		"give the app's packages with venv, a virtualenv made with that Python"
	refuseESGI = "module_esgi: Vivarium serves WSGI (module_wsgi) and ASGI (module_asgi) apps, not ESGI"
	refuseDock = "isolation docker: Vivarium runs no containers; use isolation process for an app in processes of its own " +
		"(with user and group to run it as another user), or leave isolation auto, the default"
	refuseCache = "cache: the interpreters of an app share no memory in Vivarium either; keep shared state in a store " +
		"such as Redis or SQLite"
	refuseBody = "request_body inside python: use Caddy's own request_body directive (request_body { max_size 10MB }) " +
		"in the site, before python"
)

// refuseRuntime names what a runtime value means in Vivarium: WSGI runs on
// threads ("sync") and ASGI on asyncio ("native"); other runtimes are refused.
func refuseRuntime(runtime string, asgi bool) error {
	switch {
	case runtime == "":
		return nil
	case !asgi && runtime == "sync", asgi && runtime == "native":
		return nil
	case runtime == "uvloop":
		return fmt.Errorf("runtime uvloop: Vivarium's ASGI apps run on asyncio's own loop (uvloop does not load in " +
			"subinterpreters); drop the runtime line, or write runtime native")
	case runtime == "gevent":
		return fmt.Errorf("runtime gevent: Vivarium runs WSGI requests on threads of its own; drop the runtime line " +
			"and raise threads for an app that waits on I/O")
	}
	want := "sync (WSGI)"
	if asgi {
		want = "native (ASGI)"
	}
	return fmt.Errorf("runtime %q: Vivarium has one runtime per kind of app: %s; drop the runtime line", runtime, want)
}

// applySnakeFields folds caddy-snake's JSON names into Vivarium's.
func (p *Python) applySnakeFields() error {
	s := &p.snakeFields
	if s.PythonPath != "" {
		return fmt.Errorf("python: %s", refusePythonPath)
	}
	if s.ModuleESGI != "" {
		return fmt.Errorf("python: %s", refuseESGI)
	}
	if err := refuseRuntime(s.Runtime, p.ModuleASGI != ""); err != nil {
		return fmt.Errorf("python: %v", err)
	}
	if s.VenvPath != "" {
		if p.Venv != "" && p.Venv != s.VenvPath {
			return fmt.Errorf("python: venv %q and venv_path %q disagree; give one", p.Venv, s.VenvPath)
		}
		p.Venv = s.VenvPath
	}
	if s.Workers.set && p.Interpreters == 0 {
		p.Interpreters = Count(s.Workers.n)
		if s.Workers.n == 0 {
			p.Interpreters = CountAuto
		}
	}
	for k, v := range s.EnvVars {
		if p.Env == nil {
			p.Env = map[string]string{}
		}
		if _, set := p.Env[k]; !set {
			p.Env[k] = v
		}
	}
	switch {
	case len(s.EnvFiles) > 1:
		return fmt.Errorf("python: env_files %v: Vivarium reads one env_file per app; merge them into one", s.EnvFiles)
	case len(s.EnvFiles) == 1 && p.EnvFile != "" && p.EnvFile != s.EnvFiles[0]:
		return fmt.Errorf("python: env_file %q and env_files %v disagree; give one", p.EnvFile, s.EnvFiles)
	case len(s.EnvFiles) == 1:
		p.EnvFile = s.EnvFiles[0]
	}
	switch s.Autoreload {
	case "", "off":
	case "on":
		if len(p.Watch) == 0 {
			p.Watch = defaultWatchGlobs
		}
	default:
		return fmt.Errorf("python: autoreload must be on or off, not %q", s.Autoreload)
	}
	*s = snakeFields{}
	return nil
}

// unmarshalSnake reads caddy-snake's Caddyfile subdirectives that are not
// Vivarium's own; ok is false for any other.
func (p *Python) unmarshalSnake(d *caddyfile.Dispenser, sub string) (ok bool, err error) {
	switch sub {
	case "workers":
		var arg string
		if !d.AllArgs(&arg) {
			return true, d.Err("workers takes exactly one value")
		}
		if arg == "0" {
			arg = "auto"
		}
		if err := p.Interpreters.parse(arg); err != nil {
			return true, d.Errf("workers (caddy-snake's name for interpreters): %v", err)
		}
		return true, nil
	case "env_var":
		// caddy-snake's name for env: env_var NAME value.
		return p.unmarshalControl(d, "env")
	case "python_path":
		return true, d.Err(refusePythonPath)
	case "module_esgi":
		return true, d.Err(refuseESGI)
	case "cache":
		return true, d.Err(refuseCache)
	case "request_body":
		return true, d.Err(refuseBody)
	case "runtime":
		var arg string
		if !d.AllArgs(&arg) {
			return true, d.Err("runtime takes exactly one value")
		}
		if arg != "sync" && arg != "native" {
			return true, d.Err(refuseRuntime(arg, p.ModuleASGI != "").Error())
		}
		// Which of the two fits is known once the block is read.
		p.Runtime = arg
		return true, nil
	case "isolation":
		if d.CountRemainingArgs() == 1 {
			d.NextArg()
			switch d.Val() {
			case "docker":
				return true, d.Err(refuseDock)
			case "none":
				// caddy-snake's workers without a container: Vivarium's default.
				p.Isolation = ""
				return true, nil
			}
			d.Prev()
		}
	}
	return false, nil
}
