package plugin

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
)

func init() {
	httpcaddyfile.RegisterDirective("python", parsePythonDirective)
	// Like reverse_proxy and php_fastcgi, python ends the chain with a response.
	httpcaddyfile.RegisterDirectiveOrder("python", httpcaddyfile.After, "reverse_proxy")
}

// parsePythonDirective is RegisterHandlerDirective's work plus one thing: a
// `/prefix/*` path matcher becomes the app's SCRIPT_NAME, as a WSGI app
// mounted under a prefix expects.
func parsePythonDirective(h httpcaddyfile.Helper) ([]httpcaddyfile.ConfigValue, error) {
	if !h.Next() {
		return nil, h.ArgErr()
	}
	prefix, matcher := "", ""
	if h.NextArg() {
		matcher = h.Val()
		if tok := h.Val(); strings.HasPrefix(tok, "/") && strings.HasSuffix(tok, "/*") {
			prefix = strings.TrimSuffix(tok, "/*")
		}
	}
	h.Reset()
	h.Next()
	matcherSet, err := h.ExtractMatcherSet()
	if err != nil {
		return nil, err
	}
	p := &Python{ScriptName: prefix}
	if err := p.UnmarshalCaddyfile(h.Dispenser); err != nil {
		return nil, err
	}
	if p.Name == "" {
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
//	}
func (p *Python) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.Errf("python takes no arguments besides a matcher; configure the app in its block")
	}
	for d.NextBlock(0) {
		sub := d.Val()
		var arg string
		if !d.AllArgs(&arg) {
			return d.Errf("%s takes exactly one value", sub)
		}
		switch sub {
		case "module_wsgi":
			if !strings.Contains(arg, ":") && strings.ContainsAny(arg, "/\\") {
				return d.Errf(`module_wsgi wants a module name like "main:app", not a path; put the directory in working_dir`)
			}
			p.ModuleWSGI = arg
		case "module_asgi":
			if !strings.Contains(arg, ":") && strings.ContainsAny(arg, "/\\") {
				return d.Errf(`module_asgi wants a module name like "main:app", not a path; put the directory in working_dir`)
			}
			p.ModuleASGI = arg
		case "lifespan":
			if arg != "on" && arg != "off" {
				return d.Errf("lifespan must be on or off, not %q", arg)
			}
			p.Lifespan = arg
		case "websocket_compression":
			if arg != "on" && arg != "off" {
				return d.Errf("websocket_compression must be on or off, not %q", arg)
			}
			p.WebSocketCompression = arg
		case "isolation":
			if !knownIsolation(arg) {
				return d.Errf("isolation must be %s, not %q", isolationNames, arg)
			}
			p.Isolation = arg
		case "user":
			p.User = arg
		case "group":
			p.Group = arg
		case "venv":
			p.Venv = arg
		case "working_dir":
			p.WorkingDir = arg
		case "script_name":
			if arg != "" && (!strings.HasPrefix(arg, "/") || strings.HasSuffix(arg, "/")) {
				return d.Errf("script_name must start with / and not end with /, like /api")
			}
			p.ScriptName = arg
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
			return d.Errf("unknown python subdirective %q (known: module_wsgi, module_asgi, lifespan, isolation, user, group, venv, working_dir, interpreters, threads, max_queue, script_name, websocket_compression, name)", sub)
		}
	}
	if p.ModuleWSGI == "" && p.ModuleASGI == "" {
		return d.Err(`python block needs module_wsgi or module_asgi, e.g. module_wsgi "main:app"`)
	}
	if p.ModuleWSGI != "" && p.ModuleASGI != "" {
		return d.Err("python block has both module_wsgi and module_asgi; one app per block")
	}
	if p.Lifespan == "on" && p.ModuleASGI == "" {
		return d.Err("lifespan applies to ASGI apps (module_asgi) only")
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
