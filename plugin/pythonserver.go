package plugin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/fileserver"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/requestbody"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/rewrite"
	"github.com/caddyserver/certmagic"
	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.uber.org/zap"
)

// `caddy python-server` serves one app without a Caddyfile, as Caddy's
// file-server and FrankenPHP's php-server do for theirs. Each flag means
// what the `python` directive of the same name means; caddy-snake's flag
// names are accepted too.

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name: "python-server",
		Usage: "--app <module:attr> [--wsgi|--asgi] [--venv <path>] [--working-dir <path>] [--listen <addr>] " +
			"[--domain <name>] [--interpreters <n>|auto] [--threads <n>] [--isolation interpreter|shared|main] " +
			"[--lifespan on|off] [--env <name>=<value>] [--env-file <path>] [--start-timeout <duration>] " +
			"[--static <route>=<dir>] [--watch[=<glob>]] [--access-log] [--debug]",
		Short: "Serves one Python WSGI or ASGI app without a Caddyfile",
		Long: `
Serves the app --app names (package.module:attribute) on --listen
(default 127.0.0.1:8080), or with --domain on that name over HTTPS with
automatic certificates (:443, and :80 redirecting to it, unless --listen is
given). WSGI or ASGI is found by importing the app once in a child process (as
python-check does), in the isolation it will run in; --wsgi or --asgi says
it instead.

The other flags mean what the python directive's settings of the same name
mean: --venv (default $VIRTUAL_ENV), --working-dir (default .),
--interpreters, --threads, --isolation, --lifespan, --env NAME=VALUE
(repeatable), --env-file, --start-timeout; --watch restarts the app
when a *.py file under the working directory changes (--watch=<glob>, which
may be repeated, names the files instead). --static /assets=./public serves
a directory at a path (repeatable). --access-log logs every request.

caddy-snake's flag names work too: --server-type wsgi|asgi, --workers,
--autoreload, --static-path with --static-route, --access-logs, --env-var,
--start-timeout=-1,
--request-body-max-size, --max-dynamic-apps (with placeholders in --app,
--working-dir or --venv, which need --wsgi or --asgi). Its --python-path, --runtime gevent|uvloop,
--isolation docker and --cache-* are refused with what to use instead.`,
		CobraFunc: func(cmd *cobra.Command) {
			f := cmd.Flags()
			f.StringP("app", "a", "", "the app, as package.module:attribute")
			f.Bool("wsgi", false, "serve it as a WSGI app, without detecting")
			f.Bool("asgi", false, "serve it as an ASGI app, without detecting")
			f.String("venv", "", "the app's virtualenv (default $VIRTUAL_ENV)")
			f.String("working-dir", ".", "the app's import root")
			f.StringP("listen", "l", "", "the address to listen on (default 127.0.0.1:8080; with --domain :443)")
			f.StringP("domain", "d", "", "serve this host name over HTTPS with automatic certificates")
			f.String("interpreters", "", "interpreters for the app: a number or auto (default 1)")
			f.Int("threads", 0, "worker threads per interpreter (default 4)")
			f.String("isolation", "", "interpreter (default), shared or main")
			f.String("lifespan", "", "ASGI lifespan protocol: on or off (default off)")
			f.StringArray("static", nil, "serve a directory at a path: <route>=<dir> (repeatable)")
			f.StringArray("watch", nil, "restart the app when files under the working directory change; =<glob> names them (repeatable)")
			f.Lookup("watch").NoOptDefVal = defaultWatchGlobs[0]
			f.StringArray("env", nil, "an environment variable of the app: <name>=<value> (repeatable)")
			f.String("env-file", "", "a dotenv file of more, relative to --working-dir")
			f.String("start-timeout", "", "how long the app's import and lifespan startup may take (default 120s)")
			f.Bool("access-log", false, "log every request")
			f.Bool("debug", false, "log at debug level")

			// caddy-snake's names.
			f.StringP("server-type", "t", "", "caddy-snake's name: wsgi or asgi")
			f.StringP("workers", "w", "", "caddy-snake's name for --interpreters (0: one per CPU)")
			f.Bool("autoreload", false, "caddy-snake's name for --watch")
			f.String("static-path", "", "caddy-snake's name: a directory to serve at --static-route")
			f.String("static-route", "/static", "caddy-snake's name: where --static-path is served")
			f.Bool("access-logs", false, "caddy-snake's name for --access-log")
			f.StringArray("env-var", nil, "caddy-snake's name for --env")
			f.String("request-body-max-size", "", "caddy-snake's name: the largest request body, such as 10MB")
			f.String("max-dynamic-apps", "", "with placeholders in --app, --working-dir or --venv: apps at once (default 32)")
			for _, name := range []string{"python-path", "runtime", "isolation-image",
				"isolation-network", "isolation-docker-host", "isolation-memory", "isolation-cpus",
				"cache-mode", "cache-listen", "cache-advertise", "cache-namespace", "cache-secret"} {
				f.String(name, "", "caddy-snake's; see --help")
				_ = f.MarkHidden(name)
			}
			f.StringArray("cache-peer", nil, "")
			f.Bool("isolation-read-only", false, "")
			_ = f.MarkHidden("cache-peer")
			_ = f.MarkHidden("isolation-read-only")
			cmd.RunE = caddycmd.WrapCommandFuncForCobra(cmdPythonServer)
		},
	})
}

