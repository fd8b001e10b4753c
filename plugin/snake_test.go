package plugin

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestCaddySnakeDirectivesAreAliases(t *testing.T) {
	p, err := parse(t, `python {
		module_asgi "main:app"
		workers 3
		autoreload
		runtime native
	}`)
	if err != nil {
		t.Fatal(err)
	}
	if p.Interpreters != 3 || len(p.Watch) != 1 || p.Watch[0] != "*.py" {
		t.Fatalf("workers 3, autoreload: got interpreters %d, watch %v", p.Interpreters, p.Watch)
	}
	p, err = parse(t, "python {\n module_wsgi main:app\n workers 0\n}")
	if err != nil || p.Interpreters != CountAuto {
		t.Fatalf("workers 0 (one per CPU): %v, interpreters %d", err, p.Interpreters)
	}
	p, err = parse(t, "python {\n module_wsgi main:app\n isolation none\n}")
	if err != nil || p.Isolation != "" {
		t.Fatalf("isolation none (no container) is the default isolation: %v, %q", err, p.Isolation)
	}
}

func TestCaddySnakeJSONNames(t *testing.T) {
	var p Python
	if err := json.Unmarshal([]byte(`{"module_wsgi":"m:a","venv_path":"./v","workers":"2","autoreload":"on",
		"env_vars":{"A":"b"},"env_files":[".env"],"start_timeout":"30s","max_dynamic_apps":"4"}`), &p); err != nil {
		t.Fatal(err)
	}
	if err := p.applySnakeFields(); err != nil {
		t.Fatal(err)
	}
	if p.Venv != "./v" || p.Interpreters != 2 || len(p.Watch) == 0 || p.Env["A"] != "b" || p.EnvFile != ".env" ||
		p.StartTimeout != StartTimeout(30*time.Second) || p.MaxDynamicApps != 4 {
		t.Fatalf("venv %q interpreters %d watch %v env %v env_file %q start_timeout %v max_dynamic_apps %d",
			p.Venv, p.Interpreters, p.Watch, p.Env, p.EnvFile, p.StartTimeout, p.MaxDynamicApps)
	}
	b, _ := json.Marshal(Python{ModuleWSGI: "m:a"})
	if strings.Contains(string(b), "workers") {
		t.Fatalf("an unset workers must not be written: %s", b)
	}
	for _, bad := range []string{`{"module_wsgi":"m:a","python_path":"/usr/bin/python3"}`, `{"module_esgi":"m:a"}`,
		`{"module_asgi":"m:a","runtime":"uvloop"}`, `{"module_wsgi":"m:a","venv":"a","venv_path":"b"}`,
		`{"module_wsgi":"m:a","env_files":["a","b"]}`} {
		var q Python
		if err := json.Unmarshal([]byte(bad), &q); err != nil {
			t.Fatal(err)
		}
		if err := q.applySnakeFields(); err == nil {
			t.Errorf("accepted %s", bad)
		}
	}
}

func TestWhatVivariumCannotHonourIsRefusedWithWhatToUse(t *testing.T) {
	cases := map[string]struct{ input, want string }{
		"python_path":      {"python {\n module_wsgi main:app\n python_path /usr/bin/python3\n}", "venv"},
		"module_esgi":      {"python {\n module_esgi main:app\n}", "module_wsgi"},
		"isolation docker": {"python {\n module_wsgi main:app\n isolation docker {\n image python:3.14\n }\n}", "isolation process"},
		"runtime gevent":   {"python {\n module_wsgi main:app\n runtime gevent\n}", "threads"},
		"runtime uvloop":   {"python {\n module_asgi main:app\n runtime uvloop\n}", "asyncio"},
		"runtime for kind": {"python {\n module_wsgi main:app\n runtime native\n}", "sync (WSGI)"},
		"cache":            {"python {\n module_wsgi main:app\n cache {\n }\n}", "Redis"},
		"request_body":     {"python {\n module_wsgi main:app\n request_body {\n max_size 1MB\n }\n}", "Caddy's own request_body"},
		"autoreload globs": {"python {\n module_wsgi main:app\n autoreload *.py\n}", "watch"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := parse(t, c.input)
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "Testfile:") {
				t.Fatalf("error %v should say %q and name the line", err, c.want)
			}
		})
	}
}

