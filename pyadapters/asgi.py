"""The ASGI 3 adapter: an asyncio event loop per interpreter.

The loop runs on the interpreter's one C worker thread. Go queues events for
it (new requests, body parts, disconnects, WebSocket messages) and writes an
eventfd the loop watches; one poll() drains them all. The app's messages go
back through post(), which only queues them in Go, so the loop never blocks
on a slow client: past a bound, send() waits for a resume event instead.
"""

from __future__ import annotations

import asyncio
import operator
import os
import selectors
import traceback
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Awaitable, Callable

import _vivarium
from vivarium_boot import REQUEST_CODES, header_block

DEFAULT_ATTR = "app"

# The codes and the order of the scope fields are runtime/vivarium.h's.
EV_HTTP, EV_WEBSOCKET, EV_BODY, EV_DISCONNECT = _vivarium.EV_HTTP, _vivarium.EV_WEBSOCKET, _vivarium.EV_BODY, _vivarium.EV_DISCONNECT
EV_RESUME, EV_SHUTDOWN, EV_TIMEOUT = _vivarium.EV_RESUME, _vivarium.EV_SHUTDOWN, _vivarium.EV_TIMEOUT
EV_WS_TEXT, EV_WS_BYTES, EV_WS_CLOSE = _vivarium.EV_WS_TEXT, _vivarium.EV_WS_BYTES, _vivarium.EV_WS_CLOSE
POST_HTTP, POST_WANT_BODY, POST_DONE = _vivarium.POST_HTTP, _vivarium.POST_WANT_BODY, _vivarium.POST_DONE
POST_WS_ACCEPT, POST_WS_TEXT = _vivarium.POST_WS_ACCEPT, _vivarium.POST_WS_TEXT
POST_WS_BYTES, POST_WS_CLOSE = _vivarium.POST_WS_BYTES, _vivarium.POST_WS_CLOSE
POST_OK, POST_PAUSE, POST_GONE = _vivarium.POST_OK, _vivarium.POST_PAUSE, _vivarium.POST_GONE
MORE = _vivarium.MORE
ABORT = _vivarium.ABORT
TIMED_OUT = _vivarium.TIMED_OUT
WS_NO_STATUS = _vivarium.WS_NO_STATUS
SCOPE_BODY, SCOPE_MORE = _vivarium.SCOPE_BODY, _vivarium.SCOPE_MORE

_post = _vivarium.post
RequestTimeout = _vivarium.RequestTimeout
StartTimeout = _vivarium.StartTimeout

Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[dict[str, Any], Receive, Send], Awaitable[None]]

ASGI_VERSION = {"version": "3.0", "spec_version": "2.4"}

# The innermost frames of a logged traceback: one of a runaway recursion
# would otherwise hold millions.
TRACEBACK_LIMIT = 100

# How long requests in flight may take to finish when the app is stopped, by
# default; Go passes its own ("drain"), below its bound on the whole stop
# (plugin/stop.go).
DRAIN_SECONDS = 25.0


class ClientDisconnected(OSError):
    """send() after the client went away, as ASGI 2.4 asks of servers."""


def _log_exception(what: str) -> None:
    _vivarium.log(_vivarium.LOG_ERROR, f"{what}\n{traceback.format_exc(limit=-TRACEBACK_LIMIT)}")


# The scope's fields out of a request's event, in one call.
_scope_fields = operator.itemgetter(
    _vivarium.SCOPE_HTTP_VERSION, _vivarium.SCOPE_METHOD, _vivarium.SCOPE_SCHEME, _vivarium.SCOPE_PATH,
    _vivarium.SCOPE_RAW_PATH, _vivarium.SCOPE_QUERY, _vivarium.SCOPE_ROOT_PATH, _vivarium.SCOPE_HEADERS,
    _vivarium.SCOPE_CLIENT_HOST, _vivarium.SCOPE_CLIENT_PORT, _vivarium.SCOPE_SERVER_HOST,
    _vivarium.SCOPE_SERVER_PORT)


