"""Chatty app: writes to every output channel an app has.

At import it prints a fixed line. Routes (on PATH_INFO), each writing one line that
contains the token T:
  GET /print?token=T        print() to sys.stdout
  GET /stderr?token=T       sys.stderr.write()
  GET /logging?token=T      logging.getLogger(...).warning() with no logging config
  GET /wsgi_errors?token=T  environ["wsgi.errors"].write()
"""

import logging
import sys
from urllib.parse import parse_qs

print("vivarium-test chatty imported")

log = logging.getLogger("vivarium.chatty")


def app(environ, start_response):
    path = environ.get("PATH_INFO", "")
    token = parse_qs(environ.get("QUERY_STRING", "")).get("token", [""])[0]
    if path == "/print":
        print("vivarium-test print " + token)
    elif path == "/stderr":
        sys.stderr.write("vivarium-test stderr " + token + "\n")
    elif path == "/logging":
        log.warning("vivarium-test logging %s", token)
    elif path == "/wsgi_errors":
        environ["wsgi.errors"].write("vivarium-test wsgi.errors " + token + "\n")
        environ["wsgi.errors"].flush()
    else:
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"no route"]
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]
