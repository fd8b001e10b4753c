"""WSGI app for stopping and reloading under load. Standard library only.

Routes (on PATH_INFO):
  GET /instance               this instance's id (new at every import), pid, interpreter count
  GET /stream?n=N&gap=G       N lines "line <i> <instance>", one every G seconds, then "end";
                              no Content-Length (chunked), a generator
  GET /slow?s=S&token=T       prints "vivarium-stop slow begin T", sleeps S seconds, answers
                              "slept T <instance>"
"""

import json
import time
import uuid
from urllib.parse import parse_qs

import _interpreters

INSTANCE = uuid.uuid4().hex


def query(environ):
    return {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}


def stream(n, gap):
    for i in range(n):
        yield f"line {i} {INSTANCE}\n".encode()
        time.sleep(gap)
    yield b"end\n"


def app(environ, start_response):
    path = environ.get("PATH_INFO", "")
    q = query(environ)
    if path == "/instance":
        body = json.dumps(
            {"instance": INSTANCE, "interp_count": len(_interpreters.list_all())}
        ).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body]
    if path == "/stream":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return stream(int(q.get("n", "10")), float(q.get("gap", "0.2")))
    if path == "/slow":
        token = q.get("token", "")
        print(f"vivarium-stop slow begin {token}", flush=True)
        time.sleep(float(q.get("s", "1")))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [f"slept {token} {INSTANCE}".encode()]
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"no such route"]
