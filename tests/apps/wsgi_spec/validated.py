"""An app wrapped in wsgiref.validate.validator.

The validator raises AssertionError inside the app on any PEP 3333 violation by
the server (wrong environ types, bad wsgi.input, missing keys...), which turns
into a 500; so a 200 with the exact body means the server passed. Violations
that the validator can only detect in __del__ (iterator never closed) go to
sys.unraisablehook, which this module records; /problems reports them.

Routes (on PATH_INFO):
  GET  /hello      fixed body
  POST /echo       echoes the body (read with wsgi.input.read(CONTENT_LENGTH))
  GET  /stream     generator response, 5 chunks
  GET  /problems   (outside the validator) violations recorded so far
"""

import json
import sys
import threading
from wsgiref.validate import validator

_lock = threading.Lock()
PROBLEMS = []


def _record_unraisable(unraisable):
    with _lock:
        PROBLEMS.append("%s: %s" % (type(unraisable.exc_value).__name__, unraisable.exc_value))


sys.unraisablehook = _record_unraisable


def inner(environ, start_response):
    path = environ.get("PATH_INFO", "")
    if path == "/hello":
        body = b"hello from a validated app"
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]
    if path == "/echo":
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length)
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", str(len(body)))])
        return [body]
    if path == "/stream":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return (("chunk-%d;" % i).encode() for i in range(5))
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"no route"]


validated = validator(inner)


def app(environ, start_response):
    if environ.get("PATH_INFO") == "/problems":
        with _lock:
            body = json.dumps(PROBLEMS).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body]
    return validated(environ, start_response)