def _scope(kind: str, fields: tuple[bytes, ...], state: dict[str, Any] | None) -> dict[str, Any]:
    (http_version, method, scheme, path, raw_path, query, root_path, headers,
     client_host, client_port, server_host, server_port) = _scope_fields(fields)
    hl = headers.split(b"\0") if headers else []
    scope: dict[str, Any] = {
        "type": kind,
        "asgi": ASGI_VERSION,
        "http_version": http_version.decode(),
        "scheme": scheme.decode() if kind == "http" else ("wss" if scheme == b"https" else "ws"),
        "path": path.decode("utf-8", "surrogateescape"),
        "raw_path": raw_path,
        "query_string": query,
        "root_path": root_path.decode("utf-8", "surrogateescape"),
        "headers": list(zip(hl[::2], hl[1::2])),
        "client": (client_host.decode(), int(client_port)) if client_port else None,
        "server": (server_host.decode(), int(server_port)) if server_port else None,
    }
    if kind == "http":
        scope["method"] = method.decode()
    else:
        protocols = [
            p.strip()
            for name, value in scope["headers"]
            if name == b"sec-websocket-protocol"
            for p in value.decode("latin-1").split(",")
        ]
        scope["subprotocols"] = [p for p in protocols if p]
    if state is not None:
        # Each request gets a shallow copy of what lifespan startup left.
        scope["state"] = dict(state)
    return scope


class Cycle:
    """What HTTP requests and WebSockets share: a token, a task, flow control."""

    def __init__(self, server: Server, token: int) -> None:
        self.server = server
        self.token = token
        self.gone = False
        self._resume: asyncio.Future[None] | None = None
        self.task: asyncio.Task[None] | None = None

    async def _post(self, kind: int, a: bytes | None, b: bytes | memoryview, flags: int) -> None:
        paused = self._post_now(kind, a, b, flags)
        if paused is not None:
            await paused

    def _post_now(self, kind: int, a: bytes | None, b: bytes | memoryview, flags: int) -> asyncio.Future[None] | None:
        """Posts a part; what to await when Caddy asks to pause. Not a coroutine,
        so that a caller with nothing else to await makes none."""
        if self.gone:
            raise ClientDisconnected("client disconnected")
        rc = _post(self.token, kind, a, b, flags)
        if rc == POST_GONE:
            self.gone = True
            raise ClientDisconnected("client disconnected")
        if rc == POST_PAUSE:
            self._resume = self.server.loop.create_future()
            return self._resume
        return None

    def resume(self) -> None:
        if self._resume is not None and not self._resume.done():
            self._resume.set_result(None)

    def event(self, kind: int, fields: tuple[bytes, ...]) -> None:
        raise NotImplementedError

    def time_out(self, what: str) -> None:
        """The request ran past its timeout while its task waited (the loop was
        free to hear of it): log where it waited, then cancel it."""
        task = self.task
        if task is None or task.done():
            return
        graph = asyncio.format_call_graph(task).rstrip("\n")
        _vivarium.log(_vivarium.LOG_ERROR, f"{what}; its task is cancelled where it waited:\n{graph}")
        self.gone = True
        task.cancel()

    async def run(self, app: ASGIApp, scope: dict[str, Any]) -> None:
        # Named so: where() (vivarium_boot) finds this request's frame by it.
        token = self.token
        flags = 0
        try:
            await app(scope, self.receive, self.send)
            flags = self.finished_flags()
        except asyncio.CancelledError:
            flags = ABORT
        except ClientDisconnected:
            flags = ABORT
        except RequestTimeout:
            # The server logged where it was, and answers 504 if it has not yet.
            flags = ABORT | TIMED_OUT
        except BaseException:
            # Once the client is gone, frameworks turn our ClientDisconnected
            # into errors of their own (Starlette's ClientDisconnect): that is
            # the client leaving, not the app failing.
            if not self.gone:
                _log_exception(f"exception in app for {scope.get('method', 'websocket')} {scope['path']}")
            flags = ABORT
        finally:
            self.server.cycles.pop(token, None)
            _vivarium.end(token)
            if flags or not self.done_with_final_send():
                _post(token, POST_DONE, None, b"", flags)

    def done_with_final_send(self) -> bool:
        """Whether Go already finished this request with the final send, so
        that the app returning needs no message of its own."""
        return False

    def finished_flags(self) -> int:
        return 0

    async def receive(self) -> Message:
        raise NotImplementedError

    async def send(self, message: Message) -> None:
        raise NotImplementedError


REQUEST_CODES.add(Cycle.run.__code__)


