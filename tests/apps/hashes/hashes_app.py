"""Hashes app: hash_cases.py's digests, computed by the Python inside
bin/caddy (tests/test_hashes.py). `application` is the WSGI app, `app` the ASGI one."""

import json
import sys

import hash_cases


def answer() -> bytes:
    return json.dumps(
        {"version": list(sys.version_info[:2]), "modules": hash_cases.builtin_modules(), "results": hash_cases.results()}
    ).encode()


def application(environ, start_response):
    body = answer()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


async def app(scope, receive, send):
    assert scope["type"] == "http"
    body = answer()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})
