package plugin

import (
	"encoding/binary"
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// The CGI variables of a request travel to C in one buffer, so that all headers
// cross the Go/C boundary in the one call that hands over the request:
// a little-endian u32 count, then count pairs of u32-length-prefixed key and
// value. runtime/worker.c reads it back into the WSGI environ.

type environ struct {
	buf   []byte
	count uint32
}

func (e *environ) reset(buf []byte) {
	e.buf = append(buf[:0], 0, 0, 0, 0)
	e.count = 0
}

func (e *environ) add(key, value string) {
	e.buf = binary.LittleEndian.AppendUint32(e.buf, uint32(len(key)))
	e.buf = append(e.buf, key...)
	e.buf = binary.LittleEndian.AppendUint32(e.buf, uint32(len(value)))
	e.buf = append(e.buf, value...)
	e.count++
}

// addHeader adds HTTP_<NAME> for a header, with the name upper-cased and dashes
// turned into underscores as it is copied.
func (e *environ) addHeader(name, value string) {
	e.buf = binary.LittleEndian.AppendUint32(e.buf, uint32(len(name)+5))
	e.buf = append(e.buf, "HTTP_"...)
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c == '-':
			c = '_'
		case 'a' <= c && c <= 'z':
			c -= 'a' - 'A'
		}
		e.buf = append(e.buf, c)
	}
	e.buf = binary.LittleEndian.AppendUint32(e.buf, uint32(len(value)))
	e.buf = append(e.buf, value...)
	e.count++
}

func (e *environ) bytes() []byte {
	binary.LittleEndian.PutUint32(e.buf[:4], e.count)
	return e.buf
}

// buildEnviron packs the CGI variables of PEP 3333 for r. scriptName is the
// `script_name` setting (see mountPoint).
func buildEnviron(buf []byte, r *http.Request, scriptName string) []byte {
	var e environ
	e.reset(buf)
	e.add("REQUEST_METHOD", r.Method)

	script, path, _ := mountPoint(r, scriptName)
	e.add("SCRIPT_NAME", script)
	e.add("PATH_INFO", path)
	e.add("QUERY_STRING", r.URL.RawQuery)
	uri := requestURI(r)
	e.add("REQUEST_URI", uri)
	e.add("RAW_URI", uri)
	e.add("SERVER_PROTOCOL", r.Proto)

	if ct := r.Header.Get("Content-Type"); ct != "" {
		e.add("CONTENT_TYPE", ct)
	}
	if r.ContentLength >= 0 && (r.ContentLength > 0 || r.Header.Get("Content-Length") != "") {
		e.add("CONTENT_LENGTH", strconv.FormatInt(r.ContentLength, 10))
	}

	scheme, defaultPort := "http", "80"
	if r.TLS != nil {
		scheme, defaultPort = "https", "443"
		e.add("HTTPS", "on")
	}
	e.add("wsgi.url_scheme", scheme)

	host, port := r.Host, ""
	if h, p, err := net.SplitHostPort(r.Host); err == nil {
		host, port = h, p
	}
	if local, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		if _, p, err := net.SplitHostPort(local.String()); err == nil {
			port = p
		}
	}
	if port == "" {
		port = defaultPort
	}
	e.add("SERVER_NAME", host)
	e.add("SERVER_PORT", port)

	remoteIP, remotePort := clientAddr(r)
	e.add("REMOTE_ADDR", remoteIP)
	e.add("REMOTE_PORT", remotePort)

	e.addHeader("Host", r.Host)
	if te := transferEncoding(r); te != "" {
		e.addHeader("Transfer-Encoding", te)
	}
	for name, values := range r.Header {
		switch name {
		case "Content-Type", "Content-Length", "Host":
			continue
		}
		// A header spelled with underscores would pose as its dashed twin
		// (X_Forwarded_For as X-Forwarded-For); drop it, as gunicorn and nginx do.
		if strings.IndexByte(name, '_') >= 0 {
			continue
		}
		sep := ", "
		if name == "Cookie" {
			sep = "; "
		}
		e.addHeader(name, strings.Join(values, sep))
	}
	return e.bytes()
}

// appPath is the path an app is given (PATH_INFO with SCRIPT_NAME, ASGI's
// path): the request's path cleaned as Caddy's path matchers clean it before
// they route, so `.` and `..` segments are resolved and repeated slashes
// merged, and a trailing slash kept. An app thus sees the path its route
// matched, never one that climbs out of its mount point with `..`; the path
// as sent stays in REQUEST_URI and RAW_URI, ASGI's raw_path.
func appPath(r *http.Request) string {
	return caddyhttp.CleanPath(r.URL.Path, true)
}

// transferEncoding is the Transfer-Encoding header as the client sent it,
// which net/http moves out of the header map into r.TransferEncoding. An app
// may look at it to learn that a body without Content-Length is chunked.
func transferEncoding(r *http.Request) string {
	return strings.Join(r.TransferEncoding, ", ")
}

// mountedAt tells whether path lies under the mount prefix (whole segments).
func mountedAt(path, prefix string) bool {
	return prefix != "" && strings.HasPrefix(path, prefix) &&
		(len(path) == len(prefix) || path[len(prefix)] == '/')
}

// clientAddr is the client as Caddy sees it: behind trusted proxies, the real
// client's IP, which apps then see too.
func clientAddr(r *http.Request) (host, port string) {
	host, port, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	if ip, ok := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string); ok && ip != "" {
		host = ip
	}
	return host, port
}
