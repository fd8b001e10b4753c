"""Raises at import time: the server must refuse to start and show this error."""

raise RuntimeError("vivarium-test: boom at import time")


def app(environ, start_response):  # never reached
    start_response("200 OK", [])
    return [b""]
