package plugin

import (
	"encoding/binary"
	"net/http/httptest"
	"strings"
	"testing"
)

// unpack reads the buffer the way runtime/worker.c does.
func unpack(t *testing.T, b []byte) map[string]string {
	t.Helper()
	n := binary.LittleEndian.Uint32(b)
	b = b[4:]
	out := map[string]string{}
	for i := uint32(0); i < n; i++ {
		kl := binary.LittleEndian.Uint32(b)
		k := string(b[4 : 4+kl])
		b = b[4+kl:]
		vl := binary.LittleEndian.Uint32(b)
		out[k] = string(b[4 : 4+vl])
		b = b[4+vl:]
	}
	if len(b) != 0 {
		t.Fatalf("%d trailing bytes", len(b))
	}
	return out
}

func TestEnvironCarriesCGIVariables(t *testing.T) {
	r := httptest.NewRequest("POST", "http://example.com:8080/api/items/7?x=1&y=2", strings.NewReader("abc"))
	r.Header.Set("Content-Type", "text/plain")
	r.Header.Add("X-Multi", "a")
	r.Header.Add("X-Multi", "b")
	r.Header.Set("X_Sneaky", "1")
	r.Header.Add("Cookie", "a=1")
	r.Header.Add("Cookie", "b=2")
	env := unpack(t, buildEnviron(nil, r, "/api"))
	want := map[string]string{
		"REQUEST_METHOD":  "POST",
		"SCRIPT_NAME":     "/api",
		"PATH_INFO":       "/items/7",
		"QUERY_STRING":    "x=1&y=2",
		"CONTENT_TYPE":    "text/plain",
		"CONTENT_LENGTH":  "3",
		"SERVER_NAME":     "example.com",
		"SERVER_PORT":     "8080",
		"SERVER_PROTOCOL": "HTTP/1.1",
		"wsgi.url_scheme": "http",
		"HTTP_HOST":       "example.com:8080",
		"HTTP_X_MULTI":    "a, b",
		"HTTP_COOKIE":     "a=1; b=2",
		"REMOTE_ADDR":     "192.0.2.1",
		"REMOTE_PORT":     "1234",
	}
	for k, v := range want {
		if env[k] != v {
			t.Errorf("%s = %q, want %q", k, env[k], v)
		}
	}
	for _, k := range []string{"HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH", "HTTP_X_SNEAKY"} {
		if _, ok := env[k]; ok {
			t.Errorf("%s must not be set", k)
		}
	}
}

func TestScriptNameOnlyMatchesWholeSegments(t *testing.T) {
	r := httptest.NewRequest("GET", "http://h/apiary", nil)
	env := unpack(t, buildEnviron(nil, r, "/api"))
	if env["SCRIPT_NAME"] != "" || env["PATH_INFO"] != "/apiary" {
		t.Fatalf("SCRIPT_NAME=%q PATH_INFO=%q", env["SCRIPT_NAME"], env["PATH_INFO"])
	}
}
