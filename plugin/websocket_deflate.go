package plugin

import (
	"net/http"
	"strconv"
	"strings"
)

// permessage-deflate (RFC 7692) is negotiated here rather than by
// coder/websocket, which declines an offer asking the server for a window
// smaller than 32 KiB (server_max_window_bits below 15) because Go's
// compress/flate cannot limit its window. The choice is shown to the library
// as the one offer it understands, and the answer the client gets is ours.
type deflateChoice struct {
	clientNoContext bool // the client compresses each message on its own
	serverWindow    int  // server_max_window_bits the client asked for, 0 if none
}

// chooseDeflate picks the first permessage-deflate offer of the handshake
// whose parameters are all known and well formed; an offer that is not is
// declined, as the RFC asks.
func chooseDeflate(h http.Header) (deflateChoice, bool) {
	for _, value := range h.Values("Sec-WebSocket-Extensions") {
		for _, ext := range strings.Split(value, ",") {
			params := strings.Split(ext, ";")
			if !strings.EqualFold(strings.TrimSpace(params[0]), "permessage-deflate") {
				continue
			}
			if c, ok := deflateParams(params[1:]); ok {
				return c, true
			}
		}
	}
	return deflateChoice{}, false
}

func deflateParams(params []string) (deflateChoice, bool) {
	var c deflateChoice
	seen := map[string]bool{}
	for _, p := range params {
		name, value, hasValue := strings.Cut(strings.TrimSpace(p), "=")
		name = strings.ToLower(strings.TrimSpace(name))
		value = strings.Trim(strings.TrimSpace(value), `"`)
		if seen[name] {
			return c, false
		}
		seen[name] = true
		switch name {
		case "server_no_context_takeover":
			// The server never takes over its context anyway (below).
			if hasValue {
				return c, false
			}
		case "client_no_context_takeover":
			if hasValue {
				return c, false
			}
			c.clientNoContext = true
		case "server_max_window_bits":
			bits, ok := windowBits(value)
			if !ok {
				return c, false
			}
			c.serverWindow = bits
		case "client_max_window_bits":
			// Inflating with a 32 KiB window reads any smaller one.
			if hasValue {
				if _, ok := windowBits(value); !ok {
					return c, false
				}
			}
		default:
			return c, false
		}
	}
	return c, true
}

func windowBits(s string) (int, bool) {
	n, err := strconv.Atoi(s)
	return n, err == nil && n >= 8 && n <= 15 && s == strconv.Itoa(n)
}

// answer is the Sec-WebSocket-Extensions header of the handshake response.
// The server compresses each message with a fresh compressor
// (server_no_context_takeover), taken from a pool: a context kept per
// socket would tie a compress/flate writer, over a megabyte, to each open
// WebSocket for its whole life.
func (c deflateChoice) answer() string {
	s := "permessage-deflate; server_no_context_takeover"
	if c.clientNoContext {
		s += "; client_no_context_takeover"
	}
	if c.serverWindow != 0 {
		s += "; server_max_window_bits=" + strconv.Itoa(c.serverWindow)
	}
	return s
}

// libraryOffer is the offer coder/websocket is shown so that it sets itself
// up as answer() says.
func (c deflateChoice) libraryOffer() string {
	s := "permessage-deflate; server_no_context_takeover"
	if c.clientNoContext {
		s += "; client_no_context_takeover"
	}
	return s
}

// compresses tells whether the server may compress what it sends: with a
// window below 32 KiB asked for, it sends every message uncompressed, which
// permessage-deflate allows and which needs no window at all.
func (c deflateChoice) compresses() bool {
	return c.serverWindow == 0 || c.serverWindow == 15
}