func TestCaddySnakeEnvAndStartTimeout(t *testing.T) {
	p, err := parse(t, "python {\n module_wsgi main:app\n env_var A \"b c\"\n env_file .env\n start_timeout forever\n}")
	if err != nil {
		t.Fatal(err)
	}
	if p.Env["A"] != "b c" || p.EnvFile != ".env" || p.StartTimeout != StartTimeout(startTimeoutForever) {
		t.Fatalf("env %v env_file %q start_timeout %v", p.Env, p.EnvFile, p.StartTimeout)
	}
	if p, err = parse(t, "python {\n module_wsgi main:app\n start_timeout 45s\n}"); err != nil ||
		p.StartTimeout != StartTimeout(45*time.Second) {
		t.Fatalf("start_timeout 45s: %v %v", err, p.StartTimeout)
	}
}

// A start_timeout value means the same in a Caddyfile and in JSON (where
// caddy-snake writes "-1"), and survives the Caddyfile's adaptation to JSON.
func TestStartTimeoutIsReadAlikeInTheCaddyfileAndInJSON(t *testing.T) {
	forever := StartTimeout(startTimeoutForever)
	for value, want := range map[string]StartTimeout{
		"30s": StartTimeout(30 * time.Second), "2m": StartTimeout(2 * time.Minute),
		"-1": forever, "forever": forever, "none": forever, "inf": forever, "indefinite": forever, "Forever": forever,
	} {
		p, err := parse(t, "python {\n module_wsgi main:app\n start_timeout "+value+"\n}")
		if err != nil || p.StartTimeout != want {
			t.Errorf("Caddyfile start_timeout %s: %v, %v", value, err, time.Duration(p.StartTimeout))
			continue
		}
		var q Python
		if err := json.Unmarshal([]byte(`{"module_wsgi":"m:a","start_timeout":"`+value+`"}`), &q); err != nil ||
			q.StartTimeout != want {
			t.Errorf("JSON start_timeout %q: %v, %v", value, err, time.Duration(q.StartTimeout))
		}
		adapted, _ := json.Marshal(p)
		var r Python
		if err := json.Unmarshal(adapted, &r); err != nil || r.StartTimeout != want {
			t.Errorf("start_timeout %s adapted to %s: %v, %v", value, adapted, err, time.Duration(r.StartTimeout))
		}
	}
	for number, want := range map[string]StartTimeout{"30000000000": StartTimeout(30 * time.Second), "-1": forever} {
		var q Python
		if err := json.Unmarshal([]byte(`{"module_wsgi":"m:a","start_timeout":`+number+`}`), &q); err != nil ||
			q.StartTimeout != want {
			t.Errorf("JSON start_timeout %s: %v, %v", number, err, time.Duration(q.StartTimeout))
		}
	}
	for _, bad := range []string{"0s", "-5s", "soon"} {
		if _, err := parse(t, "python {\n module_wsgi main:app\n start_timeout "+bad+"\n}"); err == nil ||
			!strings.Contains(err.Error(), "start_timeout wants a positive duration") {
			t.Errorf("Caddyfile start_timeout %s: %v", bad, err)
		}
		var q Python
		if err := json.Unmarshal([]byte(`{"module_wsgi":"m:a","start_timeout":"`+bad+`"}`), &q); err == nil ||
			!strings.Contains(err.Error(), "start_timeout wants a positive duration") {
			t.Errorf("JSON start_timeout %q: %v", bad, err)
		}
	}
}
