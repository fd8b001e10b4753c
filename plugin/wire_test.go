package plugin

// The packed formats that cross into C and Python, read back by the real
// decoders: runtime/worker.c and bridge.c, and the adapters, in a real
// interpreter. Each app below reports what it was handed; each test checks
// that every field Go packed arrived unchanged.

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

const wireApps = `
import json
import _vivarium

def hexed(s):
    return s.encode("latin-1").hex()

def wsgi(environ, start_response):
    body = environ["wsgi.input"].read()
    seen = {k: hexed(v) for k, v in environ.items() if isinstance(v, str)}
    seen["<body>"] = body.hex()
    out = json.dumps(seen).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("X-Latin", "caf\xe9")])
    return [out]

last_close = None

def constants():
    return {k: v for k, v in vars(_vivarium).items() if k.isupper() and isinstance(v, int)}

async def asgi(scope, receive, send):
    global last_close
    if scope["type"] == "websocket":
        await send({"type": "websocket.accept", "headers": [(b"x-wire", b"1")]})
        while True:
            m = await receive()
            if m["type"] == "websocket.connect":
                continue
            if m["type"] == "websocket.disconnect":
                last_close = m["code"]
                return
            if m.get("text") is not None:
                await send({"type": "websocket.send", "text": m["text"]})
            else:
                await send({"type": "websocket.send", "bytes": m["bytes"]})
    if scope["path"] == "/constants":
        out = json.dumps(constants()).encode()
    elif scope["path"] == "/last-close":
        out = json.dumps(last_close).encode()
    else:
        body, parts = b"", 0
        while True:
            m = await receive()
            body += m.get("body", b"")
            parts += 1
            if not m.get("more_body"):
                break
        seen = {
            "http_version": scope["http_version"], "method": scope["method"], "scheme": scope["scheme"],
            "path": scope["path"].encode("utf-8", "surrogateescape").hex(), "raw_path": scope["raw_path"].hex(),
            "query": scope["query_string"].hex(), "root_path": scope["root_path"],
            "headers": b"\0".join(x for pair in scope["headers"] for x in pair).hex(),
            "client": scope["client"], "server": scope["server"], "body": body.hex(), "parts": parts,
        }
        out = json.dumps(seen).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"x-latin", b"caf\xe9")]})
    await send({"type": "http.response.body", "body": out})
`

// wireRequest is a request with what tends to break a packing: repeated
// and non-ASCII headers, an encoded path, a query, a body.
func wireRequest(body []byte) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "http://example.com:8080/a%2Fb/caf%C3%A9/x?q=1&r=%00&s=\xe9", bytes.NewReader(body))
	r.Header.Add("X-Multi", "a")
	r.Header.Add("X-Multi", "b")
	r.Header.Set("X-Latin", "caf\xe9")
	r.Header.Set("Content-Type", "application/octet-stream")
	r.Header.Add("Cookie", "a=1")
	r.Header.Add("Cookie", "b=2")
	return r
}

