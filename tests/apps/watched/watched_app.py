"""App for tests/test_watch.py, copied into a temporary directory and edited there.

Standard library only. WSGI `app` and ASGI `asgi_app` answer the same routes:
  GET /            {"version": VERSION, "started_at": when this module was imported,
                    "helper": helper.TEXT, "pid": the process serving it}
  GET /slow?s=S    the same, after S seconds: a request the old code is still running
                   when a restart happens
"""

import asyncio
import json
import os
import time
from urllib.parse import parse_qs

import helper

VERSION = "v1"
STARTED_AT = time.time()


def _body() -> bytes:
    return json.dumps({"version": VERSION, "started_at": STARTED_AT, "helper": helper.TEXT, "pid": os.getpid()}).encode()


def _seconds(query: str) -> float:
    return float(parse_qs(query).get("s", ["0"])[0])


def app(environ, start_response):
    if environ["PATH_INFO"].endswith("/slow"):
        time.sleep(_seconds(environ.get("QUERY_STRING", "")))
    body = _body()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


async def asgi_app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    if scope["path"].endswith("/slow"):
        await asyncio.sleep(_seconds(scope["query_string"].decode()))
    body = _body()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})
