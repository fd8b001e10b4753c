package plugin

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// An app in `isolation process` runs in child processes of Caddy (process.go,
// child.go). Caddy and each child talk over one Unix stream socket, in frames:
// a little-endian u32 length of what follows it, a u8 type, a u64 id (a WSGI
// request's, an ASGI token, or 0), then the payload. A request crosses as the
// same bytes the in-process path hands to C, the packed CGI variables of
// environ.go or the ASGI events of loop.go: nothing is turned back into HTTP,
// and the child parses none.
//
// Flow control: a child sends at most respWindow bytes of one response ahead of
// what Caddy has written to the client (frAck tells it), and gets request body
// bytes only as the app asks for them (frRead). Neither side's reader ever
// waits on anything but its socket, so the two sockets always drain.

// Frame types, Caddy to a child:
const (
	frConfig  byte = 1 + iota // JSON childConfig
	frRequest                 // WSGI: env field, u8 more body to ask for, inline body
	frBody                    // WSGI: u8 bodyData|bodyEnd|bodyFailed, data: the answer to a frRead
	frAck                     // u32: bytes of the response Caddy has written to the client
	frGone                    // WSGI: the client is gone
	frEvents                  // ASGI: events for the event loop, packed as loop.go packs them
	frStop                    // finish the requests in flight, then exit
	// A child to Caddy:
	frReady    // "" once the app takes requests, else why it cannot
	frLog      // u8 zap level, message field, JSON object of the entry's fields
	frResponse // WSGI, the final part: u8 flags, head field, body
	frSend     // WSGI, a streamed part: u8 flags, head field, body
	frRead     // WSGI: u32: the app wants up to this many request body bytes
	frPost     // ASGI: u8 kind, u32 flags, a field, b
	// Caddy to a child again:
	frTimeout // WSGI: the request ran past its timeout (its method and URI): interrupt it
)

// What a frBody answers.
const (
	bodyData   byte = iota // the next bytes of the body, at least one
	bodyEnd                // the body is complete
	bodyFailed             // the client's upload broke off
)

const (
	frameHeader = 4 + 1 + 8
	// maxFrame bounds what a reader allocates for one frame: far above any
	// part the adapters send, below what would exhaust memory.
	maxFrame = 1 << 30
	// noField stands for a nil field (no head), as against an empty one.
	noField = ^uint32(0)
	// respWindow is how far a child's response may run ahead of the client.
	respWindow = pauseBytes
	// maxBodyPart bounds one frBody, whatever the app asked for.
	maxBodyPart = 256 << 10
)

var errBadFrame = errors.New("malformed frame")

// link is one end of the socket between Caddy and a child. Frames are built in
// place in the pending buffer; the goroutine that finds no write under way
// writes what is pending, its own frame and any queued meanwhile, so that under
// load many frames go out in one system call.
type link struct {
	conn io.ReadWriteCloser
	raw  syscall.RawConn
	rd   *bufio.Reader
	// A direct link (an ASGI process's, newDirectLink) is a blocking socket
	// off Go's poller, which the event loop's thread reads itself (pull).
	fd    int
	inbuf []byte // what pull read past the last whole frame

	mu      sync.Mutex
	start   int    // where the frame being built begins in pending
	pending []byte // frames not yet written
	spare   []byte
	writing bool
	err     error
	idle    sync.Cond     // broadcast when a write round ends
	kick    chan struct{} // wakes the flusher for frames queued without a write
	closed  chan struct{}
	once    sync.Once
}

func newLink(f *os.File) (*link, error) {
	c, err := net.FileConn(f) // a dup of f's descriptor, on Go's poller
	f.Close()
	if err != nil {
		return nil, err
	}
	l := &link{conn: c, fd: -1, rd: bufio.NewReaderSize(c, 256<<10), kick: make(chan struct{}, 1), closed: make(chan struct{})}
	if sc, ok := c.(syscall.Conn); ok {
		l.raw, _ = sc.SyscallConn()
	}
	l.idle.L = &l.mu
	go l.flusher()
	return l, nil
}

// newDirectLink is the link of an ASGI process: the event loop watches the
// blocking socket fd and reads its frames on its own thread when it wakes
// (pull), so that a request from Caddy reaches the app with no Go thread and
// no eventfd in between. Off Go's poller, no Go thread wakes for it either.
// Writes that must not wait pass MSG_DONTWAIT; the flusher's block in the
// kernel.
func newDirectLink(fd int) (*link, error) {
	if err := unix.SetNonblock(fd, false); err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), "caddy") // blocking: not on the poller
	l := &link{conn: f, fd: fd, kick: make(chan struct{}, 1), closed: make(chan struct{}), inbuf: make([]byte, 0, 64<<10)}
	l.idle.L = &l.mu
	go l.flusher()
	return l, nil
}

// writeNow writes what the socket takes at once, without waiting.
func (l *link) writeNow(out []byte) (n int, err error) {
	if l.fd >= 0 {
		n, err = unix.SendmsgN(l.fd, out, nil, nil, unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL)
		return n, err
	}
	if err := l.raw.Write(func(fd uintptr) bool {
		n, err = unix.Write(int(fd), out)
		return true // once: never wait for the socket here
	}); err != nil {
		return 0, err
	}
	return n, err
}

