"""Controls app: misbehaves on purpose, for tests/test_controls_*.py.

Standard library only. The routes that hang print "controls: <route> begins"
first. One module, served as WSGI (`app`) and as ASGI (`asgi`,
lifespan supported); the routes are the same for both (on the path after the
mount point):
  GET /env?names=A,B    JSON {name: [os.environ.get, os.getenv, C getenv()]}
  GET /info             JSON: interpreter id, pid, requests served, objects kept,
                        interpreters in the process
  GET /spin             a pure-Python loop that never ends (in spin_forever)
  GET /recurse          unbounded recursion with the recursion limit raised
  GET /stubborn         spins, and swallows every exception raised in it
  GET /sleep?s=S        time.sleep(S): a call that releases the GIL
  GET /hold?s=S         libc sleep(S) through ctypes.PyDLL: C code holding the GIL
  GET /wait             ASGI: awaits forever (in wait_forever); WSGI: as /sleep
  GET /big?mb=N         an N MiB response in one piece
  GET /stream?mb=N      an N MiB response in 1 MiB parts
  GET /grow?n=N         keeps N more small objects alive (a leak)
  GET /hog?mb=N         keeps N more MiB of written bytes alive: resident memory
  GET /park?file=F      prints "controls: /park begins F", waits (ASGI: awaits) until
                        file F exists, then answers JSON {"pid": ...}
  GET /parked?file=F&parts=N  a streamed response of N 64 KiB parts: after the first
                        it prints "controls: /parked begins F" and waits for F
  GET /exit             os._exit(3), reporting what it raised
  GET /segv             reads address 0 through ctypes: a segmentation fault
  GET /abort            os.abort()
  WebSocket (ASGI)      echoes each text message as "<pid> <message>"
With CONTROLS_LIFESPAN=spin|wait in its environment, ASGI lifespan startup
never completes.
"""

import asyncio
import ctypes
import json
import os
import sys
import time
from urllib.parse import parse_qs

import _interpreters

SERVED = [0]
KEPT: list[str] = []
HOGGED: list[bytes] = []
PART = b"p" * (64 << 10)
_libc = ctypes.CDLL(None)
_libc.getenv.restype = ctypes.c_char_p


def spin_forever():
    while True:
        pass


def recurse(n):
    # Some work at each level, as real recursive code does: at its timeout
    # it is a few hundred thousand frames deep, not ten million.
    for _ in range(100):
        pass
    return recurse(n + 1) + 1


def stubborn():
    while True:
        try:
            spin_forever()
        except BaseException:
            pass


def _query(environ_query: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(environ_query).items()}



def answer(path: str, q: dict[str, str]) -> tuple[int, str, bytes]:
    """(status, content type, body) for the routes that end the same way in
    WSGI and ASGI; raises LookupError for the others."""
    SERVED[0] += 1
    if path in ("/spin", "/stubborn", "/sleep", "/hold", "/recurse"):
        print(f"controls: {path} begins", flush=True)
    if path == "/env":
        names = q.get("names", "").split(",")
        seen = {}
        for name in names:
            c_value = _libc.getenv(name.encode())
            seen[name] = [os.environ.get(name), os.getenv(name), c_value.decode() if c_value else None]
        return 200, "application/json", json.dumps(seen).encode()
    if path == "/info":
        info = {"interpreter": _interpreters.get_current()[0], "pid": os.getpid(), "served": SERVED[0],
                "kept": len(KEPT), "interpreters": len(_interpreters.list_all())}
        return 200, "application/json", json.dumps(info).encode()
    if path == "/spin":
        spin_forever()
    if path == "/stubborn":
        stubborn()
    if path == "/recurse":
        sys.setrecursionlimit(10**7)
        recurse(0)
    if path == "/sleep":
        time.sleep(float(q.get("s", "3600")))
        return 200, "text/plain", b"slept"
    if path == "/hold":
        ctypes.PyDLL(None).sleep(int(q.get("s", "3600")))
        return 200, "text/plain", b"held"
    if path == "/grow":
        KEPT.extend(str(i) * 2 for i in range(int(q.get("n", "100000"))))
        return 200, "text/plain", str(len(KEPT)).encode()
    if path == "/hog":
        HOGGED.append(b"\x01" * (int(q.get("mb", "1")) << 20))
        return 200, "application/json", json.dumps({"pid": os.getpid(), "mib": sum(map(len, HOGGED)) >> 20}).encode()
    if path == "/exit":
        try:
            os._exit(3)
        except RuntimeError as e:
            return 500, "text/plain", f"RuntimeError: {e}".encode()
    if path == "/segv":
        ctypes.string_at(0)
    if path == "/abort":
        os.abort()
    raise LookupError(path)


def app(environ, start_response):
    path = environ.get("PATH_INFO", "")
    q = _query(environ.get("QUERY_STRING", ""))
    if path == "/wait":
        path = "/sleep"
    if path == "/big":
        body = b"x" * (int(q.get("mb", "1")) << 20)
        start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(len(body)))])
        return [body]
    if path == "/stream":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        part = b"y" * (1 << 20)
        return (part for _ in range(int(q.get("mb", "1"))))
    if path == "/park":
        print(f"controls: /park begins {q['file']}", flush=True)
        while not os.path.exists(q["file"]):
            time.sleep(0.02)
        body = json.dumps({"pid": os.getpid()}).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]
    if path == "/parked":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return _parked(q["file"], int(q.get("parts", "8")))
    try:
        status, ctype, body = answer(path, q)
    except LookupError:
        status, ctype, body = 404, "text/plain", b"no route"
    start_response(f"{status} X", [("Content-Type", ctype), ("Content-Length", str(len(body)))])
    return [body]


def _parked(file: str, parts: int):
    yield PART
    print(f"controls: /parked begins {file}", flush=True)
    while not os.path.exists(file):
        time.sleep(0.02)
    for _ in range(parts - 1):
        yield PART


async def wait_forever():
    await asyncio.Event().wait()


async def _lifespan(receive, send):
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            hang = os.environ.get("CONTROLS_LIFESPAN")
            if hang == "spin":
                spin_forever()
            if hang == "wait":
                await wait_forever()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _echo(receive, send):
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        await send({"type": "websocket.send", "text": f"{os.getpid()} {message.get('text')}"})


async def _until(file: str):
    while not os.path.exists(file):
        await asyncio.sleep(0.02)


async def asgi(scope, receive, send):
    if scope["type"] == "lifespan":
        return await _lifespan(receive, send)
    if scope["type"] == "websocket":
        return await _echo(receive, send)
    path = scope["path"][len(scope.get("root_path", "")):]
    q = _query(scope["query_string"].decode())
    if path == "/wait":
        await wait_forever()
    if path == "/park":
        print(f"controls: /park begins {q['file']}", flush=True)
        await _until(q["file"])
        body = json.dumps({"pid": os.getpid()}).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})
        return
    if path == "/parked":
        parts = int(q.get("parts", "8"))
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/octet-stream")]})
        await send({"type": "http.response.body", "body": PART, "more_body": True})
        print(f"controls: /parked begins {q['file']}", flush=True)
        await _until(q["file"])
        for i in range(1, parts):
            await send({"type": "http.response.body", "body": PART, "more_body": i < parts - 1})
        return
    try:
        status, ctype, body = answer(path, q)
    except LookupError:
        status, ctype, body = 404, "text/plain", b"no route"
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", ctype.encode())]})
    await send({"type": "http.response.body", "body": body})