// serverOptions is what the flags ask for, checked.
type serverOptions struct {
	handler   Python
	kind      string // "wsgi", "asgi", or "" to detect
	listen    string
	domain    string
	static    [][2]string // route, dir
	accessLog bool
	debug     bool
	bodyMax   int64
	runtime   string // caddy-snake's --runtime
}

func cmdPythonServer(fl caddycmd.Flags) (int, error) {
	opts, err := parseServerFlags(fl.FlagSet)
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	caddy.TrapSignals()
	if opts.kind == "" && opts.handler.isDynamic() {
		return caddy.ExitCodeFailedStartup, errors.New("with placeholders, which app to import is known per request: give --wsgi or --asgi")
	}
	if opts.kind == "" {
		if opts.kind, err = detectInterface(&opts.handler); err != nil {
			return caddy.ExitCodeFailedStartup, err
		}
	}
	if err := refuseRuntime(opts.runtime, opts.kind == "asgi"); err != nil {
		return caddy.ExitCodeFailedStartup, fmt.Errorf("--%v", err)
	}
	if opts.kind == "asgi" {
		opts.handler.ModuleASGI, opts.handler.ModuleWSGI = opts.handler.ModuleWSGI, ""
	} else if opts.handler.Lifespan == "on" {
		return caddy.ExitCodeFailedStartup, errors.New("--lifespan on applies to ASGI apps; this one is WSGI")
	}
	cfg, err := opts.config()
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	if err := caddy.Run(cfg); err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	where := "http://" + opts.listen
	if opts.domain != "" {
		where = "https://" + opts.domain
	}
	log.Printf("serving %s app %s on %s", strings.ToUpper(opts.kind), opts.handler.module(), where)
	select {}
}