// pull reads every whole frame a direct link has received, without waiting,
// and hands each to fn; a payload is valid only until fn returns. io.EOF
// when Caddy closed the link.
func (l *link) pull(fn func(typ byte, id uint64, payload []byte) error) error {
	for {
		if cap(l.inbuf)-len(l.inbuf) < 16<<10 {
			l.inbuf = append(l.inbuf, make([]byte, 64<<10)...)[:len(l.inbuf)]
		}
		free := l.inbuf[len(l.inbuf):cap(l.inbuf)]
		n, _, err := unix.Recvfrom(l.fd, free, unix.MSG_DONTWAIT)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return nil
		case err != nil:
			return err
		case n == 0:
			return io.EOF
		}
		l.inbuf = l.inbuf[:len(l.inbuf)+n]
		p := l.inbuf
		for len(p) >= frameHeader {
			size := binary.LittleEndian.Uint32(p)
			if size < frameHeader-4 || size > maxFrame {
				return errBadFrame
			}
			if uint64(len(p)) < 4+uint64(size) {
				break
			}
			if err := fn(p[4], binary.LittleEndian.Uint64(p[5:]), p[frameHeader:4+size]); err != nil {
				return err
			}
			p = p[4+size:]
		}
		// Keep the part of a frame not yet whole at the start of the buffer;
		// a buffer a huge frame grew is let go once that frame is through.
		rest := copy(l.inbuf, p)
		l.inbuf = l.inbuf[:rest]
		if rest == 0 && cap(l.inbuf) > 1<<20 {
			l.inbuf = make([]byte, 0, 64<<10)
		}
		if n < len(free) {
			return nil // the socket had no more
		}
	}
}

// begin starts a frame; the caller appends its payload to the returned buffer
// and hands it to end. The link stays locked in between.
func (l *link) begin(typ byte, id uint64) []byte {
	l.mu.Lock()
	l.start = len(l.pending)
	b := append(l.pending, 0, 0, 0, 0, typ)
	return binary.LittleEndian.AppendUint64(b, id)
}

// How end has the frame written.
const (
	writeAsync  = iota // by the flusher goroutine
	writeTry           // here if the socket takes it at once, the rest by the flusher
	writeInline        // here, waiting for the socket if need be
	writeLater         // with the next write, or when the caller calls flush
)

// end completes the frame begun on b. Unless another goroutine is writing
// already (which then writes this frame too), it is written as mode says: a
// caller that must not wait on the socket (the event loop, holding its GIL)
// tries once and leaves the rest to the flusher goroutine.
func (l *link) end(b []byte, inline bool) error {
	if inline {
		return l.endMode(b, writeInline)
	}
	return l.endMode(b, writeAsync)
}

func (l *link) endMode(b []byte, mode int) error {
	binary.LittleEndian.PutUint32(b[l.start:], uint32(len(b)-l.start-4))
	l.pending = b
	if l.err != nil {
		l.pending = l.pending[:l.start]
		err := l.err
		l.mu.Unlock()
		return err
	}
	if l.writing {
		l.mu.Unlock()
		return nil
	}
	switch {
	case mode == writeLater:
		l.mu.Unlock()
		return nil
	case mode == writeTry && (l.raw != nil || l.fd >= 0):
		l.tryLocked()
	case mode == writeInline:
		l.flushLocked()
	}
	pending, err := len(l.pending) > 0, l.err
	l.mu.Unlock()
	if pending && err == nil {
		l.wakeFlusher()
	}
	return err
}

// flush writes what writeLater left pending, unless a write is under way
// (which takes it along).
func (l *link) flush() {
	l.mu.Lock()
	if !l.writing && l.err == nil && len(l.pending) > 0 {
		l.flushLocked()
	}
	l.mu.Unlock()
}

func (l *link) wakeFlusher() {
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

// tryLocked writes what is pending as far as the socket takes it without
// waiting. Called with mu held and no write under way; mu is released around
// the write.
func (l *link) tryLocked() {
	l.writing = true
	out := l.pending
	l.pending = l.spare[:0]
	l.mu.Unlock()
	n, werr := l.writeNow(out)
	l.mu.Lock()
	n = max(n, 0)
	switch {
	case werr != nil && werr != unix.EAGAIN:
		l.err = werr
		l.pending = l.pending[:0]
	case n < len(out):
		// What the socket did not take goes first, before what was queued meanwhile.
		l.pending = append(append(make([]byte, 0, len(out)-n+len(l.pending)), out[n:]...), l.pending...)
	default:
		if cap(out) <= 1<<20 {
			l.spare = out[:0]
		}
	}
	l.writing = false
	l.idle.Broadcast()
}

// flushLocked writes until nothing is pending. Called with mu held and no
// write under way; mu is released around each write.
func (l *link) flushLocked() {
	l.writing = true
	for len(l.pending) > 0 && l.err == nil {
		out := l.pending
		l.pending = l.spare[:0]
		l.mu.Unlock()
		_, err := l.conn.Write(out)
		l.mu.Lock()
		if err != nil {
			l.err = err
			l.pending = l.pending[:0]
		}
		// Keep a buffer for the next round, but not one a huge frame grew.
		if cap(out) <= 1<<20 {
			l.spare = out[:0]
		} else {
			l.spare = nil
		}
	}
	l.writing = false
	l.idle.Broadcast()
}

func (l *link) flusher() {
	for {
		select {
		case <-l.kick:
		case <-l.closed:
			return
		}
		l.mu.Lock()
		if !l.writing {
			l.flushLocked()
		}
		l.mu.Unlock()
	}
}

// drain waits until every frame queued so far is written, or the link failed.
func (l *link) drain() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for l.err == nil && (l.writing || len(l.pending) > 0) {
		if !l.writing {
			l.flushLocked()
			continue
		}
		l.idle.Wait()
	}
	return l.err
}

