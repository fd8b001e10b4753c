package plugin

import (
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// Where an app is mounted follows Caddy's rules: a matcher never changes the
// path a handler sees (`python /api/*` gets /api/users, as `reverse_proxy
// /api/*` forwards it), and only a rewrite strips a prefix (`handle_path
// /api/* { python }`, `uri strip_prefix`). The prefix Caddy stripped is what
// the app is mounted at: it becomes SCRIPT_NAME (ASGI root_path), so the
// URLs the app builds lead back to it with no setting of the app's own.

// mountPoint splits r's path into the prefix the app is mounted at and the
// rest (SCRIPT_NAME and PATH_INFO). scriptName is the `script_name` setting:
// when set it is the prefix, cut from a path that starts with it, or standing
// in for the prefix a rewrite stripped. stripped reports that the prefix is
// not part of r.URL.Path (Caddy removed it before the handler ran).
func mountPoint(r *http.Request, scriptName string) (script, rest string, stripped bool) {
	path := appPath(r)
	if scriptName != "" {
		if mountedAt(path, scriptName) {
			return scriptName, path[len(scriptName):], false
		}
		if strippedPrefix(r) != "" {
			return scriptName, path, true
		}
		return "", path, false
	}
	if prefix := strippedPrefix(r); prefix != "" {
		return prefix, path, true
	}
	return "", path, false
}

// strippedPrefix is the part of the client's path that a rewrite took off
// the front, or "" when the path is the client's or was rewritten otherwise.
func strippedPrefix(r *http.Request) string {
	orig, ok := r.Context().Value(caddyhttp.OriginalRequestCtxKey).(http.Request)
	if !ok || orig.URL == nil {
		return ""
	}
	was, now := orig.URL.Path, r.URL.Path
	if was == now || !strings.HasPrefix(now, "/") {
		return ""
	}
	var prefix string
	switch {
	case strings.HasSuffix(was, now):
		prefix = was[:len(was)-len(now)]
	case now == "/":
		// handle_path /api/* strips /api to "", which Caddy makes "/".
		prefix = was
	default:
		return ""
	}
	// Caddy cleans the path as it strips: /api//x and /api/v/../x became /x.
	prefix = strings.TrimRight(caddyhttp.CleanPath(prefix, true), "/")
	if !strings.HasPrefix(prefix, "/") {
		return ""
	}
	return prefix
}

// asgiPath is the scope's path and raw_path. path is the full path, with
// the mount prefix, as ASGI wants it even when Caddy stripped that prefix;
// raw_path is the path as the client sent it, before any rewrite.
func asgiPath(r *http.Request, script string, stripped bool) (path, raw string) {
	path = appPath(r)
	if stripped {
		path = script + path
	}
	if orig, ok := r.Context().Value(caddyhttp.OriginalRequestCtxKey).(http.Request); ok && orig.URL != nil {
		return path, orig.URL.EscapedPath()
	}
	return path, r.URL.EscapedPath()
}

// requestURI is the URI the client asked for, before any rewrite, as
// REQUEST_URI means for CGI servers.
func requestURI(r *http.Request) string {
	if orig, ok := r.Context().Value(caddyhttp.OriginalRequestCtxKey).(http.Request); ok && orig.RequestURI != "" {
		return orig.RequestURI
	}
	return r.RequestURI
}

// clientPath is the path the client asked for, before any rewrite: what the
// admin API shows of a running request.
func clientPath(r *http.Request) string {
	if orig, ok := r.Context().Value(caddyhttp.OriginalRequestCtxKey).(http.Request); ok && orig.URL != nil {
		return orig.URL.Path
	}
	return r.URL.Path
}