func parseServerFlags(f *pflag.FlagSet) (*serverOptions, error) {
	str := func(name string) string { v, _ := f.GetString(name); return v }
	flag := func(name string) bool { v, _ := f.GetBool(name); return v }
	arr := func(name string) []string { v, _ := f.GetStringArray(name); return v }

	for name, why := range map[string]string{
		"python-path":     refusePythonPath,
		"isolation-image": refuseDock, "isolation-network": refuseDock, "isolation-docker-host": refuseDock,
		"isolation-memory": refuseDock, "isolation-cpus": refuseDock, "isolation-read-only": refuseDock,
		"cache-mode": refuseCache, "cache-listen": refuseCache, "cache-advertise": refuseCache,
		"cache-namespace": refuseCache, "cache-secret": refuseCache, "cache-peer": refuseCache,
	} {
		if f.Changed(name) {
			return nil, fmt.Errorf("--%s", why)
		}
	}

	o := &serverOptions{listen: str("listen"), domain: str("domain")}
	h := &o.handler
	h.ModuleWSGI = str("app") // moved to ModuleASGI once the kind is known
	if h.ModuleWSGI == "" {
		return nil, errors.New(`give the app with --app, like: caddy python-server --app main:app`)
	}
	if strings.ContainsAny(h.ModuleWSGI, "/\\") && !strings.Contains(h.ModuleWSGI, ":") {
		return nil, fmt.Errorf("--app wants a module name like main:app, not a path; put the directory in --working-dir")
	}

	switch t := str("server-type"); {
	case flag("wsgi") && flag("asgi"):
		return nil, errors.New("give one of --wsgi and --asgi")
	case flag("wsgi") || t == "wsgi":
		o.kind = "wsgi"
	case flag("asgi") || t == "asgi":
		o.kind = "asgi"
	case t == "esgi":
		return nil, fmt.Errorf("--server-type esgi: %s", refuseESGI)
	case t != "":
		return nil, fmt.Errorf("--server-type must be wsgi or asgi, not %q", t)
	}
	// Which of sync and native fits is known once the kind is.
	switch o.runtime = str("runtime"); o.runtime {
	case "", "sync", "native":
	default:
		return nil, fmt.Errorf("--%v", refuseRuntime(o.runtime, o.kind == "asgi"))
	}

	h.Venv = str("venv")
	if h.Venv == "" {
		h.Venv = os.Getenv("VIRTUAL_ENV")
	}
	h.WorkingDir = str("working-dir")

	interpreters := str("interpreters")
	if w := str("workers"); w != "" {
		if interpreters != "" {
			return nil, errors.New("give one of --interpreters and --workers (caddy-snake's name for it)")
		}
		interpreters = w
		if w == "0" {
			interpreters = "auto"
		}
	}
	if interpreters != "" {
		if err := h.Interpreters.parse(interpreters); err != nil {
			return nil, fmt.Errorf("--interpreters: %v", err)
		}
	}
	h.Threads, _ = f.GetInt("threads")
	if f.Changed("threads") && h.Threads < 1 {
		return nil, errors.New("--threads must be at least 1")
	}
	switch iso := str("isolation"); iso {
	case "", "none":
	case "docker":
		return nil, fmt.Errorf("--%s", refuseDock)
	default:
		if _, ok := isolationCodes[iso]; !ok {
			return nil, fmt.Errorf("--isolation must be interpreter, shared or main, not %q", iso)
		}
		h.Isolation = iso
	}
	if l := str("lifespan"); l != "" {
		if l != "on" && l != "off" {
			return nil, fmt.Errorf("--lifespan must be on or off, not %q", l)
		}
		if l == "on" && o.kind == "wsgi" {
			return nil, errors.New("--lifespan on applies to ASGI apps")
		}
		h.Lifespan = l
	}

	for _, kv := range append(arr("env"), arr("env-var")...) {
		name, value, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, fmt.Errorf("--env %q: want <name>=<value>", kv)
		}
		if err := checkEnvVar(name, value); err != nil {
			return nil, fmt.Errorf("--env: %v", err)
		}
		if h.Env == nil {
			h.Env = map[string]string{}
		}
		h.Env[name] = value
	}
	h.EnvFile = str("env-file")
	if t := str("start-timeout"); t != "" {
		v, err := parseStartTimeout(t)
		if err != nil {
			return nil, fmt.Errorf("--start-timeout: %v", err)
		}
		h.StartTimeout = v
	}

	h.Watch = arr("watch")
	if flag("autoreload") && len(h.Watch) == 0 {
		h.Watch = defaultWatchGlobs
	}
	o.accessLog = flag("access-log") || flag("access-logs")
	o.debug = flag("debug")

	statics := arr("static")
	if dir := str("static-path"); dir != "" {
		statics = append(statics, str("static-route")+"="+dir)
	}
	for _, s := range statics {
		route, dir, ok := strings.Cut(s, "=")
		route = "/" + strings.Trim(route, "/")
		if !ok || dir == "" || route == "/" {
			return nil, fmt.Errorf("--static %q: want <route>=<dir>, like /assets=./public (a route other than /)", s)
		}
		abs, err := filepath.Abs(dir)
		if err != nil {
			return nil, err
		}
		if !isDir(abs) {
			return nil, fmt.Errorf("--static %s: %s is not a directory", s, abs)
		}
		o.static = append(o.static, [2]string{route, abs})
	}
	if n := str("max-dynamic-apps"); n != "" {
		max, err := positive(n)
		if err != nil {
			return nil, fmt.Errorf("--max-dynamic-apps: %v", err)
		}
		h.MaxDynamicApps = snakeInt(max)
	}
	if size := str("request-body-max-size"); size != "" {
		n, err := parseSize(size)
		if err != nil {
			return nil, fmt.Errorf("--request-body-max-size: %v", err)
		}
		o.bodyMax = n
	}
	if o.listen == "" {
		o.listen = "127.0.0.1:8080"
		if o.domain != "" {
			o.listen = ":" + strconv.Itoa(certmagic.HTTPSPort)
		}
	}
	return o, nil
}

// parseSize reads a size such as 10MB or 512KiB, as Caddy's request_body does.
func parseSize(s string) (int64, error) {
	n, err := humanize.ParseBytes(s)
	if err != nil || n == 0 || n > 1<<62 {
		return 0, fmt.Errorf("want a size such as 10MB, got %q", s)
	}
	return int64(n), nil
}

func isDir(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}