class HTTPCycle(Cycle):
    def __init__(self, server: Server, token: int, body: bytes, more: bool) -> None:
        super().__init__(server, token)
        self.body: bytes | None = body
        self.more = more
        self.waiter: asyncio.Future[None] | None = None
        self.started = False
        self.complete = False
        self.head: bytes | None = None

    def event(self, kind: int, fields: tuple[bytes, ...]) -> None:
        if kind == EV_BODY:
            self.body = fields[0]
            self.more = fields[1] == b"1"
        elif kind == EV_DISCONNECT:
            self.gone = True
            self.resume()
        elif kind == EV_RESUME:
            self.resume()
            return
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    async def receive(self) -> Message:
        while True:
            if self.body is not None:
                body, self.body = self.body, None
                return {"type": "http.request", "body": body, "more_body": self.more}
            if self.gone or self.complete:
                return {"type": "http.disconnect"}
            if self.more:
                _post(self.token, POST_WANT_BODY, None, b"", 0)
            # Without more body, this waits for the client to go away.
            self.waiter = self.server.loop.create_future()
            await self.waiter

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            if self.started:
                raise RuntimeError("http.response.start sent twice")
            self.started = True
            # Held back to travel with the first body part: one crossing.
            self.head = header_block(message.get("headers", []), str(int(message["status"])).encode())
        elif kind == "http.response.body":
            if not self.started:
                raise RuntimeError("http.response.body sent before http.response.start")
            if self.complete:
                raise RuntimeError("http.response.body sent after the response was complete")
            head, self.head = self.head, None
            if message.get("more_body", False):
                await self._post(POST_HTTP, head, message.get("body", b""), MORE)
                return
            # The last part without a coroutine of its own: one less per response.
            self.complete = True
            paused = self._post_now(POST_HTTP, head, message.get("body", b""), 0)
            if paused is not None:
                await paused
        else:
            raise ValueError(f"unexpected ASGI message {kind!r} for an HTTP request")

    def done_with_final_send(self) -> bool:
        # plugin/asgi.go ends the request at the body without more_body.
        return self.complete

    def finished_flags(self) -> int:
        if self.complete:
            return 0
        _vivarium.log(_vivarium.LOG_ERROR, "ASGI app returned without completing its response")
        return ABORT


class WebSocketCycle(Cycle):
    def __init__(self, server: Server, token: int) -> None:
        super().__init__(server, token)
        self.inbox: asyncio.Queue[Message] = asyncio.Queue()
        self.inbox.put_nowait({"type": "websocket.connect"})
        self.accepted = False
        self.closed = False

    def event(self, kind: int, fields: tuple[bytes, ...]) -> None:
        if kind == EV_WS_TEXT:
            self.inbox.put_nowait({"type": "websocket.receive", "text": fields[0].decode("utf-8", "replace")})
        elif kind == EV_WS_BYTES:
            self.inbox.put_nowait({"type": "websocket.receive", "bytes": fields[0]})
        elif kind == EV_WS_CLOSE:
            self.gone = True
            self.inbox.put_nowait({"type": "websocket.disconnect", "code": int(fields[0] or WS_NO_STATUS)})
            self.resume()
        elif kind == EV_RESUME:
            self.resume()

    async def receive(self) -> Message:
        return await self.inbox.get()

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if self.closed:
            raise ClientDisconnected("websocket closed")
        if kind == "websocket.accept":
            headers = message.get("headers") or []
            blob = header_block(headers)
            sub = message.get("subprotocol")
            self.accepted = True
            await self._post(POST_WS_ACCEPT, sub.encode() if sub else None, blob, 0)
        elif kind == "websocket.send":
            if not self.accepted:
                raise RuntimeError("websocket.send before websocket.accept")
            text = message.get("text")
            if text is not None:
                await self._post(POST_WS_TEXT, None, text.encode(), 0)
            else:
                await self._post(POST_WS_BYTES, None, message.get("bytes") or b"", 0)
        elif kind == "websocket.close":
            self.closed = True
            reason = (message.get("reason") or "").encode()
            await self._post(POST_WS_CLOSE, reason, b"", int(message.get("code", 1000)))
        else:
            raise ValueError(f"unexpected ASGI message {kind!r} for a WebSocket")


