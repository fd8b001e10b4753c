package plugin

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
)

func parse(t *testing.T, input string) (*Python, error) {
	t.Helper()
	p := &Python{}
	err := p.UnmarshalCaddyfile(caddyfile.NewTestDispenser(input))
	return p, err
}

func TestCaddyfileReadsEveryDirective(t *testing.T) {
	p, err := parse(t, `python {
		module_wsgi "main:app"
		venv ./venv
		working_dir ./api
		interpreters 3
		threads 8
		max_queue 50
		script_name /api
		isolation shared
		lifespan off
	}`)
	if err != nil {
		t.Fatal(err)
	}
	want := Python{ModuleWSGI: "main:app", Venv: "./venv", WorkingDir: "./api",
		Interpreters: 3, Threads: 8, MaxQueue: 50, ScriptName: "/api"}
	if p.ModuleWSGI != want.ModuleWSGI || p.Venv != want.Venv || p.WorkingDir != want.WorkingDir ||
		p.Interpreters != want.Interpreters || p.Threads != want.Threads || p.MaxQueue != want.MaxQueue ||
		p.ScriptName != want.ScriptName || p.Isolation != "shared" || p.Lifespan != "off" {
		t.Fatalf("got %+v, want %+v", *p, want)
	}
}

func TestCaddyfileInterpretersAuto(t *testing.T) {
	p, err := parse(t, "python {\n module_wsgi main:app\n interpreters auto\n}")
	if err != nil {
		t.Fatal(err)
	}
	if p.Interpreters != CountAuto {
		t.Fatalf("interpreters = %d, want auto", p.Interpreters)
	}
}

func TestCaddyfileErrorsNameTheLine(t *testing.T) {
	cases := map[string]struct{ input, wantMsg string }{
		"unknown directive":    {"python {\n module_wsgi main:app\n processes 4\n}", `unknown python subdirective "processes"`},
		"zero interpreters":    {"python {\n module_wsgi main:app\n interpreters 0\n}", "interpreters"},
		"threads not a number": {"python {\n module_wsgi main:app\n threads abc\n}", "threads"},
		"negative queue":       {"python {\n module_wsgi main:app\n max_queue -1\n}", "max_queue"},
		"missing module":       {"python {\n venv ./v\n}", "module_wsgi or module_asgi"},
		"two values":           {"python {\n module_wsgi a:b c:d\n}", "exactly one value"},
		"path as module":       {"python {\n module_wsgi ./app/main.py\n}", "working_dir"},
		"bad script_name":      {"python {\n module_wsgi main:app\n script_name api/\n}", "script_name"},
		"unknown isolation":    {"python {\n module_wsgi main:app\n isolation container\n}", "isolation must be"},
		"bad lifespan":         {"python {\n module_asgi main:app\n lifespan auto\n}", "lifespan must be"},
		"lifespan for wsgi":    {"python {\n module_wsgi main:app\n lifespan on\n}", "ASGI"},
		"two apps in a block":  {"python {\n module_wsgi a:b\n module_asgi c:d\n}", "one app per block"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := parse(t, c.input)
			if err == nil {
				t.Fatalf("accepted %q", c.input)
			}
			if !strings.Contains(err.Error(), c.wantMsg) || !strings.Contains(err.Error(), "Testfile:") {
				t.Fatalf("error %q should name %q and the line", err, c.wantMsg)
			}
		})
	}
}

func TestPathMatcherLeavesScriptNameUnset(t *testing.T) {
	adapter := caddyfile.Adapter{ServerType: httpcaddyfile.ServerType{}}
	out, _, err := adapter.Adapt([]byte(`http://localhost {
		python /api/* {
			module_wsgi main:app
		}
	}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), `script_name`) || !strings.Contains(string(out), `"handler":"python"`) {
		t.Fatalf("a matcher must not set script_name; adapted config:\n%s", out)
	}
}

func TestJSONInterpretersAcceptsNumberOrAuto(t *testing.T) {
	var p Python
	if err := json.Unmarshal([]byte(`{"module_wsgi":"m:a","interpreters":"auto"}`), &p); err != nil || p.Interpreters != CountAuto {
		t.Fatalf("auto: %v %d", err, p.Interpreters)
	}
	if err := json.Unmarshal([]byte(`{"interpreters":2}`), &p); err != nil || p.Interpreters != 2 {
		t.Fatalf("2: %v %d", err, p.Interpreters)
	}
	if err := json.Unmarshal([]byte(`{"interpreters":"many"}`), &p); err == nil {
		t.Fatal("accepted interpreters \"many\"")
	}
	b, _ := json.Marshal(Python{ModuleWSGI: "m:a", Interpreters: CountAuto})
	if !strings.Contains(string(b), `"interpreters":"auto"`) {
		t.Fatalf("marshal: %s", b)
	}
}
