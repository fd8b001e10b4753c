"""App of one tenant for tests/test_dynamic.py, copied into a directory per tenant.

Standard library only. WSGI `app` and ASGI `asgi_app` answer:
  GET /          {"tenant": its directory's name, "started_at", "interp_id", "pid", "hits",
                  "greeting" and "from_file": the variables GREETING and FROM_FILE}
  GET /slow?s=S  the same after S seconds (a request in flight)
"""

import asyncio
import json
import os
import time
from urllib.parse import parse_qs

import _interpreters

TENANT = os.path.basename(os.path.dirname(os.path.abspath(__file__)))
STARTED_AT = time.time()
HITS = [0]


def _body() -> bytes:
    HITS[0] += 1
    return json.dumps(
        {
            "tenant": TENANT,
            "started_at": STARTED_AT,
            "interp_id": int(_interpreters.get_current()[0]),
            "pid": os.getpid(),
            "hits": HITS[0],
            "greeting": os.environ.get("GREETING"),
            "from_file": os.environ.get("FROM_FILE"),
        }
    ).encode()


def _seconds(query: str) -> float:
    return float(parse_qs(query).get("s", ["0"])[0])


def app(environ, start_response):
    if environ["PATH_INFO"] == "/slow":
        time.sleep(_seconds(environ.get("QUERY_STRING", "")))
    body = _body()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]


async def asgi_app(scope, receive, send):
    assert scope["type"] == "http"
    if scope["path"] == "/slow":
        await asyncio.sleep(_seconds(scope["query_string"].decode()))
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": _body()})
