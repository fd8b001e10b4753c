"""PEP 3333 conformance app: reports what the server hands it, exercises the
less common parts of the interface. Standard library only.

Routes (on PATH_INFO):
  ANY  /environ...              JSON description of the environ (any path below /environ)
  POST /input/read              wsgi.input.read() with no argument
  POST /input/read_chunks?n=N   wsgi.input.read(N) until b""
  POST /input/readline          wsgi.input.readline() until b""
  POST /input/iterate           for line in wsgi.input
  POST /input/readlines         wsgi.input.readlines()
  GET  /write                   body through the write() callable, then the iterable
  GET  /plain                   a list body without Content-Length
  GET  /exc_info                start_response, then start_response again with exc_info
  GET  /double_start            start_response twice without exc_info (must raise)
  GET  /headers                 repeated Set-Cookie response headers
  GET  /closing?token=T         iterable whose close() is recorded under T
  GET  /closing_big?token=T     long streamed iterable whose close() is recorded under T
  GET  /closing_raise?token=T   iterable that raises after its first chunk
  GET  /closed?token=T          "yes" when close() was called for T, else "no"
  GET  /file?path=P&token=T     wsgi.file_wrapper around open(P, "rb")
  GET  /file_closed?token=T     whether that file object got closed
  GET  /filelike?size=N         wsgi.file_wrapper around a BytesIO (no fileno)
"""

import io
import json
import sys
import threading
from urllib.parse import parse_qs

_lock = threading.Lock()
CLOSED = set()
FILES = {}


def _query(environ):
    return {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}


def _json(start_response, obj, status="200 OK"):
    body = json.dumps(obj).encode("utf-8")
    start_response(
        status,
        [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
    )
    return [body]


def _describe_environ(environ):
    out = {"environ_type": type(environ).__name__, "types": {}, "values": {}}
    for key, value in environ.items():
        out["types"][key] = type(value).__name__
        if isinstance(value, (str, bool, int)) or value is None:
            out["values"][key] = value
        elif isinstance(value, tuple):
            out["values"][key] = list(value)
    for key, attrs in (
        ("wsgi.input", ("read", "readline", "readlines", "__iter__")),
        ("wsgi.errors", ("write", "writelines", "flush")),
    ):
        obj = environ.get(key)
        out["values"][key] = sorted(a for a in attrs if hasattr(obj, a))
    out["values"]["wsgi.file_wrapper"] = callable(environ.get("wsgi.file_wrapper"))
    return out


class Recorded:
    """A response iterable that records its close() call under a token."""

    def __init__(self, token, chunks, fail_after=None):
        self.token = token
        self.chunks = chunks
        self.fail_after = fail_after

    def __iter__(self):
        for index, chunk in enumerate(self.chunks):
            if self.fail_after is not None and index == self.fail_after:
                raise RuntimeError("vivarium-test: iterable failed on purpose")
            yield chunk

    def close(self):
        with _lock:
            CLOSED.add(self.token)


def _input_route(environ, start_response, how):
    stream = environ["wsgi.input"]
    parts = []
    if how == "read":
        parts.append(stream.read())
    elif how == "read_chunks":
        n = int(_query(environ)["n"])
        while True:
            chunk = stream.read(n)
            if not chunk:
                break
            parts.append(chunk)
    elif how == "readline":
        while True:
            line = stream.readline()
            if not line:
                break
            parts.append(line)
    elif how == "iterate":
        for line in stream:
            parts.append(line)
    elif how == "readlines":
        parts.extend(stream.readlines())
    else:
        return _json(start_response, {"error": "unknown"}, "404 Not Found")
    return _json(
        start_response,
        {
            "parts": [p.decode("latin-1") for p in parts],
            "types": sorted({type(p).__name__ for p in parts}),
        },
    )


def app(environ, start_response):
    path = environ.get("PATH_INFO", "")
    query = _query(environ)

    if path.startswith("/environ"):
        return _json(start_response, _describe_environ(environ))

    if path.startswith("/input/"):
        return _input_route(environ, start_response, path[len("/input/"):])

    if path == "/plain":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"no length ", b"declared"]

    if path == "/write":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"written-1;")
        write(b"written-2;")
        return [b"returned-3"]

    if path == "/exc_info":
        start_response("200 OK", [("Content-Type", "text/plain"), ("X-First", "1")])
        try:
            raise ValueError("vivarium-test: replaced before headers were sent")
        except ValueError:
            start_response(
                "202 Accepted",
                [("Content-Type", "text/plain"), ("X-Replaced", "yes")],
                sys.exc_info(),
            )
        return [b"replaced"]

    if path == "/double_start":
        start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            start_response("201 Created", [("Content-Type", "text/plain")])
        except Exception as exc:  # PEP 3333: this second call is a fatal error
            return [("raised " + type(exc).__name__).encode()]
        return [b"not raised"]

    if path == "/headers":
        start_response(
            "200 OK",
            [
                ("Content-Type", "text/plain"),
                ("Set-Cookie", "a=1; Path=/"),
                ("Set-Cookie", "b=2; Path=/"),
                ("X-App", "spec"),
            ],
        )
        return [b"cookies"]

    if path == "/closing":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Recorded(query["token"], [b"one;", b"two;", b"three"])

    if path == "/closing_big":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        chunk = b"x" * 65536
        # 64 GiB if read fully: only a server that stops on disconnect gets to close()
        return Recorded(query["token"], (chunk for _ in range(1 << 20)))

    if path == "/closing_raise":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Recorded(query["token"], [b"first;", b"never"], fail_after=1)

    if path == "/closed":
        with _lock:
            closed = query["token"] in CLOSED
        return _json(start_response, {"closed": closed})

    if path == "/file":
        handle = open(query["path"], "rb")
        with _lock:
            FILES[query["token"]] = handle
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return environ["wsgi.file_wrapper"](handle, 8192)

    if path == "/file_closed":
        with _lock:
            handle = FILES[query["token"]]
        return _json(start_response, {"closed": handle.closed})

    if path == "/filelike":
        size = int(query["size"])
        data = bytes(i % 251 for i in range(size))
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return environ["wsgi.file_wrapper"](io.BytesIO(data), 4096)

    return _json(start_response, {"error": "no route " + path}, "404 Not Found")
