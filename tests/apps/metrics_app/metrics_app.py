"""The app of test_metrics.py and test_admin.py, as WSGI (`wsgi`) and ASGI (`asgi`),
standard library only. Routes (on the path after the mount point):

  GET /ok               200 with the interpreter id and when this module was imported
  GET /status?code=N    an empty response with status N
  GET /fail             raises before responding (500)
  GET /sleep?s=S        waits S seconds, then 200 with the interpreter id
  GET /grow?mb=N        keeps N MiB more of small objects alive in this interpreter
  WebSocket /ws         echoes text messages until the client closes
"""

import asyncio
import json
import time
from http import HTTPStatus
from urllib.parse import parse_qs

import _interpreters

IMPORTED_AT = time.time()
KEPT: list = []


def interp_id() -> int:
    return int(_interpreters.get_current()[0])


def answer(path: str, query: dict[str, str]) -> tuple[int, dict | None]:
    """The status and JSON body of a route; None for an empty body. Sleeps are the
    caller's to do, in its own way."""
    if path.endswith("/ok") or path.endswith("/sleep"):
        return 200, {"interp_id": interp_id(), "imported_at": IMPORTED_AT}
    if path.endswith("/status"):
        return int(query["code"]), None
    if path.endswith("/grow"):
        # Small objects (tuples of ints under 512 bytes): what pymalloc's arenas hold.
        per_mb = 1024 * 1024 // 64
        KEPT.extend((i, i + 1) for i in range(int(query["mb"]) * per_mb))
        return 200, {"kept": len(KEPT), "interp_id": interp_id()}
    if path.endswith("/fail"):
        raise RuntimeError("failing on purpose")
    return 404, {"error": f"no route {path}"}


def wsgi(environ, start_response):
    query = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
    path = environ.get("PATH_INFO", "")
    if path.endswith("/sleep"):
        time.sleep(float(query.get("s", "1")))
    status, obj = answer(path, query)
    body = json.dumps(obj).encode() if obj is not None else b""
    start_response(f"{status} {HTTPStatus(status).phrase}", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


async def asgi(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            await send({"type": "websocket.send", "text": message.get("text") or ""})
    query = {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}
    path = scope["path"]
    if path.endswith("/sleep"):
        await asyncio.sleep(float(query.get("s", "1")))
    status, obj = answer(path, query)
    body = json.dumps(obj).encode() if obj is not None else b""
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