class Lifespan:
    """Runs the app's lifespan scope: startup before traffic, shutdown at the end."""

    def __init__(self, app: ASGIApp, loop: asyncio.AbstractEventLoop) -> None:
        self.app = app
        self.loop = loop
        self.state: dict[str, Any] = {}
        self.inbox: asyncio.Queue[Message] = asyncio.Queue()
        self.outcome: asyncio.Future[str | None] | None = None
        self.task: asyncio.Task[None] | None = None

    async def _main(self) -> None:
        scope = {"type": "lifespan", "asgi": ASGI_VERSION, "state": self.state}
        try:
            await self.app(scope, self.inbox.get, self._send)
        except BaseException:
            self._settle(f"lifespan raised an exception:\n{traceback.format_exc(limit=-TRACEBACK_LIMIT)}")
        else:
            self._settle("the app returned from its lifespan scope without completing it")

    def _settle(self, outcome: str | None) -> None:
        if self.outcome is not None and not self.outcome.done():
            self.outcome.set_result(outcome)

    async def _send(self, message: Message) -> None:
        kind = message["type"]
        if kind.endswith(".complete"):
            self._settle(None)
        elif kind.endswith(".failed"):
            self._settle(message.get("message") or kind)

    async def _step(self, kind: str) -> str | None:
        self.outcome = self.loop.create_future()
        await self.inbox.put({"type": kind})
        return await self.outcome

    async def startup(self) -> str | None:
        self.task = self.loop.create_task(self._main())
        failed = await self._step("lifespan.startup")
        return f"lifespan startup failed: {failed}" if failed else None

    async def shutdown(self) -> None:
        if self.task is None or self.task.done():
            return
        failed = await self._step("lifespan.shutdown")
        if failed:
            _vivarium.log(_vivarium.LOG_ERROR, f"lifespan shutdown failed: {failed}")


class _SpinSelector(selectors.EpollSelector):
    """Before it would block, the loop spins a while in C (_vivarium.idle),
    where Go's next post reaches it without an eventfd write and a wake-up
    from epoll_wait: the one hand-off of each request that a client waiting
    on its answer pays in full. The spin ends as soon as one of the
    selector's own descriptors is ready too."""

    def __init__(self, efd: int) -> None:
        super().__init__()
        self._efd = efd

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if (timeout is None or timeout > 0) and _vivarium.idle(self.fileno()):
            ready = super().select(0)
            key = self.get_map().get(self._efd)
            if key is not None and not any(k.fd == self._efd for k, _ in ready):
                ready.append((key, selectors.EVENT_READ))
            return ready
        return super().select(timeout)


def _new_event_loop(kind: str, efd: int) -> asyncio.AbstractEventLoop:
    """asyncio's loop, or with "auto" uvloop's where the app's environment has
    it (an app that has its process's main interpreter, where uvloop loads).
    asyncio's spins before it sleeps where Go wakes it (efd >= 0)."""
    if kind == "auto":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.new_event_loop()
    if efd < 0:
        return asyncio.new_event_loop()
    return asyncio.SelectorEventLoop(_SpinSelector(efd))


