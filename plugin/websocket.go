package plugin

import (
	"compress/flate"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/coder/websocket"
	"go.uber.org/zap"
)

// wsAbnormalField is wsAbnormal as evWSClose carries it.
var wsAbnormalField = strconv.Itoa(wsAbnormal)

// wsReadLimit bounds one incoming WebSocket message.
const wsReadLimit = 16 << 20

func isWebSocket(r *http.Request) bool {
	return r.ProtoMajor == 1 &&
		strings.EqualFold(r.Header.Get("Upgrade"), "websocket") &&
		headerHasToken(r.Header, "Connection", "upgrade")
}

func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// serveWebSocket asks the app whether to accept the handshake, then relays
// messages both ways. An open socket costs two goroutines and an asyncio
// task, never a thread.
func (p *Python) serveWebSocket(w http.ResponseWriter, r *http.Request, out *outcome) error {
	q, err := p.startASGI(r, evWebSocket, scopeFields(r, p.ScriptName, nil, false))
	if err != nil {
		return p.unavailable(w, err)
	}
	defer q.unregister()

	var conn *websocket.Conn
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ctxDone := r.Context().Done()
	for {
		select {
		case <-q.signal:
		case <-ctxDone:
			// Before the upgrade, the client left; after it, the reader sees the close.
			ctxDone = nil
			if conn == nil && q.markGone() {
				q.loop.post(evWSClose, q.token, wsAbnormalField)
			}
			continue
		case <-q.loop.closing:
			if conn == nil {
				return p.unavailable(w, errClosed)
			}
			conn.Close(websocket.StatusGoingAway, "server shutting down")
			return nil
		}
		for _, m := range q.takeOut() {
			switch m.kind {
			case postWSAccept:
				if conn != nil {
					continue
				}
				conn, err = p.acceptWebSocket(w, r, m.a, m.b)
				if err != nil {
					p.logger.Debug("websocket handshake failed", zap.Error(err))
					if q.markGone() {
						q.loop.post(evWSClose, q.token, wsAbnormalField)
					}
					continue
				}
				conn.SetReadLimit(wsReadLimit)
				out.status = http.StatusSwitchingProtocols
				p.metrics.socketOpened()
				defer p.metrics.socketClosed()
				go relayIncoming(ctx, conn, q, p.logger)
			case postWSText, postWSBytes:
				if conn == nil {
					continue
				}
				typ := websocket.MessageText
				if m.kind == postWSBytes {
					typ = websocket.MessageBinary
				}
				if err := conn.Write(ctx, typ, m.b); err != nil && q.markGone() {
					q.loop.post(evWSClose, q.token, wsAbnormalField)
				}
				q.written(len(m.b))
			case postWSClose:
				if conn == nil {
					// Refused before the handshake: 403, as the ASGI spec asks.
					q.markGone()
					return caddyhttp.Error(http.StatusForbidden, errors.New("websocket refused by the app"))
				}
				conn.Close(websocket.StatusCode(m.flags), string(m.a))
			case postDone:
				if conn == nil {
					if m.flags&flagLost != 0 {
						return caddyhttp.Error(http.StatusBadGateway, fmt.Errorf("%s: %w", p.name(), errLost))
					}
					if m.flags&flagAbort != 0 {
						return caddyhttp.Error(http.StatusInternalServerError,
							fmt.Errorf("%s failed during the websocket handshake; see its log", p.name()))
					}
					return caddyhttp.Error(http.StatusForbidden, errors.New("websocket refused by the app"))
				}
				code := websocket.StatusNormalClosure
				if m.flags&flagAbort != 0 {
					code = websocket.StatusInternalError
				}
				conn.Close(code, "")
				return nil
			}
		}
	}
}

