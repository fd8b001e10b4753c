"""Exists, but imports a package that is not installed (as an app whose venv lacks
a dependency would): the server must show Python's own ImportError."""

import vivarium_missing_dependency  # noqa: F401  (the point of this module)


def app(environ, start_response):  # never reached
    start_response("200 OK", [])
    return [b""]
