package plugin

import (
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/caddyhttp/rewrite" // handle_path
)

func adapt(t *testing.T, input string) (string, error) {
	t.Helper()
	adapter := caddyfile.Adapter{ServerType: httpcaddyfile.ServerType{}}
	out, _, err := adapter.Adapt([]byte(input), nil)
	return string(out), err
}

func TestDefaultNameFromSite(t *testing.T) {
	out, err := adapt(t, `http://localhost:8080, example.com {
		python /api/v1/* {
			module_wsgi main:app
		}
		@chat path /chat/*
		python @chat {
			module_asgi chat:app
		}
		python /kept/* {
			module_wsgi kept:app
			name kept
		}
	}`)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"name":"localhost-8080-api-v1"`, `"name":"localhost-8080-chat"`, `"name":"kept"`} {
		if !strings.Contains(out, want) {
			t.Errorf("adapted config lacks %s:\n%s", want, out)
		}
	}
}

func TestDefaultNames(t *testing.T) {
	cases := []struct{ site, matcher, want string }{
		{"http://127.0.0.1:8080", "/flask/*", "127.0.0.1-8080-flask"},
		{":8080", "", "8080"},
		{"https://*.Example.com", "@admin", "example.com-admin"},
		{"localhost", "*", "localhost"},
		{"", "", "app"},
	}
	for _, c := range cases {
		if got := defaultName(c.site, c.matcher); got != c.want {
			t.Errorf("defaultName(%q, %q) = %q, want %q", c.site, c.matcher, got, c.want)
		}
		if err := checkName(defaultName(c.site, c.matcher)); err != nil {
			t.Errorf("derived name refused: %v", err)
		}
	}
	long := defaultName(strings.Repeat("a", 80)+".example.com", "/x/*")
	if err := checkName(long); err != nil {
		t.Errorf("a long site gives a name checkName refuses: %v", err)
	}
}

func TestNamesAreCheckedAndUniquePerConfig(t *testing.T) {
	for _, bad := range []string{"a/b", "", "-x", "has space", strings.Repeat("n", 65), "é"} {
		if checkName(bad) == nil {
			t.Errorf("accepted name %q", bad)
		}
	}
	if _, err := parse(t, "python {\n module_wsgi main:app\n name a/b\n}"); err == nil ||
		!strings.Contains(err.Error(), "Testfile:3") {
		t.Errorf("a bad name should be refused naming its line, got %v", err)
	}
	one, two := newTestRegistry(), newTestRegistry()
	if err := claimName(one, "x"); err != nil {
		t.Fatal(err)
	}
	if err := claimName(one, "x"); err == nil || !strings.Contains(err.Error(), "`name`") {
		t.Fatalf("a second app named x in one config: %v", err)
	}
	// Another config (a reload) may use the name while the first still runs.
	if err := claimName(two, "x"); err != nil {
		t.Fatal(err)
	}
	releaseName(one, "x")
	if err := claimName(one, "x"); err != nil {
		t.Fatalf("a released name should be free again: %v", err)
	}
	releaseName(one, "x")
	releaseName(two, "x")
}

func TestBlocksWithoutMatcherAreNamedAfterTheEnclosingOne(t *testing.T) {
	out, err := adapt(t, `http://localhost:8080 {
		handle_path /flask/* {
			python {
				module_wsgi app:app
			}
		}
		handle_path /django/* {
			python {
				module_wsgi site.wsgi:application
			}
		}
		route {
			python {
				module_wsgi other:app
			}
		}
	}`)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"name":"localhost-8080-flask"`, `"name":"localhost-8080-django"`, `"name":"localhost-8080"`} {
		if !strings.Contains(out, want) {
			t.Errorf("adapted config lacks %s:\n%s", want, out)
		}
	}
}