// close ends the link; a read under way returns an error.
func (l *link) close() {
	l.once.Do(func() {
		close(l.closed)
		l.conn.Close()
		l.mu.Lock()
		if l.err == nil {
			l.err = net.ErrClosed
		}
		l.mu.Unlock()
	})
}

// read returns the next frame. The payload is the caller's to keep.
func (l *link) read() (typ byte, id uint64, payload []byte, err error) {
	var h [frameHeader]byte
	if _, err = io.ReadFull(l.rd, h[:]); err != nil {
		return 0, 0, nil, err
	}
	n := binary.LittleEndian.Uint32(h[:4])
	if n < frameHeader-4 || n > maxFrame {
		return 0, 0, nil, errBadFrame
	}
	payload = make([]byte, n-(frameHeader-4))
	if _, err = io.ReadFull(l.rd, payload); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return 0, 0, nil, err
	}
	return h[4], binary.LittleEndian.Uint64(h[5:]), payload, nil
}

// send writes a frame whose payload is the concatenation of parts.
func (l *link) send(typ byte, id uint64, parts ...[]byte) error {
	b := l.begin(typ, id)
	for _, p := range parts {
		b = append(b, p...)
	}
	return l.end(b, true)
}

// sendPart writes a response part (frResponse or frSend): flags, head, body.
func (l *link) sendPart(typ byte, id uint64, flags int, head, body []byte, inline bool) error {
	b := l.begin(typ, id)
	b = append(b, byte(flags))
	b = appendField(b, head)
	b = append(b, body...)
	return l.end(b, inline)
}

func (l *link) sendU32(typ byte, id uint64, n uint32) error {
	b := l.begin(typ, id)
	b = binary.LittleEndian.AppendUint32(b, n)
	return l.end(b, true)
}

// appendField appends f with its u32 length; a nil f as noField.
func appendField(b, f []byte) []byte {
	if f == nil {
		return binary.LittleEndian.AppendUint32(b, noField)
	}
	b = binary.LittleEndian.AppendUint32(b, uint32(len(f)))
	return append(b, f...)
}

// cutField reads a field appendField wrote: nil for noField.
func cutField(p []byte) (field, rest []byte, err error) {
	if len(p) < 4 {
		return nil, nil, errBadFrame
	}
	n := binary.LittleEndian.Uint32(p)
	p = p[4:]
	if n == noField {
		return nil, p, nil
	}
	if uint64(n) > uint64(len(p)) {
		return nil, nil, errBadFrame
	}
	return p[:n:n], p[n:], nil
}

// cutPart reads what sendPart wrote.
func cutPart(p []byte) (flags int, head, body []byte, err error) {
	if len(p) < 1 {
		return 0, nil, nil, errBadFrame
	}
	head, body, err = cutField(p[1:])
	return int(p[0]), head, body, err
}

// eachEvent walks a batch of loop events (loop.go's layout: u32 count, then
// per event u8 kind, u64 token, u16 field count, u32-prefixed fields) and
// calls fn with each event's kind, token and fields, stopping when fn returns
// false. The fields slice is reused between calls.
func eachEvent(batch []byte, fn func(kind byte, token uint64, fields [][]byte) bool) error {
	if len(batch) < 4 {
		return errBadFrame
	}
	count := binary.LittleEndian.Uint32(batch)
	p := batch[4:]
	var fields [][]byte
	for i := uint32(0); i < count; i++ {
		if len(p) < eventHead {
			return errBadFrame
		}
		kind, token, n := p[0], binary.LittleEndian.Uint64(p[1:]), int(binary.LittleEndian.Uint16(p[9:]))
		p = p[eventHead:]
		fields = fields[:0]
		for f := 0; f < n; f++ {
			if len(p) < 4 {
				return errBadFrame
			}
			flen := binary.LittleEndian.Uint32(p)
			if uint64(flen) > uint64(len(p)-4) {
				return errBadFrame
			}
			fields = append(fields, p[4:4+flen])
			p = p[4+flen:]
		}
		if !fn(kind, token, fields) {
			return nil
		}
	}
	if len(p) != 0 {
		return errBadFrame
	}
	return nil
}
