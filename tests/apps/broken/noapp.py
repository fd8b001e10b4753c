"""Imports fine but has no attribute named `app` (only `application`)."""


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"wrong name"]
