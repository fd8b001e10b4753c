package plugin

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// rewritten is a request for clientPath that a rewrite turned into path, with
// the original kept in the context as Caddy's server does.
func rewritten(clientPath, path string) *http.Request {
	r := httptest.NewRequest("GET", "http://h"+clientPath+"?q=1", nil)
	r.RequestURI = r.URL.RequestURI() // as a server reads it off the wire
	orig := *r                        // its URL is left as it is: r gets a copy below
	ctx := context.WithValue(r.Context(), caddyhttp.OriginalRequestCtxKey, orig)
	r = r.WithContext(ctx)
	u := *r.URL
	u.Path = path
	r.URL = &u
	r.RequestURI = u.RequestURI()
	return r
}

func TestMountPoint(t *testing.T) {
	cases := []struct {
		name                 string
		r                    *http.Request
		scriptName           string
		wantScript, wantRest string
		wantStripped         bool
	}{
		{"matcher keeps the full path", httptest.NewRequest("GET", "http://h/item/abc", nil), "", "", "/item/abc", false},
		{"handle_path prefix", rewritten("/item/abc", "/abc"), "", "/item", "/abc", true},
		{"handle_path bare prefix", rewritten("/item", "/"), "", "/item", "/", true},
		{"handle_path prefix with trailing slash", rewritten("/item/", "/"), "", "/item", "/", true},
		{"nested prefix", rewritten("/a/b/c", "/c"), "", "/a/b", "/c", true},
		{"merged slashes", rewritten("/item//abc", "/abc"), "", "/item", "/abc", true},
		{"rewrite to another path is no mount", rewritten("/old", "/new/old"), "", "", "/new/old", false},
		{"unchanged path", rewritten("/x", "/x"), "", "", "/x", false},
		{"script_name under a matcher", httptest.NewRequest("GET", "http://h/api/x", nil), "/api", "/api", "/x", false},
		{"script_name whole segments only", httptest.NewRequest("GET", "http://h/apiary", nil), "/api", "", "/apiary", false},
		{"script_name replaces a stripped prefix", rewritten("/item/abc", "/abc"), "/shop", "/shop", "/abc", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			script, rest, stripped := mountPoint(c.r, c.scriptName)
			if script != c.wantScript || rest != c.wantRest || stripped != c.wantStripped {
				t.Fatalf("got (%q, %q, %v), want (%q, %q, %v)", script, rest, stripped, c.wantScript, c.wantRest, c.wantStripped)
			}
		})
	}
}

func TestEnvironUnderHandlePath(t *testing.T) {
	env := unpack(t, buildEnviron(nil, rewritten("/item/a%20b", "/a b"), ""))
	if env["SCRIPT_NAME"] != "/item" || env["PATH_INFO"] != "/a b" {
		t.Fatalf("SCRIPT_NAME=%q PATH_INFO=%q", env["SCRIPT_NAME"], env["PATH_INFO"])
	}
	if env["REQUEST_URI"] != "/item/a%20b?q=1" {
		t.Fatalf("REQUEST_URI=%q, want the client's URI", env["REQUEST_URI"])
	}
}

func TestASGIScopeUnderHandlePathHasTheFullPath(t *testing.T) {
	f := scopeFields(rewritten("/item/a%20b", "/a b"), "", nil, false)
	path, raw, root := f[3], f[4], f[6]
	if path != "/item/a b" || raw != "/item/a%20b" || root != "/item" {
		t.Fatalf("path=%q raw_path=%q root_path=%q", path, raw, root)
	}
	f = scopeFields(httptest.NewRequest("GET", "http://h/item/x", nil), "", nil, false)
	if f[3] != "/item/x" || f[6] != "" {
		t.Fatalf("under a matcher: path=%q root_path=%q", f[3], f[6])
	}
}