func serveJSON(t *testing.T, p *Python, r *http.Request, into any) *httptest.ResponseRecorder {
	t.Helper()
	w := httptest.NewRecorder()
	if err := p.ServeHTTP(w, r, nil); err != nil {
		t.Fatal(err)
	}
	if w.Code != http.StatusOK {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	if err := json.Unmarshal(w.Body.Bytes(), into); err != nil {
		t.Fatalf("%v: %s", err, w.Body)
	}
	return w
}

func TestWSGIRequestRoundTripsThroughWorkerC(t *testing.T) {
	p := startTestApp(t, "wsgi", wireApps, 1, 1)
	body := bytes.Repeat([]byte("0123456789\x00\xff"), 1000)
	packed := unpack(t, buildEnviron(nil, wireRequest(body), ""))
	var seen map[string]string
	w := serveJSON(t, p, wireRequest(body), &seen)
	for k, v := range packed {
		got, err := hex.DecodeString(seen[k])
		if _, ok := seen[k]; !ok || err != nil || string(got) != v {
			t.Errorf("environ[%q] = %q, Go packed %q", k, got, v)
		}
	}
	if got, _ := hex.DecodeString(seen["<body>"]); !bytes.Equal(got, body) {
		t.Errorf("the app read %d body bytes, not the %d sent", len(got), len(body))
	}
	// The way back: the head the adapter packed, through addHeaders.
	if got := w.Header().Get("X-Latin"); got != "caf\xe9" {
		t.Errorf("response header X-Latin = %q", got)
	}
}

func TestASGIScopeAndBodyEventsRoundTripThroughBridgeC(t *testing.T) {
	p := startTestApp(t, "asgi", wireApps, 1, 1)
	for _, tc := range []struct {
		name string
		size int
		more bool // the body goes as evBody events after the request
	}{{"no body", 0, false}, {"inline body", 1000, false}, {"streamed body", 3*inlineBody + 17, true}} {
		t.Run(tc.name, func(t *testing.T) {
			body := bytes.Repeat([]byte{0, 1, 2, 0xff}, tc.size/4+1)[:tc.size]
			inline := body
			if tc.more {
				inline = nil
			}
			f := scopeFields(wireRequest(body), "", inline, tc.more)
			var seen struct {
				HTTPVersion string `json:"http_version"`
				Method      string `json:"method"`
				Scheme      string `json:"scheme"`
				Path        string `json:"path"`
				RawPath     string `json:"raw_path"`
				Query       string `json:"query"`
				RootPath    string `json:"root_path"`
				Headers     string `json:"headers"`
				Body        string `json:"body"`
				Client      []any  `json:"client"`
				Server      []any  `json:"server"`
				Parts       int    `json:"parts"`
			}
			w := serveJSON(t, p, wireRequest(body), &seen)
			unhex := func(s string) string { b, _ := hex.DecodeString(s); return string(b) }
			checks := []struct {
				field int
				got   string
			}{
				{scopeHTTPVersion, seen.HTTPVersion}, {scopeMethod, seen.Method}, {scopeScheme, seen.Scheme},
				{scopePath, unhex(seen.Path)}, {scopeRawPath, unhex(seen.RawPath)}, {scopeQuery, unhex(seen.Query)},
				{scopeRootPath, seen.RootPath}, {scopeClientHost, seen.Client[0].(string)},
				{scopeClientPort, strconv.Itoa(int(seen.Client[1].(float64)))},
				{scopeServerHost, seen.Server[0].(string)}, {scopeServerPort, strconv.Itoa(int(seen.Server[1].(float64)))},
			}
			for _, c := range checks {
				if c.got != f[c.field] {
					t.Errorf("scope field %d = %q, Go packed %q", c.field, c.got, f[c.field])
				}
			}
			// Go's map order differs between the two packings: compare the headers as sets.
			pairs := func(block string) map[string]bool {
				parts := strings.Split(block, "\x00")
				m := map[string]bool{}
				for i := 0; i+1 < len(parts); i += 2 {
					m[parts[i]+": "+parts[i+1]] = true
				}
				return m
			}
			if got, want := pairs(unhex(seen.Headers)), pairs(f[scopeHeaders]); len(got) != len(want) {
				t.Errorf("headers %v, Go packed %v", got, want)
			} else {
				for h := range want {
					if !got[h] {
						t.Errorf("header %q packed, not seen", h)
					}
				}
			}
			if got := unhex(seen.Body); got != string(body) {
				t.Errorf("the app received %d body bytes, not the %d sent", len(got), len(body))
			}
			if tc.more != (seen.Parts > 1) {
				t.Errorf("%d body parts for a %d-byte body", seen.Parts, tc.size)
			}
			if got := w.Header().Get("X-Latin"); got != "caf\xe9" {
				t.Errorf("response header X-Latin = %q", got)
			}
		})
	}
}

func TestWebSocketEventsRoundTripThroughBridgeC(t *testing.T) {
	p := startTestApp(t, "asgi", wireApps, 1, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := p.ServeHTTP(w, r, nil); err != nil {
			t.Error(err)
		}
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Header.Get("X-Wire") != "1" {
		t.Errorf("accept headers: %v", resp.Header)
	}
	for _, m := range []struct {
		typ  websocket.MessageType
		data []byte
	}{{websocket.MessageText, []byte("héllo\x00")}, {websocket.MessageBinary, []byte{0, 0xff, 1}}, {websocket.MessageBinary, nil}} {
		if err := conn.Write(ctx, m.typ, m.data); err != nil {
			t.Fatal(err)
		}
		typ, got, err := conn.Read(ctx)
		if err != nil || typ != m.typ || !bytes.Equal(got, m.data) {
			t.Fatalf("echo of %v %q: %v %q %v", m.typ, m.data, typ, got, err)
		}
	}
	conn.Close(4001, "bye")
	var code any
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		serveJSON(t, p, httptest.NewRequest(http.MethodGet, "/last-close", nil), &code)
		if code != nil {
			break
		}
	}
	if code != float64(4001) {
		t.Fatalf("the app heard close code %v, want 4001", code)
	}
}

// Go takes the codes through cgo, the adapters through _vivarium: both from
// runtime/vivarium.h, and this checks that each name _vivarium exports has
// the value Go uses.
func TestCodesAgreeBetweenGoAndPython(t *testing.T) {
	goCodes := map[string]int{
		"FLUSH": flagFlush, "MORE": flagMore, "ABORT": flagAbort, "TIMED_OUT": flagTimedOut, "LOST": flagLost,
		"LOG_STDOUT": logStdout, "LOG_STDERR": logStderr, "LOG_ERROR": logError,
		"ISOLATION_INTERPRETER": isolationCodes[isolationInterpreter], "ISOLATION_SHARED": isolationCodes[isolationShared],
		"ISOLATION_MAIN": isolationCodes[isolationMain], "ISOLATION_PROCESS": isolationCodes[isolationProcess],
		"EV_HTTP": evHTTP, "EV_WEBSOCKET": evWebSocket, "EV_BODY": evBody, "EV_DISCONNECT": evDisconnect,
		"EV_RESUME": evResume, "EV_WS_TEXT": evWSText, "EV_WS_BYTES": evWSBytes, "EV_WS_CLOSE": evWSClose,
		"EV_SHUTDOWN": evShutdown, "EV_TIMEOUT": evTimeout,
		"SCOPE_HTTP_VERSION": scopeHTTPVersion, "SCOPE_METHOD": scopeMethod, "SCOPE_SCHEME": scopeScheme,
		"SCOPE_PATH": scopePath, "SCOPE_RAW_PATH": scopeRawPath, "SCOPE_QUERY": scopeQuery,
		"SCOPE_ROOT_PATH": scopeRootPath, "SCOPE_HEADERS": scopeHeaders, "SCOPE_CLIENT_HOST": scopeClientHost,
		"SCOPE_CLIENT_PORT": scopeClientPort, "SCOPE_SERVER_HOST": scopeServerHost, "SCOPE_SERVER_PORT": scopeServerPort,
		"SCOPE_BODY": scopeBody, "SCOPE_MORE": scopeMore, "SCOPE_FIELDS": scopeFieldCount,
		"WS_ABNORMAL": wsAbnormal, "WS_NO_STATUS": int(websocket.StatusNoStatusRcvd),
		"POST_HTTP": postHTTP, "POST_WANT_BODY": postWantBody, "POST_DONE": postDone,
		"POST_WS_ACCEPT": postWSAccept, "POST_WS_TEXT": postWSText, "POST_WS_BYTES": postWSBytes,
		"POST_WS_CLOSE": postWSClose, "POST_OK": postOK, "POST_PAUSE": postPause, "POST_GONE": postGone,
	}
	if wsAbnormal != int(websocket.StatusAbnormalClosure) {
		t.Errorf("VV_WS_ABNORMAL is %d, the WebSocket library's abnormal closure %d", wsAbnormal, websocket.StatusAbnormalClosure)
	}
	if len(scopeFields(wireRequest(nil), "", nil, false)) != scopeFieldCount {
		t.Errorf("scopeFields packs other than VV_SCOPE_FIELDS fields")
	}
	p := startTestApp(t, "asgi", wireApps, 1, 1)
	var py map[string]int
	serveJSON(t, p, httptest.NewRequest(http.MethodGet, "/constants", nil), &py)
	for name, v := range py {
		goV, ok := goCodes[name]
		switch {
		case !ok:
			t.Errorf("_vivarium.%s = %d has no Go counterpart in this test", name, v)
		case goV != v:
			t.Errorf("_vivarium.%s = %d, Go has %d", name, v, goV)
		}
	}
	for name := range goCodes {
		if _, ok := py[name]; !ok {
			t.Errorf("_vivarium has no %s", name)
		}
	}
}