// config is the Caddy config the options describe.
func (o *serverOptions) config() (*caddy.Config, error) {
	var routes caddyhttp.RouteList
	if o.bodyMax > 0 {
		routes = append(routes, caddyhttp.Route{HandlersRaw: []json.RawMessage{
			caddyconfig.JSONModuleObject(requestbody.RequestBody{MaxSize: o.bodyMax}, "handler", "request_body", nil),
		}})
	}
	for _, s := range o.static {
		routes = append(routes, caddyhttp.Route{
			MatcherSetsRaw: []caddy.ModuleMap{{"path": caddyconfig.JSON(caddyhttp.MatchPath{s[0] + "/*"}, nil)}},
			HandlersRaw: []json.RawMessage{
				caddyconfig.JSONModuleObject(rewrite.Rewrite{StripPathPrefix: s[0]}, "handler", "rewrite", nil),
				caddyconfig.JSONModuleObject(fileserver.FileServer{Root: s[1]}, "handler", "file_server", nil),
			},
			Terminal: true,
		})
	}
	routes = append(routes, caddyhttp.Route{
		HandlersRaw: []json.RawMessage{caddyconfig.JSONModuleObject(o.handler, "handler", "python", nil)},
	})
	if o.domain != "" {
		host := caddy.ModuleMap{"host": caddyconfig.JSON(caddyhttp.MatchHost{o.domain}, nil)}
		routes = caddyhttp.RouteList{{
			MatcherSetsRaw: []caddy.ModuleMap{host},
			HandlersRaw: []json.RawMessage{caddyconfig.JSONModuleObject(caddyhttp.Subroute{Routes: routes},
				"handler", "subroute", nil)},
			Terminal: true,
		}}
	}
	server := &caddyhttp.Server{
		Listen:            []string{o.listen},
		Routes:            routes,
		ReadHeaderTimeout: caddy.Duration(10 * time.Second),
		IdleTimeout:       caddy.Duration(2 * time.Minute),
	}
	if o.domain != "" && o.listen != ":"+strconv.Itoa(certmagic.HTTPSPort) {
		// Asked for one address: no redirect server on :80 beside it.
		server.AutoHTTPS = &caddyhttp.AutoHTTPSConfig{DisableRedir: true}
	}
	if o.accessLog {
		server.Logs = &caddyhttp.ServerLogConfig{}
	}
	apps := caddy.ModuleMap{
		"http": caddyconfig.JSON(caddyhttp.App{Servers: map[string]*caddyhttp.Server{"python": server}}, nil),
	}
	if o.domain != "" {
		// A certificate for a local name comes from Caddy's own CA; putting
		// that CA in the system's trust store is `caddy trust`'s to do.
		no := false
		apps["pki"] = caddyconfig.JSON(map[string]any{
			"certificate_authorities": map[string]any{"local": map[string]any{"install_trust": &no}},
		}, nil)
	}
	persist := false
	cfg := &caddy.Config{
		Admin:   &caddy.AdminConfig{Disabled: true, Config: &caddy.ConfigSettings{Persist: &persist}},
		AppsRaw: apps,
	}
	if o.debug {
		cfg.Logging = &caddy.Logging{Logs: map[string]*caddy.CustomLog{
			"default": {BaseLog: caddy.BaseLog{Level: zap.DebugLevel.CapitalString()}},
		}}
	}
	return cfg, nil
}

// detectInterface imports the app in a child process of this binary (as
// python-check does), in the isolation it will run in, and tells whether it
// is WSGI or ASGI. A child, because an import leaves modules behind: in the
// main interpreter they would be the served app's, and a PyO3 module loads
// in one interpreter per process. Without an attribute, `app` is tried, then
// `application` (Django's WSGI name).
func detectInterface(h *Python) (string, error) {
	workingDir, err := filepath.Abs(h.WorkingDir)
	if err != nil {
		return "", err
	}
	venv := h.Venv
	if venv != "" {
		if venv, err = filepath.Abs(venv); err != nil {
			return "", err
		}
	}
	isolation := h.Isolation
	if isolation == "" {
		isolation = isolationInterpreter
	}
	env, err := appEnv(h.Env, h.EnvFile, workingDir)
	if err != nil {
		return "", err
	}
	cfg := appConfig{module: h.ModuleWSGI, workingDir: workingDir, venv: venv, controls: controls{env: env}}
	attrs := []string{"app"}
	if !strings.Contains(cfg.module, ":") {
		attrs = append(attrs, "application")
	}
	var last checkReport
	var attr string
	for _, attr = range attrs {
		reports, err := checkStarts(context.Background(), cfg, attr, isolation, 1)
		if err != nil {
			return "", fmt.Errorf("finding out whether %s is WSGI or ASGI failed (%v); give --wsgi or --asgi", h.ModuleWSGI, err)
		}
		if last = reports[0]; last.OK {
			if !strings.Contains(h.ModuleWSGI, ":") {
				h.ModuleWSGI += ":" + attr
			}
			return last.Interface, nil
		}
		if !strings.Contains(last.Error, "has no attribute") {
			break
		}
	}
	if last.Refused != "" || last.Crash != nil {
		// An extension module refused this isolation: say which one works.
		if v, err := checkIsolation(context.Background(), cfg, attr); err == nil && v.Strongest != "" && v.Strongest != isolation {
			return "", fmt.Errorf("app %s: %s; it starts with --isolation %s (checked in a separate process)",
				h.ModuleWSGI, last.Error, v.Strongest)
		}
	}
	return "", fmt.Errorf("app %s: %s", h.ModuleWSGI, last.Error)
}