class Server:
    def __init__(
        self,
        app: ASGIApp,
        worker: int,
        efd: int,
        lifespan: bool,
        threads: int,
        drain: float,
        event_loop: str = "",
        link_fd: int = -1,
    ) -> None:
        self.app = app
        # In an `isolation process` child, the socket from Caddy, which this
        # loop watches itself: poll() reads what came (plugin/child.go).
        self.link_fd = link_fd
        self.drain = drain
        self.worker = worker
        self.efd = efd
        self.use_lifespan = lifespan
        self.threads = threads
        self.cycles: dict[int, Cycle] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.loop = _new_event_loop(event_loop, efd if link_fd < 0 else -1)
        self.lifespan: Lifespan | None = None
        self.state: dict[str, Any] | None = None
        self.stopping = False
        self.starting: asyncio.Task[str | None] | None = None

    def run(self) -> None:
        loop = self.loop
        asyncio.set_event_loop(loop)
        loop.set_default_executor(ThreadPoolExecutor(self.threads, thread_name_prefix="asgi-executor"))
        try:
            # Watched from the start: past start_timeout, Go's shutdown event
            # reaches a lifespan startup that waits.
            loop.add_reader(self.efd, self._wake)
            if self.link_fd >= 0:
                loop.add_reader(self.link_fd, self._pull)
            try:
                if self.use_lifespan:
                    failed = self._start_lifespan()
                    if failed:
                        _vivarium.ready(self.worker, failed)
                        return
                _vivarium.ready(self.worker, None)
                self._serve()  # until _stop() has drained the app
            finally:
                loop.remove_reader(self.efd)
                if self.link_fd >= 0:
                    loop.remove_reader(self.link_fd)
        finally:
            loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()
            asyncio.set_event_loop(None)

    def _start_lifespan(self) -> str | None:
        self.lifespan = Lifespan(self.app, self.loop)
        self.starting = self.loop.create_task(self.lifespan.startup())
        try:
            failed = self.loop.run_until_complete(self.starting)
        except asyncio.CancelledError:
            return "lifespan startup did not complete within start_timeout: it was cancelled where it waited"
        except StartTimeout:
            return "lifespan startup did not complete within start_timeout: it was interrupted"
        finally:
            self.starting = None
        if not failed:
            self.state = self.lifespan.state
        return failed

    def _serve(self) -> None:
        while True:
            try:
                self.loop.run_forever()
                return
            except RequestTimeout:
                # Meant for a request that blocked the loop, it fired once that
                # request's step was over, in the loop itself: the loop goes on.
                _vivarium.log(
                    _vivarium.LOG_ERROR,
                    "a request's timeout interrupted the event loop after that request had let go of it",
                )

    async def _stop(self) -> None:
        try:
            await self._shutdown()
        finally:
            self.loop.stop()

    async def _shutdown(self) -> None:
        # Requests still running finish (Caddy sends no new ones to an app it
        # replaced, and tells open WebSockets the server is going away); what
        # outlasts the grace period is cancelled.
        if self.tasks:
            await asyncio.wait(set(self.tasks), timeout=self.drain)
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.wait(set(self.tasks), timeout=5)
        if self.lifespan is not None:
            await self.lifespan.shutdown()
            if self.lifespan.task is not None:
                self.lifespan.task.cancel()

    def _wake(self) -> None:
        # Clear the eventfd before draining, so an event posted meanwhile wakes us again.
        try:
            os.read(self.efd, 8)
        except BlockingIOError:
            pass
        self._pull()

    def _pull(self) -> None:
        events = _vivarium.poll(self.worker)
        if events and self.link_fd >= 0:
            # The responses of the requests just started leave together, with
            # the next poll, once their tasks have run their first steps.
            self.loop.call_soon(self._pull)
        for event in events:
            kind, token, fields = event[0], event[1], event[2:]
            if kind == EV_HTTP:
                cycle: Cycle = HTTPCycle(self, token, fields[SCOPE_BODY], fields[SCOPE_MORE] == b"1")
                self._start(cycle, _scope("http", fields, self.state))
            elif kind == EV_WEBSOCKET:
                self._start(WebSocketCycle(self, token), _scope("websocket", fields, self.state))
            elif kind == EV_SHUTDOWN and self.starting is not None:
                self.starting.cancel()
                if self.lifespan is not None and self.lifespan.task is not None:
                    self.lifespan.task.cancel()
            elif kind == EV_TIMEOUT:
                cycle = self.cycles.get(token)
                if cycle is not None:
                    cycle.time_out(fields[0].decode("utf-8", "replace"))
            elif kind == EV_SHUTDOWN:
                if not self.stopping:
                    self.stopping = True
                    self.loop.create_task(self._stop())
            else:
                target = self.cycles.get(token)
                if target is not None:
                    target.event(kind, fields)

    def _start(self, cycle: Cycle, scope: dict[str, Any]) -> None:
        self.cycles[cycle.token] = cycle
        _vivarium.begin(cycle.token, f"{scope.get('method', 'WEBSOCKET')} {scope['path']}")
        # Started eagerly: the request runs here, up to its first wait (for
        # a plain answer, to its end), instead of in a later turn of the loop,
        # which would first poll the selector again.
        task = asyncio.Task(cycle.run(self.app, scope), loop=self.loop, eager_start=True)
        if task.done():
            return
        cycle.task = task
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)


def make_handler(
    app: ASGIApp, options: dict[str, Any]
) -> tuple[Callable[[int, int], None], None]:
    def run(worker: int, efd: int) -> None:
        Server(
            app, worker, efd, bool(options.get("lifespan")), int(options.get("threads") or 4),
            float(options.get("drain") or DRAIN_SECONDS), str(options.get("event_loop") or ""),
            int(options.get("link_fd", -1)),
        ).run()

    return run, None
