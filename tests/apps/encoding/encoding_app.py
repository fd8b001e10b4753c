"""Encoding app: what text encodings an app gets, and a file with a non-ASCII name
and content written and read with the defaults (tests/test_encoding.py).

GET /?dir=D reads D/given.txt (written by the test), writes D/<NAME> with CONTENT,
and answers the facts as JSON. `application` is the WSGI app, `app` the ASGI one.
"""

import json
import locale
import os
import sys
from urllib.parse import parse_qs

NAME = "grüße-✓.txt"
CONTENT = "héllo wörld ✓"


def facts(directory: str) -> dict:
    with open(os.path.join(directory, "naïve.txt")) as f:
        given = f.read()
    with open(os.path.join(directory, NAME), "w") as f:
        f.write(CONTENT)
    return {
        "utf8_mode": sys.flags.utf8_mode,
        "preferred_encoding": locale.getpreferredencoding(False),
        "filesystem_encoding": sys.getfilesystemencoding(),
        "listed": sorted(os.listdir(directory)),
        "given": given,
    }


def application(environ, start_response):
    directory = parse_qs(environ["QUERY_STRING"])["dir"][0]
    body = json.dumps(facts(directory)).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


async def app(scope, receive, send):
    assert scope["type"] == "http"
    directory = parse_qs(scope["query_string"].decode())["dir"][0]
    body = json.dumps(facts(directory)).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})
