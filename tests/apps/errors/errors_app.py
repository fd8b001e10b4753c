"""Errors app: fails on purpose, before and after the response headers.

Routes (on PATH_INFO):
  GET /raise?token=T               raises ValueError before start_response
  GET /raise_after_headers?token=T sends headers and a first chunk, then raises
  GET /fine                        a normal response
"""

from urllib.parse import parse_qs


def _token(environ):
    return parse_qs(environ.get("QUERY_STRING", "")).get("token", [""])[0]


def explode_before_headers(token):
    raise ValueError("vivarium-test-error before headers " + token)


def _late_failure(token):
    yield b"partial-body;"
    raise RuntimeError("vivarium-test-error after headers " + token)


def app(environ, start_response):
    path = environ.get("PATH_INFO", "")
    if path == "/raise":
        explode_before_headers(_token(environ))
    if path == "/raise_after_headers":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return _late_failure(_token(environ))
    if path == "/fine":
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "4")])
        return [b"fine"]
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"no route"]
