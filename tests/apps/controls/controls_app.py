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
  GET /exit             os._exit(3), reporting what it raised
  GET /segv             reads address 0 through ctypes: a segmentation fault
  GET /abort            os.abort()
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
    try:
        status, ctype, body = answer(path, q)
    except LookupError:
        status, ctype, body = 404, "text/plain", b"no route"
    start_response(f"{status} X", [("Content-Type", ctype), ("Content-Length", str(len(body)))])
    return [body]


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


async def asgi(scope, receive, send):
    if scope["type"] == "lifespan":
        return await _lifespan(receive, send)
    path = scope["path"][len(scope.get("root_path", "")):]
    q = _query(scope["query_string"].decode())
    if path == "/wait":
        await wait_forever()
    try:
        status, ctype, body = answer(path, q)
    except LookupError:
        status, ctype, body = 404, "text/plain", b"no route"
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", ctype.encode())]})
    await send({"type": "http.response.body", "body": body})
