package plugin

import (
	"encoding/json"
	"strings"
	"testing"
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
}

func TestCaddySnakeJSONNames(t *testing.T) {
	var p Python
	if err := json.Unmarshal([]byte(`{"module_wsgi":"m:a","venv_path":"./v","workers":"2","autoreload":"on"}`), &p); err != nil {
		t.Fatal(err)
	}
	if err := p.applySnakeFields(); err != nil {
		t.Fatal(err)
	}
	if p.Venv != "./v" || p.Interpreters != 2 || len(p.Watch) == 0 {
		t.Fatalf("venv %q interpreters %d watch %v", p.Venv, p.Interpreters, p.Watch)
	}
	b, _ := json.Marshal(Python{ModuleWSGI: "m:a"})
	if strings.Contains(string(b), "workers") {
		t.Fatalf("an unset workers must not be written: %s", b)
	}
	for _, bad := range []string{`{"module_wsgi":"m:a","python_path":"/usr/bin/python3"}`, `{"module_esgi":"m:a"}`,
		`{"module_asgi":"m:a","runtime":"uvloop"}`, `{"module_wsgi":"m:a","venv":"a","venv_path":"b"}`} {
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
		"isolation docker": {"python {\n module_wsgi main:app\n isolation docker {\n image python:3.14\n }\n}", "isolation interpreter"},
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
