package plugin

/*
#include "vivarium.h"
*/
import "C"

// The codes and layouts that cross between Go, C and Python, each defined
// once in runtime/vivarium.h; Python reads the same values from _vivarium.

// Flags on a response part (vvServe, vvSend) and on a vvPost message.
const (
	flagFlush    = C.VV_FLUSH
	flagMore     = C.VV_MORE // on postHTTP: more body follows
	flagAbort    = C.VV_ABORT
	flagTimedOut = C.VV_TIMED_OUT // with flagAbort: RequestTimeout interrupted the app (a stop's force)
	flagLost     = C.VV_LOST      // on a postDone Caddy makes up: the app's process died with the request
)

// Kinds of line vvLog gets.
const (
	logStdout = C.VV_LOG_STDOUT
	logStderr = C.VV_LOG_STDERR
	logError  = C.VV_LOG_ERROR
)

// Isolation codes (appConfig.isolation).
const (
	isolationInterpreterCode = C.VV_ISOLATION_INTERPRETER
	isolationSharedCode      = C.VV_ISOLATION_SHARED
	isolationMainCode        = C.VV_ISOLATION_MAIN
	isolationProcessCode     = C.VV_ISOLATION_PROCESS
)

// Events from Go to an event loop (loop.go packs them).
const (
	eventHead    = C.VV_EVENT_HEAD
	evHTTP       = C.VV_EV_HTTP
	evWebSocket  = C.VV_EV_WEBSOCKET
	evBody       = C.VV_EV_BODY
	evDisconnect = C.VV_EV_DISCONNECT
	evResume     = C.VV_EV_RESUME
	evWSText     = C.VV_EV_WS_TEXT
	evWSBytes    = C.VV_EV_WS_BYTES
	evWSClose    = C.VV_EV_WS_CLOSE
	evShutdown   = C.VV_EV_SHUTDOWN
	evTimeout    = C.VV_EV_TIMEOUT
)

// The fields of evHTTP and evWebSocket (asgi_scope.go).
const (
	scopeHTTPVersion = C.VV_SCOPE_HTTP_VERSION
	scopeMethod      = C.VV_SCOPE_METHOD
	scopeScheme      = C.VV_SCOPE_SCHEME
	scopePath        = C.VV_SCOPE_PATH
	scopeRawPath     = C.VV_SCOPE_RAW_PATH
	scopeQuery       = C.VV_SCOPE_QUERY
	scopeRootPath    = C.VV_SCOPE_ROOT_PATH
	scopeHeaders     = C.VV_SCOPE_HEADERS
	scopeClientHost  = C.VV_SCOPE_CLIENT_HOST
	scopeClientPort  = C.VV_SCOPE_CLIENT_PORT
	scopeServerHost  = C.VV_SCOPE_SERVER_HOST
	scopeServerPort  = C.VV_SCOPE_SERVER_PORT
	scopeBody        = C.VV_SCOPE_BODY
	scopeMore        = C.VV_SCOPE_MORE
	scopeFieldCount  = C.VV_SCOPE_FIELDS
)

// wsAbnormal is the code of an evWSClose for a connection that ended without
// a close frame.
const wsAbnormal = C.VV_WS_ABNORMAL

// Messages from an event loop to Go (vvPost).
const (
	postHTTP     = C.VV_POST_HTTP
	postWantBody = C.VV_POST_WANT_BODY
	postDone     = C.VV_POST_DONE
	postWSAccept = C.VV_POST_WS_ACCEPT
	postWSText   = C.VV_POST_WS_TEXT
	postWSBytes  = C.VV_POST_WS_BYTES
	postWSClose  = C.VV_POST_WS_CLOSE
)

// What vvPost answers: go on, pause until evResume, or the client is gone.
const (
	postOK    = C.VV_POST_OK
	postPause = C.VV_POST_PAUSE
	postGone  = C.VV_POST_GONE
)
