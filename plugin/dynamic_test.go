package plugin

import (
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
)

func TestTemplateValuesStayInTheirBaseDirectory(t *testing.T) {
	tmpl := newTemplate("/srv/tenants/{tenant}/app", valuePath)
	if tmpl.base != "/srv/tenants" {
		t.Fatalf("base %q", tmpl.base)
	}
	for value, want := range map[string]string{"alice": "/srv/tenants/alice/app", "a.b-c_d": "/srv/tenants/a.b-c_d/app"} {
		repl := caddy.NewReplacer()
		repl.Set("tenant", value)
		got, err := tmpl.expand(repl)
		if err != nil || got != want {
			t.Errorf("%q: got %q, %v; want %q", value, got, err, want)
		}
	}
	for _, value := range []string{"", ".", "..", "../etc", "a/b", `a\b`, "a\x00b"} {
		repl := caddy.NewReplacer()
		repl.Set("tenant", value)
		if got, err := tmpl.expand(repl); err == nil {
			t.Errorf("%q accepted as %q", value, got)
		}
	}
	if _, err := tmpl.expand(caddy.NewReplacer()); err == nil || !strings.Contains(err.Error(), "unknown placeholder") {
		t.Errorf("an unknown placeholder: %v", err)
	}
}

func TestModuleValuesKeepTheSpecsShape(t *testing.T) {
	tmpl := newTemplate("{tenant}:app", valueModule)
	for value, ok := range map[string]bool{"alice": true, "pkg.alice": true, "a:b": false, "a b": false, "a/b": false} {
		repl := caddy.NewReplacer()
		repl.Set("tenant", value)
		if _, err := tmpl.expand(repl); (err == nil) != ok {
			t.Errorf("%q: err %v, want ok=%v", value, err, ok)
		}
	}
}

func TestHasPlaceholder(t *testing.T) {
	for s, want := range map[string]bool{"/srv/{host}": true, "main:app": false, "{}": false, "a{b": false, "{a}": true} {
		if hasPlaceholder(s) != want {
			t.Errorf("hasPlaceholder(%q) != %v", s, want)
		}
	}
}

func TestCaddyfileDynamicSettings(t *testing.T) {
	p, err := parse(t, "python {\n module_wsgi main:app\n max_dynamic_apps 5\n dynamic_idle_timeout 90s\n}")
	if err != nil || p.MaxDynamicApps != 5 || p.DynamicIdleTimeout != caddy.Duration(90e9) {
		t.Fatalf("%v %d %v", err, p.MaxDynamicApps, p.DynamicIdleTimeout)
	}
	for _, bad := range []string{"max_dynamic_apps 0", "max_dynamic_apps x", "dynamic_idle_timeout -1s", "dynamic_idle_timeout soon"} {
		if _, err := parse(t, "python {\n module_wsgi main:app\n "+bad+"\n}"); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}