// acceptWebSocket upgrades the connection with the subprotocol and headers
// the app accepted with, and permessage-deflate when the client offers it
// and the app's config allows it.
func (p *Python) acceptWebSocket(w http.ResponseWriter, r *http.Request, subprotocol, headers []byte) (*websocket.Conn, error) {
	opts := &websocket.AcceptOptions{
		// Origin policy is the app's to decide, as under uvicorn.
		InsecureSkipVerify: true,
	}
	if len(subprotocol) > 0 {
		opts.Subprotocols = []string{string(subprotocol)}
	}
	addHeaders(w.Header(), headers, p.logger)
	rw := &wsResponse{ResponseWriter: w}
	choice, offered := chooseDeflate(r.Header)
	// The library is shown only the offer chosen here (see websocket_deflate.go).
	r = r.Clone(r.Context())
	r.Header.Del("Sec-WebSocket-Extensions")
	if offered && p.WebSocketCompression != "off" {
		opts.CompressionMode = websocket.CompressionContextTakeover
		if !choice.compresses() {
			opts.CompressionThreshold = math.MaxInt
		}
		r.Header.Set("Sec-WebSocket-Extensions", choice.libraryOffer())
		rw.extensions = choice.answer()
	}
	return websocket.Accept(rw, r, opts)
}

// relayIncoming posts each message from the client to the loop, then the
// code the connection closed with.
func relayIncoming(ctx context.Context, conn *websocket.Conn, q *asgiRequest, logger *zap.Logger) {
	buf := make([]byte, 0, 4096)
	for {
		typ, data, err := readMessage(ctx, conn, buf[:0])
		if err != nil {
			code := failWebSocket(conn, err, logger)
			if q.markGone() {
				q.loop.post(evWSClose, q.token, strconv.Itoa(int(code)))
			}
			return
		}
		kind := byte(evWSText)
		if typ == websocket.MessageBinary {
			kind = evWSBytes
		}
		q.loop.post(kind, q.token, bytesField(data))
		// post copied the message; small buffers are kept for the next one.
		if cap(data) <= inlineBody {
			buf = data
		}
	}
}

// errTextUTF8 is a text message that is not UTF-8.
var errTextUTF8 = errors.New("text message is not valid UTF-8")

// readMessage reads one message into buf, checking a text message's UTF-8
// frame by frame as it arrives.
func readMessage(ctx context.Context, conn *websocket.Conn, buf []byte) (websocket.MessageType, []byte, error) {
	typ, r, err := conn.Reader(ctx)
	if err != nil {
		return 0, nil, err
	}
	var text utf8Stream
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		if typ == websocket.MessageText && !text.write(buf[len(buf):len(buf)+n]) {
			return 0, nil, errTextUTF8
		}
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			if typ == websocket.MessageText && !text.complete() {
				return 0, nil, errTextUTF8
			}
			return typ, buf, nil
		}
		if err != nil {
			return 0, nil, err
		}
	}
}

// failWebSocket ends the connection after a failed read and tells the code
// it ended with. A close from the client was answered by the library
// already. Invalid UTF-8 or compressed data gets 1007 from here. After any
// other error (a protocol violation, which the library has answered with a
// close frame of its own, or a connection gone) the TCP connection is closed
// at once: waiting for a closing handshake from a client that broke the
// protocol only keeps its connection open.
func failWebSocket(conn *websocket.Conn, err error, logger *zap.Logger) websocket.StatusCode {
	if code := websocket.CloseStatus(err); code != -1 {
		return code
	}
	var corrupt flate.CorruptInputError
	switch {
	case errors.Is(err, errTextUTF8), errors.Is(err, errCloseReason):
		conn.Close(websocket.StatusInvalidFramePayloadData, "invalid UTF-8")
		return websocket.StatusInvalidFramePayloadData
	case errors.As(err, &corrupt):
		conn.Close(websocket.StatusInvalidFramePayloadData, "invalid compressed data")
		return websocket.StatusInvalidFramePayloadData
	}
	conn.CloseNow()
	switch {
	case errors.Is(err, websocket.ErrMessageTooBig):
		return websocket.StatusMessageTooBig
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed),
		errors.Is(err, context.Canceled):
		return websocket.StatusAbnormalClosure
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return websocket.StatusAbnormalClosure
	}
	logger.Debug("websocket closed after a protocol error", zap.Error(err))
	return websocket.StatusProtocolError
}
