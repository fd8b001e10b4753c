package plugin

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"unicode/utf8"
)

// errCloseReason is a client's close frame whose reason is not UTF-8.
var errCloseReason = errors.New("close frame reason is not valid UTF-8")

// wsResponse is the ResponseWriter coder/websocket upgrades: it answers the
// extension negotiation with our permessage-deflate choice, and hands the
// library the connection through a closeGuard.
type wsResponse struct {
	http.ResponseWriter
	extensions string // the Sec-WebSocket-Extensions answer, "" for none
}

func (w *wsResponse) WriteHeader(code int) {
	if code == http.StatusSwitchingProtocols {
		if w.extensions != "" {
			w.Header().Set("Sec-WebSocket-Extensions", w.extensions)
		} else {
			w.Header().Del("Sec-WebSocket-Extensions")
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *wsResponse) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	// What net/http has buffered is read through the guard too.
	g := &closeGuard{Conn: conn, src: brw.Reader}
	return g, bufio.NewReadWriter(bufio.NewReader(g), brw.Writer), nil
}

// closeGuard passes the client's frames through unchanged, except that it
// holds a close frame back until it has all of it: one whose reason is not
// UTF-8 fails the read instead of reaching coder/websocket, which would
// echo it in its own close frame. RFC 6455 wants such a connection failed
// (with 1007, see relayIncoming).
type closeGuard struct {
	net.Conn
	src io.Reader

	head    [14]byte // the frame header being read
	nhead   int
	payload int64  // payload bytes of the current frame still to pass through
	held    []byte // a close frame, header and payload, while it is read
	want    int    // the held frame's full length
	ready   []byte // bytes checked and not yet handed out
	err     error
}

// frameHeaderLen is the length of the frame header that b starts, as far as
// b tells: 2 until the second byte is known.
func frameHeaderLen(b []byte) int {
	if len(b) < 2 {
		return 2
	}
	n := 2
	switch b[1] & 0x7f {
	case 126:
		n += 2
	case 127:
		n += 8
	}
	if b[1]&0x80 != 0 {
		n += 4
	}
	return n
}

func framePayloadLen(h []byte) int64 {
	switch n := h[1] & 0x7f; n {
	case 126:
		return int64(binary.BigEndian.Uint16(h[2:]))
	case 127:
		return int64(binary.BigEndian.Uint64(h[2:]) & (1<<63 - 1))
	default:
		return int64(n)
	}
}

func (g *closeGuard) Read(p []byte) (int, error) {
	for {
		if len(g.ready) > 0 {
			n := copy(p, g.ready)
			g.ready = g.ready[n:]
			return n, nil
		}
		if g.err != nil {
			return 0, g.err
		}
		switch {
		case g.payload > 0:
			if int64(len(p)) > g.payload {
				p = p[:g.payload]
			}
			n, err := g.src.Read(p)
			g.payload -= int64(n)
			return n, err
		case g.held != nil:
			n, err := g.src.Read(g.held[len(g.held):g.want])
			g.held = g.held[:len(g.held)+n]
			if len(g.held) == g.want {
				g.checkClose()
				continue
			}
			if err != nil {
				return 0, err
			}
		default:
			need := frameHeaderLen(g.head[:g.nhead])
			if g.nhead < need {
				n, err := g.src.Read(g.head[g.nhead:need])
				g.nhead += n
				if n == 0 && err != nil {
					return 0, err
				}
				continue
			}
			g.nhead = 0
			h := g.head[:need]
			length := framePayloadLen(h)
			const opClose, masked = 0x8, 0x80
			if h[0]&0x0f == opClose && h[1]&masked != 0 && length <= 125 {
				g.want = need + int(length)
				g.held = append(make([]byte, 0, g.want), h...)
				continue
			}
			// Anything else is coder/websocket's to judge.
			g.ready = append(g.ready[:0], h...)
			g.payload = length
		}
	}
}

// checkClose releases a complete close frame, or fails the stream.
func (g *closeGuard) checkClose() {
	frame := g.held
	g.held = nil
	hl := frameHeaderLen(frame)
	if len(frame)-hl > 2 {
		key := frame[hl-4 : hl]
		reason := make([]byte, len(frame)-hl-2)
		for i := range reason {
			reason[i] = frame[hl+2+i] ^ key[(i+2)%4]
		}
		if !utf8.Valid(reason) {
			g.err = errCloseReason
			return
		}
	}
	g.ready = frame
}
