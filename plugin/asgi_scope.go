package plugin

import (
	"net"
	"net/http"
	"strconv"
	"strings"
)

// scopeFields packs what the adapter needs to build an ASGI scope, in the
// order of VV_SCOPE_* (codes.go).
func scopeFields(r *http.Request, scriptName string, body []byte, more bool) []string {
	version := "1.1"
	switch {
	case r.ProtoMajor == 1 && r.ProtoMinor == 0:
		version = "1.0"
	case r.ProtoMajor > 1:
		version = strconv.Itoa(r.ProtoMajor)
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	// ASGI keeps the full path and names the mount point in root_path.
	rootPath, _, stripped := mountPoint(r, scriptName)
	path, rawPath := asgiPath(r, rootPath, stripped)
	var hb strings.Builder
	appendHeader(&hb, "host", r.Host)
	for name, values := range r.Header {
		if name == "Host" {
			continue
		}
		for _, v := range values {
			appendHeader(&hb, name, v)
		}
	}
	if te := transferEncoding(r); te != "" {
		appendHeader(&hb, "transfer-encoding", te)
	}
	clientHost, clientPort := clientAddr(r)
	serverHost, serverPort := r.Host, ""
	if h, p, err := net.SplitHostPort(r.Host); err == nil {
		serverHost, serverPort = h, p
	}
	if local, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		if h, p, err := net.SplitHostPort(local.String()); err == nil {
			serverHost, serverPort = h, p
		}
	}
	moreFlag := "0"
	if more {
		moreFlag = "1"
	}
	f := make([]string, scopeFieldCount)
	f[scopeHTTPVersion], f[scopeMethod], f[scopeScheme] = version, r.Method, scheme
	f[scopePath], f[scopeRawPath], f[scopeQuery], f[scopeRootPath] = path, rawPath, r.URL.RawQuery, rootPath
	f[scopeHeaders] = hb.String()
	f[scopeClientHost], f[scopeClientPort] = clientHost, clientPort
	f[scopeServerHost], f[scopeServerPort] = serverHost, serverPort
	f[scopeBody], f[scopeMore] = bytesField(body), moreFlag
	return f
}
