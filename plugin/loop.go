package plugin

/*
#include "vivarium.h"
*/
import "C"

import (
	"encoding/binary"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// An ASGI interpreter runs one asyncio event loop on one C worker thread. Go
// talks to it through an inbox of packed events and an eventfd the loop
// watches with add_reader: posting to an empty inbox writes the eventfd once,
// and the loop drains every pending event in one call (vvPoll). No thread per
// request, no polling.

type loop struct {
	efd      int
	active   atomic.Int64  // requests in flight, for picking the least busy loop
	requests atomic.Uint64 // requests and WebSockets it was given, for the admin API
	ready    chan string   // startup outcome: "" ok, else the error
	closing  chan struct{} // closed when the app stops: WebSockets are told so
	exited   chan struct{} // closed when the loop thread is gone: nothing will answer
	host     *interpreter  // the interpreter whose thread runs it
	cw       *C.vv_worker  // that thread's C half: whether a post must write efd
	serving  atomic.Bool   // takes new requests: started and not being replaced

	// The loop of one process of an `isolation process` app (process.go): a
	// post goes to that process over its link instead of to the eventfd.
	remote *slot

	mu       sync.Mutex
	events   []byte // u32 count, then events
	count    uint32
	signaled bool
	shut     bool // evShutdown is posted: no new request may follow it
}

func newLoop() (*loop, error) {
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, err
	}
	return &loop{efd: efd, ready: make(chan string, 1), closing: make(chan struct{}), exited: make(chan struct{}), events: make([]byte, 4, 4096)}, nil
}

// post queues an event with its fields and wakes the loop if it sleeps. The
// fields are copied before post returns (see bytesField).
func (l *loop) post(kind byte, token uint64, fields ...string) {
	l.mu.Lock()
	l.shut = l.shut || kind == evShutdown
	wake := l.queue(kind, token, fields)
	l.mu.Unlock()
	l.notify(wake)
}

// open posts the first event of a request or WebSocket, unless the loop was
// told to shut down: one that arrived after that event would never be run.
func (l *loop) open(kind byte, token uint64, fields ...string) bool {
	l.mu.Lock()
	if l.shut {
		l.mu.Unlock()
		return false
	}
	wake := l.queue(kind, token, fields)
	l.mu.Unlock()
	l.notify(wake)
	return true
}

// queue adds an event to the inbox and tells whether the loop needs waking.
// Caller holds l.mu.
func (l *loop) queue(kind byte, token uint64, fields []string) bool {
	l.events = appendEvent(l.events, kind, token, fields)
	l.count++
	wake := !l.signaled
	l.signaled = true
	return wake
}

// appendEvent packs one event, as the inbox holds it and eachEvent reads it.
func appendEvent[F string | []byte](b []byte, kind byte, token uint64, fields []F) []byte {
	b = append(b, kind)
	b = binary.LittleEndian.AppendUint64(b, token)
	b = binary.LittleEndian.AppendUint16(b, uint16(len(fields)))
	for _, f := range fields {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(f)))
		b = append(b, f...)
	}
	return b
}

// postPacked queues a batch of events packed as post packs them, count first:
// what Caddy sends a child process's loop (child.go).
func (l *loop) postPacked(batch []byte) {
	l.notify(l.queuePacked(batch))
}

// queuePacked adds a packed batch to the inbox without waking the loop, and
// tells whether it needs waking: the loop's own thread, which takes the
// inbox next (child.go's pull), does not.
func (l *loop) queuePacked(batch []byte) bool {
	l.mu.Lock()
	l.events = append(l.events, batch[4:]...)
	l.count += binary.LittleEndian.Uint32(batch)
	wake := !l.signaled
	l.signaled = true
	l.mu.Unlock()
	return wake
}

// putBack returns a drained batch, count first, to the front of the inbox,
// for a process's loop while none of its processes takes them: the next post
// pumps again.
func (l *loop) putBack(batch []byte) {
	l.mu.Lock()
	l.events = append(append(l.events[:4:4], batch[4:]...), l.events[4:]...)
	l.count += binary.LittleEndian.Uint32(batch)
	l.signaled = false
	l.mu.Unlock()
}

// pending tells whether events wait in the inbox.
func (l *loop) pending() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.count > 0
}

// notify wakes the loop when it needs waking: the eventfd it watches, or,
// for a process's loop, the pump that sends its events to the process.
func (l *loop) notify(needed bool) {
	switch {
	case !needed:
	case l.remote != nil:
		l.remote.pump()
	case l.cw != nil && C.vv_loop_wake(l.cw) == 0:
		// The loop spins before it would sleep: it sees the post itself.
	default:
		var one [8]byte
		binary.NativeEndian.PutUint64(one[:], 1)
		unix.Write(l.efd, one[:])
	}
}

// drainInbox hands every pending event to fill (which copies them into C
// memory, or into a frame to a child) and empties the inbox.
func (l *loop) drainInbox(fill func([]byte)) {
	l.mu.Lock()
	binary.LittleEndian.PutUint32(l.events[:4], l.count)
	fill(l.events)
	l.events = l.events[:4]
	l.count = 0
	l.signaled = false
	l.mu.Unlock()
}

func (l *loop) close() {
	unix.Close(l.efd)
}

// bytesField passes b to post without a copy of its own: post copies every
// field into the inbox before it returns.
func bytesField(b []byte) string {
	return unsafe.String(unsafe.SliceData(b), len(b))
}
