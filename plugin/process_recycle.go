package plugin

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/zap"
)

// Recycling an `isolation process` app: a process that has served
// max_requests requests and WebSockets (plus its jitter), or whose resident
// memory (RSS, all the kernel counts for it: every allocator's, C
// extensions' and the Go runtime's) grew past max_memory, is replaced as a
// whole, as gunicorn's --max-requests and Granian's --workers-max-rss do.
// Its slot's supervisor starts a new process while the old one serves on;
// once the new one is ready it takes the slot's new requests, and the old
// one retires: it finishes every request it has, streams and WebSockets
// included, within the grace of a stop (WebSockets still open then are
// closed with 1001), then stops as on a reload. Nothing is refused or
// dropped on the way. The memory is read from Caddy's side, once per
// memoryCheckEvery, so a process is recycled even when what grows is no
// request's doing.

// memoryCheckEvery is how often a slot reads its process's RSS.
const memoryCheckEvery = time.Second

// recycleCall is why a slot's supervisor replaces its process.
type recycleCall struct {
	cause string // "max_requests 1000 reached: ...", "max_memory ... exceeded: ..."
	rss   int64  // max_memory: the RSS that exceeded it
}

// recycleView is the last recycle of a slot in GET /python/apps.
type recycleView struct {
	PID    int       `json:"pid"` // the process replaced
	Cause  string    `json:"cause"`
	At     time.Time `json:"at"`
	Served int64     `json:"served"` // requests it had finished by then
}

// counted records a request or WebSocket c finished: the retiring c's drain
// is told, a serving c may be due for max_requests.
func (c *child) counted() {
	n := c.served.Add(1)
	if c.retiring.Load() {
		select {
		case c.settled <- struct{}{}:
		default:
		}
		return
	}
	if c.limit > 0 && n == c.limit {
		select {
		case c.slot.due <- struct{}{}:
		default: // a call is pending: the supervisor checks its process's count then
		}
	}
}

// requestsDue tells whether c has served its max_requests.
func (s *slot) requestsDue(c *child) (recycleCall, bool) {
	if c.limit <= 0 || c.served.Load() < c.limit || s.pa.recycleOff.Load() {
		return recycleCall{}, false
	}
	return recycleCall{
		cause: fmt.Sprintf("max_requests %d reached: %d requests served", s.pa.cfg.controls.maxRequests, c.limit)}, true
}

// overMemory tells whether c's RSS is past max_memory.
func (s *slot) overMemory(c *child) (recycleCall, bool) {
	pa := s.pa
	limit := pa.cfg.controls.maxMemory
	if limit <= 0 || pa.memoryOff.Load() || pa.recycleOff.Load() {
		return recycleCall{}, false
	}
	rss, ok := residentBytes(c.pid)
	if !ok || int64(rss) <= limit {
		return recycleCall{}, false
	}
	return recycleCall{rss: int64(rss),
		cause: fmt.Sprintf("max_memory %s exceeded: its RSS is %s", sizeText(limit), sizeText(int64(rss)))}, true
}

// checkFresh turns recycling on memory off for the app when a process that
// just started is over max_memory already: replacing it would start one
// such process after another.
func (s *slot) checkFresh(c *child) {
	pa := s.pa
	limit := pa.cfg.controls.maxMemory
	if limit <= 0 || pa.memoryOff.Load() {
		return
	}
	rss, ok := residentBytes(c.pid)
	if !ok || int64(rss) <= limit || !pa.memoryOff.CompareAndSwap(false, true) {
		return
	}
	c.logger.Error(fmt.Sprintf("max_memory %s is below the RSS of a freshly started process of the app (%s): "+
		"recycling on memory is off for this app; raise max_memory above what a process uses once it has "+
		"served (the admin API's rss_bytes shows it)", sizeText(limit), sizeText(int64(rss))),
		zap.Int("process", s.index), zap.Int64("rss_bytes", int64(rss)), zap.Int64("max_memory", limit))
}

// replace starts a process to take old's place and lets old retire. It
// returns the slot's process now: the new one, or old when the new one
// could not start.
func (s *slot) replace(old *child, call recycleCall) *child {
	pa := s.pa
	if pa.recycleOff.Load() {
		return old
	}
	served := old.served.Load()
	fields := []zap.Field{zap.Int("process", s.index), zap.Int64("served", served)}
	if call.rss > 0 {
		fields = append(fields, zap.Int64("rss_bytes", call.rss), zap.Int64("max_memory", pa.cfg.controls.maxMemory))
	} else {
		fields = append(fields, zap.Int64("max_requests", old.limit))
	}
	old.logger.Info("recycling the app's process: "+call.cause, fields...)
	fresh, err := s.start(old)
	if err != nil {
		if !errors.Is(err, errClosed) {
			pa.recycleOff.Store(true)
			old.logger.Error("cannot recycle the app's process: its replacement failed to start, so it goes on "+
				"serving and recycling is off for this app", zap.Int("process", s.index), zap.Error(err))
		}
		return old
	}
	// The metric's reason is the directive that caused it: the cause's first word.
	reason, _, _ := strings.Cut(call.cause, " ")
	pa.app.metrics.Restarted(reason)
	pa.mu.Lock()
	s.recycles++
	s.lastRecycle = &recycleView{PID: old.pid, Cause: call.cause, At: time.Now(), Served: served}
	pa.mu.Unlock()
	if !old.retiring.Load() {
		// It died while its replacement started.
		<-old.ended
		s.recordDeath(old, false)
		s.logDeath(old, "a new process serves in its place already")
		return fresh
	}
	pa.wg.Add(1)
	go s.drain(old, fresh)
	return fresh
}

