package plugin

/*
#cgo CFLAGS: -I${SRCDIR}/../runtime
#include "vivarium.h"
*/
import "C"

import (
	"sync"
	"sync/atomic"
	"unsafe"
)

// The functions exported here are the only ways C calls into Go. Each runs on
// a C worker thread with the interpreter's GIL released.

// maxWorkers bounds the worker table; far above what fits in one process.
const maxWorkers = 1 << 14

// workerTable maps a C worker's id, and the high half of a request token, to
// its Go side without locks on the request path.
var workerTable [maxWorkers]atomic.Pointer[worker]

var workerIDs struct {
	sync.Mutex
	free []int
	next int
}

func allocWorkerID() (int, bool) {
	workerIDs.Lock()
	defer workerIDs.Unlock()
	if n := len(workerIDs.free); n > 0 {
		id := workerIDs.free[n-1]
		workerIDs.free = workerIDs.free[:n-1]
		return id, true
	}
	if workerIDs.next >= maxWorkers {
		return 0, false
	}
	workerIDs.next++
	return workerIDs.next - 1, true
}

func freeWorkerID(id int) {
	workerTable[id].Store(nil)
	workerIDs.Lock()
	workerIDs.free = append(workerIDs.free, id)
	workerIDs.Unlock()
}

func cBytes(p *C.char, n C.size_t) []byte {
	if p == nil {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(p)), int(n))
}

// vvServe finishes the worker's current request with the final part of its
// response, then takes the next request if one waits, copying its packed CGI
// variables into the worker's C buffer. It never blocks: 1 means run the
// request, 0 sleep on the worker's semaphore and ask again, -1 exit.
//
//export vvServe
func vvServe(cw *C.vv_worker, head *C.char, headLen C.size_t, body *C.char, bodyLen C.size_t, flags C.int) C.int {
	w := workerTable[cw.id].Load()
	var gilWait int64
	if req := w.cur; req != nil {
		w.cur = nil
		gilWait = int64(cw.gil_wait_ns)
		req.finish(cBytes(head, headLen), cBytes(body, bodyLen), int(flags), w.pool.queued.Load() == 0)
		if w.host != nil {
			w.host.served()
		}
	}
	for {
		req, what := w.pool.next(w, gilWait)
		gilWait = 0
		switch what {
		case nextIdle:
			return 0
		case nextExit:
			return -1
		}
		n := len(req.env)
		if C.vv_worker_reserve(cw, C.size_t(n)) != 0 {
			req.finish(nil, nil, flagAbort, false)
			continue
		}
		copy(unsafe.Slice((*byte)(unsafe.Pointer(cw.buf)), n), req.env)
		cw.len = C.size_t(n)
		w.seq++
		cw.seq = C.uint32_t(w.seq)
		w.cur = req
		req.runningOn(w)
		return 1
	}
}

// current resolves a token to the request it was issued for; nil when that
// request is over (an app kept wsgi.input or write() past its response).
func current(token C.uint64_t) *request {
	id := int(token >> 32)
	if id >= maxWorkers {
		return nil
	}
	w := workerTable[id].Load()
	if w == nil || w.seq != uint32(token) {
		return nil
	}
	return w.cur
}

// vvSend writes part of a streamed response. Returns -1 once the client is gone.
//
//export vvSend
func vvSend(token C.uint64_t, head *C.char, headLen C.size_t, body *C.char, bodyLen C.size_t, flags C.int) C.int {
	req := current(token)
	if req == nil {
		return -1
	}
	if err := req.sendPart(cBytes(head, headLen), cBytes(body, bodyLen), int(flags)); err != nil {
		return -1
	}
	return 0
}

// vvRead reads the request body into buf: > 0 bytes, 0 at its end, or
// VV_READ_GONE / VV_READ_MALFORMED.
//
//export vvRead
func vvRead(token C.uint64_t, buf *C.char, n C.size_t) C.ptrdiff_t {
	req := current(token)
	if req == nil {
		return C.VV_READ_GONE
	}
	got, err := req.read(cBytes(buf, n))
	if err != nil {
		if bodyStatus(err) != 0 {
			return C.VV_READ_MALFORMED
		}
		return C.VV_READ_GONE
	}
	return C.ptrdiff_t(got)
}

// vvLog writes one line the app printed, or an error we report, to Caddy's log.
//
//export vvLog
func vvLog(appID C.uint64_t, kind C.int, msg *C.char, n C.size_t) {
	logAppLine(uint64(appID), int(kind), string(cBytes(msg, n)))
}

// vvPoll hands the event loop of an ASGI worker every event queued for it,
// copied into the worker's C buffer.
//
//export vvPoll
func vvPoll(id C.int, buf **C.char, n *C.size_t) C.int {
	w := workerTable[id].Load()
	if w == nil || w.loop == nil {
		return -1
	}
	if inChild != nil && inChild.direct {
		inChild.pull(w.loop)
	}
	cw := w.c
	size := -1
	w.loop.drainInbox(func(events []byte) {
		if C.vv_worker_reserve(cw, C.size_t(len(events))) == 0 {
			copy(unsafe.Slice((*byte)(unsafe.Pointer(cw.buf)), len(events)), events)
			size = len(events)
		}
	})
	if size < 0 {
		return -1
	}
	*buf = cw.buf
	*n = C.size_t(size)
	return 0
}

// vvPost queues a message from an ASGI app for its client.
//
//export vvPost
func vvPost(token C.uint64_t, kind C.int, a *C.char, aLen C.size_t, b *C.char, bLen C.size_t, flags C.int) C.int {
	var ab []byte
	if a != nil {
		ab = cBytes(a, aLen)
	}
	if inChild != nil {
		return C.int(inChild.post(uint64(token), int(kind), ab, cBytes(b, bLen), int(flags)))
	}
	return C.int(vvPostGo(uint64(token), int(kind), ab, cBytes(b, bLen), int(flags)))
}

// vvReady reports the outcome of an ASGI app's startup (lifespan).
//
//export vvReady
func vvReady(id C.int, msg *C.char, n C.size_t) {
	w := workerTable[id].Load()
	if w == nil || w.loop == nil {
		return
	}
	select {
	case w.loop.ready <- string(cBytes(msg, n)):
	default: // already reported
	}
}
