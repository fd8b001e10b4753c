package plugin

import (
	"fmt"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/dustin/go-humanize"
)

// The production controls of an app: its own environment, and the bounds on
// its start, its requests, its writes and its interpreters' lives.

const (
	// defaultTimeout bounds a request that neither answers nor makes progress.
	defaultTimeout = 60 * time.Second
	// defaultWriteTimeout bounds a response write to a client that reads nothing.
	defaultWriteTimeout = 30 * time.Second
	// defaultStartTimeout bounds an app's import and lifespan startup; the
	// same as caddy-snake's.
	defaultStartTimeout = 120 * time.Second
)

// controlDirectives are the subdirectives unmarshalControl reads.
const controlDirectives = "env, env_file, timeout, write_timeout, start_timeout, max_requests, max_memory"

// unmarshalControl reads one of the control subdirectives; handled is false
// for any other.
func (p *Python) unmarshalControl(d *caddyfile.Dispenser, sub string) (handled bool, err error) {
	switch sub {
	case "env":
		args := d.RemainingArgs()
		if len(args) != 2 {
			return true, d.Errf("env takes a name and a value: env NAME value")
		}
		if err := checkEnvVar(args[0], args[1]); err != nil {
			return true, d.Errf("env: %v", err)
		}
		if p.Env == nil {
			p.Env = map[string]string{}
		}
		p.Env[args[0]] = args[1]
		return true, nil
	case "env_file", "timeout", "write_timeout", "start_timeout", "max_requests", "max_memory":
	default:
		return false, nil
	}
	var arg string
	if !d.AllArgs(&arg) {
		return true, d.Errf("%s takes exactly one value", sub)
	}
	switch sub {
	case "env_file":
		p.EnvFile = arg
	case "start_timeout":
		t, err := parseStartTimeout(arg)
		if err != nil {
			return true, d.Err(err.Error())
		}
		p.StartTimeout = t
	case "timeout", "write_timeout":
		dur, err := caddy.ParseDuration(arg)
		if err != nil || dur <= 0 {
			return true, d.Errf("%s wants a positive duration like 30s or 2m, got %q", sub, arg)
		}
		if sub == "timeout" {
			p.Timeout = caddy.Duration(dur)
		} else {
			p.WriteTimeout = caddy.Duration(dur)
		}
	case "max_requests":
		n, err := positive(arg)
		if err != nil {
			return true, d.Errf("max_requests: %v", err)
		}
		p.MaxRequests = n
	case "max_memory":
		size, err := humanize.ParseBytes(arg)
		if err != nil || size == 0 {
			return true, d.Errf("max_memory wants a size like 256MiB or 1GB, got %q", arg)
		}
		p.MaxMemory = int64(size)
	}
	return true, nil
}

// provisionControls fills in the controls' defaults and reads the env_file.
func (p *Python) provisionControls() error {
	if p.Timeout == 0 {
		p.Timeout = caddy.Duration(defaultTimeout)
	}
	if p.WriteTimeout == 0 {
		p.WriteTimeout = caddy.Duration(defaultWriteTimeout)
	}
	if p.StartTimeout == 0 {
		p.StartTimeout = StartTimeout(defaultStartTimeout)
	}
	if p.Timeout < 0 || p.WriteTimeout < 0 || p.StartTimeout < 0 {
		return fmt.Errorf("%s: timeout, write_timeout and start_timeout must be positive", p.name())
	}
	if p.MaxRequests < 0 || p.MaxMemory < 0 {
		return fmt.Errorf("%s: max_requests and max_memory must be positive", p.name())
	}
	if p.isDynamic() {
		// Each app of a dynamic block reads its own (dynamic.go).
		for k := range p.Env {
			if err := checkEnvVar(k, ""); err != nil {
				return fmt.Errorf("%s: env: %v", p.name(), err)
			}
		}
		return nil
	}
	env, err := appEnv(p.Env, p.EnvFile, p.WorkingDir)
	if err != nil {
		return fmt.Errorf("%s: %v", p.name(), err)
	}
	p.env = env
	return nil
}

// controls is what an app instance keeps of them.
type controls struct {
	name         string // the app's name, for the death notice
	env          map[string]string
	timeout      time.Duration
	writeTimeout time.Duration
	startTimeout time.Duration
	maxRequests  int
	maxMemory    int64
}

func (p *Python) controls() controls {
	return controls{
		name:         p.Name,
		env:          p.env,
		timeout:      time.Duration(p.Timeout),
		writeTimeout: time.Duration(p.WriteTimeout),
		startTimeout: time.Duration(p.StartTimeout),
		maxRequests:  p.MaxRequests,
		maxMemory:    p.MaxMemory,
	}
}

// withDefaults fills in what a config built in code (tests, benchmarks) left
// out; Provision has filled them in already for a Caddy config.
func (c controls) withDefaults() controls {
	if c.timeout <= 0 {
		c.timeout = defaultTimeout
	}
	if c.writeTimeout <= 0 {
		c.writeTimeout = defaultWriteTimeout
	}
	if c.startTimeout <= 0 {
		c.startTimeout = defaultStartTimeout
	}
	return c
}

// displayName is how the death notice names the app.
func (cfg appConfig) displayName() string {
	if cfg.controls.name != "" {
		return cfg.controls.name
	}
	return cfg.module
}

// adapterOptions is what the Python adapters are told of the app.
func (cfg appConfig) adapterOptions() map[string]any {
	return map[string]any{
		"lifespan": cfg.lifespan,
		"threads":  cfg.threads,
		"env":      cfg.controls.env,
		// The adapter cancels what still runs at this point of a stop, ahead
		// of the stop's grace (stop.go).
		"drain": (cfg.stopGrace() * 4 / 5).Seconds(),
	}
}
