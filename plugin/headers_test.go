package plugin

import (
	"net/http"
	"reflect"
	"strings"
	"testing"

	"go.uber.org/zap"
)

func block(fields ...string) []byte { return []byte(strings.Join(fields, "\x00")) }

func TestAddHeaders(t *testing.T) {
	cases := []struct {
		name  string
		block []byte
		want  http.Header
	}{
		{"none", nil, http.Header{}},
		{"names are canonical", block("content-type", "text/plain", "x-app-id", "7"),
			http.Header{"Content-Type": {"text/plain"}, "X-App-Id": {"7"}}},
		{"a repeated name keeps every value in order", block("Set-Cookie", "a=1", "Vary", "Accept", "set-cookie", "b=2"),
			http.Header{"Set-Cookie": {"a=1", "b=2"}, "Vary": {"Accept"}}},
		{"an empty value is a value", block("X-Empty", ""), http.Header{"X-Empty": {""}}},
		{"a header that could split the response is dropped, the rest go out",
			block("X-Bad", "a\r\nInjected: yes", "Bad Name", "x", "X-Good", "1"),
			http.Header{"X-Good": {"1"}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := http.Header{}
			addHeaders(h, c.block, zap.NewNop())
			if !reflect.DeepEqual(h, c.want) {
				t.Fatalf("got %v, want %v", h, c.want)
			}
		})
	}
}

// The value lists share one array: adding to one must not change another.
func TestAddHeadersValuesAreSeparate(t *testing.T) {
	h := http.Header{"Server": {"Caddy"}}
	addHeaders(h, block("A", "1", "B", "2", "Server", "app"), zap.NewNop())
	h.Add("A", "1b")
	want := http.Header{"A": {"1", "1b"}, "B": {"2"}, "Server": {"Caddy", "app"}}
	if !reflect.DeepEqual(h, want) {
		t.Fatalf("got %v, want %v", h, want)
	}
}