// drain waits until the retiring c has finished what it runs, or for the
// grace of a stop, then ends it.
func (s *slot) drain(c, fresh *child) {
	pa := s.pa
	defer pa.wg.Done()
	defer s.forget(c)
	grace := time.NewTimer(pa.cfg.stopGrace())
	defer grace.Stop()
wait:
	for !c.idle() {
		select {
		case <-c.settled:
		case <-c.ended:
			break wait
		case <-grace.C:
			c.goAway()
			break wait
		case <-pa.stopping:
			break wait
		}
	}
	if c.isDead() {
		<-c.ended
		s.recordDeath(c, false)
		s.logDeath(c, "it was retiring after a recycle, and a new process serves in its place already")
		return
	}
	s.end(c)
	c.logger.Info("app process recycled", zap.Int("process", s.index), zap.Int("new_pid", fresh.pid),
		zap.Int64("served", c.served.Load()), zap.String("exit", c.status))
}

// goAway closes the WebSockets c still has with 1001, as a reload does: the
// client connects again, to the slot's new process.
func (c *child) goAway() {
	c.mu.Lock()
	var sockets []uint64
	for token, what := range c.owned {
		if what.websocket {
			sockets = append(sockets, token)
		}
	}
	c.mu.Unlock()
	for _, token := range sockets {
		if v, ok := asgiRequests.Load(token); ok {
			v.(*asgiRequest).push(outMsg{kind: postWSClose, flags: int(websocket.StatusGoingAway), a: []byte("server restarting")})
		}
	}
}

// idle tells whether c has nothing left to run.
func (c *child) idle() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dead || len(c.requests) == 0 && len(c.owned) == 0
}

func (c *child) isDead() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dead
}

// retired is the slot's retiring processes.
func (s *slot) retired() []*child {
	if r := s.retiring.Load(); r != nil {
		return *r
	}
	return nil
}

// setRetiring replaces the list; the caller holds pa.mu (and pumpMu when it
// adds to it).
func (s *slot) setRetiring(list []*child) {
	if len(list) == 0 {
		s.retiring.Store(nil)
		return
	}
	s.retiring.Store(&list)
}

// forget drops an ended retiring process from the slot.
func (s *slot) forget(c *child) {
	pa := s.pa
	pa.mu.Lock()
	defer pa.mu.Unlock()
	var keep []*child
	for _, x := range s.retired() {
		if x != c {
			keep = append(keep, x)
		}
	}
	s.setRetiring(keep)
}

// owner is the process that runs ASGI token: a retiring one, or the slot's.
func (s *slot) owner(token uint64) *child {
	for _, c := range s.retired() {
		if c.holds(token) {
			return c
		}
	}
	return s.cur.Load()
}

func (c *child) holds(token uint64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.owned[token]
	return ok
}

// routeEvents sends the events of a batch that belong to requests of the
// retiring processes to them, and returns the others, packed the same way,
// for the slot's process.
func routeEvents(batch []byte, retiring []*child) []byte {
	rest := make([]byte, 4, len(batch))
	var restCount uint32
	theirs := make([][]byte, len(retiring))
	eachEvent(batch, func(kind byte, token uint64, fields [][]byte) bool {
		to := -1
		if kind != evHTTP && kind != evWebSocket {
			for i, c := range retiring {
				if c.holds(token) {
					to = i
					break
				}
			}
		}
		if to < 0 {
			rest = appendEvent(rest, kind, token, fields)
			restCount++
			return true
		}
		if theirs[to] == nil {
			theirs[to] = make([]byte, 4, 256)
		}
		theirs[to] = appendEvent(theirs[to], kind, token, fields)
		binary.LittleEndian.PutUint32(theirs[to], binary.LittleEndian.Uint32(theirs[to])+1)
		return true
	})
	for i, b := range theirs {
		if b != nil {
			retiring[i].sendEvents(b)
		}
	}
	binary.LittleEndian.PutUint32(rest, restCount)
	return rest
}
