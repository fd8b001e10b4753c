package plugin

import (
	"fmt"
	"strconv"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
)

func init() {
	httpcaddyfile.RegisterDirective("python", parsePythonDirective)
	// Like reverse_proxy and php_fastcgi, python ends the chain with a response.
	httpcaddyfile.RegisterDirectiveOrder("python", httpcaddyfile.After, "reverse_proxy")
}

// parsePythonDirective is RegisterHandlerDirective's work plus a name: a
// block is named after its site and its matcher, or without one after the
// matcher of the handle_path (handle, route) it sits in. The matcher only
// selects requests: the app sees their full path (see paths.go).
func parsePythonDirective(h httpcaddyfile.Helper) ([]httpcaddyfile.ConfigValue, error) {
	if !h.Next() {
		return nil, h.ArgErr()
	}
	file, line := h.File(), h.Line()
	matcher := ""
	if h.NextArg() {
		matcher = h.Val()
	}
	h.Reset()
	h.Next()
	matcherSet, err := h.ExtractMatcherSet()
	if err != nil {
		return nil, err
	}
	p := new(Python)
	if err := p.UnmarshalCaddyfile(h.Dispenser); err != nil {
		return nil, err
	}
	if p.Name == "" {
		if matcher == "" {
			matcher = enclosingMatcher(h, file, line)
		}
		p.Name = defaultName(siteAddress(h), matcher)
	}
	return h.NewRoute(matcherSet, p), nil
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens:
//
//	python [<matcher>] {
//	    module_wsgi  <module:attr>   (or module_asgi <module:attr>)
//	    lifespan     on|off          (ASGI only; default off)
//	    isolation    interpreter|shared|main|process|auto
//	    user         <name|uid>      (isolation process)
//	    group        <name|gid>      (isolation process)
//	    venv         <path>
//	    working_dir  <path>
//	    interpreters <n>|auto
//	    threads      <n>
//	    max_queue    <n>
//	    script_name  <prefix>
//	    websocket_compression on|off (ASGI only; default on)
//	    name         <name>
//	    env          <name> <value>  (repeatable)
//	    env_file     <path>
//	    timeout      <duration>
//	    write_timeout <duration>
//	    start_timeout <duration>|-1    (-1 or forever: no bound)
//	    max_requests <n>
//	    max_memory   <size>
//	    watch        [<glob> ...]    (autoreload: the same, with no globs)
//	    max_dynamic_apps     <n>     (with placeholders in the settings)
//	    dynamic_idle_timeout <duration>
//	}
func (p *Python) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.Errf("python takes no arguments besides a matcher; configure the app in its block")
	}
	for d.NextBlock(0) {
		sub := d.Val()
		switch sub {
		case "watch", "autoreload":
			if err := p.unmarshalWatch(d); err != nil {
				return err
			}
			continue
		case "max_dynamic_apps", "dynamic_idle_timeout":
			if err := p.unmarshalDynamic(d, sub); err != nil {
				return err
			}
			continue
		}
		// caddy-snake's names first: some of them stand for controls' settings.
		if ok, err := p.unmarshalSnake(d, sub); ok {
			if err != nil {
				return err
			}
			continue
		}
		if handled, err := p.unmarshalControl(d, sub); handled {
			if err != nil {
				return err
			}
			continue
		}
		var arg string
		if !d.AllArgs(&arg) {
			return d.Errf("%s takes exactly one value", sub)
		}
		if field, check := p.checkedSetting(sub); field != nil {
			if err := check(arg); err != nil {
				return d.Err(err.Error())
			}
			*field = arg
			continue
		}
		switch sub {
		case "user":
			p.User = arg
		case "group":
			p.Group = arg
		case "venv":
			p.Venv = arg
		case "working_dir":
			p.WorkingDir = arg
		case "interpreters":
			if err := p.Interpreters.parse(arg); err != nil {
				return d.Errf("interpreters: %v", err)
			}
		case "threads":
			n, err := positive(arg)
			if err != nil {
				return d.Errf("threads: %v", err)
			}
			p.Threads = n
		case "name":
			if err := checkName(arg); err != nil {
				return d.Errf("%v", err)
			}
			p.Name = arg
		case "max_queue":
			n, err := positive(arg)
			if err != nil {
				return d.Errf("max_queue: %v", err)
			}
			p.MaxQueue = n
		default:
			return d.Errf("unknown python subdirective %q (known: module_wsgi, module_asgi, lifespan, isolation, user, group, venv, working_dir, interpreters, threads, max_queue, script_name, websocket_compression, name, watch, max_dynamic_apps, dynamic_idle_timeout, %s)", sub, controlDirectives)
		}
	}
	if err := p.checkApp(); err != nil {
		return d.Err(err.Error())
	}
	// applySnakeFields checks it for JSON.
	if err := refuseRuntime(p.Runtime, p.ModuleASGI != ""); err != nil {
		return d.Err(err.Error())
	}
	return nil
}

func positive(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("want a positive whole number, got %q", s)
	}
	return n, nil
}
