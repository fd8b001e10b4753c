package plugin

import (
	"bytes"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"

	"go.uber.org/zap"
	"golang.org/x/net/http/httpguts"
)

// Headers cross between Go and the adapters as one block,
// "name\0value\0name\0value", NUL between fields and none at the end; a
// response head puts "status\0" before it. The adapters' side is
// header_block in pyadapters/boot.py. (The WSGI environ has a format of its
// own, environ.go.)

// appendHeader adds a request header to an ASGI scope's block, its name
// lower-cased as ASGI asks.
func appendHeader(b *strings.Builder, name, value string) {
	if b.Len() > 0 {
		b.WriteByte(0)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		b.WriteByte(c)
	}
	b.WriteByte(0)
	b.WriteString(value)
}

// addHeaders adds the headers of a block an app sent to h. The app's code
// chose them, so each is checked: one net/http would refuse or that could
// split the response is dropped and logged, and the rest go out. The names
// and values are cut from one string of the whole block, and the value
// lists of the names it adds share one array: a response's headers cost two
// allocations, not three each.
func addHeaders(h http.Header, block []byte, logger *zap.Logger) {
	if len(block) == 0 {
		return
	}
	text := string(block)
	values := make([]string, 0, strings.Count(text, "\x00")/2+1)
	for len(text) > 0 {
		var name, value string
		name, text, _ = strings.Cut(text, "\x00")
		value, text, _ = strings.Cut(text, "\x00")
		if !httpguts.ValidHeaderFieldName(name) || !httpguts.ValidHeaderFieldValue(value) {
			logger.Warn("dropped an invalid response header", zap.String("name", name))
			continue
		}
		key := textproto.CanonicalMIMEHeaderKey(name)
		if old, ok := h[key]; ok {
			h[key] = append(old, value)
			continue
		}
		values = append(values, value)
		h[key] = values[len(values)-1 : len(values) : len(values)]
	}
}

// eachHeader calls fn with each name and value of a block until it answers false.
func eachHeader(block []byte, fn func(name, value []byte) bool) {
	for len(block) > 0 {
		var name, value []byte
		name, block, _ = bytes.Cut(block, []byte{0})
		value, block, _ = bytes.Cut(block, []byte{0})
		if !fn(name, value) {
			return
		}
	}
}

// headLength is the Content-Length in a response head (status, then a
// block), or -1 without a valid one.
func headLength(head []byte) int64 {
	_, block, _ := bytes.Cut(head, []byte{0})
	n := int64(-1)
	eachHeader(block, func(name, value []byte) bool {
		if !bytes.EqualFold(name, []byte("content-length")) {
			return true
		}
		if v, err := strconv.ParseInt(string(value), 10, 64); err == nil && v >= 0 {
			n = v
		}
		return false
	})
	return n
}
