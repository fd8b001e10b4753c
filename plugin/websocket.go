package plugin

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/coder/websocket"
	"go.uber.org/zap"
)

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
func (p *Python) serveWebSocket(w http.ResponseWriter, r *http.Request) error {
	q, err := p.app.newASGIRequest()
	if err != nil {
		w.Header().Set("Retry-After", "1")
		return caddyhttp.Error(http.StatusServiceUnavailable, fmt.Errorf("%s: %w", p.name(), err))
	}
	defer q.release()
	q.loop.post(evWebSocket, q.token, scopeFields(r, p.ScriptName, nil, false)...)

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
				q.loop.post(evWSClose, q.token, "1006")
			}
			continue
		case <-q.loop.closing:
			if conn == nil {
				return caddyhttp.Error(http.StatusServiceUnavailable, errClosed)
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
				opts := &websocket.AcceptOptions{
					// Origin policy is the app's to decide, as under uvicorn.
					InsecureSkipVerify: true,
				}
				if len(m.a) > 0 {
					opts.Subprotocols = []string{string(m.a)}
				}
				for h := m.b; len(h) > 0; {
					var name, value []byte
					name, h, _ = bytes.Cut(h, []byte{0})
					value, h, _ = bytes.Cut(h, []byte{0})
					w.Header().Add(string(name), string(value))
				}
				conn, err = websocket.Accept(w, r, opts)
				if err != nil {
					p.logger.Debug("websocket handshake failed", zap.Error(err))
					if q.markGone() {
						q.loop.post(evWSClose, q.token, "1006")
					}
					continue
				}
				conn.SetReadLimit(wsReadLimit)
				go relayIncoming(ctx, conn, q)
			case postWSText, postWSBytes:
				if conn == nil {
					continue
				}
				typ := websocket.MessageText
				if m.kind == postWSBytes {
					typ = websocket.MessageBinary
				}
				if err := conn.Write(ctx, typ, m.b); err != nil && q.markGone() {
					q.loop.post(evWSClose, q.token, "1006")
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

// relayIncoming posts each message from the client to the loop, then its close code.
func relayIncoming(ctx context.Context, conn *websocket.Conn, q *asgiRequest) {
	for {
		typ, data, err := conn.Read(ctx)
		if err != nil {
			code := websocket.CloseStatus(err)
			if code == -1 {
				code = websocket.StatusAbnormalClosure
			}
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
	}
}
